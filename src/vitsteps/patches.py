"""Stage 1 and 2: cut an image into patches and embed each patch as a token.

Two routes give the same numbers: `F.unfold` then a matrix product (stage 1), or a convolution whose
kernel is the same weight reshaped and whose stride equals the patch size (stage 2).

Every function checks its input with one call to `vitsteps._validate` (which names the parameter, the value and the
fix); the lines after it are the stage.

Shape legend: B batch, C channels, H W image, P patch side, N patches, D model dim.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import _validate


def image_to_patches(image: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Cut images into non-overlapping flattened patches, in reading order.

    Args:
        image: `[B, C, H, W]` floating-point images.
        patch_size: side `P` of a square patch; it must divide `H` and `W`.

    Returns:
        `[B, N, C*P*P]` patches, `N = (H/P) * (W/P)`, each flattened channel first, then row, then column.
    """
    _validate.patchable(image, patch_size)
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
    _validate.patch_embedding(image, patch_size, weight)
    patches = image_to_patches(image, patch_size)  # [B, N, C*P*P]
    return patches @ weight  # [B, N, D]


def weight_to_kernel(weight: torch.Tensor, in_chans: int, patch_size: int) -> torch.Tensor:
    """Reshape an unfold projection `[C*P*P, D]` into the equivalent conv kernel `[D, C, P, P]`."""
    _validate.unfold_weight(weight, in_chans, patch_size)
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
    _validate.conv_embedding(image, kernel, stride)
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
    H, W = _validate.patches_for_image(patches, patch_size, image_size)
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
        self.img_size = _validate.patch_grid(img_size, patch_size, in_chans, embed_dim)  # (H, W)
        self.patch_size, self.in_chans = patch_size, in_chans
        self.grid_size = (self.img_size[0] // patch_size, self.img_size[1] // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Images `[B, C, H, W]` to patch tokens `[B, N, D]`."""
        _validate.image_for_model(image, self.in_chans, self.img_size)
        feature_map = self.proj(image)  # [B, D, H/P, W/P]
        return feature_map.flatten(2).transpose(1, 2)  # [B, N, D]
