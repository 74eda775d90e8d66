"""Input checks shared by every stage: each error names the parameter, the value and the fix."""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch


def positive_int(value: object, name: str) -> int:
    """Return `value` if it is a positive int, else raise naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a positive int, got {value!r} of type {type(value).__name__}; "
                        f"pass a whole number such as 4.")
    if value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value}; pass a whole number of at least 1.")
    return value


def non_negative_int(value: object, name: str) -> int:
    """Return `value` if it is an int >= 0, else raise naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= 0, got {value!r} of type {type(value).__name__}; "
                        f"pass a whole number such as 1.")
    if value < 0:
        raise ValueError(f"{name} must be an int >= 0, got {value}; pass 0 or a larger whole number.")
    return value


def positive_number(value: object, name: str, example: str) -> float:
    """Return `value` if it is a real number > 0, else raise naming `name`; `example` is a sensible value."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a positive number, got {value!r} of type {type(value).__name__}; "
                        f"pass e.g. {example}.")
    if not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}; pass e.g. {example}.")
    return value


def probability(value: object, name: str) -> float:
    """Return `value` if it is a dropout probability in [0, 1), else raise naming `name`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a probability in [0, 1), got {value!r} of type {type(value).__name__}; "
                        f"pass e.g. 0.0 (no dropout) or 0.1.")
    if not 0 <= value < 1:
        raise ValueError(f"{name} must be a probability in [0, 1), got {value!r}; pass e.g. 0.0 (no dropout) or 0.1.")
    return value


def pair(value: object, name: str) -> tuple[int, int]:
    """Turn an int or a (height, width) pair into a pair of positive ints."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a (height, width) pair, got {value!r}; "
                             f"pass e.g. 8 or (8, 8).")
        return positive_int(value[0], f"{name}[0]"), positive_int(value[1], f"{name}[1]")
    side = positive_int(value, name)
    return side, side


def tensor(value: object, name: str, ndim: int, layout: str) -> torch.Tensor:
    """Check that `value` is a floating tensor with `ndim` dimensions laid out as `layout`."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor shaped {layout}, got {type(value).__name__}; "
                        f"convert it with torch.as_tensor(..., dtype=torch.float32).")
    if value.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions {layout}, got shape {tuple(value.shape)}; "
                         + ("add a batch dimension with .unsqueeze(0)." if value.dim() == ndim - 1
                            else f"reshape it to {layout}."))
    if not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}; "
                        f"convert it with .float() (and scale integer pixels to [0, 1]).")
    return value


def divides(patch_size: int, side: int, name: str, side_name: str) -> None:
    """Check that `patch_size` cuts `side` into whole patches."""
    if side % patch_size:
        raise ValueError(f"{name}={patch_size} does not divide the image {side_name} {side}: "
                         f"{side} / {patch_size} leaves a remainder of {side % patch_size}; "
                         f"pick a patch size that divides {side}, or crop or pad the image.")


def replace_fields(instance: Any, overrides: dict[str, object]) -> Any:
    """A copy of the dataclass `instance` with `overrides` applied; an unknown field name raises naming it."""
    fields = [field.name for field in dataclasses.fields(instance)]
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise TypeError(f"{type(instance).__name__} has no field {unknown}; its fields are {fields}.")
    return dataclasses.replace(instance, **overrides) if overrides else instance
