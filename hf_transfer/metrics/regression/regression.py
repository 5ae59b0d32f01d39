# Copyright 2025 The hf_transfer authors. Apache-2.0.
"""Regression scores, shipped with hf_transfer so that they load offline.

One module, one config per score: ``mse`` (``mse-multilist`` for one vector of outputs per sample), ``pearsonr``
and ``spearmanr``. Each config has the definition, features, arguments and output keys of the Hub module of that
name (``evaluate-metric/<score>``, whose ``"multilist"`` config is our ``mse-multilist``):
``sklearn.metrics.mean_squared_error`` (``squared=False``: ``root_mean_squared_error``, since scikit-learn >= 1.6
no longer takes ``squared``), ``scipy.stats.pearsonr`` and ``scipy.stats.spearmanr``.
"""

import datasets
import evaluate
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import mean_squared_error, root_mean_squared_error

CONFIGS = ("mse", "mse-multilist", "pearsonr", "spearmanr")

_DESCRIPTION = """
Mean squared error: the average of the squared differences between predictions and references. Pearson correlation:
the linear correlation between them. Spearman correlation: the Pearson correlation of their ranks. The config names
the score.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `float`): Predicted values (one vector per sample with "mse-multilist").
    references (`list` of `float`): Ground truth values (one vector per sample with "mse-multilist").
    sample_weight (`list` of `float`): mse only: sample weights. Defaults to None.
    multioutput (`str` or array-like): mse only: "raw_values" (one error per output), "uniform_average", or an
        array of weights for averaging the outputs. Defaults to "uniform_average".
    squared (`bool`): mse only: if False, return the root mean squared error. Defaults to True.
    return_pvalue (`bool`): pearsonr, spearmanr only: also return the p-value. Defaults to False.

Returns:
    mse (`float` or `array` of `float`): 0 is perfect.
    pearsonr, with `p-value` when asked (`float`): between -1 and 1.
    spearmanr, with `spearmanr_pvalue` when asked (`float`): between -1 and 1.

Examples:
    >>> hf_transfer.metrics.load_metric("mse").compute(predictions=[2.5, 0.0, 2, 8], references=[3, -0.5, 2, 7])
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
@article{2020SciPy-NMeth,
  author  = {Virtanen, Pauli and Gommers, Ralf and Oliphant, Travis E. and others},
  title   = {{{SciPy} 1.0: Fundamental Algorithms for Scientific Computing in Python}},
  journal = {Nature Methods},
  year    = {2020},
  volume  = {17},
  pages   = {261--272},
  doi     = {10.1038/s41592-019-0686-2},
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Regression(evaluate.Metric):
    """The regression score the config names."""

    def _info(self):
        if self.config_name not in CONFIGS:
            raise KeyError(f"Unknown config {self.config_name!r} of the regression metric; valid: {list(CONFIGS)}.")
        value = datasets.Value("float")
        if self.config_name == "mse-multilist":
            value = datasets.Sequence(value)
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": value, "references": value}),
            reference_urls=[
                "https://scikit-learn.org/stable/modules/generated/sklearn.metrics.mean_squared_error.html",
                "https://docs.scipy.org/doc/scipy/reference/generated/scipy.stats.pearsonr.html",
                "https://docs.scipy.org/doc/scipy/reference/generated/scipy.stats.spearmanr.html",
            ],
        )

    def _compute(self, predictions, references, **kwargs):
        if self.config_name.startswith("mse"):
            return {"mse": self._mse(predictions, references, **kwargs)}
        return_pvalue = kwargs.pop("return_pvalue", False)
        correlation = pearsonr if self.config_name == "pearsonr" else spearmanr
        statistic, pvalue = correlation(references, predictions, **kwargs)
        result = {self.config_name: float(statistic)}
        if return_pvalue:  # the Hub modules name the p-value differently
            result["p-value" if self.config_name == "pearsonr" else "spearmanr_pvalue"] = float(pvalue)
        return result

    @staticmethod
    def _mse(predictions, references, sample_weight=None, multioutput="uniform_average", squared=True):
        error_fn = mean_squared_error if squared else root_mean_squared_error
        return error_fn(references, predictions, sample_weight=sample_weight, multioutput=multioutput)
