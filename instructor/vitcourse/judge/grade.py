"""One notebook's grade: the submission rebuilt on its source, run in a sandbox session, each exercise judged."""
from __future__ import annotations

import copy
import dataclasses
import time
from pathlib import Path
from typing import Any

import nbformat

from ..confine import files, sandbox
from ..student import without_hidden_tests
from . import scan, slicing
from . import verdict as judge
from .cells import cell_grade_id, cell_meta, cell_points, is_solution, is_test, shown_number

STUDENT_MARK = "vitsteps_added_by_student"  # cell metadata flag on cells the student added
_SCAN_FLAG = "the static scan flags the notebook (see the reason)"



@dataclasses.dataclass(frozen=True)
class Settings:
    """The grader's course settings, `c.VitCourse.<name>` in the course's nbgrader_config.py.

    Args:
        exercises: the exercise table: a module name or a path to a .py file.
        flagged_credit: the fraction of an exercise's points kept when it is flagged (a call of the package's
            reference or of a forbidden function, a copy of the reference, code the static scan flags).
        budget_factor: each notebook's wall-clock budget is this many times what the assignment's own solution
            takes through the same grading path (timed at the start of every autograde run), at least
            `budget_floor_s` and at most the sandbox's notebook limit; past it the remaining exercises score 0.
        budget_floor_s: the smallest budget, seconds (start-up jitter dominates a short notebook).
        notebook_mb, max_cells, cell_source_kb, output_mb, json_depth: what a submitted notebook may hold (file
            size, cells, the source of one cell, all stored outputs, JSON nesting), checked before it is parsed.
        parse_seconds, parse_memory_mb: the bounds of the separate process that parses a submitted notebook.
    """

    exercises: str = judge.DEFAULT_TABLE
    flagged_credit: float = 0.0
    budget_factor: float = 5.0
    budget_floor_s: float = 30.0
    notebook_mb: float = 20.0
    max_cells: int = 2000
    cell_source_kb: float = 256.0
    output_mb: float = 16.0
    json_depth: int = 64
    parse_seconds: float = 10.0
    parse_memory_mb: int = 1024

    def __post_init__(self) -> None:
        if not isinstance(self.exercises, str) or not self.exercises:
            raise ValueError(f"exercises must name a module or a .py file, got {self.exercises!r}; e.g. "
                             f"'{judge.DEFAULT_TABLE}'.")
        if isinstance(self.flagged_credit, bool) or not isinstance(self.flagged_credit, (int, float)) \
                or not 0 <= self.flagged_credit <= 1:
            raise ValueError(f"flagged_credit must be a number from 0 to 1, got {self.flagged_credit!r}; 0 gives "
                             f"flagged exercises no points, 1 full points.")
        for name in ("budget_factor", "budget_floor_s", "notebook_mb", "max_cells", "cell_source_kb", "output_mb",
                     "json_depth", "parse_seconds", "parse_memory_mb"):
            value = getattr(self, name)
            whole = name in ("max_cells", "json_depth", "parse_memory_mb")
            if isinstance(value, bool) or not isinstance(value, int if whole else (int, float)) or value <= 0:
                raise ValueError(f"{name} must be a positive {'whole ' if whole else ''}number, got {value!r}; the "
                                 f"default is {getattr(Settings, name)!r}.")
        if self.budget_factor < 1:
            raise ValueError(f"budget_factor must be at least 1 (the solution itself must fit), got "
                             f"{self.budget_factor!r}; the default is {Settings.budget_factor!r}.")

    def notebook_limits(self) -> files.NotebookLimits:
        """What a submitted notebook may hold and how its parsing is bounded."""
        return files.NotebookLimits(notebook_mb=self.notebook_mb, cells=self.max_cells,
                                    cell_source_kb=self.cell_source_kb, output_mb=self.output_mb,
                                    depth=self.json_depth, parse_seconds=self.parse_seconds,
                                    parse_memory_mb=self.parse_memory_mb)



def exercise_map(source: nbformat.NotebookNode, notebook: str, table: judge.Table | None
                 ) -> dict[str, Any]:
    """Test cell grade id -> its exercise in the table (the exercise of the solution cell before it), or None."""
    mapping: dict[str, Any] = {}
    solution: str | None = None
    for cell in source.cells:
        if is_solution(cell) and cell.cell_type == "code":
            solution = cell_grade_id(cell)
        if is_test(cell):
            mapping[cell_grade_id(cell)] = table.by_grade_id(notebook, solution) if table and solution else None
    return mapping


@dataclasses.dataclass
class Grade:
    """The grade of one submitted notebook (or why a submission folder was not graded)."""

    student: str
    assignment: str
    notebook: str
    points: float = 0.0
    max_points: float = 0.0
    exercises: dict[str, tuple[float, float]] = dataclasses.field(default_factory=dict)
    reasons: list[str] = dataclasses.field(default_factory=list)
    verdicts: dict[str, str] = dataclasses.field(default_factory=dict)  # test grade id -> the grader's words
    recordable: bool = True  # False for refused folders: no gradebook entry

    def row(self) -> dict[str, str]:
        return {"student": self.student, "assignment": self.assignment, "notebook": self.notebook,
                "points": shown_number(self.points), "max_points": shown_number(self.max_points),
                "exercises": " ".join(f"{grade_id}={shown_number(got)}/{shown_number(out_of)}"
                                      for grade_id, (got, out_of) in self.exercises.items()),
                "reason": "; ".join(self.reasons)}


@dataclasses.dataclass
class Assembled:
    """A notebook ready to run: instructor cells from the source, solutions and extra cells from the student."""

    notebook: nbformat.NotebookNode
    student_cells: dict[int, str]  # graded-notebook index -> label, for every cell of student code
    notes: list[str]


def assemble(source: nbformat.NotebookNode, released: nbformat.NotebookNode,
             submitted: nbformat.NotebookNode) -> Assembled:
    """Rebuild a submission on its source notebook.

    Instructor cells come from `source` (so edited or deleted test cells are restored), test cells without
    their hidden tests; each solution cell comes from the submission by grade id; cells the student added
    (unknown cell id and grade id) are kept after the cell they followed. Edits to test cells are noted.
    """
    source_index: dict[str, int] = {}
    for index, cell in enumerate(source.cells):
        if cell_grade_id(cell):
            source_index[f"grade:{cell_grade_id(cell)}"] = index
        if cell.get("id"):
            source_index.setdefault(f"id:{cell['id']}", index)
    released_by_grade = {cell_grade_id(cell): cell for cell in released.cells if cell_grade_id(cell)}

    submitted_by_grade: dict[str, nbformat.NotebookNode] = {}
    added: dict[int, list[nbformat.NotebookNode]] = {}
    anchor = -1
    for cell in submitted.cells:
        if not isinstance(cell, dict) or not isinstance(cell.get("metadata", {}), dict):
            continue  # not a cell: ignored
        grade_id = cell_grade_id(cell)
        key = f"grade:{grade_id}" if grade_id and f"grade:{grade_id}" in source_index else f"id:{cell.get('id')}"
        if key in source_index:
            anchor = source_index[key]
            if grade_id and key.startswith("grade:"):
                submitted_by_grade.setdefault(grade_id, cell)
        elif cell.get("cell_type") in ("code", "markdown"):
            added.setdefault(anchor, []).append(cell)

    notebook = nbformat.v4.new_notebook(metadata=copy.deepcopy(source.metadata))
    notebook.metadata.pop("widgets", None)
    notes: list[str] = []
    student_cells: dict[int, str] = {}

    def add_student_cells(after: int) -> None:
        for cell in added.get(after, []):
            text = _text(cell.get("source", ""))
            if cell.get("cell_type") == "code":
                new = nbformat.v4.new_code_cell(text)
                student_cells[len(notebook.cells)] = f"cell {len(notebook.cells) + 1} (added by the student)"
            else:
                new = nbformat.v4.new_markdown_cell(text)
            new.metadata[STUDENT_MARK] = True
            notebook.cells.append(new)

    add_student_cells(-1)
    for index, cell in enumerate(source.cells):
        grade_id = cell_grade_id(cell)
        new = copy.deepcopy(cell)
        if new.cell_type == "code":
            new.outputs, new.execution_count = [], None
        if is_solution(cell):
            theirs = submitted_by_grade.get(grade_id)
            if theirs is None:
                notes.append(f"solution cell {grade_id} was deleted")
                new.source = ""
            else:
                new.source = _text(theirs.get("source", ""))
            if cell.cell_type == "code":
                student_cells[len(notebook.cells)] = f"cell {len(notebook.cells) + 1} ({grade_id})"
        elif is_test(cell):
            new.source = without_hidden_tests(cell.source, f"test cell {grade_id}")
        notebook.cells.append(new)
        if not is_solution(cell) and grade_id and cell.cell_type == "code" and \
                (is_test(cell) or cell_meta(cell).get("locked")):
            theirs = submitted_by_grade.get(grade_id)
            given = released_by_grade.get(grade_id)
            if theirs is None:
                notes.append(f"test cell {grade_id} was deleted (restored for grading)")
            elif given is not None and _normalise(theirs.get("source", "")) != _normalise(given.source):
                notes.append(f"test cell {grade_id} was edited (the original was used)")
        add_student_cells(index)
    return Assembled(notebook, student_cells, notes)


def _text(source: Any) -> str:
    return "".join(source) if isinstance(source, list) else str(source)


def _normalise(source: Any) -> str:
    return "\n".join(line.rstrip() for line in _text(source).strip().splitlines())


def scan_findings(source: nbformat.NotebookNode, assembled: Assembled) -> list[str]:
    """What the static scan flags in the student's cells (defence in depth; see `vitcourse.judge.scan`)."""
    tests = [cell.source for cell in source.cells if is_test(cell)]
    solutions = [cell.source for cell in source.cells if is_solution(cell) and cell.cell_type == "code"]
    others = [cell.source for cell in source.cells
              if cell.cell_type == "code" and not is_test(cell) and not is_solution(cell)]
    protected, module_names = scan.protected_names(tests, others, solutions)
    sources = {label: assembled.notebook.cells[index].source
               for index, label in sorted(assembled.student_cells.items())}
    return scan.find_tampering(sources, protected, module_names)


def _cell_name(notebook: nbformat.NotebookNode, index: int | None, student_cells: dict[int, str]) -> str:
    if index is None:
        return "before the first cell (kernel start)"
    if index in student_cells:
        return student_cells[index]
    grade_id = cell_grade_id(notebook.cells[index])
    return f"cell {index + 1}" + (f" ({grade_id})" if grade_id else "")


def _is_memory_error(cell: nbformat.NotebookNode) -> bool:
    return any(output.get("output_type") == "error" and output.get("ename") == "MemoryError"
               for output in cell.get("outputs", []))


# ------------------------------------------------------------------------------------------ grading one notebook


@dataclasses.dataclass
class Job:
    """What one graded notebook needs besides its files: the warm sandbox, the table, the run's secret."""

    warm: sandbox.Sandbox
    table: judge.Table
    settings: Settings
    secret: bytes
    budgets: dict[str, sandbox.Limits] = dataclasses.field(default_factory=dict)  # "assignment/notebook" -> limits


def grade_notebook(source: nbformat.NotebookNode, released: nbformat.NotebookNode,
                   submitted: nbformat.NotebookNode, grade: Grade, job: Job) -> nbformat.NotebookNode:
    """Grade one submission into `grade`; return the graded notebook, with every output of its run.

    The notebook runs once as the student wrote it, for its outputs (what the instructor and the feedback page
    show); no input of the grader's ever enters that process. Then each exercise gets a graded run of its own: a
    new process where the exercise's ruled-out routes are closed before any student code runs, which runs the
    student's cells and the instructor cells they need (`slicing`), and where the grader calls the function.
    """
    notebook_name = Path(grade.notebook).stem
    tests = {cell_grade_id(cell): cell for cell in source.cells if is_test(cell)}
    grade.max_points = sum(cell_points(cell) for cell in tests.values())
    grade.exercises = {grade_id: (0.0, cell_points(cell)) for grade_id, cell in tests.items()}
    exercises = exercise_map(source, notebook_name, job.table)
    assembled = assemble(source, released, submitted)
    grade.reasons += assembled.notes
    findings = scan_findings(source, assembled)
    notebook = assembled.notebook
    solutions = {cell_grade_id(cell): cell.source for cell in notebook.cells if is_solution(cell)}
    test_cells = [index for index, cell in enumerate(notebook.cells) if is_test(cell)]
    oom: list[int] = []
    kills = [0]
    record = sandbox.Execution(notebook=notebook)
    limits = job.budgets.get(f"{grade.assignment}/{grade.notebook}") or job.warm.limits
    deadline = time.monotonic() + limits.notebook_timeout  # one budget for the notebook's run and its graded runs
    session = job.warm.session(limits, deadline)

    def after_cell(index: int) -> None:
        if session.group is not None and session.group.oom_kills() > kills[0]:
            kills[0] = session.group.oom_kills()
            oom.append(index)

    try:
        sandbox.run_notebook(session, notebook, record, after_cell)
    finally:
        session.close()
    memory = [index for index, cell in enumerate(notebook.cells) if _is_memory_error(cell)]

    sources = {index: cell.source for index, cell in enumerate(notebook.cells) if cell.cell_type == "code"}
    solution_at = {cell_grade_id(cell): index for index, cell in enumerate(notebook.cells) if is_solution(cell)}
    outcomes: dict[str, judge.Outcome] = {}
    for grade_id, exercise in exercises.items():
        if exercise is not None:
            seed = judge.case_seed(job.secret, grade.student, grade.assignment, exercise.name)
            needed = slicing.cells_for(sources, [solution_at[exercise.grade_id]] if exercise.grade_id in solution_at
                                       else [], assembled.student_cells, test_cells)
            outcomes[grade_id] = graded_run(job, notebook, needed, exercise, seed, limits, deadline)

    credit = job.settings.flagged_credit
    for grade_id, cell in tests.items():
        exercise, points = exercises.get(grade_id), cell_points(cell)
        outcome = outcomes.get(grade_id)
        flags = list(outcome.flags) if outcome else []
        if exercise is not None:
            copied = judge.copied_reference(solutions.get(exercise.grade_id, ""), exercise)
            if copied:
                flags.append(f"its code is the package's own `{copied}` with other names")
        if findings:
            flags.append(_SCAN_FLAG)
        if exercise is None:
            grade.verdicts[grade_id] = f"not graded: the exercise table {job.table.source!r} has no exercise for it"
        elif not outcome.passed:
            grade.verdicts[grade_id] = outcome.hint
        elif flags:
            earned = points * credit
            grade.exercises[grade_id] = (earned, points)
            grade.points += earned
            grade.verdicts[grade_id] = "correct, but flagged: " + "; ".join(flags)
        else:
            grade.exercises[grade_id] = (points, points)
            grade.points += points
            grade.verdicts[grade_id] = "correct"
        named = [flag for flag in flags if flag != _SCAN_FLAG]
        if named and outcome is not None:
            grade.reasons.append(f"flagged {grade_id}: " + "; ".join(named))
    if findings:
        grade.reasons.insert(0, "flagged by the static scan: " + "; ".join(findings[:3])
                             + (f" (and {len(findings) - 3} more)" if len(findings) > 3 else ""))
    for index in record.timed_out:
        grade.reasons.append(f"timed out: {_cell_name(notebook, index, assembled.student_cells)} ran past "
                             f"{job.warm.limits.cell_timeout:g} s")
    if record.stopped:
        grade.reasons.append(f"{record.stopped}, in {_cell_name(notebook, record.stopped_at, assembled.student_cells)}")
    stops = {outcome.stopped for outcome in outcomes.values() if outcome.stopped} - {record.stopped}
    for stopped in sorted(stops):
        named = [exercises[grade_id].name for grade_id, outcome in outcomes.items() if outcome.stopped == stopped]
        grade.reasons.append(f"{stopped}, so " + ", ".join(f"`{name}`" for name in named) + " scored 0")
    if memory or oom:
        where = ", ".join(_cell_name(notebook, index, assembled.student_cells) for index in sorted(set(memory + oom)))
        grade.reasons.append(f"out of memory (limit {job.warm.limits.memory_mb} MiB for the whole submission) in "
                             f"{where}")
    if record.truncated:
        grade.reasons.append(f"output cut: the notebook printed more than {job.warm.limits.output_kb} KiB "
                             f"(from {_cell_name(notebook, record.truncated[0], assembled.student_cells)})")
    grade.reasons = [reason for reason in grade.reasons if reason]
    return notebook


def graded_run(job: Job, notebook: nbformat.NotebookNode, cells: list[int], exercise: Any, seed: int,
               limits: sandbox.Limits | None = None, deadline: float | None = None) -> judge.Outcome:
    """One exercise judged in a process of its own: its routes closed first, then the cells, then the calls, all
    within the notebook's `deadline`."""
    run = nbformat.v4.new_notebook(cells=[copy.deepcopy(cell) for cell in notebook.cells])
    record = sandbox.Execution(notebook=run)
    if deadline is not None and time.monotonic() >= deadline:
        reason = (limits or job.warm.limits).time_limit_reason()
        return judge.Outcome(False, f"not graded: {reason}", stopped=reason)
    session = job.warm.session(limits, deadline)
    try:
        session.close_routes(job.table.routes(exercise))
        sandbox.run_notebook(session, run, record, only=cells)
        if record.stopped:
            return judge.Outcome(False, f"not graded: the graded run of `{exercise.name}` stopped ({record.stopped})",
                                 stopped=record.stopped)
        return judge.judge(session, job.table, exercise, seed)
    except sandbox.Stopped as stop:
        return judge.Outcome(False, f"not graded: the graded run of `{exercise.name}` stopped ({stop})",
                             stopped=str(stop))
    finally:
        session.close()
