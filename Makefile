# Thin wrapper over CMake. `make demo` builds and runs the shipped tiny model;
# `make test` runs every test layer in a release build and again under
# AddressSanitizer + UBSan.
BUILD      ?= build
ASAN_BUILD ?= build-asan
TSAN_BUILD ?= build-tsan
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
PY         ?= /usr/bin/python3

.PHONY: all build asan demo test test-release test-asan test-tsan fuzz bench clean deps

all: build

build:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

asan:
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DVTOK_SANITIZE=ON >/dev/null
	cmake --build $(ASAN_BUILD) -j $(JOBS)

demo: build
	$(BUILD)/vtok info --model models/tiny-clip
	$(BUILD)/vtok encode --model models/tiny-clip --image models/sample.jpg \
		--layers all --out out/demo
	$(BUILD)/vtok run --recipe llava-1.5 --model models/tiny-llava --image models/sample.jpg \
		--out out/demo-llava --dump out/demo-llava/stages

test: test-release test-asan test-tsan fuzz

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

fuzz:
	VTOK_FUZZ_OPTIONAL=$${VTOK_FUZZ_OPTIONAL:-0} bash tests/fuzz/run_fuzz.sh $${VTOK_FUZZ_SECONDS:-20}

bench: build
	$(PY) bench/bench_encoders.py --vtok $(BUILD)/vtok

# Debian 12 packages for building, testing and benchmarking.
deps:
	$(shell [ "$$(id -u)" = 0 ] || echo sudo) apt-get install -y --no-install-recommends \
		build-essential cmake pkg-config libcjson-dev libjpeg62-turbo-dev libpng-dev libwebp-dev python3-pil python3-numpy python3-torch clang-14 libclang-rt-14-dev

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD) out
