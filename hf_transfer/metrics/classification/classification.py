# Copyright 2025 The hf_transfer authors. Apache-2.0.
"""Classification scores, shipped with hf_transfer so that they load offline.

One module, one config per score: ``accuracy``, ``f1``, ``precision``, ``recall`` and ``matthews_correlation``,
each also as ``<score>-multilabel`` for multi-hot rows. Each config has the definition, features, arguments and
output key of the Hub module of that name (``evaluate-metric/<score>``, whose ``"multilabel"`` config is our
``<score>-multilabel``): the scikit-learn function over integer labels, with its keyword arguments passed on.
"""

import datasets
import evaluate
import numpy as np
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef, precision_score, recall_score

SCORES = {
    "accuracy": accuracy_score,
    "f1": f1_score,
    "precision": precision_score,
    "recall": recall_score,
    "matthews_correlation": matthews_corrcoef,
}
MULTILABEL = "-multilabel"

_DESCRIPTION = """
Accuracy: the fraction of correct predictions. Precision: TP / (TP + FP). Recall: TP / (TP + FN). F1: the harmonic
mean of precision and recall. Matthews correlation: a balanced correlation between predictions and references, +1
perfect, 0 no better than random, -1 a total disagreement. The config names the score.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): Predicted labels (multi-hot rows with a "-multilabel" config).
    references (`list` of `int`): Ground truth labels (multi-hot rows with a "-multilabel" config).
    **kwargs: The scikit-learn function's own arguments, with its defaults: `sample_weight` (every score);
        `normalize` (accuracy: False counts the correct predictions); `labels`, `pos_label`, `average` ("binary",
        "micro", "macro", "weighted", "samples" or None for one score per label) and `zero_division` (f1, precision,
        recall). matthews_correlation-multilabel scores each label column; `average="macro"` takes their mean.

Returns:
    <score> (`float`, or one score per label with `average=None`): the config's score; higher is better.

Examples:
    >>> hf_transfer.metrics.load_metric("precision").compute(references=[0, 1, 0, 1], predictions=[0, 0, 1, 1])
    {'precision': 0.5}
    >>> hf_transfer.metrics.load_metric("f1", "multilabel").compute(
    ...     references=[[0, 1], [1, 1]], predictions=[[0, 1], [1, 0]], average="macro"
    ... )
    {'f1': 0.8333333333333333}
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


def _score_name(config_name):
    score = config_name.removesuffix(MULTILABEL)
    if score not in SCORES:
        configs = [c for s in SCORES for c in (s, s + MULTILABEL)]
        raise KeyError(f"Unknown config {config_name!r} of the classification metric; valid: {configs}.")
    return score


def _multilabel_matthews(references, predictions, sample_weight=None, average=None):
    references, predictions = np.asarray(references), np.asarray(predictions)
    if references.ndim != 2 or predictions.ndim != 2:
        raise ValueError("For multi-label inputs, both references and predictions should be 2-dimensional.")
    per_label = [
        float(matthews_corrcoef(references[:, i], predictions[:, i], sample_weight=sample_weight))
        for i in range(references.shape[1])
    ]
    if average == "macro":
        return float(np.mean(per_label))
    if average is not None:
        raise ValueError(f"Invalid average={average!r}: expected 'macro' or None.")
    return per_label


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Classification(evaluate.Metric):
    """The classification score the config names (``sklearn.metrics``)."""

    def _info(self):
        score = _score_name(self.config_name)
        label = datasets.Value("int32")
        if self.config_name.endswith(MULTILABEL):
            label = datasets.Sequence(label)
        function = SCORES[score].__name__
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": label, "references": label}),
            reference_urls=[f"https://scikit-learn.org/stable/modules/generated/sklearn.metrics.{function}.html"],
        )

    def _compute(self, predictions, references, **kwargs):
        score = _score_name(self.config_name)
        if score == "matthews_correlation" and self.config_name.endswith(MULTILABEL):
            value = _multilabel_matthews(references, predictions, **kwargs)
        else:
            value = SCORES[score](references, predictions, **kwargs)
        return {score: float(value) if np.ndim(value) == 0 else value}
