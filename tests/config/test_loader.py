"""Experiment configs: typed loading, errors that name file and key, overrides, round trip."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from vlmt import config as C
from vlmt.errors import ConfigError
from vlmt.tasks.sanity import SanityLinearConfig, SanityMLPConfig

REPO = Path(__file__).resolve().parents[2]

BASE = """\
model: {type: sanity_mlp, hidden: 8}
tasks:
  a: {type: sanity_linear, batch_size: 4, iterations: 30, step: 20}
  b: {type: sanity_linear, iterations: 20, step: 10, map_seed: 3}
optim: {lr: 1e-3}
train: {seed: 5, max_iters: 12}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    return path


def test_yaml_becomes_typed_dataclasses(tmp_path):
    cfg = C.load_config(write(tmp_path, BASE))
    assert isinstance(cfg.model, SanityMLPConfig) and cfg.model.hidden == 8
    assert isinstance(cfg.tasks["a"], SanityLinearConfig) and cfg.tasks["a"].batch_size == 4
    assert cfg.tasks["b"].map_seed == 3 and cfg.tasks["b"].batch_size == 32  # default
    assert cfg.optim.lr == 1e-3 and isinstance(cfg.optim.lr, float)  # "1e-3" is a string in YAML 1.1
    assert cfg.optim.betas == (0.9, 0.99)
    assert cfg.train.seed == 5 and cfg.schedule.kind == "periodic"
    assert isinstance(cfg.data, C.NoData)


def test_unknown_key_names_file_dotted_key_and_suggestion(tmp_path):
    path = write(tmp_path, BASE.replace("max_iters: 12", "max_iter: 12"))
    with pytest.raises(ConfigError) as e:
        C.load_config(path)
    msg = str(e.value)
    assert str(path) in msg and "'train.max_iter'" in msg and "did you mean 'max_iters'" in msg


def test_unknown_key_inside_a_registered_task_section(tmp_path):
    path = write(tmp_path, BASE.replace("map_seed: 3", "map_sed: 3"))
    with pytest.raises(ConfigError, match=r"'tasks\.b\.map_sed': unknown key; did you mean 'map_seed'"):
        C.load_config(path)


def test_unknown_section_and_unknown_type(tmp_path):
    with pytest.raises(ConfigError, match=r"'optimizer': unknown key; did you mean 'optim'"):
        C.load_config(write(tmp_path, BASE.replace("optim:", "optimizer:")))
    with pytest.raises(ConfigError, match=r"'model\.type': unknown model type 'sanity_mpl'; did you mean 'sanity_mlp'"):
        C.load_config(write(tmp_path, BASE.replace("type: sanity_mlp", "type: sanity_mpl")))


def test_wrong_type_names_the_expected_type(tmp_path):
    path = write(tmp_path, BASE.replace("seed: 5", "seed: five"))
    with pytest.raises(ConfigError) as e:
        C.load_config(path)
    assert str(path) in str(e.value) and "'train.seed': expected int, got 'five' (str)" in str(e.value)
    with pytest.raises(ConfigError, match=r"'train.precision': expected one of 'fp32', 'bf16', got 'fp16'"):
        C.load_config(write(tmp_path, BASE.replace("max_iters: 12", "max_iters: 12, precision: fp16")))
    with pytest.raises(ConfigError, match=r"'optim.betas': expected tuple\[float, float\] with 2 items, got 3"):
        C.load_config(write(tmp_path, BASE.replace("lr: 1e-3", "lr: 1e-3, betas: [0.9, 0.99, 0.1]")))
    with pytest.raises(ConfigError, match=r"'tasks.a.batch_size': expected int, got True \(bool\)"):
        C.load_config(write(tmp_path, BASE.replace("batch_size: 4", "batch_size: true")))


def test_missing_file_is_named(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=r"nope\.yaml: config file not found"):
        C.load_config(missing)


def test_invalid_yaml_and_bad_values_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML"):
        C.load_config(write(tmp_path, "model: {type: [\n"))
    with pytest.raises(ConfigError, match=r"'tasks.a.step': must be >= 1"):
        C.load_config(write(tmp_path, BASE.replace("step: 20", "step: 0")))
    with pytest.raises(ConfigError, match=r"'schedule.order\[1\]': no task 'c'"):
        C.load_config(write(tmp_path, BASE + "schedule: {order: [a, c]}\n"))
    with pytest.raises(ConfigError, match=r"'model': dropout must be in \[0, 1\)"):
        C.load_config(write(tmp_path, BASE.replace("hidden: 8", "hidden: 8, dropout: 1.5")))


def test_set_overrides_are_parsed_as_yaml_and_validated(tmp_path):
    path = write(tmp_path, BASE)
    cfg = C.load_config(path, ["train.seed=9", "tasks.a.batch_size=2", "optim.betas=[0.5, 0.6]",
                               "schedule.kind=joint", "train.max_iters=null"])
    assert cfg.train.seed == 9 and cfg.tasks["a"].batch_size == 2 and cfg.optim.betas == (0.5, 0.6)
    assert cfg.schedule.kind == "joint" and cfg.train.max_iters is None
    with pytest.raises(ConfigError) as e:
        C.load_config(path, ["train.sed=1"])
    assert "--set train.sed=1" in str(e.value) and "did you mean 'seed'" in str(e.value)
    with pytest.raises(ConfigError, match=r"'train.seed': expected int, got 1.5"):
        C.load_config(path, ["train.seed=1.5"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        C.load_config(path, ["train.seed"])


def test_resolved_config_round_trips(tmp_path):
    cfg = C.load_config(write(tmp_path, BASE), ["train.precision=bf16"])
    C.save_config(cfg, tmp_path / "run" / "config.yaml")
    again = C.load_config(tmp_path / "run" / "config.yaml")
    assert again == cfg and C.diff(cfg, again) == []
    changed = C.load_config(tmp_path / "run" / "config.yaml", ["tasks.b.step=11"])
    assert C.diff(cfg, changed) == ["tasks.b.step"]


def test_registry_refuses_duplicates_and_non_dataclasses():
    with pytest.raises(ValueError, match="already registered"):
        @C.register_model("sanity_mlp")
        @dataclass(frozen=True)
        class Again(C.ModelConfig):
            pass
    with pytest.raises(TypeError, match="must be a dataclass"):
        C.register_task("not_a_dataclass")(object)


def test_shipped_configs_load():
    from vlmt.training.build import load_experiment  # imports every module that registers a type

    for path in sorted((REPO / "configs").glob("*.yaml")):
        load_experiment(path)


def test_an_alias_reads_a_former_type_as_its_successor():
    registry = C.Registry("example")

    @registry.register("new")
    @dataclass
    class New:
        size: int = 1

    registry.alias("old", "new", lambda raw: {"size": raw.get("width", 1) * 2})
    registry.alias("older", "old", lambda raw: {"width": raw.get("w", 1)})
    assert registry.resolve("older") == "new" and registry.resolve("new") == "new" and "old" not in registry
    assert registry.upgrade("older", {"w": 3}) == ("new", {"size": 6})
    with pytest.raises(ValueError, match="already registered"):
        registry.alias("new", "old", dict)


@dataclass
class Small:
    n: int = 0


def pick_entry(key: str) -> type:
    if key != "small":
        raise KeyError(f"no entry type {key!r} (known: small)")
    return Small


@dataclass
class Holder:
    entries: dict = C.keyed(pick_entry)


@dataclass
class Outer:
    holder: Holder


def test_a_keyed_field_picks_each_entrys_dataclass_by_its_key():
    from vlmt.config.loader import _build_dataclass, _Ctx

    built = _build_dataclass(Outer, {"holder": {"entries": {"small": {"n": 2}}}}, "", _Ctx("x.yaml"))
    assert built.holder.entries == {"small": Small(2)}
    assert C.to_dict(built) == {"holder": {"entries": {"small": {"n": 2}}}}
    with pytest.raises(ConfigError, match=r"x.yaml: key 'holder.entries.big': no entry type 'big' \(known: small\)"):
        _build_dataclass(Outer, {"holder": {"entries": {"big": {}}}}, "", _Ctx("x.yaml"))
    with pytest.raises(ConfigError, match=r"key 'holder.entries.small.n': expected int"):
        _build_dataclass(Outer, {"holder": {"entries": {"small": {"n": "two"}}}}, "", _Ctx("x.yaml"))


@pytest.mark.parametrize("override, now", [
    ("data.answer_more_than=3", "data.families.vl.answer_more_than"),
    ("data.word_dim=8", "data.families.svlr.word_dim"),
    ("data.genome_id_offset=5", "data.datasets.genome.id_offset"),
])
def test_a_key_of_a_former_data_section_names_its_new_place(override, now):
    """Old files are upgraded as they load; an old `--set` path is refused, naming where it went."""
    import vlmt.tasks.shipped  # noqa: F401  (registers the families and their former section types)

    with pytest.raises(ConfigError, match=rf"key '{override.split('=')[0]}': unknown key \(now {now}\)"):
        C.load_config(C.bundled_config("tiny.yaml"), [override])


@pytest.mark.parametrize("override, now", [
    ("data.vl.answer_more_than=3", "data.families.vl.answer_more_than"),
    ("data.svlr.word_dim=8", "data.families.svlr.word_dim"),
    ("data.svlr.genome_id_offset=5", "data.datasets.genome.id_offset"),
])
def test_a_nested_key_of_a_former_composed_section_names_its_new_place(override, now):
    """A composed section kept each family's options under `vl:` / `svlr:`; the hint follows the
    nested `--set` path to its leaf and names both places."""
    import vlmt.tasks.shipped  # noqa: F401

    old = override.split("=")[0]
    with pytest.raises(ConfigError, match=rf"key 'data\.(vl|svlr)': unknown key \({old} is now {now}\)"):
        C.load_config(C.bundled_config("composed_tiny.yaml"), [override])


def test_a_nested_key_no_former_section_kept_gets_no_hint():
    import vlmt.tasks.shipped  # noqa: F401

    with pytest.raises(ConfigError, match=r"key 'data\.vl': unknown key$"):
        C.load_config(C.bundled_config("composed_tiny.yaml"), ["data.vl.bogus=3"])
