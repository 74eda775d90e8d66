"""nbgrader's exchange folder: where it is, the permissions nbgrader documents, and a check that says what is wrong.

nbgrader's default exchange (`nbgrader.exchange.default`) is a folder every user of the machine can write:

    <root>                         1777 here (nbgrader asks for 0777 and checks only those bits; the sticky bit
                                   added here keeps one user from renaming or deleting another's entries)
    <root>/<course_id>/            0755, the instructor's: made by `nbgrader release_assignment`
    <root>/<course_id>/outbound/   0755: released assignments, readable by all
    <root>/<course_id>/inbound/    2733: students write submissions, cannot list them (names hold a random part)
    <root>/<course_id>/feedback/   0711: feedback pages under a name derived from each submission's secret
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

DEFAULT_ROOT = Path("/srv/nbgrader/exchange")  # nbgrader's own default for c.Exchange.root
ROOT_MODE = 0o1777
COURSE_MODES = {"": 0o755, "outbound": 0o755, "inbound": 0o2733, "feedback": 0o711}


def problems(root: Path, course_id: str | None = None) -> list[str]:
    """What is wrong with the exchange at `root` (and the course's folders in it, if they exist); [] when fine.

    Args:
        root: nbgrader's `c.Exchange.root`.
        course_id: also check `<root>/<course_id>/` and its inbound, outbound and feedback folders.
    """
    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root must be a path, not {type(root).__name__}: e.g. Path('/srv/nbgrader/exchange').")
    if course_id is not None and (not isinstance(course_id, str) or not course_id or "/" in course_id):
        raise ValueError(f"course_id must be a folder name such as 'vitsteps', not {course_id!r}.")
    root = Path(root)
    if not root.exists():
        return [f"nbgrader's exchange {root} does not exist: create it with `mkdir -p {root} && chmod 1777 {root}` "
                f"(make classroom does this as root)."]
    if root.is_symlink() or not root.is_dir():
        return [f"nbgrader's exchange {root} is not a folder: remove it and run "
                f"`mkdir -p {root} && chmod 1777 {root}`."]
    found = []
    mode = stat.S_IMODE(root.stat().st_mode)
    if mode & 0o777 != 0o777:
        found.append(f"nbgrader's exchange {root} has mode {mode:o}: students cannot submit or fetch through it; "
                     f"nbgrader needs every user to write it: `chmod 1777 {root}`.")
    if course_id is None:
        return found
    for name, wanted in COURSE_MODES.items():
        folder = root / course_id / name if name else root / course_id
        if not folder.is_dir():
            continue
        mode = stat.S_IMODE(folder.stat().st_mode)
        if mode != wanted:
            found.append(f"{folder} has mode {mode:o}, nbgrader's is {wanted:o}: `chmod {wanted:o} {folder}` "
                         f"(as its owner).")
    return found


def prepare(root: Path) -> Path:
    """Create the exchange root with nbgrader's permissions if it is missing (the caller must be allowed to).

    Raises:
        ValueError: the exchange exists with other permissions (it is never changed behind the owner's back).
    """
    root = Path(root)
    if not root.exists():
        root.mkdir(parents=True)
        os.chmod(root, ROOT_MODE)
    found = problems(root)
    if found:
        raise ValueError(" ".join(found))
    return root
