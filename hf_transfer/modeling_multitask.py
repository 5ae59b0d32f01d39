# Copyright 2026 The hf_transfer authors. Licensed under the Apache License, Version 2.0.
"""Multi-task models: shared backbone(s) and fusion θ_s, one named head θ_t per task, `loss = Σ_t w_t L_t`.

The API follows AdapterHub's named heads (`add_classification_head(name, num_labels)`): heads are added, removed
and replaced by name on a trained model, and `for_task(name)` takes one task out as an ordinary single-task
hf_transfer classifier (which `pipeline()` serves and `push_to_hub` pushes).

This file imports only `torch` and `transformers` and its sibling files (relative imports, which transformers'
dynamic-module loader copies along), so that a saved checkpoint loads with `trust_remote_code=True` where
hf_transfer is not installed.
"""

import copy
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.utils import ModelOutput

from .configuration_multitask import MultiTaskConfig, make_task
from .configuration_transfer import TransferConfig
from .modeling_transfer import (
    ClassificationHead,
    TransferForClassification,
    TransferForImageClassification,
    TransferForSequenceClassification,
    TransferModel,
    TransferPreTrainedModel,
)

LABELS_PREFIX = "labels_"
# What marks a row unlabelled for a task: -100 for class ids and multi-hot rows (PyTorch's ignore_index), NaN for
# regression targets (any real number is a valid target).
IGNORE_INDEX = -100
# TransferConfig options shared by the multi-task model and the single-task models `for_task` makes.
SHARED_OPTIONS = ("backbones", "fusion", "fusion_dim", "fusion_num_heads", "freeze", "num_frozen_groups")
HEAD_OPTIONS = ("head", "head_hidden_sizes", "head_activation", "head_dropout")


@dataclass
class MultiTaskOutput(ModelOutput):
    """Output of `TransferForMultiTask`.

    Args:
        loss: `Σ_t w_t L_t` over the tasks with at least one labelled row in the batch (when labels are given).
        logits: Task name → logits `(batch, num_labels)` of every task, for every row.
        task_losses: Task name → its (unweighted) loss `L_t`, for the tasks with labelled rows.
        hidden_states: Each backbone's pooled features and the fused features (`output_hidden_states=True`).
    """

    loss: torch.Tensor | None = None
    logits: dict[str, torch.Tensor] | None = None
    task_losses: dict[str, torch.Tensor] | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None


def labelled_rows(labels: torch.Tensor, problem_type: str) -> torch.Tensor:
    """The rows of `labels` that carry a label for the task: a boolean `(batch,)` mask.

    Args:
        labels: Class ids `(batch,)` (missing: -100), multi-hot `(batch, num_labels)` (missing: a row of -100 or
            NaN), or regression targets `(batch,)` / `(batch, num_labels)` (missing: NaN).
        problem_type: The task's problem type.
    """
    if problem_type == "single_label_classification":
        return labels.view(labels.shape[0], -1)[:, 0] != IGNORE_INDEX
    rows = labels.view(labels.shape[0], -1)
    missing = torch.isnan(rows).any(-1) if rows.is_floating_point() else torch.zeros_like(rows[:, 0], dtype=bool)
    if problem_type == "multi_label_classification":
        missing |= (rows == IGNORE_INDEX).any(-1)
    return ~missing


def task_loss(logits: torch.Tensor, labels: torch.Tensor, problem_type: str) -> torch.Tensor:
    """The loss of one task on labelled rows, as `TransferForClassification.compute_loss` computes it."""
    num_labels = logits.shape[-1]
    if problem_type == "regression":
        if num_labels == 1:
            return F.mse_loss(logits.squeeze(-1).float(), labels.float().view(-1))
        return F.mse_loss(logits.float(), labels.float().view(-1, num_labels))
    if problem_type == "single_label_classification":
        return F.cross_entropy(logits.float().view(-1, num_labels), labels.long().view(-1))
    return F.binary_cross_entropy_with_logits(logits.float(), labels.float().view(-1, num_labels))


def _validated_config(**kwargs: Any) -> MultiTaskConfig:
    """`MultiTaskConfig(**kwargs)`, with huggingface_hub's strict-dataclass wrapper error unwrapped to the plain
    `ValueError` that names the bad value."""
    try:
        return MultiTaskConfig(**kwargs)
    except Exception as err:
        if isinstance(err.__cause__, (ValueError, TypeError)):
            raise ValueError(str(err.__cause__)) from err
        raise


class TransferForMultiTask(TransferPreTrainedModel):
    """Backbone(s) and fusion shared by several tasks, each with its own head, problem type and loss weight.

    `forward` computes the backbones once per batch and every task's head on it. Labels come per task, as
    `labels_{task}=...` keyword arguments or as `labels={task: tensor}`; a row without a label for a task is masked
    (-100 for class ids and multi-hot rows, NaN for regression), so a batch may mix rows of several datasets. A task
    without any labelled row in the batch adds nothing to the loss, and its head gets no gradient.

    Example:
        ```python
        >>> model = TransferForMultiTask.from_backbones(
        ...     "timm:test_resnet", pretrained=False,
        ...     tasks=[{"name": "shape", "num_labels": 3}, {"name": "size", "num_labels": 1, "weight": 0.5}],
        ... )
        >>> out = model(pixel_values, labels_shape=shape_ids, labels_size=sizes)
        >>> out.logits["shape"], out.loss  # loss = 1.0 * L_shape + 0.5 * L_size
        >>> sentiment = model.for_task("shape")  # a TransferForImageClassification sharing the backbone
        ```
    """

    config: MultiTaskConfig
    config_class = MultiTaskConfig
    _output_class = MultiTaskOutput

    def __init__(self, config: MultiTaskConfig, backbones: list[nn.Module] | None = None):
        super().__init__(config)
        if not config.tasks:
            raise ValueError("MultiTaskConfig.tasks is empty: give at least one task (see `make_task`).")
        self.transfer = TransferModel(config, backbones=backbones)
        self.main_input_name = self.transfer.main_input_name
        self.heads = nn.ModuleDict({task["name"]: self._build_head(task) for task in config.tasks})
        self.post_init()
        self.apply_freezing()

    # ------------------------------------------------------------------------------------------------ building

    @classmethod
    def from_backbones(
        cls,
        backbones: Any,
        *,
        tasks: list[dict[str, Any]],
        pretrained: bool = True,
        pooling: str = "auto",
        image_size: int | None = None,
        **config_kwargs: Any,
    ) -> "TransferForMultiTask":
        """Builds a multi-task model on pretrained backbones.

        Args:
            backbones: One backbone or a list (fused), as for `TransferPreTrainedModel.from_backbones`.
            tasks: One dict per task with `make_task`'s arguments: `name`, `num_labels`, and optionally
                `id2label`, `problem_type`, `head`, `head_hidden_sizes`, `head_activation`, `head_dropout`, `weight`.
            pretrained: Load pretrained weights for backbones given by name.
            pooling: Pooling for backbones given by name.
            image_size: Input size of every image backbone (e.g. 112 for 28-px data); None keeps their own.
            **config_kwargs: Shared `TransferConfig` options: `fusion`, `fusion_dim`, `freeze`, `num_frozen_groups`...

        Returns:
            The model, heads freshly initialised.

        Raises:
            ValueError: On a bad task (duplicate name, bad problem type...) or option, before any backbone loads.
        """
        task_dicts = [make_task(**task) for task in tasks]
        _validated_config(tasks=task_dicts, **config_kwargs)  # fail on duplicates / bad options before loading
        base = TransferModel.from_backbones(
            backbones, pretrained=pretrained, pooling=pooling, image_size=image_size, **config_kwargs
        )
        config = _validated_config(tasks=task_dicts, **{**config_kwargs, "backbones": base.config.backbones})
        return cls(config, backbones=list(base.backbones))

    def _build_head(self, task: dict[str, Any]) -> ClassificationHead:
        return ClassificationHead(
            self.transfer.feature_dim,
            task["num_labels"],
            task["head"],
            task["head_hidden_sizes"],
            task["head_activation"],
            task["head_dropout"],
        )

    @property
    def task_names(self) -> list[str]:
        """The tasks, in head order."""
        return self.config.task_names

    def label_names(self) -> list[str]:
        """The label keys, `labels_{task}` per task: pass them as `TrainingArguments(label_names=...)` so that the
        Trainer hands them to `compute_metrics` (by default it looks for a single `labels` key)."""
        return [f"{LABELS_PREFIX}{name}" for name in self.task_names]

    def add_task(self, name: str, num_labels: int, **task_options: Any) -> None:
        """Adds a task with a freshly initialised head; the backbones, the fusion and the other heads are kept.

        Args:
            name: The new task's name.
            num_labels: Outputs of its head.
            **task_options: `make_task`'s other arguments (`id2label`, `problem_type`, `head`, `weight`...).

        Raises:
            ValueError: If a task of that name exists (use `replace_task`), or on a bad option.
        """
        if name in self.heads:
            raise ValueError(f"Task {name!r} exists already; use replace_task({name!r}, ...) to give it a new head.")
        task = make_task(name, num_labels, **task_options)
        self._set_head(task, position=len(self.config.tasks))

    def replace_task(self, name: str, num_labels: int, **task_options: Any) -> None:
        """Replaces task `name`'s head by a freshly initialised one (its weight is kept unless given).

        Raises:
            KeyError: If there is no such task.
        """
        position = self.task_names.index(self.config.task(name)["name"])
        task_options.setdefault("weight", self.config.tasks[position]["weight"])
        task = make_task(name, num_labels, **task_options)
        self._set_head(task, position=position, replace=True)

    def remove_task(self, name: str) -> None:
        """Removes task `name` and its head.

        Raises:
            KeyError: If there is no such task.
            ValueError: If it is the last one.
        """
        self.config.task(name)
        if len(self.config.tasks) == 1:
            raise ValueError(f"Cannot remove {name!r}, the only task: a multi-task model needs at least one.")
        self.config.tasks = [task for task in self.config.tasks if task["name"] != name]
        del self.heads[name]

    def set_task_weights(self, **weights: float) -> None:
        """Sets the loss weights w_t of the named tasks, e.g. `set_task_weights(sentiment=1.0, party=0.5)`."""
        for name, weight in weights.items():
            task = self.config.task(name)
            task["weight"] = make_task(**{**task, "weight": weight})["weight"]

    def _set_head(self, task: dict[str, Any], position: int, replace: bool = False) -> None:
        tasks = list(self.config.tasks)
        tasks[position : position + int(replace)] = [task]
        self.config.tasks = tasks
        parameter = next(self.transfer.parameters())
        head = self._build_head(task)
        head.apply(self._init_weights)
        self.heads[task["name"]] = head.to(device=parameter.device, dtype=parameter.dtype)
        # ModuleDict keeps insertion order: follow the config's task order (it decides the state-dict order).
        self.heads = nn.ModuleDict({name: self.heads[name] for name in self.task_names})

    # --------------------------------------------------------------------------------------------- single task

    def for_task(self, name: str) -> TransferForClassification:
        """Task `name` as an ordinary single-task classifier that shares this model's backbone(s), fusion and head.

        Its logits equal `self(...).logits[name]`; `save_pretrained`, `push_to_hub` and `pipeline()` work on it as
        on any `TransferForImageClassification` (image backbones) or `TransferForSequenceClassification` (text).
        The parameters are shared, not copied: training one trains the other (`copy.deepcopy` it to detach).

        Raises:
            KeyError: If there is no such task (the message lists the tasks).
        """
        task = self.config.task(name)
        labels = [task["id2label"][str(i)] for i in range(task["num_labels"])]
        config = TransferConfig(
            **{key: copy.deepcopy(getattr(self.config, key)) for key in SHARED_OPTIONS},
            **{key: task[key] for key in HEAD_OPTIONS},
            num_labels=task["num_labels"],
            id2label=dict(enumerate(labels)),
            label2id={label: i for i, label in enumerate(labels)},
            problem_type=task["problem_type"],
            initializer_range=self.config.initializer_range,
        )
        config.name_or_path = self.config.name_or_path
        model_class = (
            TransferForImageClassification if self.config.modality == "image" else TransferForSequenceClassification
        )
        model = model_class(config, backbones=list(self.transfer.backbones))
        model.transfer.fusion = self.transfer.fusion
        model.head = self.heads[name]
        return model.train(self.training)

    # -------------------------------------------------------------------------------------------------- forward

    def _collect_labels(
        self, labels: dict[str, torch.Tensor] | None, kwargs: dict[str, Any]
    ) -> dict[str, torch.Tensor]:
        if labels is not None and not isinstance(labels, dict):
            raise TypeError(
                "A multi-task model takes labels per task: `labels={task: tensor}` or `labels_{task}=tensor`; "
                f"got one {type(labels).__name__}. Tasks: {', '.join(self.task_names)}."
            )
        per_task = dict(labels or {})
        for key in [key for key in kwargs if key.startswith(LABELS_PREFIX)]:
            per_task[key[len(LABELS_PREFIX) :]] = kwargs.pop(key)
        unknown = set(per_task) - set(self.task_names)
        if unknown:
            raise ValueError(f"Labels for unknown task(s) {sorted(unknown)}; tasks: {', '.join(self.task_names)}.")
        return {name: value for name, value in per_task.items() if value is not None}

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: dict[str, torch.Tensor] | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs: torch.Tensor,
    ) -> MultiTaskOutput:
        r"""
        labels (`dict[str, torch.Tensor]`, *optional*):
            Task name → labels (see `labels_{task}`).
        kwargs: `labels_{task}`: the labels of one task, `(batch,)` class ids, `(batch, num_labels)` multi-hot
            floats, or regression targets, with unlabelled rows marked -100 (class ids, multi-hot) or NaN
            (regression). Any other key is a further backbone's input (`pixel_values_1`, `backbone_features_0`...).

        Returns:
            `MultiTaskOutput` with every task's logits, and `loss = Σ_t w_t L_t` when labels are given.
        """
        per_task = self._collect_labels(labels, kwargs)
        outputs = self.transfer(
            pixel_values=pixel_values,
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            output_hidden_states=output_hidden_states,
            **kwargs,
        )
        features = outputs.pooler_output
        logits = {name: head(features) for name, head in self.heads.items()}
        loss, task_losses = None, {}
        if per_task:
            for task in self.config.tasks:
                name = task["name"]
                if name not in per_task:
                    continue
                target = per_task[name]
                rows = labelled_rows(target, task["problem_type"])
                if not bool(rows.any()):  # nothing to learn from: no term, so no gradient reaches this head
                    continue
                task_losses[name] = task_loss(logits[name][rows], target[rows], task["problem_type"])
                weighted = task["weight"] * task_losses[name]
                loss = weighted if loss is None else loss + weighted
            if loss is None:
                # Labels were given but none is set: a zero loss that still backpropagates (to zero gradients).
                loss = sum(value.sum() for value in logits.values()) * 0.0
        hidden_states = (*outputs.hidden_states, features) if output_hidden_states else None
        return MultiTaskOutput(loss=loss, logits=logits, task_losses=task_losses or None, hidden_states=hidden_states)

    # ---------------------------------------------------------------------------------------------------- saving

    def save_pretrained(self, save_directory, *args, **kwargs):
        """`PreTrainedModel.save_pretrained`, plus this code (and the files it imports) and an `auto_map`, so that
        the saved model also loads with `trust_remote_code=True` where hf_transfer is not installed."""
        self.config.auto_map = dict(MULTITASK_AUTO_MAP)
        return PreTrainedModel.save_pretrained(self, save_directory, *args, **kwargs)


MULTITASK_AUTO_MAP = {
    "AutoConfig": "configuration_multitask.MultiTaskConfig",
    "AutoModel": "modeling_multitask.TransferForMultiTask",
}
TransferForMultiTask.register_for_auto_class("AutoModel")

__all__ = [
    "IGNORE_INDEX",
    "LABELS_PREFIX",
    "MULTITASK_AUTO_MAP",
    "MultiTaskOutput",
    "TransferForMultiTask",
    "labelled_rows",
    "task_loss",
]
