/* AVX2 + FMA + F16C kernels. The project is compiled for generic x86-64: everything in this
 * file is built for that target by the pragma below and only called after kern_init() saw
 * the CPU support it. Bodies are in kernels_x86.h (shared with the AVX-512 build). */
#include "engine/kernels_impl.h"

#if defined(__x86_64__)
#include <immintrin.h> /* before the target switch: the intrinsics carry their own targets */
/* GCC: a target pragma for the rest of the file; clang (the libFuzzer build) has no such
 * pragma and takes the same features as an attribute applied to every function below. */
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#endif

#define KX(name) name##_avx2
#define KX_VNNI 0
#define KX_NR_F 4
#define KX_NC_F 2
#define KX_NR_Q8 2
#define KX_NC_Q8 4
#define KX_NR_K 2
#define KX_NC_K 2
#include "engine/kernels_x86.h"

void kern_ops_avx2(struct kern_ops *o)
{
    KX(fill_ops)(o);
}

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#else
void kern_ops_avx2(struct kern_ops *o)
{
    (void)o;
}
#endif
