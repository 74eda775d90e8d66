"""A ViT with the classic bugs built in, DELIBERATELY WRONG, for the bug hunt of notebook 09.

Never use this module to train or study a model: use `vitsteps.ViT`. Each bug is switched on by naming it in
`bugs`; with none switched on, `BuggyViT` computes exactly what `vitsteps.ViT` computes (a test proves it).

| bug                  | the mistake                                                  | caught by                  |
|----------------------|--------------------------------------------------------------|----------------------------|
| `patchify_view`      | patches cut with `view` and no `permute`: stripes            | `patch_order`              |
| `batch_first`        | the article's `batch_first=False` encoder fed `[B, L, D]`    | `input_sensitivity`        |
| `position_forgotten` | the article's position table, made but never added          | `position_sensitivity`     |
| `position_per_batch` | the position table is a `[B, L, D]` parameter, one per slot  | `batch_independence`       |
| `shared_norm`        | the MLP sublayer reuses `norm1`; `norm2` is never called     | `gradients_reach`          |
| `post_norm`          | LayerNorm after each residual add, not before each sublayer  | `pre_norm_residual`        |

`BUGS[name].caught_by` lists every property that catches a bug; the table names the first.

Shape legend: B batch, C channels, H W image, P patch side, N patches, L = N + 1 tokens, D model dim.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import torch
from torch import nn

from .. import _validate
from ..encoder import Attention, Mlp
from ..model import ViTConfig, get_config, init_weights
from ..tokens import prepend_cls_token


class Bug(NamedTuple):
    """One deliberate mistake: what it is, and which properties (in `vitsteps.properties`) catch it."""

    description: str
    caught_by: tuple[str, ...]


# In the order notebook 09 fixes them: each fix turns its checks green (and one fix reveals a hidden bug).
BUGS: dict[str, Bug] = {
    "patchify_view": Bug("patches are cut with view (reshape) and no permute: each 'patch' is a run of "
                         "consecutive pixels (stripes), not a square", ("patch_order", "patch_round_trip")),
    "batch_first": Bug("the encoder keeps PyTorch's default batch_first=False but is fed [B, L, D] tokens, "
                       "so attention runs along the batch axis", ("input_sensitivity", "gradients_reach")),
    "position_forgotten": Bug("the position table is made but never added to the tokens",
                              ("position_sensitivity", "gradients_reach")),
    "position_per_batch": Bug("the position table is a [B, L, D] parameter: each batch slot has its own",
                              ("batch_independence",)),
    "shared_norm": Bug("the MLP sublayer reuses norm1, so norm2 is built but never called", ("gradients_reach",)),
    "post_norm": Bug("LayerNorm comes after each residual add (post-norm) instead of before each sublayer",
                     ("pre_norm_residual",)),
}


def _check_bugs(bugs: Iterable[str]) -> frozenset[str]:
    if isinstance(bugs, str):
        _validate.fail(TypeError, "bugs", "a collection of bug names", bugs, f"pass [{bugs!r}]")
    chosen = frozenset(bugs)
    for bug in sorted(chosen):
        _validate.one_of(bug, "bugs", list(BUGS))
    return chosen


def patchify_with_view(images: torch.Tensor, patch_size: int, forget_permute: bool = True) -> torch.Tensor:
    """Cut images into patches with `reshape`; DELIBERATELY WRONG while `forget_permute` is True.

    `reshape` only regroups values in memory order. Splitting `H` and `W` into `(H/P, P)` and `(W/P, P)` is
    right, but the patch axes `H/P, W/P` must then be moved in front with `permute(0, 2, 4, 1, 3, 5)`;
    without it, each "patch" is `C*P*P` consecutive values of one channel: whole rows, a stripe.

    Args:
        images: `[B, C, H, W]`.
        patch_size: patch side `P`; it must divide `H` and `W`.
        forget_permute: keep the bug (True) or apply the fix (False, equal to `image_to_patches`).

    Returns:
        `[B, N, C*P*P]`.
    """
    _validate.tensor(images, "images", 4, "[B, C, H, W]")
    _validate.positive_int(patch_size, "patch_size")
    B, C, H, W = images.shape
    _validate.divides(patch_size, H, "patch_size", "height")
    _validate.divides(patch_size, W, "patch_size", "width")
    P = patch_size
    grid = images.reshape(B, C, H // P, P, W // P, P)  # [B, C, H/P, P, W/P, P]
    if not forget_permute:
        grid = grid.permute(0, 2, 4, 1, 3, 5)  # [B, H/P, W/P, C, P, P], the fix
    return grid.reshape(B, (H // P) * (W // P), C * P * P)  # [B, N, C*P*P]


class BuggyBlock(nn.Module):
    """An encoder block with switchable bugs; with none, the same as `vitsteps.encoder.Block`.

    Args:
        dim: token width `D`.
        num_heads: attention heads `h`.
        mlp_ratio: MLP hidden width as a multiple of `D`.
        norm_eps: LayerNorm epsilon.
        bugs: which of "batch_first", "shared_norm", "post_norm" to switch on.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, norm_eps: float = 1e-6,
                 bugs: Iterable[str] = ()) -> None:
        super().__init__()
        self.bugs = _check_bugs(bugs)
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def attend(self, x: torch.Tensor) -> torch.Tensor:
        """Self-attention over the tokens, or over the batch with the `batch_first` bug."""
        if "batch_first" in self.bugs:
            # nn.TransformerEncoderLayer(batch_first=False) reads [B, L, D] as [L, B, D]:
            # it mixes the B samples at each token position, and never the L tokens of one sample.
            return self.attn(x.transpose(0, 1)).transpose(0, 1)  # [B, L, D]
        return self.attn(x)  # [B, L, D]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, L, D = x.shape
        mlp_norm = self.norm1 if "shared_norm" in self.bugs else self.norm2  # the bug: norm1 twice
        if "post_norm" in self.bugs:
            x = self.norm1(x + self.attend(x))  # [B, L, D]
            return mlp_norm(x + self.mlp(x))  # [B, L, D]
        x = x + self.attend(self.norm1(x))  # [B, L, D]
        return x + self.mlp(mlp_norm(x))  # [B, L, D]


class BuggyViT(nn.Module):
    """A ViT that carries the bugs named in `bugs`; DELIBERATELY WRONG, for notebook 09.

    The patch embedding is the original article's: flattened patches times a `[C*P*P, D]` matrix (an
    `nn.Linear`), so the patch cutter is visible as `patchify`. Everything else uses the package's stages.

    Args:
        config: shapes; the original article's toy model (`get_config("toy")`) when omitted.
        bugs: names from `BUGS` to switch on; all of them by default.
        batch_size: the batch size the `position_per_batch` bug ties the model to.
    """

    def __init__(self, config: ViTConfig | None = None, bugs: Iterable[str] = tuple(BUGS),
                 batch_size: int = 4) -> None:
        super().__init__()
        config = get_config("toy") if config is None else config
        _validate.instance(config, "config", ViTConfig, "a ViTConfig", "use get_config('toy')")
        self.config = config
        self.bugs = _check_bugs(bugs)
        _validate.positive_int(batch_size, "batch_size")
        C, P, D = config.in_chans, config.patch_size, config.embed_dim
        self.patch_embed = nn.Linear(C * P * P, D)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))  # [1, 1, D]
        table_rows = batch_size if "position_per_batch" in self.bugs else 1  # the bug: one table per batch slot
        self.pos_embed = nn.Parameter(torch.zeros(table_rows, config.seq_len, D))  # [1 or B, L, D]
        block_bugs = self.bugs & {"batch_first", "shared_norm", "post_norm"}
        self.blocks = nn.ModuleList(BuggyBlock(D, config.num_heads, config.mlp_ratio, config.norm_eps, block_bugs)
                                    for _ in range(config.depth))
        self.norm = nn.LayerNorm(D, eps=config.norm_eps)
        self.head = nn.Linear(D, config.num_classes)
        init_weights(self)  # ViT's own initialisation

    def patchify(self, images: torch.Tensor, patch_size: int | None = None) -> torch.Tensor:
        """Images `[B, C, H, W]` to flattened patches `[B, N, C*P*P]` (with the `patchify_view` bug if on)."""
        patch_size = self.config.patch_size if patch_size is None else patch_size
        return patchify_with_view(images, patch_size, forget_permute="patchify_view" in self.bugs)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images `[B, C, H, W]` to logits `[B, K]`."""
        _validate.tensor(images, "images", 4, "[B, C, H, W]")
        B, C, H, W = images.shape
        patch_tokens = self.patch_embed(self.patchify(images))  # [B, N, D]
        tokens = prepend_cls_token(patch_tokens, self.cls_token)  # [B, L, D]
        position_embedding = self.pos_embed  # [1 or B, L, D]
        if "position_forgotten" not in self.bugs:
            tokens = tokens + position_embedding  # [B, L, D]
        for block in self.blocks:
            tokens = block(tokens)  # [B, L, D]
        return self.head(self.norm(tokens)[:, 0])  # [B, K]
