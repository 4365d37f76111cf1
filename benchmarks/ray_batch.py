"""Images/s of `emotune predict --engine ray` with 1 and 2 actors against plain `emotune predict`, same folder.

    python benchmarks/ray_batch.py [--images 192] [--shard-size 16]

The folder: `--images` 640x480 JPEGs (the bundled photo and its variants, one face each, plus face-less ones), made
in a temporary folder. Each engine runs once in this process through the CLI (`emotune.cli.main`), model loading
included, as a user would run it; Ray is started once (local, all CPUs) before the Ray runs and its start-up is
reported apart. Every run's rows are checked against plain predict's (same files, same labels).
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from common import environment, write_report


def make_folder(d: Path, n: int) -> None:
    import matplotlib.cbook as cbook
    import numpy as np
    from PIL import Image, ImageOps

    src = Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB")
    rng = np.random.default_rng(0)
    for i in range(n):
        if i % 8 == 7:  # a face-less image now and then
            img = Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8))
        else:
            face = src.rotate(float(rng.uniform(-10, 10))).resize((int(256 + 40 * (i % 5)), int(300 + 47 * (i % 5))))
            face = ImageOps.mirror(face) if i % 2 else face
            img = Image.new("RGB", (640, 480), tuple(int(v) for v in rng.integers(0, 255, 3)))
            img.paste(face.crop((0, 0, min(face.width, 640), min(face.height, 480))), (int(rng.integers(0, 200)), 0))
        img.save(d / f"img_{i:05d}.jpg", quality=90)


def run(argv: list[str]) -> float:
    from emotune.cli import main

    t = time.perf_counter()
    code = main(argv)
    if code != 0:
        raise SystemExit(f"{' '.join(argv)}: exit {code}")
    return time.perf_counter() - t


def main() -> None:
    import pandas as pd
    import ray

    from emotune.batch.ray_engine import read_shards

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=192)
    ap.add_argument("--shard-size", type=int, default=16)
    ap.add_argument("--note", default="")
    args = ap.parse_args()
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = tmp / "images"
        folder.mkdir()
        make_folder(folder, args.images)
        rows = []
        secs = run(["predict", str(folder), "-o", str(tmp / "plain.csv"), "--no-progress"])
        plain = pd.read_csv(tmp / "plain.csv").sort_values(["file", "x"]).reset_index(drop=True)
        rows.append({"engine": "plain predict (1 process)", "actors": None, "seconds": round(secs, 2),
                     "images_per_s": round(args.images / secs, 2), "faces": int(plain["label"].notna().sum())})
        t = time.perf_counter()
        ray.init(include_dashboard=False, log_to_driver=False, logging_level="WARNING")
        ray_start = time.perf_counter() - t
        cpus = int(ray.cluster_resources().get("CPU", 0))
        try:
            for actors in (1, 2):
                out = tmp / f"ray{actors}"
                secs = run(["predict", str(folder), "--engine", "ray", "--workers", str(actors), "--shard-size",
                            str(args.shard_size), "-o", str(out), "--no-progress"])
                got = read_shards(out).sort_values(["file", "x"]).reset_index(drop=True)
                same = got["file"].tolist() == plain["file"].tolist() and \
                    got["label"].fillna("-").tolist() == plain["label"].fillna("-").tolist()
                rows.append({"engine": "ray", "actors": actors, "threads_per_actor": max(1, cpus // actors),
                             "seconds": round(secs, 2), "images_per_s": round(args.images / secs, 2),
                             "faces": int(got["label"].notna().sum()), "same_rows_as_plain": same})
        finally:
            ray.shutdown()
    load1 = os.getloadavg()
    result = {"images": args.images, "shard_size": args.shard_size, "ray_cpus": cpus, "ray_start_s": round(ray_start, 2),
              "rows": rows, "loadavg_before": [round(v, 2) for v in load0], "loadavg_after": [round(v, 2) for v in load1],
              "note": args.note, "environment": environment()}
    base = rows[0]["images_per_s"]
    md = ["# Batch inference on Ray vs plain `emotune predict`", "",
          f"{args.images} 640x480 JPEGs ({rows[0]['faces']} faces), shards of {args.shard_size}; local Ray with {cpus} CPUs "
          f"(start-up {ray_start:.1f} s, not counted below). Each run includes loading the model (per actor for Ray).", "",
          "| engine | actors | threads/actor | seconds | images/s | x plain | same rows as plain |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['engine']} | {r['actors'] or '-'} | {r.get('threads_per_actor', '-')} | {r['seconds']} | "
                  f"{r['images_per_s']} | {r['images_per_s'] / base:.2f} | {r.get('same_rows_as_plain', '-')} |")
    md += ["", f"Load average before / after: {result['loadavg_before']} / {result['loadavg_after']}. {args.note}"]
    print(write_report("ray_batch", result, "\n".join(md)))


if __name__ == "__main__":
    main()
