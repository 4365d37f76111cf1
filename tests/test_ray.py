"""`emotune predict --engine ray` on a local Ray with 2 CPUs (one per module): the same rows as plain predict on the
same folder, a resumed run, a bad file among good ones, manifests. Skips, saying why, without Ray."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

ray = pytest.importorskip("ray", reason="the Ray engine needs the ray extra (pip install 'emotune[ray]')")
pytest.importorskip("pyarrow", reason="Parquet shards need pyarrow (pip install 'emotune[ray]')")

from emotune.batch.ray_engine import plan_shards, read_manifest, read_shards  # noqa: E402
from emotune.cli import main  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Five faces (the bundled photo, mirrored, rotated, small, grey), a face-less image and a broken JPEG."""
    import matplotlib.cbook as cbook

    d = tmp_path_factory.mktemp("ray_images")
    src = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    grace = Image.open(src).convert("RGB")
    shutil.copy(src, d / "a_grace.jpg")
    grace.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(d / "b_mirror.jpg")
    grace.rotate(8).save(d / "c_rotated.png")
    grace.resize((256, 300)).save(d / "d_small.jpg")
    grace.convert("L").save(d / "e_grey.jpg")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(d / "f_noise.png")
    (d / "sub").mkdir()
    (d / "sub" / "g_broken.jpg").write_bytes(src and Path(src).read_bytes()[:2500])
    return d


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values(["file", "x"], na_position="first").reset_index(drop=True)


def _ray(args: list[str]) -> int:
    return main(["predict", *args, "--engine", "ray", "--no-progress"])


def test_same_rows_as_plain_predict_and_a_bad_file(folder, tmp_path, capsys):
    plain_csv = tmp_path / "plain.csv"
    assert main(["predict", str(folder), "-o", str(plain_csv), "--no-progress"]) == 0
    out = tmp_path / "shards"
    assert _ray([str(folder), "--workers", "2", "--shard-size", "3", "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "2 actor(s) x 1 thread(s)" in err and "1 input(s) could not be processed, 6 could" in err
    shards = sorted(p.name for p in out.glob("*.parquet"))
    assert len(shards) == 3 and all(s.startswith("images-") for s in shards)  # 7 files in shards of 3
    plain, got = _sorted(pd.read_csv(plain_csv)), _sorted(read_shards(out))
    assert list(got.columns) == list(plain.columns)  # the same columns as `emotune predict`
    assert got["file"].tolist() == plain["file"].tolist() and len(got) == 7
    assert got["label"].fillna("-").tolist() == plain["label"].fillna("-").tolist()
    num = ["x", "y", "w", "h", "score", "angry", "happy", "neutral", "sad", "surprise"]
    assert np.allclose(got[num].to_numpy(float), plain[num].to_numpy(float), atol=2e-4, equal_nan=True)
    # the broken file is a row with its error; the rest of its shard was computed
    bad = got[got["file"].str.endswith("g_broken.jpg")].iloc[0]
    assert "truncated" in bad["error"] and pd.isna(bad["label"])
    assert got["label"].notna().sum() == 5 and got[got["file"].str.endswith("f_noise.png")]["label"].isna().all()


def test_rerun_skips_finished_shards_and_resumes(folder, tmp_path, capsys):
    out = tmp_path / "shards"
    args = [str(folder), "--workers", "1", "--shard-size", "4", "-o", str(out)]
    assert _ray(args) == 0
    first = _sorted(read_shards(out))
    shards = sorted(out.glob("*.parquet"))
    assert len(shards) == 2
    kept, lost = shards
    before = kept.stat().st_mtime_ns
    lost.unlink()  # as if the run had been killed before this shard was written
    capsys.readouterr()
    assert _ray(args) == 0
    err = capsys.readouterr().err
    assert "1 of 2 shard(s) already done" in err and "1 shard(s) on Ray" in err
    assert lost.is_file() and kept.stat().st_mtime_ns == before  # the finished shard was not recomputed
    pd.testing.assert_frame_equal(_sorted(read_shards(out)), first)
    assert _ray(args) == 0
    assert "nothing left to do" in capsys.readouterr().err
    # another plan in the same folder is refused, in one line, before any work
    assert _ray([str(folder), "--shard-size", "2", "-o", str(out)]) == 2
    assert "holds shards of another run (different shard_size, shards)" in capsys.readouterr().err


def test_manifest_and_refused_options(folder, tmp_path, capsys):
    manifest = tmp_path / "list.txt"
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 and then nothing")  # a video is a shard of its own
    manifest.write_text(f"# two images and a broken video\n{folder / 'a_grace.jpg'}\n\n{folder / 'f_noise.png'}\n"
                        f"{tmp_path / 'gone.jpg'}\nbroken.mp4\n")
    assert read_manifest(manifest)[0] == str(folder / "a_grace.jpg")
    csv = tmp_path / "list.csv"
    pd.DataFrame({"path": ["x.jpg"]}).to_csv(csv, index=False)
    assert read_manifest(csv) == [str(tmp_path / "x.jpg")]
    out = tmp_path / "m"
    assert _ray([str(manifest), "--workers", "1", "-o", str(out)]) == 0
    got = _sorted(read_shards(out))
    assert sorted(Path(f).name for f in got["file"]) == ["a_grace.jpg", "broken.mp4", "f_noise.png"]
    assert got["label"].notna().sum() == 1 and len(list(out.glob("video-*-broken.parquet"))) == 1
    assert got[got["file"].str.endswith("broken.mp4")]["error"].notna().all()
    assert "gone.jpg: file not found" in capsys.readouterr().err
    for extra, word in [(["--annotate", str(tmp_path / "ann")], "--annotate"), (["--format", "csv"], "--format"),
                        ([], "--output DIR")]:
        cmd = [str(folder), *extra] + (["-o", str(tmp_path / "x")] if extra else [])
        assert _ray(cmd) == 2
        assert word in capsys.readouterr().err


def test_plan_shards_is_stable():
    imgs = [f"/d/{i}.jpg" for i in range(5)]
    a, b = plan_shards(imgs, ["/v/clip one.mp4"], 2), plan_shards(imgs, ["/v/clip one.mp4"], 2)
    assert [s.name for s in a] == [s.name for s in b] and len(a) == 4
    assert a[-1].kind == "video" and a[-1].name.endswith("clip_one.parquet") and a[0].files == ("/d/0.jpg", "/d/1.jpg")
    assert plan_shards(imgs[:4], [], 2)[1].name != plan_shards(imgs[:3] + ["/d/9.jpg"], [], 2)[1].name


@pytest.mark.shared
def test_a_video_is_one_task_with_the_same_rows_as_plain_predict(tmp_path):
    video = Path(__file__).resolve().parents[1].parent / "shared" / "videos" / "single_face.mp4"
    if not video.is_file():
        pytest.skip(f"needs {video} (absent on this machine)")
    plain_csv = tmp_path / "plain.csv"
    assert main(["predict", str(video), "--every", "12", "-o", str(plain_csv), "--no-progress"]) == 0
    out = tmp_path / "v"
    assert _ray([str(video), "--every", "12", "--workers", "1", "-o", str(out)]) == 0
    (shard,) = out.glob("*.parquet")
    assert shard.name.startswith("video-") and shard.name.endswith("single_face.parquet")
    plain, got = pd.read_csv(plain_csv), read_shards(out)
    assert got["frame"].tolist() == plain["frame"].tolist() and got["track"].tolist() == plain["track"].tolist()
    assert got["label"].fillna("-").tolist() == plain["label"].fillna("-").tolist()
    assert np.allclose(got["happy"].to_numpy(float), plain["happy"].to_numpy(float), atol=2e-4, equal_nan=True)
