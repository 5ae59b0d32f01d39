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
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import torch
import torch.nn.functional as F
import transformers
import yaml
from transformers import (
    AutoModelForImageClassification,
    AutoModelForSequenceClassification,
    HfArgumentParser,
    TrainingArguments,
    set_seed,
)
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

import hf_transfer
from hf_transfer import BackboneSpec, TransferForImageClassification, TransferForSequenceClassification
from hf_transfer.data import (
    AugmentationEpochCallback,
    DataTrainingArguments,
    load_raw_datasets,
    prepare_datasets,
)
from hf_transfer.features import cache_backbone_features, cache_decision, collate_cached
from hf_transfer.hpo import HyperparameterSearchArguments, check_search_args, run_search, searchable
from hf_transfer.metrics import build_compute_metrics
from hf_transfer.mixup import MixupArguments, MixupTrainer, build_mixup
from hf_transfer.prediction import predict_and_write, prepare_predict_datasets
from hf_transfer.processing import build_processor, load_processors
from hf_transfer.training import (
    TEACHER_PREFIX,
    DistillationTrainer,
    Distiller,
    GradualUnfreezingCallback,
    TransferTrainer,
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
    ignore_mismatched_sizes: bool = field(
        default=True, metadata={"help": "Accepted for compatibility with the example scripts (heads are rebuilt)."}
    )

    def __post_init__(self):
        if self.head == "mlp" and not self.head_hidden_sizes:
            self.head_hidden_sizes = list(DEFAULT_MLP_HIDDEN_SIZES)


def parse_args(argv: list[str] | None = None) -> tuple[ModelArguments, DataTrainingArguments, TrainingArguments]:
    """Parses `[RECIPE.yaml] [--flag value ...]`: the recipe gives defaults, the command line overrides them."""
    parser = HfArgumentParser((ModelArguments, DataTrainingArguments, TrainingArguments))
    argv = list(sys.argv[1:] if argv is None else argv)
    if not torch.cuda.is_available():
        # No GPU: train on CPU, and with several processes as CPU DDP over gloo. Without `use_cpu`, `accelerate
        # launch --multi_gpu` on a machine with no GPU would silently train every rank alone on all the data.
        parser.set_defaults(use_cpu=True)
    # Every trainable parameter of an hf_transfer model takes part in the loss (frozen ones are not registered with
    # DDP, unused poolers are dropped), so DDP can skip its extra unused-parameter pass.
    parser.set_defaults(ddp_find_unused_parameters=False)
    if argv and argv[0].endswith((".yaml", ".yml", ".json")):
        recipe = yaml.safe_load(Path(argv.pop(0)).read_text()) or {}
        recipe.pop("expected_results", None)  # documentation: what the recipe reached, see README
        known = {action.dest for action in parser._actions}
        unknown = sorted(set(recipe) - known)
        if unknown:
            raise ValueError(f"Unknown keys in the recipe: {unknown}. Valid keys are the flags of --help.")
        parser.set_defaults(**recipe)
    model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=argv)
    if not model_args.backbone:
        parser.error("--backbone is required (in the recipe or on the command line).")
    return model_args, data_args, training_args


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


def set_image_size(config, size: int) -> None:
    """Gives every image backbone `size`-px inputs (stored in the config, so saved processors follow)."""
    for spec in config.backbones:
        if spec["modality"] == "image":
            spec["data_config"]["input_size"] = [3, size, size]


def load_teacher(name: str, student_config):
    """Loads the distillation teacher (a classifier reading the student's inputs, see `TeacherPixels`)."""
    auto_class = (
        AutoModelForImageClassification if student_config.modality == "image" else AutoModelForSequenceClassification
    )
    return auto_class.from_pretrained(name)


class TeacherPixels:
    """Gives an image teacher whose preprocessing differs from the student's its own `teacher_pixel_values*` inputs,
    as timm's distillation does: the student's (augmented) pixels, its normalization undone, resized to the teacher's
    input size and normalized with the teacher's mean and std. A fused ResNet-18 + VGG16 teacher, for one, reads
    `pixel_values_1` (VGG16's crop and interpolation), which a ResNet-18 student's batch lacks.

    Args:
        collator: The student's data collator.
        student: The data config of the student's `pixel_values`.
        targets: `teacher_pixel_values{suffix}` → the data config of that teacher input.
    """

    def __init__(self, collator, student: dict, targets: dict[str, dict]):
        self.collator = collator
        self.mean, self.std = (torch.tensor(student[k]).view(1, -1, 1, 1) for k in ("mean", "std"))
        self.targets = targets

    @classmethod
    def wrap(cls, collator, student_config, teacher_config):
        """Returns `collator`, wrapped when the teacher reads images preprocessed unlike the student's.

        Args:
            collator: The student's data collator.
            student_config: The student's config (an hf_transfer model's).
            teacher_config: The teacher's config (an hf_transfer model's, or any other: not wrapped).
        """
        student = next((s["data_config"] for s in student_config.backbones if s["modality"] == "image"), None)
        targets = {
            f"{TEACHER_PREFIX}pixel_values{spec['input_suffix']}": spec["data_config"]
            for spec in getattr(teacher_config, "backbones", None) or []
            if student and spec["modality"] == "image" and spec["data_config"] != student
        }
        return cls(collator, student, targets) if targets else collator

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        batch = self.collator(rows)
        pixels = batch["pixel_values"] * self.std + self.mean
        for key, config in self.targets.items():
            size, resized = list(config["input_size"][-2:]), pixels
            if list(pixels.shape[-2:]) != size:
                mode = "bicubic" if config.get("interpolation") == "bicubic" else "bilinear"
                resized = F.interpolate(pixels, size, mode=mode, antialias=True)
            mean, std = (torch.tensor(config[k]).view(1, -1, 1, 1) for k in ("mean", "std"))
            batch[key] = (resized - mean) / std
        return batch


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


def main(argv: list[str] | None = None) -> dict:
    model_args, data_args, training_args = parse_args(argv)
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

    # 2. Model
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
    )
    if model_args.image_size:
        set_image_size(model.config, model_args.image_size)
    if model_args.channels_last and not any(spec["modality"] == "image" for spec in model.config.backbones):
        raise ValueError(
            "--channels_last applies to image backbones; this model's backbones ("
            + ", ".join(spec["source"] for spec in model.config.backbones)
            + ") are all text. Drop the flag."
        )
    if push_requested and model_args.hub_timm_model_id:
        from hf_transfer.hub import check_timm_exportable

        check_timm_exportable(model)  # before training, not after
    # --mixup / --cutmix: checked against the model and task before any data work (hf_transfer.mixup)
    mixup = build_mixup(
        model_args,
        model.config,
        label_smoothing=training_args.label_smoothing_factor,
        cache_features=model_args.cache_features,
        distillation=bool(model_args.teacher),
    )
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    logger.info(f"Model: {len(model.config.backbones)} backbone(s), {trainable:,} trainable parameters")

    # 3. Preprocessing: each backbone's own (image transforms / tokenizer); labels are checked against the model here
    processors = load_processors(model.config)
    processor = build_processor(model.config, processors)  # what inference needs: saved with the model
    train_dataset, eval_datasets, data_collator = prepare_datasets(
        raw_datasets, task, model.config.backbones, processors, data_args, training_args
    )
    # --do_predict: the test split(s), checked before training (run_glue.py's flag and files)
    predict_datasets = (
        prepare_predict_datasets(raw_datasets, task, model.config.backbones, processors, data_args)
        if training_args.do_predict
        else {}
    )
    # The prepared datasets hold exactly the model's inputs (pixel_values_1, input_ids_1... included), which the
    # Trainer's signature-based column removal would drop.
    training_args.remove_unused_columns = False

    # 4. Frozen backbones: features once, cached on disk, instead of every epoch
    augmented = task.image_column is not None and not data_args.no_augmentation
    cache, why = cache_decision(model, augmentation=augmented, requested=model_args.cache_features)
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
                    preprocessing=[data_args.max_seq_length, data_args.text_column_names, str(autocast)],
                    autocast_dtype=autocast,
                    desc=f"Caching backbone features ({split})",
                )
                for split, dataset in {"train": train_dataset, **eval_datasets, **predict_datasets}.items()
                if dataset is not None
            }
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
    trainer_class, trainer_kwargs = TransferTrainer, {}
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
    if model_args.teacher:
        trainer_class = DistillationTrainer
        teacher = load_teacher(model_args.teacher, model.config)
        trainer_kwargs["distiller"] = Distiller(
            teacher, alpha=model_args.distill_alpha, temperature=model_args.distill_temperature
        )
        data_collator = TeacherPixels.wrap(data_collator, model.config, teacher.config)
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
        trainer.save_model()
        metrics = dict(train_result.metrics, train_samples=len(train_dataset))
        trainer.log_metrics("train", metrics)
        trainer.save_metrics("train", metrics)
        trainer.save_state()
        results.update(metrics)
    if trainer.is_world_process_zero():
        processor.save_pretrained(training_args.output_dir)

    if training_args.do_eval:
        eval_metrics = {}
        for split in task.eval_splits:  # MNLI: matched, then mismatched (keys eval_mismatched_*), as run_glue.py
            prefix = task.metric_prefix(split)
            metrics = trainer.evaluate(eval_dataset=eval_datasets[split], metric_key_prefix=prefix)
            metrics[f"{prefix}_samples"] = len(eval_datasets[split])
            trainer.log_metrics(prefix, metrics)
            eval_metrics.update(metrics)
        trainer.save_metrics("eval", eval_metrics)
        results.update(eval_metrics)

    if training_args.do_predict:
        results.update(predict_and_write(trainer, predict_datasets, task, training_args.output_dir))

    if push_requested and trainer.is_world_process_zero():
        from hf_transfer.hub import publish

        publish(
            trainer,
            task,
            model_args,
            data_args,
            repo_id=training_args.hub_model_id,
            token=hub_token,
            timm_repo_id=model_args.hub_timm_model_id,
        )

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()  # a CPU DDP run that skips this can abort one rank at exit
    return results


if __name__ == "__main__":
    main()
