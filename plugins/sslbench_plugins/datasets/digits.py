"""scikit-learn's digits: 1,797 8x8 grey images of 10 classes, shipped with scikit-learn.

The embedded default: no download, trains in seconds. Grey levels 0..16 are scaled to 0..255; a fixed
stratified 75/25 split (seed 0) gives 1,347 train and 450 test images.
"""

from __future__ import annotations

import numpy as np
import torch

from sslbench import hookimpl
from sslbench.sdk.api import DatasetPlugin, ImageData
from sslbench.sdk.data import stratified_split
from sslbench.sdk.protocol import DIGITS_MLP


class Digits(DatasetPlugin):
    name = "digits"
    description = "scikit-learn digits, 8x8 grey, 10 classes (embedded; no download)"
    protocol = DIGITS_MLP

    def load(self, data_dir: str | None, **params) -> ImageData:  # type: ignore[no-untyped-def]
        from sklearn.datasets import load_digits

        bunch = load_digits()
        images = np.clip(np.rint(bunch.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
        x = torch.from_numpy(images).unsqueeze(1)
        y = torch.from_numpy(bunch.target.astype(np.int64))
        train, test = stratified_split(y, 0.25, seed=0)
        return ImageData(
            name=self.name, train_x=x[train], train_y=y[train], test_x=x[test], test_y=y[test],
            classes=[str(i) for i in range(10)],
            note="scikit-learn digits: 1,797 8x8 images, fixed stratified 75/25 split (seed 0)",
        )


@hookimpl
def register_datasets(register) -> None:  # type: ignore[no-untyped-def]
    register(Digits)
