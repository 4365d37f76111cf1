"""What predict writes: tables (terminal, CSV, JSON, JSONL), annotated images/videos and timeline plots."""
from __future__ import annotations

import json
import math
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import numpy as np
import pandas as pd

from ..io import AtomicFile, atomic_write, atomic_write_text

FORMATS = ("table", "csv", "json", "jsonl")


def _clean(v):
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
        return None
    if isinstance(v, np.generic):
        return v.item()
    return v


def records(df: pd.DataFrame) -> list[dict]:
    """Rows as plain JSON-ready dicts (NaN/NA -> null, landmarks decoded)."""
    out = []
    for row in df.to_dict(orient="records"):
        r = {k: _clean(v) for k, v in row.items()}
        if isinstance(r.get("landmarks"), str):
            r["landmarks"] = json.loads(r["landmarks"])
        out.append(r)
    return out


def render(df: pd.DataFrame, fmt: str, labels: list[str]) -> str:
    if fmt == "csv":
        return df.to_csv(index=False)
    if fmt == "json":
        return json.dumps(records(df), indent=1) + "\n"
    if fmt == "jsonl":
        return "".join(json.dumps(r) + "\n" for r in records(df))
    return table_text(df, labels)


NON_OUTPUT_COLUMNS = {"file", "frame", "time", "track", "x", "y", "w", "h", "score", "label", "landmarks", "error", "source", "kind"}


def target_columns(table, labels: list[str]) -> list[str]:
    """The continuous outputs (valence, arousal...) of a prediction table or of its column names: every column that is
    not a class, a raw_ copy (smoothing) or a fixed column; of a DataFrame, only the numeric ones."""
    cols = list(table.columns if isinstance(table, pd.DataFrame) else table)
    keep = [c for c in cols if c not in NON_OUTPUT_COLUMNS and c not in labels and not str(c).startswith("raw_")]
    if isinstance(table, pd.DataFrame):
        keep = [c for c in keep if pd.api.types.is_numeric_dtype(table[c])]
    return keep


def table_text(df: pd.DataFrame, labels: list[str], top: int = 3, video: bool | None = None, header: bool = True) -> str:
    """A compact human-readable table: one line per face with its top classes (video columns when any row has a frame)."""
    lines = []
    video = bool(df["frame"].notna().any()) if video is None else video
    if header:
        lines.append(f"{'file':<32} " + (f"{'frame':>6} {'time':>7} {'track':>5} " if video else "")
                     + f"{'face box (x,y,w,h)':<22} {'label':<9} top classes")
    for r in records(df):
        name = Path(r["file"]).name
        name = name if len(name) <= 32 else "…" + name[-31:]
        prefix = f"{name:<32} " + (f"{_fmt(r['frame'], 6)} {_fmt(r['time'], 7, 2)} {_fmt(r['track'], 5)} " if video else "")
        if r.get("error"):
            lines.append(prefix + f"error: {r['error']}")
        elif r["label"] is None:
            lines.append(prefix + "no face found")
        else:  # a face row has no scene classes and a scene row no face classes: only the row's own are ranked
            probs = sorted(((c, r[c]) for c in labels if r.get(c) is not None), key=lambda t: -t[1])[:top]
            box = "whole image" if r.get("kind") == "scene" else f"{r['x']:.0f},{r['y']:.0f},{r['w']:.0f},{r['h']:.0f}"
            values = "".join(f"  {t} {r[t]:+.2f}" for t in target_columns(df, labels) if r.get(t) is not None)
            lines.append(prefix + f"{box:<22} {r['label']:<9} " + "  ".join(f"{c} {p:.2f}" for c, p in probs) + values)
    return "\n".join(lines) + "\n"


def _fmt(v, width: int, digits: int | None = None) -> str:
    if v is None:
        return " " * (width - 1) + "-"
    return f"{v:>{width}.{digits}f}" if digits is not None else f"{v:>{width}}"


def write_table(df: pd.DataFrame, path: str | Path, fmt: str, labels: list[str]) -> Path:
    return atomic_write_text(path, render(df, fmt, labels))


class TableSink:
    """Writes result rows as they come, in any format, to a file or the terminal: memory stays flat however long a video
    or webcam session runs, and a terminal shows each frame's faces at once. A file is written beside its final name and
    renamed over it by `close()`, so it is never seen half-written; `abort()` leaves no trace."""

    def __init__(self, to_frame: Callable[[list[dict]], pd.DataFrame], labels: list[str], fmt: str,
                 path: str | Path | None = None, video: bool = False, stream: TextIO | None = None):
        self.to_frame, self.labels, self.fmt, self.video = to_frame, labels, fmt, video
        self.rows = self.faces = 0
        self._file = AtomicFile(path) if path is not None else None
        self._out = open(self._file.tmp, "w", encoding="utf-8", newline="") if self._file else (stream or sys.stdout)

    def add(self, rows: list[dict]) -> None:
        if not rows:
            return
        df = self.to_frame(rows)
        first = self.rows == 0
        if self.fmt == "csv":
            text = df.to_csv(index=False, header=first)
        elif self.fmt == "jsonl":
            text = render(df, "jsonl", self.labels)
        elif self.fmt == "json":  # the same text as json.dumps(all_records, indent=1), one record at a time
            text = ("[\n" if first else ",\n") + ",\n".join(textwrap.indent(json.dumps(r, indent=1), " ") for r in records(df))
        else:
            text = table_text(df, self.labels, video=self.video, header=first)
        if self._file is None:  # the terminal: clear any progress bar first, redraw it after
            from tqdm import tqdm

            with tqdm.external_write_mode(file=self._out):
                self._out.write(text)
                self._out.flush()
        else:
            self._out.write(text)
        self.rows += len(df)
        self.faces += int((df["label"].notna() & (df["kind"] != "scene" if "kind" in df else True)).sum())

    def close(self) -> None:
        if self.rows == 0:  # nothing came: still a valid, empty table
            empty = self.to_frame([])
            self._out.write(table_text(empty, self.labels, video=self.video) if self.fmt == "table"
                            else render(empty, self.fmt, self.labels))
        elif self.fmt == "json":
            self._out.write("\n]\n")
        self._out.flush()
        if self._file is not None:
            self._out.close()
            self._file.commit()  # on failure the file stays set, so abort() still removes the temp file
            self._file = None

    def abort(self) -> None:
        if self._file is not None:
            if not self._out.closed:
                self._out.close()
            self._file.discard()
            self._file = None


COLORS = [(230, 60, 60), (150, 90, 200), (120, 120, 120), (255, 200, 0), (80, 200, 120), (60, 120, 230), (255, 120, 20), (0, 200, 200)]


def color_for(label: str, labels: list[str]) -> tuple[int, int, int]:
    return COLORS[labels.index(label) % len(COLORS)] if label in labels else (255, 255, 255)


def _values_text(r) -> str:
    """'positive 0.82 v+0.42 a-0.10': a result's label and probability, then each target by its initial."""
    return ((f"{r.label} {r.probs[r.label]:.2f}" if r.label in r.probs else "")
            + "".join(f" {t[:1]}{v:+.2f}" for t, v in getattr(r, "targets", {}).items())).strip()


def annotate(rgb: np.ndarray, faces: list, labels: list[str], scene=None) -> np.ndarray:
    """A copy of the image with each face's box, landmarks, label and probability drawn on it; `scene` (the whole
    image's result from a scene model) is written in the top-left corner: `scene: positive 0.82 v+0.42 a-0.10`."""
    import cv2

    out = np.ascontiguousarray(rgb.copy())
    scale = max(0.4, min(out.shape[:2]) / 700)
    thick = max(1, int(round(2 * scale)))
    for f in faces:
        x, y, w, h = (int(round(v)) for v in f.box)
        color = color_for(f.label, labels)
        cv2.rectangle(out, (x, y), (x + w, y + h), color, thick)
        for px, py in (f.landmarks or []):
            cv2.circle(out, (int(px), int(py)), thick + 1, color, -1)
        text = (_values_text(f) + (f" #{f.track}" if f.track is not None else "")).strip()
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, thick)
        ty = y - 4 if y - th - base - 4 > 0 else y + h + th + 4
        cv2.rectangle(out, (x, ty - th - base), (x + tw + 4, ty + base), color, -1)
        cv2.putText(out, text, (x + 2, ty), cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, (0, 0, 0), thick, cv2.LINE_AA)
    if scene is not None:
        text = "scene: " + _values_text(scene)
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, thick)
        pad = max(2, int(round(4 * scale)))
        cv2.rectangle(out, (0, 0), (tw + 2 * pad, th + base + 2 * pad), (255, 255, 255), -1)
        cv2.putText(out, text, (pad, pad + th), cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, (0, 0, 0), thick, cv2.LINE_AA)
    return out


def save_image(rgb: np.ndarray, path: str | Path) -> Path:
    from PIL import Image

    path = Path(path)
    fmt = "PNG" if path.suffix.lower() == ".png" else "JPEG"
    return atomic_write(path, lambda p: Image.fromarray(rgb).save(p, format=fmt, quality=92))


def plot_timeline(df: pd.DataFrame, labels: list[str], path: str | Path, title: str = "",
                  targets: list[str] | None = None) -> Path | None:
    """Class probabilities over time, one panel per track (and one for numeric targets such as valence/arousal when
    the table has them); with smoothing (raw_<class> columns) the per-frame values are drawn faint under the smoothed
    ones. None when the video had no face."""
    from ..plotting import new_figure

    faces = df[df["label"].notna()]
    if faces.empty:
        return None
    targets = [c for c in (target_columns(df.columns, labels) if targets is None else targets)
               if c in faces and pd.to_numeric(faces[c], errors="coerce").notna().any()]
    raw = all(f"raw_{c}" in faces for c in labels) and faces[[f"raw_{c}" for c in labels]].notna().any().any()
    tracks = sorted(faces["track"].dropna().unique().tolist())
    tracks = tracks[:8]  # more panels become unreadable; the table has them all
    per = 2 if targets else 1
    fig = new_figure(figsize=(10, 2.0 * per * len(tracks) + 1.0), layout="constrained")
    axes = fig.subplots(per * len(tracks), 1, sharex=True, squeeze=False)[:, 0]
    for k, t in enumerate(tracks):
        sub = faces[faces["track"] == t].sort_values("time")
        ax = axes[per * k]
        for i, c in enumerate(labels):
            color = np.array(COLORS[i % len(COLORS)]) / 255
            if raw:
                ax.plot(sub["time"], sub[f"raw_{c}"], color=color, lw=0.8, alpha=0.3)
            ax.plot(sub["time"], sub[c], label=c, color=color, lw=1.4)
        ax.set_ylim(0, 1)
        ax.set_ylabel(f"track {t}")
        ax.grid(alpha=0.3)
        if targets:
            tax = axes[per * k + 1]
            for j, c in enumerate(targets):
                tax.plot(sub["time"], pd.to_numeric(sub[c], errors="coerce"), label=c, color=f"C{j}", lw=1.4)
            tax.axhline(0, color="0.5", lw=0.6)
            tax.set_ylabel(f"track {t}")
            tax.grid(alpha=0.3)
            tax.legend(fontsize=8, loc="upper right")
    # below the plots: above them it would sit on the title
    fig.legend(*axes[0].get_legend_handles_labels(), ncol=len(labels), fontsize=8, loc="outside lower center")
    axes[-1].set_xlabel("time (s)" + ("   (faint: per frame, solid: smoothed)" if raw else ""))
    if title:
        fig.suptitle(title, fontsize=10)
    path = Path(path)
    atomic_write(path, lambda p: fig.savefig(p, dpi=110, format="png"))
    return path


# ---- per-video summaries -------------------------------------------------------------------------------------------
SUMMARY_KIND = "emotune-video-summary/1"


def frame_durations(times: pd.Series) -> pd.Series:
    """Seconds each processed frame stands for: until the next processed frame (the last one: the median interval;
    a single frame: 0). Computed from every frame's time, face or not, so a track's gaps do not stretch its frames."""
    t = np.unique(pd.to_numeric(times, errors="coerce").dropna().to_numpy(np.float64))
    d = np.diff(t)
    dur = np.append(d, np.median(d) if len(d) else 0.0)
    return pd.Series(dur, index=t)


def summarise_video(df: pd.DataFrame, labels: list[str], targets: list[str] | None = None) -> pd.DataFrame:
    """One row per (video, track): when it was seen (first/last time, seconds, frames), its dominant emotion, the time
    share of each emotion (by `label`: the smoothed one when the table is smoothed) and the time-weighted mean of every
    numeric target (valence, arousal, ...). A video without any face gets one row with frames 0."""
    targets = target_columns(df.columns, labels) if targets is None else targets
    cols = (["file", "track", "first_time", "last_time", "seconds", "frames", "label"] + [f"share_{c}" for c in labels]
            + [f"mean_{c}" for c in targets])
    rows = []
    videos = df[df["frame"].notna()] if "frame" in df else df
    for file, video in videos.groupby("file", sort=False):
        dur = frame_durations(video["time"])
        faces = video[video["label"].notna()]
        if faces.empty:
            rows.append({"file": file, "track": None, "frames": 0, "seconds": 0.0})
            continue
        for track, sub in faces.groupby("track", sort=True, dropna=False):
            w = sub["time"].map(dur).fillna(0.0).to_numpy(np.float64)
            wn = w / w.sum() if w.sum() > 0 else np.full(len(w), 1 / len(w))
            share = {c: float(wn[(sub["label"] == c).to_numpy()].sum()) for c in labels}
            row = {"file": file, "track": None if pd.isna(track) else int(track), "first_time": float(sub["time"].min()),
                   "last_time": float(sub["time"].max()), "seconds": round(float(w.sum()), 4), "frames": len(sub),
                   "label": max(labels, key=lambda c: share[c])}
            row.update({f"share_{c}": round(share[c], 4) for c in labels})
            for c in targets:
                v = pd.to_numeric(sub[c], errors="coerce").to_numpy(np.float64)
                ok = np.isfinite(v)
                if ok.any():
                    mean = np.average(v[ok], weights=wn[ok]) if wn[ok].sum() > 0 else v[ok].mean()
                    row[f"mean_{c}"] = round(float(mean), 4)
            rows.append(row)
    out = pd.DataFrame(rows, columns=cols)
    out["track"] = out["track"].astype("Int64")
    out["frames"] = out["frames"].astype("Int64")
    return out


def write_summary(summary: pd.DataFrame, path: str | Path, labels: list[str], smoothing: str | None = None) -> Path:
    """The summary as CSV, or as JSON (with its kind, the labels and the smoother) when the name ends in .json."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        return atomic_write_text(path, json.dumps({"kind": SUMMARY_KIND, "labels": labels, "smoothing": smoothing,
                                                   "tracks": records(summary)}, indent=1) + "\n")
    return atomic_write_text(path, summary.to_csv(index=False))
