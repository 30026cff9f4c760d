"""Experiment configs: one YAML file per experiment, typed dataclasses inside the program.

YAML becomes dataclasses here, at the edge, and nowhere else. Every key is checked: an unknown
key, a value of the wrong type or a missing file raises `ConfigError` naming the file and the
dotted key (with a "did you mean" suggestion from difflib when one is close).

Sections that later work extends (`data`, `model`, each entry of `tasks`) are selected by a
`type:` key from a registry: a plain dict filled by the `register_*` decorators, which refuse
duplicate names. Registries are filled by explicit imports (`vlmt.registry_imports`), never by
import side effects of unrelated modules.

    model: {type: sanity_mlp, hidden: 32}
    tasks:
      sanity: {type: sanity_linear, batch_size: 16, iterations: 200, step: 100}
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, TypeVar

import yaml

from vlmt.errors import ConfigError

T = TypeVar("T")

# --------------------------------------------------------------------------- registries


class Registry:
    """Name -> config dataclass for one extensible section; duplicates are refused."""

    def __init__(self, section: str):
        self.section = section
        self._entries: dict[str, type] = {}

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        def decorator(cls: type[T]) -> type[T]:
            if name in self._entries:
                raise ValueError(f"{self.section} type {name!r} is already registered "
                                 f"by {self._entries[name].__module__}.{self._entries[name].__qualname__}")
            if not dataclasses.is_dataclass(cls):
                raise TypeError(f"{self.section} type {name!r}: {cls.__qualname__} must be a dataclass")
            self._entries[name] = cls
            return cls
        return decorator

    def __getitem__(self, name: str) -> type:
        return self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def names(self) -> list[str]:
        return sorted(self._entries)

    def name_of(self, cls: type) -> str:
        for name, entry in self._entries.items():
            if entry is cls:
                return name
        raise KeyError(f"{cls.__qualname__} is not a registered {self.section} type")


DATA = Registry("data")
MODELS = Registry("model")
TASKS = Registry("task")

register_data = DATA.register
register_model = MODELS.register
register_task = TASKS.register

# Modules that register data/model/task config types. `ensure_registered()` imports exactly
# these (explicitly, by name); a module that adds types appends its name here.
REGISTRY_MODULES: list[str] = [
    "vlmt.tasks.sanity",
    "vlmt.data.vl_datasets",
    "vlmt.models.hierarchical_config",
    "vlmt.tasks.vqa_task",
    "vlmt.tasks.retrieval_task",
    "vlmt.tasks.grounding_task",
    "vlmt.data.svlr_datasets",
    "vlmt.tasks.svlr_tasks",
]


def ensure_registered() -> None:
    """Import every module listed in REGISTRY_MODULES so its types are registered."""
    for name in REGISTRY_MODULES:
        importlib.import_module(name)


# --------------------------------------------------------------------------- sections


@dataclass
class DataConfig:
    """Base of data sections; `build()` returns whatever the model and tasks need (or None)."""

    def build(self, *, seed: int) -> Any:
        return None


@register_data("none")
@dataclass
class NoData(DataConfig):
    """No shared data: each task generates or reads its own (e.g. the trainer sanity check)."""


@dataclass
class ModelConfig:
    """Base of model sections; subclasses add their fields and implement `build`."""

    def build(self, *, data: Any) -> Any:  # -> torch.nn.Module
        raise NotImplementedError


@dataclass
class TaskConfig:
    """Fields every task has; subclasses add their own and implement `build`.

    batch_size: examples per update; layer: encoder layer the task's decoder reads (None when the
    model has no layers to choose from); loss_weight: weight of the task's loss when several tasks
    are trained in one step (weighted joint schedule); iterations / step: the task's `#iter_i`
    and `#step_i` of the hierarchical paper (Sec. 4.2), used by the periodic schedule and the
    learning-rate halving.
    """

    batch_size: int = 32
    layer: int | None = None
    loss_weight: float = 1.0
    iterations: int = 1000
    step: int = 1000

    def build(self, *, name: str, data: Any, model: Any, train: TrainConfig) -> Any:
        """The task (a vlmt.tasks.base.Task); `train` gives seed, num_workers, precision."""
        raise NotImplementedError


@dataclass
class ScheduleConfig:
    """Which task(s) to train at each iteration.

    kind: periodic (Algorithm 1), curriculum (single -> pairs -> all, each stage periodic),
    joint (every task every step, weighted by loss_weight).
    cycle: C, iterations per switching cycle. order: tasks in schedule order (default: the order
    of the `tasks` section). stages: curriculum stages as lists of task names (default: the first
    task, then the first two, ..., then all).
    """

    kind: Literal["periodic", "curriculum", "joint"] = "periodic"
    cycle: int = 100
    order: list[str] | None = None
    stages: list[list[str]] | None = None


@dataclass
class OptimConfig:
    """Adam with step decay: lr * lr_decay ** (iterations // lr_step).

    lr_step None means the hierarchical paper's rule: the sum of `step` over the active tasks
    (per curriculum stage). An integer gives a fixed period (SVLR: decay 0.5 every N).
    per_task_state: one Adam state per task instead of one shared by all (task-switching
    schedules only; see vlmt.training.optimizers).
    """

    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.99)
    eps: float = 1e-8
    weight_decay: float = 0.0
    lr_decay: float = 0.5
    lr_step: int | None = None
    grad_clip: float | None = None
    per_task_state: bool = False


@dataclass
class TrainConfig:
    """Loop settings. max_iters None: the schedule's own length."""

    seed: int = 0
    max_iters: int | None = None
    eval_every: int = 500
    checkpoint_every: int = 500
    log_every: int = 50
    device: str = "auto"
    precision: Literal["fp32", "bf16"] = "fp32"
    num_workers: int = 0
    threads: int | None = None
    best_metric: str | None = None
    best_mode: Literal["min", "max"] | None = None
    tensorboard: bool = True
    progress: bool = True


@dataclass
class ExperimentConfig:
    model: ModelConfig
    tasks: dict[str, TaskConfig]
    data: DataConfig = field(default_factory=NoData)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


# which registry selects the dataclass for these base classes
_REGISTRY_FOR: dict[type, Registry] = {DataConfig: DATA, ModelConfig: MODELS, TaskConfig: TASKS}


# --------------------------------------------------------------------------- YAML -> dataclasses


class _Ctx:
    def __init__(self, source: str):
        self.source = source

    def error(self, path: str, message: str) -> ConfigError:
        where = f"key {path!r}: " if path else ""
        return ConfigError(f"{self.source}: {where}{message}")


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(tp))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "mapping"
    return getattr(tp, "__name__", str(tp))


def _describe(value: Any) -> str:
    return f"{value!r} ({'null' if value is None else type(value).__name__})"


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def _convert(value: Any, tp: Any, path: str, ctx: _Ctx) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(value, option, path, ctx)
            except ConfigError as e:
                errors.append(e)
        if len(errors) == 1:
            raise errors[0]
        raise ctx.error(path, f"expected {_type_name(tp)}, got {_describe(value)}")
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            hint = _did_you_mean(str(value), [str(a) for a in allowed])
            raise ctx.error(path, f"expected one of {', '.join(map(repr, allowed))}, got {value!r}{hint}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ctx.error(path, f"expected {_type_name(tp)}, got {_describe(value)}")
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ctx.error(path, f"expected {_type_name(tp)} with {len(args)} items, got {len(value)}")
            return tuple(_convert(v, a, f"{path}[{i}]", ctx) for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        items = [_convert(v, item, f"{path}[{i}]", ctx) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ctx.error(path, f"expected a mapping, got {_describe(value)}")
        key_tp, val_tp = typing.get_args(tp) or (Any, Any)
        return {_convert(k, key_tp, path, ctx): _convert(v, val_tp, _join(path, k), ctx)
                for k, v in value.items()}
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _build_dataclass(tp, value, path, ctx)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads `1e-3` (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    else:
        raise TypeError(f"config type {tp!r} at {path} is not supported")
    raise ctx.error(path, f"expected {_type_name(tp)}, got {_describe(value)}")


def _did_you_mean(key: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _build_dataclass(cls: type, value: Any, path: str, ctx: _Ctx) -> Any:
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise ctx.error(path, f"expected a mapping, got {_describe(value)}")
    value = dict(value)
    registry = _REGISTRY_FOR.get(cls)
    if registry is not None:  # an extensible section: `type` picks the dataclass
        ensure_registered()
        default = "none" if cls is DataConfig else (path.rsplit(".", 1)[-1] if cls is TaskConfig else None)
        name = value.pop("type", default)
        if name is None:
            raise ctx.error(_join(path, "type"), f"missing; one of: {', '.join(registry.names())}")
        if name not in registry:
            hint = _did_you_mean(str(name), registry.names())
            raise ctx.error(_join(path, "type"),
                            f"unknown {registry.section} type {name!r}{hint} (known: {', '.join(registry.names())})")
        cls = registry[name]
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, item in value.items():
        if key not in fields:
            hint = _did_you_mean(str(key), list(fields))
            raise ctx.error(_join(path, key), f"unknown key{hint}")
        kwargs[key] = _convert(item, hints[key], _join(path, key), ctx)
    for name, f in fields.items():
        if name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ctx.error(_join(path, name), "missing (required)")
    try:
        obj = cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ctx.error(path, str(e)) from None
    check = getattr(obj, "validate", None)
    if callable(check):
        problem = check()
        if problem:
            raise ctx.error(path, problem)
    return obj


def from_dict(raw: Any, *, source: str = "<config>") -> ExperimentConfig:
    """Validate a plain dict (parsed YAML) into an `ExperimentConfig`."""
    ctx = _Ctx(source)
    cfg = _build_dataclass(ExperimentConfig, raw, "", ctx)
    _check_experiment(cfg, ctx)
    return cfg


def _check_experiment(cfg: ExperimentConfig, ctx: _Ctx) -> None:
    names = list(cfg.tasks)
    if not names:
        raise ctx.error("tasks", "at least one task is needed")
    for name, t in cfg.tasks.items():
        for key in ("batch_size", "iterations", "step"):
            if getattr(t, key) < 1:
                raise ctx.error(f"tasks.{name}.{key}", f"must be >= 1, got {getattr(t, key)}")
    sch = cfg.schedule
    for i, task in enumerate(sch.order or []):
        if task not in cfg.tasks:
            raise ctx.error(f"schedule.order[{i}]", f"no task {task!r} in the tasks section{_did_you_mean(task, names)}")
    for s, stage in enumerate(sch.stages or []):
        if not stage:
            raise ctx.error(f"schedule.stages[{s}]", "a stage needs at least one task")
        for i, task in enumerate(stage):
            if task not in cfg.tasks:
                raise ctx.error(f"schedule.stages[{s}][{i}]",
                                f"no task {task!r} in the tasks section{_did_you_mean(task, names)}")
    if sch.cycle < 1:
        raise ctx.error("schedule.cycle", f"must be >= 1, got {sch.cycle}")
    tr = cfg.train
    for key in ("eval_every", "checkpoint_every", "log_every"):
        if getattr(tr, key) < 1:
            raise ctx.error(f"train.{key}", f"must be >= 1, got {getattr(tr, key)}")
    if tr.max_iters is not None and tr.max_iters < 1:
        raise ctx.error("train.max_iters", f"must be >= 1, got {tr.max_iters}")
    if cfg.optim.lr_step is not None and cfg.optim.lr_step < 1:
        raise ctx.error("optim.lr_step", f"must be >= 1, got {cfg.optim.lr_step}")
    if cfg.optim.per_task_state and sch.kind == "joint":
        raise ctx.error("optim.per_task_state", "needs one task per update (schedule.kind periodic or "
                        "curriculum); the joint schedule trains every task in every update")
    if tr.device != "auto" and not (tr.device == "cpu" or tr.device.startswith("cuda")):
        raise ctx.error("train.device", f"expected 'auto', 'cpu', 'cuda' or 'cuda:N', got {tr.device!r}")


# --------------------------------------------------------------------------- files and overrides


def configs_dir() -> Path:
    """The experiment configs shipped with vlmt (`vlmt/configs/`, also reachable as `configs/` at
    the root of a checkout): installed with the package, so `vlmt demo` and the reproduce grids
    find them wherever vlmt is installed."""
    return Path(__file__).resolve().parent / "configs"


def bundled_config(name: str) -> Path:
    """Path of the shipped config `name` (e.g. "tiny.yaml"); ConfigError when there is none."""
    path = configs_dir() / name
    if not path.is_file():
        known = ", ".join(sorted(p.name for p in configs_dir().glob("*.yaml")))
        raise ConfigError(f"configs/{name}: no such shipped config (shipped: {known})")
    return path


def read_yaml(path: str | Path) -> dict:
    """Parse a YAML mapping, with a ConfigError naming the file when it is missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {getattr(e, 'problem', e)}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level, got {type(raw).__name__}")
    return raw


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply `key.sub=value` overrides (value parsed as a YAML scalar or flow value) to a copy."""
    import copy

    raw = copy.deepcopy(raw)
    for text in overrides:
        if "=" not in text:
            raise ConfigError(f"--set {text}: expected KEY=VALUE, e.g. train.seed=3")
        key, _, value_text = text.partition("=")
        keys = key.strip().split(".")
        if not all(keys):
            raise ConfigError(f"--set {text}: empty key segment in {key!r}")
        try:
            value = yaml.safe_load(value_text) if value_text.strip() else None
        except yaml.YAMLError as e:
            raise ConfigError(f"--set {text}: value is not valid YAML: {getattr(e, 'problem', e)}") from None
        node = raw
        for i, k in enumerate(keys[:-1]):
            child = node.get(k)
            if child is None:
                child = node[k] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"--set {text}: key {'.'.join(keys[:i + 1])!r} is {child!r}, not a section")
            node = child
        node[keys[-1]] = value
    return raw


def load_config(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read, override and validate one experiment file.

    Errors name the file; an error caused by an override names the override as its source.
    """
    raw = read_yaml(path)
    overrides = list(overrides or [])
    if overrides:
        # validate the file alone first so an error in it is blamed on the file
        from_dict(raw, source=str(path))
        raw = apply_overrides(raw, overrides)
        return from_dict(raw, source=f"{path} with --set {' '.join(overrides)}")
    return from_dict(raw, source=str(path))


# --------------------------------------------------------------------------- dataclasses -> YAML


def to_dict(obj: Any) -> Any:
    """Plain data (dicts, lists, scalars) of a config, with `type:` keys for registry sections."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out: dict[str, Any] = {}
        for base, registry in _REGISTRY_FOR.items():
            if isinstance(obj, base):
                out["type"] = registry.name_of(type(obj))
        for f in dataclasses.fields(obj):
            out[f.name] = to_dict(getattr(obj, f.name))
        return out
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj


def dump_yaml(cfg: ExperimentConfig) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, default_flow_style=None)


def save_config(cfg: ExperimentConfig, path: str | Path) -> None:
    """Write the resolved config atomically (it loads back to an equal config)."""
    from vlmt.io import atomic_write

    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write(dump_yaml(cfg))


def diff(a: ExperimentConfig, b: ExperimentConfig) -> list[str]:
    """Dotted keys whose values differ between two configs."""
    out: list[str] = []

    def walk(x: Any, y: Any, path: str) -> None:
        if isinstance(x, dict) and isinstance(y, dict):
            for k in list(x) + [k for k in y if k not in x]:
                walk(x.get(k), y.get(k), _join(path, k))
        elif x != y:
            out.append(path)

    walk(to_dict(a), to_dict(b), "")
    return out
