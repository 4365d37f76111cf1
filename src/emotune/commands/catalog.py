"""`emotune models` and `emotune detectors`: the registered backbones and face detectors, as text tables."""
from __future__ import annotations

import argparse


def add_no_arguments(p: argparse.ArgumentParser) -> None:
    """The listing commands take no options."""


def run_models(args: argparse.Namespace) -> int:
    from ..models import get_model_config, list_models
    from ..tables import render_table

    rows = [[n, c.timm_name, c.hub_name or "-", c.input_size, c.license]
            for n, c in ((n, get_model_config(n)) for n in list_models())]
    print(render_table(["name", "timm model", "hub weights", "size", "licence"], rows, fmt="text"))
    return 0


def run_detectors(args: argparse.Namespace) -> int:
    from ..faces import get_detector_config, list_detectors
    from ..tables import render_table

    rows = [[n, "yes" if c.landmarks else "no", "required" if c.needs_file else "bundled", c.license or "-", c.description]
            for n, c in ((n, get_detector_config(n)) for n in list_detectors())]
    print(render_table(["name", "landmarks", "model file", "licence", "description"], rows, fmt="text"))
    return 0
