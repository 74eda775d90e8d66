"""An exercise as data, and the one loop that checks a student's function against it.

An `Exercise` says how to make its `Case`s, what the right answer is, and which classic `Mistake`s to recognise by
their output. The instructor's table (`vitcourse.judge.exercises`, never installed for students) holds the cases'
generator, the reference and the mistakes' code; the student package ships only what they gave on its public cases
(`public`): the right outputs and each mistake's output, so the self-check can say what is wrong and why without
the solution being in reach. `compare` says what differs between an output and the right one, with a hint; it calls
no student code, so a grader runs it in its own process on outputs it received as plain data. `run` is the
student-side loop: for each case it calls the function on copies of the arguments with the routes the exercise rules
out closed (`routes`), compares, checks that the arguments were left as they were, and raises `CheckFailed` on the
first problem or prints one line when everything passes.
"""
from __future__ import annotations

import copy
import inspect
import math
import numbers
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from . import routes

GRADIENT_SEED = 1234  # seeds the fixed random weights W of the gradient check, sum(output * W) (`grad_weights`)
_ORDINALS = ("first", "second", "third", "fourth")


@dataclass(frozen=True)
class Case:
    """One input to check a function on.

    Attributes:
        label: how messages name the case, e.g. "B=1, C=3, H=8, W=8, patch_size=4"; cases that share a label
            count as one configuration.
        args: tensors (float32/float64/int64/bool), ints, floats, bools, strings, None, tuples or lists of those,
            a `vitsteps.ViTConfig` or a `torch.nn.Linear`.
        kwargs: keyword arguments, of the same types.
        grad_args: positions of the tensor arguments whose gradients are compared as well.
        note: what a failure on this case alone most likely means, shown when no known mistake matches.
    """

    label: str
    args: tuple
    kwargs: Mapping[str, object] = field(default_factory=dict)
    grad_args: tuple[int, ...] = ()
    note: str = ""


@dataclass(frozen=True)
class Mistake:
    """A classic mistake, recognised by its output.

    Attributes:
        name: e.g. "view without permute".
        imitate: what the wrong code returns on the same arguments; inside a returned tuple, None matches anything
            (None in the student package, which ships only what it returned on the public cases).
        hint: names the mistake and where to look, without giving the solution's code.
    """

    name: str
    imitate: Callable[..., object] | None
    hint: str


@dataclass(frozen=True)
class Exercise:
    """One graded exercise: the function students write, how to check it, and where it sits in the series.

    Attributes:
        name: the function students write; `check`'s first argument.
        notebook: notebook stem, e.g. "01_patches_unfold".
        grade_id: nbgrader grade id of the solution cell, e.g. "ex01_image_to_patches".
        make_cases: the cases, the same for the same generator seed (None in the student package).
        reference: the right answer, written without the package's code for this stage (None in the student
            package, which ships the reference's outputs on the public cases instead).
        mistakes: known classic mistakes, tried in order when an output differs.
        forbidden: the routes a solution must not take: dotted names ("torch.nn.functional.unfold") and the ATen
            operators behind them ("aten::im2col"), closed while the function runs (`routes`).
        package_reference: the vitsteps callables that already solve it (closed too).
        rtol, atol: how close an output must be to the reference (`torch.allclose`).
        signature: the call students write, for `names()`.
        outputs: names of the returned values, for messages ("logits", "loss").
        passes: what the pass line says was checked.
        explain: for a wrong output that no mistake matches, a hint worked out from the case, the output and the
            right output (`hints`).
        arguments: the names of the function's arguments (taken from the reference when not given).
    """

    name: str
    notebook: str
    grade_id: str
    make_cases: Callable[[torch.Generator], list[Case]] | None
    reference: Callable[..., object] | None
    mistakes: tuple[Mistake, ...] = ()
    forbidden: tuple[str, ...] = ()
    package_reference: tuple[str, ...] = ()
    rtol: float = 1e-5
    atol: float = 1e-6
    signature: str = ""
    outputs: tuple[str, ...] = ("output",)
    passes: tuple[str, ...] = ()
    explain: Callable[[Case, object, object], str | None] | None = None
    arguments: tuple[str, ...] = ()

    @property
    def arg_names(self) -> list[str]:
        """The names of the function's arguments, as the reference calls them."""
        if self.arguments or self.reference is None:
            return list(self.arguments)
        return list(inspect.signature(self.reference).parameters)

    @property
    def routes(self) -> tuple[str, ...]:
        """Every route a solution must not take: the forbidden ones and the package's own solutions."""
        return tuple(dict.fromkeys(self.forbidden + self.package_reference))


class CheckFailed(AssertionError):
    """A self-check found a problem. Jupyter renders it as its message alone, without a traceback.

    It is still an error, so the cell stops there and an autograder scores the cell 0.
    """

    def _render_traceback_(self) -> list[str]:
        """What IPython prints instead of a traceback: the message, in red."""
        return [f"\x1b[31m{line}\x1b[0m" if index == 0 else line
                for index, line in enumerate(str(self).splitlines())]


# --------------------------------------------------------------------------------------- verdict


@dataclass(frozen=True)
class Answer:
    """What a function should give on one case, and what each classic mistake gives there.

    Attributes:
        case: the inputs.
        expected: the right output.
        imitated: one entry per mistake of the exercise, in order: what it returns here, or `NOT_APPLICABLE`.
        expected_grads: the right gradients of `case.grad_args` (`gradients`), or None when the case has none.
    """

    case: Case
    expected: object
    imitated: tuple = ()
    expected_grads: tuple | None = None


NOT_APPLICABLE = "not applicable"  # a mistake that cannot happen on a case (its code raised there)


def answer(exercise: Exercise, case: Case) -> Answer:
    """The reference's output on `case` (and its gradients), and each mistake's: needs the instructor's table."""
    if exercise.reference is None:
        raise ValueError(f"the exercise {exercise.name!r} has no reference here: the student package ships only its "
                         f"public cases; load the instructor's table (vitcourse.judge.exercises) to grade others.")
    expected = exercise.reference(*_copies(case.args), **_copies(case.kwargs))
    imitated = []
    for mistake in exercise.mistakes:
        try:
            imitated.append(mistake.imitate(*_copies(case.args), **_copies(case.kwargs)))
        except Exception:  # noqa: BLE001 - a mistake that cannot happen with these shapes
            imitated.append(NOT_APPLICABLE)
    grads = gradients(exercise.reference, case) if case.grad_args else None
    return Answer(case, expected, tuple(imitated), grads)


def compare(exercise: Exercise, right: Answer, got: object, got_grads: tuple | None = None) -> str | None:
    """None when `got` (and `got_grads`, from `gradients`) match the right answer; otherwise what differs (type,
    shape, dtype, largest difference) and, on a line of its own, a hint: the matched mistake's, or one worked out
    from the output. The caller names the case (`run` puts its label in the first line)."""
    case = right.case
    problem, hint = _difference(exercise, got, right.expected)
    if problem:
        explained = exercise.explain(case, got, right.expected) if exercise.explain is not None else None
        return _message(problem, _mistake(exercise, right, got) or explained or case.note or hint)
    if got_grads is not None and right.expected_grads is not None:
        return _message(*_gradient_difference(exercise, case, got_grads, right.expected_grads))
    return None


def verdict(exercise: Exercise, case: Case, got: object, got_grads: tuple | None = None) -> str | None:
    """`compare` with the right answer worked out by the exercise's reference (the instructor's table)."""
    return compare(exercise, answer(exercise, case), got, got_grads)


def grad_weights(case: Case, output: object) -> list[torch.Tensor | None]:
    """The fixed random weights `W_i` of the gradient check, one per floating-point tensor of `output` (None for
    anything else). They depend on the output's shapes alone, so the student's process, the grader's and the
    reference all weight the same output the same way."""
    generator = torch.Generator().manual_seed(GRADIENT_SEED)
    outputs = list(output) if isinstance(output, (tuple, list)) else [output]
    return [torch.randn(tuple(value.shape), generator=generator, dtype=value.dtype)  # the shape of output i
            if isinstance(value, torch.Tensor) and value.is_floating_point() else None for value in outputs]


def gradients(fn: Callable[..., object], case: Case) -> tuple:
    """The gradients that reach the tensors `case.grad_args` when `fn` runs on copies of the case's arguments
    and `sum(output_i * W_i)` is backpropagated, `W_i` from `grad_weights`.

    Returns:
        One entry per grad arg: the tensor's gradient, or None where no gradient arrives.
    """
    args, kwargs = list(_copies(case.args)), _copies(case.kwargs)
    for index in case.grad_args:
        args[index] = args[index].detach().clone().requires_grad_(True)  # the same shape, a leaf for its gradient
    output = fn(*args, **kwargs)
    total = None
    for value, weight in zip(output if isinstance(output, (tuple, list)) else (output,), grad_weights(case, output),
                             strict=True):
        if weight is not None and value.requires_grad:
            total = (value * weight).sum() if total is None else total + (value * weight).sum()
    if total is not None:
        total.backward()
    return tuple(args[index].grad for index in case.grad_args)


def _message(problem: str | None, hint: str | None = None) -> str | None:
    return None if problem is None else problem + (f"\nhint: {hint}" if hint else "")


def _shape(value: torch.Tensor) -> str:
    return str(list(value.shape))


def _described(value: object) -> str:
    return _shape(value) if isinstance(value, torch.Tensor) else type(value).__name__


def _difference(exercise: Exercise, got: object, expected: object) -> tuple[str | None, str | None]:
    """What differs between `got` and the reference's `expected`, and a generic hint."""
    if isinstance(expected, tuple):
        names = exercise.outputs
        if not isinstance(got, (tuple, list)) or len(got) != len(expected):
            wanted = ", ".join(f"{name} {_described(value)}" for name, value in zip(names, expected, strict=True))
            length = f" of length {len(got)}" if isinstance(got, (tuple, list)) else ""
            return (f"expected a tuple of {len(expected)} ({wanted}), got {type(got).__name__}{length}.",
                    f"return the {len(expected)} values in this order: {', '.join(names)}.")
        for index, (name, got_value, value) in enumerate(zip(names, got, expected, strict=True)):
            problem, hint = _value_difference(exercise, f"the {name} ({_ORDINALS[index]} value)", got_value, value)
            if problem:
                return problem, hint
        return None, None
    return _value_difference(exercise, f"the {exercise.outputs[0]}", got, expected)


def _value_difference(exercise: Exercise, what: str, got: object, expected: object
                      ) -> tuple[str | None, str | None]:
    if isinstance(expected, int):
        whole = as_int(got)
        if whole is None:
            return (f"expected an int, got {type(got).__name__} {got!r}.",
                    "return a whole number (an int), e.g. `return total`.")
        if whole != expected:
            return f"expected {expected:,} {exercise.outputs[0]}, got {whole:,} (off by {whole - expected:+,}).", None
        return None, None
    if isinstance(expected, float):
        number = as_float(got)
        if number is None:
            return (f"expected a number (a float), got {type(got).__name__} {got!r}.",
                    "return a Python float, e.g. `return float(total)`.")
        if math.isnan(number) or abs(number - expected) > exercise.atol + exercise.rtol * abs(expected):
            return f"{what}: expected {expected:.6g}, got {number:.6g} (off by {number - expected:+.4g}).", None
        return None, None
    if not isinstance(got, torch.Tensor):
        return (f"{what} should be a torch.Tensor of shape {_shape(expected)}, got {type(got).__name__}.",
                "return the tensor itself (not a list, a number, a NumPy array or a tuple).")
    if got.shape != expected.shape:
        hint = None
        if sorted(got.shape) == sorted(expected.shape):
            hint = "the sizes are right but in another order: a transpose or permute is missing or wrong."
        elif got.numel() == expected.numel():
            hint = "the right number of values in the wrong shape: check your reshape/view sizes."
        return f"{what}: expected shape {_shape(expected)}, got {_shape(got)}.", hint
    if got.dtype != expected.dtype:
        return (f"{what}: expected dtype {expected.dtype}, got {got.dtype}.",
                "keep the inputs' dtype: create new tensors with dtype=<input>.dtype.")
    if not torch.allclose(got.detach(), expected.detach(), rtol=exercise.rtol, atol=exercise.atol):
        if torch.isnan(got).any():
            return f"{what} contains NaN.", None
        difference = (got.detach().double() - expected.detach().double()).abs().max().item()
        return (f"{what}: the shape {_shape(expected)} is right but the values differ: max abs difference "
                f"{difference:.4g} (allowed {exercise.atol:g} + {exercise.rtol:g} x |expected|)."), None
    return None, None


def as_float(value: object) -> float | None:
    """`value` as a float if it is a single real number (Python or NumPy number, one-element tensor), else None."""
    if isinstance(value, (bool, str, bytes)):
        return None
    if isinstance(value, torch.Tensor):
        value = value.item() if value.numel() == 1 and not value.is_complex() else None
    try:
        return float(value) if isinstance(value, numbers.Real) else None
    except (TypeError, ValueError):
        return None


def as_int(value: object) -> int | None:
    """`value` as an int if it is a whole number (int, NumPy or 0-d tensor integer, integral float), else None."""
    if isinstance(value, (bool, str, bytes)):
        return None
    if isinstance(value, torch.Tensor):
        value = value.item() if value.numel() == 1 else None
    try:
        return operator.index(value)
    except TypeError:
        pass
    return int(value) if isinstance(value, float) and value.is_integer() else None


def _mistake(exercise: Exercise, right: Answer, got: object) -> str | None:
    """The hint of the first known mistake whose output equals `got`."""
    for mistake, imitated in zip(exercise.mistakes, right.imitated, strict=False):
        if not (isinstance(imitated, str) and imitated == NOT_APPLICABLE) and _matches(got, imitated, exercise):
            return mistake.hint
    return None


def _matches(got: object, imitated: object, exercise: Exercise) -> bool:
    if imitated is None:
        return True
    if isinstance(imitated, tuple):
        return (isinstance(got, (tuple, list)) and len(got) == len(imitated)
                and all(_matches(g, i, exercise) for g, i in zip(got, imitated, strict=True)))
    if isinstance(imitated, torch.Tensor):
        return (isinstance(got, torch.Tensor) and got.shape == imitated.shape
                and torch.allclose(got.detach().double(), imitated.detach().double(), rtol=exercise.rtol,
                                   atol=exercise.atol, equal_nan=True))
    if isinstance(imitated, int):
        return as_int(got) == imitated
    if isinstance(imitated, float):
        return (isinstance(got, (int, float)) and not isinstance(got, bool)
                and math.isclose(got, imitated, rel_tol=exercise.rtol, abs_tol=exercise.atol))
    return False


def _gradient_difference(exercise: Exercise, case: Case, got_grads: tuple, expected_grads: tuple
                         ) -> tuple[str | None, str | None]:
    names = [exercise.arg_names[index] for index in case.grad_args]
    if all(got is None for got in got_grads):
        return (f"the output is cut off from autograd: no gradient can reach {', '.join(f'`{n}`' for n in names)}.",
                "do not use .detach(), .data, .item(), .numpy() or torch.tensor(...) on the way; compute with "
                "torch operations on the inputs themselves.")
    for name, got, expected in zip(names, got_grads, expected_grads, strict=True):
        if got is None:
            return (f"no gradient reaches `{name}`: training could never update it.",
                    f"make sure `{name}` is used in the computation of the output, without .detach() or .data.")
        if not torch.allclose(got, expected, rtol=exercise.rtol, atol=exercise.atol):
            difference = (got - expected).abs().max().item()
            return (f"the gradient reaching `{name}` differs from the reference (max abs difference "
                    f"{difference:.4g}).", f"`{name}` must enter the output exactly once, as in the formula.")
    return None, None


# --------------------------------------------------------------------------------------- the loop


def run(exercise: Exercise, fn: Callable[..., object], answers: list[Answer]) -> bool:
    """Check `fn` on every case of `answers`; print one line and return True, or raise `CheckFailed` naming the
    configuration, the problem and a hint. The caller's random state is left alone."""
    with torch.random.fork_rng(devices=[]):
        labels = list(dict.fromkeys(right.case.label for right in answers))
        for right in answers:
            _check_case(exercise, fn, right, labels.index(right.case.label) + 1)
    plural = "s" if len(labels) != 1 else ""
    print(f"✓ {exercise.name}: all checks passed on {len(labels)} configuration{plural} "
          f"({', '.join(exercise.passes)}).")
    return True


def route_message(exercise: Exercise, route: str) -> str:
    """What a student is told when their function takes a route the exercise rules out."""
    solves = route in exercise.package_reference
    named = [name for name in exercise.forbidden if not name.startswith("aten::")]
    return (f"your function calls `{route}`, which "
            + ("already solves this exercise." if solves else "this exercise asks you not to use.")
            + "\nhint: " + (f"write {exercise.name} yourself, with torch operations." if solves else
                            f"solve it without {', '.join(f'`{n}`' for n in named)}, as the exercise's "
                            f"instructions say."))


def _check_case(exercise: Exercise, fn: Callable[..., object], right: Answer, index: int) -> None:
    case = right.case

    def fail(text: str) -> None:
        raise CheckFailed(f"✗ check {exercise.name!r} failed on configuration {index} ({case.label}).\n{text}")

    def watched(call: Callable[..., object], *args: object, **kwargs: object) -> Any:
        """`call(...)` with the routes the exercise rules out closed."""
        with routes.closed(exercise.routes):
            return _call(exercise, call, fail, *args, **kwargs)

    args, kwargs = _copies(case.args), _copies(case.kwargs)
    got = watched(fn, *args, **kwargs)
    problem = compare(exercise, right, got)
    if problem:
        fail(problem)
    for name, original, passed in zip(exercise.arg_names, case.args, args, strict=False):
        if not _unchanged(original, passed):
            fail(f"your function changed its input `{name}` in place.\nhint: in-place operations (`+=`, `.add_()`, "
                 f"slice assignment) modify the caller's tensor: build a new tensor instead, e.g. `x = x + y`.")
    if case.grad_args:
        problem = compare(exercise, right, got, watched(gradients, fn, case))
        if problem:
            fail(problem)


def _call(exercise: Exercise, fn: Callable[..., object], fail: Callable[[str], None], *args: object,
          **kwargs: object) -> Any:
    """`fn(*args, **kwargs)`; an exception the student's code raises becomes a failure with a hint."""
    try:
        return fn(*args, **kwargs)
    except CheckFailed:
        raise
    except NotImplementedError:
        fail("your function raised NotImplementedError: it is not written yet.\n"
             "hint: replace `raise NotImplementedError()` with your code.")
    except Exception as error:  # noqa: BLE001 - any error of the student's code is reported, not raised
        route = routes.closed_route(error)
        if route is not None:
            fail(route_message(exercise, route))
        message = str(error).strip().splitlines()[0] if str(error).strip() else ""
        fail(f"your function raised {type(error).__name__}: {message}\nhint: {_error_hint(error)}")


def _error_hint(error: Exception) -> str:
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


def _copies(values: Any) -> Any:
    """Copies of a case's arguments: tensors cloned, modules deep-copied, the rest as it is."""
    if isinstance(values, Mapping):
        return {key: _copies(value) for key, value in values.items()}
    if isinstance(values, (tuple, list)):
        return type(values)(_copies(value) for value in values)
    if isinstance(values, torch.Tensor):
        return values.detach().clone()  # the same shape, not linked to the case
    if isinstance(values, nn.Module):
        return copy.deepcopy(values)
    return values


def _unchanged(original: object, passed: object) -> bool:
    if isinstance(original, torch.Tensor):
        return torch.equal(original, passed.detach())
    if isinstance(original, nn.Module):
        return all(torch.equal(a, b.detach()) for a, b in zip(original.parameters(), passed.parameters(),
                                                              strict=True))
    return True
