"""Figures of notebook 05: attention weights head by head, and where one token looks on the image.

Shape legend: h heads, L = N + 1 tokens, C channels, H W image, P patch side.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import torch
from matplotlib.colors import PowerNorm
from matplotlib.figure import Figure

from ... import _validate
from ..._validate import InputValueError
from ._draw import SMALLEST_FONT, draw_patch_grid, grid_shape, image_and_grid, one_sample, panels, show_image


def plot_attention_heads(weights: torch.Tensor, token_labels: list[str] | None = None,
                         title: str | None = None) -> Figure:
    """Attention weights, one heatmap per head, rows are queries (who looks), columns keys (at whom).

    Args:
        weights: `[h, L, L]` weights of one sample (or `[1, h, L, L]`, or `[L, L]` for one head);
            each row sums to 1.
        token_labels: `L` names for the tokens; by default `CLS, p0, p1, ...`.
        title: figure title; by default it states the number of heads.

    Returns:
        The figure, one colour scale for all heads, from 0 to the largest weight shown.
    """
    weights = one_sample(weights, 3)  # [h, L, L] from [1, h, L, L]
    if isinstance(weights, torch.Tensor) and weights.dim() == 2:
        weights = weights.unsqueeze(0)  # [1, L, L]
    _validate.tensor(weights, "weights", 3, "[h, L, L]")
    h, L, L_keys = weights.shape
    if L != L_keys:
        raise InputValueError(f"weights must be square per head [h, L, L] (self-attention), got "
                              f"{tuple(weights.shape)}; pass the weights of one sample, e.g. maps[layer][0].")
    if token_labels is None:
        token_labels = ["CLS"] + [f"p{n}" for n in range(L - 1)]
    if len(token_labels) != L:
        raise InputValueError(f"token_labels has {len(token_labels)} names but there are L={L} tokens; pass {L} names.")
    values = weights.detach().float().cpu()
    rows, cols = grid_shape(h)
    side = min(max(1.7 if h > 1 else 3.2, 0.18 * L + 0.9), 3.2, (9 - 1.2) / cols)  # at most 9 inches wide
    width, height = side * cols + 1.2, min(side * rows + 0.8, 12)
    fig, axes = plt.subplots(rows, cols, figsize=(width, height), squeeze=False)
    show_ticks = 0.15 * L + 0.5 <= side  # a label per token only where 8-point labels fit
    largest = max(float(values.max()), 1e-6)
    for index, ax in enumerate(axes.ravel()):
        if index >= h:
            ax.axis("off")
            continue
        image = ax.imshow(values[index].numpy(), cmap="magma", vmin=0, vmax=largest, interpolation="nearest")
        ax.set_title(f"head {index}", fontsize=9)
        ax.set_xticks(range(L) if show_ticks else [])
        ax.set_yticks(range(L) if show_ticks else [])
        if show_ticks:
            ax.set_xticklabels(token_labels, fontsize=SMALLEST_FONT, rotation=90)
            ax.set_yticklabels(token_labels, fontsize=SMALLEST_FONT)
    fig.subplots_adjust(left=0.6 / width, right=1 - 1.0 / width, bottom=0.45 / height, top=1 - 0.55 / height,
                        wspace=0.45, hspace=0.55)
    colour_axes = fig.add_axes((1 - 0.8 / width, 0.15, 0.12 / width, 0.68))
    fig.colorbar(image, cax=colour_axes, label="attention weight")
    fig.suptitle(title or f"attention weights of {h} head{'s' if h > 1 else ''}: row = query, column = key",
                 fontsize=9)
    return fig


def plot_attention_on_image(image: torch.Tensor, weights: torch.Tensor, patch_size: int, query: int,
                            title: str | None = None, fig: Figure | None = None) -> Figure:
    """Where one token looks: its attention weights laid over the image's patches, and the whole matrix.

    Args:
        image: `[C, H, W]` or `[1, C, H, W]` image.
        weights: `[L, L]` attention weights of one head, `L = 1 + N`, CLS first; each row sums to 1.
        patch_size: patch side `P` the model cuts the image with.
        query: the token whose row is shown, 0 for CLS, `n + 1` for patch `n`.
        title: figure title; by default none.
        fig: a figure from an earlier call, to redraw in place (what the attention explorer does).

    Returns:
        The figure: image with the query patch framed, the query's weights laid over the image's patches,
        the `[L, L]` matrix with the query's row framed.
    """
    picture, rows, cols = image_and_grid(image, patch_size)
    H, W = picture.shape[:2]
    _validate.tensor(weights, "weights", 2, "[L, L]")
    L = weights.shape[0]
    if weights.shape != (rows * cols + 1, rows * cols + 1):
        raise InputValueError(f"weights must be [L, L] with L = 1 + {rows * cols} patches, got "
                              f"{tuple(weights.shape)}; pass one head's weights, e.g. maps[layer][0, head].")
    _validate.int_in(query, "query", 0, L - 1, "0 is the CLS token, n + 1 is patch n")
    matrix = weights.detach().float().cpu().numpy()
    row_weights = matrix[query]
    fig, axes = panels(fig, 3, (9.0, 3.4), [1, 1, 1.1],
                       {"left": 0.02, "right": 0.97, "bottom": 0.12, "top": 0.8, "wspace": 0.3})
    draw_patch_grid(axes[0], picture, patch_size)
    if query:
        row, col = divmod(query - 1, cols)
        axes[0].add_patch(plt.Rectangle((col * patch_size - 0.5, row * patch_size - 0.5), patch_size, patch_size,
                                        fill=False, edgecolor="tab:red", linewidth=3))
        axes[0].set_title(f"query: patch {query - 1} (token {query})\nframed in red", fontsize=9, y=1.0)
    else:
        axes[0].set_title("query: the CLS token\n(it has no patch of its own)", fontsize=9, y=1.0)
    heat = row_weights[1:].reshape(rows, cols)
    show_image(axes[1], picture)
    low, high = float(heat.min()), float(heat.max())
    # one fixed scale for every head, layer and model (square root: small weights stay visible), so that a
    # near-uniform row looks uniform instead of being stretched into a pattern
    axes[1].imshow(heat, cmap="magma", alpha=0.75, interpolation="nearest", norm=PowerNorm(0.5, 0, 1),
                   extent=(-0.5, W - 0.5, H - 0.5, -0.5))
    axes[1].set_xlim(-0.5, W - 0.5)
    axes[1].set_ylim(H - 0.5, -0.5)
    axes[1].set_title(f"its weights on the patches, {low:.3f} to {high:.3f}\n(scale 0 to 1, square root); "
                      f"CLS {row_weights[0]:.3f}, uniform {1 / L:.3f}", fontsize=9, y=1.0)
    axes[1].axis("off")
    axes[2].imshow(matrix, cmap="magma", norm=PowerNorm(0.5, 0, 1), interpolation="nearest")
    axes[2].add_patch(plt.Rectangle((-0.5, query - 0.5), L, 1, fill=False, edgecolor="tab:red", linewidth=2))
    axes[2].set_xlim(-0.5, L - 0.5)
    axes[2].set_ylim(L - 0.5, -0.5)
    axes[2].set_xticks([0], ["CLS"], fontsize=SMALLEST_FONT)
    axes[2].set_yticks([0], ["CLS"], fontsize=SMALLEST_FONT)
    axes[2].set_xlabel(f"key token 0 .. {L - 1}", fontsize=8)
    axes[2].set_ylabel(f"query token 0 .. {L - 1}", fontsize=8)
    axes[2].set_title(f"all weights [L, L] = [{L}, {L}]\n(row = query, column = key)", fontsize=9, y=1.0)
    fig.suptitle(title or "", fontsize=10)
    return fig
