"""Grading as a Slurm job array, and the merge as a job that waits for it (`--dependency=afterok`).

    python -m vitcourse.cluster.slurm --course /shared/course --shards 4 [-- --partition=short --account=me]

submits `sbatch/grade.sbatch` (shipped beside this module) as `sbatch --array=0-3` and `sbatch/merge.sbatch`
as a job that starts once every task has succeeded (and is cancelled if one fails: grade that shard again with
`sbatch --array=I`, then submit the merge again). Slurm runs the jobs; this module only calls `sbatch`.
"""
from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from .shards import MAX_SHARDS

SCRIPTS = Path(__file__).with_name("sbatch")
GRADE_SCRIPT = SCRIPTS / "grade.sbatch"
MERGE_SCRIPT = SCRIPTS / "merge.sbatch"


def sbatch_commands(course: Path, shards: int, sbatch_args: Sequence[str] = (), autograde_args: Sequence[str] = (),
                    python: str | None = None, sbatch: str = "sbatch") -> tuple[list[str], list[str]]:
    """The two sbatch command lines (the array, then the merge with `{job}` where the array's id goes)."""
    if isinstance(shards, bool) or not isinstance(shards, int) or not 1 <= shards <= MAX_SHARDS:
        raise ValueError(f"shards must be an int from 1 to {MAX_SHARDS}, got {shards!r}; it is the array's size.")
    if isinstance(sbatch_args, str) or isinstance(autograde_args, str):
        raise TypeError("sbatch_args and autograde_args must be lists of arguments, not one string; "
                        "split it with shlex.split.")
    course = Path(course).resolve()
    if not (course / "source").is_dir():
        raise FileNotFoundError(f"{course / 'source'} does not exist: run `make student` on the course first.")
    environment = {"VITCOURSE_COURSE": str(course), "VITCOURSE_PYTHON": python or sys.executable,
                   "VITCOURSE_SHARDS": str(shards), "VITCOURSE_ARGS": shlex.join(autograde_args)}
    results = [arg for arg in autograde_args if arg.startswith("--results")]
    if results:
        index = list(autograde_args).index(results[0])
        environment["VITCOURSE_MERGE_ARGS"] = shlex.join(
            autograde_args[index:index + 2] if results[0] == "--results" else [results[0]])
    for name, value in environment.items():
        if "," in value:
            raise ValueError(f"{name}={value!r} holds a comma, which sbatch's --export cannot pass; use a path "
                             f"and options without commas.")
    export = "--export=ALL," + ",".join(f"{name}={value}" for name, value in environment.items())
    grade = [sbatch, "--parsable", f"--array=0-{shards - 1}", export, *sbatch_args, str(GRADE_SCRIPT)]
    merge = [sbatch, "--parsable", "--dependency=afterok:{job}", "--kill-on-invalid-dep=yes", export, *sbatch_args,
             str(MERGE_SCRIPT)]
    return grade, merge


def submit(course: Path, shards: int, sbatch_args: Sequence[str] = (), autograde_args: Sequence[str] = (),
           python: str | None = None, cwd: Path | None = None, env: Mapping[str, str] | None = None
           ) -> tuple[str, str]:
    """Submit the grading array and the dependent merge; (the array's job id, the merge's job id).

    Args:
        course: the course folder, on storage every node sees.
        shards: the number of array tasks (N).
        sbatch_args: more sbatch options for both jobs (a partition, an account, `--mem`, `--output`).
        autograde_args: more autograde options for every task (`--exercises`, `--cell-timeout`, `--results`).
        python: the interpreter the jobs run (default: this one; it must have vitcourse installed).
        cwd: where sbatch runs (where the jobs' output files go unless `--output` says otherwise).
        env: sbatch's environment (default: this process's; the jobs get it too, with `--export=ALL`).
    """
    sbatch = shutil.which("sbatch")
    if sbatch is None:
        raise FileNotFoundError("sbatch is not on PATH: run this on a Slurm login node (or apt-get install "
                                "slurm-client).")
    grade, merge = sbatch_commands(course, shards, sbatch_args, autograde_args, python, sbatch)
    env = dict(os.environ if env is None else env)
    array = _sbatch(grade, cwd, env)
    merge = [arg.replace("{job}", array) for arg in merge]
    return array, _sbatch(merge, cwd, env)


def _sbatch(command: list[str], cwd: Path | None, env: dict[str, str]) -> str:
    done = subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=60, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(command)} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return done.stdout.strip().split(";")[0]  # --parsable: "jobid" or "jobid;cluster"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vitcourse.cluster.slurm", description=__doc__.splitlines()[0])
    parser.add_argument("--course", type=Path, required=True, help="the course folder, on shared storage")
    parser.add_argument("--shards", type=int, required=True, help="array tasks (N)")
    parser.add_argument("--autograde", default="", help="more autograde options, one string")
    parser.add_argument("sbatch_args", nargs="*", help="after --: more sbatch options for both jobs")
    args = parser.parse_args(argv)
    try:
        array, merge = submit(args.course, args.shards, args.sbatch_args, shlex.split(args.autograde))
    except (FileNotFoundError, RuntimeError, TypeError, ValueError) as error:
        print(f"vitcourse.cluster.slurm: {error}", file=sys.stderr)
        return 1
    print(f"submitted the grading array {array} ({args.shards} tasks) and the merge {merge} "
          f"(afterok:{array}); squeue -j {array},{merge} shows them")
    return 0


if __name__ == "__main__":
    sys.exit(main())
