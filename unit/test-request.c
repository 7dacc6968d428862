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

/* Unit tests for controller/request.c: which key requests the key server
 * answers, for whom, and which it refuses, judged against a real store (an
 * SQLite file in a temporary directory) and a switch's port marks, with no
 * network. */

#include <config.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "flow.h"
#include "marks.h"
#include "openvswitch/vlog.h"
#include "packets.h"
#include "request.h"
#include "store.h"
#include "util.h"

static char tmpdir[64];
static char db_path[128];

#define UPLINK_PORT 1
#define ALICE_PORT 2
#define BOB_PORT 3
#define GHOST_PORT 4            /* Marked for a client never enrolled. */
#define CLEAR_PORT 5
#define UNMARKED_PORT 9

static struct eth_addr
mac_n(uint8_t n)
{
    struct eth_addr mac = ETH_ADDR_C(02, 00, 00, 00, 00, 00);

    mac.ea[5] = n;
    return mac;
}

#define ALICE mac_n(1)
#define BOB mac_n(2)
#define CAROL mac_n(3)          /* Enrolled, on another switch. */
#define STRANGER mac_n(99)      /* Not enrolled. */
#define BROADCAST eth_addr_broadcast

/* One switch: the uplink, alice and bob (both enrolled) and a mark for
 * "ghost", who is not. */
struct fixture {
    struct store *store;
    struct mark marks[4];
    struct eth_addr macs[4];
    struct request_ports ports;
};

static void
ok(char *error)
{
    if (error) {
        fail_msg("%s", error);
    }
}

static int
setup(void **state)
{
    static const struct {
        enum mark_role role;
        ofp_port_t ofport;
        const char *id;
    } layout[4] = {
        { MARK_UPLINK, UPLINK_PORT, NULL },
        { MARK_CLIENT, ALICE_PORT, "alice" },
        { MARK_CLIENT, BOB_PORT, "bob" },
        { MARK_CLIENT, GHOST_PORT, "ghost" },
    };
    struct fixture *f = xzalloc(sizeof *f);

    ok(store_open(db_path, &f->store));
    ok(store_add_client(f->store, "alice", ALICE));
    ok(store_add_client(f->store, "bob", BOB));
    ok(store_add_client(f->store, "carol", CAROL));
    for (size_t i = 0; i < 4; i++) {
        struct store_client c;

        f->marks[i].role = layout[i].role;
        f->marks[i].ofport = layout[i].ofport;
        f->marks[i].client_id = CONST_CAST(char *, layout[i].id);
        f->macs[i] = (layout[i].id
                      && store_find_client_by_id(f->store, layout[i].id, &c)
                      ? c.mac : eth_addr_zero);
    }
    f->ports = (struct request_ports) {
        .marks = f->marks, .macs = f->macs, .n = 4,
    };
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *f = *state;
    static const char *suffixes[] = { "", "-wal", "-shm" };

    store_close(f->store);
    for (size_t i = 0; i < ARRAY_SIZE(suffixes); i++) {
        char *p = xasprintf("%s%s", db_path, suffixes[i]);
        unlink(p);
        free(p);
    }
    free(f);
    return 0;
}

static void
expect_refused(const struct request *req, const char *why, bool drop_pair)
{
    assert_int_equal(req->verdict, REQUEST_REFUSE);
    assert_string_equal(req->why, why);
    assert_int_equal(req->drop_pair, drop_pair);
}

static void
expect_pair(const struct request *req, const char *me, struct eth_addr me_mac,
            ofp_port_t me_port, const char *peer, struct eth_addr peer_mac,
            bool create)
{
    assert_int_equal(req->verdict, REQUEST_PAIR);
    assert_string_equal(req->me.id, me);
    assert_true(eth_addr_equals(req->me.mac, me_mac));
    assert_int_equal(ofp_to_u16(req->me_port), ofp_to_u16(me_port));
    assert_string_equal(req->peer.id, peer);
    assert_true(eth_addr_equals(req->peer.mac, peer_mac));
    assert_int_equal(req->create, create);
}

/* The sender's side: alice's port asks for carol (another switch) and for
 * bob (this switch): answered, key created on demand. */
static void
test_send_answered(void **state)
{
    struct fixture *f = *state;
    struct request req;

    request_judge_send(f->store, &f->ports, ALICE_PORT, ALICE, CAROL, &req);
    expect_pair(&req, "alice", ALICE, ALICE_PORT, "carol", CAROL, true);
    request_judge_send(f->store, &f->ports, BOB_PORT, BOB, ALICE, &req);
    expect_pair(&req, "bob", BOB, BOB_PORT, "alice", ALICE, true);

    /* Without the store, only the port and the source are judged. */
    request_judge_send(NULL, &f->ports, ALICE_PORT, ALICE, STRANGER, &req);
    expect_pair(&req, "alice", ALICE, ALICE_PORT, "", eth_addr_zero, true);
}

/* A port speaks only as its enrolled client (property 3). */
static void
test_send_refused(void **state)
{
    struct fixture *f = *state;
    struct request req;

    for (int with_store = 0; with_store < 2; with_store++) {
        struct store *store = with_store ? f->store : NULL;

        /* Another client's MAC on alice's port: bob's, carol's, a
         * stranger's. */
        request_judge_send(store, &f->ports, ALICE_PORT, BOB, CAROL, &req);
        expect_refused(&req, "source is not the port's enrolled client",
                       false);
        request_judge_send(store, &f->ports, ALICE_PORT, CAROL, BOB, &req);
        expect_refused(&req, "source is not the port's enrolled client",
                       false);
        request_judge_send(store, &f->ports, ALICE_PORT, STRANGER, BOB,
                           &req);
        expect_refused(&req, "source is not the port's enrolled client",
                       false);

        /* The port of a client that is not enrolled, even with a MAC that
         * is. */
        request_judge_send(store, &f->ports, GHOST_PORT, ALICE, BOB, &req);
        expect_refused(&req, "source is not the port's enrolled client",
                       false);

        /* The uplink, and a port without a mark. */
        request_judge_send(store, &f->ports, UPLINK_PORT, ALICE, BOB, &req);
        expect_refused(&req, "port is not a client port", false);
        request_judge_send(store, &f->ports, UNMARKED_PORT, ALICE, BOB,
                           &req);
        expect_refused(&req, "port is not a client port", false);

        /* Broadcast and multicast are the group key's, not requests. */
        request_judge_send(store, &f->ports, ALICE_PORT, ALICE, BROADCAST,
                           &req);
        assert_int_equal(req.verdict, REQUEST_IGNORE);
    }

    /* Destinations the store refuses. */
    request_judge_send(f->store, &f->ports, ALICE_PORT, ALICE, STRANGER,
                       &req);
    expect_refused(&req, "destination is not enrolled", true);
    request_judge_send(f->store, &f->ports, ALICE_PORT, ALICE, ALICE, &req);
    expect_refused(&req, "destination is the sender", false);
}

/* The receiver's side: an encrypted frame for alice from carol is
 * answered for alice, and never creates a key. */
static void
test_recv(void **state)
{
    struct fixture *f = *state;
    struct request req;

    request_judge_recv(f->store, &f->ports, CAROL, ALICE, &req);
    expect_pair(&req, "alice", ALICE, ALICE_PORT, "carol", CAROL, false);
    request_judge_recv(NULL, &f->ports, STRANGER, BOB, &req);
    expect_pair(&req, "bob", BOB, BOB_PORT, "", eth_addr_zero, false);

    /* Not a client here: carol's on another switch, the stranger nowhere,
     * the ghost not enrolled, broadcast nobody's. */
    struct eth_addr not_here[] = { CAROL, STRANGER, BROADCAST };
    for (size_t i = 0; i < ARRAY_SIZE(not_here); i++) {
        request_judge_recv(f->store, &f->ports, ALICE, not_here[i], &req);
        expect_refused(&req, "destination is not a client of this bridge",
                       false);
        request_judge_recv(NULL, &f->ports, ALICE, not_here[i], &req);
        expect_refused(&req, "destination is not a client of this bridge",
                       false);
    }

    /* From someone not enrolled, or from alice's own MAC. */
    request_judge_recv(f->store, &f->ports, STRANGER, ALICE, &req);
    expect_refused(&req, "source is not an enrolled client", true);
    request_judge_recv(f->store, &f->ports, ALICE, ALICE, &req);
    expect_refused(&req, "source is not an enrolled client", true);
}

/* A version report names a pair only if both ends are enrolled. */
static void
test_report(void **state)
{
    struct fixture *f = *state;
    struct request req;

    request_judge_report(f->store, CAROL, BOB, &req);
    assert_int_equal(req.verdict, REQUEST_PAIR);
    assert_string_equal(req.me.id, "carol");
    assert_string_equal(req.peer.id, "bob");
    assert_false(req.create);

    request_judge_report(f->store, STRANGER, BOB, &req);
    assert_int_equal(req.verdict, REQUEST_IGNORE);
    request_judge_report(f->store, BOB, STRANGER, &req);
    assert_int_equal(req.verdict, REQUEST_IGNORE);
    request_judge_report(f->store, BOB, BOB, &req);
    assert_int_equal(req.verdict, REQUEST_IGNORE);
}

/* A revoked client's requests are refused at once: the store is the truth
 * for destinations. */
static void
test_revoked(void **state)
{
    struct fixture *f = *state;
    struct request req;
    ok(store_del_client(f->store, "carol", NULL, NULL));
    request_judge_send(f->store, &f->ports, ALICE_PORT, ALICE, CAROL, &req);
    expect_refused(&req, "destination is not enrolled", true);
    request_judge_recv(f->store, &f->ports, CAROL, ALICE, &req);
    expect_refused(&req, "source is not an enrolled client", true);
}

/* A gateway bridge: the uplink, alice, and a clear port for gateway
 * "gw-a".  Outside hosts are served by the gateway where they were
 * learned; one never learned, only if the subnet has a single gateway. */
static void
test_gateway(void **state)
{
    struct fixture *f = *state;
    const struct eth_addr outside = mac_n(0x50), outside2 = mac_n(0x51);
    struct mark marks[3] = {
        { .role = MARK_UPLINK, .ofport = UPLINK_PORT },
        { .role = MARK_CLIENT, .ofport = ALICE_PORT,
          .client_id = CONST_CAST(char *, "alice") },
        { .role = MARK_CLEAR, .ofport = CLEAR_PORT,
          .client_id = CONST_CAST(char *, "gw-a") },
    };
    struct eth_addr macs[3] = { eth_addr_zero, ALICE, eth_addr_zero };
    struct request_ports ports = { .marks = marks, .macs = macs, .n = 3 };
    struct request req;

    ok(store_add_gateway(f->store, "gw-a"));

    /* From the plain side: the gateway asks for the host, which is then
     * learned there. */
    request_judge_send(f->store, &ports, CLEAR_PORT, outside, ALICE, &req);
    expect_pair(&req, "gw-a", outside, CLEAR_PORT, "alice", ALICE, true);
    assert_true(req.me.gateway);
    assert_int_equal(req.learn, REQUEST_LEARN_ME);
    request_judge_send(NULL, &ports, CLEAR_PORT, outside, ALICE, &req);
    expect_pair(&req, "gw-a", outside, CLEAR_PORT, "", eth_addr_zero, true);

    /* A plain host may not use a client's MAC (its frames are dropped at
     * the port), nor reach a non-client. */
    request_judge_send(f->store, &ports, CLEAR_PORT, BOB, ALICE, &req);
    expect_refused(&req, "source is an enrolled client's MAC", false);
    assert_true(req.drop_source);
    assert_false(req.conflict);
    request_judge_send(f->store, &ports, CLEAR_PORT, outside, outside2,
                       &req);
    expect_refused(&req, "destination is not enrolled", true);
    request_judge_send(f->store, &ports, CLEAR_PORT, BROADCAST, ALICE,
                       &req);
    expect_refused(&req, "source is not a unicast address", false);

    /* A broadcast from the plain side teaches where its sender is, unless
     * the sender uses a client's MAC. */
    request_judge_send(f->store, &ports, CLEAR_PORT, outside, BROADCAST,
                       &req);
    assert_int_equal(req.verdict, REQUEST_LEARN);
    assert_string_equal(req.me.id, "gw-a");
    assert_true(eth_addr_equals(req.me.mac, outside));
    request_judge_send(NULL, &ports, CLEAR_PORT, BOB, BROADCAST, &req);
    assert_int_equal(req.verdict, REQUEST_LEARN);
    request_judge_send(f->store, &ports, CLEAR_PORT, BOB, BROADCAST, &req);
    expect_refused(&req, "source is an enrolled client's MAC", false);
    assert_true(req.drop_source);

    /* From a client to a host never seen: the only gateway serves it. */
    request_judge_send(f->store, &ports, ALICE_PORT, ALICE, outside2, &req);
    expect_pair(&req, "alice", ALICE, ALICE_PORT, "gw-a", outside2, true);
    assert_true(req.peer.gateway);
    assert_int_equal(req.learn, REQUEST_LEARN_PEER);

    /* With a second gateway, only the learned ones are served, each by the
     * gateway where it was seen. */
    ok(store_add_gateway(f->store, "gw-b"));
    request_judge_send(f->store, &ports, ALICE_PORT, ALICE, outside2, &req);
    expect_refused(&req, "destination is not enrolled", true);
    ok(store_learn_outside(f->store, outside, "gw-a", NULL));
    ok(store_learn_outside(f->store, outside2, "gw-b", NULL));
    request_judge_send(f->store, &ports, ALICE_PORT, ALICE, outside2, &req);
    expect_pair(&req, "alice", ALICE, ALICE_PORT, "gw-b", outside2, true);
    assert_int_equal(req.learn, REQUEST_LEARN_NONE);

    /* A host behind gw-b that shows up at gw-a's clear port (or a host
     * using its MAC there): refused and dropped there, as a conflict
     * naming both gateways, whether it sends unicast or broadcasts.  The
     * store does not change. */
    const struct eth_addr dsts[] = { ALICE, BROADCAST };
    for (size_t i = 0; i < ARRAY_SIZE(dsts); i++) {
        struct store_outside out;

        request_judge_send(f->store, &ports, CLEAR_PORT, outside2, dsts[i],
                           &req);
        expect_refused(&req, "source is an outside host behind another "
                       "gateway", false);
        assert_true(req.drop_source);
        assert_true(req.conflict);
        assert_string_equal(req.me.id, "gw-a");
        assert_string_equal(req.peer.id, "gw-b");
        assert_true(eth_addr_equals(req.me.mac, outside2));
        assert_true(store_find_outside(f->store, outside2, &out));
        assert_string_equal(out.gateway, "gw-b");
    }
    /* Its own host is served there as before. */
    request_judge_send(f->store, &ports, CLEAR_PORT, outside, ALICE, &req);
    expect_pair(&req, "gw-a", outside, CLEAR_PORT, "alice", ALICE, true);
    assert_int_equal(req.learn, REQUEST_LEARN_ME);
    request_judge_send(f->store, &ports, CLEAR_PORT, outside, BROADCAST,
                       &req);
    assert_int_equal(req.verdict, REQUEST_LEARN);

    /* Moved to gw-a by the admin, the host is served at gw-a; forgotten, it
     * may be learned anywhere. */
    ok(store_move_outside(f->store, outside2, "gw-a"));
    request_judge_send(f->store, &ports, CLEAR_PORT, outside2, ALICE, &req);
    expect_pair(&req, "gw-a", outside2, CLEAR_PORT, "alice", ALICE, true);
    ok(store_move_outside(f->store, outside2, "gw-b"));
    request_judge_send(f->store, &ports, CLEAR_PORT, outside2, ALICE, &req);
    assert_true(req.conflict);
    ok(store_forget_outside(f->store, outside2, NULL, "forgotten", NULL));
    request_judge_send(f->store, &ports, CLEAR_PORT, outside2, BROADCAST,
                       &req);
    assert_int_equal(req.verdict, REQUEST_LEARN);
    ok(store_learn_outside(f->store, outside2, "gw-b", NULL));

    /* The receiver's side on the gateway: only hosts learned here. */
    request_judge_recv(f->store, &ports, BOB, outside, &req);
    expect_pair(&req, "gw-a", outside, CLEAR_PORT, "bob", BOB, false);
    request_judge_recv(f->store, &ports, BOB, outside2, &req);
    expect_refused(&req, "destination is not a client of this bridge", true);
    assert_true(req.quiet);
    request_judge_recv(f->store, &ports, outside2, outside, &req);
    expect_refused(&req, "source is not an enrolled client", true);

    /* ...and on a client's bridge, from an outside host. */
    request_judge_recv(f->store, &f->ports, outside, ALICE, &req);
    expect_pair(&req, "alice", ALICE, ALICE_PORT, "gw-a", outside, false);
    request_judge_recv(f->store, &f->ports, STRANGER, ALICE, &req);
    expect_refused(&req, "source is not an enrolled client", true);
    assert_false(req.quiet);

    /* Version reports between a client and an outside host. */
    request_judge_report(f->store, outside, ALICE, &req);
    assert_int_equal(req.verdict, REQUEST_PAIR);
    assert_string_equal(req.me.id, "gw-a");
    assert_string_equal(req.peer.id, "alice");
    request_judge_report(f->store, outside, outside2, &req);
    assert_int_equal(req.verdict, REQUEST_IGNORE);
}

int
main(void)
{
    const char *base = getenv("TMPDIR");
    const struct CMUnitTest tests[] = {
#define T(FUNC) cmocka_unit_test_setup_teardown(FUNC, setup, teardown)
        T(test_send_answered),
        T(test_send_refused),
        T(test_recv),
        T(test_report),
        T(test_revoked),
        T(test_gateway),
#undef T
    };
    int failures;

    snprintf(tmpdir, sizeof tmpdir, "%s/test-request.XXXXXX",
             base && strlen(base) < 32 ? base : "/tmp");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(db_path, sizeof db_path, "%s/request.db", tmpdir);
    vlog_set_levels(NULL, VLF_ANY_DESTINATION, VLL_ERR);
    failures = cmocka_run_group_tests_name("request", tests, NULL, NULL);
    rmdir(tmpdir);
    return failures;
}
