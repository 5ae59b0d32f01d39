# Copyright 2025 The hf_transfer authors. Apache-2.0.
"""Pearson correlation coefficient, shipped with hf_transfer so that it loads offline.

Same definition, features, arguments and output keys as the Hub module ``evaluate-metric/pearsonr``:
``scipy.stats.pearsonr(references, predictions)``, key ``"pearsonr"`` (and ``"p-value"`` on request).
"""

import datasets
import evaluate
from scipy.stats import pearsonr

_DESCRIPTION = """
Pearson correlation coefficient: the linear relationship between two variables, from -1 (exact negative
linear relationship) through 0 (none) to +1 (exact positive linear relationship).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `float`): Predicted values.
    references (`list` of `float`): Ground truth values.
    return_pvalue (`bool`): If True, also return the two-sided p-value. Defaults to False.

Returns:
    pearsonr (`float`): Pearson correlation coefficient, between -1 and 1.
    p-value (`float`): Only when `return_pvalue=True`.

Examples:
    >>> metric = hf_transfer.metrics.load_metric("pearsonr")
    >>> round(metric.compute(predictions=[10, 9, 2.5, 6, 4], references=[1, 2, 2, 3, 3])["pearsonr"], 2)
    -0.74
"""

_CITATION = """
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
class Pearsonr(evaluate.Metric):
    """Pearson correlation coefficient (``scipy.stats.pearsonr``)."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("float"), "references": datasets.Value("float")}
            ),
            reference_urls=["https://docs.scipy.org/doc/scipy/reference/generated/scipy.stats.pearsonr.html"],
        )

    def _compute(self, predictions, references, return_pvalue=False):
        statistic, pvalue = pearsonr(references, predictions)
        if return_pvalue:
            return {"pearsonr": float(statistic), "p-value": float(pvalue)}
        return {"pearsonr": float(statistic)}
