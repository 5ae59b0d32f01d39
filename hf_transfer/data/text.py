"""Text: tokenizing the text columns once per distinct text input of the model."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import datasets

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

from .inputs import _text_tokenizers

logger = logging.getLogger(__name__)

__all__ = [
    "tokenize_dataset",
]


def _texts(raw_columns: Sequence[list], delimiter: str) -> tuple[list, list | None]:
    """One text, a sentence pair, or several texts joined: the tokenizer's ``text`` and ``text_pair``."""
    columns = [[("" if t is None else str(t)) for t in column] for column in raw_columns]
    if len(columns) == 1:
        return columns[0], None
    if len(columns) == 2:
        return columns[0], columns[1]
    return [delimiter.join(parts) for parts in zip(*columns)], None


def tokenize_dataset(
    dataset: datasets.Dataset,
    backbones: Sequence[Any],
    tokenizers: Sequence[PreTrainedTokenizerBase],
    text_columns: Sequence[str],
    max_seq_length: int = 128,
    pad_to_max_length: bool = False,
    *,
    text_column_delimiter: str = " ",
    num_proc: int | None = None,
) -> datasets.Dataset:
    """Tokenizes the text columns once per distinct text input of the model (``dataset.map(batched=True)``).

    One text column is tokenized alone, two as a sentence pair (as ``run_glue.py``), more are joined with
    ``text_column_delimiter``. Sequences are truncated to ``min(max_seq_length, tokenizer.model_max_length)`` and
    left unpadded unless ``pad_to_max_length`` (padding happens per batch in the collator: 2.65× faster training
    than padding to 128, benchmarks/README.md). The text columns are replaced by ``input_ids{suffix}``,
    ``attention_mask{suffix}`` (and ``token_type_ids{suffix}`` when the tokenizer returns it); other columns (an
    image column for fusion models, the labels) stay.

    Args:
        dataset: The dataset.
        backbones: The model's ``config.backbones``.
        tokenizers: One tokenizer per text backbone, in config order.
        text_columns: The text column(s).
        max_seq_length: Truncation length.
        pad_to_max_length: Pad every row to the truncation length instead of per batch.
        text_column_delimiter: Joins more than two text columns.
        num_proc: Processes for ``map``.

    Returns:
        The tokenized dataset.

    Raises:
        ValueError: If a text column is missing (lists the columns) or tokenizers and text backbones don't match.

    Example:
        >>> tokenized = tokenize_dataset(raw["train"], config.backbones, [tokenizer], ["sentence1", "sentence2"])
    """
    by_suffix = _text_tokenizers(backbones, tokenizers)
    if not by_suffix:
        raise ValueError("The model has no text backbone: nothing to tokenize.")
    missing = [c for c in text_columns if c not in dataset.column_names]
    if missing or not text_columns:
        raise ValueError(
            f"Text column(s) {missing or list(text_columns)} not found; columns: {', '.join(dataset.column_names)}."
        )
    lengths = {}
    for suffix, tokenizer in by_suffix.items():
        lengths[suffix] = min(max_seq_length, tokenizer.model_max_length)
        if max_seq_length > tokenizer.model_max_length:
            logger.warning(
                "max_seq_length %d exceeds the tokenizer's model_max_length %d; using %d.",
                max_seq_length,
                tokenizer.model_max_length,
                lengths[suffix],
            )

    def tokenize(*columns):
        first, second = _texts(columns, text_column_delimiter)
        out = {}
        for suffix, tokenizer in by_suffix.items():
            encoded = tokenizer(
                first,
                second,
                truncation=True,
                max_length=lengths[suffix],
                padding="max_length" if pad_to_max_length else False,
            )
            for key, values in encoded.items():
                out[key + suffix] = values
        return out

    return dataset.map(
        tokenize,
        batched=True,
        input_columns=list(text_columns),  # other columns (images of a fusion dataset) are not decoded
        remove_columns=list(text_columns),
        num_proc=num_proc,
        desc="Running tokenizer on dataset",
    )
