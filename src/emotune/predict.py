"""`emotune predict`: run the Recognizer over images, folders, globs, videos or a webcam and write the results."""
from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from pathlib import Path

from .errors import BadInputError, ConfigError
from .inference.output import FORMATS, TableSink, annotate, plot_timeline, save_image, summarise_video, write_summary
from .io import check_writable_dir, check_writable_file, remove_stale_temps

DEFAULT_MAX_PIXELS = 200_000_000  # a 108 MP phone photo is fine; a 20000 x 20000 "bomb" PNG is not


def add_predict_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="*", help="images, folders (searched recursively), glob patterns or videos")
    p.add_argument("--webcam", type=int, help="also read this webcam index (stop with Ctrl-C)")
    p.add_argument("--model", default=None, help="run folder, model card .json, .safetensors or .onnx (default: the bundled model)")
    p.add_argument("--detector", default="yunet", help="face detector: yunet (default), haar, mediapipe, none (see `emotune detectors`)")
    p.add_argument("--detector-model", help="model file for detectors that take one (mediapipe .tflite, another YuNet .onnx)")
    p.add_argument("--scene", action="store_true", help="classify each whole image, no face detection, with a scene model "
                                                         "(--model SCENE_RUN; default: the bundled scene model)")
    p.add_argument("--scene-model", metavar="SCENE_RUN", help="also read each whole image with this scene model: a row per "
                                                              "face and a row for the image, told apart by `kind` (docs/scene.md)")
    p.add_argument("--with-scene", action="store_true", help="--scene-model with the bundled scene model")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    p.add_argument("--backend", default="auto", choices=["auto", "torch", "onnx"], help="auto: onnxruntime on CPU, PyTorch on GPU")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "int8"],
                   help="auto: the model's int8 companion on CPU where it ships one (the bundled default does), fp32: never, int8: insist")
    p.add_argument("--batch-size", type=int, default=32, help="faces classified together (default: 32)")
    p.add_argument("--every", type=int, default=1, help="videos: process every Nth frame (default: 1)")
    p.add_argument("--fps", type=float, help="videos: process about this many frames per second (overrides --every)")
    p.add_argument("--format", choices=FORMATS, help="table (default on a terminal), csv, json or jsonl; "
                                                       "default for --output: from its extension")
    p.add_argument("--output", "-o", help="write the results to this file (atomically)")
    p.add_argument("--annotate", metavar="DIR", help="write annotated images (and annotated videos) to DIR")
    p.add_argument("--timeline", metavar="DIR", help="write a per-track probability timeline PNG per video (default: --annotate DIR)")
    p.add_argument("--min-score", type=float, default=0.6, help="minimum face detection score (default: 0.6)")
    p.add_argument("--det-max-side", type=int, default=640, help="shrink images to this longest side for detection (default: 640)")
    p.add_argument("--video-det-max-side", type=int, default=320,
                   help="the same for video frames (default: 320, 4x faster; raise it for small faces in video)")
    p.add_argument("--margin", type=float, default=1.0, help="crop margin: >1 zooms out around the face (default: 1.0)")
    p.add_argument("--tta", action="store_true", help="average each face with its mirror image (2x classifier time)")
    p.add_argument("--no-align", action="store_true", help="square box crops instead of landmark alignment")
    p.add_argument("--no-recursive", action="store_true", help="do not descend into sub-folders")
    p.add_argument("--max-pixels", type=int, default=None,
                   help="refuse images with more pixels than this as possible decompression bombs (default: "
                        f"{DEFAULT_MAX_PIXELS:,} or $EMOTUNE_MAX_PIXELS; 0 = no limit). Large photos are shrunk for "
                        "detection, not refused")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    ray = p.add_argument_group("batch inference on Ray (docs/serve.md)")
    ray.add_argument("--engine", choices=["local", "ray"], default="local",
                     help="local (default): this process; ray: a pool of recognisers on Ray writing Parquet shards to "
                          "the --output folder (a rerun skips finished shards)")
    ray.add_argument("--address", default=None, help="Ray cluster: auto or ray://HOST:PORT (default: start a local Ray)")
    ray.add_argument("--workers", type=int, default=None, help="Ray actors (default: one per CPU); each gets CPUs/workers threads")
    ray.add_argument("--shard-size", type=int, default=256, help="images per Parquet shard (default: 256); a video is a shard")
    add_smoothing_arguments(p)


# ---- videos over time: smoothing per track, summaries ----------------------------------------------------------------
SMOOTH_OPTIONS = ("halflife", "alpha", "switch_rate", "delay", "floor")  # --smooth-<name>: a field of a smoother config


def add_smoothing_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("videos over time (docs/video.md)")
    g.add_argument("--smooth", nargs="?", const="default", metavar="NAME",
                   help="smooth each face's probabilities over time: hmm (the default: sticky HMM, fixed lag), ema; "
                        "label and class columns become smoothed, raw_* columns keep the per-frame values")
    g.add_argument("--smooth-halflife", type=float, metavar="S", help="ema: half-life in seconds (frame-rate independent)")
    g.add_argument("--smooth-alpha", type=float, help="ema: weight of a new frame one frame interval later (instead of a half-life)")
    g.add_argument("--smooth-switch-rate", type=float, metavar="R", help="hmm: expected expression changes per second (prior)")
    g.add_argument("--smooth-delay", type=int, metavar="N", help="hmm: frames a row waits for later evidence (fixed lag)")
    g.add_argument("--smooth-floor", type=float, metavar="F", help="hmm: uniform share mixed into each frame's probabilities")
    g.add_argument("--temporal-model", metavar="RUN", help="smooth with a trained sequence model (emotune seq train): smoothed classes and its valence/arousal columns")
    g.add_argument("--summary", metavar="FILE", help="per-video, per-track summary (time share of each emotion, means) as "
                                                      ".csv or .json (default: <stem>.summary.csv/.json beside --annotate/--timeline)")


def smoothing_from_args(args: argparse.Namespace):
    """The smoother config the options ask for, or None. Options without --smooth pick the smoother that takes them."""
    from .inference.smoothing import SMOOTHERS, VideoSmoother, smoother_config

    options = {k: getattr(args, f"smooth_{k}", None) for k in SMOOTH_OPTIONS}
    options = {k: v for k, v in options.items() if v is not None}
    name = args.smooth
    if getattr(args, "temporal_model", None):
        if name not in (None, "default", "temporal"):
            raise ConfigError(f"--temporal-model and --smooth {name}: choose one")
        name, options = "temporal", {**options, "run": args.temporal_model}
    if name is None and options:
        from dataclasses import fields

        takes = [n for n, e in SMOOTHERS.items() if n != "temporal" and set(options) <= {f.name for f in fields(e.config)}]
        name = takes[0] if len(takes) == 1 else "default"
    if name is None:
        return None
    cfg = smoother_config(name, **options)
    VideoSmoother.create(cfg, 1 / 30)  # a smoother that cannot run here says so before any model load
    return cfg


def _out_format(args: argparse.Namespace) -> str:
    if args.format:
        return args.format
    if args.output:
        ext = Path(args.output).suffix.lower().lstrip(".")
        if ext in ("csv", "json", "jsonl"):
            return ext
        raise ConfigError(f"--output {args.output}: say --format csv|json|jsonl|table (unknown extension)")
    return "table"


def _unique(path: Path, used: set[Path]) -> Path:
    stem, k = path.stem, 1
    while path in used:
        path = path.with_name(f"{stem}_{k}{path.suffix}")
        k += 1
    used.add(path)
    return path


def _refuse_streams(paths: list[str]) -> None:
    """stdin and URLs are not inputs: say so in one line, before any work (emotune never fetches anything)."""
    from .inference.recognizer import not_an_input

    for spec in paths:
        if reason := not_an_input(spec):
            raise ConfigError(f"{spec}: {reason}")


def check_outputs(args: argparse.Namespace) -> None:
    """Every place predict will write, checked before any model load or detection: a run must not lose a whole
    video's results at the end because --output names a folder or a read-only place. Also settles --max-pixels and
    removes the temp files that killed runs left in the output folders."""
    if args.max_pixels is None:
        env = os.environ.get("EMOTUNE_MAX_PIXELS", "").strip()
        try:
            args.max_pixels = int(float(env)) if env else DEFAULT_MAX_PIXELS
        except ValueError:
            raise ConfigError(f"EMOTUNE_MAX_PIXELS={env!r}: give a pixel count, or 0 for no limit") from None
    if args.max_pixels < 0:
        raise ConfigError(f"--max-pixels {args.max_pixels}: give a pixel count, or 0 for no limit")
    if args.output:
        check_writable_file(args.output, "--output")
    if getattr(args, "summary", None):
        check_writable_file(args.summary, "--summary")
        if Path(args.summary).suffix.lower() not in (".csv", ".json"):
            raise ConfigError(f"--summary {args.summary}: name a .csv or .json file")
    for opt in ("annotate", "timeline"):
        if getattr(args, opt, None):
            check_writable_dir(getattr(args, opt), f"--{opt}")
    for folder in {Path(args.output).parent if args.output else None, *(Path(d) for d in (args.annotate, args.timeline) if d)}:
        if folder is not None:
            remove_stale_temps(folder)


def scene_model_from_args(args: argparse.Namespace) -> str | None:
    """The scene model to read whole images with beside the faces (--scene-model, --with-scene), or None; settled
    before any model load, with a one-line error for options that contradict each other."""
    spec = getattr(args, "scene_model", None)
    if getattr(args, "with_scene", False):
        if spec:
            raise ConfigError(f"--with-scene and --scene-model {spec}: choose one (--with-scene is the bundled scene model)")
        spec = "default"
    if spec and args.scene:
        raise ConfigError("--scene reads whole images only, with --model; --scene-model/--with-scene add a whole-image "
                          "row beside the faces: choose one")
    if spec and getattr(args, "engine", "local") == "ray":
        raise ConfigError("--scene-model/--with-scene run with --engine local only")
    return spec


def run_predict(args: argparse.Namespace) -> int:
    from .inference import Recognizer, collect_inputs

    if not args.paths and args.webcam is None:
        raise ConfigError("give at least one image, folder, glob or video (or --webcam INDEX)")
    _refuse_streams(args.paths)
    scene_model = scene_model_from_args(args)
    if getattr(args, "engine", "local") == "ray":
        from .batch.ray_engine import run_ray

        return run_ray(args, collect_inputs(args.paths, recursive=not args.no_recursive))
    fmt = _out_format(args)
    check_outputs(args)
    args.smooth_config = smoothing_from_args(args)
    inputs = collect_inputs(args.paths, recursive=not args.no_recursive)
    for m in inputs.missing:
        print(f"emotune: skipped {m}", file=sys.stderr)
    sources: list = [*inputs.videos] + ([args.webcam] if args.webcam is not None else [])
    if not inputs.images and not sources:
        raise ConfigError("nothing to process: no image or video found in " + ", ".join(map(str, args.paths)))
    rec = Recognizer(args.model, args.detector, args.detector_model, args.device, args.backend, args.batch_size, args.margin,
                     not args.no_align, args.scene, args.det_max_side, args.min_score, tta=args.tta,
                     video_det_max_side=args.video_det_max_side, max_pixels=args.max_pixels, scene_model=scene_model,
                     precision=args.precision)
    if rec.scene_reader is not None and sources:
        print("emotune: the scene model reads images; videos and webcams get face rows only", file=sys.stderr)
    ann = Path(args.annotate) if args.annotate else None
    timeline_dir = Path(args.timeline) if args.timeline else ann
    raw = args.smooth_config is not None
    if raw:
        rec.bind_smoother(args.smooth_config)
    sink = TableSink(lambda rows: rec.frame_of(rows, raw=raw), rec.table_labels, fmt, args.output, video=bool(sources))
    try:
        with _sigterm_as_exit():
            ok, failed = _predict_all(args, rec, inputs.images, sources, sink, ann, timeline_dir)
        sink.close()
    except BaseException:
        sink.abort()  # no half-written --output, no temp file left behind
        raise
    if args.output:
        print(f"emotune: {sink.faces} face(s) in {ok} input(s) -> {args.output}", file=sys.stderr)
    if failed:
        print(f"emotune: {failed} input(s) could not be processed, {ok} could", file=sys.stderr)
    return 0 if ok else 1


@contextlib.contextmanager
def _sigterm_as_exit():
    """SIGTERM (timeout, docker stop, systemd) ends the run like Ctrl-C does, so that clean-up code runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _predict_all(args: argparse.Namespace, rec, images: list, sources: list, sink: TableSink, ann: Path | None,
                 timeline_dir: Path | None) -> tuple[int, int]:
    """Images, then videos and the webcam, each result row handed to `sink` as soon as it exists."""
    import cv2
    import pandas as pd

    from .inference.recognizer import item_failure
    from .inference.smoothing import describe
    from .inference.video import VideoWriter, frame_step

    used: set[Path] = set()
    ok = failed = 0
    for item in rec.iter_images(images, not args.no_progress, keep_rgb=ann is not None):
        sink.add(rec.rows(item))
        if item.error:
            failed += 1
            print(f"emotune: skipped {item.file}: {item.error}", file=sys.stderr)
            continue
        ok += 1
        if ann is not None:
            name = Path(item.file)
            save_image(annotate(item.rgb, rec.results(item), rec.labels, scene=rec.scene_result(item)),
                       _unique(ann / f"{name.stem}_emotune.jpg", used))

    timeline_cols = timeline_columns(rec, args.smooth_config is not None)
    keep_timeline = timeline_dir is not None or bool(getattr(args, "summary", None))
    summaries: list = []
    for src in sources:
        info_out: list = []
        writer = None
        frames = 0
        timeline: list[tuple] = []  # only what the plot needs, a few numbers per face
        try:
            for item in rec.iter_video(src, args.every, args.fps, not args.no_progress, keep_rgb=ann is not None,
                                       info_out=info_out, smooth=args.smooth_config):
                rows = rec.rows(item)
                sink.add(rows)
                frames += 1
                if keep_timeline:  # face-less frames too: their times set how long each face's frame lasts
                    timeline += [tuple(r.get(c) for c in timeline_cols) for r in rows]
                if ann is not None:
                    if writer is None:
                        info = info_out[0]
                        h, w = item.rgb.shape[:2]
                        step = frame_step(info.fps, args.every, args.fps)
                        stem = f"webcam{src}" if isinstance(src, int) else Path(src).stem
                        writer = VideoWriter(_unique(ann / f"{stem}_emotune.mp4", used), info.fps / step, (w, h))
                    writer.write(annotate(item.rgb, rec.results(item), rec.labels))
        except KeyboardInterrupt:
            if not isinstance(src, int):  # a webcam session ends with Ctrl-C: keep what it saw
                _discard(writer)
                raise
        except (BadInputError, MemoryError, cv2.error) as exc:
            _discard(writer)
            problem = exc.problem if isinstance(exc, BadInputError) else item_failure(exc)
            failed += 1
            print(f"emotune: skipped {exc.where if isinstance(exc, BadInputError) else src}: {problem}", file=sys.stderr)
            sink.add(rec.rows(_error_item(str(src), problem)))
            continue
        except BaseException:  # SIGTERM, a full disk, a bug: no half-written video left behind either
            _discard(writer)
            raise
        if writer is not None:
            writer.close()
        info = info_out[0]
        if info.broken_frames or info.problems:
            print(f"emotune: {src}: " + "; ".join([f"{info.broken_frames} unreadable frame(s) skipped"] * bool(info.broken_frames)
                                                   + info.problems), file=sys.stderr)
        if not frames:
            failed += 1
            print(f"emotune: skipped {src}: no frame could be decoded", file=sys.stderr)
            sink.add(rec.rows(_error_item(str(src), "no frame could be decoded")))
            continue
        ok += 1
        if keep_timeline:
            stem = f"webcam{src}" if isinstance(src, int) else Path(src).stem
            df = pd.DataFrame(timeline, columns=timeline_cols).assign(file=str(src), frame=0)
            summary = summarise_video(df, rec.labels)
            summaries.append(summary)
            if timeline_dir is not None:
                plot_timeline(df, rec.labels, _unique(timeline_dir / f"{stem}_timeline.png", used), str(src))
                if not getattr(args, "summary", None):
                    for ext in ("csv", "json"):
                        write_summary(summary, _unique(timeline_dir / f"{stem}.summary.{ext}", used), rec.labels,
                                      describe(args.smooth_config))
    if getattr(args, "summary", None) and summaries:
        write_summary(pd.concat(summaries, ignore_index=True), args.summary, rec.labels, describe(args.smooth_config))
    return ok, failed


def timeline_columns(rec, smoothed: bool) -> list[str]:
    """What the timeline and the summary need of each row: a few numbers per face."""
    from .inference.output import target_columns
    from .inference.smoothing import raw_columns

    targets = [c for c in target_columns(rec.frame_of([]).columns, rec.table_labels) if c in rec.columns]
    return ["time", "track", "label", *rec.labels, *targets, *(raw_columns(rec.labels) if smoothed else [])]


def _discard(writer) -> None:
    if writer is not None:
        writer.close(ok=False)


def _error_item(name: str, problem: str):
    from .inference.recognizer import _Item

    return _Item(name, error=problem)


