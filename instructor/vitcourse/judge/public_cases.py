"""Write the public cases the student package ships (`vitsteps/teach/checks/public_cases.pt`) from the answer key.

    python -m vitcourse.judge.public_cases write [--table MODULE] [--into PATH]
    python -m vitcourse.judge.public_cases check         (exit 1 if the shipped file is not what the table gives)

For each exercise of the table and each public seed it runs the reference and every classic mistake on the cases,
and stores the inputs and outputs, never code. The grader's own cases come from a secret seed and are never here.
"""
from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path
from typing import Any

import torch

import vitsteps.teach.checks.public as public
from vitsteps.teach.checks.spec import answer

from . import verdict

SHIPPED = Path(public.__file__).with_name(public.DATA_FILE)


def build(table: str | None = None) -> dict[str, Any]:
    """The file's content for the exercise table `table` (default: the course's table)."""
    exercises = verdict.load_table(table).exercises
    content: dict[str, Any] = {"format": public.FORMAT, "exercises": {}}
    for name, exercise in exercises.items():
        seeds = {}
        for seed in public.SEEDS:
            with torch.random.fork_rng(devices=[]):
                cases = exercise.make_cases(torch.Generator().manual_seed(seed))
                seeds[seed] = [public.pack_answer(answer(exercise, case)) for case in cases]
        content["exercises"][name] = {"exercise": public.describe(exercise), "seeds": seeds}
    return content


def serialise(content: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save(content, buffer)
    return buffer.getvalue()


def differences(shipped: dict[str, Any], fresh: dict[str, Any], path: str = "") -> list[str]:
    """Where two contents differ, as paths into them; empty when they are the same. Floating-point tensors may differ
    by float rounding (another thread count sums in another order), far below every exercise's tolerance."""
    if isinstance(fresh, torch.Tensor):
        same = isinstance(shipped, torch.Tensor) and shipped.dtype == fresh.dtype and shipped.shape == fresh.shape \
            and (torch.allclose(shipped, fresh, rtol=1e-5, atol=1e-6, equal_nan=True) if fresh.is_floating_point()
                 else torch.equal(shipped, fresh))
        return [] if same else [path or "/"]
    if isinstance(fresh, dict):
        if not isinstance(shipped, dict) or set(shipped) != set(fresh):
            return [path or "/"]
        return [found for key in fresh for found in differences(shipped[key], fresh[key], f"{path}/{key}")]
    if isinstance(fresh, (list, tuple)):
        if not isinstance(shipped, (list, tuple)) or len(shipped) != len(fresh):
            return [path or "/"]
        return [found for index, (a, b) in enumerate(zip(shipped, fresh, strict=True))
                for found in differences(a, b, f"{path}/{index}")]
    return [] if shipped == fresh and type(shipped) is type(fresh) else [path or "/"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vitcourse.judge.public_cases", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["write", "check"])
    parser.add_argument("--table", default=None, help="the exercise table (default: the course's)")
    parser.add_argument("--into", type=Path, default=SHIPPED, help="where to write (default: the package's file)")
    args = parser.parse_args(argv)
    fresh = build(args.table)
    if args.command == "write":
        args.into.write_bytes(serialise(fresh))
        print(f"wrote {args.into} ({args.into.stat().st_size:,} bytes, {len(fresh['exercises'])} exercises)")
        return 0
    shipped = torch.load(args.into, weights_only=True)
    found = differences(shipped, fresh)
    if found:
        print(f"{args.into} is not what the table gives: {', '.join(found[:5])}; run `python -m "
              f"vitcourse.judge.public_cases write`", file=sys.stderr)
        return 1
    print(f"{args.into} matches the table")
    return 0


if __name__ == "__main__":
    sys.exit(main())
