"""The web page in a real browser: Debian's chromium driven by Playwright for Python (never Playwright's own browser
download), against a real `emotune serve` on loopback. Skips, saying why, without chromium or playwright."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("EMOTUNE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
SHOTS = Path(os.environ.get("EMOTUNE_SCREENSHOTS", Path(__file__).resolve().parents[1] / "runs" / "screenshots"))

pytest.importorskip("fastapi", reason="emotune serve needs the serve extra (pip install 'emotune[serve]')")
sync_api = pytest.importorskip("playwright.sync_api", reason="the browser test needs `pip install playwright` (the python package)")
if not Path(CHROMIUM).is_file():
    pytest.skip(f"no chromium at {CHROMIUM} (apt-get install chromium; CI installs it)", allow_module_level=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    port = _free_port()
    src = Path(__file__).resolve().parents[1] / "src"
    env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen([sys.executable, "-m", "emotune.cli", "serve", "--port", str(port), "--log-level", "warning"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"emotune serve exited: {proc.stdout.read()}")
            try:
                with urllib.request.urlopen(url + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                if time.time() > deadline:
                    pytest.fail("emotune serve did not answer /health within 120 s")
                time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    with sync_api.sync_playwright() as pw:
        profile = tmp_path_factory.mktemp("chromium-profile")  # a fresh profile: nothing from earlier runs
        # Playwright sets --user-data-dir itself from the persistent context's folder
        ctx = pw.chromium.launch_persistent_context(str(profile), executable_path=CHROMIUM, headless=True,
                                                    args=[*FLAGS, "--use-fake-device-for-media-stream",
                                                          "--use-fake-ui-for-media-stream"],
                                                    viewport={"width": 1200, "height": 1100})
        try:
            yield ctx.pages[0] if ctx.pages else ctx.new_page()
        finally:
            ctx.close()


def _photo() -> str:
    import matplotlib.cbook as cbook

    return cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)


def test_upload_draws_boxes_bars_and_table(server, page):
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    external: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(server) or r.url.startswith("data:") else external.append(r.url))
    page.goto(server + "/")
    page.wait_for_function("document.querySelectorAll('#detector option').length > 0")  # /v1/models answered
    page.set_input_files("#file", _photo())
    page.wait_for_selector("body[data-state=done]", timeout=60_000)
    result = page.evaluate("window.emotuneLast")
    (face,) = result["faces"]
    rows = page.locator("#faces tbody tr.face")
    assert rows.count() == 1
    assert rows.first.locator("td.label").inner_text().strip() == face["label"]
    assert rows.first.locator(".bar").count() == len(face["probs"])
    # the canvas shows the photo at full size with the box stroked in the label's colour
    drawn = page.evaluate("""(b) => {
        const c = document.getElementById('canvas'), g = c.getContext('2d');
        const px = (x, y) => Array.from(g.getImageData(Math.round(x), Math.round(y), 1, 1).data.slice(0, 3));
        return {w: c.width, h: c.height, left: px(b.x, b.y + b.h / 2), right: px(b.x + b.w, b.y + b.h / 2),
                inside: px(b.x + b.w / 2, b.y + b.h / 2)};
    }""", face["box"])
    assert (drawn["w"], drawn["h"]) == (512, 600)
    labels = list(face["probs"])  # the model's label order
    colors = [[230, 60, 60], [150, 90, 200], [120, 120, 120], [255, 200, 0], [80, 200, 120], [60, 120, 230], [255, 120, 20]]
    want = colors[labels.index(face["label"]) % len(colors)]
    for side in ("left", "right"):
        assert max(abs(a - b) for a, b in zip(drawn[side], want)) <= 40, (side, drawn[side], want)
    assert drawn["inside"] != want  # the photo, not a filled rectangle
    assert f"{len(result['faces'])} face(s)" in page.inner_text("#status")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "serve_page.png"), full_page=True)
    assert (SHOTS / "serve_page.png").stat().st_size > 10_000
    assert not errors and not external, (errors, external)


def test_bad_file_shows_the_servers_error(server, page, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    page.goto(server + "/")
    page.set_input_files("#file", str(bad))
    page.wait_for_selector("body[data-state=error]", timeout=30_000)
    assert "truncated" in page.inner_text("#status") and "broken.jpg" in page.inner_text("#status")


def test_webcam_frame(server, page):
    """Chromium's fake camera (a test pattern, no face): the page captures a frame and gets an answer."""
    page.goto(server + "/")
    page.click("#webcam")
    page.wait_for_function("!document.getElementById('snap').disabled", timeout=20_000)
    page.click("#snap")
    page.wait_for_selector("body[data-state=done]", timeout=60_000)
    result = page.evaluate("window.emotuneLast")
    assert result["image"]["width"] > 0 and isinstance(result["faces"], list)
    assert page.locator("#faces tbody tr").count() >= 1
