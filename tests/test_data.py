"""vitsteps.data: the digits, their split, one digit for pictures, the pixel-shift augmentation, the synthetic
images, and bad input named."""
from __future__ import annotations

from collections import Counter

import pytest
import torch
from helpers import assert_all_refused, refusal_cases

from vitsteps.data import (
    SYNTHETIC_CLASSES,
    DigitsSplit,
    digit_image,
    load_digits,
    load_digits_split,
    random_shift,
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
}


@refusal_cases(REFUSED)
def test_bad_input_is_refused_naming_the_parameter_the_value_and_the_fix(refusals):
    assert_all_refused(refusals)
