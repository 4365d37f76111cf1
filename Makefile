# Two entry points: `make demo` (set up, then `emotune predict` on a bundled photo with the bundled model) and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SHARED ?= ../shared
STAMP := $(VENV)/.installed

MP_VENV ?= .venv-mp
MP_STAMP := $(MP_VENV)/.installed

.PHONY: demo test venv mediapipe-env wheel-check clean

venv: $(STAMP)

CONSTRAINTS := requirements/constraints.txt
PIP_FLAGS := -q --disable-pip-version-check -c $(CONSTRAINTS)

$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install $(PIP_FLAGS) torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install $(PIP_FLAGS) -e '.[test,serve,ray,lite]'
	touch $(STAMP)

# matplotlib ships this public-domain photo of Grace Hopper
EXAMPLE = $$($(BIN)/python -c "import matplotlib.cbook as c; print(c.get_sample_data('grace_hopper.jpg', asfileobj=False))")

demo: venv
	$(BIN)/emotune predict "$(EXAMPLE)" --annotate runs/demo

test: venv
	@# optional side environment for the MediaPipe test (it skips, saying why, without it); only where its model file is
	@if ls $(SHARED)/weights/face/mediapipe_*.tflite >/dev/null 2>&1; then \
	  $(MAKE) --no-print-directory mediapipe-env || echo "mediapipe side environment not built: its test will skip"; fi
	EMOTUNE_MP_VENV=$(abspath $(MP_VENV)) $(BIN)/python -m pytest -q

# MediaPipe needs opencv-contrib-python, which clashes with emotune's OpenCV: it gets its own environment
mediapipe-env: $(MP_STAMP)

$(MP_STAMP): requirements/mediapipe.txt
	test -x $(MP_VENV)/bin/python || $(PY) -m venv $(MP_VENV)
	$(MP_VENV)/bin/pip install -q --disable-pip-version-check -r requirements/mediapipe.txt || { rm -rf $(MP_VENV); exit 1; }
	touch $(MP_STAMP)

# the wheel alone, in a fresh environment, outside the source tree: does it carry everything `emotune predict` needs?
wheel-check:
	PY=$(PY) CONSTRAINTS=$(abspath $(CONSTRAINTS)) scripts/wheel_check.sh

clean:
	rm -rf $(VENV) $(MP_VENV) runs build dist *.egg-info
