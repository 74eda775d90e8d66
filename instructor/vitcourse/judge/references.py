"""The self-checks' references: each exercise solved again, without the package's stage code.

Windows are cut by slicing the image square by square, convolutions written as sums over windows, kernels filled
by index arithmetic, attention written out with `einsum` and an explicit softmax, LayerNorm and GELU from their
formulas, losses as log-sum-exps, parameters counted field by field. So a bug in `vitsteps.patches`, `tokens`,
`encoder` or `model` makes the package's own function fail a check instead of moving the reference along with it
(tests/teach/test_checks.py proves it), and each reference can be compared with PyTorch's own way of doing it.

Shape legend: B batch, C channels, H W image, P patch side, S stride, N patches, D model dim, L tokens, h heads,
d head dim, K classes.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vitsteps.model import ViTConfig

LAYER_NORM_EPS = 1e-6  # the paper's code and timm


# --------------------------------------------------------------------------------------- 00


def num_tokens(height: int, width: int, patch_size: int) -> int:
    """The whole patches that fit, counted one by one, plus the CLS token."""
    whole = sum(1 for _ in range(patch_size, height + 1, patch_size)) * sum(
        1 for _ in range(patch_size, width + 1, patch_size))
    return whole + 1


# --------------------------------------------------------------------------------------- 01 and 02


def _windows(image: torch.Tensor, size: int, stride: int) -> list[torch.Tensor]:
    """Every `size x size` window of `image` `[B, C, H, W]` whose corner is a multiple of `stride`, in reading
    order; windows that would run past an edge are left out."""
    B, C, H, W = image.shape
    return [image[:, :, top:top + size, left:left + size]  # [B, C, size, size]
            for top in range(0, H - size + 1, stride) for left in range(0, W - size + 1, stride)]


def image_to_patches(image: torch.Tensor, patch_size: int, stride: int) -> torch.Tensor:
    """Each window flattened channel first, then row, then column."""
    B, C = image.shape[:2]
    P = patch_size
    windows = [window.reshape(B, C * P * P) for window in _windows(image, P, stride)]  # N x [B, C*P*P]
    return torch.stack(windows, dim=1)  # [B, N, C*P*P]


def pad_to_multiple(image: torch.Tensor, patch_size: int) -> torch.Tensor:
    """`image` on a canvas of zeros whose sides are the next multiples of `patch_size`, at its top left."""
    B, C, H, W = image.shape
    extra_h, extra_w = -H % patch_size, -W % patch_size
    image = torch.cat([image, image.new_zeros(B, C, extra_h, W)], dim=2)  # [B, C, H', W]
    return torch.cat([image, image.new_zeros(B, C, H + extra_h, extra_w)], dim=3)  # [B, C, H', W']


def image2emb_naive(image: torch.Tensor, patch_size: int, weight: torch.Tensor) -> torch.Tensor:
    """The padded image's patches times the weight."""
    return image_to_patches(pad_to_multiple(image, patch_size), patch_size, patch_size) @ weight  # [B, N, D]


def weight_to_kernel(weight: torch.Tensor, in_chans: int, patch_size: int) -> torch.Tensor:
    """`kernel[d, c, u, v] = weight[(u*P + v)*C + c, d]`: rows in (row, column, channel) order, by index arithmetic."""
    C, P = in_chans, patch_size
    rows = torch.tensor([[[(u * P + v) * C + c for v in range(P)] for u in range(P)]
                         for c in range(C)])  # [C, P, P], the row of weight for (c, u, v)
    return weight[rows].permute(3, 0, 1, 2)  # [C, P, P, D] -> [D, C, P, P]


def _convolve(image: torch.Tensor, kernel: torch.Tensor, stride: int) -> torch.Tensor:
    """A convolution written out: each window dotted with each filter; `[B, D, rows, cols]`."""
    B, C, H, W = image.shape
    size = kernel.shape[-1]
    rows, cols = (H - size) // stride + 1, (W - size) // stride + 1
    dots = [torch.einsum("bcuv,dcuv->bd", window, kernel) for window in _windows(image, size, stride)]  # [B, D]
    return torch.stack(dots, dim=2).reshape(B, len(kernel), rows, cols)  # [B, D, rows, cols]


def image2emb_conv(image: torch.Tensor, stem_kernel: torch.Tensor, kernel: torch.Tensor,
                   stride: int) -> torch.Tensor:
    """A 3x3 stem (zero padding 1, stride 1) and a ReLU, then the patch convolution, as tokens in reading order."""
    B = image.shape[0]
    padded = F.pad(image, (1, 1, 1, 1))  # [B, C, H+2, W+2]
    features = _convolve(padded, stem_kernel, 1).clamp(min=0)  # [B, C', H, W]
    feature_map = _convolve(features, kernel, stride)  # [B, D, rows, cols]
    return feature_map.reshape(B, len(kernel), -1).transpose(1, 2)  # [B, N, D]


# --------------------------------------------------------------------------------------- 03 and 04


def prepend_cls_token(patch_tokens: torch.Tensor, cls_token: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Per sample: the CLS token, then the patch tokens that `keep` lists, in its order."""
    rows = [torch.cat([cls_token[0], tokens[indices]]) for tokens, indices in zip(patch_tokens, keep, strict=True)]
    return torch.stack(rows)  # [B, 1+K, D]


def resample_grid(patch_rows: torch.Tensor, old: int, new: int) -> torch.Tensor:
    """`[old*old, D]` rows of a square grid, resampled bicubically (align_corners=False) to `[new*new, D]`."""
    D = patch_rows.shape[-1]
    grid = patch_rows.T.reshape(1, D, old, old)  # [1, D, old, old]: row i at (i // old, i % old)
    grid = F.interpolate(grid, size=(new, new), mode="bicubic", align_corners=False)  # [1, D, new, new]
    return grid.reshape(D, new * new).T  # [new*new, D]


def add_position_embedding(tokens: torch.Tensor, position_table: torch.Tensor) -> torch.Tensor:
    """Token `i` of every sample plus row `i` of the table, its patch rows first resampled to the tokens' grid."""
    new, old = math.isqrt(tokens.shape[1] - 1), math.isqrt(position_table.shape[0] - 1)
    patch_rows = position_table[1:] if new == old else resample_grid(position_table[1:], old, new)  # [N, D]
    return tokens + torch.cat([position_table[:1], patch_rows])  # [B, L, D]


# --------------------------------------------------------------------------------------- 05


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """From `[L, B, D]`: head `i` takes features `i*d` to `(i+1)*d - 1` of every token of every sample."""
    d = x.shape[-1] // num_heads
    heads = torch.stack([x[..., i * d:(i + 1) * d] for i in range(num_heads)])  # [h, L, B, d]
    return heads.permute(2, 0, 1, 3)  # [B, h, L, d]


def _softmax(scores: torch.Tensor) -> torch.Tensor:
    exponentials = torch.exp(scores - scores.amax(dim=-1, keepdim=True))  # [..., L, L]
    return exponentials / exponentials.sum(dim=-1, keepdim=True)  # [..., L, L]


def scaled_dot_product(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                       mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`softmax(q k^T / sqrt(d))` over the keys `mask` allows (True), times `v`; masked keys weigh exactly 0."""
    scores = torch.einsum("...id,...jd->...ij", q, k) / math.sqrt(q.shape[-1])  # [..., L, L]
    weights = _softmax(scores.masked_fill(~mask, float("-inf")))  # [..., L, L]
    return torch.einsum("...ij,...jd->...id", weights, v), weights  # [..., L, d], [..., L, L]


# --------------------------------------------------------------------------------------- 06


def cls_head_loss(encoder_output: torch.Tensor, head: nn.Linear, labels: torch.Tensor,
                  smoothing: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The head applied to token 0 by hand, and the cross-entropy against smoothed targets: `1 - smoothing` on
    the label plus `smoothing / K` on every class, as a log-sum-exp."""
    logits = encoder_output[:, 0] @ head.weight.T + head.bias  # [B, K]
    K = logits.shape[1]
    log_probabilities = logits - torch.logsumexp(logits, dim=1, keepdim=True)  # [B, K]
    targets = torch.full_like(logits, smoothing / K)  # [B, K]
    targets[torch.arange(len(labels)), labels] += 1 - smoothing
    return logits, -(targets * log_probabilities).sum(dim=1).mean()  # [B, K], scalar


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


# --------------------------------------------------------------------------------------- 07


def shift_images(images: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Each image moved by its own whole-pixel offset (down, right), copied rectangle by rectangle into zeros."""
    shifted = torch.zeros_like(images)  # [B, C, H, W]
    H, W = images.shape[-2:]
    for index, (down, right) in enumerate(offsets.tolist()):
        shifted[index, :, max(0, down):H + min(0, down), max(0, right):W + min(0, right)] = \
            images[index, :, max(0, -down):H - max(0, down), max(0, -right):W - max(0, right)]
    return shifted


# --------------------------------------------------------------------------------------- 08


def centre_distances(grid_size: int, patch_size: int) -> torch.Tensor:
    """Pixels between the centres of every pair of patches of a square grid, pair by pair: `[N, N]`."""
    centres = [(row * patch_size, col * patch_size) for row in range(grid_size) for col in range(grid_size)]
    return torch.tensor([[math.dist(a, b) for b in centres] for a in centres], dtype=torch.float64)  # [N, N]


def attention_distance(attention: torch.Tensor, grid_size: int, patch_size: int) -> torch.Tensor:
    """Per head: the patch-to-patch weights (CLS row and column dropped, each row summing to 1 again) times the
    distances, summed over keys, averaged over query patches and images."""
    weights = attention[:, :, 1:, 1:].double()  # [B, h, N, N]
    weights = weights / weights.sum(dim=-1, keepdim=True)  # [B, h, N, N]
    distances = centre_distances(grid_size, patch_size)  # [N, N]
    per_head = [sum(float((weights[b, head] * distances).sum()) / weights.shape[2] for b in range(len(weights)))
                / len(weights) for head in range(weights.shape[1])]
    return torch.tensor(per_head, dtype=attention.dtype)  # [h]


def ranks(values: list[float]) -> list[float]:
    """Ranks from 0, tied values sharing the mean of the ranks they occupy."""
    order = sorted(range(len(values)), key=values.__getitem__)
    result = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for position in range(start, end + 1):
            result[order[position]] = (start + end) / 2
        start = end + 1
    return result


def pearson(x: list[float], y: list[float]) -> float:
    """Pearson's correlation of two samples."""
    mean_x, mean_y = sum(x) / len(x), sum(y) / len(y)
    covariance = sum((a - mean_x) * (b - mean_y) for a, b in zip(x, y, strict=True))
    spread = math.sqrt(sum((a - mean_x) ** 2 for a in x) * sum((b - mean_y) ** 2 for b in y))
    return covariance / spread


def layout_score(position_table: torch.Tensor, grid_size: int) -> float:
    """Spearman's correlation, over each pair of distinct patches once, between the cosine similarity of their rows
    and the distance between their centres."""
    rows = position_table.double()  # [N, D]
    distances = centre_distances(grid_size, 1)  # [N, N]
    similarity, distance = [], []
    for i in range(len(rows)):
        for j in range(i + 1, len(rows)):
            similarity.append(float(rows[i] @ rows[j] / (rows[i].norm() * rows[j].norm())))
            distance.append(float(distances[i, j]))
    return pearson(ranks(similarity), ranks(distance))


# --------------------------------------------------------------------------------------- 09


def cut_patches(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Non-overlapping `P x P` patches in reading order, each flattened channel first."""
    return image_to_patches(images, patch_size, patch_size)  # [B, N, C*P*P]


def _apply(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    return x @ layer.weight.T + layer.bias  # [..., out]


def attention(x: torch.Tensor, qkv: nn.Linear, proj: nn.Linear, num_heads: int) -> torch.Tensor:
    """Multi-head self-attention over the `L` tokens of each sample of `x` `[B, L, D]`, written out."""
    B, L, D = x.shape
    d = D // num_heads
    q, k, v = _apply(qkv, x).reshape(B, L, 3, num_heads, d).unbind(2)  # 3 x [B, L, h, d]
    scores = torch.einsum("bihd,bjhd->bhij", q, k) / math.sqrt(d)  # [B, h, L, L]
    mixed = torch.einsum("bhij,bjhd->bihd", _softmax(scores), v)  # [B, L, h, d]
    return _apply(proj, mixed.reshape(B, L, D))  # [B, L, D]


def embed_tokens(patches: torch.Tensor, patch_proj: nn.Linear, cls_token: torch.Tensor,
                 pos_embed: torch.Tensor) -> torch.Tensor:
    """The patches embedded, the CLS token in front of every sample, and the position table added."""
    B = patches.shape[0]
    tokens = torch.cat([cls_token.expand(B, 1, -1), _apply(patch_proj, patches)], dim=1)  # [B, L, D]
    return tokens + pos_embed  # [B, L, D]


def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """LayerNorm over the last dimension from its formula (biased variance, epsilon 1e-6)."""
    mean = x.mean(dim=-1, keepdim=True)  # [..., 1]
    variance = ((x - mean) ** 2).mean(dim=-1, keepdim=True)  # [..., 1]
    return (x - mean) / torch.sqrt(variance + LAYER_NORM_EPS) * weight + bias  # [..., D]


def gelu(x: torch.Tensor) -> torch.Tensor:
    """The exact GELU, `x * Phi(x)`."""
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


def encoder_block(x: torch.Tensor, norm1: tuple[torch.Tensor, torch.Tensor], norm2: tuple[torch.Tensor, torch.Tensor],
                  qkv: nn.Linear, proj: nn.Linear, fc1: nn.Linear, fc2: nn.Linear, num_heads: int) -> torch.Tensor:
    """The pre-norm block: `x + attention(LN1(x))`, then `+ fc2(GELU(fc1(LN2(.))))`."""
    x = x + attention(layer_norm(x, *norm1), qkv, proj, num_heads)  # [B, L, D]
    return x + _apply(fc2, gelu(_apply(fc1, layer_norm(x, *norm2))))  # [B, L, D]


def classify(x: torch.Tensor, norm: tuple[torch.Tensor, torch.Tensor], head: nn.Linear) -> torch.Tensor:
    """The final LayerNorm on the CLS token (token 0), then the head."""
    return _apply(head, layer_norm(x[:, 0], *norm))  # [B, K]
