# One-command set-up: `make demo` and `make test` install everything they need on a fresh
# Debian 12 / Python 3.11 machine into .venv/, build the package into build/ and install/, and
# reuse both on later runs.

PYTHON      ?= python3
VENV        := .venv
VENV_STAMP  := $(VENV)/.installed
BUILD_STAMP := install/meta_tracker_ros/share/meta_tracker_ros/package.xml
RUN         := bash tools/with_env.sh
DATA        ?= ../shared/data
INPUT       ?=
BOX         ?=
JSON        ?= results/benchmark.json

INTERFACES  := $(wildcard msg/*.msg srv/*.srv)
PY_SOURCES  := $(shell find meta_tracker_ros scripts -type f \( -name '*.py' -o -perm -u+x \) 2>/dev/null)

TRAIN_DATA  ?= ../shared/data/train
WEIGHTS     ?= meta_tracker_ros/core/weights/classifier.pt
MASK_WEIGHTS ?= meta_tracker_ros/core/weights/mask_decoder.pt
BOX_WEIGHTS ?= meta_tracker_ros/core/weights/box_refiner.pt
SCALE_WEIGHTS ?= meta_tracker_ros/core/weights/scale_head.pt

.PHONY: env build test lint demo bench bench-val train train-box train-scale train-mask stress clean distclean constraints

env: $(VENV_STAMP)

$(VENV_STAMP): requirements.txt constraints.txt tools/fix_ros_cmake_paths.py
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade "pip>=24"
	$(VENV)/bin/python -m pip install --quiet -c constraints.txt -r requirements.txt
	$(VENV)/bin/python tools/fix_ros_cmake_paths.py
	touch $@

build: $(BUILD_STAMP)

# --symlink-install: edits to Python files are live without a rebuild; new files, msg/srv and
# CMake changes rebuild (about 10 s).
# The venv lives inside the source tree, and CMake refuses to export an include directory below
# the source tree (NumPy's headers, used by the generated Python type support) unless it is below
# the install prefix. A symlink there, passed as FindPython's NumPy hint, satisfies that check;
# workspaces with a system ROS 2 need none of this.
NUMPY_LINK  := install/meta_tracker_ros/include/numpy_headers

$(BUILD_STAMP): $(VENV_STAMP) CMakeLists.txt package.xml $(INTERFACES) $(PY_SOURCES) $(wildcard launch/* config/*)
	mkdir -p $(dir $(NUMPY_LINK))
	ln -sfn "$$($(VENV)/bin/python -c 'import numpy; print(numpy.get_include())')" $(NUMPY_LINK)
	$(RUN) colcon --log-base log build --symlink-install --base-paths . \
		--build-base build --install-base install \
		--event-handlers console_direct- \
		--cmake-args -DPython3_EXECUTABLE=$(CURDIR)/$(VENV)/bin/python -DBUILD_TESTING=OFF \
		-DPython3_NumPy_INCLUDE_DIR=$(CURDIR)/$(NUMPY_LINK)
	touch $@

lint: $(VENV_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check meta_tracker_ros test tools

test: build lint
	$(RUN) bash .ci/pytest.sh

demo: build
	$(RUN) python -m meta_tracker_ros.tools.demo --output demo_output \
		$(if $(INPUT),--input $(INPUT)) $(if $(BOX),--box $(BOX))

# Reliability suite (README "Reliability"): 10,000-frame soaks at 30 Hz with 1 and 4 targets,
# thousands of hostile requests and images, faults; about 20 min. `make test` runs a reduced
# form (test/integration/test_stress_quick.py). STRESS_ARGS="--frames 1500" shortens it.
STRESS_ARGS ?=
stress: build
	$(RUN) python -m meta_tracker_ros.tools.stress --data $(DATA) $(STRESS_ARGS)

# Full accuracy/speed benchmark on ../shared/data: the shipped (learned) tracker, with the
# learned box refiner on, with the training-free mask head, the hand-set one, and CSRT/KCF,
# interleaved per sequence in the same run.
bench: build
	$(RUN) python -m meta_tracker_ros.evaluation --data $(DATA) --tracker meta,meta-refine,meta-freemask,handset,csrt,kcf \
		--json $(JSON) --markdown $(JSON:.json=.md) --plots results/plots

# The same comparison on the training set's validation split (held-out training videos).
bench-val: build
	$(RUN) python -m meta_tracker_ros.evaluation --data $(TRAIN_DATA) --split val \
		--tracker meta,meta-refine,handset,csrt --json results/validation.json \
		--markdown results/validation.md

# Meta-train the classifier from scratch (feature cache, episodes, early stopping) and write
# the file the tracker loads by default, with its curves (.png) and model card data (.json).
train: build
	$(RUN) python -m meta_tracker_ros.training --data $(TRAIN_DATA) --out $(WEIGHTS)
	$(MAKE) train-box
	$(MAKE) train-scale
	$(MAKE) train-mask

# Train the box refiner on the classifier's feature cache (reused when make train built it)
# and write the file the tracker loads by default, with its curves and model card data.
train-box: build
	$(RUN) python -m meta_tracker_ros.training box --data $(TRAIN_DATA) --out $(BOX_WEIGHTS)

# Train the learned scale head on the classifier's feature cache (reused when make train built
# it) and write the file the tracker loads by default, with its curves and model card data.
train-scale: build
	$(RUN) python -m meta_tracker_ros.training scale --data $(TRAIN_DATA) --out $(SCALE_WEIGHTS)

# Train the mask decoder (samples from the real mask head on the training split's mask clips,
# with pasted "lucid dreaming" episodes; early stopping on the validation clips) and write the
# file the tracker loads by default, with its curves (.png) and model card data (.json).
train-mask: build
	$(RUN) python -m meta_tracker_ros.training mask --data $(TRAIN_DATA) --out $(MASK_WEIGHTS)

constraints:
	$(VENV)/bin/python -m pip freeze | grep -vE '^(torch==|-e )' > constraints.txt.new
	echo "torch==2.13.0" >> constraints.txt.new
	mv constraints.txt.new constraints.txt

clean:
	rm -rf build install log demo_output results

distclean: clean
	rm -rf $(VENV)
