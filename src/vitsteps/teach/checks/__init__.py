"""Self-checks for the exercises: `check(name, fn)` runs a student's function through its exercise's cases.

    from vitsteps.teach.checks import check
    check("image_to_patches", my_image_to_patches)

Every exercise is one entry of the table `EXERCISES` (`exercises`): how to make its cases (the original
article's configuration first), a reference written without the package's stage code (`references`), the classic
mistakes it recognises by their output, and the calls it rules out. One loop (`spec.run`) checks any of them:
shapes, dtype, values, the same sample with other batch-mates, inputs left unchanged, gradients. It prints one line
when everything passes, or raises `CheckFailed`: which configuration, what differs, and a hint naming the classic
mistake. Jupyter shows a `CheckFailed` as that short message, without a traceback. `verdict` is the comparison
alone, for a grader that runs the student's function elsewhere; `grad_weights` gives the weights of the
gradient check, the same in every process.
"""
from __future__ import annotations

from collections.abc import Callable

from ... import _validate
from .exercises import EXERCISES
from .spec import Case, CheckFailed, Exercise, Mistake, grad_weights, gradients, run, verdict

__all__ = ["EXERCISES", "Case", "CheckFailed", "Exercise", "Mistake", "check", "grad_weights", "gradients", "names",
           "verdict"]


def names() -> dict[str, str]:
    """The exercises `check` knows, in series order, each with the call it expects."""
    return {name: exercise.signature for name, exercise in EXERCISES.items()}


def check(name: str, fn: Callable[..., object], *, seed: int = 0) -> bool:
    """Run the self-check `name` on a student's function `fn`.

    Args:
        name: which exercise, one of `names()` (e.g. "image_to_patches").
        fn: the student's function, called with the signature listed in `names()`.
        seed: seeds the random inputs; graders use another seed than the visible check.

    Returns:
        True, after printing one line that says what passed.

    Raises:
        CheckFailed: with the configuration, the problem and a hint (shown without a traceback in Jupyter).
        ValueError: `name` is not a known exercise.
        TypeError: `fn` is not callable, or `seed` is not an int.
    """
    _validate.one_of(name, "name", list(EXERCISES), "use the name given in the exercise")
    if not callable(fn):
        _validate.fail(TypeError, "fn", "a function", fn,
                       f"pass the function itself, without calling it: check({name!r}, my_function)")
    _validate.non_negative_int(seed, "seed", "pass e.g. 1")
    return run(EXERCISES[name], fn, seed)
