#!/usr/bin/env bash
# Build emotune's wheel, install it with its pinned dependencies into a fresh virtual environment in a temp folder, and
# run `emotune predict` on a photo from outside the source tree: the wheel must carry the face detector, the default
# model and everything else a user's first command needs. Nothing downloads (torch comes from this machine's disk).
set -euo pipefail
PY=${PY:-python3}
CONSTRAINTS=${CONSTRAINTS:-$(pwd)/requirements/constraints.txt}
src=$(pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/emotune-wheel.XXXXXX")
trap 'rm -rf "$work"' EXIT
"$PY" -m pip wheel -q --disable-pip-version-check --no-deps -w "$work/dist" "$src"
wheel=$(ls "$work"/dist/emotune-*.whl)
"$PY" - "$wheel" <<'PYEOF'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
need = ["emotune/weights/default.safetensors", "emotune/weights/default.json", "emotune/weights/scene.safetensors", "emotune/weights/scene.json", "emotune/weights/fer2013.safetensors", "emotune/weights/fer2013.json", "emotune/weights/multisource.safetensors", "emotune/weights/multisource.json", "emotune/weights/basic8.safetensors", "emotune/weights/basic8.json", "emotune/weights/default.int8.onnx", "emotune/weights/default.int8.json", "emotune/serve/static/index.html", "emotune/assets/face_detection_yunet.onnx", "emotune/cli.py"]
missing = [n for n in need if n not in names]
if missing:
    sys.exit(f"wheel lacks {missing}")
print(f"wheel: {len(names)} files, carries {', '.join(need)}")
PYEOF
"$PY" -m venv "$work/venv"
pip=("$work/venv/bin/pip" install -q --disable-pip-version-check -c "$CONSTRAINTS")
"${pip[@]}" torch==2.14.1 torchvision==0.29.1
"${pip[@]}" "$wheel"
cd "$work"  # outside the source tree: only the installed wheel can be imported
"$work/venv/bin/python" -c "import emotune, sys; assert '$src' not in emotune.__file__, emotune.__file__; print('imported', emotune.__file__)"
photo=$("$work/venv/bin/python" -c "import matplotlib.cbook as c; print(c.get_sample_data('grace_hopper.jpg', asfileobj=False))")
"$work/venv/bin/emotune" predict "$photo" --with-scene --format csv -o "$work/faces.csv"
"$work/venv/bin/python" - "$work/faces.csv" <<'PYEOF'
import sys, pandas as pd
df = pd.read_csv(sys.argv[1])
faces, scene = df[df["kind"] == "face"], df[df["kind"] == "scene"]
assert len(faces) >= 1 and len(scene) == 1 and df["label"].notna().all(), df
print(f"wheel check passed: {len(faces)} face(s), label {faces['label'].iloc[0]}; scene {scene['label'].iloc[0]}")
PYEOF
