"""Fine-tuning: configuration, the training loop, resumable state."""
from .config import TrainConfig, make_config

__all__ = ["TrainConfig", "TrainResult", "make_config", "train"]


def __getattr__(name: str):
    # the engine pulls in torch and timm: load it on first use, so `emotune --help` and `emotune predict` start fast
    if name in ("train", "TrainResult"):
        from . import engine

        return getattr(engine, name)
    raise AttributeError(f"module 'emotune.train' has no attribute {name!r}")
