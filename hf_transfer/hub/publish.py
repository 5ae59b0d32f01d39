# Copyright 2026 The hf_transfer authors. Licensed under the Apache License, Version 2.0.
"""Publishing a run: save, plot, render the card, push (`publish_model`), from a Trainer run (`publish`)."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np
from huggingface_hub import CommitInfo

if TYPE_CHECKING:
    from transformers import PreTrainedModel, Trainer, TrainingArguments
    from transformers.trainer_utils import PredictionOutput

    from ..adaptation import AdaptationDescription
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
from .recipe import RunRecipe
from .timm_export import _timm_export_spec, export_timm

__all__ = [
    "publish",
    "publish_model",
    "training_hyperparameters",
]


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
    recipe: RunRecipe | None = None,
    tags: Sequence[str] = (),
    commit_message: str | None = None,
    private: bool | None = None,
    adaptation: AdaptationDescription | None = None,
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
        recipe: The run's command and resolved recipe, shown in the card (see `hf_transfer.hub.recipe`).
        tags: Extra Hub tags.
        commit_message: The commit's title; by default it names the eval results.
        private: Visibility of repos created by this call.
        adaptation: The run's domain adaptation (`hf_transfer.adaptation.describe_adaptation`), described on the
            card with the `eval_target_*` metrics of `eval_results`.

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
    if adaptation is not None:
        adaptation = dataclasses.replace(
            adaptation, target_dataset_name=_publishable_dataset_name(adaptation.target_dataset_name)
        )
    if hyperparameters:  # a card does not publish local paths (a teacher's, weights'): their name only
        hyperparameters = {
            name: Path(value).name if isinstance(value, str) and _looks_like_local_path(value) else value
            for name, value in hyperparameters.items()
        }
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
        adaptation=adaptation,
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
    *,
    repo_id: str,
    token: str | None = None,
    metrics: Mapping[str, Any] | None = None,
    predictions: PredictionOutput | None = None,
    hyperparameters: Mapping[str, Any] | None = None,
    commit_message: str | None = None,
    timm_repo_id: str | None = None,
    license: str | None = None,
    recipe: RunRecipe | None = None,
    private: bool | None = None,
    adaptation: AdaptationDescription | None = None,
) -> CommitInfo | None:
    """Publishes a finished Trainer run: the model, its processors, plots and a card with the run's real numbers.

    Everything comes from what the run holds in memory: the main eval split's metrics (`metrics`, else the last
    evaluation in the trainer's log), the predictions of that split for the confusion matrix (single-label
    classification), the hyperparameters the caller wants shown, the dataset and split sizes (`task`, the datasets,
    the `*_samples` metrics), the learned fusion weights; then `publish_model`.

    Call it once training and evaluation are done, after `trainer.save_model()`, on every process or on the main one
    alone: only the main process publishes (the others return None), and nothing here is collective. Under DDP,
    `trainer.predict` (which is collective) gives every rank the predictions of the whole split.

    Args:
        trainer: The run's Trainer (`trainer.args.output_dir` is published).
        task: The `hf_transfer.data.TaskInfo` of the data (labels, problem type, eval splits, dataset).
        repo_id: `"namespace/name"`, as returned by `check_push_target`.
        token: A token with write access; defaults to `huggingface_hub.get_token()`.
        metrics: The run's metrics, Trainer-style (`{"eval_accuracy": 0.91, "eval_samples": 500, ...}`); those of
            other eval splits (MNLI's `eval_mismatched_*`) stay out of the card.
        predictions: `trainer.predict(main_eval_split)`'s output, for the confusion matrix.
        hyperparameters: Name -> value, in reading order (see `training_hyperparameters`).
        commit_message: The commit's title; by default it names the eval results.
        timm_repo_id: Also push a plain-timm export there (see `export_timm`).
        license: A Hub license id.
        recipe: The run's command and resolved recipe, shown in the card (see `hf_transfer.hub.recipe`).
        private: Visibility of repos created by this call.
        adaptation: The run's domain adaptation (`hf_transfer.adaptation.describe_adaptation`): the card names the
            method, λ, source and target data, and reports the `eval_target_*` metrics of `metrics`.

    Returns:
        The main repo's commit, or None on processes other than the main one.

    Example:
        ```python
        >>> repo_id = check_push_target(training_args.hub_model_id, token)  # before training
        >>> ...  # train, trainer.save_model()
        >>> output = trainer.predict(eval_dataset)  # metrics and predictions, in one pass
        >>> publish(trainer, task, repo_id=repo_id, token=token, metrics=output.metrics, predictions=output,
        ...         hyperparameters=training_hyperparameters(training_args)).commit_url
        ```
    """
    if not trainer.is_world_process_zero():
        return None
    eval_split = task.eval_splits[0] if task.eval_splits else "validation"
    other_splits = tuple(task.metric_prefix(split) + "_" for split in task.eval_splits[1:])
    metrics = dict(metrics or {})
    eval_results = _main_split_metrics(metrics, trainer.state.log_history, other_splits)

    labels = predicted = None
    if predictions is not None and task.problem_type == "single_label_classification":
        logits = predictions.predictions[0] if isinstance(predictions.predictions, tuple) else predictions.predictions
        if predictions.label_ids is not None and logits is not None:
            labels, predicted = (
                np.asarray(predictions.label_ids).reshape(-1),
                np.asarray(logits).argmax(-1).reshape(-1),
            )

    splits: dict[str, int] = {}
    eval_dataset = trainer.eval_dataset
    if isinstance(eval_dataset, Mapping):
        eval_dataset = eval_dataset.get(eval_split, next(iter(eval_dataset.values()), None))
    train_size = _length(trainer.train_dataset) or metrics.get("train_samples")
    if train_size:
        splits["train"] = int(train_size)
    eval_size = metrics.get("eval_samples") or (len(labels) if labels is not None else None) or _length(eval_dataset)
    if eval_size:
        splits[eval_split] = int(eval_size)

    return publish_model(
        trainer.model,
        trainer.args.output_dir,
        repo_id=repo_id,
        token=token,
        dataset_name=task.dataset_name,
        dataset_config_name=task.dataset_config_name,
        dataset_splits=splits,
        hyperparameters=hyperparameters,
        eval_results=eval_results,
        eval_split=eval_split,
        log_history=trainer.state.log_history,
        eval_labels=labels,
        eval_predictions=predicted,
        timm_repo_id=timm_repo_id,
        license=license,
        recipe=recipe,
        commit_message=commit_message,
        private=private,
        adaptation=adaptation,
    )


def training_hyperparameters(training_args: TrainingArguments) -> dict[str, Any]:
    """The training hyperparameters a card reports: transformers' own selection, plus what it leaves out.

    `transformers.modelcard.extract_hyperparameters_from_trainer` gives the learning rate, batch sizes, seed,
    scheduler, epochs or steps, gradient accumulation and label smoothing, as the Trainer's cards show them. Added:
    the world size, the total batch sizes and the precision even when trivial (a reader should not have to infer
    them), the weight decay, and the optimizer with its settings on one table row.

    Args:
        training_args: The run's `TrainingArguments`.

    Returns:
        Name -> value, in reading order.
    """
    from transformers.modelcard import extract_hyperparameters_from_trainer

    args = training_args
    hyperparameters = extract_hyperparameters_from_trainer(SimpleNamespace(args=args))
    # `distributed_type` says "multi-GPU" for any DDP run (CPU too) and `num_devices` repeats the world size;
    # transformers' optimizer text spans lines, which breaks a table row.
    for name in ("distributed_type", "num_devices", "mixed_precision_training", "optimizer"):
        hyperparameters.pop(name, None)
    optimizer = str(getattr(args.optim, "value", args.optim))
    if "adam" in optimizer.lower():
        optimizer += f" (betas=({args.adam_beta1}, {args.adam_beta2}), epsilon={args.adam_epsilon})"
    if args.optim_args:
        optimizer += f" {args.optim_args}"
    hyperparameters.update(
        {
            "world_size": args.world_size,
            "total_train_batch_size": args.train_batch_size * args.world_size * args.gradient_accumulation_steps,
            "total_eval_batch_size": args.eval_batch_size * args.world_size,
            "optimizer": optimizer,
            "weight_decay": args.weight_decay,
            "mixed_precision": "bf16" if args.bf16 else "fp16" if args.fp16 else "no",
        }
    )
    return hyperparameters


def _task_of(model: Any) -> str:
    return "text-classification" if getattr(model, "main_input_name", None) == "input_ids" else "image-classification"


def _save_processors_once(model: Any, folder: Path, processors: Sequence[Any] | None) -> None:
    """Saves the processors `pipeline()` loads, unless the run already saved them in `folder`."""
    if not getattr(model.config, "backbones", None):
        return
    if processors is None and (folder / "processor_config.json").is_file():
        return
    from ..processing import save_processors

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
    metrics: Mapping[str, Any], log_history: Sequence[Mapping[str, Any]], other_split_prefixes: tuple[str, ...]
) -> dict[str, Any]:
    """The main eval split's metrics: from the run's metrics, else its last evaluation logged."""

    def main_split(results: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in results.items() if k.startswith("eval_") and not k.startswith(other_split_prefixes)}

    for results in (metrics, *reversed(log_history)):
        found = main_split(results)
        if found:
            return found
    return {}


def _length(dataset: Any) -> int | None:
    try:
        return len(dataset) if dataset is not None else None
    except TypeError:  # an iterable dataset
        return None
