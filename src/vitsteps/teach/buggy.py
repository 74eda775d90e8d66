"""The suspect of notebook 09's bug hunt: a ViT assembled from functions that the notebook passes in, the trusted
stages to bisect it with, and the hints a student may ask for.

Notebook 09 writes the suspect's code, five functions (`cut_patches`, `embed_tokens`, `attention`,
`encoder_block`, which calls `attention`, and `classify`), and students locate its bugs from their symptoms with
the property checks of `vitsteps.teach.properties`, then fix the functions. `SuspectViT` holds the parameters,
under timm's names and with ViT's initialisation, and calls the functions it is given, so a fixed function passed
in changes the model. With correct functions it computes exactly what `vitsteps.ViT` computes
(tests/teach/test_buggy.py proves it). `bisect` swaps one stage at a time for a trusted one built from the
package's stages (`TrustedStage`) and says which checks each swap turns green. `hint(symptom)` prints the next
hint for one of the notebook's numbered symptoms, from the vaguest to the most specific, and `hints_used()` says
how many were asked for. `fix_report` turns the verdicts recorded along the hunt into a table of what each fix
changed.

Shape legend: B batch, C channels, H W image, P patch side, N patches, L = N + 1 tokens, D model dim, K classes.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .. import _validate, encoder, patches, tokens
from ..model import ViTConfig, get_config, init_weights
from .properties import PropertyResult, run_checks

CutPatches = Callable[[torch.Tensor, int], torch.Tensor]
EmbedTokens = Callable[[torch.Tensor, nn.Linear, torch.Tensor, torch.Tensor], torch.Tensor]
EncoderBlock = Callable[..., torch.Tensor]
Classify = Callable[[torch.Tensor, tuple, nn.Linear], torch.Tensor]
STAGES = ("cut_patches", "embed_tokens", "attention", "encoder_block", "classify")


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
    then read out by `classify` (the final norm and the head on the CLS token).

    Args:
        config: shapes; the original article's toy model (`get_config("toy")`) when omitted.
        cut_patches: `(images [B, C, H, W], patch_size) -> [B, N, C*P*P]`; the model's `patchify`.
        embed_tokens: `(patches, patch_proj: nn.Linear, cls_token [1, 1, D], pos_embed [1, L, D]) -> [B, L, D]`.
        encoder_block: `(x [B, L, D], norm1, norm2, qkv, proj, fc1, fc2, num_heads) -> [B, L, D]`.
        classify: `(x [B, L, D], norm (weight, bias), head: nn.Linear) -> [B, K]`; when omitted, the final
            LayerNorm and the head on token 0, the CLS token.
    """

    def __init__(self, config: ViTConfig | None, cut_patches: CutPatches, embed_tokens: EmbedTokens,
                 encoder_block: EncoderBlock, classify: Classify | None = None) -> None:
        super().__init__()
        config = get_config("toy") if config is None else config
        _validate.instance(config, "config", ViTConfig, "a ViTConfig", "use get_config('toy')")
        self.config = config
        self.cut = _callable(cut_patches, "cut_patches", "(images, patch_size) -> patches")
        self.embed = _callable(embed_tokens, "embed_tokens", "(patches, patch_proj, cls_token, pos_embed) -> tokens")
        _callable(encoder_block, "encoder_block", "(x, norm1, norm2, qkv, proj, fc1, fc2, num_heads) -> tokens")
        self.classify = None if classify is None else _callable(classify, "classify", "(x, norm, head) -> logits")
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
        if self.classify is not None:
            return self.classify(tokens, (self.norm.weight, self.norm.bias), self.head)  # [B, K]
        return self.head(self.norm(tokens)[:, 0])  # [B, K]


class TrustedStage:
    """One stage of the suspect done right, with the package's own stage code, to swap in while bisecting.

    Called with the stage's signature (see `SuspectViT`). A trusted `encoder_block` calls the `attention` it was
    given, so that swapping the block alone leaves attention as it is. The graded run of every notebook 09
    exercise closes this class: a fix must be the student's own code.

    Args:
        stage: one of `STAGES`.
        attention: for `encoder_block`, the attention function the block calls; a trusted one when omitted.
    """

    def __init__(self, stage: str, attention: Callable[..., torch.Tensor] | None = None) -> None:
        _validate.one_of(stage, "stage", STAGES, "name one of the suspect's five functions")
        if attention is not None:
            _callable(attention, "attention", "(x, qkv, proj, num_heads) -> tokens")
        self.stage, self.attention = stage, attention

    def __repr__(self) -> str:
        return f"TrustedStage({self.stage!r})"

    def __call__(self, *args: object) -> torch.Tensor:
        """The stage's output, computed with `vitsteps.patches`, `tokens` and `encoder`."""
        if self.stage == "cut_patches":
            images, patch_size = args
            return patches.image_to_patches(images, patch_size)  # [B, N, C*P*P]
        if self.stage == "embed_tokens":
            flat, patch_proj, cls_token, pos_embed = args
            return tokens.add_position_embedding(tokens.prepend_cls_token(patch_proj(flat), cls_token),
                                                 pos_embed)  # [B, L, D]
        if self.stage == "classify":
            x, norm, head = args
            return head(F.layer_norm(x, x.shape[-1:], *norm, eps=1e-6)[:, 0])  # [B, K]
        if self.stage == "attention" or self.attention is None:
            def attend(x: torch.Tensor, qkv: nn.Linear, proj: nn.Linear, num_heads: int) -> torch.Tensor:
                B, L, D = x.shape
                q, k, v = qkv(x).reshape(B, L, 3, num_heads, D // num_heads).permute(2, 0, 3, 1, 4)  # [B, h, L, d]
                mixed, _ = encoder.scaled_dot_product(q, k, v)  # [B, h, L, d]
                return proj(mixed.transpose(1, 2).reshape(B, L, D))  # [B, L, D]
            if self.stage == "attention":
                return attend(*args)  # [B, L, D]
        else:
            attend = self.attention
        x, norm1, norm2, qkv, proj, fc1, fc2, num_heads = args
        D = x.shape[-1]
        x = x + attend(F.layer_norm(x, (D,), *norm1, eps=1e-6), qkv, proj, num_heads)  # [B, L, D]
        return x + fc2(F.gelu(fc1(F.layer_norm(x, (D,), *norm2, eps=1e-6))))  # [B, L, D]


def _suspect(config: ViTConfig, functions: Mapping[str, Callable[..., torch.Tensor]]) -> SuspectViT:
    """The suspect from `functions`, its block calling `functions["attention"]` (a block given as
    `functools.partial(block, attention=...)` gets that attention in place of the one it was bound to)."""
    attention = functions["attention"]
    block = functions["encoder_block"]
    if isinstance(block, TrustedStage):
        block = TrustedStage("encoder_block", attention)
    elif isinstance(block, functools.partial) and "attention" in block.keywords:
        block = functools.partial(block, attention=attention)
    else:  # the notebook's block calls the global `attention`: give it this one for the duration of a call
        block = _with_attention(block, attention)
    torch.manual_seed(0)
    return SuspectViT(config, functions["cut_patches"], functions["embed_tokens"], block, functions["classify"])


def _with_attention(block: EncoderBlock, attention: Callable[..., torch.Tensor]) -> EncoderBlock:
    """`block` run with the name `attention` in its globals bound to `attention`."""
    namespace = getattr(block, "__globals__", None)
    if namespace is None or namespace.get("attention") is attention:
        return block

    def run(*args: object) -> torch.Tensor:
        saved = namespace.get("attention")
        namespace["attention"] = attention
        try:
            return block(*args)
        finally:
            namespace["attention"] = saved
    return run


def bisect(functions: Mapping[str, Callable[..., torch.Tensor]], images: torch.Tensor,
           config: ViTConfig | None = None) -> str:
    """Swap one stage at a time for a trusted one and say which checks each swap turns green (and red).

    A check that a trusted stage turns green points at that stage; a check that no single swap turns green
    has more than one cause, or its cause sits where two stages meet. The suspect is rebuilt from the same
    seed for every swap.

    Args:
        functions: the five functions as they are now, by name: `{"cut_patches": cut_patches, ...}`.
        images: `[B, C, H, W]` with `B >= 2`, as for `run_checks`.
        config: the suspect's configuration; the toy model's when omitted.

    Returns:
        One line per stage: the checks its trusted version turns green and those it turns red.
    """
    if not isinstance(functions, Mapping):
        _validate.fail(TypeError, "functions", "a dict of the five functions by name", functions,
                       "pass {'cut_patches': cut_patches, 'embed_tokens': embed_tokens, ...}")
    missing = [stage for stage in STAGES if stage not in functions]
    if missing:
        _validate.fail(ValueError, "functions", f"a dict with all of {list(STAGES)}", sorted(functions),
                       f"add {missing}")
    for stage in STAGES:
        _callable(functions[stage], stage, "the suspect's function")
    config = get_config("toy") if config is None else config
    _validate.instance(config, "config", ViTConfig, "a ViTConfig", "use get_config('toy')")
    start = {r.name: r.passed for r in run_checks(_suspect(config, functions), images)}
    width = max(len(stage) for stage in STAGES)
    lines = [f"{'trusted stage':<{width + 8}}  turns green / turns red"]
    for stage in STAGES:
        swapped = {**functions, stage: TrustedStage(stage)}
        after = {r.name: r.passed for r in run_checks(_suspect(config, swapped), images)}
        green = [name for name, passed in after.items() if passed and not start.get(name, True)]
        red = [name for name, passed in after.items() if not passed and start.get(name, False)]
        lines.append(f"trusted {stage:<{width}}  {', '.join(green) or '-'} / {', '.join(red) or '-'}")
    lines.append(f"as it is: {sum(start.values())} of {len(start)} checks pass.")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------- hints

# For each symptom of notebook 09, from the vaguest hint to the most specific. They point at where to look and
# what to measure; none of them gives the fixed code.
HINTS: dict[int, tuple[str, ...]] = {
    1: ("Two checks look at the patches alone, without the rest of the model. Read what patch_order says patch 0 "
        "covers, and compare it with the square it should cover.",
        "Cut an image whose pixels are numbered (torch.arange(64.).reshape(1, 1, 8, 8)) and print token 0: which "
        "rows and columns do its values come from, and how far apart are they?",
        "Token 0 holds every other row and every other column: when an axis of H pixels is split in two, the "
        "order of the two sizes decides which one counts patches and which counts pixels within a patch. Check "
        "each reshape's sizes against the names in its shape comment."),
    2: ("gradients_reach names rows that get no gradient at all. Which parameter are they rows of, and what is "
        "that parameter for?",
        "Only row 0 of the position table gets a gradient: every token receives the same row. Find where the "
        "table meets the tokens and print the shape of what is added.",
        "Indexing with a single number removes a dimension, and the smaller tensor still broadcasts: a [1, D] "
        "slice added to [B, L, D] tokens gives every token the same row."),
    3: ("The head reads one token. For the answer to depend on the image, what has to reach that token, and "
        "through which step of the model?",
        "Probe the step where tokens meet with two inputs that share token 0 and differ everywhere else: does "
        "token 0's output change? Does the last token's?",
        "Token 0 hears only from itself and the last token from everyone: some keys are hidden from some "
        "queries. In a ViT every token may attend to every token; look for what hides keys."),
    4: ("pre_norm_residual looks at one block alone. Follow the residual path: the lines that add a branch's "
        "output to what came in.",
        "Write the block's lines next to the paper's equations 2 and 3: which tensor is the attention branch's "
        "output added to?",
        "The residual path must carry the block's input itself. Once a tensor has been through a LayerNorm, a "
        "constant shift of it is gone, so nothing that has been normalised may stand in for the input."),
    5: ("Something random runs although the model is in eval mode. What in a ViT draws random numbers at all?",
        "model.eval() switches off the dropout of nn.Dropout modules. A dropout written as a function call is "
        "not a module: what tells it whether the model is training?",
        "F.dropout takes a training argument whose default is True, and the suspect's functions are never told "
        "whether the model is training. The ViT of this series trains without dropout."),
    6: ("With the position table at zero, attention treats the tokens as a set. Which outputs stay the same when "
        "the patches change places, and which move with them?",
        "The head should read a token that belongs to no patch. Which token does the readout take?",
        "The CLS token was put at one end of the sequence; check the index the readout uses against that end."),
}
_asked: dict[int, int] = {}


def hint(symptom: int) -> None:
    """Print the next hint for one of notebook 09's numbered symptoms (the vaguest first) and count it.

    Args:
        symptom: the symptom's number, 1 to 6.
    """
    _validate.one_of(symptom, "symptom", list(HINTS), "use the symptom's number from the notebook's list")
    steps = HINTS[symptom]
    taken = min(_asked.get(symptom, 0) + 1, len(steps))
    _asked[symptom] = _asked.get(symptom, 0) + 1
    last = " (the last one)" if taken == len(steps) else ""
    print(f"symptom {symptom}, hint {taken} of {len(steps)}{last}: {steps[taken - 1]}")


def hints_used() -> dict[int, int]:
    """How many hints were asked for, per symptom, in this session (symptoms without one are left out)."""
    return dict(sorted(_asked.items()))


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
