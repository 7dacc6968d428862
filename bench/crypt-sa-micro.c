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

/* Microbenchmark of the datapath actions in lib/crypt-sa.c, linked against
 * the real OVS library: batches of 32 frames go through
 * crypt_sa_encrypt_batch() on one SA table and crypt_sa_decrypt_batch() on
 * another that holds the same key, as between two bridges.  The comparison
 * is bare libsodium doing the same cryptographic work on the same buffers:
 * the frame after the MAC addresses encrypted in place, 28 bytes of
 * associated data, a detached tag, a fresh nonce, then the matching
 * decryption.  The ratio is the price of everything around the cipher: SA
 * and peer lookup, PN reservation, replay window, counters, framing.
 *
 * Two buffer layouts:
 *
 *   warm  Each packet is allocated once with room for the encryption
 *         header in front and the tag behind, and goes round trip after
 *         round trip (decryption restores the plain frame exactly).
 *
 *   rx    Each round trip starts from fresh packets laid out as
 *         lib/netdev-linux.c receives them (DP_NETDEV_HEADROOM bytes of
 *         headroom, room for an MTU-sized frame behind), and frees them
 *         after.  Both variants pay for the allocation; crypt_sa's
 *         encryption also has to grow the headroom, which reallocates.
 *
 * The machine may be shared, so every figure is the best of many short runs
 * (a short run is more likely to fit between two bursts of someone else's
 * work), and runs of the two variants are interleaved so that a burst of
 * noise hits both.  Timings are printed, never asserted.
 *
 * Usage: crypt-sa-micro [BATCHES [RUNS]] */

#include <config.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crypt-frame.h"
#include "crypt-sa.h"
#include "dp-packet.h"
#include "dpif-netdev.h"
#include "odp-netlink.h"
#include "openvswitch/vlog.h"
#include "packets.h"

#define BATCH NETDEV_MAX_BURST
#define KEY_BYTE 0x42           /* A benchmark key, not a secret. */
#define SA_ID 1
#define KEY_VERSION 1
#define RX_MTU 1500             /* Sizes the rx-like buffers. */

static const size_t frame_sizes[] = { 64, 512, 1500 };
static const enum crypt_cipher ciphers[] = {
    CRYPT_CIPHER_AES256GCM,
    CRYPT_CIPHER_CHACHA20POLY1305,
};

enum layout {
    LAYOUT_WARM,
    LAYOUT_RX,
};

static const uint8_t dst_mac[ETH_ADDR_LEN] = { 2, 0, 0, 0, 2, 2 };
static const uint8_t src_mac[ETH_ADDR_LEN] = { 2, 0, 0, 0, 1, 1 };

/* Everything one measurement needs. */
struct bench {
    enum crypt_cipher cipher;
    size_t len;                 /* Plain frame length. */
    enum layout layout;
    uint8_t frame[1500];        /* The plain frame, as it should come back. */

    struct ovs_action_crypt enc; /* Encrypt on one table... */
    struct ovs_action_crypt dec; /* ...decrypt on another. */
    struct crypt_aead aead;     /* The sender's subkey, for the raw variant. */
    uint64_t raw_pn;            /* PNs of the raw variant. */

    struct dp_packet_batch batch; /* LAYOUT_WARM: the packets, reused. */
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
fill_frame(struct bench *b)
{
    memcpy(b->frame, dst_mac, ETH_ADDR_LEN);
    memcpy(b->frame + ETH_ADDR_LEN, src_mac, ETH_ADDR_LEN);
    b->frame[12] = 0x08;        /* IPv4, though nothing parses it. */
    b->frame[13] = 0x00;
    for (size_t i = ETH_HEADER_LEN; i < b->len; i++) {
        b->frame[i] = i * 7 + 1;
    }
}

/* A packet holding the plain frame, laid out for 'b->layout'. */
static struct dp_packet *
new_packet(const struct bench *b)
{
    struct dp_packet *p;

    if (b->layout == LAYOUT_WARM) {
        p = dp_packet_new_with_headroom(b->len + CRYPT_TAG_LEN,
                                        CRYPT_HEAD_GROWTH);
    } else {
        /* As netdev_linux_batch_rxq_recv_sock() allocates. */
        p = dp_packet_new_with_headroom(VLAN_ETH_HEADER_LEN + RX_MTU,
                                        DP_NETDEV_HEADROOM);
    }
    dp_packet_put(p, b->frame, b->len);
    return p;
}

static void
fill_batch(const struct bench *b, struct dp_packet_batch *batch)
{
    dp_packet_batch_init(batch);
    for (int i = 0; i < BATCH; i++) {
        dp_packet_batch_add(batch, new_packet(b));
    }
}

/* Counts the packets that did not come back or came back changed. */
static void
check_batch(const struct bench *b, const struct dp_packet_batch *batch)
{
    struct dp_packet *p;

    n_failures += BATCH - dp_packet_batch_size(batch);
    DP_PACKET_BATCH_FOR_EACH (i, p, batch) {
        n_failures += (dp_packet_size(p) != b->len
                       || memcmp(dp_packet_data(p), b->frame, b->len));
    }
}

/* One batch round trip through the datapath actions. */
static void
pairkey_round_trip(struct bench *b, struct dp_packet_batch *batch)
{
    crypt_sa_encrypt_batch(&b->enc, batch);
    crypt_sa_decrypt_batch(&b->dec, batch);
}

/* One batch round trip through bare libsodium: each plain frame's bytes
 * after the MAC addresses are encrypted in place with the tag right behind
 * them, and 28 bytes of associated data (written per frame, as a real
 * header would be), then decrypted. */
static void
raw_round_trip(struct bench *b, struct dp_packet_batch *batch)
{
    size_t text_len = b->len - 2 * ETH_ADDR_LEN;
    uint64_t first_pn = b->raw_pn;
    uint8_t ad[BATCH][CRYPT_AAD_LEN];
    uint8_t nonce[CRYPT_NONCE_LEN];
    struct dp_packet *p;

    DP_PACKET_BATCH_FOR_EACH (i, p, batch) {
        uint8_t *text = (uint8_t *) dp_packet_data(p) + 2 * ETH_ADDR_LEN;
        uint64_t pn = b->raw_pn++;

        memcpy(ad[i], dp_packet_data(p), 2 * ETH_ADDR_LEN);
        memcpy(ad[i] + CRYPT_AAD_LEN - sizeof pn, &pn, sizeof pn);
        crypt_nonce(pn, nonce);
        if (b->cipher == CRYPT_CIPHER_AES256GCM) {
            crypto_aead_aes256gcm_encrypt_detached_afternm(
                text, text + text_len, NULL, text, text_len,
                ad[i], CRYPT_AAD_LEN, NULL, nonce, &b->aead.aes);
        } else {
            crypto_aead_chacha20poly1305_ietf_encrypt_detached(
                text, text + text_len, NULL, text, text_len,
                ad[i], CRYPT_AAD_LEN, NULL, nonce, b->aead.chacha);
        }
    }
    DP_PACKET_BATCH_FOR_EACH (i, p, batch) {
        uint8_t *text = (uint8_t *) dp_packet_data(p) + 2 * ETH_ADDR_LEN;
        int error;

        crypt_nonce(first_pn + i, nonce);
        if (b->cipher == CRYPT_CIPHER_AES256GCM) {
            error = crypto_aead_aes256gcm_decrypt_detached_afternm(
                text, NULL, text, text_len, text + text_len,
                ad[i], CRYPT_AAD_LEN, nonce, &b->aead.aes);
        } else {
            error = crypto_aead_chacha20poly1305_ietf_decrypt_detached(
                text, NULL, text, text_len, text + text_len,
                ad[i], CRYPT_AAD_LEN, nonce, b->aead.chacha);
        }
        n_failures += error != 0;
    }
}

/* 'n' batch round trips with 'round_trip'.  Returns ns per frame. */
static double
run(struct bench *b, long n,
    void (*round_trip)(struct bench *, struct dp_packet_batch *))
{
    double start, elapsed;

    if (b->layout == LAYOUT_WARM) {
        start = now_ns();
        for (long i = 0; i < n; i++) {
            round_trip(b, &b->batch);
        }
        elapsed = now_ns() - start;
        check_batch(b, &b->batch);
    } else {
        struct dp_packet_batch batch;

        start = now_ns();
        for (long i = 0; i < n; i++) {
            fill_batch(b, &batch);
            round_trip(b, &batch);
            n_failures += BATCH - dp_packet_batch_size(&batch);
            dp_packet_delete_batch(&batch, true);
        }
        elapsed = now_ns() - start;
    }
    return elapsed / ((double) n * BATCH);
}

static const char *
layout_name(enum layout layout)
{
    return layout == LAYOUT_WARM ? "warm" : "rx";
}

int
main(int argc, char *argv[])
{
    long batches = argc > 1 ? atol(argv[1]) : 300;
    int runs = argc > 2 ? atoi(argv[2]) : 25;
    uint8_t key[CRYPT_KEY_LEN];

    if (batches <= 0 || runs <= 0) {
        fprintf(stderr, "usage: %s [BATCHES [RUNS]]\n", argv[0]);
        return 2;
    }
    vlog_set_levels(NULL, VLF_ANY_DESTINATION, VLL_WARN);
    memset(key, KEY_BYTE, sizeof key);

    uint32_t enc_table = crypt_sa_table_create("bench-enc");
    uint32_t dec_table = crypt_sa_table_create("bench-dec");

    printf("crypt_sa encrypt + decrypt batch round trips vs raw libsodium\n"
           "%d frames per batch, best of %d runs of %ld batches, "
           "ns/frame\n\n", BATCH, runs, batches);
    printf("%-18s %-6s %6s %10s %10s %7s\n",
           "cipher", "layout", "bytes", "raw", "pairkey", "ratio");

    for (size_t c = 0; c < ARRAY_SIZE(ciphers); c++) {
        enum crypt_cipher cipher = ciphers[c];

        if (crypt_sa_add_key(enc_table, SA_ID, KEY_VERSION, cipher, key,
                             false)
            || crypt_sa_add_key(dec_table, SA_ID, KEY_VERSION, cipher, key,
                                false)) {
            printf("%-18s %-6s %6s %10s\n", crypt_cipher_name(cipher),
                   "", "", "n/a");
            continue;
        }
        for (int l = LAYOUT_WARM; l <= LAYOUT_RX; l++) {
            for (size_t s = 0; s < ARRAY_SIZE(frame_sizes); s++) {
                static struct bench b;
                double best_raw = 1e30, best_pairkey = 1e30;

                memset(&b, 0, sizeof b);
                b.cipher = cipher;
                b.len = frame_sizes[s];
                b.layout = l;
                b.enc = (struct ovs_action_crypt) { .table = enc_table,
                                                    .sa_id = SA_ID };
                b.dec = (struct ovs_action_crypt) { .table = dec_table,
                                                    .sa_id = SA_ID };
                b.raw_pn = crypt_pn_floor(CRYPT_PN_EPOCH_USEC);
                fill_frame(&b);
                crypt_aead_init(&b.aead, cipher, key, src_mac);
                if (l == LAYOUT_WARM) {
                    fill_batch(&b, &b.batch);
                }

                /* Warm up caches, branch predictors and clock frequency. */
                run(&b, batches / 4 + 1, pairkey_round_trip);
                run(&b, batches / 4 + 1, raw_round_trip);

                for (int r = 0; r < runs; r++) {
                    double t;

                    t = run(&b, batches, pairkey_round_trip);
                    best_pairkey = MIN(t, best_pairkey);
                    t = run(&b, batches, raw_round_trip);
                    best_raw = MIN(t, best_raw);
                }
                printf("%-18s %-6s %6zu %10.1f %10.1f %7.3f\n",
                       crypt_cipher_name(cipher), layout_name(l), b.len,
                       best_raw, best_pairkey, best_pairkey / best_raw);
                fflush(stdout);

                if (l == LAYOUT_WARM) {
                    dp_packet_delete_batch(&b.batch, true);
                }
                crypt_aead_wipe(&b.aead);
            }
        }
        /* The next cipher replaces the key under a new SA. */
        crypt_sa_delete(enc_table, SA_ID);
        crypt_sa_delete(dec_table, SA_ID);
    }

    if (n_failures) {
        fprintf(stderr, "crypt-sa-micro: %llu frames failed their round "
                "trip\n", n_failures);
        return 1;
    }
    return 0;
}
