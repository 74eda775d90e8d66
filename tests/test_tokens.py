"""Stages 3 and 4 (vitsteps.tokens): one CLS token for the whole batch, a position table added, and bad input named."""
import math

import pytest
import torch
from helpers import assert_close

from vitsteps.model import ViT, get_config
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


def test_a_model_built_for_8x8_runs_on_16x16_after_resampling_its_pos_embed():
    torch.manual_seed(0)
    small = ViT(get_config("toy"))  # 8x8 images, 2x2 grid
    large = ViT(get_config("toy", img_size=16))  # 16x16 images, 4x4 grid
    state = small.state_dict()
    state["pos_embed"] = resample_position_table(state["pos_embed"], new_grid=large.config.grid_size)
    large.load_state_dict(state)
    assert large.pos_embed.shape == (1, 17, 8)
    assert torch.equal(large.pos_embed[:, 0], small.pos_embed[:, 0])
    logits = large.eval()(torch.randn(2, 3, 16, 16))
    assert logits.shape == (2, 10)
    assert torch.isfinite(logits).all()


# --- bad input, one test per case ------------------------------------------------------------------------------------

def test_prepend_cls_token_refuses_a_per_sample_cls_parameter_and_names_the_fix():
    with pytest.raises(ValueError, match=r"cls_token must be one token of shape \[1, 1, D\], got \(2, 1, 8\); .*"
                                         r"nn\.Parameter\(torch\.zeros\(1, 1, 8\)\)"):
        prepend_cls_token(torch.randn(2, 4, 8), torch.randn(2, 1, 8))


def test_prepend_cls_token_refuses_a_cls_token_of_another_width():
    with pytest.raises(ValueError, match=r"cls_token has width 6 but the patch tokens have D=8; "
                                         r"make cls_token of shape \[1, 1, 8\]"):
        prepend_cls_token(torch.randn(2, 4, 8), torch.randn(1, 1, 6))


def test_prepend_cls_token_refuses_a_two_dimensional_cls_token():
    with pytest.raises(ValueError, match=r"cls_token must have 3 dimensions \[1, 1, D\], got shape \(1, 8\)"):
        prepend_cls_token(torch.randn(2, 4, 8), torch.randn(1, 8))


def test_prepend_cls_token_refuses_patch_tokens_without_a_batch_dimension():
    with pytest.raises(ValueError, match=r"patch_tokens must have 3 dimensions \[B, N, D\], got shape \(4, 8\); "
                                         r"add a batch dimension"):
        prepend_cls_token(torch.randn(4, 8), torch.randn(1, 1, 8))


def test_prepend_cls_token_refuses_integer_patch_tokens():
    with pytest.raises(TypeError, match=r"patch_tokens must be a floating-point tensor, got dtype torch\.int64"):
        prepend_cls_token(torch.ones(2, 4, 8, dtype=torch.int64), torch.randn(1, 1, 8))


def test_add_position_embedding_refuses_a_sequence_longer_than_the_table():
    with pytest.raises(ValueError, match=r"the sequence has 17 tokens but position_table has only 16 rows "
                                         r"\(max_num_token=16\); use a table with at least 17 rows"):
        add_position_embedding(torch.randn(1, 17, 8), torch.randn(16, 8))


def test_add_position_embedding_refuses_a_table_of_another_width():
    with pytest.raises(ValueError, match=r"position_table has width 4 but the tokens have D=8; "
                                         r"make the table \[max_num_token, 8\]"):
        add_position_embedding(torch.randn(1, 5, 8), torch.randn(16, 4))


def test_add_position_embedding_refuses_a_table_that_is_not_a_tensor():
    with pytest.raises(TypeError, match=r"position_table must be a torch\.Tensor \[max_num_token, D\], got list"):
        add_position_embedding(torch.randn(1, 5, 8), [[0.0] * 8] * 16)


def test_add_position_embedding_refuses_a_table_with_a_batch_of_rows():
    with pytest.raises(ValueError, match=r"position_table must have 2 dimensions \[max_num_token, D\], "
                                         r"got shape \(2, 16, 8\)"):
        add_position_embedding(torch.randn(2, 5, 8), torch.randn(2, 16, 8))


def test_add_position_embedding_refuses_an_integer_table():
    with pytest.raises(TypeError, match=r"position_table must be a floating-point tensor, got dtype torch\.int64"):
        add_position_embedding(torch.randn(1, 5, 8), torch.ones(16, 8, dtype=torch.int64))


def test_add_position_embedding_refuses_tokens_without_a_batch_dimension():
    with pytest.raises(ValueError, match=r"tokens must have 3 dimensions \[B, L, D\], got shape \(5, 8\); "
                                         r"add a batch dimension"):
        add_position_embedding(torch.randn(5, 8), torch.randn(16, 8))


def test_add_position_embedding_refuses_an_unknown_mode():
    with pytest.raises(ValueError, match=r"mode must be 'broadcast' or 'tile', got 'repeat'"):
        add_position_embedding(torch.randn(1, 5, 8), torch.randn(16, 8), mode="repeat")


@pytest.mark.parametrize("grid_size, error, message", [
    (0, ValueError, r"grid_size must be a positive int, got 0"),
    ((2, -1), ValueError, r"grid_size\[1\] must be a positive int, got -1"),
    (2.0, TypeError, r"grid_size must be a positive int, got 2\.0"),
])
def test_sincos_table_refuses_a_bad_grid_size(grid_size, error, message):
    with pytest.raises(error, match=message):
        sincos_position_table(grid_size, 8)


@pytest.mark.parametrize("dim, error, message", [
    (0, ValueError, r"dim must be a positive int, got 0"),
    (-8, ValueError, r"dim must be a positive int, got -8"),
    (10, ValueError, r"dim must be a multiple of 4 for a 2-D sin-cos table, got 10; use e\.g\. 12"),
])
def test_sincos_table_refuses_a_bad_dim(dim, error, message):
    with pytest.raises(error, match=message):
        sincos_position_table(2, dim)


@pytest.mark.parametrize("prefix, error", [(-1, ValueError), (1.0, TypeError), ("1", TypeError)])
def test_sincos_table_refuses_a_bad_number_of_prefix_tokens(prefix, error):
    with pytest.raises(error, match=rf"num_prefix_tokens must be an int >= 0, got {prefix!r}"):
        sincos_position_table(2, 8, num_prefix_tokens=prefix)


def test_resampling_refuses_a_table_that_is_not_a_tensor():
    with pytest.raises(TypeError, match=r"position_table must be a torch\.Tensor \[L, D\] or \[1, L, D\], got list"):
        resample_position_table([[0.0] * 8] * 5, 4)


def test_resampling_refuses_a_one_dimensional_table():
    with pytest.raises(ValueError, match=r"position_table must be \[L, D\] or \[1, L, D\], got shape \(40,\)"):
        resample_position_table(torch.randn(40), 4)


def test_resampling_refuses_a_table_with_a_batch_of_rows():
    with pytest.raises(ValueError, match=r"position_table must be \[L, D\] or \[1, L, D\], got shape \(2, 5, 8\)"):
        resample_position_table(torch.randn(2, 5, 8), 4)


def test_resampling_refuses_an_integer_table():
    with pytest.raises(TypeError, match=r"position_table must be a floating-point tensor, got dtype torch\.int64"):
        resample_position_table(torch.ones(5, 8, dtype=torch.int64), 4)


def test_resampling_refuses_a_table_that_is_not_a_square_without_old_grid():
    with pytest.raises(ValueError, match=r"the table has 6 patch rows, not a square number; "
                                         r"pass old_grid=\(rows, cols\)"):
        resample_position_table(torch.randn(7, 8), 4)


def test_resampling_refuses_an_old_grid_that_does_not_fit_the_table():
    with pytest.raises(ValueError, match=r"old_grid=\(2, 3\) has 6 cells but the table has 4 patch rows"):
        resample_position_table(torch.randn(5, 8), 4, old_grid=(2, 3))


@pytest.mark.parametrize("new_grid, error, message", [
    (0, ValueError, r"new_grid must be a positive int, got 0"),
    ((4, -2), ValueError, r"new_grid\[1\] must be a positive int, got -2"),
    (4.5, TypeError, r"new_grid must be a positive int, got 4\.5"),
])
def test_resampling_refuses_a_bad_new_grid(new_grid, error, message):
    with pytest.raises(error, match=message):
        resample_position_table(torch.randn(5, 8), new_grid)


@pytest.mark.parametrize("prefix, error", [(-1, ValueError), (1.0, TypeError)])
def test_resampling_refuses_a_bad_number_of_prefix_tokens(prefix, error):
    with pytest.raises(error, match=rf"num_prefix_tokens must be an int >= 0, got {prefix!r}"):
        resample_position_table(torch.randn(5, 8), 4, num_prefix_tokens=prefix)


def test_resampling_refuses_more_prefix_rows_than_the_table_has():
    with pytest.raises(ValueError, match=r"num_prefix_tokens=5 leaves no patch rows in a table of 5 rows"):
        resample_position_table(torch.randn(5, 8), 4, num_prefix_tokens=5)
