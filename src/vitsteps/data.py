"""Data for training: scikit-learn's bundled digits, a pixel-shift augmentation, and small synthetic images.

The digits (1,797 grayscale images of 8x8 pixels, 10 classes) ship inside scikit-learn, so nothing is
downloaded. `load_digits` reads them once per process; `load_digits_split` makes a fixed stratified train/test
split (the same seed gives the same split on every machine); `digit_image` picks one digit for the pictures.

Shape legend: B batch, C channels, H W image.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from . import _validate

DIGIT_CLASSES: tuple[str, ...] = tuple(str(digit) for digit in range(10))
SYNTHETIC_CLASSES: tuple[str, ...] = ("horizontal bar", "vertical bar", "diagonal", "square")
_DIGITS_MAX_PIXEL = 16.0  # scikit-learn's digits hold integer intensities 0..16


@dataclass(frozen=True)
class DigitsSplit:
    """A train/test split of the digits, images as `[n, 1, 8, 8]` floats in [0, 1] and labels as `[n]` ints."""

    train_images: torch.Tensor  # [n_train, 1, 8, 8] float32 in [0, 1]
    train_labels: torch.Tensor  # [n_train] int64 in 0..9
    test_images: torch.Tensor   # [n_test, 1, 8, 8] float32 in [0, 1]
    test_labels: torch.Tensor   # [n_test] int64 in 0..9
    seed: int                   # the seed that made the split
    test_size: float            # fraction of the images held out for testing

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names, index = label."""
        return DIGIT_CLASSES

    def __repr__(self) -> str:
        return (f"DigitsSplit(train={tuple(self.train_images.shape)}, test={tuple(self.test_images.shape)}, "
                f"seed={self.seed}, test_size={self.test_size})")


@functools.lru_cache(maxsize=1)
def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / _DIGITS_MAX_PIXEL  # [1797, 1, 8, 8]
    return images, torch.as_tensor(bunch.target, dtype=torch.int64)  # [1797, 1, 8, 8], [1797]


def load_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 bundled digits: `([1797, 1, 8, 8] images in [0, 1] (pixels / 16), [1797] int64 labels)`.

    Read from scikit-learn once per process; each call returns new tensors.
    """
    images, labels = _digits()
    return images.clone(), labels.clone()  # [1797, 1, 8, 8], [1797]


def digit_image(digit: int = 3) -> torch.Tensor:
    """The first image of class `digit` among the bundled digits, `[1, 1, 8, 8]` in [0, 1]."""
    _validate.int_in(digit, "digit", 0, 9, "pass e.g. 3")
    images, labels = _digits()
    index = int(torch.nonzero(labels == digit)[0])
    return images[index:index + 1].clone()  # [1, 1, 8, 8]


def load_digits_split(seed: int = 0, test_size: float = 0.2) -> DigitsSplit:
    """The bundled digits, split into train and test sets with the same class mix in both.

    Args:
        seed: picks the split; the same seed gives the same split everywhere.
        test_size: fraction of the 1,797 images held out, strictly between 0 and 1.

    Returns:
        A `DigitsSplit` with `[n, 1, 8, 8]` images scaled to [0, 1] (pixels / 16) and int64 labels.
    """
    from sklearn.model_selection import train_test_split

    _validate.non_negative_int(seed, "seed", "pass e.g. 0")
    _validate.number_in(test_size, "test_size", 0, 1, low_open=True, high_open=True,
                        example="0.2 to hold out a fifth of the images")
    images, labels = _digits()
    train_x, test_x, train_y, test_y = train_test_split(
        images.numpy(), labels.numpy(), test_size=test_size, random_state=seed, stratify=labels.numpy())
    return DigitsSplit(
        train_images=torch.from_numpy(train_x).clone(),  # [n_train, 1, 8, 8]
        train_labels=torch.from_numpy(train_y).clone(),  # [n_train]
        test_images=torch.from_numpy(test_x).clone(),  # [n_test, 1, 8, 8]
        test_labels=torch.from_numpy(test_y).clone(),  # [n_test]
        seed=seed, test_size=float(test_size))


def random_shift(images: torch.Tensor, max_shift: int = 1, generator: torch.Generator | None = None,
                 probability: float = 1.0) -> torch.Tensor:
    """Move each image by its own random whole-pixel offset, filling the uncovered border with zeros.

    Each image gets a row offset and a column offset drawn uniformly from `-max_shift..max_shift`
    (with chance `probability`; otherwise it stays where it is). A digit moved by a pixel is still the same
    digit, so this multiplies the small training set.

    Args:
        images: `[B, C, H, W]` images.
        max_shift: largest offset in pixels, `0 <= max_shift < min(H, W)`; 0 returns the images unchanged.
        generator: the random source, for reproducible shifts.
        probability: chance that an image is shifted at all, in [0, 1].

    Returns:
        `[B, C, H, W]` shifted images (a new tensor).
    """
    _validate.tensor(images, "images", 4, "[B, C, H, W]")
    B, C, H, W = images.shape
    _validate.int_in(max_shift, "max_shift", 0, min(H, W) - 1,
                     f"for {H}x{W} images a pixel or two (1 or 2) keeps digits recognisable")
    _validate.number_in(probability, "probability", 0, 1, example="0.5")
    if max_shift == 0:
        return images.clone()
    offsets = torch.randint(-max_shift, max_shift + 1, (2, B), generator=generator)  # [2, B]
    if probability < 1:
        offsets = offsets * (torch.rand(B, generator=generator) < probability)  # [2, B]
    padded = F.pad(images, (max_shift,) * 4)  # [B, C, H+2s, W+2s]
    rows = torch.arange(H).unsqueeze(0) + max_shift - offsets[0].unsqueeze(1)  # [B, H]
    cols = torch.arange(W).unsqueeze(0) + max_shift - offsets[1].unsqueeze(1)  # [B, W]
    batch_index = torch.arange(B)[:, None, None]  # [B, 1, 1]
    shifted = padded.permute(0, 2, 3, 1)[batch_index, rows[:, :, None], cols[:, None, :]]  # [B, H, W, C]
    return shifted.permute(0, 3, 1, 2).contiguous()  # [B, C, H, W]


def synthetic_images(num_images: int = 64, img_size: int = 8, in_chans: int = 1, seed: int = 0,
                     noise: float = 0.05) -> tuple[torch.Tensor, torch.Tensor]:
    """Small labelled pictures made on the spot, for demos that should not wait for real data.

    Four classes (`SYNTHETIC_CLASSES`): a horizontal bar, a vertical bar, a diagonal line, and a square
    outline, each at a random place, plus a little Gaussian noise. A tiny ViT learns them in seconds.

    Args:
        num_images: how many images to make.
        img_size: image side `H = W`, at least 4.
        in_chans: channels `C`; every channel holds the same shape.
        seed: the random source; the same seed gives the same images.
        noise: standard deviation of the added noise, in [0, 1).

    Returns:
        `([num_images, C, H, W] images clipped to [0, 1], [num_images] int64 labels)`.
    """
    _validate.positive_int(num_images, "num_images")
    _validate.positive_int(in_chans, "in_chans")
    _validate.int_in(img_size, "img_size", 4, None, "pass e.g. 8: the shapes need at least 4 pixels a side")
    _validate.non_negative_int(seed, "seed", "pass e.g. 0")
    _validate.number_in(noise, "noise", 0, 1, high_open=True, example="0.05")
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(len(SYNTHETIC_CLASSES), (num_images,), generator=generator)  # [num_images]
    canvas = torch.zeros(num_images, img_size, img_size)  # [num_images, H, W]
    span = img_size // 2
    for index, label in enumerate(labels.tolist()):
        top, left = torch.randint(0, img_size - span + 1, (2,), generator=generator).tolist()
        line = torch.randint(0, img_size, (1,), generator=generator).item()
        steps = torch.arange(span)
        if label == 0:
            canvas[index, line, left:left + span] = 1.0
        elif label == 1:
            canvas[index, top:top + span, line] = 1.0
        elif label == 2:
            canvas[index, top + steps, left + steps] = 1.0
        else:
            canvas[index, top, left:left + span] = 1.0
            canvas[index, top + span - 1, left:left + span] = 1.0
            canvas[index, top:top + span, left] = 1.0
            canvas[index, top:top + span, left + span - 1] = 1.0
    canvas = canvas + noise * torch.randn(canvas.shape, generator=generator)  # [num_images, H, W]
    images = canvas.clamp(0, 1).unsqueeze(1).expand(-1, in_chans, -1, -1).contiguous()  # [num_images, C, H, W]
    return images, labels
