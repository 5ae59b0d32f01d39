# Copyright 2026 The hf_transfer authors. Licensed under the Apache License, Version 2.0.
"""Cached features for frozen backbones.

When every backbone is frozen and the inputs are deterministic (no random augmentation), a backbone's output is the
same every epoch: compute it once, with `datasets.map` so that it is cached on disk under a fingerprint of the data,
the preprocessing and the backbone weights (the next run with the same backbone and data reuses it), and train only
fusion + head on the cached features. The model reads them as `backbone_features_{i}` inputs; it is still the whole
model (backbones included) that is trained, saved and pushed.
"""

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
import xxhash

from .data import to_channels_last
from .inputs import IMAGE_INPUT, cached_features_key

logger = logging.getLogger(__name__)


def cache_decision(model: torch.nn.Module, *, augmentation: bool, requested: bool | None) -> tuple[bool, str]:
    """Whether features can be cached for this run, and why (for the log line).

    Args:
        model: An hf_transfer model.
        augmentation: Whether the training inputs are randomly augmented.
        requested: `True`/`False` from `--cache_features`, or `None` for "when it is safe".

    Raises:
        ValueError: if caching is requested but unsafe (a trainable backbone, or random augmentation).
    """
    base = model.get_base_model()
    trainable = [
        spec["source"]
        for spec, backbone in zip(base.config.backbones, base.backbones)
        if any(p.requires_grad for p in backbone.parameters())
    ]
    if trainable:
        reason = f"backbone(s) {', '.join(trainable)} are trainable, so their features change every step"
        fix = "freeze them (--freeze backbone) or drop --cache_features"
    elif augmentation:
        reason = "training images are randomly augmented, so features differ every epoch"
        fix = "add --no_augmentation (train on the eval transform: resize + center crop) or drop --cache_features"
    else:
        reason = fix = ""
    if requested is False:
        return False, "off (--cache_features false)"
    if reason:
        if requested:
            raise ValueError(f"--cache_features true is unsafe here: {reason}. To cache features, {fix}.")
        return False, f"off: {reason}"
    return True, "on: every backbone is frozen and the inputs are deterministic (--cache_features false to turn off)"


def _fingerprint(model: torch.nn.Module, dataset: datasets.Dataset, preprocessing: Any) -> str:
    """A fingerprint of the data, the preprocessing and every backbone tensor."""
    digest = xxhash.xxh3_128()  # ~50x faster than sha256 over the weights; what `datasets` fingerprints with
    digest.update(str(dataset._fingerprint).encode())
    digest.update(json.dumps(preprocessing, sort_keys=True, default=str).encode())
    base = model.get_base_model()
    for spec, backbone in zip(base.config.backbones, base.backbones):
        digest.update(
            json.dumps({k: v for k, v in spec.items() if k != "freeze"}, sort_keys=True, default=str).encode()
        )
        for name, tensor in backbone.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


@torch.no_grad()
def preprocessing_key(data_args: Any, autocast_dtype: torch.dtype | None) -> list:
    """What shapes a recipe's inputs beyond the data and the backbones, for the cache fingerprint.

    `recipes/finetune.py` and `recipes/rank_backbones.py` both key their caches with it, so that a fine-tune of the
    backbone a ranking picked reuses the ranking's features.

    Args:
        data_args: The recipe's `DataTrainingArguments`.
        autocast_dtype: The dtype the feature pass autocasts to, or None.
    """
    return [data_args.max_seq_length, data_args.text_column_names, str(autocast_dtype)]


def cache_backbone_features(
    model: torch.nn.Module,
    dataset: datasets.Dataset,
    collate_fn: Callable[[list[dict]], dict[str, torch.Tensor]],
    *,
    batch_size: int = 64,
    preprocessing: Any = None,
    device: torch.device | str | None = None,
    autocast_dtype: torch.dtype | None = None,
    desc: str = "Caching backbone features",
) -> datasets.Dataset:
    """Runs every (frozen) backbone once over `dataset` and returns a dataset of their pooled features.

    Args:
        model: An hf_transfer model whose backbones are all frozen.
        dataset: A prepared `datasets.Dataset` split (model inputs per row, e.g. with an image transform attached),
            with `labels`.
        collate_fn: Batches rows into model inputs (the run's data collator).
        batch_size: Rows per forward pass.
        preprocessing: Anything else that shapes the inputs (data configs, max_seq_length...), for the fingerprint.
        device: Where to run the backbones (defaults to the model's device).
        autocast_dtype: Run the backbones under autocast with this dtype (e.g. `torch.bfloat16`).
        desc: Progress bar label.

    Returns:
        `CachedFeatures` (a map-style dataset) with `backbone_features_{i}` (float32 vectors) and `labels`, cached on
        disk by `datasets` under a fingerprint of the data, the preprocessing and the backbone weights.
    """
    base = model.get_base_model()
    was_training = model.training
    model.eval()
    device = torch.device(device) if device is not None else next(model.parameters()).device
    dims = [spec["feature_dim"] for spec in base.config.backbones]
    columns = {cached_features_key(i): datasets.List(datasets.Value("float32"), length=d) for i, d in enumerate(dims)}
    label_feature = dataset.features.get("labels") if dataset.features else None
    features = datasets.Features({**columns, **({"labels": label_feature} if label_feature is not None else {})})

    def extract(indices: list[int]) -> dict[str, Any]:
        # one batched fetch (the transform runs once per batch, as in a DataLoader), not one per row
        rows = (
            dataset.__getitems__(list(indices)) if hasattr(dataset, "__getitems__") else [dataset[i] for i in indices]
        )
        labels = [row.pop("labels") for row in rows] if "labels" in rows[0] else None
        inputs = {
            k: to_channels_last(v.to(device))
            for k, v in collate_fn(rows).items()
            if isinstance(v, torch.Tensor) and k != "labels"
        }
        out = {}
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            for index, runner in enumerate(runners):
                selected = base.backbone_inputs(index, inputs)
                out[cached_features_key(index)] = runner(selected).float().cpu().numpy()
        if labels is not None:
            out["labels"] = [label.tolist() if isinstance(label, torch.Tensor) else label for label in labels]
        return out

    fingerprint = _fingerprint(model, dataset, preprocessing)
    cache_dir = Path(datasets.config.HF_DATASETS_CACHE) / "hf_transfer_features"
    cache_dir.mkdir(parents=True, exist_ok=True)
    cache_file = cache_dir / f"{fingerprint}.arrow"
    if cache_file.exists():
        logger.info("Reusing cached backbone features %s", cache_file)
        runners, restore = list(base.backbones), []
    else:
        runners, restore = _inference_backbones(base.backbones)
    index_dataset = datasets.Dataset.from_dict({"__row__": np.arange(len(dataset))})
    try:
        cached = index_dataset.map(
            extract,
            input_columns="__row__",
            batched=True,
            batch_size=batch_size,
            remove_columns=["__row__"],
            features=features,
            new_fingerprint=fingerprint,
            cache_file_name=str(cache_file),
            desc=desc,
        )
    finally:
        for backbone in restore:
            backbone.to(memory_format=torch.contiguous_format)
        model.train(was_training)
    return CachedFeatures(cached)


class _TimmFeatures(torch.nn.Module):
    """`TimmBackbone.forward` on the bare timm model, for `torch.fx` to trace."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(pixel_values), pre_logits=True)


def _inference_backbones(backbones: Sequence[torch.nn.Module]) -> tuple[list[Callable], list[torch.nn.Module]]:
    """Faster stand-ins for the (frozen, eval-mode) backbones during the feature pass, with the same outputs.

    Image backbones run channels-last; a timm backbone is also traced with `torch.fx` and its convolutions folded
    with the BatchNorm after them (`torch.fx.experimental.optimization.fuse`, on a copy). On a ResNet-18 at 64 px
    the pass ran 1.2-1.4x faster channels-last and 1.2x faster again fused (features equal to ~1e-7). A backbone
    that cannot be traced, or has no BatchNorm to fold, runs channels-last as it is.

    Returns:
        One callable per backbone (inputs dict → features), and the original backbones that were made channels-last
        in place, to be restored afterwards.
    """
    from torch.fx.experimental.optimization import fuse

    from .modeling_transfer import TimmBackbone

    runners, restore = [], []
    for backbone in backbones:
        if getattr(backbone, "modality", None) != "image":
            runners.append(backbone)
            continue
        foldable = _count_foldable_batch_norms(backbone)
        if isinstance(backbone, TimmBackbone) and foldable:  # (no copy of a model with nothing to fold)
            try:
                fused = fuse(_TimmFeatures(backbone.model))
            except Exception as error:  # noqa: BLE001 - any tracing failure: run the model as it is
                logger.debug("Feature pass without conv-BatchNorm folding (%s: %s)", type(error).__name__, error)
            else:
                if _count_foldable_batch_norms(fused) < foldable:  # else nothing to gain from the copy
                    fused.to(memory_format=torch.channels_last)
                    runners.append(lambda inputs, fused=fused: fused(inputs[IMAGE_INPUT]))
                    continue
        if not _is_channels_last(backbone):
            backbone.to(memory_format=torch.channels_last)
            restore.append(backbone)
        runners.append(backbone)
    return runners, restore


def _count_foldable_batch_norms(module: torch.nn.Module) -> int:
    """Plain `BatchNorm2d` layers: what `fuse` folds into the convolution before them (timm's `BatchNormAct2d`, a
    subclass, is traced through instead and not folded)."""
    return sum(type(m) is torch.nn.BatchNorm2d for m in module.modules())


def _is_channels_last(module: torch.nn.Module) -> bool:
    """Whether `module`'s 4-D weights (convolutions) are stored channels-last."""
    weights = [p for p in module.parameters() if p.dim() == 4]
    return bool(weights) and all(w.is_contiguous(memory_format=torch.channels_last) for w in weights)


class CachedFeatures(torch.utils.data.Dataset):
    """Cached features held as tensors in memory, served a whole batch at a time.

    The arrow file written by `datasets.map` is the on-disk cache; training reads from these tensors instead, since
    formatting rows out of arrow one by one (~12,000 rows/s) would cost more than the head's training step.

    Args:
        dataset: The cached features (`backbone_features_{i}` and `labels` columns).
    """

    def __init__(self, dataset: datasets.Dataset):
        self.dataset = dataset
        self.columns: dict[str, torch.Tensor] = dataset.with_format("torch")[:]

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {key: column[index] for key, column in self.columns.items()}

    def __getitems__(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        """A whole batch in one indexing per column (the DataLoader's batched fetch)."""
        index = torch.as_tensor(indices, dtype=torch.long)
        return {key: column[index] for key, column in self.columns.items()}


def collate_cached(rows: Sequence[dict] | dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Batches cached-feature rows (or passes through a batch that `CachedFeatures.__getitems__` already built)."""
    if isinstance(rows, dict):
        return rows
    return {key: torch.stack([row[key] for row in rows]) for key in rows[0]}
