# Copyright 2026 The hf_transfer authors. Licensed under the Apache License, Version 2.0.
"""Model soups (Wortsman et al., ICML 2022; mlfoundations/model-soups): averaging fine-tuned checkpoints.

- Uniform soup: the mean of every ingredient's weights.
- Greedy soup: ingredients sorted by their held-out score, best first; each is added to the soup only if the
  soup's held-out score does not drop. The soup therefore never scores below its best ingredient on that split.

All ingredients must be fine-tuned from the same pretrained model into the same architecture (same backbones,
fusion, head and labels): `check_same_architecture` refuses anything else. The soup is a normal model: `save_soup`
writes it with `save_pretrained` and a model card listing the ingredients and the scores.

Example:
    ```python
    >>> from hf_transfer.soup import greedy_soup, save_soup
    >>> soup, report = greedy_soup(["out/seed0", "out/seed1", "out/seed2"], evaluate=held_out_accuracy)
    >>> save_soup(soup, report, "out/soup")
    ```
"""

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import AutoConfig, PreTrainedModel

logger = logging.getLogger(__name__)

SOUP_METHODS = ("greedy", "uniform")


@dataclass
class SoupReport:
    """What went into a soup and how it scored on the held-out split."""

    method: str
    ingredients: list[str]  # all candidates, in the order considered
    scores: dict[str, float] = field(default_factory=dict)  # each ingredient's own held-out score
    used: list[str] = field(default_factory=list)  # the ingredients in the soup
    soup_score: float | None = None
    metric: str = "accuracy"


def _model_class(config) -> type[PreTrainedModel]:
    import hf_transfer

    name = (getattr(config, "architectures", None) or [None])[0]
    cls = getattr(hf_transfer, name, None) if name else None
    if cls is None:
        from transformers import AutoModelForImageClassification, AutoModelForSequenceClassification

        return (
            AutoModelForSequenceClassification
            if getattr(config, "modality", "image") == "text"
            else AutoModelForImageClassification
        )
    return cls


def load_model(path: str | os.PathLike) -> PreTrainedModel:
    """Loads a fine-tuned checkpoint (an hf_transfer model directory) on CPU."""
    config = AutoConfig.from_pretrained(path)
    return _model_class(config).from_pretrained(path)


def _architecture(config) -> dict:
    """The parts of a config that must agree between ingredients."""
    summary = {
        "backbones": [
            (spec.get("library"), (spec.get("config") or {}).get("architecture") or spec["config"].get("model_type"))
            for spec in getattr(config, "backbones", None) or []
        ]
    }
    # (problem_type is left out: the first loss computation infers it when unset)
    for key in ("architectures", "num_labels", "id2label", "fusion", "fusion_dim", "head", "head_hidden_sizes"):
        summary[key] = getattr(config, key, None)
    return summary


def check_same_architecture(models: Sequence[nn.Module], names: Sequence[str]) -> None:
    """Refuses ingredients that are not one architecture (config and parameter names and shapes).

    Raises:
        ValueError: Naming the first ingredient that differs from the first one, and how.
    """
    reference = _architecture(models[0].config)
    shapes = {k: tuple(v.shape) for k, v in models[0].state_dict().items()}
    for model, name in zip(models[1:], names[1:]):
        summary = _architecture(model.config)
        differing = [k for k in reference if reference[k] != summary[k]]
        if differing:
            key = differing[0]
            raise ValueError(
                f"Soup ingredients must share one architecture: {name} has {key}={summary[key]!r} where {names[0]} has "
                f"{reference[key]!r}. Average only checkpoints fine-tuned from the same pretrained model and recipe."
            )
        other = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        if other != shapes:
            diff = sorted(set(other) ^ set(shapes)) or [k for k in shapes if shapes[k] != other[k]]
            raise ValueError(
                f"Soup ingredients must share one architecture: {name} and {names[0]} differ in parameter {diff[0]}."
            )


def average_state_dicts(state_dicts: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The element-wise mean of floating-point tensors; integer buffers (BatchNorm step counts) from the first."""
    averaged = {}
    for key, first in state_dicts[0].items():
        if first.is_floating_point():
            averaged[key] = torch.stack([sd[key].float() for sd in state_dicts]).mean(0).to(first.dtype)
        else:
            averaged[key] = first.clone()
    return averaged


def _load_all(paths: Sequence[str]) -> tuple[nn.Module, list[dict[str, torch.Tensor]]]:
    if len(paths) < 2:
        raise ValueError(f"A soup needs at least 2 ingredients, got {len(paths)}.")
    models = [load_model(p) for p in tqdm(paths, desc="Loading ingredients")]
    check_same_architecture(models, [str(p) for p in paths])
    states = [{k: v.detach().clone() for k, v in m.state_dict().items()} for m in models]
    soup = models[0]
    del models
    return soup, states


def uniform_soup(
    paths: Sequence[str | os.PathLike], evaluate: Callable[[nn.Module], float] | None = None
) -> tuple[nn.Module, SoupReport]:
    """The mean of all ingredients' weights.

    Args:
        paths: Fine-tuned checkpoints of one architecture.
        evaluate: Optional held-out score of a model (higher is better), recorded in the report.

    Returns:
        `(soup model, report)`.
    """
    paths = [str(p) for p in paths]
    soup, states = _load_all(paths)
    report = SoupReport("uniform", paths, used=list(paths))
    if evaluate is not None:
        for path, state in zip(paths, states):
            soup.load_state_dict(state)
            report.scores[path] = float(evaluate(soup))
    soup.load_state_dict(average_state_dicts(states))
    if evaluate is not None:
        report.soup_score = float(evaluate(soup))
    return soup, report


def greedy_soup(
    paths: Sequence[str | os.PathLike], evaluate: Callable[[nn.Module], float]
) -> tuple[nn.Module, SoupReport]:
    """model-soups' greedy soup: best ingredient first; add the next only if the held-out score does not drop.

    Args:
        paths: Fine-tuned checkpoints of one architecture.
        evaluate: The held-out score of a model (higher is better), e.g. accuracy on a validation split that none
            of the ingredients trained on.

    Returns:
        `(soup model, report)`; the soup scores at least as well as the best ingredient under `evaluate`.
    """
    paths = [str(p) for p in paths]
    soup, states = _load_all(paths)
    report = SoupReport("greedy", paths)
    for path, state in zip(tqdm(paths, desc="Scoring ingredients"), states):
        soup.load_state_dict(state)
        report.scores[path] = float(evaluate(soup))
    order = sorted(range(len(paths)), key=lambda i: -report.scores[paths[i]])
    chosen = [order[0]]
    best = report.scores[paths[order[0]]]
    for index in tqdm(order[1:], desc="Greedy soup"):
        soup.load_state_dict(average_state_dicts([states[i] for i in [*chosen, index]]))
        score = float(evaluate(soup))
        logger.info("Greedy soup: with %s %.4f (soup so far %.4f)", paths[index], score, best)
        if score >= best:
            chosen.append(index)
            best = score
    soup.load_state_dict(average_state_dicts([states[i] for i in chosen]))
    report.used = [paths[i] for i in chosen]
    report.soup_score = best
    return soup, report


def soup(
    paths: Sequence[str | os.PathLike], method: str = "greedy", evaluate: Callable[[nn.Module], float] | None = None
) -> tuple[nn.Module, SoupReport]:
    """A `greedy_soup` or `uniform_soup` by name.

    Raises:
        ValueError: On an unknown method, or greedy without `evaluate`.
    """
    if method not in SOUP_METHODS:
        raise ValueError(f"Unknown soup method {method!r}; valid values are: {', '.join(SOUP_METHODS)}.")
    if method == "greedy":
        if evaluate is None:
            raise ValueError("The greedy soup needs a held-out evaluation (evaluate=...).")
        return greedy_soup(paths, evaluate)
    return uniform_soup(paths, evaluate)


def save_soup(model: PreTrainedModel, report: SoupReport, output_dir: str | os.PathLike) -> None:
    """Saves the soup as a normal model (`save_pretrained`) with a model card (README.md) naming the ingredients."""
    from huggingface_hub import ModelCard

    model.save_pretrained(output_dir)
    rows = "\n".join(
        f"| `{p}` | {report.scores.get(p, float('nan')):.4f} | {'yes' if p in report.used else 'no'} |"
        for p in report.ingredients
    )
    score = "n/a" if report.soup_score is None else f"{report.soup_score:.4f}"
    card = ModelCard(
        f"""---
library_name: transformers
tags:
- hf_transfer
- model-soup
---

# Model soup ({report.method})

This model is the {report.method} soup (weight average, Wortsman et al. 2022) of {len(report.used)} of
{len(report.ingredients)} fine-tuned checkpoints of one architecture. Held-out {report.metric} of the soup: **{score}**.

| ingredient | held-out {report.metric} | in the soup |
|---|---|---|
{rows}

Load it like any hf_transfer model: `AutoModelForImageClassification.from_pretrained(...)` /
`AutoModelForSequenceClassification.from_pretrained(...)` (with `import hf_transfer`, or `trust_remote_code=True`).
"""
    )
    card.save(os.path.join(output_dir, "README.md"))


__all__ = [
    "SOUP_METHODS",
    "SoupReport",
    "average_state_dicts",
    "check_same_architecture",
    "greedy_soup",
    "load_model",
    "save_soup",
    "soup",
    "uniform_soup",
]
