"""Figures of notebooks 03 and 04: token sequences with their CLS rows, a position table and its similarity grid.

Shape legend: B batch, N patches, L = N + 1 tokens, D model dim.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from ... import _validate
from ..._validate import InputValueError
from ...analysis import position_similarity
from ._draw import SMALLEST_FONT, panels, write_values

# the most rows and columns that get a tick label each; larger matrices are labelled by matplotlib's own ticks
LABELLED = 32


def plot_matrix(matrix: torch.Tensor, title: str = "", xlabel: str = "", ylabel: str = "",
                cmap: str = "viridis", annotate: bool | None = None, row_labels: list[str] | None = None,
                col_labels: list[str] | None = None, vmin: float | None = None,
                vmax: float | None = None) -> Figure:
    """A 2-D tensor as a heatmap with a colour bar and a tick label for every row and column (up to 32 of each).

    Small matrices (at most 64 cells) get their values written in, in black on pale cells and white on dark
    ones, wide enough that the values fit.

    Args:
        matrix: `[rows, cols]` values.
        title, xlabel, ylabel: the axes' text.
        cmap: a matplotlib colour map; "RdBu_r" is centred on 0.
        annotate: write the values in; by default only for small matrices.
        row_labels, col_labels: names for the rows and columns; by default their indices.
        vmin, vmax: the ends of the colour scale; by default the data's (symmetric around 0 for "RdBu_r").
    """
    _validate.tensor(matrix, "matrix", 2, "[rows, cols]")
    values = matrix.detach().float().cpu().numpy()
    rows, cols = values.shape
    for labels, count, name in ((row_labels, rows, "row_labels"), (col_labels, cols, "col_labels")):
        if labels is not None and len(labels) != count:
            raise InputValueError(f"{name} has {len(labels)} names but the matrix has {count}; pass "
                                  f"{count} names.")
    write = annotate if annotate is not None else rows * cols <= 64
    cell = 0.62 if write else 0.4
    fig, ax = plt.subplots(figsize=(min(1.6 + cell * cols, 9), min(1.2 + 0.4 * rows, 9)))
    if cmap == "RdBu_r" and vmin is None and vmax is None:
        vmax = float(np.abs(values).max()) or 1.0
        vmin = -vmax
    image = ax.imshow(values, cmap=cmap, aspect="auto", interpolation="nearest", vmin=vmin, vmax=vmax)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    if write:
        write_values(ax, values, image.cmap, image.norm)
    for axis, count, labels in ((ax.xaxis, cols, col_labels), (ax.yaxis, rows, row_labels)):
        if count <= LABELLED:
            axis.set_ticks(range(count), labels if labels is not None else [str(i) for i in range(count)],
                           fontsize=SMALLEST_FONT)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=9)
    fig.tight_layout()
    return fig


def plot_token_sequence(tokens: torch.Tensor, num_prefix_tokens: int = 1, title: str | None = None,
                        annotate: bool | None = None) -> Figure:
    """Token sequences as one heatmap, a row per token, the CLS row of every sample boxed and labelled.

    Args:
        tokens: `[L, D]` one sequence, or `[B, L, D]` a batch (samples are stacked top to bottom).
        num_prefix_tokens: rows at the front of each sequence that are not patches (1 for the CLS token).
        title: figure title; by default it states the shape.
        annotate: write the values in; by default only for small sequences.

    Returns:
        The figure (built on `plot_matrix`).
    """
    if isinstance(tokens, torch.Tensor) and tokens.dim() == 2:
        tokens = tokens.unsqueeze(0)  # [1, L, D]
    _validate.tensor(tokens, "tokens", 3, "[B, L, D]")
    _validate.non_negative_int(num_prefix_tokens, "num_prefix_tokens", "pass 1 for a CLS token")
    B, L, D = tokens.shape
    if num_prefix_tokens > L:
        raise InputValueError(f"num_prefix_tokens={num_prefix_tokens} but the sequences have only L={L} tokens; "
                              f"pass at most {L}.")
    stacked = tokens.reshape(B * L, D)  # [B*L, D]
    names = ["CLS" if num_prefix_tokens == 1 else f"prefix {i}" for i in range(num_prefix_tokens)]
    names += [f"patch {n}" for n in range(L - num_prefix_tokens)]
    labels = [(f"{b}: " if B > 1 else "") + name for b in range(B) for name in names]
    fig = plot_matrix(stacked, title or f"tokens [B={B}, L={L}, D={D}]", xlabel="dimension d",
                      ylabel="token", annotate=annotate, row_labels=labels if B * L <= LABELLED else None)
    ax = fig.axes[0]
    for b in range(B):
        if num_prefix_tokens:
            ax.add_patch(plt.Rectangle((-0.5, b * L - 0.5), D, num_prefix_tokens, fill=False,
                                       edgecolor="tab:red", linewidth=2.5))
        if b:
            ax.axhline(b * L - 0.5, color="white", linewidth=2)
    fig.tight_layout()
    return fig


def plot_position_similarity(position_table: torch.Tensor, grid_size: int | tuple[int, int],
                             num_prefix_tokens: int = 1, title: str | None = None) -> Figure:
    """How alike the position rows of the patches are: one small map per patch, as in the paper's Figure 7.

    Panel `(r, c)` colours every patch position by the cosine similarity between its row of the table
    and the row of the patch at `(r, c)`; a table that knows the 2-D layout lights up the neighbours.

    Args:
        position_table: `[prefix + rows*cols, D]` (or `[1, prefix + rows*cols, D]`) position table.
        grid_size: patches per side, or `(rows, cols)`.
        num_prefix_tokens: rows at the front that are not patches (1 for the CLS token); they are skipped.
        title: figure title; by default it states the grid.

    Returns:
        The figure: a `rows x cols` grid of `rows x cols` maps, one colour scale from the lowest
        similarity up to 1 (the patch itself).
    """
    similarity = position_similarity(position_table, grid_size, num_prefix_tokens).cpu()  # [rows, cols, rows, cols]
    rows, cols = similarity.shape[:2]
    low = min(float(similarity.min()), 0.99)
    mosaic = np.full((rows * (rows + 1) - 1, cols * (cols + 1) - 1), np.nan)  # panels with 1-pixel gaps
    for r in range(rows):
        for c in range(cols):
            top, left = r * (rows + 1), c * (cols + 1)
            mosaic[top:top + rows, left:left + cols] = similarity[r, c].numpy()
    fig, ax = plt.subplots(figsize=(min(0.6 * cols + 1.8, 9), min(0.6 * rows + 1.0, 9)))
    colours = plt.get_cmap("viridis").with_extremes(bad="white")
    image = ax.imshow(mosaic, cmap=colours, vmin=low, vmax=1, interpolation="nearest")
    ax.set_xticks([c * (cols + 1) + (cols - 1) / 2 for c in range(cols)])
    ax.set_xticklabels([str(c) for c in range(cols)], fontsize=SMALLEST_FONT)
    ax.set_yticks([r * (rows + 1) + (rows - 1) / 2 for r in range(rows)])
    ax.set_yticklabels([str(r) for r in range(rows)], fontsize=SMALLEST_FONT)
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_xlabel("patch column")
    ax.set_ylabel("patch row")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="cosine similarity")
    ax.set_title(title or f"{rows}x{cols} patches: each panel compares one patch's position row with all",
                 fontsize=9)
    fig.tight_layout()
    return fig


def plot_token_assembly(batch_size: int, num_patches: int, position_table: torch.Tensor,
                        title: str | None = None, fig: Figure | None = None) -> Figure:
    """The CLS token put in front of each sample's patches, and the position table sliced to fit.

    Left: the batch of sequences `[B, N+1]`, CLS first. Right: the table `[max_num_token, D]` as a heatmap
    with the slice `[:N+1]` framed (it is tiled over the batch); when the sequence is longer than the
    table, the missing rows are drawn hatched in red.

    Args:
        batch_size: `B`, sequences in the batch.
        num_patches: `N`, patch tokens per sequence.
        position_table: `[max_num_token, D]` table.
        title: figure title; by default none.
        fig: a figure from an earlier call, to redraw in place (what the token explorer does).
    """
    _validate.positive_int(batch_size, "batch_size")
    _validate.positive_int(num_patches, "num_patches")
    _validate.tensor(position_table, "position_table", 2, "[max_num_token, D]")
    max_num_token, D = position_table.shape
    L = num_patches + 1
    fig, axes = panels(fig, 2, (9.0, 3.4), [1.5, 1],
                       {"left": 0.07, "right": 0.97, "bottom": 0.15, "top": 0.8, "wspace": 0.3})
    kinds = np.ones((batch_size, L))
    kinds[:, 0] = 0
    axes[0].imshow(kinds, cmap=ListedColormap(["tab:orange", "tab:blue"]), vmin=0, vmax=1, aspect="auto",
                   interpolation="nearest")
    axes[0].vlines(np.arange(L + 1) - 0.5, -0.5, batch_size - 0.5, color="white", linewidth=1)
    axes[0].hlines(np.arange(batch_size + 1) - 0.5, -0.5, L - 0.5, color="white", linewidth=3)
    if L <= 17 and batch_size * L <= 200:
        for b in range(batch_size):
            for position in range(L):
                axes[0].text(position, b, ("CLS" if L <= 9 else "C") if position == 0 else str(position - 1),
                             color="white", fontsize=SMALLEST_FONT, ha="center", va="center")
    axes[0].set_xlim(-0.5, L - 0.5)
    axes[0].set_ylim(batch_size - 0.5, -0.5)
    axes[0].set_title(f"tokens [B, N+1, D] = [{batch_size}, {L}, {D}]:\nthe CLS token (orange) in front of "
                      f"{num_patches} patch token{'s' if num_patches > 1 else ''}", fontsize=9, y=1.0)
    axes[0].set_xlabel(f"position 0 .. {L - 1} in the sequence", fontsize=8)
    axes[0].set_ylabel(f"sample b = 0 .. {batch_size - 1}", fontsize=8)
    axes[0].set_xticks([])  # the cells are labelled; no tick labels to lay out
    axes[0].set_yticks([])
    table = position_table.detach().float().cpu().numpy()
    limit = float(np.abs(table).max()) or 1.0
    axes[1].imshow(table, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto", interpolation="nearest",
                   extent=(-0.5, D - 0.5, max_num_token - 0.5, -0.5))
    axes[1].add_patch(plt.Rectangle((-0.5, -0.5), D, min(L, max_num_token), fill=False, edgecolor="tab:green",
                                    linewidth=2.5))
    if L > max_num_token:
        axes[1].add_patch(plt.Rectangle((-0.5, max_num_token - 0.5), D, L - max_num_token, facecolor="none",
                                        edgecolor="tab:red", hatch="//", linewidth=1.5))
        axes[1].set_title(f"position table [{max_num_token}, {D}]: {L} rows needed,\n"
                          f"only {max_num_token} exist (red)", fontsize=9, color="tab:red", y=1.0)
    else:
        axes[1].set_title(f"position table [{max_num_token}, {D}]: rows [:{L}] (green)\n"
                          f"are tiled x{batch_size} and added", fontsize=9, color="black", y=1.0)
    axes[1].set_ylim(max(L, max_num_token) - 0.5, -0.5)
    axes[1].set_xlim(-0.5, D - 0.5)
    axes[1].set_xlabel(f"dimension d = 0 .. {D - 1}", fontsize=8)
    axes[1].set_ylabel(f"position (row) 0 .. {max(L, max_num_token) - 1}", fontsize=8)
    axes[1].set_xticks([])
    axes[1].set_yticks([])
    fig.suptitle(title or "", fontsize=10)
    return fig
