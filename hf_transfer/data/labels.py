"""Labels: reading, normalizing, checking and typing the label column for the model's loss."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import datasets
import numpy as np
from datasets import ClassLabel, DatasetDict, Value

from ..configuration_transfer import PROBLEM_TYPES

logger = logging.getLogger(__name__)

__all__ = [
    "PROBLEM_TYPES",
    "check_labels",
    "prepare_labels",
]


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
