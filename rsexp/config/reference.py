"""The config reference, written from the schema itself: every key of the tree with its
declared type, its default and the comment above it in the source (what a person reads in
``schema.py``), one table per section. The documentation site builds its config page
from :func:`markdown`, so a key added, renamed or re-commented shows there at once."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import re
import textwrap
import tokenize
import typing
from typing import Any

from rsexp.config.loader import SECTIONS
from rsexp.config.schema import Config


@dataclasses.dataclass(frozen=True)
class Key:
    """One setting: its dotted key, declared type (as written), default and comment."""

    key: str
    type: str
    default: Any
    comment: str


def field_comments(cls: type) -> dict[str, tuple[str, str]]:
    """``{field: (type as written, comment)}`` of a dataclass, read from its source: the
    comment lines right above the field, then the one at the end of its line."""
    lines, _ = inspect.getsourcelines(cls)
    source = textwrap.dedent("".join(lines))
    comments = {}  # line number -> comment text
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
    code_lines = source.splitlines()
    out = {}
    for node in ast.parse(source).body[0].body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        above, n = [], node.lineno - 1
        while n >= 1 and code_lines[n - 1].strip().startswith("#"):
            above.insert(0, comments[n])
            n -= 1
        trailing = comments.get(node.end_lineno, "")
        text = " ".join(p for p in (*above, trailing) if p)
        out[node.target.id] = (ast.unparse(node.annotation), text)
    return out


def default_of(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def sections(cls: type = Config, prefix: str = "") -> list[tuple[str, type, list[Key]]]:
    """``(dotted prefix, dataclass, its keys)`` for ``cls`` and every dataclass below it,
    in source order; a mapping of dataclasses (``sweep.space``) is one ``<name>`` section."""
    hints = typing.get_type_hints(cls)
    written = field_comments(cls)
    keys, below = [], []
    for f in dataclasses.fields(cls):
        key = f"{prefix}.{f.name}" if prefix else f.name
        tp, comment = written[f.name]
        keys.append(Key(key, tp, default_of(f), comment))
        if dataclasses.is_dataclass(hints[f.name]):
            below += sections(hints[f.name], key)
        elif typing.get_origin(hints[f.name]) is dict:
            value = typing.get_args(hints[f.name])[1]
            if dataclasses.is_dataclass(value):
                below += sections(value, f"{key}.<name>")
    return [(prefix, cls, keys), *below]


def _text(s: str) -> str:
    """Comment or docstring text as one Markdown table cell."""
    s = re.sub(r":(?:class|func|mod|meth|attr):`~?([^`]+)`", r"`\1`", s)
    s = s.replace("``", "`")
    # outside code spans: HTML-escape, and keep * and | literal
    parts = s.split("`")
    for i in range(0, len(parts), 2):
        parts[i] = (
            parts[i]
            .replace("&", "&amp;")
            .replace("<", "&lt;")
            .replace(">", "&gt;")
            .replace("*", r"\*")
        )
    return "`".join(parts).replace("|", r"\|").replace("\n", " ")


def _value(v: Any) -> str:
    """A default as it is written in YAML."""
    if dataclasses.is_dataclass(v):
        return "(section below)"
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, (tuple, list)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{}" if not v else "{" + ", ".join(v) + "}"
    return repr(v)


def _docstring(cls: type) -> str:
    doc = cls.__doc__ or ""
    return "" if doc.startswith(f"{cls.__name__}(") else inspect.cleandoc(doc)


def _anchor(prefix: str) -> str:
    return prefix.replace(".", "-").replace("<", "").replace(">", "") or "top-level"


def markdown() -> str:
    """The config reference page: one section per dataclass of the tree."""
    out = [
        "# Config reference",
        "",
        "Every setting of the typed config tree, generated from the dataclasses in "
        "`rsexp/config/schema.py`, `rsexp/config/space.py` and `rsexp/core/settings.py`: "
        "its dotted key, its type as declared, its default, and the comment written above "
        "it in the source. Set any key in a YAML file (nested as the dots say) or on the "
        "command line as `key=value` (the value is read as YAML: `track.backends=[mlflow,"
        "wandb]`); `rsexp config` prints the resolved tree. An unknown key, a wrong type "
        "or a value the section's checks refuse stops with an error naming the key.",
        "",
    ]
    for prefix, cls, keys in sections():
        title = prefix or "Top level"
        out += [f"## `{title}` {{#{_anchor(prefix)}}}" if prefix else "## Top level", ""]
        out.append(f"`{cls.__module__}.{cls.__name__}`")
        doc = _docstring(cls)
        out += ["", _text(doc)] if doc else []
        out += ["", "| key | type | default | what it is |", "| --- | --- | --- | --- |"]
        for k in keys:
            if dataclasses.is_dataclass(k.default):
                default = f"[section](#{_anchor(k.key)})"
            elif _entries(k.default):
                default = f"[{len(k.default)} entries](#default-{_anchor(k.key)})"
            else:
                default = f"`{_value(k.default)}`"
            key = _text(f"`{k.key}`")
            out.append(f"| {key} | `{_text(k.type)}` | {default} | {_text(k.comment)} |")
        out.append("")
    out += _mapping_defaults(Config())
    out += [
        "## Plugin sections",
        "",
        "A plugin adds a typed section of its own under `data.<name>` with "
        '`rsexp.config.register_section("data.<name>", ItsDataclass)`; its keys are then '
        "checked like these (see [Extending](../extending.md)).",
        "",
    ]
    for key, cls in sorted(SECTIONS.items()):
        out += [f"### `{key}`", "", "| key | type | default | what it is |"]
        out += ["| --- | --- | --- | --- |"]
        written = field_comments(cls)
        for f in dataclasses.fields(cls):
            tp, comment = written[f.name]
            row = f"| `{key}.{f.name}` | `{_text(tp)}` | `{_value(default_of(f))}` |"
            out.append(f"{row} {_text(comment)} |")
        out.append("")
    return "\n".join(out)


def _entries(value: Any) -> bool:
    """A non-empty mapping of dataclasses (``sweep.space``)."""
    return (
        isinstance(value, dict)
        and bool(value)
        and all(dataclasses.is_dataclass(v) for v in value.values())
    )


def _mapping_defaults(cfg: Any, prefix: str = "") -> list[str]:
    """The default entries of each mapping of dataclasses (the paper's search space)."""
    out = []
    for f in dataclasses.fields(cfg):
        key = f"{prefix}.{f.name}" if prefix else f.name
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            out += _mapping_defaults(value, key)
        elif _entries(value):
            names = [g.name for g in dataclasses.fields(next(iter(value.values())))]
            out += [f"## Default `{key}` {{#default-{_anchor(key)}}}", ""]
            out += ["| key | " + " | ".join(f"`.{n}`" for n in names) + " |"]
            out += ["| --- " * (len(names) + 1) + "|"]
            for name, entry in value.items():
                cells = " | ".join(f"`{_value(getattr(entry, n))}`" for n in names)
                out.append(f"| `{key}.{name}` | {cells} |")
            out.append("")
    return out
