# Copyright 2026 The hf_transfer authors. Licensed under the Apache License, Version 2.0.
"""The upload: an allowlist of files, one commit, and a retry command when it fails."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

from huggingface_hub import CommitInfo, HfApi, constants, get_token
from huggingface_hub.utils import filter_repo_objects

from .card import DISTRIBUTION_NAME, _version
from .secrets import find_secret_in_files

__all__ = [
    "UPLOAD_ALLOW_PATTERNS",
    "UPLOAD_IGNORE_PATTERNS",
    "HubPushError",
    "files_to_upload",
    "push_folder_to_hub",
]


# Where `publish_model` writes the timm export inside the run's folder (pushed to its own repo, never to the main one).
TIMM_EXPORT_DIR = "timm_export"

# What a pushed repo holds: weights as safetensors, configs, processor/tokenizer files, the card and its images,
# custom modeling code, results. An allowlist, so that an unexpected file (a pickle, a log, a YAML recipe holding a
# token) is never published by accident.
UPLOAD_ALLOW_PATTERNS = ["*.safetensors", "*.json", "*.md", "*.png", "*.py", "*.txt", "*.model", "*.jinja"]
# Never pushed, even when allowed above: Trainer checkpoints (optimizer/scheduler/RNG state, training_args.bin with
# the pickled TrainingArguments), TensorBoard runs, caches, hidden files, every pickle-based format.
UPLOAD_IGNORE_PATTERNS = [
    "checkpoint-*",
    "*/checkpoint-*",
    "runs/*",
    "*/runs/*",
    ".*",
    "*/.*",
    "training_args.bin",
    "optimizer.*",
    "scheduler.*",
    "rng_state*",
    "*.bin",
    "*.pt",
    "*.pth",
    "*.ckpt",
    "*.pkl",
    "*.pickle",
    f"{TIMM_EXPORT_DIR}/*",
]


class HubPushError(RuntimeError):
    """The upload failed. The local output is intact; `retry_command` pushes it again.

    Attributes:
        output_dir: The folder that was being pushed (left untouched).
        repo_id: The target repository.
        retry_command: A shell command that retries the same push.
    """

    def __init__(self, message: str, *, output_dir: Path, repo_id: str, retry_command: str):
        super().__init__(message)
        self.output_dir, self.repo_id, self.retry_command = output_dir, repo_id, retry_command


def files_to_upload(output_dir: str | os.PathLike) -> list[str]:
    """The files of `output_dir` (relative POSIX paths) that `push_folder_to_hub` would upload."""
    folder = Path(output_dir)
    relpaths = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    return list(
        filter_repo_objects(relpaths, allow_patterns=UPLOAD_ALLOW_PATTERNS, ignore_patterns=UPLOAD_IGNORE_PATTERNS)
    )


def push_folder_to_hub(
    output_dir: str | os.PathLike,
    repo_id: str,
    token: str | None = None,
    commit_message: str = "Upload model trained with hf_transfer",
    revision: str | None = None,
    private: bool | None = None,
) -> CommitInfo:
    """Uploads a training output folder to a Hub model repo, creating the repo (and branch) when needed.

    Only the publishable files go up (see `UPLOAD_ALLOW_PATTERNS` / `UPLOAD_IGNORE_PATTERNS`): safetensors weights,
    configs, processor and tokenizer files, README.md, images, custom code, JSON results. Never checkpoints,
    optimizer/scheduler/RNG state, `training_args.bin` or any pickle. As a last guard, the upload is refused when
    one of those files contains the token.

    Args:
        output_dir: The folder written by `save_pretrained` / the Trainer.
        repo_id: `"namespace/name"` (see `check_push_target`).
        token: A token with write access; defaults to `huggingface_hub.get_token()`.
        commit_message: The commit's title.
        revision: A branch to push to (created from `main` when missing); default `main`.
        private: Visibility of a repo created by this call (an existing repo keeps its own).

    Returns:
        The commit's info (`.oid` is its sha, `.commit_url` its page).

    Raises:
        FileNotFoundError: `output_dir` is not a folder.
        ValueError: Nothing to upload, or a file to upload contains the token.
        HubPushError: The Hub could not be reached or refused the upload; the message gives the retry command.

    Example:
        ```python
        >>> push_folder_to_hub("outputs/resnet50-cifar10", "alice/resnet50-cifar10").commit_url
        'https://huggingface.co/alice/resnet50-cifar10/commit/...'
        ```
    """
    folder = Path(output_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"Cannot push {str(folder)!r}: it is not a folder.")
    files = files_to_upload(folder)
    if not files:
        raise ValueError(f"Nothing to push in {str(folder)!r}: no file matches {UPLOAD_ALLOW_PATTERNS}.")
    token = token or get_token()
    if token:
        leaked = find_secret_in_files([folder / f for f in files], token)
        if leaked:
            raise ValueError(
                f"Refusing to push to {repo_id!r}: your Hugging Face token appears in {', '.join(map(str, leaked))}. "
                "Remove it from those files (and revoke it at https://huggingface.co/settings/tokens if it was "
                "shared) before pushing."
            )

    api = HfApi(
        endpoint=constants.ENDPOINT,
        token=token,
        library_name="hf_transfer",
        library_version=_version(DISTRIBUTION_NAME),
    )
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision not in (None, constants.DEFAULT_REVISION):
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        return api.upload_folder(
            folder_path=folder,
            repo_id=repo_id,
            commit_message=commit_message,
            revision=revision,
            allow_patterns=list(UPLOAD_ALLOW_PATTERNS),
            ignore_patterns=list(UPLOAD_IGNORE_PATTERNS),  # a copy: upload_folder extends the list it is given
        )
    except Exception as e:
        retry = _retry_command(folder, repo_id, revision)
        raise HubPushError(
            f"Pushing {str(folder)!r} to {constants.ENDPOINT}/{repo_id} failed: {type(e).__name__}: {e}\n"
            f"Nothing local was changed: the trained model and its files are intact in {str(folder.resolve())!r}.\n"
            f"Retry when the Hub is reachable (token from HF_TOKEN or `hf auth login`):\n    {retry}\n"
            f"or with the Hugging Face CLI:\n    {_retry_cli_command(folder, repo_id, revision)}",
            output_dir=folder,
            repo_id=repo_id,
            retry_command=retry,
        ) from e


def _retry_command(folder: Path, repo_id: str, revision: str | None) -> str:
    # json.dumps: double-quoted Python string literals, which read cleanly inside the shell's single quotes.
    args = f"{json.dumps(str(folder.resolve()))}, {json.dumps(repo_id)}"
    args += f", revision={json.dumps(revision)}" if revision else ""
    code = f"from hf_transfer.hub import push_folder_to_hub; push_folder_to_hub({args})"
    return f"python -c {shlex.quote(code)}"


def _retry_cli_command(folder: Path, repo_id: str, revision: str | None) -> str:
    parts = ["hf", "upload", repo_id, str(folder.resolve()), "."]
    parts += [arg for pattern in UPLOAD_ALLOW_PATTERNS for arg in ("--include", pattern)]
    parts += [arg for pattern in UPLOAD_IGNORE_PATTERNS for arg in ("--exclude", pattern)]
    if revision:
        parts += ["--revision", revision]
    return shlex.join(parts)
