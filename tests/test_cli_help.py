"""What the terminal shows: ``rsexp --help`` lists the public commands (no argparse
``==SUPPRESS==``), every option of every command says what it does, each command's help
ends with examples that are real commands, ``--version``, a YAML error with its file, line
and column, and a run that prints where its config is rather than the whole config."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from rsexp.cli import EXAMPLES, HIDDEN, _parser, main

CONFIG = "sweeps/synthetic.yaml"


def commands() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_the_command_list_has_every_public_command_and_nothing_hidden():
    out = subprocess.run(
        [sys.executable, "-m", "rsexp.cli", "--help"], capture_output=True, text=True
    ).stdout
    assert "SUPPRESS" not in out
    public = [c for c in commands() if c not in HIDDEN]
    for name in public:
        assert f"    {name} " in out, name
    for name in HIDDEN:
        assert name not in out


@pytest.mark.parametrize("name", sorted(commands()))
def test_every_option_has_help_and_every_command_examples(name, capsys):
    parser = commands()[name]
    for action in parser._actions:
        if not isinstance(action, argparse._HelpAction):
            assert action.help and action.help != argparse.SUPPRESS, (name, action.dest)
    if name in HIDDEN:
        return
    with pytest.raises(SystemExit) as e:
        main([name, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and f"  rsexp {name}" in out.split("examples:")[1]
    # an example parses: its options come before the key=value overrides
    for line in EXAMPLES[name].split("examples:")[1].strip().splitlines():
        argv = line.split()[1:]
        if name != "models":
            _parser().parse_args([a.strip("'") for a in argv])


def test_guidance_help_explains_the_annotators(capsys):
    with pytest.raises(SystemExit):
        main(["guidance", "--help"])
    out = capsys.readouterr().out
    from rsexp.guidance.annotators import ANNOTATORS

    for name in ANNOTATORS.names():
        assert f"\n  {name} " in out, name


def test_version(capsys):
    from importlib import metadata

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"rsexp {metadata.version('rsexp')}"


def test_a_yaml_error_names_the_file_line_and_column(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("loss:\n  tau: 1.0\n\tlambda_s: 2\n")
    assert main(["train", "--config", str(bad)]) == 2
    err = "".join(capsys.readouterr().err.split())  # rich folds long paths
    assert f"{bad}:line3,column1:invalidYAML" in err
    assert "Traceback" not in err


def test_a_run_prints_its_config_path_and_the_config_only_with_verbose(tiny, capsys):
    over = [*tiny, "train.epochs=1", "track.backends=[local]", "track.overlays.num_clips=0"]
    assert main(["train", "--config", CONFIG, "--run-dir", str(tiny_dir(tiny)), *over]) == 0
    out = "".join(capsys.readouterr().out.split())
    assert f"config:{tiny_dir(tiny) / 'config.yaml'}" in out
    assert "lambda_s:" not in out  # the YAML dump
    assert main(["config", "--config", CONFIG, *over]) == 0  # rsexp config prints it
    assert "lambda_s:" in capsys.readouterr().out
    assert main(["train", "--verbose", "--config", CONFIG, *over]) == 0
    assert "lambda_s:" in capsys.readouterr().out


def tiny_dir(tiny):
    runs = next(o for o in tiny if o.startswith("train.runs_dir=")).split("=", 1)[1]
    return Path(runs) / "first"
