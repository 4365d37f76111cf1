"""The ASGI app: routes, JSON errors, and the `Engine` that decodes, detects and (micro-batched) classifies.

Decoding and detection run in worker threads, each with its own detector from a small pool (OpenCV's detectors are
not thread-safe; their calls release the GIL, so several images are detected at once). Face crops then go to the
`MicroBatcher`, which classifies the crops of concurrent requests in one forward pass. Nothing is written to disk.
"""
from __future__ import annotations

import asyncio
import json
import os
import queue
import threading
import time
from dataclasses import asdict, dataclass, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from starlette.requests import Request

from ..errors import BadInputError, EmotuneError
from ..models.bundled import DEFAULT, is_bundled_name
from .batcher import MicroBatcher
from .inputs import FORMATS, HTTPProblem, Upload, parse_request

CONFIG_ENV = "EMOTUNE_SERVE_CONFIG"  # how `--workers N` hands the options to each uvicorn worker process
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
# deepface `detector_backend` names -> emotune detectors; the others fall back to the default, with a warning
DEEPFACE_DETECTORS = {"opencv": "haar", "yunet": "yunet", "mediapipe": "mediapipe", "skip": "none"}


@dataclass
class ServeConfig:
    """Everything `emotune serve` is started with (JSON-able: `--workers N` passes it to each worker process)."""

    model: str | None = None
    scene_model: str | None = None  # a scene model beside the face model ("default": the bundled one): scene fields
    detector: str = "yunet"
    detector_model: str | None = None
    device: str = "auto"
    backend: str = "auto"
    precision: str = "auto"  # auto: the int8 companion on CPU where the model ships one
    det_max_side: int = 640
    min_score: float = 0.6
    margin: float = 1.0
    threads: int = 0  # onnxruntime intra-op threads (0: its default, every core)
    detect_threads: int = 0  # images decoded and detected at once (0: the number of CPUs)
    batching: bool = True
    max_batch: int = 32
    max_wait_ms: float = 5.0
    max_upload_mb: float = 20.0
    max_pixels: int = 40_000_000
    max_images: int = 32  # images in one /v1/analyze/batch request
    timeout_s: float = 30.0

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "ServeConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in json.loads(text).items() if k in known})


@dataclass
class Options:
    """Per-request options (the v1 API's; the deepface route maps its own keys onto these)."""

    detector: str
    tta: bool = False
    scene: bool = False
    align: bool = True


def _flag(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise HTTPProblem(400, f"{key}: expected true or false, got {value!r}")


class _DetectorPool:
    """Up to `size` detectors of one kind, each used by one thread at a time; built on first need."""

    def __init__(self, make, size: int):
        self._make, self._size, self._made = make, size, 0
        self._free: queue.Queue = queue.Queue()
        self._lock = threading.Lock()

    def get(self):
        try:
            return self._free.get_nowait()
        except queue.Empty:
            with self._lock:
                if self._made < self._size:
                    self._made += 1
                    try:
                        return self._make()
                    except BaseException:
                        self._made -= 1
                        raise
            return self._free.get()

    def put(self, det) -> None:
        self._free.put(det)


class Engine:
    """One Recognizer (model + default detector settings) and what concurrent requests share."""

    def __init__(self, config: ServeConfig):
        from ..faces import list_detectors
        from ..inference import Recognizer

        self.config = config
        self.rec = Recognizer(config.model, config.detector, config.detector_model, config.device, config.backend,
                              batch_size=config.max_batch, margin=config.margin, det_max_side=config.det_max_side,
                              min_score=config.min_score, threads=config.threads, max_pixels=config.max_pixels,
                              scene_model=config.scene_model, precision=config.precision)
        self.labels = self.rec.labels
        # whole-image emotion: a scene model beside the face model, or the model itself when it is a scene model
        self.has_scene = self.rec.scene or self.rec.scene_reader is not None
        self.detectors = list_detectors()
        self._pools: dict[str, _DetectorPool] = {}  # the Recognizer built one detector already: options checked at start
        self._pools_lock = threading.Lock()
        self._pool_size = config.detect_threads or os.cpu_count() or 1
        self.batcher = MicroBatcher(self.classify, config.batching, config.max_batch, config.max_wait_ms)
        self.scene_batcher = (MicroBatcher(self.classify_scene, config.batching, config.max_batch, config.max_wait_ms)
                              if self.has_scene else None)
        self.started = time.time()
        self.requests = 0
        card = self.rec.card
        spec = config.model
        self.model_id = (str(spec or DEFAULT) if is_bundled_name(spec) else
                         Path(spec).stem if Path(spec).suffix else Path(spec).name)
        self.model_info = {"id": self.model_id, "version": (card.sha256 or "unknown")[:12], "backbone": card.backbone,
                           "labels": self.labels, "input_size": card.input_size, "channels": card.channels,
                           "backend": self.rec.backend.name, "precision": self.rec.precision, "license": card.license,
                           "emotune_version": card.emotune_version, "created": card.created,
                           "targets": list(card.target_names), "input_kind": card.input_kind}
        scene_card = self.rec.scene_reader.card if self.rec.scene_reader is not None else card if self.rec.scene else None
        scene_spec = config.scene_model if self.rec.scene_reader is not None else spec
        self.scene_info = None if scene_card is None else {
            "id": "bundled scene" if scene_spec in (None, "", "default", "bundled") else Path(str(scene_spec)).stem,
            "version": (scene_card.sha256 or "unknown")[:12], "backbone": scene_card.backbone,
            "labels": list(scene_card.labels), "targets": list(scene_card.target_names), "input_size": scene_card.input_size,
            "resize_mode": scene_card.resize_mode}

    # ---- the work, in threads ------------------------------------------------------------------------------------
    def _pool(self, name: str) -> _DetectorPool:
        from ..faces import create_detector

        with self._pools_lock:
            if name not in self._pools:
                if name not in self.detectors:
                    raise HTTPProblem(400, f"detector {name!r} is unknown: choose one of {', '.join(self.detectors)}")
                kwargs = {} if name == "none" else {"score_threshold": self.config.min_score, "max_side": self.config.det_max_side}
                model = self.config.detector_model if name == self.config.detector else None
                self._pools[name] = _DetectorPool(lambda: create_detector(name, model, **kwargs), self._pool_size)
            return self._pools[name]

    def prepare(self, upload: Upload, opts: Options) -> tuple[np.ndarray, list, list[np.ndarray]]:
        """Decode (in memory) and detect one image: (rgb, faces, crops). Runs in a worker thread."""
        from ..data.images import read_image_bytes
        from ..faces import crop_face

        try:
            rgb = np.asarray(read_image_bytes(upload.data, upload.name, "rgb", self.config.max_pixels, FORMATS,
                                              hint="the server's --max-pixels limit"))
        except BadInputError as exc:
            status = 415 if exc.problem.startswith("not an image") else 413 if exc.problem.startswith("image too large") else 400
            raise HTTPProblem(status, str(exc)) from None
        if opts.scene:  # the whole image only: the scene model reads it, no face detection
            return rgb, [], []
        pool = self._pool(opts.detector)
        try:
            det = pool.get()
        except EmotuneError as exc:
            raise HTTPProblem(400, f"detector {opts.detector}: {exc}") from None
        try:
            faces = det.detect(rgb)
        finally:
            pool.put(det)
        card = self.rec.card
        crops = [crop_face(rgb, f, card.source_size or card.input_size, self.rec.margin, opts.align, card.framing) for f in faces]
        return rgb, faces, crops

    def classify(self, crops, tta: bool) -> np.ndarray:
        """Probabilities for RGB crops, `max_batch` at a time, with or without mirror TTA (the batcher's function)."""
        from ..data.transforms import flip_tta

        rec, out = self.rec, []
        for i in range(0, len(crops), rec.batch_size):
            x = rec.preprocess(crops[i:i + rec.batch_size])
            out.append(flip_tta(rec.backend, x) if tta else rec.backend(x))
        return np.concatenate(out) if out else np.zeros((0, len(rec.columns)), np.float32)

    def classify_scene(self, images, tta: bool) -> np.ndarray:
        """Scene-model outputs (classes, then targets) for whole RGB images (the scene batcher's function)."""
        if self.rec.scene_reader is not None:
            return self.rec.scene_reader.classify(images, self.rec.batch_size, tta)
        return self.classify(images, tta)  # the model is a scene model: the one Preprocess of its card

    def scene_fields(self, p: np.ndarray) -> dict[str, Any]:
        """The whole image's emotion: label and probabilities of the scene classes, and targets (valence, arousal)."""
        info = self.scene_info
        k = len(info["labels"])
        return {"label": info["labels"][int(np.argmax(p[:k]))] if k else None,
                "probs": {c: round(float(v), 5) for c, v in zip(info["labels"], p[:k])},
                "targets": {t: round(float(v), 5) for t, v in zip(info["targets"], p[k:])}}

    # ---- per request ---------------------------------------------------------------------------------------------
    def options(self, fields_: dict[str, Any]) -> Options:
        det = str(fields_.get("detector") or self.config.detector).strip().lower()
        if det not in self.detectors:
            raise HTTPProblem(400, f"detector {det!r} is unknown: choose one of {', '.join(self.detectors)}")
        scene = _flag(fields_.get("scene", False), "scene")
        if scene and not self.has_scene:
            raise HTTPProblem(400, "scene: this server has no scene model (its model is a face model): start it with "
                                   "--scene-model SCENE_RUN (or --with-scene), or --model SCENE_RUN")
        return Options(det, _flag(fields_.get("tta", False), "tta"), scene or self.rec.scene, _flag(fields_.get("align", True), "align"))

    async def analyze(self, upload: Upload, opts: Options) -> dict[str, Any]:
        """One image -> the v1 response: image size, model, faces (box, landmarks, score, probabilities, label)."""
        import anyio

        if self.rec.scene and not opts.scene:  # a scene model reads whole images, whatever the route asked
            opts = replace(opts, scene=True)
        t0 = time.perf_counter()
        with self.batcher.upstream():
            rgb, faces, crops = await anyio.to_thread.run_sync(self.prepare, upload, opts)
        t1 = time.perf_counter()
        jobs = [self.batcher.classify(crops, opts.tta)] if crops else []
        if self.scene_batcher is not None:  # the whole image beside its faces, classified at the same time
            jobs.append(self.scene_batcher.classify([rgb], opts.tta))
        done = await asyncio.gather(*jobs)
        probs = done[0] if crops else np.zeros((0, len(self.rec.columns)))
        t2 = time.perf_counter()
        out = []
        k = len(self.labels)
        for face, p in zip(faces, probs):
            x, y, w, h = (round(float(v), 1) for v in face.box)
            out.append({"box": {"x": x, "y": y, "w": w, "h": h},
                        "landmarks": None if face.landmarks is None else np.round(face.landmarks.astype(float), 1).tolist(),
                        "score": round(float(face.score), 4), "label": self.labels[int(np.argmax(p[:k]))],
                        "probs": {c: round(float(v), 5) for c, v in zip(self.labels, p[:k])},
                        **({"targets": {t: round(float(v), 5) for t, v in zip(self.rec.targets, p[k:])}}
                           if self.rec.targets else {})})
        self.requests += 1
        return {"image": {"name": upload.name, "width": int(rgb.shape[1]), "height": int(rgb.shape[0])},
                "model": {"id": self.model_info["id"], "version": self.model_info["version"]},
                "detector": "none (scene)" if opts.scene else opts.detector, "tta": opts.tta, "scene": opts.scene,
                "faces": out, **({"scene_emotion": self.scene_fields(done[-1][0])} if self.scene_batcher is not None else {}),
                "timing_ms": {"decode_detect": round((t1 - t0) * 1000, 1), "classify": round((t2 - t1) * 1000, 1)}}

    @staticmethod
    async def timed(coro, timeout_s: float):
        """The per-request time limit: past it the client gets a 504 (the thread finishing a detection is not
        interrupted, but its result is dropped, and the batcher skips crops whose caller has gone)."""
        try:
            return await asyncio.wait_for(coro, timeout_s)
        except asyncio.TimeoutError:
            raise HTTPProblem(504, f"analysis took longer than the {timeout_s:g} s per-request limit (--timeout)") from None


def _static_dir() -> Path:
    return Path(str(resources.files("emotune") / "serve" / "static"))


_IMAGE_BODY = {"content": {
    "multipart/form-data": {"schema": {"type": "object", "properties": {
        "file": {"type": "string", "format": "binary", "description": "the image (JPEG, PNG, WebP, BMP, GIF, TIFF)"},
        "detector": {"type": "string", "default": "yunet"}, "tta": {"type": "boolean", "default": False},
        "scene": {"type": "boolean", "default": False}, "align": {"type": "boolean", "default": True}},
        "required": ["file"]}},
    "application/json": {"schema": {"type": "object", "properties": {
        "image": {"type": "string", "description": "base64 image (a data: URL is fine; URLs are refused)"},
        "detector": {"type": "string"}, "tta": {"type": "boolean"}, "scene": {"type": "boolean"},
        "align": {"type": "boolean"}}, "required": ["image"]}},
    "image/jpeg": {"schema": {"type": "string", "format": "binary"}}}, "required": True}
_BATCH_BODY = {"content": {
    "multipart/form-data": {"schema": {"type": "object", "properties": {
        "files": {"type": "array", "items": {"type": "string", "format": "binary"}}}}},
    "application/json": {"schema": {"type": "object", "properties": {
        "images": {"type": "array", "items": {"type": "string"}, "description": "base64 images"}}}}}, "required": True}
_DEEPFACE_BODY = {"content": {
    "application/json": {"schema": {"type": "object", "properties": {
        "img": {"type": "string", "description": "base64 image or data: URL (`img_path` is read too)"},
        "actions": {"type": "array", "items": {"type": "string"}, "description": "only \"emotion\" is computed"},
        "detector_backend": {"type": "string", "description": "opencv -> haar, yunet, mediapipe, skip -> none"},
        "enforce_detection": {"type": "boolean", "default": True}, "align": {"type": "boolean", "default": True}},
        "required": ["img"]}},
    "multipart/form-data": {"schema": {"type": "object", "properties": {"img": {"type": "string", "format": "binary"}}}}},
    "required": True}
_ERRORS = {c: {"description": d, "content": {"application/json": {"example": {"error": "..."}}}}
           for c, d in [(400, "bad input (bad base64, a URL, a corrupt image, an unknown option)"),
                        (413, "upload or image too large"), (415, "not an image / unsupported content type"),
                        (504, "over the per-request time limit")]}


def create_app(config: ServeConfig | None = None, engine: Engine | None = None):
    """The FastAPI app. The model loads here, once, before the server accepts a connection."""
    from contextlib import asynccontextmanager

    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, JSONResponse
    from fastapi.staticfiles import StaticFiles
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from .. import __version__

    config = config or ServeConfig()
    engine = engine or Engine(config)  # tests share one engine between apps with different limits
    limit = config.max_upload_bytes

    @asynccontextmanager
    async def lifespan(app):
        batchers = [b for b in (engine.batcher, engine.scene_batcher) if b is not None]
        for b in batchers:
            await b.start()
        yield
        for b in batchers:
            await b.stop()

    app = FastAPI(title="emotune", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Facial expression recognition: detect every face, classify its emotion. "
                              "Errors are JSON: {\"error\": message}. The interactive page is at /, the API page at /docs.")
    app.state.engine = engine

    @app.exception_handler(HTTPProblem)
    async def _problem(request, exc: HTTPProblem):
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request, exc):
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, exc):
        return JSONResponse({"error": "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())},
                            status_code=422)

    @app.exception_handler(Exception)
    async def _crash(request, exc):  # a bug must still answer in JSON, in one line
        return JSONResponse({"error": f"internal error: {type(exc).__name__}: {exc}"}, status_code=500)

    @app.post("/v1/analyze", summary="Faces and their emotions in one image", openapi_extra={"requestBody": _IMAGE_BODY},
              responses=_ERRORS)
    async def analyze(request: Request):
        """Send the image as multipart field `file`, as JSON `{"image": "<base64>"}` or as the raw body
        (Content-Type image/...). Options (form fields or JSON keys): `detector`, `tta`, `scene`, `align`. With a
        scene model (`--scene-model`, or a scene model as `--model`) the response has `scene_emotion`: the whole
        image's label, probabilities (positive, negative) and targets (valence, arousal); `scene` reads the whole
        image only (no faces)."""
        parsed = await parse_request(request, limit, ("file", "image"), ("image", "file"))
        if len(parsed.uploads) > 1:
            raise HTTPProblem(400, "one image per /v1/analyze request: use /v1/analyze/batch for several")
        return await engine.timed(engine.analyze(parsed.uploads[0], engine.options(parsed.fields)), config.timeout_s)

    @app.post("/v1/analyze/batch", summary="Several images in one request", openapi_extra={"requestBody": _BATCH_BODY},
              responses=_ERRORS)
    async def analyze_batch(request: Request):
        """Multipart fields `files` (repeated), or JSON `{"images": ["<base64>", ...]}`. One result per image, in
        order; an image that fails has `{"error": ...}` and the others are still analysed."""
        parsed = await parse_request(request, limit, ("files", "file", "images"), ("images",), many=True)
        if len(parsed.uploads) > config.max_images:
            raise HTTPProblem(413, f"{len(parsed.uploads)} images in one request; the limit is {config.max_images}")
        opts = engine.options(parsed.fields)

        async def one(up: Upload):
            try:
                return await engine.analyze(up, opts)
            except HTTPProblem as exc:
                return {"image": {"name": up.name}, "error": exc.message, "status": exc.status}

        return {"results": await engine.timed(asyncio.gather(*(one(u) for u in parsed.uploads)), config.timeout_s)}

    @app.post("/analyze", summary="deepface-compatible analyze (emotion only)", openapi_extra={"requestBody": _DEEPFACE_BODY},
              responses=_ERRORS)
    async def deepface_analyze(request: Request):
        """deepface's `POST /analyze`: request keys `img` (base64, data: URL or upload; `img_path` too), `actions`,
        `detector_backend`, `enforce_detection`, `align`. Response `{"results": [{"emotion": {...percent},
        "dominant_emotion", "region": {x, y, w, h, left_eye, right_eye}, "face_confidence"}]}`."""
        parsed = await parse_request(request, limit, ("img", "img_path"), ("img", "img_path"))
        f = parsed.fields
        actions = f.get("actions", ["emotion"])
        if isinstance(actions, str):
            actions = [a.strip() for a in actions.strip("[]").replace('"', "").replace("'", "").split(",") if a.strip()]
        if "emotion" not in actions:
            raise HTTPProblem(400, f"actions {actions}: emotune computes only \"emotion\"; include it")
        warnings = [f"actions {', '.join(a for a in actions if a != 'emotion')} are not supported by emotune; "
                    "only emotion is returned"] if set(actions) - {"emotion"} else []
        backend = str(f.get("detector_backend") or "").strip().lower()
        det = DEEPFACE_DETECTORS.get(backend, config.detector) if backend else config.detector
        if backend and backend not in DEEPFACE_DETECTORS:
            warnings.append(f"detector_backend {backend} is not available; used {config.detector}")
        opts = Options(det, align=_flag(f.get("align", True), "align"))
        res = await engine.timed(engine.analyze(parsed.uploads[0], opts), config.timeout_s)
        if not res["faces"] and _flag(f.get("enforce_detection", True), "enforce_detection"):
            raise HTTPProblem(400, "Face could not be detected. Please confirm that the picture is a face photo "
                                   "or consider to set enforce_detection param to False.")
        results = []
        for face in res["faces"] or [None]:
            if face is None:  # deepface with enforce_detection=False: the whole image as the region, no emotion
                results.append({"emotion": {}, "dominant_emotion": None, "face_confidence": 0,
                                "region": {"x": 0, "y": 0, "w": res["image"]["width"], "h": res["image"]["height"],
                                           "left_eye": None, "right_eye": None}})
                continue
            lm = face["landmarks"]
            b = face["box"]
            results.append({"emotion": {k: round(v * 100, 4) for k, v in face["probs"].items()},
                            "dominant_emotion": face["label"], "face_confidence": face["score"],
                            # deepface's left_eye is the person's left eye: the one on the image's right
                            "region": {"x": int(round(b["x"])), "y": int(round(b["y"])), "w": int(round(b["w"])),
                                       "h": int(round(b["h"])), "left_eye": None if lm is None else [int(v) for v in lm[1]],
                                       "right_eye": None if lm is None else [int(v) for v in lm[0]]}})
        return {"results": results, **({"warnings": warnings} if warnings else {})}

    @app.get("/v1/models", summary="The loaded model and the detectors")
    async def models():
        return {"models": [engine.model_info], "scene_model": engine.scene_info, "detectors": engine.detectors,
                "default_detector": config.detector}

    @app.get("/health", summary="Liveness and counters")
    async def health():
        return {"status": "ok", "model": engine.model_info["id"], "version": engine.model_info["version"],
                "uptime_s": round(time.time() - engine.started, 1), "requests": engine.requests,
                "batching": {"enabled": engine.batcher.enabled, "max_batch": engine.batcher.max_batch,
                             "max_wait_ms": config.max_wait_ms, "waiting": engine.batcher.waiting,
                             **engine.batcher.stats.to_dict()},
                "limits": {"max_upload_bytes": limit, "max_pixels": config.max_pixels, "timeout_s": config.timeout_s,
                           "max_images": config.max_images}}

    static = _static_dir()
    app.mount("/static", StaticFiles(directory=static), name="static")

    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(static / "index.html")

    @app.get("/docs", include_in_schema=False)
    async def docs():  # the API page, served from the package: no CDN (Swagger UI would need one)
        return FileResponse(static / "api.html")

    return app


def app_from_env():
    """uvicorn factory for `--workers N`: every worker process builds its own app from $EMOTUNE_SERVE_CONFIG."""
    return create_app(ServeConfig.from_json(os.environ.get(CONFIG_ENV, "{}")))
