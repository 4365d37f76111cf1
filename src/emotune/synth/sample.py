"""`emotune synth sample`: N faces per class from a generator, written as a class-folder dataset that any emotune
command reads, with manifest.csv (path,label,synthetic=1,generator,seed) and synthetic.json (the generator, its card's
sha256, the seed, and a copy of the generator's training list, so that leak checks need nothing else).

Reproducible: the latents of class c come from a generator seeded by (seed, c) alone, so the same seed gives identical
files (on the same machine and library versions), whichever other classes --classes asks for."""
from __future__ import annotations

import csv
import io
import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError, LabelError
from ..io import atomic_write, atomic_write_json, atomic_write_text, check_writable_dir
from .data import TRAIN_IMAGES

SYNTHETIC_JSON = "synthetic.json"
MANIFEST = "manifest.csv"
GENERATOR_TRAIN_IMAGES = "generator_train_images.csv"


def class_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, index, 29]).generate_state(1, np.uint64)[0] >> 1)


def resolve_classes(requested: Sequence[str] | None, labels: Sequence[str], where: str) -> list[str]:
    """The generator classes asked for, by canonical name; an unknown one is a one-line error naming the choices."""
    from ..taxonomy import canonical_label

    if not requested:
        return list(labels)
    out = []
    for name in requested:
        try:
            c = canonical_label(name, "--classes")
        except LabelError:
            c = name
        if c not in labels:
            raise ConfigError(f"{where}: the generator has no class {name!r}; its classes are {list(labels)}")
        out.append(c)
    return out


@torch.no_grad()
def generate(gen, class_index: int, n: int, seed: int, batch: int = 256) -> np.ndarray:
    """n faces of one class as uint8 arrays, from latents seeded by (seed, class)."""
    from .train import to_pixels

    g = torch.Generator().manual_seed(class_seed(seed, class_index))
    z = torch.randn(n, gen.spec.z_dim, generator=g)
    device = next(gen.parameters()).device
    parts = [to_pixels(gen(z[i:i + batch].to(device), torch.full((len(z[i:i + batch]),), class_index, dtype=torch.long, device=device)))
             for i in range(0, n, batch)]
    return np.concatenate(parts) if parts else np.zeros((0,), np.uint8)


def sample_dataset(model: str | Path, out: str | Path, per_class: int, seed: int = 0, classes: Sequence[str] | None = None,
                   device: str = "cpu") -> Path:
    """Write `per_class` faces of each class into out/<class>/ plus manifest.csv and synthetic.json; returns out."""
    from PIL import Image

    from .train import load_generator

    if per_class < 1:
        raise ConfigError(f"--per-class: must be at least 1, got {per_class}")
    out = check_writable_dir(out, "--out")
    if out.is_dir() and any(out.iterdir()) and not (out / SYNTHETIC_JSON).is_file():
        raise ConfigError(f"{out}: folder is not empty and holds no synthetic set; choose an empty or new --out")
    gen, card, card_path = load_generator(model, device)
    chosen = resolve_classes(classes, card.labels, str(card_path))
    if (out / SYNTHETIC_JSON).is_file():  # replacing an earlier synthetic set: its class folders go
        old = json.loads((out / SYNTHETIC_JSON).read_text(encoding="utf-8"))
        for c in old.get("classes", []):
            shutil.rmtree(out / c, ignore_errors=True)
    rows = []
    for c in chosen:
        faces = generate(gen, card.labels.index(c), per_class, seed)
        (out / c).mkdir(parents=True, exist_ok=True)
        for i, a in enumerate(faces):
            rel = f"{c}/synth_{c}_{i:05d}.png"  # no S###_ prefix: synthetic faces have no subject
            atomic_write(out / rel, lambda p, a=a: Image.fromarray(a).save(p, format="PNG"))
            rows.append([rel, c, 1, str(card_path.resolve()), seed])
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["path", "label", "synthetic", "generator", "seed"])
    w.writerows(rows)
    atomic_write_text(out / MANIFEST, buf.getvalue())
    train_list = card_path.parent / TRAIN_IMAGES
    if train_list.is_file():
        atomic_write_text(out / GENERATOR_TRAIN_IMAGES, train_list.read_text(encoding="utf-8"))
    atomic_write_json(out / SYNTHETIC_JSON, {"kind": "emotune-synthetic/1", "synthetic": True, "generator": str(card_path.resolve()),
                                             "generator_sha256": card.sha256, "generator_data": card.training.get("data"),
                                             "seed": seed, "per_class": per_class, "classes": chosen, "n": len(rows),
                                             "generator_train_images": GENERATOR_TRAIN_IMAGES if train_list.is_file() else None})
    return out
