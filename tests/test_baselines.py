"""hf_transfer.baselines: the classical baselines the quickstart and transfer_quality.py report, against sklearn."""

import datasets
import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import f1_score

from hf_transfer.baselines import classical_baseline


def image_split(n: int, seed: int) -> datasets.Dataset:
    """Three classes of 8x8 grey images: class c is bright in row band c, plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    images = []
    for label in labels:
        pixels = rng.integers(0, 60, (8, 8))
        pixels[2 * label : 2 * label + 3] += 150
        images.append(Image.fromarray(pixels.astype(np.uint8)))
    return datasets.Dataset.from_dict({"image": images, "label": labels.tolist()})


def test_pixel_baseline_learns_separable_images_and_reports_macro_f1():
    result = classical_baseline(image_split(90, 0), image_split(30, 1))
    assert result.method == "logistic regression on pixels"
    assert result.accuracy == 1.0 and result.f1 == 1.0 and result.seconds > 0


def test_text_baseline_reports_f1_of_label_one_as_the_recipes_do():
    words = {0: "dull boring awful", 1: "great moving superb"}
    train = datasets.Dataset.from_dict(
        {"text": [words[i % 2] + f" film {i}" for i in range(40)], "label": [i % 2 for i in range(40)]}
    )
    # Test reviews: two of label 1 say the label-0 words, so predictions differ from the labels in a known way.
    test_labels = [0, 0, 1, 1, 1, 1]
    test_texts = [words[0], words[0], words[1], words[1], words[0], words[0]]
    result = classical_baseline(train, datasets.Dataset.from_dict({"text": test_texts, "label": test_labels}))
    predictions = [0, 0, 1, 1, 0, 0]
    assert result.method == "TF-IDF + logistic regression"
    assert result.accuracy == pytest.approx(4 / 6)
    assert result.f1 == pytest.approx(f1_score(test_labels, predictions))  # binary: F1 of label 1, not macro


def test_a_dataset_without_image_or_text_column_is_refused_naming_its_columns():
    table = datasets.Dataset.from_dict({"features": [[0.0]], "label": [0]})
    with pytest.raises(ValueError, match=r"No 'image' or 'text' column.*\['features', 'label'\]"):
        classical_baseline(table, table)
