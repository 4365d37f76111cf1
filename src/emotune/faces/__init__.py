"""Face detection (a registry of detectors behind one interface) and alignment to the training framing."""
from .align import FER2013_FRAMING, FER_TEMPLATE, Framing, crop_face
from .detectors import (DEFAULT_DETECTOR, Detector, DetectorConfig, Face, create_detector, get_detector_config,
                        list_detectors, register_detector)

__all__ = ["DEFAULT_DETECTOR", "Detector", "DetectorConfig", "FER2013_FRAMING", "FER_TEMPLATE", "Face", "Framing",
           "create_detector", "crop_face", "get_detector_config", "list_detectors", "register_detector"]
