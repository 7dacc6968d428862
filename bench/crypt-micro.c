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

/* Microbenchmark of lib/crypt-frame.c: the cost of a seal + open round trip
 * through crypt_frame_seal() and crypt_frame_open(), compared with the bare
 * libsodium calls that do the same cryptographic work (the same number of
 * bytes encrypted in place, the same 28 bytes of associated data, detached
 * tag, a fresh nonce each time).  The ratio is the price of the framing:
 * moving the MAC addresses, writing and reading the header, building the
 * nonce.
 *
 * A second table times the modes between encrypted networks (l2, l3, nat)
 * on an IPv4/UDP frame against the host mode (eth) on the same frame: l3
 * and nat also rewrite the IPv4 header, and nat recomputes the inner UDP
 * checksum on the way in.
 *
 * The machine may be shared, so every figure is the best of several runs,
 * and the runs of the two variants are interleaved so that a burst of
 * noise hits both.  Timings are printed, never asserted.
 *
 * Usage: crypt-micro [ITERATIONS [RUNS]] */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crypt-frame.h"

#define KEY_BYTE 0x42           /* A benchmark key, not a secret. */

static const size_t frame_sizes[] = { 64, 512, 1500 };
static const enum crypt_cipher ciphers[] = {
    CRYPT_CIPHER_AES256GCM,
    CRYPT_CIPHER_CHACHA20POLY1305,
};

/* The buffer a frame lives in, as in a packet buffer: head room, frame,
 * tail room. */
struct bench_buf {
    _Alignas(64) uint8_t bytes[CRYPT_MAX_GROWTH + 1500 + CRYPT_TAG_LEN];
};

/* Set when a round trip fails, which would make the timings meaningless. */
static unsigned long long n_failures;

static double
now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static void
fill_buf(struct bench_buf *buf)
{
    for (size_t i = 0; i < sizeof buf->bytes; i++) {
        buf->bytes[i] = i * 7 + 1;
    }
}

/* 'n' round trips through the pairkey frame codec.  Returns ns per frame. */
static double
run_pairkey(const struct crypt_aead *aead, struct bench_buf *buf,
            size_t len, long n, uint64_t *pn)
{
    double start = now_ns();

    for (long i = 0; i < n; i++) {
        crypt_frame_seal(aead, 1, (*pn)++, buf->bytes, len);
        n_failures += crypt_frame_open(aead, buf->bytes,
                                       len + CRYPT_OVERHEAD) != CRYPT_OK;
    }
    return (now_ns() - start) / n;
}

/* 'n' round trips through bare libsodium over the same bytes: the 'len' -
 * 12 bytes after the MAC addresses encrypted in place, 28 bytes of
 * associated data, the tag right after the ciphertext.  Returns ns per
 * frame. */
static double
run_raw(const struct crypt_aead *aead, struct bench_buf *buf,
        size_t len, long n, uint64_t *pn)
{
    uint8_t *ad = buf->bytes;
    uint8_t *text = buf->bytes + CRYPT_AAD_LEN;
    size_t text_len = len - 12;
    uint8_t *tag = text + text_len;
    uint8_t nonce[CRYPT_NONCE_LEN] = { 0 };
    double start = now_ns();

    for (long i = 0; i < n; i++) {
        uint64_t x = (*pn)++;

        memcpy(nonce + 4, &x, sizeof x);
        if (aead->cipher == CRYPT_CIPHER_AES256GCM) {
            crypto_aead_aes256gcm_encrypt_detached_afternm(
                text, tag, NULL, text, text_len, ad, CRYPT_AAD_LEN,
                NULL, nonce, &aead->aes);
            n_failures += crypto_aead_aes256gcm_decrypt_detached_afternm(
                text, NULL, text, text_len, tag, ad, CRYPT_AAD_LEN,
                nonce, &aead->aes) != 0;
        } else {
            crypto_aead_chacha20poly1305_ietf_encrypt_detached(
                text, tag, NULL, text, text_len, ad, CRYPT_AAD_LEN,
                NULL, nonce, aead->chacha);
            n_failures += crypto_aead_chacha20poly1305_ietf_decrypt_detached(
                text, NULL, text, text_len, tag, ad, CRYPT_AAD_LEN,
                nonce, aead->chacha) != 0;
        }
    }
    return (now_ns() - start) / n;
}

static uint32_t
csum_add(uint32_t sum, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i + 1 < n; i += 2) {
        sum += (p[i] << 8) | p[i + 1];
    }
    if (n & 1) {
        sum += p[n - 1] << 8;
    }
    return sum;
}

static uint16_t
csum_fold(uint32_t sum)
{
    while (sum >> 16) {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    return ~sum;
}

/* Writes at 'f' an IPv4/UDP frame of 'len' bytes with valid checksums. */
static void
make_udp_frame(uint8_t *f, size_t len)
{
    static const uint8_t head[34] = {
        2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00,
        0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 17, 0, 0,
        10, 0, 0, 1, 10, 0, 0, 2,
    };
    size_t ip_len = len - 14, udp_len = ip_len - 20;
    uint16_t c;
    uint32_t sum;

    memcpy(f, head, sizeof head);
    f[16] = ip_len >> 8;
    f[17] = ip_len;
    c = csum_fold(csum_add(0, f + 14, 20));
    f[24] = c >> 8;
    f[25] = c;
    f[34] = 0x9c;               /* Ports 40000 -> 5001. */
    f[35] = 0x40;
    f[36] = 0x13;
    f[37] = 0x89;
    f[38] = udp_len >> 8;
    f[39] = udp_len;
    f[40] = f[41] = 0;
    for (size_t i = 42; i < len; i++) {
        f[i] = i * 7 + 1;
    }
    sum = csum_add(0, f + 26, 8) + 17 + udp_len;
    c = csum_fold(csum_add(sum, f + 34, udp_len));
    f[40] = c >> 8;
    f[41] = c;
}

/* 'n' round trips of the frame at buf + crypt_mode_growth(mode), 'len'
 * bytes, in 'mode'.  Returns ns per frame. */
static double
run_mode(const struct crypt_aead *aead, enum crypt_mode mode,
         const uint8_t sender[CRYPT_MAC_LEN], struct bench_buf *buf,
         size_t len, long n, uint64_t *pn)
{
    size_t sealed_len = len + crypt_mode_overhead(mode);
    double start = now_ns();

    for (long i = 0; i < n; i++) {
        if (mode == CRYPT_MODE_ETH) {
            crypt_frame_seal(aead, 1, (*pn)++, buf->bytes, len);
        } else {
            crypt_frame_seal_sender(aead, mode, 1, (*pn)++, sender,
                                    buf->bytes, len);
        }
        n_failures += crypt_frame_open(aead, buf->bytes,
                                       sealed_len) != CRYPT_OK;
    }
    return (now_ns() - start) / n;
}

/* The second table: each mode against eth, best of 'runs'. */
static void
bench_modes(const uint8_t key[CRYPT_KEY_LEN], long iterations, int runs)
{
    static const uint8_t sender[CRYPT_MAC_LEN] = { 2, 0, 0, 0, 0, 1 };

    printf("\nmodes, IPv4/UDP frames, aes-256-gcm (chacha20-poly1305 if "
           "AES-GCM is not available), ns/frame\n\n");
    printf("%-6s %6s %10s %10s %7s\n", "mode", "bytes", "eth", "mode",
           "ratio");
    for (size_t s = 0; s < sizeof frame_sizes / sizeof frame_sizes[0]; s++) {
        size_t len = frame_sizes[s];

        for (int mode = CRYPT_MODE_L2; mode < CRYPT_N_MODES; mode++) {
            double best[2] = { 1e30, 1e30 };
            static struct bench_buf bufs[2];
            struct crypt_aead aead;
            uint64_t pn = crypt_pn_floor(CRYPT_PN_EPOCH_USEC);
            const enum crypt_mode modes[2] = { CRYPT_MODE_ETH, mode };

            crypt_aead_init(&aead, crypt_cipher_default(), key, sender);
            for (int m = 0; m < 2; m++) {
                make_udp_frame(bufs[m].bytes + crypt_mode_growth(modes[m]),
                               len);
                run_mode(&aead, modes[m], sender, &bufs[m], len,
                         iterations / 4 + 1, &pn);
            }
            for (int r = 0; r < runs; r++) {
                for (int m = 0; m < 2; m++) {
                    double t = run_mode(&aead, modes[m], sender, &bufs[m],
                                        len, iterations, &pn);

                    best[m] = t < best[m] ? t : best[m];
                }
            }
            printf("%-6s %6zu %10.1f %10.1f %7.3f\n", crypt_mode_name(mode),
                   len, best[0], best[1], best[1] / best[0]);
            crypt_aead_wipe(&aead);
        }
    }
}

int
main(int argc, char *argv[])
{
    long iterations = argc > 1 ? atol(argv[1]) : 200000;
    int runs = argc > 2 ? atoi(argv[2]) : 9;
    uint8_t key[CRYPT_KEY_LEN];
    static const uint8_t mac[CRYPT_MAC_LEN] = { 2, 0, 0, 0, 0, 1 };

    if (iterations <= 0 || runs <= 0) {
        fprintf(stderr, "usage: %s [ITERATIONS [RUNS]]\n", argv[0]);
        return 2;
    }
    if (crypt_frame_init()) {
        fprintf(stderr, "crypt-micro: libsodium failed to initialize\n");
        return 1;
    }
    memset(key, KEY_BYTE, sizeof key);

    printf("seal + open round trips, best of %d runs of %ld, ns/frame\n\n",
           runs, iterations);
    printf("%-18s %6s %10s %10s %7s\n",
           "cipher", "bytes", "raw", "pairkey", "ratio");
    for (size_t c = 0; c < sizeof ciphers / sizeof ciphers[0]; c++) {
        for (size_t s = 0; s < sizeof frame_sizes / sizeof frame_sizes[0];
             s++) {
            size_t len = frame_sizes[s];
            double best_raw = 1e30, best_pairkey = 1e30;
            struct crypt_aead aead;
            struct bench_buf buf;
            uint64_t pn = crypt_pn_floor(CRYPT_PN_EPOCH_USEC);

            if (crypt_aead_init(&aead, ciphers[c], key, mac)) {
                printf("%-18s %6zu %10s\n", crypt_cipher_name(ciphers[c]),
                       len, "n/a");
                continue;
            }
            fill_buf(&buf);

            /* Warm up caches, branch predictors and clock frequency. */
            run_pairkey(&aead, &buf, len, iterations / 4 + 1, &pn);
            run_raw(&aead, &buf, len, iterations / 4 + 1, &pn);

            for (int r = 0; r < runs; r++) {
                double t;

                t = run_pairkey(&aead, &buf, len, iterations, &pn);
                best_pairkey = t < best_pairkey ? t : best_pairkey;
                t = run_raw(&aead, &buf, len, iterations, &pn);
                best_raw = t < best_raw ? t : best_raw;
            }
            printf("%-18s %6zu %10.1f %10.1f %7.3f\n",
                   crypt_cipher_name(ciphers[c]), len, best_raw,
                   best_pairkey, best_pairkey / best_raw);
            crypt_aead_wipe(&aead);
        }
    }

    bench_modes(key, iterations, runs);

    if (n_failures) {
        fprintf(stderr, "crypt-micro: %llu round trips failed\n",
                n_failures);
        return 1;
    }
    return 0;
}
