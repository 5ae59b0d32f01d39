# Copyright 2026 The hf_transfer authors. Licensed under the Apache License, Version 2.0.
"""What a string label column means: one class per cell, or several labels per cell (multi-label).

A CSV cannot hold lists, so multi-label data arrives as strings: ``action,comedy`` or ``['action', 'comedy']``.
Read as plain strings, every combination becomes its own class (three genres give up to nine "classes"). This
module turns such cells into lists before the labels are encoded, as ``--label_delimiter`` and ``--problem_type``
say, detects list-like strings (``[...]``, Python or JSON), and refuses to guess: a column whose cells contain a
delimiter but no flag says what they mean is an error that names the flags.
"""

from __future__ import annotations

import ast
import logging
import re

import datasets
from datasets import DatasetDict, Value

logger = logging.getLogger(__name__)

PROBLEM_TYPES = ("single_label_classification", "multi_label_classification", "regression")
# Characters that, inside a label cell, may separate several labels.
CANDIDATE_DELIMITERS = (",", ";", "|")
_LIST_LIKE = re.compile(r"^\s*\[.*\]\s*$", re.S)

__all__ = ["CANDIDATE_DELIMITERS", "PROBLEM_TYPES", "check_problem_type", "parse_label_strings"]


def _is_string(feature) -> bool:
    return isinstance(feature, Value) and feature.dtype in ("string", "large_string")


def _parse_list(cell: str, split: str, row: int, column: str) -> list[str]:
    try:
        value = ast.literal_eval(cell.strip())
    except (ValueError, SyntaxError) as err:
        raise ValueError(
            f"Label column {column!r}, split '{split}', row {row}: {cell!r} looks like a list but does not parse "
            f"({err}). Write it as ['a', 'b'] or pass --label_delimiter."
        ) from err
    if not isinstance(value, (list, tuple)) or any(isinstance(v, (list, tuple, dict)) for v in value):
        raise ValueError(
            f"Label column {column!r}, split '{split}', row {row}: {cell!r} is not a flat list of labels."
        )
    return [str(v).strip() for v in value]


def _split(cell: str, delimiter: str) -> list[str]:
    return [part.strip() for part in cell.split(delimiter) if part.strip()]


def parse_label_strings(
    raw: DatasetDict,
    label_column: str,
    label_delimiter: str | None = None,
    problem_type: str | None = None,
    do_regression: bool | None = None,
) -> tuple[DatasetDict, bool | None]:
    """Turns string label cells that name several labels into lists of labels (multi-label), as the flags say.

    - ``--label_delimiter D``: every cell is split on ``D`` (list-like cells are parsed as lists): multi-label.
    - ``--problem_type multi_label_classification``: list-like cells are parsed; other cells are one label each,
      unless they contain a delimiter (an error: pass ``--label_delimiter``).
    - ``--problem_type single_label_classification`` / ``regression``: cells are left as they are.
    - No flag: a column of list-like cells (``['a', 'b']``) is multi-label (logged); a column with a cell holding a
      candidate delimiter (``,;|``), or mixing list-like and plain cells, is ambiguous: an error naming the flags.

    Args:
        raw: The raw splits (test splits may lack the label column).
        label_column: The label column.
        label_delimiter: ``--label_delimiter``.
        problem_type: ``--problem_type`` (one of :data:`PROBLEM_TYPES`) or None.
        do_regression: ``--do_regression``.

    Returns:
        ``(raw, do_regression)``: the splits, string label cells turned into lists where they name several labels,
        and ``do_regression`` as ``--problem_type`` implies it.

    Raises:
        ValueError: Before any training: an unknown problem type, conflicting flags, an ambiguous or unparsable
            label column (names the split, the row and the flags).
    """
    if problem_type is not None and problem_type not in PROBLEM_TYPES:
        raise ValueError(f"--problem_type {problem_type!r} is unknown; valid: {', '.join(PROBLEM_TYPES)}.")
    if problem_type is not None and do_regression is not None and do_regression != (problem_type == "regression"):
        raise ValueError(
            f"--do_regression {do_regression} contradicts --problem_type {problem_type}; give only --problem_type."
        )
    if problem_type is not None:
        do_regression = problem_type == "regression"
    if label_delimiter is not None and problem_type in ("single_label_classification", "regression"):
        raise ValueError(
            f"--label_delimiter {label_delimiter!r} splits cells into several labels, which --problem_type "
            f"{problem_type} does not have; drop one of the two (multi-label: --problem_type "
            "multi_label_classification)."
        )
    if label_delimiter == "":
        raise ValueError("--label_delimiter is empty; give the character between labels, e.g. ','.")

    labelled = {split: ds for split, ds in raw.items() if label_column in ds.column_names}
    if not labelled:
        return raw, do_regression
    feature = next(iter(labelled.values())).features[label_column]
    if not _is_string(feature):
        if label_delimiter is not None:
            raise ValueError(
                f"--label_delimiter applies to a column of strings; label column {label_column!r} is {feature}."
            )
        return raw, do_regression
    if problem_type in ("single_label_classification", "regression"):
        return raw, do_regression  # the user said: one value per cell

    cells = {split: ds.select_columns([label_column])[label_column] for split, ds in labelled.items()}
    plain = [(split, row, c) for split, values in cells.items() for row, c in enumerate(values) if c is not None]
    list_like = [(split, row, c) for split, row, c in plain if _LIST_LIKE.match(c)]
    delimited = [
        (split, row, c)
        for split, row, c in plain
        if not _LIST_LIKE.match(c) and any(d in c for d in CANDIDATE_DELIMITERS)
    ]

    if label_delimiter is None and problem_type is None:
        if not list_like and not delimited:
            return raw, do_regression  # one label per cell: single-label, nothing to guess
        if list_like and len(list_like) == len(plain):
            logger.warning(
                "Label column %r holds lists written as strings (e.g. %r): multi-label classification. Pass "
                "--problem_type single_label_classification to keep each string as one class.",
                label_column,
                list_like[0][2],
            )
        else:
            not_lists = [cell for cell in plain if not _LIST_LIKE.match(cell[2])]
            split, row, example = (delimited or not_lists)[0]  # the cell that is not written as a list
            raise ValueError(
                f"Label column {label_column!r} is ambiguous: split '{split}', row {row} is {example!r}. Is that "
                "several labels (multi-label) or one class? Pass --label_delimiter (e.g. ',') and/or --problem_type "
                "multi_label_classification for several labels per row, or --problem_type "
                "single_label_classification to keep each cell as one class."
            )
    elif label_delimiter is None and delimited:  # --problem_type multi_label_classification
        split, row, example = delimited[0]
        raise ValueError(
            f"--problem_type multi_label_classification: label column {label_column!r}, split '{split}', row {row} "
            f"is {example!r}; pass --label_delimiter to say what separates its labels (or write it as "
            "['a', 'b'])."
        )

    def to_lists(values: list, indices: list[int], split: str) -> dict:
        out = []
        for cell, row in zip(values, indices):
            if cell is None:
                out.append(None)
            elif _LIST_LIKE.match(cell):
                out.append(_parse_list(cell, split, row, label_column))
            else:
                out.append(_split(cell, label_delimiter) if label_delimiter is not None else [cell.strip()])
        return {label_column: out}

    target = datasets.List(Value("string"))
    for split, ds in labelled.items():
        features = ds.features.copy()
        features[label_column] = target
        raw[split] = ds.map(
            to_lists,
            batched=True,
            with_indices=True,
            input_columns=[label_column],
            fn_kwargs={"split": split},
            features=features,
            desc="Splitting multi-label cells",
        )
    return raw, do_regression


def check_problem_type(requested: str | None, found: str, label_column: str) -> None:
    """Stops a run whose labels are not of the ``--problem_type`` asked for (e.g. multi-label asked for, one
    integer class per row found).

    Args:
        requested: ``--problem_type``, or None (nothing to check).
        found: The problem type the label column gives.
        label_column: The label column, for the message.
    """
    if requested is not None and requested != found:
        raise ValueError(
            f"--problem_type {requested} but label column {label_column!r} holds {found} labels. Pass "
            f"--problem_type {found}, or point --label_column_name at a column of {requested} labels."
        )
