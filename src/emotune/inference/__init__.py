"""Inference: the Recognizer (detect, align, classify), video streaming, tracking, outputs, ONNX export."""
from .backend import OnnxBackend, TorchBackend, export_onnx
from .recognizer import FaceResult, Recognizer, collect_inputs, default_model_path, load_backend

__all__ = ["FaceResult", "OnnxBackend", "Recognizer", "TorchBackend", "collect_inputs", "default_model_path", "export_onnx",
           "load_backend"]
