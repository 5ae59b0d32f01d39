"""recipes/finetune.py's flags for a trained model, early stopping, class weights, label smoothing and multi-label CSV
labels (issue 15): real Trainer runs on the tiny fixtures."""

import json
import logging
import subprocess
from pathlib import Path

import fixtures
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from transformers import AutoConfig, BertConfig, BertForSequenceClassification

finetune = fixtures.load_recipe_script("finetune_flags")
COMMON = fixtures.RECIPE_COMMON_FLAGS
RESNET = ["--backbone", "timm:test_resnet", "--random_init"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    fixtures.make_cifar10(root, n_train=32, n_test=16)
    fixtures.make_cifar100(root, n_train=40, n_test=20)
    fixtures.make_glue(root, tasks=("mrpc", "stsb"), n=24)
    return root


def _bert_config(tokenizer, **kwargs) -> BertConfig:
    return BertConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        vocab_size=len(tokenizer),
        **kwargs,
    )


@pytest.fixture(scope="module")
def bert(tmp_path_factory) -> str:
    """A 2-layer BERT backbone with the fixtures' word-level tokenizer."""
    return fixtures.save_word_level_bert(tmp_path_factory.mktemp("bert"))


def run(argv: list) -> dict:
    return finetune.main([str(a) for a in argv] + COMMON)


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


# ---- 1. --model_name_or_path: a trained model used with its head ----


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory) -> Path:
    """A fine-tuned hf_transfer image classifier and its eval results."""
    out = tmp_path_factory.mktemp("trained")
    run(
        [*RESNET, "--dataset_name", data / "cifar10", "--output_dir", out, "--do_train", "--do_eval"]
        + ["--max_steps", "4", "--learning_rate", "0.01", "--seed", "3"]
    )
    return out


def test_evaluate_only_on_a_trained_model_reproduces_its_eval_loss(data, trained, tmp_path, caplog):
    expected = read_json(trained / "eval_results.json")["eval_loss"]
    with caplog.at_level(logging.WARNING):
        results = run(
            ["--model_name_or_path", trained, "--dataset_name", data / "cifar10", "--do_eval", "--seed", "3"]
            + ["--output_dir", tmp_path / "eval"]
        )
    assert results["eval_loss"] == pytest.approx(expected, rel=1e-5)
    assert "WITH its head" in caplog.text and "evaluating / predicting only" in caplog.text
    # What --backbone does with the same folder: transfer, a new head (a different loss)
    with caplog.at_level(logging.WARNING):
        transfer = run(
            ["--backbone", trained, "--dataset_name", data / "cifar10", "--do_eval", "--seed", "3"]
            + ["--output_dir", tmp_path / "t"]
        )
    assert "transfer from backbone(s)" in caplog.text
    assert transfer["eval_loss"] != pytest.approx(expected, rel=1e-3)


def test_a_trained_model_trains_further_and_predicts(data, trained, tmp_path):
    out = tmp_path / "more"
    results = run(
        ["--model_name_or_path", trained, "--dataset_name", data / "cifar10", "--do_train", "--do_eval"]
        + ["--do_predict", "--max_steps", "2", "--seed", "3", "--output_dir", out]
    )
    assert read_json(out / "trainer_state.json")["global_step"] == 2
    assert (out / "predict_results.txt").is_file()
    again = run(
        ["--model_name_or_path", out, "--dataset_name", data / "cifar10", "--do_eval", "--seed", "3"]
        + ["--output_dir", out / "e"]
    )
    assert again["eval_loss"] == pytest.approx(results["eval_loss"], rel=1e-5)


def test_a_transformers_sequence_classifier_is_evaluated_with_its_head(data, tmp_path):
    """Any transformers classifier (not an hf_transfer model): its own head and tokenizer, its loss reproduced."""
    path = tmp_path / "bert_cls"
    tokenizer = fixtures.tiny_tokenizer()
    torch.manual_seed(0)
    labels = fixtures.GLUE_LABELS["mrpc"]
    config = _bert_config(tokenizer, num_labels=2, id2label=dict(enumerate(labels)))
    classifier = BertForSequenceClassification(config).eval()
    classifier.save_pretrained(path)
    tokenizer.save_pretrained(path)
    results = run(
        ["--model_name_or_path", path, "--dataset_name", data / "glue", "--dataset_config_name", "mrpc"]
        + ["--do_eval", "--output_dir", tmp_path / "out"]
    )
    validation = pd.read_parquet(data / "glue" / "mrpc" / "validation-00000-of-00001.parquet")
    batch = tokenizer(list(validation.sentence1), list(validation.sentence2), padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = classifier(**batch, labels=torch.tensor(validation.label.values)).loss.item()
    assert results["eval_loss"] == pytest.approx(expected, rel=1e-4)
    with pytest.raises(ValueError, match="--layer_decay need an hf_transfer model"):
        run(
            ["--model_name_or_path", path, "--dataset_name", data / "glue", "--dataset_config_name", "mrpc"]
            + ["--do_train", "--layer_decay", "0.8", "--output_dir", tmp_path / "ld"]
        )


def test_a_transformers_image_classifier_is_evaluated_with_its_head_and_its_image_processor(tmp_path):
    from PIL import Image
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    train_dir, validation_dir = fixtures.make_image_folders(tmp_path / "images", per_class=4)
    labels = ["cat", "dog", "frog"]
    config = ViTConfig(
        image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=37, num_labels=3, id2label=dict(enumerate(labels)),
    )  # fmt: skip
    torch.manual_seed(0)
    classifier = ViTForImageClassification(config).eval()
    processor = ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    path = tmp_path / "vit_cls"
    classifier.save_pretrained(path)
    processor.save_pretrained(path)
    results = run(
        ["--model_name_or_path", path, "--train_dir", train_dir, "--validation_dir", validation_dir, "--do_eval"]
        + ["--output_dir", tmp_path / "out"]
    )
    files = sorted((label, file) for label in labels for file in (validation_dir / label).glob("*.png"))
    images = [Image.open(file).convert("RGB") for _, file in files]
    targets = torch.tensor([labels.index(label) for label, _ in files])
    with torch.no_grad():
        expected = classifier(**processor(images, return_tensors="pt"), labels=targets).loss.item()
    assert results["eval_loss"] == pytest.approx(expected, rel=1e-4)


def test_backbone_and_model_name_or_path_exclude_each_other(data, trained, tmp_path):
    with pytest.raises(ValueError, match="exclude each other"):
        run([*RESNET, "--model_name_or_path", trained, "--dataset_name", data / "cifar10", "--output_dir", tmp_path])


def test_labels_of_the_data_must_be_the_models(data, trained, tmp_path):
    with pytest.raises(ValueError, match=r"predicts 10 labels .* the data has 100"):
        run(
            [
                "--model_name_or_path",
                trained,
                "--dataset_name",
                data / "cifar100",
                "--do_eval",
                "--output_dir",
                tmp_path,
            ]
        )


def test_flags_that_build_a_new_model_are_refused_with_a_trained_one(data, trained, tmp_path):
    with pytest.raises(ValueError, match=r"--head, --freeze build a new model"):
        run(
            ["--model_name_or_path", trained, "--head", "mlp", "--freeze", "backbone"]
            + ["--dataset_name", data / "cifar10", "--do_eval", "--output_dir", tmp_path]
        )


# ---- 2. Early stopping ----


def test_early_stopping_stops_and_sets_the_best_model_settings(data, tmp_path):
    out = tmp_path / "es"
    run(
        [*RESNET, "--freeze", "backbone", "--dataset_name", data / "cifar10", "--output_dir", out, "--do_train"]
        + ["--max_steps", "40", "--eval_strategy", "steps", "--eval_steps", "1", "--save_strategy", "steps"]
        + ["--save_steps", "1", "--early_stopping_patience", "1", "--early_stopping_threshold", "100"]
    )
    state = read_json(out / "trainer_state.json")
    # No evaluation can improve the loss by 100: stopped after the patience, long before max_steps
    assert state["global_step"] <= 3
    assert state["best_metric"] is not None and state["best_model_checkpoint"]


def test_early_stopping_without_evaluation_is_refused(data, tmp_path):
    with pytest.raises(ValueError, match="never evaluates"):
        finetune.parse_args([*RESNET, "--dataset_name", str(data / "cifar10"), "--early_stopping_patience", "2"])
    with pytest.raises(ValueError, match="--save_strategy epoch"):
        finetune.parse_args(
            [*RESNET, "--dataset_name", str(data / "cifar10"), "--early_stopping_patience", "2"]
            + ["--eval_strategy", "epoch", "--save_strategy", "no"]
        )
    model_args, _, training_args = finetune.parse_args(
        [*RESNET, "--dataset_name", str(data / "cifar10"), "--early_stopping_patience", "2"]
        + ["--eval_strategy", "epoch", "--save_strategy", "epoch"]
    )
    assert training_args.load_best_model_at_end and training_args.metric_for_best_model == "loss"


# ---- 2. Class weights ----


def _imbalanced_csv(root: Path) -> dict:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, n in (("train", 32), ("validation", 16)):
        labels = ["rare" if i % 8 == 0 else "common" for i in range(n)]
        pd.DataFrame({"text": [fixtures.sentence(rng) for _ in range(n)], "label": labels}).to_csv(
            root / f"{split}.csv", index=False
        )
        paths[split] = root / f"{split}.csv"
    return paths


def test_class_weights_weigh_the_loss_and_stay_out_of_the_saved_model(bert, tmp_path):
    files = _imbalanced_csv(tmp_path / "csv")
    common = ["--backbone", bert, "--train_file", files["train"], "--validation_file", files["validation"]]
    common += ["--do_train", "--max_steps", "2", "--seed", "0"]
    plain = run([*common, "--output_dir", tmp_path / "plain"])
    ones = run([*common, "--class_weights", "1,1", "--output_dir", tmp_path / "ones"])
    balanced = run([*common, "--class_weights", "balanced", "--output_dir", tmp_path / "balanced"])
    assert ones["train_loss"] == pytest.approx(plain["train_loss"], rel=1e-5)  # same loss as the model's own
    assert balanced["train_loss"] != pytest.approx(plain["train_loss"], rel=1e-3)
    config = read_json(tmp_path / "balanced" / "config.json")
    assert "class_weights" not in json.dumps(config)
    assert AutoConfig.from_pretrained(tmp_path / "balanced").num_labels == 2

    weights = finetune.WeightedCrossEntropy(torch.tensor([0.6, 2.0]))
    logits, labels = torch.randn(5, 2), torch.tensor([0, 1, 1, 0, 0])
    expected = torch.nn.functional.cross_entropy(logits, labels, weight=torch.tensor([0.6, 2.0]), reduction="sum") / 5
    assert weights({"logits": logits}, labels).item() == pytest.approx(expected.item())


def test_class_weights_are_checked_against_the_labels(bert, data, tmp_path):
    files = _imbalanced_csv(tmp_path / "csv")
    common = ["--backbone", bert, "--train_file", files["train"], "--validation_file", files["validation"]]
    with pytest.raises(ValueError, match=r"3 weights for 2 labels \(common, rare\)"):
        run([*common, "--do_train", "--class_weights", "1,2,3", "--output_dir", tmp_path / "o"])
    with pytest.raises(ValueError, match="single-label classification; this data is regression"):
        run(
            ["--backbone", bert, "--dataset_name", data / "glue", "--dataset_config_name", "stsb", "--do_train"]
            + ["--class_weights", "balanced", "--output_dir", tmp_path / "r"]
        )


# ---- 2. Label smoothing against the problem type ----


def test_label_smoothing_on_regression_is_refused_before_training(data, bert, tmp_path):
    with pytest.raises(ValueError, match="label_smoothing_factor 0.1 applies to single-label classification"):
        run(
            ["--backbone", bert, "--dataset_name", data / "glue", "--dataset_config_name", "stsb", "--do_train"]
            + ["--label_smoothing_factor", "0.1", "--max_steps", "1", "--output_dir", tmp_path]
        )


@pytest.mark.parametrize(
    "flags, named",
    [
        (["--mixup", "0.8", "--class_weights", "balanced"], "--mixup / --cutmix and --class_weights"),
        (["--mixup", "0.8", "--adaptation", "mmd"], "--mixup / --cutmix and --adaptation"),
        (["--adaptation", "coral", "--class_weights", "1,2"], "--adaptation and --class_weights"),
    ],
)
def test_methods_with_their_own_loss_are_refused_together(data, tmp_path, flags, named):
    # Each replaces the Trainer's loss: together, one would silently drop the other.
    argv = ["--backbone", "timm:test_resnet", "--random_init", "--dataset_name", data / "cifar10", "--do_train"]
    argv += ["--target_dataset_name", data / "cifar10"] if "--adaptation" in flags else []
    with pytest.raises(ValueError, match=f"{named} each bring their own loss"):
        run(argv + flags + ["--max_steps", "1", "--output_dir", tmp_path])


# ---- 2. Multi-label labels from CSV ----


def _genres_csv(root: Path, as_lists: bool = False) -> dict:
    rng = np.random.default_rng(0)
    combos = [["action", "comedy"], ["drama"], ["comedy", "drama"], ["action"], ["action", "drama"]]
    root.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split in ("train", "validation"):
        cells = [str(c) if as_lists else ",".join(c) for c in combos * 4]
        frame = pd.DataFrame({"text": [fixtures.sentence(rng) for _ in cells], "label": cells})
        frame.to_csv(root / f"{split}.csv", index=False)
        paths[split] = root / f"{split}.csv"
    return paths


@pytest.mark.parametrize("as_lists", [False, True], ids=["delimited", "list-like"])
def test_multi_label_csv_trains_one_output_per_label(bert, tmp_path, as_lists):
    files = _genres_csv(tmp_path / "csv", as_lists)
    argv = ["--backbone", bert, "--train_file", files["train"], "--validation_file", files["validation"]]
    argv += ["--do_train", "--do_eval", "--max_steps", "1", "--output_dir", tmp_path / "out"]
    run(argv + ([] if as_lists else ["--label_delimiter", ","]))
    config = read_json(tmp_path / "out" / "config.json")
    assert config["problem_type"] == "multi_label_classification"
    assert sorted(config["id2label"].values()) == ["action", "comedy", "drama"]  # 3 labels, not 5 combinations


def test_an_ambiguous_label_column_is_an_error_naming_the_flags(bert, tmp_path):
    files = _genres_csv(tmp_path / "csv")
    argv = ["--backbone", bert, "--train_file", files["train"], "--validation_file", files["validation"]]
    with pytest.raises(ValueError, match=r"ambiguous.*'action,comedy'.*--label_delimiter.*--problem_type"):
        run(argv + ["--do_train", "--output_dir", tmp_path / "out"])
    # Said explicitly: each cell one class
    out = tmp_path / "single"
    run(
        argv + ["--problem_type", "single_label_classification", "--max_steps", "1", "--do_train", "--output_dir", out]
    )
    config = read_json(out / "config.json")
    assert config["problem_type"] == "single_label_classification" and len(config["id2label"]) == 5


# ---- 3. A card that reproduces its model ----


def test_the_recipe_from_a_pushed_card_reproduces_the_eval_metrics(data, hub_server, tmp_path):
    """A run pushed with its token on the command line; its card's recipe, run again offline (no push), gives the
    same eval metrics. The token is nowhere in the card, the command in it is the exact one, secrets masked."""
    from huggingface_hub import hf_hub_download

    from hf_transfer.hub.recipe import recipe_from_card

    recipe_file = tmp_path / "base.yaml"
    recipe_file.write_text(f"backbone: [timm:test_resnet]\nrandom_init: true\ndataset_name: {data / 'cifar10'}\n")
    repo_id = "test-user/card-recipe"
    argv = [recipe_file, "--head", "mlp", "--head_hidden_sizes", "8", "--do_train", "--do_eval", "--max_steps", "3"]
    argv += ["--learning_rate", "0.01", "--seed", "7", "--output_dir", tmp_path / "first"]
    argv += ["--push_to_hub", "--hub_model_id", repo_id, "--hub_token", hub_server.token]
    first = run(argv)

    card = Path(hf_hub_download(repo_id, "README.md", token=hub_server.token)).read_text()
    assert hub_server.token not in card
    assert "--hub_token '<redacted>'" in card and "--head_hidden_sizes 8" in card
    recipe = recipe_from_card(card)
    assert recipe["seed"] == 7 and recipe["head"] == "mlp" and recipe["random_init"] is True  # from the recipe file
    assert "hub_token" not in recipe and recipe["per_device_eval_batch_size"] == 16  # from the command line
    assert "transformers:" in card.split("```yaml")[-1]  # versions, as comments of the recipe

    again = tmp_path / "again.yaml"
    again.write_text(yaml.safe_dump(recipe))
    assert str(data) not in card and recipe["dataset_name"] == "cifar10"  # local paths: not published
    local = ["--dataset_name", str(data / "cifar10"), "--output_dir", str(tmp_path / "second")]
    second = finetune.main([str(again), *local, "--push_to_hub", "false"])
    for key in ("eval_loss", "eval_accuracy", "train_loss"):
        assert second[key] == pytest.approx(first[key], rel=1e-6), key


@pytest.mark.slow
def test_class_weights_give_the_same_loss_under_ddp(data, tmp_path):
    """Two CPU DDP ranks of 8 rows each: the weighted loss of the 16 rows equals one process's on all 16 (the
    weighted sum is divided by the Trainer's item count over all ranks)."""
    weights = ",".join(str(w) for w in range(1, 11))
    argv = ["--backbone", "timm:test_vit", "--random_init", "--dataset_name", data / "cifar10", "--no_augmentation"]
    argv += ["--do_train", "--max_train_samples", "16", "--max_steps", "1", "--class_weights", weights, "--seed", "1"]
    single = run([*argv, "--output_dir", tmp_path / "one", "--per_device_train_batch_size", "16"])
    command = [*fixtures.ACCELERATE_TWO_PROCESSES, str(fixtures.RECIPE_SCRIPT), *map(str, argv), *COMMON]
    command += ["--output_dir", str(tmp_path / "ddp"), "--per_device_train_batch_size", "8"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "world size: 2" in result.stdout + result.stderr
    ddp = read_json(tmp_path / "ddp" / "train_results.json")
    assert ddp["train_loss"] == pytest.approx(single["train_loss"], rel=1e-4)


def _labels_dataset(cells):
    from datasets import Dataset, DatasetDict

    return DatasetDict({"train": Dataset.from_dict({"text": ["a"] * len(cells), "label": cells})})


def test_label_parsing_refuses_what_it_cannot_read_unambiguously():
    from datasets import ClassLabel

    from hf_transfer.data.label_parsing import check_problem_type, parse_label_strings

    with pytest.raises(ValueError, match=r"row 1: \"\['a', b\]\" looks like a list but does not parse"):
        parse_label_strings(_labels_dataset(["['a']", "['a', b]"]), "label")
    with pytest.raises(ValueError, match=r"ambiguous: split 'train', row 1 is 'drama'"):
        parse_label_strings(_labels_dataset(["['a', 'b']", "drama"]), "label")  # lists mixed with plain cells
    with pytest.raises(ValueError, match="contradicts --problem_type regression"):
        parse_label_strings(_labels_dataset(["1.0"]), "label", problem_type="regression", do_regression=False)
    with pytest.raises(ValueError, match="--problem_type 'multi' is unknown; valid: single_label_classification"):
        parse_label_strings(_labels_dataset(["a"]), "label", problem_type="multi")
    ints = _labels_dataset([0, 1])
    ints["train"] = ints["train"].cast_column("label", ClassLabel(names=["x", "y"]))
    with pytest.raises(ValueError, match="--label_delimiter applies to a column of strings"):
        parse_label_strings(ints, "label", label_delimiter=",")
    with pytest.raises(ValueError, match="--problem_type multi_label_classification but label column 'label' holds"):
        check_problem_type("multi_label_classification", "single_label_classification", "label")
    raw, _ = parse_label_strings(_labels_dataset(["a | b", "c"]), "label", label_delimiter="|")
    assert raw["train"]["label"] == [["a", "b"], ["c"]]
