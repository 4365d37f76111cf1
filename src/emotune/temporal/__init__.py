"""Faces over time: a per-frame encoder feeding a temporal head (GRU, LSTM or causal TCN) trained on windows of
video frames, with CCC for valence/arousal and cross-entropy for classes (Kollias et al. 2017, Aff-Wild).

data.py (videos, windows, splits by video/subject), embed.py (frame encoder, embedding cache keyed by the encoder's
weights), heads.py (temporal head registry), task.py (the `sequence` Task), model.py (SequenceModel, save/load),
train.py (train, resume, cv, evaluate), export.py (ONNX), stream.py (the `temporal` smoother of emotune predict).
Command: `emotune seq train|cv|evaluate|export` (docs/video.md).
"""
from .heads import TEMPORAL_HEADS, TemporalNet, head_config, register_temporal_head

__all__ = ["TEMPORAL_HEADS", "TemporalNet", "head_config", "register_temporal_head"]
