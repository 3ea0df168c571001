# Thin wrapper over CMake; the build lives in build/ (spillway at build/spillway).
JOBS ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: all test asan tsan layers bench clean
all:
	cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build build -j$(JOBS)
test:
	./scripts/test.sh
asan:
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DSPW_SANITIZE=ON >/dev/null
	cmake --build build-asan -j$(JOBS)
	cd build-asan && ctest -L unit --output-on-failure
tsan:
	./scripts/tsan.sh
layers:
	./scripts/layers.sh
bench:
	bench/run.sh log
clean:
	rm -rf build build-asan build-tsan build-lite build-fuzz
