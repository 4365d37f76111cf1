"""Datasets: formats, robust image reading, validation and transforms."""
from .dataset import EmotionDataset, PreparedData, Skipped, filter_labels, prepare_samples
from .images import read_image
from .sources import Sample, class_counts, detect_format, ferplus_target, load_samples
from .transforms import AugmentConfig, eval_transform, train_transform

__all__ = [
    "AugmentConfig", "EmotionDataset", "PreparedData", "Sample", "Skipped", "class_counts", "detect_format",
    "eval_transform", "ferplus_target", "filter_labels", "load_samples", "prepare_samples", "read_image", "train_transform",
]
