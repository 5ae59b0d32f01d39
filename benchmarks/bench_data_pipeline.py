"""Is the image data pipeline fast enough to keep a ResNet-18 busy?

Measures, at each image size, medians of interleaved repeats of:

* pipeline: samples/s through hf_transfer's image path (CIFAR-like 32-px PNGs in a parquet file →
  ``load_raw_datasets`` → ``prepare_datasets`` transform → ``DataLoader`` + collator), with 0 and 2 workers;
* model: samples/s of a ResNet-18-sized training step (timm ``resnet18``, random init, SGD) on ready tensors,
  fp32 eager and bf16 autocast + channels_last (the fastest CPU setting in benchmarks/README.md, "Performance notes");
* end to end: each training step fed by the pipeline with 2 workers, against the same step on ready tensors.

and prints pipeline/model ratios: above 1 the data keeps up; the end-to-end ratio is the fraction of the model's
speed that survives feeding it real data (1.0 = data costs nothing). Figures move with machine load; the ratios are
what to trust. Runs in about a minute on 2 idle cores (longer when other processes compete for them):

    python benchmarks/bench_data_pipeline.py [--repeats 3] [--sizes 224 32] [--samples 128] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import os

# Before torch loads OpenMP: spinning threads collapse 2-thread PyTorch when another process holds a core
# (benchmarks/README.md, "Performance notes": ~650 → 20-105 img/s); passive waiting holds ~310. Export OMP_WAIT_POLICY=ACTIVE to measure the default instead.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import platform
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import PIL.Image
import timm
import torch
from datasets import ClassLabel, Dataset, Features, Image

import hf_transfer.data as data

CIFAR10_LABELS = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def machine_info() -> str:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import datasets
    import torchvision

    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",)
    return (
        f"{cpu}; {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}; load average {load[0]:.2f}\n"
        f"python {platform.python_version()}, torch {torch.__version__}, torchvision {torchvision.__version__}, "
        f"timm {timm.__version__}, datasets {datasets.__version__}"
    )


def write_cifar_like(folder: Path, n: int) -> Path:
    """CIFAR-10's schema (``img`` 32×32 PNG + ``label`` ClassLabel) as a Hub-layout parquet file."""
    rng = np.random.default_rng(0)
    # Smooth random images: PNG decode cost closer to real photos than white noise.
    images = [
        PIL.Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).resize((32, 32), PIL.Image.BICUBIC)
        for _ in range(n)
    ]
    features = Features({"img": Image(), "label": ClassLabel(names=CIFAR10_LABELS)})
    train = Dataset.from_dict({"img": images, "label": (np.arange(n) % 10).tolist()}, features=features)
    folder.mkdir(parents=True, exist_ok=True)
    train.to_parquet(str(folder / "train-00000-of-00001.parquet"))
    return folder


def image_backbone(size: int) -> dict:
    data_config = {
        "input_size": [3, size, size],
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "interpolation": "bicubic",
        "crop_pct": 0.875,
    }
    return {"modality": "image", "input_suffix": "", "data_config": data_config}


def make_loader(train, backbones, batch_size: int, workers: int) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(
        train,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        collate_fn=data.build_data_collator(backbones),
        drop_last=True,
        persistent_workers=False,
    )


def time_pipeline(train, backbones, batch_size: int, workers: int, samples: int) -> float:
    """Samples/s through the DataLoader, after its first batch (worker start-up excluded)."""
    loader = make_loader(train, backbones, batch_size, workers)
    iterator = iter(loader)
    next(iterator)
    count, start = 0, time.perf_counter()
    for batch in iterator:
        count += batch["pixel_values"].shape[0]
        if count >= samples:
            break
    elapsed = time.perf_counter() - start
    del iterator
    return count / elapsed


class Trainer:
    """A plain training step of timm's resnet18 (random init: no download)."""

    def __init__(self, bf16_channels_last: bool):
        self.fast = bf16_channels_last
        self.model = timm.create_model("resnet18", pretrained=False, num_classes=10).train()
        if self.fast:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9)

    def step(self, pixel_values: torch.Tensor, labels: torch.Tensor) -> None:
        if self.fast:
            pixel_values = pixel_values.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.fast):
            loss = torch.nn.functional.cross_entropy(self.model(pixel_values), labels)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


def time_model(trainer: Trainer, size: int, batch_size: int, steps: int) -> float:
    """Samples/s of training steps on ready tensors (the trainer was warmed up at setup)."""
    pixel_values = torch.randn(batch_size, 3, size, size)
    labels = torch.randint(0, 10, (batch_size,))
    start = time.perf_counter()
    for _ in range(steps):
        trainer.step(pixel_values, labels)
    return steps * batch_size / (time.perf_counter() - start)


def time_end_to_end(trainer: Trainer, train, backbones, batch_size: int, steps: int, workers: int) -> float:
    """Samples/s of the same training step fed by the pipeline (first batch excluded)."""
    iterator = iter(make_loader(train, backbones, batch_size, workers))
    next(iterator)  # worker start-up excluded, as in time_pipeline
    start = time.perf_counter()
    for _ in range(steps):
        batch = next(iterator)
        trainer.step(batch["pixel_values"], batch["labels"])
    elapsed = time.perf_counter() - start
    del iterator
    return steps * batch_size / elapsed


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):9.1f}  [{min(values):.1f}–{max(values):.1f}]"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats per measurement")
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 32], help="backbone input sizes")
    parser.add_argument("--samples", type=int, default=128, help="samples per pipeline measurement")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--model-steps", type=int, default=None, help="training steps per measurement")
    args = parser.parse_args(argv)

    print(machine_info())
    torch.manual_seed(0)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_cifar_like(Path(tmp) / "cifar_like", n=max(1024, 2 * args.samples))
        raw, info = data.load_raw_datasets(
            data.DataTrainingArguments(dataset_name=str(folder), train_val_split=None, cache_dir=tmp), seed=0
        )
        setups = {}
        for size in args.sizes:
            backbones = [image_backbone(size)]
            prepared = data.prepare_datasets(raw, info, backbones)
            steps = args.model_steps or (2 if size >= 160 else 8)
            trainers = Trainer(False), Trainer(True)
            for trainer in trainers:  # warm-up: first-step allocations and oneDNN kernel selection
                time_model(trainer, size, args.batch_size, 1)
            setups[size] = (backbones, prepared.train_dataset, steps, *trainers)

        results: dict[tuple[int, str], list[float]] = defaultdict(list)
        for _ in range(args.repeats):  # interleaved: load drifts hit every variant alike
            for size, (backbones, train, steps, fp32, bf16) in setups.items():
                batch = args.batch_size
                runs: dict[str, Callable[[], float]] = {
                    "pipeline, 0 workers": partial(time_pipeline, train, backbones, batch, 0, args.samples),
                    "pipeline, 2 workers": partial(time_pipeline, train, backbones, batch, 2, args.samples),
                    "model fp32": partial(time_model, fp32, size, batch, steps),
                    "model bf16+channels_last": partial(time_model, bf16, size, batch, steps),
                    "model fp32 fed by pipeline (2 workers)": partial(
                        time_end_to_end, fp32, train, backbones, batch, steps, 2
                    ),
                    "model bf16+channels_last fed by pipeline (2 workers)": partial(
                        time_end_to_end, bf16, train, backbones, batch, steps, 2
                    ),
                }
                for name, run in runs.items():
                    results[(size, name)].append(run())

    print(f"\nsamples/s, median [min–max] of {args.repeats} interleaved repeats, batch {args.batch_size}:")
    for size in args.sizes:
        print(f"\n  32-px PNG → {size}×{size}")
        for (s, name), values in results.items():
            if s == size:
                print(f"    {name:55s}{summary(values)}")
        median = {name: statistics.median(v) for (s, name), v in results.items() if s == size}
        fastest_model = max(median["model fp32"], median["model bf16+channels_last"])
        for workers in (0, 2):
            ratio = median[f"pipeline, {workers} workers"] / fastest_model
            print(f"    ratio pipeline ({workers} workers) / fastest model step: {ratio:6.2f}")
        for variant in ("fp32", "bf16+channels_last"):
            e2e = median[f"model {variant} fed by pipeline (2 workers)"] / median[f"model {variant}"]
            print(f"    end to end: the {variant} step fed by the pipeline runs at {e2e:.2f}× its ready-tensor speed")
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
