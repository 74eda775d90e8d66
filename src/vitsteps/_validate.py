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


# --- the stages' checks: one call at the top of each stage function, so that the stage reads as what it computes --


def patchable(image: object, patch_size: object) -> None:
    """`image` `[B, C, H, W]` and a `patch_size` that cuts both its sides into whole patches."""
    tensor(image, "image", 4, "[B, C, H, W]")
    positive_int(patch_size, "patch_size")
    divides(patch_size, image.shape[2], "patch_size", "height")
    divides(patch_size, image.shape[3], "patch_size", "width")


def patch_embedding(image: object, patch_size: object, weight: object) -> None:
    """`patchable`, and a `weight` `[C*P*P, D]` with one row per value of a flattened patch."""
    patchable(image, patch_size)
    tensor(weight, "weight", 2, "[C*P*P, D]")
    C = image.shape[1]
    depth = C * patch_size * patch_size
    if weight.shape[0] != depth:
        raise InputValueError(f"weight has {weight.shape[0]} rows but a flattened patch has C*P*P = "
                              f"{C}*{patch_size}*{patch_size} = {depth} values; make weight of shape [{depth}, D].")


def unfold_weight(weight: object, in_chans: object, patch_size: object) -> None:
    """A `weight` `[C*P*P, D]` made for `in_chans` channels and patches of side `patch_size`."""
    tensor(weight, "weight", 2, "[C*P*P, D]")
    positive_int(in_chans, "in_chans")
    positive_int(patch_size, "patch_size")
    depth = in_chans * patch_size * patch_size
    if weight.shape[0] != depth:
        raise InputValueError(f"weight has {weight.shape[0]} rows but in_chans*patch_size**2 = "
                              f"{in_chans}*{patch_size}**2 = {depth}; pass the in_chans and patch_size "
                              f"the weight was made for.")


def conv_embedding(image: object, kernel: object, stride: object) -> None:
    """`image` `[B, C, H, W]`, a square `kernel` `[D, C, P, P]` that fits it, and a `stride`; at `stride == P`
    the patches must tile the image."""
    tensor(image, "image", 4, "[B, C, H, W]")
    tensor(kernel, "kernel", 4, "[D, C, P, P]")
    positive_int(stride, "stride")
    B, C, H, W = image.shape
    if kernel.shape[1] != C:
        raise InputValueError(f"kernel expects {kernel.shape[1]} input channels but image has C={C}; "
                              f"make the kernel [D, {C}, P, P].")
    P = kernel.shape[-1]
    if kernel.shape[-2] != P or P > min(H, W):
        raise InputValueError(f"kernel must be square and fit the image, got {tuple(kernel.shape[-2:])} for an "
                              f"image of {H}x{W}; use a [D, C, P, P] kernel with P <= {min(H, W)}.")
    if stride == P:
        divides(P, H, "patch_size", "height")
        divides(P, W, "patch_size", "width")


def patches_for_image(patches: object, patch_size: object, image_size: object) -> tuple[int, int]:
    """Patches `[B, N, C*P*P]` that tile an image of `image_size` (`H` or `(H, W)`) in patches of `patch_size`;
    returns `(H, W)`."""
    tensor(patches, "patches", 3, "[B, N, C*P*P]")
    positive_int(patch_size, "patch_size")
    H, W = pair(image_size, "image_size")
    divides(patch_size, H, "patch_size", "height")
    divides(patch_size, W, "patch_size", "width")
    B, N, depth = patches.shape
    if N != (H // patch_size) * (W // patch_size) or depth % (patch_size * patch_size):
        raise InputValueError(f"patches of shape {tuple(patches.shape)} do not tile a {H}x{W} image with "
                              f"patch_size={patch_size}: expected N={(H // patch_size) * (W // patch_size)} and "
                              f"a last dimension that is a multiple of {patch_size * patch_size}; pass the patches "
                              f"image_to_patches cut from an image of this size with this patch_size.")
    return H, W


def patch_grid(img_size: object, patch_size: object, in_chans: object, embed_dim: object) -> tuple[int, int]:
    """The arguments of a patch embedding layer: `img_size` (`H` or `(H, W)`) cut into whole patches of
    `patch_size`, and positive `in_chans` and `embed_dim`; returns `(H, W)`."""
    H, W = pair(img_size, "img_size")
    positive_int(patch_size, "patch_size")
    divides(patch_size, H, "patch_size", "height")
    divides(patch_size, W, "patch_size", "width")
    positive_int(in_chans, "in_chans")
    positive_int(embed_dim, "embed_dim")
    return H, W


def image_for_model(image: object, in_chans: int, img_size: tuple[int, int]) -> None:
    """`image` `[B, C, H, W]` with the channels and the size a model was built for."""
    tensor(image, "image", 4, "[B, C, H, W]")
    B, C, H, W = image.shape
    if C != in_chans:
        raise InputValueError(f"image has {C} channels but this model was built for in_chans={in_chans}; "
                              f"convert the image or build the model with in_chans={C}.")
    if (H, W) != img_size:
        raise InputValueError(f"image size ({H}x{W}) does not match the model ({img_size[0]}x"
                              f"{img_size[1]}); resize the image, or build the model for {H}x{W} and "
                              f"resample its position table with vitsteps.tokens.resample_position_table.")


def cls_token_for(patch_tokens: object, cls_token: object) -> None:
    """Patch tokens `[B, N, D]` and one CLS token `[1, 1, D]` of the same width."""
    tensor(patch_tokens, "patch_tokens", 3, "[B, N, D]")
    tensor(cls_token, "cls_token", 3, "[1, 1, D]")
    D = patch_tokens.shape[-1]
    if cls_token.shape[:2] != (1, 1):
        raise InputValueError(f"cls_token must be one token of shape [1, 1, D], got {tuple(cls_token.shape)}; "
                              f"a per-sample CLS parameter ties the model to one batch size: make a single "
                              f"nn.Parameter(torch.zeros(1, 1, {D})) and let this function expand it.")
    if cls_token.shape[-1] != D:
        raise InputValueError(f"cls_token has width {cls_token.shape[-1]} but the patch tokens have D={D}; "
                              f"make cls_token of shape [1, 1, {D}].")


def position_table_for(tokens: object, position_table: object, mode: object) -> torch.Tensor:
    """Tokens `[B, L, D]`, a table `[max_num_token, D]` (or `[1, max_num_token, D]`) with at least `L` rows of
    width `D`, and a `mode` of "broadcast" or "tile"; returns the table as `[max_num_token, D]`."""
    tensor(tokens, "tokens", 3, "[B, L, D]")
    instance(position_table, "position_table", torch.Tensor, "a torch.Tensor [max_num_token, D]",
             "make it with torch.randn(max_num_token, D)")
    table = position_table[0] if position_table.dim() == 3 and position_table.shape[0] == 1 else position_table
    tensor(table, "position_table", 2, "[max_num_token, D]")
    B, L, D = tokens.shape
    if table.shape[1] != D:
        raise InputValueError(f"position_table has width {table.shape[1]} but the tokens have D={D}; "
                              f"make the table [max_num_token, {D}].")
    if L > table.shape[0]:
        raise InputValueError(f"the sequence has {L} tokens but position_table has only {table.shape[0]} rows "
                              f"(max_num_token={table.shape[0]}); use a table with at least {L} rows, or fewer "
                              f"patches (a larger patch_size).")
    one_of(mode, "mode", ("broadcast", "tile"), "use 'broadcast' (both give the same numbers)")
    return table


def sincos_grid(grid_size: object, dim: object, num_prefix_tokens: object) -> tuple[int, int]:
    """A grid (`int` or `(rows, cols)`), a row width `dim` that is a multiple of 4, and a count of prefix rows;
    returns `(rows, cols)`."""
    rows, cols = pair(grid_size, "grid_size")
    positive_int(dim, "dim")
    if dim % 4:
        raise InputValueError(f"dim must be a multiple of 4 for a 2-D sin-cos table, got {dim}; "
                              f"use e.g. {dim + 4 - dim % 4}.")
    non_negative_int(num_prefix_tokens, "num_prefix_tokens")
    return rows, cols


def resampling(position_table: object, new_grid: object, old_grid: object,
               num_prefix_tokens: object) -> tuple[torch.Tensor, tuple[int, int], tuple[int, int]]:
    """A position table `[L, D]` or `[1, L, D]` whose rows after `num_prefix_tokens` fill `old_grid` (a square
    when None), and a `new_grid`; returns the table as `[L, D]`, `(old_rows, old_cols)`, `(new_rows, new_cols)`."""
    instance(position_table, "position_table", torch.Tensor, "a torch.Tensor [L, D] or [1, L, D]",
             "pass the model's pos_embed")
    if position_table.dim() not in (2, 3) or (position_table.dim() == 3 and position_table.shape[0] != 1):
        raise InputValueError(f"position_table must be [L, D] or [1, L, D], got shape {tuple(position_table.shape)}; "
                              f"pass one table, e.g. model.pos_embed.")
    table = tensor(position_table[0] if position_table.dim() == 3 else position_table,
                   "position_table", 2, "[L, D]")  # [L, D]
    non_negative_int(num_prefix_tokens, "num_prefix_tokens")
    if num_prefix_tokens >= table.shape[0]:
        raise InputValueError(f"num_prefix_tokens={num_prefix_tokens} leaves no patch rows in a table of "
                              f"{table.shape[0]} rows; pass the number of CLS-like rows (1 for a ViT).")
    N = table.shape[0] - num_prefix_tokens
    if old_grid is None:
        side = math.isqrt(N)
        if side * side != N:
            raise InputValueError(f"the table has {N} patch rows, not a square number; pass old_grid=(rows, cols).")
        old_grid = side
    old_rows, old_cols = pair(old_grid, "old_grid")
    new_rows, new_cols = pair(new_grid, "new_grid")
    if old_rows * old_cols != N:
        raise InputValueError(f"old_grid={old_grid} has {old_rows * old_cols} cells but the table has {N} patch rows "
                              f"(after {num_prefix_tokens} prefix rows); pass the grid the table was trained on.")
    return table, (old_rows, old_cols), (new_rows, new_cols)


def tokens_of_width(x: object, dim: int, owner: str) -> None:
    """`x` floating `[B, L, D]` tokens of the width `dim` that `owner` (e.g. "block") was built for."""
    tensor(x, "x", 3, "[B, L, D]")
    if x.shape[-1] != dim:
        raise InputValueError(f"x has width D={x.shape[-1]} but this {owner} was built for dim={dim}; "
                              f"pass tokens of shape [B, L, {dim}], or build the {owner} with dim={x.shape[-1]}.")


def queries_keys_values(q: object, k: object, v: object) -> None:
    """Queries, keys and values `[..., L, d]`: queries as wide as keys, one value per key."""
    for name, value in (("q", q), ("k", k), ("v", v)):
        ndim = value.dim() if isinstance(value, torch.Tensor) and value.dim() >= 2 else 2
        tensor(value, name, ndim, "[..., L, d]")
    if q.shape[-1] != k.shape[-1]:
        raise InputValueError(f"q has width d={q.shape[-1]} but k has d={k.shape[-1]}; queries and keys must have "
                              f"the same width to be compared, e.g. both [..., L, {q.shape[-1]}].")
    if k.shape[-2] != v.shape[-2]:
        raise InputValueError(f"k has {k.shape[-2]} tokens but v has {v.shape[-2]}; each key needs its value, "
                              f"so pass k and v with the same length L.")
