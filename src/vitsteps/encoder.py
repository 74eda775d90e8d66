"""Stage 5: the Transformer encoder, written out, and the same thing from `torch.nn`.

Shape legend: B batch, L tokens, D model dim, h heads, d = D / h head dim.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from . import _validate


def scaled_dot_product(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention written out: `softmax(q k^T / sqrt(d)) v`.

    Args:
        q, k, v: `[..., L, d]` queries, keys and values.

    Returns:
        `([..., L, d] outputs, [..., L, L] weights)`; each row of the weights sums to 1.
    """
    _validate.queries_keys_values(q, k, v)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # [..., L, L]
    weights = scores.softmax(dim=-1)  # [..., L, L]
    return weights @ v, weights  # [..., L, d], [..., L, L]


class Attention(nn.Module):
    """Multi-head self-attention with one fused `qkv` projection, named as in timm.

    Args:
        dim: token width `D`.
        num_heads: heads `h`; `D` must be divisible by `h`.
        qkv_bias: add a bias to the `qkv` projection.
        attn_drop: dropout on the attention weights.
        proj_drop: dropout after the output projection.
    """

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = True, attn_drop: float = 0.0,
                 proj_drop: float = 0.0) -> None:
        super().__init__()
        _validate.heads(dim, num_heads, "dim")
        _validate.probability(attn_drop, "attn_drop")
        _validate.probability(proj_drop, "proj_drop")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.fused_attn = True  # F.scaled_dot_product_attention; False runs the written-out path
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor, return_attention: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """`[B, L, D]` tokens to `[B, L, D]`; with `return_attention`, also the `[B, h, L, L]` weights."""
        _validate.tokens_of_width(x, self.qkv.in_features, "Attention")
        B, L, D = x.shape
        qkv = self.qkv(x).reshape(B, L, 3, self.num_heads, self.head_dim)  # [B, L, 3, h, d]
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x [B, h, L, d]
        weights = None
        if self.fused_attn and not return_attention:
            out = F.scaled_dot_product_attention(
                q, k, v, dropout_p=self.attn_drop.p if self.training else 0.0)  # [B, h, L, d]
        else:
            out, weights = scaled_dot_product(q, k, v)  # [B, h, L, d], [B, h, L, L]
            if self.training and self.attn_drop.p > 0:
                out = self.attn_drop(weights) @ v  # [B, h, L, d]
        out = out.transpose(1, 2).reshape(B, L, D)  # [B, L, D]
        out = self.proj_drop(self.proj(out))  # [B, L, D]
        return (out, weights) if return_attention else out


class Mlp(nn.Module):
    """Two linear layers with exact GELU between them, named as in timm (`fc1`, `fc2`)."""

    def __init__(self, dim: int, hidden_dim: int, drop: float = 0.0) -> None:
        super().__init__()
        _validate.positive_int(dim, "dim")
        _validate.positive_int(hidden_dim, "hidden_dim")
        _validate.probability(drop, "drop")
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _validate.tokens_of_width(x, self.fc1.in_features, "Mlp")
        hidden = self.drop1(self.act(self.fc1(x)))  # [B, L, hidden]
        return self.drop2(self.fc2(hidden))  # [B, L, D]


class Block(nn.Module):
    """One pre-norm encoder block: `x + attn(norm1(x))`, then `x + mlp(norm2(x))`.

    Args:
        dim: token width `D`.
        num_heads: attention heads `h`.
        mlp_ratio: hidden width of the MLP as a multiple of `D`.
        qkv_bias: add a bias to the `qkv` projection.
        drop: dropout after attention and in the MLP.
        attn_drop: dropout on the attention weights.
        norm_eps: LayerNorm epsilon; 1e-6 as in the paper's code and timm.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 drop: float = 0.0, attn_drop: float = 0.0, norm_eps: float = 1e-6) -> None:
        super().__init__()
        _validate.heads(dim, num_heads, "dim")
        hidden_dim = _validate.mlp_hidden(dim, mlp_ratio)
        _validate.probability(drop, "drop")
        _validate.probability(attn_drop, "attn_drop")
        _validate.positive_number(norm_eps, "norm_eps", "1e-6")
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=drop)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, hidden_dim, drop=drop)

    def forward(self, x: torch.Tensor, return_attention: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """`[B, L, D]` to `[B, L, D]`; with `return_attention`, also the `[B, h, L, L]` weights."""
        _validate.tokens_of_width(x, self.norm1.normalized_shape[0], "Block")
        if return_attention:
            attended, weights = self.attn(self.norm1(x), return_attention=True)  # [B, L, D], [B, h, L, L]
        else:
            attended, weights = self.attn(self.norm1(x)), None  # [B, L, D]
        x = x + attended  # [B, L, D]
        x = x + self.mlp(self.norm2(x))  # [B, L, D]
        return (x, weights) if return_attention else x


def build_torch_encoder(embed_dim: int, depth: int, num_heads: int, mlp_ratio: float = 4.0,
                        dropout: float = 0.0, norm_eps: float = 1e-6) -> nn.TransformerEncoder:
    """The same encoder from `torch.nn`, set up the way a ViT needs it.

    `batch_first=True` because our tokens are `[B, L, D]` (the default expects `[L, B, D]`),
    `norm_first=True` for the paper's pre-norm, exact GELU, and no nested tensors (they do not
    apply to pre-norm and only warn).

    Returns:
        An `nn.TransformerEncoder` mapping `[B, L, D]` to `[B, L, D]`.
    """
    _validate.heads(embed_dim, num_heads)
    _validate.positive_int(depth, "depth")
    hidden_dim = _validate.mlp_hidden(embed_dim, mlp_ratio)
    _validate.probability(dropout, "dropout")
    _validate.positive_number(norm_eps, "norm_eps", "1e-6")
    layer = nn.TransformerEncoderLayer(d_model=embed_dim, nhead=num_heads,
                                       dim_feedforward=hidden_dim, dropout=dropout,
                                       activation="gelu", layer_norm_eps=norm_eps, batch_first=True,
                                       norm_first=True)
    return nn.TransformerEncoder(layer, num_layers=depth, enable_nested_tensor=False)
