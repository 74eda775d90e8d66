"""The suspect of notebook 09's bug hunt: a ViT assembled from functions that the notebook passes in.

Notebook 09 writes the suspect's code, four functions with bugs in them (`cut_patches`, `embed_tokens`, `attention`
and `encoder_block`, which calls `attention`), and students locate the bugs with the property checks of
`vitsteps.teach.properties` and fix the functions. `SuspectViT` holds the parameters, under timm's names and
with ViT's initialisation, and calls the functions it is given, so a fixed function passed in changes the
model. With correct functions it computes exactly what `vitsteps.ViT` computes (tests/teach/test_buggy.py
proves it). `fix_report` turns the verdicts recorded along the hunt into a table of what each fix changed.

Shape legend: B batch, C channels, H W image, P patch side, N patches, L = N + 1 tokens, D model dim.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from .. import _validate
from ..model import ViTConfig, get_config, init_weights
from .properties import PropertyResult

CutPatches = Callable[[torch.Tensor, int], torch.Tensor]
EmbedTokens = Callable[[torch.Tensor, nn.Linear, torch.Tensor, torch.Tensor], torch.Tensor]
EncoderBlock = Callable[..., torch.Tensor]


def _callable(value: object, name: str, signature: str) -> Callable[..., torch.Tensor]:
    if not callable(value):
        _validate.fail(TypeError, name, f"a function {signature}", value,
                       f"pass the function itself, without calling it: SuspectViT(config, {name}=...)")
    return value  # type: ignore[return-value]


class SuspectBlock(nn.Module):
    """One encoder block's parameters (`norm1`, `attn.qkv`, `attn.proj`, `norm2`, `mlp.fc1`, `mlp.fc2`), run by
    the block function it was given.

    Args:
        dim: token width `D`.
        num_heads: attention heads.
        hidden: the MLP's hidden width.
        norm_eps: LayerNorm epsilon.
        block: `encoder_block(x, norm1, norm2, qkv, proj, fc1, fc2, num_heads)`, each norm a (weight, bias) pair.
    """

    def __init__(self, dim: int, num_heads: int, hidden: int, norm_eps: float, block: EncoderBlock) -> None:
        super().__init__()
        self.block, self.num_heads = block, num_heads
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = nn.ModuleDict({"qkv": nn.Linear(dim, 3 * dim), "proj": nn.Linear(dim, dim)})
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = nn.ModuleDict({"fc1": nn.Linear(dim, hidden), "fc2": nn.Linear(hidden, dim)})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens `[B, L, D]` through the block function."""
        return self.block(x, (self.norm1.weight, self.norm1.bias), (self.norm2.weight, self.norm2.bias),
                          self.attn["qkv"], self.attn["proj"], self.mlp["fc1"], self.mlp["fc2"],
                          self.num_heads)  # [B, L, D]


class SuspectViT(nn.Module):
    """A ViT whose steps are the functions passed in: patches cut by `cut_patches`, embedded by `embed_tokens`
    (a linear patch projection, the CLS token, the position table), encoded by `encoder_block` in every block,
    then the final norm and the head on the CLS token.

    Args:
        config: shapes; the original article's toy model (`get_config("toy")`) when omitted.
        cut_patches: `(images [B, C, H, W], patch_size) -> [B, N, C*P*P]`; the model's `patchify`.
        embed_tokens: `(patches, patch_proj: nn.Linear, cls_token [1, 1, D], pos_embed [1, L, D]) -> [B, L, D]`.
        encoder_block: `(x [B, L, D], norm1, norm2, qkv, proj, fc1, fc2, num_heads) -> [B, L, D]`.
    """

    def __init__(self, config: ViTConfig | None, cut_patches: CutPatches, embed_tokens: EmbedTokens,
                 encoder_block: EncoderBlock) -> None:
        super().__init__()
        config = get_config("toy") if config is None else config
        _validate.instance(config, "config", ViTConfig, "a ViTConfig", "use get_config('toy')")
        self.config = config
        self.cut = _callable(cut_patches, "cut_patches", "(images, patch_size) -> patches")
        self.embed = _callable(embed_tokens, "embed_tokens", "(patches, patch_proj, cls_token, pos_embed) -> tokens")
        _callable(encoder_block, "encoder_block", "(x, norm1, norm2, qkv, proj, fc1, fc2, num_heads) -> tokens")
        C, P, D = config.in_chans, config.patch_size, config.embed_dim
        self.patch_embed = nn.Linear(C * P * P, D)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))  # [1, 1, D]
        self.pos_embed = nn.Parameter(torch.zeros(1, config.seq_len, D))  # [1, L, D]
        self.blocks = nn.ModuleList(SuspectBlock(D, config.num_heads, config.mlp_hidden, config.norm_eps,
                                                 encoder_block) for _ in range(config.depth))
        self.norm = nn.LayerNorm(D, eps=config.norm_eps)
        self.head = nn.Linear(D, config.num_classes)
        init_weights(self)  # ViT's own initialisation

    def patchify(self, images: torch.Tensor, patch_size: int | None = None) -> torch.Tensor:
        """Images `[B, C, H, W]` to flattened patches `[B, N, C*P*P]` with the `cut_patches` function given."""
        return self.cut(images, self.config.patch_size if patch_size is None else patch_size)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images `[B, C, H, W]` to logits `[B, K]`."""
        _validate.tensor(images, "images", 4, "[B, C, H, W]")
        B, C, H, W = images.shape
        tokens = self.embed(self.patchify(images), self.patch_embed, self.cls_token, self.pos_embed)  # [B, L, D]
        for block in self.blocks:
            tokens = block(tokens)  # [B, L, D]
        return self.head(self.norm(tokens)[:, 0])  # [B, K]


def fix_report(steps: Sequence[tuple[str, Sequence[PropertyResult]]]) -> str:
    """What each step of a bug hunt changed, as a text table: the checks it turned green and those it turned red.

    Args:
        steps: `(what was done, run_checks(...) after it)` in the order of the hunt; the first is the start.

    Returns:
        One line per step after the first, then how many checks pass at the end.
    """
    if isinstance(steps, str) or not isinstance(steps, Sequence) or len(steps) < 2:
        _validate.fail(TypeError if not isinstance(steps, Sequence) or isinstance(steps, str) else ValueError,
                       "steps", "a list of at least two (label, results) pairs", steps,
                       "record the verdicts before the first fix and after each one")
    verdicts = []
    for label, results in steps:
        _validate.instance(label, "steps", str, "(label, results) pairs with a str label", "name each step")
        verdicts.append({result.name: result.passed for result in results})
    width = max(len(label) for label, _ in steps[1:])
    lines = [f"{'step':<{width}}  turned green / turned red"]
    for (label, _), before, after in zip(steps[1:], verdicts, verdicts[1:], strict=False):
        green = [name for name, passed in after.items() if passed and not before.get(name, True)]
        red = [name for name, passed in after.items() if not passed and before.get(name, False)]
        lines.append(f"{label:<{width}}  {', '.join(green) or '-'} / {', '.join(red) or '-'}")
    final = steps[-1][1]
    lines.append(f"at the end: {sum(result.passed for result in final)} of {len(final)} checks pass.")
    return "\n".join(lines)
