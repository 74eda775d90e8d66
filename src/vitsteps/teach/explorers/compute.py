"""What the explorers show, computed without any widget: each step's shape through stages 01 to 04 run by the
package's own functions, the shipped `mnist` ViT's attention (saying so whenever a choice of heads or depth makes
it another, untrained model), and a ViT's length, parameters and FLOPs.

Everything here is testable without a browser; `widgets` only wires these functions to sliders.
A combination that cannot work raises the package's own error, which the widget shows as a message.

Shape legend: B batch, C channels, H W image, P patch side, N patches, L = N + 1 tokens, D model dim, h heads.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import torch
import torch.nn.functional as F

from ... import _validate
from ..._validate import InputValueError
from ...data import digit_image, mnist_image
from ...model import PRESETS, ViT, ViTConfig, count_parameters, parameter_formula, vit_flops
from ...patches import image_to_patches, patch_embed_conv, patch_embed_unfold, weight_to_kernel
from ...tokens import add_position_embedding, prepend_cls_token

Shape = tuple[int, ...]


def explorer_image(image_size: int = 8, in_chans: int = 1, digit: int = 3) -> torch.Tensor:
    """A real digit resized to `image_size`; with more channels, a colour test image built around it.

    With one channel, the digit. With more, the digit's strokes stay white in every channel and the
    background gets a different ramp per channel (left to right, top to bottom, diagonal, in turn), so an
    RGB picture shows the digit over a colour gradient and no two patches look alike.

    Returns:
        `[1, C, H, W]` image in [0, 1] with `H = W = image_size`.
    """
    _validate.positive_int(image_size, "image_size")
    _validate.positive_int(in_chans, "in_chans")
    digit_8x8 = digit_image(digit)  # [1, 1, 8, 8]
    if image_size == 8:
        stroke = digit_8x8  # [1, 1, H, W]
    else:
        stroke = F.interpolate(digit_8x8, size=(image_size, image_size), mode="bilinear", align_corners=False,
                               antialias=image_size < 8).clamp(0, 1)  # [1, 1, H, W]
    if in_chans == 1:
        return stroke  # [1, 1, H, W]
    ramp = torch.linspace(0.0, 1.0, image_size)  # [W]
    across, down = ramp.expand(image_size, image_size), ramp.unsqueeze(1).expand(image_size, image_size)  # [H, W]
    backgrounds = [0.8 * across, 0.8 * down, 0.8 * (1 - (across + down) / 2)]  # 3 x [H, W]
    stroke = stroke[0, 0]  # [H, W]
    channels = [stroke + (1 - stroke) * backgrounds[c % 3] for c in range(in_chans)]  # C x [H, W]
    return torch.stack(channels).unsqueeze(0)  # [1, C, H, W]


def _shape(tensor: torch.Tensor) -> Shape:
    return tuple(tensor.shape)


def shape_text(shape: Shape) -> str:
    """`(1, 4, 8)` as `[1, 4, 8]`, the way the notebooks print shapes."""
    return "[" + ", ".join(str(size) for size in shape) + "]"


class PatchPipeline(NamedTuple):
    """What the patch explorer shows: each step's shape, the image and its patch tokens."""

    steps: list[tuple[str, Shape]]  # (step, shape) in order, both routes
    image: torch.Tensor             # [1, C, H, W]
    patch_tokens: torch.Tensor      # [1, N, D], the same by both routes
    routes_agree: bool              # unfold @ weight equals the strided conv


def _steps(table: str) -> dict[str, tuple[str, str, str]]:
    """Rows `step | stage | code | symbolic shape` as `{step: (stage, code, symbolic shape)}`."""
    rows = [[cell.strip() for cell in line.split(" | ")] for line in table.strip().splitlines()]
    return {step: (stage, code, shape) for step, stage, code, shape in rows}


# what the patch explorer's table shows for each step of stages 01 and 02
PATCH_STEPS = _steps("""
image               |    | image                                   | [B, C, H, W]
unfold              | 01 | patches = F.unfold(image, P, stride=P)  | [B, C*P*P, N]
transpose           | 01 | patches = patches.transpose(-1, -2)     | [B, N, C*P*P]
matmul              | 01 | tokens = patches @ weight               | [B, N, D]
kernel              | 02 | kernel = weight.T.reshape(-1, C, P, P)  | [D, C, P, P]
conv                | 02 | out = F.conv2d(image, kernel, stride=P) | [B, D, H/P, W/P]
reshape             | 02 | out = out.reshape(B, D, N)              | [B, D, N]
transpose to tokens | 02 | tokens = out.transpose(-1, -2)          | [B, N, D]
""")


def patch_pipeline(image_size: int = 8, patch_size: int = 4, in_chans: int = 3, model_dim: int = 8,
                   digit: int = 3, seed: int = 0) -> PatchPipeline:
    """Run stages 01 and 02 of the package on one image and record the shape after every step.

    Args:
        image_size: image side `H = W`.
        patch_size: patch side `P`; it must divide `image_size` (the package's error says so otherwise).
        in_chans: channels `C` (1: the digit; 3: a colour test image around it).
        model_dim: token width `D`.
        digit: which digit to cut up, 0 to 9.
        seed: seed of the random projection `weight [C*P*P, D]` (the global RNG is left alone).

    Returns:
        A `PatchPipeline`; its tokens are `[1, N, D]` with `N = (H/P)**2`.
    """
    _validate.positive_int(image_size, "image_size")
    _validate.positive_int(patch_size, "patch_size")
    _validate.positive_int(in_chans, "in_chans")
    _validate.positive_int(model_dim, "model_dim")
    if patch_size > image_size:
        raise InputValueError(f"patch_size={patch_size} is larger than the image ({image_size}x{image_size}); "
                              f"pick a patch size from 1 to {image_size} that divides {image_size}.")
    image = explorer_image(image_size, in_chans, digit)  # [1, C, H, W]
    patches = image_to_patches(image, patch_size)  # [1, N, C*P*P]; raises when P does not divide H
    weight = torch.randn(in_chans * patch_size ** 2, model_dim,
                         generator=torch.Generator().manual_seed(seed))  # [C*P*P, D]
    tokens_unfold = patch_embed_unfold(image, patch_size, weight)  # [1, N, D]
    kernel = weight_to_kernel(weight, in_chans, patch_size)  # [D, C, P, P]
    feature_map = F.conv2d(image, kernel, stride=patch_size)  # [1, D, H/P, W/P]
    B, D, grid_h, grid_w = feature_map.shape
    tokens_conv = patch_embed_conv(image, kernel, patch_size)  # [1, N, D]
    steps = [
        ("image", _shape(image)),
        ("unfold", _shape(patches.transpose(-1, -2))),
        ("transpose", _shape(patches)),
        ("matmul", _shape(tokens_unfold)),
        ("kernel", _shape(kernel)),
        ("conv", _shape(feature_map)),
        ("reshape", (B, D, grid_h * grid_w)),
        ("transpose to tokens", _shape(tokens_conv)),
    ]
    agree = torch.allclose(tokens_unfold, tokens_conv, atol=1e-4, rtol=1e-4)
    return PatchPipeline(steps, image, tokens_unfold, agree)


def patch_pipeline_shapes(image_size: int = 8, patch_size: int = 4, in_chans: int = 3,
                          model_dim: int = 8) -> list[tuple[str, Shape]]:
    """The shape after each step of stages 01 and 02, e.g. `("matmul", (1, 4, 8))` for the article's sizes.

    Steps: image `[B, C, H, W]`, unfold `[B, C*P*P, N]`, transpose `[B, N, C*P*P]`, matmul `[B, N, D]`;
    kernel `[D, C, P, P]`, conv `[B, D, H/P, W/P]`, reshape `[B, D, N]`, transpose to tokens `[B, N, D]`.
    Raises the package's `ValueError` when `patch_size` does not divide `image_size`.
    """
    return patch_pipeline(image_size, patch_size, in_chans, model_dim).steps


class TokenPipeline(NamedTuple):
    """What the token explorer shows: each step's shape, the position table, and the error if any."""

    steps: list[tuple[str, Shape]]  # (step, shape) in order; no "add" step when the table is too short
    position_table: torch.Tensor    # [max_num_token, D]
    error: str | None               # the package's message when the sequence is longer than the table


# what the token explorer's table shows for each step of stages 03 and 04
TOKEN_STEPS = _steps("""
patch tokens   |    | patch_tokens                                         | [B, N, D]
cls_token      | 03 | cls_token = nn.Parameter(torch.zeros(1, 1, D))       | [1, 1, D]
expand         | 03 | cls_tokens = cls_token.expand(B, -1, -1)             | [B, 1, D]
cat            | 03 | tokens = torch.cat([cls_tokens, patch_tokens], dim=1) | [B, N+1, D]
position table | 04 | position_table = torch.randn(max_num_token, D)       | [max_num_token, D]
slice          | 04 | rows = position_table[:L]                            | [L, D]
tile           | 04 | position_embedding = torch.tile(rows, (B, 1, 1))     | [B, L, D]
add            | 04 | tokens = tokens + position_embedding                 | [B, L, D]
""")


def token_pipeline(batch_size: int = 1, num_patches: int = 4, model_dim: int = 8, max_num_token: int = 16,
                   seed: int = 0) -> TokenPipeline:
    """Run stages 03 and 04 of the package on random patch tokens and record the shape after every step.

    Args:
        batch_size: `B`.
        num_patches: `N`, patch tokens per image; the sequence has `L = N + 1` tokens.
        model_dim: `D`.
        max_num_token: rows of the position table.
        seed: seed of the random tokens and table (the global RNG is left alone).

    Returns:
        A `TokenPipeline`. When `L > max_num_token`, `position_table[:L]` quietly returns only
        `max_num_token` rows, and `error` holds the message `add_position_embedding` raises.
    """
    for value, name in ((batch_size, "batch_size"), (num_patches, "num_patches"), (model_dim, "model_dim"),
                        (max_num_token, "max_num_token")):
        _validate.positive_int(value, name)
    generator = torch.Generator().manual_seed(seed)
    patch_tokens = torch.randn(batch_size, num_patches, model_dim, generator=generator)  # [B, N, D]
    cls_token = torch.randn(1, 1, model_dim, generator=generator)  # [1, 1, D]
    position_table = torch.randn(max_num_token, model_dim, generator=generator)  # [max_num_token, D]
    tokens = prepend_cls_token(patch_tokens, cls_token)  # [B, L, D]
    L = tokens.shape[1]
    sliced = position_table[:L]  # [min(L, max_num_token), D]
    tiled = torch.tile(sliced, (batch_size, 1, 1))  # [B, min(L, max_num_token), D]
    steps = [
        ("patch tokens", _shape(patch_tokens)),
        ("cls_token", _shape(cls_token)),
        ("expand", _shape(cls_token.expand(batch_size, -1, -1))),
        ("cat", _shape(tokens)),
        ("position table", _shape(position_table)),
        ("slice", _shape(sliced)),
        ("tile", _shape(tiled)),
    ]
    try:
        positioned = add_position_embedding(tokens, position_table, mode="tile")  # [B, L, D]
    except ValueError as error:
        return TokenPipeline(steps, position_table, str(error))
    steps.append(("add", _shape(positioned)))
    return TokenPipeline(steps, position_table, None)


def token_pipeline_shapes(batch_size: int = 1, num_patches: int = 4, model_dim: int = 8,
                          max_num_token: int = 16) -> list[tuple[str, Shape]]:
    """The shape after each step of stages 03 and 04, e.g. `("cat", (1, 5, 8))` for the article's sizes.

    Raises the package's `ValueError` when the sequence (`num_patches + 1` tokens) is longer than the table.
    """
    pipeline = token_pipeline(batch_size, num_patches, model_dim, max_num_token)
    if pipeline.error:
        raise InputValueError(pipeline.error)
    return pipeline.steps


# the shipped checkpoint the attention explorer shows (notebooks 05 and 08)
ATTENTION_CHECKPOINT = "mnist"


@functools.lru_cache(maxsize=1)
def trained_attention_model() -> ViT | None:
    """The trained `mnist` model shipped in `vitsteps/checkpoints/mnist.*`, or None when this installation holds
    none. A checkpoint that is there but cannot be read raises: the explorer never falls back to random weights
    without saying so."""
    from ...train import load_pretrained, shipped_checkpoints

    if ATTENTION_CHECKPOINT not in shipped_checkpoints():
        return None
    model, _ = load_pretrained(ATTENTION_CHECKPOINT)
    return model.eval()


def attention_base_config() -> ViTConfig:
    """The configuration the attention explorer starts from: the shipped `mnist` model's, else the preset's."""
    trained = trained_attention_model()
    return trained.config if trained is not None else PRESETS[ATTENTION_CHECKPOINT]


def _check_heads_and_depth(num_heads: object, depth: object) -> ViTConfig:
    """The base configuration with these heads and depth (the package's own checks say what is wrong)."""
    _validate.positive_int(num_heads, "num_heads")
    _validate.positive_int(depth, "depth")
    return dataclasses.replace(attention_base_config(), num_heads=num_heads, depth=depth)


def attention_model_note(num_heads: int, depth: int) -> tuple[bool, str]:
    """Which model the attention explorer shows for these heads and depth, in words.

    Args:
        num_heads: heads `h`; must divide the model's embed_dim (64 in the `mnist` preset).
        depth: number of blocks.

    Returns:
        `(trained, note)`: True and a description of the shipped model when it has these heads and depth;
        False and a note that says the model is untrained, why, and how to get the trained one otherwise.
    """
    config = _check_heads_and_depth(num_heads, depth)
    trained = trained_attention_model()
    shape = f"{depth} blocks of {num_heads} heads, D={config.embed_dim}, d=D/h={config.embed_dim // num_heads}"
    if trained is None:
        return False, (f"UNTRAINED: this installation holds no trained {ATTENTION_CHECKPOINT} model "
                       f"(vitsteps/checkpoints/{ATTENTION_CHECKPOINT}.pt; `make results` writes it). These are "
                       f"random weights (seed 0), {shape}: their attention is close to uniform.")
    base = trained.config
    if (base.num_heads, base.depth) == (num_heads, depth):
        return True, (f"the trained {ATTENTION_CHECKPOINT} model shipped with vitsteps "
                      f"(vitsteps/checkpoints/{ATTENTION_CHECKPOINT}): {shape}")
    return False, (f"UNTRAINED: the trained {ATTENTION_CHECKPOINT} model has {base.num_heads} heads and {base.depth} "
                   f"blocks; {num_heads} heads and {depth} blocks make a new model with random weights (seed 0), "
                   f"never trained: its attention is close to uniform. Set heads to {base.num_heads} and blocks to "
                   f"{base.depth} to see the trained model.")


@functools.lru_cache(maxsize=8)
def _attention_model(num_heads: int, depth: int) -> tuple[ViT, bool]:
    """`(model, trained)`: the trained `mnist` model if it has these heads and depth, else a seeded new one."""
    trained = trained_attention_model()
    if trained is not None and (trained.config.num_heads, trained.config.depth) == (num_heads, depth):
        return trained, True
    config = dataclasses.replace(attention_base_config(), num_heads=num_heads, depth=depth)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = ViT(config)
    return model.eval(), False


def explorer_digit(digit: int = 3) -> torch.Tensor:
    """The digit the attention explorer shows: the first MNIST test image of class `digit`, `[1, 1, 28, 28]`."""
    return mnist_image(digit)  # [1, 1, 28, 28]


@functools.lru_cache(maxsize=32)
def _attention_maps(num_heads: int, depth: int, digit: int) -> tuple[torch.Tensor, bool]:
    model, trained = _attention_model(num_heads, depth)
    with torch.no_grad():
        maps = model.attention_maps(explorer_digit(digit))  # depth x [1, h, L, L]
    return torch.cat(maps), trained  # [depth, h, L, L]


def attention_maps_for_digit(num_heads: int = 4, depth: int = 6, digit: int = 3) -> tuple[torch.Tensor, bool]:
    """Attention weights of every block and head of the `mnist` ViT looking at one 28x28 digit.

    The model is the trained `mnist` checkpoint when one is shipped and has these `num_heads` and `depth`;
    otherwise the same configuration (the checkpoint's, else the `mnist` preset's) with these values,
    initialised with seed 0: untrained, its attention is close to uniform, and `trained` says so
    (`attention_model_note` says it in words).

    Args:
        num_heads: heads `h`; must divide the model's embed_dim (64 in the `mnist` preset).
        depth: number of blocks.
        digit: which digit to show it, 0 to 9 (the first MNIST test image of that class).

    Returns:
        `([depth, h, L, L] weights, trained)`; each row sums to 1. For the `mnist` preset `L = 50`: the CLS
        token and a 7x7 grid of 4x4 patches.
    """
    _check_heads_and_depth(num_heads, depth)
    _validate.int_in(digit, "digit", 0, 9, "pass e.g. 3")
    maps, trained = _attention_maps(num_heads, depth, digit)
    return maps.clone(), trained  # [depth, h, L, L]


def attention_row(num_heads: int, depth: int, layer: int, head: int, query: int, digit: int = 3) -> torch.Tensor:
    """Where token `query` looks in block `layer`, head `head`: its `[L]` attention weights (CLS first).

    Args:
        num_heads, depth, digit: the model and image, as in `attention_maps_for_digit`.
        layer: block index, 0 to `depth - 1`.
        head: head index, 0 to `num_heads - 1`.
        query: token index, 0 for CLS, `n + 1` for patch `n`.
    """
    maps, _ = attention_maps_for_digit(num_heads, depth, digit)
    _, _, L, _ = maps.shape
    for value, name, count, hint in ((layer, "layer", depth, "blocks, counted from 0"),
                                     (head, "head", num_heads, "heads, counted from 0"),
                                     (query, "query", L, "tokens; 0 is CLS, n + 1 is patch n")):
        _validate.int_in(value, name, 0, count - 1, f"there are {count} {hint}")
    return maps[layer, head, query]  # [L]


@functools.lru_cache(maxsize=64)
def _counted_parameters(config: ViTConfig) -> int:
    """Parameters of a ViT built on the meta device: real modules, shapes only, no memory and no init cost."""
    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        model = ViT(config)
    return count_parameters(model)


@dataclasses.dataclass(frozen=True)
class ModelStats:
    """Sizes and costs of one ViT configuration."""

    config: ViTConfig
    params_by_part: dict[str, int]  # parameter_formula(config): on paper, part by part, with "total"
    params_counted: int             # the same, counted in a ViT built on the meta device
    flops_by_part: dict[str, int]   # vit_flops(config), with "total"

    @property
    def seq_len(self) -> int:
        """Tokens in the encoder, `L = N + 1`."""
        return self.config.seq_len

    @property
    def params_formula(self) -> int:
        """Total parameters by the formula."""
        return self.params_by_part["total"]

    @property
    def flops(self) -> int:
        """FLOPs per image (2 per multiply-add)."""
        return self.flops_by_part["total"]


def model_stats(depth: int = 12, embed_dim: int = 768, num_heads: int = 12, mlp_ratio: float = 4.0,
                patch_size: int = 16, img_size: int = 224, in_chans: int = 3, num_classes: int = 1000) -> ModelStats:
    """Sequence length, parameters (formula and count) and FLOPs of a ViT; defaults are ViT-B/16.

    Raises the package's `ValueError` for a configuration that cannot be built (a patch size that does not
    divide the image, embed_dim not divisible by num_heads, ...).
    """
    config = ViTConfig(img_size=img_size, patch_size=patch_size, in_chans=in_chans, num_classes=num_classes,
                       embed_dim=embed_dim, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio)
    return ModelStats(config, parameter_formula(config), _counted_parameters(config), vit_flops(config))


