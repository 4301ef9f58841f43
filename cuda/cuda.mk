# cuda/cuda.mk: the CUDA backend, for the main Makefile to `-include`.
#
# When nvcc is found (on PATH, else /usr/local/cuda/bin/nvcc) this defines
#   CUDA_OBJ     the backend object (build/cuda/backend_cuda.o)
#   CUDA_LIBS    what a program linking it needs (cudart, cuBLAS, libstdc++)
#   CUDA_CFLAGS  -DREFORMER_CUDA and the CUDA include path, for C files that
#                call backend_cuda()
# plus the rules for build/cuda/%.o and the op-by-op test build/test_cuda.
# Without nvcc it defines nothing: the build is CPU-only.
#
# It relies on the main Makefile's CC, CFLAGS, LDFLAGS, LDLIBS, CORE_OBJ and
# its build/f32/%.o pattern rule (core objects in float).

NVCC := $(or $(shell command -v nvcc 2>/dev/null),$(wildcard /usr/local/cuda/bin/nvcc))

ifneq ($(NVCC),)
# The toolkit root: /usr/local/cuda for /usr/local/cuda/bin/nvcc.
CUDA_HOME ?= $(patsubst %/bin/,%,$(dir $(NVCC)))
CUDA_OBJ := build/cuda/backend_cuda.o
CUDA_LIBS := -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcudart -lcublas -lstdc++
CUDA_CFLAGS := -DREFORMER_CUDA -I$(CUDA_HOME)/include
NVCCFLAGS ?= -O2
NVCCFLAGS += -std=c++17 -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 \
             -Icore -Xcompiler -Wall,-Wextra

build/cuda/%.o: cuda/%.cu cuda/backend_cuda.h core/backend.h core/config.h core/real.h core/rng.h
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c $< -o $@

# The test's C file is built by the float pattern rule, with the CUDA flags.
build/f32/cuda/test_cuda.o: CFLAGS += $(CUDA_CFLAGS)

build/test_cuda: build/f32/cuda/test_cuda.o $(CUDA_OBJ) $(CORE_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(CUDA_LIBS) $(LDLIBS)
endif
