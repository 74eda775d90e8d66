"""vitsteps.teach.explorers.compute: what the explorers show, computed without a widget, and bad input named."""
from __future__ import annotations

import pytest
import torch
from helpers import assert_all_refused, refusal_cases

from vitsteps import ViT, get_config, patch_embed_unfold
from vitsteps.data import digit_image, mnist_image
from vitsteps.teach.explorers import compute

L = compute.attention_base_config().seq_len  # tokens of the mnist model the attention explorer shows (CLS + patches)


# ------------------------------------------------------------------------------------- patch pipeline


def test_patch_pipeline_shapes_are_the_original_articles():
    shapes = dict(compute.patch_pipeline_shapes(image_size=8, patch_size=4, in_chans=3, model_dim=8))
    assert shapes == {
        "image": (1, 3, 8, 8),
        "unfold": (1, 48, 4),
        "transpose": (1, 4, 48),
        "matmul": (1, 4, 8),
        "kernel": (8, 3, 4, 4),
        "conv": (1, 8, 2, 2),
        "reshape": (1, 8, 4),
        "transpose to tokens": (1, 4, 8),
    }
    assert list(shapes) == list(compute.PATCH_STEPS)  # every step the table describes, in its order


@pytest.mark.parametrize(("image_size", "patch_size", "in_chans", "model_dim"),
                         [(8, 2, 1, 64), (8, 8, 3, 5), (12, 3, 1, 7), (32, 1, 3, 2), (28, 4, 1, 16)])
def test_patch_pipeline_shapes_follow_the_formulas(image_size, patch_size, in_chans, model_dim):
    shapes = dict(compute.patch_pipeline_shapes(image_size, patch_size, in_chans, model_dim))
    grid = image_size // patch_size
    N, depth = grid * grid, in_chans * patch_size ** 2
    assert shapes["unfold"] == (1, depth, N)
    assert shapes["transpose"] == (1, N, depth)
    assert shapes["matmul"] == shapes["transpose to tokens"] == (1, N, model_dim)
    assert shapes["kernel"] == (model_dim, in_chans, patch_size, patch_size)
    assert shapes["conv"] == (1, model_dim, grid, grid)
    assert shapes["reshape"] == (1, model_dim, N)


def test_patch_pipeline_tokens_are_the_packages_and_both_routes_agree():
    pipeline = compute.patch_pipeline(image_size=8, patch_size=2, in_chans=3, model_dim=6, seed=5)
    weight = torch.randn(12, 6, generator=torch.Generator().manual_seed(5))
    assert torch.equal(pipeline.patch_tokens, patch_embed_unfold(pipeline.image, 2, weight))
    assert pipeline.routes_agree is True


def test_explorer_image_keeps_the_digit_and_colours_the_background():
    gray = compute.explorer_image(8, 1, digit=3)
    colour = compute.explorer_image(8, 3, digit=3)
    assert gray.shape == (1, 1, 8, 8) and colour.shape == (1, 3, 8, 8)
    assert torch.equal(gray, digit_image(3))
    assert 0 <= float(colour.min()) and float(colour.max()) <= 1
    strokes = gray[0, 0] == 1
    assert torch.equal(colour[0][:, strokes], torch.ones(3, int(strokes.sum())))  # white strokes in every channel
    assert not torch.equal(colour[0, 1], colour[0, 2])  # channels differ in the background
    assert compute.explorer_image(20, 1).shape == (1, 1, 20, 20)


# ------------------------------------------------------------------------------------- token pipeline


def test_token_pipeline_shapes_are_the_original_articles():
    shapes = dict(compute.token_pipeline_shapes(batch_size=1, num_patches=4, model_dim=8, max_num_token=16))
    assert shapes == {
        "patch tokens": (1, 4, 8),
        "cls_token": (1, 1, 8),
        "expand": (1, 1, 8),
        "cat": (1, 5, 8),
        "position table": (16, 8),
        "slice": (5, 8),
        "tile": (1, 5, 8),
        "add": (1, 5, 8),
    }
    assert list(shapes) == list(compute.TOKEN_STEPS)


def test_token_pipeline_tiles_the_slice_over_the_batch():
    shapes = dict(compute.token_pipeline_shapes(batch_size=3, num_patches=9, model_dim=4, max_num_token=10))
    assert shapes["expand"] == (3, 1, 4)
    assert shapes["cat"] == (3, 10, 4)
    assert shapes["slice"] == (10, 4)
    assert shapes["tile"] == shapes["add"] == (3, 10, 4)


def test_token_pipeline_shows_that_slicing_past_the_table_is_silent():
    pipeline = compute.token_pipeline(batch_size=2, num_patches=20, model_dim=8, max_num_token=16)
    shapes = dict(pipeline.steps)
    assert shapes["slice"] == (16, 8)  # table[:21] quietly returns 16 rows
    assert shapes["tile"] == (2, 16, 8)
    assert "add" not in shapes
    assert "use a table with at least 21 rows" in pipeline.error


# ------------------------------------------------------------------------------------------- attention


def test_attention_maps_of_other_heads_are_those_of_a_seeded_untrained_mnist_model_and_rows_sum_to_one(
        seeded_model):
    maps, trained = compute.attention_maps_for_digit(num_heads=2, depth=1, digit=3)
    assert not trained
    assert maps.shape == (1, 2, L, L) and L == 50  # CLS + 7x7 patches of a 28x28 digit
    assert torch.allclose(maps.sum(-1), torch.ones(1, 2, L), atol=1e-5)
    model = seeded_model(0, num_heads=2, depth=1)
    assert torch.allclose(maps[0], model.attention_maps(mnist_image(3))[0][0])
    assert torch.equal(compute.explorer_digit(3), mnist_image(3))


def test_attention_row_is_the_querys_row_of_that_layer_and_head():
    maps, _ = compute.attention_maps_for_digit(num_heads=4, depth=2, digit=1)
    row = compute.attention_row(num_heads=4, depth=2, layer=1, head=3, query=L - 1, digit=1)
    assert row.shape == (L,)
    assert torch.equal(row, maps[1, 3, L - 1])


def test_attention_maps_leave_the_global_random_state_alone():
    state = torch.random.get_rng_state()
    compute.attention_maps_for_digit(num_heads=8, depth=2, digit=4)
    assert torch.equal(state, torch.random.get_rng_state())


def test_attention_uses_the_shipped_model_only_where_heads_and_depth_match_and_says_which(shipped_model,
                                                                                         seeded_model):
    trained = shipped_model(seeded_model(7, num_heads=2, depth=2))
    config = trained.config
    maps, is_trained = compute.attention_maps_for_digit(num_heads=2, depth=2, digit=3)
    assert is_trained and compute.attention_base_config() == config
    assert torch.allclose(maps[1], trained.attention_maps(mnist_image(3))[1][0])
    assert compute.attention_model_note(2, 2) == (True, "the trained mnist model shipped with vitsteps "
                                                        "(vitsteps/checkpoints/mnist): 2 blocks of 2 heads, D=64, "
                                                        "d=D/h=32")
    maps, is_trained = compute.attention_maps_for_digit(num_heads=4, depth=2, digit=3)
    assert not is_trained
    assert not torch.allclose(maps[:, :2], trained.attention_maps(mnist_image(3))[1][0][None])
    is_trained, note = compute.attention_model_note(4, 2)
    assert not is_trained and note.startswith("UNTRAINED: the trained mnist model has 2 heads and 2 blocks; 4 heads")
    assert note.endswith("Set heads to 2 and blocks to 2 to see the trained model.")


def test_without_a_shipped_model_every_choice_is_untrained_and_the_note_says_why(shipped_model):
    shipped_model(None)
    assert compute.attention_base_config() == get_config("mnist")
    assert not compute.attention_maps_for_digit(num_heads=4, depth=6, digit=3)[1]
    is_trained, note = compute.attention_model_note(4, 6)
    assert not is_trained and note.startswith("UNTRAINED: this installation holds no trained mnist model")


def test_the_shipped_model_is_the_mnist_checkpoint_and_an_unreadable_one_is_not_replaced_silently(monkeypatch):
    from vitsteps import train

    compute.trained_attention_model.cache_clear()
    try:
        shipped = compute.trained_attention_model()
        assert (shipped is None) == ("mnist" not in train.shipped_checkpoints())
        if shipped is not None:
            assert not shipped.training and shipped.config == get_config("mnist")
        compute.trained_attention_model.cache_clear()
        monkeypatch.setattr(train, "shipped_checkpoints", lambda: ["digits", "mnist"])

        def unreadable(name):
            raise RuntimeError("a damaged file")

        monkeypatch.setattr(train, "load_pretrained", unreadable)
        with pytest.raises(RuntimeError, match="a damaged file"):
            compute.trained_attention_model()
    finally:
        compute.trained_attention_model.cache_clear()


# ------------------------------------------------------------------------------------------ model stats


def test_model_stats_of_vit_base():
    stats = compute.model_stats()
    assert stats.seq_len == 197
    assert stats.config.head_dim == 64
    assert stats.params_formula == stats.params_counted == 86_567_656
    assert stats.flops == 35_127_656_448  # 17.6 G multiply-adds, the figure papers quote


def test_model_stats_counts_the_parameters_of_an_odd_configuration():
    stats = compute.model_stats(depth=3, embed_dim=48, num_heads=6, mlp_ratio=2.5, patch_size=7, img_size=28,
                                in_chans=1, num_classes=7)
    model = ViT(stats.config)
    assert stats.params_counted == stats.params_formula == sum(p.numel() for p in model.parameters())


def test_shape_text_writes_a_shape_as_the_notebooks_print_it():
    assert compute.shape_text((1, 4, 8)) == "[1, 4, 8]" and compute.shape_text(()) == "[]"


# --- bad input: one case per function and parameter (vitsteps._validate's tests try the bad values) -------------

REFUSED = {
    "explorer_image: no channels":
        (lambda: compute.explorer_image(8, 0), ValueError, r"in_chans must be a positive int, got 0"),
    "explorer_image: a digit of 11":
        (lambda: compute.explorer_image(8, 1, digit=11), ValueError, r"digit must be an int from 0 to 9, got 11"),
    "patch_pipeline: an image size of 0":
        (lambda: compute.patch_pipeline_shapes(image_size=0), ValueError, r"image_size must be a positive int"),
    "patch_pipeline: a fractional patch size":
        (lambda: compute.patch_pipeline_shapes(patch_size=2.0), TypeError, r"patch_size must be a positive int"),
    "patch_pipeline: a model width that is text":
        (lambda: compute.patch_pipeline_shapes(model_dim="8"), TypeError, r"model_dim must be a positive int"),
    "patch_pipeline: a patch size that does not divide the image":
        (lambda: compute.patch_pipeline_shapes(image_size=8, patch_size=3), ValueError,
         r"patch_size=3 does not divide the image height 8"),
    "patch_pipeline: a patch larger than the image":
        (lambda: compute.patch_pipeline_shapes(image_size=8, patch_size=16), ValueError,
         r"patch_size=16 is larger than the image \(8x8\); pick a patch size from 1 to 8"),
    "token_pipeline: no patches":
        (lambda: compute.token_pipeline_shapes(num_patches=0), ValueError, r"num_patches must be a positive int"),
    "token_pipeline: a sequence longer than the table":
        (lambda: compute.token_pipeline_shapes(num_patches=20, max_num_token=16), ValueError,
         r"21 tokens but position_table has only 16 rows \(max_num_token=16\)"),
    "attention_model_note: heads that do not divide the width":
        (lambda: compute.attention_model_note(num_heads=3, depth=6), ValueError, r"num_heads"),
    "attention_model_note: no blocks":
        (lambda: compute.attention_model_note(num_heads=4, depth=0), ValueError, r"depth must be a positive int"),
    "attention_maps_for_digit: a digit of 10":
        (lambda: compute.attention_maps_for_digit(num_heads=4, depth=1, digit=10), ValueError,
         r"digit must be an int from 0 to 9, got 10"),
    "attention_maps_for_digit: heads that do not divide the width":
        (lambda: compute.attention_maps_for_digit(num_heads=3, depth=1), ValueError,
         r"embed_dim=64 is not divisible by num_heads=3"),
    "attention_row: a layer past the last block":
        (lambda: compute.attention_row(num_heads=4, depth=2, layer=2, head=0, query=0), ValueError,
         r"layer must be an int from 0 to 1, got 2; there are 2 blocks"),
    "attention_row: a head past the last one":
        (lambda: compute.attention_row(num_heads=4, depth=2, layer=0, head=4, query=0), ValueError,
         r"head must be an int from 0 to 3, got 4"),
    "attention_row: a negative query":
        (lambda: compute.attention_row(num_heads=4, depth=2, layer=0, head=0, query=-1), ValueError,
         rf"query must be an int from 0 to {L - 1}, got -1; there are {L} tokens"),
    "model_stats: a patch size that does not divide the image":
        (lambda: compute.model_stats(patch_size=5, img_size=224), ValueError, r"patch_size=5 does not divide"),
    "model_stats: a width the heads do not divide":
        (lambda: compute.model_stats(embed_dim=100, num_heads=3), ValueError,
         r"embed_dim=100 is not divisible by num_heads=3"),
}


@refusal_cases(REFUSED)
def test_bad_input_is_refused_naming_the_parameter_the_value_and_the_fix(refusals):
    assert_all_refused(refusals)
