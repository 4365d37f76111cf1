"""The per-frame encoder and the embedding cache.

`FrameEncoder` turns face frames into embeddings: the pooled features before the classifier (timm `pre_logits`)
of an emotune checkpoint (`default`, a run folder, a card) or of a registered ImageNet backbone (`timm:resnet18`,
with `--encoder-weights FILE` or random weights). It feeds frames through the one `Preprocess` of its card.

`EmbeddingCache` keeps each video's embeddings on disk so that a frozen encoder runs once and the temporal head then
trains in seconds on a CPU. The cache key is the sha256 of the encoder's weights (every tensor, in order) and its
preprocessing, so changed weights (a fine-tuned or re-trained encoder) or a changed input size never reuse stale
embeddings; within a key, a video's entry also records each frame file's size, mtime and face box, and a changed
frame recomputes that video. Entries are written atomically (emotune.io), so a killed run leaves no half entry.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import BadInputError, CheckpointError, ConfigError
from ..io import atomic_write, atomic_write_json

ENCODER_FIELDS = ("backbone", "input_size", "mean", "std", "channels", "in_chans", "source_size", "framing", "resize_mode")


class FrameEncoder(nn.Module):
    """A backbone whose `forward` gives N x D embeddings; `spec` records how to rebuild it (card fields + outputs)."""

    def __init__(self, model: nn.Module, spec: dict[str, Any]):
        super().__init__()
        self.model, self.spec = model, spec
        if not hasattr(model, "forward_head"):
            raise ConfigError(f"encoder {spec.get('source')}: its head ({spec.get('head')}) gives no pooled features; "
                              "use a model with the linear head")
        with torch.no_grad():
            self.dim = int(self.forward(torch.zeros(1, spec["in_chans"], spec["input_size"], spec["input_size"])).shape[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True).flatten(1)

    def preprocess(self):
        from ..data.transforms import Preprocess

        s = self.spec
        return Preprocess(s["input_size"], tuple(s["mean"]), tuple(s["std"]), s["channels"], s["in_chans"],
                          s.get("source_size") or 0, s.get("resize_mode") or "squash")

    def key(self) -> str:
        """sha256 of the weights (every tensor's name, dtype, shape and bytes) and the preprocessing."""
        h = hashlib.sha256()
        for name, t in self.model.state_dict().items():
            t = t.detach().cpu().contiguous()
            h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
            h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
        h.update(json.dumps({k: self.spec.get(k) for k in ENCODER_FIELDS}, sort_keys=True).encode())
        return h.hexdigest()


def load_encoder(source: str = "default", weights: str | None = None) -> FrameEncoder:
    """`default` (the bundled model), an emotune checkpoint, or `timm:NAME` / a registered backbone name (ImageNet
    weights from the local file `weights`, else random: for tests and benchmarks)."""
    from ..faces.align import FER2013_FRAMING
    from ..models import create_model, get_model_config, load_checkpoint, normalisation
    from ..models.transfer import is_emotune_checkpoint

    from ..models.bundled import is_bundled_name, resolve_model

    if is_bundled_name(source) or is_emotune_checkpoint(source):
        path = resolve_model(source, "--encoder")
        model, card = load_checkpoint(path)
        if (card.head or {}).get("type", "linear") != "linear":
            raise ConfigError(f"--encoder {source}: a {card.head.get('type')} head; the encoder needs a linear-head model")
        spec = {k: getattr(card, k) for k in ENCODER_FIELDS}
        spec.update(source=str(source), outputs=card.num_outputs, weights_sha256=card.sha256)
        return FrameEncoder(model.eval(), spec)
    name = source.split(":", 1)[1] if source.startswith("timm:") else source
    try:
        mcfg = get_model_config(name)
    except Exception:
        raise ConfigError(f"--encoder {source}: not an emotune checkpoint (run folder, card) nor a registered backbone") from None
    mean, std = normalisation(name, weights)
    model = create_model(name, 0, weights or None, img_size=mcfg.input_size)
    spec = {"backbone": name, "input_size": mcfg.input_size, "mean": list(mean), "std": list(std), "channels": "rgb",
            "in_chans": 3, "source_size": 0, "framing": FER2013_FRAMING.to_dict(),
            "resize_mode": "squash", "source": str(source), "outputs": 0, "weights_sha256": ""}
    return FrameEncoder(model.eval(), spec)


def build_encoder(spec: dict[str, Any]) -> FrameEncoder:
    """An encoder with the architecture a saved spec describes (weights loaded by the caller)."""
    from ..models import create_model

    try:
        model = create_model(spec["backbone"], int(spec.get("outputs", 0)), None, img_size=spec["input_size"], in_chans=spec["in_chans"])
    except KeyError as exc:
        raise CheckpointError(f"temporal card: encoder spec lacks {exc}") from None
    return FrameEncoder(model.eval(), dict(spec))


def read_frame(path: Path, box, where: str) -> np.ndarray:
    """One frame as RGB uint8, cropped to its face box (AFEW-VA landmarks) when it has one."""
    from ..data.images import read_image

    img = read_image(path, "rgb")
    if box is not None:
        x0, y0, x1, y1 = box
        b = (max(x0, 0), max(y0, 0), min(x1, img.width), min(y1, img.height))
        if b[2] - b[0] >= 2 and b[3] - b[1] >= 2:
            img = img.crop(b)
    return np.asarray(img)


@torch.no_grad()
def embed_frames(encoder: FrameEncoder, frames: Sequence[np.ndarray], batch_size: int = 64, device: str = "cpu") -> np.ndarray:
    """N RGB uint8 crops -> N x D float32 embeddings."""
    prep = encoder.preprocess()
    encoder = encoder.to(device).eval()
    out = [encoder(torch.from_numpy(prep.batch(frames[i:i + batch_size])).to(device)).float().cpu().numpy()
           for i in range(0, len(frames), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, encoder.dim), np.float32)


class EmbeddingCache:
    """`<root>/<key>/<video-id>.safetensors` per video (module doc); `root` None: no cache (kept in memory only)."""

    def __init__(self, root: str | Path | None, key: str, identity: dict[str, Any] | None = None):
        self.root = Path(root) / key if root else None
        self.key = key
        self.hits = self.misses = 0
        if self.root is not None:
            self.root.mkdir(parents=True, exist_ok=True)
            info = self.root / "encoder.json"
            if identity is not None and not info.is_file():
                atomic_write_json(info, {"key": key, **identity})

    @staticmethod
    def stamps(video) -> list[list]:
        out = []
        for p, box in zip(video.paths, video.boxes or [None] * len(video)):
            try:
                st = p.stat()
            except OSError:
                raise BadInputError(p, "frame image not found") from None
            out.append([str(p), st.st_size, st.st_mtime_ns, list(box) if box else None])
        return out

    def _file(self, video) -> Path:
        ident = hashlib.sha256(json.dumps([video.name, [str(p) for p in video.paths]]).encode()).hexdigest()[:24]
        return self.root / f"{ident}.safetensors"

    def get(self, video) -> np.ndarray | None:
        if self.root is None:
            return None
        f = self._file(video)
        if not f.is_file():
            return None
        from safetensors import safe_open

        try:
            with safe_open(str(f), framework="np") as fh:
                meta = fh.metadata() or {}
                emb = fh.get_tensor("embeddings")
        except Exception:  # noqa: BLE001 - a damaged entry is recomputed
            return None
        if json.loads(meta.get("stamps", "null")) != self.stamps(video) or meta.get("key") != self.key:
            return None
        return emb

    def put(self, video, emb: np.ndarray) -> None:
        if self.root is None:
            return
        from safetensors.numpy import save_file

        meta = {"key": self.key, "video": video.name, "stamps": json.dumps(self.stamps(video))}
        atomic_write(self._file(video), lambda p: save_file({"embeddings": np.ascontiguousarray(emb, np.float32)}, str(p), metadata=meta))


def embed_videos(encoder: FrameEncoder, videos, cache: EmbeddingCache, batch_size: int = 64, device: str = "cpu",
                 show: bool = False) -> list[np.ndarray]:
    """Every video's n x D embeddings, from the cache where its entry is current."""
    from ..progress import progress

    out = []
    for v in progress(videos, show, desc="embedding frames", unit="video"):
        emb = cache.get(v)
        if emb is None:
            cache.misses += 1
            frames = [read_frame(p, b, w) for p, b, w in zip(v.paths, v.boxes or [None] * len(v), v.where or [""] * len(v))]
            emb = embed_frames(encoder, frames, batch_size, device)
            cache.put(v, emb)
        else:
            cache.hits += 1
        out.append(emb)
    return out
