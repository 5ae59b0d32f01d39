"""Backbones → inputs: which batch keys each backbone of ``config.backbones`` reads.

How preprocessing reads the model's ``config.backbones`` (a list, one entry per backbone, dicts or objects):

* ``"modality"``: ``"image"`` or ``"text"``.
* ``"input_suffix"``: ``""`` for the first backbone of a modality, ``"_1"``, ``"_2"``... for others that need
  differently preprocessed inputs. Backbones sharing a suffix share one input (and must agree on preprocessing).
  Missing → ``""`` for the first backbone of its modality, ``"_{k}"`` for the k-th after it.
* image backbones: ``"data_config"``, a timm-style dict ``{"input_size": [3, H, W], "mean": [...], "std": [...],
  "interpolation": "bicubic"|"bilinear", "crop_pct": 0.875}`` (``crop_mode`` optional). The backbone reads
  ``pixel_values{suffix}``: float32 ``(batch, 3, H, W)``, normalized with its mean/std.
* text backbones: the i-th text backbone uses ``tokenizers[i]`` and reads ``input_ids{suffix}``,
  ``attention_mask{suffix}`` and ``token_type_ids{suffix}`` (the last only when its tokenizer returns it).
* the labels arrive as ``labels``: int64 ``(batch,)`` for single-label, float32 ``(batch, num_labels)``
  multi-hot for multi-label, float32 ``(batch,)`` for regression.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


# Batch keys the models read: pixel_values{suffix} from image backbones, the tokenizer outputs from text ones.
TEXT_INPUT_KEYS = ("input_ids", "attention_mask", "token_type_ids")
IMAGE_INPUT_KEY = "pixel_values"


def _get(backbone: Any, key: str, default: Any = None) -> Any:
    if isinstance(backbone, Mapping):
        return backbone.get(key, default)
    return getattr(backbone, key, default)


def _backbone_inputs(backbones: Sequence[Any], modality: str) -> list[tuple[int, str, Any]]:
    """``(index, input_suffix, backbone)`` for each backbone of ``modality``, in config order."""
    out, count = [], 0
    for index, backbone in enumerate(backbones):
        kind = _get(backbone, "modality")
        if kind not in ("image", "text"):
            raise ValueError(f"Backbone {index} has modality {kind!r}; valid: image, text.")
        if kind != modality:
            continue
        suffix = _get(backbone, "input_suffix")
        if suffix is None:
            suffix = "" if count == 0 else f"_{count}"
        out.append((index, suffix, backbone))
        count += 1
    return out


def _image_data_configs(backbones: Sequence[Any]) -> dict[str, dict]:
    """``input_suffix`` → timm data config, one per distinct image input."""
    configs: dict[str, dict] = {}
    for index, suffix, backbone in _backbone_inputs(backbones, "image"):
        data_config = _get(backbone, "data_config")
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
    backbones: Sequence[Any], tokenizers: Sequence[PreTrainedTokenizerBase | Any] | None
) -> dict[str, PreTrainedTokenizerBase]:
    """``input_suffix`` → tokenizer, one per distinct text input.

    ``tokenizers`` holds one tokenizer per text backbone in config order, or one processor per backbone (image
    processors included, as ``hf_transfer.processing.load_processors`` returns them).
    """
    text = _backbone_inputs(backbones, "text")
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


def _is_text_input(key: str) -> bool:
    return any(key == name or re.fullmatch(rf"{name}_\d+", key) for name in TEXT_INPUT_KEYS)


def _is_image_input(key: str) -> bool:
    return key == IMAGE_INPUT_KEY or re.fullmatch(rf"{IMAGE_INPUT_KEY}_\d+", key) is not None
