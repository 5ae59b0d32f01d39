# Copyright 2026 The hf_transfer authors. Licensed under the Apache License, Version 2.0.
"""Publishing a run: save, plot, render the card, push (`publish_model`), from a Trainer run (`publish`)."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from huggingface_hub import CommitInfo

if TYPE_CHECKING:
    from transformers import PreTrainedModel, Trainer, TrainingArguments

    from ..data import TaskInfo


from .card import (
    _labels,
    _looks_like_local_path,
    _metrics,
    render_model_card,
    render_timm_model_card,
    write_model_card,
)
from .plots import plot_confusion_matrix, plot_training_curve
from .push import TIMM_EXPORT_DIR, push_folder_to_hub
from .timm_export import _timm_export_spec, export_timm

__all__ = [
    "publish",
    "publish_model",
    "training_hyperparameters",
]

logger = logging.getLogger(__name__)


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
_MODEL_ARGS_NOT_SHOWN = {"backbone", "backbone_weights"}


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
    if processors is None:
        if (folder / "preprocessor_config.json").is_file() or (folder / "tokenizer_config.json").is_file():
            return
        if not getattr(model.config, "backbones", None):
            return
        from ..processing import load_processors

        processors = load_processors(model.config)
    from ..processing import save_processors

    save_processors(list(processors), folder)


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
