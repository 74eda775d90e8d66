"""Figures of notebook 08, the paper's Figure 7 on the `mnist` model, each trained beside fresh: the position
table's similarity maps, its layout score against training, how far each head looks, where the CLS token looks
and what rollout draws on, the principal components of the patch filters.

Every figure takes its models as a dict, name -> what to draw (e.g. `{"trained": ..., "fresh": ...}`), one panel
or row each, on one shared scale, so that a near-uniform map never looks as structured as a peaked one.

Shape legend: B batch, C channels, H W image, h heads, P patch side, N patches, L = N + 1 tokens, D model dim,
K components, E stored tables.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.colors import Normalize, PowerNorm
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from ... import _validate
from ...analysis import position_rank_correlation, position_similarity
from ._draw import SMALLEST_FONT, as_image, show_image

HEAT = "magma"  # attention weights: 0 black, 1 pale yellow
SIMILARITY = "RdBu_r"  # cosine similarity: -1 blue, 0 white, +1 red
HEAD_COLOURS = plt.get_cmap("tab10").colors


def _named(value: object, name: str, what: str) -> dict[str, object]:
    """A non-empty dict name -> entry, or a single entry as `{"": entry}`."""
    if isinstance(value, Mapping):
        if not value:
            _validate.fail(ValueError, name, f"a non-empty dict name -> {what}", dict(value),
                           'pass e.g. {"trained": ..., "fresh": ...}')
        if not all(isinstance(key, str) for key in value):
            _validate.fail(TypeError, name, f"a dict whose names are str, name -> {what}", list(value),
                           'name each entry with a string, e.g. {"trained": ..., "fresh": ...}')
        return dict(value)
    return {"": value}


def _mosaic(similarity: torch.Tensor) -> np.ndarray:
    """`[rows, cols, rows, cols]` similarity maps laid out as one picture, the maps apart by one blank pixel."""
    rows, cols = similarity.shape[:2]
    mosaic = np.full((rows * (rows + 1) - 1, cols * (cols + 1) - 1), np.nan)  # [rows*(rows+1)-1, cols*(cols+1)-1]
    for r in range(rows):
        for c in range(cols):
            top, left = r * (rows + 1), c * (cols + 1)
            mosaic[top:top + rows, left:left + cols] = similarity[r, c].numpy()  # [rows, cols]
    return mosaic


def plot_position_layout(tables: Mapping[str, torch.Tensor], grid_size: int | tuple[int, int],
                         num_prefix_tokens: int = 1, title: str | None = None) -> Figure:
    """The paper's Fig. 7 (centre) for each position table side by side: a `rows x cols` grid of `rows x cols`
    maps, panel `(r, c)` colouring every patch by the cosine similarity of its row with patch `(r, c)`'s.

    All panels share one colour scale from -1 to 1; each table's title gives its layout score, the rank
    correlation of row similarity with patch distance (`analysis.position_rank_correlation`: -1 when nearer
    patches always have more similar rows, 0 when the rows say nothing about where the patches are).

    Args:
        tables: name -> `[1, L, D]` (a model's `pos_embed`) or `[L, D]` table, e.g. trained and fresh.
        grid_size: patches per side, or `(rows, cols)`.
        num_prefix_tokens: rows at the front that are not patches (1 for the CLS token).
        title: figure title.
    """
    tables = _named(tables, "tables", "position table [1, L, D] or [L, D]")
    maps, scores = {}, {}
    for name, table in tables.items():
        maps[name] = position_similarity(table, grid_size, num_prefix_tokens).cpu()  # [rows, cols, rows, cols]
        scores[name] = position_rank_correlation(table, grid_size, 1, num_prefix_tokens)
    rows, cols = next(iter(maps.values())).shape[:2]
    count = len(tables)
    side = min(4.2, 8.4 / count)
    fig, axes = plt.subplots(1, count, figsize=(side * count + 0.6, side + 0.9), squeeze=False)
    colours = plt.get_cmap(SIMILARITY).with_extremes(bad="white")
    for ax, (name, similarity) in zip(axes[0], maps.items(), strict=True):
        image = ax.imshow(_mosaic(similarity), cmap=colours, vmin=-1, vmax=1, interpolation="nearest")
        ax.set_xticks([c * (cols + 1) + (cols - 1) / 2 for c in range(cols)], [str(c) for c in range(cols)],
                      fontsize=SMALLEST_FONT)
        ax.set_yticks([r * (rows + 1) + (rows - 1) / 2 for r in range(rows)], [str(r) for r in range(rows)],
                      fontsize=SMALLEST_FONT)
        ax.tick_params(length=0)
        for spine in ax.spines.values():
            spine.set_visible(False)
        ax.set_xlabel("patch column", fontsize=9)
        ax.set_ylabel("patch row", fontsize=9)
        heading = f"{name}\n" if name else ""
        ax.set_title(f"{heading}rank correlation {scores[name]:+.2f}", fontsize=9)
    fig.colorbar(image, ax=list(axes[0]), fraction=0.03, pad=0.03, label="cosine similarity of position rows")
    fig.suptitle(title or f"{rows}x{cols} patches: panel (row, column) compares that patch's row with every patch's",
                 fontsize=9)
    return fig


def plot_layout_curve(images_seen: Sequence[int], curves: Mapping[str, Sequence[float | None]],
                      references: Mapping[str, float] | None = None, title: str | None = None) -> Figure:
    """The position table's layout score against the training images seen, one line per run, their mean, and
    reference values (e.g. a fresh table's score) as dashed lines.

    Args:
        images_seen: `E` counts of training images seen when each table was stored.
        curves: name -> `E` scores (None where a score is undefined, e.g. a table of zeros), e.g. one per seed.
        references: name -> a score drawn across the whole plot.
        title: figure title.
    """
    if isinstance(images_seen, (str, bytes)) or not isinstance(images_seen, Sequence) or not images_seen:
        _validate.fail(TypeError, "images_seen", "a non-empty list of ints", images_seen,
                       'pass the "images_seen" list of load_position_tables()')
    curves = _named(curves, "curves", f"{len(images_seen)} scores")
    for name, values in curves.items():
        if not isinstance(values, Sequence) or len(values) != len(images_seen):
            _validate.fail(ValueError, f"curves[{name!r}]", f"{len(images_seen)} scores, one per entry of images_seen",
                           values, "pass one score (or None) per stored table")
    references = dict(references or {})
    x = np.asarray(images_seen, dtype=float)  # [E]
    values = np.array([[np.nan if v is None else float(v) for v in curve] for curve in curves.values()])  # [runs, E]
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for index, (name, curve) in enumerate(zip(curves, values, strict=True)):
        ax.plot(x, curve, marker="o", markersize=3, linewidth=1, color=HEAD_COLOURS[index % 10], alpha=0.8,
                label=name)
    if len(curves) > 1:
        complete = ~np.isnan(values).any(axis=0)  # [E], every run defined
        ax.plot(x[complete], values[:, complete].mean(axis=0), color="black", linewidth=2,
                label=f"mean of the {len(curves)}")
    for index, (name, value) in enumerate(references.items()):
        ax.axhline(float(value), color="gray", linestyle=("--", ":", "-.")[index % 3], linewidth=1.2,
                   label=f"{name} ({float(value):+.2f})")
    ax.axhline(0, color="black", linewidth=0.5)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value / 1000:.0f}k"))
    ax.set_xlim(0, x.max() * 1.02)
    low = min(-1.0, float(np.nanmin(values))) if np.isfinite(values).any() else -1.0
    ax.set_ylim(low, 0.3)
    ax.set_xlabel("training images seen (thousands)", fontsize=9)
    ax.set_ylabel("rank correlation\n(similarity vs distance)", fontsize=9)
    ax.tick_params(labelsize=SMALLEST_FONT)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=SMALLEST_FONT, loc="upper right", ncol=2)
    ax.set_title(title or "does the position table know the 2-D layout? (-1: fully, 0: not at all)", fontsize=9)
    fig.tight_layout()
    return fig


def plot_attention_distance(distances: Mapping[str, torch.Tensor] | torch.Tensor, uniform: float | None = None,
                            seed_means: Mapping[str, torch.Tensor] | None = None,
                            title: str | None = None) -> Figure:
    """Mean attention distance of every head against the layer (the paper's Fig. 7, right), one panel per model
    on one scale, with reference lines: 0 px (a head that looks only at its own patch) and the uniform value
    (a head that weighs every patch alike).

    Args:
        distances: name -> `[depth, h]` mean distances in pixels (`analysis.mean_attention_distance`), or one
            such tensor.
        uniform: the distance of uniform attention in pixels (`analysis.patch_distances(grid, P).mean()`).
        seed_means: name -> `[S, depth]` per-layer means over heads of `S` runs, drawn as their mean with
            error bars of one standard deviation.
        title: figure title.
    """
    distances = _named(distances, "distances", "[depth, h] tensor")
    for name, value in distances.items():
        _validate.tensor(value, f"distances[{name!r}]" if name else "distances", 2, "[depth, h]")
    depth = next(iter(distances.values())).shape[0]
    if uniform is not None:
        _validate.positive_number(uniform, "uniform", "patch_distances(grid, patch_size).mean()")
    seed_means = dict(seed_means or {})
    for name, value in seed_means.items():
        _validate.tensor(value, f"seed_means[{name!r}]", 2, "[S, depth]")
        if name not in distances or value.shape[1] != depth:
            _validate.fail(ValueError, f"seed_means[{name!r}]", f"[S, depth={depth}] for a name of distances",
                           value, f"use the names {sorted(distances)} and one column per layer")
    count = len(distances)
    fig, axes = plt.subplots(1, count, figsize=(min(4.3 * count, 9.0), 3.6), sharey=True, squeeze=False)
    highest = max(float(value.max()) for value in distances.values())
    for ax, (name, value) in zip(axes[0], distances.items(), strict=True):
        values = value.detach().float().cpu().numpy()  # [depth, h]
        layers = np.arange(depth)  # [depth]
        for head in range(values.shape[1]):
            ax.scatter(layers, values[:, head], s=18, color=HEAD_COLOURS[head % 10], alpha=0.85,
                       label=f"head {head}", zorder=3)
        ax.plot(layers, values.mean(axis=1), color="black", linewidth=1.2, label="mean of heads", zorder=2)
        if name in seed_means:
            runs = seed_means[name].detach().float().cpu().numpy()  # [S, depth]
            ax.errorbar(layers + 0.2, runs.mean(axis=0), yerr=runs.std(axis=0, ddof=1) if len(runs) > 1 else None,
                        fmt="s", markersize=3, color="tab:gray", capsize=2,
                        label=f"mean of heads, {len(runs)} seeds", zorder=2)
        if uniform is not None:
            ax.axhline(uniform, color="tab:red", linestyle="--", linewidth=1,
                       label=f"uniform: all patches alike ({uniform:.1f} px)")
        ax.axhline(0, color="tab:blue", linestyle=":", linewidth=1.2, label="self only: its own patch (0 px)")
        ax.set_xticks(layers, [str(layer) for layer in layers], fontsize=SMALLEST_FONT)
        ax.tick_params(labelsize=SMALLEST_FONT)
        ax.set_xlabel("layer (network depth)", fontsize=9)
        ax.grid(alpha=0.3)
        if name:
            ax.set_title(name, fontsize=9)
    axes[0][0].set_ylabel("mean attention distance (pixels)", fontsize=9)
    axes[0][0].set_ylim(-1, max(highest, uniform or 0) * 1.25 + 1)
    legend = {}  # label -> handle, every panel's entries once
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, handle)
    labels = list(legend)
    fig.legend(list(legend.values()), labels, fontsize=SMALLEST_FONT, loc="lower center", ncol=4, frameon=False)
    fig.suptitle(title or "how far each head looks", fontsize=10)
    fig.tight_layout(rect=(0, 0.12 + 0.04 * (len(labels) > 8), 1, 1))
    return fig


def _heat_norm(vmax: float, gamma: float) -> Normalize:
    return Normalize(0, vmax) if gamma == 1 else PowerNorm(gamma, 0, vmax)


def plot_attention_maps(images: torch.Tensor, maps: Mapping[str, torch.Tensor], labels: Sequence[str] | None = None,
                        vmax: float = 1.0, gamma: float = 1.0, title: str | None = None) -> Figure:
    """Attention maps as heat panels beside their images: one row per image, the image then one panel per map.

    Every panel uses the same fixed colour scale from 0 to `vmax` (1 by default: the whole range of an
    attention weight), never stretched to its own values, so a near-uniform map looks flat. A `gamma` below 1
    spreads the low weights over more colours (the scale stays fixed; the colour bar shows it). The colour bar
    marks the uniform weight `1 / N`.

    Args:
        images: `[B, C, H, W]` images.
        maps: column name -> `[B, rows, cols]` weights on the patch grid (e.g. the CLS row of one layer from
            `analysis.cls_attention`, or `analysis.cls_rollout_map`).
        labels: `B` captions, e.g. true -> predicted class.
        vmax: top of the colour scale, in (0, 1].
        gamma: exponent of the colour scale, in (0, 1]; 1 is linear.
        title: figure title.
    """
    _validate.tensor(images, "images", 4, "[B, C, H, W]")
    maps = _named(maps, "maps", "[B, rows, cols] tensor")
    B = len(images)
    H, W = images.shape[-2:]
    for name, value in maps.items():
        key = f"maps[{name!r}]" if name else "maps"
        _validate.tensor(value, key, 3, "[B, rows, cols]")
        if len(value) != B:
            _validate.fail(ValueError, key, f"one map per image, [{B}, rows, cols]", value, "pass one map per image")
        rows, cols = value.shape[-2:]
        if H % rows or W % cols:
            raise ValueError(f"{key} has a {rows}x{cols} grid that does not tile the {H}x{W} images; pass the "
                             f"maps of the model that saw these images.")
    if labels is not None and (isinstance(labels, str) or len(labels) != B):
        _validate.fail(ValueError, "labels", f"{B} captions, one per image", labels, "pass one caption per image")
    _validate.number_in(vmax, "vmax", 0, 1, low_open=True, example="1.0 (the whole range of a weight)")
    _validate.number_in(gamma, "gamma", 0, 1, low_open=True, example="1.0 (linear) or 0.5")
    columns = len(maps) + 1
    fig, axes = plt.subplots(B, columns, figsize=(min(1.45 * columns + 1.0, 9.0), 1.45 * B + 0.7), squeeze=False)
    norm = _heat_norm(vmax, gamma)
    for row in range(B):
        show_image(axes[row][0], as_image(images[row]))
        if labels is not None:
            axes[row][0].set_ylabel(str(labels[row]), fontsize=9)
        for column, value in enumerate(maps.values(), start=1):
            heat = axes[row][column].imshow(value[row].detach().float().cpu().numpy(), cmap=HEAT, norm=norm,
                                            interpolation="nearest")
        for ax in axes[row]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0][0].set_title("image", fontsize=9)
    for column, name in enumerate(maps, start=1):
        axes[0][column].set_title(name, fontsize=SMALLEST_FONT)
    N = int(np.prod(next(iter(maps.values())).shape[-2:]))
    bar = fig.colorbar(heat, ax=axes.ravel().tolist(), fraction=0.04, pad=0.03)
    ticks = sorted({0.0, 1 / N, *(t for t in (0.05, 0.1, 0.2, 0.5, 1.0) if t <= vmax)})
    bar.set_ticks(ticks, labels=[f"1/{N}" if t == 1 / N else f"{t:g}" for t in ticks])
    bar.ax.tick_params(labelsize=SMALLEST_FONT)
    bar.set_label(f"attention weight (uniform: 1/{N})", fontsize=9)
    fig.suptitle(title or "where the CLS token looks, on one fixed scale", fontsize=10)
    return fig


def plot_filter_components(components: Mapping[str, torch.Tensor] | torch.Tensor,
                           shares: Mapping[str, torch.Tensor] | torch.Tensor | None = None,
                           title: str | None = None) -> Figure:
    """Principal components of the patch-embedding filters (the paper's Fig. 7, left), one row per model on
    one symmetric colour scale, each captioned with the share of the filters' variance it explains.

    Args:
        components: name -> `[K, C, P, P]` (`analysis.patch_filter_components`), or one such tensor; only the
            first channel is drawn.
        shares: name -> `[K]` share of variance of each component (or one such tensor), written above it.
        title: figure title.
    """
    components = _named(components, "components", "[K, C, P, P] tensor")
    if shares is not None and not isinstance(shares, Mapping):
        shares = {name: shares for name in components} if len(components) == 1 else shares
    shares = dict(_named(shares, "shares", "[K] tensor")) if shares is not None else {}
    for name, value in components.items():
        _validate.tensor(value, f"components[{name!r}]" if name else "components", 4, "[K, C, P, P]")
    K = max(len(value) for value in components.values())
    for name, share in shares.items():
        key = f"shares[{name!r}]" if name else "shares"
        count = len(components.get(name, ()))
        _validate.instance(share, key, torch.Tensor, f"a [K] tensor with K={count}",
                           "pass the shares patch_filter_components returned")
        if name not in components or share.shape != (count,):
            _validate.fail(ValueError, key, f"a [K] tensor with K={count} for a name of components", share,
                           "pass one share per component, under the same name")
    limit = max(float(value.detach().abs().max()) for value in components.values()) or 1.0
    count = len(components)
    fig, axes = plt.subplots(count, K, figsize=(min(1.0 * K + 1.4, 9.0), 1.25 * count + 0.7), squeeze=False)
    for row, (name, value) in enumerate(components.items()):
        values = value.detach().float().cpu()  # [K, C, P, P]
        for index, ax in enumerate(axes[row]):
            ax.set_xticks([])
            ax.set_yticks([])
            if index >= len(values):
                ax.axis("off")
                continue
            image = ax.imshow(values[index, 0].numpy(), cmap="RdBu_r", vmin=-limit, vmax=limit,
                              interpolation="nearest")
            caption = f"PC {index}"
            if name in shares:
                caption += f" {100 * float(shares[name][index]):.0f}%"
            ax.set_title(caption, fontsize=SMALLEST_FONT)
        if name:
            axes[row][0].set_ylabel(name, fontsize=9)
    bar = fig.colorbar(image, ax=axes.ravel().tolist(), fraction=0.03, pad=0.02)
    bar.ax.tick_params(labelsize=SMALLEST_FONT)
    fig.suptitle(title or "principal components of the patch filters (red +, blue -; % of the variance)",
                 fontsize=9)
    return fig
