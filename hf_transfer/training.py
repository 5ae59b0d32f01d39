# Copyright 2026 The hf_transfer authors. Licensed under the Apache License, Version 2.0.
"""Training beyond plain fine-tuning, as pieces that plug into the transformers `Trainer`.

- Layer-wise learning-rate decay and a head learning-rate multiplier: `param_groups_layer_decay`, used by
  `TransferTrainer` for any `--optim` whose optimizer takes parameter groups.
- Gradual unfreezing: `GradualUnfreezingCallback` trains the head first, then unfreezes the backbone's layer groups
  from the top.
- Knowledge distillation: a `Distiller` owns the teacher and the loss; `DistillationTrainer` calls it.

Example:
    ```python
    >>> from hf_transfer import TransferForImageClassification
    >>> from hf_transfer.training import GradualUnfreezingCallback, TransferTrainer
    >>> model = TransferForImageClassification.from_backbones("timm:test_resnet", pretrained=False, num_labels=2)
    >>> trainer = TransferTrainer(
    ...     model=model,
    ...     args=training_args,
    ...     train_dataset=train_dataset,
    ...     layer_decay=0.75,
    ...     head_lr_multiplier=10.0,
    ...     callbacks=[GradualUnfreezingCallback(frozen_for=1, interval=1, groups_per_stage=1)],
    ... )
    ```
"""

import fnmatch
import inspect
import logging
import math
from collections.abc import Collection, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from accelerate.utils import extract_model_from_parallel
from torch import nn
from transformers import PreTrainedModel, Trainer, TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_optimizer import is_optimizer_factory

from .inputs import IMAGE_INPUT, DataConfig, backbone_input_names
from .modeling_transfer import TimmBackbone, TransferModel, TransferPreTrainedModel

logger = logging.getLogger(__name__)

UNFREEZING_UNITS = ("epoch", "step")
# Optimizer kwargs with which `get_optimizer_cls_and_kwargs` replaces the parameter groups (GaLore, LOMO, layer-wise).
_OWN_PARAMETER_KWARGS = ("params", "model", "optimizer_dict")


def _unwrap(model: nn.Module) -> nn.Module:
    """The model inside DDP / `torch.compile` wrappers (DDP shares its parameters with the wrapper)."""
    return extract_model_from_parallel(model)


def _transfer_model(model: nn.Module) -> TransferModel | None:
    """The `TransferModel` (backbones and fusion) of an hf_transfer model, or None for any other model."""
    model = _unwrap(model)
    return model.get_base_model() if isinstance(model, TransferPreTrainedModel) else None


def _world_size() -> int:
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    return torch.distributed.get_world_size() if distributed else 1


def _check_layer_decay_options(layer_decay: float, head_lr_multiplier: float) -> None:
    if not 0.0 < layer_decay <= 1.0:
        raise ValueError(f"layer_decay must be in (0, 1] (1 means no decay), got {layer_decay}.")
    if not head_lr_multiplier > 0.0:
        raise ValueError(f"head_lr_multiplier must be > 0, got {head_lr_multiplier}.")


# --------------------------------------------------------------------------------------------------------------------
# Layer-wise learning-rate decay
# --------------------------------------------------------------------------------------------------------------------


def _no_weight_decay_ids(model: nn.Module, transfer: TransferModel, patterns: Collection[str]) -> set[int]:
    """Parameters without weight decay: 1-D ones (biases, norm weights, scales), the names a timm backbone lists in
    `no_weight_decay()` (position embeddings, class tokens) and names matching `patterns`."""
    excluded = {id(p) for name, p in model.named_parameters() if p.ndim <= 1 or _matches(name, patterns)}
    for backbone in transfer.backbones:
        if isinstance(backbone, TimmBackbone) and hasattr(backbone.model, "no_weight_decay"):
            declared = backbone.model.no_weight_decay()
            excluded |= {id(p) for name, p in backbone.model.named_parameters() if _matches(name, declared)}
    return excluded


def _matches(name: str, patterns: Collection[str]) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in patterns)


def param_groups_layer_decay(
    model: nn.Module,
    learning_rate: float,
    weight_decay: float,
    layer_decay: float,
    head_lr_multiplier: float = 1.0,
    no_weight_decay: Collection[str] = (),
    include_frozen: bool = False,
) -> list[dict[str, Any]]:
    """Optimizer parameter groups with layer-wise learning-rate decay, a head multiplier and no decay on 1-D weights.

    The convention is timm's `param_groups_layer_decay` (BEiT's): the head and the fusion are the top layer, and
    layer group `k` of a backbone with `K` groups (`backbone.layer_groups()`, from the input up) is `K - k` layers
    below it. So backbone group `k` trains at `learning_rate * layer_decay ** (K - k)` (its top group at
    `learning_rate * layer_decay`), and the head and fusion at `learning_rate * head_lr_multiplier`. Each backbone of
    a fused model decays over its own groups. The groups are the ones freezing uses: for a ViT they are timm's
    (embeddings, each block, final norm); for a ResNet they are its stages, where timm decays per block.

    Weight decay is `weight_decay` except for 1-D parameters (biases and norm weights, as the Trainer's
    `get_decay_parameter_names`, and also BatchNorm weights and scales), the parameters a timm backbone lists in
    `no_weight_decay()`, and names matching `no_weight_decay`.

    Every group stores its `lr_scale` next to `lr`. Schedulers built on the optimizer (the Trainer's `LambdaLR`s)
    multiply each group's initial `lr`, so the scales hold throughout training. Groups are ordered from the head
    down, so the learning rate the Trainer logs (the first group's) is the head's.

    Args:
        model: An hf_transfer model (`TransferForClassification` or `TransferModel`), possibly wrapped (DDP).
        learning_rate: The base learning rate (the Trainer's `--learning_rate`).
        weight_decay: Weight decay of the parameters that take it.
        layer_decay: Multiplier per layer group going down from the head, in (0, 1]; 1 gives every group
            `learning_rate`.
        head_lr_multiplier: Multiplier of the head's and the fusion's learning rate (e.g. 10 for a new head on a
            pretrained backbone).
        no_weight_decay: Parameter-name patterns (`fnmatch`, names as in `model.named_parameters()`) that get no
            weight decay.
        include_frozen: Also put parameters that do not require gradients into the groups (for gradual unfreezing;
            optimizers skip parameters without a gradient and create their state lazily).

    Returns:
        A list of parameter-group dicts (`params`, `lr`, `lr_scale`, `weight_decay`, `name`) for any
        `torch.optim.Optimizer`.

    Raises:
        ValueError: If `layer_decay` is not in (0, 1] or `head_lr_multiplier` is not positive.
        TypeError: If `model` is not an hf_transfer model.

    Example:
        ```python
        >>> groups = param_groups_layer_decay(model, 1e-3, weight_decay=0.05, layer_decay=0.75, head_lr_multiplier=10)
        >>> optimizer = torch.optim.AdamW(groups)
        ```
    """
    _check_layer_decay_options(layer_decay, head_lr_multiplier)
    model = _unwrap(model)
    transfer = _transfer_model(model)
    if transfer is None:
        raise TypeError(
            f"param_groups_layer_decay needs an hf_transfer model (its backbones' layer groups), got "
            f"{type(model).__name__}."
        )
    # (layer name, lr scale, rank) per parameter; the rank orders groups from the head down.
    layers: dict[int, tuple[str, float, tuple[int, int]]] = {}
    for index, backbone in enumerate(transfer.backbones):
        parameters = dict(backbone.named_parameters())
        groups = backbone.layer_groups()
        top = len(groups)
        for name in parameters:  # anything outside the layer groups counts as the backbone's top group
            layers[id(parameters[name])] = (f"backbone{index}.group{top - 1}", layer_decay, (index + 1, 1))
        for k, names in enumerate(groups):
            for name in names:
                layers[id(parameters[name])] = (
                    f"backbone{index}.group{k}",
                    layer_decay ** (top - k),
                    (index + 1, top - k),
                )
    no_decay = _no_weight_decay_ids(model, transfer, no_weight_decay)

    param_groups: dict[str, dict[str, Any]] = {}
    ranks: dict[str, tuple] = {}
    for _, parameter in model.named_parameters():
        if not (parameter.requires_grad or include_frozen):
            continue
        layer, scale, rank = layers.get(id(parameter), ("head", head_lr_multiplier, (0, 0)))
        decay = 0.0 if id(parameter) in no_decay else weight_decay
        key = f"{layer}.{'decay' if decay else 'no_decay'}"
        if key not in param_groups:
            param_groups[key] = {
                "params": [],
                "lr": learning_rate * scale,
                "lr_scale": scale,
                "weight_decay": decay,
                "name": key,
            }
            ranks[key] = (*rank, decay == 0.0)
        param_groups[key]["params"].append(parameter)
    return [param_groups[key] for key in sorted(param_groups, key=ranks.__getitem__)]


def freeze_batch_norm_statistics(model: nn.Module) -> None:
    """Keeps every BatchNorm layer of an hf_transfer model's backbones in eval mode in training from now on.

    Args:
        model: An hf_transfer model (possibly wrapped by DDP; LoRA adapters are injected in place).

    Raises:
        TypeError: Another model.
        ValueError: The backbones have no BatchNorm layer.
    """
    transfer = _transfer_model(model)
    if transfer is None:
        raise TypeError(f"freeze_bn_stats needs an hf_transfer model, got {type(_unwrap(model)).__name__}.")
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in transfer.backbones.modules()):
        kinds = ", ".join(sorted({type(b).__name__ for b in transfer.backbones}))
        raise ValueError(
            f"freeze_bn_stats: the backbones ({kinds}) have no BatchNorm layer, so it would change nothing; leave it "
            "off (LayerNorm and GroupNorm keep no running statistics)."
        )
    for backbone in transfer.backbones:
        backbone.freeze_bn_stats = True
    if model.training:
        model.train()  # applies it now as well as at every step


class TransferTrainer(Trainer):
    """A `Trainer` whose optimizer has layer-wise learning-rate decay and a head learning-rate multiplier.

    The optimizer is whatever `--optim` names (`Trainer.get_optimizer_cls_and_kwargs`), built on the parameter groups
    of `param_groups_layer_decay`. With a `GradualUnfreezingCallback` among the callbacks, frozen parameters are put
    in the optimizer up front, so that unfreezing needs no change to the optimizer or the scheduler. Under DDP the
    groups hold the unwrapped model's parameters, which DDP shares (not tested with FSDP or DeepSpeed).

    Models other than hf_transfer ones (e.g. a plain transformers classifier) get the `Trainer`'s own optimizer.

    Args:
        *args: `Trainer` arguments.
        layer_decay: Learning-rate multiplier per layer group going down from the head, in (0, 1].
        head_lr_multiplier: Multiplier of the head's and the fusion's learning rate.
        no_weight_decay: Parameter-name patterns that get no weight decay (besides biases and norm weights).
        regularizers: Callables `regularizer(model) -> loss term` added to the training loss
            (`hf_transfer.regularization.L2SPRegularizer`, `BSSRegularizer`).
        freeze_bn_stats: Keep every BatchNorm layer of the backbones in eval mode while training (running statistics
            of the source kept, scale and shift still trained): few-label fine-tuning with small batches otherwise
            overwrites them.
        **kwargs: `Trainer` keyword arguments.

    Raises:
        TypeError: `freeze_bn_stats` with a model other than an hf_transfer one.
        ValueError: `freeze_bn_stats` with backbones that have no BatchNorm layer (it would change nothing).

    Example:
        ```python
        >>> trainer = TransferTrainer(model=model, args=args, train_dataset=train, layer_decay=0.75, head_lr_multiplier=10)
        >>> trainer.train()
        ```
    """

    # Whether the regularizers that read the batch's class indices (Co-Tuning) get them from this trainer's loss.
    labels_for_regularizers = True

    def __init__(
        self,
        *args: Any,
        layer_decay: float = 1.0,
        head_lr_multiplier: float = 1.0,
        no_weight_decay: Collection[str] = (),
        regularizers: Sequence[Any] = (),
        freeze_bn_stats: bool = False,
        **kwargs: Any,
    ):
        _check_layer_decay_options(layer_decay, head_lr_multiplier)
        self.layer_decay = layer_decay
        self.head_lr_multiplier = head_lr_multiplier
        # Loss terms `regularizer(model) -> tensor` (hf_transfer.regularization); a regularizer that pulls weights
        # to other values than 0 (L2-SP) names the parameters weight decay must leave alone.
        self.regularizers = list(regularizers)
        needs_labels = [type(r).__name__ for r in self.regularizers if getattr(r, "needs_labels", False)]
        if needs_labels and not self.labels_for_regularizers:
            raise ValueError(
                f"{', '.join(needs_labels)} reads each row's class, which {type(self).__name__} does not give it "
                "(mixed or unlabelled rows); use it with TransferTrainer or DistillationTrainer."
            )
        for regularizer in self.regularizers:
            no_weight_decay = (*no_weight_decay, *getattr(regularizer, "backbone_parameter_patterns", tuple)())
        self.no_weight_decay = tuple(no_weight_decay)
        super().__init__(*args, **kwargs)
        self.freeze_bn_stats = freeze_bn_stats
        if freeze_bn_stats:
            freeze_batch_norm_statistics(self.model)

    def call_model_init(self, trial: Any = None) -> nn.Module:
        """`Trainer.call_model_init` (a new model per hyperparameter-search trial), with `freeze_bn_stats` applied."""
        model = super().call_model_init(trial)
        if getattr(self, "freeze_bn_stats", False):  # the Trainer calls it from __init__, before the option is set
            freeze_batch_norm_statistics(model)
        return model

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, Any]:
        """The Trainer's loss, plus the regularizers' terms in training."""
        labels = inputs.get("labels")  # the Trainer pops them with label smoothing; Co-Tuning reads them
        result = super().compute_loss(
            model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
        )
        if not (self.regularizers and model.training):
            return result
        loss, outputs = result if return_outputs else (result, None)
        loss = loss + self.regularization_loss(model, labels)
        return (loss, outputs) if return_outputs else loss

    def regularization_loss(self, model: nn.Module, labels: torch.Tensor | None = None) -> torch.Tensor | float:
        """The regularizers' terms (L2-SP, BSS, Co-Tuning) of a training step, for every subclass's own loss; 0
        without any. Regularizers with `needs_labels` (Co-Tuning) also get the batch's labels."""
        return sum(
            (
                regularizer(model, labels) if getattr(regularizer, "needs_labels", False) else regularizer(model)
                for regularizer in self.regularizers
            ),
            0.0,
        )

    def _unfreezing_callback(self) -> "GradualUnfreezingCallback | None":
        return next((c for c in self.callback_handler.callbacks if isinstance(c, GradualUnfreezingCallback)), None)

    def create_optimizer(self, model: nn.Module | None = None) -> torch.optim.Optimizer:
        """Builds the `--optim` optimizer on `param_groups_layer_decay` groups (mirrors `Trainer.create_optimizer`).

        Args:
            model: The model to optimize (the Trainer passes the wrapped one when it delays optimizer creation).

        Returns:
            The optimizer, also stored in `self.optimizer`.

        Raises:
            TypeError: If layer decay, a head multiplier or gradual unfreezing is asked for a non-hf_transfer model.
            ValueError: If they are asked with an `--optim` that builds its own parameter groups (GaLore, LOMO, ...).
        """
        if self.optimizer is not None:
            return super().create_optimizer(model)
        opt_model = self.model if model is None else model
        include_frozen = self._unfreezing_callback() is not None
        customised = (
            self.layer_decay != 1.0 or self.head_lr_multiplier != 1.0 or bool(self.no_weight_decay) or include_frozen
        )
        if _transfer_model(opt_model) is None:
            if customised:
                raise TypeError(
                    f"layer_decay, head_lr_multiplier and gradual unfreezing need an hf_transfer model; "
                    f"{type(_unwrap(opt_model)).__name__} has no backbone layer groups."
                )
            return super().create_optimizer(model)

        if self.optimizer_cls_and_kwargs is not None:
            optimizer_cls, optimizer_kwargs = self.optimizer_cls_and_kwargs
        else:
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
        optimizer_kwargs = dict(optimizer_kwargs)
        if is_optimizer_factory(optimizer_cls) or any(key in optimizer_kwargs for key in _OWN_PARAMETER_KWARGS):
            if customised:
                raise ValueError(
                    f"optim={self.args.optim!r} builds its own parameter groups, so layer_decay, head_lr_multiplier "
                    "and gradual unfreezing cannot apply; use an optimizer that takes parameter groups "
                    "(adamw_torch, sgd, rmsprop, adafactor, ...)."
                )
            return super().create_optimizer(model)

        groups = param_groups_layer_decay(
            opt_model,
            self.args.learning_rate,
            self.args.weight_decay,
            self.layer_decay,
            self.head_lr_multiplier,
            self.no_weight_decay,
            include_frozen=include_frozen,
        )
        self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        return super().create_optimizer(model)  # returns `self.optimizer` (SageMaker MP wraps it there)


# --------------------------------------------------------------------------------------------------------------------
# Gradual unfreezing
# --------------------------------------------------------------------------------------------------------------------


class GradualUnfreezingCallback(TrainerCallback):
    """Trains the head with the backbones frozen, then unfreezes their layer groups from the top, stage by stage.

    The schedule is a function of training progress (epochs or optimizer steps): during the first `frozen_for`
    units only the head (and the fusion) train; then every `interval` units `groups_per_stage` more layer groups of
    each backbone become trainable, from the top down, until all of them (or `max_trainable_groups`) are. Because it
    depends on progress alone, a run resumed from a checkpoint continues at the right stage.

    Optimizer state: use `TransferTrainer`, which puts the frozen parameters in the optimizer up front (with their
    layer-decayed learning rates). A frozen parameter never has a gradient, so the optimizer skips it and creates no
    state for it until it is unfrozen; then unfreezing is only `requires_grad_(True)`, and the scheduler, the
    optimizer's parameter groups and checkpoints keep the same shape throughout. While a backbone is wholly frozen
    it still runs without an autograd graph, and BatchNorm layers of frozen groups stay in eval mode (their running
    statistics do not move).

    Under DDP, parameters frozen when the model was wrapped are not in DDP's reducer: once unfrozen, their gradients
    are averaged across processes by a hook at the last micro-batch of each optimizer step. Pass the callback to the
    Trainer's constructor (`callbacks=[...]`) so that the backbones are frozen before the model is wrapped.
    DeepSpeed and FSDP are not supported.

    The callback records each backbone's current freezing with `model.config.set_backbone_freeze`, so a saved
    checkpoint reloads with the freezing it was saved with.

    Args:
        frozen_for: How long only the head trains, in `unit`s (0 unfreezes the first stage at once).
        interval: How long each stage lasts, in `unit`s.
        groups_per_stage: Layer groups unfrozen per stage, per backbone.
        max_trainable_groups: Stop once this many groups of each backbone are trainable (None: all of them).
        unit: `"epoch"` (fractional values allowed) or `"step"` (optimizer steps, whole numbers).
        backbones: Indices of the backbones to unfreeze gradually (None: all); the others are left as they are.

    Raises:
        ValueError: For a schedule that makes no sense, naming the value and the valid range.

    Example:
        ```python
        >>> unfreezing = GradualUnfreezingCallback(frozen_for=1, interval=1, groups_per_stage=2)
        >>> trainer = TransferTrainer(model=model, args=args, train_dataset=train, callbacks=[unfreezing])
        ```
    """

    def __init__(
        self,
        frozen_for: float = 1,
        interval: float = 1,
        groups_per_stage: int = 1,
        max_trainable_groups: int | None = None,
        unit: str = "epoch",
        backbones: Sequence[int] | None = None,
    ):
        if unit not in UNFREEZING_UNITS:
            raise ValueError(f"Unknown unit {unit!r}; valid values are: {', '.join(UNFREEZING_UNITS)}.")
        if not frozen_for >= 0:
            raise ValueError(f"frozen_for must be >= 0 {unit}s, got {frozen_for}.")
        if not interval > 0:
            raise ValueError(f"interval must be > 0 {unit}s, got {interval}.")
        if unit == "step" and (frozen_for != int(frozen_for) or interval != int(interval)):
            raise ValueError(
                f"With unit='step', frozen_for and interval must be whole steps, got {frozen_for}, {interval}."
            )
        if not (isinstance(groups_per_stage, int) and groups_per_stage >= 1):
            raise ValueError(f"groups_per_stage must be an integer >= 1, got {groups_per_stage!r}.")
        if max_trainable_groups is not None and not (
            isinstance(max_trainable_groups, int) and max_trainable_groups >= 1
        ):
            raise ValueError(
                f"max_trainable_groups must be an integer >= 1 or None (all groups), got {max_trainable_groups!r}; "
                "for a backbone that never trains use freeze='backbone' without this callback."
            )
        self.frozen_for = frozen_for
        self.interval = interval
        self.groups_per_stage = groups_per_stage
        self.max_trainable_groups = max_trainable_groups
        self.unit = unit
        self.backbones = None if backbones is None else list(backbones)
        self._num_groups: dict[int, int] = {}  # selected backbone index -> its number of layer groups
        self._trainable: dict[int, int] = {}  # selected backbone index -> trainable groups now
        # Ids of parameters whose gradients are averaged across processes (by DDP or a hook of ours); None until
        # `on_train_begin` knows what DDP registered.
        self._synced: set[int] | None = None
        self._hooks: list = []

    def trainable_groups(self, progress: float, num_groups: int) -> int:
        """How many of a backbone's `num_groups` layer groups (from the top) train at `progress` `unit`s."""
        if progress < self.frozen_for:
            return 0
        stages = 1 + math.floor((progress - self.frozen_for) / self.interval + 1e-9)
        limit = num_groups if self.max_trainable_groups is None else min(self.max_trainable_groups, num_groups)
        return min(stages * self.groups_per_stage, limit)

    def _selected(self, transfer: TransferModel) -> list[int]:
        count = len(transfer.backbones)
        selected = list(range(count)) if self.backbones is None else self.backbones
        bad = [i for i in selected if not (isinstance(i, int) and 0 <= i < count)]
        if bad:
            raise ValueError(
                f"backbones {bad} out of range: the model has {count} backbone(s), indices 0..{count - 1}."
            )
        return selected

    def _progress(self, state: TrainerState) -> float:
        return float(state.global_step) if self.unit == "step" else float(state.epoch or 0.0)

    def _apply(self, model: nn.Module, progress: float) -> None:
        """Sets every selected backbone's trainable groups for `progress` (cheap when nothing changes)."""
        transfer = _transfer_model(model)
        if not self._num_groups:
            self._num_groups = {i: len(transfer.backbones[i].layer_groups()) for i in self._selected(transfer)}
        changed = False
        for index, num_groups in self._num_groups.items():
            trainable = self.trainable_groups(progress, num_groups)
            if self._trainable.get(index) == trainable:
                continue
            transfer.set_trainable_groups(index, trainable_from=num_groups - trainable)
            self._trainable[index] = trainable
            frozen = num_groups - trainable
            transfer.config.set_backbone_freeze(index, "backbone" if trainable == 0 else (frozen or "none"))
            changed = True
            logger.info(
                "Gradual unfreezing at %s %g: backbone %d trains its top %d of %d layer groups.",
                self.unit,
                progress,
                index,
                trainable,
                num_groups,
            )
        if changed and self._synced is not None and _world_size() > 1:
            self._hook_gradient_sync(model)

    def _hook_gradient_sync(self, model: nn.Module) -> None:
        """Averages across processes the gradients of parameters unfrozen after DDP built its reducer."""
        from accelerate.state import GradientState

        world_size = _world_size()

        def average(parameter: torch.Tensor) -> None:
            if GradientState().sync_gradients:  # the micro-batch where DDP reduces its own buckets
                parameter.grad.div_(world_size)
                torch.distributed.all_reduce(parameter.grad)

        for parameter in model.parameters():
            if parameter.requires_grad and id(parameter) not in self._synced:
                self._hooks.append(parameter.register_post_accumulate_grad_hook(average))
                self._synced.add(id(parameter))

    def on_init_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        """Freezes the selected backbones before the Trainer wraps the model or builds the optimizer."""
        model = kwargs.get("model")
        if model is None:  # `model_init`: the model is built at `train()`
            return
        if _transfer_model(model) is None:
            raise TypeError(f"GradualUnfreezingCallback needs an hf_transfer model, got {type(model).__name__}.")
        self._apply(model, 0.0)

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        """Checks the schedule, the optimizer and the parallelism, and applies the stage of the (resumed) progress."""
        model, optimizer = kwargs["model"], kwargs["optimizer"]
        transfer = _transfer_model(model)
        if transfer is None:
            raise TypeError(f"GradualUnfreezingCallback needs an hf_transfer model, got {type(model).__name__}.")
        if args.deepspeed or args.fsdp:
            raise ValueError(
                "GradualUnfreezingCallback supports single-process and DDP training, not DeepSpeed or FSDP."
            )
        length = state.max_steps if self.unit == "step" else state.num_train_epochs
        if self.frozen_for >= length:
            raise ValueError(
                f"frozen_for={self.frozen_for} {self.unit}s but training lasts {length} {self.unit}s: nothing would "
                "ever be unfrozen. Lower frozen_for, or train a linear probe with freeze='backbone' instead."
            )
        # What requires grad now is what DDP (if any) registered when it wrapped the model.
        trainable_at_wrap = {id(p) for p in model.parameters() if p.requires_grad}
        self._synced = set(trainable_at_wrap)
        self._hooks = []
        self._num_groups, self._trainable = {}, {}
        self._apply(model, self._progress(state))
        if _world_size() > 1:
            refrozen = [n for n, p in model.named_parameters() if id(p) in trainable_at_wrap and not p.requires_grad]
            if refrozen:
                raise ValueError(
                    f"GradualUnfreezingCallback froze {len(refrozen)} parameters (e.g. {refrozen[0]}) after DDP "
                    "registered them. Pass the callback in Trainer(callbacks=[...]) rather than add_callback(), or "
                    "build the model with freeze='backbone'."
                )
        in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
        missing = [
            name
            for index in self._selected(transfer)
            for name, p in transfer.backbones[index].named_parameters()
            if id(p) not in in_optimizer
        ]
        if missing:
            raise ValueError(
                f"The optimizer does not hold {len(missing)} backbone parameters that GradualUnfreezingCallback will "
                f"unfreeze (e.g. {missing[0]}), so they would never be updated. Train with "
                "hf_transfer.training.TransferTrainer, which puts frozen parameters in the optimizer when this "
                "callback is present (and pass no optimizer of your own)."
            )
        eager = [p for p in model.parameters() if not p.requires_grad and p in optimizer.state]
        if eager:
            logger.warning(
                "%s created state for %d frozen parameters up front (it does not create it lazily).",
                type(getattr(optimizer, "optimizer", optimizer)).__name__,
                len(eager),
            )

    def on_step_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        """Unfreezes the next groups when a stage begins (before the step's first forward)."""
        self._apply(kwargs["model"], self._progress(state))

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        for handle in self._hooks:
            handle.remove()
        self._hooks = []
        self._synced = None


# --------------------------------------------------------------------------------------------------------------------
# Knowledge distillation
# --------------------------------------------------------------------------------------------------------------------


def _input_names(model: nn.Module) -> list[str]:
    """The input keys a classifier reads: an hf_transfer model's backbone inputs, else its `forward` arguments."""
    transfer = _transfer_model(model)
    if transfer is not None:
        return transfer.input_names()
    skip = {"labels", "return_dict", "output_attentions", "output_hidden_states", "kwargs"}
    parameters = inspect.signature(model.forward).parameters.values()
    return [p.name for p in parameters if p.name not in skip and p.kind is not inspect.Parameter.VAR_KEYWORD]


def _named_labels(config: Any) -> list[str] | None:
    """`id2label` values in order, or None when they are the generic `LABEL_i`."""
    id2label = getattr(config, "id2label", None) or {}
    names = [id2label[i] for i in sorted(id2label)]
    return None if names == [f"LABEL_{i}" for i in range(len(names))] else names


def _image_data_configs(config: Any) -> dict[str, DataConfig]:
    """`pixel_values{suffix}` → the timm data config of that input, for an hf_transfer model's config (empty for
    any other model's)."""
    return {
        backbone_input_names(entry)[0]: dict(entry["data_config"])
        for entry in getattr(config, "backbones", None) or []
        if entry["modality"] == "image"
    }


class _RenormalizedPixels:
    """The student's normalized pixels → a teacher input: normalization undone, resized to the teacher's input size
    with its interpolation, normalized with the teacher's mean and std; on the pixels' device and dtype."""

    def __init__(self, student: dict, teacher: dict):
        self.student_mean, self.student_std = student["mean"], student["std"]
        self.mean, self.std = teacher["mean"], teacher["std"]
        self.size = [int(s) for s in teacher["input_size"][-2:]]
        self.mode = "bicubic" if teacher.get("interpolation") == "bicubic" else "bilinear"

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        def channels(values):
            return torch.tensor(values, device=pixels.device, dtype=pixels.dtype).view(1, -1, 1, 1)

        pixels = pixels * channels(self.student_std) + channels(self.student_mean)
        if list(pixels.shape[-2:]) != self.size:
            pixels = F.interpolate(pixels, self.size, mode=self.mode, antialias=True)
        return (pixels - channels(self.mean)) / channels(self.std)


class Distiller:
    """Owns a teacher classifier and the logit-distillation loss; hides the teacher's inputs and device.

    loss = α · task_loss(student, labels) + (1 − α) · T² · KL(softmax(teacher / T) ‖ softmax(student / T))

    The task loss is the student's own (cross-entropy for single-label classification). The teacher runs in eval
    mode, without gradients, on the student's device. It reads the student's inputs; an image input the teacher
    preprocesses unlike the student (another size, interpolation, mean or std: a fused ResNet-18 + VGG16 teacher's
    `pixel_values_1`) is made on the device from the student's `pixel_values`, as timm's `DistillationTeacher`
    normalizes its inputs: the student's normalization undone, resized to the teacher's input size, normalized
    with the teacher's mean and std (see `match_student`).

    Args:
        teacher: A classifier whose output has `.logits`: an hf_transfer model or any transformers
            `...ForImageClassification` / `...ForSequenceClassification`.
        alpha: Weight α of the task loss, in [0, 1] (0: distillation only, labels optional; 1: plain training).
        temperature: Softmax temperature T > 0 (typically 1 to 4).

    Raises:
        ValueError: If `alpha` is not in [0, 1] or `temperature` is not positive.

    Example:
        ```python
        >>> distiller = Distiller(teacher, alpha=0.5, temperature=2.0)
        >>> trainer = DistillationTrainer(model=student, args=args, train_dataset=train, distiller=distiller)
        ```
    """

    def __init__(self, teacher: PreTrainedModel, alpha: float = 0.5, temperature: float = 2.0):
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha (the weight of the task loss) must be in [0, 1], got {alpha}.")
        if not temperature > 0.0:
            raise ValueError(f"temperature must be > 0, got {temperature}.")
        if not isinstance(teacher, nn.Module):
            raise TypeError(f"The teacher must be a model (nn.Module), got {type(teacher).__name__}.")
        self.teacher = teacher.eval().requires_grad_(False)
        self.alpha = float(alpha)
        self.temperature = float(temperature)
        self.input_names = _input_names(teacher)
        self.derived_inputs: dict[str, _RenormalizedPixels] = {}  # see `match_student`

    def check_student(self, student: nn.Module) -> None:
        """Fails early when the student's classes differ from the teacher's.

        Raises:
            ValueError: If the number of labels or the named labels differ, or the student is not a single-label
                classifier.
        """
        student_config = getattr(_unwrap(student), "config", None)
        teacher_config = getattr(self.teacher, "config", None)
        if student_config is None or teacher_config is None:
            return
        if student_config.num_labels != teacher_config.num_labels:
            raise ValueError(
                f"The teacher ({type(self.teacher).__name__}) predicts {teacher_config.num_labels} classes and the "
                f"student {student_config.num_labels}; logit distillation needs the same classes in the same order."
            )
        student_names, teacher_names = _named_labels(student_config), _named_labels(teacher_config)
        if student_names and teacher_names and student_names != teacher_names:
            raise ValueError(
                f"The teacher's classes {teacher_names} differ from the student's {student_names}; logit "
                "distillation needs the same classes in the same order."
            )
        problem_type = getattr(student_config, "problem_type", None)
        if problem_type not in (None, "single_label_classification"):
            raise ValueError(
                f"Logit distillation (softmax KL) needs single-label classification, the student's problem_type is "
                f"{problem_type!r}."
            )

    def match_student(self, student: nn.Module) -> None:
        """Checks the student's classes (`check_student`) and prepares, for each image input the teacher reads
        preprocessed unlike the student, how to make it from the student's `pixel_values`.

        Only hf_transfer models say how they preprocess (`config.backbones[i]["data_config"]`); any other teacher or
        student reads the student's inputs as they are.
        """
        self.check_student(student)
        student_configs = _image_data_configs(getattr(_unwrap(student), "config", None))
        teacher_configs = _image_data_configs(getattr(self.teacher, "config", None))
        source = student_configs.get(IMAGE_INPUT)
        self.derived_inputs = {
            key: _RenormalizedPixels(source, config)
            for key, config in teacher_configs.items()
            if source is not None and student_configs.get(key) != config
        }

    def teacher_inputs(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """The teacher's inputs for a batch of the student's: the keys it reads, and the image inputs it
        preprocesses its own way made from the student's `pixel_values` on their device (see `match_student`).

        Returns:
            The teacher's keyword arguments (never `labels`).
        """
        teacher = {k: v for k, v in inputs.items() if k in self.input_names}
        for key, derive in self.derived_inputs.items():
            teacher[key] = derive(inputs[IMAGE_INPUT])
        return teacher

    @torch.no_grad()
    def teacher_logits(self, teacher_inputs: dict[str, Any], device: torch.device | None = None) -> torch.Tensor:
        """The teacher's logits, computed in eval mode without gradients on `device` (the student's)."""
        if device is not None and next(self.teacher.parameters()).device != device:
            self.teacher.to(device)
        if self.teacher.training:
            self.teacher.eval()
        return self.teacher(**teacher_inputs).logits

    def distillation_loss(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        """T² · KL(softmax(teacher / T) ‖ softmax(student / T)), averaged over the batch."""
        if student_logits.shape != teacher_logits.shape:
            raise ValueError(
                f"Student logits {tuple(student_logits.shape)} and teacher logits {tuple(teacher_logits.shape)} "
                "differ in shape."
            )
        t = self.temperature
        return (
            F.kl_div(
                F.log_softmax(student_logits.float() / t, dim=-1),
                F.log_softmax(teacher_logits.float() / t, dim=-1),
                log_target=True,
                reduction="batchmean",
            )
            * t**2
        )

    def loss(
        self,
        student_logits: torch.Tensor,
        teacher_logits: torch.Tensor | None,
        task_loss: torch.Tensor | None,
    ) -> torch.Tensor:
        """α · task_loss + (1 − α) · distillation_loss (a term with weight 0 is not computed).

        Raises:
            ValueError: If α > 0 and there is no task loss (no labels), or α < 1 and there are no teacher logits.
        """
        loss = None
        if self.alpha > 0:
            if task_loss is None:
                raise ValueError(f"alpha={self.alpha} weighs the task loss, but the batch has no labels.")
            loss = self.alpha * task_loss
        if self.alpha < 1:
            if teacher_logits is None:
                raise ValueError(f"alpha={self.alpha} weighs the distillation loss, but no teacher logits were given.")
            distill = (1 - self.alpha) * self.distillation_loss(student_logits, teacher_logits)
            loss = distill if loss is None else loss + distill
        return loss


class DistillationTrainer(TransferTrainer):
    """A `TransferTrainer` whose training loss distils a teacher into the student (see `Distiller`).

    The teacher's inputs come from the student's batch (`Distiller.teacher_inputs`). Evaluation scores the student
    alone with its own loss. The student's own loss and the distillation term are per-batch means, so gradient
    accumulation scales them as the Trainer does for plain models.

    Args:
        *args: `Trainer` arguments; `model` is the student.
        distiller: The `Distiller` holding the teacher, α and T.
        **kwargs: `TransferTrainer` keyword arguments (`layer_decay`, ...).

    Raises:
        ValueError: At construction, if the student's classes differ from the teacher's.

    Example:
        ```python
        >>> trainer = DistillationTrainer(
        ...     model=student, args=args, train_dataset=train, distiller=Distiller(teacher, alpha=0.5, temperature=2)
        ... )
        >>> trainer.train()
        ```
    """

    loss_is_scaled_for_ga = False  # per-batch means: the Trainer divides by the accumulation steps

    def __init__(self, *args: Any, distiller: Distiller, **kwargs: Any):
        if not isinstance(distiller, Distiller):
            raise TypeError(f"distiller must be a Distiller, got {type(distiller).__name__}.")
        self.distiller = distiller
        super().__init__(*args, **kwargs)
        if self.model is not None:
            distiller.match_student(self.model)

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, Any]:
        """The distillation loss of a training batch (the student's own loss in evaluation).

        Args:
            model: The student (possibly wrapped).
            inputs: The batch: the student's inputs and `labels`.
            return_outputs: Also return the student's outputs.
            num_items_in_batch: Unused: both terms are per-batch means.

        Returns:
            The loss, or `(loss, student_outputs)` with `return_outputs`.
        """
        labels = inputs.pop("labels") if self.label_smoother is not None and "labels" in inputs else None
        outputs = model(**inputs)
        task_loss = self.label_smoother(outputs, labels) if labels is not None else outputs.get("loss")
        if not model.training:
            loss = task_loss
        else:
            teacher_logits = None
            if self.distiller.alpha < 1:
                teacher_inputs = self.distiller.teacher_inputs(inputs)
                teacher_logits = self.distiller.teacher_logits(teacher_inputs, device=outputs.logits.device)
            loss = self.distiller.loss(outputs.logits, teacher_logits, task_loss)
            # L2-SP / BSS / Co-Tuning compose with distillation
            loss = loss + self.regularization_loss(model, labels if labels is not None else inputs.get("labels"))
        return (loss, outputs) if return_outputs else loss


__all__ = [
    "DistillationTrainer",
    "Distiller",
    "GradualUnfreezingCallback",
    "TransferTrainer",
    "param_groups_layer_decay",
]
