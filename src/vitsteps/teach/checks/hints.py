"""Hints worked out from a wrong output: which pixels a window holds, how far a count is off, ties in a ranking.

Each takes the case, the student's output and the right output (never the code that made it), and returns a hint
or None when it has nothing to say. An exercise of the table names one as its `explain`.

Shape legend: B batch, C channels, H W image, P patch side, S stride, N patches.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from ..properties import pixel_span
from .spec import Case, as_float, as_int


def _image_indices(pixels: torch.Tensor, order: torch.Tensor, values: torch.Tensor) -> torch.Tensor | None:
    """Where in `pixels` (flattened, sorted by `order`) each of `values` comes from, or None if one is not a pixel."""
    found = order[torch.searchsorted(pixels[order], values.contiguous()).clamp(max=len(pixels) - 1)]  # [C*P*P]
    return found if torch.equal(pixels[found], values) else None


def window_pixels(case: Case, got: object, expected: object) -> str | None:
    """For windows of the right shape made of the image's own pixels: the first window that holds other pixels."""
    image, _, stride = case.args
    _, _, H, W = image.shape
    if not isinstance(got, torch.Tensor) or not isinstance(expected, torch.Tensor) or got.shape != expected.shape:
        return None
    pixels = image[0].reshape(-1)  # [C*H*W]
    order = pixels.argsort()  # [C*H*W]
    cols = None
    for n, (values, right) in enumerate(zip(got[0].detach(), expected[0], strict=True)):
        found, square = _image_indices(pixels, order, values), _image_indices(pixels, order, right)
        if found is None or square is None:
            return None  # not pixels copied from the image: nothing to trace
        if set(found.tolist()) != set(square.tolist()):
            if cols is None:
                cols = (W - case.args[1]) // stride + 1
            return (f"your window {n} holds pixels from {pixel_span(found, H, W)}; it should hold "
                    f"{pixel_span(square, H, W)} (window {n} is number {n % cols} in row {n // cols} of windows, "
                    f"whose corners are stride={stride} pixels apart).")
    return None


def count_difference(case: Case, got: object, expected: object) -> str | None:
    """For a parameter count off by an amount that is no single part: per block, or which fields to check."""
    (config,) = case.args
    if as_int(got) is None or as_int(expected) is None:
        return None
    missing = as_int(expected) - as_int(got)
    if missing % config.depth == 0 and config.depth > 1:
        return (f"the difference is {missing // config.depth:+,} per block: recount one block part by part "
                "(norm1, qkv, proj, norm2, fc1, fc2, with their biases), and check which fields of config change it.")
    return ("the difference matches no single part: recount part by part (patch embedding, CLS token, position "
            "table, blocks, final norm, head) and check which fields of config change each one.")


def tied_ranks(case: Case, got: object, expected: object) -> str | None:
    """A value near the right one: most often ties ranked one by one."""
    number, right = as_float(got), as_float(expected)
    if number is not None and right is not None and abs(number - right) < 0.05:
        return ("close, but not equal: many pairs share a distance (every pair of neighbours is 1 apart), and tied "
                "values must share the mean of the ranks they occupy, not get ranks in the order they come.")
    return None


# by name, as the shipped public cases refer to them
EXPLAIN: dict[str, Callable[[Case, object, object], str | None]] = {
    "window_pixels": window_pixels, "count_difference": count_difference, "tied_ranks": tied_ranks}
