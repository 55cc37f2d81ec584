"""Shared fixtures: a tiny synthetic config that trains in about a second on a CPU."""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(1)

TINY = [
    "data.num_frames=5",
    "data.frame_size=16",
    "data.batch_size=8",
    "data.synthetic.num_train=24",
    "data.synthetic.num_val=16",
    "data.synthetic.num_test=16",
    "data.synthetic.num_classes=4",
    "data.synthetic.object_size=3",
    "model.embed_dim=16",
    "model.depth=2",
    "model.temporal_depth=1",
    "model.num_heads=2",
    "train.epochs=2",
    "train.threads=1",
]


@pytest.fixture
def tiny(tmp_path):
    """Overrides for a tiny run whose data and runs live under ``tmp_path``."""
    return [*TINY, f"data.root={tmp_path / 'data'}", f"train.runs_dir={tmp_path / 'runs'}"]
