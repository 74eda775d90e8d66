"""The sandbox: what a submission can see, the limits on the whole submission, clean-up, and the plain-data codec.

Each hostile notebook below is one submission of our own; one sandbox run per configuration (with cgroups where
the kernel offers them, and without), so the file costs two warm interpreters.
"""
from __future__ import annotations

import io
import os
import shutil
import socket
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch

REQUIRE_SANDBOX = os.environ.get("VITSTEPS_REQUIRE_SANDBOX") == "1"
if not REQUIRE_SANDBOX:
    pytest.importorskip("nbgrader", reason="the instructor tools (vitcourse, nbgrader) are not installed")

from vitcourse.confine import cgroups, sandbox  # noqa: E402
from vitcourse.inside import wire  # noqa: E402

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None and not REQUIRE_SANDBOX,
                                 reason="bubblewrap is not installed (apt-get install -y bubblewrap)")
SECRET_ENV = "VITCOURSE_TEST_SECRET"
SECRET = "grader-only-" + os.urandom(8).hex()
MIB = 1024 * 1024
LIMITS = sandbox.Limits(cell_timeout=15, notebook_timeout=60, memory_mb=600, processes=24, disk_mb=48, files=2000,
                        output_kb=64)


class _Listener:
    """A TCP server on the host's loopback that records whether anyone connected."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.2)
        self.port = self.server.getsockname()[1]
        self.connections = 0
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while self.running:
            try:
                connection, _ = self.server.accept()
            except OSError:
                continue
            self.connections += 1
            connection.close()

    def close(self) -> None:
        self.running = False
        self.thread.join()
        self.server.close()


ATTEMPT = ("import os, socket, ctypes\n"
           "def attempt(action):\n"
           "    try:\n"
           "        action()\n"
           "        return 'done'\n"
           "    except Exception as error:\n"
           "        return type(error).__name__\n")
FORK_BOMB = ("import os, signal, time\nkids = []\ntry:\n    for _ in range(10_000):\n        pid = os.fork()\n"
             "        if pid == 0:\n            time.sleep(60)\n            os._exit(0)\n        kids.append(pid)\n"
             "except OSError as error:\n    print('fork refused after', len(kids), type(error).__name__)\n"
             "for kid in kids:\n    os.kill(kid, signal.SIGKILL)\n    os.waitpid(kid, 0)")
UNLINKED = ("import os\nheld = []\ntry:\n    for index in range(100):\n"
            "        handle = open(f'/tmp/junk{index}', 'wb')\n        os.unlink(f'/tmp/junk{index}')\n"
            "        handle.write(bytes(4 * 1024 * 1024))\n        handle.flush()\n        held.append(handle)\n"
            "except OSError as error:\n    print('disk full after', 4 * len(held), 'MiB', type(error).__name__)\n"
            "for handle in held:\n    try:\n        handle.close()\n    except OSError:\n        pass")
# 32 MiB in /tmp, then 32 MiB in /dev/shm: together more than the 48 MiB tmpfs
SHM = ("with open('/tmp/first', 'wb') as handle:\n    handle.write(bytes(32 * 1024 * 1024))\ntry:\n"
       "    with open('/dev/shm/second', 'wb') as handle:\n        handle.write(bytes(32 * 1024 * 1024))\n"
       "    print('shm done')\nexcept OSError as error:\n    print('shm refused', type(error).__name__)\n"
       "os.remove('/tmp/first')\nos.remove('/dev/shm/second')")
DEEP = ("import os\nos.makedirs('/tmp/work/deep', exist_ok=True)\nos.chdir('/tmp/work/deep')\n"
        "for _ in range(1100):\n    os.mkdir('d')\n    os.chdir('d')\nos.chmod('.', 0)\nos.chdir('/tmp/work')\n"
        "print('1100 levels made')")
SPREAD = ("import os, time\nkids = []\nfor _ in range(3):\n    pid = os.fork()\n    if pid == 0:\n"
          "        block = bytearray(300 * 1024 * 1024)\n        for i in range(0, len(block), 4096):\n"
          "            block[i] = 1\n        time.sleep(1)\n        os._exit(0)\n    kids.append(pid)\n"
          "print('exit codes', sorted(os.waitstatus_to_exitcode(os.waitpid(kid, 0)[1]) for kid in kids))")
PRINT_FLOOD = "for _ in range(2000):\n    print('x' * 99)"  # 200 KB: over the 64 KiB budget, under 8 times it
UPDATE_FLOOD = ("from IPython.display import display\nhandle = display('start', display_id=True)\n"
                "for index in range(100_000):\n    handle.update('y' * 200)")


def _cells(*sources: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in sources])


def _printed(cell: nbformat.NotebookNode) -> str:
    return "".join(output.get("text", "") for output in cell.outputs if output.output_type == "stream")


def _namespace_gone(namespace: str, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = False
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                try:
                    alive = alive or os.readlink(f"/proc/{entry.name}/ns/pid") == namespace
                except OSError:
                    pass
        if not alive:
            return True
        time.sleep(0.1)
    return False


def _cgroup_folders() -> list[str]:
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        if " - cgroup" in line:
            point = line.split()[4]
            found += [str(path) for path in Path(point).rglob(f"vitcourse-{os.getpid()}-*")  # this grader's own
                      ] if os.access(point, os.R_OK) else []
    return found


def _environments(root: int) -> list[bytes]:
    """The environment of every process under `root` (bubblewrap, the zygote, a submission's processes)."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and sandbox._descends(int(entry.name), root):
            try:
                found.append(Path(f"/proc/{entry.name}/environ").read_bytes())
            except OSError:
                pass
    return found


def _run(notebook: nbformat.NotebookNode, use_cgroups: bool | None) -> tuple[sandbox.Execution, str, bool]:
    """Run in a fresh sandbox; also return the submission's pid namespace and whether cgroups were used."""
    record = sandbox.Execution(notebook=notebook)
    with sandbox.Sandbox(LIMITS, use_cgroups=use_cgroups) as warm:
        session = warm.session()
        namespace = os.readlink(f"/proc/{session.init_pid}/ns/pid")
        environments = _environments(warm.process.pid)
        assert len(environments) >= 4, "bubblewrap, the zygote and the submission's init and executor"
        assert not any(SECRET.encode() in text for text in environments), "no process of the sandbox holds it"
        try:
            sandbox.run_notebook(session, notebook, record)
        finally:
            session.close()
        return record, namespace, warm.tree is not None


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    """One hostile notebook, run once with cgroups where the kernel offers them."""
    if shutil.which("bwrap") is None and not REQUIRE_SANDBOX:
        pytest.skip("bubblewrap is not installed")
    host_file = tmp_path_factory.mktemp("host") / "secret.txt"
    host_file.write_text("host data")
    # a read-only path under /tmp (as a checkout or Python there would be) stays readable and read-only
    shared = tmp_path_factory.mktemp("readonly") / "shared.txt"
    shared.write_text("shared data")
    shared.parent.chmod(0o755)  # readable by anyone, as a checkout is (pytest makes its folders private)
    readonly_paths = sandbox._readonly_paths
    listener = _Listener()
    os.environ[SECRET_ENV] = SECRET
    before = set(os.listdir(tempfile_dir()))
    try:
        notebook = _cells(
            ATTEMPT + "import pathlib\n"
            "print('uid', os.getuid(), 'host', socket.gethostname())\n"
            "print('env', sorted(os.environ.items()))\n"
            "print('pid1', attempt(lambda: print(open('/proc/1/environ', 'rb').read())))\n"
            "print('pids', sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))\n"
            "print('caps', [l.split()[1] for l in open('/proc/self/status') if l.startswith('CapEff')])",
            ATTEMPT + f"print('read', attempt(lambda: open({str(host_file)!r}).read()))\n"
            f"print('write', attempt(lambda: open({str(host_file)!r}, 'w').write('x')))\n"
            "print('root', attempt(lambda: open('/planted.txt', 'w').write('x')))\n"
            f"print('loopback', attempt(lambda: socket.create_connection(('127.0.0.1', {listener.port}), timeout=2)))\n"
            "print('internet', attempt(lambda: socket.create_connection(('1.1.1.1', 80), timeout=2)))\n"
            "print('memfd', attempt(lambda: os.memfd_create('x')))\n"
            "libc = ctypes.CDLL(None, use_errno=True)\n"
            "print('unshare', libc.unshare(0x10000000), 'ptrace', libc.ptrace(16, 1, 0, 0))\n"
            f"print('shared read', open({str(shared)!r}).read())\n"
            f"print('shared write', attempt(lambda: open({str(shared)!r}, 'w').write('x')))",
            FORK_BOMB, UNLINKED, SHM, DEEP, SPREAD,
            "buffer = bytearray(3 * 1024 ** 3)",
            PRINT_FLOOD, UPDATE_FLOOD, "print('never')")
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(sandbox, "_readonly_paths", lambda: sorted([*readonly_paths(), str(shared.parent)]))
            record, namespace, used_cgroups = _run(notebook, None)
    finally:
        del os.environ[SECRET_ENV]
        listener.close()
    left = set(os.listdir(tempfile_dir())) - before
    return {"record": record, "namespace": namespace, "cgroups": used_cgroups, "host_file": host_file,
            "listener": listener, "left": left}


def tempfile_dir() -> str:
    return tempfile.gettempdir()


@needs_bwrap
def test_a_submission_sees_a_clean_environment_and_only_its_own_processes(hostile_run):
    record = hostile_run["record"]
    text = _printed(record.notebook.cells[0])
    assert SECRET not in text and SECRET_ENV not in text and "uid 0 " not in text
    assert "host sandbox" in text and "pid1 PermissionError" in text
    assert "caps ['0000000000000000']" in text
    assert "pids [1, 2]\n" in text, "only the submission's own processes are visible: its init and the executor"


@needs_bwrap
def test_a_submission_cannot_reach_host_files_the_network_or_dangerous_syscalls(hostile_run):
    text = _printed(hostile_run["record"].notebook.cells[1])
    assert "read FileNotFoundError" in text and "write done" not in text and "root OSError" in text
    assert "loopback OSError" in text and "internet OSError" in text  # no network at all, not even loopback
    assert "memfd PermissionError" in text and "unshare -1 ptrace -1" in text
    assert hostile_run["listener"].connections == 0 and hostile_run["host_file"].read_text() == "host data"
    assert "shared read shared data" in text and "shared write OSError" in text, "read-only paths under /tmp"


@needs_bwrap
def test_a_fork_bomb_stops_at_the_process_limit(hostile_run):
    text = _printed(hostile_run["record"].notebook.cells[2])
    kids = int(text.split("fork refused after ")[1].split()[0])
    assert 0 < kids < LIMITS.processes and "BlockingIOError" in text
    assert hostile_run["record"].status[2] == "ok"


@needs_bwrap
def test_disk_limit_counts_unlinked_open_files_and_shared_memory(hostile_run):
    cells = hostile_run["record"].notebook.cells
    held = int(_printed(cells[3]).split("disk full after ")[1].split()[0])
    assert held <= LIMITS.disk_mb
    assert "shm refused OSError" in _printed(cells[4]), "/dev/shm lives in the same size-limited tmpfs"
    assert "1100 levels made" in _printed(cells[5])


@needs_bwrap
def test_memory_is_limited_across_processes_and_per_allocation(hostile_run):
    record = hostile_run["record"]
    if hostile_run["cgroups"]:
        codes = eval(_printed(record.notebook.cells[6]).split("exit codes ")[1])  # noqa: S307 - our own list
        assert -9 in codes, "three 300 MiB processes do not fit in 600 MiB together: the kernel kills one"
    assert record.notebook.cells[7].outputs[0]["ename"] == "MemoryError"


@needs_bwrap
def test_the_output_budget_is_for_the_whole_notebook_and_counts_display_updates(hostile_run):
    record = hostile_run["record"]
    assert record.truncated[0] == 8 and "kept the notebook's first 64 KiB" in _printed(record.notebook.cells[8])
    assert len(_printed(record.notebook.cells[8])) < 70 * 1024
    assert record.stopped.startswith("the notebook printed more than 512 KiB") and record.stopped_at == 9
    assert 10 not in record.status


@needs_bwrap
def test_nothing_of_a_submission_is_left_behind(hostile_run):
    assert _namespace_gone(hostile_run["namespace"]), "every process of the submission (the fork bomb's too) ended"
    assert not _cgroup_folders(), "every cgroup made for the run was removed"
    assert not any(name.startswith("vitcourse") for name in hostile_run["left"]), "no scratch folder on the host"


@needs_bwrap
def test_without_cgroups_processes_are_counted_and_memory_is_watched_across_processes():
    record, namespace, used_cgroups = _run(_cells(FORK_BOMB, SPREAD, "print('never')"), use_cgroups=False)
    assert not used_cgroups
    kids = int(_printed(record.notebook.cells[0]).split("fork refused after ")[1].split()[0])
    assert 0 < kids < LIMITS.processes
    assert record.stopped.startswith("out of memory: the submission used more than its 600 MiB") \
        and record.stopped_at == 1 and 2 not in record.status
    assert _namespace_gone(namespace)


def test_remove_tree_handles_depth_links_and_unreadable_folders(tmp_path):
    memory = Path("/dev/shm")  # a tmpfs where there is one: the test is about the walk, not the disk
    base = Path(tempfile.mkdtemp(dir=memory)) if memory.is_dir() and os.access(memory, os.W_OK) else tmp_path
    root = base / "scratch"
    outside = tmp_path / "outside.txt"
    outside.write_text("keep")
    os.mkdir(root)
    fd = os.open(root, os.O_RDONLY)
    for _ in range(1100):  # deeper than Python's recursion limit
        os.mkdir("d", dir_fd=fd)
        child = os.open("d", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = child
    os.symlink(str(outside), "link", dir_fd=fd)
    os.close(fd)
    (root / "locked").mkdir()
    (root / "locked" / "file").write_text("x")
    (root / "locked").chmod(0)
    sandbox.remove_tree(root)
    assert not root.exists() and outside.read_text() == "keep"
    if base != tmp_path:
        base.rmdir()


# ------------------------------------------------------------------------------------------ cgroups


def _fake_cgroup_tree(tmp_path: Path, version: int) -> Path:
    root = tmp_path / "root"
    (root / "proc/7").mkdir(parents=True)
    if version == 1:
        (root / "proc/7/mountinfo").write_text(
            "30 25 0:26 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
            "31 25 0:27 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n")
        (root / "proc/7/cgroup").write_text("4:memory:/course\n8:pids:/\n0::/\n")
        (root / "sys/fs/cgroup/memory/course").mkdir(parents=True)
        (root / "sys/fs/cgroup/pids").mkdir(parents=True)
    else:
        (root / "proc/7/mountinfo").write_text("30 25 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n")
        (root / "proc/7/cgroup").write_text("0::/user.slice/grader.scope\n")
        base = root / "sys/fs/cgroup/user.slice/grader.scope"
        base.mkdir(parents=True)
        (base / "cgroup.controllers").write_text("cpu memory pids\n")
        (base / "cgroup.subtree_control").write_text("")
        (base / "cgroup.procs").write_text("7\n12\n")
    return root


@pytest.fixture
def fake_rmdir(monkeypatch):
    """A real cgroup folder is removed with its control files by rmdir; a fake one needs rmtree."""
    monkeypatch.setattr(cgroups.Path, "rmdir", lambda self: shutil.rmtree(self))


def test_cgroup_v1_groups_get_memory_and_pids_limits(tmp_path, fake_rmdir):
    root = _fake_cgroup_tree(tmp_path, 1)
    tree = cgroups.find(root, pid=7)
    assert tree is not None and tree.version == 1
    assert tree.parents["memory"].parent == root / "sys/fs/cgroup/memory/course"
    group = tree.make(memory_bytes=600 * MIB, processes=24)
    assert (group.folders["memory"] / "memory.limit_in_bytes").read_text() == str(600 * MIB)
    assert (group.folders["pids"] / "pids.max").read_text() == "24"
    group.add(1234)
    assert (group.folders["pids"] / "cgroup.procs").read_text() == "1234"


def test_cgroup_v2_moves_the_graders_processes_into_a_leaf_and_enables_controllers(tmp_path, fake_rmdir):
    root = _fake_cgroup_tree(tmp_path, 2)
    tree = cgroups.find(root, pid=7)
    base = root / "sys/fs/cgroup/user.slice/grader.scope"
    assert tree is not None and tree.version == 2
    assert (base / "cgroup.subtree_control").read_text() == "+memory +pids"
    assert (base / "vitcourse-grader" / "cgroup.procs").read_text() == "12"  # the last process moved
    group = tree.make(memory_bytes=100 * MIB, processes=8)
    folder = group.folders["memory"]
    assert (folder / "memory.max").read_text() == str(100 * MIB) and (folder / "pids.max").read_text() == "8"
    (folder / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 2\n")
    assert group.oom_kills() == 2


def test_no_cgroups_without_the_controllers(tmp_path, fake_rmdir):
    root = _fake_cgroup_tree(tmp_path, 2)
    (root / "sys/fs/cgroup/user.slice/grader.scope/cgroup.controllers").write_text("cpu io\n")
    assert cgroups.find(root, pid=7) is None


# ------------------------------------------------------------------------------------------ the plain-data codec


def test_values_cross_as_plain_data_and_come_back_equal():
    from vitsteps import ViTConfig

    config = ViTConfig(img_size=32, patch_size=8, embed_dim=16, depth=1, num_heads=2, num_classes=3)
    layer = torch.nn.Linear(3, 2)
    value = (torch.randn(2, 3), torch.tensor([1, 2]), torch.tensor([True]), 7, 2.5, True, None, "x", [1.0],
             config, layer, torch.tensor(3.5), torch.arange(6.0).reshape(2, 3).t())
    tree, blob = wire.encode(value)
    back = wire.decode(tree, blob)
    assert back[11].shape == () and back[11].item() == 3.5, "a scalar (a loss) stays a 0-d tensor"
    assert torch.equal(back[12], value[12]), "a transposed view crosses as its values"
    assert torch.equal(back[0], value[0]) and back[1].dtype == torch.int64 and back[2].dtype == torch.bool
    assert back[3:9] == (7, 2.5, True, None, "x", [1.0]) and type(back[3]) is int and type(back[5]) is bool
    assert back[9] == config and torch.equal(back[10].weight, layer.weight) and torch.equal(back[10].bias, layer.bias)
    with np.load(io.BytesIO(blob), allow_pickle=False) as arrays:  # the blob is an ordinary .npz
        assert sorted(arrays.files) == ["a0", "a1", "a2", "a3", "a4", "a5", "a6"]


def _npz_with(name: str, data: bytes, compression: int = zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        archive.writestr(name, data)
    return buffer.getvalue()


@pytest.mark.parametrize("blob, message", [
    (_npz_with("a0.npy", b"\0" * 100_000, zipfile.ZIP_DEFLATED), "compressed"),
    (b"not a zip", "not a valid .npz"),
])
def test_hostile_array_blobs_are_refused_before_numpy_reads_them(blob, message):
    with pytest.raises(wire.WireError, match=message):
        wire.load_arrays(blob)


def test_pickled_and_odd_dtype_arrays_are_refused():
    for array in (np.array([object()], dtype=object), np.zeros(3, dtype=np.complex64)):
        buffer = io.BytesIO()
        np.savez(buffer, a0=array)
        with pytest.raises(wire.WireError):
            wire.load_arrays(buffer.getvalue())


def _nested(depth: int) -> dict:
    tree: dict = {"t": "none"}
    for _ in range(depth):
        tree = {"t": "list", "items": [tree]}
    return tree


@pytest.mark.parametrize("tree", [
    {"t": "eval", "v": "__import__('os')"},
    {"t": "tensor", "a": "a9"},
    {"t": "linear", "in": 2, "out": 2, "weight": "a0", "bias": None},
    {"t": "vitconfig", "fields": {"no_such_field": {"t": "int", "v": "1"}}},
    {"t": "int", "v": "1" * 100},
    "not a node",
    _nested(wire.MAX_DEPTH + 2),
], ids=["unknown kind", "missing array", "linear of the wrong shape", "unknown config field", "huge int",
        "not a node", "too deep"])
def test_malformed_trees_are_refused(tree):
    blob = wire.encode(torch.zeros(3))[1]
    with pytest.raises(wire.WireError):
        wire.decode(tree, blob)


def test_values_that_may_not_cross_are_refused_by_name():
    with pytest.raises(wire.WireError, match="dict cannot cross"):
        wire.encode({"a": 1})
    with pytest.raises(wire.WireError, match="dtype torch.complex64"):
        wire.encode(torch.zeros(2, dtype=torch.complex64))
