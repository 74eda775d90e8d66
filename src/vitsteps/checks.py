"""Self-checks for the exercises: `check(name, fn)` runs a student's function through a battery of tests.

Each battery tries several configurations (the original article's first), compares the function with the
package's reference on random inputs, checks the order of the values (a `view` without `permute` fails),
that one sample's output does not depend on its batch-mates, that inputs are not changed in place, and that
gradients reach the inputs that are parameters. It prints one line when everything passes, or raises
`CheckFailed`: which configuration, expected and actual shapes, the largest difference, and a hint naming
the classic mistake. Jupyter shows a `CheckFailed` as that short message, without a traceback.

    from vitsteps.checks import check
    check("image_to_patches", my_image_to_patches)

Shape legend: B batch, C channels, H W image, P patch side, N patches, D model dim, L tokens, h heads,
d head dim, K classes.
"""
from __future__ import annotations

import dataclasses
import math
import operator
import random
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import torch
import torch.nn.functional as F
from torch import nn

from .model import ViTConfig, parameter_formula
from .patches import image_to_patches, patch_embed_conv, patch_embed_unfold, weight_to_kernel
from .tokens import add_position_embedding, prepend_cls_token

__all__ = ["CheckFailed", "check", "names"]

RTOL, ATOL = 1e-4, 1e-5


class CheckFailed(AssertionError):
    """A self-check found a problem. Jupyter renders it as its message alone, without a traceback.

    It is still an error, so the cell stops there and an autograder scores the cell 0.
    """

    def _render_traceback_(self) -> list[str]:
        """What IPython prints instead of a traceback: the message, in red."""
        return [f"\x1b[31m{line}\x1b[0m" if index == 0 else line
                for index, line in enumerate(str(self).splitlines())]


# --------------------------------------------------------------------------------------- plumbing


class _Battery:
    """Runs one exercise's configurations and turns every problem into a `CheckFailed`."""

    def __init__(self, name: str, fn: Callable[..., Any]) -> None:
        self.name = name
        self.fn = fn
        self.config = ""
        self.configs = 0
        self.properties: list[str] = []
        self.last: Any = None

    def start(self, description: str) -> None:
        self.configs += 1
        self.config = description

    def passed(self, prop: str) -> None:
        if prop not in self.properties:
            self.properties.append(prop)

    def fail(self, problem: str, hint: str | None = None) -> NoReturn:
        lines = [f"✗ check {self.name!r} failed on configuration {self.configs} ({self.config}).", problem]
        if hint:
            lines.append(f"hint: {hint}")
        raise CheckFailed("\n".join(lines)) from None

    def call(self, *args: Any) -> Any:
        """Call the student's function; an exception it raises becomes a failure with a hint."""
        try:
            self.last = self.fn(*args)
            return self.last
        except CheckFailed:
            raise
        except NotImplementedError:
            self.fail("your function raised NotImplementedError: it is not written yet.",
                      "replace `raise NotImplementedError()` with your code.")
        except Exception as error:  # noqa: BLE001 - any error of the student's code is reported, not raised
            message = str(error).strip().splitlines()[0] if str(error).strip() else ""
            self.fail(f"your function raised {type(error).__name__}: {message}", _error_hint(error))

    def tensor(self, got: Any, expected: torch.Tensor, what: str = "the output",
               diagnose: Callable[[torch.Tensor], str | None] | None = None) -> torch.Tensor:
        """Compare a returned tensor with the reference: type, shape, dtype, values."""
        if not isinstance(got, torch.Tensor):
            self.fail(f"{what} should be a torch.Tensor of shape {_shape(expected)}, got {type(got).__name__}.",
                      "return the tensor itself (not a list, a NumPy array or a tuple).")
        if got.shape != expected.shape:
            hint = None
            if sorted(got.shape) == sorted(expected.shape):
                hint = "the sizes are right but in another order: a transpose or permute is missing or wrong."
            elif got.numel() == expected.numel():
                hint = "the right number of values in the wrong shape: check your reshape/view sizes."
            if diagnose is not None:
                hint = diagnose(got) or hint
            self.fail(f"{what}: expected shape {_shape(expected)}, got {_shape(got)}.", hint)
        if got.dtype != expected.dtype:
            self.fail(f"{what}: expected dtype {expected.dtype}, got {got.dtype}.",
                      "keep the inputs' dtype: create new tensors with dtype=<input>.dtype.")
        if not torch.allclose(got.detach(), expected.detach(), rtol=RTOL, atol=ATOL):
            if torch.isnan(got).any():
                problem = f"{what} contains NaN."
            else:
                difference = (got.detach().double() - expected.detach().double()).abs().max().item()
                problem = (f"{what}: the shape {_shape(expected)} is right but the values differ: "
                           f"max abs difference {difference:.4g} (allowed {ATOL:g} + {RTOL:g} x |expected|).")
            hint = diagnose(got) if diagnose is not None else None
            self.fail(problem, hint)
        return got

    def unchanged(self, originals: dict[str, torch.Tensor], current: dict[str, torch.Tensor]) -> None:
        """Fail if the function changed one of its inputs in place."""
        for arg_name, original in originals.items():
            if not torch.equal(original, current[arg_name].detach()):
                self.fail(f"your function changed its input `{arg_name}` in place.",
                          "in-place operations (`+=`, `.add_()`, slice assignment) modify the caller's tensor: "
                          "build a new tensor instead, e.g. `x = x + y`.")

    def independent(self, run: Callable[[torch.Tensor], torch.Tensor], batch: torch.Tensor,
                    fresh: torch.Tensor, arg_name: str) -> None:
        """Fail if sample 0's output changes when the other samples of the batch change."""
        with torch.no_grad():
            first = run(batch)
            changed = batch.clone()
            changed[1:] = fresh[1:]
            second = run(changed)
        if not (isinstance(first, torch.Tensor) and isinstance(second, torch.Tensor)):
            return
        if not torch.allclose(first[0], second[0], rtol=RTOL, atol=ATOL):
            self.fail(f"sample 0 of the output changed when only the other samples of `{arg_name}` changed.",
                      "one sample's result must not depend on its batch-mates: keep the batch dimension "
                      "first and never reshape or mix across it (e.g. a view that folds B into another "
                      "dimension, or an encoder that reads [B, L, D] as [L, B, D]).")
        self.passed("batch independence")

    def gradients(self, outputs: torch.Tensor, inputs: dict[str, torch.Tensor],
                  expected_outputs: torch.Tensor, expected_inputs: dict[str, torch.Tensor]) -> None:
        """Fail unless the gradient of a random projection of the output reaches each input as in the reference."""
        if not outputs.requires_grad:
            self.fail("the output is cut off from autograd: no gradient can reach "
                      f"{', '.join(f'`{name}`' for name in inputs)}.",
                      "do not use .detach(), .data, .item(), .numpy() or torch.tensor(...) on the way; "
                      "compute with torch operations on the inputs themselves.")
        generator = torch.Generator().manual_seed(1234)
        upstream = torch.randn(expected_outputs.shape, generator=generator, dtype=expected_outputs.dtype)
        got = torch.autograd.grad(outputs, list(inputs.values()), upstream, allow_unused=True)
        want = torch.autograd.grad(expected_outputs, list(expected_inputs.values()), upstream, allow_unused=True)
        for arg_name, got_grad, want_grad in zip(inputs, got, want, strict=True):
            if got_grad is None:
                self.fail(f"no gradient reaches `{arg_name}`: training could never update it.",
                          f"make sure `{arg_name}` is used in the computation of the output, "
                          "without .detach() or .data.")
            if not torch.allclose(got_grad, want_grad, rtol=RTOL, atol=ATOL):
                difference = (got_grad - want_grad).abs().max().item()
                self.fail(f"the gradient reaching `{arg_name}` differs from the reference "
                          f"(max abs difference {difference:.4g}).",
                          f"`{arg_name}` must enter the output exactly once, as in the formula.")
        self.passed("gradients")

    def report(self) -> bool:
        shown = ", ".join(self.properties)
        plural = "s" if self.configs != 1 else ""
        print(f"✓ {self.name}: all checks passed on {self.configs} configuration{plural} ({shown}).")
        return True


def _shape(value: torch.Tensor) -> str:
    return str(list(value.shape))


def _error_hint(error: Exception) -> str | None:
    message = str(error)
    if "view size is not compatible" in message:
        return ("after transpose/permute the tensor is not contiguous: use .reshape(...) instead of .view(...), "
                "or call .contiguous() first.")
    if "is invalid for input of size" in message:
        return "a reshape/view asks for sizes whose product is not the tensor's number of values: print the shapes."
    if "must match the size" in message or "Sizes of tensors must match" in message:
        return "two tensors do not line up: print their shapes; expand or slice one to match the other."
    if "mat1 and mat2 shapes cannot be multiplied" in message:
        return "in a @ b the last size of a must equal the first size of b: transpose one of them?"
    if isinstance(error, (NameError, AttributeError)):
        return "a name your function uses is not defined: did you run the setup cell above?"
    if isinstance(error, IndexError):
        return "an index goes past the end of a dimension: print the shapes."
    return "print the shapes of your intermediate tensors to find the line that goes wrong."


def _randn(generator: torch.Generator, *shape: int, grad: bool = False) -> torch.Tensor:
    return torch.randn(*shape, generator=generator).requires_grad_(grad)


def _leaf(value: torch.Tensor) -> torch.Tensor:
    return value.detach().clone().requires_grad_(True)


def _same(a: Any, b: torch.Tensor) -> bool:
    return (isinstance(a, torch.Tensor) and a.shape == b.shape
            and torch.allclose(a.detach().double(), b.detach().double(), rtol=RTOL, atol=ATOL))


def _match_hint(got: torch.Tensor, candidates: Sequence[tuple[Callable[[], torch.Tensor], str]]) -> str | None:
    """The hint of the first known mistake whose output equals `got`."""
    for make, hint in candidates:
        try:
            candidate = make()
        except Exception:  # noqa: BLE001 - a mistake that does not apply to these shapes
            continue
        if _same(got, candidate):
            return hint
    return None


_STRIPES = ("looks like reshape/view without permute: patches come out as stripes (whole image rows) "
            "instead of P x P squares. Use F.unfold then .transpose(1, 2), or reshape to "
            "[B, C, H/P, P, W/P, P] and permute to [B, H/P, W/P, C, P, P] before flattening.")
_CHANNEL_LAST = ("each patch holds the right pixels but flattened as (P, P, C): unfold's order is channel "
                 "first, then row, then column (C, P, P).")
_COLUMN_ORDER = ("the patches come column by column: the reading order is row by row "
                 "(patch 1 is to the right of patch 0, not below it).")


# --------------------------------------------------------------------------------------- stage 1 and 2


def _patch_configs(generator: torch.Generator) -> list[tuple[int, int, int, int, int]]:
    """(B, C, H, W, P): the article's first, then grayscale digits, non-square, odd sizes."""
    odd = int(torch.randint(2, 4, (1,), generator=generator))  # the last configuration varies with the seed
    return [(1, 3, 8, 8, 4), (4, 1, 8, 8, 2), (2, 3, 8, 12, 4), (3, 2, 3 * odd, 3 * (odd + 1), 3)]


def _patch_mistakes(image: torch.Tensor, P: int, then: Callable[[torch.Tensor], torch.Tensor] = lambda t: t
                    ) -> list[tuple[Callable[[], torch.Tensor], str]]:
    B, C, H, W = image.shape
    grid = image.reshape(B, C, H // P, P, W // P, P)  # [B, C, H/P, P, W/P, P]
    return [
        (lambda: then(image.reshape(B, (H // P) * (W // P), C * P * P)), _STRIPES),
        (lambda: then(grid.permute(0, 2, 4, 3, 5, 1).reshape(B, -1, C * P * P)), _CHANNEL_LAST),
        (lambda: then(grid.permute(0, 4, 2, 1, 3, 5).reshape(B, -1, C * P * P)), _COLUMN_ORDER),
        (lambda: then(F.unfold(image, P, stride=P)), "unfold gives [B, C*P*P, N]: transpose the last two "
                                                      "dimensions to get one row per patch, [B, N, C*P*P]."),
    ]


def _describe_patch(fn_output: torch.Tensor, C: int, H: int, W: int, P: int) -> str | None:
    """Run on an image whose pixels hold their own index; name the first patch that holds the wrong pixels."""
    expected = image_to_patches(torch.arange(C * H * W, dtype=torch.float32).reshape(1, C, H, W), P)[0]
    got = fn_output[0].detach()
    if got.shape != expected.shape:
        return None
    columns = W // P
    for n in range(expected.shape[0]):
        if torch.equal(got[n], expected[n]):
            continue
        held = got[n].round().long().clamp(0, C * H * W - 1)
        rows = sorted({int(i) % (H * W) // W for i in held})
        cols = sorted({int(i) % W for i in held})
        top, left = n // columns * P, n % columns * P
        want = f"rows {top}-{top + P - 1}, columns {left}-{left + P - 1}"
        if set(held.tolist()) == set(expected[n].long().tolist()):
            return None
        return (f"on an image whose pixels hold their own index, your patch {n} holds pixels from rows "
                f"{_span(rows)}, columns {_span(cols)}; it should hold {want}.")
    return None


def _span(values: list[int]) -> str:
    if not values:
        return "none"
    if values == list(range(values[0], values[-1] + 1)):
        return f"{values[0]}-{values[-1]}" if len(values) > 1 else f"{values[0]}"
    return ", ".join(str(v) for v in values[:6]) + (", ..." if len(values) > 6 else "")


def _check_image_to_patches(battery: _Battery, generator: torch.Generator) -> None:
    for B, C, H, W, P in _patch_configs(generator):
        battery.start(f"B={B}, C={C}, H={H}, W={W}, patch_size={P}")
        image = _randn(generator, B, C, H, W)
        original = image.clone()
        expected = image_to_patches(image, P)  # [B, N, C*P*P]

        def diagnose(got: torch.Tensor, image: torch.Tensor = image, P: int = P, C: int = C, H: int = H,
                     W: int = W) -> str | None:
            hint = _match_hint(got, _patch_mistakes(image, P))
            if hint:
                return hint
            indexed = torch.arange(C * H * W, dtype=torch.float32).reshape(1, C, H, W)
            try:
                return _describe_patch(battery.fn(indexed, P), C, H, W, P)
            except Exception:  # noqa: BLE001
                return None

        battery.tensor(battery.call(image, P), expected, diagnose=diagnose)
        battery.unchanged({"image": original}, {"image": image})
        battery.passed("shapes")
        battery.passed("values vs vitsteps")
        battery.passed("patch order")
        if B > 1:
            battery.independent(lambda batch, P=P: battery.call(batch, P), image, _randn(generator, B, C, H, W),
                                "image")
        leaf, reference = _leaf(image), _leaf(image)
        battery.gradients(battery.call(leaf, P), {"image": leaf}, image_to_patches(reference, P),
                          {"image": reference})


def _check_image2emb_naive(battery: _Battery, generator: torch.Generator) -> None:
    dims = [8, 5, 16, 6]
    for (B, C, H, W, P), D in zip(_patch_configs(generator), dims, strict=True):
        battery.start(f"B={B}, C={C}, H={H}, W={W}, patch_size={P}, weight [{C * P * P}, {D}]")
        image = _randn(generator, B, C, H, W)
        weight = _randn(generator, C * P * P, D)
        originals = {"image": image.clone(), "weight": weight.clone()}
        expected = patch_embed_unfold(image, P, weight)  # [B, N, D]

        def diagnose(got: torch.Tensor, image: torch.Tensor = image, P: int = P,
                     weight: torch.Tensor = weight) -> str | None:
            mistakes = _patch_mistakes(image, P, then=lambda patches: patches @ weight)
            return _match_hint(got, mistakes)

        battery.tensor(battery.call(image, P, weight), expected, diagnose=diagnose)
        battery.unchanged(originals, {"image": image, "weight": weight})
        battery.passed("shapes")
        battery.passed("values vs vitsteps")
        battery.passed("patch order")
        if B > 1:
            battery.independent(lambda batch, P=P, weight=weight: battery.call(batch, P, weight), image,
                                _randn(generator, B, C, H, W), "image")
        leaves = {"image": _leaf(image), "weight": _leaf(weight)}
        references = {"image": _leaf(image), "weight": _leaf(weight)}
        battery.gradients(battery.call(leaves["image"], P, leaves["weight"]), leaves,
                          patch_embed_unfold(references["image"], P, references["weight"]), references)


def _check_weight_to_kernel(battery: _Battery, generator: torch.Generator) -> None:
    for C, P, D in [(3, 4, 8), (1, 2, 5), (2, 3, 4), (4, 1, 3)]:
        battery.start(f"weight [{C * P * P}, {D}], in_chans={C}, patch_size={P}")
        weight = _randn(generator, C * P * P, D)
        original = weight.clone()
        expected = weight_to_kernel(weight, C, P)  # [D, C, P, P]

        def diagnose(got: torch.Tensor, weight: torch.Tensor = weight, C: int = C, P: int = P) -> str | None:
            return _match_hint(got, [
                (lambda: weight.reshape(-1, C, P, P),
                 "reshape without transpose: weight's rows index the C*P*P values of a patch and its columns "
                 "the D outputs, so transpose to [D, C*P*P] first, then reshape to [D, C, P, P]."),
                (lambda: weight.reshape(P, P, C, -1).permute(3, 2, 0, 1),
                 "the patch values are read as (P, P, C); unfold's order is (C, P, P)."),
                (lambda: weight.T.reshape(-1, C, P, P).transpose(-1, -2),
                 "rows and columns of each kernel are swapped: do not transpose the last two dimensions."),
            ])

        got = battery.tensor(battery.call(weight, C, P), expected, diagnose=diagnose)
        battery.unchanged({"weight": original}, {"weight": weight})
        image = _randn(generator, 2, C, 2 * P, 3 * P)
        if not torch.allclose(F.conv2d(image, got.detach(), stride=P).flatten(2).transpose(1, 2),
                              patch_embed_unfold(image, P, weight), rtol=RTOL, atol=ATOL):
            battery.fail("a convolution with your kernel does not reproduce unfold @ weight.")
        battery.passed("shapes")
        battery.passed("values vs vitsteps")
        battery.passed("conv equals unfold @ weight")
        leaf, reference = _leaf(weight), _leaf(weight)
        battery.gradients(battery.call(leaf, C, P), {"weight": leaf}, weight_to_kernel(reference, C, P),
                          {"weight": reference})


def _check_image2emb_conv(battery: _Battery, generator: torch.Generator) -> None:
    dims = [8, 5, 16, 6]
    for (B, C, H, W, P), D in zip(_patch_configs(generator), dims, strict=True):
        battery.start(f"B={B}, C={C}, H={H}, W={W}, kernel [{D}, {C}, {P}, {P}], stride={P}")
        image = _randn(generator, B, C, H, W)
        kernel = _randn(generator, D, C, P, P)
        originals = {"image": image.clone(), "kernel": kernel.clone()}
        expected = patch_embed_conv(image, kernel, P)  # [B, N, D]

        def diagnose(got: torch.Tensor, image: torch.Tensor = image, kernel: torch.Tensor = kernel,
                     P: int = P) -> str | None:
            feature_map = F.conv2d(image, kernel, stride=P)  # [B, D, H/P, W/P]
            B, D = feature_map.shape[:2]
            return _match_hint(got, [
                (lambda: feature_map.reshape(B, -1, D),
                 "looks like reshape/view without transpose: conv2d gives [B, D, H/P, W/P]; flatten to "
                 "[B, D, N] and then .transpose(1, 2) to get [B, N, D]. A reshape straight to [B, N, D] "
                 "mixes the channels of different patches."),
                (lambda: feature_map.reshape(B, D, -1),
                 "conv2d's output is [B, D, ...]: after flattening the grid, transpose(1, 2) to get one row "
                 "per patch, [B, N, D]."),
                (lambda: feature_map.transpose(-1, -2).flatten(2).transpose(1, 2), _COLUMN_ORDER),
                (lambda: F.conv2d(image, kernel, stride=1).flatten(2).transpose(1, 2),
                 "the convolution must step by the patch size: pass stride=stride to F.conv2d."),
            ])

        battery.tensor(battery.call(image, kernel, P), expected, diagnose=diagnose)
        battery.unchanged(originals, {"image": image, "kernel": kernel})
        battery.passed("shapes")
        battery.passed("values vs vitsteps")
        battery.passed("patch order")
        if B > 1:
            battery.independent(lambda batch, kernel=kernel, P=P: battery.call(batch, kernel, P), image,
                                _randn(generator, B, C, H, W), "image")
        leaves = {"image": _leaf(image), "kernel": _leaf(kernel)}
        references = {"image": _leaf(image), "kernel": _leaf(kernel)}
        battery.gradients(battery.call(leaves["image"], leaves["kernel"], P), leaves,
                          patch_embed_conv(references["image"], references["kernel"], P), references)


# --------------------------------------------------------------------------------------- stage 3 and 4


def _check_prepend_cls_token(battery: _Battery, generator: torch.Generator) -> None:
    for B, N, D in [(1, 4, 8), (3, 4, 8), (2, 16, 5), (4, 1, 3)]:
        battery.start(f"patch_tokens [{B}, {N}, {D}], cls_token [1, 1, {D}]")
        patch_tokens = _randn(generator, B, N, D)
        cls_token = _randn(generator, 1, 1, D)
        originals = {"patch_tokens": patch_tokens.clone(), "cls_token": cls_token.clone()}
        expected = prepend_cls_token(patch_tokens, cls_token)  # [B, N+1, D]

        def diagnose(got: torch.Tensor, patch_tokens: torch.Tensor = patch_tokens,
                     cls_token: torch.Tensor = cls_token) -> str | None:
            B = patch_tokens.shape[0]
            return _match_hint(got, [
                (lambda: torch.cat([patch_tokens, cls_token.expand(B, -1, -1)], dim=1),
                 "the CLS token must come first (position 0), not after the patches."),
                (lambda: torch.cat([cls_token.expand(B, -1, -1), patch_tokens], dim=2),
                 "concatenate along the token dimension (dim=1), not the feature dimension."),
            ]) or ("expand the single [1, 1, D] token to [B, 1, D] with .expand(B, -1, -1), then "
                   "torch.cat([cls, patch_tokens], dim=1).")

        battery.tensor(battery.call(patch_tokens, cls_token), expected, diagnose=diagnose)
        battery.unchanged(originals, {"patch_tokens": patch_tokens, "cls_token": cls_token})
        battery.passed("shapes")
        battery.passed("values vs vitsteps")
        battery.passed("token order")
        if B > 1:
            battery.independent(lambda batch, cls_token=cls_token: battery.call(batch, cls_token), patch_tokens,
                                _randn(generator, B, N, D), "patch_tokens")
        leaves = {"patch_tokens": _leaf(patch_tokens), "cls_token": _leaf(cls_token)}
        references = {"patch_tokens": _leaf(patch_tokens), "cls_token": _leaf(cls_token)}
        battery.gradients(battery.call(leaves["patch_tokens"], leaves["cls_token"]), leaves,
                          prepend_cls_token(references["patch_tokens"], references["cls_token"]), references)


def _check_add_position_embedding(battery: _Battery, generator: torch.Generator) -> None:
    for B, L, rows, D in [(1, 5, 16, 8), (3, 5, 16, 8), (2, 17, 17, 4), (4, 2, 10, 6)]:
        battery.start(f"tokens [{B}, {L}, {D}], position_table [{rows}, {D}]")
        tokens = _randn(generator, B, L, D)
        table = _randn(generator, rows, D)
        originals = {"tokens": tokens.clone(), "position_table": table.clone()}
        expected = add_position_embedding(tokens, table)  # [B, L, D]

        def diagnose(got: torch.Tensor, tokens: torch.Tensor = tokens, table: torch.Tensor = table) -> str | None:
            L = tokens.shape[1]
            return _match_hint(got, [
                (lambda: tokens,
                 "the output equals the input tokens: the position table was never added (the original "
                 "article's bug), so the model cannot tell where a patch came from."),
                (lambda: tokens + table[-L:],
                 "take the FIRST L rows of the table (table[:L]): row i belongs to position i."),
                (lambda: tokens + table[1:L + 1],
                 "off by one: row 0 of the table belongs to the CLS token at position 0, so use table[:L]."),
                (lambda: tokens * table[:L],
                 "the position embedding is added (+), not multiplied."),
            ])

        battery.tensor(battery.call(tokens, table), expected, diagnose=diagnose)
        battery.unchanged(originals, {"tokens": tokens, "position_table": table})
        battery.passed("shapes")
        battery.passed("values vs vitsteps")
        if B > 1:
            battery.independent(lambda batch, table=table: battery.call(batch, table), tokens,
                                _randn(generator, B, L, D), "tokens")
        leaves = {"tokens": _leaf(tokens), "position_table": _leaf(table)}
        references = {"tokens": _leaf(tokens), "position_table": _leaf(table)}
        battery.gradients(battery.call(leaves["tokens"], leaves["position_table"]), leaves,
                          add_position_embedding(references["tokens"], references["position_table"]), references)


# --------------------------------------------------------------------------------------- stage 5


def _reference_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    weights = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(dim=-1)  # [..., L, L]
    return weights @ v, weights  # [..., L, d], [..., L, L]


def _check_scaled_dot_product(battery: _Battery, generator: torch.Generator) -> None:
    for shape in [(1, 5, 8), (2, 3, 5, 4), (3, 7, 16), (2, 8, 5, 1)]:
        *lead, L, d = shape
        battery.start(f"q, k, v {list(shape)}")
        q, k, v = (_randn(generator, *shape) * 2 for _ in range(3))
        originals = {"q": q.clone(), "k": k.clone(), "v": v.clone()}
        expected_out, expected_weights = _reference_attention(q, k, v)
        result = battery.call(q, k, v)
        if not (isinstance(result, tuple) and len(result) == 2):
            battery.fail(f"expected a pair (output [{', '.join(map(str, [*lead, L, d]))}], weights "
                         f"[{', '.join(map(str, [*lead, L, L]))}]), got {type(result).__name__}"
                         + (f" of length {len(result)}" if isinstance(result, (tuple, list)) else "") + ".",
                         "end with `return weights @ v, weights`.")
        out, weights = result

        def diagnose(got: torch.Tensor, q: torch.Tensor = q, k: torch.Tensor = k) -> str | None:
            scores = q @ k.transpose(-2, -1)  # [..., L, L]
            d = q.shape[-1]
            return _match_hint(got, [
                (lambda: scores.softmax(-1), "the scores are not scaled: divide q @ k^T by sqrt(d) before the "
                                             "softmax, or large d makes the softmax saturate."),
                (lambda: (scores / d).softmax(-1), "divide by sqrt(d) (math.sqrt(q.shape[-1])), not by d."),
                (lambda: (scores / math.sqrt(d)).softmax(-2),
                 "softmax over the last dimension (dim=-1): each query's weights over the keys sum to 1."),
                (lambda: scores / math.sqrt(d), "apply the softmax to the scaled scores."),
            ])

        battery.tensor(weights, expected_weights, "the attention weights (second value)", diagnose=diagnose)
        if not torch.allclose(weights.detach().sum(-1), torch.ones(()), atol=1e-4):
            battery.fail("the rows of the attention weights do not sum to 1.", "softmax over dim=-1.")
        battery.tensor(out, expected_out, "the output (first value)",
                       diagnose=lambda got, v=v, weights=expected_weights: _match_hint(got, [
                           (lambda: weights.transpose(-2, -1) @ v, "multiply weights @ v, not weights^T @ v."),
                           (lambda: v, "return weights @ v, the weighted average of the values."),
                       ]))
        battery.unchanged(originals, {"q": q, "k": k, "v": v})
        battery.passed("shapes")
        battery.passed("values vs reference")
        battery.passed("rows sum to 1")
        leaves = {name: _leaf(t) for name, t in (("q", q), ("k", k), ("v", v))}
        references = {name: _leaf(t) for name, t in (("q", q), ("k", k), ("v", v))}
        got_out = battery.call(*leaves.values())[0]
        battery.gradients(got_out, leaves, _reference_attention(*references.values())[0], references)


def _check_split_heads(battery: _Battery, generator: torch.Generator) -> None:
    for B, L, D, h in [(1, 5, 8, 8), (2, 5, 8, 2), (3, 17, 12, 3), (2, 4, 6, 1)]:
        d = D // h
        battery.start(f"x [{B}, {L}, {D}], num_heads={h}")
        x = _randn(generator, B, L, D)
        original = x.clone()
        expected = x.reshape(B, L, h, d).transpose(1, 2)  # [B, h, L, d]

        def diagnose(got: torch.Tensor, x: torch.Tensor = x, h: int = h) -> str | None:
            B, L, D = x.shape
            return _match_hint(got, [
                (lambda: x.reshape(B, h, L, D // h),
                 "looks like reshape/view without permute: a head must get a slice of the feature "
                 "dimension for every token, not a block of consecutive tokens. Reshape to [B, L, h, d] "
                 "then .transpose(1, 2)."),
                (lambda: x.reshape(B, L, D // h, h).permute(0, 3, 1, 2),
                 "split D as (h, d), not (d, h): head i takes features i*d to (i+1)*d - 1."),
                (lambda: x.reshape(B, L, h, D // h),
                 "heads must come before tokens, [B, h, L, d]: add .transpose(1, 2)."),
            ])

        battery.tensor(battery.call(x, h), expected, diagnose=diagnose)
        battery.unchanged({"x": original}, {"x": x})
        battery.passed("shapes")
        battery.passed("values vs reference")
        battery.passed("head order")
        if B > 1:
            battery.independent(lambda batch, h=h: battery.call(batch, h), x, _randn(generator, B, L, D), "x")
        leaf, reference = _leaf(x), _leaf(x)
        battery.gradients(battery.call(leaf, h), {"x": leaf}, reference.reshape(B, L, h, d).transpose(1, 2),
                          {"x": reference})


# --------------------------------------------------------------------------------------- stage 6


def _check_cls_head_loss(battery: _Battery, generator: torch.Generator) -> None:
    for B, L, D, K in [(1, 5, 8, 10), (4, 5, 8, 10), (3, 17, 16, 3), (6, 2, 4, 7)]:
        battery.start(f"encoder_output [{B}, {L}, {D}], head nn.Linear({D}, {K}), labels [{B}]")
        encoder_output = _randn(generator, B, L, D)
        labels = torch.randint(0, K, (B,), generator=generator)
        with torch.random.fork_rng(devices=[]):  # leave the caller's random state alone
            head = nn.Linear(D, K)
        with torch.no_grad():
            head.weight.copy_(_randn(generator, K, D) / math.sqrt(D))
            head.bias.copy_(_randn(generator, K) * 0.1)
        originals = {"encoder_output": encoder_output.clone(), "labels": labels.clone()}
        with torch.no_grad():
            expected_logits = head(encoder_output[:, 0])  # [B, K]
            expected_loss = F.cross_entropy(expected_logits, labels)
        result = battery.call(encoder_output, head, labels)
        if not (isinstance(result, tuple) and len(result) == 2):
            battery.fail(f"expected a pair (logits [{B}, {K}], loss), got {type(result).__name__}.",
                         "end with `return logits, loss`.")
        logits, loss = result

        def diagnose(got: torch.Tensor, x: torch.Tensor = encoder_output, head: nn.Linear = head) -> str | None:
            return _match_hint(got, [
                (lambda: head(x.mean(dim=1)), "you averaged all tokens: ViT classifies from the CLS token alone, "
                                              "encoder_output[:, 0]."),
                (lambda: head(x[:, -1]), "the CLS token is the FIRST token, encoder_output[:, 0], not the last."),
                (lambda: head(x[:, 1]), "the CLS token is at index 0, encoder_output[:, 0]."),
                (lambda: head(x[:, 0]).softmax(-1), "return raw logits (no softmax): cross_entropy applies "
                                                     "log-softmax itself."),
            ])

        battery.tensor(logits, expected_logits, "the logits (first value)", diagnose=diagnose)
        if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
            battery.fail(f"the loss (second value) should be a scalar tensor, got "
                         f"{_shape(loss) if isinstance(loss, torch.Tensor) else type(loss).__name__}.",
                         "F.cross_entropy(logits, labels) averages over the batch to one number; keep it a tensor "
                         "(no .item()) so that backward works.")

        def diagnose_loss(got: torch.Tensor, logits: torch.Tensor = expected_logits,
                          labels: torch.Tensor = labels) -> str | None:
            return _match_hint(got, [
                (lambda: F.cross_entropy(logits.softmax(-1), labels),
                 "cross_entropy takes raw logits: do not apply softmax before it."),
                (lambda: F.cross_entropy(logits, labels, reduction="sum"),
                 "average the loss over the batch (the default reduction='mean'), not the sum."),
                (lambda: F.nll_loss(logits, labels),
                 "nll_loss expects log-probabilities: use F.cross_entropy on the logits."),
                (lambda: F.cross_entropy(logits, labels.flip(0)), "pair each sample with its own label."),
            ])

        battery.tensor(loss, expected_loss, "the loss (second value)", diagnose=diagnose_loss)
        battery.unchanged(originals, {"encoder_output": encoder_output, "labels": labels})
        battery.passed("shapes")
        battery.passed("values vs reference")
        battery.passed("CLS token read")
        if B > 1:
            battery.independent(lambda batch, head=head, labels=labels: battery.call(batch, head, labels)[0],
                                encoder_output, _randn(generator, B, L, D), "encoder_output")
        head.zero_grad(set_to_none=True)
        leaf = _leaf(encoder_output)
        result = battery.call(leaf, head, labels)
        if isinstance(result[1], torch.Tensor) and result[1].requires_grad:
            result[1].backward()
        if head.weight.grad is None or head.bias.grad is None or leaf.grad is None:
            battery.fail("after loss.backward() the head's weight and bias have no gradient.",
                         "compute the loss from the logits with torch operations (no .item(), .detach(), "
                         "torch.tensor(...)), so that training can update the head.")
        got_grads = (head.weight.grad.clone(), head.bias.grad.clone(), leaf.grad.clone())
        head.zero_grad(set_to_none=True)
        reference = _leaf(encoder_output)
        F.cross_entropy(head(reference[:, 0]), labels).backward()
        want_grads = (head.weight.grad, head.bias.grad, reference.grad)
        head.zero_grad(set_to_none=True)
        for what, got_grad, want_grad in zip(("head.weight", "head.bias", "encoder_output"), got_grads, want_grads,
                                             strict=True):
            if not torch.allclose(got_grad, want_grad, rtol=RTOL, atol=ATOL):
                battery.fail(f"the gradient reaching {what} differs from the reference "
                             f"(max abs difference {(got_grad - want_grad).abs().max().item():.4g}).")
        battery.passed("gradients")


def _random_config(generator: torch.Generator) -> ViTConfig:
    pick = random.Random(int(torch.randint(0, 2**31, (1,), generator=generator)))
    patch_size = pick.choice([2, 4, 7, 16])
    heads = pick.choice([1, 2, 3, 4])
    return ViTConfig(img_size=patch_size * pick.randint(1, 8), patch_size=patch_size,
                     in_chans=pick.choice([1, 3]), num_classes=pick.randint(1, 20),
                     embed_dim=heads * pick.choice([4, 8, 16]), depth=pick.randint(1, 6), num_heads=heads,
                     mlp_ratio=pick.choice([1.0, 2.0, 4.0]))


def _check_vit_parameter_count(battery: _Battery, generator: torch.Generator) -> None:
    configs = [("the article's toy", ViTConfig(img_size=8, patch_size=4, in_chans=3, num_classes=10, embed_dim=8,
                                               depth=6, num_heads=8)),
               ("ViT-B/16", ViTConfig()),
               ("digits, 2x2 patches", ViTConfig(img_size=8, patch_size=2, in_chans=1, num_classes=10,
                                                 embed_dim=64, depth=4, num_heads=4, mlp_ratio=2.0)),
               ("random", _random_config(generator)),
               ("random", _random_config(generator))]
    for label, config in configs:
        fields = ", ".join(f"{f.name}={getattr(config, f.name)}" for f in dataclasses.fields(ViTConfig)
                           if f.name in ("img_size", "patch_size", "in_chans", "num_classes", "embed_dim", "depth",
                                         "num_heads", "mlp_ratio"))
        battery.start(f"{label}: {fields}")
        parts = parameter_formula(config)
        expected = parts["total"]
        got = battery.call(config)
        got = _as_int(got)
        if got is None:
            battery.fail(f"expected an int, got {type(battery.last).__name__} {battery.last!r}.",
                         "return a whole number (an int), e.g. `return total`.")
        if got != expected:
            battery.fail(f"expected {expected:,} parameters, got {got:,} (off by {got - expected:+,}).",
                         _count_hint(config, parts, got))
        battery.passed("toy, ViT-B/16, digits and random configurations")
    battery.passed("values vs vitsteps.parameter_formula")


def _as_int(value: Any) -> int | None:
    """`value` as an int if it is a whole number (int, NumPy or 0-d tensor integer, integral float), else None."""
    if isinstance(value, bool) or isinstance(value, (str, bytes)):
        return None
    if isinstance(value, torch.Tensor):
        value = value.item() if value.numel() == 1 else None
    try:
        return operator.index(value)
    except TypeError:
        pass
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _count_hint(config: ViTConfig, parts: dict[str, int], got: int) -> str:
    D, K, depth = config.embed_dim, config.num_classes, config.depth
    missing = parts["total"] - got
    known = {
        parts["pos_embed"]: "the position table, (N + 1) x D",
        parts["cls_token"]: "the CLS token (D), or one row of the position table (it has N + 1 rows, CLS included)",
        parts["head"]: "the head, D x K + K",
        K: "the head's bias (K)",
        parts["norm"]: "the final LayerNorm (2D)",
        depth * 4 * D: "the two LayerNorms of every block (2 x 2D each)",
        depth * 4 * D + 2 * D: "all LayerNorms (4D per block and 2D at the end)",
        depth * 3 * D: "the qkv bias (3D per block)",
        parts["patch_embed"]: "the patch embedding, C*P*P x D + D",
        D * config.in_chans * config.patch_size ** 2: "the patch embedding's weight",
        depth * (D * config.mlp_hidden * 2 + config.mlp_hidden + D): "the MLPs",
        depth * (D * D + D): "the attention output projection (D x D + D per block)",
        depth * (3 * D * D + 3 * D): "the qkv projection (3D x D + 3D per block)",
    }
    for amount, part in known.items():
        if amount and missing == amount:
            return f"the difference is exactly {part}: did you leave it out?"
        if amount and missing == -amount:
            return f"the difference is exactly {part}: counted twice?"
    if missing % depth == 0 and depth > 1:
        return (f"the difference is {missing // depth:+,} per block: recount one block "
                "(norm1, qkv, proj, norm2, fc1, fc2, with their biases).")
    return ("add up the parts: patch embedding (C*P*P*D + D), CLS token (D), position table ((N+1)*D), "
            "depth blocks, final norm (2D), head (D*K + K).")


# --------------------------------------------------------------------------------------- entry point

_BATTERIES: dict[str, tuple[Callable[[_Battery, torch.Generator], None], str]] = {
    "image_to_patches": (_check_image_to_patches, "fn(image [B,C,H,W], patch_size) -> [B, N, C*P*P]"),
    "image2emb_naive": (_check_image2emb_naive, "fn(image [B,C,H,W], patch_size, weight [C*P*P, D]) -> [B, N, D]"),
    "weight_to_kernel": (_check_weight_to_kernel, "fn(weight [C*P*P, D], in_chans, patch_size) -> [D, C, P, P]"),
    "image2emb_conv": (_check_image2emb_conv, "fn(image [B,C,H,W], kernel [D,C,P,P], stride) -> [B, N, D]"),
    "prepend_cls_token": (_check_prepend_cls_token, "fn(patch_tokens [B,N,D], cls_token [1,1,D]) -> [B, N+1, D]"),
    "add_position_embedding": (_check_add_position_embedding,
                               "fn(tokens [B,L,D], position_table [max_num_token, D]) -> [B, L, D]"),
    "scaled_dot_product": (_check_scaled_dot_product, "fn(q, k, v [..., L, d]) -> (out [..., L, d], weights)"),
    "split_heads": (_check_split_heads, "fn(x [B,L,D], num_heads) -> [B, h, L, d]"),
    "cls_head_loss": (_check_cls_head_loss,
                      "fn(encoder_output [B,L,D], head nn.Linear, labels [B]) -> (logits [B,K], scalar loss)"),
    "vit_parameter_count": (_check_vit_parameter_count, "fn(config: ViTConfig) -> int"),
}


def names() -> dict[str, str]:
    """The exercises `check` knows, each with the signature it expects."""
    return {name: signature for name, (_, signature) in _BATTERIES.items()}


def check(name: str, fn: Callable[..., Any], *, seed: int = 0) -> bool:
    """Run the self-check `name` on a student's function `fn`.

    Args:
        name: which exercise, one of `names()` (e.g. "image_to_patches").
        fn: the student's function, called with the signature listed in `names()`.
        seed: seeds the random inputs; graders use another seed than the visible check.

    Returns:
        True, after printing one line that says what passed.

    Raises:
        CheckFailed: with the configuration, the problem and a hint (shown without a traceback in Jupyter).
        ValueError: `name` is not a known exercise.
        TypeError: `fn` is not callable, or `seed` is not an int.
    """
    if not isinstance(name, str) or name not in _BATTERIES:
        raise ValueError(f"name must be one of {sorted(_BATTERIES)}, got {name!r}; "
                         f"use the name given in the exercise.")
    if not callable(fn):
        raise TypeError(f"fn must be a function, got {type(fn).__name__} {fn!r}; pass the function itself, "
                        f"without calling it: check({name!r}, my_function).")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise TypeError(f"seed must be an int >= 0, got {seed!r}.")
    run, _ = _BATTERIES[name]
    battery = _Battery(name, fn)
    generator = torch.Generator().manual_seed(seed)
    run(battery, generator)
    return battery.report()
