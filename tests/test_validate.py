"""vitsteps._validate: every input check of the package, one parametrised test each.

Each check is tried with the bad values it must refuse; the message must name the parameter, show the value and
end with a fix (`assert_refused`). The modules' own test files then need one bad-input case per parameter only.
"""
from __future__ import annotations

import dataclasses
import re

import pytest
import torch
from helpers import assert_refused, words_for

from vitsteps import _validate


def test_every_check_returns_what_it_accepts():
    image = torch.rand(1, 3, 8, 8)
    assert _validate.positive_int(4, "n") == 4 and _validate.non_negative_int(0, "n") == 0
    assert _validate.int_in(9, "digit", 0, 9) == 9
    assert _validate.number_in(0.5, "p", 0, 1) == 0.5 and _validate.positive_number(1e-6, "eps", "1e-6") == 1e-6
    assert _validate.probability(0.0, "drop") == 0.0 and _validate.flag(False, "progress") is False
    assert _validate.instance("toy", "name", str, "a str", "fix") == "toy"
    assert _validate.one_of("max", "head_fusion", ("mean", "max")) == "max"
    assert _validate.pair(8, "img_size") == (8, 8) and _validate.pair((8, 12), "img_size") == (8, 12)
    assert _validate.tensor(image, "image", 4, "[B, C, H, W]") is image
    assert _validate.labels(torch.tensor([1, 2]), "labels", 2).tolist() == [1, 2]
    assert _validate.mlp_hidden(8, 2.5) == 20
    assert _validate.counts({"a": 1, "total": 1}, "parts", "fix") == {"a": 1, "total": 1}
    _validate.divides(4, 8, "patch_size", "height")
    _validate.heads(8, 2)


@pytest.mark.parametrize("value, error", [(0, ValueError), (-3, ValueError), (2.0, TypeError), (True, TypeError),
                                          ("4", TypeError), (None, TypeError)])
def test_positive_int(value, error):
    assert_refused(lambda: _validate.positive_int(value, "patch_size"), error,
                   rf"^patch_size must be a positive int, got {words_for(value)}.*; pass a whole number")


@pytest.mark.parametrize("value, error", [(-1, ValueError), (1.0, TypeError), (False, TypeError)])
def test_non_negative_int(value, error):
    assert_refused(lambda: _validate.non_negative_int(value, "seed"), error,
                   rf"^seed must be an int >= 0, got {words_for(value)}")


@pytest.mark.parametrize("value, error", [(-1, ValueError), (10, ValueError), (3.0, TypeError), (True, TypeError)])
def test_int_in(value, error):
    assert_refused(lambda: _validate.int_in(value, "digit", 0, 9, "pass e.g. 3"), error,
                   rf"^digit must be an int from 0 to 9, got {words_for(value)}.*; pass e\.g\. 3\.$")


@pytest.mark.parametrize("value, low_open, high_open, error, requirement", [
    (0, True, True, ValueError, r"a number in \(0, 1\)"),
    (1, False, True, ValueError, r"a number in \[0, 1\)"),
    (1.5, False, False, ValueError, r"a number in \[0, 1\]"),
    (float("nan"), False, False, ValueError, r"a number in \[0, 1\]"),
    ("0.5", False, False, TypeError, r"a number in \[0, 1\]"),
    (True, False, False, TypeError, r"a number in \[0, 1\]"),
])
def test_number_in(value, low_open, high_open, error, requirement):
    assert_refused(lambda: _validate.number_in(value, "test_size", 0, 1, low_open=low_open, high_open=high_open,
                                               example="0.2"), error,
                   rf"^test_size must be {requirement}, got {words_for(value)}.*; pass e\.g\. 0\.2\.$")


@pytest.mark.parametrize("value, error", [(0, ValueError), (-1e-6, ValueError), (float("inf"), ValueError),
                                          ("1e-6", TypeError), (None, TypeError)])
def test_positive_number(value, error):
    assert_refused(lambda: _validate.positive_number(value, "norm_eps", "1e-6"), error,
                   rf"^norm_eps must be a number > 0, got {words_for(value)}.*; pass e\.g\. 1e-6")


@pytest.mark.parametrize("value, error", [(1.0, ValueError), (-0.1, ValueError), ("0.1", TypeError)])
def test_probability(value, error):
    assert_refused(lambda: _validate.probability(value, "drop"), error,
                   rf"^drop must be a number in \[0, 1\), got {words_for(value)}.*no dropout")


@pytest.mark.parametrize("value", [1, "True", None])
def test_flag(value):
    assert_refused(lambda: _validate.flag(value, "qkv_bias"), TypeError,
                   rf"^qkv_bias must be True or False, got {words_for(value)} of type")


@pytest.mark.parametrize("value", [{"embed_dim": 8}, None, True])
def test_instance(value):
    assert_refused(lambda: _validate.instance(value, "config", (int, dict) if value is True else str,
                                              "a preset name (str)", "use get_config('toy')"), TypeError,
                   rf"^config must be a preset name \(str\), got {re.escape(repr(value))} of type \w+; use get_")


@pytest.mark.parametrize("value", ["Max", 1, True, None])
def test_one_of(value):
    assert_refused(lambda: _validate.one_of(value, "head_fusion", ("mean", "max")), ValueError,
                   rf"^head_fusion must be one of 'mean', 'max', got {words_for(value)}; choose one of")


@pytest.mark.parametrize("value, error, words", [
    ((8, 8, 3), ValueError, r"^img_size must be an int or a \(height, width\) pair, got \(8, 8, 3\); pass e\.g\. 8"),
    ((8, 0), ValueError, r"^img_size\[1\] must be a positive int, got 0"),
    ((8.0, 8), TypeError, r"^img_size\[0\] must be a positive int, got 8\.0"),
    (0, ValueError, r"^img_size must be a positive int, got 0; pass e\.g\. 8 or \(8, 8\)"),
    ("8", TypeError, r"^img_size must be a positive int, got '8'"),
])
def test_pair(value, error, words):
    assert_refused(lambda: _validate.pair(value, "img_size"), error, words)


@pytest.mark.parametrize("value, error, words", [
    ([[0.0]], TypeError, r"image must be a torch\.Tensor shaped \[B, C, H, W\], got \[\[0\.0\]\] of type list; "
                         r"convert it with torch\.as_tensor"),
    (torch.rand(3, 8, 8), ValueError, r"image must be a tensor with 4 dimensions \[B, C, H, W\], got a tensor of "
                                      r"shape \(3, 8, 8\).*; add a batch dimension with \.unsqueeze\(0\)"),
    (torch.rand(8, 8), ValueError, r"got a tensor of shape \(8, 8\).*; reshape it to \[B, C, H, W\]"),
    (torch.zeros(1, 3, 8, 8, dtype=torch.uint8), TypeError,
     r"image must be a floating-point tensor, got a tensor .* dtype torch\.uint8; convert it with \.float\(\)"),
])
def test_tensor(value, error, words):
    assert_refused(lambda: _validate.tensor(value, "image", 4, "[B, C, H, W]"), error, words)


@pytest.mark.parametrize("value, error", [(torch.zeros(3), TypeError), ([0, 1, 2], TypeError),
                                          (torch.zeros(3, 1).long(), ValueError), (torch.zeros(2).long(), ValueError),
                                          (torch.zeros(3, dtype=torch.bool), TypeError)])
def test_labels(value, error):
    assert_refused(lambda: _validate.labels(value, "labels", 3), error,
                   r"^labels must be a 1-D integer tensor \[n\] of class indices with n=3")


def test_divides():
    assert_refused(lambda: _validate.divides(3, 8, "patch_size", "width"), ValueError,
                   r"^patch_size=3 does not divide the image width 8: .* remainder of 2; pick a patch size")


@pytest.mark.parametrize("dim, num_heads, error, words", [
    (12, 5, ValueError,
     r"^embed_dim=12 is not divisible by num_heads=5: .*; pick num_heads from \[1, 2, 3, 4, 6, 12\]"),
    (0, 2, ValueError, r"^embed_dim must be a positive int, got 0"),
    (8, 2.0, TypeError, r"^num_heads must be a positive int, got 2\.0"),
])
def test_heads(dim, num_heads, error, words):
    assert_refused(lambda: _validate.heads(dim, num_heads), error, words)


@pytest.mark.parametrize("ratio, error, words", [
    (0.1, ValueError, r"^mlp_ratio=0\.1 gives an MLP hidden width of int\(8 \* 0\.1\) = 0; use mlp_ratio >= 0\.125"),
    (0, ValueError, r"^mlp_ratio must be a number > 0, got 0"),
    ("4", TypeError, r"^mlp_ratio must be a number > 0, got '4'"),
])
def test_mlp_hidden(ratio, error, words):
    assert_refused(lambda: _validate.mlp_hidden(8, ratio), error, words)


@pytest.mark.parametrize("parts, error, words", [
    ({}, TypeError, r"^parts must be a non-empty dict of part name to count, got \{\}"),
    ([("a", 1)], TypeError, r"^parts must be a non-empty dict"),
    ({"total": 5}, ValueError, r"^parts must be a dict with at least one part besides 'total'"),
    ({"a": -1}, ValueError, r"^parts\['a'\] must be an int >= 0, got -1"),
    ({"a": 2.5}, TypeError, r"^parts\['a'\] must be an int >= 0, got 2\.5"),
])
def test_counts(parts, error, words):
    assert_refused(lambda: _validate.counts(parts, "parts", "pass parameter_formula(config)"), error, words)


def test_replace_fields():
    @dataclasses.dataclass(frozen=True)
    class Settings:
        epochs: int = 1

    assert _validate.replace_fields(Settings(), {"epochs": 3}) == Settings(3)
    assert_refused(lambda: _validate.replace_fields(Settings(), {"epoch": 3}), TypeError,
                   r"^Settings has no field \['epoch'\]; its fields are \['epochs'\]")


def test_a_value_is_shown_short_a_tensor_by_its_shape_and_never_by_its_address():
    assert len(_validate.shown(list(range(1000)))) < 40
    assert _validate.shown(torch.zeros(2, 3)) == "a tensor of shape (2, 3) and dtype torch.float32"
    assert _validate.shown(len) == "the function len" and _validate.shown(dict) == "the class dict"
    assert _validate.shown(object()) == "an object object"


def test_the_packages_errors_are_value_and_type_errors_that_ipython_shows_as_one_line(capsys):
    from IPython.core.interactiveshell import InteractiveShell

    import vitsteps

    with pytest.raises(ValueError) as refused:
        vitsteps.tokens.prepend_cls_token(torch.zeros(2, 4, 8), torch.zeros(2, 1, 8))
    with pytest.raises(TypeError) as wrong_kind:
        _validate.positive_int("4", "patch_size")
    assert _validate.error_kind(refused.value) == "ValueError" and _validate.error_kind(wrong_kind.value) == "TypeError"
    shell = InteractiveShell.instance()
    result = shell.run_cell("import torch, vitsteps\n"
                            "vitsteps.tokens.prepend_cls_token(torch.zeros(2, 4, 8), torch.zeros(2, 1, 8))")
    printed = capsys.readouterr()
    assert isinstance(result.error_in_exec, ValueError)
    shown = (printed.out + printed.err).strip().splitlines()
    assert shown == ["\x1b[31mValueError\x1b[0m: cls_token must be one token of shape [1, 1, D], got (2, 1, 8); a "
                     "per-sample CLS parameter ties the model to one batch size: make a single "
                     "nn.Parameter(torch.zeros(1, 1, 8)) and let this function expand it."]
