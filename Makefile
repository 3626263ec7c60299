# blazeconv: `make all` converts every shipped model into build/, `make test` runs the test suite (`make test-quick`
# its quick tier).
# Both set up their own virtual environment (.venv) first when it is missing or out of date.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
BUILD := build
# Every shipped model ($(MODELS)/face_detection_<variant>.tflite, package data).
VARIANTS := front short_range back full_range full_range_sparse
# The shipped .tflite files are package data, so a wheel carries them.
MODELS := blazeconv/models

CONVERTER := $(addprefix blazeconv/,tflite_reader.py tflite_checks.py tflite_sparsity.py variants.py) $(wildcard blazeconv/network/*.py blazeconv/convert/*.py)
ANCHORS := $(addprefix blazeconv/,anchors.py variants.py)

.DELETE_ON_ERROR:
.PHONY: all test test-quick check clean setup docs docs-site mediapipe onnx-models

all: $(foreach v,$(VARIANTS),$(BUILD)/$(v).pth $(BUILD)/$(v)_anchors.npy)

setup: $(INSTALLED)

# torch first, pinned: the local CPU build; then the package with its test extras.
$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

$(BUILD)/models.verified: $(MODELS)/SHA256SUMS $(wildcard $(MODELS)/*.tflite) | $(INSTALLED)
	@mkdir -p $(BUILD)
	cd $(MODELS) && $(CURDIR)/$(BIN)/python -m blazeconv.checksums SHA256SUMS
	touch $@

$(BUILD)/%.pth: $(MODELS)/face_detection_%.tflite $(BUILD)/models.verified $(CONVERTER) | $(INSTALLED)
	$(BIN)/blazeconv tflite2torch $< -o $@

$(BUILD)/%_anchors.npy: $(ANCHORS) | $(INSTALLED)
	@mkdir -p $(BUILD)
	$(BIN)/blazeconv anchors --variant $* -o $@

# MediaPipe Tasks (its FaceDetector, numpy 2) in an environment of its own: it pulls opencv-contrib-python, which
# cannot share .venv with opencv-python-headless. The tests (torch2tflite's output in MediaPipe, bench's worker) and
# `blazeconv bench` run it in a worker process; PyAV for the worker's video mode. About 30 s and 750 MB (measured).
MEDIAPIPE_VENV := .venv-mediapipe
MEDIAPIPE_INSTALLED := $(MEDIAPIPE_VENV)/.installed

mediapipe: $(MEDIAPIPE_INSTALLED)

$(MEDIAPIPE_INSTALLED):
	test -x $(MEDIAPIPE_VENV)/bin/python || $(PYTHON) -m venv $(MEDIAPIPE_VENV)
	$(MEDIAPIPE_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(MEDIAPIPE_VENV)/bin/python -m pip install --quiet mediapipe==1.2.2 'av>=18'
	touch $@

test: $(INSTALLED) $(MEDIAPIPE_INSTALLED)
	$(BIN)/python -m pytest

# The quick tier: every module touched, the slow tests (marked `slow`) left to `make test`.
test-quick: $(INSTALLED) $(MEDIAPIPE_INSTALLED)
	$(BIN)/python -m pytest -m "not slow"

check: test

clean:
	rm -rf $(BUILD)

# The pictures of the README and the guides (docs/images/, committed), made from shipped inputs, and the
# command-line reference generated from the click commands (docs/cli.md; tests/test_docs.py fails when it is stale).
# `make docs-site` builds the site strictly into build/site (tests/test_docs.py runs the same build).
PICTURES := $(addprefix docs/images/,detect.png blur.png crops.png overview.png bench.png model_comparison.png)
PICTURE_INPUTS := docs/make_pictures.py $(wildcard blazeconv/photos/*.png) tests/data/images/3faces.png tests/data/videos/asl_again.mkv

docs: $(PICTURES) docs/cli.md

docs/images/%.png: $(PICTURE_INPUTS) | $(INSTALLED)
	$(BIN)/python docs/make_pictures.py $* $@

docs/images/bench.png: docs/make_pictures.py docs/bench.md | $(INSTALLED)
	$(BIN)/python docs/make_pictures.py bench $@

docs/images/model_comparison.png: docs/compare_models.py tests/data/images/astronaut_wide.png | $(INSTALLED)
	$(BIN)/python docs/compare_models.py tests/data/images/astronaut_wide.png $@ short_range back full_range_sparse

docs/cli.md: docs/gen_cli_reference.py $(wildcard blazeconv/cli/*.py) | $(INSTALLED)
	$(BIN)/python docs/gen_cli_reference.py

docs-site: $(INSTALLED)
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict --site-dir $(BUILD)/site

# Core ML (blazeconv coreml): for every variant the Vision pipeline (detector + NonMaximumSuppression) and the
# landmarks model (weighted NMS inside), as float16 ML programs; then each is evaluated operation by operation
# and compared with PyTorch on the test photos (blazeconv verify), which leaves build/coreml.verified.
COREML_STAGE := $(addprefix blazeconv/,export/__init__.py export/coreml.py variants.py anchors.py) $(wildcard blazeconv/network/*.py blazeconv/sources/*.py blazeconv/convert/*.py)
COREML_CHECK := $(wildcard blazeconv/verify/*.py blazeconv/detection/*.py)
COREML_MODELS := $(foreach v,$(VARIANTS),$(BUILD)/$(v).mlpackage $(BUILD)/$(v)_landmarks.mlpackage)

all: $(BUILD)/coreml.verified

$(BUILD)/%_landmarks.mlpackage: $(BUILD)/%.pth $(MODELS)/face_detection_%.tflite $(COREML_STAGE) | $(INSTALLED)
	$(BIN)/blazeconv coreml $< --landmarks --source-tflite $(MODELS)/face_detection_$*.tflite -o $@

$(BUILD)/%.mlpackage: $(BUILD)/%.pth $(MODELS)/face_detection_%.tflite $(COREML_STAGE) | $(INSTALLED)
	$(BIN)/blazeconv coreml $< --source-tflite $(MODELS)/face_detection_$*.tflite -o $@

$(BUILD)/coreml.verified: $(COREML_MODELS) $(COREML_CHECK) $(wildcard tests/data/images/*.png) | $(INSTALLED)
	for model in $(COREML_MODELS); do $(BIN)/blazeconv verify $$model tests/data/images/*.png || exit 1; done
	touch $@

# ONNX (blazeconv onnx, needs the convert extra): for every variant the network with TFLite's raw outputs, exported
# from the verified .tflite (its SHA-256 goes into the metadata), and the detections model (decoding and MediaPipe's
# weighted NMS inside) made from that network without exporting it again.
ONNX_STAGE := $(addprefix blazeconv/,export/__init__.py export/onnx.py variants.py anchors.py) $(wildcard blazeconv/network/*.py blazeconv/sources/*.py blazeconv/convert/*.py)

all: $(foreach v,$(VARIANTS),$(BUILD)/$(v).onnx $(BUILD)/$(v)_detections.onnx)

$(BUILD)/%_detections.onnx: $(BUILD)/%.onnx $(ONNX_STAGE) | $(INSTALLED)
	$(BIN)/blazeconv onnx $< --detections -o $@

$(BUILD)/%.onnx: $(MODELS)/face_detection_%.tflite $(BUILD)/models.verified $(ONNX_STAGE) | $(INSTALLED)
	$(BIN)/blazeconv onnx $< -o $@

# The shipped models' ONNX networks, package data (committed): the plain install runs them on ONNX Runtime without
# torch. The export is deterministic, so a rebuild changes them only when the exporter's output changes
# (tests/test_install.py checks each equals a fresh export, byte for byte).
SHIPPED_ONNX := $(foreach v,$(VARIANTS),$(MODELS)/face_detection_$(v).onnx)

onnx-models: $(SHIPPED_ONNX)

all: $(SHIPPED_ONNX)

$(MODELS)/face_detection_%.onnx: $(MODELS)/face_detection_%.tflite $(BUILD)/models.verified $(ONNX_STAGE) | $(INSTALLED)
	$(BIN)/blazeconv onnx $< -o $@
