"""Interactive explorers for the notebooks: move a slider, see the shapes and the picture change.

Each explorer is one call in a notebook cell and returns an ipywidgets widget:

    patch_explorer()      01, 02  image -> patches -> tokens, by unfold and by conv
    token_explorer()      03, 04  CLS token in front, position table sliced and tiled
    attention_explorer()  05      where one token looks, head by head, layer by layer, on a digit
    model_calculator()    06      sequence length, parameters (formula and count), FLOPs, the paper's presets

Under each is a pure function that does the work with the package's own stages, testable without a browser:
`patch_pipeline_shapes`, `token_pipeline_shapes`, `attention_maps_for_digit` / `attention_row`, `model_stats`.
A combination that cannot work (a patch size that does not divide the image, a sequence longer than the
position table, embed_dim not divisible by num_heads) shows the package's own error message in the widget,
never a traceback. Figures are rendered to PNG and closed at once, so none pile up.

Shape legend: B batch, C channels, H W image, P patch side, N patches, L = N + 1 tokens, D model dim, h heads.
"""
from __future__ import annotations

import dataclasses
import functools
import html
import io
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NamedTuple

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from . import _validate, viz
from .model import PRESETS, ViT, ViTConfig, count_parameters, parameter_formula
from .patches import image_to_patches, patch_embed_conv, patch_embed_unfold, weight_to_kernel
from .tokens import add_position_embedding, prepend_cls_token

Shape = tuple[int, ...]
FigureMaker = Callable[[Figure | None], Figure]
_DPI = 96  # drawing time hardly depends on it; text stays legible

# ---------------------------------------------------------------------------------------------- data


@functools.lru_cache(maxsize=1)
def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's bundled digits (no download): `[1797, 1, 8, 8]` images in [0, 1] and `[1797]` labels."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0  # [n, 1, 8, 8]
    return images, torch.as_tensor(bunch.target)


def digit_image(digit: int = 3) -> torch.Tensor:
    """The first image of class `digit` in scikit-learn's digits, `[1, 1, 8, 8]` in [0, 1]."""
    if isinstance(digit, bool) or not isinstance(digit, int) or not 0 <= digit <= 9:
        raise ValueError(f"digit must be an int from 0 to 9, got {digit!r}; pass e.g. 3.")
    images, labels = _digits()
    index = int(torch.nonzero(labels == digit)[0])
    return images[index:index + 1].clone()  # [1, 1, 8, 8]


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


# ---------------------------------------------------------------------------------- pure functions


def _shape(tensor: torch.Tensor) -> Shape:
    return tuple(tensor.shape)


def _shape_text(shape: Shape) -> str:
    return "[" + ", ".join(str(size) for size in shape) + "]"


class PatchPipeline(NamedTuple):
    """What the patch explorer shows: each step's shape, the image and its patch tokens."""

    steps: list[tuple[str, Shape]]  # (step, shape) in order, both routes
    image: torch.Tensor             # [1, C, H, W]
    patch_tokens: torch.Tensor      # [1, N, D], the same by both routes
    routes_agree: bool              # unfold @ weight equals the strided conv


# step -> (route, code, symbolic shape), for the table the explorer shows
PATCH_STEPS: dict[str, tuple[str, str, str]] = {
    "image": ("", "image", "[B, C, H, W]"),
    "unfold": ("01", "patches = F.unfold(image, P, stride=P)", "[B, C*P*P, N]"),
    "transpose": ("01", "patches = patches.transpose(-1, -2)", "[B, N, C*P*P]"),
    "matmul": ("01", "tokens = patches @ weight", "[B, N, D]"),
    "kernel": ("02", "kernel = weight.T.reshape(-1, C, P, P)", "[D, C, P, P]"),
    "conv": ("02", "out = F.conv2d(image, kernel, stride=P)", "[B, D, H/P, W/P]"),
    "reshape": ("02", "out = out.reshape(B, D, N)", "[B, D, N]"),
    "transpose to tokens": ("02", "tokens = out.transpose(-1, -2)", "[B, N, D]"),
}


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
        raise ValueError(f"patch_size={patch_size} is larger than the image ({image_size}x{image_size}); "
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


TOKEN_STEPS: dict[str, tuple[str, str, str]] = {
    "patch tokens": ("", "patch_tokens", "[B, N, D]"),
    "cls_token": ("03", "cls_token = nn.Parameter(torch.zeros(1, 1, D))", "[1, 1, D]"),
    "expand": ("03", "cls_tokens = cls_token.expand(B, -1, -1)", "[B, 1, D]"),
    "cat": ("03", "tokens = torch.cat([cls_tokens, patch_tokens], dim=1)", "[B, N+1, D]"),
    "position table": ("04", "position_table = torch.randn(max_num_token, D)", "[max_num_token, D]"),
    "slice": ("04", "rows = position_table[:L]", "[L, D]"),
    "tile": ("04", "position_embedding = torch.tile(rows, (B, 1, 1))", "[B, L, D]"),
    "add": ("04", "tokens = tokens + position_embedding", "[B, L, D]"),
}


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
        raise ValueError(pipeline.error)
    return pipeline.steps


@functools.lru_cache(maxsize=1)
def _trained_digits_model() -> ViT | None:
    """The trained digits model shipped in `vitsteps/checkpoints/digits.*`, or None if there is none."""
    try:
        from .train import load_pretrained

        model, _ = load_pretrained("digits")
    except Exception:  # no checkpoint yet, or one this version cannot read: fall back to a seeded model
        return None
    return model.eval()


def _attention_base_config() -> ViTConfig:
    trained = _trained_digits_model()
    return trained.config if trained is not None else PRESETS["digits"]


@functools.lru_cache(maxsize=8)
def _attention_model(num_heads: int, depth: int) -> tuple[ViT, bool]:
    """`(model, trained)`: the trained digits model if it has these heads and depth, else a seeded new one."""
    trained = _trained_digits_model()
    if trained is not None and (trained.config.num_heads, trained.config.depth) == (num_heads, depth):
        return trained, True
    config = dataclasses.replace(_attention_base_config(), num_heads=num_heads, depth=depth)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = ViT(config)
    return model.eval(), False


@functools.lru_cache(maxsize=32)
def _attention_maps(num_heads: int, depth: int, digit: int) -> tuple[torch.Tensor, bool]:
    model, trained = _attention_model(num_heads, depth)
    image = digit_image(digit)  # [1, 1, 8, 8]
    maps = model.attention_maps(image)  # depth x [1, h, L, L]
    return torch.cat(maps), trained  # [depth, h, L, L]


def attention_maps_for_digit(num_heads: int = 4, depth: int = 4, digit: int = 3) -> tuple[torch.Tensor, bool]:
    """Attention weights of every block and head of a digits ViT looking at one digit.

    The model is the trained `digits` checkpoint when one is shipped and has these `num_heads` and `depth`;
    otherwise the same configuration (the checkpoint's, else the `digits` preset's) with these values,
    initialised with seed 0: untrained, its attention is close to uniform.

    Args:
        num_heads: heads `h`; must divide the model's embed_dim (64 in the `digits` preset).
        depth: number of blocks.
        digit: which digit to show it, 0 to 9.

    Returns:
        `([depth, h, L, L] weights, trained)`; each row sums to 1. For the `digits` preset `L = 5`: the CLS
        token and 4 patches of 4x4.
    """
    dataclasses.replace(_attention_base_config(), num_heads=num_heads, depth=depth)  # the package's own checks
    digit_image(digit)
    maps, trained = _attention_maps(num_heads, depth, digit)
    return maps.clone(), trained


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
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < count:
            raise ValueError(f"{name} must be an int from 0 to {count - 1} (there are {count} {hint}), "
                             f"got {value!r}.")
    return maps[layer, head, query]  # [L]


def vit_flops(config: ViTConfig) -> dict[str, int]:
    """Floating-point operations for one image through a ViT, part by part, plus `"total"`.

    A multiply-add counts as 2 FLOPs (as `torch.utils.flop_counter` counts); normalisations, softmax, GELU and
    bias additions are left out. Papers often quote multiply-adds instead: half of these numbers.
    """
    if not isinstance(config, ViTConfig):
        raise TypeError(f"config must be a ViTConfig, got {type(config).__name__}; use get_config('vit_base').")
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


# ------------------------------------------------------------------------------------ widget plumbing


def _png(fig: Figure) -> bytes:
    """Render `fig` to PNG bytes. The figure is closed in pyplot (no pile-up, no second display by the
    notebook) but stays usable, so the next update can redraw it in place."""
    plt.close(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI)
    return buffer.getvalue()


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]], keys: list[str] | None = None) -> str:
    """An HTML table; cell text is escaped, each row may carry a `data-step` key for tests to find it."""
    cells = "".join(f"<th style='text-align:left;padding:1px 12px 1px 0;white-space:nowrap'>{html.escape(h)}</th>"
                    for h in header)
    body = []
    for index, row in enumerate(rows):
        key = f" data-step='{html.escape(keys[index])}'" if keys else ""
        tds = "".join(f"<td style='padding:1px 12px 1px 0;white-space:nowrap'>{cell}</td>" for cell in row)
        body.append(f"<tr{key}>{tds}</tr>")
    return f"<table class='vitsteps-table' style='font-size:90%'><tr>{cells}</tr>{''.join(body)}</table>"


def _code(text: str) -> str:
    return f"<code>{html.escape(text)}</code>"


def _message(text: str, ok: bool = False) -> str:
    colour = "#1a7f37" if ok else "#b3261e"
    return (f"<div class='vitsteps-{'ok' if ok else 'problem'}' style='color:{colour};white-space:normal'>"
            f"{html.escape(text)}</div>")


class Explorer(widgets.VBox):
    """Controls, a results table, a message line and a figure; any control change recomputes and redraws.

    Attributes:
        controls: name -> control widget; set `.value` from Python to move it.
        table: HTML results (shapes, counts).
        message: HTML line: a check that passed, or why the current choice cannot work.
        figure: PNG image of the current figure.
        error: the current problem (the package's message), or None.
        redraws: how many times the figure was drawn.
        timings: seconds spent in the last update, `{"compute": ..., "draw": ...}` (read by `make bench`).
    """

    def __init__(self, controls: dict[str, widgets.ValueWidget], css_class: str,
                 extra: list[widgets.Widget] | None = None) -> None:
        self.controls = controls
        self.table = widgets.HTML(layout=widgets.Layout(margin="0 0 0 16px"))
        self.table.add_class("vitsteps-results")
        self.message = widgets.HTML()
        self.message.add_class("vitsteps-message")
        # natural size (no stretching to the cell's width), shrunk only when the cell is narrower
        self.figure = widgets.Image(format="png", layout=widgets.Layout(align_self="flex-start", max_width="100%",
                                                                        height="auto"))
        self.figure.add_class("vitsteps-figure")
        self.error: str | None = None
        self.redraws = 0
        self.timings = {"compute": 0.0, "draw": 0.0}
        self._paused = False
        self._fig: Figure | None = None
        for name, control in controls.items():
            control.add_class(f"vitsteps-control-{name.replace('_', '-')}")
        panel = widgets.VBox([*controls.values(), *(extra or [])], layout=widgets.Layout(min_width="310px"))
        top = widgets.HBox([panel, self.table], layout=widgets.Layout(flex_flow="row wrap"))
        super().__init__([top, self.message, self.figure])
        self.add_class("vitsteps-explorer")
        self.add_class(css_class)
        for control in controls.values():
            control.observe(self._on_change, names="value")
        self.update()

    @contextmanager
    def _hold(self) -> Iterator[None]:
        """Change controls without a redraw for each one."""
        self._paused, was_paused = True, self._paused
        try:
            yield
        finally:
            self._paused = was_paused

    def set(self, **values: object) -> None:
        """Set several controls at once, then update once, e.g. `explorer.set(patch_size=2, model_dim=16)`."""
        unknown = set(values) - set(self.controls)
        if unknown:
            raise ValueError(f"no control named {sorted(unknown)}; the controls are {sorted(self.controls)}.")
        with self._hold():
            for name, value in values.items():
                self.controls[name].value = value
        self.update()

    def _on_change(self, change: dict) -> None:
        if not self._paused:
            self.update()

    def values(self) -> dict[str, object]:
        """Current value of every control."""
        return {name: control.value for name, control in self.controls.items()}

    def __repr__(self) -> str:
        settings = ", ".join(f"{name}={value!r}" for name, value in self.values().items())
        return f"{type(self).__name__}({settings})"

    def update(self) -> None:
        """Recompute from the controls and redraw; a bad combination shows its message instead."""
        start = time.perf_counter()
        try:
            table, message, make_figure, error = self._compute(**self.values())
        except (ValueError, TypeError) as problem:
            self.error = str(problem)
            kept = " (The picture still shows the last choice that worked.)" if self.redraws else ""
            self.message.value = _message(f"{problem}{kept}")
            self.table.value = ""
            return
        computed = time.perf_counter()
        self.error = error
        self.table.value = table
        self.message.value = _message(error) if error else _message(message, ok=True) if message else ""
        if make_figure is not None:
            self._fig = make_figure(self._fig)
            self.figure.value = _png(self._fig)
            self.redraws += 1
        self.timings = {"compute": computed - start, "draw": time.perf_counter() - computed}

    def _compute(self, **values: object) -> tuple[str, str, FigureMaker | None, str | None]:
        """`(table html, ok message, figure maker, error message)` for the current values; the figure maker
        draws into the figure it is given (the previous one, or None the first time) and returns it."""
        raise NotImplementedError


def _slider_value(value: object, name: str, low: int, high: int, step: int = 1) -> int:
    """`value` if a slider from `low` to `high` in steps of `step` can show it, else raise naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r} of type {type(value).__name__}; pass e.g. {low}.")
    if not low <= value <= high or (value - low) % step:
        steps = f" in steps of {step}" if step > 1 else ""
        raise ValueError(f"{name} must be from {low} to {high}{steps} (the slider's range), got {value}; "
                         f"pick a value in that range.")
    return value


def _int_slider(description: str, value: int, low: int, high: int, step: int = 1,
                continuous: bool = False) -> widgets.IntSlider:
    return widgets.IntSlider(value=value, min=low, max=high, step=step, description=description,
                             continuous_update=continuous, style={"description_width": "110px"},
                             layout=widgets.Layout(width="300px"))


# ---------------------------------------------------------------------------------------- explorers


class PatchExplorer(Explorer):
    """Stages 01 and 02: image size, patch size, channels and model dim -> patches, tokens and every shape."""

    def __init__(self, image_size: int = 8, patch_size: int = 4, in_chans: int = 3, model_dim: int = 8,
                 digit: int = 3) -> None:
        for value, name, low, high, step in ((image_size, "image_size", 4, 32, 4), (patch_size, "patch_size", 1, 16, 1),
                                             (model_dim, "model_dim", 1, 64, 1)):
            _slider_value(value, name, low, high, step)
        if in_chans not in (1, 3) or isinstance(in_chans, bool):
            raise ValueError(f"in_chans must be 1 (the digit) or 3 (a colour image), got {in_chans!r}.")
        digit_image(digit)
        self.digit = digit
        controls = {
            "image_size": _int_slider("image size H=W", image_size, 4, 32, step=4),
            "patch_size": _int_slider("patch size P", patch_size, 1, 16),
            "in_chans": widgets.ToggleButtons(options=[("1 (digit)", 1), ("3 (colour)", 3)], value=in_chans,
                                              description="channels C", style={"description_width": "110px",
                                                                               "button_width": "90px"}),
            "model_dim": _int_slider("model dim D", model_dim, 1, 64),
        }
        super().__init__(controls, "vitsteps-patch-explorer")

    def _compute(self, image_size: int, patch_size: int, in_chans: int, model_dim: int
                 ) -> tuple[str, str, FigureMaker, None]:
        pipeline = patch_pipeline(image_size, patch_size, in_chans, model_dim, self.digit)
        rows = [(html.escape(PATCH_STEPS[step][0]), _code(PATCH_STEPS[step][1]), _code(PATCH_STEPS[step][2]),
                 f"<b>{_shape_text(shape)}</b>") for step, shape in pipeline.steps]
        keys = [step for step, _ in pipeline.steps]
        N = (image_size // patch_size) ** 2
        table = _table(("stage", "code", "shape", "this example"), rows, keys)
        message = (f"N = (H/P)^2 = ({image_size}/{patch_size})^2 = {N} patches of C*P*P = "
                   f"{in_chans * patch_size ** 2} values; unfold @ weight equals conv: {pipeline.routes_agree}")

        def make_figure(fig: Figure | None) -> Figure:
            return viz.plot_patches_to_tokens(pipeline.image[0], patch_size, pipeline.patch_tokens[0], fig=fig)

        return table, message, make_figure, None


class TokenExplorer(Explorer):
    """Stages 03 and 04: batch, patches, model dim and table length -> CLS concat, table slice and tile."""

    def __init__(self, batch_size: int = 1, num_patches: int = 4, model_dim: int = 8,
                 max_num_token: int = 16) -> None:
        for value, name, low, high in ((batch_size, "batch_size", 1, 8), (num_patches, "num_patches", 1, 64),
                                       (model_dim, "model_dim", 1, 64), (max_num_token, "max_num_token", 1, 80)):
            _slider_value(value, name, low, high)
        controls = {
            "batch_size": _int_slider("batch size B", batch_size, 1, 8),
            "num_patches": _int_slider("patches N", num_patches, 1, 64),
            "model_dim": _int_slider("model dim D", model_dim, 1, 64),
            "max_num_token": _int_slider("max_num_token", max_num_token, 1, 80),
        }
        super().__init__(controls, "vitsteps-token-explorer")

    def _compute(self, batch_size: int, num_patches: int, model_dim: int, max_num_token: int
                 ) -> tuple[str, str, FigureMaker, str | None]:
        pipeline = token_pipeline(batch_size, num_patches, model_dim, max_num_token)
        L = num_patches + 1
        rows = []
        for step, shape in pipeline.steps:
            note = ""
            if step == "slice" and shape[0] < L:
                note = f" <span style='color:#b3261e'>only {shape[0]} of the {L} rows needed</span>"
            rows.append((html.escape(TOKEN_STEPS[step][0]), _code(TOKEN_STEPS[step][1]),
                         _code(TOKEN_STEPS[step][2]), f"<b>{_shape_text(shape)}</b>{note}"))
        keys = [step for step, _ in pipeline.steps]
        if pipeline.error:
            rows.append((html.escape(TOKEN_STEPS["add"][0]), _code(TOKEN_STEPS["add"][1]),
                         _code(TOKEN_STEPS["add"][2]), "<b style='color:#b3261e'>ValueError</b>"))
            keys.append("add")
        table = _table(("stage", "code", "shape", "this example"), rows, keys)
        message = f"L = N + 1 = {L} tokens fit in a table of {max_num_token} rows"

        def make_figure(fig: Figure | None) -> Figure:
            return viz.plot_token_assembly(batch_size, num_patches, pipeline.position_table, fig=fig)

        return table, message, make_figure, pipeline.error


class AttentionExplorer(Explorer):
    """Stage 05: heads, depth, layer, head and query token -> where that token looks on a digit."""

    def __init__(self, num_heads: int | None = None, depth: int | None = None, layer: int = 0, head: int = 0,
                 query: int = 0, digit: int = 3) -> None:
        base = _attention_base_config()
        heads = sorted({h for h in (1, 2, 4, 8, 16) if base.embed_dim % h == 0} | {base.num_heads})
        num_heads = base.num_heads if num_heads is None else num_heads
        depth = base.depth if depth is None else depth
        max_depth = max(6, base.depth)
        if num_heads not in heads or isinstance(num_heads, bool):
            raise ValueError(f"num_heads must be one of {heads} (they divide embed_dim={base.embed_dim}), "
                             f"got {num_heads!r}.")
        _slider_value(depth, "depth", 1, max_depth)
        for value, name, high in ((layer, "layer", depth - 1), (head, "head", num_heads - 1),
                                  (query, "query", base.num_patches)):
            _slider_value(value, name, 0, high)
        digit_image(digit)
        controls = {
            "num_heads": widgets.SelectionSlider(options=heads, value=num_heads, description="heads h",
                                                 continuous_update=False, style={"description_width": "110px"},
                                                 layout=widgets.Layout(width="300px")),
            "depth": _int_slider("blocks (depth)", depth, 1, max_depth),
            "layer": _int_slider("layer", layer, 0, depth - 1),
            "head": _int_slider("head", head, 0, num_heads - 1),
            "query": _int_slider("query (0 = CLS)", query, 0, base.num_patches),
            "digit": _int_slider("digit", digit, 0, 9),
        }
        self.model_note = widgets.HTML()
        super().__init__(controls, "vitsteps-attention-explorer", extra=[self.model_note])

    def _on_change(self, change: dict) -> None:
        """Keep layer and head inside the model (their sliders end at depth - 1 and num_heads - 1), then update."""
        if self._paused:
            return
        with self._hold():
            self.controls["layer"].max = self.controls["depth"].value - 1
            self.controls["head"].max = self.controls["num_heads"].value - 1
        self.update()

    def _compute(self, num_heads: int, depth: int, layer: int, head: int, query: int, digit: int
                 ) -> tuple[str, str, FigureMaker, None]:
        maps, trained = attention_maps_for_digit(num_heads, depth, digit)
        weights = attention_row(num_heads, depth, layer, head, query, digit)  # [L]
        L = weights.shape[0]
        config = _attention_base_config()
        weights_note = ("trained digits model (vitsteps/checkpoints/digits)" if trained
                        else "untrained model, seed 0: its attention is close to uniform")
        self.model_note.value = (f"<small>{weights_note}; D={config.embed_dim}, "
                                 f"d=D/h={config.embed_dim // num_heads}</small>")
        top = torch.topk(weights[1:], k=min(3, L - 1))
        strongest = ", ".join(f"patch {int(index)} ({float(value):.2f})"
                              for value, index in zip(top.values, top.indices, strict=True))
        rows = [
            ("attention maps", _code("model.attention_maps(image)"),
             f"{depth} x <b>{_shape_text((1, num_heads, L, L))}</b>"),
            ("this layer and head", _code("maps[layer][0, head]"), f"<b>{_shape_text((L, L))}</b>"),
            ("the query's row", _code("weights[query]"),
             f"<b>{_shape_text((L,))}</b>, sums to {float(weights.sum()):.2f}"),
            ("weight on CLS", "", f"{float(weights[0]):.3f}"),
            ("strongest patches", "", strongest),
        ]
        table = _table(("what", "code", "value"), rows)
        title = f"layer {layer}, head {head} of {num_heads} ({'trained' if trained else 'untrained'})"

        def make_figure(fig: Figure | None) -> Figure:
            return viz.plot_attention_on_image(digit_image(digit)[0], maps[layer, head], config.patch_size, query,
                                               title=title, fig=fig)

        return table, "", make_figure, None


# the paper's Table 1 and DeiT's Ti/S: button label -> preset name
CALCULATOR_PRESETS = {"ViT-Ti/16": "vit_tiny", "ViT-S/16": "vit_small", "ViT-B/16": "vit_base",
                      "ViT-L/16": "vit_large", "ViT-H/14": "vit_huge"}


def _count(value: int) -> str:
    return f"{value:,}"


class ModelCalculator(Explorer):
    """Stage 06: depth, width, heads, MLP ratio, patch and image size -> length, parameters, FLOPs."""

    def __init__(self, preset: str = "vit_base") -> None:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}.")
        config = PRESETS[preset]
        controls = {
            "depth": _int_slider("depth", config.depth, 1, 48),
            "embed_dim": _int_slider("embed_dim D", config.embed_dim, 8, 2048, step=8),
            "num_heads": _int_slider("num_heads h", config.num_heads, 1, 32),
            "mlp_ratio": widgets.FloatSlider(value=config.mlp_ratio, min=0.5, max=8.0, step=0.5,
                                             description="mlp_ratio", continuous_update=False,
                                             style={"description_width": "110px"},
                                             layout=widgets.Layout(width="300px")),
            "patch_size": _int_slider("patch_size P", config.patch_size, 1, 32),
            "img_size": _int_slider("img_size H=W", config.img_size, 8, 512, step=8),
            "in_chans": widgets.Dropdown(options=[1, 3], value=config.in_chans, description="in_chans C",
                                         style={"description_width": "110px"}, layout=widgets.Layout(width="300px")),
            "num_classes": widgets.BoundedIntText(value=config.num_classes, min=0, max=100_000,
                                                  description="num_classes K", style={"description_width": "110px"},
                                                  layout=widgets.Layout(width="300px")),
        }
        self.buttons = []
        for label, name in CALCULATOR_PRESETS.items():
            button = widgets.Button(description=label, layout=widgets.Layout(width="auto"),
                                    tooltip=f"set the sliders to {name}")
            button.on_click(functools.partial(self._apply_preset, name))
            self.buttons.append(button)
        presets = widgets.HBox(self.buttons, layout=widgets.Layout(flex_flow="row wrap", max_width="310px"))
        super().__init__(controls, "vitsteps-model-calculator", extra=[presets])

    def apply_preset(self, name: str) -> None:
        """Set every control to a preset's values (what its button does), e.g. `"vit_large"`."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}.")
        config = PRESETS[name]
        self.set(**{field: getattr(config, field) for field in self.controls})

    def _apply_preset(self, name: str, button: widgets.Button) -> None:
        self.apply_preset(name)

    def _compute(self, depth: int, embed_dim: int, num_heads: int, mlp_ratio: float, patch_size: int,
                 img_size: int, in_chans: int, num_classes: int
                 ) -> tuple[str, str, FigureMaker, None]:
        stats = model_stats(depth, embed_dim, num_heads, float(mlp_ratio), patch_size, img_size, in_chans,
                            num_classes)
        config = stats.config
        match = stats.params_formula == stats.params_counted
        rows = [
            ("patches N", f"({img_size}/{patch_size})^2", _count(config.num_patches)),
            ("sequence length L", "N + 1", f"<b>{_count(stats.seq_len)}</b>"),
            ("head dim d", f"{embed_dim}/{num_heads}", _count(config.head_dim)),
            ("MLP hidden", f"{embed_dim}*{mlp_ratio:g}", _count(config.mlp_hidden)),
            *((f"&nbsp;&nbsp;{part}", "formula", _count(count)) for part, count in stats.params_by_part.items()
              if part != "total"),
            ("parameters", "formula", f"<b>{_count(stats.params_formula)}</b>"),
            ("parameters", "counted in a built ViT", f"<b>{_count(stats.params_counted)}</b> "
                                                     f"{'(same)' if match else '(DIFFERENT)'}"),
            ("FLOPs per image", "2 per multiply-add", f"<b>{viz._si(stats.flops)}</b> "
                                                      f"({viz._si(stats.flops // 2)} multiply-adds)"),
        ]
        table = _table(("quantity", "how", "value"), rows)
        message = (f"{_count(stats.params_formula)} parameters by the formula, {_count(stats.params_counted)} "
                   f"counted: {'they agree' if match else 'they differ'}")

        def make_figure(fig: Figure | None) -> Figure:
            return viz.plot_cost_breakdown(stats.params_by_part, stats.flops_by_part, fig=fig)

        return table, message, make_figure, None


# ------------------------------------------------------------------------------------ one-call entry points


def patch_explorer(image_size: int = 8, patch_size: int = 4, in_chans: int = 3, model_dim: int = 8,
                   digit: int = 3) -> PatchExplorer:
    """Stages 01-02: cut a digit into patches and embed them; every step's shape, for any sizes you pick.

    Defaults are the original article's: a 3x8x8 image, 4x4 patches, D=8, giving tokens `[1, 4, 8]`.
    """
    return PatchExplorer(image_size, patch_size, in_chans, model_dim, digit)


def token_explorer(batch_size: int = 1, num_patches: int = 4, model_dim: int = 8,
                   max_num_token: int = 16) -> TokenExplorer:
    """Stages 03-04: CLS token in front, position table sliced to the sequence and tiled over the batch.

    Defaults are the original article's: `B=1`, 4 patches, `D=8`, a table of 16 rows, giving `[1, 5, 8]`.
    """
    return TokenExplorer(batch_size, num_patches, model_dim, max_num_token)


def attention_explorer(num_heads: int | None = None, depth: int | None = None, layer: int = 0, head: int = 0,
                       query: int = 0, digit: int = 3) -> AttentionExplorer:
    """Stage 05: a digits ViT's attention, one layer, head and query token at a time, over the digit's patches.

    Heads and depth default to the trained digits checkpoint's when one is shipped (then its trained
    weights are shown), else to the `digits` preset's with seed-0 weights.
    """
    return AttentionExplorer(num_heads, depth, layer, head, query, digit)


def model_calculator(preset: str = "vit_base") -> ModelCalculator:
    """Stage 06: sequence length, parameters (formula against a count) and FLOPs; buttons for ViT-Ti to H."""
    return ModelCalculator(preset)
