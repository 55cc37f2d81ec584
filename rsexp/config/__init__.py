"""One typed config tree: frozen dataclasses (:mod:`~rsexp.config.schema`, the sweep's
section in :mod:`~rsexp.config.space`), loaded from YAML with dotted overrides
(:mod:`~rsexp.config.loader`).

Every setting has exactly one default, in the schema. An unknown key or a value of the
wrong type raises :class:`ConfigError` naming the dotted key.
"""

from rsexp.config.loader import (
    dump_yaml,
    field_type,
    flatten,
    from_dict,
    load_config,
    load_yaml,
    parse_override,
    to_dict,
    with_values,
)
from rsexp.config.schema import (
    Config,
    ConfigError,
    DataConfig,
    GuidanceConfig,
    GuidanceNoise,
    LossConfig,
    MlflowConfig,
    ModelConfig,
    OpenAIGuidance,
    OptimConfig,
    OverlayConfig,
    SegmentsConfig,
    SyntheticConfig,
    TrackConfig,
    TrainConfig,
    WandbConfig,
    parse_frame_keys,
)
from rsexp.config.sections import load_plugins, register_section
from rsexp.config.space import Dimension, SlurmConfig, SweepConfig, paper_space

__all__ = [
    "Config",
    "ConfigError",
    "DataConfig",
    "Dimension",
    "GuidanceConfig",
    "GuidanceNoise",
    "LossConfig",
    "MlflowConfig",
    "ModelConfig",
    "OpenAIGuidance",
    "OptimConfig",
    "OverlayConfig",
    "SegmentsConfig",
    "SlurmConfig",
    "SweepConfig",
    "SyntheticConfig",
    "TrackConfig",
    "TrainConfig",
    "WandbConfig",
    "dump_yaml",
    "field_type",
    "flatten",
    "from_dict",
    "load_config",
    "load_plugins",
    "load_yaml",
    "register_section",
    "paper_space",
    "parse_frame_keys",
    "parse_override",
    "to_dict",
    "with_values",
]
