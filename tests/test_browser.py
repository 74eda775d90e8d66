"""A real browser: JupyterLab in headless Chromium runs the patch explorer, and the explorer answers the keyboard.

JupyterLab is started from this environment (`sys.executable`) on 127.0.0.1 with an empty token, temporary
config, data and settings folders, on a notebook written for the test: the import and the one call of notebook
01's *Play* cell (nbval runs the whole of notebook 01 already). Chromium (Debian's `/usr/bin/chromium`, driven
by `playwright`) opens it, runs all cells from the Run menu, moves the patch-size slider with the arrow keys and
checks that the shapes shown are those the package computes for the new patch size, and that a patch size that
does not divide the image shows the package's message. The server is stopped by its PID and every process it
started is gone afterwards.

Without `/usr/bin/chromium` the test is skipped, unless `VITSTEPS_REQUIRE_BROWSER=1` (CI) makes that a failure.
Set `VITSTEPS_SCREENSHOT=path.png` to save a screenshot of the explorer in JupyterLab; the test then runs a copy of
the whole of `notebooks/01_patches_unfold.ipynb` (outputs cleared), as the README's picture shows it.
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest

from vitsteps.teach.explorers.compute import patch_pipeline_shapes

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "01_patches_unfold.ipynb"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
TIMEOUT_MS = 120_000  # generous: a loaded 2-core machine; the test normally takes well under a minute


def _browser_or_skip() -> None:
    """Skip (or, with VITSTEPS_REQUIRE_BROWSER=1, fail) when Chromium or playwright is missing."""
    problem = None
    if not CHROMIUM.is_file():
        problem = f"{CHROMIUM} is missing; install Debian's chromium (apt-get install chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            problem = "the playwright package is missing; pip install -e '.[dev]'"
    if problem:
        if os.environ.get("VITSTEPS_REQUIRE_BROWSER") == "1":
            pytest.fail(f"VITSTEPS_REQUIRE_BROWSER=1 but {problem}")
        pytest.skip(problem)


def _notebook_with_the_explorer(folder: Path) -> Path:
    """The explorer's cell alone; for a screenshot, notebook 01 copied with its outputs cleared."""
    if os.environ.get("VITSTEPS_SCREENSHOT"):
        notebook = nbformat.read(NOTEBOOK, as_version=4)
        for cell in notebook.cells:
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
        notebook.metadata.pop("widgets", None)
    else:
        notebook = nbformat.v4.new_notebook(cells=[
            nbformat.v4.new_markdown_cell("# Patches\nMove the patch size."),
            nbformat.v4.new_code_cell("from vitsteps.teach.explorers import patch_explorer"),
            nbformat.v4.new_code_cell(_play_cell()),
        ])
        notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                           "language": "python"}
    path = folder / NOTEBOOK.name
    nbformat.write(notebook, path)
    return path


def _play_cell() -> str:
    """The source of notebook 01's cell that shows the patch explorer."""
    for cell in nbformat.read(NOTEBOOK, as_version=4).cells:
        if cell.cell_type == "code" and "patch_explorer(" in cell.source:
            return cell.source
    raise AssertionError(f"{NOTEBOOK.name} has no cell that calls patch_explorer()")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _descendants(pid: int) -> list:
    """Every process below `pid` (the kernels are children of the server), as psutil processes."""
    import psutil  # installed with ipykernel

    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _stop(server: subprocess.Popen) -> list[int]:
    """Stop JupyterLab by its PID and wait for the processes it started; return the PIDs that had to be killed."""
    import psutil

    started = _descendants(server.pid)
    server.send_signal(signal.SIGTERM)  # the server shuts its kernels down on SIGTERM
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(timeout=10)
    _, left = psutil.wait_procs(started, timeout=10)
    for process in left:  # anything still there, by its PID
        process.kill()
    psutil.wait_procs(left, timeout=10)
    return [process.pid for process in left]


@pytest.fixture(scope="module")
def jupyterlab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """`(url, notebook)`: JupyterLab serving a copy of notebook 01; stopped by its PID afterwards."""
    _browser_or_skip()
    home = tmp_path_factory.mktemp("jupyterlab")
    served = home / "notebooks"
    served.mkdir()
    notebook = _notebook_with_the_explorer(served)
    config = home / "config"
    (config / "labconfig").mkdir(parents=True)
    # no nbgrader panels, no news pop-up: the page shows only the notebook
    (config / "labconfig" / "page_config.json").write_text(json.dumps(
        {"disabledExtensions": {"@jupyter/nbgrader": True}}), encoding="utf-8")
    # and no server extensions JupyterLab does not need to run a notebook: the server starts sooner
    unused = ["nbgrader.server_extensions.formgrader", "nbgrader.server_extensions.validate_assignment",
              "nbgrader.server_extensions.assignment_list", "nbgrader.server_extensions.course_list", "jupyter_lsp",
              "jupyter_server_terminals", "notebook"]
    (config / "jupyter_server_config.json").write_text(json.dumps(
        {"ServerApp": {"jpserver_extensions": dict.fromkeys(unused, False)}}), encoding="utf-8")
    settings = home / "settings" / "@jupyterlab"
    for plugin, values in (("apputils-extension/notification", {"fetchNews": "false", "checkForUpdates": False}),
                           ("notebook-extension/tracker", {"windowingMode": "none"})):  # every cell in the DOM
        (settings / plugin).parent.mkdir(parents=True, exist_ok=True)
        (settings / f"{plugin}.jupyterlab-settings").write_text(json.dumps(values), encoding="utf-8")
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(config), "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
           "JUPYTER_DATA_DIR": str(home / "data"), "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"), "IPYTHONDIR": str(home / "ipython"),
           "TQDM_DISABLE": "1"}
    port = _free_port()
    log = (home / "jupyterlab.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
         "--ServerApp.port_retries=0", "--IdentityProvider.token=", "--ServerApp.password=",
         "--ServerApp.allow_root=True", f"--ServerApp.root_dir={served}"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + TIMEOUT_MS / 1000
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with {server.returncode}:\n"
                                   f"{(home / 'jupyterlab.log').read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url + "api/status", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.25)
        yield url, notebook
    finally:
        killed = _stop(server)
        log.close()
    assert not killed, f"JupyterLab left processes {killed} running after it stopped; they were killed"


def _notebook_state(page) -> str:
    """What the page shows when the explorer does not appear: prompts and the start of any error output."""
    prompts = page.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()
    errors = [text[:400] for text in page.locator(".jp-OutputArea-output").all_inner_texts() if "Error" in text]
    return f"Cell prompts: {prompts}; error outputs: {errors[:2]}"


def _shape_cell(explorer, step: str):
    """The 'this example' cell of the explorer's table row `step`."""
    return explorer.locator(f"tr[data-step='{step}'] td").last


def _shape(text: str) -> tuple[int, ...]:
    return tuple(int(number) for number in re.findall(r"\d+", text))


def test_patch_explorer_answers_the_keyboard_in_jupyterlab(jupyterlab: tuple[str, Path]) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, notebook = jupyterlab
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1050})
            page.set_default_timeout(TIMEOUT_MS)
            expect.set_options(timeout=TIMEOUT_MS)
            page.goto(f"{url}lab/tree/{notebook.name}")
            page.locator(".jp-NotebookPanel .jp-Notebook").first.wait_for(state="visible")
            # the kernel is connected and idle (the status bar first says Initializing, then Unknown, then Idle)
            page.locator(".jp-StatusBar-Widget").get_by_text(re.compile(r"\|\s*Idle")).first.wait_for()

            page.locator(".lm-MenuBar-item", has_text=re.compile(r"^Run$")).click()
            page.locator(".lm-Menu-item", has_text=re.compile(r"^Run All Cells")).click()
            page.locator(".jp-InputPrompt", has_text="[1]:").first.wait_for()  # the first cell ran

            explorer = page.locator(".vitsteps-patch-explorer").first
            try:
                explorer.wait_for(state="visible")
            except Exception as error:
                raise AssertionError(f"no patch explorer after Run All. {_notebook_state(page)}") from error
            image_row = _shape_cell(explorer, "image")
            expect(image_row).to_have_text(re.compile(r"\[1, \d+, \d+, \d+\]"))
            _, in_chans, image_size, _ = _shape(image_row.inner_text())
            model_dim = _shape(_shape_cell(explorer, "matmul").inner_text())[-1]
            slider = explorer.locator(".vitsteps-control-patch-size")
            readout = slider.locator(".widget-readout")
            start = int(readout.inner_text())
            expected = dict(patch_pipeline_shapes(image_size, start, in_chans, model_dim))
            expect(_shape_cell(explorer, "transpose to tokens")).to_have_text(
                str(list(expected["transpose to tokens"])))

            figure = explorer.locator("img.vitsteps-figure")
            first_picture = figure.get_attribute("src")

            # arrow keys on the slider's handle: each press is one step; stop at the next patch size that divides
            key, direction = ("ArrowLeft", -1) if start > 1 else ("ArrowRight", 1)
            handle = slider.locator(".noUi-handle")
            handle.focus()
            patch_size = start
            for _ in range(image_size):
                handle.press(key)
                patch_size += direction
                expect(readout).to_have_text(str(patch_size))
                if image_size % patch_size == 0:
                    break
                expect(explorer.locator(".vitsteps-message")).to_contain_text(
                    f"patch_size={patch_size} does not divide the image height {image_size}")
            assert image_size % patch_size == 0 and patch_size != start
            expected = dict(patch_pipeline_shapes(image_size, patch_size, in_chans, model_dim))
            for step in ("unfold", "transpose", "matmul", "kernel", "conv", "reshape", "transpose to tokens"):
                expect(_shape_cell(explorer, step)).to_have_text(str(list(expected[step])))
            expect(explorer.locator(".vitsteps-message")).to_contain_text("unfold @ weight equals conv: True")
            expect(figure).not_to_have_attribute("src", first_picture)  # the picture was redrawn too
            page.locator(".jp-StatusBar-Widget").get_by_text(re.compile(r"\|\s*Idle")).first.wait_for()

            screenshot = os.environ.get("VITSTEPS_SCREENSHOT")
            if screenshot:  # the README's picture: the explorer's cell at the top of JupyterLab, no side panel
                page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current").click()
                page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current").wait_for(state="detached")
                cell = page.locator(".jp-Cell", has=explorer).first
                cell.evaluate("cell => cell.scrollIntoView({block: 'start'})")
                box, viewport = cell.bounding_box(), page.viewport_size
                bottom = min(viewport["height"], box["y"] + box["height"] + 12)
                page.screenshot(path=screenshot, clip={"x": 0, "y": 0, "width": viewport["width"], "height": bottom})
        finally:
            browser.close()
