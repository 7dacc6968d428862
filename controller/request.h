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

#ifndef REQUEST_H
#define REQUEST_H 1

/* Key requests: what a table-miss packet-in asks for, and whether the key
 * server may answer it.  A port speaks only as its client, and a request
 * for a pair the port's client is not part of is refused.
 *
 * These are decisions over a switch's port marks and the store, with no
 * OpenFlow and no network, so that they can be tested on their own. */

#include <stdbool.h>
#include <stddef.h>
#include "openvswitch/types.h"
#include "packets.h"
#include "store.h"

struct mark;

/* The ports of one switch as the key server knows them: its marks, and for
 * each client mark the enrolled MAC of its client (eth_addr_zero if the
 * client is not enrolled). */
struct request_ports {
    const struct mark *marks;
    const struct eth_addr *macs;
    size_t n;
};

enum request_verdict {
    REQUEST_IGNORE,             /* Not a key request: nothing to do. */
    REQUEST_REFUSE,             /* Refuse: log 'why'. */
    REQUEST_PAIR,               /* Answer for pair ('me', 'peer'). */
    REQUEST_LEARN,              /* A broadcast from the plain side: learn
                                 * outside host 'me.mac' behind gateway
                                 * 'me.id'. */
};

/* Which end of a REQUEST_PAIR is an outside host that the key server must
 * record behind its gateway before answering. */
enum request_learn {
    REQUEST_LEARN_NONE,
    REQUEST_LEARN_ME,           /* Seen at this gateway's clear port. */
    REQUEST_LEARN_PEER,         /* Never seen: the only gateway serves it. */
};

struct request {
    enum request_verdict verdict;

    /* REQUEST_REFUSE. */
    const char *why;            /* Static string. */
    bool drop_pair;             /* Drop frames from this source to this
                                 * destination for a while. */
    bool quiet;                 /* Not worth a log line: a gateway bridge
                                 * sees every frame the wire floods. */
    bool drop_source;           /* Drop every frame from this source at
                                 * this port for a while. */
    bool conflict;              /* The source is outside host 'me.mac',
                                 * seen at gateway 'me.id' but behind
                                 * gateway 'peer.id'. */

    /* REQUEST_PAIR.  'me' is the end behind this switch on whose behalf
     * the request is made, 'peer' the other end.  An end is a client, or a
     * gateway ('gateway' true) with 'mac' the outside host behind it.  The
     * key may be created only if 'create' (a request from the sending
     * side). */
    struct store_client me;
    struct store_client peer;
    ofp_port_t me_port;
    bool create;
    enum request_learn learn;
};

/* A frame from port 'in_port' with source 'src' to 'dst' missed the table
 * of flows by destination: the sender's request.  From a client's port, the
 * destination may be a client or an outside host (served by the gateway
 * where it was learned, or by the only gateway); from a clear port, the
 * source must be no client's MAC and no outside host behind another
 * gateway (an outside host stays where it was first seen), and the
 * destination a client.
 *
 * With a null 'store', judges only what the switch's ports tell (the port
 * and the source), so that a repeated request can be answered without the
 * store: the verdict is then REQUEST_PAIR with 'peer' all zeros if the
 * ports allow the request. */
void request_judge_send(struct store *, const struct request_ports *,
                        ofp_port_t in_port, struct eth_addr src,
                        struct eth_addr dst, struct request *);

/* An encrypted frame from 'src' to 'dst' arrived on an uplink and missed
 * the table of flows by source: the receiver's request.  A null 'store'
 * works as for request_judge_send() (the destination is checked). */
void request_judge_recv(struct store *, const struct request_ports *,
                        struct eth_addr src, struct eth_addr dst,
                        struct request *);

/* The switch saw a frame from 'src' to 'dst' under a key version it does not
 * hold.  Anyone can put such a frame on the wire, so this never creates a
 * key: the verdict is REQUEST_PAIR (with 'me' the end with MAC 'src') only
 * if both are clients, or a client and a known outside host. */
void request_judge_report(struct store *, struct eth_addr src,
                          struct eth_addr dst, struct request *);

#endif /* request.h */
