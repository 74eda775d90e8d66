"""The course hub on one machine: JupyterHub, an instructor, N students, nbgrader's exchange, the course released.

    python -m vitcourse.hub.classroom start [--students 3] [--port 8000] [--course-id vitsteps] [--detach] NOTEBOOK...
    python -m vitcourse.hub.classroom stop
    python -m vitcourse.hub.classroom check-exchange [--exchange PATH] [--course-id ID]

`make classroom` and `make classroom-stop` run these. The hub and its proxy (configurable-http-proxy) listen on
127.0.0.1 only. Each user's JupyterLab runs from the course environment (`COURSE_ENV`, /opt/vitsteps-course by
default: a virtualenv of the system's Python, readable by every user, with vitsteps, JupyterLab, nbgrader's
extensions and, readable by the instructor's group only, the course tooling).

Run as root, every account is a system user (`useradd`, home folder mode 0700) whose server JupyterHub's
LocalProcessSpawner starts with that user's uid. Run as another user, every account's server runs as that one
user: a single-user demo, and `start` says which isolation is then missing.

Logins use one password per account, made at start and printed (`vitcourse.hub.auth`): a local reference, not
a campus login. State (the hub's database, tokens, passwords, log) lives in `--state`, readable by the caller only.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from pathlib import Path

from . import exchange as nbexchange
from .passwords import hash_password

CONFIG = Path(__file__).with_name("jupyterhub_config.py")
DEFAULT_ENV = Path("/opt/vitsteps-course")
ACCOUNT_MARK = "vitsteps classroom"  # the GECOS field of accounts made here; others are never touched
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,30}$")
# nbgrader's extensions a student's JupyterLab does not show: the instructor's formgrader, course list, authoring
STUDENT_OFF_LAB = ["@jupyter/nbgrader:formgrader", "@jupyter/nbgrader:course-list",
                   "@jupyter/nbgrader:create-assignment"]
STUDENT_OFF_SERVER = ["nbgrader.server_extensions.formgrader", "nbgrader.server_extensions.course_list"]


class ClassroomError(RuntimeError):
    """The classroom cannot start or stop as asked; the message says why and what to do."""


@dataclasses.dataclass(frozen=True)
class Classroom:
    state: Path
    course_env: Path
    exchange: Path
    course_id: str
    instructor: str
    students: tuple[str, ...]
    port: int
    real_users: bool

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def accounts(self) -> tuple[str, ...]:
        return (self.instructor, *self.students)

    def home(self, user: str) -> Path:
        if self.real_users:
            return Path(pwd.getpwnam(user).pw_dir)
        return self.state / "homes" / user

    def course(self) -> Path:
        """The instructor's course folder (nbgrader's CourseDirectory.root)."""
        return self.home(self.instructor) / "course"


def _check_name(name: object, what: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"{what} must be a lower-case account name (letters, digits, _ and -, starting with a "
                         f"letter, at most 31 characters), not {name!r}.")
    return name


def student_names(count: int, prefix: str = "student") -> tuple[str, ...]:
    """`student1` ... `studentN`."""
    if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= 500:
        raise ValueError(f"students must be a whole number from 0 to 500, not {count!r}.")
    return tuple(_check_name(f"{prefix}{index}", "a student's name") for index in range(1, count + 1))


def port_free(port: int) -> bool:
    """Whether nothing listens on 127.0.0.1:port (and this process may listen there)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def shared_python_problems(course_env: Path) -> list[str]:
    """Why the course environment's Python cannot run for other users (e.g. it lives in root's home); [] if it can.

    Every folder above the interpreter, its standard library and the environment's packages must let others in
    (the x bit for "other"), and the interpreter must be readable and executable by them.
    """
    course_env = Path(course_env)
    python = course_env / "bin" / "python"
    if not python.exists():
        return [f"no course environment at {course_env}: run `make classroom-env` (or pass COURSE_ENV=...)."]
    probe = subprocess.run([str(python), "-c", "import sys, sysconfig; print(sys.base_prefix); "
                            "print(sysconfig.get_paths()['stdlib']); print(sysconfig.get_paths()['purelib'])"],
                           capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        return [f"{python} does not run: {probe.stderr.strip()[:300]}"]
    needed = [python, python.resolve(), *(Path(line) for line in probe.stdout.split())]
    found = []
    for path in needed:
        for folder in [path, *path.parents]:
            if not folder.exists():
                continue
            mode = folder.stat().st_mode
            if (stat.S_ISDIR(mode) and not mode & stat.S_IXOTH) or (stat.S_ISREG(mode) and not mode & stat.S_IROTH):
                found.append(f"{folder} (mode {stat.S_IMODE(mode):o}) keeps other users from running {python}: "
                             f"build the course environment from a Python every user can run, e.g. "
                             f"`make classroom-env CLASSROOM_PYTHON=/usr/bin/python3`.")
                break
    return list(dict.fromkeys(found))


# ------------------------------------------------------------------------------------------ accounts


def _ensure_user(name: str) -> Path:
    """A system user made for the classroom (home mode 0700); refuses an account someone else made."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", "--comment", ACCOUNT_MARK, name],
                       check=True, capture_output=True, text=True)
        entry = pwd.getpwnam(name)
    else:
        if entry.pw_gecos != ACCOUNT_MARK:
            raise ClassroomError(f"the system already has a user {name!r} that the classroom did not make "
                                 f"(its comment is {entry.pw_gecos!r}); choose other names "
                                 f"(INSTRUCTOR=..., STUDENT_PREFIX=...).")
    home = Path(entry.pw_dir)
    home.mkdir(mode=0o700, exist_ok=True)
    os.chown(home, entry.pw_uid, entry.pw_gid)
    os.chmod(home, 0o700)  # useradd's default (HOME_MODE/UMASK in login.defs) may let others read it
    return home


def remove_accounts(names: Iterable[str]) -> list[str]:
    """Delete classroom-made system users and their homes (as root); others are left alone. Returns those removed."""
    removed = []
    for name in names:
        _check_name(name, "an account name")
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        if entry.pw_gecos != ACCOUNT_MARK:
            raise ClassroomError(f"{name!r} is not an account the classroom made (comment {entry.pw_gecos!r}); "
                                 f"it is left alone.")
        subprocess.run(["userdel", "--remove", name], check=True, capture_output=True, text=True)
        removed.append(name)
    return removed


def _own(path: Path, user: str | None) -> None:
    """Give `path` (recursively) to `user` (as root), else leave it."""
    if user is None:
        return
    entry = pwd.getpwnam(user)
    for folder, dirs, files in os.walk(path):
        os.chown(folder, entry.pw_uid, entry.pw_gid)
        for name in dirs + files:
            os.chown(os.path.join(folder, name), entry.pw_uid, entry.pw_gid, follow_symlinks=False)


def as_user(room: Classroom, user: str, argv: Sequence[str], cwd: Path | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command as one of the classroom's users (their uid as root), in the course environment."""
    home = room.home(user)
    env = {"HOME": str(home), "USER": user, "LOGNAME": user, "LANG": "C.UTF-8",
           "PATH": f"{room.course_env / 'bin'}:/usr/local/bin:/usr/bin:/bin"}
    kwargs: dict = {}
    if room.real_users:
        entry = pwd.getpwnam(user)
        kwargs = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": [], "umask": 0o022}
    result = subprocess.run(list(argv), cwd=str(cwd or home), env=env, capture_output=True, text=True, **kwargs)
    if check and result.returncode != 0:
        raise ClassroomError(f"as {user}: {' '.join(map(str, argv))} failed (exit {result.returncode}):\n"
                             f"{(result.stdout + result.stderr).strip()[-3000:]}")
    return result


def _write(path: Path, text: str, owner: str | None, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    os.chmod(path, mode)
    if owner is not None:
        entry = pwd.getpwnam(owner)
        for item in [path, *[p for p in path.parents if p != Path(pwd.getpwnam(owner).pw_dir)
                             and str(p).startswith(entry.pw_dir + "/")]]:
            os.chown(item, entry.pw_uid, entry.pw_gid)


def _user_config(room: Classroom, user: str) -> None:
    """Each account's nbgrader settings (the exchange and the course); the instructor's formgrader back on."""
    owner = user if room.real_users else None
    jupyter = room.home(user) / ".jupyter"
    lines = [f"c.Exchange.root = {str(room.exchange)!r}", f"c.CourseDirectory.course_id = {room.course_id!r}"]
    if user == room.instructor:
        lines.append(f"c.CourseDirectory.root = {str(room.course())!r}")
        _write(jupyter / "labconfig" / "page_config.json",
               json.dumps({"disabledExtensions": {name: False for name in STUDENT_OFF_LAB}}, indent=1), owner)
        _write(jupyter / "jupyter_server_config.json", json.dumps(
            {"ServerApp": {"jpserver_extensions": {name: True for name in STUDENT_OFF_SERVER}}}, indent=1), owner)
    _write(jupyter / "nbgrader_config.py", "c = get_config()  # noqa: F821\n" + "\n".join(lines) + "\n", owner)


def environment_defaults(course_env: Path) -> None:
    """In the course environment: nbgrader's instructor extensions off for everyone (the instructor's own config
    turns them back on); the course tooling (`instructor/`) readable by its group only."""
    etc = Path(course_env) / "etc" / "jupyter"
    _write(etc / "labconfig" / "page_config.json",
           json.dumps({"disabledExtensions": {name: True for name in STUDENT_OFF_LAB}}, indent=1), None)
    _write(etc / "jupyter_server_config.d" / "zz_vitsteps_classroom.json", json.dumps(
        {"ServerApp": {"jpserver_extensions": {name: False for name in STUDENT_OFF_SERVER}}}, indent=1), None)


# ------------------------------------------------------------------------------------------ start and stop


def _state_file(state: Path) -> Path:
    return Path(state) / "classroom.json"


def load(state: Path) -> Classroom:
    """The classroom started with this state folder."""
    path = _state_file(state)
    if not path.is_file():
        raise ClassroomError(f"no classroom has been started with the state folder {state} ({path} is missing).")
    data = json.loads(path.read_text(encoding="utf-8"))
    return Classroom(state=Path(data["state"]), course_env=Path(data["course_env"]), exchange=Path(data["exchange"]),
                     course_id=data["course_id"], instructor=data["instructor"], students=tuple(data["students"]),
                     port=data["port"], real_users=data["real_users"])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is gone for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][:1] != "Z"
    except OSError:
        return False


def _pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def running(state: Path) -> int | None:
    """The PID of this state folder's hub if it runs."""
    pid = _pid(Path(state) / "hub.pid")
    return pid if pid is not None and _alive(pid) else None


def leftovers(state: Path) -> list[int]:
    """PIDs of processes this classroom started that still run: its proxy and any user's server or kernel."""
    state = Path(state)
    found = []
    proxy = _pid(state / "proxy.pid")
    if proxy is not None and _alive(proxy):
        found.append(proxy)
    mark = f"VITCOURSE_CLASSROOM_OF={state}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if mark in environ.split(b"\0") and _alive(int(entry.name)):
            found.append(int(entry.name))
    return sorted(set(found))


def start(notebooks: Iterable[Path], students: int | Sequence[str] = 3, port: int = 8000, course_id: str = "vitsteps",
          state: Path | None = None, course_env: Path = DEFAULT_ENV, exchange: Path | None = None,
          instructor: str = "instructor", student_prefix: str = "student", quiet: bool = False) -> Classroom:
    """Start the course hub in the background and return once it answers; see the module's docstring.

    Args:
        notebooks: the solution notebooks released as assignments (none: the course is left as it is).
        students: how many students (`student1`...), or their account names.

    Raises:
        ValueError: a bad argument (names the parameter).
        ClassroomError: the port is taken, a classroom already runs, the environment or the exchange is unusable.
    """
    real_users = os.geteuid() == 0
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"port must be a TCP port number (1-65535), not {port!r}.")
    if not isinstance(course_id, str) or not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]*$", course_id):
        raise ValueError(f"course_id must be a folder name of letters, digits, . _ -, not {course_id!r}.")
    if isinstance(students, (list, tuple)):
        names = tuple(_check_name(name, "a student's name") for name in students)
        if len(set(names)) != len(names):
            raise ValueError(f"students: a name appears twice in {list(names)}.")
    else:
        names = student_names(students, _check_name(student_prefix, "student_prefix"))
    _check_name(instructor, "instructor")
    if instructor in names:
        raise ValueError(f"instructor {instructor!r} is also a student's name; choose another.")
    notebooks = [Path(path) for path in notebooks]
    for path in notebooks:
        if path.suffix != ".ipynb" or not path.is_file():
            raise ValueError(f"notebooks: no notebook at {path}; pass .ipynb files such as "
                             f"notebooks/01_patches_unfold.ipynb.")
    if state is None:
        state = Path("/srv/vitsteps-classroom") if real_users else Path.cwd() / "classroom"
    state = Path(state).absolute()
    exchange = Path(exchange).absolute() if exchange else (nbexchange.DEFAULT_ROOT if real_users
                                                          else state / "exchange")
    course_env = Path(course_env).absolute()
    pid = running(state)
    if pid is not None:
        raise ClassroomError(f"a classroom already runs from {state} (hub PID {pid}): `make classroom-stop` first.")
    if not port_free(port):
        raise ClassroomError(f"port {port} on 127.0.0.1 is already in use (another hub or program listens there): "
                             f"pick another with `make classroom PORT={port + 10}`, or stop what uses it.")
    proxy = shutil.which("configurable-http-proxy")
    if proxy is None:
        raise ClassroomError("configurable-http-proxy (JupyterHub's proxy) is not installed: "
                             "`npm install -g configurable-http-proxy` (needs nodejs and npm: "
                             "`apt-get install nodejs npm`).")
    if not (course_env / "bin" / "jupyterhub-singleuser").is_file():
        raise ClassroomError(f"no course environment at {course_env} (bin/jupyterhub-singleuser is missing): "
                             f"`make classroom-env COURSE_ENV={course_env}`.")
    if real_users:
        problems = shared_python_problems(course_env)
        if problems:
            raise ClassroomError(" ".join(problems))
    room = Classroom(state, course_env, exchange, course_id, instructor, names, port, real_users)
    say = (lambda *args: None) if quiet else print
    if not real_users:
        say("NOT ROOT: a single-user demo. Every account's JupyterLab runs as "
            f"{pwd.getpwuid(os.geteuid()).pw_name}, so students can read each other's work, the instructor's "
            "course folder and the gradebook; no system users are made and homes are plain folders under "
            f"{state / 'homes'}. Run as root for real accounts (useradd, homes 0700) and LocalProcessSpawner.")
    state.mkdir(parents=True, exist_ok=True)
    os.chmod(state, 0o700)
    for stale in ("hub.pid", "proxy.pid"):
        (state / stale).unlink(missing_ok=True)

    # accounts and their passwords (printed once, kept hashed for the hub)
    passwords = {}
    for user in room.accounts:
        if real_users:
            _ensure_user(user)
        else:
            room.home(user).mkdir(parents=True, exist_ok=True)
        passwords[user] = secrets.token_urlsafe(9)
    _write(state / "passwords.json", json.dumps({u: hash_password(p) for u, p in passwords.items()}), None, 0o600)
    _write(state / "accounts.txt", "".join(f"{u} {p}\n" for u, p in passwords.items()), None, 0o600)
    for name in ("proxy_token", "admin_token"):
        if not (state / name).is_file():
            _write(state / name, secrets.token_hex(32) + "\n", None, 0o600)

    # nbgrader's exchange, the course environment's defaults, each account's nbgrader settings
    if real_users:
        try:
            nbexchange.prepare(exchange)
        except ValueError as error:
            raise ClassroomError(str(error)) from error
    else:
        exchange.mkdir(parents=True, exist_ok=True)
        os.chmod(exchange, nbexchange.ROOT_MODE)
    if os.access(course_env / "etc", os.W_OK) or not (course_env / "etc").exists():
        environment_defaults(course_env)
    tools = course_env / "instructor"
    if real_users and tools.is_dir():
        group = pwd.getpwnam(instructor).pw_gid
        for folder, _dirs, files in os.walk(tools):
            os.chown(folder, 0, group)
            for name in files:
                os.chown(os.path.join(folder, name), 0, group)
        os.chmod(tools, 0o750)
    for user in room.accounts:
        _user_config(room, user)

    # the course: source and student versions (vitcourse), the course id, the release into the exchange
    if notebooks:
        _release(room, notebooks, say)

    # the hub
    settings = {"state": str(state), "course_env": str(course_env), "exchange": str(exchange),
                "course_id": course_id, "instructor": instructor, "students": list(names), "port": port,
                "hub_port": free_port(), "proxy_api_port": free_port(), "proxy": proxy, "real_users": real_users}
    _write(_state_file(state), json.dumps(settings, indent=1), None, 0o600)
    log = open(state / "hub.log", "ab")  # noqa: SIM115 - the hub keeps it open
    package_root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "VITCOURSE_CLASSROOM": str(state),
           "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH", "")]))}
    hub = subprocess.Popen([sys.executable, "-m", "jupyterhub", "-f", str(CONFIG)], cwd=state, env=env,
                           stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(f"{room.url}/hub/api/", timeout=5) as answer:
                if answer.status == 200:
                    break
        except (urllib.error.URLError, OSError):
            pass
        if hub.poll() is not None or time.monotonic() > deadline:
            hub.kill()
            tail = (state / "hub.log").read_text(errors="replace")[-2000:]
            raise ClassroomError(f"JupyterHub did not start (see {state / 'hub.log'}):\n{tail}")
        time.sleep(0.3)
    say(f"\nThe course hub runs at {room.url}  (course {course_id!r}, exchange {exchange})")
    say("Accounts (passwords made now, also in " f"{state / 'accounts.txt'}):")
    for user in room.accounts:
        say(f"  {user:<14} {passwords[user]}{'   (instructor: formgrader, vitcourse)' if user == instructor else ''}")
    say("Stop it with `make classroom-stop` (or Ctrl-C when it runs in the foreground).")
    return room


def _release(room: Classroom, notebooks: list[Path], say) -> None:
    owner = room.instructor if room.real_users else None
    home = room.home(room.instructor)
    copies = home / "notebooks"
    copies.mkdir(exist_ok=True)
    for path in notebooks:
        shutil.copyfile(path, copies / path.name)
    _own(copies, owner)
    python = str(room.course_env / "bin" / "python")
    course = room.course()
    as_user(room, room.instructor, [python, "-m", "vitcourse.grading", "student", "--course", str(course),
                                    *(str(copies / p.name) for p in notebooks)])
    config = course / "nbgrader_config.py"
    text = config.read_text(encoding="utf-8")
    text, count = re.subn(r"^c\.CourseDirectory\.course_id = .*$", f"c.CourseDirectory.course_id = {room.course_id!r}",
                          text, flags=re.M)
    if count == 0:
        text += f"\nc.CourseDirectory.course_id = {room.course_id!r}\n"
    config.write_text(text, encoding="utf-8")
    if owner:
        _own(course, owner)
    for path in notebooks:
        as_user(room, room.instructor, [str(room.course_env / "bin" / "nbgrader"), "release_assignment",
                                        path.stem, "--force"], cwd=course)
        say(f"released {path.stem} into {room.exchange / room.course_id / 'outbound' / path.stem}")


def stop(state: Path, quiet: bool = False, timeout: float = 30.0) -> list[int]:
    """Stop the hub (it stops every server and the proxy), then end by PID anything of it still running.

    Returns:
        The PIDs that had to be killed after the hub's own shutdown (normally none).
    """
    say = (lambda *args: None) if quiet else print
    state = Path(state).absolute()
    pid = running(state)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    killed = []
    deadline = time.monotonic() + 10
    while True:
        rest = leftovers(state)
        if not rest or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    for left in rest:
        try:
            os.kill(left, signal.SIGKILL)
            killed.append(left)
        except ProcessLookupError:
            pass
    if pid is None and not killed:
        say(f"no classroom runs from {state}.")
    else:
        say(f"the classroom at {state} is stopped" + (f" (killed leftover PIDs {killed})" if killed else "") + ".")
    return killed


# ------------------------------------------------------------------------------------------ command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vitcourse.hub.classroom", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    begin = commands.add_parser("start", help="start the course hub")
    begin.add_argument("--students", type=int, default=3)
    begin.add_argument("--student-prefix", default="student")
    begin.add_argument("--instructor", default="instructor")
    begin.add_argument("--port", type=int, default=8000)
    begin.add_argument("--course-id", default="vitsteps")
    begin.add_argument("--course-env", type=Path, default=DEFAULT_ENV)
    begin.add_argument("--exchange", type=Path, default=None, help=f"default: {nbexchange.DEFAULT_ROOT} as root")
    begin.add_argument("--state", type=Path, default=None)
    begin.add_argument("--detach", action="store_true", help="return once the hub answers (stop: `stop`)")
    begin.add_argument("notebooks", nargs="*", type=Path)
    end = commands.add_parser("stop", help="stop the course hub and everything it started")
    end.add_argument("--state", type=Path, default=None)
    check = commands.add_parser("check-exchange", help="say what is wrong with nbgrader's exchange")
    check.add_argument("--exchange", type=Path, default=nbexchange.DEFAULT_ROOT)
    check.add_argument("--course-id", default=None)
    args = parser.parse_args(argv)
    default_state = Path("/srv/vitsteps-classroom") if os.geteuid() == 0 else Path.cwd() / "classroom"
    if args.command == "check-exchange":
        try:
            found = nbexchange.problems(args.exchange, args.course_id)
        except (TypeError, ValueError) as error:
            parser.error(str(error))
        for line in found:
            print(line, file=sys.stderr)
        if not found:
            print(f"nbgrader's exchange {args.exchange} has nbgrader's permissions.")
        return 1 if found else 0
    if args.command == "stop":
        stop(args.state or default_state)
        return 0
    try:
        room = start(args.notebooks, args.students, args.port, args.course_id, args.state or default_state,
                     args.course_env, args.exchange, args.instructor, args.student_prefix)
    except ValueError as error:
        parser.error(str(error))
    except ClassroomError as error:
        print(f"make classroom: {error}", file=sys.stderr)
        return 1
    if args.detach:
        return 0
    try:
        while running(room.state) is not None:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    stop(room.state)
    return 0


if __name__ == "__main__":
    sys.exit(main())
