"""Looking inside a trained ViT: numbers behind the paper's Figure 7 and attention rollout (no plotting here).

- `cls_attention`: where the CLS token looks, per layer and head, laid out on the patch grid.
- `attention_rollout`: attention multiplied through the layers, with the residual path (Abnar & Zuidema, 2020).
- `mean_attention_distance`: how far, in pixels, each head looks on average (the paper's Fig. 7, right).
- `position_similarity`: cosine similarity of the position embeddings of every pair of patches (Fig. 7, centre).
- `position_rank_correlation`: one number for that picture: do nearer patches have more similar rows?
- `patch_filter_components`: principal components of the patch-embedding filters (Fig. 7, left).

Attention comes as `model.attention_maps(images)`: a list of `depth` tensors `[B, h, L, L]`, CLS token first.
Shape legend: B batch, h heads, L = N + 1 tokens, N patches, D model dim, C channels, P patch side.
"""
from __future__ import annotations

import torch

from . import _validate


def _check_attention(attention: object, name: str = "attention") -> torch.Tensor:
    """Stack a list of `[B, h, L, L]` maps into `[depth, B, h, L, L]`, checking every entry."""
    if isinstance(attention, torch.Tensor) and attention.dim() == 5:
        maps = list(attention)
    elif isinstance(attention, (list, tuple)) and attention:
        maps = list(attention)
    else:
        _validate.fail(TypeError, name, "a non-empty list of [B, h, L, L] tensors (one per layer)", attention,
                       "pass what model.attention_maps(images) returns")
    for index, weights in enumerate(maps):
        _validate.tensor(weights, f"{name}[{index}]", 4, "[B, h, L, L]")
        if weights.shape[-1] != weights.shape[-2]:
            raise ValueError(f"{name}[{index}] must be square in its last two dimensions [.., L, L], got "
                             f"{tuple(weights.shape)}; pass self-attention weights, one row and column per token.")
        if weights.shape != maps[0].shape:
            raise ValueError(f"every layer's attention must have the same shape, but {name}[0] is "
                             f"{tuple(maps[0].shape)} and {name}[{index}] is {tuple(weights.shape)}; pass the maps "
                             f"of one model and one batch.")
    return torch.stack([weights.detach().float() for weights in maps])  # [depth, B, h, L, L]


def _check_grid(grid_size: object, num_tokens: int, num_prefix_tokens: int = 1) -> tuple[int, int]:
    rows, cols = _validate.pair(grid_size, "grid_size")
    if rows * cols + num_prefix_tokens != num_tokens:
        raise ValueError(f"grid_size={grid_size} gives {rows * cols} patches + {num_prefix_tokens} CLS = "
                         f"{rows * cols + num_prefix_tokens} tokens, but the input has L={num_tokens}; pass the "
                         f"model's grid, config.grid_size.")
    return rows, cols


def cls_attention(attention: list[torch.Tensor], grid_size: int | tuple[int, int]) -> torch.Tensor:
    """How much the CLS token attends to each patch, per layer and head, on the patch grid.

    Args:
        attention: `depth` tensors `[B, h, L, L]` (CLS first).
        grid_size: patches per side, or `(rows, cols)`.

    Returns:
        `[depth, B, h, rows, cols]`: row 0 of each attention matrix without its CLS column. Each map sums to
        one minus the weight the CLS token gives itself.
    """
    maps = _check_attention(attention)  # [depth, B, h, L, L]
    depth, B, h, L, _ = maps.shape
    rows, cols = _check_grid(grid_size, L)
    return maps[:, :, :, 0, 1:].reshape(depth, B, h, rows, cols)  # [depth, B, h, rows, cols]


def attention_rollout(attention: list[torch.Tensor], residual_weight: float = 0.5,
                      head_fusion: str = "mean") -> torch.Tensor:
    """Attention rollout: how much each output token draws on each input token through all layers.

    Each layer's heads are fused (mean or max), the residual connection is added as
    `(1 - residual_weight) * A + residual_weight * I`, rows are renormalised, and the layers are multiplied:
    `R = A_depth @ ... @ A_1`.

    Args:
        attention: `depth` tensors `[B, h, L, L]`.
        residual_weight: weight of the identity (the skip connection), in [0, 1); 0.5 as in the original method.
        head_fusion: "mean" or "max" over heads.

    Returns:
        `[B, L, L]` rollout; row 0 (CLS) without its first entry, reshaped to the grid, is the usual map.
    """
    maps = _check_attention(attention)  # [depth, B, h, L, L]
    _validate.number_in(residual_weight, "residual_weight", 0, 1, high_open=True, example="0.5 (the usual)")
    _validate.one_of(head_fusion, "head_fusion", ("mean", "max"))
    if head_fusion == "mean":
        fused = maps.mean(dim=2)  # [depth, B, L, L]
    else:
        fused = maps.amax(dim=2)  # [depth, B, L, L]
    depth, B, L, _ = fused.shape
    identity = torch.eye(L).expand(B, L, L)  # [B, L, L]
    rollout = identity.clone()  # [B, L, L]
    for layer in fused:
        mixed = (1 - residual_weight) * layer + residual_weight * identity  # [B, L, L]
        mixed = mixed / mixed.sum(dim=-1, keepdim=True)  # [B, L, L]
        rollout = mixed @ rollout  # [B, L, L]
    return rollout


def cls_rollout_map(rollout: torch.Tensor, grid_size: int | tuple[int, int]) -> torch.Tensor:
    """The CLS row of a rollout `[B, L, L]` without its CLS entry, on the grid, scaled to sum to 1.

    Returns:
        `[B, rows, cols]` map per image.
    """
    _validate.tensor(rollout, "rollout", 3, "[B, L, L]")
    B, L, _ = rollout.shape
    rows, cols = _check_grid(grid_size, L)
    cls_row = rollout[:, 0, 1:]  # [B, N]
    cls_row = cls_row / cls_row.sum(dim=-1, keepdim=True)  # [B, N]
    return cls_row.reshape(B, rows, cols)  # [B, rows, cols]


def patch_distances(grid_size: int | tuple[int, int], patch_size: int) -> torch.Tensor:
    """Euclidean distance in pixels between the centres of every pair of patches: `[N, N]`."""
    rows, cols = _validate.pair(grid_size, "grid_size")
    _validate.positive_int(patch_size, "patch_size")
    grid_r, grid_c = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")  # [rows, cols] each
    centres = torch.stack([grid_r.flatten(), grid_c.flatten()], dim=1).float() * patch_size  # [N, 2]
    return torch.cdist(centres, centres)  # [N, N]


def mean_attention_distance(attention: list[torch.Tensor], grid_size: int | tuple[int, int],
                            patch_size: int) -> torch.Tensor:
    """Average distance in pixels between a patch and the patches it attends to, per layer and head.

    For each query patch, the patch-to-patch weights (the CLS column dropped and the row renormalised) weight
    the distances to every other patch; the result is averaged over query patches and images. Small values
    mean local attention (like a convolution), large values global attention (the paper's Fig. 7, right).

    Args:
        attention: `depth` tensors `[B, h, L, L]`.
        grid_size: patches per side, or `(rows, cols)`.
        patch_size: patch side `P` in pixels, to measure distances in pixels.

    Returns:
        `[depth, h]` mean distances in pixels.
    """
    maps = _check_attention(attention)  # [depth, B, h, L, L]
    L = maps.shape[-1]
    rows, cols = _check_grid(grid_size, L)
    distances = patch_distances((rows, cols), patch_size)  # [N, N]
    patch_weights = maps[..., 1:, 1:]  # [depth, B, h, N, N]
    patch_weights = patch_weights / patch_weights.sum(dim=-1, keepdim=True).clamp_min(1e-12)  # [depth, B, h, N, N]
    per_query = (patch_weights * distances).sum(dim=-1)  # [depth, B, h, N]
    return per_query.mean(dim=(1, 3))  # [depth, h]


def position_similarity(position_table: torch.Tensor, grid_size: int | tuple[int, int],
                        num_prefix_tokens: int = 1) -> torch.Tensor:
    """Cosine similarity of every patch's position embedding with every other patch's.

    Args:
        position_table: `[1, L, D]` (a model's `pos_embed`) or `[L, D]`, prefix (CLS) rows first.
        grid_size: patches per side, or `(rows, cols)`.
        num_prefix_tokens: rows at the front that are not patches (1 for the CLS token).

    Returns:
        `[rows, cols, rows, cols]`: entry `[i, j]` is the `rows x cols` map of similarities between patch
        `(i, j)` and every patch, as in the paper's Fig. 7 (centre).
    """
    if isinstance(position_table, torch.Tensor) and position_table.dim() == 3 and position_table.shape[0] == 1:
        position_table = position_table[0]  # [L, D]
    _validate.tensor(position_table, "position_table", 2, "[L, D]")
    _validate.non_negative_int(num_prefix_tokens, "num_prefix_tokens", "pass 1 for a CLS token")
    rows, cols = _check_grid(grid_size, position_table.shape[0], num_prefix_tokens)
    patch_rows = position_table.detach().float()[num_prefix_tokens:]  # [N, D]
    unit = patch_rows / patch_rows.norm(dim=-1, keepdim=True).clamp_min(1e-12)  # [N, D]
    similarity = unit @ unit.T  # [N, N]
    return similarity.reshape(rows, cols, rows, cols)  # [rows, cols, rows, cols]


def rank_correlation(x: torch.Tensor, y: torch.Tensor) -> float:
    """Spearman's rank correlation of two `[n]` samples: the Pearson correlation of their ranks, tied values
    sharing the mean of their ranks. +1: `y` grows with `x`; -1: it shrinks; 0: no monotone relation."""
    for name, value in (("x", x), ("y", y)):
        _validate.tensor(value, name, 1, "[n]")
    if len(x) != len(y) or len(x) < 2:
        raise ValueError(f"x and y must be two samples of the same length n >= 2, got {len(x)} and {len(y)}; "
                         f"pass one value of each per pair.")
    ranks = []
    for values in (x.detach().double(), y.detach().double()):
        unique, inverse, counts = torch.unique(values, return_inverse=True, return_counts=True)  # [u], [n], [u]
        first = torch.cumsum(counts, 0) - counts  # [u], rank (from 0) of the first of each tied group
        ranks.append((first + (counts - 1) / 2)[inverse])  # [n], tied values share their mean rank
    centred = [rank - rank.mean() for rank in ranks]  # 2 x [n]
    spread = (centred[0].norm() * centred[1].norm()).item()
    if spread == 0:
        raise ValueError("x or y holds a single value repeated: a rank correlation needs values that differ; "
                         "pass samples with at least two distinct values each.")
    return float((centred[0] @ centred[1]).item() / spread)


def position_rank_correlation(position_table: torch.Tensor, grid_size: int | tuple[int, int], patch_size: int,
                              num_prefix_tokens: int = 1, margin: int = 0) -> float:
    """How well a position table knows the 2-D layout, in one number: Spearman's rank correlation, over every pair
    of patches, between the cosine similarity of their rows and the distance between their centres.

    Near -1: the nearer two patches, the more alike their rows (the paper's Fig. 7, centre). Near 0: the rows say
    nothing about where the patches are (a random table).

    Args:
        position_table: `[1, L, D]` (a model's `pos_embed`) or `[L, D]`, prefix (CLS) rows first.
        grid_size: patches per side, or `(rows, cols)`.
        patch_size: patch side `P` in pixels (it scales the distances; the ranks do not depend on it).
        num_prefix_tokens: rows at the front that are not patches (1 for the CLS token).
        margin: rings of border patches to leave out, e.g. 1 for the inner 5x5 patches of a 7x7 grid.

    Returns:
        The correlation, from -1 to 1.
    """
    similarity = position_similarity(position_table, grid_size, num_prefix_tokens)  # [rows, cols, rows, cols]
    rows, cols = similarity.shape[:2]
    _validate.positive_int(patch_size, "patch_size")
    widest = (min(rows, cols) - 2) // 2
    _validate.int_in(margin, "margin", 0, widest, f"a {rows}x{cols} grid keeps 2 patches a side up to margin={widest}")
    table = position_table[0] if position_table.dim() == 3 else position_table  # [L, D]
    norms = table.detach()[num_prefix_tokens:].float().norm(dim=-1)  # [N]
    if bool((norms == 0).any()):
        raise ValueError(f"position_table has {int((norms == 0).sum())} patch rows that are all zeros: their cosine "
                         f"similarity is 0/0, undefined (a table initialised at zeros, before training, has no "
                         f"direction to compare); pass a trained table or one with random rows.")
    inner = similarity[margin:rows - margin, margin:cols - margin, margin:rows - margin, margin:cols - margin]
    kept_rows, kept_cols = rows - 2 * margin, cols - 2 * margin
    flat = inner.reshape(kept_rows * kept_cols, kept_rows * kept_cols)  # [n, n]
    distances = patch_distances((kept_rows, kept_cols), patch_size)  # [n, n]
    pairs = torch.triu_indices(len(flat), len(flat), offset=1)  # [2, n(n-1)/2], each pair once
    return rank_correlation(flat[pairs[0], pairs[1]], distances[pairs[0], pairs[1]])


def patch_filter_components(weight: torch.Tensor, num_components: int | None = None
                            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Principal components of the patch-embedding filters (the paper's Fig. 7, left).

    Each of the `D` filters of `patch_embed.proj` is a `C x P x P` picture; their principal components show
    which pixel patterns the embedding is most sensitive to.

    Args:
        weight: `[D, C, P, P]` convolution kernel (`model.patch_embed.proj.weight`).
        num_components: how many components to keep; at most `min(D, C*P*P)` (the default).

    Returns:
        `([K, C, P, P] components, [K] share of the filters' variance each explains)`, largest first; each
        component has unit norm and its sign is set so that its largest entry is positive.
    """
    _validate.tensor(weight, "weight", 4, "[D, C, P, P]")
    D, C, P, _ = weight.shape
    most = min(D, C * P * P)
    if num_components is None:
        num_components = most
    _validate.positive_int(num_components, "num_components")
    if num_components > most:
        raise ValueError(f"num_components={num_components} is more than min(D, C*P*P) = {most}; pass at most {most}.")
    filters = weight.detach().double().reshape(D, C * P * P)  # [D, C*P*P]
    centred = filters - filters.mean(dim=0, keepdim=True)  # [D, C*P*P]
    _, singular_values, right = torch.linalg.svd(centred, full_matrices=False)  # [K'], [K', C*P*P]
    variance = singular_values ** 2  # [K']
    share = variance / variance.sum().clamp_min(1e-24)  # [K']
    components = right[:num_components]  # [K, C*P*P]
    peak = components.gather(1, components.abs().argmax(dim=1, keepdim=True))  # [K, 1]
    components = components * peak.sign()  # [K, C*P*P]
    return components.float().reshape(num_components, C, P, P), share[:num_components].float()  # [K, C, P, P], [K]
