# Two entry points: `make demo` (set up, then `emotune predict` on a bundled photo with the bundled model) and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SHARED ?= ../shared
STAMP := $(VENV)/.installed

.PHONY: demo test venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

# matplotlib ships this public-domain photo of Grace Hopper
EXAMPLE = $$($(BIN)/python -c "import matplotlib.cbook as c; print(c.get_sample_data('grace_hopper.jpg', asfileobj=False))")

demo: venv
	$(BIN)/emotune predict "$(EXAMPLE)" --annotate runs/demo

test: venv
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs build *.egg-info
