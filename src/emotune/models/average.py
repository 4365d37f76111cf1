"""Combining checkpoints: weight averaging ("model soup"; timm's avg_checkpoints), one model at the cost of one,
and probability ensembles (ensemble.py), one forward pass per member.

Checkpoints from one fine-tuning trajectory (e.g. the best of two consecutive stages) lie in one basin, so their
average often scores like their ensemble while running as fast as a single model. Select it on validation data.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from pathlib import Path

from torch import nn

from ..errors import CheckpointError
from .card import BOUND_FIELDS, ModelCard, resolve_card_path, save_checkpoint
from .ensemble import EnsembleNet, is_ensemble
from .factory import load_checkpoint

# what must agree for checkpoints to be combined: an ensemble needs one label set and one preprocessing (every member
# sees the same input tensor); a weight average also needs one architecture and head
_SAME_INPUT = tuple(f for f in BOUND_FIELDS if f not in ("backbone", "head"))
_MUST_MATCH = ("backbone", "head", *_SAME_INPUT)


def _load_to_combine(paths: Sequence[str | Path], out: str | Path, weights: Sequence[float] | None,
                     must_match: Sequence[str], what: str) -> tuple[list[tuple[nn.Module, ModelCard]], list[float]]:
    """Load and check the checkpoints to be combined, and normalise their weights to sum to 1."""
    if len(paths) < 2:
        raise CheckpointError(f"{what} needs at least two checkpoints")
    weights = [1.0] * len(paths) if weights is None else [float(w) for w in weights]
    if len(weights) != len(paths) or not all(math.isfinite(w) and w >= 0 for w in weights) or sum(weights) <= 0:
        raise CheckpointError(f"need one finite non-negative weight per checkpoint ({len(paths)}), not all zero; got {weights}")
    cards = [resolve_card_path(p) for p in paths]
    out_stem = Path(out).with_suffix("") if Path(out).suffix in (".json", ".safetensors") else Path(out)
    if any(c.with_suffix("").resolve() == out_stem.resolve() for c in cards):
        raise CheckpointError(f"{out}: would overwrite one of the checkpoints being combined; choose another --out")
    loaded = [load_checkpoint(p) for p in paths]
    first = loaded[0][1]
    for (_, card), path in zip(loaded[1:], paths[1:]):
        for key in must_match:
            if getattr(card, key) != getattr(first, key):
                raise CheckpointError(f"{path}: {key} is {getattr(card, key)!r}, but {paths[0]} has {getattr(first, key)!r}; "
                                      f"{what} needs checkpoints that agree on {', '.join(must_match)}")
    total = sum(weights)
    return loaded, [w / total for w in weights]


def _provenance(paths: Sequence[str | Path], loaded, weights: Sequence[float]) -> list[dict]:
    return [{"model": str(p), "sha256": c.sha256, "weight": w} for p, (_, c), w in zip(paths, loaded, weights)]


def average_checkpoints(paths: Sequence[str | Path], out: str | Path, weights: Sequence[float] | None = None) -> Path:
    """Average the weights of `paths` (uniformly, or by `weights`) into `<out>.safetensors` + `<out>.json`.

    Floating-point tensors (including batch-norm running statistics) are averaged; integer buffers such as
    batch-norm's step counter are taken from the first checkpoint. Returns the new card's path."""
    loaded, weights = _load_to_combine(paths, out, weights, _MUST_MATCH, "averaging")
    first_model, first = loaded[0]
    states = [m.state_dict() for m, _ in loaded]
    avg = {}
    for key, ref in states[0].items():
        if ref.is_floating_point():
            avg[key] = sum(w * s[key].double() for w, s in zip(weights, states)).to(ref.dtype)
        else:
            avg[key] = ref.clone()
    first_model.load_state_dict(avg, strict=True)
    card: ModelCard = copy.deepcopy(first)
    card.training = {**first.training, "averaged_from": _provenance(paths, loaded, weights)}
    card.metrics = {}  # the average has not been scored: evaluate it before trusting it
    return save_checkpoint(out, first_model, card)


def ensemble_checkpoints(paths: Sequence[str | Path], out: str | Path, weights: Sequence[float] | None = None) -> Path:
    """Store the probability ensemble of `paths` (models/ensemble.py) as one checkpoint `<out>.safetensors` + `.json`.

    Members may differ in backbone and head but must share labels and preprocessing. Returns the new card's path."""
    loaded, weights = _load_to_combine(paths, out, weights, _SAME_INPUT, "an ensemble")
    for path, (_, c) in zip(paths, loaded):
        if is_ensemble(c):
            raise CheckpointError(f"{path} is itself an ensemble; list its members instead")
    specs = [{"backbone": c.backbone, "head": c.head or {"type": "linear"}} for _, c in loaded]
    net = EnsembleNet([m for m, _ in loaded], weights, specs)
    first = loaded[0][1]
    card: ModelCard = copy.deepcopy(first)
    card.backbone = "+".join(s["backbone"] for s in specs)
    card.head = net.head_spec()
    card.training = {"ensemble_of": [{**p, "training": c.training} for p, (_, c) in
                                     zip(_provenance(paths, loaded, weights), loaded)]}
    card.metrics = {}  # the ensemble has not been scored: evaluate it before trusting it
    card.license = " AND ".join(dict.fromkeys(c.license for _, c in loaded))
    return save_checkpoint(out, net, card)
