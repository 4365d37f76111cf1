"""The generator's training loop, with `emotune train`'s run-folder habits.

RUN holds config.yaml, log.csv (one row per epoch), train_images.csv (the faces it learnt from: leak checks read it),
samples/epoch_NNN.png (a per-class grid from fixed latents, each epoch) and samples.png (the latest), last.safetensors +
last.json (the EMA generator and its bound card, kind "generator"), and train_state.safetensors (generator,
discriminator, EMA, both optimisers, RNG state and history: no pickles) from which `--resume` continues after kill -9.

Each epoch's draws and noise come from (seed, epoch) alone, so a resumed run repeats what an uninterrupted one does.
"""
from __future__ import annotations

import copy
import csv
import io
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from ..errors import CheckpointError, ConfigError
from ..io import atomic_write, atomic_write_json, atomic_write_text
from ..progress import progress
from .config import SynthConfig, arch_changes
from .data import TRAIN_IMAGES, Faces, load_faces, train_images_csv
from .nets import ARCH, Discriminator, GanSpec, Generator, d_hinge, diff_augment, ema_update, g_hinge, standing_stats

LOG_FIELDS = ["epoch", "steps", "d_loss", "g_loss", "d_real", "d_fake", "seconds", "images_per_second"]
STATE = "train_state.safetensors"
BACKBONE = f"synth-{ARCH}"


@dataclass
class SynthResult:
    run_dir: Path
    epochs_run: int
    history: list[dict[str, Any]] = field(default_factory=list)


def epoch_seed(seed: int, epoch: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, 17]).generate_state(1, np.uint64)[0] >> 1)


def to_pixels(x: torch.Tensor) -> np.ndarray:
    """Generator output in [-1, 1], N x C x S x S -> uint8 N x S x S (grey) or N x S x S x 3."""
    a = ((x.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    return a[:, 0] if a.shape[1] == 1 else a.transpose(0, 2, 3, 1)


def grid_image(rows: list[np.ndarray], names: list[str], scale: int = 2):
    """A PIL grid: one row of faces per class, its name on the left."""
    from PIL import Image, ImageDraw

    n, s = rows[0].shape[0], rows[0].shape[1]
    pad, left = 2, 70
    grid = Image.new("RGB", (left + n * (s * scale + pad), len(rows) * (s * scale + pad)), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    for r, (faces, name) in enumerate(zip(rows, names)):
        y = r * (s * scale + pad)
        draw.text((4, y + s * scale // 2 - 5), name, fill=(0, 0, 0))
        for c, face in enumerate(faces):
            im = Image.fromarray(face).convert("RGB").resize((s * scale, s * scale), Image.NEAREST)
            grid.paste(im, (left + c * (s * scale + pad), y))
    return grid


@torch.no_grad()
def sample_grid(gen: Generator, labels: tuple[str, ...], per_class: int, seed: int, device: torch.device):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(per_class, gen.spec.z_dim, generator=g).to(device)  # the same latents for every class and epoch
    rows = [to_pixels(gen(z, torch.full((per_class,), i, dtype=torch.long, device=device))) for i in range(len(labels))]
    return grid_image(rows, list(labels))


def generator_card(spec: GanSpec, cfg: SynthConfig, faces: Faces, history: list[dict[str, Any]]):
    from ..models import ModelCard

    c = spec.channels
    return ModelCard(backbone=BACKBONE, labels=list(faces.labels), input_size=spec.img_size, mean=[0.5] * c, std=[0.5] * c,
                     channels=cfg.channels, in_chans=c, head=spec.head(), kind="generator", license="research-only (trained on your data)",
                     training={"data": cfg.data, "train_split": cfg.train_split, "n_train": len(faces.samples),
                               "train_class_counts": faces.counts, "train_images": TRAIN_IMAGES, "epochs": len(history),
                               "steps": int(sum(h["steps"] for h in history)), "batch_size": cfg.batch_size,
                               "lr_g": cfg.lr_g, "lr_d": cfg.lr_d, "ema_decay": cfg.ema_decay, "diffaugment": cfg.augment_policy,
                               "hflip": cfg.hflip, "seed": cfg.seed, "loss": "hinge", "spectral_norm": "discriminator"},
                     metrics={"epoch": len(history), **({k: history[-1][k] for k in ("d_loss", "g_loss")} if history else {})})


def write_log(run: Path, history: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=LOG_FIELDS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(history)
    atomic_write_text(run / "log.csv", buf.getvalue())


def check_resume(cfg: SynthConfig, run: Path) -> None:
    saved_path = run / "config.yaml"
    if not saved_path.is_file():
        return
    from ..train.config import load_yaml

    changed = arch_changes(load_yaml(saved_path), cfg)
    if changed:
        what = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changed.items())
        raise ConfigError(f"{run}: --resume cannot change {what} (they shape the generator); start a new run (another --out)")


def train_generator(cfg: SynthConfig) -> SynthResult:
    """Train a class-conditional generator on `cfg.data` into `cfg.out` (see the module docstring)."""
    from ..device import pick_device
    from ..models.card import save_checkpoint
    from ..train.state import load_state, open_run, rng_state, save_state, set_rng_state

    cfg.validate()
    run, cfg.resume = open_run(cfg.out, STATE, cfg.resume, "generator run")
    state_path = run / STATE
    if cfg.resume:
        check_resume(cfg, run)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    device = pick_device(cfg.device)
    faces = load_faces(cfg)
    spec = GanSpec(cfg.img_size, 1 if cfg.channels == "grayscale" else 3, len(faces.labels), cfg.z_dim, cfg.g_width, cfg.d_width)
    gen, disc = Generator(spec).to(device), Discriminator(spec).to(device)
    ema = copy.deepcopy(gen).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    opt_g = torch.optim.Adam(gen.parameters(), lr=cfg.lr_g, betas=(0.0, 0.9))
    opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.lr_d, betas=(0.0, 0.9))
    history: list[dict[str, Any]] = []
    start, step = 0, 0
    if cfg.resume:
        st = load_state(state_path)
        if st.get("spec") != spec.head():
            raise ConfigError(f"{run}: --resume with another architecture or class list than the saved state "
                              f"({st.get('spec')} vs {spec.head()}); start a new run")
        try:
            gen.load_state_dict(st["generator"])
            disc.load_state_dict(st["discriminator"])
            ema.load_state_dict(st["ema"])
            opt_g.load_state_dict(st["opt_g"])
            opt_d.load_state_dict(st["opt_d"])
        except (RuntimeError, KeyError, ValueError) as exc:
            raise CheckpointError(f"{state_path}: does not fit this generator ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
        set_rng_state(st["rng"])
        history, start, step = list(st["history"]), st["progress"]["epoch"] + 1, st["progress"]["step"]
    else:
        run.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        atomic_write_text(run / TRAIN_IMAGES, train_images_csv(faces.samples))
    (run / "samples").mkdir(exist_ok=True)

    n = len(faces.targets)
    steps_per_epoch = cfg.steps_per_epoch or max(1, math.ceil(n / cfg.batch_size))
    bs = min(cfg.batch_size, n)
    policy = cfg.augment_policy
    grid_seed = epoch_seed(cfg.seed, 1 << 30)  # fixed latents of the sample grids
    for epoch in range(start, cfg.epochs):
        es = epoch_seed(cfg.seed, epoch)
        torch.manual_seed(es)  # latents, DiffAugment and flips of this epoch
        draws = torch.Generator().manual_seed(es)
        order = torch.cat([torch.randperm(n, generator=draws) for _ in range(math.ceil(steps_per_epoch * bs / n) + 1)])
        gen.train()
        disc.train()
        t0, sums = time.perf_counter(), np.zeros(4)
        bar = progress(range(steps_per_epoch), cfg.progress, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="step")
        for i in bar:
            idx = order[i * bs:(i + 1) * bs]
            real = faces.images[idx].to(device).float().div(127.5).sub(1)
            y = faces.targets[idx].to(device)
            if cfg.hflip:
                flip = torch.rand(len(idx), device=device) < 0.5
                real = torch.where(flip[:, None, None, None], real.flip(-1), real)
            z = torch.randn(len(idx), spec.z_dim, device=device)
            with torch.no_grad():
                fake = gen(z, y)
            out = disc(diff_augment(torch.cat([real, fake]), policy), torch.cat([y, y]))
            d_real, d_fake = out[:len(idx)], out[len(idx):]
            d_loss = d_hinge(d_real, d_fake)
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
            z = torch.randn(len(idx), spec.z_dim, device=device)
            g_loss = g_hinge(disc(diff_augment(gen(z, y), policy), y))
            opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            opt_g.step()
            ema_update(ema, gen, cfg.ema_decay, step)
            step += 1
            sums += [float(d_loss.detach()), float(g_loss.detach()), float(d_real.detach().mean()), float(d_fake.detach().mean())]
            bar.set_postfix(d=f"{sums[0] / (i + 1):.3f}", g=f"{sums[1] / (i + 1):.3f}")
        secs = time.perf_counter() - t0
        standing_stats(ema, 8, 64, es, device)
        m = sums / steps_per_epoch
        history.append({"epoch": epoch + 1, "steps": steps_per_epoch, "d_loss": round(m[0], 5), "g_loss": round(m[1], 5),
                        "d_real": round(m[2], 5), "d_fake": round(m[3], 5), "seconds": round(secs, 2),
                        "images_per_second": round(steps_per_epoch * bs / max(secs, 1e-9), 1)})
        # kill -9 order, as `emotune train`: weights, then the state (the commit point), then derived files
        save_checkpoint(run / "last", ema.state_dict(), generator_card(spec, cfg, faces, history))
        save_state(state_path, {"generator": gen.state_dict(), "discriminator": disc.state_dict(), "ema": ema.state_dict(),
                                "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(), "rng": rng_state(),
                                "spec": spec.head(), "history": history, "progress": {"epoch": epoch, "step": step}})
        write_log(run, history)
        grid = sample_grid(ema, faces.labels, cfg.grid_per_class, grid_seed, device)
        atomic_write(run / "samples" / f"epoch_{epoch + 1:03d}.png", lambda p: grid.save(p, format="PNG"))
        atomic_write(run / "samples.png", lambda p: grid.save(p, format="PNG"))
        if cfg.progress:
            from tqdm.auto import tqdm

            tqdm.write(f"epoch {epoch + 1}/{cfg.epochs}  d_loss {m[0]:.3f}  g_loss {m[1]:.3f}  D(real) {m[2]:+.2f}  "
                       f"D(fake) {m[3]:+.2f}  {secs:.0f}s")
    atomic_write_json(run / "summary.json", {"kind": "emotune-synth/1", "epochs_run": len(history), "labels": list(faces.labels),
                                             "n_train": n, "train_class_counts": faces.counts, "steps": step,
                                             "skipped": [s.__dict__ for s in faces.skipped]})
    return SynthResult(run, len(history), history)


def load_generator(path: str | Path, device: str | torch.device = "cpu"):
    """The EMA generator of a run folder (or its card/.safetensors), its card and card path; CheckpointError for a
    classifier, a tampered card or weights that do not fit."""
    from safetensors.torch import load_file

    from ..models.card import read_card, verified_weights

    card, card_path = read_card(path)
    if card.kind != "generator":
        raise CheckpointError(f"{card_path}: an emotion classifier, not a generator (train one with `emotune synth train`)")
    spec = GanSpec.from_head(card.head, str(card_path))
    if spec.num_classes != len(card.labels):
        raise CheckpointError(f"{card_path}: {len(card.labels)} labels but a generator for {spec.num_classes} classes")
    weights = verified_weights(card, card_path, strict=False)
    gen = Generator(spec)
    try:
        gen.load_state_dict(load_file(str(weights)), strict=True)
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(f"{weights}: cannot load into the generator ({type(exc).__name__})") from None
    return gen.to(device).eval(), card, card_path
