# Copyright 2026 The hf_transfer authors. Licensed under the Apache License, Version 2.0.
"""Fine-tuning that keeps what the source knew: L2-SP and BSS penalties, and an EMA of the weights.

- `L2SPRegularizer`: tllib's `SPRegularization` on the backbones, ½‖w − w₀‖² to the pretrained weights w₀, plus
  its `L2Regularization` ½‖w‖² on the head and the fusion (Li et al., ICML 2018). Weight decay must be off for the
  backbones (it would pull them to 0, not to w₀): `TransferTrainer` does it when given this regularizer.
- `BSSRegularizer`: tllib's `BatchSpectralShrinkage`, Σᵢ₌₁ᵏ σ₋ᵢ² of the batch's pooled features (the input of the
  head) (Chen et al., NeurIPS 2019).
- `CoTuningRegularizer`: Co-Tuning (You et al., NeurIPS 2020; tllib's `CoTuningLoss` and `Relationship`): the
  backbone's source classifier (e.g. its ImageNet head) reads the new head's features and is trained towards
  p(y_s | y_t), the source classes each target class looks like, learnt in one pass over the training set.
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
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from accelerate.utils import extract_model_from_parallel
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm
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
    co_tuning_weight: float = field(
        default=0.0,
        metadata={
            "help": "Co-Tuning: weight of the source classifier's loss towards p(y_s | y_t) (tllib: 2.3); 0 disables. "
            "Needs one timm backbone whose weights include its source classifier."
        },
    )
    ema_decay: float = field(
        default=0.0, metadata={"help": "EMA of the weights (timm ModelEmaV3) with this decay, e.g. 0.999; 0 disables."}
    )
    ema_warmup: bool = field(default=True, metadata={"help": "timm's EMA warm-up: decay 1-(1+step)^-2/3 early on."})
    ema_as_final: bool = field(
        default=True, metadata={"help": "Evaluate and save the EMA weights as the final model (else keep them aside)."}
    )

    def __post_init__(self):
        for name in ("l2sp_weight", "l2sp_head_weight", "bss_weight", "co_tuning_weight"):
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


class _HeadInput:
    """Keeps the input of the model's head (the pooled or fused features) from the last forward with gradients, for
    the regularizers that read it (BSS, Co-Tuning); `take()` hands it over once."""

    def __init__(self, head: nn.Module):
        self._features: torch.Tensor | None = None
        head.register_forward_hook(self._keep)

    def _keep(self, module: nn.Module, args: tuple, output: Any) -> None:
        self._features = args[0] if torch.is_grad_enabled() else None

    def take(self) -> torch.Tensor | None:
        features, self._features = self._features, None
        return features


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
        self._head_input = _HeadInput(whole.head)

    @staticmethod
    def penalty(features: torch.Tensor, k: int) -> torch.Tensor:
        """Σᵢ₌₁ᵏ σ₋ᵢ² of `features` (batch × dim)."""
        singular = torch.linalg.svdvals(features.float())  # descending
        return singular[-min(k, singular.numel()) :].pow(2).sum()

    def __call__(self, model: nn.Module) -> torch.Tensor:
        features = self._head_input.take()
        if features is None:
            raise RuntimeError("BSSRegularizer saw no features: call it after the model's forward in training.")
        return self.weight * self.penalty(features, self.k)


class CoTuningRegularizer:
    """weight · CE(p(y_s | y), softmax(source_head(f))) over a batch: Co-Tuning (You et al., NeurIPS 2020).

    The backbone's source classifier (e.g. its ImageNet head) reads the features `f` the new head reads, and its
    prediction over the source classes is pulled towards p(y_s | y_t = y), the mean source softmax over the training
    rows of the row's class y (tllib's `Relationship`, learnt by `learn_relationship` in one pass before training).
    The source's classes thus keep supervising the backbone. Unlike tllib, which also fine-tunes the source head at
    the backbone's learning rate, the source head stays fixed: the saved model is the plain classifier and the
    checkpoints hold nothing more (the head is rebuilt from the backbone's weights on resume).

    Args:
        model: The hf_transfer classifier with one backbone (a fusion's features are not the source head's input).
        source_head: The backbone's source classifier (`hf_transfer.modeling_transfer.source_classifier`).
        weight: The trade-off λ (tllib: 2.3).

    Raises:
        ValueError: Several backbones, a source head of another input width than the features, a negative weight.
    """

    needs_labels = True  # `TransferTrainer` passes the batch's labels

    def __init__(self, model: nn.Module, source_head: nn.Linear, weight: float = 2.3):
        if weight < 0:
            raise ValueError(f"Co-Tuning weight must be >= 0, got {weight}.")
        backbones, whole = _parts(model)
        if len(backbones) != 1:
            raise ValueError(
                f"Co-Tuning reads the source classifier of one backbone; this model fuses {len(backbones)}."
            )
        feature_dim = extract_model_from_parallel(model).transfer.feature_dim
        if source_head.in_features != feature_dim:
            raise ValueError(
                f"The source classifier reads {source_head.in_features} features but the backbone gives {feature_dim}"
                " (another pooling?): Co-Tuning needs the backbone's own pooled features."
            )
        self.weight = float(weight)
        self.source_head = source_head.eval().requires_grad_(False)
        self.num_labels = int(extract_model_from_parallel(model).config.num_labels)
        self.relationship: torch.Tensor | None = None  # (target classes, source classes)
        self._head_input = _HeadInput(whole.head)

    @torch.no_grad()
    def learn_relationship(
        self,
        model: nn.Module,
        dataset: Any,
        collate_fn: Any,
        batch_size: int = 64,
        device: torch.device | str | None = None,
        seed: int = 0,
    ) -> torch.Tensor:
        """p(y_s | y_t): the mean source softmax over the rows of each target class (tllib's `Relationship`).

        One pass over `dataset` in eval mode, as the fine-tune will see it (random augmentation included, drawn
        with `seed`, so that every process of a distributed run learns the same relationship).

        Raises:
            ValueError: A class without any row in `dataset`, or labels that are not class indices.
        """
        model = extract_model_from_parallel(model)
        device = torch.device(device) if device is not None else next(model.parameters()).device
        head = self.source_head.to(device)
        sums = torch.zeros(self.num_labels, head.out_features, dtype=torch.float64, device=device)
        counts = torch.zeros(self.num_labels, dtype=torch.long, device=device)
        was_training = model.training
        model.eval()
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                for start in tqdm(range(0, len(dataset), batch_size), desc="Co-Tuning relationship"):
                    batch = collate_fn([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
                    labels = batch.pop("labels").to(device)
                    if labels.dtype.is_floating_point or labels.dim() != 1:
                        raise ValueError(
                            f"Co-Tuning needs one class index per row (single-label classification); got labels of "
                            f"shape {tuple(labels.shape)} and dtype {labels.dtype}."
                        )
                    batch = {k: v.to(device) for k, v in batch.items() if isinstance(v, torch.Tensor)}
                    features = model.transfer(**batch).pooler_output
                    probs = F.softmax(head(features.float()), dim=-1).double()
                    sums.index_add_(0, labels, probs)
                    counts += torch.bincount(labels, minlength=self.num_labels)
        finally:
            model.train(was_training)
        empty = [int(c) for c in torch.nonzero(counts == 0).flatten()]
        if empty:
            raise ValueError(
                f"Co-Tuning learns p(y_s | y_t) from the training rows of each class; classes {empty} have none."
            )
        self.relationship = (sums / counts[:, None]).float().cpu()
        return self.relationship

    @staticmethod
    def loss(source_logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """tllib's `CoTuningLoss`: −Σ_s target_s · log softmax(source_logits)_s, averaged over the batch."""
        return -(target * F.log_softmax(source_logits.float(), dim=-1)).sum(-1).mean()

    def __call__(self, model: nn.Module, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.relationship is None:
            raise RuntimeError("CoTuningRegularizer.learn_relationship(...) must run before training.")
        features = self._head_input.take()
        if features is None or labels is None:
            raise RuntimeError("Co-Tuning needs the batch's features and labels: use it with TransferTrainer.")
        head = self.source_head.to(features.device)
        target = self.relationship.to(features.device)[labels.to(features.device)]
        return self.weight * self.loss(head(features), target)


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


def _co_tuning_source_head(model: nn.Module, backbones: Sequence[Any] | None, random_init: bool) -> nn.Linear:
    from hf_transfer.modeling_transfer import source_classifier

    if random_init:
        raise ValueError("Co-Tuning reads the backbone's source classifier, but --random_init gives it none.")
    if not backbones:
        raise ValueError(
            "Co-Tuning needs the backbone the classifier is built from (--backbone), whose weights include its "
            "source classifier; a trained classifier (--model_name_or_path) has only its own head."
        )
    if len(backbones) != 1:
        raise ValueError(f"Co-Tuning reads the source classifier of one backbone; got {len(backbones)}.")
    spec = backbones[0]
    head = source_classifier(spec.name, spec.weights, spec.pretrained)
    if head is None:
        raise ValueError(
            f"Co-Tuning needs the source classifier of {spec.name!r} (a timm model whose weights include its head, "
            "e.g. ImageNet's, or a saved single-backbone hf_transfer classifier with a linear head), and none could "
            f"be loaded (weights: {spec.weights or 'timm pretrained'})."
        )
    backbone_modules, _ = _parts(model)
    if not any(p.requires_grad for p in backbone_modules.parameters()):
        raise ValueError("Co-Tuning trains the backbone through its source classifier; the backbone is frozen.")
    return head


def build_regularization(
    model: nn.Module, args: RegularizationArguments, random_init: bool = False, backbones: Sequence[Any] | None = None
) -> tuple[list, list[TrainerCallback]]:
    """The regularizers and callbacks `RegularizationArguments` ask for.

    Args:
        model: The hf_transfer classifier, before training (its backbones' weights are L2-SP's starting point).
        args: The flags.
        random_init: The backbones were randomly initialised (L2-SP and Co-Tuning then fail).
        backbones: The `BackboneSpec`s the model was built from, where Co-Tuning finds the source classifier.

    Returns:
        `(regularizers, callbacks)` for `TransferTrainer(regularizers=..., callbacks=...)`. A Co-Tuning regularizer
        still needs its `learn_relationship(...)` on the training data.

    Raises:
        ValueError: Co-Tuning without a source classifier to be had (random init, a trained classifier, several
            backbones, a backbone whose weights do not include its head), or with frozen backbones.
    """
    regularizers: list = []
    callbacks: list[TrainerCallback] = []
    if args.l2sp_weight > 0:
        regularizers.append(L2SPRegularizer(model, args.l2sp_weight, args.l2sp_head_weight, random_init=random_init))
    if args.bss_weight > 0:
        regularizers.append(BSSRegularizer(model, args.bss_weight, args.bss_k))
    if args.co_tuning_weight > 0:
        regularizers.append(
            CoTuningRegularizer(model, _co_tuning_source_head(model, backbones, random_init), args.co_tuning_weight)
        )
    if args.ema_decay > 0:
        callbacks.append(EMACallback(args.ema_decay, warmup=args.ema_warmup, as_final=args.ema_as_final))
    return regularizers, callbacks


__all__ = [
    "BSSRegularizer",
    "CoTuningRegularizer",
    "EMACallback",
    "L2SPRegularizer",
    "RegularizationArguments",
    "build_regularization",
]
