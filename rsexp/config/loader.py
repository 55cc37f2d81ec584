"""Building the config tree: YAML files and dotted ``key=value`` overrides into the
typed dataclasses of :mod:`rsexp.config.schema`, and typed changes of a built one
(:func:`with_values`, what a sweep trial or a confirmation row is made with).

A YAML file (``sweeps/<dataset>.yaml``) overrides some defaults; ``key=value`` arguments
override the YAML. An unknown key or a value of the wrong type raises
:class:`ConfigError` naming the dotted key (and the override or file it came from).
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from rsexp.config.redact import redact
from rsexp.config.schema import Config
from rsexp.config.sections import load_plugins, split_sections
from rsexp.core.settings import ConfigError
from rsexp.core.settings import check as _check


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        _check(isinstance(value, dict), key, f"expected a mapping, got {value!r}")
        return _build(tp, value, key)
    if origin is Literal:
        choices = typing.get_args(tp)
        _check(value in choices, key, f"must be one of {list(choices)}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: {value!r} does not match {tp}")
    if tp is type(None):
        _check(value is None, key, f"expected null, got {value!r}")
        return None
    if tp is bool:
        _check(isinstance(value, bool), key, f"expected true/false, got {value!r}")
        return value
    if tp is int:
        _check(
            isinstance(value, int) and not isinstance(value, bool),
            key,
            f"expected an integer, got {value!r}",
        )
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "3e-4" (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(f"{key}: expected a number, got {value!r}") from None
        _check(
            isinstance(value, (int, float)) and not isinstance(value, bool),
            key,
            f"expected a number, got {value!r}",
        )
        _check(math.isfinite(value), key, f"must be a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)  # tags such as `trial: 3`
        _check(isinstance(value, str), key, f"expected a string, got {value!r}")
        return value
    if origin is dict:
        _check(isinstance(value, dict), key, f"expected a mapping, got {value!r}")
        _, vt = typing.get_args(tp)
        return {str(k): _coerce(v, vt, f"{key}.{k}") for k, v in value.items()}
    if origin in (tuple, list):
        _check(isinstance(value, (list, tuple)), key, f"expected a list, got {value!r}")
        (arg, *_) = typing.get_args(tp) or (Any,)
        items = [_coerce(v, arg, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if tp is Any:
        return value
    raise ConfigError(f"{key}: unsupported field type {tp}")


def _build(cls: type, data: dict, prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    data = split_sections(prefix, data, names, _build)
    for k in data:
        if k not in names:
            where = f"{prefix}.{k}" if prefix else k
            raise ConfigError(f"unknown config key '{where}' (valid here: {', '.join(names)})")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            key = f"{prefix}.{f.name}" if prefix else f.name
            value = data[f.name]
            default = (
                f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            )
            if dataclasses.is_dataclass(hints[f.name]) and isinstance(value, dict):
                # a partial override keeps this field's own defaults for the rest
                if dataclasses.is_dataclass(default):
                    value = _merge(dataclasses.asdict(default), value)
            elif _dataclass_values(hints[f.name]) and isinstance(value, dict):
                # a mapping of dataclasses (sweep.space): an entry it has by default keeps
                # its defaults for what an override leaves out; other entries are added
                value = {
                    k: _merge(dataclasses.asdict(default[k]), v)
                    if isinstance(v, dict) and isinstance(default, dict) and k in default
                    else v
                    for k, v in value.items()
                }
                if isinstance(default, dict):
                    value = {**{k: dataclasses.asdict(d) for k, d in default.items()}, **value}
            kwargs[f.name] = _coerce(value, hints[f.name], key)
    try:
        return cls(**kwargs)
    except TypeError as e:  # pragma: no cover - guarded by the key check above
        raise ConfigError(f"{prefix or 'config'}: {e}") from e


def _dataclass_values(tp: Any) -> bool:
    """``dict[str, <dataclass>]``."""
    return typing.get_origin(tp) is dict and dataclasses.is_dataclass(typing.get_args(tp)[1])


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return out


def to_dict(cfg: Any) -> dict:
    """Nested plain dict (YAML/JSON-safe) of a config dataclass."""
    return dataclasses.asdict(cfg)


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """``{"loss": {"tau": 1}}`` -> ``{"loss.tau": 1}``."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict):
            out.update(flatten(v, key))
        else:
            out[key] = v
    return out


def parse_override(arg: str) -> tuple[str, Any]:
    """``"loss.tau=0.5"`` -> ``("loss.tau", 0.5)``; the value is parsed as YAML."""
    if "=" not in arg:
        raise ConfigError(f"override '{arg}' is not of the form key=value")
    key, raw = arg.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override '{arg}' has an empty key")
    return key, yaml.safe_load(raw) if raw.strip() else ""


SPACE = "sweep.space."
DIMENSION_FIELDS = ("low", "high", "log", "allow_zero", "step", "choices")


def _split(key: str) -> list[str]:
    """A dotted override key as the tree's path. A search dimension's name may itself be
    a dotted config key: ``sweep.space.optim.lr={low: ...}`` sets the dimension
    ``optim.lr``, ``sweep.space.optim.lr.high=0.01`` one of its fields."""
    if not key.startswith(SPACE):
        return key.split(".")
    name = key[len(SPACE) :]
    head, _, last = name.rpartition(".")
    if head and last in DIMENSION_FIELDS:
        return ["sweep", "space", head, last]
    return ["sweep", "space", name]


def _set_dotted(tree: dict, key: str, value: Any) -> None:
    parts = _split(key)
    node = tree
    for i, p in enumerate(parts[:-1]):
        nxt = node.setdefault(p, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"'{'.'.join(parts[: i + 1])}' is a value, cannot set '{key}'")
        node = nxt
    node[parts[-1]] = value


# loss.preset=released: the released training code's settings, for every key the YAML
# or the command line does not set itself
RELEASED = {
    "lambda_s": 0.15,
    "lambda_t": 0.25,
    "tau": 1.0,
    "consensus": "sharpened",
    "consensus_power": 1 / 0.7,
    "ce_on": "all_levels",
    "spatial_every": 10,
    "segments": {"split": "released"},
}


def _apply_preset(tree: dict) -> None:
    loss = tree.get("loss")
    if not isinstance(loss, dict) or loss.get("preset") != "released":
        return
    for key, value in RELEASED.items():
        if isinstance(value, dict):
            seg = loss.setdefault(key, {})
            if isinstance(seg, dict):
                for k, v in value.items():
                    seg.setdefault(k, v)
        else:
            loss.setdefault(key, value)


def from_dict(data: dict, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """The config of ``data`` (a YAML file's mapping) with ``overrides``, secret-looking
    values masked (:mod:`rsexp.config.redact`: once, here, where it comes in)."""
    tree = _deep_copy(data)
    for arg in overrides:
        key, value = parse_override(arg)
        _set_dotted(tree, key, value)
    _apply_preset(tree)
    load_plugins(tree.get("plugins") or ())  # their sections and registrations first
    return _build(Config, redact(tree))


def _deep_copy(d: dict) -> dict:
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in d.items()}


def _check_duplicates(node, path: str, file: Path) -> None:
    """PyYAML keeps the last of two equal keys silently; a config must not."""
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for k, v in node.value:
            dotted = f"{path}.{k.value}" if path else str(k.value)
            if k.value in seen:
                raise ConfigError(
                    f"{file}, line {k.start_mark.line + 1}: duplicate key '{dotted}'"
                )
            seen.add(k.value)
            _check_duplicates(v, dotted, file)
    elif isinstance(node, yaml.SequenceNode):
        for v in node.value:
            _check_duplicates(v, path, file)


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    text = path.read_text()
    try:
        _check_duplicates(yaml.compose(text, Loader=yaml.SafeLoader), "", path)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:  # where, then what: an editor's "file:line:col"
        mark = e.problem_mark or e.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        what = " ".join(x for x in (e.context, e.problem) if x)
        raise ConfigError(f"{path}: {where}invalid YAML: {what}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from e
    if data is None:
        raise ConfigError(
            f"{path}: the file is empty; give at least one setting ({{}} means all defaults)"
        )
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | tuple = ()) -> Config:
    """Load ``path`` (or the defaults) and apply dotted ``key=value`` overrides. An error
    names the override that caused it, or else the file."""
    data = load_yaml(path) if path else {}
    try:
        return from_dict(data, overrides)
    except ConfigError as e:
        raise ConfigError(f"{_blame(e, path, overrides)}{e}") from None


def _blame(e: ConfigError, path, overrides) -> str:
    """``"override k=v: "`` when the key in error was set on the command line (the key
    itself, a parent, or a child), else ``"<path>: "``."""
    m = re.match(r"unknown config key '([^']+)'|([\w.\[\]]+):", str(e))
    key = (m[1] or m[2]) if m else ""
    for arg in reversed(list(overrides)):
        k = arg.split("=", 1)[0].strip()
        if k == key or key.startswith(k + ".") or k.startswith(key + "."):
            return f"override {arg}: "
    return f"{path}: " if path else ""


def dump_yaml(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


def field_type(key: str, cls: type = Config) -> Any:
    """The declared type of the dotted config ``key``.

    Raises:
        ConfigError: the key is not in the config, naming where it stops.
    """
    tp: Any = cls
    parts = key.split(".")
    for i, part in enumerate(parts):
        if not dataclasses.is_dataclass(tp):
            raise ConfigError(f"unknown config key '{key}' ('{'.'.join(parts[:i])}' is a value)")
        hints = typing.get_type_hints(tp)
        if part not in hints:
            where = ".".join(parts[:i]) or "the config"
            raise ConfigError(f"unknown config key '{key}' (valid in {where}: {', '.join(hints)})")
        tp = hints[part]
    return tp


def with_values(cfg: Any, values: dict[str, Any]) -> Any:
    """``cfg`` with the dotted keys of ``values`` set, each coerced to its declared type
    and checked by the config's own rules (every dataclass on the way is rebuilt once,
    with all of its new values, by ``dataclasses.replace``, which runs its checks: two
    settings that must agree, such as the segment ratios, change together). The typed
    way a sweep trial, a confirmation row or a paper row is made from a base config.

    Raises:
        ConfigError: an unknown key, a value of the wrong type, or one the rules refuse,
            naming the key.
    """
    tree: dict = {}
    for key, value in values.items():
        field_type(key, type(cfg))  # an unknown key is named before anything else
        node = tree
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = (key, value)
    return _replace(cfg, tree)


def _replace(node: Any, tree: dict) -> Any:
    hints = typing.get_type_hints(type(node))
    changes = {}
    for name, sub in tree.items():
        if isinstance(sub, tuple):
            key, value = sub
            changes[name] = _coerce(value, hints[name], key)
        else:
            changes[name] = _replace(getattr(node, name), sub)
    return dataclasses.replace(node, **changes)
