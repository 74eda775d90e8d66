"""Student versions made by nbgrader's own preprocessors, and the release of a course's assignments."""
from __future__ import annotations

import copy
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import nbformat

from ..judge import verdict as judge
from ..judge.grade import exercise_map
from . import gradebook
from .settings import CONFIG_FILE, _nbgrader_config, _require_nbgrader, course_settings


def student_version(source: nbformat.NotebookNode, register: tuple[Path, str] | None = None
                    ) -> nbformat.NotebookNode:
    """The student version of a source notebook, by nbgrader's own preprocessors.

    Solutions become `raise NotImplementedError()` stubs, hidden tests are removed, graded and
    instruction cells are locked, outputs and widget state are cleared, checksums are recorded.

    Args:
        source: the instructor's notebook.
        register: (course folder, assignment) to record the notebook's cells in nbgrader's gradebook on the
            way, as `nbgrader generate_assignment` does.
    """
    from nbgrader.preprocessors import (
        CheckCellMetadata,
        ClearHiddenTests,
        ClearMarkScheme,
        ClearOutput,
        ClearSolutions,
        ComputeChecksums,
        LockCells,
        SaveCells,
    )

    config = _nbgrader_config()
    notebook = copy.deepcopy(source)
    steps: list[Any] = [LockCells, ClearSolutions, ClearOutput, CheckCellMetadata, ComputeChecksums]
    resources: dict[str, Any] = {"nbgrader": {"notebook": "", "assignment": ""}}
    if register is not None:
        course, assignment = register
        gradebook.ensure_assignment(course, assignment)
        resources = {"nbgrader": {"notebook": assignment, "assignment": assignment,
                                  "db_url": gradebook.db_url(course)}}
        steps.append(SaveCells)
    steps += [ClearHiddenTests, ClearMarkScheme, ComputeChecksums, CheckCellMetadata]
    for preprocessor in steps:
        notebook, resources = preprocessor(config=config).preprocess(notebook, resources)
    notebook.metadata.pop("widgets", None)
    return notebook


def release(course: Path, notebooks: Iterable[Path], exercises: str | None = None) -> list[Path]:
    """Copy each notebook into `course/source/<stem>/`, write its student version into `course/release/<stem>/`
    and register it in nbgrader's gradebook.

    Args:
        course: the course folder (created if missing).
        notebooks: the solution notebooks.
        exercises: the exercise table to check the graded cells against (the course's setting by default).

    Returns:
        The student versions written.
    """
    _require_nbgrader()
    course.mkdir(parents=True, exist_ok=True)
    if not (course / "nbgrader_config.py").exists():
        shutil.copyfile(CONFIG_FILE, course / "nbgrader_config.py")
    (course / "submitted").mkdir(exist_ok=True)
    try:
        table: judge.Table | None = judge.load_table(exercises or course_settings(course).exercises)
    except judge.TableUnavailable as error:
        table = None
        print(f"warning: {error}; the graded cells cannot be graded until it is there.", file=sys.stderr)
    written = []
    for path in notebooks:
        path = Path(path)
        if path.suffix != ".ipynb" or not path.is_file():
            raise FileNotFoundError(f"no notebook at {path}; pass .ipynb files, "
                                    f"e.g. notebooks/01_patches_unfold.ipynb.")
        assignment = path.stem
        source = nbformat.read(path, as_version=4)
        try:
            student = student_version(source, register=(course, assignment))
        except Exception as error:  # noqa: BLE001 - nbgrader's complaint, with the notebook named
            raise ValueError(f"{path}: cannot make the student version: {error}") from error
        source_dir, release_dir = course / "source" / assignment, course / "release" / assignment
        source_dir.mkdir(parents=True, exist_ok=True)
        release_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, source_dir / path.name)
        target = release_dir / path.name
        nbformat.write(student, target)
        mapping = exercise_map(source, assignment, table)
        print(f"released {assignment}: {len(mapping)} graded test cell{'s' if len(mapping) != 1 else ''} -> {target}")
        for grade_id, exercise in mapping.items():
            if exercise is None and table is not None:
                print(f"warning: {assignment}: test cell {grade_id} has no exercise in the table {table.source!r}; "
                      f"it will score 0 until one is added.", file=sys.stderr)
        written.append(target)
    return written

