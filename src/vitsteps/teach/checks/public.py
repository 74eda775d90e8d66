"""The public cases the self-checks run on, shipped as data: inputs, the right outputs, each mistake's output.

`public_cases.pt` (beside this file) holds, for every exercise, what the self-check needs and nothing that solves
it: the exercise's description (name, notebook, grade id, the mistakes' names and hints, tolerances, the routes it
rules out) and, for each public seed, the cases with the reference's output, its gradients and each classic
mistake's output on them. The instructor's table writes it (`python -m vitcourse.judge.public_cases write`); a
test checks that it is what the table gives today. It is read with `torch.load(weights_only=True)`: plain tensors,
numbers, strings, lists and dicts, never code.

The grader never uses these cases: it makes its own from a secret seed and compares in its own process.
"""
from __future__ import annotations

import dataclasses
import functools
from importlib import resources
from typing import Any

import torch
from torch import nn

from ...model import ViTConfig
from .hints import EXPLAIN
from .spec import Answer, Case, Exercise, Mistake

DATA_FILE = "public_cases.pt"
SEEDS = (0, 1)  # the seeds of the public cases: 0 for the visible check, 1 for the solutions' extra check
FORMAT = 1


def pack(value: Any) -> Any:
    """`value` as plain data for the file: tensors detached, tuples, configs and linear layers marked."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, ViTConfig):
        return {"__vitconfig__": dataclasses.asdict(value)}
    if isinstance(value, nn.Linear):
        return {"__linear__": [pack(value.weight), pack(value.bias) if value.bias is not None else None]}
    if isinstance(value, tuple):
        return {"__tuple__": [pack(item) for item in value]}
    if isinstance(value, list):
        return [pack(item) for item in value]
    if isinstance(value, dict):
        return {"__dict__": {str(key): pack(item) for key, item in value.items()}}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"value must be plain data (tensors, numbers, strings, tuples, lists, dicts, a ViTConfig or an "
                    f"nn.Linear), got {type(value).__name__}; the public cases can hold nothing else.")


def unpack(value: Any) -> Any:
    """The inverse of `pack`."""
    if isinstance(value, list):
        return [unpack(item) for item in value]
    if isinstance(value, dict):
        if "__tuple__" in value:
            return tuple(unpack(item) for item in value["__tuple__"])
        if "__dict__" in value:
            return {key: unpack(item) for key, item in value["__dict__"].items()}
        if "__vitconfig__" in value:
            fields = {key: tuple(item) if isinstance(item, list) else item
                      for key, item in value["__vitconfig__"].items()}
            return ViTConfig(**fields)
        if "__linear__" in value:
            weight, bias = value["__linear__"]
            with torch.random.fork_rng(devices=[]):
                layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
            with torch.no_grad():
                layer.weight.copy_(weight)
                if bias is not None:
                    layer.bias.copy_(bias)
            return layer
    return value


def describe(exercise: Exercise) -> dict[str, Any]:
    """What the file says of an exercise: everything but its cases' generator, its reference and mistakes' code."""
    explain = next((name for name, function in EXPLAIN.items() if function is exercise.explain), None)
    if exercise.explain is not None and explain is None:
        raise ValueError(f"exercise {exercise.name!r}: its explain function is not one of vitsteps.teach.checks."
                         f"hints.EXPLAIN; add it there so the student package can give its hint.")
    return {"name": exercise.name, "notebook": exercise.notebook, "grade_id": exercise.grade_id,
            "mistakes": [[mistake.name, mistake.hint] for mistake in exercise.mistakes],
            "forbidden": list(exercise.forbidden), "package_reference": list(exercise.package_reference),
            "rtol": exercise.rtol, "atol": exercise.atol, "signature": exercise.signature,
            "outputs": list(exercise.outputs), "passes": list(exercise.passes), "explain": explain,
            "arguments": exercise.arg_names}


def pack_answer(right: Answer) -> dict[str, Any]:
    """One answer as plain data."""
    case = right.case
    return {"label": case.label, "args": pack(tuple(case.args)), "kwargs": pack(dict(case.kwargs)),
            "grad_args": list(case.grad_args), "note": case.note, "expected": pack(right.expected),
            "imitated": pack(tuple(right.imitated)),
            "expected_grads": pack(right.expected_grads) if right.expected_grads is not None else None}


def _unpack_answer(data: dict[str, Any]) -> Answer:
    case = Case(data["label"], unpack(data["args"]), unpack(data["kwargs"]), tuple(data["grad_args"]), data["note"])
    grads = unpack(data["expected_grads"]) if data["expected_grads"] is not None else None
    return Answer(case, unpack(data["expected"]), unpack(data["imitated"]), grads)


def _exercise(data: dict[str, Any]) -> Exercise:
    return Exercise(data["name"], data["notebook"], data["grade_id"], None, None,
                    tuple(Mistake(name, None, hint) for name, hint in data["mistakes"]),
                    forbidden=tuple(data["forbidden"]), package_reference=tuple(data["package_reference"]),
                    rtol=data["rtol"], atol=data["atol"], signature=data["signature"], outputs=tuple(data["outputs"]),
                    passes=tuple(data["passes"]), explain=EXPLAIN[data["explain"]] if data["explain"] else None,
                    arguments=tuple(data["arguments"]))


@functools.cache
def _load() -> dict[str, Any]:
    with resources.files(__package__).joinpath(DATA_FILE).open("rb") as handle:
        data = torch.load(handle, weights_only=True)
    if data.get("format") != FORMAT:
        raise RuntimeError(f"{DATA_FILE} has format {data.get('format')!r}, this vitsteps reads {FORMAT}: reinstall "
                           f"the package so that its data and code match.")
    return data


@functools.cache
def exercises() -> dict[str, Exercise]:
    """Every exercise of the series, in series order, as the student package knows them (no reference)."""
    return {name: _exercise(entry["exercise"]) for name, entry in _load()["exercises"].items()}


def answers(name: str, seed: int) -> list[Answer]:
    """The public cases of exercise `name` for `seed` (one of `SEEDS`), each with its right output."""
    return [_unpack_answer(item) for item in _load()["exercises"][name]["seeds"][seed]]
