"""Closing the routes an exercise rules out, so that calling them fails: one implementation for the self-check and
the grader.

A route is a dotted name (`torch.nn.functional.unfold`, `torch.nn.Unfold`, `vitsteps.patches.image_to_patches`) or
an ATen operator (`aten::im2col`, the kernel that `F.unfold` calls). Closing a route makes every way to reach it
raise `RuntimeError("[route closed: <name>] ...")`:

* a Python function gets the code of a stub in place of its own, so its aliases, `getattr` with a string, a copy
  made with `types.FunctionType(f.__code__, ...)` after the closing, and other threads all reach the stub;
* a class gets stubs in place of the methods it defines itself (`__init__`, `forward`, `__call__`);
* a built-in function is replaced in every loaded module that holds it;
* an ATen operator gets a kernel of its own in PyTorch's dispatcher (`for_good=True` only), so `torch.ops.aten`,
  `torch._C`, TorchScript and anything else that runs the operator reach it too.

`closed(names)` closes for the duration of a `with` block and opens again after it: the self-check uses it to tell
a student, in their own process, that their function calls a route the exercise rules out. `close_for_good(names)`
is what the grader's sandbox runs before any student code: nothing in that process can open the routes again (the
dispatcher's registration is held where Python cannot reach it), so a call that takes one fails there.
"""
from __future__ import annotations

import ctypes
import importlib
import sys
import types
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

MARK = "[route closed: "
_METHODS = ("__init__", "__call__", "forward")
_OPERATOR_KEYS = ("CPU", "CompositeImplicitAutograd")  # where a CPU operator's kernel is looked up


def resolve(dotted: str) -> object | None:
    """The object a dotted name such as `torch.nn.functional.unfold` stands for, or None if there is none."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:cut]))
        except Exception:  # noqa: BLE001 - not a module at this length: try a shorter one
            continue
        for attribute in parts[cut:]:
            target = getattr(target, attribute, None)
            if target is None:
                return None
        return target
    return None


def closed_route(error: BaseException | None) -> str | None:
    """The route named by a closed route's error, found in `error` or the errors it came from, else None."""
    seen = 0
    while error is not None and seen < 16:
        text = str(error) if isinstance(error, RuntimeError) else ""
        start = text.find(MARK)
        if start >= 0:
            end = text.find("]", start)
            return text[start + len(MARK):end] if end > start else None
        error = error.__cause__ or error.__context__
        seen += 1
    return None


def _message(name: str) -> str:
    return f"{MARK}{name}] this exercise rules it out, so it is not available here"


def _stub_code(name: str, freevars: tuple[str, ...]) -> types.CodeType:
    """The code of a function that raises the closed-route error, with the given free variables (so that it can
    replace the code of a function with a closure)."""
    uses = "".join(f"        {var}\n" for var in freevars)
    binds = "".join(f"    {var} = None\n" for var in freevars)
    source = (f"def _outer():\n{binds}    def stub(*args, **kwargs):\n{uses}"
              f"        raise RuntimeError({_message(name)!r})\n    return stub\n")
    namespace: dict[str, object] = {}
    exec(compile(source, f"<closed route {name}>", "exec"), namespace)  # noqa: S102 - our own text, no input in it
    return namespace["_outer"]().__code__  # type: ignore[operator, union-attr]


def _functions(target: object) -> list[types.FunctionType]:
    """The Python functions behind `target`: itself (and what it wraps), or the methods a class defines itself."""
    found: list[types.FunctionType] = []
    candidates = [vars(target)[name] for name in _METHODS if name in vars(target)] if isinstance(target, type) \
        else [target]
    for candidate in candidates:
        candidate = getattr(candidate, "__func__", candidate)
        for _ in range(8):  # follow functools.wraps chains
            if isinstance(candidate, types.FunctionType) and candidate not in found:
                found.append(candidate)
            candidate = getattr(candidate, "__wrapped__", None)
            if candidate is None:
                break
    return found


class _Closing:
    """What one closing changed, so that `open` can put it back."""

    def __init__(self) -> None:
        self.codes: list[tuple[types.FunctionType, types.CodeType]] = []
        self.attributes: list[tuple[object, str, object]] = []
        self.closed: list[str] = []

    def close(self, name: str, operators: bool) -> None:
        if name.startswith("aten::"):
            if operators:
                _close_operator(name)
                self.closed.append(name)
            return
        target = resolve(name)
        if target is None:
            return
        functions = _functions(target)
        for function in functions:
            self.codes.append((function, function.__code__))
            function.__code__ = _stub_code(name, function.__code__.co_freevars)
        if not functions and callable(target):  # a built-in: replace it wherever a module holds it
            stub = _stub_function(name)
            for module in list(sys.modules.values()):
                namespace = getattr(module, "__dict__", None)
                if not isinstance(namespace, dict):
                    continue
                for attribute, value in list(namespace.items()):
                    if value is target:
                        self.attributes.append((module, attribute, value))
                        setattr(module, attribute, stub)
        self.closed.append(name)

    def open(self) -> None:
        for function, code in reversed(self.codes):
            function.__code__ = code
        for module, attribute, value in reversed(self.attributes):
            setattr(module, attribute, value)
        self.codes, self.attributes = [], []


def _stub_function(name: str) -> Callable[..., object]:
    def stub(*args: object, **kwargs: object) -> object:
        raise RuntimeError(_message(name))
    stub.__name__ = name.rpartition(".")[2]
    return stub


def _close_operator(name: str) -> None:
    """Give the ATen operator `aten::<op>` a kernel that raises, for good: the registration's handle is kept alive
    with no reference to it that Python code could find, so it cannot be removed."""
    import torch

    operator = name.removeprefix("aten::")
    library = torch._C._dispatch_library("IMPL", "aten", "", "<closed routes>", 0)
    refuse = _stub_function(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyTorch warns that a kernel is being replaced: that is the point
        for key in _OPERATOR_KEYS:
            try:
                library.impl(operator, key, refuse)
            except RuntimeError:
                continue  # the operator has no kernel for this key
    ctypes.pythonapi.Py_IncRef(ctypes.py_object(library))


@contextmanager
def closed(names: Iterable[str]) -> Iterator[list[str]]:
    """Close the Python routes `names` for the block and open them again after it (ATen operators are left
    open: a kernel registered for a block would warn in the student's notebook). Yields the names closed."""
    closing = _Closing()
    try:
        for name in dict.fromkeys(names):
            closing.close(name, operators=False)
        yield closing.closed
    finally:
        closing.open()


def close_for_good(names: Iterable[str]) -> list[str]:
    """Close `names` (dotted names and `aten::` operators) for the rest of this process; return those closed."""
    closing = _Closing()
    for name in dict.fromkeys(names):
        closing.close(name, operators=True)
    return closing.closed
