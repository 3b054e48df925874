/* libFuzzer harness for index files: ann_load_mem must either refuse the bytes with a message
 * or return an index that searches without reading outside its arrays (the loader validates
 * list offsets, ids and graph links). A loaded index is searched with a few queries, with
 * and without an exclusion set; hits must be valid ids. Seeds: `test_ann --write-corpus`. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ann/ann.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* the loader needs the buffer aligned as a mapped file would be */
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    struct err e;
    err_clear(&e);
    struct ann_index *idx = ann_load_mem(buf, size, &e);
    if (!idx) {
        if (e.code == ERR_OK || !e.msg[0]) abort(); /* a refusal always says why */
        free(buf);
        return 0;
    }
    int dim = ann_dim(idx);
    size_t n = ann_size(idx);
    float *q = calloc((size_t)dim, sizeof *q);
    struct ann_hit hits[8];
    uint32_t ex[3] = {0, 1, 2};
    for (int t = 0; q && t < 3; t++) {
        for (int j = 0; j < dim; j++) q[j] = (float)((j * 7 + t * 13) % 5) - 2.0f;
        struct ann_search_opts o = {.k = 8, .nprobe = 1 + t * 3, .ef = 8 + t * 8};
        if (t == 2) {
            o.exclude = ex;
            o.n_exclude = 3;
        }
        int r = ann_search(idx, q, &o, NULL, hits);
        if (r < 0 || r > 8) abort();
        for (int i = 0; i < r; i++)
            if (hits[i].id >= n || (t == 2 && hits[i].id < 3)) abort();
    }
    free(q);
    ann_free(idx);
    free(buf);
    return 0;
}
