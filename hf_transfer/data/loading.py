"""Loading: Hub datasets, local directories, image folders and data files; GLUE's task knowledge; columns; splits.

Offline use: ``dataset_name`` may be a local directory instead of a Hub id — a ``save_to_disk`` DatasetDict, or a
folder of parquet/arrow/csv/json files named ``{split}-00000-of-00001.parquet`` (the layout the Hub stores, one
subfolder per config such as ``glue/mrpc/`` or ``cifar10/plain_text/``; ``dataset_config_name`` picks the
subfolder). The Hub dataset's task knowledge still applies: a local directory named ``glue`` (or
``--task_name``) gets GLUE's columns, splits and metrics, exactly as ``nyu-mll/glue`` would.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import datasets
from datasets import ClassLabel, DatasetDict, Value

from .images import check_images
from .label_parsing import check_problem_type, parse_label_strings
from .labels import _drop_unlabeled, _has_any_label, _normalize_labels

if TYPE_CHECKING:
    from .arguments import DataTrainingArguments

logger = logging.getLogger(__name__)

__all__ = [
    "GLUE_TASKS",
    "GLUE_TASK_TO_KEYS",
    "TaskInfo",
    "load_raw_datasets",
]


# ---------------------------------------------------------------------------------------------------------------
# Task knowledge
# ---------------------------------------------------------------------------------------------------------------

GLUE_TASK_TO_KEYS: dict[str, tuple[str, str | None]] = {
    "cola": ("sentence", None),
    "mnli": ("premise", "hypothesis"),
    "mrpc": ("sentence1", "sentence2"),
    "qnli": ("question", "sentence"),
    "qqp": ("question1", "question2"),
    "rte": ("sentence1", "sentence2"),
    "sst2": ("sentence", None),
    "stsb": ("sentence1", "sentence2"),
    "wnli": ("sentence1", "sentence2"),
}
"""The text columns of each trainable GLUE task (as in ``run_glue.py``)."""

GLUE_TASKS: tuple[str, ...] = (*GLUE_TASK_TO_KEYS, "ax")
"""Every config of ``nyu-mll/glue``; ``ax`` is a test-only diagnostic set."""

GLUE_DATASET_NAMES = ("glue", "nyu-mll/glue")

IMAGE_COLUMN_NAMES = ("image", "img", "images", "picture", "photo")
LABEL_COLUMN_NAMES = ("label", "labels", "fine_label", "target", "targets", "class", "category", "coarse_label")
TEXT_COLUMN_PAIRS = (("sentence1", "sentence2"), ("question1", "question2"), ("premise", "hypothesis"))
TEXT_COLUMN_NAMES = ("sentence", "text", "content", "review", "document", "caption")
VALIDATION_SPLIT_ALIASES = ("validation", "valid", "val", "dev")

DATA_FILE_BUILDERS = {
    ".parquet": "parquet",
    ".arrow": "arrow",
    ".csv": "csv",
    ".tsv": "csv",
    ".json": "json",
    ".jsonl": "json",
}
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
_SHARD_NAME = re.compile(r"^(?P<split>[A-Za-z0-9_.]+?)(?:-\d{5}-of-\d{5})?$")


# ---------------------------------------------------------------------------------------------------------------
# What the data is
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class TaskInfo:
    """What :func:`load_raw_datasets` found out about the data: columns, labels, problem type, splits.

    Attributes:
        modality: ``"image"``, ``"text"`` or ``"multimodal"`` (columns for both, for a fusion model), the values of
            ``TransferConfig.modality``.
        problem_type: ``"single_label_classification"``, ``"multi_label_classification"`` or ``"regression"``
            (the values of transformers' ``config.problem_type``); None for data without labels
            (``require_labels=False``).
        label_column: The label column's name in the raw datasets; None for data without labels.
        label_list: Class names in id order (``ClassLabel`` names, or sorted raw values); None for regression.
        image_column: The image column, if the data has images.
        text_columns: The text columns: one, a sentence pair, or more (joined).
        task_name: The GLUE task, if this is GLUE.
        eval_splits: Splits to evaluate on, main one first (``["validation"]``; MNLI: ``["validation_matched",
            "validation_mismatched"]``).
        test_splits: Splits to predict on (``["test"]``; MNLI: ``["test_matched", "test_mismatched"]``).
        test_has_labels: False when the test splits carry no labels (GLUE's -1): predict only, no metrics.
        dataset_name: Where the data came from (Hub id, local path, or the data files/folders).
        dataset_config_name: The dataset config (e.g. the GLUE task).
    """

    modality: str
    problem_type: str | None
    label_column: str | None
    label_list: list[str] | None = None
    image_column: str | None = None
    text_columns: list[str] = field(default_factory=list)
    task_name: str | None = None
    eval_splits: list[str] = field(default_factory=list)
    test_splits: list[str] = field(default_factory=list)
    test_has_labels: bool = True
    dataset_name: str | None = None
    dataset_config_name: str | None = None

    @property
    def num_labels(self) -> int:
        """Number of model outputs: classes, or 1 for regression."""
        return len(self.label_list) if self.label_list else 1

    @property
    def id2label(self) -> dict[int, str]:
        """Class id → name (``{0: "LABEL_0"}`` for regression, as transformers does)."""
        return dict(enumerate(self.label_list)) if self.label_list else {0: "LABEL_0"}

    def metric_prefix(self, split: str) -> str:
        """The metric key prefix for an eval split: `eval` for the main one, `eval_mismatched` for MNLI's
        `validation_mismatched` (as run_glue.py names them)."""
        return "eval" if split == self.eval_splits[0] else f"eval_{split.removeprefix('validation_')}"

    @property
    def label2id(self) -> dict[str, int]:
        """Class name → id."""
        return {name: i for i, name in self.id2label.items()}


# ---------------------------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------------------------


def load_raw_datasets(
    data_args: DataTrainingArguments,
    seed: int = 42,
    modalities: Iterable[str] | None = None,
    require_labels: bool = True,
) -> tuple[DatasetDict, TaskInfo]:
    """Loads the data named by ``data_args``, finds its columns and labels, and makes the splits.

    Sources: a Hub dataset or a local directory (``dataset_name``, see the module docstring), GLUE
    (``task_name``, or ``dataset_name`` ``nyu-mll/glue``/``glue``/a local ``.../glue`` directory with the task as
    ``dataset_config_name``), image folders (``train_dir``/``validation_dir``, one subfolder per class), or data
    files (``train_file``/``validation_file``/``test_file``: csv, tsv, json, jsonl, parquet).

    Then, in order: columns are resolved (flags, else auto-detection), labels normalized (non-``ClassLabel``
    labels become ``ClassLabel`` with sorted names; floats mean regression; lists mean multi-label), rows without a
    label (-1/None) dropped from train and validation (GLUE test labels are -1: kept, ``test_has_labels=False``), a
    validation split carved from train when there is none (``train_val_split``, seeded, stratified by label when
    possible), ``max_train_samples`` applied as ``shuffle(seed).select(range(n))``, ``max_eval_samples`` /
    ``max_predict_samples`` as ``select(range(n))``, and the first images decoded as a cheap check.

    With ``require_labels=False`` the train split is unlabelled data (a domain adaptation target): it may lack
    the label column (a flat image folder, a file of inputs only), labels that are all missing (-1/None) are
    dropped from it, and its rows are kept whatever their label; no validation split is carved from it. The other splits keep their
    labels and checks, and ``info.label_column`` / ``info.problem_type`` / ``info.label_list`` are None when no
    split has labels.

    Args:
        data_args: The data flags.
        seed: Seed for the validation split and the train subsample (pass ``training_args.seed``).
        modalities: The modalities the model reads (``{"image"}``, ``{"text"}``, ``{"image", "text"}``), from its
            backbones; None detects what the data has.
        require_labels: False when the train split is unlabelled data (see above).

    Returns:
        ``(raw_datasets, info)``: a ``DatasetDict`` with ``"train"``, the eval splits and the test splits where
        present (raw columns, labels as ``ClassLabel``/float), and the :class:`TaskInfo`.

    Raises:
        ValueError: Before any training, with the bad value and the valid ones: unknown GLUE task or ``ax`` asked
            for training, unknown column (lists the dataset's columns), missing modality, empty split, unreadable
            image in the first rows (names the row and file), a missing local path.
    """
    task = _resolve_glue_task(data_args)
    wanted = _check_modalities(modalities)
    raw, source = _load_source(data_args, task)

    if task is not None:
        eval_splits = ["validation_matched", "validation_mismatched"] if task == "mnli" else ["validation"]
        test_splits = ["test_matched", "test_mismatched"] if task == "mnli" else ["test"]
    else:
        raw = _rename_validation_split(raw)
        eval_splits, test_splits = ["validation"], ["test"]
    known = ["train", *eval_splits, *test_splits]
    dropped = [split for split in raw if split not in known]
    if dropped:
        logger.info("Ignoring splits %s (known splits: %s).", dropped, known)
    raw = DatasetDict({split: raw[split] for split in known if split in raw})
    if not raw:
        raise ValueError(f"No usable split in {source}: found {dropped}, expected some of {known}.")

    reference = raw["train"] if "train" in raw else next(iter(raw.values()))
    features = reference.features
    if require_labels:
        label_column = _resolve_label_column(data_args.label_column_name, features, source)
    else:
        raw, label_column = _unlabelled_train(raw, data_args.label_column_name, source)
        features = (raw["train"] if "train" in raw else reference).features
    image_column, text_columns = _resolve_input_columns(data_args, task, features, label_column, wanted, source)
    # Splits that may lack the label column: test splits, and an unlabelled train split.
    may_lack_labels = set(test_splits) | (set() if require_labels else {"train"})
    for split, dataset in raw.items():
        missing = [c for c in [label_column, image_column, *text_columns] if c and c not in dataset.column_names]
        if missing and not (split in may_lack_labels and missing == [label_column]):
            raise ValueError(
                f"Split '{split}' of {source} lacks column(s) {missing}; its columns are: "
                f"{', '.join(dataset.column_names)}."
            )
    if image_column is not None and isinstance(features[image_column], Value):
        raw = _cast_image_paths(raw, image_column, data_args)

    problem_type = label_list = None
    test_has_labels = False
    if label_column is not None:
        # String cells naming several labels become lists first (--label_delimiter / --problem_type; never guessed)
        raw, do_regression = parse_label_strings(
            raw, label_column, data_args.label_delimiter, data_args.problem_type, data_args.do_regression
        )
        raw, problem_type, label_list = _normalize_labels(raw, label_column, do_regression)
        check_problem_type(data_args.problem_type, problem_type, label_column)
        # GLUE marks missing labels -1 (stsb too); elsewhere -1 is a valid regression target.
        minus_one_missing = task is not None or problem_type != "regression"
        test_has_labels = any(
            _has_any_label(raw[s], label_column, problem_type, minus_one_missing) for s in test_splits if s in raw
        )
        for split in list(raw):
            if split not in may_lack_labels:
                raw[split] = _drop_unlabeled(raw[split], label_column, problem_type, split, minus_one_missing)

    if require_labels and "train" in raw and not any(s in raw for s in eval_splits):
        raw = _carve_validation(raw, data_args.train_val_split, label_column, seed)
    raw = _apply_max_samples(raw, data_args, eval_splits, test_splits, seed)
    for split, dataset in raw.items():
        if len(dataset) == 0:
            raise ValueError(
                f"Split '{split}' of {source} is empty after filtering (rows without a label dropped, "
                f"max_train_samples={data_args.max_train_samples}, max_eval_samples={data_args.max_eval_samples}, "
                f"max_predict_samples={data_args.max_predict_samples}); splits: "
                f"{ {name: len(d) for name, d in raw.items()} }."
            )
    if image_column is not None:
        for split, dataset in raw.items():
            check_images(dataset, image_column, num_rows=4, split=split)

    modality = "multimodal" if image_column and text_columns else "image" if image_column else "text"
    info = TaskInfo(
        modality=modality,
        problem_type=problem_type,
        label_column=label_column,
        label_list=label_list,
        image_column=image_column,
        text_columns=text_columns,
        task_name=task,
        eval_splits=[s for s in eval_splits if s in raw],
        test_splits=[s for s in test_splits if s in raw],
        test_has_labels=test_has_labels,
        dataset_name=data_args.dataset_name or (None if task is None else "nyu-mll/glue") or source,
        dataset_config_name=task or data_args.dataset_config_name,
    )
    logger.info("Loaded %s: %s; %s", source, {s: len(d) for s, d in raw.items()}, info)
    return raw, info


def _unlabelled_train(raw: DatasetDict, flag_value: str | None, source: str) -> tuple[DatasetDict, str | None]:
    """Resolves the label column of data whose train split is unlabelled; drops that split's labels when none is
    set (all -1/None), so they neither empty the split nor enter the label set. Returns the label column or None
    when no split has one."""
    columns = {name: f for dataset in raw.values() for name, f in dataset.features.items()}
    try:
        label_column = _resolve_label_column(flag_value, datasets.Features(columns), source)
    except ValueError:  # no label column anywhere (or the source's --label_column_name): fine without labels
        return raw, None
    train = raw.get("train")
    if train is not None and label_column in train.column_names:
        values = train.select_columns([label_column])[label_column]
        if all(v is None or v == -1 or (isinstance(v, float) and v != v) for v in values):
            raw["train"] = train.remove_columns(label_column)
    if not any(label_column in dataset.column_names for dataset in raw.values()):
        return raw, None
    return raw, label_column


def _check_modalities(modalities: Iterable[str] | None) -> set[str] | None:
    if modalities is None:
        return None
    wanted = set(modalities)
    unknown = wanted - {"image", "text"}
    if unknown or not wanted:
        raise ValueError(f"Unknown modalities {sorted(unknown) or '(none)'}; valid: image, text.")
    return wanted


def _is_glue_name(name: str | None) -> bool:
    if name is None:
        return False
    return name.lower() in GLUE_DATASET_NAMES or (os.path.isdir(name) and Path(name).name.lower() == "glue")


def _resolve_glue_task(data_args: DataTrainingArguments) -> str | None:
    task = data_args.task_name
    if task is None and _is_glue_name(data_args.dataset_name):
        if data_args.dataset_config_name is None:
            raise ValueError(
                f"GLUE ({data_args.dataset_name}) needs a task: pass --dataset_config_name (or --task_name), one of "
                f"{', '.join(GLUE_TASK_TO_KEYS)}."
            )
        task = data_args.dataset_config_name.lower()
    if task is None:
        return None
    if task == "ax":
        raise ValueError(
            "GLUE task 'ax' is a test-only diagnostic set (no train or validation split, labels -1): it cannot be "
            "trained or evaluated on. Train on 'mnli' and predict on 'ax'. Trainable tasks: "
            f"{', '.join(GLUE_TASK_TO_KEYS)}."
        )
    if task not in GLUE_TASK_TO_KEYS:
        raise ValueError(f"Unknown GLUE task {task!r}; valid tasks: {', '.join(GLUE_TASK_TO_KEYS)}.")
    return task


def _load_source(data_args: DataTrainingArguments, task: str | None) -> tuple[DatasetDict, str]:
    """Loads the raw splits; returns them with a short description of the source for error messages."""
    cache_dir = data_args.cache_dir
    if data_args.dataset_name is not None or task is not None:
        name = data_args.dataset_name or "nyu-mll/glue"
        config = task or data_args.dataset_config_name
        looks_local = name.startswith((".", "/", "~")) or os.path.isdir(name)
        if looks_local:
            path = Path(name).expanduser()
            if not path.is_dir():
                raise ValueError(f"--dataset_name {name}: no such directory.")
            return _load_local_directory(path, config, cache_dir), f"dataset {name!r}"
        try:
            loaded = datasets.load_dataset(name, config, cache_dir=cache_dir)
        except Exception as err:  # offline, unknown name, unknown config: say what to do instead
            raise ValueError(
                f"Could not load dataset {name!r} (config {config!r}) from the Hub: {type(err).__name__}: {err}. "
                "Without network access, pass a local directory as --dataset_name (a save_to_disk DatasetDict or "
                "parquet files as the Hub stores them), or use --train_file/--train_dir."
            ) from err
        return _as_dataset_dict(loaded), f"dataset {name!r}"

    if data_args.train_dir is not None or data_args.validation_dir is not None:
        data_files = {}
        for split, folder in (("train", data_args.train_dir), ("validation", data_args.validation_dir)):
            if folder is None:
                continue
            if not os.path.isdir(folder):
                raise ValueError(f"--{split}_dir {folder}: no such directory.")
            data_files[split] = os.path.join(folder, "**")
        loaded = datasets.load_dataset("imagefolder", data_files=data_files, cache_dir=cache_dir)
        return loaded, f"image folders {data_files}"

    data_files = {
        split: path
        for split, path in (
            ("train", data_args.train_file),
            ("validation", data_args.validation_file),
            ("test", data_args.test_file),
        )
        if path is not None
    }
    builders = {}
    for split, path in data_files.items():
        if not os.path.isfile(path):
            raise ValueError(f"--{split}_file {path}: no such file.")
        suffix = Path(path).suffix.lower()
        if suffix not in DATA_FILE_BUILDERS:
            raise ValueError(
                f"--{split}_file {path}: unsupported extension {suffix!r}; valid: {', '.join(DATA_FILE_BUILDERS)}."
            )
        builders[split] = DATA_FILE_BUILDERS[suffix]
    if len(set(builders.values())) > 1:
        raise ValueError(f"All data files must have the same format; got {data_files}.")
    return _load_files(data_files, cache_dir), f"files {data_files}"


def _load_files(data_files: Mapping[str, str | list[str]], cache_dir: str | None) -> DatasetDict:
    first = next(iter(data_files.values()))
    suffix = Path(first if isinstance(first, str) else first[0]).suffix.lower()
    kwargs = {"sep": "\t"} if suffix == ".tsv" else {}
    return datasets.load_dataset(
        DATA_FILE_BUILDERS[suffix], data_files=dict(data_files), cache_dir=cache_dir, **kwargs
    )


def _as_dataset_dict(loaded: datasets.Dataset | DatasetDict) -> DatasetDict:
    return loaded if isinstance(loaded, DatasetDict) else DatasetDict({"train": loaded})


def _data_files_by_split(folder: Path) -> dict[str, list[str]]:
    files: dict[str, list[str]] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in DATA_FILE_BUILDERS:
            match = _SHARD_NAME.match(path.stem)
            if match:
                files.setdefault(match["split"], []).append(str(path))
    return files


def _has_images(folder: Path) -> bool:
    return any(p.suffix.lower() in IMAGE_EXTENSIONS for p in folder.rglob("*") if p.is_file())


def _load_local_directory(path: Path, config: str | None, cache_dir: str | None) -> DatasetDict:
    """Reads a local dataset directory (see the module docstring for the layouts)."""
    if config is not None and (path / config).is_dir():
        path = path / config
    if (path / "dataset_dict.json").is_file():
        return datasets.load_from_disk(str(path))
    if (path / "state.json").is_file():
        return DatasetDict({"train": datasets.load_from_disk(str(path))})
    for folder in (path, path / "data"):
        if folder.is_dir():
            files = _data_files_by_split(folder)
            if files:
                return _load_files(files, cache_dir)
    configs = sorted(
        d.name
        for d in path.iterdir()
        if d.is_dir() and ((d / "dataset_dict.json").is_file() or _data_files_by_split(d))
    )
    if len(configs) == 1 and config is None:
        return _load_local_directory(path / configs[0], None, cache_dir)
    if configs:
        raise ValueError(
            f"{path} holds several configs ({', '.join(configs)}); pass --dataset_config_name, one of them"
            + (f" (got {config!r})." if config else ".")
        )
    if _has_images(path):
        return datasets.load_dataset("imagefolder", data_dir=str(path), cache_dir=cache_dir)
    raise ValueError(
        f"No dataset found in {path}: expected a save_to_disk DatasetDict, data files named "
        f"{{split}}-00000-of-00001{{{','.join(DATA_FILE_BUILDERS)}}}, one subfolder per config, or image folders."
    )


def _rename_validation_split(raw: DatasetDict) -> DatasetDict:
    if "validation" in raw:
        return raw
    for alias in VALIDATION_SPLIT_ALIASES[1:]:
        if alias in raw:
            renamed = {("validation" if split == alias else split): ds for split, ds in raw.items()}
            return DatasetDict(renamed)
    return raw


# ---------------------------------------------------------------------------------------------------------------
# Columns
# ---------------------------------------------------------------------------------------------------------------


def _unknown_column(flag: str, name: str, columns: Iterable[str], source: str) -> ValueError:
    return ValueError(f"--{flag} {name!r} is not a column of {source}; its columns are: {', '.join(columns)}.")


def _resolve_label_column(flag_value: str | None, features: datasets.Features, source: str) -> str:
    if flag_value is not None:
        if flag_value not in features:
            raise _unknown_column("label_column_name", flag_value, features, source)
        return flag_value
    for name in LABEL_COLUMN_NAMES:
        if name in features:
            return name
    class_labels = [name for name, feature in features.items() if isinstance(feature, ClassLabel)]
    if len(class_labels) == 1:
        return class_labels[0]
    raise ValueError(
        f"No label column found in {source}; pass --label_column_name, one of its columns: {', '.join(features)}."
    )


def _resolve_input_columns(
    data_args: DataTrainingArguments,
    task: str | None,
    features: datasets.Features,
    label_column: str | None,
    wanted: set[str] | None,
    source: str,
) -> tuple[str | None, list[str]]:
    columns = list(features)
    want_image = wanted is None or "image" in wanted
    want_text = wanted is None or "text" in wanted

    image_column = None
    if data_args.image_column_name is not None and (want_image or wanted is None):
        if data_args.image_column_name not in features:
            raise _unknown_column("image_column_name", data_args.image_column_name, columns, source)
        image_column = data_args.image_column_name
    elif want_image:
        image_columns = [n for n, f in features.items() if isinstance(f, datasets.Image)]
        named = [n for n in IMAGE_COLUMN_NAMES if n in features]
        image_column = (image_columns or named or [None])[0]

    text_columns: list[str] = []
    if data_args.text_columns is not None and want_text:
        for name in data_args.text_columns:
            if name not in features:
                raise _unknown_column("text_column_names", name, columns, source)
        text_columns = data_args.text_columns
    elif task is not None and want_text:
        text_columns = [c for c in GLUE_TASK_TO_KEYS[task] if c is not None]
    elif want_text:
        # Beside an image, a stray string column (file names) is text only if the model reads text.
        any_string = image_column is None or (wanted is not None and "text" in wanted)
        text_columns = _detect_text_columns(features, label_column, any_string)

    if wanted is not None:
        if "image" in wanted and image_column is None:
            raise ValueError(
                f"The model has an image backbone but {source} has no image column; pass --image_column_name, "
                f"one of: {', '.join(columns)}."
            )
        if "text" in wanted and not text_columns:
            raise ValueError(
                f"The model has a text backbone but {source} has no text column; pass --text_column_names, "
                f"one or more of: {', '.join(columns)}."
            )
    elif image_column is None and not text_columns:
        raise ValueError(
            f"Found neither an image nor a text column in {source}; pass --image_column_name or "
            f"--text_column_names. Its columns are: {', '.join(columns)}."
        )
    if label_column is not None and label_column in (image_column, *text_columns):
        raise ValueError(f"Column {label_column!r} cannot be both the label and an input column.")
    return image_column, text_columns


def _detect_text_columns(features: datasets.Features, label_column: str | None, any_string: bool) -> list[str]:
    for pair in TEXT_COLUMN_PAIRS:
        if all(name in features for name in pair):
            return list(pair)
    for name in TEXT_COLUMN_NAMES:
        if name in features:
            return [name]
    if not any_string:
        return []
    strings = [
        name
        for name, feature in features.items()
        if isinstance(feature, Value) and feature.dtype in ("string", "large_string") and name != label_column
    ]
    return strings[:1]


def _cast_image_paths(raw: DatasetDict, image_column: str, data_args: DataTrainingArguments) -> DatasetDict:
    """A string image column (csv/json of file paths) becomes an Image column; relative paths are taken relative
    to the data file that lists them."""
    feature = next(iter(raw.values())).features[image_column]
    if feature.dtype not in ("string", "large_string"):
        raise ValueError(f"Image column {image_column!r} has type {feature.dtype}; expected images or file paths.")
    bases = {
        "train": data_args.train_file,
        "validation": data_args.validation_file,
        "test": data_args.test_file,
    }
    out = {}
    for split, dataset in raw.items():
        base = Path(bases.get(split) or ".").resolve().parent if bases.get(split) else Path.cwd()

        def absolute(paths, base=base):
            return {image_column: [p if p is None or os.path.isabs(p) else str(base / p) for p in paths]}

        dataset = dataset.map(absolute, batched=True, input_columns=[image_column], desc="Resolving image paths")
        out[split] = dataset.cast_column(image_column, datasets.Image())
    return DatasetDict(out)


# ---------------------------------------------------------------------------------------------------------------
# Splits
# ---------------------------------------------------------------------------------------------------------------


def _carve_validation(raw: DatasetDict, fraction: float | None, label_column: str, seed: int) -> DatasetDict:
    """Splits ``fraction`` of train off as validation, stratified by label when the data allows it."""
    if not fraction:
        return raw
    train = raw["train"]
    stratify = label_column if isinstance(train.features[label_column], ClassLabel) else None
    try:
        split = train.train_test_split(test_size=fraction, seed=seed, stratify_by_column=stratify)
    except ValueError as err:  # a class with a single row, or fewer validation rows than classes
        logger.warning("Stratified validation split impossible (%s); splitting without stratification.", err)
        split = train.train_test_split(test_size=fraction, seed=seed)
    out = dict(raw)
    out["train"], out["validation"] = split["train"], split["test"]
    return DatasetDict({name: out[name] for name in ("train", "validation", *raw) if name in out})


def _apply_max_samples(
    raw: DatasetDict,
    data_args: DataTrainingArguments,
    eval_splits: Sequence[str],
    test_splits: Sequence[str],
    seed: int,
) -> DatasetDict:
    # As the example scripts: a seeded random subset of train, the first rows of the evaluation splits.
    if data_args.max_train_samples is not None and "train" in raw:
        n = min(len(raw["train"]), data_args.max_train_samples)
        raw["train"] = raw["train"].shuffle(seed=seed).select(range(n))
    for splits, limit in ((eval_splits, data_args.max_eval_samples), (test_splits, data_args.max_predict_samples)):
        for split in splits:
            if limit is not None and split in raw:
                raw[split] = raw[split].select(range(min(len(raw[split]), limit)))
    return raw
