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
    if isinstance(image, torch.Tensor) and image.dim() == 4:
        if image.shape[0] != 1:
            raise ValueError(f"image must be one image [C, H, W] or [1, C, H, W], got shape {tuple(image.shape)}; "
                             f"pick one with images[i].")
        image = image[0]  # [C, H, W]
    _validate.tensor(image, "image", 3, "[C, H, W]")
    if image.shape[0] not in (1, 3):
        raise ValueError(f"image must have 1 (grayscale) or 3 (RGB) channels, got {image.shape[0]}; "
                         f"draw one channel with image[:1].")
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
    if isinstance(patches, torch.Tensor) and patches.dim() == 3:
        patches = patches[0]  # [N, C*P*P]
    _validate.tensor(patches, "patches", 2, "[N, C*P*P]")
    _validate.positive_int(patch_size, "patch_size")
    if isinstance(in_chans, bool) or in_chans not in (1, 3):
        raise ValueError(f"in_chans must be 1 (grayscale) or 3 (RGB) to draw patches, got {in_chans!r}.")
    N, depth = patches.shape
    if N == 0:
        raise ValueError("patches is empty; pass at least one patch [N, C*P*P] with N >= 1.")
    if depth != in_chans * patch_size * patch_size:
        raise ValueError(f"patches have {depth} values each but in_chans*patch_size**2 = "
                         f"{in_chans * patch_size ** 2}; pass the in_chans and patch_size they were cut with.")
    fig, axes = plt.subplots(1, N, figsize=(min(0.7 * N + 0.6, 14), 1.3), squeeze=False)
    values = patches.detach().float().cpu()  # [N, C*P*P]
    low, high = float(values.min()), float(values.max())
    for index, ax in enumerate(axes[0]):
        patch = values[index].reshape(in_chans, patch_size, patch_size)  # [C, P, P]
        patch = (patch - low) / (high - low) if high > low else torch.zeros_like(patch)
        ax.imshow((patch[0] if in_chans == 1 else patch.permute(1, 2, 0)).numpy(), cmap="gray",
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
    fig, axes = plt.subplots(C, D, figsize=(min(0.75 * D + 1.2, 14), 0.75 * C + 0.9), squeeze=False)
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
    if isinstance(num_prefix_tokens, bool) or not isinstance(num_prefix_tokens, int) or num_prefix_tokens < 0:
        raise ValueError(f"num_prefix_tokens must be an int >= 0, got {num_prefix_tokens!r}; pass 1 for a CLS token.")
    B, L, D = tokens.shape
    if num_prefix_tokens > L:
        raise ValueError(f"num_prefix_tokens={num_prefix_tokens} but the sequences have only L={L} tokens; "
                         f"pass at most {L}.")
    stacked = tokens.reshape(B * L, D)  # [B*L, D]
    fig = plot_matrix(stacked, title or f"tokens [B={B}, L={L}, D={D}]", xlabel="dimension d",
                      ylabel="token", annotate=annotate)
    ax = fig.axes[0]
    names = ["CLS" if num_prefix_tokens == 1 else f"prefix {i}" for i in range(num_prefix_tokens)]
    names += [f"patch {n}" for n in range(L - num_prefix_tokens)]
    labels = [(f"{b}: " if B > 1 else "") + name for b in range(B) for name in names]
    ax.set_yticks(range(B * L))
    ax.set_yticklabels(labels, fontsize=7)
    ax.set_xticks(range(D) if D <= 16 else ax.get_xticks())
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
    if isinstance(position_table, torch.Tensor) and position_table.dim() == 3 and position_table.shape[0] == 1:
        position_table = position_table[0]  # [L, D]
    _validate.tensor(position_table, "position_table", 2, "[L, D]")
    rows, cols = _validate.pair(grid_size, "grid_size")
    if isinstance(num_prefix_tokens, bool) or not isinstance(num_prefix_tokens, int) or num_prefix_tokens < 0:
        raise ValueError(f"num_prefix_tokens must be an int >= 0, got {num_prefix_tokens!r}; "
                         f"pass 1 for a CLS token.")
    if position_table.shape[0] != num_prefix_tokens + rows * cols:
        raise ValueError(f"position_table has {position_table.shape[0]} rows but a {rows}x{cols} grid after "
                         f"{num_prefix_tokens} prefix rows needs {num_prefix_tokens + rows * cols}; pass the grid "
                         f"the table was made for.")
    patch_rows = position_table[num_prefix_tokens:].detach().float().cpu()  # [N, D]
    unit_rows = patch_rows / patch_rows.norm(dim=1, keepdim=True).clamp_min(1e-12)  # [N, D]
    similarity = (unit_rows @ unit_rows.T).reshape(rows, cols, rows, cols)  # [rows, cols, rows, cols]
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
    ax.set_xticklabels([str(c) for c in range(cols)], fontsize=7)
    ax.set_yticks([r * (rows + 1) + (rows - 1) / 2 for r in range(rows)])
    ax.set_yticklabels([str(r) for r in range(rows)], fontsize=7)
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
    if isinstance(weights, torch.Tensor) and weights.dim() == 4 and weights.shape[0] == 1:
        weights = weights[0]  # [h, L, L]
    if isinstance(weights, torch.Tensor) and weights.dim() == 2:
        weights = weights.unsqueeze(0)  # [1, L, L]
    _validate.tensor(weights, "weights", 3, "[h, L, L]")
    h, L, L_keys = weights.shape
    if L != L_keys:
        raise ValueError(f"weights must be square per head [h, L, L] (self-attention), got {tuple(weights.shape)}.")
    if token_labels is None:
        token_labels = ["CLS"] + [f"p{n}" for n in range(L - 1)]
    if len(token_labels) != L:
        raise ValueError(f"token_labels has {len(token_labels)} names but there are L={L} tokens; pass {L} names.")
    values = weights.detach().float().cpu()
    rows, cols = grid_shape(h)
    side = min(max(1.7 if h > 1 else 3.2, 0.3 * L + 0.8), 4.0)
    width, height = min(side * cols + 1.2, 14), min(side * rows + 0.8, 12)
    fig, axes = plt.subplots(rows, cols, figsize=(width, height), squeeze=False)
    show_ticks = L <= 20
    largest = max(float(values.max()), 1e-6)
    for index, ax in enumerate(axes.ravel()):
        if index >= h:
            ax.axis("off")
            continue
        image = ax.imshow(values[index].numpy(), cmap="magma", vmin=0, vmax=largest, interpolation="nearest")
        ax.set_title(f"head {index}", fontsize=8)
        ax.set_xticks(range(L) if show_ticks else [])
        ax.set_yticks(range(L) if show_ticks else [])
        if show_ticks:
            ax.set_xticklabels(token_labels, fontsize=6, rotation=90)
            ax.set_yticklabels(token_labels, fontsize=6)
    fig.subplots_adjust(left=0.6 / width, right=1 - 1.0 / width, bottom=0.45 / height, top=1 - 0.55 / height,
                        wspace=0.45, hspace=0.55)
    colour_axes = fig.add_axes((1 - 0.8 / width, 0.15, 0.12 / width, 0.68))
    fig.colorbar(image, cax=colour_axes, label="attention weight")
    fig.suptitle(title or f"attention weights of {h} head{'s' if h > 1 else ''}: row = query, column = key",
                 fontsize=9)
    return fig


def plot_parameter_breakdown(parts: dict[str, int], title: str | None = None) -> Figure:
    """Parameters per part of a model as horizontal bars on a log scale, each labelled with count and share.

    Args:
        parts: part name to parameter count, e.g. `vitsteps.parameter_formula(config)`; a `"total"` entry
            is used for the shares and not drawn.
        title: figure title; by default it states the total.

    Returns:
        The figure.
    """
    if not isinstance(parts, dict) or not parts:
        raise TypeError(f"parts must be a non-empty dict of part name to count, got {type(parts).__name__}; "
                        f"pass vitsteps.parameter_formula(config).")
    counts = {name: count for name, count in parts.items() if name != "total"}
    if not counts:
        raise ValueError(f"parts must hold at least one part besides 'total', got {parts!r}; pass "
                         f"vitsteps.parameter_formula(config).")
    for name, count in counts.items():
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"parts[{name!r}] must be a count (int >= 0), got {count!r}.")
    total = parts.get("total", sum(counts.values()))
    names = list(counts)
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(names) + 1.2))
    ax.barh(range(len(names)), [max(counts[name], 1) for name in names], color="tab:blue", log=True)
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names)
    ax.invert_yaxis()
    for position, name in enumerate(names):
        share = counts[name] / total if total else 0.0
        ax.text(max(counts[name], 1) * 1.15, position, f"{counts[name]:,} ({share:.1%})", va="center", fontsize=8)
    ax.set_xlim(0.8, max(max(counts.values()), 1) * 40)
    ax.set_xlabel("parameters (log scale)")
    ax.set_title(title or f"{total:,} parameters by part")
    fig.tight_layout()
    return fig


def plot_class_scores(logits: torch.Tensor, label: int | None = None, title: str | None = None) -> Figure:
    """One sample's logits and the probabilities softmax makes of them, side by side, the true class marked.

    Args:
        logits: `[K]` or `[1, K]` scores of one sample.
        label: the true class, drawn in orange; None for none.
        title: figure title.

    Returns:
        The figure: logits on the left, probabilities on the right with the uniform `1/K` dashed.
    """
    if isinstance(logits, torch.Tensor) and logits.dim() == 2 and logits.shape[0] == 1:
        logits = logits[0]  # [K]
    _validate.tensor(logits, "logits", 1, "[K]")
    K = logits.shape[0]
    if label is not None:
        if isinstance(label, np.integer) or (isinstance(label, torch.Tensor) and label.numel() == 1
                                             and not label.is_floating_point()):
            label = int(label)  # e.g. labels[0]
        if isinstance(label, bool) or not isinstance(label, int):
            raise TypeError(f"label must be a class index (an int), got {label!r}; pass e.g. int(labels[0]).")
        if not 0 <= label < K:
            raise ValueError(f"label must be a class index in [0, {K}), got {label}.")
    scores = logits.detach().float().cpu()  # [K]
    probabilities = scores.softmax(dim=0)  # [K]
    colours = ["tab:orange" if k == label else "tab:blue" for k in range(K)]
    fig, (left, right) = plt.subplots(1, 2, figsize=(min(0.35 * K + 4, 12), 2.6))
    left.bar(range(K), scores.numpy(), color=colours)
    left.axhline(0, color="black", linewidth=0.8)
    left.set_title("logits", fontsize=9)
    right.bar(range(K), probabilities.numpy(), color=colours)
    right.axhline(1 / K, color="gray", linestyle="--", linewidth=1, label=f"uniform 1/{K}")
    right.set_title("softmax probabilities", fontsize=9)
    right.legend(fontsize=7, loc="upper right")
    for ax in (left, right):
        ax.set_xticks(range(K))
        ax.set_xlabel("class")
    if title or label is not None:
        fig.suptitle(title or f"true class {label} in orange", fontsize=10)
    fig.tight_layout()
    return fig


def _panels(fig: Figure | None, count: int, figsize: tuple[float, float], width_ratios: list[float],
            margins: dict[str, float]) -> tuple[Figure, list[plt.Axes]]:
    """`count` side-by-side axes to draw on.

    With `fig` from an earlier call of the same plotting function, its axes are emptied of what was drawn
    (images, lines, texts, shapes) and reused: no new axes, so a widget redraws much faster. Otherwise a
    new figure is made.
    """
    if fig is not None:
        if not isinstance(fig, Figure):
            raise TypeError(f"fig must be a matplotlib Figure made by this function, or None; got "
                            f"{type(fig).__name__}.")
        if len(fig.axes) == count:
            for ax in fig.axes:
                for artist in (*ax.images, *ax.lines, *ax.collections, *ax.patches, *ax.texts):
                    artist.remove()
            return fig, list(fig.axes)
    fig, axes = plt.subplots(1, count, figsize=figsize, squeeze=False, gridspec_kw={"width_ratios": width_ratios})
    fig.subplots_adjust(**margins)
    return fig, list(axes[0])


def _check_image(image: object) -> None:
    """Raise naming `image` unless it is a tensor `_as_image` can draw."""
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"image must be a torch.Tensor [C, H, W] or [1, C, H, W], got {type(image).__name__}; "
                        f"convert it with torch.as_tensor(..., dtype=torch.float32).")


def _draw_patch_grid(ax: plt.Axes, picture: np.ndarray, patch_size: int, numbers: bool) -> None:
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


def patch_mosaic(patches: torch.Tensor, patch_size: int, in_chans: int = 1, per_row: int = 16) -> np.ndarray:
    """Flattened patches `[N, C*P*P]` tiled in reading order into one picture, `per_row` to a row.

    Patches are separated by a gap of blank pixels (NaN for one channel, white for three), so a single
    `imshow` draws any number of them.

    Returns:
        `[rows*(P+g)-g, cols*(P+g)-g]` (one channel) or `[..., ..., 3]` (three channels) array in [0, 1].
    """
    if isinstance(patches, torch.Tensor) and patches.dim() == 3:
        patches = patches[0]
    _validate.tensor(patches, "patches", 2, "[N, C*P*P]")
    _validate.positive_int(patch_size, "patch_size")
    _validate.positive_int(per_row, "per_row")
    if in_chans not in (1, 3):
        raise ValueError(f"in_chans must be 1 (grayscale) or 3 (RGB) to draw patches, got {in_chans!r}.")
    N, depth = patches.shape
    if depth != in_chans * patch_size * patch_size:
        raise ValueError(f"patches have {depth} values each but in_chans*patch_size**2 = "
                         f"{in_chans * patch_size ** 2}; pass the in_chans and patch_size they were cut with.")
    values = patches.detach().float().cpu()
    low, high = float(values.min()), float(values.max())
    values = (values - low) / (high - low) if high > low else torch.zeros_like(values)
    tiles = values.reshape(N, in_chans, patch_size, patch_size).permute(0, 2, 3, 1).numpy()  # [N, P, P, C]
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
    _check_image(image)
    picture = _as_image(image)
    H, W = picture.shape[:2]
    in_chans = 1 if picture.ndim == 2 else 3
    _validate.positive_int(patch_size, "patch_size")
    _validate.divides(patch_size, H, "patch_size", "height")
    _validate.divides(patch_size, W, "patch_size", "width")
    rows, cols = H // patch_size, W // patch_size
    N = rows * cols
    tokens = None
    if patch_tokens is not None:
        tokens = patch_tokens[0] if isinstance(patch_tokens, torch.Tensor) and patch_tokens.dim() == 3 \
            else patch_tokens
        _validate.tensor(tokens, "patch_tokens", 2, "[N, D]")
        if tokens.shape[0] != N:
            raise ValueError(f"patch_tokens has {tokens.shape[0]} rows but the image has N={N} patches; "
                             f"pass the tokens of this image and patch_size.")
    channels = torch.as_tensor(picture, dtype=torch.float32)
    channels = channels.unsqueeze(0) if in_chans == 1 else channels.permute(2, 0, 1)  # [C, H, W]
    patches = torch.nn.functional.unfold(channels.unsqueeze(0), kernel_size=patch_size,
                                         stride=patch_size)[0].T  # [N, C*P*P]
    panels = 3 if tokens is not None else 2
    fig, axes = _panels(fig, panels, (3.1 * panels + 0.6, 3.2), [1, 1.4, 1][:panels],
                        {"left": 0.03, "right": 0.98, "bottom": 0.14, "top": 0.8, "wspace": 0.25})
    _draw_patch_grid(axes[0], picture, patch_size, numbers=N <= 64)
    axes[0].set_title(f"{H}x{W} image, {rows}x{cols} grid\nof {patch_size}x{patch_size} patches", fontsize=9, y=1.0)
    per_row = N if N <= 8 else max(8, cols)  # one strip for a short sequence, else wrapped rows
    mosaic = patch_mosaic(patches, patch_size, in_chans, per_row=per_row)
    axes[1].imshow(mosaic, cmap=plt.get_cmap("gray").with_extremes(bad="white"), vmin=0, vmax=1,
                   interpolation="nearest")
    axes[1].set_xlim(-0.5, mosaic.shape[1] - 0.5)
    axes[1].set_ylim(mosaic.shape[0] - 0.5, -0.5)
    if N <= 32:
        step = patch_size + max(1, patch_size // 4)
        for index in range(N):
            row, col = divmod(index, min(N, per_row))
            axes[1].text(col * step + (patch_size - 1) / 2, row * step - 0.6, str(index), fontsize=7,
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
    from matplotlib.colors import ListedColormap

    _validate.positive_int(batch_size, "batch_size")
    _validate.positive_int(num_patches, "num_patches")
    _validate.tensor(position_table, "position_table", 2, "[max_num_token, D]")
    max_num_token, D = position_table.shape
    L = num_patches + 1
    fig, axes = _panels(fig, 2, (9.0, 3.4), [1.5, 1],
                        {"left": 0.07, "right": 0.97, "bottom": 0.15, "top": 0.8, "wspace": 0.3})
    kinds = np.ones((batch_size, L))
    kinds[:, 0] = 0
    axes[0].imshow(kinds, cmap=ListedColormap(["tab:orange", "tab:blue"]), vmin=0, vmax=1, aspect="auto",
                   interpolation="nearest")
    axes[0].vlines(np.arange(L + 1) - 0.5, -0.5, batch_size - 0.5, color="white", linewidth=1)
    axes[0].hlines(np.arange(batch_size + 1) - 0.5, -0.5, L - 0.5, color="white", linewidth=3)
    if L <= 24 and batch_size * L <= 200:
        for b in range(batch_size):
            for position in range(L):
                axes[0].text(position, b, "CLS" if position == 0 else str(position - 1), color="white",
                             fontsize=6 if position == 0 else 7, ha="center", va="center")
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
    _check_image(image)
    picture = _as_image(image)
    H, W = picture.shape[:2]
    _validate.positive_int(patch_size, "patch_size")
    _validate.divides(patch_size, H, "patch_size", "height")
    _validate.divides(patch_size, W, "patch_size", "width")
    rows, cols = H // patch_size, W // patch_size
    _validate.tensor(weights, "weights", 2, "[L, L]")
    L = weights.shape[0]
    if weights.shape != (rows * cols + 1, rows * cols + 1):
        raise ValueError(f"weights must be [L, L] with L = 1 + {rows * cols} patches, got "
                         f"{tuple(weights.shape)}; pass one head's weights, e.g. maps[layer][0, head].")
    if isinstance(query, bool) or not isinstance(query, int) or not 0 <= query < L:
        raise ValueError(f"query must be an int in 0..{L - 1} (0 is CLS), got {query!r}.")
    matrix = weights.detach().float().cpu().numpy()
    row_weights = matrix[query]
    fig, axes = _panels(fig, 3, (10.0, 3.4), [1, 1, 1.1],
                        {"left": 0.02, "right": 0.97, "bottom": 0.12, "top": 0.8, "wspace": 0.3})
    _draw_patch_grid(axes[0], picture, patch_size, numbers=False)
    if query:
        row, col = divmod(query - 1, cols)
        axes[0].add_patch(plt.Rectangle((col * patch_size - 0.5, row * patch_size - 0.5), patch_size, patch_size,
                                        fill=False, edgecolor="tab:red", linewidth=3))
        axes[0].set_title(f"query: patch {query - 1} (token {query})\nframed in red", fontsize=9, y=1.0)
    else:
        axes[0].set_title("query: the CLS token\n(it has no patch of its own)", fontsize=9, y=1.0)
    heat = row_weights[1:].reshape(rows, cols)
    axes[1].imshow(picture, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    low, high = float(heat.min()), float(heat.max())
    axes[1].imshow(heat, cmap="magma", alpha=0.75, interpolation="nearest", vmin=low,
                   vmax=high if high > low else low + 1, extent=(-0.5, W - 0.5, H - 0.5, -0.5))
    axes[1].set_xlim(-0.5, W - 0.5)
    axes[1].set_ylim(H - 0.5, -0.5)
    axes[1].set_title(f"its weights on the patches: {low:.3f} (dark)\nto {high:.3f} (bright); "
                      f"CLS gets {row_weights[0]:.3f}, uniform {1 / L:.3f}", fontsize=9, y=1.0)
    axes[1].axis("off")
    axes[2].imshow(matrix, cmap="magma", vmin=0, interpolation="nearest")
    axes[2].add_patch(plt.Rectangle((-0.5, query - 0.5), L, 1, fill=False, edgecolor="tab:red", linewidth=2))
    axes[2].set_xlim(-0.5, L - 0.5)
    axes[2].set_ylim(L - 0.5, -0.5)
    axes[2].set_xticks([0], ["CLS"], fontsize=7)
    axes[2].set_yticks([0], ["CLS"], fontsize=7)
    axes[2].set_xlabel(f"key token 0 .. {L - 1}", fontsize=8)
    axes[2].set_ylabel(f"query token 0 .. {L - 1}", fontsize=8)
    axes[2].set_title(f"all weights [L, L] = [{L}, {L}]\n(row = query, column = key)", fontsize=9, y=1.0)
    fig.suptitle(title or "", fontsize=10)
    return fig


def _si(value: float) -> str:
    """`1234567` as `1.23M`: a count with an SI suffix, three significant digits."""
    for threshold, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= threshold:
            return f"{value / threshold:.3g}{suffix}"
    return f"{value:.3g}"


def plot_cost_breakdown(parameters: dict[str, int], flops: dict[str, int], title: str | None = None,
                        fig: Figure | None = None) -> Figure:
    """Where a model's parameters and its FLOPs go, part by part, as two bar charts.

    Args:
        parameters: part name to parameter count, e.g. `parameter_formula(config)` (a `"total"` entry is
            used for the shares and not drawn).
        flops: part name to floating-point operations per image (a `"total"` entry likewise).
        title: figure title; by default none.
        fig: a figure from an earlier call, to redraw in place (what the model calculator does).
    """
    for name, parts in (("parameters", parameters), ("flops", flops)):
        if not isinstance(parts, dict) or not parts:
            raise TypeError(f"{name} must be a non-empty dict of part name to count, got {parts!r}.")
        if not set(parts) - {"total"}:
            raise ValueError(f"{name} must hold at least one part besides 'total', got {parts!r}; pass e.g. "
                             f"parameter_formula(config).")
        for part, count in parts.items():
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise ValueError(f"{name}[{part!r}] must be a count (an int >= 0), got {count!r}.")
    fig, axes = _panels(fig, 2, (9.0, 2.8), [1, 1],
                        {"left": 0.22, "right": 0.97, "bottom": 0.06, "top": 0.85, "wspace": 1.0})
    for ax, parts, colour, heading in ((axes[0], parameters, "tab:blue", "parameters"),
                                       (axes[1], flops, "tab:purple", "FLOPs per image")):
        names = [name for name in parts if name != "total"]
        values = [parts[name] for name in names]
        total = parts.get("total", sum(values))
        positions = np.arange(len(names))
        ax.barh(positions, values, color=colour)
        # name and share in one tick label: one text per bar keeps a redraw fast
        ax.set_yticks(positions, [f"{name}  {_si(value)} ({value / total if total else 0:.0%})"
                                  for name, value in zip(names, values, strict=True)], fontsize=8)
        ax.set_ylim(len(names) - 0.5, -0.5)
        ax.set_xticks([])
        ax.set_xlim(0, max(values) * 1.05 if max(values) > 0 else 1)
        ax.set_title(f"{heading}: {_si(total)}", fontsize=9, y=1.0)
        for side in ("top", "right", "bottom"):
            ax.spines[side].set_visible(False)
    fig.suptitle(title or "", fontsize=10)
    return fig


# --- training and inside-the-model figures (notebooks 07 and 08) ---


def plot_training_curves(history: object, baselines: dict[str, float] | None = None,
                         title: str | None = None) -> Figure:
    """Loss and accuracy per epoch, train and test side by side, with optional baseline accuracies as lines.

    Args:
        history: a `vitsteps.train.History` (lists `epoch`, `train_loss`, `train_accuracy`, and optionally
            `test_loss`, `test_accuracy`).
        baselines: name to test accuracy in [0, 1], drawn as dashed horizontal lines, e.g. `{"SVC": 0.99}`.
        title: figure title.
    """
    for name in ("epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy"):
        if not isinstance(getattr(history, name, None), list):
            raise TypeError(f"history must be a vitsteps.train.History (with a list {name!r}), got "
                            f"{type(history).__name__}; pass what train() returned.")
    if not history.epoch:
        raise ValueError("history is empty: train for at least one epoch first.")
    epochs_run = len(history.epoch)
    names = ("train_loss", "train_accuracy") + (("test_loss", "test_accuracy")
                                                 if history.test_loss or history.test_accuracy else ())
    wrong = {name: len(getattr(history, name)) for name in names if len(getattr(history, name)) != epochs_run}
    if wrong:
        raise ValueError(f"history has {epochs_run} epochs but these lists have other lengths: {wrong}; "
                         f"pass what train() returned.")
    if baselines is not None and not isinstance(baselines, dict):
        raise TypeError(f"baselines must be a dict of name to accuracy, got {type(baselines).__name__}.")
    for name, accuracy in (baselines or {}).items():
        if isinstance(accuracy, bool) or not isinstance(accuracy, (int, float)) or not 0 <= accuracy <= 1:
            raise ValueError(f"baselines[{name!r}] must be an accuracy in [0, 1], got {accuracy!r}.")
    epochs = history.epoch
    fig, (loss_ax, accuracy_ax) = plt.subplots(1, 2, figsize=(9.5, 3.2))
    loss_ax.plot(epochs, history.train_loss, label="train (smoothed labels, augmented)", color="tab:blue")
    accuracy_ax.plot(epochs, [100 * a for a in history.train_accuracy], label="train (augmented)",
                     color="tab:blue")
    if history.test_loss:
        loss_ax.plot(epochs, history.test_loss, label="test", color="tab:orange")
        accuracy_ax.plot(epochs, [100 * a for a in history.test_accuracy], label="test", color="tab:orange")
    for index, (name, accuracy) in enumerate((baselines or {}).items()):
        accuracy_ax.axhline(100 * accuracy, linestyle="--", linewidth=1, color=f"C{index + 2}",
                            label=f"{name} {100 * accuracy:.1f}%")
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("cross-entropy")
    loss_ax.set_title("loss", fontsize=10)
    accuracy_ax.set_xlabel("epoch")
    accuracy_ax.set_ylabel("accuracy (%)")
    accuracy_ax.set_title("accuracy", fontsize=10)
    low = min([100 * a for a in history.train_accuracy + history.test_accuracy][len(epochs) // 2:] or [0])
    accuracy_ax.set_ylim(max(0.0, min(low, 100 * min((baselines or {1: 1}).values())) - 3), 100.5)
    for ax in (loss_ax, accuracy_ax):
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_confusion_matrix(matrix: torch.Tensor, class_names: list[str] | tuple[str, ...] | None = None,
                          title: str | None = None) -> Figure:
    """Counts of true (rows) against predicted (columns) classes; the diagonal holds the correct answers.

    Args:
        matrix: `[K, K]` counts, e.g. from `vitsteps.train.confusion_matrix`.
        class_names: `K` names; by default `0..K-1`.
        title: figure title; by default it states the accuracy.
    """
    if not isinstance(matrix, torch.Tensor):
        raise TypeError(f"matrix must be a square [K, K] tensor of counts, got {type(matrix).__name__}; "
                        f"use train.confusion_matrix().")
    if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"matrix must be a square [K, K] tensor of counts, got shape {tuple(matrix.shape)}; "
                         f"use train.confusion_matrix().")
    if bool((matrix < 0).any()):
        raise ValueError(f"matrix must hold counts (>= 0), got a smallest entry of {matrix.min().item()}; "
                         f"use train.confusion_matrix().")
    K = matrix.shape[0]
    names = [str(k) for k in range(K)] if class_names is None else [str(name) for name in class_names]
    if len(names) != K:
        raise ValueError(f"class_names has {len(names)} names but the matrix has K={K} classes.")
    counts = matrix.detach().cpu().long().numpy()
    total = int(counts.sum())
    fig, ax = plt.subplots(figsize=(0.42 * K + 1.8, 0.42 * K + 1.4))
    ax.imshow(np.log1p(counts), cmap="Blues", interpolation="nearest")
    for (row, col), count in np.ndenumerate(counts):
        if count:
            ax.text(col, row, str(count), ha="center", va="center", fontsize=7,
                    color="white" if row == col else "tab:red")
    ax.set_xticks(range(K), names, fontsize=8)
    ax.set_yticks(range(K), names, fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    correct = int(np.trace(counts))
    ax.set_title(title or f"{correct} of {total} right ({100 * correct / max(total, 1):.1f}%); "
                 f"mistakes in red", fontsize=9)
    fig.tight_layout()
    return fig


def plot_misclassified(images: torch.Tensor, labels: torch.Tensor, predictions: torch.Tensor,
                       max_images: int = 16, title: str | None = None) -> Figure:
    """The images the model got wrong, each titled `true -> predicted`.

    Args:
        images: `[n, C, H, W]` images.
        labels: `[n]` true classes.
        predictions: `[n]` predicted classes.
        max_images: at most this many panels, in the order of `images`.
        title: figure title; by default it states how many were wrong.
    """
    _validate.tensor(images, "images", 4, "[n, C, H, W]")
    _validate.positive_int(max_images, "max_images")
    for name, value in (("labels", labels), ("predictions", predictions)):
        if not isinstance(value, torch.Tensor) or value.shape != (len(images),):
            raise ValueError(f"{name} must be a [n] tensor with n={len(images)} (one per image), got "
                             f"{getattr(value, 'shape', type(value).__name__)}.")
    wrong = (labels != predictions).nonzero().flatten().tolist()
    shown = wrong[:max_images]
    rows, cols = grid_shape(max(len(shown), 1))
    fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols + 0.3, 1.45 * rows + 0.5), squeeze=False)
    for panel, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if panel < len(shown):
            index = shown[panel]
            ax.imshow(_as_image(images[index]), cmap="gray_r", interpolation="nearest")
            ax.set_title(f"{int(labels[index])} -> {int(predictions[index])}", fontsize=9, color="tab:red")
    if not shown:
        axes[0][0].text(0.5, 0.5, "no mistakes", ha="center", va="center")
    fig.suptitle(title or f"{len(wrong)} of {len(images)} wrong (true -> predicted)"
                 + (f", first {len(shown)} shown" if len(wrong) > len(shown) else ""), fontsize=10)
    fig.tight_layout()
    return fig


def _overlay_map(ax: plt.Axes, picture: np.ndarray, heat: np.ndarray) -> None:
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


def plot_cls_attention_grid(image: torch.Tensor, cls_maps: torch.Tensor, title: str | None = None) -> Figure:
    """Where the CLS token looks in every layer (rows) and head (columns), laid over the image.

    Args:
        image: `[C, H, W]` or `[1, C, H, W]` image.
        cls_maps: `[depth, h, rows, cols]` CLS-to-patch weights of this image, e.g.
            `analysis.cls_attention(maps, grid)[:, 0]`.
        title: figure title.
    """
    picture = _as_image(image)
    H, W = picture.shape[:2]
    _validate.tensor(cls_maps, "cls_maps", 4, "[depth, h, rows, cols]")
    depth, heads, rows, cols = cls_maps.shape
    if H % rows or W % cols:
        raise ValueError(f"cls_maps has a {rows}x{cols} grid that does not tile the {H}x{W} image; pass the "
                         f"maps of the model that saw this image.")
    values = cls_maps.detach().float().cpu().numpy()
    fig, axes = plt.subplots(depth, heads + 1, figsize=(1.35 * (heads + 1) + 0.4, 1.35 * depth + 0.6),
                             squeeze=False)
    for layer in range(depth):
        axes[layer][0].imshow(picture, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        axes[layer][0].set_ylabel(f"layer {layer}", fontsize=8)
        for head in range(heads):
            ax = axes[layer][head + 1]
            _overlay_map(ax, picture, values[layer, head])
            if layer == 0:
                ax.set_title(f"head {head}", fontsize=8)
        for ax in axes[layer]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0][0].set_title("image", fontsize=8)
    fig.suptitle(title or "CLS attention over the patches, per layer and head (brighter = more)", fontsize=9)
    fig.tight_layout()
    return fig


def plot_rollout(images: torch.Tensor, rollout_maps: torch.Tensor, labels: list[str] | None = None,
                 title: str | None = None) -> Figure:
    """Attention rollout maps over their images: one column per image, the image above its overlay.

    Args:
        images: `[B, C, H, W]` images.
        rollout_maps: `[B, rows, cols]` CLS rollout on the patch grid (`analysis.cls_rollout_map`).
        labels: `B` captions, e.g. the predicted classes.
        title: figure title.
    """
    _validate.tensor(images, "images", 4, "[B, C, H, W]")
    _validate.tensor(rollout_maps, "rollout_maps", 3, "[B, rows, cols]")
    B = len(images)
    if len(rollout_maps) != B:
        raise ValueError(f"images has {B} images but rollout_maps has {len(rollout_maps)} maps; pass one per image.")
    if labels is not None and len(labels) != B:
        raise ValueError(f"labels has {len(labels)} captions for {B} images.")
    H, W = images.shape[-2:]
    rows, cols = rollout_maps.shape[-2:]
    if H % rows or W % cols:
        raise ValueError(f"rollout_maps has a {rows}x{cols} grid that does not tile the {H}x{W} images; pass the "
                         f"maps of the model that saw these images.")
    fig, axes = plt.subplots(2, B, figsize=(1.5 * B + 0.4, 3.4), squeeze=False)
    for index in range(B):
        picture = _as_image(images[index])
        heat = rollout_maps[index].detach().float().cpu().numpy()
        axes[0][index].imshow(picture, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        _overlay_map(axes[1][index], picture, heat)
        if labels is not None:
            axes[0][index].set_title(str(labels[index]), fontsize=9)
        for ax in axes[:, index]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0][0].set_ylabel("image", fontsize=8)
    axes[1][0].set_ylabel("rollout", fontsize=8)
    fig.suptitle(title or "attention rollout: what the CLS token draws on, through all layers", fontsize=9)
    fig.tight_layout()
    return fig


def plot_attention_distance(distances: torch.Tensor, image_size: int | None = None,
                            title: str | None = None) -> Figure:
    """Mean attention distance of every head against the layer, as in the paper's Figure 7 (right).

    Args:
        distances: `[depth, h]` mean distances in pixels (`analysis.mean_attention_distance`).
        image_size: image side in pixels, to draw the largest possible distance for scale.
        title: figure title.
    """
    _validate.tensor(distances, "distances", 2, "[depth, h]")
    depth, heads = distances.shape
    if image_size is not None:
        _validate.positive_int(image_size, "image_size")
    values = distances.detach().float().cpu().numpy()
    fig, ax = plt.subplots(figsize=(4.6, 3.2))
    for head in range(heads):
        ax.scatter(np.arange(depth), values[:, head], s=22, label=f"head {head}", alpha=0.85)
    ax.plot(np.arange(depth), values.mean(axis=1), color="black", linewidth=1, label="mean of heads")
    if image_size is not None:
        ax.axhline((image_size - 1) * math.sqrt(2), color="gray", linestyle=":", linewidth=1,
                   label="corner to corner")
    ax.set_xticks(range(depth))
    ax.set_xlabel("layer (network depth)")
    ax.set_ylabel("mean attention distance (pixels)")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3)
    ax.set_title(title or "how far each head looks", fontsize=10)
    fig.tight_layout()
    return fig


def plot_filter_components(components: torch.Tensor, share: torch.Tensor | None = None,
                           title: str | None = None) -> Figure:
    """Principal components of the patch-embedding filters, one small picture each (paper Fig. 7, left).

    Args:
        components: `[K, C, P, P]` (`analysis.patch_filter_components`); only the first channel is drawn.
        share: `[K]` share of variance each explains, written above it.
        title: figure title.
    """
    _validate.tensor(components, "components", 4, "[K, C, P, P]")
    K = components.shape[0]
    if share is not None and (not isinstance(share, torch.Tensor) or share.shape != (K,)):
        raise ValueError(f"share must be a [K] tensor with K={K}, got {getattr(share, 'shape', share)!r}.")
    values = components.detach().float().cpu()
    limit = float(values.abs().max()) or 1.0
    rows, cols = grid_shape(K)
    fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols + 0.8, 1.35 * rows + 0.5), squeeze=False)
    for index, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if index < K:
            image = ax.imshow(values[index, 0].numpy(), cmap="RdBu_r", vmin=-limit, vmax=limit,
                              interpolation="nearest")
            caption = f"PC {index}" + (f" ({100 * float(share[index]):.0f}%)" if share is not None else "")
            ax.set_title(caption, fontsize=8)
    fig.colorbar(image, ax=axes.ravel().tolist(), fraction=0.03, pad=0.04)
    fig.suptitle(title or "principal components of the patch filters (red +, blue -)", fontsize=9)
    return fig


def plot_image_grid(images: torch.Tensor, titles: list[str] | None = None, title: str | None = None,
                    per_row: int = 8) -> Figure:
    """Small images side by side, `per_row` to a row, each with an optional caption (e.g. its label).

    Args:
        images: `[n, C, H, W]` images.
        titles: `n` captions.
        title: figure title.
        per_row: panels per row.
    """
    _validate.tensor(images, "images", 4, "[n, C, H, W]")
    _validate.positive_int(per_row, "per_row")
    n = len(images)
    if n == 0:
        raise ValueError("images is empty; pass at least one image.")
    if titles is not None and len(titles) != n:
        raise ValueError(f"titles has {len(titles)} captions for {n} images; pass one per image.")
    cols = min(per_row, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.1 * cols + 0.3, 1.2 * rows + (0.4 if title else 0.1)),
                             squeeze=False)
    for index, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if index < n:
            ax.imshow(_as_image(images[index]), cmap="gray_r", interpolation="nearest")
            if titles is not None:
                ax.set_title(str(titles[index]), fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_learning_rate(learning_rates: list[float], steps_per_epoch: int, title: str | None = None) -> Figure:
    """A learning-rate schedule, one value per optimizer step, against epochs (warm-up shaded).

    Args:
        learning_rates: the rate at every step, e.g. `[lr * train.warmup_cosine(s, total, warmup) ...]`.
        steps_per_epoch: steps in one epoch, to label the x axis in epochs.
        title: figure title.
    """
    if not isinstance(learning_rates, (list, tuple)) or not learning_rates:
        raise TypeError(f"learning_rates must be a non-empty list of numbers, one per step, got "
                        f"{type(learning_rates).__name__}; pass e.g. [lr * warmup_cosine(s, total, warmup) ...].")
    if not all(isinstance(rate, (int, float)) and not isinstance(rate, bool) and math.isfinite(rate) and rate >= 0
               for rate in learning_rates) or max(learning_rates) <= 0:
        raise ValueError(f"learning_rates must be finite numbers >= 0, not all 0, got {list(learning_rates)[:4]!r}"
                         f"{'...' if len(learning_rates) > 4 else ''}; pass one rate per optimizer step.")
    _validate.positive_int(steps_per_epoch, "steps_per_epoch")
    values = np.asarray(learning_rates, dtype=float)
    epochs = np.arange(1, len(values) + 1) / steps_per_epoch
    peak = int(values.argmax())
    fig, ax = plt.subplots(figsize=(5.2, 2.6))
    ax.plot(epochs, values, color="tab:blue")
    ax.axvspan(0, epochs[peak], color="tab:orange", alpha=0.2, label="warm-up")
    ax.set_xlabel("epoch")
    ax.set_ylabel("learning rate")
    ax.set_xlim(0, epochs[-1])
    ax.set_ylim(0, values.max() * 1.08)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    ax.set_title(title or f"peak {values.max():g} after {epochs[peak]:.0f} epochs, then a cosine down to 0",
                 fontsize=9)
    fig.tight_layout()
    return fig
