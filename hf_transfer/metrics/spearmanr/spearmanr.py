# Copyright 2025 The hf_transfer authors. Apache-2.0.
"""Spearman rank-order correlation, shipped with hf_transfer so that it loads offline.

Same definition, features, arguments and output keys as the Hub module ``evaluate-metric/spearmanr``:
``scipy.stats.spearmanr(references, predictions)``, key ``"spearmanr"`` (and ``"spearmanr_pvalue"``).
"""

import datasets
import evaluate
from scipy.stats import spearmanr

_DESCRIPTION = """
Spearman rank-order correlation coefficient: a nonparametric measure of how monotonic the relationship
between two variables is, from -1 through 0 (none) to +1.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `float`): Predicted values.
    references (`list` of `float`): Ground truth values.
    return_pvalue (`bool`): If True, also return the p-value. Defaults to False.

Returns:
    spearmanr (`float`): Spearman correlation coefficient, between -1 and 1.
    spearmanr_pvalue (`float`): Only when `return_pvalue=True`.

Examples:
    >>> metric = hf_transfer.metrics.load_metric("spearmanr")
    >>> metric.compute(references=[1, 2, 3, 4, 5], predictions=[10, 9, 2.5, 6, 4])
    {'spearmanr': -0.7}
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
class Spearmanr(evaluate.Metric):
    """Spearman rank-order correlation coefficient (``scipy.stats.spearmanr``)."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("float"), "references": datasets.Value("float")}
            ),
            reference_urls=["https://docs.scipy.org/doc/scipy/reference/generated/scipy.stats.spearmanr.html"],
        )

    def _compute(self, predictions, references, return_pvalue=False):
        statistic, pvalue = spearmanr(references, predictions)
        if return_pvalue:
            return {"spearmanr": float(statistic), "spearmanr_pvalue": float(pvalue)}
        return {"spearmanr": float(statistic)}
