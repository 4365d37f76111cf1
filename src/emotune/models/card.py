"""Checkpoints as safetensors plus a JSON model card; never pickled modules.

The card says everything needed to rebuild and feed the model (backbone, labels in order, input size,
mean/std, channels, face framing) and to trust it (training data, metrics, licence, sha256 of the weights file).
This module only reads and writes cards and weight files; building models from them is factory.py's job.
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import re
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import CheckpointError
from ..faces.align import FER2013_FRAMING, Framing
from ..io import atomic_write, atomic_write_json, sha256_file

log = logging.getLogger(__name__)

CARD_VERSION = 2
CARD_FORMAT = f"emotune-model/{CARD_VERSION}"
_FORMAT_RE = re.compile(r"emotune-model/(\d+)")
# card fields that change what the model computes, how its inputs are prepared or how its outputs are named
BOUND_FIELDS = ("backbone", "labels", "input_size", "mean", "std", "channels", "in_chans", "source_size", "head", "framing",
                "targets", "input_kind", "resize_mode", "temporal", "kind")
INPUT_KINDS = ("face", "scene")
# what the weights are: an emotion classifier (everything but `emotune synth`), or a class-conditional face generator
# (`emotune synth train`: labels are the classes it is conditioned on, input_size the side of the faces it makes)
MODEL_KINDS = ("classifier", "generator")
RESIZE_MODES = ("squash", "center_crop", "letterbox")
META_CARD = "emotune_card"  # weights-file metadata key: the bound fields (safetensors) or the whole card (ONNX)
_warned_unbound: set[str] = set()


@dataclass
class ModelCard:
    """A model card (format "emotune-model/2").

    Binding: the fields in BOUND_FIELDS (backbone, labels and their order, input_size, mean, std, channels, in_chans,
    source_size, head incl. ensemble members and weights, framing) are written into the weights file's metadata
    when the checkpoint is saved, and reading the card checks them there: an edited card raises CheckpointError
    naming the fields. Provenance and bookkeeping stay free to change after training without re-saving the weights:
    metrics (the bundle step adds test metrics), training, license, and the derived weights_file, sha256, format,
    emotune_version, torch_version, created. Weights of format-1 cards carry no binding: they load with a warning
    (`upgrade_checkpoint` binds them).

    Schema: a card must use only the keys below. Unknown keys in a card of this format or an older one are refused
    (a misspelt key would otherwise be ignored silently). A card of a newer format is read, with a warning, when all
    its keys are known here, and refused, naming the keys, when it has new ones (their meaning is unknown here).
    """

    backbone: str
    labels: list[str]
    input_size: int
    mean: list[float]
    std: list[float]
    channels: str = "rgb"
    in_chans: int = 3
    # faces in the training data were this many pixels wide before resizing to input_size (FER2013: 48); inference
    # resamples crops to it first so that photos look like the training data (0 = no such step)
    source_size: int = 0
    head: dict[str, Any] = field(default_factory=lambda: {"type": "linear"})
    # how faces are cropped for this model (faces/align.py Framing); cards without one were trained on FER2013's
    framing: dict[str, Any] = field(default_factory=FER2013_FRAMING.to_dict)
    # continuous outputs after the class probabilities, each {"name", "column", "scale": [lo, hi]}: predicted on
    # [-1, 1]; `scale` is the source rating scale they map back to (data/targets.py from_unit); [] = classes only
    targets: list[dict[str, Any]] = field(default_factory=list)
    # what the model reads: a face crop (detect + align first) or a whole photo (scene: no detection)
    input_kind: str = "face"
    # how an image becomes input_size x input_size: squash (resize both sides), center_crop (shorter side, then the
    # centre square) or letterbox (longer side, padded); data/transforms.py Preprocess
    resize_mode: str = "squash"
    # a sequence model (emotune/temporal): {"head": {type, ...}, "window", "stride", "embed_dim", "encoder": {...},
    # "finetune"}; its outputs are per frame over a window of frames; {} = a per-image model
    temporal: dict[str, Any] = field(default_factory=dict)
    kind: str = "classifier"
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    license: str = "apache-2.0"
    weights_file: str = ""
    sha256: str = ""
    format: str = CARD_FORMAT
    emotune_version: str = ""
    torch_version: str = ""
    created: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def target_names(self) -> list[str]:
        return [t["name"] for t in self.targets]

    @property
    def num_outputs(self) -> int:
        """The head's width: one logit per class, then one value per target."""
        return len(self.labels) + len(self.targets)

    def to_source_scale(self, name: str, value):
        """A predicted target (on [-1, 1]) back on the rating scale it was trained from (e.g. 1-7 for OASIS)."""
        from ..data.targets import from_unit

        spec = next((t for t in self.targets if t["name"] == name), None)
        if spec is None:
            raise KeyError(f"model has no target {name!r}; it has {self.target_names}")
        return from_unit(value, spec.get("scale") or (-1.0, 1.0))

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "model card") -> "ModelCard":
        known = {f.name for f in fields(cls)}
        if not isinstance(d, dict):
            raise CheckpointError(f"{where}: model card is not a JSON object")
        fmt = d.get("format", "emotune-model/1")  # cards before the format field was written
        version = format_version(fmt)
        if version is None:
            raise CheckpointError(f"{where}: unknown model card format {fmt!r} (expected emotune-model/<number>)")
        unknown = sorted(set(d) - known)
        if unknown and version > CARD_VERSION:
            raise CheckpointError(f"{where}: written by a newer emotune (format {fmt}; this one reads {CARD_FORMAT}) with "
                                  f"keys it does not know: {unknown}; upgrade emotune")
        if unknown:
            raise CheckpointError(f"{where}: unknown model card keys {unknown} for format {fmt} (misspelt or edited?)")
        if version > CARD_VERSION:
            log.warning("%s: model card format %s is newer than this emotune's %s; all its keys are known, reading it",
                        where, fmt, CARD_FORMAT)
        missing = [k for k in ("backbone", "labels", "input_size", "mean", "std") if k not in d]
        if missing:
            raise CheckpointError(f"{where}: model card lacks {missing}")
        labels, size = d["labels"], d["input_size"]
        targets = d.get("targets", [])
        if not (isinstance(targets, list) and all(isinstance(t, dict) and isinstance(t.get("name"), str) for t in targets)):
            raise CheckpointError(f"{where}: 'targets' must be a list of {{name, column, scale}} objects, got {targets!r}")
        if not (isinstance(labels, list) and (labels or targets) and all(isinstance(x, str) for x in labels)):
            raise CheckpointError(f"{where}: 'labels' must be a non-empty list of names, got {labels!r}")
        if d.get("input_kind", "face") not in INPUT_KINDS:
            raise CheckpointError(f"{where}: 'input_kind' must be one of {list(INPUT_KINDS)}, got {d.get('input_kind')!r}")
        if d.get("resize_mode", "squash") not in RESIZE_MODES:
            raise CheckpointError(f"{where}: 'resize_mode' must be one of {list(RESIZE_MODES)}, got {d.get('resize_mode')!r}")
        if d.get("kind", "classifier") not in MODEL_KINDS:
            raise CheckpointError(f"{where}: 'kind' must be one of {list(MODEL_KINDS)}, got {d.get('kind')!r}")
        if not (isinstance(size, int) and not isinstance(size, bool) and size > 0):
            raise CheckpointError(f"{where}: 'input_size' must be a positive integer, got {size!r}")
        for key in ("mean", "std"):
            v = d[key]
            if not (isinstance(v, list) and v and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)):
                raise CheckpointError(f"{where}: {key!r} must be a list of numbers, got {v!r}")
        try:
            framing = Framing.from_dict(d.get("framing")).to_dict()
        except ValueError as exc:
            raise CheckpointError(f"{where}: {exc}") from None
        return cls(**{**d, "format": fmt, "framing": framing})


def format_version(fmt: Any) -> int | None:
    """The schema version of a card's format string ("emotune-model/2" -> 2), None when it is not one."""
    m = _FORMAT_RE.fullmatch(fmt) if isinstance(fmt, str) else None
    return int(m.group(1)) if m else None


# ---- binding the card to its weights ----------------------------------------------------------------------------
def _canonical(value: Any) -> Any:
    """The value as it reads back from JSON (tuples -> lists), so in-memory and loaded cards compare equal."""
    return json.loads(json.dumps(value))


def bound_fields(card: ModelCard) -> dict[str, Any]:
    """The card fields bound into its weights file (BOUND_FIELDS), as JSON values."""
    return _canonical({k: getattr(card, k) for k in BOUND_FIELDS})


def binding_metadata(card: ModelCard) -> dict[str, str]:
    """safetensors metadata that binds the weights to `card` (safetensors metadata values are strings)."""
    return {"format": CARD_FORMAT, META_CARD: json.dumps(bound_fields(card), sort_keys=True, separators=(",", ":"))}


def stored_binding(weights: str | Path) -> dict[str, Any] | None:
    """The card fields a weights file was saved with: safetensors metadata, or the card an ONNX export embeds;
    None for files written before cards were bound."""
    weights = Path(weights)
    try:
        if weights.suffix == ".onnx":
            import onnx

            props = {p.key: p.value for p in onnx.load(str(weights), load_external_data=False).metadata_props}
        else:
            with safe_open(str(weights), framework="pt") as fh:
                props = fh.metadata() or {}
        text = props.get(META_CARD)
        stored = None if text is None else json.loads(text)
    except Exception as exc:  # noqa: BLE001 - a truncated header, bad JSON, a foreign file
        raise CheckpointError(f"{weights}: cannot read the model card bound into it ({type(exc).__name__}: {exc})") from None
    if stored is not None and not isinstance(stored, dict):
        raise CheckpointError(f"{weights}: the model card bound into it is not a JSON object")
    return stored


def _default(name: str) -> Any:
    f = next(f for f in fields(ModelCard) if f.name == name)
    if f.default is not MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not MISSING else MISSING


def _short(v: Any) -> str:
    text = json.dumps(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _first_difference(a: Any, b: Any, path: str) -> tuple[str, Any, Any]:
    """The innermost path where two JSON values differ (e.g. head.weights), with both values there."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if a.get(k, MISSING) != b.get(k, MISSING):
                return _first_difference(a.get(k), b.get(k), f"{path}.{k}")
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return _first_difference(x, y, f"{path}[{i}]") if isinstance(x, dict) else (path, a, b)
    return path, a, b


def check_binding(card: ModelCard, card_path: str | Path, weights: str | Path) -> None:
    """Refuse a card whose bound fields differ from those saved in its weights file (the card was edited, or the
    weights replaced); warn once about format-1 checkpoints, which carry no binding."""
    try:
        stored = stored_binding(weights)
    except CheckpointError:
        if card.sha256 and sha256_file(weights) != card.sha256:  # a damaged file: the sha256 says it more plainly
            raise CheckpointError(f"{weights}: sha256 does not match its model card {card_path} (corrupt or replaced)") from None
        raise
    if stored is None:
        if (format_version(card.format) or 1) >= 2:
            raise CheckpointError(f"{card_path}: a {card.format} card, but {Path(weights).name} has no model card bound into "
                                  "it (weights from another checkpoint?)")
        key = str(Path(card_path).resolve())
        if key not in _warned_unbound:
            _warned_unbound.add(key)
            log.warning("%s: older model card (%s) not bound to its weights, so an edited card goes unnoticed; "
                        "bind it with emotune.models.upgrade_checkpoint", card_path, card.format)
        return
    mine = bound_fields(card)
    theirs = {k: _canonical(stored[k]) if k in stored else _default(k) for k in BOUND_FIELDS}
    changed = [k for k in BOUND_FIELDS if mine[k] != theirs[k]]
    if changed:
        where, a, b = _first_difference(mine[changed[0]], theirs[changed[0]], changed[0])
        raise CheckpointError(f"{card_path}: model card field(s) {', '.join(changed)} differ from those bound into "
                              f"{Path(weights).name} ({where}: card {_short(a)}, weights {_short(b)}); "
                              "the card was edited or the weights replaced")


# ---- reading and writing ----------------------------------------------------------------------------------------
def save_checkpoint(stem: str | Path, model: nn.Module | dict[str, torch.Tensor], card: ModelCard) -> Path:
    """Write `<stem>.safetensors` (with the card's bound fields in its metadata) then `<stem>.json` (the card with
    the weights' sha256), each atomically. `model` is a module or a state dict. The one way emotune writes
    checkpoints: training, averaging, ensembling and bundling all come through here."""
    from .. import __version__

    stem = Path(stem)
    if stem.suffix in (".safetensors", ".json"):
        stem = stem.with_suffix("")
    # append, not with_suffix: a stem such as "resnet18.fer" must keep its dot
    weights = stem.parent / f"{stem.name}.safetensors"
    state = model if isinstance(model, dict) else model.state_dict()
    state = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    card.format = CARD_FORMAT
    ModelCard.from_dict(_canonical(card.to_dict()), f"{stem}: card to save")  # never write a card that cannot be read
    card.framing = Framing.from_dict(card.framing).to_dict()
    meta = binding_metadata(card)
    atomic_write(weights, lambda p: save_file(state, str(p), metadata=meta))
    card.weights_file = weights.name
    card.sha256 = sha256_file(weights)
    card.emotune_version = __version__
    card.torch_version = torch.__version__
    card.created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    card_path = stem.parent / f"{stem.name}.json"
    atomic_write_json(card_path, card.to_dict())
    return card_path


def resolve_card_path(path: str | Path) -> Path:
    """A run folder (its best checkpoint), a card .json, or a .safetensors with its card beside it."""
    p = Path(path)
    if p.is_dir():
        for name in ("best.json", "model.json", "last.json"):
            if (p / name).is_file():
                return p / name
        raise CheckpointError(f"{p}: no best.json/model.json/last.json model card in this folder")
    if p.suffix == ".safetensors":
        p = p.with_suffix(".json")
    if not p.is_file():
        raise CheckpointError(f"{p}: model card not found")
    return p


def weights_path(card: ModelCard, card_path: Path) -> Path:
    """The weights file a card names (beside it)."""
    return card_path.parent / (card.weights_file or card_path.with_suffix(".safetensors").name)


def verified_weights(card: ModelCard, card_path: Path, strict: bool = True) -> Path:
    """The weights file a card names, present and matching the card's sha256 (one check for every loader). `strict`
    also refuses a card without a sha256; otherwise a missing sha256 is taken as nothing to check."""
    weights = weights_path(card, card_path)
    if not weights.is_file():
        raise CheckpointError(f"{weights}: weights file named by {card_path} not found")
    if strict and not card.sha256:
        raise CheckpointError(f"{card_path}: model card has no sha256 of its weights; refusing unverified weights")
    if card.sha256 and sha256_file(weights) != card.sha256:
        raise CheckpointError(f"{weights}: sha256 does not match its model card {card_path} (corrupt or replaced)")
    return weights


def read_card(path: str | Path, verify: bool = True) -> tuple[ModelCard, Path]:
    """The card of a checkpoint, and its path. With `verify`, its bound fields are checked against its weights file
    when that exists (a missing file is the loader's error to report)."""
    card_path = resolve_card_path(path)
    try:
        data = json.loads(card_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{card_path}: model card is not valid JSON ({exc})") from None
    card = ModelCard.from_dict(data, str(card_path))
    weights = weights_path(card, card_path)
    if verify and weights.is_file():
        check_binding(card, card_path, weights)
    return card, card_path


def upgrade_checkpoint(path: str | Path) -> Path:
    """Bind a format-1 checkpoint to its card as it is now: rewrite its weights file with the same tensors plus the
    card's bound fields, and its card with the new format and sha256. Trusts the card; a bound one is left alone."""
    card, card_path = read_card(path, verify=False)
    weights = weights_path(card, card_path)
    if weights.suffix != ".safetensors" or not weights.is_file():
        raise CheckpointError(f"{weights}: no safetensors weights file to bind")
    if stored_binding(weights) is not None:
        check_binding(card, card_path, weights)
        return card_path
    if not card.sha256 or sha256_file(weights) != card.sha256:
        raise CheckpointError(f"{weights}: sha256 does not match its model card {card_path}; refusing to bind it")
    state = load_file(str(weights))
    card.format = CARD_FORMAT
    meta = binding_metadata(card)
    atomic_write(weights, lambda p: save_file(state, str(p), metadata=meta))
    card.sha256 = sha256_file(weights)
    atomic_write_json(card_path, card.to_dict())
    return card_path


def require_image_model(card: ModelCard, where: str | Path, command: str) -> ModelCard:
    """A per-image model, or a one-line refusal naming the command that takes this one: a sequence model (emotune seq)
    reads windows of frames, not single images."""
    if card.temporal:
        raise CheckpointError(f"{where}: a sequence model over windows of frames (emotune seq), not a per-image model; "
                              f"use `emotune seq {command}`")
    return card
