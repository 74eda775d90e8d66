"""How fast each explorer re-renders after a slider moves, at its default sizes (the budget is 150 ms).

A re-render is what a slider change sets off in the kernel: the pure function under the explorer (compute),
then the matplotlib figure redrawn and encoded as PNG (draw). Each explorer is built at its defaults, warmed up
once, then one of its sliders is moved `--rounds` times:

- patch explorer: patch size 4 <-> 2 (8x8 RGB image, D=8);
- token explorer: patches 4 <-> 5 (B=1, D=8, a table of 16 rows);
- attention explorer: query token 1, 2, 3, ... (the shipped `mnist` model: 4 heads, 6 blocks, 50 tokens);
- model calculator: depth 12 <-> 13 (ViT-B/16 otherwise), its parameter cache emptied before every move, so the
  whole model is built on the meta device and counted each time.

The explorers take turns within each round (the order rotates), so load from other processes hits them alike.
The script prints, per explorer, the median wall time of a re-render, its compute and draw parts, the median CPU
time of the process (less sensitive to other processes than the wall clock), and the ratio to the budget.

    python tests/benchmarks/bench_widgets.py [--rounds 15]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import matplotlib

matplotlib.use("Agg")

from vitsteps.teach.explorers import compute, widgets  # noqa: E402  (after choosing the backend)

BUDGET_MS = 150.0


def _moves() -> dict[str, tuple[widgets.Explorer, Callable[[widgets.Explorer, int], None]]]:
    """Explorer name -> (explorer at its defaults, how round `r` moves one of its sliders)."""

    def patch(explorer: widgets.Explorer, r: int) -> None:
        explorer.controls["patch_size"].value = 2 if r % 2 == 0 else 4

    def token(explorer: widgets.Explorer, r: int) -> None:
        explorer.controls["num_patches"].value = 5 if r % 2 == 0 else 4

    def attention(explorer: widgets.Explorer, r: int) -> None:
        explorer.controls["query"].value = 1 + r % 16

    def calculator(explorer: widgets.Explorer, r: int) -> None:
        compute._counted_parameters.cache_clear()  # no help from earlier moves: count a freshly built model
        explorer.controls["depth"].value = 13 if r % 2 == 0 else 12

    return {
        "patch_explorer": (widgets.patch_explorer(), patch),
        "token_explorer": (widgets.token_explorer(), token),
        "attention_explorer": (widgets.attention_explorer(), attention),
        "model_calculator": (widgets.model_calculator(), calculator),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="slider moves per explorer")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    moves = _moves()
    for name, (explorer, move) in moves.items():  # warm-up: first draw of a moved slider
        move(explorer, -1)
        assert explorer.error is None, f"{name}: {explorer.error}"
    samples: dict[str, list[tuple[float, float, float, float]]] = {name: [] for name in moves}
    names = list(moves)
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            explorer, move = moves[name]
            redraws = explorer.redraws
            wall, cpu = time.perf_counter(), time.process_time()
            move(explorer, r)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            assert explorer.redraws == redraws + 1 and explorer.error is None, f"{name} did not redraw"
            samples[name].append((wall, explorer.timings["compute"], explorer.timings["draw"], cpu))
    print(f"re-render after a slider move, median of {args.rounds} (load average {load_before:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after, on {os.cpu_count()} cores)")
    print(f"{'explorer':<20}{'wall ms':>9}{'compute':>9}{'draw':>9}{'cpu ms':>9}  budget {BUDGET_MS:.0f} ms")
    for name, rows in samples.items():
        wall, compute, draw, cpu = (statistics.median(column) * 1000 for column in zip(*rows, strict=True))
        spread = (max(row[0] for row in rows) - min(row[0] for row in rows)) * 1000
        print(f"{name:<20}{wall:>9.1f}{compute:>9.1f}{draw:>9.1f}{cpu:>9.1f}  "
              f"{wall / BUDGET_MS:.2f} of it (wall spread {spread:.0f} ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
