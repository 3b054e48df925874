/* End to end: encoder trained on a sequential rule, then the ranker on its candidates. */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

#include "recsys/ranker_train.h"
#include "recsys/train.h"

/* 200 users over 50 items; next = prev + 1 (mod 50); 8 to 30 items each. */
static struct rec_dataset *rule_dataset(void)
{
    enum { U = 200, N = 50 };
    uint64_t off[U + 1];
    uint32_t *seq = malloc(sizeof(uint32_t) * U * 30);
    uint64_t s = 7;
    off[0] = 0;
    for (int u = 0; u < U; u++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        int len = 8 + (int)((s >> 33) % 23);
        uint32_t it = 1 + (uint32_t)((s >> 13) % N);
        for (int i = 0; i < len; i++) {
            seq[off[u] + i] = it;
            it = it % N + 1;
        }
        off[u + 1] = off[u] + (uint64_t)len;
    }
    struct err err;
    struct rec_dataset *d = rec_dataset_from_sequences(U, N, off, seq, &err);
    free(seq);
    assert_non_null(d);
    /* Give items some content so the masked (cold-start) path has something to use. */
    for (uint32_t i = 1; i <= N; i++) {
        d->item_genres[i] = 1u << (i % 19);
        d->item_year[i] = (uint16_t)(1950 + i);
    }
    return d;
}

static void test_ranker_on_encoder_candidates(void **state)
{
    (void)state;
    struct rec_dataset *d = rule_dataset();
    struct train_config tc;
    train_config_default(&tc);
    tc.enc.dim = 32;
    tc.enc.n_layers = 1;
    tc.enc.n_heads = 2;
    tc.enc.ffn = 64;
    tc.enc.max_len = 16;
    tc.epochs = 30;
    tc.batch = 32;
    tc.lr = 5e-3f;
    tc.warmup_steps = 10;
    tc.eval_every = 0;
    tc.progress = false;
    struct err err;
    struct encoder *enc = NULL;
    struct train_result tr;
    assert_int_equal(train_encoder(d, &tc, &enc, &tr, &err), 0);

    struct ranker_train_config rc;
    ranker_train_config_default(&rc);
    rc.model.hidden[0] = 32;
    rc.model.hidden[1] = 16;
    rc.model.hidden[2] = 8;
    rc.epochs = 10;
    rc.n_candidates = 20;
    rc.users_per_batch = 16;
    struct ranker *r = NULL;
    struct ranker_items items;
    if (ranker_train(d, enc, &rc, &r, &items, &err) != 0) fail_msg("%s", err.msg);
    struct ranker_eval ev, ev2;
    assert_int_equal(ranker_evaluate(d, enc, r, &items, REC_SPLIT_TEST, 20, 0, 1, &ev, &err), 0);
    print_message("  retrieval HR@10 %.3f, re-ranked %.3f, masked %.3f (recall@20 %.3f)\n",
                  ev.hr10[0], ev.hr10[1], ev.hr10[2], ev.retrieval_recall);
    assert_int_equal(ev.n_users, 200);
    assert_true(ev.hr10[0] > 0.9);        /* the encoder learned the rule */
    assert_true(ev.hr10[1] > 0.8);        /* re-ranking keeps the right item near the top */
    assert_true(ev.ndcg10[1] <= ev.hr10[1]);
    assert_true(ev.hr10[2] >= 0 && ev.hr10[2] <= ev.retrieval_recall);
    /* Same seed, same numbers. */
    struct ranker *r2 = NULL;
    struct ranker_items items2;
    assert_int_equal(ranker_train(d, enc, &rc, &r2, &items2, &err), 0);
    assert_int_equal(ranker_evaluate(d, enc, r2, &items2, REC_SPLIT_TEST, 20, 0, 1, &ev2, &err), 0);
    assert_memory_equal(ev.hr10, ev2.hr10, sizeof ev.hr10);
    assert_memory_equal(ev.ndcg10, ev2.ndcg10, sizeof ev.ndcg10);
    /* Bad configuration is refused with a message. */
    rc.n_candidates = 3;
    struct ranker *r3 = NULL;
    struct ranker_items items3;
    assert_int_not_equal(ranker_train(d, enc, &rc, &r3, &items3, &err), 0);
    assert_non_null(strstr(err.msg, "--candidates"));
    assert_null(r3);
    ranker_free(r);
    ranker_free(r2);
    ranker_items_free(&items);
    ranker_items_free(&items2);
    encoder_free(enc);
    rec_dataset_free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ranker_on_encoder_candidates),
    };
    return cmocka_run_group_tests_name("ranker_train", tests, NULL, NULL);
}
