# Thin wrapper over CMake. `make demo` builds and asks the shipped trained model;
# `make test` runs every test layer in a release build, again under
# AddressSanitizer + UBSan, and the C tests of an aarch64 cross build under
# qemu-user (reference kernels only). Warnings are errors here (WERROR=OFF to
# build with a compiler that has new ones).
BUILD      ?= build
ASAN_BUILD ?= build-asan
TSAN_BUILD ?= build-tsan
AARCH64_BUILD ?= build-aarch64
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
PY         ?= /usr/bin/python3
WERROR     ?= ON

.PHONY: npm-deps all build asan aarch64 demo test test-release test-asan test-tsan test-aarch64 fuzz fuzz-long bench clean deps

all: build

build:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release -DVTOK_WERROR=$(WERROR) >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

asan:
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DVTOK_SANITIZE=ON -DVTOK_WERROR=$(WERROR) >/dev/null
	cmake --build $(ASAN_BUILD) -j $(JOBS)

# Cross build with Debian's gcc-aarch64-linux-gnu and arm64 multiarch
# libraries (`make deps`); cmake/aarch64-linux-gnu.cmake sets qemu-aarch64 as
# the emulator ctest runs the binaries with.
aarch64:
	cmake -S . -B $(AARCH64_BUILD) -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake \
		-DCMAKE_BUILD_TYPE=Release -DVTOK_WERROR=$(WERROR) >/dev/null
	cmake --build $(AARCH64_BUILD) -j $(JOBS)

# A tiny LLaVA and CLIP trained here on synthetic scenes (models/shapes, see
# models/README.md) look at a shipped scene: four questions (each printed with
# the scene's true answer), then zero-shot.
SHAPES = models/shapes
DEMO_SCENE = $(SHAPES)/demo/scene-2000000.png
demo: build
	@echo "== $(DEMO_SCENE): an orange star at the top, blue squares at the top right and right"
	@for qa in "What colour is the star?|orange" "What shape is the orange object?|star" \
		"How many squares are there?|two" "What is at the top right?|a blue square"; do \
		q="$${qa%|*}"; echo "Q: $$q"; \
		a=$$($(BUILD)/vtok chat --recipe llava-1.5 --model $(SHAPES)/llava --llm $(SHAPES)/llava/llm \
			--image $(DEMO_SCENE) -p "$$q" 2>/dev/null) || exit 1; \
		echo "A: $$a    (the scene: $${qa#*|})"; \
	done
	@echo "== vtok zeroshot $(SHAPES)/demo/scene-2000002.png (a red star)"
	$(BUILD)/vtok zeroshot --model $(SHAPES)/clip --image $(SHAPES)/demo/scene-2000002.png \
		--labels "a red star,a red circle,a blue star,a green triangle,a yellow square"

test: test-release test-asan test-tsan test-aarch64 fuzz

test-release: build
	cd $(BUILD) && ctest --output-on-failure -j 1

test-asan: asan
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j 1

# The public API test (threads, shared pools) under ThreadSanitizer: must report nothing.
test-tsan:
	cmake -S . -B $(TSAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DVTOK_TSAN=ON >/dev/null
	cmake --build $(TSAN_BUILD) -j $(JOBS) --target test_api
	cd $(TSAN_BUILD) && TSAN_OPTIONS=halt_on_error=1:exitcode=66 ctest -L api --output-on-failure -j 1
# Every test of tests/tests.cmake (header, unit, kernels, image, parity_encoders*,
# e2e) with the aarch64 binaries under qemu-aarch64 and the Python checks and
# PyTorch references native; tests/blocks/*.cmake ones are disabled there.
test-aarch64: aarch64
	cd $(AARCH64_BUILD) && ctest --output-on-failure -j $(JOBS)

# Each fuzz target for VTOK_FUZZ_SECONDS (30 in make test), after replaying
# the regression corpus; fuzz-long runs each for FUZZ_LONG_SECONDS (10 min).
fuzz:
	VTOK_FUZZ_OPTIONAL=$${VTOK_FUZZ_OPTIONAL:-0} bash tests/fuzz/run_fuzz.sh $${VTOK_FUZZ_SECONDS:-30}

FUZZ_LONG_SECONDS ?= 600
fuzz-long:
	bash tests/fuzz/run_fuzz.sh $(FUZZ_LONG_SECONDS)

bench: build
	$(PY) bench/bench_encoders.py --vtok $(BUILD)/vtok

# Debian 12 packages for building, testing and benchmarking; the arm64 ones
# (multiarch) and the cross compiler and qemu-user for test-aarch64.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
deps:
	$(SUDO) dpkg --add-architecture arm64
	$(SUDO) apt-get update
	$(SUDO) apt-get install -y --no-install-recommends \
		build-essential cmake pkg-config libcjson-dev libjpeg62-turbo-dev libpng-dev libwebp-dev zlib1g-dev \
		python3-pil python3-numpy python3-torch python3-jinja2 python3-pytest libmicrohttpd-dev \
		libopenmpi-dev openmpi-bin \
		clang-14 libclang-rt-14-dev gcc-aarch64-linux-gnu qemu-user libcjson-dev:arm64 libjpeg62-turbo-dev:arm64 libpng-dev:arm64 \
		libwebp-dev:arm64 zlib1g-dev:arm64
	command -v npm >/dev/null 2>&1 || $(SUDO) apt-get install -y --no-install-recommends nodejs npm
	$(MAKE) npm-deps

# The JS references of the text tests (npm registry, pinned by package-lock.json).
npm-deps:
	for d in tests/jinja tests/text; do [ ! -f $$d/package-lock.json ] || (cd $$d && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error); done

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD) $(AARCH64_BUILD) out
