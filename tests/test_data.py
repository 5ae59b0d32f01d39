"""hf_transfer.data: loading, splits, columns, labels, transforms, tokenization, collation, and its errors."""

from __future__ import annotations

import random
from pathlib import Path

import datasets
import fixtures as fx
import numpy as np
import PIL.Image
import pytest
import torch
from datasets import ClassLabel, Dataset, DatasetDict, Features, Image, Value

from hf_transfer.data import (
    GLUE_TASK_TO_KEYS,
    DataTrainingArguments,
    ImagePreprocessor,
    build_data_collator,
    build_image_transforms,
    check_labels,
    find_unreadable_images,
    load_raw_datasets,
    prepare_datasets,
    prepare_split,
    tokenize_dataset,
)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """Every Hub-schema stand-in, written once for the module."""
    root = tmp_path_factory.mktemp("data")
    fx.make_cifar10(root)
    fx.write_hub_layout(fx.cifar10(), root / "cifar10_disk", fmt="disk")
    fx.make_cifar100(root)
    fx.make_glue(root)
    fx.make_image_folders(root / "folders")
    return root


def load(root: Path, seed: int = 0, modalities=None, **flags):
    """load_raw_datasets with a per-test datasets cache under root."""
    args = DataTrainingArguments(cache_dir=str(root / "cache"), **flags)
    return load_raw_datasets(args, seed=seed, modalities=modalities)


# --- arguments ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flags",
    [
        {"dataset_name": "uoft-cs/cifar10", "train_file": "train.csv"},
        {"train_dir": "train", "train_file": "train.csv"},
        {"task_name": "mrpc", "validation_dir": "val"},
    ],
)
def test_conflicting_data_flags_are_rejected_naming_them(flags):
    with pytest.raises(ValueError, match="Conflicting data flags") as err:
        DataTrainingArguments(**flags)
    for name in flags:
        assert f"--{name}" in str(err.value)


def test_a_data_source_is_required():
    with pytest.raises(ValueError, match="--dataset_name"):
        DataTrainingArguments()


def test_task_name_conflicting_with_dataset_config_name_is_rejected():
    with pytest.raises(ValueError, match="--task_name mrpc but --dataset_config_name sst2"):
        DataTrainingArguments(task_name="mrpc", dataset_config_name="sst2")


@pytest.mark.parametrize("flags", [{"train_val_split": 1.5}, {"max_train_samples": -1}, {"max_seq_length": 0}])
def test_out_of_range_numeric_flags_are_rejected(flags):
    with pytest.raises(ValueError, match=next(iter(flags))):
        DataTrainingArguments(dataset_name="x", **flags)


def test_arguments_parse_from_the_command_line_with_example_script_names_and_help():
    from transformers import HfArgumentParser

    parser = HfArgumentParser(DataTrainingArguments)
    (args,) = parser.parse_args_into_dataclasses(
        ["--dataset_name", "uoft-cs/cifar10", "--max_train_samples", "8", "--pad_to_max_length", "true"]
    )
    assert (args.dataset_name, args.max_train_samples, args.pad_to_max_length) == ("uoft-cs/cifar10", 8, True)
    assert (args.train_val_split, args.max_seq_length) == (0.15, 128)
    assert all(f.metadata.get("help") for f in DataTrainingArguments.__dataclass_fields__.values())


# --- CIFAR-like image datasets --------------------------------------------------------------------------------------


@pytest.mark.parametrize("folder", ["cifar10", "cifar10_disk"])
def test_cifar10_local_copy_loads_with_hub_columns_labels_and_a_carved_validation_split(root, folder):
    raw, info = load(root, dataset_name=str(root / folder))
    assert (info.modality, info.image_column, info.label_column) == ("image", "img", "label")
    assert info.label_list == fx.CIFAR10_LABELS and info.num_labels == 10
    assert info.problem_type == "single_label_classification"
    assert info.eval_splits == ["validation"] and info.test_splits == ["test"] and info.test_has_labels
    assert {k: len(v) for k, v in raw.items()} == {"train": 34, "validation": 6, "test": 20}  # 15 % of 40


def test_validation_split_is_seeded_and_stratified(tmp_path):
    fx.make_cifar10(tmp_path, n_train=200)
    raw, _ = load(tmp_path, dataset_name=str(tmp_path / "cifar10"), seed=1)
    again, _ = load(tmp_path, dataset_name=str(tmp_path / "cifar10"), seed=1)
    other, _ = load(tmp_path, dataset_name=str(tmp_path / "cifar10"), seed=2)
    labels = raw["validation"]["label"][:]
    assert np.bincount(labels).tolist() == [3] * 10  # 30 rows, 3 of each class
    assert labels == again["validation"]["label"][:]
    as_bytes = lambda ds: [r["bytes"] for r in ds.cast_column("img", Image(decode=False))["img"]]  # noqa: E731
    assert as_bytes(raw["validation"]) == as_bytes(again["validation"]) != as_bytes(other["validation"])


def test_cifar100_uses_fine_labels_by_default_and_coarse_labels_on_request(root):
    _, fine = load(root, dataset_name=str(root / "cifar100"))
    _, coarse = load(root, dataset_name=str(root / "cifar100"), label_column_name="coarse_label")
    assert (fine.label_column, fine.num_labels) == ("fine_label", 100)
    assert (coarse.label_column, coarse.num_labels, coarse.label_list[0]) == ("coarse_label", 20, "aquatic_mammals")


def test_image_folders_load_with_folder_names_as_labels(root):
    raw, info = load(root, train_dir=str(root / "folders/train"), validation_dir=str(root / "folders/val"))
    assert info.label_list == ["cat", "dog", "frog"] and info.image_column == "image"
    assert (len(raw["train"]), len(raw["validation"])) == (18, 9)


def test_max_train_samples_takes_a_seeded_shuffle_and_max_eval_samples_the_first_rows(root):
    full, _ = load(root, dataset_name=str(root / "glue"), task_name="sst2", train_val_split=None)
    raw, _ = load(root, dataset_name=str(root / "glue"), task_name="sst2", max_train_samples=5, max_eval_samples=3)
    assert raw["train"]["idx"][:] == full["train"].shuffle(seed=0).select(range(5))["idx"][:]
    assert raw["validation"]["idx"][:] == [0, 1, 2]


# --- GLUE -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("task", "num_labels", "problem_type"),
    [
        ("sst2", 2, "single_label_classification"),
        ("mrpc", 2, "single_label_classification"),
        ("cola", 2, "single_label_classification"),
        ("stsb", 1, "regression"),
        ("mnli", 3, "single_label_classification"),
    ],
)
def test_glue_tasks_get_their_columns_labels_and_problem_type(root, task, num_labels, problem_type):
    raw, info = load(root, dataset_name=str(root / "glue"), dataset_config_name=task)
    assert info.task_name == task and info.modality == "text"
    assert info.text_columns == [c for c in GLUE_TASK_TO_KEYS[task] if c]
    assert (info.num_labels, info.problem_type) == (num_labels, problem_type)
    assert info.label_list == fx.GLUE_LABELS[task]
    assert not info.test_has_labels  # GLUE test labels are -1


def test_glue_task_name_flag_reads_the_task_from_a_local_glue_directory(root):
    _, info = load(root, dataset_name=str(root / "glue"), task_name="MRPC")
    assert (info.task_name, info.text_columns) == ("mrpc", ["sentence1", "sentence2"])


def test_mnli_evaluates_on_matched_and_mismatched_validation(root):
    raw, info = load(root, dataset_name=str(root / "glue"), task_name="mnli")
    assert info.eval_splits == ["validation_matched", "validation_mismatched"]
    assert info.test_splits == ["test_matched", "test_mismatched"]
    assert set(raw) == {"train", *info.eval_splits, *info.test_splits}


def test_stsb_labels_are_float_regression_targets(root):
    raw, info = load(root, dataset_name=str(root / "glue"), task_name="stsb")
    train, _, collator = prepare_datasets(raw, info, [fx.text_backbone()], [fx.tiny_tokenizer()])
    batch = collator([train[i] for i in range(4)])
    assert batch["labels"].dtype == torch.float32 and batch["labels"].shape == (4,)


def test_glue_test_labels_are_skipped_not_checked_nor_fed_to_the_model(root):
    raw, info = load(root, dataset_name=str(root / "glue"), task_name="mrpc")
    assert set(raw["test"]["label"][:]) == {-1}
    args = ([fx.text_backbone()], [fx.tiny_tokenizer()])
    test = prepare_split(raw["test"], info, *args, has_labels=info.test_has_labels)
    _, evals, _ = prepare_datasets(raw, info, *args)
    assert "labels" not in test.column_names and "labels" in evals["validation"].column_names
    assert list(evals) == ["validation"]  # test splits are not evaluated


def test_unknown_glue_task_lists_the_valid_tasks(root):
    with pytest.raises(ValueError, match="Unknown GLUE task 'mrcp'; valid tasks: cola, mnli, mrpc"):
        load(root, dataset_name=str(root / "glue"), dataset_config_name="mrcp")


def test_glue_ax_cannot_be_trained_on(root):
    with pytest.raises(ValueError, match="'ax' is a test-only diagnostic set.*Train on 'mnli'"):
        load(root, task_name="ax", dataset_name=str(root / "glue"))


def test_glue_without_a_task_asks_for_one(root):
    with pytest.raises(ValueError, match="needs a task.*cola, mnli"):
        load(root, dataset_name=str(root / "glue"))


# --- data files --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_data_files_with_string_labels_map_them_to_sorted_ids(tmp_path, fmt):
    paths = fx.make_text_files(tmp_path, fmt=fmt)
    raw, info = load(tmp_path, train_file=paths["train"], validation_file=paths["validation"], test_file=paths["test"])
    assert info.label_list == ["neg", "neutral", "pos"] and info.text_columns == ["text"]
    assert raw["train"].features["label"] == ClassLabel(names=["neg", "neutral", "pos"])
    assert raw["train"]["label"][:3] == [0, 2, 1]  # neg, pos, neutral


def test_integer_labels_with_gaps_become_contiguous_ids(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("text,label\n" + "".join(f"the cat {i},{[1, 5, 9][i % 3]}\n" for i in range(12)))
    raw, info = load(tmp_path, train_file=str(path), train_val_split=None)
    assert info.label_list == ["1", "5", "9"] and raw["train"]["label"][:3] == [0, 1, 2]


def test_do_regression_turns_integer_labels_into_float_targets(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("text,score\n" + "".join(f"a dog {i},{i % 5}\n" for i in range(10)))
    raw, info = load(tmp_path, train_file=str(path), label_column_name="score", do_regression=True)
    assert info.problem_type == "regression" and raw["train"].features["score"] == Value("float32")


def test_list_labels_mean_multi_label_and_become_multi_hot(tmp_path):
    names = ["action", "comedy", "drama"]
    features = Features({"text": Value("string"), "genres": datasets.List(ClassLabel(names=names))})
    rows = {"text": ["a", "b", "c", "d"], "genres": [[0], [1, 2], [], [0, 2]]}
    fx.write_hub_layout(DatasetDict({"train": Dataset.from_dict(rows, features=features)}), tmp_path / "movies")
    raw, info = load(tmp_path, dataset_name=str(tmp_path / "movies"), label_column_name="genres", train_val_split=None)
    assert (info.problem_type, info.label_list) == ("multi_label_classification", names)
    train, _, collator = prepare_datasets(raw, info, [fx.text_backbone()], [fx.tiny_tokenizer()])
    batch = collator([train[i] for i in range(4)])
    assert batch["labels"].tolist() == [[1, 0, 0], [0, 1, 1], [0, 0, 0], [1, 0, 1]]
    assert batch["labels"].dtype == torch.float32


def test_data_files_of_mixed_formats_are_rejected(tmp_path):
    paths = fx.make_text_files(tmp_path, fmt="csv")
    other = fx.make_text_files(tmp_path / "j", fmt="jsonl")
    with pytest.raises(ValueError, match="same format"):
        load(tmp_path, train_file=paths["train"], validation_file=other["validation"])


def test_missing_data_file_and_directory_are_named(tmp_path):
    with pytest.raises(ValueError, match="--train_file .*nope.csv: no such file"):
        load(tmp_path, train_file=str(tmp_path / "nope.csv"))
    with pytest.raises(ValueError, match="--train_dir .*nodir: no such directory"):
        load(tmp_path, train_dir=str(tmp_path / "nodir"))
    with pytest.raises(ValueError, match="--dataset_name .*gone: no such directory"):
        load(tmp_path, dataset_name=str(tmp_path / "gone"))


def test_a_local_directory_with_several_configs_asks_for_one(tmp_path):
    # The layout of glue/ under another name: no GLUE knowledge applies, so the config must be chosen.
    for task in ("mrpc", "sst2"):
        fx.write_hub_layout(fx.glue(task), tmp_path / "pairs" / task)
    with pytest.raises(ValueError, match="several configs \\(mrpc, sst2\\); pass --dataset_config_name"):
        load(tmp_path, dataset_name=str(tmp_path / "pairs"))
    _, info = load(tmp_path, dataset_name=str(tmp_path / "pairs"), dataset_config_name="mrpc")
    assert info.task_name is None and info.text_columns == ["sentence1", "sentence2"]


def test_unreachable_hub_dataset_suggests_a_local_directory(tmp_path):
    with pytest.raises(ValueError, match="Could not load dataset 'no-such-user/no-such-dataset'.*local directory"):
        load(tmp_path, dataset_name="no-such-user/no-such-dataset")


# --- columns and labels: errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "value"),
    [("label_column_name", "labl"), ("image_column_name", "picture"), ("text_column_names", "img,nope")],
)
def test_unknown_column_flags_list_the_dataset_columns(root, flag, value):
    with pytest.raises(
        ValueError, match=f"--{flag} '{value.split(',')[-1]}' is not a column .*columns are: img, label"
    ):
        load(root, dataset_name=str(root / "cifar10"), **{flag: value})


def test_a_modality_the_model_reads_but_the_data_lacks_is_an_error(root):
    with pytest.raises(ValueError, match="text backbone but .* no text column.*img, label"):
        load(root, dataset_name=str(root / "cifar10"), modalities={"image", "text"})


def test_an_empty_split_after_filtering_is_an_error(root, tmp_path):
    with pytest.raises(ValueError, match="Split 'train' .* is empty .*max_train_samples=0"):
        load(root, dataset_name=str(root / "cifar10"), max_train_samples=0)
    path = tmp_path / "train.csv"
    path.write_text("text,label\n" + "a cat,-1\n" * 4)
    (tmp_path / "val.csv").write_text("text,label\nthe dog,0\nthe cat,1\n")
    with pytest.raises(ValueError, match="Split 'train' .* is empty after filtering .*without a label"):
        load(tmp_path, train_file=str(path), validation_file=str(tmp_path / "val.csv"))


def test_check_labels_names_out_of_range_values_rows_and_valid_range(root):
    raw, _ = load(root, dataset_name=str(root / "cifar10"))
    with pytest.raises(ValueError) as err:
        check_labels(raw["test"], "label", num_labels=5)
    message = str(err.value)
    assert "found [5, 6, 7, 8, 9]" in message and "num_labels=5" in message
    assert "valid labels are 0..4 (airplane, automobile, bird, cat, deer); the dataset has 10 classes" in message
    assert "rows " in message
    check_labels(raw["test"], "label", num_labels=10)  # fits


def test_check_labels_ignores_minus_one_and_lists_columns_when_missing(root):
    raw, _ = load(root, dataset_name=str(root / "glue"), task_name="sst2")
    check_labels(raw["test"], "label", num_labels=2)  # all -1: no label, not out of range
    with pytest.raises(ValueError, match="'target' not found; columns: sentence, label, idx"):
        check_labels(raw["test"], "target", num_labels=2)


def test_prepare_datasets_checks_labels_against_the_model_before_training(root):
    raw, info = load(root, dataset_name=str(root / "cifar10"))
    with pytest.raises(ValueError, match="num_labels=3"):
        prepare_datasets(raw, info, [fx.image_backbone()], num_labels=3)


# --- unreadable images --------------------------------------------------------------------------------------------


def _folders_with_bad_image(root: Path, bad_name: str) -> tuple[Path, Path]:
    train, val = fx.make_image_folders(root, classes=("cat", "dog"), per_class=4, modes=("RGB",))
    (train / bad_name).parent.mkdir(parents=True, exist_ok=True)
    (train / bad_name).write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    return train, val


def test_unreadable_image_is_caught_up_front_naming_row_and_file(tmp_path):
    train, val = _folders_with_bad_image(tmp_path, "cat/0_broken.png")
    with pytest.raises(
        ValueError, match=r"Cannot read image in row \d of split 'train', column 'image' \(file '.*0_broken.png'\)"
    ):
        load(tmp_path, train_dir=str(train), validation_dir=str(val))


def test_unreadable_embedded_image_is_caught_up_front_naming_the_row(tmp_path):
    data = fx.cifar10(n_train=10, n_test=4).cast_column("img", Image(decode=False))
    rows = data["train"].to_dict()
    rows["img"][2] = {"bytes": b"garbage", "path": None}
    data["train"] = Dataset.from_dict(rows, features=data["train"].features).cast_column("img", Image())
    fx.write_hub_layout(data, tmp_path / "broken")
    with pytest.raises(ValueError, match=r"row 2 of split 'train', column 'img' \(embedded bytes \(7 bytes"):
        load(tmp_path, dataset_name=str(tmp_path / "broken"), train_val_split=None)


def test_unreadable_image_past_the_first_rows_fails_in_the_transform_naming_the_file(tmp_path):
    train, val = _folders_with_bad_image(tmp_path, "dog/9_broken.png")
    raw, info = load(tmp_path, train_dir=str(train), validation_dir=str(val))
    bad = find_unreadable_images(raw["train"], "image")
    assert len(bad) == 1
    train = prepare_datasets(raw, info, [fx.image_backbone()]).train_dataset
    with pytest.raises(ValueError, match=r"Cannot read image file '.*9_broken.png' in column 'image'"):
        train[bad[0]]
    train[0]  # the others are fine


# --- image transforms -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "P"])
@pytest.mark.parametrize("is_training", [True, False])
def test_image_transforms_turn_any_32px_image_into_the_backbone_input(mode, is_training):
    transform = build_image_transforms(fx.image_backbone(64)["data_config"], is_training)
    out = transform(fx.random_image(np.random.default_rng(0), 32, mode))
    assert out.shape == (3, 64, 64) and out.dtype == torch.float32


def test_train_transform_has_no_color_jitter_unless_asked():
    config = fx.image_backbone(32)["data_config"]
    names = lambda t: [type(step).__name__ for step in t.transforms]  # noqa: E731
    assert "ColorJitter" not in names(build_image_transforms(config, True))
    assert "ColorJitter" in names(build_image_transforms(config, True, color_jitter=0.4))
    assert {"RandomResizedCropAndInterpolation", "RandomHorizontalFlip"} <= set(
        names(build_image_transforms(config, True))
    )


def test_eval_transform_is_deterministic_and_normalizes_with_the_backbone_statistics():
    config = fx.image_backbone(32, mean=(0.25, 0.5, 0.75), std=(0.5, 0.5, 0.5))["data_config"]
    transform = build_image_transforms(config, is_training=False)
    image = PIL.Image.new("RGB", (40, 40), (128, 128, 128))
    out = transform(image)
    assert torch.equal(out, transform(image))
    expected = (128 / 255 - torch.tensor([0.25, 0.5, 0.75])) / 0.5
    assert torch.allclose(out.mean(dim=(1, 2)), expected, atol=1e-3)


@pytest.mark.parametrize("is_training", [True, False])
def test_image_transform_output_equals_timms_own_transform(is_training):
    from timm.data import create_transform

    config = fx.image_backbone(48, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))["data_config"]
    ours = build_image_transforms(config, is_training)
    timms = create_transform(
        input_size=tuple(config["input_size"]),
        is_training=is_training,
        interpolation="bicubic",
        mean=tuple(config["mean"]),
        std=tuple(config["std"]),
        crop_pct=0.875,
        color_jitter=None,
    )
    image = fx.random_image(np.random.default_rng(0), 32)
    outputs = []
    for transform in (timms, ours):
        random.seed(0)  # timm's random-resized crop draws from `random`, the flip from torch
        torch.manual_seed(0)
        outputs.append(transform(image))
    assert torch.allclose(outputs[1], outputs[0], atol=1e-5)


def test_image_preprocessor_emits_one_pixel_values_per_distinct_image_input(root):
    raw, info = load(root, dataset_name=str(root / "cifar10"))
    backbones = [fx.image_backbone(32), fx.image_backbone(32), fx.image_backbone(48, "_1")]  # first two share input
    preprocessor = ImagePreprocessor(backbones, "img", "label", is_training=True)
    example = raw["train"].with_transform(preprocessor)[0]
    assert set(example) == {"pixel_values", "pixel_values_1", "labels"}
    assert example["pixel_values"].shape == (3, 32, 32) and example["pixel_values_1"].shape == (3, 48, 48)


def test_image_backbones_sharing_an_input_must_share_preprocessing():
    with pytest.raises(ValueError, match="sharing input_suffix '' need the same preprocessing.*own input_suffix"):
        ImagePreprocessor([fx.image_backbone(32), fx.image_backbone(64)], "img")


def test_image_backbone_without_data_config_is_an_error():
    with pytest.raises(ValueError, match="Image backbone 1 has no 'data_config'"):
        ImagePreprocessor([fx.text_backbone(), {"modality": "image"}], "img")
    with pytest.raises(ValueError, match="Backbone 0 has modality 'audio'; valid: image, text"):
        ImagePreprocessor([{"modality": "audio"}], "img")


def test_prepared_image_splits_use_a_lazy_transform_not_torch_format(root):
    raw, info = load(root, dataset_name=str(root / "cifar10"))
    train, evals, _ = prepare_datasets(raw, info, [fx.image_backbone(32)])
    for dataset in (train, evals["validation"]):
        assert dataset.format["type"] == "custom"  # with_transform, never set_format("torch")
        assert dataset.features["img"] == Image(decode=False)  # decoded by the transform: errors name the file
    assert train._format_kwargs["transform"].is_training
    assert not evals["validation"]._format_kwargs["transform"].is_training


def test_no_augmentation_trains_on_the_deterministic_eval_transform_and_color_jitter_is_a_flag(root):
    raw, info = load(root, dataset_name=str(root / "cifar10"))
    args = DataTrainingArguments(dataset_name="x", no_augmentation=True)
    train = prepare_datasets(raw, info, [fx.image_backbone(32)], None, args).train_dataset
    assert not train._format_kwargs["transform"].is_training
    assert torch.equal(train[0]["pixel_values"], train[0]["pixel_values"])
    args = DataTrainingArguments(dataset_name="x", color_jitter=0.4)
    train = prepare_datasets(raw, info, [fx.image_backbone(32)], None, args).train_dataset
    steps = train._format_kwargs["transform"].transforms["pixel_values"].transforms
    assert any(type(step).__name__ == "ColorJitter" for step in steps)


def test_the_collator_stacks_pixel_values_and_makes_long_labels(root):
    raw, info = load(root, dataset_name=str(root / "cifar10"))
    _, evals, collator = prepare_datasets(raw, info, [fx.image_backbone(32), fx.image_backbone(40, "_1")])
    batch = collator([evals["validation"][i] for i in range(3)])
    assert batch["pixel_values"].shape == (3, 3, 32, 32) and batch["pixel_values_1"].shape == (3, 3, 40, 40)
    assert batch["labels"].dtype == torch.long and batch["labels"].tolist() == raw["validation"]["label"][:3]


def test_dataloader_workers_run_the_image_pipeline(root):
    raw, info = load(root, dataset_name=str(root / "cifar10"))
    train, _, collator = prepare_datasets(raw, info, [fx.image_backbone(32)])
    loader = torch.utils.data.DataLoader(train, batch_size=8, num_workers=2, collate_fn=collator)
    sizes = [batch["pixel_values"].shape[0] for batch in loader]
    assert sum(sizes) == len(train)


# --- text ---------------------------------------------------------------------------------------------------------


def test_tokenization_truncates_to_max_seq_length_and_pads_per_batch_by_default(root):
    raw, info = load(root, dataset_name=str(root / "glue"), task_name="sst2")
    tokenized = tokenize_dataset(raw["train"], [fx.text_backbone()], [fx.tiny_tokenizer()], ["sentence"], 8)
    lengths = {len(ids) for ids in tokenized["input_ids"][:]}
    assert max(lengths) == 8 and len(lengths) > 1  # truncated, not padded
    assert "sentence" not in tokenized.column_names and "label" in tokenized.column_names


def test_pad_to_max_length_pads_every_row(root):
    raw, _ = load(root, dataset_name=str(root / "glue"), task_name="sst2")
    tokenized = tokenize_dataset(raw["train"], [fx.text_backbone()], [fx.tiny_tokenizer()], ["sentence"], 16, True)
    assert {len(ids) for ids in tokenized["input_ids"][:]} == {16}


def test_sentence_pairs_are_encoded_together_with_token_type_ids(root):
    raw, info = load(root, dataset_name=str(root / "glue"), task_name="mrpc")
    tokenized = tokenize_dataset(raw["train"], [fx.text_backbone()], [fx.tiny_tokenizer()], info.text_columns, 64)
    row = tokenized[0]
    first, second = raw["train"][0]["sentence1"].split(), raw["train"][0]["sentence2"].split()
    assert len(row["input_ids"]) == len(first) + len(second) + 3  # [CLS] a [SEP] b [SEP]
    assert row["token_type_ids"].count(1) == len(second) + 1


def test_more_than_two_text_columns_are_joined_with_the_delimiter():
    dataset = Dataset.from_dict({"a": ["the cat"], "b": ["sat"], "c": ["on the mat"]})
    tokenized = tokenize_dataset(dataset, [fx.text_backbone()], [fx.tiny_tokenizer()], ["a", "b", "c"], 32)
    assert fx.tiny_tokenizer().decode(tokenized[0]["input_ids"], skip_special_tokens=True) == "the cat sat on the mat"


def test_each_text_backbone_is_tokenized_and_padded_by_its_own_tokenizer(root):
    raw, info = load(root, dataset_name=str(root / "glue"), task_name="sst2")
    backbones = [fx.text_backbone(), fx.image_backbone(), fx.text_backbone("_1")]
    tokenizers = [fx.tiny_tokenizer(), fx.tiny_tokenizer(token_type_ids=False, pad_token_id=3)]
    tokenized = tokenize_dataset(raw["train"], backbones, tokenizers, ["sentence"], 32)
    batch = build_data_collator(backbones, tokenizers)([tokenized[i] for i in range(6)])
    assert set(batch) == {"input_ids", "token_type_ids", "attention_mask", "input_ids_1", "attention_mask_1", "labels"}
    padded = batch["attention_mask"] == 0
    assert padded.any()
    assert (batch["input_ids"][padded] == 0).all() and (batch["input_ids_1"][padded] == 3).all()


def test_one_tokenizer_per_text_backbone_is_required():
    with pytest.raises(ValueError, match="Got 1 tokenizer\\(s\\) for 2 text backbone\\(s\\)"):
        build_data_collator([fx.text_backbone(), fx.text_backbone("_1")], [fx.tiny_tokenizer()])


def test_a_processor_list_with_one_entry_per_backbone_is_accepted():
    backbones = [fx.image_backbone(), fx.text_backbone()]
    collator = build_data_collator(backbones, [object(), fx.tiny_tokenizer()])
    assert list(collator.tokenizers) == [""]


def test_collator_drops_everything_the_model_does_not_read():
    examples = [{"input_ids": [2, 5, 3], "attention_mask": [1, 1, 1], "idx": 7, "sentence": "x", "labels": 1}]
    batch = build_data_collator([fx.text_backbone()], [fx.tiny_tokenizer()])(examples)
    assert set(batch) == {"input_ids", "attention_mask", "labels"}


# --- fusion ---------------------------------------------------------------------------------------------------------


def test_fusion_model_gets_pixel_values_and_input_ids_from_one_dataset(tmp_path):
    fx.image_text_dataset().save_to_disk(str(tmp_path / "pairs"))
    backbones = [fx.image_backbone(32), fx.text_backbone()]
    raw, info = load(tmp_path, dataset_name=str(tmp_path / "pairs"), modalities={"image", "text"})
    assert (info.modality, info.image_column, info.text_columns) == ("multimodal", "image", ["caption"])
    train, _, collator = prepare_datasets(raw, info, backbones, [fx.tiny_tokenizer()])
    batch = collator([train[i] for i in range(4)])
    assert set(batch) == {"pixel_values", "input_ids", "token_type_ids", "attention_mask", "labels"}
    assert batch["pixel_values"].shape == (4, 3, 32, 32) and batch["input_ids"].shape[0] == 4


def test_without_a_text_backbone_a_caption_column_is_not_taken_for_text(tmp_path):
    fx.image_text_dataset().save_to_disk(str(tmp_path / "pairs"))
    _, info = load(tmp_path, dataset_name=str(tmp_path / "pairs"), modalities={"image"})
    assert (info.modality, info.text_columns) == ("image", [])


# --- end to end with the Trainer --------------------------------------------------------------------------------------


class TinyImageClassifier(torch.nn.Module):
    def __init__(self, num_labels: int):
        super().__init__()
        self.linear = torch.nn.Linear(3, num_labels)

    def forward(self, pixel_values, labels=None):
        logits = self.linear(pixel_values.mean(dim=(2, 3)))
        loss = None if labels is None else torch.nn.functional.cross_entropy(logits, labels)
        return {"loss": loss, "logits": logits}


def test_prepared_image_datasets_train_and_evaluate_with_the_trainer(root, tmp_path):
    from transformers import Trainer, TrainingArguments

    from hf_transfer.metrics import build_compute_metrics

    raw, info = load(root, dataset_name=str(root / "cifar10"))
    backbones = [fx.image_backbone(32)]
    args = TrainingArguments(
        output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=8, report_to=[], use_cpu=True
    )
    train_dataset, eval_datasets, data_collator = prepare_datasets(raw, info, backbones, None, None, args)
    assert args.remove_unused_columns is False  # the transform reads the raw image column
    trainer = Trainer(
        model=TinyImageClassifier(info.num_labels),
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_datasets[info.eval_splits[0]],
        data_collator=data_collator,
        compute_metrics=build_compute_metrics(problem_type=info.problem_type, num_labels=info.num_labels),
    )
    trainer.train()
    metrics = trainer.evaluate()
    assert {"eval_accuracy", "eval_f1", "eval_precision", "eval_recall"} <= set(metrics)


def test_prepared_text_datasets_keep_every_backbones_inputs_in_the_trainer(root, tmp_path):
    from transformers import Trainer, TrainingArguments

    class ReadsTwoTexts(torch.nn.Module):  # the second backbone's keys hide behind **inputs, as in TransferModel
        def forward(self, input_ids, attention_mask, labels=None, **inputs):
            raise AssertionError("not called")

    raw, info = load(root, dataset_name=str(root / "glue"), task_name="sst2")
    backbones = [fx.text_backbone(), fx.text_backbone("_1")]
    tokenizers = [fx.tiny_tokenizer(), fx.tiny_tokenizer(token_type_ids=False, pad_token_id=3)]
    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=4, report_to=[], use_cpu=True)
    train, _, collator = prepare_datasets(raw, info, backbones, tokenizers, None, args)
    trainer = Trainer(model=ReadsTwoTexts(), args=args, train_dataset=train, data_collator=collator)
    assert {"input_ids_1", "attention_mask_1", "labels"} <= set(next(iter(trainer.get_train_dataloader())))


def test_mixed_precision_pads_text_to_a_multiple_of_eight(root):
    from types import SimpleNamespace

    raw, info = load(root, dataset_name=str(root / "glue"), task_name="sst2")
    backbones, tokenizers = [fx.text_backbone()], [fx.tiny_tokenizer()]
    train, _, collator = prepare_datasets(raw, info, backbones, tokenizers, None, SimpleNamespace(bf16=True))
    assert collator([train[i] for i in range(5)])["input_ids"].shape[1] % 8 == 0
    assert prepare_datasets(raw, info, backbones, tokenizers).data_collator.pad_to_multiple_of is None


def test_seeded_augmentation_repeats_within_an_epoch_and_changes_across_epochs():
    images = fx.cifar10(n_train=4, n_test=2)["train"].cast_column("img", datasets.Image(decode=False))
    backbones = [fx.image_backbone(size=24)]
    preprocessor = ImagePreprocessor(backbones, "img", "label", is_training=True, seed=7)
    batch = images[:4]
    first = preprocessor(dict(batch))["pixel_values"]
    torch.manual_seed(123)  # the global RNG does not matter
    again = preprocessor(dict(batch))["pixel_values"]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    preprocessor.epoch = 1
    later = preprocessor(dict(batch))["pixel_values"]
    assert not all(torch.equal(a, b) for a, b in zip(first, later))
