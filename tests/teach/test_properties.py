"""vitsteps.teach.properties: a correct ViT has every property, each check catches the violation it names, and bad
input is named."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from helpers import assert_all_refused, refusal_cases
from torch import nn

from vitsteps import ViT, build_torch_encoder, get_config, image_to_patches
from vitsteps.encoder import Block
from vitsteps.teach.properties import (
    PropertyResult,
    batch_independence,
    deterministic_in_eval,
    format_results,
    gradients_reach,
    initial_loss_near_log_k,
    input_sensitivity,
    patch_order,
    patch_round_trip,
    permute_patches,
    pixel_span,
    position_sensitivity,
    pre_norm_residual,
    readout_symmetry,
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
    assert [r.name for r in results] == ["deterministic_in_eval", "batch_independence", "input_sensitivity",
                                         "position_sensitivity", "readout_symmetry", "patch_order",
                                         "patch_round_trip", "gradients_reach", "pre_norm_residual",
                                         "initial_loss_near_log_k"]
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


def test_deterministic_in_eval_catches_functional_dropout_left_on(model, images):
    assert deterministic_in_eval(model, images).passed
    result = deterministic_in_eval(lambda x: F.dropout(model(x), p=0.1), images)  # training=True by default
    assert not result.passed and "something random runs in eval mode" in result.detail
    assert deterministic_in_eval(lambda x: F.dropout(model(x), p=0.1, training=False), images).passed


def test_the_checks_give_the_same_verdict_every_time_and_leave_the_random_state_alone(model, images):
    def noisy(x):
        return model(x) + 1e-3 * torch.randn(x.shape[0], CONFIG.num_classes)

    state = torch.get_rng_state()
    first, second = batch_independence(noisy, images), batch_independence(noisy, images)
    assert first == second and not first.passed
    assert torch.equal(torch.get_rng_state(), state)


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


class _LastTokenViT(ViT):
    def forward(self, images):
        return self.head(self.forward_features(images)[:, -1])  # [B, K], from a patch token


class _MeanViT(ViT):
    def forward(self, images):
        return self.head(self.forward_features(images).mean(dim=1))  # [B, K], global average pooling


def test_readout_symmetry_passes_a_cls_readout_and_a_mean_and_catches_a_patch_token(images):
    torch.manual_seed(0)
    assert readout_symmetry(ViT(CONFIG), images).passed
    assert readout_symmetry(_MeanViT(CONFIG), images).passed
    torch.manual_seed(0)
    result = readout_symmetry(_LastTokenViT(CONFIG), images)
    assert not result.passed and "depend on which token sits where" in result.detail


def test_readout_symmetry_leaves_the_models_table_alone(model, images):
    table = model.pos_embed.detach().clone()
    readout_symmetry(model, images)
    assert torch.equal(model.pos_embed, table)


# ------------------------------------------------------------------ patches


@pytest.mark.parametrize(("batch", "channels", "grid_h", "grid_w", "patch_size"),
                         [(1, 1, 1, 1, 1), (2, 3, 2, 4, 2), (3, 2, 4, 1, 3), (1, 3, 3, 3, 4), (2, 1, 1, 4, 2)])
def test_the_patch_checks_pass_the_packages_patches_for_any_shape(batch, channels, grid_h, grid_w, patch_size):
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


def test_gradients_reach_names_the_rows_of_a_table_that_get_no_gradient(model, images):
    class FirstRowOnly(ViT):
        def forward(self, x):
            tokens = torch.cat([self.cls_token.expand(len(x), -1, -1), self.patch_embed(x)], dim=1)  # [B, L, D]
            tokens = tokens + self.pos_embed[:, 0]  # row 0 for every token
            for block in self.blocks:
                tokens = block(tokens)  # [B, L, D]
            return self.head(self.norm(tokens)[:, 0])  # [B, K]

    torch.manual_seed(0)
    result = gradients_reach(FirstRowOnly(CONFIG), images)
    assert not result.passed and result.detail == "a gradient of exactly zero reaches rows 1-4 of pos_embed."


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
    assert not result.passed and "a LayerNorm sits on the residual path" in result.detail


def test_pixel_span_names_rows_and_columns_and_lists_gaps():
    square = torch.tensor([0, 1, 8, 9])  # rows 0-1, columns 0-1 of an 8x8 image
    assert pixel_span(square, 8, 8) == "rows 0-1, columns 0-1"
    assert pixel_span(square + 64, 8, 8) == "rows 0-1, columns 0-1"  # the same square in channel 1
    assert pixel_span(torch.tensor([0, 16, 32]), 8, 8) == "rows 0, 2, 4, columns 0"


# --- bad input: one case per function and parameter (vitsteps._validate's tests try the bad values) -------------

MODEL = ViT(CONFIG).eval()
IMAGES = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
REFUSED = {
    "batch_independence: a model that is text":
        (lambda: batch_independence("model", IMAGES), TypeError, r"model must be callable \(images"),
    "batch_independence: a batch of one":
        (lambda: batch_independence(MODEL, IMAGES[:1]), ValueError,
         r"images must hold at least 2 samples for this property, got a batch of 1"),
    "input_sensitivity: images without a batch dimension":
        (lambda: input_sensitivity(MODEL, torch.rand(1, 8, 8)), ValueError,
         r"images must be a tensor with 4 dimensions.*unsqueeze\(0\)"),
    "input_sensitivity: two identical images":
        (lambda: input_sensitivity(MODEL, torch.zeros(2, 1, 8, 8)), ValueError,
         r"images\[0\] and images\[1\] are identical; pass two different images"),
    "position_sensitivity: a plain function without a patch size":
        (lambda: position_sensitivity(lambda x: x.mean((2, 3)), IMAGES), ValueError,
         r"patch_size is needed: this model has no config\.patch_size; pass patch_size=P"),
    "permute_patches: an order that is not a permutation":
        (lambda: permute_patches(IMAGES, 2, [0] * 16), ValueError,
         r"permutation must be a new order of the 16 patches \(each of 0\.\.15 once\), got \[0, 0, "),
    "permute_patches: a patch size that does not divide":
        (lambda: permute_patches(IMAGES, 3), ValueError, r"patch_size=3 does not divide"),
    "gradients_reach: a plain function":
        (lambda: gradients_reach(lambda x: x, IMAGES), TypeError, r"model must be a torch\.nn\.Module"),
    "gradients_reach: a single name as a string":
        (lambda: gradients_reach(MODEL, IMAGES, "pos_embed"), TypeError, r"pass \['pos_embed'\]"),
    "gradients_reach: names that match nothing":
        (lambda: gradients_reach(MODEL, IMAGES, ["position_table"]), ValueError,
         r"names must match trainable parameters, but nothing matches \['position_table'\]"),
    "gradients_reach: a model without trainable parameters":
        (lambda: gradients_reach(nn.Flatten(), IMAGES), ValueError, r"model has no trainable parameters to check"),
    "initial_loss_near_log_k: another number of classes":
        (lambda: initial_loss_near_log_k(MODEL, IMAGES, num_classes=7), ValueError,
         r"num_classes=7 must be at least 2 and match the logits' last dimension 10"),
    "pre_norm_residual: images for tokens":
        (lambda: pre_norm_residual(Block(16, 4), torch.rand(2, 1, 8, 8)), ValueError,
         r"tokens must be a tensor with 3 dimensions"),
    "patch_order: a patchify that is not callable":
        (lambda: patch_order(None, IMAGES, 2), TypeError, r"patchify must be callable"),
    "patch_round_trip: a patch size of 0":
        (lambda: patch_round_trip(image_to_patches, IMAGES, 0), ValueError, r"patch_size must be a positive int"),
    "run_checks: a block with a model without a config":
        (lambda: run_checks(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), IMAGES, patch_size=4, block=Block(16, 4)),
         ValueError,
         r"block needs tokens of the model's width, but the model has no config\.embed_dim"),
    "deterministic_in_eval: a model that is a number":
        (lambda: deterministic_in_eval(3, IMAGES), TypeError, r"model must be callable"),
    "readout_symmetry: a model without a position table":
        (lambda: readout_symmetry(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), IMAGES, 4), ValueError,
         r"model has no pos_embed tensor to set to zero"),
    "readout_symmetry: a plain function":
        (lambda: readout_symmetry(lambda x: x, IMAGES, 4), TypeError, r"model must be a torch\.nn\.Module"),
    "format_results: booleans":
        (lambda: format_results([True, False]), TypeError, r"results must be a list of PropertyResult objects"),
}


@refusal_cases(REFUSED)
def test_bad_input_is_refused_naming_the_parameter_the_value_and_the_fix(refusals):
    assert_all_refused(refusals)
