"""`vlmt serve` as a user runs it: a real server process, the page in headless Chromium (Debian's
`chromium`, driven by Playwright), and eight clients at once on the JSON API."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

pytest.importorskip("gradio", reason="the serving extra (pip install 'vlmt[serve]') is not installed")
import httpx  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


KEY = "correct-horse-battery"


@contextmanager
def running(models: list[Path], folder: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """`vlmt serve MODELS` in a process of its own, once it says it is ready; its log in `folder`."""
    port = free_port()
    log = folder / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "vlmt", "serve", *map(str, models), "--port", str(port),
                                 "--workers", "2"], stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                if httpx.get(f"{url}/api/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise AssertionError(f"the server did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # never leave a server behind; the test still fails
            proc.kill()
            proc.wait()
            raise


@pytest.fixture(scope="module")
def server(model_dirs, tmp_path_factory) -> Iterator[str]:
    with running([model_dirs["tiny"], model_dirs["svlr"]], tmp_path_factory.mktemp("server")) as url:
        yield url


def test_eight_concurrent_clients_all_get_answers(server, picture):
    def ask(i: int) -> list[str]:
        got = httpx.post(f"{server}/api/answer", files={"image": ("x.png", picture, "image/png")},
                         data={"question": "what color is the square?", "top_k": "3"}, timeout=120)
        assert got.status_code == 200, got.text
        return [a["answer"] for a in got.json()["answers"]]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(ask, range(24)))
    # exact: every request is a batch of one with the same shapes, so the same kernels, in one server process
    assert all(r == results[0] for r in results)  # the same answers, whatever ran beside them
    assert httpx.get(f"{server}/api/health").json()["waiting"] == 0


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium here (apt-get install chromium; .ci/run installs it)")
def test_the_page_answers_a_question_about_an_uploaded_picture(server, picture, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    image = tmp_path / "picture.png"
    image.write_bytes(picture)
    shots = Path(os.environ.get("VLMT_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(server + "/", wait_until="load", timeout=60_000)
            page.wait_for_selector("#ask", timeout=60_000)  # a page with state keeps a heartbeat: no network idle
            assert "vlmt" in page.title() or page.locator("h1", has_text="vlmt").count() == 1
            page.set_input_files("#picture input[type=file]", str(image))
            page.wait_for_function("document.querySelector('#message').innerText.includes('Picture received')",
                                   timeout=60_000)
            page.locator("#question textarea, #question input").first.fill("what color is the square?")
            page.click("#ask")
            page.wait_for_function("document.querySelector('#answers').innerText.includes('%')", timeout=60_000)
            page.wait_for_selector("#attention img", timeout=60_000)
            answers = page.inner_text("#answers")
            assert page.locator("#attention img").first.evaluate("img => img.naturalWidth") >= 128
            page.screenshot(path=str(shots / "serve_answer.png"), full_page=True)
            # a bad input shows the API's message on the page
            page.locator("#question textarea, #question input").first.fill("   ")
            page.click("#ask")
            page.wait_for_function("document.querySelector('#message').innerText"
                                   ".includes('question: empty; type some words')", timeout=30_000)
            page.screenshot(path=str(shots / "serve_error.png"), full_page=True)
        finally:
            browser.close()
    expected = httpx.post(f"{server}/api/answer", files={"image": ("x.png", picture, "image/png")},
                          data={"question": "what color is the square?", "top_k": "5"}).json()["answers"][0]["answer"]
    assert expected in answers
    assert (shots / "serve_answer.png").stat().st_size > 20_000


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium here (apt-get install chromium; .ci/run installs it)")
def test_the_page_shows_the_warnings_an_answer_carries(server, picture, tmp_path):
    """A question with a word the model never saw about a picture far from the training pictures'
    shape: the page shows both warnings under the answers, as the API's answer lists them."""
    import io

    import numpy as np
    from PIL import Image

    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    pixels = np.asarray(Image.open(io.BytesIO(picture)).convert("RGB"))
    image = tmp_path / "wide.png"
    Image.fromarray(np.ascontiguousarray(np.tile(pixels, (1, 3, 1)))).save(image)  # 384 x 128
    shots = Path(os.environ.get("VLMT_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    question = "what color is the zorblax?"
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(server + "/", wait_until="load", timeout=60_000)
            page.wait_for_selector("#ask", timeout=60_000)
            page.set_input_files("#picture input[type=file]", str(image))
            page.wait_for_function("document.querySelector('#message').innerText.includes('Picture received')",
                                   timeout=60_000)
            page.locator("#question textarea, #question input").first.fill(question)
            page.click("#ask")
            page.wait_for_function("document.querySelector('#answer-warnings').innerText.includes('zorblax')",
                                   timeout=60_000)
            shown = page.inner_text("#answer-warnings")
            page.screenshot(path=str(shots / "serve_warnings.png"), full_page=True)
        finally:
            browser.close()
    api = httpx.post(f"{server}/api/answer", files={"image": ("wide.png", image.read_bytes(), "image/png")},
                     data={"question": question}).json()["warnings"]
    assert len(api) >= 2 and any("384 x 128" in w for w in api)
    assert "Read with care" in shown and all(w.split(" (")[0] in shown for w in api)


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium here (apt-get install chromium; .ci/run installs it)")
def test_with_a_key_the_page_logs_in_answers_and_keeps_no_upload(model_dirs, picture, tmp_path):
    """The page behind an API key: a visitor with the key logs in, uploads, asks and sees the
    answers (the upload's file is gone once decoded); one without it gets neither the page's
    upload route nor the API."""
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    image = tmp_path / "picture.png"
    image.write_bytes(picture)
    env = {"VLMT_API_KEY": KEY, "GRADIO_TEMP_DIR": str(uploads)}
    with running([model_dirs["tiny"]], tmp_path, env) as url, playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            stranger = browser.new_page()
            stranger.goto(url + "/", wait_until="load", timeout=60_000)
            stranger.wait_for_selector("input[type=password]", timeout=60_000)
            assert stranger.locator("#ask").count() == 0
            refused = stranger.request.post(url + "/gradio_api/upload", multipart={
                "files": {"name": "x.png", "mimeType": "image/png", "buffer": picture}})
            assert refused.status == 401
            wrong = stranger.request.post(url + "/api/answer", multipart={
                "image": {"name": "x.png", "mimeType": "image/png", "buffer": picture}, "question": "what?"},
                headers={"Authorization": "Bearer not-the-key"})
            assert wrong.status == 401 and "Bearer" in wrong.json()["error"]

            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(url + "/", wait_until="load", timeout=60_000)
            page.fill("input[type=text]", "lab")
            page.fill("input[type=password]", KEY)
            page.click("button:has-text('Login')")
            page.wait_for_selector("#ask", timeout=60_000)
            page.set_input_files("#picture input[type=file]", str(image))
            page.wait_for_function("document.querySelector('#message').innerText.includes('Picture received')",
                                   timeout=60_000)
            page.locator("#question textarea, #question input").first.fill("what color is the square?")
            page.click("#ask")
            page.wait_for_function("document.querySelector('#answers').innerText.includes('%')", timeout=60_000)
            answers = page.inner_text("#answers")
            assert "/api/docs" in page.inner_text("#footer")
        finally:
            browser.close()
        expected = httpx.post(f"{url}/api/answer", files={"image": ("x.png", picture, "image/png")},
                              data={"question": "what color is the square?"},
                              headers={"Authorization": f"Bearer {KEY}"}).json()["answers"][0]["answer"]
    assert expected in answers
    assert not [f for f in uploads.rglob("*.png") if f.read_bytes() == picture]  # the upload was deleted
