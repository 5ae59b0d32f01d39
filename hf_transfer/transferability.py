# Copyright 2026 The hf_transfer authors. Licensed under the Apache License, Version 2.0.
"""Transferability scores: how well a frozen backbone's features (or its source classifier) suit a target task,
from one forward pass and no training.

* :func:`logme`: the per-sample log marginal likelihood (evidence) of a Bayesian linear model on the features
  (You et al., "LogME", ICML 2021; the fixed-point solver of "Ranking and Tuning Pre-trained Models", JMLR 2022).
  Classification (one-hot targets) and regression.
* :func:`leep`: log expected empirical prediction from the source classifier's probabilities (Nguyen et al. 2020).
* :func:`nce`: negative conditional entropy of target labels given the source classifier's hard labels
  (Tran et al. 2019).
* :func:`h_score` (Bao et al. 2019) and :func:`regularized_h_score` (Ibrahim et al. 2022: Ledoit-Wolf shrinkage).
* :func:`transrate` (Huang et al. 2022): coding rate of the features minus the class-conditional one.

Higher is better for every score. All work in float64 on NumPy arrays or torch tensors. Each feature score costs
one Gram matrix (``N × D²``) and one symmetric eigendecomposition (of the ``D × D`` Gram, or of the ``N × N`` one
when ``N < D``): no loop over samples, and the loop over classes works on ``D``-vectors only.

:func:`check_transferability` is the negative-transfer guard of ``recipes/finetune.py --check_transferability``:
the backbone's LogME against its random-init self, on the prepared training data.
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

__all__ = [
    "FEATURE_SCORES",
    "SOURCE_SCORES",
    "GuardResult",
    "NegativeTransferError",
    "check_transferability",
    "h_score",
    "leep",
    "logme",
    "nce",
    "regularized_h_score",
    "score_features",
    "transrate",
]

FEATURE_SCORES = ("logme", "h_score", "regularized_h_score", "transrate")
"""Scores computed from features and target labels."""
SOURCE_SCORES = ("leep", "nce")
"""Scores that need the candidate's source classifier (its predictions on the target data)."""


# --------------------------------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------------------------------


def _as_float64(array: Any, name: str, ndim: int) -> np.ndarray:
    if hasattr(array, "detach"):  # torch tensor (any device / dtype)
        array = array.detach().cpu()
        if array.dtype.is_floating_point and array.element_size() < 4:  # bf16/fp16: NumPy has no bfloat16
            array = array.float()
        array = array.numpy()
    array = np.asarray(array, dtype=np.float64)
    if array.ndim == 1 and ndim == 2:
        array = array[:, None]
    if array.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {array.shape}.")
    if not np.isfinite(array).all():
        bad = np.flatnonzero(~np.isfinite(array).reshape(len(array), -1).all(axis=1))
        raise ValueError(f"{name} has NaN/inf values (rows {bad[:5].tolist()}, {bad.size} in all).")
    return array


def _class_ids(labels: Any, n: int, name: str = "labels") -> tuple[np.ndarray, int]:
    """Labels as ids 0..C-1 (any hashable values are accepted) and C; at least two classes are needed."""
    if hasattr(labels, "detach"):
        labels = labels.detach().cpu().numpy()
    labels = np.asarray(labels).reshape(-1)
    if labels.shape[0] != n:
        raise ValueError(f"{name} has {labels.shape[0]} entries but there are {n} samples.")
    values, ids = np.unique(labels, return_inverse=True)
    if len(values) < 2:
        raise ValueError(
            f"{name} hold a single class ({values.tolist()}): a transferability score needs at least two classes."
        )
    return ids.astype(np.int64), len(values)


def _one_hot(ids: np.ndarray, num_classes: int) -> np.ndarray:
    out = np.zeros((len(ids), num_classes), dtype=np.float64)
    out[np.arange(len(ids)), ids] = 1.0
    return out


# --------------------------------------------------------------------------------------------------------------------
# LogME
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class _Spectrum:
    """Eigen-decomposition of ``FᵀF`` (D × D): eigenvalues ``sigma`` (all D, zeros past the rank) and the
    projections ``x = Uᵀy`` of the targets on the left singular vectors, with ``‖y‖² - ‖x‖²`` (the part of y
    outside the span of F)."""

    sigma: np.ndarray  # (D,)
    x: np.ndarray  # (D, K)
    residual: np.ndarray  # (K,)
    vectors: np.ndarray  # (D, D) right singular vectors (columns), for the weights m


def _spectrum(f: np.ndarray, y: np.ndarray) -> _Spectrum:
    n, d = f.shape
    if n >= d:
        # one D×D Gram + eigh: cheaper than an SVD of the N×D matrix when N ≫ D
        sigma, v = np.linalg.eigh(f.T @ f)
        sigma = np.clip(sigma, 0.0, None)
        fty = v.T @ (f.T @ y)  # (D, K) = diag(s) Uᵀy
    else:
        # N < D: eigh of the N×N Gram; the D - N missing eigenvalues are 0
        sigma_n, u = np.linalg.eigh(f @ f.T)
        sigma_n = np.clip(sigma_n, 0.0, None)
        s = np.sqrt(sigma_n)
        keep = s > s.max() * 1e-12
        v_k = (f.T @ u[:, keep]) / s[keep]  # right singular vectors (D, k)
        fty = np.zeros((d, y.shape[1]))
        fty[: keep.sum()] = s[keep, None] * (u[:, keep].T @ y)
        sigma = np.zeros(d)
        sigma[: keep.sum()] = sigma_n[keep]
        v = np.zeros((d, d))
        v[:, : keep.sum()] = v_k
    s = np.sqrt(sigma)
    nonzero = s > (s.max() * 1e-12 if s.max() > 0 else 0.0)
    x = np.zeros_like(fty)
    x[nonzero] = fty[nonzero] / s[nonzero, None]
    sigma = np.where(nonzero, sigma, 0.0)
    residual = (y**2).sum(axis=0) - (x**2).sum(axis=0)
    return _Spectrum(sigma=sigma, x=x, residual=np.clip(residual, 0.0, None), vectors=v)


def _evidence(alpha, beta, sigma, m2, res2, n: int, d: int) -> np.ndarray:
    """Log evidence of y ~ N(Fm, 1/beta), m ~ N(0, 1/alpha) at (alpha, beta), per sample (LogME's eq. 2)."""
    # D/2·log α - ½·log|αI + βFᵀF| written as -½·Σ log(1 + σ_i β/α): finite as α → ∞ (features that explain nothing)
    return (
        n / 2.0 * np.log(beta)
        - 0.5 * np.log1p(sigma[:, None] * (beta / alpha)[None, :]).sum(axis=0)
        - beta / 2.0 * res2
        - alpha / 2.0 * m2
        - n / 2.0 * np.log(2 * np.pi)
    ) / n


def _logme_fixed_point(spec: _Spectrum, n: int, d: int, tol: float, max_iter: int):
    """The JMLR fixed-point iteration on t = alpha / beta, for every target column at once."""
    sigma, x2 = spec.sigma[:, None], spec.x**2
    k = x2.shape[1]
    alpha, beta = np.ones(k), np.ones(k)
    for _ in range(max_iter):
        t = alpha / beta
        gamma = (sigma / (sigma + t)).sum(axis=0)
        m2 = (sigma * x2 / (t + sigma) ** 2).sum(axis=0)
        res2 = (x2 / (1 + sigma / t) ** 2).sum(axis=0) + spec.residual
        alpha = gamma / (m2 + 1e-12)
        beta = (n - gamma) / (res2 + 1e-12)
        if np.all(np.abs(alpha / beta - t) / t <= tol):
            break
    t = alpha / beta
    m2 = (sigma * x2 / (t + sigma) ** 2).sum(axis=0)
    res2 = (x2 / (1 + sigma / t) ** 2).sum(axis=0) + spec.residual
    return _evidence(alpha, beta, spec.sigma, m2, res2, n, d), alpha, beta


def _logme_evidence_maximisation(spec: _Spectrum, n: int, d: int, tol: float, max_iter: int):
    """The ICML evidence-maximisation iteration (MacKay's updates of alpha and beta through the posterior mean m),
    with m and the residual written in the eigenbasis of FᵀF."""
    sigma = spec.sigma[:, None]
    b = np.sqrt(spec.sigma)[:, None] * spec.x  # Vᵀ Fᵀ y
    yy = spec.residual + (spec.x**2).sum(axis=0)  # ‖y‖²
    k = b.shape[1]
    alpha, beta = np.ones(k), np.ones(k)
    for _ in range(max_iter):
        lam = alpha / beta
        gamma = (beta * sigma / (alpha + beta * sigma)).sum(axis=0)
        m = beta * b / (alpha + beta * sigma)  # posterior mean, in the eigenbasis: A⁻¹ β Fᵀy
        m2 = (m**2).sum(axis=0)
        res2 = yy - 2 * (m * b).sum(axis=0) + (sigma * m**2).sum(axis=0)  # ‖y - Fm‖²
        alpha = gamma / (m2 + 1e-12)
        beta = (n - gamma) / (np.clip(res2, 0.0, None) + 1e-12)
        if np.all(np.abs(alpha / beta - lam) / lam <= tol):
            break
    m = beta * b / (alpha + beta * sigma)
    m2 = (m**2).sum(axis=0)
    res2 = np.clip(yy - 2 * (m * b).sum(axis=0) + (sigma * m**2).sum(axis=0), 0.0, None)
    return _evidence(alpha, beta, spec.sigma, m2, res2, n, d), alpha, beta


def logme(
    features: Any,
    labels: Any,
    regression: bool = False,
    *,
    method: str = "fixed_point",
    tol: float = 1e-5,
    max_iter: int = 100,
    return_details: bool = False,
) -> float | tuple[float, dict[str, np.ndarray]]:
    """LogME: the maximum log evidence per sample of a Bayesian linear model from features to targets.

    For each target column y (one-hot class indicator, or a regression target), alpha (prior precision of the
    weights) and beta (noise precision) are set to maximise the evidence ``log p(y | F, alpha, beta)``; the score
    is that evidence divided by N, averaged over the columns (what the paper reports; typically in [-2, 2]).

    Args:
        features: ``(N, D)`` features (NumPy array or tensor).
        labels: ``(N,)`` class labels (any values; at least two classes), or with ``regression=True`` ``(N,)`` or
            ``(N, K)`` float targets.
        regression: Treat ``labels`` as real-valued targets.
        method: ``"fixed_point"`` (JMLR 2022) or ``"evidence_maximisation"`` (ICML 2021); both maximise the same
            evidence and agree to the tolerance.
        tol: Stop when the relative change of alpha/beta is below this for every column.
        max_iter: Iteration cap (convergence usually takes 2–10 iterations).
        return_details: Also return per-column ``evidence``, ``alpha`` and ``beta``.

    Returns:
        The LogME score (higher is better), and the details dict with ``return_details=True``.

    Raises:
        ValueError: On a bad shape, NaN/inf, a single class, or an unknown ``method``.
    """
    f = _as_float64(features, "features", 2)
    n, d = f.shape
    if regression:
        y = _as_float64(labels, "labels", 2)
        if y.shape[0] != n:
            raise ValueError(f"labels has {y.shape[0]} rows but features has {n}.")
    else:
        ids, num_classes = _class_ids(labels, n)
        y = _one_hot(ids, num_classes)
    solvers = {"fixed_point": _logme_fixed_point, "evidence_maximisation": _logme_evidence_maximisation}
    if method not in solvers:
        raise ValueError(f"Unknown LogME method {method!r}; valid: {', '.join(solvers)}.")
    spectrum = _spectrum(f, y)
    if not spectrum.sigma.any():
        # all-zero features (e.g. a dead backbone): only the noise model y ~ N(0, 1/β) is left, with β = N / ‖y‖²
        beta = n / np.clip((y**2).sum(axis=0), 1e-300, None)
        evidence = 0.5 * np.log(beta) - 0.5 * beta * (y**2).sum(axis=0) / n - 0.5 * np.log(2 * np.pi)
        alpha = np.full_like(beta, np.inf)
    else:
        evidence, alpha, beta = solvers[method](spectrum, n, d, tol, max_iter)
    score = float(evidence.mean())
    if return_details:
        return score, {"evidence": evidence, "alpha": alpha, "beta": beta}
    return score


# --------------------------------------------------------------------------------------------------------------------
# Source-classifier scores
# --------------------------------------------------------------------------------------------------------------------


def leep(source_probs: Any, labels: Any) -> float:
    """LEEP: mean log-likelihood of the target labels under the "empirical predictor"
    ``p(y | x) = Σ_z p(y | z) θ(x)_z``, where θ(x) are the source classifier's probabilities and ``p(y | z)`` is
    the empirical conditional of target given source label (Nguyen et al., ICML 2020).

    Args:
        source_probs: ``(N, C_s)`` source-class probabilities (rows sum to 1) on the target data.
        labels: ``(N,)`` target labels.

    Returns:
        The LEEP score (≤ 0; higher is better).
    """
    theta = _as_float64(source_probs, "source_probs", 2)
    if (theta < 0).any() or not np.allclose(theta.sum(axis=1), 1.0, atol=1e-4):
        raise ValueError("source_probs must be probabilities (non-negative rows summing to 1): apply a softmax.")
    ids, num_classes = _class_ids(labels, len(theta))
    joint = _one_hot(ids, num_classes).T @ theta / len(theta)  # P(y, z): (C_t, C_s)
    marginal = joint.sum(axis=0, keepdims=True)  # P(z)
    conditional = np.divide(joint, marginal, out=np.zeros_like(joint), where=marginal > 0)  # P(y | z)
    predicted = np.einsum("nz,nz->n", theta, conditional[ids])  # Σ_z θ_z P(y_n | z)
    return float(np.mean(np.log(np.clip(predicted, 1e-300, None))))


def nce(source_labels: Any, labels: Any) -> float:
    """NCE: the negative conditional entropy ``-H(Y | Z)`` of target labels Y given the source classifier's hard
    labels Z on the same samples (Tran et al., ICCV 2019).

    Args:
        source_labels: ``(N,)`` source-class predictions (argmax of the source classifier).
        labels: ``(N,)`` target labels.

    Returns:
        The NCE score (≤ 0; higher is better).
    """
    source = np.asarray(source_labels.detach().cpu().numpy() if hasattr(source_labels, "detach") else source_labels)
    source = source.reshape(-1)
    ids, num_classes = _class_ids(labels, len(source))
    _, z = np.unique(source, return_inverse=True)
    joint = np.zeros((num_classes, z.max() + 1))
    np.add.at(joint, (ids, z), 1.0 / len(ids))
    marginal = joint.sum(axis=0, keepdims=True)
    conditional = joint / marginal  # every source label here occurs at least once
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(joint > 0, joint * np.log(conditional), 0.0)
    return float(terms.sum())


# --------------------------------------------------------------------------------------------------------------------
# H-score, regularised H-score, TransRate
# --------------------------------------------------------------------------------------------------------------------


def _centered_class_means(f: np.ndarray, ids: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    counts = np.bincount(ids, minlength=num_classes).astype(np.float64)
    sums = np.zeros((num_classes, f.shape[1]))
    np.add.at(sums, ids, f)
    means = sums / counts[:, None] - f.mean(axis=0)
    return means, counts


def _covariance_eigh(
    centered: np.ndarray, denominator: float, gram: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Non-zero spectrum of ``cov = FcᵀFc / denominator``: eigenvalues and eigenvectors (D × k), from the smaller of
    the D × D and N × N Gram matrices (the null space carries no class mean: the means are averages of rows)."""
    n, d = centered.shape
    if gram is None:
        gram = centered.T @ centered if n >= d else centered @ centered.T
    if n >= d:
        return np.linalg.eigh(gram / denominator)
    eigvals, u = np.linalg.eigh(gram / denominator)
    keep = eigvals > eigvals.max() * 1e-12 if eigvals.max() > 0 else np.zeros_like(eigvals, dtype=bool)
    vectors = centered.T @ u[:, keep] / np.sqrt(eigvals[keep] * denominator)  # right singular vectors of Fc
    return eigvals[keep], vectors


def _between_class_trace(eigvals, eigvecs, means, counts, n, rcond) -> float:
    """tr(pinv(cov_f) cov_g) with cov_g = Σ_c n_c/(N-1) μ_c μ_cᵀ (the covariance of the class-mean features)."""
    if eigvals.size == 0 or eigvals.max() <= 0:
        return 0.0
    keep = eigvals > rcond * eigvals.max()
    projected = means @ eigvecs[:, keep]  # (C, k)
    return float((counts[:, None] * projected**2 / eigvals[keep]).sum() / (n - 1))


def h_score(features: Any, labels: Any, rcond: float = 1e-15) -> float:
    """H-score ``tr(cov(f)⁺ cov(E[f | y]))`` (Bao et al., ICIP 2019): how much of the feature variance the class
    means explain, in the metric of the feature covariance.

    Args:
        features: ``(N, D)`` features.
        labels: ``(N,)`` target labels.
        rcond: Eigenvalues of cov(f) below ``rcond × max`` are dropped from the pseudo-inverse (``np.linalg.pinv``).

    Returns:
        The H-score (≥ 0; higher is better; at most C - 1).
    """
    f = _as_float64(features, "features", 2)
    ids, num_classes = _class_ids(labels, len(f))
    centered = f - f.mean(axis=0)
    eigvals, eigvecs = _covariance_eigh(centered, len(f) - 1)
    means, counts = _centered_class_means(f, ids, num_classes)
    return _between_class_trace(eigvals, eigvecs, means, counts, len(f), rcond)


def _ledoit_wolf_shrinkage(centered: np.ndarray, gram: np.ndarray) -> float:
    """Ledoit-Wolf shrinkage of the empirical covariance of centred ``X``, as ``sklearn.covariance.
    ledoit_wolf_shrinkage`` computes it, from the Gram matrix the score needs anyway: its two block-wise products
    reduce to ``‖XᵀX‖_F²`` (= ``‖XXᵀ‖_F²``) and ``Σ_n ‖x_n‖⁴``, so no second ``N × D²`` pass."""
    n, d = centered.shape
    row_norms2 = (centered**2).sum(axis=1)
    mu = row_norms2.sum() / n / d
    delta_ = (gram**2).sum() / n**2
    beta = (np.dot(row_norms2, row_norms2) / n - delta_) / (d * n)
    delta = (delta_ - 2.0 * mu * row_norms2.sum() / n + d * mu**2) / d
    beta = min(beta, delta)
    return 0.0 if beta == 0 else float(beta / delta)


def regularized_h_score(features: Any, labels: Any, rcond: float = 1e-15) -> float:
    """H-score with the Ledoit-Wolf shrunk feature covariance (Ibrahim et al., "Newer is not always better", ICLR
    2023; as tllib's ``regularized_h_score``): ``tr(cov_α(f)⁻¹ (1 - α) cov(E[f | y]))``, where
    ``cov_α = (1 - α) S + α tr(S)/D · I`` and α is the Ledoit-Wolf shrinkage (``sklearn.covariance``). Stable when
    D is large against N, where the plain H-score's covariance is near-singular.

    Args:
        features: ``(N, D)`` features.
        labels: ``(N,)`` target labels.
        rcond: Relative cut-off of the pseudo-inverse.

    Returns:
        The regularised H-score (≥ 0; higher is better).
    """
    f = _as_float64(features, "features", 2)
    ids, num_classes = _class_ids(labels, len(f))
    centered = f - f.mean(axis=0)
    if not centered.any():  # constant features: nothing to explain (and no shrinkage target)
        return 0.0
    gram = centered.T @ centered if len(f) >= f.shape[1] else centered @ centered.T
    shrinkage = _ledoit_wolf_shrinkage(centered, gram)
    eigvals, eigvecs = _covariance_eigh(centered, len(f), gram)  # LedoitWolf's (biased) empirical covariance
    # shrinking towards mu·I keeps the eigenvectors and moves every eigenvalue: one eigendecomposition for both
    mu = (centered**2).sum() / len(f) / f.shape[1]  # trace / D
    shrunk = (1 - shrinkage) * eigvals + shrinkage * mu
    means, counts = _centered_class_means(f, ids, num_classes)
    return (1 - shrinkage) * _between_class_trace(shrunk, eigvecs, means, counts, len(f), rcond)


def _coding_rate(f: np.ndarray, eps: float) -> float:
    n, d = f.shape
    gram = f.T @ f if n >= d else f @ f.T  # same non-zero eigenvalues; the smaller one
    _, logdet = np.linalg.slogdet(np.eye(len(gram)) + gram / (n * eps))
    return 0.5 * logdet


def transrate(features: Any, labels: Any, eps: float = 1e-4) -> float:
    """TransRate (Huang et al., ICML 2022): the coding rate of the centred features minus the mean coding rate of
    each class's features, ``R(f, ε) - (1/C) Σ_c R(f_c, ε)`` with ``R(f, ε) = ½ logdet(I + fᵀf / (N ε))`` (as in
    tllib).

    Args:
        features: ``(N, D)`` features.
        labels: ``(N,)`` target labels.
        eps: Distortion ε.

    Returns:
        The TransRate score (higher is better).
    """
    f = _as_float64(features, "features", 2)
    ids, num_classes = _class_ids(labels, len(f))
    f = f - f.mean(axis=0)
    within = sum(_coding_rate(f[ids == c], eps) for c in range(num_classes))
    return float(_coding_rate(f, eps) - within / num_classes)


# --------------------------------------------------------------------------------------------------------------------
# All scores of one candidate
# --------------------------------------------------------------------------------------------------------------------


def score_features(
    features: Any,
    labels: Any,
    *,
    regression: bool = False,
    source_logits: Any = None,
    scores: tuple[str, ...] = FEATURE_SCORES + SOURCE_SCORES,
) -> dict[str, float]:
    """Every requested score of one candidate on one target.

    Args:
        features: ``(N, D)`` features.
        labels: ``(N,)`` labels (or regression targets).
        regression: Real-valued targets (only LogME applies).
        source_logits: ``(N, C_s)`` logits of the candidate's source classifier, for LEEP and NCE; None skips them.
        scores: Names from :data:`FEATURE_SCORES` and :data:`SOURCE_SCORES`.

    Returns:
        Score name → value, for the scores that apply.
    """
    unknown = set(scores) - set(FEATURE_SCORES + SOURCE_SCORES)
    if unknown:
        raise ValueError(f"Unknown score(s) {sorted(unknown)}; valid: {', '.join(FEATURE_SCORES + SOURCE_SCORES)}.")
    functions: dict[str, Callable] = {
        "logme": lambda: logme(features, labels, regression=regression),
        "h_score": lambda: h_score(features, labels),
        "regularized_h_score": lambda: regularized_h_score(features, labels),
        "transrate": lambda: transrate(features, labels),
    }
    if source_logits is not None and not regression:
        logits = _as_float64(source_logits, "source_logits", 2)
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        functions["leep"] = lambda: leep(probs, labels)
        functions["nce"] = lambda: nce(probs.argmax(axis=1), labels)
    applicable = ("logme",) if regression else tuple(functions)
    return {name: functions[name]() for name in scores if name in applicable and name in functions}


# --------------------------------------------------------------------------------------------------------------------
# Negative-transfer guard
# --------------------------------------------------------------------------------------------------------------------


class NegativeTransferError(RuntimeError):
    """The pretrained backbone scores no better than its random-init self (``--check_transferability strict``)."""


@dataclass
class GuardResult:
    """Outcome of :func:`check_transferability`.

    Attributes:
        pretrained: LogME of the model's (pretrained) backbones on the training data.
        random_init: LogME of the same architecture(s) from random init.
        flagged: True when ``pretrained <= random_init + margin``.
        num_samples: Training rows scored.
    """

    pretrained: float
    random_init: float
    flagged: bool
    num_samples: int

    def message(self) -> str:
        verdict = "NO BETTER than" if self.flagged else "better than"
        return (
            f"Transferability check (LogME on {self.num_samples} training rows): pretrained backbone(s) "
            f"{self.pretrained:.4f}, random init {self.random_init:.4f}: the pretrained features are {verdict} "
            "random ones."
            + (
                " Transfer from this source may hurt (negative transfer); consider another backbone."
                if self.flagged
                else ""
            )
        )


def _random_init_copy(model: Any, seed: int) -> Any:
    """The same model with every backbone rebuilt from its stored config: the library's own random init (timm's /
    transformers'), seeded, frozen."""
    import torch

    from .modeling_transfer import build_backbone

    clone = copy.deepcopy(model)
    base = clone.get_base_model()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for index, spec in enumerate(base.config.backbones):
            backbone = build_backbone(spec).to(next(base.backbones[index].parameters()).device)
            backbone.requires_grad_(False)
            base.backbones[index] = backbone
    return clone


def check_transferability(
    model: Any,
    train_dataset: Any,
    data_collator: Callable,
    *,
    mode: str = "warn",
    max_samples: int = 2000,
    batch_size: int = 64,
    margin: float = 0.0,
    seed: int = 0,
    device: Any = None,
) -> GuardResult:
    """Negative-transfer guard: LogME of the model's backbone features against the same backbones from random init,
    on (a sample of) the prepared training data, before any training.

    Args:
        model: An hf_transfer classification/regression model (its backbones as they will be fine-tuned).
        train_dataset: The prepared training split (model inputs per row, with ``labels``). With random
            augmentation the features are those of augmented inputs, as the fine-tune will see them.
        data_collator: The run's data collator.
        mode: ``"warn"`` (log a warning) or ``"strict"`` (raise :class:`NegativeTransferError`) when flagged.
        max_samples: Rows scored (the first ones; LogME is stable from a few hundred rows).
        batch_size: Rows per forward pass.
        margin: Flag when ``pretrained <= random_init + margin``.
        seed: Seed of the random init.
        device: Where to run the backbones (default: the model's device).

    Returns:
        A :class:`GuardResult`.

    Raises:
        ValueError: On an unknown ``mode``, or a dataset without labels / with one class.
        NegativeTransferError: In strict mode, when flagged.
    """
    import torch

    from .features import cache_backbone_features

    if mode not in ("warn", "strict"):
        raise ValueError(f"Unknown --check_transferability mode {mode!r}; valid: warn, strict.")
    if train_dataset is None or len(train_dataset) == 0:
        raise ValueError("The transferability check needs a training split (--do_train data); there is none.")
    subset = train_dataset.select(range(min(max_samples, len(train_dataset))))
    regression = getattr(model.config, "problem_type", None) == "regression"

    def logme_of(candidate) -> float:
        cached = cache_backbone_features(
            candidate, subset, data_collator, batch_size=batch_size, device=device, desc="Transferability check"
        )
        columns = cached.columns
        feats = torch.cat([columns[k] for k in sorted(columns) if k != "labels"], dim=1)
        return logme(feats, columns["labels"], regression=regression)

    # the cached-features pass needs frozen backbones: score frozen copies, leave the model untouched
    frozen = copy.deepcopy(model)
    for p in frozen.get_base_model().backbones.parameters():
        p.requires_grad_(False)
    pretrained = logme_of(frozen)
    random_init = logme_of(_random_init_copy(frozen, seed))
    result = GuardResult(pretrained, random_init, pretrained <= random_init + margin, len(subset))
    if result.flagged:
        if mode == "strict":
            raise NegativeTransferError(result.message() + " (--check_transferability strict stops here.)")
        warnings.warn(result.message(), stacklevel=2)
        logger.warning(result.message())
    else:
        logger.info(result.message())
    return result
