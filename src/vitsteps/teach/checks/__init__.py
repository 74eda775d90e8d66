"""Self-checks for the exercises: `check(name, fn)` runs a student's function through its exercise's public cases.

    from vitsteps.teach.checks import check
    check("image_to_windows", my_image_to_windows)

Every exercise is described in the table the package ships (`public`): its public cases (the original article's
configuration first) with the right outputs, the classic mistakes it recognises by their output, and the routes
it rules out. The solutions themselves are not in the package: the instructor's table (`vitcourse.judge.exercises`)
holds the references and wrote these outputs. One loop (`spec.run`) checks any exercise: shapes, dtype, values, the
same sample with other batch-mates, inputs left unchanged, gradients, with the ruled-out routes closed while the
function runs (`routes`). It prints one line when everything passes, or raises `CheckFailed`: which configuration,
what differs, and a hint naming the classic mistake. Jupyter shows a `CheckFailed` as that short message, without a
traceback. `compare` is the comparison alone, for a grader that runs the student's function elsewhere;
`grad_weights` gives the weights of the gradient check, the same in every process.
"""
from __future__ import annotations

from collections.abc import Callable

from ... import _validate
from . import public
from .spec import Answer, Case, CheckFailed, Exercise, Mistake, compare, grad_weights, gradients, run

__all__ = ["EXERCISES", "Answer", "Case", "CheckFailed", "Exercise", "Mistake", "check", "compare", "grad_weights",
           "gradients", "names"]



def __getattr__(attribute: str) -> object:
    """`EXERCISES`, every exercise as the student package knows it, read from the public cases on first use."""
    if attribute == "EXERCISES":
        return public.exercises()
    raise AttributeError(f"module {__name__!r} has no attribute {attribute!r}")


def names() -> dict[str, str]:
    """The exercises `check` knows, in series order, each with the call it expects."""
    return {name: exercise.signature for name, exercise in public.exercises().items()}


def check(name: str, fn: Callable[..., object], *, seed: int = 0) -> bool:
    """Run the self-check `name` on a student's function `fn`.

    Args:
        name: which exercise, one of `names()` (e.g. "image_to_windows").
        fn: the student's function, called with the signature listed in `names()`.
        seed: which set of public cases, 0 or 1; the grader uses cases of its own, made from a secret seed.

    Returns:
        True, after printing one line that says what passed.

    Raises:
        CheckFailed: with the configuration, the problem and a hint (shown without a traceback in Jupyter).
        ValueError: `name` is not a known exercise, or `seed` is not a public seed.
        TypeError: `fn` is not callable, or `seed` is not an int.
    """
    exercises = public.exercises()
    _validate.one_of(name, "name", list(exercises), "use the name given in the exercise")
    if not callable(fn):
        _validate.fail(TypeError, "fn", "a function", fn,
                       f"pass the function itself, without calling it: check({name!r}, my_function)")
    _validate.int_in(seed, "seed", min(public.SEEDS), max(public.SEEDS),
                     "the package ships public cases for seeds 0 and 1 only; the grader makes cases of its own")
    return run(exercises[name], fn, public.answers(name, seed))
