"""The exercise table: every graded exercise of the series, as data, in series order (instructors only).

This is the answer key: it is installed with the course tooling, never with the student package, and the sandbox
cannot read it. What the students' self-checks need ships in `vitsteps.teach.checks` as the outputs of the
references and of the mistakes on the public cases (`vitcourse.judge.public_cases` writes them).

Each exercise asks for a step the notebook did not show (overlapping windows, padding, a kernel for another row
order, a convolutional stem, patch dropout, a position table resampled to another grid, the sequence-first
layout, masked attention, label smoothing, the parameters of variants, and in notebook 09 the fixes of a buggy
ViT). Each entry says how to make its cases from a seeded generator (the original article's configuration first,
then grayscale, non-square and odd sizes, and for batched inputs the same sample with other batch-mates), its
reference (`references`, written without the package's stage code), its known mistakes with their hints (a hint
names the mistake and where to look; it never gives the code), the calls it rules out, and its nbgrader grade id.
To add an exercise, add one entry to `EXERCISES`.

Shape legend: B batch, C channels, H W image, P patch side, S stride, N patches, D model dim, L tokens, h heads,
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

from vitsteps.model import ViTConfig
from vitsteps.teach.checks import hints
from vitsteps.teach.checks.spec import Case, Exercise, Mistake, answer, grad_weights, verdict

from . import hunt, references

__all__ = ["EXERCISES", "answer", "grad_weights", "verdict"]

# how close an output must be to the reference, in every exercise
TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}
BATCH_CHECKS = ("gradients", "batch independence")
BATCH_NOTE = ("sample 0 is the same as in the case before; only its batch-mates changed. One sample's result must "
              "not depend on its batch-mates: keep the batch dimension apart and never reshape or mix across it "
              "(e.g. a view that folds B into another dimension, or an encoder that reads [B, L, D] as [L, B, D]).")
STRIPES = ("looks like a reshape (or view) that never moves a value: each 'patch' is a run of consecutive pixels "
           "(whole image rows, a stripe) instead of a P x P square. Group the values of a square together before "
           "flattening: a reshape regroups values in memory order, only a permute moves them.")
CHANNEL_LAST = ("each patch holds the right pixels but flattened as (row, column, channel): the order asked for is "
                "channel first, then row, then column (C, P, P).")
COLUMN_ORDER = ("the patches come column by column: the reading order is row by row (patch 1 is to the right of "
                "patch 0, not below it).")
ONE_COLUMN_PER_PATCH = ("one column per patch, [B, C*P*P, N], as F.unfold lays them out: the tokens need one row "
                        "per patch, [B, N, C*P*P].")


def _randn(generator: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=generator)  # [*shape]


def _with_other_batch_mates(case: Case, generator: torch.Generator, dim: int = 0) -> Case:
    """The same case with every sample but the first (along `dim` of its first argument) replaced."""
    batch, *rest = case.args
    changed = batch.clone().movedim(dim, 0)  # [B, ...], sample 0 kept
    changed[1:] = _randn(generator, *changed.shape)[1:]  # [B-1, ...], new batch-mates
    return Case(case.label, (changed.movedim(0, dim), *rest), case.kwargs, note=BATCH_NOTE)


def _batched(cases: list[Case], generator: torch.Generator, dim: int = 0) -> list[Case]:
    """`cases`, each with a batch of more than one sample followed by the same case with other batch-mates."""
    return [variant for case in cases for variant in (
        [case, _with_other_batch_mates(case, generator, dim)] if case.args[0].shape[dim] > 1 else [case])]


def _linear(generator: torch.Generator, inputs: int, outputs: int) -> nn.Linear:
    """An `nn.Linear` with weights drawn from `generator` (its own initialisation leaves the global RNG alone)."""
    with torch.random.fork_rng(devices=[]):
        layer = nn.Linear(inputs, outputs)
    with torch.no_grad():
        layer.weight.copy_(_randn(generator, outputs, inputs) / math.sqrt(inputs))
        layer.bias.copy_(_randn(generator, outputs) * 0.1)
    return layer


# --------------------------------------------------------------------------------------- 00: the map


def _num_tokens_cases(generator: torch.Generator) -> list[Case]:
    pick = random.Random(int(torch.randint(0, 2**31, (1,), generator=generator)))
    sizes = [(8, 8, 4), (8, 8, 2), (224, 224, 16), (28, 28, 7), (10, 12, 4), (6, 6, 8),
             (pick.randint(5, 40), pick.randint(5, 40), pick.randint(2, 6))]
    return [Case(f"height={H}, width={W}, patch_size={P}", (H, W, P)) for H, W, P in sizes]


NUM_TOKENS = Exercise(
    "num_tokens", "00_overview", "ex00_num_tokens", _num_tokens_cases, references.num_tokens, (
        Mistake("no CLS token", lambda H, W, P: (H // P) * (W // P),
                "one short: the sequence holds the CLS token as well as the patches."),
        Mistake("pixels over the patch side", lambda H, W, P: H * W // P + 1,
                "a patch covers P x P pixels, not P: count the patches along each side, then multiply."),
        Mistake("one side squared", lambda H, W, P: (H // P) ** 2 + 1,
                "the image need not be square: count the patches along the height and along the width apart."),
        Mistake("area over patch area", lambda H, W, P: H * W // (P * P) + 1,
                "a patch that does not fit whole is not cut (the leftover pixels at the edge are dropped): count "
                "whole patches per side first, then multiply."),
        Mistake("true division", lambda H, W, P: (H / P) * (W / P) + 1,
                "a fraction of a patch is no patch: divide with whole numbers, per side.")),
    outputs=("tokens",), signature="fn(height, width, patch_size) -> int",
    passes=("the article's image, ViT-B/16 at 224 px, sides that leave a remainder", "values vs the reference"))


# --------------------------------------------------------------------------------------- 01: patches


def _window_configs(generator: torch.Generator) -> list[tuple[int, int, int, int, int, int]]:
    """(B, C, H, W, P, S): the article's image in overlapping windows first, then non-overlapping grayscale,
    non-square, windows that leave a column out, and a size that varies with the seed."""
    pick = random.Random(int(torch.randint(0, 2**31, (1,), generator=generator)))
    P = pick.choice([2, 3])
    return [(1, 3, 8, 8, 4, 2), (4, 1, 8, 8, 4, 4), (2, 3, 8, 12, 4, 2), (3, 2, 9, 8, 3, 2),
            (2, 1, pick.randint(P + 1, 11), pick.randint(P + 1, 11), P, pick.randint(1, P))]


def _image_to_patches_cases(generator: torch.Generator) -> list[Case]:
    return _batched([Case(f"B={B}, C={C}, H={H}, W={W}, patch_size={P}, stride={S}",
                          (_randn(generator, B, C, H, W), P, S), grad_args=(0,))
                     for B, C, H, W, P, S in _window_configs(generator)], generator)


def _windows_as_grid(image: torch.Tensor, P: int, S: int) -> torch.Tensor:
    B, C, H, W = image.shape
    rows, cols = (H - P) // S + 1, (W - P) // S + 1
    return references.image_to_patches(image, P, S).reshape(B, rows, cols, C, P, P)  # [B, rows, cols, C, P, P]


def _column_order(image: torch.Tensor, P: int, S: int) -> torch.Tensor:
    B, C = image.shape[:2]
    return _windows_as_grid(image, P, S).transpose(1, 2).reshape(B, -1, C * P * P)  # [B, N, C*P*P]


def _channel_last(image: torch.Tensor, P: int, S: int) -> torch.Tensor:
    B, C = image.shape[:2]
    return _windows_as_grid(image, P, S).permute(0, 1, 2, 4, 5, 3).reshape(B, -1, C * P * P)  # [B, N, P*P*C]


def _stripes(image: torch.Tensor, P: int) -> torch.Tensor:
    B, C, H, W = image.shape
    if H % P or W % P:
        raise ValueError("stripes need whole patches")
    return image.reshape(B, (H // P) * (W // P), C * P * P)  # [B, N, C*P*P], memory order


def _one_window_short(image: torch.Tensor, P: int, S: int) -> torch.Tensor:
    H, W = image.shape[-2:]
    return references.image_to_patches(image[:, :, :H - S, :W - S], P, S)  # one window fewer per side


IMAGE_TO_PATCHES = Exercise(
    "image_to_windows", "01_patches_unfold", "ex01_image_to_patches", _image_to_patches_cases,
    references.image_to_patches, (
        Mistake("stepping by the patch size", lambda image, P, S: references.image_to_patches(image, P, P),
                "your windows step by patch_size: here their corners are stride pixels apart, so that neighbouring "
                "windows share pixels when stride < patch_size. Look at how far you move from one window to the "
                "next."),
        Mistake("one window short", _one_window_short,
                "a window is missing at the end of each row and column of windows: a side of H pixels holds "
                "(H - P) // stride + 1 windows. Count the last one that still fits."),
        Mistake("view without permute", lambda image, P, S: _stripes(image, P), STRIPES),
        Mistake("channel last", _channel_last, CHANNEL_LAST),
        Mistake("column order", _column_order, COLUMN_ORDER),
        Mistake("one column per window", lambda image, P, S: references.image_to_patches(image, P, S).transpose(1, 2),
                ONE_COLUMN_PER_PATCH)),
    explain=hints.window_pixels, forbidden=("torch.nn.functional.unfold", "torch.nn.Unfold", "aten::im2col"),
    package_reference=("vitsteps.patches.image_to_patches",),
    signature="fn(image [B,C,H,W], patch_size, stride) -> [B, N, C*P*P]",
    passes=("shapes", "values vs the reference", "window order", "no F.unfold", *BATCH_CHECKS), **TOLERANCE)


def _image2emb_naive_cases(generator: torch.Generator) -> list[Case]:
    cases = []
    for B, C, H, W, P, D in [(1, 3, 8, 8, 4, 8), (4, 1, 8, 8, 3, 5), (2, 3, 10, 12, 4, 16), (3, 2, 7, 5, 2, 6)]:
        image, weight = _randn(generator, B, C, H, W), _randn(generator, C * P * P, D)
        cases.append(Case(f"B={B}, C={C}, H={H}, W={W}, patch_size={P}, weight [{C * P * P}, {D}]",
                          (image, P, weight), grad_args=(0, 2)))
    return _batched(cases, generator)


def _padded(top: Callable[[int], int], image: torch.Tensor, P: int, always: bool = False) -> torch.Tensor:
    """`image` padded with zeros to multiples of P; `top(extra)` of the extra rows (and columns) go first."""
    H, W = image.shape[-2:]
    extra_h, extra_w = (P - H % P, P - W % P) if always else (-H % P, -W % P)
    return F.pad(image, (top(extra_w), extra_w - top(extra_w), top(extra_h), extra_h - top(extra_h)))


def _embedded(image: torch.Tensor, P: int, weight: torch.Tensor) -> torch.Tensor:
    return references.image_to_patches(image, P, P) @ weight  # [B, N, D]


IMAGE2EMB_NAIVE = Exercise(
    "image2emb_padded", "01_patches_unfold", "ex01_image2emb", _image2emb_naive_cases, references.image2emb_naive, (
        Mistake("cropped", lambda image, P, weight: _embedded(image, P, weight),
                "the pixels that do not fill a whole patch were dropped: pad the image with zeros up to the next "
                "multiple of patch_size instead, so that every pixel lands in a patch."),
        Mistake("padded at the top and left", lambda image, P, weight: _embedded(
            _padded(lambda extra: extra, image, P), P, weight),
                "the zeros go below and to the right of the image (as timm pads an image that does not fit); "
                "padding at the top or on the left shifts every patch."),
        Mistake("padded on both sides", lambda image, P, weight: _embedded(
            _padded(lambda extra: extra // 2, image, P), P, weight),
                "centred padding shifts every patch: put all the zeros below and to the right of the image."),
        Mistake("a whole extra patch", lambda image, P, weight: _embedded(
            _padded(lambda extra: 0, image, P, always=True), P, weight),
                "a side that patch_size already divides needs no padding: add only what is missing up to the next "
                "multiple, which is nothing when nothing is missing."),
        Mistake("view without permute", lambda image, P, weight: _stripes(
            _padded(lambda extra: 0, image, P), P) @ weight, STRIPES)),
    package_reference=("vitsteps.patches.patch_embed_unfold",), **TOLERANCE,
    signature="fn(image [B,C,H,W], patch_size, weight [C*P*P, D]) -> [B, N, D]",
    passes=("shapes", "values vs the reference", "zero padding", *BATCH_CHECKS))


# --------------------------------------------------------------------------------------- 02: convolution


def _weight_to_kernel_cases(generator: torch.Generator) -> list[Case]:
    return [Case(f"weight [{C * P * P}, {D}], in_chans={C}, patch_size={P}", (_randn(generator, C * P * P, D), C, P),
                 grad_args=(0,)) for C, P, D in [(3, 4, 8), (2, 3, 4), (4, 2, 6), (1, 2, 5)]]


WEIGHT_TO_KERNEL_MISTAKES = (
    Mistake("channel-first rows", lambda weight, C, P: weight.T.reshape(-1, C, P, P),
            "this is the kernel for unfold's row order (channel, row, column), the one the notebook built; here "
            "the rows of weight run (row, column, channel): the channel changes fastest. Work out which row of "
            "weight holds K[d, c, u, v]."),
    Mistake("channel axis last", lambda weight, C, P: weight.reshape(P, P, C, -1).permute(3, 0, 1, 2),
            "the kernel is [D, C, P, P]: the channel axis comes right after D, before the two pixel axes."),
    Mistake("weight not transposed", lambda weight, C, P: weight.reshape(-1, P, P, C).permute(0, 3, 1, 2),
            "weight is [P*P*C, D]: its columns hold the D outputs, so bring D to the front before regrouping the "
            "values of a patch."),
    Mistake("rows and columns swapped", lambda weight, C, P: references.weight_to_kernel(weight, C, P)
            .transpose(-1, -2), "rows and columns of each filter are swapped: value (u, v) of a patch is pixel "
                                "row u, column v."),
)
WEIGHT_TO_KERNEL = Exercise(
    "weight_to_kernel", "02_patches_conv", "ex02_weight_to_kernel", _weight_to_kernel_cases,
    references.weight_to_kernel, WEIGHT_TO_KERNEL_MISTAKES, package_reference=("vitsteps.patches.weight_to_kernel",),
    signature="fn(weight [P*P*C, D] in (row, column, channel) order, in_chans, patch_size) -> [D, C, P, P]",
    passes=("shapes", "values vs the reference", "conv equals (row, column, channel) patches @ weight", "gradients"),
    **TOLERANCE)


def _image2emb_conv_cases(generator: torch.Generator) -> list[Case]:
    cases = []
    for B, C, H, W, C_stem, P, D, S in [(1, 3, 8, 8, 6, 4, 8, 4), (4, 1, 8, 8, 4, 2, 5, 2), (2, 3, 8, 12, 5, 4, 16, 4),
                                        (3, 2, 9, 9, 3, 3, 6, 3), (2, 1, 8, 8, 4, 4, 6, 2)]:
        image = _randn(generator, B, C, H, W)
        stem_kernel = _randn(generator, C_stem, C, 3, 3) / 3
        kernel = _randn(generator, D, C_stem, P, P) / P
        cases.append(Case(f"B={B}, C={C}, H={H}, W={W}, stem_kernel [{C_stem}, {C}, 3, 3], kernel [{D}, {C_stem}, "
                          f"{P}, {P}], stride={S}", (image, stem_kernel, kernel, S), grad_args=(0, 1, 2)))
    return _batched(cases, generator)


def _stem(image: torch.Tensor, stem_kernel: torch.Tensor, padding: int = 1, relu: bool = True) -> torch.Tensor:
    features = F.conv2d(image, stem_kernel, padding=padding)  # [B, C', H, W]
    return features.clamp(min=0) if relu else features


def _tokens(features: torch.Tensor, kernel: torch.Tensor, stride: int) -> torch.Tensor:
    return F.conv2d(features, kernel, stride=stride).flatten(2).transpose(1, 2)  # [B, N, D]


IMAGE2EMB_CONV_MISTAKES = (
    Mistake("no ReLU", lambda image, stem, kernel, stride: _tokens(_stem(image, stem, relu=False), kernel, stride),
            "the stem's output goes through a ReLU before the patch convolution: without it, two convolutions in "
            "a row are just one larger convolution."),
    Mistake("ReLU on the tokens", lambda image, stem, kernel, stride: _tokens(
        _stem(image, stem, relu=False), kernel, stride).clamp(min=0),
            "the ReLU belongs between the stem and the patch convolution, on the stem's feature map, not on the "
            "tokens."),
    Mistake("stem without padding", lambda image, stem, kernel, stride: _tokens(_stem(image, stem, 0), kernel, stride),
            "the stem must keep the image's size, H x W: a 3x3 kernel without padding loses a pixel on every side. "
            "Pad it with one pixel of zeros all round."),
    Mistake("one column per token", lambda image, stem, kernel, stride: F.conv2d(
        _stem(image, stem), kernel, stride=stride).flatten(2),
            "conv2d's output is [B, D, rows, cols]: after flattening the grid, the tokens need one row per patch, "
            "[B, N, D], not one column."),
    Mistake("reshape without transpose", lambda image, stem, kernel, stride: F.conv2d(
        _stem(image, stem), kernel, stride=stride).reshape(len(image), -1, len(kernel)),
            "looks like a reshape straight from [B, D, rows, cols] to [B, N, D]: it mixes the features of "
            "different patches. Flatten the grid first, then swap the feature and token axes."),
)
IMAGE2EMB_CONV = Exercise(
    "image2emb_stem", "02_patches_conv", "ex02_image2emb_conv", _image2emb_conv_cases, references.image2emb_conv,
    IMAGE2EMB_CONV_MISTAKES, package_reference=("vitsteps.patches.patch_embed_conv",), **TOLERANCE,
    signature="fn(image [B,C,H,W], stem_kernel [C',C,3,3], kernel [D,C',P,P], stride) -> [B, N, D]",
    passes=("shapes", "values vs the reference", "patch order", *BATCH_CHECKS))


# --------------------------------------------------------------------------------------- 03 and 04: tokens


def _prepend_cls_token_cases(generator: torch.Generator) -> list[Case]:
    cases = []
    for B, N, D, K in [(1, 4, 8, 2), (3, 4, 8, 3), (2, 16, 5, 6), (4, 9, 3, 9)]:
        keep = torch.stack([torch.randperm(N, generator=generator)[:K] for _ in range(B)])  # [B, K]
        cases.append(Case(f"patch_tokens [{B}, {N}, {D}], cls_token [1, 1, {D}], keep [{B}, {K}]",
                          (_randn(generator, B, N, D), _randn(generator, 1, 1, D), keep), grad_args=(0, 1)))
    return _batched(cases, generator)


def _kept(tokens: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    return torch.stack([sample[indices] for sample, indices in zip(tokens, keep, strict=True)])  # [B, K, D]


def _with_cls(cls: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    return torch.cat([cls.expand(len(tokens), -1, -1), tokens], dim=1)  # [B, 1+K, D]


PREPEND_CLS_TOKEN = Exercise(
    "prepend_cls_token", "03_cls_token", "ex03_prepend_cls_token", _prepend_cls_token_cases,
    references.prepend_cls_token, (
        Mistake("one sample's keep for all", lambda tokens, cls, keep: _with_cls(cls, tokens[:, keep[0]]),
                "every sample keeps its own patches: row b of keep lists the patches of sample b."),
        Mistake("keep counted with the CLS token", lambda tokens, cls, keep: _with_cls(
            cls, _kept(_with_cls(cls, tokens), keep)),
                "keep counts the patch tokens from 0 (0 is the first patch); it does not count the CLS token. Pick "
                "the patches before the CLS token goes in front."),
        Mistake("sorted", lambda tokens, cls, keep: _with_cls(cls, _kept(tokens, keep.sort(dim=1).values)),
                "keep the patches in the order keep lists them, not sorted: token 1 is patch keep[b, 0]."),
        Mistake("every patch kept", lambda tokens, cls, keep: _with_cls(cls, tokens),
                "only the patches that keep lists stay, in its order: the sequence has 1 + K tokens."),
        Mistake("CLS last", lambda tokens, cls, keep: torch.cat([_kept(tokens, keep), cls.expand(len(tokens), -1, -1)],
                                                                dim=1),
                "the CLS token must come first (position 0), before the kept patches.")),
    package_reference=("vitsteps.tokens.prepend_cls_token",), **TOLERANCE,
    signature="fn(patch_tokens [B,N,D], cls_token [1,1,D], keep [B,K] int64) -> [B, 1+K, D]",
    passes=("shapes", "values vs the reference", "token order", *BATCH_CHECKS))


def _add_position_embedding_cases(generator: torch.Generator) -> list[Case]:
    cases = [Case(f"tokens [{B}, {1 + n * n}, {D}] (a {n}x{n} grid), position_table [{1 + g * g}, {D}] (a {g}x{g} "
                  f"grid)", (_randn(generator, B, 1 + n * n, D), _randn(generator, 1 + g * g, D)), grad_args=(0, 1))
             for B, n, g, D in [(1, 2, 2, 8), (3, 4, 2, 8), (2, 3, 5, 4), (4, 7, 4, 6)]]
    return _batched(cases, generator)


def _resampled(tokens: torch.Tensor, table: torch.Tensor, mode: str = "bicubic", align_corners: bool = False,
               cls_row: bool = True, transposed: bool = False, regrouped: bool = False) -> torch.Tensor:
    """What a mistaken resampling adds to the tokens."""
    new, old = math.isqrt(tokens.shape[1] - 1), math.isqrt(table.shape[0] - 1)
    rows, D = table[1:], table.shape[1]
    grid = rows.reshape(1, D, old, old) if regrouped else rows.T.reshape(1, D, old, old)  # [1, D, old, old]
    if transposed:
        grid = grid.transpose(-1, -2)
    grid = F.interpolate(grid, size=(new, new), mode=mode, align_corners=align_corners)  # [1, D, new, new]
    cls = table[:1] if cls_row else torch.zeros_like(table[:1])
    return tokens + torch.cat([cls, grid.reshape(D, new * new).T])  # [B, L, D]


def _sliced(tokens: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    if tokens.shape[1] > table.shape[0]:
        raise ValueError("a slice cannot be longer than the table")
    return tokens + table[:tokens.shape[1]]  # [B, L, D]


ADD_POSITION_EMBEDDING_MISTAKES = (
    Mistake("never added", lambda tokens, table: tokens,
            "the output equals the input tokens: the position table was never added, so the model cannot tell "
            "where a patch came from."),
    Mistake("sliced", _sliced,
            "the first L rows of the table belong to the top rows of its old g x g grid, not to the new grid: what "
            "a row encodes is its place on the grid. Lay the patch rows out on their grid and resample the grid."),
    Mistake("bilinear", lambda tokens, table: _resampled(tokens, table, mode="bilinear"),
            "resample bicubically, as timm does and the exercise asks: bilinear interpolation gives other values."),
    Mistake("align_corners=True", lambda tokens, table: _resampled(tokens, table, align_corners=True),
            "with align_corners=True the grid's corner cells are pinned in place; timm, and this exercise, leave "
            "align_corners off (False)."),
    Mistake("CLS row left out", lambda tokens, table: _resampled(tokens, table, cls_row=False),
            "row 0 of the table belongs to the CLS token: add it to token 0 unchanged; only the patch rows are "
            "resampled."),
    Mistake("rows and columns swapped", lambda tokens, table: _resampled(tokens, table, transposed=True),
            "rows and columns of the grid are swapped: patch i sits at grid row i // g, column i % g. A transpose "
            "on only one of the two ways (onto the grid and back) swaps them."),
    Mistake("regrouped, not moved", lambda tokens, table: _resampled(tokens, table, regrouped=True),
            "the table's rows are positions and its columns features: the features must move in front of the "
            "positions before the positions are laid out on the grid; a reshape alone mixes the two."),
)
ADD_POSITION_EMBEDDING = Exercise(
    "add_position_embedding", "04_position_embedding", "ex04_add_position_embedding", _add_position_embedding_cases,
    references.add_position_embedding, ADD_POSITION_EMBEDDING_MISTAKES, **TOLERANCE,
    package_reference=("vitsteps.tokens.add_position_embedding", "vitsteps.tokens.resample_position_table",
                       "vitsteps.convert.change_image_size"),
    passes=("shapes", "values vs the reference", "the CLS row kept", *BATCH_CHECKS),
    signature="fn(tokens [B, 1+n*n, D], position_table [1+g*g, D]) -> [B, 1+n*n, D]")


# --------------------------------------------------------------------------------------- 05: the encoder


def _split_heads_cases(generator: torch.Generator) -> list[Case]:
    return _batched([Case(f"x [{L}, {B}, {D}] (L, B, D), num_heads={h}", (_randn(generator, L, B, D), h),
                          grad_args=(0,))
                     for L, B, D, h in [(5, 1, 8, 8), (5, 2, 8, 2), (17, 3, 12, 3), (4, 2, 6, 1)]], generator, dim=1)


SPLIT_HEADS = Exercise(
    "split_heads", "05_encoder", "ex05_split_heads", _split_heads_cases, references.split_heads, (
        Mistake("read as [B, L, D]", lambda x, h: x.reshape(*x.shape[:2], h, -1).transpose(1, 2),
                "x is [L, B, D], sequence first (batch_first=False, PyTorch's default layout): its first axis is "
                "the token, its second the sample. The output puts the batch first."),
        Mistake("view without permute", lambda x, h: x.reshape(x.shape[1], h, x.shape[0], -1),
                "looks like a reshape alone: it regroups memory, so a head gets a block of consecutive values "
                "instead of a slice of the features of every token. The axes have to move, not only regroup."),
        Mistake("(d, h)", lambda x, h: x.reshape(*x.shape[:2], -1, h).permute(1, 3, 0, 2),
                "split D as (h, d), not (d, h): head i takes features i*d to (i+1)*d - 1."),
        Mistake("heads after tokens", lambda x, h: x.reshape(*x.shape[:2], h, -1).transpose(0, 1),
                "the heads come before the tokens: [B, h, L, d], so that each head's [L, d] block is one matrix.")),
    signature="fn(x [L,B,D], num_heads) -> [B, h, L, d]", **TOLERANCE,
    passes=("shapes", "values vs the reference", "head order", *BATCH_CHECKS))


def _scaled_dot_product_cases(generator: torch.Generator) -> list[Case]:
    causal = torch.ones(5, 5, dtype=torch.bool).tril()  # [L, L]
    lengths = torch.tensor([4, 3])  # [B]: the keys each sample may attend to
    padding = (torch.arange(5) < lengths[:, None])[:, None, None, :]  # [B, 1, 1, L]
    scattered = (torch.rand(3, 7, 7, generator=generator) < 0.5) | torch.eye(7, dtype=torch.bool)  # [B, L, L]
    masks = [("[5, 5] (lower triangle)", (1, 5, 8), causal), ("[2, 1, 1, 5] (padding keys)", (2, 3, 5, 4), padding),
             ("[3, 7, 7] (scattered)", (3, 7, 16), scattered),
             ("[5, 5] (all True)", (2, 8, 5, 1), torch.ones(5, 5, dtype=torch.bool))]
    return [Case(f"q, k, v {list(shape)}, mask {label}",
                 (*(_randn(generator, *shape) * 2 for _ in range(3)), mask), grad_args=(0, 1, 2))
            for label, shape, mask in masks]


def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
               scale: float | None = None, dim: int = -1, fill: float = float("-inf"),
               after: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention as a mistake computes it: another scale, softmax over another dimension, another masking."""
    scores = q @ k.transpose(-2, -1) / (math.sqrt(q.shape[-1]) if scale is None else scale)  # [..., L, L]
    if mask is not None and not after:
        scores = scores.masked_fill(~mask, fill)
    weights = scores.softmax(dim)  # [..., L, L]
    if mask is not None and after:
        weights = weights * mask
    return weights @ v, weights  # [..., L, d], [..., L, L]


SCALED_DOT_PRODUCT_MISTAKES = (
    Mistake("masked after the softmax", lambda q, k, v, mask: _attention(q, k, v, mask, after=True),
            "masking after the softmax leaves rows that no longer sum to 1: mask the scores, before the softmax, "
            "so that a masked key gets weight exactly 0."),
    Mistake("masked scores set to 0", lambda q, k, v, mask: _attention(q, k, v, mask, fill=0.0),
            "a masked score of 0 still gets a weight of e^0 / sum: a masked score has to be minus infinity, so that "
            "the softmax gives it exactly 0."),
    Mistake("mask inverted", lambda q, k, v, mask: _attention(q, k, v, ~mask),
            "True in mask means that the query may attend to that key (as in F.scaled_dot_product_attention); "
            "nn.MultiheadAttention's boolean masks mean the opposite."),
    Mistake("mask ignored", lambda q, k, v, mask: _attention(q, k, v, None),
            "the mask is not applied: every key gets a weight, masked or not."),
    Mistake("not scaled", lambda q, k, v, mask: _attention(q, k, v, mask, scale=1.0),
            "the scores are not scaled: divide them by the square root of the head width d before the softmax, or "
            "large d makes the softmax saturate."),
    Mistake("divided by d", lambda q, k, v, mask: _attention(q, k, v, mask, scale=q.shape[-1]),
            "divide the scores by the square root of d, not by d."),
    Mistake("softmax over the queries", lambda q, k, v, mask: _attention(q, k, v, mask, dim=-2),
            "the softmax runs over the keys (the last dimension): each query's weights sum to 1."),
    Mistake("the output alone", lambda q, k, v, mask: _attention(q, k, v, mask)[0],
            "return the pair: the output first, then the weights."),
)
SCALED_DOT_PRODUCT = Exercise(
    "scaled_dot_product", "05_encoder", "ex05_scaled_dot_product", _scaled_dot_product_cases,
    references.scaled_dot_product, SCALED_DOT_PRODUCT_MISTAKES, outputs=("output", "attention weights"),
    forbidden=("torch.nn.functional.scaled_dot_product_attention", "torch.nn.MultiheadAttention",
               "torch.nn.functional.multi_head_attention_forward", "aten::scaled_dot_product_attention",
               "aten::_scaled_dot_product_flash_attention_for_cpu", "aten::_native_multi_head_attention"),
    package_reference=("vitsteps.encoder.scaled_dot_product",), **TOLERANCE,
    signature="fn(q, k, v [..., L, d], mask [..., L, L] bool) -> (out [..., L, d], weights [..., L, L])",
    passes=("shapes", "values vs the reference", "masked keys weigh 0", "rows sum to 1", "gradients"))


# --------------------------------------------------------------------------------------- 06: head and loss


def _cls_head_loss_cases(generator: torch.Generator) -> list[Case]:
    cases = []
    for B, L, D, K, smoothing in [(1, 5, 8, 10, 0.1), (4, 5, 8, 10, 0.0), (3, 17, 16, 3, 0.2), (6, 2, 4, 7, 0.5)]:
        encoder_output = _randn(generator, B, L, D)
        labels = torch.randint(0, K, (B,), generator=generator)
        case = Case(f"encoder_output [{B}, {L}, {D}], head nn.Linear({D}, {K}), labels [{B}], smoothing={smoothing}",
                    (encoder_output, _linear(generator, D, K), labels, smoothing), grad_args=(0,))
        cases.append(case)
    return _batched(cases, generator)


def _smoothed_loss(logits: torch.Tensor, labels: torch.Tensor, smoothing: float, others: bool = False,
                   probabilities: bool = False, reduce: str = "mean") -> torch.Tensor:
    """The smoothed cross-entropy as a mistake computes it."""
    K = logits.shape[1]
    log_probabilities = logits.softmax(1) if probabilities else logits.log_softmax(1)  # [B, K]
    one_hot = F.one_hot(labels, K).to(logits.dtype)  # [B, K]
    if others:
        targets = one_hot * (1 - smoothing) + (1 - one_hot) * smoothing / (K - 1)  # [B, K]
    else:
        targets = one_hot * (1 - smoothing) + smoothing / K  # [B, K]
    losses = -(targets * log_probabilities)  # [B, K]
    return losses.sum(1).sum() if reduce == "sum" else losses.mean() if reduce == "all" else losses.sum(1).mean()


def _head_of(x: torch.Tensor, head: nn.Linear) -> torch.Tensor:
    return head(x[:, 0])  # [B, K]


def _from_logits(logits: torch.Tensor, labels: torch.Tensor, smoothing: float) -> tuple[torch.Tensor, torch.Tensor]:
    return logits, _smoothed_loss(logits, labels, smoothing)  # [B, K], scalar


CLS_HEAD_LOSS_MISTAKES = (
    Mistake("mean of the tokens", lambda x, head, labels, s: _from_logits(head(x.mean(dim=1)), labels, s),
            "you averaged all tokens: ViT classifies from the CLS token alone, token 0 of encoder_output."),
    Mistake("last token", lambda x, head, labels, s: _from_logits(head(x[:, -1]), labels, s),
            "the CLS token is the FIRST token of encoder_output, not the last."),
    Mistake("probabilities as logits", lambda x, head, labels, s: (_head_of(x, head).softmax(-1), None),
            "return the raw logits (no softmax): the loss applies its own log-softmax."),
    Mistake("smoothing over the other classes", lambda x, head, labels, s: (
        None, _smoothed_loss(_head_of(x, head), labels, s, others=True)),
            "spread the smoothing over all K classes, the true one included (as PyTorch's label_smoothing does): "
            "the true class's target is 1 - smoothing + smoothing / K."),
    Mistake("no smoothing", lambda x, head, labels, s: (None, _smoothed_loss(_head_of(x, head), labels, 0.0)),
            "the loss ignores smoothing: with smoothing > 0 the targets are no longer one-hot."),
    Mistake("probabilities", lambda x, head, labels, s: (
        None, _smoothed_loss(_head_of(x, head), labels, s, probabilities=True)),
            "cross-entropy weighs the log-probabilities (a log-softmax of the logits), not the probabilities."),
    Mistake("summed over the batch", lambda x, head, labels, s: (
        None, _smoothed_loss(_head_of(x, head), labels, s, reduce="sum")),
            "average the loss over the batch, not the sum."),
    Mistake("averaged over the classes", lambda x, head, labels, s: (
        None, _smoothed_loss(_head_of(x, head), labels, s, reduce="all")),
            "sum over the classes (one loss per sample), then average over the batch; a mean over both divides "
            "by K too."),
    Mistake("a number", lambda x, head, labels, s: (None, _smoothed_loss(_head_of(x, head), labels, s).item()),
            "keep the loss a tensor: a Python number is cut off from autograd, so backward could not run."),
)
CLS_HEAD_LOSS = Exercise(
    "cls_head_loss", "06_head_and_loss", "ex06_cls_head_loss", _cls_head_loss_cases, references.cls_head_loss,
    CLS_HEAD_LOSS_MISTAKES, outputs=("logits", "loss"), **TOLERANCE,
    forbidden=("torch.nn.functional.cross_entropy", "torch.nn.CrossEntropyLoss", "aten::cross_entropy_loss"),
    signature="fn(encoder_output [B,L,D], head nn.Linear, labels [B], smoothing) -> (logits [B,K], scalar loss)",
    passes=("shapes", "values vs the reference", "CLS token read", "no F.cross_entropy", *BATCH_CHECKS))


def _random_config(generator: torch.Generator) -> ViTConfig:
    pick = random.Random(int(torch.randint(0, 2**31, (1,), generator=generator)))
    patch_size = pick.choice([2, 4, 7, 16])
    heads = pick.choice([1, 2, 3, 4])
    return ViTConfig(img_size=patch_size * pick.randint(1, 8), patch_size=patch_size,
                     in_chans=pick.choice([1, 3]), num_classes=pick.choice([0, pick.randint(1, 20)]),
                     embed_dim=heads * pick.choice([4, 8, 16]), depth=pick.randint(1, 6), num_heads=heads,
                     mlp_ratio=pick.choice([1.0, 2.0, 2.5, 4.0]), qkv_bias=pick.choice([True, False]),
                     pos_embed=pick.choice(["learn", "sincos"]))


def _vit_parameter_count_cases(generator: torch.Generator) -> list[Case]:
    configs = [("the article's toy", ViTConfig(img_size=8, patch_size=4, in_chans=3, num_classes=10, embed_dim=8,
                                               depth=6, num_heads=8)),
               ("ViT-B/16", ViTConfig()),
               ("8x8 grayscale, 2x2 patches, no qkv bias",
                ViTConfig(img_size=8, patch_size=2, in_chans=1, num_classes=10, embed_dim=64, depth=4, num_heads=4,
                          mlp_ratio=2.0, qkv_bias=False)),
               ("ViT-S/16 with a fixed sin-cos table", ViTConfig(embed_dim=384, depth=12, num_heads=6,
                                                                 pos_embed="sincos")),
               ("28x28 grayscale, 7x7 patches, no head", ViTConfig(img_size=28, patch_size=7, in_chans=1,
                                                                  num_classes=0, embed_dim=64, depth=4, num_heads=4,
                                                                  mlp_ratio=2.5)),
               ("random", _random_config(generator)),
               ("random", _random_config(generator))]
    shown = ("img_size", "patch_size", "in_chans", "num_classes", "embed_dim", "depth", "num_heads", "mlp_ratio",
             "qkv_bias", "pos_embed")
    return [Case(f"{label}: " + ", ".join(f"{field.name}={getattr(config, field.name)!r}"
                                          for field in dataclasses.fields(ViTConfig) if field.name in shown), (config,))
            for label, config in configs]


def _parts(config: ViTConfig) -> dict[str, int]:
    return references.vit_parameter_parts(config)


def _only_if(condition: Callable[[ViTConfig], bool], amount: Callable[[ViTConfig], int]
             ) -> Callable[[ViTConfig], int]:
    """The count off by `amount`, a mistake that only a config meeting `condition` can show."""
    def imitate(config: ViTConfig) -> int:
        if not condition(config):
            raise ValueError("this mistake cannot show on this configuration")
        return references.vit_parameter_count(config) + amount(config)
    return imitate


VARIANT_MISTAKES = (
    Mistake("a qkv bias that is not there", _only_if(lambda c: not c.qkv_bias, lambda c: c.depth * 3 * c.embed_dim),
            "qkv_bias=False: the qkv projection of every block has no bias here."),
    Mistake("a sin-cos table counted", _only_if(lambda c: c.pos_embed == "sincos",
                                                lambda c: (c.num_patches + 1) * c.embed_dim),
            "pos_embed='sincos': the table is computed from the positions, not learned, so it holds no parameters."),
    Mistake("a head that is not there", _only_if(lambda c: c.num_classes == 0, lambda c: c.embed_dim),
            "num_classes=0: the model has no head at all (it returns the features), not a head without outputs."),
)
# a part of the count, and how the hint names it when the difference is exactly that part
COUNT_PARTS: tuple[tuple[Callable[[ViTConfig], int], str], ...] = (
    (lambda c: _parts(c)["pos_embed"], "the position table"),
    (lambda c: _parts(c)["cls_token"], "the CLS token, or one row of the position table (it has a row for the CLS "
                                       "token too)"),
    (lambda c: _parts(c)["head"], "the head"),
    (lambda c: c.num_classes, "the head's bias"),
    (lambda c: _parts(c)["norm"], "the final LayerNorm"),
    (lambda c: c.depth * 4 * c.embed_dim, "the two LayerNorms of every block"),
    (lambda c: c.depth * 4 * c.embed_dim + 2 * c.embed_dim, "all the LayerNorms"),
    (lambda c: c.depth * 3 * c.embed_dim if c.qkv_bias else 0, "the qkv bias"),
    (lambda c: _parts(c)["patch_embed"], "the patch embedding"),
    (lambda c: c.embed_dim * c.in_chans * c.patch_size ** 2, "the patch embedding's weight"),
    (lambda c: c.depth * (c.embed_dim * c.mlp_hidden * 2 + c.mlp_hidden + c.embed_dim), "the MLPs"),
    (lambda c: c.depth * (c.embed_dim ** 2 + c.embed_dim), "the attention output projections"),
    (lambda c: c.depth * (3 * c.embed_dim ** 2 + 3 * c.embed_dim * c.qkv_bias), "the qkv projections"),
)


VIT_PARAMETER_COUNT = Exercise(
    "vit_parameter_count", "06_head_and_loss", "ex06_vit_parameter_count", _vit_parameter_count_cases,
    references.vit_parameter_count,
    VARIANT_MISTAKES + tuple(
        Mistake(f"{'left out' if sign < 0 else 'counted twice'}: {part}",
                lambda config, amount=amount, sign=sign: (references.vit_parameter_count(config)
                                                          + sign * amount(config)),
                f"the difference is exactly {part}: " + ("did you leave it out?" if sign < 0 else "counted twice?"))
        for amount, part in COUNT_PARTS for sign in (-1, 1)),
    explain=hints.count_difference, outputs=("parameters",), signature="fn(config: ViTConfig) -> int", **TOLERANCE,
    package_reference=("vitsteps.model.parameter_formula", "vitsteps.model.count_parameters"),
    passes=("toy, ViT-B/16, no qkv bias, a sin-cos table, no head, random configurations", "values vs the reference"))


# --------------------------------------------------------------------------------------- 07: training


def _shift_images_cases(generator: torch.Generator) -> list[Case]:
    cases = []
    for B, C, H, W, largest in [(4, 1, 28, 28, 4), (3, 3, 8, 6, 3), (5, 1, 5, 5, 4), (2, 2, 9, 12, 8)]:
        offsets = torch.randint(-largest, largest + 1, (B, 2), generator=generator)  # [B, 2]
        offsets[0] = torch.tensor([largest, -largest])  # [2], the first image to a corner
        cases.append(Case(f"images [{B}, {C}, {H}, {W}], offsets up to {largest} px",
                          (_randn(generator, B, C, H, W), offsets), grad_args=(0,)))
    cases.append(Case("images [1, 1, 6, 6], offsets (0, 0)", (_randn(generator, 1, 1, 6, 6),
                                                              torch.zeros(1, 2, dtype=torch.int64))))
    return _batched(cases, generator)


def _rolled(images: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    return torch.stack([torch.roll(image, (down, right), dims=(-2, -1))  # [C, H, W]
                        for image, (down, right) in zip(images, offsets.tolist(), strict=True)])  # [B, C, H, W]


SHIFT_IMAGES = Exercise(
    "shift_images", "07_training", "ex07_shift_images", _shift_images_cases, references.shift_images, (
        Mistake("wraps around", _rolled,
                "what leaves one side comes back on the other (as torch.roll does): a shifted digit must leave zeros "
                "where it moved away from, and the pixels pushed past the edge are gone."),
        Mistake("opposite direction", lambda images, offsets: references.shift_images(images, -offsets),
                "the images move the wrong way: a positive first offset moves the content down (towards larger row "
                "indices), a positive second offset moves it right."),
        Mistake("rows and columns swapped", lambda images, offsets: references.shift_images(images, offsets.flip(1)),
                "rows and columns are swapped: offsets[:, 0] moves along the rows (down), offsets[:, 1] along the "
                "columns (right)."),
        Mistake("one offset for the batch",
                lambda images, offsets: references.shift_images(images, offsets[:1].expand_as(offsets)),
                "every image moved by the first image's offset: each image has its own row of `offsets`."),
    ), package_reference=("vitsteps.data.random_shift",), **TOLERANCE,
    signature="fn(images [B,C,H,W], offsets [B,2] int64 (down, right)) -> [B, C, H, W]",
    passes=("shapes", "values vs the reference", "zeros where the image moved away", *BATCH_CHECKS))


# --------------------------------------------------------------------------------------- 08: inside the model


def _softmaxed(generator: torch.Generator, B: int, h: int, L: int, sharpness: float) -> torch.Tensor:
    return (sharpness * _randn(generator, B, h, L, L)).softmax(dim=-1)  # [B, h, L, L], rows sum to 1


def _attention_distance_cases(generator: torch.Generator) -> list[Case]:
    cases = [Case(f"attention [{B}, {h}, {grid * grid + 1}, {grid * grid + 1}] ({grid}x{grid} patches of {P} px)",
                  (_softmaxed(generator, B, h, grid * grid + 1, sharpness), grid, P))
             for B, h, grid, P, sharpness in [(2, 4, 2, 4, 1.0), (3, 4, 7, 4, 3.0), (1, 2, 3, 7, 2.0),
                                              (2, 1, 4, 2, 0.5)]]
    for name, weights in (("each patch looks only at itself", torch.eye(10)),
                          ("every token looks at every token equally", torch.full((10, 10), 0.1))):
        cases.append(Case(f"attention [1, 1, 10, 10] (3x3 patches of 4 px), {name}", (weights[None, None], 3, 4)))
    return cases


def _distance_kept_cls(attention: torch.Tensor, grid_size: int, patch_size: int) -> torch.Tensor:
    distances = references.centre_distances(grid_size, patch_size).to(attention.dtype)  # [N, N]
    return (attention[:, :, 1:, 1:] * distances).sum(dim=-1).mean(dim=(0, 2))  # [h]


ATTENTION_DISTANCE = Exercise(
    "attention_distance", "08_inside_the_model", "ex08_attention_distance", _attention_distance_cases,
    references.attention_distance, (
        Mistake("weights not renormalised", _distance_kept_cls,
                "after dropping the CLS column each patch's weights no longer sum to 1: divide each row by its sum "
                "before weighting the distances."),
        Mistake("distance in patches",
                lambda attention, grid, P: references.attention_distance(attention, grid, P) / P,
                "the distances are in patches: multiply the grid steps by patch_size to measure them in pixels."),
        Mistake("summed over query patches",
                lambda attention, grid, P: references.attention_distance(attention, grid, P) * grid * grid,
                "the distances are summed over query patches: average them (and over the images)."),
    ), package_reference=("vitsteps.analysis.mean_attention_distance",), **TOLERANCE,
    signature="fn(attention [B,h,L,L] (CLS first), grid_size, patch_size) -> [h] pixels",
    passes=("shapes", "values vs the reference", "0 for self-only attention"))


def _layout_table(generator: torch.Generator, grid: int, D: int, noise: float) -> torch.Tensor:
    """Rows that vary smoothly with the patch's place (plus noise): a table that knows the layout."""
    row, col = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")  # [grid, grid] each
    frequencies = torch.rand(D // 2, generator=generator) + 0.2  # [D/2]
    angle = torch.cat([row.flatten()[:, None] * frequencies, col.flatten()[:, None] * frequencies], dim=1)  # [N, D]
    return angle.cos() + noise * _randn(generator, grid * grid, D)  # [N, D]


def _layout_score_cases(generator: torch.Generator) -> list[Case]:
    cases = [Case(f"a random table [{grid * grid}, {D}] ({grid}x{grid} patches)", (_randn(generator, grid * grid, D),
                                                                                   grid))
             for grid, D in [(3, 8), (4, 16), (7, 64)]]
    cases += [Case(f"a table that knows the layout [{grid * grid}, {D}] ({grid}x{grid} patches, noise {noise})",
                   (_layout_table(generator, grid, D, noise), grid)) for grid, D, noise in [(7, 64, 0.3), (5, 16, 1.0)]]
    return cases


def _layout(table: torch.Tensor, grid: int, *, cosine: bool = True, use_ranks: bool = True,
            every_pair: bool = False, rank: Callable[[list[float]], list[float]] = references.ranks) -> float:
    """The layout score as a mistake computes it."""
    rows = table.double()  # [N, D]
    similarity = rows @ rows.T  # [N, N]
    if cosine:
        norms = rows.norm(dim=1)  # [N]
        similarity = similarity / (norms[:, None] * norms[None, :])  # [N, N]
    distances = references.centre_distances(grid, 1)  # [N, N]
    if every_pair:
        x, y = similarity.flatten().tolist(), distances.flatten().tolist()
    else:
        i, j = torch.triu_indices(len(rows), len(rows), offset=1)  # [2, n(n-1)/2]
        x, y = similarity[i, j].tolist(), distances[i, j].tolist()
    return references.pearson(rank(x), rank(y)) if use_ranks else references.pearson(x, y)


LAYOUT_SCORE = Exercise(
    "layout_score", "08_inside_the_model", "ex08_layout_score", _layout_score_cases, references.layout_score, (
        Mistake("values, not ranks", lambda table, grid: _layout(table, grid, use_ranks=False),
                "this is Pearson's correlation of the values: rank each list first (Spearman), so that only the "
                "order of the similarities counts, not how they are spread."),
        Mistake("each patch with itself, every pair twice", lambda table, grid: _layout(table, grid, every_pair=True),
                "the whole N x N matrix went in, the diagonal too (each patch with itself: similarity 1, distance "
                "0): take each pair of distinct patches once."),
        Mistake("dot products, not cosines", lambda table, grid: _layout(table, grid, cosine=False),
                "the similarity is a dot product: divide by the two rows' lengths (cosine similarity), or long rows "
                "look similar to everything."),
    ), forbidden=("scipy.stats.spearmanr", "scipy.stats.rankdata"),
    package_reference=("vitsteps.analysis.position_rank_correlation", "vitsteps.analysis.rank_correlation"),
    explain=hints.tied_ranks, outputs=("correlation",), **TOLERANCE,
    signature="fn(position_table [N, D], grid_size) -> float",
    passes=("random and layout-aware tables", "values vs the reference", "ties share their mean rank",
            "no scipy ranking"))


# --------------------------------------------------------------------------------------- 09: the bug hunt

SUSPECT = ("this is still what the suspect's {name} returns: it still has the bug behind symptom {symptom} "
           "({symptom_text}). Run the checks again, and ask for the next hint on symptom {symptom}.")
SYMPTOMS = {bug.symptom: text for bug, text in zip(hunt.BUGS, (
    "a token does not hold the pixels of one square", "some rows of a table get no gradient",
    "every image gets the same answer", "a shift of a block's input does not reach its output",
    "the same images twice get different answers in eval mode",
    "without positions, the order of the patches still changes the answer"), strict=True)}
TRUSTED = ("vitsteps.teach.buggy.TrustedStage",)


def _suspect_mistake(stage: str, imitate: Callable[..., object], symptom: int) -> Mistake:
    return Mistake(f"the suspect's {stage} (symptom {symptom})", imitate,
                   SUSPECT.format(name=stage, symptom=symptom, symptom_text=SYMPTOMS[symptom]))


def _cut_patches_cases(generator: torch.Generator) -> list[Case]:
    return _batched([Case(f"images [{B}, {C}, {H}, {W}], patch_size={P}", (_randn(generator, B, C, H, W), P),
                          grad_args=(0,))
                     for B, C, H, W, P in [(4, 3, 8, 8, 4), (2, 1, 8, 8, 2), (2, 3, 8, 12, 4), (3, 2, 9, 6, 3)]],
                    generator)


CUT_PATCHES = Exercise(
    "cut_patches", "09_bug_hunt", "ex09_cut_patches", _cut_patches_cases, references.cut_patches, (
        _suspect_mistake("cut_patches", hunt.spread_patches, 1),
        Mistake("view without permute", lambda images, P: _stripes(images, P), STRIPES),
        Mistake("channel last", lambda images, P: _channel_last(images, P, P), CHANNEL_LAST),
        Mistake("column order", lambda images, P: _column_order(images, P, P), COLUMN_ORDER)),
    package_reference=("vitsteps.patches.image_to_patches", *TRUSTED),
    signature="fn(images [B,C,H,W], patch_size) -> [B, N, C*P*P]",
    passes=("shapes", "values vs the reference", "patch order", *BATCH_CHECKS), **TOLERANCE)


def _attention_cases(generator: torch.Generator) -> list[Case]:
    return _batched([Case(f"x [{B}, {L}, {D}], qkv nn.Linear({D}, {3 * D}), proj nn.Linear({D}, {D}), num_heads={h}",
                          (_randn(generator, B, L, D), _linear(generator, D, 3 * D), _linear(generator, D, D), h),
                          grad_args=(0,))
                     for B, L, D, h in [(4, 5, 8, 8), (1, 5, 8, 2), (2, 17, 12, 3), (3, 4, 6, 1)]], generator)


def _mistaken_attention(x: torch.Tensor, qkv: nn.Linear, proj: nn.Linear, h: int, scale: float | None = None,
                        dim: int = -1, merge_by_reshape: bool = False) -> torch.Tensor:
    B, L, D = x.shape
    d = D // h
    q, k, v = qkv(x).reshape(B, L, 3, h, d).permute(2, 0, 3, 1, 4)  # 3 x [B, h, L, d]
    weights = (q @ k.transpose(-2, -1) / (math.sqrt(d) if scale is None else scale)).softmax(dim)  # [B, h, L, L]
    heads = weights @ v  # [B, h, L, d]
    return proj(heads.reshape(B, L, D) if merge_by_reshape else heads.transpose(1, 2).reshape(B, L, D))  # [B, L, D]


ATTENTION = Exercise(
    "attention", "09_bug_hunt", "ex09_attention", _attention_cases, references.attention, (
        _suspect_mistake("attention", hunt.causal_attention, 3),
        Mistake("not scaled", lambda x, qkv, proj, h: _mistaken_attention(x, qkv, proj, h, scale=1.0),
                "the scores are not scaled by the square root of the head width d."),
        Mistake("softmax over the queries", lambda x, qkv, proj, h: _mistaken_attention(x, qkv, proj, h, dim=-2),
                "the softmax runs over the keys (the last dimension): each query's weights sum to 1."),
        Mistake("heads merged by a reshape", lambda x, qkv, proj, h: _mistaken_attention(
            x, qkv, proj, h, merge_by_reshape=True),
                "the heads are put back together by a reshape alone: the token axis has to come back in front of "
                "the head axis first, or a token receives other tokens' features.")),
    package_reference=("vitsteps.encoder.Attention", "vitsteps.encoder.scaled_dot_product", *TRUSTED), **TOLERANCE,
    signature="fn(x [B,L,D], qkv nn.Linear(D, 3D), proj nn.Linear(D, D), num_heads) -> [B, L, D]",
    passes=("shapes", "values vs the reference", *BATCH_CHECKS))


def _embed_tokens_cases(generator: torch.Generator) -> list[Case]:
    return _batched([Case(f"patches [{B}, {N}, {depth}], patch_proj nn.Linear({depth}, {D}), cls_token [1, 1, {D}], "
                          f"pos_embed [1, {N + 1}, {D}]",
                          (_randn(generator, B, N, depth), _linear(generator, depth, D), _randn(generator, 1, 1, D),
                           _randn(generator, 1, N + 1, D)), grad_args=(0, 2, 3))
                     for B, N, depth, D in [(4, 4, 48, 8), (1, 16, 4, 8), (2, 9, 12, 6), (3, 1, 3, 5)]], generator)


def _sequence(patches: torch.Tensor, proj: nn.Linear, cls: torch.Tensor, cls_last: bool = False) -> torch.Tensor:
    cls, tokens = cls.expand(len(patches), -1, -1), proj(patches)  # [B, 1, D], [B, N, D]
    return torch.cat([tokens, cls] if cls_last else [cls, tokens], dim=1)  # [B, L, D]


EMBED_TOKENS = Exercise(
    "embed_tokens", "09_bug_hunt", "ex09_embed_tokens", _embed_tokens_cases, references.embed_tokens, (
        _suspect_mistake("embed_tokens", hunt.one_row_for_all, 2),
        Mistake("the table never added", lambda patches, proj, cls, pos: _sequence(patches, proj, cls),
                "the position table never reaches the output: follow it from where it is added to what the "
                "function returns."),
        Mistake("CLS last", lambda patches, proj, cls, pos: _sequence(patches, proj, cls, cls_last=True) + pos,
                "the CLS token must come first (position 0), before the patch tokens."),
        Mistake("the table on the patches only", lambda patches, proj, cls, pos: _sequence(patches, proj, cls)
                + torch.cat([torch.zeros_like(pos[:, :1]), pos[:, 1:]], dim=1),
                "row 0 of the table belongs to the CLS token: add the table to the whole sequence, CLS included.")),
    package_reference=("vitsteps.tokens.prepend_cls_token", "vitsteps.tokens.add_position_embedding", *TRUSTED),
    **TOLERANCE,
    signature="fn(patches [B,N,C*P*P], patch_proj nn.Linear, cls_token [1,1,D], pos_embed [1,L,D]) -> [B, L, D]",
    passes=("shapes", "values vs the reference", *BATCH_CHECKS))


def _encoder_block_cases(generator: torch.Generator) -> list[Case]:
    cases = []
    for B, L, D, h, hidden in [(4, 5, 8, 8, 32), (1, 5, 8, 2, 16), (2, 17, 12, 3, 24), (3, 4, 6, 1, 12)]:
        norms = [(1 + 0.2 * _randn(generator, D), 0.2 * _randn(generator, D)) for _ in range(2)]
        cases.append(Case(f"x [{B}, {L}, {D}], norm1 and norm2 ([{D}], [{D}]), qkv, proj, fc1 nn.Linear({D}, "
                          f"{hidden}), fc2 nn.Linear({hidden}, {D}), num_heads={h}",
                          (_randn(generator, B, L, D), *norms, _linear(generator, D, 3 * D), _linear(generator, D, D),
                           _linear(generator, D, hidden), _linear(generator, hidden, D), h), grad_args=(0,)))
    return _batched(cases, generator)


def _block(x: torch.Tensor, norm1: tuple, norm2: tuple, qkv: nn.Linear, proj: nn.Linear, fc1: nn.Linear,
           fc2: nn.Linear, h: int, post_norm: bool = False, mlp_norm: int = 2,
           activation: Callable[[torch.Tensor], torch.Tensor] = F.gelu, mlp_residual: bool = True) -> torch.Tensor:
    """The block as a mistake computes it."""
    D = x.shape[-1]
    first = lambda y: F.layer_norm(y, (D,), *norm1, eps=references.LAYER_NORM_EPS)  # noqa: E731
    second = lambda y: F.layer_norm(y, (D,), *(norm2 if mlp_norm == 2 else norm1),  # noqa: E731
                                    eps=references.LAYER_NORM_EPS)
    mlp = lambda y: fc2(activation(fc1(y)))  # noqa: E731
    if post_norm:
        x = first(x + references.attention(x, qkv, proj, h))  # [B, L, D]
        return second(x + mlp(x))  # [B, L, D]
    x = x + references.attention(first(x), qkv, proj, h)  # [B, L, D]
    return (x if mlp_residual else 0) + mlp(second(x))  # [B, L, D]


ENCODER_BLOCK = Exercise(
    "encoder_block", "09_bug_hunt", "ex09_encoder_block", _encoder_block_cases, references.encoder_block, (
        _suspect_mistake("encoder_block", hunt.normalised_residual, 4),
        Mistake("post-norm", lambda *args: _block(*args, post_norm=True),
                "post-norm: each LayerNorm must sit inside its branch, before attention and before the MLP, so that "
                "the residual path carries x through unchanged (pre_norm_residual)."),
        Mistake("norm1 twice", lambda *args: _block(*args, mlp_norm=1),
                "the MLP's branch normalises with norm1: norm2 belongs to the MLP (gradients_reach found no "
                "gradient for norm2)."),
        Mistake("ReLU", lambda *args: _block(*args, activation=F.relu),
                "the MLP's activation is the exact GELU, not ReLU."),
        Mistake("tanh GELU", lambda *args: _block(*args, activation=lambda y: F.gelu(y, approximate="tanh")),
                "the exact GELU, not its tanh approximation."),
        Mistake("no residual around the MLP", lambda *args: _block(*args, mlp_residual=False),
                "the MLP's output is added to its input (a residual connection), as attention's is.")),
    package_reference=("vitsteps.encoder.Block", "vitsteps.encoder.scaled_dot_product", *TRUSTED), **TOLERANCE,
    signature="fn(x [B,L,D], norm1 (weight, bias), norm2 (weight, bias), qkv, proj, fc1, fc2, num_heads) -> "
              "[B, L, D]",
    passes=("shapes", "values vs the reference", *BATCH_CHECKS))




def _classify_cases(generator: torch.Generator) -> list[Case]:
    cases = []
    for B, L, D, K in [(4, 5, 8, 10), (1, 5, 8, 10), (2, 17, 12, 3), (3, 2, 6, 2)]:
        norm = (1 + 0.2 * _randn(generator, D), 0.2 * _randn(generator, D))
        cases.append(Case(f"x [{B}, {L}, {D}], norm ([{D}], [{D}]), head nn.Linear({D}, {K})",
                          (_randn(generator, B, L, D), norm, _linear(generator, D, K)), grad_args=(0,)))
    return _batched(cases, generator)


CLASSIFY = Exercise(
    "classify", "09_bug_hunt", "ex09_classify", _classify_cases, references.classify, (
        _suspect_mistake("classify", hunt.last_token, 6),
        Mistake("no final norm", lambda x, norm, head: head(x[:, 0]),
                "the head reads the token before the final LayerNorm: normalise first, then apply the head."),
        Mistake("mean of the patch tokens", lambda x, norm, head: hunt._mean_pool(x, norm, head),
                "this is global average pooling, a valid head elsewhere (notebook 06); this model reads its CLS "
                "token."),
        Mistake("mean of all tokens", lambda x, norm, head: head(hunt._norm(x, norm).mean(dim=1)),
                "the head reads one token, the CLS token, not a mean over the sequence.")),
    package_reference=TRUSTED, **TOLERANCE,
    signature="fn(x [B,L,D], norm (weight, bias), head nn.Linear(D, K)) -> [B, K]",
    passes=("shapes", "values vs the reference", *BATCH_CHECKS))


# --------------------------------------------------------------------------------------- the table

# In series order. To add an exercise: write its cases, its reference (in `references`) and its mistakes in the
# section of its notebook above, and list it here.
EXERCISES: dict[str, Exercise] = {exercise.name: exercise for exercise in (
    NUM_TOKENS, IMAGE_TO_PATCHES, IMAGE2EMB_NAIVE, WEIGHT_TO_KERNEL, IMAGE2EMB_CONV, PREPEND_CLS_TOKEN,
    ADD_POSITION_EMBEDDING, SPLIT_HEADS, SCALED_DOT_PRODUCT, CLS_HEAD_LOSS, VIT_PARAMETER_COUNT, SHIFT_IMAGES,
    ATTENTION_DISTANCE, LAYOUT_SCORE, CUT_PATCHES, EMBED_TOKENS, CLASSIFY, ATTENTION, ENCODER_BLOCK)}
