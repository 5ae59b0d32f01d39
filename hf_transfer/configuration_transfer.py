# Copyright 2026 The hf_transfer authors. Licensed under the Apache License, Version 2.0.
"""Configuration of hf_transfer models: one or more pretrained backbones, an optional fusion, and a head.

This file imports only `transformers` (and `huggingface_hub`, which transformers is built on) so that a pushed
checkpoint can carry it as remote code.
"""

from collections.abc import Sequence
from typing import Any, Literal, TypedDict

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

FUSION_METHODS = ("concat", "weighted_sum", "gated", "attention")
HEAD_TYPES = ("linear", "mlp")
FREEZE_MODES = ("none", "backbone", "partial")
HEAD_ACTIVATIONS = ("relu", "gelu", "silu", "tanh")
PROBLEM_TYPES = ("single_label_classification", "multi_label_classification", "regression")
POOLING_MODES = ("auto", "timm", "cls", "pooler", "mean", "max", "avg", "avgmax", "catavgmax", "token")
LIBRARIES = ("timm", "transformers")
MODALITIES = ("image", "text")

# Input naming: the batch keys each backbone reads. An image backbone reads `pixel_values{suffix}`, a text backbone
# the tokenizer outputs `input_ids{suffix}`... (and, when given, the extra inputs transformers and PEFT pass;
# `inputs_embeds` replaces `input_ids`). `backbone_features_{i}` carries backbone i's pooled features, computed once
# by a frozen backbone and passed instead of its raw inputs (hf_transfer.features).
IMAGE_INPUT = "pixel_values"
TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
TEXT_EXTRA_INPUTS = ("position_ids", "inputs_embeds")
CACHED_FEATURES_PREFIX = "backbone_features_"


class DataConfig(TypedDict, total=False):
    """An image backbone's preprocessing, as timm's `resolve_data_config` gives it."""

    input_size: list[int]  # [channels, height, width]
    mean: list[float]
    std: list[float]
    interpolation: str
    crop_pct: float
    crop_mode: str


class BackboneEntry(TypedDict, total=False):
    """One entry of `TransferConfig.backbones` (see its docstring). A dict, so that saved configs load as they are
    and further keys (written by newer versions) travel along; `TransferConfig` fills the defaults on load."""

    source: str
    library: Literal["timm", "transformers"]
    modality: Literal["image", "text"]
    config: dict[str, Any]
    pooling: str
    feature_dim: int
    freeze: str | int | None
    pretrained: bool
    input_suffix: str
    data_config: DataConfig
    processor_source: dict[str, str]  # {"path": saved hf_transfer model, "input_suffix": its suffix there}


def input_suffixes(entries: Sequence[BackboneEntry]) -> list[str]:
    """The input suffix of each backbone: the stored `input_suffix`, else the rule `from_backbones` records.

    The first backbone of a modality reads the plain keys (suffix `""`), as do later image backbones with the same
    `data_config` (they share one input); any other backbone `i` reads its own keys, suffix `_{i}` (its index among
    all backbones).
    """
    suffixes, first_image, seen_text = [], None, False
    for i, entry in enumerate(entries):
        if entry.get("modality") == "image":
            first_image = entry if first_image is None else first_image
            rule = "" if entry.get("data_config") == first_image.get("data_config") else f"_{i}"
        else:
            rule = f"_{i}" if seen_text else ""
            seen_text = True
        stored = entry.get("input_suffix")
        suffixes.append(rule if stored is None else stored)
    return suffixes


def backbone_input_names(entry: BackboneEntry, extra: bool = False) -> list[str]:
    """The batch keys a backbone reads: `pixel_values{suffix}`, or `input_ids{suffix}`, `attention_mask{suffix}`,
    `token_type_ids{suffix}` (and with `extra`, `position_ids{suffix}`, `inputs_embeds{suffix}`)."""
    names = (IMAGE_INPUT,) if entry["modality"] == "image" else TEXT_INPUTS + (TEXT_EXTRA_INPUTS if extra else ())
    return [f"{name}{entry['input_suffix']}" for name in names]


def cached_features_key(index: int) -> str:
    """The input key of backbone `index`'s precomputed pooled features."""
    return f"{CACHED_FEATURES_PREFIX}{index}"


def is_cached_features_key(key: str) -> bool:
    """Whether `key` carries a backbone's precomputed pooled features (`backbone_features_{i}`)."""
    return key.startswith(CACHED_FEATURES_PREFIX)


def _is_suffixed(key: str, name: str) -> bool:
    return key == name or (key.startswith(f"{name}_") and key[len(name) + 1 :].isdigit())


def is_text_input(key: str) -> bool:
    """Whether `key` is a tokenizer output some text backbone reads (`input_ids`, `attention_mask_1`...)."""
    return any(_is_suffixed(key, name) for name in TEXT_INPUTS)


def is_image_input(key: str) -> bool:
    """Whether `key` is the pixels some image backbone reads (`pixel_values`, `pixel_values_1`...)."""
    return _is_suffixed(key, IMAGE_INPUT)


def _check_choice(name: str, value: Any, valid: tuple) -> None:
    if value not in valid:
        raise ValueError(f"Unknown {name} {value!r}; valid values are: {', '.join(map(str, valid))}.")


@strict
class TransferConfig(PreTrainedConfig):
    r"""
    Configuration of a transfer-learning model built on one or more pretrained backbones.

    Every backbone's full configuration is stored in `backbones` (the VisionTextDualEncoder pattern), so that
    `from_pretrained` of a saved model rebuilds the architecture offline and loads every weight from one
    safetensors file, without downloading any backbone.

    Args:
        backbones (`list[BackboneEntry]`):
            One entry per backbone, written by `TransferModel.from_backbones`. Keys: `source` (the Hub id, local
            path or timm name it came from), `library` (`"timm"` or `"transformers"`), `modality` (`"image"` or
            `"text"`), `config` (for timm: `architecture`, `pretrained_cfg`, `model_args`; for transformers: the
            backbone's full `config.to_dict()`), `pooling`, `feature_dim`, `freeze` (a per-backbone override of
            `freeze`: `"none"`, `"backbone"` or a number of frozen layer groups; `None` follows the model-wide
            setting), `input_suffix` (the backbone reads `pixel_values{suffix}` or `input_ids{suffix}`...), and for
            image backbones `data_config` (timm-style: `input_size`, `mean`, `std`, `interpolation`, `crop_pct`).
            Typed as `BackboneEntry`; `source`, `library` and `modality` are required, and a missing `pooling`
            (`"auto"`), `freeze` (None) or `input_suffix` (see `input_suffixes`) is filled in when the config is
            built, so a config saved by an earlier version loads as it was.
        fusion (`str`, *optional*, defaults to `"concat"`):
            How features of several backbones are fused: `"concat"`, `"weighted_sum"` (softmax-normalised learned
            weights), `"gated"` (input-dependent softmax gates) or `"attention"` (self-attention across the
            backbones' features). Ignored with a single backbone.
        fusion_dim (`int`, *optional*, defaults to 256):
            Common width each backbone's features are projected to before fusion (several backbones only).
        fusion_num_heads (`int`, *optional*, defaults to 4):
            Attention heads of the `"attention"` fusion.
        head (`str`, *optional*, defaults to `"linear"`):
            `"linear"` or `"mlp"`.
        head_hidden_sizes (`list[int]`, *optional*):
            Hidden layer widths of the `"mlp"` head, e.g. `[1024]`.
        head_activation (`str`, *optional*, defaults to `"relu"`):
            Activation between MLP layers: `"relu"`, `"gelu"`, `"silu"` or `"tanh"`.
        head_dropout (`float`, *optional*, defaults to 0.0):
            Dropout before each linear layer of the head.
        freeze (`str`, *optional*, defaults to `"none"`):
            `"none"` (full fine-tuning), `"backbone"` (linear probe: every backbone frozen, BatchNorm statistics
            kept), or `"partial"` (the first `num_frozen_groups` layer groups of each backbone frozen).
        num_frozen_groups (`int`, *optional*, defaults to 0):
            Number of layer groups, counted from the input, frozen with `freeze="partial"`.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the normal initialiser of head and fusion layers (backbones keep theirs).
    """

    model_type = "hf_transfer"
    keys_to_ignore_at_inference = ["hidden_states", "attentions"]

    # Each a `BackboneEntry` (strict checks a field's type with isinstance, which a TypedDict does not support).
    backbones: list[dict] | None = None
    fusion: str = "concat"
    fusion_dim: int = 256
    fusion_num_heads: int = 4
    head: str = "linear"
    head_hidden_sizes: list[int] | None = None
    head_activation: str = "relu"
    head_dropout: float | int = 0.0
    freeze: str = "none"
    num_frozen_groups: int = 0
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        # Every entry gets its defaults once (a config saved by an earlier version may lack some), so readers index
        # `entry["pooling"]`, `entry["freeze"]`, `entry["input_suffix"]` directly.
        if self.backbones is not None:
            self.backbones = normalize_backbone_entries(self.backbones)
        super().__post_init__(**kwargs)

    def validate_architecture(self):
        """Checks every choice at construction time, naming the bad value and the valid ones."""
        _check_choice("fusion", self.fusion, FUSION_METHODS)
        _check_choice("head", self.head, HEAD_TYPES)
        _check_choice("head_activation", self.head_activation, HEAD_ACTIVATIONS)
        _check_choice("freeze", self.freeze, FREEZE_MODES)
        if self.problem_type is not None:
            _check_choice("problem_type", self.problem_type, PROBLEM_TYPES)
        if self.num_labels is not None and self.num_labels < 1:
            raise ValueError(f"num_labels must be >= 1, got {self.num_labels}.")
        if self.num_frozen_groups < 0:
            raise ValueError(f"num_frozen_groups must be >= 0, got {self.num_frozen_groups}.")
        if self.head == "mlp" and not self.head_hidden_sizes:
            raise ValueError("head='mlp' needs head_hidden_sizes, e.g. [1024].")
        if not 0.0 <= self.head_dropout < 1.0:
            raise ValueError(f"head_dropout must be in [0, 1), got {self.head_dropout}.")
        if self.fusion == "attention" and self.fusion_dim % self.fusion_num_heads:
            raise ValueError(
                f"fusion_dim ({self.fusion_dim}) must be divisible by fusion_num_heads ({self.fusion_num_heads})."
            )
        for i, entry in enumerate(self.backbones or []):
            _check_backbone_entry(i, entry)

    @property
    def modality(self) -> str:
        """`"image"`, `"text"` or `"multimodal"`, from the backbones."""
        modalities = {entry["modality"] for entry in self.backbones or []}
        if len(modalities) > 1:
            return "multimodal"
        return modalities.pop() if modalities else "image"

    def _text_backbone_config(self) -> dict:
        text = [entry for entry in self.backbones or [] if entry["modality"] == "text"]
        if len(text) != 1 or len(self.backbones) != 1 or "config" not in text[0]:
            raise AttributeError("vocab_size is defined for a model on a single text backbone.")
        return text[0]["config"]

    @property
    def vocab_size(self) -> int:
        """The vocabulary size of the single text backbone (what `resize_token_embeddings` changes)."""
        return self._text_backbone_config()["vocab_size"]

    @vocab_size.setter
    def vocab_size(self, value: int) -> None:
        self._text_backbone_config()["vocab_size"] = value

    def backbone_freeze(self, index: int) -> str | int:
        """The effective freezing of backbone `index`: `"none"`, `"backbone"` or a number of frozen groups."""
        return effective_freeze(self.backbones[index], self.freeze, self.num_frozen_groups)

    def set_backbone_freeze(self, index: int, freeze: str | int | None) -> None:
        """Records backbone `index`'s own freezing (what `from_pretrained` applies again): `"none"`, `"backbone"`, a
        number of frozen layer groups, or None to follow the model-wide `freeze`."""
        _check_freeze(index, freeze)
        self.backbones[index]["freeze"] = freeze

    def set_image_size(self, size: int) -> None:
        """Gives every image backbone `size`-px square inputs (the saved image processors follow)."""
        if size < 1:
            raise ValueError(f"image_size must be >= 1, got {size}.")
        for entry in self.backbones or []:
            if entry["modality"] == "image":
                entry["data_config"]["input_size"] = [3, size, size]


def _check_freeze(index: int, freeze: Any) -> None:
    if freeze is not None and not isinstance(freeze, int) and freeze not in ("none", "backbone"):
        raise ValueError(
            f"Unknown freeze {freeze!r} for backbone {index}; valid values are: none, backbone, "
            "or a number of frozen layer groups."
        )


def _check_backbone_entry(index: int, entry: BackboneEntry) -> None:
    missing = [key for key in ("source", "library", "modality") if key not in entry]
    if missing:
        raise ValueError(f"Backbone {index} lacks {missing}; it has {sorted(entry)}.")
    _check_choice(f"library of backbone {index}", entry["library"], LIBRARIES)
    _check_choice(f"modality of backbone {index}", entry["modality"], MODALITIES)
    _check_choice(f"pooling of backbone {index}", entry["pooling"], POOLING_MODES)
    _check_freeze(index, entry["freeze"])


def effective_freeze(entry: BackboneEntry, freeze: str = "none", num_frozen_groups: int = 0) -> str | int:
    """A backbone's freezing: its own `freeze`, else the model-wide `freeze` (`"partial"` giving
    `num_frozen_groups`). Returns `"none"`, `"backbone"` or a number of frozen layer groups."""
    if entry["freeze"] is not None:
        return entry["freeze"]
    return num_frozen_groups if freeze == "partial" else freeze


def normalize_backbone_entries(entries: Sequence[BackboneEntry]) -> list[BackboneEntry]:
    """Copies of `entries` with the defaults filled: `pooling="auto"`, `freeze=None` (follow the model-wide
    setting) and the `input_suffix` of `input_suffixes`. Keys this version does not know are kept."""
    entries = [dict(entry) for entry in entries]
    for entry, suffix in zip(entries, input_suffixes(entries)):
        entry.setdefault("pooling", "auto")
        entry.setdefault("freeze", None)
        entry["input_suffix"] = suffix
    return entries


TransferConfig.register_for_auto_class("AutoConfig")

__all__ = [
    "CACHED_FEATURES_PREFIX",
    "IMAGE_INPUT",
    "PROBLEM_TYPES",
    "TEXT_EXTRA_INPUTS",
    "TEXT_INPUTS",
    "BackboneEntry",
    "DataConfig",
    "TransferConfig",
    "backbone_input_names",
    "cached_features_key",
    "effective_freeze",
    "input_suffixes",
    "is_cached_features_key",
    "is_image_input",
    "is_text_input",
    "normalize_backbone_entries",
]
