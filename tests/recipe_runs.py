"""Recipe runs on a small CIFAR-like task: the data, the recipe's trainers as it builds them, and the run helpers that
tests of what the recipe trains (tests/test_features.py, tests/test_training.py) share. The fixtures built on them
(`colour_data`, `shifted_colour_data`, `recipe_trainers`) are in tests/conftest.py."""

import json
from pathlib import Path

import datasets
import fixtures
import numpy as np
import PIL.Image
import torch
from datasets import ClassLabel, Dataset, DatasetDict, Features, Image
from transformers import AutoImageProcessor, AutoModelForImageClassification

SCRIPT = fixtures.RECIPE_SCRIPT
COMMON = [*fixtures.RECIPE_COMMON_FLAGS, "--save_strategy", "no", "--disable_tqdm", "true"]
# One distinct colour per CIFAR-10 class: a task a random-init frozen backbone + linear head learns in a few epochs.
PALETTE = np.array(
    [[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48]]
    + [[145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [0, 0, 128]]
)


finetune = fixtures.load_recipe_script()


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
