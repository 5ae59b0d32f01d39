"""The recipe's `--do_predict` (run_glue.py's files), `--head mlp`'s default and the `--cache_features` advice."""

import json
from pathlib import Path

import fixtures
import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from hf_transfer.prediction import format_predictions

COMMON = fixtures.RECIPE_COMMON_FLAGS
finetune = fixtures.load_recipe_script("finetune_predict")

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    fixtures.make_glue(root, tasks=("mrpc", "stsb", "mnli"), n=24)
    fixtures.make_cifar10(root, n_train=24, n_test=12)
    return root


@pytest.fixture(scope="module")
def bert(tmp_path_factory) -> str:
    return fixtures.save_word_level_bert(tmp_path_factory.mktemp("bert"), num_hidden_layers=1)


def run(argv: list) -> dict:
    return finetune.main([str(a) for a in argv] + COMMON)


def read_predictions(path: Path) -> list[tuple[str, str]]:
    lines = path.read_text().splitlines()
    assert lines[0] == "index\tprediction"
    rows = [tuple(line.split("\t")) for line in lines[1:]]
    assert [int(index) for index, _ in rows] == list(range(len(rows)))
    return rows


@pytest.mark.parametrize(
    ("task", "files"),
    [
        ("mrpc", {"predict_results_mrpc.txt": "test"}),
        ("stsb", {"predict_results_stsb.txt": "test"}),
        ("mnli", {"predict_results_mnli.txt": "test_matched", "predict_results_mnli-mm.txt": "test_mismatched"}),
    ],
)
def test_do_predict_writes_run_glues_files_for_the_test_splits(task, files, data, bert, tmp_path):
    out = tmp_path / task
    results = run(
        ["--backbone", bert, "--dataset_name", data / "glue", "--dataset_config_name", task, "--max_seq_length", "16"]
        + ["--output_dir", out, "--do_train", "--max_steps", "2", "--do_predict", "--max_predict_samples", "10"]
    )
    assert results["predict_samples"] == 10
    written = sorted(p.name for p in out.glob("predict_results*.txt"))
    assert written == sorted(files)

    # the predictions are the saved model's, on the test rows (labels -1), as the label names
    import datasets

    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    columns = fixtures.GLUE_COLUMNS[task]
    for name, split in files.items():
        rows = read_predictions(out / name)
        assert len(rows) == 10
        test = datasets.load_dataset(
            "parquet", data_files=str(data / "glue" / task / f"{split}-00000-of-00001.parquet"), split="train"
        )
        assert set(test["label"]) == ({-1.0} if task == "stsb" else {-1})
        test = test.select(range(10))
        encoded = tokenizer(
            *[list(test[c]) for c in columns], padding=True, truncation=True, max_length=16, return_tensors="pt"
        )
        with torch.no_grad():
            logits = model(**encoded).logits.numpy()
        if task == "stsb":
            assert [p for _, p in rows] == [f"{v:3.3f}" for v in logits[:, 0]]
        else:
            labels = fixtures.GLUE_LABELS[task]
            assert [p for _, p in rows] == [labels[i] for i in logits.argmax(-1)]


def test_do_predict_on_a_test_file_with_labels_scores_it_and_writes_predict_results_txt(bert, tmp_path):
    paths = fixtures.make_text_files(tmp_path / "files", fmt="csv", n=20)
    out = tmp_path / "out"
    results = run(
        ["--backbone", bert, "--train_file", paths["train"], "--validation_file", paths["validation"]]
        + ["--test_file", paths["test"], "--output_dir", out, "--do_train", "--max_steps", "2", "--do_predict"]
    )
    rows = read_predictions(out / "predict_results.txt")
    assert len(rows) == 20 and {p for _, p in rows} <= {"neg", "pos", "neutral"}
    assert "predict_accuracy" in results and results["predict_samples"] == 20
    assert json.loads((out / "predict_results.json").read_text())["predict_samples"] == 20


def test_do_predict_on_cached_image_features(data, tmp_path):
    out = tmp_path / "probe"
    run(
        ["--backbone", "timm:test_resnet", "--random_init", "--freeze", "backbone", "--no_augmentation"]
        + ["--dataset_name", data / "cifar10", "--output_dir", out, "--do_train", "--max_steps", "2"]
        + ["--do_predict", "--cache_features", "true", "--image_size", "32"]
    )
    rows = read_predictions(out / "predict_results.txt")
    assert len(rows) == 12 and {p for _, p in rows} <= set(fixtures.CIFAR10_LABELS)


def test_do_predict_without_a_test_split_stops_before_training(bert, tmp_path):
    paths = fixtures.make_text_files(tmp_path / "files", fmt="csv", n=12)
    out = tmp_path / "never"
    with pytest.raises(ValueError, match="--do_predict needs a test split.*--test_file"):
        run(
            ["--backbone", bert, "--train_file", paths["train"], "--validation_file", paths["validation"]]
            + ["--output_dir", out, "--do_train", "--max_steps", "2", "--do_predict"]
        )
    assert not (out / "trainer_state.json").exists()


def test_format_predictions_for_each_problem_type():
    logits = np.array([[0.2, -1.0, 3.0], [1.0, 0.5, -2.0]])
    assert format_predictions(logits, "single_label_classification", ["a", "b", "c"]) == ["c", "a"]
    assert format_predictions(logits, "multi_label_classification", ["a", "b", "c"]) == ["['a', 'c']", "['a', 'b']"]
    assert format_predictions(np.array([[1.23456], [4.0]]), "regression", None) == ["1.235", "4.000"]


def test_head_mlp_without_hidden_sizes_gets_one_hidden_layer_of_1024(data, tmp_path):
    out = tmp_path / "mlp"
    run(
        ["--backbone", "timm:test_resnet", "--random_init", "--head", "mlp", "--dataset_name", data / "cifar10"]
        + ["--output_dir", out, "--do_train", "--max_steps", "1", "--image_size", "32"]
    )
    config = json.loads((out / "config.json").read_text())
    assert config["head"] == "mlp" and config["head_hidden_sizes"] == [1024]
