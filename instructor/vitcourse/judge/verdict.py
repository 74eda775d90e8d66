"""The grade of one exercise, decided in the grader's own process from plain data.

The exercise table (`vitcourse.judge.exercises` by default, see the exercise-table contract: `Case`,
`Exercise`, `EXERCISES`, `verdict`) says, for each graded function, how to make test cases from a random
generator, what the reference returns, which routes are forbidden and which package functions already solve
it. For each exercise the grader:

1. makes the cases here, from a generator seeded per run and per student from a secret that never leaves
   this process (so the inputs are new each run and never shown to the student);
2. has the sandboxed executor call the student's function on each case (`Session.call`) in a process where the
   exercise's routes were closed before any student code ran (`vitcourse.judge.grade`), and takes back only plain
   data (`vitcourse.inside.wire`): the value, the arguments as they were after the call, and the gradients of the
   case's `grad_args` when it has any;
3. decides here: the arguments must come back as they were sent, and the table's `verdict` compares the value
   with the reference's; the student's process never sees the reference's answer and cannot change the
   decision, so a wrong answer cannot score;
4. names the closed route a call ran into (the call then failed, so the exercise scores 0), and a solution whose
   code is the package reference's code with other names.

What is shown to the student is the grader's text: the table's hints, the case's label, and for an
exception only the name of a built-in exception type.
"""
from __future__ import annotations

import ast
import builtins
import copy
import dataclasses
import hashlib
import hmac
import importlib
import importlib.util
import inspect
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vitsteps.teach.checks import routes

from ..confine.sandbox import Session

DEFAULT_TABLE = "vitcourse.judge.exercises"
_BUILTIN_ERRORS = {name for name in dir(builtins) if isinstance(getattr(builtins, name), type)
                   and issubclass(getattr(builtins, name), BaseException)}


class TableUnavailable(RuntimeError):
    """The exercise table cannot be imported or does not follow the contract."""


@dataclasses.dataclass
class Table:
    """The exercise table: exercises by name, the verdict, and how gradients are weighted."""

    source: str
    exercises: dict[str, Any]
    verdict: Callable[..., str | None]
    grad_weights: Callable[[Any, Any], list[Any]]

    def by_grade_id(self, notebook: str, grade_id: str) -> Any | None:
        """The exercise whose solution cell has this grade id in this notebook, or None."""
        for exercise in self.exercises.values():
            if exercise.grade_id == grade_id and exercise.notebook == notebook:
                return exercise
        return None

    def routes(self, exercise: Any) -> list[str]:
        """The routes closed in the process that grades `exercise`: its forbidden ones and the package's own."""
        return list(dict.fromkeys(list(exercise.forbidden) + list(exercise.package_reference)))


def load_table(spec: str | None = None) -> Table:
    """Import the exercise table: a module name (default `vitcourse.judge.exercises`) or a path to a .py file.

    Raises:
        TableUnavailable: it cannot be imported, or it lacks `EXERCISES` or `verdict`.
    """
    spec = spec or DEFAULT_TABLE
    try:
        if spec.endswith(".py"):
            path = Path(spec).resolve()
            name = f"vitcourse_table_{hashlib.sha1(str(path).encode()).hexdigest()[:12]}"
            module = sys.modules.get(name)
            if module is None:
                loader = importlib.util.spec_from_file_location(name, path)
                if loader is None or loader.loader is None:
                    raise ImportError(f"no module at {path}")
                module = importlib.util.module_from_spec(loader)
                sys.modules[name] = module
                try:
                    loader.loader.exec_module(module)
                except BaseException:
                    del sys.modules[name]
                    raise
        else:
            module = importlib.import_module(spec)
    except Exception as error:  # noqa: BLE001 - whatever stops the import, said with the table named
        raise TableUnavailable(f"the exercise table {spec!r} cannot be imported ({type(error).__name__}: "
                               f"{error}); pass --exercises with a module or a .py file that defines "
                               f"EXERCISES and verdict") from None
    exercises, verdict = getattr(module, "EXERCISES", None), getattr(module, "verdict", None)
    if not isinstance(exercises, dict) or not callable(verdict):
        raise TableUnavailable(f"the exercise table {spec!r} has no EXERCISES dict or no verdict function")
    weights = getattr(module, "grad_weights", None)
    return Table(spec, exercises, verdict, weights if callable(weights) else default_grad_weights)


def default_grad_weights(case: Any, output: Any) -> list[Any]:
    """One fixed random weight per floating-point tensor in the output (None for anything else)."""
    import torch

    outputs = list(output) if isinstance(output, (tuple, list)) else [output]
    generator = torch.Generator().manual_seed(0)
    return [torch.randn(tuple(item.shape), generator=generator, dtype=item.dtype)
            if isinstance(item, torch.Tensor) and item.is_floating_point() else None for item in outputs]


def case_seed(secret: bytes, student: str, assignment: str, exercise: str) -> int:
    """The generator seed for one student's cases of one exercise in this run: secret, never shown."""
    digest = hmac.new(secret, f"{student}\0{assignment}\0{exercise}".encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") >> 1


@dataclasses.dataclass
class Outcome:
    """How the student's function did: passed, the grader's hint when not, and what was flagged."""

    passed: bool
    hint: str = ""
    flags: list[str] = dataclasses.field(default_factory=list)
    stopped: str = ""  # why the graded run ended before its verdict (a time budget, a dead kernel), if it did


def judge(session: Session, table: Table, exercise: Any, seed: int) -> Outcome:
    """Call the student's function on the exercise's cases in `session` and decide here.

    Raises:
        Stopped: the submission ended during a call (it ignored the interrupt, died, ran out of time).
    """
    import torch

    cases = exercise.make_cases(torch.Generator().manual_seed(seed))
    name = exercise.name
    found: list[str] = []

    def outcome(passed: bool, hint: str = "") -> Outcome:
        return Outcome(passed, hint, _flags(exercise, found))

    for number, case in enumerate(cases, start=1):
        where = f"case {number} of {len(cases)} ({case.label})"
        sent = tuple(argument.detach().clone().requires_grad_(True) if index in case.grad_args else argument
                     for index, argument in enumerate(case.args))
        reply = session.call(name, sent, dict(case.kwargs))
        found += [item for item in reply.found if item not in found]
        if reply.op == "missing":
            what = "is not a function" if reply.ename == "not callable" else "is not defined"
            return outcome(False, f"`{name}` {what} when its test cell runs.")
        if reply.op == "timeout":
            return outcome(False, f"`{name}` ran past the time limit on {where}.")
        if reply.op == "raised" and reply.found:
            return outcome(False, f"`{name}` calls `{reply.found[0]}` on {where}, which "
                                  + ("already solves this exercise" if reply.found[0] in exercise.package_reference
                                     else "this exercise rules out") + ": write it with other torch operations.")
        if reply.op == "raised":
            error = reply.ename if reply.ename in _BUILTIN_ERRORS else "an exception"
            return outcome(False, f"`{name}` raised {error} on {where}.")
        if reply.op != "returned":
            return outcome(False, f"`{name}` returned something the grader cannot read on {where}; return a "
                                  f"tensor, a tuple of tensors, an int or a float.")
        changed = changed_argument(exercise, case, reply.arguments)
        if changed is not None:
            return outcome(False, f"`{name}` changed its input `{changed}` in place on {where}: build a new tensor "
                                  f"instead (in-place operations such as `+=`, `.add_()` or slice assignment modify "
                                  f"the caller's tensor).")
        grads = None
        if case.grad_args:
            weights = table.grad_weights(case, reply.value)
            back = session.backward(weights, list(case.grad_args))
            found += [item for item in back.found if item not in found]
            if back.op != "returned":
                return outcome(False, f"the gradient through `{name}` could not be computed on {where}.")
            grads = back.value
        try:
            hint = table.verdict(exercise, case, reply.value, grads)
        except Exception as error:  # noqa: BLE001 - a value the table cannot compare is a wrong value
            hint = f"the value `{name}` returned on {where} cannot be compared ({type(error).__name__})."
        if hint:
            return outcome(False, hint if case.label in hint else f"{hint} ({where})")
    return outcome(True)


def changed_argument(exercise: Any, case: Any, after: tuple) -> str | None:
    """The name of the first argument that did not come back as the grader sent it, or None (all unchanged).

    `after` is (positional arguments, keyword arguments) as the executor had them after the call."""
    import torch

    positional, keywords = after if len(after) == 2 else ((), {})
    names = list(getattr(exercise, "arg_names", []) or [])
    if not names:
        try:
            names = list(inspect.signature(exercise.reference).parameters)
        except (TypeError, ValueError):  # no reference to read the names from: number them
            names = []
    pairs = [(names[i] if i < len(names) else f"argument {i + 1}", sent, positional[i] if i < len(positional) else
              _MISSING) for i, sent in enumerate(case.args)]
    pairs += [(key, sent, keywords.get(key, _MISSING)) for key, sent in case.kwargs.items()]
    for label, sent, back in pairs:
        if back is _MISSING or not _same(sent, back, torch):
            return label
    return None


_MISSING = object()


def _same(sent: Any, back: Any, torch: Any) -> bool:
    if isinstance(sent, torch.Tensor):
        return isinstance(back, torch.Tensor) and back.shape == sent.shape and back.dtype == sent.dtype and \
            torch.equal(back.detach(), sent.detach())
    if isinstance(sent, torch.nn.Linear):
        return isinstance(back, torch.nn.Linear) and all(
            _same(a, b, torch) for a, b in zip((sent.weight, sent.bias), (back.weight, back.bias), strict=True)
            if a is not None or b is not None) and (sent.bias is None) == (back.bias is None)
    if isinstance(sent, (tuple, list)):
        return isinstance(back, (tuple, list)) and len(back) == len(sent) and all(
            _same(a, b, torch) for a, b in zip(sent, back, strict=True))
    return True  # numbers, strings, configs: the function cannot change them in place


def _flags(exercise: Any, found: list[str]) -> list[str]:
    flags = []
    for name in found:
        if name in exercise.package_reference:
            flags.append(f"calls the package's own `{name}`, which already solves the exercise")
        elif name in exercise.forbidden:
            flags.append(f"calls `{name}`, which this exercise forbids")
        else:
            flags.append(f"ran into the closed route {name[:80]!r} during the grader's calls")
    return flags


# ------------------------------------------------------------------------------------------ copies


def copied_reference(solution: str, exercise: Any) -> str | None:
    """The package reference whose code the solution's function repeats, names and strings aside, or None."""
    student = _function(solution, exercise.name)
    if student is None:
        return None
    mine = _shape(student)
    for dotted in exercise.package_reference:
        target = routes.resolve(dotted)
        try:
            source = textwrap.dedent(inspect.getsource(target))
        except (TypeError, OSError):
            continue
        tree = ast.parse(source)
        reference = next((node for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))),
                         None)
        if reference is not None and _shape(reference) == mine and len(mine) > 120:
            return dotted
    return None


def _function(source: str, name: str) -> ast.FunctionDef | None:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    return next((node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == name), None)


def _shape(function: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    """The function as a tree dump; its name, docstring, annotations, strings and local names made neutral."""
    function = copy.deepcopy(function)
    function.name, function.returns, function.decorator_list = "f", None, []
    if function.body and isinstance(function.body[0], ast.Expr) and isinstance(function.body[0].value, ast.Constant):
        function.body = function.body[1:] or [ast.Pass()]
    local = {arg.arg for arg in ast.walk(function.args) if isinstance(arg, ast.arg)}
    local |= {node.id for node in ast.walk(function) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store)}
    order: dict[str, str] = {}
    for node in ast.walk(function):
        if isinstance(node, ast.arg):
            node.arg, node.annotation = order.setdefault(node.arg, f"v{len(order)}"), None
        elif isinstance(node, ast.Name) and node.id in local:
            node.id = order.setdefault(node.id, f"v{len(order)}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            node.value = ""  # messages get reworded along with the names
    return ast.dump(function, annotate_fields=False, include_attributes=False)
