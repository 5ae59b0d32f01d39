"""Backbones → inputs: which batch keys each backbone of ``config.backbones`` reads.

How preprocessing reads the model's ``config.backbones`` (one :class:`~hf_transfer.inputs.BackboneEntry` each):

* ``"modality"``: ``"image"`` or ``"text"``.
* ``"input_suffix"``: ``""`` for the first backbone of a modality, ``"_{i}"`` for others that need differently
  preprocessed inputs. Backbones sharing a suffix share one input (and must agree on preprocessing). Missing → the
  rule the model records (:func:`hf_transfer.inputs.input_suffixes`).
* image backbones: ``"data_config"``, a timm-style dict ``{"input_size": [3, H, W], "mean": [...], "std": [...],
  "interpolation": "bicubic"|"bilinear", "crop_pct": 0.875}`` (``crop_mode`` optional). The backbone reads
  ``pixel_values{suffix}``: float32 ``(batch, 3, H, W)``, normalized with its mean/std.
* text backbones: the i-th text backbone uses ``tokenizers[i]`` and reads ``input_ids{suffix}``,
  ``attention_mask{suffix}`` and ``token_type_ids{suffix}`` (the last only when its tokenizer returns it).
* the labels arrive as ``labels``: int64 ``(batch,)`` for single-label, float32 ``(batch, num_labels)``
  multi-hot for multi-label, float32 ``(batch,)`` for regression.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..inputs import BackboneEntry, DataConfig, input_suffixes

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


def _backbones_of_modality(backbones: Sequence[BackboneEntry], modality: str) -> list[tuple[int, str, BackboneEntry]]:
    """``(index, input_suffix, backbone)`` for each backbone of ``modality``, in config order."""
    for index, backbone in enumerate(backbones):
        if backbone.get("modality") not in ("image", "text"):
            raise ValueError(f"Backbone {index} has modality {backbone.get('modality')!r}; valid: image, text.")
    return [
        (index, suffix, backbone)
        for index, (suffix, backbone) in enumerate(zip(input_suffixes(backbones), backbones))
        if backbone["modality"] == modality
    ]


def _image_data_configs(backbones: Sequence[BackboneEntry]) -> dict[str, DataConfig]:
    """``input_suffix`` → timm data config, one per distinct image input."""
    configs: dict[str, DataConfig] = {}
    for index, suffix, backbone in _backbones_of_modality(backbones, "image"):
        data_config = backbone.get("data_config")
        if not data_config:
            raise ValueError(f"Image backbone {index} has no 'data_config' (input_size, mean, std, interpolation).")
        data_config = dict(data_config)
        missing = [k for k in ("input_size", "mean", "std") if k not in data_config]
        if missing:
            raise ValueError(f"Image backbone {index}: data_config lacks {missing}; it has {sorted(data_config)}.")
        if suffix in configs and _normalized_config(configs[suffix]) != _normalized_config(data_config):
            raise ValueError(
                f"Image backbones sharing input_suffix {suffix!r} need the same preprocessing; backbone {index} has "
                f"{data_config}, an earlier one {configs[suffix]}. Give it its own input_suffix."
            )
        configs.setdefault(suffix, data_config)
    return configs


def _normalized_config(config: Mapping) -> dict:
    return {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in config.items()}


def _text_tokenizers(
    backbones: Sequence[BackboneEntry], tokenizers: Sequence[PreTrainedTokenizerBase | Any] | None
) -> dict[str, PreTrainedTokenizerBase]:
    """``input_suffix`` → tokenizer, one per distinct text input.

    ``tokenizers`` holds one tokenizer per text backbone in config order, or one processor per backbone (image
    processors included, as ``hf_transfer.processing.load_processors`` returns them).
    """
    text = _backbones_of_modality(backbones, "text")
    tokenizers = list(tokenizers or [])
    if len(tokenizers) == len(backbones) and len(backbones) != len(text):
        tokenizers = [tokenizers[index] for index, _, _ in text]
    if len(tokenizers) != len(text):
        raise ValueError(
            f"Got {len(tokenizers)} tokenizer(s) for {len(text)} text backbone(s) (indices "
            f"{[index for index, _, _ in text]} of {len(backbones)} backbones); pass one tokenizer per text backbone "
            "in config order, or one processor per backbone."
        )
    out: dict[str, PreTrainedTokenizerBase] = {}
    for (index, suffix, _), tokenizer in zip(text, tokenizers):
        if not callable(getattr(tokenizer, "pad", None)):
            raise ValueError(f"Text backbone {index} got {type(tokenizer).__name__}, which is not a tokenizer.")
        out.setdefault(suffix, tokenizer)
    return out
