"""Plugins' typed config sections (``data.<name>.*``, ``model.<name>.*``) and the
``plugins:`` modules that register them (and their datasets, models, annotators)."""

from __future__ import annotations

import dataclasses

from rsexp.core.plugins import load_entry_points
from rsexp.core.settings import ConfigError

# plugin config sections: "data.<name>" / "model.<name>" -> the plugin's dataclass
# (register_section)
SECTIONS: dict[str, type] = {}
SECTION_PARENTS = ("data", "model")


def register_section(key: str, cls: type) -> type:
    """A plugin's typed config section, e.g. ``register_section("data.toy", ToyConfig)``
    or ``register_section("model.mynet", MyNetConfig)``: ``data.toy.*`` in YAML or
    overrides is built as ``ToyConfig``, checked like the rest, and reached as
    ``cfg.data.sections["toy"]`` (a model's as ``cfg.model.sections["mynet"]``, the
    ``ModelConfig`` its builder is given)."""
    parent, _, name = key.rpartition(".")
    if parent not in SECTION_PARENTS or not name:
        raise ValueError(f"a plugin's section is data.<name> or model.<name>, got {key!r}")
    if not dataclasses.is_dataclass(cls):
        raise ValueError(f"the section {key} must be a dataclass, got {cls!r}")
    SECTIONS[key] = cls
    return cls


def load_plugins(modules) -> None:
    """Import each plugin module (``plugins:``); one that cannot be imported is an error
    naming it and where Python looked."""
    import importlib
    import sys

    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise ConfigError(
                f"plugins: cannot import {module!r} ({e}); Python looked in "
                f"{', '.join(p for p in sys.path if p) or '(nothing)'}"
            ) from None


def split_sections(prefix: str, data: dict, names: list[str], build) -> dict:
    """Move the ``<prefix>.<name>`` keys of registered sections (prefix ``data`` or
    ``model``) into ``<prefix>.sections`` and build each as its dataclass (an
    unregistered name stays for the unknown-key error). ``build(cls, values, prefix)``
    makes one, checked as the loader checks every section."""
    if prefix not in SECTION_PARENTS:
        return data
    data = dict(data)
    if any(k not in names and f"{prefix}.{k}" not in SECTIONS for k in data):
        load_entry_points()  # an installed plugin's section, perhaps
    sections = dict(data.pop("sections", {}) or {})
    for k in [k for k in data if k not in names and f"{prefix}.{k}" in SECTIONS]:
        sections[k] = data.pop(k)
    built = {}
    for k, v in sections.items():
        if f"{prefix}.{k}" not in SECTIONS:
            load_entry_points()
        if f"{prefix}.{k}" not in SECTIONS:
            raise ConfigError(
                f"unknown config section '{prefix}.{k}' (no plugin registered it; "
                f"registered: {', '.join(SECTIONS) or 'none'})"
            )
        cls = SECTIONS[f"{prefix}.{k}"]
        built[k] = v if isinstance(v, cls) else build(cls, v or {}, f"{prefix}.{k}")
    if built:
        data["sections"] = built
    return data
