"""hf_transfer.metrics: the shipped evaluate modules match sklearn/scipy and the Hub modules, and load offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    matthews_corrcoef,
    mean_squared_error,
    precision_score,
    recall_score,
)

from hf_transfer.metrics import GLUE_METRIC_CONFIGS, SHIPPED_METRICS, build_compute_metrics, load_metric

RNG = np.random.default_rng(0)
N = 200
BINARY_REFS, BINARY_PREDS = RNG.integers(0, 2, N), RNG.integers(0, 2, N)
MULTI_REFS, MULTI_PREDS = RNG.integers(0, 5, N), RNG.integers(0, 5, N)
WEIGHTS = RNG.uniform(0.1, 2.0, N)
FLOAT_REFS = RNG.normal(size=N)
FLOAT_PREDS = FLOAT_REFS + RNG.normal(scale=0.8, size=N)


def f32(x):
    """The float modules store inputs as float32 (Value("float")), as the Hub modules do."""
    return np.asarray(x, dtype=np.float32).astype(np.float64)


@pytest.fixture(scope="module")
def metrics():
    return {name: load_metric(name, keep_in_memory=True) for name in SHIPPED_METRICS if name != "glue"}


def test_accuracy_equals_sklearn(metrics):
    kw = {"predictions": MULTI_PREDS, "references": MULTI_REFS}
    assert metrics["accuracy"].compute(**kw) == {"accuracy": accuracy_score(MULTI_REFS, MULTI_PREDS)}
    assert metrics["accuracy"].compute(**kw, normalize=False)["accuracy"] == (MULTI_REFS == MULTI_PREDS).sum()
    weighted = metrics["accuracy"].compute(**kw, sample_weight=WEIGHTS)["accuracy"]
    assert weighted == pytest.approx(accuracy_score(MULTI_REFS, MULTI_PREDS, sample_weight=WEIGHTS))


@pytest.mark.parametrize(("name", "sk"), [("f1", f1_score), ("precision", precision_score), ("recall", recall_score)])
@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"pos_label": 0},
        {"sample_weight": WEIGHTS},
        {"average": "macro", "multi": True},
        {"average": "micro", "multi": True},
        {"average": "weighted", "multi": True},
        {"average": "macro", "labels": [0, 1, 2], "multi": True},
    ],
)
def test_f1_precision_recall_equal_sklearn(metrics, name, sk, kwargs):
    kwargs = dict(kwargs)
    refs, preds = (MULTI_REFS, MULTI_PREDS) if kwargs.pop("multi", False) else (BINARY_REFS, BINARY_PREDS)
    result = metrics[name].compute(predictions=preds, references=refs, **kwargs)
    assert list(result) == [name] and isinstance(result[name], float)
    assert result[name] == pytest.approx(sk(refs, preds, **kwargs))


def test_average_none_returns_one_score_per_label(metrics):
    result = metrics["f1"].compute(predictions=MULTI_PREDS, references=MULTI_REFS, average=None)["f1"]
    np.testing.assert_allclose(result, f1_score(MULTI_REFS, MULTI_PREDS, average=None))


def test_matthews_correlation_equals_sklearn(metrics):
    result = metrics["matthews_correlation"].compute(predictions=MULTI_PREDS, references=MULTI_REFS)
    assert result["matthews_correlation"] == pytest.approx(matthews_corrcoef(MULTI_REFS, MULTI_PREDS))
    weighted = metrics["matthews_correlation"].compute(
        predictions=MULTI_PREDS, references=MULTI_REFS, sample_weight=WEIGHTS
    )
    assert weighted["matthews_correlation"] == pytest.approx(
        matthews_corrcoef(MULTI_REFS, MULTI_PREDS, sample_weight=WEIGHTS)
    )


def test_correlations_and_mse_equal_scipy_and_sklearn(metrics):
    kw = {"predictions": FLOAT_PREDS, "references": FLOAT_REFS}
    refs, preds = f32(FLOAT_REFS), f32(FLOAT_PREDS)
    assert metrics["pearsonr"].compute(**kw)["pearsonr"] == pytest.approx(pearsonr(refs, preds)[0])
    assert metrics["spearmanr"].compute(**kw)["spearmanr"] == pytest.approx(spearmanr(refs, preds)[0])
    assert metrics["mse"].compute(**kw)["mse"] == pytest.approx(mean_squared_error(refs, preds))
    assert metrics["mse"].compute(**kw, squared=False)["mse"] == pytest.approx(
        np.sqrt(mean_squared_error(refs, preds))
    )
    with_p = metrics["pearsonr"].compute(**kw, return_pvalue=True)
    assert set(with_p) == {"pearsonr", "p-value"} and with_p["p-value"] == pytest.approx(pearsonr(refs, preds)[1])
    assert set(metrics["spearmanr"].compute(**kw, return_pvalue=True)) == {"spearmanr", "spearmanr_pvalue"}


def test_modules_declare_the_hub_features_and_multilabel_configs():
    import datasets

    assert load_metric("accuracy").features["predictions"] == datasets.Value("int32")
    assert load_metric("pearsonr").features["predictions"] == datasets.Value("float32")
    for name in ("accuracy", "f1", "precision", "recall", "matthews_correlation"):
        assert load_metric(name, "multilabel").features["predictions"] == datasets.Sequence(datasets.Value("int32"))
    assert load_metric("glue", "stsb").features["references"] == datasets.Value("float32")
    assert load_metric("glue", "mrpc").features["references"] == datasets.Value("int64")


def test_multilabel_configs_score_multi_hot_rows():
    refs, preds = RNG.integers(0, 2, (50, 4)), RNG.integers(0, 2, (50, 4))
    assert load_metric("accuracy", "multilabel").compute(predictions=preds, references=refs)["accuracy"] == (
        pytest.approx(accuracy_score(refs, preds))
    )
    f1 = load_metric("f1", "multilabel").compute(predictions=preds, references=refs, average="macro")["f1"]
    assert f1 == pytest.approx(f1_score(refs, preds, average="macro"))
    mcc = load_metric("matthews_correlation", "multilabel").compute(
        predictions=preds, references=refs, average="macro"
    )["matthews_correlation"]
    assert mcc == pytest.approx(np.mean([matthews_corrcoef(refs[:, i], preds[:, i]) for i in range(4)]))


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        ("cola", lambda r, p: {"matthews_correlation": matthews_corrcoef(r, p)}),
        ("mrpc", lambda r, p: {"accuracy": accuracy_score(r, p), "f1": f1_score(r, p)}),
        ("qqp", lambda r, p: {"accuracy": accuracy_score(r, p), "f1": f1_score(r, p)}),
        ("sst2", lambda r, p: {"accuracy": accuracy_score(r, p)}),
        ("mnli_mismatched", lambda r, p: {"accuracy": accuracy_score(r, p)}),
        ("hans", lambda r, p: {"accuracy": accuracy_score(r, p)}),
    ],
)
def test_glue_metric_returns_each_tasks_official_set(task, expected):
    result = load_metric("glue", task).compute(predictions=BINARY_PREDS, references=BINARY_REFS)
    want = expected(BINARY_REFS, BINARY_PREDS)
    assert list(result) == list(want)
    assert result == pytest.approx(want)


def test_glue_stsb_returns_pearson_and_spearmanr():
    result = load_metric("glue", "stsb").compute(predictions=FLOAT_PREDS, references=FLOAT_REFS)
    refs, preds = f32(FLOAT_REFS), f32(FLOAT_PREDS)
    assert result == pytest.approx({"pearson": pearsonr(preds, refs)[0], "spearmanr": spearmanr(preds, refs)[0]})


def test_unknown_metric_names_the_shipped_ones():
    with pytest.raises(ValueError) as err:
        load_metric("bleu")
    assert "'bleu'" in str(err.value)
    for name in SHIPPED_METRICS:
        assert name in str(err.value)


def test_a_config_the_metric_lacks_names_the_valid_ones():
    with pytest.raises(ValueError, match="Unknown config 'multilist' for the f1 metric; valid: None, 'multilabel'"):
        load_metric("f1", "multilist")
    assert load_metric("mse", "multilist").compute(predictions=[[1.0, 2.0]], references=[[1.0, 4.0]]) == {"mse": 2.0}


def test_unknown_glue_config_lists_the_tasks():
    with pytest.raises(ValueError, match="Unknown GLUE task 'mrcp'.*cola, sst2, mrpc, qqp, stsb, mnli"):
        load_metric("glue", "mrcp")
    with pytest.raises(ValueError, match="Unknown GLUE task 'ax'.*hans"):
        build_compute_metrics("ax")


# --- compute_metrics for the Trainer --------------------------------------------------------------------------------


def logits_for(predictions: np.ndarray, num_labels: int) -> np.ndarray:
    logits = RNG.normal(size=(len(predictions), num_labels)) * 0.1
    logits[np.arange(len(predictions)), predictions] += 5.0
    return logits


def test_single_label_binary_reports_accuracy_and_binary_f1_precision_recall():
    compute = build_compute_metrics(problem_type="single_label_classification", num_labels=2)
    result = compute((logits_for(BINARY_PREDS, 2), BINARY_REFS))
    assert result == pytest.approx(
        {
            "accuracy": accuracy_score(BINARY_REFS, BINARY_PREDS),
            "f1": f1_score(BINARY_REFS, BINARY_PREDS),
            "precision": precision_score(BINARY_REFS, BINARY_PREDS),
            "recall": recall_score(BINARY_REFS, BINARY_PREDS),
        }
    )


def test_single_label_multiclass_reports_macro_scores():
    compute = build_compute_metrics(problem_type="single_label_classification", num_labels=5)
    result = compute((logits_for(MULTI_PREDS, 5), MULTI_REFS))
    assert result == pytest.approx(
        {
            "accuracy": accuracy_score(MULTI_REFS, MULTI_PREDS),
            "f1": f1_score(MULTI_REFS, MULTI_PREDS, average="macro"),
            "precision": precision_score(MULTI_REFS, MULTI_PREDS, average="macro"),
            "recall": recall_score(MULTI_REFS, MULTI_PREDS, average="macro"),
        }
    )


def test_multi_label_thresholds_the_sigmoid_at_one_half():
    logits = RNG.normal(size=(N, 4))
    refs = RNG.integers(0, 2, (N, 4)).astype(np.float32)
    preds = (1 / (1 + np.exp(-logits)) > 0.5).astype(int)
    result = build_compute_metrics(problem_type="multi_label_classification", num_labels=4)((logits, refs))
    assert result == pytest.approx(
        {
            "accuracy": accuracy_score(refs, preds),
            "f1": f1_score(refs, preds, average="macro"),
            "f1_micro": f1_score(refs, preds, average="micro"),
        }
    )


def test_regression_reports_pearson_spearmanr_and_mse():
    result = build_compute_metrics(problem_type="regression", num_labels=1)((FLOAT_PREDS[:, None], FLOAT_REFS))
    refs, preds = f32(FLOAT_REFS), f32(FLOAT_PREDS)
    assert result == pytest.approx(
        {
            "pearson": pearsonr(refs, preds)[0],
            "spearmanr": spearmanr(refs, preds)[0],
            "mse": mean_squared_error(refs, preds),
        },
        rel=1e-5,
    )


@pytest.mark.parametrize(
    ("task", "keys"),
    [
        ("mrpc", ["accuracy", "f1", "combined_score"]),
        ("qqp", ["accuracy", "f1", "combined_score"]),
        ("cola", ["matthews_correlation"]),
        ("stsb", ["pearson", "spearmanr", "combined_score"]),
        ("sst2", ["accuracy"]),
        ("mnli", ["accuracy"]),
    ],
)
def test_glue_compute_metrics_returns_exactly_the_tasks_metrics_combined_as_run_glue(task, keys):
    compute = build_compute_metrics(task)
    if task == "stsb":
        predictions, references = FLOAT_PREDS[:, None], FLOAT_REFS
    else:
        num_labels = 3 if task == "mnli" else 2
        references = RNG.integers(0, num_labels, N)
        predictions = logits_for(RNG.integers(0, num_labels, N), num_labels)
    result = compute((predictions, references))
    assert list(result) == keys
    assert not any(key.startswith("eval_") for key in result)
    if "combined_score" in result:
        others = [v for k, v in result.items() if k != "combined_score"]
        assert result["combined_score"] == pytest.approx(np.mean(others))


def test_tuple_predictions_use_the_logits():
    compute = build_compute_metrics(problem_type="single_label_classification", num_labels=2)
    logits = logits_for(BINARY_PREDS, 2)
    assert compute(((logits, np.zeros((N, 7))), BINARY_REFS)) == compute((logits, BINARY_REFS))


def test_problem_type_is_required_without_a_glue_task_and_must_be_valid():
    with pytest.raises(ValueError, match="needs problem_type and num_labels"):
        build_compute_metrics()
    with pytest.raises(ValueError, match="Unknown problem_type 'ranking'; valid: single_label_classification"):
        build_compute_metrics(problem_type="ranking", num_labels=2)
    with pytest.raises(ValueError, match="'stsb' is regression"):
        build_compute_metrics("stsb", problem_type="single_label_classification")


def test_metrics_load_and_compute_with_the_hub_offline(tmp_path):
    script = f"""
import json
from hf_transfer.metrics import SHIPPED_METRICS, load_metric
out = {{}}
for name in SHIPPED_METRICS:
    config = "mrpc" if name == "glue" else None
    out[name] = load_metric(name, config).compute(predictions=[0, 1, 1, 0], references=[0, 1, 0, 0])
for task in {list(GLUE_METRIC_CONFIGS)!r}:
    preds = [0.0, 1.0, 2.0] if task == "stsb" else [0, 1, 1]
    out["glue/" + task] = load_metric("glue", task).compute(predictions=preds, references=[0, 1, 1] if task != "stsb" else [0.5, 1.0, 2.5])
print(json.dumps({{k: {{m: float(v) for m, v in r.items()}} for k, r in out.items()}}))
"""
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_ENDPOINT": "http://127.0.0.1:9",  # nothing listens there: any network use would fail
        "HF_HOME": str(tmp_path / "home"),
        "HF_MODULES_CACHE": str(tmp_path / "modules"),
    }
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(result) == set(SHIPPED_METRICS) | {f"glue/{t}" for t in GLUE_METRIC_CONFIGS}
    assert result["accuracy"] == {"accuracy": 0.75}
    assert result["glue"] == {"accuracy": 0.75, "f1": pytest.approx(2 / 3)}
    assert result["glue/cola"] == {"matthews_correlation": 1.0}
