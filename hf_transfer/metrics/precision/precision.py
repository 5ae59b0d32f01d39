# Copyright 2025 The hf_transfer authors. Apache-2.0.
"""Precision score, shipped with hf_transfer so that it loads offline.

Same definition, features, arguments and output key as the Hub module ``evaluate-metric/precision``:
``sklearn.metrics.precision_score`` over integer labels (multi-hot rows with the ``"multilabel"`` config).
The score is a float, or an array of per-class scores when ``average=None``.
"""

import datasets
import evaluate
import numpy as np
from sklearn.metrics import precision_score

_DESCRIPTION = """
Precision is the fraction of positive predictions that are correct: Precision = TP / (TP + FP).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): Predicted labels (multi-hot rows with the "multilabel" config).
    references (`list` of `int`): Ground truth labels (multi-hot rows with the "multilabel" config).
    labels (`list` of `int`): The labels to include when `average != "binary"`, and their order when
        `average=None`. Defaults to every label seen in predictions and references, sorted.
    pos_label (`int`): The positive class when `average="binary"`. Defaults to 1.
    average (`str` or None): "binary" (only `pos_label`), "micro" (global counts), "macro" (unweighted
        mean over labels), "weighted" (mean weighted by support), "samples" (per sample, multi-label only),
        or None (one score per label). Defaults to "binary".
    sample_weight (`list` of `float`): Sample weights. Defaults to None.
    zero_division (`"warn"`, `0` or `1`): Value returned when there is a zero division; "warn" returns 0
        and warns. Defaults to "warn".

Returns:
    precision (`float` or `array` of `float`): The score, or one score per label when `average=None`.
        Between 0 and 1, higher is better.

Examples:
    >>> metric = hf_transfer.metrics.load_metric("precision")
    >>> metric.compute(references=[0, 1, 0, 1], predictions=[0, 0, 1, 1])
    {'precision': 0.5}
"""

_CITATION = """
@article{scikit-learn,
  title={Scikit-learn: Machine Learning in {P}ython},
  author={Pedregosa, F. and Varoquaux, G. and Gramfort, A. and others},
  journal={Journal of Machine Learning Research},
  volume={12},
  pages={2825--2830},
  year={2011}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Precision(evaluate.Metric):
    """Precision score (``sklearn.metrics.precision_score``)."""

    def _info(self):
        if self.config_name == "multilabel":
            features = {
                "predictions": datasets.Sequence(datasets.Value("int32")),
                "references": datasets.Sequence(datasets.Value("int32")),
            }
        else:
            features = {"predictions": datasets.Value("int32"), "references": datasets.Value("int32")}
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(features),
            reference_urls=["https://scikit-learn.org/stable/modules/generated/sklearn.metrics.precision_score.html"],
        )

    def _compute(
        self,
        predictions,
        references,
        labels=None,
        pos_label=1,
        average="binary",
        sample_weight=None,
        zero_division="warn",
    ):
        score = precision_score(
            references,
            predictions,
            labels=labels,
            pos_label=pos_label,
            average=average,
            sample_weight=sample_weight,
            zero_division=zero_division,
        )
        return {"precision": float(score) if np.ndim(score) == 0 else score}
