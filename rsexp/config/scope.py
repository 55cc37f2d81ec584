"""Which keys of a flattened config describe what a run computed.

The rest say where or how the run was made (tracking, the sweep that launched it, the
guidance generator's API settings) or belong to a dataset the run does not use. Tables
compare runs on the first kind only (:func:`rsexp.report.rows.identity`), and a run's
tracked params are the same keys (:func:`run_keys`): the full resolved config is the
run's ``config.yaml`` (an artifact of its tracked run too).
"""

from __future__ import annotations

BOOKKEEPING_PREFIXES = ("track.", "sweep.", "guidance.openai.")
BOOKKEEPING = frozenset(
    {
        "train.seed",  # the seed is what a row averages over
        "train.experiment",
        "train.runs_dir",
        "train.threads",
        "train.log_every",
        "data.root",
        "data.cache_dir",
        "data.num_workers",
        "data.decode_workers",
        # provenance logged beside the config (an MLflow param); a baseline trained
        # without the guidance file has none, and is still that config's baseline
        "guidance.digest",
    }
)
# dataset- and model-specific subsections: data.synthetic.* and model.hf.* (built in),
# data.<plugin section>.* and model.<plugin section>.*
_OWN_SECTIONS = ("data.synthetic.", "model.hf.")


def applies(key: str, config: dict) -> bool:
    """``key`` belongs to the run's dataset and model (``config``: the flattened config,
    its ``data.name`` and ``model.name``), or to none in particular."""
    parts = key.split(".")
    if key.startswith(("data.sections.", "model.sections.")):
        return parts[2] == config.get(f"{parts[0]}.name", "")
    if key.startswith(_OWN_SECTIONS):
        return parts[1] == config.get(f"{parts[0]}.name", "")
    return True


def run_keys(flat: dict[str, str]) -> dict[str, str]:
    """The keys of ``flat`` (a flattened config) a run is tracked with: its settings that
    apply to it, seed and run name included (an MLflow user filters on them), the
    tracking and sweep sections and other datasets' settings left out."""
    return {
        k: v
        for k, v in flat.items()
        if not k.startswith(BOOKKEEPING_PREFIXES) and applies(k, flat)
    }
