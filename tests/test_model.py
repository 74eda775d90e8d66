"""Stage 6 (vitsteps.model): the whole ViT, its configuration, presets and parameter count, and bad input named."""
import dataclasses

import pytest
import torch
from helpers import assert_close
from torch import nn

from vitsteps.model import PRESETS, ViT, ViTConfig, count_parameters, get_config, parameter_formula
from vitsteps.tokens import add_position_embedding, prepend_cls_token, sincos_position_table

TIMM_KEYS = ["patch_embed.proj.weight", "cls_token", "pos_embed", "blocks.0.norm1.weight", "blocks.0.attn.qkv.weight",
             "blocks.0.attn.proj.weight", "blocks.0.norm2.weight", "blocks.0.mlp.fc1.weight", "blocks.0.mlp.fc2.weight",
             "norm.weight", "head.weight"]


def _images(B: int, C: int = 3, side: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.rand(B, C, side, side, generator=torch.Generator().manual_seed(seed))


def _model(name: str = "toy", seed: int = 0, **overrides: object) -> ViT:
    torch.manual_seed(seed)
    model = ViT(get_config(name, **overrides)).eval()
    with torch.no_grad():  # timm's init leaves the CLS token near zero; give it a value that shows
        model.cls_token.normal_()
    return model


# --- configuration and presets -----------------------------------------------------------------------------------

def test_toy_preset_is_the_article_configuration():
    config = get_config("toy")
    assert (config.img_size, config.patch_size, config.in_chans, config.embed_dim, config.num_classes) == \
        (8, 4, 3, 8, 10)
    assert (config.grid_size, config.num_patches, config.seq_len, config.head_dim) == (2, 4, 5, 1)


def test_derived_sizes_follow_the_fields():
    config = ViTConfig(img_size=12, patch_size=3, embed_dim=12, num_heads=3, mlp_ratio=2.5)
    assert (config.grid_size, config.num_patches, config.seq_len, config.head_dim, config.mlp_hidden) == \
        (4, 16, 17, 4, 30)


def test_get_config_replaces_fields_and_leaves_the_preset_alone():
    config = get_config("vit_base", num_classes=10)
    assert config.num_classes == 10
    assert config.embed_dim == 768
    assert PRESETS["vit_base"].num_classes == 1000


def test_every_preset_is_a_valid_config():
    for name, config in PRESETS.items():
        assert isinstance(config, ViTConfig), name
        assert config.img_size % config.patch_size == 0, name
        assert config.embed_dim % config.num_heads == 0, name


def test_a_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_config("toy").depth = 3


def test_vit_overrides_replace_fields_of_the_config():
    model = ViT(get_config("toy"), depth=2, num_classes=4)
    assert model.config == get_config("toy", depth=2, num_classes=4)
    assert len(model.blocks) == 2
    assert model(_images(1)).shape == (1, 4)


def test_vit_without_a_config_is_vit_base_with_the_overrides():
    overrides = {"img_size": 32, "embed_dim": 12, "depth": 1, "num_heads": 3, "num_classes": 10}
    model = ViT(**overrides)
    assert model.config == dataclasses.replace(ViTConfig(), **overrides)
    assert model.config.patch_size == 16 and model.config.in_chans == 3
    assert model(_images(1, side=32)).shape == (1, 10)


# --- parameter counts ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["toy", "digits", "vit_tiny"])
def test_counting_a_built_model_agrees_with_the_formula(name):
    model = ViT(get_config(name))
    assert count_parameters(model) == parameter_formula(model.config)["total"]


@pytest.mark.parametrize("overrides", [{"qkv_bias": False}, {"num_classes": 0}, {"pos_embed": "sincos"},
                                       {"mlp_ratio": 2.5, "depth": 3}, {"img_size": 12, "patch_size": 3}])
def test_counting_agrees_with_the_formula_for_every_option(overrides):
    model = ViT(get_config("toy", **overrides))
    assert count_parameters(model) == parameter_formula(model.config)["total"]


def test_each_part_of_the_formula_counts_its_own_module():
    model = ViT(get_config("digits"))
    parts = parameter_formula(model.config)
    assert parts["patch_embed"] == count_parameters(model.patch_embed)
    assert parts["cls_token"] == model.cls_token.numel()
    assert parts["pos_embed"] == model.pos_embed.numel()
    assert parts["blocks"] == count_parameters(model.blocks)
    assert parts["norm"] == count_parameters(model.norm)
    assert parts["head"] == count_parameters(model.head)
    assert parts["total"] == sum(value for part, value in parts.items() if part != "total")


@pytest.mark.parametrize("name, total", [("vit_tiny", 5_717_416), ("vit_small", 22_050_664),
                                         ("vit_base", 86_567_656), ("vit_large", 304_326_632),
                                         ("vit_huge", 632_045_800)])
def test_the_paper_sizes_have_their_published_parameter_counts(name, total):
    assert parameter_formula(get_config(name))["total"] == total


def test_the_article_toy_has_a_small_feed_forward_instead_of_2048_wide():
    parts = parameter_formula(get_config("toy"))
    assert parts["total"] == count_parameters(ViT(get_config("toy")))
    assert parts["blocks"] == 6 * (2 * 8 + 8 * 24 + 24 + 8 * 8 + 8 + 2 * 8 + 8 * 32 + 32 + 32 * 8 + 8)


def test_a_sincos_table_is_fixed_and_not_a_parameter():
    model = ViT(get_config("toy", pos_embed="sincos"))
    assert "pos_embed" not in dict(model.named_parameters())
    assert "pos_embed" in model.state_dict()
    assert torch.equal(model.pos_embed[0], sincos_position_table(2, 8))
    assert parameter_formula(model.config)["pos_embed"] == 0


def test_count_parameters_can_count_only_trainable_ones():
    model = ViT(get_config("toy"))
    model.patch_embed.requires_grad_(False)
    expected = parameter_formula(model.config)["total"] - parameter_formula(model.config)["patch_embed"]
    assert count_parameters(model, trainable_only=True) == expected


# --- forward pass ----------------------------------------------------------------------------------------------------

def test_the_forward_pass_is_the_stages_in_order():
    model = _model("toy", depth=2)
    image = _images(2)
    patch_tokens = model.patch_embed(image)  # [B, N, D]
    tokens = prepend_cls_token(patch_tokens, model.cls_token)  # [B, L, D]
    tokens = add_position_embedding(tokens, model.pos_embed)  # [B, L, D]
    for block in model.blocks:
        tokens = block(tokens)  # [B, L, D]
    logits = model.head(model.norm(tokens)[:, 0])  # [B, K]
    assert_close(model(image), logits)


def test_forward_is_the_head_on_the_features():
    model = _model("toy")
    image = _images(2)
    features = model.forward_features(image)
    assert features.shape == (2, 5, 8)
    assert_close(model(image), model.forward_head(features))


@pytest.mark.parametrize("name", ["toy", "digits"])
def test_a_sample_gives_the_same_logits_whatever_its_batch_mates(name):
    model = _model(name)
    C, side = model.config.in_chans, model.config.img_size
    batch = _images(4, C, side)
    alone = torch.cat([model(batch[i:i + 1]) for i in range(4)])
    assert_close(model(batch), alone, rtol=1e-5, atol=1e-6)
    changed = batch.clone()
    changed[1:] = _images(3, C, side, seed=1)
    assert_close(model(changed)[0], model(batch)[0], rtol=1e-5, atol=1e-6)


def test_different_images_give_different_logits():
    model = _model("toy")
    logits = model(_images(2))
    assert not torch.allclose(logits[0], logits[1])


def test_swapping_two_patches_changes_the_logits_only_because_positions_are_added():
    model = _model("toy")
    with torch.no_grad():  # weights of order one, so that a change shows
        for parameter in model.parameters():
            parameter.normal_()
    image = _images(1)
    swapped = image.clone()
    swapped[..., :4, :4], swapped[..., :4, 4:] = image[..., :4, 4:], image[..., :4, :4]
    assert (model(image) - model(swapped)).abs().max() > 1e-2
    with torch.no_grad():
        model.pos_embed.zero_()
    assert_close(model(image), model(swapped), rtol=1e-4, atol=1e-5)


def test_the_gradient_reaches_the_cls_token_and_the_position_table():
    model = _model("toy").train()
    model(_images(2)).sum().backward()
    for name in ("cls_token", "pos_embed", "patch_embed.proj.weight", "blocks.5.mlp.fc2.weight", "head.weight"):
        gradient = dict(model.named_parameters())[name].grad
        assert gradient is not None and gradient.abs().sum() > 0, name


def test_a_model_without_classes_returns_the_cls_features():
    model = _model("toy", num_classes=0)
    assert isinstance(model.head, nn.Identity)
    image = _images(2)
    assert_close(model(image), model.forward_features(image)[:, 0])


def test_a_sincos_model_trains_everything_but_its_table():
    model = _model("toy", pos_embed="sincos").train()
    model(_images(2)).sum().backward()
    assert model.pos_embed.grad is None
    assert model.cls_token.grad is not None and model.cls_token.grad.abs().sum() > 0


def test_attention_maps_give_one_map_per_block_and_head():
    model = _model("digits")
    maps = model.attention_maps(_images(3, C=1))
    config = model.config
    assert len(maps) == config.depth
    for weights in maps:
        assert weights.shape == (3, config.num_heads, config.seq_len, config.seq_len)
        assert not weights.requires_grad
        assert_close(weights.sum(-1), torch.ones(3, config.num_heads, config.seq_len))


def test_features_with_attention_equal_features_without():
    model = _model("toy")
    image = _images(2)
    features, maps = model.forward_features(image, return_attention=True)
    assert_close(features, model.forward_features(image))
    assert [tuple(weights.shape) for weights in maps] == [(2, 8, 5, 5)] * 6


def test_parameter_names_are_timm_names():
    keys = list(ViT(get_config("toy", depth=2)).state_dict())
    for key in TIMM_KEYS:
        assert key in keys, key
    block = ["norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight", "attn.proj.bias",
             "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias"]
    expected = (["cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias"]
                + [f"blocks.{i}.{name}" for i in range(2) for name in block]
                + ["norm.weight", "norm.bias", "head.weight", "head.bias"])
    assert sorted(keys) == sorted(expected)


def test_parameter_shapes_are_timm_shapes():
    state = ViT(get_config("toy")).state_dict()
    assert state["cls_token"].shape == (1, 1, 8)
    assert state["pos_embed"].shape == (1, 5, 8)
    assert state["patch_embed.proj.weight"].shape == (8, 3, 4, 4)
    assert state["blocks.0.attn.qkv.weight"].shape == (24, 8)
    assert state["head.weight"].shape == (10, 8)


def test_a_state_dict_loads_into_a_fresh_model_and_gives_the_same_logits():
    model = _model("toy")
    fresh = _model("toy", seed=1)
    fresh.load_state_dict(model.state_dict())
    image = _images(2)
    assert_close(fresh(image), model(image))


# --- bad input, one test per case ------------------------------------------------------------------------------------

@pytest.mark.parametrize("field", ["img_size", "patch_size", "in_chans", "embed_dim", "depth", "num_heads"])
@pytest.mark.parametrize("value", [0, -4])
def test_config_refuses_a_zero_or_negative_size(field, value):
    with pytest.raises(ValueError, match=rf"^{field} must be a positive int, got {value}; pass a whole number"):
        ViTConfig(**{field: value})


@pytest.mark.parametrize("field", ["img_size", "patch_size", "in_chans", "embed_dim", "depth", "num_heads"])
@pytest.mark.parametrize("value", [8.0, "8", True])
def test_config_refuses_a_size_that_is_not_a_whole_number(field, value):
    with pytest.raises(TypeError, match=rf"^{field} must be a positive int, got {value!r} of type"):
        ViTConfig(**{field: value})


def test_config_refuses_a_patch_size_that_does_not_divide_the_image():
    with pytest.raises(ValueError, match=r"patch_size=5 does not divide the image side \(img_size\) 8: .* "
                                         r"pick a patch size that divides 8"):
        ViTConfig(img_size=8, patch_size=5)


def test_config_refuses_an_embed_dim_not_divisible_by_num_heads():
    with pytest.raises(ValueError, match=r"embed_dim=8 is not divisible by num_heads=3: .* "
                                         r"pick num_heads from \[1, 2, 4, 8\]"):
        ViTConfig(embed_dim=8, num_heads=3)


@pytest.mark.parametrize("value, error", [(-1, ValueError), (10.0, TypeError), (True, TypeError)])
def test_config_refuses_a_bad_number_of_classes(value, error):
    with pytest.raises(error, match=rf"num_classes must be an int >= 0, got {value!r}.*0 for a model without a head"):
        ViTConfig(num_classes=value)


@pytest.mark.parametrize("value, error", [(0, ValueError), (-2.0, ValueError), ("4", TypeError), (None, TypeError)])
def test_config_refuses_a_bad_mlp_ratio(value, error):
    with pytest.raises(error, match=rf"mlp_ratio must be a positive number, got {value!r}"):
        ViTConfig(mlp_ratio=value)


def test_config_refuses_an_mlp_ratio_that_leaves_no_hidden_unit():
    with pytest.raises(ValueError, match=r"mlp_ratio=0\.1 gives an MLP hidden width of int\(8 \* 0\.1\) = 0"):
        ViTConfig(img_size=8, patch_size=4, embed_dim=8, num_heads=2, mlp_ratio=0.1)


@pytest.mark.parametrize("field", ["drop_rate", "attn_drop_rate"])
@pytest.mark.parametrize("value, error", [(1.0, ValueError), (-0.1, ValueError), ("0.1", TypeError)])
def test_config_refuses_a_dropout_rate_that_is_not_a_probability(field, value, error):
    with pytest.raises(error, match=rf"^{field} must be a probability in \[0, 1\), got {value!r}"):
        ViTConfig(**{field: value})


def test_config_refuses_an_unknown_position_embedding():
    with pytest.raises(ValueError, match=r"pos_embed must be 'learn' or 'sincos', got 'fixed'; use 'learn'"):
        ViTConfig(pos_embed="fixed")


def test_config_refuses_a_sincos_table_when_embed_dim_is_not_a_multiple_of_four():
    with pytest.raises(ValueError, match=r"pos_embed='sincos' needs embed_dim divisible by 4, got 6; "
                                         r"use embed_dim=8"):
        ViTConfig(img_size=8, patch_size=4, embed_dim=6, num_heads=2, pos_embed="sincos")


def test_config_refuses_a_qkv_bias_that_is_not_a_bool():
    with pytest.raises(TypeError, match=r"qkv_bias must be True or False, got 'no'"):
        ViTConfig(qkv_bias="no")


@pytest.mark.parametrize("value, error", [(0, ValueError), (-1e-6, ValueError), ("1e-6", TypeError)])
def test_config_refuses_a_bad_layer_norm_epsilon(value, error):
    with pytest.raises(error, match=rf"norm_eps must be a positive number, got {value!r}.*; pass e\.g\. 1e-6"):
        ViTConfig(norm_eps=value)


def test_get_config_refuses_an_unknown_preset_and_lists_the_names():
    with pytest.raises(ValueError, match=r"unknown preset 'vit_gigantic'; choose one of \[.*'vit_base'.*\]"):
        get_config("vit_gigantic")


def test_get_config_refuses_a_name_that_is_not_a_string():
    with pytest.raises(TypeError, match=r"name must be a preset name \(str\), got list"):
        get_config(["toy"])


def test_get_config_refuses_an_unknown_field_and_lists_the_fields():
    with pytest.raises(TypeError, match=r"ViTConfig has no field \['hidden_size'\]; its fields are \[.*'embed_dim'"):
        get_config("toy", hidden_size=8)


def test_get_config_refuses_a_bad_value_for_a_known_field():
    with pytest.raises(ValueError, match=r"depth must be a positive int, got 0"):
        get_config("toy", depth=0)


def test_vit_refuses_an_unknown_field():
    with pytest.raises(TypeError, match=r"ViTConfig has no field \['layers'\]; its fields are"):
        ViT(get_config("toy"), layers=2)


def test_vit_refuses_a_config_that_is_not_a_vit_config():
    with pytest.raises(TypeError, match=r"config must be a ViTConfig, got str; use ViT\(get_config\('digits'\)\)"):
        ViT("toy")


def test_vit_refuses_an_image_of_another_size():
    with pytest.raises(ValueError, match=r"image size \(16x16\) does not match the model \(8x8\); "
                                         r"resize the image, or build the model for 16x16"):
        _model("toy")(_images(1, side=16))


def test_vit_refuses_an_image_with_another_channel_count():
    with pytest.raises(ValueError, match=r"image has 1 channels but this model was built for in_chans=3"):
        _model("toy")(_images(1, C=1))


def test_vit_refuses_an_image_without_a_batch_dimension():
    with pytest.raises(ValueError, match=r"image must have 4 dimensions \[B, C, H, W\], got shape \(3, 8, 8\); "
                                         r"add a batch dimension with \.unsqueeze\(0\)"):
        _model("toy")(_images(1)[0])


def test_vit_refuses_an_integer_image():
    with pytest.raises(TypeError, match=r"image must be a floating-point tensor, got dtype torch\.uint8"):
        _model("toy")((_images(1) * 255).to(torch.uint8))


def test_attention_maps_refuse_an_image_of_another_size():
    with pytest.raises(ValueError, match=r"image size \(4x4\) does not match the model \(8x8\)"):
        _model("toy").attention_maps(_images(1, side=4))


def test_forward_head_refuses_tokens_of_another_width():
    with pytest.raises(ValueError, match=r"tokens have width D=6 but this model has embed_dim=8; "
                                         r"pass the \[B, L, 8\] output of forward_features"):
        _model("toy").forward_head(torch.randn(2, 5, 6))


def test_forward_head_refuses_only_the_cls_token():
    with pytest.raises(ValueError, match=r"tokens must have 3 dimensions \[B, L, D\], got shape \(2, 8\)"):
        _model("toy").forward_head(torch.randn(2, 8))


def test_count_parameters_refuses_something_that_is_not_a_module():
    with pytest.raises(TypeError, match=r"model must be a torch\.nn\.Module, got ViTConfig"):
        count_parameters(get_config("toy"))


def test_parameter_formula_refuses_a_preset_name():
    with pytest.raises(TypeError, match=r"config must be a ViTConfig, got str; use get_config\('vit_base'\)"):
        parameter_formula("vit_base")
