/* AVX2 + FMA + F16C kernels (compiled for generic x86-64; these functions carry target
 * attributes and are only called after kern_init() saw the CPU support them). */
#include <string.h>

#include "engine/kernels_impl.h"

void kern_ops_avx2(struct kern_ops *o)
{
    memset(o, 0, sizeof *o);
}
