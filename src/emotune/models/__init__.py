"""Backbones (registry over timm), local weight loading, checkpoints with model cards bound to their weights.

Layering (no module imports one above it): registry, fusion, ensemble -> weights -> card -> transfer -> factory ->
average. `load_checkpoint` and `create_model` live in factory.py and are re-exported here.
"""
from .card import CARD_FORMAT, ModelCard, read_card, save_checkpoint, upgrade_checkpoint
from .factory import build_from_card, create_model, load_checkpoint, normalisation, reset_head
from .registry import ModelConfig, get_model_config, list_models, register
from .weights import load_local_weights, read_state_dict

__all__ = [
    "CARD_FORMAT", "ModelCard", "ModelConfig", "build_from_card", "create_model", "get_model_config", "list_models",
    "load_checkpoint", "load_local_weights", "normalisation", "read_card", "read_state_dict", "register", "reset_head",
    "save_checkpoint", "upgrade_checkpoint",
]
