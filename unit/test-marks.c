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

/* Unit tests for controller/marks.c: which of several ports marked with
 * one id holds it (mark_owners_resolve()), with no OVSDB. */

#include <config.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "flow.h"
#include "marks.h"
#include "openvswitch/vlog.h"
#include "util.h"

/* Port 'iface' (OpenFlow port 'port') of the bridge with datapath id
 * 'dpid', marked as client 'id'. */
static struct mark_claim
client(const char *id, uint64_t dpid, uint16_t port, const char *iface)
{
    return (struct mark_claim) {
        .id = id, .dpid = dpid, .ofport = u16_to_ofp(port), .iface = iface,
    };
}

static struct mark_claim
gateway(const char *id, uint64_t dpid, uint16_t port, const char *iface)
{
    struct mark_claim c = client(id, dpid, port, iface);

    c.gateway = true;
    return c;
}

/* Resolves 'claims' and checks that exactly the claims flagged in 'held'
 * hold their ids, and that every refused claim points to a holder of its
 * id. */
static void
resolve(struct mark_owners *owners, struct mark_claim *claims, size_t n,
        const bool *held)
{
    mark_owners_resolve(owners, claims, n);
    for (size_t i = 0; i < n; i++) {
        size_t owner = claims[i].owner;

        assert_true(owner < n);
        if (held[i] != (owner == i)) {
            fail_msg("claim %"PRIuSIZE" (%s of %s): %s", i, claims[i].id,
                     claims[i].iface, held[i] ? "refused" : "holds its id");
        }
        assert_string_equal(claims[owner].id, claims[i].id);
        assert_int_equal(claims[owner].owner, owner);
    }
}

/* Seen at once: the lowest (datapath id, port) holds the id, whatever the
 * order of the claims. */
static void
test_fresh_start(void **state OVS_UNUSED)
{
    struct mark_claim claims[] = {
        client("alice", 2, 1, "vif-a"),
        client("alice", 1, 7, "vif-b"),
        client("alice", 1, 9, "vif-c"),
        client("bob", 3, 2, "vif-d"),
    };
    static const bool held[] = { false, true, false, true };

    for (size_t rotation = 0; rotation < ARRAY_SIZE(claims); rotation++) {
        struct mark_owners *owners = mark_owners_create();
        struct mark_claim rotated[ARRAY_SIZE(claims)];
        bool rotated_held[ARRAY_SIZE(claims)];

        for (size_t i = 0; i < ARRAY_SIZE(claims); i++) {
            size_t k = (i + rotation) % ARRAY_SIZE(claims);

            rotated[i] = claims[k];
            rotated_held[i] = held[k];
        }
        resolve(owners, rotated, ARRAY_SIZE(rotated), rotated_held);
        mark_owners_destroy(owners);
    }
}

/* The holder keeps its id against later claims, even lower ones; when its
 * mark goes, the next claim takes over, and keeps it when the first comes
 * back. */
static void
test_first_seen_keeps_it(void **state OVS_UNUSED)
{
    struct mark_owners *owners = mark_owners_create();
    struct mark_claim late = client("alice", 5, 3, "vif-late");
    struct mark_claim low = client("alice", 1, 1, "vif-low");
    struct mark_claim claims[2];

    claims[0] = late;
    resolve(owners, claims, 1, (bool[]) { true });

    claims[0] = low;
    claims[1] = late;
    resolve(owners, claims, 2, (bool[]) { false, true });
    assert_int_equal(claims[0].owner, 1);

    /* Again: nothing changes. */
    resolve(owners, claims, 2, (bool[]) { false, true });

    /* The holder's mark goes: the other takes over, and keeps the id when
     * the first is back. */
    claims[0] = low;
    resolve(owners, claims, 1, (bool[]) { true });
    claims[1] = late;
    resolve(owners, claims, 2, (bool[]) { true, false });

    /* A holder that changed its port number is still the same port. */
    claims[0].ofport = u16_to_ofp(12);
    resolve(owners, claims, 2, (bool[]) { true, false });

    /* No claim at all: the id is forgotten, and the next round starts
     * afresh (lowest first). */
    resolve(owners, claims, 0, NULL);
    claims[0] = late;
    claims[1] = low;
    resolve(owners, claims, 2, (bool[]) { false, true });
    mark_owners_destroy(owners);
}

/* The gateway ports of one bridge share its id; another bridge's gateway
 * port, or a client port, with that id is refused, and so is a gateway
 * port that claims a client's id. */
static void
test_gateways(void **state OVS_UNUSED)
{
    struct mark_owners *owners = mark_owners_create();
    struct mark_claim claims[] = {
        gateway("gw-a", 4, 2, "clear1"),
        gateway("gw-a", 4, 3, "clear2"),
        gateway("gw-a", 2, 5, "other-bridge"),
        client("gw-a", 4, 9, "vif"),
    };

    /* First seen: bridge 4's two clear ports. */
    resolve(owners, claims, 2, (bool[]) { true, true });
    resolve(owners, claims, 4, (bool[]) { true, true, false, false });
    assert_int_equal(claims[2].owner, 0);
    assert_int_equal(claims[3].owner, 0);

    /* One of the two goes: the bridge keeps its id. */
    claims[0] = claims[1];
    claims[1] = claims[2];
    claims[2] = claims[3];
    resolve(owners, claims, 3, (bool[]) { true, false, false });

    /* A client holds "alice": a clear port with that id is refused. */
    struct mark_claim alice[] = {
        client("alice", 9, 1, "vif-alice"),
        gateway("alice", 1, 1, "clear-alice"),
    };
    resolve(owners, alice, 1, (bool[]) { true });
    resolve(owners, alice, 2, (bool[]) { true, false });
    mark_owners_destroy(owners);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fresh_start),
        cmocka_unit_test(test_first_seen_keeps_it),
        cmocka_unit_test(test_gateways),
    };

    vlog_set_levels(NULL, VLF_ANY_DESTINATION, VLL_ERR);
    return cmocka_run_group_tests_name("marks", tests, NULL, NULL);
}
