"""Pictures for the notebooks: matplotlib figures of patches, tokens, tables and attention.

Every function returns the `Figure` it drew (a notebook shows it); none of them changes its inputs.
Shape legend: B batch, C channels, H W image, P patch side, N patches, L tokens, D model dim.
"""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from . import _validate


def _as_image(image: torch.Tensor) -> np.ndarray:
    """`[C, H, W]` (or `[1, C, H, W]`) tensor to an `[H, W]` or `[H, W, 3]` array scaled to [0, 1]."""
    if image.dim() == 4:
        image = image[0]
    _validate.tensor(image, "image", 3, "[C, H, W]")
    array = image.detach().float().cpu()
    low, high = array.min(), array.max()
    array = (array - low) / (high - low) if high > low else torch.zeros_like(array)
    return array[0].numpy() if array.shape[0] == 1 else array.permute(1, 2, 0).numpy()


def plot_patch_grid(image: torch.Tensor, patch_size: int, title: str | None = None) -> Figure:
    """An image with its patch grid drawn on it and each patch numbered in reading order.

    Args:
        image: `[C, H, W]` or `[1, C, H, W]` image.
        patch_size: patch side `P`; it must divide `H` and `W`.
        title: figure title; by default it states the grid.
    """
    picture = _as_image(image)
    H, W = picture.shape[:2]
    _validate.positive_int(patch_size, "patch_size")
    _validate.divides(patch_size, H, "patch_size", "height")
    _validate.divides(patch_size, W, "patch_size", "width")
    fig, ax = plt.subplots(figsize=(3.2, 3.2))
    ax.imshow(picture, cmap="gray", interpolation="nearest")
    for edge in range(0, max(H, W) + 1, patch_size):
        if edge <= W:
            ax.axvline(edge - 0.5, color="tab:orange", linewidth=1.5)
        if edge <= H:
            ax.axhline(edge - 0.5, color="tab:orange", linewidth=1.5)
    cols = W // patch_size
    for index in range((H // patch_size) * cols):
        row, col = divmod(index, cols)
        ax.text(col * patch_size - 0.3, row * patch_size - 0.1, str(index), color="white", fontsize=8,
                va="top", ha="left", bbox={"facecolor": "tab:orange", "pad": 1, "linewidth": 0})
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title or f"{H}x{W} image, {H // patch_size}x{cols} patches of {patch_size}x{patch_size}")
    fig.tight_layout()
    return fig


def plot_patch_sequence(patches: torch.Tensor, patch_size: int, in_chans: int = 1,
                        title: str | None = None) -> Figure:
    """Flattened patches `[N, C*P*P]` (or `[1, N, C*P*P]`) drawn side by side as the token sequence."""
    if patches.dim() == 3:
        patches = patches[0]
    _validate.tensor(patches, "patches", 2, "[N, C*P*P]")
    N, depth = patches.shape
    if depth != in_chans * patch_size * patch_size:
        raise ValueError(f"patches have {depth} values each but in_chans*patch_size**2 = "
                         f"{in_chans * patch_size ** 2}; pass the in_chans and patch_size they were cut with.")
    fig, axes = plt.subplots(1, N, figsize=(min(0.7 * N + 0.6, 14), 1.3), squeeze=False)
    low, high = float(patches.min()), float(patches.max())
    for index, ax in enumerate(axes[0]):
        patch = patches[index].reshape(in_chans, patch_size, patch_size).detach().float()
        patch = (patch - low) / (high - low) if high > low else torch.zeros_like(patch)
        ax.imshow(patch[0] if in_chans == 1 else patch.permute(1, 2, 0).clamp(0, 1), cmap="gray",
                  vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(str(index), fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title or f"{N} patches as a sequence of tokens", fontsize=10)
    fig.tight_layout()
    return fig


def plot_matrix(matrix: torch.Tensor, title: str = "", xlabel: str = "", ylabel: str = "",
                cmap: str = "viridis", annotate: bool | None = None) -> Figure:
    """A 2-D tensor as a heatmap with a colour bar; small matrices get their values written in."""
    _validate.tensor(matrix, "matrix", 2, "[rows, cols]")
    values = matrix.detach().float().cpu().numpy()
    rows, cols = values.shape
    fig, ax = plt.subplots(figsize=(min(1 + 0.45 * cols, 10), min(0.8 + 0.4 * rows, 8)))
    image = ax.imshow(values, cmap=cmap, aspect="auto", interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    if annotate if annotate is not None else rows * cols <= 64:
        for (row, col), value in np.ndenumerate(values):
            ax.text(col, row, f"{value:.2f}", ha="center", va="center", fontsize=7, color="white")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    fig.tight_layout()
    return fig


def grid_shape(count: int) -> tuple[int, int]:
    """Rows and columns of a near-square grid holding `count` panels."""
    _validate.positive_int(count, "count")
    cols = math.ceil(math.sqrt(count))
    return math.ceil(count / cols), cols
