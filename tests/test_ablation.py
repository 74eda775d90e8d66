"""vitsteps.ablation: the ViT with its position table removed, mean pooling or post-norm, and bad input named."""
from __future__ import annotations

import torch
from helpers import assert_all_refused, assert_close, refusal_cases
from torch import nn

from vitsteps.ablation import PostNormBlock, ViTVariant
from vitsteps.encoder import Block
from vitsteps.model import ViT, count_parameters, get_config


def _pair(**variant: object) -> tuple[ViT, ViTVariant]:
    torch.manual_seed(0)
    plain = ViT(get_config("toy")).eval()
    torch.manual_seed(0)
    return plain, ViTVariant(get_config("toy"), **variant).eval()


def test_the_default_variant_is_the_vit_itself():
    plain, variant = _pair()
    images = torch.rand(2, 3, 8, 8)
    assert_close(variant(images), plain(images))
    assert list(variant.state_dict()) == list(plain.state_dict())


def test_without_a_position_table_the_model_cannot_tell_where_a_patch_was():
    torch.manual_seed(1)
    model = ViTVariant(get_config("toy"), position="none").eval()
    image = torch.rand(1, 3, 8, 8)
    swapped = image.clone()
    swapped[..., :4, :4], swapped[..., 4:, 4:] = image[..., 4:, 4:], image[..., :4, :4]  # patches 0 and 3 trade places
    order = [0, 4, 2, 3, 1]  # tokens: CLS, then patches 3, 1, 2, 0
    assert_close(model.forward_features(swapped), model.forward_features(image)[:, order], atol=1e-5)
    assert_close(model(swapped), model(image), atol=1e-5)
    assert "pos_embed" not in dict(model.named_parameters())
    assert count_parameters(model) == count_parameters(ViT(get_config("toy"))) - 5 * 8
    torch.manual_seed(1)
    with_table = ViT(get_config("toy")).eval()
    assert not torch.allclose(with_table.forward_features(swapped), with_table.forward_features(image)[:, order],
                              atol=1e-3)


def test_mean_pooling_reads_the_mean_of_the_patch_tokens():
    _, variant = _pair(pooling="mean")
    tokens = torch.randn(2, 5, 8)
    assert_close(variant.forward_head(tokens), variant.head(tokens[:, 1:].mean(dim=1)))


def test_a_post_norm_block_normalises_after_each_residual_sum():
    torch.manual_seed(2)
    block = PostNormBlock(8, 2, 2.0).eval()
    x = torch.randn(2, 5, 8)
    after_attention = block.norm1(x + block.attn(x))
    assert_close(block(x), block.norm2(after_attention + block.mlp(after_attention)))
    pre = Block(8, 2, 2.0).eval()
    pre.load_state_dict(block.state_dict())
    assert not torch.allclose(pre(x), block(x), atol=1e-3)
    out, weights = block(x, return_attention=True)
    assert_close(out, block(x)) and weights.shape == (2, 2, 5, 5)


def test_post_norm_drops_the_final_norm_and_keeps_every_other_name():
    plain, variant = _pair(norm="post")
    assert isinstance(variant.norm, nn.Identity) and all(isinstance(b, PostNormBlock) for b in variant.blocks)
    assert set(variant.state_dict()) == set(plain.state_dict()) - {"norm.weight", "norm.bias"}
    maps = variant.attention_maps(torch.rand(1, 3, 8, 8))
    assert len(maps) == 6 and torch.allclose(maps[0].sum(-1), torch.ones(1, 8, 5))
    assert "norm='post'" in repr(variant)


REFUSED = {
    "ViTVariant: an unknown pooling":
        (lambda: ViTVariant(get_config("toy"), pooling="max"), ValueError,
         r"pooling must be one of 'cls', 'mean', got 'max'"),
    "ViTVariant: an unknown position":
        (lambda: ViTVariant(get_config("toy"), position="random"), ValueError,
         r"position must be one of 'table', 'none', got 'random'"),
    "ViTVariant: an unknown norm placement":
        (lambda: ViTVariant(get_config("toy"), norm="sandwich"), ValueError,
         r"norm must be one of 'pre', 'post', got 'sandwich'"),
    "ViTVariant: no table and a sincos table":
        (lambda: ViTVariant(get_config("toy", pos_embed="sincos"), position="none"), ValueError,
         r"position='none' removes the position table, so pos_embed='sincos' would be ignored; pass a config"),
    "ViTVariant: a preset name":
        (lambda: ViTVariant("mnist"), TypeError, r"config must be a ViTConfig, got 'mnist'"),
    "ViTVariant.forward_head: a flat tensor":
        (lambda: ViTVariant(get_config("toy"), pooling="mean").forward_head(torch.rand(2, 8)), ValueError,
         r"tokens must be a tensor with 3 dimensions"),
}


@refusal_cases(REFUSED)
def test_bad_input_is_refused_naming_the_parameter_the_value_and_the_fix(refusals):
    assert_all_refused(refusals)
