/* AVX-512 (F, BW, VL, VNNI) kernels: the bodies of kernels_x86.h built with vpdpbusd for the
 * u8 x s8 dots and the 32 vector registers AVX-512 gives (larger register tiles). See
 * kernels_avx2.c for how the target is selected. */
#include "engine/kernels_impl.h"

#if defined(__x86_64__)
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")

#define KX(name) name##_avx512
#define KX_VNNI 1
#define KX_NR_F 4
#define KX_NC_F 4
#define KX_NR_Q8 4
#define KX_NC_Q8 4
#define KX_NR_K 2
#define KX_NC_K 4
#include "engine/kernels_x86.h"

void kern_ops_avx512(struct kern_ops *o)
{
    KX(fill_ops)(o);
}

#pragma GCC pop_options
#else
void kern_ops_avx512(struct kern_ops *o)
{
    (void)o;
}
#endif
