"""Images: timm transforms, the lazy batch transform that makes ``pixel_values{suffix}``, and image checks."""

from __future__ import annotations

import io
import random
import zlib
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import datasets
import numpy as np
import torch
from transformers import TrainerCallback

from ..inputs import IMAGE_INPUT, is_text_input
from .inputs import _image_data_configs

__all__ = [
    "AugmentationEpochCallback",
    "ConvertToRGB",
    "ImagePreprocessor",
    "ToNormalizedTensor",
    "build_image_transforms",
    "check_images",
    "find_unreadable_images",
]


class ConvertToRGB:
    """Converts any PIL image (grayscale ``L``, ``RGBA``, palette ``P``, ``CMYK``...) to RGB."""

    def __call__(self, image):
        if image.mode == "RGB":
            return image
        if image.mode == "P" and "transparency" in image.info:
            image = image.convert("RGBA")  # PIL warns when palette transparency is dropped directly
        return image.convert("RGB")

    def __repr__(self) -> str:
        return "ConvertToRGB()"


class ToNormalizedTensor:
    """PIL image → normalized float32 tensor ``(3, H, W)``: ``(x / 255 - mean) / std`` computed in NumPy.

    Replaces the ``ToTensor`` + ``Normalize`` tail of timm's transform with the same arithmetic. Torch's versions run
    multi-threaded element-wise ops on each small image; when another process keeps a core busy those threads
    wait on each other and the transform fell from ~930 to ~160 images/s here, while NumPy's single thread holds
    ~1,100 (benchmarks/README.md, "Performance notes": contention).

    Args:
        mean: Per-channel mean, in [0, 1] units.
        std: Per-channel standard deviation, in [0, 1] units.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self._shift = (np.asarray(self.mean, dtype=np.float32) * 255.0)[:, None, None]
        self._scale = (1.0 / (np.asarray(self.std, dtype=np.float32) * 255.0))[:, None, None]

    def __call__(self, image) -> torch.Tensor:
        array = np.asarray(image)
        if array.ndim == 2:
            array = array[:, :, None]
        array = array.transpose(2, 0, 1).astype(np.float32, order="C")
        array -= self._shift
        array *= self._scale
        return torch.from_numpy(array)

    def __repr__(self) -> str:
        return f"ToNormalizedTensor(mean={self.mean}, std={self.std})"


def build_image_transforms(
    data_config: Mapping[str, Any], is_training: bool, *, color_jitter: float | None = None
) -> Callable:
    """Builds a backbone's image transform with timm's ``create_transform``.

    Train: random-resized-crop to the backbone's input size + horizontal flip (no color jitter unless asked: it
    halves the throughput). Eval: resize to ``input_size / crop_pct`` + center crop. Both convert any image mode
    to RGB first, then to a normalized float tensor (timm's ``ToTensor`` + ``Normalize`` arithmetic, done by
    :class:`ToNormalizedTensor`). Small images (32-px CIFAR) are resized up to the input size.

    Args:
        data_config: timm-style ``{"input_size": [3, H, W], "mean", "std", "interpolation", "crop_pct"}``
            (``crop_mode`` optional).
        is_training: Train-time augmentation, or the deterministic eval transform.
        color_jitter: Color-jitter strength for training (timm's ``color_jitter``); None disables it.

    Returns:
        A callable PIL image → float32 tensor ``(3, H, W)``.

    Example:
        >>> t = build_image_transforms({"input_size": (3, 224, 224), "mean": (0.5,) * 3, "std": (0.5,) * 3}, False)
        >>> t(PIL.Image.new("L", (32, 32))).shape
        torch.Size([3, 224, 224])
    """
    from timm.data import create_transform
    from timm.data.transforms import MaybeToTensor, ToTensor
    from torchvision.transforms import Compose, Normalize

    input_size = tuple(data_config["input_size"])
    if len(input_size) != 3 or input_size[0] != 3:
        raise ValueError(f"data_config input_size must be [3, H, W] (RGB), got {list(input_size)}.")
    transform = create_transform(
        input_size=input_size,
        is_training=is_training,
        interpolation=data_config.get("interpolation", "bilinear"),
        mean=tuple(data_config["mean"]),
        std=tuple(data_config["std"]),
        crop_pct=data_config.get("crop_pct"),
        crop_mode=data_config.get("crop_mode"),
        color_jitter=color_jitter,
    )
    steps = list(transform.transforms)
    if len(steps) >= 2 and isinstance(steps[-2], (MaybeToTensor, ToTensor)) and isinstance(steps[-1], Normalize):
        steps[-2:] = [ToNormalizedTensor(data_config["mean"], data_config["std"])]
    return Compose([ConvertToRGB(), *steps])


def _describe_image(value: Any) -> str:
    if isinstance(value, Mapping):
        if value.get("path"):
            return f"file {value['path']!r}"
        data = value.get("bytes") or b""
        return f"embedded bytes ({len(data)} bytes, starting {data[:8]!r})"
    if isinstance(value, str):
        return f"file {value!r}"
    return type(value).__name__


def _open_image(value: Any):
    """Decodes one image cell: a PIL image, ``{"bytes", "path"}`` (an ``Image(decode=False)`` column), or a path."""
    import PIL.Image

    if isinstance(value, PIL.Image.Image):
        return value
    if isinstance(value, Mapping):
        if value.get("bytes"):
            image = PIL.Image.open(io.BytesIO(value["bytes"]))
        elif value.get("path"):
            image = PIL.Image.open(value["path"])
        else:
            raise ValueError("empty image cell (no bytes, no path)")
    elif isinstance(value, str):
        image = PIL.Image.open(value)
    elif isinstance(value, np.ndarray):
        return PIL.Image.fromarray(value)
    else:
        raise ValueError(f"unsupported image value of type {type(value).__name__}")
    image.load()  # decode now, so that a truncated file fails here, with its name, not deep in a transform
    return image


class ImagePreprocessor:
    """Batch transform for ``Dataset.with_transform``: image column → ``pixel_values{suffix}`` tensors.

    One transform per distinct image input of the model (see :mod:`hf_transfer.data.inputs`); each image is decoded once and
    fed to each. Labels come out as ``labels``; tokenized text columns (``input_ids{suffix}``...) pass through, so
    an image+text fusion model gets both from one dataset. Other columns are dropped. Picklable, so it works in
    DataLoader worker processes.

    Args:
        backbones: The model's ``config.backbones``.
        image_column: The image column (``Image()``, preferably ``Image(decode=False)`` so that decode errors name
            the file, or file paths).
        label_column: The label column, emitted as ``labels`` (absent → no labels, e.g. an unlabelled test split).
        is_training: Train-time augmentation or eval transforms.
        color_jitter: Color-jitter strength for training; None disables it.
        seed: With a seed, each image's random augmentation is drawn from its own generator, seeded by the seed, the
            image's bytes (or path) and :attr:`epoch`; so a run resumed from a checkpoint sees exactly the crops of
            an uninterrupted one (the Trainer restores the global RNG only after fetching the first batches).
            :class:`AugmentationEpochCallback` keeps :attr:`epoch` current. None: the global RNG, as timm does.
    """

    def __init__(
        self,
        backbones: Sequence[Any],
        image_column: str,
        label_column: str = "labels",
        is_training: bool = False,
        *,
        color_jitter: float | None = None,
        seed: int | None = None,
    ):
        configs = _image_data_configs(backbones)
        if not configs:
            raise ValueError("The model has no image backbone: no image preprocessing to build.")
        self.image_column = image_column
        self.label_column = label_column
        self.is_training = is_training
        self.seed = seed if is_training else None
        self.epoch = 0
        self.transforms = {
            IMAGE_INPUT + suffix: build_image_transforms(config, is_training, color_jitter=color_jitter)
            for suffix, config in configs.items()
        }

    def __repr__(self) -> str:
        return (
            f"ImagePreprocessor(image_column={self.image_column!r}, label_column={self.label_column!r}, "
            f"is_training={self.is_training}, outputs={list(self.transforms)})"
        )

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        """Transforms a batch of rows (``datasets`` calls it with one row per ``dataset[i]``).

        Args:
            batch: Column → values, as ``Dataset.with_transform`` passes them.

        Returns:
            ``pixel_values{suffix}`` → list of float32 ``(3, H, W)`` tensors, ``labels``, and the tokenized text
            columns unchanged.

        Raises:
            ValueError: If an image cannot be decoded, naming its file (or its bytes when embedded).
        """
        if self.image_column not in batch:
            raise KeyError(
                f"Image column {self.image_column!r} missing from the batch (columns: {', '.join(batch)}). With the "
                "Trainer, set remove_unused_columns=False so that it keeps raw columns for the transform."
            )
        images = []
        for position, value in enumerate(batch[self.image_column]):
            try:
                images.append(_open_image(value))
            except Exception as err:
                size = len(batch[self.image_column])
                where = f" (position {position} in a batch of {size})" if size > 1 else ""
                raise ValueError(
                    f"Cannot read image {_describe_image(value)} in column {self.image_column!r}{where}: "
                    f"{type(err).__name__}: {err}. "
                    f"hf_transfer.data.find_unreadable_images(dataset, {self.image_column!r}) lists every bad row."
                ) from err
        if self.seed is None:
            out = {key: [transform(image) for image in images] for key, transform in self.transforms.items()}
        else:
            out = {key: [] for key in self.transforms}
            for value, image in zip(batch[self.image_column], images):
                with _seeded_rng(_sample_seed(self.seed, self.epoch, value)):
                    for key, transform in self.transforms.items():
                        out[key].append(transform(image))
        if self.label_column in batch:
            out["labels"] = batch[self.label_column]
        for key, values in batch.items():
            if is_text_input(key):
                out[key] = values
        return out


def _sample_seed(seed: int, epoch: int, value: Any) -> int:
    """A seed from the run's seed, the epoch and the image itself (its bytes, or its path)."""
    if isinstance(value, Mapping):
        raw = value.get("bytes") or str(value.get("path")).encode()
    elif isinstance(value, (bytes, bytearray)):
        raw = bytes(value)
    else:
        raw = (
            str(getattr(value, "filename", None) or value).encode()
            if not hasattr(value, "tobytes")
            else value.tobytes()
        )
    return (zlib.crc32(raw) + 1_000_003 * seed + 7_919 * epoch) % (2**31)


@contextmanager
def _seeded_rng(seed: int):
    """Seeds Python's and torch's global RNGs (timm's and torchvision's transforms draw from them) for one sample,
    then restores them."""
    python_state = random.getstate()
    with torch.random.fork_rng(devices=[]):
        random.seed(seed)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(python_state)


class AugmentationEpochCallback(TrainerCallback):
    """Tells seeded image augmentation (:class:`ImagePreprocessor` with a seed) which epoch it is, so that each epoch
    draws new crops and a resumed run draws the same ones as an uninterrupted run."""

    def __init__(self, dataset: datasets.Dataset):
        transform = (getattr(dataset, "_format_kwargs", None) or {}).get("transform")
        self.preprocessor = transform if isinstance(transform, ImagePreprocessor) else None

    def on_epoch_begin(self, args, state, control, **kwargs):
        if self.preprocessor is not None:
            self.preprocessor.epoch = int(state.epoch or 0)


def check_images(dataset: datasets.Dataset, image_column: str, num_rows: int = 8, split: str | None = None) -> None:
    """Decodes the first ``num_rows`` images: a cheap up-front check that the column holds readable images.

    Args:
        dataset: The dataset.
        image_column: Its image column.
        num_rows: How many rows to decode.
        split: The split's name, for the error message.

    Raises:
        ValueError: If the column is missing (lists the columns) or an image cannot be decoded (names the row
            index and the file).
    """
    if image_column not in dataset.column_names:
        raise ValueError(f"Image column {image_column!r} not found; columns: {', '.join(dataset.column_names)}.")
    head = dataset.select_columns([image_column]).select(range(min(num_rows, len(dataset))))
    if isinstance(head.features[image_column], datasets.Image):
        head = head.cast_column(image_column, datasets.Image(decode=False))
    for row, value in enumerate(head.with_format(None)[image_column]):
        try:
            _open_image(value)
        except Exception as err:
            raise ValueError(
                f"Cannot read image in row {row} of {f'split {split!r}, ' if split else ''}column {image_column!r} "
                f"({_describe_image(value)}): "
                f"{type(err).__name__}: {err}."
            ) from err


def find_unreadable_images(dataset: datasets.Dataset, image_column: str) -> list[int]:
    """Decodes every image of the column and returns the rows that fail.

    Args:
        dataset: The dataset.
        image_column: Its image column.

    Returns:
        Indices of the rows whose image cannot be decoded (empty when all are fine).
    """
    column = dataset.select_columns([image_column])
    if isinstance(column.features[image_column], datasets.Image):
        column = column.cast_column(image_column, datasets.Image(decode=False))
    bad = []
    for row, value in enumerate(column.with_format(None)[image_column]):
        try:
            _open_image(value)
        except Exception:
            bad.append(row)
    return bad
