"""Cached frozen-backbone features, at recipe level: `recipes/finetune.py --cache_features` (real Trainer runs on a
small CIFAR-like task, tiny timm backbones)."""

import json
import logging
import math
import os
import subprocess
from pathlib import Path

import datasets
import fixtures
import pytest
import torch
from datasets import Dataset
from recipe_runs import COMMON, SCRIPT, logits, probe, run, validation_inputs
from safetensors.torch import load_file
from transformers import AutoModelForImageClassification

from hf_transfer import TransferForImageClassification
from hf_transfer.features import _inference_backbones, cache_backbone_features

CACHED_ON = "Cached backbone features: on"
REUSED = "Reusing cached backbone features"

pytestmark = pytest.mark.usefixtures("one_thread")


def feature_cache() -> dict[Path, int]:
    """Every file of the feature cache and its modification time (ns)."""
    folder = Path(datasets.config.HF_DATASETS_CACHE) / "hf_transfer_features"
    return {path: path.stat().st_mtime_ns for path in folder.glob("*")} if folder.is_dir() else {}


def backbone_keys(state: dict) -> list[str]:
    return [key for key in state if key.startswith("transfer.backbones.")]


# ----------------------------------------------------------------------------------------------- cached features


def test_cached_features_train_the_same_model_as_recomputing_the_backbone(
    colour_data, tmp_path, recipe_trainers, caplog
):
    caplog.set_level(logging.INFO, logger="hf_transfer.features")
    before = feature_cache()
    cached = run(probe(colour_data, tmp_path / "cached"))
    assert CACHED_ON in caplog.text
    created = {path: mtime for path, mtime in feature_cache().items() if path not in before}
    assert len([path for path in created if path.suffix == ".arrow"]) == 2  # train + validation

    caplog.clear()
    recomputed = run(probe(colour_data, tmp_path / "recomputed", "--cache_features", "false"))
    assert "Cached backbone features: off (--cache_features false)" in caplog.text

    # Same features, same order, same head updates: the same model up to float rounding (the feature pass runs
    # channels-last with BatchNorm folded into the convolutions: features equal to ~1e-7, not bit for bit).
    assert cached["eval_accuracy"] >= 0.5  # far above chance (0.1), so the comparison means something
    assert cached["eval_accuracy"] == recomputed["eval_accuracy"]
    assert cached["eval_loss"] == pytest.approx(recomputed["eval_loss"], rel=1e-5)
    assert cached["train_loss"] == pytest.approx(recomputed["train_loss"], rel=1e-5)
    saved = {name: load_file(tmp_path / name / "model.safetensors") for name in ("cached", "recomputed")}
    head = [key for key in saved["cached"] if key not in backbone_keys(saved["cached"])]
    for key in head:
        torch.testing.assert_close(saved["cached"][key], saved["recomputed"][key], rtol=1e-4, atol=1e-5)

    # The saved model is the whole model: every backbone tensor (BatchNorm statistics included), as initialised.
    initial = recipe_trainers[0].initial_state
    keys = backbone_keys(initial)
    assert keys and sorted(backbone_keys(saved["cached"])) == sorted(keys)
    assert all(torch.equal(saved["cached"][key], initial[key]) for key in keys)
    assert any(not torch.equal(saved["cached"][key], initial[key]) for key in head)  # the head trained
    # ... and it reloads without the cache: raw images in, the reported accuracy out.
    inputs, labels = validation_inputs(colour_data, tmp_path / "cached")
    predictions = logits(tmp_path / "cached", inputs).argmax(-1)
    assert (predictions == labels).float().mean().item() == pytest.approx(cached["eval_accuracy"])

    # The next run with the same backbone and data reads the cache instead of recomputing it.
    caplog.clear()
    again = run(probe(colour_data, tmp_path / "again"))
    assert caplog.text.count(REUSED) == 2
    assert {path: mtime for path, mtime in feature_cache().items() if path in created} == created
    assert set(feature_cache()) == set(before) | set(created)
    assert again["eval_loss"] == cached["eval_loss"]


def test_the_feature_pass_computes_each_backbones_features_and_leaves_the_model_as_it_was(tmp_path, monkeypatch):
    """The pass runs a BatchNorm-folded, channels-last copy of a timm CNN (test_resnet) and a ViT (nothing to fold)
    channels-last in place; the features are the model's own and the model comes back unchanged."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "cache"))
    model = TransferForImageClassification.from_backbones(
        ["timm:test_resnet", "timm:test_vit"], pretrained=False, num_labels=3, freeze="backbone", fusion="concat"
    )
    model.train()
    before = {name: (p, p.detach().clone(), p.stride()) for name, p in model.named_parameters()}
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randn(10, 3, 160, 160, generator=generator)
    rows = Dataset.from_dict({"pixel_values": pixels.numpy(), "labels": list(range(10))}).with_format("torch")

    def collate(batch):  # labels are taken out of the rows before collating
        stacked = torch.stack([row["pixel_values"] for row in batch])
        return {"pixel_values": stacked, "pixel_values_1": stacked}

    cached = cache_backbone_features(model, rows, collate, batch_size=4)
    backbones = model.transfer.backbones
    runners, restore = _inference_backbones(backbones)  # what the pass ran: a folded copy, and the ViT in place
    assert runners[0] is not backbones[0] and runners[1] is backbones[1] and restore == [backbones[1]]
    backbones[1].to(memory_format=torch.contiguous_format)

    model.eval()
    with torch.no_grad():
        expected = model(pixel_values=pixels, pixel_values_1=pixels, output_hidden_states=True).hidden_states
    for index in range(2):
        torch.testing.assert_close(cached.columns[f"backbone_features_{index}"], expected[index], rtol=1e-4, atol=1e-5)
    assert cached.columns["labels"].tolist() == list(range(10))
    for name, param in model.named_parameters():  # same tensors, values and memory layout; still frozen
        same, value, stride = before[name]
        assert param is same and torch.equal(param, value) and param.stride() == stride, name
    assert not any(p.requires_grad for p in model.transfer.backbones.parameters())


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--freeze", "none", "--no_augmentation"],
            r"--cache_features true is unsafe here: .*test_resnet.*trainable.*--freeze backbone",
        ),
        (
            ["--freeze", "backbone"],
            r"--cache_features true is unsafe here: .*randomly augmented.*add --no_augmentation",
        ),
    ],
    ids=["trainable_backbone", "augmentation"],
)
def test_cache_features_true_is_refused_when_features_would_change(flags, message, colour_data, tmp_path):
    out = tmp_path / "never"
    with pytest.raises(ValueError, match=message):
        run(
            [
                "--backbone",
                "timm:test_resnet",
                "--random_init",
                "--dataset_name",
                colour_data,
                "--cache_features",
                "true",
            ]
            + flags
            + ["--output_dir", out, "--do_train", "--max_steps", "2"]
        )
    assert not (out / "trainer_state.json").exists()


@pytest.mark.slow
def test_caching_under_accelerate_launch_two_processes(colour_data, tmp_path):
    """One cache computed (rank 0 first, rank 1 reads it), both ranks train on their share, metrics written once."""
    out, cache = tmp_path / "ddp", tmp_path / "datasets_cache"
    launcher = fixtures.ACCELERATE_TWO_PROCESSES
    command = launcher + [str(SCRIPT), "--image_size", "32"] + [str(a) for a in probe(colour_data, out)] + COMMON
    command += ["--log_level", "info", "--log_level_replica", "info", "--per_device_train_batch_size", "8"]
    env = {**os.environ, "HF_DATASETS_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-6000:]
    assert "Process rank: 0, world size: 2" in log and "Process rank: 1, world size: 2" in log
    assert log.count(CACHED_ON) == 2  # both ranks train on cached features
    assert log.count(REUSED) == 2  # rank 1 reads rank 0's cache of each split: nothing computed twice
    assert sorted(p.suffix for p in (cache / "hf_transfer_features").glob("*.arrow")) == [".arrow", ".arrow"]
    state = json.loads((out / "trainer_state.json").read_text())
    train_samples = json.loads((out / "train_results.json").read_text())["train_samples"]
    # both ranks share the data: an epoch is ceil(samples / (8 per device × 2 processes)) optimizer steps
    assert state["global_step"] == 5 * math.ceil(train_samples / 16)
    assert log.count("***** train metrics *****") == 1 and log.count("***** eval metrics *****") == 1
    assert json.loads((out / "all_results.json").read_text())["eval_accuracy"] >= 0.5
    assert AutoModelForImageClassification.from_pretrained(out).config.num_labels == 10
