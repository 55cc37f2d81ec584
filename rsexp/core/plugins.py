"""Installed plugins: packages that declare an ``rsexp.plugins`` entry point (in their
``pyproject.toml``: ``[project.entry-points."rsexp.plugins"] name = "module"``) and
register datasets, models, annotators, trackers or config sections when imported.
Loaded once, lazily: when a registry is first consulted or a config names a section no
one registered. Standard library only (``rsexp config`` imports this, never torch).
"""

from __future__ import annotations

PLUGIN_GROUP = "rsexp.plugins"
_entry_points: dict[str, str] = {}  # loaded: name -> value; a broken one: name -> error


def load_entry_points() -> dict[str, str]:
    """Import every installed plugin (the ``rsexp.plugins`` entry-point group, declared
    in a plugin's ``pyproject.toml``), once, when a registry is first consulted. A plugin
    that fails to import is left out with a warning naming it; unrelated commands go on.
    Returns ``{entry point name: what was loaded, or why not}``."""
    if _entry_points:
        return _entry_points
    import warnings
    from importlib.metadata import entry_points

    _entry_points["__loading__"] = ""  # a plugin importing rsexp while it loads: once
    for ep in entry_points(group=PLUGIN_GROUP):
        try:
            ep.load()
            _entry_points[ep.name] = ep.value
        except Exception as e:  # noqa: BLE001 (any plugin's bug: named, left out, said)
            _entry_points[ep.name] = f"failed: {type(e).__name__}: {e}"
            warnings.warn(
                f"rsexp plugin {ep.name!r} ({ep.value}) could not be loaded and is left out: "
                f"{type(e).__name__}: {e}",
                RuntimeWarning,
                stacklevel=3,
            )
    return _entry_points


def broken_plugins() -> list[str]:
    """The installed plugins that failed to load, each with why."""
    return [f"{k} ({v})" for k, v in _entry_points.items() if v.startswith("failed")]
