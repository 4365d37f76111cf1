"""Hardening of `emotune predict`, the inference package and its I/O (issue 13): every test here failed before the fix.

Models are tiny random-init timm networks (32 px); images and videos are synthetic (no shared data needed); ONNX
exports go to a temporary EMOTUNE_CACHE. Subprocess tests (broken pipe, FFmpeg noise) start a fresh interpreter.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image, features

import emotune
from emotune import cli
from emotune.data.sources import IMAGE_EXTENSIONS
from emotune.errors import OutputError
from emotune.inference import Recognizer, collect_inputs
from emotune.inference.backend import cache_dir, onnx_cache_path
from emotune.io import AtomicFile, check_writable_dir, check_writable_file, remove_stale_temps
from emotune.models import ModelCard, create_model, save_checkpoint
from emotune.taxonomy import BASIC7

LABELS = list(BASIC7)
SIZE = 32

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")



def _tiny_checkpoint(folder: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = create_model("test_efficientnet", num_classes=len(LABELS), pretrained=None, img_size=SIZE, in_chans=1)
    card = ModelCard(backbone="test_efficientnet", labels=LABELS, input_size=SIZE, mean=[0.5], std=[0.25],
                     channels="grayscale", in_chans=1)
    return save_checkpoint(folder / "gray", model.eval(), card)


@pytest.fixture(scope="module")
def card(tmp_path_factory) -> Path:
    return _tiny_checkpoint(tmp_path_factory.mktemp("models"))


def _noise(path: Path, w: int = 64, h: int = 48, seed: int = 0) -> Path:
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def _video(path: Path, n: int = 12, size=(96, 80), fps: float = 10.0) -> Path:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    rng = np.random.default_rng(0)
    for _ in range(n):
        w.write(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    w.release()
    return path


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    rc = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "OPENCV_FFMPEG_LOGLEVEL"}
    # the subprocess imports the same emotune as this test process
    env["PYTHONPATH"] = os.pathsep.join([str(Path(emotune.__file__).parents[1]), env.get("PYTHONPATH", "")])
    return env


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


@pytest.fixture
def no_model(monkeypatch):
    """Fail the test if predict gets as far as loading a model."""
    import emotune.inference.recognizer as recognizer

    def refuse(*a, **k):
        raise AssertionError("a model was loaded before the output paths were checked")

    monkeypatch.setattr(recognizer, "Recognizer", refuse)


# ----------------------------------------------------------------------- 1. the partial annotated video is discarded

@pytest.mark.parametrize("exc", [RuntimeError("disk full"), KeyboardInterrupt(), SystemExit(143)],
                         ids=["error", "ctrl-c", "sigterm"])
def test_failed_video_run_leaves_no_partial_video_or_output(card, tmp_path, capsys, monkeypatch, exc):
    video = _video(tmp_path / "clip.mp4")
    original = Recognizer.iter_video

    def dies_after_two_frames(self, *a, **k):
        for i, item in enumerate(original(self, *a, **k)):
            if i == 2:
                raise exc
            yield item

    monkeypatch.setattr(Recognizer, "iter_video", dies_after_two_frames)
    ann, out = tmp_path / "ann", tmp_path / "res" / "out.csv"
    try:
        rc = cli.main(["predict", str(video), "--model", str(card), "--detector", "none", "--annotate", str(ann),
                       "--output", str(out), "--no-progress"])
    except (RuntimeError, SystemExit) as raised:
        assert raised is exc
    else:
        assert isinstance(exc, KeyboardInterrupt) and rc == 130
    assert [p.name for p in ann.iterdir()] == []  # no .partial.mp4, no annotated video
    assert [p.name for p in out.parent.iterdir()] == []


# ----------------------------------------------------------------------- 2. ONNX cache names and keys

def test_onnx_cache_path_stays_in_the_cache_whatever_the_backbone_says(emotune_cache):
    onnx_dir = (cache_dir() / "onnx").resolve()
    for backbone in ("../../../../tmp/evil", "/etc/cron.d/x", "a/../../b", "..", ".hidden", "x" * 300, "resnet+vit"):
        card = ModelCard(backbone=backbone, labels=LABELS, input_size=SIZE, mean=[0.5], std=[0.25], sha256="ab" * 32)
        path = onnx_cache_path(card)
        assert path.resolve().parent == onnx_dir, backbone
        assert not path.name.startswith(".") and "/" not in path.name


def test_a_card_with_another_input_size_gets_its_own_onnx_export(card, tmp_path, emotune_cache):
    first = Recognizer(card, device="cpu", backend="onnx", detector="none")
    assert first.backend(np.zeros((1, 1, SIZE, SIZE), np.float32)).shape == (1, len(LABELS))
    # the same tensors, saved with another input size (a global-pool network runs at any size; the card is bound to
    # its weights file, so the other size is a new checkpoint, not an edited card)
    from emotune.models import load_checkpoint, save_checkpoint

    model, c = load_checkpoint(card)
    c.input_size = 48
    card48 = save_checkpoint(tmp_path / card.stem, model, c)
    c32, c48 = (ModelCard.from_dict(json.loads(p.read_text())) for p in (card, card48))
    assert onnx_cache_path(c32) != onnx_cache_path(c48)
    second = Recognizer(card48, device="cpu", backend="onnx", detector="none")
    probs = second.backend(np.zeros((2, 1, 48, 48), np.float32))  # the stale 32 px graph would refuse 48 px input
    assert probs.shape == (2, len(LABELS)) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert onnx_cache_path(c48).is_file()


# ----------------------------------------------------------------------- 3. piping into head

@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_piping_into_a_reader_that_stops_early_is_quiet(card, tmp_path_factory, emotune_cache, fmt):
    folder = tmp_path_factory.mktemp(f"many_{fmt}")
    for i in range(900):  # far more rows than a pipe buffer holds: the writer must meet the closed pipe
        Image.new("L", (8, 8), i % 256).save(folder / f"{i:04d}.png")
    proc = subprocess.Popen([sys.executable, "-m", "emotune.cli", "predict", str(folder), "--model", str(card),
                             "--detector", "none", "--format", fmt, "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())
    for _ in range(3):  # `| head -3`
        assert proc.stdout.readline()
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    rc = proc.wait(timeout=300)
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr
    assert rc == 141, stderr


# ----------------------------------------------------------------------- 4. output paths checked before any work

def test_writable_checks(tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(OutputError, match="is a folder"):
        check_writable_file(tmp_path, "--output")
    with pytest.raises(OutputError, match=r"--output .*file.txt/x.csv: cannot be created: .*file.txt is not a folder"):
        check_writable_file(f / "x.csv", "--output")
    with pytest.raises(OutputError, match="not a regular file"):
        check_writable_file("/dev/null", "--output")
    with pytest.raises(OutputError, match="is a file, not a folder"):
        check_writable_dir(f, "--annotate")
    with pytest.raises(OutputError, match=r"--annotate /proc/ann: cannot create files in /proc"):
        check_writable_dir("/proc/ann", "--annotate")
    assert check_writable_file(tmp_path / "new" / "deeper" / "x.csv") == tmp_path / "new" / "deeper" / "x.csv"
    check_writable_dir(tmp_path / "new2" / "sub")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]  # the checks create nothing


@pytest.mark.parametrize("opts, fragment", [
    (["--output", "{tmp}"], "--output {tmp}: is a folder"),
    (["--output", "/proc/x.csv"], "--output /proc/x.csv: cannot create files in /proc"),
    (["--annotate", "/proc/ann"], "--annotate /proc/ann: cannot create files in /proc"),
    (["--timeline", "/proc/t"], "--timeline /proc/t: cannot create files in /proc"),
    (["--output", "{tmp}/a.csv/b.csv"], "is not a folder"),
], ids=["folder", "proc-file", "proc-annotate", "proc-timeline", "under-a-file"])
def test_predict_refuses_unwritable_outputs_before_loading_a_model(tmp_path, capsys, no_model, opts, fragment):
    img = _noise(tmp_path / "a.png")
    (tmp_path / "a.csv").write_text("")
    opts = [o.format(tmp=tmp_path) for o in opts]
    rc, out, err = run_cli(capsys, "predict", img, *opts, "--format", "csv", "--no-progress")
    assert rc == 2 and fragment.format(tmp=tmp_path) in err and err.count("\n") == 1, err


def test_export_refuses_an_unwritable_output_before_exporting(card, capsys, monkeypatch):
    import emotune.inference.export as export

    monkeypatch.setattr(export, "load_checkpoint", lambda *a: (_ for _ in ()).throw(AssertionError("loaded")))
    rc, _, err = run_cli(capsys, "export", "--model", card, "--output", "/proc/x.onnx")
    assert rc == 2 and "--output /proc/x.onnx: cannot create files in /proc" in err


# ----------------------------------------------------------------------- 5. symlinks

def test_broken_symlinks_and_loops_are_reported_by_name(tmp_path, card, capsys):
    good = _noise(tmp_path / "good.png")
    (tmp_path / "dangling.jpg").symlink_to(tmp_path / "gone.jpg")
    (tmp_path / "loop.jpg").symlink_to(tmp_path / "loop.jpg")
    (tmp_path / "a.png").symlink_to(tmp_path / "b.png")
    (tmp_path / "b.png").symlink_to(tmp_path / "a.png")
    inputs = collect_inputs([tmp_path])
    assert inputs.images == [good]
    msgs = dict(m.split(": ", 1) for m in inputs.missing)
    assert msgs[str(tmp_path / "dangling.jpg")].startswith("broken symlink")
    assert msgs[str(tmp_path / "loop.jpg")].startswith("symlink loop")
    assert msgs[str(tmp_path / "a.png")].startswith("symlink loop")
    direct = collect_inputs([tmp_path / "loop.jpg", tmp_path / "dangling.jpg"]).missing
    assert "symlink loop" in direct[0] and "broken symlink" in direct[1]
    rc, _, err = run_cli(capsys, "predict", tmp_path, "--model", card, "--detector", "none", "--format", "csv", "--no-progress")
    assert rc == 0 and f"skipped {tmp_path / 'dangling.jpg'}: broken symlink" in err and "symlink loop" in err


# ----------------------------------------------------------------------- 6. leftovers of killed runs

def test_stale_temp_files_of_dead_writers_are_removed_live_ones_kept(card, tmp_path, capsys):
    img = _noise(tmp_path / "in.png")
    out_dir, ann = tmp_path / "out", tmp_path / "ann"
    out_dir.mkdir()
    ann.mkdir()
    dead = _dead_pid()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stale = [out_dir / f".out.csv.emotune-{dead}-k3j2x9.tmp", out_dir / f".older.csv.emotune-{dead}-aaaa.tmp",
                 ann / f".clip_emotune.emotune-{dead}.partial.mp4"]
        kept = [out_dir / f".out.csv.emotune-{live.pid}-zz81q0.tmp", ann / f".clip_emotune.emotune-{live.pid}.partial.mp4",
                out_dir / ".notes.txt", out_dir / ".out.csv.emotune-notapid.tmp"]
        for p in stale + kept:
            p.write_text("left behind")
        rc, _, err = run_cli(capsys, "predict", img, "--model", card, "--detector", "none", "--output", out_dir / "out.csv",
                             "--annotate", ann, "--no-progress")
        assert rc == 0, err
        assert not [p for p in stale if p.exists()]
        assert all(p.exists() for p in kept)
        assert (out_dir / "out.csv").is_file()
    finally:
        live.kill()
        live.wait()
    # the names carry the writer's PID, so that the next run can tell
    f = AtomicFile(tmp_path / "x.csv")
    assert f.tmp.name.startswith(f".x.csv.emotune-{os.getpid()}-") and f.tmp.name.endswith(".tmp")
    assert remove_stale_temps(tmp_path) == []  # our own, live
    f.discard()


# ----------------------------------------------------------------------- 7. stdin and URLs

@pytest.mark.parametrize("spec, fragment", [("-", "stdin"), ("https://example.com/face.jpg", "URLs are not inputs"),
                                            ("s3://bucket/face.jpg", "URLs are not inputs")])
def test_stdin_and_urls_are_refused_in_one_line(tmp_path, capsys, no_model, spec, fragment):
    rc, _, err = run_cli(capsys, "predict", spec, "--format", "csv")
    assert rc == 2 and fragment in err and err.count("\n") == 1, err
    assert fragment.split()[0] in collect_inputs([spec]).missing[0]


# ----------------------------------------------------------------------- 8. OpenCV / memory failure on one item

@pytest.mark.parametrize("failure", [cv2.error("OpenCV(4.x) resize.cpp:1: error: (-4:Insufficient memory) Failed to "
                                               "allocate 8589934592 bytes in function 'OutOfMemoryError'\n"),
                                     MemoryError()], ids=["cv2.error", "MemoryError"])
def test_an_opencv_or_memory_failure_on_one_image_is_an_error_row(card, tmp_path, capsys, monkeypatch, failure):
    from emotune.faces.detectors import Detector

    for i in range(3):
        _noise(tmp_path / f"ok{i}.png", seed=i)
    _noise(tmp_path / "huge.png", w=77, h=41)
    original = Detector.detect

    def detect(self, rgb, max_side=None):
        if rgb.shape[:2] == (41, 77):
            raise failure
        return original(self, rgb, max_side)

    monkeypatch.setattr(Detector, "detect", detect)
    out = tmp_path / "res.csv"
    rc, _, err = run_cli(capsys, "predict", tmp_path, "--model", card, "--output", out, "--no-progress")
    assert rc == 0, err
    df = pd.read_csv(out)
    assert len(df) == 4
    bad = df[df["file"] == str(tmp_path / "huge.png")]
    assert len(bad) == 1 and isinstance(bad["error"].iloc[0], str)
    assert df[df["file"] != str(tmp_path / "huge.png")]["error"].isna().all()
    assert f"skipped {tmp_path / 'huge.png'}: " in err and "Traceback" not in err
    assert ("Insufficient memory" if isinstance(failure, cv2.error) else "out of memory") in err
    assert "\n" not in bad["error"].iloc[0]


def test_an_opencv_failure_in_a_video_is_an_error_row(card, tmp_path, capsys, monkeypatch):
    from emotune.faces import Face
    from emotune.faces.detectors import WholeImage

    video, img = _video(tmp_path / "clip.mp4"), _noise(tmp_path / "a.png")

    def detect(self, rgb, max_side=None):
        if rgb.shape[:2] == (80, 96):
            raise cv2.error("OpenCV(4.x) x.cpp:1: error: (-4:Insufficient memory) Failed to allocate\n")
        return [Face((0.0, 0.0, float(rgb.shape[1]), float(rgb.shape[0])), 1.0, None)]

    monkeypatch.setattr(WholeImage, "detect", detect)
    out, ann = tmp_path / "res.csv", tmp_path / "ann"
    rc, _, err = run_cli(capsys, "predict", img, video, "--model", card, "--detector", "none", "--output", out,
                         "--annotate", ann, "--no-progress")
    assert rc == 0 and f"skipped {video}: OpenCV failed" in err, err
    df = pd.read_csv(out)
    assert df[df["file"] == str(video)]["error"].notna().all()
    assert not [p for p in ann.iterdir() if ".partial" in p.name or p.suffix == ".mp4"]


# ----------------------------------------------------------------------- 9. the pixel limit is an option

def test_max_pixels_option(card, tmp_path, capsys, monkeypatch):
    img = _noise(tmp_path / "big.png", w=40, h=30)
    rc, out, err = run_cli(capsys, "predict", img, "--model", card, "--detector", "none", "--format", "csv",
                           "--max-pixels", 1000, "--no-progress")
    assert rc == 1 and "too large (40x30" in err and "--max-pixels" in err
    rc, out, err = run_cli(capsys, "predict", img, "--model", card, "--detector", "none", "--format", "csv",
                           "--max-pixels", 0, "--no-progress")
    assert rc == 0 and "too large" not in err
    assert run_cli(capsys, "predict", img, "--max-pixels", -5, "--format", "csv")[0] == 2
    monkeypatch.setenv("EMOTUNE_MAX_PIXELS", "1000")
    rc, out, err = run_cli(capsys, "predict", img, "--model", card, "--detector", "none", "--format", "csv", "--no-progress")
    assert rc == 1 and "too large (40x30" in err
    monkeypatch.setenv("EMOTUNE_MAX_PIXELS", "lots")
    rc, out, err = run_cli(capsys, "predict", img, "--model", card, "--format", "csv")
    assert rc == 2 and "EMOTUNE_MAX_PIXELS" in err


# ----------------------------------------------------------------------- 10. every format Pillow opens is collected

def test_image_extensions_follow_what_pillow_can_open(tmp_path):
    Image.init()
    registered = Image.registered_extensions()
    assert IMAGE_EXTENSIONS <= set(registered)
    assert {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"} <= IMAGE_EXTENSIONS
    assert not IMAGE_EXTENSIONS & {".mpg", ".mpeg", ".h5", ".wmf", ".pdf", ".eps"}
    assert (".heic" in IMAGE_EXTENSIONS) == (".heic" in registered)
    if not features.check("avif"):
        pytest.skip("this Pillow has no AVIF support")
    assert ".avif" in IMAGE_EXTENSIONS
    p = tmp_path / "photo.avif"
    Image.new("RGB", (16, 16), (200, 10, 10)).save(p)
    assert collect_inputs([tmp_path]).images == [p]


# ----------------------------------------------------------------------- 11. FFmpeg noise on broken videos

def test_broken_video_does_not_flood_the_terminal(card, tmp_path, emotune_cache):
    good = _video(tmp_path / "good.mp4", n=30).read_bytes()
    third = len(good) // 3
    rng = np.random.default_rng(1)
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(good[:third] + rng.integers(0, 256, third, dtype=np.uint8).tobytes() + good[2 * third:])
    res = subprocess.run([sys.executable, "-m", "emotune.cli", "predict", str(bad), "--model", str(card), "--detector",
                          "none", "--format", "csv", "--no-progress"], capture_output=True, text=True, env=_env(), timeout=300)
    ffmpeg = [ln for ln in res.stderr.splitlines() if " @ 0x" in ln]
    assert not ffmpeg, res.stderr
    assert res.returncode == 0 and res.stderr.count(f"emotune: {bad}: ") == 1 and "unreadable frame(s) skipped" in res.stderr
