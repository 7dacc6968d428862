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

/* Unit tests for the modes of lib/crypt-frame.c that carry a sender id in
 * the header (l2, l3 and nat): known answers from unit/gen-vectors.py, the
 * rewrites of a NAT, tampering, truncation, the IPv4 packets that the IP
 * modes refuse, and nonce separation between the senders of one key. */

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <cmocka.h>

#include "crypt-frame.h"
#include "crypt-test.h"
#include "vectors.h"

#define N_MODE_VECTORS (sizeof mode_vectors / sizeof mode_vectors[0])

/* Room for the largest vector, sealed, with canary bytes on both sides. */
#define BUF_LEN 2048
#define HEAD_ROOM 64

/* Ethernet, IPv4 and UDP as the tests need them, written down here and not
 * taken from the codec. */
#define ETH_HLEN 14
#define IP_OFS_TOS 1
#define IP_OFS_TOT_LEN 2
#define IP_OFS_ID 4
#define IP_OFS_FRAG 6
#define IP_OFS_TTL 8
#define IP_OFS_PROTO 9
#define IP_OFS_CSUM 10
#define IP_OFS_SRC 12
#define IP_OFS_DST 16
#define IP_DF 0x4000
#define UDP_HLEN 8
#define HDR2_OFS_SENDER 14

static const uint8_t sender_a[CRYPT_MAC_LEN] = { 0x5e, 0, 0, 0, 0xaa, 0x01 };
static const uint8_t sender_b[CRYPT_MAC_LEN] = { 0x5e, 0, 0, 0, 0xbb, 0x02 };
static const uint8_t test_key[CRYPT_KEY_LEN] = {
    0x70, 0x61, 0x69, 0x72, 0x6b, 0x65, 0x79, 0x20,
    0x6d, 0x6f, 0x64, 0x65, 0x20, 0x74, 0x65, 0x73,
    0x74, 0x20, 0x6b, 0x65, 0x79, 0x20, 0x6e, 0x6f,
    0x74, 0x20, 0x73, 0x65, 0x63, 0x72, 0x65, 0x74,
};

static const enum crypt_mode sender_modes[] = {
    CRYPT_MODE_L2,
    CRYPT_MODE_L3,
    CRYPT_MODE_NAT,
};
#define N_SENDER_MODES (sizeof sender_modes / sizeof sender_modes[0])

/* A buffer for sealing, aligned like a packet buffer.  The frame starts
 * HEAD_ROOM bytes in, so that writes in front of it show up too. */
struct frame_buf {
    _Alignas(64) uint8_t bytes[BUF_LEN];
};

/* Memory that ends at an inaccessible page: a frame copied to its end makes
 * every read or write past the frame fault. */
static uint8_t *guard_start;
static size_t guard_room;

static uint16_t
get_be16(const uint8_t *p)
{
    return (p[0] << 8) | p[1];
}

static void
put_be16(uint8_t *p, uint16_t x)
{
    p[0] = x >> 8;
    p[1] = x;
}

static uint8_t *
frame_of(struct frame_buf *buf)
{
    return buf->bytes + HEAD_ROOM;
}

/* Copies the 'len' bytes at 'frame' to the end of the guarded memory and
 * returns where they are. */
static uint8_t *
guarded_copy(const uint8_t *frame, size_t len)
{
    uint8_t *p;

    assert_true(len <= guard_room);
    p = guard_start + guard_room - len;
    memcpy(p, frame, len);
    return p;
}

static void
assert_canaries(struct frame_buf *buf, size_t len)
{
    assert_true(all_canary(buf->bytes, HEAD_ROOM));
    assert_true(all_canary(frame_of(buf) + len,
                           sizeof buf->bytes - HEAD_ROOM - len));
}

/* Copies 'plain' into 'buf' behind the room that 'mode' needs, seals it and
 * returns the sealed length.  The sealed frame starts at frame_of(buf). */
static size_t
seal_into(struct frame_buf *buf, const struct crypt_aead *aead,
          enum crypt_mode mode, uint32_t key_version, uint64_t pn,
          const uint8_t *sender, const uint8_t *plain, size_t plain_len)
{
    size_t growth = crypt_mode_growth(mode);

    memset(buf->bytes, CANARY, sizeof buf->bytes);
    memcpy(frame_of(buf) + growth, plain, plain_len);
    crypt_frame_seal_sender(aead, mode, key_version, pn, sender,
                            frame_of(buf), plain_len);
    return plain_len + crypt_mode_overhead(mode);
}

static size_t
seal_vector(struct frame_buf *buf, const struct crypt_aead *aead,
            const struct mode_vector *v)
{
    return seal_into(buf, aead, v->mode, v->key_version, v->pn, v->sender,
                     v->plain, v->plain_len);
}

static const struct mode_vector *
find_vector(const char *name, enum crypt_cipher cipher)
{
    for (size_t i = 0; i < N_MODE_VECTORS; i++) {
        if (!strcmp(mode_vectors[i].name, name)
            && mode_vectors[i].cipher == cipher) {
            return &mode_vectors[i];
        }
    }
    fail_msg("no vector %s/%s", name, crypt_cipher_name(cipher));
    return NULL;
}

static bool
is_ip_mode(enum crypt_mode mode)
{
    return mode == CRYPT_MODE_L3 || mode == CRYPT_MODE_NAT;
}

/* The IPv4 header length of the IPv4 packet in 'frame'. */
static size_t
ip_hlen(const uint8_t *frame)
{
    return (frame[ETH_HLEN] & 0xf) * 4;
}

/* Where the header2 of a frame sealed in 'mode' from 'plain' starts. */
static size_t
header2_ofs(enum crypt_mode mode, const uint8_t *plain)
{
    switch (mode) {
    case CRYPT_MODE_L2:
        return ETH_HLEN;
    case CRYPT_MODE_L3:
        return ETH_HLEN + ip_hlen(plain);
    case CRYPT_MODE_NAT:
        return ETH_HLEN + ip_hlen(plain) + UDP_HLEN;
    case CRYPT_MODE_ETH:
    case CRYPT_N_MODES:
        break;
    }
    fail();
    return 0;
}

/* The one's complement sum of 'n' bytes at 'p' (an odd last byte padded
 * with zero) added to 'sum', folded to 16 bits. */
static uint32_t
ones_sum(uint64_t sum, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        sum += i % 2 ? p[i] : (uint32_t) p[i] << 8;
    }
    while (sum >> 16) {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    return sum;
}

/* The one's complement sum of the TCP or UDP pseudo-header of the IPv4
 * packet at 'ip'. */
static uint32_t
pseudo_sum(const uint8_t *ip)
{
    size_t hlen = (ip[0] & 0xf) * 4;
    size_t l4_len = get_be16(ip + IP_OFS_TOT_LEN) - hlen;
    uint8_t pseudo[12];

    memcpy(pseudo, ip + IP_OFS_SRC, 8);
    pseudo[8] = 0;
    pseudo[9] = ip[IP_OFS_PROTO];
    put_be16(pseudo + 10, l4_len);
    return ones_sum(0, pseudo, sizeof pseudo);
}

static bool
ip_csum_ok(const uint8_t *ip)
{
    return ones_sum(0, ip, (ip[0] & 0xf) * 4) == 0xffff;
}

static void
ip_fix_csum(uint8_t *ip)
{
    put_be16(ip + IP_OFS_CSUM, 0);
    put_be16(ip + IP_OFS_CSUM, ~ones_sum(0, ip, (ip[0] & 0xf) * 4));
}

/* True if the TCP, UDP or ICMP checksum of the IPv4 packet at 'ip'
 * validates.  A UDP checksum of 0 means none. */
static bool
l4_csum_ok(const uint8_t *ip)
{
    size_t hlen = (ip[0] & 0xf) * 4;
    size_t l4_len = get_be16(ip + IP_OFS_TOT_LEN) - hlen;
    const uint8_t *l4 = ip + hlen;

    switch (ip[IP_OFS_PROTO]) {
    case 1:
        return ones_sum(0, l4, l4_len) == 0xffff;
    case 17:
        if (!get_be16(l4 + 6)) {
            return true;
        }
        /* Fall through. */
    case 6:
        return ones_sum(pseudo_sum(ip), l4, l4_len) == 0xffff;
    default:
        fail();
        return false;
    }
}

/* Recomputes the TCP, UDP or ICMP checksum of the IPv4 packet at 'ip'. */
static void
l4_fix_csum(uint8_t *ip)
{
    size_t hlen = (ip[0] & 0xf) * 4;
    size_t l4_len = get_be16(ip + IP_OFS_TOT_LEN) - hlen;
    uint8_t *l4 = ip + hlen;
    uint16_t csum;

    switch (ip[IP_OFS_PROTO]) {
    case 1:
        put_be16(l4 + 2, 0);
        put_be16(l4 + 2, ~ones_sum(0, l4, l4_len));
        break;
    case 6:
        put_be16(l4 + 16, 0);
        put_be16(l4 + 16, ~ones_sum(pseudo_sum(ip), l4, l4_len));
        break;
    case 17:
        put_be16(l4 + 6, 0);
        csum = ~ones_sum(pseudo_sum(ip), l4, l4_len);
        put_be16(l4 + 6, csum ? csum : 0xffff);
        break;
    default:
        fail();
    }
}

/* Where the port that nat mode mirrors in UDP port 'which' (0 for the
 * source, 1 for the destination) lives in the IPv4 packet at 'ip', as an
 * offset from the transport header, or -1 if nowhere. */
static int
nat_port_ofs(const uint8_t *ip, int which)
{
    size_t hlen = (ip[0] & 0xf) * 4;
    size_t l4_len = get_be16(ip + IP_OFS_TOT_LEN) - hlen;
    const uint8_t *l4 = ip + hlen;

    switch (ip[IP_OFS_PROTO]) {
    case 6:
        return l4_len >= 20 ? 2 * which : -1;
    case 17:
        return l4_len >= UDP_HLEN ? 2 * which : -1;
    case 1:
        if (l4_len < 8) {
            return -1;
        } else if (l4[0] == 8) {
            return which == 0 ? 4 : -1;     /* Echo request: the id. */
        } else if (l4[0] == 0) {
            return which == 1 ? 4 : -1;     /* Echo reply: the id. */
        }
        return -1;
    default:
        return -1;
    }
}

/* True if nat mode recomputes the transport checksum of the IPv4 packet at
 * 'ip'. */
static bool
nat_has_csum(const uint8_t *ip)
{
    size_t hlen = (ip[0] & 0xf) * 4;
    size_t l4_len = get_be16(ip + IP_OFS_TOT_LEN) - hlen;

    switch (ip[IP_OFS_PROTO]) {
    case 1:
        return l4_len >= 8;
    case 6:
        return l4_len >= 20;
    case 17:
        return l4_len >= UDP_HLEN && get_be16(ip + hlen + 6);
    default:
        return false;
    }
}

/* Stores in 'expected' the plain frame that opening 'sealed', the sealed
 * frame of IP-mode vector 'v' with some of its unauthenticated fields
 * changed, must give: the Ethernet header and the IPv4 header as they are
 * in 'sealed', except for what encryption changed (total length,
 * fragment field, protocol) and the recomputed checksum; in nat mode also
 * the UDP ports written back into the transport header, with its checksum
 * recomputed. */
static void
expected_open(const struct mode_vector *v, const uint8_t *sealed,
              uint8_t *expected)
{
    size_t hlen = ip_hlen(v->plain);
    uint8_t *ip = expected + ETH_HLEN;

    memcpy(expected, v->plain, v->plain_len);
    memcpy(expected, sealed, ETH_HLEN);
    for (size_t i = 0; i < hlen; i++) {
        if (i != IP_OFS_TOT_LEN && i != IP_OFS_TOT_LEN + 1
            && i != IP_OFS_FRAG && i != IP_OFS_FRAG + 1
            && i != IP_OFS_PROTO) {
            ip[i] = sealed[ETH_HLEN + i];
        }
    }
    ip_fix_csum(ip);

    if (v->mode == CRYPT_MODE_NAT) {
        const uint8_t *udp = sealed + ETH_HLEN + hlen;
        bool recompute = nat_has_csum(ip);

        for (int which = 0; which < 2; which++) {
            int ofs = nat_port_ofs(ip, which);

            if (ofs >= 0) {
                memcpy(ip + hlen + ofs, udp + 2 * which, 2);
            }
        }
        if (recompute) {
            l4_fix_csum(ip);
        }
    }
}

static int
setup(void **state)
{
    long int page = sysconf(_SC_PAGESIZE);
    size_t room;
    uint8_t *p;

    (void) state;
    if (page <= 0) {
        return -1;
    }
    room = (BUF_LEN + page - 1) / page * page;
    p = mmap(NULL, room + page, PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED || mprotect(p + room, page, PROT_NONE)) {
        return -1;
    }
    guard_start = p;
    guard_room = room;
    return crypt_frame_init();
}

static int
teardown(void **state)
{
    long int page = sysconf(_SC_PAGESIZE);

    (void) state;
    return munmap(guard_start, guard_room + page);
}

static void
test_sizes(void **state)
{
    (void) state;
    assert_int_equal(crypt_mode_growth(CRYPT_MODE_ETH), CRYPT_HEAD_GROWTH);
    assert_int_equal(crypt_mode_overhead(CRYPT_MODE_ETH), CRYPT_OVERHEAD);
    assert_int_equal(crypt_mode_growth(CRYPT_MODE_L2), 2 + CRYPT_HDR2_LEN);
    assert_int_equal(crypt_mode_overhead(CRYPT_MODE_L2), 38);
    assert_int_equal(crypt_mode_growth(CRYPT_MODE_L3), CRYPT_HDR2_LEN + 2);
    assert_int_equal(crypt_mode_overhead(CRYPT_MODE_L3), 38);
    assert_int_equal(crypt_mode_growth(CRYPT_MODE_NAT),
                     UDP_HLEN + CRYPT_HDR2_LEN + 2);
    assert_int_equal(crypt_mode_overhead(CRYPT_MODE_NAT), 46);
    for (int mode = 0; mode < CRYPT_N_MODES; mode++) {
        assert_true(crypt_mode_growth(mode) <= CRYPT_MAX_GROWTH);
        assert_int_equal(crypt_mode_overhead(mode),
                         crypt_mode_growth(mode) + CRYPT_TAG_LEN);
    }
    assert_int_equal(crypt_mode_growth(CRYPT_MODE_NAT), CRYPT_MAX_GROWTH);
}

/* Known answers: sealing must give the bytes computed by gen-vectors.py,
 * parsing must find the header fields and the plain frame, and opening both
 * our frame and the generated one must give back the plain frame. */
static void
check_known_answers(enum crypt_cipher cipher)
{
    int n_modes[CRYPT_N_MODES] = { 0 };
    bool seen_options = false, seen_no_df = false;
    bool seen_proto[256] = { false };

    if (skip_unavailable(cipher)) {
        skip();
    }
    for (size_t i = 0; i < N_MODE_VECTORS; i++) {
        const struct mode_vector *v = &mode_vectors[i];
        size_t growth = crypt_mode_growth(v->mode);
        struct crypt_frame_info info;
        struct crypt_aead aead;
        struct frame_buf buf;
        uint8_t *frame = frame_of(&buf);
        uint8_t *copy;
        size_t len;

        if (v->cipher != cipher) {
            continue;
        }
        print_message("vector %s/%s\n", v->name, crypt_cipher_name(cipher));
        n_modes[v->mode]++;

        if (is_ip_mode(v->mode)) {
            size_t plain_len = 0;

            assert_int_equal(crypt_frame_check_ip(v->plain, v->plain_len,
                                                  &plain_len), CRYPT_OK);
            assert_int_equal(plain_len, v->plain_len);
            assert_true(ip_csum_ok(v->plain + ETH_HLEN));
            seen_options |= ip_hlen(v->plain) > 20;
            seen_no_df |= !(get_be16(v->plain + ETH_HLEN + IP_OFS_FRAG)
                            & IP_DF);
            if (v->mode == CRYPT_MODE_NAT) {
                seen_proto[v->plain[ETH_HLEN + IP_OFS_PROTO]] = true;
            }
        }

        /* The subkey belongs to the sender id, not to the source MAC. */
        assert_memory_not_equal(v->sender, v->plain + CRYPT_MAC_LEN,
                                CRYPT_MAC_LEN);
        init_aead(&aead, cipher, v->key, v->sender);
        len = seal_vector(&buf, &aead, v);
        assert_int_equal(len, v->sealed_len);
        assert_int_equal(len, v->plain_len + crypt_mode_overhead(v->mode));
        assert_memory_equal(frame, v->sealed, v->sealed_len);
        assert_canaries(&buf, len);

        memset(&info, 0, sizeof info);
        assert_int_equal(crypt_frame_parse(frame, len, &info), CRYPT_OK);
        assert_int_equal(info.mode, v->mode);
        assert_int_equal(info.cipher, cipher);
        assert_int_equal(info.key_version, v->key_version);
        assert_true(info.pn == v->pn);
        assert_ptr_equal(info.sender, (frame + header2_ofs(v->mode, v->plain)
                                       + HDR2_OFS_SENDER));
        assert_memory_equal(info.sender, v->sender, CRYPT_MAC_LEN);
        assert_int_equal(info.plain_ofs, growth);
        assert_int_equal(info.plain_len, v->plain_len);

        assert_int_equal(crypt_frame_open(&aead, frame, len), CRYPT_OK);
        assert_memory_equal(frame + growth, v->plain, v->plain_len);
        assert_canaries(&buf, len);

        /* The other implementation's frame opens too, and nothing is read
         * or written past its end. */
        copy = guarded_copy(v->sealed, v->sealed_len);
        assert_int_equal(crypt_frame_parse(copy, v->sealed_len, &info),
                         CRYPT_OK);
        assert_int_equal(crypt_frame_open(&aead, copy, v->sealed_len),
                         CRYPT_OK);
        assert_memory_equal(copy + growth, v->plain, v->plain_len);
        crypt_aead_wipe(&aead);
    }
    assert_true(n_modes[CRYPT_MODE_ETH] == 0);
    assert_true(n_modes[CRYPT_MODE_L2] >= 2);
    assert_true(n_modes[CRYPT_MODE_L3] >= 2);
    assert_true(n_modes[CRYPT_MODE_NAT] >= 6);
    assert_true(seen_options);
    assert_true(seen_no_df);
    assert_true(seen_proto[1] && seen_proto[6] && seen_proto[17]);
    assert_true(seen_proto[47]);
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

/* The UDP ports of nat mode: the inner ports, the echo identifier or
 * CRYPT_UDP_PORT. */
static void
test_nat_ports(void **state)
{
    (void) state;
    for (size_t i = 0; i < N_MODE_VECTORS; i++) {
        const struct mode_vector *v = &mode_vectors[i];
        const uint8_t *ip = v->plain + ETH_HLEN;
        const uint8_t *l4 = ip + ip_hlen(v->plain);
        const uint8_t *udp = v->sealed + ETH_HLEN + ip_hlen(v->plain);
        const uint8_t *outer = v->sealed + ETH_HLEN;

        if (v->mode != CRYPT_MODE_NAT) {
            continue;
        }
        for (int which = 0; which < 2; which++) {
            int ofs = nat_port_ofs(ip, which);

            assert_int_equal(get_be16(udp + 2 * which),
                             ofs >= 0 ? get_be16(l4 + ofs) : CRYPT_UDP_PORT);
        }
        assert_int_equal(get_be16(udp + 4),
                         v->sealed_len - ETH_HLEN - ip_hlen(v->plain));
        assert_int_equal(get_be16(udp + 6), 0);
        assert_int_equal(outer[IP_OFS_PROTO], 17);
        assert_int_equal(get_be16(outer + IP_OFS_FRAG), IP_DF);
        assert_int_equal(get_be16(outer + IP_OFS_TOT_LEN),
                         v->sealed_len - ETH_HLEN);
        assert_true(ip_csum_ok(outer));
    }
}

/* One rewrite that a NAT applies to a nat mode frame: the source address
 * and port (masquerading a client), or the destination address and port
 * (the reply to a masqueraded client, or port forwarding). */
struct nat_rewrite {
    int which;                  /* 0: source, 1: destination. */
    uint8_t addr[4];
    uint16_t port;
};

static void
check_nat_rewrite(const struct mode_vector *v, const struct nat_rewrite *r)
{
    size_t hlen = ip_hlen(v->plain);
    size_t addr_ofs = r->which ? IP_OFS_DST : IP_OFS_SRC;
    const uint8_t *orig_ip = v->plain + ETH_HLEN;
    int port_ofs = nat_port_ofs(orig_ip, r->which);
    bool has_csum = nat_has_csum(orig_ip);
    uint8_t copy[BUF_LEN], rewritten[BUF_LEN];
    struct crypt_aead aead;
    struct frame_buf buf;
    uint8_t *frame = frame_of(&buf);
    uint8_t *ip, *l4;
    size_t len;

    print_message("%s/%s, rewriting the %s\n", v->name,
                  crypt_cipher_name(v->cipher),
                  r->which ? "destination" : "source");
    init_aead(&aead, v->cipher, v->key, v->sender);
    len = seal_vector(&buf, &aead, v);
    assert_memory_equal(frame, v->sealed, len);

    /* The NAT rewrites the address, fixes the IPv4 checksum and rewrites
     * the port.  The UDP checksum is 0, so there is none to fix. */
    ip = frame + ETH_HLEN;
    memcpy(ip + addr_ofs, r->addr, 4);
    ip_fix_csum(ip);
    put_be16(ip + hlen + 2 * r->which, r->port);

    assert_int_equal(crypt_frame_open(&aead, frame, len), CRYPT_OK);
    assert_canaries(&buf, len);
    frame += crypt_mode_growth(CRYPT_MODE_NAT);
    ip = frame + ETH_HLEN;
    l4 = ip + hlen;

    /* The rewrites reached the inner packet, whose checksums validate. */
    assert_memory_equal(ip + addr_ofs, r->addr, 4);
    assert_true(ip_csum_ok(ip));
    if (port_ofs >= 0) {
        assert_int_equal(get_be16(l4 + port_ofs), r->port);
    }
    if (has_csum) {
        assert_true(l4_csum_ok(ip));
    }
    if (ip[IP_OFS_PROTO] == 17 && !get_be16(orig_ip + hlen + 6)) {
        assert_int_equal(get_be16(l4 + 6), 0);
    }

    /* Everything else is the original. */
    memcpy(copy, frame, v->plain_len);
    memcpy(copy + ETH_HLEN + addr_ofs, orig_ip + addr_ofs, 4);
    memcpy(copy + ETH_HLEN + IP_OFS_CSUM, orig_ip + IP_OFS_CSUM, 2);
    if (port_ofs >= 0) {
        memcpy(copy + ETH_HLEN + hlen + port_ofs,
               orig_ip + hlen + port_ofs, 2);
    }
    if (has_csum) {
        size_t csum_ofs = (orig_ip[IP_OFS_PROTO] == 1 ? 2
                           : orig_ip[IP_OFS_PROTO] == 6 ? 16 : 6);

        memcpy(copy + ETH_HLEN + hlen + csum_ofs,
               orig_ip + hlen + csum_ofs, 2);
    }
    assert_memory_equal(copy, v->plain, v->plain_len);

    /* And the model of the other tests agrees. */
    memcpy(rewritten, v->sealed, v->sealed_len);
    memcpy(rewritten + ETH_HLEN + addr_ofs, r->addr, 4);
    put_be16(rewritten + ETH_HLEN + hlen + 2 * r->which, r->port);
    expected_open(v, rewritten, copy);
    assert_memory_equal(frame, copy, v->plain_len);
    crypt_aead_wipe(&aead);
}

static void
test_nat_rewrite(void **state)
{
    static const struct nat_rewrite rewrites[] = {
        { 0, { 198, 51, 100, 7 }, 40001 },
        { 1, { 192, 0, 2, 44 }, 40002 },
        { 0, { 203, 0, 113, 255 }, 65535 },
        { 1, { 255, 255, 255, 255 }, 1 },
    };
    static const char *const must_see[] = {
        "nat_tcp", "nat_icmp_request", "nat_icmp_reply",
    };
    int n_ported = 0;

    (void) state;
    for (size_t i = 0; i < sizeof must_see / sizeof must_see[0]; i++) {
        assert_non_null(find_vector(must_see[i], CRYPT_CIPHER_AES256GCM));
    }
    for (size_t i = 0; i < N_MODE_VECTORS; i++) {
        const struct mode_vector *v = &mode_vectors[i];

        if (v->mode != CRYPT_MODE_NAT
            || !crypt_cipher_is_available(v->cipher)) {
            continue;
        }
        for (size_t j = 0; j < sizeof rewrites / sizeof rewrites[0]; j++) {
            check_nat_rewrite(v, &rewrites[j]);
            n_ported += nat_port_ofs(v->plain + ETH_HLEN,
                                     rewrites[j].which) >= 0;
        }
    }
    assert_true(n_ported >= 8);
}

/* A receiver that finds 'frame' on the wire: parse, then derive the subkey
 * of whatever sender and cipher the (possibly forged) header names and open
 * a copy that ends at a guard page.  Also opens a copy with 'aead', the
 * subkey of the true sender, which must agree.  On success, copies the
 * plain frame to 'plain' and stores its length in '*plain_len'. */
static enum crypt_verdict
receive(const uint8_t *key, const struct crypt_aead *aead,
        const uint8_t *frame, size_t len, uint8_t *plain, size_t *plain_len)
{
    struct crypt_frame_info info;
    struct crypt_aead derived;
    enum crypt_verdict v1, v2;
    uint8_t *copy;

    v1 = crypt_frame_parse(frame, len, &info);
    if (v1 != CRYPT_OK) {
        copy = guarded_copy(frame, len);
        assert_int_equal(crypt_frame_open(aead, copy, len), v1);
        return v1;
    }
    assert_true(info.plain_ofs + info.plain_len <= len);
    if (!crypt_cipher_is_available(info.cipher)) {
        return CRYPT_DROP_BAD_HEADER;
    }

    copy = guarded_copy(frame, len);
    init_aead(&derived, info.cipher, key, info.sender);
    v1 = crypt_frame_open(&derived, copy, len);
    crypt_aead_wipe(&derived);
    if (v1 == CRYPT_OK) {
        memcpy(plain, copy + info.plain_ofs, info.plain_len);
        *plain_len = info.plain_len;
    }

    copy = guarded_copy(frame, len);
    v2 = crypt_frame_open(aead, copy, len);
    if (v1 == CRYPT_OK && info.cipher == aead->cipher) {
        assert_int_equal(v2, CRYPT_OK);
        assert_memory_equal(copy + info.plain_ofs, plain, info.plain_len);
    }
    return v1 != CRYPT_OK ? v1 : v2;
}

/* What flipping a bit of a sealed frame must do. */
enum flip_effect {
    FLIP_BAD_TAG,               /* Authenticated: open fails. */
    FLIP_BAD_HEADER,            /* Parse refuses. */
    FLIP_FRAGMENT,              /* Parse refuses as a fragment. */
    FLIP_REFUSED,               /* Parse or open refuses, either way. */
    FLIP_OPENS,                 /* Not authenticated: see expected_open(). */
};

static enum flip_effect
flip_effect(const struct mode_vector *v, size_t byte, int bit)
{
    size_t hdr2 = header2_ofs(v->mode, v->plain);
    size_t hlen, ofs;

    if (byte == 2 * CRYPT_MAC_LEN || byte == 2 * CRYPT_MAC_LEN + 1) {
        return FLIP_BAD_HEADER;                 /* EtherType. */
    } else if (byte == hdr2 || byte == hdr2 + 1) {
        return FLIP_BAD_HEADER;                 /* Format, cipher. */
    } else if (byte >= hdr2 || v->mode == CRYPT_MODE_L2) {
        return FLIP_BAD_TAG;
    } else if (byte < 2 * CRYPT_MAC_LEN) {
        return FLIP_OPENS;                      /* MAC addresses. */
    }

    hlen = ip_hlen(v->plain);
    ofs = byte - ETH_HLEN;
    if (ofs >= hlen) {
        return FLIP_OPENS;                      /* nat: UDP header. */
    }
    switch (ofs) {
    case 0:                                     /* Version, IHL. */
    case IP_OFS_TOT_LEN:
    case IP_OFS_TOT_LEN + 1:
        return FLIP_REFUSED;
    case IP_OFS_FRAG:
        /* The reserved bit and DF are not fragment bits. */
        return bit >= 6 ? FLIP_OPENS : FLIP_FRAGMENT;
    case IP_OFS_FRAG + 1:
        return FLIP_FRAGMENT;
    case IP_OFS_PROTO:
        return FLIP_BAD_HEADER;
    default:
        if (ofs >= IP_OFS_SRC && ofs < IP_OFS_SRC + 8
            && v->mode == CRYPT_MODE_L3) {
            return FLIP_BAD_TAG;
        }
        return FLIP_OPENS;      /* TOS, id, TTL, checksum, options... */
    }
}

static void
test_bit_flips(void **state)
{
    int n_opens_ttl = 0;

    (void) state;
    for (size_t i = 0; i < N_MODE_VECTORS; i++) {
        const struct mode_vector *v = &mode_vectors[i];
        int n_effects[FLIP_OPENS + 1] = { 0 };
        uint8_t expected[BUF_LEN], plain[BUF_LEN];
        struct crypt_aead aead;
        uint8_t frame[BUF_LEN];
        size_t plain_len;

        if (!crypt_cipher_is_available(v->cipher)) {
            continue;
        }
        init_aead(&aead, v->cipher, v->key, v->sender);
        assert_int_equal(receive(v->key, &aead, v->sealed, v->sealed_len,
                                 plain, &plain_len), CRYPT_OK);
        assert_int_equal(plain_len, v->plain_len);
        assert_memory_equal(plain, v->plain, v->plain_len);

        for (size_t bit = 0; bit < v->sealed_len * 8; bit++) {
            enum flip_effect effect = flip_effect(v, bit / 8, bit % 8);
            enum crypt_verdict verdict;

            memcpy(frame, v->sealed, v->sealed_len);
            frame[bit / 8] ^= 1u << (bit % 8);
            verdict = receive(v->key, &aead, frame, v->sealed_len,
                              plain, &plain_len);
            n_effects[effect]++;
            switch (effect) {
            case FLIP_BAD_TAG:
                if (verdict != CRYPT_DROP_BAD_TAG) {
                    print_message("%s/%s: bit %zu gives %s\n", v->name,
                                  crypt_cipher_name(v->cipher), bit,
                                  crypt_verdict_name(verdict));
                }
                assert_int_equal(verdict, CRYPT_DROP_BAD_TAG);
                break;
            case FLIP_BAD_HEADER:
                assert_int_equal(verdict, CRYPT_DROP_BAD_HEADER);
                break;
            case FLIP_FRAGMENT:
                assert_int_equal(verdict, CRYPT_DROP_FRAGMENT);
                break;
            case FLIP_REFUSED:
                assert_true(verdict == CRYPT_DROP_BAD_HEADER
                            || verdict == CRYPT_DROP_TRUNCATED
                            || verdict == CRYPT_DROP_BAD_TAG);
                break;
            case FLIP_OPENS:
                if (verdict != CRYPT_OK) {
                    print_message("%s/%s: bit %zu gives %s\n", v->name,
                                  crypt_cipher_name(v->cipher), bit,
                                  crypt_verdict_name(verdict));
                }
                assert_int_equal(verdict, CRYPT_OK);
                assert_int_equal(plain_len, v->plain_len);
                expected_open(v, frame, expected);
                assert_memory_equal(plain, expected, v->plain_len);
                if (bit / 8 == ETH_HLEN + IP_OFS_TTL) {
                    /* Only the TTL and the checksum differ. */
                    memcpy(expected + ETH_HLEN + IP_OFS_TTL,
                           v->plain + ETH_HLEN + IP_OFS_TTL, 1);
                    ip_fix_csum(expected + ETH_HLEN);
                    assert_memory_equal(expected, v->plain, v->plain_len);
                    n_opens_ttl++;
                }
                break;
            }
        }

        /* Every bit of header2 and everything after it is protected, and in
         * l3 the IP addresses too. */
        assert_int_equal(n_effects[FLIP_BAD_HEADER],
                         (is_ip_mode(v->mode) ? 5 : 4) * 8);
        assert_int_equal(n_effects[FLIP_BAD_TAG],
                         (v->sealed_len - header2_ofs(v->mode, v->plain) - 2
                          + (v->mode == CRYPT_MODE_L2 ? 12 : 0)
                          + (v->mode == CRYPT_MODE_L3 ? 8 : 0)) * 8);
        crypt_aead_wipe(&aead);
    }
    assert_true(n_opens_ttl > 0);
}

static void
test_truncation(void **state)
{
    (void) state;
    for (size_t i = 0; i < N_MODE_VECTORS; i++) {
        const struct mode_vector *v = &mode_vectors[i];
        size_t overhead = crypt_mode_overhead(v->mode);
        uint8_t plain[BUF_LEN], frame[BUF_LEN];
        struct crypt_frame_info info;
        struct crypt_aead aead;
        enum crypt_verdict verdict;
        size_t plain_len;
        uint8_t *copy;

        if (!crypt_cipher_is_available(v->cipher)) {
            continue;
        }
        init_aead(&aead, v->cipher, v->key, v->sender);

        /* Cut short anywhere: refused, and nothing past the end is read
         * (receive() opens at a guard page). */
        for (size_t len = 0; len < v->sealed_len; len++) {
            verdict = receive(v->key, &aead, v->sealed, len,
                              plain, &plain_len);
            if (v->mode == CRYPT_MODE_L2) {
                assert_int_equal(verdict, (len < 2 * CRYPT_MAC_LEN
                                           + overhead + 2
                                           ? CRYPT_DROP_TRUNCATED
                                           : CRYPT_DROP_BAD_TAG));
            } else {
                /* The IPv4 total length tells the parser. */
                assert_true(verdict == CRYPT_DROP_TRUNCATED
                            || verdict == CRYPT_DROP_BAD_HEADER);
                assert_int_not_equal(crypt_frame_parse(v->sealed, len,
                                                       &info), CRYPT_OK);
            }
        }

        if (is_ip_mode(v->mode)) {
            size_t hlen = ip_hlen(v->plain);

            /* Cut short with the total length to match. */
            for (size_t tot_len = hlen;
                 tot_len < v->sealed_len - ETH_HLEN; tot_len++) {
                memcpy(frame, v->sealed, ETH_HLEN + tot_len);
                put_be16(frame + ETH_HLEN + IP_OFS_TOT_LEN, tot_len);
                ip_fix_csum(frame + ETH_HLEN);
                verdict = receive(v->key, &aead, frame, ETH_HLEN + tot_len,
                                  plain, &plain_len);
                assert_int_equal(verdict, (tot_len < hlen + overhead
                                           ? CRYPT_DROP_TRUNCATED
                                           : CRYPT_DROP_BAD_TAG));
            }

            /* Bytes after the IPv4 packet are Ethernet padding: they are
             * ignored and left alone. */
            memcpy(frame, v->sealed, v->sealed_len);
            memset(frame + v->sealed_len, 0xee, 40);
            assert_int_equal(crypt_frame_parse(frame, v->sealed_len + 40,
                                               &info), CRYPT_OK);
            assert_int_equal(info.plain_len, v->plain_len);
            copy = guarded_copy(frame, v->sealed_len + 40);
            assert_int_equal(crypt_frame_open(&aead, copy,
                                              v->sealed_len + 40),
                             CRYPT_OK);
            assert_memory_equal(copy + info.plain_ofs, v->plain,
                                v->plain_len);
            for (size_t j = 0; j < 40; j++) {
                assert_int_equal(copy[v->sealed_len + j], 0xee);
            }
        } else {
            /* There is no length field in l2: bytes appended are
             * authenticated as part of the frame. */
            memcpy(frame, v->sealed, v->sealed_len);
            frame[v->sealed_len] = 0;
            assert_int_equal(receive(v->key, &aead, frame, v->sealed_len + 1,
                                     plain, &plain_len),
                             CRYPT_DROP_BAD_TAG);
        }
        crypt_aead_wipe(&aead);
    }
}

/* Returns the verdict of crypt_frame_check_ip() on the 'len' bytes at
 * 'frame', checking that it does not look past them. */
static enum crypt_verdict
check_ip(const uint8_t *frame, size_t len, size_t *plain_len)
{
    return crypt_frame_check_ip(guarded_copy(frame, len), len, plain_len);
}

static void
test_check_ip(void **state)
{
    static const uint16_t fragments[] = {
        0x2000, 0x6000, 0x0001, 0x4001, 0x1fff, 0x3fff, 0x5000, 0xa000,
    };
    static const uint16_t whole[] = { 0x0000, 0x4000 };
    const struct mode_vector *icmp = find_vector("l3_icmp",
                                                 CRYPT_CIPHER_AES256GCM);
    const struct mode_vector *opts = find_vector("l3_tcp_opts",
                                                 CRYPT_CIPHER_AES256GCM);
    const struct mode_vector *l2 = find_vector("l2_full",
                                               CRYPT_CIPHER_AES256GCM);
    const struct mode_vector *vlan = find_vector("l2_vlan",
                                                 CRYPT_CIPHER_AES256GCM);
    size_t ip_len = icmp->plain_len - ETH_HLEN;
    uint8_t frame[BUF_LEN];
    size_t plain_len;

    (void) state;
    plain_len = 0;
    assert_int_equal(check_ip(icmp->plain, icmp->plain_len, &plain_len),
                     CRYPT_OK);
    assert_int_equal(plain_len, icmp->plain_len);
    plain_len = 0;
    assert_int_equal(check_ip(opts->plain, opts->plain_len, &plain_len),
                     CRYPT_OK);
    assert_int_equal(plain_len, opts->plain_len);

    /* Not IPv4: IPv6, tagged ARP, untagged ARP, tagged IPv4. */
    assert_int_equal(l2->plain[12], 0x86);
    assert_int_equal(check_ip(l2->plain, l2->plain_len, &plain_len),
                     CRYPT_DROP_NOT_IP);
    assert_int_equal(check_ip(vlan->plain, vlan->plain_len, &plain_len),
                     CRYPT_DROP_NOT_IP);
    memcpy(frame, vlan->plain, 12);
    memcpy(frame + 12, vlan->plain + 16, vlan->plain_len - 16);
    assert_int_equal(get_be16(frame + 12), 0x0806);
    assert_int_equal(check_ip(frame, vlan->plain_len - 4, &plain_len),
                     CRYPT_DROP_NOT_IP);
    memcpy(frame, icmp->plain, 12);
    memcpy(frame + 12, "\x81\x00\x00\x64", 4);
    memcpy(frame + 16, icmp->plain + 12, icmp->plain_len - 12);
    assert_int_equal(check_ip(frame, icmp->plain_len + 4, &plain_len),
                     CRYPT_DROP_NOT_IP);

    /* Too short for an IPv4 header. */
    for (size_t len = 0; len < ETH_HLEN + 20; len++) {
        assert_int_equal(check_ip(icmp->plain, len, &plain_len),
                         CRYPT_DROP_NOT_IP);
    }

    /* Any version but 4. */
    for (int version = 0; version < 16; version++) {
        memcpy(frame, icmp->plain, icmp->plain_len);
        frame[ETH_HLEN] = (version << 4) | 5;
        ip_fix_csum(frame + ETH_HLEN);
        assert_int_equal(check_ip(frame, icmp->plain_len, &plain_len),
                         version == 4 ? CRYPT_OK : CRYPT_DROP_NOT_IP);
    }

    /* IHL below 5. */
    for (int ihl = 0; ihl < 5; ihl++) {
        memcpy(frame, icmp->plain, icmp->plain_len);
        frame[ETH_HLEN] = 0x40 | ihl;
        assert_int_equal(check_ip(frame, icmp->plain_len, &plain_len),
                         CRYPT_DROP_NOT_IP);
    }

    /* A total length beyond the frame, or shorter than the header. */
    for (size_t tot_len = 0; tot_len <= 0xffff; tot_len++) {
        enum crypt_verdict expected = (tot_len < 20 || tot_len > ip_len
                                       ? CRYPT_DROP_NOT_IP : CRYPT_OK);

        memcpy(frame, icmp->plain, icmp->plain_len);
        put_be16(frame + ETH_HLEN + IP_OFS_TOT_LEN, tot_len);
        ip_fix_csum(frame + ETH_HLEN);
        plain_len = 0;
        assert_int_equal(check_ip(frame, icmp->plain_len, &plain_len),
                         expected);
        if (expected == CRYPT_OK) {
            /* The rest of the frame is padding. */
            assert_int_equal(plain_len, ETH_HLEN + tot_len);
        }
        if (tot_len == ip_len + 300) {
            tot_len = 0xfff0;
        }
    }
    memcpy(frame, opts->plain, opts->plain_len);
    put_be16(frame + ETH_HLEN + IP_OFS_TOT_LEN, 23);
    assert_int_equal(check_ip(frame, opts->plain_len, &plain_len),
                     CRYPT_DROP_NOT_IP);

    /* Fragments, first or not, and whole packets. */
    for (size_t i = 0; i < sizeof fragments / sizeof fragments[0]; i++) {
        memcpy(frame, icmp->plain, icmp->plain_len);
        put_be16(frame + ETH_HLEN + IP_OFS_FRAG, fragments[i]);
        ip_fix_csum(frame + ETH_HLEN);
        assert_int_equal(check_ip(frame, icmp->plain_len, &plain_len),
                         CRYPT_DROP_FRAGMENT);
    }
    for (size_t i = 0; i < sizeof whole / sizeof whole[0]; i++) {
        memcpy(frame, icmp->plain, icmp->plain_len);
        put_be16(frame + ETH_HLEN + IP_OFS_FRAG, whole[i]);
        ip_fix_csum(frame + ETH_HLEN);
        plain_len = 0;
        assert_int_equal(check_ip(frame, icmp->plain_len, &plain_len),
                         CRYPT_OK);
        assert_int_equal(plain_len, icmp->plain_len);
    }
}

/* Ethernet padding after the IPv4 packet is not sealed: with the length
 * that crypt_frame_check_ip() returns, a padded frame seals to the same
 * bytes as the unpadded one. */
static void
test_padding(void **state)
{
    int n = 0;

    (void) state;
    for (size_t i = 0; i < N_MODE_VECTORS; i++) {
        const struct mode_vector *v = &mode_vectors[i];
        uint8_t padded[BUF_LEN];
        struct crypt_aead aead;
        struct frame_buf buf;
        size_t plain_len, len;

        if (!is_ip_mode(v->mode) || !crypt_cipher_is_available(v->cipher)) {
            continue;
        }
        for (size_t pad = 1; pad <= 46; pad += 15) {
            memcpy(padded, v->plain, v->plain_len);
            memset(padded + v->plain_len, pad == 16 ? 0 : 0x5a, pad);
            plain_len = 0;
            assert_int_equal(check_ip(padded, v->plain_len + pad,
                                      &plain_len), CRYPT_OK);
            assert_int_equal(plain_len, v->plain_len);

            init_aead(&aead, v->cipher, v->key, v->sender);
            len = seal_into(&buf, &aead, v->mode, v->key_version, v->pn,
                            v->sender, padded, plain_len);
            assert_int_equal(len, v->sealed_len);
            assert_memory_equal(frame_of(&buf), v->sealed, len);
            crypt_aead_wipe(&aead);
            n++;
        }
    }
    assert_true(n > 0);
}

static void
test_parse_refusals(void **state)
{
    static const uint16_t fragments[] = {
        0x2000, 0x6000, 0x0001, 0x4001, 0x1fff, 0x3fff,
    };
    static const uint8_t bad_formats[] = { 0, 1, 3, 0x82, 0xff };
    static const uint8_t bad_ciphers[] = { 0, 3, 0x81, 0xff };
    uint8_t frame[BUF_LEN];
    struct crypt_frame_info info;
    struct crypt_aead aead;
    int n = 0;

    (void) state;
    init_aead(&aead, CRYPT_CIPHER_CHACHA20POLY1305, test_key, sender_a);
    for (size_t i = 0; i < N_MODE_VECTORS; i++) {
        const struct mode_vector *v = &mode_vectors[i];
        size_t hdr2 = header2_ofs(v->mode, v->plain);
        size_t len = v->sealed_len;
        uint8_t *ip = frame + ETH_HLEN;

        if (!is_ip_mode(v->mode)) {
            continue;
        }
        n++;

        /* The plain frames are not encrypted frames.  A plain UDP packet
         * looks like nat mode until its header2. */
        assert_int_not_equal(crypt_frame_parse(v->plain, v->plain_len,
                                               &info), CRYPT_OK);
        if (v->plain[ETH_HLEN + IP_OFS_PROTO] != 17) {
            assert_int_equal(crypt_frame_parse(v->plain, v->plain_len,
                                               &info),
                             CRYPT_DROP_BAD_HEADER);
        }

        /* Any IP protocol but CRYPT_IP_PROTO and UDP. */
        for (int proto = 0; proto < 256; proto++) {
            if (proto == CRYPT_IP_PROTO || proto == 17) {
                continue;
            }
            memcpy(frame, v->sealed, len);
            ip[IP_OFS_PROTO] = proto;
            ip_fix_csum(ip);
            assert_int_equal(crypt_frame_parse(frame, len, &info),
                             CRYPT_DROP_BAD_HEADER);
            assert_int_equal(crypt_frame_open(&aead, guarded_copy(frame,
                                                                  len),
                                              len),
                             CRYPT_DROP_BAD_HEADER);
        }

        /* Outer fragments. */
        for (size_t j = 0; j < sizeof fragments / sizeof fragments[0]; j++) {
            memcpy(frame, v->sealed, len);
            put_be16(ip + IP_OFS_FRAG, fragments[j]);
            ip_fix_csum(ip);
            assert_int_equal(crypt_frame_parse(frame, len, &info),
                             CRYPT_DROP_FRAGMENT);
            assert_int_equal(crypt_frame_open(&aead, guarded_copy(frame,
                                                                  len),
                                              len),
                             CRYPT_DROP_FRAGMENT);
        }

        /* Unknown header2 format or cipher. */
        for (size_t j = 0; j < sizeof bad_formats; j++) {
            memcpy(frame, v->sealed, len);
            frame[hdr2] = bad_formats[j];
            assert_int_equal(crypt_frame_parse(frame, len, &info),
                             CRYPT_DROP_BAD_HEADER);
        }
        for (size_t j = 0; j < sizeof bad_ciphers; j++) {
            memcpy(frame, v->sealed, len);
            frame[hdr2 + 1] = bad_ciphers[j];
            assert_int_equal(crypt_frame_parse(frame, len, &info),
                             CRYPT_DROP_BAD_HEADER);
        }

        /* Not IPv4 at all, or a malformed IPv4 header. */
        memcpy(frame, v->sealed, len);
        ip[0] = 0x65;
        assert_int_equal(crypt_frame_parse(frame, len, &info),
                         CRYPT_DROP_BAD_HEADER);
        memcpy(frame, v->sealed, len);
        ip[0] = 0x44;
        assert_int_equal(crypt_frame_parse(frame, len, &info),
                         CRYPT_DROP_BAD_HEADER);
        memcpy(frame, v->sealed, 12);
        memcpy(frame + 12, "\x81\x00\x00\x64", 4);
        memcpy(frame + 16, v->sealed + 12, len - 12);
        assert_int_equal(crypt_frame_parse(frame, len + 4, &info),
                         CRYPT_DROP_BAD_HEADER);
    }
    assert_true(n >= 8);
    crypt_aead_wipe(&aead);
}

/* A plain frame of 'len' bytes for 'mode' with an all-zero payload: for the
 * IP modes an IPv4 packet of protocol 47 (GRE), so that nat mode has no
 * ports to mirror. */
static void
make_zero_frame(enum crypt_mode mode, uint8_t *frame, size_t len)
{
    static const uint8_t macs[12] = {
        0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01,
    };
    uint8_t *ip = frame + ETH_HLEN;

    memset(frame, 0, len);
    memcpy(frame, macs, sizeof macs);
    put_be16(frame + 12, 0x0800);
    if (is_ip_mode(mode)) {
        ip[0] = 0x45;
        put_be16(ip + IP_OFS_TOT_LEN, len - ETH_HLEN);
        put_be16(ip + IP_OFS_ID, 0x1234);
        put_be16(ip + IP_OFS_FRAG, IP_DF);
        ip[IP_OFS_TTL] = 64;
        ip[IP_OFS_PROTO] = 47;
        memcpy(ip + IP_OFS_SRC, "\x0a\x01\x00\x05\x0a\x02\x00\x09", 8);
        ip_fix_csum(ip);
    }
}

/* Two switches that seal the same frame under the same key with the same
 * PN, but with different sender ids, must use unrelated keystreams, and a
 * frame opens only with its own sender's subkey. */
static void
test_senders(void **state)
{
    (void) state;
    for (size_t c = 0; c < N_CIPHERS; c++) {
        enum crypt_cipher cipher = all_ciphers[c];
        const uint64_t pn = crypt_pn_floor(CRYPT_PN_EPOCH_USEC + 1000);
        struct crypt_aead aead_a, aead_b;

        if (!crypt_cipher_is_available(cipher)) {
            continue;
        }
        init_aead(&aead_a, cipher, test_key, sender_a);
        init_aead(&aead_b, cipher, test_key, sender_b);
        for (size_t m = 0; m < N_SENDER_MODES; m++) {
            enum crypt_mode mode = sender_modes[m];
            struct frame_buf buf_a, buf_b, buf_x;
            uint8_t plain[1514];
            struct crypt_frame_info info;
            size_t text_ofs, text_len, len;
            uint8_t *frame_a = frame_of(&buf_a);
            uint8_t *frame_b = frame_of(&buf_b);
            uint8_t *frame_x = frame_of(&buf_x);

            make_zero_frame(mode, plain, sizeof plain);
            if (is_ip_mode(mode)) {
                size_t plain_len = 0;

                assert_int_equal(crypt_frame_check_ip(plain, sizeof plain,
                                                      &plain_len), CRYPT_OK);
                assert_int_equal(plain_len, sizeof plain);
            }
            len = seal_into(&buf_a, &aead_a, mode, 1, pn, sender_a,
                            plain, sizeof plain);
            seal_into(&buf_b, &aead_b, mode, 1, pn, sender_b,
                      plain, sizeof plain);
            text_ofs = header2_ofs(mode, plain) + CRYPT_HDR2_LEN;
            text_len = len - text_ofs - CRYPT_TAG_LEN;

            /* The headers differ only in the sender id. */
            assert_int_equal(crypt_frame_parse(frame_a, len, &info),
                             CRYPT_OK);
            assert_memory_equal(info.sender, sender_a, CRYPT_MAC_LEN);
            assert_int_equal(crypt_frame_parse(frame_b, len, &info),
                             CRYPT_OK);
            assert_memory_equal(info.sender, sender_b, CRYPT_MAC_LEN);
            assert_memory_equal(frame_a, frame_b,
                                text_ofs - CRYPT_HDR2_LEN + HDR2_OFS_SENDER);

            /* The plaintext is mostly zero, so the ciphertext is mostly
             * keystream.  Independent streams agree in about 1 byte in
             * 256. */
            assert_true(count_equal(frame_a + text_ofs, frame_b + text_ofs,
                                    text_len) < text_len / 32);
            assert_memory_not_equal(frame_a + len - CRYPT_TAG_LEN,
                                    frame_b + len - CRYPT_TAG_LEN,
                                    CRYPT_TAG_LEN);

            /* A's frame does not open with B's subkey, not even when the
             * header is rewritten to name B; the same the other way. */
            memcpy(frame_x, frame_a, len);
            assert_int_equal(crypt_frame_open(&aead_b, frame_x, len),
                             CRYPT_DROP_BAD_TAG);
            memcpy(frame_x, frame_a, len);
            memcpy(frame_x + text_ofs - CRYPT_HDR2_LEN + HDR2_OFS_SENDER,
                   sender_b, CRYPT_MAC_LEN);
            assert_int_equal(crypt_frame_open(&aead_b, frame_x, len),
                             CRYPT_DROP_BAD_TAG);
            memcpy(frame_x, frame_b, len);
            assert_int_equal(crypt_frame_open(&aead_a, frame_x, len),
                             CRYPT_DROP_BAD_TAG);

            /* Each opens with its own. */
            assert_int_equal(crypt_frame_open(&aead_a, frame_a, len),
                             CRYPT_OK);
            assert_memory_equal(frame_a + crypt_mode_growth(mode), plain,
                                sizeof plain);
            assert_int_equal(crypt_frame_open(&aead_b, frame_b, len),
                             CRYPT_OK);
            assert_memory_equal(frame_b + crypt_mode_growth(mode), plain,
                                sizeof plain);

            /* Successive PNs of one sender use different keystreams too. */
            seal_into(&buf_a, &aead_a, mode, 1, pn, sender_a,
                      plain, sizeof plain);
            seal_into(&buf_b, &aead_a, mode, 1, pn + 1, sender_a,
                      plain, sizeof plain);
            assert_true(count_equal(frame_a + text_ofs, frame_b + text_ofs,
                                    text_len) < text_len / 32);
        }
        crypt_aead_wipe(&aead_a);
        crypt_aead_wipe(&aead_b);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_kat_aes256gcm),
        cmocka_unit_test(test_kat_chacha20poly1305),
        cmocka_unit_test(test_nat_ports),
        cmocka_unit_test(test_nat_rewrite),
        cmocka_unit_test(test_bit_flips),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_check_ip),
        cmocka_unit_test(test_padding),
        cmocka_unit_test(test_parse_refusals),
        cmocka_unit_test(test_senders),
    };

    return cmocka_run_group_tests_name("crypt-modes", tests, setup,
                                       teardown);
}
