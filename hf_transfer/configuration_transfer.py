# Copyright 2026 The hf_transfer authors. Licensed under the Apache License, Version 2.0.
"""Configuration of hf_transfer models: one or more pretrained backbones, an optional fusion, and a head.

This file imports only `transformers` (and `huggingface_hub`, which transformers is built on) so that a pushed
checkpoint can carry it as remote code.
"""

from typing import Any

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

FUSION_METHODS = ("concat", "weighted_sum", "gated", "attention")
HEAD_TYPES = ("linear", "mlp")
FREEZE_MODES = ("none", "backbone", "partial")
HEAD_ACTIVATIONS = ("relu", "gelu", "silu", "tanh")
PROBLEM_TYPES = ("single_label_classification", "multi_label_classification", "regression")
POOLING_MODES = ("auto", "timm", "cls", "pooler", "mean", "max", "avg", "avgmax", "catavgmax", "token")


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
        backbones (`list[dict]`):
            One entry per backbone, written by `TransferModel.from_backbones`. Keys: `source` (the Hub id, local
            path or timm name it came from), `library` (`"timm"` or `"transformers"`), `modality` (`"image"` or
            `"text"`), `config` (for timm: `architecture`, `pretrained_cfg`, `model_args`; for transformers: the
            backbone's full `config.to_dict()`), `pooling`, `feature_dim`, `freeze` (a per-backbone override of
            `freeze`: `"none"`, `"backbone"` or a number of frozen layer groups; `None` follows the model-wide
            setting), `input_suffix` (the backbone reads `pixel_values{suffix}` or `input_ids{suffix}`...), and for
            image backbones `data_config` (timm-style: `input_size`, `mean`, `std`, `interpolation`, `crop_pct`).
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
        for i, spec in enumerate(self.backbones or []):
            _check_choice(f"library of backbone {i}", spec.get("library"), ("timm", "transformers"))
            _check_choice(f"modality of backbone {i}", spec.get("modality"), ("image", "text"))
            _check_choice(f"pooling of backbone {i}", spec.get("pooling", "auto"), POOLING_MODES)
            freeze = spec.get("freeze")
            if freeze is not None and not isinstance(freeze, int) and freeze not in ("none", "backbone"):
                raise ValueError(
                    f"Unknown freeze {freeze!r} for backbone {i}; valid values are: none, backbone, "
                    "or a number of frozen layer groups."
                )

    @property
    def modality(self) -> str:
        """`"image"`, `"text"` or `"multimodal"`, from the backbones."""
        modalities = {spec["modality"] for spec in self.backbones or []}
        if len(modalities) > 1:
            return "multimodal"
        return modalities.pop() if modalities else "image"

    def _text_backbone_config(self) -> dict:
        text = [spec for spec in self.backbones or [] if spec.get("modality") == "text"]
        if len(text) != 1 or len(self.backbones) != 1:
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
        override = (self.backbones or [])[index].get("freeze")
        if override is not None:
            return override
        if self.freeze == "partial":
            return self.num_frozen_groups
        return self.freeze


TransferConfig.register_for_auto_class("AutoConfig")

__all__ = ["TransferConfig"]
