"""The course's settings file (`course/nbgrader_config.py`): nbgrader's, and the grader's `c.VitCourse`."""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

from ..judge.grade import Settings

CONFIG_FILE = Path(__file__).with_name("nbgrader_config.py")


def _require_nbgrader() -> None:
    try:
        import nbgrader  # noqa: F401
    except ImportError:
        sys.exit("nbgrader is not installed: `make student` and `make autograde` install the instructor tools "
                 "(`.venv/bin/python -m pip install -e ./instructor`).")


def _nbgrader_config(path: Path = CONFIG_FILE) -> Any:
    from traitlets.config.loader import PyFileConfigLoader

    return PyFileConfigLoader(path.name, path=str(path.parent)).load_config()


DEFAULT_COURSE_ID = "vitsteps"  # what the packaged nbgrader_config.py sets


def course_id(course: Path) -> str:
    """The course's `c.CourseDirectory.course_id` (its nbgrader_config.py), else the packaged default.

    nbgrader's exchange keeps each course under this name, and the gradebook records it; `make classroom` sets it
    from `COURSE_ID`.
    """
    path = Path(course) / "nbgrader_config.py"
    if not path.is_file():
        return DEFAULT_COURSE_ID
    value = _nbgrader_config(path).get("CourseDirectory", {}).get("course_id", DEFAULT_COURSE_ID)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{path}: c.CourseDirectory.course_id is {value!r}; set it to the course's name, "
                         f"e.g. c.CourseDirectory.course_id = \"vitsteps\".")
    return value


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

