"""Execute notebooks top to bottom, in place, so that their stored outputs are reproducible.

`make notebooks` runs this. Running it twice leaves `git diff` empty: cell timings are not recorded,
stdout chunks are merged, progress bars are off (`TQDM_DISABLE=1`), torch runs on one thread as under
`make test`, and widget model ids (random per run) are renumbered in order of appearance.

    python -m vitcourse.execute notebooks/01_patches_unfold.ipynb [...]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import uuid
from pathlib import Path

import nbformat
from nbclient import NotebookClient

_MODEL_ID = re.compile(r"[0-9a-f]{32}")
_NAMESPACE = uuid.UUID("6f1c1a52-9d0e-4c55-8c1e-7a3d2f0b9e11")


def _canonical_widget_order(notebook: nbformat.NotebookNode) -> list[str]:
    """Widget model ids in an order that does not depend on their random values.

    Views shown in outputs come first, in cell order; then the models they reference, depth first in
    sorted attribute order; then any model left, ordered by its content with ids blanked out.
    """
    state = notebook.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    order: list[str] = []

    def visit(model_id: str) -> None:
        if model_id in order:
            return
        order.append(model_id)
        model_state = state.get(model_id, {}).get("state", {})
        for key in sorted(model_state):
            for ref in _MODEL_ID.findall(json.dumps(model_state[key], sort_keys=True)):
                visit(ref)

    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            view = output.get("data", {}).get("application/vnd.jupyter.widget-view+json")
            if view:
                visit(view["model_id"])
    rest = sorted((model_id for model_id in state if model_id not in order),
                  key=lambda model_id: _MODEL_ID.sub("", json.dumps(state[model_id], sort_keys=True)))
    for model_id in rest:
        visit(model_id)
    return order


def renumber_widget_ids(notebook: nbformat.NotebookNode, name: str) -> str:
    """The notebook as JSON text, its random widget model ids replaced by ids derived from `name`."""
    mapping = {model_id: uuid.uuid5(_NAMESPACE, f"{name}:{index}").hex
               for index, model_id in enumerate(_canonical_widget_order(notebook))}
    text = _MODEL_ID.sub(lambda match: mapping.get(match.group(0), match.group(0)), nbformat.writes(notebook))
    return json.dumps(json.loads(text), indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def execute_notebook(path: Path, timeout: int = 600) -> None:
    """Run every cell of `path` in a fresh kernel from its own folder and save it in place."""
    notebook = nbformat.read(path, as_version=4)
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("PYTHONHASHSEED", "0")
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # as under `make test`, so floats round the same way
    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3", record_timing=False,
                            coalesce_streams=True, allow_errors=False,
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    for cell in notebook.cells:
        cell.metadata.pop("execution", None)
    path.write_text(renumber_widget_ids(notebook, path.stem), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--timeout", type=int, default=600, help="seconds allowed per cell")
    args = parser.parse_args(argv)
    for path in args.notebooks:
        if not path.is_file():
            parser.error(f"no notebook at {path}")
        print(f"executing {path}", flush=True)
        execute_notebook(path, args.timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
