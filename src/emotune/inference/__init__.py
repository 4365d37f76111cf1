"""Inference: the Recognizer (detect, align, classify), video streaming, tracking, outputs, ONNX export."""
from __future__ import annotations

_EXPORTS = {"OnnxBackend": "backend", "TorchBackend": "backend", "export_onnx": "backend", "FaceResult": "recognizer",
            "Recognizer": "recognizer", "collect_inputs": "recognizer", "default_model_path": "recognizer",
            "load_backend": "recognizer"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    # lazy: torch, timm and onnxruntime load when a model is used, not when the CLI parses its options
    if name in _EXPORTS:
        from importlib import import_module

        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'emotune.inference' has no attribute {name!r}")
