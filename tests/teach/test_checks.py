"""vitsteps.teach.checks: correct code passes, each classic mistake fails with its hint, ruled-out calls are caught,
the references agree with the package yet do not depend on it, and the table matches the notebooks."""
from __future__ import annotations

import ast
import json
import math
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from helpers import assert_all_refused, refusal_cases
from torch import nn
from torch.nn.functional import unfold as cut_into_columns
from vitcourse.judge.exercises import EXERCISES, verdict

import vitsteps
import vitsteps.teach.buggy
from vitsteps.model import ViTConfig
from vitsteps.teach.checks import Case, CheckFailed, check, grad_weights, gradients, names

ROOT = Path(__file__).resolve().parents[2]


def _windows(image: torch.Tensor, patch_size: int, stride: int) -> torch.Tensor:
    """Overlapping windows by `Tensor.unfold` (not `F.unfold`): one axis at a time, then the axes moved."""
    B, C = image.shape[:2]
    P = patch_size
    grid = image.unfold(2, P, stride).unfold(3, P, stride)  # [B, C, rows, cols, P, P]
    return grid.permute(0, 2, 3, 1, 4, 5).reshape(B, -1, C * P * P)  # [B, N, C*P*P]


def _by_hand_patches(image: torch.Tensor, patch_size: int) -> torch.Tensor:
    B, C, H, W = image.shape
    P = patch_size
    grid = image.reshape(B, C, H // P, P, W // P, P).permute(0, 2, 4, 1, 3, 5)  # [B, H/P, W/P, C, P, P]
    return grid.reshape(B, -1, C * P * P)  # [B, N, C*P*P]


def _padded_embedding(image, patch_size, weight):
    H, W = image.shape[-2:]
    padded = F.pad(image, (0, -W % patch_size, 0, -H % patch_size))  # [B, C, H', W']
    return _by_hand_patches(padded, patch_size) @ weight  # [B, N, D]


def _kernel_from_rows_pixel_first(weight, in_chans, patch_size):
    return weight.reshape(patch_size, patch_size, in_chans, -1).permute(3, 2, 0, 1)  # [D, C, P, P]


def _hybrid(image, stem_kernel, kernel, stride):
    features = F.relu(F.conv2d(image, stem_kernel, padding=1))  # [B, C', H, W]
    return F.conv2d(features, kernel, stride=stride).flatten(2).transpose(1, 2)  # [B, N, D]


def _patch_dropout(tokens, cls, keep):
    kept = tokens.gather(1, keep.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))  # [B, K, D]
    return torch.cat([cls.expand(len(tokens), -1, -1), kept], dim=1)  # [B, 1+K, D]


def _resampled_positions(tokens, table):
    new, old, D = math.isqrt(tokens.shape[1] - 1), math.isqrt(table.shape[0] - 1), table.shape[1]
    grid = table[1:].reshape(1, old, old, D).permute(0, 3, 1, 2)  # [1, D, g, g]
    grid = F.interpolate(grid, size=(new, new), mode="bicubic", align_corners=False)  # [1, D, n, n]
    return tokens + torch.cat([table[:1], grid.permute(0, 2, 3, 1).reshape(new * new, D)])  # [B, L, D]


def _split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    L, B, D = x.shape
    return x.reshape(L, B, num_heads, D // num_heads).permute(1, 2, 0, 3)  # [B, h, L, d]


def _attention(q, k, v, mask):
    scores = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).masked_fill(~mask, float("-inf"))  # [..., L, L]
    weights = scores.softmax(dim=-1)  # [..., L, L]
    return weights @ v, weights


def _cls_head_loss(encoder_output, head, labels, smoothing):
    logits = head(encoder_output[:, 0])  # [B, K]
    K = logits.shape[1]
    targets = F.one_hot(labels, K) * (1 - smoothing) + smoothing / K  # [B, K]
    return logits, -(targets * logits.log_softmax(dim=1)).sum(dim=1).mean()


def _count(config: ViTConfig) -> int:
    D, H, K = config.embed_dim, config.mlp_hidden, config.num_classes
    block = 4 * D + (3 * D * D + 3 * D * config.qkv_bias) + (D * D + D) + (D * H + H) + (H * D + D)
    positions = (config.num_patches + 1) * D if config.pos_embed == "learn" else 0
    head = D * K + K if K else 0
    return config.in_chans * config.patch_size ** 2 * D + D + D + positions + config.depth * block + 2 * D + head


def _heads_attention(x, qkv, proj, num_heads):
    B, L, D = x.shape
    q, k, v = qkv(x).reshape(B, L, 3, num_heads, D // num_heads).permute(2, 0, 3, 1, 4)  # 3 x [B, h, L, d]
    weights = (q @ k.transpose(-2, -1) / math.sqrt(D // num_heads)).softmax(dim=-1)  # [B, h, L, L]
    return proj((weights @ v).transpose(1, 2).reshape(B, L, D))  # [B, L, D]


def _embed_tokens(patches, patch_proj, cls_token, pos_embed):
    tokens = torch.cat([cls_token.expand(len(patches), -1, -1), patch_proj(patches)], dim=1)  # [B, L, D]
    return tokens + pos_embed


def _encoder_block(x, norm1, norm2, qkv, proj, fc1, fc2, num_heads):
    D = x.shape[-1]
    x = x + _heads_attention(F.layer_norm(x, (D,), *norm1, eps=1e-6), qkv, proj, num_heads)  # [B, L, D]
    return x + fc2(F.gelu(fc1(F.layer_norm(x, (D,), *norm2, eps=1e-6))))  # [B, L, D]


def _shift(images, offsets):
    """Pad by the largest offset, then read each image's window back out (a gather, not the reference's copies)."""
    s = int(offsets.abs().max()) if len(offsets) else 0
    padded = F.pad(images, (s, s, s, s))  # [B, C, H+2s, W+2s]
    H, W = images.shape[-2:]
    return torch.stack([image[:, s - down:s - down + H, s - right:s - right + W]
                        for image, (down, right) in zip(padded, offsets.tolist(), strict=True)])  # [B, C, H, W]


def _distance(attention, grid, patch):
    weights = attention[:, :, 1:, 1:] / attention[:, :, 1:, 1:].sum(-1, keepdim=True)  # [B, h, N, N]
    rows, cols = torch.div(torch.arange(grid * grid), grid, rounding_mode="floor"), torch.arange(grid * grid) % grid
    distances = patch * torch.hypot((rows[:, None] - rows).float(), (cols[:, None] - cols).float())  # [N, N]
    return torch.einsum("bhqk,qk->h", weights, distances.to(attention.dtype)) / (len(attention) * grid * grid)


def _mean_ranks(values):
    _, inverse, counts = torch.unique(values, return_inverse=True, return_counts=True)
    return ((counts.cumsum(0) - counts) + (counts - 1) / 2)[inverse].double()  # [n]


def _layout(table, grid):
    unit = F.normalize(table, dim=1)  # [N, D]
    rows, cols = torch.div(torch.arange(grid * grid), grid, rounding_mode="floor"), torch.arange(grid * grid) % grid
    i, j = torch.triu_indices(grid * grid, grid * grid, offset=1)  # [2, pairs]
    ranks = [_mean_ranks(v) for v in ((unit[i] * unit[j]).sum(1), (rows[i] - rows[j]) ** 2 + (cols[i] - cols[j]) ** 2)]
    return float(torch.corrcoef(torch.stack(ranks))[0, 1])


CORRECT = {
    "num_tokens": lambda height, width, patch_size: (height // patch_size) * (width // patch_size) + 1,
    "image_to_windows": _windows,
    "image2emb_padded": _padded_embedding,
    "weight_to_kernel": _kernel_from_rows_pixel_first,
    "image2emb_stem": _hybrid,
    "prepend_cls_token": _patch_dropout,
    "add_position_embedding": _resampled_positions,
    "split_heads": _split_heads,
    "scaled_dot_product": _attention,
    "cls_head_loss": _cls_head_loss,
    "vit_parameter_count": _count,
    "shift_images": _shift,
    "attention_distance": _distance,
    "layout_score": _layout,
    "cut_patches": _by_hand_patches,
    "embed_tokens": _embed_tokens,
    "classify": lambda x, norm, head: head(F.layer_norm(x[:, 0], x.shape[-1:], *norm, eps=1e-6)),
    "attention": _heads_attention,
    "encoder_block": _encoder_block,
}


def _rows_pixel_first(weight, in_chans, patch_size):
    """The package's kernel for unfold's row order, given the same weight with its rows put in that order."""
    P, C = patch_size, in_chans
    order = torch.arange(C * P * P).reshape(P, P, C).permute(2, 0, 1).reshape(-1)  # channel-first row -> its row here
    return vitsteps.patches.weight_to_kernel(weight[order], C, P)


# each exercise solved with the package's own stages (or PyTorch's), called as the exercise calls it
STAGES = {
    "image_to_windows": lambda image, p, s: F.unfold(image, p, stride=s).transpose(1, 2),
    "image2emb_padded": lambda image, p, w: vitsteps.patches.patch_embed_unfold(
        F.pad(image, (0, -image.shape[-1] % p, 0, -image.shape[-2] % p)), p, w),
    "weight_to_kernel": _rows_pixel_first,
    "image2emb_stem": lambda image, stem, kernel, stride: vitsteps.patches.patch_embed_conv(
        F.relu(F.conv2d(image, stem, padding=1)), kernel, stride),
    "prepend_cls_token": lambda tokens, cls, keep: vitsteps.tokens.prepend_cls_token(
        torch.stack([t[k] for t, k in zip(tokens, keep, strict=True)]), cls),
    "add_position_embedding": lambda tokens, table: tokens + vitsteps.tokens.resample_position_table(
        table, math.isqrt(tokens.shape[1] - 1)),
    "scaled_dot_product": lambda q, k, v, mask: (F.scaled_dot_product_attention(q, k, v, attn_mask=mask), None),
    "cls_head_loss": lambda x, head, labels, smoothing: (head(x[:, 0]), F.cross_entropy(
        head(x[:, 0]), labels, label_smoothing=smoothing)),
    "vit_parameter_count": lambda config: vitsteps.count_parameters(_on_meta(config)),
    "attention_distance": lambda attention, grid, patch: vitsteps.analysis.mean_attention_distance(
        [attention], grid, patch)[0],
    "layout_score": lambda table, grid: vitsteps.analysis.position_rank_correlation(table, grid, 1, 0),
    "cut_patches": vitsteps.patches.image_to_patches,
    "embed_tokens": lambda patches, proj, cls, pos: vitsteps.tokens.prepend_cls_token(proj(patches), cls) + pos,
    "attention": lambda x, qkv, proj, h: _package_attention(x, qkv, proj, h),
    "encoder_block": lambda *args: _package_block(*args),
    "classify": lambda x, norm, head: _package_readout(x, norm, head),
}


def _package_readout(x, norm, head):
    layer = nn.LayerNorm(x.shape[-1], eps=1e-6)
    with torch.no_grad():
        layer.weight.copy_(norm[0])
        layer.bias.copy_(norm[1])
    return head(layer(x)[:, 0])


def _on_meta(config):
    with torch.device("meta"):  # shapes only: ViT-B/16 is counted without filling 86M weights
        return vitsteps.ViT(config)


def _package_attention(x, qkv, proj, num_heads):
    attention = vitsteps.encoder.Attention(x.shape[-1], num_heads)
    attention.qkv, attention.proj = qkv, proj
    return attention(x)


def _package_block(x, norm1, norm2, qkv, proj, fc1, fc2, num_heads):
    block = vitsteps.encoder.Block(x.shape[-1], num_heads, mlp_ratio=fc1.out_features / x.shape[-1])
    block.attn.qkv, block.attn.proj, block.mlp.fc1, block.mlp.fc2 = qkv, proj, fc1, fc2
    with torch.no_grad():
        for norm, (weight, bias) in ((block.norm1, norm1), (block.norm2, norm2)):
            norm.weight.copy_(weight)
            norm.bias.copy_(bias)
    return block(x)


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
    check("image_to_windows", _windows)
    assert len(_cases("image_to_windows")) == 9  # 5 configurations, 4 of them again with other batch-mates
    assert capsys.readouterr().out == ("✓ image_to_windows: all checks passed on 5 configurations (shapes, values vs "
                                       "the reference, window order, no F.unfold, gradients, batch independence).\n")


def test_check_leaves_the_global_random_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    check("cls_head_loss", _cls_head_loss)
    assert torch.equal(torch.rand(3), expected)


# --------------------------------------------------------------------------------------- mistakes


def _as_student(exercise, mistake):
    """The mistake as a student's function: the mistake's output where it can happen (values it leaves open, None,
    taken from the reference), the right answer elsewhere."""
    def student(*args):
        expected = exercise.reference(*args)
        try:
            wrong = mistake.imitate(*args)
        except Exception:  # noqa: BLE001 - this mistake cannot show on these arguments
            return expected
        if isinstance(wrong, tuple) and isinstance(expected, tuple):
            return tuple(e if w is None else w for w, e in zip(wrong, expected, strict=True))
        return wrong
    return student


TABLE_MISTAKES = [(name, index) for name, exercise in EXERCISES.items() for index in range(len(exercise.mistakes))]


@pytest.mark.parametrize(("name", "index"), TABLE_MISTAKES,
                         ids=[f"{name}-{EXERCISES[name].mistakes[index].name}" for name, index in TABLE_MISTAKES])
def test_every_mistake_of_the_table_fails_with_its_own_hint(name, index):
    exercise = EXERCISES[name]
    mistake = exercise.mistakes[index]
    with pytest.raises(CheckFailed) as failure:
        check(name, _as_student(exercise, mistake))
    assert "hint: " + mistake.hint in str(failure.value), "another mistake's hint came first"


@pytest.mark.parametrize("name", list(EXERCISES))
def test_every_exercise_recognises_at_least_three_classic_mistakes_and_no_hint_gives_code(name):
    exercise = EXERCISES[name]
    assert len(exercise.mistakes) >= 3
    for mistake in exercise.mistakes:
        code = re.findall(r"\w+\(.*\)|\.\w+\(|\[:\s*\w+\]|\w+\s*=\s*\w+\.", mistake.hint)
        assert not code, (mistake.name, code)


def _not_written(*args):
    raise NotImplementedError()


def _unfold_module(image, p, s):
    return nn.Unfold(p, stride=s)(image).transpose(1, 2)


def _remembers_the_first_batch():
    """A split_heads that answers a batch of a shape it has seen with the answer for the first such batch."""
    seen = {}

    def split_heads(x, num_heads):
        first = seen.setdefault((tuple(x.shape), num_heads), x.detach().clone())
        return _split_heads(x if torch.equal(x, first) else first, num_heads)

    return split_heads


MISTAKES = [
    ("image_to_windows", lambda image, p, s: _windows(image, p, s).flip(-1), "the values differ"),
    ("image_to_windows", _not_written, "not written yet"),
    ("image_to_windows", lambda image, p, s: F.unfold(image, p, stride=s).transpose(1, 2),
     "calls `torch.nn.functional.unfold`, which this exercise asks you not to use"),
    ("image_to_windows", lambda image, p, s: cut_into_columns(image, p, stride=s).transpose(1, 2),
     "calls `torch.nn.functional.unfold`"),
    ("image_to_windows", _unfold_module, "asks you not to use"),
    ("image_to_windows", lambda image, p, s: vitsteps.patches.image_to_patches(image, p),
     "calls `vitsteps.patches.image_to_patches`, which already solves this exercise"),
    ("image2emb_padded", lambda image, p, w: _padded_embedding(image, p, w).detach(), "cut off from autograd"),
    ("image2emb_stem", lambda image, stem, k, s: F.conv2d(F.relu(F.conv2d(image, stem, padding=1)), k, stride=s)
     .view(image.shape[0], k.shape[0], -1).transpose(1, 2).view(image.shape[0], -1), "use .reshape(...) instead"),
    ("prepend_cls_token", lambda t, c, keep: torch.cat([c, t[:, :keep.shape[1]]], 1), "expand or slice"),
    ("add_position_embedding", lambda t, table: t.add_(table[: t.shape[1]]), "in place"),
    ("split_heads", _remembers_the_first_batch(), "only its batch-mates changed"),
    ("scaled_dot_product", lambda q, k, v, mask: F.scaled_dot_product_attention(q, k, v, attn_mask=mask),
     "calls `torch.nn.functional.scaled_dot_product_attention`, which this exercise asks you not to use"),
    ("scaled_dot_product", lambda q, k, v, mask: (_attention(q, k, v, mask)[0], _attention(q, k, v, mask)[1].detach()),
     "the gradient reaching `q` differs from the reference"),
    ("scaled_dot_product", lambda q, k, v, mask: _attention(q, k, v.detach(), mask), "no gradient reaches `v`"),
    ("cls_head_loss", lambda o, head, y, s: (head(o[:, 0]), F.cross_entropy(head(o[:, 0]), y, label_smoothing=s)),
     "calls `torch.nn.functional.cross_entropy`"),
    ("cls_head_loss", lambda o, head, y, s: (head(o[:, 0]), nn.CrossEntropyLoss(label_smoothing=s)(head(o[:, 0]), y)),
     "calls `torch.nn.CrossEntropyLoss`"),
    ("cls_head_loss", lambda o, head, y, s: (head(o[:, 0]).detach(), _cls_head_loss(o.detach(), head, y, s)[1]),
     "no gradient can reach `encoder_output`"),
    ("cls_head_loss", lambda o, head, y, s: (head(o[:, 0]), _cls_head_loss(o.detach(), head, y, s)[1]),
     "the gradient reaching `encoder_output` differs"),
    ("vit_parameter_count", lambda c: _count(c) + 7 * c.depth, "-7 per block"),
    ("vit_parameter_count", lambda c: str(_count(c)), "expected an int"),
    ("vit_parameter_count", lambda c: vitsteps.model.parameter_formula(c)["total"], "already solves this exercise"),
    ("attention", lambda x, qkv, proj, h: _package_attention(x, qkv, proj, h), "already solves this exercise"),
    ("classify", vitsteps.teach.buggy.TrustedStage("classify"), "already solves this exercise"),
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
        check("num_tokens", lambda height, width, patch_size: (height // patch_size) * (width // patch_size))
    assert str(failure.value).splitlines() == [
        "✗ check 'num_tokens' failed on configuration 1 (height=8, width=8, patch_size=4).",
        "expected 5 tokens, got 4 (off by -1).",
        "hint: " + EXERCISES["num_tokens"].mistakes[0].hint]


def test_windows_of_the_right_pixels_in_the_wrong_places_are_traced_back_to_the_image():
    def every_second_column(image, p, s):  # takes columns 0, 2, 4, ... of the image first
        return _windows(torch.cat([image[..., 0::2], image[..., 1::2]], dim=-1), p, s)

    with pytest.raises(CheckFailed, match=r"your window 0 holds pixels from rows 0-3, columns 0, 2, 4, 6; it should "
                                          r"hold rows 0-3, columns 0-3 \(window 0 is number 0 in row 0 of windows"):
        check("image_to_windows", every_second_column)


def test_a_wrong_shape_is_reported_as_expected_versus_got():
    with pytest.raises(CheckFailed, match=r"expected shape \[1, 9, 48\], got \[1, 4, 48\]"):
        check("image_to_windows", lambda image, p, s: _by_hand_patches(image, p))


def test_a_failure_shows_no_traceback_in_ipython(capsys):
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.user_ns["check"] = check
    result = shell.run_cell("check('num_tokens', lambda height, width, patch_size: height * width)")
    printed = capsys.readouterr()
    assert isinstance(result.error_in_exec, CheckFailed)  # still an error: the cell fails, an autograder scores 0
    assert "✗ check 'num_tokens' failed" in printed.out + printed.err
    assert "Traceback" not in printed.out + printed.err and ".py" not in printed.out + printed.err


# --------------------------------------------------------------------------------------- references and verdict


@pytest.mark.parametrize("name", list(STAGES))
def test_the_reference_agrees_with_pytorchs_or_the_packages_own_route_on_every_case(name):
    exercise = EXERCISES[name]
    for case in _cases(name) + _cases(name, seed=1):
        expected = exercise.reference(*case.args)
        got = STAGES[name](*case.args)
        for value, other in zip(expected if isinstance(expected, tuple) else (expected,),
                                got if isinstance(got, tuple) else (got,), strict=True):
            if other is None:
                continue
            if isinstance(value, int):
                assert value == other, case.label
            elif isinstance(value, float):
                assert value == pytest.approx(other, abs=1e-5), case.label
            else:
                assert torch.allclose(value, other, atol=1e-5), case.label


def test_the_references_import_no_stage_code():
    tree = ast.parse((ROOT / "instructor/vitcourse/judge/references.py").read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert imported <= {"__future__", "math", "torch", "torch.nn.functional", "vitsteps.model"}, imported  # ViTConfig


def test_verdict_names_what_differs_without_running_student_code():
    exercise = EXERCISES["cls_head_loss"]
    case = _cases("cls_head_loss")[1]
    logits, loss = exercise.reference(*case.args)
    assert verdict(exercise, case, (logits, loss)) is None
    assert "a Python number is cut off from autograd" in verdict(exercise, case, (logits, loss.item()))
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
         r"name must be one of 'num_tokens', 'image_to_windows', .*got 'image_to_patch'; use the name given in the "
         r"exercise"),
    "check: a result instead of a function":
        (lambda: check("image_to_windows", _by_hand_patches(torch.zeros(1, 1, 4, 4), 2)), TypeError,
         r"fn must be a function, got a tensor .*; pass the function itself, without calling it"),
    "check: a negative seed":
        (lambda: check("image_to_windows", _by_hand_patches, seed=-1), ValueError,
         r"seed must be an int from 0 to 1, got -1; the package ships public cases for seeds 0 and 1 only"),
    "check: a seed with no public cases":
        (lambda: check("image_to_windows", _by_hand_patches, seed=2), ValueError, r"seed must be an int from 0 to 1"),
    "check: a seed that is text":
        (lambda: check("image_to_windows", _by_hand_patches, seed="0"), TypeError, r"seed must be an int from 0 to 1"),
}


@refusal_cases(REFUSED)
def test_bad_input_is_refused_naming_the_parameter_the_value_and_the_fix(refusals):
    assert_all_refused(refusals)


# --------------------------------------------------------------------------------------- the public cases


def test_the_shipped_public_cases_are_what_the_table_gives_today():
    from vitcourse.judge import public_cases

    shipped = torch.load(public_cases.SHIPPED, weights_only=True)
    assert public_cases.differences(shipped, public_cases.build()) == []


def test_a_changed_reference_makes_the_shipped_cases_stale(monkeypatch):
    from vitcourse.judge import public_cases

    shipped = torch.load(public_cases.SHIPPED, weights_only=True)
    exercise = EXERCISES["num_tokens"]
    monkeypatch.setitem(EXERCISES, "num_tokens", exercise.__class__(**{
        **{field: getattr(exercise, field) for field in exercise.__dataclass_fields__},
        "reference": lambda height, width, patch_size: exercise.reference(height, width, patch_size) + 1}))
    assert "/exercises/num_tokens/seeds/0/0/expected" in public_cases.differences(shipped, public_cases.build())


def test_the_student_package_holds_no_reference_and_no_mistakes_code():
    package = ROOT / "src/vitsteps/teach/checks"
    assert not (package / "references.py").exists() and not (package / "exercises.py").exists()
    from vitsteps.teach.checks import EXERCISES as PUBLIC

    assert list(PUBLIC) == list(EXERCISES)
    for name, exercise in PUBLIC.items():
        assert exercise.reference is None and exercise.make_cases is None, name
        assert all(mistake.imitate is None for mistake in exercise.mistakes), name
        assert [m.hint for m in exercise.mistakes] == [m.hint for m in EXERCISES[name].mistakes], name
        assert exercise.arg_names == EXERCISES[name].arg_names, name
