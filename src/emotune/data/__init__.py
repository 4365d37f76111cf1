"""Datasets: formats, robust image reading, validation and transforms."""
from __future__ import annotations

_EXPORTS = {
    "EmotionDataset": "dataset", "PreparedData": "dataset", "Skipped": "dataset", "filter_labels": "dataset",
    "prepare_samples": "dataset", "read_image": "images", "Sample": "sources", "class_counts": "sources",
    "detect_format": "sources", "ferplus_target": "sources", "load_samples": "sources", "AugmentConfig": "transforms",
    "eval_transform": "transforms", "train_transform": "transforms", "Preprocess": "transforms", "flip_tta": "transforms",
    "mirror": "transforms",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    # lazy: torch/torchvision load with the dataset and transform modules, not with every `emotune.data.*` import
    if name in _EXPORTS:
        from importlib import import_module

        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'emotune.data' has no attribute {name!r}")
