"""Display names used in tables and figures."""

ABLATION = ("ce", "spatial", "temporal", "both")  # paper components, in table order
ROW_LABELS = {
    "baseline": "baseline",
    "rs": "RS (best)",
    "ce": "CE only",
    "spatial": "+ spatial",
    "temporal": "+ temporal",
    "both": "+ both",
}


def model_name(name: str) -> str:
    """A model's label (its spec's), or the name of one no longer registered."""
    import rsexp.core.models  # noqa: F401  (registers rsexp's own)
    from rsexp.core.registry import MODELS

    return MODELS.get(name).label if name in MODELS else name
