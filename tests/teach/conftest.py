"""Fixtures shared by the tests of `vitsteps.teach`."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from vitsteps import ViT, get_config  # noqa: E402
from vitsteps.teach.explorers import compute  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    """Every test starts and ends with no open figure."""
    plt.close("all")
    yield
    plt.close("all")


@pytest.fixture(autouse=True)
def fixed_seed():
    torch.manual_seed(0)


def _seeded_model(seed: int = 7, **changes: object) -> ViT:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ViT(get_config("mnist", **changes)).eval()


@pytest.fixture
def seeded_model():
    """`seeded_model(seed, **changes)`: an untrained `mnist` ViT (with `changes` to its config) built under `seed`,
    the global RNG left alone."""
    return _seeded_model


@pytest.fixture
def shipped_model(monkeypatch):
    """`shipped_model(model)` makes the attention explorer take `model` (or None: no checkpoint) as the shipped
    trained `mnist` model; its caches are emptied before and after."""

    def install(model: ViT | None) -> ViT | None:
        monkeypatch.setattr(compute, "trained_attention_model", lambda: model)
        compute._attention_model.cache_clear()
        compute._attention_maps.cache_clear()
        return model

    yield install
    compute._attention_model.cache_clear()
    compute._attention_maps.cache_clear()
