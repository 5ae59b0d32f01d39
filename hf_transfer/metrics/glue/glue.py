# Copyright 2025 The hf_transfer authors. Apache-2.0.
"""GLUE benchmark metric, shipped with hf_transfer so that it loads offline.

Same config names, features, per-task metric sets and output keys as the Hub module ``evaluate-metric/glue``:

========================================================================  =====================================
config                                                                    outputs
========================================================================  =====================================
cola                                                                      ``matthews_correlation``
stsb (float predictions and references)                                   ``pearson``, ``spearmanr``
mrpc, qqp                                                                 ``accuracy``, ``f1``
sst2, mnli, mnli_mismatched, mnli_matched, qnli, rte, wnli, hans          ``accuracy``
========================================================================  =====================================
"""

import datasets
import evaluate
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import f1_score, matthews_corrcoef

# The configs (tasks) are listed once, in the package that ships this module.
from hf_transfer.metrics import GLUE_METRIC_CONFIGS as GLUE_CONFIG_NAMES

_CITATION = """
@inproceedings{wang2019glue,
  title={{GLUE}: A Multi-Task Benchmark and Analysis Platform for Natural Language Understanding},
  author={Wang, Alex and Singh, Amanpreet and Michael, Julian and Hill, Felix and Levy, Omer and Bowman, Samuel R.},
  note={In the Proceedings of ICLR.},
  year={2019}
}
"""

_DESCRIPTION = """
GLUE, the General Language Understanding Evaluation benchmark (https://gluebenchmark.com/), is a collection of
resources for training, evaluating, and analyzing natural language understanding systems. This metric computes
the official metric(s) of one GLUE task, chosen by the config name.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`, or of `float` for stsb): Predicted labels (scores for stsb).
    references (`list` of `int`, or of `float` for stsb): Ground truth labels (scores for stsb).

Returns: depending on the GLUE task, one or several of:
    "accuracy": Accuracy
    "f1": F1 score (binary, positive class 1)
    "pearson": Pearson correlation
    "spearmanr": Spearman correlation
    "matthews_correlation": Matthews correlation

Examples:
    >>> metric = hf_transfer.metrics.load_metric("glue", "mrpc")
    >>> metric.compute(predictions=[0, 1], references=[0, 1])
    {'accuracy': 1.0, 'f1': 1.0}
    >>> metric = hf_transfer.metrics.load_metric("glue", "cola")
    >>> metric.compute(predictions=[0, 1], references=[0, 1])
    {'matthews_correlation': 1.0}
"""


def _config_error(config_name):
    return KeyError(
        f"Unknown GLUE config {config_name!r}. You should supply a configuration name selected in "
        f"{list(GLUE_CONFIG_NAMES)}."
    )


def _accuracy(predictions, references):
    return float((predictions == references).mean())


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Glue(evaluate.Metric):
    """The official metric set of one GLUE task."""

    def _info(self):
        if self.config_name not in GLUE_CONFIG_NAMES:
            raise _config_error(self.config_name)
        dtype = "float32" if self.config_name == "stsb" else "int64"
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value(dtype), "references": datasets.Value(dtype)}),
            codebase_urls=[],
            reference_urls=[],
            format="numpy",
        )

    def _compute(self, predictions, references):
        if self.config_name == "cola":
            return {"matthews_correlation": float(matthews_corrcoef(references, predictions))}
        if self.config_name == "stsb":
            return {
                "pearson": float(pearsonr(predictions, references)[0]),
                "spearmanr": float(spearmanr(predictions, references)[0]),
            }
        if self.config_name in ("mrpc", "qqp"):
            return {
                "accuracy": _accuracy(predictions, references),
                "f1": float(f1_score(y_true=references, y_pred=predictions)),
            }
        if self.config_name in GLUE_CONFIG_NAMES:
            return {"accuracy": _accuracy(predictions, references)}
        raise _config_error(self.config_name)
