"""Every config shipped in configs/ parses, and the options that name layers match the backbone."""
from __future__ import annotations

from pathlib import Path

import pytest

from emotune.models import create_model
from emotune.protocols.cascade import stage_configs
from emotune.train.config import load_yaml, make_config
from emotune.train.engine import set_trainable

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_config_parses(path, tmp_path):
    spec = load_yaml(path)
    if "train" in spec:  # a leave-one-source-out config (emotune.protocols.loso): its own schema, one recipe per fold
        from emotune.protocols.loso import parse_config

        cfg = parse_config(spec, str(path))
        make_config({**cfg.train, "sources": cfg.sources, "labels": cfg.labels})
        return
    configs = [make_config(o) for _, o in stage_configs(spec, tmp_path)] if "stages" in spec else [make_config({}, path)]
    for cfg in configs:
        if cfg.freeze:
            model = create_model(cfg.backbone, 3, None, img_size=cfg.img_size or None)
            assert 0 < set_trainable(model, cfg, 0) < sum(p.numel() for p in model.parameters())


def test_there_are_configs():
    assert len(CONFIGS) >= 4
