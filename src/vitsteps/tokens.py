"""Stage 3 and 4: the CLS token in front of the patch tokens, and the position table added to every token.

Shape legend: B batch, N patches, L = N + 1 tokens, D model dim.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from . import _validate
from ._validate import InputValueError


def prepend_cls_token(patch_tokens: torch.Tensor, cls_token: torch.Tensor) -> torch.Tensor:
    """Put one learned CLS token in front of every sequence in the batch.

    Args:
        patch_tokens: `[B, N, D]` patch tokens.
        cls_token: `[1, 1, D]`, one token shared by the whole batch (expanded, not copied).

    Returns:
        `[B, N+1, D]` tokens, the CLS token first.
    """
    _validate.tensor(patch_tokens, "patch_tokens", 3, "[B, N, D]")
    _validate.tensor(cls_token, "cls_token", 3, "[1, 1, D]")
    B, N, D = patch_tokens.shape
    if cls_token.shape[:2] != (1, 1):
        raise InputValueError(f"cls_token must be one token of shape [1, 1, D], got {tuple(cls_token.shape)}; "
                              f"a per-sample CLS parameter ties the model to one batch size: make a single "
                              f"nn.Parameter(torch.zeros(1, 1, {D})) and let this function expand it.")
    if cls_token.shape[-1] != D:
        raise InputValueError(f"cls_token has width {cls_token.shape[-1]} but the patch tokens have D={D}; "
                              f"make cls_token of shape [1, 1, {D}].")
    cls_tokens = cls_token.expand(B, -1, -1)  # [B, 1, D]
    return torch.cat([cls_tokens, patch_tokens], dim=1)  # [B, N+1, D]


def add_position_embedding(tokens: torch.Tensor, position_table: torch.Tensor,
                           mode: str = "broadcast") -> torch.Tensor:
    """Add the first `L` rows of a position table to a batch of `L`-token sequences.

    Args:
        tokens: `[B, L, D]` tokens (CLS first).
        position_table: `[max_num_token, D]` (or `[1, max_num_token, D]`), one row per position.
        mode: `"broadcast"` adds the `[1, L, D]` slice to every sample; `"tile"` first copies it `B` times
            with `torch.tile`, as the original article does. Both give the same numbers.

    Returns:
        `[B, L, D]` tokens that now carry their position.
    """
    _validate.tensor(tokens, "tokens", 3, "[B, L, D]")
    _validate.instance(position_table, "position_table", torch.Tensor, "a torch.Tensor [max_num_token, D]",
                       "make it with torch.randn(max_num_token, D)")
    table = position_table[0] if position_table.dim() == 3 and position_table.shape[0] == 1 else position_table
    _validate.tensor(table, "position_table", 2, "[max_num_token, D]")
    B, L, D = tokens.shape
    if table.shape[1] != D:
        raise InputValueError(f"position_table has width {table.shape[1]} but the tokens have D={D}; "
                              f"make the table [max_num_token, {D}].")
    if L > table.shape[0]:
        raise InputValueError(f"the sequence has {L} tokens but position_table has only {table.shape[0]} rows "
                              f"(max_num_token={table.shape[0]}); use a table with at least {L} rows, or fewer "
                              f"patches (a larger patch_size).")
    _validate.one_of(mode, "mode", ("broadcast", "tile"), "use 'broadcast' (both give the same numbers)")
    if mode == "broadcast":
        position_embedding = table[:L].unsqueeze(0)  # [1, L, D]
    else:
        position_embedding = torch.tile(table[:L], (B, 1, 1))  # [B, L, D]
    return tokens + position_embedding  # [B, L, D]


def sincos_position_table(grid_size: int | tuple[int, int], dim: int, num_prefix_tokens: int = 1) -> torch.Tensor:
    """A fixed 2-D sine-cosine position table (MAE, "ViT-S/16 done right").

    Half of each row encodes the patch's row, half its column, each with sines and cosines of
    geometrically spaced frequencies. Prefix tokens (CLS) get rows of zeros.

    Args:
        grid_size: patches per side, or `(rows, cols)`.
        dim: row width `D`; a multiple of 4.
        num_prefix_tokens: zero rows put first, one per CLS-like token.

    Returns:
        `[num_prefix_tokens + rows*cols, D]` table.
    """
    rows, cols = _validate.pair(grid_size, "grid_size")
    _validate.positive_int(dim, "dim")
    if dim % 4:
        raise InputValueError(f"dim must be a multiple of 4 for a 2-D sin-cos table, got {dim}; "
                              f"use e.g. {dim + 4 - dim % 4}.")
    _validate.non_negative_int(num_prefix_tokens, "num_prefix_tokens")
    quarter = dim // 4
    frequencies = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)  # [D/4]
    grid_r, grid_c = torch.meshgrid(torch.arange(rows, dtype=torch.float64),
                                    torch.arange(cols, dtype=torch.float64), indexing="ij")  # [rows, cols] each
    angles_r = grid_r.reshape(-1, 1) * frequencies  # [N, D/4]
    angles_c = grid_c.reshape(-1, 1) * frequencies  # [N, D/4]
    table = torch.cat([angles_r.sin(), angles_r.cos(), angles_c.sin(), angles_c.cos()], dim=1)  # [N, D]
    prefix = torch.zeros(num_prefix_tokens, dim, dtype=torch.float64)  # [prefix, D]
    return torch.cat([prefix, table]).float()  # [prefix + N, D]


def resample_position_table(position_table: torch.Tensor, new_grid: int | tuple[int, int],
                            old_grid: int | tuple[int, int] | None = None,
                            num_prefix_tokens: int = 1) -> torch.Tensor:
    """Resample a learned position table to another patch grid (another image size).

    The prefix rows (CLS) are kept as they are; the patch rows are laid out on their grid and
    interpolated bicubically, as timm and the paper (section 3.2) do for fine-tuning at higher resolution.

    Args:
        position_table: `[1, prefix + old_rows*old_cols, D]` or `[prefix + old_rows*old_cols, D]`.
        new_grid: patches per side of the new grid, or `(rows, cols)`.
        old_grid: the table's grid; inferred as a square when omitted.
        num_prefix_tokens: rows at the front that are not patches (1 for the CLS token).

    Returns:
        A table of the same number of dimensions, with `prefix + new_rows*new_cols` rows.
    """
    _validate.instance(position_table, "position_table", torch.Tensor, "a torch.Tensor [L, D] or [1, L, D]",
                       "pass the model's pos_embed")
    if position_table.dim() not in (2, 3) or (position_table.dim() == 3 and position_table.shape[0] != 1):
        raise InputValueError(f"position_table must be [L, D] or [1, L, D], got shape {tuple(position_table.shape)}; "
                              f"pass one table, e.g. model.pos_embed.")
    batched = position_table.dim() == 3
    table = _validate.tensor(position_table[0] if batched else position_table,
                             "position_table", 2, "[L, D]")  # [L, D]
    _validate.non_negative_int(num_prefix_tokens, "num_prefix_tokens")
    if num_prefix_tokens >= table.shape[0]:
        raise InputValueError(f"num_prefix_tokens={num_prefix_tokens} leaves no patch rows in a table of "
                              f"{table.shape[0]} rows; pass the number of CLS-like rows (1 for a ViT).")
    prefix, patch_rows = table[:num_prefix_tokens], table[num_prefix_tokens:]  # [prefix, D], [N, D]
    N, D = patch_rows.shape
    if old_grid is None:
        side = math.isqrt(N)
        if side * side != N:
            raise InputValueError(f"the table has {N} patch rows, not a square number; pass old_grid=(rows, cols).")
        old_grid = side
    old_rows, old_cols = _validate.pair(old_grid, "old_grid")
    new_rows, new_cols = _validate.pair(new_grid, "new_grid")
    if old_rows * old_cols != N:
        raise InputValueError(f"old_grid={old_grid} has {old_rows * old_cols} cells but the table has {N} patch rows "
                              f"(after {num_prefix_tokens} prefix rows); pass the grid the table was trained on.")
    grid = patch_rows.reshape(1, old_rows, old_cols, D).permute(0, 3, 1, 2)  # [1, D, rows, cols]
    grid = F.interpolate(grid, size=(new_rows, new_cols), mode="bicubic", align_corners=False)  # [1, D, r', c']
    resampled = grid.permute(0, 2, 3, 1).reshape(new_rows * new_cols, D)  # [N', D]
    out = torch.cat([prefix, resampled])  # [prefix + N', D]
    return out.unsqueeze(0) if batched else out
