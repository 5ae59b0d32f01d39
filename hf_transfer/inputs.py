# Copyright 2026 The hf_transfer authors. Licensed under the Apache License, Version 2.0.
"""Input naming: the batch keys each backbone of a model reads, and the typed backbone entry they come from.

Defined in `configuration_transfer.py` (which must stand alone as remote code, and which the model reads them from);
the rest of the package imports them from here.
"""

from .configuration_transfer import (
    CACHED_FEATURES_PREFIX,
    IMAGE_INPUT,
    TEXT_EXTRA_INPUTS,
    TEXT_INPUTS,
    BackboneEntry,
    DataConfig,
    backbone_input_names,
    cached_features_key,
    input_suffixes,
    is_cached_features_key,
    is_image_input,
    is_text_input,
)

__all__ = [
    "CACHED_FEATURES_PREFIX",
    "IMAGE_INPUT",
    "TEXT_EXTRA_INPUTS",
    "TEXT_INPUTS",
    "BackboneEntry",
    "DataConfig",
    "backbone_input_names",
    "cached_features_key",
    "input_suffixes",
    "is_cached_features_key",
    "is_image_input",
    "is_text_input",
]
