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
# dataset-specific subsections: data.synthetic.* (built in), data.<plugin section>.*
_DATASET_SECTIONS = ("data.synthetic.",)


def applies(key: str, data_name: str) -> bool:
    """``key`` belongs to the run's dataset, or to no dataset in particular."""
    parts = key.split(".")
    if key.startswith("data.sections."):
        return parts[2] == data_name
    if key.startswith(_DATASET_SECTIONS):
        return parts[1] == data_name
    return True


def run_keys(flat: dict[str, str]) -> dict[str, str]:
    """The keys of ``flat`` (a flattened config) a run is tracked with: its settings that
    apply to it, seed and run name included (an MLflow user filters on them), the
    tracking and sweep sections and other datasets' settings left out."""
    name = flat.get("data.name", "")
    return {
        k: v
        for k, v in flat.items()
        if not k.startswith(BOOKKEEPING_PREFIXES) and applies(k, name)
    }
