"""Moving a ViT to another image size: the position table is resampled over the patch grid, CLS kept apart."""
from __future__ import annotations

import pytest
import torch

from vitsteps import ViT, ViTConfig, resample_position_table
from vitsteps.convert import change_image_size

CONFIG = ViTConfig(img_size=8, patch_size=2, in_chans=1, num_classes=10, embed_dim=32, depth=2, num_heads=4)


@pytest.fixture
def model() -> ViT:
    torch.manual_seed(0)
    return ViT(CONFIG).eval()


def test_a_model_built_for_8x8_runs_on_16x16_after_resampling(model):
    images = torch.rand(2, 1, 16, 16)
    with pytest.raises(ValueError, match="resample its position table"):
        model(images)
    resized = change_image_size(model, 16)
    assert resized.config.img_size == 16 and resized.config.grid_size == 8
    assert resized.pos_embed.shape == (1, 1 + 64, 32)
    logits = resized(images)
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()


def test_resampling_keeps_the_cls_row_and_copies_every_other_weight(model):
    resized = change_image_size(model, 16)
    assert torch.equal(resized.pos_embed[0, 0], model.pos_embed[0, 0])
    ours, theirs = model.state_dict(), resized.state_dict()
    assert all(torch.equal(ours[name], theirs[name]) for name in ours if name != "pos_embed")


def test_the_resampled_table_is_the_bicubic_table_of_the_patch_grid(model):
    resized = change_image_size(model, 12)
    expected = resample_position_table(model.pos_embed.detach(), new_grid=6, old_grid=4)
    assert torch.equal(resized.pos_embed.detach(), expected)


def test_resampling_to_the_same_size_changes_nothing(model):
    images = torch.rand(3, 1, 8, 8)
    same = change_image_size(model, 8)
    assert torch.allclose(same.pos_embed, model.pos_embed, atol=1e-6)
    with torch.no_grad():
        assert torch.allclose(same(images), model(images), atol=1e-5)


def test_a_table_that_grows_along_the_columns_still_grows_after_upsampling(model):
    with torch.no_grad():
        columns = torch.arange(4.0).repeat(4)  # [N], the column index of each patch
        model.pos_embed[0, 1:] = columns[:, None]
    resized = change_image_size(model, 16)
    grid = resized.pos_embed[0, 1:, 0].reshape(8, 8)  # [rows, cols] of feature 0
    assert (grid[:, 1:] >= grid[:, :-1]).all()  # still increasing left to right
    assert torch.allclose(grid, grid[:1].expand(8, 8))  # and the same on every row


def test_a_sincos_model_gets_the_sincos_table_of_its_new_grid():
    torch.manual_seed(0)
    model = ViT(CONFIG, pos_embed="sincos")
    resized = change_image_size(model, 16)
    assert torch.equal(resized.pos_embed, ViT(CONFIG, pos_embed="sincos", img_size=16).pos_embed)


def test_the_resized_model_keeps_the_training_mode(model):
    assert not change_image_size(model, 16).training
    assert change_image_size(model.train(), 16).training


def test_change_image_size_refuses_a_size_the_patches_do_not_divide(model):
    with pytest.raises(ValueError, match="patch_size=2 does not divide"):
        change_image_size(model, 15)


def test_change_image_size_refuses_a_non_positive_size(model):
    with pytest.raises(ValueError, match="img_size must be a positive int"):
        change_image_size(model, 0)


def test_change_image_size_refuses_another_model_type():
    with pytest.raises(TypeError, match="vitsteps.ViT"):
        change_image_size(torch.nn.Linear(2, 2), 16)
