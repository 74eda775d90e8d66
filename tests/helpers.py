"""Assertions shared by the test modules."""
from __future__ import annotations

import re
import warnings
from collections.abc import Callable

import pytest
import torch


def assert_close(actual: torch.Tensor, expected: torch.Tensor, rtol: float = 1.3e-6, atol: float = 1e-5) -> None:
    """Same shape and dtype, values within tolerance (torch.testing.assert_close's float32 defaults, without
    its first call importing torch.distributed, which costs seconds)."""
    assert actual.shape == expected.shape, f"shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    assert actual.dtype == expected.dtype, f"dtype {actual.dtype} != {expected.dtype}"
    assert torch.allclose(actual, expected, rtol=rtol, atol=atol), \
        f"largest difference {(actual - expected).abs().max().item():.3g}"


def assert_refused(call: Callable[[], object], error: type[Exception], words: str) -> None:
    """`call()` raises `error` (and no warning on the way) with a message that matches the regex `words` (the
    parameter and the value) and says the fix after a "; ". Any other outcome fails in one line."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            call()
        except error as raised:
            message = str(raised)
            if not re.search(words, message):
                pytest.fail(f"expected {error.__name__} matching {words!r}, got: {message}", pytrace=False)
            if "; " not in message or not message.rstrip().endswith("."):
                pytest.fail(f"the message does not end with a fix after '; ': {message}", pytrace=False)
            return
        except Exception as raised:  # noqa: BLE001 - any other outcome is the finding
            pytest.fail(f"expected {error.__name__} matching {words!r}, got {raised!r}", pytrace=False)
    pytest.fail(f"expected {error.__name__} matching {words!r}, got no error", pytrace=False)


def refusal_cases(table: dict[str, tuple[Callable[[], object], type[Exception], str]]) -> pytest.MarkDecorator:
    """Parametrise a test over a table of bad inputs, `{case: (call, error, words)}`, one id per case."""
    return pytest.mark.parametrize("call, error, words", list(table.values()), ids=list(table))


def words_for(value: object) -> str:
    """The regex of `value` as an error message shows it."""
    return re.escape(repr(value))
