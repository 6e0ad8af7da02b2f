# syncbn — the README's two commands, and a few more.
#   make demo   install what is missing, build, run the main job
#   make test   install what is missing, build (release + ASan/UBSan + MPICH), run every test and the fuzzers
#   make test-mpich  the MPI tests again, built against MPICH and run with its mpiexec (part of make test)
#   make fuzz   build the libFuzzer harnesses (clang, tests/fuzz/) and run each FUZZ_SECONDS over its corpus
#   make bench  build and run the benchmarks (PyTorch, oneDNN and a copy as peers)
BUILD      ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
MPICH_BUILD ?= build-mpich
MPICH_CC   ?= /usr/bin/mpicc.mpich
MPICH_EXEC ?= /usr/bin/mpiexec.mpich
FUZZ_SECONDS ?= 30
JOBS       ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all deps build build-asan build-mpich test test-release test-asan test-mpich fuzz demo bench install clean

all: build

deps:
	bash scripts/install-deps.sh

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release -DSYNCBN_WERROR=ON $(CMAKE_FLAGS)
	cmake --build $(BUILD) -j $(JOBS)

# -O1, as the sanitizers' documentation advises: the checks are the same, and the whole-tool tests
# (training steps under mpiexec) run several times faster than at -O0.
build-asan: deps
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_FLAGS_DEBUG="-g -O1" -DSYNCBN_WERROR=ON \
	      -DSYNCBN_SANITIZE=ON -DSYNCBN_BUILD_BENCH=OFF $(CMAKE_FLAGS)
	cmake --build $(ASAN_BUILD) -j $(JOBS)

test-release: build
	cd $(BUILD) && ctest --output-on-failure

# Without the tests labelled long (whole-tool scenarios the release build runs).
test-asan: build-asan
	cd $(ASAN_BUILD) && ctest --output-on-failure -LE long

# MPICH beside Open MPI (which stays the default mpicc/mpiexec): named explicitly, and checked with ldd.
build-mpich: deps
	cmake -S . -B $(MPICH_BUILD) -DCMAKE_BUILD_TYPE=Release -DSYNCBN_WERROR=ON -DSYNCBN_BUILD_BENCH=OFF \
	      -DMPI_C_COMPILER=$(MPICH_CC) -DMPIEXEC_EXECUTABLE=$(MPICH_EXEC) $(CMAKE_FLAGS)
	cmake --build $(MPICH_BUILD) -j $(JOBS)
	@for f in $(MPICH_BUILD)/syncbn $(MPICH_BUILD)/libsyncbn.so $(MPICH_BUILD)/tests/test_syncbn_mpi; do \
	  if ! ldd $$f | grep -q 'libmpich\.so' || ldd $$f | grep -q 'libmpi\.so'; then \
	    echo "$$f does not link MPICH alone:"; ldd $$f | grep -i mpi; exit 1; fi; done

# The tests labelled mpi (every test that runs MPI) but not long, with MPICH's mpiexec.
test-mpich: build-mpich
	cd $(MPICH_BUILD) && ctest --output-on-failure -L mpi -LE long

# Harnesses are listed in tests/fuzz/fuzzers.cmake; any crash, leak, timeout or out-of-memory fails.
fuzz: deps
	cmake -S tests/fuzz -B $(FUZZ_BUILD) -DCMAKE_C_COMPILER=clang -DSYNCBN_FUZZ_SECONDS=$(FUZZ_SECONDS)
	cmake --build $(FUZZ_BUILD) -j $(JOBS)
	cd $(FUZZ_BUILD) && ctest --output-on-failure

test: test-release test-asan fuzz test-mpich

demo: build
	bash scripts/demo.sh $(BUILD)

bench: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)
	cmake --build $(BUILD) -j $(JOBS)
	bash bench/run.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD) $(MPICH_BUILD)
