# Copyright 2026 The hf_transfer authors. Licensed under the Apache License, Version 2.0.
"""Each backbone's own preprocessing as transformers processors: image processors and tokenizers.

The processors are saved next to the model so that `pipeline()` and `AutoImageProcessor` / `AutoTokenizer` load
them from the same directory or Hub repo.
"""

import logging
from pathlib import Path

from transformers import AutoImageProcessor, AutoTokenizer, PreTrainedConfig

logger = logging.getLogger(__name__)


_RESAMPLE = {"nearest": 0, "bilinear": 2, "bicubic": 3, "lanczos": 1}


def image_processor_for(spec: dict):
    """The image processor of one image backbone (from `TransferConfig.backbones`).

    transformers backbones get their checkpoint's image processor. timm backbones (and transformers ones saved
    without a processor) get a `ConvNextImageProcessor` that reproduces timm's eval transform from the stored data
    config: resize the short side to `size / crop_pct`, center-crop to `size`, normalise with the backbone's mean/std.
    """
    if spec["library"] == "transformers":
        try:
            return AutoImageProcessor.from_pretrained(spec["source"])
        except Exception:  # no processor saved with the backbone: use the stored data config
            pass
    data_config = spec["data_config"]
    channels, height, width = data_config["input_size"]
    resample = _RESAMPLE.get(data_config.get("interpolation"), 3)
    # grayscale / RGBA / palette images become RGB, as the training transform makes them (ConvertToRGB)
    convert_rgb = channels == 3
    if height != width:
        from transformers import ViTImageProcessor

        return ViTImageProcessor(
            size={"height": height, "width": width},
            resample=resample,
            image_mean=data_config["mean"],
            image_std=data_config["std"],
            do_convert_rgb=convert_rgb,
        )
    from transformers import ConvNextImageProcessor

    return ConvNextImageProcessor(
        size={"shortest_edge": height},
        crop_pct=data_config.get("crop_pct") or 1.0,
        resample=resample,
        image_mean=data_config["mean"],
        image_std=data_config["std"],
        do_convert_rgb=convert_rgb,
    )


def load_tokenizer(spec: dict):
    """The tokenizer of one text backbone, loaded from where the backbone came from."""
    try:
        return AutoTokenizer.from_pretrained(spec["source"])
    except Exception as err:
        raise ValueError(
            f"Cannot load the tokenizer of text backbone {spec['source']!r} ({type(err).__name__}: {err}). "
            "A text backbone needs its tokenizer files next to its weights (or on the Hub)."
        ) from err


def load_processors(config: PreTrainedConfig) -> list:
    """One processor per backbone, in backbone order: an image processor or a tokenizer."""
    return [image_processor_for(s) if s["modality"] == "image" else load_tokenizer(s) for s in config.backbones]


def save_processors(processors: list, output_dir: str | Path) -> None:
    """Saves the first backbone's processor at the top of `output_dir` (what `pipeline()` loads) and the others
    under `output_dir/backbone_{i}/`."""
    for index, processor in enumerate(processors):
        target = Path(output_dir) if index == 0 else Path(output_dir) / f"backbone_{index}"
        processor.save_pretrained(target)
