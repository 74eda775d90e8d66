"""`make classroom`'s refusals, without a hub: each bad input gets a message that names it and the way out."""
from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest
from vitcourse.hub import classroom, exchange

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "01_patches_unfold.ipynb"


def test_a_port_in_use_is_refused_with_another_to_try(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert not classroom.port_free(port)
        with pytest.raises(classroom.ClassroomError, match=rf"port {port} on 127.0.0.1 is already in use.*PORT="):
            classroom.start([], students=1, port=port, state=tmp_path / "state", course_env=tmp_path)
    assert classroom.port_free(port)


@pytest.mark.parametrize("kwargs, words", [
    ({"port": 0}, "port must be a TCP port"),
    ({"port": "8000"}, "port must be a TCP port"),
    ({"course_id": "my course"}, "course_id must be a folder name"),
    ({"course_id": ""}, "course_id must be a folder name"),
    ({"students": -1}, "students must be a whole number"),
    ({"students": ["ann", "ann"]}, "appears twice"),
    ({"students": ["Ann"]}, "lower-case account name"),
    ({"instructor": "root;rm"}, "instructor must be a lower-case account name"),
    ({"students": ["teacher"], "instructor": "teacher"}, "also a student's name"),
])
def test_bad_settings_are_refused_by_name(tmp_path, kwargs, words):
    with pytest.raises(ValueError, match=words):
        classroom.start([], **{"state": tmp_path / "state", "course_env": tmp_path, **kwargs})


def test_a_notebook_that_is_not_there_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"no notebook at .*missing\.ipynb"):
        classroom.start([tmp_path / "missing.ipynb"], state=tmp_path / "state", course_env=tmp_path)


def test_a_course_environment_that_is_not_there_says_how_to_build_it(tmp_path):
    with pytest.raises(classroom.ClassroomError, match=r"make classroom-env"):
        classroom.start([NOTEBOOK], port=classroom.free_port(), state=tmp_path / "state",
                        course_env=tmp_path / "nothing")


def test_an_interpreter_in_a_private_folder_is_named(tmp_path):
    private = tmp_path / "private"
    env = private / "env"
    (env / "bin").mkdir(parents=True)
    (env / "bin" / "python").symlink_to(sys.executable)
    os.chmod(private, 0o700)
    found = classroom.shared_python_problems(env)
    assert "keeps other users from running" in " ".join(found) and f"{private} (mode 700)" in " ".join(found), found
    os.chmod(private, 0o755)
    assert f"{private} (mode" not in " ".join(classroom.shared_python_problems(env))
    assert "make classroom-env" in classroom.shared_python_problems(tmp_path / "none")[0]


def test_stopping_what_never_started_says_so(tmp_path, capsys):
    assert classroom.stop(tmp_path) == []
    assert "no classroom runs from" in capsys.readouterr().out
    with pytest.raises(classroom.ClassroomError, match="no classroom has been started"):
        classroom.load(tmp_path)


def test_the_exchange_missing_or_with_the_wrong_permissions_is_named_with_the_fix(tmp_path):
    root = tmp_path / "exchange"
    assert "does not exist" in exchange.problems(root)[0] and "chmod 1777" in exchange.problems(root)[0]
    root.write_text("")
    assert "is not a folder" in exchange.problems(root)[0]
    root.unlink()
    exchange.prepare(root)
    assert (root.stat().st_mode & 0o7777) == 0o1777 and exchange.problems(root) == []
    os.chmod(root, 0o755)
    (found,) = exchange.problems(root)
    assert "mode 755" in found and "students cannot submit" in found and f"chmod 1777 {root}" in found
    with pytest.raises(ValueError, match="mode 755"):
        exchange.prepare(root)
    os.chmod(root, 0o1777)
    inbound = root / "demo" / "inbound"
    inbound.mkdir(parents=True)
    os.chmod(root / "demo", 0o755)
    os.chmod(inbound, 0o777)  # readable: students could list each other's submissions
    (found,) = exchange.problems(root, "demo")
    assert "inbound has mode 777, nbgrader's is 2733" in found
    with pytest.raises(ValueError, match="course_id must be a folder name"):
        exchange.problems(root, "a/b")
    with pytest.raises(TypeError, match="root must be a path"):
        exchange.problems(3)


def test_check_exchange_on_the_command_line(tmp_path, capsys):
    assert classroom.main(["check-exchange", "--exchange", str(tmp_path / "none")]) == 1
    assert "does not exist" in capsys.readouterr().err
    exchange.prepare(tmp_path / "ok")
    assert classroom.main(["check-exchange", "--exchange", str(tmp_path / "ok")]) == 0
    assert "has nbgrader's permissions" in capsys.readouterr().out


def test_passwords_are_checked_against_their_hash():
    from vitcourse.hub.passwords import hash_password, verify

    entry = hash_password("right horse")
    assert verify("right horse", entry) and not verify("wrong horse", entry) and not verify("", entry)
    assert entry["hash"] != hash_password("right horse")["hash"]  # salted
    with pytest.raises(ValueError, match="password must be a non-empty string"):
        hash_password("")


def test_a_grader_without_its_sandbox_says_where_to_grade_instead(tmp_path, monkeypatch, capsys):
    from vitcourse import grading
    from vitcourse.confine import sandbox

    def refuse() -> str:
        raise sandbox.SandboxUnavailable("bubblewrap is installed but cannot create a sandbox here (no userns)")

    monkeypatch.setattr(sandbox, "find_bwrap", refuse)
    assert grading.main(["autograde", "--course", str(tmp_path)]) == 2
    said = capsys.readouterr().err
    assert "autograde refused: bubblewrap is installed but cannot create a sandbox here" in said
    assert "user namespaces" in said and "copy the course folder" in said and "nbgrader release_feedback" in said
