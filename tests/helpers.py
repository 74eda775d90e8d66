"""Assertions shared by the test modules."""
from __future__ import annotations

import base64
import re
import warnings
from collections.abc import Callable

import numpy as np
import pytest
import torch


def assert_close(actual: torch.Tensor, expected: torch.Tensor, rtol: float = 1.3e-6, atol: float = 1e-5) -> None:
    """Same shape and dtype, values within tolerance (torch.testing.assert_close's float32 defaults, without
    its first call importing torch.distributed, which costs seconds)."""
    assert actual.shape == expected.shape, f"shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    assert actual.dtype == expected.dtype, f"dtype {actual.dtype} != {expected.dtype}"
    assert torch.allclose(actual, expected, rtol=rtol, atol=atol), \
        f"largest difference {(actual - expected).abs().max().item():.3g}"


def assert_refused(call: Callable[[], object], error: type[Exception], words: str, case: str = "") -> None:
    """`call()` raises `error` (and no warning on the way) with a message that matches the regex `words` (the
    parameter and the value) and says the fix after a "; ". Any other outcome fails in one line, naming `case`."""
    where = f"{case}: " if case else ""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            call()
        except error as raised:
            message = str(raised)
            if not re.search(words, message):
                pytest.fail(f"{where}expected {_names(error)} matching {words!r}, got: {message}", pytrace=False)
            if "; " not in message or not message.rstrip().endswith("."):
                pytest.fail(f"{where}the message does not end with a fix after '; ': {message}", pytrace=False)
            return
        except Exception as raised:  # noqa: BLE001 - any other outcome is the finding
            pytest.fail(f"{where}expected {_names(error)} matching {words!r}, got {raised!r}", pytrace=False)
    pytest.fail(f"{where}expected {_names(error)} matching {words!r}, got no error", pytrace=False)


def _names(error: type[Exception] | tuple[type[Exception], ...]) -> str:
    return " or ".join(kind.__name__ for kind in (error if isinstance(error, tuple) else (error,)))


Refusal = tuple[Callable[[], object], type[Exception], str]


def refusal_cases(table: dict[str, Refusal]) -> pytest.MarkDecorator:
    """Parametrise a test over a table of bad inputs, `{"function: case": (call, error, words)}`: one test per
    function, which tries every case of that function (`assert_all_refused`)."""
    groups: dict[str, list[tuple[str, Refusal]]] = {}
    for case, refusal in table.items():
        groups.setdefault(case.split(":")[0], []).append((case, refusal))
    return pytest.mark.parametrize("refusals", list(groups.values()), ids=list(groups))


def assert_all_refused(refusals: list[tuple[str, Refusal]]) -> None:
    """`assert_refused` for every case of one function, each failure naming its case."""
    for case, (call, error, words) in refusals:
        assert_refused(call, error, words, case)


def words_for(value: object) -> str:
    """The regex of `value` as an error message shows it."""
    return re.escape(repr(value))


def draw(plot: Callable[..., object], *args: object, **kwargs: object) -> object:
    """Call a figure function `plot` with every warning turned into an error; check that it returned a matplotlib
    figure and left its input tensors (also those inside dict arguments) alone."""
    from matplotlib.figure import Figure

    inputs = [value for value in (*args, *kwargs.values()) if isinstance(value, torch.Tensor)]
    inputs += [value for arg in (*args, *kwargs.values()) if isinstance(arg, dict) for value in arg.values()
               if isinstance(value, torch.Tensor)]
    copies = [value.detach().clone() for value in inputs]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = plot(*args, **kwargs)
    assert isinstance(fig, Figure)
    for value, copy in zip(inputs, copies, strict=True):
        assert torch.equal(value, copy), "the plot changed its input tensor"
    return fig


def drawn(image: object) -> np.ndarray:
    """The array an `imshow` call holds, its masked (blank) pixels as NaN."""
    return np.ma.filled(np.ma.asarray(image.get_array(), dtype=float), np.nan)


def assert_readable(fig: object) -> None:
    """A figure as a notebook shows it: at most 9 in wide (wider ones are shrunk, text and all), no visible text
    under 8 points, and stored with at least 150 pixels per inch of the size it is shown at (sharp on high-density
    screens). Renders the figure the way the notebook stores it first, so that text placed at draw time counts too."""
    from matplotlib.text import Text

    from vitsteps.teach.figures._draw import png_size, screen_png

    data, shown = screen_png(fig)
    stored_width, stored_height = png_size(base64.b64decode(data))
    inches = shown["width"] / fig.dpi, shown["height"] / fig.dpi  # the size the notebook shows it at
    assert stored_width / inches[0] >= 150 and stored_height / inches[1] >= 150, \
        f"{stored_width}x{stored_height} pixels for {inches[0]:.2f}x{inches[1]:.2f} in: under 150 per inch"
    assert fig.get_figwidth() <= 9.0, "wider than a notebook cell: the notebook would shrink it, text and all"
    small = [(text.get_text(), text.get_fontsize()) for text in fig.findobj(Text)
             if text.get_visible() and text.get_text().strip() and text.get_fontsize() < 8]
    assert not small, small
