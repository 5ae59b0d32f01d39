# Copyright 2026 The hf_transfer authors. Licensed under the Apache License, Version 2.0.
"""Image training throughput: hf_transfer through the transformers Trainer vs timm's own training loop.

The GPU figure of issue 5: ResNet-50 at 224 px, bf16 autocast, channels-last, images/s of
(a) hf_transfer: ``TransferForImageClassification.from_backbones("resnet50", pretrained=False)`` trained by the
    transformers ``Trainer`` as ``recipes/finetune.py --bf16 --channels_last`` sets it up (``bf16=True``, the model
    and ``TransferDataCollator(channels_last=True)`` batches channels-last, the Trainer's defaults otherwise:
    ``adamw_torch_fused``, linear schedule, gradient clipping at 1.0);
(b) timm: ``timm.create_model("resnet50", num_classes=...)`` trained by the loop of timm's ``train.py``
    (``train_one_epoch``: input ``.contiguous(memory_format=torch.channels_last)``, forward and loss under
    ``torch.autocast(dtype=bfloat16)``, ``optimizer.zero_grad()``, ``loss.backward()``, ``optimizer.step()``;
    ``model.to(memory_format=torch.channels_last)`` as ``--channels-last`` does), with the optimizer the Trainer
    uses (fused AdamW) so that only the training loop differs.

Both read the same in-memory dataset (random normalized images, drawn from a bank so that a fetch costs a copy, not
a decode: the data pipeline is measured by ``bench_data_pipeline.py``) through a ``DataLoader`` with the same
workers and pinned memory, and both run with ``torch.backends.cudnn.benchmark = True`` (timm's ``train.py`` sets
it). Each variant runs W warm-up steps, then S timed steps (the device synchronized at both ends, from a
``TrainerCallback`` for the Trainer). Variants are interleaved, the first alternating between repeats; the headline
is the ratio hf_transfer / timm in images/s per repeat, as median [min–max]. ``--fp32`` adds the same pair in fp32
without channels-last, for the speed-up bf16 + channels-last buys.

Usage (a GPU if there is one, else the CPU):

    python benchmarks/bench_image_training.py [--model resnet50] [--image-size 224] [--batch-size 128]
        [--steps 30] [--warmup 10] [--repeats 3] [--workers 8] [--fp32] [--quick]

``--quick`` is a CPU smoke run (resnet18, 64 px, batch 16, 3 + 2 steps, 1 repeat).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os

# before torch loads OpenMP (benchmarks/README.md, "Performance notes")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import timm
import torch
import transformers
from torch import nn
from torch.utils.data import DataLoader, Dataset
from transformers import Trainer, TrainerCallback, TrainingArguments

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, median_range, quiet_libraries  # noqa: E402

from hf_transfer import TransferForImageClassification  # noqa: E402
from hf_transfer.data import TransferDataCollator  # noqa: E402

NUM_CLASSES = 100


class RandomImages(Dataset):
    """`length` rows of {"pixel_values": normalized (3, size, size) float32, "labels": int}, from a bank of 64."""

    def __init__(self, length: int, size: int, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        self.bank = torch.randn(64, 3, size, size, generator=generator)
        self.labels = torch.randint(0, NUM_CLASSES, (length,), generator=generator).tolist()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        return {"pixel_values": self.bank[index % len(self.bank)].clone(), "labels": self.labels[index]}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timm_loop(args, dataset: Dataset, device: torch.device, bf16: bool, channels_last: bool) -> float:
    """Images/s of timm's train.py loop (train_one_epoch) over the timed steps."""
    torch.manual_seed(0)
    model = timm.create_model(args.model, pretrained=False, num_classes=NUM_CLASSES).to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=0.0, fused=True)
    loss_fn = nn.CrossEntropyLoss().to(device)
    amp_autocast = (
        partial(torch.autocast, device_type=device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext
    )

    def collate(rows):  # timm's loader yields (input, target)
        return torch.stack([r["pixel_values"] for r in rows]), torch.tensor([r["labels"] for r in rows])

    loader = DataLoader(
        dataset,
        batch_size=args.batch_size,
        shuffle=True,
        num_workers=args.workers,
        pin_memory=device.type == "cuda",
        collate_fn=collate,
        drop_last=True,
    )
    model.train()
    start = None
    for step, (input, target) in enumerate(loader):
        input, target = input.to(device, non_blocking=True), target.to(device, non_blocking=True)
        if channels_last:
            input = input.contiguous(memory_format=torch.channels_last)
        with amp_autocast():
            output = model(input)
            loss = loss_fn(output, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step + 1 == args.warmup:
            synchronize(device)
            start = time.perf_counter()
        elif step + 1 == args.warmup + args.steps:
            synchronize(device)
            return args.steps * args.batch_size / (time.perf_counter() - start)
    raise RuntimeError("dataset too short for warm-up + timed steps")


class _StepTimer(TrainerCallback):
    def __init__(self, device: torch.device, warmup: int, steps: int):
        self.device, self.warmup, self.steps = device, warmup, steps
        self.start = self.seconds = None

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.warmup:
            synchronize(self.device)
            self.start = time.perf_counter()
        elif state.global_step == self.warmup + self.steps:
            synchronize(self.device)
            self.seconds = time.perf_counter() - self.start


def hf_transfer_trainer(args, dataset: Dataset, device: torch.device, bf16: bool, channels_last: bool) -> float:
    """Images/s of hf_transfer's model in the Trainer, set up as `recipes/finetune.py --bf16 --channels_last`."""
    torch.manual_seed(0)
    model = TransferForImageClassification.from_backbones(args.model, pretrained=False, num_labels=NUM_CLASSES)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    timer = _StepTimer(device, args.warmup, args.steps)
    with tempfile.TemporaryDirectory() as output_dir:
        training_args = TrainingArguments(
            output_dir=output_dir,
            max_steps=args.warmup + args.steps,
            per_device_train_batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            weight_decay=0.0,
            bf16=bf16,
            use_cpu=device.type == "cpu",
            dataloader_num_workers=args.workers,
            dataloader_drop_last=True,
            remove_unused_columns=False,
            report_to=[],
            save_strategy="no",
            logging_strategy="no",
            disable_tqdm=True,
            seed=0,
        )
        trainer = Trainer(
            model=model,
            args=training_args,
            train_dataset=dataset,
            data_collator=TransferDataCollator(channels_last=channels_last),
            callbacks=[timer],
        )
        with contextlib.redirect_stdout(io.StringIO()):  # the Trainer prints its final metrics
            trainer.train()
    return args.steps * args.batch_size / timer.seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet50", help="timm architecture")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per variant and repeat")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first (cudnn autotuning, allocator)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="DataLoader workers")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--fp32", action="store_true", help="also the fp32, contiguous-format pair")
    parser.add_argument("--quick", action="store_true", help="CPU smoke run: resnet18, 64 px, batch 16, 1 repeat")
    args = parser.parse_args(argv)
    if args.quick:
        args.model, args.image_size, args.batch_size, args.steps, args.warmup, args.repeats, args.workers = (
            "resnet18",
            64,
            16,
            2,
            3,
            1,
            0,
        )
    quiet_libraries()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cudnn.benchmark = True  # as timm's train.py
    print(machine_info({"transformers": transformers.__version__, "timm": timm.__version__}))
    if device.type == "cuda":
        print(f"GPU: {torch.cuda.get_device_name(device)}")
    print(
        f"\n{args.model} at {args.image_size} px, batch {args.batch_size}, {args.warmup} warm-up + {args.steps} "
        f"timed steps, {args.workers} loader workers, {args.repeats} interleaved repeats, on {device.type}\n"
    )
    dataset = RandomImages((args.warmup + args.steps + 1) * args.batch_size, args.image_size)
    settings = {"bf16 + channels_last": (True, True)}
    if args.fp32:
        settings["fp32"] = (False, False)
    runners = {"timm loop": timm_loop, "hf_transfer Trainer": hf_transfer_trainer}
    speed: dict[tuple[str, str], list[float]] = {}
    for repeat in range(args.repeats):
        for setting, (bf16, channels_last) in settings.items():
            order = list(runners) if repeat % 2 == 0 else list(reversed(runners))
            for name in order:
                value = runners[name](args, dataset, device, bf16, channels_last)
                speed.setdefault((setting, name), []).append(value)
                print(f"  repeat {repeat + 1}: {setting:20s} {name:20s} {value:8.1f} img/s", flush=True)

    print("\nimages/s, median [min–max]:")
    for (setting, name), values in speed.items():
        print(f"  {setting:20s} {name:20s} {median_range(values, '{:.1f}')}")
    for setting in settings:
        ratios = [h / t for h, t in zip(speed[(setting, "hf_transfer Trainer")], speed[(setting, "timm loop")])]
        print(f"{setting}: hf_transfer Trainer / timm loop = {median_range(ratios)}")
    if args.fp32:
        for name in runners:
            gains = [b / f for b, f in zip(speed[("bf16 + channels_last", name)], speed[("fp32", name)])]
            print(f"{name}: bf16 + channels_last / fp32 = {median_range(gains)}×")
    return 0


if __name__ == "__main__":
    sys.exit(main())
