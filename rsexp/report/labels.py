"""Display names used in tables and figures."""

MODEL_NAMES = {"tsvit": "TSViT", "vivit": "ViViT", "timesformer": "TimeSformer"}
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
    return MODEL_NAMES.get(name, name)
