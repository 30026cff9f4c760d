"""Report building blocks: tables, Markdown / HTML pages, training curves from metrics.jsonl."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from PIL import Image

from vlmt.errors import DataError
from vlmt.reports import report as R


def test_markdown_table_formats_numbers_and_aligns_numeric_columns():
    text = R.markdown_table(["task", "R@1", "note"], [["i2t", 12.345, None], ["t2i", 7, "a|b"]])
    lines = text.splitlines()
    assert lines[0] == "| task | R@1 | note |"
    assert lines[1] == "|---|---:|---|"
    assert lines[2] == "| i2t | 12.3 | — |"
    assert lines[3] == "| t2i | 7 | a\\|b |"
    with pytest.raises(ValueError, match="row 0 has 1 cells for 2 headers"):
        R.markdown_table(["a", "b"], [[1]])


def _png(path, colour=(255, 0, 0)):
    Image.new("RGB", (4, 3), colour).save(path)
    return path


def test_report_writes_markdown_with_links_and_html_with_embedded_pictures(tmp_path):
    (tmp_path / "pics").mkdir()
    pic = _png(tmp_path / "pics" / "curve.png")
    blocks = [R.Heading("Results"), R.Paragraph("numbers are `percent`"),
              R.Table(["metric", "value"], [["accuracy", 55.0]], caption="VQA"),
              R.Figure(pic, "training curves")]
    md, page = R.write_report(tmp_path, blocks, title="demo report")
    text = md.read_text()
    assert text.startswith("# demo report\n")
    assert "![training curves](pics/curve.png)" in text
    assert "| accuracy | 55.0 |" in text
    html = page.read_text()
    encoded = base64.b64encode(pic.read_bytes()).decode()
    assert f"data:image/png;base64,{encoded}" in html
    assert "<code>percent</code>" in html and "<td class='n'>55.0</td>" in html
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pics", "report.html", "report.md"]


def test_html_can_link_pictures_instead(tmp_path):
    pic = _png(tmp_path / "p.png")
    _, page = R.write_report(tmp_path, [R.Figure(pic)], title="t", embed=False)
    assert "src='p.png'" in page.read_text()


def write_metrics(run, records):
    run.mkdir(parents=True, exist_ok=True)
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_curve_panels_pick_task_losses_and_validation_metrics(tmp_path):
    write_metrics(tmp_path, [
        {"step": 10, "split": "train", "lr": 1e-3, "vqa/loss": 2.0, "vqa/accuracy_batch": 0.1, "grounding/loss": 1.0},
        {"step": 20, "split": "train", "lr": 1e-3, "vqa/loss": 1.5, "grounding/loss": 0.8},
        {"step": 20, "split": "val", "vqa/accuracy": 30.0, "grounding/r1": 20.0, "vqa/qtype/how_many": 5.0,
         "vqa/atype/number": 3.0, "retrieval/seconds": 0.2, "retrieval/i2t_medr": 4.0, "retrieval/rsum": 300.0},
    ])
    panels = R.curve_panels(R.read_metrics(tmp_path))
    assert panels.losses == {"vqa/loss": ([10, 20], [2.0, 1.5]), "grounding/loss": ([10, 20], [1.0, 0.8])}
    assert panels.validation == {"vqa/accuracy": ([20], [30.0]), "grounding/r1": ([20], [20.0])}


def test_training_curves_png(tmp_path):
    records = [{"step": s, "split": "train", "a/loss": 1.0 / s, "b/loss": 2.0 / s} for s in range(1, 30)]
    records += [{"step": s, "split": "val", "a/acc": s / 30} for s in (10, 20, 29)]
    write_metrics(tmp_path / "run", records)
    path = R.training_curves(tmp_path / "run", tmp_path / "curves.png", title="run")
    with Image.open(path) as im:
        assert im.format == "PNG" and im.width > 500
        assert np.asarray(im.convert("L")).std() > 5  # something was drawn


def test_bad_metrics_file_names_file_and_line(tmp_path):
    with pytest.raises(DataError, match="no metrics file"):
        R.read_metrics(tmp_path)
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "split": "train"}\n{"split": "val"}\n')
    with pytest.raises(DataError, match=r"metrics.jsonl: record line 2: field 'step': missing"):
        R.read_metrics(tmp_path)
    (tmp_path / "metrics.jsonl").write_text("{oops\n")
    with pytest.raises(DataError, match="record line 1: not JSON"):
        R.read_metrics(tmp_path)
