"""`emotune predict INPUTS --engine ray`: the same rows as `emotune predict`, computed by a pool of Recognizer actors
on Ray (a local Ray by default; `--address` for a cluster) and written as Parquet shards.

The driver expands folders, globs and manifests into a sorted file list and cuts it into shards of `--shard-size`
images; every video is a shard of its own (one task per video). Ray Data feeds the shards to `map_batches` with an
actor pool of `ShardWorker`s: each loads the model once (onnxruntime, with threads = the CPUs it was given), runs the
Recognizer over its shard and writes the shard's Parquet file atomically. A shard's name carries a hash of its file
list, so a rerun skips every shard whose file exists and computes only the rest. A file that cannot be read becomes a
row with its error; the shard and the run go on.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import BadInputError, ConfigError, EmotuneError
from ..io import atomic_write, atomic_write_json, check_writable_dir, remove_stale_temps

SHARD_SIZE = 256
MANIFEST_EXTENSIONS = {".txt", ".lst", ".csv"}
PLAN = "_plan.json"
PLAN_KIND = "emotune-ray-predict/1"


@dataclass(frozen=True)
class Shard:
    name: str  # its Parquet file in the output folder
    kind: str  # "images" or "video"
    files: tuple[str, ...]


def _digest(files) -> str:
    return hashlib.sha1("\n".join(files).encode("utf-8")).hexdigest()[:10]


def read_manifest(path: Path) -> list[str]:
    """Paths listed in a manifest: a text file with one path per line (# comments allowed), or a CSV with a `file`
    or `path` column. Relative paths are relative to the manifest's folder."""
    import pandas as pd

    if path.suffix.lower() == ".csv":
        try:
            df = pd.read_csv(path)
        except (ValueError, OSError) as exc:
            raise BadInputError(path, f"manifest cannot be read as CSV ({exc})") from None
        col = next((c for c in ("file", "path") if c in df.columns), None)
        if col is None:
            raise BadInputError(path, f"manifest CSV needs a 'file' or 'path' column (it has {', '.join(map(str, df.columns))})")
        items = [str(v) for v in df[col].dropna()]
    else:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise BadInputError(path, f"manifest cannot be read ({exc})") from None
        items = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    return [v if Path(v).is_absolute() else str(path.parent / v) for v in items]


def expand(inputs, recursive: bool = True):
    """The collected inputs with manifests replaced by what they list (folders and globs in them expanded too)."""
    from ..inference.recognizer import Inputs, collect_inputs

    out = Inputs(videos=list(inputs.videos), missing=list(inputs.missing))
    for p in inputs.images:
        if Path(p).suffix.lower() in MANIFEST_EXTENSIONS:
            listed = collect_inputs(read_manifest(Path(p)), recursive)
            out.images += listed.images
            out.videos += listed.videos
            out.missing += [f"{p}: {m}" for m in listed.missing]
        else:
            out.images.append(p)
    out.images = sorted(dict.fromkeys(map(str, out.images)))
    out.videos = sorted(dict.fromkeys(map(str, out.videos)))
    return out


def plan_shards(images: list[str], videos: list[str], shard_size: int = SHARD_SIZE) -> list[Shard]:
    """Image shards of `shard_size` files in sorted order, then one shard per video; names are stable for the same
    inputs (which is what lets a rerun skip finished shards)."""
    shards = []
    for i in range(0, len(images), shard_size):
        files = tuple(images[i:i + shard_size])
        shards.append(Shard(f"images-{i // shard_size:06d}-{_digest(files)}.parquet", "images", files))
    for v in videos:
        stem = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in Path(v).stem)[:40]
        shards.append(Shard(f"video-{_digest([v])}-{stem}.parquet", "video", (v,)))
    return shards


class ShardWorker:
    """A Ray Data actor: one Recognizer, loaded once; each call computes whole shards and writes their files."""

    def __init__(self, recognizer: dict[str, Any], out_dir: str, every: int = 1, fps: float | None = None):
        from ..inference import Recognizer

        self.rec = Recognizer(**recognizer)
        self.out, self.every, self.fps = Path(out_dir), every, fps

    def _rows(self, shard_kind: str, files: list[str]) -> list[dict]:
        import cv2

        from ..inference.recognizer import item_failure, result_rows

        rec = self.rec
        if shard_kind == "images":
            return [r for item in rec.iter_images(files) for r in rec.rows(item)]
        (video,) = files
        try:
            rows = [r for item in rec.iter_video(video, self.every, self.fps) for r in rec.rows(item)]
            return rows or result_rows(video, [], rec.labels, error="no frame could be decoded")
        except BadInputError as exc:
            return result_rows(video, [], rec.labels, error=exc.problem)
        except (MemoryError, cv2.error) as exc:
            return result_rows(video, [], rec.labels, error=item_failure(exc))

    def __call__(self, batch: dict) -> dict:
        out = {"shard": [], "files": [], "rows": [], "faces": [], "errors": [], "seconds": []}
        for name, kind, files in zip(batch["shard"], batch["kind"], batch["files"]):
            t0 = time.perf_counter()
            df = self.rec.frame_of(self._rows(str(kind), json.loads(files)))
            atomic_write(self.out / str(name), lambda p: df.to_parquet(p, index=False))
            errors = df.drop_duplicates("file")["error"].notna().sum()
            out["shard"].append(str(name))
            out["files"].append(int(df["file"].nunique()))
            out["rows"].append(len(df))
            out["faces"].append(int(df["label"].notna().sum()))
            out["errors"].append(int(errors))
            out["seconds"].append(round(time.perf_counter() - t0, 3))
        return out


def _refuse_options(args: argparse.Namespace) -> None:
    for opt, given in [("--webcam", args.webcam is not None), ("--annotate", args.annotate), ("--timeline", args.timeline),
                       ("--format", args.format)]:
        if given:
            raise ConfigError(f"{opt} is not available with --engine ray (it writes Parquet shards to the --output folder)")
    if not args.output:
        raise ConfigError("--engine ray needs --output DIR: the folder for its Parquet shards")
    if args.shard_size < 1:
        raise ConfigError(f"--shard-size {args.shard_size}: give at least 1")
    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers {args.workers}: give at least 1")


def _check_plan(out: Path, shards: list[Shard], args: argparse.Namespace) -> None:
    """The folder's plan must match this run's (same shards, same model settings): a rerun resumes, a different run
    does not mix its rows into another's shards."""
    plan = {"kind": PLAN_KIND, "model": args.model, "detector": args.detector, "scene": args.scene, "tta": args.tta,
            "every": args.every, "fps": args.fps, "shard_size": args.shard_size, "shards": [s.name for s in shards]}
    path = out / PLAN
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = None
        if old != plan:
            differs = [k for k in plan if not isinstance(old, dict) or old.get(k) != plan[k]]
            raise ConfigError(f"--output {out}: it holds shards of another run (different {', '.join(differs)}); "
                              "give a new folder, or remove it to start again")
    else:
        atomic_write_json(path, plan)


def recognizer_kwargs(args: argparse.Namespace, threads: int) -> dict[str, Any]:
    return {"model": args.model, "detector": args.detector, "detector_model": args.detector_model, "device": "cpu",
            "backend": "onnx" if args.backend == "auto" else args.backend, "batch_size": args.batch_size,
            "margin": args.margin, "align": not args.no_align, "scene": args.scene, "det_max_side": args.det_max_side,
            "min_score": args.min_score, "threads": threads, "tta": args.tta,
            "video_det_max_side": args.video_det_max_side, "max_pixels": args.max_pixels}


def _emotune_cause(exc: BaseException) -> EmotuneError | None:
    """The EmotuneError inside a Ray task error (a bad --model raised in every actor), if there is one."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, EmotuneError):
            return exc
        exc = getattr(exc, "cause", None) or exc.__cause__ or exc.__context__
    return None


def run_ray(args: argparse.Namespace, inputs) -> int:
    """`emotune predict --engine ray`: plan shards, skip finished ones, compute the rest on Ray, print a summary."""
    from ..predict import check_outputs

    _refuse_options(args)
    out = Path(args.output)
    check_writable_dir(out, "--output")
    settle = argparse.Namespace(**{**vars(args), "output": None})
    check_outputs(settle)  # --max-pixels and $EMOTUNE_MAX_PIXELS, as plain predict reads them
    args.max_pixels = settle.max_pixels
    inputs = expand(inputs, not args.no_recursive)
    for m in inputs.missing:
        print(f"emotune: skipped {m}", file=sys.stderr)
    if not inputs.images and not inputs.videos:
        raise ConfigError("nothing to process: no image or video found in " + ", ".join(map(str, args.paths)))
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out)
    shards = plan_shards(inputs.images, inputs.videos, args.shard_size)
    _check_plan(out, shards, args)
    pending = [s for s in shards if not (out / s.name).is_file()]
    if len(pending) < len(shards):
        print(f"emotune: {len(shards) - len(pending)} of {len(shards)} shard(s) already done in {out}: skipped", file=sys.stderr)
    if not pending:
        print(f"emotune: nothing left to do; {len(shards)} shard(s) in {out}", file=sys.stderr)
        return 0
    try:
        import ray
    except ImportError:
        raise ConfigError("--engine ray needs Ray: pip install 'emotune[ray]'") from None

    started = not ray.is_initialized()
    if started:
        try:
            ray.init(address=args.address, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise ConfigError(f"--address {args.address}: cannot start or reach Ray ({exc})") from None
    try:
        return _run(ray, args, out, pending, len(shards))
    finally:
        if started:
            ray.shutdown()


def _run(ray, args: argparse.Namespace, out: Path, pending: list[Shard], total: int) -> int:
    from ..progress import progress

    cpus = max(1, int(ray.available_resources().get("CPU", os.cpu_count() or 1)))
    workers = min(args.workers or cpus, len(pending))
    threads = max(1, cpus // workers)  # onnxruntime threads per actor: the CPUs each actor is given
    import ray.data  # importing it configures its loggers (INFO to the console): quieten them after that

    logging.getLogger("ray.data").setLevel(logging.WARNING)  # emotune prints its own progress and summary
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = not args.no_progress and sys.stderr.isatty()
    ds = ray.data.from_items([{"shard": s.name, "kind": s.kind, "files": json.dumps(list(s.files))} for s in pending],
                             override_num_blocks=len(pending))
    done = ds.map_batches(ShardWorker, batch_size=1, compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=threads,
                          fn_constructor_kwargs={"recognizer": recognizer_kwargs(args, threads), "out_dir": str(out.resolve()),
                                                 "every": args.every, "fps": args.fps})
    print(f"emotune: {len(pending)} shard(s) on Ray: {workers} actor(s) x {threads} thread(s)", file=sys.stderr)
    t0 = time.perf_counter()
    files = rows = faces = errors = shards = 0
    try:
        for r in progress(done.iter_rows(), not args.no_progress, total=len(pending), desc="shards", unit="shard"):
            shards += 1
            files, rows = files + int(r["files"]), rows + int(r["rows"])
            faces, errors = faces + int(r["faces"]), errors + int(r["errors"])
    except Exception as exc:  # noqa: BLE001 - Ray wraps what the actors raised
        if cause := _emotune_cause(exc):
            raise cause from None
        raise ConfigError(f"the Ray run failed ({str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__}); "
                          f"{shards} shard(s) finished; rerun to resume") from None
    secs = time.perf_counter() - t0
    print(f"emotune: {faces} face(s) in {rows} row(s) from {shards} shard(s) in {secs:.1f} s -> {out} "
          f"({total} shard(s) in all)", file=sys.stderr)
    if errors:
        print(f"emotune: {errors} input(s) could not be processed, {files - errors} could: see the error column",
              file=sys.stderr)
    return 1 if files and errors == files else 0


def read_shards(folder: str | Path):
    """Every shard of an output folder as one DataFrame, sorted like plain predict's rows (file, then frame)."""
    import pandas as pd

    files = sorted(Path(folder).glob("*.parquet"))
    if not files:
        raise BadInputError(folder, "no Parquet shard in this folder")
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
