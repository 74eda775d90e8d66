"""vitsteps.teach.checks: correct code passes, each classic mistake fails with its hint, ruled-out calls are caught,
the references agree with the package yet do not depend on it, and the table matches the notebooks."""
from __future__ import annotations

import ast
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from helpers import assert_all_refused, refusal_cases
from torch import nn
from torch.nn.functional import unfold as cut_into_columns

import vitsteps
from vitsteps.model import ViTConfig
from vitsteps.teach.checks import EXERCISES, Case, CheckFailed, check, grad_weights, gradients, names, verdict

ROOT = Path(__file__).resolve().parents[2]


def _by_hand_patches(image: torch.Tensor, patch_size: int) -> torch.Tensor:
    B, C, H, W = image.shape
    P = patch_size
    grid = image.reshape(B, C, H // P, P, W // P, P).permute(0, 2, 4, 1, 3, 5)  # [B, H/P, W/P, C, P, P]
    return grid.reshape(B, -1, C * P * P)  # [B, N, C*P*P]


def _split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    B, L, D = x.shape
    return x.reshape(B, L, num_heads, D // num_heads).transpose(1, 2)  # [B, h, L, d]


def _attention(q, k, v):
    weights = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(dim=-1)  # [..., L, L]
    return weights @ v, weights


def _cls_head_loss(encoder_output, head, labels):
    logits = head(encoder_output[:, 0])  # [B, K]
    return logits, F.cross_entropy(logits, labels)


def _count(config: ViTConfig) -> int:
    D, H, K = config.embed_dim, config.mlp_hidden, config.num_classes
    block = 4 * D + (3 * D * D + 3 * D) + (D * D + D) + (D * H + H) + (H * D + D)
    return (config.in_chans * config.patch_size ** 2 * D + D + D + (config.num_patches + 1) * D + config.depth * block
            + 2 * D + D * K + K)


CORRECT = {
    "image_to_patches": _by_hand_patches,
    "image2emb_naive": lambda image, patch_size, weight: _by_hand_patches(image, patch_size) @ weight,
    "weight_to_kernel": lambda weight, c, p: weight.T.reshape(-1, c, p, p),
    "image2emb_conv": lambda image, kernel, stride: F.conv2d(image, kernel, stride=stride).flatten(2).transpose(1, 2),
    "prepend_cls_token": lambda tokens, cls: torch.cat([cls.expand(tokens.shape[0], -1, -1), tokens], dim=1),
    "add_position_embedding": lambda tokens, table: tokens + table[: tokens.shape[1]],
    "split_heads": _split_heads,
    "scaled_dot_product": _attention,
    "cls_head_loss": _cls_head_loss,
    "vit_parameter_count": _count,
}
# each exercise's function in the package, called as the exercise calls it
STAGES = {
    "image_to_patches": ("vitsteps.patches", "image_to_patches", lambda stage: stage),
    "image2emb_naive": ("vitsteps.patches", "patch_embed_unfold", lambda stage: stage),
    "weight_to_kernel": ("vitsteps.patches", "weight_to_kernel", lambda stage: stage),
    "image2emb_conv": ("vitsteps.patches", "patch_embed_conv", lambda stage: stage),
    "prepend_cls_token": ("vitsteps.tokens", "prepend_cls_token", lambda stage: stage),
    "add_position_embedding": ("vitsteps.tokens", "add_position_embedding", lambda stage: stage),
    "scaled_dot_product": ("vitsteps.encoder", "scaled_dot_product", lambda stage: stage),
    "vit_parameter_count": ("vitsteps.model", "parameter_formula", lambda stage: lambda c: stage(c)["total"]),
}


def _cases(name: str, seed: int = 0) -> list[Case]:
    return EXERCISES[name].make_cases(torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------------------- correct code


def test_every_exercise_has_a_correct_solution_here():
    assert list(CORRECT) == list(names()) == list(EXERCISES)


@pytest.mark.parametrize("name", list(CORRECT))
@pytest.mark.parametrize("seed", [0, 1])
def test_a_correct_solution_passes_with_one_line(name, seed, capsys):
    assert check(name, CORRECT[name], seed=seed) is True
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 1 and printed[0].startswith(f"✓ {name}: all checks passed on ")


def test_the_pass_line_counts_configurations_not_cases(capsys):
    check("image_to_patches", _by_hand_patches)
    assert len(_cases("image_to_patches")) == 7  # 4 configurations, 3 of them again with other batch-mates
    assert capsys.readouterr().out == ("✓ image_to_patches: all checks passed on 4 configurations (shapes, values vs "
                                       "vitsteps, patch order, gradients, batch independence).\n")


def test_check_leaves_the_global_random_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    check("cls_head_loss", _cls_head_loss)
    assert torch.equal(torch.rand(3), expected)


# --------------------------------------------------------------------------------------- mistakes


def _not_written(*args):
    raise NotImplementedError()


def _unfold_module(image, p):
    return nn.Unfold(p, stride=p)(image).transpose(1, 2)


def _remembers_the_first_batch():
    """A split_heads that answers a batch of a shape it has seen with the answer for the first such batch."""
    seen = {}

    def split_heads(x, num_heads):
        first = seen.setdefault((tuple(x.shape), num_heads), x.detach().clone())
        return _split_heads(x if torch.equal(x, first) else first, num_heads)

    return split_heads


MISTAKES = [
    ("image_to_patches", lambda image, p: image.reshape(image.shape[0], -1, image.shape[1] * p * p),
     "without permute: patches come out as stripes"),
    ("image_to_patches", lambda image, p: _by_hand_patches(image, p).transpose(1, 2), "transpose the last two"),
    ("image_to_patches", lambda image, p: image.unfold(2, p, p).unfold(3, p, p).permute(0, 2, 3, 4, 5, 1)
     .reshape(image.shape[0], -1, image.shape[1] * p * p), "(P, P, C)"),
    ("image_to_patches", lambda image, p: image.unfold(2, p, p).unfold(3, p, p).permute(0, 3, 2, 1, 4, 5)
     .reshape(image.shape[0], -1, image.shape[1] * p * p), "column by column"),
    ("image_to_patches", lambda image, p: _by_hand_patches(image, p).flip(-1), "the values differ"),
    ("image_to_patches", _not_written, "not written yet"),
    ("image_to_patches", lambda image, p: F.unfold(image, p, stride=p).transpose(1, 2),
     "calls `torch.nn.functional.unfold`, which this exercise asks you not to use"),
    ("image_to_patches", lambda image, p: cut_into_columns(image, p, stride=p).transpose(1, 2),
     "calls `torch.nn.functional.unfold`"),
    ("image_to_patches", _unfold_module, "asks you not to use"),
    ("image_to_patches", vitsteps.patches.image_to_patches, "calls `vitsteps.patches.image_to_patches`, which "
                                                            "already solves this exercise"),
    ("image2emb_naive", lambda image, p, w: image.reshape(image.shape[0], -1, w.shape[0]) @ w, "stripes"),
    ("image2emb_naive", lambda image, p, w: (vitsteps.image_to_patches(image, p) @ w).detach(),
     "cut off from autograd"),
    ("weight_to_kernel", lambda w, c, p: w.reshape(-1, c, p, p), "reshape without transpose"),
    ("image2emb_conv", lambda image, k, s: F.conv2d(image, k, stride=s).reshape(image.shape[0], -1, k.shape[0]),
     "without transpose"),
    ("image2emb_conv", lambda image, k, s: F.conv2d(image, k, stride=s).view(image.shape[0], k.shape[0], -1)
     .transpose(1, 2).view(image.shape[0], -1), "use .reshape(...) instead of .view(...)"),
    ("prepend_cls_token", lambda t, c: torch.cat([t, c.expand(t.shape[0], -1, -1)], 1), "must come first"),
    ("prepend_cls_token", lambda t, c: torch.cat([c, t], 1), "expand or slice"),
    ("add_position_embedding", lambda t, table: t, "never added"),
    ("add_position_embedding", lambda t, table: t.add_(table[: t.shape[1]]), "in place"),
    ("add_position_embedding", lambda t, table: t + table[1: t.shape[1] + 1], "off by one"),
    ("split_heads", lambda x, h: x.view(x.shape[0], h, x.shape[1], -1), "without permute"),
    ("split_heads", _remembers_the_first_batch(), "only its batch-mates changed"),
    ("scaled_dot_product", lambda q, k, v: ((q @ k.transpose(-2, -1)).softmax(-1) @ v,
                                            (q @ k.transpose(-2, -1)).softmax(-1)), "not scaled"),
    ("scaled_dot_product", lambda q, k, v: ((q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(-2) @ v,
                                            (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(-2)),
     "dim=-1"),
    ("scaled_dot_product", lambda q, k, v: F.scaled_dot_product_attention(q, k, v), "return weights @ v, weights"),
    ("scaled_dot_product", lambda q, k, v: (_attention(q, k, v)[0], _attention(q, k, v)[1].detach()),
     "the gradient reaching `q` differs from the reference"),
    ("scaled_dot_product", lambda q, k, v: _attention(q, k, v.detach()), "no gradient reaches `v`"),
    ("cls_head_loss", lambda o, head, y: (head(o.mean(1)), F.cross_entropy(head(o.mean(1)), y)), "CLS token alone"),
    ("cls_head_loss", lambda o, head, y: (head(o[:, 0]), F.cross_entropy(head(o[:, 0]).softmax(-1), y)),
     "do not apply softmax"),
    ("cls_head_loss", lambda o, head, y: (head(o[:, 0]), F.cross_entropy(head(o[:, 0]), y).item()), "no .item()"),
    ("cls_head_loss", lambda o, head, y: (head(o[:, 0]).detach(), F.cross_entropy(head(o[:, 0].detach()), y)),
     "no gradient can reach `encoder_output`"),
    ("cls_head_loss", lambda o, head, y: (head(o[:, 0]), F.cross_entropy(head(o[:, 0].detach()), y)),
     "the gradient reaching `encoder_output` differs"),
    ("vit_parameter_count", lambda c: _count(c) - (c.num_patches + 1) * c.embed_dim, "the position table"),
    ("vit_parameter_count", lambda c: _count(c) - c.depth * 3 * c.embed_dim, "qkv bias"),
    ("vit_parameter_count", lambda c: _count(c) + 7 * c.depth, "-7 per block"),
    ("vit_parameter_count", lambda c: str(_count(c)), "expected an int"),
    ("vit_parameter_count", lambda c: vitsteps.model.parameter_formula(c)["total"], "already solves this exercise"),
]


@pytest.mark.parametrize(("name", "wrong", "hint"), MISTAKES, ids=[f"{m[0]}-{m[2][:24]}" for m in MISTAKES])
def test_a_classic_mistake_fails_with_its_hint(name, wrong, hint):
    with pytest.raises(CheckFailed) as failure:
        check(name, wrong)
    message = str(failure.value)
    assert message.startswith(f"✗ check {name!r} failed on configuration")
    assert hint in message
    assert "Traceback" not in message


def test_the_article_case_fails_with_the_difference_and_the_hint_notebook_00_shows():
    with pytest.raises(CheckFailed) as failure:
        check("image_to_patches", lambda image, p: image.reshape(image.shape[0], -1, image.shape[1] * p * p))
    assert str(failure.value).splitlines() == [
        "✗ check 'image_to_patches' failed on configuration 1 (B=1, C=3, H=8, W=8, patch_size=4).",
        "the output: the shape [1, 4, 48] is right but the values differ: max abs difference 4.337 (allowed 1e-05 "
        "+ 0.0001 x |expected|).",
        "hint: " + EXERCISES["image_to_patches"].mistakes[0].hint]


def test_patches_of_the_right_pixels_in_the_wrong_places_are_traced_back_to_the_image():
    def every_second_column(image, p):  # takes columns 0, 2, 4, ... of the image, not a square
        B, C, H, W = image.shape
        return torch.cat([image[:, :, :, 0::2], image[:, :, :, 1::2]], dim=-1).reshape(B, C, H // p, p, W // p, p) \
            .permute(0, 2, 4, 1, 3, 5).reshape(B, -1, C * p * p)

    with pytest.raises(CheckFailed, match=r"your patch 0 holds pixels from rows 0-3, columns 0, 2, 4, 6; it should "
                                          r"hold rows 0-3, columns 0-3"):
        check("image_to_patches", every_second_column)


def test_a_wrong_shape_is_reported_as_expected_versus_got():
    with pytest.raises(CheckFailed, match=r"expected shape \[1, 4, 48\], got \[1, 48, 4\]"):
        check("image_to_patches", lambda image, p: _by_hand_patches(image, p).transpose(1, 2))


def test_a_failure_shows_no_traceback_in_ipython(capsys):
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.user_ns["check"] = check
    result = shell.run_cell("check('image_to_patches', lambda image, p: image.reshape(1, -1, 48))")
    printed = capsys.readouterr()
    assert isinstance(result.error_in_exec, CheckFailed)  # still an error: the cell fails, an autograder scores 0
    assert "✗ check 'image_to_patches' failed" in printed.out + printed.err
    assert "Traceback" not in printed.out + printed.err and ".py" not in printed.out + printed.err


# --------------------------------------------------------------------------------------- references and verdict


@pytest.mark.parametrize("name", list(STAGES))
def test_the_packages_own_stage_passes_on_every_case(name):
    module, attribute, as_exercise = STAGES[name]
    stage = as_exercise(getattr(__import__(module, fromlist=[attribute]), attribute))
    exercise = EXERCISES[name]
    for case in _cases(name) + _cases(name, seed=1):
        assert verdict(exercise, case, stage(*case.args), gradients(stage, case) if case.grad_args else None) is None


@pytest.mark.parametrize("name", list(STAGES))
def test_a_broken_stage_fails_its_own_check(name, monkeypatch):
    """The references do not call the stage they check: a broken stage cannot drag its reference along."""
    module, attribute, as_exercise = STAGES[name]
    namespace = __import__(module, fromlist=[attribute])
    original = getattr(namespace, attribute)

    def broken(*args, **kwargs):
        result = original(*args, **kwargs)
        if isinstance(result, dict):
            return {**result, "total": result["total"] + 1}
        if isinstance(result, tuple):
            return (result[0] * 1.01, *result[1:])
        return result * 1.01

    monkeypatch.setattr(namespace, attribute, broken)
    monkeypatch.setattr(vitsteps, attribute, broken, raising=False)
    stage = as_exercise(getattr(namespace, attribute))
    exercise = EXERCISES[name]
    assert all(verdict(exercise, case, stage(*case.args)) is not None for case in _cases(name))


def test_the_references_import_no_stage_code():
    tree = ast.parse((ROOT / "src/vitsteps/teach/checks/references.py").read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert imported <= {"__future__", "math", "torch", "model"}, imported  # model: ViTConfig, for its type only


def test_verdict_names_what_differs_without_running_student_code():
    exercise = EXERCISES["cls_head_loss"]
    case = _cases("cls_head_loss")[1]
    logits, loss = exercise.reference(*case.args)
    assert verdict(exercise, case, (logits, loss)) is None
    assert "no .item()" in verdict(exercise, case, (logits, loss.item()))
    assert verdict(exercise, case, logits).startswith("expected a tuple of 2 (logits [4, 10], loss [])")
    grads = gradients(exercise.reference, case)
    assert verdict(exercise, case, (logits, loss), grads) is None
    assert "no gradient can reach `encoder_output`" in verdict(exercise, case, (logits, loss), (None,))


def test_the_gradient_weights_depend_on_the_output_shapes_alone():
    case = _cases("scaled_dot_product")[0]
    out, weights = EXERCISES["scaled_dot_product"].reference(*case.args)
    first, again = grad_weights(case, (out, weights)), grad_weights(case, (torch.zeros_like(out), weights * 2))
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert [w.shape for w in first] == [out.shape, weights.shape]
    assert grad_weights(case, 5) == [None]


def test_every_case_holds_only_what_a_grader_can_send_as_plain_data():
    allowed_dtypes = {torch.float32, torch.float64, torch.int64, torch.bool}

    def plain(value: object) -> bool:
        if isinstance(value, torch.Tensor):
            return value.dtype in allowed_dtypes
        if isinstance(value, (tuple, list)):
            return all(plain(item) for item in value)
        return value is None or isinstance(value, (int, float, bool, str, ViTConfig, nn.Linear))

    for name in EXERCISES:
        for case in _cases(name):
            assert plain(case.args) and plain(list(case.kwargs.values())), (name, case.label)
            assert all(isinstance(case.args[i], torch.Tensor) for i in case.grad_args), (name, case.label)


@pytest.mark.parametrize("name", list(EXERCISES))
def test_cases_depend_on_the_seed_alone(name):
    first, again = _cases(name, seed=3), _cases(name, seed=3)
    assert [case.label for case in first] == [case.label for case in again]
    for case, same in zip(first, again, strict=True):
        for value, other in zip(case.args, same.args, strict=True):
            if isinstance(value, torch.Tensor):
                assert torch.equal(value, other)


def test_the_table_names_the_graded_cells_of_the_notebooks():
    solution_cells = {}
    for path in sorted((ROOT / "notebooks").glob("0*.ipynb")):
        for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
            grading = cell.get("metadata", {}).get("nbgrader", {})
            if grading.get("solution"):
                solution_cells[grading["grade_id"]] = (path.stem, "".join(cell["source"]))
    assert {exercise.grade_id for exercise in EXERCISES.values()} == set(solution_cells)
    for exercise in EXERCISES.values():
        notebook, source = solution_cells[exercise.grade_id]
        assert notebook == exercise.notebook and f"def {exercise.name}(" in source, exercise.name


# --- bad input: one case per function and parameter (vitsteps._validate's tests try the bad values) -------------

REFUSED = {
    "check: an unknown exercise":
        (lambda: check("image_to_patch", _by_hand_patches), ValueError,
         r"name must be one of 'image_to_patches', .*got 'image_to_patch'; use the name given in the exercise"),
    "check: a result instead of a function":
        (lambda: check("image_to_patches", _by_hand_patches(torch.zeros(1, 1, 4, 4), 2)), TypeError,
         r"fn must be a function, got a tensor .*; pass the function itself, without calling it"),
    "check: a negative seed":
        (lambda: check("image_to_patches", _by_hand_patches, seed=-1), ValueError, r"seed must be an int >= 0"),
    "check: a seed that is text":
        (lambda: check("image_to_patches", _by_hand_patches, seed="0"), TypeError, r"seed must be an int >= 0"),
}


@refusal_cases(REFUSED)
def test_bad_input_is_refused_naming_the_parameter_the_value_and_the_fix(refusals):
    assert_all_refused(refusals)
