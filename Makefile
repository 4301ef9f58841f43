# reformer: `make` builds build/reformer; `make test` builds and runs every test;
# `make setup` installs the Debian packages the build needs.
# `make` alone builds `all`, whatever an included makefile defines first.
.DEFAULT_GOAL := all
CC ?= gcc
CFLAGS ?= -O3
# The build machine's instruction set (AVX2 and FMA on any x86-64 of the last
# decade), as llm.c builds: -O3 then vectorises the row loops (softmax, GELU,
# layer norm) 8 floats wide; with the attention changes of the same commit,
# about 1.27x the default run's tokens/s (experiments/defaults/results.md).
# -std=c11 keeps -ffp-contract=off, so no multiply-add is fused: these flags
# alone give the same loss, bit for bit, as -O2. Where the compute nodes
# differ from the machine that builds: make ARCH_FLAGS= (portable x86-64) or
# ARCH_FLAGS=-march=x86-64-v3 (docs/distributed.md).
ARCH_FLAGS ?= $(if $(shell $(CC) -march=native -x c -c /dev/null -o /dev/null 2>/dev/null && echo yes),-march=native)
CFLAGS += $(ARCH_FLAGS)
CFLAGS += -std=c11 -D_DEFAULT_SOURCE -Wall -Wextra -Wno-unknown-pragmas -fopenmp -Icore -Iio -MMD -MP
LDLIBS = -lopenblas -lm
# glibc's vector maths (libmvec: erf, exp on 4 floats at once, core/real.h),
# where the C library has it (x86-64 glibc >= 2.35).
ifneq ($(shell printf 'typedef float v4 __attribute__((vector_size(16)));\nv4 _ZGVbN4v_erff(v4);\nint main(void) { v4 x = {0}; x = _ZGVbN4v_erff(x); return (int)x[0]; }\n' | $(CC) -x c - -o /dev/null -lmvec 2>/dev/null && echo yes),)
CFLAGS += -DREFORMER_MVEC
LDLIBS += -lmvec
endif
LDFLAGS += -fopenmp

# Every object is rebuilt when the compiler or its global flags change (`make
# ARCH_FLAGS=` after `make`, or a pull that changes them): build/flags-state
# holds them and is rewritten (made newer) only when they change, as
# build/cuda-state below does for nvcc and NCCL.
FLAGS_STATE := build/flags-state
FLAGS_STATE_NOW := $(CC) $(CFLAGS) | $(CXX)
$(shell mkdir -p build && echo '$(FLAGS_STATE_NOW)' | cmp -s - $(FLAGS_STATE) || echo '$(FLAGS_STATE_NOW)' > $(FLAGS_STATE))

# HDF5 (checkpoints, metrics): Debian's serial build keeps its headers and
# libraries out of the default paths. Only io/, launch/ and the float tests
# see them: core/ must never include HDF5 (DESIGN.md), so it compiles without.
HDF5_CFLAGS := $(shell pkg-config --cflags hdf5-serial 2>/dev/null || echo -I/usr/include/hdf5/serial)
HDF5_LIBS := $(shell pkg-config --libs hdf5-serial 2>/dev/null || echo -lhdf5_serial) -lz
build/f32/io/%.o build/f32/launch/%.o build/f32/tests/%.o build/f64/io/%.o build/f64/tests/hf_dump.o: \
    CFLAGS += $(HDF5_CFLAGS)

# libzip (enwik8.zip, .npz images) and libpng (PNG images), also for io/'s users only.
ZIP_LIBS := $(shell pkg-config --libs libzip 2>/dev/null || echo -lzip)
# SentencePiece (io/tokenizer.cc, the one C++ file: the library is C++; the
# rest of io/ calls it through io/tokenizer.h's C interface).
CXX ?= g++
SPM_LIBS := -lsentencepiece_train -lsentencepiece -lstdc++
PNG_LIBS := $(shell pkg-config --libs libpng 2>/dev/null || echo -lpng)
IO_LIBS := $(HDF5_LIBS) $(ZIP_LIBS) $(SPM_LIBS) $(PNG_LIBS)

# dist/: over MPI when mpicc is found, else the one-process implementation.
MPICC := $(shell command -v mpicc 2>/dev/null)
ifneq ($(MPICC),)
MPI_CFLAGS := $(shell mpicc --showme:compile)
MPI_LIBS := $(shell mpicc --showme:link)
DIST_OBJ := build/f32/dist/dist_mpi.o build/f32/dist/dist_env.o
DIST_PROGRAMS := build/bench_collectives build/dist_selftest build/parallel_check build/dist_bench build/sort_check
else
DIST_OBJ := build/f32/dist/dist_single.o build/f32/dist/dist_env.o
endif

CORE_SRC := $(wildcard core/*.c)
IO_SRC := $(wildcard io/*.c)
IO_CXX_SRC := $(wildcard io/*.cc)
CORE_OBJ := $(CORE_SRC:%.c=build/f32/%.o)
CORE64_OBJ := $(CORE_SRC:%.c=build/f64/%.o)
IO_OBJ := $(IO_SRC:%.c=build/f32/%.o) $(IO_CXX_SRC:%.cc=build/f32/%.o)
IO64_OBJ := $(IO_SRC:%.c=build/f64/%.o) $(IO_CXX_SRC:%.cc=build/f32/%.o)

# Tests: test_*_f64.c link the double-precision core (tight finite-difference
# checks); the others link the float core the program uses.
TEST64_SRC := $(wildcard tests/test_*_f64.c)
TEST32_SRC := $(filter-out $(TEST64_SRC),$(wildcard tests/test_*.c))
TEST_BIN := $(TEST64_SRC:tests/%.c=build/tests/%) $(TEST32_SRC:tests/%.c=build/tests/%)

# The CUDA backend and its op-by-op test, when nvcc is found (cuda/cuda.mk).
# Its rules come first in the file, so name the default goal explicitly.
.DEFAULT_GOAL := all
-include cuda/cuda.mk

# NCCL: all-reduce, broadcast and all-to-all of device buffers
# (dist/dist_nccl.c), built when the CUDA runtime headers and NCCL (nccl.h,
# libnccl.so) are found; then bench_collectives gains --nccl. Without them,
# --nccl says so and exits 77. NCCL_HOME (optional) is where NCCL is
# installed; when set, only there is searched (`make NCCL_HOME=/nonexistent`
# builds without NCCL).
NCCL_CUDA_HOME := $(or $(CUDA_HOME),/usr/local/cuda)
NCCL_H := $(firstword $(wildcard $(addsuffix /include/nccl.h,$(or $(NCCL_HOME),$(NCCL_CUDA_HOME) /usr/local /usr))))
NCCL_SO := $(firstword $(wildcard $(addsuffix /libnccl.so,$(if $(NCCL_HOME),$(NCCL_HOME)/lib $(NCCL_HOME)/lib64, \
             $(NCCL_CUDA_HOME)/lib $(NCCL_CUDA_HOME)/lib64 /usr/local/lib /usr/lib/x86_64-linux-gnu /usr/lib64))))
CUDART_H := $(wildcard $(NCCL_CUDA_HOME)/include/cuda_runtime_api.h)
ifneq ($(and $(NCCL_H),$(NCCL_SO),$(CUDART_H)),)
NCCL_OBJ := build/f32/dist/dist_nccl.o
NCCL_LIBDIR := $(patsubst %/,%,$(dir $(NCCL_SO)))
NCCL_LIBS := -L$(NCCL_LIBDIR) -Wl,-rpath,$(NCCL_LIBDIR) -L$(NCCL_CUDA_HOME)/lib64 -Wl,-rpath,$(NCCL_CUDA_HOME)/lib64 \
             -lnccl -lcudart
# -fPIC: the object is also the whole of the NCCL module below.
build/f32/dist/dist_nccl.o build/f32/dist/bench_collectives.o: CFLAGS += -DREFORMER_NCCL -fPIC \
    $(addprefix -I,$(sort $(NCCL_CUDA_HOME)/include $(patsubst %/,%,$(dir $(NCCL_H)))))
build/bench_collectives: $(NCCL_OBJ)
# With the CUDA backend, reformer trains on several GPUs through the module
# build/libreformer_nccl.so, loaded like the CUDA module (for device=cuda on
# more than one rank only, so other runs never load NCCL). The module calls
# back into the program's dist/ (MPI) for the communicator id and errors:
# build/reformer exports those few functions (dist/nccl_module.exports)
# rather than everything (-rdynamic), so no other symbol of the program can
# interpose on the modules' own.
ifneq ($(CUDA_MODULE),)
NCCL_MODULE := build/libreformer_nccl.so
REFORMER_EXPORTS := -Wl,--dynamic-list=dist/nccl_module.exports
$(NCCL_MODULE): build/f32/dist/dist_nccl.o
	$(CC) $(LDFLAGS) -shared -o $@ $^ $(NCCL_LIBS)
build/f32/launch/cli.o build/f32/tests/test_dist.o: CFLAGS += -DREFORMER_NCCL
endif
endif

.PHONY: all test test-cuda test-hf test-docs test-slurm setup setup-hf clean roofline device-deps device-check device-check-rehearsal
# Keep the objects of pattern-rule chains (tests), so `make test` rebuilds
# only what changed.
.SECONDARY:
all: build/reformer $(CUDA_MODULE) $(NCCL_MODULE) $(DIST_PROGRAMS)

build/f32/dist/%.o: dist/%.c $(FLAGS_STATE)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Idist $(MPI_CFLAGS) -c $< -o $@

build/bench_collectives: build/f32/dist/bench_collectives.o $(DIST_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(MPI_LIBS) $(NCCL_LIBS) -lm

build/dist_selftest: build/f32/dist/dist_selftest.o $(DIST_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(MPI_LIBS)

build/dist_bench: build/f32/dist/dist_bench.o build/f32/dist/data_parallel.o $(DIST_OBJ) $(CORE_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(MPI_LIBS) $(LDLIBS)

build/parallel_check: build/f32/dist/parallel_check.o build/f32/dist/data_parallel.o $(DIST_OBJ) $(CORE_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(MPI_LIBS) $(LDLIBS)

build/sort_check: build/f32/dist/sort_check.o build/f32/dist/data_parallel.o $(DIST_OBJ) $(CORE_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(MPI_LIBS) $(LDLIBS)

# reformer trains over MPI when built with it (dist_mpi.o; one process
# otherwise). launch/ sees dist/'s headers, which include no MPI header.
LAUNCH_OBJ := $(patsubst %.c,build/f32/%.o,$(wildcard launch/*.c))
# The CUDA and NCCL modules (when built) are loaded at run time, not linked.
build/f32/launch/%.o: CFLAGS += -Idist
build/reformer: $(LAUNCH_OBJ) build/f32/dist/data_parallel.o build/f32/dist/agree.o $(DIST_OBJ) $(CORE_OBJ) $(IO_OBJ) \
                | $(CUDA_MODULE) $(NCCL_MODULE)
	$(CC) $(LDFLAGS) $(REFORMER_EXPORTS) -o $@ $(filter %.o,$^) $(MPI_LIBS) $(LDLIBS) $(IO_LIBS) -ldl
build/reformer: $(if $(NCCL_MODULE),dist/nccl_module.exports)  # relink when the list changes

# Objects compiled differently with and without nvcc or NCCL are rebuilt when
# that changes (`make` after `make NVCC=`): build/cuda-state holds what was
# found and is rewritten (made newer) only when it changes.
CUDA_STATE := build/cuda-state
CUDA_STATE_NOW := cuda-$(if $(NVCC),on,off)-nccl-$(if $(NCCL_MODULE),on,off)
$(shell mkdir -p build && echo $(CUDA_STATE_NOW) | cmp -s - $(CUDA_STATE) || echo $(CUDA_STATE_NOW) > $(CUDA_STATE))
build/f32/launch/cli.o build/f32/tests/test_cli.o build/f32/tests/test_dist.o build/f32/dist/bench_collectives.o: \
    $(CUDA_STATE)

build/f32/%.o: %.c $(FLAGS_STATE)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

build/f64/%.o: %.c $(FLAGS_STATE)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DREFORMER_F64 -c $< -o $@

# io/tokenizer.cc holds no float of the model: one object serves both builds.
# CFLAGS' include paths apply (cuda/device_check.sh puts its carried headers there).
build/f32/%.o: %.cc $(FLAGS_STATE)
	@mkdir -p $(dir $@)
	$(CXX) -O2 -std=c++17 -Wall -Wextra $(filter -I%,$(CFLAGS)) -MMD -MP -c $< -o $@

build/tests/%_f64: build/f64/tests/%_f64.o build/f64/tests/gradcheck.o $(CORE64_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcriterion

build/tests/%: build/f32/tests/%.o build/f32/tests/gradcheck.o $(CORE_OBJ) $(IO_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(IO_LIBS) -lcriterion

test: build/reformer $(DIST_PROGRAMS) $(TEST_BIN)
	@tests/run_all.sh $(TEST_BIN)

# Every op on the GPU against the CPU reference; exits 77 with SKIPPED when
# there is no GPU (a skip is not a pass: CPU-only machines run `make test`).
test-cuda: build/test_cuda
	build/test_cuda

setup:
	@./launch/setup.sh

# launch/slurm/reformer.sbatch on a real one-node SLURM cluster (munged,
# slurmctld, slurmd started privately in a temporary directory; make setup
# installs them): preemption by USR1, the time-limit warning and scontrol
# requeue, each resumed to the same losses, and two srun-started ranks.
# Needs root (its slurmd starts the jobs); about five minutes.
test-slurm: build/reformer
	@tests/slurm/test_slurm.sh

# Hugging Face interop (reformer export-hf / import-hf): `make setup-hf`
# makes .venv-hf (Debian's torch, pinned transformers); `make test-hf`
# compares this project with transformers' Reformer (tests/hf/), through
# tests/hf_dump.c, which loads a checkpoint and dumps per-position losses,
# bucket ids and gradients, in float32 and (hf_dump_f64) float64.
HF_DUMP := build/tests/hf_dump build/tests/hf_dump_f64
build/tests/hf_dump: build/f32/tests/hf_dump.o $(CORE_OBJ) $(IO_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(IO_LIBS)
build/tests/hf_dump_f64: build/f64/tests/hf_dump.o $(CORE64_OBJ) $(IO64_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(IO_LIBS)
setup-hf:
	@./launch/hf/setup.sh
# Every command of README.md and docs/*.md runs as written (also part of
# make test, through tests/test_cli.c).
test-docs: build/reformer
	@python3 tests/docs_commands.py

test-hf: build/reformer $(HF_DUMP)
	@test -x .venv-hf/bin/python || { echo "test-hf: .venv-hf is missing: run make setup-hf first" >&2; exit 2; }
	@.venv-hf/bin/python tests/hf/test_hf.py

clean:
	rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)

# The roofline table (experiments/roofline/): FLOPs and bytes of every op of
# one training step of each model in configs.txt, computed without a GPU.
build/roofline: build/f32/experiments/roofline/roofline.o $(CORE_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
roofline: build/roofline
	build/roofline experiments/roofline/configs.txt > experiments/roofline/roofline.tsv
	build/roofline --md experiments/roofline/configs.txt > experiments/roofline/results.md

# The LSH leak measurement (experiments/lsh_causality/): how many earlier
# losses a changed token moves, for a fresh model or a checkpoint.
build/f32/experiments/lsh_causality/leak.o: CFLAGS += $(HDF5_CFLAGS)
build/lsh_leak: build/f32/experiments/lsh_causality/leak.o $(CORE_OBJ) $(IO_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(IO_LIBS)
# The same in double precision (a float checkpoint loads widened): what moves
# there by more than rounding is a leak, not the float grouping of sums.
build/f64/experiments/lsh_causality/leak.o: CFLAGS += $(HDF5_CFLAGS)
build/lsh_leak_f64: build/f64/experiments/lsh_causality/leak.o $(CORE64_OBJ) $(IO64_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(IO_LIBS)

# PNG's own lossless size of image sets (experiments/images/): libpng at
# maximum compression, in bits per subpixel.
build/png_size: build/f32/experiments/images/png_size.o build/f32/io/image_png.o
	$(CC) $(LDFLAGS) -o $@ $^ $(PNG_LIBS)

# The lent GPU machine's check (cuda/README.md, "On a lent GPU"): device-deps
# downloads the Debian packages it carries into .devdeps/ (here, once);
# device-check runs it (there; without a GPU it builds, then says SKIPPED).
device-deps:
	cuda/fetch_device_deps.sh
device-check:
	cuda/device_check.sh
# The whole check, here, as that machine meets it (fresh clone, only the
# carried packages visible; root): must end SKIPPED without a GPU.
device-check-rehearsal:
	cuda/rehearse_device_check.sh
