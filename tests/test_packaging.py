"""The install story: one set of pins, a student environment without test or grading tools, CPU PyTorch on Linux."""
from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

import vitsteps

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
import install_torch  # noqa: E402

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
# conda-forge names the packages that PyPI knows as these
CONDA_NAMES = {"pytorch": "torch"}
# what only developers and instructors need: none of it may reach a student's `make lab` environment
DEV_ONLY = {"pytest", "pytest-xdist", "nbval", "hypothesis", "transformers", "playwright", "ruff", "nbgrader",
            "vitcourse"}


def _name(requirement: str) -> str:
    return Requirement(requirement).name.lower().replace("_", "-")


def _conda_pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "environment.yml").read_text(encoding="utf-8").splitlines():
        match = re.match(r"^\s*-\s+([A-Za-z][\w.-]*)\s+([<>=!][^\s#]*)", line)
        if match:
            pins[CONDA_NAMES.get(match.group(1), match.group(1)).lower()] = match.group(2)
    return pins


def test_environment_yml_pins_what_pyproject_pins():
    wanted = PYPROJECT["project"]["dependencies"] + PYPROJECT["project"]["optional-dependencies"]["lab"]
    pyproject = {_name(req): str(Requirement(req).specifier) for req in wanted}
    conda = _conda_pins()
    python = conda.pop("python").lstrip("=")
    assert python in SpecifierSet(PYPROJECT["project"]["requires-python"])
    assert set(conda) == set(pyproject), "the same packages in both files"
    for name, specifier in pyproject.items():
        assert set(conda[name].split(",")) == set(specifier.split(",")), f"{name}: {conda[name]} vs {specifier}"


def test_environment_yml_takes_only_the_project_from_pip():
    text = (REPO / "environment.yml").read_text(encoding="utf-8")
    pip_lines = text.split("- pip:", 1)[1].strip().splitlines()
    assert [line.split("#")[0].strip() for line in pip_lines] == ["- ."]
    assert re.search(r"^\s*-\s+pytorch\s+\S+\s+cpu_\*", text, re.M), "the CPU build of PyTorch"


def _closure(requirements: list[Requirement], extras: frozenset[str] = frozenset()) -> set[str]:
    """Names of the installed distributions that `requirements` pull in, following installed metadata."""
    seen: set[str] = set()
    todo = [(req, extras) for req in requirements]
    while todo:
        req, active = todo.pop()
        if req.marker is not None and not any(req.marker.evaluate({"extra": extra}) for extra in active | {""}):
            continue
        name = req.name.lower().replace("_", "-")
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = importlib.metadata.requires(req.name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        todo += [(Requirement(sub), frozenset(req.extras)) for sub in requires]
    return seen


def test_the_student_install_holds_no_test_or_grading_tools():
    student = _closure([Requirement("vitsteps[lab]")])
    assert {"torch", "jupyterlab", "ipywidgets", "mlxtend"} <= student, "the walk follows the real metadata"
    assert student & DEV_ONLY == set(), f"make lab would install {sorted(student & DEV_ONLY)}"
    developer = _closure([Requirement("vitsteps[dev]")])
    assert DEV_ONLY - {"nbgrader", "vitcourse"} <= developer


def test_the_version_is_written_once():
    assert PYPROJECT["project"]["dynamic"] == ["version"]
    assert importlib.metadata.version("vitsteps") == vitsteps.__version__


def test_jupyterlab_is_no_runtime_dependency():
    assert "jupyterlab" not in {_name(req) for req in PYPROJECT["project"]["dependencies"]}


def test_the_torch_installer_reads_the_pin_from_pyproject():
    assert install_torch.torch_requirement() in PYPROJECT["project"]["dependencies"]


@pytest.mark.parametrize("system, index, have, reachable, action", [
    ("Linux", install_torch.DEFAULT_INDEX, None, True, "index"),
    ("Linux", install_torch.DEFAULT_INDEX, None, False, "pypi"),
    ("Linux", install_torch.DEFAULT_INDEX, "2.13.0", True, "skip"),
    ("Linux", "", None, None, "skip"),
    ("Darwin", install_torch.DEFAULT_INDEX, None, None, "skip"),
])
def test_the_torch_installer_prefers_the_cpu_index_on_linux_and_falls_back(system, index, have, reachable, action):
    assert install_torch.plan(system, index, have, reachable) == action


def test_an_unreachable_index_is_reported_not_fatal():
    assert install_torch.reachable("http://127.0.0.1:9/simple", timeout=2) is False


def test_a_pyproject_without_torch_is_named(tmp_path):
    bad = tmp_path / "pyproject.toml"
    bad.write_text('[project]\ndependencies = ["numpy"]\n', encoding="utf-8")
    with pytest.raises(ValueError, match="lists no torch requirement"):
        install_torch.torch_requirement(bad)


def test_every_notebook_has_a_binder_link_to_its_student_version():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    binder = PYPROJECT["project"]["urls"]["Binder"]
    for path in sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        assert f"({binder}?urlpath=lab/tree/workspace/{path.name})" in readme, path.name
    assert "--into workspace" in (REPO / "postBuild").read_text(encoding="utf-8"), "postBuild makes that workspace"


def test_the_readmes_local_links_point_to_files_that_exist():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    local = [target for target in re.findall(r"\]\(([^)#\s]+)", readme) if "://" not in target]
    assert local, "the README links the notebooks"
    assert [target for target in local if not (REPO / target).exists()] == []


def test_the_sdist_carries_what_the_tests_need(tmp_path, monkeypatch):
    import tarfile

    from setuptools import build_meta

    monkeypatch.chdir(REPO)
    archive = tmp_path / build_meta.build_sdist(str(tmp_path))
    with tarfile.open(archive) as sdist:
        carried = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    needed = ["Makefile", "environment.yml", "LICENSE", "tests/sanitize.cfg", "tests/helpers.py",
              "instructor/pyproject.toml", "tools/install_torch.py"]
    needed += [str(path.relative_to(REPO)) for path in (REPO / "notebooks").glob("*.ipynb")]
    needed += [str(path.relative_to(REPO)) for path in (REPO / "tests").rglob("*.py")
               if "__pycache__" not in path.parts]
    assert [name for name in needed if name not in carried] == []


def test_the_student_wheel_carries_the_public_cases_and_no_answer_key(tmp_path, monkeypatch):
    import zipfile

    from setuptools import build_meta

    monkeypatch.chdir(REPO)
    wheel = tmp_path / build_meta.build_wheel(str(tmp_path))
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        sources = [archive.read(name).decode("utf-8") for name in names if name.endswith(".py")]
    text = "\n".join(sources)
    assert "vitsteps/teach/checks/public_cases.pt" in names
    assert not [name for name in names if name.startswith(("vitcourse", "notebooks", "instructor"))]
    assert not [name for name in names if name.rsplit("/", 1)[-1] in ("references.py", "exercises.py")]
    assert "BEGIN SOLUTION" not in text

    def bodies(source: str) -> set[str]:  # each function's statements, its name and docstring left out
        found = set()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef):
                body = node.body[1:] if node.body and isinstance(node.body[0], ast.Expr) else node.body
                found.add(ast.dump(ast.Module(body=body, type_ignores=[])))
        return found

    references = bodies((REPO / "instructor/vitcourse/judge/references.py").read_text(encoding="utf-8"))
    assert len(references) > 20
    shipped = set().union(*(bodies(source) for source in sources))
    assert references.isdisjoint(shipped), "a reference's code is in the student wheel"
