"""Evaluation metrics that load offline.

``evaluate.load("accuracy")`` fetches the metric's code from the Hub at run time, which fails without network.
hf_transfer ships the metric modules it needs inside the package, one per family
(``hf_transfer/metrics/{classification,regression,glue}/<family>.py``, each a real ``evaluate.Metric`` whose config
names the score), and loads them by path. Each score has the definition, features and output keys of the Hub module
of its name, and loads by that name: ``load_metric("precision")`` is the ``classification`` module's
``precision`` config.

Example:
    >>> from hf_transfer.metrics import build_compute_metrics, load_metric
    >>> load_metric("glue", "mrpc").compute(predictions=[0, 1, 1], references=[0, 1, 0])
    {'accuracy': 0.6666666666666666, 'f1': 0.6666666666666666}
    >>> compute_metrics = build_compute_metrics(problem_type="single_label_classification", num_labels=10)
    >>> # Trainer(..., compute_metrics=compute_metrics) then logs eval_accuracy, eval_f1, ...
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..configuration_transfer import PROBLEM_TYPES

if TYPE_CHECKING:
    import evaluate
    from transformers import EvalPrediction

__all__ = [
    "GLUE_METRIC_CONFIGS",
    "PROBLEM_TYPES",
    "SHIPPED_METRICS",
    "ComputeMetrics",
    "build_compute_metrics",
    "load_metric",
    "metric_path",
]

METRICS_DIR = Path(__file__).resolve().parent

SHIPPED_METRICS: tuple[str, ...] = (
    "accuracy",
    "f1",
    "glue",
    "matthews_correlation",
    "mse",
    "pearsonr",
    "precision",
    "recall",
    "spearmanr",
)
"""Names of the metrics shipped in this package (each loads with :func:`load_metric`), as the Hub names them."""

_FAMILIES = {
    "accuracy": "classification",
    "f1": "classification",
    "matthews_correlation": "classification",
    "precision": "classification",
    "recall": "classification",
    "mse": "regression",
    "pearsonr": "regression",
    "spearmanr": "regression",
    "glue": "glue",
}
# The config that takes one vector per sample, by the Hub modules' name for it.
_VECTOR_CONFIGS = {"classification": "multilabel", "regression": "multilist"}

GLUE_METRIC_CONFIGS: tuple[str, ...] = (
    "cola",
    "sst2",
    "mrpc",
    "qqp",
    "stsb",
    "mnli",
    "mnli_mismatched",
    "mnli_matched",
    "qnli",
    "rte",
    "wnli",
    "hans",
)
"""Config names of the shipped ``glue`` metric (the Hub module's), i.e. the tasks it scores."""


def metric_path(name: str) -> Path:
    """Returns the directory of the module that computes a shipped metric.

    Args:
        name: One of :data:`SHIPPED_METRICS`.

    Returns:
        The module's directory (``evaluate.load`` takes it as ``path``; the module's config names the score, see
        :func:`load_metric`).

    Raises:
        ValueError: If ``name`` is not shipped; the message lists the shipped names.
    """
    if name not in SHIPPED_METRICS:
        raise ValueError(
            f"Unknown metric {name!r}: hf_transfer ships {', '.join(SHIPPED_METRICS)} "
            "(evaluate.load of a Hub metric needs network access, so only shipped modules load offline)."
        )
    return METRICS_DIR / _FAMILIES[name]


def load_metric(name: str, config_name: str | None = None, **kwargs: Any) -> evaluate.EvaluationModule:
    """Loads a shipped metric with ``evaluate.load``, from its module's path inside the package.

    Works with ``HF_HUB_OFFLINE=1``: nothing is downloaded.

    Args:
        name: One of :data:`SHIPPED_METRICS`, e.g. ``"accuracy"`` or ``"glue"``.
        config_name: The Hub module's config: a GLUE task (``"mrpc"``) for glue, ``"multilabel"`` (multi-hot rows)
            for accuracy, f1, precision, recall and matthews_correlation, ``"multilist"`` (a vector per sample) for
            mse; None otherwise.
        **kwargs: Passed on to ``evaluate.load`` (e.g. ``keep_in_memory=True``, ``experiment_id``).

    Returns:
        The loaded ``evaluate.EvaluationModule``.

    Raises:
        ValueError: If ``name`` is not shipped (the message lists the shipped names), or if ``name`` is
            ``"glue"`` and ``config_name`` is not a GLUE task (the message lists them), or another metric gets a
            config it does not have.

    Example:
        >>> load_metric("f1").compute(predictions=[0, 1, 1], references=[0, 1, 0])
        {'f1': 0.6666666666666666}
    """
    path = metric_path(name)
    if name == "glue":
        if config_name not in GLUE_METRIC_CONFIGS:
            raise ValueError(
                f"Unknown GLUE task {config_name!r} for the glue metric; valid tasks: {', '.join(GLUE_METRIC_CONFIGS)}."
            )
    else:
        vector_config = _VECTOR_CONFIGS.get(path.name)
        if config_name not in (None, "default", vector_config):
            raise ValueError(f"Unknown config {config_name!r} for the {name} metric; valid: None, {vector_config!r}.")
        config_name = name if config_name in (None, "default") else f"{name}-{config_name}"
    import evaluate  # imported here: it takes seconds, and most users of this package need it only at eval time

    return evaluate.load(str(path), config_name, **kwargs)


def _first(array_or_tuple: Any) -> np.ndarray:
    """Models may return extra outputs besides the logits; the Trainer then hands over a tuple."""
    if isinstance(array_or_tuple, (tuple, list)):
        array_or_tuple = array_or_tuple[0]
    return np.asarray(array_or_tuple)


class ComputeMetrics:
    """The ``compute_metrics`` callable for ``Trainer``: logits in, a dict of floats out.

    Built by :func:`build_compute_metrics`; keys carry no ``eval_`` prefix (the Trainer adds it).

    Args:
        task: GLUE task name, or None.
        problem_type: One of :data:`PROBLEM_TYPES`.
        num_labels: Number of classes (outputs, for regression).
    """

    def __init__(self, task: str | None, problem_type: str, num_labels: int):
        self.task = task
        self.problem_type = problem_type
        self.num_labels = num_labels

        def load(name: str, config: str | None = None) -> evaluate.EvaluationModule:
            # In memory: no cache files or locks shared between the processes of a distributed run.
            return load_metric(name, config, keep_in_memory=True)

        if task is not None:
            self.metrics = {"glue": load("glue", task)}
        elif problem_type == "regression":
            self.metrics = {name: load(name) for name in ("pearsonr", "spearmanr", "mse")}
        elif problem_type == "multi_label_classification":
            self.metrics = {"accuracy": load("accuracy", "multilabel"), "f1": load("f1", "multilabel")}
        else:
            self.metrics = {name: load(name) for name in ("accuracy", "f1", "precision", "recall")}

    def __repr__(self) -> str:
        return f"ComputeMetrics(task={self.task!r}, problem_type={self.problem_type!r}, num_labels={self.num_labels})"

    def __call__(self, eval_pred: EvalPrediction) -> dict[str, float]:
        """Scores one evaluation.

        Args:
            eval_pred: The Trainer's ``EvalPrediction`` (or any ``(predictions, label_ids)`` pair): logits of
                shape ``(n, num_labels)`` (``(n,)`` or ``(n, 1)`` for regression) and the references.

        Returns:
            Metric name → value, e.g. ``{"accuracy": 0.9, "f1": 0.89, "precision": 0.9, "recall": 0.88}``.
        """
        logits = _first(eval_pred[0])
        references = _first(eval_pred[1])
        with warnings.catch_warnings():
            # Undefined precision/F1 on tiny eval sets and constant predictions in correlations are legitimate
            # outcomes (scored 0 / nan); the warnings would only flood the training log.
            warnings.simplefilter("ignore")
            if self.task is not None:
                return self._glue(logits, references)
            if self.problem_type == "regression":
                return self._regression(logits, references)
            if self.problem_type == "multi_label_classification":
                return self._multi_label(logits, references)
            return self._single_label(logits, references)

    def _glue(self, logits: np.ndarray, references: np.ndarray) -> dict[str, float]:
        predictions = np.squeeze(logits) if self.task == "stsb" else np.argmax(logits, axis=-1)
        result = self.metrics["glue"].compute(predictions=predictions, references=references)
        if len(result) > 1:  # as run_glue.py: one number to select checkpoints by
            result["combined_score"] = float(np.mean(list(result.values())))
        return result

    def _regression(self, logits: np.ndarray, references: np.ndarray) -> dict[str, float]:
        predictions, references = logits.reshape(-1), references.reshape(-1)
        return {
            "pearson": self.metrics["pearsonr"].compute(predictions=predictions, references=references)["pearsonr"],
            "spearmanr": self.metrics["spearmanr"].compute(predictions=predictions, references=references)[
                "spearmanr"
            ],
            "mse": float(self.metrics["mse"].compute(predictions=predictions, references=references)["mse"]),
        }

    def _multi_label(self, logits: np.ndarray, references: np.ndarray) -> dict[str, float]:
        predictions = (logits > 0).astype(np.int32)  # sigmoid(logit) > 0.5
        references = (references > 0.5).astype(np.int32)
        f1 = self.metrics["f1"]
        return {
            "accuracy": self.metrics["accuracy"].compute(predictions=predictions, references=references)["accuracy"],
            "f1": f1.compute(predictions=predictions, references=references, average="macro")["f1"],
            "f1_micro": f1.compute(predictions=predictions, references=references, average="micro")["f1"],
        }

    def _single_label(self, logits: np.ndarray, references: np.ndarray) -> dict[str, float]:
        predictions = np.argmax(logits, axis=-1)
        average = "binary" if self.num_labels == 2 else "macro"
        kwargs = {"predictions": predictions, "references": references}
        return {
            "accuracy": self.metrics["accuracy"].compute(**kwargs)["accuracy"],
            "f1": self.metrics["f1"].compute(**kwargs, average=average)["f1"],
            "precision": self.metrics["precision"].compute(**kwargs, average=average, zero_division=0)["precision"],
            "recall": self.metrics["recall"].compute(**kwargs, average=average, zero_division=0)["recall"],
        }


def build_compute_metrics(
    task: str | None = None, *, problem_type: str | None = None, num_labels: int | None = None
) -> Callable[[EvalPrediction], dict[str, float]]:
    """Builds the ``compute_metrics`` function for ``Trainer`` from the task's kind.

    * GLUE task given: exactly that task's GLUE metric set, combined as in ``run_glue.py`` (accuracy + f1 for
      mrpc/qqp, matthews_correlation for cola, pearson + spearmanr for stsb, accuracy otherwise; plus
      ``combined_score``, their mean, where there are several).
    * single-label classification: accuracy, f1, precision, recall (binary for 2 labels, else macro).
    * multi-label classification: subset accuracy and macro f1 (``f1``) and micro f1 (``f1_micro``) of the
      thresholded sigmoid (logit > 0).
    * regression: pearson, spearmanr, mse.

    Args:
        task: A GLUE task (one of :data:`GLUE_METRIC_CONFIGS`), or None for a generic dataset.
        problem_type: One of :data:`PROBLEM_TYPES`. Required unless ``task`` is given (stsb is regression, the
            other GLUE tasks single-label classification).
        num_labels: Number of classes. Required unless ``task`` is given.

    Returns:
        A callable taking an ``EvalPrediction`` and returning metric name → float, without the ``eval_`` prefix.

    Raises:
        ValueError: On an unknown GLUE task or problem type (the message lists the valid ones), or a missing
            ``problem_type``/``num_labels``.

    Example:
        >>> compute = build_compute_metrics("mrpc")
        >>> compute((np.array([[2.0, -1.0], [0.0, 3.0]]), np.array([0, 1])))
        {'accuracy': 1.0, 'f1': 1.0, 'combined_score': 1.0}
    """
    if task is not None:
        if task not in GLUE_METRIC_CONFIGS:
            raise ValueError(f"Unknown GLUE task {task!r}; valid tasks: {', '.join(GLUE_METRIC_CONFIGS)}.")
        task_problem_type = "regression" if task == "stsb" else "single_label_classification"
        if problem_type is not None and problem_type != task_problem_type:
            raise ValueError(f"GLUE task {task!r} is {task_problem_type}, not {problem_type!r}.")
        problem_type = task_problem_type
        if num_labels is None:
            num_labels = 1 if task == "stsb" else 3 if task.startswith("mnli") else 2
    if problem_type is None or num_labels is None:
        raise ValueError("build_compute_metrics needs problem_type and num_labels when no GLUE task is given.")
    if problem_type not in PROBLEM_TYPES:
        raise ValueError(f"Unknown problem_type {problem_type!r}; valid: {', '.join(PROBLEM_TYPES)}.")
    return ComputeMetrics(task, problem_type, num_labels)
