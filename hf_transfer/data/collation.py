"""Collation: dataset rows → a batch of tensors, each text input padded by its own tokenizer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

from ..inputs import TEXT_INPUTS, is_image_input
from .inputs import _text_tokenizers

__all__ = [
    "TransferDataCollator",
    "build_data_collator",
    "to_channels_last",
]


def to_channels_last(tensor: torch.Tensor) -> torch.Tensor:
    """An image batch (N, C, H, W) in channels-last memory format, for channels-last convolutions; any other tensor
    unchanged."""
    if tensor.dim() == 4 and tensor.is_floating_point():
        return tensor.contiguous(memory_format=torch.channels_last)
    return tensor


def _stack_images(
    examples: Sequence[Mapping[str, Any]], batch: dict[str, torch.Tensor], channels_last: bool = False
) -> None:
    for key in examples[0]:
        if is_image_input(key):
            stacked = torch.stack([torch.as_tensor(example[key]) for example in examples])
            batch[key] = to_channels_last(stacked) if channels_last else stacked


def _labels_tensor(labels: list) -> torch.Tensor:
    first = labels[0]
    if isinstance(first, torch.Tensor):
        stacked = torch.stack(labels)
        return stacked if stacked.is_floating_point() else stacked.long()
    if isinstance(first, (list, tuple, np.ndarray)) or isinstance(first, (float, np.floating)):
        return torch.tensor(np.asarray(labels, dtype=np.float32))
    return torch.tensor(labels, dtype=torch.long)


def _add_labels(examples: Sequence[Mapping[str, Any]], batch: dict[str, torch.Tensor]) -> None:
    # "label" and "label_ids" are accepted too, as transformers' collators do.
    key = next((k for k in ("labels", "label", "label_ids") if k in examples[0]), None)
    if key is not None:
        batch["labels"] = _labels_tensor([example[key] for example in examples])


class TransferDataCollator:
    """Collates any mix of image and text inputs, each text input padded by its own tokenizer.

    Stacks ``pixel_values*``; pads each text key group (``input_ids{suffix}``, ``attention_mask{suffix}``,
    ``token_type_ids{suffix}``) with the tokenizer of that suffix (``DataCollatorWithPadding``); makes ``labels`` a
    tensor (int64, or float32 for regression and multi-label). Every other key is dropped, so raw columns left in
    the dataset (``idx``, the image column) never reach the model.

    Args:
        tokenizers: ``input_suffix`` → tokenizer for each text input (from :func:`build_data_collator`).
        pad_to_multiple_of: Pad text lengths to a multiple of this (8 helps tensor cores with fp16/bf16).
        channels_last: Image batches in channels-last memory format (for a model converted with
            ``model.to(memory_format=torch.channels_last)``, as timm's ``train.py --channels-last`` does).
    """

    def __init__(
        self,
        tokenizers: Mapping[str, PreTrainedTokenizerBase] | None = None,
        pad_to_multiple_of: int | None = None,
        channels_last: bool = False,
    ):
        from transformers import DataCollatorWithPadding

        self.tokenizers = dict(tokenizers or {})
        self.pad_to_multiple_of = pad_to_multiple_of
        self.channels_last = channels_last
        self._padders = {
            suffix: DataCollatorWithPadding(tokenizer, padding=True, pad_to_multiple_of=pad_to_multiple_of)
            for suffix, tokenizer in self.tokenizers.items()
        }

    def __repr__(self) -> str:
        return (
            f"TransferDataCollator(text_inputs={list(self.tokenizers)}, pad_to_multiple_of={self.pad_to_multiple_of}, "
            f"channels_last={self.channels_last})"
        )

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        """Collates dataset rows into a batch.

        Args:
            examples: Rows of a dataset prepared by :func:`prepare_split`.

        Returns:
            The model's inputs as tensors: ``pixel_values*``, ``input_ids*``, ``attention_mask*``,
            ``token_type_ids*`` and ``labels``.
        """
        batch: dict[str, torch.Tensor] = {}
        _stack_images(examples, batch, self.channels_last)
        for suffix, padder in self._padders.items():
            keys = [key for key in TEXT_INPUTS if key + suffix in examples[0]]
            if not keys:
                raise KeyError(
                    f"Text input '{TEXT_INPUTS[0]}{suffix}' missing from the batch (keys: "
                    f"{', '.join(examples[0])}); was the dataset tokenized with tokenize_dataset?"
                )
            padded = padder([{key: example[key + suffix] for key in keys} for example in examples])
            for key, value in padded.items():
                batch[key + suffix] = value
        _add_labels(examples, batch)
        return batch


def build_data_collator(
    backbones: Sequence[Any],
    tokenizers: Sequence[PreTrainedTokenizerBase] | None = None,
    pad_to_multiple_of: int | None = None,
) -> TransferDataCollator:
    """Builds the collator for a model's backbones.

    Args:
        backbones: The model's ``config.backbones``.
        tokenizers: One tokenizer per text backbone, in config order (None for image-only models).
        pad_to_multiple_of: Pad text lengths to a multiple of this.

    Returns:
        A :class:`TransferDataCollator`.
    """
    return TransferDataCollator(_text_tokenizers(backbones, tokenizers), pad_to_multiple_of=pad_to_multiple_of)
