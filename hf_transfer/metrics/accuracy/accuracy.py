# Copyright 2025 The hf_transfer authors. Apache-2.0.
"""Accuracy, shipped with hf_transfer so that it loads offline.

Same definition, features, arguments and output key as the Hub module ``evaluate-metric/accuracy``:
the proportion of correct predictions, computed with ``sklearn.metrics.accuracy_score``. With the
``"multilabel"`` config, predictions and references are multi-hot rows and a row counts as correct only
when every label matches (subset accuracy).
"""

import datasets
import evaluate
from sklearn.metrics import accuracy_score

_DESCRIPTION = """
Accuracy is the proportion of correct predictions among the total number of cases processed:
Accuracy = (TP + TN) / (TP + TN + FP + FN).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): Predicted labels (multi-hot rows with the "multilabel" config).
    references (`list` of `int`): Ground truth labels (multi-hot rows with the "multilabel" config).
    normalize (`bool`): If False, return the number of correctly classified samples instead of the fraction.
        Defaults to True.
    sample_weight (`list` of `float`): Sample weights. Defaults to None.

Returns:
    accuracy (`float`): Fraction (or count, with `normalize=False`) of correct predictions.

Examples:
    >>> accuracy_metric = hf_transfer.metrics.load_metric("accuracy")
    >>> accuracy_metric.compute(references=[0, 1, 2, 0, 1, 2], predictions=[0, 1, 1, 2, 1, 0])
    {'accuracy': 0.5}
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
class Accuracy(evaluate.Metric):
    """Accuracy (``sklearn.metrics.accuracy_score``)."""

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
            reference_urls=["https://scikit-learn.org/stable/modules/generated/sklearn.metrics.accuracy_score.html"],
        )

    def _compute(self, predictions, references, normalize=True, sample_weight=None):
        score = accuracy_score(references, predictions, normalize=normalize, sample_weight=sample_weight)
        return {"accuracy": float(score)}
