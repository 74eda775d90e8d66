"""A static scan of student code for reaching into the checking machinery: defence in depth only.

The grade does not depend on it: the verdict is computed outside the student's process, and the routes an
exercise rules out are closed in its graded run before any student code runs (see `vitcourse.judge.grade`), so
neither a wrong answer nor a ruled-out route can score whatever the code does to its own process. The scan flags
code that tries anyway (rebinding the names the checks use, monkeypatching modules, interpreter internals, IPython
hooks, Tensor subclasses, reloading or re-executing modules, shell commands); a flagged submission earns the
course's `flagged_credit`.
A deny-list of names can always be evaded (aliases, `getattr` with a computed name, `type()` with three
arguments), which is why it decides nothing on its own.
"""
from __future__ import annotations

import ast
import builtins

# Modules whose use in a student cell can reach into the interpreter or the checking machinery.
DENIED_MODULES = frozenset({
    "sys", "builtins", "importlib", "imp", "ctypes", "cffi", "inspect", "gc", "types", "marshal", "pickle",
    "dill", "copyreg", "code", "codeop", "runpy", "pkgutil", "traceback", "threading", "_thread",
    "multiprocessing", "concurrent", "asyncio", "operator", "unittest", "pytest", "IPython", "ipykernel",
    "jupyter_client", "zmq", "nbformat", "nbclient", "nbgrader", "atexit", "faulthandler", "sysconfig", "site",
    "tracemalloc", "contextvars", "subprocess", "pty", "signal", "resource",
})
# Names that reach the interpreter, the kernel or the cell history.
DENIED_NAMES = frozenset({
    "exec", "eval", "compile", "__import__", "globals", "locals", "vars", "setattr", "delattr",
    "get_ipython", "__builtins__", "__builtin__", "In", "Out", "_ih", "_oh", "_dh", "_i", "_ii", "_iii",
    "breakpoint", "exit", "quit", "__loader__", "__spec__",
})
# Attributes that lead to frames, code objects, or ways to replace torch operators.
DENIED_ATTRIBUTES = frozenset({
    "f_back", "f_globals", "f_locals", "f_builtins", "f_code", "f_trace", "tb_frame", "tb_next", "gi_frame",
    "gi_code", "cr_frame", "cr_code", "ag_frame", "co_consts", "co_code", "mro", "library", "overrides",
    "cpp_extension", "system", "popen", "fork", "forkpty", "posix_spawn", "posix_spawnp", "execv", "execve",
    "execvp", "execvpe", "execl", "execle", "execlp", "execlpe", "spawnv", "spawnve", "spawnl", "spawnle",
    "setprofile", "settrace",
})
ALLOWED_DUNDERS = frozenset({"__init__", "__name__", "__doc__", "__version__"})
ALLOWED_MAGICS = frozenset({"time", "timeit", "matplotlib"})
_FRESH_VALUES = (ast.Constant, ast.List, ast.Tuple, ast.Dict, ast.Set, ast.ListComp, ast.DictComp, ast.SetComp,
                 ast.GeneratorExp, ast.BinOp, ast.UnaryOp, ast.Compare, ast.BoolOp, ast.JoinedStr)


def find_tampering(sources: dict[str, str], protected: dict[str, str], module_names: set[str]) -> list[str]:
    """Scan student code, cell by cell in order, for attempts to change how it is checked.

    Flags: rebinding a name the tests use (`check = ...`, `def check`, `torch = ...`), assigning into an
    imported module or an alias of one (`vitsteps.checks.check = ...`, `torch.allclose = ...`), imports
    and names that reach the interpreter (`sys`, `builtins`, `importlib`, `inspect`, `setattr`, `exec`,
    `get_ipython`, `In`/`Out` history), dunder and frame attributes (`__globals__`, `__code__`, `f_back`),
    special methods and Tensor subclasses (`__torch_function__`), and magics other than %time/%timeit.

    Args:
        sources: a label (e.g. "cell 12") -> the code of one student cell, in notebook order.
        protected: names the test cells use that the source notebook binds by import (name -> "module" or
            "module:attribute"), by `def`/`class` (name -> ""), or that are builtins (name -> "").
        module_names: every name the source notebook binds by an import.

    Returns:
        One line per finding (e.g. "cell 12, line 3: changes `vitsteps.checks.check` ..."); empty if clean.
    """
    findings: list[str] = []
    scanner = _Scanner(protected, set(module_names), findings)
    for label, source in sources.items():
        scanner.label = label
        try:
            tree = ast.parse(_python_source(source, findings, label))
        except SyntaxError:
            continue  # the kernel reports it as an error in that cell; nothing in it runs
        scanner.visit(tree)
    return findings


def _python_source(source: str, findings: list[str], label: str) -> str:
    """The cell as plain Python after IPython's transforms; magics other than timing are findings."""
    from IPython.core.inputtransformer2 import TransformerManager

    tree = ast.parse(TransformerManager().transform_cell(source))
    bodies: list[str] = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Call) and isinstance(node.func.value.func, ast.Name)
                and node.func.value.func.id == "get_ipython"):
            continue
        strings = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        magic = strings[0].split()[0] if strings and strings[0].split() else ""
        if node.func.attr in ("run_line_magic", "run_cell_magic") and magic in ALLOWED_MAGICS:
            bodies += strings[1:]  # the timed code is scanned too
        else:
            what = "a shell command (!)" if node.func.attr in ("system", "getoutput") else (
                f"the IPython magic %{magic}" if magic else "IPython internals")
            findings.append(f"{label}: uses {what}")
        node.func, node.args, node.keywords = ast.Name(id="len", ctx=ast.Load()), [], []
    extra = [body for body in bodies if _parses(body)]
    return "\n".join([ast.unparse(tree), *extra])


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except SyntaxError:
        return False
    return True


class _Scanner(ast.NodeVisitor):
    """Walks student cells; appends a finding for each construct that could reach the checking machinery."""

    def __init__(self, protected: dict[str, str], module_names: set[str], findings: list[str]) -> None:
        self.label = ""
        self.protected = protected
        self.aliases = set(module_names)  # names bound to modules, or to anything not freshly built
        self.findings = findings
        self.scopes: list[set[str]] = []  # locals of the enclosing functions and classes

    def flag(self, node: ast.AST, what: str) -> None:
        finding = f"{self.label}, line {getattr(node, 'lineno', 0)}: {what}"
        if finding not in self.findings:
            self.findings.append(finding)

    # imports
    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            bound = alias.asname or alias.name.split(".")[0]
            self._import(node, alias.name, bound, alias.name if alias.asname else bound, None)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        if node.level:
            self.flag(node, "uses a relative import")
        for alias in node.names:
            if alias.name == "*":
                self.flag(node, f"uses `from {module} import *`, which can rebind the names the tests use")
            else:
                self._import(node, module, alias.asname or alias.name, f"{module}:{alias.name}", alias.name)

    def _import(self, node: ast.AST, module: str, bound: str, target: str, name: str | None) -> None:
        parts = module.split(".") + ([name] if name else [])
        if parts[0] in DENIED_MODULES or any(p.startswith("_") or p in DENIED_ATTRIBUTES for p in parts[1:]) \
                or (name in DENIED_NAMES):
            self.flag(node, f"imports `{'.'.join(parts)}`, which exercises may not use (it can change how "
                            f"the checks run)")
        if not self.scopes and bound in self.protected and \
                self.protected[bound].replace(":", ".") != target.replace(":", "."):
            self.flag(node, f"rebinds `{bound}`, which the tests use")
        self._bind(bound, fresh=False)

    # names and attributes
    def visit_Name(self, node: ast.Name) -> None:
        if node.id in DENIED_NAMES or (node.id.startswith("_i") and node.id[2:].isdigit()):
            self.flag(node, f"uses `{node.id}`")
        if isinstance(node.ctx, (ast.Store, ast.Del)) and not self.scopes and node.id in self.protected:
            self.flag(node, f"rebinds `{node.id}`, which the tests use")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        attr = node.attr
        if attr.startswith("__") and attr.endswith("__"):
            if attr not in ALLOWED_DUNDERS:
                self.flag(node, f"uses the special attribute `.{attr}`")
        elif attr.startswith("_"):
            self.flag(node, f"uses the private attribute `.{attr}`")
        elif attr in DENIED_ATTRIBUTES:
            self.flag(node, f"uses `.{attr}`")
        if isinstance(node.ctx, (ast.Store, ast.Del)):
            self._mutation(node)
        self.generic_visit(node)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        if isinstance(node.ctx, (ast.Store, ast.Del)):
            self._mutation(node)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        if isinstance(node.func, ast.Name) and node.func.id == "getattr" and len(node.args) >= 2:
            name = node.args[1]
            if not (isinstance(name, ast.Constant) and isinstance(name.value, str) and not name.value.startswith("_")):
                self.flag(node, "calls getattr with a computed or private attribute name")
        self.generic_visit(node)

    def _mutation(self, node: ast.Attribute | ast.Subscript) -> None:
        root: ast.AST = node
        while isinstance(root, (ast.Attribute, ast.Subscript, ast.Call)):
            root = root.func if isinstance(root, ast.Call) else root.value
        name = root.id if isinstance(root, ast.Name) else None
        if name is not None and any(name in scope for scope in self.scopes):
            return  # a local of the student's own function
        if name is None or name in self.protected or name in self.aliases:
            self.flag(node, f"changes `{ast.unparse(node)}` (monkeypatching a module or a name the tests use)")

    # definitions and scopes
    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        if not isinstance(node, ast.Lambda):
            if not self.scopes and node.name in self.protected:
                self.flag(node, f"rebinds `{node.name}`, which the tests use")
            if node.name.startswith("__") and node.name.endswith("__") and node.name not in ALLOWED_DUNDERS:
                self.flag(node, f"defines the special method `{node.name}`")
            for decorator in node.decorator_list:
                self.visit(decorator)
            if node.returns is not None:
                self.visit(node.returns)
            self._bind(node.name, fresh=True)
        arguments = node.args
        for default in arguments.defaults + [d for d in arguments.kw_defaults if d is not None]:
            self.visit(default)
        for argument in arguments.posonlyargs + arguments.args + arguments.kwonlyargs:
            if argument.annotation is not None:
                self.visit(argument.annotation)
        params = {a.arg for a in arguments.posonlyargs + arguments.args + arguments.kwonlyargs}
        params |= {a.arg for a in (arguments.vararg, arguments.kwarg) if a is not None}
        self.scopes.append(params | _local_names(node))
        for statement in node.body if isinstance(node.body, list) else [node.body]:
            self.visit(statement)
        self.scopes.pop()

    visit_AsyncFunctionDef = visit_FunctionDef
    visit_Lambda = visit_FunctionDef

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        if not self.scopes and node.name in self.protected:
            self.flag(node, f"rebinds `{node.name}`, which the tests use")
        for base in node.bases + [keyword.value for keyword in node.keywords]:
            text = ast.unparse(base)
            if "Tensor" in text or "Parameter" in text or isinstance(base, ast.Call):
                self.flag(base, f"defines a subclass of `{text}` (it could fake comparisons)")
            self.visit(base)
        self._bind(node.name, fresh=True)
        self.scopes.append({"self"} | _local_names(node))
        for statement in node.body:
            self.visit(statement)
        self.scopes.pop()

    def visit_Global(self, node: ast.Global | ast.Nonlocal) -> None:
        for name in node.names:
            if name in self.protected or name in self.aliases:
                self.flag(node, f"declares `{name}` global to rebind it")

    visit_Nonlocal = visit_Global

    def visit_Assign(self, node: ast.Assign | ast.AnnAssign | ast.AugAssign | ast.NamedExpr) -> None:
        if node.value is not None:
            self.visit(node.value)
        fresh = isinstance(node.value, _FRESH_VALUES) or (
            isinstance(node.value, ast.Call) and isinstance(node.value.func, (ast.Name, ast.Attribute)))
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        for target in targets:
            self.visit(target)
            for name in _target_names(target):
                self._bind(name, fresh=fresh)

    visit_AnnAssign = visit_Assign
    visit_AugAssign = visit_Assign
    visit_NamedExpr = visit_Assign

    def visit_For(self, node: ast.For | ast.AsyncFor | ast.comprehension) -> None:
        for name in _target_names(node.target):
            self._bind(name, fresh=False)
        self.generic_visit(node)

    visit_AsyncFor = visit_For
    visit_comprehension = visit_For

    def visit_With(self, node: ast.With | ast.AsyncWith) -> None:
        for item in node.items:
            if item.optional_vars is not None:
                for name in _target_names(item.optional_vars):
                    self._bind(name, fresh=False)
        self.generic_visit(node)

    visit_AsyncWith = visit_With

    def _bind(self, name: str, fresh: bool) -> None:
        if self.scopes:
            return
        if fresh:
            self.aliases.discard(name)
        else:
            self.aliases.add(name)


def _target_names(target: ast.AST) -> list[str]:
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, (ast.Tuple, ast.List)):
        return [name for element in target.elts for name in _target_names(element)]
    if isinstance(target, ast.Starred):
        return _target_names(target.value)
    return []


def _local_names(scope: ast.AST) -> set[str]:
    """Names a function or class body binds itself (its locals), minus those it declares global."""
    names: set[str] = set()
    declared: set[str] = set()
    stack = list(getattr(scope, "body", [])) if isinstance(getattr(scope, "body", None), list) else []
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
            continue
        if isinstance(node, (ast.Global, ast.Nonlocal)):
            declared |= set(node.names)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {alias.asname or alias.name.split(".")[0] for alias in node.names}
        if not isinstance(node, ast.Lambda):
            stack.extend(ast.iter_child_nodes(node))
    return names - declared


def protected_names(test_sources: list[str], source_cells: list[str], solution_sources: list[str]
                    ) -> tuple[dict[str, str], set[str]]:
    """Which names student code may not rebind, and which names are modules.

    Args:
        test_sources: code of the graded test cells.
        source_cells: code of every other instructor cell (setup, demos), in order.
        solution_sources: code of the solution cells (the names they define are the student's to define).

    Returns:
        (protected, module_names): protected maps a name the tests load to its import target
        ("module" or "module:attribute", "" for defs, classes and builtins); module_names holds every
        name the instructor cells bind by an import.
    """
    bound_by: dict[str, str] = {}
    module_names: set[str] = set()
    for source in source_cells + test_sources:
        tree = _parse_or_none(source)
        if tree is None:
            continue
        for node in tree.body:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    bound = alias.asname or alias.name.split(".")[0]
                    bound_by[bound] = alias.name if alias.asname else bound
                    module_names.add(bound)
            elif isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    bound_by[alias.asname or alias.name] = f"{node.module}:{alias.name}"
                    module_names.add(alias.asname or alias.name)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                bound_by[node.name] = ""
    students: set[str] = set()
    for source in solution_sources:
        tree = _parse_or_none(source)
        if tree is not None:
            students |= {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
            students |= {name for n in tree.body if isinstance(n, ast.Assign) for t in n.targets
                         for name in _target_names(t)}
    protected: dict[str, str] = {}
    for source in test_sources:
        tree = _parse_or_none(source)
        if tree is None:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id not in students:
                if node.id in bound_by:
                    protected[node.id] = bound_by[node.id]
                elif node.id in dir(builtins):
                    protected[node.id] = ""
    return protected, module_names - students


def _parse_or_none(source: str) -> ast.Module | None:
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        return ast.parse(TransformerManager().transform_cell(source))
    except SyntaxError:
        return None
