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

/* pk-cbench: a cbench-style load generator for OpenFlow 1.3 controllers,
 * made for pairkeyd.
 *
 * N fake switches connect to the controller.  Each answers HELLO,
 * FEATURES_REQUEST (with its own datapath id), ECHO_REQUEST and
 * BARRIER_REQUEST, and counts what else it is sent (FLOW_MODs,
 * NXT_CRYPT_SA_MODs, PACKET_OUTs).  Then they send table-miss packet-ins
 * (reason no_match, table 1) from K clients: client g sits on switch g % N,
 * port 2 + g / N (port 1 is the uplink), with MAC 02:00:(g + 1 as 32 bits).
 * Each request's answer is the PACKET_OUT that carries its frame back (for
 * pairkeyd in hold mode: the release of the held frame); the frame carries
 * a request number, which matches the two.
 *
 * Pair number k is the unordered pair (a, b) with a = k % K and
 * b = (a + d) % K, where d is the (k / K)th distance in 1...(K - 1) / 2 that
 * is not a multiple of N, so that the two clients are always on different
 * switches (pairkeyd keys only such pairs).  "new" sends pairs
 * first...first + count - 1 once each; "repeat" cycles over pairs
 * first...first + pairs - 1.
 *
 * With --warmup, repeat mode first sends each pair once on the same
 * connections (pairkeyd gives a bridge that reconnects a new key version on
 * its first request for each pair; the warmup pays for that).
 *
 * Output: one line of "key=value" pairs per phase, for scripts. */

#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "command-line.h"
#include "flow.h"
#include "openvswitch/ofp-msgs.h"
#include "openvswitch/ofp-packet.h"
#include "openvswitch/ofp-protocol.h"
#include "openvswitch/ofp-switch.h"
#include "openvswitch/ofpbuf.h"
#include "openvswitch/poll-loop.h"
#include "openvswitch/vconn.h"
#include "openvswitch/vlog.h"
#include "openflow/openflow-1.1.h"
#include "openvswitch/ofp-util.h"
#include "packets.h"
#include "socket-util.h"
#include "timeval.h"
#include "util.h"

VLOG_DEFINE_THIS_MODULE(pk_cbench);

#define FRAME_LEN 64            /* Bytes of each request's frame. */
#define FRAME_ETH_TYPE 0x88b5   /* IEEE 802 local experimental. */
#define FRAME_MAGIC 0x706b6362  /* "pkcb", after the Ethernet header. */
#define UPLINK_PORT 1
#define FIRST_CLIENT_PORT 2

/* The frame's payload, after the Ethernet header. */
struct frame_tag {
    ovs_be32 magic;
    ovs_be32 slot;              /* Index in 'slots'. */
    ovs_be32 gen;               /* Which use of that slot. */
};

/* An outstanding request. */
struct slot {
    bool busy;
    uint32_t gen;
    long long int sent;         /* Nanoseconds, monotonic. */
};

struct fake_switch {
    struct vconn *vconn;
    uint64_t dpid;
    bool ready;                 /* Handshake done (see --wait-sa). */
    bool featured;              /* Sent a FEATURES_REPLY. */
    struct ofpbuf *pending;     /* Not yet accepted by vconn_send(). */
    struct ofpbuf **templates;  /* Packet-in per client port. */
    size_t n_templates;

    /* What the controller sent. */
    uint64_t n_flow_mods;
    uint64_t n_sa_mods;
    uint64_t n_packet_outs;
    uint64_t n_other;
};

/* Options. */
static char *remote;
static int n_switches = 4;
static int n_clients = 64;
static uint64_t dpid_base = 0x706b000000000001ULL;
static bool repeat_mode;
static uint64_t first_pair;
static uint64_t n_pairs;        /* Repeat mode: pairs to cycle over. */
static uint64_t max_count = 100000;
static double max_seconds = 10.0;
static int window = 64;
static bool wait_sa;
static bool warmup;
static double drain_seconds = 2.0;
static double timeout_seconds = 1.0;

static struct fake_switch *switches;
static struct slot *slots;
static uint32_t *free_slots;
static size_t n_free_slots;

/* Results. */
static long long int *latencies;
static size_t n_latencies, allocated_latencies;
static uint64_t n_sent, n_lost, n_unmatched;

static void parse_options(int argc, char *argv[]);
OVS_NO_RETURN static void usage(void);

static long long int
now_nsec(void)
{
    struct timespec ts;

    xclock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static struct eth_addr
client_mac(uint64_t g)
{
    uint32_t x = g + 1;

    return (struct eth_addr) { .ea = { 0x02, 0x00, x >> 24, x >> 16, x >> 8,
                                       x } };
}

static int
client_switch(uint64_t g)
{
    return g % n_switches;
}

static size_t
client_port_index(uint64_t g)
{
    return g / n_switches;
}

/* Pair number 'k' (see the comment at the top). */
static void
pair_of(uint64_t k, uint64_t *a, uint64_t *b)
{
    uint64_t r = k / n_clients;
    uint64_t d = r + 1 + r / (n_switches - 1);

    *a = k % n_clients;
    *b = (*a + d) % n_clients;
}

static uint64_t
max_pairs(void)
{
    uint64_t max_d = (n_clients - 1) / 2;
    uint64_t n_d = max_d - max_d / n_switches;

    return n_d * n_clients;
}

static void
switch_send(struct fake_switch *sw, struct ofpbuf *msg)
{
    if (sw->pending) {
        /* Only handshake replies come here while one is pending; they are
         * rare enough to wait for. */
        while (sw->pending) {
            int error = vconn_send_block(sw->vconn, sw->pending);

            if (error) {
                ovs_fatal(error, "%s: send", remote);
            }
            sw->pending = NULL;
        }
    }
    int error = vconn_send(sw->vconn, msg);
    if (error == EAGAIN) {
        sw->pending = msg;
    } else if (error) {
        ovs_fatal(error, "%s: send", remote);
    }
}

static void
make_templates(struct fake_switch *sw, int index)
{
    size_t n_ports = (n_clients - index + n_switches - 1) / n_switches;

    sw->templates = xcalloc(n_ports, sizeof *sw->templates);
    sw->n_templates = n_ports;
    for (size_t p = 0; p < n_ports; p++) {
        struct ofputil_packet_in_private pin;
        uint8_t frame[FRAME_LEN];

        memset(frame, 0, sizeof frame);
        memset(&pin, 0, sizeof pin);
        pin.base.packet = frame;
        pin.base.packet_len = sizeof frame;
        match_init_catchall(&pin.base.flow_metadata);
        match_set_in_port(&pin.base.flow_metadata,
                          u16_to_ofp(FIRST_CLIENT_PORT + p));
        pin.base.reason = OFPR_NO_MATCH;
        pin.base.table_id = 1;
        pin.base.cookie = OVS_BE64_MAX;
        sw->templates[p] = ofputil_encode_packet_in_private(
            &pin, OFPUTIL_P_OF13_OXM, OFPUTIL_PACKET_IN_STD);
    }
}

/* Sends a packet-in for pair number 'k'. */
static bool
send_request(uint64_t k, long long int now)
{
    uint64_t a, b;
    uint32_t slot_idx;
    struct slot *slot;

    pair_of(k, &a, &b);

    struct fake_switch *sw = &switches[client_switch(a)];
    if (sw->pending) {
        return false;
    }

    slot_idx = free_slots[--n_free_slots];
    slot = &slots[slot_idx];
    slot->busy = true;
    slot->gen++;
    slot->sent = now;

    struct ofpbuf *msg = ofpbuf_clone(sw->templates[client_port_index(a)]);
    struct ofp_header *oh = msg->data;
    struct eth_header *eh = ofpbuf_at_assert(msg, msg->size - FRAME_LEN,
                                             FRAME_LEN);
    struct frame_tag *tag = (struct frame_tag *) (eh + 1);

    oh->xid = htonl(n_sent);
    eh->eth_dst = client_mac(b);
    eh->eth_src = client_mac(a);
    eh->eth_type = htons(FRAME_ETH_TYPE);
    tag->magic = htonl(FRAME_MAGIC);
    tag->slot = htonl(slot_idx);
    tag->gen = htonl(slot->gen);

    switch_send(sw, msg);
    n_sent++;
    return true;
}

static void
record_latency(long long int nsec)
{
    if (n_latencies >= allocated_latencies) {
        latencies = x2nrealloc(latencies, &allocated_latencies,
                               sizeof *latencies);
    }
    latencies[n_latencies++] = nsec;
}

/* A PACKET_OUT: finds the request whose frame it carries. */
static void
process_packet_out(const struct ofp_header *oh)
{
    size_t len = ntohs(oh->length);
    const struct ofp11_packet_out *opo;
    const struct frame_tag *tag;
    size_t data_ofs;

    if (len < sizeof *oh + sizeof *opo) {
        n_unmatched++;
        return;
    }
    opo = (const struct ofp11_packet_out *) (oh + 1);
    data_ofs = sizeof *oh + sizeof *opo + ntohs(opo->actions_len);
    if (len < data_ofs + ETH_HEADER_LEN + sizeof *tag) {
        n_unmatched++;
        return;
    }
    tag = (const struct frame_tag *) ((const uint8_t *) oh + data_ofs
                                      + ETH_HEADER_LEN);

    uint32_t slot_idx = ntohl(tag->slot);
    if (ntohl(tag->magic) != FRAME_MAGIC || slot_idx >= window
        || !slots[slot_idx].busy || slots[slot_idx].gen != ntohl(tag->gen)) {
        n_unmatched++;
        return;
    }
    record_latency(now_nsec() - slots[slot_idx].sent);
    slots[slot_idx].busy = false;
    free_slots[n_free_slots++] = slot_idx;
}

static void
process_msg(struct fake_switch *sw, const struct ofpbuf *msg)
{
    const struct ofp_header *oh = msg->data;
    enum ofptype type;

    if (ofptype_decode(&type, oh)) {
        sw->n_other++;
        return;
    }
    if (type == OFPTYPE_PACKET_OUT) {
        sw->n_packet_outs++;
        process_packet_out(oh);
    } else if (type == OFPTYPE_FLOW_MOD) {
        sw->n_flow_mods++;
    } else if (type == OFPTYPE_CRYPT_SA_MOD) {
        sw->n_sa_mods++;
        sw->ready = sw->featured;
    } else if (type == OFPTYPE_ECHO_REQUEST) {
        switch_send(sw, ofputil_encode_echo_reply(oh));
    } else if (type == OFPTYPE_BARRIER_REQUEST) {
        switch_send(sw, ofpraw_alloc_reply(OFPRAW_OFPT11_BARRIER_REPLY, oh,
                                           0));
    } else if (type == OFPTYPE_FEATURES_REQUEST) {
        struct ofputil_switch_features features = {
            .datapath_id = sw->dpid,
            .n_buffers = 0,
            .n_tables = 254,
            .capabilities = OFPUTIL_C_FLOW_STATS | OFPUTIL_C_TABLE_STATS
                            | OFPUTIL_C_PORT_STATS,
        };

        switch_send(sw, ofputil_encode_switch_features(
                        &features, OFPUTIL_P_OF13_OXM, oh->xid));
        sw->featured = true;
        sw->ready = !wait_sa;
    } else {
        sw->n_other++;
    }
}

static void
run_switches(void)
{
    for (int i = 0; i < n_switches; i++) {
        struct fake_switch *sw = &switches[i];
        int error;

        vconn_run(sw->vconn);
        if (sw->pending) {
            error = vconn_send(sw->vconn, sw->pending);
            if (!error) {
                sw->pending = NULL;
            } else if (error != EAGAIN) {
                ovs_fatal(error, "%s: send", remote);
            }
        }
        for (int n = 0; n < 200; n++) {
            struct ofpbuf *msg;

            error = vconn_recv(sw->vconn, &msg);
            if (error == EAGAIN) {
                break;
            } else if (error) {
                ovs_fatal(0, "%s: connection closed by the controller (%s)",
                          remote, ovs_retval_to_string(error));
            }
            process_msg(sw, msg);
            ofpbuf_delete(msg);
        }
    }
}

static void
wait_switches(void)
{
    for (int i = 0; i < n_switches; i++) {
        vconn_run_wait(switches[i].vconn);
        vconn_recv_wait(switches[i].vconn);
        if (switches[i].pending) {
            vconn_send_wait(switches[i].vconn);
        }
    }
}

static bool
all_ready(void)
{
    for (int i = 0; i < n_switches; i++) {
        if (!switches[i].ready) {
            return false;
        }
    }
    return true;
}

/* Frees the slots of requests older than the timeout. */
static void
expire(long long int now)
{
    long long int limit = now - (long long int) (timeout_seconds * 1e9);

    for (uint32_t i = 0; i < window; i++) {
        if (slots[i].busy && slots[i].sent < limit) {
            slots[i].busy = false;
            free_slots[n_free_slots++] = i;
            n_lost++;
        }
    }
}

static int
compare_ll(const void *a_, const void *b_)
{
    const long long int *a = a_, *b = b_;

    return *a < *b ? -1 : *a > *b;
}

static double
percentile_usec(double p)
{
    if (!n_latencies) {
        return 0;
    }
    size_t i = p * (n_latencies - 1) + 0.5;
    return latencies[i] / 1000.0;
}

/* Sends 'limit' requests, for pairs 'first'... (cycling over 'n' pairs if
 * 'cycle'), and prints what it measured as one line. */
static void
run_phase(const char *name, uint64_t first, uint64_t n, bool cycle,
          uint64_t limit)
{
    long long int start, end, last_expire;
    uint64_t next = 0;

    n_sent = n_lost = n_unmatched = n_latencies = 0;
    for (int i = 0; i < n_switches; i++) {
        struct fake_switch *sw = &switches[i];

        sw->n_flow_mods = sw->n_sa_mods = sw->n_packet_outs = 0;
        sw->n_other = 0;
    }

    start = now_nsec();
    end = start + (long long int) (max_seconds * 1e9);
    last_expire = start;
    for (;;) {
        long long int now = now_nsec();
        bool sending = next < limit && now < end;

        if (!sending) {
            if (n_free_slots == window
                || now > end + (long long int) (drain_seconds * 1e9)) {
                break;
            }
        }
        while (sending && n_free_slots) {
            uint64_t k = cycle ? first + next % n : first + next;

            if (!send_request(k, now)) {
                break;
            }
            next++;
            sending = next < limit;
        }
        run_switches();
        if (now - last_expire > 100000000LL) {
            expire(now);
            last_expire = now;
        }
        if (n_free_slots && next < limit) {
            bool can_send = false;

            for (int i = 0; i < n_switches; i++) {
                can_send = can_send || !switches[i].pending;
            }
            if (can_send) {
                poll_immediate_wake();
            }
        }
        wait_switches();
        poll_timer_wait(100);
        poll_block();
    }
    long long int elapsed = now_nsec() - start;

    /* Whatever is still outstanding is lost; free its slots. */
    for (uint32_t i = 0; i < window; i++) {
        if (slots[i].busy) {
            slots[i].busy = false;
            free_slots[n_free_slots++] = i;
            n_lost++;
        }
    }

    qsort(latencies, n_latencies, sizeof *latencies, compare_ll);

    uint64_t n_flow_mods = 0, n_sa_mods = 0, n_packet_outs = 0, n_other = 0;
    for (int i = 0; i < n_switches; i++) {
        n_flow_mods += switches[i].n_flow_mods;
        n_sa_mods += switches[i].n_sa_mods;
        n_packet_outs += switches[i].n_packet_outs;
        n_other += switches[i].n_other;
    }

    printf("phase=%s switches=%d clients=%d window=%d first_pair=%"PRIu64
           " sent=%"PRIu64" answered=%"PRIuSIZE" lost=%"PRIu64
           " unmatched=%"PRIu64" seconds=%.3f rate=%.0f"
           " p50_us=%.1f p90_us=%.1f p99_us=%.1f max_us=%.1f"
           " flow_mods=%"PRIu64" sa_mods=%"PRIu64" packet_outs=%"PRIu64
           " other=%"PRIu64"\n",
           name, n_switches, n_clients, window, first, n_sent, n_latencies,
           n_lost, n_unmatched, elapsed / 1e9, n_latencies / (elapsed / 1e9),
           percentile_usec(.5), percentile_usec(.9), percentile_usec(.99),
           n_latencies ? latencies[n_latencies - 1] / 1000.0 : 0.0,
           n_flow_mods, n_sa_mods, n_packet_outs, n_other);
    fflush(stdout);
}

int
main(int argc, char *argv[])
{
    long long int deadline;
    uint64_t limit;

    set_program_name(argv[0]);
    vlog_set_levels(NULL, VLF_ANY_DESTINATION, VLL_WARN);
    parse_options(argc, argv);

    if (repeat_mode) {
        if (!n_pairs) {
            ovs_fatal(0, "repeat mode needs --pairs");
        }
        limit = max_count;
    } else {
        limit = MIN(max_count, max_pairs() - MIN(first_pair, max_pairs()));
    }

    slots = xcalloc(window, sizeof *slots);
    free_slots = xmalloc(window * sizeof *free_slots);
    for (uint32_t i = 0; i < window; i++) {
        free_slots[n_free_slots++] = window - 1 - i;
    }

    switches = xcalloc(n_switches, sizeof *switches);
    for (int i = 0; i < n_switches; i++) {
        struct fake_switch *sw = &switches[i];
        int error;

        sw->dpid = dpid_base + i;
        make_templates(sw, i);
        error = vconn_open_block(remote, 1u << OFP13_VERSION, DSCP_DEFAULT,
                                 10000, &sw->vconn);
        if (error) {
            ovs_fatal(error, "%s: cannot connect", remote);
        }
    }

    /* Handshake: until every switch has its features reply sent (and, with
     * --wait-sa, its first SA, which pairkeyd sends once the bridge's
     * marks are known). */
    deadline = time_msec() + 10000;
    while (!all_ready()) {
        if (time_msec() > deadline) {
            ovs_fatal(0, "%s: handshake timed out", remote);
        }
        run_switches();
        wait_switches();
        poll_timer_wait_until(deadline);
        poll_block();
    }
    /* Let the controller finish programming. */
    deadline = time_msec() + 200;
    while (time_msec() < deadline) {
        run_switches();
        wait_switches();
        poll_timer_wait_until(deadline);
        poll_block();
    }

    if (warmup) {
        run_phase("warmup", first_pair, n_pairs, false, n_pairs);
    }
    run_phase(repeat_mode ? "repeat" : "new", first_pair, n_pairs,
              repeat_mode, limit);

    for (int i = 0; i < n_switches; i++) {
        for (size_t p = 0; p < switches[i].n_templates; p++) {
            ofpbuf_delete(switches[i].templates[p]);
        }
        free(switches[i].templates);
        ofpbuf_delete(switches[i].pending);
        vconn_close(switches[i].vconn);
    }
    free(switches);
    free(slots);
    free(free_slots);
    free(latencies);
    return 0;
}

static double
parse_double(const char *name, const char *s, double min)
{
    char *end;
    double x = strtod(s, &end);

    if (*end || !(x >= min)) {
        ovs_fatal(0, "--%s=%s: must be a number >= %g", name, s, min);
    }
    return x;
}

static uint64_t
parse_u64(const char *name, const char *s, uint64_t min)
{
    unsigned long long int x;

    if (!str_to_ullong(s, 0, &x) || x < min) {
        ovs_fatal(0, "--%s=%s: must be an integer >= %"PRIu64, name, s, min);
    }
    return x;
}

static void
parse_options(int argc, char *argv[])
{
    static const struct option long_options[] = {
        {"switches", required_argument, NULL, 's'},
        {"clients", required_argument, NULL, 'c'},
        {"dpid-base", required_argument, NULL, 'd'},
        {"mode", required_argument, NULL, 'm'},
        {"first-pair", required_argument, NULL, 'f'},
        {"pairs", required_argument, NULL, 'p'},
        {"count", required_argument, NULL, 'n'},
        {"seconds", required_argument, NULL, 't'},
        {"window", required_argument, NULL, 'w'},
        {"wait-sa", no_argument, NULL, 'a'},
        {"warmup", no_argument, NULL, 'W'},
        {"timeout", required_argument, NULL, 'T'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    char *short_options = ovs_cmdl_long_options_to_short_options(long_options);

    for (;;) {
        int c = getopt_long(argc, argv, short_options, long_options, NULL);
        if (c == -1) {
            break;
        }

        switch (c) {
        case 's':
            n_switches = parse_u64("switches", optarg, 2);
            break;
        case 'c':
            n_clients = parse_u64("clients", optarg, 3);
            break;
        case 'd':
            dpid_base = parse_u64("dpid-base", optarg, 1);
            break;
        case 'm':
            if (!strcmp(optarg, "new")) {
                repeat_mode = false;
            } else if (!strcmp(optarg, "repeat")) {
                repeat_mode = true;
            } else {
                ovs_fatal(0, "--mode=%s: must be new or repeat", optarg);
            }
            break;
        case 'f':
            first_pair = parse_u64("first-pair", optarg, 0);
            break;
        case 'p':
            n_pairs = parse_u64("pairs", optarg, 1);
            break;
        case 'n':
            max_count = parse_u64("count", optarg, 1);
            break;
        case 't':
            max_seconds = parse_double("seconds", optarg, 0.001);
            break;
        case 'w':
            window = parse_u64("window", optarg, 1);
            break;
        case 'a':
            wait_sa = true;
            break;
        case 'W':
            warmup = true;
            break;
        case 'T':
            timeout_seconds = parse_double("timeout", optarg, 0.001);
            break;
        case 'h':
            usage();
        case '?':
            exit(EXIT_FAILURE);
        default:
            OVS_NOT_REACHED();
        }
    }
    free(short_options);

    if (optind + 1 != argc) {
        ovs_fatal(0, "exactly one REMOTE argument is required; "
                  "use --help for usage");
    }
    remote = argv[optind];
    if (n_clients < n_switches) {
        ovs_fatal(0, "--clients must be at least --switches");
    }
}

static void
usage(void)
{
    printf("%s: a cbench-style OpenFlow 1.3 load generator for pairkeyd\n"
           "usage: %s [OPTIONS] REMOTE\n"
           "where REMOTE is unix:PATH or tcp:IP:PORT.\n"
           "\nOptions:\n"
           "  --switches=N       fake switches (default 4)\n"
           "  --clients=K        clients, spread over the switches "
           "(default 64)\n"
           "  --dpid-base=DPID   datapath id of the first switch\n"
           "  --mode=new|repeat  each request a new pair, or cycle over "
           "--pairs\n"
           "  --first-pair=K     number of the first pair (default 0)\n"
           "  --pairs=N          repeat mode: pairs to cycle over\n"
           "  --count=N          stop after N requests (default 100000)\n"
           "  --seconds=S        stop sending after S seconds (default 10)\n"
           "  --window=W         requests outstanding at once (default 64)\n"
           "  --wait-sa          start only once every switch has an SA\n"
           "  --warmup           repeat mode: first send each pair once,\n"
           "                     on the same connections, measured apart\n"
           "  --timeout=S        count an answer lost after S seconds "
           "(default 1)\n",
           program_name, program_name);
    exit(EXIT_SUCCESS);
}
