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
#include "cascade.h"

#include <string.h>

#include "jsonrpc.h"
#include "keyserver.h"
#include "openvswitch/json.h"
#include "openvswitch/list.h"
#include "openvswitch/shash.h"
#include "openvswitch/vlog.h"
#include "packets.h"
#include "peers.h"
#include "timeval.h"
#include "util.h"

VLOG_DEFINE_THIS_MODULE(cascade);

static struct vlog_rate_limit rl = VLOG_RATE_LIMIT_INIT(5, 20);

/* An unanswered request to the authority.  Asked again, if needed, once it
 * is this old. */
#define PENDING_MSEC 3000

enum ask {
    ASK_SYNC,
    ASK_PAIR,
    ASK_GROUP,
};

struct pending {
    struct ovs_list list_node;  /* In struct cascade's 'pending'. */
    struct json *id;
    enum ask what;
    char a[STORE_ID_MAX_LEN + 1];       /* ASK_PAIR. */
    char b[STORE_ID_MAX_LEN + 1];
    long long int sent;
};

struct cascade {
    struct store *store;
    struct keyserver *ks;
    struct peers *peers;
    char *authority;            /* Our authority's name, or NULL. */
    struct ovs_list pending;    /* Contains "struct pending"s. */
    bool resync;                /* Sync again once the current one ends. */
};

struct cascade *
cascade_create(struct store *store, struct keyserver *ks,
               struct peers *peers)
{
    struct cascade *c = xzalloc(sizeof *c);

    c->store = store;
    c->ks = ks;
    c->peers = peers;
    ovs_list_init(&c->pending);
    cascade_reload(c);
    return c;
}

static void
pending_free(struct pending *p)
{
    ovs_list_remove(&p->list_node);
    json_destroy(p->id);
    free(p);
}

static void
drop_pending(struct cascade *c)
{
    struct pending *p;

    LIST_FOR_EACH_SAFE (p, list_node, &c->pending) {
        pending_free(p);
    }
}

void
cascade_destroy(struct cascade *c)
{
    if (c) {
        drop_pending(c);
        free(c->authority);
        free(c);
    }
}

void
cascade_reload(struct cascade *c)
{
    struct store_peer *list;
    size_t n;

    free(c->authority);
    c->authority = NULL;
    store_list_peers(c->store, &list, &n);
    for (size_t i = 0; i < n; i++) {
        if (list[i].kind == STORE_PEER_AUTHORITY) {
            c->authority = xstrdup(list[i].name);
        }
    }
    free(list);
}

const char *
cascade_authority(const struct cascade *c)
{
    return c->authority;
}

static struct json *
params_pair(const char *a, const char *b)
{
    return json_array_create_2(json_string_create(a), json_string_create(b));
}

/* Member side. */

static bool
same_pair(const struct pending *p, const char *a, const char *b)
{
    return ((!strcmp(p->a, a) && !strcmp(p->b, b))
            || (!strcmp(p->a, b) && !strcmp(p->b, a)));
}

/* An unanswered, recent request like this one, if any. */
static struct pending *
find_pending(const struct cascade *c, enum ask what, const char *a,
             const char *b)
{
    long long int now = time_msec();
    struct pending *p;

    LIST_FOR_EACH (p, list_node, &c->pending) {
        if (p->what == what && now < p->sent + PENDING_MSEC
            && (what != ASK_PAIR || same_pair(p, a, b))) {
            return p;
        }
    }
    return NULL;
}

static void
ask(struct cascade *c, enum ask what, const char *method,
    struct json *params, const char *a, const char *b)
{
    struct pending *p = xzalloc(sizeof *p);
    struct jsonrpc_msg *msg;

    msg = jsonrpc_create_request(method, params, &p->id);
    if (!c->authority || !peers_send_to_authority(c->peers, msg)) {
        VLOG_WARN_RL(&rl, "no link to authority %s: cannot ask for %s",
                     c->authority ? c->authority : "(none)", method);
        json_destroy(p->id);
        free(p);
        return;
    }
    p->what = what;
    ovs_strlcpy(p->a, a ? a : "", sizeof p->a);
    ovs_strlcpy(p->b, b ? b : "", sizeof p->b);
    p->sent = time_msec();
    ovs_list_push_back(&c->pending, &p->list_node);
}

static void
ask_sync(struct cascade *c)
{
    if (find_pending(c, ASK_SYNC, NULL, NULL)) {
        c->resync = true;
    } else {
        ask(c, ASK_SYNC, "sync", json_array_create_empty(), NULL, NULL);
    }
}

void
cascade_ask_pair(struct cascade *c, const char *a, const char *b,
                 uint32_t above, bool create)
{
    struct json *params;

    if (find_pending(c, ASK_PAIR, a, b)) {
        return;
    }
    params = json_array_create_empty();
    json_array_add(params, json_string_create(a));
    json_array_add(params, json_string_create(b));
    json_array_add(params, json_integer_create(above));
    json_array_add(params, json_boolean_create(create));
    ask(c, ASK_PAIR, "pair", params, a, b);
}

void
cascade_ask_group(struct cascade *c, uint32_t above)
{
    if (!find_pending(c, ASK_GROUP, NULL, NULL)) {
        ask(c, ASK_GROUP, "group",
            json_array_create_1(json_integer_create(above)), NULL, NULL);
    }
}

void
cascade_link_up(struct cascade *c, const char *peer,
                enum store_peer_kind kind)
{
    if (kind == STORE_PEER_AUTHORITY && c->authority
        && !strcmp(peer, c->authority)) {
        /* What was asked on an earlier link will not be answered. */
        drop_pending(c);
        ask_sync(c);
    }
}

/* Makes the store's clients those of the authority's list 'clients'. */
static void
sync_clients(struct cascade *c, const struct json *clients)
{
    struct store_client *local;
    struct shash macs = SHASH_INITIALIZER(&macs);
    size_t n;

    for (size_t i = 0; i < json_array(clients)->n; i++) {
        const struct json *e = json_array(clients)->elems[i];
        const struct json *id, *mac;

        if (e->type != JSON_ARRAY || json_array(e)->n != 2) {
            continue;
        }
        id = json_array(e)->elems[0];
        mac = json_array(e)->elems[1];
        if (id->type == JSON_STRING && mac->type == JSON_STRING
            && store_id_is_valid(json_string(id))) {
            shash_add_once(&macs, json_string(id), json_string(mac));
        }
    }

    /* Gone, or with another MAC: deleted with their keys. */
    store_list_clients(c->store, &local, &n);
    for (size_t i = 0; i < n; i++) {
        const char *mac_s = shash_find_data(&macs, local[i].id);
        struct eth_addr mac;
        int64_t *pairs;
        size_t n_pairs;
        char *error;

        if (local[i].gateway
            || (mac_s && eth_addr_from_string(mac_s, &mac)
                && eth_addr_equals(mac, local[i].mac))) {
            continue;
        }
        error = store_del_client(c->store, local[i].id, &pairs, &n_pairs);
        if (error) {
            VLOG_WARN_RL(&rl, "mirroring authority's clients: %s", error);
            free(error);
            continue;
        }
        VLOG_INFO("client %s left (authority %s)", local[i].id,
                  c->authority);
        keyserver_client_removed(c->ks, local[i].mac, pairs, n_pairs);
        free(pairs);
    }
    free(local);

    /* New. */
    struct shash_node *node;
    SHASH_FOR_EACH (node, &macs) {
        struct store_client client;
        struct eth_addr mac;
        char *error;

        if (store_find_client_by_id(c->store, node->name, &client)
            || !eth_addr_from_string(node->data, &mac)) {
            continue;
        }
        error = store_add_client(c->store, node->name, mac);
        if (error) {
            VLOG_WARN_RL(&rl, "mirroring authority's clients: %s", error);
            free(error);
            continue;
        }
        VLOG_INFO("client %s enrolled (authority %s)", node->name,
                  c->authority);
        keyserver_client_added(c->ks, mac);
    }
    shash_destroy(&macs);
}

/* Stores the group key 'json' from the authority. */
static void
take_group(struct cascade *c, const struct json *json)
{
    struct store_group_key gk, old;
    uint32_t had = 0;
    char *error;

    memset(&gk, 0, sizeof gk);
    if (!peers_key_from_json(json, &gk.version, gk.key)) {
        VLOG_WARN_RL(&rl, "authority %s: malformed group key", c->authority);
        return;
    }
    error = store_get_group_key(c->store, &old);
    if (!error) {
        had = old.version;
        store_key_wipe(&old, sizeof old);
    }
    free(error);
    gk.updated = time_wall_msec();
    error = store_put_group_key(c->store, &gk);
    if (error) {
        VLOG_WARN_RL(&rl, "authority %s: %s", c->authority, error);
        free(error);
    } else if (gk.version > had) {
        keyserver_group_obtained(c->ks);
    }
    store_key_wipe(&gk, sizeof gk);
}

/* Stores the pair key 'result' from the authority.  Returns false if it is
 * malformed. */
static bool
take_pair(struct cascade *c, const struct json *result,
          const struct pending *p)
{
    const struct json *a, *b, *id;
    struct store_pair_key pk;
    char *error;

    memset(&pk, 0, sizeof pk);
    if (!result || result->type != JSON_OBJECT) {
        return false;
    }
    a = shash_find_data(json_object(result), "a");
    b = shash_find_data(json_object(result), "b");
    id = shash_find_data(json_object(result), "id");
    if (!a || a->type != JSON_STRING || !b || b->type != JSON_STRING
        || !id || id->type != JSON_INTEGER || json_integer(id) < 1
        || !same_pair(p, json_string(a), json_string(b))
        || !peers_key_from_json(result, &pk.version, pk.key)) {
        return false;
    }
    pk.pair_id = json_integer(id);
    ovs_strlcpy(pk.id_a, json_string(a), sizeof pk.id_a);
    ovs_strlcpy(pk.id_b, json_string(b), sizeof pk.id_b);
    pk.created = pk.updated = time_wall_msec();
    error = store_put_pair_key(c->store, &pk);
    store_key_wipe(&pk, sizeof pk);
    if (error) {
        VLOG_WARN_RL(&rl, "authority %s: %s", c->authority, error);
        free(error);
        keyserver_pair_refused(c->ks, p->a, p->b);
    } else {
        keyserver_pair_obtained(c->ks, p->a, p->b);
    }
    return true;
}

static void
take_reply(struct cascade *c, struct pending *p,
           const struct jsonrpc_msg *msg)
{
    const struct json *result = msg->result;

    if (msg->type == JSONRPC_ERROR) {
        char *s = json_to_string(msg->error, 0);

        VLOG_WARN_RL(&rl, "authority %s refused %s%s%s%s: %s", c->authority,
                     p->what == ASK_SYNC ? "to sync"
                     : p->what == ASK_GROUP ? "the group key" : "pair ",
                     p->a, p->what == ASK_PAIR ? " and " : "", p->b, s);
        free(s);
        if (p->what == ASK_PAIR) {
            keyserver_pair_refused(c->ks, p->a, p->b);
        }
        return;
    }

    switch (p->what) {
    case ASK_SYNC:
        if (result && result->type == JSON_OBJECT) {
            const struct json *clients, *group;

            clients = shash_find_data(json_object(result), "clients");
            group = shash_find_data(json_object(result), "group");
            if (clients && clients->type == JSON_ARRAY) {
                sync_clients(c, clients);
            }
            if (group) {
                take_group(c, group);
            }
        }
        break;
    case ASK_PAIR:
        if (!take_pair(c, result, p)) {
            VLOG_WARN_RL(&rl, "authority %s: malformed pair key reply",
                         c->authority);
            keyserver_pair_refused(c->ks, p->a, p->b);
        }
        break;
    case ASK_GROUP:
        take_group(c, result);
        break;
    }
}

bool
cascade_take(struct cascade *c, const struct jsonrpc_msg *msg)
{
    if (msg->type == JSONRPC_NOTIFY) {
        const struct json *params = msg->params;

        if (!strcmp(msg->method, "changed")) {
            ask_sync(c);
            return true;
        } else if ((!strcmp(msg->method, "revoked")
                    || !strcmp(msg->method, "rotated"))
                   && params && params->type == JSON_ARRAY
                   && json_array(params)->n == 2
                   && json_array(params)->elems[0]->type == JSON_STRING
                   && json_array(params)->elems[1]->type == JSON_STRING) {
            const char *a = json_string(json_array(params)->elems[0]);
            const char *b = json_string(json_array(params)->elems[1]);
            struct store_pair_key pk;

            if (!store_find_pair_key_by_ids(c->store, a, b, &pk)) {
                return true;            /* Not one of ours. */
            }
            store_key_wipe(&pk, sizeof pk);
            if (!strcmp(msg->method, "rotated")) {
                cascade_ask_pair(c, a, b, 0, false);
            } else {
                int64_t pair_id;
                char *error = store_revoke_pair(c->store, a, b, &pair_id);

                if (error) {
                    VLOG_WARN_RL(&rl, "authority %s revoked %s and %s: %s",
                                 c->authority, a, b, error);
                    free(error);
                } else {
                    VLOG_INFO("authority %s revoked key %"PRId64,
                              c->authority, pair_id);
                    keyserver_pair_revoked(c->ks, pair_id);
                }
            }
            return true;
        }
        return false;
    } else if (msg->type == JSONRPC_REPLY || msg->type == JSONRPC_ERROR) {
        struct pending *p;

        LIST_FOR_EACH (p, list_node, &c->pending) {
            if (msg->id && json_equal(msg->id, p->id)) {
                bool sync = p->what == ASK_SYNC;

                take_reply(c, p, msg);
                pending_free(p);
                if (sync && c->resync) {
                    c->resync = false;
                    ask_sync(c);
                }
                return true;
            }
        }
    }
    return false;
}

/* Authority side. */

static struct json *
answer_sync(struct cascade *c, char **error)
{
    struct json *clients = json_array_create_empty();
    struct json *result = json_object_create();
    struct store_group_key gk;
    struct store_client *list;
    size_t n;

    store_list_clients(c->store, &list, &n);
    for (size_t i = 0; i < n; i++) {
        if (!list[i].gateway) {
            char mac[ETH_ADDR_STRLEN + 1];

            snprintf(mac, sizeof mac, ETH_ADDR_FMT,
                     ETH_ADDR_ARGS(list[i].mac));
            json_array_add(clients, json_array_create_2(
                               json_string_create(list[i].id),
                               json_string_create(mac)));
        }
    }
    free(list);
    json_object_put(result, "clients", clients);

    *error = store_get_group_key(c->store, &gk);
    if (!*error) {
        json_object_put(result, "group",
                        peers_key_to_json(gk.version, gk.key));
        store_key_wipe(&gk, sizeof gk);
    }
    return result;
}

/* Parses 'params' [A, B, ABOVE, CREATE] of a "pair" request. */
static bool
parse_pair_params(const struct json *params, const char **a, const char **b,
                  uint32_t *above, bool *create)
{
    const struct json **e;

    if (!params || params->type != JSON_ARRAY
        || json_array(params)->n != 4) {
        return false;
    }
    e = (const struct json **) json_array(params)->elems;
    if (e[0]->type != JSON_STRING || !store_id_is_valid(json_string(e[0]))
        || e[1]->type != JSON_STRING || !store_id_is_valid(json_string(e[1]))
        || e[2]->type != JSON_INTEGER || json_integer(e[2]) < 0
        || json_integer(e[2]) > UINT32_MAX
        || (e[3]->type != JSON_TRUE && e[3]->type != JSON_FALSE)) {
        return false;
    }
    *a = json_string(e[0]);
    *b = json_string(e[1]);
    *above = json_integer(e[2]);
    *create = e[3]->type == JSON_TRUE;
    return true;
}

static struct json *
answer_pair(struct cascade *c, const char *member, const struct json *params,
            char **error)
{
    struct store_pair_key pk;
    struct json *result;
    const char *a, *b;
    uint32_t above;
    bool create;

    if (!parse_pair_params(params, &a, &b, &above, &create)) {
        *error = xstrdup("malformed pair request");
        return NULL;
    }
    *error = keyserver_obtain_pair(c->ks, a, b, above, create, member, &pk);
    if (*error) {
        return NULL;
    }
    if (pk.version > above && above) {
        /* Rotated for this member: the other end may be another's. */
        struct json *pair = params_pair(a, b);

        peers_notify_members(c->peers, "rotated", pair);
        json_destroy(pair);
    }
    result = peers_key_to_json(pk.version, pk.key);
    json_object_put_string(result, "a", pk.id_a);
    json_object_put_string(result, "b", pk.id_b);
    json_object_put(result, "id", json_integer_create(pk.pair_id));
    store_key_wipe(&pk, sizeof pk);
    return result;
}

static struct json *
answer_group(struct cascade *c, const struct json *params, char **error)
{
    struct store_group_key gk;
    struct json *result;
    const struct json *v;

    v = (params && params->type == JSON_ARRAY && json_array(params)->n == 1
         ? json_array(params)->elems[0] : NULL);
    if (!v || v->type != JSON_INTEGER || json_integer(v) < 0
        || json_integer(v) > UINT32_MAX) {
        *error = xstrdup("malformed group request");
        return NULL;
    }
    *error = keyserver_obtain_group(c->ks, json_integer(v), &gk);
    if (*error) {
        return NULL;
    }
    if (gk.version > json_integer(v) && json_integer(v)) {
        /* Rotated: every member's bridges need the new version. */
        peers_notify_members(c->peers, "changed", NULL);
    }
    result = peers_key_to_json(gk.version, gk.key);
    store_key_wipe(&gk, sizeof gk);
    return result;
}

struct jsonrpc_msg *
cascade_answer(struct cascade *c, const char *member,
               const struct jsonrpc_msg *request)
{
    struct json *result = NULL;
    char *error = NULL;

    if (c->authority) {
        error = xasprintf("%s is itself a member", c->authority);
    } else if (!strcmp(request->method, "sync")) {
        result = answer_sync(c, &error);
    } else if (!strcmp(request->method, "pair")) {
        result = answer_pair(c, member, request->params, &error);
    } else if (!strcmp(request->method, "group")) {
        result = answer_group(c, request->params, &error);
    } else {
        error = xstrdup("unknown method");
    }

    if (error) {
        struct jsonrpc_msg *reply;

        VLOG_INFO_RL(&rl, "member %s: %s: %s", member, request->method,
                     error);
        json_destroy(result);
        reply = jsonrpc_create_error(json_string_create(error), request->id);
        free(error);
        return reply;
    }
    return jsonrpc_create_reply(result, request->id);
}

void
cascade_clients_changed(struct cascade *c)
{
    peers_notify_members(c->peers, "changed", NULL);
}

void
cascade_pair_revoked(struct cascade *c, const char *a, const char *b)
{
    struct json *params = params_pair(a, b);

    peers_notify_members(c->peers, "revoked", params);
    json_destroy(params);
}
