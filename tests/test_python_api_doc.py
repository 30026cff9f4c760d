"""docs/python_api.md stays true: its Python examples run top to bottom, as written, in an empty
folder, and print what their comments say."""

from __future__ import annotations

import re
from pathlib import Path

import torch

DOC = Path(__file__).resolve().parent.parent / "docs" / "python_api.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_the_python_api_examples_run_as_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    torch.set_num_threads(1)
    blocks = python_blocks(DOC.read_text(encoding="utf-8"))
    assert len(blocks) == 5
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), namespace)  # noqa: S102  (the doc's own code)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "450 vqa/accuracy" and out[1] == "['grounding', 'retrieval', 'vqa']"
    assert "config.json" in out[2] and "model.safetensors" in out[2] and "README.md" in out[2]
    assert out[3] == "{'retrieval': 'retrieval', 'vqa': 'vqa', 'grounding': 'grounding'}"
    assert "(2, 2)" in out
    assert out.count("2") == 2  # the batches: two questions of one picture, one question of two pictures
    assert (tmp_path / "models" / "tiny" / "config.json").is_file() and (tmp_path / "runs" / "svlr").is_dir()
    top = namespace["svlr"].choose("square.png", "what color is the square?", namespace["choices"])
    assert sorted(c["answer"] for c in top) == sorted(namespace["choices"])
