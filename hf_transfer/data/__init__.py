"""Datasets in, model-ready batches out: loading, splitting, columns, labels, transforms, tokenization, collation.

The flow mirrors transformers' example scripts (``run_image_classification.py``, ``run_glue.py``,
``run_classification.py``), with the same flag names:

>>> data_args = DataTrainingArguments(dataset_name="uoft-cs/cifar10", max_train_samples=1000)
>>> raw, info = load_raw_datasets(data_args, seed=42)          # DatasetDict + TaskInfo (columns, labels, splits)
>>> train_dataset, eval_datasets, collator = prepare_datasets(raw, info, config.backbones, tokenizers, data_args, args)
>>> trainer = Trainer(model, args, train_dataset=train_dataset, eval_dataset=eval_datasets[info.eval_splits[0]],
...                   data_collator=collator, compute_metrics=build_compute_metrics(info.task_name, ...))

One module per step: :mod:`.arguments` (the flags), :mod:`.loading` (sources, GLUE, columns, splits),
:mod:`.labels`, :mod:`.inputs` (which keys each backbone reads), :mod:`.images`, :mod:`.text`,
:mod:`.collation` and :mod:`.preparation` (all of it for a model's backbones).
"""

from .arguments import DataTrainingArguments
from .collation import TransferDataCollator, build_data_collator, to_channels_last
from .images import (
    AugmentationEpochCallback,
    ImagePreprocessor,
    ToNormalizedTensor,
    build_image_transforms,
    check_images,
    find_unreadable_images,
)
from .labels import PROBLEM_TYPES, check_labels, prepare_labels
from .loading import GLUE_TASK_TO_KEYS, GLUE_TASKS, TaskInfo, load_raw_datasets
from .preparation import PreparedDatasets, prepare_datasets, prepare_split
from .text import tokenize_dataset

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
    "load_raw_datasets",
    "prepare_datasets",
    "prepare_labels",
    "prepare_split",
    "to_channels_last",
    "tokenize_dataset",
]
