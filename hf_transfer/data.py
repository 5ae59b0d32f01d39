"""Datasets in, model-ready batches out: loading, splitting, columns, labels, transforms, tokenization, collation.

The flow mirrors transformers' example scripts (``run_image_classification.py``, ``run_glue.py``,
``run_classification.py``), with the same flag names:

>>> data_args = DataTrainingArguments(dataset_name="uoft-cs/cifar10", max_train_samples=1000)
>>> raw, info = load_raw_datasets(data_args, seed=42)          # DatasetDict + TaskInfo (columns, labels, splits)
>>> train_dataset, eval_datasets, collator = prepare_datasets(raw, info, config.backbones, tokenizers, data_args, args)
>>> trainer = Trainer(model, args, train_dataset=train_dataset, eval_dataset=eval_datasets[info.eval_splits[0]],
...                   data_collator=collator, compute_metrics=build_compute_metrics(info.task_name, ...))

Offline use: ``dataset_name`` may be a local directory instead of a Hub id — a ``save_to_disk`` DatasetDict, or a
folder of parquet/arrow/csv/json files named ``{split}-00000-of-00001.parquet`` (the layout the Hub stores, one
subfolder per config such as ``glue/mrpc/`` or ``cifar10/plain_text/``; ``dataset_config_name`` picks the
subfolder). The Hub dataset's task knowledge still applies: a local directory named ``glue`` (or
``--task_name``) gets GLUE's columns, splits and metrics, exactly as ``nyu-mll/glue`` would.

How preprocessing reads the model's ``config.backbones`` (a list, one entry per backbone, dicts or objects):

* ``"modality"``: ``"image"`` or ``"text"``.
* ``"input_suffix"``: ``""`` for the first backbone of a modality, ``"_1"``, ``"_2"``... for others that need
  differently preprocessed inputs. Backbones sharing a suffix share one input (and must agree on preprocessing).
  Missing → ``""`` for the first backbone of its modality, ``"_{k}"`` for the k-th after it.
* image backbones: ``"data_config"``, a timm-style dict ``{"input_size": [3, H, W], "mean": [...], "std": [...],
  "interpolation": "bicubic"|"bilinear", "crop_pct": 0.875}`` (``crop_mode`` optional). The backbone reads
  ``pixel_values{suffix}``: float32 ``(batch, 3, H, W)``, normalized with its mean/std.
* text backbones: the i-th text backbone uses ``tokenizers[i]`` and reads ``input_ids{suffix}``,
  ``attention_mask{suffix}`` and ``token_type_ids{suffix}`` (the last only when its tokenizer returns it).
* the labels arrive as ``labels``: int64 ``(batch,)`` for single-label, float32 ``(batch, num_labels)``
  multi-hot for multi-label, float32 ``(batch,)`` for regression.
"""

from __future__ import annotations

import io
import logging
import os
import random
import re
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import datasets
import numpy as np
import torch
from datasets import ClassLabel, DatasetDict, Value
from transformers import TrainerCallback

from .labels_parsing import check_problem_type, parse_label_strings

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

__all__ = [
    "AugmentationEpochCallback",
    "GLUE_TASKS",
    "GLUE_TASK_TO_KEYS",
    "PROBLEM_TYPES",
    "DataTrainingArguments",
    "ImagePreprocessor",
    "PreparedDatasets",
    "TaskInfo",
    "ToNormalizedTensor",
    "TransferDataCollator",
    "build_data_collator",
    "build_image_transforms",
    "check_images",
    "check_labels",
    "find_unreadable_images",
    "image_collate_fn",
    "load_raw_datasets",
    "make_image_preprocessor",
    "prepare_datasets",
    "prepare_labels",
    "prepare_split",
    "to_channels_last",
    "tokenize_dataset",
]

# ---------------------------------------------------------------------------------------------------------------
# Task knowledge
# ---------------------------------------------------------------------------------------------------------------

GLUE_TASK_TO_KEYS: dict[str, tuple[str, str | None]] = {
    "cola": ("sentence", None),
    "mnli": ("premise", "hypothesis"),
    "mrpc": ("sentence1", "sentence2"),
    "qnli": ("question", "sentence"),
    "qqp": ("question1", "question2"),
    "rte": ("sentence1", "sentence2"),
    "sst2": ("sentence", None),
    "stsb": ("sentence1", "sentence2"),
    "wnli": ("sentence1", "sentence2"),
}
"""The text columns of each trainable GLUE task (as in ``run_glue.py``)."""

GLUE_TASKS: tuple[str, ...] = (*GLUE_TASK_TO_KEYS, "ax")
"""Every config of ``nyu-mll/glue``; ``ax`` is a test-only diagnostic set."""

GLUE_DATASET_NAMES = ("glue", "nyu-mll/glue")

PROBLEM_TYPES = ("single_label_classification", "multi_label_classification", "regression")

IMAGE_COLUMN_NAMES = ("image", "img", "images", "picture", "photo")
LABEL_COLUMN_NAMES = ("label", "labels", "fine_label", "target", "targets", "class", "category", "coarse_label")
TEXT_COLUMN_PAIRS = (("sentence1", "sentence2"), ("question1", "question2"), ("premise", "hypothesis"))
TEXT_COLUMN_NAMES = ("sentence", "text", "content", "review", "document", "caption")
VALIDATION_SPLIT_ALIASES = ("validation", "valid", "val", "dev")

# Batch keys the models read: pixel_values{suffix} from image backbones, the tokenizer outputs from text ones.
TEXT_INPUT_KEYS = ("input_ids", "attention_mask", "token_type_ids")
IMAGE_INPUT_KEY = "pixel_values"

DATA_FILE_BUILDERS = {
    ".parquet": "parquet",
    ".arrow": "arrow",
    ".csv": "csv",
    ".tsv": "csv",
    ".json": "json",
    ".jsonl": "json",
}
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
_SHARD_NAME = re.compile(r"^(?P<split>[A-Za-z0-9_.]+?)(?:-\d{5}-of-\d{5})?$")


# ---------------------------------------------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class DataTrainingArguments:
    """Arguments pertaining to what data we are going to input our model for training and eval.

    Using ``HfArgumentParser`` we can turn this class into argparse arguments to be able to specify them on the
    command line. Field names and help strings follow transformers' example scripts; conflicting flags are
    rejected here, before anything is loaded.
    """

    dataset_name: str | None = field(
        default=None,
        metadata={
            "help": "Name of a dataset from the hub (could be your own, possibly private dataset hosted on the hub), "
            "or a local directory holding one (a save_to_disk DatasetDict, or parquet/csv/json files named "
            "{split}-00000-of-00001.parquet, one subfolder per config)."
        },
    )
    dataset_config_name: str | None = field(
        default=None, metadata={"help": "The configuration name of the dataset to use (via the datasets library)."}
    )
    task_name: str | None = field(
        default=None,
        metadata={
            "help": "The name of the GLUE task to train on: " + ", ".join(GLUE_TASK_TO_KEYS) + ". Implies "
            "--dataset_name nyu-mll/glue unless a (local) dataset_name is given."
        },
    )
    train_dir: str | None = field(default=None, metadata={"help": "A folder containing the training data."})
    validation_dir: str | None = field(default=None, metadata={"help": "A folder containing the validation data."})
    train_file: str | None = field(
        default=None, metadata={"help": "A csv, json or parquet file containing the training data."}
    )
    validation_file: str | None = field(
        default=None, metadata={"help": "A csv, json or parquet file containing the validation data."}
    )
    test_file: str | None = field(
        default=None, metadata={"help": "A csv, json or parquet file containing the test data."}
    )
    image_column_name: str | None = field(
        default=None,
        metadata={
            "help": "The name of the dataset column containing the image data. If not specified, the first Image "
            "column (or one named 'image'/'img') is used."
        },
    )
    text_column_names: str | None = field(
        default=None,
        metadata={
            "help": "The name of the text column in the input dataset or a CSV/JSON file; two comma-separated names "
            "make sentence pairs, more are joined with --text_column_delimiter. If not specified, the GLUE task's "
            'columns or the "sentence"/"text" column are used.'
        },
    )
    text_column_delimiter: str = field(
        default=" ", metadata={"help": "The delimiter to use to join more than two text columns into one text."}
    )
    label_column_name: str | None = field(
        default=None,
        metadata={
            "help": "The name of the label column in the input dataset or a CSV/JSON file. If not specified, will "
            'use the "label" column (or "labels", "fine_label"...) for single/multi-label classification task.'
        },
    )
    do_regression: bool | None = field(
        default=None,
        metadata={
            "help": "Whether to do regression instead of classification. If None, will be inferred from the dataset."
        },
    )
    problem_type: str | None = field(
        default=None,
        metadata={
            "help": "single_label_classification, multi_label_classification or regression (transformers' "
            "config.problem_type). Default: inferred from the label column; an ambiguous string column is an error."
        },
    )
    label_delimiter: str | None = field(
        default=None,
        metadata={
            "help": "Multi-label data from CSV: the character between a row's labels (e.g. ',' for "
            "`action,comedy`). Cells written as lists (`['action', 'comedy']`) are detected without it."
        },
    )
    train_val_split: float | None = field(
        default=0.15, metadata={"help": "Percent to split off of train for validation."}
    )
    max_train_samples: int | None = field(
        default=None,
        metadata={
            "help": "For debugging purposes or quicker training, truncate the number of training examples to this "
            "value if set."
        },
    )
    max_eval_samples: int | None = field(
        default=None,
        metadata={
            "help": "For debugging purposes or quicker training, truncate the number of evaluation examples to this "
            "value if set."
        },
    )
    max_predict_samples: int | None = field(
        default=None,
        metadata={
            "help": "For debugging purposes or quicker training, truncate the number of prediction examples to this "
            "value if set."
        },
    )
    no_augmentation: bool = field(
        default=False,
        metadata={
            "help": "Train with the eval image transform (resize + center crop, no random crop or flip): "
            "deterministic inputs, e.g. to cache frozen-backbone features, or to resume a killed run bit-exactly "
            "(random augmentation draws from the global RNG, which the Trainer restores only after prefetching)."
        },
    )
    color_jitter: float | None = field(
        default=None,
        metadata={
            "help": "Color-jitter strength of the train image transform (timm's color_jitter, e.g. 0.4). Off by "
            "default: it halves the image pipeline's throughput."
        },
    )
    max_seq_length: int = field(
        default=128,
        metadata={
            "help": "The maximum total input sequence length after tokenization. Sequences longer than this will be "
            "truncated, sequences shorter will be padded."
        },
    )
    pad_to_max_length: bool = field(
        default=False,
        metadata={
            "help": "Whether to pad all samples to `max_seq_length`. If False, will pad the samples dynamically when "
            "batching to the maximum length in the batch."
        },
    )
    preprocessing_num_workers: int | None = field(
        default=None, metadata={"help": "The number of processes to use for the preprocessing."}
    )
    cache_dir: str | None = field(
        default=None, metadata={"help": "Where do you want to store the datasets downloaded from huggingface.co"}
    )

    def __post_init__(self):
        sources = {
            "dataset_name": self.dataset_name,
            "task_name": self.task_name,
            "train_dir": self.train_dir,
            "validation_dir": self.validation_dir,
            "train_file": self.train_file,
            "validation_file": self.validation_file,
            "test_file": self.test_file,
        }
        given = [name for name, value in sources.items() if value is not None]
        hub = [name for name in ("dataset_name", "task_name") if name in given]
        folders = [name for name in ("train_dir", "validation_dir") if name in given]
        files = [name for name in ("train_file", "validation_file", "test_file") if name in given]
        if not given:
            raise ValueError(
                "You must specify either a dataset name from the hub (--dataset_name / --task_name), a train and/or "
                "validation directory (--train_dir / --validation_dir), or data files (--train_file / "
                "--validation_file / --test_file)."
            )
        if sum(bool(group) for group in (hub, folders, files)) > 1:
            raise ValueError(
                f"Conflicting data flags: {', '.join('--' + name for name in given)}. Give one source: "
                "--dataset_name/--task_name, or --train_dir/--validation_dir (image folders), or "
                "--train_file/--validation_file/--test_file."
            )
        if self.task_name is not None:
            self.task_name = self.task_name.lower()
            if self.dataset_config_name is not None and self.dataset_config_name.lower() != self.task_name:
                raise ValueError(
                    f"Conflicting flags: --task_name {self.task_name} but --dataset_config_name "
                    f"{self.dataset_config_name}; give only --task_name."
                )
        if self.train_val_split is not None and not 0.0 <= self.train_val_split < 1.0:
            raise ValueError(f"--train_val_split must be in [0, 1), got {self.train_val_split}.")
        for name in ("max_train_samples", "max_eval_samples", "max_predict_samples"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"--{name} must be >= 0, got {value}.")
        if self.max_seq_length <= 0:
            raise ValueError(f"--max_seq_length must be > 0, got {self.max_seq_length}.")
        if self.text_column_names is not None and not _split_names(self.text_column_names):
            raise ValueError(f"--text_column_names {self.text_column_names!r} names no column.")

    @property
    def text_columns(self) -> list[str] | None:
        """``text_column_names`` split on commas, or None."""
        return _split_names(self.text_column_names) if self.text_column_names is not None else None


def _split_names(value: str) -> list[str]:
    return [name.strip() for name in value.split(",") if name.strip()]


# ---------------------------------------------------------------------------------------------------------------
# What the data is
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class TaskInfo:
    """What :func:`load_raw_datasets` found out about the data: columns, labels, problem type, splits.

    Attributes:
        modality: ``"image"``, ``"text"`` or ``"multimodal"`` (columns for both, for a fusion model), the values of
            ``TransferConfig.modality``.
        problem_type: ``"single_label_classification"``, ``"multi_label_classification"`` or ``"regression"``
            (the values of transformers' ``config.problem_type``).
        label_column: The label column's name in the raw datasets.
        label_list: Class names in id order (``ClassLabel`` names, or sorted raw values); None for regression.
        image_column: The image column, if the data has images.
        text_columns: The text columns: one, a sentence pair, or more (joined).
        task_name: The GLUE task, if this is GLUE.
        eval_splits: Splits to evaluate on, main one first (``["validation"]``; MNLI: ``["validation_matched",
            "validation_mismatched"]``).
        test_splits: Splits to predict on (``["test"]``; MNLI: ``["test_matched", "test_mismatched"]``).
        test_has_labels: False when the test splits carry no labels (GLUE's -1): predict only, no metrics.
        dataset_name: Where the data came from (Hub id, local path, or the data files/folders).
        dataset_config_name: The dataset config (e.g. the GLUE task).
    """

    modality: str
    problem_type: str
    label_column: str
    label_list: list[str] | None = None
    image_column: str | None = None
    text_columns: list[str] = field(default_factory=list)
    task_name: str | None = None
    eval_splits: list[str] = field(default_factory=list)
    test_splits: list[str] = field(default_factory=list)
    test_has_labels: bool = True
    dataset_name: str | None = None
    dataset_config_name: str | None = None

    @property
    def num_labels(self) -> int:
        """Number of model outputs: classes, or 1 for regression."""
        return len(self.label_list) if self.label_list else 1

    @property
    def id2label(self) -> dict[int, str]:
        """Class id → name (``{0: "LABEL_0"}`` for regression, as transformers does)."""
        return dict(enumerate(self.label_list)) if self.label_list else {0: "LABEL_0"}

    def metric_prefix(self, split: str) -> str:
        """The metric key prefix for an eval split: `eval` for the main one, `eval_mismatched` for MNLI's
        `validation_mismatched` (as run_glue.py names them)."""
        return "eval" if split == self.eval_splits[0] else f"eval_{split.removeprefix('validation_')}"

    @property
    def label2id(self) -> dict[str, int]:
        """Class name → id."""
        return {name: i for i, name in self.id2label.items()}


# ---------------------------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------------------------


def load_raw_datasets(
    data_args: DataTrainingArguments, seed: int = 42, modalities: Iterable[str] | None = None
) -> tuple[DatasetDict, TaskInfo]:
    """Loads the data named by ``data_args``, finds its columns and labels, and makes the splits.

    Sources: a Hub dataset or a local directory (``dataset_name``, see the module docstring), GLUE
    (``task_name``, or ``dataset_name`` ``nyu-mll/glue``/``glue``/a local ``.../glue`` directory with the task as
    ``dataset_config_name``), image folders (``train_dir``/``validation_dir``, one subfolder per class), or data
    files (``train_file``/``validation_file``/``test_file``: csv, tsv, json, jsonl, parquet).

    Then, in order: columns are resolved (flags, else auto-detection), labels normalized (non-``ClassLabel``
    labels become ``ClassLabel`` with sorted names; floats mean regression; lists mean multi-label), rows without a
    label (-1/None) dropped from train and validation (GLUE test labels are -1: kept, ``test_has_labels=False``), a
    validation split carved from train when there is none (``train_val_split``, seeded, stratified by label when
    possible), ``max_train_samples`` applied as ``shuffle(seed).select(range(n))``, ``max_eval_samples`` /
    ``max_predict_samples`` as ``select(range(n))``, and the first images decoded as a cheap check.

    Args:
        data_args: The data flags.
        seed: Seed for the validation split and the train subsample (pass ``training_args.seed``).
        modalities: The modalities the model reads (``{"image"}``, ``{"text"}``, ``{"image", "text"}``), from its
            backbones; None detects what the data has.

    Returns:
        ``(raw_datasets, info)``: a ``DatasetDict`` with ``"train"``, the eval splits and the test splits where
        present (raw columns, labels as ``ClassLabel``/float), and the :class:`TaskInfo`.

    Raises:
        ValueError: Before any training, with the bad value and the valid ones: unknown GLUE task or ``ax`` asked
            for training, unknown column (lists the dataset's columns), missing modality, empty split, unreadable
            image in the first rows (names the row and file), a missing local path.
    """
    task = _resolve_glue_task(data_args)
    wanted = _check_modalities(modalities)
    raw, source = _load_source(data_args, task)

    if task is not None:
        eval_splits = ["validation_matched", "validation_mismatched"] if task == "mnli" else ["validation"]
        test_splits = ["test_matched", "test_mismatched"] if task == "mnli" else ["test"]
    else:
        raw = _rename_validation_split(raw)
        eval_splits, test_splits = ["validation"], ["test"]
    known = ["train", *eval_splits, *test_splits]
    dropped = [split for split in raw if split not in known]
    if dropped:
        logger.info("Ignoring splits %s (known splits: %s).", dropped, known)
    raw = DatasetDict({split: raw[split] for split in known if split in raw})
    if not raw:
        raise ValueError(f"No usable split in {source}: found {dropped}, expected some of {known}.")

    reference = raw["train"] if "train" in raw else next(iter(raw.values()))
    features = reference.features
    label_column = _resolve_label_column(data_args.label_column_name, features, source)
    image_column, text_columns = _resolve_input_columns(data_args, task, features, label_column, wanted, source)
    for split, dataset in raw.items():
        missing = [c for c in [label_column, image_column, *text_columns] if c and c not in dataset.column_names]
        if missing and not (split in test_splits and missing == [label_column]):
            raise ValueError(
                f"Split '{split}' of {source} lacks column(s) {missing}; its columns are: "
                f"{', '.join(dataset.column_names)}."
            )
    if image_column is not None and isinstance(features[image_column], Value):
        raw = _cast_image_paths(raw, image_column, data_args)

    # String cells naming several labels become lists first (--label_delimiter / --problem_type; never guessed)
    raw, do_regression = parse_label_strings(
        raw, label_column, data_args.label_delimiter, data_args.problem_type, data_args.do_regression
    )
    raw, problem_type, label_list = _normalize_labels(raw, label_column, do_regression)
    check_problem_type(data_args.problem_type, problem_type, label_column)
    # GLUE marks missing labels -1 (stsb too); elsewhere -1 is a valid regression target.
    minus_one_missing = task is not None or problem_type != "regression"
    test_has_labels = any(
        _has_any_label(raw[s], label_column, problem_type, minus_one_missing) for s in test_splits if s in raw
    )
    for split in list(raw):
        if split not in test_splits:
            raw[split] = _drop_unlabeled(raw[split], label_column, problem_type, split, minus_one_missing)

    if "train" in raw and not any(s in raw for s in eval_splits):
        raw = _carve_validation(raw, data_args.train_val_split, label_column, seed)
    raw = _apply_max_samples(raw, data_args, eval_splits, test_splits, seed)
    for split, dataset in raw.items():
        if len(dataset) == 0:
            raise ValueError(
                f"Split '{split}' of {source} is empty after filtering (rows without a label dropped, "
                f"max_train_samples={data_args.max_train_samples}, max_eval_samples={data_args.max_eval_samples}, "
                f"max_predict_samples={data_args.max_predict_samples}); splits: "
                f"{ {name: len(d) for name, d in raw.items()} }."
            )
    if image_column is not None:
        for split, dataset in raw.items():
            check_images(dataset, image_column, num_rows=4, split=split)

    modality = "multimodal" if image_column and text_columns else "image" if image_column else "text"
    info = TaskInfo(
        modality=modality,
        problem_type=problem_type,
        label_column=label_column,
        label_list=label_list,
        image_column=image_column,
        text_columns=text_columns,
        task_name=task,
        eval_splits=[s for s in eval_splits if s in raw],
        test_splits=[s for s in test_splits if s in raw],
        test_has_labels=test_has_labels,
        dataset_name=data_args.dataset_name or (None if task is None else "nyu-mll/glue") or source,
        dataset_config_name=task or data_args.dataset_config_name,
    )
    logger.info("Loaded %s: %s; %s", source, {s: len(d) for s, d in raw.items()}, info)
    return raw, info


def _check_modalities(modalities: Iterable[str] | None) -> set[str] | None:
    if modalities is None:
        return None
    wanted = set(modalities)
    unknown = wanted - {"image", "text"}
    if unknown or not wanted:
        raise ValueError(f"Unknown modalities {sorted(unknown) or '(none)'}; valid: image, text.")
    return wanted


def _is_glue_name(name: str | None) -> bool:
    if name is None:
        return False
    return name.lower() in GLUE_DATASET_NAMES or (os.path.isdir(name) and Path(name).name.lower() == "glue")


def _resolve_glue_task(data_args: DataTrainingArguments) -> str | None:
    task = data_args.task_name
    if task is None and _is_glue_name(data_args.dataset_name):
        if data_args.dataset_config_name is None:
            raise ValueError(
                f"GLUE ({data_args.dataset_name}) needs a task: pass --dataset_config_name (or --task_name), one of "
                f"{', '.join(GLUE_TASK_TO_KEYS)}."
            )
        task = data_args.dataset_config_name.lower()
    if task is None:
        return None
    if task == "ax":
        raise ValueError(
            "GLUE task 'ax' is a test-only diagnostic set (no train or validation split, labels -1): it cannot be "
            "trained or evaluated on. Train on 'mnli' and predict on 'ax'. Trainable tasks: "
            f"{', '.join(GLUE_TASK_TO_KEYS)}."
        )
    if task not in GLUE_TASK_TO_KEYS:
        raise ValueError(f"Unknown GLUE task {task!r}; valid tasks: {', '.join(GLUE_TASK_TO_KEYS)}.")
    return task


def _load_source(data_args: DataTrainingArguments, task: str | None) -> tuple[DatasetDict, str]:
    """Loads the raw splits; returns them with a short description of the source for error messages."""
    cache_dir = data_args.cache_dir
    if data_args.dataset_name is not None or task is not None:
        name = data_args.dataset_name or "nyu-mll/glue"
        config = task or data_args.dataset_config_name
        looks_local = name.startswith((".", "/", "~")) or os.path.isdir(name)
        if looks_local:
            path = Path(name).expanduser()
            if not path.is_dir():
                raise ValueError(f"--dataset_name {name}: no such directory.")
            return _load_local_directory(path, config, cache_dir), f"dataset {name!r}"
        try:
            loaded = datasets.load_dataset(name, config, cache_dir=cache_dir)
        except Exception as err:  # offline, unknown name, unknown config: say what to do instead
            raise ValueError(
                f"Could not load dataset {name!r} (config {config!r}) from the Hub: {type(err).__name__}: {err}. "
                "Without network access, pass a local directory as --dataset_name (a save_to_disk DatasetDict or "
                "parquet files as the Hub stores them), or use --train_file/--train_dir."
            ) from err
        return _as_dataset_dict(loaded), f"dataset {name!r}"

    if data_args.train_dir is not None or data_args.validation_dir is not None:
        data_files = {}
        for split, folder in (("train", data_args.train_dir), ("validation", data_args.validation_dir)):
            if folder is None:
                continue
            if not os.path.isdir(folder):
                raise ValueError(f"--{split}_dir {folder}: no such directory.")
            data_files[split] = os.path.join(folder, "**")
        loaded = datasets.load_dataset("imagefolder", data_files=data_files, cache_dir=cache_dir)
        return loaded, f"image folders {data_files}"

    data_files = {
        split: path
        for split, path in (
            ("train", data_args.train_file),
            ("validation", data_args.validation_file),
            ("test", data_args.test_file),
        )
        if path is not None
    }
    builders = {}
    for split, path in data_files.items():
        if not os.path.isfile(path):
            raise ValueError(f"--{split}_file {path}: no such file.")
        suffix = Path(path).suffix.lower()
        if suffix not in DATA_FILE_BUILDERS:
            raise ValueError(
                f"--{split}_file {path}: unsupported extension {suffix!r}; valid: {', '.join(DATA_FILE_BUILDERS)}."
            )
        builders[split] = DATA_FILE_BUILDERS[suffix]
    if len(set(builders.values())) > 1:
        raise ValueError(f"All data files must have the same format; got {data_files}.")
    return _load_files(data_files, cache_dir), f"files {data_files}"


def _load_files(data_files: Mapping[str, str | list[str]], cache_dir: str | None) -> DatasetDict:
    first = next(iter(data_files.values()))
    suffix = Path(first if isinstance(first, str) else first[0]).suffix.lower()
    kwargs = {"sep": "\t"} if suffix == ".tsv" else {}
    return datasets.load_dataset(
        DATA_FILE_BUILDERS[suffix], data_files=dict(data_files), cache_dir=cache_dir, **kwargs
    )


def _as_dataset_dict(loaded: datasets.Dataset | DatasetDict) -> DatasetDict:
    return loaded if isinstance(loaded, DatasetDict) else DatasetDict({"train": loaded})


def _data_files_by_split(folder: Path) -> dict[str, list[str]]:
    files: dict[str, list[str]] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in DATA_FILE_BUILDERS:
            match = _SHARD_NAME.match(path.stem)
            if match:
                files.setdefault(match["split"], []).append(str(path))
    return files


def _has_images(folder: Path) -> bool:
    return any(p.suffix.lower() in IMAGE_EXTENSIONS for p in folder.rglob("*") if p.is_file())


def _load_local_directory(path: Path, config: str | None, cache_dir: str | None) -> DatasetDict:
    """Reads a local dataset directory (see the module docstring for the layouts)."""
    if config is not None and (path / config).is_dir():
        path = path / config
    if (path / "dataset_dict.json").is_file():
        return datasets.load_from_disk(str(path))
    if (path / "state.json").is_file():
        return DatasetDict({"train": datasets.load_from_disk(str(path))})
    for folder in (path, path / "data"):
        if folder.is_dir():
            files = _data_files_by_split(folder)
            if files:
                return _load_files(files, cache_dir)
    configs = sorted(
        d.name
        for d in path.iterdir()
        if d.is_dir() and ((d / "dataset_dict.json").is_file() or _data_files_by_split(d))
    )
    if len(configs) == 1 and config is None:
        return _load_local_directory(path / configs[0], None, cache_dir)
    if configs:
        raise ValueError(
            f"{path} holds several configs ({', '.join(configs)}); pass --dataset_config_name, one of them"
            + (f" (got {config!r})." if config else ".")
        )
    if _has_images(path):
        return datasets.load_dataset("imagefolder", data_dir=str(path), cache_dir=cache_dir)
    raise ValueError(
        f"No dataset found in {path}: expected a save_to_disk DatasetDict, data files named "
        f"{{split}}-00000-of-00001{{{','.join(DATA_FILE_BUILDERS)}}}, one subfolder per config, or image folders."
    )


def _rename_validation_split(raw: DatasetDict) -> DatasetDict:
    if "validation" in raw:
        return raw
    for alias in VALIDATION_SPLIT_ALIASES[1:]:
        if alias in raw:
            renamed = {("validation" if split == alias else split): ds for split, ds in raw.items()}
            return DatasetDict(renamed)
    return raw


# ---------------------------------------------------------------------------------------------------------------
# Columns
# ---------------------------------------------------------------------------------------------------------------


def _unknown_column(flag: str, name: str, columns: Iterable[str], source: str) -> ValueError:
    return ValueError(f"--{flag} {name!r} is not a column of {source}; its columns are: {', '.join(columns)}.")


def _resolve_label_column(flag_value: str | None, features: datasets.Features, source: str) -> str:
    if flag_value is not None:
        if flag_value not in features:
            raise _unknown_column("label_column_name", flag_value, features, source)
        return flag_value
    for name in LABEL_COLUMN_NAMES:
        if name in features:
            return name
    class_labels = [name for name, feature in features.items() if isinstance(feature, ClassLabel)]
    if len(class_labels) == 1:
        return class_labels[0]
    raise ValueError(
        f"No label column found in {source}; pass --label_column_name, one of its columns: {', '.join(features)}."
    )


def _resolve_input_columns(
    data_args: DataTrainingArguments,
    task: str | None,
    features: datasets.Features,
    label_column: str,
    wanted: set[str] | None,
    source: str,
) -> tuple[str | None, list[str]]:
    columns = list(features)
    want_image = wanted is None or "image" in wanted
    want_text = wanted is None or "text" in wanted

    image_column = None
    if data_args.image_column_name is not None and (want_image or wanted is None):
        if data_args.image_column_name not in features:
            raise _unknown_column("image_column_name", data_args.image_column_name, columns, source)
        image_column = data_args.image_column_name
    elif want_image:
        image_columns = [n for n, f in features.items() if isinstance(f, datasets.Image)]
        named = [n for n in IMAGE_COLUMN_NAMES if n in features]
        image_column = (image_columns or named or [None])[0]

    text_columns: list[str] = []
    if data_args.text_columns is not None and want_text:
        for name in data_args.text_columns:
            if name not in features:
                raise _unknown_column("text_column_names", name, columns, source)
        text_columns = data_args.text_columns
    elif task is not None and want_text:
        text_columns = [c for c in GLUE_TASK_TO_KEYS[task] if c is not None]
    elif want_text:
        # Beside an image, a stray string column (file names) is text only if the model reads text.
        any_string = image_column is None or (wanted is not None and "text" in wanted)
        text_columns = _detect_text_columns(features, label_column, any_string)

    if wanted is not None:
        if "image" in wanted and image_column is None:
            raise ValueError(
                f"The model has an image backbone but {source} has no image column; pass --image_column_name, "
                f"one of: {', '.join(columns)}."
            )
        if "text" in wanted and not text_columns:
            raise ValueError(
                f"The model has a text backbone but {source} has no text column; pass --text_column_names, "
                f"one or more of: {', '.join(columns)}."
            )
    elif image_column is None and not text_columns:
        raise ValueError(
            f"Found neither an image nor a text column in {source}; pass --image_column_name or "
            f"--text_column_names. Its columns are: {', '.join(columns)}."
        )
    if label_column in (image_column, *text_columns):
        raise ValueError(f"Column {label_column!r} cannot be both the label and an input column.")
    return image_column, text_columns


def _detect_text_columns(features: datasets.Features, label_column: str, any_string: bool) -> list[str]:
    for pair in TEXT_COLUMN_PAIRS:
        if all(name in features for name in pair):
            return list(pair)
    for name in TEXT_COLUMN_NAMES:
        if name in features:
            return [name]
    if not any_string:
        return []
    strings = [
        name
        for name, feature in features.items()
        if isinstance(feature, Value) and feature.dtype in ("string", "large_string") and name != label_column
    ]
    return strings[:1]


def _cast_image_paths(raw: DatasetDict, image_column: str, data_args: DataTrainingArguments) -> DatasetDict:
    """A string image column (csv/json of file paths) becomes an Image column; relative paths are taken relative
    to the data file that lists them."""
    feature = next(iter(raw.values())).features[image_column]
    if feature.dtype not in ("string", "large_string"):
        raise ValueError(f"Image column {image_column!r} has type {feature.dtype}; expected images or file paths.")
    bases = {
        "train": data_args.train_file,
        "validation": data_args.validation_file,
        "test": data_args.test_file,
    }
    out = {}
    for split, dataset in raw.items():
        base = Path(bases.get(split) or ".").resolve().parent if bases.get(split) else Path.cwd()

        def absolute(paths, base=base):
            return {image_column: [p if p is None or os.path.isabs(p) else str(base / p) for p in paths]}

        dataset = dataset.map(absolute, batched=True, input_columns=[image_column], desc="Resolving image paths")
        out[split] = dataset.cast_column(image_column, datasets.Image())
    return DatasetDict(out)


# ---------------------------------------------------------------------------------------------------------------
# Labels
# ---------------------------------------------------------------------------------------------------------------


def _column_values(dataset: datasets.Dataset, column: str) -> list:
    """One column as Python values, respecting any indices mapping, without decoding other columns."""
    return dataset.select_columns([column]).with_format("arrow")[0 : len(dataset)][column].to_pylist()


def _is_list_feature(feature: Any) -> bool:
    return isinstance(feature, (datasets.Sequence, datasets.List, datasets.LargeList, list))


def _inner_feature(feature: Any) -> Any:
    return feature[0] if isinstance(feature, list) else feature.feature


def _is_float(feature: Any) -> bool:
    return isinstance(feature, Value) and feature.dtype.startswith("float")


def _sorted_names(values: Iterable) -> list[str]:
    unique = {v for v in values if v is not None and not (isinstance(v, (int, np.integer)) and v == -1)}
    if all(isinstance(v, (int, np.integer, bool)) for v in unique):
        return [str(v) for v in sorted(unique)]
    return sorted(str(v) for v in unique)


def _normalize_labels(
    raw: DatasetDict, label_column: str, do_regression: bool | None
) -> tuple[DatasetDict, str, list[str] | None]:
    labelled = {split: ds for split, ds in raw.items() if label_column in ds.column_names}
    feature = next(iter(labelled.values())).features[label_column]

    if _is_list_feature(feature) and do_regression:  # one vector of targets per row
        for split, ds in labelled.items():
            raw[split] = ds.cast_column(label_column, datasets.List(Value("float32")))
        return raw, "regression", None
    if _is_list_feature(feature):
        inner = _inner_feature(feature)
        if isinstance(inner, ClassLabel):
            return raw, "multi_label_classification", list(inner.names)
        if _is_float(inner):  # already multi-hot
            lengths = {len(v) for ds in labelled.values() for v in _column_values(ds, label_column) if v is not None}
            width = max(lengths) if lengths else 0
            return raw, "multi_label_classification", [f"LABEL_{i}" for i in range(width)]
        names = _sorted_names(
            v for ds in labelled.values() for row in _column_values(ds, label_column) if row for v in row
        )
        lookup = {name: i for i, name in enumerate(names)}
        target = datasets.List(ClassLabel(names=names))

        def encode_lists(rows):
            return {label_column: [None if r is None else [lookup[str(v)] for v in r] for r in rows]}

        for split, ds in labelled.items():
            raw[split] = ds.map(encode_lists, batched=True, input_columns=[label_column], desc="Encoding labels")
            raw[split] = raw[split].cast_column(label_column, target)
        return raw, "multi_label_classification", names

    regression = do_regression if do_regression is not None else _is_float(feature)
    if regression:
        for split, ds in labelled.items():
            if ds.features[label_column] != Value("float32"):
                try:
                    raw[split] = ds.cast_column(label_column, Value("float32"))
                except (TypeError, ValueError) as err:
                    raise ValueError(
                        f"Cannot use column {label_column!r} ({ds.features[label_column]}) as regression targets: "
                        f"{err}. Pass --do_regression false for classification."
                    ) from err
        return raw, "regression", None

    if isinstance(feature, ClassLabel):
        return raw, "single_label_classification", list(feature.names)

    names = _sorted_names(v for ds in labelled.values() for v in _column_values(ds, label_column))
    if len(names) < 2:
        raise ValueError(
            f"Column {label_column!r} has {len(names)} distinct label(s) {names}; classification needs at least two."
        )
    lookup = {name: i for i, name in enumerate(names)}
    target = ClassLabel(names=names)

    def encode(values):
        return {label_column: [-1 if v is None or v == -1 else lookup[str(v)] for v in values]}

    for split, ds in labelled.items():
        raw[split] = ds.map(encode, batched=True, input_columns=[label_column], desc="Encoding labels")
        raw[split] = raw[split].cast_column(label_column, target)
    return raw, "single_label_classification", names


def _missing_mask(values: list, problem_type: str, minus_one_missing: bool = True) -> np.ndarray:
    """Rows without a label: None, NaN, or -1 (the datasets/GLUE convention; for regression only when asked)."""
    if problem_type == "multi_label_classification":
        return np.array([v is None for v in values], dtype=bool)
    if problem_type == "regression":
        return np.array(
            [v is None or (isinstance(v, float) and (np.isnan(v) or (minus_one_missing and v == -1))) for v in values],
            dtype=bool,
        )
    return np.array([v is None or v < 0 for v in values], dtype=bool)


def _has_any_label(dataset: datasets.Dataset, label_column: str, problem_type: str, minus_one_missing: bool) -> bool:
    if label_column not in dataset.column_names:
        return False
    return not _missing_mask(_column_values(dataset, label_column), problem_type, minus_one_missing).all()


def _drop_unlabeled(
    dataset: datasets.Dataset, label_column: str, problem_type: str, split: str, minus_one_missing: bool
) -> datasets.Dataset:
    missing = _missing_mask(_column_values(dataset, label_column), problem_type, minus_one_missing)
    if not missing.any():
        return dataset
    logger.warning("Dropping %d of %d rows without a label from split '%s'.", missing.sum(), len(missing), split)
    return dataset.select(np.flatnonzero(~missing))


def _carve_validation(raw: DatasetDict, fraction: float | None, label_column: str, seed: int) -> DatasetDict:
    """Splits ``fraction`` of train off as validation, stratified by label when the data allows it."""
    if not fraction:
        return raw
    train = raw["train"]
    stratify = label_column if isinstance(train.features[label_column], ClassLabel) else None
    try:
        split = train.train_test_split(test_size=fraction, seed=seed, stratify_by_column=stratify)
    except ValueError as err:  # a class with a single row, or fewer validation rows than classes
        logger.warning("Stratified validation split impossible (%s); splitting without stratification.", err)
        split = train.train_test_split(test_size=fraction, seed=seed)
    out = dict(raw)
    out["train"], out["validation"] = split["train"], split["test"]
    return DatasetDict({name: out[name] for name in ("train", "validation", *raw) if name in out})


def _apply_max_samples(
    raw: DatasetDict,
    data_args: DataTrainingArguments,
    eval_splits: Sequence[str],
    test_splits: Sequence[str],
    seed: int,
) -> DatasetDict:
    # As the example scripts: a seeded random subset of train, the first rows of the evaluation splits.
    if data_args.max_train_samples is not None and "train" in raw:
        n = min(len(raw["train"]), data_args.max_train_samples)
        raw["train"] = raw["train"].shuffle(seed=seed).select(range(n))
    for splits, limit in ((eval_splits, data_args.max_eval_samples), (test_splits, data_args.max_predict_samples)):
        for split in splits:
            if limit is not None and split in raw:
                raw[split] = raw[split].select(range(min(len(raw[split]), limit)))
    return raw


def check_labels(
    dataset: datasets.Dataset, label_column: str, num_labels: int, problem_type: str | None = None
) -> None:
    """Checks that every label fits a model with ``num_labels`` outputs.

    Rows labelled -1 (no label, GLUE's test convention) are ignored for single-label classification.

    Args:
        dataset: The dataset to check.
        label_column: Its label column.
        num_labels: The model's number of outputs (classes; 1 for scalar regression).
        problem_type: One of :data:`PROBLEM_TYPES`; None infers it from the column's feature type.

    Raises:
        ValueError: If the column is missing (lists the columns), or a label is out of range, naming the bad
            value(s), the first rows holding them, and the valid range (with the class names when known).

    Example:
        >>> check_labels(raw["train"], "label", num_labels=10)
    """
    if label_column not in dataset.column_names:
        raise ValueError(f"Label column {label_column!r} not found; columns: {', '.join(dataset.column_names)}.")
    feature = dataset.features[label_column]
    if problem_type is None:
        if _is_list_feature(feature):
            problem_type = "multi_label_classification"
        elif _is_float(feature):
            problem_type = "regression"
        else:
            problem_type = "single_label_classification"
    if problem_type not in PROBLEM_TYPES:
        raise ValueError(f"Unknown problem_type {problem_type!r}; valid: {', '.join(PROBLEM_TYPES)}.")
    values = _column_values(dataset, label_column)
    names = feature.names if isinstance(feature, ClassLabel) else None

    def fail(bad_rows: list[int], what: str, valid: str) -> None:
        shown = ", ".join(str(r) for r in bad_rows[:5]) + (", ..." if len(bad_rows) > 5 else "")
        raise ValueError(
            f"Labels out of range in column {label_column!r}: {what} (rows {shown}; {len(bad_rows)} in all), "
            f"but the model has num_labels={num_labels}, so {valid}."
        )

    if problem_type == "single_label_classification":
        array = np.array([-1 if v is None else v for v in values], dtype=np.int64)
        bad = np.flatnonzero(((array < 0) & (array != -1)) | (array >= num_labels))
        if bad.size:
            valid = f"valid labels are 0..{num_labels - 1}"
            if names:
                valid += f" ({', '.join(names[:num_labels])}); the dataset has {len(names)} classes"
            fail(bad.tolist(), f"found {sorted(set(array[bad].tolist()))[:10]}", valid)
    elif problem_type == "multi_label_classification":
        inner = _inner_feature(feature) if _is_list_feature(feature) else None
        if inner is not None and _is_float(inner):
            bad = [i for i, v in enumerate(values) if v is not None and len(v) != num_labels]
            if bad:
                fail(
                    bad,
                    f"multi-hot rows of length {sorted({len(values[i]) for i in bad})[:10]}",
                    f"rows need {num_labels} entries",
                )
        else:
            bad = [i for i, v in enumerate(values) if v is not None and any(x < 0 or x >= num_labels for x in v)]
            if bad:
                found = sorted({x for i in bad for x in values[i] if x < 0 or x >= num_labels})[:10]
                fail(bad, f"found label ids {found}", f"valid label ids are 0..{num_labels - 1}")
    else:
        bad = [
            i for i, v in enumerate(values) if v is not None and (len(v) if isinstance(v, list) else 1) != num_labels
        ]
        if bad:
            fail(bad, "targets with a different number of values", f"each target needs {num_labels} value(s)")


# ---------------------------------------------------------------------------------------------------------------
# Backbones → inputs
# ---------------------------------------------------------------------------------------------------------------


def _get(backbone: Any, key: str, default: Any = None) -> Any:
    if isinstance(backbone, Mapping):
        return backbone.get(key, default)
    return getattr(backbone, key, default)


def _backbone_inputs(backbones: Sequence[Any], modality: str) -> list[tuple[int, str, Any]]:
    """``(index, input_suffix, backbone)`` for each backbone of ``modality``, in config order."""
    out, count = [], 0
    for index, backbone in enumerate(backbones):
        kind = _get(backbone, "modality")
        if kind not in ("image", "text"):
            raise ValueError(f"Backbone {index} has modality {kind!r}; valid: image, text.")
        if kind != modality:
            continue
        suffix = _get(backbone, "input_suffix")
        if suffix is None:
            suffix = "" if count == 0 else f"_{count}"
        out.append((index, suffix, backbone))
        count += 1
    return out


def _image_data_configs(backbones: Sequence[Any]) -> dict[str, dict]:
    """``input_suffix`` → timm data config, one per distinct image input."""
    configs: dict[str, dict] = {}
    for index, suffix, backbone in _backbone_inputs(backbones, "image"):
        data_config = _get(backbone, "data_config")
        if not data_config:
            raise ValueError(f"Image backbone {index} has no 'data_config' (input_size, mean, std, interpolation).")
        data_config = dict(data_config)
        missing = [k for k in ("input_size", "mean", "std") if k not in data_config]
        if missing:
            raise ValueError(f"Image backbone {index}: data_config lacks {missing}; it has {sorted(data_config)}.")
        if suffix in configs and _normalized_config(configs[suffix]) != _normalized_config(data_config):
            raise ValueError(
                f"Image backbones sharing input_suffix {suffix!r} need the same preprocessing; backbone {index} has "
                f"{data_config}, an earlier one {configs[suffix]}. Give it its own input_suffix."
            )
        configs.setdefault(suffix, data_config)
    return configs


def _normalized_config(config: Mapping) -> dict:
    return {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in config.items()}


def _text_tokenizers(
    backbones: Sequence[Any], tokenizers: Sequence[PreTrainedTokenizerBase | Any] | None
) -> dict[str, PreTrainedTokenizerBase]:
    """``input_suffix`` → tokenizer, one per distinct text input.

    ``tokenizers`` holds one tokenizer per text backbone in config order, or one processor per backbone (image
    processors included, as ``hf_transfer.processing.load_processors`` returns them).
    """
    text = _backbone_inputs(backbones, "text")
    tokenizers = list(tokenizers or [])
    if len(tokenizers) == len(backbones) and len(backbones) != len(text):
        tokenizers = [tokenizers[index] for index, _, _ in text]
    if len(tokenizers) != len(text):
        raise ValueError(
            f"Got {len(tokenizers)} tokenizer(s) for {len(text)} text backbone(s) (indices "
            f"{[index for index, _, _ in text]} of {len(backbones)} backbones); pass one tokenizer per text backbone "
            "in config order, or one processor per backbone."
        )
    out: dict[str, PreTrainedTokenizerBase] = {}
    for (index, suffix, _), tokenizer in zip(text, tokenizers):
        if not callable(getattr(tokenizer, "pad", None)):
            raise ValueError(f"Text backbone {index} got {type(tokenizer).__name__}, which is not a tokenizer.")
        out.setdefault(suffix, tokenizer)
    return out


def _is_text_input(key: str) -> bool:
    return any(key == name or re.fullmatch(rf"{name}_\d+", key) for name in TEXT_INPUT_KEYS)


def _is_image_input(key: str) -> bool:
    return key == IMAGE_INPUT_KEY or re.fullmatch(rf"{IMAGE_INPUT_KEY}_\d+", key) is not None


# ---------------------------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------------------------


class ConvertToRGB:
    """Converts any PIL image (grayscale ``L``, ``RGBA``, palette ``P``, ``CMYK``...) to RGB."""

    def __call__(self, image):
        if image.mode == "RGB":
            return image
        if image.mode == "P" and "transparency" in image.info:
            image = image.convert("RGBA")  # PIL warns when palette transparency is dropped directly
        return image.convert("RGB")

    def __repr__(self) -> str:
        return "ConvertToRGB()"


class ToNormalizedTensor:
    """PIL image → normalized float32 tensor ``(3, H, W)``: ``(x / 255 - mean) / std`` computed in NumPy.

    Replaces the ``ToTensor`` + ``Normalize`` tail of timm's transform with the same arithmetic. Torch's versions run
    multi-threaded element-wise ops on each small image; when another process keeps a core busy those threads
    wait on each other and the transform fell from ~930 to ~160 images/s here, while NumPy's single thread holds
    ~1,100 (benchmarks/README.md, "Performance notes": contention).

    Args:
        mean: Per-channel mean, in [0, 1] units.
        std: Per-channel standard deviation, in [0, 1] units.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self._shift = (np.asarray(self.mean, dtype=np.float32) * 255.0)[:, None, None]
        self._scale = (1.0 / (np.asarray(self.std, dtype=np.float32) * 255.0))[:, None, None]

    def __call__(self, image) -> torch.Tensor:
        array = np.asarray(image)
        if array.ndim == 2:
            array = array[:, :, None]
        array = array.transpose(2, 0, 1).astype(np.float32, order="C")
        array -= self._shift
        array *= self._scale
        return torch.from_numpy(array)

    def __repr__(self) -> str:
        return f"ToNormalizedTensor(mean={self.mean}, std={self.std})"


def build_image_transforms(
    data_config: Mapping[str, Any], is_training: bool, *, color_jitter: float | None = None
) -> Callable:
    """Builds a backbone's image transform with timm's ``create_transform``.

    Train: random-resized-crop to the backbone's input size + horizontal flip (no color jitter unless asked: it
    halves the throughput). Eval: resize to ``input_size / crop_pct`` + center crop. Both convert any image mode
    to RGB first, then to a normalized float tensor (timm's ``ToTensor`` + ``Normalize`` arithmetic, done by
    :class:`ToNormalizedTensor`). Small images (32-px CIFAR) are resized up to the input size.

    Args:
        data_config: timm-style ``{"input_size": [3, H, W], "mean", "std", "interpolation", "crop_pct"}``
            (``crop_mode`` optional).
        is_training: Train-time augmentation, or the deterministic eval transform.
        color_jitter: Color-jitter strength for training (timm's ``color_jitter``); None disables it.

    Returns:
        A callable PIL image → float32 tensor ``(3, H, W)``.

    Example:
        >>> t = build_image_transforms({"input_size": (3, 224, 224), "mean": (0.5,) * 3, "std": (0.5,) * 3}, False)
        >>> t(PIL.Image.new("L", (32, 32))).shape
        torch.Size([3, 224, 224])
    """
    from timm.data import create_transform
    from timm.data.transforms import MaybeToTensor, ToTensor
    from torchvision.transforms import Compose, Normalize

    input_size = tuple(data_config["input_size"])
    if len(input_size) != 3 or input_size[0] != 3:
        raise ValueError(f"data_config input_size must be [3, H, W] (RGB), got {list(input_size)}.")
    transform = create_transform(
        input_size=input_size,
        is_training=is_training,
        interpolation=data_config.get("interpolation", "bilinear"),
        mean=tuple(data_config["mean"]),
        std=tuple(data_config["std"]),
        crop_pct=data_config.get("crop_pct"),
        crop_mode=data_config.get("crop_mode"),
        color_jitter=color_jitter,
    )
    steps = list(transform.transforms)
    if len(steps) >= 2 and isinstance(steps[-2], (MaybeToTensor, ToTensor)) and isinstance(steps[-1], Normalize):
        steps[-2:] = [ToNormalizedTensor(data_config["mean"], data_config["std"])]
    return Compose([ConvertToRGB(), *steps])


def _describe_image(value: Any) -> str:
    if isinstance(value, Mapping):
        if value.get("path"):
            return f"file {value['path']!r}"
        data = value.get("bytes") or b""
        return f"embedded bytes ({len(data)} bytes, starting {data[:8]!r})"
    if isinstance(value, str):
        return f"file {value!r}"
    return type(value).__name__


def _open_image(value: Any):
    """Decodes one image cell: a PIL image, ``{"bytes", "path"}`` (an ``Image(decode=False)`` column), or a path."""
    import PIL.Image

    if isinstance(value, PIL.Image.Image):
        return value
    if isinstance(value, Mapping):
        if value.get("bytes"):
            image = PIL.Image.open(io.BytesIO(value["bytes"]))
        elif value.get("path"):
            image = PIL.Image.open(value["path"])
        else:
            raise ValueError("empty image cell (no bytes, no path)")
    elif isinstance(value, str):
        image = PIL.Image.open(value)
    elif isinstance(value, np.ndarray):
        return PIL.Image.fromarray(value)
    else:
        raise ValueError(f"unsupported image value of type {type(value).__name__}")
    image.load()  # decode now, so that a truncated file fails here, with its name, not deep in a transform
    return image


class ImagePreprocessor:
    """Batch transform for ``Dataset.with_transform``: image column → ``pixel_values{suffix}`` tensors.

    One transform per distinct image input of the model (see the module docstring); each image is decoded once and
    fed to each. Labels come out as ``labels``; tokenized text columns (``input_ids{suffix}``...) pass through, so
    an image+text fusion model gets both from one dataset. Other columns are dropped. Picklable, so it works in
    DataLoader worker processes.

    Args:
        backbones: The model's ``config.backbones``.
        image_column: The image column (``Image()``, preferably ``Image(decode=False)`` so that decode errors name
            the file, or file paths).
        label_column: The label column, emitted as ``labels`` (absent → no labels, e.g. an unlabelled test split).
        is_training: Train-time augmentation or eval transforms.
        color_jitter: Color-jitter strength for training; None disables it.
        seed: With a seed, each image's random augmentation is drawn from its own generator, seeded by the seed, the
            image's bytes (or path) and :attr:`epoch`; so a run resumed from a checkpoint sees exactly the crops of
            an uninterrupted one (the Trainer restores the global RNG only after fetching the first batches).
            :class:`AugmentationEpochCallback` keeps :attr:`epoch` current. None: the global RNG, as timm does.
    """

    def __init__(
        self,
        backbones: Sequence[Any],
        image_column: str,
        label_column: str = "labels",
        is_training: bool = False,
        *,
        color_jitter: float | None = None,
        seed: int | None = None,
    ):
        configs = _image_data_configs(backbones)
        if not configs:
            raise ValueError("The model has no image backbone: no image preprocessing to build.")
        self.image_column = image_column
        self.label_column = label_column
        self.is_training = is_training
        self.seed = seed if is_training else None
        self.epoch = 0
        self.transforms = {
            IMAGE_INPUT_KEY + suffix: build_image_transforms(config, is_training, color_jitter=color_jitter)
            for suffix, config in configs.items()
        }

    def __repr__(self) -> str:
        return (
            f"ImagePreprocessor(image_column={self.image_column!r}, label_column={self.label_column!r}, "
            f"is_training={self.is_training}, outputs={list(self.transforms)})"
        )

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        """Transforms a batch of rows (``datasets`` calls it with one row per ``dataset[i]``).

        Args:
            batch: Column → values, as ``Dataset.with_transform`` passes them.

        Returns:
            ``pixel_values{suffix}`` → list of float32 ``(3, H, W)`` tensors, ``labels``, and the tokenized text
            columns unchanged.

        Raises:
            ValueError: If an image cannot be decoded, naming its file (or its bytes when embedded).
        """
        if self.image_column not in batch:
            raise KeyError(
                f"Image column {self.image_column!r} missing from the batch (columns: {', '.join(batch)}). With the "
                "Trainer, set remove_unused_columns=False so that it keeps raw columns for the transform."
            )
        images = []
        for position, value in enumerate(batch[self.image_column]):
            try:
                images.append(_open_image(value))
            except Exception as err:
                size = len(batch[self.image_column])
                where = f" (position {position} in a batch of {size})" if size > 1 else ""
                raise ValueError(
                    f"Cannot read image {_describe_image(value)} in column {self.image_column!r}{where}: "
                    f"{type(err).__name__}: {err}. "
                    f"hf_transfer.data.find_unreadable_images(dataset, {self.image_column!r}) lists every bad row."
                ) from err
        if self.seed is None:
            out = {key: [transform(image) for image in images] for key, transform in self.transforms.items()}
        else:
            out = {key: [] for key in self.transforms}
            for value, image in zip(batch[self.image_column], images):
                with _seeded_rng(_sample_seed(self.seed, self.epoch, value)):
                    for key, transform in self.transforms.items():
                        out[key].append(transform(image))
        if self.label_column in batch:
            out["labels"] = batch[self.label_column]
        for key, values in batch.items():
            if _is_text_input(key):
                out[key] = values
        return out


def _sample_seed(seed: int, epoch: int, value: Any) -> int:
    """A seed from the run's seed, the epoch and the image itself (its bytes, or its path)."""
    if isinstance(value, Mapping):
        raw = value.get("bytes") or str(value.get("path")).encode()
    elif isinstance(value, (bytes, bytearray)):
        raw = bytes(value)
    else:
        raw = (
            str(getattr(value, "filename", None) or value).encode()
            if not hasattr(value, "tobytes")
            else value.tobytes()
        )
    return (zlib.crc32(raw) + 1_000_003 * seed + 7_919 * epoch) % (2**31)


@contextmanager
def _seeded_rng(seed: int):
    """Seeds Python's and torch's global RNGs (timm's and torchvision's transforms draw from them) for one sample,
    then restores them."""
    python_state = random.getstate()
    with torch.random.fork_rng(devices=[]):
        random.seed(seed)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(python_state)


class AugmentationEpochCallback(TrainerCallback):
    """Tells seeded image augmentation (:class:`ImagePreprocessor` with a seed) which epoch it is, so that each epoch
    draws new crops and a resumed run draws the same ones as an uninterrupted run."""

    def __init__(self, dataset: datasets.Dataset):
        transform = (getattr(dataset, "_format_kwargs", None) or {}).get("transform")
        self.preprocessor = transform if isinstance(transform, ImagePreprocessor) else None

    def on_epoch_begin(self, args, state, control, **kwargs):
        if self.preprocessor is not None:
            self.preprocessor.epoch = int(state.epoch or 0)


def make_image_preprocessor(
    backbones: Sequence[Any],
    image_column: str,
    label_column: str = "labels",
    is_training: bool = False,
    *,
    color_jitter: float | None = None,
    seed: int | None = None,
) -> ImagePreprocessor:
    """Builds the batch transform that turns an image column into every image backbone's ``pixel_values{suffix}``.

    Use it with ``dataset.with_transform(...)`` / ``set_transform``: tensors come out directly, without
    ``set_format("torch")`` on image columns (slow with torchvision imported: benchmarks/README.md).

    Args:
        backbones: The model's ``config.backbones``.
        image_column: The image column.
        label_column: The label column, emitted as ``labels``.
        is_training: Train-time augmentation or eval transforms.
        color_jitter: Color-jitter strength for training; None disables it.

    Returns:
        An :class:`ImagePreprocessor`.

    Example:
        >>> train = raw["train"].with_transform(make_image_preprocessor(config.backbones, "img", "label", True))
        >>> train[0]["pixel_values"].shape
        torch.Size([3, 224, 224])
    """
    return ImagePreprocessor(backbones, image_column, label_column, is_training, color_jitter=color_jitter, seed=seed)


def check_images(dataset: datasets.Dataset, image_column: str, num_rows: int = 8, split: str | None = None) -> None:
    """Decodes the first ``num_rows`` images: a cheap up-front check that the column holds readable images.

    Args:
        dataset: The dataset.
        image_column: Its image column.
        num_rows: How many rows to decode.
        split: The split's name, for the error message.

    Raises:
        ValueError: If the column is missing (lists the columns) or an image cannot be decoded (names the row
            index and the file).
    """
    if image_column not in dataset.column_names:
        raise ValueError(f"Image column {image_column!r} not found; columns: {', '.join(dataset.column_names)}.")
    head = dataset.select_columns([image_column]).select(range(min(num_rows, len(dataset))))
    if isinstance(head.features[image_column], datasets.Image):
        head = head.cast_column(image_column, datasets.Image(decode=False))
    for row, value in enumerate(head.with_format(None)[image_column]):
        try:
            _open_image(value)
        except Exception as err:
            raise ValueError(
                f"Cannot read image in row {row} of {f'split {split!r}, ' if split else ''}column {image_column!r} "
                f"({_describe_image(value)}): "
                f"{type(err).__name__}: {err}."
            ) from err


def find_unreadable_images(dataset: datasets.Dataset, image_column: str) -> list[int]:
    """Decodes every image of the column and returns the rows that fail.

    Args:
        dataset: The dataset.
        image_column: Its image column.

    Returns:
        Indices of the rows whose image cannot be decoded (empty when all are fine).
    """
    column = dataset.select_columns([image_column])
    if isinstance(column.features[image_column], datasets.Image):
        column = column.cast_column(image_column, datasets.Image(decode=False))
    bad = []
    for row, value in enumerate(column.with_format(None)[image_column]):
        try:
            _open_image(value)
        except Exception:
            bad.append(row)
    return bad


def to_channels_last(tensor: torch.Tensor) -> torch.Tensor:
    """An image batch (N, C, H, W) in channels-last memory format, for channels-last convolutions; any other tensor
    unchanged."""
    if tensor.dim() == 4 and tensor.is_floating_point():
        return tensor.contiguous(memory_format=torch.channels_last)
    return tensor


def _stack_images(
    examples: Sequence[Mapping[str, Any]], batch: dict[str, torch.Tensor], channels_last: bool = False
) -> None:
    for key in examples[0]:
        if _is_image_input(key):
            stacked = torch.stack([torch.as_tensor(example[key]) for example in examples])
            batch[key] = to_channels_last(stacked) if channels_last else stacked


def _labels_tensor(labels: list) -> torch.Tensor:
    first = labels[0]
    if isinstance(first, torch.Tensor):
        stacked = torch.stack(labels)
        return stacked if stacked.is_floating_point() else stacked.long()
    if isinstance(first, (list, tuple, np.ndarray)) or isinstance(first, (float, np.floating)):
        return torch.tensor(np.asarray(labels, dtype=np.float32))
    return torch.tensor(labels, dtype=torch.long)


def _add_labels(examples: Sequence[Mapping[str, Any]], batch: dict[str, torch.Tensor]) -> None:
    # "label" and "label_ids" are accepted too, as transformers' collators do.
    key = next((k for k in ("labels", "label", "label_ids") if k in examples[0]), None)
    if key is not None:
        batch["labels"] = _labels_tensor([example[key] for example in examples])


def image_collate_fn(examples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
    """Collates image examples: stacks every ``pixel_values*`` and makes ``labels`` a tensor.

    Args:
        examples: Rows from a dataset transformed by :func:`make_image_preprocessor`.

    Returns:
        ``{"pixel_values": (B, 3, H, W), ..., "labels": (B,)}`` (int64 labels, float32 for regression and
        multi-label).
    """
    batch: dict[str, torch.Tensor] = {}
    _stack_images(examples, batch)
    _add_labels(examples, batch)
    return batch


# ---------------------------------------------------------------------------------------------------------------
# Text
# ---------------------------------------------------------------------------------------------------------------


def _texts(raw_columns: Sequence[list], delimiter: str) -> tuple[list, list | None]:
    """One text, a sentence pair, or several texts joined: the tokenizer's ``text`` and ``text_pair``."""
    columns = [[("" if t is None else str(t)) for t in column] for column in raw_columns]
    if len(columns) == 1:
        return columns[0], None
    if len(columns) == 2:
        return columns[0], columns[1]
    return [delimiter.join(parts) for parts in zip(*columns)], None


def tokenize_dataset(
    dataset: datasets.Dataset,
    backbones: Sequence[Any],
    tokenizers: Sequence[PreTrainedTokenizerBase],
    text_columns: Sequence[str],
    max_seq_length: int = 128,
    pad_to_max_length: bool = False,
    *,
    text_column_delimiter: str = " ",
    num_proc: int | None = None,
) -> datasets.Dataset:
    """Tokenizes the text columns once per distinct text input of the model (``dataset.map(batched=True)``).

    One text column is tokenized alone, two as a sentence pair (as ``run_glue.py``), more are joined with
    ``text_column_delimiter``. Sequences are truncated to ``min(max_seq_length, tokenizer.model_max_length)`` and
    left unpadded unless ``pad_to_max_length`` (padding happens per batch in the collator: 2.65× faster training
    than padding to 128, benchmarks/README.md). The text columns are replaced by ``input_ids{suffix}``,
    ``attention_mask{suffix}`` (and ``token_type_ids{suffix}`` when the tokenizer returns it); other columns (an
    image column for fusion models, the labels) stay.

    Args:
        dataset: The dataset.
        backbones: The model's ``config.backbones``.
        tokenizers: One tokenizer per text backbone, in config order.
        text_columns: The text column(s).
        max_seq_length: Truncation length.
        pad_to_max_length: Pad every row to the truncation length instead of per batch.
        text_column_delimiter: Joins more than two text columns.
        num_proc: Processes for ``map``.

    Returns:
        The tokenized dataset.

    Raises:
        ValueError: If a text column is missing (lists the columns) or tokenizers and text backbones don't match.

    Example:
        >>> tokenized = tokenize_dataset(raw["train"], config.backbones, [tokenizer], ["sentence1", "sentence2"])
    """
    by_suffix = _text_tokenizers(backbones, tokenizers)
    if not by_suffix:
        raise ValueError("The model has no text backbone: nothing to tokenize.")
    missing = [c for c in text_columns if c not in dataset.column_names]
    if missing or not text_columns:
        raise ValueError(
            f"Text column(s) {missing or list(text_columns)} not found; columns: {', '.join(dataset.column_names)}."
        )
    lengths = {}
    for suffix, tokenizer in by_suffix.items():
        lengths[suffix] = min(max_seq_length, tokenizer.model_max_length)
        if max_seq_length > tokenizer.model_max_length:
            logger.warning(
                "max_seq_length %d exceeds the tokenizer's model_max_length %d; using %d.",
                max_seq_length,
                tokenizer.model_max_length,
                lengths[suffix],
            )

    def tokenize(*columns):
        first, second = _texts(columns, text_column_delimiter)
        out = {}
        for suffix, tokenizer in by_suffix.items():
            encoded = tokenizer(
                first,
                second,
                truncation=True,
                max_length=lengths[suffix],
                padding="max_length" if pad_to_max_length else False,
            )
            for key, values in encoded.items():
                out[key + suffix] = values
        return out

    return dataset.map(
        tokenize,
        batched=True,
        input_columns=list(text_columns),  # other columns (images of a fusion dataset) are not decoded
        remove_columns=list(text_columns),
        num_proc=num_proc,
        desc="Running tokenizer on dataset",
    )


class TransferDataCollator:
    """Collates any mix of image and text inputs, each text input padded by its own tokenizer.

    Stacks ``pixel_values*``; pads each text key group (``input_ids{suffix}``, ``attention_mask{suffix}``,
    ``token_type_ids{suffix}``) with the tokenizer of that suffix (``DataCollatorWithPadding``); makes ``labels`` a
    tensor (int64, or float32 for regression and multi-label). Every other key is dropped, so raw columns left in
    the dataset (``idx``, the image column) never reach the model.

    Args:
        tokenizers: ``input_suffix`` → tokenizer for each text input (from :func:`build_data_collator`).
        pad_to_multiple_of: Pad text lengths to a multiple of this (8 helps tensor cores with fp16/bf16).
        channels_last: Image batches in channels-last memory format (for a model converted with
            ``model.to(memory_format=torch.channels_last)``, as timm's ``train.py --channels-last`` does).
    """

    def __init__(
        self,
        tokenizers: Mapping[str, PreTrainedTokenizerBase] | None = None,
        pad_to_multiple_of: int | None = None,
        channels_last: bool = False,
    ):
        from transformers import DataCollatorWithPadding

        self.tokenizers = dict(tokenizers or {})
        self.pad_to_multiple_of = pad_to_multiple_of
        self.channels_last = channels_last
        self._padders = {
            suffix: DataCollatorWithPadding(tokenizer, padding=True, pad_to_multiple_of=pad_to_multiple_of)
            for suffix, tokenizer in self.tokenizers.items()
        }

    def __repr__(self) -> str:
        return (
            f"TransferDataCollator(text_inputs={list(self.tokenizers)}, pad_to_multiple_of={self.pad_to_multiple_of}, "
            f"channels_last={self.channels_last})"
        )

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        """Collates dataset rows into a batch.

        Args:
            examples: Rows of a dataset prepared by :func:`prepare_split`.

        Returns:
            The model's inputs as tensors: ``pixel_values*``, ``input_ids*``, ``attention_mask*``,
            ``token_type_ids*`` and ``labels``.
        """
        batch: dict[str, torch.Tensor] = {}
        _stack_images(examples, batch, self.channels_last)
        for suffix, padder in self._padders.items():
            keys = [key for key in TEXT_INPUT_KEYS if key + suffix in examples[0]]
            if not keys:
                raise KeyError(
                    f"Text input '{TEXT_INPUT_KEYS[0]}{suffix}' missing from the batch (keys: "
                    f"{', '.join(examples[0])}); was the dataset tokenized with tokenize_dataset?"
                )
            padded = padder([{key: example[key + suffix] for key in keys} for example in examples])
            for key, value in padded.items():
                batch[key + suffix] = value
        _add_labels(examples, batch)
        return batch


def build_data_collator(
    backbones: Sequence[Any],
    tokenizers: Sequence[PreTrainedTokenizerBase] | None = None,
    pad_to_multiple_of: int | None = None,
) -> TransferDataCollator:
    """Builds the collator for a model's backbones.

    Args:
        backbones: The model's ``config.backbones``.
        tokenizers: One tokenizer per text backbone, in config order (None for image-only models).
        pad_to_multiple_of: Pad text lengths to a multiple of this.

    Returns:
        A :class:`TransferDataCollator`.
    """
    return TransferDataCollator(_text_tokenizers(backbones, tokenizers), pad_to_multiple_of=pad_to_multiple_of)


# ---------------------------------------------------------------------------------------------------------------
# Labels for the model, and the whole pipeline
# ---------------------------------------------------------------------------------------------------------------


def prepare_labels(
    dataset: datasets.Dataset, label_column: str, problem_type: str, num_labels: int
) -> datasets.Dataset:
    """Renames the label column to ``labels`` and gives it the type the model's loss expects.

    Single-label: class ids (``ClassLabel`` kept). Regression: float32. Multi-label: float32 multi-hot rows of
    length ``num_labels`` (from lists of class ids, or already multi-hot).

    Args:
        dataset: The dataset.
        label_column: Its label column.
        problem_type: One of :data:`PROBLEM_TYPES`.
        num_labels: Number of classes.

    Returns:
        The dataset with a ``labels`` column.
    """
    if problem_type not in PROBLEM_TYPES:
        raise ValueError(f"Unknown problem_type {problem_type!r}; valid: {', '.join(PROBLEM_TYPES)}.")
    if label_column != "labels":
        if "labels" in dataset.column_names:
            dataset = dataset.remove_columns("labels")
        dataset = dataset.rename_column(label_column, "labels")
    feature = dataset.features["labels"]
    if problem_type == "regression":
        if _is_list_feature(feature):
            return dataset.cast_column("labels", datasets.List(Value("float32")))
        return dataset if feature == Value("float32") else dataset.cast_column("labels", Value("float32"))
    if problem_type == "multi_label_classification":
        if _is_list_feature(feature) and _is_float(_inner_feature(feature)):
            return dataset.cast_column("labels", datasets.List(Value("float32")))

        def multi_hot(rows):
            out = np.zeros((len(rows), num_labels), dtype=np.float32)
            for i, row in enumerate(rows):
                out[i, list(row or [])] = 1.0
            return {"labels": out.tolist()}

        return dataset.map(
            multi_hot,
            batched=True,
            input_columns=["labels"],
            features=datasets.Features({**dataset.features, "labels": datasets.List(Value("float32"))}),
            desc="Multi-hot labels",
        )
    return dataset


def prepare_split(
    dataset: datasets.Dataset,
    info: TaskInfo,
    backbones: Sequence[Any],
    processors: Sequence[Any] | None = None,
    data_args: DataTrainingArguments | None = None,
    *,
    is_training: bool = False,
    has_labels: bool = True,
    num_labels: int | None = None,
    seed: int | None = None,
) -> datasets.Dataset:
    """Turns one raw split into a model-ready dataset for the given backbones.

    Labels checked against ``num_labels`` and renamed to ``labels`` (dropped when ``has_labels`` is False), text
    tokenized for every text input, and for image backbones a lazy transform attached that produces
    ``pixel_values{suffix}`` tensors (random augmentation when ``is_training``). Image datasets keep their raw image
    column for the transform: the Trainer needs ``remove_unused_columns=False``.

    Args:
        dataset: A split from :func:`load_raw_datasets`.
        info: From :func:`load_raw_datasets`.
        backbones: The model's ``config.backbones``.
        processors: One tokenizer per text backbone in config order, or one processor per backbone (as
            ``hf_transfer.processing.load_processors`` returns them); image processors are not used.
        data_args: For ``max_seq_length``, ``pad_to_max_length``, ``text_column_delimiter``,
            ``preprocessing_num_workers``, ``no_augmentation``, ``color_jitter`` (their defaults when None).
        is_training: Train-time image augmentation (random-resized crop + flip, unless ``no_augmentation``).
        has_labels: False for unlabelled (test) splits.
        num_labels: The model's number of outputs, checked against the labels; defaults to ``info.num_labels``.

    Returns:
        The prepared split.

    Raises:
        ValueError: If the model reads a modality the data lacks, or labels do not fit ``num_labels``.
    """

    def arg(name: str) -> Any:
        return (
            getattr(data_args, name)
            if data_args is not None
            else DataTrainingArguments.__dataclass_fields__[name].default
        )

    num_labels = info.num_labels if num_labels is None else num_labels
    image_inputs = _image_data_configs(backbones)
    text_inputs = _text_tokenizers(backbones, processors)
    if image_inputs and info.image_column is None:
        raise ValueError(f"The model has image backbone(s) but the data ({info.modality}) has no image column.")
    if text_inputs and not info.text_columns:
        raise ValueError(f"The model has text backbone(s) but the data ({info.modality}) has no text column.")

    if has_labels and info.label_column in dataset.column_names:
        check_labels(dataset, info.label_column, num_labels, info.problem_type)
        dataset = prepare_labels(dataset, info.label_column, info.problem_type, num_labels)
    elif info.label_column in dataset.column_names:
        dataset = dataset.remove_columns(info.label_column)
    if text_inputs:
        dataset = tokenize_dataset(
            dataset,
            backbones,
            processors,
            info.text_columns,
            arg("max_seq_length"),
            arg("pad_to_max_length"),
            text_column_delimiter=arg("text_column_delimiter"),
            num_proc=arg("preprocessing_num_workers"),
        )
    if image_inputs:
        if isinstance(dataset.features[info.image_column], datasets.Image):
            dataset = dataset.cast_column(info.image_column, datasets.Image(decode=False))
        preprocessor = make_image_preprocessor(
            backbones,
            info.image_column,
            "labels",
            is_training=is_training and not arg("no_augmentation"),
            color_jitter=arg("color_jitter"),
            seed=seed,
        )
        return dataset.with_transform(preprocessor)
    return dataset.select_columns([c for c in dataset.column_names if _is_text_input(c) or c == "labels"])


class PreparedDatasets(NamedTuple):
    """What :func:`prepare_datasets` returns: ``train_dataset, eval_datasets, data_collator = ...``."""

    train_dataset: datasets.Dataset | None
    """The prepared ``train`` split (None when there is none)."""
    eval_datasets: dict[str, datasets.Dataset]
    """Split name → prepared dataset, for each of ``info.eval_splits`` (main one first)."""
    data_collator: TransferDataCollator
    """The collator for these backbones."""


def prepare_datasets(
    raw: DatasetDict,
    info: TaskInfo,
    backbones: Sequence[Any],
    processors: Sequence[Any] | None = None,
    data_args: DataTrainingArguments | None = None,
    training_args: Any | None = None,
    *,
    num_labels: int | None = None,
) -> PreparedDatasets:
    """Prepares the train and eval splits for the model's backbones (see :func:`prepare_split`) and the collator.

    Test splits are left out (use :func:`prepare_split` with ``has_labels=info.test_has_labels``). With
    ``training_args``: text is padded to a multiple of 8 under fp16/bf16 (as ``run_classification.py``), and for
    image data ``training_args.remove_unused_columns`` is set to False (as ``run_image_classification.py``), since
    the transform reads the raw image column; the collator drops every key the model does not read.

    Args:
        raw: From :func:`load_raw_datasets`.
        info: From :func:`load_raw_datasets`.
        backbones: The model's ``config.backbones``.
        processors: One tokenizer per text backbone, or one processor per backbone.
        data_args: The data flags (defaults when None).
        training_args: The ``TrainingArguments``, or None.
        num_labels: The model's number of outputs; defaults to ``info.num_labels``.

    Returns:
        ``PreparedDatasets(train_dataset, eval_datasets, data_collator)``.

    Raises:
        ValueError: If the model reads a modality the data lacks, or labels do not fit ``num_labels``.

    Example:
        >>> train_dataset, eval_datasets, data_collator = prepare_datasets(
        ...     raw, info, model.config.backbones, load_processors(model.config), data_args, training_args
        ... )
    """
    kwargs = {"num_labels": num_labels}
    train = raw.get("train")
    if train is not None:
        seed = getattr(training_args, "seed", None)  # seeded per-sample augmentation: exact resume
        train = prepare_split(train, info, backbones, processors, data_args, is_training=True, seed=seed, **kwargs)
    evals = {
        split: prepare_split(raw[split], info, backbones, processors, data_args, **kwargs)
        for split in info.eval_splits
        if split in raw
    }
    mixed_precision = training_args is not None and (
        getattr(training_args, "fp16", False) or getattr(training_args, "bf16", False)
    )
    collator = build_data_collator(backbones, processors, pad_to_multiple_of=8 if mixed_precision else None)
    if training_args is not None and info.image_column and _image_data_configs(backbones):
        if getattr(training_args, "remove_unused_columns", False):
            logger.info("Setting remove_unused_columns=False: the image transform reads the raw image column.")
            training_args.remove_unused_columns = False
    return PreparedDatasets(train, evals, collator)
