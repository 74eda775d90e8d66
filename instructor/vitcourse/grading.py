"""Student versions and trusted autograding for the notebook series (instructors only).

    python -m vitcourse.grading student --course course notebooks/01_patches_unfold.ipynb ...
    python -m vitcourse.grading autograde --course course [--jobs 2] [--exercises MODULE_OR_FILE] [--no-sandbox]

The course folder follows nbgrader's layout, one assignment per notebook (assignment = notebook stem):

    course/nbgrader_config.py                      the course's settings, nbgrader's and the grader's (`c.VitCourse`)
    course/gradebook.db                            nbgrader's gradebook: assignments, students, scores
    course/source/<assignment>/<notebook>.ipynb    the instructor's notebook, solutions and hidden tests
    course/release/<assignment>/<notebook>.ipynb   the student version: stubs, no hidden tests, no outputs
    course/submitted/<student>/<assignment>/<notebook>.ipynb   what students hand in (never modified)
    course/autograded/<student>/<assignment>/<notebook>.ipynb  the graded run (outputs up to the first grading)
    course/feedback/<student>/<assignment>/<notebook>.html     the student's cells and the grader's verdicts
    course/grades.csv                              one row per submission folder, refused ones with the reason

How a submission is graded. Every instructor cell comes from `source/` (matched by grade id and cell id);
only the solution cells and the cells the student added come from the submission. Test cells run as the
students saw them, without their hidden tests, which never enter the student's process. The notebook runs in
the sandbox (`vitcourse.sandbox`); right after each graded test cell, the grader calls the student's function
on inputs it makes from a secret seed and decides each exercise in its own process (`vitcourse.judge`), with
the exercise table's `verdict`. A wrong answer cannot score, whatever the student's code does to its own
process. Calls to the package's reference or to a forbidden function during the grader's calls, a copy of the
reference's code, and code the static scan flags (`vitcourse.scan`) earn `flagged_credit` of the points (0 by
default) and are named in the row's reason. Outputs produced after the first graded test are kept out of the
graded notebook and the feedback: from then on the student's process has held the grader's inputs.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import copy
import csv
import dataclasses
import html
import io
import os
import re
import secrets
import shutil
import sys
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import nbformat

from . import gradebook, judge, sandbox, scan
from .student import without_hidden_tests

CONFIG_FILE = Path(__file__).with_name("nbgrader_config.py")
MAX_NOTEBOOK_BYTES = 20 * 1024 * 1024
CSV_FIELDS = ["student", "assignment", "notebook", "points", "max_points", "exercises", "reason"]
_SAFE_MIME = ("text/plain", "image/png", "image/jpeg")
STUDENT_MARK = "vitsteps_added_by_student"  # cell metadata flag on cells the student added
_EXPORTERS = threading.local()
_SCAN_FLAG = "the static scan flags the notebook (see the reason)"
WITHHELD = ("[outputs after the first graded exercise are not kept: from then on the notebook's process held the "
            "grader's test inputs]")


def _require_nbgrader() -> None:
    try:
        import nbgrader  # noqa: F401
    except ImportError:
        sys.exit("nbgrader is not installed: `make student` and `make autograde` install the instructor tools "
                 "(`.venv/bin/python -m pip install -e ./instructor`).")


def _nbgrader_config(path: Path = CONFIG_FILE) -> Any:
    from traitlets.config.loader import PyFileConfigLoader

    return PyFileConfigLoader(path.name, path=str(path.parent)).load_config()


def _meta(cell: nbformat.NotebookNode) -> dict[str, Any]:
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return meta if isinstance(meta, dict) else {}


def _grade_id(cell: nbformat.NotebookNode) -> str | None:
    grade_id = _meta(cell).get("grade_id")
    return grade_id if isinstance(grade_id, str) and grade_id else None


def _is_test(cell: nbformat.NotebookNode) -> bool:
    return cell.cell_type == "code" and bool(_meta(cell).get("grade")) and _grade_id(cell) is not None


def _is_solution(cell: nbformat.NotebookNode) -> bool:
    return bool(_meta(cell).get("solution")) and _grade_id(cell) is not None


def _points(cell: nbformat.NotebookNode) -> float:
    points = _meta(cell).get("points", 0)
    return float(points) if isinstance(points, (int, float)) and not isinstance(points, bool) else 0.0


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


# ------------------------------------------------------------------------------------------ settings


@dataclasses.dataclass(frozen=True)
class Settings:
    """The grader's course settings, `c.VitCourse.<name>` in the course's nbgrader_config.py.

    Args:
        exercises: the exercise table: a module name or a path to a .py file.
        flagged_credit: the fraction of an exercise's points kept when it is flagged (a call of the package's
            reference or of a forbidden function, a copy of the reference, code the static scan flags).
    """

    exercises: str = judge.DEFAULT_TABLE
    flagged_credit: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.exercises, str) or not self.exercises:
            raise ValueError(f"exercises must name a module or a .py file, got {self.exercises!r}; e.g. "
                             f"'{judge.DEFAULT_TABLE}'.")
        if isinstance(self.flagged_credit, bool) or not isinstance(self.flagged_credit, (int, float)) \
                or not 0 <= self.flagged_credit <= 1:
            raise ValueError(f"flagged_credit must be a number from 0 to 1, got {self.flagged_credit!r}; 0 gives "
                             f"flagged exercises no points, 1 full points.")


def course_settings(course: Path) -> Settings:
    """The settings in `course/nbgrader_config.py` (`c.VitCourse...`), defaults for what it does not set."""
    path = Path(course) / "nbgrader_config.py"
    if not path.is_file():
        return Settings()
    section = _nbgrader_config(path).get("VitCourse", {})
    known = {field.name for field in dataclasses.fields(Settings)}
    unknown = sorted(set(section) - known)
    if unknown:
        raise ValueError(f"{path}: c.VitCourse has no setting {unknown[0]!r}; the settings are {sorted(known)}.")
    return Settings(**{name: section[name] for name in section})


# ------------------------------------------------------------------------------------------ student versions


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


def exercise_map(source: nbformat.NotebookNode, notebook: str, table: judge.Table | None
                 ) -> dict[str, Any]:
    """Test cell grade id -> its exercise in the table (the exercise of the solution cell before it), or None."""
    mapping: dict[str, Any] = {}
    solution: str | None = None
    for cell in source.cells:
        if _is_solution(cell) and cell.cell_type == "code":
            solution = _grade_id(cell)
        if _is_test(cell):
            mapping[_grade_id(cell)] = table.by_grade_id(notebook, solution) if table and solution else None
    return mapping


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


# ------------------------------------------------------------------------------------------ assembling


@dataclasses.dataclass
class Grade:
    """The grade of one submitted notebook (or why a submission folder was not graded)."""

    student: str
    assignment: str
    notebook: str
    points: float = 0.0
    max_points: float = 0.0
    exercises: dict[str, tuple[float, float]] = dataclasses.field(default_factory=dict)
    reasons: list[str] = dataclasses.field(default_factory=list)
    verdicts: dict[str, str] = dataclasses.field(default_factory=dict)  # test grade id -> the grader's words
    recordable: bool = True  # False for refused folders: no gradebook entry

    def row(self) -> dict[str, str]:
        return {"student": self.student, "assignment": self.assignment, "notebook": self.notebook,
                "points": _number(self.points), "max_points": _number(self.max_points),
                "exercises": " ".join(f"{grade_id}={_number(got)}/{_number(out_of)}"
                                      for grade_id, (got, out_of) in self.exercises.items()),
                "reason": "; ".join(self.reasons)}


@dataclasses.dataclass
class Assembled:
    """A notebook ready to run: instructor cells from the source, solutions and extra cells from the student."""

    notebook: nbformat.NotebookNode
    student_cells: dict[int, str]  # graded-notebook index -> label, for every cell of student code
    notes: list[str]


def assemble(source: nbformat.NotebookNode, released: nbformat.NotebookNode,
             submitted: nbformat.NotebookNode) -> Assembled:
    """Rebuild a submission on its source notebook.

    Instructor cells come from `source` (so edited or deleted test cells are restored), test cells without
    their hidden tests; each solution cell comes from the submission by grade id; cells the student added
    (unknown cell id and grade id) are kept after the cell they followed. Edits to test cells are noted.
    """
    source_index: dict[str, int] = {}
    for index, cell in enumerate(source.cells):
        if _grade_id(cell):
            source_index[f"grade:{_grade_id(cell)}"] = index
        if cell.get("id"):
            source_index.setdefault(f"id:{cell['id']}", index)
    released_by_grade = {_grade_id(cell): cell for cell in released.cells if _grade_id(cell)}

    submitted_by_grade: dict[str, nbformat.NotebookNode] = {}
    added: dict[int, list[nbformat.NotebookNode]] = {}
    anchor = -1
    for cell in submitted.cells:
        if not isinstance(cell, dict) or not isinstance(cell.get("metadata", {}), dict):
            continue  # not a cell: ignored
        grade_id = _grade_id(cell)
        key = f"grade:{grade_id}" if grade_id and f"grade:{grade_id}" in source_index else f"id:{cell.get('id')}"
        if key in source_index:
            anchor = source_index[key]
            if grade_id and key.startswith("grade:"):
                submitted_by_grade.setdefault(grade_id, cell)
        elif cell.get("cell_type") in ("code", "markdown"):
            added.setdefault(anchor, []).append(cell)

    notebook = nbformat.v4.new_notebook(metadata=copy.deepcopy(source.metadata))
    notebook.metadata.pop("widgets", None)
    notes: list[str] = []
    student_cells: dict[int, str] = {}

    def add_student_cells(after: int) -> None:
        for cell in added.get(after, []):
            text = _text(cell.get("source", ""))
            if cell.get("cell_type") == "code":
                new = nbformat.v4.new_code_cell(text)
                student_cells[len(notebook.cells)] = f"cell {len(notebook.cells) + 1} (added by the student)"
            else:
                new = nbformat.v4.new_markdown_cell(text)
            new.metadata[STUDENT_MARK] = True
            notebook.cells.append(new)

    add_student_cells(-1)
    for index, cell in enumerate(source.cells):
        grade_id = _grade_id(cell)
        new = copy.deepcopy(cell)
        if new.cell_type == "code":
            new.outputs, new.execution_count = [], None
        if _is_solution(cell):
            theirs = submitted_by_grade.get(grade_id)
            if theirs is None:
                notes.append(f"solution cell {grade_id} was deleted")
                new.source = ""
            else:
                new.source = _text(theirs.get("source", ""))
            if cell.cell_type == "code":
                student_cells[len(notebook.cells)] = f"cell {len(notebook.cells) + 1} ({grade_id})"
        elif _is_test(cell):
            new.source = without_hidden_tests(cell.source, f"test cell {grade_id}")
        notebook.cells.append(new)
        if not _is_solution(cell) and grade_id and cell.cell_type == "code" and \
                (_is_test(cell) or _meta(cell).get("locked")):
            theirs = submitted_by_grade.get(grade_id)
            given = released_by_grade.get(grade_id)
            if theirs is None:
                notes.append(f"test cell {grade_id} was deleted (restored for grading)")
            elif given is not None and _normalise(theirs.get("source", "")) != _normalise(given.source):
                notes.append(f"test cell {grade_id} was edited (the original was used)")
        add_student_cells(index)
    return Assembled(notebook, student_cells, notes)


def _text(source: Any) -> str:
    return "".join(source) if isinstance(source, list) else str(source)


def _normalise(source: Any) -> str:
    return "\n".join(line.rstrip() for line in _text(source).strip().splitlines())


def scan_findings(source: nbformat.NotebookNode, assembled: Assembled) -> list[str]:
    """What the static scan flags in the student's cells (defence in depth; see `vitcourse.scan`)."""
    tests = [cell.source for cell in source.cells if _is_test(cell)]
    solutions = [cell.source for cell in source.cells if _is_solution(cell) and cell.cell_type == "code"]
    others = [cell.source for cell in source.cells
              if cell.cell_type == "code" and not _is_test(cell) and not _is_solution(cell)]
    protected, module_names = scan.protected_names(tests, others, solutions)
    sources = {label: assembled.notebook.cells[index].source
               for index, label in sorted(assembled.student_cells.items())}
    return scan.find_tampering(sources, protected, module_names)


def _cell_name(notebook: nbformat.NotebookNode, index: int | None, student_cells: dict[int, str]) -> str:
    if index is None:
        return "before the first cell (kernel start)"
    if index in student_cells:
        return student_cells[index]
    grade_id = _grade_id(notebook.cells[index])
    return f"cell {index + 1}" + (f" ({grade_id})" if grade_id else "")


def _is_memory_error(cell: nbformat.NotebookNode) -> bool:
    return any(output.get("output_type") == "error" and output.get("ename") == "MemoryError"
               for output in cell.get("outputs", []))


# ------------------------------------------------------------------------------------------ grading one notebook


@dataclasses.dataclass
class Job:
    """What one graded notebook needs besides its files: the warm sandbox, the table, the run's secret."""

    warm: sandbox.Sandbox
    table: judge.Table
    settings: Settings
    secret: bytes


def grade_notebook(source: nbformat.NotebookNode, released: nbformat.NotebookNode,
                   submitted: nbformat.NotebookNode, grade: Grade, job: Job) -> nbformat.NotebookNode:
    """Grade one submission into `grade`; return the graded notebook (outputs up to the first graded test)."""
    notebook_name = Path(grade.notebook).stem
    tests = {_grade_id(cell): cell for cell in source.cells if _is_test(cell)}
    grade.max_points = sum(_points(cell) for cell in tests.values())
    grade.exercises = {grade_id: (0.0, _points(cell)) for grade_id, cell in tests.items()}
    exercises = exercise_map(source, notebook_name, job.table)
    assembled = assemble(source, released, submitted)
    grade.reasons += assembled.notes
    findings = scan_findings(source, assembled)
    notebook = assembled.notebook
    solutions = {_grade_id(cell): cell.source for cell in notebook.cells if _is_solution(cell)}
    positions = {index: _grade_id(cell) for index, cell in enumerate(notebook.cells) if _is_test(cell)}
    outcomes: dict[str, judge.Outcome] = {}
    first_graded: list[int] = []
    oom: list[int] = []
    kills = [0]
    record = sandbox.Execution(notebook=notebook)
    session = job.warm.session()

    def after_cell(index: int) -> None:
        if session.group is not None and session.group.oom_kills() > kills[0]:
            kills[0] = session.group.oom_kills()
            oom.append(index)
        grade_id = positions.get(index)
        exercise = exercises.get(grade_id) if grade_id else None
        if exercise is None:
            return
        if not first_graded:
            first_graded.append(index)
        seed = judge.case_seed(job.secret, grade.student, grade.assignment, exercise.name)
        outcomes[grade_id] = judge.judge(session, job.table, exercise, seed)

    try:
        sandbox.run_notebook(session, notebook, record, after_cell)
    finally:
        session.close()
    memory = [index for index, cell in enumerate(notebook.cells) if _is_memory_error(cell)]
    if first_graded:
        for cell in notebook.cells[first_graded[0] + 1:]:
            if cell.cell_type == "code" and cell.outputs:
                cell.outputs = []
        notebook.metadata["vitcourse"] = {"outputs_kept_until_cell": first_graded[0] + 1}

    credit = job.settings.flagged_credit
    for grade_id, cell in tests.items():
        exercise, points = exercises.get(grade_id), _points(cell)
        outcome = outcomes.get(grade_id)
        flags = list(outcome.flags) if outcome else []
        if exercise is not None:
            copied = judge.copied_reference(solutions.get(exercise.grade_id, ""), exercise)
            if copied:
                flags.append(f"its code is the package's own `{copied}` with other names")
        if findings:
            flags.append(_SCAN_FLAG)
        if exercise is None:
            grade.verdicts[grade_id] = f"not graded: the exercise table {job.table.source!r} has no exercise for it"
        elif outcome is None:
            grade.verdicts[grade_id] = "not graded: the notebook stopped before this test cell"
        elif not outcome.passed:
            grade.verdicts[grade_id] = outcome.hint
        elif flags:
            earned = points * credit
            grade.exercises[grade_id] = (earned, points)
            grade.points += earned
            grade.verdicts[grade_id] = "correct, but flagged: " + "; ".join(flags)
        else:
            grade.exercises[grade_id] = (points, points)
            grade.points += points
            grade.verdicts[grade_id] = "correct"
        named = [flag for flag in flags if flag != _SCAN_FLAG]
        if named and outcome is not None:
            grade.reasons.append(f"flagged {grade_id}: " + "; ".join(named))
    if findings:
        grade.reasons.insert(0, "flagged by the static scan: " + "; ".join(findings[:3])
                             + (f" (and {len(findings) - 3} more)" if len(findings) > 3 else ""))
    for index in record.timed_out:
        grade.reasons.append(f"timed out: {_cell_name(notebook, index, assembled.student_cells)} ran past "
                             f"{job.warm.limits.cell_timeout:g} s")
    if record.stopped:
        grade.reasons.append(f"{record.stopped}, in {_cell_name(notebook, record.stopped_at, assembled.student_cells)}")
    if memory or oom:
        where = ", ".join(_cell_name(notebook, index, assembled.student_cells) for index in sorted(set(memory + oom)))
        grade.reasons.append(f"out of memory (limit {job.warm.limits.memory_mb} MiB for the whole submission) in "
                             f"{where}")
    if record.truncated:
        grade.reasons.append(f"output cut: the notebook printed more than {job.warm.limits.output_kb} KiB "
                             f"(from {_cell_name(notebook, record.truncated[0], assembled.student_cells)})")
    grade.reasons = [reason for reason in grade.reasons if reason]
    return notebook


# ------------------------------------------------------------------------------------------ feedback


def feedback_html(graded: nbformat.NotebookNode, grade: Grade) -> str:
    """The feedback page: the score table, the grader's notes, the student's notebook as it ran, and in place of
    each test cell the grader's verdict. Test cells' code and hidden tests are never on it, nor outputs produced
    after the first graded test."""
    from nbconvert import HTMLExporter

    notebook = copy.deepcopy(graded)
    lines = [f"# Feedback: {html.escape(grade.assignment)}",
             f"**{html.escape(grade.student)}**, `{html.escape(grade.notebook)}`: "
             f"**{_number(grade.points)} / {_number(grade.max_points)} points**", "",
             "| exercise | points |", "|---|---|"]
    lines += [f"| {html.escape(grade_id)} | {_number(got)} / {_number(out_of)} |"
              for grade_id, (got, out_of) in grade.exercises.items()]
    if grade.reasons:
        lines += ["", "**Notes from the grader:**", "", _as_plain_text("\n".join(grade.reasons))]
    kept_until = notebook.metadata.get("vitcourse", {}).get("outputs_kept_until_cell")
    cells = [nbformat.v4.new_markdown_cell("\n".join(lines))]
    for index, cell in enumerate(notebook.cells):
        if _is_test(cell):
            grade_id = _grade_id(cell)
            got, out_of = grade.exercises.get(grade_id, (0.0, 0.0))
            text = f"**{html.escape(grade_id)}: {_number(got)} / {_number(out_of)} points**"
            verdict = grade.verdicts.get(grade_id)
            if verdict:
                text += "\n\n" + _as_plain_text(verdict)
            cells.append(nbformat.v4.new_markdown_cell(text))
            continue
        if cell.cell_type == "markdown" and cell.metadata.get(STUDENT_MARK):
            cell.source = _as_plain_text(cell.source)  # the student's markdown is shown, never rendered as HTML
        cell.metadata = {}
        if cell.cell_type == "code":
            kept = []
            for output in cell.get("outputs", []):
                if output.get("output_type") in ("execute_result", "display_data"):
                    output["data"] = {mime: value for mime, value in output.get("data", {}).items()
                                      if mime in _SAFE_MIME}
                    output["metadata"] = {}
                    if not output["data"]:
                        continue
                kept.append(output)
            cell.outputs = kept
        cell.pop("attachments", None)
        cells.append(cell)
        if kept_until is not None and index + 1 == kept_until:
            cells.append(nbformat.v4.new_markdown_cell(f"*{WITHHELD}*"))
    notebook.cells = cells
    notebook.metadata = {"language_info": {"name": "python"}}
    exporter = getattr(_EXPORTERS, "html", None)
    if exporter is None:
        exporter = _EXPORTERS.html = HTMLExporter(template_name="lab")  # one per grading thread: loading is slow
    body, _ = exporter.from_notebook_node(notebook)
    return body


def _as_plain_text(text: str) -> str:
    """Markdown that shows `text` verbatim: a fenced block longer than any run of backticks inside."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{text}\n{fence}"


# ------------------------------------------------------------------------------------------ autograde


@dataclasses.dataclass(frozen=True)
class Submission:
    student: str
    assignment: str
    path: Path | None  # None: no notebook handed in for this assignment
    notebook: str


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]*$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def shown_name(name: str) -> str:
    """A folder name as a row can hold it: undecodable bytes and control characters escaped."""
    text = name.encode("utf-8", "backslashreplace").decode("utf-8")
    return _CONTROL.sub(lambda match: f"\\x{ord(match.group(0)):02x}", text)


def _refusal(path: Path, what: str) -> str | None:
    """Why a submission folder (a student's or an assignment's) is not graded, or None."""
    name = path.name
    if path.is_symlink():
        return f"refused: the {what} folder is a symbolic link"
    if not path.is_dir():
        return f"refused: {shown_name(name)!r} is a file, not a {what} folder"
    if name.startswith("."):
        return f"refused: the {what} folder's name starts with a dot"
    if not _NAME.match(name):
        return (f"refused: unusual characters in the {what} folder's name (use letters, digits and . _ @ + -, "
                f"starting with a letter or digit)")
    return None


def find_submissions(course: Path) -> tuple[list[Submission], list[Grade]]:
    """Every entry under `submitted/`: the notebooks to grade, and a decided row for everything else.

    Returns:
        (submissions to grade, grades already decided: refused folders, unknown assignments, missing notebooks).
    """
    submissions: list[Submission] = []
    decided: list[Grade] = []
    submitted = course / "submitted"
    for student_dir in sorted(submitted.iterdir()):
        refusal = _refusal(student_dir, "student")
        try:
            entries = [] if refusal else sorted(student_dir.iterdir())
        except OSError as error:
            refusal = f"refused: the student folder cannot be read ({error.strerror})"
        if refusal:
            decided.append(Grade(shown_name(student_dir.name), "", "", reasons=[refusal], recordable=False))
            continue
        if not entries:
            decided.append(Grade(student_dir.name, "", "", reasons=["refused: the student folder is empty"],
                                 recordable=False))
        for assignment_dir in entries:
            student, assignment = student_dir.name, shown_name(assignment_dir.name)
            refusal = _refusal(assignment_dir, "assignment")
            if refusal:
                decided.append(Grade(student, assignment, "", reasons=[refusal], recordable=False))
                continue
            source_dir = course / "source" / assignment
            sources = sorted(source_dir.glob("*.ipynb")) if source_dir.is_dir() else []
            if not sources:
                decided.append(Grade(student, assignment, "", recordable=False, reasons=[
                    f"no assignment {assignment!r} in {course / 'source'} (run `make student` first?)"]))
                continue
            for source_path in sources:
                path = assignment_dir / source_path.name
                if path.is_symlink():
                    decided.append(Grade(student, assignment, source_path.name,
                                         reasons=["refused: the notebook is a symbolic link"]))
                elif not path.is_file():
                    submissions.append(Submission(student, assignment, None, source_path.name))
                else:
                    submissions.append(Submission(student, assignment, path, source_path.name))
    return submissions, decided


def _load(path: Path) -> nbformat.NotebookNode:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, encoding="utf-8") as handle:
        if os.fstat(handle.fileno()).st_size > MAX_NOTEBOOK_BYTES:
            raise ValueError(f"the notebook is larger than {MAX_NOTEBOOK_BYTES // (1024 * 1024)} MiB")
        notebook = nbformat.read(handle, as_version=4)
    if not isinstance(notebook.get("cells"), list):
        raise ValueError("the notebook has no cells")
    return notebook


def grade_submission(course: Path, submission: Submission, job: Job) -> Grade:
    """Grade one submission; write its graded notebook and feedback; never raise for a bad submission."""
    grade = Grade(submission.student, submission.assignment, submission.notebook)
    source_path = course / "source" / submission.assignment / submission.notebook
    released_path = course / "release" / submission.assignment / submission.notebook
    source = nbformat.read(source_path, as_version=4)
    released = nbformat.read(released_path, as_version=4) if released_path.is_file() else student_version(source)
    tests = [cell for cell in source.cells if _is_test(cell)]
    grade.max_points = sum(_points(cell) for cell in tests)
    grade.exercises = {_grade_id(cell): (0.0, _points(cell)) for cell in tests}
    if submission.path is None:
        grade.reasons.append("no notebook submitted")
        return grade
    if not tests:
        grade.reasons.append("not run: this assignment has no graded exercises")
        return grade
    try:
        submitted = _load(submission.path)
    except Exception as error:  # noqa: BLE001 - any unreadable file is the submission's problem
        detail = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
        grade.reasons.append(f"unreadable notebook: {detail}")
        return grade
    try:
        graded = grade_notebook(source, released, submitted, grade, job)
    except Exception as error:  # noqa: BLE001 - a grader bug must not stop the other submissions
        grade.points = 0.0
        grade.exercises = {grade_id: (0.0, out_of) for grade_id, (_, out_of) in grade.exercises.items()}
        grade.reasons.append(f"grading failed: {type(error).__name__}: {str(error)[:200]}")
        return grade
    autograded = course / "autograded" / submission.student / submission.assignment
    feedback = course / "feedback" / submission.student / submission.assignment
    autograded.mkdir(parents=True, exist_ok=True)
    feedback.mkdir(parents=True, exist_ok=True)
    nbformat.write(graded, autograded / submission.notebook)
    (feedback / (Path(submission.notebook).stem + ".html")).write_text(feedback_html(graded, grade), encoding="utf-8")
    for name in ("timestamp.txt", "submission_secret.txt"):  # what nbgrader's feedback release reads
        data = gradebook.read_small(submission.path.parent / name)
        if data is not None:
            for folder in (autograded, feedback):
                (folder / name).write_bytes(data)
    return grade


def write_grades(course: Path, grades: list[Grade]) -> Path:
    """Write `course/grades.csv` (atomically), one row per notebook, sorted by student and assignment."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for grade in sorted(grades, key=lambda g: (g.student, g.assignment, g.notebook)):
        writer.writerow({key: _csv_safe(value) for key, value in grade.row().items()})
    target = course / "grades.csv"
    temporary = course / ".grades.csv.tmp"
    temporary.write_text(buffer.getvalue(), encoding="utf-8")
    os.replace(temporary, target)
    return target


def _csv_safe(value: str) -> str:
    """Keep spreadsheets from reading a cell as a formula."""
    return "'" + value if value[:1] in ("=", "+", "-", "@") and not _is_number(value) else value


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def autograde(course: Path, limits: sandbox.Limits | None = None, use_sandbox: bool = True, jobs: int | None = None,
              quiet: bool = False, settings: Settings | None = None, use_cgroups: bool | None = None) -> list[Grade]:
    """Grade every submission under `course/submitted/`; write grades.csv, the gradebook and the feedback.

    Args:
        course: the course folder.
        limits: what each submission may use (`sandbox.Limits()` by default).
        use_sandbox: run student code in bubblewrap; False is for trusted notebooks only.
        jobs: notebooks graded at once (default: the CPU count, at most 8).
        quiet: print nothing.
        settings: the course's settings (default: read from the course's nbgrader_config.py).
        use_cgroups: as in `sandbox.Sandbox`.

    Raises:
        SandboxUnavailable: `use_sandbox` is set and bubblewrap cannot run here.
        TableUnavailable: the exercise table cannot be imported.
        FileNotFoundError: the course folder has no `submitted/` or `source/`.
    """
    limits = limits or sandbox.Limits()
    if use_sandbox:
        sandbox.find_bwrap()
    if not (course / "source").is_dir():
        raise FileNotFoundError(f"{course / 'source'} does not exist: run `make student` first.")
    if not (course / "submitted").is_dir():
        raise FileNotFoundError(f"{course / 'submitted'} does not exist: put submissions in "
                                f"{course / 'submitted'}/<student>/<assignment>/<notebook>.ipynb.")
    settings = settings or course_settings(course)
    table = judge.load_table(settings.exercises)
    submissions, grades = find_submissions(course)
    preload: set[str] = set()
    for path in {course / "source" / s.assignment / s.notebook for s in submissions if s.path is not None}:
        cells = nbformat.read(path, as_version=4).cells
        preload |= sandbox.imports_of(cell.source for cell in cells if cell.cell_type == "code"
                                      and not _is_solution(cell))
    jobs = max(1, jobs or min(len(os.sched_getaffinity(0)), 8))
    warm = sandbox.Sandbox(limits, sandboxed=use_sandbox, preload=preload, watch=table.watched(),
                           use_cgroups=use_cgroups)
    if any(s.path is not None for s in submissions):
        warm.start()
    job = Job(warm, table, settings, secrets.token_bytes(32))
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = [pool.submit(grade_submission, course, submission, job) for submission in submissions]
            for future in concurrent.futures.as_completed(futures):
                grade = future.result()
                grades.append(grade)
                if not quiet:
                    reason = f"  ({'; '.join(grade.reasons)})" if grade.reasons else ""
                    print(f"graded {grade.student}/{grade.assignment}/{grade.notebook}: "
                          f"{_number(grade.points)}/{_number(grade.max_points)}{reason}", flush=True)
    finally:
        warm.close()
    path = write_grades(course, grades)
    recorded = gradebook.record(course, grades)
    if not quiet:
        rows = f"{len(grades)} row{'s' if len(grades) != 1 else ''}"
        print(f"wrote {path} ({rows}), {recorded} notebook(s) into nbgrader's gradebook, and feedback in "
              f"{course / 'feedback'} ({warm.guarantees})")
    return grades


# ------------------------------------------------------------------------------------------ command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vitcourse.grading", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    student = commands.add_parser("student", help="write source and student versions into the course folder")
    student.add_argument("--course", type=Path, required=True, help="the course folder (created if missing)")
    student.add_argument("--exercises", default=None, help="the exercise table (module or .py file) to check against")
    student.add_argument("notebooks", nargs="+", type=Path)
    grade = commands.add_parser("autograde", help="grade every submission under COURSE/submitted/")
    grade.add_argument("--course", type=Path, required=True)
    grade.add_argument("--jobs", type=int, default=None, help="notebooks graded at once (default: the CPU count)")
    grade.add_argument("--exercises", default=None,
                       help=f"the exercise table, a module or a .py file (default: the course's setting, "
                            f"else {judge.DEFAULT_TABLE})")
    grade.add_argument("--flagged-credit", type=float, default=None,
                       help="fraction of the points a flagged exercise keeps (default: the course's setting, else 0)")
    grade.add_argument("--cell-timeout", type=float, default=sandbox.Limits.cell_timeout, help="seconds per cell")
    grade.add_argument("--notebook-timeout", type=float, default=sandbox.Limits.notebook_timeout,
                       help="seconds per notebook, wall clock")
    grade.add_argument("--memory-mb", type=int, default=sandbox.Limits.memory_mb,
                       help="memory per submission, all its processes together, MiB")
    grade.add_argument("--no-sandbox", action="store_true",
                       help="run student code without bubblewrap (per-process limits only): trusted code only")
    args = parser.parse_args(argv)
    _require_nbgrader()
    if args.command == "student":
        try:
            release(args.course, args.notebooks, args.exercises)
        except (FileNotFoundError, ValueError) as error:
            parser.error(str(error))
        return 0
    try:
        limits = sandbox.Limits(cell_timeout=args.cell_timeout, notebook_timeout=args.notebook_timeout,
                                memory_mb=args.memory_mb)
        settings = course_settings(args.course)
        settings = dataclasses.replace(settings, **{key: value for key, value in (
            ("exercises", args.exercises), ("flagged_credit", args.flagged_credit)) if value is not None})
    except ValueError as error:
        parser.error(str(error))
    if args.no_sandbox:
        print("warning: --no-sandbox: student code runs with per-process limits only, with your permissions.",
              file=sys.stderr)
    try:
        autograde(args.course, limits, use_sandbox=not args.no_sandbox, jobs=args.jobs, settings=settings)
    except sandbox.SandboxUnavailable as error:
        print(f"autograde refused: {error}", file=sys.stderr)
        return 2
    except (FileNotFoundError, judge.TableUnavailable) as error:
        print(f"autograde: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
