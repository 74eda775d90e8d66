"""Figures of notebook 06: where the parameters and FLOPs of a ViT go, and one sample's class scores.

Shape legend: K classes.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from ... import _validate
from ._draw import one_sample, panels, si_format


def plot_parameter_breakdown(parts: dict[str, int], title: str | None = None) -> Figure:
    """Parameters per part of a model as horizontal bars on a linear scale, each labelled with count and share
    (on a linear scale a bar's length is its share: the parts that hold almost nothing are almost invisible).

    Args:
        parts: part name to parameter count, e.g. `vitsteps.parameter_formula(config)`; a `"total"` entry
            is used for the shares and not drawn.
        title: figure title; by default it states the total.

    Returns:
        The figure.
    """
    _validate.counts(parts, "parts", "pass vitsteps.parameter_formula(config)")
    counts = {name: count for name, count in parts.items() if name != "total"}
    total = parts.get("total", sum(counts.values()))
    names = list(counts)
    largest = max(max(counts.values()), 1)
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(names) + 1.2))
    ax.barh(range(len(names)), [counts[name] for name in names], color="tab:blue")
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names, fontsize=9)
    ax.invert_yaxis()
    for position, name in enumerate(names):
        share = counts[name] / total if total else 0.0
        ax.text(counts[name] + 0.02 * largest, position, f"{counts[name]:,} ({share:.1%})", va="center",
                fontsize=8)
    ax.set_xlim(0, largest * 1.45)  # room for the longest bar's label
    ax.ticklabel_format(axis="x", style="plain")
    ax.xaxis.set_major_formatter(lambda value, _: f"{value:,.0f}")
    ax.tick_params(axis="x", labelsize=8)
    ax.set_xlabel("parameters", fontsize=9)
    ax.set_title(title or f"{total:,} parameters by part", fontsize=10)
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
    logits = _validate.tensor(one_sample(logits, 1), "logits", 1, "[K]")  # [K]
    K = logits.shape[0]
    if label is not None:
        if isinstance(label, np.integer) or (isinstance(label, torch.Tensor) and label.numel() == 1
                                             and not label.is_floating_point()):
            label = int(label)  # e.g. labels[0]
        _validate.int_in(label, "label", 0, K - 1, "pass the true class, e.g. int(labels[0])")
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
    right.legend(fontsize=8, loc="upper right")
    for ax in (left, right):
        ax.set_xticks(range(K))
        ax.set_xlabel("class")
    if title or label is not None:
        fig.suptitle(title or f"true class {label} in orange", fontsize=10)
    fig.tight_layout()
    return fig


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
    _validate.counts(parameters, "parameters", "pass e.g. parameter_formula(config)")
    _validate.counts(flops, "flops", "pass e.g. vit_flops(config)")
    fig, axes = panels(fig, 2, (9.0, 2.8), [1, 1],
                       {"left": 0.22, "right": 0.97, "bottom": 0.06, "top": 0.85, "wspace": 1.0})
    for ax, parts, colour, heading in ((axes[0], parameters, "tab:blue", "parameters"),
                                       (axes[1], flops, "tab:purple", "FLOPs per image")):
        names = [name for name in parts if name != "total"]
        values = [parts[name] for name in names]
        total = parts.get("total", sum(values))
        positions = np.arange(len(names))
        ax.barh(positions, values, color=colour)
        # name and share in one tick label: one text per bar keeps a redraw fast
        ax.set_yticks(positions, [f"{name}  {si_format(value)} ({value / total if total else 0:.0%})"
                                  for name, value in zip(names, values, strict=True)], fontsize=8)
        ax.set_ylim(len(names) - 0.5, -0.5)
        ax.set_xticks([])
        ax.set_xlim(0, max(values) * 1.05 if max(values) > 0 else 1)
        ax.set_title(f"{heading}: {si_format(total)}", fontsize=9, y=1.0)
        for side in ("top", "right", "bottom"):
            ax.spines[side].set_visible(False)
    fig.suptitle(title or "", fontsize=10)
    return fig
