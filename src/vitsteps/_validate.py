"""Input checks for every public function of the package: one error style everywhere.

Every message reads `<name> must be <what it must be>, got <the value>; <the fix>.` A value of the wrong kind
raises `TypeError`, a value of the right kind that is out of range raises `ValueError`. Each check returns the
value it accepted, so a caller can check and assign in one line.

The errors are `InputValueError` and `InputTypeError`: a `ValueError` and a `TypeError` for every `except` and
`pytest.raises`, which IPython shows as one line, `ValueError: <message>`, without a traceback through the
package's files (what a student needs is the message; a stored notebook output then holds no machine path).
"""
from __future__ import annotations

import dataclasses
import math
import reprlib
from collections.abc import Collection, Mapping, Sequence
from typing import Any, NoReturn

import torch


def error_kind(error: BaseException) -> str:
    """The name of the built-in exception `error` is, e.g. "ValueError" for an `InputValueError`."""
    return next(base.__name__ for base in type(error).__mro__ if base.__module__ == "builtins")


class _OneLine:
    """Mixin for the package's errors: IPython shows `<built-in kind>: <message>` instead of a traceback."""

    def _render_traceback_(self) -> list[str]:
        """What IPython prints in place of the traceback: the error's kind in red, then its message."""
        first, *rest = str(self).splitlines() or [""]
        return [f"\x1b[31m{error_kind(self)}\x1b[0m: {first}", *rest]


class InputValueError(_OneLine, ValueError):
    """A value of the right kind out of range: a `ValueError`, shown by IPython as its message alone."""


class InputTypeError(_OneLine, TypeError):
    """A value of the wrong kind: a `TypeError`, shown by IPython as its message alone."""


_RAISED = {ValueError: InputValueError, TypeError: InputTypeError}

_SHORT = reprlib.Repr()
_SHORT.maxstring, _SHORT.maxother, _SHORT.maxlist, _SHORT.maxtuple, _SHORT.maxdict = 60, 60, 6, 6, 4


def shown(value: object) -> str:
    """A value as an error message shows it: short, tensors by their shape and dtype, and never a memory address."""
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    if callable(value) and hasattr(value, "__qualname__"):
        return f"the {'class' if isinstance(value, type) else 'function'} {value.__qualname__}"
    text = _SHORT.repr(value)
    name = type(value).__name__
    return f"{'an' if name[0].lower() in 'aeiou' else 'a'} {name} object" if " at 0x" in text else text


def fail(error: type[Exception], name: str, requirement: str, value: object, fix: str) -> NoReturn:
    """Raise `error` in the package's style; a TypeError also names the type of the value."""
    kind = f" of type {type(value).__name__}" if error is TypeError and not isinstance(value, torch.Tensor) else ""
    raise _RAISED.get(error, error)(f"{name} must be {requirement}, got {shown(value)}{kind}; {fix}.")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def positive_int(value: object, name: str, fix: str = "pass a whole number such as 4") -> int:
    """`value` if it is an int >= 1."""
    return int_in(value, name, 1, None, fix)


def non_negative_int(value: object, name: str, fix: str = "pass 0 or a larger whole number") -> int:
    """`value` if it is an int >= 0."""
    return int_in(value, name, 0, None, fix)


def int_in(value: object, name: str, low: int, high: int | None, fix: str | None = None) -> int:
    """`value` if it is an int with `low <= value <= high` (no upper bound when `high` is None)."""
    requirement = f"an int from {low} to {high}" if high is not None else (
        "a positive int" if low == 1 else f"an int >= {low}")
    fix = fix or (f"pick one from {low} to {high}" if high is not None else f"pass a whole number of at least {low}")
    if not _is_int(value):
        fail(TypeError, name, requirement, value, fix)
    if value < low or (high is not None and value > high):
        fail(ValueError, name, requirement, value, fix)
    return value


def number_in(value: object, name: str, low: float | None = None, high: float | None = None, *,
              low_open: bool = False, high_open: bool = False, example: str = "") -> float:
    """`value` if it is a finite real number within the bounds (each may be open or left out)."""
    bounds = []
    if low is not None:
        bounds.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        bounds.append(f"{'<' if high_open else '<='} {high:g}")
    requirement = "a number" + (f" {' and '.join(bounds)}" if bounds else "")
    if low is not None and high is not None:
        requirement = f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    fix = f"pass e.g. {example}" if example else "pass a number in that range"
    if not _is_number(value):
        fail(TypeError, name, requirement, value, fix)
    inside = math.isfinite(value)
    if low is not None:
        inside = inside and (value > low if low_open else value >= low)
    if high is not None:
        inside = inside and (value < high if high_open else value <= high)
    if not inside:
        fail(ValueError, name, requirement, value, fix)
    return value


def positive_number(value: object, name: str, example: str) -> float:
    """`value` if it is a real number > 0; `example` is a sensible value."""
    return number_in(value, name, 0, None, low_open=True, example=example)


def probability(value: object, name: str) -> float:
    """`value` if it is a dropout probability in [0, 1)."""
    return number_in(value, name, 0, 1, high_open=True, example="0.0 (no dropout) or 0.1")


def flag(value: object, name: str, fix: str = "pass True or False") -> bool:
    """`value` if it is True or False."""
    if not isinstance(value, bool):
        fail(TypeError, name, "True or False", value, fix)
    return value


def instance(value: object, name: str, kind: type | tuple[type, ...], what: str, fix: str) -> Any:
    """`value` if it is an instance of `kind` (described to people as `what`)."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        fail(TypeError, name, what, value, fix)
    return value


def one_of(value: object, name: str, options: Collection[object], fix: str | None = None) -> Any:
    """`value` if it is one of `options` (compared with `==`; a bool never stands for 0 or 1)."""
    if isinstance(value, bool) or value not in options:
        listed = ", ".join(repr(option) for option in options)
        fail(ValueError, name, f"one of {listed}", value, fix or f"choose one of {listed}")
    return value


def pair(value: object, name: str) -> tuple[int, int]:
    """Turn an int or a (height, width) pair into a pair of positive ints."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != 2:
            fail(ValueError, name, "an int or a (height, width) pair", value, "pass e.g. 8 or (8, 8)")
        return positive_int(value[0], f"{name}[0]"), positive_int(value[1], f"{name}[1]")
    side = positive_int(value, name, "pass e.g. 8 or (8, 8)")
    return side, side


def tensor(value: object, name: str, ndim: int, layout: str) -> torch.Tensor:
    """`value` if it is a floating tensor with `ndim` dimensions laid out as `layout`."""
    if not isinstance(value, torch.Tensor):
        fail(TypeError, name, f"a torch.Tensor shaped {layout}", value,
             "convert it with torch.as_tensor(..., dtype=torch.float32)")
    if value.dim() != ndim:
        first = layout.strip("[]").split(",")[0].strip()
        missing = {"B": "a batch dimension", "C": "a channel dimension"}.get(first, "the first dimension")
        fail(ValueError, name, f"a tensor with {ndim} dimensions {layout}", value,
             f"add {missing} with .unsqueeze(0)" if value.dim() == ndim - 1 else f"reshape it to {layout}")
    if not value.is_floating_point():
        fail(TypeError, name, "a floating-point tensor", value,
             "convert it with .float() (and scale integer pixels to [0, 1])")
    return value


def labels(value: object, name: str, count: int | None = None) -> torch.Tensor:
    """`value` if it is a 1-D integer tensor of class indices (with `count` entries when given)."""
    requirement = "a 1-D integer tensor [n] of class indices" if count is None else \
        f"a 1-D integer tensor [n] of class indices with n={count} (one per image)"
    if not isinstance(value, torch.Tensor) or value.is_floating_point() or value.is_complex() \
            or value.dtype == torch.bool:
        fail(TypeError, name, requirement, value, "convert it with torch.as_tensor(...).long()")
    if value.dim() != 1 or (count is not None and len(value) != count):
        fail(ValueError, name, requirement, value, "pass one class index per image")
    return value


def divides(patch_size: int, side: int, name: str, side_name: str) -> None:
    """Check that `patch_size` cuts `side` into whole patches."""
    if side % patch_size:
        raise InputValueError(f"{name}={patch_size} does not divide the image {side_name} {side}: "
                              f"{side} / {patch_size} leaves a remainder of {side % patch_size}; "
                              f"pick a patch size that divides {side}, or crop or pad the image.")


def heads(dim: object, num_heads: object, dim_name: str = "embed_dim") -> None:
    """Check that the token width `dim` (called `dim_name` by the caller) splits into `num_heads` heads."""
    positive_int(dim, dim_name)
    positive_int(num_heads, "num_heads")
    if dim % num_heads:
        divisors = [h for h in range(1, dim + 1) if dim % h == 0]
        raise InputValueError(f"{dim_name}={dim} is not divisible by num_heads={num_heads}: each head gets "
                              f"{dim_name} / num_heads dimensions; pick num_heads from {divisors}.")


def mlp_hidden(dim: int, mlp_ratio: object) -> int:
    """The MLP's hidden width `int(dim * mlp_ratio)`, checked to be at least 1."""
    positive_number(mlp_ratio, "mlp_ratio", "4.0")
    hidden = int(dim * mlp_ratio)
    if hidden < 1:
        raise InputValueError(f"mlp_ratio={mlp_ratio!r} gives an MLP hidden width of int({dim} * {mlp_ratio!r}) = "
                              f"{hidden}; use mlp_ratio >= {1 / dim:.4g} (the paper uses 4.0).")
    return hidden


def counts(parts: object, name: str, fix: str) -> dict[str, int]:
    """`parts` if it is a non-empty dict of part name to count (int >= 0) with a part besides `"total"`."""
    if not isinstance(parts, Mapping) or not parts:
        fail(TypeError, name, "a non-empty dict of part name to count", parts, fix)
    if not set(parts) - {"total"}:
        fail(ValueError, name, "a dict with at least one part besides 'total'", parts, fix)
    for part, count in parts.items():
        non_negative_int(count, f"{name}[{part!r}]", fix)
    return dict(parts)


def replace_fields(instance: Any, overrides: dict[str, object]) -> Any:
    """A copy of the dataclass `instance` with `overrides` applied; an unknown field name raises naming it."""
    fields = [field.name for field in dataclasses.fields(instance)]
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise InputTypeError(f"{type(instance).__name__} has no field {unknown}; its fields are {fields}.")
    return dataclasses.replace(instance, **overrides) if overrides else instance
