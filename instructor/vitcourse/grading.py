"""Student versions and sandboxed autograding for the notebook series (instructors only).

    python -m vitcourse.grading student --course course notebooks/01_patches_unfold.ipynb ...
    python -m vitcourse.grading autograde --course course [--jobs 2] [--no-sandbox]

The course folder follows nbgrader's layout, one assignment per notebook (assignment = notebook stem):

    course/nbgrader_config.py                      the course's nbgrader settings (copied by `student`)
    course/source/<assignment>/<notebook>.ipynb    the instructor's notebook, solutions and hidden tests
    course/release/<assignment>/<notebook>.ipynb   the student version: stubs, no hidden tests, no outputs
    course/submitted/<student>/<assignment>/<notebook>.ipynb   what students hand in (never modified)
    course/autograded/<student>/<assignment>/<notebook>.ipynb  the graded run, outputs included
    course/feedback/<student>/<assignment>/<notebook>.html     the graded run with scores, for the student
    course/grades.csv                              one row per submitted notebook

Grading never trusts a submission's own copy of anything but its solution cells: every instructor
cell (setup, demos, tests with their hidden parts) is taken from `source/`, matched by nbgrader
grade id and by cell id; cells the student added are kept in place. Student code is scanned for
tampering with the checks (a zero, with the reason) and then run in a bubblewrap sandbox (see
`vitcourse.sandbox`). A test cell scores its points only if it ran to the end without an error
and showed a random marker that is appended to it for this run alone.
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
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import nbformat

from . import sandbox

CONFIG_FILE = Path(__file__).with_name("nbgrader_config.py")
MAX_NOTEBOOK_BYTES = 20 * 1024 * 1024
CSV_FIELDS = ["student", "assignment", "notebook", "points", "max_points", "exercises", "reason"]
_SAFE_MIME = ("text/plain", "image/png", "image/jpeg")
STUDENT_MARK = "vitsteps_added_by_student"  # cell metadata flag on cells the student added
_HIDDEN_TESTS = re.compile(r"^[ \t]*### BEGIN HIDDEN TESTS.*?### END HIDDEN TESTS[^\n]*", re.S | re.M)


def _require_nbgrader() -> None:
    try:
        import nbgrader  # noqa: F401
    except ImportError:
        sys.exit("nbgrader is not installed: run `make student` (it installs the instructor extra), or "
                 "`.venv/bin/python -m pip install -e '.[instructor]'`.")


def _nbgrader_config() -> Any:
    from traitlets.config.loader import PyFileConfigLoader

    return PyFileConfigLoader(CONFIG_FILE.name, path=str(CONFIG_FILE.parent)).load_config()


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


# ------------------------------------------------------------------------------------------ student versions


def student_version(source: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The student version of a source notebook, by nbgrader's own preprocessors.

    Solutions become `raise NotImplementedError()` stubs, hidden tests are removed, graded and
    instruction cells are locked, outputs and widget state are cleared, checksums are recorded.
    """
    from nbgrader.preprocessors import (
        CheckCellMetadata,
        ClearHiddenTests,
        ClearMarkScheme,
        ClearOutput,
        ClearSolutions,
        ComputeChecksums,
        LockCells,
    )

    config = _nbgrader_config()
    notebook = copy.deepcopy(source)
    resources: dict[str, Any] = {"nbgrader": {"notebook": "", "assignment": ""}}
    for preprocessor in (LockCells, ClearSolutions, ClearOutput, CheckCellMetadata, ComputeChecksums,
                         ClearHiddenTests, ClearMarkScheme, ComputeChecksums, CheckCellMetadata):
        notebook, resources = preprocessor(config=config).preprocess(notebook, resources)
    notebook.metadata.pop("widgets", None)
    return notebook


def release(course: Path, notebooks: Iterable[Path]) -> list[Path]:
    """Copy each notebook into `course/source/<stem>/` and write its student version into `course/release/<stem>/`.

    Returns:
        The student versions written.
    """
    _require_nbgrader()
    course.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(CONFIG_FILE, course / "nbgrader_config.py")
    (course / "submitted").mkdir(exist_ok=True)
    written = []
    for path in notebooks:
        path = Path(path)
        if path.suffix != ".ipynb" or not path.is_file():
            raise FileNotFoundError(f"no notebook at {path}; pass .ipynb files, "
                                    f"e.g. notebooks/01_patches_unfold.ipynb.")
        try:
            student = student_version(nbformat.read(path, as_version=4))
        except Exception as error:  # noqa: BLE001 - nbgrader's complaint, with the notebook named
            raise ValueError(f"{path}: cannot make the student version: {error}") from error
        assignment = path.stem
        source_dir, release_dir = course / "source" / assignment, course / "release" / assignment
        source_dir.mkdir(parents=True, exist_ok=True)
        release_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, source_dir / path.name)
        target = release_dir / path.name
        nbformat.write(student, target)
        exercises = sum(_is_test(cell) for cell in student.cells)
        print(f"released {assignment}: {exercises} graded test cell{'s' if exercises != 1 else ''} -> {target}")
        written.append(target)
    return written


# ------------------------------------------------------------------------------------------ grading


@dataclasses.dataclass
class Grade:
    """The grade of one submitted notebook."""

    student: str
    assignment: str
    notebook: str
    points: float = 0.0
    max_points: float = 0.0
    exercises: dict[str, tuple[float, float]] = dataclasses.field(default_factory=dict)
    reasons: list[str] = dataclasses.field(default_factory=list)
    why_zero: dict[str, str] = dataclasses.field(default_factory=dict)

    def row(self) -> dict[str, str]:
        return {"student": self.student, "assignment": self.assignment, "notebook": self.notebook,
                "points": _number(self.points), "max_points": _number(self.max_points),
                "exercises": " ".join(f"{grade_id}={_number(got)}/{_number(out_of)}"
                                      for grade_id, (got, out_of) in self.exercises.items()),
                "reason": "; ".join(self.reasons)}


@dataclasses.dataclass
class Assembled:
    """A notebook ready to grade: instructor cells from the source, solutions and extra cells from the student."""

    notebook: nbformat.NotebookNode
    student_cells: dict[int, str]  # graded-notebook index -> label, for every cell of student code
    notes: list[str]


def assemble(source: nbformat.NotebookNode, released: nbformat.NotebookNode,
             submitted: nbformat.NotebookNode) -> Assembled:
    """Rebuild a submission on its source notebook.

    Instructor cells come from `source` (so hidden tests are back, and edited or deleted test cells are
    restored); each solution cell comes from the submission by grade id; cells the student added
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
            source_text = cell.get("source", "")
            source_text = "".join(source_text) if isinstance(source_text, list) else str(source_text)
            if cell.get("cell_type") == "code":
                new = nbformat.v4.new_code_cell(source_text)
                student_cells[len(notebook.cells)] = f"cell {len(notebook.cells) + 1} (added by the student)"
            else:
                new = nbformat.v4.new_markdown_cell(source_text)
            new.metadata[STUDENT_MARK] = True
            notebook.cells.append(new)

    add_student_cells(-1)
    for index, cell in enumerate(source.cells):
        grade_id = _grade_id(cell)
        if _is_solution(cell):
            theirs = submitted_by_grade.get(grade_id)
            new = copy.deepcopy(cell)
            if cell.cell_type == "code":
                new.outputs, new.execution_count = [], None
            if theirs is None:
                notes.append(f"solution cell {grade_id} was deleted")
                new.source = ""
            else:
                text = theirs.get("source", "")
                new.source = "".join(text) if isinstance(text, list) else str(text)
            if cell.cell_type == "code":
                student_cells[len(notebook.cells)] = f"cell {len(notebook.cells) + 1} ({grade_id})"
            notebook.cells.append(new)
        else:
            new = copy.deepcopy(cell)
            if new.cell_type == "code":
                new.outputs, new.execution_count = [], None
            notebook.cells.append(new)
            if grade_id and cell.cell_type == "code" and (_is_test(cell) or _meta(cell).get("locked")):
                theirs = submitted_by_grade.get(grade_id)
                given = released_by_grade.get(grade_id)
                if theirs is None:
                    notes.append(f"test cell {grade_id} was deleted (restored for grading)")
                elif given is not None and _normalise(theirs.get("source", "")) != _normalise(given.source):
                    notes.append(f"test cell {grade_id} was edited (the original was used)")
        add_student_cells(index)
    return Assembled(notebook, student_cells, notes)


def _normalise(source: Any) -> str:
    text = "".join(source) if isinstance(source, list) else str(source)
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


def _tamper_findings(source: nbformat.NotebookNode, assembled: Assembled) -> list[str]:
    tests = [cell.source for cell in source.cells if _is_test(cell)]
    solutions = [cell.source for cell in source.cells if _is_solution(cell) and cell.cell_type == "code"]
    others = [cell.source for cell in source.cells
              if cell.cell_type == "code" and not _is_test(cell) and not _is_solution(cell)]
    protected, module_names = sandbox.protected_names(tests, others, solutions)
    sources = {label: assembled.notebook.cells[index].source
               for index, label in sorted(assembled.student_cells.items())}
    return sandbox.find_tampering(sources, protected, module_names)


def _add_markers(notebook: nbformat.NotebookNode) -> dict[int, str]:
    """End each test cell with a fresh random marker, shown only if the cell ran to its end."""
    markers = {}
    for index, cell in enumerate(notebook.cells):
        if _is_test(cell):
            marker = f"vitsteps-grader:{_grade_id(cell)}:{secrets.token_hex(16)}"
            markers[index] = marker
            cell.source = cell.source.rstrip() + f"\n{marker!r}"
    return markers


def _remove_markers(notebook: nbformat.NotebookNode, markers: dict[int, str]) -> dict[int, bool]:
    """Restore the test cells' source; say which showed their marker; drop the marker outputs."""
    seen = {}
    for index, marker in markers.items():
        cell = notebook.cells[index]
        suffix = f"\n{marker!r}"
        if cell.source.endswith(suffix):
            cell.source = cell.source[: -len(suffix)]
        kept, found = [], False
        for output in cell.get("outputs", []):
            text = output.get("data", {}).get("text/plain") if output.get("output_type") == "execute_result" else None
            text = "".join(text) if isinstance(text, list) else text
            if text == repr(marker):
                found = True
                continue
            kept.append(output)
        cell.outputs = kept
        seen[index] = found
    return seen


def _cell_name(notebook: nbformat.NotebookNode, index: int | None, student_cells: dict[int, str]) -> str:
    if index is None:
        return "before the first cell (kernel start)"
    if index in student_cells:
        return student_cells[index]
    grade_id = _grade_id(notebook.cells[index])
    return f"cell {index + 1}" + (f" ({grade_id})" if grade_id else "")


def _error_of(cell: nbformat.NotebookNode) -> dict[str, Any] | None:
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            return output
    return None


def _is_memory_error(error: dict[str, Any] | None) -> bool:
    if error is None:
        return False
    text = f"{error.get('ename', '')} {error.get('evalue', '')}"
    return "MemoryError" in text or "can't allocate memory" in text or "Cannot allocate memory" in text \
        or "bad_alloc" in text


def grade_notebook(source: nbformat.NotebookNode, released: nbformat.NotebookNode,
                   submitted: nbformat.NotebookNode, limits: sandbox.Limits, use_sandbox: bool,
                   grade: Grade) -> nbformat.NotebookNode:
    """Grade one submission into `grade`; return the graded notebook (with outputs, for feedback)."""
    tests = {index: cell for index, cell in enumerate(source.cells) if _is_test(cell)}
    grade.max_points = sum(_points(cell) for cell in tests.values())
    grade.exercises = {_grade_id(cell): (0.0, _points(cell)) for cell in tests.values()}
    assembled = assemble(source, released, submitted)
    grade.reasons += assembled.notes
    findings = _tamper_findings(source, assembled)
    if findings:
        grade.reasons.insert(0, "tampering: " + "; ".join(findings[:3])
                             + (f" (and {len(findings) - 3} more)" if len(findings) > 3 else ""))
        for grade_id in grade.exercises:
            grade.why_zero[grade_id] = "not run: the submission tampers with the checks"
        return assembled.notebook
    notebook = assembled.notebook
    markers = _add_markers(notebook)
    run = sandbox.execute(notebook, limits, sandbox=use_sandbox)
    graded = run.notebook
    seen = _remove_markers(graded, markers)
    for index, cell in enumerate(graded.cells):
        if not _is_test(cell):
            continue
        grade_id, points = _grade_id(cell), _points(cell)
        error = _error_of(cell)
        if run.status.get(index) == "ok" and error is None and seen.get(index):
            grade.exercises[grade_id] = (points, points)
            grade.points += points
        elif index in run.timed_out:
            grade.why_zero[grade_id] = "the cell ran past the time limit"
        elif error is not None:
            grade.why_zero[grade_id] = f"{error.get('ename', 'error')}: {str(error.get('evalue', ''))[:300]}"
        elif index not in run.status:
            grade.why_zero[grade_id] = "not run: the notebook stopped earlier"
        else:
            grade.why_zero[grade_id] = "the test did not run to its end"
    for index in run.timed_out:
        grade.reasons.append(f"timed out: {_cell_name(graded, index, assembled.student_cells)} ran past "
                             f"{limits.cell_timeout:g} s")
    if run.stopped:
        grade.reasons.append(f"{run.stopped}, in {_cell_name(graded, run.stopped_at, assembled.student_cells)}")
    memory = [index for index, cell in enumerate(graded.cells) if _is_memory_error(_error_of(cell))]
    if memory:
        grade.reasons.append(f"out of memory (limit {limits.memory_mb} MiB) in "
                             + ", ".join(_cell_name(graded, index, assembled.student_cells) for index in memory))
    for index in run.truncated:
        grade.reasons.append(f"output cut in {_cell_name(graded, index, assembled.student_cells)}")
    return graded


def _feedback_html(graded: nbformat.NotebookNode, grade: Grade) -> str:
    """The graded notebook as HTML: a score table first, each test cell followed by its score.

    Hidden tests are not shown (their failures are), so an assignment can be reused next term.
    """
    from nbconvert import HTMLExporter

    notebook = copy.deepcopy(graded)
    test_ids = {id(cell): _grade_id(cell) for cell in notebook.cells if _is_test(cell)}
    for cell in notebook.cells:
        if id(cell) in test_ids:
            cell.source = _HIDDEN_TESTS.sub("# (hidden tests ran here)", cell.source)
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
    lines = [f"# Feedback: {html.escape(grade.assignment)}",
             f"**{html.escape(grade.student)}**, `{html.escape(grade.notebook)}`: "
             f"**{_number(grade.points)} / {_number(grade.max_points)} points**", "",
             "| exercise | points |", "|---|---|"]
    lines += [f"| {html.escape(grade_id)} | {_number(got)} / {_number(out_of)} |"
              for grade_id, (got, out_of) in grade.exercises.items()]
    if grade.reasons:
        lines += ["", "**Notes from the grader:**", "", _as_plain_text("\n".join(grade.reasons))]
    scored = []
    for cell in notebook.cells:
        scored.append(cell)
        if id(cell) in test_ids:
            grade_id = test_ids[id(cell)]
            got, out_of = grade.exercises.get(grade_id, (0.0, 0.0))
            text = f"**{html.escape(grade_id)}: {_number(got)} / {_number(out_of)} points**"
            if grade_id in grade.why_zero:
                text += "\n\n" + _as_plain_text(grade.why_zero[grade_id])
            scored.append(nbformat.v4.new_markdown_cell(text))
    notebook.cells = [nbformat.v4.new_markdown_cell("\n".join(lines))] + scored
    exporter = HTMLExporter(template_name="lab")
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


def find_submissions(course: Path) -> tuple[list[Submission], list[Grade]]:
    """Every `submitted/<student>/<assignment>/<notebook>.ipynb` that matches a source notebook.

    Returns:
        (submissions to grade, grades already decided: unknown assignments, odd names, missing notebooks).
    """
    submissions: list[Submission] = []
    decided: list[Grade] = []
    submitted = course / "submitted"
    for student_dir in sorted(p for p in submitted.iterdir() if not p.name.startswith(".")):
        if not student_dir.is_dir() or student_dir.is_symlink():
            continue
        for assignment_dir in sorted(p for p in student_dir.iterdir() if not p.name.startswith(".")):
            if not assignment_dir.is_dir() or assignment_dir.is_symlink():
                continue
            student, assignment = student_dir.name, assignment_dir.name
            if not _NAME.match(student) or not _NAME.match(assignment):
                decided.append(Grade(student, assignment, "",
                                     reasons=["refused: unusual characters in the folder name"]))
                continue
            source_dir = course / "source" / assignment
            sources = sorted(source_dir.glob("*.ipynb")) if source_dir.is_dir() else []
            if not sources:
                decided.append(Grade(student, assignment, "", reasons=[
                    f"no assignment {assignment!r} in {course / 'source'} (run `make student` first?)"]))
                continue
            for source_path in sources:
                path = assignment_dir / source_path.name
                if path.is_symlink():
                    decided.append(Grade(student, assignment, source_path.name,
                                         reasons=["refused: the notebook is a symlink"]))
                elif not path.is_file():
                    submissions.append(Submission(student, assignment, None, source_path.name))
                else:
                    submissions.append(Submission(student, assignment, path, source_path.name))
    return submissions, decided


def _load(path: Path, as_student: bool) -> nbformat.NotebookNode:
    if path.stat().st_size > MAX_NOTEBOOK_BYTES:
        raise ValueError(f"the notebook is larger than {MAX_NOTEBOOK_BYTES // (1024 * 1024)} MiB")
    with path.open(encoding="utf-8") as handle:
        notebook = nbformat.read(handle, as_version=4)
    if as_student and not isinstance(notebook.get("cells"), list):
        raise ValueError("the notebook has no cells")
    return notebook


def grade_submission(course: Path, submission: Submission, limits: sandbox.Limits, use_sandbox: bool) -> Grade:
    """Grade one submission; write its graded notebook and feedback; never raise for a bad submission."""
    grade = Grade(submission.student, submission.assignment, submission.notebook)
    source_path = course / "source" / submission.assignment / submission.notebook
    released_path = course / "release" / submission.assignment / submission.notebook
    source = _load(source_path, as_student=False)
    released = _load(released_path, as_student=False) if released_path.is_file() else student_version(source)
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
        submitted = _load(submission.path, as_student=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file is the submission's problem
        detail = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
        grade.reasons.append(f"unreadable notebook: {detail}")
        return grade
    try:
        graded = grade_notebook(source, released, submitted, limits, use_sandbox, grade)
    except sandbox.SandboxUnavailable:
        raise
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
    (feedback / (Path(submission.notebook).stem + ".html")).write_text(_feedback_html(graded, grade), encoding="utf-8")
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
              quiet: bool = False) -> list[Grade]:
    """Grade every submission under `course/submitted/`, write grades.csv and the feedback.

    Raises:
        SandboxUnavailable: `use_sandbox` is set and bubblewrap cannot run here.
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
    submissions, grades = find_submissions(course)
    jobs = max(1, jobs or min(len(os.sched_getaffinity(0)), 8))
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(grade_submission, course, submission, limits, use_sandbox): submission
                   for submission in submissions}
        for future in concurrent.futures.as_completed(futures):
            grade = future.result()
            grades.append(grade)
            if not quiet:
                reason = f"  ({'; '.join(grade.reasons)})" if grade.reasons else ""
                print(f"graded {grade.student}/{grade.assignment}/{grade.notebook}: "
                      f"{_number(grade.points)}/{_number(grade.max_points)}{reason}", flush=True)
    path = write_grades(course, grades)
    if not quiet:
        rows = f"{len(grades)} row{'s' if len(grades) != 1 else ''}"
        print(f"wrote {path} ({rows}) and feedback in {course / 'feedback'}")
    return grades


# ------------------------------------------------------------------------------------------ command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vitcourse.grading", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    student = commands.add_parser("student", help="write source and student versions into the course folder")
    student.add_argument("--course", type=Path, required=True, help="the course folder (created if missing)")
    student.add_argument("notebooks", nargs="+", type=Path)
    grade = commands.add_parser("autograde", help="grade every submission under COURSE/submitted/")
    grade.add_argument("--course", type=Path, required=True)
    grade.add_argument("--jobs", type=int, default=None, help="notebooks graded at once (default: the CPU count)")
    grade.add_argument("--cell-timeout", type=float, default=sandbox.Limits.cell_timeout, help="seconds per cell")
    grade.add_argument("--notebook-timeout", type=float, default=sandbox.Limits.notebook_timeout,
                       help="seconds per notebook, wall clock")
    grade.add_argument("--memory-mb", type=int, default=sandbox.Limits.memory_mb, help="memory per kernel, MiB")
    grade.add_argument("--no-sandbox", action="store_true",
                       help="run student code without bubblewrap (resource limits only): trusted code only")
    args = parser.parse_args(argv)
    _require_nbgrader()
    if args.command == "student":
        try:
            release(args.course, args.notebooks)
        except (FileNotFoundError, ValueError) as error:
            parser.error(str(error))
        return 0
    try:
        limits = sandbox.Limits(cell_timeout=args.cell_timeout, notebook_timeout=args.notebook_timeout,
                                memory_mb=args.memory_mb)
    except ValueError as error:
        parser.error(str(error))
    if args.no_sandbox:
        print("warning: --no-sandbox: student code runs with resource limits only, with your permissions.",
              file=sys.stderr)
    try:
        autograde(args.course, limits, use_sandbox=not args.no_sandbox, jobs=args.jobs)
    except sandbox.SandboxUnavailable as error:
        print(f"autograde refused: {error}", file=sys.stderr)
        return 2
    except FileNotFoundError as error:
        print(f"autograde: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
