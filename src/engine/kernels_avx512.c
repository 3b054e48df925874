/* AVX-512 (F, BW, VL, VNNI) kernels; see kernels_avx2.c. */
#include <string.h>

#include "engine/kernels_impl.h"

void kern_ops_avx512(struct kern_ops *o)
{
    memset(o, 0, sizeof *o);
}
