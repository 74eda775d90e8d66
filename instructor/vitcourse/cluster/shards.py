"""A class in N shards: which submissions a shard grades, the file it writes, and the merge of all N files.

    python -m vitcourse.grading autograde --course C --shard I/N     # on each of N machines (I = 0 ... N-1)
    python -m vitcourse.grading merge --course C --shards N          # once, when all N have finished

A submission belongs to shard `sha256(student, assignment) mod N`: the share of every shard depends on N alone, not
on the order, number or timing of the jobs, so a shard graded again grades the same submissions. A shard writes its
rows into one file, `<results>/shard-IIIII-of-NNNNN.json` (default results folder: `course/shards/`), whole or not
at all (a temporary file renamed over it), with what it was graded for: the course id, the assignments and a
digest of each source notebook, the vitcourse version, I and N, and a digest of every notebook it graded. The
graded notebooks and feedback pages are per-submission files (`course/autograded/`, `course/feedback/`), each also
written whole or not at all, by the one shard that owns the submission.

The merge checks every file against the course as it is now and against each other, refuses a partial class
(a shard missing, failed, graded on older submissions or sources), and otherwise writes grades.csv and nbgrader's
gradebook exactly as a one-machine `autograde` does, from the same rows; merging again writes the same.
"""
from __future__ import annotations

import dataclasses
import datetime
import hashlib
import importlib.metadata
import json
import os
import re
import socket
import traceback
from collections.abc import Mapping
from pathlib import Path

from ..confine import sandbox
from ..course import batch, gradebook
from ..course.settings import _nbgrader_config, course_settings
from ..course.submissions import Submission, find_submissions, write_atomically, write_grades
from ..judge.grade import Grade, Settings

FORMAT = 1                  # the shard file's layout; a merge reads only its own
RESULTS = "shards"          # the results folder inside the course folder, unless told otherwise
_FILE = re.compile(r"^shard-(\d{5})-of-(\d{5})\.json$")
MAX_SHARDS = 99_999


class ShardMismatch(ValueError):
    """A shard file that does not belong with this course, these sources, this vitcourse or this N."""


class IncompleteClass(RuntimeError):
    """Some shard has no usable result: the merge writes nothing."""


def version() -> str:
    """The installed vitcourse's version (what a shard file records and a merge requires)."""
    try:
        return importlib.metadata.version("vitcourse")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


@dataclasses.dataclass(frozen=True)
class Shard:
    """Shard `index` of `count` (0 <= index < count)."""

    index: int
    count: int

    def __post_init__(self) -> None:
        for name in ("index", "count"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"the shard's {name} must be an int, got {value!r}.")
        if not 1 <= self.count <= MAX_SHARDS:
            raise ValueError(f"the number of shards must be from 1 to {MAX_SHARDS}, got {self.count}; "
                             f"N is how many jobs share the class (--shard I/N with N at least 1).")
        if not 0 <= self.index < self.count:
            raise ValueError(f"shard index {self.index} is out of range for {self.count} shard(s); the index runs "
                             f"from 0 to {self.count - 1} (--shard I/N with 0 <= I < N; a Slurm array "
                             f"--array=0-{self.count - 1}).")

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def filename(self) -> str:
        return f"shard-{self.index:05d}-of-{self.count:05d}.json"

    def owns(self, student: str, assignment: str) -> bool:
        return shard_of(student, assignment, self.count) == self.index


def shard_of(student: str, assignment: str, count: int) -> int:
    """The shard (0 ... count-1) that grades `student`'s `assignment`: a hash, so it depends on `count` alone."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be a positive int, got {count!r}.")
    digest = hashlib.sha256(f"{student}\0{assignment}".encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") % count


def parse_shard(text: str) -> Shard:
    """`"I/N"` -> Shard(I, N), with a message that names the fix for anything else."""
    if not isinstance(text, str):
        raise TypeError(f"shard must be a string 'I/N', got {text!r}.")
    match = re.fullmatch(r"\s*(-?\d+)\s*/\s*(-?\d+)\s*", text)
    if not match:
        raise ValueError(f"shard must be I/N, got {text!r}; write shard I of N counting from 0 (0/4, 1/4, 2/4, 3/4).")
    return Shard(int(match.group(1)), int(match.group(2)))


def _env_int(env: Mapping[str, str], name: str) -> int:
    try:
        return int(env[name])
    except ValueError:
        raise ValueError(f"{name}={env[name]!r} is not a whole number; run the task under sbatch --array or give "
                         f"--shard I/N.") from None


def resolve_shard(flag: str | None, count: int | None = None, env: Mapping[str, str] | None = None) -> Shard | None:
    """The shard this process grades, or None for the whole class.

    Args:
        flag: `--shard I/N`, which wins when given.
        count: `--shards N`, the shard count for a Kubernetes Indexed Job (its `completions`), which Kubernetes
            does not pass to the pod; else the environment's `VITCOURSE_SHARDS`.
        env: the environment (default `os.environ`): a Slurm array task's `SLURM_ARRAY_TASK_ID` and
            `SLURM_ARRAY_TASK_COUNT` (less `SLURM_ARRAY_TASK_MIN`, so `--array=1-4` works too), or a Kubernetes
            Indexed Job's `JOB_COMPLETION_INDEX`.
    """
    env = os.environ if env is None else env
    if flag is not None:
        return parse_shard(flag)
    if count is not None and (isinstance(count, bool) or not isinstance(count, int)):
        raise TypeError(f"count must be an int or None, got {count!r}.")
    if "SLURM_ARRAY_TASK_ID" in env:
        if "SLURM_ARRAY_TASK_COUNT" not in env:
            raise ValueError("SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not; give --shard I/N.")
        step = _env_int(env, "SLURM_ARRAY_TASK_STEP") if "SLURM_ARRAY_TASK_STEP" in env else 1
        first = _env_int(env, "SLURM_ARRAY_TASK_MIN") if "SLURM_ARRAY_TASK_MIN" in env else 0
        return Shard((_env_int(env, "SLURM_ARRAY_TASK_ID") - first) // max(step, 1),
                     _env_int(env, "SLURM_ARRAY_TASK_COUNT"))
    if "JOB_COMPLETION_INDEX" in env:
        if count is None:
            if "VITCOURSE_SHARDS" not in env:
                raise ValueError("JOB_COMPLETION_INDEX is set (a Kubernetes Indexed Job) but not the number of "
                                 "shards; give --shards N or VITCOURSE_SHARDS=N, N being the Job's completions.")
            count = _env_int(env, "VITCOURSE_SHARDS")
        return Shard(_env_int(env, "JOB_COMPLETION_INDEX"), count)
    if count is not None:
        raise ValueError(f"--shards {count} needs a shard index: JOB_COMPLETION_INDEX (a Kubernetes Indexed Job) "
                         f"is not set; give --shard I/{count} instead.")
    return None


# ------------------------------------------------------------------------------------------ what a shard is for


def course_id(course: Path) -> str:
    """`c.CourseDirectory.course_id` of the course's nbgrader_config.py (nbgrader's gradebook course)."""
    path = Path(course) / "nbgrader_config.py"
    if path.is_file():
        value = _nbgrader_config(path).get("CourseDirectory", {}).get("course_id")
        if isinstance(value, str) and value:
            return value
    return gradebook.COURSE_ID


def identity(course: Path) -> dict:
    """What a shard's rows hold for: the course id, each assignment's source notebooks' digest, the version."""
    source = Path(course) / "source"
    assignments = {}
    for folder in sorted(source.iterdir()) if source.is_dir() else []:
        if folder.is_dir() and not folder.is_symlink():
            digest = hashlib.sha256()
            for path in sorted(folder.glob("*.ipynb")):
                digest.update(path.name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
            assignments[folder.name] = digest.hexdigest()
    return {"course_id": course_id(course), "assignments": assignments, "vitcourse": version()}


def fingerprint(path: Path | None) -> str | None:
    """sha256 of a submitted notebook (never through a link), None when there is none to read."""
    if path is None:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    digest = hashlib.sha256()
    with os.fdopen(fd, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _key(student: str, assignment: str, notebook: str) -> str:
    return f"{student}/{assignment}/{notebook}"


def _row(grade: Grade) -> dict:
    return dataclasses.asdict(grade)


def _grade(row: dict) -> Grade:
    known = {field.name for field in dataclasses.fields(Grade)}
    values = {name: row[name] for name in known if name in row}
    values["exercises"] = {grade_id: (float(got), float(out_of))
                           for grade_id, (got, out_of) in values.get("exercises", {}).items()}
    return Grade(**values)


def results_folder(course: Path, results: Path | None = None) -> Path:
    return Path(results) if results is not None else Path(course) / RESULTS


# ------------------------------------------------------------------------------------------ grading one shard


def share(course: Path, shard: Shard) -> tuple[list[Submission], list[Grade]]:
    """The submissions shard `shard` grades and the rows already decided that it reports (refused folders)."""
    submissions, decided = find_submissions(Path(course))
    return ([s for s in submissions if shard.owns(s.student, s.assignment)],
            [g for g in decided if shard.owns(g.student, g.assignment)])


def grade_shard(course: Path, shard: Shard, limits: sandbox.Limits | None = None, use_sandbox: bool = True,
                jobs: int | None = None, quiet: bool = False, settings: Settings | None = None,
                use_cgroups: bool | None = None, results: Path | None = None) -> Path:
    """Grade shard `shard` of the class and write its file into the results folder (nothing else of the class).

    Args:
        course: the course folder (on storage every shard and the merge see).
        shard: which share to grade.
        limits, use_sandbox, jobs, quiet, settings, use_cgroups: as `vitcourse.grading.autograde`.
        results: the results folder (default `course/shards/`).

    Returns:
        The shard's file. When grading fails (no sandbox, no exercise table), the file says so and the error is
        raised again: the merge names the shard as failed.
    """
    course = Path(course)
    if not isinstance(shard, Shard):
        raise TypeError(f"shard must be a Shard, got {shard!r}; parse 'I/N' with parse_shard.")
    limits = limits or sandbox.Limits()
    folder = results_folder(course, results)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob(f".{shard.filename}.*.tmp"):  # a temporary file of a run of this shard that was killed
        stale.unlink(missing_ok=True)
    record = {"format": FORMAT, **identity(course), "shards": shard.count, "shard": shard.index,
              "host": socket.gethostname(), "started": _now()}
    try:
        if use_sandbox:
            sandbox.find_bwrap()
        if not (course / "source").is_dir():
            raise FileNotFoundError(f"{course / 'source'} does not exist: run `make student` first.")
        if not (course / "submitted").is_dir():
            raise FileNotFoundError(f"{course / 'submitted'} does not exist.")
        settings = settings or course_settings(course)
        submissions, decided = share(course, shard)
        graded, guarantees = batch.grade_all(course, submissions, limits, settings, use_sandbox, jobs, quiet,
                                               use_cgroups)
    except Exception as error:
        record.update(status="failed", finished=_now(), error=f"{type(error).__name__}: {error}",
                      traceback=traceback.format_exc(limit=8))
        write_atomically(folder / shard.filename, (json.dumps(record, indent=1) + "\n").encode("utf-8"))
        raise
    prints = {_key(s.student, s.assignment, s.notebook): fingerprint(s.path) for s in submissions}
    rows = sorted(decided + graded, key=lambda g: (g.student, g.assignment, g.notebook))
    record.update(status="done", finished=_now(), settings=dataclasses.asdict(settings), guarantees=guarantees,
                  rows=[{"grade": _row(g), "submitted": prints.get(_key(g.student, g.assignment, g.notebook))}
                        for g in rows])
    path = write_atomically(folder / shard.filename, (json.dumps(record, indent=1) + "\n").encode("utf-8"))
    if not quiet:
        print(f"shard {shard}: {len(rows)} row(s) ({len(submissions)} notebook(s) graded) in {path}", flush=True)
    return path


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


# ------------------------------------------------------------------------------------------ merge


@dataclasses.dataclass
class Merged:
    grades: list[Grade]
    csv: Path
    recorded: int


def _read_shard(path: Path, shard: Shard, expected: dict) -> dict:
    """A shard file, checked against the course as it is now; ShardMismatch says what differs and the fix."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ShardMismatch(f"{path} is not a shard file ({error}); remove it and grade shard {shard} again.") \
            from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise ShardMismatch(f"{path} is not a shard file of format {FORMAT}; remove it and grade shard {shard} "
                            f"again.")
    fix = f"grade every shard again (the results folder {path.parent} is not this class's; use another --results)"
    if record.get("course_id") != expected["course_id"]:
        raise ShardMismatch(f"{path} was written for course {record.get('course_id')!r}, but this course is "
                            f"{expected['course_id']!r}: {fix}.")
    if record.get("vitcourse") != expected["vitcourse"]:
        raise ShardMismatch(f"{path} was written by vitcourse {record.get('vitcourse')}, this is vitcourse "
                            f"{expected['vitcourse']}: grade every shard again with this version (or merge with "
                            f"the version that graded them).")
    theirs, ours = record.get("assignments") or {}, expected["assignments"]
    if set(theirs) != set(ours):
        raise ShardMismatch(f"{path} was graded for the assignments {sorted(theirs)}, but the course has "
                            f"{sorted(ours)}: {fix}.")
    changed = sorted(name for name in ours if theirs[name] != ours[name])
    if changed:
        raise ShardMismatch(f"{path} was graded on other source notebooks of {', '.join(changed)} than the course "
                            f"holds now: grade every shard again.")
    if (record.get("shard"), record.get("shards")) != (shard.index, shard.count):
        raise ShardMismatch(f"{path} says it is shard {record.get('shard')}/{record.get('shards')}, not {shard}: "
                            f"remove it and grade shard {shard} again.")
    return record


def merge(course: Path, shards: int, results: Path | None = None, quiet: bool = False) -> Merged:
    """Merge the N shard files into grades.csv and nbgrader's gradebook, or write nothing.

    Args:
        course: the course folder.
        shards: N, the number of shards the class was graded in.
        results: the results folder (default `course/shards/`).
        quiet: print nothing.

    Raises:
        ValueError: `shards` is not a positive int.
        ShardMismatch: a shard file belongs to another course, other sources, another vitcourse or another N.
        IncompleteClass: a shard is missing, failed, or graded submissions that have changed since; the
            message names each and the command that grades it again.
    """
    course = Path(course)
    if isinstance(shards, bool) or not isinstance(shards, int):
        raise TypeError(f"shards must be an int, got {shards!r}.")
    if shards < 1:
        raise ValueError(f"shards must be at least 1, got {shards}; give the N the class was graded in "
                         f"(--shards N).")
    Shard(0, shards)  # the range check
    folder = results_folder(course, results)
    if not (course / "submitted").is_dir():
        raise FileNotFoundError(f"{course / 'submitted'} does not exist.")
    expected = identity(course)
    submissions, decided = find_submissions(course)
    now: dict[int, dict[str, str | None]] = {index: {} for index in range(shards)}
    for submission in submissions:
        now[shard_of(submission.student, submission.assignment, shards)][
            _key(submission.student, submission.assignment, submission.notebook)] = fingerprint(submission.path)
    for grade in decided:
        now[shard_of(grade.student, grade.assignment, shards)][_key(grade.student, grade.assignment,
                                                                    grade.notebook)] = None
    problems: list[str] = []
    redo: list[Shard] = []
    grades: list[Grade] = []
    settings_seen: dict[str, list[str]] = {}
    for index in range(shards):
        shard = Shard(index, shards)
        path = folder / shard.filename
        if not path.is_file():
            problems.append(f"shard {shard} is missing (no {path})")
            redo.append(shard)
            continue
        record = _read_shard(path, shard, expected)
        if record.get("status") != "done":
            problems.append(f"shard {shard} failed on {record.get('host', '?')}: "
                            f"{str(record.get('error', 'no reason given'))[:300]}")
            redo.append(shard)
            continue
        rows = {_key(r["grade"]["student"], r["grade"]["assignment"], r["grade"]["notebook"]): r
                for r in record.get("rows", [])}
        stale = sorted(set(rows) ^ set(now[index])) + sorted(
            key for key in set(rows) & set(now[index]) if rows[key].get("submitted") != now[index][key])
        if stale:
            problems.append(f"shard {shard} was graded before submissions changed ({len(stale)}: "
                            f"{', '.join(stale[:3])}{', ...' if len(stale) > 3 else ''})")
            redo.append(shard)
            continue
        settings_seen.setdefault(json.dumps(record.get("settings"), sort_keys=True), []).append(str(shard))
        grades += [_grade(row["grade"]) for row in rows.values()]
    if len(settings_seen) > 1:
        raise ShardMismatch(f"the shards were graded with different settings ({'; '.join(f'{s}: shards {v}' for s, v in settings_seen.items())}): grade them again with the same.")  # noqa: E501
    if problems:
        others = sorted({int(m.group(2)) for p in folder.glob("shard-*.json") if (m := _FILE.match(p.name))}
                        - {shards}) if folder.is_dir() else []
        hint = f" (the results folder holds shards of N={', '.join(map(str, others))})" if others else ""
        commands = "; ".join(f"autograde --course {course} --shard {shard}" for shard in redo[:4])
        raise IncompleteClass(f"the class is not complete, so nothing was written: {'; '.join(problems)}{hint}. "
                              f"Grade {'them' if len(redo) > 1 else 'it'} again ({commands}"
                              f"{'; ...' if len(redo) > 4 else ''}), then merge.")
    path = write_grades(course, grades)
    recorded = gradebook.record(course, grades)
    if not quiet:
        print(f"merged {shards} shard(s): wrote {path} ({len(grades)} rows), {recorded} notebook(s) into nbgrader's "
              f"gradebook")
    return Merged(grades, path, recorded)
