"""``make wandb-dashboard``: the W&B workspace and report of an rsexp project, as code
(the ``wandb-workspaces`` package).

Workspace sections: the Fig. 5 losses by epoch (total, CE, spatial, temporal), accuracy
and validation losses, the attention overlays (a media panel, slider by epoch), and the
sweep (parallel coordinates of the swept knobs against the objective, parameter
importance). Report: the tables ``rsexp tables`` wrote, above the same panels.

Logged in to W&B (``WANDB_API_KEY`` or ``wandb login``), both are saved to the project
and their URLs printed; otherwise (or with ``--offline``) the spec is written as JSON,
and the same command run later on a logged-in machine creates them.

    python dashboards/wandb_dashboard.py [--project rsexp] [--entity E] [--runs runs]
        [--run RUN_FOLDER] [--tables runs/.../reports] [--out FILE] [--offline]

Every metric and config key the panels name is one a real run records
(``tests/test_dashboard.py`` checks them against a run's metrics, params and overlays).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import pydantic

# wandb-workspaces still declares its models with pydantic v1 validators
warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"wandb_workspaces\.")
import wandb_workspaces.reports.v2 as wr  # noqa: E402
import wandb_workspaces.workspaces as ws  # noqa: E402

from rsexp.sweep import space as sp  # noqa: E402

# Fig. 5's four panels are total, accuracy, spatial and temporal; CE completes the sum
LOSSES = ["loss/total", "loss/ce", "loss/spatial", "loss/temporal"]
ACCURACY = ["val/top1", "val/top5"]
VAL_LOSSES = ["val/clip_loss", "val/loss_spatial"]
OBJECTIVE = "val/top1"


def knob_keys(cfg) -> list[str]:
    """The swept settings of ``cfg.sweep.space`` as a run's config names them (the
    dotted keys W&B holds), those the sweep varies: from the space itself, so a
    dimension added to it (``optim.lr``) shows here too."""
    return [
        sp.setting(name)
        for name, dim in cfg.sweep.space.items()
        if dim.choices is not None or dim.low != dim.high
    ]


X = "epoch"  # every metric is logged against the epoch (one W&B step per epoch)


def overlay_keys(run: Path | None) -> list[str]:
    """The image keys a run logged (``overlay/<clip id>``, ``overlay/segmentation``),
    from its ``overlays/`` folder."""
    if run is None or not (run / "overlays").is_dir():
        return []
    return sorted(f"overlay/{p.name}" for p in (run / "overlays").iterdir() if p.is_dir())


def latest_run(runs: Path) -> Path | None:
    """The newest run folder under ``runs`` that has overlays."""
    found = sorted(
        (p.parent for p in runs.rglob("summary.json") if (p.parent / "overlays").is_dir()),
        key=lambda p: (p / "summary.json").stat().st_mtime,
    )
    return found[-1] if found else None


def _lines(keys: list[str]) -> list:
    return [wr.LinePlot(title=k, x=X, y=[k]) for k in keys]


def sections(media: list[str], knobs: list[str]) -> list[ws.Section]:
    sweep = [
        wr.ParallelCoordinatesPlot(
            title=f"swept knobs against {OBJECTIVE}",
            columns=[wr.ParallelCoordinatesPlotColumn(metric=wr.Config(k)) for k in knobs]
            + [wr.ParallelCoordinatesPlotColumn(metric=wr.SummaryMetric(OBJECTIVE))],
        ),
        wr.ParameterImportancePlot(with_respect_to=OBJECTIVE),
    ]
    out = [
        ws.Section(name="Fig. 5: losses by epoch", panels=_lines(LOSSES), is_open=True),
        ws.Section(name="Accuracy", panels=_lines(ACCURACY + VAL_LOSSES), is_open=True),
        ws.Section(name="Sweep", panels=sweep, is_open=True),
    ]
    if media:
        browser = wr.MediaBrowser(title="attention overlays", media_keys=media, mode="gallery")
        out.insert(2, ws.Section(name="Attention overlays", panels=[browser], is_open=True))
    return out


def workspace(entity: str, project: str, media: list[str], knobs: list[str]) -> ws.Workspace:
    return ws.Workspace(
        entity=entity,
        project=project,
        name="rsexp: Reasoning Supervision",
        sections=sections(media, knobs),
        settings=ws.WorkspaceSettings(x_axis=X),
    )


def report(
    entity: str, project: str, tables: list[tuple[str, str]], media: list[str], knobs: list[str]
):
    blocks: list = [
        wr.H1("Reasoning Supervision: results"),
        wr.P("Tables written by rsexp tables from the tracked runs; curves by epoch below."),
    ]
    for title, text in tables:
        blocks += [wr.H2(title), wr.MarkdownBlock(text=text)]
    runset = wr.Runset(entity=entity, project=project, name="rsexp runs")
    for section in sections(media, knobs):
        blocks += [wr.H2(section.name), wr.PanelGrid(runsets=[runset], panels=section.panels)]
    return wr.Report(
        project=project, entity=entity, title="rsexp: Reasoning Supervision", blocks=blocks
    )


def read_tables(folder: Path | None) -> list[tuple[str, str]]:
    """The markdown tables of a reports folder (``table1.md``, ``ablation.md``...)."""
    if folder is None or not folder.is_dir():
        return []
    return [(p.stem, p.read_text()) for p in sorted(folder.glob("*.md"))]


def keys_named(w: ws.Workspace) -> dict[str, set[str]]:
    """The metric, config and media keys the workspace's panels name."""
    out: dict[str, set[str]] = {"metrics": set(), "config": set(), "media": set()}
    for section in w.sections:
        for p in section.panels:
            if isinstance(p, wr.LinePlot):
                out["metrics"] |= set(p.y) | {p.x}
            elif isinstance(p, wr.ParallelCoordinatesPlot):
                for c in p.columns:
                    kind = "config" if isinstance(c.metric, wr.Config) else "metrics"
                    out[kind].add(c.metric.name)
            elif isinstance(p, wr.ParameterImportancePlot):
                out["metrics"].add(p.with_respect_to)
            elif isinstance(p, wr.MediaBrowser):
                out["media"] |= set(p.media_keys)
    return out


def _dump(obj) -> dict:
    fields = pydantic.TypeAdapter(type(obj)).dump_python(obj, mode="json")
    return {"type": type(obj).__name__, **fields}


def spec(w: ws.Workspace, r) -> dict:
    """Both as JSON-able dicts, each panel and block with its type (what ``save`` sends,
    before W&B resolves the project)."""
    return {
        "workspace": {
            **{k: v for k, v in _dump(w).items() if k != "sections"},
            "sections": [
                {"name": s.name, "panels": [_dump(p) for p in s.panels]} for s in w.sections
            ],
        },
        "report": {
            **{k: v for k, v in _dump(r).items() if k != "blocks"},
            "blocks": [_dump(b) for b in r.blocks],
        },
        "keys": {k: sorted(v) for k, v in keys_named(w).items()},
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--project", default="rsexp", help="W&B project (track.wandb.project)")
    p.add_argument("--entity", default="", help="W&B entity (default: your default entity)")
    p.add_argument("--runs", default="runs", help="runs folder (overlay keys, tables)")
    p.add_argument("--run", default=None, help="run folder whose overlay keys to show")
    p.add_argument("--tables", default=None, help="reports folder with table*.md")
    p.add_argument("--out", default=None, help="spec JSON (default <runs>/wandb-dashboard.json)")
    p.add_argument("--offline", action="store_true", help="write the spec only")
    p.add_argument(
        "--config", default="sweeps/synthetic.yaml", help="the sweep's config (its space)"
    )
    args = p.parse_args(argv)
    from rsexp.config import load_config
    from rsexp.track.wandb_writer import logged_in

    runs = Path(args.runs)
    run = Path(args.run) if args.run else latest_run(runs)
    media = overlay_keys(run)
    tables = read_tables(Path(args.tables) if args.tables else _latest_reports(runs))
    online = logged_in() and not args.offline
    entity = args.entity
    if online and not entity:
        import wandb

        entity = wandb.Api().default_entity
    knobs = knob_keys(load_config(args.config))
    w = workspace(entity or "<entity>", args.project, media, knobs)
    r = report(entity or "<entity>", args.project, tables, media, knobs)
    if online:
        w.save()
        r.save()
        print(f"workspace: {w.url}\nreport:    {r.url}")
        return 0
    out = Path(args.out) if args.out else runs / "wandb-dashboard.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(spec(w, r), indent=1) + "\n")
    print(
        f"not logged in to W&B (or --offline): wrote the workspace and report spec to {out} "
        f"({len(w.sections)} sections, {len(tables)} tables, {len(media)} overlay keys"
        f"{f' from {run}' if run else ''}); run `wandb login` and this command again to "
        f"create them in {args.project}"
    )
    return 0


def _latest_reports(runs: Path) -> Path | None:
    """The newest folder of tables under ``runs``: what ``rsexp tables`` writes
    (``<runs>/tables/table1.md``), a sweep (``sweep-<study>/reports/comparison.md``) or
    ``rsexp paper`` (``paper/reports/table1.md``)."""
    found = [p for name in ("table1.md", "table2.md", "comparison.md")
             for p in runs.rglob(name) if "mlflow-artifacts" not in p.parts]  # fmt: skip
    found.sort(key=lambda p: p.stat().st_mtime)
    return found[-1].parent if found else None


if __name__ == "__main__":
    sys.exit(main())
