"""Drawing helpers shared by the figures of every part of the series: an image as an array, one grey-scale convention
for every picture of an image, the patch grid and the patch order (drawn here once for every figure that shows
them), patches as tiles, near-square panel grids, figures redrawn in place, values written on heat-map cells in a
colour that stays readable, a heat map over an image, counts with an SI suffix, and how a notebook stores a figure.

The grey-scale convention: ink dark on white paper. `show_image` draws a one-channel image with `GREY` (0 white,
1 black, after `as_image` has scaled it to [0, 1]), so a handwritten digit looks as it does on paper in every
notebook; a three-channel image is drawn in its own colours. Every figure that shows an image draws it with
`show_image`.

For high-density screens and projectors, a notebook stores each figure as a PNG of `SCREEN_DPI` (150) pixels per
inch, shown at the figure's own size (`figure.dpi`, 100 pixels per inch of screen): `screen_png` renders it, and
`show_figures_for_screens` makes the IPython kernel use it for every matplotlib figure (importing
`vitsteps.teach.figures` calls it). An opaque figure is stored without its alpha channel, which only says "opaque".

Shape legend: C channels, H W image, P patch side, N patches.
"""
from __future__ import annotations

import base64
import io
import math
import struct

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.colors import Colormap, Normalize
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from PIL import Image

from ... import _validate
from ..._validate import InputValueError

# ink dark on white paper: a one-channel image scaled to [0, 1] has 0 drawn white and 1 drawn black
GREY: dict[str, object] = {"cmap": "gray_r", "vmin": 0.0, "vmax": 1.0}
# the smallest text of any figure, in points, at the size the notebook shows it (figures are at most 9 inches wide)
SMALLEST_FONT = 8
# pixels per inch of a figure as a notebook stores it: 1.5 stored pixels for each pixel of screen it is shown on
SCREEN_DPI = 150


def png_size(png: bytes) -> tuple[int, int]:
    """`(width, height)` in pixels of PNG bytes, read from the header."""
    _validate.instance(png, "png", bytes, "PNG bytes", "pass what savefig(format='png') wrote")
    if png[:8] != b"\x89PNG\r\n\x1a\n" or len(png) < 24:
        raise InputValueError(f"png must start with the PNG signature, got {png[:8]!r}; pass PNG bytes.")
    width, height = struct.unpack(">II", png[16:24])
    return width, height


def screen_png(fig: Figure) -> tuple[str, dict[str, int]] | None:
    """`fig` as a notebook stores it: a base64 PNG of `SCREEN_DPI` pixels per inch, cut to what is drawn, and the
    size to show it at (`{"width", "height"}` in screen pixels, `fig.dpi` per inch); None for an empty figure."""
    _validate.instance(fig, "fig", Figure, "a matplotlib Figure", "pass what a plot_ function returned")
    if not fig.axes and not fig.lines:
        return None
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=SCREEN_DPI, bbox_inches="tight", facecolor=fig.get_facecolor(),
                edgecolor=fig.get_edgecolor())
    picture = Image.open(buffer)
    if picture.mode == "RGBA" and picture.getextrema()[3] == (255, 255):  # opaque: the alpha channel says nothing
        buffer = io.BytesIO()
        picture.convert("RGB").save(buffer, format="png")  # the same pixels in about a tenth fewer bytes
    png = buffer.getvalue()
    width, height = png_size(png)
    shown = {"width": int(width * fig.dpi // SCREEN_DPI), "height": int(height * fig.dpi // SCREEN_DPI)}  # rounded down
    return base64.b64encode(png).decode("ascii"), shown


def show_figures_for_screens() -> bool:
    """In an IPython kernel with the inline backend, show every matplotlib figure through `screen_png`; True if it
    did (False outside IPython, or with another backend)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    formatters = getattr(getattr(shell, "display_formatter", None), "formatters", None)
    if not formatters or "image/png" not in formatters:
        return False
    import matplotlib

    if "inline" not in matplotlib.get_backend():
        return False
    import matplotlib_inline.backend_inline  # noqa: F401 - importing it sets up its own formats: ours must come after

    formatters["image/png"].for_type(Figure, screen_png)
    return True


def show_image(ax: plt.Axes, picture: np.ndarray, **kwargs: object) -> AxesImage:
    """Draw `picture` (from `as_image`) on `ax`: one channel in the series' grey scale (`GREY`), RGB as it is."""
    grey = GREY if picture.ndim == 2 else {}
    return ax.imshow(picture, interpolation="nearest", **{**grey, **kwargs})


def one_sample(value: object, ndim: int) -> object:
    """`value[0]` when `value` is a tensor with one leading dimension of 1 more than `ndim`, else `value`."""
    if isinstance(value, torch.Tensor) and value.dim() == ndim + 1 and value.shape[0] == 1:
        return value[0]
    return value


def as_image(image: object) -> np.ndarray:
    """`[C, H, W]` (or `[1, C, H, W]`) tensor, `C` 1 or 3, to an `[H, W]` or `[H, W, 3]` array scaled to [0, 1]."""
    if isinstance(image, torch.Tensor) and image.dim() == 4 and image.shape[0] != 1:
        raise InputValueError(f"image must be one image [C, H, W] or [1, C, H, W], got shape {tuple(image.shape)}; "
                              f"pick one with images[i].")
    image = _validate.tensor(one_sample(image, 3), "image", 3, "[C, H, W]")
    if image.shape[0] not in (1, 3):
        raise InputValueError(f"image must have 1 (grayscale) or 3 (RGB) channels, got {image.shape[0]}; "
                              f"draw one channel with image[:1].")
    array = image.detach().float().cpu()  # [C, H, W]
    low, high = array.min(), array.max()
    array = (array - low) / (high - low) if high > low else torch.zeros_like(array)  # [C, H, W]
    return array[0].numpy() if array.shape[0] == 1 else array.permute(1, 2, 0).numpy()  # [H, W] or [H, W, 3]


def image_and_grid(image: object, patch_size: object) -> tuple[np.ndarray, int, int]:
    """The image as `as_image` draws it, and its patch grid `(rows, cols)`; `patch_size` must divide both sides."""
    picture = as_image(image)
    H, W = picture.shape[:2]
    _validate.positive_int(patch_size, "patch_size")
    _validate.divides(patch_size, H, "patch_size", "height")
    _validate.divides(patch_size, W, "patch_size", "width")
    return picture, H // patch_size, W // patch_size


def _grid_lines(ax: plt.Axes, H: int, W: int, patch_size: int) -> None:
    cells = max(H, W) // patch_size
    width = 1.5 if cells <= 8 else 0.8 if cells <= 16 else 0.3  # dense grids get thin lines
    ax.vlines(np.arange(0, W + 1, patch_size) - 0.5, -0.5, H - 0.5, color="tab:orange", linewidth=width)
    ax.hlines(np.arange(0, H + 1, patch_size) - 0.5, -0.5, W - 0.5, color="tab:orange", linewidth=width)
    ax.set_xlim(-0.5, W - 0.5)
    ax.set_ylim(H - 0.5, -0.5)
    ax.axis("off")  # no ticks to lay out: a redraw stays fast


def draw_patch_grid(ax: plt.Axes, picture: np.ndarray, patch_size: int) -> None:
    """Draw `picture` with its patch grid on top (one `vlines`/`hlines` call each); nothing covers the pixels."""
    H, W = picture.shape[:2]
    show_image(ax, picture)
    _grid_lines(ax, H, W, patch_size)


def draw_patch_order(ax: plt.Axes, H: int, W: int, patch_size: int) -> None:
    """Draw the patch grid of an `H x W` image empty, each cell holding its patch's number in reading order (a
    panel beside the image, so that the numbers never cover a pixel)."""
    rows, cols = H // patch_size, W // patch_size
    ax.imshow(np.ones((H, W)), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    _grid_lines(ax, H, W, patch_size)
    if rows * cols <= 256:
        size = max(SMALLEST_FONT, min(14, int(110 / max(rows, cols))))
        for index in range(rows * cols):
            row, col = divmod(index, cols)
            ax.text((col + 0.5) * patch_size - 0.5, (row + 0.5) * patch_size - 0.5, str(index), ha="center",
                    va="center", fontsize=size, color="black")


def patch_tiles(patches: object, patch_size: object, in_chans: object) -> np.ndarray:
    """Flattened patches `[N, C*P*P]` (or `[1, N, C*P*P]`) as `[N, P, P, C]` tiles on one scale from 0 to 1."""
    patches = _validate.tensor(one_sample(patches, 2), "patches", 2, "[N, C*P*P]")
    _validate.positive_int(patch_size, "patch_size")
    _validate.one_of(in_chans, "in_chans", (1, 3), "pass 1 (grayscale) or 3 (RGB) to draw patches")
    N, depth = patches.shape
    if N == 0:
        raise InputValueError("patches is empty, got shape (0, ...); pass at least one patch [N, C*P*P] with N >= 1.")
    if depth != in_chans * patch_size * patch_size:
        raise InputValueError(f"patches have {depth} values each but in_chans*patch_size**2 = "
                              f"{in_chans * patch_size ** 2}; pass the in_chans and patch_size they were cut with.")
    values = patches.detach().float().cpu()  # [N, C*P*P]
    low, high = float(values.min()), float(values.max())
    values = (values - low) / (high - low) if high > low else torch.zeros_like(values)  # [N, C*P*P]
    return values.reshape(N, in_chans, patch_size, patch_size).permute(0, 2, 3, 1).numpy()  # [N, P, P, C]


def grid_shape(count: int) -> tuple[int, int]:
    """Rows and columns of a near-square grid holding `count` panels."""
    _validate.positive_int(count, "count")
    cols = math.ceil(math.sqrt(count))
    return math.ceil(count / cols), cols


def panels(fig: Figure | None, count: int, figsize: tuple[float, float], width_ratios: list[float],
           margins: dict[str, float]) -> tuple[Figure, list[plt.Axes]]:
    """`count` side-by-side axes to draw on.

    With `fig` from an earlier call of the same plotting function, its axes are emptied of what was drawn
    (images, lines, texts, shapes) and reused: no new axes, so a widget redraws much faster. Otherwise a
    new figure is made.
    """
    if fig is not None:
        _validate.instance(fig, "fig", Figure, "a matplotlib Figure made by this function, or None",
                           "pass the figure this function returned before, or None for a new one")
        if len(fig.axes) == count:
            for ax in fig.axes:
                for artist in (*ax.images, *ax.lines, *ax.collections, *ax.patches, *ax.texts):
                    artist.remove()
            return fig, list(fig.axes)
    fig, axes = plt.subplots(1, count, figsize=figsize, squeeze=False, gridspec_kw={"width_ratios": width_ratios})
    fig.subplots_adjust(**margins)
    return fig, list(axes[0])


def readable_on(colour: tuple[float, ...]) -> str:
    """"black" or "white": the text colour that stays readable on a cell of `colour` (RGB or RGBA in [0, 1])."""
    red, green, blue = colour[:3]
    return "black" if 0.299 * red + 0.587 * green + 0.114 * blue > 0.5 else "white"


def write_values(ax: plt.Axes, values: np.ndarray, cmap: str | Colormap, norm: Normalize, fmt: str = "{:.2f}",
                 fontsize: int = SMALLEST_FONT) -> None:
    """Write each value of the `[rows, cols]` heat map drawn with `cmap` and `norm` on its cell, in black on pale
    cells and white on dark ones."""
    colours = plt.get_cmap(cmap) if isinstance(cmap, str) else cmap
    for (row, col), value in np.ndenumerate(values):
        ax.text(col, row, fmt.format(value), ha="center", va="center", fontsize=fontsize,
                color=readable_on(colours(norm(value))))


def overlay_map(ax: plt.Axes, picture: np.ndarray, heat: np.ndarray) -> None:
    """The image in the series' grey scale with a heat map over it; on grids of at most 16 cells each cell's value
    is written in."""
    H, W = picture.shape[:2]
    rows, cols = heat.shape
    show_image(ax, picture)
    ax.imshow(heat, cmap="magma", alpha=0.6, interpolation="nearest", extent=(-0.5, W - 0.5, H - 0.5, -0.5),
              vmin=0, vmax=max(float(heat.max()), 1e-6))
    if rows * cols <= 16:
        for (row, col), value in np.ndenumerate(heat):
            ax.text((col + 0.5) * W / cols - 0.5, (row + 0.5) * H / rows - 0.5, f"{value:.2f}", ha="center",
                    va="center", fontsize=SMALLEST_FONT, color="white",
                    bbox={"facecolor": "black", "alpha": 0.5, "pad": 1, "linewidth": 0})


def si_format(value: float) -> str:
    """`1234567` as `1.23M`: a count with an SI suffix, three significant digits."""
    for threshold, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= threshold:
            return f"{value / threshold:.3g}{suffix}"
    return f"{value:.3g}"
