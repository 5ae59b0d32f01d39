# Copyright 2025 The hf_transfer authors. Apache-2.0.
"""Mean squared error, shipped with hf_transfer so that it loads offline.

Same definition, features, arguments and output key as the Hub module ``evaluate-metric/mse``:
``sklearn.metrics.mean_squared_error``; ``squared=False`` returns the root mean squared error (computed with
``root_mean_squared_error``, since scikit-learn >= 1.6 no longer takes ``squared``). The ``"multilist"``
config takes one vector of outputs per sample.
"""

import datasets
import evaluate
from sklearn.metrics import mean_squared_error, root_mean_squared_error

_DESCRIPTION = """
Mean squared error: the average of the squared differences between predictions and references.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `float`): Predicted values (one vector per sample with the "multilist" config).
    references (`list` of `float`): Ground truth values (one vector per sample with the "multilist" config).
    sample_weight (`list` of `float`): Sample weights. Defaults to None.
    multioutput (`str` or array-like): "raw_values" (one error per output), "uniform_average", or an array
        of weights for averaging the outputs. Defaults to "uniform_average".
    squared (`bool`): If False, return the root mean squared error. Defaults to True.

Returns:
    mse (`float` or `array` of `float`): Mean squared error; 0 is perfect.

Examples:
    >>> metric = hf_transfer.metrics.load_metric("mse")
    >>> metric.compute(predictions=[2.5, 0.0, 2, 8], references=[3, -0.5, 2, 7])
    {'mse': 0.375}
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
class Mse(evaluate.Metric):
    """Mean squared error (``sklearn.metrics.mean_squared_error``)."""

    def _info(self):
        if self.config_name == "multilist":
            features = {
                "predictions": datasets.Sequence(datasets.Value("float")),
                "references": datasets.Sequence(datasets.Value("float")),
            }
        else:
            features = {"predictions": datasets.Value("float"), "references": datasets.Value("float")}
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(features),
            reference_urls=[
                "https://scikit-learn.org/stable/modules/generated/sklearn.metrics.mean_squared_error.html"
            ],
        )

    def _compute(self, predictions, references, sample_weight=None, multioutput="uniform_average", squared=True):
        error_fn = mean_squared_error if squared else root_mean_squared_error
        mse = error_fn(references, predictions, sample_weight=sample_weight, multioutput=multioutput)
        return {"mse": mse}
