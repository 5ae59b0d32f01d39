#!/usr/bin/env python
# Copyright 2026 The hf_transfer authors. Licensed under the Apache License, Version 2.0.
"""Average fine-tuned checkpoints of one architecture into a model soup (uniform or greedy), scored on a held-out split.

    python recipes/soup.py --checkpoints out/seed0 out/seed1 out/seed2 --soup_method greedy \
        --dataset_name uoft-cs/cifar10 --output_dir out/soup

The held-out split is the dataset's evaluation split (`validation`, or the one `recipes/finetune.py` would evaluate
on: use a split none of the ingredients trained on, e.g. `--train_val_split` with the same seed as their runs). The
greedy soup (model-soups) adds an ingredient only if the held-out `--metric_for_best_model` (default: accuracy) does
not drop. The soup is saved as a normal model with the first ingredient's processors and a model card.
"""

import logging
import sys
from dataclasses import dataclass, field

from transformers import HfArgumentParser, TrainingArguments

from hf_transfer.data import DataTrainingArguments, load_raw_datasets, prepare_datasets
from hf_transfer.metrics import build_compute_metrics
from hf_transfer.processing import build_processor, load_processors
from hf_transfer.soup import SOUP_METHODS, load_model, save_soup, soup
from hf_transfer.training import TransferTrainer

logger = logging.getLogger(__name__)


@dataclass
class SoupArguments:
    """The ingredients and the kind of soup."""

    checkpoints: list[str] = field(
        default=None, metadata={"help": "Fine-tuned checkpoints (directories) of one architecture.", "nargs": "+"}
    )
    soup_method: str = field(default="greedy", metadata={"help": "greedy (model-soups) or uniform."})

    def __post_init__(self):
        if self.soup_method not in SOUP_METHODS:
            raise ValueError(f"Unknown --soup_method {self.soup_method!r}; valid: {', '.join(SOUP_METHODS)}.")
        if not self.checkpoints or len(self.checkpoints) < 2:
            raise ValueError(f"--checkpoints needs at least 2 fine-tuned checkpoints, got {self.checkpoints}.")


def main(argv: list[str] | None = None) -> dict:
    parser = HfArgumentParser((SoupArguments, DataTrainingArguments, TrainingArguments))
    parser.set_defaults(use_cpu=not __import__("torch").cuda.is_available(), report_to=[])
    soup_args, data_args, training_args = parser.parse_args_into_dataclasses(args=argv)
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    metric = training_args.metric_for_best_model or "accuracy"
    metric = metric if metric.startswith("eval_") else f"eval_{metric}"

    first = load_model(soup_args.checkpoints[0])
    processors = load_processors(first.config)
    raw, task = load_raw_datasets(data_args, seed=training_args.seed)
    _, eval_datasets, collator = prepare_datasets(
        raw, task, first.config.backbones, processors, data_args, training_args
    )
    held_out = eval_datasets[task.eval_splits[0]]
    compute_metrics = build_compute_metrics(task.task_name, problem_type=task.problem_type, num_labels=task.num_labels)

    def evaluate(model) -> float:
        trainer = TransferTrainer(
            model=model,
            args=training_args,
            eval_dataset=held_out,
            data_collator=collator,
            compute_metrics=compute_metrics,
        )
        metrics = trainer.evaluate()
        if metric not in metrics:
            raise ValueError(
                f"--metric_for_best_model {metric!r} is not computed; the evaluation gives {sorted(metrics)}."
            )
        return metrics[metric] if training_args.greater_is_better is not False else -metrics[metric]

    model, report = soup(soup_args.checkpoints, soup_args.soup_method, evaluate)
    report.metric = metric.removeprefix("eval_")
    save_soup(model, report, training_args.output_dir)
    build_processor(model.config, processors).save_pretrained(training_args.output_dir)  # pipeline() serves it
    logger.info(
        "%s soup of %d/%d ingredients: held-out %s %.4f (best ingredient %.4f). Saved to %s",
        report.method,
        len(report.used),
        len(report.ingredients),
        report.metric,
        report.soup_score,
        max(report.scores.values()),
        training_args.output_dir,
    )
    return {"soup_score": report.soup_score, "used": report.used, "scores": report.scores}


if __name__ == "__main__":
    main(sys.argv[1:])
