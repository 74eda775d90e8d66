"""Run untrusted notebooks: a Jupyter kernel inside bubblewrap, driven from outside, and a tamper scan.

The grader (this process) runs nbclient; only the kernel runs student code, and it runs it inside a
bubblewrap sandbox:

* no network (`--unshare-all`: new network, pid, ipc, uts, user and cgroup namespaces);
* a read-only view of the system, the Python install and the `vitsteps` package, nothing else of the
  host (not the course folder, not the home directory, not the repository);
* one writable place, the run's own scratch folder (deleted afterwards), plus a small private `/tmp`;
* limits from `prlimit`: address space (memory), CPU seconds, file size, open files, no core dumps;
* a per-cell time limit (interrupt, then give up on the kernel) and a wall-clock limit for the notebook;
* a cap on the output kept per cell and on the size of one message from the kernel.

The kernel talks to the grader over Unix sockets in the scratch folder (ZeroMQ `ipc` transport), so
the grader's memory, files and results stay out of the kernel's reach. The kernel is still the one
that reports what happened in a cell; `grading` therefore only trusts a test cell that printed a
fresh random marker, and refuses submissions whose code tampers with the checking machinery
(`find_tampering`).

Needs the `bwrap` program (Debian/Ubuntu: `apt-get install -y bubblewrap`) and `prlimit` (util-linux).
"""
from __future__ import annotations

import ast
import asyncio
import builtins
import dataclasses
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import nbformat
import zmq
import zmq.asyncio
from jupyter_client import AsyncKernelManager
from jupyter_client.kernelspec import KernelSpec
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError

MIB = 1024 * 1024

INSTALL_HINT = ("install bubblewrap (Debian/Ubuntu: `sudo apt-get install -y bubblewrap`; Fedora: "
                "`sudo dnf install bubblewrap`), or pass --no-sandbox to run student code unconfined "
                "(only for code you trust, e.g. your own solutions).")


class SandboxUnavailable(RuntimeError):
    """bubblewrap is missing or cannot create namespaces on this machine."""


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one submission may use.

    Args:
        cell_timeout: seconds one cell may run before it is interrupted.
        notebook_timeout: seconds of wall-clock time for the whole notebook, kernel start included.
        memory_mb: address-space limit of the kernel process, in MiB.
        cell_output_kb: output kept per cell, in KiB; the rest is dropped and marked.
        file_mb: largest file the kernel may write, in MiB.
        tmp_mb: size of the kernel's private /tmp, in MiB.
        disk_mb: most the kernel may write to its scratch folder (on the host's disk), in MiB; more stops it.
    """

    cell_timeout: float = 60.0
    notebook_timeout: float = 600.0
    memory_mb: int = 2048
    cell_output_kb: int = 2048
    file_mb: int = 64
    tmp_mb: int = 256
    disk_mb: int = 512

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"Limits.{field.name} must be a positive number, got {value!r}.")


@dataclasses.dataclass
class Execution:
    """What happened when a notebook ran.

    Attributes:
        notebook: the notebook with the outputs it produced (cells after a stop have none).
        status: cell index -> "ok" or "error" from the kernel's execute reply; cells that did not run
            are absent.
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


# ------------------------------------------------------------------------------------------ the sandbox


_WORKING_BWRAP: dict[str, bool] = {}
MAX_SCRATCH_FILES = 10_000


def find_bwrap() -> str:
    """Path of a working `bwrap`, or raise `SandboxUnavailable` saying how to get one."""
    bwrap = shutil.which("bwrap")
    if bwrap is not None and _WORKING_BWRAP.get(bwrap):
        return bwrap
    if bwrap is None:
        raise SandboxUnavailable(f"bubblewrap (bwrap) is not installed: {INSTALL_HINT}")
    if shutil.which("prlimit") is None:
        raise SandboxUnavailable("prlimit (util-linux) is not installed; it sets the memory and CPU limits.")
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


def _readonly_paths() -> list[str]:
    """Host paths the kernel needs to read: the system, the Python install, the vitsteps package."""
    paths = ["/usr", "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/alternatives",
             "/etc/fonts", "/etc/localtime", "/etc/passwd", "/etc/group", "/etc/nsswitch.conf"]
    paths += [sys.prefix, sys.base_prefix, sys.exec_prefix, str(Path(sys.executable).resolve().parent.parent)]
    spec = importlib.util.find_spec("vitsteps")
    if spec is not None and spec.origin:
        paths.append(str(Path(spec.origin).resolve().parent.parent))  # the folder that holds vitsteps/
    unique: list[str] = []
    for path in paths:
        resolved = str(Path(path).resolve()) if os.path.exists(path) else None
        if resolved and resolved != "/" and not any(resolved == p or resolved.startswith(p + "/") for p in unique):
            unique = [p for p in unique if not p.startswith(resolved + "/")] + [resolved]
    return sorted(unique)


def kernel_command(scratch: Path, limits: Limits, bwrap: str | None) -> tuple[list[str], dict[str, str]]:
    """The kernel's argv (with `{connection_file}`) and environment; `bwrap=None` runs it unconfined."""
    work = scratch / "work"
    env = {
        "HOME": str(work), "TMPDIR": "/tmp" if bwrap else str(scratch / "tmp"), "LANG": "C.UTF-8",
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "MPLCONFIGDIR": str(scratch / "mpl"), "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        "IPYTHONDIR": str(scratch / "ipython"), "JUPYTER_RUNTIME_DIR": str(scratch / "ipc"),
        "JUPYTER_PLATFORM_DIRS": "1", "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TQDM_DISABLE": "1", "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1",
    }
    kernel = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}",
              "--HistoryManager.enabled=False"]
    cpu_seconds = int(limits.notebook_timeout * 2) + 30
    prlimit = ["prlimit", f"--as={limits.memory_mb * MIB}", f"--cpu={cpu_seconds}",
               f"--fsize={limits.file_mb * MIB}", "--nofile=1024", "--core=0", "--"]
    if bwrap is None:
        return prlimit + kernel, env
    mounts: list[str] = []
    for path in _readonly_paths():
        mounts += ["--ro-bind", path, path]
    for link in ("bin", "lib", "lib64", "sbin"):
        if Path(f"/{link}").is_symlink():
            mounts += ["--symlink", os.readlink(f"/{link}"), f"/{link}"]
        elif Path(f"/{link}").is_dir():
            mounts += ["--ro-bind", f"/{link}", f"/{link}"]
    # the private /tmp comes first: a Python environment or checkout that lives under /tmp is bound over it
    sandbox = [bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--hostname", "sandbox",
               "--size", str(limits.tmp_mb * MIB), "--tmpfs", "/tmp",
               *mounts, "--dev", "/dev", "--proc", "/proc",
               "--size", str(limits.tmp_mb * MIB), "--tmpfs", "/dev/shm",
               "--bind", str(scratch), str(scratch), "--remount-ro", "/", "--chdir", str(work), "--clearenv"]
    for name, value in env.items():
        sandbox += ["--setenv", name, value]
    return prlimit + sandbox + ["--"] + kernel, env


class _SandboxedKernelManager(AsyncKernelManager):
    """A kernel manager whose kernel command is given directly (no kernelspec lookup)."""

    sandbox_argv: list[str] = []
    sandbox_env: dict[str, str] = {}

    def client(self, **kwargs: Any) -> Any:
        """A client on this manager's zmq context, so the context's limits (message size) apply to it."""
        kwargs.setdefault("context", self.context)
        return super().client(**kwargs)

    @property
    def kernel_spec(self) -> KernelSpec:
        return KernelSpec(argv=self.sandbox_argv, env=self.sandbox_env, display_name="sandbox",
                          language="python", interrupt_mode="message")


class _LimitedClient(NotebookClient):
    """nbclient with capped output per cell, a wall-clock deadline and a record of each cell's fate."""

    def __init__(self, notebook: nbformat.NotebookNode, limits: Limits, **kwargs: Any) -> None:
        super().__init__(notebook, timeout=int(limits.cell_timeout), allow_errors=True, interrupt_on_timeout=True,
                         record_timing=False, store_widget_state=False, allow_error_names=[], **kwargs)
        self.limits = limits
        self.record = Execution(notebook=notebook)
        self.cell_bytes: dict[int, int] = defaultdict(int)
        self.current: int | None = None
        self.timeouts_in_cell = 0
        self.on_cell_start = self._started
        self.on_cell_executed = self._executed

    def _started(self, cell: nbformat.NotebookNode, cell_index: int) -> None:
        self.current = cell_index
        self.timeouts_in_cell = 0

    def _executed(self, cell: nbformat.NotebookNode, cell_index: int, execute_reply: dict[str, Any]) -> None:
        status = execute_reply.get("content", {}).get("status", "error")
        self.record.status[cell_index] = "ok" if status == "ok" else "error"

    async def _async_handle_timeout(self, timeout: int, cell: nbformat.NotebookNode | None = None
                                    ) -> None | dict[str, Any]:
        self.timeouts_in_cell += 1
        if self.current is not None and self.current not in self.record.timed_out:
            self.record.timed_out.append(self.current)
        if self.timeouts_in_cell == 1:  # interrupt, and wait once more for the cell to give up
            await self.km.interrupt_kernel()
            return None
        raise CellTimeoutError.error_from_timeout_and_cell("cell ignored the interrupt", timeout, cell)

    def output(self, outs: list[nbformat.NotebookNode], msg: dict[str, Any], display_id: str | None,
               cell_index: int) -> nbformat.NotebookNode | None:
        self.cell_bytes[cell_index] += len(json.dumps(msg.get("content", {}), default=str))
        if self.cell_bytes[cell_index] > self.limits.cell_output_kb * 1024:
            if cell_index not in self.record.truncated:
                self.record.truncated.append(cell_index)
                outs.append(nbformat.v4.new_output(
                    "stream", name="stderr",
                    text=f"[the grader kept the first {self.limits.cell_output_kb} KiB of this cell's output]\n"))
            return None
        return super().output(outs, msg, display_id, cell_index)


def _prepare_scratch() -> Path:
    scratch = Path(tempfile.mkdtemp(prefix="vitsteps-grade-"))
    for sub in ("work", "ipc", "mpl", "ipython", "tmp"):
        (scratch / sub).mkdir()
    cache = _matplotlib_cache()
    if cache is not None:
        for font_list in cache.glob("fontlist-*.json"):
            shutil.copy(font_list, scratch / "mpl" / font_list.name)
    return scratch


def _matplotlib_cache() -> Path | None:
    """The grader's matplotlib font cache, copied into each run so the kernel does not rebuild it."""
    try:
        import matplotlib
        return Path(matplotlib.get_cachedir())
    except Exception:  # noqa: BLE001 - only an optimisation
        return None


async def _execute(notebook: nbformat.NotebookNode, limits: Limits, bwrap: str | None, scratch: Path) -> Execution:
    argv, env = kernel_command(scratch, limits, bwrap)
    context = zmq.asyncio.Context()
    context.setsockopt(zmq.MAXMSGSIZE, max(limits.cell_output_kb * 1024 * 8, 16 * MIB))
    km = _SandboxedKernelManager(transport="ipc", ip=str(scratch / "ipc" / "k"),
                                 connection_file=str(scratch / "ipc" / "connection.json"), context=context)
    km.sandbox_argv, km.sandbox_env = argv, ({} if bwrap else env)
    client = _LimitedClient(notebook, limits, km=km, startup_timeout=int(min(120, limits.notebook_timeout)),
                            resources={"metadata": {"path": str(scratch / "work")}})
    quiet = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    run = asyncio.ensure_future(asyncio.wait_for(client.async_execute(cwd=str(scratch / "work"), **quiet),
                                                 timeout=limits.notebook_timeout))
    watchdog = asyncio.ensure_future(_watch_disk(scratch, limits, run, client))
    try:
        await run
    except asyncio.CancelledError:  # the watchdog stopped it and said why
        pass
    except CellTimeoutError:  # before TimeoutError: it is one
        client.record.stopped = (f"a cell ran past the time limit of {limits.cell_timeout:g} s and ignored "
                                 f"the interrupt, so the kernel was stopped")
        client.record.stopped_at = client.current
    except asyncio.TimeoutError:
        client.record.stopped = f"the notebook ran past its time limit of {limits.notebook_timeout:g} s"
        client.record.stopped_at = client.current
    except DeadKernelError:
        client.record.stopped = "the kernel died (crashed, was killed, or ran out of memory or CPU time)"
        client.record.stopped_at = client.current
    except RuntimeError as error:  # kernel failed to start, or nbclient gave up on it
        client.record.stopped = f"the kernel stopped responding ({str(error).splitlines()[0][:200]})"
        client.record.stopped_at = client.current
    finally:
        watchdog.cancel()
        if client.kc is not None:
            client.kc.stop_channels()
        if km.has_kernel:
            try:
                await km.shutdown_kernel(now=True)
            except Exception:  # noqa: BLE001 - it may already be gone
                pass
        context.destroy(linger=0)
    return client.record


def _disk_usage(root: Path) -> tuple[int, int]:
    """Bytes and entries under `root`, counting at most `MAX_SCRATCH_FILES` entries."""
    total = count = 0
    stack = [str(root)]
    while stack and count < MAX_SCRATCH_FILES:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            count += 1
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                else:
                    total += entry.stat(follow_symlinks=False).st_size
            except OSError:
                pass
    return total, count


async def _watch_disk(scratch: Path, limits: Limits, run: asyncio.Future, client: _LimitedClient) -> None:
    """Stop the run if the kernel fills its scratch folder (the one place on the host it can write)."""
    while not run.done():
        await asyncio.sleep(0.5)
        size, count = _disk_usage(scratch)
        if size > limits.disk_mb * MIB or count >= MAX_SCRATCH_FILES:
            client.record.stopped = (f"the notebook wrote more than {limits.disk_mb} MiB or "
                                     f"{MAX_SCRATCH_FILES} files to its scratch folder, so the kernel was stopped")
            client.record.stopped_at = client.current
            run.cancel()
            return


def _remove_tree(root: Path) -> None:
    """Delete a scratch folder, even one whose sub-folders the kernel made unreadable."""
    for folder, subfolders, _ in os.walk(root):
        for name in subfolders:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                os.chmod(path, 0o700)
    shutil.rmtree(root, ignore_errors=True)


def execute(notebook: nbformat.NotebookNode, limits: Limits | None = None, sandbox: bool = True) -> Execution:
    """Run every code cell of `notebook` (a copy is made) in a fresh kernel and return what happened.

    Args:
        notebook: the notebook to run.
        limits: time, memory and output limits; `Limits()` when omitted.
        sandbox: run the kernel inside bubblewrap (raises `SandboxUnavailable` if it cannot); False runs
            it with the resource limits only.

    Returns:
        An `Execution`; errors inside the notebook are recorded, never raised.
    """
    limits = limits or Limits()
    bwrap = find_bwrap() if sandbox else None
    scratch = _prepare_scratch()
    try:
        return asyncio.run(_execute(nbformat.from_dict(json.loads(json.dumps(notebook))), limits, bwrap, scratch))
    finally:
        _remove_tree(scratch)


# ------------------------------------------------------------------------------------------ the tamper scan

# Modules whose use in a student cell can reach into the interpreter or the checking machinery.
DENIED_MODULES = frozenset({
    "sys", "builtins", "importlib", "imp", "ctypes", "cffi", "inspect", "gc", "types", "marshal", "pickle",
    "dill", "copyreg", "code", "codeop", "runpy", "pkgutil", "traceback", "threading", "_thread",
    "multiprocessing", "concurrent", "asyncio", "operator", "unittest", "pytest", "IPython", "ipykernel",
    "jupyter_client", "zmq", "nbformat", "nbclient", "nbgrader", "atexit", "faulthandler", "sysconfig", "site",
    "tracemalloc", "contextvars",
})
# Names that reach the interpreter, the kernel or the cell history.
DENIED_NAMES = frozenset({
    "exec", "eval", "compile", "__import__", "globals", "locals", "vars", "setattr", "delattr",
    "get_ipython", "__builtins__", "__builtin__", "In", "Out", "_ih", "_oh", "_dh", "_i", "_ii", "_iii",
    "breakpoint", "exit", "quit", "__loader__", "__spec__",
})
# Attributes that lead to frames, code objects, or ways to replace torch operators.
DENIED_ATTRIBUTES = frozenset({
    "f_back", "f_globals", "f_locals", "f_builtins", "f_code", "f_trace", "tb_frame", "tb_next", "gi_frame",
    "gi_code", "cr_frame", "cr_code", "ag_frame", "co_consts", "co_code", "mro", "library", "overrides",
    "cpp_extension",
})
ALLOWED_DUNDERS = frozenset({"__init__", "__name__", "__doc__", "__version__"})
ALLOWED_MAGICS = frozenset({"time", "timeit", "matplotlib"})
_FRESH_VALUES = (ast.Constant, ast.List, ast.Tuple, ast.Dict, ast.Set, ast.ListComp, ast.DictComp, ast.SetComp,
                 ast.GeneratorExp, ast.BinOp, ast.UnaryOp, ast.Compare, ast.BoolOp, ast.JoinedStr)


def find_tampering(sources: dict[str, str], protected: dict[str, str], module_names: set[str]) -> list[str]:
    """Scan student code, cell by cell in order, for attempts to change how it is checked.

    Flags: rebinding a name the tests use (`check = ...`, `def check`, `torch = ...`), assigning into an
    imported module or an alias of one (`vitsteps.checks.check = ...`, `torch.allclose = ...`), imports
    and names that reach the interpreter (`sys`, `builtins`, `importlib`, `inspect`, `setattr`, `exec`,
    `get_ipython`, `In`/`Out` history), dunder and frame attributes (`__globals__`, `__code__`, `f_back`),
    special methods and Tensor subclasses (`__torch_function__`), and magics other than %time/%timeit.

    Args:
        sources: a label (e.g. "cell 12") -> the code of one student cell, in notebook order.
        protected: names the test cells use that the source notebook binds by import (name -> "module" or
            "module:attribute"), by `def`/`class` (name -> ""), or that are builtins (name -> "").
        module_names: every name the source notebook binds by an import.

    Returns:
        One line per finding (e.g. "cell 12, line 3: changes `vitsteps.checks.check` ..."); empty if clean.
    """
    findings: list[str] = []
    scanner = _Scanner(protected, set(module_names), findings)
    for label, source in sources.items():
        scanner.label = label
        try:
            tree = ast.parse(_python_source(source, findings, label))
        except SyntaxError:
            continue  # the kernel reports it as an error in that cell; nothing in it runs
        scanner.visit(tree)
    return findings


def _python_source(source: str, findings: list[str], label: str) -> str:
    """The cell as plain Python after IPython's transforms; magics other than timing are findings."""
    from IPython.core.inputtransformer2 import TransformerManager

    tree = ast.parse(TransformerManager().transform_cell(source))
    bodies: list[str] = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Call) and isinstance(node.func.value.func, ast.Name)
                and node.func.value.func.id == "get_ipython"):
            continue
        strings = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        magic = strings[0].split()[0] if strings and strings[0].split() else ""
        if node.func.attr in ("run_line_magic", "run_cell_magic") and magic in ALLOWED_MAGICS:
            bodies += strings[1:]  # the timed code is scanned too
        else:
            what = "a shell command (!)" if node.func.attr in ("system", "getoutput") else (
                f"the IPython magic %{magic}" if magic else "IPython internals")
            findings.append(f"{label}: uses {what}")
        node.func, node.args, node.keywords = ast.Name(id="len", ctx=ast.Load()), [], []
    extra = [body for body in bodies if _parses(body)]
    return "\n".join([ast.unparse(tree), *extra])


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except SyntaxError:
        return False
    return True


class _Scanner(ast.NodeVisitor):
    """Walks student cells; appends a finding for each construct that could reach the checking machinery."""

    def __init__(self, protected: dict[str, str], module_names: set[str], findings: list[str]) -> None:
        self.label = ""
        self.protected = protected
        self.aliases = set(module_names)  # names bound to modules, or to anything not freshly built
        self.findings = findings
        self.scopes: list[set[str]] = []  # locals of the enclosing functions and classes

    def flag(self, node: ast.AST, what: str) -> None:
        finding = f"{self.label}, line {getattr(node, 'lineno', 0)}: {what}"
        if finding not in self.findings:
            self.findings.append(finding)

    # imports
    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            bound = alias.asname or alias.name.split(".")[0]
            self._import(node, alias.name, bound, alias.name if alias.asname else bound, None)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        if node.level:
            self.flag(node, "uses a relative import")
        for alias in node.names:
            if alias.name == "*":
                self.flag(node, f"uses `from {module} import *`, which can rebind the names the tests use")
            else:
                self._import(node, module, alias.asname or alias.name, f"{module}:{alias.name}", alias.name)

    def _import(self, node: ast.AST, module: str, bound: str, target: str, name: str | None) -> None:
        parts = module.split(".") + ([name] if name else [])
        if parts[0] in DENIED_MODULES or any(p.startswith("_") or p in DENIED_ATTRIBUTES for p in parts[1:]) \
                or (name in DENIED_NAMES):
            self.flag(node, f"imports `{'.'.join(parts)}`, which exercises may not use (it can change how "
                            f"the checks run)")
        if not self.scopes and bound in self.protected and \
                self.protected[bound].replace(":", ".") != target.replace(":", "."):
            self.flag(node, f"rebinds `{bound}`, which the tests use")
        self._bind(bound, fresh=False)

    # names and attributes
    def visit_Name(self, node: ast.Name) -> None:
        if node.id in DENIED_NAMES or (node.id.startswith("_i") and node.id[2:].isdigit()):
            self.flag(node, f"uses `{node.id}`")
        if isinstance(node.ctx, (ast.Store, ast.Del)) and not self.scopes and node.id in self.protected:
            self.flag(node, f"rebinds `{node.id}`, which the tests use")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        attr = node.attr
        if attr.startswith("__") and attr.endswith("__"):
            if attr not in ALLOWED_DUNDERS:
                self.flag(node, f"uses the special attribute `.{attr}`")
        elif attr.startswith("_"):
            self.flag(node, f"uses the private attribute `.{attr}`")
        elif attr in DENIED_ATTRIBUTES:
            self.flag(node, f"uses `.{attr}`")
        if isinstance(node.ctx, (ast.Store, ast.Del)):
            self._mutation(node)
        self.generic_visit(node)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        if isinstance(node.ctx, (ast.Store, ast.Del)):
            self._mutation(node)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        if isinstance(node.func, ast.Name) and node.func.id == "getattr" and len(node.args) >= 2:
            name = node.args[1]
            if not (isinstance(name, ast.Constant) and isinstance(name.value, str) and not name.value.startswith("_")):
                self.flag(node, "calls getattr with a computed or private attribute name")
        self.generic_visit(node)

    def _mutation(self, node: ast.Attribute | ast.Subscript) -> None:
        root: ast.AST = node
        while isinstance(root, (ast.Attribute, ast.Subscript, ast.Call)):
            root = root.func if isinstance(root, ast.Call) else root.value
        name = root.id if isinstance(root, ast.Name) else None
        if name is not None and any(name in scope for scope in self.scopes):
            return  # a local of the student's own function
        if name is None or name in self.protected or name in self.aliases:
            self.flag(node, f"changes `{ast.unparse(node)}` (monkeypatching a module or a name the tests use)")

    # definitions and scopes
    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        if not isinstance(node, ast.Lambda):
            if not self.scopes and node.name in self.protected:
                self.flag(node, f"rebinds `{node.name}`, which the tests use")
            if node.name.startswith("__") and node.name.endswith("__") and node.name not in ALLOWED_DUNDERS:
                self.flag(node, f"defines the special method `{node.name}`")
            for decorator in node.decorator_list:
                self.visit(decorator)
            if node.returns is not None:
                self.visit(node.returns)
            self._bind(node.name, fresh=True)
        arguments = node.args
        for default in arguments.defaults + [d for d in arguments.kw_defaults if d is not None]:
            self.visit(default)
        for argument in arguments.posonlyargs + arguments.args + arguments.kwonlyargs:
            if argument.annotation is not None:
                self.visit(argument.annotation)
        params = {a.arg for a in arguments.posonlyargs + arguments.args + arguments.kwonlyargs}
        params |= {a.arg for a in (arguments.vararg, arguments.kwarg) if a is not None}
        self.scopes.append(params | _local_names(node))
        for statement in node.body if isinstance(node.body, list) else [node.body]:
            self.visit(statement)
        self.scopes.pop()

    visit_AsyncFunctionDef = visit_FunctionDef
    visit_Lambda = visit_FunctionDef

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        if not self.scopes and node.name in self.protected:
            self.flag(node, f"rebinds `{node.name}`, which the tests use")
        for base in node.bases + [keyword.value for keyword in node.keywords]:
            text = ast.unparse(base)
            if "Tensor" in text or "Parameter" in text or isinstance(base, ast.Call):
                self.flag(base, f"defines a subclass of `{text}` (it could fake comparisons)")
            self.visit(base)
        self._bind(node.name, fresh=True)
        self.scopes.append({"self"} | _local_names(node))
        for statement in node.body:
            self.visit(statement)
        self.scopes.pop()

    def visit_Global(self, node: ast.Global | ast.Nonlocal) -> None:
        for name in node.names:
            if name in self.protected or name in self.aliases:
                self.flag(node, f"declares `{name}` global to rebind it")

    visit_Nonlocal = visit_Global

    def visit_Assign(self, node: ast.Assign | ast.AnnAssign | ast.AugAssign | ast.NamedExpr) -> None:
        if node.value is not None:
            self.visit(node.value)
        fresh = isinstance(node.value, _FRESH_VALUES) or (
            isinstance(node.value, ast.Call) and isinstance(node.value.func, (ast.Name, ast.Attribute)))
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        for target in targets:
            self.visit(target)
            for name in _target_names(target):
                self._bind(name, fresh=fresh)

    visit_AnnAssign = visit_Assign
    visit_AugAssign = visit_Assign
    visit_NamedExpr = visit_Assign

    def visit_For(self, node: ast.For | ast.AsyncFor | ast.comprehension) -> None:
        for name in _target_names(node.target):
            self._bind(name, fresh=False)
        self.generic_visit(node)

    visit_AsyncFor = visit_For
    visit_comprehension = visit_For

    def visit_With(self, node: ast.With | ast.AsyncWith) -> None:
        for item in node.items:
            if item.optional_vars is not None:
                for name in _target_names(item.optional_vars):
                    self._bind(name, fresh=False)
        self.generic_visit(node)

    visit_AsyncWith = visit_With

    def _bind(self, name: str, fresh: bool) -> None:
        if self.scopes:
            return
        if fresh:
            self.aliases.discard(name)
        else:
            self.aliases.add(name)


def _target_names(target: ast.AST) -> list[str]:
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, (ast.Tuple, ast.List)):
        return [name for element in target.elts for name in _target_names(element)]
    if isinstance(target, ast.Starred):
        return _target_names(target.value)
    return []


def _local_names(scope: ast.AST) -> set[str]:
    """Names a function or class body binds itself (its locals), minus those it declares global."""
    names: set[str] = set()
    declared: set[str] = set()
    stack = list(getattr(scope, "body", [])) if isinstance(getattr(scope, "body", None), list) else []
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
            continue
        if isinstance(node, (ast.Global, ast.Nonlocal)):
            declared |= set(node.names)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {alias.asname or alias.name.split(".")[0] for alias in node.names}
        if not isinstance(node, ast.Lambda):
            stack.extend(ast.iter_child_nodes(node))
    return names - declared


def protected_names(test_sources: list[str], source_cells: list[str], solution_sources: list[str]
                    ) -> tuple[dict[str, str], set[str]]:
    """Which names student code may not rebind, and which names are modules.

    Args:
        test_sources: code of the graded test cells.
        source_cells: code of every other instructor cell (setup, demos), in order.
        solution_sources: code of the solution cells (the names they define are the student's to define).

    Returns:
        (protected, module_names): protected maps a name the tests load to its import target
        ("module" or "module:attribute", "" for defs, classes and builtins); module_names holds every
        name the instructor cells bind by an import.
    """
    bound_by: dict[str, str] = {}
    module_names: set[str] = set()
    for source in source_cells + test_sources:
        tree = _parse_or_none(source)
        if tree is None:
            continue
        for node in tree.body:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    bound = alias.asname or alias.name.split(".")[0]
                    bound_by[bound] = alias.name if alias.asname else bound
                    module_names.add(bound)
            elif isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    bound_by[alias.asname or alias.name] = f"{node.module}:{alias.name}"
                    module_names.add(alias.asname or alias.name)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                bound_by[node.name] = ""
    students: set[str] = set()
    for source in solution_sources:
        tree = _parse_or_none(source)
        if tree is not None:
            students |= {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
            students |= {name for n in tree.body if isinstance(n, ast.Assign) for t in n.targets
                         for name in _target_names(t)}
    protected: dict[str, str] = {}
    for source in test_sources:
        tree = _parse_or_none(source)
        if tree is None:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id not in students:
                if node.id in bound_by:
                    protected[node.id] = bound_by[node.id]
                elif node.id in dir(builtins):
                    protected[node.id] = ""
    return protected, module_names - students


def _parse_or_none(source: str) -> ast.Module | None:
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        return ast.parse(TransformerManager().transform_cell(source))
    except SyntaxError:
        return None
