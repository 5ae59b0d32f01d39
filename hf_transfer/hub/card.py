# Copyright 2026 The hf_transfer authors. Licensed under the Apache License, Version 2.0.
"""The model card: metadata as `ModelCardData`/`EvalResult`, prose from a template, rendered together."""

from __future__ import annotations

import importlib.metadata
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from huggingface_hub import EvalResult, ModelCard, ModelCardData
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

from ..configuration_transfer import effective_freeze, normalize_backbone_entries
from ..inputs import BackboneEntry
from .recipe import RunRecipe, render_recipe_section

if TYPE_CHECKING:
    from transformers import PreTrainedConfig

    from ..adaptation import AdaptationDescription


__all__ = [
    "model_card_template_path",
    "render_model_card",
    "render_timm_model_card",
    "write_model_card",
]


DISTRIBUTION_NAME = "hf-transfer-learning"  # not `hf-transfer`: that is an unrelated Rust download accelerator
MODEL_CARD_TEMPLATE = "transfer_model_card.md"
TIMM_MODEL_CARD_TEMPLATE = "timm_model_card.md"

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
# Domain adaptation: metrics of the target data are `eval_target_*`; these are scores without labels, not results.
_TARGET_PREFIX = "target_"
_UNSUPERVISED_TARGET_SCORES = {"target_entropy", "target_im", "target_snd"}


def model_card_template_path(name: str = MODEL_CARD_TEMPLATE) -> Path:
    """A card template shipped in the package (`hf_transfer/model_cards/<name>`, the one copy there is)."""
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
    adaptation: AdaptationDescription | None = None,
) -> ModelCard:
    """Renders the model card: Hub metadata (`ModelCardData`, `model-index`) plus the prose of the card template.

    Args:
        config: The model's config. Read: `backbones` (`BackboneEntry`s: `source`, `library`, `modality`, `pooling`,
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
        recipe: The run's command and resolved recipe (`hf_transfer.hub.recipe.RunRecipe`): a "Reproduce"
            section.
        adaptation: The run's domain adaptation (`hf_transfer.adaptation.describe_adaptation`): a "Domain
            adaptation" section naming the method, λ, source and target data; the `eval_target_*` metrics of
            `eval_results` are reported there, and the labelled ones as a second `model-index` result on the
            target data.

    Returns:
        The card; `write_model_card` saves it as README.md.
    """
    if task not in _TASKS:
        raise ValueError(f"Unknown task {task!r}; valid tasks are: {', '.join(_TASKS)}.")
    task_title, auto_class = _TASKS[task]
    model_name = repo_id.split("/")[-1]
    entries = normalize_backbone_entries(getattr(config, "backbones", None) or [])
    backbones = [_describe_backbone(config, entry) for entry in entries]
    base_models = [b["hub_id"] for b in backbones if b["hub_id"]]
    metrics, target_metrics = _metrics(eval_results or {}), []
    if adaptation is not None:  # the target data's metrics go to their own section and model-index result
        metrics, target_metrics = _split_target_metrics(metrics)
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
        adaptation=adaptation,
        target_metrics=target_metrics,
        tags=["hf_transfer", "transfer-learning", task]
        + (["timm"] if any(b["library"] == "timm" for b in backbones) else [])
        + (["multimodal"] if len(modalities) > 1 else [])
        + list(tags),
    )

    fusion = getattr(config, "fusion", None) if len(backbones) > 1 else None
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
        "reproduce": render_recipe_section(recipe),
        "adaptation": _adaptation_context(adaptation, target_metrics) if adaptation else None,
        "framework_versions": [_row(name, _version(dist)) for name, dist in _FRAMEWORKS],
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
    adaptation: AdaptationDescription | None = None,
    target_metrics: Sequence[tuple[str, float]] = (),
) -> ModelCardData:
    """The Hub metadata of a card: base models, dataset(s), tags, and `model-index` from the eval metrics (the
    labelled target metrics of a domain adaptation run as a second result, on the target data)."""
    dataset_hub_id = dataset_name if dataset_name and _looks_like_hub_id(dataset_name) else None

    def results(name_of_data, hub_id, config, split, values):
        return [
            EvalResult(
                task_type=task,
                task_name=_TASKS[task][0],
                dataset_type=hub_id or "custom",
                dataset_name=name_of_data or "custom dataset",
                dataset_config=config,
                dataset_split=split,
                metric_type=name,
                metric_name=name.replace("_", " ").capitalize(),
                metric_value=value,
            )
            for name, value in values
            if name != "loss" and math.isfinite(value)
        ]

    eval_entries = results(dataset_name, dataset_hub_id, dataset_config_name, eval_split, metrics)
    hub_ids = [dataset_hub_id] if dataset_hub_id else []
    if adaptation is not None:
        target_name = adaptation.target_dataset_name
        target_hub_id = target_name if target_name and _looks_like_hub_id(target_name) else None
        labelled = [
            (name.removeprefix(_TARGET_PREFIX), value)
            for name, value in target_metrics
            if name not in _UNSUPERVISED_TARGET_SCORES
        ]
        if adaptation.target_eval_split:
            eval_entries += results(
                target_name,
                target_hub_id,
                adaptation.target_dataset_config_name,
                adaptation.target_eval_split,
                labelled,
            )
        hub_ids += [target_hub_id] if target_hub_id and target_hub_id not in hub_ids else []
    return ModelCardData(
        model_name=model_name,
        base_model=(base_models[0] if len(base_models) == 1 else list(base_models)) or None,
        datasets=hub_ids or None,
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


def _backbone_hub_id(spec: BackboneEntry) -> str | None:
    """The Hub repo a backbone's weights came from, or None (random init, a local path, a bare timm name)."""
    if spec.get("pretrained") is False:
        return None
    if spec.get("pretrained") is True:
        # timm records where its pretrained weights live; only trusted when the spec says they were loaded.
        pretrained_cfg = (spec.get("config") or {}).get("pretrained_cfg") or {}
        if pretrained_cfg.get("hf_hub_id") and _looks_like_hub_id(pretrained_cfg["hf_hub_id"]):
            return pretrained_cfg["hf_hub_id"]
    source = str(spec["source"])
    for prefix in ("hf-hub:", "hf_hub:"):
        source = source.removeprefix(prefix)
    is_timm_name = source.startswith("timm:") or (spec["library"] == "timm" and "/" not in source)
    source = source.removeprefix("timm:")
    if is_timm_name:
        # timm's pretrained tags live on the Hub as timm/<architecture>.<tag>; a bare architecture name does not.
        source = f"timm/{source}" if "." in source.strip(".") else ""
    return source if source and _looks_like_hub_id(source) else None


def _describe_backbone(config: PreTrainedConfig, spec: BackboneEntry) -> dict[str, Any]:
    source = spec["source"]
    hub_id = _backbone_hub_id(spec)
    freeze = effective_freeze(spec, getattr(config, "freeze", "none"), getattr(config, "num_frozen_groups", 0))
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
        "library": spec["library"],
        "modality": spec["modality"],
        "pooling": spec["pooling"],
        "freeze": _freeze_text(freeze),
        "frozen": _freeze_state(freeze),
    }


def _freeze_state(freeze: str | int) -> str:
    """`"trainable"`, `"frozen"` or `"partial"`, from what `TransferConfig.backbone_freeze` gives: `"none"`,
    `"backbone"` or a number of frozen layer groups."""
    if isinstance(freeze, int):
        return "partial" if freeze > 0 else "trainable"
    return "frozen" if freeze == "backbone" else "trainable"


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


def _head_summary(config: PreTrainedConfig) -> str:
    dropout = getattr(config, "head_dropout", None)
    if getattr(config, "head", "linear") == "mlp":
        sizes = list(getattr(config, "head_hidden_sizes", None) or [])
        activation = getattr(config, "head_activation", None)
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


def _split_target_metrics(
    metrics: Sequence[tuple[str, float]],
) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """`[("accuracy", .9), ("target_accuracy", .7)]` -> the source's metrics and the target data's."""
    source = [(name, value) for name, value in metrics if not name.startswith(_TARGET_PREFIX)]
    target = [(name, value) for name, value in metrics if name.startswith(_TARGET_PREFIX)]
    return source, target


def _adaptation_context(adaptation: AdaptationDescription, target_metrics: Sequence[tuple[str, float]]) -> dict:
    """The template's view of a domain adaptation run."""
    name = adaptation.target_dataset_name
    return {
        "method": adaptation.method,
        "method_title": adaptation.method_title,
        "weight": _format_value(adaptation.weight),
        "schedule": adaptation.schedule,
        "target_title": (
            f"{name} ({adaptation.target_dataset_config_name})"
            if name and adaptation.target_dataset_config_name
            else name
        ),
        "target_link": _dataset_link(name),
        "target_eval_split": adaptation.target_eval_split,
        "options": [_row(option, _format_value(value)) for option, value in adaptation.options.items()],
        "rows": [
            _row(metric, f"{value:.4f}" + (" (no labels used)" if metric in _UNSUPERVISED_TARGET_SCORES else ""))
            for metric, value in target_metrics
        ],
    }


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
    entries = getattr(config, "backbones", None) or []
    base_models = [hub_id for hub_id in (_backbone_hub_id(entry) for entry in entries) if hub_id]
    metrics, _ = _split_target_metrics(_metrics(eval_results or {}))  # target data: on the main card
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
