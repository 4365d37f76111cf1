"""`emotune synth quality`: how good, faithful, varied and original a generator's faces are, measured offline.

Features: the penultimate layer (1280-d global-pooled MobileNetV2 features) of emotune's bundled FER2013 classifier
(`emotune/weights/default.safetensors`), which ships with the package. The Frechet distance on these features is NOT
the Inception FID of the GAN papers (other network, other training data, far fewer images): compare it only between
generators scored here with the same numbers of images, against the real-vs-real floor reported beside it.

- frechet_distance: generated vs real faces (pooled over classes), and per class; `real_vs_real` splits the real faces
  in two halves and scores one against the other: the floor at this sample size.
- class fidelity: the bundled classifier's accuracy on generated faces by conditioned class (classes it lacks are
  left out), with its accuracy on the real faces as the reference.
- diversity: mean pairwise feature distance within each class, generated vs real (a ratio well below 1 = mode collapse).
- memorisation: each generated face's nearest training face in feature space, against real faces' nearest other
  training face; `near_copies` counts generated faces closer than the 1st percentile of real-to-train distances, and
  nn_grid.png shows generated faces beside their nearest training faces. It is written into the run folder only
  (it holds dataset images: keep it out of repositories and docs).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError
from ..io import atomic_write, atomic_write_json, atomic_write_text

FEATURES = "emotune bundled FER2013-only MobileNetV2 (fer2013.safetensors), penultimate 1280-d features"


class FeatureNet:
    """A bundled classifier: penultimate features and class probabilities of uint8 face arrays. By default the
    FER2013-only model (`fer2013`), a fixed reference, so quality figures stay comparable when the default model changes."""

    def __init__(self, model: str | Path | None = None):
        from ..data.transforms import Preprocess
        from ..models import load_checkpoint
        from ..models.bundled import resolve_model

        self.model, self.card = load_checkpoint(resolve_model(model or "fer2013"))
        self.prep = Preprocess.from_card(self.card)

    @torch.no_grad()
    def __call__(self, faces: list[np.ndarray] | np.ndarray, batch: int = 128) -> tuple[np.ndarray, np.ndarray]:
        from PIL import Image

        feats, probs = [], []
        for i in range(0, len(faces), batch):
            x = torch.from_numpy(self.prep.batch([Image.fromarray(a) for a in faces[i:i + batch]]))
            f = self.model.forward_head(self.model.forward_features(x), pre_logits=True)
            feats.append(f.numpy())
            probs.append(torch.softmax(self.model.get_classifier()(f), 1).numpy())
        return np.concatenate(feats).astype(np.float64), np.concatenate(probs)


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (the FID formula, on other features)."""
    from scipy import linalg

    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    import warnings

    with warnings.catch_warnings():  # fewer images than feature dimensions: singular covariances are expected
        warnings.simplefilter("ignore")
        covmean = linalg.sqrtm(s1 @ s2)
        if not np.isfinite(covmean).all():
            eps = np.eye(len(s1)) * 1e-6
            covmean = linalg.sqrtm((s1 + eps) @ (s2 + eps))
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * np.real(covmean)))


def mean_pairwise(f: np.ndarray, limit: int = 500, seed: int = 0) -> float:
    from scipy.spatial.distance import pdist

    if len(f) > limit:
        f = f[np.random.default_rng(seed).choice(len(f), limit, replace=False)]
    return float(pdist(f).mean()) if len(f) > 1 else float("nan")


def load_real(data: str, labels: list[str], channels: str, size: int, max_per_class: int, seed: int, fmt: str = "auto"):
    """Real faces of the generator's classes (by canonical name), at most max_per_class each."""
    from ..data.dataset import prepare_samples
    from ..data.sources import load_samples
    from .data import to_uint8

    samples = [s for s in load_samples(data, fmt) if s.label in labels]
    if not samples:
        raise ConfigError(f"{data}: none of its labels is among the generator's classes {labels}; nothing to compare")
    rng = np.random.default_rng(seed)
    keep = []
    for c in labels:
        idx = [i for i, s in enumerate(samples) if s.label == c]
        keep += sorted(rng.choice(idx, min(len(idx), max_per_class), replace=False).tolist()) if idx else []
    prep, cached = prepare_samples([samples[i] for i in keep], channels, "skip", cache=True, show=False)
    px = to_uint8(cached, size, 1 if channels == "grayscale" else 3).numpy()
    px = px[:, 0] if px.shape[1] == 1 else px.transpose(0, 2, 3, 1)
    return px, np.array([s.label for s in prep.samples]), prep.samples


def nn_grid(gen_px: np.ndarray, gen_lab: np.ndarray, train_px: np.ndarray, nn_idx: np.ndarray, labels: list[str],
            per_class: int, path: Path) -> Path:
    """Pairs (generated | nearest training face), `per_class` pairs per class in a row."""
    from .train import grid_image

    rows = []
    for c in labels:
        sel = np.flatnonzero(gen_lab == c)[:per_class]
        if len(sel):
            pairs = [x for i in sel for x in (gen_px[i], train_px[nn_idx[i]])]
            rows.append(np.stack(pairs + [np.zeros_like(pairs[0])] * (2 * per_class - len(pairs))))
    grid = grid_image(rows, [c for c in labels if (gen_lab == c).any()])
    return atomic_write(path, lambda p: grid.save(p, format="PNG"))


def measure(model: str | Path, data: str, out: str | Path | None = None, per_class: int = 200, max_real_per_class: int = 500,
            seed: int = 0, data_format: str = "auto", max_train: int = 5000, classifier: str | Path | None = None) -> dict[str, Any]:
    """Score one generator against real faces `data`; writes quality.json, quality.md and (run folder) nn_grid.png."""
    from scipy.spatial.distance import cdist

    from .data import read_train_images, to_uint8
    from .sample import generate
    from .train import load_generator

    gen, card, card_path = load_generator(model)
    run = card_path.parent
    out = Path(out) if out else run / "quality"
    from ..io import check_writable_dir

    check_writable_dir(out, "--out")
    labels = list(card.labels)
    real_px, real_lab, _ = load_real(data, labels, card.channels, card.input_size, max_real_per_class, seed, data_format)
    classes = [c for c in labels if (real_lab == c).any()]
    gen_px = np.concatenate([generate(gen, labels.index(c), per_class, seed) for c in classes])
    gen_lab = np.repeat(classes, per_class)
    net = FeatureNet(classifier)
    fg, pg = net(gen_px)
    fr, pr = net(real_px)
    cls_labels = list(net.card.labels)
    # halves of the real set, stratified by class, for the floor of the distance at this sample size
    rng = np.random.default_rng(seed)
    half = np.zeros(len(fr), bool)
    for c in classes:
        idx = np.flatnonzero(real_lab == c)
        half[rng.permutation(idx)[: len(idx) // 2]] = True
    per_class_rows = {}
    for c in classes:
        g, r = fg[gen_lab == c], fr[real_lab == c]
        row: dict[str, Any] = {"n_generated": int(len(g)), "n_real": int(len(r)),
                               "frechet_distance": frechet(g, r) if min(len(g), len(r)) > 2 else None,
                               "diversity_generated": mean_pairwise(g, seed=seed), "diversity_real": mean_pairwise(r, seed=seed)}
        row["diversity_ratio"] = row["diversity_generated"] / row["diversity_real"]
        if c in cls_labels:
            k = cls_labels.index(c)
            row["fidelity"] = float((pg[gen_lab == c].argmax(1) == k).mean())
            row["real_accuracy"] = float((pr[real_lab == c].argmax(1) == k).mean())
        per_class_rows[c] = row
    scored = [c for c in classes if "fidelity" in per_class_rows[c]]
    # memorisation: nearest training face
    train_rows = read_train_images(run / "train_images.csv") if (run / "train_images.csv").is_file() else []
    memo: dict[str, Any] = {"available": False}
    if train_rows:

        from ..data.images import read_image

        pick = rng.choice(len(train_rows), min(len(train_rows), max_train), replace=False)
        imgs, ok_paths = [], []
        for i in sorted(pick):
            p = Path(train_rows[i]["path"])
            if p.is_file():
                imgs.append(np.asarray(read_image(p, card.channels)))
                ok_paths.append(str(p))
        if len(imgs) > 1:
            tp = to_uint8(imgs, card.input_size, 1 if card.channels == "grayscale" else 3).numpy()
            tp = tp[:, 0] if tp.shape[1] == 1 else tp.transpose(0, 2, 3, 1)
            ft, _ = net(tp)
            d_gen = cdist(fg, ft)
            nn_gen = d_gen.argmin(1)
            dmin_gen = d_gen.min(1)
            d_tt = cdist(ft, ft)
            np.fill_diagonal(d_tt, np.inf)
            dmin_real = d_tt.min(1)  # each training face's nearest OTHER training face
            thr = float(np.percentile(dmin_real, 1))
            grid_path = nn_grid(gen_px, gen_lab, tp, nn_gen, classes, 4, run / "quality_nn_grid.png")
            memo = {"available": True, "n_train_compared": len(imgs), "median_nn_generated_to_train": float(np.median(dmin_gen)),
                    "median_nn_train_to_other_train": float(np.median(dmin_real)),
                    "near_copies": int((dmin_gen < thr).sum()), "near_copy_threshold": thr, "nn_grid": str(grid_path)}
    mean = lambda key, cs: float(np.mean([per_class_rows[c][key] for c in cs])) if cs else None  # noqa: E731
    result = {"kind": "emotune-synth-quality/1", "generator": str(card_path), "generator_sha256": card.sha256, "real_data": data,
              "features": FEATURES, "note": "Not the Inception FID of the GAN papers: another network and far fewer images; "
              "compare generators only at equal image counts, against real_vs_real",
              "seed": seed, "n_generated": int(len(fg)), "n_real": int(len(fr)), "classes": classes,
              "frechet_distance": frechet(fg, fr), "frechet_real_vs_real": frechet(fr[half], fr[~half]),
              "fidelity": mean("fidelity", scored), "real_accuracy": mean("real_accuracy", scored),
              "fidelity_classes": scored, "diversity_ratio": mean("diversity_ratio", classes),
              "memorisation": memo, "per_class": per_class_rows}
    atomic_write_json(out / "quality.json", result)
    atomic_write_text(out / "quality.md", quality_markdown(result))
    return result


def _f(v: Any, fmt: str = ".3f") -> str:
    return "n/a" if v is None or (isinstance(v, float) and v != v) else format(v, fmt)


def quality_markdown(r: dict[str, Any]) -> str:
    m = r["memorisation"]
    md = [f"# Generator quality: {r['generator']}", "",
          f"Real faces: `{r['real_data']}` ({r['n_real']}); generated: {r['n_generated']} (seed {r['seed']}).",
          f"Features: {r['features']}. {r['note']}.", "",
          "| measure | value |", "|---|---|",
          f"| Frechet distance, generated vs real | {_f(r['frechet_distance'], '.1f')} |",
          f"| Frechet distance, real half vs real half (floor) | {_f(r['frechet_real_vs_real'], '.1f')} |",
          f"| class fidelity (bundled classifier on generated faces) | {_f(r['fidelity'])} |",
          f"| bundled classifier on the real faces (reference) | {_f(r['real_accuracy'])} |",
          f"| diversity, generated / real | {_f(r['diversity_ratio'])} |"]
    if m.get("available"):
        md += [f"| median distance to nearest training face, generated | {_f(m['median_nn_generated_to_train'])} |",
               f"| same, training face to its nearest other training face | {_f(m['median_nn_train_to_other_train'])} |",
               f"| near copies (closer than 1% of training pairs) | {m['near_copies']} |"]
    md += ["", "| class | FD | fidelity | real acc. | diversity gen | diversity real |", "|---|---|---|---|---|---|"]
    md += [f"| {c} | {_f(v['frechet_distance'], '.1f')} | {_f(v.get('fidelity'))} | {_f(v.get('real_accuracy'))} | "
           f"{_f(v['diversity_generated'], '.2f')} | {_f(v['diversity_real'], '.2f')} |" for c, v in r["per_class"].items()]
    if m.get("available"):
        md += ["", f"Nearest-neighbour grid (generated | nearest training face): `{m['nn_grid']}` (run folder only)."]
    return "\n".join(md) + "\n"
