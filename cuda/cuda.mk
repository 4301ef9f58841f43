# cuda/cuda.mk: the CUDA backend, for the main Makefile to `-include`.
#
# When nvcc is found (on PATH, else /usr/local/cuda/bin/nvcc) this defines
#   CUDA_OBJ     the backend object (build/cuda/backend_cuda.o, position-independent)
#   CUDA_MODULE  build/libreformer_cuda.so: the backend and the CUDA libraries,
#                which build/reformer loads (dlopen) for device=cuda only
#   CUDA_LIBS    what a program linking CUDA_OBJ needs (cudart, cuBLAS, libstdc++)
#   CUDA_CFLAGS  -DREFORMER_CUDA and the CUDA include path, for C files that
#                call backend_cuda()
# plus the rules for build/cuda/%.o, the module and the op-by-op test
# build/test_cuda. Without nvcc, or with `make NVCC=`, it defines nothing: the
# build is CPU-only and `reformer` refuses device=cuda.
#
# It relies on the main Makefile's CC, CFLAGS, LDFLAGS, LDLIBS, CORE_OBJ and
# its build/f32/%.o pattern rule (core objects in float).

NVCC := $(or $(shell command -v nvcc 2>/dev/null),$(wildcard /usr/local/cuda/bin/nvcc))

ifneq ($(NVCC),)
# The toolkit root: /usr/local/cuda for /usr/local/cuda/bin/nvcc.
CUDA_HOME ?= $(patsubst %/bin/,%,$(dir $(NVCC)))
CUDA_OBJ := build/cuda/backend_cuda.o
# Folders of cuBLAS or CUB outside the toolkit (cuda/device_check.sh: from the
# image's or the carried wheels where the toolkit lacks them; cuda/find_cuda_parts.sh).
CUDA_EXTRA_INC ?=
CUDA_EXTRA_LIB ?=
CUDA_LIBS := -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 $(foreach d,$(CUDA_EXTRA_LIB),-L$(d) -Wl,-rpath,$(d)) \
             -lcudart -lcublas -lstdc++
CUDA_CFLAGS := -DREFORMER_CUDA -I$(CUDA_HOME)/include $(addprefix -I,$(CUDA_EXTRA_INC))
NVCCFLAGS ?= -O2
# The GPUs to build machine code for (compute capability x 10): Ampere (A100)
# and Hopper (H100, H200) by default; cuda/device_check.sh sets the one it finds.
CUDA_ARCHS ?= 80 90
NVCCFLAGS += -std=c++17 $(foreach a,$(CUDA_ARCHS),-gencode arch=compute_$(a),code=sm_$(a)) \
             -Icore $(addprefix -I,$(CUDA_EXTRA_INC)) -Xcompiler -Wall,-Wextra,-fPIC
CUDA_MODULE := build/libreformer_cuda.so

build/cuda/%.o: cuda/%.cu $(wildcard cuda/*.cuh) cuda/backend_cuda.h cuda/cuda.mk $(wildcard core/*.h)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c $< -o $@

$(CUDA_MODULE): $(CUDA_OBJ)
	$(CC) $(LDFLAGS) -shared -o $@ $^ $(CUDA_LIBS)

# The test's C file is built by the float pattern rule, with the CUDA flags;
# the launcher (cli.c loads the module) and its test only need to know it is there.
build/f32/cuda/test_cuda.o: CFLAGS += $(CUDA_CFLAGS) -Itests
build/f32/launch/cli.o build/f32/tests/test_cli.o build/f32/tests/test_dist.o: CFLAGS += -DREFORMER_CUDA -Icuda

# The measured ceilings (large GEMMs in fp32/TF32/bf16 through cuBLAS, a
# device-to-device copy) that cuda/device_check.sh sets the achieved rates against.
build/cuda_peak: build/cuda/cuda_peak.o
	$(CC) $(LDFLAGS) -o $@ $^ $(CUDA_LIBS)

build/test_cuda: build/f32/cuda/test_cuda.o build/f32/tests/gradcheck.o $(CUDA_OBJ) $(CORE_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(CUDA_LIBS) $(LDLIBS)
endif
