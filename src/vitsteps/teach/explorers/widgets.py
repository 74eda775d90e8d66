"""The explorers' ipywidgets wiring: sliders, a results table, a message line and a figure, redrawn on every move.

The numbers come from `compute` and the pictures from `vitsteps.teach.figures`; this module only connects them.
A combination that cannot work shows the package's own error message in the widget, never a traceback.
Figures are rendered to PNG and closed at once, so none pile up.
"""
from __future__ import annotations

import functools
import html
import io
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

from ... import _validate
from ..._validate import InputValueError
from ...data import digit_image
from ...model import PRESETS
from .. import figures
from .compute import (
    PATCH_STEPS,
    TOKEN_STEPS,
    attention_base_config,
    attention_maps_for_digit,
    attention_model_note,
    attention_row,
    explorer_digit,
    model_stats,
    patch_pipeline,
    shape_text,
    token_pipeline,
)

FigureMaker = Callable[[Figure | None], Figure]

_DPI = 96  # drawing time hardly depends on it; text stays legible

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


def _message(text: str, ok: bool = False, kind: str | None = None) -> str:
    """A message line: green when `ok`, else red; its CSS class is `vitsteps-<kind>` (default "ok" or "problem")."""
    colour = "#1a7f37" if ok else "#b3261e"
    kind = kind or ("ok" if ok else "problem")
    return (f"<div class='vitsteps-{kind}' style='color:{colour};white-space:normal'>"
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
            raise InputValueError(f"values must name controls of this explorer, got {sorted(unknown)}; the controls "
                                  f"are {sorted(self.controls)}.")
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
    _validate.int_in(value, name, low, high, "pick a value in the slider's range")
    if (value - low) % step:
        _validate.fail(ValueError, name, f"from {low} to {high} in steps of {step} (the slider's range)", value,
                       f"pick one of {low}, {low + step}, ..., {high}")
    return value


def _int_slider(description: str, value: int, low: int, high: int, step: int = 1,
                continuous: bool = False) -> widgets.IntSlider:
    return widgets.IntSlider(value=value, min=low, max=high, step=step, description=description,
                             continuous_update=continuous, style={"description_width": "110px"},
                             layout=widgets.Layout(width="300px"))


class PatchExplorer(Explorer):
    """Stages 01 and 02: image size, patch size, channels and model dim -> patches, tokens and every shape."""

    def __init__(self, image_size: int = 8, patch_size: int = 4, in_chans: int = 3, model_dim: int = 8,
                 digit: int = 3) -> None:
        for value, name, low, high, step in ((image_size, "image_size", 4, 32, 4), (patch_size, "patch_size", 1, 16, 1),
                                             (model_dim, "model_dim", 1, 64, 1)):
            _slider_value(value, name, low, high, step)
        _validate.one_of(in_chans, "in_chans", (1, 3), "pass 1 (the digit) or 3 (a colour image)")
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
                 f"<b>{shape_text(shape)}</b>") for step, shape in pipeline.steps]
        keys = [step for step, _ in pipeline.steps]
        N = (image_size // patch_size) ** 2
        table = _table(("stage", "code", "shape", "this example"), rows, keys)
        message = (f"N = (H/P)^2 = ({image_size}/{patch_size})^2 = {N} patches of C*P*P = "
                   f"{in_chans * patch_size ** 2} values; unfold @ weight equals conv: {pipeline.routes_agree}")

        def make_figure(fig: Figure | None) -> Figure:
            return figures.plot_patches_to_tokens(pipeline.image[0], patch_size, pipeline.patch_tokens[0], fig=fig)

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
                         _code(TOKEN_STEPS[step][2]), f"<b>{shape_text(shape)}</b>{note}"))
        keys = [step for step, _ in pipeline.steps]
        if pipeline.error:
            rows.append((html.escape(TOKEN_STEPS["add"][0]), _code(TOKEN_STEPS["add"][1]),
                         _code(TOKEN_STEPS["add"][2]), "<b style='color:#b3261e'>ValueError</b>"))
            keys.append("add")
        table = _table(("stage", "code", "shape", "this example"), rows, keys)
        message = f"L = N + 1 = {L} tokens fit in a table of {max_num_token} rows"

        def make_figure(fig: Figure | None) -> Figure:
            return figures.plot_token_assembly(batch_size, num_patches, pipeline.position_table, fig=fig)

        return table, message, make_figure, pipeline.error


class AttentionExplorer(Explorer):
    """Stage 05: heads, depth, layer, head and query token -> where that token looks on a 28x28 digit.

    At the shipped `mnist` model's heads and depth it shows that trained model; any other choice builds an
    untrained model of that shape, and the widget says so in red above the figure and in the figure's title.
    """

    def __init__(self, num_heads: int | None = None, depth: int | None = None, layer: int = 0, head: int = 0,
                 query: int = 0, digit: int = 3) -> None:
        base = attention_base_config()
        heads = sorted({h for h in (1, 2, 4, 8, 16) if base.embed_dim % h == 0} | {base.num_heads})
        num_heads = base.num_heads if num_heads is None else num_heads
        depth = base.depth if depth is None else depth
        max_depth = max(6, base.depth)
        _validate.one_of(num_heads, "num_heads", heads, f"these divide embed_dim={base.embed_dim}")
        _slider_value(depth, "depth", 1, max_depth)
        for value, name, high in ((layer, "layer", depth - 1), (head, "head", num_heads - 1),
                                  (query, "query", base.num_patches), (digit, "digit", 9)):
            _slider_value(value, name, 0, high)
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
        self.model_note.add_class("vitsteps-model-note")
        self.trained = False
        self._untrained_note = ""
        super().__init__(controls, "vitsteps-attention-explorer", extra=[self.model_note])

    def update(self) -> None:
        """Recompute and redraw; for an untrained model the message line above the figure says so, in red."""
        super().update()
        if self.error is None and not self.trained:
            self.message.value = _message(self._untrained_note, kind="untrained")

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
        trained, note = attention_model_note(num_heads, depth)
        maps, _ = attention_maps_for_digit(num_heads, depth, digit)
        weights = attention_row(num_heads, depth, layer, head, query, digit)  # [L]
        L = weights.shape[0]
        self.trained, self._untrained_note = trained, "" if trained else note
        self.model_note.value = (f"<small>{html.escape(note)}</small>" if trained else
                                 "<small style='color:#b3261e'><b>untrained model</b> (see the red line below)</small>")
        top = torch.topk(weights[1:], k=min(3, L - 1))
        strongest = ", ".join(f"patch {int(index)} ({float(value):.2f})"
                              for value, index in zip(top.values, top.indices, strict=True))
        rows = [
            ("attention maps", _code("model.attention_maps(image)"),
             f"{depth} x <b>{shape_text((1, num_heads, L, L))}</b>"),
            ("this layer and head", _code("maps[layer][0, head]"), f"<b>{shape_text((L, L))}</b>"),
            ("the query's row", _code("weights[query]"),
             f"<b>{shape_text((L,))}</b>, sums to {float(weights.sum()):.2f}"),
            ("weight on CLS", "", f"{float(weights[0]):.3f}"),
            ("uniform weight", "1 / L", f"{1 / L:.3f}"),
            ("strongest patches", "", strongest),
        ]
        table = _table(("what", "code", "value"), rows)
        title = (f"layer {layer}, head {head} of {num_heads}: trained model" if trained
                 else f"layer {layer}, head {head} of {num_heads}: UNTRAINED model (random weights)")
        patch_size = attention_base_config().patch_size

        def make_figure(fig: Figure | None) -> Figure:
            return figures.plot_attention_on_image(explorer_digit(digit)[0], maps[layer, head], patch_size, query,
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
        _validate.one_of(preset, "preset", sorted(PRESETS))
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
        _validate.one_of(name, "name", sorted(PRESETS))
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
            ("FLOPs per image", "2 per multiply-add", f"<b>{figures.si_format(stats.flops)}</b> "
                                                      f"({figures.si_format(stats.flops // 2)} multiply-adds)"),
        ]
        table = _table(("quantity", "how", "value"), rows)
        message = (f"{_count(stats.params_formula)} parameters by the formula, {_count(stats.params_counted)} "
                   f"counted: {'they agree' if match else 'they differ'}")

        def make_figure(fig: Figure | None) -> Figure:
            return figures.plot_cost_breakdown(stats.params_by_part, stats.flops_by_part, fig=fig)

        return table, message, make_figure, None


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
    """Stages 05 and 08: the `mnist` ViT's attention, one layer, head and query token at a time, over a 28x28
    digit's 7x7 patches.

    Heads and depth default to the shipped trained `mnist` model's (4 and 6), whose weights are then shown.
    Any other heads or depth, or an installation without that checkpoint, gives an untrained model with
    seed-0 weights, and the widget says so in red.
    """
    return AttentionExplorer(num_heads, depth, layer, head, query, digit)


def model_calculator(preset: str = "vit_base") -> ModelCalculator:
    """Stage 06: sequence length, parameters (formula against a count) and FLOPs; buttons for ViT-Ti to H."""
    return ModelCalculator(preset)


