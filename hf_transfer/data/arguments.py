"""The data flags, as ``HfArgumentParser`` dataclass fields (names from transformers' example scripts)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .loading import GLUE_TASK_TO_KEYS

__all__ = [
    "DataTrainingArguments",
]


@dataclass
class DataTrainingArguments:
    """Arguments pertaining to what data we are going to input our model for training and eval.

    Using ``HfArgumentParser`` we can turn this class into argparse arguments to be able to specify them on the
    command line. Field names and help strings follow transformers' example scripts; conflicting flags are
    rejected here, before anything is loaded.
    """

    dataset_name: str | None = field(
        default=None,
        metadata={
            "help": "Name of a dataset from the hub (could be your own, possibly private dataset hosted on the hub), "
            "or a local directory holding one (a save_to_disk DatasetDict, or parquet/csv/json files named "
            "{split}-00000-of-00001.parquet, one subfolder per config)."
        },
    )
    dataset_config_name: str | None = field(
        default=None, metadata={"help": "The configuration name of the dataset to use (via the datasets library)."}
    )
    task_name: str | None = field(
        default=None,
        metadata={
            "help": "The name of the GLUE task to train on: " + ", ".join(GLUE_TASK_TO_KEYS) + ". Implies "
            "--dataset_name nyu-mll/glue unless a (local) dataset_name is given."
        },
    )
    train_dir: str | None = field(default=None, metadata={"help": "A folder containing the training data."})
    validation_dir: str | None = field(default=None, metadata={"help": "A folder containing the validation data."})
    train_file: str | None = field(
        default=None, metadata={"help": "A csv, json or parquet file containing the training data."}
    )
    validation_file: str | None = field(
        default=None, metadata={"help": "A csv, json or parquet file containing the validation data."}
    )
    test_file: str | None = field(
        default=None, metadata={"help": "A csv, json or parquet file containing the test data."}
    )
    image_column_name: str | None = field(
        default=None,
        metadata={
            "help": "The name of the dataset column containing the image data. If not specified, the first Image "
            "column (or one named 'image'/'img') is used."
        },
    )
    text_column_names: str | None = field(
        default=None,
        metadata={
            "help": "The name of the text column in the input dataset or a CSV/JSON file; two comma-separated names "
            "make sentence pairs, more are joined with --text_column_delimiter. If not specified, the GLUE task's "
            'columns or the "sentence"/"text" column are used.'
        },
    )
    text_column_delimiter: str = field(
        default=" ", metadata={"help": "The delimiter to use to join more than two text columns into one text."}
    )
    label_column_name: str | None = field(
        default=None,
        metadata={
            "help": "The name of the label column in the input dataset or a CSV/JSON file. If not specified, will "
            'use the "label" column (or "labels", "fine_label"...) for single/multi-label classification task.'
        },
    )
    do_regression: bool | None = field(
        default=None,
        metadata={
            "help": "Whether to do regression instead of classification. If None, will be inferred from the dataset."
        },
    )
    problem_type: str | None = field(
        default=None,
        metadata={
            "help": "single_label_classification, multi_label_classification or regression (transformers' "
            "config.problem_type). Default: inferred from the label column; an ambiguous string column is an error."
        },
    )
    label_delimiter: str | None = field(
        default=None,
        metadata={
            "help": "Multi-label data from CSV: the character between a row's labels (e.g. ',' for "
            "`action,comedy`). Cells written as lists (`['action', 'comedy']`) are detected without it."
        },
    )
    train_val_split: float | None = field(
        default=0.15, metadata={"help": "Percent to split off of train for validation."}
    )
    max_train_samples: int | None = field(
        default=None,
        metadata={
            "help": "For debugging purposes or quicker training, truncate the number of training examples to this "
            "value if set."
        },
    )
    max_eval_samples: int | None = field(
        default=None,
        metadata={
            "help": "For debugging purposes or quicker training, truncate the number of evaluation examples to this "
            "value if set."
        },
    )
    max_predict_samples: int | None = field(
        default=None,
        metadata={
            "help": "For debugging purposes or quicker training, truncate the number of prediction examples to this "
            "value if set."
        },
    )
    no_augmentation: bool = field(
        default=False,
        metadata={
            "help": "Train with the eval image transform (resize + center crop, no random crop or flip): "
            "deterministic inputs, e.g. to cache frozen-backbone features, or to resume a killed run bit-exactly "
            "(random augmentation draws from the global RNG, which the Trainer restores only after prefetching)."
        },
    )
    color_jitter: float | None = field(
        default=None,
        metadata={
            "help": "Color-jitter strength of the train image transform (timm's color_jitter, e.g. 0.4). Off by "
            "default: it halves the image pipeline's throughput."
        },
    )
    max_seq_length: int = field(
        default=128,
        metadata={
            "help": "The maximum total input sequence length after tokenization. Sequences longer than this will be "
            "truncated, sequences shorter will be padded."
        },
    )
    pad_to_max_length: bool = field(
        default=False,
        metadata={
            "help": "Whether to pad all samples to `max_seq_length`. If False, will pad the samples dynamically when "
            "batching to the maximum length in the batch."
        },
    )
    preprocessing_num_workers: int | None = field(
        default=None, metadata={"help": "The number of processes to use for the preprocessing."}
    )
    cache_dir: str | None = field(
        default=None, metadata={"help": "Where do you want to store the datasets downloaded from huggingface.co"}
    )

    def __post_init__(self):
        sources = {
            "dataset_name": self.dataset_name,
            "task_name": self.task_name,
            "train_dir": self.train_dir,
            "validation_dir": self.validation_dir,
            "train_file": self.train_file,
            "validation_file": self.validation_file,
            "test_file": self.test_file,
        }
        given = [name for name, value in sources.items() if value is not None]
        hub = [name for name in ("dataset_name", "task_name") if name in given]
        folders = [name for name in ("train_dir", "validation_dir") if name in given]
        files = [name for name in ("train_file", "validation_file", "test_file") if name in given]
        if not given:
            raise ValueError(
                "You must specify either a dataset name from the hub (--dataset_name / --task_name), a train and/or "
                "validation directory (--train_dir / --validation_dir), or data files (--train_file / "
                "--validation_file / --test_file)."
            )
        if sum(bool(group) for group in (hub, folders, files)) > 1:
            raise ValueError(
                f"Conflicting data flags: {', '.join('--' + name for name in given)}. Give one source: "
                "--dataset_name/--task_name, or --train_dir/--validation_dir (image folders), or "
                "--train_file/--validation_file/--test_file."
            )
        if self.task_name is not None:
            self.task_name = self.task_name.lower()
            if self.dataset_config_name is not None and self.dataset_config_name.lower() != self.task_name:
                raise ValueError(
                    f"Conflicting flags: --task_name {self.task_name} but --dataset_config_name "
                    f"{self.dataset_config_name}; give only --task_name."
                )
        if self.train_val_split is not None and not 0.0 <= self.train_val_split < 1.0:
            raise ValueError(f"--train_val_split must be in [0, 1), got {self.train_val_split}.")
        for name in ("max_train_samples", "max_eval_samples", "max_predict_samples"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"--{name} must be >= 0, got {value}.")
        if self.max_seq_length <= 0:
            raise ValueError(f"--max_seq_length must be > 0, got {self.max_seq_length}.")
        if self.text_column_names is not None and not _split_names(self.text_column_names):
            raise ValueError(f"--text_column_names {self.text_column_names!r} names no column.")

    @property
    def text_columns(self) -> list[str] | None:
        """``text_column_names`` split on commas, or None."""
        return _split_names(self.text_column_names) if self.text_column_names is not None else None


def _split_names(value: str) -> list[str]:
    return [name.strip() for name in value.split(",") if name.strip()]
