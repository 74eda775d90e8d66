"""The exercise table: every graded exercise of the series, as data, in series order.

Each entry says how to make its cases from a seeded generator (the original article's configuration first, then
grayscale, non-square and odd sizes, and for batched inputs the same sample with other batch-mates), its reference
(`references`, written without the package's stage code), its known mistakes with their hints, the calls it rules
out, and its nbgrader grade id. To add an exercise, add one entry to `EXERCISES`.

Shape legend: B batch, C channels, H W image, P patch side, N patches, D model dim, L tokens, h heads,
d head dim, K classes.
"""
from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ...model import ViTConfig
from ..properties import pixel_span
from . import references
from .spec import Case, Exercise, Mistake, as_int

# how close an output must be to the reference, in every exercise
TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}
BATCH_CHECKS = ("gradients", "batch independence")
BATCH_NOTE = ("sample 0 is the same as in the case before; only its batch-mates changed. One sample's result must "
              "not depend on its batch-mates: keep the batch dimension first and never reshape or mix across it "
              "(e.g. a view that folds B into another dimension, or an encoder that reads [B, L, D] as [L, B, D]).")
STRIPES = ("looks like reshape/view without permute: patches come out as stripes (whole image rows) instead of "
           "P x P squares. Use F.unfold then .transpose(1, 2), or reshape to [B, C, H/P, P, W/P, P] and permute to "
           "[B, H/P, W/P, C, P, P] before flattening.")
CHANNEL_LAST = ("each patch holds the right pixels but flattened as (P, P, C): unfold's order is channel first, "
                "then row, then column (C, P, P).")
COLUMN_ORDER = ("the patches come column by column: the reading order is row by row (patch 1 is to the right of "
                "patch 0, not below it).")
NO_TRANSPOSE = ("unfold gives [B, C*P*P, N]: transpose the last two dimensions to get one row per patch, "
                "[B, N, C*P*P].")


def _randn(generator: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=generator)  # [*shape]


def _with_other_batch_mates(case: Case, generator: torch.Generator) -> Case:
    """The same case with every sample but the first (of its first argument) replaced."""
    batch, *rest = case.args
    changed = batch.clone()  # [B, ...], sample 0 kept
    changed[1:] = _randn(generator, *batch.shape)[1:]  # [B-1, ...], new batch-mates
    return Case(case.label, (changed, *rest), case.kwargs, note=BATCH_NOTE)


def _batched(cases: list[Case], generator: torch.Generator) -> list[Case]:
    """`cases`, each with a batch of more than one sample followed by the same case with other batch-mates."""
    return [variant for case in cases
            for variant in ([case, _with_other_batch_mates(case, generator)] if len(case.args[0]) > 1 else [case])]


# --------------------------------------------------------------------------------------- stages 1 and 2


def _patch_configs(generator: torch.Generator) -> list[tuple[int, int, int, int, int]]:
    """(B, C, H, W, P): the article's first, then grayscale digits, non-square, odd sizes."""
    odd = int(torch.randint(2, 4, (1,), generator=generator))  # the last configuration varies with the seed
    return [(1, 3, 8, 8, 4), (4, 1, 8, 8, 2), (2, 3, 8, 12, 4), (3, 2, 3 * odd, 3 * (odd + 1), 3)]


def _image_to_patches_cases(generator: torch.Generator) -> list[Case]:
    cases = []
    for B, C, H, W, P in _patch_configs(generator):
        case = Case(f"B={B}, C={C}, H={H}, W={W}, patch_size={P}", (_randn(generator, B, C, H, W), P), grad_args=(0,))
        cases += _batched([case], generator)
    return cases


def _grid(image: torch.Tensor, P: int) -> torch.Tensor:
    B, C, H, W = image.shape
    return image.reshape(B, C, H // P, P, W // P, P)  # [B, C, H/P, P, W/P, P]


PATCH_MISTAKES: tuple[tuple[str, Callable[[torch.Tensor, int], torch.Tensor], str], ...] = (
    ("view without permute", lambda image, P: image.reshape(len(image), -1, image.shape[1] * P * P), STRIPES),
    ("channel last", lambda image, P: _grid(image, P).permute(0, 2, 4, 3, 5, 1).reshape(
        len(image), -1, image.shape[1] * P * P), CHANNEL_LAST),
    ("column order", lambda image, P: _grid(image, P).permute(0, 4, 2, 1, 3, 5).reshape(
        len(image), -1, image.shape[1] * P * P), COLUMN_ORDER),
    ("unfold without transpose", lambda image, P: references.image_to_patches(image, P).transpose(1, 2),
     NO_TRANSPOSE),
)


def _which_pixels(case: Case, got: object) -> str | None:
    """For patches of the right shape made of the image's own pixels: the first patch that holds other pixels."""
    image, P = case.args
    B, C, H, W = image.shape
    if not isinstance(got, torch.Tensor) or got.shape != (B, (H // P) * (W // P), C * P * P):
        return None
    pixels = image[0].reshape(-1)  # [C*H*W]
    order = pixels.argsort()  # [C*H*W]
    columns = W // P
    for n, values in enumerate(got[0].detach()):
        found = order[torch.searchsorted(pixels[order], values.contiguous()).clamp(max=len(pixels) - 1)]  # [C*P*P]
        if not torch.equal(pixels[found], values):
            return None  # not pixels copied from the image: nothing to trace
        top, left = n // columns * P, n % columns * P
        square = torch.arange(C * H * W).reshape(C, H, W)[:, top:top + P, left:left + P].reshape(-1)  # [C*P*P]
        if set(found.tolist()) != set(square.tolist()):
            return (f"your patch {n} holds pixels from {pixel_span(found, H, W)}; it should hold "
                    f"{pixel_span(square, H, W)}.")
    return None


IMAGE_TO_PATCHES = Exercise(
    "image_to_patches", "01_patches_unfold", "ex01_image_to_patches", _image_to_patches_cases,
    references.image_to_patches, tuple(Mistake(name, imitate, hint) for name, imitate, hint in PATCH_MISTAKES),
    explain=_which_pixels, forbidden=("torch.nn.functional.unfold", "torch.nn.Unfold"),
    package_reference=("vitsteps.patches.image_to_patches",),
    signature="fn(image [B,C,H,W], patch_size) -> [B, N, C*P*P]",
    passes=("shapes", "values vs vitsteps", "patch order", *BATCH_CHECKS), **TOLERANCE)


def _image2emb_naive_cases(generator: torch.Generator) -> list[Case]:
    cases = []
    for (B, C, H, W, P), D in zip(_patch_configs(generator), [8, 5, 16, 6], strict=True):
        image, weight = _randn(generator, B, C, H, W), _randn(generator, C * P * P, D)
        case = Case(f"B={B}, C={C}, H={H}, W={W}, patch_size={P}, weight [{C * P * P}, {D}]", (image, P, weight),
                    grad_args=(0, 2))
        cases += _batched([case], generator)
    return cases


IMAGE2EMB_NAIVE = Exercise(
    "image2emb_naive", "01_patches_unfold", "ex01_image2emb", _image2emb_naive_cases, references.image2emb_naive,
    tuple(Mistake(name, lambda image, P, weight, imitate=imitate: imitate(image, P) @ weight, hint)
          for name, imitate, hint in PATCH_MISTAKES),
    package_reference=("vitsteps.patches.patch_embed_unfold",), passes=IMAGE_TO_PATCHES.passes, **TOLERANCE,
    signature="fn(image [B,C,H,W], patch_size, weight [C*P*P, D]) -> [B, N, D]")


def _weight_to_kernel_cases(generator: torch.Generator) -> list[Case]:
    return [Case(f"weight [{C * P * P}, {D}], in_chans={C}, patch_size={P}", (_randn(generator, C * P * P, D), C, P),
                 grad_args=(0,)) for C, P, D in [(3, 4, 8), (1, 2, 5), (2, 3, 4), (4, 1, 3)]]


WEIGHT_TO_KERNEL_MISTAKES = (
    Mistake("reshape without transpose", lambda weight, C, P: weight.reshape(-1, C, P, P),
            "reshape without transpose: weight's rows index the C*P*P values of a patch and its columns the D "
            "outputs, so transpose to [D, C*P*P] first, then reshape to [D, C, P, P]."),
    Mistake("channel last", lambda weight, C, P: weight.reshape(P, P, C, -1).permute(3, 2, 0, 1),
            "the patch values are read as (P, P, C); unfold's order is (C, P, P)."),
    Mistake("rows and columns swapped", lambda weight, C, P: weight.T.reshape(-1, C, P, P).transpose(-1, -2),
            "rows and columns of each kernel are swapped: do not transpose the last two dimensions."),
)
WEIGHT_TO_KERNEL = Exercise(
    "weight_to_kernel", "02_patches_conv", "ex02_weight_to_kernel", _weight_to_kernel_cases,
    references.weight_to_kernel, WEIGHT_TO_KERNEL_MISTAKES, package_reference=("vitsteps.patches.weight_to_kernel",),
    signature="fn(weight [C*P*P, D], in_chans, patch_size) -> [D, C, P, P]", **TOLERANCE,
    passes=("shapes", "values vs vitsteps", "conv equals unfold @ weight", "gradients"))


def _image2emb_conv_cases(generator: torch.Generator) -> list[Case]:
    cases = []
    for (B, C, H, W, P), D in zip(_patch_configs(generator), [8, 5, 16, 6], strict=True):
        image, kernel = _randn(generator, B, C, H, W), _randn(generator, D, C, P, P)
        case = Case(f"B={B}, C={C}, H={H}, W={W}, kernel [{D}, {C}, {P}, {P}], stride={P}", (image, kernel, P),
                    grad_args=(0, 1))
        cases += _batched([case], generator)
    return cases


def _feature_map(image: torch.Tensor, kernel: torch.Tensor, stride: int) -> torch.Tensor:
    return F.conv2d(image, kernel, stride=stride)  # [B, D, H/P, W/P]


IMAGE2EMB_CONV_MISTAKES = (
    Mistake("reshape without transpose",
            lambda image, kernel, stride: _feature_map(image, kernel, stride).reshape(len(image), -1, len(kernel)),
            "looks like reshape/view without transpose: conv2d gives [B, D, H/P, W/P]; flatten to [B, D, N] and then "
            ".transpose(1, 2) to get [B, N, D]. A reshape straight to [B, N, D] mixes the channels of different "
            "patches."),
    Mistake("no transpose",
            lambda image, kernel, stride: _feature_map(image, kernel, stride).reshape(len(image), len(kernel), -1),
            "conv2d's output is [B, D, ...]: after flattening the grid, transpose(1, 2) to get one row per patch, "
            "[B, N, D]."),
    Mistake("column order", lambda image, kernel, stride: _feature_map(image, kernel, stride).transpose(-1, -2)
            .flatten(2).transpose(1, 2), COLUMN_ORDER),
    Mistake("stride 1", lambda image, kernel, stride: _feature_map(image, kernel, 1).flatten(2).transpose(1, 2),
            "the convolution must step by the patch size: pass stride=stride to F.conv2d."),
)
IMAGE2EMB_CONV = Exercise(
    "image2emb_conv", "02_patches_conv", "ex02_image2emb_conv", _image2emb_conv_cases, references.image2emb_conv,
    IMAGE2EMB_CONV_MISTAKES, package_reference=("vitsteps.patches.patch_embed_conv",), **TOLERANCE,
    signature="fn(image [B,C,H,W], kernel [D,C,P,P], stride) -> [B, N, D]", passes=IMAGE_TO_PATCHES.passes)


# --------------------------------------------------------------------------------------- stages 3 and 4


def _prepend_cls_token_cases(generator: torch.Generator) -> list[Case]:
    return _batched([Case(f"patch_tokens [{B}, {N}, {D}], cls_token [1, 1, {D}]",
                          (_randn(generator, B, N, D), _randn(generator, 1, 1, D)), grad_args=(0, 1))
                     for B, N, D in [(1, 4, 8), (3, 4, 8), (2, 16, 5), (4, 1, 3)]], generator)


def _add_position_embedding_cases(generator: torch.Generator) -> list[Case]:
    return _batched([Case(f"tokens [{B}, {L}, {D}], position_table [{rows}, {D}]",
                          (_randn(generator, B, L, D), _randn(generator, rows, D)), grad_args=(0, 1))
                     for B, L, rows, D in [(1, 5, 16, 8), (3, 5, 16, 8), (2, 17, 17, 4), (4, 2, 10, 6)]], generator)


PREPEND_CLS_TOKEN = Exercise(
    "prepend_cls_token", "03_cls_token", "ex03_prepend_cls_token", _prepend_cls_token_cases,
    references.prepend_cls_token, (
        Mistake("CLS last", lambda tokens, cls: torch.cat([tokens, cls.expand(len(tokens), -1, -1)], dim=1),
                "the CLS token must come first (position 0), not after the patches."),
        Mistake("features", lambda tokens, cls: torch.cat([cls.expand(len(tokens), -1, -1), tokens], dim=2),
                "concatenate along the token dimension (dim=1), not the feature dimension.")),
    explain=lambda case, got: ("expand the single [1, 1, D] token to [B, 1, D] with .expand(B, -1, -1), then "
                               "torch.cat([cls, patch_tokens], dim=1)."),
    package_reference=("vitsteps.tokens.prepend_cls_token",), **TOLERANCE,
    signature="fn(patch_tokens [B,N,D], cls_token [1,1,D]) -> [B, N+1, D]",
    passes=("shapes", "values vs vitsteps", "token order", *BATCH_CHECKS))

ADD_POSITION_EMBEDDING_MISTAKES = (
    Mistake("never added", lambda tokens, table: tokens,
            "the output equals the input tokens: the position table was never added (the original article's bug), "
            "so the model cannot tell where a patch came from."),
    Mistake("last rows", lambda tokens, table: tokens + table[-tokens.shape[1]:],
            "take the FIRST L rows of the table (table[:L]): row i belongs to position i."),
    Mistake("off by one", lambda tokens, table: tokens + table[1:tokens.shape[1] + 1],
            "off by one: row 0 of the table belongs to the CLS token at position 0, so use table[:L]."),
    Mistake("multiplied", lambda tokens, table: tokens * table[:tokens.shape[1]],
            "the position embedding is added (+), not multiplied."),
)
ADD_POSITION_EMBEDDING = Exercise(
    "add_position_embedding", "04_position_embedding", "ex04_add_position_embedding", _add_position_embedding_cases,
    references.add_position_embedding, ADD_POSITION_EMBEDDING_MISTAKES, **TOLERANCE,
    package_reference=("vitsteps.tokens.add_position_embedding",),
    passes=("shapes", "values vs vitsteps", *BATCH_CHECKS),
    signature="fn(tokens [B,L,D], position_table [max_num_token, D]) -> [B, L, D]")


# --------------------------------------------------------------------------------------- stage 5


def _split_heads_cases(generator: torch.Generator) -> list[Case]:
    return _batched([Case(f"x [{B}, {L}, {D}], num_heads={h}", (_randn(generator, B, L, D), h), grad_args=(0,))
                     for B, L, D, h in [(1, 5, 8, 8), (2, 5, 8, 2), (3, 17, 12, 3), (2, 4, 6, 1)]], generator)


SPLIT_HEADS = Exercise(
    "split_heads", "05_encoder", "ex05_split_heads", _split_heads_cases, references.split_heads, (
        Mistake("view without permute", lambda x, h: x.reshape(x.shape[0], h, x.shape[1], -1),
                "looks like reshape/view without permute: a head must get a slice of the feature dimension for "
                "every token, not a block of consecutive tokens. Reshape to [B, L, h, d] then .transpose(1, 2)."),
        Mistake("(d, h)", lambda x, h: x.reshape(*x.shape[:2], -1, h).permute(0, 3, 1, 2),
                "split D as (h, d), not (d, h): head i takes features i*d to (i+1)*d - 1."),
        Mistake("no transpose", lambda x, h: x.reshape(*x.shape[:2], h, -1),
                "heads must come before tokens, [B, h, L, d]: add .transpose(1, 2).")),
    signature="fn(x [B,L,D], num_heads) -> [B, h, L, d]", **TOLERANCE,
    passes=("shapes", "values vs reference", "head order", *BATCH_CHECKS))


def _scaled_dot_product_cases(generator: torch.Generator) -> list[Case]:
    return [Case(f"q, k, v {list(shape)}", tuple(_randn(generator, *shape) * 2 for _ in range(3)), grad_args=(0, 1, 2))
            for shape in [(1, 5, 8), (2, 3, 5, 4), (3, 7, 16), (2, 8, 5, 1)]]


def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None, dim: int = -1,
               softmax: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention as a mistake computes it: another scale, softmax over another dimension, or no softmax."""
    scores = q @ k.transpose(-2, -1) / (math.sqrt(q.shape[-1]) if scale is None else scale)  # [..., L, L]
    weights = scores.softmax(dim) if softmax else scores  # [..., L, L]
    return weights @ v, weights  # [..., L, d], [..., L, L]


SCALED_DOT_PRODUCT_MISTAKES = (
    Mistake("not scaled", lambda q, k, v: _attention(q, k, v, scale=1.0),
            "the scores are not scaled: divide q @ k^T by sqrt(d) before the softmax, or large d makes the softmax "
            "saturate."),
    Mistake("divided by d", lambda q, k, v: _attention(q, k, v, scale=q.shape[-1]),
            "divide by sqrt(d) (math.sqrt(q.shape[-1])), not by d."),
    Mistake("softmax over the queries", lambda q, k, v: _attention(q, k, v, dim=-2),
            "softmax over the last dimension (dim=-1): each query's weights over the keys sum to 1."),
    Mistake("no softmax", lambda q, k, v: _attention(q, k, v, softmax=False),
            "apply the softmax to the scaled scores."),
    Mistake("weights transposed",
            lambda q, k, v: (_attention(q, k, v)[1].transpose(-2, -1) @ v, _attention(q, k, v)[1]),
            "multiply weights @ v, not weights^T @ v."),
    Mistake("the values", lambda q, k, v: (v, _attention(q, k, v)[1]),
            "return weights @ v, the weighted average of the values."),
    Mistake("the output alone", lambda q, k, v: _attention(q, k, v)[0], "end with `return weights @ v, weights`."),
)
SCALED_DOT_PRODUCT = Exercise(
    "scaled_dot_product", "05_encoder", "ex05_scaled_dot_product", _scaled_dot_product_cases,
    references.scaled_dot_product, SCALED_DOT_PRODUCT_MISTAKES, outputs=("output", "attention weights"),
    package_reference=("vitsteps.encoder.scaled_dot_product",), **TOLERANCE,
    signature="fn(q, k, v [..., L, d]) -> (out [..., L, d], weights)",
    passes=("shapes", "values vs reference", "rows sum to 1", "gradients"))


# --------------------------------------------------------------------------------------- stage 6


def _cls_head_loss_cases(generator: torch.Generator) -> list[Case]:
    cases = []
    for B, L, D, K in [(1, 5, 8, 10), (4, 5, 8, 10), (3, 17, 16, 3), (6, 2, 4, 7)]:
        encoder_output = _randn(generator, B, L, D)
        labels = torch.randint(0, K, (B,), generator=generator)
        with torch.random.fork_rng(devices=[]):  # the Linear's own initialisation leaves the global RNG alone
            head = nn.Linear(D, K)
        with torch.no_grad():
            head.weight.copy_(_randn(generator, K, D) / math.sqrt(D))
            head.bias.copy_(_randn(generator, K) * 0.1)
        case = Case(f"encoder_output [{B}, {L}, {D}], head nn.Linear({D}, {K}), labels [{B}]",
                    (encoder_output, head, labels), grad_args=(0,))
        cases += _batched([case], generator)
    return cases


def _logits(encoder_output: torch.Tensor, head: nn.Linear) -> torch.Tensor:
    return head(encoder_output[:, 0])  # [B, K]


CLS_HEAD_LOSS_MISTAKES = (
    Mistake("mean of the tokens", lambda x, head, labels: (head(x.mean(dim=1)), None),
            "you averaged all tokens: ViT classifies from the CLS token alone, encoder_output[:, 0]."),
    Mistake("last token", lambda x, head, labels: (head(x[:, -1]), None),
            "the CLS token is the FIRST token, encoder_output[:, 0], not the last."),
    Mistake("second token", lambda x, head, labels: (head(x[:, 1]), None),
            "the CLS token is at index 0, encoder_output[:, 0]."),
    Mistake("probabilities", lambda x, head, labels: (_logits(x, head).softmax(-1), None),
            "return raw logits (no softmax): cross_entropy applies log-softmax itself."),
    Mistake("softmax before the loss",
            lambda x, head, labels: (None, F.cross_entropy(_logits(x, head).softmax(-1), labels)),
            "cross_entropy takes raw logits: do not apply softmax before it."),
    Mistake("summed", lambda x, head, labels: (None, F.cross_entropy(_logits(x, head), labels, reduction="sum")),
            "average the loss over the batch (the default reduction='mean'), not the sum."),
    Mistake("nll_loss", lambda x, head, labels: (None, F.nll_loss(_logits(x, head), labels)),
            "nll_loss expects log-probabilities: use F.cross_entropy on the logits."),
    Mistake("labels reversed", lambda x, head, labels: (None, F.cross_entropy(_logits(x, head), labels.flip(0))),
            "pair each sample with its own label."),
    Mistake("a number", lambda x, head, labels: (None, F.cross_entropy(_logits(x, head), labels).item()),
            "F.cross_entropy(logits, labels) averages over the batch to one number; keep it a tensor (no .item()) "
            "so that backward works."),
)
CLS_HEAD_LOSS = Exercise(
    "cls_head_loss", "06_head_and_loss", "ex06_cls_head_loss", _cls_head_loss_cases, references.cls_head_loss,
    CLS_HEAD_LOSS_MISTAKES, outputs=("logits", "loss"), **TOLERANCE,
    signature="fn(encoder_output [B,L,D], head nn.Linear, labels [B]) -> (logits [B,K], scalar loss)",
    passes=("shapes", "values vs reference", "CLS token read", *BATCH_CHECKS))


def _random_config(generator: torch.Generator) -> ViTConfig:
    pick = random.Random(int(torch.randint(0, 2**31, (1,), generator=generator)))
    patch_size = pick.choice([2, 4, 7, 16])
    heads = pick.choice([1, 2, 3, 4])
    return ViTConfig(img_size=patch_size * pick.randint(1, 8), patch_size=patch_size,
                     in_chans=pick.choice([1, 3]), num_classes=pick.randint(1, 20),
                     embed_dim=heads * pick.choice([4, 8, 16]), depth=pick.randint(1, 6), num_heads=heads,
                     mlp_ratio=pick.choice([1.0, 2.0, 4.0]))


def _vit_parameter_count_cases(generator: torch.Generator) -> list[Case]:
    configs = [("the article's toy", ViTConfig(img_size=8, patch_size=4, in_chans=3, num_classes=10, embed_dim=8,
                                               depth=6, num_heads=8)),
               ("ViT-B/16", ViTConfig()),
               ("digits, 2x2 patches", ViTConfig(img_size=8, patch_size=2, in_chans=1, num_classes=10, embed_dim=64,
                                                 depth=4, num_heads=4, mlp_ratio=2.0)),
               ("random", _random_config(generator)),
               ("random", _random_config(generator))]
    shown = ("img_size", "patch_size", "in_chans", "num_classes", "embed_dim", "depth", "num_heads", "mlp_ratio")
    return [Case(f"{label}: " + ", ".join(f"{field.name}={getattr(config, field.name)}"
                                          for field in dataclasses.fields(ViTConfig) if field.name in shown), (config,))
            for label, config in configs]


def _parts(config: ViTConfig) -> dict[str, int]:
    return references.vit_parameter_parts(config)


# a part of the count, and how the hint names it when the difference is exactly that part
COUNT_PARTS: tuple[tuple[Callable[[ViTConfig], int], str], ...] = (
    (lambda c: _parts(c)["pos_embed"], "the position table, (N + 1) x D"),
    (lambda c: _parts(c)["cls_token"], "the CLS token (D), or one row of the position table (it has N + 1 rows, "
                                       "CLS included)"),
    (lambda c: _parts(c)["head"], "the head, D x K + K"),
    (lambda c: c.num_classes, "the head's bias (K)"),
    (lambda c: _parts(c)["norm"], "the final LayerNorm (2D)"),
    (lambda c: c.depth * 4 * c.embed_dim, "the two LayerNorms of every block (2 x 2D each)"),
    (lambda c: c.depth * 4 * c.embed_dim + 2 * c.embed_dim, "all LayerNorms (4D per block and 2D at the end)"),
    (lambda c: c.depth * 3 * c.embed_dim, "the qkv bias (3D per block)"),
    (lambda c: _parts(c)["patch_embed"], "the patch embedding, C*P*P x D + D"),
    (lambda c: c.embed_dim * c.in_chans * c.patch_size ** 2, "the patch embedding's weight"),
    (lambda c: c.depth * (c.embed_dim * c.mlp_hidden * 2 + c.mlp_hidden + c.embed_dim), "the MLPs"),
    (lambda c: c.depth * (c.embed_dim ** 2 + c.embed_dim), "the attention output projection (D x D + D per block)"),
    (lambda c: c.depth * (3 * c.embed_dim ** 2 + 3 * c.embed_dim), "the qkv projection (3D x D + 3D per block)"),
)


def _count_hint(case: Case, got: object) -> str | None:
    """For a count off by an amount that is no single part: per block, or how to add up the parts."""
    (config,) = case.args
    if as_int(got) is None:
        return None
    missing = references.vit_parameter_count(config) - as_int(got)
    if missing % config.depth == 0 and config.depth > 1:
        return (f"the difference is {missing // config.depth:+,} per block: recount one block "
                "(norm1, qkv, proj, norm2, fc1, fc2, with their biases).")
    return ("add up the parts: patch embedding (C*P*P*D + D), CLS token (D), position table ((N+1)*D), "
            "depth blocks, final norm (2D), head (D*K + K).")


VIT_PARAMETER_COUNT = Exercise(
    "vit_parameter_count", "06_head_and_loss", "ex06_vit_parameter_count", _vit_parameter_count_cases,
    references.vit_parameter_count,
    tuple(Mistake(f"{'left out' if sign < 0 else 'counted twice'}: {part}",
                  lambda config, amount=amount, sign=sign: (references.vit_parameter_count(config)
                                                            + sign * amount(config)),
                  f"the difference is exactly {part}: " + ("did you leave it out?" if sign < 0 else "counted twice?"))
          for amount, part in COUNT_PARTS for sign in (-1, 1)),
    explain=_count_hint, outputs=("parameters",), signature="fn(config: ViTConfig) -> int", **TOLERANCE,
    package_reference=("vitsteps.model.parameter_formula", "vitsteps.model.count_parameters"),
    passes=("toy, ViT-B/16, digits and random configurations", "values vs vitsteps.parameter_formula"))


# --------------------------------------------------------------------------------------- the table

# In series order. To add an exercise: write its cases, its reference (in `references`) and its mistakes in the
# section of its stage above, and list it here.
EXERCISES: dict[str, Exercise] = {exercise.name: exercise for exercise in (
    IMAGE_TO_PATCHES, IMAGE2EMB_NAIVE, WEIGHT_TO_KERNEL, IMAGE2EMB_CONV, PREPEND_CLS_TOKEN, ADD_POSITION_EMBEDDING,
    SPLIT_HEADS, SCALED_DOT_PRODUCT, CLS_HEAD_LOSS, VIT_PARAMETER_COUNT)}
