# Copyright 2026 The hf_transfer authors. Licensed under the Apache License, Version 2.0.
"""Does the Trainer path keep up with a hand-written PyTorch loop? (issue: Trainer ≥ 0.9× the loop)

Same model, same data, same steps, fp32 on the CPU, batch 64, AdamW:

* model: ``TransferForImageClassification.from_backbones("resnet18", pretrained=False, num_labels=10)`` (timm
  resnet18, random init) with its ``data_config`` set to 32 px, as ``recipes/finetune.py`` does; each variant of
  each repeat trains its own copy of the same initial weights;
* data: a CIFAR-like ``datasets.Dataset`` of N 32-px random PNGs (``Image()``, ``label`` ClassLabel of 10 names,
  from ``tests/fixtures.py``), prepared once with ``hf_transfer.data.prepare_split(..., is_training=True)`` (lazy
  ``with_transform``: decode + train augmentation per batch) and batched by ``build_data_collator``;
* (a) trainer: transformers ``Trainer`` (``use_cpu=True``, ``dataloader_num_workers=0``, AdamW, its defaults:
  linear LR schedule, gradient clipping at ``max_grad_norm`` 1.0) on that dataset and collator;
* (b) loop: ``DataLoader(prepared, batch_size=64, shuffle=True, collate_fn=collator)``; per step forward (the
  model computes the loss from ``labels``), backward, ``AdamW.step()``, ``zero_grad()``.

Each variant runs W warm-up steps then S timed steps; the timed window runs from the end of step W to the end of
step W+S (a ``TrainerCallback`` for the Trainer), so it covers the data fetch, collation and the optimizer of every
timed step but neither the Trainer's set-up nor the warm-up. The whole ``trainer.train()`` call (set-up, warm-up and
all) is timed too and compared with the loop's whole run (DataLoader and optimizer creation included). Per repeat
the two variants run back to back, the first alternating between repeats (a b, b a, ...); the ratio is taken per
repeat from the adjacent pair and summarised as median [min–max] over repeats.

Usage (from the repository root):

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_trainer_vs_loop.py [--repeats R] [--steps S] [--warmup W]
        [--samples N] [--threads T] [--max-grad-norm X] [--quick]

``--max-grad-norm 0`` turns off the Trainer's gradient clipping (the loop never clips) to see what it costs.
"""

from __future__ import annotations

import argparse
import os

# Before torch loads OpenMP (benchmarks/README.md, "Performance notes": spinning threads collapse 2-thread PyTorch under contention).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import contextlib
import copy
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import datasets
import torch
import transformers
from torch.utils.data import DataLoader
from transformers import Trainer, TrainerCallback, TrainingArguments

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from _common import machine_info, median_range, quiet_libraries  # noqa: E402
from fixtures import cifar10  # noqa: E402

import hf_transfer  # noqa: E402
from hf_transfer.data import TaskInfo, build_data_collator, prepare_split  # noqa: E402

GOAL = 0.9
BATCH = 64
LR = 5e-5  # the Trainer's default learning rate, used by both variants


class StepClock(TrainerCallback):
    """Records the wall clock at the end of the warm-up step and of the last step."""

    def __init__(self, warmup: int, total: int):
        self.warmup, self.total = warmup, total
        self.start = self.end = None

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.warmup:
            self.start = time.perf_counter()
        if state.global_step == self.total:
            self.end = time.perf_counter()


def run_trainer(model, dataset, collator, warmup: int, steps: int, max_grad_norm: float, out_dir: str):
    """(timed steps' seconds, whole train() seconds) for W + S Trainer steps."""
    clock = StepClock(warmup, warmup + steps)
    args = TrainingArguments(
        output_dir=out_dir,
        per_device_train_batch_size=BATCH,
        max_steps=warmup + steps,
        learning_rate=LR,
        optim="adamw_torch",
        max_grad_norm=max_grad_norm,
        use_cpu=True,
        report_to=[],
        remove_unused_columns=False,
        save_strategy="no",
        logging_strategy="no",
        eval_strategy="no",
        disable_tqdm=True,
        dataloader_num_workers=0,
        dataloader_pin_memory=False,
        seed=0,
    )
    trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=collator, callbacks=[clock])
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # its end-of-training metrics line
        trainer.train()
    whole = time.perf_counter() - t0
    assert clock.start is not None and clock.end is not None, "the Trainer ran fewer steps than asked"
    return clock.end - clock.start, whole


def run_loop(model, dataset, collator, warmup: int, steps: int):
    """(timed steps' seconds, whole run seconds) for W + S hand-written steps."""
    t0 = time.perf_counter()
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR)
    loader = DataLoader(dataset, batch_size=BATCH, shuffle=True, collate_fn=collator, num_workers=0)
    done, start = 0, None
    while done < warmup + steps:
        for batch in loader:
            loss = model(**batch).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            done += 1
            if done == warmup:
                start = time.perf_counter()
            if done == warmup + steps:
                break
    end = time.perf_counter()
    if start is None:  # warmup == 0
        start = t0
    return end - start, end - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--steps", type=int, default=24, help="timed steps per variant per repeat")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps before them")
    parser.add_argument("--samples", type=int, default=512, help="images in the dataset")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--max-grad-norm", type=float, default=1.0, help="Trainer's clipping (its default 1.0)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 repeats × 3 steps, 128 images")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.steps, args.warmup, args.samples = 2, 3, 1, 128

    quiet_libraries(args.threads)
    torch.manual_seed(0)
    print(machine_info({"transformers": transformers.__version__, "datasets": datasets.__version__}))

    raw = cifar10(n_train=args.samples, n_test=1)["train"]
    labels = raw.features["label"].names
    base = hf_transfer.TransferForImageClassification.from_backbones("resnet18", pretrained=False, num_labels=10)
    base.config.backbones[0]["data_config"]["input_size"] = [3, 32, 32]
    info = TaskInfo(
        modality="image",
        problem_type="single_label_classification",
        label_column="label",
        label_list=labels,
        image_column="img",
    )
    prepared = prepare_split(raw, info, base.config.backbones, is_training=True)
    collator = build_data_collator(base.config.backbones)
    check = collator([prepared[i] for i in range(2)])
    print(
        f"data: {len(prepared)} PNGs, batch {BATCH}, pixel_values {tuple(check['pixel_values'].shape[1:])}; "
        f"{args.repeats} repeats × ({args.warmup} warm-up + {args.steps} timed steps) per variant; "
        f"Trainer max_grad_norm {args.max_grad_norm}\n"
    )

    timed = {"trainer": [], "loop": []}
    whole = {"trainer": [], "loop": []}
    with tempfile.TemporaryDirectory() as out_dir:
        for r in range(args.repeats):
            order = ("trainer", "loop") if r % 2 == 0 else ("loop", "trainer")
            for name in order:
                model = copy.deepcopy(base)
                if name == "trainer":
                    t, w = run_trainer(model, prepared, collator, args.warmup, args.steps, args.max_grad_norm, out_dir)
                else:
                    t, w = run_loop(model, prepared, collator, args.warmup, args.steps)
                timed[name].append(args.steps * BATCH / t)
                whole[name].append((args.warmup + args.steps) * BATCH / w)
                del model
            print(
                f"repeat {r + 1}/{args.repeats} ({order[0]} first): trainer {timed['trainer'][-1]:.1f}, "
                f"loop {timed['loop'][-1]:.1f} samples/s, ratio {timed['trainer'][-1] / timed['loop'][-1]:.3f}",
                flush=True,
            )

    ratio = [a / b for a, b in zip(timed["trainer"], timed["loop"])]
    ratio_whole = [a / b for a, b in zip(whole["trainer"], whole["loop"])]
    print("\nsamples/s, median [min–max] over repeats (timed steps, after warm-up):")
    for name in ("trainer", "loop"):
        print(f"  {name:8s} {median_range(timed[name], '{:.1f}')}")
    print(f"ratio Trainer/loop (steady state): {median_range(ratio, '{:.3f}')}")
    print(f"ratio Trainer/loop (whole call, set-up + warm-up included): {median_range(ratio_whole, '{:.3f}')}")
    med = statistics.median(ratio)
    verdict = "meets" if med >= GOAL else "misses"
    print(f"goal: ratio ≥ {GOAL} → median {med:.3f} {verdict} it (min {min(ratio):.3f}, max {max(ratio):.3f})")


if __name__ == "__main__":
    main()
