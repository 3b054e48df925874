#include "base/arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct arena_block {
    struct arena_block *next;
    size_t size, used;
    _Alignas(16) unsigned char data[];
};

struct arena {
    struct arena_block *head; /* current block; older blocks follow */
    size_t block_size, limit, total;
};

struct arena *arena_new(size_t block_size, size_t limit)
{
    struct arena *a = calloc(1, sizeof *a);
    if (!a) return NULL;
    a->block_size = block_size ? block_size : 64 * 1024;
    a->limit = limit;
    return a;
}

void arena_free(struct arena *a)
{
    if (!a) return;
    struct arena_block *b = a->head;
    while (b) {
        struct arena_block *next = b->next;
        free(b);
        b = next;
    }
    free(a);
}

void *arena_alloc(struct arena *a, size_t n)
{
    if (!a) return NULL;
    size_t need = (n + 15) & ~(size_t)15;
    if (need < n) return NULL; /* overflow */
    if (a->limit && (a->total + need > a->limit || a->total + need < a->total)) return NULL;
    struct arena_block *b = a->head;
    if (!b || b->size - b->used < need) {
        size_t size = need > a->block_size ? need : a->block_size;
        if (size > SIZE_MAX - sizeof *b) return NULL;
        b = malloc(sizeof *b + size);
        if (!b) return NULL;
        b->size = size;
        b->used = 0;
        b->next = a->head;
        a->head = b;
    }
    void *p = b->data + b->used;
    b->used += need;
    a->total += need;
    memset(p, 0, n);
    return p;
}

char *arena_strndup(struct arena *a, const char *s, size_t n)
{
    char *p = arena_alloc(a, n + 1);
    if (!p) return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

void arena_reset(struct arena *a)
{
    if (!a || !a->head) return;
    /* Keep the oldest block (the first allocated, normally block_size) and drop the rest. */
    struct arena_block *b = a->head, *keep = NULL;
    while (b) {
        struct arena_block *next = b->next;
        if (!next) keep = b;
        else free(b);
        b = next;
    }
    keep->used = 0;
    keep->next = NULL;
    a->head = keep;
    a->total = 0;
}

size_t arena_used(const struct arena *a)
{
    return a ? a->total : 0;
}
