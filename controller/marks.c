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
#include "openvswitch/dynamic-string.h"
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

    /* Rebuilt when the marks change (see index_marks()).  Client id to its
     * port: every key request looks up where its two clients are. */
    struct shash clients;       /* Contains "struct client_port"s. */
    uint64_t clients_seqno;     /* 'seqno' when these were built. */
    struct mark_owners *owners; /* Who holds each id. */
    struct sset conflicts;      /* "DPID/IFACE" of the marks refused because
                                 * another port holds their id. */
    struct refused_mark *refused;       /* Every refused mark. */
    size_t n_refused;
};

struct client_port {
    uint64_t dpid;
    ofp_port_t ofport;
};

/* A mark that programs nothing, and why. */
struct refused_mark {
    char *iface;
    char *bridge;
    ofp_port_t ofport;
    char *reason;
};

/* The holder of an id: a client port, or a bridge's gateway ports. */
struct mark_owner {
    uint64_t dpid;
    bool gateway;
    char *iface;                /* Client port only. */
};

struct mark_owners {
    struct shash ids;           /* Contains "struct mark_owner"s. */
};

static void free_refused(struct marks *);
static void marks_free_one(struct mark *);
static void ensure_index(const struct marks *);

struct marks *
marks_create(void)
{
    struct marks *marks = xzalloc(sizeof *marks);

    sset_init(&marks->warned);
    shash_init(&marks->clients);
    marks->clients_seqno = UINT64_MAX;
    marks->owners = mark_owners_create();
    sset_init(&marks->conflicts);
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
        mark_owners_destroy(marks->owners);
        sset_destroy(&marks->conflicts);
        free_refused(marks);
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
    ensure_index(marks);
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

/* Logs malformed mark 'problem' of 'iface' (once) and stores 'problem' in
 * '*problemp'.  Returns false. */
static bool
malformed(struct marks *marks, const char *iface, const char *problem,
          const char **problemp)
{
    warn_once(marks, iface, problem);
    *problemp = problem;
    return false;
}

/* Parses the mark of 'iface', on the bridge with datapath id 'dpid', into
 * 'mark'.  Returns false if it has none or a malformed one (then stores
 * what is wrong in '*problemp', a static string). */
static bool
parse_mark(const struct marks *marks_, const struct ovsrec_interface *iface,
           uint64_t dpid, struct mark *mark, const char **problemp)
{
    struct marks *marks = CONST_CAST(struct marks *, marks_);
    const char *role = smap_get(&iface->external_ids, "pairkey-role");
    const char *id = smap_get(&iface->external_ids, "pairkey-id");
    const char *mode = smap_get(&iface->external_ids, "pairkey-mode");

    *problemp = NULL;
    if (!role) {
        return false;
    }
    if (!iface->n_ofport || iface->ofport[0] <= 0
        || iface->ofport[0] >= UINT16_MAX) {
        return false;
    }

    if (mode && strcmp(role, "inter")) {
        return malformed(marks, iface->name, "pairkey-mode applies only to "
                         "pairkey-role=inter", problemp);
    }

    memset(mark, 0, sizeof *mark);
    mark->ofport = u16_to_ofp(iface->ofport[0]);
    if (!strcmp(role, "client")) {
        if (!id) {
            return malformed(marks, iface->name,
                             "pairkey-role=client needs pairkey-id",
                             problemp);
        } else if (!store_id_is_valid(id)) {
            return malformed(marks, iface->name,
                             "pairkey-id is not a valid id", problemp);
        }
        mark->role = MARK_CLIENT;
        mark->client_id = xstrdup(id);
    } else if (!strcmp(role, "uplink")) {
        mark->role = MARK_UPLINK;
    } else if (!strcmp(role, "clear") || !strcmp(role, "inter")) {
        const char *peer = smap_get(&iface->external_ids, "pairkey-peer");

        if (id && !store_id_is_valid(id)) {
            return malformed(marks, iface->name,
                             "pairkey-id is not a valid id", problemp);
        }
        if (!strcmp(role, "inter")) {
            if (!peer || !store_id_is_valid(peer)) {
                return malformed(marks, iface->name, "pairkey-role=inter "
                                 "needs pairkey-peer=NAME, a valid peer "
                                 "name", problemp);
            }
            if (!mode || !strcmp(mode, "l2")) {
                mark->mode = CRYPT_MODE_L2;
            } else if (!strcmp(mode, "l3")) {
                mark->mode = CRYPT_MODE_L3;
            } else if (!strcmp(mode, "nat")) {
                mark->mode = CRYPT_MODE_NAT;
            } else {
                return malformed(marks, iface->name,
                                 "pairkey-mode must be l2, l3 or nat",
                                 problemp);
            }
            mark->role = MARK_INTER;
            mark->peer = xstrdup(peer);
        } else {
            mark->role = MARK_CLEAR;
        }
        mark->client_id = (id ? xstrdup(id)
                           : xasprintf(MARKS_GATEWAY_ID_FMT, dpid));
    } else {
        return malformed(marks, iface->name, "unknown pairkey-role",
                         problemp);
    }
    mark->iface = xstrdup(iface->name);
    return true;
}

/* The key of a mark in 'conflicts'. */
static char *
conflict_key(uint64_t dpid, const char *iface)
{
    return xasprintf("%016"PRIx64"/%s", dpid, iface);
}

static void index_marks(struct marks *);

/* Rebuilds what index_marks() computes if the marks changed since. */
static void
ensure_index(const struct marks *marks_)
{
    struct marks *marks = CONST_CAST(struct marks *, marks_);

    if (marks->clients_seqno != marks->seqno) {
        index_marks(marks);
    }
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

    ensure_index(marks);
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
                    const char *problem;
                    struct mark mark;

                    if (parse_mark(marks, port->interfaces[k], br_dpid,
                                   &mark, &problem)) {
                        char *key = conflict_key(br_dpid, mark.iface);
                        bool refused = sset_contains(&marks->conflicts, key);

                        free(key);
                        if (refused) {
                            marks_free_one(&mark);
                            continue;
                        }
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

static void
marks_free_one(struct mark *mark)
{
    free(mark->iface);
    free(mark->client_id);
    free(mark->peer);
}

void
marks_free(struct mark *array, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        marks_free_one(&array[i]);
    }
    free(array);
}

/* A port marked with an id, while index_marks() runs. */
struct claim_info {
    struct mark mark;
    uint64_t dpid;
    char *bridge;
};

static void
free_refused(struct marks *marks)
{
    for (size_t i = 0; i < marks->n_refused; i++) {
        struct refused_mark *r = &marks->refused[i];

        free(r->iface);
        free(r->bridge);
        free(r->reason);
    }
    free(marks->refused);
    marks->refused = NULL;
    marks->n_refused = 0;
}

static void
add_refused(struct marks *marks, size_t *allocated, const char *iface,
            const char *bridge, ofp_port_t ofport, char *reason)
{
    struct refused_mark *r;

    if (marks->n_refused >= *allocated) {
        marks->refused = x2nrealloc(marks->refused, allocated,
                                    sizeof *marks->refused);
    }
    r = &marks->refused[marks->n_refused++];
    r->iface = xstrdup(iface);
    r->bridge = xstrdup(bridge);
    r->ofport = ofport;
    r->reason = reason;
}

/* Rebuilds, from every IDL, who holds each id (see mark_owners_resolve()),
 * the index of clients and gateways to their ports, and the refused marks.
 * Logs each mark that starts to be refused for its id (ERR) or stops. */
static void
index_marks(struct marks *marks)
{
    struct claim_info *infos = NULL;
    size_t n_infos = 0, allocated_infos = 0, allocated_refused = 0;

    free_refused(marks);
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
                    const struct ovsrec_interface *iface
                        = port->interfaces[k];
                    const char *problem;
                    struct mark mark;

                    if (!parse_mark(marks, iface, dpid, &mark, &problem)) {
                        if (problem) {
                            add_refused(marks, &allocated_refused,
                                        iface->name, br->name,
                                        (iface->n_ofport
                                         && iface->ofport[0] > 0
                                         && iface->ofport[0] < UINT16_MAX
                                         ? u16_to_ofp(iface->ofport[0])
                                         : OFPP_NONE),
                                        xstrdup(problem));
                        }
                        continue;
                    }
                    if (!mark.client_id) {
                        marks_free_one(&mark);
                        continue;
                    }
                    if (n_infos >= allocated_infos) {
                        infos = x2nrealloc(infos, &allocated_infos,
                                           sizeof *infos);
                    }
                    infos[n_infos].mark = mark;
                    infos[n_infos].dpid = dpid;
                    infos[n_infos].bridge = xstrdup(br->name);
                    n_infos++;
                }
            }
        }
    }

    struct mark_claim *claims = xcalloc(n_infos + 1, sizeof *claims);
    for (size_t i = 0; i < n_infos; i++) {
        claims[i] = (struct mark_claim) {
            .id = infos[i].mark.client_id,
            .dpid = infos[i].dpid,
            .ofport = infos[i].mark.ofport,
            .iface = infos[i].mark.iface,
            .gateway = mark_is_gateway(&infos[i].mark),
        };
    }
    mark_owners_resolve(marks->owners, claims, n_infos);

    struct sset conflicts = SSET_INITIALIZER(&conflicts);
    shash_clear_free_data(&marks->clients);
    for (size_t i = 0; i < n_infos; i++) {
        const struct claim_info *info = &infos[i];
        const struct claim_info *owner = &infos[claims[i].owner];
        char *key = conflict_key(info->dpid, info->mark.iface);

        if (claims[i].owner == i) {
            struct client_port *cp = shash_find_data(&marks->clients,
                                                     info->mark.client_id);

            if (!cp) {
                cp = xmalloc(sizeof *cp);
                cp->dpid = info->dpid;
                cp->ofport = info->mark.ofport;
                shash_add(&marks->clients, info->mark.client_id, cp);
            } else if (cp->dpid == info->dpid
                       && ofp_to_u16(info->mark.ofport)
                          < ofp_to_u16(cp->ofport)) {
                /* A bridge's gateway ports: the first one. */
                cp->ofport = info->mark.ofport;
            }
            if (sset_contains(&marks->conflicts, key)) {
                VLOG_INFO("interface %s on bridge %s now holds pairkey-id "
                          "'%s'", info->mark.iface, info->bridge,
                          info->mark.client_id);
            }
        } else {
            char *reason = xasprintf("pairkey-id '%s' is already taken by "
                                     "interface %s on bridge %s (port %"
                                     PRIu16")", info->mark.client_id,
                                     owner->mark.iface, owner->bridge,
                                     ofp_to_u16(owner->mark.ofport));

            if (!sset_contains(&marks->conflicts, key)) {
                VLOG_ERR("interface %s on bridge %s (port %"PRIu16"): %s; "
                         "mark refused", info->mark.iface, info->bridge,
                         ofp_to_u16(info->mark.ofport), reason);
            }
            sset_add(&conflicts, key);
            add_refused(marks, &allocated_refused, info->mark.iface,
                        info->bridge, info->mark.ofport, reason);
        }
        free(key);
    }
    sset_swap(&conflicts, &marks->conflicts);
    sset_destroy(&conflicts);

    for (size_t i = 0; i < n_infos; i++) {
        marks_free_one(&infos[i].mark);
        free(infos[i].bridge);
    }
    free(infos);
    free(claims);
    marks->clients_seqno = marks->seqno;
}

bool
marks_find_client(const struct marks *marks, const char *id,
                  uint64_t *dpid, ofp_port_t *ofport)
{
    const struct client_port *cp;

    ensure_index(marks);
    cp = shash_find_data(&marks->clients, id);
    if (cp) {
        *dpid = cp->dpid;
        *ofport = cp->ofport;
    }
    return cp != NULL;
}

size_t
marks_n_refused(const struct marks *marks)
{
    ensure_index(marks);
    return marks->n_refused;
}

void
marks_format_refused(const struct marks *marks, struct ds *s)
{
    ensure_index(marks);
    for (size_t i = 0; i < marks->n_refused; i++) {
        const struct refused_mark *r = &marks->refused[i];

        ds_put_format(s, "  %s (bridge %s", r->iface, r->bridge);
        if (r->ofport != OFPP_NONE) {
            ds_put_format(s, ", port %"PRIu16, ofp_to_u16(r->ofport));
        }
        ds_put_format(s, "): %s\n", r->reason);
    }
}

/* Who holds each id. */

struct mark_owners *
mark_owners_create(void)
{
    struct mark_owners *owners = xmalloc(sizeof *owners);

    shash_init(&owners->ids);
    return owners;
}

static void
mark_owner_free(struct mark_owner *owner)
{
    if (owner) {
        free(owner->iface);
        free(owner);
    }
}

static void
mark_owners_clear(struct shash *ids)
{
    struct shash_node *node;

    SHASH_FOR_EACH_SAFE (node, ids) {
        mark_owner_free(node->data);
        shash_delete(ids, node);
    }
}

void
mark_owners_destroy(struct mark_owners *owners)
{
    if (owners) {
        mark_owners_clear(&owners->ids);
        shash_destroy(&owners->ids);
        free(owners);
    }
}

/* True if claim 'c' is by 'owner': the same client port, or a gateway port
 * of the same bridge. */
static bool
owner_claims(const struct mark_owner *owner, const struct mark_claim *c)
{
    return (owner->gateway == c->gateway && owner->dpid == c->dpid
            && (c->gateway || !strcmp(owner->iface, c->iface)));
}

static struct mark_owner *
owner_of(const struct mark_claim *c)
{
    struct mark_owner *owner = xmalloc(sizeof *owner);

    owner->dpid = c->dpid;
    owner->gateway = c->gateway;
    owner->iface = c->gateway ? NULL : xstrdup(c->iface);
    return owner;
}

/* Orders claims by id, then datapath id, then port. */
static int
compare_claims(const void *a_, const void *b_, void *claims_)
{
    const struct mark_claim *claims = claims_;
    const size_t *ia = a_, *ib = b_;
    const struct mark_claim *a = &claims[ia[0]];
    const struct mark_claim *b = &claims[ib[0]];
    int cmp = strcmp(a->id, b->id);

    if (cmp) {
        return cmp;
    } else if (a->dpid != b->dpid) {
        return a->dpid < b->dpid ? -1 : 1;
    } else {
        uint16_t pa = ofp_to_u16(a->ofport), pb = ofp_to_u16(b->ofport);

        return pa < pb ? -1 : pa > pb;
    }
}

void
mark_owners_resolve(struct mark_owners *owners, struct mark_claim *claims,
                    size_t n)
{
    struct shash ids = SHASH_INITIALIZER(&ids);
    size_t *order = xcalloc(n + 1, sizeof *order);

    for (size_t k = 0; k < n; k++) {
        order[k] = k;
    }
    qsort_r(order, n, sizeof *order, compare_claims, claims);

    size_t i = 0;
    while (i < n) {
        const char *id = claims[order[i]].id;
        size_t end = i;

        while (end < n && !strcmp(claims[order[end]].id, id)) {
            end++;
        }

        /* The holder keeps its id while it claims it; otherwise the first
         * claim in order takes it. */
        struct mark_owner *owner = shash_find_and_delete(&owners->ids, id);
        size_t winner = order[i];
        for (size_t k = i; owner && k < end; k++) {
            if (owner_claims(owner, &claims[order[k]])) {
                winner = order[k];
                break;
            }
        }
        mark_owner_free(owner);
        owner = owner_of(&claims[winner]);
        shash_add(&ids, id, owner);

        for (size_t k = i; k < end; k++) {
            struct mark_claim *c = &claims[order[k]];

            c->owner = owner_claims(owner, c) ? order[k] : winner;
        }
        i = end;
    }
    free(order);

    /* Ids that no port claims any more are forgotten. */
    mark_owners_clear(&owners->ids);
    shash_swap(&owners->ids, &ids);
    shash_destroy(&ids);
}
