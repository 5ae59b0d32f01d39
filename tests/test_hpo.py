"""Hyperparameter search (hf_transfer.hpo): optuna through `Trainer.hyperparameter_search`, real tiny recipe runs."""

import json
from pathlib import Path

import fixtures
import optuna
import pytest
import torch
from transformers import AutoModelForImageClassification, TrainingArguments

from hf_transfer import TransferForImageClassification
from hf_transfer.hpo import Objective, Param, parse_space, searchable
from hf_transfer.training import TransferTrainer

pytestmark = pytest.mark.usefixtures("one_thread")

finetune = fixtures.load_recipe_script()
COMMON = fixtures.RECIPE_COMMON_FLAGS


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    fixtures.make_cifar10(root, n_train=40, n_test=8)
    return root


def args(tmp_path, **kwargs) -> TrainingArguments:
    return TrainingArguments(str(tmp_path), use_cpu=True, report_to="none", **kwargs)


# ------------------------------------------------------------------------------------------------ the space


def test_space_from_yaml_ranges_choices_and_fixed_values(tmp_path):
    space = parse_space(
        "learning_rate: {low: 1e-5, high: 1.0e-3, log: true}\nnum_train_epochs: {low: 1, high: 4}\n"
        "per_device_train_batch_size: {choices: [8, 16]}\nwarmup_steps: {low: 0, high: 0.2}\nweight_decay: 0.0\n"
        "layer_decay: {low: 0.5, high: 1.0}",
        args(tmp_path),
        backbone_trainable=True,
    )
    by_name = {p.name: p for p in space.params}
    assert by_name["learning_rate"] == Param("learning_rate", 1e-5, 1e-3, log=True)  # "1e-5": YAML's string
    assert by_name["num_train_epochs"].integer and not by_name["warmup_steps"].integer
    assert by_name["per_device_train_batch_size"].choices == [8, 16]
    assert space.fixed == {"weight_decay": 0.0}
    trial = optuna.trial.FixedTrial(
        {"learning_rate": 1e-4, "num_train_epochs": 2, "per_device_train_batch_size": 8, "warmup_steps": 0.1}
        | {"layer_decay": 0.7}
    )
    assert space.trainer_values(trial) == {"layer_decay": 0.7}
    assert space.training_args_space(trial)["weight_decay"] == 0.0 and "layer_decay" not in space.training_args_space(
        trial
    )


@pytest.mark.parametrize(
    ("space", "match"),
    [
        ({"learning_rat": {"low": 0.1, "high": 1}}, r"Unknown hyperparameters in hp_space: \['learning_rat'\]"),
        ({"learning_rate": {"low": 0.1}}, "give {low: L, high: H}"),
        ({"learning_rate": {"low": 0.1, "high": 0.01}}, "low 0.1 must be below high 0.01"),
        ({"learning_rate": {"low": "fast", "high": 0.01}}, "hp_space.learning_rate.low = 'fast' is not a number"),
        ({"seed": {"choices": []}}, "non-empty list"),
        ("[1, 2]", "non-empty mapping"),
    ],
)
def test_bad_space_is_refused_naming_the_key(space, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        parse_space(space, args(tmp_path), backbone_trainable=False)


def test_default_space_follows_the_run(tmp_path):
    frozen = parse_space(None, args(tmp_path, num_train_epochs=3), backbone_trainable=False)
    names = {p.name: p for p in frozen.params}
    assert set(names) == {"learning_rate", "weight_decay", "num_train_epochs"}
    assert (names["num_train_epochs"].low, names["num_train_epochs"].high) == (1, 6)
    trainable = parse_space(None, args(tmp_path, max_steps=10), backbone_trainable=True)
    assert {p.name for p in trainable.params} == {"learning_rate", "weight_decay", "layer_decay", "head_lr_multiplier"}


def test_objective_is_the_best_model_metric_and_its_direction(tmp_path):
    assert Objective.from_args(args(tmp_path)) == Objective("eval_loss", "minimize")
    assert Objective.from_args(args(tmp_path, metric_for_best_model="accuracy")) == Objective(
        "eval_accuracy", "maximize"
    )
    assert Objective.from_args(args(tmp_path, metric_for_best_model="eval_f1", greater_is_better=False)).direction == (
        "minimize"
    )
    with pytest.raises(ValueError, match=r"'eval_f1' .* not among the eval metrics: \['eval_accuracy'\]"):
        Objective("eval_f1", "maximize")({"eval_accuracy": 1.0})


def test_trial_sets_layer_decay_and_head_lr_on_the_trainer(tmp_path):
    """`Trainer._hp_search_setup` sets TrainingArguments fields only (and warns about the rest)."""
    model = TransferForImageClassification.from_backbones(["timm:test_resnet"], pretrained=False, num_labels=3)
    trainer = searchable(TransferTrainer)(model=model, args=args(tmp_path))
    trainer.search_space = parse_space(
        {"learning_rate": {"low": 1e-4, "high": 1e-2}, "layer_decay": {"low": 0.5, "high": 1.0}}
        | {"head_lr_multiplier": {"choices": [1, 10]}},
        trainer.args,
        backbone_trainable=True,
    )
    trainer.hp_search_backend = "optuna"
    trainer.hp_space = trainer.search_space.training_args_space
    trainer._hp_search_setup(
        optuna.trial.FixedTrial({"learning_rate": 1e-3, "layer_decay": 0.6, "head_lr_multiplier": 10})
    )
    assert (trainer.args.learning_rate, trainer.layer_decay, trainer.head_lr_multiplier) == (1e-3, 0.6, 10.0)
    groups = trainer.create_optimizer().param_groups
    assert max(g["lr"] for g in groups) == pytest.approx(1e-2)  # the head: lr x 10
    assert min(g["lr"] for g in groups) < 1e-3  # the lowest backbone group: decayed


# ------------------------------------------------------------------------------------------------ the recipe


def search_run(data, out, trials=4, extra=()):
    recipe = out.parent / f"{out.name}.yaml"
    recipe.write_text(
        "hp_space:\n  learning_rate: {low: 1.0e-3, high: 1.0, log: true}\n  num_train_epochs: {low: 1, high: 3}\n"
        "  weight_decay: 0.0\n"
    )
    argv = [recipe, "--backbone", "timm:test_resnet", "--random_init", "--freeze", "backbone", "--no_augmentation"]
    argv += ["--dataset_name", data / "cifar10", "--output_dir", out, "--do_train", "--do_eval", "--seed", "2"]
    argv += ["--hp_search", "optuna", "--hp_trials", str(trials), "--metric_for_best_model", "accuracy"]
    argv += ["--eval_strategy", "no", "--save_strategy", "no", *extra]
    return finetune.main([str(a) for a in argv] + COMMON)


def test_search_on_cached_features_retrains_the_best_trial_as_the_run_model(data, tmp_path, caplog):
    out = tmp_path / "search"
    results = search_run(data, out)
    assert "Cached backbone features: on" in caplog.text
    best = json.loads((out / "best_hyperparameters.json").read_text())
    assert best["objective"] == "eval_accuracy" and best["direction"] == "maximize" and best["seed"] == 2
    assert set(best["best_hyperparameters"]) == {"learning_rate", "num_train_epochs", "weight_decay"}
    trials = json.loads((out / "hp_search_trials.json").read_text())
    assert [t["trial"] for t in trials] == [0, 1, 2, 3]
    assert best["best_objective"] == max(t["eval_accuracy"] for t in trials)
    # the run's model is the best trial trained again, from the same initial model and seed: the same figure
    assert results["eval_accuracy"] == pytest.approx(best["best_objective"])
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["num_train_epochs"] == best["best_hyperparameters"]["num_train_epochs"]
    model = AutoModelForImageClassification.from_pretrained(out)
    assert model.config.num_labels == 10

    # seeded: the same search again proposes the same trials
    again = search_run(data, tmp_path / "again")
    assert json.loads((tmp_path / "again" / "hp_search_trials.json").read_text()) == trials
    assert again["eval_accuracy"] == results["eval_accuracy"]


@pytest.mark.parametrize(
    ("flags", "match"),
    [
        (["--do_train"], "--hp_search needs --do_train and --do_eval"),
        (["--do_train", "--do_eval", "--hp_trials", "0"], "--hp_trials 0 must be at least 1"),
        (["--do_train", "--do_eval", "--hp_space", "{lr: {low: 1, high: 2}}"], r"Unknown hyperparameters .*\['lr'\]"),
    ],
)
def test_bad_search_flags_stop_the_run_before_any_data_work(flags, match, tmp_path):
    out = tmp_path / "bad"
    argv = ["--backbone", "timm:test_resnet", "--random_init", "--freeze", "backbone", "--no_augmentation"]
    argv += ["--dataset_name", tmp_path / "does_not_exist", "--output_dir", out, "--hp_search", "optuna", *flags]
    with pytest.raises(ValueError, match=match):  # the dataset does not exist: the check came first
        finetune.main([str(a) for a in argv] + COMMON)


def test_search_of_a_trainable_backbone_searches_layer_decay(data, tmp_path):
    out = tmp_path / "full"
    recipe = tmp_path / "full.yaml"
    recipe.write_text("hp_space:\n  layer_decay: {low: 0.5, high: 0.9}\n  head_lr_multiplier: {choices: [1, 10]}\n")
    argv = [recipe, "--backbone", "timm:test_resnet", "--random_init", "--dataset_name", data / "cifar10"]
    argv += ["--output_dir", out, "--do_train", "--do_eval", "--max_steps", "2", "--hp_search", "optuna"]
    argv += ["--hp_trials", "2", "--save_strategy", "no"]
    results = finetune.main([str(a) for a in argv] + COMMON)
    best = json.loads((out / "best_hyperparameters.json").read_text())
    assert best["objective"] == "eval_loss" and best["direction"] == "minimize"
    assert 0.5 <= best["best_hyperparameters"]["layer_decay"] <= 0.9
    assert results["eval_loss"] == pytest.approx(best["best_objective"], rel=1e-5)
    assert torch.isfinite(torch.tensor(results["eval_loss"]))
