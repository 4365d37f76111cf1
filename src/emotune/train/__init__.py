"""Fine-tuning: configuration, the training loop, resumable state."""
from .config import TrainConfig, make_config
from .engine import TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "make_config", "train"]
