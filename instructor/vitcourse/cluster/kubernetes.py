"""Grading as a Kubernetes Indexed Job and the merge as a second Job: the manifest, rendered for a course.

    python -m vitcourse.cluster.kubernetes --image registry/course-grader:1 --claim course-data \\
        --course /srv/course --shards 8 > grade.yaml

The template (`manifests/grade-jobs.yaml`, shipped beside this module) says what the sandbox needs from the nodes
and the pods (unprivileged user namespaces, an Unconfined seccomp profile) and how the course folder is shared
with a Zero to JupyterHub deployment. Nothing here talks to a cluster; `kubectl` applies the file.
"""
from __future__ import annotations

import argparse
import json
import re
import shlex
import string
import sys
from collections.abc import Sequence
from pathlib import Path

from .shards import MAX_SHARDS

TEMPLATE = Path(__file__).with_name("manifests") / "grade-jobs.yaml"
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,40}[a-z0-9])?$")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$")


def render(image: str, claim: str, shards: int, course: str = "/srv/course", mount: str | None = None,
           parallelism: int | None = None, cpus: int = 2, memory: str | None = None, name: str = "vitcourse",
           autograde_args: Sequence[str] = (), merge_args: Sequence[str] = ()) -> str:
    """The two Jobs as YAML.

    Args:
        image: a container image with vitcourse (and what the notebooks import) installed, and bubblewrap.
        claim: the PersistentVolumeClaim (ReadWriteMany) that holds the course folder.
        shards: N, the grading Job's completions (one pod per shard).
        course: the course folder's path inside the pods.
        mount: where the claim is mounted (default: `course`).
        parallelism: pods at once (default: all N).
        cpus: CPUs per pod, also autograde's --jobs.
        memory: memory per pod (default: cpus x 2 GiB + 2 GiB, the sandbox's default limit per submission).
        name: the Jobs' name prefix (a DNS label).
        autograde_args, merge_args: more options for autograde (`--exercises`, `--cell-timeout`) and merge.
    """
    for label, value in (("image", image), ("claim", claim), ("course", course)):
        if not isinstance(value, str) or not value or any(c in value for c in "\"\n\\"):
            raise ValueError(f"{label} must be a non-empty string without quotes or newlines, got {value!r}; e.g. "
                             f"{ {'image': 'registry/course-grader:1', 'claim': 'course-data', 'course': '/srv/course'}[label]!r}.")  # noqa: E501
    if not course.startswith("/"):
        raise ValueError(f"course must be an absolute path inside the pods, got {course!r}; e.g. '/srv/course'.")
    for label, value, top in (("shards", shards, MAX_SHARDS), ("cpus", cpus, 64),
                              ("parallelism", parallelism if parallelism is not None else 1, MAX_SHARDS)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
            raise ValueError(f"{label} must be an int from 1 to {top}, got {value!r}; it is the Job's "
                             f"{'completions' if label == 'shards' else label}.")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"name must be a DNS label (lower-case letters, digits, '-'), got {name!r}; e.g. "
                         f"'vitcourse'.")
    memory = memory or f"{2 * cpus + 2}Gi"
    if not isinstance(memory, str) or not _QUANTITY.match(memory):
        raise ValueError(f"memory must be a Kubernetes quantity, got {memory!r}; e.g. '6Gi'.")
    for label, values in (("autograde_args", autograde_args), ("merge_args", merge_args)):
        if isinstance(values, str):
            raise TypeError(f"{label} must be a list of arguments, not one string; split it with shlex.split.")
    return string.Template(TEMPLATE.read_text(encoding="utf-8")).substitute(
        NAME=name, IMAGE=image, CLAIM=claim, COURSE=course, MOUNT=mount or course, SHARDS=shards,
        PARALLELISM=parallelism or shards, CPUS=cpus, MEMORY=memory,
        ARGS="".join(f", {json.dumps(arg)}" for arg in autograde_args),
        MERGE_ARGS="".join(f", {json.dumps(arg)}" for arg in merge_args))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vitcourse.cluster.kubernetes",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--image", required=True, help="the grader's container image")
    parser.add_argument("--claim", required=True, help="the ReadWriteMany PersistentVolumeClaim of the course")
    parser.add_argument("--shards", type=int, required=True, help="pods (the Indexed Job's completions)")
    parser.add_argument("--course", default="/srv/course", help="the course folder inside the pods")
    parser.add_argument("--parallelism", type=int, default=None, help="pods at once (default: all)")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs per pod (default 2)")
    parser.add_argument("--memory", default=None, help="memory per pod (default: cpus x 2Gi + 2Gi)")
    parser.add_argument("--autograde", default="", help="more autograde options, one string")
    args = parser.parse_args(argv)
    try:
        print(render(args.image, args.claim, args.shards, args.course, parallelism=args.parallelism, cpus=args.cpus,
                     memory=args.memory, autograde_args=shlex.split(args.autograde)), end="")
    except (TypeError, ValueError) as error:
        parser.error(str(error))
    return 0


if __name__ == "__main__":
    sys.exit(main())
