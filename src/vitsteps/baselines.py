"""What a ViT is measured against on the 28x28 digits: a small convolutional network and an RBF support-vector
machine, on the same split.

- `SmallCNN`: two 3x3 convolutions per stage at 28, 14 and 7 pixels, max pooling between the stages, global average
  pooling and a linear head; about as many parameters as the `mnist` ViT, and trained with the identical recipe
  (`vitsteps.train.train`). Its convolutions build in what the ViT must learn: locality and translation
  equivariance.
- `fit_svc`: an RBF support-vector machine on the raw pixels, `C` and `gamma` chosen on the validation images,
  then tested once (or, with one value of each and no validation images, fitted once and tested).
- `fit_logistic`: multinomial logistic regression on the raw pixels, the weakest measuring stick.

They are the only baseline fits of the package: `tests/benchmarks/bench_train.py` uses them on the 8x8 digits too.

Shape legend: B batch, C channels, H W image, K classes.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from . import _validate

SVC_C_GRID: tuple[float, ...] = (1.0, 3.0, 10.0, 30.0, 100.0)
SVC_GAMMA_GRID: tuple[float, ...] = (0.01, 0.02, 0.03, 0.05)  # on pixels in [0, 1]


class SmallCNN(nn.Module):
    """A small convolutional classifier: three stages of two `3x3` convolutions (each followed by BatchNorm and
    ReLU), `2x2` max pooling after the first two stages, global average pooling, a linear head.

    Args:
        in_chans: input channels `C`.
        num_classes: classes `K`.
        widths: channels of the three stages. The default (32, 64, 96) has 204,778 parameters for 1 channel and 10
            classes, close to the `mnist` ViT's 205,962, and a training epoch costs about what the ViT's does
            (`tools/mnist_results.py` measures the two side by side).
        img_size: image side, checked on every forward pass (it must be a multiple of 4).
    """

    def __init__(self, in_chans: int = 1, num_classes: int = 10, widths: Sequence[int] = (32, 64, 96),
                 img_size: int = 28) -> None:
        super().__init__()
        _validate.positive_int(in_chans, "in_chans")
        _validate.positive_int(num_classes, "num_classes")
        if not isinstance(widths, (tuple, list)) or len(widths) != 3:
            _validate.fail(TypeError, "widths", "three channel counts, one per stage", widths, "pass e.g. (32, 64, 96)")
        for index, width in enumerate(widths):
            _validate.positive_int(width, f"widths[{index}]")
        _validate.positive_int(img_size, "img_size")
        _validate.divides(4, img_size, "the two 2x2 poolings' factor 4", "side (img_size)")
        self.img_size, self.in_chans, self.num_classes = img_size, in_chans, num_classes
        layers: list[nn.Module] = []
        channels = in_chans
        for stage, width in enumerate(widths):
            for _ in range(2):
                layers += [nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                           nn.ReLU(inplace=True)]
                channels = width
            if stage < 2:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Images `[B, C, H, W]` to class logits `[B, K]`."""
        _validate.tensor(image, "image", 4, "[B, C, H, W]")
        B, C, H, W = image.shape
        if (C, H, W) != (self.in_chans, self.img_size, self.img_size):
            raise ValueError(f"image must be [B, {self.in_chans}, {self.img_size}, {self.img_size}] for this network, "
                             f"got {list(image.shape)}; resize the images or build SmallCNN(in_chans={C}, "
                             f"img_size={H}).")
        features = self.features(image)  # [B, widths[2], H/4, W/4]
        return self.head(features.mean(dim=(2, 3)))  # [B, K]


@dataclass(frozen=True)
class SvcResult:
    """An RBF SVC chosen on validation: every setting tried, the one kept, and its accuracies."""

    grid: list[dict[str, float]]  # {"C", "gamma", "val", "fit_seconds"} for every setting, in the order tried
    C: float
    gamma: float
    val_accuracy: float | None    # None when there were no validation images (nothing was chosen)
    test_accuracy: float
    fit_seconds: float            # the final fit on the training images


def _pixels(images: object, name: str) -> torch.Tensor:
    _validate.tensor(images, name, 4, "[n, C, H, W]")
    return images.reshape(len(images), -1).double()  # [n, C*H*W]


def _labelled_pixels(pairs: dict[str, object]) -> dict[str, tuple[object, object]]:
    """Each `(images [n, C, H, W], labels [n])` pair checked and flattened to NumPy `([n, C*H*W], [n])`."""
    parts = {}
    for name, pair in pairs.items():
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
            _validate.fail(TypeError, name, "an (images, labels) pair", pair, f"pass (split.{name}_images, "
                                                                              f"split.{name}_labels)")
        pixels = _pixels(pair[0], f"{name}[0]")  # [n, C*H*W]
        labels = _validate.labels(pair[1], f"{name}[1]", len(pixels))
        parts[name] = (pixels.numpy(), labels.numpy())
    return parts


def fit_svc(train: tuple[torch.Tensor, torch.Tensor], val: tuple[torch.Tensor, torch.Tensor] | None,
            test: tuple[torch.Tensor, torch.Tensor], C_grid: Sequence[float] = SVC_C_GRID,
            gamma_grid: Sequence[float] = SVC_GAMMA_GRID) -> SvcResult:
    """An RBF support-vector machine on the raw pixels: every `(C, gamma)` of the grids is fitted on `train` and
    scored on `val`; the best (ties go to the smaller `C`, then the smaller `gamma`) is fitted again and tested on
    `test` once.

    Args:
        train, val, test: `(images [n, C, H, W] in [0, 1], labels [n])` pairs; `val` may be None when each grid
            holds one value (nothing to choose: that setting is fitted once and tested).
        C_grid: the regularisation strengths tried.
        gamma_grid: the kernel widths tried, for pixels in [0, 1].

    Returns:
        An `SvcResult`.
    """
    from sklearn.svm import SVC

    for name, grid in (("C_grid", C_grid), ("gamma_grid", gamma_grid)):
        if not isinstance(grid, (tuple, list)) or not grid:
            _validate.fail(TypeError, name, "a non-empty list of numbers", grid, "pass e.g. (1.0, 10.0)")
        for index, value in enumerate(grid):
            _validate.positive_number(value, f"{name}[{index}]", "1.0")
    if val is None and len(C_grid) * len(gamma_grid) > 1:
        raise ValueError(f"val=None leaves nothing to choose {len(C_grid)} x {len(gamma_grid)} settings on; pass "
                         f"validation images, or one value in each grid.")
    parts = _labelled_pixels({"train": train, "test": test} if val is None else
                             {"train": train, "val": val, "test": test})
    if val is None:
        start = time.perf_counter()
        classifier = SVC(kernel="rbf", C=C_grid[0], gamma=gamma_grid[0]).fit(*parts["train"])
        seconds = round(time.perf_counter() - start, 2)
        return SvcResult([{"C": C_grid[0], "gamma": gamma_grid[0], "fit_seconds": seconds}], C_grid[0],
                         gamma_grid[0], None, float(classifier.score(*parts["test"])), seconds)
    grid = []
    for C in C_grid:
        for gamma in gamma_grid:
            start = time.perf_counter()
            classifier = SVC(kernel="rbf", C=C, gamma=gamma).fit(*parts["train"])
            grid.append({"C": C, "gamma": gamma, "val": float(classifier.score(*parts["val"])),
                         "fit_seconds": round(time.perf_counter() - start, 2)})
    best = max(grid, key=lambda row: (row["val"], -row["C"], -row["gamma"]))
    start = time.perf_counter()
    classifier = SVC(kernel="rbf", C=best["C"], gamma=best["gamma"]).fit(*parts["train"])
    seconds = time.perf_counter() - start
    return SvcResult(grid, best["C"], best["gamma"], float(classifier.score(*parts["val"])),
                     float(classifier.score(*parts["test"])), round(seconds, 2))


def fit_logistic(train: tuple[torch.Tensor, torch.Tensor], test: tuple[torch.Tensor, torch.Tensor],
                 C: float = 1.0) -> float:
    """Test accuracy of multinomial logistic regression on the raw pixels, fitted on `train`.

    Args:
        train, test: `(images [n, C, H, W] in [0, 1], labels [n])` pairs.
        C: the inverse regularisation strength.
    """
    from sklearn.linear_model import LogisticRegression

    _validate.positive_number(C, "C", "1.0")
    parts = _labelled_pixels({"train": train, "test": test})
    classifier = LogisticRegression(C=C, max_iter=5000).fit(*parts["train"])
    return float(classifier.score(*parts["test"]))
