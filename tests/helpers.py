"""Assertions shared by the test modules."""
import torch


def assert_close(actual: torch.Tensor, expected: torch.Tensor, rtol: float = 1.3e-6, atol: float = 1e-5) -> None:
    """Same shape and dtype, values within tolerance (torch.testing.assert_close's float32 defaults, without
    its first call importing torch.distributed, which costs seconds)."""
    assert actual.shape == expected.shape, f"shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    assert actual.dtype == expected.dtype, f"dtype {actual.dtype} != {expected.dtype}"
    assert torch.allclose(actual, expected, rtol=rtol, atol=atol), \
        f"largest difference {(actual - expected).abs().max().item():.3g}"
