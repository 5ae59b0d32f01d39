# Copyright 2026 The hf_transfer authors. Licensed under the Apache License, Version 2.0.
"""The plain-timm export: one timm backbone with a linear head, in timm's own Hub format."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PreTrainedModel


from ..inputs import BackboneEntry
from .card import _labels

__all__ = [
    "check_timm_exportable",
    "export_timm",
]


def export_timm(model: PreTrainedModel, output_dir: str | os.PathLike) -> Path:
    """Writes a one-timm-backbone, linear-head model in timm's own Hub format.

    The folder holds `config.json` (`architecture`, `num_classes`, `num_features`, `global_pool`, `label_names`,
    `model_args`, `pretrained_cfg` with the preprocessing and `label_names`) and `model.safetensors` with timm's
    state-dict keys: the backbone's own, plus our linear head under the name of the architecture's classifier (`fc`,
    `head`, `classifier`, ...). Pushed to the Hub, it loads with `timm.create_model("hf-hub:<repo>",
    pretrained=True)` and with stock transformers (`AutoModelForImageClassification`, which picks
    `TimmWrapperForImageClassification`), with no hf_transfer and no remote code. The export is checked to give the
    model's own logits before anything is written.

    Args:
        model: A `TransferForImageClassification` with exactly one timm backbone and a linear head (no fusion, no
            MLP).
        output_dir: The folder to write (created if needed).

    Returns:
        `output_dir`, as a `Path`.

    Raises:
        ValueError: The model does not map onto a plain timm model; the message says why.

    Example:
        ```python
        >>> export_timm(model, "outputs/resnet18-cifar10/timm_export")
        PosixPath('outputs/resnet18-cifar10/timm_export')
        >>> timm.create_model("local-dir:outputs/resnet18-cifar10/timm_export", pretrained=True)
        ```
    """
    from timm.models import save_for_hf

    spec = _timm_export_spec(model)
    timm_model = _timm_model_with_head(model, spec)
    _check_same_logits(model, timm_model, spec["data_config"]["input_size"])

    labels = _labels(model.config)
    folder = Path(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    model_config: dict[str, Any] = {
        "label_names": labels,
        # num_classes keeps timm from dropping label_names as belonging to the backbone's pretraining head.
        "pretrained_cfg": {"label_names": labels, "num_classes": len(labels)},
    }
    if getattr(model.config, "problem_type", None):
        model_config["problem_type"] = model.config.problem_type  # read by transformers' TimmWrapperConfig
    save_for_hf(timm_model, str(folder), model_config=model_config, safe_serialization=True)

    config_path = folder / "config.json"
    config = json.loads(config_path.read_text())
    # timm records num_classes in model_args too, but transformers' TimmWrapper passes num_classes itself and would
    # fail on the duplicate keyword; timm reads the top-level num_classes anyway.
    (config.get("model_args") or {}).pop("num_classes", None)
    # The pretrained tag names the weights the backbone started from, not these.
    config["pretrained_cfg"].pop("tag", None)
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    return folder


def check_timm_exportable(model: PreTrainedModel) -> None:
    """Raises the ValueError `export_timm` would raise, before any training: the model must be exactly one timm
    backbone with a linear head."""
    _timm_export_spec(model)


def _timm_export_spec(model: Any) -> BackboneEntry:
    """The single timm backbone's spec, or a ValueError that lists why the model is no plain timm model."""
    from torch import nn

    config = getattr(model, "config", None)
    specs = list(getattr(config, "backbones", None) or [])
    head = getattr(model, "head", None)
    if not specs or not isinstance(head, nn.Module):
        raise ValueError(
            f"Cannot export {type(model).__name__} as a timm model: only hf_transfer classification models "
            "(TransferForImageClassification) with one timm backbone and a linear head can be."
        )
    reasons = []
    if len(specs) > 1:
        sources = ", ".join(spec["source"] for spec in specs)
        reasons.append(f"it fuses {len(specs)} backbones ({sources}) and a timm model has one")
    elif specs[0]["library"] != "timm":
        reasons.append(f"its backbone {specs[0]['source']!r} is a {specs[0]['library']} model, not a timm one")
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    if getattr(config, "head", "linear") != "linear" or len(linears) != 1:
        reasons.append(
            f"its head is an MLP (hidden sizes {getattr(config, 'head_hidden_sizes', None)}) and a timm classifier "
            "is one linear layer"
        )
    if reasons:
        raise ValueError(
            f"Cannot export this model as a plain timm model: {'; '.join(reasons)}. Only one timm backbone with a "
            "linear head maps onto timm's format. Publish it without the timm export: it loads with hf_transfer "
            "installed, or anywhere with trust_remote_code=True."
        )
    return specs[0]


def _timm_model_with_head(model: Any, spec: BackboneEntry) -> Any:
    """A fresh timm model of the backbone's architecture with the backbone's weights and our head as classifier."""
    import timm
    from torch import nn

    timm_config = spec["config"]
    head = next(m for m in model.head.modules() if isinstance(m, nn.Linear))
    timm_model = timm.create_model(
        timm_config["architecture"],
        pretrained=False,
        num_classes=head.out_features,
        pretrained_cfg=dict(timm_config.get("pretrained_cfg") or {}) or None,
        **(timm_config.get("model_args") or {}),
    )
    classifier = timm_model.get_classifier()
    if not isinstance(classifier, nn.Linear) or classifier.weight.shape != head.weight.shape:
        raise ValueError(
            f"Cannot export this model as a plain timm model: the classifier of timm's {timm_config['architecture']} "
            f"is {type(classifier).__name__} {tuple(getattr(classifier, 'weight', ()).shape or ())}, not a linear "
            f"layer of shape {tuple(head.weight.shape)} like this model's head."
        )
    classifier_name = next(name for name, module in timm_model.named_modules() if module is classifier)
    backbone = model.get_base_model().backbones[0].model
    state_dict = dict(backbone.state_dict())
    state_dict[f"{classifier_name}.weight"] = head.weight.detach()
    state_dict[f"{classifier_name}.bias"] = head.bias.detach()
    timm_model.load_state_dict(state_dict, strict=True)  # every key of timm's own layout, nothing left over
    return timm_model.eval()


def _check_same_logits(model: Any, timm_model: Any, input_size: Sequence[int]) -> None:
    import torch

    parameter = next(model.parameters())
    pixels = torch.randn(2, *input_size, generator=torch.Generator().manual_seed(0))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            expected = model(pixel_values=pixels.to(parameter.device, parameter.dtype)).logits.float().cpu()
            exported = timm_model(pixels)
    finally:
        model.train(was_training)
    tolerance = 1e-4 if parameter.dtype == torch.float32 else 5e-2
    if not torch.allclose(exported, expected, rtol=tolerance, atol=tolerance):
        raise ValueError(
            f"The timm export of {timm_model.__class__.__name__} does not reproduce the model's logits (max "
            f"difference {(exported - expected).abs().max().item():.3g}): its pooling or head differs from timm's "
            "own forward_head. Publish it without the timm export."
        )
