"""Cascaded (multi-stage) fine-tuning: ImageNet -> a large face dataset -> the small target set (Ng et al. 2015).

A cascade config is a YAML file with the options every stage shares at the top level and a `stages:` list; each
stage overrides what it needs (data, labels, epochs, lr, freeze...) and starts from the best checkpoint of the
stage before (the first from its own `pretrained`, e.g. ImageNet weights). The head is remapped by label name
when the label set changes. Every stage is an ordinary run folder `OUT/<n>_<name>/`, so it checkpoints, resumes
and reports like `emotune train`.
"""
from __future__ import annotations

import argparse
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .. import kinds
from ..errors import ConfigError, EmotuneError
from ..io import atomic_write_json, atomic_write_text
from ..tables import render_table
from ..train.config import load_yaml, make_config


@dataclass
class StageResult:
    name: str
    run_dir: str
    started_from: str | None
    status: str  # done | skipped (already complete) | failed | not run (a stage before it failed)
    best_epoch: int = -1
    best: dict[str, float] = field(default_factory=dict)
    labels: list[str] = field(default_factory=list)
    head_remap: dict[str, Any] | None = None
    error: str | None = None


@dataclass
class CascadeResult:
    out: str
    stages: list[StageResult]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": kinds.CASCADE, "out": self.out, "stages": [asdict(s) for s in self.stages]}

    def to_markdown(self) -> str:
        rows = []
        for i, s in enumerate(self.stages, 1):
            b = s.best
            head = ""
            if s.head_remap:
                head = f"kept {len(s.head_remap['kept'])}, new {s.head_remap['new'] or '-'}, dropped {s.head_remap['dropped'] or '-'}"
            cells = [f"{b[k]:.4f}" if k in b else "-" for k in ("val_accuracy", "val_balanced_accuracy", "val_macro_f1")]
            rows.append([i, s.name, f"`{s.started_from}`", s.status + (f": {s.error}" if s.error else ""), s.best_epoch, *cells, head])
        table = render_table(["#", "stage", "started from", "status", "best epoch", "val accuracy", "val balanced acc.",
                              "val macro-F1", "head"], rows)
        return f"# Cascaded fine-tuning\n\nOutput: `{self.out}`\n\n{table}\n"


STAGE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def stage_name(raw: Any, i: int) -> str:
    """A stage's name as part of its folder name `OUT/<i>_<name>`: letters, digits, '.', '_' and '-' only, so a YAML
    name can never point outside OUT (`../x`, `/abs`, `a/b`)."""
    name = str(raw).strip()
    if not STAGE_NAME.fullmatch(name) or ".." in name:
        raise ConfigError(f"stage {i}: name {raw!r} cannot name a folder; use letters, digits, '.', '_' and '-' "
                          "(it becomes OUT/<n>_<name>)")
    return name


def stage_configs(spec: dict[str, Any], out: str | Path) -> list[tuple[str, dict[str, Any]]]:
    """(name, train options) per stage, with the shared options merged in and a run folder per stage."""
    stages = spec.get("stages")
    if not isinstance(stages, list) or not stages or not all(isinstance(s, dict) for s in stages):
        raise ConfigError("a cascade config needs `stages:`, a non-empty list of option mappings")
    shared = {k: v for k, v in spec.items() if k not in ("stages", "out")}
    result = []
    for i, st in enumerate(stages, 1):
        name = stage_name(st.get("name", f"stage{i}"), i)
        opts = {**shared, **{k: v for k, v in st.items() if k != "name"}}
        opts["out"] = str(Path(out) / f"{i}_{name}")
        if i > 1 and "pretrained" in st:
            raise ConfigError(f"stage {i} ({name}): only the first stage takes `pretrained`; later ones start from the stage before")
        result.append((name, opts))
    return result


def run_cascade(config: str | Path, out: str | Path | None = None, overrides: dict[str, Any] | None = None) -> CascadeResult:
    """Run (or resume) every stage in order; a completed stage is skipped, an interrupted one resumed."""
    from ..models.card import resolve_card_path
    from ..train import train

    from ..io import check_writable_dir

    spec = load_yaml(config)
    out = check_writable_dir(out or spec.get("out") or "runs/cascade", "--out")
    results: list[StageResult] = []
    previous: str | None = None
    stages = stage_configs(spec, out)
    for i, (name, opts) in enumerate(stages):
        opts = {**opts, **(overrides or {})}
        if i > 0:
            opts["pretrained"] = previous
        run = Path(opts["out"])
        started = opts.get("pretrained")
        if (run / "summary.json").is_file():
            res = _stage_from_run(name, run, started, "skipped")
        else:
            opts["resume"] = (run / "train_state.safetensors").is_file()
            try:
                tr = train(make_config(opts))
            except Exception as exc:  # out of memory, a CUDA or data-loader error...: recorded like a failed fold
                error = str(exc) if isinstance(exc, EmotuneError) else f"{type(exc).__name__}: {exc}"
                error = " ".join(error.split())[:500]
                results.append(StageResult(name, str(run), started, "failed", error=error))
                print(f"stage {i + 1} {name}: FAILED ({error})")
                # later stages start from this one's checkpoint: they cannot run
                results += [StageResult(n, o["out"], None, "not run", error=f"stage {i + 1} ({name}) failed")
                            for n, o in stages[i + 1:]]
                break
            res = _stage_from_run(name, run, started, "done")
            res.best_epoch, res.best = tr.best_epoch, tr.best_metrics
        results.append(res)
        previous = str(resolve_card_path(run))
        print(f"stage {i + 1} {name}: {res.status}, best epoch {res.best_epoch}, "
              + ", ".join(f"{k} {v:.4f}" for k, v in res.best.items() if k != "val_loss"))
    result = CascadeResult(str(out), results)
    atomic_write_json(out / "cascade.json", result.to_dict())
    atomic_write_text(out / "cascade.md", result.to_markdown())
    return result


def _stage_from_run(name: str, run: Path, started: str | None, status: str) -> StageResult:
    import json

    from ..models.card import read_card

    summary = json.loads((run / "summary.json").read_text()) if (run / "summary.json").is_file() else {}
    card, _ = read_card(run)
    return StageResult(name, str(run), started, status, summary.get("best_epoch", -1), summary.get("best", {}), list(card.labels),
                       card.training.get("head_remap"))


def add_cascade_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="cascade YAML: shared train options plus a `stages:` list")
    p.add_argument("--out", help="output folder (default: the config's `out`, else runs/cascade)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run_cascade_command(args: argparse.Namespace) -> int:
    res = run_cascade(args.config, args.out, {"progress": False} if args.no_progress else None)
    print(f"wrote {Path(res.out) / 'cascade.json'} and cascade.md")
    return 0 if all(s.status != "failed" for s in res.stages) else 1
