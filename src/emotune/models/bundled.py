"""Models that ship inside the package (`emotune/weights/NAME.json` + `NAME.safetensors`), selectable by name.

Every `--model` goes through `resolve_model`, so a bundled name (`default`, `scene`, `fer2013`, ...) works wherever a
run folder, card, .safetensors or .onnx file does. An existing path wins over a bundled name of the same spelling,
except `default`, which always means the bundled face model.
"""
from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from ..errors import CheckpointError

DEFAULT = "default"  # the face model predict uses without --model
SCENE = "scene"  # the whole-image model --scene / --with-scene use


def bundled_dir() -> Path:
    """The package folder that holds the bundled cards and weights."""
    return Path(str(resources.files("emotune") / "weights"))


def bundled_path(name: str) -> Path:
    """The card path of bundled model `name` (it may be absent in a slim build)."""
    return bundled_dir() / f"{name}.json"


def weights_file_of(card: Path) -> Path | None:
    """The weights a bundled card names (two names may share one file, as `fer2013` and `default` did while the default
    was the FER2013-only model); None for a card that is not a model's (e.g. an exported .onnx's)."""
    try:
        name = json.loads(card.read_text()).get("weights_file")
    except (OSError, ValueError):
        return None
    return card.parent / name if isinstance(name, str) and name.endswith(".safetensors") else None


def _has_weights(card: Path) -> bool:
    w = weights_file_of(card)
    return w is not None and w.is_file()


INT8_STEM = ".int8"  # NAME.json's int8 companion: NAME.int8.onnx + NAME.int8.json


def int8_companion(card: Path) -> Path | None:
    """The int8 ONNX file made from exactly the weights `card` describes, shipped beside it (`emotune export --quantize
    int8 -o NAME.int8.onnx`); None when there is none, or when it was made from other weights (a re-bundled model whose
    int8 file was not remade), so a stale int8 file is never used in place of the model the card names."""
    onnx_path = card.with_name(card.stem + INT8_STEM + ".onnx")
    try:
        quant = json.loads(onnx_path.with_suffix(".json").read_text())["training"]["quantization"]
        source = json.loads(card.read_text())["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return onnx_path if onnx_path.is_file() and source and quant.get("source_sha256") == source else None


def bundled_models() -> list[str]:
    """Names of the bundled models this build has: every card in the weights folder whose weights are there, `default`
    first."""
    names = sorted(p.stem for p in bundled_dir().glob("*.json") if _has_weights(p))
    return sorted(names, key=lambda n: (n != DEFAULT, n))


def is_bundled_name(spec: object) -> bool:
    """True when `spec` names a bundled model rather than a file or folder."""
    if spec in (None, "", DEFAULT):
        return True
    s = str(spec)
    return "/" not in s and "\\" not in s and not Path(s).exists() and _has_weights(bundled_path(s))


def resolve_model(spec: str | Path | None, what: str = "--model") -> Path:
    """A model spec -> a path: None/'' /'default' and bundled names -> the packaged card; anything else as given."""
    if spec in (None, ""):
        spec = DEFAULT
    if is_bundled_name(spec):
        path = bundled_path(str(spec))
        if not path.is_file():
            raise CheckpointError(f"{what} {spec}: this emotune build has no bundled {spec!s} model; pass a run folder")
        return path
    if "/" not in str(spec) and not Path(str(spec)).suffix and not Path(str(spec)).exists():
        names = ", ".join(bundled_models()) or "none"
        raise CheckpointError(f"{what} {spec}: no such file or folder, and not a bundled model ({names})")
    return Path(str(spec))
