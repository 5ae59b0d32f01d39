# Copyright 2026 The hf_transfer authors. Licensed under the Apache License, Version 2.0.
"""Each backbone's preprocessing, and the one processor saved with a model (`hf_transfer.processing_transfer`).

`load_processors(config)` gives one processor per backbone (what the data pipeline tokenizes with);
`build_processor(config)` the model's one processor, which `save_processors` writes next to the model so that
`AutoProcessor`, `AutoImageProcessor` / `AutoTokenizer` and `pipeline()` load it from the same directory or Hub repo,
with or without hf_transfer installed. Everything inference needs lives in the saved folder: a saved model's
tokenizers are read back from it, not from where its backbones came from at training time.
"""

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer, PreTrainedConfig
from transformers.video_processing_utils import BaseVideoProcessor

from .inputs import BackboneEntry
from .processing_transfer import (
    PROCESSOR_CONFIG,
    TransferImageProcessor,
    TransferProcessor,
    TransferTokenizer,
    _find_file,
)

logger = logging.getLogger(__name__)


class NoVideoProcessor(BaseVideoProcessor):
    """hf_transfer models read images and text, never video.

    `pipeline()` also looks for a video processor, and transformers derives one from a saved image processor's
    `auto_map` (`TransferImageProcessor` -> `TransferVideoProcessor`, which does not exist): with no local answer it
    asks "Do you wish to run the custom code?" and waits 15 s. Registered with `AutoVideoProcessor`, this class is
    that local answer; it refuses to be built, which the pipeline takes as "no video processor".
    """

    def __init__(self, *args: Any, **kwargs: Any):
        raise ValueError("hf_transfer models take images and text, not video: there is no video processor.")


__all__ = ["build_processor", "image_processor_for", "load_processors", "load_tokenizer", "save_processors"]


def image_processor_for(spec: BackboneEntry) -> TransferImageProcessor:
    """The image processor of one image backbone (from `TransferConfig.backbones`): timm's eval transform for its
    stored data config, producing `pixel_values{input_suffix}`."""
    return TransferImageProcessor.from_backbones([spec])


def load_tokenizer(spec: BackboneEntry):
    """The tokenizer of one text backbone, loaded from where the backbone came from."""
    try:
        return AutoTokenizer.from_pretrained(spec["source"])
    except Exception as err:
        raise ValueError(
            f"Cannot load the tokenizer of text backbone {spec['source']!r} ({type(err).__name__}: {err}). "
            "A text backbone needs its tokenizer files next to its weights (or on the Hub)."
        ) from err


def _saved_tokenizers(path: str | None) -> dict[str, Any]:
    """`input_suffix` → tokenizer, from the processor saved with a model at `path` (empty when there is none)."""
    if not path:
        return {}
    try:
        if _find_file(path, PROCESSOR_CONFIG) is None:
            return {}
        tokenizer = TransferProcessor.from_pretrained(path).tokenizer
    except Exception as err:  # a broken saved processor: say so, then fall back to the backbones' own
        logger.warning(f"Could not load the processor saved in {path} ({type(err).__name__}: {err}).")
        return {}
    if tokenizer is None:
        return {}
    return dict(tokenizer.tokenizers) if isinstance(tokenizer, TransferTokenizer) else {"": tokenizer}


def load_processors(config: PreTrainedConfig, path: str | None = None) -> list:
    """One processor per backbone, in backbone order: an image processor or a tokenizer.

    Tokenizers come from the processor saved with the model (`path`, by default where the config was loaded from:
    `config._name_or_path`), so a saved or pushed model needs nothing else; a model being built (`from_backbones`)
    gets each text backbone's own tokenizer from where the backbone came from.

    Args:
        config: The model's `TransferConfig`.
        path: A folder or Hub repo holding the model's saved processor (default: `config._name_or_path`).
    """
    saved = _saved_tokenizers(path if path is not None else getattr(config, "_name_or_path", None))
    processors = []
    for spec in config.backbones:
        if spec["modality"] == "image":
            processors.append(image_processor_for(spec))
        elif spec["input_suffix"] in saved:
            processors.append(saved[spec["input_suffix"]])
        else:
            processors.append(_reused_tokenizer(spec) or load_tokenizer(spec))
    return processors


def _reused_tokenizer(spec: BackboneEntry):
    """The tokenizer of a text backbone reused from a saved hf_transfer model, read from that model's folder.

    A spec may name it as `processor_source: {"path": <saved model>, "input_suffix": <its suffix there>}`, since its
    `source` is where that model's backbone came from at *its* training time, which may be gone.
    """
    origin = spec.get("processor_source")
    if not origin:
        return None
    return _saved_tokenizers(origin["path"]).get(origin["input_suffix"])


def build_processor(config: PreTrainedConfig, processors: Sequence[Any] | None = None) -> TransferProcessor:
    """The model's one processor: every image input (`TransferImageProcessor`) and every text input (the text
    backbone's tokenizer, or a `TransferTokenizer` over several).

    Args:
        config: The model's `TransferConfig`.
        processors: One processor per backbone (`load_processors(config)` when None).
    """
    processors = list(load_processors(config) if processors is None else processors)
    if len(processors) != len(config.backbones):
        raise ValueError(f"Got {len(processors)} processors for {len(config.backbones)} backbones; pass one each.")
    image = [spec for spec in config.backbones if spec["modality"] == "image"]
    tokenizers = {}
    for spec, processor in zip(config.backbones, processors):
        if spec["modality"] == "text":
            tokenizers.setdefault(spec["input_suffix"], processor)
    if len(tokenizers) > 1:
        tokenizer = TransferTokenizer(tokenizers)
    else:
        tokenizer = next(iter(tokenizers.values()), None)
    return TransferProcessor(TransferImageProcessor.from_backbones(image) if image else None, tokenizer)


def save_processors(processors: Sequence[Any] | None, output_dir: str | Path, config: PreTrainedConfig) -> None:
    """Saves the model's one processor in `output_dir` (see `build_processor`).

    Args:
        processors: One processor per backbone (`load_processors(config)` when None).
        output_dir: The model's folder.
        config: The model's `TransferConfig`.
    """
    build_processor(config, processors).save_pretrained(str(output_dir))
