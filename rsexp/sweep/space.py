"""The search space: one function from an Optuna trial and a base config to a config.

``sweep.space`` names its dimensions: the paper's knobs by name (``lambda_s``,
``lambda_t``, ``tau``, ``immediate``, ``context_share``, ``coverage``) and any other
setting by its dotted key (``optim.lr``, ``model.attn_layer``). Optuna sees exactly
those names as its params (with ``<name>_off`` for a term the sweep may switch off).
:func:`suggest` turns a trial into a typed :class:`~rsexp.config.Config`;
:func:`check_space` checks, before the first trial, that every point of the space is a
config the run accepts.
"""

from __future__ import annotations

import typing

from rsexp.config import Config, ConfigError, Dimension, field_type, with_values

# the paper's knobs (§3) and the settings they are; context_share is not a setting: the
# contextual ratio is derived from it so that the two segments never overlap
KNOBS = {
    "lambda_s": "loss.lambda_s",
    "lambda_t": "loss.lambda_t",
    "tau": "loss.tau",
    "immediate": "loss.segments.immediate",
    "context_share": "loss.segments.contextual",
    "coverage": "guidance.coverage",
}


def setting(name: str) -> str:
    """The dotted config key a dimension sets (a knob's setting, else the name itself)."""
    return KNOBS.get(name, name)


def _is_int(name: str) -> bool:
    return field_type(setting(name)) is int


def _suggest(trial, name: str, dim: Dimension):
    if dim.choices is not None:
        return trial.suggest_categorical(name, list(dim.choices))
    if dim.low == dim.high:
        return dim.low
    if dim.allow_zero and trial.suggest_categorical(f"{name}_off", [False, True]):
        return 0
    if dim.integer and _is_int(name):
        return trial.suggest_int(name, dim.low, dim.high, step=dim.step or 1, log=dim.log)
    return trial.suggest_float(name, dim.low, dim.high, log=dim.log, step=dim.step)


def sample(trial, space: dict[str, Dimension]) -> dict[str, object]:
    """One trial's value of every dimension, by its name."""
    return {name: _suggest(trial, name, dim) for name, dim in space.items()}


def settings_of(values: dict[str, object]) -> dict[str, object]:
    """Dimension values -> the config settings they are (``context_share`` becomes the
    contextual ratio: ``context_share * (1 - 2 * immediate)``)."""
    out = {setting(k): v for k, v in values.items() if k != "context_share"}
    if "context_share" in values:
        immediate = values.get("immediate", None)
        if immediate is None:
            raise ConfigError("sweep.space.context_share needs sweep.space.immediate beside it")
        out[KNOBS["context_share"]] = values["context_share"] * (1 - 2 * immediate)
    return out


def apply(base: Config, values: dict[str, object]) -> Config:
    """``base`` with the dimensions' ``values`` set (typed, checked by the config's rules)."""
    return with_values(base, settings_of(values))


def suggest(trial, base: Config) -> Config:
    """The config of ``trial``: ``base`` with every dimension of ``base.sweep.space`` set
    to the trial's suggestion. The same function makes a finished trial's config again
    from its params (``optuna.trial.FixedTrial(trial.params)``)."""
    return apply(base, sample(trial, base.sweep.space))


def _value(cfg: Config, key: str):
    node = cfg
    for part in key.split("."):
        node = getattr(node, part)
    return node


def values_of(cfg: Config) -> dict[str, object]:
    """The value of every dimension in ``cfg`` (the base config's: the paper's settings,
    the first trial of a sweep)."""
    out = {name: _value(cfg, setting(name)) for name in cfg.sweep.space}
    if "context_share" in out:
        im = cfg.loss.segments.immediate
        out["context_share"] = min(1.0, cfg.loss.segments.contextual / max(1e-9, 1 - 2 * im))
    return out


def trial_params(values: dict[str, object], space: dict[str, Dimension]) -> dict:
    """Optuna params that make :func:`sample` return ``values`` (``enqueue_trial``)."""
    params: dict = {}
    for name, dim in space.items():
        v = values[name]
        if dim.choices is None and dim.low == dim.high:
            continue
        if dim.choices is None and dim.allow_zero:
            params[f"{name}_off"] = v == 0
            if v == 0:
                continue
        params[name] = v if dim.choices is not None else min(max(v, dim.low), dim.high)
    return params


def _points(space: dict[str, Dimension]) -> list[tuple[str, dict]]:
    """The points that bound the space: each dimension at both ends (at 0 where the term
    may be off) or at each choice; the segment knobs at each corner together."""
    points = []
    for name, dim in space.items():
        ends = [("choice", c) for c in dim.choices] if dim.choices is not None else [
            ("low", dim.low), ("high", dim.high)]  # fmt: skip
        if dim.allow_zero:
            ends.append(("off", 0))
        points += [(f"sweep.space.{name}: {end} {v!r}", {name: v}) for end, v in ends]
    im, share = space.get("immediate"), space.get("context_share")
    if im is not None and share is not None and im.choices is None and share.choices is None:
        for a in (im.low, im.high):
            for b in (share.low, share.high):
                name = f"sweep.space.immediate {a:g} with sweep.space.context_share {b:g}"
                points.append((name, {"immediate": a, "context_share": b}))
    return points


def check_space(cfg: Config) -> None:
    """Every point of the search space is a config the run accepts, checked before the
    first trial: each name is a knob or a config key (not a sweep or tracking setting),
    a range fits its setting's type (integers for an integer setting), and every bounding
    point passes the config's own rules and the model's shape checks at the data's frame
    count.

    Raises:
        ConfigError: naming the ``sweep.space`` key, the value and the rule it breaks.
    """
    from rsexp.experiment.build import check_model

    space = cfg.sweep.space
    for name, dim in space.items():
        key = setting(name)
        if key.startswith(("sweep.", "track.")):
            raise ConfigError(f"sweep.space.{name}: a sweep searches run settings, not {key}")
        try:
            tp = field_type(key)
        except ConfigError as e:
            raise ConfigError(f"sweep.space.{name}: {e}") from None
        numeric = tp in (int, float)
        if dim.choices is None and not numeric:
            raise ConfigError(
                f"sweep.space.{name}: {key} is not a number ({typing.get_origin(tp) or tp}); "
                f"give choices: [...]"
            )
        if dim.choices is None and tp is int and not dim.integer:
            raise ConfigError(
                f"sweep.space.{name}: {key} is an integer setting; give integer low/high"
                f"{'/step' if dim.step is not None else ''} (got {dim.low}, {dim.high})"
            )
    start = values_of(cfg)
    for name, values in _points(space):
        try:
            check_model(apply(cfg, {**start, **values}))
        except ConfigError as e:
            raise ConfigError(f"{name} gives a config the run refuses: {e}") from None
