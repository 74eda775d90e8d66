"""The package's layers: imports only go down, and no import cycle.

Every module under `src/vitsteps` is parsed (nothing is imported or run) and each `import` statement, at module
level or inside a function, becomes an edge of the import graph. The layers, from the bottom:

| layer            | modules                                              | may import, inside the package            |
|------------------|------------------------------------------------------|-------------------------------------------|
| stages           | `vitsteps`, `_validate`, `patches`, `tokens`, `encoder`, `model` | stages                        |
| around the model | `data`, `recipes`, `loop`, `checkpoint`, `results`, `train`,    | stages, around the model     |
|                  | `analysis`, `convert`, `baselines`, `ablation`                  |                              |
| teaching tools   | `vitsteps.teach` and everything below it             | everything in the package                 |

Nothing in `src/` imports the course tooling (`vitcourse`), which is installed apart. The README's module table and
folder tree say the same.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
LAYERS = {"stages": 0, "around the model": 1, "teaching tools": 2}
STAGES = {"vitsteps", "vitsteps._validate", "vitsteps.patches", "vitsteps.tokens", "vitsteps.encoder", "vitsteps.model"}
AROUND = {"vitsteps.data", "vitsteps.recipes", "vitsteps.loop", "vitsteps.checkpoint", "vitsteps.results",
          "vitsteps.train", "vitsteps.analysis", "vitsteps.convert", "vitsteps.baselines", "vitsteps.ablation"}


def layer(module: str) -> str:
    if module in STAGES:
        return "stages"
    if module in AROUND:
        return "around the model"
    if module == "vitsteps.teach" or module.startswith("vitsteps.teach."):
        return "teaching tools"
    raise AssertionError(f"{module} belongs to no layer: add it to the table in tests/test_layers.py")


def module_sources(root: Path, package: str = "vitsteps") -> dict[str, str]:
    """Module name -> source, for every `.py` file of `package` under `root`."""
    sources = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        sources[".".join(parts)] = path.read_text(encoding="utf-8")
    return sources


def imports(module: str, source: str, known: set[str], is_package: bool) -> set[str]:
    """The modules `module` imports: absolute names, relative ones resolved, `from pkg import submodule` as the
    submodule."""
    found = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            target = node.module or "" if not node.level else ".".join(part for part in (base, node.module) if part)
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                found.add(submodule if submodule in known else target)
    return found


def violations(sources: dict[str, str], packages: set[str], layer_of=None, ranks=None) -> list[str]:
    """Every upward import, import of the course tooling, and import cycle among `sources` (the package's layers,
    or `layer_of` and `ranks` for another package)."""
    layer_of, ranks = layer_of or layer, ranks or LAYERS
    known = set(sources)
    graph = {module: imports(module, source, known, module in packages) for module, source in sources.items()}
    found = []
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            if module.startswith("vitsteps") and (target == "vitcourse" or target.startswith("vitcourse.")):
                found.append(f"{module} imports the course tooling ({target})")
            elif target in known and ranks[layer_of(target)] > ranks[layer_of(module)]:
                found.append(f"{module} ({layer_of(module)}) imports {target} ({layer_of(target)}), a layer above it")
    internal = {module: {t for t in targets if t in known and t != module} for module, targets in graph.items()}
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(internal[module]):
            if state.get(target) == "open":
                found.append("import cycle: " + " -> ".join(path[path.index(target):] + [target]))
            elif target not in state:
                visit(target, path + [target])
        state[module] = "done"

    for module in sorted(internal):
        if module not in state:
            visit(module, [module])
    return found


def test_imports_only_go_down_and_never_in_a_cycle():
    sources = module_sources(SRC)
    packages = {name for name in sources if (SRC / name.replace(".", "/") / "__init__.py").is_file()}
    assert {"vitsteps.model", "vitsteps.teach.checks.spec", "vitsteps.teach.figures._draw"} <= set(sources)
    assert violations(sources, packages) == []


@pytest.mark.parametrize(("sources", "expected"), [
    ({"vitsteps.model": "from .teach import figures\n", "vitsteps.teach": "", "vitsteps.teach.figures": ""},
     "vitsteps.model (stages) imports vitsteps.teach.figures (teaching tools), a layer above it"),
    ({"vitsteps.patches": "def f():\n    from vitsteps import train\n", "vitsteps.train": "", "vitsteps": ""},
     "vitsteps.patches (stages) imports vitsteps.train (around the model), a layer above it"),
    ({"vitsteps.train": "import vitcourse.grading\n"}, "vitsteps.train imports the course tooling (vitcourse.grading)"),
    ({"vitsteps.model": "from . import convert\n", "vitsteps.convert": "from .model import ViT\n"},
     "vitsteps.model (stages) imports vitsteps.convert (around the model), a layer above it"),
    ({"vitsteps.data": "from . import train\n", "vitsteps.train": "from .data import DigitsSplit\n"},
     "import cycle: vitsteps.data -> vitsteps.train -> vitsteps.data"),
    ({"vitsteps.teach.checks.spec": "from ..figures import _draw\n", "vitsteps.teach.figures._draw":
      "from ..checks.spec import Case\n"},
     "import cycle: vitsteps.teach.checks.spec -> vitsteps.teach.figures._draw -> vitsteps.teach.checks.spec"),
])
def test_an_upward_import_or_a_cycle_is_found(sources, expected):
    assert expected in violations(sources, packages={"vitsteps", "vitsteps.teach", "vitsteps.teach.figures"})


def _readme_section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return text[text.index("## Where each stage lives"):text.index("## Figures")]


def test_the_readmes_folder_tree_lists_every_file_of_the_package_and_no_other():
    tree = _readme_section().split("```\n", 1)[1].split("```", 1)[0]
    folders: list[str] = []
    listed = set()
    for line in tree.splitlines():
        depth = (len(line) - len(line.lstrip(" "))) // 2
        name = line.strip().split("  ")[0]
        folders = folders[:depth]
        path = "/".join([*folders, name.rstrip("/")])
        if name.endswith("/"):
            folders.append(name.rstrip("/"))
        listed.add(path)
    package = {str(path.relative_to(SRC)) for path in (SRC / "vitsteps").rglob("*.py")}
    package |= {"vitsteps/checkpoints", "vitsteps/teach", "vitsteps/teach/figures", "vitsteps/teach/explorers",
                "vitsteps/teach/checks"}
    in_src = {path.removeprefix("src/") for path in listed if path.startswith("src/vitsteps/")}
    inits = {path for path in package if path.endswith("__init__.py") and path != "vitsteps/__init__.py"}
    assert in_src == package - inits  # a folder's __init__.py is not listed apart
    assert all((ROOT / path).exists() for path in listed - {p for p in listed if p.startswith("src/vitsteps/")})


def test_the_readmes_module_table_names_every_module_in_its_layer():
    rows = [line.split(" | ") for line in _readme_section().splitlines() if line.startswith("| ")][1:]  # no header
    named = {}
    for row in rows:
        for module in row[1].split("`")[1::2]:
            named[module] = row[0].lstrip("| ")
    modules = {name for name in module_sources(SRC) if name.count(".") == 1 or name.startswith("vitsteps.teach.")}
    children = {name for name in modules if name.count(".") <= 2 and name not in ("vitsteps.teach",)}
    assert {name for name in named if name.startswith("vitsteps")} == children
    assert all(layer(module) == named[module] for module in children)
    assert named["vitcourse"] == "course tooling"


# ------------------------------------------------------------------------------------------ the course tooling

INSTRUCTOR = ROOT / "instructor"
# from the bottom: standalone tools (they import nothing of vitcourse), what runs inside the sandbox, the host side of
# the sandbox, what judges outside it, the course folder and nbgrader, the adapters for a hub and for a cluster, the
# command line
COURSE_LAYERS = {"standalone": 0, "inside": 1, "confine": 2, "judge": 3, "course": 4, "hub": 5, "cluster": 5,
                 "command line": 6}


def course_layer(module: str) -> str:
    if module in ("vitcourse", "vitcourse.student", "vitcourse.execute"):
        return "standalone"
    if module == "vitcourse.grading":
        return "command line"
    part = module.split(".")[1]
    if part in COURSE_LAYERS:
        return part
    raise AssertionError(f"{module} belongs to no layer of the course tooling: add it to tests/test_layers.py")


def test_the_course_tooling_imports_only_go_down_and_never_in_a_cycle():
    sources = module_sources(INSTRUCTOR, "vitcourse")
    packages = {name for name in sources if (INSTRUCTOR / name.replace(".", "/") / "__init__.py").is_file()}
    assert {"vitcourse.inside.runner", "vitcourse.judge.verdict", "vitcourse.course.gradebook"} <= set(sources)
    assert violations(sources, packages, course_layer, COURSE_LAYERS) == []
    standalone = [module for module in sources if course_layer(module) == "standalone"]
    for module in standalone:  # they run where nothing else of vitcourse may be importable (make lab)
        assert not {t for t in imports(module, sources[module], set(sources), module in packages)
                    if t.startswith("vitcourse.")}, module


def test_an_upward_import_in_the_course_tooling_is_found():
    sources = {"vitcourse.inside.runner": "from ..judge import verdict\n", "vitcourse.judge.verdict": "",
               "vitcourse.judge": ""}
    assert violations(sources, {"vitcourse.judge"}, course_layer, COURSE_LAYERS) == [
        "vitcourse.inside.runner (inside) imports vitcourse.judge.verdict (judge), a layer above it"]
