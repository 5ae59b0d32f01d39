# Copyright 2026 The hf_transfer authors. Licensed under the Apache License, Version 2.0.
"""The one processor of an hf_transfer model: raw images and texts in, every input the model reads out.

A model's backbones may each want their own preprocessing (a fusion of a 224-px and a 448-px backbone reads
`pixel_values` and `pixel_values_1`; a fusion of two text backbones with different vocabularies reads `input_ids` and
`input_ids_1`...). Three classes cover every model, each loadable with a transformers Auto class:

- `TransferImageProcessor` (`AutoImageProcessor`, `pipeline("image-classification")`): every `pixel_values*` input,
  each with timm's own eval transform for that backbone (resize to `size / crop_pct`, center crop, normalize), so
  inference sees exactly what evaluation saw, at every input size.
- `TransferTokenizer` (`AutoTokenizer`, `pipeline("text-classification")`): every `input_ids*` /
  `attention_mask*` / `token_type_ids*` input of a model with several text backbones, each from its own tokenizer
  (saved in `tokenizer{suffix}/`). A model with one text backbone keeps that backbone's own tokenizer.
- `TransferProcessor` (`AutoProcessor`): the image processor and the tokenizer together; `processor(images=...,
  text=...)` gives an image + text fusion everything it reads.

This file imports only `transformers`, `timm`, `torch`, `numpy` and `PIL`, so that a saved or pushed model carries it
as remote code (`trust_remote_code=True` where hf_transfer is not installed), as it carries its modeling code.
"""

import json
import os
import shutil
from typing import Any

import numpy as np
import torch
from transformers import AutoTokenizer
from transformers.image_processing_utils import BaseImageProcessor, BatchFeature
from transformers.tokenization_utils_base import BatchEncoding
from transformers.utils import PushToHubMixin, cached_file

PROCESSOR_CONFIG = "processor_config.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
IMAGE_PROCESSOR_CONFIG = "preprocessor_config.json"
CODE_FILE = os.path.basename(__file__)
MODULE = os.path.splitext(CODE_FILE)[0]


def _copy_code(save_directory: str) -> None:
    """Puts this file next to the saved processor: the `auto_map` entries point at it (remote code)."""
    target = os.path.join(save_directory, CODE_FILE)
    if os.path.abspath(__file__) != os.path.abspath(target):
        shutil.copy(__file__, target)


def _find_file(path: str, filename: str, **kwargs: Any) -> str | None:
    """`filename` in a local folder or Hub repo, or None when it is not there."""
    hub = {
        k: kwargs[k] for k in ("cache_dir", "force_download", "token", "revision", "local_files_only") if k in kwargs
    }
    return cached_file(
        path,
        filename,
        _raise_exceptions_for_missing_entries=False,
        _raise_exceptions_for_connection_errors=False,
        **hub,
    )


# --------------------------------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------------------------------


def image_inputs_of(backbones: list[dict]) -> list[dict]:
    """`[{"name": "pixel_values{suffix}", "data_config": {...}}]`, one per distinct image input, in backbone order.

    Args:
        backbones: A `TransferConfig.backbones` list.
    """
    inputs: dict[str, dict] = {}
    for spec in backbones:
        if spec["modality"] == "image":
            inputs.setdefault(f"pixel_values{spec['input_suffix']}", dict(spec["data_config"]))
    return [{"name": name, "data_config": data_config} for name, data_config in inputs.items()]


class _ConvertToRGB:
    """Any PIL mode (L, RGBA, P, I;16...) to RGB, as the training transform does."""

    def __call__(self, image):
        if image.mode == "RGB":
            return image
        if image.mode == "P" and "transparency" in image.info:
            image = image.convert("RGBA")
        return image.convert("RGB")


class _Normalize:
    """PIL image → float32 `(3, H, W)`: `(x / 255 - mean) / std`, the arithmetic of hf_transfer's training
    transform (`hf_transfer.data.ToNormalizedTensor`), so that both give the same numbers."""

    def __init__(self, mean, std):
        self._shift = (np.asarray(mean, dtype=np.float32) * 255.0)[:, None, None]
        self._scale = (1.0 / (np.asarray(std, dtype=np.float32) * 255.0))[:, None, None]

    def __call__(self, image) -> torch.Tensor:
        array = np.asarray(image)
        if array.ndim == 2:
            array = array[:, :, None]
        array = array.transpose(2, 0, 1).astype(np.float32, order="C")
        array -= self._shift
        array *= self._scale
        return torch.from_numpy(array)


def eval_transform(data_config: dict):
    """timm's eval transform for a timm-style data config (`create_transform(..., is_training=False)`): resize to
    `input_size / crop_pct`, center crop to `input_size`; with RGB conversion first and normalization last.

    Args:
        data_config: `{"input_size": [3, H, W], "mean", "std", "interpolation", "crop_pct"}` (`crop_mode`
            optional), as `TransferConfig.backbones[i]["data_config"]` stores it.

    Returns:
        A callable PIL image → float32 tensor `(3, H, W)`.
    """
    from timm.data import create_transform
    from timm.data.transforms import MaybeToTensor, ToTensor
    from torchvision.transforms import Compose, Normalize

    transform = create_transform(
        input_size=tuple(data_config["input_size"]),
        is_training=False,
        interpolation=data_config.get("interpolation", "bilinear"),
        mean=tuple(data_config["mean"]),
        std=tuple(data_config["std"]),
        crop_pct=data_config.get("crop_pct"),
        crop_mode=data_config.get("crop_mode"),
    )
    steps = list(transform.transforms)
    if len(steps) >= 2 and isinstance(steps[-2], (MaybeToTensor, ToTensor)) and isinstance(steps[-1], Normalize):
        steps[-2:] = [_Normalize(data_config["mean"], data_config["std"])]
    return Compose([_ConvertToRGB(), *steps])


class TransferImageProcessor(BaseImageProcessor):
    """Every image input of an hf_transfer model, each with its backbone's own timm eval transform.

    `processor(image)` returns `pixel_values` and, for a fusion whose image backbones need other preprocessing,
    `pixel_values_1`, ...: what the model reads, so `pipeline("image-classification")` works for any number of image
    backbones. The transform is timm's (`create_transform(is_training=False)`), not an approximation: transformers'
    `ConvNextImageProcessor`, for one, ignores `crop_pct` from 384 px up.

    Args:
        image_inputs: `[{"name": "pixel_values{suffix}", "data_config": {...}}]` (see `image_inputs_of`).
    """

    model_input_names = ["pixel_values"]

    def __init__(self, image_inputs: list[dict] | None = None, **kwargs: Any):
        kwargs.pop("image_processor_type", None)
        kwargs.pop("auto_map", None)
        super().__init__(**kwargs)
        if not image_inputs:
            raise ValueError(
                "TransferImageProcessor needs image_inputs: [{'name': 'pixel_values', 'data_config': ...}]."
            )
        self.image_inputs = [{"name": i["name"], "data_config": dict(i["data_config"])} for i in image_inputs]
        self.model_input_names = [i["name"] for i in self.image_inputs]
        self._transforms = None

    @classmethod
    def from_backbones(cls, backbones: list[dict]) -> "TransferImageProcessor":
        """The image processor of a model with these `TransferConfig.backbones`."""
        return cls(image_inputs=image_inputs_of(backbones))

    @property
    def transforms(self) -> dict:
        if self._transforms is None:
            self._transforms = {i["name"]: eval_transform(i["data_config"]) for i in self.image_inputs}
        return self._transforms

    def to_dict(self) -> dict[str, Any]:
        return {
            "image_processor_type": type(self).__name__,
            "image_inputs": self.image_inputs,
            "auto_map": {"AutoImageProcessor": f"{MODULE}.{type(self).__name__}"},
        }

    def save_pretrained(self, save_directory, push_to_hub: bool = False, **kwargs):
        os.makedirs(save_directory, exist_ok=True)
        _copy_code(save_directory)
        return super().save_pretrained(save_directory, push_to_hub=push_to_hub, **kwargs)

    def preprocess(self, images, return_tensors: str | None = "pt", **kwargs: Any) -> BatchFeature:
        """Preprocesses one image or a list of images (PIL, NumPy or torch, any mode).

        Args:
            images: An image or a list of images.
            return_tensors: `"pt"` (the default) or None (lists of tensors).

        Returns:
            A `BatchFeature` with one float32 `(batch, 3, H, W)` entry per image input of the model.
        """
        from transformers.image_transforms import to_pil_image

        if isinstance(images, torch.Tensor) and images.ndim == 4:
            images = list(images)
        elif not isinstance(images, (list, tuple)):
            images = [images]
        pil = [image if hasattr(image, "convert") else to_pil_image(image) for image in images]
        data = {name: [transform(image) for image in pil] for name, transform in self.transforms.items()}
        if return_tensors is not None:
            data = {name: torch.stack(values) for name, values in data.items()}
        return BatchFeature(data, tensor_type=return_tensors)

    def __call__(self, images, *args, **kwargs) -> BatchFeature:
        return self.preprocess(images, *args, **kwargs)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(image_inputs={json.dumps(self.image_inputs)})"


# --------------------------------------------------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------------------------------------------------


# what reaches AutoTokenizer: where to load from, and trust_remote_code for the model's own config (remote code)
_TOKENIZER_KWARGS = ("cache_dir", "force_download", "token", "revision", "local_files_only", "trust_remote_code")


def _tokenizer_folder(suffix: str) -> str:
    return f"tokenizer{suffix}"


class TransferTokenizer(PushToHubMixin):
    """The tokenizers of a model with several text backbones, called as one: each text input (`input_ids`,
    `input_ids_1`, ... with their `attention_mask*` / `token_type_ids*`) from its own backbone's tokenizer.

    `AutoTokenizer.from_pretrained(model_dir)` loads it, so `pipeline("text-classification")` works for text fusion
    models. Each tokenizer is saved in `tokenizer{suffix}/` next to the model.

    Args:
        tokenizers: `input_suffix` → that text input's tokenizer, in backbone order (the first is the main one).
    """

    model_input_names = ["input_ids", "attention_mask"]

    def __init__(self, tokenizers: dict[str, Any]):
        if not tokenizers:
            raise ValueError("TransferTokenizer needs at least one tokenizer.")
        self.tokenizers = dict(tokenizers)
        self.main = next(iter(self.tokenizers.values()))
        self.model_input_names = [
            f"{name}{suffix}" for suffix, tok in self.tokenizers.items() for name in tok.model_input_names
        ]

    # what pipelines and the Trainer read from a tokenizer: the main tokenizer's
    def __getattr__(self, name: str):
        if name in ("tokenizers", "main") or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.main, name)

    def __call__(self, text=None, text_pair=None, **kwargs: Any) -> BatchEncoding:
        """Tokenizes `text` (and `text_pair`) with every tokenizer; keys get each text input's suffix.

        Args:
            text: A text or a list of texts.
            text_pair: The second texts of sentence pairs, if any.
            **kwargs: Passed to every tokenizer (`return_tensors`, `truncation`, `max_length`, `padding`...).
        """
        out = {}
        for suffix, tokenizer in self.tokenizers.items():
            for key, value in tokenizer(text, text_pair, **kwargs).items():
                out[f"{key}{suffix}"] = value
        return BatchEncoding(out, tensor_type=kwargs.get("return_tensors"))

    def save_pretrained(self, save_directory, **kwargs: Any) -> tuple[str, ...]:
        os.makedirs(save_directory, exist_ok=True)
        files = []
        for suffix, tokenizer in self.tokenizers.items():
            files += tokenizer.save_pretrained(os.path.join(save_directory, _tokenizer_folder(suffix)))
        config = {
            "tokenizer_class": type(self).__name__,
            "text_inputs": list(self.tokenizers),
            "auto_map": {"AutoTokenizer": [f"{MODULE}.{type(self).__name__}", None]},
        }
        path = os.path.join(save_directory, TOKENIZER_CONFIG)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(config, f, indent=2)
        _copy_code(save_directory)
        return (*files, path)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args: Any, **kwargs: Any) -> "TransferTokenizer":
        path = str(pretrained_model_name_or_path)
        config_file = _find_file(path, TOKENIZER_CONFIG, **kwargs)
        config = json.load(open(config_file, encoding="utf-8")) if config_file else {}
        if config.get("tokenizer_class") != cls.__name__:
            raise OSError(f"{path} holds no {cls.__name__} ({TOKENIZER_CONFIG} with tokenizer_class {cls.__name__}).")
        hub = {k: v for k, v in kwargs.items() if k in _TOKENIZER_KWARGS}
        return cls(
            {
                suffix: AutoTokenizer.from_pretrained(path, subfolder=_tokenizer_folder(suffix), **hub)
                for suffix in config["text_inputs"]
            }
        )

    @classmethod
    def register_for_auto_class(cls, auto_class: str = "AutoTokenizer") -> None:
        cls._auto_class = auto_class

    def __repr__(self) -> str:
        return f"{type(self).__name__}({ {s: type(t).__name__ for s, t in self.tokenizers.items()} })"


def load_text_processor(path: str, **kwargs: Any):
    """The text processor saved in `path`: a `TransferTokenizer`, or the one text backbone's own tokenizer."""
    config_file = _find_file(path, TOKENIZER_CONFIG, **kwargs)
    if config_file is None:
        return None
    with open(config_file, encoding="utf-8") as f:
        if json.load(f).get("tokenizer_class") == TransferTokenizer.__name__:
            return TransferTokenizer.from_pretrained(path, **kwargs)
    hub = {k: v for k, v in kwargs.items() if k in _TOKENIZER_KWARGS}
    return AutoTokenizer.from_pretrained(path, **hub)


def _load_legacy_processor(path: str, **kwargs: Any):
    """What `AutoProcessor` gave for a model saved without `processor_config.json`: its image processor or tokenizer."""
    from transformers import AutoImageProcessor

    hub = {k: v for k, v in kwargs.items() if k in _TOKENIZER_KWARGS}
    if _find_file(path, IMAGE_PROCESSOR_CONFIG, **kwargs) is not None:
        return AutoImageProcessor.from_pretrained(path, **hub)
    if _find_file(path, TOKENIZER_CONFIG, **kwargs) is not None:
        return AutoTokenizer.from_pretrained(path, **hub)
    raise OSError(f"{path} holds no processor ({PROCESSOR_CONFIG}, {IMAGE_PROCESSOR_CONFIG} or {TOKENIZER_CONFIG}).")


# --------------------------------------------------------------------------------------------------------------------
# Both
# --------------------------------------------------------------------------------------------------------------------


class TransferProcessor(PushToHubMixin):
    """The one processor of an hf_transfer model: raw images and/or texts → every input the model reads.

    `AutoProcessor.from_pretrained(model_dir)` loads it for every hf_transfer model. For an image + text fusion:

        inputs = processor(images=image, text=caption, return_tensors="pt")
        logits = model(**inputs).logits

    Args:
        image_processor: A `TransferImageProcessor`, or None for a text-only model.
        tokenizer: The text backbone's tokenizer, a `TransferTokenizer` (several text backbones), or None.
    """

    def __init__(self, image_processor: TransferImageProcessor | None = None, tokenizer: Any = None):
        if image_processor is None and tokenizer is None:
            raise ValueError("TransferProcessor needs an image processor, a tokenizer or both.")
        self.image_processor = image_processor
        self.tokenizer = tokenizer
        self.model_input_names = [
            *(image_processor.model_input_names if image_processor is not None else []),
            *(tokenizer.model_input_names if tokenizer is not None else []),
        ]

    def __call__(self, images=None, text=None, text_pair=None, return_tensors: str | None = "pt", **kwargs: Any):
        """Preprocesses images and/or texts (the same number of each for an image + text model).

        Args:
            images: An image or a list of images (for a model with image backbones).
            text: A text or a list of texts (for a model with text backbones).
            text_pair: Second texts of sentence pairs, if the model was trained on pairs.
            return_tensors: `"pt"` (default) or None.
            **kwargs: Passed to the tokenizer (`truncation`, `max_length`, `padding`...).

        Returns:
            A `BatchFeature` with every input the model reads.
        """
        missing = [
            what
            for what, needed, given in (
                ("images", self.image_processor is not None, images is not None),
                ("text", self.tokenizer is not None, text is not None),
            )
            if needed and not given
        ]
        if missing:
            raise ValueError(f"This model reads {' and '.join(self._modalities())}; pass {' and '.join(missing)}.")
        data = {}
        if images is not None:
            if self.image_processor is None:
                raise ValueError("This model reads text only; pass text=..., not images.")
            data.update(self.image_processor(images, return_tensors=return_tensors))
        if text is not None:
            if self.tokenizer is None:
                raise ValueError("This model reads images only; pass images=..., not text.")
            if return_tensors is not None and not isinstance(text, str) and len(text) > 1:
                kwargs.setdefault("padding", True)
            kwargs.setdefault("truncation", True)
            data.update(self.tokenizer(text, text_pair, return_tensors=return_tensors, **kwargs))
        return BatchFeature(data, tensor_type=return_tensors)

    def _modalities(self) -> list[str]:
        return [m for m, p in (("images", self.image_processor), ("text", self.tokenizer)) if p is not None]

    def save_pretrained(self, save_directory, **kwargs: Any) -> list[str]:
        """Writes `processor_config.json`, the image processor (`preprocessor_config.json`), the tokenizer(s) and
        this code, so that `AutoProcessor`, `AutoImageProcessor` / `AutoTokenizer` and `pipeline()` load them."""
        os.makedirs(save_directory, exist_ok=True)
        if self.image_processor is not None:
            self.image_processor.save_pretrained(save_directory)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(save_directory)
        config = {
            "processor_class": type(self).__name__,
            "modalities": self._modalities(),
            "auto_map": {"AutoProcessor": f"{MODULE}.{type(self).__name__}"},
        }
        path = os.path.join(save_directory, PROCESSOR_CONFIG)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(config, f, indent=2)
        _copy_code(save_directory)
        return [path]

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs: Any) -> "TransferProcessor":
        path = str(pretrained_model_name_or_path)
        kwargs.pop("_from_auto", None)
        config_file = _find_file(path, PROCESSOR_CONFIG, **kwargs)
        if config_file is None:  # saved before hf_transfer had one processor: its image processor or tokenizer
            return _load_legacy_processor(path, **kwargs)
        with open(config_file, encoding="utf-8") as f:
            modalities = json.load(f).get("modalities", ["images", "text"])
        image_processor = None
        if "images" in modalities:
            image_file = _find_file(path, IMAGE_PROCESSOR_CONFIG, **kwargs)
            with open(image_file, encoding="utf-8") as f:
                image_processor = TransferImageProcessor(image_inputs=json.load(f)["image_inputs"])
        tokenizer = load_text_processor(path, **kwargs) if "text" in modalities else None
        return cls(image_processor=image_processor, tokenizer=tokenizer)

    @classmethod
    def register_for_auto_class(cls, auto_class: str = "AutoProcessor") -> None:
        cls._auto_class = auto_class

    def __repr__(self) -> str:
        return f"{type(self).__name__}(image_processor={self.image_processor!r}, tokenizer={self.tokenizer!r})"


__all__ = [
    "TransferImageProcessor",
    "TransferProcessor",
    "TransferTokenizer",
    "eval_transform",
    "image_inputs_of",
    "load_text_processor",
]
