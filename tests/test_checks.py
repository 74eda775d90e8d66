"""The students' self-checks: correct code passes, each classic mistake fails with its hint, no traceback."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import vitsteps
from vitsteps.checks import CheckFailed, check, names
from vitsteps.model import parameter_formula


def _split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    B, L, D = x.shape
    return x.reshape(B, L, num_heads, D // num_heads).transpose(1, 2)  # [B, h, L, d]


def _cls_head_loss(encoder_output, head, labels):
    logits = head(encoder_output[:, 0])  # [B, K]
    return logits, F.cross_entropy(logits, labels)


def _by_hand_patches(image: torch.Tensor, patch_size: int) -> torch.Tensor:
    B, C, H, W = image.shape
    P = patch_size
    grid = image.reshape(B, C, H // P, P, W // P, P).permute(0, 2, 4, 1, 3, 5)  # [B, H/P, W/P, C, P, P]
    return grid.reshape(B, -1, C * P * P)  # [B, N, C*P*P]


CORRECT = {
    "image_to_patches": _by_hand_patches,
    "image2emb_naive": lambda image, patch_size, weight: _by_hand_patches(image, patch_size) @ weight,
    "weight_to_kernel": lambda weight, c, p: weight.T.reshape(-1, c, p, p),
    "image2emb_conv": lambda image, kernel, stride: F.conv2d(image, kernel, stride=stride).flatten(2).transpose(1, 2),
    "prepend_cls_token": lambda tokens, cls: torch.cat([cls.expand(tokens.shape[0], -1, -1), tokens], dim=1),
    "add_position_embedding": lambda tokens, table: tokens + table[: tokens.shape[1]],
    "scaled_dot_product": vitsteps.scaled_dot_product,
    "split_heads": _split_heads,
    "cls_head_loss": _cls_head_loss,
    "vit_parameter_count": lambda config: parameter_formula(config)["total"],
}


def test_every_exercise_name_has_a_correct_solution_here():
    assert set(CORRECT) == set(names())


@pytest.mark.parametrize("name", sorted(CORRECT))
@pytest.mark.parametrize("seed", [0, 1])
def test_a_correct_solution_passes_with_one_line(name, seed, capsys):
    assert check(name, CORRECT[name], seed=seed) is True
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 1 and printed[0].startswith(f"✓ {name}: all checks passed")


def test_the_package_reference_passes_its_own_checks(capsys):
    check("image_to_patches", vitsteps.image_to_patches)
    check("image2emb_naive", vitsteps.patch_embed_unfold)
    check("weight_to_kernel", vitsteps.weight_to_kernel)
    check("image2emb_conv", vitsteps.patch_embed_conv)
    check("prepend_cls_token", vitsteps.prepend_cls_token)
    check("add_position_embedding", vitsteps.add_position_embedding)
    check("vit_parameter_count", lambda config: vitsteps.count_parameters(vitsteps.ViT(config))
          if config.embed_dim < 200 else parameter_formula(config)["total"])
    assert capsys.readouterr().out.count("✓") == 7


def _not_written(*args):
    raise NotImplementedError()


MISTAKES = [
    ("image_to_patches", lambda image, p: image.reshape(image.shape[0], -1, image.shape[1] * p * p),
     "without permute: patches come out as stripes"),
    ("image_to_patches", lambda image, p: F.unfold(image, p, stride=p), "transpose the last two"),
    ("image_to_patches", lambda image, p: image.unfold(2, p, p).unfold(3, p, p).permute(0, 2, 3, 4, 5, 1)
     .reshape(image.shape[0], -1, image.shape[1] * p * p), "(P, P, C)"),
    ("image_to_patches", lambda image, p: image.unfold(2, p, p).unfold(3, p, p).permute(0, 3, 2, 1, 4, 5)
     .reshape(image.shape[0], -1, image.shape[1] * p * p), "column by column"),
    ("image_to_patches", _not_written, "not written yet"),
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
    ("scaled_dot_product", lambda q, k, v: ((q @ k.transpose(-2, -1)).softmax(-1) @ v,
                                            (q @ k.transpose(-2, -1)).softmax(-1)), "not scaled"),
    ("scaled_dot_product", lambda q, k, v: ((q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(-2) @ v,
                                            (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(-2)),
     "dim=-1"),
    ("scaled_dot_product", lambda q, k, v: F.scaled_dot_product_attention(q, k, v), "return weights @ v, weights"),
    ("split_heads", lambda x, h: x.view(x.shape[0], h, x.shape[1], -1), "without permute"),
    ("cls_head_loss", lambda o, head, y: (head(o.mean(1)), F.cross_entropy(head(o.mean(1)), y)), "CLS token alone"),
    ("cls_head_loss", lambda o, head, y: (head(o[:, 0]), F.cross_entropy(head(o[:, 0]).softmax(-1), y)),
     "do not apply softmax"),
    ("cls_head_loss", lambda o, head, y: (head(o[:, 0]), F.cross_entropy(head(o[:, 0]), y).item()), "no .item()"),
    ("vit_parameter_count", lambda c: parameter_formula(c)["total"] - parameter_formula(c)["pos_embed"],
     "the position table"),
    ("vit_parameter_count", lambda c: parameter_formula(c)["total"] - c.depth * 3 * c.embed_dim, "qkv bias"),
    ("vit_parameter_count", lambda c: str(parameter_formula(c)["total"]), "expected an int"),
]


@pytest.mark.parametrize(("name", "wrong", "hint"), MISTAKES, ids=[f"{m[0]}-{m[2][:20]}" for m in MISTAKES])
def test_a_classic_mistake_fails_with_its_hint(name, wrong, hint):
    with pytest.raises(CheckFailed) as failure:
        check(name, wrong)
    message = str(failure.value)
    assert message.startswith(f"✗ check {name!r} failed on configuration")
    assert hint in message
    assert "Traceback" not in message


def test_a_failure_names_the_configuration_the_shapes_and_the_difference():
    with pytest.raises(CheckFailed) as failure:
        check("image_to_patches", lambda image, p: image.reshape(image.shape[0], -1, image.shape[1] * p * p))
    message = str(failure.value)
    assert "configuration 1 (B=1, C=3, H=8, W=8, patch_size=4)" in message
    assert "[1, 4, 48]" in message and "max abs difference" in message


def test_a_wrong_shape_is_reported_as_expected_versus_got():
    with pytest.raises(CheckFailed, match=r"expected shape \[1, 4, 48\], got \[1, 48, 4\]"):
        check("image_to_patches", lambda image, p: F.unfold(image, p, stride=p))


def test_a_failure_shows_no_traceback_in_ipython(capsys):
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.user_ns["check"] = check
    result = shell.run_cell("check('image_to_patches', lambda image, p: image.reshape(1, -1, 48))")
    printed = capsys.readouterr()
    assert isinstance(result.error_in_exec, CheckFailed)  # still an error: the cell fails, an autograder scores 0
    assert "✗ check 'image_to_patches' failed" in printed.out + printed.err
    assert "Traceback" not in printed.out + printed.err and "checks.py" not in printed.out + printed.err


def test_check_leaves_the_global_random_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    check("cls_head_loss", _cls_head_loss)
    assert torch.equal(torch.rand(3), expected)


def test_an_unknown_name_raises_value_error_listing_the_names():
    with pytest.raises(ValueError, match="image_to_patches") as error:
        check("image_to_patch", _by_hand_patches)
    assert "'image_to_patch'" in str(error.value)


def test_a_function_that_is_not_callable_raises_type_error():
    with pytest.raises(TypeError, match="without calling it"):
        check("image_to_patches", _by_hand_patches(torch.zeros(1, 1, 4, 4), 2))


@pytest.mark.parametrize("seed", [-1, 1.5, True, "0"])
def test_a_bad_seed_raises_type_error(seed):
    with pytest.raises(TypeError, match="seed"):
        check("image_to_patches", _by_hand_patches, seed=seed)
