"""Stage 1 and 2: cut an image into patches and embed each patch as a token.

Two routes give the same numbers: `F.unfold` then a matrix product (stage 1), or a convolution whose
kernel is the same weight reshaped and whose stride equals the patch size (stage 2).

Shape legend: B batch, C channels, H W image, P patch side, N patches, D model dim.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import _validate
from ._validate import InputValueError


def image_to_patches(image: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Cut images into non-overlapping flattened patches, in reading order.

    Args:
        image: `[B, C, H, W]` floating-point images.
        patch_size: side `P` of a square patch; it must divide `H` and `W`.

    Returns:
        `[B, N, C*P*P]` patches, `N = (H/P) * (W/P)`, each flattened channel first, then row, then column.
    """
    _validate.tensor(image, "image", 4, "[B, C, H, W]")
    _validate.positive_int(patch_size, "patch_size")
    B, C, H, W = image.shape
    _validate.divides(patch_size, H, "patch_size", "height")
    _validate.divides(patch_size, W, "patch_size", "width")
    columns = F.unfold(image, kernel_size=patch_size, stride=patch_size)  # [B, C*P*P, N]
    return columns.transpose(-1, -2)  # [B, N, C*P*P]


def patch_embed_unfold(image: torch.Tensor, patch_size: int, weight: torch.Tensor) -> torch.Tensor:
    """Embed patches by unfold and a matrix product (the article's `image2emb_naive`).

    Args:
        image: `[B, C, H, W]` images.
        patch_size: patch side `P`.
        weight: `[C*P*P, D]` projection from a flattened patch to a token.

    Returns:
        `[B, N, D]` patch tokens.
    """
    patches = image_to_patches(image, patch_size)  # [B, N, C*P*P]
    _validate.tensor(weight, "weight", 2, "[C*P*P, D]")
    if weight.shape[0] != patches.shape[-1]:
        C = image.shape[1]
        raise InputValueError(f"weight has {weight.shape[0]} rows but a flattened patch has C*P*P = "
                              f"{C}*{patch_size}*{patch_size} = {patches.shape[-1]} values; "
                              f"make weight of shape [{patches.shape[-1]}, D].")
    return patches @ weight  # [B, N, D]


def weight_to_kernel(weight: torch.Tensor, in_chans: int, patch_size: int) -> torch.Tensor:
    """Reshape an unfold projection `[C*P*P, D]` into the equivalent conv kernel `[D, C, P, P]`."""
    _validate.tensor(weight, "weight", 2, "[C*P*P, D]")
    _validate.positive_int(in_chans, "in_chans")
    _validate.positive_int(patch_size, "patch_size")
    depth = in_chans * patch_size * patch_size
    if weight.shape[0] != depth:
        raise InputValueError(f"weight has {weight.shape[0]} rows but in_chans*patch_size**2 = "
                              f"{in_chans}*{patch_size}**2 = {depth}; pass the in_chans and patch_size "
                              f"the weight was made for.")
    return weight.transpose(0, 1).reshape(-1, in_chans, patch_size, patch_size)  # [D, C, P, P]


def patch_embed_conv(image: torch.Tensor, kernel: torch.Tensor, stride: int) -> torch.Tensor:
    """Embed patches with a strided convolution (the article's `image2emb_conv`).

    Args:
        image: `[B, C, H, W]` images.
        kernel: `[D, C, P, P]` convolution kernel.
        stride: the step between patches; equal to `P` for non-overlapping patches.

    Returns:
        `[B, N, D]` patch tokens.
    """
    _validate.tensor(image, "image", 4, "[B, C, H, W]")
    _validate.tensor(kernel, "kernel", 4, "[D, C, P, P]")
    _validate.positive_int(stride, "stride")
    B, C, H, W = image.shape
    if kernel.shape[1] != C:
        raise InputValueError(f"kernel expects {kernel.shape[1]} input channels but image has C={C}; "
                              f"make the kernel [D, {C}, P, P].")
    P = kernel.shape[-1]
    if kernel.shape[-2] != P or P > min(H, W):
        raise InputValueError(f"kernel must be square and fit the image, got {tuple(kernel.shape[-2:])} for an "
                              f"image of {H}x{W}; use a [D, C, P, P] kernel with P <= {min(H, W)}.")
    if stride == P:
        _validate.divides(P, H, "patch_size", "height")
        _validate.divides(P, W, "patch_size", "width")
    feature_map = F.conv2d(image, kernel, stride=stride)  # [B, D, H/P, W/P]
    B, D, grid_h, grid_w = feature_map.shape
    return feature_map.reshape(B, D, grid_h * grid_w).transpose(-1, -2)  # [B, N, D]


def patches_to_image(patches: torch.Tensor, patch_size: int, image_size: int | tuple[int, int]) -> torch.Tensor:
    """Put flattened patches back into images; the inverse of `image_to_patches`.

    Args:
        patches: `[B, N, C*P*P]` patches in reading order.
        patch_size: patch side `P`.
        image_size: `H` (square) or `(H, W)`.

    Returns:
        `[B, C, H, W]` images.
    """
    _validate.tensor(patches, "patches", 3, "[B, N, C*P*P]")
    _validate.positive_int(patch_size, "patch_size")
    H, W = _validate.pair(image_size, "image_size")
    _validate.divides(patch_size, H, "patch_size", "height")
    _validate.divides(patch_size, W, "patch_size", "width")
    B, N, depth = patches.shape
    if N != (H // patch_size) * (W // patch_size) or depth % (patch_size * patch_size):
        raise InputValueError(f"patches of shape {tuple(patches.shape)} do not tile a {H}x{W} image with "
                              f"patch_size={patch_size}: expected N={(H // patch_size) * (W // patch_size)} and "
                              f"a last dimension that is a multiple of {patch_size * patch_size}; pass the patches "
                              f"image_to_patches cut from an image of this size with this patch_size.")
    columns = patches.transpose(-1, -2)  # [B, C*P*P, N]
    return F.fold(columns, output_size=(H, W), kernel_size=patch_size, stride=patch_size)  # [B, C, H, W]


class PatchEmbed(nn.Module):
    """Image to patch tokens with one strided convolution, as in timm.

    Args:
        img_size: image side, or `(H, W)`.
        patch_size: patch side `P`; it must divide both image sides.
        in_chans: input channels `C`.
        embed_dim: token width `D`.
    """

    def __init__(self, img_size: int | tuple[int, int] = 224, patch_size: int = 16, in_chans: int = 3,
                 embed_dim: int = 768) -> None:
        super().__init__()
        self.img_size = _validate.pair(img_size, "img_size")
        self.patch_size = _validate.positive_int(patch_size, "patch_size")
        _validate.divides(patch_size, self.img_size[0], "patch_size", "height")
        _validate.divides(patch_size, self.img_size[1], "patch_size", "width")
        self.in_chans = _validate.positive_int(in_chans, "in_chans")
        _validate.positive_int(embed_dim, "embed_dim")
        self.grid_size = (self.img_size[0] // patch_size, self.img_size[1] // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        _validate.tensor(image, "image", 4, "[B, C, H, W]")
        B, C, H, W = image.shape
        if C != self.in_chans:
            raise InputValueError(f"image has {C} channels but this model was built for in_chans={self.in_chans}; "
                                  f"convert the image or build the model with in_chans={C}.")
        if (H, W) != self.img_size:
            raise InputValueError(f"image size ({H}x{W}) does not match the model ({self.img_size[0]}x"
                                  f"{self.img_size[1]}); resize the image, or build the model for {H}x{W} and "
                                  f"resample its position table with vitsteps.tokens.resample_position_table.")
        feature_map = self.proj(image)  # [B, D, H/P, W/P]
        return feature_map.flatten(2).transpose(1, 2)  # [B, N, D]
