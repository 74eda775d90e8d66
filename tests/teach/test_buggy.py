"""The suspect of notebook 09: with correct functions it is ViT; each bug of the key (`vitcourse.judge.hunt`) fails
exactly the checks the key says when it is planted alone; the notebook's suspect is the key's; no bug is a pitfall
that notebooks 01-08 show; the hints are there for every symptom and give no fix; the student's material names no
bug and holds no fix; bisecting and the graded exercises find each stage's bugs.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from helpers import assert_all_refused, refusal_cases
from torch import nn
from vitcourse import student
from vitcourse.judge import hunt, references
from vitcourse.judge.exercises import EXERCISES, verdict

import vitsteps.teach.buggy as buggy
from vitsteps import ViT, get_config
from vitsteps.teach.buggy import STAGES, SuspectViT, TrustedStage, bisect, fix_report, hint, hints_used
from vitsteps.teach.checks import public
from vitsteps.teach.properties import run_checks

CONFIG = get_config("toy")  # the original article's model: 3x8x8 images, 4x4 patches, D=8, 8 heads, 6 layers
ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "09_bug_hunt.ipynb"
SUSPECT_CELLS = ("09-suspect-cut-patches", "09-suspect-embed", "09-suspect-attention", "09-suspect-block",
                 "09-suspect-classify")


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))


def notebook_cells() -> dict[str, str]:
    return {cell["id"]: "".join(cell["source"]) for cell in json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]}


def suspect_functions() -> dict:
    """The five functions as notebook 09 writes them, run in a namespace of their own."""
    cells = notebook_cells()
    namespace = {"math": __import__("math"), "torch": torch, "F": F, "nn": nn}
    for cell_id in SUSPECT_CELLS:
        exec(cells[cell_id], namespace)  # noqa: S102 - the notebook's own code
    return namespace


def build(functions: dict) -> SuspectViT:
    functions = hunt.assemble(functions) if "__builtins__" not in functions else functions
    torch.manual_seed(0)
    return SuspectViT(CONFIG, functions["cut_patches"], functions["embed_tokens"], functions["encoder_block"],
                      functions["classify"])


def failing(model: nn.Module, images: torch.Tensor) -> set[str]:
    return {result.name for result in run_checks(model, images) if not result.passed}


def planted(bug: hunt.Bug) -> dict:
    """A correct suspect with `bug` alone."""
    return {**hunt.CORRECT, bug.stage: bug.plant}


def test_with_correct_functions_the_suspect_computes_what_vit_computes(images):
    for stages in (hunt.CORRECT, {stage: TrustedStage(stage) for stage in STAGES}):
        fixed = build(stages).eval()
        torch.manual_seed(0)
        model = ViT(CONFIG).eval()
        state = dict(fixed.state_dict())
        P, C, D = CONFIG.patch_size, CONFIG.in_chans, CONFIG.embed_dim
        state["patch_embed.proj.weight"] = state.pop("patch_embed.weight").reshape(D, C, P, P)  # [D, C, P, P]
        state["patch_embed.proj.bias"] = state.pop("patch_embed.bias")
        model.load_state_dict(state, strict=True)  # the same names as timm's, block by block
        with torch.no_grad():
            assert torch.allclose(fixed(images), model(images), atol=1e-6)


def test_the_suspect_has_at_least_six_bugs_in_every_one_of_its_stages():
    assert len(hunt.BUGS) >= 6 and {bug.stage for bug in hunt.BUGS} == set(STAGES)
    assert [bug.symptom for bug in hunt.BUGS] == list(range(1, len(hunt.BUGS) + 1))
    assert len({bug.kind for bug in hunt.BUGS}) == len(hunt.BUGS)


@pytest.mark.parametrize("bug", hunt.BUGS, ids=lambda bug: f"symptom {bug.symptom}")
def test_each_bug_planted_alone_fails_exactly_the_checks_the_key_says(bug, images):
    assert failing(build(planted(bug)), images) == bug.caught_by


def test_each_check_catches_exactly_the_bugs_the_key_gives_it(images):
    caught = {name: {bug.symptom for bug in hunt.BUGS if name in failing(build(planted(bug)), images)}
              for name in (result.name for result in run_checks(build(hunt.CORRECT), images))}
    claimed = {name: {bug.symptom for bug in hunt.BUGS if name in bug.caught_by} for name in caught}
    assert caught == claimed
    assert all(caught[name] for name in caught if name != "initial_loss_near_log_k"), caught


@pytest.mark.parametrize("bug", hunt.BUGS, ids=lambda bug: f"symptom {bug.symptom}")
def test_each_bug_is_silent_and_the_model_still_trains(bug, images):
    torch.manual_seed(0)
    model = build(planted(bug))
    optimiser = torch.optim.SGD(model.parameters(), lr=0.5)
    labels = torch.arange(4)
    losses = []
    for _ in range(20):
        loss = F.cross_entropy(model(images), labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses  # no exception, and the loss goes down


def test_the_notebooks_suspect_is_the_keys_suspect(images):
    namespace = suspect_functions()
    for stage, function in hunt.SUSPECT.items():
        case = EXERCISES[stage].make_cases(torch.Generator().manual_seed(0))[0]
        torch.manual_seed(0)
        expected = function(*case.args)
        torch.manual_seed(0)
        if stage == "encoder_block":
            namespace["attention"] = references.attention
        got = namespace[stage](*case.args)
        assert torch.allclose(got, expected, atol=1e-6), stage
    namespace = suspect_functions()
    assert failing(build(namespace), images) == failing(build(hunt.SUSPECT), images)


def _pitfall_headlines() -> list[tuple[str, str]]:
    """Every pitfall's bold headline in notebooks 01-08: the first bold line after "## Pitfall", and numbered ones."""
    found = []
    for path in sorted((ROOT / "notebooks").glob("0[1-8]_*.ipynb")):
        for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
            text = "".join(cell["source"])
            if cell["cell_type"] != "markdown":
                continue
            if "## Pitfall" in text:
                after = text[text.index("## Pitfall"):]
                heading, _, rest = after.partition("\n")
                bold = re.search(r"^\*\*(.+?)\*\*", rest.strip(), re.M)
                found.append((path.stem, bold.group(1) if bold else heading.removeprefix("## Pitfall").strip(": ")))
            found += [(path.stem, line) for line in re.findall(r"^\*\*\d\. (.+?)\*\*", text, re.M)]
    return list(dict.fromkeys(found))


def test_the_list_of_pitfalls_holds_every_pitfall_of_notebooks_01_to_08():
    headlines = _pitfall_headlines()
    assert len(headlines) >= 10
    for notebook, headline in headlines:
        assert any(p.notebook == notebook and p.headline in headline for p in hunt.PITFALLS), (notebook, headline)
    for pitfall in hunt.PITFALLS:
        assert any(notebook == pitfall.notebook and pitfall.headline in headline
                   for notebook, headline in headlines), pitfall


@pytest.mark.parametrize("bug", hunt.BUGS, ids=lambda bug: f"symptom {bug.symptom}")
def test_no_bug_of_the_hunt_is_a_pitfall_an_earlier_notebook_shows(bug):
    """On the original article's configuration (each stage's first case), the stage with the bug computes
    something else than the same stage with any pitfall of the series."""
    case = EXERCISES[bug.stage].make_cases(torch.Generator().manual_seed(0))[0]
    torch.manual_seed(0)
    mine = bug.plant(*case.args)
    assert not torch.allclose(mine, hunt.CORRECT[bug.stage](*case.args), atol=1e-4)
    compared = 0
    for pitfall in hunt.PITFALLS:
        if pitfall.stage == bug.stage:
            torch.manual_seed(0)
            theirs = pitfall.plant(*case.args)
            assert not torch.allclose(mine, theirs, atol=1e-4), (bug.symptom, pitfall.headline)
            compared += 1
    assert compared >= 1, f"no pitfall of the series sits in {bug.stage}; compare with one of its own"


def test_bisecting_points_each_failing_check_of_a_planted_bug_at_its_stage(images):
    for bug in hunt.BUGS:
        table = bisect(hunt.assemble(planted(bug)), images).splitlines()
        line = next(line for line in table if line.startswith(f"trusted {bug.stage} "))
        green = set(re.match(r"trusted \w+\s+(.*) / ", line).group(1).split(", "))
        assert green == bug.caught_by, (bug.symptom, line)
        others = [line for line in table[1:-1] if not line.startswith(f"trusted {bug.stage} ")]
        assert all(line.endswith("- / -") for line in others), (bug.symptom, others)


@pytest.mark.parametrize("stage", STAGES)
def test_the_graded_exercise_of_each_stage_rejects_the_suspects_code_and_accepts_the_fix(stage):
    namespace = suspect_functions()
    exercise = EXERCISES[stage]
    assert exercise.notebook == "09_bug_hunt" and "vitsteps.teach.buggy.TrustedStage" in exercise.routes
    for case in exercise.make_cases(torch.Generator().manual_seed(0)):
        if stage == "encoder_block":
            namespace["attention"] = references.attention  # the block is graded on its own
        torch.manual_seed(0)
        assert verdict(exercise, case, namespace[stage](*case.args)) is not None, case.label
        assert verdict(exercise, case, hunt.CORRECT[stage](*case.args)) is None, case.label
    symptoms = sorted(bug.symptom for bug in hunt.BUGS if bug.stage == stage)
    message = verdict(exercise, case, next(bug for bug in hunt.BUGS if bug.stage == stage
                                           and bug.symptom != 5).plant(*case.args))
    assert message is not None and f"symptom {symptoms[0]}" in message


def test_a_hint_comes_in_steps_from_vague_to_specific_and_is_counted(capsys, monkeypatch):
    monkeypatch.setattr(buggy, "_asked", {})
    assert hints_used() == {}
    hint(2)
    hint(2)
    hint(2)
    hint(2)
    hint(5)
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("symptom 2, hint 1 of 3: ")
    assert printed[2].startswith("symptom 2, hint 3 of 3 (the last one): ")
    assert printed[3] == printed[2]  # asking past the last repeats it
    assert hints_used() == {2: 4, 5: 1}


def test_every_symptom_has_hints_and_none_gives_a_fix():
    assert sorted(buggy.HINTS) == [bug.symptom for bug in hunt.BUGS]
    assert all(len(steps) >= 3 for steps in buggy.HINTS.values())
    texts = " ".join(" ".join(steps) for steps in buggy.HINTS.values())
    for bug in hunt.BUGS:
        for fix in bug.fix:
            assert fix not in texts, (bug.symptom, fix)


def test_the_student_material_names_no_bug_and_holds_no_fix():
    version = student.student_version(json.loads(NOTEBOOK.read_text(encoding="utf-8")), NOTEBOOK.name)
    text = "\n".join("".join(cell["source"]) for cell in version["cells"])
    prose = "\n".join("".join(cell["source"]) for cell in version["cells"] if cell["cell_type"] == "markdown")
    package = "\n".join([Path(buggy.__file__).read_text(encoding="utf-8"),
                         *(mistake.hint for exercise in public.exercises().values() for mistake in exercise.mistakes)])
    for bug in hunt.BUGS:
        for fix in bug.fix:
            assert fix not in text and fix not in package, (bug.symptom, fix)
    for cause in ("causal", "dropout", "broadcast", "last token", "wrong token", "wrong order", "residual from",
                  "mask"):
        assert not re.search(rf"\b{cause}\b", prose.lower()), cause  # the student's notebook names no cause


def test_the_fix_report_lists_what_each_step_turned_green_and_red(images):
    functions = dict(hunt.SUSPECT)
    start = run_checks(build(functions), images)
    functions["cut_patches"] = references.cut_patches
    fixed_patches = run_checks(build(functions), images)
    functions["cut_patches"] = functions["embed_tokens"] = lambda *args: 1 / 0  # a step that breaks things
    broken = run_checks(build(functions), images)
    report = fix_report([("start", start), ("cut_patches fixed", fixed_patches), ("broken", broken)]).splitlines()
    assert report[:2] == ["step               turned green / turned red",
                          "cut_patches fixed  patch_order, patch_round_trip / -"]
    assert report[2].startswith("broken             - / ") and "patch_order" in report[2]
    assert report[3] == f"at the end: {sum(result.passed for result in broken)} of 10 checks pass."


# --- bad input: one case per function and parameter (vitsteps._validate's tests try the bad values) -------------

FIXED_PARTS = (references.cut_patches, references.embed_tokens, references.encoder_block)
REFUSED = {
    "SuspectViT: a config that is a dict":
        (lambda: SuspectViT({"img_size": 8}, *FIXED_PARTS), TypeError, r"config must be a ViTConfig"),
    "SuspectViT: cut_patches called instead of passed":
        (lambda: SuspectViT(CONFIG, torch.zeros(1), *FIXED_PARTS[1:]), TypeError, r"cut_patches must be a function"),
    "SuspectViT: embed_tokens that is text":
        (lambda: SuspectViT(CONFIG, FIXED_PARTS[0], "embed", FIXED_PARTS[2]), TypeError,
         r"embed_tokens must be a function"),
    "SuspectViT: encoder_block that is None":
        (lambda: SuspectViT(CONFIG, *FIXED_PARTS[:2], None), TypeError, r"encoder_block must be a function"),
    "SuspectViT: classify that is a tensor":
        (lambda: SuspectViT(CONFIG, *FIXED_PARTS, torch.zeros(1)), TypeError, r"classify must be a function"),
    "SuspectViT: images without a batch dimension":
        (lambda: SuspectViT(CONFIG, *FIXED_PARTS)(torch.rand(3, 8, 8)), ValueError,
         r"images must be a tensor with 4 dimensions"),
    "TrustedStage: a stage the suspect does not have":
        (lambda: TrustedStage("patchify"), ValueError, r"stage must be one of"),
    "TrustedStage: an attention that is text":
        (lambda: TrustedStage("encoder_block", "attention"), TypeError, r"attention must be a function"),
    "bisect: a list of functions":
        (lambda: bisect([references.cut_patches], torch.rand(2, 3, 8, 8)), TypeError,
         r"functions must be a dict of the five functions by name"),
    "bisect: a stage missing":
        (lambda: bisect({"cut_patches": references.cut_patches}, torch.rand(2, 3, 8, 8)), ValueError,
         r"functions must be a dict with all of"),
    "bisect: a config that is a name":
        (lambda: bisect(hunt.CORRECT, torch.rand(2, 3, 8, 8), "toy"), TypeError, r"config must be a ViTConfig"),
    "hint: a symptom that is not on the list":
        (lambda: hint(7), ValueError, r"symptom must be one of"),
    "hint: a symptom given as text":
        (lambda: hint("1"), ValueError, r"symptom must be one of"),
    "fix_report: one step only":
        (lambda: fix_report([("start", [])]), ValueError, r"steps must be a list of at least two"),
    "fix_report: a dict of steps":
        (lambda: fix_report({"start": []}), TypeError, r"steps must be a list of at least two"),
    "fix_report: a step without a label":
        (lambda: fix_report([(1, []), (2, [])]), TypeError, r"steps must be \(label, results\) pairs"),
}


@refusal_cases(REFUSED)
def test_bad_input_is_refused_naming_the_parameter_the_value_and_the_fix(refusals):
    assert_all_refused(refusals)


EXERCISE_CELLS = {"cut_patches": "09-ex-cut-patches", "embed_tokens": "09-ex-embed", "classify": "09-ex-classify",
                  "attention": "09-ex-attention", "encoder_block": "09-ex-block"}


def _hidden_tests(stage: str) -> str:
    source = notebook_cells()[f"{EXERCISE_CELLS[stage]}-test"]
    return source[source.index("### BEGIN HIDDEN TESTS"):source.index("### END HIDDEN TESTS")]


def _solutions() -> dict:
    namespace = {"math": __import__("math"), "torch": torch, "F": F, "nn": nn}
    for cell in EXERCISE_CELLS.values():
        exec(notebook_cells()[cell], namespace)  # noqa: S102 - the notebook's own solution
    return namespace


@pytest.mark.parametrize("stage", STAGES)
def test_each_hidden_test_fails_the_suspects_function_and_passes_the_fix(stage, images):
    from vitsteps.teach import properties
    from vitsteps.teach.checks import CheckFailed, check

    context = {"config": CONFIG, "images": images, "properties": properties, "SuspectViT": SuspectViT,
               "check": check}
    fixed = {**_solutions(), **context}
    exec(_hidden_tests(stage), fixed)  # noqa: S102 - passes
    suspect = {**_solutions(), **context}
    exec(notebook_cells()[dict(zip(STAGES, SUSPECT_CELLS, strict=True))[stage]], suspect)  # noqa: S102
    with pytest.raises(CheckFailed):
        exec(_hidden_tests(stage), suspect)  # noqa: S102 - the graded check, on seed 1's cases
    asserts = "\n".join(line for line in _hidden_tests(stage).splitlines() if not line.startswith("check("))
    with pytest.raises(AssertionError):
        exec(asserts, suspect)  # noqa: S102 - and the property the fix restores, on the stage alone
