# Copyright 2026 The hf_transfer authors. Licensed under the Apache License, Version 2.0.
"""Before training: the push target and its token are checked, and secrets are kept out of every file."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from huggingface_hub import HfApi, constants, get_token
from huggingface_hub.errors import HfHubHTTPError, HFValidationError
from huggingface_hub.utils import validate_repo_id

__all__ = [
    "HubAuthError",
    "check_push_target",
    "find_secret_in_files",
    "remove_secrets_from_args",
]


class HubAuthError(RuntimeError):
    """No usable Hugging Face token for the push: missing, rejected, read-only, or the Hub could not be asked."""


def check_push_target(repo_id: str, token: str | None = None) -> str:
    """Fails fast, before training, when the model could not be pushed at the end.

    Checks the repo id's form, that a token exists, that the Hub accepts it (`whoami`), that it can write, and that
    its user may write to the namespace.

    Args:
        repo_id: `"namespace/name"`, or `"name"` to push under the token's user.
        token: A Hugging Face token; defaults to `huggingface_hub.get_token()` (`HF_TOKEN`, then `hf auth login`).

    Returns:
        The full repo id, `"namespace/name"`.

    Raises:
        ValueError: The repo id is malformed.
        HubAuthError: No token, a token the Hub rejects or that is read-only, a namespace the user cannot write to,
            or a Hub that cannot be reached.

    Example:
        ```python
        >>> check_push_target("resnet50-cifar10")  # logged in as "alice"
        'alice/resnet50-cifar10'
        ```
    """
    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise ValueError(
            f"Invalid Hub repo id {repo_id!r}: expected 'namespace/name' (e.g. 'my-user/resnet50-cifar10'), or just "
            "'name' to push under your own account; letters, digits, '-', '_' and '.' only, at most 96 characters. "
            f"({e})"
        ) from e

    source = _token_source(token)
    token = token or get_token()
    login_hint = "Run `hf auth login`, or pass --hub_token / set HF_TOKEN"
    if not token:
        raise HubAuthError(
            f"No Hugging Face token found, so the model could not be pushed to {repo_id!r}. {login_hint}."
        )
    try:
        user = HfApi(endpoint=constants.ENDPOINT).whoami(token=token, cache=True)
    except HfHubHTTPError as e:
        if e.response is not None and e.response.status_code == 401:
            raise HubAuthError(
                f"The Hub at {constants.ENDPOINT} rejected {source} (401: invalid or expired). "
                f"{login_hint} with a token that has write access (https://huggingface.co/settings/tokens)."
            ) from None  # the chained error would repeat request details; the token itself is never printed
        raise HubAuthError(f"Could not check {source} with the Hub at {constants.ENDPOINT}: {e}") from e
    except Exception as e:  # network down, DNS, TLS, proxy...
        raise HubAuthError(
            f"Could not reach the Hub at {constants.ENDPOINT} to check {source} before training "
            f"({type(e).__name__}: {e}). Check the connection / HF_ENDPOINT, or train without pushing and push the "
            "output folder later with hf_transfer.hub.push_folder_to_hub."
        ) from e

    role = ((user.get("auth") or {}).get("accessToken") or {}).get("role")
    if role == "read":
        raise HubAuthError(f"{source} is read-only and cannot create or write {repo_id!r}. {login_hint}.")
    name = user["name"]
    namespace, _, repo_name = repo_id.rpartition("/")
    namespace = namespace or name
    allowed = {name} | {org["name"] for org in user.get("orgs") or [] if "name" in org}
    if namespace not in allowed:
        raise HubAuthError(
            f"{name!r} cannot push to {namespace}/{repo_name}: {namespace!r} is neither this user nor one of its "
            f"organizations ({', '.join(sorted(allowed))}). Use 'name' alone to push under {name!r}."
        )
    return f"{namespace}/{repo_name}"


def _token_source(token: str | None) -> str:
    if token:
        return "the token passed explicitly (--hub_token)"
    if os.environ.get("HF_TOKEN"):
        return "the token in HF_TOKEN"
    return "the token saved by `hf auth login`"


def remove_secrets_from_args(training_args: Any) -> None:
    """Clears tokens from a `TrainingArguments` in place.

    The Trainer pickles the whole `TrainingArguments` into `training_args.bin` in every checkpoint and output folder,
    so a `hub_token` set there would be written to disk (and published by a Trainer push). Resolve the token first,
    call this before building the Trainer, and pass the token to the push explicitly.

    Args:
        training_args: A `transformers.TrainingArguments` (or any object with `*_token` attributes).
    """
    for name, value in list(vars(training_args).items()):
        if name.endswith("_token") and isinstance(value, str):
            setattr(training_args, name, None)


def find_secret_in_files(paths: str | os.PathLike | Iterable[str | os.PathLike], secret: str) -> list[Path]:
    """Files whose bytes contain `secret` (UTF-8), searching folders recursively.

    Args:
        paths: Files and/or folders.
        secret: The string to look for (e.g. a token). Must not be empty.

    Returns:
        The files that contain it, sorted.
    """
    if not secret:
        raise ValueError("An empty secret would match every file.")
    needle = secret.encode("utf-8")
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    found = []
    for file in sorted(_iter_files(paths)):
        if _file_contains(file, needle):
            found.append(file)
    return found


def _iter_files(paths: Iterable[str | os.PathLike]) -> Iterable[Path]:
    for path in map(Path, paths):
        if path.is_dir():
            yield from (p for p in path.rglob("*") if p.is_file())
        elif path.is_file():
            yield path


def _file_contains(file: Path, needle: bytes, chunk_size: int = 1 << 24) -> bool:
    overlap = len(needle) - 1
    with open(file, "rb") as f:
        tail = b""
        while chunk := f.read(chunk_size):
            if needle in tail + chunk:
                return True
            tail = chunk[-overlap:] if overlap else b""
    return False
