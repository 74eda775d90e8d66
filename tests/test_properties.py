"""The property checks: a correct ViT has every property, and each check catches the violation it names."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from vitsteps import ViT, build_torch_encoder, get_config, image_to_patches
from vitsteps.encoder import Block
from vitsteps.properties import (
    PropertyResult,
    batch_independence,
    format_results,
    gradients_reach,
    initial_loss_near_log_k,
    input_sensitivity,
    patch_order,
    patch_round_trip,
    permute_patches,
    position_sensitivity,
    pre_norm_residual,
    run_checks,
)

CONFIG = get_config("digits", depth=2)  # 1x8x8 images, 4x4 patches, D=64, 4 heads


@pytest.fixture
def model() -> ViT:
    torch.manual_seed(0)
    return ViT(CONFIG)


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))


def test_a_fresh_vit_has_every_property(model, images):
    results = run_checks(model, images, patchify=image_to_patches)
    assert [r.name for r in results] == ["batch_independence", "input_sensitivity", "position_sensitivity",
                                         "patch_order", "patch_round_trip", "gradients_reach",
                                         "pre_norm_residual", "initial_loss_near_log_k"]
    assert all(results), format_results(results)


def test_checks_leave_the_training_mode_and_the_gradients_alone(model, images):
    model.train()
    run_checks(model, images)
    assert model.training
    assert all(p.grad is None for p in model.parameters())


def test_a_result_reads_as_its_verdict():
    result = PropertyResult("batch_independence", False, "samples see each other.")
    assert not result and str(result) == "FAIL  batch_independence: samples see each other."
    assert format_results([result]).endswith("0 of 1 checks pass.")


# ------------------------------------------------------------------ batch independence and input sensitivity


def test_batch_independence_catches_samples_that_see_each_other(model, images):
    def mixes_the_batch(x):
        logits = model(x)
        return logits + logits.mean(0)  # every sample hears the batch mean

    result = batch_independence(mixes_the_batch, images)
    assert not result.passed and "samples in a batch see each other" in result.detail


def test_batch_independence_catches_an_offset_per_batch_slot(model, images):
    per_slot_offset = torch.randn(4, CONFIG.num_classes)

    def per_slot(x):
        return model(x) + per_slot_offset  # broadcasts over a batch of 1, differs between slots

    result = batch_independence(per_slot, images)
    assert not result.passed and "when run in reverse order" in result.detail


def test_batch_independence_catches_a_model_tied_to_one_batch_size(model, images):
    def tied(x):
        if x.shape[0] != 4:
            raise RuntimeError(f"expected a batch of 4, got {x.shape[0]}")
        return model(x)

    result = batch_independence(tied, images)
    assert not result.passed and "tied to one batch size" in result.detail


def test_batch_independence_holds_for_the_torch_encoder_built_batch_first():
    torch.manual_seed(0)
    encoder = build_torch_encoder(embed_dim=16, depth=2, num_heads=4).eval()
    images = torch.randn(3, 1, 5, 16)
    assert batch_independence(lambda x: encoder(x[:, 0]).mean(1), images).passed


def test_batch_first_false_is_caught_by_batch_independence_when_outputs_are_pooled():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(d_model=16, nhead=4, dim_feedforward=32, dropout=0.0)  # batch_first=False
    tokens = torch.randn(3, 1, 5, 16)
    assert not batch_independence(lambda x: layer(x[:, 0]).mean(1), tokens).passed


def test_input_sensitivity_catches_a_model_that_ignores_its_input(model, images):
    result = input_sensitivity(lambda x: model(torch.zeros_like(x)), images)
    assert not result.passed and "differ by < 1e-05" in result.detail
    assert input_sensitivity(model, images).passed


# ------------------------------------------------------------------ positions


def test_without_position_embeddings_reordering_patches_leaves_the_logits_unchanged(model, images):
    with torch.no_grad():
        model.pos_embed.zero_()
    assert position_sensitivity(model, images, expect_change=False).passed
    assert not position_sensitivity(model, images).passed


def test_with_position_embeddings_reordering_patches_changes_the_logits(model, images):
    assert position_sensitivity(model, images).passed
    assert not position_sensitivity(model, images, expect_change=False).passed


def test_a_fixed_sincos_table_also_makes_the_model_position_sensitive(images):
    torch.manual_seed(0)
    assert position_sensitivity(ViT(CONFIG, pos_embed="sincos"), images).passed


def test_permuting_patches_of_the_image_permutes_the_patch_tokens(images):
    permutation = torch.randperm(16, generator=torch.Generator().manual_seed(1))
    moved = permute_patches(images, 2, permutation)
    assert torch.equal(image_to_patches(moved, 2), image_to_patches(images, 2)[:, permutation])
    assert torch.equal(permute_patches(permute_patches(images, 2), 2), images)  # reversing twice


# ------------------------------------------------------------------ patches


@settings(max_examples=25, deadline=None)
@given(batch=st.integers(1, 3), channels=st.integers(1, 3), grid_h=st.integers(1, 4), grid_w=st.integers(1, 4),
       patch_size=st.integers(1, 4))
def test_patches_to_image_undoes_image_to_patches(batch, channels, grid_h, grid_w, patch_size):
    images = torch.randn(batch, channels, grid_h * patch_size, grid_w * patch_size)
    assert patch_round_trip(image_to_patches, images, patch_size).passed
    assert patch_order(image_to_patches, images, patch_size).passed


def view_without_permute(images, patch_size):
    B, C, H, W = images.shape
    return images.reshape(B, (H // patch_size) * (W // patch_size), C * patch_size ** 2)


def test_patch_order_catches_stripes_and_says_where_the_pixels_come_from(images):
    result = patch_order(view_without_permute, torch.zeros(1, 1, 8, 8), 4)
    assert not result.passed
    assert "patch 0 should cover rows 0-3, columns 0-3 but covers rows 0-1, columns 0-7" in result.detail


def test_patch_round_trip_catches_stripes(images):
    result = patch_round_trip(view_without_permute, images, 2)
    assert not result.passed and "in the wrong place" in result.detail


def test_patch_order_accepts_channel_last_patches_that_round_trip_rejects(images):
    def channel_last(x, P):
        B, C, H, W = x.shape
        return x.reshape(B, C, H // P, P, W // P, P).permute(0, 2, 4, 3, 5, 1).reshape(B, -1, C * P * P)

    rgb = torch.rand(2, 3, 8, 8)
    assert patch_order(channel_last, rgb, 4).passed  # the right pixels in each patch...
    assert not patch_round_trip(channel_last, rgb, 4).passed  # ...in another order than unfold's


def test_patch_checks_report_a_crashing_patchify(images):
    def broken(x, P):
        raise RuntimeError("shape mismatch")

    assert "RuntimeError: shape mismatch" in patch_order(broken, images, 2).detail
    assert not patch_round_trip(broken, images, 2).passed


# ------------------------------------------------------------------ gradients


def test_gradients_reach_the_cls_token_and_the_position_table(model, images):
    assert gradients_reach(model, images, ["cls_token", "pos_embed"]).passed


def test_gradients_reach_names_a_table_that_is_never_used(model, images):
    model.unused_table = nn.Parameter(torch.zeros(3, 64))
    result = gradients_reach(model, images)
    assert not result.passed and "no gradient reaches unused_table" in result.detail


def test_gradients_reach_names_parameters_whose_gradient_is_zero(model, images):
    with torch.no_grad():
        model.head.weight.zero_()  # nothing flows back through a zero head
    result = gradients_reach(model, images, ["blocks.*.mlp.fc2.weight"])
    assert not result.passed and "exactly zero reaches blocks.0.mlp.fc2.weight" in result.detail


# ------------------------------------------------------------------ loss and residual path


def test_a_fresh_model_starts_near_log_k(model, images):
    result = initial_loss_near_log_k(model, images)
    assert result.passed and f"ln(10) = {math.log(10):.2f}" in result.detail


def test_initial_loss_catches_logits_a_hundred_times_too_large(model, images):
    assert not initial_loss_near_log_k(lambda x: 100 * model(x), images, num_classes=10).passed


def test_a_pre_norm_block_carries_a_shift_through():
    torch.manual_seed(0)
    tokens = torch.randn(2, 5, 16)
    assert pre_norm_residual(Block(16, 4), tokens).passed
    assert pre_norm_residual(build_torch_encoder(16, 1, 4).layers[0], tokens).passed


def test_a_post_norm_block_normalises_the_shift_away():
    torch.manual_seed(0)
    post_norm = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True)  # norm_first=False
    result = pre_norm_residual(post_norm, torch.randn(2, 5, 16))
    assert not result.passed and "post-norm" in result.detail


# ------------------------------------------------------------------ bad input


def test_a_model_that_is_not_callable_is_refused(images):
    with pytest.raises(TypeError, match="model must be callable"):
        batch_independence("model", images)


def test_images_without_a_batch_dimension_are_refused(model):
    with pytest.raises(ValueError, match=r"images must be a tensor with 4 dimensions.*unsqueeze\(0\)"):
        input_sensitivity(model, torch.rand(1, 8, 8))


def test_batch_independence_needs_two_samples(model):
    with pytest.raises(ValueError, match="at least 2 samples"):
        batch_independence(model, torch.rand(1, 1, 8, 8))


def test_input_sensitivity_needs_two_different_images(model):
    with pytest.raises(ValueError, match="identical"):
        input_sensitivity(model, torch.zeros(2, 1, 8, 8))


def test_position_sensitivity_needs_a_patch_size_for_a_plain_function(images):
    with pytest.raises(ValueError, match="pass patch_size=P"):
        position_sensitivity(lambda x: x.mean((2, 3)), images)


def test_permute_patches_refuses_a_non_permutation(images):
    with pytest.raises(ValueError, match="each of 0..15 once"):
        permute_patches(images, 2, [0] * 16)


def test_permute_patches_refuses_a_patch_size_that_does_not_divide(images):
    with pytest.raises(ValueError, match="patch_size=3 does not divide"):
        permute_patches(images, 3)


def test_gradients_reach_needs_a_module(images):
    with pytest.raises(TypeError, match="torch.nn.Module"):
        gradients_reach(lambda x: x, images)


def test_gradients_reach_refuses_a_single_string(model, images):
    with pytest.raises(TypeError, match=r"pass \['pos_embed'\]"):
        gradients_reach(model, images, "pos_embed")


def test_gradients_reach_refuses_names_that_match_nothing(model, images):
    with pytest.raises(ValueError, match="no trainable parameter matches"):
        gradients_reach(model, images, ["position_table"])


def test_initial_loss_refuses_a_wrong_number_of_classes(model, images):
    with pytest.raises(ValueError, match="num_classes=7"):
        initial_loss_near_log_k(model, images, num_classes=7)


def test_pre_norm_residual_refuses_images_for_tokens():
    with pytest.raises(ValueError, match=r"tokens must be a tensor with 3 dimensions"):
        pre_norm_residual(Block(16, 4), torch.rand(2, 1, 8, 8))


def test_format_results_refuses_other_objects():
    with pytest.raises(TypeError, match="PropertyResult"):
        format_results([True, False])
