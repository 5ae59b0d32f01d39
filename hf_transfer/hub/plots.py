# Copyright 2026 The hf_transfer authors. Licensed under the Apache License, Version 2.0.
"""The card's images: the training curve and the confusion matrix (matplotlib without pyplot)."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure


from .card import _NON_METRIC_KEYS, _unique

__all__ = [
    "plot_confusion_matrix",
    "plot_training_curve",
]


_ANNOTATE_MAX_CLASSES = 20  # confusion-matrix cells get their value printed up to this many classes


def plot_training_curve(log_history: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> Path | None:
    """Plots train loss, eval loss and eval metrics against the step, from `trainer.state.log_history`.

    Args:
        log_history: The Trainer's log entries (`{"loss": .., "step": ..}`, `{"eval_loss": .., "eval_accuracy": ..}`).
        path: Where to write the PNG.

    Returns:
        The PNG's path, or None when the history holds no loss to plot (nothing is written).
    """
    train = [(e["step"], e["loss"]) for e in log_history if "loss" in e and "step" in e]
    evals = [e for e in log_history if "eval_loss" in e and "step" in e]
    eval_loss = [(e["step"], e["eval_loss"]) for e in evals]
    metric_names = _unique(
        key
        for e in evals
        for key, value in e.items()
        if key.startswith("eval_")
        and key != "eval_loss"
        and key.removeprefix("eval_") not in _NON_METRIC_KEYS
        and isinstance(value, (int, float))
    )
    if not train and not eval_loss:
        return None

    from matplotlib.figure import Figure  # no pyplot: no global backend, safe in threads and headless runs

    fig = Figure(figsize=(11 if metric_names else 6, 4), layout="constrained")
    axes = fig.subplots(1, 2 if metric_names else 1, squeeze=False)[0]
    if train:
        axes[0].plot(*zip(*train), label="train loss", linewidth=1)
    if eval_loss:
        axes[0].plot(*zip(*eval_loss), "o-", label="eval loss")
    axes[0].set(xlabel="step", ylabel="loss", title="Loss")
    axes[0].legend()
    axes[0].grid(alpha=0.3)
    if metric_names:
        for name in metric_names:
            points = [(e["step"], e[name]) for e in evals if name in e]
            axes[1].plot(*zip(*points), "o-", label=name.removeprefix("eval_"))
        axes[1].set(xlabel="step", title="Evaluation metrics")
        axes[1].legend()
        axes[1].grid(alpha=0.3)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def plot_confusion_matrix(
    y_true: Sequence[int] | np.ndarray,
    y_pred: Sequence[int] | np.ndarray,
    labels: Sequence[str],
    path: str | os.PathLike,
) -> Path:
    """Plots the row-normalised confusion matrix (each true label's row sums to 1).

    Readable from a few classes to hundreds: values are printed in the cells up to 20 classes; above that, only the
    colour scale, and the tick labels thin out.

    Args:
        y_true: True label ids (or label names from `labels`).
        y_pred: Predicted label ids (or names).
        labels: Label names, in id order.
        path: Where to write the PNG.

    Returns:
        The PNG's path.
    """
    fig = _confusion_matrix_figure(_normalized_confusion_matrix(y_true, y_pred, labels), labels, len(y_true))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def _normalized_confusion_matrix(y_true: Any, y_pred: Any, labels: Sequence[str]) -> np.ndarray:
    """`(n, n)` matrix, rows = true labels, each row summing to 1 (0 for labels absent from `y_true`)."""
    from sklearn.metrics import confusion_matrix

    if not labels:
        raise ValueError("A confusion matrix needs at least one label.")
    true_ids, pred_ids = _label_ids(y_true, labels), _label_ids(y_pred, labels)
    return confusion_matrix(true_ids, pred_ids, labels=np.arange(len(labels)), normalize="true")


def _confusion_matrix_figure(matrix: np.ndarray, labels: Sequence[str], num_examples: int) -> Figure:
    from matplotlib.figure import Figure

    n = len(labels)
    side = float(np.clip(3 + 0.4 * n, 5, 20))
    fig = Figure(figsize=(side + 1.5, side), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(matrix, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.02, label="fraction of the true label")
    step = max(1, math.ceil(n / 50))  # at most ~50 tick labels per axis
    ticks = np.arange(0, n, step)
    names = [labels[i] if len(labels[i]) <= 20 else labels[i][:19] + "…" for i in ticks]
    fontsize = 9 if n <= _ANNOTATE_MAX_CLASSES else 6
    ax.set_xticks(ticks, names, rotation=90, fontsize=fontsize)
    ax.set_yticks(ticks, names, fontsize=fontsize)
    ax.set(xlabel="predicted label", ylabel="true label", title=f"Confusion matrix ({num_examples:,} examples)")
    if n <= _ANNOTATE_MAX_CLASSES:
        for i, j in np.ndindex(n, n):
            if matrix[i, j] > 0:
                color = "white" if matrix[i, j] > 0.5 else "black"
                ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", color=color, fontsize=8)
    return fig


def _label_ids(values: Sequence[Any] | np.ndarray, labels: Sequence[str]) -> np.ndarray:
    values = np.asarray(values)
    if values.dtype.kind in "iu":
        ids = values.astype(np.int64)
    else:
        index = {str(label): i for i, label in enumerate(labels)}
        unknown = sorted({str(v) for v in values.tolist()} - index.keys())
        if unknown:
            raise ValueError(f"Unknown labels {unknown[:5]}; expected label ids or one of the given label names.")
        ids = np.array([index[str(v)] for v in values.tolist()], dtype=np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= len(labels)):
        raise ValueError(f"Label ids must be in [0, {len(labels)}); got {ids.min()}..{ids.max()}.")
    return ids
