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
from vlmt.io import atomic_write, write_json
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
        _plain_modes(tmp)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


# The papers the models implement, cited on every card (entries written for vlmt).
CITATIONS = {
    "hierarchical": """@inproceedings{nguyen2019hierarchical,
  title     = {Multi-task Learning of Hierarchical Vision-Language Representation},
  author    = {Nguyen, Duy-Kien and Okatani, Takayuki},
  booktitle = {IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2019}
}""",
    "svlr": """@inproceedings{gupta2017aligned,
  title     = {Aligned Image-Word Representations Improve Inductive Transfer Across Vision-Language Tasks},
  author    = {Gupta, Tanmay and Shih, Kevin and Singh, Saurabh and Hoiem, Derek},
  booktitle = {IEEE International Conference on Computer Vision (ICCV)},
  year      = {2017},
  doi       = {10.1109/ICCV.2017.452}
}""",
}
LICENSE = "mit"  # the repository's LICENSE (pyproject.toml declares MIT)

# a declared call (`vlmt.tasks.capabilities`) -> the Hugging Face task tag closest to it
_CALL_TAGS = {"answer": "visual-question-answering", "ground": "phrase-grounding",
              "retrieve": "image-text-retrieval", "rank": "image-text-retrieval",
              "recognize": "object-recognition", "choose": "visual-question-answering"}


def _task_tags(tasks: dict[str, Any]) -> dict[str, str]:
    """Task name -> its tag, from the first call the task declares ("other" for none we know)."""
    out: dict[str, str] = {}
    for name, cap in iter_capabilities(tasks):
        out.setdefault(name, _CALL_TAGS.get(cap.method, "other"))
    return out


# keys of the evaluation's output that count or time things rather than score the model
_NOT_METRICS = frozenset({"seconds", "images", "captions", "questions", "phrases", "regions", "examples"})


def _world(info: dict[str, Any]) -> tuple[str, int, str] | None:
    """(size, seed, proposals) when the model was trained on the synthetic world, else None."""
    from vlmt.data.datasets.sources import parse_world_source
    from vlmt.data.synth.world import check_proposals

    root = str(info["experiment"].get("data", {}).get("root") or "")
    if not root.startswith("world:"):
        return None
    try:
        size, seed, method = parse_world_source(root)
    except ConfigError:
        return None
    return size, seed, check_proposals(method)


def _dataset_name(info: dict[str, Any]) -> str:
    """The training data's name for the card: the world with its size, seed and regions, or the
    data root's last folder name (never a machine path)."""
    world = _world(info)
    if world is not None:
        size, seed, method = world
        return f"vlmt-synthetic-world-{size}-seed{seed}-{method}"
    root = str(info["experiment"].get("data", {}).get("root") or "")
    return Path(root).name or info["data_type"]


def _step(info: dict[str, Any]) -> str:
    step = (info.get("checkpoint") or {}).get("step")
    return f", step {step}" if step is not None else ""


def front_matter(info: dict[str, Any], tasks: dict[str, Any]) -> dict[str, Any]:
    """The card's YAML metadata (Hugging Face model card keys): library, license, tags, datasets,
    and the metrics with the split they were measured on (`model-index`)."""
    task_tags = _task_tags(tasks)
    tags = ["vlmt", "pytorch", "vision-language", info["model_type"]]
    tags += [t for t in dict.fromkeys(task_tags.values()) if t != "other"]
    if _world(info) is not None:
        tags.append("synthetic-data")
    dataset = _dataset_name(info)
    meta: dict[str, Any] = {"library_name": "vlmt", "license": LICENSE, "tags": tags, "datasets": [dataset]}
    split = info.get("metrics_split") or "test"
    results: list[dict[str, Any]] = []
    for task, values in (info.get("metrics") or {}).items():
        scores = [{"type": key, "name": key, "value": round(float(v), 4)} for key, v in values.items()
                  if "/" not in key and key not in _NOT_METRICS and isinstance(v, (int, float))]
        if scores:
            results.append({"task": {"type": task_tags.get(task, "other"), "name": task},
                            "dataset": {"name": dataset, "type": dataset, "split": split},
                            "metrics": scores})
    if results:
        meta["metrics"] = list(dict.fromkeys(m["type"] for r in results for m in r["metrics"]))
        meta["model-index"] = [{"name": f"{info['model_type']}-{info['checkpoint']['run']}", "results": results}]
    return meta


def intended_use(info: dict[str, Any]) -> list[str]:
    """Card lines on what the model is for and what it is not, derived from how it was trained."""
    pre = info.get("preprocess") or {}
    picture = pre.get("picture") or {}
    size = f"{picture['width']} x {picture['height']}" if picture else "fixed-size"
    regions = pre.get("regions")
    world = _world(info)
    lines = ["## Intended use", ""]
    if world is not None:
        lines += [f"Research and teaching: it shows what the {info['model_type']} model learns on vlmt's synthetic "
                  f"world ({world[0]}, seed {world[1]}), whose ground truth is known exactly, and is a reference for "
                  "checking an implementation of the papers.", ""]
    else:
        lines += [f"The tasks it was trained on ({', '.join(info['tasks'])}) over data like its training data.", ""]
    lines += ["## Limitations", ""]
    if world is not None:
        lines.append(f"- Trained on a synthetic world of {size} scenes of 2-6 simple shapes (10 shapes, 10 colours, "
                     "3 sizes, 4 textures) on plain backgrounds, with template questions and captions: not for "
                     "photographs or free-form language; its metrics say nothing about real images.")
    if regions == "detector":
        lines.append("- Regions come from a small detector trained on the world's Genome-like training split; a "
                     "picture unlike those scenes gets poor regions (answers carry a warning when a picture's size "
                     "or aspect is far from the training pictures).")
    elif regions == "oracle":
        lines.append("- Trained and evaluated on oracle regions (the true object boxes among the proposals, test "
                     "pictures included): an ablation whose metrics are optimistic; a new picture gets pixel "
                     "proposals instead.")
    elif regions == "feature_store":
        lines.append("- Trained on region features read from a feature store (e.g. bottom-up features), not "
                     "computed from pixels: it refuses a raw picture; pass the regions (`regions=`, `boxes=`).")
    elif regions == "pixel_proposals":
        lines.append("- Regions of a new picture are six pixel proposals (foreground box, whole picture, "
                     "quadrants), made for one shape on a plain background.")
    lines += ["- Words outside its vocabulary are not understood; answers list them as unknown.",
              "- English only; the vocabulary is what the training questions and captions used.", ""]
    return lines


def _plain_modes(folder: Path) -> None:
    """Give a folder made by mkdtemp (0700) and everything in it the modes of a plain folder and
    plain files under the umask, so a published model folder is readable by others."""
    umask = os.umask(0)
    os.umask(umask)
    for p in [folder, *folder.rglob("*")]:
        if not p.is_symlink():
            p.chmod((0o777 if p.is_dir() else 0o666) & ~umask)


def save_loaded(model: Any, out: str | Path) -> Path:
    """`TrainedModel.save`: write a loaded model as an exported folder `out` (new; written whole or
    not at all): its config.json, the weights it holds, the assets, region CNN and detector of the
    folder it came from, and a model card. `vlmt.load(out)` answers as `model` does."""
    from safetensors.torch import save_model

    out = Path(out)
    if out.exists():
        raise ConfigError(f"{out}: already exists; choose a new folder")
    source = Path(model.source)
    folder = source if (source / "config.json").is_file() and (source / WEIGHTS).is_file() else source / MODEL_FOLDER
    info = dict(model.info)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        shutil.copytree(folder, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns(WEIGHTS, "README.md"))
        save_model(model.parts.objective, str(tmp / WEIGHTS))
        before = info.get("checkpoint") or {"run": source.name, "step": None, "which": "loaded"}
        info["checkpoint"] = {**before, "sha256": ckpt.sha256(tmp / WEIGHTS)}
        if not info.get("metrics"):
            info.update(metrics={}, metrics_split=None)
            info.setdefault("metrics_note", "Not measured when saved (`vlmt export RUN` measures them).")
        write_json(tmp / "config.json", info)
        with atomic_write(tmp / "README.md", "w", encoding="utf-8") as f:
            f.write(model_card(info, Path(str(info["checkpoint"]["run"])), model.tasks))
        _plain_modes(tmp)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def model_card(info: dict[str, Any], run_dir: Path, tasks: dict[str, Any]) -> str:
    """README.md of an exported model: YAML metadata, use, calls, metrics, intended use and
    limitations, training, and the papers to cite; its calls are the capabilities `tasks` declare."""
    import yaml

    exp = info["experiment"]
    task_list = ", ".join(f"`{name}` ({kind})" for name, kind in info["tasks"].items())
    data = exp.get("data", {})
    lines = ["---", yaml.safe_dump(front_matter(info, tasks), sort_keys=False, width=1000).rstrip(), "---", "",
             f"# {info['model_type']} model ({run_dir.name}{_step(info)})", "",
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
    lines += intended_use(info)
    lines += ["## Training", "", "The experiment that trained it (`config.json`, key `experiment`):", "", "```json",
              json.dumps({k: exp[k] for k in ("data", "model", "tasks", "schedule", "optim") if k in exp}, indent=1),
              "```", ""]
    lines += ["## Citation", "", "The papers this model implements:", "", "```bibtex",
              "\n\n".join(CITATIONS.values()), "```", "", f"License: {LICENSE.upper()} (the vlmt repository's).", ""]
    return "\n".join(lines)
