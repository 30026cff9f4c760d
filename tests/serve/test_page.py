"""The page's own events: a model call past the server's timeout shows the API's 504 message and
frees the page (as the API answers 504), and an answer's warnings show under it."""

from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("gradio", reason="the serving extra (pip install 'vlmt[serve]') is not installed")

from vlmt.serve.inputs import InputError, Limits  # noqa: E402
from vlmt.serve.models import load_models  # noqa: E402
from vlmt.serve.page import build_page, within  # noqa: E402

QUESTION = "what color is the zorblax?"


@pytest.fixture(scope="module")
def served(model_dirs):
    return load_models([model_dirs["tiny"], model_dirs["svlr"]], log=lambda _: None)


def events(served, timeout: float | None) -> dict:
    """The page's event handlers by name, as Gradio calls them."""
    page = build_page(served, limits=Limits(), timeout=timeout)
    return {f.fn.event: f.fn for f in page.fns.values() if hasattr(f.fn, "event")}


def test_a_page_call_past_the_timeout_shows_the_504_message_and_returns(served):
    pixels = served["tiny"].gallery_pixels(0)
    ask = events(served, 1e-4)["on_ask"]
    start = time.perf_counter()
    label, attention, words, warnings, message = ask("tiny", pixels, None, QUESTION, 3)
    assert time.perf_counter() - start < 5  # the handler returns; the late call finishes in the background
    assert label is None and attention is None and words is None and warnings is None
    assert "did not answer within 0.0001 s" in message
    choose = events(served, 1e-4)["on_choose"]
    assert "did not answer within" in choose("svlr", pixels, None, "what color?", "red, blue", False)[-1]


def test_within_the_timeout_the_page_answers_and_shows_the_warnings(served):
    pixels = served["tiny"].gallery_pixels(0)
    label, attention, words, warnings, message = events(served, 60.0)["on_ask"]("tiny", pixels, None, QUESTION, 3)
    assert message == "" and len(label) == 3 and attention.shape[2] == 3
    assert warnings.startswith("**Read with care:**") and "zorblax" in warnings
    plain = events(served, 60.0)["on_ask"]("tiny", pixels, None, "what color is the square?", 3)
    assert "zorblax" not in plain[3]
    wide = np.ascontiguousarray(np.tile(pixels, (1, 4, 1)))  # 128 x 512: far from the training pictures' shape
    _, _, _, far, _ = events(served, None)["on_ask"]("tiny", wide, None, "what color is the square?", 3)
    expected = served["tiny"].model.details("answer", wide, "what color is the square?")["warnings"]
    assert any("512 x 128" in w for w in expected)
    assert far == "**Read with care:** " + "; ".join(expected).replace("<unk>", "&lt;unk&gt;")


def test_within_runs_the_call_and_hands_back_its_result_or_error():
    assert within(5.0, lambda a, b: a + b, 2, 3) == 5
    with pytest.raises(ValueError, match="boom"):
        within(5.0, lambda: (_ for _ in ()).throw(ValueError("boom")))
    with pytest.raises(InputError) as late:
        within(0.05, time.sleep, 2.0)
    assert late.value.status == 504


def test_an_upload_to_a_model_trained_on_stored_features_is_refused_in_words(served, tmp_path):
    import shutil

    from vlmt.cli import main
    from vlmt.data.datasets.sources import resolve_source

    stored = tmp_path / "stored"  # the tiny world with features from its store alone (as converted bottom-up ones)
    shutil.copytree(resolve_source("world:tiny"), stored, ignore=shutil.ignore_patterns("region_extractor", "images"))
    assert main(["train", "tiny", "--out", str(tmp_path / "run"), "--set", f"data.root={stored}",
                 "--set", "train.max_iters=10", "--set", "train.progress=false"]) == 0
    both = {**load_models([tmp_path / "run"], log=lambda _: None), **served}
    ask = events(both, 60.0)["on_ask"]
    message = ask("run", served["tiny"].gallery_pixels(0), None, "what color is the square?", 3)[-1]
    assert "precomputed region features" in message and "store_id" in message and str(tmp_path) not in message
