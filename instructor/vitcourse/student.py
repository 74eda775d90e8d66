"""Student versions of the solution notebooks, with the standard library alone, and the student's own workspace.

    python -m vitcourse.student workspace --into workspace notebooks/*.ipynb

A student version is what nbgrader's `generate_assignment` writes, cell for cell: every `### BEGIN SOLUTION` ...
`### END SOLUTION` region becomes `# YOUR CODE HERE` and `raise NotImplementedError()` (indented like the region),
every `### BEGIN HIDDEN TESTS` ... `### END HIDDEN TESTS` region is removed, outputs and execution counts are
cleared, and test and read-only cells are locked against editing. It needs neither nbgrader nor nbformat, so
`make lab` can make the student's workspace in an environment that has neither; a test checks that both agree.

`workspace` copies each notebook's student version into a folder of the student's own, once: a file already there
is the student's work and is never overwritten, so running it again only adds notebooks that are new.
"""
from __future__ import annotations

import argparse
import copy
import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any

CODE_STUB = ["# YOUR CODE HERE", "raise NotImplementedError()"]
TEXT_STUB = ["YOUR ANSWER HERE"]
_CLEARED_METADATA = ("collapsed", "scrolled", "execution")


def _source(cell: dict[str, Any]) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def _nbgrader(cell: dict[str, Any]) -> dict[str, Any]:
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return meta if isinstance(meta, dict) else {}


def _replace_regions(source: str, begin: str, end: str, stub: list[str] | None, where: str) -> tuple[str, bool]:
    """`source` with each begin..end region replaced by `stub` (indented like its begin line) or removed."""
    kept: list[str] = []
    inside = replaced = False
    for line in source.split("\n"):
        if begin in line:
            if inside:
                raise ValueError(f"{where}: a second `{begin}` before `{end}`; close each region before the next.")
            inside = replaced = True
            indent = re.match(r"\s*", line).group(0)
            kept += [indent + stub_line for stub_line in stub or []]
        elif end in line:
            inside = False
        elif not inside:
            kept.append(line)
    if inside:
        raise ValueError(f"{where}: `{begin}` has no `{end}`; add the closing line.")
    return "\n".join(kept), replaced


def without_hidden_tests(source: str, where: str = "a test cell") -> str:
    """A test cell's source as students see it: every `### BEGIN HIDDEN TESTS` region removed.

    Raises:
        ValueError: a region is not closed, or a second one opens before the first closes.
    """
    return _replace_regions(source, "BEGIN HIDDEN TESTS", "END HIDDEN TESTS", None, where)[0]


def student_version(notebook: dict[str, Any], name: str = "notebook") -> dict[str, Any]:
    """The student version of a solution notebook (a notebook as parsed JSON, version 4).

    Args:
        notebook: the solution notebook, e.g. `json.load(open("notebooks/01_patches_unfold.ipynb"))`.
        name: how errors name the notebook.

    Returns:
        A new notebook: solutions stubbed, hidden tests removed, outputs cleared, test cells locked.
    """
    if not isinstance(notebook, dict) or not isinstance(notebook.get("cells"), list):
        raise TypeError(f"notebook must be a parsed .ipynb (a dict with a 'cells' list), got "
                        f"{type(notebook).__name__}; pass json.load(open(path)).")
    student = copy.deepcopy(notebook)
    student.get("metadata", {}).pop("widgets", None)
    for index, cell in enumerate(student["cells"]):
        where = f"{name}, cell {index}"
        meta = _nbgrader(cell)
        solution, grade, locked = bool(meta.get("solution")), bool(meta.get("grade")), bool(meta.get("locked"))
        code = cell.get("cell_type") == "code"
        source, replaced = _replace_regions(_source(cell), "BEGIN SOLUTION", "END SOLUTION",
                                            CODE_STUB if code else TEXT_STUB, where)
        if replaced and not solution:
            raise ValueError(f"{where}: a solution region in a cell not marked as a solution; mark it in nbgrader's "
                             f"cell metadata (solution: true).")
        if solution and not replaced:
            source = "\n".join(CODE_STUB if code else TEXT_STUB)
        source, hidden = _replace_regions(source, "BEGIN HIDDEN TESTS", "END HIDDEN TESTS", None, where)
        if hidden and not grade:
            raise ValueError(f"{where}: hidden tests in a cell that is not graded; mark it in nbgrader's cell "
                             f"metadata (grade: true).")
        cell["source"] = source
        metadata = cell.setdefault("metadata", {})
        if solution:
            metadata["deletable"] = False
        elif grade or locked:
            metadata["deletable"] = metadata["editable"] = False
        if code:
            cell["outputs"], cell["execution_count"] = [], None
            for field in _CLEARED_METADATA:
                metadata.pop(field, None)
    return student


def make_workspace(notebooks: list[Path], into: Path) -> list[tuple[Path, str]]:
    """Write each notebook's student version into `into`, keeping every file already there.

    Returns:
        (path in the workspace, "added" or "kept") for each notebook.
    """
    into.mkdir(parents=True, exist_ok=True)
    done = []
    for path in notebooks:
        if path.suffix != ".ipynb" or not path.is_file():
            raise FileNotFoundError(f"no notebook at {path}; pass .ipynb files, "
                                    f"e.g. notebooks/01_patches_unfold.ipynb.")
        target = into / path.name
        if target.exists():
            done.append((target, "kept"))
            continue
        student = student_version(json.loads(path.read_text(encoding="utf-8")), path.name)
        partial = target.with_suffix(".ipynb.part")
        partial.write_text(json.dumps(student, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        partial.replace(target)
        done.append((target, "added"))
    images = notebooks[0].parent / "images" if notebooks else None
    if images is not None and images.is_dir() and not (into / "images").exists():
        shutil.copytree(images, into / "images")
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vitcourse.student", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    workspace = commands.add_parser("workspace", help="copy student versions into a folder, never overwriting")
    workspace.add_argument("--into", type=Path, required=True, help="the student's folder, e.g. workspace")
    workspace.add_argument("notebooks", nargs="+", type=Path)
    args = parser.parse_args(argv)
    done = make_workspace(args.notebooks, args.into)
    added = [path.name for path, what in done if what == "added"]
    kept = len(done) - len(added)
    print(f"Your workspace is {args.into}/: {len(added)} notebook(s) added"
          + (f", {kept} already there kept as you left them" if kept else "") + ".")
    return 0


if __name__ == "__main__":
    sys.exit(main())
