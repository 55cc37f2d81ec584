"""``rsexp tables``: every cell, ±, n and change against values computed by hand; the
same runs read from a runs folder and from an MLflow store give the same table; a
study's importances are Optuna's."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import yaml

from rsexp.cli import main
from rsexp.report.collect import collect
from rsexp.report.results import select, write_tables
from rsexp.report.study import write_study_tables

RUNS = {  # (dataset, model, method): [(seed, top1, top5, clip_loss)]
    ("ucf50", "tsvit", "baseline"): [
        (0, 60.0, 90.0, 1.2),
        (1, 62.0, 91.0, 1.0),
        (2, 64.0, 92.0, 0.8),
    ],
    ("ucf50", "tsvit", "rs"): [(0, 70.0, 95.0, 0.9), (1, 72.0, 96.0, 0.7), (2, 74.0, 97.0, 0.5)],
    ("ucf50", "vivit", "baseline"): [(0, 50.0, 80.0, 1.5)],
    ("ucf50", "vivit", "rs"): [(0, 55.0, 82.0, 1.4)],
}


def write_run(root: Path, dataset, model, method, seed, metrics, stage="confirm") -> str:
    run_id = f"{dataset}-{model}-{method}-s{seed}"
    d = root / dataset / run_id
    d.mkdir(parents=True)
    summary = {
        "status": "finished",
        "run_id": run_id,
        "dataset": dataset,
        "model": model,
        "method": method,
        "seed": seed,
        **metrics,
    }
    (d / "summary.json").write_text(json.dumps(summary))
    cfg = {"model": {"pretrained": ""}, "track": {"tags": {"stage": stage}}}
    (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    top1 = metrics.get("test/top1", 50.0)
    history = [  # an epoch history ending near the run's final accuracy
        {"epoch": e, "loss/total": 2.0 / e, "loss/spatial": 1.0 / e, "loss/temporal": 0.1 / e,
         "val/top1": top1 * e / 4}
        for e in range(1, 5)
    ]  # fmt: skip
    (d / "metrics.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history))
    return run_id


def metrics_of(top1, top5, loss, split="test"):
    return {f"{split}/top1": top1, f"{split}/top5": top5, f"{split}/clip_loss": loss}


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs"
    for (ds, model, method), rows in RUNS.items():
        for seed, t1, t5, loss in rows:
            write_run(root, ds, model, method, seed, metrics_of(t1, t5, loss))
    # a sweep trial (fewer epochs) is never in a table
    write_run(root, "ucf50", "tsvit", "rs", 9, metrics_of(99.0, 99.0, 0.1), stage="trial")
    return root


def md_rows(path: Path) -> list[list[str]]:
    lines = [x for x in path.read_text().splitlines() if x.startswith("| ")]
    rows = [[c.strip() for c in x.strip("|").split("|")] for x in lines[1:]]
    return [r for r in rows if set(r) != {"---"}]


def test_table1_cells_by_hand(runs, tmp_path):
    recs = select(collect(str(runs)), None, None)
    assert {r.stage for r in recs} == {"confirm"} and len(recs) == 8
    files, problems, _ = write_tables(recs, tmp_path / "out", str(runs))
    assert problems == [] and {f.name for f in files} == {"table1.md", "table1.tex", "table1.csv"}
    rows = md_rows(tmp_path / "out" / "table1.md")
    assert rows[0] == ["ucf50", "TSViT", "62.00 ± 2.00", "91.00 ± 1.00", "1.000 ± 0.200"]
    # + RS against its own baseline: (72 - 62) / 62 = +16.13 %, (96 - 91) / 91 = +5.49 %,
    # loss 0.7 - 1.0 = -0.300; the best of the block in bold
    assert rows[1] == [
        "ucf50",
        "TSViT + RS",
        "**72.00 ± 2.00** (+16.13%)",
        "**96.00 ± 1.00** (+5.49%)",
        "**0.700 ± 0.200** (-0.300)",
    ]
    # one seed: the value alone, never "± 0.00"; ViViT + RS: +10.00 %, +2.50 %, -0.100
    assert rows[2] == ["ucf50", "ViViT", "50.00", "80.00", "1.500"]
    assert rows[3] == [
        "ucf50",
        "ViViT + RS",
        "55.00 (+10.00%)",
        "82.00 (+2.50%)",
        "1.400 (-0.100)",
    ]
    text = (tmp_path / "out" / "table1.md").read_text()
    assert "test split" in text and "n = 1/3 seeds" in text and "commit" in text
    tex = (tmp_path / "out" / "table1.tex").read_text()
    assert r"\textbf{72.00 $\pm$ 2.00} (+16.13\%)" in tex and r"\toprule" in tex
    csv_rows = (tmp_path / "out" / "table1.csv").read_text().splitlines()
    assert csv_rows[2].startswith("ucf50,TSViT + RS,72,2,3,16.129")


def test_missing_seed_and_metric_are_named(runs, tmp_path):
    (runs / "ucf50" / "ucf50-tsvit-rs-s2").rename(tmp_path / "gone")
    summary = runs / "ucf50" / "ucf50-vivit-rs-s0" / "summary.json"
    s = json.loads(summary.read_text())
    del s["test/top5"]
    summary.write_text(json.dumps(s))
    _, problems, _ = write_tables(select(collect(str(runs)), None, None), tmp_path / "o", "x")
    assert "ucf50: TSViT + RS: no run for seed(s) [2]" in problems
    assert "ucf50: ViViT + RS: ucf50-vivit-rs-s0 lack test/top5" in problems
    row = md_rows(tmp_path / "o" / "table1.md")[3]
    assert row[3] == "—"


def test_runs_folder_and_mlflow_store_give_the_same_table(runs, tmp_path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("ucf50")
    for rec in collect(str(runs)):
        run = client.create_run(
            exp,
            run_name=rec.run_id,
            tags={
                "dataset": rec.dataset,
                "model": rec.model,
                "method": rec.method,
                "seed": str(rec.seed),
                "stage": rec.stage,
            },
        )
        for k, v in rec.metrics.items():
            client.log_metric(run.info.run_id, k, v, step=1)
        client.set_terminated(run.info.run_id, "FINISHED")
    parent = client.create_run(exp, run_name="sweep-parent", tags={"stage": "sweep"})
    client.set_terminated(parent.info.run_id, "FINISHED")  # no rsexp tags: skipped
    a, b = tmp_path / "a", tmp_path / "b"
    write_tables(select(collect(str(runs)), None, None), a, "src")
    write_tables(select(collect(uri), None, None), b, "src")

    def body(p):
        return [x for x in p.read_text().splitlines() if not x.startswith("<!--")]

    assert body(a / "table1.md") == body(b / "table1.md")


def test_table2_for_segmentation_runs(tmp_path):
    root = tmp_path / "runs"
    seg = {"mof": 70.0, "edit": 60.0, "f1@10": 65.0, "f1@25": 60.0, "f1@50": 50.0}
    for method, shift in (("baseline", 0.0), ("rs", 5.0)):
        m = {"test/top1": 72.0 + shift, "test/clip_loss": 1.0 - shift / 10}
        m.update({f"test/{k}": v + shift for k, v in seg.items()})
        write_run(root, "desktop_assembly", "tsvit", method, 0, m)
    files, problems, shown = write_tables(collect(str(root)), tmp_path / "o", "src", ("md",))
    assert [f.name for f in files] == ["table2.md"] and not problems
    rows = md_rows(tmp_path / "o" / "table2.md")
    assert rows[1][2:] == [
        "**77.00** (+6.94%)",
        "**0.500** (-0.500)",
        "**75.00** (+7.14%)",
        "**65.00** (+8.33%)",
        "**70.00** (+7.69%)",
        "**65.00** (+8.33%)",
        "**55.00** (+10.00%)",
    ]
    assert "MoF ↑" in shown["table2"]


def test_study_tables_use_optunas_importances(tmp_path):
    study = optuna.create_study(
        direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0), study_name="s"
    )
    study.optimize(
        lambda t: (
            10 * t.suggest_float("lambda_s", 0.1, 3.0, log=True) + t.suggest_float("tau", 0.5, 4.0)
        ),
        n_trials=12,
    )
    files, text = write_study_tables(study, tmp_path)
    want = optuna.importance.get_param_importances(
        study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0)
    )
    for k, v in want.items():
        assert f"| {k} | {v:.3f} |" in text
    best = max(study.trials, key=lambda t: t.value)
    assert f"| {best.number} | {best.value:.2f} |" in text
    assert "| lambda_s | [0.1" in text or "| lambda_s | [0." in text


def test_cli_tables(runs, capsys):
    assert main(["tables", "--source", str(runs), "--format", "md"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "TSViT + RS" in out and (runs / "tables" / "table1.md").is_file()
    assert main(["tables", "--source", "wandb:me/rsexp"]) == 2
    assert "needs its online API" in " ".join(capsys.readouterr().err.split())


def test_figures_fig5_across_seeds_and_study_plots(runs, tmp_path):
    from PIL import Image

    from rsexp.report.figures import fig5, history, study_plots

    recs = select(collect(str(runs)), None, None)
    assert [h["val/top1"] for h in history(recs[0])] == [15.0, 30.0, 45.0, 60.0]
    (png,) = fig5(recs, tmp_path / "f")
    assert png.name == "fig5_ucf50.png" and Image.open(png).size[0] > 800
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(0))
    study.optimize(lambda t: t.suggest_float("tau", 0.5, 4.0), n_trials=4)
    names = {p.name for p in study_plots(study, tmp_path / "s")}
    for plot in ("optimization_history", "param_importances", "parallel_coordinate", "slice"):
        assert {f"{plot}.png", f"{plot}.html"} <= names
    assert "plotly" in (tmp_path / "s" / "slice.html").read_text()[:5000].lower()
    assert main(["figures", "--source", str(runs)]) == 0
    assert (runs / "figures" / "fig5_ucf50.png").is_file()


def test_plain_runs_of_different_configs_are_separate_rows(tiny, tmp_path, capsys):
    """`make train` twice with different lambda_s: two rows named by what differs, each
    against the one baseline (same config, both terms off); never one pooled "+ RS"."""
    config = str(Path(__file__).resolve().parents[1] / "sweeps" / "synthetic.yaml")
    baseline = ["loss.lambda_s=0", "loss.lambda_t=0"]
    for extra in (["loss.lambda_s=1"], ["loss.lambda_s=2"], baseline):
        assert main(["train", "-c", config, *tiny, "train.epochs=1", *extra]) == 0
    runs = tmp_path / "runs"
    assert main(["tables", "--source", str(runs), "--format", "md"]) == 0
    rows = {r[1]: r for r in md_rows(runs / "tables" / "table1.md")}
    assert set(rows) == {"TSViT", "TSViT + RS (λ_s = 1)", "TSViT + RS (λ_s = 2)"}, rows
    top1 = sorted(
        json.loads((d / "summary.json").read_text())["test/top1"]
        for d in (runs / "synthetic").iterdir()
    )
    shown = sorted(float(r[2].split()[0].strip("*")) for r in rows.values())
    assert shown == pytest.approx(top1, abs=0.005)  # each row is one run, n = 1
    assert " ± " not in "".join(r[2] for r in rows.values())


def test_two_runs_of_one_config_and_seed_are_one_run_with_a_note(runs, tmp_path):
    again = runs / "ucf50" / "ucf50-tsvit-rs-s0-again"
    again.mkdir()
    for f in ("config.yaml", "metrics.jsonl"):
        (again / f).write_text((runs / "ucf50" / "ucf50-tsvit-rs-s0" / f).read_text())
    summary = json.loads((runs / "ucf50" / "ucf50-tsvit-rs-s0" / "summary.json").read_text())
    (again / "summary.json").write_text(json.dumps({**summary, "run_id": again.name}))
    _, problems, _ = write_tables(select(collect(str(runs)), None, None), tmp_path / "o", "x")
    rows = md_rows(tmp_path / "o" / "table1.md")
    assert rows[1][:3] == ["ucf50", "TSViT + RS", "**72.00 ± 2.00** (+16.13%)"]  # n = 3
    assert "mean ± std over n = 1/3 seeds" in (tmp_path / "o" / "table1.md").read_text()
    (note,) = [p for p in problems if "seed 0 has 2 finished runs" in p]
    assert "ucf50-tsvit-rs-s0-again" in note


def test_rows_are_configurations_not_methods(tmp_path):
    """Runs tagged alike (rs, stage confirm) but trained with other settings are other
    rows; the ablation is found by its configs."""
    root = tmp_path / "runs"
    base = {"loss": {"lambda_s": 1.0, "lambda_t": 0.5, "tau": 1.0}, "model": {"pretrained": ""},
            "track": {"tags": {"stage": "confirm"}}}  # fmt: skip
    variants = {  # name: (lambda_s, lambda_t, seeds, top1 per seed)
        "rs": (1.0, 0.5, (0, 1, 2), (70.0, 72.0, 74.0)),
        "spatial": (1.0, 0.0, (0,), (66.0,)),
        "temporal": (0.0, 0.5, (0,), (64.0,)),
        "baseline": (0.0, 0.0, (0, 1, 2), (60.0, 62.0, 64.0)),
    }
    for name, (ls, lt, seeds, tops) in variants.items():
        for seed, top1 in zip(seeds, tops, strict=True):
            method = "baseline" if ls == lt == 0 else "rs"
            run_id = write_run(root, "ucf50", "tsvit", method, seed, metrics_of(top1, 90.0, 1.0))
            d = root / "ucf50" / run_id
            d.rename(d.with_name(f"{name}-s{seed}"))
            cfg = {**base, "loss": {**base["loss"], "lambda_s": ls, "lambda_t": lt}}
            (d.with_name(f"{name}-s{seed}") / "config.yaml").write_text(yaml.safe_dump(cfg))
    files, problems, shown = write_tables(collect(str(root)), tmp_path / "o", "src", ("md",))
    assert problems == []
    rows = {r[1]: r[2] for r in md_rows(tmp_path / "o" / "table1.md")}
    assert rows == {
        "TSViT": "62.00 ± 2.00",
        "TSViT + RS": "**72.00 ± 2.00** (+16.13%)",
        "TSViT + spatial": "66.00 (+10.00%)",  # against the baseline's seed 0 (60)
        "TSViT + temporal": "64.00 (+6.67%)",
    }
    ablation = {r[2]: r[3] for r in md_rows(tmp_path / "o" / "ablation.md")}
    assert ablation == {
        "CE only": "60.00",
        "+ spatial": "66.00 (+10.00%)",
        "+ temporal": "64.00 (+6.67%)",
        "+ both": "**70.00** (+16.67%)",
    }
