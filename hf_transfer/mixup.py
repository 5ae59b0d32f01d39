# Copyright 2026 The hf_transfer authors. Licensed under the Apache License, Version 2.0.
"""Mixup / CutMix for image classification, as timm's train.py does them: `timm.data.Mixup` mixes each training
batch (with label smoothing folded into its soft targets) and `timm.loss.SoftTargetCrossEntropy` is the loss.

The mixing happens in the Trainer's `compute_loss` on training batches only, so evaluation and prediction see
unmixed images and hard labels. Each batch is mixed from its own seed (the run's seed, the process rank, the
optimizer step and the micro-batch within it), so a resumed run mixes exactly as the uninterrupted one, and each DDP
rank mixes its own shard differently (timm seeds every rank apart too).

Mixup mixes pixels before the backbone: it cannot run on cached backbone features (a frozen backbone runs every
step instead), nor on text-only models, regression or multi-label targets.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from timm.data import Mixup
from timm.data.mixup import mixup_target
from timm.loss import SoftTargetCrossEntropy
from torch import nn

from .training import TransferTrainer

MIXUP_MODES = ("batch", "pair", "elem")


@dataclass
class MixupArguments:
    """timm train.py's mixup / cutmix flags (`--mixup`, `--cutmix`, ...); label smoothing is `--label_smoothing_factor`."""

    mixup: float = field(default=0.0, metadata={"help": "Mixup alpha: mixup is active if > 0 (timm: --mixup)."})
    cutmix: float = field(default=0.0, metadata={"help": "CutMix alpha: cutmix is active if > 0 (timm: --cutmix)."})
    cutmix_minmax: list[float] | None = field(
        default=None,
        metadata={"help": "CutMix min/max box ratio; overrides --cutmix alpha (timm: --cutmix-minmax).", "nargs": 2},
    )
    mixup_prob: float = field(
        default=1.0, metadata={"help": "Probability of mixing a batch (or pair / element) (timm: --mixup-prob)."}
    )
    mixup_switch_prob: float = field(
        default=0.5,
        metadata={"help": "Probability of CutMix instead of Mixup when both are on (timm: --mixup-switch-prob)."},
    )
    mixup_mode: str = field(default="batch", metadata={"help": "Mix per batch, pair or elem (timm: --mixup-mode)."})
    mixup_off_epoch: float = field(
        default=0, metadata={"help": "Stop mixing from this epoch on; 0 mixes throughout (timm: --mixup-off-epoch)."}
    )

    @property
    def mixup_active(self) -> bool:
        """Whether any mixing was asked for (timm train.py's test)."""
        return self.mixup > 0 or self.cutmix > 0 or self.cutmix_minmax is not None


def build_mixup(
    args: MixupArguments,
    config: Any,
    *,
    label_smoothing: float = 0.0,
    cache_features: bool | None = None,
    distillation: bool = False,
) -> Mixup | None:
    """Checks the mixup flags against the model and task, and builds timm's `Mixup` (None when no mixing is asked).

    Args:
        args: The mixup flags.
        config: The hf_transfer model's config (`backbones`, `problem_type`, `num_labels`).
        label_smoothing: `--label_smoothing_factor`, folded into the mixed targets as timm does.
        cache_features: `--cache_features` as given (None: automatic, turned off by mixup).
        distillation: Whether a teacher is distilled from (not supported with mixing).

    Returns:
        The `Mixup`, or None if no mixup / cutmix flag is set.

    Raises:
        ValueError: If mixing cannot apply: bad values, text inputs, several image inputs, regression or multi-label
            targets, `--cache_features true`, or distillation.
    """
    if args.mixup < 0 or args.cutmix < 0:
        raise ValueError(f"--mixup {args.mixup} / --cutmix {args.cutmix}: alphas must be >= 0.")
    if not args.mixup_active:
        return None
    if args.mixup_mode not in MIXUP_MODES:
        raise ValueError(f"--mixup_mode {args.mixup_mode!r} is not one of {', '.join(MIXUP_MODES)}.")
    for name in ("mixup_prob", "mixup_switch_prob"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            raise ValueError(f"--{name} {getattr(args, name)} must be in [0, 1].")
    if args.cutmix_minmax is not None and not 0 < args.cutmix_minmax[0] < args.cutmix_minmax[1] <= 1:
        raise ValueError(f"--cutmix_minmax {args.cutmix_minmax} must be two ratios 0 < min < max <= 1.")
    modalities = [spec["modality"] for spec in config.backbones]
    if "text" in modalities:
        raise ValueError(
            "--mixup / --cutmix mix images; this model reads text ("
            + ", ".join(spec["source"] for spec in config.backbones if spec["modality"] == "text")
            + "). Drop the mixup flags (for text, use --label_smoothing_factor alone)."
        )
    if modalities.count("image") > 1:
        raise ValueError(
            "--mixup / --cutmix with several image backbones is not supported: each reads its own resize of the "
            "image, and one CutMix box cannot be cut from all of them consistently. Use one image backbone."
        )
    # unset: transformers infers it at the first batch (class indices with several labels: single-label)
    problem_type = config.problem_type or ("regression" if config.num_labels == 1 else "single_label_classification")
    if problem_type != "single_label_classification":
        raise ValueError(
            f"--mixup / --cutmix need single-label classification; this task is {problem_type!r} "
            "(mixed soft targets of class indices make no sense for regression; multi-label is not supported)."
        )
    if cache_features:
        raise ValueError(
            "--mixup / --cutmix mix the pixels before the backbone, so they cannot train on cached backbone features: "
            "drop --cache_features (a frozen backbone then runs every step), or drop the mixup flags."
        )
    if distillation:
        raise ValueError(
            "--mixup / --cutmix with --teacher is not supported: the teacher would have to read the same mixed images. "
            "Drop one of them."
        )
    return Mixup(
        mixup_alpha=args.mixup,
        cutmix_alpha=args.cutmix,
        cutmix_minmax=args.cutmix_minmax,
        prob=args.mixup_prob,
        switch_prob=args.mixup_switch_prob,
        mode=args.mixup_mode,
        label_smoothing=label_smoothing,
        num_classes=config.num_labels,
    )


@contextlib.contextmanager
def seeded_numpy(*entropy: int) -> Iterator[None]:
    """Seeds numpy's global generator (which timm's `Mixup` draws from) from `entropy`, and restores it after.

    Args:
        *entropy: Non-negative integers that together name the draw (seed, rank, step, micro-batch).
    """
    state = np.random.get_state()
    np.random.seed(np.random.SeedSequence(list(entropy)).generate_state(1)[0])
    try:
        yield
    finally:
        np.random.set_state(state)


def mix_batch(mixup: Mixup, pixels: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixes `pixels` in place and returns them with soft targets. An odd batch (the last one of an epoch) mixes all
    but its last image, which keeps its own (smoothed) label: no image is dropped.

    Args:
        mixup: timm's `Mixup`.
        pixels: A batch of images, `(B, C, H, W)`.
        labels: Class indices, `(B,)`.

    Returns:
        The mixed pixels and the `(B, num_classes)` soft targets.
    """
    even = len(pixels) - len(pixels) % 2
    if even == 0:
        return pixels, mixup_target(labels, mixup.num_classes, 1.0, mixup.label_smoothing)
    mixed, targets = mixup(pixels[:even], labels[:even])  # `pixels[:even]` is a view: mixed in place
    if even < len(pixels):
        rest = mixup_target(labels[even:], mixup.num_classes, 1.0, mixup.label_smoothing)
        targets = torch.cat([targets, rest])
    return pixels, targets


class MixupTrainer(TransferTrainer):
    """A `TransferTrainer` that mixes training batches with timm's `Mixup` and trains on the soft targets with
    `SoftTargetCrossEntropy` (timm train.py's setup); evaluation is unmixed and uses the model's own loss.

    Args:
        *args: `TransferTrainer` arguments.
        mixup: timm's `Mixup` (see `build_mixup`).
        mixup_off_epoch: Stop mixing from this epoch on (label smoothing stays); 0 mixes throughout.
        **kwargs: `TransferTrainer` keyword arguments.
    """

    labels_for_regularizers = False  # Co-Tuning: the labels are mixed

    def __init__(self, *args: Any, mixup: Mixup, mixup_off_epoch: float = 0, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.mixup = mixup
        self.mixup_off_epoch = mixup_off_epoch
        self.soft_target_loss = SoftTargetCrossEntropy()
        self._mix_position = (-1, 0)  # (optimizer step, micro-batch within it) of the last mixed batch

    def _next_mix_seed(self) -> tuple[int, int, int, int]:
        step, micro = self._mix_position
        micro = micro + 1 if step == self.state.global_step else 0
        self._mix_position = (self.state.global_step, micro)
        return self.args.seed, self.args.process_index, self.state.global_step, micro

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, Any]:
        """The soft-target loss of a mixed training batch; the Trainer's own loss in evaluation.

        Args:
            model: The model (possibly wrapped).
            inputs: The batch: `pixel_values` and `labels` (class indices).
            return_outputs: Also return the model's outputs.
            num_items_in_batch: Unused: the loss is a per-batch mean.

        Returns:
            The loss, or `(loss, outputs)` with `return_outputs`.
        """
        if not model.training or "labels" not in inputs:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        inputs = dict(inputs)
        labels = inputs.pop("labels")
        self.mixup.mixup_enabled = not (self.mixup_off_epoch and (self.state.epoch or 0) >= self.mixup_off_epoch)
        with seeded_numpy(*self._next_mix_seed()):
            inputs["pixel_values"], targets = mix_batch(self.mixup, inputs["pixel_values"], labels)
        outputs = model(**inputs)
        loss = self.soft_target_loss(outputs.logits.float(), targets) + self.regularization_loss(model)
        return (loss, outputs) if return_outputs else loss


__all__ = ["MIXUP_MODES", "MixupArguments", "MixupTrainer", "build_mixup", "mix_batch", "seeded_numpy"]
