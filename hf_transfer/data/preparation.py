"""Preparation: raw splits → model-ready datasets and the collator, for the model's backbones."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, NamedTuple

import datasets
from datasets import DatasetDict

from ..inputs import is_text_input
from .arguments import DataTrainingArguments
from .collation import TransferDataCollator, build_data_collator
from .images import ImagePreprocessor
from .inputs import _image_data_configs, _text_tokenizers
from .labels import check_labels, prepare_labels
from .loading import TaskInfo
from .text import tokenize_dataset

logger = logging.getLogger(__name__)

__all__ = [
    "PreparedDatasets",
    "prepare_datasets",
    "prepare_split",
]


def prepare_split(
    dataset: datasets.Dataset,
    info: TaskInfo,
    backbones: Sequence[Any],
    processors: Sequence[Any] | None = None,
    data_args: DataTrainingArguments | None = None,
    *,
    is_training: bool = False,
    has_labels: bool = True,
    num_labels: int | None = None,
    seed: int | None = None,
) -> datasets.Dataset:
    """Turns one raw split into a model-ready dataset for the given backbones.

    Labels checked against ``num_labels`` and renamed to ``labels`` (dropped when ``has_labels`` is False), text
    tokenized for every text input, and for image backbones a lazy transform attached that produces
    ``pixel_values{suffix}`` tensors (random augmentation when ``is_training``). Image datasets keep their raw image
    column for the transform: the Trainer needs ``remove_unused_columns=False``.

    Args:
        dataset: A split from :func:`load_raw_datasets`.
        info: From :func:`load_raw_datasets`.
        backbones: The model's ``config.backbones``.
        processors: One tokenizer per text backbone in config order, or one processor per backbone (as
            ``hf_transfer.processing.load_processors`` returns them); image processors are not used.
        data_args: For ``max_seq_length``, ``pad_to_max_length``, ``text_column_delimiter``,
            ``preprocessing_num_workers``, ``no_augmentation``, ``color_jitter`` (their defaults when None).
        is_training: Train-time image augmentation (random-resized crop + flip, unless ``no_augmentation``).
        has_labels: False for unlabelled (test) splits.
        num_labels: The model's number of outputs, checked against the labels; defaults to ``info.num_labels``.

    Returns:
        The prepared split.

    Raises:
        ValueError: If the model reads a modality the data lacks, or labels do not fit ``num_labels``.
    """

    def arg(name: str) -> Any:
        return (
            getattr(data_args, name)
            if data_args is not None
            else DataTrainingArguments.__dataclass_fields__[name].default
        )

    num_labels = info.num_labels if num_labels is None else num_labels
    image_inputs = _image_data_configs(backbones)
    text_inputs = _text_tokenizers(backbones, processors)
    if image_inputs and info.image_column is None:
        raise ValueError(f"The model has image backbone(s) but the data ({info.modality}) has no image column.")
    if text_inputs and not info.text_columns:
        raise ValueError(f"The model has text backbone(s) but the data ({info.modality}) has no text column.")

    if has_labels and info.label_column in dataset.column_names:
        check_labels(dataset, info.label_column, num_labels, info.problem_type)
        dataset = prepare_labels(dataset, info.label_column, info.problem_type, num_labels)
    elif info.label_column in dataset.column_names:
        dataset = dataset.remove_columns(info.label_column)
    if text_inputs:
        dataset = tokenize_dataset(
            dataset,
            backbones,
            processors,
            info.text_columns,
            arg("max_seq_length"),
            arg("pad_to_max_length"),
            text_column_delimiter=arg("text_column_delimiter"),
            num_proc=arg("preprocessing_num_workers"),
        )
    if image_inputs:
        if isinstance(dataset.features[info.image_column], datasets.Image):
            dataset = dataset.cast_column(info.image_column, datasets.Image(decode=False))
        preprocessor = ImagePreprocessor(
            backbones,
            info.image_column,
            "labels",
            is_training=is_training and not arg("no_augmentation"),
            color_jitter=arg("color_jitter"),
            seed=seed,
        )
        return dataset.with_transform(preprocessor)
    return dataset.select_columns([c for c in dataset.column_names if is_text_input(c) or c == "labels"])


class PreparedDatasets(NamedTuple):
    """What :func:`prepare_datasets` returns: ``train_dataset, eval_datasets, data_collator = ...``."""

    train_dataset: datasets.Dataset | None
    """The prepared ``train`` split (None when there is none)."""
    eval_datasets: dict[str, datasets.Dataset]
    """Split name → prepared dataset, for each of ``info.eval_splits`` (main one first)."""
    data_collator: TransferDataCollator
    """The collator for these backbones."""


def prepare_datasets(
    raw: DatasetDict,
    info: TaskInfo,
    backbones: Sequence[Any],
    processors: Sequence[Any] | None = None,
    data_args: DataTrainingArguments | None = None,
    training_args: Any | None = None,
    *,
    num_labels: int | None = None,
) -> PreparedDatasets:
    """Prepares the train and eval splits for the model's backbones (see :func:`prepare_split`) and the collator.

    Test splits are left out (use :func:`prepare_split` with ``has_labels=info.test_has_labels``). With
    ``training_args``: text is padded to a multiple of 8 under fp16/bf16 (as ``run_classification.py``), and
    ``training_args.remove_unused_columns`` is set to False (as ``run_image_classification.py`` asks): the image
    transform reads the raw image column, further backbones read suffixed keys the Trainer's signature check does
    not see, and the collator drops every key the model does not read.

    Args:
        raw: From :func:`load_raw_datasets`.
        info: From :func:`load_raw_datasets`.
        backbones: The model's ``config.backbones``.
        processors: One tokenizer per text backbone, or one processor per backbone.
        data_args: The data flags (defaults when None).
        training_args: The ``TrainingArguments``, or None.
        num_labels: The model's number of outputs; defaults to ``info.num_labels``.

    Returns:
        ``PreparedDatasets(train_dataset, eval_datasets, data_collator)``.

    Raises:
        ValueError: If the model reads a modality the data lacks, or labels do not fit ``num_labels``.

    Example:
        >>> train_dataset, eval_datasets, data_collator = prepare_datasets(
        ...     raw, info, model.config.backbones, load_processors(model.config), data_args, training_args
        ... )
    """
    kwargs = {"num_labels": num_labels}
    train = raw.get("train")
    if train is not None:
        seed = getattr(training_args, "seed", None)  # seeded per-sample augmentation: exact resume
        train = prepare_split(train, info, backbones, processors, data_args, is_training=True, seed=seed, **kwargs)
    evals = {
        split: prepare_split(raw[split], info, backbones, processors, data_args, **kwargs)
        for split in info.eval_splits
        if split in raw
    }
    mixed_precision = training_args is not None and (
        getattr(training_args, "fp16", False) or getattr(training_args, "bf16", False)
    )
    collator = build_data_collator(backbones, processors, pad_to_multiple_of=8 if mixed_precision else None)
    if training_args is not None and getattr(training_args, "remove_unused_columns", False):
        # The one place this is decided: the Trainer's signature-based removal would drop the raw image column the
        # transform reads and the inputs of further backbones (`pixel_values_1`, `input_ids_1`, hidden behind
        # `forward(**inputs)`); the collator already drops every key the model does not read.
        logger.info("Setting remove_unused_columns=False: the prepared datasets hold exactly the model's inputs.")
        training_args.remove_unused_columns = False
    return PreparedDatasets(train, evals, collator)
