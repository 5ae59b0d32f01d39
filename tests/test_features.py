"""Beyond plain fine-tuning, at recipe level: cached frozen-backbone features, layer decay, gradual unfreezing and
distillation through `recipes/finetune.py` (real Trainer runs on a small CIFAR-like task, tiny timm backbones)."""

import json
import logging
import math
import os
import subprocess
from pathlib import Path

import datasets
import fixtures
import numpy as np
import PIL.Image
import pytest
import torch
import torch.nn.functional as F
from datasets import ClassLabel, Dataset, DatasetDict, Features, Image
from modeling_utils import clone_state
from safetensors.torch import load_file
from transformers import AutoImageProcessor, AutoModelForImageClassification

from hf_transfer import TransferForImageClassification
from hf_transfer.features import _inference_backbones, cache_backbone_features

SCRIPT = fixtures.RECIPE_SCRIPT
COMMON = [*fixtures.RECIPE_COMMON_FLAGS, "--save_strategy", "no", "--disable_tqdm", "true"]
# One distinct colour per CIFAR-10 class: a task a random-init frozen backbone + linear head learns in a few epochs.
PALETTE = np.array(
    [[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48]]
    + [[145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [0, 0, 128]]
)
CACHED_ON = "Cached backbone features: on"
REUSED = "Reusing cached backbone features"


finetune = fixtures.load_recipe_script()


pytestmark = pytest.mark.usefixtures("one_thread")


def colour_cifar(n_train: int = 100, n_validation: int = 20, seed: int = 0, label_shift: int = 0) -> DatasetDict:
    """CIFAR-10's schema (`img` 32×32, `label` ClassLabel) with a validation split; the class is the image's colour
    (colour `c` is labelled `c + label_shift`, modulo 10)."""
    rng = np.random.default_rng(seed)
    features = Features({"img": Image(), "label": ClassLabel(names=fixtures.CIFAR10_LABELS)})
    splits = {}
    for split, n in (("train", n_train), ("validation", n_validation)):
        labels = rng.permutation(np.arange(n) % 10)
        pixels = PALETTE[labels][:, None, None, :] + rng.normal(0, 40, (n, 32, 32, 3))
        images = [PIL.Image.fromarray(p) for p in np.clip(pixels, 0, 255).astype(np.uint8)]
        labels = (labels + label_shift) % 10
        splits[split] = Dataset.from_dict({"img": images, "label": labels.tolist()}, features=features)
    return DatasetDict(splits)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    return fixtures.write_hub_layout(colour_cifar(), root / "colour_cifar10" / "plain_text").parent


@pytest.fixture(scope="module")
def shifted_data(tmp_path_factory) -> Path:
    """The same images as `data`, each labelled with the next class."""
    root = tmp_path_factory.mktemp("shifted")
    return fixtures.write_hub_layout(colour_cifar(label_shift=1), root / "colour_cifar10" / "plain_text").parent


@pytest.fixture
def recipe_trainers(monkeypatch) -> list:
    """The trainers the recipe builds, each with `initial_state`: its model's state before training."""
    trainers = []
    for name in ("TransferTrainer", "DistillationTrainer"):

        class Recording(getattr(finetune, name)):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                self.initial_state = clone_state(self.model)
                trainers.append(self)

        monkeypatch.setattr(finetune, name, Recording)
    return trainers


def run(argv: list) -> dict:
    """Runs the recipe at 32 px (unless `argv` gives another --image_size)."""
    return finetune.main(["--image_size", "32"] + [str(a) for a in argv] + COMMON)


def probe(data: Path, out: Path, *extra, backbones: tuple = ("timm:test_resnet",), seed: int = 1) -> list:
    """A linear probe on frozen random-init backbones with deterministic inputs (what caching needs)."""
    return (
        ["--backbone", *backbones, "--random_init", "--freeze", "backbone", "--no_augmentation", "--seed", seed]
        + ["--dataset_name", data, "--output_dir", out, "--do_train", "--do_eval", "--num_train_epochs", "5"]
        + ["--learning_rate", "0.05", *extra]
    )


def feature_cache() -> dict[Path, int]:
    """Every file of the feature cache and its modification time (ns)."""
    folder = Path(datasets.config.HF_DATASETS_CACHE) / "hf_transfer_features"
    return {path: path.stat().st_mtime_ns for path in folder.glob("*")} if folder.is_dir() else {}


def backbone_keys(state: dict) -> list[str]:
    return [key for key in state if key.startswith("transfer.backbones.")]


def validation_inputs(data: Path, model_dir: Path) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The validation images as the saved model's image processor prepares them (every input), and the labels."""
    validation = datasets.load_dataset("parquet", data_dir=str(data / "plain_text"), split="validation")
    images = [row["img"] for row in validation]
    inputs = dict(AutoImageProcessor.from_pretrained(model_dir)(images, return_tensors="pt"))
    names = [
        f"pixel_values{s['input_suffix']}" for s in json.loads((model_dir / "config.json").read_text())["backbones"]
    ]
    assert set(inputs) == set(names), (sorted(inputs), names)
    return inputs, torch.tensor(validation["label"])


@torch.no_grad()
def logits(model_dir: Path, inputs: dict[str, torch.Tensor], state: dict | None = None) -> torch.Tensor:
    model = AutoModelForImageClassification.from_pretrained(model_dir).eval()
    if state is not None:
        model.load_state_dict(state)
    return model(**inputs).logits


# ----------------------------------------------------------------------------------------------- cached features


def test_cached_features_train_the_same_model_as_recomputing_the_backbone(data, tmp_path, recipe_trainers, caplog):
    caplog.set_level(logging.INFO, logger="hf_transfer.features")
    before = feature_cache()
    cached = run(probe(data, tmp_path / "cached"))
    assert CACHED_ON in caplog.text
    created = {path: mtime for path, mtime in feature_cache().items() if path not in before}
    assert len([path for path in created if path.suffix == ".arrow"]) == 2  # train + validation

    caplog.clear()
    recomputed = run(probe(data, tmp_path / "recomputed", "--cache_features", "false"))
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
    inputs, labels = validation_inputs(data, tmp_path / "cached")
    predictions = logits(tmp_path / "cached", inputs).argmax(-1)
    assert (predictions == labels).float().mean().item() == pytest.approx(cached["eval_accuracy"])

    # The next run with the same backbone and data reads the cache instead of recomputing it.
    caplog.clear()
    again = run(probe(data, tmp_path / "again"))
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
def test_cache_features_true_is_refused_when_features_would_change(flags, message, data, tmp_path):
    out = tmp_path / "never"
    with pytest.raises(ValueError, match=message):
        run(
            ["--backbone", "timm:test_resnet", "--random_init", "--dataset_name", data, "--cache_features", "true"]
            + flags
            + ["--output_dir", out, "--do_train", "--max_steps", "2"]
        )
    assert not (out / "trainer_state.json").exists()


@pytest.mark.slow
def test_caching_under_accelerate_launch_two_processes(data, tmp_path):
    """One cache computed (rank 0 first, rank 1 reads it), both ranks train on their share, metrics written once."""
    out, cache = tmp_path / "ddp", tmp_path / "datasets_cache"
    launcher = fixtures.ACCELERATE_TWO_PROCESSES
    command = launcher + [str(SCRIPT), "--image_size", "32"] + [str(a) for a in probe(data, out)] + COMMON
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


# -------------------------------------------------------------------------------------- layer decay, unfreezing


def test_layer_decay_and_head_multiplier_set_each_param_groups_learning_rate(data, tmp_path, recipe_trainers):
    out = tmp_path / "decay"
    run(
        ["--backbone", "timm:test_resnet", "--random_init", "--freeze", "none", "--dataset_name", data]
        + ["--layer_decay", "0.5", "--head_lr_multiplier", "10", "--learning_rate", "0.01"]
        + ["--lr_scheduler_type", "constant", "--logging_steps", "1"]
        + ["--output_dir", out, "--do_train", "--max_steps", "2"]
    )
    trainer = recipe_trainers[0]
    backbone = trainer.model.transfer.backbones[0]
    groups = backbone.layer_groups()
    assert len(groups) == 5
    expected = {id(p): 0.01 * 10 for p in trainer.model.parameters()}  # head: lr × head_lr_multiplier
    parameters = dict(backbone.named_parameters())
    for k, names in enumerate(groups):  # backbone group k of K: lr × layer_decay ** (K - k)
        expected.update({id(parameters[name]): 0.01 * 0.5 ** (len(groups) - k) for name in names})
    optimizer_groups = trainer.optimizer.param_groups
    assert sorted(id(p) for g in optimizer_groups for p in g["params"]) == sorted(expected)
    for group in optimizer_groups:
        for parameter in group["params"]:
            assert group["lr"] == pytest.approx(expected[id(parameter)]), group["name"]
    lrs = {group["name"]: group["lr"] for group in optimizer_groups}  # weight decay 0: every group is "no_decay"
    assert lrs["head.no_decay"] == pytest.approx(0.1)
    assert lrs["backbone0.group4.no_decay"] == pytest.approx(0.01 * 0.5)
    assert lrs["backbone0.group0.no_decay"] == pytest.approx(0.01 * 0.5**5)
    # What the run logs (the first group's learning rate) is the head's.
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    logged = [entry["learning_rate"] for entry in history if "learning_rate" in entry]
    assert logged == pytest.approx([0.1, 0.1])


def test_gradual_unfreezing_trains_only_the_unfrozen_top_groups(data, tmp_path, recipe_trainers, caplog):
    out = tmp_path / "unfreeze"
    run(
        ["--backbone", "timm:test_resnet", "--random_init", "--freeze", "none", "--dataset_name", data]
        + ["--gradual_unfreezing", "--unfreeze_after", "1", "--unfreeze_every", "1", "--num_train_epochs", "3"]
        + ["--learning_rate", "0.01", "--output_dir", out, "--do_train", "--do_eval"]
    )
    assert "Cached backbone features: off" in caplog.text
    trainer = recipe_trainers[0]
    groups = trainer.model.transfer.backbones[0].layer_groups()
    saved = load_file(out / "model.safetensors")
    moved = [
        any(
            not torch.equal(saved[f"transfer.backbones.0.{n}"], trainer.initial_state[f"transfer.backbones.0.{n}"])
            for n in names
        )
        for names in groups
    ]
    # Epoch 1: head only; epoch 2: + the top group; epoch 3: + the one below it. The rest never trained.
    assert moved == [False] * (len(groups) - 2) + [True, True]
    assert "eval_accuracy" in json.loads((out / "all_results.json").read_text())


# ---------------------------------------------------------------------------------------------------- distillation


def test_distillation_alone_teaches_the_student_what_a_saved_fusion_teacher_predicts(
    data, shifted_data, tmp_path, recipe_trainers
):
    """The teacher learned to call each colour by the next class's name; with --distill_alpha 0 the student, trained
    on the true labels, learns the teacher's answers instead of the labels.

    As with a ResNet-18 + VGG16 teacher and a ResNet-18 student, the teacher's backbones preprocess images unlike the
    student (here: another size, and one of them another interpolation); the recipe derives their inputs from the
    student's pixels."""
    teacher = tmp_path / "teacher"
    fusion = ("timm:test_resnet", "timm:test_vit")
    run(
        probe(shifted_data, teacher, "--fusion", "weighted_sum", "--fusion_dim", "16", "--image_size", "48")
        + ["--backbone", *fusion]
    )
    backbones = json.loads((teacher / "config.json").read_text())["backbones"]
    assert [b["input_suffix"] for b in backbones] == ["", "_1"]  # bilinear test_resnet, bicubic test_vit

    student = tmp_path / "student"
    distill = ["--teacher", teacher, "--distill_alpha", "0", "--freeze", "none", "--learning_rate", "0.01"]
    results = run(probe(data, student, *distill, backbones=("timm:test_vit",), seed=3))  # fully fine-tuned
    assert isinstance(recipe_trainers[-1], finetune.DistillationTrainer)

    inputs, labels = validation_inputs(data, student)  # 32 px
    teacher_logits = logits(teacher, validation_inputs(data, teacher)[0])  # 48 px, the teacher's own preprocessing
    assert (teacher_logits.argmax(-1) == (labels + 1) % 10).float().mean() >= 0.8  # a teacher worth following

    def kl_to_teacher(state: dict | None) -> float:
        student_log_probs = logits(student, inputs, state).log_softmax(-1)
        return F.kl_div(
            student_log_probs, teacher_logits.log_softmax(-1), log_target=True, reduction="batchmean"
        ).item()

    before, after = kl_to_teacher(recipe_trainers[-1].initial_state), kl_to_teacher(None)
    assert after < 0.2 * before, (before, after)
    agreement = (logits(student, inputs).argmax(-1) == teacher_logits.argmax(-1)).float().mean()
    assert agreement >= 0.8 and results["eval_accuracy"] <= 0.2, (agreement, results["eval_accuracy"])
