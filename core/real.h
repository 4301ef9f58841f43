// The scalar type of the model's maths.
//
// The CPU reference is written once against `real`. The program builds it as
// float; the test suite also builds the very same source with -DREFORMER_F64 so
// that every gradient can be checked against finite differences in double
// precision (tight tolerances), and the float build against the double build.
#pragma once
#include <math.h>

#ifdef REFORMER_F64
typedef double real;
#define R_EXP exp
#define R_LOG log
#define R_SQRT sqrt
#define R_TANH tanh
#define R_FABS fabs
#define R_ERF erf
#define REAL_NAME "f64"
#else
typedef float real;
#define R_EXP expf
#define R_LOG logf
#define R_SQRT sqrtf
#define R_TANH tanhf
#define R_FABS fabsf
#define R_ERF erff
#define REAL_NAME "f32"
#endif

// Attention mask values (REFORMER.md, LSH step 6). Masked logits are *replaced*
// by these constants, as trax and Hugging Face do, so no gradient flows through
// them. exp(-1e9 - max) is exactly 0 in float and double alike.
#define MASK_CAUSAL ((real)-1e9)
#define MASK_SELF ((real)-1e5)
