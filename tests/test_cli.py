"""The command registry: every command is registered the same way, and `emotune X --help` works for each."""
from __future__ import annotations

import argparse
from pathlib import Path
from importlib import import_module

import pytest

from emotune import cli

NAMES = [spec.name for spec in cli.COMMANDS]


def test_the_registry_is_the_whole_command_line():
    assert NAMES == ["predict", "train", "evaluate", "export", "average", "cascade", "cv", "report", "faces", "serve", "seq", "synth", "models", "detectors", "demo"]
    assert len(set(NAMES)) == len(NAMES)
    sub = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert list(sub.choices) == NAMES  # no command is added outside the registry
    for spec in cli.COMMANDS:
        mod = import_module(f"emotune.{spec.module}")
        assert callable(getattr(mod, spec.add)) and callable(getattr(mod, spec.run)), spec
        assert sub.choices[spec.name].get_default("func") is getattr(mod, spec.run)


def test_top_level_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for spec in cli.COMMANDS:
        assert spec.name in out and spec.help[:30] in " ".join(out.split())


@pytest.mark.parametrize("name", NAMES)
def test_every_command_has_help(name, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main([name, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: emotune {name}") and "-h, --help" in out


def test_evaluate_help_keeps_its_options(capsys):
    with pytest.raises(SystemExit):
        cli.main(["evaluate", "--help"])
    out = capsys.readouterr().out
    for opt in ("--model", "--data", "--data-format", "--split", "--ferplus-mode", "--drop-labels", "--drop-unknown-labels",
                "--format", "--out", "--detect", "--detector", "--detector-model", "--margin", "--tta", "--batch-size",
                "--max-samples", "--on-bad", "--workers", "--device", "--no-progress"):
        assert opt in out, opt


def test_models_lists_backbones_as_a_text_table(capsys):
    assert cli.main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    assert lines[0].split()[:3] == ["name", "timm", "model"]
    assert "mobilenetv2" in {line.split()[0] for line in lines[1:] if line.strip()}


@pytest.mark.parametrize("bad", ["file", "proc"])
def test_evaluate_checks_its_out_folder_before_any_work(tmp_path, capsys, bad):
    """`evaluate --out` naming a file or an unwritable place is refused in one line before the data is even read
    (the data folder here does not exist: reaching it would be a different error)."""
    out = tmp_path / "taken.txt" if bad == "file" else Path("/proc/emotune-eval")
    if bad == "file":
        out.write_text("mine")
    rc = cli.main(["evaluate", "--data", str(tmp_path / "no-such-data"), "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("emotune: error: --out ") and str(out) in err[0]
    if bad == "file":
        assert out.read_text() == "mine"
