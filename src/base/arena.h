/** A bump allocator: many small allocations freed together (per request, per load). */
#ifndef BASE_ARENA_H
#define BASE_ARENA_H

#include <stddef.h>

struct arena; /* opaque */

/** `limit` bounds the total bytes the arena may hand out (0 = no bound). */
struct arena *arena_new(size_t block_size, size_t limit);
void arena_free(struct arena *a);
/** 16-byte aligned, zeroed memory; NULL when the limit is reached or malloc fails. */
void *arena_alloc(struct arena *a, size_t n);
/** Copies a string (n bytes, NUL added). */
char *arena_strndup(struct arena *a, const char *s, size_t n);
/** Forgets every allocation but keeps the first block for reuse. */
void arena_reset(struct arena *a);
size_t arena_used(const struct arena *a);

#endif
