from pathlib import Path

import pytest

from rsexp.config import Config, ConfigError, flatten, from_dict, load_config, to_dict

SWEEPS = sorted(Path(__file__).parent.parent.joinpath("sweeps").glob("*.yaml"))


def test_defaults_and_overrides():
    cfg = load_config(
        None,
        [
            "loss.lambda_s=0.25",
            "loss.segments.immediate=0.3",
            "loss.segments.contextual=0.4",
            "train.seed=7",
        ],
    )
    assert cfg.loss.lambda_s == 0.25
    assert cfg.loss.segments.immediate == 0.3
    assert cfg.train.seed == 7
    assert cfg.loss.lambda_t == Config().loss.lambda_t  # untouched key keeps its one default


def test_sweep_knob_names_exist():
    keys = flatten(to_dict(Config()))
    for k in [
        "loss.lambda_s",
        "loss.lambda_t",
        "loss.tau",
        "loss.segments.immediate",
        "loss.segments.contextual",
        "guidance.coverage",
        "train.seed",
        "train.epochs",
        "model.name",
        "data.name",
    ]:
        assert k in keys


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match=r"loss\.lamda_s"):
        load_config(None, ["loss.lamda_s=1"])
    with pytest.raises(ConfigError, match=r"unknown config key 'optimizer'"):
        from_dict({"optimizer": {"lr": 1}})


@pytest.mark.parametrize(
    "override, key",
    [
        ("train.epochs=two", "train.epochs"),
        ("data.augment=3", "data.augment"),
        ("model.attn_to_grid=nearest", "model.attn_to_grid"),
        ("loss.tau=-1", "loss.tau"),
        ("guidance.coverage=1.5", "guidance.coverage"),
        ("loss=3", "loss"),
    ],
)
def test_wrong_values_name_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, [override])


def test_yaml_exponent_without_dot_is_a_number():
    assert load_config(None, ["optim.lr=3e-4"]).optim.lr == pytest.approx(3e-4)


def test_method_tag():
    assert load_config(None, ["loss.lambda_s=0", "loss.lambda_t=0"]).method == "baseline"
    assert load_config(None, ["loss.lambda_s=0"]).method == "rs"


def test_round_trip_through_yaml(tmp_path):
    from rsexp.config import dump_yaml

    cfg = load_config(None, ["loss.tau=0.7", "model.name=vivit"])
    dump_yaml(cfg, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == cfg


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(bad)


@pytest.mark.parametrize("path", SWEEPS, ids=[p.name for p in SWEEPS])
def test_every_shipped_config_loads(path):
    cfg = load_config(path)
    # each file is its own experiment (synthetic_easy: the synthetic data, easier)
    assert cfg.experiment == path.stem and path.stem.startswith(cfg.data.name)


def test_partial_override_keeps_the_fields_own_defaults():
    cfg = load_config(None, ["sweep.space.tau.low=0.7"])
    tau = cfg.sweep.space["tau"]
    assert (tau.low, tau.high, tau.log) == (0.7, 4.0, True)
