"""Reading what a student handed in: files never through a link, notebooks parsed in a bounded process.

Everything the grader reads from a submission folder (the notebook, nbgrader's `timestamp.txt` and
`submission_secret.txt`) goes through `read_untrusted`: the path is examined without following it, opened with
O_NOFOLLOW | O_NONBLOCK (a FIFO cannot block the grader, a link cannot be followed), the opened file is checked
again (a regular file with one name, the same one that was examined) and read with a size cap. A symbolic
link, a hard link (a second name for a file, perhaps an instructor's), a device, a FIFO or a socket is refused
with a reason and never read.

A notebook's bytes are parsed by `load_notebook` in a separate Python process with its own limits on memory
(RLIMIT_AS), CPU seconds and wall time: the JSON is read there, its size, cell count, per-cell source size,
total output size and nesting depth are checked against `NotebookLimits`, and only what grading uses comes
back (each cell's type, id, source and nbgrader metadata), checked again here before a notebook is built from
it. A notebook with 50,000 cells or JSON nested 100,000 levels deep costs the grader a refusal, not a minute
and hundreds of megabytes.
"""
from __future__ import annotations

import dataclasses
import errno
import json
import os
import resource
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

MIB = 1024 * 1024


class UnsafeFile(ValueError):
    """A file the grader will not read: the message is the reason, in the grader's words."""


# ------------------------------------------------------------------------------------------ files


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def refusal(path: Path | str, what: str = "file") -> str | None:
    """Why the grader would refuse to read `path` (examined without following it), or None when it is a
    regular file with one name. A missing file is not refused here (None); `read_untrusted` reports it."""
    if not isinstance(what, str) or not what:
        raise TypeError(f"what must name the file in words (e.g. 'notebook'), got {what!r}")
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as error:
        return f"the {what} cannot be examined ({error.strerror})"
    if not stat.S_ISREG(info.st_mode):
        return f"the {what} is {_kind(info.st_mode)}"
    if info.st_nlink > 1:
        return f"the {what} is a hard link (one of {info.st_nlink} names for the same file)"
    return None


def read_untrusted(path: Path | str, limit: int, what: str = "file") -> bytes:
    """The bytes of a regular file with one name, at most `limit` of them, never read through a link.

    Args:
        path: the file (in a submission folder).
        limit: the most bytes to read; a larger file is refused.
        what: the file in words, for the reason ("notebook", "timestamp.txt").

    Raises:
        UnsafeFile: the file is a symbolic or hard link, a device, a FIFO, a socket or a folder, changed between
            being examined and opened, or is larger than `limit`; the message says which.
        FileNotFoundError: there is no such file.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
        raise ValueError(f"limit must be a positive number of bytes, got {limit!r}; e.g. 20 * 1024 * 1024.")
    reason = refusal(path, what)
    if reason:
        raise UnsafeFile(reason)
    before = os.lstat(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise UnsafeFile(f"the {what} is a symbolic link") from None
        if error.errno == errno.ENOENT:
            raise
        raise UnsafeFile(f"the {what} cannot be opened ({error.strerror})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeFile(f"the {what} is {_kind(info.st_mode)}")
        if info.st_nlink > 1:
            raise UnsafeFile(f"the {what} is a hard link (one of {info.st_nlink} names for the same file)")
        if (info.st_dev, info.st_ino) != (before.st_dev, before.st_ino):
            raise UnsafeFile(f"the {what} was replaced while the grader opened it")
        if info.st_size > limit:
            raise UnsafeFile(f"the {what} is {_size(info.st_size)}; the limit is {_size(limit)}")
        chunks, total = [], 0
        while total <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > limit:
            raise UnsafeFile(f"the {what} is larger than {_size(limit)}, the limit")
        return b"".join(chunks)
    finally:
        os.close(fd)


def _size(count: int) -> str:
    if count >= MIB:
        return f"{count / MIB:.1f} MiB"
    if count >= 1024:
        return f"{count / 1024:.1f} KiB"
    return f"{count} bytes"


# ------------------------------------------------------------------------------------------ notebooks


@dataclasses.dataclass(frozen=True)
class NotebookLimits:
    """What a submitted notebook may hold, checked before the grader builds anything from it.

    Args:
        notebook_mb: size of the file.
        cells: number of cells.
        cell_source_kb: the source of any one cell.
        output_mb: all the outputs stored in the file together (the grader drops them, but they are parsed).
        depth: nesting of the JSON (lists and objects).
        parse_seconds: wall time of the parsing process (its CPU time is limited to the same).
        parse_memory_mb: address space of the parsing process.
    """

    notebook_mb: float = 20.0
    cells: int = 2000
    cell_source_kb: float = 256.0
    output_mb: float = 16.0
    depth: int = 64
    parse_seconds: float = 10.0
    parse_memory_mb: int = 1024

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"NotebookLimits.{field.name} must be a positive number, got {value!r}.")
        for name in ("cells", "depth", "parse_memory_mb"):
            if not isinstance(getattr(self, name), int):
                raise ValueError(f"NotebookLimits.{name} must be a whole number, got {getattr(self, name)!r}.")


_CELL_TYPES = ("code", "markdown", "raw")
_NBGRADER_KEYS = ("grade", "grade_id", "locked", "points", "schema_version", "solution", "task")


def _depth_exceeds(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (dict, list)):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in (node.values() if isinstance(node, dict) else node))
    return False


def _text(source: Any) -> str | None:
    if isinstance(source, str):
        return source
    if isinstance(source, list) and all(isinstance(line, str) for line in source):
        return "".join(source)
    return None


def _extract(data: bytes, limits: dict[str, Any]) -> dict[str, Any]:
    """In the parsing process: the parts of the notebook grading uses, or {"refused": reason}."""
    try:
        notebook = json.loads(data)
    except RecursionError:
        return {"refused": f"the notebook's JSON is nested more than {limits['depth']} levels deep"}
    except (ValueError, UnicodeDecodeError) as error:
        where = f" (line {error.lineno}, column {error.colno})" if isinstance(error, json.JSONDecodeError) else ""
        return {"unreadable": f"not valid JSON{where}"}
    if not isinstance(notebook, dict):
        return {"unreadable": "not a notebook (the file is not a JSON object)"}
    if _depth_exceeds(notebook, limits["depth"]):
        return {"refused": f"the notebook's JSON is nested more than {limits['depth']} levels deep"}
    major = notebook.get("nbformat")
    if major != 4:
        if not isinstance(major, int) or not 1 <= major <= 4:
            return {"unreadable": "not a notebook (no nbformat version 1 to 4)"}
        if not isinstance(notebook.get("worksheets"), list) and major < 4:
            return {"unreadable": "not a notebook (an old version without worksheets)"}
        import site  # the process starts without site-packages (faster); only old notebooks need nbformat

        site.main()
        import nbformat

        try:
            notebook = json.loads(nbformat.writes(nbformat.convert(nbformat.from_dict(notebook), 4)))
        except Exception as error:  # noqa: BLE001 - whatever the conversion says about a malformed notebook
            return {"unreadable": f"an nbformat {major} notebook that cannot be converted ({type(error).__name__})"}
    cells = notebook.get("cells")
    if not isinstance(cells, list):
        return {"unreadable": "the notebook has no cells"}
    if len(cells) > limits["cells"]:
        return {"refused": f"the notebook has {len(cells):,} cells; the limit is {limits['cells']:,}"}
    kept, output_bytes = [], 0
    for number, cell in enumerate(cells, 1):
        if not isinstance(cell, dict):
            continue
        source = _text(cell.get("source", ""))
        if source is None:
            source = ""
        if len(source.encode("utf-8", "surrogatepass")) > limits["cell_source_bytes"]:
            return {"refused": f"cell {number:,} holds {len(source):,} characters of source; the limit is "
                               f"{_size(limits['cell_source_bytes'])} a cell"}
        outputs = cell.get("outputs")
        if isinstance(outputs, list) and outputs:
            output_bytes += len(json.dumps(outputs, ensure_ascii=False))
            if output_bytes > limits["output_bytes"]:
                return {"refused": f"the notebook's outputs hold more than {_size(limits['output_bytes'])}, the "
                                   f"limit (clear the outputs and submit again)"}
        metadata = cell.get("metadata")
        nbgrader = metadata.get("nbgrader") if isinstance(metadata, dict) else None
        meta = {key: nbgrader[key] for key in _NBGRADER_KEYS if key in nbgrader
                and isinstance(nbgrader[key], (str, int, float, bool))} if isinstance(nbgrader, dict) else None
        cell_id = cell.get("id")
        kept.append({"cell_type": cell.get("cell_type"), "id": cell_id if isinstance(cell_id, str) else None,
                     "source": source, "nbgrader": meta})
    return {"cells": kept}


def _limits_for_child(limits: NotebookLimits) -> dict[str, Any]:
    return {"cells": limits.cells, "cell_source_bytes": int(limits.cell_source_kb * 1024),
            "output_bytes": int(limits.output_mb * MIB), "depth": limits.depth}


def _bound_self(memory: int, seconds: int) -> None:
    """In the parsing process, before it reads anything: its limits on memory, CPU time, files and cores."""
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (seconds, seconds))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))


def load_notebook(data: bytes, limits: NotebookLimits | None = None) -> Any:
    """A submitted notebook (as nbformat's node), parsed in a bounded process and checked against `limits`.

    Only what grading uses is kept: each cell's type, id, source and nbgrader metadata (outputs, attachments
    and other metadata are dropped).

    Raises:
        UnsafeFile: the notebook breaks a limit (the message says which and what the limit is), or its
            parsing ran out of time or memory.
        ValueError: the bytes are not a notebook (the message says why).
        TypeError: `data` is not bytes.
    """
    import nbformat

    if not isinstance(data, (bytes, bytearray)):
        raise TypeError(f"data must be the notebook's bytes, got {type(data).__name__}")
    limits = limits or NotebookLimits()
    if not isinstance(limits, NotebookLimits):
        raise TypeError(f"limits must be a NotebookLimits, got {type(limits).__name__}")
    if len(data) > limits.notebook_mb * MIB:
        raise UnsafeFile(f"the notebook is {_size(len(data))}; the limit is {_size(int(limits.notebook_mb * MIB))}")
    package = str(Path(__file__).resolve().parents[2])
    memory, seconds = int(limits.parse_memory_mb * MIB), max(1, int(limits.parse_seconds + 0.999))
    request = json.dumps(_limits_for_child(limits)).encode() + b"\n" + bytes(data)
    try:
        done = subprocess.run([sys.executable, "-E", "-s", "-S", "-c", _CHILD, package, str(memory), str(seconds)],
                              input=request, capture_output=True, timeout=limits.parse_seconds,
                              env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}, cwd="/")
    except subprocess.TimeoutExpired:
        raise UnsafeFile(f"reading the notebook took longer than {limits.parse_seconds:g} s, the limit") from None
    if done.returncode != 0:
        if b"MemoryError" in done.stderr or done.returncode in (-9, -24):  # SIGKILL / SIGXCPU
            raise UnsafeFile(f"reading the notebook needed more than {limits.parse_memory_mb} MiB or "
                             f"{limits.parse_seconds:g} s, the limits")
        raise UnsafeFile("the notebook could not be read (its reader stopped)")
    return _build(done.stdout, limits, nbformat)


def _build(reply: bytes, limits: NotebookLimits, nbformat: Any) -> Any:
    """The notebook from the parsing process's reply, every field checked again."""
    try:
        parsed = json.loads(reply)
    except ValueError:
        raise UnsafeFile("the notebook could not be read (its reader sent something malformed)") from None
    if not isinstance(parsed, dict):
        raise UnsafeFile("the notebook could not be read (its reader sent something malformed)")
    if isinstance(parsed.get("refused"), str):
        raise UnsafeFile(parsed["refused"][:300])
    if isinstance(parsed.get("unreadable"), str):
        raise ValueError(parsed["unreadable"][:300])
    cells = parsed.get("cells")
    if not isinstance(cells, list) or len(cells) > limits.cells:
        raise UnsafeFile("the notebook could not be read (its reader sent something malformed)")
    notebook = nbformat.v4.new_notebook()
    for cell in cells:
        if not isinstance(cell, dict) or not isinstance(cell.get("source"), str) \
                or len(cell["source"]) > limits.cell_source_kb * 1024:
            raise UnsafeFile("the notebook could not be read (its reader sent something malformed)")
        kind = cell.get("cell_type")
        if kind not in _CELL_TYPES:
            continue
        new = {"code": nbformat.v4.new_code_cell, "markdown": nbformat.v4.new_markdown_cell,
               "raw": nbformat.v4.new_raw_cell}[kind](cell["source"])
        if isinstance(cell.get("id"), str) and len(cell["id"]) <= 64:
            new["id"] = cell["id"]
        else:
            new.pop("id", None)
        meta = cell.get("nbgrader")
        if isinstance(meta, dict):
            new.metadata["nbgrader"] = {key: value for key, value in meta.items() if key in _NBGRADER_KEYS
                                        and isinstance(value, (str, int, float, bool))
                                        and (not isinstance(value, str) or len(value) <= 200)}
        notebook.cells.append(new)
    return notebook


# The parsing process: it bounds itself before reading anything, then reads one line of limits and the
# notebook from stdin and writes one JSON object to stdout; stdlib only (nbformat for old notebooks alone).
_CHILD = """
import json, sys
sys.path.insert(0, sys.argv[1])
from vitcourse.confine.files import _bound_self, _extract
_bound_self(int(sys.argv[2]), int(sys.argv[3]))
limits_line, _, data = sys.stdin.buffer.read().partition(b"\\n")
sys.stdout.write(json.dumps(_extract(data, json.loads(limits_line))))
"""
