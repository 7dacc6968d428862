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
#include "marks.h"

#include <stdlib.h>
#include <string.h>

#include "flow.h"
#include "openvswitch/shash.h"
#include "openvswitch/vlog.h"
#include "ovsdb-idl.h"
#include "smap.h"
#include "sset.h"
#include "store.h"
#include "util.h"
#include "vswitch-idl.h"

VLOG_DEFINE_THIS_MODULE(marks);

struct marks {
    struct ovsdb_idl **idls;
    size_t n_idls;
    uint64_t seqno;             /* Bumped when any IDL's seqno changes. */
    unsigned int *idl_seqnos;
    struct sset warned;         /* Malformed marks already logged. */

    /* Client id to its port, rebuilt when the marks change: every key
     * request looks up where its two clients are. */
    struct shash clients;       /* Contains "struct client_port"s. */
    uint64_t clients_seqno;     /* 'seqno' when 'clients' was built. */
};

struct client_port {
    uint64_t dpid;
    ofp_port_t ofport;
};

struct marks *
marks_create(void)
{
    struct marks *marks = xzalloc(sizeof *marks);

    sset_init(&marks->warned);
    shash_init(&marks->clients);
    marks->clients_seqno = UINT64_MAX;
    return marks;
}

void
marks_destroy(struct marks *marks)
{
    if (marks) {
        for (size_t i = 0; i < marks->n_idls; i++) {
            ovsdb_idl_destroy(marks->idls[i]);
        }
        free(marks->idls);
        free(marks->idl_seqnos);
        sset_destroy(&marks->warned);
        shash_destroy_free_data(&marks->clients);
        free(marks);
    }
}

void
marks_add_remote(struct marks *marks, const char *remote)
{
    struct ovsdb_idl *idl = ovsdb_idl_create(remote, &ovsrec_idl_class,
                                             false, true);

    /* Only what port marks need. */
    ovsdb_idl_add_table(idl, &ovsrec_table_bridge);
    ovsdb_idl_add_column(idl, &ovsrec_bridge_col_name);
    ovsdb_idl_add_column(idl, &ovsrec_bridge_col_datapath_id);
    ovsdb_idl_add_column(idl, &ovsrec_bridge_col_ports);
    ovsdb_idl_add_table(idl, &ovsrec_table_port);
    ovsdb_idl_add_column(idl, &ovsrec_port_col_name);
    ovsdb_idl_add_column(idl, &ovsrec_port_col_interfaces);
    ovsdb_idl_add_table(idl, &ovsrec_table_interface);
    ovsdb_idl_add_column(idl, &ovsrec_interface_col_name);
    ovsdb_idl_add_column(idl, &ovsrec_interface_col_ofport);
    ovsdb_idl_add_column(idl, &ovsrec_interface_col_external_ids);

    marks->idls = xrealloc(marks->idls,
                           (marks->n_idls + 1) * sizeof *marks->idls);
    marks->idl_seqnos = xrealloc(marks->idl_seqnos,
                                 (marks->n_idls + 1)
                                 * sizeof *marks->idl_seqnos);
    marks->idls[marks->n_idls] = idl;
    marks->idl_seqnos[marks->n_idls] = ovsdb_idl_get_seqno(idl);
    marks->n_idls++;
}

void
marks_run(struct marks *marks)
{
    for (size_t i = 0; i < marks->n_idls; i++) {
        unsigned int seqno;

        ovsdb_idl_run(marks->idls[i]);
        seqno = ovsdb_idl_get_seqno(marks->idls[i]);
        if (seqno != marks->idl_seqnos[i]) {
            marks->idl_seqnos[i] = seqno;
            marks->seqno++;
        }
    }
}

void
marks_wait(struct marks *marks)
{
    for (size_t i = 0; i < marks->n_idls; i++) {
        ovsdb_idl_wait(marks->idls[i]);
    }
}

uint64_t
marks_seqno(const struct marks *marks)
{
    return marks->seqno;
}

static bool
bridge_dpid(const struct ovsrec_bridge *br, uint64_t *dpid)
{
    return br->datapath_id && strlen(br->datapath_id) == 16
           && str_to_ullong(br->datapath_id, 16,
                            (unsigned long long int *) dpid);
}

/* Logs a malformed mark once per interface and problem. */
static void
warn_once(struct marks *marks, const char *iface, const char *problem)
{
    char *key = xasprintf("%s: %s", iface, problem);

    if (sset_add(&marks->warned, key)) {
        VLOG_WARN("interface %s: %s; mark ignored", iface, problem);
    }
    free(key);
}

/* Parses the mark of 'iface', on the bridge with datapath id 'dpid', into
 * 'mark'.  Returns false if it has none or a malformed one. */
static bool
parse_mark(const struct marks *marks_, const struct ovsrec_interface *iface,
           uint64_t dpid, struct mark *mark)
{
    struct marks *marks = CONST_CAST(struct marks *, marks_);
    const char *role = smap_get(&iface->external_ids, "pairkey-role");
    const char *id = smap_get(&iface->external_ids, "pairkey-id");
    const char *mode = smap_get(&iface->external_ids, "pairkey-mode");

    if (!role) {
        return false;
    }
    if (!iface->n_ofport || iface->ofport[0] <= 0
        || iface->ofport[0] >= UINT16_MAX) {
        return false;
    }

    if (mode && strcmp(role, "inter")) {
        warn_once(marks, iface->name,
                  "pairkey-mode applies only to pairkey-role=inter");
        return false;
    }

    memset(mark, 0, sizeof *mark);
    mark->ofport = u16_to_ofp(iface->ofport[0]);
    if (!strcmp(role, "client")) {
        if (!id) {
            warn_once(marks, iface->name,
                      "pairkey-role=client needs pairkey-id");
            return false;
        } else if (!store_id_is_valid(id)) {
            warn_once(marks, iface->name, "pairkey-id is not a valid id");
            return false;
        }
        mark->role = MARK_CLIENT;
        mark->client_id = xstrdup(id);
    } else if (!strcmp(role, "uplink")) {
        mark->role = MARK_UPLINK;
    } else if (!strcmp(role, "clear") || !strcmp(role, "inter")) {
        const char *peer = smap_get(&iface->external_ids, "pairkey-peer");

        if (id && !store_id_is_valid(id)) {
            warn_once(marks, iface->name, "pairkey-id is not a valid id");
            return false;
        }
        if (!strcmp(role, "inter")) {
            if (!peer || !store_id_is_valid(peer)) {
                warn_once(marks, iface->name, "pairkey-role=inter needs "
                          "pairkey-peer=NAME, a valid peer name");
                return false;
            }
            if (!mode || !strcmp(mode, "l2")) {
                mark->mode = CRYPT_MODE_L2;
            } else if (!strcmp(mode, "l3")) {
                mark->mode = CRYPT_MODE_L3;
            } else if (!strcmp(mode, "nat")) {
                mark->mode = CRYPT_MODE_NAT;
            } else {
                warn_once(marks, iface->name,
                          "pairkey-mode must be l2, l3 or nat");
                return false;
            }
            mark->role = MARK_INTER;
            mark->peer = xstrdup(peer);
        } else {
            mark->role = MARK_CLEAR;
        }
        mark->client_id = (id ? xstrdup(id)
                           : xasprintf(MARKS_GATEWAY_ID_FMT, dpid));
    } else {
        warn_once(marks, iface->name, "unknown pairkey-role");
        return false;
    }
    mark->iface = xstrdup(iface->name);
    return true;
}

static int
compare_marks(const void *a_, const void *b_)
{
    const struct mark *a = a_;
    const struct mark *b = b_;
    uint16_t pa = ofp_to_u16(a->ofport), pb = ofp_to_u16(b->ofport);

    return pa < pb ? -1 : pa > pb;
}

size_t
marks_get(const struct marks *marks, uint64_t dpid, struct mark **markp,
          char **bridge)
{
    struct mark *array = NULL;
    size_t n = 0, allocated = 0;

    if (bridge) {
        *bridge = NULL;
    }
    for (size_t i = 0; i < marks->n_idls; i++) {
        const struct ovsrec_bridge *br;

        OVSREC_BRIDGE_FOR_EACH (br, marks->idls[i]) {
            uint64_t br_dpid;

            if (!bridge_dpid(br, &br_dpid) || br_dpid != dpid) {
                continue;
            }
            if (bridge && !*bridge) {
                *bridge = xstrdup(br->name);
            }
            for (size_t p = 0; p < br->n_ports; p++) {
                const struct ovsrec_port *port = br->ports[p];

                for (size_t k = 0; k < port->n_interfaces; k++) {
                    struct mark mark;

                    if (parse_mark(marks, port->interfaces[k], br_dpid,
                                   &mark)) {
                        if (n >= allocated) {
                            array = x2nrealloc(array, &allocated,
                                               sizeof *array);
                        }
                        array[n++] = mark;
                    }
                }
            }
        }
    }
    if (n) {
        qsort(array, n, sizeof *array, compare_marks);
    }
    *markp = array;
    return n;
}

void
marks_free(struct mark *array, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(array[i].iface);
        free(array[i].client_id);
        free(array[i].peer);
    }
    free(array);
}

/* Rebuilds the client index (clients and gateways) from every IDL.  The
 * first port marked for a client wins. */
static void
index_clients(struct marks *marks)
{
    shash_clear_free_data(&marks->clients);
    for (size_t i = 0; i < marks->n_idls; i++) {
        const struct ovsrec_bridge *br;

        OVSREC_BRIDGE_FOR_EACH (br, marks->idls[i]) {
            uint64_t dpid;

            if (!bridge_dpid(br, &dpid)) {
                continue;
            }
            for (size_t p = 0; p < br->n_ports; p++) {
                const struct ovsrec_port *port = br->ports[p];

                for (size_t k = 0; k < port->n_interfaces; k++) {
                    struct mark mark;

                    if (!parse_mark(marks, port->interfaces[k], dpid,
                                    &mark)) {
                        continue;
                    }
                    if (mark.client_id
                        && !shash_find(&marks->clients, mark.client_id)) {
                        struct client_port *cp = xmalloc(sizeof *cp);

                        cp->dpid = dpid;
                        cp->ofport = mark.ofport;
                        shash_add(&marks->clients, mark.client_id, cp);
                    }
                    free(mark.iface);
                    free(mark.client_id);
                    free(mark.peer);
                }
            }
        }
    }
    marks->clients_seqno = marks->seqno;
}

bool
marks_find_client(const struct marks *marks_, const char *id,
                  uint64_t *dpid, ofp_port_t *ofport)
{
    struct marks *marks = CONST_CAST(struct marks *, marks_);
    const struct client_port *cp;

    if (marks->clients_seqno != marks->seqno) {
        index_clients(marks);
    }
    cp = shash_find_data(&marks->clients, id);
    if (cp) {
        *dpid = cp->dpid;
        *ofport = cp->ofport;
    }
    return cp != NULL;
}
