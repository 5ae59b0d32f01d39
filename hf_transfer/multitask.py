# Copyright 2026 The hf_transfer authors. Licensed under the Apache License, Version 2.0.
"""Multi-task training data: one dataset per task, mixed into one training stream over a shared backbone.

The steps, each reusing the single-task pipeline (`hf_transfer.data`) per task:

* `parse_tasks`: a recipe's `tasks:` list → `TaskDataSpec`s (each with its own `DataTrainingArguments`), checked;
* `load_tasks`: `load_raw_datasets` per task, errors named by task;
* `MultiTaskDataset` + `MultiTaskCollator`: rows of all tasks in one map-style dataset; a batch carries
  `labels_{task}` for every task, rows of other tasks masked (-100 / NaN), so one backbone pass serves every task;
* `MultiTaskSampler`: how tasks are mixed (proportional, temperature-scaled, round-robin), per epoch, seeded, so DDP
  ranks agree and a resumed run replays the same order;
* `MultiTaskMetrics`: `{task}_{metric}` for every task plus `mean_{metric}` and `mean_score`;
* `run_multitask`: the `recipes/finetune.py` flow for a recipe with a `tasks:` list.

Example recipe (YAML):

    backbone: sentence-transformers/all-MiniLM-L6-v2
    task_sampling: temperature
    tasks:
      - {name: sentiment, dataset_name: data/rotten_tomatoes}
      - {name: party, dataset_name: data/debates, weight: 0.5, head: mlp, head_hidden_sizes: [256]}
"""

import dataclasses
import logging
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch.utils.data import Dataset, Sampler

from .configuration_multitask import normalize_problem_type
from .data import DataTrainingArguments, TaskInfo, load_raw_datasets, prepare_datasets
from .modeling_multitask import IGNORE_INDEX, LABELS_PREFIX, TransferForMultiTask, labelled_rows
from .training import TransferTrainer

logger = logging.getLogger(__name__)

SAMPLING_STRATEGIES = ("proportional", "temperature", "round_robin")
# Keys of a task entry that are not data flags.
TASK_MODEL_KEYS = ("name", "weight", "problem_type", "head", "head_hidden_sizes", "head_activation", "head_dropout")
# Data flags that may be given once at the top of a recipe as defaults for every task.
SHARED_DATA_FLAGS = (
    "max_seq_length",
    "max_train_samples",
    "max_eval_samples",
    "train_val_split",
    "no_augmentation",
    "pad_to_max_length",
    "preprocessing_num_workers",
    "cache_dir",
)
_DATA_FLAGS = tuple(f.name for f in dataclasses.fields(DataTrainingArguments))


# ---------------------------------------------------------------------------------------------------------------
# Tasks from a recipe
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class TaskDataSpec:
    """One task of a multi-task recipe.

    Attributes:
        name: The task's name (its head, `labels_{name}`, `eval_{name}_{metric}`).
        data_args: Its data flags (dataset / files / columns / label column...), as for a single-task run.
        weight: Its loss weight w_t.
        problem_type: The problem type asked for (None: detected from the labels).
        head_options: `head`, `head_hidden_sizes`, `head_activation`, `head_dropout` overriding the model-wide ones.
    """

    name: str
    data_args: DataTrainingArguments
    weight: float = 1.0
    problem_type: str | None = None
    head_options: dict[str, Any] = field(default_factory=dict)


def parse_tasks(entries: Sequence[Mapping[str, Any]], defaults: Mapping[str, Any] | None = None) -> list[TaskDataSpec]:
    """Turns a recipe's `tasks:` list into checked `TaskDataSpec`s, before anything is loaded.

    Args:
        entries: One mapping per task: `name` (required), optional `weight`, `problem_type` (`single_label`,
            `multi_label`, `regression` or transformers' long names), head options, and any
            `DataTrainingArguments` flag (`dataset_name`, `task_name`, `train_file`, `text_column_names`,
            `label_column_name`, `max_train_samples`...).
        defaults: Data flags applied to every task unless the task sets them (`max_seq_length`...).

    Returns:
        The specs, in order.

    Raises:
        ValueError: On an empty list, a task without a name, two tasks with the same name, an unknown key (lists the
            valid ones), a bad problem type or conflicting data flags, naming the task.
    """
    if not entries:
        raise ValueError("`tasks:` is empty; give at least one task, e.g. `- {name: sentiment, dataset_name: ...}`.")
    specs, seen = [], set()
    for index, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            raise ValueError(f"Task {index} of `tasks:` must be a mapping of flags, got {entry!r}.")
        entry = dict(entry)
        name = entry.pop("name", None)
        if not name:
            raise ValueError(f"Task {index} of `tasks:` has no `name`; every task needs one (e.g. `name: sentiment`).")
        if not str(name).isidentifier():
            raise ValueError(f"Task name {name!r} must be a Python identifier (letters, digits, underscores).")
        if name in seen:
            raise ValueError(f"Two tasks are named {name!r} in `tasks:`; task names must be unique.")
        seen.add(name)
        unknown = sorted(set(entry) - set(TASK_MODEL_KEYS) - set(_DATA_FLAGS))
        if unknown:
            raise ValueError(
                f"Unknown keys {unknown} in task {name!r}. Valid keys: {', '.join(TASK_MODEL_KEYS)}, and the data "
                f"flags: {', '.join(_DATA_FLAGS)}."
            )
        try:
            problem_type = normalize_problem_type(entry.pop("problem_type", None))
        except ValueError as err:
            raise ValueError(f"Task {name!r}: {err}") from err
        if problem_type == "regression":
            entry.setdefault("do_regression", True)
        elif problem_type is not None:
            entry.setdefault("do_regression", False)
        weight = entry.pop("weight", 1.0)
        if not isinstance(weight, (int, float)) or weight < 0:
            raise ValueError(f"weight of task {name!r} must be a number >= 0, got {weight!r}.")
        head_options = {key: entry.pop(key) for key in TASK_MODEL_KEYS[3:] if key in entry}
        flags = {**{k: v for k, v in (defaults or {}).items() if v is not None}, **entry}
        try:
            data_args = DataTrainingArguments(**flags)
        except (ValueError, TypeError) as err:
            raise ValueError(f"Task {name!r}: {err}") from err
        specs.append(TaskDataSpec(name, data_args, float(weight), problem_type, head_options))
    return specs


def load_tasks(specs: Sequence[TaskDataSpec], seed: int = 42) -> list[tuple[Any, TaskInfo]]:
    """Loads every task's data with `load_raw_datasets`; an error names the task it comes from.

    Args:
        specs: From `parse_tasks`.
        seed: Seed of validation splits and subsamples.

    Returns:
        `(raw_datasets, info)` per task, in order.

    Raises:
        ValueError: A task's data failed to load (missing label column, unknown GLUE task, ...), or its problem type
            is not the one asked for.
    """
    loaded = []
    for spec in specs:
        try:
            raw, info = load_raw_datasets(spec.data_args, seed=seed)
        except (ValueError, FileNotFoundError) as err:
            raise ValueError(f"Task {spec.name!r}: {err}") from err
        if spec.problem_type is not None and info.problem_type != spec.problem_type:
            raise ValueError(
                f"Task {spec.name!r} asks for problem_type {spec.problem_type!r} but its labels "
                f"({info.label_column!r}) are {info.problem_type}."
            )
        if "train" not in raw:
            raise ValueError(f"Task {spec.name!r} has no train split (splits: {', '.join(raw)}).")
        loaded.append((raw, info))
    return loaded


def check_modalities(specs: Sequence[TaskDataSpec], infos: Sequence[TaskInfo], backbones: Sequence[dict]) -> None:
    """Checks that every task's data has what the backbones read, before preprocessing and training.

    Raises:
        ValueError: A task lacks the image or text column a backbone needs (names the task, its columns, the
            backbones).
    """
    needed = {spec["modality"] for spec in backbones}
    sources = ", ".join(f"{spec['source']} ({spec['modality']})" for spec in backbones)
    for spec, info in zip(specs, infos):
        has = {"image"} if info.image_column else set()
        has |= {"text"} if info.text_columns else set()
        if not needed <= has:
            raise ValueError(
                f"Task {spec.name!r} ({info.dataset_name}) has {info.modality} data but the backbone(s) {sources} "
                f"read {' and '.join(sorted(needed))}: every task must fit the shared backbone(s)."
            )


# ---------------------------------------------------------------------------------------------------------------
# One dataset, one collator, one sampler over all tasks
# ---------------------------------------------------------------------------------------------------------------


class MultiTaskDataset(Dataset):
    """The rows of several prepared task datasets, one after the other; each row says which task it belongs to.

    Args:
        datasets: One prepared dataset per task (rows with the model inputs and `labels`).
        task_names: The task of each dataset.
    """

    def __init__(self, datasets: Sequence[Any], task_names: Sequence[str]):
        if len(datasets) != len(task_names):
            raise ValueError(f"{len(datasets)} datasets for {len(task_names)} tasks.")
        self.datasets = list(datasets)
        self.task_names = list(task_names)
        self.sizes = [len(d) for d in self.datasets]
        self.offsets = np.cumsum([0, *self.sizes])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, index: int) -> dict[str, Any]:
        task = int(np.searchsorted(self.offsets, index, side="right") - 1)
        row = dict(self.datasets[task][int(index - self.offsets[task])])
        row["task"] = task
        return row

    def task_indices(self, task: int) -> range:
        """The global indices of task `task`'s rows."""
        return range(int(self.offsets[task]), int(self.offsets[task + 1]))


class MultiTaskCollator:
    """Collates rows of several tasks: the model inputs by the single-task collator, labels per task.

    Every batch carries `labels_{task}` for every task; rows of other tasks are filled with -100 (class ids,
    multi-hot rows) or NaN (regression), which `TransferForMultiTask` masks.

    Args:
        collator: The single-task collator (`TransferDataCollator`) for the shared backbones.
        tasks: The model's `config.tasks`, in the order of the dataset's task indices.
    """

    def __init__(self, collator: Any, tasks: Sequence[Mapping[str, Any]]):
        self.collator = collator
        self.tasks = list(tasks)

    def __repr__(self) -> str:
        return f"MultiTaskCollator({self.collator!r}, tasks={[t['name'] for t in self.tasks]})"

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        inputs = [{k: v for k, v in row.items() if k not in ("labels", "task")} for row in rows]
        batch = self.collator(inputs)
        for index, task in enumerate(self.tasks):
            problem_type, width = task["problem_type"], task["num_labels"]
            if problem_type == "single_label_classification":
                labels = torch.full((len(rows),), IGNORE_INDEX, dtype=torch.long)
            else:
                fill = float("nan") if problem_type == "regression" else float(IGNORE_INDEX)
                shape = (len(rows),) if problem_type == "regression" and width == 1 else (len(rows), width)
                labels = torch.full(shape, fill, dtype=torch.float32)
            for i, row in enumerate(rows):
                if row["task"] == index and row.get("labels") is not None:
                    labels[i] = torch.as_tensor(row["labels"], dtype=labels.dtype).view(labels[i].shape)
            batch[f"{LABELS_PREFIX}{task['name']}"] = labels
        return batch


def temperature_counts(sizes: Sequence[int], temperature: float, total: int | None = None) -> list[int]:
    """Rows per task per epoch when task t is drawn with probability ∝ N_t^(1/T) (T=1: proportional, T→∞: uniform).

    Args:
        sizes: Rows per task N_t.
        temperature: T >= 1 flattens the mixture towards small tasks.
        total: Rows per epoch (default: Σ N_t, the same budget as one pass over every task).

    Returns:
        Integer counts summing to `total` (largest-remainder rounding).
    """
    total = sum(sizes) if total is None else total
    shares = np.asarray(sizes, dtype=np.float64) ** (1.0 / temperature)
    exact = total * shares / shares.sum()
    counts = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - counts))[: total - counts.sum()]:
        counts[i] += 1
    return counts.tolist()


class MultiTaskSampler(Sampler[int]):
    """The order in which a `MultiTaskDataset`'s rows are trained on in one epoch; the same on every DDP rank.

    * `proportional`: every row once per epoch, shuffled (tasks in proportion to their sizes);
    * `temperature`: task t gets `temperature_counts` rows (small tasks repeated, large ones subsampled, a new draw
      each epoch), shuffled;
    * `round_robin`: the tasks in turn, one row each (small tasks cycled), so every batch holds the tasks equally.

    Every strategy keeps the epoch length at Σ N_t rows: the same budget as single-task training on every task.
    The order depends only on `seed` and the epoch (`set_epoch`, called by the Trainer through Accelerate), so
    every rank of a DDP run computes the same order (Accelerate gives each rank its share of the batches), and a
    resumed run replays it.

    Args:
        sizes: Rows per task, in the dataset's order.
        strategy: One of `SAMPLING_STRATEGIES`.
        temperature: T of the `temperature` strategy.
        seed: Seed of the order.
    """

    def __init__(self, sizes: Sequence[int], strategy: str = "proportional", temperature: float = 2.0, seed: int = 0):
        if strategy not in SAMPLING_STRATEGIES:
            raise ValueError(
                f"Unknown task_sampling {strategy!r}; valid values are: {', '.join(SAMPLING_STRATEGIES)}."
            )
        if temperature < 1:
            raise ValueError(f"task_sampling_temperature must be >= 1, got {temperature}.")
        self.sizes = list(sizes)
        self.offsets = np.cumsum([0, *self.sizes])
        self.strategy = strategy
        self.temperature = temperature
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return sum(self.sizes)

    def _draw(self, task: int, count: int, generator: torch.Generator) -> list[int]:
        """`count` rows of `task`: whole shuffled passes over it, then a shuffled part of one."""
        size, rows = self.sizes[task], []
        while len(rows) < count:
            rows += torch.randperm(size, generator=generator).tolist()
        return [int(self.offsets[task]) + i for i in rows[:count]]

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        total = len(self)
        if self.strategy == "proportional":
            yield from torch.randperm(total, generator=generator).tolist()
            return
        if self.strategy == "temperature":
            counts = temperature_counts(self.sizes, self.temperature, total)
            rows = [row for task, count in enumerate(counts) for row in self._draw(task, count, generator)]
            yield from (rows[i] for i in torch.randperm(len(rows), generator=generator).tolist())
            return
        per_task = math.ceil(total / len(self.sizes))
        streams = [self._draw(task, per_task, generator) for task in range(len(self.sizes))]
        order = [stream[i] for i in range(per_task) for stream in streams]
        yield from order[:total]


# ---------------------------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------------------------


def main_metric(metrics: Mapping[str, float]) -> str:
    """The metric that stands for a task in `mean_score`: GLUE's `combined_score` where there is one, else
    accuracy, else Pearson (regression)."""
    for name in ("combined_score", "accuracy", "matthews_correlation", "pearson", "f1"):
        if name in metrics:
            return name
    return next(iter(metrics))


class MultiTaskMetrics:
    """`compute_metrics` for a multi-task model: each task scored on its own labelled rows.

    Keys (the Trainer adds `eval_`): `{task}_{metric}` for every task, `mean_{metric}` for metrics every task has,
    and `mean_score`, the mean of each task's main metric (see `main_metric`).

    Args:
        tasks: The model's `config.tasks`.
        infos: Each task's `TaskInfo` (for its GLUE metric set), or None for generic metrics.
    """

    def __init__(self, tasks: Sequence[Mapping[str, Any]], infos: Sequence[TaskInfo | None] | None = None):
        from .metrics import build_compute_metrics

        self.tasks = list(tasks)
        infos = list(infos) if infos is not None else [None] * len(self.tasks)
        self.compute = []
        for task, info in zip(self.tasks, infos):
            try:
                self.compute.append(
                    build_compute_metrics(
                        info.task_name if info is not None else None,
                        problem_type=task["problem_type"],
                        num_labels=task["num_labels"],
                    )
                )
            except ValueError as err:
                raise ValueError(f"Task {task['name']!r}: {err}") from err

    def __call__(self, eval_pred: Any) -> dict[str, float]:
        predictions, label_ids = eval_pred[0], eval_pred[1]
        if not isinstance(label_ids, (tuple, list)):
            label_ids = (label_ids,)
        results, per_task = {}, []
        for task, compute, labels in zip(self.tasks, self.compute, label_ids):
            name = task["name"]
            logits = np.asarray(predictions[name])
            labels = np.asarray(labels)
            rows = labelled_rows(torch.from_numpy(labels), task["problem_type"]).numpy()
            if not rows.any():
                continue
            metrics = {k: float(v) for k, v in compute((logits[rows], labels[rows])).items()}
            per_task.append(metrics)
            results.update({f"{name}_{metric}": value for metric, value in metrics.items()})
        if per_task:
            shared = set.intersection(*(set(m) for m in per_task))
            results.update({f"mean_{metric}": float(np.mean([m[metric] for m in per_task])) for metric in shared})
            results["mean_score"] = float(np.mean([m[main_metric(m)] for m in per_task]))
        return results


# ---------------------------------------------------------------------------------------------------------------
# The recipe flow
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class MultiTaskArguments:
    """How tasks are mixed, and data flags shared by every task of a `tasks:` recipe."""

    task_sampling: str = field(
        default="proportional",
        metadata={"help": f"How tasks are mixed in training: {', '.join(SAMPLING_STRATEGIES)}."},
    )
    task_sampling_temperature: float = field(
        default=2.0, metadata={"help": "T of --task_sampling temperature: task t drawn ∝ N_t^(1/T)."}
    )
    max_seq_length: int | None = field(default=None, metadata={"help": "Default --max_seq_length of every task."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Default of every task."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Default of every task."})
    train_val_split: float | None = field(default=None, metadata={"help": "Default of every task."})
    no_augmentation: bool | None = field(default=None, metadata={"help": "Default of every task."})
    pad_to_max_length: bool | None = field(default=None, metadata={"help": "Default of every task."})
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "Default of every task."})
    cache_dir: str | None = field(default=None, metadata={"help": "Default of every task."})

    def __post_init__(self):
        if self.task_sampling not in SAMPLING_STRATEGIES:
            raise ValueError(
                f"Unknown task_sampling {self.task_sampling!r}; valid values are: {', '.join(SAMPLING_STRATEGIES)}."
            )
        if self.task_sampling_temperature < 1:
            raise ValueError(f"task_sampling_temperature must be >= 1, got {self.task_sampling_temperature}.")

    def data_defaults(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in SHARED_DATA_FLAGS if getattr(self, name) is not None}


def read_recipe(argv: Sequence[str]) -> dict | None:
    """The recipe file given as the first argument, parsed; None when there is none."""
    if argv and str(argv[0]).endswith((".yaml", ".yml", ".json")) and os.path.isfile(argv[0]):
        return yaml.safe_load(Path(argv[0]).read_text()) or {}
    return None


def is_multitask_recipe(argv: Sequence[str]) -> bool:
    """Whether the command line starts with a recipe that has a `tasks:` list."""
    recipe = read_recipe(argv)
    return bool(recipe) and "tasks" in recipe


# Model flags of recipes/finetune.py that a multi-task run does not support (refused, never silently ignored).
_UNSUPPORTED_MODEL_FLAGS = {
    "teacher": None,
    "gradual_unfreezing": False,
    "hub_timm_model_id": None,
    "channels_last": False,
}


def parse_multitask_args(
    argv: Sequence[str], model_arguments_class: type
) -> tuple[Any, MultiTaskArguments, Any, list]:
    """Parses `RECIPE.yaml [--flag value ...]` of a multi-task recipe.

    Returns:
        `(model_args, multitask_args, training_args, task_specs)`.
    """
    from transformers import HfArgumentParser, TrainingArguments

    argv = [str(a) for a in argv]
    recipe = dict(read_recipe(argv) or {})
    argv.pop(0)
    recipe.pop("expected_results", None)
    entries = recipe.pop("tasks")
    parser = HfArgumentParser((model_arguments_class, MultiTaskArguments, TrainingArguments))
    if not torch.cuda.is_available():
        parser.set_defaults(use_cpu=True)  # as recipes/finetune.py: CPU DDP over gloo without GPUs
    known = {action.dest for action in parser._actions}
    unknown = sorted(set(recipe) - known)
    if unknown:
        data_flags = sorted(set(unknown) & set(_DATA_FLAGS))
        hint = f" Data flags ({', '.join(data_flags)}) go in each task of `tasks:`." if data_flags else ""
        raise ValueError(f"Unknown keys in the recipe: {unknown}. Valid keys are the flags of --help.{hint}")
    if isinstance(recipe.get("backbone"), str):
        recipe["backbone"] = [recipe["backbone"]]  # one backbone given without brackets
    parser.set_defaults(**recipe)
    model_args, multitask_args, training_args = parser.parse_args_into_dataclasses(args=argv)
    if not model_args.backbone:
        parser.error("--backbone is required (in the recipe or on the command line).")
    for flag, default in _UNSUPPORTED_MODEL_FLAGS.items():
        if getattr(model_args, flag, default) != default:
            raise ValueError(f"--{flag} is not supported with a `tasks:` recipe (multi-task training).")
    if model_args.cache_features:
        raise ValueError("--cache_features is not supported with a `tasks:` recipe (multi-task training).")
    specs = parse_tasks(entries, multitask_args.data_defaults())
    return model_args, multitask_args, training_args, specs


class MultiTaskTrainer(TransferTrainer):
    """`TransferTrainer` whose training order mixes the tasks with a `MultiTaskSampler`.

    Args:
        *args: `TransferTrainer` arguments.
        task_sampler: The training order (None: the Trainer's own random sampler).
        **kwargs: `TransferTrainer` keyword arguments.
    """

    def __init__(self, *args: Any, task_sampler: MultiTaskSampler | None = None, **kwargs: Any):
        self.task_sampler = task_sampler
        super().__init__(*args, **kwargs)

    def _get_train_sampler(self, train_dataset=None):
        if self.task_sampler is not None:
            return self.task_sampler
        return super()._get_train_sampler(train_dataset)


def task_card_results(specs, infos, metrics: Mapping[str, float], modality: str) -> list:
    """One `huggingface_hub.EvalResult` per task metric; each task is its own model-index result."""
    from huggingface_hub import EvalResult

    task_type = "image-classification" if modality == "image" else "text-classification"
    results = []
    for spec, info in zip(specs, infos):
        prefix = f"eval_{spec.name}_"
        for key, value in metrics.items():
            if not key.startswith(prefix) or key.endswith(("_samples", "_loss")):
                continue
            metric = key[len(prefix) :]
            results.append(
                EvalResult(
                    task_type=task_type,
                    task_name=spec.name,
                    dataset_type=str(info.dataset_name),
                    dataset_name=f"{spec.name}: {info.dataset_name}",
                    # the task's name keeps tasks on one dataset apart in the model index
                    dataset_config=info.dataset_config_name or spec.name,
                    dataset_split=info.eval_splits[0] if info.eval_splits else "validation",
                    metric_type=metric,
                    metric_name=f"{spec.name} {metric}",
                    metric_value=float(value),
                )
            )
    return results


def write_model_card(output_dir: str, model: TransferForMultiTask, specs, infos, metrics: Mapping[str, float]):
    """Writes `README.md`: the tasks, their data and weights, and every task's results in the model index.

    Returns:
        The `huggingface_hub.ModelCard`.
    """
    from huggingface_hub import ModelCard, ModelCardData

    modality = model.config.modality
    backbones = ", ".join(spec["source"] for spec in model.config.backbones)
    card_data = ModelCardData(
        library_name="transformers",
        tags=["hf_transfer", "multi-task", modality],
        model_name=Path(output_dir).name,
        eval_results=task_card_results(specs, infos, metrics, modality) or None,
    )
    rows = []
    for spec, info in zip(specs, infos):
        task = model.config.task(spec.name)
        scores = ", ".join(
            f"{k[len(f'eval_{spec.name}_') :]} {v:.4f}"
            for k, v in metrics.items()
            if k.startswith(f"eval_{spec.name}_") and not k.endswith(("_samples", "_loss", "_runtime"))
        )
        rows.append(
            f"| `{spec.name}` | {info.dataset_name} | {task['problem_type']} | {task['num_labels']} | "
            f"{task['weight']} | {scores or 'not evaluated'} |"
        )
    mean = metrics.get("eval_mean_score")
    content = "\n".join(
        [
            "---",
            card_data.to_yaml(),
            "---",
            "",
            f"# {Path(output_dir).name}",
            "",
            f"A multi-task model trained with hf_transfer: one shared backbone ({backbones}) and one head per task, "
            "trained jointly on `loss = Σ_t w_t L_t` (one backbone pass per batch for every task).",
            "",
            "| task | dataset | problem type | labels | weight | validation results |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
            f"Mean of the tasks' main metrics: {mean:.4f}" if mean is not None else "",
            "",
            "## Usage",
            "",
            "```python",
            "import hf_transfer  # or trust_remote_code=True without it",
            "from transformers import AutoModel",
            "",
            f'model = AutoModel.from_pretrained("{Path(output_dir).name}")',
            "outputs = model(**inputs)  # outputs.logits[task] for every task",
            f'single = model.for_task("{specs[0].name}")  # an ordinary classifier for pipeline() / push_to_hub',
            "```",
            "",
        ]
    )
    card = ModelCard(content)
    card.save(os.path.join(output_dir, "README.md"))
    return card


def run_multitask(argv: Sequence[str], script: Any) -> dict:
    """`recipes/finetune.py` for a recipe with a `tasks:` list: one model, one head per task, trained jointly.

    Args:
        argv: `RECIPE.yaml [--flag value ...]`.
        script: The `recipes/finetune.py` module (its `ModelArguments`, `backbone_specs`, `check_distributed`,
            `last_complete_checkpoint`).

    Returns:
        The train and eval metrics (`eval_{task}_{metric}`, `eval_mean_{metric}`, `eval_mean_score`).
    """
    import datasets
    import transformers
    from transformers import set_seed

    from .data import AugmentationEpochCallback
    from .processing import build_processor, load_processors

    model_args, mt_args, training_args, specs = parse_multitask_args(argv, script.ModelArguments)
    script.check_distributed(training_args)
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        datefmt="%m/%d/%Y %H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    log_level = training_args.get_process_log_level()
    logging.getLogger("hf_transfer").setLevel(log_level)
    datasets.utils.logging.set_verbosity(log_level)
    transformers.utils.logging.set_verbosity(log_level)
    logger.warning(
        f"Process rank: {training_args.process_index}, world size: {training_args.world_size}, "
        f"device: {training_args.device}, bf16: {training_args.bf16}; multi-task: {[s.name for s in specs]}"
    )

    hub_token, push_requested = None, training_args.push_to_hub
    if push_requested:
        from .hub import check_push_target, remove_secrets_from_args

        hub_token = training_args.hub_token
        training_args.hub_model_id = check_push_target(
            training_args.hub_model_id or Path(training_args.output_dir).name, hub_token
        )
        remove_secrets_from_args(training_args)
        training_args.push_to_hub = False  # pushed once at the end, with the card

    last_checkpoint = None
    if training_args.do_train and os.path.isdir(training_args.output_dir) and not training_args.resume_from_checkpoint:
        last_checkpoint = script.last_complete_checkpoint(training_args.output_dir)
    set_seed(training_args.seed)

    # 1. Data, per task
    loaded = load_tasks(specs, seed=training_args.seed)
    infos = [info for _, info in loaded]

    # 2. Model: the shared backbone(s), a head per task
    defaults = {
        "head": model_args.head,
        "head_hidden_sizes": model_args.head_hidden_sizes,
        "head_activation": model_args.head_activation,
        "head_dropout": model_args.head_dropout,
    }
    tasks = [
        {
            "name": spec.name,
            "num_labels": info.num_labels,
            "id2label": info.label_list,
            "problem_type": info.problem_type,
            "weight": spec.weight,
            **{**defaults, **spec.head_options},
        }
        for spec, info in zip(specs, infos)
    ]
    model = TransferForMultiTask.from_backbones(
        script.backbone_specs(model_args),
        tasks=tasks,
        fusion=model_args.fusion,
        fusion_dim=model_args.fusion_dim,
        freeze=model_args.freeze,
        num_frozen_groups=model_args.num_frozen_groups,
        image_size=model_args.image_size,
    )
    check_modalities(specs, infos, model.config.backbones)
    compute_metrics = MultiTaskMetrics(model.config.tasks, infos)

    # 3. Preprocessing: each task with the single-task pipeline, then one dataset over all tasks
    processors = load_processors(model.config)
    processor = build_processor(model.config, processors)  # every input the model reads, saved with it
    prepared = []
    for spec, (raw, info) in zip(specs, loaded):
        try:
            prepared.append(
                prepare_datasets(raw, info, model.config.backbones, processors, spec.data_args, training_args)
            )
        except ValueError as err:
            raise ValueError(f"Task {spec.name!r}: {err}") from err
    names = [spec.name for spec in specs]
    train_dataset = MultiTaskDataset([p.train_dataset for p in prepared], names)
    eval_dataset = MultiTaskDataset([p.eval_datasets[info.eval_splits[0]] for p, info in zip(prepared, infos)], names)
    collator = MultiTaskCollator(prepared[0].data_collator, model.config.tasks)
    training_args.remove_unused_columns = False
    training_args.label_names = model.label_names()
    if training_args.world_size > 1 and not training_args.ddp_find_unused_parameters:
        # A batch may hold no row of some task; its head then gets no gradient on that rank.
        logger.warning("DDP: find_unused_parameters on (a batch may hold no row of a task).")
    training_args.ddp_find_unused_parameters = True
    sampler = MultiTaskSampler(
        train_dataset.sizes,
        mt_args.task_sampling,
        mt_args.task_sampling_temperature,
        seed=training_args.data_seed if training_args.data_seed is not None else training_args.seed,
    )
    logger.info(
        f"Tasks {dict(zip(names, train_dataset.sizes))} train rows; sampling {mt_args.task_sampling}"
        + (f" (T={mt_args.task_sampling_temperature})" if mt_args.task_sampling == "temperature" else "")
    )

    # 4. Train and evaluate
    callbacks = [AugmentationEpochCallback(p.train_dataset) for p in prepared if training_args.do_train]
    trainer = MultiTaskTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset if training_args.do_train else None,
        eval_dataset=eval_dataset if training_args.do_eval else None,
        data_collator=collator,
        compute_metrics=compute_metrics,
        processing_class=processor,
        callbacks=callbacks,
        layer_decay=model_args.layer_decay,
        head_lr_multiplier=model_args.head_lr_multiplier,
        freeze_bn_stats=model_args.freeze_bn_stats,
        task_sampler=sampler,
    )
    results: dict[str, Any] = {}
    if training_args.do_train:
        start = time.perf_counter()
        train_result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint or last_checkpoint)
        trainer.save_model()
        metrics = dict(train_result.metrics, train_samples=len(train_dataset))
        metrics.update({f"train_{name}_samples": size for name, size in zip(names, train_dataset.sizes)})
        metrics["train_wall_seconds"] = time.perf_counter() - start
        trainer.log_metrics("train", metrics)
        trainer.save_metrics("train", metrics)
        trainer.save_state()
        results.update(metrics)
    if trainer.is_world_process_zero():
        processor.save_pretrained(training_args.output_dir)
    if training_args.do_eval:
        metrics = trainer.evaluate()
        metrics.update({f"eval_{name}_samples": size for name, size in zip(names, eval_dataset.sizes)})
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)
        results.update(metrics)
    if trainer.is_world_process_zero():
        card = write_model_card(training_args.output_dir, model, specs, infos, results)
        if push_requested:
            from huggingface_hub import HfApi

            api = HfApi(token=hub_token)
            api.create_repo(training_args.hub_model_id, exist_ok=True, private=training_args.hub_private_repo)
            api.upload_folder(
                repo_id=training_args.hub_model_id,
                folder_path=training_args.output_dir,
                ignore_patterns=["checkpoint-*", "checkpoint-*/**", "runs/**", "training_args.bin", "*.log"],
                commit_message="Multi-task model trained with hf_transfer",
            )
            logger.info(f"Pushed to {training_args.hub_model_id}; card: {len(card.data.eval_results or [])} results")
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return results


# ---------------------------------------------------------------------------------------------------------------
# Offline data for the MiniLM recipe
# ---------------------------------------------------------------------------------------------------------------


def save_multitask_datasets(out_dir: str | os.PathLike, seed: int = 0, include_moderators: bool = True) -> dict:
    """Writes the three offline text tasks of `recipes/multitask_minilm_offline.yaml` as Hub-layout parquet.

    * `sentiment`: Rotten Tomatoes fresh vs rotten (`hf_transfer.assets.rotten_tomatoes`: 10,201 / 2,551);
    * `review_vs_plot`: the same reviews (same split) labelled `review`, plus the `plot` synopses split 80/20, so
      that no text is in one task's training data and another task's held-out data;
    * `party`: 2016 debate statements by party (`assets.debate_statements`: democrat / republican, plus
      moderator with `include_moderators`), 80/20 stratified.

    Each folder holds `train-00000-of-00001.parquet` and `validation-00000-of-00001.parquet` (the held-out 20 %,
    named `validation` so that the recipe evaluates on it); columns `text` and `label` (`ClassLabel`).

    Args:
        out_dir: Output directory.
        seed: Seed of the splits.
        include_moderators: Three party classes instead of two.

    Returns:
        Task name → directory.
    """
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value, concatenate_datasets

    from . import assets

    out = Path(out_dir)
    sentiment = assets.rotten_tomatoes(seed=seed)
    reviews = {text for split in sentiment.values() for text in split["text"]}
    everything = concatenate_datasets(list(assets.rotten_tomatoes_review_vs_plot(seed=seed).values()))
    plots = sorted({t for t, label in zip(everything["text"], everything["label"]) if label == 1} - reviews)
    features = Features({"text": Value("string"), "label": ClassLabel(names=["review", "plot"])})
    plot_splits = Dataset.from_dict({"text": plots, "label": [1] * len(plots)}, features=features).train_test_split(
        test_size=0.2, seed=seed
    )
    review_vs_plot = {
        split: concatenate_datasets(
            [
                Dataset.from_dict(
                    {"text": sentiment[split]["text"], "label": [0] * len(sentiment[split])}, features=features
                ),
                plot_splits[split],
            ]
        ).shuffle(seed=seed)
        for split in ("train", "test")
    }
    debates = assets.debate_statements(include_moderators=include_moderators)
    tasks = {
        "sentiment": sentiment,
        "review_vs_plot": review_vs_plot,
        "party": debates.train_test_split(test_size=0.2, seed=seed, stratify_by_column="label"),
    }
    paths = {}
    for name, splits in tasks.items():
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        for split, dataset in DatasetDict(splits).items():
            target = "validation" if split == "test" else split
            dataset.to_parquet(str(folder / f"{target}-00000-of-00001.parquet"))
        paths[name] = str(folder)
    return paths


__all__ = [
    "SAMPLING_STRATEGIES",
    "MultiTaskArguments",
    "MultiTaskCollator",
    "MultiTaskDataset",
    "MultiTaskMetrics",
    "MultiTaskSampler",
    "MultiTaskTrainer",
    "TaskDataSpec",
    "check_modalities",
    "is_multitask_recipe",
    "load_tasks",
    "parse_tasks",
    "run_multitask",
    "save_multitask_datasets",
    "temperature_counts",
    "write_model_card",
]
