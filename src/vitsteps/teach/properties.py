"""Properties every correct ViT has, as checks that return a verdict instead of raising.

Each function takes a model (any callable from images `[B, C, H, W]` to logits `[B, K]`), a block, or a
patchify function, and returns a `PropertyResult` with `passed` and a one-line `detail` for people. Tests
assert `result.passed`; notebook 09 prints the verdicts to hunt bugs; anyone can run them on their own model.
A model that is an `nn.Module` is run on a float64 copy in eval mode, so that rounding can neither hide a
change nor fake one, and every run starts from the same random state, so that a verdict is the same every time;
the model itself, its mode, its gradients and the caller's random state are left as they were.

| property                  | what a correct ViT does                                 | the kind of bug it catches     |
|---------------------------|---------------------------------------------------------|--------------------------------|
| `deterministic_in_eval`   | in eval mode the same images give the same logits twice | randomness left on in eval     |
| `batch_independence`      | a sample's logits ignore its batch-mates and its slot   | mixing, or shaping by, a batch |
| `input_sensitivity`       | two different images, each alone, get different logits  | a readout deaf to the patches  |
| `position_sensitivity`    | reordering the patches changes the logits               | positions lost, or all alike   |
| `readout_symmetry`        | with no positions, reordering patches changes nothing   | a readout tied to one patch    |
| `patch_order`             | patch n holds the pixels of the n-th square             | a cut of the wrong pixels      |
| `patch_round_trip`        | `patches_to_image(patchify(x)) == x`                    | pixels moved in or between     |
| `gradients_reach`         | every trainable parameter, every row, gets a gradient   | unused parameters or rows      |
| `pre_norm_residual`       | a block passes a shift of its input straight through    | a residual path not clean      |
| `initial_loss_near_log_k` | a fresh model's loss is about `ln K` (uniform guessing) | mis-scaled logits or init      |

Shape legend: B batch, C channels, H W image, P patch side, N patches, L tokens, D model dim, K classes.
"""
from __future__ import annotations

import contextlib
import copy
import fnmatch
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .. import _validate
from .._validate import InputTypeError, InputValueError
from ..patches import patches_to_image

__all__ = ["PropertyResult", "batch_independence", "deterministic_in_eval", "format_results", "gradients_reach",
           "initial_loss_near_log_k", "input_sensitivity", "patch_order", "patch_round_trip", "permute_patches",
           "pixel_span", "position_sensitivity", "pre_norm_residual", "readout_symmetry", "run_checks"]

Model = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class PropertyResult:
    """The verdict of one property check.

    Attributes:
        name: the property, e.g. `"batch_independence"`.
        passed: whether the model has the property.
        detail: one sentence saying what was measured, for people.
    """

    name: str
    passed: bool
    detail: str

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'}  {self.name}: {self.detail}"

    def _repr_pretty_(self, printer: object, cycle: bool) -> None:
        printer.text(str(self))  # type: ignore[attr-defined]


# --------------------------------------------------------------------------------------- plumbing


@contextlib.contextmanager
def _evaluating(model: object) -> Iterator[None]:
    """Run `model` in eval mode (no dropout) and put its mode back afterwards."""
    if isinstance(model, nn.Module):
        was_training = model.training
        model.eval()
        try:
            yield
        finally:
            model.train(was_training)
    else:
        yield


def _error(error: Exception) -> str:
    """An exception as one short line."""
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{_validate.error_kind(error)}: {message[:160]}"


def _check_model(model: object, name: str = "model") -> None:
    if not callable(model):
        _validate.fail(TypeError, name, "callable (images [B, C, H, W] -> logits [B, K])", model,
                       "pass e.g. a vitsteps.ViT")


def _check_images(images: object, min_batch: int = 1) -> torch.Tensor:
    _validate.tensor(images, "images", 4, "[B, C, H, W]")
    if images.shape[0] < min_batch:
        raise InputValueError(f"images must hold at least {min_batch} samples for this property, got a batch of "
                              f"{images.shape[0]}; pass e.g. torch.rand({min_batch}, C, H, W).")
    return images


class _Evaluator:
    """Runs a model without gradients in eval mode, in float64 when it is an `nn.Module`.

    In float64 rounding noise is about 1e-16, so "unchanged" and "changed" are told apart with a wide margin
    even for a fresh model whose logits move by only 1e-5; a plain function is run as given.
    """

    def __init__(self, model: Model) -> None:
        self.model, self.dtype = model, None
        if isinstance(model, nn.Module):
            try:
                self.model, self.dtype = copy.deepcopy(model).double(), torch.float64
            except Exception:  # noqa: BLE001 - a module that cannot be copied is run as it is
                pass

    @property
    def precise(self) -> bool:
        return self.dtype is torch.float64

    def __call__(self, inputs: torch.Tensor, *, seed: int = 0) -> torch.Tensor:
        """The model's outputs, computed from the random state `seed`, so that every check gives the same
        verdict every time; the caller's random state is left alone."""
        inputs = inputs if self.dtype is None else inputs.to(self.dtype)
        with torch.no_grad(), _evaluating(self.model), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            outputs = self.model(inputs)
        if not isinstance(outputs, torch.Tensor):
            raise InputTypeError(f"the model returned {type(outputs).__name__}, not a tensor.")
        return outputs


def _smallest_change(atol: float | None, evaluate: _Evaluator) -> float:
    """The smallest change that counts as one: 1e-9 in float64, 1e-5 for a plain function (float32 noise)."""
    return atol if atol is not None else (1e-9 if evaluate.precise else 1e-5)


def _other_images(images: torch.Tensor, seed: int) -> torch.Tensor:
    """Fresh noise images with the mean and spread of `images`."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(images.shape, generator=generator, dtype=images.dtype)  # [B, C, H, W]
    return noise * images.std() + images.mean()  # [B, C, H, W]


def _fmt(value: float, floor: float = 1e-5) -> str:
    """A measured difference in two significant digits, or `< floor` so that rounding noise never shows."""
    return f"< {floor:g}" if value < floor else f"{value:.2g}"


def _patch_size(model: object, patch_size: int | None) -> int:
    if patch_size is None:
        config = getattr(model, "config", None)
        patch_size = getattr(config, "patch_size", None)
        if patch_size is None:
            raise InputValueError("patch_size is needed: this model has no config.patch_size; pass patch_size=P.")
    return _validate.positive_int(patch_size, "patch_size")


# --------------------------------------------------------------------------------------- model properties


def batch_independence(model: Model, images: torch.Tensor, *, atol: float = 1e-5) -> PropertyResult:
    """A sample's logits do not depend on the other samples in its batch, nor on its place in the batch.

    Three comparisons for sample 0: alone in a batch of one; with the batch in reverse order; with all its
    batch-mates replaced by other images. A model whose attention mixes the batch axis (`batch_first=False`
    fed `[B, L, D]`) or that adds a different position table to each batch slot fails.

    Args:
        model: images `[B, C, H, W]` to logits `[B, K]`.
        images: `[B, C, H, W]` with `B >= 2`.
        atol: the largest change allowed (float rounding).
    """
    _check_model(model)
    _check_images(images, min_batch=2)
    try:
        evaluate = _Evaluator(model)
        together = evaluate(images)  # [B, K]
        changes = {
            "alone": (evaluate(images[:1])[0] - together[0]).abs().max().item(),
            "in reverse order": (evaluate(images.flip(0))[-1] - together[0]).abs().max().item(),
            "with other batch-mates": (evaluate(torch.cat([images[:1], _other_images(images[1:], 1)]))[0]
                                       - together[0]).abs().max().item(),
        }
    except Exception as error:  # noqa: BLE001 - a crash is a verdict here
        return PropertyResult("batch_independence", False, f"the model fails on a reordered or smaller "
                              f"batch ({_error(error)}): it is tied to one batch size.")
    moved = [f"by {_fmt(change)} when run {how}" for how, change in changes.items() if change > atol]
    if moved:
        return PropertyResult("batch_independence", False, "sample 0's logits change "
                              + " and ".join(moved) + ": samples in a batch see each other.")
    return PropertyResult("batch_independence", True, f"sample 0's logits stay within {atol:g} when run alone, "
                          f"in reverse order and with other batch-mates.")


def deterministic_in_eval(model: Model, images: torch.Tensor, *, atol: float = 0.0) -> PropertyResult:
    """In eval mode the same images give the same logits every time: nothing random is left on.

    Dropout belongs to training only: `nn.Dropout` and `model.eval()` see to that, but a functional
    `F.dropout(x, p)` is left on unless it is told `training=...`. The check runs the model twice on the same
    images, from different random states.

    Args:
        model: images `[B, C, H, W]` to logits `[B, K]`.
        images: `[B, C, H, W]`.
        atol: the largest change allowed.
    """
    _check_model(model)
    _check_images(images)
    try:
        evaluate = _Evaluator(model)
        first, second = evaluate(images, seed=0), evaluate(images, seed=1)  # [B, K] each
        change = (first - second).abs().max().item()
    except Exception as error:  # noqa: BLE001 - a crash is a verdict here
        return PropertyResult("deterministic_in_eval", False, f"the model fails ({_error(error)}).")
    if change > atol:
        return PropertyResult("deterministic_in_eval", False, f"the same images, run twice in eval mode, get "
                              f"logits that differ by {_fmt(change)}: something random runs in eval mode.")
    return PropertyResult("deterministic_in_eval", True, "the same images, run twice in eval mode, get the same "
                          "logits.")


def input_sensitivity(model: Model, images: torch.Tensor, *, atol: float | None = None) -> PropertyResult:
    """Two different images, each run alone (batch size 1), get different logits.

    With `batch_first=False` the encoder reads `[B, L, D]` as `[L, B, D]`: at batch size 1 every token attends
    only to itself, and at any batch size the CLS token attends only to the other CLS tokens. It never hears
    from the patches, and every image gets the same logits.

    Args:
        model: images `[B, C, H, W]` to logits `[B, K]`.
        images: `[B, C, H, W]` with `B >= 2`; samples 0 and 1 must differ.
        atol: the smallest difference that counts; 1e-9 for a module (run in float64), 1e-5 for a function.
    """
    _check_model(model)
    _check_images(images, min_batch=2)
    if torch.equal(images[0], images[1]):
        raise InputValueError("images[0] and images[1] are identical; pass two different images.")
    try:
        evaluate = _Evaluator(model)
        difference = (evaluate(images[:1]) - evaluate(images[1:2])).abs().max().item()
    except Exception as error:  # noqa: BLE001
        return PropertyResult("input_sensitivity", False, f"the model fails on a batch of one ({_error(error)}).")
    floor = _smallest_change(atol, evaluate)
    if difference <= floor:
        return PropertyResult("input_sensitivity", False, f"two different images, each alone, get logits that "
                              f"differ by {_fmt(difference, floor)}: the CLS token never hears from the patches.")
    return PropertyResult("input_sensitivity", True, "two different images, each alone, get different logits.")


def permute_patches(images: torch.Tensor, patch_size: int, permutation: Sequence[int] | torch.Tensor | None = None
                    ) -> torch.Tensor:
    """Rearrange the square patches of images; each patch's content stays as it is.

    Args:
        images: `[B, C, H, W]`.
        patch_size: patch side `P`; it must divide `H` and `W`.
        permutation: new order of the `N` patches (reading order); reversed when omitted.

    Returns:
        `[B, C, H, W]` images whose patch `n` is the input's patch `permutation[n]`.
    """
    _check_images(images)
    _validate.positive_int(patch_size, "patch_size")
    B, C, H, W = images.shape
    _validate.divides(patch_size, H, "patch_size", "height")
    _validate.divides(patch_size, W, "patch_size", "width")
    N = (H // patch_size) * (W // patch_size)
    order = torch.arange(N - 1, -1, -1) if permutation is None else torch.as_tensor(permutation)  # [N]
    if order.shape != (N,) or not torch.equal(order.sort().values, torch.arange(N)):
        _validate.fail(ValueError, "permutation", f"a new order of the {N} patches (each of 0..{N - 1} once)",
                       order.tolist(), "pass e.g. torch.randperm(N)")
    patches = F.unfold(images, kernel_size=patch_size, stride=patch_size)  # [B, C*P*P, N]
    return patches_to_image(patches[:, :, order].transpose(1, 2), patch_size, (H, W))  # [B, C, H, W]


def position_sensitivity(model: Model, images: torch.Tensor, patch_size: int | None = None, *,
                         expect_change: bool = True, atol: float | None = None) -> PropertyResult:
    """Putting the patches in another order changes the logits, because the tokens carry their position.

    Attention treats its tokens as a set: without a position embedding, reordering the patch tokens
    reorders the outputs of the patch tokens and leaves the CLS output (hence the logits) unchanged.

    Args:
        model: images `[B, C, H, W]` to logits `[B, K]`.
        images: `[B, C, H, W]`.
        patch_size: patch side `P`; read from `model.config` when omitted.
        expect_change: `True` for a ViT (pass when the logits move); `False` to prove that a model without
            position embeddings is invariant (pass when they stay).
        atol: the smallest change that counts; 1e-9 for a module (run in float64), 1e-5 for a function.
    """
    _check_model(model)
    _check_images(images)
    patch_size = _patch_size(model, patch_size)
    reordered = permute_patches(images, patch_size)  # [B, C, H, W], patches in reverse order
    try:
        evaluate = _Evaluator(model)
        change = (evaluate(reordered) - evaluate(images)).abs().max().item()
    except Exception as error:  # noqa: BLE001
        return PropertyResult("position_sensitivity", False, f"the model fails ({_error(error)}).")
    floor = _smallest_change(atol, evaluate)
    if change > floor:
        return PropertyResult("position_sensitivity", expect_change, f"the patches in reverse order move the "
                              f"logits by {_fmt(change, floor)}: the tokens know where they are.")
    return PropertyResult("position_sensitivity", not expect_change, f"the patches in reverse order move the "
                          f"logits by {_fmt(change, floor)}: the model sees a bag of patches, not their positions.")


def readout_symmetry(model: nn.Module, images: torch.Tensor, patch_size: int | None = None, *,
                     atol: float = 1e-9) -> PropertyResult:
    """With the position table set to zero, putting the patches in another order leaves the logits unchanged.

    Without positions attention treats its tokens as a set (see `position_sensitivity`): the CLS token, which
    has no patch of its own, gathers the same result from any order, and so does a mean over all tokens. A head
    that reads one patch token reads another patch when the order changes. The check runs a float64 copy of
    the model whose `pos_embed` is zero.

    Args:
        model: an `nn.Module` from images `[B, C, H, W]` to logits `[B, K]`, with a `pos_embed` parameter.
        images: `[B, C, H, W]`.
        patch_size: patch side `P`; read from `model.config` when omitted.
        atol: the largest change allowed (float64 rounding).
    """
    _validate.instance(model, "model", nn.Module, "a torch.nn.Module with a pos_embed parameter",
                       "pass e.g. a vitsteps.ViT")
    if not isinstance(getattr(model, "pos_embed", None), torch.Tensor):
        raise InputValueError("model has no pos_embed tensor to set to zero; pass a ViT-like model (one with "
                              "model.pos_embed).")
    _check_images(images)
    patch_size = _patch_size(model, patch_size)
    reordered = permute_patches(images, patch_size)  # [B, C, H, W], patches in reverse order
    try:
        unplaced = copy.deepcopy(model)
        with torch.no_grad():
            unplaced.pos_embed.zero_()
        evaluate = _Evaluator(unplaced)
        change = (evaluate(reordered) - evaluate(images)).abs().max().item()
    except Exception as error:  # noqa: BLE001
        return PropertyResult("readout_symmetry", False, f"the model fails ({_error(error)}).")
    if change > atol:
        return PropertyResult("readout_symmetry", False, f"with the position table at zero, the patches in "
                              f"reverse order still move the logits by {_fmt(change, atol)}: the logits depend "
                              f"on which token sits where.")
    return PropertyResult("readout_symmetry", True, "with the position table at zero, the patches in reverse "
                          "order leave the logits unchanged.")


def gradients_reach(model: nn.Module, images: torch.Tensor, names: Sequence[str] | None = None) -> PropertyResult:
    """One backward pass from the loss gives every listed parameter a non-zero gradient.

    Computed with `torch.autograd.grad`, so the model's `.grad` fields are left untouched. A table that is
    built but never added, or a LayerNorm that is defined but never called, gets no gradient at all.

    Args:
        model: an `nn.Module` from images `[B, C, H, W]` to logits `[B, K]`.
        images: `[B, C, H, W]`.
        names: parameter names or glob patterns (`"blocks.*.norm2.*"`); every trainable parameter when omitted.
    """
    _validate.instance(model, "model", nn.Module, "a torch.nn.Module (one with parameters)",
                       "pass e.g. a vitsteps.ViT")
    _check_images(images)
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    if names is not None:
        if isinstance(names, str):
            _validate.fail(TypeError, "names", "a list of names or patterns", names, f"pass [{names!r}]")
        unmatched = [pattern for pattern in names if not any(fnmatch.fnmatchcase(n, pattern) for n, _ in named)]
        if unmatched:
            raise InputValueError(f"names must match trainable parameters, but nothing matches {unmatched}; the "
                                  f"names are {[n for n, _ in named][:8]}...")
        named = [(n, p) for n, p in named if any(fnmatch.fnmatchcase(n, pattern) for pattern in names)]
    if not named:
        raise InputValueError("model has no trainable parameters to check; pass a model with requires_grad parameters.")
    try:
        with _evaluating(model):
            logits = model(images)  # [B, K]
            labels = torch.arange(images.shape[0]) % logits.shape[-1]  # [B]
            loss = F.cross_entropy(logits, labels)
            grads = torch.autograd.grad(loss, [p for _, p in named], allow_unused=True)
    except Exception as error:  # noqa: BLE001
        return PropertyResult("gradients_reach", False, f"the backward pass fails ({_error(error)}).")
    unreached = [n for (n, _), g in zip(named, grads, strict=True) if g is None]
    zero = [n for (n, _), g in zip(named, grads, strict=True) if g is not None and not g.any()]
    rows = []  # tables and weights with some rows (along their last dimension) that get exactly zero
    for (n, _), g in zip(named, grads, strict=True):
        if g is not None and g.any() and g.dim() >= 2:
            dead = (g.reshape(-1, g.shape[-1]) == 0).all(dim=1).nonzero().flatten().tolist()  # [rows]
            if dead:
                rows.append(f"{'row' if len(dead) == 1 else 'rows'} {_index_span(dead)} of {n}")

    def listing(items: list[str]) -> str:
        return ", ".join(items[:4]) + (f" and {len(items) - 4} more" if len(items) > 4 else "")

    if unreached or zero or rows:
        parts = []
        if unreached:
            parts.append(f"no gradient reaches {listing(unreached)} (built but never used)")
        if zero or rows:
            parts.append(f"a gradient of exactly zero reaches {listing(zero + rows)}")
        return PropertyResult("gradients_reach", False, "; ".join(parts) + ".")
    return PropertyResult("gradients_reach", True, f"all {len(named)} checked parameters get a non-zero gradient, "
                          f"in every row.")


def _index_span(items: list[int]) -> str:
    """Sorted indices as "1-4" when consecutive, else listed."""
    if len(items) > 1 and items == list(range(items[0], items[-1] + 1)):
        return f"{items[0]}-{items[-1]}"
    return ", ".join(str(item) for item in items[:6]) + (", ..." if len(items) > 6 else "")


def initial_loss_near_log_k(model: Model, images: torch.Tensor, num_classes: int | None = None, *,
                            rtol: float = 0.2, seed: int = 0) -> PropertyResult:
    """A fresh model's cross-entropy on random labels is close to `ln K`: it guesses uniformly.

    Args:
        model: images `[B, C, H, W]` to logits `[B, K]`, freshly initialised.
        images: `[B, C, H, W]`.
        num_classes: `K`; taken from the logits when omitted.
        rtol: the allowed relative distance from `ln K`.
        seed: seed of the random labels.
    """
    _check_model(model)
    _check_images(images)
    try:
        logits = _Evaluator(model)(images).float()  # [B, K]
    except Exception as error:  # noqa: BLE001
        return PropertyResult("initial_loss_near_log_k", False, f"the model fails ({_error(error)}).")
    K = logits.shape[-1] if num_classes is None else _validate.positive_int(num_classes, "num_classes")
    if K < 2 or logits.shape[-1] != K:
        raise InputValueError(f"num_classes={K} must be at least 2 and match the logits' last dimension "
                              f"{logits.shape[-1]}; leave it out to read it off the logits.")
    labels = torch.randint(K, (images.shape[0],), generator=torch.Generator().manual_seed(seed))  # [B]
    loss = F.cross_entropy(logits, labels).item()
    target = math.log(K)
    passed = abs(loss - target) <= rtol * target
    return PropertyResult("initial_loss_near_log_k", passed, f"initial loss {loss:.2f}, ln({K}) = {target:.2f}"
                          + ("." if passed else ": the first logits are far from uniform; check the head and "
                             "its initialisation."))


# --------------------------------------------------------------------------------------- parts


def pre_norm_residual(block: Callable[[torch.Tensor], torch.Tensor], tokens: torch.Tensor, *,
                      shift: float = 1.0, atol: float = 1e-4) -> PropertyResult:
    """A pre-norm block carries a constant shift of its input straight through: `block(x + c) = block(x) + c`.

    Adding `c` to every feature of every token is invisible to a LayerNorm (it subtracts the mean), so in
    a pre-norm block `x + f(norm(x))` the sublayers see nothing new and the residual path carries `c` to the
    output. A post-norm block `norm(x + f(x))` normalises the shift away, and so does any block whose residual
    path passes through a LayerNorm.

    Args:
        block: tokens `[B, L, D]` to tokens `[B, L, D]`, e.g. `model.blocks[0]`.
        tokens: `[B, L, D]`.
        shift: the constant `c`.
        atol: the largest deviation allowed.
    """
    _check_model(block, "block")
    _validate.tensor(tokens, "tokens", 3, "[B, L, D]")
    try:
        evaluate = _Evaluator(block)
        moved = evaluate(tokens + shift) - evaluate(tokens)  # [B, L, D]
        carried, error = moved.mean().item(), (moved - shift).abs().max().item()
    except Exception as err:  # noqa: BLE001
        return PropertyResult("pre_norm_residual", False, f"the block fails ({_error(err)}).")
    if error > atol:
        carried = round(carried, 2) + 0.0  # no "-0.00"
        return PropertyResult("pre_norm_residual", False, f"adding {shift:g} to the input moves the output by "
                              f"{carried:.2f} on average, not {shift:g}: a LayerNorm sits on the residual path.")
    return PropertyResult("pre_norm_residual", True, f"adding {shift:g} to the input adds {shift:g} to the output: "
                          f"the residual path is clean (pre-norm).")


def pixel_span(pixels: torch.Tensor, H: int, W: int) -> str:
    """Which rows and columns of an `H x W` image the flat pixel indices `pixels` (`c*H*W + row*W + col`) cover,
    e.g. "rows 0-3, columns 4-7"; a set with gaps is listed, e.g. "rows 0, 2, 4"."""

    def span(items: list[int]) -> str:
        if items == list(range(items[0], items[-1] + 1)):
            return f"{items[0]}-{items[-1]}" if len(items) > 1 else f"{items[0]}"
        return ", ".join(str(item) for item in items[:6]) + (", ..." if len(items) > 6 else "")

    within = pixels.long() % (H * W)  # [n], indices within one channel
    return f"rows {span(sorted(set((within // W).tolist())))}, columns {span(sorted(set((within % W).tolist())))}"


def patch_order(patchify: Callable[[torch.Tensor, int], torch.Tensor], images: torch.Tensor, patch_size: int
                ) -> PropertyResult:
    """Patch `n` holds exactly the pixels of the `n`-th `P x P` square, in reading order.

    The check fills images of the given shape with distinct values (each pixel's index) so that every
    patch's pixels can be traced back; the order of the values inside a patch is not checked here
    (`patch_round_trip` does that).

    Args:
        patchify: images `[B, C, H, W]` and `patch_size` to patches `[B, N, C*P*P]`.
        images: only its shape is used.
        patch_size: patch side `P`.
    """
    _check_model(patchify, "patchify")
    _check_images(images)
    _validate.positive_int(patch_size, "patch_size")
    B, C, H, W = images.shape
    _validate.divides(patch_size, H, "patch_size", "height")
    _validate.divides(patch_size, W, "patch_size", "width")
    P, N = patch_size, (H // patch_size) * (W // patch_size)
    indexed = torch.arange(B * C * H * W, dtype=images.dtype).reshape(B, C, H, W)  # [B, C, H, W]
    expected = F.unfold(indexed, kernel_size=P, stride=P).transpose(1, 2)  # [B, N, C*P*P]
    try:
        patches = patchify(indexed, P)  # [B, N, C*P*P]
    except Exception as error:  # noqa: BLE001
        return PropertyResult("patch_order", False, f"patchify fails ({_error(error)}).")
    if not isinstance(patches, torch.Tensor) or tuple(patches.shape) != (B, N, C * P * P):
        shape = tuple(patches.shape) if isinstance(patches, torch.Tensor) else type(patches).__name__
        return PropertyResult("patch_order", False, f"patchify returns {shape}, expected {(B, N, C * P * P)}.")
    wrong = (patches.sort(dim=-1).values != expected.sort(dim=-1).values).any(dim=-1)  # [B, N]
    if wrong.any():
        n = int(wrong[0].nonzero()[0]) if wrong[0].any() else int(wrong.any(0).nonzero()[0])
        return PropertyResult("patch_order", False, f"{int(wrong.sum())} of {B * N} patches hold the wrong pixels; "
                              f"patch {n} should cover {pixel_span(expected[0, n], H, W)} but covers "
                              f"{pixel_span(patches[0, n], H, W)}.")
    return PropertyResult("patch_order", True, f"each of the {N} patches holds its own {P}x{P} square, "
                          f"in reading order.")


def patch_round_trip(patchify: Callable[[torch.Tensor, int], torch.Tensor], images: torch.Tensor, patch_size: int,
                     unpatchify: Callable[[torch.Tensor, int, tuple[int, int]], torch.Tensor] | None = None
                     ) -> PropertyResult:
    """`unpatchify(patchify(x)) == x` exactly: cutting into patches loses and moves nothing.

    Args:
        patchify: images `[B, C, H, W]` and `patch_size` to patches `[B, N, C*P*P]`.
        images: `[B, C, H, W]`.
        patch_size: patch side `P`.
        unpatchify: patches, `patch_size` and `(H, W)` to images; `vitsteps.patches.patches_to_image`
            (the inverse of `F.unfold`, channel first within a patch) when omitted.
    """
    _check_model(patchify, "patchify")
    _check_images(images)
    _validate.positive_int(patch_size, "patch_size")
    unpatchify = patches_to_image if unpatchify is None else unpatchify
    _check_model(unpatchify, "unpatchify")
    B, C, H, W = images.shape
    try:
        rebuilt = unpatchify(patchify(images, patch_size), patch_size, (H, W))  # [B, C, H, W]
    except Exception as error:  # noqa: BLE001
        return PropertyResult("patch_round_trip", False, f"the round trip fails ({_error(error)}).")
    if not isinstance(rebuilt, torch.Tensor) or rebuilt.shape != images.shape:
        return PropertyResult("patch_round_trip", False, "the round trip does not give back the image's shape.")
    misplaced = int((rebuilt != images).sum())
    if misplaced:
        return PropertyResult("patch_round_trip", False, f"{misplaced} of {images.numel()} pixels come back "
                              f"in the wrong place.")
    return PropertyResult("patch_round_trip", True, "every pixel comes back to its place.")


# --------------------------------------------------------------------------------------- all at once


def run_checks(model: nn.Module, images: torch.Tensor, *, patch_size: int | None = None,
               patchify: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
               block: Callable[[torch.Tensor], torch.Tensor] | None = None) -> list[PropertyResult]:
    """Every property that applies to `model`, in the order of the table in this module's docstring.

    Args:
        model: an `nn.Module` from images `[B, C, H, W]` to logits `[B, K]`, freshly initialised.
        images: `[B, C, H, W]` with `B >= 2`.
        patch_size: patch side `P`; read from `model.config` when omitted.
        patchify: the model's patch cutter `(images, P) -> [B, N, C*P*P]`; `model.patchify` when it has one,
            else the patch checks are skipped.
        block: one encoder block; `model.blocks[0]` when it has blocks, else the residual check is skipped.
    """
    _check_images(images, min_batch=2)
    patch_size = _patch_size(model, patch_size)
    patchify = getattr(model, "patchify", None) if patchify is None else patchify
    results = [deterministic_in_eval(model, images), batch_independence(model, images),
               input_sensitivity(model, images), position_sensitivity(model, images, patch_size)]
    if isinstance(getattr(model, "pos_embed", None), torch.Tensor):
        results.append(readout_symmetry(model, images, patch_size))
    if patchify is not None:
        results += [patch_order(patchify, images, patch_size), patch_round_trip(patchify, images, patch_size)]
    results.append(gradients_reach(model, images))
    blocks = getattr(model, "blocks", None)
    if block is None and blocks is not None and len(blocks):
        block = blocks[0]
    if block is not None:
        D = getattr(getattr(model, "config", None), "embed_dim", None)
        if D is None:
            raise InputValueError("block needs tokens of the model's width, but the model has no config.embed_dim; "
                                  "pass block=None, or a model with a config.")
        generator = torch.Generator().manual_seed(0)
        tokens = torch.randn(images.shape[0], 5, D, generator=generator)  # [B, L, D]
        results.append(pre_norm_residual(block, tokens))
    results.append(initial_loss_near_log_k(model, images))
    return results


def format_results(results: Sequence[PropertyResult]) -> str:
    """The verdicts as an aligned text table, one line per property, with a count at the end."""
    for result in results:
        _validate.instance(result, "results", PropertyResult, "a list of PropertyResult objects",
                           "pass the list run_checks(model, images) returns")
    width = max((len(result.name) for result in results), default=0)
    lines = [f"{'PASS' if r.passed else 'FAIL'}  {r.name:<{width}}  {r.detail}" for r in results]
    lines.append(f"{sum(r.passed for r in results)} of {len(results)} checks pass.")
    return "\n".join(lines)
