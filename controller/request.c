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
#include "request.h"

#include <string.h>

#include "marks.h"
#include "util.h"

static void
refuse(struct request *req, const char *why, bool drop_pair)
{
    memset(req, 0, sizeof *req);
    req->verdict = REQUEST_REFUSE;
    req->why = why;
    req->drop_pair = drop_pair;
}

static void
not_a_request(struct request *req)
{
    memset(req, 0, sizeof *req);
    req->verdict = REQUEST_IGNORE;
}

/* Fills in 'req' for the pair of the client of client mark 'i' of 'ports'
 * and 'peer'. */
static void
answer(struct request *req, const struct request_ports *ports, size_t i,
       const struct store_client *peer, bool create)
{
    memset(req, 0, sizeof *req);
    req->verdict = REQUEST_PAIR;
    ovs_strlcpy(req->me.id, ports->marks[i].client_id, sizeof req->me.id);
    req->me.mac = ports->macs[i];
    req->me_port = ports->marks[i].ofport;
    req->peer = *peer;
    req->create = create;
}

static bool
is_enrolled_mark(const struct request_ports *ports, size_t i)
{
    return (ports->marks[i].role == MARK_CLIENT
            && !eth_addr_is_zero(ports->macs[i]));
}

void
request_judge_send(struct store *store, const struct request_ports *ports,
                   ofp_port_t in_port, struct eth_addr src,
                   struct eth_addr dst, struct request *req)
{
    struct store_client peer;
    size_t i;

    for (i = 0; i < ports->n; i++) {
        if (ports->marks[i].ofport == in_port) {
            break;
        }
    }
    if (i >= ports->n || ports->marks[i].role != MARK_CLIENT) {
        refuse(req, "port is not a client port", false);
    } else if (!is_enrolled_mark(ports, i)
               || !eth_addr_equals(ports->macs[i], src)) {
        refuse(req, "source is not the port's enrolled client", false);
    } else if (eth_addr_is_multicast(dst)) {
        /* The group key's flows carry these; a miss is not a request. */
        not_a_request(req);
    } else if (!store) {
        memset(&peer, 0, sizeof peer);
        answer(req, ports, i, &peer, true);
    } else if (!store_find_client_by_mac(store, dst, &peer)) {
        refuse(req, "destination is not enrolled", true);
    } else if (!strcmp(peer.id, ports->marks[i].client_id)) {
        refuse(req, "destination is the sender", false);
    } else {
        answer(req, ports, i, &peer, true);
    }
}

void
request_judge_recv(struct store *store, const struct request_ports *ports,
                   struct eth_addr src, struct eth_addr dst,
                   struct request *req)
{
    struct store_client peer;
    size_t i;

    for (i = 0; i < ports->n; i++) {
        if (is_enrolled_mark(ports, i) && eth_addr_equals(ports->macs[i],
                                                          dst)) {
            break;
        }
    }
    if (i >= ports->n) {
        refuse(req, "destination is not a client of this bridge", false);
    } else if (!store) {
        memset(&peer, 0, sizeof peer);
        answer(req, ports, i, &peer, false);
    } else if (!store_find_client_by_mac(store, src, &peer)
               || !strcmp(peer.id, ports->marks[i].client_id)) {
        refuse(req, "source is not an enrolled client", true);
    } else {
        /* Keys are created at the sender's request and then installed on
         * both sides at once: a receiver asks only after it lost its key.
         * So a frame on the wire, which anyone can forge, never creates a
         * key. */
        answer(req, ports, i, &peer, false);
    }
}

void
request_judge_report(struct store *store, struct eth_addr src,
                     struct eth_addr dst, struct request *req)
{
    struct store_client a, b;

    if (store_find_client_by_mac(store, src, &a)
        && store_find_client_by_mac(store, dst, &b)
        && strcmp(a.id, b.id)) {
        memset(req, 0, sizeof *req);
        req->verdict = REQUEST_PAIR;
        req->me = a;
        req->me_port = OFPP_NONE;
        req->peer = b;
    } else {
        not_a_request(req);
    }
}
