"""MkDocs hooks: the pages written from the code rather than typed.

- ``reference/config.md``: every config key, from the dataclasses
  (:mod:`rsexp.config.reference`);
- ``reference/api.md``: one mkdocstrings block per name of the public API, read from
  ``_PUBLIC`` in ``rsexp/__init__.py`` (grouped by the comments there), so a name added
  to the API is documented, and a stale one fails the strict build;
- the benchmark tables of ``performance.md``, from ``benchmarks/results.json`` (the file
  ``make bench`` writes), where the page says ``<!-- benchmarks/results.json -->``.
"""

from __future__ import annotations

import inspect
import json
import re
import sys
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results.json"
MARKER = "<!-- benchmarks/results.json -->"


def on_files(files, config):
    if sys.path[0] != str(ROOT):  # this checkout's rsexp, not an installed copy
        sys.path.insert(0, str(ROOT))
    from rsexp.config import reference

    files.append(File.generated(config, "reference/config.md", content=reference.markdown()))
    files.append(File.generated(config, "reference/api.md", content=api_markdown()))
    return files


def on_page_markdown(markdown, page, config, files):
    if MARKER in markdown:
        markdown = markdown.replace(MARKER, benchmark_markdown(json.loads(RESULTS.read_text())))
    return markdown


# ---------------------------------------------------------------- API reference


def public_api() -> list[tuple[str, list[tuple[str, str]]]]:
    """``[(group, [(name, module), ...]), ...]``: every name of ``rsexp._PUBLIC`` (the
    lazy re-exports behind ``rsexp.__all__``), in its order, grouped by the comment line
    above its entry in ``rsexp/__init__.py``."""
    import rsexp

    group, group_of = "Public API", {}
    for line in inspect.getsource(rsexp).splitlines():
        if line.strip().startswith("#"):
            group = line.strip().lstrip("#").strip()
        elif m := re.match(r'\s*"(\w+)"\s*:', line):
            group_of[m.group(1)] = group
    groups: list[tuple[str, list[tuple[str, str]]]] = []
    for name, module in rsexp._PUBLIC.items():
        group = group_of.get(name, "More")
        if not groups or groups[-1][0] != group:
            groups.append((group, []))
        groups[-1][1].append((name, module))
    return groups


def api_markdown() -> str:
    import rsexp

    out = [
        "# API reference",
        "",
        "The public API of `rsexp`, for your own models and training loops: every name in "
        "`rsexp.__all__`, documented from its docstring. Everything else in the package is "
        "internal and may change. Import the names from `rsexp` itself "
        "(`rsexp.attention_tap`): they load on first use, so `import rsexp` stays light.",
        "",
        *(["```python", *code, "```", ""] if (code := _example(rsexp.__doc__ or "")) else []),
        f"`rsexp.__version__` is the package version (`{rsexp.__version__}`).",
        "",
        "| name | defined in |",
        "| --- | --- |",
        *(
            f"| [`rsexp.{name}`](#{module}.{name}) | `{module}` |"
            for _, names in public_api()
            for name, module in names
        ),
        "",
    ]
    for group, names in public_api():
        out += [f"## {group[:1].upper()}{group[1:]}", ""]
        for name, module in names:
            out += [
                f"::: {module}.{name}",
                "    options:",
                f'      heading: "rsexp.{name}"',
                f'      toc_label: "{name}"',
                "",
            ]
    return "\n".join(out)


def _example(doc: str) -> list[str]:
    """The indented code block of the package docstring (after ``::``), if it has one."""
    if "::" not in doc:
        return []
    lines = doc.split("::", 1)[-1].splitlines()
    code = []
    for line in lines[1:]:
        if line.strip() and not line.startswith("    "):
            break
        code.append(line[4:])
    while code and not code[-1].strip():
        code.pop()
    while code and not code[0].strip():
        code.pop(0)
    return code


# ---------------------------------------------------------------- benchmark figures

SECTION_TITLES = {
    "cli": "Command start",
    "losses": "Vectorised losses vs a per-sample, per-frame loop (forward + backward)",
    "rs_cost": "An RS train step vs the CE-only step (same model and batch)",
    "overhead": "Platform overhead: an epoch of the real loop vs the bare model",
    "pipeline": "Input pipeline: DataLoader wait on the clip cache",
    "sweep": "`make sweep`: median pruner vs none",
    "hf_tap": "Hugging Face models: `attention_tap` + spatial loss vs the bare CE step",
}
# the figure each case is judged by, in order of preference
LEAD = ("ratio", "speedup", "seconds", "warm_wait_frac", "wall_s")
UNITS = {"_per_s": "/s", "_ms": " ms", "_s": " s", "seconds": " s", "_frac": ""}


def _label(key: str) -> str:
    """``loop_epoch_s`` -> ``loop epoch``: the name without its unit."""
    for suffix in UNITS:
        if key.endswith(suffix) and key != suffix.strip("_"):
            key = key.removesuffix(suffix) + ("_per_s" if suffix == "_per_s" else "")
            break
    return key.replace("_per_s", "").replace("_", " ")


def _fmt(key: str, value) -> str:
    if key.endswith("_frac"):
        return f"{value * 100:.1f} %"
    if key in ("ratio", "speedup") or key.endswith("_ratio"):
        return f"{value}×"
    for suffix, unit in UNITS.items():
        if key.endswith(suffix):
            return f"{value}{unit}"
    return str(value)


def _met(lead_key: str, value, target: str) -> str:
    """Whether ``value`` meets a target such as ``<= 1.05x``, ``>= 50x``, ``< 5 %``."""
    parts = target.split()
    if len(parts) < 2 or parts[0] not in ("<", "<=", ">", ">="):
        return target or "reported"
    try:
        bound = float(parts[1].rstrip("x%"))
    except ValueError:
        return target
    if lead_key.endswith("_frac") or parts[-1] == "%":
        value = value * 100
    ok = {"<": value < bound, "<=": value <= bound, ">": value > bound, ">=": value >= bound}
    return f"{target}: {'met' if ok[parts[0]] else '**not met**'}"


def benchmark_markdown(results: dict) -> str:
    """``benchmarks/results.json`` as one table per section: the case, its lead figure,
    the rest of what was measured, and the target with whether it is met."""
    out = [f"Machine: {results.get('_machine', '?')}.", ""]
    for section, cases in results.items():
        if section.startswith("_"):
            continue
        out += [f"**{SECTION_TITLES.get(section, section)}** (`{section}`)", ""]
        out += ["| case | measured | details | target |", "| --- | --- | --- | --- |"]
        for case, r in cases.items():
            lead = next((k for k in LEAD if k in r), None)
            details = [
                f"{_label(k)} {_fmt(k, v)}"
                for k, v in r.items()
                if k not in ("target", "segment_views", "note", lead)
            ]
            if "segment_views" in r:
                details.append(f"segment views alone {_fmt('ratio', r['segment_views']['ratio'])}")
            shown = f"**{_fmt(lead, r[lead])}**" if lead else ""
            if lead not in (None, "ratio", "speedup", "seconds"):
                shown += f" ({_label(lead)})"
            target = _met(lead, r[lead], r.get("target", "")) if lead else r.get("target", "")
            out.append(f"| {case} | {shown} | {', '.join(details)} | {target} |")
        out.append("")
    return "\n".join(out)
