# Copyright 2026 The hf_transfer authors. Licensed under the Apache License, Version 2.0.
"""The classical baselines a transferred model has to beat, trained on the same rows: logistic regression on the
pixels of an image dataset, TF-IDF of 1-2-grams + logistic regression on a text dataset.

The quickstart and `benchmarks/transfer_quality.py` report them next to the fine-tuned models.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import numpy as np


@dataclass
class BaselineResult:
    """One classical baseline scored on a test split."""

    method: str
    accuracy: float
    f1: float  # of label 1 with two classes, macro otherwise (as the recipes' metrics report it)
    seconds: float  # fitting and predicting


def classical_baseline(train, test, image_column: str = "image", text_column: str = "text") -> BaselineResult:
    """Fits the classical baseline of `train`'s modality and scores it on `test`.

    Args:
        train: A `datasets.Dataset` with a `label` column and an image column (any size: PIL images or arrays of one
            shape) or a text column.
        test: The split to score on, with the same columns.
        image_column: The image column's name.
        text_column: The text column's name.

    Returns:
        The method's name, test accuracy and F1, and the wall time.

    Raises:
        ValueError: `train` has neither column.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    start = time.perf_counter()
    if image_column in train.column_names:
        method = "logistic regression on pixels"
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300, C=0.1))

        def inputs(split):
            return np.stack([np.asarray(image, dtype=np.float32).reshape(-1) / 255.0 for image in split[image_column]])

    elif text_column in train.column_names:
        method = "TF-IDF + logistic regression"
        model = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True), LogisticRegression())

        def inputs(split):
            return split[text_column]

    else:
        raise ValueError(
            f"No {image_column!r} or {text_column!r} column to train a classical baseline on; the columns are "
            f"{train.column_names}."
        )
    with warnings.catch_warnings():  # the pixel baseline's fixed 300 L-BFGS iterations stop before convergence
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(inputs(train), train["label"])
    predictions = model.predict(inputs(test))
    labels = np.asarray(test["label"])
    binary = len(np.unique(train["label"])) == 2
    f1 = f1_score(labels, predictions, average="binary" if binary else "macro")
    accuracy = float(np.mean(predictions == labels))
    return BaselineResult(method, accuracy, float(f1), time.perf_counter() - start)
