"""`Recognizer`: detect every face, align it to the training framing, classify its expression.

    from emotune import Recognizer
    rec = Recognizer()                       # bundled default model, YuNet detector, onnxruntime on CPU
    faces = rec.predict("photo.jpg")         # path, PIL image or RGB numpy array -> list[FaceResult]
    df = rec.predict_folder("photos/")       # pandas DataFrame, one row per face (or per face-less/bad file)
    df = rec.predict_video("clip.mp4")       # plus frame, time and track id
    rec = Recognizer(scene_model="runs/scene")  # faces AND the whole image: a `kind` column, face | scene
    rec.predict_scene("photo.jpg")           # the whole image's FaceResult (positive, negative, valence, arousal)
    df = rec.predict_video("clip.mp4", smooth=True)  # probabilities smoothed per track; raw_* columns per frame
    rec.summarise(df)                        # per track: time share of each emotion, means of valence/arousal columns
"""
from __future__ import annotations

import errno
import glob
import json
import logging
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..data.images import image_from_array, read_image
from ..data.sources import IMAGE_EXTENSIONS
from ..errors import BadInputError, CheckpointError, ConfigError, EmotuneError
from ..faces import DEFAULT_DETECTOR, Face, create_detector, crop_face
from ..io import sha256_file
from ..models import load_checkpoint, read_card
from ..models.bundled import DEFAULT, SCENE, bundled_path, int8_companion, resolve_model
from ..models.card import require_image_model, resolve_card_path
from ..progress import progress
from .smoothing import resolve_smooth
from .video import VIDEO_EXTENSIONS, frame_step, iter_timed_frames, open_video

log = logging.getLogger(__name__)

BASE_COLUMNS = ["file", "frame", "time", "track", "x", "y", "w", "h", "score"]


def default_model_path() -> Path:
    """The model card of the default model that ships inside the package."""
    return bundled_path(DEFAULT)


def default_scene_model_path() -> Path:
    """The model card of the bundled scene model (whole-image sentiment and valence/arousal), when this build has one."""
    return bundled_path(SCENE)


NO_SCENE_MODEL = "this emotune build has no bundled scene model (emotune/weights/scene.json)"


@dataclass
class FaceResult:
    """One face: where it is, how sure the detector was, and the probability of every class."""

    box: tuple[float, float, float, float]
    score: float
    probs: dict[str, float]
    label: str
    landmarks: list[list[float]] | None = None
    frame: int | None = None
    time: float | None = None
    track: int | None = None
    # continuous outputs of a model with targets (valence, arousal on [-1, 1]); {} for a classifier
    targets: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"box": [round(v, 1) for v in self.box], "score": round(self.score, 4), "label": self.label,
                "probs": {k: round(v, 5) for k, v in self.probs.items()}, "landmarks": self.landmarks,
                **({"targets": {k: round(v, 5) for k, v in self.targets.items()}} if self.targets else {}),
                "frame": self.frame, "time": self.time, "track": self.track}


@dataclass
class _Item:
    """One image or video frame moving through detection -> classification."""

    file: str
    faces: list[Face] = field(default_factory=list)
    crops: list[np.ndarray] = field(default_factory=list)
    probs: np.ndarray | None = None
    rgb: np.ndarray | None = None
    frame: int | None = None
    time: float | None = None
    tracks: list[int] | None = None
    error: str | None = None
    raw_probs: np.ndarray | None = None  # the per-frame probabilities when `probs` are smoothed over time
    scene_probs: np.ndarray | None = None  # the scene model's outputs for the whole image (beside the faces)
    scene_shape: tuple[int, int] = (0, 0)  # its height and width (the image itself may be dropped by then)


def _resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: CUDA is not available here")
    return device


PRECISIONS = ("auto", "fp32", "int8")


def card_precision(card) -> str:
    """"int8" for a quantised export's card (export.quantize_int8 records how), else "fp32"."""
    return "int8" if (card.training or {}).get("quantization") else "fp32"


def load_backend(model: str | Path | None, device: str = "cpu", backend: str = "auto", threads: int = 0,
                 precision: str = "auto"):
    """(ModelCard, backend) for a model spec: None/'default' (bundled), a run folder, a card, .safetensors or .onnx.

    `precision`: "auto" runs a model's int8 companion (models/bundled.py `int8_companion`, shipped with the bundled
    default) on CPU when there is one, because it keeps accuracy (docs/faces.md) at a fraction of the time; "fp32"
    never does; "int8" insists on it."""
    from .backend import OnnxBackend, TorchBackend, cached_onnx

    if backend not in ("auto", "torch", "onnx"):
        raise ConfigError(f"unknown backend {backend!r}: choose auto, torch or onnx")
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}: choose {', '.join(PRECISIONS)}")
    path = resolve_model(model)
    if precision != "fp32" and path.suffix != ".onnx":
        companion = int8_companion(resolve_card_path(path))
        if companion is not None and backend != "torch" and device == "cpu":
            return load_backend(companion, device, "onnx", threads)
        if precision == "int8":
            why = ("it has no int8 companion made from these weights (make one: emotune export --quantize int8 "
                   "--calibration CROPS -o NAME.int8.onnx beside its card)" if companion is None
                   else "int8 runs with onnxruntime on CPU (use --device cpu and the auto or onnx backend)")
            raise ConfigError(f"--precision int8 with {path}: {why}")
    if path.suffix == ".onnx":
        if backend == "torch":
            raise ConfigError(f"{path}: an ONNX model runs with the onnx backend only")
        card, card_path = read_card(path.with_suffix(".json"))
        if card.sha256 and sha256_file(path) != card.sha256:
            raise CheckpointError(f"{path}: sha256 does not match its model card {card_path}")
        if precision not in ("auto", card_precision(card)):  # the file is what it is: say so, do not run it
            raise ConfigError(f"--precision {precision} with {path}: that file is an {card_precision(card)} "
                              f"export; drop --precision or pass the {precision} model")
        return card, OnnxBackend(path, threads)
    require_image_model(read_card(path)[0], path, "evaluate")
    if backend == "onnx" or (backend == "auto" and device == "cpu"):
        card, card_path = read_card(path)
        weights = card_path.parent / card.weights_file
        if not card.sha256 or not weights.is_file() or sha256_file(weights) != card.sha256:
            load_checkpoint(path)  # raises the same clear error a PyTorch load would
        try:
            return card, OnnxBackend(cached_onnx(lambda: load_checkpoint(path)[0], card), threads)
        except Exception as exc:  # noqa: BLE001 - any export/runtime failure falls back to PyTorch in auto mode
            if backend == "onnx":
                raise ConfigError(f"onnx backend unavailable: {exc}") from None
            log.warning("onnxruntime path unavailable (%s); using PyTorch", exc)
    torch_model, card = load_checkpoint(path)
    return card, TorchBackend(torch_model, device, len(card.labels) if card.targets else None)


@dataclass
class SceneReader:
    """A scene model beside the face model: each whole image through the scene card's own `Preprocess` (no face
    detection), giving what the photo makes people feel (positive/negative, valence/arousal)."""

    card: Any
    backend: Any

    @classmethod
    def load(cls, spec: str | Path, device: str = "cpu", backend: str = "auto", threads: int = 0) -> SceneReader:
        """`spec`: a scene run folder, card, .safetensors or .onnx; "default" (or "bundled"): the bundled scene model."""
        if str(spec) in (DEFAULT, "bundled"):
            if not default_scene_model_path().is_file():
                raise CheckpointError(f"--with-scene: {NO_SCENE_MODEL}: pass --scene-model SCENE_RUN (a model trained "
                                      "with --input-kind scene)")
            spec = default_scene_model_path()
        card, be = load_backend(spec, device, backend, threads)
        if card.input_kind != "scene":
            raise ConfigError(f"--scene-model {spec}: a face model, not a scene model (train one with --input-kind scene)")
        return cls(card, be)

    @property
    def labels(self) -> list[str]:
        return list(self.card.labels)

    @property
    def columns(self) -> list[str]:
        return list(self.card.labels) + list(self.card.target_names)

    def classify(self, images: Sequence[np.ndarray], batch_size: int = 32, tta: bool = False) -> np.ndarray:
        from ..data.transforms import Preprocess, flip_tta

        pre = Preprocess.from_card(self.card)
        out = [(flip_tta(self.backend, x) if tta else self.backend(x))
               for x in (pre.batch(images[i:i + batch_size]) for i in range(0, len(images), batch_size))]
        return np.concatenate(out) if out else np.zeros((0, len(self.columns)), np.float32)

    def result(self, p: np.ndarray, size: tuple[int, int], frame: int | None = None, time: float | None = None) -> FaceResult:
        """The whole image (`size` = width, height) as a FaceResult: box = the image, score 1."""
        k = len(self.card.labels)
        labels = self.labels
        return FaceResult((0.0, 0.0, float(size[0]), float(size[1])), 1.0, {c: float(v) for c, v in zip(labels, p[:k])},
                          labels[int(np.argmax(p[:k]))] if k else "", None, frame, time, None,
                          {t: float(v) for t, v in zip(self.card.target_names, p[k:])})


class Recognizer:
    """Face detection + expression classification with one model; see the module docstring."""

    def __init__(self, model: str | Path | None = None, detector: str = DEFAULT_DETECTOR, detector_model: str | Path | None = None,
                 device: str = "auto", backend: str = "auto", batch_size: int = 32, margin: float = 1.0, align: bool = True,
                 scene: bool = False, det_max_side: int = 640, min_score: float = 0.6, threads: int = 0, tta: bool = False,
                 video_det_max_side: int = 320, max_pixels: int | None = None, scene_model: str | Path | None = None,
                 precision: str = "auto"):
        if batch_size < 1:
            raise ConfigError("batch_size must be at least 1")
        if not 0.5 <= margin <= 3.0:
            raise ConfigError(f"margin {margin} is outside 0.5..3.0")
        self.device = _resolve_device(device)
        if scene and model in (None, "", "default"):  # whole images want the bundled scene model, not the face one
            if not default_scene_model_path().is_file():
                raise CheckpointError(f"--scene: the default model is a face model, and {NO_SCENE_MODEL}: pass --model "
                                      "SCENE_RUN (a model trained with --input-kind scene)")
            model = default_scene_model_path()
        self.card, self.backend = load_backend(model, self.device, backend, threads, precision)
        self.labels: list[str] = list(self.card.labels)  # the classes
        self.targets: list[str] = list(self.card.target_names)  # continuous outputs after them (valence, arousal)
        self.columns: list[str] = self.labels + self.targets  # a row's output columns
        if self.card.input_kind == "scene" and not scene:
            log.warning("%s is a scene model: reading whole images (scene mode), no face detection",
                        model or "the default model")
            scene = True
        elif scene and self.card.input_kind == "face":
            raise ConfigError(f"{model}: a face model, not a scene model: scene mode (--scene) reads whole images with a "
                              "scene model (--model SCENE_RUN); for faces and the whole image together use --scene-model")
        self.scene = scene
        # a scene model beside the face model: one more row per image, for the whole image (kind = scene)
        self.scene_reader: SceneReader | None = None
        if scene_model not in (None, ""):
            if scene:
                raise ConfigError(f"--scene-model {scene_model}: {model or 'the model'} already reads whole images (scene "
                                  "mode); --scene-model adds a scene model beside a face model")
            self.scene_reader = SceneReader.load(scene_model, self.device, backend, threads)
        # every output column of the table: the face model's, then the scene model's that it lacks
        self.scene_labels: list[str] = self.scene_reader.labels if self.scene_reader else (self.labels if scene else [])
        self.table_columns: list[str] = self.columns + [c for c in (self.scene_reader.columns if self.scene_reader else [])
                                                        if c not in self.columns]
        self.table_labels: list[str] = self.labels + [c for c in self.scene_labels if c not in self.labels]
        kwargs = {} if scene or detector == "none" else {"score_threshold": min_score, "max_side": det_max_side}
        self.detector = create_detector("none" if scene else detector, detector_model, **kwargs)
        self.batch_size, self.margin, self.align = batch_size, margin, align
        # video frames are detected smaller: 4x less detector time, and video faces are rarely tiny (docs/faces.md)
        self.video_det_max_side = video_det_max_side
        self.tta = tta  # average with the mirrored face: steadier probabilities for twice the classifier time
        self.max_pixels = max_pixels  # image files above this are refused as possible bombs (None: read_image's, 0: none)

    @property
    def precision(self) -> str:
        """"int8" when the face model that runs is a quantised export, else "fp32"."""
        return card_precision(self.card)

    # ---- preprocessing and classification ---------------------------------------------------------------------
    def crop(self, rgb: np.ndarray, face: Face) -> np.ndarray:
        """The face as RGB uint8, framed as the model card says (the margin and align options apply on top of the
        card's framing), at the card's `source_size` (else `input_size`); `preprocess` does every resize after this.
        Scene models take the whole image."""
        if self.scene:
            return rgb
        return crop_face(rgb, face, self.card.source_size or self.card.input_size, self.margin, self.align, self.card.framing)

    def preprocess(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """RGB uint8 crops of any size -> normalised float32 N x C x S x S, by the model card's one `Preprocess`
        (the same function `emotune evaluate` feeds its dataset through)."""
        from ..data.transforms import Preprocess

        return Preprocess.from_card(self.card).batch(crops)

    def classify(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """Class probabilities (N x classes) for RGB uint8 crops of any size (resampled as `preprocess` says)."""
        out = [self._run(self.preprocess(crops[i:i + self.batch_size])) for i in range(0, len(crops), self.batch_size)]
        return np.concatenate(out) if out else np.zeros((0, len(self.columns)), np.float32)

    def _run(self, x: np.ndarray) -> np.ndarray:
        from ..data.transforms import flip_tta

        return flip_tta(self.backend, x) if self.tta else self.backend(x)

    def classify_scene(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Scene-model outputs (N x its columns) for whole RGB images: the scene model beside the face model, or the
        model itself in scene mode."""
        if self.scene_reader is not None:
            return self.scene_reader.classify(images, self.batch_size, self.tta)
        if self.scene:
            return self.classify(images)
        raise ConfigError("no scene model: pass scene_model= (a model trained with --input-kind scene) or scene=True")

    def scene_result(self, item: _Item) -> FaceResult | None:
        """The whole-image result of an image classified beside its faces (None when there is none)."""
        if self.scene_reader is None or item.scene_probs is None:
            return None
        h, w = item.scene_shape
        return self.scene_reader.result(item.scene_probs, (w, h), item.frame, item.time)

    # ---- single images ------------------------------------------------------------------------------------------
    def _to_rgb(self, image: Any) -> np.ndarray:
        from PIL import Image

        if isinstance(image, (str, Path)):
            return np.asarray(read_image(image, "rgb", max_pixels=self.max_pixels))
        if isinstance(image, Image.Image):
            from ..data.images import normalize_mode

            return np.asarray(normalize_mode(image, "rgb"))
        if isinstance(image, np.ndarray):
            return np.asarray(image_from_array(image, "rgb"))
        raise BadInputError(repr(type(image)), "not an image: pass a path, a PIL image or a numpy array")

    def _detect(self, item: _Item, max_side: int | None = None) -> _Item:
        item.faces = self.detector.detect(item.rgb, max_side)
        item.crops = [self.crop(item.rgb, f) for f in item.faces]
        return item

    def results(self, item: _Item) -> list[FaceResult]:
        """The FaceResults of a classified item (image or frame), in detection order."""
        out = []
        for i, face in enumerate(item.faces):
            p = item.probs[i]
            k = len(self.labels)
            out.append(FaceResult(tuple(float(v) for v in face.box), face.score, {c: float(v) for c, v in zip(self.labels, p[:k])},
                                  self.labels[int(np.argmax(p[:k]))] if k else "",
                                  None if face.landmarks is None else np.round(face.landmarks.astype(float), 1).tolist(),
                                  item.frame, item.time, None if item.tracks is None else item.tracks[i],
                                  {t: float(v) for t, v in zip(self.targets, p[k:])}))
        return out

    def predict(self, image: Any) -> list[FaceResult]:
        """Every face in one image (path, PIL image or RGB array), left to right; [] when there is none."""
        item = self._detect(_Item(str(image) if isinstance(image, (str, Path)) else "<image>", rgb=self._to_rgb(image)))
        item.probs = self.classify(item.crops)
        return self.results(item)

    def predict_scene(self, image: Any) -> FaceResult:
        """The whole image (path, PIL image or RGB array) read by the scene model: what it makes people feel, as classes
        (positive, negative) and targets (valence, arousal); `box` is the whole image."""
        rgb = self._to_rgb(image)
        h, w = rgb.shape[:2]
        p = self.classify_scene([rgb])[0]
        reader = self.scene_reader or SceneReader(self.card, self.backend)
        return reader.result(p, (w, h))

    def predict_images(self, paths: Iterable[str | Path], show: bool = False) -> pd.DataFrame:
        """The table `emotune predict` writes for image files: a row per face (or one for a face-less or bad file),
        and with a scene model a row for each whole image (`kind` = scene)."""
        return self.frame_of([r for item in self.iter_images(paths, show) for r in self.rows(item)])

    # ---- streams ------------------------------------------------------------------------------------------------
    def _batched(self, items: Iterable[_Item], live: bool = False, scene: bool = False) -> Iterator[_Item]:
        """Classify the crops of consecutive items together, `batch_size` at a time; items come out in order.
        `live` (a webcam) classifies each item at once: a camera's results must not wait for a batch to fill.
        `scene`: the scene model beside the face model reads each whole image too, in the same batches."""
        pending: list[_Item] = []
        n = 0

        def flush() -> Iterator[_Item]:
            crops = [c for it in pending for c in it.crops]
            probs = self.classify(crops)
            whole = [it for it in pending if scene and it.rgb is not None and not it.error]
            for it, p in zip(whole, self.classify_scene([it.rgb for it in whole]) if whole else []):
                it.scene_probs, it.scene_shape = p, it.rgb.shape[:2]
            k = 0
            for it in pending:
                it.probs = probs[k:k + len(it.crops)]
                k += len(it.crops)
                yield it

        for item in items:
            pending.append(item)
            n += len(item.crops)
            # items without faces count too: a long face-less stretch must not pile up frames in memory
            if live or n >= self.batch_size or len(pending) >= self.batch_size:
                yield from flush()
                pending, n = [], 0
        yield from flush()

    @property
    def has_kind(self) -> bool:
        """Whether the table has a `kind` column (face | scene): with a scene model, beside the faces or alone."""
        return self.scene or self.scene_reader is not None

    def rows(self, item: _Item) -> list[dict[str, Any]]:
        """Table rows for one item: one per face, or one row with an empty face (and `error` for bad files); with a
        scene model beside the face model, then one row for the whole image (`kind` scene)."""
        results = [] if item.error else self.results(item)
        rows = result_rows(item.file, results, self.columns, item.frame, item.time, item.error)
        if item.raw_probs is not None and results:  # smoothed: the per-frame values beside them
            from .smoothing import raw_columns

            raw = raw_columns(self.labels)
            for row, p in zip(rows, item.raw_probs):
                row.update(zip(raw, [*(round(float(v), 5) for v in p), self.labels[int(np.argmax(p))]]))
        if self.has_kind:
            for row in rows:
                row["kind"] = None if item.error else "scene" if self.scene else "face"
            if (whole := self.scene_result(item)) is not None:
                rows += [{**r, "kind": "scene"} for r in result_rows(item.file, [whole], self.scene_reader.columns,
                                                                     item.frame, item.time)]
        return rows

    def _add_targets(self, extra: Sequence[str]) -> None:
        """Output columns that a smoother brings (a temporal model's valence/arousal), in every column list."""
        extra = [c for c in extra if c not in self.targets]
        if extra:
            self.targets = [*self.targets, *extra]
            self.columns = self.labels + self.targets
            self.table_columns = [*self.table_columns, *(c for c in extra if c not in self.table_columns)]

    def bind_smoother(self, smooth_cfg) -> None:
        """Add a smoother's output columns before any table is started, so a file's header has them from the first row
        (a run of images then videos would otherwise write a CSV header without the temporal model's columns)."""
        from .smoothing import VideoSmoother

        self._add_targets(VideoSmoother.create(smooth_cfg, 1 / 30).bind(self.labels, list(self.card.target_names)))

    def frame_of(self, rows: list[dict], raw: bool = False) -> pd.DataFrame:
        """Rows as the table; `raw`: with the raw_* columns of smoothed video rows (empty where there are none)."""
        from .smoothing import raw_columns

        base = [BASE_COLUMNS[0], "kind", *BASE_COLUMNS[1:]] if self.has_kind else BASE_COLUMNS
        cols = base + self.table_columns + ["label", "landmarks", "error"] + (raw_columns(self.labels) if raw else [])
        df = pd.DataFrame(rows, columns=cols)
        for c in ("frame", "track"):
            df[c] = df[c].astype("Int64")
        return df

    def iter_images(self, paths: Iterable[str | Path], show: bool = False, keep_rgb: bool = False) -> Iterator[_Item]:
        """Detected and classified items for image files; a bad file becomes an item with `error` set."""
        import cv2

        paths = list(paths)

        def produce() -> Iterator[_Item]:
            for p in progress(paths, show, desc="images", unit="img"):
                try:
                    item = self._detect(_Item(str(p), rgb=self._to_rgb(p)))
                except BadInputError as exc:
                    item = _Item(str(p), error=exc.problem)
                except (MemoryError, cv2.error) as exc:  # one huge or odd file must not end a folder of thousands
                    item = _Item(str(p), error=item_failure(exc))
                yield item

        for item in self._batched(produce(), scene=self.scene_reader is not None):
            if not keep_rgb:
                item.rgb = None
            yield item

    def predict_folder(self, path: str | Path, recursive: bool = True, show: bool = False, videos: bool = True,
                       every: int = 1, fps: float | None = None) -> pd.DataFrame:
        """One row per face for every image under a folder (recursive), plus rows for face-less and bad files; with
        `videos`, every video too (one row per face per processed frame, `every`/`fps` as in predict_video)."""
        import cv2

        if not Path(path).is_dir():
            raise BadInputError(path, "not a folder (predict_folder takes a folder; predict takes one image)")
        files = collect_inputs([path], recursive)
        rows = [r for item in self.iter_images(files.images, show) for r in self.rows(item)]
        for video in files.videos if videos else []:
            try:  # a video that cannot be opened, or yields no frame, is an error row; the folder goes on
                got = [r for item in self.iter_video(video, every, fps, show) for r in self.rows(item)]
                rows += got or result_rows(str(video), [], self.columns, error=f"{video}: no frame could be decoded")
            except EmotuneError as exc:
                rows += result_rows(str(video), [], self.columns, error=str(exc))
            except (MemoryError, cv2.error) as exc:
                rows += result_rows(str(video), [], self.columns, error=item_failure(exc))
        return self.frame_of(rows)

    def iter_video(self, source: str | Path | int, every: int = 1, fps: float | None = None, show: bool = False,
                   keep_rgb: bool = False, info_out: list | None = None, smooth: Any = None) -> Iterator[_Item]:
        """Classified, tracked frames of a video (or webcam index), decoded as a stream. `smooth` (True, "ema",
        "hmm" or a smoother config, see inference/smoothing.py): each item's `probs` are smoothed per track and
        `raw_probs` keep the per-frame ones; a fixed-lag smoother hands items out up to its delay later."""
        from .smoothing import VideoSmoother
        from .tracking import IoUTracker

        smooth_cfg = resolve_smooth(smooth)  # a bad option fails before the video is opened
        cap, info = open_video(source)
        if info_out is not None:
            info_out.append(info)
        step = frame_step(info.fps, every, fps)
        tracker = IoUTracker(max_age=max(2, int(round(info.fps / step))))  # keep ids through ~1 s of misses
        name = info.path  # the file, or "webcam N"
        total = (info.frames + step - 1) // step if info.frames else None
        try:  # a track's state is dropped once the tracker has dropped its id (ids are never reused)
            smoother = VideoSmoother.create(smooth_cfg, step / info.fps, tracker.max_age + 1) if smooth_cfg else None
            if smoother is not None:  # a temporal model adds its targets (valence, arousal) as columns
                self._add_targets(smoother.bind(self.labels, list(self.card.target_names)))
        except BaseException:
            cap.release()
            raise

        webcam = isinstance(source, int)

        def produce() -> Iterator[_Item]:
            try:
                for index, t, rgb in progress(iter_timed_frames(cap, info, step), show, total=total, desc=Path(name).name,
                                              unit="frame"):
                    item = self._detect(_Item(name, rgb=rgb, frame=index, time=t), self.video_det_max_side)
                    item.tracks = tracker.update([f.box for f in item.faces])
                    yield item
            except KeyboardInterrupt:
                if not webcam:
                    raise
                # Ctrl-C is how a webcam session ends: stop reading, keep every frame seen so far

        for item in self._batched(produce(), live=webcam):
            if not keep_rgb:
                item.rgb = None
            if smoother is None:
                yield item
                continue
            for done, probs in smoother.push(item.time, item.tracks, item.probs, item):
                done.raw_probs, done.probs = done.probs, probs.astype(np.float32)
                yield done
        for done, probs in smoother.flush() if smoother is not None else []:
            done.raw_probs, done.probs = done.probs, probs.astype(np.float32)
            yield done

    def predict_video(self, source: str | Path | int, every: int = 1, fps: float | None = None, show: bool = False,
                      smooth: Any = None) -> pd.DataFrame:
        """One row per face per processed frame (a face-less frame gives one empty row): frame, time, track... With
        `smooth` (see iter_video), `label` and the class columns are smoothed per track and raw_* keep the per-frame
        values; `emotune.inference.output.summarise_video` turns the table into a per-track summary."""
        items = self.iter_video(source, every, fps, show, smooth=smooth)
        return self.frame_of([r for item in items for r in self.rows(item)], raw=resolve_smooth(smooth) is not None)

    def summarise(self, df: pd.DataFrame) -> pd.DataFrame:
        """Per video and track: time share of each emotion, dominant label, mean of numeric targets (output.summarise_video)."""
        from .output import summarise_video

        return summarise_video(df, self.labels)


def item_failure(exc: BaseException) -> str:
    """One line for an OpenCV or memory failure on one image or video (cv2.error messages span several lines)."""
    if isinstance(exc, MemoryError):
        return "out of memory while decoding or detecting (try a smaller --det-max-side, or shrink the file)"
    text = str(exc)
    msg = next((ln.split("error:", 1)[1].strip() for ln in text.splitlines() if "error:" in ln), "")
    msg = msg or " ".join(text.split())[:200]
    return f"OpenCV failed on it ({msg})"


def result_rows(file: str, results: list[FaceResult], labels: list[str], frame: int | None = None, time: float | None = None,
                error: str | None = None) -> list[dict[str, Any]]:
    """The table rows of one image or frame: one per face, or one empty row when there is no face (or an error)."""
    base = {"file": file, "frame": frame, "time": time}
    if error or not results:
        return [{**base, "track": None, "x": None, "y": None, "w": None, "h": None, "score": None,
                 **{c: None for c in labels}, "label": None, "landmarks": None, "error": error}]
    rows = []
    for r in results:
        x, y, w, h = (round(v, 1) for v in r.box)
        values = {**r.probs, **r.targets}  # a column a face lacks (a temporal model's, on a photo) stays empty
        rows.append({**base, "track": r.track, "x": x, "y": y, "w": w, "h": h, "score": round(r.score, 4),
                     **{c: None if values.get(c) is None else round(values[c], 5) for c in labels}, "label": r.label,
                     "landmarks": None if r.landmarks is None else json.dumps(r.landmarks), "error": None})
    return rows


@dataclass
class Inputs:
    images: list[Path] = field(default_factory=list)
    videos: list[Path] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def _link_problem(p: Path) -> str | None:
    """Why a symlink cannot be read ("broken symlink" or "symlink loop"), or None when it is not a bad link."""
    if not p.is_symlink():
        return None
    try:
        os.stat(p)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symlink loop (it points, through links, back to itself)"
        try:
            target = os.readlink(p)
        except OSError:
            target = "?"
        return f"broken symlink (its target {target} does not exist)"
    return None


def not_an_input(spec: str) -> str | None:
    """Why `spec` names no file emotune will read: stdin ("-") and URLs (nothing is ever downloaded); else None."""
    if Path(spec).exists():
        return None
    if spec == "-":
        return "reading an image or video from stdin is not supported; save it to a file and pass its path"
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", spec):
        return "URLs are not inputs (emotune never downloads anything); download the file and pass its path"
    return None


def collect_inputs(specs: Iterable[str | Path], recursive: bool = True) -> Inputs:
    """Expand files, folders (recursive) and glob patterns into image and video lists (sorted, de-duplicated).

    What cannot be an input goes to `missing` with the reason: a path that does not exist, a broken symlink or a
    symlink loop (in a folder too, when its name has an image or video extension), stdin ("-") and URLs."""
    out = Inputs()
    seen: set[Path] = set()
    wanted = IMAGE_EXTENSIONS | VIDEO_EXTENSIONS

    def add(p: Path) -> None:
        if p in seen:
            return
        seen.add(p)
        (out.videos if p.suffix.lower() in VIDEO_EXTENSIONS else out.images).append(p)

    for spec in specs:
        p = Path(spec)
        if p.is_dir():
            it = p.rglob("*") if recursive else p.glob("*")
            for f in sorted(x for x in it if not x.name.startswith(".") and x.suffix.lower() in wanted):
                if f.is_file():
                    add(f)
                elif problem := _link_problem(f):
                    out.missing.append(f"{f}: {problem}")
        elif p.exists():
            add(p)  # an explicitly named file is tried whatever its extension: a bad one gets a clear error row
        elif problem := _link_problem(p):
            out.missing.append(f"{spec}: {problem}")
        elif reason := not_an_input(str(spec)):
            out.missing.append(f"{spec}: {reason}")
        elif any(ch in str(spec) for ch in "*?["):
            matches = sorted(Path(m) for m in glob.glob(str(spec), recursive=True) if Path(m).is_file())
            if not matches:
                out.missing.append(f"{spec}: no file matches this pattern")
            for m in matches:
                add(m)
        else:
            out.missing.append(f"{spec}: file not found")
    return out
