"""The ViT with one part changed, for the ablation ladder: what each part of the paper's design is worth here.

`ViTVariant(config, position=..., pooling=..., norm=...)` is a `vitsteps.ViT` (same parameter names, same
initialisation) in which one or more of these parts is swapped:

| part       | the paper's (default)             | the alternative                                              |
|------------|-----------------------------------|--------------------------------------------------------------|
| `position` | `"table"`: `config.pos_embed`     | `"none"`: no position information at all (a zero buffer)     |
| `pooling`  | `"cls"`: the head reads the CLS token | `"mean"`: the head reads the mean of the patch tokens    |
| `norm`     | `"pre"`: `x + f(LN(x))`, a final LN | `"post"`: `LN(x + f(x))` as in the 2017 Transformer, no final LN |

The other rungs of the ladder are `ViTConfig` fields: a fixed 2-D sin-cos table (`pos_embed="sincos"`), how a
learned table starts (`pos_embed_init`), and the patch size.

Shape legend: B batch, L tokens, D model dim, h heads, K classes.
"""
from __future__ import annotations

import torch
from torch import nn

from . import _validate
from .encoder import Block
from .model import ViT, ViTConfig

POSITIONS = ("table", "none")
POOLINGS = ("cls", "mean")
NORMS = ("pre", "post")


class PostNormBlock(Block):
    """A block with the 2017 Transformer's post-norm, `x = LN(x + attn(x))` then `x = LN(x + mlp(x))`, built from
    the same parts (and parameter names) as the pre-norm `Block`."""

    def forward(self, x: torch.Tensor, return_attention: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """`[B, L, D]` to `[B, L, D]`; with `return_attention`, also the `[B, h, L, L]` weights."""
        if return_attention:
            attended, weights = self.attn(x, return_attention=True)  # [B, L, D], [B, h, L, L]
        else:
            attended, weights = self.attn(x), None  # [B, L, D]
        x = self.norm1(x + attended)  # [B, L, D]
        x = self.norm2(x + self.mlp(x))  # [B, L, D]
        return (x, weights) if return_attention else x


class ViTVariant(ViT):
    """A `ViT` with its position information, pooling or norm placement swapped (see the module's table).

    With the defaults it is the `ViT` itself: built after the same seed, it holds the same weights.

    Args:
        config: the model's shapes.
        position: "table" (the config's position table) or "none" (no position information).
        pooling: "cls" (the head reads the CLS token) or "mean" (the mean of the patch tokens).
        norm: "pre" (the paper's pre-norm blocks and final norm) or "post" (post-norm blocks, no final norm).
    """

    def __init__(self, config: ViTConfig, position: str = "table", pooling: str = "cls", norm: str = "pre") -> None:
        _validate.instance(config, "config", ViTConfig, "a ViTConfig", "use get_config('mnist')")
        _validate.one_of(position, "position", POSITIONS)
        _validate.one_of(pooling, "pooling", POOLINGS)
        _validate.one_of(norm, "norm", NORMS)
        if position == "none" and config.pos_embed != "learn":
            raise ValueError(f"position='none' removes the position table, so pos_embed={config.pos_embed!r} would "
                             f"be ignored; pass a config with pos_embed='learn' (the default).")
        super().__init__(config)
        self.position, self.pooling, self.norm_placement = position, pooling, norm
        D = config.embed_dim
        if position == "none":
            del self.pos_embed
            self.register_buffer("pos_embed", torch.zeros(1, config.seq_len, D))  # [1, L, D], never trained
        if norm == "post":
            self.blocks = nn.ModuleList(
                PostNormBlock(D, config.num_heads, config.mlp_ratio, config.qkv_bias, config.drop_rate,
                              config.attn_drop_rate, config.norm_eps) for _ in range(config.depth))
            self.norm = nn.Identity()  # each post-norm block already ends with a LayerNorm
            self.reset_parameters()  # the new blocks get timm's initialisation too

    def forward_head(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens `[B, L, D]` to logits `[B, K]`, from the CLS token or from the mean of the patch tokens."""
        if self.pooling == "cls":
            return super().forward_head(tokens)
        _validate.tensor(tokens, "tokens", 3, "[B, L, D]")
        return self.head(tokens[:, 1:].mean(dim=1))  # [B, K]

    def extra_repr(self) -> str:
        return f"position={self.position!r}, pooling={self.pooling!r}, norm={self.norm_placement!r}"
