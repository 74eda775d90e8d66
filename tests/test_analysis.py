"""vitsteps.analysis: CLS attention, rollout, attention distance, position similarity, filter components, and bad
input named. The figures that draw them are tested with the figures of notebook 08."""
from __future__ import annotations

import pytest
import torch
from helpers import assert_all_refused, refusal_cases

from vitsteps.analysis import (
    attention_rollout,
    cls_attention,
    cls_rollout_map,
    mean_attention_distance,
    patch_distances,
    patch_filter_components,
    position_rank_correlation,
    position_similarity,
    rank_correlation,
)
from vitsteps.model import ViT, ViTConfig
from vitsteps.tokens import sincos_position_table


def random_attention(depth: int = 3, B: int = 2, h: int = 2, L: int = 5, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.rand(B, h, L, L, generator=generator).softmax(dim=-1) for _ in range(depth)]


def identity_attention(depth: int = 2, B: int = 1, h: int = 2, L: int = 5) -> list[torch.Tensor]:
    return [torch.eye(L).expand(B, h, L, L).clone() for _ in range(depth)]


def test_cls_attention_is_row_zero_without_the_cls_column_on_the_grid() -> None:
    maps = random_attention(depth=2, B=1, h=3, L=5)
    grid = cls_attention(maps, grid_size=2)
    assert grid.shape == (2, 1, 3, 2, 2)
    assert torch.equal(grid[1, 0, 2].flatten(), maps[1][0, 2, 0, 1:])


def test_cls_attention_of_a_real_model_sums_to_one_minus_its_self_weight() -> None:
    torch.manual_seed(0)
    model = ViT(ViTConfig(img_size=8, patch_size=2, in_chans=1, num_classes=10, embed_dim=16, depth=2, num_heads=4))
    maps = model.attention_maps(torch.rand(3, 1, 8, 8))
    grid = cls_attention(maps, model.config.grid_size)
    assert grid.shape == (2, 3, 4, 4, 4)
    self_weight = torch.stack(maps)[:, :, :, 0, 0]  # [depth, B, h]
    assert torch.allclose(grid.sum(dim=(-2, -1)) + self_weight, torch.ones(2, 3, 4), atol=1e-5)


def test_rollout_of_identity_attention_is_the_identity() -> None:
    rollout = attention_rollout(identity_attention(depth=4, L=5))
    assert torch.allclose(rollout, torch.eye(5).expand(1, 5, 5))


def test_rollout_of_one_layer_mixes_half_attention_half_identity() -> None:
    maps = random_attention(depth=1, B=2, h=3, L=4)
    expected = 0.5 * maps[0].mean(dim=1) + 0.5 * torch.eye(4)
    assert torch.allclose(attention_rollout(maps), expected, atol=1e-6)


def test_rollout_multiplies_the_layers_and_keeps_rows_summing_to_one() -> None:
    maps = random_attention(depth=3, B=2, h=2, L=5)
    mixed = [0.5 * m.mean(dim=1) + 0.5 * torch.eye(5) for m in maps]
    rollout = attention_rollout(maps)
    assert torch.allclose(rollout, mixed[2] @ mixed[1] @ mixed[0], atol=1e-6)
    assert torch.allclose(rollout.sum(dim=-1), torch.ones(2, 5), atol=1e-5)


def test_rollout_max_fusion_differs_from_mean() -> None:
    maps = random_attention(depth=2)
    assert not torch.allclose(attention_rollout(maps, head_fusion="max"), attention_rollout(maps))


def test_cls_rollout_map_is_a_distribution_on_the_grid() -> None:
    cls_map = cls_rollout_map(attention_rollout(random_attention(L=5)), grid_size=2)
    assert cls_map.shape == (2, 2, 2)
    assert torch.allclose(cls_map.sum(dim=(-2, -1)), torch.ones(2))


def test_patch_distances_are_pixel_distances_between_centres() -> None:
    distances = patch_distances(2, patch_size=4)
    assert distances.shape == (4, 4)
    assert float(distances[0, 1]) == 4.0 and float(distances[0, 3]) == pytest.approx(4 * 2 ** 0.5)


def test_attention_to_oneself_has_distance_zero() -> None:
    distances = mean_attention_distance(identity_attention(depth=2, h=3, L=5), grid_size=2, patch_size=4)
    assert distances.shape == (2, 3) and float(distances.abs().max()) == 0.0


def test_uniform_attention_has_the_mean_pairwise_distance() -> None:
    uniform = [torch.full((1, 1, 5, 5), 0.2)]
    distances = mean_attention_distance(uniform, grid_size=2, patch_size=4)
    assert float(distances[0, 0]) == pytest.approx(float(patch_distances(2, 4).mean()), rel=1e-5)


def test_position_similarity_is_one_on_the_diagonal_and_symmetric() -> None:
    table = torch.randn(1, 17, 8)
    similarity = position_similarity(table, grid_size=4)
    assert similarity.shape == (4, 4, 4, 4)
    flat = similarity.reshape(16, 16)
    assert torch.allclose(flat.diagonal(), torch.ones(16), atol=1e-6)
    assert torch.allclose(flat, flat.T, atol=1e-6)


def test_sincos_positions_are_more_alike_for_neighbours_than_for_far_patches() -> None:
    similarity = position_similarity(sincos_position_table(4, 32), grid_size=4)
    assert float(similarity[0, 0, 0, 1]) > float(similarity[0, 0, 3, 3])


def test_filter_components_are_orthonormal_and_shares_sum_to_one() -> None:
    weight = torch.randn(16, 1, 2, 2)
    components, share = patch_filter_components(weight)
    assert components.shape == (4, 1, 2, 2) and share.shape == (4,)
    flat = components.reshape(4, 4)
    assert torch.allclose(flat @ flat.T, torch.eye(4), atol=1e-5)
    assert float(share.sum()) == pytest.approx(1.0, abs=1e-5)
    assert torch.all(share[:-1] >= share[1:])


def test_filters_that_vary_along_one_pattern_have_one_component() -> None:
    pattern = torch.tensor([[1.0, -1.0], [0.5, 0.0]])
    weight = torch.linspace(-1, 1, 10).reshape(10, 1, 1, 1) * pattern  # [10, 1, 2, 2]
    components, share = patch_filter_components(weight, num_components=2)
    assert float(share[0]) == pytest.approx(1.0, abs=1e-6)
    assert torch.allclose(components[0, 0], pattern / pattern.norm(), atol=1e-5)


# --- bad input: one case per function and parameter (vitsteps._validate's tests try the bad values) -------------

def test_rank_correlation_is_spearmans_with_ties_sharing_their_rank():
    from scipy.stats import spearmanr

    generator = torch.Generator().manual_seed(0)
    x = torch.randint(0, 6, (200,), generator=generator).float()  # many ties
    y = x + torch.randn(200, generator=generator)
    assert abs(rank_correlation(x, y) - spearmanr(x.numpy(), y.numpy())[0]) < 1e-6
    assert rank_correlation(x, x ** 3) == pytest.approx(1.0)
    assert rank_correlation(x, -x) == pytest.approx(-1.0)


def test_a_sincos_table_knows_the_grid_and_a_random_one_does_not():
    sincos = sincos_position_table(7, 64)  # [50, 64], built from the 2-D positions
    assert position_rank_correlation(sincos, 7, 4) < -0.8
    random = torch.randn(50, 64, generator=torch.Generator().manual_seed(1))
    assert abs(position_rank_correlation(random, 7, 4)) < 0.1
    assert position_rank_correlation(sincos, 7, 4) == pytest.approx(position_rank_correlation(sincos[None], 7, 28))


def test_margin_leaves_out_the_border_rings():
    table = torch.randn(50, 16, generator=torch.Generator().manual_seed(2))
    inner = torch.cat([table[:1], table[1:].reshape(7, 7, 16)[1:6, 1:6].reshape(25, 16)])  # CLS and the inner 5x5
    assert position_rank_correlation(table, 7, 4, margin=1) == pytest.approx(position_rank_correlation(inner, 5, 4))


REFUSED = {
    "attention_rollout: no layers":
        (lambda: attention_rollout([]), TypeError, r"attention must be a non-empty list of \[B, h, L, L\] tensors"),
    "attention_rollout: one layer's tensor instead of a list":
        (lambda: attention_rollout(torch.rand(2, 5, 5)), TypeError, r"attention must be a non-empty list"),
    "attention_rollout: a layer without heads":
        (lambda: attention_rollout([torch.rand(2, 5, 5)]), ValueError,
         r"attention\[0\] must be a tensor with 4 dimensions \[B, h, L, L\]"),
    "attention_rollout: maps that are not square":
        (lambda: attention_rollout([torch.rand(1, 2, 5, 4)]), ValueError,
         r"attention\[0\] must be square in its last two dimensions"),
    "attention_rollout: layers of different shapes":
        (lambda: attention_rollout([torch.rand(1, 2, 5, 5), torch.rand(1, 2, 3, 3)]), ValueError,
         r"every layer's attention must have the same shape, but attention\[0\] is \(1, 2, 5, 5\) and attention\[1\]"),
    "attention_rollout: a residual weight of 1":
        (lambda: attention_rollout(random_attention(), residual_weight=1.0), ValueError,
         r"residual_weight must be a number in \[0, 1\), got 1\.0"),
    "attention_rollout: an unknown head fusion":
        (lambda: attention_rollout(random_attention(), head_fusion="median"), ValueError,
         r"head_fusion must be one of 'mean', 'max', got 'median'"),
    "cls_attention: a grid that does not match the tokens":
        (lambda: cls_attention(random_attention(L=5), grid_size=3), ValueError,
         r"grid_size=3 gives 9 patches \+ 1 CLS = 10 tokens, but the input has L=5; pass the model's grid"),
    "cls_rollout_map: a rollout without the batch dimension":
        (lambda: cls_rollout_map(torch.rand(5, 5), 2), ValueError, r"rollout must be a tensor with 3 dimensions"),
    "patch_distances: a patch size of 0":
        (lambda: patch_distances(2, 0), ValueError, r"patch_size must be a positive int, got 0"),
    "mean_attention_distance: a grid of 0":
        (lambda: mean_attention_distance(random_attention(), 0, 2), ValueError, r"grid_size must be a positive int"),
    "position_similarity: a table for another grid":
        (lambda: position_similarity(torch.randn(17, 8), grid_size=3), ValueError,
         r"grid_size=3 gives 9 patches \+ 1 CLS = 10 tokens, but the input has L=17"),
    "position_similarity: a negative prefix count":
        (lambda: position_similarity(torch.randn(5, 8), 2, num_prefix_tokens=-1), ValueError,
         r"num_prefix_tokens must be an int >= 0, got -1; pass 1 for a CLS token"),
    "rank_correlation: samples of different lengths":
        (lambda: rank_correlation(torch.rand(5), torch.rand(4)), ValueError,
         r"x and y must be two samples of the same length n >= 2, got 5 and 4"),
    "rank_correlation: a constant sample":
        (lambda: rank_correlation(torch.ones(5), torch.rand(5)), ValueError, r"x or y holds a single value repeated"),
    "position_rank_correlation: a table of zeros":
        (lambda: position_rank_correlation(torch.zeros(1, 50, 64), 7, 4), ValueError,
         r"position_table has 49 patch rows that are all zeros: their cosine similarity is 0/0.*; pass a trained"),
    "position_rank_correlation: a margin that leaves one patch":
        (lambda: position_rank_correlation(torch.randn(50, 8), 7, 4, margin=3), ValueError,
         r"margin must be an int from 0 to 2, got 3; a 7x7 grid keeps 2 patches a side up to margin=2"),
    "patch_filter_components: a flat weight":
        (lambda: patch_filter_components(torch.randn(16, 4)), ValueError, r"weight must be a tensor with 4 dimensions"),
    "patch_filter_components: too many components":
        (lambda: patch_filter_components(torch.randn(16, 1, 2, 2), num_components=5), ValueError,
         r"num_components=5 is more than min\(D, C\*P\*P\) = 4; pass at most 4"),
}


@refusal_cases(REFUSED)
def test_bad_input_is_refused_naming_the_parameter_the_value_and_the_fix(refusals):
    assert_all_refused(refusals)
