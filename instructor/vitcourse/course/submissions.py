"""The submitted folder: what is graded and what is refused, one submission graded into its files, grades.csv."""
from __future__ import annotations

import csv
import dataclasses
import io
import os
import re
from pathlib import Path

import nbformat

from ..confine import files
from ..judge.cells import cell_grade_id, cell_points, is_test
from ..judge.feedback import feedback_html, student_text
from ..judge.grade import Grade, Job, Settings, grade_notebook
from . import gradebook
from .release import student_version

CSV_FIELDS = ["student", "assignment", "notebook", "points", "max_points", "exercises", "reason"]


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
                refused = files.refusal(path, "notebook")
                if refused:
                    decided.append(Grade(student, assignment, source_path.name, reasons=[f"refused: {refused}"]))
                elif not path.is_file():
                    submissions.append(Submission(student, assignment, None, source_path.name))
                else:
                    submissions.append(Submission(student, assignment, path, source_path.name))
    return submissions, decided


def read_submitted(path: Path, settings: Settings) -> nbformat.NotebookNode:
    """A submitted notebook, read without following links and parsed in a bounded process
    (`vitcourse.confine.files`), within the course's limits.

    Raises:
        UnsafeFile: a link or special file, or a notebook past a limit (the message says which).
        ValueError: not a notebook.
    """
    data = files.read_untrusted(path, int(settings.notebook_mb * files.MIB), "notebook")
    return files.load_notebook(data, settings.notebook_limits())


def _zero(grade: Grade) -> None:
    grade.points = 0.0
    grade.exercises = {grade_id: (0.0, out_of) for grade_id, (_, out_of) in grade.exercises.items()}


def grade_submission(course: Path, submission: Submission, job: Job) -> Grade:
    """Grade one submission; write its graded notebook and feedback; never raise for a bad submission."""
    grade = Grade(submission.student, submission.assignment, submission.notebook)
    source, released = course_notebooks(course, submission.assignment, submission.notebook)
    tests = [cell for cell in source.cells if is_test(cell)]
    grade.max_points = sum(cell_points(cell) for cell in tests)
    grade.exercises = {cell_grade_id(cell): (0.0, cell_points(cell)) for cell in tests}
    if submission.path is None:
        grade.reasons.append("no notebook submitted")
        return grade
    if not tests:
        grade.reasons.append("not run: this assignment has no graded exercises")
        return grade
    try:
        submitted = read_submitted(submission.path, job.settings)
    except FileNotFoundError:
        grade.reasons.append("no notebook submitted")
        return grade
    except files.UnsafeFile as error:
        grade.reasons.append(f"refused: {error}")
        return grade
    except ValueError as error:  # the parser's own words: why the bytes are not a notebook
        grade.reasons.append(f"unreadable notebook: {str(error)[:300]}")
        return grade
    except Exception as error:  # noqa: BLE001 - any unreadable file is the submission's problem
        grade.reasons.append(f"unreadable notebook: {type(error).__name__}")
        return grade
    try:
        graded = grade_notebook(source, released, submitted, grade, job)
    except Exception as error:  # noqa: BLE001 - a grader bug must not stop the other submissions
        _zero(grade)
        # the message of a grader's error may quote what the submission held: labelled, on one line, cut
        grade.reasons.append(f"grading failed: {type(error).__name__}: {student_text(str(error))}")
        return grade
    autograded = course / "autograded" / submission.student / submission.assignment
    feedback = course / "feedback" / submission.student / submission.assignment
    autograded.mkdir(parents=True, exist_ok=True)
    feedback.mkdir(parents=True, exist_ok=True)
    text = nbformat.writes(graded)
    write_atomically(autograded / submission.notebook, (text if text.endswith("\n") else text + "\n").encode("utf-8"))
    # `nbgrader release_feedback` copies the page into the exchange as it is: its student must be able to read it
    write_atomically(feedback / (Path(submission.notebook).stem + ".html"),
                     feedback_html(graded, grade).encode("utf-8"), mode=0o644)
    for name in ("timestamp.txt", "submission_secret.txt"):  # what nbgrader's feedback release reads
        path = submission.path.parent / name
        refused = files.refusal(path, name)
        if refused:
            grade.reasons.append(f"not copied: {refused}")
            continue
        data = gradebook.read_small(path)
        if data is not None:
            for folder in (autograded, feedback):
                write_atomically(folder / name, data)
    return grade


def write_atomically(path: Path, data: bytes, mode: int | None = None) -> Path:
    """Write `path` whole or not at all: a temporary file beside it, flushed to disk, then renamed over it.

    A grader killed midway (a batch job past its time, a node lost) leaves the old file or the new one, never part
    of one; the temporary file's name starts with a dot and holds the writer's process id.
    """
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(temporary, mode)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def course_notebooks(course: Path, assignment: str, notebook: str) -> tuple[nbformat.NotebookNode,
                                                                           nbformat.NotebookNode]:
    """The instructor's source notebook of an assignment and its student version (made if not released)."""
    source_path = course / "source" / assignment / notebook
    released_path = course / "release" / assignment / notebook
    source = nbformat.read(source_path, as_version=4)
    released = nbformat.read(released_path, as_version=4) if released_path.is_file() else student_version(source)
    return source, released


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


MAX_CSV_FIELD = 2000  # characters of one field of grades.csv
_CSV_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _csv_safe(value: str) -> str:
    """A field as grades.csv holds it: on one line (newlines and control characters written as escapes), cut to
    `MAX_CSV_FIELD` characters, and never read by a spreadsheet as a formula."""
    value = str(value).encode("utf-8", "backslashreplace").decode("utf-8")
    value = _CSV_CONTROL.sub(lambda match: repr(match.group(0))[1:-1], value)
    if len(value) > MAX_CSV_FIELD:
        value = value[:MAX_CSV_FIELD - 1] + "\u2026"
    return "'" + value if value[:1] in ("=", "+", "-", "@", "|", "%") and not _is_number(value) else value


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True
