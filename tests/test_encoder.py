"""Stage 5 (vitsteps.encoder): attention and the pre-norm block agree with torch.nn, and bad input is named."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import assert_all_refused, assert_close, refusal_cases
from torch import nn

from vitsteps.encoder import Attention, Block, Mlp, build_torch_encoder, scaled_dot_product


def _tokens(B: int = 2, L: int = 5, D: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randn(B, L, D, generator=torch.Generator().manual_seed(seed))


def _randomize(module: nn.Module, seed: int = 0) -> nn.Module:
    """Give every parameter random values, so that zero biases and unit norms hide no mistake."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    return module.eval()


def _torch_attention_like(attention: Attention, dim: int, num_heads: int) -> nn.MultiheadAttention:
    reference = nn.MultiheadAttention(dim, num_heads, batch_first=True)
    with torch.no_grad():
        reference.in_proj_weight.copy_(attention.qkv.weight)
        reference.in_proj_bias.copy_(attention.qkv.bias)
        reference.out_proj.weight.copy_(attention.proj.weight)
        reference.out_proj.bias.copy_(attention.proj.bias)
    return reference.eval()


def _copy_block_into_torch_layer(block: Block, layer: nn.TransformerEncoderLayer) -> None:
    with torch.no_grad():
        layer.norm1.weight.copy_(block.norm1.weight)
        layer.norm1.bias.copy_(block.norm1.bias)
        layer.self_attn.in_proj_weight.copy_(block.attn.qkv.weight)
        layer.self_attn.in_proj_bias.copy_(block.attn.qkv.bias)
        layer.self_attn.out_proj.weight.copy_(block.attn.proj.weight)
        layer.self_attn.out_proj.bias.copy_(block.attn.proj.bias)
        layer.norm2.weight.copy_(block.norm2.weight)
        layer.norm2.bias.copy_(block.norm2.bias)
        layer.linear1.weight.copy_(block.mlp.fc1.weight)
        layer.linear1.bias.copy_(block.mlp.fc1.bias)
        layer.linear2.weight.copy_(block.mlp.fc2.weight)
        layer.linear2.bias.copy_(block.mlp.fc2.bias)


# --- scaled dot product ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(5, 4), (3, 5, 4), (2, 3, 5, 4)])
def test_scaled_dot_product_weights_rows_sum_to_one(shape):
    q, k, v = (torch.randn(shape) for _ in range(3))
    out, weights = scaled_dot_product(q, k, v)
    assert out.shape == shape
    assert weights.shape == (*shape[:-1], shape[-2])
    assert (weights >= 0).all()
    assert_close(weights.sum(-1), torch.ones(shape[:-1]))


def test_scaled_dot_product_equals_torch_sdpa():
    q, k, v = (torch.randn(2, 3, 5, 4) for _ in range(3))
    out, _ = scaled_dot_product(q, k, v)
    assert_close(out, F.scaled_dot_product_attention(q, k, v))


def test_scaled_dot_product_divides_the_scores_by_the_square_root_of_the_head_width():
    q = torch.tensor([[1.0, 1.0, 1.0, 1.0]])  # [L=1, d=4]
    k = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]])  # [L=2, d=4]
    v = torch.tensor([[1.0], [0.0]])  # [L=2, 1]
    out, weights = scaled_dot_product(q, k, v)
    # scores 4 / sqrt(4) = 2 and 0
    expected = torch.tensor([[torch.e ** 2 / (torch.e ** 2 + 1), 1 / (torch.e ** 2 + 1)]])
    assert_close(weights, expected)
    assert_close(out, expected[:, :1])


def test_equal_queries_and_keys_give_uniform_weights_and_the_mean_value():
    q = k = torch.zeros(1, 4, 8)
    v = torch.randn(1, 4, 3)
    out, weights = scaled_dot_product(q, k, v)
    assert_close(weights, torch.full((1, 4, 4), 0.25))
    assert_close(out, v.mean(1, keepdim=True).expand(1, 4, 3))


def test_queries_may_be_fewer_than_keys():
    q, k, v = torch.randn(2, 3, 4), torch.randn(2, 7, 4), torch.randn(2, 7, 6)
    out, weights = scaled_dot_product(q, k, v)
    assert out.shape == (2, 3, 6)
    assert weights.shape == (2, 3, 7)
    assert_close(out, F.scaled_dot_product_attention(q, k, v))


# --- attention -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dim, num_heads", [(8, 8), (8, 2), (12, 3), (16, 1)])
def test_fused_attention_equals_the_written_out_path(dim, num_heads):
    attention = _randomize(Attention(dim, num_heads))
    x = _tokens(D=dim)
    fused = attention(x)
    written_out, weights = attention(x, return_attention=True)
    assert weights.shape == (2, num_heads, 5, 5)
    assert_close(fused, written_out)
    attention.fused_attn = False
    assert_close(attention(x), fused)


@pytest.mark.parametrize("dim, num_heads", [(8, 8), (8, 2), (12, 3)])
def test_attention_equals_torch_multihead_attention_with_copied_weights(dim, num_heads):
    attention = _randomize(Attention(dim, num_heads))
    reference = _torch_attention_like(attention, dim, num_heads)
    x = _tokens(D=dim)
    expected, expected_weights = reference(x, x, x, need_weights=True, average_attn_weights=False)
    out, weights = attention(x, return_attention=True)
    assert_close(attention(x), expected)
    assert_close(out, expected)
    assert_close(weights, expected_weights)


def test_attention_without_qkv_bias_has_no_bias_and_still_matches_torch():
    attention = _randomize(Attention(8, 2, qkv_bias=False))
    assert attention.qkv.bias is None
    reference = nn.MultiheadAttention(8, 2, batch_first=True)
    with torch.no_grad():
        reference.in_proj_weight.copy_(attention.qkv.weight)
        reference.in_proj_bias.zero_()
        reference.out_proj.weight.copy_(attention.proj.weight)
        reference.out_proj.bias.copy_(attention.proj.bias)
    x = _tokens()
    assert_close(attention(x), reference.eval()(x, x, x, need_weights=False)[0])


def test_attention_dropout_acts_only_in_training():
    attention = _randomize(Attention(8, 2, attn_drop=0.5))
    plain = Attention(8, 2)
    plain.load_state_dict(attention.state_dict())
    x = _tokens()
    assert_close(attention.eval()(x), plain.eval()(x))
    torch.manual_seed(0)
    assert not torch.allclose(attention.train()(x), plain(x))
    torch.manual_seed(0)
    assert not torch.allclose(attention.train()(x, return_attention=True)[0], plain(x))


def test_attention_mixes_tokens_within_a_sample_only():
    attention = _randomize(Attention(8, 2))
    x = _tokens(B=2)
    changed = x.clone()
    changed[1, 3] += 1.0
    before, after = attention(x), attention(changed)
    assert_close(before[0], after[0], rtol=0, atol=0)
    assert not torch.allclose(before[1, 0], after[1, 0])


# --- MLP and block ---------------------------------------------------------------------------------------------------

def test_mlp_is_fc1_exact_gelu_fc2():
    mlp = _randomize(Mlp(8, 16))
    x = _tokens()
    expected = F.linear(F.gelu(F.linear(x, mlp.fc1.weight, mlp.fc1.bias)), mlp.fc2.weight, mlp.fc2.bias)
    assert_close(mlp(x), expected)


def test_block_is_pre_norm_attention_then_mlp_with_residuals():
    block = _randomize(Block(8, 2))
    x = _tokens()
    after_attention = x + block.attn(block.norm1(x))
    expected = after_attention + block.mlp(block.norm2(after_attention))
    assert_close(block(x), expected)


@pytest.mark.parametrize("dim, num_heads, mlp_ratio", [(8, 8, 4.0), (8, 2, 2.0), (12, 3, 4.0)])
def test_block_equals_the_torch_encoder_layer_with_copied_weights(dim, num_heads, mlp_ratio):
    block = _randomize(Block(dim, num_heads, mlp_ratio=mlp_ratio))
    encoder = build_torch_encoder(dim, 1, num_heads, mlp_ratio=mlp_ratio).eval()
    _copy_block_into_torch_layer(block, encoder.layers[0])
    x = _tokens(D=dim)
    assert_close(block(x), encoder(x))


def test_a_stack_of_blocks_equals_the_torch_encoder():
    blocks = [_randomize(Block(8, 2), seed=i) for i in range(3)]
    encoder = build_torch_encoder(8, 3, 2).eval()
    for block, layer in zip(blocks, encoder.layers, strict=True):
        _copy_block_into_torch_layer(block, layer)
    x = expected = _tokens()
    for block in blocks:
        expected = block(expected)
    assert_close(encoder(x), expected)


def test_block_returns_one_attention_map_per_head_when_asked():
    block = _randomize(Block(8, 4))
    x = _tokens(B=3, L=5)
    out, weights = block(x, return_attention=True)
    assert_close(out, block(x))
    assert weights.shape == (3, 4, 5, 5)
    assert_close(weights.sum(-1), torch.ones(3, 4, 5))


def test_torch_encoder_is_batch_first_pre_norm_with_exact_gelu():
    encoder = build_torch_encoder(8, 2, 4, mlp_ratio=2.0, norm_eps=1e-6)
    layer = encoder.layers[0]
    assert len(encoder.layers) == 2
    assert layer.self_attn.batch_first
    assert layer.norm_first
    assert layer.activation is F.gelu
    assert layer.linear1.out_features == 16
    assert layer.norm1.eps == 1e-6
    assert not encoder.enable_nested_tensor


def test_torch_encoder_builds_without_a_warning(recwarn):
    build_torch_encoder(8, 2, 2)
    assert not [w for w in recwarn if "nested" in str(w.message)]


# --- bad input: one case per function and parameter (vitsteps._validate's tests try the bad values) -------------

REFUSED = {
    "scaled_dot_product: a query that is a list":
        (lambda: scaled_dot_product([1.0, 2.0], torch.randn(2, 4), torch.randn(2, 4)), TypeError,
         r"^q must be a torch\.Tensor shaped \[\.\.\., L, d\]"),
    "scaled_dot_product: integer keys":
        (lambda: scaled_dot_product(torch.randn(3, 4), torch.ones(3, 4, dtype=torch.int64), torch.randn(3, 4)),
         TypeError, r"^k must be a floating-point tensor"),
    "scaled_dot_product: values that are a number":
        (lambda: scaled_dot_product(torch.randn(2, 4), torch.randn(2, 4), 3.0), TypeError, r"^v must be a torch"),
    "scaled_dot_product: a one-dimensional query":
        (lambda: scaled_dot_product(torch.randn(4), torch.randn(3, 4), torch.randn(3, 4)), ValueError,
         r"q must be a tensor with 2 dimensions \[\.\.\., L, d\]"),
    "scaled_dot_product: queries and keys of different widths":
        (lambda: scaled_dot_product(torch.randn(3, 4), torch.randn(3, 6), torch.randn(3, 4)), ValueError,
         r"q has width d=4 but k has d=6; queries and keys must have the same width"),
    "scaled_dot_product: keys and values of different lengths":
        (lambda: scaled_dot_product(torch.randn(3, 4), torch.randn(3, 4), torch.randn(5, 4)), ValueError,
         r"k has 3 tokens but v has 5; .* same length L"),
    "Attention: a width the heads do not divide":
        (lambda: Attention(8, 3), ValueError, r"^dim=8 is not divisible by num_heads=3: .* pick num_heads from "
                                               r"\[1, 2, 4, 8\]"),
    "Attention: a dropout of 1.5":
        (lambda: Attention(8, 2, attn_drop=1.5), ValueError, r"^attn_drop must be a number in \[0, 1\), got 1\.5"),
    "Attention: a projection dropout of -0.1":
        (lambda: Attention(8, 2, proj_drop=-0.1), ValueError, r"^proj_drop must be a number in \[0, 1\)"),
    "Attention: tokens of another width":
        (lambda: Attention(8, 2)(torch.randn(2, 5, 6)), ValueError,
         r"x has width D=6 but this Attention was built for dim=8; pass tokens of shape \[B, L, 8\]"),
    "Mlp: a hidden width of 0":
        (lambda: Mlp(8, 0), ValueError, r"^hidden_dim must be a positive int, got 0"),
    "Mlp: a width of 0":
        (lambda: Mlp(0, 16), ValueError, r"^dim must be a positive int, got 0"),
    "Mlp: a dropout of 2":
        (lambda: Mlp(8, 16, drop=2), ValueError, r"^drop must be a number in \[0, 1\), got 2"),
    "Mlp: tokens without a batch dimension":
        (lambda: Mlp(8, 16)(torch.randn(5, 8)), ValueError, r"x must be a tensor with 3 dimensions \[B, L, D\]"),
    "Block: a fractional head count":
        (lambda: Block(8, 2.0), TypeError, r"^num_heads must be a positive int, got 2\.0"),
    "Block: a zero MLP ratio":
        (lambda: Block(8, 2, mlp_ratio=0), ValueError, r"mlp_ratio must be a number > 0, got 0; pass e\.g\. 4\.0"),
    "Block: an MLP ratio that leaves no hidden unit":
        (lambda: Block(8, 2, mlp_ratio=0.1), ValueError,
         r"mlp_ratio=0\.1 gives an MLP hidden width of int\(8 \* 0\.1\) = 0; use mlp_ratio >= 0\.125"),
    "Block: a dropout of 1.0":
        (lambda: Block(8, 2, drop=1.0), ValueError, r"^drop must be a number in \[0, 1\)"),
    "Block: an attention dropout that is text":
        (lambda: Block(8, 2, attn_drop="0.1"), TypeError, r"^attn_drop must be a number in \[0, 1\), got '0\.1' of "
                                                          r"type str"),
    "Block: a zero LayerNorm epsilon":
        (lambda: Block(8, 2, norm_eps=0), ValueError, r"norm_eps must be a number > 0, got 0; pass e\.g\. 1e-6"),
    "Block: integer tokens":
        (lambda: Block(8, 2)(torch.ones(2, 5, 8, dtype=torch.int64)), TypeError, r"x must be a floating-point tensor"),
    "build_torch_encoder: a width the heads do not divide":
        (lambda: build_torch_encoder(10, 2, 4), ValueError,
         r"^embed_dim=10 is not divisible by num_heads=4: .* pick num_heads from \[1, 2, 5, 10\]"),
    "build_torch_encoder: a depth of 0":
        (lambda: build_torch_encoder(8, 0, 2), ValueError, r"^depth must be a positive int, got 0"),
    "build_torch_encoder: a negative MLP ratio":
        (lambda: build_torch_encoder(8, 1, 2, mlp_ratio=-4.0), ValueError, r"mlp_ratio must be a number > 0"),
    "build_torch_encoder: a dropout of 1.5":
        (lambda: build_torch_encoder(8, 2, 2, dropout=1.5), ValueError, r"dropout must be a number in \[0, 1\)"),
    "build_torch_encoder: a zero LayerNorm epsilon":
        (lambda: build_torch_encoder(8, 1, 2, norm_eps=0), ValueError, r"norm_eps must be a number > 0"),
}


@refusal_cases(REFUSED)
def test_bad_input_is_refused_naming_the_parameter_the_value_and_the_fix(refusals):
    assert_all_refused(refusals)
