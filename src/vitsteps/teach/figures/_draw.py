"""Drawing helpers shared by the figures of every part of the series: an image as an array, the patch grid (drawn
here once for every figure that shows it), patches as tiles, near-square panel grids, figures redrawn in place, a
heat map over an image, counts with an SI suffix.

Shape legend: C channels, H W image, P patch side, N patches.
"""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from ... import _validate


def one_sample(value: object, ndim: int) -> object:
    """`value[0]` when `value` is a tensor with one leading dimension of 1 more than `ndim`, else `value`."""
    if isinstance(value, torch.Tensor) and value.dim() == ndim + 1 and value.shape[0] == 1:
        return value[0]
    return value


def as_image(image: object) -> np.ndarray:
    """`[C, H, W]` (or `[1, C, H, W]`) tensor, `C` 1 or 3, to an `[H, W]` or `[H, W, 3]` array scaled to [0, 1]."""
    if isinstance(image, torch.Tensor) and image.dim() == 4 and image.shape[0] != 1:
        raise ValueError(f"image must be one image [C, H, W] or [1, C, H, W], got shape {tuple(image.shape)}; "
                         f"pick one with images[i].")
    image = _validate.tensor(one_sample(image, 3), "image", 3, "[C, H, W]")
    if image.shape[0] not in (1, 3):
        raise ValueError(f"image must have 1 (grayscale) or 3 (RGB) channels, got {image.shape[0]}; "
                         f"draw one channel with image[:1].")
    array = image.detach().float().cpu()  # [C, H, W]
    low, high = array.min(), array.max()
    array = (array - low) / (high - low) if high > low else torch.zeros_like(array)  # [C, H, W]
    return array[0].numpy() if array.shape[0] == 1 else array.permute(1, 2, 0).numpy()  # [H, W] or [H, W, 3]


def image_and_grid(image: object, patch_size: object) -> tuple[np.ndarray, int, int]:
    """The image as `as_image` draws it, and its patch grid `(rows, cols)`; `patch_size` must divide both sides."""
    picture = as_image(image)
    H, W = picture.shape[:2]
    _validate.positive_int(patch_size, "patch_size")
    _validate.divides(patch_size, H, "patch_size", "height")
    _validate.divides(patch_size, W, "patch_size", "width")
    return picture, H // patch_size, W // patch_size


def draw_patch_grid(ax: plt.Axes, picture: np.ndarray, patch_size: int, numbers: bool) -> None:
    """Draw `picture` with its patch grid (one `vlines`/`hlines` call each) and, optionally, patch numbers."""
    H, W = picture.shape[:2]
    ax.imshow(picture, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    cells = max(H, W) // patch_size
    width = 1.5 if cells <= 8 else 0.8 if cells <= 16 else 0.3  # dense grids get thin lines
    ax.vlines(np.arange(0, W + 1, patch_size) - 0.5, -0.5, H - 0.5, color="tab:orange", linewidth=width)
    ax.hlines(np.arange(0, H + 1, patch_size) - 0.5, -0.5, W - 0.5, color="tab:orange", linewidth=width)
    if numbers:
        cols = W // patch_size
        for index in range((H // patch_size) * cols):
            row, col = divmod(index, cols)
            ax.text(col * patch_size - 0.3, row * patch_size - 0.1, str(index), color="white", fontsize=7,
                    va="top", ha="left", bbox={"facecolor": "tab:orange", "pad": 1, "linewidth": 0})
    ax.set_xlim(-0.5, W - 0.5)
    ax.set_ylim(H - 0.5, -0.5)
    ax.axis("off")  # no ticks to lay out: a redraw stays fast


def patch_tiles(patches: object, patch_size: object, in_chans: object) -> np.ndarray:
    """Flattened patches `[N, C*P*P]` (or `[1, N, C*P*P]`) as `[N, P, P, C]` tiles on one scale from 0 to 1."""
    patches = _validate.tensor(one_sample(patches, 2), "patches", 2, "[N, C*P*P]")
    _validate.positive_int(patch_size, "patch_size")
    _validate.one_of(in_chans, "in_chans", (1, 3), "pass 1 (grayscale) or 3 (RGB) to draw patches")
    N, depth = patches.shape
    if N == 0:
        raise ValueError("patches is empty, got shape (0, ...); pass at least one patch [N, C*P*P] with N >= 1.")
    if depth != in_chans * patch_size * patch_size:
        raise ValueError(f"patches have {depth} values each but in_chans*patch_size**2 = "
                         f"{in_chans * patch_size ** 2}; pass the in_chans and patch_size they were cut with.")
    values = patches.detach().float().cpu()  # [N, C*P*P]
    low, high = float(values.min()), float(values.max())
    values = (values - low) / (high - low) if high > low else torch.zeros_like(values)  # [N, C*P*P]
    return values.reshape(N, in_chans, patch_size, patch_size).permute(0, 2, 3, 1).numpy()  # [N, P, P, C]


def grid_shape(count: int) -> tuple[int, int]:
    """Rows and columns of a near-square grid holding `count` panels."""
    _validate.positive_int(count, "count")
    cols = math.ceil(math.sqrt(count))
    return math.ceil(count / cols), cols


def panels(fig: Figure | None, count: int, figsize: tuple[float, float], width_ratios: list[float],
           margins: dict[str, float]) -> tuple[Figure, list[plt.Axes]]:
    """`count` side-by-side axes to draw on.

    With `fig` from an earlier call of the same plotting function, its axes are emptied of what was drawn
    (images, lines, texts, shapes) and reused: no new axes, so a widget redraws much faster. Otherwise a
    new figure is made.
    """
    if fig is not None:
        _validate.instance(fig, "fig", Figure, "a matplotlib Figure made by this function, or None",
                           "pass the figure this function returned before, or None for a new one")
        if len(fig.axes) == count:
            for ax in fig.axes:
                for artist in (*ax.images, *ax.lines, *ax.collections, *ax.patches, *ax.texts):
                    artist.remove()
            return fig, list(fig.axes)
    fig, axes = plt.subplots(1, count, figsize=figsize, squeeze=False, gridspec_kw={"width_ratios": width_ratios})
    fig.subplots_adjust(**margins)
    return fig, list(axes[0])


def overlay_map(ax: plt.Axes, picture: np.ndarray, heat: np.ndarray) -> None:
    """The image in grey with a heat map over it; on grids of at most 16 cells each cell's value is written in."""
    H, W = picture.shape[:2]
    rows, cols = heat.shape
    ax.imshow(picture, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.imshow(heat, cmap="magma", alpha=0.6, interpolation="nearest", extent=(-0.5, W - 0.5, H - 0.5, -0.5),
              vmin=0, vmax=max(float(heat.max()), 1e-6))
    if rows * cols <= 16:
        for (row, col), value in np.ndenumerate(heat):
            ax.text((col + 0.5) * W / cols - 0.5, (row + 0.5) * H / rows - 0.5, f"{value:.2f}", ha="center",
                    va="center", fontsize=7, color="white",
                    bbox={"facecolor": "black", "alpha": 0.5, "pad": 1, "linewidth": 0})


def si_format(value: float) -> str:
    """`1234567` as `1.23M`: a count with an SI suffix, three significant digits."""
    for threshold, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= threshold:
            return f"{value / threshold:.3g}{suffix}"
    return f"{value:.3g}"
