"""One control group per submission, where the kernel lets the grader make them: limits on the whole submission.

A cgroup bounds the processes of a submission together: `pids.max` stops a fork bomb, and the memory limit
covers every process, the submission's tmpfs, unlinked-but-open files and shared memory, all charged to the
same group. The grader makes the groups under its own cgroup, so it needs one of:

* cgroup v2 with the `memory` and `pids` controllers delegated to the grader's cgroup (for example a shell
  started by `systemd-run --user --scope -p Delegate=yes bash`); the grader moves the processes of its own
  group into a leaf so that the controllers can be enabled below it;
* cgroup v1 with writable `memory` and `pids` hierarchies (root on most machines).

`find()` returns None when neither is there; the sandbox then falls back to per-process limits, a process
count per submission (RLIMIT_NPROC in the submission's own user namespace) and a memory watch (see
`vitcourse.confine.sandbox`). Every group made here is removed again, with its parent, by `Tree.close()`.
"""
from __future__ import annotations

import itertools
import os
import secrets
import signal
import time
from pathlib import Path

_MB = 1024 * 1024


class Group:
    """The cgroup(s) of one submission: one directory per hierarchy (v2: one; v1: memory and pids)."""

    def __init__(self, version: int, folders: dict[str, Path]) -> None:
        self.version = version
        self.folders = folders

    def add(self, pid: int) -> None:
        """Move process `pid` (and its future children) into the group."""
        for folder in self.folders.values():
            (folder / "cgroup.procs").write_text(str(pid))

    def pids(self) -> set[int]:
        found: set[int] = set()
        for folder in self.folders.values():
            try:
                found |= {int(line) for line in (folder / "cgroup.procs").read_text().split()}
            except OSError:
                pass
        return found

    def oom_kills(self) -> int:
        """How many processes the kernel killed for memory in this group."""
        memory = self.folders.get("memory")
        if memory is None:
            return 0
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        try:
            text = (memory / name).read_text()
        except OSError:
            return 0
        counts = dict(line.split() for line in text.splitlines() if len(line.split()) == 2)
        if "oom_kill" in counts:
            return int(counts["oom_kill"])
        try:  # kernels before 4.13 count no kills in v1: a hit of the limit is the sign
            return int(int((memory / "memory.failcnt").read_text()) > 0)
        except (OSError, ValueError):
            return 0

    def kill(self) -> None:
        """SIGKILL every process in the group (v2 in one write; v1 by listing until none is left)."""
        if self.version == 2:
            try:
                (self.folders["memory"] / "cgroup.kill").write_text("1")
                return
            except OSError:
                pass
        for _ in range(50):
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.01)

    def remove(self, timeout: float = 5.0) -> bool:
        """Delete the group once its processes are gone; True when every directory is gone."""
        deadline = time.monotonic() + timeout
        for folder in self.folders.values():
            while folder.exists():
                try:
                    folder.rmdir()
                except OSError:
                    if time.monotonic() > deadline:
                        return False
                    self.kill()
                    time.sleep(0.02)
        return True


class Tree:
    """The grader's own parent group(s), under which one group per submission is made."""

    def __init__(self, version: int, parents: dict[str, Path]) -> None:
        self.version = version
        self.parents = parents
        self.numbers = itertools.count(1)  # thread-safe in CPython: grading threads make groups at once

    def make(self, memory_bytes: int, processes: int) -> Group:
        """A new group with these limits."""
        number = next(self.numbers)
        folders = {}
        for controller, parent in self.parents.items():
            folder = parent / f"submission-{number}"
            folder.mkdir()
            folders[controller] = folder
        group = Group(self.version, folders)
        try:
            if self.version == 2:
                folder = folders["memory"]
                (folder / "memory.max").write_text(str(memory_bytes))
                _try_write(folder / "memory.swap.max", "0")
                (folder / "pids.max").write_text(str(processes))
            else:
                memory = folders["memory"]
                (memory / "memory.limit_in_bytes").write_text(str(memory_bytes))
                _try_write(memory / "memory.memsw.limit_in_bytes", str(memory_bytes))
                _try_write(memory / "memory.swappiness", "0")
                (folders["pids"] / "pids.max").write_text(str(processes))
        except OSError:
            group.remove()
            raise
        return group

    def close(self) -> None:
        """Remove the parent group(s); call after every submission's group is removed."""
        for parent in self.parents.values():
            for child in parent.glob("submission-*"):
                Group(self.version, {"x": child}).remove(timeout=2.0)
            try:
                parent.rmdir()
            except OSError:
                pass


def _try_write(path: Path, text: str) -> None:
    try:
        path.write_text(text)
    except OSError:
        pass


def _mounts(mountinfo: str) -> dict[str, Path]:
    """cgroup mount points by controller ("memory", "pids"), and "unified" for cgroup v2."""
    found: dict[str, Path] = {}
    for line in mountinfo.splitlines():
        fields = line.split()
        if " - " not in line:
            continue
        after = line.split(" - ", 1)[1].split()
        if len(after) < 3:
            continue
        fstype, options = after[0], after[2].split(",")
        point = Path(fields[4])
        if fstype == "cgroup2":
            found.setdefault("unified", point)
        elif fstype == "cgroup":
            for controller in ("memory", "pids"):
                if controller in options:
                    found.setdefault(controller, point)
    return found


def _own_paths(cgroup_file: str) -> dict[str, str]:
    """This process's cgroup path per controller, and "unified" for v2."""
    own: dict[str, str] = {}
    for line in cgroup_file.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if parts[0] == "0" and parts[1] == "":
            own["unified"] = parts[2]
        for controller in parts[1].split(","):
            if controller in ("memory", "pids"):
                own[controller] = parts[2]
    return own


def find(root: Path = Path("/"), pid: int | None = None) -> Tree | None:
    """A tree of groups for this grader, or None when the kernel does not let it make limited groups.

    Args:
        root: where /proc and /sys are (a test can point it at a fake tree).
        pid: the grader's process id (this process by default).
    """
    pid = pid or os.getpid()
    try:
        mounts = _mounts((root / f"proc/{pid}/mountinfo").read_text())
        own = _own_paths((root / f"proc/{pid}/cgroup").read_text())
    except OSError:
        return None
    name = f"vitcourse-{pid}-{secrets.token_hex(4)}"
    if "memory" in mounts and "pids" in mounts and "memory" in own and "pids" in own:
        parents = {c: _rebase(root, mounts[c]) / own[c].lstrip("/") / name for c in ("memory", "pids")}
        if _make_parents(parents, version=1):
            return Tree(1, parents)
    if "unified" in mounts and "unified" in own:
        base = _rebase(root, mounts["unified"]) / own["unified"].lstrip("/")
        if _delegate_v2(base, pid):
            parent = base / name
            if _make_parents({"memory": parent}, version=2):
                return Tree(2, {"memory": parent})
    return None


def _rebase(root: Path, point: Path) -> Path:
    return root / str(point).lstrip("/")


def _make_parents(parents: dict[str, Path], version: int) -> bool:
    made: list[Path] = []
    try:
        for controller, parent in parents.items():
            parent.mkdir()
            made.append(parent)
            if version == 2:
                (parent / "cgroup.subtree_control").write_text("+memory +pids")
            else:  # a child with a limit written proves the hierarchy is ours to use
                probe = parent / "probe"
                probe.mkdir()
                if controller == "memory":
                    (probe / "memory.limit_in_bytes").write_text(str(64 * _MB))
                else:
                    (probe / "pids.max").write_text("8")
                probe.rmdir()
        return True
    except OSError:
        for parent in reversed(made):
            try:
                for child in parent.glob("probe"):
                    child.rmdir()
                parent.rmdir()
            except OSError:
                pass
        return False


def _delegate_v2(base: Path, pid: int) -> bool:
    """Make `base` able to hold limited child groups: its memory and pids controllers enabled below it.

    cgroup v2 enables a controller for children only in a group without processes of its own, so the
    processes of the grader's group are moved into a leaf `vitcourse-grader` first.
    """
    try:
        controllers = (base / "cgroup.controllers").read_text().split()
        if "memory" not in controllers or "pids" not in controllers:
            return False
        enabled = (base / "cgroup.subtree_control").read_text().split()
        if "memory" in enabled and "pids" in enabled:
            return True
        if not os.access(base / "cgroup.subtree_control", os.W_OK):
            return False
        leaf = base / "vitcourse-grader"
        leaf.mkdir(exist_ok=True)
        for process in (base / "cgroup.procs").read_text().split():
            (leaf / "cgroup.procs").write_text(process)
        (base / "cgroup.subtree_control").write_text("+memory +pids")
        return True
    except OSError:
        return False
