"""Backbones (registry over timm), local weight loading, checkpoints with model cards."""
from .card import ModelCard, load_checkpoint, read_card, save_checkpoint
from .registry import ModelConfig, create_model, get_model_config, list_models, normalisation, register
from .weights import load_local_weights, read_state_dict

__all__ = [
    "ModelCard", "ModelConfig", "create_model", "get_model_config", "list_models", "load_checkpoint", "normalisation",
    "load_local_weights", "read_card", "read_state_dict", "register", "save_checkpoint",
]
