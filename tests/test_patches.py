"""Stages 1 and 2 (vitsteps.patches): unfold and conv give the same patch tokens, and bad input is named."""
from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from helpers import assert_all_refused, assert_close, refusal_cases

from vitsteps.patches import (
    PatchEmbed,
    image_to_patches,
    patch_embed_conv,
    patch_embed_unfold,
    patches_to_image,
    weight_to_kernel,
)

# (C, H, W, P, D): the article's toy, grayscale digits, non-square images, one patch covering everything
SHAPES = [(3, 8, 8, 4, 8), (1, 8, 8, 2, 64), (3, 8, 12, 4, 5), (2, 6, 9, 3, 7), (1, 4, 4, 4, 3), (3, 16, 8, 2, 16)]


def _images(B: int, C: int, H: int, W: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(B, C, H, W, generator=torch.Generator().manual_seed(seed))


# --- behaviour ---------------------------------------------------------------------------------------------------

def test_the_article_config_gives_the_article_shapes():
    image = _images(1, 3, 8, 8)  # [B, C, H, W]
    weight = torch.randn(48, 8)  # [C*P*P, D]
    kernel = weight_to_kernel(weight, 3, 4)
    assert image_to_patches(image, 4).shape == (1, 4, 48)
    assert patch_embed_unfold(image, 4, weight).shape == (1, 4, 8)
    assert kernel.shape == (8, 3, 4, 4)
    assert patch_embed_conv(image, kernel, 4).shape == (1, 4, 8)


@pytest.mark.parametrize("C, H, W, P, D", SHAPES)
def test_unfold_and_conv_give_the_same_embedding(C, H, W, P, D):
    image = _images(2, C, H, W)
    weight = torch.randn(C * P * P, D, generator=torch.Generator().manual_seed(1))
    by_unfold = patch_embed_unfold(image, P, weight)
    by_conv = patch_embed_conv(image, weight_to_kernel(weight, C, P), stride=P)
    assert by_unfold.shape == (2, (H // P) * (W // P), D)
    assert_close(by_unfold, by_conv, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("C, H, W, P, D", SHAPES)
def test_patches_to_image_undoes_image_to_patches_exactly(C, H, W, P, D):
    image = _images(3, C, H, W)
    assert torch.equal(patches_to_image(image_to_patches(image, P), P, (H, W)), image)


def test_patches_to_image_accepts_a_single_side_for_square_images():
    image = _images(1, 3, 8, 8)
    assert torch.equal(patches_to_image(image_to_patches(image, 4), 4, 8), image)


@pytest.mark.parametrize("C, H, W, P", [(3, 8, 12, 4), (2, 6, 9, 3), (1, 8, 8, 2)])
def test_patch_k_holds_the_pixels_of_grid_cell_k_in_reading_order(C, H, W, P):
    image = _images(2, C, H, W)
    patches = image_to_patches(image, P)  # [B, N, C*P*P]
    cols = W // P
    assert patches.shape[1] == (H // P) * cols
    for k in range(patches.shape[1]):
        row, col = k // cols, k % cols
        cell = image[:, :, row * P:(row + 1) * P, col * P:(col + 1) * P]  # [B, C, P, P]
        # channel first, then row, then column
        assert torch.equal(patches[:, k], cell.reshape(2, C * P * P))


def test_image_to_patches_flattens_channel_first_then_row_then_column():
    P = 2
    image = torch.arange(2 * 4 * 4, dtype=torch.float32).reshape(1, 2, 4, 4)  # [B, C, H, W]
    first_patch = image_to_patches(image, P)[0, 0]
    assert first_patch.tolist() == [0.0, 1.0, 4.0, 5.0, 16.0, 17.0, 20.0, 21.0]


def test_weight_to_kernel_puts_each_weight_column_into_one_output_channel():
    C, P, D = 3, 2, 5
    weight = torch.randn(C * P * P, D)
    kernel = weight_to_kernel(weight, C, P)  # [D, C, P, P]
    assert kernel.shape == (D, C, P, P)
    for d in range(D):
        for c in range(C):
            for i in range(P):
                for j in range(P):
                    assert kernel[d, c, i, j] == weight[c * P * P + i * P + j, d]


def test_weight_to_kernel_matches_the_article_transpose_and_reshape():
    weight = torch.randn(48, 8)
    assert torch.equal(weight_to_kernel(weight, 3, 4), weight.transpose(0, 1).reshape(-1, 3, 4, 4))


def test_patch_embed_conv_with_a_smaller_stride_gives_overlapping_patches():
    image = _images(1, 1, 8, 8)
    kernel = torch.randn(4, 1, 4, 4)
    tokens = patch_embed_conv(image, kernel, stride=2)
    reference = F.conv2d(image, kernel, stride=2).flatten(2).transpose(1, 2)  # [B, N, D]
    assert tokens.shape == (1, 9, 4)
    assert_close(tokens, reference)


@pytest.mark.parametrize("C, H, W, P, D", SHAPES)
def test_patch_embed_module_equals_patch_embed_conv_with_its_weights(C, H, W, P, D):
    module = PatchEmbed((H, W), P, C, D)
    image = _images(2, C, H, W)
    expected = patch_embed_conv(image, module.proj.weight, P) + module.proj.bias
    assert_close(module(image), expected)


def test_patch_embed_module_reports_its_grid():
    module = PatchEmbed((8, 12), 4, 3, 8)
    assert module.grid_size == (2, 3)
    assert module.num_patches == 6
    assert module(_images(2, 3, 8, 12)).shape == (2, 6, 8)


def test_patch_embed_module_takes_a_single_side_for_square_images():
    module = PatchEmbed(8, 4, 3, 8)
    assert module.img_size == (8, 8)
    assert module.num_patches == 4


# every small shape: 1 or 2 images, 1 to 3 channels, grids of 1 to 3 patches a side, patches of 1 to 4 pixels
SMALL_SHAPES = list(itertools.product((1, 2), (1, 2, 3), (1, 3), (1, 2, 3), (1, 2, 4)))


def test_unfold_equals_conv_and_the_round_trip_is_exact_for_every_small_shape():
    for B, C, rows, cols, P in SMALL_SHAPES:
        image = _images(B, C, rows * P, cols * P)
        weight = torch.randn(C * P * P, 3, generator=torch.Generator().manual_seed(2))
        assert_close(patch_embed_unfold(image, P, weight), patch_embed_conv(image, weight_to_kernel(weight, C, P), P),
                     rtol=1e-5, atol=1e-5)
        patches = image_to_patches(image, P)
        assert patches.shape == (B, rows * cols, C * P * P)
        assert torch.equal(patches_to_image(patches, P, (rows * P, cols * P)), image), (B, C, rows, cols, P)


# --- bad input: one case per function and parameter (vitsteps._validate's tests try the bad values) -------------

REFUSED = {
    "image_to_patches: an image without a batch dimension":
        (lambda: image_to_patches(torch.randn(3, 8, 8), 4), ValueError,
         r"image must be a tensor with 4 dimensions \[B, C, H, W\].*\.unsqueeze\(0\)"),
    "image_to_patches: a patch size of 0":
        (lambda: image_to_patches(torch.randn(1, 3, 8, 8), 0), ValueError, r"patch_size must be a positive int, got 0"),
    "image_to_patches: a patch size that does not divide the width":
        (lambda: image_to_patches(torch.randn(1, 3, 8, 6), 4), ValueError,
         r"patch_size=4 does not divide the image width 6"),
    "patch_embed_unfold: an image that is a list":
        (lambda: patch_embed_unfold([[[[0.0] * 8] * 8] * 3], 4, torch.randn(48, 8)), TypeError,
         r"image must be a torch\.Tensor shaped \[B, C, H, W\]"),
    "patch_embed_unfold: a weight whose rows do not fit a patch":
        (lambda: patch_embed_unfold(torch.randn(1, 3, 8, 8), 4, torch.randn(32, 8)), ValueError,
         r"weight has 32 rows but a flattened patch has C\*P\*P = 3\*4\*4 = 48 values; make weight of shape \[48, D\]"),
    "patch_embed_unfold: an integer weight":
        (lambda: patch_embed_unfold(torch.randn(1, 3, 8, 8), 4, torch.ones(48, 8, dtype=torch.int64)), TypeError,
         r"weight must be a floating-point tensor"),
    "weight_to_kernel: a weight that is already a kernel":
        (lambda: weight_to_kernel(torch.randn(8, 3, 4, 4), 3, 4), ValueError,
         r"weight must be a tensor with 2 dimensions \[C\*P\*P, D\]"),
    "weight_to_kernel: in_chans 0":
        (lambda: weight_to_kernel(torch.randn(48, 8), 0, 4), ValueError, r"in_chans must be a positive int, got 0"),
    "weight_to_kernel: a fractional patch size":
        (lambda: weight_to_kernel(torch.randn(48, 8), 3, 4.0), TypeError,
         r"patch_size must be a positive int, got 4\.0"),
    "weight_to_kernel: a weight made for other channels":
        (lambda: weight_to_kernel(torch.randn(48, 8), 1, 4), ValueError,
         r"weight has 48 rows but in_chans\*patch_size\*\*2 = 1\*4\*\*2 = 16; pass the in_chans"),
    "patch_embed_conv: an integer image":
        (lambda: patch_embed_conv(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), torch.randn(8, 3, 4, 4), 4), TypeError,
         r"image must be a floating-point tensor"),
    "patch_embed_conv: a flat kernel":
        (lambda: patch_embed_conv(torch.randn(1, 3, 8, 8), torch.randn(48, 8), 4), ValueError,
         r"kernel must be a tensor with 4 dimensions \[D, C, P, P\]"),
    "patch_embed_conv: a kernel with other channels":
        (lambda: patch_embed_conv(torch.randn(1, 3, 8, 8), torch.randn(8, 1, 4, 4), 4), ValueError,
         r"kernel expects 1 input channels but image has C=3; make the kernel \[D, 3, P, P\]"),
    "patch_embed_conv: a kernel that is not square":
        (lambda: patch_embed_conv(torch.randn(1, 3, 8, 8), torch.randn(8, 3, 4, 2), 4), ValueError,
         r"kernel must be square and fit the image, got \(4, 2\)"),
    "patch_embed_conv: a kernel larger than the image":
        (lambda: patch_embed_conv(torch.randn(1, 3, 8, 8), torch.randn(8, 3, 16, 16), 16), ValueError,
         r"got \(16, 16\) for an image of 8x8; use a \[D, C, P, P\] kernel with P <= 8"),
    "patch_embed_conv: a stride of -1":
        (lambda: patch_embed_conv(torch.randn(1, 3, 8, 8), torch.randn(8, 3, 4, 4), -1), ValueError,
         r"stride must be a positive int, got -1"),
    "patch_embed_conv: a stride equal to the patch that does not divide":
        (lambda: patch_embed_conv(torch.randn(1, 3, 8, 9), torch.randn(8, 3, 3, 3), 3), ValueError,
         r"patch_size=3 does not divide the image height 8"),
    "patches_to_image: two-dimensional patches":
        (lambda: patches_to_image(torch.randn(4, 48), 4, 8), ValueError,
         r"patches must be a tensor with 3 dimensions \[B, N, C\*P\*P\]"),
    "patches_to_image: a patch size of 2.5":
        (lambda: patches_to_image(torch.randn(1, 4, 48), 2.5, 8), TypeError, r"patch_size must be a positive int"),
    "patches_to_image: a bad image size":
        (lambda: patches_to_image(torch.randn(1, 4, 48), 4, (8, -8)), ValueError,
         r"image_size\[1\] must be a positive int, got -8"),
    "patches_to_image: a side the patch size does not divide":
        (lambda: patches_to_image(torch.randn(1, 6, 9), 3, (9, 8)), ValueError,
         r"patch_size=3 does not divide the image width 8"),
    "patches_to_image: patches that do not tile the image":
        (lambda: patches_to_image(torch.randn(1, 5, 48), 4, 8), ValueError,
         r"patches of shape \(1, 5, 48\) do not tile a 8x8 image with patch_size=4: expected N=4"),
    "patches_to_image: a patch width that is not whole channels":
        (lambda: patches_to_image(torch.randn(1, 4, 47), 4, 8), ValueError,
         r"patches of shape \(1, 4, 47\) .* a multiple of 16"),
    "PatchEmbed: an image size of three numbers":
        (lambda: PatchEmbed((8, 8, 8), 4, 3, 8), ValueError, r"img_size must be an int or a \(height, width\) pair"),
    "PatchEmbed: a patch size that does not divide":
        (lambda: PatchEmbed(8, 5, 3, 8), ValueError, r"patch_size=5 does not divide the image height 8"),
    "PatchEmbed: in_chans 0":
        (lambda: PatchEmbed(8, 4, 0, 8), ValueError, r"in_chans must be a positive int, got 0"),
    "PatchEmbed: embed_dim -8":
        (lambda: PatchEmbed(8, 4, 3, -8), ValueError, r"embed_dim must be a positive int, got -8"),
    "PatchEmbed: an image without a batch dimension":
        (lambda: PatchEmbed(8, 4, 3, 8)(torch.randn(3, 8, 8)), ValueError, r"image must be a tensor with 4 dimensions"),
    "PatchEmbed: an image of another size":
        (lambda: PatchEmbed(8, 4, 3, 8)(torch.randn(1, 3, 16, 16)), ValueError,
         r"image size \(16x16\) does not match the model \(8x8\); resize the image, or build the model for 16x16 "
         r"and resample its position table"),
    "PatchEmbed: an image with other channels":
        (lambda: PatchEmbed(8, 4, 3, 8)(torch.randn(1, 1, 8, 8)), ValueError,
         r"image has 1 channels but this model was built for in_chans=3; convert the image or build the model"),
}


@refusal_cases(REFUSED)
def test_bad_input_is_refused_naming_the_parameter_the_value_and_the_fix(refusals):
    assert_all_refused(refusals)
