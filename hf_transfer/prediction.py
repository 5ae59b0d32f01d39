# Copyright 2026 The hf_transfer authors. Licensed under the Apache License, Version 2.0.
"""`--do_predict`: predictions on the test split(s), written as transformers' `run_glue.py` writes them.

GLUE: `predict_results_{task}.txt` (MNLI: `predict_results_mnli.txt` for `test_matched` and
`predict_results_mnli-mm.txt` for `test_mismatched`); other data: `predict_results.txt` (as `run_classification.py`).
Each file has a header `index\\tprediction` and one `index\\tprediction` line per example: the label name for
classification, the value with three decimals for regression (`{value:3.3f}`), the list of label names for multi-label
classification. GLUE's test labels are -1 (hidden): the labels are dropped and nothing is scored; a test split with
real labels is also scored (`predict_results.json`).
"""

import logging
import os
from collections.abc import Sequence
from typing import Any

import datasets
import numpy as np

from .data import DataTrainingArguments, TaskInfo, prepare_split

logger = logging.getLogger(__name__)

__all__ = ["format_predictions", "predict_and_write", "predict_file_name", "prepare_predict_datasets"]


def predict_file_name(task: TaskInfo, split: str) -> str:
    """`predict_results_{task}.txt` for GLUE (`mnli-mm` for MNLI's mismatched split), else `predict_results.txt`."""
    if task.task_name is None:
        return "predict_results.txt" if split == "test" else f"predict_results_{split}.txt"
    name = f"{task.task_name}-mm" if split.endswith("_mismatched") else task.task_name
    return f"predict_results_{name}.txt"


def prepare_predict_datasets(
    raw: datasets.DatasetDict,
    task: TaskInfo,
    backbones: Sequence[Any],
    processors: Sequence[Any] | None,
    data_args: DataTrainingArguments,
) -> dict[str, datasets.Dataset]:
    """The test split(s), prepared for the model (labels dropped when they are hidden, as GLUE's -1).

    `--max_predict_samples` was applied when the data was loaded (`load_raw_datasets`).

    Raises:
        ValueError: Before any training, when the data has no test split.
    """
    if not task.test_splits:
        raise ValueError(
            f"--do_predict needs a test split, and {task.dataset_name} has none (splits: {', '.join(raw)}). Give "
            "--test_file (csv/json/parquet), or a dataset with a 'test' split (GLUE: test, MNLI: test_matched and "
            "test_mismatched)."
        )
    return {
        split: prepare_split(raw[split], task, backbones, processors, data_args, has_labels=task.test_has_labels)
        for split in task.test_splits
    }


def format_predictions(logits: np.ndarray, problem_type: str, label_list: Sequence[str] | None) -> list[str]:
    """Model outputs → the `prediction` column of run_glue.py's files.

    Args:
        logits: `(n, num_labels)` model outputs.
        problem_type: `single_label_classification`, `multi_label_classification` or `regression`.
        label_list: Class names in id order (None for regression).
    """
    logits = np.asarray(logits)
    if problem_type == "regression":
        return [f"{value:3.3f}" for value in np.atleast_1d(np.squeeze(logits, axis=-1) if logits.ndim > 1 else logits)]
    if problem_type == "multi_label_classification":  # as run_classification.py: the list of predicted names
        return [str([label_list[i] for i in np.flatnonzero(row > 0)]) for row in logits]
    return [label_list[i] for i in np.argmax(logits, axis=1)]


def predict_and_write(trainer, predict_datasets: dict[str, datasets.Dataset], task: TaskInfo, output_dir: str) -> dict:
    """Predicts every test split and writes its `predict_results*.txt` (on the main process).

    Args:
        trainer: The `Trainer` (its `data_collator` fits the prepared datasets).
        predict_datasets: From `prepare_predict_datasets` (or their cached features).
        task: From `load_raw_datasets`.
        output_dir: Where the files go.

    Returns:
        The metrics of test splits that have labels (`predict_*`), else only their sample counts.
    """
    metrics = {}
    for split, dataset in predict_datasets.items():
        prefix = "predict" if split == task.test_splits[0] else f"predict_{split.removeprefix('test_')}"
        output = trainer.predict(dataset, metric_key_prefix=prefix)
        logits = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
        lines = format_predictions(logits, task.problem_type, task.label_list)
        split_metrics = dict(output.metrics or {}) if task.test_has_labels else {}
        split_metrics[f"{prefix}_samples"] = len(dataset)
        metrics.update(split_metrics)
        if trainer.is_world_process_zero():
            path = os.path.join(output_dir, predict_file_name(task, split))
            logger.info(f"***** Predict results {split}: {path} *****")
            with open(path, "w", encoding="utf-8") as writer:
                writer.write("index\tprediction\n")
                for index, item in enumerate(lines):
                    writer.write(f"{index}\t{item}\n")
    if task.test_has_labels:
        trainer.log_metrics("predict", metrics)
    trainer.save_metrics("predict", metrics)
    return metrics
