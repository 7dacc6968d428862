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

#include <config.h>
#include "keyserver.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "crypt-frame.h"
#include "dp-packet.h"
#include "flow.h"
#include "hash.h"
#include "cascade.h"
#include "marks.h"
#include "peers.h"
#include "ofp-crypt.h"
#include "openvswitch/dynamic-string.h"
#include "openvswitch/hmap.h"
#include "openvswitch/list.h"
#include "openvswitch/match.h"
#include "openvswitch/ofp-actions.h"
#include "openvswitch/ofp-errors.h"
#include "openvswitch/ofp-flow.h"
#include "openvswitch/ofp-meter.h"
#include "openvswitch/ofp-monitor.h"
#include "openvswitch/ofp-msgs.h"
#include "openvswitch/ofp-packet.h"
#include "openvswitch/ofp-print.h"
#include "openvswitch/ofp-protocol.h"
#include "openvswitch/ofp-switch.h"
#include "openvswitch/ofpbuf.h"
#include "openvswitch/poll-loop.h"
#include "openvswitch/rconn.h"
#include "openvswitch/vconn.h"
#include "openvswitch/vlog.h"
#include "openvswitch/ofp-util.h"
#include "packets.h"
#include "random.h"
#include "request.h"
#include "socket-util.h"
#include "store.h"
#include "util.h"

VLOG_DEFINE_THIS_MODULE(keyserver);

/* Rate limit for refused requests and switch errors. */
static struct vlog_rate_limit rl = VLOG_RATE_LIMIT_INIT(5, 20);

/* Rate limit for frames of an outside host at the wrong gateway: one line a
 * minute (a forger sends many, and each reaches the key server until its
 * source drop is in place). */
static struct vlog_rate_limit conflict_rl = VLOG_RATE_LIMIT_INIT(1, 1);

#define TABLE_PORTS 0           /* Which port may send what. */
#define TABLE_SEND 1            /* From clients, by destination. */
#define TABLE_RECV 2            /* From the uplink, by source. */

/* The group key's SA id; pair keys use their pair id, which is never 0. */
#define GROUP_SA_ID 0

/* Cookies: base pipeline flows (BASE_COOKIE plus a number of this process in
 * the low 32 bits, so that base flows of an earlier process can be told
 * apart), and pair flows (cookie = the pair id, or LOCAL_COOKIE for clients
 * talking on one bridge). */
#define BASE_COOKIE UINT64_C(0x706b000000000000)
#define BASE_COOKIE_MASK UINT64_C(0xffffffff00000000)
#define LOCAL_COOKIE UINT64_C(0x706c000000000000)
#define DROP_COOKIE UINT64_C(0x706d000000000000)
#define LEARN_COOKIE UINT64_C(0x706e000000000000)
#define PRESENCE_COOKIE UINT64_C(0x706f000000000000)

/* NETKEY SA ids: this plus the inter port's number. */
#define NETKEY_SA_BASE INT64_C(0xffff0000)

/* Seconds a learned outside host's broadcasts bypass the key server. */
#define LEARNED_IDLE_TIMEOUT 300

/* Seconds without a frame from an outside host at its gateway's clear port
 * before the key server forgets where it is, by default: like a learning
 * switch's MAC aging time (802.1D's default is 300 s).  The host's
 * presence flow at that port, in table 0, expires when idle that long and
 * tells the key server (flow removed). */
#define OUTSIDE_IDLE_TIMEOUT 300

/* Matches broadcast and multicast destinations. */
static const struct eth_addr group_bit = ETH_ADDR_C(01, 00, 00, 00, 00, 00);

/* Seconds a refused destination is dropped before it may ask again. */
#define REFUSED_IDLE_TIMEOUT 10

/* A set of SA ids. */
struct sa_queue {
    int64_t *ids;
    size_t n, allocated;
};

/* Table 0 priorities above a port's pass flow (100): an outside host's
 * presence flow, and the drop of a source that may not cross a gateway
 * port. */
#define PRESENCE_PRIORITY 110
#define SOURCE_DROP_PRIORITY 150

/* A key version installed on a switch connection. */
struct sa_entry {
    struct hmap_node node;      /* In struct pk_switch's 'sas'. */
    int64_t sa_id;
    uint32_t version;
    long long int next_verify;  /* Earliest time to ask the switch again
                                 * whether it still holds 'version'. */
};

/* At most one NXCSM_VERIFY per key and switch in this many ms. */
#define VERIFY_MSEC 1000

/* A pair flow as last sent to a switch.  Frames that miss while the flow is
 * on its way arrive as repeated key requests; those are answered from here
 * (the flow again, then the held frame) without touching the store. */
struct pair_flow {
    struct hmap_node node;      /* In struct pk_switch's 'pair_flows'. */
    uint8_t table_id;
    struct eth_addr src;
    struct eth_addr dst;
    struct ofpbuf *flow_mod;    /* The encoded OFPFC_ADD. */
};

/* A flow of the base pipeline, to delete it when it is no longer wanted. */
struct base_flow {
    uint8_t table_id;
    int priority;
    struct match match;
};

struct pk_switch {
    struct ovs_list list_node;  /* In struct keyserver's 'switches'. */
    struct keyserver *ks;
    struct rconn *rconn;
    struct ovs_list pending;    /* Messages held until the store commits. */
    uint64_t conn_seq;          /* Serial number of this connection. */
    bool have_dpid;
    uint64_t dpid;
    char *name;                 /* Bridge name, or the dpid. */
    enum ofputil_protocol protocol;

    struct mark *marks;         /* From OVSDB, for 'dpid'. */
    struct eth_addr *macs;      /* Enrolled MAC of each client mark, or
                                 * eth_addr_zero. */
    size_t n_marks;
    struct hmap pair_flows;     /* Contains "struct pair_flow"s. */

    struct hmap sas;            /* Contains "struct sa_entry"s. */
    struct base_flow *base;     /* Base pipeline as last installed. */
    size_t n_base;
};

/* The latest version of key 'sa_id' that this process handed to a bridge
 * (by dpid), in any of its connections: a version must never reach a bridge
 * twice.  Versions only grow and only the current one is ever handed out,
 * so older versions need no record. */
struct held {
    struct hmap_node node;      /* In struct keyserver's 'held'. */
    uint64_t dpid;
    int64_t sa_id;
    uint32_t version;
    uint64_t conn_seq;
};

/* The latest version of key 'sa_id' issued by this process.  Versions issued
 * before it started may have been installed anywhere, so they are rotated
 * before use. */
struct issued {
    struct hmap_node node;
    int64_t sa_id;
    uint32_t version;
};

struct keyserver {
    struct store *store;
    struct marks *marks;
    struct peers *peers;        /* May be null. */
    struct cascade *cascade;    /* May be null. */
    enum miss_policy miss_policy;
    struct ovs_list switches;   /* Contains "struct pk_switch"es. */
    uint64_t next_conn_seq;
    uint64_t marks_seqno;
    uint64_t base_cookie;       /* BASE_COOKIE for this process. */
    bool reprogram;             /* Reprogram every switch at the next run. */
    struct hmap held;
    struct hmap issued;

    /* While true, changes to the store go into one transaction and messages
     * to switches wait in their 'pending' lists: a key reaches a switch
     * only once it is durable, and one fsync serves a whole batch of key
     * requests. */
    bool batching;

    /* Member of a cascade: frames whose pair key was asked of the authority,
     * to release once it is here. */
    struct ovs_list parked;     /* Contains "struct parked"s. */
    size_t n_parked;

    /* Keys being rolled over (see rollover_start()). */
    struct ovs_list rollovers;  /* Contains "struct rollover"s. */

    /* Packets per second each port may send to the key server. */
    unsigned int request_rate;

    /* Automatic rotation: every key older than this, 0 for none. */
    long long int rekey_msec;
    long long int next_rekey;

    /* Keys to rotate at the next run, outside the store batch of
     * keyserver_run() (a rollover is a transaction of its own): keys that
     * reached their packet limit, and keys that a holder lost. */
    struct sa_queue limited;
    struct sa_queue lost;

    /* Seconds of silence after which an outside host is forgotten (0:
     * never). */
    uint16_t outside_idle;

    /* Statistics. */
    uint64_t n_requests;
    uint64_t n_refused;
    uint64_t n_repeated;        /* Answered from 'pair_flows'. */
    uint64_t n_keys_issued;

    /* Version reports (see process_version_report()). */
    uint64_t n_reports;
    uint64_t n_reports_ignored; /* Not about a pair this switch serves. */
    uint64_t n_reports_repushed;        /* Holder we never gave it to. */
    uint64_t n_reports_verified;        /* Led to an NXCSM_VERIFY. */
    uint64_t n_reports_limited; /* Within VERIFY_MSEC of the last one. */
    uint64_t n_keys_lost;       /* Holders that answered the verify with a
                                 * mismatch. */
    uint64_t n_outside_conflicts;       /* Frames of an outside host at a
                                         * gateway other than its own. */
};

struct key {
    int64_t sa_id;
    uint32_t version;
    uint8_t bytes[STORE_KEY_LEN];
};

/* A frame that missed on a member's switch, waiting for the authority to
 * answer for its pair. */
struct parked {
    struct ovs_list list_node;  /* In struct keyserver's 'parked'. */
    char a[STORE_ID_MAX_LEN + 1];       /* The pair. */
    char b[STORE_ID_MAX_LEN + 1];
    uint64_t dpid;
    ofp_port_t in_port;
    uint8_t table_id;
    struct eth_addr src, dst;
    long long int expires;
    size_t len;
    uint8_t *packet;
};

/* Keys rolled over together in two phases: their new versions for
 * receiving only on every holder, then, once every holder confirmed with a
 * barrier reply, for sending.  No holder encrypts with a version another
 * holder cannot decrypt.  A holder that is not connected (its bridge may
 * still forward under the old version) is waited for until it comes back
 * and confirmed too, for ROLLOVER_ABSENT_MSEC at most; a connected one
 * that does not answer, ROLLOVER_MSEC. */
struct rollover {
    struct ovs_list list_node;  /* In struct keyserver's 'rollovers'. */
    struct key *keys;           /* New versions, wiped when done. */
    size_t n_keys;
    struct rollover_wait {
        struct pk_switch *sw;
        ovs_be32 xid;           /* Of its barrier request. */
    } *waits;
    size_t n_waits;
    uint64_t *absent;           /* Datapath ids of holders away. */
    size_t n_absent;
    long long int deadline;
};

#define ROLLOVER_MSEC 2000
#define ROLLOVER_ABSENT_MSEC (10 * 60 * 1000)

/* At most this many parked frames, each for at most this long. */
#define MAX_PARKED 256
#define PARKED_MSEC 2000

static void switch_destroy(struct pk_switch *);
static void rollover_barrier_reply(struct keyserver *, struct pk_switch *,
                                   ovs_be32 xid);
static void rollover_switch_back(struct keyserver *, struct pk_switch *);
static bool rollover_active(const struct keyserver *, int64_t sa_id);
static size_t n_rolling(const struct keyserver *);
static void rollover_forget_switch(struct keyserver *, struct pk_switch *);
static void rollover_run(struct keyserver *);
static void unpark(struct keyserver *, const char *a, const char *b,
                   bool refuse);
static void switch_program(struct keyserver *, struct pk_switch *);
static void watch_gateway_hosts(struct keyserver *, struct pk_switch *,
                                const struct mark *);
static bool rotate_key(struct keyserver *, const struct pk_switch *,
                       int64_t sa_id, const char *reason, struct key *);
static void key_wipe(struct key *);

struct keyserver *
keyserver_create(struct store *store, struct marks *marks,
                 enum miss_policy miss_policy)
{
    struct keyserver *ks = xzalloc(sizeof *ks);

    ks->store = store;
    ks->marks = marks;
    ks->miss_policy = miss_policy;
    ks->request_rate = KEYSERVER_REQUEST_RATE;
    ovs_list_init(&ks->switches);
    ks->next_conn_seq = 1;
    ks->marks_seqno = marks_seqno(marks);
    hmap_init(&ks->held);
    hmap_init(&ks->issued);
    ovs_list_init(&ks->parked);
    ovs_list_init(&ks->rollovers);
    ks->base_cookie = BASE_COOKIE | random_uint32();
    ks->outside_idle = OUTSIDE_IDLE_TIMEOUT;
    return ks;
}

static bool
is_member(const struct keyserver *ks)
{
    return ks->cascade && cascade_authority(ks->cascade);
}

void
keyserver_start(struct keyserver *ks)
{
    /* The group key gets a fresh version at every start (version 1 in a new
     * database): a version from before this process may be held by any
     * bridge.  (Should this fail, the first bridge with clients retries.)
     * A member takes the authority's. */
    struct key key;
    if (!is_member(ks)
        && rotate_key(ks, NULL, GROUP_SA_ID, "key server started", &key)) {
        key_wipe(&key);
    }
}

static void
parked_free(struct keyserver *ks, struct parked *p)
{
    ovs_list_remove(&p->list_node);
    ks->n_parked--;
    explicit_bzero(p->packet, p->len);
    free(p->packet);
    free(p);
}

void
keyserver_destroy(struct keyserver *ks)
{
    if (ks) {
        struct pk_switch *sw;
        struct held *h;
        struct issued *is;

        LIST_FOR_EACH_POP (sw, list_node, &ks->switches) {
            rollover_forget_switch(ks, sw);
            switch_destroy(sw);
        }
        HMAP_FOR_EACH_POP (h, node, &ks->held) {
            free(h);
        }
        hmap_destroy(&ks->held);
        HMAP_FOR_EACH_POP (is, node, &ks->issued) {
            free(is);
        }
        hmap_destroy(&ks->issued);

        struct parked *p;
        LIST_FOR_EACH_SAFE (p, list_node, &ks->parked) {
            parked_free(ks, p);
        }
        free(ks->limited.ids);
        free(ks->lost.ids);

        struct rollover *r;
        LIST_FOR_EACH_SAFE (r, list_node, &ks->rollovers) {
            ovs_list_remove(&r->list_node);
            for (size_t i = 0; i < r->n_keys; i++) {
                key_wipe(&r->keys[i]);
            }
            free(r->keys);
            free(r->waits);
            free(r);
        }
        free(ks);
    }
}

/* Key bookkeeping. */

static uint32_t
sa_hash(int64_t sa_id)
{
    return hash_uint64(sa_id);
}

static struct sa_entry *
switch_find_sa(const struct pk_switch *sw, int64_t sa_id)
{
    struct sa_entry *e;

    HMAP_FOR_EACH_WITH_HASH (e, node, sa_hash(sa_id), &sw->sas) {
        if (e->sa_id == sa_id) {
            return e;
        }
    }
    return NULL;
}

static uint32_t
held_hash(uint64_t dpid, int64_t sa_id)
{
    return hash_uint64_basis(dpid, hash_uint64(sa_id));
}

static struct held *
find_held(const struct keyserver *ks, uint64_t dpid, int64_t sa_id)
{
    struct held *h;

    HMAP_FOR_EACH_WITH_HASH (h, node, held_hash(dpid, sa_id), &ks->held) {
        if (h->dpid == dpid && h->sa_id == sa_id) {
            return h;
        }
    }
    return NULL;
}

static struct issued *
find_issued(const struct keyserver *ks, int64_t sa_id)
{
    struct issued *is;

    HMAP_FOR_EACH_WITH_HASH (is, node, sa_hash(sa_id), &ks->issued) {
        if (is->sa_id == sa_id) {
            return is;
        }
    }
    return NULL;
}

static bool
was_issued_here(const struct keyserver *ks, int64_t sa_id, uint32_t version)
{
    const struct issued *is = find_issued(ks, sa_id);

    return is && is->version == version;
}

static void
note_issued(struct keyserver *ks, int64_t sa_id, uint32_t version)
{
    struct issued *is = find_issued(ks, sa_id);

    if (!is) {
        is = xmalloc(sizeof *is);
        is->sa_id = sa_id;
        hmap_insert(&ks->issued, &is->node, sa_hash(sa_id));
    } else if (is->version == version) {
        return;
    }
    is->version = version;
    ks->n_keys_issued++;
}

static int
compare_sa_ids(const void *a_, const void *b_)
{
    const int64_t *a = a_, *b = b_;

    return *a < *b ? -1 : *a > *b;
}

/* Forgets the 'n' keys in 'sa_ids', which no longer exist (pair ids are
 * never reused). */
static void
forget_keys(struct keyserver *ks, const int64_t *sa_ids, size_t n)
{
    int64_t *sorted;
    struct held *h;

    if (!n) {
        return;
    }
    sorted = xmemdup(sa_ids, n * sizeof *sa_ids);
    qsort(sorted, n, sizeof *sorted, compare_sa_ids);
    for (size_t i = 0; i < n; i++) {
        struct issued *is = find_issued(ks, sorted[i]);

        if (is) {
            hmap_remove(&ks->issued, &is->node);
            free(is);
        }
    }
    HMAP_FOR_EACH_SAFE (h, node, &ks->held) {
        if (bsearch(&h->sa_id, sorted, n, sizeof *sorted, compare_sa_ids)) {
            hmap_remove(&ks->held, &h->node);
            free(h);
        }
    }
    free(sorted);
}

/* A switch may receive version 'key->version' only if this process issued
 * it and the switch's bridge never held it in an earlier connection: a
 * bridge that held a key, restarted or reconnected, gets a new version
 * rather than the same key with fresh replay windows. */
static bool
key_is_fresh_for(const struct keyserver *ks, const struct pk_switch *sw,
                 const struct key *key)
{
    const struct held *h;

    if (!was_issued_here(ks, key->sa_id, key->version)) {
        return false;
    }
    h = find_held(ks, sw->dpid, key->sa_id);
    return !h || h->version != key->version || h->conn_seq == sw->conn_seq;
}

/* The NETKEY rule (see peers.h): version 'version' of the NETKEY of 'peer'
 * may go to SA 'sa_id' of 'sw' only if this process got it and the bridge
 * did not hold it in an earlier connection. */
static bool
netkey_is_fresh_for(const struct keyserver *ks, const struct pk_switch *sw,
                    const char *peer, int64_t sa_id, uint32_t version)
{
    const struct held *h = find_held(ks, sw->dpid, sa_id);

    if (ks->peers && !peers_netkey_is_fresh(ks->peers, peer, version)) {
        return false;
    }
    return !h || h->version != version || h->conn_seq == sw->conn_seq;
}

/* Sending. */

static void
switch_send_now(struct pk_switch *sw, struct ofpbuf *msg)
{
    int error = rconn_send(sw->rconn, msg, NULL);
    if (error) {
        VLOG_INFO_RL(&rl, "%s: send: %s", sw->name, ovs_strerror(error));
        explicit_bzero(msg->data, msg->size);
        ofpbuf_delete(msg);
    }
}

static void
switch_send(struct pk_switch *sw, struct ofpbuf *msg)
{
    if (sw->ks->batching) {
        ovs_list_push_back(&sw->pending, &msg->list_node);
    } else {
        switch_send_now(sw, msg);
    }
}

/* Sends the messages held for 'sw', with as few system calls as the
 * connection allows, or discards them (wiping any key) if 'discard'. */
static void
switch_flush(struct pk_switch *sw, bool discard)
{
    if (!discard && !ovs_list_is_empty(&sw->pending)) {
        int error = rconn_send_many(sw->rconn, &sw->pending, NULL);

        if (error) {
            VLOG_INFO_RL(&rl, "%s: send: %s", sw->name, ovs_strerror(error));
        }
    } else {
        struct ofpbuf *msg;

        LIST_FOR_EACH_POP (msg, list_node, &sw->pending) {
            explicit_bzero(msg->data, msg->size);
            ofpbuf_delete(msg);
        }
    }
}

static void
send_flow_mod__(struct pk_switch *sw, uint16_t command, uint8_t table_id,
                int priority, const struct match *match,
                const struct ofpbuf *ofpacts, uint64_t cookie,
                uint16_t idle_timeout, enum ofputil_flow_mod_flags flags)
{
    struct ofputil_flow_mod fm = {
        .priority = priority,
        .new_cookie = htonll(cookie),
        .cookie = (command == OFPFC_ADD ? 0 : htonll(cookie)),
        .cookie_mask = (command == OFPFC_ADD ? 0 : OVS_BE64_MAX),
        .table_id = table_id,
        .command = command,
        .idle_timeout = idle_timeout,
        .buffer_id = UINT32_MAX,
        .out_port = OFPP_ANY,
        .out_group = OFPG_ANY,
        .flags = flags,
        .ofpacts = ofpacts ? ofpacts->data : NULL,
        .ofpacts_len = ofpacts ? ofpacts->size : 0,
    };

    minimatch_init(&fm.match, match);
    switch_send(sw, ofputil_encode_flow_mod(&fm, sw->protocol));
    minimatch_destroy(&fm.match);
}

static void
send_flow_mod(struct pk_switch *sw, uint16_t command, uint8_t table_id,
              int priority, const struct match *match,
              const struct ofpbuf *ofpacts, uint64_t cookie,
              uint16_t idle_timeout)
{
    send_flow_mod__(sw, command, table_id, priority, match, ofpacts, cookie,
                    idle_timeout, 0);
}

/* Deletes every flow in 'table_id' that matches 'match' (non-strictly) and
 * outputs to 'out_port' (OFPP_ANY: any or none), also inside a clone. */
static void
delete_flows_to(struct pk_switch *sw, uint8_t table_id,
                const struct match *match, ofp_port_t out_port)
{
    struct ofputil_flow_mod fm = {
        .priority = 0,
        .table_id = table_id,
        .command = OFPFC_DELETE,
        .buffer_id = UINT32_MAX,
        .out_port = out_port,
        .out_group = OFPG_ANY,
    };

    minimatch_init(&fm.match, match);
    switch_send(sw, ofputil_encode_flow_mod(&fm, sw->protocol));
    minimatch_destroy(&fm.match);
}

static void
delete_flows(struct pk_switch *sw, uint8_t table_id, const struct match *match)
{
    delete_flows_to(sw, table_id, match, OFPP_ANY);
}

static void
send_key(struct keyserver *ks, struct pk_switch *sw, const struct key *key,
         enum nx_crypt_sa_command command)
{
    struct ofputil_crypt_sa_mod mod = {
        .command = command,
        .sa_id = key->sa_id,
        .key_version = key->version,
        .cipher = NX_CRYPT_CIPHER_DEFAULT,
    };
    struct held *h;

    memcpy(mod.key, key->bytes, sizeof mod.key);
    switch_send(sw, ofputil_encode_crypt_sa_mod(
                    &mod, rconn_get_version(sw->rconn)));
    ofputil_crypt_sa_mod_wipe(&mod);

    /* Held, for the rule that a version reaches a bridge once, as soon as
     * it can decrypt with it. */
    h = find_held(ks, sw->dpid, key->sa_id);
    if (!h) {
        h = xmalloc(sizeof *h);
        h->dpid = sw->dpid;
        h->sa_id = key->sa_id;
        hmap_insert(&ks->held, &h->node, held_hash(sw->dpid, key->sa_id));
    }
    h->version = key->version;
    h->conn_seq = sw->conn_seq;
}

static void
install_key(struct keyserver *ks, struct pk_switch *sw, const struct key *key)
{
    struct sa_entry *e = switch_find_sa(sw, key->sa_id);

    send_key(ks, sw, key, NXCSM_ADD);
    if (!e) {
        e = xmalloc(sizeof *e);
        e->sa_id = key->sa_id;
        e->next_verify = LLONG_MIN;
        hmap_insert(&sw->sas, &e->node, sa_hash(key->sa_id));
    }
    e->version = key->version;
}

/* Asks 'sw' whether it holds 'key' (NXCSM_VERIFY: only its check value
 * travels).  A mismatch comes back as an error, see process_error(). */
static void
verify_key(struct pk_switch *sw, const struct key *key)
{
    struct ofputil_crypt_sa_mod mod = {
        .command = NXCSM_VERIFY,
        .sa_id = key->sa_id,
        .key_version = key->version,
    };

    crypt_key_check(key->bytes, mod.key);
    switch_send(sw, ofputil_encode_crypt_sa_mod(
                    &mod, rconn_get_version(sw->rconn)));
}

/* Deletes SA 'sa_id' from 'sw'.  Sent even if this process never installed
 * it there: the switch may hold it from before a restart of the key server
 * (a switch without it answers NXCSM_UNKNOWN_SA, which is ignored). */
static void
delete_key(struct pk_switch *sw, int64_t sa_id)
{
    struct ofputil_crypt_sa_mod mod = {
        .command = NXCSM_DELETE,
        .sa_id = sa_id,
    };
    struct sa_entry *e = switch_find_sa(sw, sa_id);

    switch_send(sw, ofputil_encode_crypt_sa_mod(
                    &mod, rconn_get_version(sw->rconn)));
    if (e) {
        hmap_remove(&sw->sas, &e->node);
        free(e);
    }
}

/* Pair flows. */

static uint32_t
pair_flow_hash(uint8_t table_id, struct eth_addr src, struct eth_addr dst)
{
    return hash_uint64_basis(eth_addr_to_uint64(dst),
                             hash_uint64_basis(eth_addr_to_uint64(src),
                                               table_id));
}

static struct pair_flow *
switch_find_pair_flow(const struct pk_switch *sw, uint8_t table_id,
                      struct eth_addr src, struct eth_addr dst)
{
    struct pair_flow *pf;

    HMAP_FOR_EACH_WITH_HASH (pf, node, pair_flow_hash(table_id, src, dst),
                             &sw->pair_flows) {
        if (pf->table_id == table_id && eth_addr_equals(pf->src, src)
            && eth_addr_equals(pf->dst, dst)) {
            return pf;
        }
    }
    return NULL;
}

static void
switch_forget_pair_flows(struct pk_switch *sw)
{
    struct pair_flow *pf;

    HMAP_FOR_EACH_POP (pf, node, &sw->pair_flows) {
        ofpbuf_delete(pf->flow_mod);
        free(pf);
    }
}

/* Sends the pair flow in 'table_id' from 'src' to 'dst' that does
 * 'ofpacts', and remembers it. */
static void
send_pair_flow(struct pk_switch *sw, uint8_t table_id, struct eth_addr src,
               struct eth_addr dst, const struct ofpbuf *ofpacts,
               uint64_t cookie)
{
    struct pair_flow *pf = switch_find_pair_flow(sw, table_id, src, dst);
    struct ofputil_flow_mod fm = {
        .priority = 100,
        .new_cookie = htonll(cookie),
        .table_id = table_id,
        .command = OFPFC_ADD,
        .buffer_id = UINT32_MAX,
        .out_port = OFPP_ANY,
        .out_group = OFPG_ANY,
        .ofpacts = ofpacts->data,
        .ofpacts_len = ofpacts->size,
    };
    struct match match;
    struct ofpbuf *msg;

    match_init_catchall(&match);
    match_set_dl_src(&match, src);
    match_set_dl_dst(&match, dst);
    minimatch_init(&fm.match, &match);
    msg = ofputil_encode_flow_mod(&fm, sw->protocol);
    minimatch_destroy(&fm.match);

    if (!pf) {
        pf = xmalloc(sizeof *pf);
        pf->table_id = table_id;
        pf->src = src;
        pf->dst = dst;
        hmap_insert(&sw->pair_flows, &pf->node,
                    pair_flow_hash(table_id, src, dst));
    } else {
        ofpbuf_delete(pf->flow_mod);
    }
    pf->flow_mod = ofpbuf_clone(msg);
    switch_send(sw, msg);
}

/* Switches. */

static struct pk_switch *
find_switch(const struct keyserver *ks, uint64_t dpid)
{
    struct pk_switch *sw;

    LIST_FOR_EACH (sw, list_node, &ks->switches) {
        if (sw->have_dpid && sw->dpid == dpid
            && rconn_is_connected(sw->rconn)) {
            return sw;
        }
    }
    return NULL;
}

static const struct mark *
switch_uplink(const struct pk_switch *sw)
{
    for (size_t i = 0; i < sw->n_marks; i++) {
        if (sw->marks[i].role == MARK_UPLINK) {
            return &sw->marks[i];
        }
    }
    return NULL;
}

/* The mark of port 'port' of 'sw', or NULL. */
static const struct mark *
switch_find_mark(const struct pk_switch *sw, ofp_port_t port)
{
    for (size_t i = 0; i < sw->n_marks; i++) {
        if (sw->marks[i].ofport == port) {
            return &sw->marks[i];
        }
    }
    return NULL;
}

void
keyserver_add_switch(struct keyserver *ks, struct vconn *vconn)
{
    struct pk_switch *sw = xzalloc(sizeof *sw);

    sw->rconn = rconn_create(60, 0, DSCP_DEFAULT, vconn_get_allowed_versions(
                                 vconn));
    rconn_connect_unreliably(sw->rconn, vconn, NULL);
    sw->ks = ks;
    ovs_list_init(&sw->pending);
    sw->conn_seq = ks->next_conn_seq++;
    sw->name = xstrdup(vconn_get_name(vconn));
    hmap_init(&sw->sas);
    hmap_init(&sw->pair_flows);
    ovs_list_push_back(&ks->switches, &sw->list_node);
}

static void
switch_destroy(struct pk_switch *sw)
{
    struct sa_entry *e;

    switch_flush(sw, true);
    rconn_destroy(sw->rconn);
    free(sw->name);
    marks_free(sw->marks, sw->n_marks);
    free(sw->macs);
    switch_forget_pair_flows(sw);
    hmap_destroy(&sw->pair_flows);
    HMAP_FOR_EACH_POP (e, node, &sw->sas) {
        free(e);
    }
    hmap_destroy(&sw->sas);
    free(sw->base);
    free(sw);
}

/* Keys. */

static void
key_from_pair(struct key *key, const struct store_pair_key *pk)
{
    key->sa_id = pk->pair_id;
    key->version = pk->version;
    memcpy(key->bytes, pk->key, sizeof key->bytes);
}

static void
key_wipe(struct key *key)
{
    store_key_wipe(key->bytes, sizeof key->bytes);
}

/* Installs 'key' on every connected switch that holds its SA, and on 'sw' if
 * nonnull. */
static void
push_key(struct keyserver *ks, const struct key *key, struct pk_switch *sw)
{
    struct pk_switch *other;

    LIST_FOR_EACH (other, list_node, &ks->switches) {
        if (other == sw
            || (switch_find_sa(other, key->sa_id)
                && rconn_is_connected(other->rconn))) {
            install_key(ks, other, key);
        }
    }
}

/* Rotates pair 'pair_id' (or the group key, for GROUP_SA_ID) to a new
 * version in the store and stores it in 'key'.  Returns false on error. */
static bool
rotate_key(struct keyserver *ks, const struct pk_switch *sw, int64_t sa_id,
           const char *reason, struct key *key)
{
    char *error;

    if (sa_id == GROUP_SA_ID) {
        struct store_group_key gk;

        error = store_rotate_group_key(ks->store, &gk);
        if (!error) {
            key->sa_id = GROUP_SA_ID;
            key->version = gk.version;
            memcpy(key->bytes, gk.key, sizeof key->bytes);
            store_key_wipe(&gk, sizeof gk);
        }
    } else {
        struct store_pair_key pk;

        error = store_rotate_pair_key(ks->store, sa_id,
                                      sw ? sw->name : NULL, reason,
                                      &pk);
        if (!error) {
            key_from_pair(key, &pk);
            store_key_wipe(&pk, sizeof pk);
        }
    }
    if (error) {
        VLOG_WARN_RL(&rl, "%s: rotating key %"PRId64" failed: %s",
                     sw ? sw->name : "key server", sa_id, error);
        free(error);
        return false;
    }
    note_issued(ks, key->sa_id, key->version);
    return true;
}

/* A member asks its authority for a version of SA 'sa_id' (a pair id or
 * GROUP_SA_ID) above 'stale'. */
static void
ask_authority(struct keyserver *ks, int64_t sa_id, uint32_t stale)
{
    struct store_pair_key pk;

    if (sa_id == GROUP_SA_ID) {
        cascade_ask_group(ks->cascade, stale);
    } else if (store_find_pair_key(ks->store, sa_id, &pk)) {
        cascade_ask_pair(ks->cascade, pk.id_a, pk.id_b, stale, false);
        store_key_wipe(&pk, sizeof pk);
    }
}

/* Makes sure 'sw' holds the current version of 'key' (which may be rotated
 * for it, see key_is_fresh_for()).  Returns false on error. */
static bool
ensure_key(struct keyserver *ks, struct pk_switch *sw, struct key *key)
{
    struct sa_entry *e = switch_find_sa(sw, key->sa_id);

    if ((e && e->version == key->version)
        || (e && rollover_active(ks, key->sa_id))) {
        /* There already, or on its way (the rollover installs it). */
        return true;
    }
    if (!key_is_fresh_for(ks, sw, key) && is_member(ks)) {
        /* Only the authority rotates; its answer installs the new version
         * (keyserver_pair_obtained(), keyserver_group_obtained()). */
        ask_authority(ks, key->sa_id, key->version);
        return false;
    } else if (!key_is_fresh_for(ks, sw, key)) {
        struct key new_key;

        if (!rotate_key(ks, sw, key->sa_id, "switch reconnected",
                        &new_key)) {
            return false;
        }
        key_wipe(key);
        *key = new_key;
        /* Every other holder moves to the new version too; their previous
         * version keeps decrypting frames in flight. */
        push_key(ks, key, sw);
        key_wipe(&new_key);
        return true;
    }
    install_key(ks, sw, key);
    return true;
}

/* Base pipeline. */

static void
base_add(struct base_flow **flows, size_t *n, size_t *allocated,
         uint8_t table_id, int priority, const struct match *match)
{
    struct base_flow *flow;

    if (*n >= *allocated) {
        *flows = x2nrealloc(*flows, allocated, sizeof **flows);
    }
    flow = &(*flows)[(*n)++];
    flow->table_id = table_id;
    flow->priority = priority;
    flow->match = *match;
}

static bool
base_contains(const struct base_flow *flows, size_t n,
              const struct base_flow *flow)
{
    for (size_t i = 0; i < n; i++) {
        if (flows[i].table_id == flow->table_id
            && flows[i].priority == flow->priority
            && match_equal(&flows[i].match, &flow->match)) {
            return true;
        }
    }
    return false;
}

static void
add_base_flow(struct pk_switch *sw, struct base_flow **flows, size_t *n,
              size_t *allocated, uint8_t table_id, int priority,
              const struct match *match, const struct ofpbuf *ofpacts)
{
    send_flow_mod(sw, OFPFC_ADD, table_id, priority, match, ofpacts,
                  sw->ks->base_cookie, 0);
    base_add(flows, n, allocated, table_id, priority, match);
}

static void
put_output(struct ofpbuf *ofpacts, ofp_port_t port)
{
    ofpact_put_OUTPUT(ofpacts)->port = port;
}

/* The SA of the NETKEY on inter port 'ofport': above every pair id. */
static int64_t
netkey_sa_id(ofp_port_t ofport)
{
    return NETKEY_SA_BASE + ofp_to_u16(ofport);
}

static void
put_encrypt(struct ofpbuf *ofpacts, int64_t sa_id, enum crypt_mode mode)
{
    struct ofpact_crypt *crypt = ofpact_put_ENCRYPT(ofpacts);

    crypt->sa_id = sa_id;
    crypt->mode = mode;
}

/* How a gateway encrypts what its clear and inter ports receive: with a
 * sender id of its own, because the source MACs of those frames are not
 * vouched for (a plain host may use a client's MAC, which must not make
 * the gateway seal under that client's subkey). */
static enum crypt_mode
sender_mode(bool gateway)
{
    return gateway ? CRYPT_MODE_L2 : CRYPT_MODE_ETH;
}

/* Appends an output to port 'ofport' of 'sw': to an inter port, under the
 * NETKEY in the port's mode, in a clone so that the frame stays as it is
 * for what follows. */
static void
put_port_output(struct ofpbuf *ofpacts, const struct pk_switch *sw,
                ofp_port_t ofport)
{
    for (size_t i = 0; i < sw->n_marks; i++) {
        if (sw->marks[i].ofport == ofport && sw->marks[i].role == MARK_INTER) {
            size_t ofs = ofpacts->size;
            struct ofpact_nest *clone;

            ofpact_put_CLONE(ofpacts);
            put_encrypt(ofpacts, netkey_sa_id(ofport), sw->marks[i].mode);
            put_output(ofpacts, ofport);
            clone = ofpbuf_at_assert(ofpacts, ofs, sizeof *clone);
            ofpacts->header = clone;
            ofpact_finish_CLONE(ofpacts, &clone);
            return;
        }
    }
    put_output(ofpacts, ofport);
}

/* Adds the table 0 flows of inter port 'm' to 'flows': what the NETKEY
 * opens in the port's mode goes on to TABLE_SEND, and so does ARP in the IP
 * modes; the port's priority 90 flow drops the rest.  'match' has the
 * port's in_port. */
static void
put_inter_ingress(struct pk_switch *sw, struct base_flow **flows, size_t *n,
                  size_t *allocated, const struct mark *m,
                  const struct match *port_match)
{
    struct ofpbuf ofpacts;
    struct match match;

    ofpbuf_init(&ofpacts, 16);
    match = *port_match;
    if (m->mode == CRYPT_MODE_L2) {
        match_set_dl_type(&match, htons(CRYPT_ETH_TYPE));
    } else {
        match_set_dl_type(&match, htons(ETH_TYPE_IP));
        match_set_nw_proto(&match, (m->mode == CRYPT_MODE_L3
                                    ? CRYPT_IP_PROTO : IPPROTO_UDP));
    }
    ofpact_put_DECRYPT(&ofpacts)->sa_id = netkey_sa_id(m->ofport);
    ofpact_put_GOTO_TABLE(&ofpacts)->table_id = TABLE_SEND;
    add_base_flow(sw, flows, n, allocated, TABLE_PORTS, 100, &match,
                  &ofpacts);

    if (m->mode != CRYPT_MODE_L2) {
        match = *port_match;
        match_set_dl_type(&match, htons(ETH_TYPE_ARP));
        ofpbuf_clear(&ofpacts);
        ofpact_put_GOTO_TABLE(&ofpacts)->table_id = TABLE_SEND;
        add_base_flow(sw, flows, n, allocated, TABLE_PORTS, 100, &match,
                      &ofpacts);
    }
    ofpbuf_uninit(&ofpacts);
}

static void
put_controller(struct ofpbuf *ofpacts)
{
    struct ofpact_controller *oc = ofpact_put_CONTROLLER(ofpacts);

    oc->max_len = UINT16_MAX;
    oc->reason = OFPR_NO_MATCH;
    ofpact_finish_CONTROLLER(ofpacts, &oc);
}

/* Replaces 'ofpacts' by the actions that send a frame from port 'port' to
 * the key server, through the port's meter. */
static void
put_metered_controller(struct ofpbuf *ofpacts, const struct pk_switch *sw,
                       ofp_port_t port)
{
    ofpbuf_clear(ofpacts);
    if (sw->ks->request_rate) {
        ofpact_put_METER(ofpacts)->meter_id = ofp_to_u16(port);
    }
    put_controller(ofpacts);
}

/* Creates or updates the meter of port 'port' of 'sw': one of the two
 * fails (the meter exists, or not yet), which process_error() expects. */
static void
set_port_meter(struct pk_switch *sw, ofp_port_t port)
{
    struct ofputil_meter_band band = {
        .type = OFPMBT13_DROP,
        .rate = sw->ks->request_rate,
        .burst_size = sw->ks->request_rate,
    };
    struct ofputil_meter_mod mm = {
        .meter = {
            .meter_id = ofp_to_u16(port),
            .flags = OFPMF13_PKTPS | OFPMF13_BURST,
            .n_bands = 1,
            .bands = &band,
        },
    };

    if (!sw->ks->request_rate) {
        return;
    }
    mm.command = OFPMC13_ADD;
    switch_send(sw, ofputil_encode_meter_mod(rconn_get_version(sw->rconn),
                                             &mm));
    mm.command = OFPMC13_MODIFY;
    switch_send(sw, ofputil_encode_meter_mod(rconn_get_version(sw->rconn),
                                             &mm));
}

static bool
mark_equal(const struct mark *a, const struct mark *b)
{
    return (a->role == b->role && a->ofport == b->ofport
            && nullable_string_is_equal(a->client_id, b->client_id)
            && nullable_string_is_equal(a->peer, b->peer)
            && a->mode == b->mode);
}

/* 'sw' had 'old' marks before its current ones.  A port whose mark went or
 * changed loses every flow that outputs to it (pair flows included, which
 * no reprogramming would touch) and, for an inter port, its NETKEY SA: a
 * port that lost its mark passes nothing. */
static void
switch_forget_marks(struct pk_switch *sw, const struct mark *old, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct match match;
        bool kept = false;

        for (size_t k = 0; k < sw->n_marks && !kept; k++) {
            kept = mark_equal(&old[i], &sw->marks[k]);
        }
        if (kept || old[i].role == MARK_UPLINK) {
            continue;
        }
        match_init_catchall(&match);
        delete_flows_to(sw, TABLE_SEND, &match, old[i].ofport);
        delete_flows_to(sw, TABLE_RECV, &match, old[i].ofport);
        if (old[i].role == MARK_INTER
            && switch_find_sa(sw, netkey_sa_id(old[i].ofport))) {
            delete_key(sw, netkey_sa_id(old[i].ofport));
        }
        if (mark_is_gateway(&old[i])) {
            /* The outside hosts' presence flows and source drops. */
            match_set_in_port(&match, old[i].ofport);
            send_flow_mod(sw, OFPFC_DELETE, TABLE_PORTS, 0, &match, NULL,
                          PRESENCE_COOKIE, 0);
            send_flow_mod(sw, OFPFC_DELETE, TABLE_PORTS, 0, &match, NULL,
                          DROP_COOKIE, 0);
        }
    }
}

/* Returns which marks of 'sw' are new since it had 'old' (a malloc()'d
 * array). */
static bool *
switch_new_marks(const struct pk_switch *sw, const struct mark *old,
                 size_t n_old)
{
    bool *fresh = xcalloc(sw->n_marks + 1, sizeof *fresh);

    for (size_t i = 0; i < sw->n_marks; i++) {
        fresh[i] = true;
        for (size_t k = 0; k < n_old && fresh[i]; k++) {
            fresh[i] = !mark_equal(&sw->marks[i], &old[k]);
        }
    }
    return fresh;
}

/* Returns which marks of 'sw' get broadcasts (a malloc()'d array): the
 * ports of enrolled clients and the gateway ports. */
static bool *
switch_members(const struct pk_switch *sw)
{
    bool *member = xcalloc(sw->n_marks + 1, sizeof *member);

    for (size_t i = 0; i < sw->n_marks; i++) {
        member[i] = (!eth_addr_is_zero(sw->macs[i])
                     || mark_is_gateway(&sw->marks[i]));
    }
    return member;
}

/* Replaces 'ofpacts' by the actions for a broadcast or multicast frame from
 * mark 'from' of 'sw': in the clear to every other 'member' port, under the
 * group key to 'uplink' if nonnull. */
static void
put_group_flood(struct ofpbuf *ofpacts, const struct pk_switch *sw,
                const bool *member, size_t from, const struct mark *uplink)
{
    ofpbuf_clear(ofpacts);
    for (size_t k = 0; k < sw->n_marks; k++) {
        if (member[k] && k != from) {
            put_port_output(ofpacts, sw, sw->marks[k].ofport);
        }
    }
    if (uplink) {
        put_encrypt(ofpacts, GROUP_SA_ID,
                    sender_mode(mark_is_gateway(&sw->marks[from])));
        put_output(ofpacts, uplink->ofport);
    }
}

/* (Re)installs the base pipeline of 'sw' from its marks and the enrolled
 * clients, and deletes base flows that are no longer wanted. */
static void
switch_program(struct keyserver *ks, struct pk_switch *sw)
{
    struct base_flow *flows = NULL;
    size_t n = 0, allocated = 0;
    const struct mark *uplink;
    struct ofpbuf ofpacts;
    struct match match;
    char *bridge;
    bool any_client = false, any_clear = false;

    struct mark *old_marks = sw->marks;
    size_t n_old_marks = sw->n_marks;
    sw->n_marks = marks_get(ks->marks, sw->dpid, &sw->marks, &bridge);
    switch_forget_marks(sw, old_marks, n_old_marks);
    bool *fresh = switch_new_marks(sw, old_marks, n_old_marks);
    marks_free(old_marks, n_old_marks);
    if (bridge) {
        free(sw->name);
        sw->name = bridge;
    }
    uplink = switch_uplink(sw);
    ofpbuf_init(&ofpacts, 64);

    /* Only enrolled clients' ports get anything: a revoked client's host
     * must not even see its neighbours' broadcasts. */
    free(sw->macs);
    sw->macs = xcalloc(sw->n_marks + 1, sizeof *sw->macs);
    bool *enrolled = xcalloc(sw->n_marks + 1, sizeof *enrolled);
    for (size_t i = 0; i < sw->n_marks; i++) {
        struct store_client client;

        enrolled[i] = (sw->marks[i].role == MARK_CLIENT
                       && store_find_client_by_id(ks->store,
                                                  sw->marks[i].client_id,
                                                  &client)
                       && !client.gateway);
        sw->macs[i] = enrolled[i] ? client.mac : eth_addr_zero;
    }

    /* Each gateway port makes this bridge a gateway, a client in the
     * store. */
    bool *member = switch_members(sw);
    for (size_t i = 0; i < sw->n_marks; i++) {
        if (mark_is_gateway(&sw->marks[i])) {
            char *error = store_add_gateway(ks->store,
                                            sw->marks[i].client_id);
            if (error) {
                VLOG_WARN_RL(&rl, "%s: port %s: %s", sw->name,
                             sw->marks[i].iface, error);
                free(error);
                member[i] = false;
            } else {
                any_clear = true;
            }
        }
    }

    /* The ports or clients behind the pair flows may have changed: the
     * next request for each pair goes through the store again, and the
     * next broadcast of each outside host is learned again. */
    switch_forget_pair_flows(sw);
    match_init_catchall(&match);
    send_flow_mod(sw, OFPFC_DELETE, TABLE_SEND, 0, &match, NULL,
                  LEARN_COOKIE, 0);

    /* The meters that flows below refer to. */
    for (size_t i = 0; i < sw->n_marks; i++) {
        set_port_meter(sw, sw->marks[i].ofport);
    }

    /* Table 0: which port may send what. */
    match_init_catchall(&match);
    add_base_flow(sw, &flows, &n, &allocated, TABLE_PORTS, 0, &match, NULL);
    for (size_t i = 0; i < sw->n_marks; i++) {
        const struct mark *m = &sw->marks[i];

        match_init_catchall(&match);
        match_set_in_port(&match, m->ofport);
        add_base_flow(sw, &flows, &n, &allocated, TABLE_PORTS, 90, &match,
                      NULL);

        /* Table 1: a miss is a key request, within the port's meter. */
        if (m->role != MARK_UPLINK) {
            put_metered_controller(&ofpacts, sw, m->ofport);
            add_base_flow(sw, &flows, &n, &allocated, TABLE_SEND, 1, &match,
                          &ofpacts);
        }

        ofpbuf_clear(&ofpacts);
        if (m->role == MARK_UPLINK) {
            match_set_dl_type(&match, htons(CRYPT_ETH_TYPE));
            ofpact_put_GOTO_TABLE(&ofpacts)->table_id = TABLE_RECV;
            add_base_flow(sw, &flows, &n, &allocated, TABLE_PORTS, 100,
                          &match, &ofpacts);
        } else if (mark_is_gateway(m)) {
            if (!member[i]) {
                continue;
            }
            /* Any source: the key server refuses a plain host that uses a
             * client's MAC.  From an inter port, only what the NETKEY
             * opens, and in the IP modes ARP, which the router on the link
             * needs. */
            if (m->role == MARK_INTER) {
                put_inter_ingress(sw, &flows, &n, &allocated, m, &match);
            } else {
                ofpact_put_GOTO_TABLE(&ofpacts)->table_id = TABLE_SEND;
                add_base_flow(sw, &flows, &n, &allocated, TABLE_PORTS, 100,
                              &match, &ofpacts);
            }

            /* Table 1: broadcast and multicast from the plain network go
             * to the key server, which learns where their sender is and
             * then has them flooded (install_learned_flood()): in the clear
             * to this bridge's clients and under the group key to the
             * uplink.  A sender that may not cross here is dropped. */
            match_init_catchall(&match);
            match_set_in_port(&match, m->ofport);
            match_set_dl_dst_masked(&match, group_bit, group_bit);
            ofpbuf_clear(&ofpacts);
            put_controller(&ofpacts);
            add_base_flow(sw, &flows, &n, &allocated, TABLE_SEND, 210,
                          &match, &ofpacts);
        } else {
            if (!enrolled[i]) {
                continue;
            }
            any_client = true;
            match_set_dl_src(&match, sw->macs[i]);
            ofpact_put_GOTO_TABLE(&ofpacts)->table_id = TABLE_SEND;
            add_base_flow(sw, &flows, &n, &allocated, TABLE_PORTS, 100,
                          &match, &ofpacts);

            /* Table 2: frames for this client are key requests, within
             * the uplink's meter; frames from it came back. */
            if (uplink) {
                match_init_catchall(&match);
                match_set_dl_dst(&match, sw->macs[i]);
                put_metered_controller(&ofpacts, sw, uplink->ofport);
                add_base_flow(sw, &flows, &n, &allocated, TABLE_RECV, 10,
                              &match, &ofpacts);
            }
            match_init_catchall(&match);
            match_set_dl_src(&match, sw->macs[i]);
            add_base_flow(sw, &flows, &n, &allocated, TABLE_RECV, 300,
                          &match, NULL);

            /* Table 1: broadcast and multicast from this client go in the
             * clear to the other clients of this bridge and under the group
             * key to the uplink. */
            match_init_catchall(&match);
            match_set_dl_src(&match, sw->macs[i]);
            match_set_dl_dst_masked(&match, group_bit, group_bit);
            put_group_flood(&ofpacts, sw, member, i, uplink);
            add_base_flow(sw, &flows, &n, &allocated, TABLE_SEND, 200,
                          &match, &ofpacts);
        }
    }

    /* Table 1 misses from a port are key requests (above); table 2 drops
     * what is not for a client here. */
    match_init_catchall(&match);
    add_base_flow(sw, &flows, &n, &allocated, TABLE_SEND, 0, &match, NULL);
    add_base_flow(sw, &flows, &n, &allocated, TABLE_RECV, 0, &match, NULL);

    /* On a gateway, a frame from the uplink for a host with no flow may be
     * for a host on the plain side. */
    if (any_clear && uplink) {
        put_metered_controller(&ofpacts, sw, uplink->ofport);
        add_base_flow(sw, &flows, &n, &allocated, TABLE_RECV, 5, &match,
                      &ofpacts);
    }

    /* Group traffic from the uplink goes to every client and plain network
     * here. */
    if ((any_client || any_clear) && uplink) {
        match_init_catchall(&match);
        match_set_dl_dst_masked(&match, group_bit, group_bit);
        ofpbuf_clear(&ofpacts);
        ofpact_put_DECRYPT(&ofpacts)->sa_id = GROUP_SA_ID;
        for (size_t k = 0; k < sw->n_marks; k++) {
            if (member[k]) {
                put_port_output(&ofpacts, sw, sw->marks[k].ofport);
            }
        }
        add_base_flow(sw, &flows, &n, &allocated, TABLE_RECV, 200, &match,
                      &ofpacts);
    }

    /* Delete what the previous pipeline had and this one has not. */
    for (size_t i = 0; i < sw->n_base; i++) {
        if (!base_contains(flows, n, &sw->base[i])) {
            send_flow_mod(sw, OFPFC_DELETE_STRICT, sw->base[i].table_id,
                          sw->base[i].priority, &sw->base[i].match, NULL,
                          ks->base_cookie, 0);
        }
    }
    free(sw->base);
    sw->base = flows;
    sw->n_base = n;
    ofpbuf_uninit(&ofpacts);

    /* The outside hosts behind a new clear port are watched there. */
    for (size_t i = 0; i < sw->n_marks; i++) {
        if (fresh[i] && member[i] && sw->marks[i].role == MARK_CLEAR) {
            watch_gateway_hosts(ks, sw, &sw->marks[i]);
        }
    }
    free(fresh);
    free(enrolled);
    free(member);

    /* The NETKEY of each inter port, once the peers agreed on one. */
    for (size_t i = 0; i < sw->n_marks; i++) {
        const struct mark *m = &sw->marks[i];
        int64_t sa_id = netkey_sa_id(m->ofport);
        struct store_netkey nk;

        if (m->role != MARK_INTER) {
            continue;
        }
        if (store_get_netkey(ks->store, m->peer, &nk)) {
            const struct sa_entry *e = switch_find_sa(sw, sa_id);

            if (e && e->version == nk.version) {
                /* Already there. */
            } else if (netkey_is_fresh_for(ks, sw, m->peer, sa_id,
                                           nk.version)) {
                struct key key = { .sa_id = sa_id, .version = nk.version };

                memcpy(key.bytes, nk.key, sizeof key.bytes);
                install_key(ks, sw, &key);
                key_wipe(&key);
            } else if (ks->peers) {
                VLOG_INFO("%s: NETKEY version %"PRIu32" of peer %s may have "
                          "reached port %s before; asking for a new one",
                          sw->name, nk.version, m->peer, m->iface);
                peers_refresh_netkey(ks->peers, m->peer, nk.version);
            }
            store_key_wipe(&nk, sizeof nk);
        } else if (switch_find_sa(sw, sa_id)) {
            delete_key(sw, sa_id);
        }
    }

    /* The group key, for every bridge that has clients or is a gateway. */
    if ((any_client || any_clear) && uplink) {
        struct store_group_key gk;
        char *error = store_get_group_key(ks->store, &gk);

        if (error) {
            VLOG_WARN_RL(&rl, "%s: group key: %s", sw->name, error);
            free(error);
        } else {
            struct key key = { .sa_id = GROUP_SA_ID, .version = gk.version };

            memcpy(key.bytes, gk.key, sizeof key.bytes);
            store_key_wipe(&gk, sizeof gk);
            ensure_key(ks, sw, &key);
            key_wipe(&key);
        }
    }
}

/* Key requests. */

/* Installs the four flows of pair ('a', 'b') with SA 'key' on the switches
 * of both clients that are connected. */
static void
install_pair_flows(struct keyserver *ks, const struct store_client *a,
                   const struct store_client *b, struct key *key)
{
    const struct store_client *ends[2] = { a, b };

    for (int i = 0; i < 2; i++) {
        const struct store_client *me = ends[i], *peer = ends[!i];
        struct pk_switch *sw;
        const struct mark *uplink;
        ofp_port_t port;
        uint64_t dpid;

        if (!marks_find_client(ks->marks, me->id, &dpid, &port)) {
            continue;
        }
        sw = find_switch(ks, dpid);
        uplink = sw ? switch_uplink(sw) : NULL;
        if (!uplink || !ensure_key(ks, sw, key)) {
            continue;
        }

        struct ofpbuf ofpacts;

        ofpbuf_init(&ofpacts, 64);
        put_encrypt(&ofpacts, key->sa_id, sender_mode(me->gateway));
        put_output(&ofpacts, uplink->ofport);
        send_pair_flow(sw, TABLE_SEND, me->mac, peer->mac, &ofpacts,
                       key->sa_id);

        ofpbuf_clear(&ofpacts);
        ofpact_put_DECRYPT(&ofpacts)->sa_id = key->sa_id;
        put_port_output(&ofpacts, sw, port);
        send_pair_flow(sw, TABLE_RECV, peer->mac, me->mac, &ofpacts,
                       key->sa_id);
        ofpbuf_uninit(&ofpacts);
    }
}

/* Two clients on one bridge talk in the clear: their frames never leave the
 * switch. */
static void
install_local_flow(struct pk_switch *sw, const struct store_client *from,
                   const struct store_client *to, ofp_port_t to_port)
{
    struct ofpbuf ofpacts;

    ofpbuf_init(&ofpacts, 16);
    put_port_output(&ofpacts, sw, to_port);
    send_pair_flow(sw, TABLE_SEND, from->mac, to->mac, &ofpacts,
                   LOCAL_COOKIE);
    ofpbuf_uninit(&ofpacts);
}

/* Drops frames from 'src' to 'dst' for a while after a refused request, so
 * that a host cannot flood the key server. */
static void
install_refusal(struct pk_switch *sw, uint8_t table_id,
                struct eth_addr src, struct eth_addr dst)
{
    struct match match;

    match_init_catchall(&match);
    match_set_dl_src(&match, src);
    match_set_dl_dst(&match, dst);
    send_flow_mod(sw, OFPFC_ADD, table_id, 50, &match, NULL, DROP_COOKIE,
                  REFUSED_IDLE_TIMEOUT);
}

/* Drops every frame from 'src' at gateway port 'port' for a while: a
 * source that may not cross there (a client's MAC, an outside host behind
 * another gateway). */
static void
install_source_drop(struct pk_switch *sw, ofp_port_t port,
                    struct eth_addr src)
{
    struct match match;

    match_init_catchall(&match);
    match_set_in_port(&match, port);
    match_set_dl_src(&match, src);
    send_flow_mod(sw, OFPFC_ADD, TABLE_PORTS, SOURCE_DROP_PRIORITY, &match,
                  NULL, DROP_COOKIE, REFUSED_IDLE_TIMEOUT);
}

/* Sends the frame of 'pi', which came in on 'in_port', back into
 * 'table_id' of 'sw'. */
static void
resubmit_packet(struct pk_switch *sw, const struct ofputil_packet_in *pi,
                ofp_port_t in_port, uint8_t table_id)
{
    struct ofputil_packet_out po;
    struct ofpbuf ofpacts;
    struct ofpact_resubmit *resubmit;

    /* Back into the table that missed: a frame from an inter port is no
     * longer what table 0 lets in from there. */
    ofpbuf_init(&ofpacts, 16);
    resubmit = ofpact_put_RESUBMIT(&ofpacts);
    resubmit->in_port = OFPP_IN_PORT;
    resubmit->table_id = table_id;
    po.packet = pi->packet;
    po.packet_len = pi->packet_len;
    po.buffer_id = UINT32_MAX;
    match_init_catchall(&po.flow_metadata);
    match_set_in_port(&po.flow_metadata, in_port);
    po.ofpacts = ofpacts.data;
    po.ofpacts_len = ofpacts.size;
    switch_send(sw, ofputil_encode_packet_out(&po, sw->protocol));
    ofpbuf_uninit(&ofpacts);
}

static void
release_packet(struct keyserver *ks, struct pk_switch *sw,
               const struct ofputil_packet_in *pi, ofp_port_t in_port,
               uint8_t table_id)
{
    if (ks->miss_policy == MISS_HOLD) {
        resubmit_packet(sw, pi, in_port, table_id);
    }
}

/* Answers a request for a pair flow that 'sw' already was sent (the frame
 * missed while the flow was on its way): the flow again, then the frame.
 * Returns false if there is no such flow. */
static bool
answer_from_memory(struct keyserver *ks, struct pk_switch *sw,
                   const struct ofputil_packet_in *pi, uint8_t table_id,
                   const struct flow *flow)
{
    const struct pair_flow *pf = switch_find_pair_flow(sw, table_id,
                                                       flow->dl_src,
                                                       flow->dl_dst);
    if (!pf) {
        return false;
    }
    ks->n_repeated++;
    switch_send(sw, ofpbuf_clone(pf->flow_mod));
    release_packet(ks, sw, pi, flow->in_port.ofp_port, table_id);
    return true;
}

static void
refuse(struct keyserver *ks, struct pk_switch *sw, const char *why,
       const struct flow *flow)
{
    ks->n_refused++;
    VLOG_WARN_RL(&rl, "%s: refused key request from "ETH_ADDR_FMT" to "
                 ETH_ADDR_FMT" on port %"PRIu32": %s", sw->name,
                 ETH_ADDR_ARGS(flow->dl_src), ETH_ADDR_ARGS(flow->dl_dst),
                 ofp_to_u16(flow->in_port.ofp_port), why);
}

enum answer {
    ANSWERED,                   /* Flows and key sent. */
    NO_ANSWER,                  /* Refused or failed (logged). */
    ASKED,                      /* Member: asked the authority. */
};

/* Parks the frame of 'pi' that missed in 'table_id' of 'sw' until the
 * authority answers for pair ('a', 'b'). */
static void
park_packet(struct keyserver *ks, struct pk_switch *sw,
            const struct ofputil_packet_in *pi, const struct flow *flow,
            uint8_t table_id, const char *a, const char *b)
{
    struct parked *p;

    if (ks->miss_policy != MISS_HOLD || ks->n_parked >= MAX_PARKED) {
        return;
    }
    p = xzalloc(sizeof *p);
    ovs_strlcpy(p->a, a, sizeof p->a);
    ovs_strlcpy(p->b, b, sizeof p->b);
    p->dpid = sw->dpid;
    p->in_port = flow->in_port.ofp_port;
    p->table_id = table_id;
    p->src = flow->dl_src;
    p->dst = flow->dl_dst;
    p->expires = time_msec() + PARKED_MSEC;
    p->len = pi->packet_len;
    p->packet = xmemdup(pi->packet, pi->packet_len);
    ovs_list_push_back(&ks->parked, &p->list_node);
    ks->n_parked++;
}

static bool
parked_for(const struct parked *p, const char *a, const char *b)
{
    return ((!strcmp(p->a, a) && !strcmp(p->b, b))
            || (!strcmp(p->a, b) && !strcmp(p->b, a)));
}

/* Answers a key request for pair ('me', 'peer'), where 'me' is the client
 * behind this switch that the request is made for.  Creates the key only
 * if 'create'.  A member answers only with a key it obtained from its
 * authority in this process, and otherwise asks for one. */
static enum answer
answer_request(struct keyserver *ks, struct pk_switch *sw,
               const struct store_client *me, const struct store_client *peer,
               const char *reason, bool create)
{
    struct store_pair_key pk;
    struct key key;
    bool created = false;
    char *error;

    if (is_member(ks)) {
        bool found = store_find_pair_key_by_ids(ks->store, me->id, peer->id,
                                                &pk);

        if (!found || !was_issued_here(ks, pk.pair_id, pk.version)) {
            cascade_ask_pair(ks->cascade, me->id, peer->id,
                             found ? pk.version : 0, create);
            if (found) {
                store_key_wipe(&pk, sizeof pk);
            }
            return ASKED;
        }
    } else if (!create) {
        if (!store_find_pair_key_by_ids(ks->store, me->id, peer->id, &pk)) {
            return NO_ANSWER;
        }
    } else {
        error = store_get_pair_key(ks->store, me->id, peer->id, sw->name,
                                   reason, &pk, &created);
        if (error) {
            VLOG_WARN_RL(&rl, "%s: %s", sw->name, error);
            free(error);
            return NO_ANSWER;
        }
    }
    if (created) {
        note_issued(ks, pk.pair_id, pk.version);
        VLOG_DBG("%s: issued key %"PRId64" for %s and %s (version %"
                 PRIu32")", sw->name, pk.pair_id, pk.id_a, pk.id_b,
                 pk.version);
    }
    key_from_pair(&key, &pk);
    store_key_wipe(&pk, sizeof pk);
    install_pair_flows(ks, me, peer, &key);
    key_wipe(&key);
    return ANSWERED;
}

/* Deletes every flow to or from 'mac' on every switch. */
static void
purge_mac(struct keyserver *ks, struct eth_addr mac)
{
    struct pk_switch *sw;

    LIST_FOR_EACH (sw, list_node, &ks->switches) {
        struct match match;

        if (!sw->have_dpid) {
            continue;
        }
        for (uint8_t table = TABLE_SEND; table <= TABLE_RECV; table++) {
            match_init_catchall(&match);
            match_set_dl_src(&match, mac);
            delete_flows(sw, table, &match);
            match_init_catchall(&match);
            match_set_dl_dst(&match, mac);
            delete_flows(sw, table, &match);
        }

        /* In table 0, only an outside host's presence flow and source
         * drops: a client's pass flow is the base pipeline's. */
        match_init_catchall(&match);
        match_set_dl_src(&match, mac);
        send_flow_mod(sw, OFPFC_DELETE, TABLE_PORTS, 0, &match, NULL,
                      PRESENCE_COOKIE, 0);
        send_flow_mod(sw, OFPFC_DELETE, TABLE_PORTS, 0, &match, NULL,
                      DROP_COOKIE, 0);
        switch_forget_pair_flows(sw);
    }
}

/* Outside hosts at their gateways.
 *
 * An outside host stays behind the gateway where it was first seen: its
 * frames at another gateway's port are dropped there (see
 * refuse_source() in request.c).  It leaves when the admin moves or
 * forgets it, or once it has been silent for 'outside_idle' seconds: its
 * presence flow at the clear port that serves it passes its frames like
 * the port's own flow and expires when idle, and the switch reports that
 * (flow removed, see process_flow_removed()). */

/* Installs the presence flow of outside host 'mac' at clear port 'port' of
 * 'sw' (again, if it is there: its idle time starts over). */
static void
install_presence(struct keyserver *ks, struct pk_switch *sw, ofp_port_t port,
                 struct eth_addr mac)
{
    struct ofpbuf ofpacts;
    struct match match;

    if (!ks->outside_idle) {
        return;
    }
    match_init_catchall(&match);
    match_set_in_port(&match, port);
    match_set_dl_src(&match, mac);
    ofpbuf_init(&ofpacts, 16);
    ofpact_put_GOTO_TABLE(&ofpacts)->table_id = TABLE_SEND;
    send_flow_mod__(sw, OFPFC_ADD, TABLE_PORTS, PRESENCE_PRIORITY, &match,
                    &ofpacts, PRESENCE_COOKIE, ks->outside_idle,
                    OFPUTIL_FF_SEND_FLOW_REM);
    ofpbuf_uninit(&ofpacts);
}

/* True if mark 'm' of 'sw' is the clear port that serves gateway 'm'
 * (a gateway's first port, where its outside hosts' frames go). */
static bool
serves_gateway(const struct keyserver *ks, const struct pk_switch *sw,
               const struct mark *m)
{
    ofp_port_t port;
    uint64_t dpid;

    return (m->role == MARK_CLEAR
            && marks_find_client(ks->marks, m->client_id, &dpid, &port)
            && dpid == sw->dpid && port == m->ofport);
}

/* Watches outside host 'mac' at the clear port of gateway 'gateway', if
 * its switch is connected. */
static void
watch_outside(struct keyserver *ks, const char *gateway, struct eth_addr mac)
{
    struct pk_switch *sw;
    ofp_port_t port;
    uint64_t dpid;

    if (marks_find_client(ks->marks, gateway, &dpid, &port)
        && (sw = find_switch(ks, dpid)) != NULL) {
        const struct mark *m = switch_find_mark(sw, port);

        if (m && serves_gateway(ks, sw, m)) {
            install_presence(ks, sw, port, mac);
        }
    }
}

/* Watches every outside host behind the gateway of clear port 'm' of 'sw',
 * if that port serves the gateway. */
static void
watch_gateway_hosts(struct keyserver *ks, struct pk_switch *sw,
                    const struct mark *m)
{
    struct store_outside *outs;
    size_t n;

    if (!ks->outside_idle || !serves_gateway(ks, sw, m)) {
        return;
    }
    store_list_outside(ks->store, &outs, &n);
    for (size_t i = 0; i < n; i++) {
        if (!strcmp(outs[i].gateway, m->client_id)) {
            install_presence(ks, sw, m->ofport, outs[i].mac);
        }
    }
    free(outs);
}

/* A flow of 'sw' was removed.  An outside host's presence flow that
 * expired means the host has been silent at its gateway for the idle
 * time: the key server forgets where it is. */
static void
process_flow_removed(struct keyserver *ks, struct pk_switch *sw,
                     const struct ofp_header *oh)
{
    struct ofputil_flow_removed fr;
    struct store_outside out;
    const struct mark *m;
    struct eth_addr mac;
    char *error;

    if (ofputil_decode_flow_removed(&fr, oh)
        || ntohll(fr.cookie) != PRESENCE_COOKIE
        || fr.reason != OFPRR_IDLE_TIMEOUT) {
        return;
    }
    mac = fr.match.flow.dl_src;
    m = switch_find_mark(sw, fr.match.flow.in_port.ofp_port);
    if (!m || !serves_gateway(ks, sw, m)) {
        return;
    }
    char *why = xasprintf("idle for %"PRIu16" s", fr.idle_timeout);
    error = store_forget_outside(ks->store, mac, m->client_id, why, &out);
    free(why);
    if (error) {
        /* Moved or forgotten meanwhile. */
        VLOG_DBG("%s: %s", sw->name, error);
        free(error);
        return;
    }
    VLOG_INFO("%s: outside host "ETH_ADDR_FMT" behind gateway %s was silent "
              "for %"PRIu16" s; forgotten", sw->name, ETH_ADDR_ARGS(mac),
              out.gateway, fr.idle_timeout);
    purge_mac(ks, mac);
}

/* Records outside host 'end->mac' behind gateway 'end->id', where it was
 * seen (or which serves it as the only gateway), and watches it there.
 * Flows that refused it earlier go.  Returns false on error. */
static bool
learn_outside(struct keyserver *ks, const struct pk_switch *sw,
              const struct store_client *end)
{
    bool changed;
    char *error = store_learn_outside(ks->store, end->mac, end->id,
                                      &changed);

    if (error) {
        VLOG_WARN_RL(&rl, "%s: %s", sw->name, error);
        free(error);
        return false;
    }
    if (changed) {
        VLOG_INFO("%s: outside host "ETH_ADDR_FMT" is behind gateway %s",
                  sw->name, ETH_ADDR_ARGS(end->mac), end->id);
        purge_mac(ks, end->mac);
    }
    watch_outside(ks, end->id, end->mac);
    return true;
}

/* The broadcasts of outside host 'mac', learned behind clear port 'port' of
 * 'sw', are flooded without a copy to the key server for a while. */
static void
install_learned_flood(struct pk_switch *sw, ofp_port_t port,
                      struct eth_addr mac)
{
    bool *member = switch_members(sw);
    size_t from = SIZE_MAX;
    struct ofpbuf ofpacts;
    struct match match;

    for (size_t k = 0; k < sw->n_marks; k++) {
        if (sw->marks[k].ofport == port) {
            from = k;
        }
    }
    ofpbuf_init(&ofpacts, 64);
    put_group_flood(&ofpacts, sw, member, from, switch_uplink(sw));
    match_init_catchall(&match);
    match_set_in_port(&match, port);
    match_set_dl_src(&match, mac);
    match_set_dl_dst_masked(&match, group_bit, group_bit);
    send_flow_mod(sw, OFPFC_ADD, TABLE_SEND, 220, &match, &ofpacts,
                  LEARN_COOKIE, LEARNED_IDLE_TIMEOUT);
    ofpbuf_uninit(&ofpacts);
    free(member);
}

/* Refuses the request 'req' made by the frame 'flow'. */
static void
refuse_request(struct keyserver *ks, struct pk_switch *sw,
               const struct request *req, uint8_t table_id,
               const struct flow *flow)
{
    if (req->conflict) {
        const struct mark *m = switch_find_mark(sw, flow->in_port.ofp_port);

        ks->n_refused++;
        ks->n_outside_conflicts++;
        VLOG_WARN_RL(&conflict_rl, "%s: outside host "ETH_ADDR_FMT" is "
                     "behind gateway %s but sends at gateway %s (port %s); "
                     "dropping its frames there", sw->name,
                     ETH_ADDR_ARGS(flow->dl_src), req->peer.id, req->me.id,
                     m ? m->iface : "?");
    } else if (req->quiet) {
        ks->n_refused++;
        VLOG_DBG_RL(&rl, "%s: ignored frame from "ETH_ADDR_FMT" to "
                    ETH_ADDR_FMT": %s", sw->name, ETH_ADDR_ARGS(flow->dl_src),
                    ETH_ADDR_ARGS(flow->dl_dst), req->why);
    } else {
        refuse(ks, sw, req->why, flow);
    }
    if (req->drop_source) {
        install_source_drop(sw, flow->in_port.ofp_port, flow->dl_src);
    } else if (req->drop_pair) {
        install_refusal(sw, table_id, flow->dl_src, flow->dl_dst);
    }
}

static struct request_ports
switch_ports(const struct pk_switch *sw)
{
    return (struct request_ports) {
        .marks = sw->marks, .macs = sw->macs, .n = sw->n_marks,
    };
}

/* A frame from a client port to a destination without a flow. */
static void
process_send_request(struct keyserver *ks, struct pk_switch *sw,
                     const struct ofputil_packet_in *pi,
                     const struct flow *flow)
{
    struct request_ports ports = switch_ports(sw);
    ofp_port_t in_port = flow->in_port.ofp_port;
    ofp_port_t peer_port;
    struct request req;
    uint64_t peer_dpid;

    request_judge_send(NULL, &ports, in_port, flow->dl_src, flow->dl_dst,
                       &req);
    if (req.verdict == REQUEST_PAIR
        && answer_from_memory(ks, sw, pi, TABLE_SEND, flow)) {
        return;
    }
    if (req.verdict == REQUEST_PAIR || req.verdict == REQUEST_LEARN) {
        request_judge_send(ks->store, &ports, in_port, flow->dl_src,
                           flow->dl_dst, &req);
    }
    if (req.verdict == REQUEST_REFUSE) {
        refuse_request(ks, sw, &req, TABLE_SEND, flow);
        return;
    } else if (req.verdict == REQUEST_IGNORE) {
        return;
    } else if (req.verdict == REQUEST_LEARN) {
        /* The host's broadcasts are flooded from now on, this one too
         * (whatever the miss policy: it is no key request). */
        if (learn_outside(ks, sw, &req.me)) {
            install_learned_flood(sw, in_port, req.me.mac);
            resubmit_packet(sw, pi, in_port, TABLE_SEND);
        }
        return;
    }

    if (req.learn != REQUEST_LEARN_NONE
        && !learn_outside(ks, sw, req.learn == REQUEST_LEARN_ME
                          ? &req.me : &req.peer)) {
        return;
    }

    if (marks_find_client(ks->marks, req.peer.id, &peer_dpid, &peer_port)
        && peer_dpid == sw->dpid) {
        install_local_flow(sw, &req.me, &req.peer, peer_port);
        install_local_flow(sw, &req.peer, &req.me, in_port);
    } else {
        enum answer answer = answer_request(ks, sw, &req.me, &req.peer,
                                            "send request", true);

        if (answer == ASKED) {
            park_packet(ks, sw, pi, flow, TABLE_SEND, req.me.id, req.peer.id);
            return;
        } else if (answer == NO_ANSWER) {
            /* Logged; a revoked pair, for example.  Not again for a
             * while. */
            install_refusal(sw, TABLE_SEND, flow->dl_src, flow->dl_dst);
            return;
        }
    }
    release_packet(ks, sw, pi, in_port, TABLE_SEND);
}

/* An encrypted frame from the uplink for a client here, from a source
 * without a flow. */
static void
process_recv_request(struct keyserver *ks, struct pk_switch *sw,
                     const struct ofputil_packet_in *pi,
                     const struct flow *flow)
{
    struct request_ports ports = switch_ports(sw);
    struct request req;

    request_judge_recv(NULL, &ports, flow->dl_src, flow->dl_dst, &req);
    if (req.verdict == REQUEST_PAIR) {
        if (answer_from_memory(ks, sw, pi, TABLE_RECV, flow)) {
            return;
        }
        request_judge_recv(ks->store, &ports, flow->dl_src, flow->dl_dst,
                           &req);
    }
    if (req.verdict != REQUEST_PAIR) {
        refuse_request(ks, sw, &req, TABLE_RECV, flow);
        return;
    }
    switch (answer_request(ks, sw, &req.me, &req.peer, "receive request",
                           false)) {
    case ANSWERED:
        release_packet(ks, sw, pi, flow->in_port.ofp_port, TABLE_RECV);
        break;
    case ASKED:
        park_packet(ks, sw, pi, flow, TABLE_RECV, req.me.id, req.peer.id);
        break;
    case NO_ANSWER:
    default:
        req.why = "no key for this pair yet";
        req.drop_pair = true;
        refuse_request(ks, sw, &req, TABLE_RECV, flow);
        break;
    }
}

/* Adds 'sa_id' to 'q', to rotate at the next run. */
static void
sa_queue_add(struct sa_queue *q, int64_t sa_id)
{
    for (size_t i = 0; i < q->n; i++) {
        if (q->ids[i] == sa_id) {
            return;
        }
    }
    if (q->n >= q->allocated) {
        q->ids = x2nrealloc(q->ids, &q->allocated, sizeof *q->ids);
    }
    q->ids[q->n++] = sa_id;
    poll_immediate_wake();
}

/* The key version in the header of encrypted frame 'pi', or 0. */
static uint32_t
frame_version(const struct ofputil_packet_in *pi)
{
    const uint8_t *p = pi->packet;

    return (pi->packet_len >= 20 && p[12] == 0x88 && p[13] == 0xb5
            ? ((uint32_t) p[16] << 24) | (p[17] << 16) | (p[18] << 8) | p[19]
            : 0);
}

/* True if pair end 'end' is behind a port of 'sw': a client marked there,
 * or a gateway one of whose ports is there. */
static bool
end_is_on_switch(const struct pk_switch *sw, const struct store_client *end)
{
    for (size_t i = 0; i < sw->n_marks; i++) {
        const struct mark *m = &sw->marks[i];

        if (m->client_id && !strcmp(m->client_id, end->id)
            && (end->gateway ? mark_is_gateway(m) : m->role == MARK_CLIENT)) {
            return true;
        }
    }
    return false;
}

/* A frame under a key version that this switch's SA does not hold.  Anyone
 * can put such a frame on the wire, with any source, destination and
 * version, so the report is only a hint, and nothing it leads to may
 * change what a switch does with the frames of a pair:
 *
 *   - A report that is not about a pair this switch serves, from its
 *     uplink, with a sender that is not on this switch, is ignored.
 *
 *   - If the frame carries the current version, this switch may lack it;
 *     if an older one, the sender's switch.  A holder that this process
 *     never gave the current version gets it (ensure_key(), which the
 *     datapath makes idempotent).  One that it did is only asked, at most
 *     once a second, whether it still holds it (NXCSM_VERIFY), over its own
 *     OpenFlow connection: only its answer that it lost the key leads to a
 *     new version (see key_lost()).  Never a delete, never the same
 *     version again. */
static void
process_version_report(struct keyserver *ks, struct pk_switch *sw,
                       const struct ofputil_packet_in *pi,
                       const struct flow *flow)
{
    struct request_ports ports = switch_ports(sw);
    const struct mark *uplink = switch_uplink(sw);
    uint32_t version = frame_version(pi);
    struct pk_switch *holder = NULL;
    struct store_pair_key pk;
    struct request req;
    struct key key;

    ks->n_reports++;
    request_judge_recv(ks->store, &ports, flow->dl_src, flow->dl_dst, &req);
    if (!uplink || flow->in_port.ofp_port != uplink->ofport
        || req.verdict != REQUEST_PAIR || end_is_on_switch(sw, &req.peer)
        || !store_find_pair_key_by_ids(ks->store, req.me.id, req.peer.id,
                                       &pk)) {
        ks->n_reports_ignored++;
        VLOG_DBG_RL(&rl, "%s: ignored version report for a frame from "
                    ETH_ADDR_FMT" to "ETH_ADDR_FMT" on port %"PRIu16,
                    sw->name, ETH_ADDR_ARGS(flow->dl_src),
                    ETH_ADDR_ARGS(flow->dl_dst),
                    ofp_to_u16(flow->in_port.ofp_port));
        return;
    }
    key_from_pair(&key, &pk);
    store_key_wipe(&pk, sizeof pk);

    if (version == key.version) {
        holder = sw;
    } else if (version < key.version) {
        ofp_port_t port;
        uint64_t dpid;

        /* 'peer' is the frame's source, the sender. */
        if (marks_find_client(ks->marks, req.peer.id, &dpid, &port)) {
            holder = find_switch(ks, dpid);
        }
    }

    struct sa_entry *e = holder ? switch_find_sa(holder, key.sa_id) : NULL;
    if (!holder || rollover_active(ks, key.sa_id)) {
        /* A version from the future is forged; a rollover is on its
         * way. */
        ks->n_reports_ignored++;
    } else if (!e || e->version != key.version) {
        ks->n_reports_repushed++;
        VLOG_INFO("%s: frame from "ETH_ADDR_FMT" under key version %"PRIu32
                  "; pushing version %"PRIu32" of key %"PRId64" to %s",
                  sw->name, ETH_ADDR_ARGS(flow->dl_src), version,
                  key.version, key.sa_id, holder->name);
        char *error = store_note_repush(ks->store, req.peer.id, req.me.id,
                                        key.version, key.bytes, holder->name,
                                        "version mismatch");
        if (error) {
            VLOG_WARN_RL(&rl, "%s: %s", sw->name, error);
            free(error);
        }
        if (is_member(ks)) {
            /* The authority knows the current version. */
            cascade_ask_pair(ks->cascade, req.me.id, req.peer.id, 0, false);
        } else {
            install_pair_flows(ks, &req.me, &req.peer, &key);
        }
    } else if (time_msec() < e->next_verify) {
        ks->n_reports_limited++;
    } else {
        ks->n_reports_verified++;
        e->next_verify = time_msec() + VERIFY_MSEC;
        verify_key(holder, &key);
    }
    key_wipe(&key);
}

/* 'sw' answered an NXCSM_VERIFY of version 'version' of key 'sa_id' with a
 * mismatch: it lost the key behind this process's back (an SA deleted or
 * replaced by hand).  That version may not reach it again, so the key rolls
 * over to a new one on every holder. */
static void
key_lost(struct keyserver *ks, struct pk_switch *sw, int64_t sa_id,
         uint32_t version)
{
    struct sa_entry *e = switch_find_sa(sw, sa_id);
    struct store_pair_key pk;

    if (!e || e->version != version || sa_id == GROUP_SA_ID
        || !store_find_pair_key(ks->store, sa_id, &pk)) {
        return;
    }
    ks->n_keys_lost++;
    VLOG_WARN("%s: lost version %"PRIu32" of key %"PRId64"; rotating it",
              sw->name, version, sa_id);
    if (is_member(ks)) {
        cascade_ask_pair(ks->cascade, pk.id_a, pk.id_b, version, false);
    } else if (!rollover_active(ks, sa_id)) {
        sa_queue_add(&ks->lost, sa_id);
    }
    store_key_wipe(&pk, sizeof pk);
}

/* A key version encrypted its soft limit of packets on 'sw': rotate it
 * before the switch stops encrypting with it.  The frame names the key: a
 * pair's by its two clients, the group key's by its group address. */
static void
process_limit_report(struct keyserver *ks, struct pk_switch *sw,
                     const struct flow *flow)
{
    int64_t sa_id;

    if (is_member(ks)) {
        return;         /* The authority's switches report it too. */
    }
    if (eth_addr_is_multicast(flow->dl_dst)) {
        sa_id = GROUP_SA_ID;
    } else {
        struct store_pair_key pk;
        struct request req;

        request_judge_report(ks->store, flow->dl_src, flow->dl_dst, &req);
        if (req.verdict != REQUEST_PAIR || !end_is_on_switch(sw, &req.me)
            || !store_find_pair_key_by_ids(ks->store, req.me.id,
                                           req.peer.id, &pk)) {
            return;
        }
        sa_id = pk.pair_id;
        store_key_wipe(&pk, sizeof pk);
    }
    if (!rollover_active(ks, sa_id)) {
        VLOG_INFO("%s: key %"PRId64" reached its packet limit; rotating",
                  sw->name, sa_id);
        sa_queue_add(&ks->limited, sa_id);
    }
}

static void
process_packet_in(struct keyserver *ks, struct pk_switch *sw,
                  const struct ofp_header *oh)
{
    struct ofputil_packet_in pi;
    struct dp_packet packet;
    struct flow flow;
    enum ofperr error;

    error = ofputil_decode_packet_in(oh, true, NULL, NULL, &pi, NULL, NULL,
                                     NULL);
    if (error) {
        VLOG_WARN_RL(&rl, "%s: bad packet-in: %s", sw->name,
                     ofperr_to_string(error));
        return;
    }
    dp_packet_use_const(&packet, pi.packet, pi.packet_len);
    flow_extract(&packet, &flow);
    flow.in_port.ofp_port = pi.flow_metadata.flow.in_port.ofp_port;

    ks->n_requests++;
    if (pi.cookie == htonll(NX_CRYPT_REPORT_COOKIE)) {
        process_version_report(ks, sw, &pi, &flow);
    } else if (pi.cookie == htonll(NX_CRYPT_LIMIT_COOKIE)) {
        process_limit_report(ks, sw, &flow);
    } else if (pi.table_id == TABLE_SEND) {
        process_send_request(ks, sw, &pi, &flow);
    } else if (pi.table_id == TABLE_RECV) {
        process_recv_request(ks, sw, &pi, &flow);
    }
}

static void
process_features_reply(struct keyserver *ks, struct pk_switch *sw,
                       const struct ofp_header *oh)
{
    struct ofputil_switch_features features;
    struct ofpbuf b = ofpbuf_const_initializer(oh, ntohs(oh->length));
    enum ofperr error = ofputil_pull_switch_features(&b, &features);

    if (error) {
        VLOG_WARN_RL(&rl, "%s: bad features reply: %s", sw->name,
                     ofperr_to_string(error));
        return;
    }
    sw->have_dpid = true;
    sw->dpid = features.datapath_id;
    VLOG_INFO("%s: connected, datapath id %016"PRIx64, sw->name, sw->dpid);
    switch_program(ks, sw);
    rollover_switch_back(ks, sw);

    /* The switch may hold flows of an earlier key server process that no
     * longer fit its marks (changed while no key server was there): see
     * process_flow_dump(). */
    struct ofputil_flow_stats_request fsr = {
        .aggregate = false,
        .out_port = OFPP_ANY,
        .out_group = OFPG_ANY,
        .table_id = 0xff,
    };
    match_init_catchall(&fsr.match);
    switch_send(sw, ofputil_encode_flow_stats_request(&fsr, sw->protocol));
}

/* True if 'fs', a flow found on 'sw', does not belong to what 'sw' should
 * hold now: a base flow of an earlier process that this one did not
 * install again (every base flow it wants was re-added, with its own
 * cookie, before the dump), the presence flow of a host no longer behind
 * that port, or any flow that outputs to a port that is not marked
 * (now). */
static bool
flow_is_stale(const struct pk_switch *sw, const struct ofputil_flow_stats *fs)
{
    uint64_t cookie = ntohll(fs->cookie);
    const struct ofpact *a;

    if ((cookie & BASE_COOKIE_MASK) == BASE_COOKIE) {
        return cookie != sw->ks->base_cookie;
    } else if (cookie == PRESENCE_COOKIE) {
        /* Still an outside host's, at the port that serves its gateway? */
        const struct mark *m = switch_find_mark(
            sw, fs->match.flow.in_port.ofp_port);
        struct store_outside out;

        return !(m && serves_gateway(sw->ks, sw, m)
                 && store_find_outside(sw->ks->store, fs->match.flow.dl_src,
                                       &out)
                 && !strcmp(out.gateway, m->client_id));
    }
    OFPACT_FOR_EACH_FLATTENED (a, fs->ofpacts, fs->ofpacts_len) {
        if (a->type == OFPACT_OUTPUT) {
            ofp_port_t port = ofpact_get_OUTPUT(a)->port;
            bool marked = false;

            for (size_t i = 0; i < sw->n_marks && !marked; i++) {
                marked = sw->marks[i].ofport == port;
            }
            if (!marked && ofp_to_u16(port) < ofp_to_u16(OFPP_MAX)) {
                return true;
            }
        }
    }
    return false;
}

/* A reply to the flow dump requested at connection: deletes the stale
 * flows. */
static void
process_flow_dump(struct pk_switch *sw, const struct ofp_header *oh)
{
    struct ofpbuf b = ofpbuf_const_initializer(oh, ntohs(oh->length));
    struct ofpbuf ofpacts;

    ofpbuf_init(&ofpacts, 64);
    for (;;) {
        struct ofputil_flow_stats fs;
        int retval = ofputil_decode_flow_stats_reply(&fs, &b, false,
                                                     &ofpacts);
        if (retval) {
            if (retval != EOF) {
                VLOG_WARN_RL(&rl, "%s: bad flow dump: %s", sw->name,
                             ofperr_to_string(retval));
            }
            break;
        }
        if (flow_is_stale(sw, &fs)) {
            VLOG_INFO_RL(&rl, "%s: deleting a flow that no longer fits the "
                         "port marks (table %"PRIu8", priority %"PRIu16")",
                         sw->name, fs.table_id, fs.priority);
            send_flow_mod(sw, OFPFC_DELETE_STRICT, fs.table_id, fs.priority,
                          &fs.match, NULL, ntohll(fs.cookie), 0);
        }
    }
    ofpbuf_uninit(&ofpacts);
}

/* An error from 'sw'.  Errors about an SA the switch does not have answer
 * deletes of SAs it may never have had, and are expected; an answer to
 * NXCSM_VERIFY says the switch lost a key. */
static void
process_error(struct keyserver *ks, struct pk_switch *sw,
              const struct ofp_header *oh)
{
    struct ofputil_crypt_sa_mod mod;
    struct ofpbuf payload;
    enum ofperr error = ofperr_decode_msg(oh, &payload);
    enum ofpraw raw;

    const struct ofp_header *echo = payload.data;

    if ((error == OFPERR_NXCSM_KEY_MISMATCH
         || error == OFPERR_NXCSM_UNKNOWN_SA)
        && payload.size >= sizeof *echo
        && payload.size >= ntohs(echo->length)
        && !ofpraw_decode(&raw, echo)
        && raw == OFPRAW_NXT_CRYPT_SA_MOD
        && !ofputil_decode_crypt_sa_mod(echo, &mod)
        && mod.command == NXCSM_VERIFY) {
        key_lost(ks, sw, mod.sa_id, mod.key_version);
        return;
    }

    /* The printer never shows key bytes. */
    char *s = ofp_to_string(oh, ntohs(oh->length), NULL, NULL, 1);
    if (error == OFPERR_NXCSM_UNKNOWN_SA
        || error == OFPERR_OFPMMFC_METER_EXISTS) {
        VLOG_DBG_RL(&rl, "%s: switch reported: %s", sw->name, s);
    } else {
        VLOG_WARN_RL(&rl, "%s: switch reported: %s", sw->name, s);
    }
    free(s);
}

static void
switch_process_msg(struct keyserver *ks, struct pk_switch *sw,
                   const struct ofpbuf *msg)
{
    const struct ofp_header *oh = msg->data;
    enum ofptype type;

    if (ofptype_decode(&type, oh)) {
        return;
    }
    if (type == OFPTYPE_ECHO_REQUEST) {
        switch_send(sw, ofputil_encode_echo_reply(oh));
    } else if (type == OFPTYPE_FLOW_STATS_REPLY) {
        if (sw->have_dpid) {
            process_flow_dump(sw, oh);
        }
    } else if (type == OFPTYPE_FEATURES_REPLY) {
        process_features_reply(ks, sw, oh);
    } else if (type == OFPTYPE_BARRIER_REPLY) {
        rollover_barrier_reply(ks, sw, oh->xid);
    } else if (type == OFPTYPE_FLOW_REMOVED) {
        if (sw->have_dpid) {
            process_flow_removed(ks, sw, oh);
        }
    } else if (type == OFPTYPE_PACKET_IN) {
        if (sw->have_dpid) {
            process_packet_in(ks, sw, oh);
        }
    } else if (type == OFPTYPE_ERROR) {
        process_error(ks, sw, oh);
    }
}

static void
switch_run(struct keyserver *ks, struct pk_switch *sw)
{
    unsigned int prev_seqno = rconn_get_connection_seqno(sw->rconn);

    rconn_run(sw->rconn);
    if (rconn_is_connected(sw->rconn)
        && prev_seqno != rconn_get_connection_seqno(sw->rconn)) {
        /* The handshake: OpenFlow 1.3+ protocol, then features. */
        sw->protocol = ofputil_protocol_from_ofp_version(
            rconn_get_version(sw->rconn));
        switch_send(sw, ofpraw_alloc(OFPRAW_OFPT_FEATURES_REQUEST,
                                     rconn_get_version(sw->rconn), 0));
    }

    for (int i = 0; i < 50; i++) {
        struct ofpbuf *msg = rconn_recv(sw->rconn);
        if (!msg) {
            break;
        }
        switch_process_msg(ks, sw, msg);
        ofpbuf_delete(msg);
    }
}

void
keyserver_run(struct keyserver *ks)
{
    struct pk_switch *sw;
    bool reprogram = false;
    char *error;

    unpark(ks, NULL, NULL, false);     /* Those that waited too long. */
    rollover_run(ks);
    if (marks_seqno(ks->marks) != ks->marks_seqno || ks->reprogram) {
        ks->marks_seqno = marks_seqno(ks->marks);
        ks->reprogram = false;
        reprogram = true;
    }

    store_batch_begin(ks->store);
    ks->batching = true;
    LIST_FOR_EACH_SAFE (sw, list_node, &ks->switches) {
        switch_run(ks, sw);
        if (!rconn_is_alive(sw->rconn)) {
            VLOG_INFO("%s: disconnected", sw->name);
            ovs_list_remove(&sw->list_node);
            rollover_forget_switch(ks, sw);
            switch_destroy(sw);
        } else if (reprogram && sw->have_dpid) {
            switch_program(ks, sw);
        }
    }
    ks->batching = false;

    error = store_batch_commit(ks->store);
    bool failed = error != NULL;
    if (failed) {
        /* Nothing of this batch may reach a switch.  What this process
         * believes the switches hold is now wrong: start them over. */
        VLOG_ERR("%s; reconnecting every switch", error);
        free(error);
    }
    LIST_FOR_EACH (sw, list_node, &ks->switches) {
        switch_flush(sw, failed);
        if (failed) {
            rconn_reconnect(sw->rconn);
        }
    }
}

void
keyserver_wait(struct keyserver *ks)
{
    struct pk_switch *sw;

    LIST_FOR_EACH (sw, list_node, &ks->switches) {
        rconn_run_wait(sw->rconn);
        rconn_recv_wait(sw->rconn);
    }
    if (!ovs_list_is_empty(&ks->parked)) {
        const struct parked *p = CONTAINER_OF(ovs_list_front(&ks->parked),
                                              struct parked, list_node);

        poll_timer_wait_until(p->expires);
    }
    const struct rollover *r;
    LIST_FOR_EACH (r, list_node, &ks->rollovers) {
        poll_timer_wait_until(r->deadline);
    }
    if (ks->rekey_msec) {
        poll_timer_wait_until(ks->next_rekey);
    }
}

void
keyserver_client_added(struct keyserver *ks, struct eth_addr mac)
{
    struct pk_switch *sw;

    /* It may have been an outside host, with flows through a gateway.  The
     * purge goes first: it would also delete the base flows that the
     * programming below gives the new client. */
    purge_mac(ks, mac);

    LIST_FOR_EACH (sw, list_node, &ks->switches) {
        if (sw->have_dpid) {
            switch_program(ks, sw);
        }
    }
}

void
keyserver_outside_changed(struct keyserver *ks, struct eth_addr mac)
{
    struct store_outside out;

    purge_mac(ks, mac);
    if (store_find_outside(ks->store, mac, &out)) {
        watch_outside(ks, out.gateway, mac);
    }
}

void
keyserver_set_outside_idle(struct keyserver *ks, unsigned int seconds)
{
    ks->outside_idle = seconds;
}

void
keyserver_pair_revoked(struct keyserver *ks, int64_t pair_id)
{
    struct pk_switch *sw;

    LIST_FOR_EACH (sw, list_node, &ks->switches) {
        struct match match;

        if (!sw->have_dpid) {
            continue;
        }
        match_init_catchall(&match);
        for (uint8_t table = TABLE_SEND; table <= TABLE_RECV; table++) {
            send_flow_mod(sw, OFPFC_DELETE, table, 0, &match, NULL, pair_id,
                          0);
        }
        delete_key(sw, pair_id);
        switch_forget_pair_flows(sw);
    }
    forget_keys(ks, &pair_id, 1);
}

void
keyserver_set_peers(struct keyserver *ks, struct peers *peers)
{
    ks->peers = peers;
}

void
keyserver_netkeys_changed(struct keyserver *ks)
{
    ks->reprogram = true;
    poll_immediate_wake();
}

void
keyserver_client_removed(struct keyserver *ks, struct eth_addr mac,
                         const int64_t *pair_ids, size_t n)
{
    struct pk_switch *sw;

    /* Its port's pass flow goes with the base pipeline, then every flow to
     * or from it, then its keys. */
    LIST_FOR_EACH (sw, list_node, &ks->switches) {
        if (sw->have_dpid) {
            switch_program(ks, sw);
        }
    }
    purge_mac(ks, mac);
    LIST_FOR_EACH (sw, list_node, &ks->switches) {
        if (sw->have_dpid) {
            for (size_t i = 0; i < n; i++) {
                delete_key(sw, pair_ids[i]);
            }
        }
    }
    forget_keys(ks, pair_ids, n);
}

void
keyserver_format_status(const struct keyserver *ks, struct ds *s)
{
    const struct pk_switch *sw;

    ds_put_format(s, "clients: %"PRIuSIZE"\n",
                  store_count_clients(ks->store));
    ds_put_format(s, "pair keys: %"PRIuSIZE"\n",
                  store_count_pair_keys(ks->store));
    ds_put_format(s, "miss policy: %s\n",
                  ks->miss_policy == MISS_HOLD ? "hold" : "drop");
    ds_put_format(s, "key requests: %"PRIu64" (%"PRIu64" refused)\n",
                  ks->n_requests, ks->n_refused);
    ds_put_format(s, "repeated requests answered from memory: %"PRIu64"\n",
                  ks->n_repeated);
    ds_put_format(s, "outside conflicts: %"PRIu64"\n",
                  ks->n_outside_conflicts);
    ds_put_format(s, "key versions issued: %"PRIu64"\n", ks->n_keys_issued);
    ds_put_format(s, "version reports: %"PRIu64" (%"PRIu64" ignored, %"
                  PRIu64" re-pushed, %"PRIu64" verified, %"PRIu64
                  " rate-limited)\n", ks->n_reports, ks->n_reports_ignored,
                  ks->n_reports_repushed, ks->n_reports_verified,
                  ks->n_reports_limited);
    ds_put_format(s, "keys lost by a switch: %"PRIu64"\n", ks->n_keys_lost);
    ds_put_format(s, "keys rolling over: %"PRIuSIZE"\n", n_rolling(ks));
    ds_put_format(s, "refused marks: %"PRIuSIZE"\n",
                  marks_n_refused(ks->marks));
    marks_format_refused(ks->marks, s);
    ds_put_cstr(s, "switches:\n");
    LIST_FOR_EACH (sw, list_node, &ks->switches) {
        ds_put_format(s, "  %s: %s", sw->name,
                      rconn_is_connected(sw->rconn) ? "connected"
                      : "not connected");
        if (sw->have_dpid) {
            size_t n_clients = 0, n_uplinks = 0, n_clear = 0;

            for (size_t i = 0; i < sw->n_marks; i++) {
                switch (sw->marks[i].role) {
                case MARK_CLIENT:
                    n_clients++;
                    break;
                case MARK_UPLINK:
                    n_uplinks++;
                    break;
                case MARK_CLEAR:
                case MARK_INTER:
                    n_clear++;
                    break;
                }
            }
            ds_put_format(s, ", dpid %016"PRIx64", %"PRIuSIZE" client "
                          "ports, %"PRIuSIZE" uplinks, ", sw->dpid, n_clients,
                          n_uplinks);
            if (n_clear) {
                ds_put_format(s, "%"PRIuSIZE" gateway ports, ", n_clear);
            }
            ds_put_format(s, "%"PRIuSIZE" keys", hmap_count(&sw->sas));
        }
        ds_put_char(s, '\n');
    }
}

/* Cascades (cascade.h). */

void
keyserver_set_cascade(struct keyserver *ks, struct cascade *cascade)
{
    ks->cascade = cascade;
}

/* A member's bridge may have held the current version of SA 'sa_id': a new
 * one for every holder, ours included, stored in '*version' and 'bytes'. */
static char *
rotate_for_member(struct keyserver *ks, int64_t sa_id, uint32_t *version,
                  uint8_t bytes[STORE_KEY_LEN])
{
    struct key key;

    if (!rotate_key(ks, NULL, sa_id, "member asked", &key)) {
        return xstrdup("rotation failed");
    }
    push_key(ks, &key, NULL);
    *version = key.version;
    memcpy(bytes, key.bytes, STORE_KEY_LEN);
    key_wipe(&key);
    return NULL;
}

char *
keyserver_obtain_pair(struct keyserver *ks, const char *a, const char *b,
                      uint32_t above, bool create, const char *member,
                      struct store_pair_key *pk)
{
    bool created = false;
    char *error = NULL;

    if (!create) {
        if (!store_find_pair_key_by_ids(ks->store, a, b, pk)) {
            return xstrdup("no key for this pair");
        }
    } else {
        error = store_get_pair_key(ks->store, a, b, member, "member request",
                                   pk, &created);
        if (error) {
            return error;
        }
    }
    if (created) {
        note_issued(ks, pk->pair_id, pk->version);
    } else if (pk->version <= above) {
        error = rotate_for_member(ks, pk->pair_id, &pk->version, pk->key);
        if (error) {
            store_key_wipe(pk, sizeof *pk);
        }
    }
    return error;
}

char *
keyserver_obtain_group(struct keyserver *ks, uint32_t above,
                       struct store_group_key *gk)
{
    char *error = store_get_group_key(ks->store, gk);

    if (!error && gk->version <= above) {
        error = rotate_for_member(ks, GROUP_SA_ID, &gk->version, gk->key);
        if (error) {
            store_key_wipe(gk, sizeof *gk);
        }
    }
    return error;
}

/* Releases, or with 'refuse' drops for a while, the frames parked for
 * pair ('a', 'b'); with null 'a', those that waited too long. */
static void
unpark(struct keyserver *ks, const char *a, const char *b, bool refuse)
{
    long long int now = time_msec();
    struct parked *p;

    LIST_FOR_EACH_SAFE (p, list_node, &ks->parked) {
        struct pk_switch *sw;

        if (a ? !parked_for(p, a, b) : p->expires > now) {
            continue;
        }
        sw = find_switch(ks, p->dpid);
        if (sw && a && refuse) {
            install_refusal(sw, p->table_id, p->src, p->dst);
        } else if (sw && a) {
            struct ofputil_packet_in pi = {
                .packet = p->packet,
                .packet_len = p->len,
            };

            release_packet(ks, sw, &pi, p->in_port, p->table_id);
        }
        parked_free(ks, p);
    }
}

void
keyserver_pair_obtained(struct keyserver *ks, const char *a, const char *b)
{
    struct store_client ca, cb;
    struct store_pair_key pk;

    if (!store_find_pair_key_by_ids(ks->store, a, b, &pk)) {
        return;
    }
    note_issued(ks, pk.pair_id, pk.version);
    if (store_find_client_by_id(ks->store, a, &ca)
        && store_find_client_by_id(ks->store, b, &cb)) {
        struct key key;

        key_from_pair(&key, &pk);
        install_pair_flows(ks, &ca, &cb, &key);
        key_wipe(&key);
    }
    store_key_wipe(&pk, sizeof pk);
    unpark(ks, a, b, false);
}

void
keyserver_pair_refused(struct keyserver *ks, const char *a, const char *b)
{
    unpark(ks, a, b, true);
}

void
keyserver_group_obtained(struct keyserver *ks)
{
    struct store_group_key gk;
    char *error = store_get_group_key(ks->store, &gk);

    if (error) {
        free(error);
        return;
    }
    note_issued(ks, GROUP_SA_ID, gk.version);
    store_key_wipe(&gk, sizeof gk);
    ks->reprogram = true;
    poll_immediate_wake();
}

/* Rolling keys over. */

static size_t
n_rolling(const struct keyserver *ks)
{
    const struct rollover *r;
    size_t n = 0;

    LIST_FOR_EACH (r, list_node, &ks->rollovers) {
        n += r->n_keys;
    }
    return n;
}

static bool
rollover_active(const struct keyserver *ks, int64_t sa_id)
{
    const struct rollover *r;

    LIST_FOR_EACH (r, list_node, &ks->rollovers) {
        for (size_t i = 0; i < r->n_keys; i++) {
            if (r->keys[i].sa_id == sa_id) {
                return true;
            }
        }
    }
    return false;
}

/* Second phase: every holder now decrypts the new versions; make them
 * encrypt with them too. */
static void
rollover_finish(struct keyserver *ks, struct rollover *r)
{
    struct pk_switch *sw;

    ovs_list_remove(&r->list_node);
    LIST_FOR_EACH (sw, list_node, &ks->switches) {
        if (!sw->have_dpid || !rconn_is_connected(sw->rconn)) {
            continue;
        }
        for (size_t i = 0; i < r->n_keys; i++) {
            const struct key *k = &r->keys[i];
            const struct held *h = find_held(ks, sw->dpid, k->sa_id);

            /* A holder, or one that got the version for receiving on this
             * connection (after coming back). */
            if (switch_find_sa(sw, k->sa_id)
                || (h && h->version == k->version
                    && h->conn_seq == sw->conn_seq)) {
                install_key(ks, sw, k);
            }
        }
    }
    for (size_t i = 0; i < r->n_keys; i++) {
        key_wipe(&r->keys[i]);
    }
    free(r->keys);
    free(r->waits);
    free(r->absent);
    free(r);
}

static bool
rollover_has_key(const struct rollover *r, int64_t sa_id)
{
    for (size_t i = 0; i < r->n_keys; i++) {
        if (r->keys[i].sa_id == sa_id) {
            return true;
        }
    }
    return false;
}

static void
rollover_add_absent(struct rollover *r, uint64_t dpid)
{
    for (size_t i = 0; i < r->n_absent; i++) {
        if (r->absent[i] == dpid) {
            return;
        }
    }
    r->absent = xrealloc(r->absent, (r->n_absent + 1) * sizeof *r->absent);
    r->absent[r->n_absent++] = dpid;
    r->deadline = time_msec() + ROLLOVER_ABSENT_MSEC;
}

/* Sends 'sw' the new version of each key of 'r' that it holds ('held' by
 * its datapath id) for receiving only, and a barrier to wait for. */
static void
rollover_send_rx(struct keyserver *ks, struct rollover *r,
                 struct pk_switch *sw)
{
    bool holder = false;

    for (size_t i = 0; i < r->n_keys; i++) {
        if (switch_find_sa(sw, r->keys[i].sa_id)
            || find_held(ks, sw->dpid, r->keys[i].sa_id)) {
            send_key(ks, sw, &r->keys[i], NXCSM_ADD_RX);
            holder = true;
        }
    }
    if (holder) {
        struct ofpbuf *barrier = ofputil_encode_barrier_request(
            rconn_get_version(sw->rconn));

        r->waits = xrealloc(r->waits, (r->n_waits + 1) * sizeof *r->waits);
        r->waits[r->n_waits].sw = sw;
        r->waits[r->n_waits].xid = ((struct ofp_header *)
                                    barrier->data)->xid;
        r->n_waits++;
        switch_send(sw, barrier);
    }
}

/* Starts rolling keys 'sa_ids' over to new versions (audited with
 * 'reason').  Keys already being rolled over are left alone.  Returns the
 * number of keys rolled over. */
static size_t
rollover_start(struct keyserver *ks, const int64_t *sa_ids, size_t n,
               const char *reason)
{
    struct rollover *r = xzalloc(sizeof *r);
    struct pk_switch *sw;
    size_t n_keys;
    char *error;

    /* One transaction for all: a durable new version before any switch
     * sees it, and one fsync however many keys. */
    r->keys = xcalloc(n ? n : 1, sizeof *r->keys);
    store_batch_begin(ks->store);
    for (size_t i = 0; i < n; i++) {
        if (!rollover_active(ks, sa_ids[i])
            && rotate_key(ks, NULL, sa_ids[i], reason,
                          &r->keys[r->n_keys])) {
            r->n_keys++;
        }
    }
    error = store_batch_commit(ks->store);
    if (error) {
        VLOG_ERR("rotating %"PRIuSIZE" keys: %s", n, error);
        free(error);
        r->n_keys = 0;
    }
    n_keys = r->n_keys;
    ovs_list_push_back(&ks->rollovers, &r->list_node);
    r->deadline = time_msec() + ROLLOVER_MSEC;

    /* First phase: every holder decrypts the new versions. */
    LIST_FOR_EACH (sw, list_node, &ks->switches) {
        if (sw->have_dpid && rconn_is_connected(sw->rconn)) {
            rollover_send_rx(ks, r, sw);
        }
    }

    /* Holders that are away get theirs when they come back. */
    if (r->n_keys) {
        const struct held *h;

        HMAP_FOR_EACH (h, node, &ks->held) {
            struct pk_switch *there = find_switch(ks, h->dpid);

            if ((!there || !rconn_is_connected(there->rconn))
                && rollover_has_key(r, h->sa_id)) {
                rollover_add_absent(r, h->dpid);
            }
        }
    }
    if (!r->n_waits && !r->n_absent) {
        rollover_finish(ks, r);
    }
    return n_keys;
}

/* 'sw' is back: the rollovers that waited for it go on with it. */
static void
rollover_switch_back(struct keyserver *ks, struct pk_switch *sw)
{
    struct rollover *r;

    LIST_FOR_EACH (r, list_node, &ks->rollovers) {
        for (size_t i = 0; i < r->n_absent; i++) {
            if (r->absent[i] == sw->dpid) {
                r->absent[i] = r->absent[--r->n_absent];
                rollover_send_rx(ks, r, sw);
                break;
            }
        }
    }
}

static void
rollover_barrier_reply(struct keyserver *ks, struct pk_switch *sw,
                       ovs_be32 xid)
{
    struct rollover *r;

    LIST_FOR_EACH_SAFE (r, list_node, &ks->rollovers) {
        for (size_t i = 0; i < r->n_waits; i++) {
            if (r->waits[i].sw == sw && r->waits[i].xid == xid) {
                r->waits[i] = r->waits[--r->n_waits];
                if (!r->n_waits && !r->n_absent) {
                    rollover_finish(ks, r);
                }
                return;
            }
        }
    }
}

/* 'sw' goes away: the rollovers that waited for its confirmation wait for
 * it to come back instead. */
static void
rollover_forget_switch(struct keyserver *ks, struct pk_switch *sw)
{
    struct rollover *r;

    LIST_FOR_EACH (r, list_node, &ks->rollovers) {
        for (size_t i = 0; i < r->n_waits; i++) {
            if (r->waits[i].sw == sw) {
                r->waits[i--] = r->waits[--r->n_waits];
                if (sw->have_dpid) {
                    rollover_add_absent(r, sw->dpid);
                }
            }
        }
    }
}

/* Rollovers whose holders did not all answer in time finish anyway (a
 * holder that did not confirm gets the new version in the same order on
 * its connection); keys older than the rekey interval roll over. */
static void
rollover_run(struct keyserver *ks)
{
    long long int now = time_msec();
    struct rollover *r;

    if (ks->limited.n) {
        rollover_start(ks, ks->limited.ids, ks->limited.n, "packet limit");
        ks->limited.n = 0;
    }
    if (ks->lost.n) {
        rollover_start(ks, ks->lost.ids, ks->lost.n, "lost version");
        ks->lost.n = 0;
    }

    LIST_FOR_EACH_SAFE (r, list_node, &ks->rollovers) {
        if (now >= r->deadline) {
            VLOG_WARN("rollover of %"PRIuSIZE" keys: %"PRIuSIZE" switches "
                      "did not confirm in time, %"PRIuSIZE" did not come "
                      "back", r->n_keys, r->n_waits, r->n_absent);
            rollover_finish(ks, r);
        }
    }

    if (ks->rekey_msec && now >= ks->next_rekey && !is_member(ks)) {
        long long int wall = time_wall_msec();
        struct store_pair_key *keys;
        struct store_group_key gk;
        int64_t *ids = NULL;
        size_t n, n_ids = 0;
        char *error;

        ks->next_rekey = now + MAX(ks->rekey_msec / 10, 1000);
        store_list_pair_keys(ks->store, NULL, &keys, &n);
        ids = xmalloc((n + 1) * sizeof *ids);
        for (size_t i = 0; i < n; i++) {
            if (wall - keys[i].updated >= ks->rekey_msec) {
                ids[n_ids++] = keys[i].pair_id;
            }
            store_key_wipe(&keys[i], sizeof keys[i]);
        }
        free(keys);
        error = store_get_group_key(ks->store, &gk);
        if (!error && wall - gk.updated >= ks->rekey_msec) {
            ids[n_ids++] = GROUP_SA_ID;
        }
        if (!error) {
            store_key_wipe(&gk, sizeof gk);
        }
        free(error);
        if (n_ids) {
            rollover_start(ks, ids, n_ids, "rekey interval");
        }
        free(ids);
    }
}

void
keyserver_set_request_rate(struct keyserver *ks, unsigned int pps)
{
    ks->request_rate = pps;
}

void
keyserver_set_rekey_interval(struct keyserver *ks, long long int msec)
{
    ks->rekey_msec = msec;
    ks->next_rekey = time_msec();
}

char *
keyserver_rotate_pair(struct keyserver *ks, const char *a, const char *b,
                      struct ds *out)
{
    struct store_pair_key pk;
    int64_t id;

    if (is_member(ks)) {
        return xasprintf("keys are rotated by the authority '%s'",
                         cascade_authority(ks->cascade));
    }
    if (!store_find_pair_key_by_ids(ks->store, a, b, &pk)) {
        return xstrdup("no key for this pair");
    }
    id = pk.pair_id;
    store_key_wipe(&pk, sizeof pk);
    if (rollover_active(ks, id)) {
        return xasprintf("key %"PRId64" is being rotated already", id);
    }
    if (!rollover_start(ks, &id, 1, "rotate-key")) {
        return xasprintf("rotating key %"PRId64" failed", id);
    }
    store_find_pair_key(ks->store, id, &pk);
    ds_put_format(out, "key %"PRId64" version %"PRIu32"\n", id, pk.version);
    store_key_wipe(&pk, sizeof pk);
    return NULL;
}

char *
keyserver_rotate_all(struct keyserver *ks, struct ds *out)
{
    struct store_pair_key *keys;
    int64_t *ids;
    size_t n, n_rotated;

    if (is_member(ks)) {
        return xasprintf("keys are rotated by the authority '%s'",
                         cascade_authority(ks->cascade));
    }
    store_list_pair_keys(ks->store, NULL, &keys, &n);
    ids = xmalloc((n + 1) * sizeof *ids);
    for (size_t i = 0; i < n; i++) {
        ids[i] = keys[i].pair_id;
        store_key_wipe(&keys[i], sizeof keys[i]);
    }
    free(keys);
    n_rotated = rollover_start(ks, ids, n, "rotate-key --all");
    free(ids);
    ds_put_format(out, "%"PRIuSIZE" keys rotated\n", n_rotated);
    return NULL;
}

char *
keyserver_rotate_group(struct keyserver *ks, struct ds *out)
{
    int64_t id = GROUP_SA_ID;
    struct store_group_key gk;
    char *error;

    if (is_member(ks)) {
        return xasprintf("keys are rotated by the authority '%s'",
                         cascade_authority(ks->cascade));
    }
    if (rollover_active(ks, id)) {
        return xstrdup("the group key is being rotated already");
    }
    if (!rollover_start(ks, &id, 1, "rotate-group")) {
        return xstrdup("rotating the group key failed");
    }
    error = store_get_group_key(ks->store, &gk);
    if (!error) {
        ds_put_format(out, "group key version %"PRIu32"\n", gk.version);
        store_key_wipe(&gk, sizeof gk);
    }
    return error;
}
