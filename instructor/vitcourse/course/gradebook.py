"""nbgrader's gradebook (`course/gradebook.db`): assignments registered by `make student`, scores by `make autograde`.

With the assignments, notebooks, grade cells and auto scores in nbgrader's own database, nbgrader's tools work on
the course folder as on one nbgrader graded itself: `nbgrader export` (run in the course folder) lists the
scores, formgrader shows them and accepts manual overrides, `nbgrader release_feedback` hands out the feedback
pages. A manual score an instructor gave in formgrader is kept when autograde runs again.
"""
from __future__ import annotations

import datetime
import re
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..confine import files
from .settings import course_id


def _open(course: Path) -> Any:
    """nbgrader's Gradebook for the course.

    To stamp a new database, nbgrader runs the `alembic` program (seconds, and only if it is on PATH) to learn
    the newest revision of its schema; the revision files say the same in a few milliseconds, so that is used.
    """
    import nbgrader.api

    if getattr(nbgrader.api.get_alembic_version, "__module__", "") != __name__:
        nbgrader.api.get_alembic_version = alembic_head
    return nbgrader.api.Gradebook(db_url(course), course_id(course))


def alembic_head() -> str:
    """The newest revision of nbgrader's database schema: the revision no other revision follows."""
    from nbgrader.dbutil import ALEMBIC_DIR

    revisions, parents = set(), set()
    for path in Path(ALEMBIC_DIR, "versions").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        revision = re.search(r"^revision\s*=\s*['\"](\w+)['\"]", text, re.M)
        parent = re.search(r"^down_revision\s*=\s*['\"](\w+)['\"]", text, re.M)
        if revision:
            revisions.add(revision.group(1))
        if parent:
            parents.add(parent.group(1))
    heads = revisions - parents
    if len(heads) != 1:
        raise RuntimeError(f"nbgrader's schema has {len(heads)} newest revisions in {ALEMBIC_DIR}; expected one")
    return heads.pop()


def db_url(course: Path) -> str:
    """The database nbgrader uses for this course folder (its default: gradebook.db at the course root)."""
    return f"sqlite:///{(Path(course) / 'gradebook.db').resolve()}"


def ensure_assignment(course: Path, assignment: str) -> None:
    """Create the assignment in the gradebook if it is not there."""
    with _open(course) as gradebook:
        gradebook.update_or_create_assignment(assignment)


def record(course: Path, grades: Iterable[Any]) -> int:
    """Write each graded notebook's scores into the gradebook (students and submissions made as needed).

    Args:
        course: the course folder.
        grades: `vitcourse.judge.grade.Grade`s; rows without a known assignment and notebook are skipped.

    Returns:
        How many notebooks were recorded.
    """
    from nbgrader.api import MissingEntry

    written = 0
    with _open(course) as gradebook, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*not in session.*")  # nbgrader's own autoflush notice
        known = {assignment.name: {notebook.name for notebook in assignment.notebooks}
                 for assignment in gradebook.assignments}
        for grade in grades:
            notebook = Path(grade.notebook).stem
            if not grade.recordable or notebook not in known.get(grade.assignment, set()):
                continue
            gradebook.update_or_create_student(grade.student)
            timestamp = _timestamp(Path(course) / "submitted" / grade.student / grade.assignment)
            fields = {"timestamp": timestamp} if timestamp else {}
            gradebook.update_or_create_submission(grade.assignment, grade.student, **fields)
            for grade_id, (points, _) in grade.exercises.items():
                try:
                    cell = gradebook.find_grade(grade_id, notebook, grade.assignment, grade.student)
                except MissingEntry:
                    continue
                cell.auto_score = float(points)
                cell.needs_manual_grade = cell.manual_score is not None
            written += 1
        gradebook.db.commit()
    return written


def _timestamp(folder: Path) -> datetime.datetime | None:
    """nbgrader's `timestamp.txt` of a submission folder, read without following links; None if absent or odd."""
    text = read_small(folder / "timestamp.txt")
    if not text:
        return None
    try:
        from nbgrader.utils import parse_utc

        return parse_utc(text.decode("utf-8").strip())
    except (ValueError, UnicodeDecodeError, OverflowError):
        return None


def read_small(path: Path, limit: int = 4096) -> bytes | None:
    """A small regular file of a submission folder (see `vitcourse.confine.files.read_untrusted`); None when it
    is absent, larger than `limit`, or not a regular file with one name (a link, a device, a FIFO, ...)."""
    try:
        return files.read_untrusted(path, limit, Path(path).name)
    except (OSError, files.UnsafeFile):
        return None
