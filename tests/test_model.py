"""Stage 6 (vitsteps.model): the whole ViT, its configuration, presets, parameter and FLOP counts, its
initialisation, and bad input named."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from helpers import assert_all_refused, assert_close, refusal_cases
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from vitsteps.model import (
    PRESETS,
    ViT,
    ViTConfig,
    count_parameters,
    get_config,
    init_weights,
    parameter_formula,
    vit_flops,
)
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

@pytest.mark.parametrize("name", ["toy", "digits"])
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
    with torch.device("meta"):  # real modules, shapes only: no memory and no initialisation cost
        model = ViT(get_config(name))
    assert parameter_formula(model.config)["total"] == count_parameters(model) == total


def test_vit_l32_has_the_307m_of_table_1_that_no_variant_of_l16_reaches():
    with torch.device("meta"):
        large_32 = ViT(get_config("vit_large", patch_size=32))
    assert count_parameters(large_32) == parameter_formula(large_32.config)["total"] == 306_535_400
    assert round(306_535_400 / 1e6) == 307 != round(304_326_632 / 1e6)


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


@pytest.mark.parametrize("config", [get_config("digits"), get_config("toy"),
                                    get_config("digits", mlp_ratio=3.0, num_classes=0), get_config("vit_base")],
                         ids=["digits", "toy", "digits-no-head", "vit_base"])
def test_vit_flops_equal_torchs_flop_counter(config):
    with torch.device("meta"):
        model = ViT(config)
        image = torch.empty(1, config.in_chans, config.img_size, config.img_size)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(image)
    assert vit_flops(config)["total"] == counter.get_total_flops()


def test_vit_base_costs_the_flops_papers_quote():
    assert vit_flops(get_config("vit_base"))["total"] == 35_127_656_448  # 17.6 G multiply-adds


# --- initialisation --------------------------------------------------------------------------------------------------

@torch.no_grad()
def test_init_weights_is_timms_initialisation():
    torch.manual_seed(0)
    model = ViT(get_config("digits"))
    for parameter in model.parameters():
        parameter.fill_(3.0)
    init_weights(model)
    linear = model.blocks[0].attn.qkv
    assert 0.015 < float(linear.weight.std()) < 0.025
    assert torch.equal(linear.bias, torch.zeros_like(linear.bias))
    assert torch.equal(model.norm.weight, torch.ones(64)) and torch.equal(model.norm.bias, torch.zeros(64))
    assert float(model.cls_token.abs().max()) < 1e-4
    assert 0.015 < float(model.pos_embed.std()) < 0.025
    assert torch.equal(model.patch_embed.proj.weight, torch.full_like(model.patch_embed.proj.weight, 3.0))  # conv


@torch.no_grad()
def test_a_table_set_to_start_at_zeros_starts_at_zeros_and_stays_a_parameter():
    torch.manual_seed(3)
    timm = ViT(get_config("toy"))
    zeros = ViT(get_config("toy", pos_embed_init="zeros"))
    assert torch.equal(zeros.pos_embed, torch.zeros(1, 5, 8)) and float(timm.pos_embed.abs().max()) > 0
    assert "pos_embed" in dict(zeros.named_parameters())
    zeros.pos_embed.fill_(1.0)
    init_weights(zeros)  # the config decides, every time
    assert torch.equal(zeros.pos_embed, torch.zeros(1, 5, 8))


def test_mnist_preset_cuts_28_pixels_into_a_7x7_grid_with_heads_16_wide():
    config = get_config("mnist")
    assert (config.grid_size, config.num_patches, config.seq_len, config.head_dim) == (7, 49, 50, 16)
    assert config.pos_embed_init == "zeros"
    model = ViT(config)
    assert count_parameters(model) == parameter_formula(config)["total"] == 205_962
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    assert torch.equal(model.pos_embed, torch.zeros(1, 50, 64))


def test_init_weights_leaves_a_fixed_sincos_table_alone():
    model = ViT(get_config("toy", pos_embed="sincos"))
    table = model.pos_embed.clone()
    init_weights(model)
    assert torch.equal(model.pos_embed, table)


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


# --- bad input: one case per function and parameter (vitsteps._validate's tests try the bad values) -------------

REFUSED = {
    **{f"ViTConfig: {field} of 0": (lambda field=field: ViTConfig(**{field: 0}), ValueError,
                                    rf"^{field} must be a positive int, got 0")
       for field in ("img_size", "patch_size", "in_chans", "embed_dim", "depth", "num_heads")},
    "ViTConfig: a patch size that does not divide the image":
        (lambda: ViTConfig(img_size=8, patch_size=5), ValueError,
         r"patch_size=5 does not divide the image side \(img_size\) 8: .* pick a patch size that divides 8"),
    "ViTConfig: an embed_dim the heads do not divide":
        (lambda: ViTConfig(embed_dim=8, num_heads=3), ValueError,
         r"embed_dim=8 is not divisible by num_heads=3: .* pick num_heads from \[1, 2, 4, 8\]"),
    "ViTConfig: a fractional number of classes":
        (lambda: ViTConfig(num_classes=10.0), TypeError,
         r"num_classes must be an int >= 0, got 10\.0.*0 for a model without a head"),
    "ViTConfig: an MLP ratio that is text":
        (lambda: ViTConfig(mlp_ratio="4"), TypeError, r"mlp_ratio must be a number > 0, got '4'"),
    "ViTConfig: an MLP ratio that leaves no hidden unit":
        (lambda: ViTConfig(img_size=8, patch_size=4, embed_dim=8, num_heads=2, mlp_ratio=0.1), ValueError,
         r"mlp_ratio=0\.1 gives an MLP hidden width of int\(8 \* 0\.1\) = 0"),
    "ViTConfig: a dropout rate of 1":
        (lambda: ViTConfig(drop_rate=1.0), ValueError, r"^drop_rate must be a number in \[0, 1\), got 1\.0"),
    "ViTConfig: an attention dropout rate of -0.1":
        (lambda: ViTConfig(attn_drop_rate=-0.1), ValueError, r"^attn_drop_rate must be a number in \[0, 1\)"),
    "ViTConfig: an unknown position embedding":
        (lambda: ViTConfig(pos_embed="fixed"), ValueError,
         r"pos_embed must be one of 'learn', 'sincos', got 'fixed'; use 'learn'"),
    "ViTConfig: a sincos table for a width that is not a multiple of 4":
        (lambda: ViTConfig(img_size=8, patch_size=4, embed_dim=6, num_heads=2, pos_embed="sincos"), ValueError,
         r"pos_embed='sincos' needs embed_dim divisible by 4, got 6; use embed_dim=8"),
    "ViTConfig: a qkv_bias that is text":
        (lambda: ViTConfig(qkv_bias="no"), TypeError, r"qkv_bias must be True or False, got 'no'"),
    "ViTConfig: an unknown start for the table":
        (lambda: ViTConfig(pos_embed_init="ones"), ValueError,
         r"pos_embed_init must be one of 'trunc_normal', 'zeros', got 'ones'; use 'trunc_normal' for timm's start"),
    "ViTConfig: a start for a fixed table":
        (lambda: ViTConfig(pos_embed="sincos", pos_embed_init="zeros"), ValueError,
         r"pos_embed_init='zeros' starts a learned table, but pos_embed='sincos' is fixed.*; use pos_embed='learn'"),
    "ViTConfig: a zero LayerNorm epsilon":
        (lambda: ViTConfig(norm_eps=0), ValueError, r"norm_eps must be a number > 0, got 0; pass e\.g\. 1e-6"),
    "get_config: an unknown preset":
        (lambda: get_config("vit_gigantic"), ValueError, r"name must be one of .*'vit_base'.*, got 'vit_gigantic'"),
    "get_config: a name that is a list":
        (lambda: get_config(["toy"]), TypeError, r"name must be a preset name \(str\), got \['toy'\] of type list"),
    "get_config: an unknown field":
        (lambda: get_config("toy", hidden_size=8), TypeError,
         r"ViTConfig has no field \['hidden_size'\]; its fields are \[.*'embed_dim'"),
    "get_config: a bad value for a known field":
        (lambda: get_config("toy", depth=0), ValueError, r"depth must be a positive int, got 0"),
    "ViT: an unknown field":
        (lambda: ViT(get_config("toy"), layers=2), TypeError, r"ViTConfig has no field \['layers'\]"),
    "ViT: a config that is a preset name":
        (lambda: ViT("toy"), TypeError, r"config must be a ViTConfig, got 'toy' of type str; use ViT\(get_config"),
    "ViT: an image of another size":
        (lambda: _model("toy")(_images(1, side=16)), ValueError,
         r"image size \(16x16\) does not match the model \(8x8\); resize the image, or build the model for 16x16"),
    "ViT: an image with another channel count":
        (lambda: _model("toy")(_images(1, C=1)), ValueError, r"image has 1 channels but this model was built for "
                                                             r"in_chans=3"),
    "ViT: an image without a batch dimension":
        (lambda: _model("toy")(_images(1)[0]), ValueError, r"image must be a tensor with 4 dimensions"),
    "ViT.attention_maps: an image of another size":
        (lambda: _model("toy").attention_maps(_images(1, side=4)), ValueError,
         r"image size \(4x4\) does not match the model \(8x8\)"),
    "ViT.forward_head: tokens of another width":
        (lambda: _model("toy").forward_head(torch.randn(2, 5, 6)), ValueError,
         r"tokens have width D=6 but this model has embed_dim=8; pass the \[B, L, 8\] output of forward_features"),
    "ViT.forward_head: the CLS token only":
        (lambda: _model("toy").forward_head(torch.randn(2, 8)), ValueError, r"tokens must be a tensor with 3 "),
    "count_parameters: a config instead of a model":
        (lambda: count_parameters(get_config("toy")), TypeError, r"model must be a torch\.nn\.Module, got ViTConfig"),
    "parameter_formula: a preset name":
        (lambda: parameter_formula("vit_base"), TypeError,
         r"config must be a ViTConfig, got 'vit_base' of type str; use get_config\('vit_base'\)"),
    "vit_flops: a dict":
        (lambda: vit_flops({"embed_dim": 8}), TypeError, r"config must be a ViTConfig, got \{'embed_dim': 8\}"),
}


@refusal_cases(REFUSED)
def test_bad_input_is_refused_naming_the_parameter_the_value_and_the_fix(refusals):
    assert_all_refused(refusals)
