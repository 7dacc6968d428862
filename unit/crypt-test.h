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

#ifndef CRYPT_TEST_H
#define CRYPT_TEST_H 1

/* Helpers shared by the cmocka tests of lib/crypt-frame.c.  Include after
 * <cmocka.h> and "crypt-frame.h". */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Filler around frames: a byte that changed shows a write out of bounds. */
#define CANARY 0xa5

static const enum crypt_cipher all_ciphers[] = {
    CRYPT_CIPHER_AES256GCM,
    CRYPT_CIPHER_CHACHA20POLY1305,
};
#define N_CIPHERS (sizeof all_ciphers / sizeof all_ciphers[0])

/* AEAD state must be 16-byte aligned; the type says so, but keep it
 * explicit since these live on the stack. */
static inline void
init_aead(struct crypt_aead *aead, enum crypt_cipher cipher,
          const uint8_t *key, const uint8_t *sender)
{
    assert_int_equal(crypt_aead_init(aead, cipher, key, sender), 0);
    assert_int_equal((uintptr_t) aead % 16, 0);
    assert_int_equal(aead->cipher, cipher);
}

static inline bool
all_canary(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] != CANARY) {
            return false;
        }
    }
    return true;
}

/* True, having said so, if this CPU cannot run 'cipher'. */
static inline bool
skip_unavailable(enum crypt_cipher cipher)
{
    if (!crypt_cipher_is_available(cipher)) {
        print_message("%s not available on this CPU, skipped\n",
                      crypt_cipher_name(cipher));
        return true;
    }
    return false;
}

/* Counts the byte positions where 'a' and 'b' agree. */
static inline size_t
count_equal(const uint8_t *a, const uint8_t *b, size_t n)
{
    size_t equal = 0;

    for (size_t i = 0; i < n; i++) {
        equal += a[i] == b[i];
    }
    return equal;
}

#endif /* crypt-test.h */
