# Copyright 2026 The hf_transfer authors. Licensed under the Apache License, Version 2.0.
"""LoRA (PEFT's) on the backbones of an hf_transfer model; the head and the fusion train in full.

PEFT's adapters are injected into each backbone's own model (`peft.inject_adapter_in_model`), not around the whole
classifier: the Trainer then sees the hf_transfer model unchanged (its forward signature, `labels`, `eval_loss`),
which a `PeftModel` around it would hide (transformers #33420). Only the adapters train inside a backbone.

Default targets per backbone family (`default_target_modules`):

- transformers text and vision encoders: the linear layers of the attention blocks (query / key / value / output);
- timm models: every linear layer (a ViT's `qkv`, `proj`, `fc1`, `fc2`) and the pointwise convolutions (1×1,
  ungrouped; depthwise ones stay as they are, e.g. EfficientNet's `conv_pw`, `conv_pwl`, `conv_head`, SE convs).

Before saving, `merge_lora` folds the adapters into the weights, so the saved (or pushed) model has plain weights and
loads with the Auto classes and `pipeline()` without peft. `save_adapter` also writes the adapter in PEFT's format
(`adapter_config.json` + `adapter_model.safetensors`, head and fusion as `modules_to_save`) for `PeftModel` users.

Example:
    ```python
    >>> from hf_transfer.lora import PeftArguments, apply_lora, merge_lora
    >>> summary = apply_lora(model, PeftArguments(peft="lora", lora_r=8))
    >>> print(summary)  # trainable fraction
    >>> trainer.train()
    >>> merge_lora(model)
    >>> trainer.save_model()
    ```
"""

import logging
import os
from dataclasses import dataclass, field

import torch
from torch import nn

logger = logging.getLogger(__name__)

PEFT_METHODS = ("none", "lora")
ADAPTER_NAME = "default"
_ATTENTION_WORDS = ("attention", "attn")


@dataclass
class PeftArguments:
    """Flags of parameter-efficient fine-tuning (`recipes/finetune.py`), named as PEFT's `LoraConfig`."""

    peft: str = field(default="none", metadata={"help": "Parameter-efficient fine-tuning: none or lora."})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank."})
    lora_alpha: float = field(default=16, metadata={"help": "LoRA scaling alpha (the update is scaled by alpha/r)."})
    lora_dropout: float = field(default=0.0, metadata={"help": "Dropout on the LoRA branch's input."})
    lora_target_modules: list[str] | None = field(
        default=None,
        metadata={
            "help": "Module names to adapt (PEFT's target_modules: a name matches a module whose name ends with it), "
            "for every backbone. Default: per family (attention projections; timm ViT qkv/proj/fc1/fc2; "
            "pointwise convs of timm CNNs).",
            "nargs": "+",
        },
    )
    save_adapter: bool = field(
        default=False,
        metadata={"help": "Also save the LoRA adapter (PEFT format) to OUTPUT_DIR/adapter, for PeftModel users."},
    )

    def __post_init__(self):
        if self.peft not in PEFT_METHODS:
            raise ValueError(f"Unknown --peft {self.peft!r}; valid values are: {', '.join(PEFT_METHODS)}.")
        if self.lora_r < 1:
            raise ValueError(f"--lora_r must be >= 1, got {self.lora_r}.")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"--lora_dropout must be in [0, 1), got {self.lora_dropout}.")


@dataclass
class LoraSummary:
    """What `apply_lora` adapted and what trains."""

    targets: list[list[str]]  # per backbone: the adapted module names (inside `backbone.model`)
    adapter_parameters: int
    backbone_parameters: int  # the backbones' own weights (without adapters)
    trainable_parameters: int  # adapters + head + fusion
    total_parameters: int

    @property
    def backbone_fraction(self) -> float:
        """Adapter parameters / backbone parameters."""
        return self.adapter_parameters / max(self.backbone_parameters, 1)

    def __str__(self) -> str:
        return (
            f"LoRA on {sum(map(len, self.targets))} modules: {self.adapter_parameters:,} adapter parameters "
            f"({100 * self.backbone_fraction:.2f}% of the backbones' {self.backbone_parameters:,}); trainable "
            f"{self.trainable_parameters:,} of {self.total_parameters:,} "
            f"({100 * self.trainable_parameters / max(self.total_parameters, 1):.2f}%, head and fusion included)"
        )


def _is_pointwise(module: nn.Module) -> bool:
    return isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1) and module.groups == 1


def _adaptable(model: nn.Module) -> dict[str, nn.Module]:
    """The modules of `model` LoRA can adapt: linear layers and ungrouped 1×1 convolutions."""
    return {n: m for n, m in model.named_modules() if n and (isinstance(m, nn.Linear) or _is_pointwise(m))}


def default_target_modules(backbone: nn.Module) -> list[str]:
    """The default LoRA targets of one hf_transfer backbone (full module names inside `backbone.model`).

    Args:
        backbone: A `TimmBackbone` or `TransformersBackbone`.

    Returns:
        Module names: a transformers encoder's attention projections; a timm model's linear layers and pointwise
        (1×1, ungrouped) convolutions.

    Raises:
        ValueError: If the backbone has no such module (pass `--lora_target_modules`).
    """
    from .modeling_transfer import TimmBackbone

    modules = _adaptable(backbone.model)
    if isinstance(backbone, TimmBackbone):
        names = list(modules)
    else:
        names = [
            n for n, m in modules.items() if isinstance(m, nn.Linear) and any(w in n.lower() for w in _ATTENTION_WORDS)
        ]
    if not names:
        raise ValueError(
            f"No default LoRA targets in {type(backbone.model).__name__}; pass --lora_target_modules with some of: "
            f"{', '.join(_module_kinds(backbone.model))}."
        )
    return names


def _module_kinds(model: nn.Module) -> list[str]:
    """The distinct last name components of the adaptable modules (what `--lora_target_modules` can name)."""
    return sorted({name.rsplit(".", 1)[-1] for name in _adaptable(model)})


def _lora_config(args: PeftArguments, targets: list[str], modules_to_save: list[str] | None = None):
    from peft import LoraConfig

    return LoraConfig(
        r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        target_modules=targets,
        modules_to_save=modules_to_save,
        bias="none",
    )


def _matches(target_modules: list[str], name: str) -> bool:
    """PEFT's list semantics: a module matches a target equal to its name or to a suffix after a dot."""
    return any(name == t or name.endswith("." + t) for t in target_modules)


def _transfer(model: nn.Module):
    transfer = getattr(model, "transfer", model)
    if not hasattr(transfer, "backbones"):
        raise TypeError(f"LoRA here needs an hf_transfer model, got {type(model).__name__}.")
    return transfer


def resolve_targets(model: nn.Module, target_modules: list[str] | None = None) -> list[list[str]]:
    """The modules LoRA adapts in each backbone, checked before anything is changed.

    Args:
        model: An hf_transfer model.
        target_modules: Names (PEFT's suffix matching) for every backbone, or None for each family's defaults.

    Returns:
        Per backbone, the full names of the matched modules inside `backbone.model`.

    Raises:
        ValueError: If the targets match no adaptable module of a backbone (naming the ones that exist).
    """
    transfer = _transfer(model)
    resolved = []
    for index, backbone in enumerate(transfer.backbones):
        if target_modules is None:
            resolved.append(default_target_modules(backbone))
            continue
        names = [n for n in _adaptable(backbone.model) if _matches(target_modules, n)]
        if not names:
            raise ValueError(
                f"--lora_target_modules {target_modules} match no linear layer or pointwise convolution of backbone "
                f"{index} ({transfer.config.backbones[index]['source']}). Its modules are named: "
                f"{', '.join(_module_kinds(backbone.model))}."
            )
        resolved.append(names)
    return resolved


def apply_lora(model: nn.Module, args: PeftArguments) -> LoraSummary:
    """Injects LoRA adapters into every backbone of `model` (in place); only they, the head and the fusion train.

    Call it before the Trainer is built (before DDP wraps the model) and before resuming (checkpoints hold the
    adapters). Gradient checkpointing works: transformers backbones get `enable_input_require_grads()`, so that
    reentrant checkpointing sees inputs that require gradients although the embeddings are frozen.

    Args:
        model: An hf_transfer classifier or `TransferModel`, backbones not frozen.
        args: The LoRA options (`args.peft` must be "lora").

    Returns:
        A `LoraSummary` (also logged): adapted modules and the trainable fraction.

    Raises:
        ValueError: If a backbone is frozen (nothing to adapt: use a linear probe) or the targets match nothing.
    """
    from peft import inject_adapter_in_model

    from .modeling_transfer import TransformersBackbone

    if args.peft != "lora":
        raise ValueError(f"apply_lora needs peft='lora', got {args.peft!r}.")
    transfer = _transfer(model)
    config = transfer.config
    for index in range(len(transfer.backbones)):
        freeze = config.backbone_freeze(index)
        if freeze != "none":
            raise ValueError(
                f"LoRA on backbone {index} ({config.backbones[index]['source']}), which is frozen (freeze={freeze!r}): "
                "LoRA already keeps the backbone's weights fixed and trains low-rank updates of them. Use "
                "--freeze none with --peft lora, or --freeze backbone without it (a linear probe)."
            )
    targets = resolve_targets(model, args.lora_target_modules)
    backbone_parameters = sum(p.numel() for b in transfer.backbones for p in b.parameters())
    for backbone, names in zip(transfer.backbones, targets):
        inject_adapter_in_model(_lora_config(args, names), backbone.model, adapter_name=ADAPTER_NAME)
        if hasattr(backbone.model, "peft_config"):  # PEFT leaves its config on the model; ours is in `model`
            del backbone.model.peft_config
        for name, parameter in backbone.named_parameters():
            parameter.requires_grad_("lora_" in name)
        if isinstance(backbone, TransformersBackbone) and hasattr(backbone.model, "enable_input_require_grads"):
            backbone.model.enable_input_require_grads()
    adapter = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
    summary = LoraSummary(
        targets=targets,
        adapter_parameters=adapter,
        backbone_parameters=backbone_parameters,
        trainable_parameters=sum(p.numel() for p in model.parameters() if p.requires_grad),
        total_parameters=sum(p.numel() for p in model.parameters()),
    )
    model._hf_transfer_lora = (args, targets)  # for `save_adapter`
    logger.warning(str(summary))
    return summary


def has_lora(model: nn.Module) -> bool:
    """Whether `model` holds unmerged PEFT adapter layers."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    return any(isinstance(m, BaseTunerLayer) for m in model.modules())


@torch.no_grad()
def merge_lora(model: nn.Module) -> nn.Module:
    """Folds every LoRA adapter into its base layer and puts the plain layer back (in place).

    Afterwards the model has exactly the parameters (names and shapes) of the model before `apply_lora`: it saves
    and loads without peft. Call it after training, before `save_model()` / `push_to_hub`.

    Args:
        model: A model `apply_lora` adapted (possibly DDP-wrapped).

    Returns:
        The same model, merged.
    """
    from accelerate.utils import extract_model_from_parallel
    from peft.tuners.tuners_utils import BaseTunerLayer

    model = extract_model_from_parallel(model)
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, BaseTunerLayer)]
    for name, layer in layers:
        layer.merge(safe_merge=True)
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        base = layer.get_base_layer()
        base.weight.requires_grad_(False)
        setattr(parent, child, base)
    # The backbones' weights were fixed while the adapters trained; after merging they are the model's weights
    # again, trainable as `config.freeze` says.
    if hasattr(model, "apply_freezing"):
        model.apply_freezing()
    return model


def save_adapter(model: nn.Module, save_directory: str | os.PathLike) -> None:
    """Saves the adapters (and the head and fusion, as `modules_to_save`) in PEFT's format.

    `PeftModel.from_pretrained(base, save_directory)` then rebuilds the fine-tuned model on `base`, the hf_transfer
    model with the pretrained backbones (same config). Call it before `merge_lora`.

    Args:
        model: A model `apply_lora` adapted, not yet merged.
        save_directory: Where `adapter_config.json` and `adapter_model.safetensors` go.

    Raises:
        ValueError: If the model has no (unmerged) adapters.
    """
    from accelerate.utils import extract_model_from_parallel
    from safetensors.torch import save_file

    model = extract_model_from_parallel(model)
    if not hasattr(model, "_hf_transfer_lora") or not has_lora(model):
        raise ValueError("save_adapter needs a model adapted by apply_lora and not merged yet.")
    args, targets = model._hf_transfer_lora
    transfer = _transfer(model)
    prefix = "" if transfer is model else "transfer."
    full_targets = [f"{prefix}backbones.{i}.model.{name}" for i, names in enumerate(targets) for name in names]
    modules_to_save = [n for n in ("head", f"{prefix}fusion") if _has_params(model, n)]
    config = _lora_config(args, full_targets, modules_to_save or None)
    os.makedirs(save_directory, exist_ok=True)
    config.save_pretrained(save_directory)
    weights = {}
    for name, parameter in model.named_parameters():
        if "lora_" in name:
            weights["base_model.model." + name.replace(f".{ADAPTER_NAME}.", ".")] = parameter
        elif any(name.startswith(m + ".") for m in modules_to_save):
            weights["base_model.model." + name] = parameter
    save_file(
        {k: v.detach().contiguous().cpu() for k, v in weights.items()},
        os.path.join(save_directory, "adapter_model.safetensors"),
    )


def _has_params(model: nn.Module, name: str) -> bool:
    try:
        return any(True for _ in model.get_submodule(name).parameters())
    except AttributeError:
        return False


__all__ = [
    "LoraSummary",
    "PeftArguments",
    "apply_lora",
    "default_target_modules",
    "has_lora",
    "merge_lora",
    "resolve_targets",
    "save_adapter",
]
