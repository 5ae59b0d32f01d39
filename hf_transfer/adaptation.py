# Copyright 2026 The hf_transfer authors. Licensed under the Apache License, Version 2.0.
"""Unsupervised domain adaptation on the transformers `Trainer`: min_θ L_s(θ) + λ·L_d(θ).

L_s is the classification loss on the labelled source data, L_d a loss that aligns the features of the source and of
the unlabelled target data. Each training step runs a source batch and a target batch of the same size through the
model in ONE forward pass (BatchNorm statistics shared, as thuml's Transfer-Learning-Library does), and L_d works on
the features the head's last linear layer reads: the pooled / fused features with a linear head, the bottleneck with an
MLP head (`--head mlp --head_hidden_sizes 256`, tllib's bottleneck).

Methods (after tllib's `alignment/dann.py`, `cdan.py`, `dan.py`, `coral.py`, `self_training/mcc.py`):

* ``dann``: a domain discriminator behind a gradient-reversal layer (Ganin & Lempitsky, 2015).
* ``cdan``: the discriminator reads features ⊗ class probabilities (multilinear map, randomized for wide ones), with
  entropy conditioning (Long et al., 2018).
* ``mmd``: multi-kernel Gaussian maximum mean discrepancy (DAN, Long et al., 2015).
* ``coral``: distance between the feature means and covariances (Deep CORAL, Sun & Saenko, 2016).
* ``mcc``: minimum class confusion of the target predictions (Jin et al., 2020).

The discriminator belongs to the trainer's `DomainAdapter`, not to the model: the saved model is a plain classifier.
Its weights are checkpointed next to the model's (``adapter.pt``) and its parameters are in the Trainer's optimizer, so
a killed run resumes exactly; the gradient-reversal coefficient is a function of the Trainer's global step.

Model selection without target labels: the trainer adds unsupervised scores of the target data to every evaluation
(``eval_target_entropy``, ``eval_target_im``, ``eval_target_snd``), usable as ``--metric_for_best_model``. Labelled
target data, when given, only reports ``eval_target_*`` metrics (e.g. ``eval_target_accuracy``).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from .data import DataTrainingArguments, TaskInfo, load_raw_datasets, prepare_split
from .training import TransferTrainer, _unwrap

logger = logging.getLogger(__name__)

ADAPTATION_METHODS = ("dann", "cdan", "mmd", "coral", "mcc")
# Methods that read class probabilities (softmax of the logits): single-label classification only.
PROBABILITY_METHODS = ("cdan", "mcc")
ADVERSARIAL_METHODS = ("dann", "cdan")
UNSUPERVISED_SCORES = ("target_entropy", "target_im", "target_snd")
ADAPTER_WEIGHTS_NAME = "adapter.pt"


# --------------------------------------------------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class AdaptationArguments:
    """Unsupervised domain adaptation: the unlabelled target data and the alignment method.

    The target data is read with the source's column flags (``--image_column_name``, ``--text_column_names``,
    ``--label_column_name``) unless the ``--target_*_column_name`` flags say otherwise. Its labels, when it has some,
    are only checked against the source's classes, never trained on.
    """

    adaptation: str | None = field(
        default=None, metadata={"help": "Domain adaptation method: " + ", ".join(ADAPTATION_METHODS) + "."}
    )
    adaptation_weight: float = field(default=1.0, metadata={"help": "λ, the weight of the adaptation loss L_d."})
    adaptation_schedule: str = field(
        default="constant",
        metadata={
            "help": "constant: λ throughout (tllib's; dann/cdan still ramp their gradient reversal from 0); "
            "warm_start: λ itself ramps from 0 on the same schedule, for a statistical L_d (mmd) on a backbone "
            "trained from scratch, which it can otherwise collapse before the classes are learnt."
        },
    )
    target_dataset_name: str | None = field(
        default=None, metadata={"help": "Target data: a Hub dataset or a local directory (as --dataset_name)."}
    )
    target_dataset_config_name: str | None = field(default=None, metadata={"help": "The target dataset's config."})
    target_train_dir: str | None = field(default=None, metadata={"help": "Target data: an image folder."})
    target_train_file: str | None = field(default=None, metadata={"help": "Target data: a csv/json/parquet file."})
    target_validation_dir: str | None = field(
        default=None, metadata={"help": "Labelled target evaluation data (an image folder), reported only."}
    )
    target_validation_file: str | None = field(
        default=None, metadata={"help": "Labelled target evaluation data (a file), reported only."}
    )
    target_validation_split: str | None = field(
        default=None,
        metadata={
            "help": "Split of --target_dataset_name holding labelled target evaluation data (reported as "
            "eval_target_*, never used to pick a checkpoint); default: validation or test when present."
        },
    )
    target_image_column_name: str | None = field(default=None, metadata={"help": "Default: --image_column_name."})
    target_text_column_names: str | None = field(default=None, metadata={"help": "Default: --text_column_names."})
    target_label_column_name: str | None = field(default=None, metadata={"help": "Default: --label_column_name."})
    max_target_train_samples: int | None = field(default=None, metadata={"help": "Truncate the target data."})
    max_target_eval_samples: int | None = field(
        default=2000, metadata={"help": "Target rows scored by the unsupervised metrics at each evaluation."}
    )
    discriminator_hidden_size: int = field(default=1024, metadata={"help": "Width of the domain discriminator."})
    grl_alpha: float = field(
        default=10.0, metadata={"help": "Steepness of the warm start λ_grl(p) = 2/(1+exp(-alpha·p)) - 1."}
    )
    grl_max_steps: int | None = field(
        default=None, metadata={"help": "Steps over which the reversal coefficient ramps (default: the run's steps)."}
    )
    entropy_conditioning: bool = field(default=True, metadata={"help": "CDAN+E: weight samples by certainty."})
    cdan_randomized: bool | None = field(
        default=None,
        metadata={"help": "CDAN's randomized multilinear map (default: when features × classes > 4096)."},
    )
    cdan_randomized_dim: int = field(default=1024, metadata={"help": "Output width of the randomized map."})
    mmd_kernel_scales: list[float] = field(
        default_factory=lambda: [0.125, 0.25, 0.5, 1.0, 2.0],
        metadata={"help": "Gaussian kernels' σ² as multiples of the mean squared distance (DAN's).", "nargs": "+"},
    )
    mcc_temperature: float = field(default=2.5, metadata={"help": "MCC's softmax temperature."})
    snd_temperature: float = field(default=0.05, metadata={"help": "Soft neighborhood density's temperature."})

    def __post_init__(self):
        if self.adaptation is None:
            if self.has_target_data:  # a flag that would do nothing
                raise ValueError(
                    "Target data is given but no --adaptation method; pass --adaptation, one of "
                    + ", ".join(ADAPTATION_METHODS)
                    + "."
                )
            return
        self.adaptation = self.adaptation.lower()
        if self.adaptation not in ADAPTATION_METHODS:
            raise ValueError(f"--adaptation {self.adaptation!r} is unknown; valid: {', '.join(ADAPTATION_METHODS)}.")
        if not self.has_target_data:
            raise ValueError(
                f"--adaptation {self.adaptation} needs unlabelled target data: --target_dataset_name, "
                "--target_train_dir or --target_train_file."
            )
        if self.adaptation_schedule not in ("constant", "warm_start"):
            raise ValueError(f"--adaptation_schedule {self.adaptation_schedule!r}: valid are constant, warm_start.")
        if self.adaptation_weight < 0:
            raise ValueError(f"--adaptation_weight must be >= 0, got {self.adaptation_weight}.")
        if self.discriminator_hidden_size < 1 or self.cdan_randomized_dim < 1:
            raise ValueError("--discriminator_hidden_size and --cdan_randomized_dim must be >= 1.")
        if not self.mmd_kernel_scales or min(self.mmd_kernel_scales) <= 0:
            raise ValueError(f"--mmd_kernel_scales must be positive numbers, got {self.mmd_kernel_scales}.")

    @property
    def has_target_data(self) -> bool:
        return any(v is not None for v in (self.target_dataset_name, self.target_train_dir, self.target_train_file))


def check_adaptation(args: AdaptationArguments, problem_type: str, metric_for_best_model: str | None) -> None:
    """Rejects, before training, a method that cannot apply to the task and target labels used to pick checkpoints.

    Args:
        args: The adaptation flags.
        problem_type: The source task's problem type.
        metric_for_best_model: `--metric_for_best_model`.

    Raises:
        ValueError: CDAN/MCC on regression or multi-label data (they read softmax probabilities), or a labelled
            target metric as `--metric_for_best_model`.
    """
    if args.adaptation in PROBABILITY_METHODS and problem_type != "single_label_classification":
        raise ValueError(
            f"--adaptation {args.adaptation} reads class probabilities, which a {problem_type} task has not; "
            "use dann, mmd or coral."
        )
    name = (metric_for_best_model or "").removeprefix("eval_")
    if name.startswith("target_") and name not in UNSUPERVISED_SCORES:
        raise ValueError(
            f"--metric_for_best_model {metric_for_best_model}: target labels must not choose the checkpoint; use "
            f"an unsupervised score ({', '.join(UNSUPERVISED_SCORES)}) or a source metric."
        )


def check_target_labels(source_labels: list[str] | None, target_labels: list[str] | None, where: str) -> None:
    """Fails when the target data's classes differ from the source's (the head could not predict them).

    Args:
        source_labels: The source's class names in id order (None for regression).
        target_labels: The target's, or None when it has none.
        where: The target data, for the message.
    """
    if source_labels is None or target_labels is None:
        return
    if list(source_labels) != list(target_labels):
        raise ValueError(
            f"The target data {where} has classes {target_labels}, the source {source_labels}: adaptation needs "
            "the same label set (same names, same order)."
        )


class TargetData(NamedTuple):
    """The target domain's data: what `load_target_datasets` and `prepare_target_datasets` return."""

    train: Any
    """The unlabelled target training data (its labels, if any, are dropped when prepared)."""
    score: Any | None
    """Target rows (from `train`) scored without labels at each evaluation."""
    eval: Any | None
    """Labelled target evaluation data (reported as `eval_target_*`), or None."""
    info: TaskInfo
    """The source's task, with the target's columns and evaluation split (``eval_splits``)."""


# The methods as a model card names them.
METHOD_TITLES = {
    "dann": "DANN (domain-adversarial training, Ganin & Lempitsky, 2015)",
    "cdan": "CDAN (conditional domain-adversarial training, Long et al., 2018)",
    "mmd": "DAN (multi-kernel maximum mean discrepancy, Long et al., 2015)",
    "coral": "Deep CORAL (correlation alignment, Sun & Saenko, 2016)",
    "mcc": "MCC (minimum class confusion, Jin et al., 2020)",
}
# Each method's own flags, shown on the card.
_METHOD_OPTIONS = {
    "dann": ("discriminator_hidden_size", "grl_alpha", "grl_max_steps"),
    "cdan": (
        "discriminator_hidden_size",
        "grl_alpha",
        "grl_max_steps",
        "entropy_conditioning",
        "cdan_randomized",
        "cdan_randomized_dim",
    ),
    "mmd": ("mmd_kernel_scales",),
    "coral": (),
    "mcc": ("mcc_temperature",),
}


@dataclass
class AdaptationDescription:
    """What a model card says about a domain adaptation run (`hf_transfer.hub.render_model_card(adaptation=...)`).

    Attributes:
        method: The `--adaptation` method (``dann``, ``cdan``, ``mmd``, ``coral``, ``mcc``).
        weight: λ, `--adaptation_weight`.
        schedule: `--adaptation_schedule` (``constant`` or ``warm_start``).
        target_dataset_name: The unlabelled target data (Hub id, local path or files), or None.
        target_dataset_config_name: Its config.
        target_eval_split: The labelled target split reported as ``eval_target_*``, or None.
        options: The method's own flags (discriminator width, kernels, ...), name -> value.
    """

    method: str
    weight: float
    schedule: str = "constant"
    target_dataset_name: str | None = None
    target_dataset_config_name: str | None = None
    target_eval_split: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def method_title(self) -> str:
        return METHOD_TITLES.get(self.method, self.method)


def describe_adaptation(args: AdaptationArguments, target: TargetData | None = None) -> AdaptationDescription:
    """The card's description of a run's domain adaptation, from its flags and target data.

    Args:
        args: The adaptation flags (`args.adaptation` set).
        target: From `load_target_datasets` (its labelled evaluation split), or None.

    Returns:
        An `AdaptationDescription`.
    """
    has_eval = target is not None and target.eval is not None and target.info.eval_splits
    return AdaptationDescription(
        method=args.adaptation,
        weight=args.adaptation_weight,
        schedule=args.adaptation_schedule,
        target_dataset_name=args.target_dataset_name or args.target_train_dir or args.target_train_file,
        target_dataset_config_name=args.target_dataset_config_name,
        target_eval_split=target.info.eval_splits[0] if has_eval else None,
        options={name: getattr(args, name) for name in _METHOD_OPTIONS.get(args.adaptation, ())},
    )


def load_target_datasets(
    args: AdaptationArguments, data_args: DataTrainingArguments, task: TaskInfo, seed: int = 42
) -> TargetData:
    """Loads the target data with `hf_transfer.data.load_raw_datasets` and checks it against the source task.

    The target's train split needs no labels (``require_labels=False``): an image folder without class
    subfolders, a file with only the input column(s), a dataset whose labels are -1/None. Labels it has are only
    checked against the source's classes, never trained on; the evaluation split needs them.

    Args:
        args: The adaptation flags (target data, its columns and splits).
        data_args: The source's data flags (column names, cache dir, preprocessing defaults).
        task: The source task, from `load_raw_datasets`.
        seed: Seed of the target subsample.

    Returns:
        A `TargetData` of raw splits: `train`, `score` (a seeded subsample of train), `eval` (labelled, or None).

    Raises:
        ValueError: Before training: no target data, a column missing from it, its classes differ from the source's,
            an unknown target split.
    """
    if not args.has_target_data:
        raise ValueError(
            "--adaptation needs unlabelled target data: --target_dataset_name, --target_train_dir or --target_train_file."
        )
    target_args = dataclasses.replace(
        data_args,
        dataset_name=args.target_dataset_name,
        dataset_config_name=args.target_dataset_config_name,
        task_name=None,
        train_dir=args.target_train_dir,
        validation_dir=args.target_validation_dir,
        train_file=args.target_train_file,
        validation_file=args.target_validation_file,
        test_file=None,
        image_column_name=args.target_image_column_name or data_args.image_column_name,
        text_column_names=args.target_text_column_names or data_args.text_column_names,
        label_column_name=args.target_label_column_name or data_args.label_column_name,
        do_regression=task.problem_type == "regression",
        train_val_split=None,  # the target's train split is not carved: it is all unlabelled training data
        max_train_samples=args.max_target_train_samples,
        max_eval_samples=None,
    )
    modalities = {"multimodal": ["image", "text"]}.get(task.modality, [task.modality])
    # Its train split is unlabelled: no label column needed there, and any labels it has are never trained on.
    raw, info = load_raw_datasets(target_args, seed=seed, modalities=modalities, require_labels=False)
    where = info.dataset_name or "(target files)"
    if "train" not in raw:
        raise ValueError(
            f"The target data {where} has no train split (splits: {list(raw)}); it is the adapted-to data."
        )
    if info.problem_type is not None and info.problem_type != task.problem_type:
        raise ValueError(f"The target data {where} is {info.problem_type}, the source {task.problem_type}.")
    check_target_labels(task.label_list, info.label_list, where)
    split = args.target_validation_split
    if split is None:
        split = next((s for s in (*info.eval_splits, *info.test_splits) if s in raw and s != "train"), None)
        if split in info.test_splits and not info.test_has_labels:
            split = None
    elif split not in raw:
        raise ValueError(f"--target_validation_split {split!r} is not a split of {where}; its splits: {list(raw)}.")
    train = raw["train"]
    score = None
    if args.max_target_eval_samples != 0:
        n = min(len(train), args.max_target_eval_samples or len(train))
        score = train.shuffle(seed=seed).select(range(n))
    target_info = dataclasses.replace(  # the source's task, read from the target's columns
        task,
        image_column=info.image_column,
        text_columns=info.text_columns,
        label_column=info.label_column or task.label_column,
        eval_splits=[split] if split else [],
        test_splits=[],
    )
    logger.info("Target data %s: %d unlabelled train rows, evaluation split %s", where, len(train), split)
    return TargetData(train, score, raw[split] if split else None, target_info)


def prepare_target_datasets(
    target: TargetData,
    backbones: list,
    processors: list | None,
    data_args: DataTrainingArguments,
    seed: int | None = None,
) -> TargetData:
    """Prepares the target splits as the source's (`hf_transfer.data.prepare_split`): train augmented like the
    source's train split and without labels, the scored rows without labels, the evaluation split with them.

    Args:
        target: From `load_target_datasets`.
        backbones: The model's `config.backbones`.
        processors: As for `prepare_datasets`.
        data_args: The source's data flags.
        seed: The augmentation seed (the training seed).

    Returns:
        The prepared `TargetData`.
    """

    def prepare(dataset, **kwargs):
        return prepare_split(dataset, target.info, backbones, processors, data_args, **kwargs)

    return TargetData(
        prepare(target.train, is_training=True, has_labels=False, seed=seed),
        prepare(target.score, has_labels=False) if target.score is not None else None,
        prepare(target.eval) if target.eval is not None else None,
        target.info,
    )


# --------------------------------------------------------------------------------------------------------------------
# Gradient reversal
# --------------------------------------------------------------------------------------------------------------------


class _GradientReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, inputs: torch.Tensor, coeff: float) -> torch.Tensor:
        ctx.coeff = coeff
        return inputs.view_as(inputs)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad_output.neg() * ctx.coeff, None


def warm_start_coefficient(progress: float, alpha: float = 10.0, lo: float = 0.0, hi: float = 1.0) -> float:
    """tllib's `WarmStartGradientReverseLayer` schedule: 2(hi-lo)/(1+exp(-alpha·p)) - (hi-lo) + lo, p in [0, 1].

    Args:
        progress: Fraction of the ramp done (clipped to [0, 1]).
        alpha: Steepness (Ganin & Lempitsky use 10).
        lo: Coefficient at the start.
        hi: Coefficient at the end.

    Returns:
        The gradient-reversal coefficient.
    """
    p = min(max(progress, 0.0), 1.0)
    return 2.0 * (hi - lo) / (1.0 + math.exp(-alpha * p)) - (hi - lo) + lo


class WarmStartGradientReverseLayer(nn.Module):
    """Identity forward; backward multiplies the gradient by -coefficient, which ramps from 0 to 1.

    Unlike tllib's, which counts its own calls (`auto_step`), the coefficient is set from the Trainer's global step
    (`set_step`), so a resumed run continues the ramp where the killed one was.

    Args:
        alpha: Steepness of the ramp.
        max_steps: Steps to reach (almost) 1.
    """

    def __init__(self, alpha: float = 10.0, max_steps: int = 1000):
        super().__init__()
        self.alpha, self.max_steps, self.step = alpha, max(int(max_steps), 1), 0

    def set_step(self, step: int) -> None:
        self.step = step

    @property
    def coefficient(self) -> float:
        return warm_start_coefficient(self.step / self.max_steps, self.alpha)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return _GradientReverse.apply(inputs, self.coefficient)


# --------------------------------------------------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------------------------------------------------


def entropy(probabilities: torch.Tensor) -> torch.Tensor:
    """Per-row entropy of probability vectors."""
    return -(probabilities * torch.log(probabilities.clamp_min(1e-8))).sum(dim=-1)


class DomainDiscriminator(nn.Sequential):
    """tllib's discriminator: [Linear → BatchNorm → ReLU] × 2 → Linear(1), a logit that the input is source."""

    def __init__(self, in_features: int, hidden_size: int = 1024):
        super().__init__(
            nn.Linear(in_features, hidden_size),
            nn.BatchNorm1d(hidden_size),
            nn.ReLU(),
            nn.Linear(hidden_size, hidden_size),
            nn.BatchNorm1d(hidden_size),
            nn.ReLU(),
            nn.Linear(hidden_size, 1),
        )


def _domain_adversarial_loss(domain_logits: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """BCE of a discriminator that reads source rows first (label 1), then as many target rows (label 0)."""
    half = domain_logits.shape[0] // 2
    labels = torch.cat([domain_logits.new_ones(half), domain_logits.new_zeros(domain_logits.shape[0] - half)])
    per_row = F.binary_cross_entropy_with_logits(domain_logits.squeeze(-1).float(), labels, reduction="none")
    if weights is not None:
        per_row = per_row * weights
    # the mean over each domain, averaged: tllib's 0.5 * (bce(d_s, 1) + bce(d_t, 0))
    return 0.5 * (per_row[:half].mean() + per_row[half:].mean())


class DomainAdversarialLoss(nn.Module):
    """DANN's loss: the discriminator tells source from target through a gradient-reversal layer.

    Args:
        in_features: Feature width.
        hidden_size: Discriminator width.
        grl: The gradient-reversal layer (its coefficient is scheduled by the trainer).
    """

    def __init__(self, in_features: int, hidden_size: int = 1024, grl: WarmStartGradientReverseLayer | None = None):
        super().__init__()
        self.grl = grl or WarmStartGradientReverseLayer()
        self.discriminator = DomainDiscriminator(in_features, hidden_size)
        self.domain_accuracy: float | None = None

    def forward(self, f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
        d = self.discriminator(self.grl(torch.cat([f_s, f_t])))
        with torch.no_grad():
            truth = torch.cat([d.new_ones(len(f_s)), d.new_zeros(len(f_t))])
            self.domain_accuracy = ((d.squeeze(-1) > 0).float() == truth).float().mean().item()
        return _domain_adversarial_loss(d)


class ConditionalDomainAdversarialLoss(nn.Module):
    """CDAN(+E): the discriminator reads the multilinear map features ⊗ class probabilities.

    Args:
        in_features: Feature width.
        num_classes: Number of classes.
        hidden_size: Discriminator width.
        entropy_conditioning: Weight rows by 1 + exp(-entropy) (CDAN+E): certain predictions count more.
        randomized: Randomized multilinear map (fixed Gaussian projections), for features × classes too wide.
        randomized_dim: Output width of the randomized map.
        grl: The gradient-reversal layer.
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        hidden_size: int = 1024,
        entropy_conditioning: bool = True,
        randomized: bool | None = None,
        randomized_dim: int = 1024,
        grl: WarmStartGradientReverseLayer | None = None,
    ):
        super().__init__()
        self.grl = grl or WarmStartGradientReverseLayer()
        self.entropy_conditioning = entropy_conditioning
        self.randomized = in_features * num_classes > 4096 if randomized is None else randomized
        if self.randomized:
            # buffers: checkpointed with the adapter, so a resumed run keeps the same map
            self.register_buffer("random_f", torch.randn(in_features, randomized_dim))
            self.register_buffer("random_g", torch.randn(num_classes, randomized_dim))
            map_dim = randomized_dim
        else:
            map_dim = in_features * num_classes
        self.discriminator = DomainDiscriminator(map_dim, hidden_size)
        self.domain_accuracy: float | None = None

    def multilinear_map(self, f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        if self.randomized:
            return (f @ self.random_f) * (g @ self.random_g) / math.sqrt(self.random_f.shape[1])
        return torch.bmm(g.unsqueeze(2), f.unsqueeze(1)).flatten(1)

    def forward(self, f_s: torch.Tensor, f_t: torch.Tensor, logits_s: torch.Tensor, logits_t: torch.Tensor):
        f = torch.cat([f_s, f_t])
        g = F.softmax(torch.cat([logits_s, logits_t]).float(), dim=1).detach().to(f.dtype)
        d = self.discriminator(self.grl(self.multilinear_map(f, g)))
        weights = None
        if self.entropy_conditioning:
            weights = 1.0 + torch.exp(-entropy(g.float()))
            weights = weights / weights.sum() * len(weights)
        with torch.no_grad():
            truth = torch.cat([d.new_ones(len(f_s)), d.new_zeros(len(f_t))])
            self.domain_accuracy = ((d.squeeze(-1) > 0).float() == truth).float().mean().item()
        return _domain_adversarial_loss(d, weights)


def gaussian_kernel_matrix(features: torch.Tensor, scales: list[float]) -> torch.Tensor:
    """Sum of Gaussian kernels exp(-‖x-y‖² / (2σ²)) with σ² = scale × the mean squared distance (tllib's
    `GaussianKernel(alpha=scale)`, bandwidth from the batch, not back-propagated through)."""
    # squared distances from the Gram matrix: cdist's square root has an infinite gradient at the zero diagonal
    squares = features.pow(2).sum(dim=1, keepdim=True)
    distances = (squares + squares.T - 2.0 * features @ features.T).clamp_min(0.0)
    mean = distances.detach().mean().clamp_min(1e-8)
    return sum(torch.exp(-distances / (2.0 * scale * mean)) for scale in scales)


class MultipleKernelMMD(nn.Module):
    """DAN's multi-kernel MMD², as the biased (V-statistic) estimator: zero for identical batches, never negative.

    Args:
        scales: The kernels' σ² as multiples of the batch's mean squared distance.
    """

    def __init__(self, scales: list[float] = (0.125, 0.25, 0.5, 1.0, 2.0)):
        super().__init__()
        self.scales = list(scales)

    def forward(self, f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
        n = len(f_s)
        k = gaussian_kernel_matrix(torch.cat([f_s, f_t]).float(), self.scales)
        return (k[:n, :n].mean() + k[n:, n:].mean() - 2 * k[:n, n:].mean()).clamp_min(0.0)


class CorrelationAlignmentLoss(nn.Module):
    """Deep CORAL, as tllib: mean squared difference of the feature means plus of the covariances."""

    def forward(self, f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
        f_s, f_t = f_s.float(), f_t.float()
        mean_s, mean_t = f_s.mean(0, keepdim=True), f_t.mean(0, keepdim=True)
        cov_s = (f_s - mean_s).T @ (f_s - mean_s) / max(len(f_s) - 1, 1)
        cov_t = (f_t - mean_t).T @ (f_t - mean_t) / max(len(f_t) - 1, 1)
        return (mean_s - mean_t).pow(2).mean() + (cov_s - cov_t).pow(2).mean()


class MinimumClassConfusionLoss(nn.Module):
    """MCC, as tllib: the off-diagonal mass of the certainty-weighted class confusion of the target predictions.

    Args:
        temperature: Softmax temperature (tllib's 2.5).
    """

    def __init__(self, temperature: float = 2.5):
        super().__init__()
        self.temperature = temperature

    def forward(self, logits_t: torch.Tensor) -> torch.Tensor:
        n, num_classes = logits_t.shape
        p = F.softmax(logits_t.float() / self.temperature, dim=1)
        w = 1.0 + torch.exp(-entropy(p).detach())
        w = (n * w / w.sum()).unsqueeze(1)
        confusion = (p * w).T @ p
        confusion = confusion / confusion.sum(dim=1, keepdim=True).clamp_min(1e-8)
        return (confusion.sum() - confusion.trace()) / num_classes


# --------------------------------------------------------------------------------------------------------------------
# Unsupervised target scores (model selection without target labels)
# --------------------------------------------------------------------------------------------------------------------


def unsupervised_scores(logits: torch.Tensor, snd_temperature: float = 0.05) -> dict[str, float]:
    """Scores of predictions on unlabelled target data, after skada's scorers.

    * ``target_entropy``: mean prediction entropy (lower is more confident; PredictionEntropyScorer).
    * ``target_im``: information maximisation, H(mean p) - mean H(p) (higher is better: confident and diverse).
    * ``target_snd``: soft neighborhood density (Saito et al., 2021): the mean entropy of each row's softmax over
      its cosine similarities to the other rows' probabilities at temperature T (higher is better).

    Args:
        logits: `(n, num_classes)` logits.
        snd_temperature: SND's temperature.

    Returns:
        Score name → value.
    """
    p = F.softmax(torch.as_tensor(logits).float(), dim=1)
    h = entropy(p)
    scores = {"target_entropy": h.mean().item(), "target_im": (entropy(p.mean(0)) - h.mean()).item()}
    unit = F.normalize(p, dim=1)
    similarity = unit @ unit.T
    similarity.fill_diagonal_(float("-inf"))
    scores["target_snd"] = entropy(F.softmax(similarity / snd_temperature, dim=1)).mean().item()
    return scores


# --------------------------------------------------------------------------------------------------------------------
# The adapter and the trainer
# --------------------------------------------------------------------------------------------------------------------


class DomainAdapter(nn.Module):
    """L_d of one method and what it owns (the discriminator), kept out of the model.

    Args:
        method: One of `ADAPTATION_METHODS`.
        feature_dim: Width of the features the head's last linear layer reads.
        num_classes: The model's outputs.
        args: The method's options (an `AdaptationArguments`).
    """

    def __init__(self, method: str, feature_dim: int, num_classes: int, args: AdaptationArguments | None = None):
        super().__init__()
        args = args or AdaptationArguments()
        if method not in ADAPTATION_METHODS:
            raise ValueError(f"Unknown adaptation method {method!r}; valid: {', '.join(ADAPTATION_METHODS)}.")
        self.method, self.weight, self.grl_alpha, self.grl_max_steps = (
            method,
            args.adaptation_weight,
            args.grl_alpha,
            args.grl_max_steps,
        )
        self.schedule = args.adaptation_schedule
        self.grl = WarmStartGradientReverseLayer(args.grl_alpha, args.grl_max_steps or 1000)
        if method == "dann":
            self.loss = DomainAdversarialLoss(feature_dim, args.discriminator_hidden_size, self.grl)
        elif method == "cdan":
            self.loss = ConditionalDomainAdversarialLoss(
                feature_dim,
                num_classes,
                args.discriminator_hidden_size,
                args.entropy_conditioning,
                args.cdan_randomized,
                args.cdan_randomized_dim,
                self.grl,
            )
        elif method == "mmd":
            self.loss = MultipleKernelMMD(args.mmd_kernel_scales)
        elif method == "coral":
            self.loss = CorrelationAlignmentLoss()
        else:
            self.loss = MinimumClassConfusionLoss(args.mcc_temperature)

    @property
    def current_weight(self) -> float:
        """λ at the current step: constant, or ramped on the warm-start schedule."""
        return self.weight * (self.grl.coefficient if self.schedule == "warm_start" else 1.0)

    def forward(self, f_s, f_t, logits_s, logits_t) -> torch.Tensor:
        """L_d (unweighted) of a source and a target batch of features and logits."""
        if self.method == "cdan":
            return self.loss(f_s, f_t, logits_s, logits_t)
        if self.method == "mcc":
            return self.loss(logits_t)
        return self.loss(f_s, f_t)


def _head_input_layer(model: nn.Module) -> nn.Module:
    """The head's last linear layer, whose input are the features L_d aligns (pooled/fused, or the bottleneck)."""
    head = getattr(_unwrap(model), "head", None)
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)] if head is not None else []
    if not linears:
        raise TypeError(f"Domain adaptation needs an hf_transfer classifier with a head; got {type(model).__name__}.")
    return linears[-1]


def head_input_dim(model: nn.Module) -> int:
    """Width of the features the adaptation loss reads (see `_head_input_layer`)."""
    return _head_input_layer(model).in_features


def _pad_cat(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Concatenates two batches along dim 0, right-padding token sequences of different lengths with zeros."""
    if a.dim() == 2 and b.dim() == 2 and a.shape[1] != b.shape[1] and not a.is_floating_point():
        width = max(a.shape[1], b.shape[1])
        a, b = (F.pad(x, (0, width - x.shape[1])) for x in (a, b))
    return torch.cat([a, b])


class AdaptationTrainer(TransferTrainer):
    """A `TransferTrainer` that minimises L_s + λ·L_d with unlabelled target batches.

    Each training batch (source, labelled) is joined with a target batch of the same size drawn from
    `target_dataset`; one forward pass computes both, L_s is the model's loss on the source rows, L_d the adapter's on
    the features the head's last linear layer reads. The target batch order is a function of the seed, the global step
    and the rank, so a resumed run sees the same batches. Evaluation adds the unsupervised target scores
    (`eval_target_entropy`, `eval_target_im`, `eval_target_snd`) and, with `target_eval_dataset`, labelled target
    metrics (`eval_target_accuracy`, ...), reported only.

    Args:
        *args: `Trainer` arguments (the model a hf_transfer classifier).
        adapter: The `DomainAdapter` (its parameters join the optimizer; it is not saved into the model).
        target_dataset: The prepared, unlabelled target training data (same preprocessing as the source's).
        target_score_dataset: Unlabelled target data scored at each evaluation (default: none scored).
        target_eval_dataset: Labelled target evaluation data, reported as `eval_target_*`.
        target_collator: Collator of the target data (default: the data collator).
        snd_temperature: SND's temperature.
        **kwargs: `TransferTrainer` keyword arguments.

    Example:
        ```python
        >>> adapter = DomainAdapter("dann", head_input_dim(model), model.config.num_labels)
        >>> trainer = AdaptationTrainer(model=model, args=args, train_dataset=source, adapter=adapter,
        ...                             target_dataset=target, target_score_dataset=target_eval)
        >>> trainer.train()
        ```
    """

    labels_for_regularizers = False  # Co-Tuning: the target rows have no labels

    loss_is_scaled_for_ga = False  # per-batch means: the Trainer divides by the accumulation steps

    def __init__(
        self,
        *args: Any,
        adapter: DomainAdapter,
        target_dataset: Any,
        target_score_dataset: Any | None = None,
        target_eval_dataset: Any | None = None,
        target_collator: Any | None = None,
        snd_temperature: float = 0.05,
        **kwargs: Any,
    ):
        self.adapter = adapter
        self.target_dataset = target_dataset
        self.target_score_dataset = target_score_dataset
        self.target_eval_dataset = target_eval_dataset
        self.snd_temperature = snd_temperature
        self._micro_step = (-1, 0)  # (global step, micro-batches seen in it): target batch position
        self._last_log: dict[str, float] = {}
        self._scoring = False
        super().__init__(*args, **kwargs)
        if target_dataset is None or len(target_dataset) == 0:
            raise ValueError("AdaptationTrainer needs a non-empty target_dataset.")
        self.target_collator = target_collator or self.data_collator
        self._features_layer = _head_input_layer(self.model)
        self._captured: list[torch.Tensor] = []
        self._features_layer.register_forward_pre_hook(self._capture)
        self.adapter.to(self.args.device)

    def _capture(self, module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        if self.model.training:
            self._captured.append(inputs[0])

    # -- optimizer and checkpoints: the adapter trains and resumes with the model, but is saved apart from it --------

    def create_optimizer(self, model: nn.Module | None = None) -> torch.optim.Optimizer:
        had = self.optimizer is not None
        optimizer = super().create_optimizer(model)
        params = [p for p in self.adapter.parameters() if p.requires_grad]
        if not had and params:
            optimizer.add_param_group({"params": params, "weight_decay": self.args.weight_decay})
        return optimizer

    def _save_checkpoint(self, model: nn.Module, trial: Any) -> None:
        # Written before the Trainer's files: trainer_state.json, written last, marks a complete checkpoint.
        folder = os.path.join(self._get_output_dir(trial=trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
        if self.args.should_save:
            os.makedirs(folder, exist_ok=True)
            torch.save(self.adapter.state_dict(), os.path.join(folder, ADAPTER_WEIGHTS_NAME))
        super()._save_checkpoint(model, trial)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None) -> None:
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        path = os.path.join(resume_from_checkpoint, ADAPTER_WEIGHTS_NAME)
        if os.path.isfile(path):
            self.adapter.load_state_dict(torch.load(path, map_location=self.args.device, weights_only=True))
        elif any(True for _ in self.adapter.parameters()):
            raise FileNotFoundError(f"{resume_from_checkpoint} has no {ADAPTER_WEIGHTS_NAME}: cannot resume L_d.")

    # -- training -------------------------------------------------------------------------------------------------

    def _target_batch(self, size: int) -> dict[str, torch.Tensor]:
        """The target rows of this micro-batch: a per-epoch seeded permutation, read at the global position."""
        step = self.state.global_step
        seen = self._micro_step[1] + 1 if self._micro_step[0] == step else 0
        self._micro_step = (step, seen)
        if seen == 0:  # the Trainer zeroes the model's gradients only
            self.adapter.zero_grad(set_to_none=True)
        slot = (step * self.args.gradient_accumulation_steps + seen) * self.args.world_size + self.args.process_index
        n, start = len(self.target_dataset), slot * self.args.per_device_train_batch_size
        indices: list[int] = []
        while len(indices) < size:
            epoch, offset = divmod(start + len(indices), n)
            order = torch.randperm(n, generator=torch.Generator().manual_seed(self.args.seed + 7919 * epoch))
            indices += order[offset : offset + size - len(indices)].tolist()
        rows = (
            self.target_dataset.__getitems__(indices)
            if hasattr(self.target_dataset, "__getitems__")
            else [self.target_dataset[i] for i in indices]
        )
        batch = self.target_collator(rows)
        batch.pop("labels", None)
        return self._prepare_inputs(batch)

    def training_step(self, model: nn.Module, inputs: dict[str, Any], num_items_in_batch: Any = None) -> torch.Tensor:
        loss = super().training_step(model, inputs, num_items_in_batch)
        if self.args.world_size > 1 and self.accelerator.sync_gradients and torch.distributed.is_initialized():
            # The adapter is not wrapped by DDP: average its gradients over the ranks as DDP does the model's.
            for parameter in self.adapter.parameters():
                if parameter.grad is not None:
                    torch.distributed.all_reduce(parameter.grad)
                    parameter.grad /= self.args.world_size
        return loss

    def _sync_schedule(self) -> None:
        max_steps = self.adapter.grl_max_steps or self.state.max_steps or 1000
        self.adapter.grl.max_steps = max(int(max_steps), 1)
        self.adapter.grl.set_step(self.state.global_step)

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, Any]:
        """L_s + λ·L_d of a training batch (the model's own loss in evaluation).

        Args:
            model: The model (possibly wrapped).
            inputs: The source batch with `labels`.
            return_outputs: Also return the outputs (of the source rows).
            num_items_in_batch: Unused: both terms are per-batch means.

        Returns:
            The loss, or `(loss, outputs)`.
        """
        if not model.training:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        labels = inputs.pop("labels")
        n = len(labels)
        target = self._target_batch(n)
        missing = sorted(set(inputs) - set(target))
        if missing:
            raise ValueError(f"The target batches lack the model inputs {missing} that the source batches have.")
        joined = {key: _pad_cat(value, target[key]) for key, value in inputs.items()}
        self._captured.clear()
        self._sync_schedule()
        outputs = model(**joined)
        features = self._captured[-1]
        self._captured.clear()
        logits_s, logits_t = outputs.logits[:n], outputs.logits[n:]
        outputs.logits = logits_s
        if self.label_smoother is not None:
            task_loss = self.label_smoother({"logits": logits_s}, labels)
        else:
            task_loss = _unwrap(model).compute_loss(logits_s, labels)
        adaptation_loss = self.adapter(features[:n], features[n:], logits_s, logits_t)
        loss = task_loss + self.adapter.current_weight * adaptation_loss + self.regularization_loss(model)
        self._last_log = {
            "source_loss": task_loss.item(),
            "adaptation_loss": adaptation_loss.item(),
            "grl_coefficient": self.adapter.grl.coefficient,
            "adaptation_weight": self.adapter.current_weight,
        }
        accuracy = getattr(self.adapter.loss, "domain_accuracy", None)
        if accuracy is not None:
            self._last_log["domain_accuracy"] = accuracy
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        if "loss" in logs and self._last_log:  # training logs: the last batch's parts of the loss
            logs = {**logs, **{k: round(v, 4) for k, v in self._last_log.items()}}
        super().log(logs, *args, **kwargs)

    # -- evaluation -----------------------------------------------------------------------------------------------

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        """The Trainer's evaluation, plus unsupervised target scores and the labelled target metrics.

        The target metrics join the main evaluation's (``eval_dataset`` None, prefix ``eval``) before it is logged,
        so ``--metric_for_best_model target_snd`` and early stopping see them.
        """
        self._scoring = metric_key_prefix == "eval"  # the main evaluation (MNLI's mismatched split is eval_mismatched)
        try:
            return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        finally:
            self._scoring = False

    def predict(self, test_dataset, ignore_keys=None, metric_key_prefix: str = "test"):
        """The Trainer's prediction; the recipe's final evaluation predicts the main eval split (prefix ``eval``) to
        keep its predictions for the card, and gets the target metrics with it as `evaluate` would."""
        self._scoring = metric_key_prefix == "eval"
        try:
            return super().predict(test_dataset, ignore_keys, metric_key_prefix)
        finally:
            self._scoring = False

    def evaluation_loop(self, dataloader, description, prediction_loss_only=None, ignore_keys=None, **kwargs):
        output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys, **kwargs)
        if self._scoring:
            self._scoring = False  # the nested loops below are plain ones
            try:
                output.metrics.update(self.target_metrics(ignore_keys, kwargs.get("metric_key_prefix", "eval")))
            finally:
                self._scoring = True
        return output

    def target_metrics(self, ignore_keys: list[str] | None = None, prefix: str = "eval") -> dict[str, float]:
        """Unsupervised scores of the target data and, where labelled target data is given, its metrics.

        Args:
            ignore_keys: Output keys to ignore.
            prefix: Metric key prefix.

        Returns:
            `{prefix}_target_entropy`, `_im`, `_snd`, and `{prefix}_target_accuracy`, ... with labelled target data.
        """
        metrics: dict[str, float] = {}
        if self.target_score_dataset is not None:
            loop = super().evaluation_loop(
                self.get_eval_dataloader(self.target_score_dataset),
                "Target scores",
                prediction_loss_only=False,
                ignore_keys=ignore_keys,
                metric_key_prefix=f"{prefix}_target",
            )
            logits = loop.predictions[0] if isinstance(loop.predictions, tuple) else loop.predictions
            if logits is not None and logits.ndim == 2 and logits.shape[1] > 1:
                scores = unsupervised_scores(torch.as_tensor(logits), self.snd_temperature)
                metrics.update({f"{prefix}_{k}": v for k, v in scores.items()})
        if self.target_eval_dataset is not None:
            loop = super().evaluation_loop(
                self.get_eval_dataloader(self.target_eval_dataset),
                "Target evaluation",
                prediction_loss_only=None,
                ignore_keys=ignore_keys,
                metric_key_prefix=f"{prefix}_target",
            )
            metrics.update(loop.metrics)
        return metrics


__all__ = [
    "ADAPTATION_METHODS",
    "AdaptationArguments",
    "AdaptationDescription",
    "AdaptationTrainer",
    "ConditionalDomainAdversarialLoss",
    "CorrelationAlignmentLoss",
    "DomainAdapter",
    "DomainAdversarialLoss",
    "DomainDiscriminator",
    "MinimumClassConfusionLoss",
    "MultipleKernelMMD",
    "TargetData",
    "WarmStartGradientReverseLayer",
    "check_adaptation",
    "check_target_labels",
    "describe_adaptation",
    "head_input_dim",
    "load_target_datasets",
    "prepare_target_datasets",
    "unsupervised_scores",
    "warm_start_coefficient",
]
