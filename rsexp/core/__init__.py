"""The thin training core: models, losses, segments, step, checkpoints, metrics.

Imports torch, timm, numpy and the standard library only.
"""
