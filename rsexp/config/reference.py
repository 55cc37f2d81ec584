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

from rsexp.config.schema import Config
from rsexp.config.sections import SECTIONS


@dataclasses.dataclass(frozen=True)
class Key:
    """One setting: its dotted key, declared type (as written), default, comment and what
    its section checks of it."""

    key: str
    type: str
    default: Any
    comment: str
    checks: str = ""


def field_comments(cls: type) -> dict[str, tuple[str, str]]:
    """``{field: (type as written, comment)}`` of a dataclass, read from its source: the
    comment lines right above the field, then the one at the end of its line. A class
    without source (built at run time) has its annotations and no comments."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {f.name: (str(f.type), "") for f in dataclasses.fields(cls)}
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


def field_checks(cls: type) -> dict[str, list[str]]:
    """``{dotted key: [message, ...]}``: what the dataclass's ``__post_init__`` checks,
    read from its ``check(condition, "key", "message")`` calls."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    out: dict[str, list[str]] = {}
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and len(node.args) == 3):
            continue
        name = getattr(node.func, "id", "")
        key, msg = node.args[1], node.args[2]
        if name.lstrip("_") == "check" and isinstance(key, ast.Constant):
            out.setdefault(key.value, []).append(_message(msg))
    return out


def _message(node: ast.expr) -> str:
    """A check's message as written; an f-string's fields as ``{name}``."""
    if isinstance(node, ast.Constant):
        return str(node.value)
    if isinstance(node, ast.JoinedStr):
        return "".join(
            str(v.value)
            if isinstance(v, ast.Constant)
            else "{" + ast.unparse(v.value).removeprefix("self.") + "}"
            for v in node.values
        )
    return ast.unparse(node)


def default_of(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def sections(cls: type = Config, prefix: str = "") -> list[tuple[str, type, list[Key]]]:
    """``(dotted prefix, dataclass, its keys)`` for ``cls`` and every dataclass below it,
    in source order; a mapping of dataclasses (``sweep.space``) is one ``<name>`` section."""
    hints = typing.get_type_hints(cls)
    written = field_comments(cls)
    checks = field_checks(cls)
    keys, below = [], []
    for f in dataclasses.fields(cls):
        key = f"{prefix}.{f.name}" if prefix else f.name
        tp, comment = written[f.name]
        keys.append(Key(key, tp, default_of(f), comment, "; ".join(checks.get(key, []))))
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
        "its dotted key, its type as declared, its default, the comment written above it "
        "in the source, and what the section checks of its value when a config is built. "
        "Set any key in a YAML file (nested as the dots say) or on the command line as "
        "`key=value` (the value is read as YAML: `track.backends=[mlflow,wandb]`); "
        "`rsexp config` prints the resolved tree. An unknown key, a wrong type or a value "
        "the checks refuse stops with an error naming the key.",
        "",
    ]
    for prefix, cls, keys in sections():
        out += [f"## `{prefix}` {{#{_anchor(prefix)}}}" if prefix else "## Top level", ""]
        out += _table(cls, keys)
    out += _mapping_defaults(Config())
    out += [
        "## Plugin sections",
        "",
        "A plugin adds a typed section of its own under `data.<name>` or `model.<name>` with "
        '`rsexp.config.register_section("data.<name>", ItsDataclass)`; its keys are then '
        "checked like these (see [Extending](../extending.md)). Registered when this page "
        f"was built: {', '.join(f'`{k}`' for k in sorted(SECTIONS)) or 'none'}.",
        "",
    ]
    for key, cls in sorted(SECTIONS.items()):
        for prefix, sub, keys in sections(cls, key):
            out += [f"### `{prefix}`", ""]
            out += _table(sub, keys)
    return "\n".join(out)


def _table(cls: type, keys: list[Key]) -> list[str]:
    """A section's class, docstring and one row per key."""
    out = [f"`{cls.__module__}.{cls.__name__}`"]
    doc = _docstring(cls)
    out += ["", _text(doc)] if doc else []
    out += ["", "| key | type | default | what it is | checked |"]
    out += ["| --- | --- | --- | --- | --- |"]
    for k in keys:
        if dataclasses.is_dataclass(k.default):
            default = f"[section](#{_anchor(k.key)})"
        elif _entries(k.default):
            default = f"[{len(k.default)} entries](#default-{_anchor(k.key)})"
        else:
            default = f"`{_value(k.default)}`"
        row = f"| {_text(f'`{k.key}`')} | `{_text(k.type)}` | {default} | {_text(k.comment)} |"
        out.append(f"{row} {_text(k.checks)} |")
    for key, msgs in field_checks(cls).items():
        if key not in {k.key for k in keys}:
            out += ["", _text(f"Also checked, `{key}`: {'; '.join(msgs)}.")]
    return [*out, ""]


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
