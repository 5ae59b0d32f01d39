# Copyright 2026 The hf_transfer authors. Licensed under the Apache License, Version 2.0.
"""The card's "Reproduce" section: the exact command and the full resolved recipe of the run that made the model.

The recipe is every flag that differs from the defaults (a YAML recipe file and the command line merged), as a
YAML file `recipes/finetune.py` reads back, with the seed always included and the library versions as comments.
Secrets never land in it: `*_token` flags are dropped from the recipe and their values masked in the command.
Local paths are not published either (as elsewhere in the card): they are shown by their last component, and the
reader passes their own on the command line (`--dataset_name my/cifar10`).
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import yaml

__all__ = ["RunRecipe", "is_secret_flag", "recipe_from_card", "render_recipe_section", "redact_command"]

# Libraries whose versions decide the numbers a recipe reaches.
RECIPE_LIBRARIES = ("hf_transfer", "transformers", "timm", "torch", "accelerate", "datasets", "peft")
REDACTED = "<redacted>"
_SECTION = "<!-- hf_transfer recipe -->"
_YAML_BLOCK = re.compile(r"```yaml\n(?P<body>.*?)```", re.S)


def is_secret_flag(name: str) -> bool:
    """Whether a flag holds a secret (`hub_token`, `push_to_hub_token`, ...): never shown, never written."""
    name = name.lower()
    return name.endswith("token") or "password" in name or "secret" in name


def _looks_like_local_path(value: str) -> bool:
    return value.startswith((".", "/", "~")) or "\\" in value or os.path.isabs(value) or os.path.exists(value)


def _public(value: str) -> str:
    """A local path by its last component (a card does not publish local paths); anything else as it is."""
    return Path(value).name if _looks_like_local_path(value) else value


def _plain(value: Any) -> Any:
    """A flag value as YAML writes it (enums by value, tuples as lists, local paths by their last component)."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, str):
        return _public(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def redact_command(argv: Sequence[str], secrets: Sequence[str] = ()) -> list[str]:
    """The command line with every secret masked (the value of a `--*_token` flag, and any argument containing one
    of `secrets`, a token resolved elsewhere) and local paths shown by their last component.

    Args:
        argv: The arguments.
        secrets: Secret values to mask wherever they appear.
    """
    out, mask_next = [], False
    for arg in argv:
        arg = str(arg)
        if mask_next:
            out.append(REDACTED)
            mask_next = False
            continue
        if arg.startswith("--") and is_secret_flag(arg[2:].split("=", 1)[0]):
            if "=" in arg:
                out.append(arg.split("=", 1)[0] + "=" + REDACTED)
            else:
                out.append(arg)
                mask_next = True
            continue
        for secret in secrets:
            if secret:
                arg = arg.replace(secret, REDACTED)
        if arg.startswith("--") and "=" in arg:
            name, value = arg.split("=", 1)
            arg = f"{name}={_public(value)}"
        elif not arg.startswith("--"):
            arg = _public(arg)
        out.append(arg)
    return out


def _versions() -> dict[str, str]:
    from .. import __version__  # the package's own version (its distribution is named differently)

    versions = {"python": platform.python_version(), "hf_transfer": __version__}
    for name in RECIPE_LIBRARIES[1:]:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


@dataclass
class RunRecipe:
    """What reproduces a run: its command, its resolved flags, the library versions and the seed.

    Attributes:
        command: The exact command, secrets masked.
        flags: Every flag that differs from the defaults (and the seed), secrets dropped, in parser order.
        seed: The run's seed.
        versions: Library -> version.
    """

    command: str
    flags: dict[str, Any]
    seed: int
    versions: dict[str, str] = field(default_factory=_versions)

    @classmethod
    def from_flags(
        cls,
        resolved: Mapping[str, Any],
        defaults: Mapping[str, Any],
        *,
        argv: Sequence[str],
        program: str = "recipes/finetune.py",
        secrets: Sequence[str] = (),
    ) -> RunRecipe:
        """Builds the recipe from the parsed flags and the parser's defaults.

        Args:
            resolved: Flag -> value as the run used it (recipe file and command line merged, before the
                dataclasses' `__post_init__`).
            defaults: Flag -> the parser's default.
            argv: The command line's arguments.
            program: The script, as the command shows it.
            secrets: Secret values (tokens) to mask in the command.
        """
        flags = {
            name: _plain(value)
            for name, value in resolved.items()
            if not is_secret_flag(name) and (name == "seed" or _plain(value) != _plain(defaults.get(name)))
        }
        command = shlex.join(["python", program, *redact_command(argv, secrets)])
        return cls(command=command, flags=flags, seed=int(resolved.get("seed", 42)))

    def to_yaml(self) -> str:
        """The recipe file: library versions as comments, then the flags."""
        header = "".join(f"# {name}: {version}\n" for name, version in self.versions.items())
        return header + yaml.safe_dump(self.flags, sort_keys=False, default_flow_style=None)


def render_recipe_section(recipe: RunRecipe | None) -> str | None:
    """The card's markdown for a recipe (None: no section).

    Args:
        recipe: The run's recipe.
    """
    if recipe is None:
        return None
    versions = ", ".join(f"{name} {version}" for name, version in recipe.versions.items())
    return (
        f"{_SECTION}\nThis model was trained with (seed {recipe.seed}; {versions}):\n\n"
        f"```bash\n{recipe.command}\n```\n\n"
        "The full resolved recipe: every flag that differs from the defaults. Save it as `recipe.yaml` and run "
        "`python recipes/finetune.py recipe.yaml` to train it again; flags on the command line override it (local "
        "paths are shown by their last component: pass yours, e.g. `--dataset_name path/to/data`).\n\n"
        f"```yaml\n{recipe.to_yaml()}```"
    )


def recipe_from_card(card_text: str) -> dict[str, Any]:
    """The recipe (flag -> value) from a card's "Reproduce" section.

    Args:
        card_text: The card (README.md) text.

    Raises:
        ValueError: The card has no recipe section.
    """
    start = card_text.find(_SECTION)
    match = _YAML_BLOCK.search(card_text, start) if start >= 0 else None
    if match is None:
        raise ValueError("This card has no hf_transfer recipe section (cards pushed by recipes/finetune.py do).")
    return yaml.safe_load(match.group("body")) or {}
