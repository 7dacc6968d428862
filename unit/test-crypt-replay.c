/*
 * Copyright (c) 2026 The pairkey authors.
 *
 * Licensed under the Apache License, Version 2.0 (the "License");
 * you may not use this file except in compliance with the License.
 * You may obtain a copy of the License at:
 *
 *     http://www.apache.org/licenses/LICENSE-2.0
 *
 * Unless required by applicable law or agreed to in writing, software
 * distributed under the License is distributed on an "AS IS" BASIS,
 * WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
 * See the License for the specific language governing permissions and
 * limitations under the License.
 */

/* Unit tests for lib/crypt-replay.c: a numbered table of (PN, verdict)
 * vectors in the manner of WireGuard's counter selftest, then a comparison
 * with a naive model on random PN sequences. */

#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "crypt-replay.h"

#define W ((uint64_t) CRYPT_REPLAY_WINDOW)
#define RING ((uint64_t) CRYPT_REPLAY_BLOCKS * 64)

/* Some PNs the vectors refer to. */
#define A (W + 10)
#define J (A + 2 + W + 1)
#define K (J + 3 * RING + 5)
#define P UINT64_C(1000)

struct replay_vector {
    int index;                  /* Printed when the vector fails. */
    bool reset;                 /* Start over with a fresh window. */
    uint64_t pn;
    enum crypt_verdict expected;
};

#define T(N, PN, VERDICT) { N, false, PN, CRYPT_##VERDICT }
#define RESET(N) { N, true, 0, CRYPT_OK }

static const struct replay_vector vectors[] = {
    /* First packet, in order, duplicates, out of order. */
    T(1, 0, OK),
    T(2, 0, DROP_REPLAY),
    T(3, 1, OK),
    T(4, 1, DROP_REPLAY),
    T(5, 0, DROP_REPLAY),
    T(6, 3, OK),
    T(7, 2, OK),
    T(8, 2, DROP_REPLAY),
    T(9, 4, OK),

    /* The edge of the window: top - W is inside, top - W - 1 is not. */
    T(10, A, OK),
    T(11, A - W, OK),
    T(12, A - W, DROP_REPLAY),
    T(13, A - W - 1, DROP_TOO_OLD),
    T(14, 3, DROP_TOO_OLD),
    T(15, A - 1, OK),
    T(16, A, DROP_REPLAY),
    T(17, A - W + 1, OK),
    T(18, A + 1, OK),
    T(19, A + 2, OK),
    T(20, A + 1, DROP_REPLAY),

    /* A jump of more than the window. */
    T(21, J, OK),
    T(22, A + 2, DROP_TOO_OLD),
    T(23, J - W, OK),
    T(24, J - W, DROP_REPLAY),
    T(25, J - 1, OK),

    /* A jump of more than the whole ring. */
    T(26, K, OK),
    T(27, K - 1, OK),
    T(28, J, DROP_TOO_OLD),
    T(29, K - W, OK),
    T(30, K - W - 1, DROP_TOO_OLD),
    T(31, K - RING, DROP_TOO_OLD),
    T(32, K, DROP_REPLAY),
    T(33, K - 1, DROP_REPLAY),
    T(34, K - W, DROP_REPLAY),
    T(35, K - 2, OK),

    /* A slot of the ring reused: P and P + RING share one bit. */
    RESET(36),
    T(37, P, OK),
    T(38, P + RING - 64, OK),
    T(39, P, DROP_REPLAY),
    T(40, P + RING + 1, OK),
    T(41, P + RING, OK),
    T(42, P + RING, DROP_REPLAY),
    T(43, P + RING - 64, DROP_REPLAY),
    T(44, P, DROP_TOO_OLD),

    /* Near the end of the PN space. */
    RESET(45),
    T(46, UINT64_MAX - 1, OK),
    T(47, UINT64_MAX, OK),
    T(48, UINT64_MAX, DROP_REPLAY),
    T(49, UINT64_MAX - 1, DROP_REPLAY),
    T(50, UINT64_MAX - W, OK),
    T(51, UINT64_MAX - W - 1, DROP_TOO_OLD),
    T(52, 0, DROP_TOO_OLD),
    T(53, UINT64_MAX - 2, OK),

    /* From one end of the PN space to the other. */
    RESET(54),
    T(55, 0, OK),
    T(56, UINT64_MAX, OK),
    T(57, 0, DROP_TOO_OLD),
    T(58, UINT64_MAX - 64, OK),
    T(59, UINT64_MAX, DROP_REPLAY),
    T(60, UINT64_MAX - 64, DROP_REPLAY),

    /* A first packet far from 0, then older ones within the window. */
    RESET(61),
    T(62, 50000, OK),
    T(63, 50000 - W, OK),
    T(64, 49999, OK),
    T(65, 50000 - W - 1, DROP_TOO_OLD),
    T(66, 50000 - W, DROP_REPLAY),
    T(67, 50001, OK),
    T(68, 50000, DROP_REPLAY),
};

static void
test_vectors(void **state)
{
    struct crypt_replay r;

    (void) state;
    crypt_replay_init(&r);
    for (size_t i = 0; i < sizeof vectors / sizeof vectors[0]; i++) {
        const struct replay_vector *v = &vectors[i];
        struct crypt_replay before;
        enum crypt_verdict verdict;

        /* Numbered without gaps, so that a failure is easy to find. */
        assert_int_equal(v->index, i + 1);
        if (v->reset) {
            crypt_replay_init(&r);
            continue;
        }

        before = r;
        verdict = crypt_replay_check(&r, v->pn);
        if (verdict != v->expected) {
            print_message("vector %d: pn %"PRIu64" gives %s, expected %s\n",
                          v->index, v->pn, crypt_verdict_name(verdict),
                          crypt_verdict_name(v->expected));
        }
        assert_int_equal(verdict, v->expected);
        assert_memory_equal(&before, &r, sizeof r);
        if (verdict == CRYPT_OK) {
            crypt_replay_update(&r, v->pn);
        }
    }
}

/* crypt_replay_check() only looks: a frame that fails to authenticate after
 * its PN was checked must not burn the PN. */
static void
test_check_does_not_update(void **state)
{
    struct crypt_replay r, before;

    (void) state;
    crypt_replay_init(&r);
    before = r;
    for (uint64_t pn = 0; pn < 3 * RING; pn += 7) {
        assert_int_equal(crypt_replay_check(&r, pn), CRYPT_OK);
        assert_int_equal(crypt_replay_check(&r, pn), CRYPT_OK);
    }
    assert_int_equal(crypt_replay_check(&r, UINT64_MAX), CRYPT_OK);
    assert_memory_equal(&before, &r, sizeof r);
    assert_false(r.any);

    crypt_replay_update(&r, 100);
    before = r;
    for (uint64_t pn = 0; pn < 3 * RING; pn++) {
        enum crypt_verdict verdict = crypt_replay_check(&r, pn);

        assert_int_equal(verdict, (pn == 100 ? CRYPT_DROP_REPLAY
                                   : CRYPT_OK));
        assert_memory_equal(&before, &r, sizeof r);
    }
}

/* crypt_replay_update() on a PN below the window, which the caller should
 * never do, must not mark some other PN as seen. */
static void
test_update_too_old(void **state)
{
    struct crypt_replay r, before;

    (void) state;
    crypt_replay_init(&r);
    crypt_replay_update(&r, 10 * RING);
    before = r;
    crypt_replay_update(&r, 9 * RING);
    crypt_replay_update(&r, 10 * RING - W - 1);
    assert_memory_equal(&before, &r, sizeof r);
    assert_int_equal(crypt_replay_check(&r, 10 * RING - 64), CRYPT_OK);
    assert_int_equal(crypt_replay_check(&r, 10 * RING - W), CRYPT_OK);
}

/* A naive model: 'seen[i]' tells whether top - i was accepted. */
struct model {
    bool any;
    uint64_t top;
    bool seen[CRYPT_REPLAY_WINDOW + 1];
};

static enum crypt_verdict
model_check(const struct model *m, uint64_t pn)
{
    if (!m->any || pn > m->top) {
        return CRYPT_OK;
    } else if (m->top - pn > W) {
        return CRYPT_DROP_TOO_OLD;
    } else {
        return m->seen[m->top - pn] ? CRYPT_DROP_REPLAY : CRYPT_OK;
    }
}

static void
model_update(struct model *m, uint64_t pn)
{
    if (!m->any) {
        m->any = true;
        m->top = pn;
    } else if (pn > m->top) {
        uint64_t shift = pn - m->top;

        if (shift > W) {
            memset(m->seen, 0, sizeof m->seen);
        } else {
            memmove(m->seen + shift, m->seen,
                    (W + 1 - shift) * sizeof m->seen[0]);
            memset(m->seen, 0, shift * sizeof m->seen[0]);
        }
        m->top = pn;
    }
    m->seen[m->top - pn] = true;
}

/* xorshift64*, so that every run tests the same sequences. */
static uint64_t
next_random(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * UINT64_C(2685821657736338717);
}

static uint64_t
add_sat(uint64_t a, uint64_t b)
{
    return a + b < a ? UINT64_MAX : a + b;
}

static uint64_t
sub_sat(uint64_t a, uint64_t b)
{
    return a < b ? 0 : a - b;
}

static void
test_random_against_model(void **state)
{
    static const uint64_t starts[] = { 0, 12345, UINT64_MAX - 30000000 };
    uint64_t seed = UINT64_C(0x9e3779b97f4a7c15);

    (void) state;
    for (size_t s = 0; s < sizeof starts / sizeof starts[0]; s++) {
        struct crypt_replay r;
        struct model m;
        uint64_t base = starts[s];
        int n_ok = 0, n_replay = 0, n_old = 0;

        crypt_replay_init(&r);
        memset(&m, 0, sizeof m);
        for (int i = 0; i < 200000; i++) {
            uint64_t x = next_random(&seed);
            uint64_t top = m.any ? m.top : base;
            enum crypt_verdict verdict;
            uint64_t pn;

            /* Mostly near the top, on both sides of the window's edge,
             * sometimes a jump of up to two rings.  PNs saturate at both
             * ends of the PN space instead of wrapping around. */
            switch (x % 8) {
            case 0:
            case 1:
            case 2:
                pn = add_sat(top, 1 + (x >> 8) % 4);
                break;
            case 3:
            case 4:
                pn = sub_sat(top, (x >> 8) % 64);
                break;
            case 5:
                pn = add_sat(sub_sat(top, W + 2), (x >> 8) % 5);
                break;
            case 6:
                pn = sub_sat(top, (x >> 8) % (W + 64));
                break;
            default:
                pn = add_sat(top, (x >> 8) % (2 * RING));
                break;
            }

            verdict = crypt_replay_check(&r, pn);
            assert_int_equal(verdict, model_check(&m, pn));
            if (verdict == CRYPT_OK) {
                crypt_replay_update(&r, pn);
                model_update(&m, pn);
                n_ok++;
            } else if (verdict == CRYPT_DROP_REPLAY) {
                n_replay++;
            } else {
                n_old++;
            }
            assert_true(r.top == m.top);
        }
        /* The sequences exercised every verdict. */
        assert_true(n_ok > 1000 && n_replay > 1000 && n_old > 1000);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_check_does_not_update),
        cmocka_unit_test(test_update_too_old),
        cmocka_unit_test(test_random_against_model),
    };

    return cmocka_run_group_tests_name("crypt-replay", tests, NULL, NULL);
}
