"""The suspect of notebook 09: with correct functions it is ViT; the notebook's suspect functions fail the checks
the notebook says they fail, each fix turns its checks green, and each unfixed function gets the table's hint.

The instructor's key to the bugs (the notebook itself never names them): `cut_patches` reshapes without moving the
patch axes (stripes); `attention` reads `[B, L, D]` as `[L, B, D]` (nn.TransformerEncoderLayer's default layout,
the original article's bug), so it attends along the batch; `embed_tokens` adds the position table and returns
the sum unused (the article's other bug); `encoder_block` is post-norm and normalises the MLP branch with norm1.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from helpers import assert_all_refused, refusal_cases
from torch import nn
from vitcourse.judge import references
from vitcourse.judge.exercises import EXERCISES, verdict

from vitsteps import ViT, get_config
from vitsteps.teach.buggy import SuspectViT, fix_report
from vitsteps.teach.properties import run_checks

CONFIG = get_config("toy")  # the original article's model: 3x8x8 images, 4x4 patches, D=8, 8 heads, 6 layers
NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "09_bug_hunt.ipynb"
SUSPECT_CELLS = ("09-suspect-cut-patches", "09-suspect-embed", "09-suspect-attention", "09-suspect-block")
FIXED = {"cut_patches": references.cut_patches, "embed_tokens": references.embed_tokens,
         "attention": references.attention, "encoder_block": references.encoder_block}


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))


def suspect_functions() -> dict:
    """The four functions as notebook 09 writes them, run in a namespace of their own."""
    cells = {cell["id"]: "".join(cell["source"]) for cell in json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]}
    namespace = {"math": __import__("math"), "torch": torch, "F": F, "nn": nn}
    for cell_id in SUSPECT_CELLS:
        exec(cells[cell_id], namespace)  # noqa: S102 - the notebook's own code
    return namespace


def suspect(namespace: dict) -> SuspectViT:
    torch.manual_seed(0)
    return SuspectViT(CONFIG, namespace["cut_patches"], namespace["embed_tokens"], namespace["encoder_block"])


def failing(model: nn.Module, images: torch.Tensor) -> set[str]:
    return {result.name for result in run_checks(model, images) if not result.passed}


def test_with_correct_functions_the_suspect_computes_what_vit_computes(images):
    torch.manual_seed(0)
    fixed = SuspectViT(CONFIG, references.cut_patches, references.embed_tokens, references.encoder_block).eval()
    model = ViT(CONFIG).eval()
    state = dict(fixed.state_dict())
    P, C, D = CONFIG.patch_size, CONFIG.in_chans, CONFIG.embed_dim
    state["patch_embed.proj.weight"] = state.pop("patch_embed.weight").reshape(D, C, P, P)  # [D, C, P, P]
    state["patch_embed.proj.bias"] = state.pop("patch_embed.bias")
    model.load_state_dict(state, strict=True)  # the same names as timm's, block by block
    with torch.no_grad():
        assert torch.allclose(fixed(images), model(images), atol=1e-6)


def test_each_fix_of_the_hunt_turns_exactly_its_checks_green(images):
    namespace = suspect_functions()
    turned_green = []
    before = failing(suspect(namespace), images)
    assert before == {"input_sensitivity", "position_sensitivity", "patch_order", "patch_round_trip",
                      "gradients_reach", "pre_norm_residual"}
    for name in ("cut_patches", "attention", "embed_tokens", "encoder_block"):  # the notebook's order
        namespace[name] = FIXED[name]
        after = failing(suspect(namespace), images)
        assert after <= before, f"fixing {name} turned {after - before} red"
        turned_green.append(before - after)
        before = after
    assert turned_green == [{"patch_order", "patch_round_trip"}, {"input_sensitivity"}, {"position_sensitivity"},
                            {"gradients_reach", "pre_norm_residual"}]
    assert before == set()


@pytest.mark.parametrize("name", list(FIXED))
def test_an_unfixed_function_gets_the_tables_hint_for_the_suspects_code(name):
    namespace = suspect_functions()
    function = namespace[name]
    namespace["attention"] = references.attention  # notebook 09 fixes attention before the block
    exercise = EXERCISES[name]
    case = exercise.make_cases(torch.Generator().manual_seed(0))[0]
    message = verdict(exercise, case, function(*case.args))
    assert message is not None and message.endswith("hint: " + exercise.mistakes[0].hint)
    assert exercise.mistakes[0].name.startswith("the suspect's")


def test_the_suspect_starts_from_vits_initialisation():
    torch.manual_seed(0)
    fixed = SuspectViT(CONFIG, references.cut_patches, references.embed_tokens, references.encoder_block)
    torch.manual_seed(0)
    reference = ViT(CONFIG)
    assert torch.equal(fixed.pos_embed, reference.pos_embed) and torch.equal(fixed.cls_token, reference.cls_token)
    assert torch.equal(fixed.blocks[0].attn["qkv"].bias, torch.zeros(3 * CONFIG.embed_dim))
    assert 0.01 < float(fixed.blocks[0].mlp["fc1"].weight.detach().std()) < 0.03


def test_the_fix_report_lists_what_each_step_turned_green_and_red(images):
    namespace = suspect_functions()
    start = run_checks(suspect(namespace), images)
    namespace["cut_patches"] = references.cut_patches
    fixed_patches = run_checks(suspect(namespace), images)
    namespace["cut_patches"] = namespace["embed_tokens"] = lambda *args: 1 / 0  # a step that breaks things
    broken = run_checks(suspect(namespace), images)
    assert fix_report([("start", start), ("cut_patches fixed", fixed_patches), ("broken", broken)]).splitlines() == [
        "step               turned green / turned red",
        "cut_patches fixed  patch_order, patch_round_trip / -",
        "broken             - / batch_independence, patch_order, patch_round_trip, initial_loss_near_log_k",
        f"at the end: {sum(result.passed for result in broken)} of 8 checks pass."]


# --- bad input: one case per function and parameter (vitsteps._validate's tests try the bad values) -------------

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
    "SuspectViT: images without a batch dimension":
        (lambda: SuspectViT(CONFIG, *FIXED_PARTS)(torch.rand(3, 8, 8)), ValueError,
         r"images must be a tensor with 4 dimensions"),
    "fix_report: one step only":
        (lambda: fix_report([("start", [])]), ValueError, r"steps must be a list of at least two"),
    "fix_report: a dict of steps":
        (lambda: fix_report({"start": []}), TypeError, r"steps must be a list of at least two"),
    "fix_report: a step without a label":
        (lambda: fix_report([(1, []), (2, [])]), TypeError, r"steps must be \(label, results\) pairs"),
}
FIXED_PARTS = (references.cut_patches, references.embed_tokens, references.encoder_block)


@refusal_cases(REFUSED)
def test_bad_input_is_refused_naming_the_parameter_the_value_and_the_fix(refusals):
    assert_all_refused(refusals)
