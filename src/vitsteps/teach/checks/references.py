"""The self-checks' references: each exercise solved again, without the package's stage code that it checks.

Patches are cut by slicing the image square by square, kernels filled by index arithmetic, attention written out
with `einsum` and an explicit softmax, the loss as a log-sum-exp, the parameter count by counting. So a bug in
`vitsteps.patches`, `tokens`, `encoder` or `model` makes the package's own function fail its check instead of
moving the reference along with it (tests/teach/test_checks.py proves it).

Shape legend: B batch, C channels, H W image, P patch side, N patches, D model dim, L tokens, h heads,
d head dim, K classes.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ...model import ViTConfig


def image_to_patches(image: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Each `P x P` square in reading order, flattened channel first, then row, then column."""
    B, C, H, W = image.shape
    P = patch_size
    squares = [image[:, :, top:top + P, left:left + P].reshape(B, C * P * P)  # [B, C*P*P]
               for top in range(0, H, P) for left in range(0, W, P)]
    return torch.stack(squares, dim=1)  # [B, N, C*P*P]


def image2emb_naive(image: torch.Tensor, patch_size: int, weight: torch.Tensor) -> torch.Tensor:
    """The flattened squares times the weight."""
    return image_to_patches(image, patch_size) @ weight  # [B, N, D]


def weight_to_kernel(weight: torch.Tensor, in_chans: int, patch_size: int) -> torch.Tensor:
    """`kernel[d, c, u, v] = weight[c*P*P + u*P + v, d]`, by index arithmetic."""
    P = patch_size
    rows = torch.arange(in_chans * P * P).reshape(in_chans, P, P)  # [C, P, P], the row of weight for (c, u, v)
    return weight[rows].permute(3, 0, 1, 2)  # [C, P, P, D] -> [D, C, P, P]


def image2emb_conv(image: torch.Tensor, kernel: torch.Tensor, stride: int) -> torch.Tensor:
    """Every window `stride` apart, in reading order, dotted with each filter (a convolution written out)."""
    B, C, H, W = image.shape
    P = kernel.shape[-1]
    windows = [image[:, :, top:top + P, left:left + P]  # [B, C, P, P]
               for top in range(0, H - P + 1, stride) for left in range(0, W - P + 1, stride)]
    return torch.stack([torch.einsum("bcuv,dcuv->bd", window, kernel) for window in windows], dim=1)  # [B, N, D]


def prepend_cls_token(patch_tokens: torch.Tensor, cls_token: torch.Tensor) -> torch.Tensor:
    """The CLS token repeated once per sample, then the patch tokens."""
    B = patch_tokens.shape[0]
    return torch.cat([cls_token.repeat(B, 1, 1), patch_tokens], dim=1)  # [B, N+1, D]


def add_position_embedding(tokens: torch.Tensor, position_table: torch.Tensor) -> torch.Tensor:
    """Row `i` of the table added to token `i` of every sample."""
    L = tokens.shape[1]
    return tokens + position_table[torch.arange(L)]  # [B, L, D]


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Head `i` takes features `i*d` to `(i+1)*d - 1` of every token."""
    d = x.shape[-1] // num_heads
    return torch.stack([x[..., i * d:(i + 1) * d] for i in range(num_heads)], dim=1)  # [B, h, L, d]


def scaled_dot_product(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`softmax(q k^T / sqrt(d)) v` with `einsum` and the softmax written out."""
    scores = torch.einsum("...id,...jd->...ij", q, k) / math.sqrt(q.shape[-1])  # [..., L, L]
    exponentials = torch.exp(scores - scores.amax(dim=-1, keepdim=True))  # [..., L, L]
    weights = exponentials / exponentials.sum(dim=-1, keepdim=True)  # [..., L, L]
    return torch.einsum("...ij,...jd->...id", weights, v), weights  # [..., L, d], [..., L, L]


def cls_head_loss(encoder_output: torch.Tensor, head: nn.Linear,
                  labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The head's weights applied to token 0 by hand, and the mean of `log-sum-exp - logit of the label`."""
    logits = encoder_output[:, 0] @ head.weight.T + head.bias  # [B, K]
    picked = logits.gather(1, labels.unsqueeze(1)).squeeze(1)  # [B]
    return logits, (torch.logsumexp(logits, dim=1) - picked).mean()  # [B, K], scalar


def _linear(inputs: int, outputs: int, bias: bool = True) -> int:
    return inputs * outputs + (outputs if bias else 0)


def vit_parameter_parts(config: ViTConfig) -> dict[str, int]:
    """Parameters of `vitsteps.ViT(config)` part by part, counted from the fields, and `"total"`."""
    D, hidden, K = config.embed_dim, config.mlp_hidden, config.num_classes
    linear = _linear
    block = (2 * D + linear(D, 3 * D, config.qkv_bias) + linear(D, D) + 2 * D
             + linear(D, hidden) + linear(hidden, D))
    patches = (config.img_size // config.patch_size) ** 2
    parts = {"patch_embed": linear(config.in_chans * config.patch_size ** 2, D), "cls_token": D,
             "pos_embed": (patches + 1) * D if config.pos_embed == "learn" else 0, "blocks": config.depth * block,
             "norm": 2 * D, "head": linear(D, K) if K else 0}
    return {**parts, "total": sum(parts.values())}


def vit_parameter_count(config: ViTConfig) -> int:
    """Parameters of `vitsteps.ViT(config)`, counted from the fields."""
    return vit_parameter_parts(config)["total"]
