"""Shared bits of the benchmarks: environment metadata and writing JSON + Markdown side by side."""
from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shlex
import sys
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"


def environment() -> dict:
    import timm
    import torch

    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "python": sys.version.split()[0],
            "torch": torch.__version__, "timm": timm.__version__, "platform": platform.platform(), "cpu": cpu,
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "command": " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv])}


def write_report(name: str, result: dict, markdown: str, out_dir: Path | None = None) -> Path:
    out_dir = out_dir or Path(__file__).resolve().parent / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    env = result.setdefault("environment", environment())
    from emotune.io import atomic_write_text  # results are written whole or not at all

    atomic_write_text(out_dir / f"{name}.json", json.dumps(result, indent=2) + "\n")
    md = markdown + "\n\n## Environment\n\n" + "\n".join(f"- {k}: `{v}`" for k, v in env.items()) + "\n"
    atomic_write_text(out_dir / f"{name}.md", md)
    return out_dir / f"{name}.md"
