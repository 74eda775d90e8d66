"""Stage 3 and 4: the CLS token in front of the patch tokens, and the position table added to every token.

Every function checks its input with one call to `vitsteps._validate` (which names the parameter, the value and the
fix); the lines after it are the stage.

Shape legend: B batch, N patches, L = N + 1 tokens, D model dim.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from . import _validate


def prepend_cls_token(patch_tokens: torch.Tensor, cls_token: torch.Tensor) -> torch.Tensor:
    """Put one learned CLS token in front of every sequence in the batch.

    Args:
        patch_tokens: `[B, N, D]` patch tokens.
        cls_token: `[1, 1, D]`, one token shared by the whole batch (expanded, not copied).

    Returns:
        `[B, N+1, D]` tokens, the CLS token first.
    """
    _validate.cls_token_for(patch_tokens, cls_token)
    B, N, D = patch_tokens.shape
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
    table = _validate.position_table_for(tokens, position_table, mode)  # [max_num_token, D]
    B, L, D = tokens.shape
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
    rows, cols = _validate.sincos_grid(grid_size, dim, num_prefix_tokens)
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

    The prefix rows (CLS) are kept as they are; the patch rows are laid out on their grid and interpolated
    bicubically, as timm does. The paper (section 3.2) interpolates the table in 2-D to fine-tune at a higher
    resolution; its released code does it linearly (`scipy.ndimage.zoom` with `order=1`).

    Args:
        position_table: `[1, prefix + old_rows*old_cols, D]` or `[prefix + old_rows*old_cols, D]`.
        new_grid: patches per side of the new grid, or `(rows, cols)`.
        old_grid: the table's grid; inferred as a square when omitted.
        num_prefix_tokens: rows at the front that are not patches (1 for the CLS token).

    Returns:
        A table of the same number of dimensions, with `prefix + new_rows*new_cols` rows.
    """
    table, (old_rows, old_cols), (new_rows, new_cols) = _validate.resampling(
        position_table, new_grid, old_grid, num_prefix_tokens)  # table [L, D]
    prefix, patch_rows = table[:num_prefix_tokens], table[num_prefix_tokens:]  # [prefix, D], [N, D]
    N, D = patch_rows.shape
    grid = patch_rows.reshape(1, old_rows, old_cols, D).permute(0, 3, 1, 2)  # [1, D, rows, cols]
    grid = F.interpolate(grid, size=(new_rows, new_cols), mode="bicubic", align_corners=False)  # [1, D, r', c']
    resampled = grid.permute(0, 2, 3, 1).reshape(new_rows * new_cols, D)  # [N', D]
    out = torch.cat([prefix, resampled])  # [prefix + N', D]
    return out.unsqueeze(0) if position_table.dim() == 3 else out
