"""Batch inference beyond one process: `emotune predict INPUTS --engine ray` (see ray_engine and docs/serve.md)."""
from __future__ import annotations
