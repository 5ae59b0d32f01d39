# Copyright 2026 The hf_transfer authors. Licensed under the Apache License, Version 2.0.
"""Configuration of multi-task hf_transfer models: shared backbone(s) and fusion, one named head per task.

Like `configuration_transfer.py`, this file imports only `transformers` / `huggingface_hub` (and its sibling, by a
relative import), so that a saved or pushed checkpoint carries it as remote code.
"""

from typing import Any

from huggingface_hub.dataclasses import strict

from .configuration_transfer import HEAD_ACTIVATIONS, HEAD_TYPES, PROBLEM_TYPES, TransferConfig

# Short names accepted for `problem_type` (the stored value is always transformers' long one).
PROBLEM_TYPE_ALIASES = {
    "single_label": "single_label_classification",
    "multi_label": "multi_label_classification",
    "regression": "regression",
}
TASK_KEYS = (
    "name",
    "num_labels",
    "id2label",
    "problem_type",
    "head",
    "head_hidden_sizes",
    "head_activation",
    "head_dropout",
    "weight",
)


def normalize_problem_type(value: str | None) -> str | None:
    """`"single_label"` → `"single_label_classification"`, ...; long names and None pass through.

    Raises:
        ValueError: On an unknown problem type, listing the valid ones.
    """
    if value is None or value in PROBLEM_TYPES:
        return value
    if value in PROBLEM_TYPE_ALIASES:
        return PROBLEM_TYPE_ALIASES[value]
    raise ValueError(
        f"Unknown problem_type {value!r}; valid values are: {', '.join((*PROBLEM_TYPE_ALIASES, *PROBLEM_TYPES))}."
    )


def make_task(
    name: str,
    num_labels: int,
    id2label: dict[int, str] | list[str] | None = None,
    problem_type: str | None = None,
    head: str = "linear",
    head_hidden_sizes: list[int] | None = None,
    head_activation: str = "relu",
    head_dropout: float = 0.0,
    weight: float = 1.0,
) -> dict[str, Any]:
    """One validated entry of `MultiTaskConfig.tasks` (a JSON-serialisable dict, as the config stores it).

    Args:
        name: The task's name: the key of its logits, its labels (`labels_{name}`) and its metrics.
        num_labels: Outputs of its head (1 for a single regression target).
        id2label: Class names (a dict id → name, or a list in id order); `LABEL_i` when not given.
        problem_type: `single_label_classification` / `multi_label_classification` / `regression` (or the short
            `single_label` / `multi_label`); inferred like transformers' when None (1 output → regression).
        head: `"linear"` or `"mlp"`.
        head_hidden_sizes: Hidden widths of an `"mlp"` head.
        head_activation: `relu`, `gelu`, `silu` or `tanh`.
        head_dropout: Dropout before each linear layer of the head.
        weight: The task's weight w_t in `loss = Σ w_t L_t`.

    Returns:
        The task dict.

    Raises:
        ValueError: On a bad value, naming it and the valid ones.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(
            f"Task name {name!r} must be a Python identifier (letters, digits, underscores): it becomes the key "
            "`labels_{name}` and metric names `eval_{name}_...`."
        )
    if not isinstance(num_labels, int) or num_labels < 1:
        raise ValueError(f"num_labels of task {name!r} must be an integer >= 1, got {num_labels!r}.")
    problem_type = normalize_problem_type(problem_type)
    if problem_type is None:
        problem_type = "regression" if num_labels == 1 else "single_label_classification"
    if problem_type == "single_label_classification" and num_labels < 2:
        raise ValueError(f"Task {name!r}: single-label classification needs num_labels >= 2, got {num_labels}.")
    if head not in HEAD_TYPES:
        raise ValueError(f"Unknown head {head!r} for task {name!r}; valid values are: {', '.join(HEAD_TYPES)}.")
    if head == "mlp" and not head_hidden_sizes:
        raise ValueError(f"Task {name!r}: head='mlp' needs head_hidden_sizes, e.g. [256].")
    if head_activation not in HEAD_ACTIVATIONS:
        raise ValueError(
            f"Unknown head_activation {head_activation!r} for task {name!r}; valid values are: "
            f"{', '.join(HEAD_ACTIVATIONS)}."
        )
    if not 0.0 <= head_dropout < 1.0:
        raise ValueError(f"head_dropout of task {name!r} must be in [0, 1), got {head_dropout}.")
    if not isinstance(weight, (int, float)) or weight < 0:
        raise ValueError(f"weight of task {name!r} must be a number >= 0, got {weight!r}.")
    if id2label is None:
        labels = [f"LABEL_{i}" for i in range(num_labels)]
    elif isinstance(id2label, dict):
        labels = [id2label[key] for key in sorted(id2label, key=int)]
    else:
        labels = list(id2label)
    if len(labels) != num_labels:
        raise ValueError(f"Task {name!r}: id2label has {len(labels)} names for num_labels={num_labels}.")
    return {
        "name": name,
        "num_labels": num_labels,
        "id2label": {str(i): str(label) for i, label in enumerate(labels)},
        "problem_type": problem_type,
        "head": head,
        "head_hidden_sizes": list(head_hidden_sizes) if head_hidden_sizes else None,
        "head_activation": head_activation,
        "head_dropout": float(head_dropout),
        "weight": float(weight),
    }


@strict
class MultiTaskConfig(TransferConfig):
    r"""
    Configuration of a multi-task model: the backbone(s) and fusion of `TransferConfig`, and one head per task.

    The model-wide head options of `TransferConfig` (`head`, `head_hidden_sizes`, ...) are unused: each task stores
    its own. `num_labels` / `id2label` / `problem_type` are likewise per task.

    Args:
        tasks (`list[dict]`):
            One entry per task, as `make_task` builds it: `name`, `num_labels`, `id2label`, `problem_type`, `head`,
            `head_hidden_sizes`, `head_activation`, `head_dropout`, `weight`.
        **kwargs: `TransferConfig` arguments (`backbones`, `fusion`, `freeze`, ...).
    """

    model_type = "transfer_multitask"
    keys_to_ignore_at_inference = ["hidden_states", "task_losses"]

    tasks: list[dict] | None = None

    def validate_architecture(self):
        """Checks the shared options, then every task and that task names are unique."""
        super().validate_architecture()
        seen = set()
        for index, task in enumerate(self.tasks or []):
            unknown = set(task) - set(TASK_KEYS)
            if unknown:
                raise ValueError(
                    f"Unknown keys {sorted(unknown)} in task {index}; valid keys: {', '.join(TASK_KEYS)}."
                )
            if "name" not in task or "num_labels" not in task:
                raise ValueError(f"Task {index} needs at least `name` and `num_labels`, got {task}.")
            make_task(**task)  # raises on a bad value
            if task["name"] in seen:
                raise ValueError(f"Two tasks are named {task['name']!r}; task names must be unique.")
            seen.add(task["name"])

    @property
    def task_names(self) -> list[str]:
        """The task names, in head order."""
        return [task["name"] for task in self.tasks or []]

    def task(self, name: str) -> dict[str, Any]:
        """The stored entry of task `name`.

        Raises:
            KeyError: If there is no such task (the message lists the tasks).
        """
        for task in self.tasks or []:
            if task["name"] == name:
                return task
        raise KeyError(f"No task {name!r}; this model's tasks are: {', '.join(self.task_names) or 'none'}.")


MultiTaskConfig.register_for_auto_class("AutoConfig")

__all__ = ["MultiTaskConfig", "make_task", "normalize_problem_type"]
