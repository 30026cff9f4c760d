"""Experiment files: YAML in, typed dataclasses (`vlmt.config.sections`) out, and back.

YAML becomes dataclasses here, at the edge, and nowhere else. Every key is checked: an unknown
key, a value of the wrong type or a missing file raises `ConfigError` naming the file and the
dotted key (with a "did you mean" suggestion from difflib when one is close). The extensible
sections (`data`, `model`, each entry of `tasks`) are picked from the registries by their `type:`
key (`vlmt.config.registry`); a task's type defaults to its name.

    model: {type: sanity_mlp, hidden: 32}
    tasks:
      sanity: {type: sanity_linear, batch_size: 16, iterations: 200, step: 100}
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml

from vlmt.config.registry import DATA, MODELS, TASKS, Registry
from vlmt.config.sections import (
    KEYED,
    DataConfig,
    ExperimentConfig,
    ModelConfig,
    TaskConfig,
    data_fields,
    did_you_mean,
    experiment_problem,
)
from vlmt.errors import ConfigError
from vlmt.io import atomic_write

# which registry selects the dataclass for these base classes
_REGISTRY_FOR: dict[type, Registry] = {DataConfig: DATA, ModelConfig: MODELS, TaskConfig: TASKS}


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
            hint = did_you_mean(str(value), [str(a) for a in allowed])
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


def _build_dataclass(cls: type, value: Any, path: str, ctx: _Ctx) -> Any:
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise ctx.error(path, f"expected a mapping, got {_describe(value)}")
    value = dict(value)
    registry = _REGISTRY_FOR.get(cls)
    if registry is not None:  # an extensible section: `type` picks the dataclass
        if not len(registry):
            raise ctx.error(path, f"no {registry.section} types are registered yet: load experiment files with "
                                  f"vlmt.training.build.load_experiment, which imports every module that registers one")
        default = "none" if cls is DataConfig else (path.rsplit(".", 1)[-1] if cls is TaskConfig else None)
        name = value.pop("type", default)
        if name is None:
            raise ctx.error(_join(path, "type"), f"missing; one of: {', '.join(registry.names())}")
        if isinstance(name, str):  # a former type reads as its successor (`Registry.alias`)
            try:
                name, value = registry.upgrade(name, value)
            except (ValueError, TypeError, AttributeError) as e:
                raise ctx.error(path, f"(type {name}) {e}") from None
        if name not in registry:
            hint = did_you_mean(str(name), registry.names())
            raise ctx.error(_join(path, "type"),
                            f"unknown {registry.section} type {name!r}{hint} (known: {', '.join(registry.names())})")
        cls = registry[name]
    else:  # a registered type nested in another section (written back with its `type` key)
        for base, reg in _REGISTRY_FOR.items():
            if "type" in value and issubclass(cls, base) and cls is not base:
                name = value.pop("type")
                if name != reg.name_of(cls):
                    raise ctx.error(_join(path, "type"), f"must be {reg.name_of(cls)!r} here, got {name!r}")
    upgrade = getattr(cls, "upgrade", None)
    if callable(upgrade):  # a section that renamed keys reads the older files too
        value = upgrade(value)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    from_data = data_fields(cls)
    for key, item in value.items():
        if key in from_data:
            raise ctx.error(_join(path, key), "set from the data section when the model is built; "
                                              "an experiment file does not set it")
        if key not in fields:
            hint = did_you_mean(str(key), list(fields)) or _moved_hint(cls, key, item, path)
            raise ctx.error(_join(path, key), f"unknown key{hint}")
        value_type = fields[key].metadata.get(KEYED)
        if value_type is not None:
            kwargs[key] = _convert_keyed(item, value_type, _join(path, key), ctx)
        else:
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


def _moved_hint(cls: type, key: str, item: Any, path: str) -> str:
    """' (now X)' when a former type of `cls`'s section (a registry alias) kept `key` and this
    version reads it at X: an old `--set data.answer_more_than=3` names its new place. A nested
    value (`--set data.vl.answer_more_than=3` of a former composed section) is followed to its one
    leaf, and the hint names the leaf's old and new paths."""
    inner = _single_leaf(item)
    for base, reg in _REGISTRY_FOR.items():
        if not (issubclass(cls, base) and cls is not base):
            continue
        for old in reg.aliases():
            if reg.resolve(old) != reg.name_of(cls):
                continue
            marker = object()
            try:
                _, upgraded = reg.upgrade(old, {key: _put_leaf(inner, marker) if inner else marker})
            except Exception:  # noqa: BLE001 - an upgrade that cannot read the key alone says nothing
                continue
            where = _path_of(upgraded, marker)
            if where is None or where == [key, *(inner or [])]:
                continue
            leaf = _leaf_value(item, inner) if inner else item
            try:  # the new place must take the value
                _build_dataclass(cls, _put(upgraded, where, leaf), path, _Ctx("hint"))
            except ConfigError:
                continue
            now = _join(path, ".".join(where))
            return f" ({_join(path, '.'.join([key, *inner]))} is now {now})" if inner else f" (now {now})"
    return ""


def _single_leaf(item: Any) -> list[str] | None:
    """The keys down to the one leaf of a nested mapping of single keys, else None."""
    keys: list[str] = []
    while isinstance(item, Mapping) and len(item) == 1:
        (k, item), = item.items()
        keys.append(str(k))
    return keys if keys and not isinstance(item, Mapping) else None


def _put_leaf(keys: list[str], leaf: object) -> dict:
    return {keys[0]: leaf if len(keys) == 1 else _put_leaf(keys[1:], leaf)}


def _leaf_value(item: Any, keys: list[str]) -> Any:
    for k in keys:
        item = item[k]
    return item


def _path_of(tree: Any, leaf: object) -> list[str] | None:
    if tree is leaf:
        return []
    if isinstance(tree, Mapping):
        for k, v in tree.items():
            found = _path_of(v, leaf)
            if found is not None:
                return [str(k), *found]
    return None


def _put(tree: dict, where: list[str], item: Any) -> dict:
    out = copy.deepcopy({k: v for k, v in tree.items() if k != where[0]})
    out[where[0]] = item if len(where) == 1 else _put(tree[where[0]], where[1:], item)
    return out


def _convert_keyed(value: Any, value_type: Any, path: str, ctx: _Ctx) -> dict[str, Any]:
    """A `keyed()` field: a mapping whose entries are the dataclasses their keys pick."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ctx.error(path, f"expected a mapping, got {_describe(value)}")
    out = {}
    for key, item in value.items():
        try:
            tp = value_type(str(key))
        except KeyError as e:
            raise ctx.error(_join(path, key), str(e.args[0]) if e.args else f"unknown key {key!r}") from None
        out[str(key)] = _convert(item, tp, _join(path, key), ctx)
    return out


def from_dict(raw: Any, *, source: str = "<config>") -> ExperimentConfig:
    """Validate a plain dict (parsed YAML) into an `ExperimentConfig`."""
    ctx = _Ctx(source)
    cfg = _build_dataclass(ExperimentConfig, raw, "", ctx)
    problem = experiment_problem(cfg)
    if problem is not None:
        raise ctx.error(*problem)
    return cfg


# --------------------------------------------------------------------------- files and overrides


def configs_dir() -> Path:
    """The experiment configs shipped with vlmt (`vlmt/configs/`, also reachable as `configs/` at
    the root of a checkout): installed with the package, so `vlmt demo` and the reproduce grids
    find them wherever vlmt is installed."""
    return Path(__file__).resolve().parent.parent / "configs"


def bundled_config(name: str) -> Path:
    """Path of the shipped config `name` (e.g. "tiny.yaml"); ConfigError when there is none."""
    path = configs_dir() / name
    if not path.is_file():
        known = ", ".join(sorted(p.name for p in configs_dir().glob("*.yaml")))
        raise ConfigError(f"configs/{name}: no such shipped config (shipped: {known})")
    return path


def shipped_configs() -> dict[str, Path]:
    """Name (file stem) -> path of every experiment config shipped with vlmt."""
    return {p.stem: p for p in sorted(configs_dir().glob("*.yaml"))}


def config_path(name_or_path: str | Path) -> Path:
    """The experiment file a user named: an existing file, or the shipped config of that name
    (`tiny`, `tiny.yaml`, `configs/tiny.yaml` all name `vlmt/configs/tiny.yaml`)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = shipped_configs()
    stem = path.name.removesuffix(".yaml").removesuffix(".yml")
    if stem in shipped and (len(path.parts) == 1 or path.parent.name == "configs"):
        return shipped[stem]
    raise ConfigError(f"{name_or_path}: config file not found, and no shipped config of that name "
                      f"(shipped: {', '.join(shipped)}; `vlmt configs list`)")


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
    """Read, override and validate one experiment file (a path, or a shipped config's name).

    Errors name the file; an error caused by an override names the override as its source.
    """
    path = config_path(path)
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
        skip = data_fields(type(obj)) if isinstance(obj, ModelConfig) else set()
        for f in dataclasses.fields(obj):
            if f.name not in skip:
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
