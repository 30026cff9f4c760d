"""`vlmt serve` on a network: each finding of the review that put it there has a test here that
fails without its fix (the page's upload route, the format allow-list, unbounded text caches,
server paths in answers, galleries outside the operator's folders, no key, no timeout, no
readiness, no metrics, Gradio's own endpoints), plus what was added with them."""

from __future__ import annotations

import io
import json
import logging
import os
import random
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the serving extra (pip install 'vlmt[serve]') is not installed")
from starlette.testclient import TestClient  # noqa: E402

from vlmt.cli import main  # noqa: E402
from vlmt.serve.app import create_app, is_loopback  # noqa: E402
from vlmt.serve.inputs import InputError, Limits, decode_image  # noqa: E402
from vlmt.serve.middleware import Loading  # noqa: E402
from vlmt.serve.models import load_models  # noqa: E402

LIMITS = Limits(max_upload_bytes=2_000_000, max_pixels=4_000_000, max_side=4_000, max_text_chars=200)
KEY = "correct-horse-battery"
QUESTION = {"question": "what color is the square?"}


@pytest.fixture(scope="module")
def served(model_dirs):
    return load_models([model_dirs["tiny"], model_dirs["svlr"]], log=lambda _: None)


@pytest.fixture(scope="module")
def client(served) -> TestClient:
    return TestClient(create_app(served, limits=LIMITS, page=False))


def encoded(fmt: str, *, frames: int = 1, mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    images = [Image.new(mode, (40, 30), (200, 30 + 100 * i, 30)) for i in range(frames)]
    images[0].save(out, format=fmt, **({"save_all": True, "append_images": images[1:]} if frames > 1 else {}))
    return out.getvalue()


# -- pictures: an allow-list of formats, decoded within limits --------------------------------------


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP"])
def test_the_served_formats_decode(fmt):
    assert decode_image(encoded(fmt), LIMITS).shape == (30, 40, 3)


def test_a_gif_is_read_at_its_first_frame():
    pixels = decode_image(encoded("GIF", frames=3), LIMITS)
    assert pixels.shape == (30, 40, 3) and abs(int(pixels[0, 0, 1]) - 30) < 8  # frame 0's green, not frame 2's


@pytest.mark.parametrize("fmt", ["TIFF", "ICO", "PPM", "TGA"])
def test_formats_pillow_reads_but_the_server_does_not_serve_are_415(client, picture, fmt):
    with pytest.raises(InputError) as refused:
        decode_image(encoded(fmt), LIMITS)
    assert refused.value.status == 415 and "PNG, JPEG, WebP, BMP or GIF" in str(refused.value)
    got = client.post("/api/answer", files={"image": ("x.img", encoded(fmt), "image/png")}, data=QUESTION)
    assert got.status_code == 415 and set(got.json()) == {"error"}


def test_an_eps_upload_is_refused_before_pillow_tries_it(client):
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n%%EOF\n"
    got = client.post("/api/answer", files={"image": ("x.eps", eps, "image/png")}, data=QUESTION)
    assert got.status_code == 415, got.text  # not "damaged or truncated": Ghostscript is never reached


def test_pillow_refuses_a_huge_picture_when_opened_anywhere_in_the_server(served):
    create_app(served, limits=LIMITS, page=False)
    assert Image.MAX_IMAGE_PIXELS == LIMITS.max_pixels  # Pillow's default is 89 MP (refusing at 179 MP)


# -- memory: caches keyed by client text are bounded -------------------------------------------------


def test_the_word_vector_cache_is_bounded():
    from vlmt.data.text.cache import TEXT_CACHE_SIZE
    from vlmt.tasks.svlr_text import WordTable

    table = WordTable({}, 8, source="test", coverage=None, fallback=True)
    first = table.vector("word0").copy()
    for i in range(TEXT_CACHE_SIZE + 500):
        table.vector(f"word{i}")
    assert len(table._cache) == TEXT_CACHE_SIZE
    assert np.array_equal(table.vector("word0"), first)  # evicted, computed again the same


def test_the_question_tagger_cache_is_bounded(model_dirs):
    import vlmt
    from vlmt.data.text.cache import TEXT_CACHE_SIZE

    text = vlmt.load(model_dirs["svlr"]).tasks["vqa"].assets.reader()  # the text reader `choose` uses
    assert text._tag.cache_info().maxsize == TEXT_CACHE_SIZE
    rng = random.Random(0)
    for i in range(TEXT_CACHE_SIZE + 200):
        text.tag(f"is the {rng.choice(['red', 'blue'])} thing {i} a square")
    assert text._tag.cache_info().currsize == TEXT_CACHE_SIZE


def test_the_lru_cache_drops_the_least_recently_used():
    from vlmt.data.text.cache import LRUCache

    cache: LRUCache[str, int] = LRUCache(2)
    cache["a"], cache["b"] = 1, 2
    assert cache.get("a") == 1  # a is now the most recent
    cache["c"] = 3
    assert cache.get("b") is None and cache.get("a") == 1 and cache.get("c") == 3 and len(cache) == 2


# -- exposure: no server paths, galleries only from the operator's folders ---------------------------


def test_health_says_no_path_of_the_server(client, model_dirs):
    health = client.get("/api/health")
    text = health.text
    assert health.status_code == 200
    assert str(model_dirs["tiny"].parent) not in text and os.path.expanduser("~") not in text
    assert health.json()["models"]["tiny"]["gallery_source"].startswith("world:tiny")
    assert not any(v.startswith("/") for m in health.json()["models"].values() for v in map(str, m.values()))


def test_health_has_the_version_and_the_checksums_of_the_weights(client, model_dirs):
    from vlmt.training.checkpoint import sha256

    health = client.get("/api/health").json()
    assert health["version"] and health["version"] != "unknown"
    assert health["models"]["tiny"]["sha256"] == sha256(model_dirs["tiny"] / "model.safetensors")


def test_a_model_folder_cannot_point_the_gallery_outside_the_gallery_roots(model_dirs, tmp_path):
    from vlmt.data.datasets import source_folder

    data = json.loads((model_dirs["tiny"] / "config.json").read_text())["experiment"]["data"]
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(source_folder(data["root"]), elsewhere)  # pictures outside vlmt's cache
    model = tmp_path / "pointed"
    shutil.copytree(model_dirs["tiny"], model)
    config = json.loads((model / "config.json").read_text())
    config["experiment"]["data"]["root"] = str(elsewhere)
    (model / "config.json").write_text(json.dumps(config))
    refused = load_models([model], log=lambda _: None)["pointed"]
    assert len(refused.gallery) == 0 and "outside the gallery roots" in refused.gallery.source
    assert str(elsewhere) not in refused.describe()["gallery_source"]
    allowed = load_models([model], gallery_roots=[elsewhere], log=lambda _: None)["pointed"]
    assert len(allowed.gallery) > 0 and allowed.describe()["gallery_source"] == "elsewhere"
    assert all(im.path.resolve().is_relative_to(elsewhere.resolve()) for im in allowed.gallery.images)


# -- access: an API key, and no open server beyond loopback without one -------------------------------


def test_with_a_key_the_api_needs_it_and_the_probes_do_not(served, picture):
    client = TestClient(create_app(served, limits=LIMITS, page=False, api_key=KEY))
    image = {"image": ("x.png", picture, "image/png")}
    for headers in ({}, {"Authorization": "Bearer wrong-key-here"}, {"Authorization": KEY}):
        refused = client.post("/api/answer", files=image, data=QUESTION, headers=headers)
        assert refused.status_code == 401 and "Authorization: Bearer" in refused.json()["error"]
    assert client.get("/metrics").status_code == 401
    assert client.get("/api/openapi.json").status_code == 401
    assert client.get("/api/health").status_code == 200 and client.get("/api/ready").status_code == 200
    auth = {"Authorization": f"Bearer {KEY}"}
    assert client.post("/api/answer", files=image, data=QUESTION, headers=auth).status_code == 200
    assert client.get("/metrics", headers=auth).status_code == 200


def test_with_a_key_the_page_asks_for_it(served, picture):
    pytest.importorskip("gradio")
    with TestClient(create_app(served, limits=LIMITS, api_key=KEY)) as client:
        upload = client.post("/gradio_api/upload", files={"files": ("x.png", picture, "image/png")})
        assert upload.status_code == 401
        assert client.post("/login", data={"username": "me", "password": "wrong"}).status_code == 400
        assert client.post("/login", data={"username": "me", "password": KEY}).status_code == 200
        assert client.post("/gradio_api/upload", files={"files": ("x.png", picture, "image/png")}).status_code == 200


def test_serving_beyond_loopback_without_a_key_is_refused(model_dirs, capsys, monkeypatch):
    monkeypatch.delenv("VLMT_API_KEY", raising=False)
    assert main(["serve", str(model_dirs["tiny"]), "--host", "0.0.0.0", "--no-page"]) == 1
    err = capsys.readouterr().err
    assert "without an API key" in err and "--insecure" in err and "Traceback" not in err
    assert main(["serve", str(model_dirs["tiny"]), "--api-key", "short"]) == 1
    assert "8 characters" in capsys.readouterr().err
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("lab-server")


def test_cuda_is_refused_in_words_where_torch_sees_none(model_dirs, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["serve", str(model_dirs["tiny"]), "--device", "cuda", "--no-page"]) == 1
    assert "no CUDA device" in capsys.readouterr().err


# -- operable: timeout, readiness, metrics, access log -----------------------------------------------


def test_a_model_call_past_the_timeout_is_a_504_json_error(served, picture):
    slow = TestClient(create_app(served, limits=LIMITS, page=False, timeout=1e-4))
    got = slow.post("/api/answer", files={"image": ("x.png", picture, "image/png")}, data=QUESTION)
    assert got.status_code == 504 and "did not answer within" in got.json()["error"]
    assert slow.get("/api/health").json()["waiting"] == 0


def test_ready_is_503_until_the_models_are_loaded_while_health_answers(served, picture):
    release = threading.Event()

    def build():
        release.wait(30)
        return create_app(served, limits=LIMITS, page=False)

    with TestClient(Loading(build, version="test", on_error=lambda e: None)) as client:
        assert client.get("/api/ready").status_code == 503
        health = client.get("/api/health")
        assert health.status_code == 200 and health.json()["status"] == "loading"
        early = client.post("/api/answer", files={"image": ("x.png", picture, "image/png")}, data=QUESTION)
        assert early.status_code == 503 and "loading" in early.json()["error"]
        release.set()
        deadline = time.time() + 30
        while client.get("/api/ready").status_code != 200:
            assert time.time() < deadline, "never ready"
            time.sleep(0.05)
        assert client.get("/api/ready").json()["models"] == ["tiny", "svlr"]
        assert client.post("/api/answer", files={"image": ("x.png", picture, "image/png")},
                           data=QUESTION).status_code == 200


def test_a_failed_load_is_said_on_health_and_ready_stays_503():
    def build():
        raise RuntimeError("weights damaged")  # a real error may name a folder of the server

    seen: list[BaseException] = []
    with TestClient(Loading(build, version="test", on_error=seen.append)) as client:
        deadline = time.time() + 10
        while not seen:
            assert time.time() < deadline
            time.sleep(0.02)
        health = client.get("/api/health").json()
        assert health["status"] == "failed" and health["ready"] is False
        assert "RuntimeError" in health["error"] and "weights damaged" not in health["error"]  # the log has it
        assert str(seen[0]) == "weights damaged"
        assert client.get("/api/ready").status_code == 503


def test_metrics_count_requests_latency_errors_and_the_queue(served, picture):
    client = TestClient(create_app(served, limits=LIMITS, page=False))
    client.post("/api/answer", files={"image": ("x.png", picture, "image/png")}, data=QUESTION)
    client.post("/api/answer", data=QUESTION)  # no picture: 400
    for i in range(5):
        client.get(f"/api/made-up-{i}")  # 404s, one label for all
    text = client.get("/metrics").text
    assert 'vlmt_requests_total{method="POST",route="/api/answer",status="200"} 1.0' in text
    assert 'vlmt_errors_total{route="/api/answer",status="400"} 1.0' in text
    assert 'vlmt_errors_total{route="/api/other",status="404"} 5.0' in text
    assert 'vlmt_request_seconds_bucket{le="+Inf",route="/api/answer"} 2.0' in text
    assert "vlmt_queue_depth 0.0" in text and "made-up" not in text


def test_every_request_has_a_structured_access_log_line(client, caplog):
    with caplog.at_level(logging.INFO, logger="vlmt.access"):
        client.get("/api/health")
        client.get("/api/nothing")
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "vlmt.access"]
    assert [(line["method"], line["path"], line["status"]) for line in lines] == [
        ("GET", "/api/health", 200), ("GET", "/api/nothing", 404)]
    assert all(line["ms"] >= 0 and line["client"] for line in lines)


# -- the page: its upload route, and no second API --------------------------------------------------


@pytest.fixture(scope="module")
def page_client(served):
    pytest.importorskip("gradio")
    with TestClient(create_app(served, limits=LIMITS)) as client:
        yield client


def stored_files() -> list[Path]:
    return [p for p in Path(os.environ["GRADIO_TEMP_DIR"]).rglob("*") if p.is_file()]


def test_the_page_upload_route_refuses_what_is_not_a_served_picture(page_client, picture):
    before = stored_files()
    for name, body, status in (("notes.png", os.urandom(1_000_000), 415), ("x.tiff", encoded("TIFF"), 415),
                               ("big.png", b"\0" * 2_200_000, 413)):
        got = page_client.post("/gradio_api/upload", files={"files": (name, body, "image/png")})
        assert got.status_code == status, (name, got.text)
        assert set(got.json()) == {"error"}
    assert stored_files() == before  # nothing of them was written
    ok = page_client.post("/gradio_api/upload", files={"files": ("x.png", picture, "image/png")})
    assert ok.status_code == 200 and len(ok.json()) == 1


def test_the_page_upload_route_is_bounded_by_the_body_limit(page_client):
    got = page_client.post("/gradio_api/upload", content=b"-" * 3_000_000,
                           headers={"content-type": "multipart/form-data; boundary=x"})
    assert got.status_code == 413 and "bytes" in got.json()["error"]


def test_the_page_is_no_second_api(page_client, served):
    info = page_client.get("/gradio_api/info").json()
    assert info["named_endpoints"] == {} and info["unnamed_endpoints"] == {}
    caller = TestClient(page_client.app, raise_server_exceptions=False)
    called = caller.post("/gradio_api/run/on_ask", json={"data": ["tiny", None, None, "what?", 3]})
    assert called.status_code >= 400  # Gradio cannot find it by name: only the page's own events run it
    config = page_client.get("/config").json()
    assert config["footer_links"] == []
    assert any("/api/docs" in str(c.get("props", {}).get("value", "")) and c.get("props", {}).get("elem_id") == "footer"
               for c in config["components"])
