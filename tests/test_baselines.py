"""vitsteps.baselines: the small CNN and the RBF SVC that the `mnist` ViT is measured against, and bad input named."""
from __future__ import annotations

import pytest
import torch
from helpers import assert_all_refused, refusal_cases

from vitsteps.baselines import SmallCNN, fit_logistic, fit_svc
from vitsteps.model import ViT, count_parameters, get_config


def test_the_cnn_has_about_the_vits_parameters_and_maps_images_to_logits():
    cnn = SmallCNN()
    assert count_parameters(cnn) == 204_778
    assert abs(count_parameters(cnn) / count_parameters(ViT(get_config("mnist"))) - 1) < 0.01
    assert cnn(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    assert SmallCNN(in_chans=3, num_classes=4, widths=(4, 8, 8), img_size=16)(torch.rand(2, 3, 16, 16)).shape == (2, 4)


def test_the_cnns_output_moves_with_the_image_and_is_per_sample():
    torch.manual_seed(0)
    cnn = SmallCNN().eval()
    images = torch.rand(4, 1, 28, 28)
    logits = cnn(images)
    changed = images.clone()
    changed[1:] = torch.rand(3, 1, 28, 28)  # other batch-mates
    assert torch.allclose(cnn(changed)[0], logits[0], atol=1e-5)
    assert not torch.allclose(logits[0], logits[1])


def _blobs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two classes of 4x4 images: a bright left half or a bright right half, with noise."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2  # [n]
    images = 0.3 * torch.rand(n, 1, 4, 4, generator=generator)  # [n, 1, 4, 4]
    images[labels == 0, :, :, :2] += 0.6
    images[labels == 1, :, :, 2:] += 0.6
    return images, labels


def test_the_svc_is_chosen_on_validation_and_tested_once():
    result = fit_svc(_blobs(40, 0), _blobs(20, 1), _blobs(20, 2), C_grid=(1.0, 10.0), gamma_grid=(0.5, 2.0))
    assert [(row["C"], row["gamma"]) for row in result.grid] == [(1.0, 0.5), (1.0, 2.0), (10.0, 0.5), (10.0, 2.0)]
    best = max(row["val"] for row in result.grid)
    assert result.val_accuracy == best == 1.0
    assert (result.C, result.gamma) == (1.0, 0.5)  # a tie goes to the smallest C, then the smallest gamma
    assert result.test_accuracy == 1.0


REFUSED = {
    "SmallCNN: two widths":
        (lambda: SmallCNN(widths=(8, 16)), TypeError, r"widths must be three channel counts, one per stage"),
    "SmallCNN: a zero width":
        (lambda: SmallCNN(widths=(8, 0, 16)), ValueError, r"widths\[1\] must be a positive int, got 0"),
    "SmallCNN: an image side the poolings cannot halve twice":
        (lambda: SmallCNN(img_size=30), ValueError, r"does not divide the image side \(img_size\) 30"),
    "SmallCNN: an image of another size":
        (lambda: SmallCNN()(torch.rand(2, 1, 32, 32)), ValueError,
         r"image must be \[B, 1, 28, 28\] for this network, got \[2, 1, 32, 32\]; resize the images"),
    "fit_svc: a split that is a tensor":
        (lambda: fit_svc(torch.rand(4, 1, 4, 4), _blobs(4, 1), _blobs(4, 2)), TypeError,
         r"train must be an \(images, labels\) pair"),
    "fit_svc: labels of another length":
        (lambda: fit_svc((torch.rand(4, 1, 4, 4), torch.arange(3)), _blobs(4, 1), _blobs(4, 2)), ValueError,
         r"train\[1\] must be a 1-D integer tensor \[n\] of class indices with n=4"),
    "fit_svc: a negative C":
        (lambda: fit_svc(_blobs(4, 0), _blobs(4, 1), _blobs(4, 2), C_grid=(-1.0,)), ValueError,
         r"C_grid\[0\] must be a number > 0, got -1\.0"),
    "fit_svc: no validation images for a grid of settings":
        (lambda: fit_svc(_blobs(4, 0), None, _blobs(4, 2)), ValueError,
         r"val=None leaves nothing to choose 5 x 4 settings on; pass validation images, or one value in each grid"),
    "fit_logistic: test images without channels":
        (lambda: fit_logistic(_blobs(4, 0), (torch.rand(4, 4, 4), torch.arange(4))), ValueError,
         r"test\[0\] must be a tensor with 4 dimensions"),
    "fit_logistic: a zero C":
        (lambda: fit_logistic(_blobs(4, 0), _blobs(4, 1), C=0), ValueError, r"C must be a number > 0, got 0"),
    "fit_svc: an empty gamma grid":
        (lambda: fit_svc(_blobs(4, 0), _blobs(4, 1), _blobs(4, 2), gamma_grid=()), TypeError,
         r"gamma_grid must be a non-empty list of numbers"),
}


@refusal_cases(REFUSED)
def test_bad_input_is_refused_naming_the_parameter_the_value_and_the_fix(refusals):
    assert_all_refused(refusals)


@pytest.mark.parametrize("widths", [(32, 64, 96), (8, 8, 8)])
def test_the_cnn_trains_with_the_package_loop(widths):
    from vitsteps.train import train

    images, labels = _blobs(64, 3)
    images = torch.nn.functional.interpolate(images, size=8)  # [64, 1, 8, 8]
    cnn = SmallCNN(num_classes=2, widths=widths, img_size=8)
    history = train(cnn, (images, labels), epochs=3, warmup_epochs=1, max_shift=0, mixup_alpha=0.0, progress=False)
    assert history.train_loss[-1] < history.train_loss[0]


def test_one_svc_setting_needs_no_validation_images_and_logistic_regression_scores_below_it():
    from vitsteps.data import load_digits_split

    digits = load_digits_split(0)
    train_part, test_part = (digits.train_images, digits.train_labels), (digits.test_images, digits.test_labels)
    svc = fit_svc(train_part, None, test_part, C_grid=(10.0,), gamma_grid=(0.256,))
    assert (svc.C, svc.gamma, svc.val_accuracy) == (10.0, 0.256, None) and len(svc.grid) == 1
    logistic = fit_logistic(train_part, test_part)
    assert 0.97 < svc.test_accuracy <= 1.0 and 0.93 < logistic < svc.test_accuracy
