"""The key to notebook 09's bug hunt (instructors only): each bug of the suspect, the checks it fails planted alone,
and the pitfalls that notebooks 01-08 show, so that tests can prove that no bug of the hunt is one of them.

The notebook and the student package name no bug: the notebook numbers its symptoms, `vitsteps.teach.buggy.HINTS`
holds hints per symptom, and this table says which bug stands behind which symptom. Each `Bug` has its stage
function with that bug alone (`plant`), the checks of `vitsteps.teach.properties.run_checks` that fail when it is
planted alone into a correct suspect (`caught_by`), and code that only its fix contains (`fix`), which the
student package and the student version of the notebook must not hold. `SUSPECT` is the suspect's code as
notebook 09 writes it, every bug in place. `PITFALLS` lists every pitfall of notebooks 01-08 by its headline,
with the stage function that shows it where the suspect has such a stage.

Shape legend: B batch, C channels, H W image, P patch side, N patches, L tokens, D model dim, h heads, d head dim,
K classes.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import references

STAGES = ("cut_patches", "embed_tokens", "attention", "encoder_block", "classify")
CORRECT: dict[str, Callable[..., torch.Tensor]] = {
    "cut_patches": references.cut_patches, "embed_tokens": references.embed_tokens,
    "attention": references.attention, "encoder_block": references.encoder_block, "classify": references.classify}


# --------------------------------------------------------------------------------------- the bugs, one by one


def spread_patches(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Each side split as (pixel within the patch, patch) instead of (patch, pixel): token n holds every
    (H/P)-th row and column, a spread-out grid instead of a square."""
    B, C, H, W = images.shape
    P = patch_size
    grid = images.reshape(B, C, P, H // P, P, W // P).permute(0, 3, 5, 1, 2, 4)  # [B, H/P, W/P, C, P, P]
    return grid.reshape(B, (H // P) * (W // P), C * P * P)  # [B, N, C*P*P]


def one_row_for_all(patches: torch.Tensor, patch_proj: nn.Linear, cls_token: torch.Tensor,
                    pos_embed: torch.Tensor) -> torch.Tensor:
    """`pos_embed[:, 0]`, `[1, D]`, broadcast to every token: all tokens get row 0 of the table."""
    tokens = torch.cat([cls_token.expand(len(patches), -1, -1), patch_proj(patches)], dim=1)  # [B, L, D]
    return tokens + pos_embed[:, 0]  # [B, L, D]


def causal_attention(x: torch.Tensor, qkv: nn.Linear, proj: nn.Linear, num_heads: int) -> torch.Tensor:
    """A decoder's causal mask: token i attends to tokens 0..i only, so the CLS token (token 0) to itself."""
    B, L, D = x.shape
    d = D // num_heads
    q, k, v = qkv(x).reshape(B, L, 3, num_heads, d).permute(2, 0, 3, 1, 4)  # 3 x [B, h, L, d]
    scores = q @ k.transpose(-2, -1) / math.sqrt(d)  # [B, h, L, L]
    hidden = torch.ones(L, L, dtype=torch.bool).triu(1)  # [L, L]
    weights = scores.masked_fill(hidden, float("-inf")).softmax(dim=-1)  # [B, h, L, L]
    return proj((weights @ v).transpose(1, 2).reshape(B, L, D))  # [B, L, D]


def _norm(x: torch.Tensor, norm: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    return F.layer_norm(x, x.shape[-1:], *norm, eps=references.LAYER_NORM_EPS)  # [B, L, D]


def normalised_residual(x: torch.Tensor, norm1: tuple, norm2: tuple, qkv: nn.Linear, proj: nn.Linear,
                        fc1: nn.Linear, fc2: nn.Linear, num_heads: int,
                        attention: Callable[..., torch.Tensor] = references.attention) -> torch.Tensor:
    """The residual path starts after norm1: `LN1(x) + attention(LN1(x))` instead of `x + attention(LN1(x))`."""
    x = _norm(x, norm1)  # [B, L, D]
    x = x + attention(x, qkv, proj, num_heads)  # [B, L, D]
    return x + fc2(F.gelu(fc1(_norm(x, norm2))))  # [B, L, D]


def dropout_in_eval(x: torch.Tensor, norm1: tuple, norm2: tuple, qkv: nn.Linear, proj: nn.Linear,
                    fc1: nn.Linear, fc2: nn.Linear, num_heads: int,
                    attention: Callable[..., torch.Tensor] = references.attention) -> torch.Tensor:
    """`F.dropout(mlp, p=0.1)` on the MLP branch: its `training` argument defaults to True, in eval mode too."""
    x = x + attention(_norm(x, norm1), qkv, proj, num_heads)  # [B, L, D]
    return x + F.dropout(fc2(F.gelu(fc1(_norm(x, norm2)))), p=0.1)  # [B, L, D]


def suspect_block(x: torch.Tensor, norm1: tuple, norm2: tuple, qkv: nn.Linear, proj: nn.Linear, fc1: nn.Linear,
                  fc2: nn.Linear, num_heads: int,
                  attention: Callable[..., torch.Tensor] = references.attention) -> torch.Tensor:
    """Both of the block's bugs: the residual path after norm1 and dropout left on."""
    x = _norm(x, norm1)  # [B, L, D]
    x = x + attention(x, qkv, proj, num_heads)  # [B, L, D]
    return x + F.dropout(fc2(F.gelu(fc1(_norm(x, norm2)))), p=0.1)  # [B, L, D]


def last_token(x: torch.Tensor, norm: tuple, head: nn.Linear) -> torch.Tensor:
    """The head reads the last token, a patch token, instead of the CLS token in front."""
    return head(_norm(x, norm)[:, -1])  # [B, K]


@dataclass(frozen=True)
class Bug:
    """One bug of the suspect.

    Attributes:
        symptom: its number in notebook 09's list of symptoms (and `vitsteps.teach.buggy.HINTS`).
        stage: the suspect's function that holds it.
        kind: what kind of bug it is, for instructors.
        plant: the stage's function with this bug alone.
        caught_by: the checks of `run_checks` that fail when it is planted alone into a correct suspect.
        fix: code that only the fixed function holds (none of it may be in the student's material).
    """

    symptom: int
    stage: str
    kind: str
    plant: Callable[..., torch.Tensor]
    caught_by: frozenset[str]
    fix: tuple[str, ...]


BUGS: tuple[Bug, ...] = (
    Bug(1, "cut_patches", "a reshape whose sizes are in the wrong order (the shapes still agree)", spread_patches,
        frozenset({"patch_order", "patch_round_trip", "readout_symmetry"}),
        ("reshape(B, C, H // P, P, W // P, P)",)),
    Bug(2, "embed_tokens", "an index that drops a dimension, and the slice still broadcasts", one_row_for_all,
        frozenset({"position_sensitivity", "gradients_reach"}),
        ("tokens + pos_embed  #", "return tokens + pos_embed\n")),
    Bug(3, "attention", "a mask (a decoder's causal mask) in an encoder", causal_attention,
        frozenset({"input_sensitivity", "position_sensitivity", "gradients_reach"}), ()),
    Bug(4, "encoder_block", "a residual taken from the wrong place (after the norm)", normalised_residual,
        frozenset({"pre_norm_residual"}), ("x = x + attention(F.layer_norm(x",)),
    Bug(5, "encoder_block", "a training-only behaviour left on in eval mode (functional dropout)", dropout_in_eval,
        frozenset({"deterministic_in_eval", "batch_independence", "readout_symmetry"}), ("training=False",)),
    Bug(6, "classify", "the head reads the wrong token", last_token, frozenset({"readout_symmetry"}),
        ("(D,), *norm, eps=1e-6)[:, 0]",)),
)

# the suspect as notebook 09 writes it: every bug in place
SUSPECT: dict[str, Callable[..., torch.Tensor]] = {
    "cut_patches": spread_patches, "embed_tokens": one_row_for_all, "attention": causal_attention,
    "encoder_block": suspect_block, "classify": last_token}


def assemble(stages: dict[str, Callable[..., torch.Tensor]]) -> dict[str, Callable[..., torch.Tensor]]:
    """`stages` with its block calling its attention (the notebook's block calls the notebook's `attention`)."""
    block, attention = stages["encoder_block"], stages["attention"]
    if block is references.encoder_block:
        block = correct_block
    if block in (correct_block, normalised_residual, dropout_in_eval, suspect_block):
        stages = {**stages, "encoder_block": functools.partial(block, attention=attention)}
    return stages


def correct_block(x: torch.Tensor, norm1: tuple, norm2: tuple, qkv: nn.Linear, proj: nn.Linear, fc1: nn.Linear,
                  fc2: nn.Linear, num_heads: int,
                  attention: Callable[..., torch.Tensor] = references.attention) -> torch.Tensor:
    """The pre-norm block, calling `attention`."""
    x = x + attention(_norm(x, norm1), qkv, proj, num_heads)  # [B, L, D]
    return x + fc2(F.gelu(fc1(_norm(x, norm2))))  # [B, L, D]


# --------------------------------------------------------------------------------------- the series' pitfalls


def _stripes(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    B, C, H, W = images.shape
    return images.reshape(B, (H // patch_size) * (W // patch_size), C * patch_size ** 2)  # [B, N, C*P*P]


def _cls_per_sample(patches: torch.Tensor, patch_proj: nn.Linear, cls_token: torch.Tensor,
                    pos_embed: torch.Tensor) -> torch.Tensor:
    """A CLS parameter per batch slot (`torch.randn(bs, 1, D)`): each slot gets a token of its own."""
    per_slot = torch.randn(len(patches), 1, cls_token.shape[-1], generator=torch.Generator().manual_seed(3))
    tokens = torch.cat([cls_token + 0.02 * per_slot, patch_proj(patches)], dim=1)  # [B, L, D]
    return tokens + pos_embed  # [B, L, D]


def _table_never_added(patches: torch.Tensor, patch_proj: nn.Linear, cls_token: torch.Tensor,
                       pos_embed: torch.Tensor) -> torch.Tensor:
    return torch.cat([cls_token.expand(len(patches), -1, -1), patch_proj(patches)], dim=1)  # [B, L, D]


def _sequence_first(x: torch.Tensor, qkv: nn.Linear, proj: nn.Linear, num_heads: int) -> torch.Tensor:
    """`batch_first=False`: `[B, L, D]` read as `[L, B, D]`, attention along the batch."""
    return references.attention(x.transpose(0, 1), qkv, proj, num_heads).transpose(0, 1)  # [B, L, D]


def _post_norm(x: torch.Tensor, norm1: tuple, norm2: tuple, qkv: nn.Linear, proj: nn.Linear, fc1: nn.Linear,
               fc2: nn.Linear, num_heads: int) -> torch.Tensor:
    x = _norm(x + references.attention(x, qkv, proj, num_heads), norm1)  # [B, L, D]
    return _norm(x + fc2(F.gelu(fc1(x))), norm2)  # [B, L, D]


def _mean_pool(x: torch.Tensor, norm: tuple, head: nn.Linear) -> torch.Tensor:
    return head(_norm(x, norm)[:, 1:].mean(dim=1))  # [B, K]


@dataclass(frozen=True)
class Pitfall:
    """A pitfall that one of notebooks 01-08 shows.

    Attributes:
        notebook: its notebook's stem.
        headline: words of its bold headline, as the notebook writes them.
        stage: the suspect's function where it would sit, or None where the suspect has no such step (a
            weight reshaped into a kernel, a plot, a count, a name, training, an analysis).
        plant: that function with the pitfall in it (None with `stage`).
    """

    notebook: str
    headline: str
    stage: str | None = None
    plant: Callable[..., torch.Tensor] | None = None


PITFALLS: tuple[Pitfall, ...] = (
    Pitfall("01_patches_unfold", "Patchify with `reshape` and no `permute` gives stripes", "cut_patches", _stripes),
    Pitfall("02_patches_conv", "Reshaping the weight into a kernel without the transpose"),
    Pitfall("03_cls_token", "A CLS parameter per sample", "embed_tokens", _cls_per_sample),
    Pitfall("04_position_embedding", "A position table that is computed but never added", "embed_tokens",
            _table_never_added),
    Pitfall("05_encoder", "`batch_first` left at its default", "attention", _sequence_first),
    Pitfall("05_encoder", "`nn.MultiheadAttention` averages the attention weights over the heads"),
    Pitfall("05_encoder", "`nn.TransformerEncoderLayer` is post-norm", "encoder_block", _post_norm),
    Pitfall("05_encoder", "`dim_feedforward` defaults to 2048"),
    Pitfall("06_head_and_loss", "Token 0 of the encoder's output is not \"the position embedding\""),
    Pitfall("06_head_and_loss", "Class token or the average of the tokens", "classify", _mean_pool),
    Pitfall("07_training", "the training loss is stuck"),
    Pitfall("08_inside_the_model", "rollout without the residual path"),
)
