"""Weight averaging of checkpoints ("model soup"; timm's avg_checkpoints): one model at the cost of one.

Checkpoints from one fine-tuning trajectory (e.g. the best of two consecutive stages) lie in one basin, so their
average often scores like their ensemble while running as fast as a single model. Select it on validation data.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from pathlib import Path

from ..errors import CheckpointError
from .card import ModelCard, load_checkpoint, resolve_card_path, save_checkpoint

# what must agree for two checkpoints to be averaged: same architecture, head, labels and preprocessing
_MUST_MATCH = ("backbone", "labels", "input_size", "mean", "std", "channels", "in_chans", "source_size", "head")


def average_checkpoints(paths: Sequence[str | Path], out: str | Path, weights: Sequence[float] | None = None) -> Path:
    """Average the weights of `paths` (uniformly, or by `weights`) into `<out>.safetensors` + `<out>.json`.

    Floating-point tensors (including batch-norm running statistics) are averaged; integer buffers such as
    batch-norm's step counter are taken from the first checkpoint. Returns the new card's path."""
    if len(paths) < 2:
        raise CheckpointError("averaging needs at least two checkpoints")
    weights = [1.0] * len(paths) if weights is None else [float(w) for w in weights]
    if len(weights) != len(paths) or not all(math.isfinite(w) and w >= 0 for w in weights) or sum(weights) <= 0:
        raise CheckpointError(f"need one finite non-negative weight per checkpoint ({len(paths)}), not all zero; got {weights}")
    cards = [resolve_card_path(p) for p in paths]
    out_stem = Path(out).with_suffix("") if Path(out).suffix in (".json", ".safetensors") else Path(out)
    if any(c.with_suffix("").resolve() == out_stem.resolve() for c in cards):
        raise CheckpointError(f"{out}: would overwrite one of the checkpoints being averaged; choose another --out")
    loaded = [load_checkpoint(p) for p in paths]
    first_model, first = loaded[0]
    for (_, card), path in zip(loaded[1:], paths[1:]):
        for key in _MUST_MATCH:
            if getattr(card, key) != getattr(first, key):
                raise CheckpointError(f"{path}: {key} is {getattr(card, key)!r}, but {paths[0]} has {getattr(first, key)!r}; "
                                      "only checkpoints of one architecture, head, label set and preprocessing can be averaged")
    total = sum(weights)
    states = [m.state_dict() for m, _ in loaded]
    avg = {}
    for key, ref in states[0].items():
        if ref.is_floating_point():
            avg[key] = sum(w / total * s[key].double() for w, s in zip(weights, states)).to(ref.dtype)
        else:
            avg[key] = ref.clone()
    first_model.load_state_dict(avg, strict=True)
    card: ModelCard = copy.deepcopy(first)
    card.training = {**first.training, "averaged_from": [{"model": str(p), "sha256": c.sha256, "weight": w / total}
                                                         for p, (_, c), w in zip(paths, loaded, weights)]}
    card.metrics = {}  # the average has not been scored: evaluate it before trusting it
    return save_checkpoint(out, first_model, card)
