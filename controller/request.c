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

static void
answer(struct request *req, const struct store_client *me, ofp_port_t me_port,
       const struct store_client *peer, bool create)
{
    memset(req, 0, sizeof *req);
    req->verdict = REQUEST_PAIR;
    req->me = *me;
    req->me_port = me_port;
    if (peer) {
        req->peer = *peer;
    }
    req->create = create;
}

/* The end of a pair that mark 'i' of 'ports' stands for: its enrolled
 * client, or, for a clear port, its gateway with outside host 'mac'. */
static struct store_client
mark_end(const struct request_ports *ports, size_t i, struct eth_addr mac)
{
    struct store_client end;

    memset(&end, 0, sizeof end);
    ovs_strlcpy(end.id, ports->marks[i].client_id, sizeof end.id);
    end.gateway = mark_is_gateway(&ports->marks[i]);
    end.mac = end.gateway ? mac : ports->macs[i];
    return end;
}

static bool
is_enrolled_mark(const struct request_ports *ports, size_t i)
{
    return (ports->marks[i].role == MARK_CLIENT
            && !eth_addr_is_zero(ports->macs[i]));
}

/* Resolves 'mac' to the end of a pair it stands for: an enrolled client, or
 * the gateway that serves outside host 'mac' (the one where it was learned;
 * with 'assign', if it was learned nowhere, the subnet's only gateway, and
 * then '*assigned' is set).  Returns false if there is none. */
static bool
resolve_mac(struct store *store, struct eth_addr mac, bool assign,
            struct store_client *end, bool *assigned)
{
    struct store_outside out;

    if (store_find_client_by_mac(store, mac, end)) {
        return true;
    }
    memset(end, 0, sizeof *end);
    end->mac = mac;
    end->gateway = true;
    if (store_find_outside(store, mac, &out)) {
        ovs_strlcpy(end->id, out.gateway, sizeof end->id);
        return true;
    }
    if (assign) {
        struct store_client *gateways;
        size_t n;

        store_list_gateways(store, &gateways, &n);
        if (n == 1) {
            ovs_strlcpy(end->id, gateways[0].id, sizeof end->id);
            *assigned = true;
        }
        free(gateways);
        return n == 1;
    }
    return false;
}

static size_t
find_port(const struct request_ports *ports, ofp_port_t ofport)
{
    for (size_t i = 0; i < ports->n; i++) {
        if (ports->marks[i].ofport == ofport) {
            return i;
        }
    }
    return SIZE_MAX;
}

/* A frame from a client's port. */
static void
judge_send_from_client(struct store *store, const struct request_ports *ports,
                       size_t i, struct eth_addr src, struct eth_addr dst,
                       struct request *req)
{
    struct store_client me = mark_end(ports, i, src), peer;
    bool assigned = false;

    if (!is_enrolled_mark(ports, i) || !eth_addr_equals(me.mac, src)) {
        refuse(req, "source is not the port's enrolled client", false);
    } else if (eth_addr_is_multicast(dst)) {
        /* The group key's flows carry these; a miss is not a request. */
        not_a_request(req);
    } else if (!store) {
        answer(req, &me, ports->marks[i].ofport, NULL, true);
    } else if (!resolve_mac(store, dst, true, &peer, &assigned)) {
        refuse(req, "destination is not enrolled", true);
    } else if (!strcmp(peer.id, me.id)) {
        refuse(req, "destination is the sender", false);
    } else {
        answer(req, &me, ports->marks[i].ofport, &peer, true);
        req->learn = assigned ? REQUEST_LEARN_PEER : REQUEST_LEARN_NONE;
    }
}

/* Refuses 'req' if the source of a frame from gateway end 'me' may not
 * cross there: a client's MAC (a plain host may not speak as a client), or
 * an outside host behind another gateway (a host stays behind the gateway
 * where it was first seen).  Either way, the source's frames are dropped
 * at that port for a while. */
static bool
refuse_source(struct store *store, const struct store_client *me,
              struct request *req)
{
    struct store_outside out;
    struct store_client client;

    if (store_find_client_by_mac(store, me->mac, &client)) {
        refuse(req, "source is an enrolled client's MAC", false);
    } else if (store_find_outside(store, me->mac, &out)
               && strcmp(out.gateway, me->id)) {
        refuse(req, "source is an outside host behind another gateway",
               false);
        req->conflict = true;
        req->me = *me;
        req->peer = *me;
        ovs_strlcpy(req->peer.id, out.gateway, sizeof req->peer.id);
    } else {
        return false;
    }
    req->drop_source = true;
    return true;
}

/* A frame from a plain host, through a clear port: its gateway asks, on
 * behalf of that host, for the pair key with the client it talks to. */
static void
judge_send_from_clear(struct store *store, const struct request_ports *ports,
                      size_t i, struct eth_addr src, struct eth_addr dst,
                      struct request *req)
{
    struct store_client me = mark_end(ports, i, src), peer;

    if (eth_addr_is_multicast(src) || eth_addr_is_zero(src)) {
        refuse(req, "source is not a unicast address", false);
    } else if (store && refuse_source(store, &me, req)) {
        /* Refused. */
    } else if (eth_addr_is_multicast(dst)) {
        /* The gateway sends a host's broadcasts to the key server until
         * it learned where the host is, and floods them only then. */
        answer(req, &me, ports->marks[i].ofport, NULL, false);
        req->verdict = REQUEST_LEARN;
    } else if (!store) {
        answer(req, &me, ports->marks[i].ofport, NULL, true);
    } else if (!store_find_client_by_mac(store, dst, &peer)) {
        refuse(req, "destination is not enrolled", true);
    } else {
        answer(req, &me, ports->marks[i].ofport, &peer, true);
        req->learn = REQUEST_LEARN_ME;
    }
}

void
request_judge_send(struct store *store, const struct request_ports *ports,
                   ofp_port_t in_port, struct eth_addr src,
                   struct eth_addr dst, struct request *req)
{
    size_t i = find_port(ports, in_port);

    if (i == SIZE_MAX || ports->marks[i].role == MARK_UPLINK) {
        refuse(req, "port is not a client port", false);
    } else if (ports->marks[i].role == MARK_CLIENT) {
        judge_send_from_client(store, ports, i, src, dst, req);
    } else {
        judge_send_from_clear(store, ports, i, src, dst, req);
    }
}

void
request_judge_recv(struct store *store, const struct request_ports *ports,
                   struct eth_addr src, struct eth_addr dst,
                   struct request *req)
{
    struct store_client me, peer;
    bool has_clear = false;
    size_t i;

    for (i = 0; i < ports->n; i++) {
        if (is_enrolled_mark(ports, i) && eth_addr_equals(ports->macs[i],
                                                          dst)) {
            break;
        }
        has_clear |= mark_is_gateway(&ports->marks[i]);
    }
    if (i >= ports->n && has_clear && !eth_addr_is_multicast(dst)) {
        /* Maybe a host behind one of this bridge's clear ports. */
        struct store_outside out;

        for (i = 0; i < ports->n; i++) {
            if (mark_is_gateway(&ports->marks[i])
                && (!store
                    || (store_find_outside(store, dst, &out)
                        && !strcmp(out.gateway,
                                   ports->marks[i].client_id)))) {
                break;
            }
        }
    }
    if (i >= ports->n) {
        refuse(req, "destination is not a client of this bridge", false);
        /* A gateway bridge sees every frame the wire floods. */
        req->quiet = has_clear;
        req->drop_pair = has_clear;
        return;
    }

    me = mark_end(ports, i, dst);
    if (!store) {
        answer(req, &me, ports->marks[i].ofport, NULL, false);
    } else if (!resolve_mac(store, src, false, &peer, NULL)
               || !strcmp(peer.id, me.id)
               || (peer.gateway && me.gateway)) {
        refuse(req, "source is not an enrolled client", true);
    } else {
        /* Keys are created at the sender's request and then installed on
         * both sides at once: a receiver asks only after it lost its key.
         * So a frame on the wire, which anyone can forge, never creates a
         * key. */
        answer(req, &me, ports->marks[i].ofport, &peer, false);
    }
}

void
request_judge_report(struct store *store, struct eth_addr src,
                     struct eth_addr dst, struct request *req)
{
    struct store_client a, b;

    if (resolve_mac(store, src, false, &a, NULL)
        && resolve_mac(store, dst, false, &b, NULL)
        && strcmp(a.id, b.id) && !(a.gateway && b.gateway)) {
        answer(req, &a, OFPP_NONE, &b, false);
    } else {
        not_a_request(req);
    }
}
