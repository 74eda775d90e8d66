"""What runs inside the sandbox: a warm interpreter that forks one executor per submission.

    python -m vitcourse.inside.runner zygote FD      (started by `vitcourse.confine.sandbox`, inside bubblewrap)
    python -m vitcourse.inside.runner launch JSON    (as root only: drops to an unprivileged user, then runs bubblewrap)

The process tree for one autograde run, inside one bubblewrap sandbox:

    zygote          imports torch, vitsteps, IPython, ... once;
     |              never runs student code. On each "start" from the grader (with a socket) it forks:
     +- holder      makes new user, mount, pid, ipc, net and uts namespaces (or none without a sandbox)
         +- init    pid 1 of the submission: mounts a fresh /proc and a size-limited tmpfs for all writable
             |      space, says hello (the grader reads its pid from the socket's credentials and puts it in
             |      a cgroup when it can), waits for "go", forks the executor, reaps; when it exits the
             |      kernel kills everything left in the submission's pid namespace and the tmpfs is gone.
             +- executor   limits, no capabilities, a seccomp filter, a clean environment, then an IPython
                           shell that runs the cells it is sent and calls the graded functions for the grader.

Everything the executor says is untrusted: the grader decides grades from the plain values the student's
functions return (see `vitcourse.inside.wire`) and treats every other message as the student's own output.
"""
from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import socket
import struct
import sys
from typing import Any

# Linux constants (x86_64 and aarch64 share these)
CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
CLONE_NEWCGROUP, CLONE_NEWTIME = 0x02000000, 0x00000080
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP = 1, 4, 24
PR_SET_SECCOMP, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 22, 38, 47, 4
NOBODY = 65534

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]

# what the executor knows about itself; the student's code can reach these, which decides nothing
_CHANNEL: socket.socket | None = None
_EXECUTOR_PID = 0
_SHELL: Any = None
_STUDENT_CODE_RAN = False  # once a cell or a call has run, routes can no longer be closed


# ------------------------------------------------------------------------------------------ system calls


def _check(result: int, what: str) -> None:
    if result != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"{what}: {os.strerror(error)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(_libc.mount(source.encode() if source else None, target.encode(), fstype.encode() if fstype else None,
                       flags, data.encode() if data else None), f"mount {target}")


def _write(path: str, text: str) -> None:
    with open(path, "w") as handle:
        handle.write(text)


def _drop_capabilities() -> None:
    """No capabilities left, in any set, for this process and whatever it starts."""
    for cap in range(64):
        if _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            break
    _libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                    ("inheritable", ctypes.c_uint32)]

    header, data = Header(0x20080522, 0), (Data * 2)()
    _check(_libc.capset(ctypes.byref(header), data), "capset")


# syscalls the executor may not make (x86_64 numbers): tracing, memory outside every limit (memfd, SysV shm),
# kernel keyrings, eBPF, io_uring, namespaces and mounts
_DENIED_X86_64 = {
    "ptrace": 101, "shmget": 29, "memfd_create": 319, "memfd_secret": 447, "userfaultfd": 323,
    "perf_event_open": 298, "bpf": 321, "add_key": 248, "request_key": 249, "keyctl": 250,
    "process_vm_readv": 310, "process_vm_writev": 311, "pidfd_getfd": 438, "io_uring_setup": 425,
    "io_uring_enter": 426, "io_uring_register": 427, "unshare": 272, "setns": 308, "mount": 165,
    "umount2": 166, "pivot_root": 155, "chroot": 161, "open_by_handle_at": 304, "kexec_load": 246,
}
_NAMESPACE_FLAGS = (CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET
                    | CLONE_NEWCGROUP | CLONE_NEWTIME)


def seccomp_program() -> bytes | None:
    """A classic-BPF seccomp filter for x86_64 (None elsewhere): deny the syscalls above with EPERM, clone
    with namespace flags too; clone3 answers ENOSYS so that libc falls back to clone, whose flags can be read."""
    import platform

    if platform.machine() != "x86_64":
        return None
    ld, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06
    allow, errno_ = 0x7FFF0000, 0x00050000
    eperm, enosys = errno_ | 1, errno_ | 38

    def op(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
        return struct.pack("HBBI", code, jt, jf, k)

    program = [op(ld, 4), op(jeq, 0xC000003E, 1, 0), op(ret, enosys),  # other ABIs (i386, x32) get nothing
               op(ld, 0), op(jge, 0x40000000, 0, 1), op(ret, enosys)]
    for number in sorted(_DENIED_X86_64.values()):
        program += [op(jeq, number, 0, 1), op(ret, eperm)]
    program += [op(jeq, 435, 0, 1), op(ret, enosys),  # clone3
                op(jeq, 56, 0, 3), op(ld, 16), op(jset, _NAMESPACE_FLAGS, 0, 1), op(ret, eperm),  # clone
                op(ret, allow)]
    return b"".join(program)


def _install_seccomp() -> bool:
    program = seccomp_program()
    if program is None:
        return False

    class Program(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]

    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = Program(len(program) // 8, ctypes.cast(buffer, ctypes.c_char_p))
    _check(_libc.prctl(PR_SET_SECCOMP, 2, ctypes.addressof(fprog), 0, 0), "seccomp")
    return True


# ------------------------------------------------------------------------------------------ framing


def _send(sock: socket.socket, message: dict[str, Any], blob: bytes | None = None) -> None:
    from vitcourse.inside import wire

    data = wire.dumps(message)
    if blob is not None:
        data += wire.pack_frame(b"B", blob)
    sock.sendall(data)


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _recv(sock: socket.socket) -> tuple[bytes, bytes]:
    from vitcourse.inside import wire

    length, kind = wire.unpack_header(_recv_exact(sock, wire.HEADER_SIZE))
    return kind, _recv_exact(sock, length)


def _recv_message(sock: socket.socket) -> dict[str, Any]:
    kind, payload = _recv(sock)
    if kind != b"J":
        raise EOFError
    return json.loads(payload)


# ------------------------------------------------------------------------------------------ zygote


def zygote(control_fd: int) -> None:
    """Import what the notebooks need, then fork a holder for each submission the grader starts."""
    control = socket.socket(fileno=control_fd)
    config = json.loads(control.recv(1 << 20))
    os.chdir("/")
    for name in config.get("preload", []):
        try:
            __import__(name)
        except Exception:  # noqa: BLE001, S110 - a module the notebook cannot import fails there, visibly
            pass
    global _SHELL
    _SHELL = _make_shell()
    _warm_up()
    baseline = _vm_size()
    probe = _probe_namespaces() if config["sandboxed"] else ""
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # holders are reaped by the kernel
    control.send(json.dumps({"op": "ready", "baseline": baseline, "problem": probe}).encode())
    while True:
        try:
            data, fds, _, _ = socket.recv_fds(control, 1 << 16, 1)
        except InterruptedError:
            continue
        if not data:
            os._exit(0)
        message = json.loads(data)
        if message.get("op") != "start" or len(fds) != 1:
            for fd in fds:
                os.close(fd)
            continue
        _spawn(_start_holder, control, fds[0], config, message, baseline)
        os.close(fds[0])


def _warm_up() -> None:
    """Draw and encode one figure, so that fonts and lazy imports are loaded once here, not in every submission."""
    if "matplotlib" not in sys.modules:
        return
    try:
        import io

        import matplotlib.pyplot as plt

        figure, axes = plt.subplots()
        axes.imshow([[0.0, 1.0]], cmap="gray")
        axes.set_title("warm-up")
        figure.savefig(io.BytesIO(), format="png")
        plt.close(figure)
    except Exception:  # noqa: BLE001, S110 - without it the first figure of each submission is slower, no more
        pass


def _start_holder(control: socket.socket, fd: int, config: dict[str, Any], message: dict[str, Any],
                  baseline: int) -> None:
    control.close()
    _holder(fd, config, message, baseline)


def _vm_size() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _probe_namespaces() -> str:
    """'' if a submission can get its own namespaces, /proc and tmpfs here, else why not."""
    pid = os.fork()
    if pid == 0:
        try:
            _enter_namespaces()
            inner = os.fork()
            if inner == 0:
                try:
                    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
                    _mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "size=1m")
                    os._exit(0)
                except OSError:
                    os._exit(2)
            os._exit(os.waitstatus_to_exitcode(os.waitpid(inner, 0)[1]))
        except OSError:
            os._exit(1)
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    return {0: "", 2: "a submission cannot mount its own /proc and /tmp inside the sandbox"}.get(
        code, "nested user namespaces are not allowed inside the sandbox")


def _enter_namespaces() -> None:
    uid, gid = os.geteuid(), os.getegid()
    _check(_libc.unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWNET | CLONE_NEWUTS),
           "unshare")
    _write("/proc/self/setgroups", "deny")
    _write("/proc/self/uid_map", f"{uid} {uid} 1")
    _write("/proc/self/gid_map", f"{gid} {gid} 1")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)


def _spawn(function: Any, *arguments: Any) -> int:
    """Fork; the child runs `function(*arguments)` and never returns here. The child's pid for the parent."""
    pid = os.fork()
    if pid == 0:
        try:
            function(*arguments)
        finally:
            os._exit(70)
    return pid


def _holder(fd: int, config: dict[str, Any], message: dict[str, Any], baseline: int) -> None:
    """Own the submission's namespaces; the first child is pid 1 there."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    if config["sandboxed"]:
        _enter_namespaces()
    pid = _spawn(_init, fd, config, message, baseline)
    os.close(fd)
    while True:
        try:
            os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
        except ChildProcessError:
            break
    os._exit(0)


def _init(fd: int, config: dict[str, Any], message: dict[str, Any], baseline: int) -> None:
    """Pid 1 of the submission: its file systems, the handshake, then the executor; reap until it exits."""
    sock = socket.socket(fileno=fd)
    limits = config["limits"]
    if config["sandboxed"]:
        # a checkout or Python under /tmp stays readable: held open here, bound back read-only over the new /tmp
        under_tmp = {path: os.open(path, os.O_PATH) for path in config.get("readonly", [])
                     if path.startswith("/tmp/") and os.path.exists(path)}
        _mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV,
               f"size={limits['disk_bytes']},nr_inodes={limits['files']},mode=1777")
        for path, held in under_tmp.items():
            if os.path.isdir(f"/proc/self/fd/{held}"):
                os.makedirs(path, exist_ok=True)
            else:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                open(path, "a").close()
            _mount(f"/proc/self/fd/{held}", path, None, MS_BIND | MS_REC)
            kept = os.statvfs(path).f_flag & (MS_NOSUID | MS_NODEV | MS_NOEXEC)  # locked flags stay as they are
            _mount(None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | kept)
            os.close(held)
        _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        for folder in ("home", "work", ".shm"):
            os.mkdir(f"/tmp/{folder}", 0o700)
        if os.path.isdir("/dev/shm"):
            _mount("/tmp/.shm", "/dev/shm", None, MS_BIND)
        try:
            _write("/proc/sys/user/max_user_namespaces", "0")  # no namespaces of the student's own
        except OSError:
            pass
        _libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
        work = "/tmp/work"
    else:
        work = message["workdir"]
    _send(sock, {"op": "hello", "role": "init"})
    if _recv_message(sock).get("op") != "go":
        os._exit(0)
    pid = _spawn(_executor, sock, config, work, baseline)
    sock.close()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:  # reap everything; leave when the executor is gone
        try:
            finished, _ = os.waitpid(-1, 0)
        except InterruptedError:
            continue
        except ChildProcessError:
            break
        if finished == pid:
            break
    os._exit(0)


# ------------------------------------------------------------------------------------------ executor


def _executor(sock: socket.socket, config: dict[str, Any], work: str, baseline: int) -> None:
    global _CHANNEL, _EXECUTOR_PID
    limits = config["limits"]
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    os.setsid()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    null = os.open(os.devnull, os.O_RDWR)
    for target in (0, 1, 2):
        os.dup2(null, target)
    os.closerange(3, sock.fileno())
    os.closerange(sock.fileno() + 1, 1 << 16)
    os.chdir(work)
    os.environ.clear()
    os.environ.update({key: value.replace("{work}", work).replace("{home}", os.path.join(os.path.dirname(work),
                                                                                          "home"))
                       for key, value in config["env"].items()})
    memory = limits["memory_bytes"] + baseline
    chosen = [(resource.RLIMIT_AS, memory), (resource.RLIMIT_CPU, limits["cpu_seconds"]),
              (resource.RLIMIT_FSIZE, limits["file_bytes"]), (resource.RLIMIT_NOFILE, limits["open_files"]),
              (resource.RLIMIT_CORE, 0)]
    if config["sandboxed"]:  # counted in the submission's own user namespace; outside one it would count all of yours
        chosen.append((resource.RLIMIT_NPROC, limits["processes"]))
    for which, value in chosen:
        try:
            resource.setrlimit(which, (value, value))
        except (ValueError, OSError):
            pass
    seccomp = False
    if config["sandboxed"]:
        _drop_capabilities()
        seccomp = _install_seccomp()
    _CHANNEL, _EXECUTOR_PID = sock, os.getpid()
    os.register_at_fork(after_in_child=_forked)
    _send(sock, {"op": "hello", "role": "executor", "seccomp": seccomp})
    _SHELL.user_ns["__name__"] = "__main__"
    sys.stdout, sys.stderr = _Stream("stdout"), _Stream("stderr")
    last: dict[str, Any] = {}
    while True:
        try:
            kind, payload = _recv(sock)
            message = json.loads(payload) if kind == b"J" else {}
            blob = _recv(sock)[1] if message.get("blob") else b""
        except KeyboardInterrupt:
            continue  # an interrupt that arrived between cells
        except (EOFError, OSError, ValueError):
            os._exit(0)
        op = message.get("op")
        if op == "close":
            _close_routes(message)
        elif op == "run":
            _run_cell(message)
        elif op == "call":
            _call(message, blob, last)
        elif op == "backward":
            _backward(message, blob, last)
        elif op == "quit":
            os._exit(0)


def _forked() -> None:
    """A process the student forked never speaks for the executor."""
    global _CHANNEL
    _CHANNEL = None


def _emit(message: dict[str, Any], blob: bytes | None = None) -> None:
    if _CHANNEL is None or os.getpid() != _EXECUTOR_PID:
        return
    _send(_CHANNEL, message, blob)


class _Stream:
    """sys.stdout / sys.stderr: text goes to the grader as stream output, in chunks."""

    encoding = "utf-8"
    errors = "replace"

    def __init__(self, name: str) -> None:
        self.name = name
        self.buffer: list[str] = []
        self.size = 0

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        self.buffer.append(text)
        self.size += len(text)
        if self.size > 8192:
            self.flush()
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if self.buffer:
            text, self.buffer, self.size = "".join(self.buffer), [], 0
            _emit({"op": "output", "output_type": "stream", "name": self.name, "text": text})

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return 1 if self.name == "stdout" else 2


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001, S110 - the student replaced the stream; their output is theirs
            pass


def _make_shell() -> Any:
    """An IPython shell whose display hook, display publisher and tracebacks send to the grader."""
    from IPython.core.displayhook import DisplayHook
    from IPython.core.displaypub import DisplayPublisher
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    class Hook(DisplayHook):
        def start_displayhook(self) -> None:
            self.message = {"op": "output", "output_type": "execute_result", "data": {}, "metadata": {}}

        def write_output_prompt(self) -> None:
            self.message["execution_count"] = self.prompt_count

        def write_format_data(self, format_dict: dict, md_dict: dict | None = None) -> None:
            self.message["data"], self.message["metadata"] = format_dict, md_dict or {}

        def finish_displayhook(self) -> None:
            _flush()
            _emit_output(self.message)

    class Publisher(DisplayPublisher):
        def publish(self, data: dict, metadata: dict | None = None, source: Any = None, *,
                    transient: dict | None = None, update: bool = False, **kwargs: Any) -> None:
            _flush()
            message = {"op": "output", "output_type": "update_display_data" if update else "display_data",
                       "data": data, "metadata": metadata or {}}
            if transient and transient.get("display_id"):
                message["display_id"] = str(transient["display_id"])
            _emit_output(message)

        def clear_output(self, wait: bool = False) -> None:
            _flush()
            _emit({"op": "clear_output", "wait": bool(wait)})

    class Shell(InteractiveShell):
        def enable_gui(self, gui: Any = None) -> None:
            return None

        def _showtraceback(self, etype: Any, evalue: Any, stb: Any) -> None:
            _flush()
            _emit_output({"op": "output", "output_type": "error", "ename": getattr(etype, "__name__", "Error"),
                          "evalue": str(evalue), "traceback": [str(line) for line in stb]})

    config = Config()
    config.HistoryManager.enabled = False
    config.InteractiveShell.colors = "NoColor"
    shell = Shell.instance(config=config, displayhook_class=Hook, display_pub_class=Publisher)
    try:
        shell.enable_matplotlib("inline")
    except Exception:  # noqa: BLE001, S110 - without matplotlib the notebook has no figures to show
        pass
    return shell


def _emit_output(message: dict[str, Any]) -> None:
    try:
        _emit(json.loads(json.dumps(message, default=str)))
    except (TypeError, ValueError):
        _emit({"op": "output", "output_type": "stream", "name": "stderr", "text": "[an output was not JSON]\n"})


def _close_routes(message: dict[str, Any]) -> None:
    """Close the routes the grader names, for the rest of this process: only before any cell has run, so that no
    student code can have kept a way around them (see `vitsteps.teach.checks.routes`)."""
    from vitsteps.teach.checks import routes

    names = message.get("routes", [])
    if _STUDENT_CODE_RAN or not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        _emit({"op": "closed", "routes": [], "refused": True})
        return
    _emit({"op": "closed", "routes": routes.close_for_good(names), "refused": False})


def _run_cell(message: dict[str, Any]) -> None:
    global _STUDENT_CODE_RAN
    _STUDENT_CODE_RAN = True
    code = message.get("code", "")
    result = _SHELL.run_cell(code if isinstance(code, str) else "", store_history=True)
    _flush()
    _emit({"op": "done", "cell": message.get("cell"), "status": "ok" if result.success else "error"})


def _call(message: dict[str, Any], blob: bytes, last: dict[str, Any]) -> None:
    """Call the student's function on the grader's arguments; send back its value, and the arguments as they are
    after the call, as plain data."""
    from vitcourse.inside import wire

    global _STUDENT_CODE_RAN
    _STUDENT_CODE_RAN = True
    last.clear()
    reply = {"id": message.get("id")}
    function = _SHELL.user_ns.get(message.get("name"))
    if not callable(function):
        _emit({**reply, "op": "missing", "defined": function is not None})
        return
    try:
        arguments = wire.decode(message["args"], blob)
        keywords = dict(arguments[1])
        arguments = list(arguments[0])
    except (wire.WireError, KeyError, TypeError, ValueError):
        _emit({**reply, "op": "refused"})
        return
    try:
        value = function(*arguments, **keywords)
    except BaseException as error:  # noqa: BLE001 - whatever the student's code raised, by type name only
        _flush()
        _emit({**reply, "op": "raised", "ename": type(error).__name__, "found": _closed_route(error)})
        return
    _flush()
    last.update(arguments=arguments, value=value)
    try:
        tree, data = wire.encode((value, tuple(arguments), tuple(keywords.items())))  # changed by the call?
        if len(data) > wire.MAX_ARRAY_BYTES:
            raise wire.WireError(f"the value holds more than {wire.MAX_ARRAY_BYTES} bytes of arrays")
    except Exception as error:  # noqa: BLE001 - a value that cannot be sent is the student's problem
        _emit({**reply, "op": "unreadable", "type": type(value).__name__, "why": str(error)[:200], "found": []})
        return
    _emit({**reply, "op": "returned", "value": tree, "found": [], "blob": True}, data)


def _closed_route(error: BaseException) -> list[str]:
    """The route the error says was closed (what the student's code tried), as a list of at most one name."""
    from vitsteps.teach.checks import routes

    try:
        route = routes.closed_route(error)
    except Exception:  # noqa: BLE001 - an exception whose text cannot even be read names no route
        return []
    return [route[:200]] if route else []


def _backward(message: dict[str, Any], blob: bytes, last: dict[str, Any]) -> None:
    """Back-propagate sum(output * weight) and send the gradients of the requested arguments."""
    import torch

    from vitcourse.inside import wire

    reply = {"id": message.get("id")}
    if "value" not in last:
        _emit({**reply, "op": "refused"})
        return
    try:
        weights = wire.decode(message["weights"], blob)
        positions = [int(position) for position in message.get("positions", [])]
    except (wire.WireError, KeyError, TypeError, ValueError):
        _emit({**reply, "op": "refused"})
        return
    value = last["value"]
    outputs = list(value) if isinstance(value, (tuple, list)) else [value]

    def backward() -> tuple:
        total = None
        for output, weight in zip(outputs, weights, strict=False):
            if weight is None or not isinstance(output, torch.Tensor) or not output.requires_grad:
                continue
            term = (output * weight).sum()
            total = term if total is None else total + term
        if total is not None:
            total.backward()
        arguments = last["arguments"]
        return tuple(arguments[p].grad if 0 <= p < len(arguments) and isinstance(arguments[p], torch.Tensor)
                     else None for p in positions)

    try:
        grads = backward()
        tree, data = wire.encode(grads)
    except BaseException as error:  # noqa: BLE001 - the student's backward failed
        _flush()
        _emit({**reply, "op": "raised", "ename": type(error).__name__, "found": _closed_route(error)})
        return
    _flush()
    _emit({**reply, "op": "grads", "value": tree, "found": [], "blob": True}, data)


# ------------------------------------------------------------------------------------------ launch (root only)


def launch(spec: dict[str, Any]) -> None:
    """As root: make the read-only paths reachable for an unprivileged user, become that user, exec bwrap.

    Folders such as /root are closed to other users; in a mount namespace of its own, this process
    covers each closed folder with an empty tmpfs and binds back the paths the sandbox needs (opened
    before they were covered), so that bwrap, run as `nobody`, can bind them.
    """
    paths = [path for path in spec["readonly"] if os.path.exists(path)]
    closed: list[str] = []
    for path in paths:
        parts = path.strip("/").split("/")
        for depth in range(1, len(parts)):
            ancestor = "/" + "/".join(parts[:depth])
            if not os.stat(ancestor).st_mode & 0o001:
                if not any(ancestor == c or ancestor.startswith(c + "/") for c in closed):
                    closed.append(ancestor)
                break
    keep: dict[str, int] = {}
    if closed:
        _check(_libc.unshare(CLONE_NEWNS), "unshare")
        _mount(None, "/", None, MS_REC | MS_PRIVATE)
        keep = {path: os.open(path, os.O_PATH) for path in paths}  # opened in the new namespace, to bind from
        for folder in sorted(closed, key=len):
            _mount("tmpfs", folder, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m")
        for path, fd in keep.items():
            if any(path.startswith(folder + "/") for folder in closed):
                if os.path.isdir(f"/proc/self/fd/{fd}"):
                    os.makedirs(path, exist_ok=True)
                else:
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                    open(path, "a").close()
                _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
    for fd in keep.values():
        os.close(fd)
    os.setgroups([])
    os.setresgid(NOBODY, NOBODY, NOBODY)
    os.setresuid(NOBODY, NOBODY, NOBODY)
    _libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)
    os.execve(spec["argv"][0], spec["argv"], {})


def main(argv: list[str]) -> None:
    if len(argv) == 2 and argv[0] == "zygote":
        zygote(int(argv[1]))
    elif len(argv) == 2 and argv[0] == "launch":
        launch(json.loads(argv[1]))
    else:
        sys.exit("usage: python -m vitcourse.inside.runner zygote FD | launch JSON (started by the sandbox)")


if __name__ == "__main__":
    main(sys.argv[1:])
