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

/* Unit tests for lib/crypt-frame.c: known answers from unit/gen-vectors.py,
 * tampering, truncation, wrong keys, nonce separation between the senders
 * of one key, nonces and the PN time base. */

#define _GNU_SOURCE             /* For memmem(). */

#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "crypt-frame.h"
#include "crypt-test.h"
#include "vectors.h"

#define N_FRAME_VECTORS (sizeof frame_vectors / sizeof frame_vectors[0])
#define N_FLOOR_VECTORS (sizeof floor_vectors / sizeof floor_vectors[0])

/* Room for the largest vector, sealed, plus canary bytes after it. */
#define BUF_LEN 2048

static const uint8_t mac_a[CRYPT_MAC_LEN] = { 0x02, 0, 0, 0, 0xaa, 0x01 };
static const uint8_t mac_b[CRYPT_MAC_LEN] = { 0x02, 0, 0, 0, 0xbb, 0x02 };
static const uint8_t test_key[CRYPT_KEY_LEN] = {
    0x70, 0x61, 0x69, 0x72, 0x6b, 0x65, 0x79, 0x20,
    0x75, 0x6e, 0x69, 0x74, 0x20, 0x74, 0x65, 0x73,
    0x74, 0x20, 0x6b, 0x65, 0x79, 0x20, 0x6e, 0x6f,
    0x74, 0x20, 0x73, 0x65, 0x63, 0x72, 0x65, 0x74,
};

/* A buffer for sealing, aligned like a packet buffer. */
struct frame_buf {
    _Alignas(64) uint8_t bytes[BUF_LEN];
};

/* Copies 'plain' into 'buf' behind the head room, seals it, and returns the
 * sealed length. */
static size_t
seal_into(struct frame_buf *buf, const struct crypt_aead *aead,
          uint32_t key_version, uint64_t pn,
          const uint8_t *plain, size_t plain_len)
{
    memset(buf->bytes, CANARY, sizeof buf->bytes);
    memcpy(buf->bytes + CRYPT_HEAD_GROWTH, plain, plain_len);
    crypt_frame_seal(aead, key_version, pn, buf->bytes, plain_len);
    return plain_len + CRYPT_OVERHEAD;
}

static int
setup(void **state)
{
    (void) state;
    return crypt_frame_init();
}

/* Known answers: seal must give the bytes computed by gen-vectors.py, and
 * opening both our frame and the generated one must give back the plain
 * frame. */
static void
check_known_answers(enum crypt_cipher cipher)
{
    bool seen_vlan = false, seen_minimal = false;
    int n = 0;

    if (skip_unavailable(cipher)) {
        skip();
    }
    for (size_t i = 0; i < N_FRAME_VECTORS; i++) {
        const struct frame_vector *v = &frame_vectors[i];
        struct crypt_frame_info info;
        struct crypt_aead aead;
        struct frame_buf buf;
        size_t len;

        if (v->cipher != cipher) {
            continue;
        }
        print_message("vector %s/%s\n", v->name, crypt_cipher_name(cipher));
        n++;
        seen_vlan |= v->plain[12] == 0x81 && v->plain[13] == 0x00;
        seen_minimal |= v->plain_len == 14;

        /* The subkey belongs to the sender, i.e. the source MAC. */
        init_aead(&aead, cipher, v->key, v->plain + CRYPT_MAC_LEN);
        len = seal_into(&buf, &aead, v->key_version, v->pn,
                        v->plain, v->plain_len);
        assert_int_equal(len, v->sealed_len);
        assert_memory_equal(buf.bytes, v->sealed, v->sealed_len);
        assert_true(all_canary(buf.bytes + len, sizeof buf.bytes - len));

        assert_int_equal(crypt_frame_parse(buf.bytes, len, &info), CRYPT_OK);
        assert_int_equal(info.cipher, cipher);
        assert_int_equal(info.key_version, v->key_version);
        assert_true(info.pn == v->pn);
        assert_ptr_equal(info.sender, buf.bytes + CRYPT_MAC_LEN);

        assert_int_equal(crypt_frame_open(&aead, buf.bytes, len), CRYPT_OK);
        assert_memory_equal(buf.bytes + CRYPT_HEAD_GROWTH, v->plain,
                            v->plain_len);

        /* The other implementation's frame opens too. */
        memset(buf.bytes, CANARY, sizeof buf.bytes);
        memcpy(buf.bytes, v->sealed, v->sealed_len);
        assert_int_equal(crypt_frame_open(&aead, buf.bytes, v->sealed_len),
                         CRYPT_OK);
        assert_memory_equal(buf.bytes + CRYPT_HEAD_GROWTH, v->plain,
                            v->plain_len);
        assert_true(all_canary(buf.bytes + v->sealed_len,
                               sizeof buf.bytes - v->sealed_len));
        crypt_aead_wipe(&aead);
    }
    assert_true(n >= 4);
    assert_true(seen_vlan);
    assert_true(seen_minimal);
}

static void
test_kat_aes256gcm(void **state)
{
    (void) state;
    check_known_answers(CRYPT_CIPHER_AES256GCM);
}

static void
test_kat_chacha20poly1305(void **state)
{
    (void) state;
    check_known_answers(CRYPT_CIPHER_CHACHA20POLY1305);
}

/* A receiver that finds 'frame' on the wire: parse, then derive the subkey
 * of whatever sender and cipher the (possibly forged) header names, as a
 * group-key receiver does, and open.  Also tries 'sender', the subkey of
 * the true sender, as a pair-key receiver does. */
static enum crypt_verdict
receive(const uint8_t *key, const struct crypt_aead *sender,
        const uint8_t *frame, size_t len)
{
    struct crypt_frame_info info;
    struct crypt_aead aead;
    struct frame_buf buf;
    enum crypt_verdict v1, v2;

    v1 = crypt_frame_parse(frame, len, &info);
    if (v1 != CRYPT_OK) {
        return v1;
    }
    if (!crypt_cipher_is_available(info.cipher)) {
        return CRYPT_DROP_BAD_HEADER;
    }

    memcpy(buf.bytes, frame, len);
    init_aead(&aead, info.cipher, key, info.sender);
    v1 = crypt_frame_open(&aead, buf.bytes, len);
    crypt_aead_wipe(&aead);

    memcpy(buf.bytes, frame, len);
    v2 = crypt_frame_open(sender, buf.bytes, len);
    return v1 != CRYPT_OK ? v1 : v2;
}

static const uint8_t *
vector_sender(const struct frame_vector *v)
{
    return v->plain + CRYPT_MAC_LEN;
}

static void
test_bit_flips(void **state)
{
    (void) state;
    for (size_t i = 0; i < N_FRAME_VECTORS; i++) {
        const struct frame_vector *v = &frame_vectors[i];
        int n_header = 0, n_tag = 0;
        struct crypt_aead aead;
        struct frame_buf buf;

        if (!crypt_cipher_is_available(v->cipher)) {
            continue;
        }
        init_aead(&aead, v->cipher, v->key, vector_sender(v));
        assert_int_equal(receive(v->key, &aead, v->sealed, v->sealed_len),
                         CRYPT_OK);
        for (size_t bit = 0; bit < v->sealed_len * 8; bit++) {
            enum crypt_verdict verdict;

            memcpy(buf.bytes, v->sealed, v->sealed_len);
            buf.bytes[bit / 8] ^= 1u << (bit % 8);
            verdict = receive(v->key, &aead, buf.bytes, v->sealed_len);
            if (verdict == CRYPT_DROP_BAD_HEADER) {
                /* Only the EtherType, format and cipher are checked. */
                assert_in_range(bit / 8, 12, 15);
                n_header++;
            } else {
                if (verdict != CRYPT_DROP_BAD_TAG) {
                    print_message("%s/%s: bit %zu gives %s\n", v->name,
                                  crypt_cipher_name(v->cipher), bit,
                                  crypt_verdict_name(verdict));
                }
                assert_int_equal(verdict, CRYPT_DROP_BAD_TAG);
                n_tag++;
            }
        }
        assert_int_equal(n_header, 4 * 8);
        assert_int_equal(n_tag, (v->sealed_len - 4) * 8);
        crypt_aead_wipe(&aead);
    }
}

static void
test_truncation(void **state)
{
    (void) state;
    for (size_t i = 0; i < N_FRAME_VECTORS; i++) {
        const struct frame_vector *v = &frame_vectors[i];
        struct crypt_frame_info info;
        struct crypt_aead aead;
        struct frame_buf buf;

        if (!crypt_cipher_is_available(v->cipher)) {
            continue;
        }
        init_aead(&aead, v->cipher, v->key, vector_sender(v));
        for (size_t len = 0; len < v->sealed_len; len++) {
            enum crypt_verdict expected = (len < CRYPT_MIN_FRAME_LEN
                                           ? CRYPT_DROP_TRUNCATED
                                           : CRYPT_DROP_BAD_TAG);

            assert_int_equal(crypt_frame_parse(v->sealed, len, &info),
                             (len < CRYPT_MIN_FRAME_LEN
                              ? CRYPT_DROP_TRUNCATED : CRYPT_OK));
            memcpy(buf.bytes, v->sealed, v->sealed_len);
            assert_int_equal(crypt_frame_open(&aead, buf.bytes, len),
                             expected);
            assert_int_equal(receive(v->key, &aead, v->sealed, len),
                             expected);
        }

        /* Bytes appended are not accepted either. */
        memcpy(buf.bytes, v->sealed, v->sealed_len);
        buf.bytes[v->sealed_len] = 0;
        assert_int_equal(crypt_frame_open(&aead, buf.bytes,
                                          v->sealed_len + 1),
                         CRYPT_DROP_BAD_TAG);
        crypt_aead_wipe(&aead);
    }
}

static void
test_wrong_keys(void **state)
{
    (void) state;
    for (size_t i = 0; i < N_FRAME_VECTORS; i++) {
        const struct frame_vector *v = &frame_vectors[i];
        const uint8_t *receiver_mac = v->plain;
        uint8_t other_key[CRYPT_KEY_LEN];
        struct crypt_aead aead;
        struct frame_buf buf;

        if (!crypt_cipher_is_available(v->cipher)) {
            continue;
        }

        /* The receiver's own subkey, i.e. the other direction. */
        init_aead(&aead, v->cipher, v->key, receiver_mac);
        memcpy(buf.bytes, v->sealed, v->sealed_len);
        assert_int_equal(crypt_frame_open(&aead, buf.bytes, v->sealed_len),
                         CRYPT_DROP_BAD_TAG);

        /* Some other sender of the same key. */
        init_aead(&aead, v->cipher, v->key, mac_a);
        memcpy(buf.bytes, v->sealed, v->sealed_len);
        assert_int_equal(crypt_frame_open(&aead, buf.bytes, v->sealed_len),
                         CRYPT_DROP_BAD_TAG);

        /* The right sender under a key that differs in one bit. */
        memcpy(other_key, v->key, sizeof other_key);
        other_key[CRYPT_KEY_LEN - 1] ^= 0x80;
        init_aead(&aead, v->cipher, other_key, vector_sender(v));
        memcpy(buf.bytes, v->sealed, v->sealed_len);
        assert_int_equal(crypt_frame_open(&aead, buf.bytes, v->sealed_len),
                         CRYPT_DROP_BAD_TAG);
        crypt_aead_wipe(&aead);
    }
}

static void
test_wrong_cipher(void **state)
{
    (void) state;
    if (skip_unavailable(CRYPT_CIPHER_AES256GCM)) {
        skip();
    }
    for (size_t i = 0; i < N_FRAME_VECTORS; i++) {
        const struct frame_vector *v = &frame_vectors[i];
        enum crypt_cipher other = (v->cipher == CRYPT_CIPHER_AES256GCM
                                   ? CRYPT_CIPHER_CHACHA20POLY1305
                                   : CRYPT_CIPHER_AES256GCM);
        struct crypt_aead aead;
        struct frame_buf buf;

        /* Right key and sender, other cipher. */
        init_aead(&aead, other, v->key, vector_sender(v));
        memcpy(buf.bytes, v->sealed, v->sealed_len);
        assert_int_equal(crypt_frame_open(&aead, buf.bytes, v->sealed_len),
                         CRYPT_DROP_BAD_TAG);

        /* A header rewritten to name the other cipher, opened with it. */
        memcpy(buf.bytes, v->sealed, v->sealed_len);
        buf.bytes[15] = other;
        assert_int_equal(receive(v->key, &aead, buf.bytes, v->sealed_len),
                         CRYPT_DROP_BAD_TAG);
        crypt_aead_wipe(&aead);
    }
}

static void
test_bad_header(void **state)
{
    const struct frame_vector *v = &frame_vectors[0];
    static const uint8_t bad_ciphers[] = { 0, 3, 0x81, 0xff };
    struct crypt_frame_info info;
    struct frame_buf buf;

    (void) state;
    memcpy(buf.bytes, v->sealed, v->sealed_len);
    assert_int_equal(crypt_frame_parse(buf.bytes, v->sealed_len, &info),
                     CRYPT_OK);

    /* An ordinary plain frame (an IPv4 EtherType where 0x88b5 should be). */
    assert_int_equal(crypt_frame_parse(frame_vectors[0].plain,
                                       frame_vectors[0].plain_len, &info),
                     CRYPT_DROP_BAD_HEADER);

    buf.bytes[14] = 3;
    assert_int_equal(crypt_frame_parse(buf.bytes, v->sealed_len, &info),
                     CRYPT_DROP_BAD_HEADER);
    buf.bytes[14] = 0;
    assert_int_equal(crypt_frame_parse(buf.bytes, v->sealed_len, &info),
                     CRYPT_DROP_BAD_HEADER);
    buf.bytes[14] = CRYPT_FORMAT_VERSION;

    for (size_t i = 0; i < sizeof bad_ciphers; i++) {
        buf.bytes[15] = bad_ciphers[i];
        assert_int_equal(crypt_frame_parse(buf.bytes, v->sealed_len, &info),
                         CRYPT_DROP_BAD_HEADER);
    }
}

/* The two holders of a pair key seal with the same key, the same PN and even
 * the same plaintext: their keystreams and tags must still differ. */
static void
test_directions(void **state)
{
    (void) state;
    for (size_t c = 0; c < N_CIPHERS; c++) {
        enum crypt_cipher cipher = all_ciphers[c];
        const uint64_t pn = crypt_pn_floor(CRYPT_PN_EPOCH_USEC + 1000);
        uint8_t plain_ab[1514], plain_ba[1514];
        struct crypt_aead aead_a, aead_b;
        struct frame_buf buf_ab, buf_ba;
        size_t text_len = sizeof plain_ab - 2 * CRYPT_MAC_LEN;
        uint8_t ks_ab[1514], ks_ba[1514];
        size_t len;

        if (!crypt_cipher_is_available(cipher)) {
            continue;
        }
        init_aead(&aead_a, cipher, test_key, mac_a);
        init_aead(&aead_b, cipher, test_key, mac_b);

        /* A to B, and B to A, with all-zero payloads. */
        memset(plain_ab, 0, sizeof plain_ab);
        memcpy(plain_ab, mac_b, CRYPT_MAC_LEN);
        memcpy(plain_ab + CRYPT_MAC_LEN, mac_a, CRYPT_MAC_LEN);
        memset(plain_ba, 0, sizeof plain_ba);
        memcpy(plain_ba, mac_a, CRYPT_MAC_LEN);
        memcpy(plain_ba + CRYPT_MAC_LEN, mac_b, CRYPT_MAC_LEN);

        len = seal_into(&buf_ab, &aead_a, 1, pn, plain_ab, sizeof plain_ab);
        seal_into(&buf_ba, &aead_b, 1, pn, plain_ba, sizeof plain_ba);

        /* Plaintext is zero, so the ciphertext is the keystream. */
        memcpy(ks_ab, buf_ab.bytes + CRYPT_AAD_LEN, text_len);
        memcpy(ks_ba, buf_ba.bytes + CRYPT_AAD_LEN, text_len);
        assert_memory_not_equal(ks_ab, ks_ba, text_len);
        /* Independent streams agree in about 1 byte in 256. */
        assert_true(count_equal(ks_ab, ks_ba, text_len) < text_len / 32);
        assert_memory_not_equal(buf_ab.bytes + len - CRYPT_TAG_LEN,
                                buf_ba.bytes + len - CRYPT_TAG_LEN,
                                CRYPT_TAG_LEN);

        /* Same frame bytes, same PN, the two subkeys. */
        seal_into(&buf_ba, &aead_b, 1, pn, plain_ab, sizeof plain_ab);
        assert_true(count_equal(buf_ab.bytes + CRYPT_AAD_LEN,
                                buf_ba.bytes + CRYPT_AAD_LEN, text_len)
                    < text_len / 32);

        /* Each direction opens only with its sender's subkey. */
        seal_into(&buf_ba, &aead_b, 1, pn, plain_ba, sizeof plain_ba);
        assert_int_equal(crypt_frame_open(&aead_b, buf_ab.bytes, len),
                         CRYPT_DROP_BAD_TAG);
        assert_int_equal(crypt_frame_open(&aead_a, buf_ba.bytes, len),
                         CRYPT_DROP_BAD_TAG);
        seal_into(&buf_ab, &aead_a, 1, pn, plain_ab, sizeof plain_ab);
        seal_into(&buf_ba, &aead_b, 1, pn, plain_ba, sizeof plain_ba);
        assert_int_equal(crypt_frame_open(&aead_a, buf_ab.bytes, len),
                         CRYPT_OK);
        assert_int_equal(crypt_frame_open(&aead_b, buf_ba.bytes, len),
                         CRYPT_OK);
        assert_memory_equal(buf_ab.bytes + CRYPT_HEAD_GROWTH, plain_ab,
                            sizeof plain_ab);
        assert_memory_equal(buf_ba.bytes + CRYPT_HEAD_GROWTH, plain_ba,
                            sizeof plain_ba);

        /* Successive PNs of one sender use different keystreams too. */
        seal_into(&buf_ab, &aead_a, 1, pn, plain_ab, sizeof plain_ab);
        seal_into(&buf_ba, &aead_a, 1, pn + 1, plain_ab, sizeof plain_ab);
        assert_true(count_equal(buf_ab.bytes + CRYPT_AAD_LEN,
                                buf_ba.bytes + CRYPT_AAD_LEN, text_len)
                    < text_len / 32);

        crypt_aead_wipe(&aead_a);
        crypt_aead_wipe(&aead_b);
    }
}

static void
test_nonce(void **state)
{
    static const uint8_t expected[CRYPT_NONCE_LEN] = {
        0, 0, 0, 0, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
    };
    uint8_t nonce[CRYPT_NONCE_LEN];

    (void) state;
    memset(nonce, 0xff, sizeof nonce);
    crypt_nonce(UINT64_C(0x0102030405060708), nonce);
    assert_memory_equal(nonce, expected, sizeof nonce);

    memset(nonce, 0xff, sizeof nonce);
    crypt_nonce(0, nonce);
    for (size_t i = 0; i < sizeof nonce; i++) {
        assert_int_equal(nonce[i], 0);
    }

    memset(nonce, 0x55, sizeof nonce);
    crypt_nonce(UINT64_MAX, nonce);
    for (size_t i = 0; i < sizeof nonce; i++) {
        assert_int_equal(nonce[i], i < 4 ? 0 : 0xff);
    }
}

static void
test_pn_floor(void **state)
{
    const uint64_t step = UINT64_C(1) << CRYPT_PN_SHIFT;

    (void) state;
    for (size_t i = 0; i < N_FLOOR_VECTORS; i++) {
        assert_true(crypt_pn_floor(floor_vectors[i].usec)
                    == floor_vectors[i].floor);
    }
    assert_true(crypt_pn_floor(LLONG_MIN) == step);
    assert_true(crypt_pn_floor(-1) == step);
    assert_true(crypt_pn_floor(LLONG_MAX) == UINT64_MAX);

    /* Monotonic through the epoch, and strictly increasing by 'step' every
     * microsecond after it. */
    for (long long int usec = CRYPT_PN_EPOCH_USEC - 1000;
         usec < CRYPT_PN_EPOCH_USEC + 100000; usec++) {
        uint64_t a = crypt_pn_floor(usec), b = crypt_pn_floor(usec + 1);

        assert_true(b >= a);
        if (usec >= CRYPT_PN_EPOCH_USEC) {
            assert_true(b - a == step);
        }
    }

    /* Around every vector: monotonic everywhere, strictly increasing by
     * 'step' between the epoch and the end of the PN space. */
    for (size_t i = 0; i < N_FLOOR_VECTORS; i++) {
        long long int usec = floor_vectors[i].usec;

        for (long long int d = -1000; d < 1000; d++) {
            long long int u;
            uint64_t a, b;

            if (__builtin_add_overflow(usec, d, &u) || u == LLONG_MAX) {
                continue;
            }
            a = crypt_pn_floor(u);
            b = crypt_pn_floor(u + 1);
            assert_true(b >= a);
            if (u >= CRYPT_PN_EPOCH_USEC && b < UINT64_MAX) {
                assert_true(b - a == step);
            }
        }
    }
}

/* A sender counter as the datapath keeps one: it starts at the floor of its
 * creation time and may use a PN only while the PN is below the floor of
 * the current time. */
struct counter {
    uint64_t next;
};

static void
counter_create(struct counter *c, long long int usec)
{
    c->next = crypt_pn_floor(usec);
}

/* Uses up every PN the counter may use at 'usec'.  Returns the highest PN
 * used, or 0 if none. */
static uint64_t
counter_burst(struct counter *c, long long int usec)
{
    uint64_t last = 0;

    while (c->next < crypt_pn_floor(usec)) {
        last = c->next++;
    }
    return last;
}

/* However fast a sender went, a counter created later, even within the same
 * microsecond, starts above every PN it used. */
static void
test_pn_restart(void **state)
{
    static const long long int base = 1772366400000000LL;

    (void) state;
    for (int gap = 0; gap < 4; gap++) {
        for (int lifetime = 0; lifetime < 4; lifetime++) {
            struct counter old, new;
            uint64_t highest = 0;

            counter_create(&old, base);
            for (int t = 0; t <= lifetime; t++) {
                uint64_t last = counter_burst(&old, base + t);

                if (last) {
                    highest = last;
                }
            }
            if (lifetime > 0) {
                assert_true(highest == crypt_pn_floor(base + lifetime) - 1);
            }
            counter_create(&new, base + lifetime + gap);
            assert_true(new.next > highest);
            assert_true(new.next >= old.next);
        }
    }
}

static void
test_names(void **state)
{
    static const char *const verdicts[] = {
        "ok", "bad_tag", "truncated", "bad_header", "unknown_sa",
        "unknown_version", "replay", "too_old", "too_big", "not_ethernet",
        "pn_exhausted", "too_many_senders", "not_ip", "fragment",
        "key_exhausted", "wrong_cipher", "reflected",
    };
    static const char *const modes[] = { "eth", "l2", "l3", "nat" };
    enum crypt_cipher cipher;
    enum crypt_mode mode;

    (void) state;
    assert_int_equal(sizeof verdicts / sizeof verdicts[0], CRYPT_N_VERDICTS);
    for (size_t i = 0; i < sizeof verdicts / sizeof verdicts[0]; i++) {
        assert_string_equal(crypt_verdict_name(i), verdicts[i]);
    }
    assert_string_equal(crypt_verdict_name(CRYPT_N_VERDICTS), "unknown");

    assert_int_equal(sizeof modes / sizeof modes[0], CRYPT_N_MODES);
    for (size_t i = 0; i < CRYPT_N_MODES; i++) {
        assert_string_equal(crypt_mode_name(i), modes[i]);
        mode = CRYPT_N_MODES;
        assert_true(crypt_mode_from_name(modes[i], &mode));
        assert_int_equal(mode, i);
    }
    assert_string_equal(crypt_mode_name(CRYPT_N_MODES), "unknown");
    assert_false(crypt_mode_from_name("", &mode));
    assert_false(crypt_mode_from_name("L3", &mode));
    assert_false(crypt_mode_from_name("unknown", &mode));

    assert_string_equal(crypt_cipher_name(CRYPT_CIPHER_AES256GCM),
                        "aes-256-gcm");
    assert_string_equal(crypt_cipher_name(CRYPT_CIPHER_CHACHA20POLY1305),
                        "chacha20-poly1305");
    for (size_t i = 0; i < N_CIPHERS; i++) {
        cipher = 0;
        assert_true(crypt_cipher_from_name(crypt_cipher_name(all_ciphers[i]),
                                           &cipher));
        assert_int_equal(cipher, all_ciphers[i]);
    }
    assert_false(crypt_cipher_from_name("", &cipher));
    assert_false(crypt_cipher_from_name("aes", &cipher));
    assert_false(crypt_cipher_from_name("AES-256-GCM", &cipher));
    assert_false(crypt_cipher_from_name("chacha20-poly1305 ", &cipher));

    assert_true(crypt_cipher_is_available(CRYPT_CIPHER_CHACHA20POLY1305));
    assert_true(crypt_cipher_is_available(crypt_cipher_default()));
    assert_false(crypt_cipher_is_available(0));
    assert_false(crypt_cipher_is_available(3));
}

static void
test_aead_init_wipe(void **state)
{
    const struct frame_vector *v = &frame_vectors[1];
    static const char marker[] = "pairkey plaintext!";
    struct crypt_aead aead, zero;
    struct frame_buf buf;
    size_t len;

    (void) state;
    assert_int_equal(v->cipher, CRYPT_CIPHER_CHACHA20POLY1305);
    assert_int_equal(crypt_aead_init(&aead, 0, test_key, mac_a), EINVAL);
    assert_int_equal(crypt_aead_init(&aead, 3, test_key, mac_a), EINVAL);
    crypt_aead_wipe(NULL);

    init_aead(&aead, v->cipher, v->key, vector_sender(v));
    crypt_aead_wipe(&aead);
    memset(&zero, 0, sizeof zero);
    assert_memory_equal(&aead, &zero, sizeof aead);

    /* A wiped SA must not send its plaintext out. */
    assert_non_null(memmem(v->plain, v->plain_len, marker, strlen(marker)));
    len = seal_into(&buf, &aead, 1, 1, v->plain, v->plain_len);
    assert_null(memmem(buf.bytes, len, marker, strlen(marker)));
    assert_true(all_canary(buf.bytes + len, sizeof buf.bytes - len));
    assert_int_not_equal(crypt_frame_parse(buf.bytes, len,
                                           &(struct crypt_frame_info) {0}),
                         CRYPT_OK);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kat_aes256gcm),
        cmocka_unit_test(test_kat_chacha20poly1305),
        cmocka_unit_test(test_bit_flips),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_wrong_keys),
        cmocka_unit_test(test_wrong_cipher),
        cmocka_unit_test(test_bad_header),
        cmocka_unit_test(test_directions),
        cmocka_unit_test(test_nonce),
        cmocka_unit_test(test_pn_floor),
        cmocka_unit_test(test_pn_restart),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_aead_init_wipe),
    };

    return cmocka_run_group_tests_name("crypt-frame", tests, setup, NULL);
}
