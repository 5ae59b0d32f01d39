#!/usr/bin/env python
# Copyright 2026 The hf_transfer authors. Licensed under the Apache License, Version 2.0.
"""Fine-tune timm / transformers backbones (one, or several fused) on an image or text classification dataset.

    accelerate launch recipes/finetune.py recipes/cifar10_resnet18_linear_probe.yaml --output_dir out/probe
    python recipes/finetune.py --backbone timm/resnet18.a1_in1k --dataset_name uoft-cs/cifar10 \
        --freeze backbone --do_train --do_eval --output_dir out/probe

A YAML (or JSON) recipe given as the first argument sets defaults; any flag on the command line overrides it. The
flags are those of transformers' example scripts (run_image_classification.py, run_glue.py, run_classification.py)
plus the model flags below, and every `TrainingArguments` flag.
"""

import logging
import os
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path

import datasets
import torch
import torch.nn.functional as F
import transformers
import yaml
from huggingface_hub import get_token
from transformers import (
    AutoModelForImageClassification,
    AutoModelForSequenceClassification,
    EarlyStoppingCallback,
    HfArgumentParser,
    TrainingArguments,
    set_seed,
)
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

import hf_transfer
from hf_transfer import BackboneSpec, TransferForImageClassification, TransferForSequenceClassification
from hf_transfer.adaptation import (  # --- domain adaptation (issue 11) ---
    AdaptationArguments,
    AdaptationTrainer,
    DomainAdapter,
    check_adaptation,
    describe_adaptation,
    head_input_dim,
    load_target_datasets,
    prepare_target_datasets,
)
from hf_transfer.data import (
    AugmentationEpochCallback,
    DataTrainingArguments,
    load_raw_datasets,
    prepare_datasets,
)
from hf_transfer.features import cache_backbone_features, cache_decision, collate_cached, preprocessing_key
from hf_transfer.hpo import HyperparameterSearchArguments, check_search_args, run_search, searchable
from hf_transfer.hub.recipe import RunRecipe
from hf_transfer.lora import PeftArguments, apply_lora, merge_lora, save_adapter
from hf_transfer.metrics import build_compute_metrics
from hf_transfer.mixup import MixupArguments, MixupTrainer, build_mixup
from hf_transfer.prediction import predict_and_write, prepare_predict_datasets
from hf_transfer.processing import build_processor, image_processor_for, load_processors, load_tokenizer
from hf_transfer.regularization import CoTuningRegularizer, RegularizationArguments, build_regularization
from hf_transfer.training import (
    DistillationTrainer,
    Distiller,
    GradualUnfreezingCallback,
    TransferTrainer,
    freeze_batch_norm_statistics,
)

logger = logging.getLogger(__name__)

# `--head mlp` without `--head_hidden_sizes`: GAP -> Dense(1024, ReLU) -> classes, the seeds' head
DEFAULT_MLP_HIDDEN_SIZES = (1024,)


@dataclass
class ModelArguments(MixupArguments, HyperparameterSearchArguments):
    """Which backbone(s) to start from and how to transfer them (plus the mixup / cutmix flags of
    `hf_transfer.mixup.MixupArguments` and the `--hp_search` flags of `hf_transfer.hpo.HyperparameterSearchArguments`)."""

    backbone: list[str] = field(
        default=None,
        metadata={
            "help": "One or more backbones (several are fused): a Hub id or local directory of a transformers, "
            "timm (`timm/...`) or hf_transfer checkpoint, or a timm architecture name (e.g. `resnet18`).",
            "nargs": "+",
        },
    )
    backbone_weights: list[str] | None = field(
        default=None,
        metadata={
            "help": "Local weights files for timm architectures, one per backbone in order (`none` to skip one).",
            "nargs": "+",
        },
    )
    random_init: bool = field(
        default=False, metadata={"help": "Start the backbones from random init (the baseline transfer must beat)."}
    )
    pooling: str = field(default="auto", metadata={"help": "Pooling: auto, cls, pooler, mean, max, or a timm pool."})
    fusion: str = field(
        default="concat", metadata={"help": "Fusion of several backbones: concat, weighted_sum, gated, attention."}
    )
    fusion_dim: int = field(default=256, metadata={"help": "Width each backbone's features are projected to."})
    head: str = field(default="linear", metadata={"help": "Classification head: linear or mlp."})
    head_hidden_sizes: list[int] | None = field(
        default=None,
        metadata={"help": "Hidden widths of the mlp head (default with --head mlp: one layer of 1024).", "nargs": "+"},
    )
    head_activation: str = field(default="relu", metadata={"help": "MLP activation: relu, gelu, silu, tanh."})
    head_dropout: float = field(default=0.0, metadata={"help": "Dropout before each linear layer of the head."})
    freeze: str = field(
        default="none",
        metadata={"help": "none (full fine-tune), backbone (linear probe), partial (first --num_frozen_groups)."},
    )
    num_frozen_groups: int = field(default=0, metadata={"help": "Layer groups frozen from the input with partial."})
    image_size: int | None = field(
        default=None,
        metadata={"help": "Input size for every image backbone (default: each backbone's own, e.g. 224)."},
    )
    channels_last: bool = field(
        default=False,
        metadata={
            "help": "Image backbones' weights and image batches in channels-last memory format (timm train.py's "
            "--channels-last): faster convolutions, above all with --bf16 on GPUs and CPUs with bf16 support."
        },
    )
    freeze_bn_stats: bool = field(
        default=False,
        metadata={
            "help": "Keep every BatchNorm layer of the backbones in eval mode while training: the source's running "
            "statistics are kept, their scale and shift still train. For few-label fine-tuning with small batches "
            "(Fashion-MNIST, 10 labels per class, EfficientNet-Lite0: 38.0 -> 72.2 %% on held-out rows at lr 1e-4)."
        },
    )
    cache_features: bool | None = field(
        default=None,
        metadata={
            "help": "Compute frozen backbones' features once (cached on disk) and train only fusion + head on them. "
            "Default: on when every backbone is frozen and the inputs are deterministic (see --no_augmentation)."
        },
    )
    layer_decay: float = field(
        default=1.0,
        metadata={"help": "Layer-wise LR decay: layer group k of K trains at lr * layer_decay^(K - k); 1 disables."},
    )
    head_lr_multiplier: float = field(default=1.0, metadata={"help": "Head (and fusion) LR = lr * this."})
    gradual_unfreezing: bool = field(
        default=False,
        metadata={"help": "Train the head with the backbone frozen, then unfreeze layer groups from the top."},
    )
    unfreeze_after: float = field(default=1, metadata={"help": "Epochs (or steps) of head-only training first."})
    unfreeze_every: float = field(default=1, metadata={"help": "Epochs (or steps) between unfreezing stages."})
    unfreeze_groups_per_stage: int = field(default=1, metadata={"help": "Layer groups unfrozen at each stage."})
    unfreeze_unit: str = field(default="epoch", metadata={"help": "Unit of the unfreezing schedule: epoch or step."})
    teacher: str | None = field(
        default=None,
        metadata={"help": "Knowledge distillation: a classifier (hf_transfer or transformers) to distill from."},
    )
    distill_alpha: float = field(
        default=0.5, metadata={"help": "Weight of the label loss; 1 - alpha weighs the distillation loss."}
    )
    distill_temperature: float = field(default=2.0, metadata={"help": "Softmax temperature of the distillation."})
    hub_timm_model_id: str | None = field(
        default=None,
        metadata={
            "help": "With --push_to_hub: also push an export in timm's own format (one timm backbone, linear head) "
            "to this repo, which stock transformers and timm.create_model('hf-hub:...') load without remote code."
        },
    )

    # ---- issue 15: a trained model used as it is; early stopping; class weights (flags block: using a model) ----
    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "A trained classifier to evaluate, predict with or train further, loaded WITH its head: an "
            "hf_transfer model or any transformers sequence/image classifier (run_glue.py's flag). Exclusive with "
            "--backbone, which starts a new model (a new head) from a backbone."
        },
    )
    early_stopping_patience: int | None = field(
        default=None,
        metadata={
            "help": "Stop training after this many evaluations without improvement of --metric_for_best_model "
            "(transformers' EarlyStoppingCallback). Turns --load_best_model_at_end on; needs --eval_strategy and "
            "--save_strategy epoch (or steps)."
        },
    )
    early_stopping_threshold: float = field(
        default=0.0, metadata={"help": "How much --metric_for_best_model must improve to count (with patience)."}
    )
    class_weights: str | None = field(
        default=None,
        metadata={
            "help": "Single-label classification on imbalanced data: `balanced` (sklearn's compute_class_weight on "
            "the train labels) or one weight per class, `w1,w2,...` in label id order: weighted cross-entropy."
        },
    )
    # ---- end of the issue 15 block ----

    # --- issue 12: negative-transfer guard (hf_transfer.transferability.check_transferability) ---
    check_transferability: str | None = field(
        default=None,
        metadata={
            "help": "Before training, compare the backbones' LogME with their random-init selves on the training "
            "data: `warn` (also the bare flag) logs a warning if no better, `strict` stops the run.",
            "nargs": "?",
            "const": "warn",
            "choices": ["warn", "strict"],
        },
    )
    # --- end issue 12 ---

    def __post_init__(self):
        if self.head == "mlp" and not self.head_hidden_sizes:
            self.head_hidden_sizes = list(DEFAULT_MLP_HIDDEN_SIZES)
        if self.early_stopping_patience is not None and self.early_stopping_patience < 1:
            raise ValueError(f"--early_stopping_patience must be >= 1, got {self.early_stopping_patience}.")


def make_parser() -> HfArgumentParser:
    """The recipe's parser, with the recipe's own defaults (before any recipe file)."""
    parser = HfArgumentParser(
        (
            ModelArguments,
            DataTrainingArguments,
            TrainingArguments,
            PeftArguments,
            RegularizationArguments,
            AdaptationArguments,
        )
    )
    if not torch.cuda.is_available():
        # No GPU: train on CPU, and with several processes as CPU DDP over gloo. Without `use_cpu`, `accelerate
        # launch --multi_gpu` on a machine with no GPU would silently train every rank alone on all the data.
        parser.set_defaults(use_cpu=True)
    # Every trainable parameter of an hf_transfer model takes part in the loss (frozen ones are not registered with
    # DDP, unused poolers are dropped), so DDP can skip its extra unused-parameter pass.
    parser.set_defaults(ddp_find_unused_parameters=False)
    return parser


def apply_recipe_file(parser: HfArgumentParser, argv: list[str]) -> list[str]:
    """Sets the defaults from a recipe file given as the first argument; returns the remaining arguments."""
    if argv and argv[0].endswith((".yaml", ".yml", ".json")):
        recipe = yaml.safe_load(Path(argv.pop(0)).read_text()) or {}
        recipe.pop("expected_results", None)  # documentation: what the recipe reached, see README
        known = {action.dest for action in parser._actions}
        unknown = sorted(set(recipe) - known)
        if unknown:
            raise ValueError(f"Unknown keys in the recipe: {unknown}. Valid keys are the flags of --help.")
        parser.set_defaults(**recipe)
    return argv


def resolved_recipe(argv: list[str], secrets: list[str | None] = ()) -> RunRecipe:
    """The run's exact command and full resolved recipe (every flag that differs from the defaults: a recipe file
    and the command line merged), secrets left out, for the card.

    Args:
        argv: The command line's arguments.
        secrets: Secret values (the resolved Hub token) masked wherever they appear in the command.
    """
    parser = make_parser()
    defaults = vars(parser.parse_args([]))
    resolved = vars(parser.parse_args(apply_recipe_file(parser, list(argv))))
    return RunRecipe.from_flags(resolved, defaults, argv=argv, secrets=[s for s in secrets if s])


def parse_args(argv: list[str] | None = None) -> tuple[ModelArguments, DataTrainingArguments, TrainingArguments]:
    """The model, data and training arguments of `parse_all_args`."""
    return parse_all_args(argv)[:3]


def parse_all_args(argv: list[str] | None = None) -> tuple:
    """Parses `[RECIPE.yaml] [--flag value ...]`: the recipe gives defaults, the command line overrides them.

    Returns:
        `(model_args, data_args, training_args, peft_args, regularization_args, adaptation_args)`.
    """
    parser = make_parser()
    argv = apply_recipe_file(parser, list(sys.argv[1:] if argv is None else argv))
    model_args, data_args, training_args, *extra_args = parser.parse_args_into_dataclasses(args=argv)
    if model_args.backbone and model_args.model_name_or_path:
        raise ValueError(
            f"--backbone {' '.join(model_args.backbone)} and --model_name_or_path {model_args.model_name_or_path} "
            "exclude each other: --backbone starts a new model (new head) from a backbone (transfer); "
            "--model_name_or_path evaluates, predicts with or trains further a trained classifier with its head."
        )
    if not model_args.backbone and not model_args.model_name_or_path:
        parser.error(
            "--backbone (transfer from a backbone) or --model_name_or_path (a trained classifier, with its head) is "
            "required, in the recipe or on the command line."
        )
    if model_args.early_stopping_patience is not None and not training_args.load_best_model_at_end:
        check_early_stopping(training_args, best_model=False)
        # The best-model settings early stopping needs; TrainingArguments checks them (and defaults
        # metric_for_best_model to the loss) when parsed, so parse again with them on. A flag given still wins.
        parser.set_defaults(load_best_model_at_end=True)
        model_args, data_args, training_args, *extra_args = parser.parse_args_into_dataclasses(args=argv)
    if model_args.early_stopping_patience is not None:
        check_early_stopping(training_args)
    return (model_args, data_args, training_args, *extra_args)


def check_early_stopping(training_args: TrainingArguments, best_model: bool = True) -> None:
    """Stops a run whose early stopping could never act: no evaluation, or the best model never kept.

    Args:
        training_args: The parsed training arguments.
        best_model: Also require `load_best_model_at_end` (False before the recipe turns it on).
    """
    strategy = str(getattr(training_args.eval_strategy, "value", training_args.eval_strategy))
    save = str(getattr(training_args.save_strategy, "value", training_args.save_strategy))
    if strategy == "no":
        raise ValueError(
            "--early_stopping_patience stops on the evaluation metric, but this run never evaluates "
            "(--eval_strategy no). Pass --eval_strategy epoch --save_strategy epoch (or steps for both)."
        )
    if save not in (strategy, "best"):
        raise ValueError(
            f"--early_stopping_patience keeps the best model (--load_best_model_at_end), which needs the same "
            f"--save_strategy as --eval_strategy: got eval {strategy}, save {save}. Pass --save_strategy {strategy}."
        )
    if best_model and not training_args.load_best_model_at_end:
        raise ValueError(
            "--early_stopping_patience needs --load_best_model_at_end (transformers' EarlyStoppingCallback); "
            "drop --load_best_model_at_end false."
        )


def check_distributed(training_args: TrainingArguments) -> None:
    """Stops a launch that would not train as asked: FSDP without GPUs, or each rank alone on all the data."""
    fsdp_asked = os.environ.get("ACCELERATE_USE_FSDP", "false").lower() in ("1", "true") or bool(training_args.fsdp)
    if fsdp_asked and training_args.use_cpu:
        # accelerate cannot shard on CPU: the launch would quietly run as DDP, every rank holding the whole model.
        raise RuntimeError(
            "FSDP was asked for (accelerate config or --fsdp) but this run has no GPU (--use_cpu): accelerate cannot "
            "shard on CPU, so it would quietly run as plain DDP. Use a DDP launch here (`accelerate launch "
            "--multi_gpu --num_processes N`), or run the FSDP config on GPUs (README: Scaling up)."
        )
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and training_args.world_size != launched:
        raise RuntimeError(
            f"Launched with {launched} processes but the Trainer sees world size {training_args.world_size}: each "
            "rank would train alone. On a machine without GPUs pass --use_cpu (CPU DDP over gloo)."
        )


def backbone_specs(model_args: ModelArguments) -> list[BackboneSpec]:
    weights = model_args.backbone_weights or []
    if weights and len(weights) != len(model_args.backbone):
        raise ValueError(
            f"--backbone_weights has {len(weights)} entries for {len(model_args.backbone)} backbones; give one per "
            "backbone (`none` for a backbone without a weights file)."
        )
    return [
        BackboneSpec(
            name,
            # --random_init wins over --backbone_weights (the file would load the pretrained weights back in)
            weights=None if model_args.random_init or not weights or weights[i].lower() == "none" else weights[i],
            pretrained=not model_args.random_init,
            pooling=model_args.pooling,
        )
        for i, name in enumerate(model_args.backbone)
    ]


def load_teacher(name: str, student_config):
    """Loads the distillation teacher: a classifier of the student's classes (its own image preprocessing is made
    from the student's pixels by the `Distiller`, on the device)."""
    auto_class = (
        AutoModelForImageClassification if student_config.modality == "image" else AutoModelForSequenceClassification
    )
    return auto_class.from_pretrained(name)


# Model flags that are not hyperparameters: the card lists the backbones in a table of its own, and weights are paths.
FLAGS_NOT_ON_THE_CARD = {"backbone", "backbone_weights"}


def card_hyperparameters(model_args: ModelArguments, data_args, task, num_backbones: int) -> dict:
    """The model flags a card reports beside the training hyperparameters, leaving out those that do not apply
    (fusion with one backbone, MLP sizes with a linear head), and the sequence length for text."""
    shown = {}
    for name, value in ((f.name, getattr(model_args, f.name)) for f in fields(model_args)):
        if name in FLAGS_NOT_ON_THE_CARD or value is None:
            continue
        if name.startswith("fusion") and num_backbones < 2:
            continue
        if name in ("head_hidden_sizes", "head_activation") and model_args.head != "mlp":
            continue
        if name == "num_frozen_groups" and model_args.freeze != "partial":
            continue
        shown[name] = value
    if task.modality != "image":
        shown["max_seq_length"] = data_args.max_seq_length
    return shown


# ---- issue 15 helpers: a trained model used as it is; label smoothing, class weights, early stopping ----

# Flags that describe how to build a NEW model from backbones: meaningless for a trained one, so not ignored silently.
MODEL_BUILDING_FLAGS = (
    "backbone_weights",
    "random_init",
    "pooling",
    "fusion",
    "fusion_dim",
    "head",
    "head_hidden_sizes",
    "head_activation",
    "head_dropout",
    "freeze",
    "num_frozen_groups",
    "image_size",
)


def check_trained_model_flags(model_args: ModelArguments) -> None:
    """With --model_name_or_path the model is used as saved: a flag that would build a different one is an error."""
    defaults = ModelArguments(backbone=["x"])
    given = [f"--{name}" for name in MODEL_BUILDING_FLAGS if getattr(model_args, name) != getattr(defaults, name)]
    if model_args.head_hidden_sizes == list(DEFAULT_MLP_HIDDEN_SIZES):  # --head mlp's default, not a flag given
        given = [flag for flag in given if flag != "--head_hidden_sizes"]
    if given:
        raise ValueError(
            f"{', '.join(given)} build a new model from --backbone; --model_name_or_path "
            f"{model_args.model_name_or_path} is used as it was saved (backbones, head, freezing). Drop them, or "
            "pass --backbone to transfer from that model's backbone with a new head."
        )


def check_plain_classifier_flags(model_args: ModelArguments, model) -> None:
    """Flags that need an hf_transfer model's backbone layer groups or inputs, refused before any work for another
    transformers classifier."""
    defaults = ModelArguments(backbone=["x"])
    needs_transfer = (
        "layer_decay", "head_lr_multiplier", "gradual_unfreezing", "teacher", "channels_last", "freeze_bn_stats"
    )  # fmt: skip
    given = [f"--{name}" for name in needs_transfer if getattr(model_args, name) != getattr(defaults, name)]
    if given:
        raise ValueError(
            f"{', '.join(given)} need an hf_transfer model (backbone layer groups, its inputs); "
            f"{model_args.model_name_or_path} is a {type(model).__name__}. Drop them, or transfer its backbone with "
            f"--backbone {model_args.model_name_or_path}."
        )


def _plain_classifier_backbone(path: str, modality: str) -> dict:
    """The input description (a `config.backbones` entry) of a transformers classifier that is not an hf_transfer
    model, so the data pipeline prepares its inputs: its tokenizer, or its image processor's size and normalization."""
    if modality == "text":
        return {"modality": "text", "input_suffix": "", "source": path}
    from transformers import AutoImageProcessor

    image_processor = AutoImageProcessor.from_pretrained(path)
    size = image_processor.size
    height = size.get("height") or size.get("shortest_edge")
    width = size.get("width") or size.get("shortest_edge")
    resample = getattr(image_processor, "resample", None)
    return {
        "modality": "image",
        "input_suffix": "",
        "source": path,
        "data_config": {
            "input_size": [3, height, width],
            "mean": list(image_processor.image_mean),
            "std": list(image_processor.image_std),
            "interpolation": "bicubic" if int(resample or 2) == 3 else "bilinear",
            "crop_pct": 1.0,
        },
    }


def load_trained_model(path: str, task) -> tuple[torch.nn.Module, list[dict], list, object]:
    """Loads a trained classifier WITH its head (`--model_name_or_path`) and checks it fits the data's labels.

    Args:
        path: An hf_transfer model, or any transformers sequence / image classifier (folder or Hub id).
        task: The data's `TaskInfo`.

    Returns:
        `(model, backbones, processors, processor)`: the model, its inputs as `config.backbones` entries, one
        processor per input, and the processor saved with the outputs.
    """
    auto_class = AutoModelForImageClassification if task.modality == "image" else AutoModelForSequenceClassification
    model = auto_class.from_pretrained(path)
    check_labels_match(model.config, task, path)
    if model.config.problem_type is None:  # transformers classifiers often leave it unset: the data says
        model.config.problem_type = task.problem_type
    if getattr(model.config, "model_type", None) == "hf_transfer":
        processors = load_processors(model.config, path)
        return model, list(model.config.backbones), processors, build_processor(model.config, processors)
    backbones = [_plain_classifier_backbone(path, task.modality)]
    if task.modality == "text":
        processor = load_tokenizer(backbones[0])
        return model, backbones, [processor], processor
    from transformers import AutoImageProcessor

    processors = [image_processor_for(backbones[0])]
    return model, backbones, processors, AutoImageProcessor.from_pretrained(path)


def check_labels_match(config, task, path: str) -> None:
    """The data's labels must be the model's, in the model's id order (its head's rows)."""
    model_problem = config.problem_type
    if model_problem is not None and model_problem != task.problem_type:
        raise ValueError(
            f"--model_name_or_path {path} is a {model_problem} model; the data's labels are {task.problem_type}."
        )
    model_labels = [config.id2label[i] for i in sorted(config.id2label)]
    data_labels = task.label_list or ["LABEL_0"]
    if len(model_labels) != len(data_labels):
        raise ValueError(
            f"--model_name_or_path {path} predicts {len(model_labels)} labels {model_labels}; the data has "
            f"{len(data_labels)}: {data_labels}. Use data with the model's labels, or --backbone {path} to "
            "transfer its backbone with a new head."
        )
    generic = all(name == f"LABEL_{i}" for i, name in enumerate(model_labels))
    if task.label_list and not generic and model_labels != data_labels:
        raise ValueError(
            f"--model_name_or_path {path} has labels {model_labels} (in id order); the data's are {data_labels}. "
            "They must be the same labels in the same order."
        )
    if task.label_list and generic:
        logger.warning(f"{path} names its labels {model_labels}: taking them as the data's {data_labels}, in order.")


def check_label_smoothing(training_args: TrainingArguments, problem_type: str) -> None:
    """Label smoothing smooths a class distribution: single-label classification only (else the first step fails
    with "gather(): Expected dtype int32/int64")."""
    if training_args.label_smoothing_factor and problem_type != "single_label_classification":
        raise ValueError(
            f"--label_smoothing_factor {training_args.label_smoothing_factor} applies to single-label "
            f"classification; this data is {problem_type}. Drop the flag (or set it to 0)."
        )


def resolve_class_weights(spec: str, train_labels, task) -> torch.Tensor:
    """`--class_weights balanced` (sklearn's `compute_class_weight`, n_samples / (n_classes * count)) or
    `w1,w2,...` (one per label id), checked against the labels.

    Args:
        spec: The flag's value.
        train_labels: The train split's label ids.
        task: The data's `TaskInfo`.
    """
    if task.problem_type != "single_label_classification":
        raise ValueError(
            f"--class_weights weighs the classes of single-label classification; this data is {task.problem_type}."
        )
    if spec.strip().lower() == "balanced":
        import numpy as np
        from sklearn.utils.class_weight import compute_class_weight

        labels = np.asarray(train_labels)
        missing = sorted(set(range(task.num_labels)) - set(labels.tolist()))
        if missing:
            raise ValueError(
                "--class_weights balanced: classes "
                + ", ".join(task.id2label[i] for i in missing)
                + " have no train example, so they get no weight; give the weights as w1,w2,..."
            )
        weights = compute_class_weight("balanced", classes=np.arange(task.num_labels), y=labels)
    else:
        try:
            weights = [float(w) for w in spec.split(",")]
        except ValueError as err:
            raise ValueError(f"--class_weights {spec!r}: give `balanced` or numbers `w1,w2,...` ({err}).") from err
        if len(weights) != task.num_labels:
            raise ValueError(
                f"--class_weights has {len(weights)} weights for {task.num_labels} labels "
                f"({', '.join(task.label_list)}); give one per label, in this order."
            )
        if any(w < 0 for w in weights) or not any(w > 0 for w in weights):
            raise ValueError(f"--class_weights {spec!r}: weights must be >= 0, at least one > 0.")
    return torch.tensor(weights, dtype=torch.float32)


class WeightedCrossEntropy:
    """The Trainer's `compute_loss_func` for `--class_weights`: cross-entropy with one weight per class (and the
    run's label smoothing, which the Trainer does not apply when a loss function is given). The weights live here
    only, not in the model's config, so the saved model reloads as any other.

    The sum over the batch is divided by `num_items_in_batch` (the Trainer's count over the accumulated batch and
    all ranks), so gradient accumulation and DDP give the same loss as one large batch.
    """

    def __init__(self, weights: torch.Tensor, label_smoothing: float = 0.0):
        self.weights = weights
        self.label_smoothing = label_smoothing

    def __call__(self, outputs, labels: torch.Tensor, num_items_in_batch=None) -> torch.Tensor:
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        loss = F.cross_entropy(
            logits.view(-1, logits.shape[-1]).float(),
            labels.view(-1),
            weight=self.weights.to(logits.device),
            label_smoothing=self.label_smoothing,
            reduction="sum",
        )
        count = num_items_in_batch if num_items_in_batch is not None else labels.numel()
        return loss / count


# ---- end of the issue 15 helpers ----


def build_transfer_model(model_args: ModelArguments, task) -> tuple[torch.nn.Module, list, object]:
    """A new hf_transfer model from `--backbone` with a new head (transfer), with its processors.

    Returns:
        `(model, processors, processor)`: the model, one processor per backbone, and the processor saved with it.
    """
    model_class = TransferForImageClassification if task.modality == "image" else TransferForSequenceClassification
    model = model_class.from_backbones(
        backbone_specs(model_args),
        num_labels=task.num_labels,
        id2label=task.id2label,
        label2id=task.label2id,
        problem_type=task.problem_type,
        fusion=model_args.fusion,
        fusion_dim=model_args.fusion_dim,
        head=model_args.head,
        head_hidden_sizes=model_args.head_hidden_sizes,
        head_activation=model_args.head_activation,
        head_dropout=model_args.head_dropout,
        freeze=model_args.freeze,
        num_frozen_groups=model_args.num_frozen_groups,
        image_size=model_args.image_size,
    )
    if model_args.channels_last and not any(spec["modality"] == "image" for spec in model.config.backbones):
        raise ValueError(
            "--channels_last applies to image backbones; this model's backbones ("
            + ", ".join(spec["source"] for spec in model.config.backbones)
            + ") are all text. Drop the flag."
        )
    if model_args.freeze_bn_stats:
        freeze_batch_norm_statistics(model)  # refuses backbones without BatchNorm now, before the data is prepared
    processors = load_processors(model.config)
    return model, processors, build_processor(model.config, processors)  # the processor: saved with the model


def last_complete_checkpoint(output_dir: str) -> str | None:
    """The newest checkpoint that was completely written (`trainer_state.json` is saved last). A run killed while
    saving leaves a partial `checkpoint-N`, which transformers' `get_last_checkpoint` would pick."""
    checkpoints = sorted(
        (path for path in Path(output_dir).glob(f"{PREFIX_CHECKPOINT_DIR}-*") if path.name.split("-")[-1].isdigit()),
        key=lambda path: int(path.name.split("-")[-1]),
    )
    for path in reversed(checkpoints):
        if (path / "trainer_state.json").is_file():
            return str(path)
        logger.warning(f"Skipping {path}: incompletely written (no trainer_state.json), e.g. killed while saving.")
    return None


def target_splits(target) -> dict:
    """The target splits to cache, keyed `target_{train,score,eval}` (none without domain adaptation)."""
    return {} if target is None else {f"target_{k}": getattr(target, k) for k in ("train", "score", "eval")}


def main(argv: list[str] | None = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    # ---- multi-task (issue 13): a recipe with a `tasks:` list trains one model with a head per task ----
    from types import SimpleNamespace

    from hf_transfer.multitask import is_multitask_recipe, run_multitask

    if is_multitask_recipe(argv):
        # this script's ModelArguments, backbone_specs, check_distributed, last_complete_checkpoint
        return run_multitask(argv, SimpleNamespace(**globals()))
    # ---- end multi-task ----
    model_args, data_args, training_args, peft_args, regularization_args, adaptation_args = parse_all_args(argv)
    check_distributed(training_args)
    if model_args.hp_search:
        check_search_args(model_args, training_args)  # before any data or model work (hf_transfer.hpo)

    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        datefmt="%m/%d/%Y %H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    log_level = training_args.get_process_log_level()
    for library_logger in (logger, logging.getLogger("hf_transfer")):
        library_logger.setLevel(log_level)
    datasets.utils.logging.set_verbosity(log_level)
    transformers.utils.logging.set_verbosity(log_level)
    logger.warning(
        f"Process rank: {training_args.process_index}, world size: {training_args.world_size}, "
        f"device: {training_args.device}, bf16: {training_args.bf16}"
    )
    logger.info(f"hf_transfer {hf_transfer.__version__}; training parameters {training_args}")

    # Fail fast: a push that cannot happen must not cost a training run; the token never reaches a file.
    hub_token = None
    if training_args.push_to_hub:
        from hf_transfer.hub import check_push_target, remove_secrets_from_args

        hub_token = training_args.hub_token
        # The card's "Reproduce" section: resolved now, while the token is known (and masked)
        recipe = resolved_recipe(argv, secrets=[hub_token, get_token()])
        training_args.hub_model_id = check_push_target(
            training_args.hub_model_id or Path(training_args.output_dir).name, hub_token
        )
        if model_args.hub_timm_model_id:
            model_args.hub_timm_model_id = check_push_target(model_args.hub_timm_model_id, hub_token)
        remove_secrets_from_args(training_args)
        # The Trainer's own push would upload checkpoints and training_args.bin: hf_transfer pushes at the end.
        training_args.push_to_hub = False
        push_requested = True
    else:
        push_requested = False

    last_checkpoint = None
    if (
        training_args.do_train
        and os.path.isdir(training_args.output_dir)
        and training_args.resume_from_checkpoint is None
    ):
        last_checkpoint = last_complete_checkpoint(training_args.output_dir)
        if last_checkpoint is not None:
            logger.info(
                f"Checkpoint found at {last_checkpoint}: resuming (pass --output_dir elsewhere to start over)."
            )

    set_seed(training_args.seed)

    # 1. Data
    raw_datasets, task = load_raw_datasets(data_args, seed=training_args.seed)
    # --- domain adaptation (issue 11): unlabelled target data, checked against the source before any training ---
    target = None
    if adaptation_args.adaptation:
        if model_args.teacher:
            raise ValueError("--adaptation and --teacher (distillation) cannot be combined; drop one.")
        check_adaptation(adaptation_args, task.problem_type, training_args.metric_for_best_model)
        target = load_target_datasets(adaptation_args, data_args, task, seed=training_args.seed)
    # --- end domain adaptation ---

    check_label_smoothing(training_args, task.problem_type)
    class_weights = None
    # Methods that bring their own loss: refused together rather than one silently dropping the other
    own_losses = {
        "--teacher": bool(model_args.teacher),
        "--mixup / --cutmix": model_args.mixup_active,
        "--adaptation": bool(adaptation_args.adaptation),
        "--class_weights": bool(model_args.class_weights),
    }
    if sum(own_losses.values()) > 1:
        raise ValueError(
            f"{' and '.join(k for k, v in own_losses.items() if v)} each bring their own loss; use one of them."
        )
    if model_args.class_weights and training_args.do_train:
        class_weights = resolve_class_weights(model_args.class_weights, raw_datasets["train"][task.label_column], task)
        logger.warning(
            f"Class weights ({model_args.class_weights}): {dict(zip(task.label_list, class_weights.tolist()))}"
        )

    # 2. Model: a trained classifier with its head (--model_name_or_path), or a new one from backbones (transfer)
    if model_args.model_name_or_path:
        check_trained_model_flags(model_args)
        model, backbones, processors, processor = load_trained_model(model_args.model_name_or_path, task)
        logger.warning(
            f"Model: the trained classifier {model_args.model_name_or_path} WITH its head ("
            + ("training it further" if training_args.do_train else "evaluating / predicting only")
            + "; no new head, no transfer)."
        )
    else:
        model, processors, processor = build_transfer_model(model_args, task)
        backbones = model.config.backbones
        logger.warning(f"Model: transfer from backbone(s) {', '.join(model_args.backbone)} with a new head.")
    is_transfer_model = getattr(model.config, "model_type", None) == "hf_transfer"
    if not is_transfer_model:
        check_plain_classifier_flags(model_args, model)
    if push_requested and not is_transfer_model:
        raise ValueError(
            f"--push_to_hub publishes hf_transfer models; {model_args.model_name_or_path} is a "
            f"{type(model).__name__}. Save it with --output_dir and push it with huggingface_hub."
        )
    if push_requested and model_args.hub_timm_model_id:
        from hf_transfer.hub import check_timm_exportable

        check_timm_exportable(model)  # before training, not after
    # --- LoRA, L2-SP / BSS, EMA (hf_transfer.lora, hf_transfer.regularization): before the Trainer wraps the model
    if peft_args.peft == "lora":
        if model_args.gradual_unfreezing:
            raise ValueError("--peft lora keeps the backbones' weights fixed; --gradual_unfreezing would train them.")
        apply_lora(model, peft_args)  # logs the trainable fraction
    if regularization_args.co_tuning_weight > 0 and (adaptation_args.adaptation or model_args.mixup_active):
        raise ValueError(
            "--co_tuning_weight reads each training row's class; --adaptation (unlabelled target rows) and --mixup / "
            "--cutmix (mixed labels) do not give it one. Use one or the other."
        )
    regularizers, regularization_callbacks = build_regularization(
        model,
        regularization_args,
        random_init=model_args.random_init,
        backbones=None if model_args.model_name_or_path else backbone_specs(model_args),
    )
    # --- end LoRA / regularization
    # --mixup / --cutmix: checked against the model and task before any data work (hf_transfer.mixup)
    mixup = build_mixup(
        model_args,
        model.config,
        label_smoothing=training_args.label_smoothing_factor,
        cache_features=model_args.cache_features,
        distillation=bool(model_args.teacher),
    )
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    logger.info(f"Model: {len(backbones)} backbone(s), {trainable:,} trainable parameters")

    # 3. Preprocessing: each backbone's own (image transforms / tokenizer); labels are checked against the model here
    train_dataset, eval_datasets, data_collator = prepare_datasets(
        raw_datasets, task, backbones, processors, data_args, training_args
    )
    # --do_predict: the test split(s), checked before training (run_glue.py's flag and files)
    predict_datasets = (
        prepare_predict_datasets(raw_datasets, task, backbones, processors, data_args)
        if training_args.do_predict
        else {}
    )
    # --- issue 12: negative-transfer guard, before any training ---
    if model_args.check_transferability and training_args.do_train and not model_args.random_init:
        from hf_transfer.transferability import check_transferability

        with training_args.main_process_first(desc="transferability check"):
            check_transferability(
                model, train_dataset, data_collator, mode=model_args.check_transferability, seed=training_args.seed
            )
    # --- end issue 12 ---
    if target is not None:  # --- domain adaptation (issue 11): the target prepared as the source ---
        target = prepare_target_datasets(target, backbones, processors, data_args, training_args.seed)

    # Co-Tuning's p(y_s | y_t): one pass over the training rows before training (hf_transfer.regularization)
    for regularizer in regularizers:
        if isinstance(regularizer, CoTuningRegularizer) and training_args.do_train:
            regularizer.learn_relationship(
                model,
                train_dataset,
                data_collator,
                batch_size=training_args.per_device_eval_batch_size,
                device=training_args.device,
                seed=training_args.seed,
            )

    # 4. Frozen backbones: features once, cached on disk, instead of every epoch
    augmented = task.image_column is not None and not data_args.no_augmentation
    if is_transfer_model:
        cache, why = cache_decision(model, augmentation=augmented, requested=model_args.cache_features)
    elif model_args.cache_features:
        raise ValueError("--cache_features applies to hf_transfer models; drop it for this classifier.")
    else:
        cache, why = False, "off: not an hf_transfer model"
    if cache and (model_args.gradual_unfreezing or model_args.teacher):
        cache, why = False, "off: gradual unfreezing / distillation needs the raw inputs"
    if cache and mixup is not None:
        cache, why = False, "off: --mixup / --cutmix mix the pixels before the backbone"
    logger.warning(f"Cached backbone features: {why}")
    if cache:
        model.to(training_args.device)
        autocast = torch.bfloat16 if training_args.bf16 else None
        with training_args.main_process_first(desc="caching backbone features"):
            cached = {
                split: cache_backbone_features(
                    model,
                    dataset,
                    data_collator,
                    batch_size=training_args.per_device_eval_batch_size,
                    preprocessing=preprocessing_key(data_args, autocast),
                    autocast_dtype=autocast,
                    desc=f"Caching backbone features ({split})",
                )
                for split, dataset in {
                    "train": train_dataset,
                    **eval_datasets,
                    **predict_datasets,
                    **target_splits(target),
                }.items()
                if dataset is not None
            }
        if target is not None:  # --- domain adaptation (issue 11) ---
            target = target._replace(**{k: cached.get(f"target_{k}") for k in ("train", "score", "eval")})
        train_dataset = cached.get("train")
        eval_datasets = {split: cached[split] for split in eval_datasets}
        predict_datasets = {split: cached[split] for split in predict_datasets}
        data_collator = collate_cached
        if training_args.train_sampling_strategy == "group_by_length":  # features have no length to group by
            training_args.train_sampling_strategy = "random"

    if model_args.channels_last and not cache:  # with cached features no backbone runs while training
        model.to(memory_format=torch.channels_last)
        data_collator.channels_last = True

    # 5. Train and evaluate
    callbacks = [AugmentationEpochCallback(train_dataset)] if training_args.do_train else []
    trainer_class, trainer_kwargs = TransferTrainer, {"regularizers": regularizers}  # L2-SP / BSS / Co-Tuning terms
    callbacks += regularization_callbacks  # EMA
    if mixup is not None:
        trainer_class = MixupTrainer
        trainer_kwargs.update(mixup=mixup, mixup_off_epoch=model_args.mixup_off_epoch)
    if model_args.gradual_unfreezing:
        callbacks.append(
            GradualUnfreezingCallback(
                frozen_for=model_args.unfreeze_after,
                interval=model_args.unfreeze_every,
                groups_per_stage=model_args.unfreeze_groups_per_stage,
                unit=model_args.unfreeze_unit,
            )
        )
    if model_args.early_stopping_patience is not None:
        callbacks.append(
            EarlyStoppingCallback(model_args.early_stopping_patience, model_args.early_stopping_threshold)
        )
    if class_weights is not None:  # the loss only: never in the model's config, which must reload as any other
        trainer_kwargs["compute_loss_func"] = WeightedCrossEntropy(class_weights, training_args.label_smoothing_factor)
    if model_args.teacher:
        trainer_class = DistillationTrainer
        teacher = load_teacher(model_args.teacher, model.config)
        trainer_kwargs["distiller"] = Distiller(
            teacher, alpha=model_args.distill_alpha, temperature=model_args.distill_temperature
        )
    if target is not None:  # --- domain adaptation (issue 11): L_s + λ·L_d, the adapter kept out of the model ---
        trainer_class = AdaptationTrainer
        trainer_kwargs.update(
            adapter=DomainAdapter(adaptation_args.adaptation, head_input_dim(model), task.num_labels, adaptation_args),
            target_dataset=target.train,
            target_score_dataset=target.score,
            target_eval_dataset=target.eval,
            snd_temperature=adaptation_args.snd_temperature,
        )
    if model_args.hp_search:
        trainer_class = searchable(trainer_class)
    trainer = trainer_class(
        model=model,
        args=training_args,
        train_dataset=train_dataset if training_args.do_train else None,
        eval_dataset=eval_datasets[task.eval_splits[0]] if training_args.do_eval else None,
        data_collator=data_collator,
        compute_metrics=build_compute_metrics(
            task.task_name, problem_type=task.problem_type, num_labels=task.num_labels
        ),
        processing_class=processor,  # the one processor: saved with the model and every checkpoint
        callbacks=callbacks,
        layer_decay=model_args.layer_decay,
        head_lr_multiplier=model_args.head_lr_multiplier,
        freeze_bn_stats=model_args.freeze_bn_stats,
        **trainer_kwargs,
    )

    results = {}
    if model_args.hp_search:  # the trials, then the best trial's hyperparameters on `trainer` (hf_transfer.hpo)
        backbones = model.get_base_model().backbones
        trainable_backbone = any(p.requires_grad for b in backbones for p in b.parameters())
        run_search(trainer, model, model_args, backbone_trainable=trainable_backbone or model_args.gradual_unfreezing)
    if training_args.do_train:
        checkpoint = training_args.resume_from_checkpoint or last_checkpoint
        train_result = trainer.train(resume_from_checkpoint=checkpoint)
        # --- LoRA: the saved (and pushed) model has the adapters merged into plain weights (loads without peft)
        if peft_args.peft == "lora":
            if peft_args.save_adapter and trainer.is_world_process_zero():
                save_adapter(model, os.path.join(training_args.output_dir, "adapter"))
            merge_lora(model)
        # --- end LoRA
        trainer.save_model()
        metrics = dict(train_result.metrics, train_samples=len(train_dataset))
        trainer.log_metrics("train", metrics)
        trainer.save_metrics("train", metrics)
        trainer.save_state()
        results.update(metrics)
    if trainer.is_world_process_zero():
        processor.save_pretrained(training_args.output_dir)

    predictions = None  # of the main eval split, for the card's confusion matrix
    if training_args.do_eval:
        eval_metrics = {}
        for split in task.eval_splits:  # MNLI: matched, then mismatched (keys eval_mismatched_*), as run_glue.py
            prefix = task.metric_prefix(split)
            # `predict` scores the split as `evaluate` does and keeps the predictions: one pass, on every rank
            output = trainer.predict(eval_datasets[split], metric_key_prefix=prefix)
            trainer.log(output.metrics)
            predictions = predictions or output
            metrics = dict(output.metrics, **{f"{prefix}_samples": len(eval_datasets[split])})
            trainer.log_metrics(prefix, metrics)
            eval_metrics.update(metrics)
        trainer.save_metrics("eval", eval_metrics)
        results.update(eval_metrics)

    if training_args.do_predict:
        results.update(predict_and_write(trainer, predict_datasets, task, training_args.output_dir))

    # 6. Publish: the model, its processors and a card with this run's numbers
    if push_requested and trainer.is_world_process_zero():
        from hf_transfer.hub import publish, training_hyperparameters

        hyperparameters = training_hyperparameters(training_args)
        hyperparameters.update(card_hyperparameters(model_args, data_args, task, len(model.config.backbones)))
        publish(
            trainer,
            task,
            repo_id=training_args.hub_model_id,
            token=hub_token,
            metrics=results,
            predictions=predictions,
            hyperparameters=hyperparameters,
            timm_repo_id=model_args.hub_timm_model_id,
            recipe=recipe,
            # domain adaptation (issue 11): the card names the method, λ, source and target data and target results
            adaptation=describe_adaptation(adaptation_args, target) if target is not None else None,
        )

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()  # a CPU DDP run that skips this can abort one rank at exit
    return results


if __name__ == "__main__":
    main()
