"""Run untrusted notebooks: a warm interpreter inside bubblewrap, one forked executor per submission, limits
for the whole submission.

One `Sandbox` per grading run starts `python -m vitcourse.inside.runner zygote` inside bubblewrap: no network, a
read-only view of the system, the Python installation and the `vitsteps` and `vitcourse` packages, nothing
else of the host (not the course folder, the home folder or the repository), and an environment made from
scratch (bubblewrap itself is started with an empty one, so its process 1 holds nothing either). Run as
root, the grader first becomes `nobody` (see `vitcourse.inside.runner.launch`): student code never runs as root.

The zygote imports torch, vitsteps and what the notebooks import once; each `Session` is a submission forked
from it into namespaces of its own (user, mount, pid, ipc, net, uts), with:

* a fresh `/proc` that shows the submission's processes only, and one size-limited tmpfs for all writable
  space (`/tmp`, the home and working folders, `/dev/shm`): files, unlinked-but-open files included, count
  against `Limits.disk_mb`, and it vanishes with the submission, so no scratch is left on the host;
* no capabilities, a seccomp filter (no ptrace, memfd, SysV shared memory, io_uring, keyrings, eBPF,
  namespaces or mounts), per-process limits (address space, CPU seconds, file size, open files, no core
  dumps) and `Limits.processes` processes and threads at once (RLIMIT_NPROC in its own user namespace);
* with cgroups (see `vitcourse.confine.cgroups`): one group per submission whose memory limit covers every process
  and the tmpfs, and whose pids limit stops a fork bomb; without cgroups, the grader adds up the proportional
  memory of the submission's processes and its tmpfs every 0.2 s and stops a submission over the limit;
* a time limit per cell (an interrupt, then the end of the submission) and a wall-clock limit per notebook;
* an output budget for the whole notebook that counts every message, display updates included.

The grader talks to the executor over a Unix socket pair and reads the processes' ids from the socket's
credentials; it trusts nothing the executor says for a grade (see `vitcourse.grading`).
"""
from __future__ import annotations

import ast
import dataclasses
import importlib.util
import json
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import nbformat

from ..inside import wire
from . import cgroups

MIB = 1024 * 1024
INSTALL_HINT = ("install bubblewrap (Debian/Ubuntu: `sudo apt-get install -y bubblewrap`; Fedora: "
                "`sudo dnf install bubblewrap`), or pass --no-sandbox to run student code unconfined "
                "(only for code you trust, e.g. your own solutions).")
_OUTPUT_PREFIXES = (b'{"op":"output"', b'{"op":"clear_output"')


class SandboxUnavailable(RuntimeError):
    """bubblewrap is missing or cannot create the namespaces a submission needs on this machine."""


class Stopped(Exception):  # noqa: N818 - a state of the run, not an error of the grader
    """The submission's run ended early: the reason is the message (a time limit, the kernel died, ...)."""


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one submission may use, all its processes together.

    Args:
        cell_timeout: seconds one cell (or one call by the grader) may run before it is interrupted.
        notebook_timeout: seconds of wall-clock time for the whole submission.
        memory_mb: memory of the submission, all processes and its tmpfs together, on top of the warm
            interpreter it is forked from; also each process's address-space limit on top of that size.
        processes: processes and threads at once.
        disk_mb: size of the submission's only writable space (a tmpfs), unlinked-but-open files included.
        files: files and folders in that space.
        file_mb: largest single file.
        output_kb: output kept for the whole notebook, display updates included; the rest is dropped and
            marked, and a notebook that prints more than 8 times this much is stopped.
        open_files: open files per process.
        reply_mb: what the submission's replies to the grader's calls may hold once decoded, all together
            (each use of an array counted).
        reference_s, budget_factor, budget_floor_s: set by `with_budget`: `notebook_timeout` is then a budget
            made from the time the assignment's own solution takes (0 when it is not).
    """

    cell_timeout: float = 60.0
    notebook_timeout: float = 600.0
    memory_mb: int = 2048
    processes: int = 64
    disk_mb: int = 512
    files: int = 10_000
    file_mb: int = 256
    output_kb: int = 2048
    open_files: int = 256
    reply_mb: int = 512
    reference_s: float = 0.0
    budget_factor: float = 0.0
    budget_floor_s: float = 0.0

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name in ("reference_s", "budget_factor", "budget_floor_s"):
                if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                    raise ValueError(f"Limits.{field.name} must be a number of at least 0, got {value!r}.")
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"Limits.{field.name} must be a positive number, got {value!r}.")
        if self.processes < 8:
            raise ValueError(f"Limits.processes must be at least 8 (the interpreter needs a few), "
                             f"got {self.processes}.")

    def with_budget(self, reference_s: float, factor: float, floor_s: float) -> Limits:
        """These limits with the notebook's wall-clock time set to `factor` x `reference_s` (what the solution
        took), at least `floor_s`, at most this `notebook_timeout`."""
        for name, value in (("reference_s", reference_s), ("factor", factor), ("floor_s", floor_s)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"{name} must be a positive number of seconds or a factor, got {value!r}.")
        budget = min(self.notebook_timeout, max(floor_s, factor * reference_s))
        return dataclasses.replace(self, notebook_timeout=budget, reference_s=float(reference_s),
                                   budget_factor=float(factor), budget_floor_s=float(floor_s))

    def time_limit_reason(self) -> str:
        """Why a submission past `notebook_timeout` was stopped, in words."""
        if not self.reference_s:
            return f"the notebook ran past its time limit of {self.notebook_timeout:g} s"
        made = f"{self.budget_factor:g} x the reference's {self.reference_s:.2f} s"
        if self.notebook_timeout > self.budget_factor * self.reference_s + 1e-9:
            made += f", raised to the {self.budget_floor_s:g} s floor"
        elif self.notebook_timeout < self.budget_factor * self.reference_s - 1e-9:
            made += ", cut to the notebook limit"
        return f"the submission used its time budget of {self.notebook_timeout:.3g} s ({made})"

    def for_runner(self) -> dict[str, int]:
        return {"memory_bytes": int(self.memory_mb * MIB), "cpu_seconds": int(self.notebook_timeout * 2) + 30,
                "file_bytes": int(self.file_mb * MIB), "open_files": int(self.open_files),
                "processes": int(self.processes), "disk_bytes": int(self.disk_mb * MIB), "files": int(self.files)}


# ------------------------------------------------------------------------------------------ bubblewrap


_WORKING_BWRAP: dict[str, bool] = {}


def find_bwrap() -> str:
    """Path of a working `bwrap`, or raise `SandboxUnavailable` saying how to get one."""
    bwrap = shutil.which("bwrap")
    if bwrap is not None and _WORKING_BWRAP.get(bwrap):
        return bwrap
    if bwrap is None:
        raise SandboxUnavailable(f"bubblewrap (bwrap) is not installed: {INSTALL_HINT}")
    probe = subprocess.run([bwrap, "--unshare-all", "--die-with-parent", "--ro-bind", "/usr", "/usr",
                            "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib",
                            "--symlink", "usr/lib64", "/lib64", "--proc", "/proc", "--dev", "/dev", "true"],
                           capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        raise SandboxUnavailable(f"bubblewrap is installed but cannot create a sandbox here "
                                 f"({probe.stderr.strip() or 'exit ' + str(probe.returncode)}); user namespaces "
                                 f"may be disabled (sysctl kernel.unprivileged_userns_clone=1). Or pass "
                                 f"--no-sandbox to run student code unconfined (only for code you trust).")
    _WORKING_BWRAP[bwrap] = True
    return bwrap


def _package_folder(package: str) -> Path | None:
    """The folder of an importable package, as this process imports it."""
    spec = importlib.util.find_spec(package)
    return Path(spec.origin).resolve().parent if spec is not None and spec.origin else None


def _hidden_course_tooling() -> list[str]:
    """bubblewrap arguments that leave only `vitcourse/__init__.py` and `vitcourse/inside/` of the course tooling
    visible: the answer key (`vitcourse/judge/`) and everything else of it stay out of the sandbox, wherever the
    package is installed (a checkout, or site-packages inside the Python installation the sandbox reads)."""
    hidden: list[str] = []
    package = _package_folder("vitsteps")
    for cache in sorted(package.rglob("__pycache__")) if package is not None else []:
        hidden += ["--tmpfs", str(cache), "--remount-ro", str(cache)]  # no stale bytecode of a module now gone
    folder = _package_folder("vitcourse")
    if folder is None:
        return hidden
    return hidden + ["--tmpfs", str(folder), "--ro-bind", str(folder / "__init__.py"), str(folder / "__init__.py"),
                     "--ro-bind", str(folder / "inside"), str(folder / "inside"), "--remount-ro", str(folder)]


def _import_path() -> str:
    """PYTHONPATH for the sandbox: the folders holding vitsteps and vitcourse, so that it imports the same code as
    the grader (a checkout's, or one on the grader's own PYTHONPATH) whatever else is installed."""
    folders = [str(folder.parent) for folder in map(_package_folder, ("vitsteps", "vitcourse")) if folder is not None]
    return ":".join(dict.fromkeys(folders))


def _readonly_paths() -> list[str]:
    """Host paths the sandbox reads: the system, the Python install, the vitsteps and vitcourse packages."""
    paths = ["/usr", "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/alternatives",
             "/etc/fonts", "/etc/localtime", "/etc/passwd", "/etc/group", "/etc/nsswitch.conf"]
    paths += [sys.prefix, sys.base_prefix, sys.exec_prefix, str(Path(sys.executable).resolve().parent.parent)]
    for package in ("vitsteps", "vitcourse"):
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.origin:
            paths.append(str(Path(spec.origin).resolve().parent.parent))  # the folder that holds the package
    unique: list[str] = []
    for path in paths:
        resolved = str(Path(path).resolve()) if os.path.exists(path) else None
        if resolved and resolved != "/" and not any(resolved == p or resolved.startswith(p + "/") for p in unique):
            unique = [p for p in unique if not p.startswith(resolved + "/")] + [resolved]
    return sorted(unique)


_BASE_ENV = {"LANG": "C.UTF-8", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TQDM_DISABLE": "1",
             "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1",
             "MPLBACKEND": "module://matplotlib_inline.backend_inline", "PYDEVD_DISABLE_FILE_VALIDATION": "1"}


def _zygote_env(sandboxed: bool, scratch: str) -> dict[str, str]:
    """The zygote's whole environment: made here, nothing taken from the grader's."""
    return {**_BASE_ENV, "PYTHONPATH": _import_path(), "HOME": scratch, "MPLCONFIGDIR": f"{scratch}/mpl",
            "IPYTHONDIR": f"{scratch}/ipython", "TMPDIR": scratch,
            "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}


def _student_env(sandboxed: bool) -> dict[str, str]:
    """The executor's whole environment; {work} and {home} are filled in by the runner."""
    return {**_BASE_ENV, "PYTHONPATH": _import_path(), "HOME": "{home}", "MPLCONFIGDIR": "{home}/.matplotlib",
            "IPYTHONDIR": "{home}/.ipython", "TMPDIR": "/tmp" if sandboxed else "{home}",
            "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}


def bwrap_command(bwrap: str, control_fd: int) -> list[str]:
    """bubblewrap's argv for the zygote: read-only system, no network, a small tmpfs for the zygote itself."""
    mounts: list[str] = []
    for path in _readonly_paths():
        mounts += ["--ro-bind", path, path]
    for link in ("bin", "lib", "lib64", "sbin"):
        if Path(f"/{link}").is_symlink():
            mounts += ["--symlink", os.readlink(f"/{link}"), f"/{link}"]
        elif Path(f"/{link}").is_dir():
            mounts += ["--ro-bind", f"/{link}", f"/{link}"]
    command = [bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--hostname", "sandbox",
               "--size", str(64 * MIB), "--tmpfs", "/tmp", *mounts, *_hidden_course_tooling(), "--dev", "/dev",
               "--proc", "/proc",
               "--remount-ro", "/dev", "--remount-ro", "/", "--chdir", "/", "--clearenv"]
    for name, value in _zygote_env(True, "/tmp").items():
        command += ["--setenv", name, value]
    return command + ["--", sys.executable, "-m", "vitcourse.inside.runner", "zygote", str(control_fd)]


# ------------------------------------------------------------------------------------------ the warm sandbox


class Sandbox:
    """A warm interpreter (in bubblewrap unless `sandboxed=False`) from which each submission is forked.

    Args:
        limits: what each submission may use.
        sandboxed: run inside bubblewrap (raises `SandboxUnavailable` if it cannot); False runs student
            code with the grader's permissions and per-process limits only (trusted code only).
        preload: modules the zygote imports once (what the notebooks import), e.g. ["torch", "vitsteps"].
        use_cgroups: None: use cgroups when the kernel lets the grader make them; False: never.
    """

    def __init__(self, limits: Limits | None = None, *, sandboxed: bool = True, preload: Iterable[str] = (),
                 use_cgroups: bool | None = None) -> None:
        self.limits = limits or Limits()
        self.sandboxed = sandboxed
        self.preload = sorted(set(preload) | {"IPython", "numpy"})
        self.use_cgroups = use_cgroups
        self.tree: cgroups.Tree | None = None
        self.process: subprocess.Popen | None = None
        self.control: socket.socket | None = None
        self.lock = threading.Lock()
        self.baseline_rss = 0
        self.stderr_tail = b""
        self.seccomp = False
        self.restarts = 0

    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def guarantees(self) -> str:
        """Which whole-submission limits the kernel enforces here, in words."""
        if not self.sandboxed:
            return "no sandbox: per-process limits only"
        filtered = ", seccomp filter" if self.seccomp else ", no seccomp filter on this architecture"
        if self.tree is not None:
            return f"cgroup v{self.tree.version}: memory and processes limited for the whole submission{filtered}"
        return f"no cgroups: processes limited per submission, memory watched every 0.2 s{filtered}"

    def start(self) -> None:
        """Start the zygote and wait until it has imported everything; raise `SandboxUnavailable` if it cannot."""
        if self.process is not None:
            return
        if self.use_cgroups is not False:
            self.tree = cgroups.find()
        self._launch()

    def _launch(self) -> None:
        grader_end, zygote_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        fd = zygote_end.fileno()
        if self.sandboxed:
            argv = bwrap_command(find_bwrap(), fd)
            if os.geteuid() == 0:  # become nobody first: student code never runs as root
                spec = json.dumps({"readonly": _readonly_paths(), "argv": argv})
                argv = [sys.executable, "-m", "vitcourse.inside.runner", "launch", spec]
            env: dict[str, str] = {}
        else:
            if getattr(self, "scratch", None):
                remove_tree(Path(self.scratch))
            self.scratch = tempfile.mkdtemp(prefix="vitcourse-zygote-")
            argv = [sys.executable, "-m", "vitcourse.inside.runner", "zygote", str(fd)]
            env = _zygote_env(False, self.scratch)
        self.process = subprocess.Popen(argv, pass_fds=[fd], env=env, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd="/")
        zygote_end.close()
        self.control = grader_end
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        config = {"sandboxed": self.sandboxed, "preload": self.preload,
                  "limits": self.limits.for_runner(), "env": _student_env(self.sandboxed),
                  "readonly": _readonly_paths()}
        grader_end.send(json.dumps(config).encode())
        grader_end.settimeout(180)
        try:
            ready = json.loads(grader_end.recv(1 << 16) or b"{}")
        except (OSError, ValueError):
            ready = {}
        grader_end.settimeout(None)
        if ready.get("op") != "ready" or ready.get("problem"):
            problem = ready.get("problem") or self.stderr_tail.decode(errors="replace").strip()[-600:] or \
                "the sandboxed interpreter did not start"
            self.close()
            raise SandboxUnavailable(f"the sandbox cannot run submissions here: {problem}")
        self.baseline_rss = _rss(self.process.pid) if not self.sandboxed else _zygote_rss(self.process.pid)

    def _drain_stderr(self) -> None:
        stream = self.process.stderr if self.process else None
        while stream is not None:
            chunk = stream.read(4096)
            if not chunk:
                return
            self.stderr_tail = (self.stderr_tail + chunk)[-8192:]

    def fork(self, child_fd: int, workdir: str | None) -> None:
        """Ask the zygote for a new submission talking on `child_fd` (starting it again once if it died)."""
        with self.lock:
            if self.process is None or self.process.poll() is not None or self.control is None:
                if self.process is None or self.restarts >= 1:
                    raise Stopped("the sandbox's interpreter is gone")
                self.restarts += 1
                self._stop_zygote()
                self._launch()
            socket.send_fds(self.control, [json.dumps({"op": "start", "workdir": workdir}).encode()], [child_fd])

    def session(self, limits: Limits | None = None, deadline: float | None = None) -> Session:
        """A new submission, forked from the warm interpreter, ready to run cells; `limits` may change its
        time budget and reply budget (`Limits.with_budget`), not what the warm interpreter was started with;
        `deadline` (a `time.monotonic()` time) ends it earlier, so that several runs share one budget."""
        return Session(self, limits, deadline)

    def close(self) -> None:
        """Stop the zygote (submissions end with it) and remove the cgroups made for this run."""
        self._stop_zygote()
        if self.tree is not None:
            self.tree.close()
        if not self.sandboxed and getattr(self, "scratch", None):
            remove_tree(Path(self.scratch))

    def _stop_zygote(self) -> None:
        if self.control is not None:
            self.control.close()
            self.control = None
        if self.process is not None:
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None


def _zygote_rss(bwrap_pid: int) -> int:
    """Resident memory of the zygote, the largest process under bubblewrap's."""
    best = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            best = max(best, _rss(int(entry.name)) if _descends(int(entry.name), bwrap_pid) else 0)
    return best


def _descends(pid: int, ancestor: int) -> bool:
    for _ in range(16):
        if pid == ancestor:
            return True
        try:
            with open(f"/proc/{pid}/stat") as stat:
                pid = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return False
        if pid <= 1:
            return False
    return False


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _pss(pid: str) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            for line in rollup:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


# ------------------------------------------------------------------------------------------ one submission


@dataclasses.dataclass
class Reply:
    """What came back from a call: `op` is returned, raised, missing, unreadable, refused or timeout; `found`, the
    closed route the call tried (named by the error it raised); `arguments`, the positional and keyword arguments
    as they were after the call (to check that the function left them unchanged)."""

    op: str
    value: Any = None
    ename: str = ""
    found: list[str] = dataclasses.field(default_factory=list)
    arguments: tuple = ()


class Session:
    """One submission: its processes, its socket, its outputs (cell index -> nbformat outputs)."""

    def __init__(self, sandbox: Sandbox, limits: Limits | None = None, deadline: float | None = None) -> None:
        self.sandbox = sandbox
        self.limits = limits or sandbox.limits
        self.reply_bytes = 0
        self.started = time.monotonic()
        self.deadline = self.started + self.limits.notebook_timeout
        if deadline is not None:
            self.deadline = min(self.deadline, deadline)
        self.outputs: dict[int, list[nbformat.NotebookNode]] = {}
        self.displays: dict[str, list[nbformat.NotebookNode]] = {}
        self.truncated: list[int] = []
        self.timed_out: list[int] = []
        self.output_bytes = 0
        self.clear_pending: dict[int, bool] = {}
        self.buffer = bytearray()
        self.group: cgroups.Group | None = None
        self.init_fd = self.executor_fd = -1
        self.init_pid = self.executor_pid = 0
        self.pid_namespace = ""
        self.workdir: str | None = None
        self.closed = False
        self.calls = 0
        self.memory_stopped = False
        grader_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        grader_end.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock = grader_end
        try:
            if not sandbox.sandboxed:
                self.workdir = tempfile.mkdtemp(prefix="vitcourse-")
                for folder in ("work", "home"):
                    os.mkdir(os.path.join(self.workdir, folder), 0o700)
            sandbox.fork(child_end.fileno(), os.path.join(self.workdir, "work") if self.workdir else None)
            child_end.close()
            self.init_pid = self._hello("init")
            self.init_fd = os.pidfd_open(self.init_pid)
            if sandbox.tree is not None:
                self.group = sandbox.tree.make(int(self.limits.memory_mb * MIB), self.limits.processes)
                self.group.add(self.init_pid)
            elif sandbox.sandboxed:
                self.pid_namespace = os.readlink(f"/proc/{self.init_pid}/ns/pid")
            self.sock.sendall(wire.dumps({"op": "go"}))
            self.executor_pid = self._hello("executor")
            self.executor_fd = os.pidfd_open(self.executor_pid)
        except BaseException:
            child_end.close()
            self.close()
            raise

    # --------------------------------------------------------------------------- reading

    def _hello(self, role: str) -> int:
        """Read the hello of `role` and return the sender's process id as this process sees it."""
        deadline = min(self.deadline, time.monotonic() + 60)
        pid = 0
        while True:
            if len(self.buffer) >= wire.HEADER_SIZE:
                length, kind = wire.unpack_header(bytes(self.buffer[:wire.HEADER_SIZE]))
                if len(self.buffer) >= wire.HEADER_SIZE + length:
                    payload = bytes(self.buffer[wire.HEADER_SIZE:wire.HEADER_SIZE + length])
                    del self.buffer[:wire.HEADER_SIZE + length]
                    message = json.loads(payload) if kind == b"J" else {}
                    if message.get("op") != "hello" or message.get("role") != role or not pid:
                        raise Stopped(f"the sandboxed interpreter did not start a submission ({role})")
                    if role == "executor":
                        self.sandbox.seccomp = bool(message.get("seccomp"))
                    return pid
            if not select.select([self.sock], [], [], max(0.0, deadline - time.monotonic()))[0]:
                raise Stopped("the sandboxed interpreter did not start a submission in time")
            data, ancillary, _, _ = self.sock.recvmsg(1 << 16, socket.CMSG_SPACE(12))
            if not data:
                raise Stopped("the sandboxed interpreter did not start a submission")
            for level, kind_, payload in ancillary:
                if level == socket.SOL_SOCKET and kind_ == socket.SCM_CREDENTIALS and not pid:
                    pid = struct.unpack("iII", payload[:12])[0]
            self.buffer += data

    def _frame(self, deadline: float, what: str) -> tuple[bytes, bytes]:
        """The next frame; raise TimeoutError at `deadline`, `Stopped` when the submission is gone."""
        while True:
            if len(self.buffer) >= wire.HEADER_SIZE:
                try:
                    length, kind = wire.unpack_header(bytes(self.buffer[:wire.HEADER_SIZE]))
                except wire.WireError as error:
                    self.kill()
                    raise Stopped(f"the notebook broke its connection to the grader ({error})") from None
                if len(self.buffer) >= wire.HEADER_SIZE + length:
                    payload = bytes(self.buffer[wire.HEADER_SIZE:wire.HEADER_SIZE + length])
                    del self.buffer[:wire.HEADER_SIZE + length]
                    return kind, payload
            now = time.monotonic()
            if now >= self.deadline:
                self.kill()
                raise Stopped(self.limits.time_limit_reason())
            if now >= deadline:
                raise TimeoutError(what)
            ready = select.select([self.sock], [], [], min(0.2, deadline - now, self.deadline - now))[0]
            self._watch_memory()
            if ready:
                try:
                    chunk = self.sock.recv(1 << 20)
                except OSError:
                    chunk = b""
                if not chunk:
                    raise Stopped(self._death())
                self.buffer += chunk

    def _death(self) -> str:
        """Why the executor went away."""
        self.kill()
        if self.memory_stopped or (self.group is not None and self.group.oom_kills()):
            return (f"out of memory: the submission used more than its {self.limits.memory_mb} MiB, so the "
                    f"kernel was stopped")
        return "the kernel died (crashed, was killed, or ran out of memory or CPU time)"

    def _watch_memory(self) -> None:
        """Without cgroups: stop a submission whose processes and tmpfs together hold more than the limit."""
        if not self.pid_namespace or self.closed:
            return
        now = time.monotonic()
        if now < getattr(self, "_next_watch", 0.0):
            return
        self._next_watch = now + 0.2
        used = 0
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                try:
                    if os.readlink(f"/proc/{entry.name}/ns/pid") == self.pid_namespace:
                        used += _pss(entry.name)
                except OSError:
                    continue
        try:
            stats = os.statvfs(f"/proc/{self.init_pid}/root/tmp")
            used += (stats.f_blocks - stats.f_bfree) * stats.f_frsize
        except OSError:
            pass
        if used > self.limits.memory_mb * MIB + self.sandbox.baseline_rss:
            self.memory_stopped = True
            self.kill()

    def _message(self, payload: bytes) -> dict[str, Any]:
        try:
            message = json.loads(payload)
        except ValueError:
            return {}
        return message if isinstance(message, dict) else {}

    def _count(self, payload: bytes) -> None:
        """Count a message against the notebook's output budget; end a notebook past 8 times the budget."""
        self.output_bytes += len(payload)
        if self.output_bytes > 8 * self.limits.output_kb * 1024:
            self.kill()
            raise Stopped(f"the notebook printed more than {8 * self.limits.output_kb} KiB, 8 times its output "
                          f"budget, so it was stopped")

    def _other(self, kind: bytes, payload: bytes) -> dict[str, Any]:
        """A message that is not an output, parsed only when it is small JSON (a reply is; the caller counts
        anything that is not the reply it waits for against the output budget)."""
        if kind != b"J" or len(payload) > 64 * 1024:
            return {}
        return self._message(payload)

    def _output(self, cell: int | None, payload: bytes) -> None:
        """Keep (or drop) one output message within the notebook's budget."""
        self._count(payload)
        budget = self.limits.output_kb * 1024
        if cell is None:
            return  # output during the grader's calls is never kept
        if self.output_bytes > budget:
            if cell not in self.truncated:
                self.truncated.append(cell)
                self.outputs.setdefault(cell, []).append(nbformat.v4.new_output(
                    "stream", name="stderr",
                    text=f"[the grader kept the notebook's first {self.limits.output_kb} KiB of output]\n"))
            return
        message = self._message(payload)
        outputs = self.outputs.setdefault(cell, [])
        if message.get("op") == "clear_output":
            if message.get("wait"):
                self.clear_pending[cell] = True
            else:
                outputs.clear()
            return
        output = _output_node(message)
        if output is None:
            return
        if message.get("output_type") == "update_display_data":
            for shown in self.displays.get(str(message.get("display_id")), []):
                shown["data"], shown["metadata"] = output["data"], output["metadata"]
            return
        if self.clear_pending.pop(cell, False):
            outputs.clear()
        if output.output_type == "stream" and outputs and outputs[-1].output_type == "stream" \
                and outputs[-1].name == output.name:
            outputs[-1].text += output.text
        else:
            outputs.append(output)
        if output.output_type == "display_data" and isinstance(message.get("display_id"), str):
            self.displays.setdefault(message["display_id"], []).append(output)

    # --------------------------------------------------------------------------- running

    def _replies(self, what: str, cell: int | None = None) -> Iterator[tuple[bytes, bytes, bool]]:
        """Frames from the executor as (kind, payload, timed out yet); at the time limit an interrupt (noted for
        `cell`), and the end of the submission if it is ignored."""
        timed_out = False
        deadline = time.monotonic() + self.limits.cell_timeout
        while True:
            try:
                kind, payload = self._frame(deadline, what)
            except TimeoutError:
                if timed_out:
                    self.kill()
                    raise Stopped(f"{what} ran past the time limit of {self.limits.cell_timeout:g} s and ignored "
                                  f"the interrupt") from None
                timed_out = True
                if cell is not None:
                    self.timed_out.append(cell)
                self._interrupt()
                deadline = time.monotonic() + min(3.0, self.limits.cell_timeout)
                continue
            yield kind, payload, timed_out

    def run_cell(self, cell: int, code: str) -> str:
        """Run one cell; return "ok", "error" or "timeout" (interrupted); raise `Stopped` if the run ended."""
        self._send({"op": "run", "cell": cell, "code": code})
        for kind, payload, timed_out in self._replies("a cell", cell):
            if kind == b"J" and payload.startswith(_OUTPUT_PREFIXES):
                self._output(cell, payload)
                continue
            message = self._other(kind, payload)
            if message.get("op") == "done" and message.get("cell") == cell:
                return "timeout" if timed_out else ("ok" if message.get("status") == "ok" else "error")
            self._count(payload)
        raise AssertionError("unreachable: _replies ends only by raising")

    def close_routes(self, names: list[str]) -> list[str]:
        """Close the routes `names` in the executor before any cell runs (`vitsteps.teach.checks.routes`); return
        those it closed.

        Raises:
            Stopped: the executor refused (a cell or a call ran already) or the submission ended.
        """
        self._send({"op": "close", "routes": list(names)})
        for kind, payload, _ in self._replies("closing routes"):
            message = self._other(kind, payload)
            if message.get("op") == "closed":
                if message.get("refused"):
                    raise Stopped("the sandbox could not close the routes this exercise rules out")
                return [str(name) for name in message.get("routes", []) if isinstance(name, str)]
            self._count(payload)
        raise AssertionError("unreachable: _replies ends only by raising")

    def call(self, name: str, args: tuple, kwargs: dict[str, Any]) -> Reply:
        """Call the student's `name(*args, **kwargs)` in the executor; decode what it returned and the arguments as
        they were after the call.

        Raises:
            Stopped: the submission ended (the call ignored the interrupt, the kernel died, ...).
        """
        tree, blob = wire.encode((tuple(args), tuple(kwargs.items())))
        reply = self._request({"op": "call", "name": name, "args": tree}, blob)
        if reply.op == "returned":
            returned = reply.value
            try:
                value, after, keywords = returned
                reply.value, reply.arguments = value, (tuple(after), dict(keywords))
            except (TypeError, ValueError):  # not (value, arguments, keyword items): a forged reply
                return Reply("unreadable", found=reply.found)
        return reply

    def backward(self, weights: list[Any], positions: list[int]) -> Reply:
        """Back-propagate sum(output * weight) from the last call; the gradients of the argument positions."""
        tree, blob = wire.encode(list(weights))
        return self._request({"op": "backward", "weights": tree, "positions": list(positions)}, blob)

    def _request(self, message: dict[str, Any], blob: bytes) -> Reply:
        self.calls += 1
        request_id = self.calls
        self._send({**message, "id": request_id, "blob": True}, blob)
        deadline = time.monotonic() + self.limits.cell_timeout + 10
        for kind, payload, timed_out in self._replies("the grader's call"):
            if kind == b"J" and payload.startswith(_OUTPUT_PREFIXES):
                self._output(None, payload)
                continue
            reply = self._other(kind, payload)
            if reply.get("id") != request_id:
                self._count(payload)
                continue
            found = [str(name)[:200] for name in reply.get("found", []) if isinstance(name, str)][:20] \
                if isinstance(reply.get("found"), list) else []
            op = reply.get("op")
            if timed_out:
                return Reply("timeout", found=found)
            if op in ("returned", "grads"):
                kind, data = self._frame(deadline, "blob") if reply.get("blob") else (b"B", b"")
                data = data if kind == b"B" else b""
                try:
                    self.reply_bytes += wire.measure(reply.get("value"), data)
                    if self.reply_bytes > self.limits.reply_mb * MIB:
                        self.kill()
                        raise Stopped(f"the submission's replies to the grader's calls held more than "
                                      f"{self.limits.reply_mb} MiB in all, so it was stopped")
                    value = wire.decode(reply.get("value"), data, linear_grad=False)
                except wire.WireError:
                    return Reply("unreadable", found=found)
                return Reply("returned", value=value, found=found)
            if op in ("raised", "missing", "unreadable", "refused"):
                ename = reply.get("ename") if isinstance(reply.get("ename"), str) else ""
                if op == "missing" and reply.get("defined"):
                    ename = "not callable"
                return Reply(op, ename=ename[:80], found=found)
        raise AssertionError("unreachable: _replies ends only by raising")

    def _send(self, message: dict[str, Any], blob: bytes | None = None) -> None:
        data = wire.dumps(message) + (wire.pack_frame(b"B", blob) if blob is not None else b"")
        try:
            self.sock.sendall(data)
        except OSError:
            raise Stopped(self._death()) from None

    def _interrupt(self) -> None:
        try:
            signal.pidfd_send_signal(self.executor_fd, signal.SIGINT)
        except OSError:
            pass

    # --------------------------------------------------------------------------- ending

    def kill(self) -> None:
        """End every process of the submission."""
        for fd in (self.executor_fd, self.init_fd):
            if fd >= 0:
                try:
                    signal.pidfd_send_signal(fd, signal.SIGKILL)
                except OSError:
                    pass
        if not self.sandbox.sandboxed and self.executor_pid:
            try:
                os.killpg(self.executor_pid, signal.SIGKILL)
            except OSError:
                pass
        if self.group is not None:
            self.group.kill()

    def close(self) -> None:
        """End the submission and remove everything it left: processes, cgroup, scratch folder."""
        if self.closed:
            return
        self.closed = True
        self.kill()
        self.sock.close()
        for fd in (self.executor_fd, self.init_fd):
            if fd >= 0:
                os.close(fd)
        if self.group is not None:
            self.group.remove()
        if self.workdir is not None:
            remove_tree(Path(self.workdir))


def _output_node(message: dict[str, Any]) -> nbformat.NotebookNode | None:
    """An nbformat output from a message, its fields checked; None for anything malformed."""
    kind = message.get("output_type")
    if kind == "stream":
        if message.get("name") in ("stdout", "stderr") and isinstance(message.get("text"), str):
            return nbformat.v4.new_output("stream", name=message["name"], text=message["text"])
        return None
    if kind in ("display_data", "update_display_data", "execute_result"):
        data, metadata = message.get("data"), message.get("metadata")
        if not isinstance(data, dict) or not all(isinstance(key, str) for key in data):
            return None
        metadata = metadata if isinstance(metadata, dict) else {}
        if kind == "execute_result":
            count = message.get("execution_count")
            return nbformat.v4.new_output("execute_result", data=data, metadata=metadata,
                                          execution_count=count if isinstance(count, int) else None)
        return nbformat.v4.new_output("display_data", data=data, metadata=metadata)
    if kind == "error":
        traceback = message.get("traceback")
        traceback = [line for line in traceback if isinstance(line, str)] if isinstance(traceback, list) else []
        return nbformat.v4.new_output("error", ename=str(message.get("ename", "Error"))[:200],
                                      evalue=str(message.get("evalue", ""))[:10_000], traceback=traceback[:200])
    return None


# ------------------------------------------------------------------------------------------ clean-up


def remove_tree(root: Path) -> None:
    """Delete a folder however deep its tree is, even with folders made unreadable, using one open folder at a time.

    `shutil.rmtree` recurses once per level and fails past Python's recursion limit; this walks down by
    file descriptor and comes back up through "..", so neither depth nor path length can stop it.
    """
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
    try:
        fd = os.open(root, flags)
    except FileNotFoundError:
        return
    except OSError:
        os.unlink(root)
        return
    names: list[str] = []
    while True:
        descended = False
        with os.scandir(fd) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    os.chmod(entry.name, 0o700, dir_fd=fd)
                    child = os.open(entry.name, flags, dir_fd=fd)
                    os.close(fd)
                    fd = child
                    names.append(entry.name)
                    descended = True
                    break
                os.unlink(entry.name, dir_fd=fd)
        if descended:
            continue
        if not names:
            os.close(fd)
            os.rmdir(root)
            return
        parent = os.open("..", flags, dir_fd=fd)
        os.close(fd)
        fd = parent
        os.rmdir(names.pop(), dir_fd=fd)


# ------------------------------------------------------------------------------------------ whole notebooks


@dataclasses.dataclass
class Execution:
    """What happened when a notebook ran.

    Attributes:
        notebook: the notebook with the outputs it produced (cells after a stop have none).
        status: cell index -> "ok", "error" or "timeout"; cells that did not run are absent.
        timed_out: indices of cells that ran past the cell time limit.
        stopped: None if every cell ran, else why the run stopped (time limit, kernel died, ...).
        stopped_at: index of the cell running when the run stopped.
        truncated: indices of cells whose output was cut.
    """

    notebook: nbformat.NotebookNode
    status: dict[int, str] = dataclasses.field(default_factory=dict)
    timed_out: list[int] = dataclasses.field(default_factory=list)
    stopped: str | None = None
    stopped_at: int | None = None
    truncated: list[int] = dataclasses.field(default_factory=list)


def imports_of(sources: Iterable[str]) -> set[str]:
    """The modules that code imports at its top level (to preload them in the zygote)."""
    modules: set[str] = set()
    for source in sources:
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, ast.Import):
                modules |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                modules.add(node.module)
    return modules


def run_notebook(session: Session, notebook: nbformat.NotebookNode, record: Execution,
                 after_cell: Any = None, only: Iterable[int] | None = None) -> None:
    """Run the notebook's code cells in `session` (only the indices `only`, when given), outputs into the cells;
    `after_cell(index)` after each."""
    chosen = set(only) if only is not None else None
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code" or (chosen is not None and index not in chosen):
            continue
        try:
            status = session.run_cell(index, cell.source)
        except Stopped as stop:
            record.stopped, record.stopped_at = str(stop), index
            break
        finally:
            cell.outputs = session.outputs.get(index, [])
            record.truncated = list(session.truncated)
            record.timed_out = list(session.timed_out)
        record.status[index] = status
        if after_cell is not None:
            try:
                after_cell(index)
            except Stopped as stop:
                record.stopped, record.stopped_at = str(stop), index
                break
    count = 0
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "code":
            if index in record.status:
                count += 1
                cell.execution_count = count
            for output in cell.outputs:
                if output.output_type == "execute_result":
                    output.execution_count = cell.execution_count
