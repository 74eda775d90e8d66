"""The cells a graded run needs: the exercise's solution cell, and the cells that define a name it reads.

A graded run (one per exercise, in a process whose ruled-out routes were closed before any cell ran) does not need
the notebook's pictures, widgets or demonstrations, nor the student's other exercises, only what the graded function
can reach: its solution cell and, transitively, each cell (the instructor's or the student's) that binds a name an
included cell reads (imports, constants, helper functions). Test cells are left out: the grader calls the function
itself. A cell that cannot be parsed is included when it is the student's, to be safe.
"""
from __future__ import annotations

import ast
import builtins
from collections.abc import Iterable

_BUILTINS = frozenset(dir(builtins))


def _python(source: str) -> str:
    """IPython syntax (magics, shell escapes) as the Python IPython would run."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager
    except ImportError:  # plain Python is all there is to read
        return source
    try:
        return TransformerManager().transform_cell(source)
    except Exception:  # noqa: BLE001 - a cell IPython cannot transform is read as it is
        return source


def names_of(source: str) -> tuple[set[str], set[str]] | None:
    """(names the cell binds at its top level, names it reads anywhere), or None if it does not parse."""
    try:
        tree = ast.parse(_python(source))
    except (SyntaxError, ValueError):
        return None
    bound: set[str] = set()
    for node in tree.body:
        for child in ast.walk(node) if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) \
                else [node]:
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                bound.add(child.name)
            elif isinstance(child, ast.Name) and isinstance(child.ctx, ast.Store):
                bound.add(child.id)
            elif isinstance(child, (ast.Import, ast.ImportFrom)):
                bound |= {(alias.asname or alias.name).split(".")[0] for alias in child.names if alias.name != "*"}
    return bound, _reads(tree) - _BUILTINS


def _reads(scope: ast.AST) -> set[str]:
    """The names `scope` reads that it does not bind itself (a function's own arguments and locals left out)."""
    inner = [node for node in ast.iter_child_nodes(scope)]
    read: set[str] = set()
    local: set[str] = set()
    if isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
        local = {arg.arg for arg in ast.walk(scope.args) if isinstance(arg, ast.arg)}
    stack = inner
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            read |= _reads(node)
            if not isinstance(node, ast.Lambda):
                local.add(node.name)
                read |= {name.id for decorator in node.decorator_list for name in ast.walk(decorator)
                         if isinstance(name, ast.Name)}
            continue
        if isinstance(node, ast.Name):
            (local if isinstance(node.ctx, ast.Store) else read).add(node.id)
        stack.extend(ast.iter_child_nodes(node))
    if isinstance(scope, ast.Module):
        return read
    return read - local


def cells_for(sources: dict[int, str], roots: Iterable[int], student: Iterable[int] = (),
              leave_out: Iterable[int] = ()) -> list[int]:
    """The code cells a graded run executes, in notebook order.

    Args:
        sources: every code cell's source by its index in the notebook.
        roots: the cells that always run (the exercise's solution cell).
        student: the indices of all cells of student code (one that cannot be parsed always runs).
        leave_out: indices never run (the test cells).
    """
    leave = set(leave_out)
    included = {index for index in roots if index in sources}
    parsed = {index: names_of(source) for index, source in sources.items()}
    included |= {index for index in student if index in parsed and parsed[index] is None and index not in leave}
    needed: set[str] = set()
    for index in included:
        if parsed[index] is not None:
            needed |= parsed[index][1]
    changed = True
    while changed:
        changed = False
        for index, names in parsed.items():
            if index in included or index in leave or names is None or not names[0] & needed:
                continue
            included.add(index)
            needed |= names[1]
            changed = True
    return sorted(included)
