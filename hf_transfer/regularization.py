# Copyright 2026 The hf_transfer authors. Licensed under the Apache License, Version 2.0.
"""Fine-tuning that keeps what the source knew: L2-SP and BSS penalties, and an EMA of the weights.

- `L2SPRegularizer`: tllib's `SPRegularization` on the backbones, ½‖w − w₀‖² to the pretrained weights w₀, plus
  its `L2Regularization` ½‖w‖² on the head and the fusion (Li et al., ICML 2018). Weight decay must be off for the
  backbones (it would pull them to 0, not to w₀): `TransferTrainer` does it when given this regularizer.
- `BSSRegularizer`: tllib's `BatchSpectralShrinkage`, Σᵢ₌₁ᵏ σ₋ᵢ² of the batch's pooled features (the input of the
  head) (Chen et al., NeurIPS 2019).
- `EMACallback`: timm's `ModelEmaV3` (with its warm-up) as a `TrainerCallback`; checkpoints carry it, resume
  restores it, and at the end it can replace the trained weights (then evaluated and saved as the final model).

Regularizers are terms `TransferTrainer(regularizers=[...])` adds to the training loss; they compose with
layer-wise LR decay and gradual unfreezing (a frozen parameter has no gradient, its penalty is a constant).

Example:
    ```python
    >>> from hf_transfer.regularization import BSSRegularizer, EMACallback, L2SPRegularizer
    >>> trainer = TransferTrainer(
    ...     model=model, args=args, train_dataset=train,
    ...     regularizers=[L2SPRegularizer(model, weight=0.01), BSSRegularizer(model, weight=0.001, k=1)],
    ...     callbacks=[EMACallback(decay=0.999)],
    ... )
    ```
"""

import logging
import os
from dataclasses import dataclass, field
from typing import Any

import torch
from accelerate.utils import extract_model_from_parallel
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

logger = logging.getLogger(__name__)

EMA_WEIGHTS_NAME = "ema_model.safetensors"


@dataclass
class RegularizationArguments:
    """Flags of the regularizers and the EMA (`recipes/finetune.py`)."""

    l2sp_weight: float = field(
        default=0.0,
        metadata={"help": "L2-SP: weight α of ½‖w − w_pretrained‖² on the backbones (tllib: 0.01); 0 disables."},
    )
    l2sp_head_weight: float = field(
        default=0.01, metadata={"help": "L2-SP: weight β of the plain ½‖w‖² on the head and fusion (with L2-SP)."}
    )
    bss_weight: float = field(
        default=0.0, metadata={"help": "BSS: weight of Σ σ_-i² of the batch features (tllib: 0.001); 0 disables."}
    )
    bss_k: int = field(default=1, metadata={"help": "BSS: how many of the smallest singular values to shrink."})
    ema_decay: float = field(
        default=0.0, metadata={"help": "EMA of the weights (timm ModelEmaV3) with this decay, e.g. 0.999; 0 disables."}
    )
    ema_warmup: bool = field(default=True, metadata={"help": "timm's EMA warm-up: decay 1-(1+step)^-2/3 early on."})
    ema_as_final: bool = field(
        default=True, metadata={"help": "Evaluate and save the EMA weights as the final model (else keep them aside)."}
    )

    def __post_init__(self):
        for name in ("l2sp_weight", "l2sp_head_weight", "bss_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name} must be >= 0, got {getattr(self, name)}.")
        if self.bss_k < 1:
            raise ValueError(f"--bss_k must be >= 1, got {self.bss_k}.")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"--ema_decay must be in [0, 1) (0 disables), got {self.ema_decay}.")


def _parts(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    """(the backbones, the head) of an hf_transfer classifier."""
    model = extract_model_from_parallel(model)
    transfer = getattr(model, "transfer", None)
    if transfer is None or not hasattr(model, "head"):
        raise TypeError(f"Needs an hf_transfer classifier (backbones and a head), got {type(model).__name__}.")
    return transfer.backbones, model


class L2SPRegularizer:
    """α · ½ Σ‖w − w₀‖² over the backbones' weights + β · ½ Σ‖w‖² over the head's and the fusion's (tllib).

    w₀ is a copy of the backbones' weights when the regularizer is built (the pretrained ones). LoRA adapters have no
    pretrained value: they count in the head term (plain L2), as new parameters do in tllib.

    Args:
        model: The hf_transfer classifier, with its pretrained backbones (before any training).
        weight: α, the weight of the starting-point term.
        head_weight: β, the weight of the plain L2 on everything else that trains.
        random_init: The backbones were randomly initialised: an error (there is no starting point to pull to).

    Raises:
        ValueError: With `random_init`, or a negative weight.
    """

    def __init__(self, model: nn.Module, weight: float = 0.01, head_weight: float = 0.01, random_init: bool = False):
        if random_init:
            raise ValueError(
                "L2-SP pulls the backbones towards their pretrained weights, but --random_init gives them none; "
                "drop --l2sp_weight or --random_init (use --weight_decay for plain L2)."
            )
        if weight < 0 or head_weight < 0:
            raise ValueError(f"L2-SP weights must be >= 0, got {weight} and {head_weight}.")
        self.weight, self.head_weight = float(weight), float(head_weight)
        backbones, whole = _parts(model)
        self.source = {name: p.detach().clone() for name, p in backbones.named_parameters() if "lora_" not in name}
        self.backbone_names = set(self.source)

    def backbone_parameter_patterns(self) -> tuple[str, ...]:
        """Names (fnmatch) of the parameters that must get no weight decay: the backbones'."""
        return ("transfer.backbones.*",)

    def __call__(self, model: nn.Module) -> torch.Tensor:
        backbones, whole = _parts(model)
        sp, l2 = 0.0, 0.0
        in_backbone = set()
        for name, param in backbones.named_parameters():
            if name in self.source:
                in_backbone.add(id(param))
                if param.requires_grad:
                    sp = sp + 0.5 * (param - self.source[name].to(param.device)).pow(2).sum()
        for param in whole.parameters():
            if param.requires_grad and id(param) not in in_backbone:
                l2 = l2 + 0.5 * param.pow(2).sum()
        return self.weight * sp + self.head_weight * l2


class BSSRegularizer:
    """weight · Σᵢ₌₁ᵏ σ₋ᵢ² of the (batch × features) matrix the head reads (tllib's `BatchSpectralShrinkage`).

    A forward hook on the head keeps the last training batch's features; the penalty is read from them.

    Args:
        model: The hf_transfer classifier.
        weight: Weight of the penalty (tllib: 0.001).
        k: Number of the smallest singular values penalised (at most the batch size).
    """

    def __init__(self, model: nn.Module, weight: float = 0.001, k: int = 1):
        if k < 1:
            raise ValueError(f"BSS k must be >= 1, got {k}.")
        self.weight, self.k = float(weight), int(k)
        _, whole = _parts(model)
        self._features: torch.Tensor | None = None
        whole.head.register_forward_hook(self._keep)

    def _keep(self, module: nn.Module, args: tuple, output: Any) -> None:
        self._features = args[0] if torch.is_grad_enabled() else None

    @staticmethod
    def penalty(features: torch.Tensor, k: int) -> torch.Tensor:
        """Σᵢ₌₁ᵏ σ₋ᵢ² of `features` (batch × dim)."""
        singular = torch.linalg.svdvals(features.float())  # descending
        return singular[-min(k, singular.numel()) :].pow(2).sum()

    def __call__(self, model: nn.Module) -> torch.Tensor:
        if self._features is None:
            raise RuntimeError("BSSRegularizer saw no features: call it after the model's forward in training.")
        features, self._features = self._features, None
        return self.weight * self.penalty(features, self.k)


class EMACallback(TrainerCallback):
    """An exponential moving average of the weights (timm's `ModelEmaV3`) kept along a Trainer run.

    Updated after every optimizer step with timm's decay (`step` = optimizer steps, warm-up
    `1 − (1 + step)^(−2/3)` capped at `decay` when `warmup`). Each checkpoint gets `ema_model.safetensors`; a resumed
    run restores it. With `as_final`, the EMA weights replace the model's at the end of training, so that the
    evaluation and `save_model()` that follow use them.

    Args:
        decay: The EMA decay (e.g. 0.999 for a few thousand steps).
        warmup: timm's warm-up of the decay.
        as_final: Copy the EMA weights into the model at the end of training.
    """

    def __init__(self, decay: float = 0.999, warmup: bool = True, as_final: bool = True):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}.")
        self.decay, self.warmup, self.as_final = decay, warmup, as_final
        self.ema = None
        self.resume_from: str | None = None

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        from timm.utils import ModelEmaV3

        model = extract_model_from_parallel(kwargs["model"])
        self.ema = ModelEmaV3(model, decay=self.decay, use_warmup=self.warmup)
        self.ema.module.requires_grad_(False)
        if state.global_step > 0:
            folder = self.resume_from or (
                args.resume_from_checkpoint
                if isinstance(args.resume_from_checkpoint, str)
                else os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
            )
            path = os.path.join(folder, EMA_WEIGHTS_NAME)
            if os.path.isfile(path):
                self.ema.module.load_state_dict(load_file(path, device=str(next(model.parameters()).device)))
                logger.info("EMA weights restored from %s.", path)
            else:
                logger.warning(
                    "Resumed at step %d without %s: the EMA restarts from the weights.", state.global_step, path
                )

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        self.ema.update(extract_model_from_parallel(kwargs["model"]), step=state.global_step)

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        if self.ema is not None and state.is_world_process_zero:
            folder = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
            os.makedirs(folder, exist_ok=True)
            weights = {k: v.detach().contiguous().cpu() for k, v in self.ema.module.state_dict().items()}
            save_file(weights, os.path.join(folder, EMA_WEIGHTS_NAME))

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        if self.as_final and self.ema is not None:
            model = extract_model_from_parallel(kwargs["model"])
            model.load_state_dict(self.ema.module.state_dict())
            logger.info("The EMA weights (decay %g) replace the trained ones.", self.decay)


def build_regularization(
    model: nn.Module, args: RegularizationArguments, random_init: bool = False
) -> tuple[list, list[TrainerCallback]]:
    """The regularizers and callbacks `RegularizationArguments` ask for.

    Args:
        model: The hf_transfer classifier, before training (its backbones' weights are L2-SP's starting point).
        args: The flags.
        random_init: The backbones were randomly initialised (L2-SP then fails).

    Returns:
        `(regularizers, callbacks)` for `TransferTrainer(regularizers=..., callbacks=...)`.
    """
    regularizers: list = []
    callbacks: list[TrainerCallback] = []
    if args.l2sp_weight > 0:
        regularizers.append(L2SPRegularizer(model, args.l2sp_weight, args.l2sp_head_weight, random_init=random_init))
    if args.bss_weight > 0:
        regularizers.append(BSSRegularizer(model, args.bss_weight, args.bss_k))
    if args.ema_decay > 0:
        callbacks.append(EMACallback(args.ema_decay, warmup=args.ema_warmup, as_final=args.ema_as_final))
    return regularizers, callbacks


__all__ = [
    "BSSRegularizer",
    "EMACallback",
    "L2SPRegularizer",
    "RegularizationArguments",
    "build_regularization",
]
