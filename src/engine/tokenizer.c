/* SentencePiece BPE tokenizer: vocabulary from GGUF metadata or llama2.c tokenizer.bin. */
#include "engine/tokenizer.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SPACE_ESC "\xe2\x96\x81" /* U+2581, SentencePiece's visible space */
#define MAX_VOCAB (1 << 22)

struct tok {
    int n_vocab;
    char *blob;    /* all pieces, back to back */
    uint32_t *off; /* (n_vocab) offset of piece i in blob */
    uint16_t *len; /* (n_vocab) */
    float *score;  /* (n_vocab) */
    uint8_t *type; /* (n_vocab) enum tok_type */
    int32_t *ht;   /* open-addressing piece -> id, -1 empty */
    size_t ht_mask;
    int byte_id[256]; /* id of <0xXX>, or -1 */
    int *special;     /* ids of control / user-defined tokens with text, longest first */
    int n_special;
    int bos, eos, unk;
    bool add_bos, add_space_prefix;
};

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h;
}

int tok_find(const struct tok *t, const char *piece, size_t len)
{
    size_t i = hash_bytes(piece, len) & t->ht_mask;
    for (;;) {
        int32_t id = t->ht[i];
        if (id < 0) return -1;
        if (t->len[id] == len && memcmp(t->blob + t->off[id], piece, len) == 0) return id;
        i = (i + 1) & t->ht_mask;
    }
}

static struct tok *tok_alloc(int n_vocab, size_t blob_bytes, struct err *err)
{
    struct tok *t = calloc(1, sizeof *t);
    if (!t) goto oom;
    t->n_vocab = n_vocab;
    t->blob = malloc(blob_bytes ? blob_bytes : 1);
    t->off = calloc((size_t)n_vocab, sizeof *t->off);
    t->len = calloc((size_t)n_vocab, sizeof *t->len);
    t->score = calloc((size_t)n_vocab, sizeof *t->score);
    t->type = calloc((size_t)n_vocab, sizeof *t->type);
    if (!t->blob || !t->off || !t->len || !t->score || !t->type) goto oom;
    t->bos = t->eos = t->unk = -1;
    return t;
oom:
    tok_free(t);
    err_set(err, ERR_NOMEM, "tokenizer: out of memory for %d tokens", n_vocab);
    return NULL;
}

static int cmp_special_len(const void *a, const void *b, void *ctx)
{
    const struct tok *t = ctx;
    int ia = *(const int *)a, ib = *(const int *)b;
    if (t->len[ia] != t->len[ib]) return t->len[ia] > t->len[ib] ? -1 : 1;
    return ia - ib;
}

static bool is_byte_piece(const char *p, size_t n)
{
    return n == 6 && p[0] == '<' && p[1] == '0' && p[2] == 'x' && isxdigit((unsigned char)p[3]) &&
           isxdigit((unsigned char)p[4]) && p[5] == '>';
}

/* Builds the hash index, the byte-token table and the special-token list once all pieces
 * and types are in. */
static int tok_finish(struct tok *t, struct err *err)
{
    size_t cap = 16;
    while (cap < (size_t)t->n_vocab * 2)
        cap <<= 1;
    t->ht = malloc(cap * sizeof *t->ht);
    t->special = malloc((size_t)t->n_vocab * sizeof *t->special);
    if (!t->ht || !t->special) return err_set(err, ERR_NOMEM, "tokenizer: out of memory");
    memset(t->ht, 0xff, cap * sizeof *t->ht);
    t->ht_mask = cap - 1;
    for (int i = 0; i < 256; i++)
        t->byte_id[i] = -1;
    for (int id = 0; id < t->n_vocab; id++) {
        const char *p = t->blob + t->off[id];
        size_t n = t->len[id];
        if (tok_find(t, p, n) < 0) { /* first of duplicates wins */
            size_t i = hash_bytes(p, n) & t->ht_mask;
            while (t->ht[i] >= 0)
                i = (i + 1) & t->ht_mask;
            t->ht[i] = id;
        }
        if (is_byte_piece(p, n)) {
            char hex[3] = {p[3], p[4], 0};
            unsigned v = (unsigned)strtoul(hex, NULL, 16);
            if (t->byte_id[v] < 0 &&
                (t->type[id] == TOK_TYPE_BYTE || t->type[id] == TOK_TYPE_UNDEFINED)) {
                t->byte_id[v] = id;
                t->type[id] = TOK_TYPE_BYTE;
            }
        }
        if (t->type[id] == TOK_TYPE_UNDEFINED) t->type[id] = TOK_TYPE_NORMAL;
        if ((t->type[id] == TOK_TYPE_CONTROL || t->type[id] == TOK_TYPE_USER_DEFINED) && n > 0)
            t->special[t->n_special++] = id;
    }
    qsort_r(t->special, (size_t)t->n_special, sizeof *t->special, cmp_special_len, t);
    return 0;
}

void tok_free(struct tok *t)
{
    if (!t) return;
    free(t->blob);
    free(t->off);
    free(t->len);
    free(t->score);
    free(t->type);
    free(t->ht);
    free(t->special);
    free(t);
}

static int opt_token_id(const struct gguf_file *f, const char *key, int n_vocab, int *out,
                        struct err *err)
{
    uint32_t v;
    int rc = gguf_get_u32(f, key, &v, err);
    if (rc == ERR_NOTFOUND) return 0;
    if (rc) return rc;
    if (v >= (uint32_t)n_vocab)
        return err_set(err, ERR_INVALID, "tokenizer: %s = %u is outside the vocabulary (%d)", key,
                       v, n_vocab);
    *out = (int)v;
    return 0;
}

struct tok *tok_load_gguf(const struct gguf_file *f, struct err *err)
{
    struct gguf_str model;
    int rc = gguf_get_str(f, "tokenizer.ggml.model", &model, err);
    if (rc == ERR_NOTFOUND) {
        err_set(err, ERR_INVALID, "tokenizer: no tokenizer.ggml.model in the file");
        return NULL;
    }
    if (rc) return NULL;
    if (!gguf_str_eq(model, "llama")) {
        err_set(err, ERR_UNSUPPORTED,
                "tokenizer: tokenizer.ggml.model '%.*s' is not supported (only 'llama', "
                "SentencePiece)",
                (int)(model.len > 64 ? 64 : model.len), model.ptr);
        return NULL;
    }
    const struct gguf_kv *ktok = gguf_find(f, "tokenizer.ggml.tokens");
    if (!ktok || ktok->type != GGUF_TYPE_ARRAY || ktok->arr_type != GGUF_TYPE_STRING) {
        err_set(err, ERR_INVALID, "tokenizer: tokenizer.ggml.tokens missing or not a string array");
        return NULL;
    }
    if (ktok->arr_n == 0 || ktok->arr_n > MAX_VOCAB) {
        err_set(err, ERR_INVALID, "tokenizer: tokenizer.ggml.tokens has %llu entries (1..%d)",
                (unsigned long long)ktok->arr_n, MAX_VOCAB);
        return NULL;
    }
    int n = (int)ktok->arr_n;
    const struct gguf_kv *ksc = gguf_find(f, "tokenizer.ggml.scores");
    if (ksc && (ksc->type != GGUF_TYPE_ARRAY || ksc->arr_type != GGUF_TYPE_FLOAT32 ||
                ksc->arr_n != ktok->arr_n)) {
        err_set(err, ERR_INVALID, "tokenizer: tokenizer.ggml.scores must be %d float32", n);
        return NULL;
    }
    const struct gguf_kv *kty = gguf_find(f, "tokenizer.ggml.token_type");
    if (kty && (kty->type != GGUF_TYPE_ARRAY ||
                (kty->arr_type != GGUF_TYPE_INT32 && kty->arr_type != GGUF_TYPE_UINT32) ||
                kty->arr_n != ktok->arr_n)) {
        err_set(err, ERR_INVALID, "tokenizer: tokenizer.ggml.token_type must be %d int32", n);
        return NULL;
    }
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        struct gguf_str ps = gguf_arr_str(ktok, (uint64_t)i);
        if (ps.len > TOK_MAX_PIECE) {
            err_set(err, ERR_INVALID, "tokenizer: token %d is %llu bytes long (max %d)", i,
                    (unsigned long long)ps.len, TOK_MAX_PIECE);
            return NULL;
        }
        total += ps.len;
    }
    struct tok *t = tok_alloc(n, total, err);
    if (!t) return NULL;
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        struct gguf_str ps = gguf_arr_str(ktok, (uint64_t)i);
        memcpy(t->blob + at, ps.ptr, ps.len);
        t->off[i] = (uint32_t)at;
        t->len[i] = (uint16_t)ps.len;
        at += ps.len;
        if (ksc) memcpy(&t->score[i], (const char *)ksc->data + 4 * (size_t)i, 4);
        if (!(t->score[i] == t->score[i])) t->score[i] = -1e30f; /* NaN would break the heap */
        if (kty) {
            int32_t ty;
            memcpy(&ty, (const char *)kty->data + 4 * (size_t)i, 4);
            t->type[i] = (ty >= 0 && ty <= 6) ? (uint8_t)ty : TOK_TYPE_NORMAL;
        } else {
            t->type[i] = TOK_TYPE_NORMAL;
        }
    }
    t->bos = 1 < n ? 1 : -1;
    t->eos = 2 < n ? 2 : -1;
    t->unk = 0;
    t->add_bos = true;
    t->add_space_prefix = true;
    if (opt_token_id(f, "tokenizer.ggml.bos_token_id", n, &t->bos, err) ||
        opt_token_id(f, "tokenizer.ggml.eos_token_id", n, &t->eos, err) ||
        opt_token_id(f, "tokenizer.ggml.unknown_token_id", n, &t->unk, err))
        goto fail;
    bool b;
    rc = gguf_get_bool(f, "tokenizer.ggml.add_bos_token", &b, err);
    if (rc == 0)
        t->add_bos = b;
    else if (rc != ERR_NOTFOUND)
        goto fail;
    rc = gguf_get_bool(f, "tokenizer.ggml.add_space_prefix", &b, err);
    if (rc == 0)
        t->add_space_prefix = b;
    else if (rc != ERR_NOTFOUND)
        goto fail;
    if (tok_finish(t, err)) goto fail;
    return t;
fail:
    tok_free(t);
    return NULL;
}

struct tok *tok_load_llama2c(const char *path, int n_vocab, struct err *err)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        err_set(err, ERR_IO, "%s: cannot open tokenizer: %m", path);
        return NULL;
    }
    struct tok *t = NULL;
    char *buf = NULL;
    long size = -1;
    if (fseek(fp, 0, SEEK_END) == 0) size = ftell(fp);
    if (size < 0 || size > (1L << 30) || fseek(fp, 0, SEEK_SET) != 0) {
        err_set(err, ERR_INVALID, "%s: not a llama2.c tokenizer (size %ld)", path, size);
        goto done;
    }
    buf = malloc((size_t)size + 1);
    if (!buf || fread(buf, 1, (size_t)size, fp) != (size_t)size) {
        err_set(err, ERR_IO, "%s: cannot read tokenizer", path);
        goto done;
    }
    t = tok_load_llama2c_mem(buf, (size_t)size, n_vocab, err);
    if (!t) err_prefix(err, "%s", path);
done:
    free(buf);
    fclose(fp);
    return t;
}

struct tok *tok_load_llama2c_mem(const void *data, size_t size, int n_vocab, struct err *err)
{
    const char *buf = data;
    if (n_vocab <= 0 || n_vocab > MAX_VOCAB) {
        err_set(err, ERR_INVALID, "tokenizer: vocabulary size %d out of range", n_vocab);
        return NULL;
    }
    if (size < 4) {
        err_set(err, ERR_INVALID, "tokenizer: %zu bytes is too short for tokenizer.bin", size);
        return NULL;
    }
    /* Two passes over the bytes: validate and size, then fill (spaces escaped to U+2581). */
    size_t pos = 4, total = 0;
    for (int i = 0; i < n_vocab; i++) {
        int32_t l;
        if (pos + 8 > size) goto trunc;
        memcpy(&l, buf + pos + 4, 4);
        if (l < 0 || l > TOK_MAX_PIECE / 3 || pos + 8 + (size_t)l > size) goto trunc;
        for (int j = 0; j < l; j++)
            total += buf[pos + 8 + j] == ' ' ? 3 : 1;
        pos += 8 + (size_t)l;
    }
    struct tok *t = tok_alloc(n_vocab, total, err);
    if (!t) return NULL;
    pos = 4;
    size_t at = 0;
    for (int i = 0; i < n_vocab; i++) {
        int32_t l;
        memcpy(&t->score[i], buf + pos, 4);
        if (!(t->score[i] == t->score[i])) t->score[i] = -1e30f; /* NaN would break the heap */
        memcpy(&l, buf + pos + 4, 4);
        t->off[i] = (uint32_t)at;
        for (int j = 0; j < l; j++) {
            char c = buf[pos + 8 + j];
            if (c == ' ') {
                memcpy(t->blob + at, SPACE_ESC, 3);
                at += 3;
            } else {
                t->blob[at++] = c;
            }
        }
        t->len[i] = (uint16_t)(at - t->off[i]);
        t->type[i] = TOK_TYPE_UNDEFINED; /* byte pieces found by tok_finish, others normal */
        pos += 8 + (size_t)l;
    }
    /* llama2.c's export writes BOS/EOS as "\n<s>\n" and "\n</s>\n": use the plain forms. */
    t->unk = 0;
    t->bos = n_vocab > 1 ? 1 : -1;
    t->eos = n_vocab > 2 ? 2 : -1;
    t->type[0] = TOK_TYPE_UNKNOWN;
    if (t->bos >= 0) {
        t->type[1] = TOK_TYPE_CONTROL;
        if (t->len[1] >= 3) {
            memcpy(t->blob + t->off[1], "<s>", 3);
            t->len[1] = 3;
        }
    }
    if (t->eos >= 0) {
        t->type[2] = TOK_TYPE_CONTROL;
        if (t->len[2] >= 4) {
            memcpy(t->blob + t->off[2], "</s>", 4);
            t->len[2] = 4;
        }
    }
    t->add_bos = true;
    t->add_space_prefix = true;
    if (tok_finish(t, err)) {
        tok_free(t);
        return NULL;
    }
    return t;
trunc:
    err_set(err, ERR_INVALID,
            "tokenizer: file ends early or has a bad token length "
            "(expected %d tokens)",
            n_vocab);
    return NULL;
}

int tok_n_vocab(const struct tok *t)
{
    return t->n_vocab;
}
int tok_bos(const struct tok *t)
{
    return t->bos;
}
int tok_eos(const struct tok *t)
{
    return t->eos;
}
bool tok_add_bos(const struct tok *t)
{
    return t->add_bos;
}

enum tok_type tok_token_type(const struct tok *t, int id)
{
    if (id < 0 || id >= t->n_vocab) return TOK_TYPE_UNDEFINED;
    return (enum tok_type)t->type[id];
}

const char *tok_piece(const struct tok *t, int id, size_t *len)
{
    if (id < 0 || id >= t->n_vocab) return NULL;
    if (len) *len = t->len[id];
    return t->blob + t->off[id];
}

/* ---- encoding ---- */

struct sym {
    int prev, next;
    uint32_t start, n; /* byte range in the escaped text; n == 0 once merged away */
};

struct bigram {
    float score;
    int left;
    uint32_t size; /* combined length when queued: stale if the symbols changed */
    int id;
};

/* Max-heap order: higher score first, then the leftmost pair. */
static bool bigram_before(const struct bigram *a, const struct bigram *b)
{
    if (a->score != b->score) return a->score > b->score;
    return a->left < b->left;
}

static void heap_push(struct bigram *h, int *n, struct bigram b)
{
    int i = (*n)++;
    h[i] = b;
    while (i > 0) {
        int p = (i - 1) / 2;
        if (!bigram_before(&h[i], &h[p])) break;
        struct bigram tmp = h[i];
        h[i] = h[p];
        h[p] = tmp;
        i = p;
    }
}

static struct bigram heap_pop(struct bigram *h, int *n)
{
    struct bigram top = h[0];
    h[0] = h[--(*n)];
    int i = 0;
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < *n && bigram_before(&h[l], &h[m])) m = l;
        if (r < *n && bigram_before(&h[r], &h[m])) m = r;
        if (m == i) break;
        struct bigram tmp = h[i];
        h[i] = h[m];
        h[m] = tmp;
        i = m;
    }
    return top;
}

struct enc {
    const struct tok *t;
    const char *text;
    struct sym *sym;
    struct bigram *heap;
    int nheap;
    int *out, cap, n;
};

static void try_bigram(struct enc *e, int left, int right)
{
    if (left < 0 || right < 0) return;
    const struct sym *a = &e->sym[left], *b = &e->sym[right];
    int id = tok_find(e->t, e->text + a->start, a->n + b->n);
    if (id < 0) return;
    struct bigram bg = {e->t->score[id], left, a->n + b->n, id};
    heap_push(e->heap, &e->nheap, bg);
}

static void emit(struct enc *e, int id)
{
    if (e->n < e->cap) e->out[e->n] = id;
    e->n++;
}

/* Encodes one escaped text fragment (no special tokens inside) and appends the ids. The
 * symbol and heap arrays are sized by the caller for `len` bytes. */
static void encode_fragment(struct enc *e, const char *text, size_t len)
{
    e->text = text;
    e->nheap = 0;
    int nsym = 0;
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)text[i];
        size_t cl = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
        if (i + cl > len) cl = len - i;
        e->sym[nsym] = (struct sym){nsym - 1, nsym + 1, (uint32_t)i, (uint32_t)cl};
        nsym++;
        i += cl;
    }
    if (nsym == 0) return;
    e->sym[nsym - 1].next = -1;
    for (int i = 1; i < nsym; i++)
        try_bigram(e, i - 1, i);
    while (e->nheap > 0) {
        struct bigram bg = heap_pop(e->heap, &e->nheap);
        struct sym *l = &e->sym[bg.left];
        if (l->n == 0 || l->next < 0) continue;
        struct sym *r = &e->sym[l->next];
        if (l->n + r->n != bg.size) continue; /* stale: one side changed since queued */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) e->sym[r->next].prev = bg.left;
        try_bigram(e, l->prev, bg.left);
        try_bigram(e, bg.left, l->next);
    }
    for (int i = 0; i >= 0; i = e->sym[i].next) {
        const struct sym *s = &e->sym[i];
        int id = tok_find(e->t, text + s->start, s->n);
        if (id >= 0) {
            emit(e, id);
            continue;
        }
        for (uint32_t k = 0; k < s->n; k++) {
            int b = e->t->byte_id[(unsigned char)text[s->start + k]];
            emit(e, b >= 0 ? b : e->t->unk);
        }
    }
}

/* Length of the special token starting at text[i], with its id, or 0. */
static size_t match_special(const struct tok *t, const char *text, size_t len, size_t i, int *id)
{
    for (int k = 0; k < t->n_special; k++) {
        int s = t->special[k];
        size_t n = t->len[s];
        if (n <= len - i && memcmp(text + i, t->blob + t->off[s], n) == 0) {
            *id = s;
            return n;
        }
    }
    return 0;
}

int tok_encode(const struct tok *t, const char *text, size_t len, bool add_bos, bool parse_special,
               int *out, int cap, struct err *err)
{
    if (len > (1u << 26))
        return err_set(err, ERR_INVALID, "tokenizer: text of %zu bytes is too long", len);
    /* Escaped text is at most 3x + 3 bytes; one symbol and at most one queued pair per
     * merge step per byte is bounded by 3 pairs per symbol. */
    size_t max_esc = 3 * len + 3;
    char *esc = malloc(max_esc + 1);
    struct sym *sym = malloc((max_esc + 1) * sizeof *sym);
    struct bigram *heap = malloc((3 * max_esc + 4) * sizeof *heap);
    if (!esc || !sym || !heap) {
        free(esc);
        free(sym);
        free(heap);
        return err_set(err, ERR_NOMEM, "tokenizer: out of memory for %zu bytes of text", len);
    }
    struct enc e = {.t = t, .sym = sym, .heap = heap, .out = out, .cap = cap};
    if (add_bos && t->bos >= 0) emit(&e, t->bos);
    bool prev_special = true;
    size_t i = 0;
    while (i < len) {
        /* next fragment: [i, j) up to the next special token */
        size_t j = i, sp_len = 0;
        int sp_id = -1;
        if (parse_special && t->n_special > 0) {
            for (; j < len; j++) {
                sp_len = match_special(t, text, len, j, &sp_id);
                if (sp_len) break;
            }
        } else {
            j = len;
        }
        if (j > i) {
            size_t n = 0;
            if (t->add_space_prefix && prev_special) {
                memcpy(esc, SPACE_ESC, 3);
                n = 3;
            }
            for (size_t k = i; k < j; k++) {
                if (text[k] == ' ') {
                    memcpy(esc + n, SPACE_ESC, 3);
                    n += 3;
                } else {
                    esc[n++] = text[k];
                }
            }
            encode_fragment(&e, esc, n);
            prev_special = false;
        }
        if (sp_len) {
            emit(&e, sp_id);
            prev_special = true;
            j += sp_len;
        }
        i = j;
    }
    free(esc);
    free(sym);
    free(heap);
    if (e.n > cap)
        return err_set(err, ERR_NOMEM, "tokenizer: text needs %d tokens, room for %d", e.n, cap);
    return e.n;
}

/* ---- decoding ---- */

size_t tok_token_bytes(const struct tok *t, int id, char *buf, size_t cap)
{
    if (id < 0 || id >= t->n_vocab) return 0;
    uint8_t ty = t->type[id];
    if (ty == TOK_TYPE_CONTROL || ty == TOK_TYPE_UNKNOWN || ty == TOK_TYPE_UNUSED) return 0;
    const char *p = t->blob + t->off[id];
    size_t n = t->len[id];
    if (ty == TOK_TYPE_BYTE && is_byte_piece(p, n)) {
        char hex[3] = {p[3], p[4], 0};
        if (cap > 0) buf[0] = (char)strtoul(hex, NULL, 16);
        return 1;
    }
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        if (i + 3 <= n && memcmp(p + i, SPACE_ESC, 3) == 0) {
            if (o < cap) buf[o] = ' ';
            o++;
            i += 3;
        } else {
            if (o < cap) buf[o] = p[i];
            o++;
            i++;
        }
    }
    return o;
}

void tok_stream_init(struct tok_stream *s, const struct tok *t)
{
    memset(s, 0, sizeof *s);
    s->t = t;
    s->prev = -1;
}

/* Expected length of a UTF-8 sequence from its lead byte; 0 if it cannot lead. */
static int utf8_len(unsigned char c)
{
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf) return 2;
    if ((c >> 4) == 0xe) return 3;
    if (c >= 0xf0 && c <= 0xf4) return 4;
    return 0;
}

static size_t put_fffd(char *out)
{
    memcpy(out, "\xef\xbf\xbd", 3);
    return 3;
}

/* Moves complete, valid characters from the pending bytes plus `in` to `out`. */
static size_t stream_bytes(struct tok_stream *s, const char *in, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)in[i];
        if (s->npend == 0) {
            int l = utf8_len(c);
            if (l == 1)
                out[o++] = (char)c;
            else if (l == 0)
                o += put_fffd(out + o);
            else
                s->pend[s->npend++] = c;
            continue;
        }
        if ((c & 0xc0) != 0x80) { /* sequence cut short: replace it, restart with c */
            o += put_fffd(out + o);
            s->npend = 0;
            i--;
            continue;
        }
        s->pend[s->npend++] = c;
        if (s->npend == utf8_len(s->pend[0])) {
            memcpy(out + o, s->pend, (size_t)s->npend);
            o += (size_t)s->npend;
            s->npend = 0;
        }
    }
    return o;
}

size_t tok_stream_push(struct tok_stream *s, int id, char *out)
{
    char piece[TOK_MAX_PIECE + 8];
    size_t n = tok_token_bytes(s->t, id, piece, sizeof piece);
    if (n > sizeof piece) n = sizeof piece;
    const char *p = piece;
    if (s->prev == s->t->bos && s->prev >= 0 && n > 0 && piece[0] == ' ') {
        p++;
        n--;
    }
    s->prev = id;
    return stream_bytes(s, p, n, out);
}

size_t tok_stream_flush(struct tok_stream *s, char *out)
{
    size_t o = 0;
    if (s->npend > 0) o = put_fffd(out);
    s->npend = 0;
    return o;
}
