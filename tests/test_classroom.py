"""The class, live: one course hub (JupyterHub + nbgrader's exchange) for every check here, as real system users.

One hub is started for the module (`vitcourse.hub.classroom.start`, as `make classroom` does) with an instructor
and three students, on a free port of 127.0.0.1, nbgrader's exchange in a fresh folder. Then, in order:

* the accounts: homes only their owner can read; formgrader in the instructor's server only;
* the flow: student A (browser, `test_browser_flow`) or the Assignments tab's own endpoints fetch 01, A writes the
  right answer, B a wrong one, C nothing; both submit; the instructor collects (`nbgrader collect`), grades with
  the sandboxed grader (`python -m vitcourse.grading autograde`), sees the scores in nbgrader's gradebook
  (`nbgrader export`, what formgrader shows); releases feedback; A and B fetch their own;
* isolation: student A's token and A's own kernel cannot reach B's workspace or submission, the instructor's
  source notebooks (the hidden tests), the gradebook, the course tooling;
* stopping leaves no process behind.

It needs root (system users), `configurable-http-proxy`, JupyterHub in this environment and the course
environment (`make classroom-env`, `$VITSTEPS_COURSE_ENV`, default /opt/vitsteps-course). Elsewhere it is skipped with
the reason, unless `VITSTEPS_REQUIRE_HUB=1` (CI) makes that a failure. About a minute on 2 cores.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import pwd
import shutil
import stat
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "01_patches_unfold.ipynb"
ASSIGNMENT = NOTEBOOK.stem
COURSE_ENV = Path(os.environ.get("VITSTEPS_COURSE_ENV", "/opt/vitsteps-course"))
REQUIRE = os.environ.get("VITSTEPS_REQUIRE_HUB") == "1"
COURSE_ID = "hubtest"
INSTRUCTOR, STUDENTS = "vsteacher", ("vsstudent1", "vsstudent2", "vsstudent3")
A, B, C = STUDENTS

pytestmark = [pytest.mark.slow]


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "the course hub's tests need root (they make system users); run them as root (CI does)"
    if shutil.which("configurable-http-proxy") is None:
        return "configurable-http-proxy is not installed (npm install -g configurable-http-proxy)"
    try:
        import jupyterhub  # noqa: F401
    except ImportError:
        return "JupyterHub is not installed here (pip install -e './instructor[hub]')"
    if not (COURSE_ENV / "bin" / "jupyterhub-singleuser").is_file():
        return f"no course environment at {COURSE_ENV} (make classroom-env)"
    if shutil.which("bwrap") is None:
        return "bubblewrap is missing (the grader's sandbox)"
    return None


@pytest.fixture(scope="module")
def room():
    problem = _missing()
    if problem:
        if REQUIRE:
            pytest.fail(f"VITSTEPS_REQUIRE_HUB=1 but {problem}")
        pytest.skip(problem)
    from vitcourse.hub import classroom

    classroom.remove_accounts([INSTRUCTOR, *STUDENTS])  # a previous run's, if any: every run starts fresh
    base = Path(tempfile.mkdtemp(prefix="vitsteps-hub-", dir="/tmp"))
    os.chmod(base, 0o755)  # the exchange below it must be reachable by every user
    started = time.monotonic()
    hub = classroom.start([NOTEBOOK], students=list(STUDENTS), port=classroom.free_port(), course_id=COURSE_ID,
                          state=base / "state", course_env=COURSE_ENV, exchange=base / "exchange",
                          instructor=INSTRUCTOR, quiet=True)
    print(f"\nthe course hub started in {time.monotonic() - started:.1f} s")
    yield hub
    killed = classroom.stop(hub.state, quiet=True)
    assert killed == [], f"processes left after the hub's own shutdown: {killed}"
    assert classroom.leftovers(hub.state) == []
    shutil.rmtree(base, ignore_errors=True)
    classroom.remove_accounts([INSTRUCTOR, *STUDENTS])




def _grade_id(cell) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def _answers(wrong: bool) -> dict[str, str]:
    """The source's solutions without their markers, or answers of the right shape with wrong values."""
    source = nbformat.read(NOTEBOOK, as_version=4)
    answers = {}
    for cell in source.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("solution") and cell.cell_type == "code":
            text = "\n".join(line for line in cell.source.splitlines() if "### " not in line)
            if wrong:  # the same function, every value off by one
                text = text.replace("return ", "return 1 + ")
            answers[meta["grade_id"]] = text
    return answers


def _write_answers(room, user: str, token: str, answers: dict[str, str]) -> None:
    from vitcourse.hub import rest

    path = f"{ASSIGNMENT}/{NOTEBOOK.name}"
    model = rest.read_file(room, user, token, path)
    notebook = model["content"]
    for cell in notebook["cells"]:
        if _grade_id(cell) in answers:
            cell["source"] = answers[_grade_id(cell)]
    rest.write_notebook(room, user, token, path, notebook)


def _assignments(room, user: str, token: str, action: str | None = None) -> list[dict]:
    """The Assignments tab's own endpoints (nbgrader's assignment_list server extension)."""
    from vitcourse.hub import rest

    if action is None:
        return rest.request(room, "GET", f"/user/{user}/assignments?course_id={COURSE_ID}", token)["value"]
    answer = rest.request(room, "POST", f"/user/{user}/assignments/{action}", token,
                          {"assignment_id": ASSIGNMENT, "course_id": COURSE_ID})
    assert answer.get("success", True), f"{action} for {user} failed: {answer}"
    return answer.get("value", [])


def _instructor(room, *argv: str) -> str:
    from vitcourse.hub import classroom

    done = classroom.as_user(room, INSTRUCTOR, [str(a) for a in argv], cwd=room.course())
    return done.stdout + done.stderr


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
TIMEOUT_MS = 120_000


def _no_browser() -> str | None:
    if not CHROMIUM.is_file():
        return f"{CHROMIUM} is missing (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is missing (pip install -e '.[dev]')"
    return None


class _Tab:
    """One student's JupyterLab in Chromium, on nbgrader's Assignments tab (Nbgrader > Assignment List)."""

    def __init__(self, browser, room, user: str, password: str) -> None:
        self.user, self.page = user, browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
        self.page.set_default_timeout(TIMEOUT_MS)
        self.page.goto(f"{room.url}/hub/login")
        self.page.fill("#username_input", user)
        self.page.fill("#password_input", password)
        self.page.click("#login_submit")
        self.page.wait_for_url(f"**/user/{user}/lab**")
        self.page.locator(".lm-MenuBar-itemLabel", has_text="Nbgrader").click()
        menu = self.page.locator(".lm-Menu-itemLabel").all_inner_texts()
        assert "Formgrader" not in menu and "Course List" not in menu, f"{user} sees the instructor's {menu}"
        self.page.locator(".lm-Menu-itemLabel", has_text="Assignment List").click()

    def press(self, section: str, button: str, then: str) -> None:
        """Press `button` on the assignment's row of `section`, wait for `then` (a row's text) to show."""
        row = self.page.locator(f"#{section} .list_item", has_text=ASSIGNMENT).first
        row.get_by_role("button", name=button).click()
        self.page.locator(then).first.wait_for()

    def fetch(self) -> None:
        self.press("released_assignments_list", "Fetch", "#fetched_assignments_list .list_item >> text=Submit")

    def submit(self) -> None:
        self.press("fetched_assignments_list", "Submit", "#submitted_assignments_list .list_item >> text=UTC")

    def feedback(self) -> str:
        """Fetch the feedback, open it (the tab's link shows its folder; JupyterLab's HTML viewer shows the page)
        and return the text it shows."""
        self.press("submitted_assignments_list", "Fetch Feedback", "#submitted_assignments_list >> text=view feedback")
        self.page.locator("#submitted_assignments_list >> text=view feedback").first.click()
        self.page.locator(".jp-DirListing-item", has_text=f"{NOTEBOOK.stem}.html").dblclick()
        body = self.page.frame_locator("#jp-main-dock-panel iframe").first.locator("body")
        body.get_by_text("points").first.wait_for()
        return body.inner_text()


@pytest.fixture(scope="module")
def flow(room):
    """The whole flow once; the students' steps in Chromium when it is there (else the Assignments tab's endpoints)."""
    from vitcourse.hub import rest

    timings, out = {}, {"tokens": {}, "browser": _no_browser() is None, "shown": {}}
    started = time.monotonic()
    rest.start_servers(room, [INSTRUCTOR, *STUDENTS])
    for user in (INSTRUCTOR, *STUDENTS):
        out["tokens"][user] = rest.user_token(room, user)
    timings["servers"] = time.monotonic() - started
    tokens = out["tokens"]
    passwords = dict(line.split() for line in (room.state / "accounts.txt").read_text().splitlines())
    answers = {A: _answers(wrong=False), B: _answers(wrong=True)}
    with contextlib.ExitStack() as stack:
        tabs = {}
        if out["browser"]:
            from playwright.sync_api import sync_playwright

            playwright = stack.enter_context(sync_playwright())
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            stack.callback(browser.close)
            tabs = {user: _Tab(browser, room, user, passwords[user]) for user in (A, B)}
        mark = time.monotonic()
        for user in (A, B):
            tabs[user].fetch() if tabs else _assignments(room, user, tokens[user], "fetch")
            _write_answers(room, user, tokens[user], answers[user])
            tabs[user].submit() if tabs else _assignments(room, user, tokens[user], "submit")
        timings["students"] = time.monotonic() - mark
        mark = time.monotonic()
        env = room.course_env / "bin"
        out["collect"] = _instructor(room, env / "nbgrader", "collect", ASSIGNMENT, "--update")
        out["autograde"] = _instructor(room, env / "python", "-m", "vitcourse.grading", "autograde", "--course",
                                       room.course(), "--jobs", "2")
        _instructor(room, env / "nbgrader", "export")
        out["export"] = list(csv.DictReader(io.StringIO((room.course() / "nbgrader_grades.csv").read_text())))
        out["release_feedback"] = _instructor(room, env / "nbgrader", "release_feedback", ASSIGNMENT)
        out["grades"] = (room.course() / "grades.csv").read_text()
        timings["instructor"] = time.monotonic() - mark
        mark = time.monotonic()
        for user in (A, B):
            if tabs:
                out["shown"][user] = tabs[user].feedback()
            else:
                _assignments(room, user, tokens[user], "fetch_feedback")
        timings["feedback"] = time.monotonic() - mark
    out["timings"] = timings
    print("\nthe flow's phases: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
    return out


def _feedback_page(room, user: str, token: str) -> str:
    from vitcourse.hub import rest

    folder = rest.request(room, "GET", f"/user/{user}/api/contents/{ASSIGNMENT}/feedback", token)
    (stamp,) = [item["name"] for item in folder["content"]]
    return rest.read_file(room, user, token, f"{ASSIGNMENT}/feedback/{stamp}/{NOTEBOOK.stem}.html")["content"]


def _text(page: str) -> str:
    """A feedback page's visible text."""
    import html
    import re

    page = re.sub(r"<(style|script).*?</\1>", " ", page, flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page)))


def test_homes_are_their_owners_only(room):
    for user in (INSTRUCTOR, *STUDENTS):
        entry = pwd.getpwnam(user)
        home = Path(entry.pw_dir)
        assert home.stat().st_uid == entry.pw_uid
        assert stat.S_IMODE(home.stat().st_mode) == 0o700, f"{home} is readable by others"


def test_scores_reach_nbgrader_and_each_student_reads_their_own(room, flow):
    rows = {row["student_id"]: row for row in flow["export"]}
    assert float(rows[A]["score"]) == float(rows[A]["max_score"]) == 3.0, rows
    assert float(rows[B]["score"]) == 0.0, rows
    assert C not in rows or rows[C]["timestamp"] in ("", "None"), rows
    graded = {row["student"]: row for row in csv.DictReader(io.StringIO(flow["grades"]))}
    assert C not in graded
    assert graded[A]["points"] == "3" and graded[B]["points"] == "0", graded
    # the grader's reason, in the page the instructor sees (formgrader's feedback) and the one B fetched
    seen = (room.course() / "feedback" / B / ASSIGNMENT / f"{NOTEBOOK.stem}.html").read_text()
    page_a = _feedback_page(room, A, flow["tokens"][A])
    page_b = _feedback_page(room, B, flow["tokens"][B])
    assert "the values differ" in seen and "the values differ" in page_b
    assert "3 / 3 points" in _text(page_a) and A in _text(page_a) and B not in _text(page_a)
    assert "0 / 3 points" in _text(page_b) and B in _text(page_b) and A not in _text(page_b)
    assert "BEGIN HIDDEN TESTS" not in page_a + page_b and "seed=1" not in page_a + page_b


def _status(call) -> int:
    from vitcourse.hub import rest

    try:
        call()
    except rest.HubError as error:
        return error.status
    return 200


def test_formgrader_is_the_instructors_only(room, flow):
    from vitcourse.hub import rest

    tokens = flow["tokens"]
    assert _status(lambda: rest.request(room, "GET", f"/user/{INSTRUCTOR}/formgrader/api/assignments",
                                        tokens[INSTRUCTOR])) == 200
    assert _status(lambda: rest.request(room, "GET", f"/user/{A}/formgrader/api/assignments", tokens[A])) == 404
    lab = rest.request_text(room, f"/user/{A}/lab", tokens[A])
    assert '"@jupyter/nbgrader:formgrader": true' in lab.replace("'", '"') or "nbgrader:formgrader" in lab


def test_a_students_token_reaches_nothing_of_anyone_else(room, flow):
    from vitcourse.hub import rest

    token = flow["tokens"][A]
    refused = {
        "B's account": lambda: rest.request(room, "GET", f"/hub/api/users/{B}", token),
        "B's files": lambda: rest.request(room, "GET", f"/user/{B}/api/contents", token),
        "B's kernels": lambda: rest.request(room, "POST", f"/user/{B}/api/kernels", token, {"name": "python3"}),
        "a token for B": lambda: rest.request(room, "POST", f"/hub/api/users/{B}/tokens", token, {}),
        "the instructor's files": lambda: rest.request(room, "GET", f"/user/{INSTRUCTOR}/api/contents/course",
                                                       token),
        "the instructor's formgrader": lambda: rest.request(
            room, "GET", f"/user/{INSTRUCTOR}/formgrader/api/submissions/{ASSIGNMENT}", token),
        "the list of users": lambda: rest.request(room, "GET", "/hub/api/users", token),
    }
    statuses = {what: _status(call) for what, call in refused.items()}
    assert all(status in (302, 403, 404) for status in statuses.values()), statuses
    # and the same token does reach A's own files
    assert _status(lambda: rest.request(room, "GET", f"/user/{A}/api/contents/{ASSIGNMENT}", token)) == 200


PROBE = r"""
import os, json
tries = json.loads({tries!r})
result = {{}}
for what, (how, path) in tries.items():
    try:
        if how == "list":
            os.listdir(path)
        elif how == "import":
            __import__(path)
        else:
            with open(path, "rb") as handle:
                handle.read(1)
        result[what] = "read"
    except (PermissionError, ModuleNotFoundError) as error:
        result[what] = type(error).__name__
    except FileNotFoundError:
        result[what] = "missing"
print(json.dumps(result))
"""


def test_a_students_kernel_reads_nothing_of_anyone_else(room, flow):
    from vitcourse.hub import rest

    course = room.course()
    exchange = room.exchange / COURSE_ID
    (b_submission,) = (course / "submitted" / B / ASSIGNMENT).glob("*.ipynb")
    tries = {
        "B's workspace": ("list", str(Path(pwd.getpwnam(B).pw_dir))),
        "B's notebook": ("open", str(Path(pwd.getpwnam(B).pw_dir) / ASSIGNMENT / NOTEBOOK.name)),
        "B's submission, collected": ("open", str(b_submission)),
        "the submissions in the exchange": ("list", str(exchange / "inbound")),
        "the feedback in the exchange": ("list", str(exchange / "feedback")),
        "the source notebook (hidden tests)": ("open", str(course / "source" / ASSIGNMENT / NOTEBOOK.name)),
        "the gradebook": ("open", str(course / "gradebook.db")),
        "the grades": ("open", str(course / "grades.csv")),
        "the course tooling": ("list", str(room.course_env / "instructor")),
        "the course tooling, imported": ("import", "vitcourse"),
        "the hub's tokens": ("open", str(room.state / "admin_token")),
        # what A must reach, so that a refusal above is a refusal and not a broken probe
        "A's own notebook": ("open", str(Path(pwd.getpwnam(A).pw_dir) / ASSIGNMENT / NOTEBOOK.name)),
        "the released assignment": ("list", str(exchange / "outbound" / ASSIGNMENT)),
    }
    output = rest.run_code(room, A, flow["tokens"][A], PROBE.format(tries=json.dumps(tries)))
    assert output["error"] is None, output
    result = json.loads(output["stdout"])
    reachable = {"A's own notebook", "the released assignment"}
    assert {what for what, got in result.items() if got == "read"} == reachable, result
    assert all(result[what] in ("PermissionError", "ModuleNotFoundError") for what in result if what not in
               reachable), result


def test_browser_flow(room, flow):
    """A and B fetched, submitted and read their feedback in Chromium, on the Assignments tab."""
    if not flow["browser"]:
        if os.environ.get("VITSTEPS_REQUIRE_BROWSER") == "1":
            pytest.fail(f"VITSTEPS_REQUIRE_BROWSER=1 but {_no_browser()}")
        pytest.skip(_no_browser())
    shown_a, shown_b = flow["shown"][A], flow["shown"][B]
    assert "3 / 3 points" in shown_a and A in shown_a and B not in shown_a, shown_a[:1000]
    assert "0 / 3 points" in shown_b and "the values differ" in shown_b and A not in shown_b, shown_b[:1000]


def _post(room, user: str, token: str, action: str, assignment: str) -> dict:
    from vitcourse.hub import rest

    return rest.request(room, "POST", f"/user/{user}/assignments/{action}", token,
                        {"assignment_id": assignment, "course_id": COURSE_ID})


def test_bad_inputs_on_the_hub_get_clear_messages(room, flow):
    """After the flow: an unknown user, the wrong assignment, a broken exchange, a renamed and a broken notebook,
    a resubmission (the latest counts)."""
    from vitcourse.hub import classroom, rest

    tokens = flow["tokens"]
    # an unknown user: no token, no login
    assert _status(lambda: rest.request(room, "GET", "/hub/api/users/nobody-here", rest.admin_token(room))) == 404
    assert _status(lambda: rest.user_token(room, "nobody-here")) in (403, 404)
    login = urllib.request.Request(f"{room.url}/hub/login", method="POST",
                                   data=urllib.parse.urlencode({"username": "nobody-here", "password": "x"}).encode())
    with contextlib.suppress(urllib.error.HTTPError), urllib.request.urlopen(login) as answer:
        assert "Invalid username or password" in answer.read().decode()
    # an assignment that was never released
    answer = _post(room, C, tokens[C], "fetch", "99_no_such_assignment")
    assert not answer.get("success", True) or "99_no_such_assignment" not in json.dumps(answer), answer
    # the exchange with the wrong permissions: the submission fails with nbgrader's message, the check names it
    _assignments(room, C, tokens[C], "fetch")
    inbound = room.exchange / COURSE_ID / "inbound"
    os.chmod(inbound, 0o2755)
    try:
        answer = _post(room, C, tokens[C], "submit", ASSIGNMENT)
        assert answer.get("success") is False and "write permissions" in answer["value"], answer
        (found,) = classroom.nbexchange.problems(room.exchange, COURSE_ID)
        assert "inbound has mode 2755, nbgrader's is 2733" in found
    finally:
        os.chmod(inbound, 0o2733)
    # C renames the notebook; B hands in a broken one again (a resubmission: the latest counts)
    model = rest.read_file(room, C, tokens[C], f"{ASSIGNMENT}/{NOTEBOOK.name}")
    rest.request(room, "PATCH", f"/user/{C}/api/contents/{ASSIGNMENT}/{NOTEBOOK.name}", tokens[C],
                 {"path": f"{ASSIGNMENT}/mine.ipynb"})
    assert model["type"] == "notebook"
    _assignments(room, C, tokens[C], "submit")
    rest.request(room, "PUT", f"/user/{B}/api/contents/{ASSIGNMENT}/{NOTEBOOK.name}", tokens[B],
                 {"type": "file", "format": "text", "content": '{"cells": [ broken'})
    time.sleep(1.1)  # nbgrader's timestamps: the resubmission is later
    _assignments(room, B, tokens[B], "submit")
    env = room.course_env / "bin"
    collected = _instructor(room, env / "nbgrader", "collect", ASSIGNMENT, "--update")
    _instructor(room, env / "python", "-m", "vitcourse.grading", "autograde", "--course", room.course())
    rows = {row["student"]: row for row in csv.DictReader(io.StringIO((room.course() / "grades.csv").read_text()))}
    assert rows[C]["reason"] == "no notebook submitted" and rows[C]["points"] == "0", rows[C]
    assert rows[B]["reason"].startswith("unreadable notebook"), rows[B]
    assert rows[A]["points"] == "3", rows[A]
    assert f"Updating submission: {B}" in collected, collected
