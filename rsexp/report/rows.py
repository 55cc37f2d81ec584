"""Table rows: one row is one configuration.

Runs are averaged only when their resolved configs differ in the seed alone (and in
bookkeeping that cannot change a number: where the run was written, its tags, the
trackers, thread and worker counts). Rows of one (dataset, model) that differ are
separate rows, labelled by what differs:

- the baseline (``loss.lambda_s = loss.lambda_t = 0``) is the model's name, ``TSViT``;
- the RS configuration with the most seeds is ``TSViT + RS``; one that differs from it
  only in a term switched off is ``TSViT + spatial`` (``lambda_t = 0``) or
  ``TSViT + temporal`` (``lambda_s = 0``), the ablation's names; any other names the
  keys it differs in: ``TSViT + RS (λ_s = 2)``. Without one RS row of the most seeds,
  every RS row is named by the keys the RS rows differ in.

A row's change is measured against its own baseline: the baseline row whose config is
the row's with both terms off, over the seeds both have. ``n`` counts distinct seeds; two
finished runs of one config and seed are one run (the newest), with a note.

The component ablation (paper Table 3 layout: CE only, + spatial, + temporal, + both) is
found wherever a config with both terms on has its three variants beside it (the
sweep's confirmation stage trains them), over the seeds all four share.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from rsexp.config.scope import BOOKKEEPING, BOOKKEEPING_PREFIXES, applies
from rsexp.report.collect import RunRecord
from rsexp.report.labels import ABLATION, ROW_LABELS, model_name

LAMBDAS = ("loss.lambda_s", "loss.lambda_t")
SHORT = {
    "loss.lambda_s": "λ_s",
    "loss.lambda_t": "λ_t",
    "loss.tau": "τ",
    "loss.segments.immediate": "immediate",
    "loss.segments.contextual": "contextual",
    "guidance.coverage": "coverage",
}


def identity(config: dict[str, str]) -> dict[str, str]:
    """The part of a flattened config that decides a run's numbers, seed aside."""
    return {
        k: v
        for k, v in config.items()
        if k not in BOOKKEEPING and not k.startswith(BOOKKEEPING_PREFIXES) and applies(k, config)
    }


def _key(ident: dict[str, str]) -> tuple:
    return tuple(sorted(ident.items()))


def _off(ident: dict[str, str], *keys: str) -> dict[str, str]:
    """``ident`` with the terms ``keys`` switched off (how a zero weight is spelled)."""
    return {**ident, **{k: "0.0" for k in keys if k in ident}}


def _number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def shown_url(value: str) -> str:
    x = _number(value)
    return f"{x:g}" if x is not None else value


@dataclass
class Row:
    """One configuration of one (dataset, model): its runs, one per seed."""

    dataset: str
    model: str  # the record's model (``timesformer*`` for pretrained rows)
    method: str
    config: dict[str, str]
    runs: list[RunRecord]
    label: str = ""
    baseline: Row | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def seeds(self) -> list[int]:
        return [r.seed for r in self.runs]

    def on_seeds(self, seeds) -> list[RunRecord]:
        return [r for r in self.runs if r.seed in set(seeds)]

    @property
    def model_label(self) -> str:
        base = model_name(self.model.rstrip("*"))
        return base + ("*" if self.model.endswith("*") else "")


def _rows_of(records: list[RunRecord]) -> list[Row]:
    """Group runs of one (dataset, model, method) by configuration; one run per seed."""
    groups: dict[tuple, list[RunRecord]] = defaultdict(list)
    for r in records:
        groups[_key(identity(r.config))].append(r)
    rows = []
    for _, runs in groups.items():
        by_seed: dict[int, list[RunRecord]] = defaultdict(list)
        for r in runs:
            by_seed[r.seed].append(r)
        kept, notes = [], []
        for seed in sorted(by_seed):
            same = sorted(by_seed[seed], key=lambda r: (r.ended, r.run_id))
            kept.append(same[-1])
            if len(same) > 1:
                notes.append(
                    f"seed {seed} has {len(same)} finished runs of this config "
                    f"({', '.join(r.run_id for r in same)}); counted once, as the newest "
                    f"({same[-1].run_id})"
                )
        r = runs[0]
        rows.append(Row(r.dataset, r.model, r.method, identity(r.config), kept, notes=notes))
    # most seeds first, then a stable order of the configs
    rows.sort(key=lambda row: (-len(row.runs), _key(row.config)))
    return rows


def _differing(rows: list[Row]) -> list[str]:
    keys = sorted({k for row in rows for k in row.config})
    return [k for k in keys if len({row.config.get(k, "—") for row in rows}) > 1]


def _named(row: Row, keys: list[str], most: int = 3) -> str:
    parts = [f"{SHORT.get(k, k)} = {shown_url(row.config.get(k, '—'))}" for k in keys[:most]]
    if len(keys) > most:
        parts.append(f"+{len(keys) - most} more")
    return ", ".join(parts)


def _label_family(rows: list[Row], head: str, variants: dict[str, str]) -> None:
    """Label ``rows`` (all baseline or all RS rows of one model): the one of the most
    seeds, if there is one, is ``head``; a row that is it with one term off takes its
    name from ``variants``; the rest are named by the keys they differ in."""
    if not rows:
        return
    primary = rows[0] if len(rows) == 1 or len(rows[0].runs) > len(rows[1].runs) else None
    if primary is None:
        keys = _differing(rows)
        for row in rows:
            row.label = f"{head} ({_named(row, keys)})"
        return
    primary.label = head
    for row in rows[1:]:
        diff = _differing([primary, row])
        name = None
        for term, variant in variants.items():
            if diff == [term] and row.config.get(term) == "0.0":
                name = variant
        row.label = name or f"{head} ({_named(row, diff)})"


def _unique(rows: list[Row]) -> None:
    seen: dict[str, int] = {}
    for row in rows:
        if row.label in seen:
            seen[row.label] += 1
            row.label = f"{row.label} [{seen[row.label]}]"
        else:
            seen[row.label] = 1


def _pair_baselines(rows: list[Row]) -> None:
    """Each RS row's baseline: the baseline row of its config with both terms off; else,
    when the model has one baseline row, that one, with a note naming what differs."""
    baselines = [r for r in rows if r.method == "baseline"]

    def but_terms(config: dict) -> tuple:  # the method tag says which terms are off
        return _key({k: v for k, v in config.items() if k not in LAMBDAS})

    for row in rows:
        if row.method == "baseline":
            continue
        want = but_terms(row.config)
        exact = [b for b in baselines if but_terms(b.config) == want]
        if exact:
            row.baseline = exact[0]
        elif len(baselines) == 1:
            row.baseline = baselines[0]
            diff = [k for k in _differing([row, baselines[0]]) if k not in LAMBDAS]
            row.notes.append(
                f"compared with {baselines[0].label}, whose config also differs in "
                + ", ".join(f"{SHORT.get(k, k)}" for k in diff)
            )


def group_rows(records: list[RunRecord]) -> dict[str, list[Row]]:
    """``{dataset: [rows]}``; per model: baselines first, then the RS rows, each family
    with its row of the most seeds first."""
    by: dict[tuple, list[RunRecord]] = defaultdict(list)
    for r in records:
        by[(r.dataset, r.model, r.method)].append(r)
    out: dict[str, list[Row]] = defaultdict(list)
    for ds in sorted({k[0] for k in by}):
        for model in sorted({k[1] for k in by if k[0] == ds}):
            base = _rows_of(by.get((ds, model, "baseline"), []))
            rs = _rows_of(by.get((ds, model, "rs"), []))
            head = (base or rs)[0].model_label
            _label_family(base, head, {})
            _label_family(
                rs,
                f"{head} + RS",
                {
                    "loss.lambda_t": f"{head} {ROW_LABELS['spatial']}",
                    "loss.lambda_s": f"{head} {ROW_LABELS['temporal']}",
                },
            )
            # the ablation's variants right after the row they vary, in its order
            order = [f"{head} + RS", f"{head} {ROW_LABELS['spatial']}",
                     f"{head} {ROW_LABELS['temporal']}"]  # fmt: skip
            rs.sort(key=lambda r: order.index(r.label) if r.label in order else len(order))
            rows = [*base, *rs]
            _unique(rows)
            _pair_baselines(rows)
            out[ds] += rows
    return dict(out)


@dataclass
class Ablation:
    """The component ablation of one config with both terms on (``both``)."""

    dataset: str
    model_label: str
    both: Row
    rows: dict[str, Row]  # ce, spatial, temporal, both -> row
    seeds: list[int]

    def runs(self, component: str) -> list[RunRecord]:
        return self.rows[component].on_seeds(self.seeds)


def ablations(rows: list[Row]) -> list[Ablation]:
    """Every ablation among one dataset's ``rows`` (see the module docstring)."""
    out = []
    index = {(r.model, _key(r.config)): r for r in rows}
    for both in rows:
        lam = [_number(both.config.get(k, "")) for k in LAMBDAS]
        if both.method != "rs" or not all(x is not None and x > 0 for x in lam):
            continue
        variants = {
            "ce": _off(both.config, *LAMBDAS),
            "spatial": _off(both.config, "loss.lambda_t"),
            "temporal": _off(both.config, "loss.lambda_s"),
        }
        found = {c: index.get((both.model, _key(v))) for c, v in variants.items()}
        if any(r is None for r in found.values()):
            continue
        found["both"] = both
        seeds = sorted(set.intersection(*(set(r.seeds) for r in found.values())))
        if seeds:
            out.append(
                Ablation(both.dataset, both.model_label, both, {c: found[c] for c in ABLATION},
                         seeds)
            )  # fmt: skip
    return out
