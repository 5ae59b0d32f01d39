# Copyright 2026 The hf_transfer authors. Licensed under the Apache License, Version 2.0.
"""Ranks candidate backbones for a target dataset before any training: transferability scores from one feature
pass per candidate, with a negative-transfer guard (each candidate against its random-init self and the raw inputs).

    python recipes/rank_backbones.py --dataset_name data/fashion_mnist --max_train_samples 2000 \\
        --backbone tf_efficientnet_lite0 tf_efficientnet_lite1 \\
        --backbone_weights <lite0.pth> <lite1.pth> --image_size 112 \\
        --output_dir ranking/ --validate linear_probe

Features go through the cached-features path (`hf_transfer.features.cache_backbone_features`, fingerprinted by data,
preprocessing and weights), so `recipes/finetune.py` with the same data flags, `--freeze backbone` and
`--no_augmentation` reuses the winner's features. Prints a table best first and writes `ranking.json` and
`ranking.png` to `--output_dir`. Runs with plain `python` or `accelerate launch` (the main process computes the
features first, the others reuse its cache; only the main process writes).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shlex
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from accelerate import PartialState
from transformers import HfArgumentParser, set_seed

from hf_transfer import BackboneSpec, TransferForImageClassification, TransferForSequenceClassification
from hf_transfer.data import DataTrainingArguments, TaskInfo, load_raw_datasets, prepare_datasets
from hf_transfer.features import cache_backbone_features, preprocessing_key
from hf_transfer.modeling_transfer import source_classifier
from hf_transfer.processing import load_processors
from hf_transfer.transferability import FEATURE_SCORES, SOURCE_SCORES, score_features

logger = logging.getLogger("rank_backbones")

ALL_SCORES = FEATURE_SCORES + SOURCE_SCORES
PRETRAINED, RANDOM_INIT, RAW = "pretrained", "random init", "raw inputs"


@dataclass
class RankingArguments:
    """The candidates and how to rank them."""

    backbone: list[str] = field(
        default=None,
        metadata={
            "help": "Candidate backbones (each ranked alone): Hub ids or local directories of transformers / timm "
            "checkpoints or of saved hf_transfer models (your own fine-tuned sources), or timm architecture names "
            "(with --backbone_weights).",
            "nargs": "+",
        },
    )
    output_dir: str = field(default=None, metadata={"help": "Where ranking.json and ranking.png are written."})
    backbone_weights: list[str] | None = field(
        default=None,
        metadata={
            "help": "Local weights files for timm architectures, one per candidate (`none` to skip one).",
            "nargs": "+",
        },
    )
    pooling: str = field(default="auto", metadata={"help": "Pooling: auto, cls, pooler, mean, max, or a timm pool."})
    image_size: int | None = field(default=None, metadata={"help": "Input size for every image candidate."})
    scores: list[str] = field(
        default_factory=lambda: list(ALL_SCORES),
        metadata={"help": f"Scores to compute: {', '.join(ALL_SCORES)}.", "nargs": "+"},
    )
    rank_by: str = field(default="logme", metadata={"help": "The score that orders the table and drives the guard."})
    validate: str = field(
        default="none",
        metadata={"help": "none, or linear_probe: train each candidate's linear probe and report Kendall's tau."},
    )
    probe_c: list[float] = field(
        default_factory=lambda: [0.01, 0.1, 1.0],
        metadata={
            "help": "Inverse L2 strengths tried for the linear probe (picked on a held-out fifth of train).",
            "nargs": "+",
        },
    )
    random_init_reference: bool = field(
        default=True, metadata={"help": "Also score each candidate's architecture from random init (the guard)."}
    )
    raw_reference: bool = field(
        default=True, metadata={"help": "Also score the raw inputs (pixels at --raw_image_size px, or TF-IDF)."}
    )
    raw_image_size: int = field(default=28, metadata={"help": "Side of the raw-pixel reference images."})
    max_score_samples: int | None = field(
        default=None, metadata={"help": "Score on at most this many training rows (all by default)."}
    )
    per_device_eval_batch_size: int = field(default=64, metadata={"help": "Rows per forward pass."})
    seed: int = field(
        default=42, metadata={"help": "Seed (data subsample, split, random init): the Trainer's default."}
    )
    bf16: bool = field(default=False, metadata={"help": "Run the backbones under bf16 autocast."})


@dataclass
class CandidateResult:
    """One row of the ranking."""

    name: str
    kind: str
    """`pretrained`, `random init` or `raw inputs`."""
    weights: str | None
    feature_dim: int
    scores: dict[str, float]
    probe_accuracy: float | None = None
    probe_c: float | None = None
    flagged: bool = False
    """A pretrained candidate that scores no better than its random-init self."""
    below_raw: bool = False
    """A candidate that scores no better than the raw inputs."""
    seconds_features: float = 0.0
    seconds_scores: float = 0.0
    seconds_probe: float = 0.0
    seconds_per_score: dict[str, float] = field(default_factory=dict)

    @property
    def label(self) -> str:
        name = self.name
        if "/" in name and Path(name).exists():  # a local directory: its last two parts are what a person reads
            name = "/".join(Path(name).parts[-2:])
        return name if self.kind == PRETRAINED else f"{name} ({self.kind})"


@dataclass
class RankingReport:
    """What ranking.json holds."""

    dataset: str | None
    num_train_samples: int
    num_eval_samples: int
    rank_by: str
    results: list[CandidateResult]
    kendall_tau: dict[str, float] = field(default_factory=dict)
    weighted_tau: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        data = dataclasses.asdict(self)
        for row, result in zip(data["results"], self.results):
            row["label"] = result.label
        return data


# --------------------------------------------------------------------------------------------------------------------
# Checks before any feature pass
# --------------------------------------------------------------------------------------------------------------------


def check_arguments(args: RankingArguments) -> None:
    if not args.backbone:
        raise ValueError("--backbone is required: one or more candidate backbones.")
    if not args.output_dir:
        raise ValueError("--output_dir is required (ranking.json and ranking.png go there).")
    unknown = sorted(set(args.scores) - set(ALL_SCORES))
    if unknown:
        raise ValueError(f"Unknown --scores {unknown}; valid: {', '.join(ALL_SCORES)}.")
    if args.rank_by not in args.scores:
        raise ValueError(f"--rank_by {args.rank_by!r} is not among --scores ({', '.join(args.scores)}).")
    if args.rank_by in SOURCE_SCORES:
        raise ValueError(
            f"--rank_by {args.rank_by} needs a source classifier, which not every candidate has; use one of {', '.join(FEATURE_SCORES)}."
        )
    if args.validate not in ("none", "linear_probe"):
        raise ValueError(f"Unknown --validate {args.validate!r}; valid: none, linear_probe.")
    if args.backbone_weights and len(args.backbone_weights) != len(args.backbone):
        raise ValueError(
            f"--backbone_weights has {len(args.backbone_weights)} entries for {len(args.backbone)} candidates; give "
            "one per candidate (`none` for a candidate without a weights file)."
        )


def check_task(raw, task: TaskInfo) -> np.ndarray:
    """Fails on data a ranking cannot use; returns the training labels."""
    if "train" not in raw or len(raw["train"]) == 0:
        raise ValueError(
            f"No labelled training rows in {task.dataset_name!r} (splits: {', '.join(raw)}): the scores are computed "
            "on the train split's labels."
        )
    if task.problem_type == "multi_label_classification":
        raise ValueError(
            "Multi-label data is not supported by the ranking; single-label classification or regression."
        )
    labels = np.asarray(raw["train"][task.label_column])
    if task.problem_type == "single_label_classification":
        present = np.unique(labels[labels >= 0])
        if len(present) < 2:
            names = [task.label_list[i] for i in present] if task.label_list else present.tolist()
            raise ValueError(
                f"The train split holds a single class ({names}) in column {task.label_column!r}: transferability "
                "needs at least two classes to separate."
            )
    return labels


def candidate_specs(args: RankingArguments) -> list[BackboneSpec]:
    weights = args.backbone_weights or [None] * len(args.backbone)
    return [
        BackboneSpec(name, weights=None if w is None or w.lower() == "none" else w, pooling=args.pooling)
        for name, w in zip(args.backbone, weights)
    ]


def build_model(spec: BackboneSpec, task: TaskInfo, args: RankingArguments, seed: int):
    model_class = TransferForImageClassification if task.modality == "image" else TransferForSequenceClassification
    torch.manual_seed(seed)  # the random-init references are reproducible (and so is their feature cache)
    model = model_class.from_backbones(
        [spec],
        num_labels=task.num_labels,
        id2label=task.id2label,
        label2id=task.label2id,
        problem_type=task.problem_type,
        freeze="backbone",
    )
    if args.image_size:
        for backbone in model.config.backbones:
            if backbone["modality"] == "image":
                backbone["data_config"]["input_size"] = [3, args.image_size, args.image_size]
    return model


def check_modality(model, spec: BackboneSpec, task: TaskInfo) -> None:
    modality = model.config.backbones[0]["modality"]
    if modality != task.modality:
        raise ValueError(
            f"Candidate {spec.name!r} reads {modality} but the data ({task.dataset_name}) is {task.modality}"
            f" (columns: image={task.image_column}, text={task.text_columns}): give {task.modality} backbones only."
        )


# --------------------------------------------------------------------------------------------------------------------
# Features
# --------------------------------------------------------------------------------------------------------------------


def backbone_features(model, raw, task, data_args, args, state) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Features and labels of the train (and main eval) split through the cached-features path."""
    processors = load_processors(model.config)
    training_args = SimpleNamespace(seed=args.seed, bf16=args.bf16, fp16=False, remove_unused_columns=False)
    train, evals, collator = prepare_datasets(raw, task, model.config.backbones, processors, data_args, training_args)
    splits = {"train": train}
    if args.validate == "linear_probe" and task.eval_splits and task.eval_splits[0] in evals:
        splits["eval"] = evals[task.eval_splits[0]]
    autocast = torch.bfloat16 if args.bf16 else None
    model.to(state.device)
    features, labels = {}, {}
    with state.main_process_first():
        for split, dataset in splits.items():
            cached = cache_backbone_features(
                model,
                dataset,
                collator,
                batch_size=args.per_device_eval_batch_size,
                preprocessing=preprocessing_key(data_args, autocast),  # as finetune.py: it reuses this cache
                autocast_dtype=autocast,
                desc=f"Features ({split})",
            )
            columns = cached.columns
            features[split] = torch.cat([columns[k] for k in sorted(columns) if k != "labels"], dim=1).double().numpy()
            labels[split] = columns["labels"].numpy()
    model.to("cpu")
    return features, labels


def raw_features(raw, task: TaskInfo, args: RankingArguments, splits: list[str]) -> dict[str, np.ndarray] | None:
    """The raw-input reference: pixels (grayscale or RGB, resized) or TF-IDF of the text (fit on train)."""
    if task.modality == "image":
        size = args.raw_image_size

        def pixels(dataset) -> np.ndarray:
            rows = []
            for image in dataset[task.image_column]:
                image = image.convert("RGB").resize((size, size))
                rows.append(np.asarray(image, dtype=np.float64).reshape(-1) / 255.0)
            return np.stack(rows)

        return {split: pixels(dataset) for split, dataset in splits_of(raw, task, splits).items()}
    if task.modality == "text":
        from sklearn.feature_extraction.text import TfidfVectorizer

        def texts(dataset) -> list[str]:
            return [" ".join(str(v) for v in row) for row in zip(*(dataset[c] for c in task.text_columns))]

        data = splits_of(raw, task, splits)
        vectorizer = TfidfVectorizer(ngram_range=(1, 2), max_features=2048, sublinear_tf=True)
        vectorizer.fit(texts(data["train"]))
        return {split: vectorizer.transform(texts(dataset)).toarray() for split, dataset in data.items()}
    return None  # multimodal: no single raw representation


def splits_of(raw, task: TaskInfo, splits: list[str]) -> dict:
    names = {"train": "train", "eval": task.eval_splits[0] if task.eval_splits else None}
    return {split: raw[names[split]] for split in splits if names[split] in raw}


# --------------------------------------------------------------------------------------------------------------------
# Validation: linear probes
# --------------------------------------------------------------------------------------------------------------------


def linear_probe(
    features: dict[str, np.ndarray], labels: dict[str, np.ndarray], task, cs, seed
) -> tuple[float, float]:
    """Trains a linear probe (standardised features, L2 logistic regression / ridge; C picked on 20% of train) and
    returns its accuracy (R² for regression) on the eval split, and the C picked."""
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    regression = task.problem_type == "regression"
    x, y = features["train"], labels["train"]
    stratify = None if regression else y

    def probe(c):
        linear = Ridge(alpha=1.0 / c) if regression else LogisticRegression(C=c, max_iter=500)
        return make_pipeline(StandardScaler(), linear)

    if len(cs) > 1:
        x_fit, x_val, y_fit, y_val = train_test_split(x, y, test_size=0.2, random_state=seed, stratify=stratify)
        best = max(cs, key=lambda c: probe(c).fit(x_fit, y_fit).score(x_val, y_val))
    else:
        best = cs[0]
    return float(probe(best).fit(x, y).score(features["eval"], labels["eval"])), float(best)


def rank_correlations(results: list[CandidateResult], scores: list[str]) -> tuple[dict, dict]:
    """Kendall's tau and weighted tau (scipy) between each score and the probe accuracy, over the rows with both."""
    from scipy.stats import kendalltau, weightedtau

    tau, weighted = {}, {}
    for score in scores:
        rows = [r for r in results if score in r.scores and r.probe_accuracy is not None]
        if len(rows) < 2:
            continue
        x = np.array([r.scores[score] for r in rows])
        y = np.array([r.probe_accuracy for r in rows])
        tau[score] = float(kendalltau(x, y).statistic)
        weighted[score] = float(weightedtau(x, y).statistic)
    return tau, weighted


# --------------------------------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------------------------------


def format_table(report: RankingReport) -> str:
    scores = [s for s in ALL_SCORES if any(s in r.scores for r in report.results)]
    validate = any(r.probe_accuracy is not None for r in report.results)
    header = ["#", "candidate", *scores] + (["probe acc"] if validate else []) + ["guard"]
    rows = []
    for i, r in enumerate(report.results, 1):
        guard = "NO BETTER THAN RANDOM INIT" if r.flagged else ("≤ raw inputs" if r.below_raw else "")
        rows.append(
            [str(i), r.label]
            + [f"{r.scores[s]:.4f}" if s in r.scores else "-" for s in scores]
            + ([f"{r.probe_accuracy:.4f}" if r.probe_accuracy is not None else "-"] if validate else [])
            + [guard]
        )
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if report.kendall_tau:
        lines.append("")
        lines.append("Agreement with the linear probe (Kendall tau / weighted tau):")
        lines += [f"  {s}: {report.kendall_tau[s]:+.3f} / {report.weighted_tau[s]:+.3f}" for s in report.kendall_tau]
    return "\n".join(lines)


# Flags of RankingArguments that recipes/finetune.py does not take (the data flags and --seed, --image_size,
# --pooling, --per_device_eval_batch_size, --bf16 carry over as they are).
_RANKING_ONLY = (
    "--backbone", "--backbone_weights", "--output_dir", "--scores", "--rank_by", "--validate", "--probe_c",
    "--random_init_reference", "--raw_reference", "--raw_image_size", "--max_score_samples",
)  # fmt: skip


def finetune_command(argv: list[str], report: RankingReport) -> str | None:
    """The `recipes/finetune.py` command line that linear-probes the best candidate on the same data, reusing the
    features just cached (same data flags, frozen backbone, no augmentation); None when no candidate is worth it."""
    best = next((r for r in report.results if r.kind == PRETRAINED), None)
    if best is None or best.flagged:
        return None
    kept, skipping = [], False
    for token in argv:
        if token.startswith("--"):
            skipping = token.split("=", 1)[0] in _RANKING_ONLY
        if not skipping:
            kept.append(token)
    model = ["--backbone", best.name] + (["--backbone_weights", best.weights] if best.weights else [])
    # the quickstart's linear-probe schedule (recipes/quickstart_fashion_mnist.yaml): on cached features the head
    # trains for 30 epochs in seconds; the Trainer's defaults (3 epochs at 5e-5) would leave it far from converged
    probe = ["--learning_rate", "2e-3", "--num_train_epochs", "30", "--per_device_train_batch_size", "128"]
    probe += ["--lr_scheduler_type", "cosine", "--warmup_steps", "0.05"]
    flags = kept + model + ["--freeze", "backbone", "--no_augmentation", *probe, "--do_train", "--do_eval"]
    return "python recipes/finetune.py " + " ".join(shlex.quote(str(f)) for f in flags) + " --output_dir <dir>"


def plot_ranking(report: RankingReport, path: Path) -> None:
    """Bar chart of the ranking score per candidate (best on top) with each one's random-init score and the raw
    inputs' as references; with probes, a second panel of score against probe accuracy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    score = report.rank_by
    candidates = [r for r in report.results if r.kind == PRETRAINED]
    references = {r.name: r for r in report.results if r.kind == RANDOM_INIT}
    raw = next((r for r in report.results if r.kind == RAW), None)
    validate = any(r.probe_accuracy is not None for r in report.results)
    fig, axes = plt.subplots(1, 2 if validate else 1, figsize=(12 if validate else 7, 2.6 + 0.6 * len(candidates)))
    axes = np.atleast_1d(axes)
    ax = axes[0]
    y = np.arange(len(candidates))[::-1]
    values = [c.scores[score] for c in candidates]
    colors = ["tab:red" if c.flagged else "tab:blue" for c in candidates]
    ax.barh(y, values, color=colors, label=f"{score} (pretrained; red: flagged)")
    ref_y = [yy for yy, c in zip(y, candidates) if c.name in references]
    ref_x = [references[c.name].scores[score] for c in candidates if c.name in references]
    if ref_x:
        ax.scatter(ref_x, ref_y, marker="|", s=400, color="black", zorder=3, label="same architecture, random init")
    if raw is not None:
        ax.axvline(raw.scores[score], color="gray", linestyle="--", label="raw inputs")
    ax.set_yticks(y, [c.label for c in candidates])
    ax.set_xlabel(f"{score} (higher is better)")
    ax.set_title(f"Backbone ranking on {Path(str(report.dataset)).name}")
    for yy, value in zip(y, values):
        ax.annotate(f"{value:.3f}", (value, yy), fontsize=8, xytext=(3, 0), textcoords="offset points", va="center")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2, fontsize=8)
    if validate:
        ax = axes[1]
        markers = {PRETRAINED: "o", RANDOM_INIT: "x", RAW: "s"}
        for r in report.results:
            if r.probe_accuracy is None:
                continue
            ax.scatter(
                r.scores[score], r.probe_accuracy, marker=markers[r.kind], color="tab:red" if r.flagged else "k"
            )
            ax.annotate(
                r.label, (r.scores[score], r.probe_accuracy), fontsize=7, xytext=(3, 3), textcoords="offset points"
            )
        tau = report.kendall_tau.get(score)
        ax.set_title(f"{score} vs linear-probe accuracy" + (f" (Kendall tau {tau:+.2f})" if tau is not None else ""))
        ax.set_xlabel(score)
        ax.set_ylabel("linear-probe accuracy (eval split)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --------------------------------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> tuple[RankingArguments, DataTrainingArguments]:
    parser = HfArgumentParser((RankingArguments, DataTrainingArguments))
    args, data_args = parser.parse_args_into_dataclasses(args=list(sys.argv[1:] if argv is None else argv))
    return args, data_args


def score_row(result: CandidateResult, features, labels, task, args, source_logits=None) -> None:
    n = args.max_score_samples or len(features["train"])
    for score in args.scores:  # one at a time, to time each (ranking needs only --rank_by)
        start = time.perf_counter()
        result.scores.update(
            score_features(
                features["train"][:n],
                labels["train"][:n],
                regression=task.problem_type == "regression",
                source_logits=None if source_logits is None else source_logits[:n],
                scores=(score,),
            )
        )
        result.seconds_per_score[score] = time.perf_counter() - start
    result.seconds_scores = sum(result.seconds_per_score.values())
    if args.validate == "linear_probe" and "eval" in features:
        start = time.perf_counter()
        result.probe_accuracy, result.probe_c = linear_probe(features, labels, task, args.probe_c, args.seed)
        result.seconds_probe = time.perf_counter() - start


def main(argv: list[str] | None = None) -> RankingReport:
    args, data_args = parse_args(argv)
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    check_arguments(args)
    # without GPUs, `accelerate launch` processes form a CPU (gloo) group only when asked to
    state = PartialState(cpu=not torch.cuda.is_available())
    set_seed(args.seed)
    # features must be the same every time they are computed (and reusable by a frozen-backbone fine-tune)
    data_args.no_augmentation = True

    # 1. Data, and every check before the first feature pass
    raw, task = load_raw_datasets(data_args, seed=args.seed)
    check_task(raw, task)
    specs = candidate_specs(args)
    models = []
    for spec in specs:
        model = build_model(spec, task, args, args.seed)
        check_modality(model, spec, task)
        models.append(model)
    if args.validate == "linear_probe" and not task.eval_splits:
        raise ValueError("--validate linear_probe needs an eval split (or --train_val_split to carve one).")

    # 2. Features and scores, candidate by candidate (then its random-init self)
    results: list[CandidateResult] = []
    num_eval = 0
    for spec, model in zip(specs, models):
        start = time.perf_counter()
        features, labels = backbone_features(model, raw, task, data_args, args, state)
        seconds = time.perf_counter() - start
        num_eval = len(features.get("eval", []))
        source_logits = None
        if set(args.scores) & set(SOURCE_SCORES):
            head = source_classifier(spec.name, spec.weights, spec.pretrained)
            if head is not None:
                with torch.no_grad():
                    source_logits = head(torch.from_numpy(features["train"]).float()).double().numpy()
        result = CandidateResult(
            spec.name, PRETRAINED, spec.weights, features["train"].shape[1], {}, seconds_features=seconds
        )
        score_row(result, features, labels, task, args, source_logits)
        results.append(result)
        del model
        if args.random_init_reference:
            random_spec = dataclasses.replace(spec, weights=None, pretrained=False)
            start = time.perf_counter()
            features, labels = backbone_features(
                build_model(random_spec, task, args, args.seed), raw, task, data_args, args, state
            )
            reference = CandidateResult(
                spec.name,
                RANDOM_INIT,
                None,
                features["train"].shape[1],
                {},
                seconds_features=time.perf_counter() - start,
            )
            score_row(reference, features, labels, task, args)
            results.append(reference)
    models.clear()
    if args.raw_reference:
        start = time.perf_counter()
        splits = ["train"] + (["eval"] if args.validate == "linear_probe" else [])
        features = raw_features(raw, task, args, splits)
        if features is not None:
            labels = {split: np.asarray(ds[task.label_column]) for split, ds in splits_of(raw, task, splits).items()}
            name = "pixels" if task.modality == "image" else "tf-idf"
            reference = CandidateResult(
                name, RAW, None, features["train"].shape[1], {}, seconds_features=time.perf_counter() - start
            )
            score_row(reference, features, labels, task, args)
            results.append(reference)

    # 3. Guard, order, agreement with the probes
    report_warnings = []
    by_name = {(r.name, r.kind): r for r in results}
    raw_row = next((r for r in results if r.kind == RAW), None)
    for r in results:
        if r.kind != PRETRAINED:
            continue
        reference = by_name.get((r.name, RANDOM_INIT))
        if reference is not None and r.scores[args.rank_by] <= reference.scores[args.rank_by]:
            r.flagged = True
            report_warnings.append(
                f"{r.name}: {args.rank_by} {r.scores[args.rank_by]:.4f} is no better than the same architecture from "
                f"random init ({reference.scores[args.rank_by]:.4f}): transferring it may hurt (negative transfer)."
            )
        if raw_row is not None and r.scores[args.rank_by] <= raw_row.scores[args.rank_by]:
            r.below_raw = True
            report_warnings.append(
                f"{r.name}: {args.rank_by} {r.scores[args.rank_by]:.4f} is no better than the raw inputs "
                f"({raw_row.name}, {raw_row.scores[args.rank_by]:.4f})."
            )
    results.sort(key=lambda r: r.scores[args.rank_by], reverse=True)
    tau, weighted = rank_correlations(results, list(args.scores)) if args.validate == "linear_probe" else ({}, {})
    report = RankingReport(
        dataset=task.dataset_name,
        num_train_samples=len(raw["train"]),
        num_eval_samples=num_eval,
        rank_by=args.rank_by,
        results=results,
        kendall_tau=tau,
        weighted_tau=weighted,
        warnings=report_warnings,
    )
    for message in report_warnings:
        warnings.warn(message, stacklevel=1)
        logger.warning(message)

    # 4. Output (main process only)
    if state.is_main_process:
        out = Path(args.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "ranking.json").write_text(json.dumps(report.to_json(), indent=2))
        plot_ranking(report, out / "ranking.png")
        print(format_table(report))
        print(f"\nWrote {out / 'ranking.json'} and {out / 'ranking.png'}")
        command = finetune_command(sys.argv[1:] if argv is None else argv, report)
        if command:
            print("\nLinear-probe the best candidate on the cached features (drop --freeze backbone to fine-tune):")
            print(f"  {command}")
    return report


if __name__ == "__main__":
    main()
