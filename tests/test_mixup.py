"""Mixup / CutMix (hf_transfer.mixup): timm's `Mixup` + `SoftTargetCrossEntropy` in the Trainer, real tiny runs."""

import json
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import fixtures
import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from timm.data import Mixup
from timm.loss import SoftTargetCrossEntropy
from transformers import TrainingArguments

from hf_transfer import TransferForImageClassification
from hf_transfer.mixup import MixupArguments, MixupTrainer, build_mixup, mix_batch, seeded_numpy

pytestmark = pytest.mark.usefixtures("one_thread")

finetune = fixtures.load_recipe_script()
COMMON = fixtures.RECIPE_COMMON_FLAGS


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    fixtures.make_cifar10(root, n_train=24, n_test=8)
    return root


def image_config(**overrides) -> SimpleNamespace:
    """What `build_mixup` reads of an hf_transfer config: backbones (modality, source), problem type, labels."""
    config = dict(
        backbones=[{"modality": "image", "source": "timm:test_resnet"}],
        problem_type="single_label_classification",
        num_labels=4,
    )
    return SimpleNamespace(**{**config, **overrides})


# ------------------------------------------------------------------------------------------------------ the checks


@pytest.mark.parametrize(
    ("config", "kwargs", "match"),
    [
        (dict(backbones=[{"modality": "text", "source": "bert"}]), {}, "this model reads text \\(bert\\)"),
        (
            dict(backbones=[{"modality": "image", "source": "a"}, {"modality": "image", "source": "b"}]),
            {},
            "several image backbones",
        ),
        (dict(problem_type="regression"), {}, "this task is 'regression'"),
        (dict(problem_type="multi_label_classification"), {}, "multi_label_classification"),
        ({}, {"cache_features": True}, "cannot train on cached backbone features"),
        ({}, {"distillation": True}, "--teacher is not supported"),
    ],
)
def test_mixup_is_refused_where_it_cannot_apply(config, kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_mixup(MixupArguments(mixup=0.8), image_config(**config), **kwargs)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (dict(mixup=0.8, mixup_mode="pixel"), "--mixup_mode 'pixel' is not one of batch, pair, elem"),
        (dict(cutmix=1.0, mixup_prob=1.5), "--mixup_prob 1.5 must be in"),
        (dict(cutmix_minmax=[0.8, 0.2]), "--cutmix_minmax"),
        (dict(mixup=-1.0), "alphas must be >= 0"),
    ],
)
def test_bad_mixup_values_are_refused(args, match):
    with pytest.raises(ValueError, match=match):
        build_mixup(MixupArguments(**args), image_config())


def test_no_mixup_flag_builds_nothing_and_flags_map_to_timm():
    assert build_mixup(MixupArguments(), image_config(problem_type="regression")) is None
    mixup = build_mixup(
        MixupArguments(mixup=0.8, cutmix=1.0, mixup_prob=0.5, mixup_switch_prob=0.25, mixup_mode="elem"),
        image_config(),
        label_smoothing=0.1,
    )
    assert (mixup.mixup_alpha, mixup.cutmix_alpha, mixup.mix_prob, mixup.switch_prob) == (0.8, 1.0, 0.5, 0.25)
    assert (mixup.mode, mixup.label_smoothing, mixup.num_classes) == ("elem", 0.1, 4)


def test_mix_batch_mixes_pixels_and_targets_and_keeps_an_odd_last_image():
    mixup = Mixup(mixup_alpha=1.0, cutmix_alpha=0.0, label_smoothing=0.1, num_classes=3)
    pixels = torch.randn(5, 3, 8, 8)
    original = pixels.clone()
    labels = torch.tensor([0, 1, 2, 0, 1])
    with seeded_numpy(0):
        mixed, targets = mix_batch(mixup, pixels, labels)
    assert mixed.shape == original.shape and targets.shape == (5, 3)
    torch.testing.assert_close(targets.sum(1), torch.ones(5))
    # batch mode: every pair mixed with one lambda, read back from the first target (label 0 vs flipped label 0)
    lam = (targets[1, 1] - 0.1 / 3) / (1 - 0.1)
    torch.testing.assert_close(mixed[1], lam * original[1] + (1 - lam) * original[2])
    # the odd last image is kept as it is, with its smoothed one-hot target
    torch.testing.assert_close(mixed[4], original[4])
    torch.testing.assert_close(targets[4], torch.tensor([0.1 / 3, 1 - 0.2 / 3, 0.1 / 3]))


def test_seeded_numpy_restores_the_global_generator():
    np.random.seed(7)
    expected = np.random.rand()
    np.random.seed(7)
    with seeded_numpy(1, 2, 3):
        inside = np.random.rand()
    assert np.random.rand() == expected
    with seeded_numpy(1, 2, 3):
        assert np.random.rand() == inside


# ------------------------------------------------------------------------------------------------ the trainer


def tiny_trainer(tmp_path, regularizers=(), **mixup_flags) -> MixupTrainer:
    torch.manual_seed(0)
    model = TransferForImageClassification.from_backbones(["timm:test_resnet"], pretrained=False, num_labels=3)
    mixup = build_mixup(MixupArguments(**mixup_flags), model.config, label_smoothing=0.1)
    args = TrainingArguments(str(tmp_path), use_cpu=True, report_to="none", seed=5, label_smoothing_factor=0.1)
    return MixupTrainer(model=model, args=args, mixup=mixup, regularizers=regularizers)


def test_regularizers_add_their_terms_to_the_mixed_loss(tmp_path):
    # L2-SP / BSS (--l2sp_weight, --bss_weight) must not be dropped when mixup replaces the loss.
    pixels, labels = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1, 2, 1])
    losses = []
    for regularizers in ((), (lambda model: torch.tensor(5.0),)):
        trainer = tiny_trainer(tmp_path, regularizers=regularizers, mixup=1.0)
        trainer.model.train()
        losses.append(trainer.compute_loss(trainer.model, {"pixel_values": pixels.clone(), "labels": labels}))
    assert losses[1].item() == pytest.approx(losses[0].item() + 5.0, rel=1e-5)


def test_training_loss_is_soft_target_cross_entropy_on_the_mixed_batch_and_eval_is_unmixed(tmp_path):
    trainer = tiny_trainer(tmp_path, mixup=1.0, cutmix=1.0)
    model = trainer.model
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randn(4, 3, 32, 32, generator=generator)
    labels = torch.tensor([0, 1, 2, 1])

    model.eval()
    eval_loss = trainer.compute_loss(model, {"pixel_values": pixels.clone(), "labels": labels})
    with torch.no_grad():
        logits = model(pixel_values=pixels).logits
    # unmixed, with the Trainer's label smoother (the eval loss of --label_smoothing_factor runs)
    expected_eval = trainer.label_smoother({"logits": logits}, labels)
    assert eval_loss.item() == pytest.approx(expected_eval.item(), rel=1e-5)

    model.train()
    trainer.state.global_step = 3
    np.random.seed(1)  # the global generator's state must not matter: each step mixes from its own seed
    loss = trainer.compute_loss(model, {"pixel_values": pixels.clone(), "labels": labels})
    reference = Mixup(mixup_alpha=1.0, cutmix_alpha=1.0, label_smoothing=0.1, num_classes=3)
    with seeded_numpy(5, 0, 3, 0):  # seed, rank, step, micro-batch
        mixed, targets = mix_batch(reference, pixels.clone(), labels)
    assert not torch.equal(mixed, pixels)
    expected = SoftTargetCrossEntropy()(model(pixel_values=mixed).logits, targets)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)

    trainer._mix_position = (-1, 0)
    np.random.seed(2)
    again = trainer.compute_loss(model, {"pixel_values": pixels.clone(), "labels": labels})
    assert again.item() == pytest.approx(loss.item(), rel=1e-6)
    # a second micro-batch of the same optimizer step (gradient accumulation) draws differently
    second = trainer.compute_loss(model, {"pixel_values": pixels.clone(), "labels": labels})
    assert trainer._mix_position == (3, 1) and second.item() != pytest.approx(loss.item(), rel=1e-6)


# ------------------------------------------------------------------------------------------------ the recipe


def run(argv) -> dict:
    return finetune.main([str(a) for a in argv] + COMMON)


def test_recipe_refuses_mixup_for_a_text_model_before_training(tmp_path):
    root = tmp_path / "data"
    fixtures.make_glue(root, tasks=("mrpc",), n=8)
    bert = fixtures.save_word_level_bert(tmp_path / "bert", num_hidden_layers=1, hidden_size=16, intermediate_size=8)
    with pytest.raises(ValueError, match="--mixup / --cutmix mix images; this model reads text"):
        run(
            ["--backbone", bert, "--dataset_name", root / "glue", "--task_name", "mrpc", "--mixup", "0.8"]
            + ["--output_dir", tmp_path / "out", "--do_train"]
        )
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_recipe_refuses_mixup_with_cached_features(data, tmp_path):
    with pytest.raises(ValueError, match="cannot train on cached backbone features"):
        run(
            ["--backbone", "timm:test_resnet", "--random_init", "--freeze", "backbone", "--no_augmentation"]
            + ["--cache_features", "true", "--cutmix", "1.0", "--dataset_name", data / "cifar10"]
            + ["--output_dir", tmp_path / "out", "--do_train"]
        )


MIXUP_RUN = ["--backbone", "timm:test_resnet", "--random_init", "--mixup", "0.8", "--cutmix", "1.0"]
MIXUP_RUN += ["--label_smoothing_factor", "0.1", "--mixup_mode", "elem", "--learning_rate", "0.01", "--seed", "3"]
MIXUP_RUN += ["--do_train", "--do_eval", "--max_steps", "4", "--save_strategy", "steps", "--save_steps", "2"]
MIXUP_RUN += ["--dataloader_num_workers", "0"]


def test_recipe_with_mixup_trains_evaluates_unmixed_and_resumes_exactly(data, tmp_path):
    """A frozen backbone with mixup runs every step (no cached features); resuming at step 2 gives the same model."""
    reference = tmp_path / "reference"
    results = run(MIXUP_RUN + ["--freeze", "backbone", "--dataset_name", data / "cifar10", "--output_dir", reference])
    assert "eval_accuracy" in results and np.isfinite(results["train_loss"])
    plain = run(
        [a for a in MIXUP_RUN if a not in ("--mixup", "0.8", "--cutmix", "1.0", "--mixup_mode", "elem")]
        + ["--freeze", "backbone", "--dataset_name", data / "cifar10", "--output_dir", tmp_path / "plain"]
    )
    assert plain["train_loss"] != pytest.approx(results["train_loss"], rel=1e-4)  # the batches were mixed

    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(reference / "checkpoint-2", resumed / "checkpoint-2")
    again = run(
        MIXUP_RUN
        + ["--freeze", "backbone", "--dataset_name", data / "cifar10", "--output_dir", resumed]
        + ["--resume_from_checkpoint", resumed / "checkpoint-2"]
    )
    for key in ("eval_loss", "eval_accuracy"):
        assert again[key] == pytest.approx(results[key], rel=1e-5, abs=1e-6), key
    expected, got = (load_file(out / "model.safetensors") for out in (reference, resumed))
    for name, tensor in expected.items():
        torch.testing.assert_close(got[name], tensor, rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.slow
def test_mixup_under_two_process_cpu_ddp(data, tmp_path):
    out = tmp_path / "ddp"
    command = fixtures.ACCELERATE_TWO_PROCESSES + [str(fixtures.RECIPE_SCRIPT)]
    command += [str(a) for a in MIXUP_RUN + ["--dataset_name", data / "cifar10", "--output_dir", out]] + COMMON
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "world size: 2" in result.stdout + result.stderr
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 4 and "eval_accuracy" in json.loads((out / "all_results.json").read_text())
