# Copyright 2026 The hf_transfer authors. Licensed under the Apache License, Version 2.0.
"""Hyperparameter search with optuna through `Trainer.hyperparameter_search`, and the best trial as the run's model.

`Trainer.hyperparameter_search` reports the best trial's hyperparameters but keeps no model (transformers #10550,
#23120). Here every trial starts from a copy of the same initial model (`model_init`), the sampler is seeded, and
after the search the run trains once more with the best hyperparameters, from the same initial model and seed: on a
deterministic device that reproduces the best trial's model, which is then saved as the run's model, with
`best_hyperparameters.json` (the best trial, its objective, the direction) and `hp_search_trials.json` (every trial).

The search space is the recipe's `hp_space:` mapping (or `--hp_space` as YAML / JSON), keyed by `TrainingArguments`
fields plus `layer_decay` and `head_lr_multiplier`:

    hp_space:
      learning_rate: {low: 1.0e-4, high: 1.0e-1, log: true}
      num_train_epochs: {low: 1, high: 4}          # two ints: an int range
      per_device_train_batch_size: {choices: [16, 32]}
      weight_decay: 0.0                             # a plain value: fixed, not searched

Frozen backbones with cached features make a trial cost seconds (only the head trains).
"""

from __future__ import annotations

import copy
import json
import logging
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml
from torch import nn
from transformers import TrainingArguments

from .training import _check_layer_decay_options

logger = logging.getLogger(__name__)

HP_SEARCH_BACKENDS = ("optuna",)
# Searchable keys that are attributes of `TransferTrainer` rather than `TrainingArguments` fields.
TRAINER_KEYS = ("layer_decay", "head_lr_multiplier")
BEST_HYPERPARAMETERS_FILE = "best_hyperparameters.json"
TRIALS_FILE = "hp_search_trials.json"


@dataclass
class HyperparameterSearchArguments:
    """`--hp_search optuna --hp_trials N`: search the hyperparameters, then train the best as the run's model."""

    hp_search: str | None = field(
        default=None,
        metadata={"help": "Hyperparameter search backend: optuna (through Trainer.hyperparameter_search)."},
    )
    hp_trials: int = field(default=10, metadata={"help": "Number of trials of the hyperparameter search."})
    hp_space: str | None = field(
        default=None,
        metadata={
            "help": "Search space as YAML / JSON (in a recipe: an `hp_space:` mapping), e.g. "
            "'{learning_rate: {low: 1.0e-5, high: 1.0e-3, log: true}}'. Default: see hf_transfer.hpo.default_space."
        },
    )


@dataclass
class Param:
    """One searched hyperparameter: a float or int range (`low`..`high`, `log` scale) or a list of `choices`."""

    name: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: list | None = None
    integer: bool = False

    def suggest(self, trial: Any) -> Any:
        """The trial's value (optuna `Trial` or `FixedTrial`)."""
        if self.choices is not None:
            return trial.suggest_categorical(self.name, self.choices)
        if self.integer:
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, log=self.log)


@dataclass
class SearchSpace:
    """The searched hyperparameters and the fixed ones, split by where they are set (`TrainingArguments` or the
    trainer's `layer_decay` / `head_lr_multiplier`)."""

    params: list[Param]
    fixed: dict[str, Any] = field(default_factory=dict)

    def suggest(self, trial: Any) -> dict[str, Any]:
        """All the trial's hyperparameters (fixed ones included)."""
        return {**self.fixed, **{param.name: param.suggest(trial) for param in self.params}}

    def training_args_space(self, trial: Any) -> dict[str, Any]:
        """The trial's `TrainingArguments` values: what `Trainer.hyperparameter_search` sets itself."""
        return {k: v for k, v in self.suggest(trial).items() if k not in TRAINER_KEYS}

    def trainer_values(self, trial: Any) -> dict[str, Any]:
        """The trial's `layer_decay` / `head_lr_multiplier`, which the trainer holds."""
        return {k: v for k, v in self.suggest(trial).items() if k in TRAINER_KEYS}


def _number(key: str, name: str, value: Any) -> float:
    try:
        return float(value)  # PyYAML reads `1e-5` (no dot) as a string
    except (TypeError, ValueError):
        raise ValueError(f"hp_space.{name}.{key} = {value!r} is not a number.") from None


def parse_space(
    space: str | dict | None, training_args: TrainingArguments, *, backbone_trainable: bool
) -> SearchSpace:
    """Reads the search space (a mapping, or YAML / JSON text), or builds the default one.

    Args:
        space: The recipe's `hp_space:` mapping or `--hp_space` text; None for `default_space`.
        training_args: The run's arguments (valid keys; the epoch count the default range is built around).
        backbone_trainable: Whether a backbone trains (the default space then also searches layer decay and the
            head LR multiplier, which mean nothing for a frozen backbone).

    Returns:
        The search space.

    Raises:
        ValueError: An unknown key or a malformed range, naming the valid forms.
    """
    if space is None:
        return default_space(training_args, backbone_trainable=backbone_trainable)
    if isinstance(space, str):
        space = yaml.safe_load(space)
    if not isinstance(space, dict) or not space:
        raise ValueError(f"hp_space must be a non-empty mapping of hyperparameter -> range; got {space!r}.")
    valid = {f.name for f in fields(TrainingArguments)} | set(TRAINER_KEYS)
    unknown = sorted(set(space) - valid)
    if unknown:
        raise ValueError(
            f"Unknown hyperparameters in hp_space: {unknown}. Valid: TrainingArguments fields (learning_rate, "
            f"weight_decay, num_train_epochs, warmup_steps, per_device_train_batch_size, ...) and {list(TRAINER_KEYS)}."
        )
    params, fixed = [], {}
    for name, spec in space.items():
        if not isinstance(spec, dict):
            fixed[name] = spec
        elif "choices" in spec:
            if set(spec) - {"choices"} or not isinstance(spec["choices"], list) or not spec["choices"]:
                raise ValueError(f"hp_space.{name}: {{choices: [...]}} takes a non-empty list and nothing else.")
            params.append(Param(name, choices=spec["choices"]))
        else:
            if set(spec) - {"low", "high", "log", "type"} or not {"low", "high"} <= set(spec):
                raise ValueError(
                    f"hp_space.{name} = {spec!r}: give {{low: L, high: H}} (optional log: true, type: int|float), "
                    "{choices: [...]}, or a plain value."
                )
            low, high = _number("low", name, spec["low"]), _number("high", name, spec["high"])
            if not low < high:
                raise ValueError(f"hp_space.{name}: low {low} must be below high {high}.")
            integer = spec.get("type", "int" if all(isinstance(spec[k], int) for k in ("low", "high")) else "float")
            if integer not in ("int", "float"):
                raise ValueError(f"hp_space.{name}.type = {integer!r}: int or float.")
            params.append(Param(name, low, high, log=bool(spec.get("log", False)), integer=integer == "int"))
    return SearchSpace(params, fixed)


def default_space(training_args: TrainingArguments, *, backbone_trainable: bool) -> SearchSpace:
    """Sensible default ranges: learning rate (log), weight decay (log), epochs around the given count (unless
    `max_steps` fixes the length), and for a trainable backbone layer decay and the head LR multiplier.

    Args:
        training_args: The run's arguments.
        backbone_trainable: Whether a backbone trains.

    Returns:
        The search space.
    """
    if backbone_trainable:
        params = [Param("learning_rate", 1e-5, 1e-3, log=True)]
    else:  # a head alone on frozen features takes (and needs) much larger steps
        params = [Param("learning_rate", 1e-4, 1e-1, log=True)]
    params.append(Param("weight_decay", 1e-6, 1e-1, log=True))
    if training_args.max_steps <= 0:
        epochs = max(1, math.ceil(training_args.num_train_epochs))
        params.append(Param("num_train_epochs", max(1, epochs // 2), max(2, 2 * epochs), integer=True))
    if backbone_trainable:
        params += [Param("layer_decay", 0.5, 1.0), Param("head_lr_multiplier", 1.0, 100.0, log=True)]
    return SearchSpace(params)


@dataclass
class Objective:
    """The metric a search optimizes and its direction, from `--metric_for_best_model` / `--greater_is_better`."""

    key: str
    direction: str

    @classmethod
    def from_args(cls, training_args: TrainingArguments) -> Objective:
        """The objective of `training_args`: `metric_for_best_model` (default: the eval loss, minimized)."""
        metric = training_args.metric_for_best_model or "loss"
        key = metric if metric.startswith("eval_") else f"eval_{metric}"
        greater = training_args.greater_is_better
        if greater is None:
            greater = not key.endswith("loss")
        return cls(key, "maximize" if greater else "minimize")

    def __call__(self, metrics: dict[str, float]) -> float:
        if self.key not in metrics:
            raise ValueError(
                f"The search objective {self.key!r} (--metric_for_best_model) is not among the eval metrics: "
                f"{sorted(k for k in metrics if k.startswith('eval_'))}."
            )
        return float(metrics[self.key])


class SearchableTrainerMixin:
    """Sets the trainer-held hyperparameters (`layer_decay`, `head_lr_multiplier`) of each trial; the Trainer sets
    the `TrainingArguments` ones itself (and warns about, then skips, any other key)."""

    search_space: SearchSpace | None = None

    def _hp_search_setup(self, trial: Any) -> None:
        super()._hp_search_setup(trial)
        if trial is None or self.hp_search_backend is None or self.search_space is None:
            return
        for key, value in self.search_space.trainer_values(trial).items():
            setattr(self, key, float(value))
        _check_layer_decay_options(self.layer_decay, self.head_lr_multiplier)


def searchable(trainer_class: type) -> type:
    """`trainer_class` with `SearchableTrainerMixin` (build the trainer from the returned class)."""
    return type(f"Searchable{trainer_class.__name__}", (SearchableTrainerMixin, trainer_class), {})


@dataclass
class SearchResult:
    """The best trial (written to `best_hyperparameters.json`) and every trial's objective."""

    backend: str
    objective: str
    direction: str
    n_trials: int
    seed: int
    best_trial: str
    best_objective: float
    best_hyperparameters: dict[str, Any]
    trials: list[dict[str, Any]] = field(default_factory=list)


def check_search_args(args: HyperparameterSearchArguments, training_args: TrainingArguments) -> None:
    """Checks the search flags before any data or model work: backend, trial count, train + eval, the space.

    Args:
        args: The search flags.
        training_args: The run's arguments.

    Raises:
        ValueError: Naming the bad value and the valid ones.
    """
    if args.hp_search not in HP_SEARCH_BACKENDS:
        raise ValueError(f"--hp_search {args.hp_search!r}: valid backends are {', '.join(HP_SEARCH_BACKENDS)}.")
    if args.hp_trials < 1:
        raise ValueError(f"--hp_trials {args.hp_trials} must be at least 1.")
    if not (training_args.do_train and training_args.do_eval):
        raise ValueError("--hp_search needs --do_train and --do_eval (trials are compared on the eval split).")
    parse_space(args.hp_space, training_args, backbone_trainable=True)


def run_search(
    trainer: Any,
    model: nn.Module,
    args: HyperparameterSearchArguments,
    *,
    backbone_trainable: bool,
) -> SearchResult:
    """Runs the search, then sets the best hyperparameters on `trainer` (its args and layer decay / head LR) and a
    `model_init` that gives the same initial model, so that the following `trainer.train()` trains the best trial
    again as the run's model. Writes `best_hyperparameters.json` and `hp_search_trials.json` to the output dir.

    Args:
        trainer: A trainer built from `searchable(...)`, with a train and an eval dataset.
        model: The initial model; each trial (and the final training) starts from a copy of it.
        args: The search flags.
        backbone_trainable: Whether a backbone trains (for the default space).

    Returns:
        The search result.

    Raises:
        ValueError: On a bad backend, trial count or space, or without an eval dataset.
    """
    import optuna

    check_search_args(args, trainer.args)
    if trainer.train_dataset is None or trainer.eval_dataset is None:
        raise ValueError("--hp_search needs --do_train and --do_eval (trials are compared on the eval split).")
    training_args = trainer.args
    space = parse_space(args.hp_space, training_args, backbone_trainable=backbone_trainable)
    objective = Objective.from_args(training_args)
    trainer.search_space = space

    initial = copy.deepcopy(model).cpu()
    trainer.model_init = lambda: copy.deepcopy(initial)
    trials: dict[int, dict[str, Any]] = {}

    def compute_objective(metrics: dict[str, float]) -> float:
        value = objective(metrics)
        trial = trainer._trial  # the trial being run (set by the Trainer)
        trials[trial.number] = {"trial": trial.number, "hyperparameters": space.suggest(trial), objective.key: value}
        return value

    logger.warning(
        f"Hyperparameter search: {args.hp_trials} optuna trials, {objective.direction} {objective.key}, "
        f"seed {training_args.seed}, space {[p.name for p in space.params]} (fixed: {space.fixed})"
    )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    best = trainer.hyperparameter_search(
        hp_space=space.training_args_space,
        compute_objective=compute_objective,
        n_trials=args.hp_trials,
        direction=objective.direction,
        backend="optuna",
        sampler=optuna.samplers.TPESampler(seed=training_args.seed),
    )
    best_hyperparameters = {**space.fixed, **best.hyperparameters}
    result = SearchResult(
        backend=args.hp_search,
        objective=objective.key,
        direction=objective.direction,
        n_trials=args.hp_trials,
        seed=training_args.seed,
        best_trial=best.run_id,
        best_objective=best.objective,
        best_hyperparameters=best_hyperparameters,
        trials=[trials[k] for k in sorted(trials)],
    )
    apply_hyperparameters(trainer, best_hyperparameters)
    logger.warning(f"Best trial {best.run_id}: {objective.key} = {best.objective:.6g} with {best_hyperparameters}")
    if trainer.is_world_process_zero():
        out = Path(training_args.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        summary = {k: v for k, v in result.__dict__.items() if k != "trials"}
        (out / BEST_HYPERPARAMETERS_FILE).write_text(json.dumps(summary, indent=2) + "\n")
        (out / TRIALS_FILE).write_text(json.dumps(result.trials, indent=2) + "\n")
    return result


def apply_hyperparameters(trainer: Any, hyperparameters: dict[str, Any]) -> None:
    """Sets `hyperparameters` on the trainer: `layer_decay` / `head_lr_multiplier` on it, the rest on its args
    (cast to the field's type, as the Trainer does for a trial)."""
    for key, value in hyperparameters.items():
        if key in TRAINER_KEYS:
            setattr(trainer, key, float(value))
        else:
            old = getattr(trainer.args, key)
            setattr(trainer.args, key, type(old)(value) if old is not None else value)
    _check_layer_decay_options(trainer.layer_decay, trainer.head_lr_multiplier)


__all__ = [
    "BEST_HYPERPARAMETERS_FILE",
    "HyperparameterSearchArguments",
    "Objective",
    "SearchResult",
    "SearchSpace",
    "apply_hyperparameters",
    "check_search_args",
    "default_space",
    "parse_space",
    "run_search",
    "searchable",
]
