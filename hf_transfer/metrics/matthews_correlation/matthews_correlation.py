# Copyright 2025 The hf_transfer authors. Apache-2.0.
"""Matthews correlation coefficient, shipped with hf_transfer so that it loads offline.

Same definition, features, arguments and output key as the Hub module
``evaluate-metric/matthews_correlation``: ``sklearn.metrics.matthews_corrcoef``. With the ``"multilabel"``
config the coefficient is computed per label column (optionally macro-averaged with ``average="macro"``).
"""

import datasets
import evaluate
import numpy as np
from sklearn.metrics import matthews_corrcoef

_DESCRIPTION = """
The Matthews correlation coefficient (MCC) measures the quality of binary and multiclass classifications,
taking true and false positives and negatives into account; it is balanced even when classes have very
different sizes. +1 is a perfect prediction, 0 no better than random, -1 a total disagreement.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): Predicted labels (multi-hot rows with the "multilabel" config).
    references (`list` of `int`): Ground truth labels (multi-hot rows with the "multilabel" config).
    sample_weight (`list` of `float`): Sample weights. Defaults to None.
    average (`str` or None): Only for the "multilabel" config: "macro" averages the per-label coefficients,
        None returns one per label. Defaults to None.

Returns:
    matthews_correlation (`float` or `list` of `float`): Between -1 and +1, higher is better.

Examples:
    >>> metric = hf_transfer.metrics.load_metric("matthews_correlation")
    >>> metric.compute(references=[1, 3, 2, 0, 3, 2], predictions=[1, 2, 2, 0, 3, 3])
    {'matthews_correlation': 0.5384615384615384}
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
class MatthewsCorrelation(evaluate.Metric):
    """Matthews correlation coefficient (``sklearn.metrics.matthews_corrcoef``)."""

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
            reference_urls=[
                "https://scikit-learn.org/stable/modules/generated/sklearn.metrics.matthews_corrcoef.html"
            ],
        )

    def _compute(self, predictions, references, sample_weight=None, average=None):
        if self.config_name != "multilabel":
            return {
                "matthews_correlation": float(matthews_corrcoef(references, predictions, sample_weight=sample_weight))
            }
        references, predictions = np.asarray(references), np.asarray(predictions)
        if references.ndim != 2 or predictions.ndim != 2:
            raise ValueError("For multi-label inputs, both references and predictions should be 2-dimensional.")
        per_label = [
            float(matthews_corrcoef(references[:, i], predictions[:, i], sample_weight=sample_weight))
            for i in range(references.shape[1])
        ]
        if average == "macro":
            return {"matthews_correlation": float(np.mean(per_label))}
        if average is not None:
            raise ValueError(f"Invalid average={average!r}: expected 'macro' or None.")
        return {"matthews_correlation": per_label}
