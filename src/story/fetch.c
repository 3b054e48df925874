/* The curl multi fetcher. See fetch.h.
 *
 * Threading: callers append to `pending` under the mutex and wake the multi handle; only the
 * fetcher thread touches curl handles. Callbacks run on the fetcher thread without the mutex
 * held, so a callback may queue follow-up requests with fetch_start (never fetch_sync). */
#include "story/fetch.h"

#include <ctype.h>
#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"

struct xfer {
    struct xfer *next;
    char *url;
    char *etag, *last_modified, *accept;
    long timeout_ms;
    fetch_done_fn done;
    void *ud;
    CURL *h;
    struct curl_slist *hdrs;
    struct fetch_resp *resp;
    size_t cap, alloc;
    bool too_big;
    struct xfer *prev_active, *next_active;
    char errbuf[CURL_ERROR_SIZE];
};

struct fetcher {
    struct fetch_cfg cfg;
    CURLM *multi;
    pthread_t thread;
    pthread_mutex_t mu;
    struct xfer *pending;
    struct xfer *active; /* running transfers, owned by the fetcher thread */
    bool stop;
    bool thread_started;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_OK;

static void curl_init_once(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ---- helpers ---- */

long fetch_parse_retry_after(const char *v, long now_s)
{
    if (!v) return -1;
    while (*v == ' ' || *v == '\t') v++;
    if (*v == 0) return -1;
    long secs;
    if (isdigit((unsigned char)*v)) {
        char *end;
        unsigned long long x = strtoull(v, &end, 10);
        while (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n') end++;
        if (*end) return -1;
        secs = x > 86400 ? 86400 : (long)x;
    } else {
        time_t t = curl_getdate(v, NULL);
        if (t == (time_t)-1) return -1;
        secs = (long)(t - now_s);
        if (secs < 0) secs = 0;
        if (secs > 86400) secs = 86400;
    }
    return secs;
}

void fetch_redact_url(const char *url, char *out, size_t n)
{
    static const char *const secret[] = {"key", "apikey", "api_key", "token", "access_token",
                                         "client_secret", "password", "sig", "signature"};
    if (n == 0) return;
    size_t o = 0;
    const char *q = strchr(url, '?');
    const char *p = url;
    while (*p && o + 1 < n) {
        bool at_param = q && p > q && (p[-1] == '?' || p[-1] == '&');
        if (at_param) {
            const char *eq = strchr(p, '=');
            const char *amp = strchr(p, '&');
            if (eq && (!amp || eq < amp)) {
                size_t kl = (size_t)(eq - p);
                bool hide = false;
                for (size_t i = 0; i < sizeof secret / sizeof secret[0]; i++)
                    if (strlen(secret[i]) == kl && strncasecmp(p, secret[i], kl) == 0) hide = true;
                if (hide) {
                    int w = snprintf(out + o, n - o, "%.*s=***", (int)kl, p);
                    if (w < 0 || (size_t)w >= n - o) {
                        o = n - 1;
                        break;
                    }
                    o += (size_t)w;
                    p = amp ? amp : eq + strlen(eq);
                    continue;
                }
            }
        }
        out[o++] = *p++;
    }
    out[o] = 0;
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void xfer_free(struct xfer *x)
{
    if (!x) return;
    free(x->url);
    free(x->etag);
    free(x->last_modified);
    free(x->accept);
    if (x->hdrs) curl_slist_free_all(x->hdrs);
    if (x->h) curl_easy_cleanup(x->h);
    fetch_resp_free(x->resp);
    free(x);
}

void fetch_resp_clear(struct fetch_resp *r)
{
    if (!r) return;
    free(r->body);
    free(r->content_type);
    free(r->etag);
    free(r->last_modified);
    memset(r, 0, sizeof *r);
    r->retry_after_s = -1;
}

void fetch_resp_free(struct fetch_resp *r)
{
    if (!r) return;
    fetch_resp_clear(r);
    free(r);
}

/* Hands the response to the caller and frees the transfer. */
static void xfer_complete(struct xfer *x)
{
    struct fetch_resp *r = x->resp;
    x->resp = NULL;
    if (!r->body) {
        r->body = calloc(1, 1);
        r->len = 0;
    }
    fetch_done_fn done = x->done;
    void *ud = x->ud;
    xfer_free(x);
    done(ud, r);
}

static void xfer_fail(struct xfer *x, int code, const char *msg)
{
    x->resp->code = code;
    snprintf(x->resp->msg, sizeof x->resp->msg, "%s", msg);
    xfer_complete(x);
}

/* ---- curl callbacks ---- */

static size_t on_body(char *data, size_t size, size_t nmemb, void *ud)
{
    struct xfer *x = ud;
    struct fetch_resp *r = x->resp;
    size_t n = size * nmemb;
    if (n > x->cap - r->len) {
        x->too_big = true;
        return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
    }
    if (r->len + n + 1 > x->alloc) {
        /* Grow geometrically; the allocation never exceeds cap + 1. */
        size_t na = x->alloc ? x->alloc : 16384;
        while (na < r->len + n + 1) na *= 2;
        if (na > x->cap + 1) na = x->cap + 1;
        char *nb = realloc(r->body, na);
        if (!nb) return 0;
        r->body = nb;
        x->alloc = na;
    }
    memcpy(r->body + r->len, data, n);
    r->len += n;
    r->body[r->len] = 0;
    return n;
}

static void trim_value(char *s)
{
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == '\r' || s[n - 1] == '\n' || s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = 0;
}

static size_t on_header(char *data, size_t size, size_t nitems, void *ud)
{
    struct xfer *x = ud;
    struct fetch_resp *r = x->resp;
    size_t n = size * nitems;
    if (n >= 5 && strncmp(data, "HTTP/", 5) == 0) {
        /* A new response (after a redirect or a 100): forget the previous headers. */
        free(r->content_type), r->content_type = NULL;
        free(r->etag), r->etag = NULL;
        free(r->last_modified), r->last_modified = NULL;
        r->retry_after_s = -1;
        return n;
    }
    const char *colon = memchr(data, ':', n);
    if (!colon || n > 8192) return n;
    size_t kl = (size_t)(colon - data);
    const char *v = colon + 1;
    size_t vl = n - kl - 1;
    while (vl > 0 && (*v == ' ' || *v == '\t')) v++, vl--;
    char *val = strndup(v, vl);
    if (!val) return 0;
    trim_value(val);
    char **slot = NULL;
    if (kl == 12 && strncasecmp(data, "Content-Type", kl) == 0) slot = &r->content_type;
    else if (kl == 4 && strncasecmp(data, "ETag", kl) == 0) slot = &r->etag;
    else if (kl == 13 && strncasecmp(data, "Last-Modified", kl) == 0) slot = &r->last_modified;
    else if (kl == 11 && strncasecmp(data, "Retry-After", kl) == 0)
        r->retry_after_s = fetch_parse_retry_after(val, (long)time(NULL));
    if (slot) {
        free(*slot);
        *slot = val;
    } else {
        free(val);
    }
    return n;
}

/* ---- the fetcher thread ---- */

static void active_unlink(struct fetcher *f, struct xfer *x)
{
    if (x->prev_active) x->prev_active->next_active = x->next_active;
    else f->active = x->next_active;
    if (x->next_active) x->next_active->prev_active = x->prev_active;
    x->prev_active = x->next_active = NULL;
}

static int xfer_setup(struct fetcher *f, struct xfer *x)
{
    x->h = curl_easy_init();
    if (!x->h) return -1;
    CURL *h = x->h;
    const struct fetch_cfg *c = &f->cfg;
    curl_easy_setopt(h, CURLOPT_URL, x->url);
    curl_easy_setopt(h, CURLOPT_PRIVATE, x);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, c->max_redirects > 0 ? 1L : 0L);
    curl_easy_setopt(h, CURLOPT_MAXREDIRS, (long)(c->max_redirects > 0 ? c->max_redirects : 0));
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, c->connect_timeout_ms);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, x->timeout_ms > 0 ? x->timeout_ms : c->timeout_ms);
    curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(h, CURLOPT_USERAGENT, c->user_agent);
    curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)c->max_bytes);
    if (x->etag) {
        char b[1024];
        snprintf(b, sizeof b, "If-None-Match: %s", x->etag);
        x->hdrs = curl_slist_append(x->hdrs, b);
    }
    if (x->last_modified) {
        char b[256];
        snprintf(b, sizeof b, "If-Modified-Since: %s", x->last_modified);
        x->hdrs = curl_slist_append(x->hdrs, b);
    }
    if (x->accept) {
        char b[512];
        snprintf(b, sizeof b, "Accept: %s", x->accept);
        x->hdrs = curl_slist_append(x->hdrs, b);
    }
    if (x->hdrs) curl_easy_setopt(h, CURLOPT_HTTPHEADER, x->hdrs);
    return curl_multi_add_handle(f->multi, h) == CURLM_OK ? 0 : -1;
}

static void xfer_finished(struct fetcher *f, struct xfer *x, CURLcode rc)
{
    struct fetch_resp *r = x->resp;
    curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &r->status);
    curl_easy_getinfo(x->h, CURLINFO_REDIRECT_COUNT, &r->redirects);
    curl_easy_getinfo(x->h, CURLINFO_TOTAL_TIME, &r->total_s);
    curl_multi_remove_handle(f->multi, x->h);
    char host[512];
    fetch_redact_url(x->url, host, sizeof host);
    char m[sizeof r->msg];
    int code = 0;
    switch (rc) {
    case CURLE_OK:
        break;
    case CURLE_OPERATION_TIMEDOUT:
        code = ERR_TIMEOUT;
        snprintf(m, sizeof m, "timed out after %.1f s (%.120s)", r->total_s, x->errbuf);
        break;
    case CURLE_TOO_MANY_REDIRECTS:
        code = ERR_UPSTREAM;
        snprintf(m, sizeof m, "more than %d redirects (a redirect loop?)", f->cfg.max_redirects);
        break;
    case CURLE_UNSUPPORTED_PROTOCOL:
        code = ERR_INVALID;
        snprintf(m, sizeof m, "refused a non-http(s) URL or redirect (%.120s)", x->errbuf);
        break;
    case CURLE_FILESIZE_EXCEEDED:
        code = ERR_NOMEM;
        snprintf(m, sizeof m, "response body is larger than the %zu-byte limit", f->cfg.max_bytes);
        break;
    case CURLE_WRITE_ERROR:
        code = x->too_big ? ERR_NOMEM : ERR_UPSTREAM;
        if (x->too_big)
            snprintf(m, sizeof m, "response body grows past the %zu-byte limit (decompressed)",
                     f->cfg.max_bytes);
        else
            snprintf(m, sizeof m, "write error: %.120s", x->errbuf);
        break;
    case CURLE_PARTIAL_FILE:
        code = ERR_UPSTREAM;
        snprintf(m, sizeof m, "connection closed before the whole body arrived (%.120s)", x->errbuf);
        break;
    default:
        code = rc == CURLE_OUT_OF_MEMORY ? ERR_NOMEM : ERR_UPSTREAM;
        snprintf(m, sizeof m, "%.100s%s%.120s", curl_easy_strerror(rc), x->errbuf[0] ? ": " : "",
                 x->errbuf);
        break;
    }
    if (code) {
        log_debug("fetch", "%s: %s", host, m);
        /* A failed transfer's partial body is not a response. */
        free(r->body);
        r->body = NULL;
        r->len = 0;
        xfer_fail(x, code, m);
        return;
    }
    log_debug("fetch", "%s: HTTP %ld, %zu bytes, %.3f s", host, r->status, r->len, r->total_s);
    xfer_complete(x);
}

static void *fetch_thread(void *arg)
{
    struct fetcher *f = arg;
    for (;;) {
        pthread_mutex_lock(&f->mu);
        bool stop = f->stop;
        struct xfer *list = f->pending;
        f->pending = NULL;
        pthread_mutex_unlock(&f->mu);
        /* Start the queued transfers (in arrival order). */
        struct xfer *rev = NULL;
        while (list) {
            struct xfer *nx = list->next;
            list->next = rev;
            rev = list;
            list = nx;
        }
        while (rev) {
            struct xfer *x = rev;
            rev = rev->next;
            x->next = NULL;
            if (stop) {
                xfer_fail(x, ERR_UPSTREAM, "fetcher stopped");
            } else if (xfer_setup(f, x) < 0) {
                if (x->h) curl_multi_remove_handle(f->multi, x->h);
                xfer_fail(x, ERR_NOMEM, "could not set up the transfer");
            } else {
                x->next_active = f->active;
                if (f->active) f->active->prev_active = x;
                f->active = x;
            }
        }
        if (stop) break;
        int running = 0;
        curl_multi_perform(f->multi, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(f->multi, &left)) != NULL) {
            if (msg->msg != CURLMSG_DONE) continue;
            struct xfer *x = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
            CURLcode rc = msg->data.result;
            active_unlink(f, x);
            xfer_finished(f, x, rc);
        }
        curl_multi_poll(f->multi, NULL, 0, 1000, NULL);
    }
    /* Abort what is still running. */
    while (f->active) {
        struct xfer *x = f->active;
        active_unlink(f, x);
        curl_multi_remove_handle(f->multi, x->h);
        xfer_fail(x, ERR_UPSTREAM, "fetcher stopped");
    }
    return NULL;
}

struct fetcher *fetch_new(const struct fetch_cfg *cfg, struct err *err)
{
    pthread_once(&curl_once, curl_init_once);
    if (curl_init_rc != CURLE_OK) {
        err_set(err, ERR_IO, "curl_global_init failed: %s", curl_easy_strerror(curl_init_rc));
        return NULL;
    }
    struct fetcher *f = calloc(1, sizeof *f);
    if (!f) {
        err_set(err, ERR_NOMEM, "out of memory");
        return NULL;
    }
    if (cfg) f->cfg = *cfg;
    if (f->cfg.connect_timeout_ms <= 0) f->cfg.connect_timeout_ms = 5000;
    if (f->cfg.timeout_ms <= 0) f->cfg.timeout_ms = 15000;
    if (f->cfg.max_bytes == 0) f->cfg.max_bytes = FETCH_MAX_BYTES_DEFAULT;
    if (f->cfg.max_redirects == 0) f->cfg.max_redirects = 5;
    if (!f->cfg.user_agent) f->cfg.user_agent = FETCH_USER_AGENT;
    if (f->cfg.max_connections <= 0) f->cfg.max_connections = 16;
    pthread_mutex_init(&f->mu, NULL);
    f->multi = curl_multi_init();
    if (!f->multi) {
        pthread_mutex_destroy(&f->mu);
        free(f);
        err_set(err, ERR_NOMEM, "curl_multi_init failed");
        return NULL;
    }
    curl_multi_setopt(f->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)f->cfg.max_connections);
    curl_multi_setopt(f->multi, CURLMOPT_MAX_HOST_CONNECTIONS, 8L);
    if (pthread_create(&f->thread, NULL, fetch_thread, f) != 0) {
        curl_multi_cleanup(f->multi);
        pthread_mutex_destroy(&f->mu);
        free(f);
        err_set(err, ERR_IO, "could not start the fetcher thread");
        return NULL;
    }
    f->thread_started = true;
    return f;
}

void fetch_free(struct fetcher *f)
{
    if (!f) return;
    pthread_mutex_lock(&f->mu);
    f->stop = true;
    pthread_mutex_unlock(&f->mu);
    curl_multi_wakeup(f->multi);
    if (f->thread_started) pthread_join(f->thread, NULL);
    /* Requests queued after the thread's last look. */
    while (f->pending) {
        struct xfer *x = f->pending;
        f->pending = x->next;
        xfer_fail(x, ERR_UPSTREAM, "fetcher stopped");
    }
    curl_multi_cleanup(f->multi);
    pthread_mutex_destroy(&f->mu);
    free(f);
}

int fetch_start(struct fetcher *f, const struct fetch_req *req, fetch_done_fn done, void *ud,
                struct err *err)
{
    if (!req || !req->url || !done)
        return err_set(err, ERR_INVALID, "fetch_start: missing url or callback");
    if (strncasecmp(req->url, "http://", 7) != 0 && strncasecmp(req->url, "https://", 8) != 0) {
        char red[256];
        fetch_redact_url(req->url, red, sizeof red);
        return err_set(err, ERR_INVALID, "only http:// and https:// URLs are fetched, not '%s'",
                       red);
    }
    if (strlen(req->url) > 8192) return err_set(err, ERR_INVALID, "URL longer than 8192 bytes");
    struct xfer *x = calloc(1, sizeof *x);
    struct fetch_resp *r = calloc(1, sizeof *r);
    if (!x || !r) {
        free(x);
        free(r);
        return err_set(err, ERR_NOMEM, "out of memory");
    }
    r->retry_after_s = -1;
    x->resp = r;
    x->url = strdup(req->url);
    x->etag = dup_or_null(req->etag);
    x->last_modified = dup_or_null(req->last_modified);
    x->accept = dup_or_null(req->accept);
    x->timeout_ms = req->timeout_ms;
    x->done = done;
    x->ud = ud;
    x->cap = f->cfg.max_bytes;
    if (!x->url || (req->etag && !x->etag) || (req->last_modified && !x->last_modified) ||
        (req->accept && !x->accept)) {
        xfer_free(x);
        return err_set(err, ERR_NOMEM, "out of memory");
    }
    pthread_mutex_lock(&f->mu);
    if (f->stop) {
        pthread_mutex_unlock(&f->mu);
        xfer_free(x);
        return err_set(err, ERR_UPSTREAM, "fetcher is stopping");
    }
    x->next = f->pending;
    f->pending = x;
    pthread_mutex_unlock(&f->mu);
    curl_multi_wakeup(f->multi);
    return 0;
}

struct sync_wait {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    struct fetch_resp *resp;
};

static void sync_done(void *ud, struct fetch_resp *resp)
{
    struct sync_wait *w = ud;
    pthread_mutex_lock(&w->mu);
    w->resp = resp;
    w->done = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

int fetch_sync(struct fetcher *f, const struct fetch_req *req, struct fetch_resp *out,
               struct err *err)
{
    memset(out, 0, sizeof *out);
    out->retry_after_s = -1;
    struct sync_wait w = {.done = false};
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    int rc = fetch_start(f, req, sync_done, &w, err);
    if (rc == 0) {
        pthread_mutex_lock(&w.mu);
        while (!w.done) pthread_cond_wait(&w.cv, &w.mu);
        pthread_mutex_unlock(&w.mu);
        struct fetch_resp *r = w.resp;
        if (r->code) {
            rc = err_set(err, r->code, "%s", r->msg);
            fetch_resp_free(r);
        } else {
            *out = *r;
            free(r);
        }
    }
    pthread_cond_destroy(&w.cv);
    pthread_mutex_destroy(&w.mu);
    return rc;
}
