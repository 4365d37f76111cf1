"""`emotune serve`: the REST API and web page (FastAPI on uvicorn), bound to 127.0.0.1 unless told otherwise."""
from __future__ import annotations

import argparse
import os
import sys

from ..errors import ConfigError


def add_serve_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only; "
                                                      "0.0.0.0 exposes it to the network)")
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    p.add_argument("--model", default=None, help="run folder, model card .json, .safetensors or .onnx (default: the bundled model)")
    p.add_argument("--scene-model", metavar="SCENE_RUN", help="a scene model beside the face model: every response gets "
                                                              "`scene_emotion` (positive, negative, valence, arousal)")
    p.add_argument("--with-scene", action="store_true", help="--scene-model with the bundled scene model")
    p.add_argument("--detector", default="yunet", help="default face detector (requests may choose another)")
    p.add_argument("--detector-model", help="model file for detectors that take one")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    p.add_argument("--backend", default="auto", choices=["auto", "torch", "onnx"], help="auto: onnxruntime on CPU")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "int8"],
                   help="auto: the model's int8 companion on CPU where it ships one (the bundled default does), fp32: never, int8: insist")
    p.add_argument("--workers", type=int, default=1, help="uvicorn worker processes, each with its own model (default: 1)")
    p.add_argument("--threads", type=int, default=0, help="onnxruntime threads per worker (default 0: every core)")
    p.add_argument("--detect-threads", type=int, default=0, help="images decoded and detected at once (default: the CPUs)")
    p.add_argument("--no-batching", action="store_true", help="classify every request alone (no micro-batching)")
    p.add_argument("--max-batch", type=int, default=32, help="most face crops in one micro-batch (default: 32)")
    p.add_argument("--max-wait-ms", type=float, default=5.0, help="how long a micro-batch waits for more requests (default: 5)")
    p.add_argument("--max-upload-mb", type=float, default=20.0, help="largest request body; larger ones get 413 (default: 20)")
    p.add_argument("--max-pixels", type=int, default=40_000_000, help="larger images are refused (413) as possible "
                                                                       "decompression bombs (default: 40,000,000)")
    p.add_argument("--max-images", type=int, default=32, help="most images in one /v1/analyze/batch request (default: 32)")
    p.add_argument("--timeout", type=float, default=30.0, help="per-request limit in seconds; then 504 (default: 30)")
    p.add_argument("--det-max-side", type=int, default=640, help="shrink images to this longest side for detection (default: 640)")
    p.add_argument("--min-score", type=float, default=0.6, help="minimum face detection score (default: 0.6)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
                   help="uvicorn log level (default: info)")


def config_from_args(args: argparse.Namespace):
    from ..serve import ServeConfig

    for opt, v, lo in [("--workers", args.workers, 1), ("--max-batch", args.max_batch, 1), ("--max-images", args.max_images, 1),
                       ("--port", args.port, 0), ("--threads", args.threads, 0), ("--detect-threads", args.detect_threads, 0)]:
        if v < lo:
            raise ConfigError(f"{opt} {v}: give at least {lo}")
    for opt, v in [("--max-upload-mb", args.max_upload_mb), ("--timeout", args.timeout)]:
        if not v > 0:
            raise ConfigError(f"{opt} {v}: give a positive number")
    if args.max_wait_ms < 0 or args.max_pixels < 0:
        raise ConfigError("--max-wait-ms and --max-pixels cannot be negative")
    if args.with_scene and args.scene_model:
        raise ConfigError(f"--with-scene and --scene-model {args.scene_model}: choose one")
    return ServeConfig(model=args.model, scene_model="default" if args.with_scene else args.scene_model, detector=args.detector, detector_model=args.detector_model, device=args.device,
                       backend=args.backend, precision=args.precision, det_max_side=args.det_max_side, min_score=args.min_score,
                       threads=args.threads, detect_threads=args.detect_threads, batching=not args.no_batching,
                       max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, max_upload_mb=args.max_upload_mb,
                       max_pixels=args.max_pixels, max_images=args.max_images, timeout_s=args.timeout)


def run_serve(args: argparse.Namespace) -> int:
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError:
        raise ConfigError("emotune serve needs its extra: pip install 'emotune[serve]'") from None
    from ..serve.app import CONFIG_ENV, create_app

    config = config_from_args(args)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"emotune: serving on {args.host}: reachable from other machines (no authentication)", file=sys.stderr)
    if args.workers == 1:
        app = create_app(config)  # the model loads now: a bad --model is a one-line error before anything binds
        print(f"emotune: http://{args.host}:{args.port}/ (API page: /docs)", file=sys.stderr)
        uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
        return 0
    create_app(config)  # check the model and options once here, then let every worker load its own
    os.environ[CONFIG_ENV] = config.to_json()
    print(f"emotune: http://{args.host}:{args.port}/ with {args.workers} worker processes", file=sys.stderr)
    uvicorn.run("emotune.serve.app:app_from_env", factory=True, host=args.host, port=args.port, workers=args.workers,
                log_level=args.log_level)
    return 0
