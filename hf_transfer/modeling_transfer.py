# Copyright 2026 The hf_transfer authors. Licensed under the Apache License, Version 2.0.
"""Transfer-learning models: timm and transformers backbones behind one interface, fusion, replaceable heads.

This file imports only `torch`, `transformers` and `timm` (and its sibling configuration file), so that a pushed
checkpoint can carry it as remote code and load with `trust_remote_code=True` where hf_transfer is not installed.
"""

import copy
import difflib
import logging
import os
import re
from dataclasses import dataclass
from typing import Any

import timm
import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedModel
from transformers import initialization as init
from transformers.loss.loss_utils import ForSequenceClassificationLoss
from transformers.modeling_outputs import BaseModelOutputWithPooling, ImageClassifierOutput, SequenceClassifierOutput
from transformers.modeling_utils import load_state_dict

from .configuration_transfer import (
    IMAGE_INPUT,
    POOLING_MODES,
    TEXT_INPUTS,
    BackboneEntry,
    TransferConfig,
    backbone_input_names,
    cached_features_key,
    input_suffixes,
    is_cached_features_key,
)

logger = logging.getLogger(__name__)

_TIMM_POOLS = ("avg", "max", "avgmax", "catavgmax", "token")
# Parameter names of transformers encoders carry the layer index after one of these words.
_LAYER_INDEX = re.compile(r"(?:^|\.)(?:layer|layers|block|blocks|stages|stage)\.(\d+)(?:\.|$)")
_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}


@dataclass
class BackboneSpec:
    """What a user asks for when building a model: a backbone and how to use it.

    Args:
        name: A Hub id or local directory of a transformers checkpoint, a `timm/...` Hub repo, a saved hf_transfer
            model, or a timm architecture name (optionally prefixed `timm:`, with an optional pretrained tag such as
            `resnet18.a1_in1k`).
        weights: A local weights file (safetensors or a PyTorch state dict) for a timm architecture.
        pretrained: Load pretrained weights (`False` gives a random-init backbone with the library's own init).
        pooling: `"auto"` (what fits the backbone), `"cls"`, `"pooler"`, `"mean"`, `"max"` (transformers
            backbones) or a timm global pool (`"avg"`, `"max"`, `"avgmax"`, `"catavgmax"`, `"token"`).
        freeze: Overrides the model-wide freezing for this backbone: `"none"`, `"backbone"` or a number of
            frozen layer groups.
    """

    name: str
    weights: str | None = None
    pretrained: bool = True
    pooling: str = "auto"
    freeze: str | int | None = None


# --------------------------------------------------------------------------------------------------------------------
# Backbone adapters: one interface over timm and transformers models
# --------------------------------------------------------------------------------------------------------------------


def _walk(module: nn.Module):
    """Every submodule of `module` (itself included), without `named_modules`' prefixes and memo set: a training step
    calls this, and on a ResNet it is ~10x cheaper."""
    stack = [module]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(child for child in current._modules.values() if child is not None)


def _none_trainable(modules) -> bool:
    """Whether no parameter held directly by any of `modules` requires a gradient."""
    return not any(p is not None and p.requires_grad for m in modules for p in m._parameters.values())


def is_frozen(module: nn.Module) -> bool:
    """Whether no parameter of `module` requires a gradient (read on every call: users freeze parameters directly)."""
    return _none_trainable(_walk(module))


class _Backbone(nn.Module):
    """What the backbone adapters share, in `train()`:

    * a wholly frozen backbone is a fixed feature extractor and stays in eval mode (no dropout or drop-path, BatchNorm
      statistics kept), the mode its cached features are computed in (hf_transfer.features), as in the usual linear
      probe;
    * in a partly frozen backbone, BatchNorm layers whose parameters are frozen stay in eval mode, so their running
      statistics do not move;
    * with `freeze_bn_stats` (set by `TransferTrainer(freeze_bn_stats=True)`, `--freeze_bn_stats`), every BatchNorm
      layer stays in eval mode: the source's running statistics are kept while scale and shift still train, since a
      few small target batches would otherwise overwrite them.

    The Trainer calls `model.train()` every step, so both checks are cheap walks.
    """

    freeze_bn_stats: bool = False  # a training option, not saved with the model

    def train(self, mode: bool = True):
        if mode:
            modules = list(_walk(self))[1:]
            if _none_trainable(modules):
                self.training = True  # the model reports training mode; the frozen modules inside stay in eval
                for module in modules:
                    if module.training:
                        module.training = False
                return self
        super().train(mode)
        if mode:
            norms = self.__dict__.get("_batch_norms")
            if norms is None:  # plain list in __dict__: not registered as submodules
                norms = self.__dict__["_batch_norms"] = [
                    m for m in self.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                ]
            for norm in norms:
                if self.freeze_bn_stats or not any(p.requires_grad for p in norm.parameters()):
                    norm.eval()
        return self


class TimmBackbone(_Backbone):
    """A timm model as a feature extractor: `pixel_values` → pooled features with timm's own global pool."""

    modality = "image"
    unused_parameters: frozenset[str] = frozenset()

    def __init__(self, model: nn.Module, config: dict | None = None):
        super().__init__()
        self.model = model
        # The stored timm config (`TransferConfig.backbones[i]["config"]`), to rebuild the architecture with timm's
        # own init for tensors a checkpoint lacks (`init_missing_tensors`).
        self.timm_config = config
        # Read by `PreTrainedModel.is_activation_checkpointing` (set only when timm really checkpoints).
        self.gradient_checkpointing = False
        self.checkpoint_use_reentrant: bool | None = None  # None: timm's global setting
        # timm modules keep timm's own initialisation: `_init_weights` must not touch them.
        for module in self.model.modules():
            module._hf_transfer_timm = True
        # `from_pretrained` builds the model on the meta device: then every value comes from the checkpoint, or from
        # `init_missing_tensors` for the tensors it lacks. Built anywhere else, timm's constructors initialised it.
        self._values_pending = any(t.is_meta for t in (*self.model.parameters(), *self.model.buffers()))

    @classmethod
    def from_config(cls, config: dict) -> "TimmBackbone":
        """Rebuilds the architecture (random init) from its stored timm config."""
        model = timm.create_model(
            config["architecture"],
            pretrained=False,
            num_classes=0,
            pretrained_cfg=config.get("pretrained_cfg") or None,
            **(config.get("model_args") or {}),
        )
        return cls(model, config)

    @torch.no_grad()
    def init_missing_tensors(self) -> list[str]:
        """Gives timm's own initialisation to the tensors `from_pretrained` found no value for.

        transformers loads a checkpoint into a model built on the meta device, materialises each tensor the checkpoint
        lacks as uninitialised memory, and leaves it to `_init_weights` to initialise every tensor not marked
        `_is_hf_initialized` (loaded tensors carry the mark). timm initialises inside its constructors, with no
        per-module init function to call, so the architecture is built once more and the missing tensors (parameters,
        persistent and non-persistent buffers) are copied from it: the values a fresh timm model has. A backbone
        built off the meta device (`from_backbones`, `from_config`) already holds timm's init or pretrained weights
        and is left alone.

        Returns:
            The names (inside the timm model) of the tensors initialised.
        """
        if not self._values_pending:
            return []
        self._values_pending = False
        recomputed = set()  # non-persistent buffers timm modules can recompute themselves (as TimmWrapper does)
        for prefix, module in self.model.named_modules():
            if hasattr(module, "init_non_persistent_buffers"):
                module.init_non_persistent_buffers()
                recomputed.update(f"{prefix}.{name}".lstrip(".") for name in module._non_persistent_buffers_set)
        tensors = {**dict(self.model.named_parameters()), **dict(self.model.named_buffers())}
        missing = [
            name
            for name, t in tensors.items()
            if not getattr(t, "_is_hf_initialized", False) and name not in recomputed
        ]
        if not missing:
            return []
        if self.timm_config is None:
            raise RuntimeError(
                f"Cannot initialise timm tensors {missing[:5]}: this backbone was not built from a stored timm config."
            )
        fresh = TimmBackbone.from_config(self.timm_config).model
        fresh_tensors = {**dict(fresh.named_parameters()), **dict(fresh.named_buffers())}
        for name in missing:
            tensors[name].copy_(fresh_tensors[name])
            tensors[name]._is_hf_initialized = True
        return missing

    @property
    def feature_dim(self) -> int:
        dim = getattr(self.model, "head_hidden_size", None) or self.model.num_features
        return (
            dim * 2
            if getattr(self.model, "global_pool", None) is not None and _pool_type(self.model) == "catavgmax"
            else dim
        )

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        # fp32 images into a bf16/fp16 model are cast, as transformers' TimmWrapper does
        pixel_values = inputs["pixel_values"].to(_parameter_dtype(self.model))
        if self.gradient_checkpointing and self.checkpoint_use_reentrant is not None:
            # timm's checkpoint helpers read one process-wide `use_reentrant` when they run: set this backbone's
            # for the duration of its forward (the recompute in backward reuses what the forward chose).
            from timm.layers import set_reentrant_ckpt, use_reentrant_ckpt

            previous = use_reentrant_ckpt()
            set_reentrant_ckpt(self.checkpoint_use_reentrant)
            try:
                features = self.model.forward_features(pixel_values)
            finally:
                set_reentrant_ckpt(previous)
        else:
            features = self.model.forward_features(pixel_values)
        return self.model.forward_head(features, pre_logits=True)

    def layer_groups(self) -> list[list[str]]:
        """Parameter names per layer group, from the input to the output (timm's `group_matcher`)."""
        from timm.models import group_parameters

        groups = group_parameters(self.model, self.model.group_matcher(coarse=True))
        return [[f"model.{name}" for name in groups[key]] for key in sorted(groups)]

    def check_checkpoint_options(self, options: dict) -> None:
        """Refuses gradient checkpointing options that timm cannot honour.

        Args:
            options: What transformers asks for (`every_n_layers`, `offload`, and the keyword arguments of
                `torch.utils.checkpoint.checkpoint`). timm checkpoints every block, on the device, and takes only
                `use_reentrant`, so any other request is refused rather than ignored.

        Raises:
            ValueError: naming the options that cannot be honoured.
        """
        fixed = {"every_n_layers": 1, "offload": False}
        refused = {k: v for k, v in options.items() if k != "use_reentrant" and fixed.get(k, object()) != v}
        if refused:
            raise ValueError(
                f"Gradient checkpointing options {refused} cannot be honoured by the timm backbone "
                f"{type(self.model).__name__}: timm checkpoints every block (every_n_layers=1), without offload, "
                "and takes only `use_reentrant`."
            )

    def set_grad_checkpointing(self, enable: bool = True, use_reentrant: bool | None = None) -> None:
        """Turns timm's own gradient checkpointing on or off.

        Args:
            enable: On or off.
            use_reentrant: Re-entrant checkpointing or not (None: timm's process-wide setting).

        Raises:
            ValueError: if the timm model cannot checkpoint.
        """
        self.checkpoint_use_reentrant = use_reentrant
        try:
            self.model.set_grad_checkpointing(enable)
        except (AssertionError, NotImplementedError, AttributeError) as err:
            if enable:
                raise ValueError(
                    f"The timm backbone {type(self.model).__name__} does not support gradient checkpointing ({err})."
                ) from err
        self.gradient_checkpointing = enable


def _parameter_dtype(module: nn.Module) -> torch.dtype:
    """The dtype of a module's first floating-point parameter (float32 when it has none)."""
    for parameter in module.parameters():
        if parameter.is_floating_point():
            return parameter.dtype
    return torch.float32


def _pool_type(model: nn.Module) -> str | None:
    pool = getattr(model, "global_pool", None)
    return getattr(pool, "pool_type", pool if isinstance(pool, str) else None)


class TransformersBackbone(_Backbone):
    """A transformers base model (`AutoModel`) as a feature extractor with a pooling fit for it."""

    def __init__(self, model: PreTrainedModel, pooling: str):
        super().__init__()
        if pooling != "pooler" and isinstance(getattr(model, "pooler", None), nn.Module):
            # An unused pooler would only hold trainable parameters that get no gradient (DDP's unused-parameter
            # error, optimizer state for nothing).
            model.pooler = None
        self.model = model
        self.pooling = pooling
        self.modality = "image" if model.main_input_name == "pixel_values" else "text"
        # Used only for masked-image pretraining (DINOv2, BEiT...): never part of a classifier's forward pass.
        self.unused_parameters = {f"model.{n}" for n, _ in model.named_parameters() if n.endswith("mask_token")}
        self.input_names = (IMAGE_INPUT,) if self.modality == "image" else TEXT_INPUTS

    @classmethod
    def from_config(cls, config: dict, pooling: str) -> "TransformersBackbone":
        """Rebuilds the architecture (random init) from its stored transformers config.

        The backbone is built in the dtype the enclosing model is being built in (`from_pretrained(dtype=...)`,
        or a saved model's own dtype), not the dtype its stored config recorded when it was first loaded.
        """
        config = copy.deepcopy(config)
        config.pop("dtype", None)
        backbone_config = AutoConfig.for_model(config.pop("model_type"), **config)
        return cls(AutoModel.from_config(backbone_config, dtype=torch.get_default_dtype()), pooling)

    @property
    def feature_dim(self) -> int:
        config = self.model.config
        dim = getattr(config, "hidden_size", None)
        if dim is None and getattr(config, "hidden_sizes", None):
            dim = config.hidden_sizes[-1]
        if dim is None:
            raise ValueError(f"Cannot tell the feature width of {config.model_type} (no hidden_size/hidden_sizes).")
        return dim

    def forward(
        self, inputs: dict[str, torch.Tensor], output_attentions: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """Pooled features `(batch, feature_dim)`; with `output_attentions`, also the backbone's attention maps."""
        if self.modality == "image":  # fp32 images into a bf16/fp16 model are cast, as ViT does
            inputs = {**inputs, "pixel_values": inputs["pixel_values"].to(self.model.dtype)}
        if output_attentions:
            outputs = self.model(**inputs, output_attentions=True, return_dict=True)
            return self._pool(inputs, outputs), outputs.attentions
        return self._pool(inputs, self.model(**inputs, return_dict=True))

    def _pool(self, inputs: dict[str, torch.Tensor], outputs) -> torch.Tensor:
        if self.pooling == "pooler":
            if outputs.pooler_output is None:
                raise ValueError(
                    f"{self.model.config.model_type} has no pooler output; choose pooling 'cls' or 'mean'."
                )
            return outputs.pooler_output.flatten(1)
        hidden = outputs.last_hidden_state
        if hidden.dim() == 4:  # convolutional feature map (batch, channels, height, width)
            return hidden.mean((2, 3)) if self.pooling == "mean" else hidden.amax((2, 3))
        if self.pooling == "cls":
            return hidden[:, 0]
        mask = inputs.get("attention_mask")
        mask = torch.ones(hidden.shape[:2], device=hidden.device) if mask is None else mask
        mask = mask.unsqueeze(-1).to(hidden.dtype)
        if self.pooling == "mean":
            return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return hidden.masked_fill(mask == 0, torch.finfo(hidden.dtype).min).amax(1)

    def layer_groups(self) -> list[list[str]]:
        """Parameter names per layer group: embeddings, each encoder layer (by its index), then the rest."""
        indexed: dict[int, list[str]] = {}
        for name, _ in self.model.named_parameters():
            match = _LAYER_INDEX.search(name)
            if match:
                key = int(match.group(1)) + 1
            elif "embed" in name:
                key = 0
            else:  # pooler, final norm
                key = 1_000_000
            indexed.setdefault(key, []).append(f"model.{name}")
        return [indexed[key] for key in sorted(indexed)]

    def set_grad_checkpointing(self, enable: bool, checkpoint_function=None, every_n_layers: int = 1) -> None:
        """Turns the backbone's own gradient checkpointing on or off, with transformers' checkpoint function (which
        carries `gradient_checkpointing_kwargs` and `offload`) and `every_n_layers`.

        Raises:
            ValueError: if the backbone cannot checkpoint.
        """
        if not self.model.supports_gradient_checkpointing:
            if enable:
                raise ValueError(f"The backbone {type(self.model).__name__} does not support gradient checkpointing.")
            return
        if enable:
            self.model._set_gradient_checkpointing(True, checkpoint_function, every_n_layers=every_n_layers)
        else:
            self.model._set_gradient_checkpointing(False)


def build_backbone(spec: BackboneEntry) -> nn.Module:
    """Builds the backbone module described by one entry of `TransferConfig.backbones` (random init)."""
    if spec["library"] == "timm":
        return TimmBackbone.from_config(spec["config"])
    return TransformersBackbone.from_config(spec["config"], spec["pooling"])


# --------------------------------------------------------------------------------------------------------------------
# Loading pretrained backbones
# --------------------------------------------------------------------------------------------------------------------


# Prefixes a whole checkpoint may carry around a timm model's own tensor names: DDP / `torch.compile` wrappers, and
# transformers' TimmWrapper (`TimmWrapperModel` / `TimmWrapperForImageClassification`, `base_model_prefix`).
_WRAPPER_PREFIXES = ("module.", "_orig_mod.", "timm_model.")


def _strip_wrapper_prefixes(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Removes each wrapper prefix that every tensor name of `state_dict` carries."""
    for prefix in _WRAPPER_PREFIXES:
        if state_dict and all(key.startswith(prefix) for key in state_dict):
            state_dict = {key.removeprefix(prefix): value for key, value in state_dict.items()}
    return state_dict


def _classifier_prefixes(model: nn.Module) -> tuple[str, ...]:
    """The name prefixes of a timm model's classifier, as timm itself declares them (`pretrained_cfg["classifier"]`:
    `"fc"`, `"head"`, `"head.fc"`, `("head", "head_dist")`...; the architecture's default config if the model's
    lacks it)."""
    pretrained_cfg = getattr(model, "pretrained_cfg", None) or {}
    classifier = pretrained_cfg.get("classifier")
    if not classifier and pretrained_cfg.get("architecture"):
        default = timm.models.get_pretrained_cfg(pretrained_cfg["architecture"])
        classifier = getattr(default, "classifier", None)
    names = (classifier,) if isinstance(classifier, str) else tuple(classifier or ())
    return tuple(f"{name}." for name in names)


def _listed(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return f"{shown}, ... ({len(keys)} in all)" if len(keys) > limit else shown


@dataclass
class _TimmWeightsMatch:
    """How a checkpoint's tensors map onto a timm model's (see `_match_timm_weights`)."""

    state_dict: dict[str, torch.Tensor]  # what to load, named as in the model, classifier excluded
    dropped: list[str]  # the source's classifier tensors, deliberately not loaded
    missing: list[str]  # model tensors (classifier excluded) the checkpoint lacks
    unexpected: list[str]  # checkpoint tensors the model has no place for
    mismatched: list[str]  # same name, other shape

    @property
    def complete(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)


def _match_timm_weights(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> _TimmWeightsMatch:
    """Matches a timm checkpoint's tensors to `model`'s by name.

    The source model's classifier (timm's own `pretrained_cfg["classifier"]`: `fc`, `head`...) is the only part
    allowed to differ: its tensors are dropped (the backbone feeds a new head) and the model's own classifier
    tensors, if it has any, need not be in the checkpoint. Every other tensor must be there, with its shape.
    """
    target = model.state_dict()
    heads = _classifier_prefixes(model)
    state_dict = _strip_wrapper_prefixes(state_dict)
    kept = {k: v for k, v in state_dict.items() if not (k.startswith(heads) and heads)}
    return _TimmWeightsMatch(
        state_dict=kept,
        dropped=[k for k in state_dict if k not in kept],
        missing=[k for k in target if k not in kept and not (heads and k.startswith(heads))],
        unexpected=[k for k in kept if k not in target],
        mismatched=[
            f"{k} ({tuple(v.shape)} in the checkpoint, {tuple(target[k].shape)} in the model)"
            for k, v in kept.items()
            if k in target and v.shape != target[k].shape
        ],
    )


def _match_timm_weights_in_order(
    model: nn.Module, state_dict: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor] | None:
    """Matches tensors in order, for a port of the architecture from another codebase (other names, same tensors):
    the checkpoint's tensors, in their order, against the model's with its classifier (whose shapes may differ: the
    source's number of classes) or without it. None when neither fits every shape."""
    target = model.state_dict()
    heads = _classifier_prefixes(model)
    values = list(state_dict.values())
    is_head = [bool(heads) and k.startswith(heads) for k in target]
    for keys in (list(target), [k for k, head in zip(target, is_head) if not head]):
        heads_here = [bool(heads) and k.startswith(heads) for k in keys]
        if len(keys) == len(values) and all(
            head or v.shape == target[k].shape for k, v, head in zip(keys, values, heads_here)
        ):
            return {k: v for k, v, head in zip(keys, values, heads_here) if not head}
    return None


def _incomplete_weights_error(source: str, model: nn.Module, match: _TimmWeightsMatch, hint: str = "") -> ValueError:
    problems = []
    if match.missing:
        problems.append(f"missing from the checkpoint: {_listed(match.missing)}")
    if match.unexpected:
        problems.append(f"unexpected (no such tensor in the model): {_listed(match.unexpected)}")
    if match.mismatched:
        problems.append(f"of another shape: {_listed(match.mismatched)}")
    architecture = (getattr(model, "pretrained_cfg", None) or {}).get("architecture") or type(model).__name__
    heads = ", ".join(p.rstrip(".") for p in _classifier_prefixes(model)) or "none declared"
    return ValueError(
        f"{source} does not hold the weights of timm's {architecture}: {'; '.join(problems)}. Only the source's "
        f"classifier ({heads}) may differ; every other tensor must be in the checkpoint, or the backbone would "
        f"train from a random init.{hint}"
    )


def _load_timm_weights(model: nn.Module, state_dict: dict[str, torch.Tensor], source: str) -> None:
    """Loads a timm checkpoint's backbone tensors by name; any missing or unexpected tensor is an error."""
    match = _match_timm_weights(model, state_dict)
    if not match.complete:
        raise _incomplete_weights_error(source, model, match)
    model.load_state_dict(match.state_dict, strict=False)  # the model's own classifier, if any, is replaced later
    if match.dropped:
        logger.info("%s: dropped the source's classifier tensors %s.", source, _listed(match.dropped))


def _read_weights_file(path: str) -> dict[str, torch.Tensor]:
    """A weights file's tensors (safetensors or a PyTorch state dict, unwrapped from a training checkpoint's
    `state_dict` / `model` entry)."""
    state_dict = load_state_dict(path, weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state_dict.get(key), dict):
            state_dict = state_dict[key]
    return state_dict


def load_weights_file(model: nn.Module, path: str, with_classifier: bool = False) -> None:
    """Loads a local weights file (safetensors or a PyTorch state dict) into a timm model.

    Tensor names are matched first (with any `module.` / `timm_model.` wrapper prefix removed); a file whose names
    differ but whose tensors have the same count, order and shapes (a port of the same architecture from another
    codebase) is matched in order. The source's classifier (timm's `pretrained_cfg["classifier"]`) is not loaded:
    the backbone gets a new head.

    Args:
        model: The timm model.
        path: The weights file.
        with_classifier: Load the source's classifier too (the model must have one of the file's shape), for what
            reads the source's predictions (LEEP, NCE, Co-Tuning); every tensor of the file must then fit.

    Raises:
        ValueError: if the file's tensors match the model's neither by name nor in order, naming the tensors that
            are missing, unexpected or of another shape; with `with_classifier`, if the file has no classifier of
            the model's shape.
    """
    state_dict = _read_weights_file(path)
    if with_classifier:
        _load_whole_timm_weights(model, _strip_wrapper_prefixes(state_dict), path)
        return
    match = _match_timm_weights(model, state_dict)
    if match.complete:
        model.load_state_dict(match.state_dict, strict=False)
        return
    in_order = _match_timm_weights_in_order(model, _strip_wrapper_prefixes(state_dict))
    if in_order is not None:
        logger.info("Tensor names in %s differ from the model's; matched %d tensors in order.", path, len(in_order))
        model.load_state_dict(in_order, strict=False)
        return
    raise _incomplete_weights_error(
        f"Weights file {path} ({len(state_dict)} tensors)",
        model,
        match,
        " Nor do its tensors match the model's in order (same count and shapes).",
    )


def _load_whole_timm_weights(model: nn.Module, state_dict: dict[str, torch.Tensor], path: str) -> None:
    """Loads every tensor of a checkpoint, the source's classifier included, by name or else in order."""
    target = model.state_dict()

    def fits(pairs) -> bool:
        return all(v.shape == target[k].shape for k, v in pairs)

    if set(state_dict) == set(target) and fits(state_dict.items()):
        model.load_state_dict(state_dict)
        return
    if len(state_dict) == len(target) and fits(zip(target, state_dict.values())):
        model.load_state_dict(dict(zip(target, state_dict.values())))
        return
    heads = ", ".join(p.rstrip(".") for p in _classifier_prefixes(model)) or "none declared"
    shapes = {k: tuple(v.shape) for k, v in target.items() if k.startswith(_classifier_prefixes(model))}
    raise ValueError(
        f"Weights file {path} ({len(state_dict)} tensors) does not hold the whole of timm's "
        f"{(getattr(model, 'pretrained_cfg', None) or {}).get('architecture') or type(model).__name__} with its "
        f"source classifier ({heads}: {shapes}); a file without the classifier gives no source predictions."
    )


def _source_num_classes(name: str, weights: str) -> int:
    """The number of source classes of a weights file: the rows of its last (classes × features) matrix (the
    classifier comes last in timm's and other codebases' state dicts); timm's default where there is none."""
    num_features = timm.create_model(name, pretrained=False, num_classes=0).num_features
    state_dict = _read_weights_file(weights)
    rows = [v.shape[0] for v in state_dict.values() if v.ndim == 2 and v.shape[1] == num_features]
    default = timm.models.get_pretrained_cfg(name)
    return rows[-1] if rows else getattr(default, "num_classes", 1000)


def source_classifier(name: str, weights: str | None = None, pretrained: bool = True) -> nn.Linear | None:
    """A candidate's source classifier, in eval mode, for what reads the source's predictions on the target data:
    LEEP and NCE (`recipes/rank_backbones.py`) and Co-Tuning. Either a timm backbone's own head (e.g. its ImageNet
    classifier), or the trained head of a saved single-backbone hf_transfer classifier (a source model fine-tuned
    on another task).

    Args:
        name: The timm architecture (``timm:`` prefix allowed), or a local directory of a saved hf_transfer model.
        weights: A local weights file that includes the classifier (e.g. the EfficientNet-Lite ImageNet `.pth`).
        pretrained: Without `weights`, timm's own pretrained weights (a Hub download).

    Returns:
        The classifier (`nn.Linear` from the backbone's pooled features to the source's classes), or None when there
        is none to be had: random init, a file without a classifier, offline without `weights`, an hf_transfer model
        that is no single-backbone classifier with a linear head.
    """
    name = str(name).removeprefix("timm:")
    if not (weights or pretrained):
        return None
    if os.path.isdir(name) and (_read_json(name, "config.json") or {}).get("model_type") == "hf_transfer":
        return _saved_classifier_head(name)
    if not timm.is_model(name):
        return None
    try:
        if weights:
            model = timm.create_model(name, pretrained=False, num_classes=_source_num_classes(name, weights))
            load_weights_file(model, weights, with_classifier=True)
        else:
            model = timm.create_model(name, pretrained=True)
    except Exception as error:  # noqa: BLE001 - no head to be had (offline, no such tag, no classifier in the file)
        logger.info("No source classifier for %s (%s).", name, error)
        return None
    head = model.get_classifier()
    return head.eval() if isinstance(head, nn.Linear) and head.out_features > 0 else None


def _saved_classifier_head(name: str) -> nn.Linear | None:
    """The trained linear head of a saved hf_transfer classifier that reads its one backbone's pooled features."""
    config = AutoConfig.from_pretrained(name)
    classifiers = ("TransferForClassification", "TransferForImageClassification", "TransferForSequenceClassification")
    if len(config.backbones) != 1 or config.head != "linear" or not set(config.architectures or []) & set(classifiers):
        logger.info(
            "No source classifier for %s: not a single-backbone hf_transfer classifier with a linear head.", name
        )
        return None
    head = TransferForClassification.from_pretrained(name).head.layers[-1]  # after a Dropout, the identity in eval
    return head.eval()


def _timm_data_config(model: nn.Module, pretrained_cfg: dict | None = None) -> dict:
    data_config = timm.data.resolve_data_config({}, pretrained_cfg=pretrained_cfg or None, model=model)
    return {
        "input_size": list(data_config["input_size"]),
        "mean": list(data_config["mean"]),
        "std": list(data_config["std"]),
        "interpolation": data_config["interpolation"],
        "crop_pct": data_config["crop_pct"],
        "crop_mode": data_config.get("crop_mode", "center"),
    }


def _timm_spec(model: nn.Module, architecture: str, model_args: dict, data_cfg: dict | None = None) -> dict:
    """The stored spec of a timm backbone: what rebuilds it (`TimmBackbone.from_config`) and its preprocessing
    (from `data_cfg`, a checkpoint's own `pretrained_cfg`, where given; else the model's)."""
    pretrained_cfg = dict(getattr(model, "pretrained_cfg", None) or {})
    # local paths ("file", "source") are not part of the architecture and must not be published
    pretrained_cfg = {
        k: (list(v) if isinstance(v, tuple) else v) for k, v in pretrained_cfg.items() if k not in ("file", "source")
    }
    return {
        "library": "timm",
        "modality": "image",
        "config": {"architecture": architecture, "pretrained_cfg": pretrained_cfg, "model_args": model_args},
        "data_config": _timm_data_config(model, data_cfg),
    }


def _load_timm(name: str, spec: BackboneSpec) -> tuple[nn.Module, dict]:
    model_args = {"global_pool": spec.pooling} if spec.pooling in _TIMM_POOLS else {}
    if spec.weights:
        model = timm.create_model(name, pretrained=False, **model_args)
        load_weights_file(model, spec.weights)
        model.reset_classifier(0, **model_args)
    else:
        model = timm.create_model(name, pretrained=spec.pretrained, num_classes=0, **model_args)
    architecture = name.split(".")[0]
    stored = _timm_spec(model, architecture, model_args)
    return TimmBackbone(model, stored["config"]), stored


def _read_json(name: str, filename: str) -> dict | None:
    """A JSON file of a local directory or Hub repo (None when it has none)."""
    import json

    from transformers.utils import cached_file

    path = cached_file(name, filename, _raise_exceptions_for_missing_entries=False)
    if path is None:
        return None
    with open(path, encoding="utf-8") as file:
        return json.load(file)


def _checkpoint_state_dict(name: str) -> dict[str, torch.Tensor]:
    """Every tensor of a local directory's or Hub repo's checkpoint (single file or shards)."""
    from transformers.utils import cached_file

    for filename in ("model.safetensors", "pytorch_model.bin", "pytorch_model.pth", "model.pth"):
        path = cached_file(name, filename, _raise_exceptions_for_missing_entries=False)
        if path is not None:
            return load_state_dict(path, weights_only=True)
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = _read_json(name, index_name)
        if index is not None:
            state_dict = {}
            for shard in sorted(set(index["weight_map"].values())):
                state_dict.update(load_state_dict(cached_file(name, shard), weights_only=True))
            return state_dict
    raise ValueError(
        f"No weights in {name}: looked for model.safetensors, pytorch_model.bin (or .pth), model.pth and sharded "
        "checkpoints (model.safetensors.index.json)."
    )


def _load_timm_checkpoint(name: str, spec: BackboneSpec) -> tuple[nn.Module, dict]:
    """A timm model from a local directory or Hub repo in either of the two formats timm checkpoints come in.

    * timm's own (`timm.models.save_for_hf`, `push_to_hf_hub`, the `timm/...` Hub repos): config.json holds
      `architecture`, `pretrained_cfg` and usually `model_args` (with `num_classes`); tensors carry timm's names.
    * transformers' TimmWrapper (`TimmWrapperModel` / `TimmWrapperForImageClassification.save_pretrained`, what
      transformers' example scripts write after fine-tuning a `timm/...` model): config.json holds `architecture`,
      `"model_args": null`, transformers' own keys, and `pretrained_cfg` only if the model came from a timm repo;
      tensors are prefixed `timm_model.`.

    The architecture is built, without a classifier, as the format's own loader builds it: timm's
    (`timm.create_model("local-dir:...")`) passes the stored `pretrained_cfg` to the architecture (it may fix the
    input size), transformers' TimmWrapper does not. timm's loader cannot read the TimmWrapper format, and
    TimmWrapper cannot read timm's when `model_args` holds `num_classes`. The checkpoint's tensors are then loaded by
    name: every backbone tensor must be there (see `_match_timm_weights`). The stored `pretrained_cfg` gives the
    preprocessing in both formats.
    """
    from timm.models import PretrainedCfg

    raw = _read_json(name, "config.json") or {}
    if "architecture" not in raw:
        raise _unknown_backbone_error(name, "its config.json names no timm `architecture`")
    architecture = raw["architecture"]
    model_args = {k: v for k, v in (raw.get("model_args") or {}).items() if k != "num_classes"}
    if spec.pooling in _TIMM_POOLS:
        model_args["global_pool"] = spec.pooling
    # Legacy timm configs keep the pretrained config at the top level; TimmWrapper configs have transformers' keys
    # there instead. Only PretrainedCfg's fields describe the architecture and its preprocessing; the source's labels
    # belong to the classifier, which is dropped.
    source_cfg = raw.get("pretrained_cfg") or ({} if "model_type" in raw else raw)
    not_architecture = {"file", "source", "state_dict", "label_names", "label_descriptions"}
    valid = set(PretrainedCfg.__dataclass_fields__) - not_architecture
    pretrained_cfg = {k: v for k, v in source_cfg.items() if k in valid}
    written_by_transformers = raw.get("model_type") == "timm_wrapper"
    model = timm.create_model(
        architecture,
        pretrained=False,
        num_classes=0,
        pretrained_cfg=None if written_by_transformers else pretrained_cfg or None,
        **model_args,
    )
    if spec.pretrained:
        _load_timm_weights(model, _checkpoint_state_dict(name), source=f"Checkpoint {name}")
    stored = _timm_spec(model, architecture, model_args, data_cfg=pretrained_cfg)
    return TimmBackbone(model, stored["config"]), stored


def _is_sentence_transformer(name: str) -> bool:
    from transformers.utils import cached_file

    try:
        return cached_file(name, "modules.json", _raise_exceptions_for_missing_entries=False) is not None
    except Exception:  # offline, gated, ... : fall back to the architecture's own pooling
        return False


def _default_pooling(model: PreTrainedModel, name: str, pooler_loaded: bool = True) -> str:
    """The pooling that fits a transformers backbone (`pooler_loaded=False`: its checkpoint lacks the pooler)."""
    pooler = getattr(model, "pooler", None)
    has_learned_pooler = isinstance(pooler, nn.Module) and any(isinstance(m, nn.Linear) for m in pooler.modules())
    if model.main_input_name == "pixel_values":
        # ViT's pooler is an untrained dense layer in most checkpoints: use the (normed) CLS token instead.
        return "cls" if has_learned_pooler else "pooler"
    if _is_sentence_transformer(name):
        return "mean"  # sentence-transformers encoders are trained with mean pooling
    return "pooler" if has_learned_pooler and pooler_loaded else "cls"


def _image_processor_data_config(name: str, model: PreTrainedModel) -> dict:
    """A timm-style data config from a transformers image processor (falls back to ImageNet defaults)."""
    try:
        from transformers import AutoImageProcessor

        processor = AutoImageProcessor.from_pretrained(name)
    except Exception as err:  # no processor saved with the checkpoint
        size = getattr(model.config, "image_size", 224)
        logger.warning("No image processor for %s (%s); using %d px and ImageNet mean/std.", name, err, size)
        return {
            "input_size": [3, size, size],
            "mean": [0.485, 0.456, 0.406],
            "std": [0.229, 0.224, 0.225],
            "interpolation": "bicubic",
            "crop_pct": 1.0,
            "crop_mode": "center",
        }
    size = dict(getattr(processor, "size", None) or {})
    crop = dict(getattr(processor, "crop_size", None) or {}) if getattr(processor, "do_center_crop", False) else {}
    height = crop.get("height") or size.get("height") or size.get("shortest_edge") or 224
    width = crop.get("width") or size.get("width") or size.get("shortest_edge") or height
    resize = size.get("shortest_edge") or size.get("height") or height
    resample = getattr(processor, "resample", None)
    interpolation = {0: "nearest", 2: "bilinear", 3: "bicubic"}.get(
        int(resample) if resample is not None else 3, "bicubic"
    )
    return {
        "input_size": [3, height, width],
        "mean": list(processor.image_mean),
        "std": list(processor.image_std),
        "interpolation": interpolation,
        "crop_pct": min(1.0, height / resize) if crop else 1.0,
        "crop_mode": "center",
    }


def _check_loaded(name: str, model: PreTrainedModel, info: dict, unused: tuple[str, ...] = ()) -> None:
    """Refuses a pretrained backbone that `from_pretrained` loaded incompletely.

    transformers initialises the tensors a checkpoint lacks and only logs those it has no place for; for a
    pretrained backbone either means training from (partly) random weights, so both are errors naming the tensors.
    Exempt are the tensors of the source model's own task head, which the backbone deliberately leaves out:
    those outside every module of the base model (`cls.*` of a BERT pretraining checkpoint, `classifier.*`,
    an hf_transfer model's `head.*`), and the missing tensors under `unused` (a pooler the backbone drops).

    Args:
        name: The checkpoint, for the message.
        model: The loaded base model.
        info: `from_pretrained(..., output_loading_info=True)`'s loading info.
        unused: Name prefixes of the model's tensors the backbone does not use.
    """
    modules = {child for child, _ in model.named_children()}
    missing = sorted(k for k in info.get("missing_keys", ()) if not k.startswith(unused or ()))
    unexpected = sorted(k for k in info.get("unexpected_keys", ()) if k.split(".")[0] in modules)
    mismatched = sorted(str(k) for k in info.get("mismatched_keys", ()))
    problems = [
        f"{what}: {_listed(keys)}"
        for what, keys in (
            ("missing from the checkpoint", missing),
            ("unexpected", unexpected),
            ("of another shape", mismatched),
            ("not loadable", [str(e) for e in info.get("error_msgs", ())]),
        )
        if keys
    ]
    if problems:
        raise ValueError(
            f"Checkpoint {name} does not hold every weight of {type(model).__name__}: {'; '.join(problems)}. "
            "A pretrained backbone must load completely (only the source's task head may be left out), or it would "
            "train from a partly random init."
        )
    dropped = sorted(k for k in info.get("unexpected_keys", ()) if k.split(".")[0] not in modules)
    if dropped:
        logger.info("%s: left out the source model's head tensors %s.", name, _listed(dropped))


def _unknown_backbone_error(name: str, reason: str) -> ValueError:
    close = difflib.get_close_matches(name.removeprefix("timm:").split(".")[0], timm.list_models(), n=5, cutoff=0.6)
    hint = f" Close timm architecture names: {', '.join(close)}." if close else ""
    return ValueError(
        f"Unknown backbone {name!r}: {reason}. A backbone is a Hub id or local directory of a transformers, "
        f"timm or hf_transfer checkpoint, or a timm architecture name (see `timm.list_models()`).{hint}"
    )


def load_backbones(spec: BackboneSpec) -> list[tuple[nn.Module, BackboneEntry]]:
    """Loads the backbone(s) named by `spec` with their weights.

    Returns:
        A list of `(module, stored_spec)` pairs: one for a transformers or timm backbone, several for a saved
        hf_transfer model (its backbones are reused with their trained weights).
    """
    name = str(spec.name)
    if name.startswith("timm:"):
        if not timm.is_model(name[5:]):
            raise _unknown_backbone_error(name, "not a timm architecture")
        pairs = [_load_timm(name[5:], spec)]
    elif os.path.isdir(name) or ("/" in name and not os.path.exists(name)):
        try:
            config = AutoConfig.from_pretrained(name)
        except Exception as err:
            raise _unknown_backbone_error(name, f"no loadable config ({type(err).__name__}: {err})") from err
        if config.model_type == "hf_transfer":
            if spec.pretrained:
                transfer, info = TransferModel.from_pretrained(name, output_loading_info=True)
                _check_loaded(name, transfer, info)
                modules = list(transfer.backbones)
            else:
                # pretrained=False (--random_init, the guard's reference): the same backbones, built from their
                # stored configs with the library's own init, not the checkpoint's trained weights
                modules = [build_backbone(stored) for stored in config.backbones]
            pairs = [(module, copy.deepcopy(stored)) for module, stored in zip(modules, config.backbones)]
            for _, stored in pairs:
                stored["pretrained"] = bool(spec.pretrained)
                if stored["modality"] == "text":
                    # Its tokenizer is saved in that model's folder; `source` may be gone (a path at *its* training).
                    stored["processor_source"] = {"path": str(name), "input_suffix": stored["input_suffix"]}
        elif config.model_type == "timm_wrapper":
            pairs = [_load_timm_checkpoint(name, spec)]
        else:
            # pretrained=False (--random_init): the architecture with its own random init, not the checkpoint's weights
            info = None
            if spec.pretrained:
                model, info = AutoModel.from_pretrained(name, output_loading_info=True)
            else:
                model = AutoModel.from_config(config)
            if model.main_input_name not in ("pixel_values", "input_ids"):
                raise ValueError(
                    f"Backbone {name!r} ({config.model_type}) takes {model.main_input_name!r}; hf_transfer supports "
                    "image backbones (pixel_values) and text backbones (input_ids)."
                )
            # A checkpoint saved without the base model's pooler (e.g. from a masked-LM model) leaves it random:
            # pool otherwise unless asked for the pooler, which then is an error below.
            pooler_loaded = info is None or not any(k.startswith("pooler.") for k in info["missing_keys"])
            pooling = (
                spec.pooling
                if spec.pooling not in ("auto", "timm")
                else _default_pooling(model, name, pooler_loaded=pooler_loaded)
            )
            if info is not None:
                _check_loaded(name, model, info, unused=("pooler.",) if pooling != "pooler" else ())
            backbone = TransformersBackbone(model, pooling)
            stored = {"library": "transformers", "modality": backbone.modality, "config": model.config.to_dict()}
            if backbone.modality == "image":
                stored["data_config"] = _image_processor_data_config(name, model)
            pairs = [(backbone, stored)]
    elif timm.is_model(name):
        pairs = [_load_timm(name, spec)]
    else:
        raise _unknown_backbone_error(name, "not a local directory, Hub id or timm architecture")

    for module, stored in pairs:
        stored.setdefault("source", name)
        stored["pooling"] = getattr(module, "pooling", None) or stored.get("pooling") or "timm"
        if stored["library"] == "timm":
            stored["pooling"] = spec.pooling if spec.pooling in _TIMM_POOLS else stored.get("pooling", "timm")
            if stored["pooling"] == "auto":
                stored["pooling"] = "timm"
        stored["feature_dim"] = module.feature_dim
        stored["freeze"] = spec.freeze if spec.freeze is not None else stored.get("freeze")
        stored.setdefault("pretrained", bool(spec.pretrained or spec.weights))
    return pairs


def _load_offloaded_blocks_whole(model: nn.Module) -> None:
    """With `device_map` offload, accelerate hooks each module that holds weights and loads them when that module is
    called. timm models (`forward_features` bypasses the top module's call, so e.g. ViT's `pos_embed` is never
    loaded) and `nn.MultiheadAttention` (it reads `out_proj.weight` without calling `out_proj`) use weights of modules
    that are not called: each offloaded timm backbone and fusion is loaded whole when it is called instead (what
    accelerate's `preload_module_classes` does; `from_pretrained` does not pass it). They are never split across
    devices (`_no_split_modules`), so the whole block is offloaded or none of it."""
    from accelerate.hooks import AlignDevicesHook, SequentialHook, attach_align_device_hook, remove_hook_from_module

    def align_hooks(module):
        hook = getattr(module, "_hf_hook", None)
        hooks = hook.hooks if isinstance(hook, SequentialHook) else [hook]
        return [h for h in hooks if isinstance(h, AlignDevicesHook) and h.offload and h.weights_map is not None]

    for name, module in list(model.named_modules()):
        if not isinstance(module, (TimmBackbone, FeatureFusion)):
            continue
        hooks = [hook for submodule in module.modules() for hook in align_hooks(submodule)]
        if not hooks:
            continue
        hook = hooks[0]
        remove_hook_from_module(module, recurse=True)
        attach_align_device_hook(
            module,
            execution_device=hook.execution_device,
            offload=True,
            weights_map=hook.weights_map.dataset,  # the model-wide map (each hook's is prefixed with its module)
            offload_buffers=hook.offload_buffers,
            module_name=name,
            preload_module_classes=[type(module).__name__],
            skip_keys=hook.skip_keys,
            tied_params_map=hook.tied_params_map,
        )


def _select_hidden_states(hidden_states: tuple, output_hidden_states: bool | list[int]) -> tuple | None:
    """All hidden states (True), none (False), or those at the given indices with None elsewhere."""
    if output_hidden_states is True:
        return hidden_states
    if output_hidden_states is False:
        return None
    count = len(hidden_states)
    out_of_range = [i for i in output_hidden_states if not -count <= i < count]
    if out_of_range:
        raise ValueError(f"output_hidden_states indices {out_of_range} out of range: there are {count} hidden states.")
    kept = {i % count for i in output_hidden_states}
    return tuple(state if i in kept else None for i, state in enumerate(hidden_states))


def _checkpoint_options(checkpoint_function, every_n_layers: int) -> dict:
    """What `activation_checkpointing_enable` asked for, read back from the checkpoint function it built: a
    `functools.partial` of `torch.utils.checkpoint.checkpoint` with the user's keyword arguments (or of its host-offload
    wrapper with `offload=True`)."""
    import functools

    from transformers import modeling_utils

    options = {"every_n_layers": every_n_layers}
    if isinstance(checkpoint_function, functools.partial):
        options.update(checkpoint_function.keywords)
        if checkpoint_function.func is not modeling_utils.checkpoint:
            options["offload"] = True
    return options


def _validated_config(**kwargs: Any) -> TransferConfig:
    """`TransferConfig(**kwargs)`, with a bad option reported as a plain `ValueError` naming the valid ones."""
    try:
        return TransferConfig(**kwargs)
    except Exception as err:
        cause = err.__cause__ if isinstance(err.__cause__, (ValueError, TypeError)) else None
        if cause is None and type(err).__name__.startswith("Strict"):
            raise ValueError(str(err)) from err
        if cause is not None:
            raise ValueError(str(cause)) from err
        raise


def assign_input_suffixes(entries: list[BackboneEntry]) -> None:
    """Gives each backbone of a new model its input suffix (see `input_suffixes`), replacing any it had in the model
    it was loaded from: backbones share `pixel_values` when their preprocessing is the same."""
    for entry in entries:
        entry.pop("input_suffix", None)
    for entry, suffix in zip(entries, input_suffixes(entries)):
        entry["input_suffix"] = suffix


# --------------------------------------------------------------------------------------------------------------------
# Fusion and heads
# --------------------------------------------------------------------------------------------------------------------


class FeatureFusion(nn.Module):
    """Projects each backbone's features to a common width and fuses them.

    `concat` concatenates; `weighted_sum` computes Σ αᵢ fᵢ with α = softmax(learned logits); `gated` weighs the
    backbones per sample with softmax gates computed from all features; `attention` runs self-attention across the
    backbones' features (one token each, plus a learned backbone embedding) and averages the tokens.
    """

    def __init__(self, method: str, input_dims: list[int], dim: int, num_heads: int = 4):
        super().__init__()
        self.method = method
        count = len(input_dims)
        self.projections = nn.ModuleList(nn.Linear(d, dim) for d in input_dims)
        if method == "weighted_sum":
            self.fusion_logits = nn.Parameter(torch.zeros(count))
        elif method == "gated":
            self.gate = nn.Linear(count * dim, count)
        elif method == "attention":
            self.backbone_embeddings = nn.Parameter(torch.zeros(count, dim))
            self.attention = nn.MultiheadAttention(dim, num_heads, batch_first=True)
            self.norm = nn.LayerNorm(dim)
        self.output_dim = count * dim if method == "concat" else dim

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        projected = [projection(f) for projection, f in zip(self.projections, features)]
        if self.method == "concat":
            return torch.cat(projected, dim=-1)
        stacked = torch.stack(projected, dim=1)  # (batch, backbones, dim)
        if self.method == "weighted_sum":
            return torch.einsum("n,bnd->bd", self.fusion_logits.softmax(0), stacked)
        if self.method == "gated":
            gates = self.gate(torch.cat(projected, dim=-1)).softmax(-1)
            return (gates.unsqueeze(-1) * stacked).sum(1)
        tokens = stacked + self.backbone_embeddings
        attended, _ = self.attention(tokens, tokens, tokens, need_weights=False)
        return self.norm(tokens + attended).mean(1)

    def weights(self) -> torch.Tensor | None:
        """The softmax-normalised backbone weights of `weighted_sum` (None for other methods)."""
        return self.fusion_logits.detach().softmax(0) if self.method == "weighted_sum" else None


class ClassificationHead(nn.Module):
    """Linear or MLP head: [Dropout → Linear → activation] × hidden layers → Dropout → Linear."""

    def __init__(self, input_dim: int, num_labels: int, kind: str, hidden_sizes=None, activation="relu", dropout=0.0):
        super().__init__()
        layers: list[nn.Module] = []
        width = input_dim
        for hidden in hidden_sizes or [] if kind == "mlp" else []:
            layers += [nn.Dropout(dropout), nn.Linear(width, hidden), _ACTIVATIONS[activation]()]
            width = hidden
        layers += [nn.Dropout(dropout), nn.Linear(width, num_labels)]
        self.layers = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features)


# --------------------------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------------------------


def _class_under_fsdp2(model: nn.Module) -> type | None:
    """The model's own class when FSDP2's `fully_shard` has swapped in its `FSDP<Name>` subclass, else None."""
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # torch without FSDP2
        return None
    if not isinstance(model, FSDPModule):
        return None
    return next(c for c in type(model).__mro__[1:] if not issubclass(c, FSDPModule))


class TransferPreTrainedModel(PreTrainedModel):
    """Weights initialisation, freezing and loading shared by the hf_transfer models."""

    config: TransferConfig
    config_class = TransferConfig
    base_model_prefix = "transfer"
    main_input_name = "pixel_values"
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    accepts_loss_kwargs = False
    # The attention implementation is dispatched to every transformers backbone (`set_attn_implementation` walks
    # submodels, as in composite models such as VisionTextDualEncoder); the flags say what the model as a whole can
    # be asked for, each backbone then checks its own support. The fusion's own attention is torch's SDPA.
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    # Never split a timm model, a fusion or a head across devices (transformers backbones add their own blocks, e.g.
    # BertLayer, through their `_no_split_modules`).
    _no_split_modules = ["TimmBackbone", "FeatureFusion", "ClassificationHead"]

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        if getattr(module, "_hf_transfer_timm", False):
            return  # timm layers keep timm's own init (pretrained or not); see `initialize_weights`
        if isinstance(module, nn.Linear):
            init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, nn.MultiheadAttention):
            module._reset_parameters()
        elif isinstance(module, FeatureFusion):
            for name in ("fusion_logits", "backbone_embeddings"):
                if hasattr(module, name):
                    init.zeros_(getattr(module, name))

    def initialize_weights(self) -> None:
        """`PreTrainedModel.initialize_weights` (`_init_weights` on every module not yet initialised), then timm's own
        init for the timm tensors a checkpoint lacked.

        transformers calls this after `from_pretrained` has loaded a checkpoint, to initialise the tensors it did not
        hold (a new head, new fusion layers; a transformers backbone's own `_init_weights` covers its tensors). It
        initialises rather than raises, and names those tensors in its load report: a checkpoint legitimately lacks
        some tensors (a new head), and timm's init is what a freshly built timm model would have, as for any new
        layer. `TransferModel.from_backbones` (`load_backbones`), by contrast, refuses a backbone source that misses a
        weight: there a missing tensor means the pretrained backbone is not what it claims to be.
        """
        super().initialize_weights()
        for module in self.modules():
            if isinstance(module, TimmBackbone):
                initialised = module.init_missing_tensors()
                persistent = set(module.model.state_dict())
                if any(name in persistent for name in initialised):
                    logger.warning(
                        "timm tensors missing from the checkpoint got timm's own random init: %s",
                        ", ".join(name for name in initialised if name in persistent),
                    )

    def save_pretrained(self, save_directory, *args, **kwargs):
        """`PreTrainedModel.save_pretrained`, plus this code and an `auto_map` for every Auto class, so that the
        saved (or pushed) model also loads with `trust_remote_code=True` where hf_transfer is not installed.

        Under FSDP2 (`fully_shard`), every rank must call it: the sharded parameters are gathered into one full
        state dict (a collective), and the main process writes it with this model's own code (not torch's
        `FSDP...` wrapper class, whose module is torch's).
        """
        self.config.auto_map = dict(AUTO_MAP)
        plain_class = _class_under_fsdp2(self)
        if plain_class is None:
            result = super().save_pretrained(save_directory, *args, **kwargs)
        else:
            if kwargs.get("state_dict") is None:
                from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

                options = StateDictOptions(full_state_dict=True, cpu_offload=True)
                kwargs["state_dict"] = get_model_state_dict(self, options=options)
            fsdp_class = self.__class__
            self.__class__ = plain_class  # what save_pretrained names in auto_map and copies as code
            try:
                result = super().save_pretrained(save_directory, *args, **kwargs)
            finally:
                self.__class__ = fsdp_class
        if not self.name_or_path or self.name_or_path == self.__dict__.get("_hf_transfer_saved_to"):
            # A model built with `from_backbones` exists nowhere else: from now on its latest save folder is where it
            # comes from (the Trainer may rotate older checkpoints away), so a PEFT adapter saved on it records a
            # base model that `AutoPeftModel...` can load.
            self.name_or_path = self.config._name_or_path = self._hf_transfer_saved_to = str(save_directory)
        return result

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """`PreTrainedModel.from_pretrained`, then the freezing recorded in the config is applied again."""
        loaded = super().from_pretrained(*args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        model.apply_freezing()
        if getattr(model, "hf_device_map", None):
            _load_offloaded_blocks_whole(model)
        return loaded

    @classmethod
    def from_backbones(
        cls,
        backbones: "str | BackboneSpec | list[str | BackboneSpec]",
        *,
        pretrained: bool = True,
        pooling: str = "auto",
        image_size: int | None = None,
        **config_kwargs: Any,
    ) -> "TransferPreTrainedModel":
        """Builds a model on pretrained backbones, downloading each backbone once.

        Args:
            backbones: One backbone or a list (several are fused). Each is a name (see `BackboneSpec.name`) or a
                `BackboneSpec`.
            pretrained: Load pretrained weights for backbones given by name (`False`: random init).
            pooling: Pooling for backbones given by name (`"auto"` picks what fits each backbone).
            image_size: Square input size (px) of every image backbone, instead of each one's pretrained size.
            **config_kwargs: `TransferConfig` arguments: `num_labels`, `id2label`, `problem_type`, `head`,
                `head_hidden_sizes`, `head_dropout`, `fusion`, `fusion_dim`, `freeze`, `num_frozen_groups`, ...

        Example:
            ```python
            >>> from hf_transfer import TransferForImageClassification
            >>> model = TransferForImageClassification.from_backbones(
            ...     "timm:test_resnet", pretrained=False, num_labels=10, head="mlp", head_hidden_sizes=[64]
            ... )
            ```
        """
        _validated_config(**config_kwargs)  # fail on a bad option before any download
        if pooling not in POOLING_MODES:
            raise ValueError(f"Unknown pooling {pooling!r}; valid values are: {', '.join(POOLING_MODES)}.")
        if image_size is not None and image_size < 1:
            raise ValueError(f"image_size must be >= 1, got {image_size}.")
        items = backbones if isinstance(backbones, (list, tuple)) else [backbones]
        if not items:
            raise ValueError("from_backbones needs at least one backbone.")
        modules, specs = [], []
        for item in items:
            spec = (
                item
                if isinstance(item, BackboneSpec)
                else BackboneSpec(str(item), pretrained=pretrained, pooling=pooling)
            )
            for module, stored in load_backbones(spec):
                modules.append(module)
                specs.append(stored)
        assign_input_suffixes(specs)
        config = _validated_config(backbones=specs, **config_kwargs)
        if image_size:
            config.set_image_size(image_size)
        return cls(config, backbones=modules)

    def apply_freezing(self) -> None:
        """Sets `requires_grad` from the config: frozen backbones or first layer groups get no gradients."""
        transfer = self.get_base_model()
        for index, backbone in enumerate(transfer.backbones):
            freeze = self.config.backbone_freeze(index)
            groups = backbone.layer_groups()
            if freeze == "backbone":
                frozen = len(groups)
            elif freeze == "none":
                frozen = 0
            else:
                frozen = int(freeze)
                if frozen > len(groups):
                    raise ValueError(
                        f"Cannot freeze {frozen} layer groups of backbone {index} "
                        f"({self.config.backbones[index]['source']}): it has {len(groups)}. "
                        "Use freeze='backbone' to freeze all of it."
                    )
            transfer.set_trainable_groups(index, trainable_from=frozen)

    def get_base_model(self) -> "TransferModel":
        return getattr(self, self.base_model_prefix, self)

    def _set_gradient_checkpointing(self, enable: bool = True, gradient_checkpointing_func=None, every_n_layers=1):
        """Called by `gradient_checkpointing_enable` / `activation_checkpointing_enable` (and their `disable`):
        each backbone checkpoints in its own library's way. transformers backbones get transformers' checkpoint
        function (with `gradient_checkpointing_kwargs` and `offload`) and `every_n_layers`; timm backbones refuse what
        timm cannot honour. `is_gradient_checkpointing` then reads each backbone's `gradient_checkpointing` flag."""
        backbones = list(self.get_base_model().backbones)
        options = _checkpoint_options(gradient_checkpointing_func, every_n_layers)
        if enable:
            for backbone in backbones:  # refuse before changing anything
                if isinstance(backbone, TimmBackbone):
                    backbone.check_checkpoint_options(options)
        for backbone in backbones:
            if isinstance(backbone, TransformersBackbone):
                backbone.set_grad_checkpointing(enable, gradient_checkpointing_func, every_n_layers)
            else:
                backbone.set_grad_checkpointing(enable, options.get("use_reentrant") if enable else None)

    def _text_backbone(self, purpose: str) -> "TransformersBackbone":
        """The model's only text backbone (token embeddings belong to it)."""
        base = self.get_base_model()
        text = [b for b in base.backbones if isinstance(b, TransformersBackbone) and b.modality == "text"]
        if len(text) != 1 or len(base.backbones) != 1:
            kinds = ", ".join(f"{spec['modality']} ({spec['source']})" for spec in self.config.backbones)
            raise NotImplementedError(
                f"{purpose} is defined for a model on a single text backbone; this one has: {kinds}. "
                "Use the text backbone directly: `model.get_base_model().backbones[i].model`."
            )
        return text[0]

    def get_input_embeddings(self) -> nn.Module:
        """The token embeddings of the (single) text backbone."""
        return self._text_backbone("get_input_embeddings").model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self._text_backbone("set_input_embeddings").model.set_input_embeddings(value)

    def resize_token_embeddings(
        self, new_num_tokens: int | None = None, pad_to_multiple_of: int | None = None, mean_resizing: bool = True
    ) -> nn.Embedding:
        """Resizes the token embeddings of the (single) text backbone (after adding tokens to its tokenizer), and
        records the new vocabulary size in the stored backbone config so that the saved model reloads.

        Args:
            new_num_tokens: The new vocabulary size (`None`: only return the embeddings).
            pad_to_multiple_of: Round the size up to a multiple of this.
            mean_resizing: Initialise new rows from the mean and covariance of the old ones.

        Returns:
            The (new) token embedding module.
        """
        backbone = self._text_backbone("resize_token_embeddings").model
        embeddings = backbone.resize_token_embeddings(new_num_tokens, pad_to_multiple_of, mean_resizing)
        self.config.backbones[0]["config"]["vocab_size"] = self.vocab_size = backbone.config.vocab_size
        return embeddings

    def _sync_attn_implementation(self) -> None:
        """Gives every transformers backbone the model's attention implementation, and records what really runs.

        A backbone that cannot run the requested implementation raises, except for SDPA (the default, which
        transformers resolves before the backbones exist): a backbone without SDPA support falls back to eager with a
        warning, and when no backbone runs SDPA the model reports `"eager"`.
        """
        requested = self.config._attn_implementation
        running = []
        for backbone in self.get_base_model().backbones:
            if not isinstance(backbone, TransformersBackbone):
                continue
            model = backbone.model
            try:
                implementation = model.get_correct_attn_implementation(requested)
            except (ValueError, ImportError) as err:
                if requested != "sdpa":
                    raise
                logger.warning("Backbone %s runs eager attention: %s", type(model).__name__, err)
                implementation = "eager"
            model.config._attn_implementation_internal = implementation
            running.append(implementation)
        if running and len(set(running)) == 1 and running[0] != requested:
            self.config._attn_implementation_internal = running[0]


class TransferModel(TransferPreTrainedModel):
    """Backbone(s) and fusion: inputs → one feature vector per example (`pooler_output`).

    Each backbone reads its own inputs: image backbones `pixel_values{suffix}`, text backbones
    `input_ids{suffix}` / `attention_mask{suffix}` / `token_type_ids{suffix}`, with the suffix stored in the config
    (empty for the first backbone of a modality). A backbone whose parameters are all frozen runs without building
    an autograd graph.
    """

    def __init__(self, config: TransferConfig, backbones: list[nn.Module] | None = None):
        super().__init__(config)
        if not config.backbones:
            raise ValueError("TransferConfig.backbones is empty: build the model with `from_backbones(...)`.")
        self.backbones = nn.ModuleList(backbones or [build_backbone(spec) for spec in config.backbones])
        input_dims = [spec["feature_dim"] for spec in config.backbones]
        if len(input_dims) > 1:
            self.fusion = FeatureFusion(config.fusion, input_dims, config.fusion_dim, config.fusion_num_heads)
            self.feature_dim = self.fusion.output_dim
        else:
            self.fusion = None
            self.feature_dim = input_dims[0]
        self.main_input_name = TEXT_INPUTS[0] if config.backbones[0]["modality"] == "text" else IMAGE_INPUT
        self._sync_attn_implementation()
        self.post_init()
        self.apply_freezing()

    def input_names(self) -> list[str]:
        """Every input key the backbones read."""
        names = [name for entry in self.config.backbones for name in backbone_input_names(entry)]
        return list(dict.fromkeys(names))

    def cached_feature_names(self) -> list[str]:
        """Input keys that carry a backbone's precomputed pooled features instead of its raw inputs."""
        return [cached_features_key(index) for index in range(len(self.backbones))]

    def set_trainable_groups(self, index: int, trainable_from: int) -> None:
        """Freezes the first `trainable_from` layer groups of backbone `index` and unfreezes the others."""
        backbone = self.backbones[index]
        parameters = dict(backbone.named_parameters())
        for group_index, names in enumerate(backbone.layer_groups()):
            for name in names:
                parameters[name].requires_grad_(
                    group_index >= trainable_from and name not in backbone.unused_parameters
                )

    def fusion_weights(self) -> dict[str, float] | None:
        """Learned `weighted_sum` weights per backbone source (None for other fusions or a single backbone)."""
        weights = self.fusion.weights() if self.fusion is not None else None
        if weights is None:
            return None
        return {f"{i}:{spec['source']}": float(w) for i, (spec, w) in enumerate(zip(self.config.backbones, weights))}

    def backbone_inputs(self, index: int, inputs: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The inputs of backbone `index` in a batch, under the names the backbone takes (suffix removed).

        Args:
            index: The backbone's position in `config.backbones`.
            inputs: A batch: `pixel_values{suffix}`, `input_ids{suffix}`... for every backbone.

        Returns:
            E.g. `{"input_ids": ..., "attention_mask": ...}` for a text backbone.

        Raises:
            ValueError: The batch lacks the backbone's main input, naming what the model reads.
        """
        spec = self.config.backbones[index]
        suffix = spec["input_suffix"]
        selected = {
            key.removesuffix(suffix) if suffix else key: inputs[key]
            for key in backbone_input_names(spec, extra=True)
            if inputs.get(key) is not None
        }
        required = (IMAGE_INPUT,) if spec["modality"] == "image" else ("input_ids", "inputs_embeds")
        if not any(name in selected for name in required):
            given = sorted(k for k, v in inputs.items() if v is not None)
            raise ValueError(
                f"Missing input `{required[0]}{suffix}` for backbone {index} ({spec['source']}, {spec['modality']}). "
                f"This model reads: {', '.join(self.input_names())}; got: {', '.join(given) or 'nothing'}. "
                "(With the Trainer, set `remove_unused_columns=False` so that it keeps every input key.)"
            )
        return selected

    def _accepted_inputs(self) -> set[str]:
        return {name for entry in self.config.backbones for name in backbone_input_names(entry, extra=True)}

    def _check_output_flags(self, output_attentions: bool, output_hidden_states: Any) -> None:
        valid_list = isinstance(output_hidden_states, (list, tuple)) and all(
            isinstance(i, int) and not isinstance(i, bool) for i in output_hidden_states
        )
        if not isinstance(output_hidden_states, bool) and not valid_list:
            raise ValueError(
                f"output_hidden_states={output_hidden_states!r}: pass True, False, or a list of indices into "
                "hidden_states (one pooled feature tensor per backbone, then the fused features)."
            )
        if not output_attentions:
            return
        # As in transformers, a backbone running SDPA warns and returns no attention maps (eager attention has them).
        if not any(isinstance(b, TransformersBackbone) for b in self.backbones):
            raise ValueError(
                "output_attentions=True: this model's backbones are timm models, which return no attention maps."
            )

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **backbone_inputs: torch.Tensor,
    ) -> BaseModelOutputWithPooling | tuple:
        r"""
        position_ids, inputs_embeds: passed to the (first) text backbone; `inputs_embeds` replaces `input_ids`.
        output_attentions (`bool`, *optional*): also return the attention maps of every transformers backbone
            (timm backbones have none), one tuple of layers after the other. Backbones must run eager attention
            (`attn_implementation="eager"`) to have them.
        output_hidden_states (`bool` or `list[int]`, *optional*): also return the pooled features of each backbone;
            with a list of indices (negative ones count from the end), the others are None, as in transformers.
        backbone_inputs: the inputs of further backbones with their own preprocessing, e.g. `pixel_values_1`, or
            `backbone_features_{i}`: backbone i's precomputed pooled features, used instead of running it.
        Defaults of `output_attentions`, `output_hidden_states` and `return_dict` come from the config.
        """
        inputs = dict(
            pixel_values=pixel_values,
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
        )
        output_attentions = self.config.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = (
            self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        )
        return_dict = self.config.return_dict if return_dict is None else return_dict
        self._check_output_flags(output_attentions, output_hidden_states)
        # Optional arguments passed as None (e.g. `head_mask=None` from older callers) carry nothing.
        backbone_inputs = {key: value for key, value in backbone_inputs.items() if value is not None}
        cached = {key: backbone_inputs.pop(key) for key in list(backbone_inputs) if is_cached_features_key(key)}
        unexpected = set(backbone_inputs) - self._accepted_inputs()
        unexpected |= {key for key in cached if key not in self.cached_feature_names()}
        if unexpected:
            raise TypeError(
                f"Unexpected inputs {sorted(unexpected)}; this model reads: {', '.join(self.input_names())} "
                f"(or precomputed {', '.join(self.cached_feature_names())})."
            )
        inputs.update(backbone_inputs)
        features, attentions = [], []
        for index, backbone in enumerate(self.backbones):
            if cached_features_key(index) in cached:  # precomputed by a frozen backbone (hf_transfer.features)
                features.append(cached[cached_features_key(index)])
                continue
            selected = self.backbone_inputs(index, inputs)
            trainable = torch.is_grad_enabled() and not is_frozen(backbone)
            with torch.set_grad_enabled(trainable):
                if output_attentions and isinstance(backbone, TransformersBackbone):
                    pooled, backbone_attentions = backbone(selected, output_attentions=True)
                    attentions.extend(backbone_attentions)
                else:
                    pooled = backbone(selected)
            features.append(pooled)
        pooled = self.fusion(features) if self.fusion is not None else features[0]
        outputs = BaseModelOutputWithPooling(
            last_hidden_state=None,
            pooler_output=pooled,
            hidden_states=_select_hidden_states(tuple(features), output_hidden_states),
            attentions=tuple(attentions) if output_attentions else None,
        )
        return outputs if return_dict else outputs.to_tuple()


class TransferForClassification(TransferPreTrainedModel):
    """Backbone(s), fusion and a replaceable head; the loss follows `config.problem_type`."""

    _output_class = ImageClassifierOutput

    def __init__(self, config: TransferConfig, backbones: list[nn.Module] | None = None):
        super().__init__(config)
        self.transfer = TransferModel(config, backbones=backbones)
        self.main_input_name = self.transfer.main_input_name
        self.num_labels = config.num_labels
        self.head = self._build_head()
        self.post_init()
        self.apply_freezing()

    def _build_head(self) -> ClassificationHead:
        config = self.config
        return ClassificationHead(
            self.transfer.feature_dim,
            config.num_labels,
            config.head,
            config.head_hidden_sizes,
            config.head_activation,
            config.head_dropout,
        )

    def replace_head(
        self,
        num_labels: int,
        id2label: dict[int, str] | None = None,
        problem_type: str | None = None,
        **head_options: Any,
    ) -> None:
        """Replaces the head with a freshly initialised one, keeping the backbones and the fusion.

        Args:
            num_labels: Number of outputs of the new head (e.g. 100 for CIFAR-100 after CIFAR-10).
            id2label: Label names of the new task.
            problem_type: The new task's problem type (kept when not given).
            **head_options: `head`, `head_hidden_sizes`, `head_activation`, `head_dropout` to change the head's shape.
        """
        if num_labels < 1:
            raise ValueError(f"num_labels must be >= 1, got {num_labels}.")
        options = {
            k: getattr(self.config, k) for k in ("head", "head_hidden_sizes", "head_activation", "head_dropout")
        }
        unknown = set(head_options) - set(options)
        if unknown:
            raise ValueError(f"Unknown head options {sorted(unknown)}; valid ones are: {', '.join(options)}.")
        options.update(head_options)
        _validated_config(num_labels=num_labels, **options)  # validates the new head
        for key, value in options.items():
            setattr(self.config, key, value)
        self.config.id2label = (
            dict(enumerate(id2label.values() if isinstance(id2label, dict) else id2label))
            if id2label
            else {i: f"LABEL_{i}" for i in range(num_labels)}
        )
        self.config.label2id = {name: i for i, name in self.config.id2label.items()}
        self.config.num_labels = self.num_labels = num_labels
        if problem_type is not None:
            self.config.problem_type = problem_type
        device = next(self.parameters()).device
        self.head = self._build_head().to(device)
        self.head.apply(self._init_weights)

    def fusion_weights(self) -> dict[str, float] | None:
        """See `TransferModel.fusion_weights`."""
        return self.transfer.fusion_weights()

    def compute_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """transformers' classification loss (what TimmWrapper and ViT use): cross-entropy, BCE-with-logits or MSE
        by `config.problem_type`, which it infers from the labels when unset. Computed in float32, so that
        half-precision logits do not cost the loss its precision.

        Args:
            logits: `(batch, num_labels)` head outputs.
            labels: See `forward`.

        Returns:
            The mean loss over the batch.
        """
        if self.num_labels == 1 or self.config.problem_type in ("regression", "multi_label_classification"):
            labels = labels.float()  # MSE and BCE take float targets; integer targets (multi-hot, scores) are common
        return ForSequenceClassificationLoss(labels, logits.float(), self.config)

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **backbone_inputs: torch.Tensor,
    ) -> ImageClassifierOutput | SequenceClassifierOutput | tuple:
        r"""
        labels (`torch.Tensor`, *optional*):
            Class indices `(batch,)` for single-label classification, multi-hot `(batch, num_labels)` floats for
            multi-label classification, or targets for regression. When given, the output holds the loss.
        output_hidden_states (`bool` or `list[int]`, *optional*): also return each backbone's pooled features, then
            the fused ones (with a list of indices, only those; the others are None, as in transformers).
        backbone_inputs: the inputs of further backbones with their own preprocessing, e.g. `pixel_values_1`, or
            `backbone_features_{i}`: backbone i's precomputed pooled features, used instead of running it.
        See `TransferModel.forward` for the other arguments.
        """
        return self._classify(
            labels,
            output_attentions,
            output_hidden_states,
            return_dict,
            pixel_values=pixel_values,
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            **backbone_inputs,
        )

    def _classify(self, labels, output_attentions, output_hidden_states, return_dict, **inputs):
        output_hidden_states = (
            self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        )
        return_dict = self.config.return_dict if return_dict is None else return_dict
        self.transfer._check_output_flags(False, output_hidden_states)
        outputs = self.transfer(
            **inputs,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states is not False,  # indices select from features + fused below
            return_dict=True,
        )
        pooled = outputs.pooler_output
        logits = self.head(pooled.to(self.head.layers[-1].weight.dtype))
        loss = self.compute_loss(logits, labels) if labels is not None else None
        hidden_states = None
        if output_hidden_states is not False:
            hidden_states = _select_hidden_states((*outputs.hidden_states, pooled), output_hidden_states)
        output = self._output_class(
            loss=loss, logits=logits, hidden_states=hidden_states, attentions=outputs.attentions
        )
        return output if return_dict else output.to_tuple()


class TransferForImageClassification(TransferForClassification):
    """`TransferForClassification` registered with `AutoModelForImageClassification` (image pipelines)."""

    _output_class = ImageClassifierOutput

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **backbone_inputs: torch.Tensor,
    ) -> ImageClassifierOutput | tuple:
        r"""
        `pixel_values` first, then `labels`, as transformers' image classifiers (TimmWrapper, ViT) take them; the
        inputs of further backbones (`pixel_values_1`, `input_ids`...) by keyword. See
        `TransferForClassification.forward`.
        """
        return self._classify(
            labels, output_attentions, output_hidden_states, return_dict, pixel_values=pixel_values, **backbone_inputs
        )


class TransferForSequenceClassification(TransferForClassification):
    """`TransferForClassification` registered with `AutoModelForSequenceClassification` (text pipelines)."""

    _output_class = SequenceClassifierOutput
    main_input_name = "input_ids"

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **backbone_inputs: torch.Tensor,
    ) -> SequenceClassifierOutput | tuple:
        r"""
        The arguments in the order `BertForSequenceClassification` takes them, so that `model(input_ids,
        attention_mask, token_type_ids)` (and `jit.trace` / ONNX export with an argument tuple) reads each input as
        what it is; the inputs of further backbones (`input_ids_1`, `pixel_values`...) by keyword. See
        `TransferForClassification.forward`.
        """
        return self._classify(
            labels,
            output_attentions,
            output_hidden_states,
            return_dict,
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            **backbone_inputs,
        )


AUTO_MAP = {
    "AutoConfig": "configuration_transfer.TransferConfig",
    "AutoModel": "modeling_transfer.TransferModel",
    "AutoModelForImageClassification": "modeling_transfer.TransferForImageClassification",
    "AutoModelForSequenceClassification": "modeling_transfer.TransferForSequenceClassification",
}
TransferModel.register_for_auto_class("AutoModel")
TransferForImageClassification.register_for_auto_class("AutoModelForImageClassification")
TransferForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")

__all__ = [
    "AUTO_MAP",
    "BackboneSpec",
    "ClassificationHead",
    "FeatureFusion",
    "TimmBackbone",
    "TransformersBackbone",
    "TransferPreTrainedModel",
    "TransferModel",
    "TransferForClassification",
    "TransferForImageClassification",
    "TransferForSequenceClassification",
    "load_backbones",
    "load_weights_file",
]
