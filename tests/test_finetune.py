"""`recipes/finetune.py` end to end: local datasets with the Hub schemas, tiny backbones, real Trainer runs."""

import json
import os
import subprocess
import sys
from pathlib import Path

import fixtures
import pytest
import timm
import torch
from transformers import AutoModelForImageClassification, AutoModelForSequenceClassification

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = fixtures.RECIPE_SCRIPT
COMMON = fixtures.RECIPE_COMMON_FLAGS
finetune = fixtures.load_recipe_script()


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    fixtures.make_cifar10(root, n_train=48, n_test=16)
    fixtures.make_cifar100(root, n_train=60, n_test=20)
    fixtures.make_glue(root, tasks=("mrpc", "stsb", "mnli", "cola"), n=24)
    fixtures.write_hub_layout(fixtures.image_text_dataset(n=16), root / "image_text")
    return root


@pytest.fixture(scope="module")
def bert(tmp_path_factory) -> str:
    """A 2-layer BERT with the fixtures' word-level tokenizer, saved like a Hub checkpoint."""
    return fixtures.save_word_level_bert(tmp_path_factory.mktemp("bert"))


def run(argv: list[str]) -> dict:
    return finetune.main([str(a) for a in argv] + COMMON)


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def test_cifar10_linear_probe_writes_what_the_example_scripts_write(data, tmp_path):
    out = tmp_path / "out"
    results = run(
        ["--backbone", "timm:test_resnet", "--random_init", "--freeze", "backbone", "--dataset_name", data / "cifar10"]
        + ["--output_dir", out, "--do_train", "--do_eval", "--max_steps", "3", "--seed", "1"]
    )
    for name in ("config.json", "model.safetensors", "preprocessor_config.json", "train_results.json"):
        assert (out / name).is_file(), name
    all_results = read_json(out / "all_results.json")
    for key in ("eval_accuracy", "eval_f1", "eval_precision", "eval_recall", "eval_loss", "train_loss"):
        assert key in all_results, key
    assert read_json(out / "eval_results.json")["eval_accuracy"] == results["eval_accuracy"]
    assert read_json(out / "trainer_state.json")["global_step"] == 3
    config = read_json(out / "config.json")
    assert config["id2label"]["0"] == "airplane" and config["freeze"] == "backbone"
    model = AutoModelForImageClassification.from_pretrained(out)
    assert model.config.num_labels == 10

    from PIL import Image
    from transformers import pipeline

    predictions = pipeline("image-classification", model=str(out))(Image.new("RGB", (32, 32), "red"))
    assert predictions[0]["label"] in fixtures.CIFAR10_LABELS


def test_yaml_recipe_gives_defaults_and_flags_override_it(data, tmp_path):
    recipe = tmp_path / "probe.yaml"
    recipe.write_text(
        "backbone: [timm:test_resnet]\nrandom_init: true\nfreeze: backbone\nhead: mlp\nhead_hidden_sizes: [16]\n"
        f"dataset_name: {data / 'cifar10'}\noutput_dir: {tmp_path / 'from_yaml'}\ndo_train: true\nmax_steps: 5\n"
        "learning_rate: 0.5\nexpected_results:\n  eval_accuracy: 0.1\n"
    )
    model_args, data_args, training_args = finetune.parse_args(
        [str(recipe), "--max_steps", "2", "--output_dir", str(tmp_path / "flag")]
    )
    assert model_args.backbone == ["timm:test_resnet"] and model_args.head_hidden_sizes == [16]
    assert training_args.max_steps == 2 and training_args.output_dir == str(tmp_path / "flag")  # flags win
    assert training_args.learning_rate == 0.5  # from the recipe
    assert data_args.dataset_name == str(data / "cifar10")


def test_unknown_recipe_key_is_an_error(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("backbone: [timm:test_resnet]\nlearning_rat: 0.1\n")
    with pytest.raises(ValueError, match=r"Unknown keys in the recipe: \['learning_rat'\]"):
        finetune.parse_args([str(recipe)])


def test_shipped_recipes_parse(tmp_path):
    for recipe in sorted((ROOT / "recipes").glob("*.yaml")):
        if "\ntasks:" in recipe.read_text():  # multi-task recipes: tests/test_multitask.py parses them
            continue
        model_args, _, training_args = finetune.parse_args([str(recipe), "--output_dir", str(tmp_path)])
        assert model_args.backbone, recipe.name
        assert "expected_results" in recipe.read_text(), f"{recipe.name} must state its expected result"


@pytest.mark.parametrize(
    ("task", "keys"),
    [
        ("mrpc", ["eval_accuracy", "eval_f1"]),
        ("stsb", ["eval_pearson", "eval_spearmanr"]),
        ("cola", ["eval_matthews_correlation"]),
        ("mnli", ["eval_accuracy", "eval_mismatched_accuracy"]),
    ],
)
def test_glue_tasks(task, keys, data, bert, tmp_path):
    out = tmp_path / task
    results = run(
        ["--backbone", bert, "--dataset_name", data / "glue", "--dataset_config_name", task, "--max_seq_length", "16"]
        + ["--output_dir", out, "--do_train", "--do_eval", "--max_steps", "2"]
    )
    for key in keys:
        assert key in results, (key, sorted(results))
    config = read_json(out / "config.json")
    if task == "stsb":
        assert config["problem_type"] == "regression" and len(config["id2label"]) == 1
    assert (out / "tokenizer.json").is_file()
    assert AutoModelForSequenceClassification.from_pretrained(out).config.problem_type == config["problem_type"]


def test_cifar100_coarse_labels_and_head_replacement_from_a_cifar10_model(data, tmp_path):
    c10 = tmp_path / "c10"
    run(
        ["--backbone", "timm:test_resnet", "--random_init", "--dataset_name", data / "cifar10", "--output_dir", c10]
        + ["--do_train", "--max_steps", "2"]
    )
    c100 = tmp_path / "c100"
    run(
        ["--backbone", c10, "--dataset_name", data / "cifar100", "--label_column_name", "coarse_label"]
        + ["--output_dir", c100, "--do_train", "--do_eval", "--max_steps", "2", "--learning_rate", "0"]
    )
    model = AutoModelForImageClassification.from_pretrained(c100)
    assert model.config.num_labels == 20 and model.config.id2label[0] == "aquatic_mammals"
    before = AutoModelForImageClassification.from_pretrained(c10).state_dict()
    after = model.state_dict()
    backbone_keys = [k for k in before if k.startswith("transfer.") and "num_batches" not in k and "running" not in k]
    assert backbone_keys and all(torch.equal(before[k], after[k]) for k in backbone_keys)  # lr 0: backbone kept


def test_fusion_of_two_backbones_from_the_command_line(data, tmp_path):
    out = tmp_path / "fused"
    results = run(
        ["--backbone", "timm:test_resnet", "timm:test_vit", "--random_init", "--fusion", "weighted_sum"]
        + ["--fusion_dim", "16", "--dataset_name", data / "cifar10", "--output_dir", out]
        + ["--do_train", "--do_eval", "--max_steps", "2"]
    )
    assert "eval_accuracy" in results
    model = AutoModelForImageClassification.from_pretrained(out)
    assert len(model.config.backbones) == 2 and model.fusion_weights() is not None


def test_image_text_fusion(data, bert, tmp_path):
    out = tmp_path / "multimodal"
    results = run(
        ["--backbone", "timm:test_resnet", bert, "--random_init", "--fusion", "gated", "--fusion_dim", "16"]
        + ["--dataset_name", data / "image_text", "--text_column_names", "caption", "--output_dir", out]
        + ["--do_train", "--do_eval", "--max_steps", "2"]
    )
    assert "eval_accuracy" in results
    assert [b["modality"] for b in read_json(out / "config.json")["backbones"]] == ["image", "text"]


def test_channels_last_trains_with_channels_last_weights_and_batches_and_saves_a_normal_model(
    data, tmp_path, monkeypatch
):
    seen = []

    class Recording(finetune.TransferTrainer):
        def compute_loss(self, model, inputs, *args, **kwargs):
            conv = next(p for p in model.transfer.backbones[0].parameters() if p.dim() == 4)
            seen.append((inputs["pixel_values"], conv))
            return super().compute_loss(model, inputs, *args, **kwargs)

    monkeypatch.setattr(finetune, "TransferTrainer", Recording)
    out = tmp_path / "channels_last"
    run(
        ["--backbone", "timm:test_resnet", "--random_init", "--channels_last", "--dataset_name", data / "cifar10"]
        + ["--output_dir", out, "--do_train", "--max_steps", "2", "--seed", "1"]
    )
    assert len(seen) == 2
    for pixels, conv in seen:
        assert pixels.dim() == 4 and pixels.is_contiguous(memory_format=torch.channels_last)
        assert not pixels.is_contiguous()  # really channels-last, not a layout that is both
        assert conv.is_contiguous(memory_format=torch.channels_last) and conv.requires_grad
    # The saved weights are the trained ones and load into an ordinary (contiguous) model.
    model = AutoModelForImageClassification.from_pretrained(out)
    trained = next(p for p in model.transfer.backbones[0].parameters() if p.dim() == 4)
    assert trained.is_contiguous() and torch.equal(trained, seen[-1][1].detach().contiguous())


def test_channels_last_on_a_text_model_is_refused(data, bert, tmp_path):
    _fails_before_training(
        ["--backbone", bert, "--channels_last", "--dataset_name", data / "glue", "--dataset_config_name", "mrpc"],
        "--channels_last applies to image backbones",
        tmp_path,
    )


def test_freeze_bn_stats_saves_the_source_batch_norm_statistics_with_the_trained_weights(data, tmp_path):
    out = tmp_path / "frozen_statistics"
    run(
        ["--backbone", "timm:test_resnet", "--random_init", "--freeze_bn_stats", "--dataset_name", data / "cifar10"]
        + ["--output_dir", out, "--do_train", "--max_steps", "2", "--seed", "1"]
    )
    saved = AutoModelForImageClassification.from_pretrained(out).transfer.backbones[0].state_dict()
    # Random init: every BatchNorm starts at mean 0, variance 1, and kept them; its scale and shift trained.
    means = [v for k, v in saved.items() if k.endswith("running_mean")]
    variances = [v for k, v in saved.items() if k.endswith("running_var")]
    assert means and all(torch.equal(m, torch.zeros_like(m)) for m in means)
    assert all(torch.equal(v, torch.ones_like(v)) for v in variances)
    assert not torch.equal(saved["model.bn1.weight"], torch.ones_like(saved["model.bn1.weight"]))


def test_freeze_bn_stats_on_a_model_without_batch_norm_is_refused(data, bert, tmp_path):
    _fails_before_training(
        ["--backbone", bert, "--freeze_bn_stats", "--dataset_name", data / "glue", "--dataset_config_name", "mrpc"],
        r"freeze_bn_stats: the backbones \(TransformersBackbone\) have no BatchNorm layer",
        tmp_path,
    )


def _resnet_with_source_head(tmp_path) -> str:
    """A test_resnet checkpoint whose state dict includes its 7-class source classifier."""
    torch.manual_seed(0)
    path = tmp_path / "source_resnet.pth"
    torch.save(timm.create_model("test_resnet", pretrained=False, num_classes=7).state_dict(), path)
    return str(path)


def test_co_tuning_adds_its_loss_and_saves_a_plain_classifier(data, tmp_path):
    weights = _resnet_with_source_head(tmp_path)
    argv = ["--backbone", "timm:test_resnet", "--backbone_weights", weights, "--dataset_name", data / "cifar10"]
    argv += ["--do_train", "--max_steps", "1", "--learning_rate", "0", "--seed", "3", "--no_augmentation"]
    losses = {}
    for weight in ("0", "2.3"):
        out = tmp_path / f"co_tuning_{weight}"
        run(argv + ["--co_tuning_weight", weight, "--output_dir", out])
        losses[weight] = json.loads((out / "train_results.json").read_text())["train_loss"]
    assert losses["2.3"] > losses["0"] + 0.1  # the same batch and weights, plus 2.3 × the Co-Tuning loss
    saved = AutoModelForImageClassification.from_pretrained(tmp_path / "co_tuning_2.3")
    assert saved.head.layers[-1].out_features == 10  # CIFAR-10's head; the source head is not part of the model
    assert not any(".fc." in k for k in saved.state_dict())


def test_co_tuning_without_a_source_classifier_is_refused(data, tmp_path):
    argv = ["--backbone", "timm:test_resnet", "--dataset_name", data / "cifar10", "--co_tuning_weight", "1"]
    _fails_before_training(argv + ["--random_init"], "random_init gives it none", tmp_path)
    weights = _resnet_with_source_head(tmp_path)
    _fails_before_training(
        argv + ["--backbone_weights", weights, "--mixup", "0.8"],
        "--co_tuning_weight reads each training row",
        tmp_path,
    )


# ----------------------------------------------------------------------------------------------------- bad input


def _fails_before_training(argv, match, tmp_path):
    out = tmp_path / "never"
    with pytest.raises((ValueError, SystemExit), match=match):
        run(argv + ["--output_dir", out, "--do_train", "--max_steps", "2"])
    assert not (out / "trainer_state.json").exists() and not list(out.glob("checkpoint-*"))


def test_unknown_column_lists_the_columns(data, tmp_path):
    _fails_before_training(
        ["--backbone", "timm:test_resnet", "--random_init", "--dataset_name", data / "cifar10"]
        + ["--label_column_name", "labelz"],
        r"labelz.*(img|label)",
        tmp_path,
    )


def test_unknown_glue_task_lists_the_tasks(data, bert, tmp_path):
    _fails_before_training(
        ["--backbone", bert, "--dataset_name", data / "glue", "--dataset_config_name", "sst3"],
        r"sst3.*(cola|mrpc)",
        tmp_path,
    )


def test_conflicting_data_flags(data, tmp_path):
    _fails_before_training(
        ["--backbone", "timm:test_resnet", "--random_init", "--dataset_name", data / "cifar10"]
        + ["--train_file", data / "x.csv"],
        r"dataset_name|train_file",
        tmp_path,
    )


def test_unknown_backbone_fails_before_training(data, tmp_path):
    _fails_before_training(
        ["--backbone", "resnet_18", "--dataset_name", data / "cifar10"], r"resnet_18.*resnet18", tmp_path
    )


def test_backbone_weights_count_must_match(data, tmp_path):
    _fails_before_training(
        ["--backbone", "timm:test_resnet", "timm:test_vit", "--backbone_weights", "a.pth"]
        + ["--dataset_name", data / "cifar10"],
        "--backbone_weights has 1 entries for 2 backbones",
        tmp_path,
    )


# -------------------------------------------------------------------------------------------- processes, resume


def _script(args, env=None, launcher=None, **kwargs):
    command = (launcher or [sys.executable]) + [str(SCRIPT)] + [str(a) for a in args] + COMMON
    return subprocess.run(command, capture_output=True, text=True, env={**os.environ, **(env or {})}, **kwargs)


@pytest.mark.slow
def test_accelerate_launch_two_processes_trains_as_one_cpu_ddp_job(data, tmp_path):
    out = tmp_path / "ddp"
    launcher = fixtures.ACCELERATE_TWO_PROCESSES
    result = _script(
        ["--backbone", "timm:test_resnet", "timm:test_vit", "--random_init", "--freeze", "none", "--fusion_dim", "16"]
        + ["--dataset_name", data / "cifar10", "--output_dir", out, "--do_train", "--do_eval"]
        + ["--num_train_epochs", "1", "--per_device_train_batch_size", "8"],
        launcher=launcher,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    log = result.stdout + result.stderr
    assert "world size: 2" in log and "world size: 1" not in log
    state = read_json(out / "trainer_state.json")
    train_samples = read_json(out / "train_results.json")["train_samples"]
    # both ranks share the data: one epoch = ceil(samples / (8 per device × 2 processes)) optimizer steps
    assert state["global_step"] == -(-train_samples // 16)
    assert "eval_accuracy" in read_json(out / "all_results.json")
    assert AutoModelForImageClassification.from_pretrained(out).config.num_labels == 10


def test_several_processes_without_use_cpu_or_gpu_is_refused(monkeypatch):
    """What `accelerate launch --multi_gpu` without GPUs would do: every rank alone on all the data."""
    from types import SimpleNamespace

    monkeypatch.setenv("WORLD_SIZE", "2")
    args = SimpleNamespace(world_size=1, fsdp=[], use_cpu=True)  # what TrainingArguments reports: each rank alone
    with pytest.raises(RuntimeError, match="Launched with 2 processes but the Trainer sees world size 1"):
        finetune.check_distributed(args)


@pytest.mark.parametrize("how", ["accelerate config", "--fsdp flag"])
def test_fsdp_without_gpus_is_refused_instead_of_running_as_ddp(monkeypatch, tmp_path, how):
    argv = ["--backbone", "timm:test_resnet", "--task_name", "sst2", "--output_dir", str(tmp_path)]
    if how == "accelerate config":
        monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")  # what `accelerate launch --use_fsdp` exports
    else:
        argv += ["--fsdp", "full_shard"]
    _, _, training_args = finetune.parse_args(argv)
    with pytest.raises(RuntimeError, match="cannot shard on CPU, so it would quietly run as plain DDP"):
        finetune.check_distributed(training_args)


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_metrics(data, tmp_path):
    common = ["--backbone", "timm:test_resnet", "--random_init", "--dataset_name", data / "cifar10"]
    common += ["--do_train", "--do_eval", "--max_steps", "12", "--save_strategy", "steps", "--save_steps", "2"]
    common += ["--seed", "3", "--learning_rate", "0.01", "--dataloader_num_workers", "0"]
    reference = _script(common + ["--output_dir", tmp_path / "reference"], timeout=600)
    assert reference.returncode == 0, reference.stderr[-3000:]

    out = tmp_path / "killed"
    fixtures.kill_after([sys.executable, SCRIPT, *common, "--output_dir", out, *COMMON], out / "checkpoint-4")
    assert (out / "checkpoint-4").exists() and not (out / "checkpoint-12").exists(), "killed too late"
    # the kill may land while a checkpoint is being written: resume from the newest complete one
    checkpoint = finetune.last_complete_checkpoint(str(out))
    assert checkpoint is not None and (Path(checkpoint) / "trainer_state.json").is_file()
    resumed = _script(common + ["--output_dir", out, "--resume_from_checkpoint", checkpoint], timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected = read_json(tmp_path / "reference" / "eval_results.json")
    got = read_json(out / "eval_results.json")
    for key in ("eval_loss", "eval_accuracy"):
        assert got[key] == pytest.approx(expected[key], rel=1e-5, abs=1e-6), key


def test_random_init_ignores_backbone_weights(tmp_path):
    model_args, _, _ = finetune.parse_args(
        ["--backbone", "tf_efficientnet_lite0", "--backbone_weights", "lite0.pth", "--random_init"]
        + ["--dataset_name", "x", "--output_dir", str(tmp_path)]
    )
    (spec,) = finetune.backbone_specs(model_args)
    assert spec.weights is None and spec.pretrained is False  # the file would load the pretrained weights back in


def test_auto_resume_skips_a_checkpoint_that_was_being_written(tmp_path):
    for step, complete in ((2, True), (4, True), (6, False)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        if complete:
            (folder / "trainer_state.json").write_text("{}")
    assert finetune.last_complete_checkpoint(str(tmp_path)) == str(tmp_path / "checkpoint-4")
    assert finetune.last_complete_checkpoint(str(tmp_path / "empty")) is None
