"""Figures of notebooks 01 and 02: an image cut into patches, the patches as a sequence, where each token's pixels
come from, the conv kernel.

Shape legend: B batch, C channels, H W image, P patch side, N patches, D model dim.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from ... import _validate
from ..._validate import InputValueError
from ...patches import image_to_patches
from ._draw import (
    GREY,
    SMALLEST_FONT,
    as_image,
    draw_patch_grid,
    draw_patch_order,
    image_and_grid,
    one_sample,
    panels,
    patch_tiles,
    show_image,
)

# tiles of a patch sequence per row: a long sequence wraps, so that the figure stays within the notebook's width
TILES_PER_ROW = 12
# the colour of the gaps between patches in a mosaic of one-channel patches (the grid's orange, pale)
GAP_COLOUR = "#f6d1a6"


def plot_patch_grid(image: torch.Tensor, patch_size: int, title: str | None = None) -> Figure:
    """An image cut by its patch grid, and beside it the same grid with each patch's number in reading order.

    Args:
        image: `[C, H, W]` or `[1, C, H, W]` image.
        patch_size: patch side `P`; it must divide `H` and `W`.
        title: figure title; by default it states the grid.

    Returns:
        The figure: the numbers sit in their own panel, so they never cover a pixel, whatever the patch size.
    """
    picture, rows, cols = image_and_grid(image, patch_size)
    H, W = picture.shape[:2]
    fig, (left, right) = plt.subplots(1, 2, figsize=(5.6, 3.1))
    draw_patch_grid(left, picture, patch_size)
    left.set_title("the image", fontsize=9)
    draw_patch_order(right, H, W, patch_size)
    right.set_title("patch n = row of [B, N, C*P*P]", fontsize=9)
    fig.suptitle(title or f"{H}x{W} image, {rows}x{cols} patches of {patch_size}x{patch_size}", fontsize=10)
    fig.tight_layout()
    return fig


def plot_patch_sequence(patches: torch.Tensor, patch_size: int, in_chans: int = 1,
                        title: str | None = None) -> Figure:
    """Flattened patches `[N, C*P*P]` (or `[1, N, C*P*P]`) drawn side by side as the token sequence, each tile
    numbered and framed; more than 12 tiles wrap onto further rows, in reading order."""
    tiles = patch_tiles(patches, patch_size, in_chans)  # [N, P, P, C]
    N = len(tiles)
    cols = min(N, TILES_PER_ROW)
    rows = -(-N // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(0.7 * cols + 0.6, 0.85 * rows + 0.55), squeeze=False)
    for index, ax in enumerate(axes.ravel()):
        if index >= N:
            ax.axis("off")
            continue
        show_image(ax, tiles[index, :, :, 0] if in_chans == 1 else tiles[index])
        ax.set_title(str(index), fontsize=SMALLEST_FONT)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title or f"{N} patches as a sequence of tokens", fontsize=10)
    fig.tight_layout()
    return fig


def plot_token_sources(image: torch.Tensor, cut: Callable[[torch.Tensor], torch.Tensor],
                       title: str | None = None) -> Figure:
    """Where the values of each token come from: each channel of the image with every token's pixels tinted in
    the token's own colour.

    `cut` is run on an image of pixel numbers of the same shape, so the figure shows what any way of cutting
    does: square patches come out as squares, a `reshape` without `permute` as horizontal bands (of one channel
    each, for a colour image).

    Args:
        image: `[1, C, H, W]` image (what the tokens are cut from), at most 4 channels.
        cut: a function from images `[1, C, H, W]` to tokens `[1, N, C*P*P]` (or `[1, N, ...]`).
        title: figure title; by default it states the number of tokens.

    Returns:
        The figure: one panel per channel, the channel in the series' grey scale under the tints, and a key of
        the token colours in reading order.
    """
    _validate.tensor(image, "image", 4, "[1, C, H, W]")
    if image.shape[0] != 1:
        raise InputValueError(f"image must be one image [1, C, H, W], got shape {tuple(image.shape)}; pick one "
                              f"with images[i:i + 1].")
    _validate.int_in(image.shape[1], "the image's channels C", 1, 4, "draw at most 4 channels, e.g. image[:, :3]")
    if not callable(cut):
        _validate.fail(TypeError, "cut", "a function from images [1, C, H, W] to tokens [1, N, ...]", cut,
                       "pass the function itself, e.g. lambda image: image.reshape(1, 4, 16)")
    _, C, H, W = image.shape
    numbers = torch.arange(C * H * W, dtype=torch.float64).reshape(1, C, H, W)  # [1, C, H, W], pixel numbers
    tokens = cut(numbers)  # [1, N, ...]
    if not isinstance(tokens, torch.Tensor) or tokens.dim() < 2 or tokens.shape[0] != 1:
        raise InputValueError("cut must return tokens [1, N, ...] for an image [1, C, H, W]; check that it keeps "
                              "the batch dimension first.")
    N = tokens.shape[1]
    owner = np.full(C * H * W, -1)
    for n, values in enumerate(tokens[0].reshape(N, -1).long().tolist()):
        owner[[value for value in values if 0 <= value < C * H * W]] = n
    owner = owner.reshape(C, H, W)  # [C, H, W]: the token that holds each pixel
    colours = plt.get_cmap("tab10" if N <= 10 else "tab20")
    tint = np.array([colours(n % colours.N)[:3] for n in range(N)])  # [N, 3]
    fig, axes = plt.subplots(1, C + 1, figsize=(2.4 * C + 1.5, 3.1), squeeze=False,
                             gridspec_kw={"width_ratios": [3] * C + [1.1]})
    names = ("red", "green", "blue") if C == 3 else tuple(f"channel {c}" for c in range(C))
    for c, ax in enumerate(axes[0, :C]):
        show_image(ax, as_image(image[0, c:c + 1]))
        overlay = np.zeros((H, W, 4))
        overlay[..., :3] = tint[owner[c].clip(min=0)]
        overlay[..., 3] = np.where(owner[c] >= 0, 0.45, 0.0)
        ax.imshow(overlay, interpolation="nearest")
        ax.axis("off")
        ax.set_title(names[c] if C > 1 else f"the pixels of each of the {N} tokens", fontsize=9)
    key = axes[0, C]
    key.imshow(tint[:, None, :], aspect="auto", interpolation="nearest")
    key.set_yticks(range(N), [f"token {n}" for n in range(N)], fontsize=SMALLEST_FONT)
    key.set_xticks([])
    key.yaxis.tick_right()
    fig.suptitle(title or f"{N} tokens: which pixels each one holds", fontsize=10)
    fig.tight_layout()
    return fig


def plot_kernel_filters(kernel: torch.Tensor, title: str | None = None) -> Figure:
    """A convolution kernel drawn filter by filter: one column per output dimension, one row per channel.

    Args:
        kernel: `[D, C, P, P]` kernel; filter `d` makes token dimension `d`.
        title: figure title; by default it states the kernel's shape.

    Returns:
        The figure: red for positive weights, blue for negative, one colour scale for all filters.
    """
    _validate.tensor(kernel, "kernel", 4, "[D, C, P, P]")
    D, C, P_rows, P_cols = kernel.shape
    values = kernel.detach().float().cpu()
    limit = float(values.abs().max()) or 1.0
    fig, axes = plt.subplots(C, D, figsize=(min(0.75 * D + 1.2, 9), 0.75 * C + 0.9), squeeze=False)
    channel_names = ("R", "G", "B") if C == 3 else tuple(f"c={c}" for c in range(C))
    for c in range(C):
        for d in range(D):
            ax = axes[c][d]
            image = ax.imshow(values[d, c].numpy(), cmap="RdBu_r", vmin=-limit, vmax=limit,
                              interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_title(f"d={d}", fontsize=8)
            if d == 0:
                ax.set_ylabel(channel_names[c], fontsize=8)
    fig.colorbar(image, ax=axes.ravel().tolist(), fraction=0.02, pad=0.02)
    fig.suptitle(title or f"kernel [D={D}, C={C}, P={P_rows}, P={P_cols}]: one {P_rows}x{P_cols} filter "
                 f"per output dimension and channel", fontsize=10)
    return fig


def patch_mosaic(patches: torch.Tensor, patch_size: int, in_chans: int = 1, per_row: int = 16) -> np.ndarray:
    """Flattened patches `[N, C*P*P]` tiled in reading order into one picture, `per_row` to a row.

    Patches are separated by a gap of blank pixels (NaN for one channel, drawn in `GAP_COLOUR`; white for three),
    so a single `imshow` draws any number of them.

    Returns:
        `[rows*(P+g)-g, cols*(P+g)-g]` (one channel) or `[..., ..., 3]` (three channels) array in [0, 1].
    """
    _validate.positive_int(per_row, "per_row")
    tiles = patch_tiles(patches, patch_size, in_chans)  # [N, P, P, C]
    N = len(tiles)
    gap = max(1, patch_size // 4)
    cols = min(N, per_row)
    rows = math.ceil(N / cols)
    step = patch_size + gap
    mosaic = np.full((rows * step - gap, cols * step - gap, in_chans), np.nan if in_chans == 1 else 1.0)
    for index in range(N):
        row, col = divmod(index, cols)
        mosaic[row * step:row * step + patch_size, col * step:col * step + patch_size] = tiles[index]
    return mosaic[..., 0] if in_chans == 1 else mosaic


def plot_patches_to_tokens(image: torch.Tensor, patch_size: int, patch_tokens: torch.Tensor | None = None,
                           title: str | None = None, fig: Figure | None = None) -> Figure:
    """One image three ways: cut by its patch grid, its patches laid out as a sequence, and the tokens.

    Args:
        image: `[C, H, W]` or `[1, C, H, W]` image, `C` 1 or 3.
        patch_size: patch side `P`; it must divide `H` and `W`.
        patch_tokens: optional `[N, D]` (or `[1, N, D]`) embedded patches, drawn as a third panel.
        title: figure title; by default none.
        fig: a figure from an earlier call, to redraw in place (what the patch explorer does).

    Returns:
        The figure: grid (numbered when there are at most 64 patches), sequence, and tokens `[N, D]`.
    """
    picture, rows, cols = image_and_grid(image, patch_size)
    H, W = picture.shape[:2]
    in_chans = 1 if picture.ndim == 2 else 3
    N = rows * cols
    tokens = None
    if patch_tokens is not None:
        tokens = _validate.tensor(one_sample(patch_tokens, 2), "patch_tokens", 2, "[N, D]")
        if tokens.shape[0] != N:
            raise InputValueError(f"patch_tokens has {tokens.shape[0]} rows but the image has N={N} patches; "
                                  f"pass the tokens of this image and patch_size.")
    channels = torch.as_tensor(picture, dtype=torch.float32)  # [H, W] or [H, W, 3]
    channels = channels.unsqueeze(0) if in_chans == 1 else channels.permute(2, 0, 1)  # [C, H, W]
    patches = image_to_patches(channels.unsqueeze(0), patch_size)[0]  # [N, C*P*P]
    count = 3 if tokens is not None else 2
    fig, axes = panels(fig, count, (2.8 * count + 0.6, 3.2), [1, 1.4, 1][:count],
                       {"left": 0.03, "right": 0.98, "bottom": 0.14, "top": 0.8, "wspace": 0.25})
    draw_patch_grid(axes[0], picture, patch_size)
    axes[0].set_title(f"{H}x{W} image, {rows}x{cols} grid\nof {patch_size}x{patch_size} patches", fontsize=9, y=1.0)
    per_row = N if N <= 8 else max(8, cols)  # one strip for a short sequence, else wrapped rows
    mosaic = patch_mosaic(patches, patch_size, in_chans, per_row=per_row)
    grey = {**GREY, "cmap": plt.get_cmap(GREY["cmap"]).with_extremes(bad=GAP_COLOUR)}
    show_image(axes[1], mosaic, **(grey if mosaic.ndim == 2 else {}))
    axes[1].set_xlim(-0.5, mosaic.shape[1] - 0.5)
    axes[1].set_ylim(mosaic.shape[0] - 0.5, -0.5)
    if N <= 32:
        step = patch_size + max(1, patch_size // 4)
        for index in range(N):
            row, col = divmod(index, min(N, per_row))
            axes[1].text(col * step + (patch_size - 1) / 2, row * step - 0.6, str(index), fontsize=SMALLEST_FONT,
                         ha="center", va="bottom")
    axes[1].set_title(f"{N} patches in reading order (the tokens' order),\neach {in_chans}x{patch_size}x"
                      f"{patch_size} = {in_chans * patch_size ** 2} values", fontsize=9, y=1.0,
                      pad=14 if N <= 32 else 6)
    axes[1].axis("off")
    if tokens is not None:
        values = tokens.detach().float().cpu().numpy()
        axes[2].imshow(values, cmap="viridis", aspect="auto", interpolation="nearest")
        axes[2].set_xlim(-0.5, values.shape[1] - 0.5)
        axes[2].set_ylim(N - 0.5, -0.5)
        axes[2].set_title(f"patch tokens [N, D] = [{N}, {values.shape[1]}]\n(one row per patch)", fontsize=9, y=1.0)
        axes[2].set_xlabel(f"dimension d = 0 .. {values.shape[1] - 1}", fontsize=8)
        axes[2].set_ylabel(f"token n = 0 .. {N - 1}", fontsize=8)
        axes[2].set_xticks([])  # no tick labels to lay out: a redraw stays fast
        axes[2].set_yticks([])
    fig.suptitle(title or "", fontsize=10)
    return fig
