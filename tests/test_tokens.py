"""Stages 3 and 4 (vitsteps.tokens): one CLS token for the whole batch, a position table added, and bad input named.

A model resized to another image size (resampling its table) is tested with `convert.change_image_size`.
"""
from __future__ import annotations

import math

import pytest
import torch
from helpers import assert_all_refused, assert_close, refusal_cases

from vitsteps.tokens import add_position_embedding, prepend_cls_token, resample_position_table, sincos_position_table

# --- behaviour ---------------------------------------------------------------------------------------------------


def test_prepend_cls_token_gives_the_article_shape():
    assert prepend_cls_token(torch.randn(1, 4, 8), torch.randn(1, 1, 8)).shape == (1, 5, 8)


def test_prepend_cls_token_puts_the_same_cls_row_first_in_every_sample():
    patch_tokens = torch.randn(3, 4, 8)  # [B, N, D]
    cls_token = torch.randn(1, 1, 8)  # [1, 1, D]
    tokens = prepend_cls_token(patch_tokens, cls_token)
    assert tokens.shape == (3, 5, 8)
    for sample in range(3):
        assert torch.equal(tokens[sample, 0], cls_token[0, 0])
    assert torch.equal(tokens[:, 1:], patch_tokens)


def test_the_gradient_of_every_sample_reaches_the_single_cls_token():
    cls_token = torch.zeros(1, 1, 8, requires_grad=True)
    tokens = prepend_cls_token(torch.randn(3, 4, 8), cls_token)
    tokens[:, 0].sum().backward()
    # three samples each add a gradient of one to every entry of the one shared token
    assert torch.equal(cls_token.grad, torch.full((1, 1, 8), 3.0))


def test_the_same_cls_token_serves_any_batch_size():
    cls_token = torch.randn(1, 1, 8)
    for batch_size in (1, 2, 7):
        assert prepend_cls_token(torch.randn(batch_size, 4, 8), cls_token).shape == (batch_size, 5, 8)


def test_tile_and_broadcast_add_the_same_numbers():
    tokens = torch.randn(3, 5, 8)  # [B, L, D]
    table = torch.randn(16, 8)  # [max_num_token, D]
    broadcast = add_position_embedding(tokens, table, mode="broadcast")
    assert torch.equal(broadcast, add_position_embedding(tokens, table, mode="tile"))
    assert torch.equal(broadcast, tokens + table[:5])


def test_add_position_embedding_accepts_a_table_with_a_leading_one():
    tokens, table = torch.randn(2, 5, 8), torch.randn(1, 16, 8)
    assert torch.equal(add_position_embedding(tokens, table), tokens + table[0, :5])


def test_a_table_exactly_as_long_as_the_sequence_is_enough():
    tokens, table = torch.randn(2, 5, 8), torch.randn(5, 8)
    assert torch.equal(add_position_embedding(tokens, table), tokens + table)


def test_the_position_table_gets_a_gradient_once_it_is_added():
    table = torch.zeros(16, 8, requires_grad=True)
    add_position_embedding(torch.randn(2, 5, 8), table).sum().backward()
    assert table.grad is not None
    assert torch.equal(table.grad[:5], torch.full((5, 8), 2.0))
    assert torch.equal(table.grad[5:], torch.zeros(11, 8))


@pytest.mark.parametrize("grid, dim, prefix", [(2, 8, 1), ((3, 4), 16, 1), (4, 12, 0), (2, 4, 2)])
def test_sincos_table_has_one_row_per_patch_after_the_prefix_rows(grid, dim, prefix):
    rows, cols = (grid, grid) if isinstance(grid, int) else grid
    table = sincos_position_table(grid, dim, num_prefix_tokens=prefix)
    assert table.shape == (prefix + rows * cols, dim)
    assert table.dtype == torch.float32
    assert torch.equal(table[:prefix], torch.zeros(prefix, dim))


def test_sincos_table_holds_the_formula_at_a_known_position():
    rows, cols, dim = 3, 4, 8
    table = sincos_position_table((rows, cols), dim)
    row, col = 2, 1
    quarter = dim // 4
    frequencies = [1.0 / 10000 ** (i / quarter) for i in range(quarter)]
    expected = ([math.sin(row * f) for f in frequencies] + [math.cos(row * f) for f in frequencies]
                + [math.sin(col * f) for f in frequencies] + [math.cos(col * f) for f in frequencies])
    assert_close(table[1 + row * cols + col], torch.tensor(expected))


def test_sincos_table_gives_every_patch_a_distinct_row():
    table = sincos_position_table((4, 5), 16)[1:]  # [N, D]
    distances = torch.cdist(table, table)  # [N, N]
    off_diagonal = distances[~torch.eye(len(table), dtype=torch.bool)]
    assert off_diagonal.min() > 1e-3


def test_resampling_keeps_the_cls_row_and_gives_the_new_grid():
    table = torch.randn(1, 1 + 4, 8)  # [1, prefix + 2*2, D]
    resampled = resample_position_table(table, new_grid=4)
    assert resampled.shape == (1, 1 + 16, 8)
    assert torch.equal(resampled[:, 0], table[:, 0])


def test_resampling_a_two_dimensional_table_to_a_rectangular_grid():
    table = torch.randn(2 + 9, 8)  # [prefix + 3*3, D]
    resampled = resample_position_table(table, new_grid=(2, 5), num_prefix_tokens=2)
    assert resampled.shape == (2 + 10, 8)
    assert torch.equal(resampled[:2], table[:2])


def test_resampling_to_the_same_grid_changes_nothing():
    table = torch.randn(1 + 12, 8)
    assert_close(resample_position_table(table, (3, 4), old_grid=(3, 4)), table)


def test_resampling_a_constant_table_keeps_it_constant():
    table = torch.ones(1 + 4, 8)
    assert_close(resample_position_table(table, 6), torch.ones(1 + 36, 8))


# --- bad input: one case per function and parameter (vitsteps._validate's tests try the bad values) -------------

REFUSED = {
    "prepend_cls_token: a per-sample CLS parameter":
        (lambda: prepend_cls_token(torch.randn(2, 4, 8), torch.randn(2, 1, 8)), ValueError,
         r"cls_token must be one token of shape \[1, 1, D\], got \(2, 1, 8\); "
         r".*nn\.Parameter\(torch\.zeros\(1, 1, 8\)\)"),
    "prepend_cls_token: a CLS token of another width":
        (lambda: prepend_cls_token(torch.randn(1, 4, 8), torch.randn(1, 1, 6)), ValueError,
         r"cls_token has width 6 but the patch tokens have D=8; make cls_token of shape \[1, 1, 8\]"),
    "prepend_cls_token: a two-dimensional CLS token":
        (lambda: prepend_cls_token(torch.randn(1, 4, 8), torch.randn(1, 8)), ValueError,
         r"cls_token must be a tensor with 3 dimensions \[1, 1, D\]"),
    "prepend_cls_token: patch tokens without a batch dimension":
        (lambda: prepend_cls_token(torch.randn(4, 8), torch.randn(1, 1, 8)), ValueError,
         r"patch_tokens must be a tensor with 3 dimensions \[B, N, D\].*\.unsqueeze\(0\)"),
    "add_position_embedding: a sequence longer than the table":
        (lambda: add_position_embedding(torch.randn(1, 17, 8), torch.randn(16, 8)), ValueError,
         r"the sequence has 17 tokens but position_table has only 16 rows \(max_num_token=16\); use a table with "
         r"at least 17 rows"),
    "add_position_embedding: a table of another width":
        (lambda: add_position_embedding(torch.randn(1, 5, 8), torch.randn(16, 4)), ValueError,
         r"position_table has width 4 but the tokens have D=8; make the table \[max_num_token, 8\]"),
    "add_position_embedding: a table that is a list":
        (lambda: add_position_embedding(torch.randn(1, 5, 8), [[0.0] * 8] * 16), TypeError,
         r"position_table must be a torch\.Tensor \[max_num_token, D\], got .* of type list"),
    "add_position_embedding: a table with a batch of rows":
        (lambda: add_position_embedding(torch.randn(2, 5, 8), torch.randn(2, 16, 8)), ValueError,
         r"position_table must be a tensor with 2 dimensions \[max_num_token, D\]"),
    "add_position_embedding: integer tokens":
        (lambda: add_position_embedding(torch.ones(1, 5, 8, dtype=torch.int64), torch.randn(16, 8)), TypeError,
         r"tokens must be a floating-point tensor"),
    "add_position_embedding: an unknown mode":
        (lambda: add_position_embedding(torch.randn(1, 5, 8), torch.randn(16, 8), mode="repeat"), ValueError,
         r"mode must be one of 'broadcast', 'tile', got 'repeat'; use 'broadcast'"),
    "sincos_position_table: a grid of three numbers":
        (lambda: sincos_position_table((2, 2, 2), 8), ValueError, r"grid_size must be an int or a \(height, width\)"),
    "sincos_position_table: a width that is not a multiple of 4":
        (lambda: sincos_position_table(2, 6), ValueError,
         r"dim must be a multiple of 4 for a 2-D sin-cos table, got 6; use e\.g\. 8"),
    "sincos_position_table: a width of 0":
        (lambda: sincos_position_table(2, 0), ValueError, r"dim must be a positive int, got 0"),
    "sincos_position_table: a fractional prefix count":
        (lambda: sincos_position_table(2, 8, num_prefix_tokens=1.0), TypeError,
         r"num_prefix_tokens must be an int >= 0, got 1\.0"),
    "resample_position_table: a table that is a list":
        (lambda: resample_position_table([[0.0] * 8] * 5, 4), TypeError,
         r"position_table must be a torch\.Tensor \[L, D\] or \[1, L, D\]"),
    "resample_position_table: a one-dimensional table":
        (lambda: resample_position_table(torch.randn(40), 4), ValueError,
         r"position_table must be \[L, D\] or \[1, L, D\], got shape \(40,\); pass one table"),
    "resample_position_table: an integer table":
        (lambda: resample_position_table(torch.ones(5, 8, dtype=torch.int64), 4), TypeError,
         r"position_table must be a floating-point tensor"),
    "resample_position_table: a table that is not a square without old_grid":
        (lambda: resample_position_table(torch.randn(7, 8), 4), ValueError,
         r"the table has 6 patch rows, not a square number; pass old_grid=\(rows, cols\)"),
    "resample_position_table: an old grid that does not fit the table":
        (lambda: resample_position_table(torch.randn(5, 8), 4, old_grid=(2, 3)), ValueError,
         r"old_grid=\(2, 3\) has 6 cells but the table has 4 patch rows"),
    "resample_position_table: a new grid of 0":
        (lambda: resample_position_table(torch.randn(5, 8), 0), ValueError, r"new_grid must be a positive int, got 0"),
    "resample_position_table: a negative prefix count":
        (lambda: resample_position_table(torch.randn(5, 8), 4, num_prefix_tokens=-1), ValueError,
         r"num_prefix_tokens must be an int >= 0, got -1"),
    "resample_position_table: prefix rows that leave no patch rows":
        (lambda: resample_position_table(torch.randn(5, 8), 4, num_prefix_tokens=5), ValueError,
         r"num_prefix_tokens=5 leaves no patch rows in a table of 5 rows"),
}


@refusal_cases(REFUSED)
def test_bad_input_is_refused_naming_the_parameter_the_value_and_the_fix(refusals):
    assert_all_refused(refusals)
