# Copyright 2026 The hf_transfer authors. Licensed under the Apache License, Version 2.0.
"""What caching a frozen backbone's features saves on a linear probe.

A frozen ResNet-18 (timm `resnet18`, random init: the speed is the same as with ImageNet weights) with a linear head,
trained with the transformers `Trainer` for E epochs (default 10) on N CIFAR-like images (default 1,280, 64-px PNGs
in the Hub's parquet layout, the eval transform at 64 px on both sides: deterministic inputs), batch 64, AdamW:

* recompute: the Trainer on the prepared image dataset; the frozen backbone runs (without gradients) on every batch
  of every epoch;
* cached: the hf_transfer path (what `recipes/finetune.py` does by default for a frozen backbone):
  `cache_backbone_features` runs the backbone once over the data into a `datasets` cache file (batch 64, as the
  recipe's `--per_device_eval_batch_size`; channels-last, BatchNorm folded into the convolutions), then the Trainer
  trains the head on the cached `backbone_features_0` column with `collate_cached`. The time includes computing the
  features and writing the cache (the cache is deleted after each repeat, so every repeat computes it);
* cached, reused: the same, when the cache already exists (the next run with the same backbone and data).

The variants run interleaved in one process, their order alternating between repeats; the headline is the ratio
recompute / cached per repeat, reported as the median with its min–max over repeats. Figures move with the load on
the machine; the ratios are what to compare. About 2 minutes on 2 idle cores with the defaults; `--quick` is a smoke
run (2 epochs, 256 images, 1 repeat).

Usage:
    python benchmarks/bench_cached_features.py [--repeats 3] [--epochs 10] [--images 1280] [--threads N] [--quick]
"""

import argparse
import contextlib
import io
import os

# Before torch loads OpenMP: spinning threads collapse 2-thread PyTorch when another process holds a core (benchmarks/README.md, "Performance notes").
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import datasets
import numpy as np
import PIL.Image
import timm
import torch
import transformers
from _common import machine_info, median_range, quiet_libraries
from datasets import ClassLabel, Dataset, Features, Image
from transformers import Trainer, TrainingArguments

from hf_transfer import TransferForImageClassification
from hf_transfer.data import DataTrainingArguments, load_raw_datasets, prepare_datasets
from hf_transfer.features import cache_backbone_features, collate_cached

IMAGE_SIZE = 64
BATCH = 64
LABELS = [f"class_{i}" for i in range(10)]


def write_images(folder: Path, n: int) -> Path:
    """CIFAR-10's schema (`img` PNG + `label` ClassLabel) at 64 px, as a Hub-layout parquet file."""
    rng = np.random.default_rng(0)
    # Smooth random images: PNG decode cost closer to real photos than white noise.
    images = [
        PIL.Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).resize(
            (IMAGE_SIZE, IMAGE_SIZE), PIL.Image.BICUBIC
        )
        for _ in range(n)
    ]
    features = Features({"img": Image(), "label": ClassLabel(names=LABELS)})
    train = Dataset.from_dict({"img": images, "label": (np.arange(n) % 10).tolist()}, features=features)
    folder.mkdir(parents=True, exist_ok=True)
    train.to_parquet(str(folder / "train-00000-of-00001.parquet"))
    return folder


def frozen_resnet18() -> TransferForImageClassification:
    """ResNet-18, frozen (BatchNorm statistics kept), + a linear head; 64-px inputs. The same weights every call."""
    torch.manual_seed(0)
    model = TransferForImageClassification.from_backbones(
        "resnet18", pretrained=False, num_labels=len(LABELS), freeze="backbone"
    )
    model.config.backbones[0]["data_config"]["input_size"] = [3, IMAGE_SIZE, IMAGE_SIZE]
    return model


def training_args(output_dir: str, epochs: float) -> TrainingArguments:
    return TrainingArguments(
        output_dir=output_dir,
        num_train_epochs=epochs,
        per_device_train_batch_size=BATCH,
        learning_rate=1e-3,
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        dataloader_num_workers=0,
        remove_unused_columns=False,  # the image transform reads the raw image column
        seed=0,
    )


def train_recomputing(train: Dataset, collator, output_dir: str, epochs: float) -> float:
    """Seconds to train the head for `epochs` with the frozen backbone run on every batch."""
    model = frozen_resnet18()
    start = time.perf_counter()
    trainer = Trainer(model=model, args=training_args(output_dir, epochs), train_dataset=train, data_collator=collator)
    with contextlib.redirect_stdout(io.StringIO()):  # the Trainer prints its final metrics
        trainer.train()
    return time.perf_counter() - start


def train_cached(train: Dataset, collator, output_dir: str, epochs: float) -> float:
    """Seconds to cache the backbone's features (or read them back) and train the head on them for `epochs`."""
    model = frozen_resnet18()
    start = time.perf_counter()
    features = cache_backbone_features(model, train, collator, batch_size=BATCH, preprocessing=[IMAGE_SIZE])
    trainer = Trainer(
        model=model, args=training_args(output_dir, epochs), train_dataset=features, data_collator=collate_cached
    )
    with contextlib.redirect_stdout(io.StringIO()):
        trainer.train()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats of every variant")
    parser.add_argument("--epochs", type=float, default=10, help="training epochs of the linear probe")
    parser.add_argument("--images", type=int, default=1280, help="training images")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, one per core)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 epochs, 256 images, 1 repeat")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.epochs, args.images = 1, 2, 256
    quiet_libraries(args.threads)
    versions = {"transformers": transformers.__version__, "datasets": datasets.__version__, "timm": timm.__version__}
    print(machine_info(versions))
    print(
        f"\nfrozen resnet18 + linear head, {args.images} images at {IMAGE_SIZE} px, {args.epochs:g} epochs, "
        f"batch {BATCH}, {args.repeats} interleaved repeats\n"
    )

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        # Every cache (the datasets' and hf_transfer's features) lives in `tmp`, nothing in the user's cache.
        datasets.config.HF_DATASETS_CACHE = str(Path(tmp) / "datasets")
        folder = write_images(Path(tmp) / "images", args.images)
        data_args = DataTrainingArguments(
            dataset_name=str(folder), train_val_split=None, no_augmentation=True, cache_dir=tmp
        )
        raw, info = load_raw_datasets(data_args, seed=0)
        train, _, collator = prepare_datasets(raw, info, frozen_resnet18().config.backbones, data_args=data_args)
        feature_cache = Path(datasets.config.HF_DATASETS_CACHE) / "hf_transfer_features"
        output_dir = str(Path(tmp) / "out")

        # Warm-up (oneDNN kernel selection, first allocations), untimed.
        train_recomputing(train, collator, output_dir, epochs=min(args.epochs, 1) * 64 / args.images)

        times: dict[str, list[float]] = {"recompute": [], "cached": [], "cached, reused": []}
        for repeat in range(args.repeats):
            order = ["recompute", "cached"] if repeat % 2 == 0 else ["cached", "recompute"]
            for variant in order:
                if variant == "recompute":
                    times[variant].append(train_recomputing(train, collator, output_dir, args.epochs))
                else:
                    shutil.rmtree(feature_cache, ignore_errors=True)
                    times["cached"].append(train_cached(train, collator, output_dir, args.epochs))
                    times["cached, reused"].append(train_cached(train, collator, output_dir, args.epochs))
                print(f"  repeat {repeat + 1}: {variant:9s} {times[variant][-1]:6.1f} s", flush=True)

    print("\nseconds, median [min–max]:")
    for variant, values in times.items():
        print(f"  {variant:15s} {median_range(values, '{:.1f}')}")
    for variant in ("cached", "cached, reused"):
        ratios = [r / c for r, c in zip(times["recompute"], times[variant])]
        print(
            f"speed-up recompute / {variant}: {median_range(ratios)}×  (per repeat: {', '.join(f'{r:.2f}' for r in ratios)})"
        )
    recompute = statistics.median(times["recompute"]) / args.epochs
    print(f"\none recomputing epoch: {recompute:.1f} s; total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
