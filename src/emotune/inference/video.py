"""Videos as a stream of RGB frames (OpenCV): memory stays flat however long the video is; broken frames are
skipped and counted rather than ending the video early."""
from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import BadInputError
from ..io import temp_name

VIDEO_EXTENSIONS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"}


@dataclass
class VideoInfo:
    path: str
    fps: float
    frames: int  # as the container reports it (may be 0 or approximate)
    width: int
    height: int
    broken_frames: int = 0
    decoded_frames: int = 0
    problems: list[str] = field(default_factory=list)


def quiet_ffmpeg() -> None:
    """Keep FFmpeg's per-packet complaints ("partial file", "header damaged", one line per broken frame) off the
    terminal: `iter_frames` counts broken frames and predict says so once per video. OpenCV reads
    OPENCV_FFMPEG_LOGLEVEL once, when it first opens a video, so this runs before every open (it is a no-op after the
    first) and keeps a level the user set. AV_LOG_FATAL (8): only errors that end the program are shown."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "8")


def open_video(source: str | Path | int):
    """An opened cv2.VideoCapture and its VideoInfo; a clear BadInputError when it cannot be read."""
    quiet_ffmpeg()
    import cv2

    where = f"webcam {source}" if isinstance(source, int) else str(source)
    if not isinstance(source, int):
        p = Path(source)
        if not p.is_file():
            raise BadInputError(p, "file not found")
        if p.stat().st_size == 0:
            raise BadInputError(p, "empty file (0 bytes)")
    cap = cv2.VideoCapture(source if isinstance(source, int) else str(source))
    if not cap.isOpened():
        cap.release()
        raise BadInputError(where, "cannot open as a video (unknown container/codec or no such camera)")
    fps = cap.get(cv2.CAP_PROP_FPS)
    fps = fps if fps and np.isfinite(fps) and 0 < fps < 1000 else 30.0
    info = VideoInfo(where, float(fps), max(int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0), 0),
                     int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0))
    return cap, info


def frame_step(fps: float, every: int = 1, target_fps: float | None = None) -> int:
    """Process every `step`-th frame: `every` frames, or as close to `target_fps` as whole frames allow."""
    if target_fps:
        return max(1, int(round(fps / target_fps)))
    return max(1, int(every))


def iter_frames(cap, info: VideoInfo, step: int = 1, max_failures: int = 25) -> Iterator[tuple[int, np.ndarray]]:
    """(frame index, RGB frame) for every `step`-th frame; `iter_timed_frames` says what happens to broken ones."""
    for index, _, rgb in iter_timed_frames(cap, info, step, max_failures):
        yield index, rgb


def iter_timed_frames(cap, info: VideoInfo, step: int = 1, max_failures: int = 25) -> Iterator[tuple[int, float, np.ndarray]]:
    """(frame index, time in seconds, RGB frame) for every `step`-th frame. Unsampled frames are only grabbed.

    Times are the decoder's (the frame's presentation time), so variable-frame-rate videos get true times; where it
    gives none they are index / fps, and a time that does not move forward is put one frame interval after the
    previous one (counted in `info.problems`): later steps (smoothing, summaries) can rely on increasing times.

    A frame that fails to decode is skipped and decoding goes on; failures count as broken frames once a later frame
    decodes (failures at the very end are just a container that over-reports its length). `max_failures` failures in
    a row end the video, recorded in `info.problems` when the container promised clearly more frames (more than
    `max(5, 5%)` of its count: a truncated file), however short the video.
    """
    import cv2

    index, failures = 0, 0
    clock = FrameClock(info.fps)
    try:
        while failures <= max_failures:
            sampled = index % step == 0
            if sampled:
                ok, frame = cap.read()
                ok = ok and frame is not None
            else:
                ok, frame = cap.grab(), None
            index += 1
            if not ok:
                failures += 1
                continue
            info.broken_frames += failures
            failures = 0
            if sampled:
                info.decoded_frames += 1
                t = clock.time(index - 1, _decoder_ms(cap))
                yield index - 1, t, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        last_good = index - failures
        if info.frames and last_good < info.frames - max(5, info.frames // 20):
            info.problems.append(f"stopped after frame {last_good - 1} of the {info.frames} the container announces "
                                 "(truncated or unreadable from there on)")
        if clock.repaired:
            info.problems.append(f"{clock.repaired} frame time(s) did not increase (non-monotonic timestamps): "
                                 "each placed one frame interval after the previous frame")
    finally:
        cap.release()


def _decoder_ms(cap) -> float | None:
    import cv2

    try:
        return float(cap.get(cv2.CAP_PROP_POS_MSEC))
    except (AttributeError, TypeError, ValueError):  # a capture that cannot say
        return None


@dataclass
class FrameClock:
    """Frame times in seconds from the decoder's milliseconds, forced to increase."""

    fps: float
    last: float | None = None
    repaired: int = 0

    def time(self, index: int, ms: float | None) -> float:
        t = ms / 1000 if ms is not None and np.isfinite(ms) and ms >= 0 and (ms > 0 or index == 0) else index / self.fps
        t = round(t, 4)
        if self.last is not None and not t > self.last:
            t = round(self.last + 1 / self.fps, 4)
            self.repaired += 1
        self.last = t
        return t


class VideoWriter:
    """An annotated video written to a temporary file (`.<stem>.emotune-<pid>.partial.mp4`: if this process is killed,
    `emotune.io.remove_stale_temps` recognises it) and renamed into place when closed without error."""

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int]):
        quiet_ffmpeg()
        import cv2

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(f"{temp_name(self.path.stem)}.partial{self.path.suffix}")
        self._w = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
        if not self._w.isOpened():
            self._w.release()
            self.tmp.unlink(missing_ok=True)
            raise BadInputError(self.path, "cannot open a video writer (codec mp4v) here")

    def write(self, rgb: np.ndarray) -> None:
        import cv2

        self._w.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))

    def close(self, ok: bool = True) -> None:
        self._w.release()
        try:
            if ok:
                os.replace(self.tmp, self.path)
        finally:
            self.tmp.unlink(missing_ok=True)  # gone already after a successful rename
