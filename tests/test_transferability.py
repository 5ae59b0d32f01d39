# Copyright 2026 The hf_transfer authors. Licensed under the Apache License, Version 2.0.
"""Transferability scores against direct implementations of the papers' formulas, and the ranking recipe."""

import numpy as np
import pytest
import scipy.stats
import torch

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


def test_regularized_h_score_is_stable_when_dims_exceed_samples():
    f, y = separable(n=50, classes=3, extra=200)
    value = regularized_h_score(f, y)
    assert np.isfinite(value) and 0 < value <= 2  # at most C - 1


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
