"""Generative augmentation: a small class-conditional face GAN (`emotune synth train`), synthetic class-folder sets drawn
from it (`sample`), its quality measured offline (`quality`), and the guard that keeps a generator's training faces out
of every test fold (`protocol`).

Modules: config (SynthConfig), nets (generator, projection discriminator, DiffAugment), data (face crops as one uint8
tensor), train (the resumable loop), sample (class folders + manifest.csv), quality (Frechet distance, fidelity,
diversity, nearest neighbours), protocol (leak checks, one generator per cross-validation fold).
"""
from __future__ import annotations

from .config import SynthConfig

__all__ = ["SynthConfig"]
