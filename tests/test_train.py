"""Training engine on small synthetic data: strategies, checkpoints, resume after kill -9, reports, config errors."""
from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from emotune.data.synthetic import make_synthetic_dataset
from emotune.errors import ConfigError, LabelError
from emotune.models import load_checkpoint
from emotune.train import make_config, train
from emotune.data.transforms import AugmentConfig, eval_transform, train_transform
from emotune.train.engine import (batch_mixer, build_data, class_weights, build_scheduler, layer_groups, make_criterion, make_loaders,
                                  set_trainable)

BASE = {"backbone": "mobilenetv2", "img_size": 32, "batch_size": 16, "workers": 0, "progress": False, "val_fraction": 0.25}


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    return make_synthetic_dataset(tmp_path_factory.mktemp("faces"), per_class=16, size=40, seed=1)


def cfg(tmp_path: Path, data: Path, **kw):
    return make_config({**BASE, "data": str(data), "out": str(tmp_path / "run"), **kw})


def read_log(run: Path) -> list[dict]:
    with open(run / "log.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_run_directory_contents_and_reload(tmp_path, faces):
    res = train(cfg(tmp_path, faces, epochs=2, lr=3e-3))
    run = res.run_dir
    for name in ("config.yaml", "log.csv", "best.safetensors", "best.json", "last.safetensors", "last.json",
                 "train_state.safetensors", "curves.png", "val_confusion.png", "summary.json"):
        assert (run / name).is_file(), name
    assert not list(run.glob("*.tmp")), "temp files left behind"
    rows = read_log(run)
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    card = json.loads((run / "best.json").read_text())
    assert card["labels"] == ["happy", "neutral", "sad", "surprise"]  # auto: canonical order of those present
    assert card["input_size"] == 32 and card["channels"] == "rgb" and len(card["sha256"]) == 64
    assert card["metrics"]["val"]["accuracy"] == pytest.approx(float(rows[res.best_epoch - 1]["val_accuracy"]), abs=1e-4)
    assert card["source_size"] == 40  # every training face is 40 px square: photos are resampled through 40 px too
    model, loaded = load_checkpoint(run)
    assert loaded.labels == card["labels"]
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 4)


def test_source_size_is_recorded_only_for_one_square_size(tmp_path, faces):
    """`--source-size` -1 (default) records the training faces' common side; 0 turns it off; mixed sizes give 0."""
    from emotune.data.dataset import prepare_samples
    from emotune.data.sources import load_samples

    prep, _ = prepare_samples(load_samples(faces), "rgb", show=False)
    assert prep.native_side() == 40
    mixed = tmp_path / "mixed"
    shutil.copytree(faces, mixed)
    first = sorted((mixed / "happy").iterdir())[0]
    Image.open(first).resize((50, 50)).save(first)
    prep, _ = prepare_samples(load_samples(mixed), "rgb", show=False)
    assert prep.native_side() == 0
    res = train(cfg(tmp_path, faces, epochs=1, source_size=0, out=str(tmp_path / "off")))
    assert json.loads((res.run_dir / "best.json").read_text())["source_size"] == 0


def test_learns_the_synthetic_task(tmp_path, faces):
    """Mouth shape decides the label: a few epochs must beat chance (25%) clearly."""
    data = make_synthetic_dataset(tmp_path / "faces", per_class=32, size=40, seed=1)
    res = train(cfg(tmp_path, data, epochs=8, lr=3e-3, backbone="resnet10t", erasing=0.0, rotation=0.0))
    assert max(float(r["val_accuracy"]) for r in read_log(res.run_dir)) >= 0.5


@pytest.mark.parametrize("strategy", ["linear_probe", "gradual", "layerwise", "full"])
def test_strategies_freeze_what_they_should(tmp_path, faces, strategy):
    c = cfg(tmp_path, faces, epochs=1, strategy=strategy)
    from emotune.models import create_model

    model = create_model("mobilenetv2", 4)
    total = sum(p.numel() for p in model.parameters())
    head = sum(p.numel() for p in model.get_classifier().parameters())
    n0 = set_trainable(model, c, epoch=0)
    if strategy == "linear_probe":
        assert n0 == head
    elif strategy == "gradual":
        n1 = set_trainable(model, c, epoch=1)
        assert head <= n0 < n1 < total
        assert set_trainable(model, c, epoch=len(layer_groups(model))) == total
    else:
        assert n0 == total
    res = train(c)
    assert res.epochs_run == 1


def test_layerwise_lrs_decrease_towards_the_stem(tmp_path, faces):
    from emotune.models import create_model
    from emotune.train.engine import build_optimizer

    c = cfg(tmp_path, faces, strategy="layerwise", layer_decay=0.5, lr=1e-2)
    opt = build_optimizer(create_model("mobilenetv2", 4), c)
    lrs = sorted({g["lr"] for g in opt.param_groups})
    assert max(lrs) == pytest.approx(1e-2) and min(lrs) < 1e-4


def test_schedule_warms_up_then_decays(tmp_path, faces):
    """timm's CosineLRScheduler per update: linear warm-up to the peak, cosine down to min_lr, scaled per layer group."""
    from emotune.models import create_model
    from emotune.train.engine import build_optimizer

    c = cfg(tmp_path, faces, epochs=10, warmup_epochs=1, lr=1e-2, min_lr=1e-4)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-2)
    opt.param_groups[0]["initial_lr"] = 1e-2
    sched = build_scheduler(opt, c, steps_per_epoch=10)

    def f(step: int) -> float:
        sched.step_update(step)
        return opt.param_groups[0]["lr"] / 1e-2
    assert 0 < f(0) < f(5) < f(9) <= 1.0
    assert f(10) == pytest.approx(1.0)
    assert f(55) < f(20) and f(99) == pytest.approx(0.01, abs=0.01)
    assert f(99) > f(100) == pytest.approx(0.01)  # the floor
    # layerwise: every group follows the same shape times its lr_scale (floor included)
    lw = cfg(tmp_path, faces, strategy="layerwise", layer_decay=0.5, lr=1e-2, min_lr=1e-4, epochs=10, warmup_epochs=1)
    opt = build_optimizer(create_model("mobilenetv2", 4), lw)
    sched = build_scheduler(opt, lw, steps_per_epoch=10)
    for step in (0, 10, 99):
        sched.step_update(step)
        ratios = {round(g["lr"] / g.get("lr_scale", 1.0), 12) for g in opt.param_groups}
        assert len(ratios) == 1
    sched.step_update(10)
    assert max(g["lr"] for g in opt.param_groups) == pytest.approx(1e-2)


def test_options_that_change_the_loss(tmp_path, faces):
    res = train(cfg(tmp_path, faces, epochs=1, class_balance="sampler", mixup=0.2, cutmix=1.0, ema=True, ema_decay=0.9,
                    label_smoothing=0.0, optimizer="sgd", lr=0.01, deterministic=True, tta=True))
    assert res.epochs_run == 1 and (res.run_dir / "best.safetensors").is_file()


def test_label_smoothing_defaults_to_0_1_and_class_balance_loss_weights_rare_classes():
    c = make_config({**BASE, "data": "d", "out": "o"})
    assert c.label_smoothing == 0.1 and make_criterion(c, [0, 1], 2).label_smoothing == 0.1
    w = class_weights([0, 0, 0, 1], 2)
    assert w.tolist() == pytest.approx([4 / 6, 2.0])  # inverse frequency: the rare class counts 3x
    assert float((w[torch.tensor([0, 0, 0, 1])]).mean()) == pytest.approx(1.0)  # the loss keeps its scale
    balanced = make_criterion(make_config({**BASE, "data": "d", "out": "o", "class_balance": "loss"}), [0, 0, 0, 1], 2)
    assert balanced.weight.tolist() == pytest.approx(w.tolist())
    assert make_criterion(c, [0, 0, 0, 1], 2).weight is None


def test_class_balance_sampler_draws_classes_evenly(tmp_path):
    data = make_synthetic_dataset(tmp_path / "d", per_class=24, size=16, labels=("happy", "sad"), seed=3)
    for f in sorted((data / "sad").glob("*.png"))[4:]:
        f.unlink()  # 24 happy, 4 sad
    counts = {}
    for balance in ("none", "sampler"):
        c = make_config({**BASE, "data": str(data), "out": str(tmp_path / balance), "class_balance": balance,
                         "val_fraction": 0.0, "val_data": str(data), "batch_size": 4, "img_size": 16})
        train_loader, _ = make_loaders(c, build_data(c, 16, (0.5,) * 3, (0.5,) * 3), torch.device("cpu"))
        ys = torch.cat([y for _ in range(10) for _, y in train_loader])  # ten epochs of draws
        counts[balance] = np.bincount(ys.numpy(), minlength=2) / len(ys)
    assert counts["none"][1] == pytest.approx(4 / 28, abs=0.02)  # plain shuffling keeps the imbalance
    assert 0.4 < counts["sampler"][1] < 0.6  # the sampler draws the rare class as often as the common one


def test_mixup_and_cutmix_mix_images_and_targets():
    c = make_config({**BASE, "data": "d", "out": "o", "mixup": 0.4})
    torch.manual_seed(0)
    x = torch.stack([torch.full((1, 8, 8), float(i)) for i in range(4)])
    y = torch.tensor([0, 1, 2, 0])
    xm, ym = batch_mixer(c, 3, soft=False)(x, y)
    assert ym.shape == (4, 3) and torch.allclose(ym.sum(1), torch.ones(4))
    assert (ym.max(1).values < 1).any()  # targets are mixed, not one-hot
    lam = float(ym[1, 1])  # MixUp pairs each image with the batch rolled by one: image 1 (class 1) with image 0 (class 0)
    assert torch.allclose(xm[1], lam * x[1] + (1 - lam) * x[0], atol=1e-5)
    cut = make_config({**BASE, "data": "d", "out": "o", "cutmix": 1.0})
    xc, yc = batch_mixer(cut, 3, soft=False)(x, y)
    assert torch.allclose(yc.sum(1), torch.ones(4)) and (yc.max(1).values < 1).any()  # mixed by pasted area
    assert not torch.equal(xc, x) and set(xc.unique().tolist()) <= set(x.unique().tolist())  # patches of other images
    assert batch_mixer(make_config({**BASE, "data": "d", "out": "o"}), 3, soft=False) is None
    with pytest.raises(ConfigError, match="hard labels"):
        batch_mixer(c, 3, soft=True)


def test_face_augmentation_defaults():
    img = Image.fromarray((np.arange(48 * 48).reshape(48, 48) % 251).astype(np.uint8)).convert("RGB")
    mean, std = (0.5,) * 3, (0.25,) * 3
    ev = eval_transform(32, mean, std)(img)
    assert ev.shape == (3, 32, 32) and torch.equal(ev, eval_transform(32, mean, std)(img))  # eval: deterministic
    a = AugmentConfig()
    assert a.crop_scale == (0.8, 1.0) and a.hflip == 0.5 and a.rotation == 10 and 0 < a.erasing < 0.5
    torch.manual_seed(0)
    outs = [train_transform(32, mean, std)(img) for _ in range(4)]
    assert all(o.shape == (3, 32, 32) for o in outs) and not torch.equal(outs[0], outs[1])  # train: random
    only_flip = AugmentConfig(crop_scale=(1.0, 1.0), hflip=1.0, rotation=0, brightness=0, contrast=0, saturation=0, erasing=0)
    flipped = train_transform(32, mean, std, only_flip)(img)
    assert torch.allclose(flipped, torch.flip(ev, dims=[2]), atol=1e-5)


@pytest.mark.parametrize("op", ["translate", "perspective", "blur", "jpeg"])
def test_lab_to_wild_augmentations_are_off_by_default_and_change_the_face_when_on(op):
    """Each photo-gap augmentation is absent from the default pipeline (old recipes unchanged) and, alone and always
    on, changes a face while keeping its shape, grey levels and dtype."""
    img = Image.fromarray((np.add.outer(np.arange(48), np.arange(48)) * 2 % 255).astype(np.uint8)).convert("RGB")
    mean, std = (0.5,) * 3, (0.25,) * 3
    off = dict(crop_scale=(1.0, 1.0), hflip=0.0, rotation=0, brightness=0, contrast=0, saturation=0, erasing=0)
    assert getattr(AugmentConfig(), op) == 0
    base = train_transform(32, mean, std, AugmentConfig(**off))
    value = {"translate": 0.2, "perspective": 0.6, "blur": 1.0, "jpeg": 1.0}[op]
    names = [type(t).__name__ for t in train_transform(32, mean, std, AugmentConfig(**off, **{op: value})).transforms]
    assert len(names) == len(base.transforms) + 1
    torch.manual_seed(1)
    outs = [train_transform(32, mean, std, AugmentConfig(**off, **{op: value}))(img) for _ in range(6)]
    ref = base(img)
    assert all(o.shape == ref.shape and o.dtype == torch.float32 for o in outs)
    assert any(not torch.allclose(o, ref, atol=1e-3) for o in outs)


def test_trains_on_ferplus_soft_targets(tmp_path):
    """FER+ probability mode: each image's target is its vote distribution, and training uses it."""
    faces = make_synthetic_dataset(tmp_path / "src", per_class=12, size=40, labels=("happy", "sad", "neutral"), seed=2)
    column = {"neutral": 0, "happy": 1, "sad": 3}  # FER+ vote columns: neutral, happiness, surprise, sadness, ...
    folder = tmp_path / "FER2013Train"
    folder.mkdir()
    rows = []
    for label, col in column.items():
        for i, f in enumerate(sorted((faces / label).glob("*.png"))):
            votes = [0] * 10
            votes[col], votes[(col + 1) % 4] = 7 + i % 3, 3 - i % 3  # mostly the true class, some for another
            (folder / f.name).write_bytes(f.read_bytes())
            rows.append(",".join([f.name, '"(0, 0, 40, 40)"', *map(str, votes)]))
    (folder / "label.csv").write_text("\n".join(rows) + "\n")
    c = cfg(tmp_path, folder, ferplus_mode="probability", epochs=1, lr=3e-3)
    data = build_data(c, 32, (0.5,) * 3, (0.5,) * 3)
    assert data.soft
    _, y = next(iter(make_loaders(c, data, torch.device("cpu"))[0]))
    assert y.ndim == 2 and torch.allclose(y.sum(1), torch.ones(len(y))) and (y.max(1).values < 1).any()  # vote shares
    res = train(c)
    card = json.loads((res.run_dir / "best.json").read_text())
    assert card["training"]["data"]["soft_targets"] is True and res.epochs_run == 1
    with pytest.raises(ConfigError, match="hard labels"):
        train(cfg(tmp_path / "mix", folder, ferplus_mode="probability", epochs=1, mixup=0.2))


def test_early_stopping(tmp_path, faces):
    res = train(cfg(tmp_path, faces, epochs=20, lr=1e-9, warmup_epochs=0, patience=2, monitor="loss"))
    assert res.stopped_early and res.epochs_run < 20


def test_refuses_to_overwrite_and_resume_without_state(tmp_path, faces):
    train(cfg(tmp_path, faces, epochs=1))
    with pytest.raises(ConfigError, match="resume"):
        train(cfg(tmp_path, faces, epochs=1))
    with pytest.raises(ConfigError, match="nothing to resume"):  # no run folder at all
        train(make_config({**BASE, "data": str(faces), "out": str(tmp_path / "other"), "resume": True}))


def test_label_problems_are_explicit(tmp_path, faces):
    with pytest.raises(LabelError, match="drop"):
        train(cfg(tmp_path, faces, labels="happy,sad,neutral"))
    res = train(cfg(tmp_path, faces, labels="happy,sad,neutral", drop_labels="surprise", epochs=1))
    assert json.loads((res.run_dir / "best.json").read_text())["labels"] == ["happy", "sad", "neutral"]
    with pytest.raises(ConfigError, match="no training images"):
        train(make_config({**BASE, "data": str(faces), "out": str(tmp_path / "r2"), "labels": "basic7"}))


def test_config_yaml_and_unknown_keys(tmp_path, faces):
    y = tmp_path / "c.yaml"
    y.write_text(f"data: {faces}\nepochs: 3\nlr: 0.01\n")
    c = make_config({"epochs": 5}, y)
    assert c.epochs == 5 and c.lr == 0.01  # flags beat the file
    y.write_text("data: x\nlearning_rate: 0.1\n")
    with pytest.raises(ConfigError, match="learning_rate"):
        make_config({}, y)
    with pytest.raises(ConfigError, match="strategy"):
        make_config({"data": "x", "strategy": "magic"})


def test_bad_images_are_skipped_and_reported(tmp_path, faces):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(faces, data)
    (data / "happy" / "broken.png").write_bytes(b"not an image at all")
    (data / "sad" / "empty.jpg").write_bytes(b"")
    res = train(make_config({**BASE, "data": str(data), "out": str(tmp_path / "run"), "epochs": 1}))
    problems = {Path(s.where).name: s.problem for s in res.skipped}
    assert set(problems) == {"broken.png", "empty.jpg"}
    assert "0 bytes" in problems["empty.jpg"]
    summary = json.loads((res.run_dir / "summary.json").read_text())
    assert len(summary["skipped"]) == 2
    with pytest.raises(Exception, match="broken.png|empty.jpg"):
        train(make_config({**BASE, "data": str(data), "out": str(tmp_path / "run2"), "epochs": 1, "on_bad": "fail"}))


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "emotune.cli", *args]


def test_resume_after_kill_minus_nine_matches_an_uninterrupted_run(tmp_path, faces):
    common = ["train", "--data", str(faces), "--backbone", "mobilenetv2", "--img-size", "32", "--batch-size", "8",
              "--workers", "0", "--epochs", "4", "--val-fraction", "0.25", "--no-progress", "--seed", "3"]
    ref = tmp_path / "ref"
    subprocess.run(_cli(*common, "--out", str(ref)), check=True, capture_output=True, timeout=600)
    run = tmp_path / "killed"
    proc = subprocess.Popen(_cli(*common, "--out", str(run)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not (run / "log.csv").is_file():
        time.sleep(0.05)
    time.sleep(0.3)  # now inside epoch 2 (or later)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(read_log(run))
    assert 1 <= done < 4, "the kill should land before the run finished"
    out = subprocess.run(_cli(*common, "--out", str(run), "--resume"), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    a, b = read_log(ref), read_log(run)
    assert [r["epoch"] for r in b] == ["1", "2", "3", "4"]
    for ra, rb in zip(a, b):
        assert float(ra["train_loss"]) == pytest.approx(float(rb["train_loss"]), abs=1e-4)
        assert float(ra["val_loss"]) == pytest.approx(float(rb["val_loss"]), abs=1e-4)


def test_cli_train_help_lists_every_option():
    out = subprocess.run(_cli("train", "--help"), capture_output=True, text=True, check=True).stdout
    for flag in ("--data", "--val-data", "--backbone", "--pretrained", "--epochs", "--batch-size", "--out", "--resume",
                 "--strategy", "--mixup", "--ema", "--class-balance", "--deterministic"):
        assert flag in out


def test_cli_errors_are_one_clear_line(tmp_path):
    out = subprocess.run(_cli("train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "r")), capture_output=True, text=True)
    assert out.returncode == 2
    assert "nope" in out.stderr and "Traceback" not in out.stderr


def test_torchrun_two_processes_on_cpu(tmp_path, faces):
    """Multi-process data parallel training (torchrun + gloo on the CPU; NCCL on GPUs): each rank gets half the
    data, rank 0 alone writes the run folder, and the result reloads like a single-process run."""
    run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "emotune.cli", "train",
           "--data", str(faces), "--backbone", "mobilenetv2", "--img-size", "32", "--epochs", "2", "--batch-size", "8",
           "--workers", "0", "--threads", "1", "--no-progress", "--strategy", "gradual", "--out", str(run)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("run: ") == 1  # only rank 0 reports
    rows = read_log(run)
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert int(rows[1]["trainable_params"]) > int(rows[0]["trainable_params"])  # gradual unfreezing under DDP
    model, card = load_checkpoint(run)
    assert card.metrics["epoch"] in (1, 2)
    assert all(torch.isfinite(p).all() for p in model.parameters())
