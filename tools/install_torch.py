"""Install PyTorch into this interpreter's environment, the CPU build on Linux when it can be had.

    python tools/install_torch.py [--index URL]

PyPI serves Linux the CUDA build of PyTorch (about 3.7 GB of NVIDIA packages on top); the notebooks need none of it.
So on Linux this installs torch from PyTorch's CPU wheel index first. When that index cannot be reached (a firewall,
a mirror-only network), it says so and leaves torch to the next `pip install`, which takes it from the ordinary
package index. Elsewhere (macOS, Windows) PyPI's torch is already the CPU build and nothing is done here.
The version range is read from pyproject.toml, the single place it is written.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import platform
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
DEFAULT_INDEX = "https://download.pytorch.org/whl/cpu"


def torch_requirement(pyproject: Path = PYPROJECT) -> str:
    """The `torch...` requirement listed in the project's dependencies, e.g. `torch>=2.3,<2.14`."""
    match = re.search(r'^\s*"(torch[<>=!~][^"]*)"', pyproject.read_text(encoding="utf-8"), re.M)
    if match is None:
        raise ValueError(f"{pyproject} lists no torch requirement; add one like \"torch>=2.3,<2.14\".")
    return match.group(1)


def installed_torch() -> str | None:
    """The installed torch version, or None."""
    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return None


def reachable(index: str, timeout: float = 10.0) -> bool:
    """Whether the wheel index answers (its torch page), within `timeout` seconds."""
    try:
        with urllib.request.urlopen(index.rstrip("/") + "/torch/", timeout=timeout):
            return True
    except (urllib.error.URLError, OSError, ValueError):
        return False


def plan(system: str, index: str, have: str | None, index_reachable: bool | None) -> str:
    """What to do: 'skip' (nothing needed), 'index' (install from the CPU index) or 'pypi' (leave it to PyPI)."""
    if have is not None or system != "Linux" or not index:
        return "skip"
    return "index" if index_reachable else "pypi"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", default=DEFAULT_INDEX,
                        help="PyTorch wheel index to try first on Linux; empty to use the ordinary index only")
    args = parser.parse_args(argv)
    requirement, have, system = torch_requirement(), installed_torch(), platform.system()
    needs_probe = have is None and system == "Linux" and bool(args.index)
    action = plan(system, args.index, have, reachable(args.index) if needs_probe else None)
    if action == "skip":
        return 0
    if action == "pypi":
        print(f"PyTorch's CPU wheel index ({args.index}) cannot be reached from here: torch will come from the "
              f"ordinary package index instead. On Linux that can be the CUDA build, several GB larger; to choose "
              f"another index, run again with TORCH_INDEX=<url>.", flush=True)
        return 0
    print(f"Installing PyTorch ({requirement}, CPU build) from {args.index}: a few minutes.", flush=True)
    command = [sys.executable, "-m", "pip", "install", "--index-url", args.index, requirement]
    if subprocess.call(command) != 0:
        print(f"Installing from {args.index} failed: torch will come from the ordinary package index instead.",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
