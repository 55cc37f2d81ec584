"""The README's commands are real: every ``make`` target it names exists and expands
(``make -n``), every ``ARGS="key=value ..."`` it shows is a valid override set, every
example script it runs exists, and its smoke run trains and writes what the README says
it writes."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from rsexp.config import load_config

ROOT = Path(__file__).resolve().parents[1]


def commands() -> list[str]:
    """The lines of the README's ``bash`` blocks, comments dropped."""
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    lines = [line.split("  #")[0].strip() for b in blocks for line in b.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([a-z][a-z0-9-]*):", text, flags=re.M))


def test_every_make_command_in_the_readme_exists_and_its_overrides_load():
    cmds = [c for c in commands() if c.startswith("make ")]
    assert any(c == "make sweep" for c in cmds) and any(c == "make test" for c in cmds)
    targets = make_targets()
    for cmd in cmds:
        words = shlex.split(re.sub(r"\[[^\]]*\]", "", cmd))  # optional [VAR=...] parts
        target, variables = words[1], dict(w.split("=", 1) for w in words[2:])
        assert target in targets, f"README: {cmd!r}: no make target {target!r}"
        dry = subprocess.run(["make", "-n", "-W", "pyproject.toml", target, *words[2:]],
                             cwd=ROOT, capture_output=True, text=True, timeout=60)  # fmt: skip
        assert dry.returncode == 0, f"README: {cmd!r}: {dry.stderr}"
        if "ARGS" in variables and target in ("train", "sweep", "paper", "prepare"):
            dataset = variables.get("DATASET", "synthetic")
            config = ROOT / variables.get("CONFIG", f"sweeps/{dataset}.yaml")
            overrides = shlex.split(variables["ARGS"])
            load_config(config, [o for o in overrides if "=" in o])  # unknown key: error


def test_every_script_the_readme_runs_exists():
    scripts = [c.split()[1] for c in commands() if c.startswith("python ")]
    assert scripts
    for script in scripts:
        assert (ROOT / script).is_file(), script


@pytest.mark.slow
def test_the_readme_smoke_run_trains_and_writes_its_run_folder(tmp_path, monkeypatch):
    from rsexp.cli import main

    (smoke,) = [c for c in commands() if c.startswith("make train ARGS=") and "epochs=2" in c]
    overrides = shlex.split(shlex.split(smoke)[2].split("=", 1)[1])
    monkeypatch.chdir(tmp_path)
    args = [*overrides, "train.threads=1", "track.backends=[local]"]
    assert main(["train", "--config", str(ROOT / "sweeps/synthetic.yaml"), *args]) == 0
    (run,) = (tmp_path / "runs" / "synthetic").iterdir()
    for name in ("config.yaml", "metrics.jsonl", "summary.json", "checkpoints", "overlays"):
        assert (run / name).exists(), name
    assert (run / "figures" / "loss_dynamics.png").is_file()
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"
