"""The search space: paper knobs sampled from an Optuna trial, as config overrides."""

from __future__ import annotations

from rsexp.config import Config, Dimension, SearchSpace

KNOBS = ("lambda_s", "lambda_t", "tau", "immediate", "context_share", "coverage")


def _suggest(trial, name: str, dim: Dimension) -> float:
    if dim.low == dim.high:
        return dim.low
    if dim.allow_zero and trial.suggest_categorical(f"{name}_off", [False, True]):
        return 0.0
    return trial.suggest_float(name, dim.low, dim.high, log=dim.log)


def sample(trial, space: SearchSpace) -> dict[str, float]:
    """Knob values for one trial (``lambda_s``, ..., ``coverage``)."""
    return {k: _suggest(trial, k, getattr(space, k)) for k in KNOBS}


def to_overrides(values: dict[str, float]) -> list[str]:
    """Knob values -> dotted config overrides. The contextual ratio is derived so that the
    immediate and contextual segments never overlap (see ``SearchSpace``)."""
    contextual = values["context_share"] * (1 - 2 * values["immediate"])
    return [
        f"loss.lambda_s={values['lambda_s']}",
        f"loss.lambda_t={values['lambda_t']}",
        f"loss.tau={values['tau']}",
        f"loss.segments.immediate={values['immediate']}",
        f"loss.segments.contextual={contextual}",
        f"guidance.coverage={values['coverage']}",
    ]


def knobs_of(cfg: Config) -> dict[str, float]:
    """The base config's knob values (the paper's settings), e.g. to enqueue them first."""
    im = cfg.loss.segments.immediate
    return {
        "lambda_s": cfg.loss.lambda_s,
        "lambda_t": cfg.loss.lambda_t,
        "tau": cfg.loss.tau,
        "immediate": im,
        "context_share": min(1.0, cfg.loss.segments.contextual / max(1e-9, 1 - 2 * im)),
        "coverage": cfg.guidance.coverage,
    }


def trial_params(values: dict[str, float], space: SearchSpace) -> dict:
    """Optuna params that make ``sample`` return ``values`` (for ``enqueue_trial``)."""
    params: dict = {}
    for k in KNOBS:
        dim = getattr(space, k)
        if dim.low == dim.high:
            continue
        if dim.allow_zero:
            params[f"{k}_off"] = values[k] == 0
            if values[k] == 0:
                continue
        params[k] = min(max(values[k], dim.low), dim.high)
    return params


def knobs_from_params(params: dict, space: SearchSpace) -> dict[str, float]:
    """Inverse of :func:`trial_params`: a finished trial's params -> knob values."""
    out = {}
    for k in KNOBS:
        dim = getattr(space, k)
        if dim.low == dim.high:
            out[k] = dim.low
        elif dim.allow_zero and params.get(f"{k}_off"):
            out[k] = 0.0
        else:
            out[k] = params[k]
    return out


def check_space(cfg: Config) -> None:
    """Every point of the search space is a config the run accepts: each knob at both
    ends of its range (and at 0 where the sweep may switch a term off), the segment
    knobs at each corner, checked by the config's own rules and the model's shape
    checks at the data's frame count, before the first trial.

    Raises:
        ConfigError: naming the ``sweep.space`` key, the value and the rule it breaks.
    """
    from rsexp.config import ConfigError, from_dict, to_dict
    from rsexp.experiment.build import preflight

    space, base = cfg.sweep.space, knobs_of(cfg)
    tree = {k: v for k, v in to_dict(cfg).items() if k != "sweep"}
    points: list[tuple[str, dict]] = []
    for k in KNOBS:
        dim = getattr(space, k)
        for end, v in (("low", dim.low), ("high", dim.high)):
            points.append((f"sweep.space.{k}: {end} {v:g}", {k: v}))
    for im in (space.immediate.low, space.immediate.high):
        for share in (space.context_share.low, space.context_share.high):
            name = f"sweep.space.immediate {im:g} with sweep.space.context_share {share:g}"
            points.append((name, {"immediate": im, "context_share": share}))
    for name, values in points:
        try:
            preflight(from_dict(tree, to_overrides({**base, **values})))
        except ConfigError as e:
            raise ConfigError(f"{name} gives a config the run refuses: {e}") from None
