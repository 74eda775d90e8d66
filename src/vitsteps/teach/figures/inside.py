"""Figures of notebook 08, the paper's Figure 7 on your model: CLS attention per layer and head, attention rollout,
mean attention distance, principal components of the patch filters.

Shape legend: B batch, C channels, H W image, h heads, P patch side, K components.
"""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from ... import _validate
from ._draw import as_image, grid_shape, overlay_map


def plot_cls_attention_grid(image: torch.Tensor, cls_maps: torch.Tensor, title: str | None = None) -> Figure:
    """Where the CLS token looks in every layer (rows) and head (columns), laid over the image.

    Args:
        image: `[C, H, W]` or `[1, C, H, W]` image.
        cls_maps: `[depth, h, rows, cols]` CLS-to-patch weights of this image, e.g.
            `analysis.cls_attention(maps, grid)[:, 0]`.
        title: figure title.
    """
    picture = as_image(image)
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
            overlay_map(ax, picture, values[layer, head])
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
        raise ValueError(f"labels has {len(labels)} captions for {B} images; pass one caption per image.")
    H, W = images.shape[-2:]
    rows, cols = rollout_maps.shape[-2:]
    if H % rows or W % cols:
        raise ValueError(f"rollout_maps has a {rows}x{cols} grid that does not tile the {H}x{W} images; pass the "
                         f"maps of the model that saw these images.")
    fig, axes = plt.subplots(2, B, figsize=(1.5 * B + 0.4, 3.4), squeeze=False)
    for index in range(B):
        picture = as_image(images[index])
        heat = rollout_maps[index].detach().float().cpu().numpy()
        axes[0][index].imshow(picture, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        overlay_map(axes[1][index], picture, heat)
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
    if share is not None:
        _validate.instance(share, "share", torch.Tensor, f"a [K] tensor with K={K}",
                           "pass the shares patch_filter_components returned")
        if share.shape != (K,):
            _validate.fail(ValueError, "share", f"a [K] tensor with K={K}", share, "pass one share per component")
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
