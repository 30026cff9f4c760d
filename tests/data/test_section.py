"""The `datasets` data section: a named set of datasets and each family's options. A family
registered outside the package needs no section class; families are built when a model or task
first asks for them; the former family sections (`vl_datasets`, `svlr_datasets`,
`composed_datasets`) read as this section and build the same data; a model folder saved with one
of them still loads."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest
import torch
from safetensors.torch import save_model
from torch import nn

import vlmt
from vlmt import config as C
from vlmt.config import TaskConfig, register_task
from vlmt.data.datasets import dataset_kind
from vlmt.data.section import BuiltDatasets, DatasetsAssets, DatasetsConfig, register_family
from vlmt.data.synth.cache import ensure_world
from vlmt.errors import ConfigError
from vlmt.io import load_json, write_json
from vlmt.tasks.base import EpochBatchSampler, TaskBase, family_data
from vlmt.training.build import build_from_model_folder, build_parts, load_experiment, save_model_folder

CPU = torch.device("cpu")
# RUN/model of `vlmt train tiny | svlr_tiny | composed_tiny` (config.json and assets, no weights) as
# vlmt 0.1.0 wrote them before the `datasets` section, with `data_type` vl_datasets, svlr_datasets
# and composed_datasets
FORMER_FOLDERS = Path(__file__).resolve().parents[1] / "fixtures" / "model_folders"


@pytest.fixture(scope="module")
def world() -> Path:
    return ensure_world("tiny", 0)


# -- a family and a task of this test module (nothing of vlmt changes) ---------------------------------


@dataclass
class LengthOptions:
    """The family's preprocessing: questions longer than `long_after` words are "long"."""

    long_after: int = 6

    def validate(self) -> str | None:
        return None if self.long_after >= 1 else f"long_after must be >= 1, got {self.long_after}"


@dataclass
class LengthAssets:
    long_after: int
    FILE = "question_length_test.json"

    def save(self, folder: Path) -> list[Path]:
        write_json(folder / self.FILE, {"long_after": self.long_after})
        return [folder / self.FILE]


class LengthData:
    """Per split: (question length, is long) of the section's VQA questions."""

    def __init__(self, examples: dict[str, list[tuple[int, bool]]], assets: LengthAssets):
        self.examples, self.assets = examples, assets


def build_lengths(section: DatasetsConfig, options: LengthOptions, *, root: Path, seed: int) -> LengthData:
    files = section.files("vqa")
    if files is None:
        raise ConfigError("data.datasets: the question_length family reads vqa")
    splits = dataset_kind("vqa").read(root, files, required=True)
    lengths = {split: [len(e.question.split()) for e in held.examples] for split, held in splits.items()}
    return LengthData({split: [(n, n > options.long_after) for n in ns] for split, ns in lengths.items()},
                      LengthAssets(options.long_after))


def load_lengths(folder: Path) -> LengthAssets | None:
    path = Path(folder) / LengthAssets.FILE
    return LengthAssets(**load_json(path)) if path.is_file() else None


register_family("question_length_test", options=LengthOptions, build=build_lengths, load_assets=load_lengths,
                types=(LengthData, LengthAssets))


@register_task("question_length_test")
@dataclass
class LengthTaskConfig(TaskConfig):
    def build(self, *, name: str, data: Any, model: Any, seed: int) -> LengthTask:
        part = family_data(data, (LengthData, LengthAssets))
        if part is None:
            raise ConfigError(f"tasks.{name}: needs the question_length_test family")
        return LengthTask(name=name, config=self, data=part, seed=seed)


class LengthTask(TaskBase):
    """Long question or not, from the length alone (a head that never reads the model)."""

    primary_metric = "accuracy"

    def __init__(self, *, name: str, config: LengthTaskConfig, data: Any, seed: int):
        super().__init__(name=name, config=config, data=data, built_from=LengthData, seed=seed)
        self.head = nn.Linear(1, 1)

    def _batch(self, rows: list[tuple[int, bool]]) -> dict[str, torch.Tensor]:
        return {"length": torch.tensor([[float(n)] for n, _ in rows]),
                "long": torch.tensor([[float(y)] for _, y in rows])}

    def batches(self, split: str, *, start: int = 0, rank: int = 0, world_size: int = 1) -> Iterator[Any]:
        rows = self.data.examples[split]
        for picked in EpochBatchSampler(len(rows), self.config.batch_size, seed=self.seed, start=start):
            yield self._batch([rows[i] for i in picked])

    def forward(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        logits = self.head(batch["length"])
        return {"loss": nn.functional.binary_cross_entropy_with_logits(logits, batch["long"])}

    def evaluate(self, model: nn.Module, split: str, *, device: torch.device) -> dict[str, float]:
        batch = self._batch(self.data.examples[split])
        with torch.no_grad():
            right = (self.head(batch["length"]) > 0) == (batch["long"] > 0)
        return {"accuracy": 100.0 * right.float().mean().item()}


def test_a_family_registered_outside_the_package_is_built_for_its_task_and_saved_beside_the_others(world,
                                                                                                   tmp_path):
    raw = C.read_yaml(C.bundled_config("tiny.yaml"))
    raw["data"]["families"]["question_length_test"] = {"long_after": 5}
    raw["tasks"] = {"vqa": raw["tasks"]["vqa"], "length": {"type": "question_length_test", "batch_size": 8}}
    raw["schedule"] = {"kind": "periodic", "cycle": 10}
    cfg = C.from_dict(raw, source="tiny.yaml with a family of the test")
    assert cfg.data.families["question_length_test"] == LengthOptions(long_after=5)
    parts = build_parts(cfg, CPU)
    assert isinstance(parts.data, BuiltDatasets) and list(parts.data.built) == ["vl", "question_length_test"]
    task = parts.tasks["length"]
    assert all((n > 5) == y for n, y in task.data.examples["train"])
    loss = task(parts.model, next(task.batches("train")))["loss"]
    loss.backward()
    assert task.head.weight.grad is not None
    # the model folder holds both families' assets, side by side, and finds them again
    folder = tmp_path / "model"
    save_model_folder(folder, cfg, parts)
    assert (folder / LengthAssets.FILE).is_file() and (folder / "vl_assets.json").is_file()
    assets = DatasetsConfig.load_assets(folder)
    assert set(assets.families) == {"vl", "question_length_test"}
    _, rebuilt = build_from_model_folder(folder)
    assert rebuilt.tasks["length"].assets == LengthAssets(5) and not rebuilt.tasks["length"].has_examples


def test_families_are_built_when_first_asked_for(world):
    hierarchical = build_parts(load_experiment("tiny"), CPU)
    assert list(hierarchical.data.built) == ["vl"]  # no SVLR preprocessing for the hierarchical tasks
    assert list(hierarchical.data.assets.families) == ["vl"]
    composed = build_parts(load_experiment("composed_tiny"), CPU)
    assert set(composed.data.built) == {"vl", "svlr"}
    assert composed.data.family("vl") is composed.data.family("vl")  # built once
    svlr = build_parts(load_experiment("svlr_tiny"), CPU)
    assert list(svlr.data.built) == ["svlr"] and svlr.data.run_record()["data"] == "svlr_datasets"


def test_bad_sections_name_the_file_and_the_key():
    raw = C.read_yaml(C.bundled_config("tiny.yaml"))

    def refused(data: dict, match: str) -> None:
        with pytest.raises(ConfigError, match=match):
            C.from_dict({**raw, "data": {**raw["data"], **data}}, source="bad.yaml")

    refused({"datasets": {"vqa": {}, "captionz": {}}}, r"bad.yaml: key 'data.datasets.captionz': unknown dataset kind")
    refused({"families": {"vll": {}}}, r"key 'data.families.vll': unknown data family 'vll' \(known: .*vl")
    refused({"families": {"vl": {"answer_more_than": -1}}}, r"key 'data.families.vl': answer_more_than must be >= 0")
    refused({"families": {"svlr": {"word_dimm": 3}}}, r"key 'data.families.svlr.word_dimm': unknown key; did you mean")
    refused({"datasets": {"vqa": {"subtypes": 3}}}, r"key 'data.datasets.vqa.subtypes': expected")
    svlr_without_genome = C.from_dict({**C.read_yaml(C.bundled_config("svlr_tiny.yaml")),
                                       "data": {"type": "datasets", "root": "world:tiny", "datasets": {"vqa_mc": {}}}})
    with pytest.raises(ConfigError, match="does not list genome"):
        build_parts(svlr_without_genome, CPU)


# -- the former sections -----------------------------------------------------------------------------

OLD_TINY = {"type": "vl_datasets", "root": "world:tiny", "min_word_count": 1, "answer_more_than": 1}
OLD_SVLR_TINY = {"type": "svlr_datasets", "root": "world:tiny", "word_dim": 32}
OLD_COMPOSED_TINY = {"type": "composed_datasets", "root": "world:tiny",
                     "vl": {"min_word_count": 1, "answer_more_than": 1}, "svlr": {"word_dim": 32}}


def with_data(name: str, data: dict) -> C.ExperimentConfig:
    return C.from_dict({**C.read_yaml(C.bundled_config(f"{name}.yaml")), "data": data}, source=f"old {name}")


@pytest.mark.parametrize("name, old", [("tiny", OLD_TINY), ("svlr_tiny", OLD_SVLR_TINY),
                                       ("composed_tiny", OLD_COMPOSED_TINY)])
def test_a_former_section_reads_as_the_shipped_datasets_section_and_builds_the_same_data(world, name, old):
    upgraded, shipped = with_data(name, old).data, load_experiment(name).data
    assert isinstance(upgraded, DatasetsConfig)
    # the same section, but for `missing`: a vl_datasets section naming no datasets read those present
    assert dataclasses.replace(upgraded, missing=shipped.missing) == shipped
    assert upgraded.missing == ("skip" if "vl" in upgraded.families else "error")
    for family in upgraded.families:
        a, b = upgraded.build(seed=0).family(family), shipped.build(seed=0).family(family)
        if family == "vl":
            assert a.datasets == b.datasets and a.vocab.tokens == b.vocab.tokens
            assert a.answers.answers == b.answers.answers and a.feature_dim == b.feature_dim
            assert {s: len(v.examples) for s, v in a.vqa.items()} == {s: len(v.examples) for s, v in b.vqa.items()}
        else:
            assert (a.object_labels, a.attribute_labels, a.summary) == (b.object_labels, b.attribute_labels, b.summary)


def test_a_former_section_with_its_own_stores_and_roots():
    cfg = with_data("composed_tiny", {**OLD_COMPOSED_TINY, "vl": {"features": "features_vl", "answer_more_than": 1}})
    assert cfg.data.features == "features" and cfg.data.datasets["vqa"].features == "features_vl"
    assert cfg.data.datasets["genome"] == dataset_kind("genome").files()
    assert with_data("tiny", {**OLD_TINY, "datasets": ["vqa"]}).data.missing == "error"
    with pytest.raises(ConfigError, match=r"old composed_tiny: key 'data': .*vl.root: both parts read data.root"):
        with_data("composed_tiny", {**OLD_COMPOSED_TINY, "vl": {"root": "elsewhere"}})
    with pytest.raises(ConfigError, match=r"key 'data.families.vl.answer_more_thn': unknown key"):
        with_data("tiny", {**OLD_TINY, "answer_more_thn": 3})


def rewrite_as_former(folder: Path, data_type: str, data: dict) -> None:
    """config.json of a model folder as a vlmt that had the family sections wrote it."""
    info = json.loads((folder / "config.json").read_text())
    info["data_type"] = data_type
    info["experiment"]["data"] = data
    (folder / "config.json").write_text(json.dumps(info))


def test_model_folders_saved_with_a_former_section_load(world, tmp_path):
    cfg = load_experiment("tiny")
    parts = build_parts(cfg, CPU)
    new, old = tmp_path / "new", tmp_path / "old"
    for folder in (new, old):
        save_model_folder(folder, cfg, parts)
        save_model(parts.objective, str(folder / "model.safetensors"))
    rewrite_as_former(old, "vl_datasets", {**OLD_TINY, "features": "features", "images": "images/{image_id}.png"})
    regions = torch.rand(5, parts.data.family("vl").feature_dim).numpy()
    answers = [vlmt.load(folder).answer(question="what color is the square?", regions=regions, top_k=3)
               for folder in (new, old)]
    assert answers[0] == answers[1]
    composed = tmp_path / "composed"
    ccfg = load_experiment("composed_tiny")
    save_model_folder(composed, ccfg, build_parts(ccfg, CPU))
    rewrite_as_former(composed, "composed_datasets", OLD_COMPOSED_TINY)
    info, rebuilt = build_from_model_folder(composed)
    assert isinstance(rebuilt.data, DatasetsAssets) and set(rebuilt.data.families) == {"vl", "svlr"}
    assert C.from_dict(info["experiment"]).data.families["svlr"].word_dim == 32


@pytest.mark.parametrize("name, families", [("tiny", {"vl"}), ("svlr_tiny", {"svlr"}),
                                            ("composed_tiny", {"vl", "svlr"})])
def test_model_folders_written_before_the_datasets_section_rebuild(name, families):
    folder = FORMER_FOLDERS / name
    info, rebuilt = build_from_model_folder(folder)
    assert info["data_type"] == f"{'vl' if name == 'tiny' else name.removesuffix('_tiny')}_datasets"
    assert set(rebuilt.data.families) == families
    saved, shipped = C.from_dict(info["experiment"]).data, load_experiment(name).data
    assert dataclasses.replace(saved, missing=shipped.missing) == shipped  # the same datasets and options
    assert set(rebuilt.tasks) == set(info["tasks"])
