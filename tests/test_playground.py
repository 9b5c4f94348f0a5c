"""End-to-end tests of the playground: Debian's chromium, driven by Playwright, against one in-process server.

One server and one browser for the module (small data, quick epochs); each test opens its own
page (its own session) and closes it. Every wait has a generous timeout and every failure says
what the page showed. With DEEPWELL_SCREENSHOT=path, the screenshot test also writes the README's picture.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("uvicorn")
playwright_api = pytest.importorskip("playwright.sync_api")

from deepwell.serve.app import Playground, create_app  # noqa: E402
from deepwell.serve.scenes import playground_spec  # noqa: E402

CHROMIUM = shutil.which("chromium")
pytestmark = [pytest.mark.skipif(CHROMIUM is None, reason="Debian package chromium not installed (make test installs it)"),
              pytest.mark.usefixtures("single_thread")]
WAIT = 90_000  # ms: generous, the machine may be loaded; nothing here sleeps to synchronise


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import uvicorn

    root = tmp_path_factory.mktemp("playground")
    (root / "data").mkdir()
    playground = Playground(playground_spec(None, ("data.source=moons:n=400",)), root / "data", root / "runs", max_sessions=4)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(playground), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started and time.monotonic() < deadline and thread.is_alive():
        time.sleep(0.05)  # waiting for the server to listen (not synchronising the test's logic)
    assert server.started, "the playground server did not start"
    yield f"http://127.0.0.1:{port}/", playground
    server.should_exit = True
    thread.join(30)


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield launched
        launched.close()


@pytest.fixture
def open_page(server, browser):
    """open_page(query="") -> a loaded page whose session has sent its first frame; pages close after the test."""
    pages = []

    def open_(query: str = ""):
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.errors = errors
        page.goto(server[0] + query)
        page.wait_for_function("window.__dw && window.__dw.frames > 0", timeout=WAIT)
        pages.append(page)
        return page

    yield open_
    for page in pages:
        assert not page.errors, f"JavaScript errors on the page: {page.errors}"
        page.close()


def _dw(page, expression: str):
    return page.evaluate(f"() => {{ const s = window.__dw; return {expression}; }}")


def _wait(page, condition: str, what: str, shown: str = "document.getElementById('status').textContent") -> None:
    """Wait for a JavaScript condition on window.__dw (as s); on timeout, fail saying what the page showed."""
    try:
        page.wait_for_function(f"() => {{ const s = window.__dw; return {condition}; }}", timeout=WAIT)
    except playwright_api.TimeoutError:
        pytest.fail(f"waited for {what}; the page showed: {page.evaluate('() => ' + shown)!r}, "
                    f"epoch {_dw(page, 's.frame && s.frame.epoch')}")


def test_play_makes_the_loss_fall_and_the_boundary_change(open_page) -> None:
    page = open_page()
    before = _dw(page, "Array.from(s.frame.view.conf)")
    page.click("#play")
    _wait(page, "s.rows.length >= 15", "15 epochs after pressing play")
    page.click("#play")  # pause
    rows = _dw(page, "s.rows")
    first, last = rows[0]["train/loss"], rows[-1]["train/loss"]
    assert last < 0.7 * first, f"the training loss went {first:.4f} -> {last:.4f} over {len(rows)} epochs"
    after = _dw(page, "Array.from(s.frame.view.conf)")
    moved = sum(abs(a - b) for a, b in zip(before, after)) / len(after)
    assert moved > 10, f"the boundary's confidence moved only {moved:.2f}/255 per cell"
    # the page draws on its next animation frame: frames still in flight when pause was pressed land after it
    _wait(page, "document.getElementById('epoch').textContent === String(s.frame.epoch)", "the epoch shown to be the last frame's")
    red = _dw(page, "(() => { const c = document.getElementById('grad-histograms'), d = c.getContext('2d').getImageData(0, 0, c.width, "
                    "c.height).data; let n = 0; for (let i = 0; i < d.length; i += 4) n += d[i] > 180 && d[i + 1] < 100; return n; })()")
    assert red > 100 and len(_dw(page, "s.frame.grad_hist.counts")) == 2, f"gradient histograms: {red} red pixels drawn"


def test_vanishing_scene_finding_and_its_remedy(open_page) -> None:
    page = open_page()
    page.select_option("#scene", "vanishing")
    _wait(page, "document.querySelector('[data-rule=vanishing_gradient]') !== null", "the vanishing-gradient finding",
          "document.getElementById('findings').innerText")
    assert float(page.get_attribute("#gradflow", "data-ratio")) < 1e-2
    assert "vanishing" in page.inner_text("#caption").lower()
    page.locator("[data-rule=vanishing_gradient] button", has_text="activation=relu").first.click()
    _wait(page, "document.querySelector('[data-rule=vanishing_gradient]') === null && "
                "Number(document.getElementById('gradflow').dataset.ratio) > 0.1",
          "the gradients to recover after the remedy", "document.getElementById('gradflow').innerText")
    assert _dw(page, "s.spec.model.activation") == "relu" and _dw(page, "s.spec.model.init") == "he"


def test_a_bad_control_value_shows_the_did_you_mean_message(open_page) -> None:
    page = open_page()
    field = page.locator('input[data-key="model.activation"]')
    field.fill("sigmod")
    field.press("Enter")
    message = page.locator('[id="msg-model.activation"]')
    message.wait_for(state="visible", timeout=WAIT)
    page.wait_for_function("() => document.getElementById('msg-model.activation').textContent.length > 0", timeout=WAIT)
    assert "Did you mean 'sigmoid'?" in message.inner_text(), f"the message was {message.inner_text()!r}"
    assert _dw(page, "s.spec.model.activation") == "relu"  # nothing changed


def test_reload_from_the_copied_url_gives_the_same_spec(open_page) -> None:
    page = open_page()
    field = page.locator('input[data-key="train.lr"]')
    field.fill("0.05")
    field.press("Enter")
    page.wait_for_function("() => location.search.includes('train.lr=0.05')", timeout=WAIT)
    page.click("text=+ layer")
    page.wait_for_function("() => location.search.includes('model.hidden=%5B8%2C+8%2C+8%5D')", timeout=WAIT)
    spec = _dw(page, "s.spec")
    copy = open_page(page.url.split("/", 3)[3])
    assert _dw(copy, "s.spec") == spec


def test_save_run_writes_a_run_that_loads(open_page) -> None:
    from deepwell.run import Run

    page = open_page()
    page.click("#step")
    _wait(page, "s.frame.epoch === 1", "one epoch after pressing step")
    page.click("#save")
    page.wait_for_function("() => document.getElementById('status').dataset.saved", timeout=WAIT)
    run = Run.load(page.get_attribute("#status", "data-saved"))
    assert len(run.history) == 1 and run.spec.data.source.name == "moons"
    assert json.loads((run.path / "findings.json").read_text())["checked"]


def test_two_pages_train_independently(open_page) -> None:
    first, second = open_page(), open_page()
    field = first.locator('input[data-key="data.source"]')
    field.fill("circles:n=400")
    field.press("Enter")
    _wait(first, "s.data && s.data.dataset === 'circles'", "the circles data")
    first.click("#play")
    second.click("#play")
    _wait(first, "s.rows.length >= 3", "3 epochs on the first page")
    _wait(second, "s.rows.length >= 3", "3 epochs on the second page")
    first.click("#play")  # pause the first page only
    _wait(first, "s.held === true", "the first page to pause (its worker held)")
    paused_at = _dw(first, "s.frame.step")
    mark = _dw(second, "s.frame.epoch")
    _wait(second, f"s.frame.epoch >= {mark + 5}", "the second page to go on training")
    assert _dw(first, "s.frame.step") == paused_at, "the paused page kept training"
    assert _dw(first, "s.data.dataset") == "circles" and _dw(second, "s.data.dataset") == "moons"
    second.click("#play")


def test_a_bad_csv_upload_shows_the_readers_error(open_page) -> None:
    page = open_page()
    page.set_input_files("#upload-file", files=[{"name": "bad.csv", "mimeType": "text/csv", "buffer": b"a,b,target\n1,2,0\n3,1\n"}])
    message = page.locator("#msg-upload")
    page.wait_for_function("() => document.getElementById('msg-upload').textContent.includes('CSV')", timeout=WAIT)
    assert "rows of different lengths" in message.inner_text(), f"the message was {message.inner_text()!r}"


def test_screenshot_of_a_trained_page(open_page, tmp_path: Path) -> None:
    """The page after training draws (not blank); DEEPWELL_SCREENSHOT=docs/playground.png writes the README's picture."""
    import numpy as np
    from PIL import Image

    page = open_page()
    page.locator('input[data-key="data.source"]').fill("spirals:noise=0.1,classes=2")
    page.locator('input[data-key="data.source"]').press("Enter")
    _wait(page, "s.data && s.data.dataset === 'spirals'", "the spirals data")
    page.click("#play")
    _wait(page, "s.rows.length >= 45", "45 epochs on spirals")
    page.click("#play")
    page.hover("#network", position={"x": 215, "y": 40})  # the first hidden layer: its numbers in the tooltip
    path = Path(os.environ.get("DEEPWELL_SCREENSHOT") or tmp_path / "playground.png")
    page.screenshot(path=str(path), clip={"x": 0, "y": 0, "width": 1440, "height": 900})
    pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)
    assert pixels.std() > 20, "the screenshot is blank"
