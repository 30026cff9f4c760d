"""A trained model as a folder of its own (`vlmt export RUN --out DIR`).

The folder follows the Hugging Face layout (`config.json` + `model.safetensors`) and holds what the
model needs to read new inputs and nothing else:

    config.json            the model's type and constructor arguments, the data type, the experiment
                           that trained it (each task's section: its head's configuration), its test
                           metrics and where the weights come from
    model.safetensors      the encoder ("model.*") and the task heads ("tasks.<name>.*")
    vocab.json, answers.json, vl_assets.json              hierarchical models
    word_vectors.safetensors, hypernyms.json, svlr_assets.json   SVLR (only the collected words' rows)
    region_extractor/      the region CNN, when the model's features were computed from pixels
    README.md              the model card: what it was trained on, its test metrics, how to load it

`vlmt.load(DIR)` rebuilds it offline (`vlmt.inference.model`).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from vlmt.errors import ConfigError
from vlmt.io import write_json
from vlmt.tasks.capabilities import iter_capabilities
from vlmt.training import checkpoint as ckpt
from vlmt.training.build import MODEL_FOLDER, build_from_model_folder, read_model_description

WEIGHTS = ckpt.WEIGHTS  # a model folder's weights: the same file name as a checkpoint's


def check_export(run_dir: Path, out: Path, checkpoint: str) -> Path:
    """The checkpoint folder to export; ConfigError when there is none or `out` exists."""
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: no such run folder")
    if not (run_dir / MODEL_FOLDER / "config.json").is_file():
        raise ConfigError(f"{run_dir}: no {MODEL_FOLDER}/config.json; is it a run folder written by `vlmt train` "
                          f"with this vlmt version?")
    if out.exists():
        raise ConfigError(f"--out {out}: already exists; choose a new folder")
    return ckpt.find_checkpoint(run_dir, checkpoint)


def export_run(run_dir: str | Path, out: str | Path, *, checkpoint: str = "best",
               metrics: dict[str, dict[str, float]] | None = None, metrics_split: str = "test",
               metrics_note: str | None = None) -> Path:
    """Write the model folder of a run's checkpoint (best, last or a step) into `out` (a new
    folder, written whole or not at all); `metrics` (those of `vlmt evaluate run` on
    `metrics_split`) go into config.json and the model card, or `metrics_note` says why there are
    none."""
    run_dir, out = Path(run_dir), Path(out)
    directory = check_export(run_dir, out, checkpoint)
    source = run_dir / MODEL_FOLDER
    info = read_model_description(source)
    step = int(directory.name.removeprefix("step_"))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        shutil.copytree(source, tmp, dirs_exist_ok=True)
        shutil.copyfile(directory / WEIGHTS, tmp / WEIGHTS)
        info = {**info, "checkpoint": {"run": run_dir.name, "step": step, "which": checkpoint,
                                       "sha256": ckpt.sha256(tmp / WEIGHTS)},
                "metrics": metrics or {}, "metrics_split": metrics_split if metrics else None}
        if metrics_note:
            info["metrics_note"] = metrics_note
        write_json(tmp / "config.json", info)
        _, parts = build_from_model_folder(source, device="cpu")
        (tmp / "README.md").write_text(model_card(info, run_dir, parts.tasks), encoding="utf-8")
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def model_card(info: dict[str, Any], run_dir: Path, tasks: dict[str, Any]) -> str:
    """README.md of an exported model; its calls are the capabilities its `tasks` declare."""
    exp = info["experiment"]
    task_list = ", ".join(f"`{name}` ({kind})" for name, kind in info["tasks"].items())
    data = exp.get("data", {})
    lines = [f"# {info['model_type']} model ({run_dir.name}, step {info['checkpoint']['step']})", "",
             f"A `{info['model_type']}` model trained by vlmt {info['vlmt_version']} with the tasks {task_list}, "
             f"on the data section `{info['data_type']}` with root `{data.get('root', '-')}`.", "",
             "## Use", "", "```python", "import vlmt", "", "model = vlmt.load(\"path/to/this/folder\")",
             f"print(model.heads)   # {info['tasks']}"]
    declared = list(iter_capabilities(tasks))
    lines += list(dict.fromkeys(cap.example for _, cap in declared if cap.example))
    lines += ["```", "", "Loading needs nothing but this folder (no dataset, cache or network).", ""]
    if declared:
        lines += ["| call | task | what it does | returns |", "|---|---|---|---|"]
        for name, cap in declared:
            args = ", ".join(i.name for i in cap.inputs)
            lines.append(f"| `{cap.method}({args})` | `{name}` | {cap.summary} | {cap.returns} |")
        lines.append("")
    if info.get("metrics"):
        split = info.get("metrics_split") or "test"
        lines += [f"## Metrics ({split} split)", "", "| task | metric | value |", "|---|---|---:|"]
        for task, values in info["metrics"].items():
            for key, value in values.items():
                if "/" not in key and key != "seconds":
                    lines.append(f"| {task} | {key} | {value:.2f} |")
        lines.append("")
    else:
        lines += ["## Metrics", "", info.get("metrics_note") or "Not measured at export (`--metrics none`).", ""]
    lines += ["## Training", "", "The experiment that trained it (`config.json`, key `experiment`):", "", "```json",
              json.dumps({k: exp[k] for k in ("data", "model", "tasks", "schedule", "optim") if k in exp}, indent=1),
              "```", ""]
    return "\n".join(lines)
