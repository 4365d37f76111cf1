"""`emotune models` and `emotune detectors`: the registered backbones, the bundled models and the face detectors."""
from __future__ import annotations

import argparse


def add_no_arguments(p: argparse.ArgumentParser) -> None:
    """The listing commands take no options."""


def run_models(args: argparse.Namespace) -> int:
    from ..models import get_model_config, list_models, read_card
    from ..models.bundled import bundled_models, bundled_path, int8_companion
    from ..tables import render_table

    rows = [[n, c.timm_name, c.hub_name or (f"package:{c.weights_package}" if c.weights_package else "-"), c.input_size, c.license]
            for n, c in ((n, get_model_config(n)) for n in list_models())]
    print("Backbones (emotune train --backbone NAME):")
    print(render_table(["name", "timm model", "ImageNet weights", "size", "licence"], rows, fmt="text"))
    bundled = []
    for name in bundled_models():
        card = read_card(bundled_path(name))[0]
        bundled.append([name, card.input_kind, card.backbone, ", ".join(card.labels + list(card.target_names)),
                        card.input_size, "int8" if int8_companion(bundled_path(name)) else "fp32", (card.sha256 or "")[:12]])
    print("\nBundled models (emotune predict --model NAME):")
    print(render_table(["name", "input", "backbone", "outputs", "size", "on CPU", "sha256"], bundled, fmt="text"))
    return 0


def run_detectors(args: argparse.Namespace) -> int:
    from ..faces import get_detector_config, list_detectors
    from ..tables import render_table

    rows = [[n, "yes" if c.landmarks else "no", "required" if c.needs_file else "bundled", c.license or "-", c.description]
            for n, c in ((n, get_detector_config(n)) for n in list_detectors())]
    print(render_table(["name", "landmarks", "model file", "licence", "description"], rows, fmt="text"))
    return 0
