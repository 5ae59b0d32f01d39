# Copyright 2026 The hf_transfer authors. Licensed under the Apache License, Version 2.0.
"""Publishing a trained model to the Hub: fail-fast checks, the model card and its plots, a safe upload.

The recipe calls these in order:

```python
repo_id = check_push_target(args.hub_model_id, args.hub_token)  # before training: bad id / token fail now
token = args.hub_token  # None: push_folder_to_hub falls back to HF_TOKEN / `hf auth login`
remove_secrets_from_args(training_args)  # training_args.bin must never hold the token
...  # train, save_model, evaluate, save_metrics
publish(trainer, task, model_args, data_args, repo_id=repo_id, token=token)
```

`publish` gathers the run's numbers and calls `publish_model`, the one call for a model trained in plain Python:
save the model and its processors, plot the training curve and the confusion matrix, render the card
(`render_model_card`), push (`push_folder_to_hub`), and optionally push a plain-timm copy (`export_timm`).
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import logging
import math
import os
import shlex
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from huggingface_hub import CommitInfo, EvalResult, HfApi, ModelCard, ModelCardData, constants, get_token
from huggingface_hub.errors import HfHubHTTPError, HFValidationError
from huggingface_hub.utils import filter_repo_objects, validate_repo_id

from .recipe_card import RunRecipe, render_recipe_section

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from transformers import PreTrainedConfig, PreTrainedModel, Trainer, TrainingArguments

    from .data import TaskInfo

__all__ = [
    "UPLOAD_ALLOW_PATTERNS",
    "UPLOAD_IGNORE_PATTERNS",
    "HubAuthError",
    "HubPushError",
    "assert_no_secret_in_files",
    "check_push_target",
    "export_timm",
    "files_to_upload",
    "find_secret_in_files",
    "model_card_template_path",
    "plot_confusion_matrix",
    "plot_training_curve",
    "publish",
    "publish_model",
    "push_folder_to_hub",
    "remove_secrets_from_args",
    "render_model_card",
    "render_timm_model_card",
    "training_hyperparameters",
    "write_model_card",
]

logger = logging.getLogger(__name__)

DISTRIBUTION_NAME = "hf-transfer-learning"  # not `hf-transfer`: that is an unrelated Rust download accelerator
MODEL_CARD_TEMPLATE = "transfer_model_card.md"
TIMM_MODEL_CARD_TEMPLATE = "timm_model_card.md"
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

_TASKS = {
    # task -> (title, Auto class)
    "image-classification": ("Image Classification", "AutoModelForImageClassification"),
    "text-classification": ("Text Classification", "AutoModelForSequenceClassification"),
}
# Trainer metrics that describe the run, not the model.
_NON_METRIC_KEYS = {
    "epoch",
    "runtime",
    "samples",
    "samples_per_second",
    "steps_per_second",
    "total_flos",
    "step",
    "model_preparation_time",
}
_FRAMEWORKS = [
    ("hf_transfer", DISTRIBUTION_NAME),
    ("Transformers", "transformers"),
    ("timm", "timm"),
    ("PyTorch", "torch"),
    ("Datasets", "datasets"),
    ("huggingface_hub", "huggingface_hub"),
]
_LABEL_PREVIEW = 20  # labels listed by name in the card; the rest are counted
_ANNOTATE_MAX_CLASSES = 20  # confusion-matrix cells get their value printed up to this many classes


class HubAuthError(RuntimeError):
    """No usable Hugging Face token for the push: missing, rejected, read-only, or the Hub could not be asked."""


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


# ---------------------------------------------------------------------------------------------------- before training


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


def assert_no_secret_in_files(paths: str | os.PathLike | Iterable[str | os.PathLike], secret: str) -> None:
    """Raises `AssertionError` naming every file (searched recursively) whose bytes contain `secret`.

    The message names the files, never the secret.

    Args:
        paths: Files and/or folders.
        secret: The string that must not appear (e.g. a token).
    """
    found = find_secret_in_files(paths, secret)
    assert not found, f"A secret was found in {len(found)} file(s): {', '.join(map(str, found))}"


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


# ---------------------------------------------------------------------------------------------------- model card


def model_card_template_path(name: str = MODEL_CARD_TEMPLATE) -> Path:
    """A card template shipped in the package (a copy of the repository's `model_cards/<name>`)."""
    return Path(str(resources.files("hf_transfer") / "model_cards" / name))


def render_model_card(
    config: PreTrainedConfig,
    *,
    repo_id: str,
    task: str,
    dataset_name: str | None = None,
    dataset_config_name: str | None = None,
    dataset_splits: Mapping[str, int | str] | None = None,
    hyperparameters: Mapping[str, Any] | None = None,
    eval_results: Mapping[str, float] | None = None,
    eval_split: str = "validation",
    fusion_weights: Mapping[str, float] | None = None,
    has_training_curve: bool = False,
    has_confusion_matrix: bool = False,
    timm_repo_id: str | None = None,
    license: str | None = None,
    tags: Sequence[str] = (),
    recipe: RunRecipe | None = None,
) -> ModelCard:
    """Renders the model card: Hub metadata (`ModelCardData`, `model-index`) plus the prose of the card template.

    Args:
        config: The model's config. Read: `backbones` (dicts with `source`, `library`, `modality`, `pooling`,
            `freeze`), `fusion`, `fusion_dim`, `head`, `head_hidden_sizes`, `head_activation`, `head_dropout`,
            `freeze`, `num_frozen_groups`, `id2label`, `problem_type`; any may be missing.
        repo_id: Where the model is pushed, `"namespace/name"` (used in the loading snippet).
        task: `"image-classification"` or `"text-classification"`.
        dataset_name: The Hub dataset id (e.g. `"uoft-cs/cifar10"`), or a local name, or None.
        dataset_config_name: The dataset config (e.g. `"mrpc"`).
        dataset_splits: Split name -> number of examples (or a description), e.g. `{"train": 45000}`.
        hyperparameters: Name -> value, shown as a table.
        eval_results: Metrics as the Trainer writes them (`{"eval_accuracy": 0.91, "eval_loss": 0.3, ...}`).
            Run statistics (`eval_runtime`, `epoch`, ...) are dropped; the loss is shown but not put in
            `model-index`.
        eval_split: The split `eval_results` were measured on.
        fusion_weights: Backbone name -> learned fusion weight, for weighted fusions.
        has_training_curve: Embed `training_curve.png` (written next to README.md by `plot_training_curve`).
        has_confusion_matrix: Embed `confusion_matrix.png` (written by `plot_confusion_matrix`).
        timm_repo_id: Where the plain-timm export of this model is pushed (see `export_timm`); the card points to
            it and shows how to load it.
        license: A Hub license id (e.g. `"apache-2.0"`); check the backbones' and dataset's licenses.
        tags: Extra Hub tags.
        recipe: The run's command and resolved recipe (`hf_transfer.recipe_card.RunRecipe`): a "Reproduce"
            section.

    Returns:
        The card; `write_model_card` saves it as README.md.
    """
    if task not in _TASKS:
        raise ValueError(f"Unknown task {task!r}; valid tasks are: {', '.join(_TASKS)}.")
    task_title, auto_class = _TASKS[task]
    model_name = repo_id.split("/")[-1]
    specs = list(getattr(config, "backbones", None) or [])
    backbones = [_describe_backbone(config, i, spec) for i, spec in enumerate(specs)]
    base_models = [b["hub_id"] for b in backbones if b["hub_id"]]
    metrics = _metrics(eval_results or {})
    problem_type = getattr(config, "problem_type", None) or "single_label_classification"
    labels = _labels(config)

    modalities = {b["modality"] for b in backbones}
    card_data = _model_card_data(
        model_name=model_name,
        task=task,
        base_models=base_models,
        dataset_name=dataset_name,
        dataset_config_name=dataset_config_name,
        metrics=metrics,
        eval_split=eval_split,
        library_name="transformers",
        license=license,
        tags=["hf_transfer", "transfer-learning", task]
        + (["timm"] if any(b["library"] == "timm" for b in backbones) else [])
        + (["multimodal"] if len(modalities) > 1 else [])
        + list(tags),
    )

    fusion = getattr(config, "fusion", None) if len(specs) > 1 else None
    template_kwargs = {
        "model_name": model_name,
        "repo_id": repo_id,
        "task_title": task_title.lower(),
        "auto_class": auto_class,
        "backbones": backbones,
        "backbone_links": [b["link"] for b in backbones] or ["a pretrained backbone"],
        "freeze_summary": _freeze_summary(backbones, fusion),
        "head_summary": _head_summary(config),
        "fusion": fusion,
        "fusion_dim": getattr(config, "fusion_dim", None) if fusion else None,
        "fusion_weights": [_row(name, f"{value:.4f}") for name, value in (fusion_weights or {}).items()],
        "problem_type": problem_type,
        "num_labels": len(labels) if problem_type != "regression" else None,
        "label_preview": _label_preview(labels),
        "input_kind": _input_kind(modalities),
        "output_description": _output_description(problem_type, len(labels)),
        "dataset_name": dataset_name,
        "dataset_title": f"{dataset_name} ({dataset_config_name})" if dataset_config_name else dataset_name,
        "dataset_link": _dataset_link(dataset_name),
        "dataset_config_name": dataset_config_name,
        "dataset_splits": [
            _row(f"{split} split", _format_split(size)) for split, size in (dataset_splits or {}).items()
        ],
        "eval_split": eval_split,
        "hyperparameters": [_row(name, _format_value(value)) for name, value in (hyperparameters or {}).items()],
        "eval_rows": [_row(name, f"{value:.4f}") for name, value in metrics],
        "has_training_curve": has_training_curve,
        "has_confusion_matrix": has_confusion_matrix,
        "timm_repo_id": timm_repo_id,
        "framework_versions": [_row(name, _version(dist)) for name, dist in _FRAMEWORKS],
        "reproduce": render_recipe_section(recipe),
    }
    return ModelCard.from_template(card_data, template_path=str(model_card_template_path()), **template_kwargs)


def write_model_card(output_dir: str | os.PathLike, card: ModelCard) -> Path:
    """Saves `card` as `output_dir/README.md` and returns that path."""
    path = Path(output_dir) / "README.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    card.save(path)
    return path


def _model_card_data(
    *,
    model_name: str,
    task: str,
    base_models: Sequence[str],
    dataset_name: str | None,
    dataset_config_name: str | None,
    metrics: Sequence[tuple[str, float]],
    eval_split: str,
    library_name: str,
    license: str | None,
    tags: Sequence[str],
) -> ModelCardData:
    """The Hub metadata of a card: base models, dataset, tags, and `model-index` from the eval metrics."""
    dataset_hub_id = dataset_name if dataset_name and _looks_like_hub_id(dataset_name) else None
    eval_entries = [
        EvalResult(
            task_type=task,
            task_name=_TASKS[task][0],
            dataset_type=dataset_hub_id or "custom",
            dataset_name=dataset_name or "custom dataset",
            dataset_config=dataset_config_name,
            dataset_split=eval_split,
            metric_type=name,
            metric_name=name.replace("_", " ").capitalize(),
            metric_value=value,
        )
        for name, value in metrics
        if name != "loss" and math.isfinite(value)
    ]
    return ModelCardData(
        model_name=model_name,
        base_model=(base_models[0] if len(base_models) == 1 else list(base_models)) or None,
        datasets=[dataset_hub_id] if dataset_hub_id else None,
        metrics=[name for name, _ in metrics if name != "loss"] or None,
        pipeline_tag=task,
        library_name=library_name,
        license=license,
        tags=_unique(tags),
        eval_results=eval_entries or None,
        # Several base models would read as a merge on the Hub: they are fine-tuned together.
        base_model_relation="finetune" if base_models else None,
    )


def _dataset_link(dataset_name: str | None) -> str | None:
    if dataset_name and _looks_like_hub_id(dataset_name):
        return f"https://huggingface.co/datasets/{dataset_name}"
    return None


def _row(name: str, value: str) -> dict[str, str]:
    return {"name": name, "value": value}


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _looks_like_local_path(source: str) -> bool:
    return (
        source.startswith((".", "/", "~"))
        or "\\" in source
        or os.path.isabs(source)
        or Path(source).suffix in {".safetensors", ".pth", ".pt", ".bin", ".ckpt"}
        or os.path.exists(source)
    )


def _looks_like_hub_id(source: str) -> bool:
    if _looks_like_local_path(source):
        return False
    try:
        validate_repo_id(source)
    except HFValidationError:
        return False
    return True


def _backbone_hub_id(spec: Mapping[str, Any]) -> str | None:
    """The Hub repo a backbone's weights came from, or None (random init, a local path, a bare timm name)."""
    if spec.get("pretrained") is False:
        return None
    if spec.get("pretrained") is True:
        # timm records where its pretrained weights live; only trusted when the spec says they were loaded.
        pretrained_cfg = (spec.get("config") or {}).get("pretrained_cfg") or {}
        if pretrained_cfg.get("hf_hub_id") and _looks_like_hub_id(pretrained_cfg["hf_hub_id"]):
            return pretrained_cfg["hf_hub_id"]
    source = str(spec.get("source") or "")
    for prefix in ("hf-hub:", "hf_hub:"):
        source = source.removeprefix(prefix)
    is_timm_name = source.startswith("timm:") or (spec.get("library") == "timm" and "/" not in source)
    source = source.removeprefix("timm:")
    if is_timm_name:
        # timm's pretrained tags live on the Hub as timm/<architecture>.<tag>; a bare architecture name does not.
        source = f"timm/{source}" if "." in source.strip(".") else ""
    return source if source and _looks_like_hub_id(source) else None


def _describe_backbone(config: Any, index: int, spec: Mapping[str, Any]) -> dict[str, Any]:
    source = str(spec.get("source") or f"backbone {index}")
    hub_id = _backbone_hub_id(spec)
    if callable(getattr(config, "backbone_freeze", None)):
        freeze = config.backbone_freeze(index)
    else:
        freeze = spec.get("freeze")
        if freeze is None:
            freeze = getattr(config, "freeze", "none")
        if freeze == "partial":
            freeze = getattr(config, "num_frozen_groups", 0)
    if hub_id:
        link = f"[{hub_id}](https://huggingface.co/{hub_id})"
    elif _looks_like_local_path(source):
        link = f"`{Path(source).name}` (local weights)"  # the name only: a card should not publish local paths
    else:
        link = f"`{source}`"
    return {
        "source": source,
        "hub_id": hub_id,
        "link": link,
        "library": spec.get("library") or "unknown",
        "modality": spec.get("modality") or "unknown",
        "pooling": spec.get("pooling") or "auto",
        "freeze": _freeze_text(freeze),
        "frozen": _freeze_state(freeze),
    }


def _freeze_state(freeze: Any) -> str:
    """`"trainable"`, `"frozen"` or `"partial"`, from `"none"` / `"backbone"` (or `"all"`, True) / a group count."""
    if isinstance(freeze, bool):
        return "frozen" if freeze else "trainable"
    if isinstance(freeze, int):
        return "partial" if freeze > 0 else "trainable"
    return "frozen" if freeze in ("all", "backbone") else "trainable"


def _freeze_text(freeze: Any) -> str:
    state = _freeze_state(freeze)
    if state == "frozen":
        return "frozen"
    if state == "partial":
        return f"first {freeze} layer group{'s' if freeze != 1 else ''} frozen, the rest fine-tuned"
    return "fine-tuned"


def _freeze_summary(backbones: Sequence[Mapping[str, Any]], fusion: str | None) -> str:
    states = {b["frozen"] for b in backbones}
    trained = "the fusion and the head are" if fusion else "the head is"
    if states == {"frozen"}:
        return f"every backbone frozen: only {trained} trained, on fixed features (a probe)"
    if states == {"trainable"}:
        return "full fine-tuning: every backbone layer is trained together with the head"
    if len(backbones) == 1:
        return backbones[0]["freeze"]
    return "per backbone, see the table above"


def _head_summary(config: Any) -> str:
    if getattr(config, "head", "linear") == "mlp":
        sizes = list(getattr(config, "head_hidden_sizes", None) or [])
        activation = getattr(config, "head_activation", None)
        dropout = getattr(config, "head_dropout", None)
        details = ", ".join(
            part
            for part in (
                f"hidden sizes {sizes}" if sizes else "",
                f"{activation} activations" if activation else "",
                f"dropout {dropout}" if dropout else "",
            )
            if part
        )
        return f"MLP ({details}) then a linear output layer" if details else "MLP then a linear output layer"
    dropout = getattr(config, "head_dropout", None)
    return "linear classifier on the pooled features" + (f" (dropout {dropout})" if dropout else "")


def _labels(config: Any) -> list[str]:
    id2label = getattr(config, "id2label", None) or {}
    return [str(id2label[key]) for key in sorted(id2label, key=lambda k: int(k))]


def _label_preview(labels: Sequence[str]) -> str:
    shown = ", ".join(f"`{label}`" for label in labels[:_LABEL_PREVIEW])
    more = len(labels) - _LABEL_PREVIEW
    return shown + (f", … ({more} more)" if more > 0 else "")


def _input_kind(modalities: set[str]) -> str:
    if modalities == {"image"}:
        return "images"
    if modalities == {"text"}:
        return "texts"
    if modalities == {"image", "text"}:
        return "image–text pairs"
    return "inputs"


def _output_description(problem_type: str, num_labels: int) -> str:
    if problem_type == "regression":
        return "a real-valued score"
    if problem_type == "multi_label_classification":
        return f"any subset of {num_labels} labels"
    return f"one of {num_labels} labels"


def _metrics(eval_results: Mapping[str, Any]) -> list[tuple[str, float]]:
    """`{"eval_accuracy": 0.9, "eval_runtime": 3.1}` -> `[("accuracy", 0.9)]`, numeric metrics only."""
    metrics = []
    for key, value in eval_results.items():
        name = key.removeprefix("eval_")
        if name in _NON_METRIC_KEYS or isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
            continue
        metrics.append((name, float(value)))
    return metrics


def _format_value(value: Any) -> str:
    if isinstance(value, float) and not isinstance(value, bool):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(_format_value, value))
    return str(value).replace("|", "\\|")  # a pipe would split the markdown table cell


def _format_split(size: int | str) -> str:
    return f"{size:,} examples" if isinstance(size, int) else str(size)


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


# ---------------------------------------------------------------------------------------------------- plots


def plot_training_curve(log_history: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> Path | None:
    """Plots train loss, eval loss and eval metrics against the step, from `trainer.state.log_history`.

    Args:
        log_history: The Trainer's log entries (`{"loss": .., "step": ..}`, `{"eval_loss": .., "eval_accuracy": ..}`).
        path: Where to write the PNG.

    Returns:
        The PNG's path, or None when the history holds no loss to plot (nothing is written).
    """
    train = [(e["step"], e["loss"]) for e in log_history if "loss" in e and "step" in e]
    evals = [e for e in log_history if "eval_loss" in e and "step" in e]
    eval_loss = [(e["step"], e["eval_loss"]) for e in evals]
    metric_names = _unique(
        key
        for e in evals
        for key, value in e.items()
        if key.startswith("eval_")
        and key != "eval_loss"
        and key.removeprefix("eval_") not in _NON_METRIC_KEYS
        and isinstance(value, (int, float))
    )
    if not train and not eval_loss:
        return None

    from matplotlib.figure import Figure  # no pyplot: no global backend, safe in threads and headless runs

    fig = Figure(figsize=(11 if metric_names else 6, 4), layout="constrained")
    axes = fig.subplots(1, 2 if metric_names else 1, squeeze=False)[0]
    if train:
        axes[0].plot(*zip(*train), label="train loss", linewidth=1)
    if eval_loss:
        axes[0].plot(*zip(*eval_loss), "o-", label="eval loss")
    axes[0].set(xlabel="step", ylabel="loss", title="Loss")
    axes[0].legend()
    axes[0].grid(alpha=0.3)
    if metric_names:
        for name in metric_names:
            points = [(e["step"], e[name]) for e in evals if name in e]
            axes[1].plot(*zip(*points), "o-", label=name.removeprefix("eval_"))
        axes[1].set(xlabel="step", title="Evaluation metrics")
        axes[1].legend()
        axes[1].grid(alpha=0.3)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def plot_confusion_matrix(
    y_true: Sequence[int] | np.ndarray,
    y_pred: Sequence[int] | np.ndarray,
    labels: Sequence[str],
    path: str | os.PathLike,
) -> Path:
    """Plots the row-normalised confusion matrix (each true label's row sums to 1).

    Readable from a few classes to hundreds: values are printed in the cells up to 20 classes; above that, only the
    colour scale, and the tick labels thin out.

    Args:
        y_true: True label ids (or label names from `labels`).
        y_pred: Predicted label ids (or names).
        labels: Label names, in id order.
        path: Where to write the PNG.

    Returns:
        The PNG's path.
    """
    fig = _confusion_matrix_figure(_normalized_confusion_matrix(y_true, y_pred, labels), labels, len(y_true))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def _normalized_confusion_matrix(y_true: Any, y_pred: Any, labels: Sequence[str]) -> np.ndarray:
    """`(n, n)` matrix, rows = true labels, each row summing to 1 (0 for labels absent from `y_true`)."""
    n = len(labels)
    if n == 0:
        raise ValueError("A confusion matrix needs at least one label.")
    true_ids, pred_ids = _label_ids(y_true, labels), _label_ids(y_pred, labels)
    if true_ids.shape != pred_ids.shape:
        raise ValueError(f"y_true and y_pred differ in length: {len(true_ids)} vs {len(pred_ids)}.")
    counts = np.zeros((n, n), dtype=np.int64)
    np.add.at(counts, (true_ids, pred_ids), 1)
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros((n, n)), where=totals > 0)


def _confusion_matrix_figure(matrix: np.ndarray, labels: Sequence[str], num_examples: int) -> Figure:
    from matplotlib.figure import Figure

    n = len(labels)
    side = float(np.clip(3 + 0.4 * n, 5, 20))
    fig = Figure(figsize=(side + 1.5, side), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(matrix, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.02, label="fraction of the true label")
    step = max(1, math.ceil(n / 50))  # at most ~50 tick labels per axis
    ticks = np.arange(0, n, step)
    names = [labels[i] if len(labels[i]) <= 20 else labels[i][:19] + "…" for i in ticks]
    fontsize = 9 if n <= _ANNOTATE_MAX_CLASSES else 6
    ax.set_xticks(ticks, names, rotation=90, fontsize=fontsize)
    ax.set_yticks(ticks, names, fontsize=fontsize)
    ax.set(xlabel="predicted label", ylabel="true label", title=f"Confusion matrix ({num_examples:,} examples)")
    if n <= _ANNOTATE_MAX_CLASSES:
        for i, j in np.ndindex(n, n):
            if matrix[i, j] > 0:
                color = "white" if matrix[i, j] > 0.5 else "black"
                ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", color=color, fontsize=8)
    return fig


def _label_ids(values: Sequence[Any] | np.ndarray, labels: Sequence[str]) -> np.ndarray:
    values = np.asarray(values)
    if values.dtype.kind in "iu":
        ids = values.astype(np.int64)
    else:
        index = {str(label): i for i, label in enumerate(labels)}
        unknown = sorted({str(v) for v in values.tolist()} - index.keys())
        if unknown:
            raise ValueError(f"Unknown labels {unknown[:5]}; expected label ids or one of the given label names.")
        ids = np.array([index[str(v)] for v in values.tolist()], dtype=np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= len(labels)):
        raise ValueError(f"Label ids must be in [0, {len(labels)}); got {ids.min()}..{ids.max()}.")
    return ids


# ---------------------------------------------------------------------------------------------------- push


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


# ---------------------------------------------------------------------------------------------------- timm export


def export_timm(model: PreTrainedModel, output_dir: str | os.PathLike) -> Path:
    """Writes a one-timm-backbone, linear-head model in timm's own Hub format.

    The folder holds `config.json` (`architecture`, `num_classes`, `num_features`, `global_pool`, `label_names`,
    `model_args`, `pretrained_cfg` with the preprocessing and `label_names`) and `model.safetensors` with timm's
    state-dict keys: the backbone's own, plus our linear head under the name of the architecture's classifier (`fc`,
    `head`, `classifier`, ...). Pushed to the Hub, it loads with `timm.create_model("hf-hub:<repo>",
    pretrained=True)` and with stock transformers (`AutoModelForImageClassification`, which picks
    `TimmWrapperForImageClassification`), with no hf_transfer and no remote code. The export is checked to give the
    model's own logits before anything is written.

    Args:
        model: A `TransferForImageClassification` with exactly one timm backbone and a linear head (no fusion, no
            MLP).
        output_dir: The folder to write (created if needed).

    Returns:
        `output_dir`, as a `Path`.

    Raises:
        ValueError: The model does not map onto a plain timm model; the message says why.

    Example:
        ```python
        >>> export_timm(model, "outputs/resnet18-cifar10/timm_export")
        PosixPath('outputs/resnet18-cifar10/timm_export')
        >>> timm.create_model("local-dir:outputs/resnet18-cifar10/timm_export", pretrained=True)
        ```
    """
    from timm.models import save_for_hf

    spec = _timm_export_spec(model)
    timm_model = _timm_model_with_head(model, spec)
    _check_same_logits(model, timm_model, spec["data_config"]["input_size"])

    labels = _labels(model.config)
    folder = Path(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    model_config: dict[str, Any] = {
        "label_names": labels,
        # num_classes keeps timm from dropping label_names as belonging to the backbone's pretraining head.
        "pretrained_cfg": {"label_names": labels, "num_classes": len(labels)},
    }
    if getattr(model.config, "problem_type", None):
        model_config["problem_type"] = model.config.problem_type  # read by transformers' TimmWrapperConfig
    save_for_hf(timm_model, str(folder), model_config=model_config, safe_serialization=True)

    config_path = folder / "config.json"
    config = json.loads(config_path.read_text())
    # timm records num_classes in model_args too, but transformers' TimmWrapper passes num_classes itself and would
    # fail on the duplicate keyword; timm reads the top-level num_classes anyway.
    (config.get("model_args") or {}).pop("num_classes", None)
    # The pretrained tag names the weights the backbone started from, not these.
    config["pretrained_cfg"].pop("tag", None)
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    return folder


def check_timm_exportable(model: PreTrainedModel) -> None:
    """Raises the ValueError `export_timm` would raise, before any training: the model must be exactly one timm
    backbone with a linear head."""
    _timm_export_spec(model)


def _timm_export_spec(model: Any) -> dict[str, Any]:
    """The single timm backbone's spec, or a ValueError that lists why the model is no plain timm model."""
    from torch import nn

    config = getattr(model, "config", None)
    specs = list(getattr(config, "backbones", None) or [])
    head = getattr(model, "head", None)
    if not specs or not isinstance(head, nn.Module):
        raise ValueError(
            f"Cannot export {type(model).__name__} as a timm model: only hf_transfer classification models "
            "(TransferForImageClassification) with one timm backbone and a linear head can be."
        )
    reasons = []
    if len(specs) > 1:
        sources = ", ".join(str(spec.get("source")) for spec in specs)
        reasons.append(f"it fuses {len(specs)} backbones ({sources}) and a timm model has one")
    elif specs[0].get("library") != "timm":
        reasons.append(f"its backbone {specs[0].get('source')!r} is a {specs[0].get('library')} model, not a timm one")
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    if getattr(config, "head", "linear") != "linear" or len(linears) != 1:
        reasons.append(
            f"its head is an MLP (hidden sizes {getattr(config, 'head_hidden_sizes', None)}) and a timm classifier "
            "is one linear layer"
        )
    if reasons:
        raise ValueError(
            f"Cannot export this model as a plain timm model: {'; '.join(reasons)}. Only one timm backbone with a "
            "linear head maps onto timm's format. Publish it without the timm export: it loads with hf_transfer "
            "installed, or anywhere with trust_remote_code=True."
        )
    return specs[0]


def _timm_model_with_head(model: Any, spec: Mapping[str, Any]) -> Any:
    """A fresh timm model of the backbone's architecture with the backbone's weights and our head as classifier."""
    import timm
    from torch import nn

    timm_config = spec["config"]
    head = next(m for m in model.head.modules() if isinstance(m, nn.Linear))
    timm_model = timm.create_model(
        timm_config["architecture"],
        pretrained=False,
        num_classes=head.out_features,
        pretrained_cfg=dict(timm_config.get("pretrained_cfg") or {}) or None,
        **(timm_config.get("model_args") or {}),
    )
    classifier = timm_model.get_classifier()
    if not isinstance(classifier, nn.Linear) or classifier.weight.shape != head.weight.shape:
        raise ValueError(
            f"Cannot export this model as a plain timm model: the classifier of timm's {timm_config['architecture']} "
            f"is {type(classifier).__name__} {tuple(getattr(classifier, 'weight', ()).shape or ())}, not a linear "
            f"layer of shape {tuple(head.weight.shape)} like this model's head."
        )
    classifier_name = next(name for name, module in timm_model.named_modules() if module is classifier)
    backbone = model.get_base_model().backbones[0].model
    state_dict = dict(backbone.state_dict())
    state_dict[f"{classifier_name}.weight"] = head.weight.detach()
    state_dict[f"{classifier_name}.bias"] = head.bias.detach()
    timm_model.load_state_dict(state_dict, strict=True)  # every key of timm's own layout, nothing left over
    return timm_model.eval()


def _check_same_logits(model: Any, timm_model: Any, input_size: Sequence[int]) -> None:
    import torch

    parameter = next(model.parameters())
    pixels = torch.randn(2, *input_size, generator=torch.Generator().manual_seed(0))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            expected = model(pixel_values=pixels.to(parameter.device, parameter.dtype)).logits.float().cpu()
            exported = timm_model(pixels)
    finally:
        model.train(was_training)
    tolerance = 1e-4 if parameter.dtype == torch.float32 else 5e-2
    if not torch.allclose(exported, expected, rtol=tolerance, atol=tolerance):
        raise ValueError(
            f"The timm export of {timm_model.__class__.__name__} does not reproduce the model's logits (max "
            f"difference {(exported - expected).abs().max().item():.3g}): its pooling or head differs from timm's "
            "own forward_head. Publish it without the timm export."
        )


def render_timm_model_card(
    config: PreTrainedConfig,
    timm_config: Mapping[str, Any],
    *,
    repo_id: str,
    source_repo_id: str | None = None,
    dataset_name: str | None = None,
    dataset_config_name: str | None = None,
    eval_results: Mapping[str, float] | None = None,
    eval_split: str = "validation",
    license: str | None = None,
    tags: Sequence[str] = (),
) -> ModelCard:
    """Renders the card of a timm export (`export_timm`): timm metadata, loading snippets, the eval results.

    Args:
        config: The hf_transfer model's config (backbones, labels).
        timm_config: The export's `config.json` (`architecture`, `pretrained_cfg`).
        repo_id: Where the export is pushed.
        source_repo_id: The hf_transfer repo of the same model, whose card describes the training run.
        dataset_name: The Hub dataset id, or a local name, or None.
        dataset_config_name: The dataset config.
        eval_results: Metrics as the Trainer writes them (see `render_model_card`).
        eval_split: The split `eval_results` were measured on.
        license: A Hub license id.
        tags: Extra Hub tags.

    Returns:
        The card; `write_model_card` saves it as README.md.
    """
    specs = list(getattr(config, "backbones", None) or [])
    base_models = [hub_id for hub_id in (_backbone_hub_id(spec) for spec in specs) if hub_id]
    metrics = _metrics(eval_results or {})
    labels = _labels(config)
    pretrained_cfg = timm_config.get("pretrained_cfg") or {}
    card_data = _model_card_data(
        model_name=repo_id.split("/")[-1],
        task="image-classification",
        base_models=base_models,
        dataset_name=dataset_name,
        dataset_config_name=dataset_config_name,
        metrics=metrics,
        eval_split=eval_split,
        library_name="timm",
        license=license,
        tags=["timm", "transformers", "image-classification", "hf_transfer", "transfer-learning", *tags],
    )
    input_size = pretrained_cfg.get("input_size") or [3, 224, 224]
    return ModelCard.from_template(
        card_data,
        template_path=str(model_card_template_path(TIMM_MODEL_CARD_TEMPLATE)),
        model_name=repo_id.split("/")[-1],
        repo_id=repo_id,
        source_repo_id=source_repo_id,
        architecture=timm_config["architecture"],
        num_labels=len(labels),
        label_preview=_label_preview(labels),
        input_size="×".join(map(str, input_size[1:])),
        mean=_format_value(list(pretrained_cfg.get("mean") or [])),
        std=_format_value(list(pretrained_cfg.get("std") or [])),
        dataset_name=dataset_name,
        dataset_title=f"{dataset_name} ({dataset_config_name})" if dataset_config_name else dataset_name,
        dataset_link=_dataset_link(dataset_name),
        eval_split=eval_split,
        eval_rows=[_row(name, f"{value:.4f}") for name, value in metrics],
        framework_versions=[_row(name, _version(dist)) for name, dist in _FRAMEWORKS],
    )


# ---------------------------------------------------------------------------------------------------- publish


def publish_model(
    model: PreTrainedModel,
    output_dir: str | os.PathLike,
    *,
    repo_id: str,
    token: str | None = None,
    task: str | None = None,
    processors: Sequence[Any] | None = None,
    dataset_name: str | None = None,
    dataset_config_name: str | None = None,
    dataset_splits: Mapping[str, int | str] | None = None,
    hyperparameters: Mapping[str, Any] | None = None,
    eval_results: Mapping[str, float] | None = None,
    eval_split: str = "validation",
    log_history: Sequence[Mapping[str, Any]] | None = None,
    eval_labels: Sequence[int] | np.ndarray | None = None,
    eval_predictions: Sequence[int] | np.ndarray | None = None,
    timm_repo_id: str | None = None,
    license: str | None = None,
    tags: Sequence[str] = (),
    commit_message: str | None = None,
    private: bool | None = None,
    recipe: RunRecipe | None = None,
) -> CommitInfo:
    """Saves a trained model with its processors, plots and card in `output_dir`, and pushes it to the Hub.

    One call for a model trained in Python (`publish` does the same for a Trainer run, gathering the arguments):
    `save_pretrained` (weights as safetensors, config with `auto_map`, the modeling code), the processors
    `pipeline()` needs, `training_curve.png` from the log history, `confusion_matrix.png` from eval predictions,
    README.md, then `push_folder_to_hub`. With `timm_repo_id`, a plain-timm copy (`export_timm`) is written to
    `output_dir/timm_export/` with its own card and pushed there too (after the main repo).

    Args:
        model: The trained model (a `TransferFor...Classification`).
        output_dir: The run's folder (the Trainer's `output_dir`); created if needed, never emptied.
        repo_id: `"namespace/name"` (see `check_push_target`).
        token: A token with write access; defaults to `huggingface_hub.get_token()`.
        task: `"image-classification"` or `"text-classification"`; by default from the model's main input.
        processors: One image processor / tokenizer per backbone. By default those already in `output_dir`, else
            each backbone's own (`hf_transfer.processing.load_processors`).
        dataset_name: The Hub dataset id (or a local name; local paths are shown by their last component only).
        dataset_config_name: The dataset config (e.g. `"mrpc"`).
        dataset_splits: Split name -> number of examples.
        hyperparameters: Name -> value (see `training_hyperparameters`).
        eval_results: The eval metrics, Trainer-style (`{"eval_accuracy": 0.91, ...}`).
        eval_split: The split they were measured on.
        log_history: `trainer.state.log_history`, for the training curve.
        eval_labels: True label ids on `eval_split`, for the confusion matrix (with `eval_predictions`).
        eval_predictions: Predicted label ids on `eval_split`.
        timm_repo_id: Also push a plain-timm export there (one timm backbone with a linear head only).
        license: A Hub license id for both cards.
        tags: Extra Hub tags.
        commit_message: The commit's title; by default it names the eval results.
        private: Visibility of repos created by this call.
        recipe: The run's command and resolved recipe, shown in the card (see `hf_transfer.recipe_card`).

    Returns:
        The main repo's commit (`.oid` is its sha).

    Raises:
        ValueError: `timm_repo_id` is given for a model that is no plain timm model (raised before anything is
            written), or a file to upload contains the token.
        HubPushError: The upload failed; `output_dir` is intact and the message gives the retry command.

    Example:
        ```python
        >>> trainer.train()
        >>> publish_model(model, "outputs/run", repo_id="alice/resnet18-pets", log_history=trainer.state.log_history,
        ...               eval_results=trainer.evaluate())
        ```
    """
    model = getattr(model, "module", model)  # a DistributedDataParallel wrapper holds the model as `module`
    if timm_repo_id:
        _timm_export_spec(model)  # fail before writing or pushing anything
    folder = Path(output_dir)
    task = task or _task_of(model)
    model.save_pretrained(folder)
    _save_processors_once(model, folder, processors)

    curve = plot_training_curve(log_history, folder / "training_curve.png") if log_history else None
    confusion = None
    if eval_labels is not None and eval_predictions is not None and len(eval_labels):
        confusion = plot_confusion_matrix(
            eval_labels, eval_predictions, _labels(model.config), folder / "confusion_matrix.png"
        )
    dataset_name = _publishable_dataset_name(dataset_name)
    card_kwargs = dict(
        dataset_name=dataset_name,
        dataset_config_name=dataset_config_name,
        eval_results=eval_results,
        eval_split=eval_split,
        license=license,
        tags=tags,
    )
    fusion_weights = model.fusion_weights() if callable(getattr(model, "fusion_weights", None)) else None
    card = render_model_card(
        model.config,
        repo_id=repo_id,
        task=task,
        dataset_splits=dataset_splits,
        hyperparameters=hyperparameters,
        fusion_weights=fusion_weights,
        has_training_curve=curve is not None,
        has_confusion_matrix=confusion is not None,
        timm_repo_id=timm_repo_id,
        recipe=recipe,
        **card_kwargs,
    )
    write_model_card(folder, card)
    if timm_repo_id:
        timm_folder = export_timm(model, folder / TIMM_EXPORT_DIR)
        timm_config = json.loads((timm_folder / "config.json").read_text())
        timm_card = render_timm_model_card(
            model.config, timm_config, repo_id=timm_repo_id, source_repo_id=repo_id, **card_kwargs
        )
        write_model_card(timm_folder, timm_card)

    commit_message = commit_message or _commit_message(eval_results, eval_split)
    commit = push_folder_to_hub(folder, repo_id, token=token, commit_message=commit_message, private=private)
    if timm_repo_id:
        push_folder_to_hub(
            folder / TIMM_EXPORT_DIR, timm_repo_id, token=token, commit_message=commit_message, private=private
        )
    return commit


def publish(
    trainer: Trainer,
    task: TaskInfo,
    model_args: Any,
    data_args: Any,
    *,
    repo_id: str,
    token: str | None = None,
    eval_dataset: Any | None = None,
    commit_message: str | None = None,
    timm_repo_id: str | None = None,
    license: str | None = None,
    private: bool | None = None,
    recipe: RunRecipe | None = None,
) -> CommitInfo | None:
    """Publishes a finished recipe run: the model, its processors, plots and a card with the run's real numbers.

    Gathers what the card reports from the run: eval metrics of the main eval split (`all_results.json` /
    `eval_results.json` in `output_dir`, else the last evaluation in the trainer's log), hyperparameters (learning
    rate, batch sizes × world size, epochs or steps, optimizer, scheduler, warmup, weight decay, seed, precision, and
    the model flags: freeze, head, fusion, ...), dataset and split sizes, the learned fusion weights; predicts
    `eval_dataset` for the confusion matrix (single-label classification); then `publish_model`.

    Call it once training and evaluation are done, after `trainer.save_model()`. On a multi-process run only the
    main process publishes (the others return None); the predictions are then made on the main process alone, so
    calling it from the main process only does not hang.

    Args:
        trainer: The run's Trainer (`trainer.args.output_dir` is published).
        task: The `hf_transfer.data.TaskInfo` of the data (labels, problem type, eval splits, dataset).
        model_args: The recipe's model arguments (`backbone`, `freeze`, `head`, `fusion`, ...).
        data_args: The recipe's `DataTrainingArguments` (dataset name and config, sequence length).
        repo_id: `"namespace/name"`, as returned by `check_push_target`.
        token: A token with write access; defaults to `huggingface_hub.get_token()`.
        eval_dataset: The processed main eval split; defaults to `trainer.eval_dataset`.
        commit_message: The commit's title; by default it names the eval results.
        timm_repo_id: Also push a plain-timm export there (see `export_timm`).
        license: A Hub license id.
        private: Visibility of repos created by this call.
        recipe: The run's command and resolved recipe, shown in the card (see `hf_transfer.recipe_card`).

    Returns:
        The main repo's commit, or None on processes other than the main one.

    Example:
        ```python
        >>> repo_id = check_push_target(training_args.hub_model_id, token)  # before training
        >>> ...  # train, trainer.save_model(), evaluate, save_metrics
        >>> publish(trainer, task, model_args, data_args, repo_id=repo_id, token=token).commit_url
        ```
    """
    if not trainer.is_world_process_zero():
        return None
    args = trainer.args
    output_dir = Path(args.output_dir)
    eval_split = task.eval_splits[0] if task.eval_splits else "validation"
    if eval_dataset is None:
        eval_dataset = trainer.eval_dataset
    if isinstance(eval_dataset, Mapping):
        eval_dataset = eval_dataset.get(eval_split, next(iter(eval_dataset.values()), None))

    labels = predictions = None
    if eval_dataset is not None and task.problem_type == "single_label_classification":
        labels, predictions = _eval_label_ids(trainer, eval_dataset)

    run_results = _read_results(output_dir / "all_results.json")
    other_splits = tuple(task.metric_prefix(split) + "_" for split in task.eval_splits[1:])
    eval_results = _main_split_metrics(output_dir, trainer.state.log_history, other_splits)
    splits: dict[str, int] = {}
    train_size = _length(trainer.train_dataset) or run_results.get("train_samples")
    if train_size:
        splits["train"] = int(train_size)
    eval_size = _length(eval_dataset) or run_results.get("eval_samples")
    if eval_size:
        splits[eval_split] = int(eval_size)

    num_backbones = len(getattr(trainer.model.config, "backbones", None) or [None])
    hyperparameters = training_hyperparameters(args, model_args, num_backbones=num_backbones)
    if task.modality != "image" and getattr(data_args, "max_seq_length", None):
        hyperparameters["max_seq_length"] = data_args.max_seq_length
    return publish_model(
        trainer.model,
        output_dir,
        repo_id=repo_id,
        token=token,
        dataset_name=task.dataset_name or getattr(data_args, "dataset_name", None),
        dataset_config_name=task.dataset_config_name or getattr(data_args, "dataset_config_name", None),
        dataset_splits=splits,
        hyperparameters=hyperparameters,
        eval_results=eval_results,
        eval_split=eval_split,
        log_history=trainer.state.log_history,
        eval_labels=labels,
        eval_predictions=predictions,
        timm_repo_id=timm_repo_id,
        license=license,
        commit_message=commit_message,
        private=private,
        recipe=recipe,
    )


def training_hyperparameters(
    training_args: TrainingArguments, model_args: Any = None, *, num_backbones: int = 1
) -> dict[str, Any]:
    """The hyperparameters a card reports, from `TrainingArguments` and the recipe's model arguments.

    Batch sizes are given per device and in total (× world size × gradient accumulation); the epochs, or the steps
    when `max_steps` is set; the optimizer with its settings; the model flags (`freeze`, `head`, `fusion`, ...),
    leaving out those that do not apply (fusion with one backbone, MLP sizes with a linear head).

    Args:
        training_args: The run's `TrainingArguments`.
        model_args: The recipe's model arguments (a dataclass), or None.
        num_backbones: How many backbones the model has (fusion settings only apply to several).

    Returns:
        Name -> value, in reading order.
    """
    args = training_args
    world_size = args.world_size
    optimizer = str(getattr(args.optim, "value", args.optim))
    if "adam" in optimizer.lower():
        optimizer += f" (betas=({args.adam_beta1}, {args.adam_beta2}), epsilon={args.adam_epsilon})"
    if args.optim_args:
        optimizer += f" {args.optim_args}"
    hyperparameters: dict[str, Any] = {
        "learning_rate": args.learning_rate,
        "train_batch_size (per device)": args.per_device_train_batch_size,
        "eval_batch_size (per device)": args.per_device_eval_batch_size,
        "world_size": world_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "total_train_batch_size": args.per_device_train_batch_size * world_size * args.gradient_accumulation_steps,
        "total_eval_batch_size": args.per_device_eval_batch_size * world_size,
    }
    if args.max_steps is not None and args.max_steps > 0:
        hyperparameters["training_steps"] = args.max_steps
    else:
        hyperparameters["num_epochs"] = args.num_train_epochs
    hyperparameters.update(
        {
            "optimizer": optimizer,
            "lr_scheduler_type": str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)),
            "warmup_steps": args.warmup_steps,
            "weight_decay": args.weight_decay,
            "seed": args.seed,
            "mixed_precision": "bf16" if args.bf16 else "fp16" if args.fp16 else "no",
        }
    )
    if args.label_smoothing_factor:
        hyperparameters["label_smoothing_factor"] = args.label_smoothing_factor
    if model_args is not None:
        hyperparameters.update(_model_hyperparameters(model_args, num_backbones))
    return hyperparameters


# Model arguments that are not hyperparameters (the backbones are in the card's own table; weights are local paths).
_MODEL_ARGS_NOT_SHOWN = {"backbone", "backbone_weights", "ignore_mismatched_sizes"}


def _model_hyperparameters(model_args: Any, num_backbones: int) -> dict[str, Any]:
    values = (
        {f.name: getattr(model_args, f.name) for f in dataclasses.fields(model_args)}
        if dataclasses.is_dataclass(model_args)
        else dict(vars(model_args))
    )
    shown = {}
    for name, value in values.items():
        if name in _MODEL_ARGS_NOT_SHOWN or name.startswith("_") or value is None:
            continue
        if name.startswith("fusion") and num_backbones < 2:
            continue
        if name in ("head_hidden_sizes", "head_activation") and values.get("head") != "mlp":
            continue
        if name == "num_frozen_groups" and values.get("freeze") != "partial":
            continue
        if isinstance(value, str) and _looks_like_local_path(value):
            value = Path(value).name  # a card does not publish local paths
        shown[name] = value
    return shown


def _task_of(model: Any) -> str:
    return "text-classification" if getattr(model, "main_input_name", None) == "input_ids" else "image-classification"


def _save_processors_once(model: Any, folder: Path, processors: Sequence[Any] | None) -> None:
    """Saves the processors `pipeline()` loads, unless the run already saved them in `folder`."""
    if not getattr(model.config, "backbones", None):
        return
    if processors is None and (folder / "processor_config.json").is_file():
        return
    from .processing import save_processors

    save_processors(None if processors is None else list(processors), folder, model.config)


def _publishable_dataset_name(dataset_name: str | None) -> str | None:
    """A local dataset by its folder name, marked local (a card neither publishes local paths nor links them to an
    unrelated Hub dataset of the same name)."""
    if dataset_name and _looks_like_local_path(dataset_name):
        return f"{Path(dataset_name).name} (local)"
    return dataset_name


def _commit_message(eval_results: Mapping[str, Any] | None, eval_split: str) -> str:
    shown = [f"{name} {value:.4f}" for name, value in _metrics(eval_results or {}) if name != "loss"][:3]
    return "Upload model trained with hf_transfer" + (f" ({', '.join(shown)} on {eval_split})" if shown else "")


def _main_split_metrics(
    output_dir: Path, log_history: Sequence[Mapping[str, Any]], other_split_prefixes: tuple[str, ...]
) -> dict[str, Any]:
    """The main eval split's metrics: from the results files the run wrote, else its last evaluation logged."""

    def main_split(results: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in results.items() if k.startswith("eval_") and not k.startswith(other_split_prefixes)}

    for name in ("all_results.json", "eval_results.json"):
        found = main_split(_read_results(output_dir / name))
        if found:
            return found
    for entry in reversed(log_history):
        found = main_split(entry)
        if found:
            return found
    return {}


def _read_results(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def _length(dataset: Any) -> int | None:
    try:
        return len(dataset) if dataset is not None else None
    except TypeError:  # an iterable dataset
        return None


def _eval_label_ids(trainer: Trainer, dataset: Any) -> tuple[np.ndarray | None, np.ndarray | None]:
    """True and predicted label ids on `dataset`, for the confusion matrix."""
    if trainer.args.world_size > 1:
        # `trainer.predict` is collective (sharded loader, gathers): on the main process alone it would hang.
        return _predict_here(trainer, dataset)
    output = trainer.predict(dataset, metric_key_prefix="publish")
    logits = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
    if output.label_ids is None or logits is None:
        return None, None
    return np.asarray(output.label_ids).reshape(-1), np.asarray(logits).argmax(-1).reshape(-1)


def _predict_here(trainer: Trainer, dataset: Any) -> tuple[np.ndarray | None, np.ndarray | None]:
    import torch
    from torch.utils.data import DataLoader

    model = trainer.model
    loader = DataLoader(dataset, batch_size=trainer.args.per_device_eval_batch_size, collate_fn=trainer.data_collator)
    device = next(model.parameters()).device
    labels, predictions = [], []
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for batch in loader:
                labels.append(batch.pop("labels").reshape(-1).cpu())
                inputs = {k: v.to(device) for k, v in batch.items() if isinstance(v, torch.Tensor)}
                predictions.append(model(**inputs).logits.argmax(-1).reshape(-1).cpu())
    except (KeyError, TypeError, ValueError) as e:  # a batch layout this loop does not know: no confusion matrix
        logger.warning("No confusion matrix: could not predict the eval split on the main process alone (%s).", e)
        return None, None
    finally:
        model.train(was_training)
    return torch.cat(labels).numpy(), torch.cat(predictions).numpy()
