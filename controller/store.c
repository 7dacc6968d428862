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
#include "store.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crypt-frame.h"
#include "openvswitch/dynamic-string.h"
#include "openvswitch/util.h"
#include "openvswitch/vlog.h"
#include "packets.h"
#include "timeval.h"
#include "util.h"

VLOG_DEFINE_THIS_MODULE(store);

/* schema_sql[], migrations[], SCHEMA_VERSION: generated from schema/. */
#include "schema.inc"

/* How long to wait for another connection's write lock. */
#define STORE_BUSY_TIMEOUT_MS 5000

/* Every statement this module runs after opening, prepared once in
 * store_open() and bound by parameter name. */
#define CLIENT_COLS "id, mac, created, kind"
#define OUTSIDE_COLS "mac, gateway, learned"
#define PAIR_COLS "pair_id, id_a, id_b, version, key, created, updated"
#define AUDIT_COLS \
    "seq, time, event, id_a, id_b, version, switch, reason, kcv"
#define PEER_COLS "name, remote, created, kind"

#define STORE_STMTS                                                       \
    STMT(BEGIN, "BEGIN IMMEDIATE")                                        \
    STMT(COMMIT, "COMMIT")                                                \
    STMT(ROLLBACK, "ROLLBACK")                                            \
    STMT(SAVEPOINT, "SAVEPOINT store_op")                                 \
    STMT(RELEASE, "RELEASE store_op")                                     \
    STMT(ROLLBACK_TO, "ROLLBACK TO store_op")                             \
    STMT(CLIENT_BY_ID,                                                    \
         "SELECT " CLIENT_COLS " FROM clients WHERE id = :id")            \
    STMT(CLIENT_BY_MAC,                                                   \
         "SELECT " CLIENT_COLS " FROM clients WHERE mac = :mac")          \
    STMT(CLIENT_LIST,                                                     \
         "SELECT " CLIENT_COLS " FROM clients WHERE kind = 'client'"      \
         " ORDER BY id")                                                  \
    STMT(CLIENT_COUNT,                                                    \
         "SELECT count(*) FROM clients WHERE kind = 'client'")            \
    STMT(GATEWAY_LIST,                                                    \
         "SELECT " CLIENT_COLS " FROM clients WHERE kind = 'gateway'"     \
         " ORDER BY id")                                                  \
    STMT(GATEWAY_INSERT,                                                  \
         "INSERT INTO clients (id, mac, created, kind)"                   \
         " VALUES (:id, NULL, :now, 'gateway')")                          \
    STMT(OUTSIDE_BY_MAC,                                                  \
         "SELECT " OUTSIDE_COLS " FROM outside_macs WHERE mac = :mac")    \
    STMT(OUTSIDE_LIST,                                                    \
         "SELECT " OUTSIDE_COLS " FROM outside_macs ORDER BY mac")        \
    STMT(OUTSIDE_PUT,                                                     \
         "INSERT INTO outside_macs (mac, gateway, learned)"               \
         " VALUES (:mac, :gateway, :now) ON CONFLICT (mac)"               \
         " DO UPDATE SET gateway = excluded.gateway,"                     \
         " learned = excluded.learned")                                   \
    STMT(OUTSIDE_DELETE, "DELETE FROM outside_macs WHERE mac = :mac")     \
    STMT(PAIR_DELETE, "DELETE FROM pair_keys WHERE pair_id = :pair_id")   \
    STMT(REVOKED_GET,                                                     \
         "SELECT time FROM revoked_pairs"                                 \
         " WHERE id_a = :id_a AND id_b = :id_b")                          \
    STMT(REVOKED_PUT,                                                     \
         "INSERT INTO revoked_pairs (id_a, id_b, time)"                   \
         " VALUES (:id_a, :id_b, :now) ON CONFLICT (id_a, id_b)"          \
         " DO UPDATE SET time = excluded.time")                           \
    STMT(PEER_BY_NAME,                                                    \
         "SELECT " PEER_COLS " FROM peers WHERE name = :name")            \
    STMT(PEER_BY_KIND,                                                    \
         "SELECT " PEER_COLS " FROM peers WHERE kind = :kind"             \
         " ORDER BY name LIMIT 1")                                        \
    STMT(PEER_LIST,                                                       \
         "SELECT " PEER_COLS " FROM peers ORDER BY name")                 \
    STMT(PEER_INSERT,                                                     \
         "INSERT INTO peers (name, remote, created, kind)"                \
         " VALUES (:name, :remote, :now, :kind)")                         \
    STMT(PEER_DELETE, "DELETE FROM peers WHERE name = :name")             \
    STMT(NETKEY_GET,                                                      \
         "SELECT version, key, updated FROM netkeys WHERE peer = :peer")  \
    STMT(NETKEY_PUT,                                                      \
         "INSERT INTO netkeys (peer, version, key, updated)"              \
         " VALUES (:peer, :version, :key, :now) ON CONFLICT (peer)"       \
         " DO UPDATE SET version = excluded.version, key = excluded.key," \
         " updated = excluded.updated")                                   \
    STMT(CLIENT_INSERT,                                                   \
         "INSERT INTO clients (id, mac, created)"                         \
         " VALUES (:id, :mac, :now)")                                     \
    STMT(CLIENT_DELETE, "DELETE FROM clients WHERE id = :id")             \
    STMT(PAIR_BY_ID,                                                      \
         "SELECT " PAIR_COLS " FROM pair_keys WHERE pair_id = :pair_id")  \
    STMT(PAIR_BY_IDS,                                                     \
         "SELECT " PAIR_COLS " FROM pair_keys"                            \
         " WHERE id_a = :id_a AND id_b = :id_b")                          \
    STMT(PAIR_LIST,                                                       \
         "SELECT " PAIR_COLS " FROM pair_keys ORDER BY pair_id")          \
    STMT(PAIR_LIST_CLIENT,                                                \
         "SELECT " PAIR_COLS " FROM pair_keys"                            \
         " WHERE id_a = :id OR id_b = :id ORDER BY pair_id")              \
    STMT(PAIR_IDS_CLIENT,                                                 \
         "SELECT pair_id FROM pair_keys"                                  \
         " WHERE id_a = :id OR id_b = :id ORDER BY pair_id")              \
    STMT(PAIR_COUNT, "SELECT count(*) FROM pair_keys")                    \
    STMT(PAIR_LAST_ID,                                                    \
         "SELECT seq FROM sqlite_sequence WHERE name = 'pair_keys'")      \
    STMT(PAIR_INSERT,                                                     \
         "INSERT INTO pair_keys (id_a, id_b, version, key, created,"      \
         " updated) VALUES (:id_a, :id_b, 1, :key, :now, :now)")          \
    STMT(PAIR_UPDATE,                                                     \
         "UPDATE pair_keys SET version = :version, key = :key,"           \
         " updated = :now WHERE pair_id = :pair_id")                      \
    STMT(PAIR_PUT,                                                        \
         "INSERT INTO pair_keys (" PAIR_COLS ") VALUES (:pair_id, :id_a," \
         " :id_b, :version, :key, :created, :now)")                       \
    STMT(GROUP_GET,                                                       \
         "SELECT version, key, updated FROM group_key WHERE id = 1")      \
    STMT(GROUP_INSERT,                                                    \
         "INSERT INTO group_key (id, version, key, updated)"              \
         " VALUES (1, 1, :key, :now)")                                    \
    STMT(GROUP_UPDATE,                                                    \
         "UPDATE group_key SET version = :version, key = :key,"           \
         " updated = :now WHERE id = 1")                                  \
    STMT(GROUP_PUT,                                                       \
         "INSERT INTO group_key (id, version, key, updated)"              \
         " VALUES (1, :version, :key, :now) ON CONFLICT (id)"             \
         " DO UPDATE SET version = excluded.version, key = excluded.key," \
         " updated = excluded.updated")                                   \
    STMT(AUDIT_INSERT,                                                    \
         "INSERT INTO audit (time, event, id_a, id_b, version, switch,"   \
         " reason, kcv) VALUES (:now, :event, :id_a, :id_b, :version,"    \
         " :switch, :reason, :kcv)")                                      \
    STMT(AUDIT_REVOKE_CLIENT,                                             \
         "INSERT INTO audit (time, event, id_a, id_b, version, reason)"   \
         " SELECT :now, 'revoke', id_a, id_b, version, :reason"           \
         " FROM pair_keys WHERE id_a = :id OR id_b = :id"                 \
         " ORDER BY pair_id")                                             \
    STMT(AUDIT_LIST,                                                      \
         "SELECT " AUDIT_COLS " FROM audit WHERE time >= :since"          \
         " ORDER BY seq")

enum store_stmt {
#define STMT(NAME, SQL) S_##NAME,
    STORE_STMTS
#undef STMT
    N_STORE_STMTS
};

static const char *const store_stmt_sql[N_STORE_STMTS] = {
#define STMT(NAME, SQL) SQL,
    STORE_STMTS
#undef STMT
};

struct store {
    sqlite3 *db;                /* The one connection to the database. */
    char *path;                 /* File name, for messages. */
    int schema_version;         /* PRAGMA user_version after opening. */
    sqlite3_stmt *stmts[N_STORE_STMTS]; /* Indexed by enum store_stmt. */

    /* Batches. */
    bool batch;                 /* Between batch begin and commit. */
    bool batch_open;            /* The batch's transaction has begun. */
    char *batch_error;          /* Why the whole batch failed, or NULL. */

    /* What the current operation is, for database error messages, e.g.
     * "cannot add client 'bob'". */
    char op[256];
};

static struct vlog_rate_limit rl = VLOG_RATE_LIMIT_INIT(5, 5);

/* Messages. */

/* Returns a new error message "<path>: <what>: <SQLite's message>". */
static char * OVS_WARN_UNUSED_RESULT
db_error(const struct store *store, const char *what)
{
    return xasprintf("%s: %s: %s", store->path, what,
                     sqlite3_errmsg(store->db));
}

/* Names the operation that is starting, for database error messages.
 * Only ever called with valid client IDs, which are short and printable. */
static void OVS_PRINTF_FORMAT(2, 3)
set_op(struct store *store, const char *format, ...)
{
    va_list args;

    va_start(args, format);
    vsnprintf(store->op, sizeof store->op, format, args);
    va_end(args);
}

/* Logs and frees 'error', if nonnull: for lookups, whose callers only need
 * to know whether something was found. */
static void
log_error(char *error)
{
    if (error) {
        VLOG_ERR_RL(&rl, "%s", error);
        free(error);
    }
}

/* Returns a copy of user input 's' that is safe to print on one line:
 * truncated, with non-printable bytes written as \xNN. */
char *
store_quote_input(const char *s)
{
    struct ds q = DS_EMPTY_INITIALIZER;
    size_t i;

    for (i = 0; s[i] && i < 4 * STORE_ID_MAX_LEN; i++) {
        unsigned char c = s[i];

        if (c < 0x20 || c >= 0x7f || c == '\\' || c == '\'') {
            ds_put_format(&q, "\\x%02x", c);
        } else {
            ds_put_char(&q, c);
        }
    }
    if (s[i]) {
        ds_put_cstr(&q, "...");
    }
    return ds_steal_cstr(&q);
}

bool
store_id_is_valid(const char *id)
{
    size_t len;

    if (!id) {
        return false;
    }
    len = strlen(id);
    if (len < 1 || len > STORE_ID_MAX_LEN) {
        return false;
    }
    return strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                  "0123456789._-") == len;
}

/* Returns NULL if 'id' is a valid client ID, otherwise an error. */
static char * OVS_WARN_UNUSED_RESULT
check_id(const char *id)
{
    if (!id) {
        return xstrdup("missing client ID");
    } else if (!store_id_is_valid(id)) {
        char *q = store_quote_input(id);
        char *error = xasprintf("client ID '%s' is not valid: use 1 to %d "
                                "letters, digits, '.', '_' or '-'",
                                q, STORE_ID_MAX_LEN);
        free(q);
        return error;
    }
    return NULL;
}

static void
mac_to_string(struct eth_addr mac, char s[ETH_ADDR_STRLEN + 1])
{
    snprintf(s, ETH_ADDR_STRLEN + 1, ETH_ADDR_FMT, ETH_ADDR_ARGS(mac));
}

/* Statements. */

static sqlite3_stmt *
stmt_get(const struct store *store, enum store_stmt i)
{
    return store->stmts[i];
}

/* Makes 'stmt' ready for its next use and forgets its parameters. */
static void
stmt_done(sqlite3_stmt *stmt)
{
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
}

static int
param(sqlite3_stmt *stmt, const char *name)
{
    int idx = sqlite3_bind_parameter_index(stmt, name);

    ovs_assert(idx > 0);
    return idx;
}

static void
bind_text(sqlite3_stmt *stmt, const char *name, const char *s)
{
    int idx = param(stmt, name);
    int rc = (s
              ? sqlite3_bind_text(stmt, idx, s, -1, SQLITE_TRANSIENT)
              : sqlite3_bind_null(stmt, idx));

    ovs_assert(rc == SQLITE_OK);
}

static void
bind_int64(sqlite3_stmt *stmt, const char *name, int64_t value)
{
    int rc = sqlite3_bind_int64(stmt, param(stmt, name), value);

    ovs_assert(rc == SQLITE_OK);
}

/* Binds 'key' without copying it: the caller must keep it until
 * stmt_done(). */
static void
bind_key(sqlite3_stmt *stmt, const char *name,
         const uint8_t key[STORE_KEY_LEN])
{
    int rc = sqlite3_bind_blob(stmt, param(stmt, name), key, STORE_KEY_LEN,
                               SQLITE_STATIC);

    ovs_assert(rc == SQLITE_OK);
}

static void
bind_mac(sqlite3_stmt *stmt, const char *name, struct eth_addr mac)
{
    char s[ETH_ADDR_STRLEN + 1];

    mac_to_string(mac, s);
    bind_text(stmt, name, s);
}

static void
bind_now(sqlite3_stmt *stmt)
{
    bind_int64(stmt, ":now", time_wall_msec());
}

/* Steps 'stmt' once.  Returns SQLITE_ROW or SQLITE_DONE, or another code
 * after storing an error message in '*errorp'. */
static int
stmt_step(const struct store *store, sqlite3_stmt *stmt, char **errorp)
{
    int rc = sqlite3_step(stmt);

    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        *errorp = xasprintf("%s: %s: %s", store->op, store->path,
                            sqlite3_errmsg(store->db));
    }
    return rc;
}

/* Runs 'stmt', which must return no rows, to completion. */
static char * OVS_WARN_UNUSED_RESULT
stmt_exec(const struct store *store, sqlite3_stmt *stmt)
{
    char *error = NULL;
    int rc = stmt_step(store, stmt, &error);

    if (rc == SQLITE_ROW) {
        error = xasprintf("%s: unexpected result from \"%s\"", store->path,
                          sqlite3_sql(stmt));
    }
    stmt_done(stmt);
    return error;
}

static const char *
column_text(sqlite3_stmt *stmt, int col)
{
    const char *s = (const char *) sqlite3_column_text(stmt, col);

    return s ? s : "";
}

static void
column_strlcpy(sqlite3_stmt *stmt, int col, char *dst, size_t size)
{
    ovs_strlcpy(dst, column_text(stmt, col), size);
}

/* Copies the key in column 'col' into 'key'.  Returns false if the column
 * does not hold a key (the schema forbids that). */
static bool
column_key(sqlite3_stmt *stmt, int col, uint8_t key[STORE_KEY_LEN])
{
    if (sqlite3_column_type(stmt, col) != SQLITE_BLOB
        || sqlite3_column_bytes(stmt, col) != STORE_KEY_LEN) {
        return false;
    }
    memcpy(key, sqlite3_column_blob(stmt, col), STORE_KEY_LEN);
    return true;
}

static uint32_t
column_u32(sqlite3_stmt *stmt, int col)
{
    int64_t v = sqlite3_column_int64(stmt, col);

    return v >= 0 && v <= UINT32_MAX ? v : 0;
}

/* Row readers, for the column lists above. */

/* The *_from_row() functions take 'void *' so that list_rows() can call
 * them. */
static void
client_from_row(sqlite3_stmt *stmt, void *client_)
{
    struct store_client *client = client_;

    memset(client, 0, sizeof *client);
    column_strlcpy(stmt, 0, client->id, sizeof client->id);
    if (!eth_addr_from_string(column_text(stmt, 1), &client->mac)) {
        client->mac = eth_addr_zero;
    }
    client->created = sqlite3_column_int64(stmt, 2);
    client->gateway = !strcmp(column_text(stmt, 3), "gateway");
}

static void
outside_from_row(sqlite3_stmt *stmt, void *out_)
{
    struct store_outside *out = out_;

    memset(out, 0, sizeof *out);
    if (!eth_addr_from_string(column_text(stmt, 0), &out->mac)) {
        out->mac = eth_addr_zero;
    }
    column_strlcpy(stmt, 1, out->gateway, sizeof out->gateway);
    out->learned = sqlite3_column_int64(stmt, 2);
}

static char * OVS_WARN_UNUSED_RESULT
pair_from_row(const struct store *store, sqlite3_stmt *stmt,
              struct store_pair_key *pk)
{
    memset(pk, 0, sizeof *pk);
    pk->pair_id = sqlite3_column_int64(stmt, 0);
    column_strlcpy(stmt, 1, pk->id_a, sizeof pk->id_a);
    column_strlcpy(stmt, 2, pk->id_b, sizeof pk->id_b);
    pk->version = column_u32(stmt, 3);
    if (!column_key(stmt, 4, pk->key)) {
        return xasprintf("%s: pair %"PRId64" has no valid key", store->path,
                         pk->pair_id);
    }
    pk->created = sqlite3_column_int64(stmt, 5);
    pk->updated = sqlite3_column_int64(stmt, 6);
    return NULL;
}

static void
audit_from_row(sqlite3_stmt *stmt, struct store_audit *a)
{
    memset(a, 0, sizeof *a);
    a->seq = sqlite3_column_int64(stmt, 0);
    a->time = sqlite3_column_int64(stmt, 1);
    column_strlcpy(stmt, 2, a->event, sizeof a->event);
    column_strlcpy(stmt, 3, a->id_a, sizeof a->id_a);
    column_strlcpy(stmt, 4, a->id_b, sizeof a->id_b);
    a->version = column_u32(stmt, 5);
    column_strlcpy(stmt, 6, a->switch_name, sizeof a->switch_name);
    column_strlcpy(stmt, 7, a->reason, sizeof a->reason);
    column_strlcpy(stmt, 8, a->kcv, sizeof a->kcv);
}

/* Opening. */

static bool
store_sodium_init(void)
{
    static int status = -1;

    if (status < 0) {
        status = sodium_init() < 0 ? 0 : 1;
    }
    return status;
}

/* Runs 'sql', which may hold several statements and must not depend on
 * user input. */
static char * OVS_WARN_UNUSED_RESULT
exec_sql(const struct store *store, const char *sql, const char *what)
{
    char *msg = NULL;
    char *error = NULL;

    if (sqlite3_exec(store->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        error = xasprintf("%s: %s: %s", store->path, what,
                          msg ? msg : sqlite3_errmsg(store->db));
    }
    sqlite3_free(msg);
    return error;
}

/* Runs 'sql', a pragma or query that returns a single integer, and stores
 * it in '*valuep'. */
static char * OVS_WARN_UNUSED_RESULT
query_int(const struct store *store, const char *sql, int64_t *valuep)
{
    sqlite3_stmt *stmt;
    char *error = NULL;

    *valuep = 0;
    if (sqlite3_prepare_v2(store->db, sql, -1, &stmt, NULL) != SQLITE_OK) {
        return db_error(store, "cannot read database");
    }
    int rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
        *valuep = sqlite3_column_int64(stmt, 0);
    } else if (rc == SQLITE_DONE) {
        error = xasprintf("%s: no result from \"%s\"", store->path, sql);
    } else {
        error = db_error(store, "cannot read database");
    }
    sqlite3_finalize(stmt);
    return error;
}

static char * OVS_WARN_UNUSED_RESULT
read_user_version(const struct store *store, int *versionp)
{
    int64_t v;
    char *error = query_int(store, "PRAGMA user_version", &v);

    *versionp = v;
    return error;
}

/* Sets the schema version.  A pragma cannot take a bound parameter, so the
 * statement is formatted, from an integer of this program's own. */
static char * OVS_WARN_UNUSED_RESULT
write_user_version(const struct store *store, int version)
{
    char *sql = xasprintf("PRAGMA user_version = %d", version);
    char *error = exec_sql(store, sql, "cannot set schema version");

    free(sql);
    return error;
}

static char * OVS_WARN_UNUSED_RESULT
refuse_newer(const struct store *store, int version, int latest)
{
    return xasprintf("%s: database schema version %d is newer than this "
                     "pairkeyd supports (%d)", store->path, version, latest);
}

/* Fails if the database violates a foreign key constraint (a migration
 * runs with foreign keys off). */
static char * OVS_WARN_UNUSED_RESULT
check_foreign_keys(const struct store *store)
{
    int64_t n;
    char *error = query_int(store,
                            "SELECT count(*) FROM pragma_foreign_key_check",
                            &n);

    if (!error && n) {
        error = xasprintf("%s: %"PRId64" rows violate foreign keys",
                          store->path, n);
    }
    return error;
}

/* Brings the database from its version to 'n_migrations': a new (empty)
 * one gets 'schema' in one transaction, an older one every missing step of
 * 'steps' in a transaction of its own.  Each transaction also sets the
 * version, so a crash leaves the database at one version or the next. */
static char * OVS_WARN_UNUSED_RESULT
store_upgrade(struct store *store, const char *schema,
              const char *const *steps, int n_migrations)
{
    char *error = exec_sql(store, "PRAGMA foreign_keys = OFF",
                           "cannot disable foreign keys");

    while (!error) {
        int version;

        error = exec_sql(store, "BEGIN IMMEDIATE", "cannot lock database");
        if (error) {
            break;
        }

        /* Another program may have changed it meanwhile. */
        error = read_user_version(store, &version);
        if (error) {
            /* Rolled back below. */
        } else if (version > n_migrations) {
            error = refuse_newer(store, version, n_migrations);
        } else if (version == n_migrations) {
            error = exec_sql(store, "COMMIT", "cannot commit");
            break;
        } else if (version == 0) {
            int64_t n_objects;

            error = query_int(store, "SELECT count(*) FROM sqlite_master",
                              &n_objects);
            if (!error && n_objects) {
                error = xasprintf("%s: not a pairkey database (it has "
                                  "tables but no schema version)",
                                  store->path);
            }
            if (!error) {
                error = exec_sql(store, schema, "cannot create schema");
            }
            if (!error) {
                error = write_user_version(store, n_migrations);
            }
            if (!error) {
                VLOG_INFO("%s: created database with schema version %d",
                          store->path, n_migrations);
            }
        } else {
            char *what = xasprintf("migration to schema version %d failed",
                                   version + 1);

            error = exec_sql(store, steps[version], what);
            free(what);
            if (!error) {
                error = write_user_version(store, version + 1);
            }
            if (!error) {
                VLOG_INFO("%s: migrated database from schema version %d "
                          "to %d", store->path, version, version + 1);
            }
        }
        if (!error) {
            error = check_foreign_keys(store);
        }
        if (!error) {
            error = exec_sql(store, "COMMIT", "cannot commit");
        }
        if (error && !sqlite3_get_autocommit(store->db)) {
            sqlite3_exec(store->db, "ROLLBACK", NULL, NULL, NULL);
        }
    }

    if (!error) {
        error = exec_sql(store, "PRAGMA foreign_keys = ON",
                         "cannot enable foreign keys");
    }
    return error;
}

/* Sets up a new connection: every setting here lasts as long as it. */
static char * OVS_WARN_UNUSED_RESULT
store_configure(struct store *store)
{
    int64_t value;
    char *error;

    sqlite3_extended_result_codes(store->db, 1);
    sqlite3_busy_timeout(store->db, STORE_BUSY_TIMEOUT_MS);

    error = exec_sql(store, "PRAGMA foreign_keys = ON; "
                     "PRAGMA secure_delete = ON; "
                     "PRAGMA synchronous = FULL",
                     "cannot configure database connection");
    if (!error) {
        error = query_int(store, "PRAGMA foreign_keys", &value);
        if (!error && value != 1) {
            error = xasprintf("%s: SQLite lacks foreign key support",
                              store->path);
        }
    }
    return error;
}

/* Switches the database to write-ahead logging (which lasts). */
static char * OVS_WARN_UNUSED_RESULT
store_set_wal(struct store *store)
{
    sqlite3_stmt *stmt;
    char *error = NULL;

    if (sqlite3_prepare_v2(store->db, "PRAGMA journal_mode = WAL", -1,
                           &stmt, NULL) != SQLITE_OK) {
        return db_error(store, "cannot set journal mode");
    }
    if (stmt_step(store, stmt, &error) == SQLITE_ROW) {
        const char *mode = column_text(stmt, 0);

        if (strcasecmp(mode, "wal")) {
            error = xasprintf("%s: cannot use write-ahead logging (journal "
                              "mode is '%s')", store->path, mode);
        }
    } else if (!error) {
        error = xasprintf("%s: cannot set journal mode", store->path);
    }
    sqlite3_finalize(stmt);
    return error;
}

static char * OVS_WARN_UNUSED_RESULT
store_prepare(struct store *store)
{
    for (int i = 0; i < N_STORE_STMTS; i++) {
        if (sqlite3_prepare_v3(store->db, store_stmt_sql[i], -1,
                               SQLITE_PREPARE_PERSISTENT, &store->stmts[i],
                               NULL) != SQLITE_OK) {
            return xasprintf("%s: cannot prepare \"%s\": %s", store->path,
                             store_stmt_sql[i], sqlite3_errmsg(store->db));
        }
    }
    return NULL;
}

/* Returns NULL if 'name', described by 'st', may hold key bytes: a regular
 * file of this process's user that no one else may read or write. */
static char * OVS_WARN_UNUSED_RESULT
check_private(const char *name, const struct stat *st)
{
    if (!S_ISREG(st->st_mode)) {
        return xasprintf("%s: not a regular file", name);
    } else if (st->st_uid != geteuid()) {
        return xasprintf("%s: owned by uid %lu, not by this process's uid "
                         "%lu; refusing to open the key store", name,
                         (unsigned long int) st->st_uid,
                         (unsigned long int) geteuid());
    } else if (st->st_mode & (S_IRWXG | S_IRWXO)) {
        return xasprintf("%s: mode %04o lets group or others access the key "
                         "store; refusing to open it (chmod 600 it first)",
                         name, (unsigned int) (st->st_mode & 07777));
    }
    return NULL;
}

/* The database holds raw key bytes.  Creates 'path' with mode 0600 if it
 * does not exist, whatever the umask (SQLite gives the -wal and -shm files
 * it creates the mode of the database), and refuses a database, or a -wal
 * or -shm file, that another user owns or that group or others may read or
 * write.  A refused store is left as it is. */
static char * OVS_WARN_UNUSED_RESULT
store_check_files(const char *path)
{
    static const char *const suffixes[] = { "", "-wal", "-shm" };
    bool created = false;
    char *error = NULL;
    int fd;

    fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, S_IRUSR | S_IWUSR);
    if (fd >= 0) {
        created = true;
        if (fchmod(fd, S_IRUSR | S_IWUSR)) {
            error = xasprintf("%s: cannot set mode 0600: %s", path,
                              ovs_strerror(errno));
        }
        close(fd);
    } else if (errno != EEXIST) {
        return xasprintf("%s: cannot create database: %s", path,
                         ovs_strerror(errno));
    }

    for (size_t i = 0; !error && i < ARRAY_SIZE(suffixes); i++) {
        char *name = xasprintf("%s%s", path, suffixes[i]);
        struct stat st;

        if (!stat(name, &st)) {
            error = check_private(name, &st);
        } else if (errno != ENOENT || !i) {
            error = xasprintf("%s: cannot check permissions: %s", name,
                              ovs_strerror(errno));
        }
        free(name);
    }
    if (error && created) {
        unlink(path);
    }
    return error;
}

char *
store_open__(const char *path, const char *schema,
             const char *const *steps, int n_migrations,
             struct store **storep)
{
    struct store *store;
    char *error = NULL;
    int version = 0;

    *storep = NULL;
    if (!store_sodium_init()) {
        return xasprintf("%s: cannot initialize libsodium", path);
    }

    error = store_check_files(path);
    if (error) {
        return error;
    }

    store = xzalloc(sizeof *store);
    store->path = xstrdup(path);
    set_op(store, "cannot open database");
    if (sqlite3_open_v2(path, &store->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                        NULL) != SQLITE_OK) {
        error = (store->db
                 ? db_error(store, "cannot open database")
                 : xasprintf("%s: cannot open database: out of memory",
                             path));
        goto error;
    }

    /* Check the version before anything writes to the file, so that a
     * database newer than this program is left as it is. */
    error = store_configure(store);
    if (!error) {
        error = read_user_version(store, &version);
    }
    if (!error && version > n_migrations) {
        error = refuse_newer(store, version, n_migrations);
    }
    if (!error) {
        error = store_set_wal(store);
    }
    if (!error && version != n_migrations) {
        error = store_upgrade(store, schema, steps, n_migrations);
    }
    if (!error) {
        error = read_user_version(store, &store->schema_version);
    }
    if (!error) {
        error = store_prepare(store);
    }
    if (error) {
        goto error;
    }

    *storep = store;
    return NULL;

error:
    store_close(store);
    return error;
}

char *
store_open(const char *path, struct store **storep)
{
    return store_open__(path, schema_sql, migrations, SCHEMA_VERSION,
                        storep);
}

/* Closes 'store'.  Changes of a batch not yet committed are lost. */
void
store_close(struct store *store)
{
    if (!store) {
        return;
    }
    if (store->db && !sqlite3_get_autocommit(store->db)) {
        VLOG_WARN("%s: discarding uncommitted changes", store->path);
        sqlite3_exec(store->db, "ROLLBACK", NULL, NULL, NULL);
    }
    for (int i = 0; i < N_STORE_STMTS; i++) {
        sqlite3_finalize(store->stmts[i]);
    }
    if (store->db && sqlite3_close(store->db) != SQLITE_OK) {
        VLOG_ERR("%s: cannot close database: %s", store->path,
                 sqlite3_errmsg(store->db));
    }
    free(store->batch_error);
    free(store->path);
    free(store);
}

int
store_schema_version(const struct store *store)
{
    return store->schema_version;
}

int
store_latest_schema_version(void)
{
    return SCHEMA_VERSION;
}

/* Changes and batches.
 *
 * Every function that changes the store brackets its work with
 * change_begin() and change_end().  Outside a batch that is a transaction
 * of its own; inside one, a savepoint within the batch's transaction, so
 * that a change that fails is undone without undoing the batch. */

static char * OVS_WARN_UNUSED_RESULT
change_begin(struct store *store)
{
    char *error;

    if (!store->batch) {
        return stmt_exec(store, stmt_get(store, S_BEGIN));
    }

    if (store->batch_error) {
        return xasprintf("batch already failed: %s", store->batch_error);
    }
    if (!store->batch_open) {
        error = stmt_exec(store, stmt_get(store, S_BEGIN));
        if (error) {
            return error;
        }
        store->batch_open = true;
    }
    return stmt_exec(store, stmt_get(store, S_SAVEPOINT));
}

static void
rollback(struct store *store, enum store_stmt i)
{
    char *error = stmt_exec(store, stmt_get(store, i));

    log_error(error);
}

/* Ends the change begun by change_begin(): keeps it if 'error' is NULL,
 * otherwise undoes it.  Returns 'error', or an error if keeping failed. */
static char * OVS_WARN_UNUSED_RESULT
change_end(struct store *store, char *error)
{
    if (!error) {
        error = stmt_exec(store, stmt_get(store,
                                          store->batch ? S_RELEASE
                                                       : S_COMMIT));
        if (!error) {
            return NULL;
        }
    }

    if (!store->batch) {
        if (!sqlite3_get_autocommit(store->db)) {
            rollback(store, S_ROLLBACK);
        }
    } else if (store->batch_open && sqlite3_get_autocommit(store->db)) {
        /* SQLite gave up the whole transaction (I/O error, out of memory,
         * ...): the batch is lost. */
        store->batch_open = false;
        store->batch_error = xstrdup(error);
    } else if (store->batch_open) {
        rollback(store, S_ROLLBACK_TO);
        rollback(store, S_RELEASE);
    }
    return error;
}

void
store_batch_begin(struct store *store)
{
    ovs_assert(!store->batch);
    store->batch = true;
    store->batch_open = false;
}

char *
store_batch_commit(struct store *store)
{
    char *error = NULL;

    ovs_assert(store->batch);
    if (store->batch_error) {
        error = xasprintf("batch rolled back: %s", store->batch_error);
    } else if (store->batch_open) {
        set_op(store, "cannot commit batch (rolled back)");
        error = stmt_exec(store, stmt_get(store, S_COMMIT));
    }
    if (!sqlite3_get_autocommit(store->db)) {
        rollback(store, S_ROLLBACK);
    }
    free(store->batch_error);
    store->batch_error = NULL;
    store->batch = store->batch_open = false;
    return error;
}

void
store_batch_abort(struct store *store)
{
    ovs_assert(store->batch);
    if (!sqlite3_get_autocommit(store->db)) {
        rollback(store, S_ROLLBACK);
    }
    free(store->batch_error);
    store->batch_error = NULL;
    store->batch = store->batch_open = false;
}

/* Audit log. */

/* Adds an entry to the audit log.  An entry about a key version has
 * 'version' nonzero and 'key' its bytes, of which only the check value is
 * recorded. */
static char * OVS_WARN_UNUSED_RESULT
audit_add_key(struct store *store, const char *event, const char *id_a,
              const char *id_b, uint32_t version,
              const uint8_t key[STORE_KEY_LEN], const char *switch_name,
              const char *reason)
{
    sqlite3_stmt *stmt = stmt_get(store, S_AUDIT_INSERT);

    bind_now(stmt);
    bind_text(stmt, ":event", event);
    bind_text(stmt, ":id_a", id_a);
    bind_text(stmt, ":id_b", id_b);
    if (version) {
        bind_int64(stmt, ":version", version);
    }
    bind_text(stmt, ":switch", switch_name);
    bind_text(stmt, ":reason", reason);
    if (key) {
        char kcv[STORE_KCV_LEN + 1];

        store_key_kcv(key, kcv);
        bind_text(stmt, ":kcv", kcv);
    }
    return stmt_exec(store, stmt);
}

static char * OVS_WARN_UNUSED_RESULT
audit_add(struct store *store, const char *event, const char *id_a,
          const char *id_b, uint32_t version, const char *switch_name,
          const char *reason)
{
    return audit_add_key(store, event, id_a, id_b, version, NULL,
                         switch_name, reason);
}

char *
store_note_repush(struct store *store, const char *id1, const char *id2,
                  uint32_t version, const uint8_t key[STORE_KEY_LEN],
                  const char *switch_name, const char *reason)
{
    char *error;

    set_op(store, "cannot record re-push of key of '%s' and '%s'", id1, id2);
    error = change_begin(store);
    if (!error) {
        error = audit_add_key(store, "repush", id1, id2, version, key,
                              switch_name, reason);
    }
    return change_end(store, error);
}

void
store_list_audit(struct store *store, long long int since,
                 struct store_audit **entries, size_t *n)
{
    sqlite3_stmt *stmt = stmt_get(store, S_AUDIT_LIST);
    size_t allocated = 0;
    char *error = NULL;

    *entries = NULL;
    *n = 0;
    set_op(store, "cannot list audit log");
    bind_int64(stmt, ":since", since);
    while (stmt_step(store, stmt, &error) == SQLITE_ROW) {
        if (*n >= allocated) {
            *entries = x2nrealloc(*entries, &allocated, sizeof **entries);
        }
        audit_from_row(stmt, *entries + (*n)++);
    }
    stmt_done(stmt);
    log_error(error);
}

/* Clients. */

/* Looks up the client with 'id' or 'mac' (with statement 'i', bound here)
 * and stores it in '*client' if found.  Returns an error only if the
 * database failed. */
static char * OVS_WARN_UNUSED_RESULT
find_client(struct store *store, enum store_stmt i, const char *id,
            struct eth_addr mac, struct store_client *client, bool *found)
{
    sqlite3_stmt *stmt = stmt_get(store, i);
    char *error = NULL;

    *found = false;
    if (i == S_CLIENT_BY_ID) {
        bind_text(stmt, ":id", id);
    } else {
        bind_mac(stmt, ":mac", mac);
    }
    if (stmt_step(store, stmt, &error) == SQLITE_ROW) {
        if (client) {
            client_from_row(stmt, client);
        }
        *found = true;
    }
    stmt_done(stmt);
    return error;
}

/* Looks up outside host 'mac' and stores it in '*out' if found.  Returns an
 * error only if the database failed. */
static char * OVS_WARN_UNUSED_RESULT
find_outside(struct store *store, struct eth_addr mac,
             struct store_outside *out, bool *found)
{
    sqlite3_stmt *stmt = stmt_get(store, S_OUTSIDE_BY_MAC);
    char *error = NULL;

    *found = false;
    bind_mac(stmt, ":mac", mac);
    if (stmt_step(store, stmt, &error) == SQLITE_ROW) {
        outside_from_row(stmt, out);
        *found = true;
    }
    stmt_done(stmt);
    return error;
}

static char * OVS_WARN_UNUSED_RESULT
add_client__(struct store *store, const char *id, struct eth_addr mac)
{
    struct store_client other;
    char mac_s[ETH_ADDR_STRLEN + 1];
    char *error;
    bool found;

    mac_to_string(mac, mac_s);
    error = find_client(store, S_CLIENT_BY_ID, id, mac, NULL, &found);
    if (error || found) {
        return error ? error : xasprintf("client '%s' already exists", id);
    }
    error = find_client(store, S_CLIENT_BY_MAC, NULL, mac, &other, &found);
    if (error || found) {
        return (error ? error
                : xasprintf("MAC %s is already enrolled to client '%s'",
                            mac_s, other.id));
    }

    /* A host that was outside is now a client: its gateway no longer
     * serves it. */
    struct store_outside out;
    error = find_outside(store, mac, &out, &found);
    if (!error && found) {
        sqlite3_stmt *del = stmt_get(store, S_OUTSIDE_DELETE);

        bind_text(del, ":mac", mac_s);
        error = stmt_exec(store, del);
        if (!error) {
            char *reason = xasprintf("mac %s enrolled to client %s", mac_s,
                                     id);
            error = audit_add(store, "unlearn", out.gateway, NULL, 0, NULL,
                              reason);
            free(reason);
        }
    }
    if (error) {
        return error;
    }

    sqlite3_stmt *stmt = stmt_get(store, S_CLIENT_INSERT);
    bind_text(stmt, ":id", id);
    bind_text(stmt, ":mac", mac_s);
    bind_now(stmt);
    error = stmt_exec(store, stmt);
    if (!error) {
        char *reason = xasprintf("mac %s", mac_s);
        error = audit_add(store, "enroll", id, NULL, 0, NULL, reason);
        free(reason);
    }
    return error;
}

char *
store_add_client(struct store *store, const char *id, struct eth_addr mac)
{
    char mac_s[ETH_ADDR_STRLEN + 1];
    char *error;

    error = check_id(id);
    if (error) {
        return error;
    }
    mac_to_string(mac, mac_s);
    if (eth_addr_is_zero(mac)) {
        return xasprintf("cannot enroll client '%s': MAC %s is not valid",
                         id, mac_s);
    } else if (eth_addr_is_multicast(mac)) {
        return xasprintf("cannot enroll client '%s': MAC %s is a multicast "
                         "address", id, mac_s);
    }

    set_op(store, "cannot add client '%s'", id);
    error = change_begin(store);
    if (!error) {
        error = add_client__(store, id, mac);
    }
    error = change_end(store, error);
    return error;
}

static char * OVS_WARN_UNUSED_RESULT
del_client__(struct store *store, const char *id,
             int64_t **ids, size_t *n_ids)
{
    struct store_client client;
    char mac_s[ETH_ADDR_STRLEN + 1];
    sqlite3_stmt *stmt;
    size_t allocated = 0;
    char *error;
    bool found;

    error = find_client(store, S_CLIENT_BY_ID, id, eth_addr_zero, &client,
                        &found);
    if (error || !found) {
        return error ? error : xasprintf("unknown client '%s'", id);
    }

    /* The pairs to revoke. */
    stmt = stmt_get(store, S_PAIR_IDS_CLIENT);
    bind_text(stmt, ":id", id);
    while (stmt_step(store, stmt, &error) == SQLITE_ROW) {
        if (*n_ids >= allocated) {
            *ids = x2nrealloc(*ids, &allocated, sizeof **ids);
        }
        (*ids)[(*n_ids)++] = sqlite3_column_int64(stmt, 0);
    }
    stmt_done(stmt);
    if (error) {
        return error;
    }

    mac_to_string(client.mac, mac_s);
    char *reason = xasprintf("mac %s", mac_s);
    error = audit_add(store, "unenroll", id, NULL, 0, NULL, reason);
    free(reason);
    if (error) {
        return error;
    }

    stmt = stmt_get(store, S_AUDIT_REVOKE_CLIENT);
    bind_now(stmt);
    bind_text(stmt, ":id", id);
    reason = xasprintf("client %s unenrolled", id);
    bind_text(stmt, ":reason", reason);
    free(reason);
    error = stmt_exec(store, stmt);
    if (error) {
        return error;
    }

    /* Deletes the client's pair keys too (ON DELETE CASCADE). */
    stmt = stmt_get(store, S_CLIENT_DELETE);
    bind_text(stmt, ":id", id);
    error = stmt_exec(store, stmt);
    if (!error && sqlite3_changes(store->db) != 1) {
        error = xasprintf("unknown client '%s'", id);
    }
    return error;
}

char *
store_del_client(struct store *store, const char *id,
                 int64_t **revoked, size_t *n_revoked)
{
    int64_t *ids = NULL;
    size_t n_ids = 0;
    char *error;

    if (revoked) {
        *revoked = NULL;
        *n_revoked = 0;
    }
    error = check_id(id);
    if (error) {
        return error;
    }

    set_op(store, "cannot delete client '%s'", id);
    error = change_begin(store);
    if (!error) {
        error = del_client__(store, id, &ids, &n_ids);
    }
    error = change_end(store, error);
    if (!error && revoked) {
        *revoked = ids;
        *n_revoked = n_ids;
    } else {
        free(ids);
    }
    return error;
}

bool
store_find_client_by_id(struct store *store, const char *id,
                        struct store_client *client)
{
    char *error;
    bool found;

    if (!store_id_is_valid(id)) {
        return false;
    }
    set_op(store, "cannot look up client '%s'", id);
    error = find_client(store, S_CLIENT_BY_ID, id, eth_addr_zero, client,
                        &found);
    log_error(error);
    return found;
}

bool
store_find_client_by_mac(struct store *store, struct eth_addr mac,
                         struct store_client *client)
{
    char *error;
    bool found;

    set_op(store, "cannot look up MAC "ETH_ADDR_FMT, ETH_ADDR_ARGS(mac));
    error = find_client(store, S_CLIENT_BY_MAC, NULL, mac, client, &found);
    log_error(error);
    return found;
}

/* Runs statement 'i' and stores its rows, each converted by 'from_row' into
 * an element of 'size' bytes, in '*array' (malloc()'d) and their number in
 * '*n'.  A database failure is logged ('what' says what was listed). */
static void
list_rows(struct store *store, enum store_stmt i, const char *what,
          void (*from_row)(sqlite3_stmt *, void *), size_t size,
          void **array, size_t *n)
{
    sqlite3_stmt *stmt = stmt_get(store, i);
    size_t allocated = 0;
    char *error = NULL;

    *array = NULL;
    *n = 0;
    set_op(store, "cannot list %s", what);
    while (stmt_step(store, stmt, &error) == SQLITE_ROW) {
        if (*n >= allocated) {
            *array = x2nrealloc(*array, &allocated, size);
        }
        from_row(stmt, (char *) *array + (*n)++ * size);
    }
    stmt_done(stmt);
    log_error(error);
}

static void
list_clients__(struct store *store, enum store_stmt i,
               struct store_client **clients, size_t *n)
{
    list_rows(store, i, i == S_CLIENT_LIST ? "clients" : "gateways",
              client_from_row, sizeof **clients, (void **) clients, n);
}

void
store_list_clients(struct store *store, struct store_client **clients,
                   size_t *n)
{
    list_clients__(store, S_CLIENT_LIST, clients, n);
}

void
store_list_gateways(struct store *store, struct store_client **gateways,
                    size_t *n)
{
    list_clients__(store, S_GATEWAY_LIST, gateways, n);
}

/* Gateways and outside hosts. */

static char * OVS_WARN_UNUSED_RESULT
add_gateway__(struct store *store, const char *id)
{
    struct store_client client;
    char *error;
    bool found;

    error = find_client(store, S_CLIENT_BY_ID, id, eth_addr_zero, &client,
                        &found);
    if (error || found) {
        return (error ? error
                : client.gateway ? NULL
                : xasprintf("client '%s' is not a gateway", id));
    }

    sqlite3_stmt *stmt = stmt_get(store, S_GATEWAY_INSERT);
    bind_text(stmt, ":id", id);
    bind_now(stmt);
    error = stmt_exec(store, stmt);
    if (!error) {
        error = audit_add(store, "enroll", id, NULL, 0, NULL, "gateway");
    }
    return error;
}

char *
store_add_gateway(struct store *store, const char *id)
{
    struct store_client client;
    char *error = check_id(id);

    if (error) {
        return error;
    }
    set_op(store, "cannot add gateway '%s'", id);
    if (store_find_client_by_id(store, id, &client) && client.gateway) {
        return NULL;
    }
    error = change_begin(store);
    if (!error) {
        error = add_gateway__(store, id);
    }
    return change_end(store, error);
}

/* Records outside host 'mac' behind 'gateway'.  A host behind another
 * gateway moves only if 'move'; with 'move', it must be known. */
static char * OVS_WARN_UNUSED_RESULT
learn_outside__(struct store *store, struct eth_addr mac, const char *gateway,
                bool move, bool *changed)
{
    char mac_s[ETH_ADDR_STRLEN + 1];
    struct store_client client;
    struct store_outside out;
    char *error, *reason;
    bool found;

    mac_to_string(mac, mac_s);
    error = find_client(store, S_CLIENT_BY_MAC, NULL, mac, &client, &found);
    if (error || found) {
        return (error ? error
                : xasprintf("MAC %s is enrolled to client '%s'", mac_s,
                            client.id));
    }
    error = find_client(store, S_CLIENT_BY_ID, gateway, eth_addr_zero,
                        &client, &found);
    if (error || !found || !client.gateway) {
        return error ? error : xasprintf("unknown gateway '%s'", gateway);
    }
    error = find_outside(store, mac, &out, &found);
    if (error || (found && !strcmp(out.gateway, gateway))) {
        return error;
    } else if (found && !move) {
        return xasprintf("outside host %s is behind gateway '%s'", mac_s,
                         out.gateway);
    } else if (!found && move) {
        return xasprintf("unknown outside host %s", mac_s);
    }

    sqlite3_stmt *stmt = stmt_get(store, S_OUTSIDE_PUT);
    bind_text(stmt, ":mac", mac_s);
    bind_text(stmt, ":gateway", gateway);
    bind_now(stmt);
    error = stmt_exec(store, stmt);
    if (error) {
        return error;
    }
    reason = (found
              ? xasprintf("mac %s moved from gateway %s", mac_s, out.gateway)
              : xasprintf("mac %s", mac_s));
    error = audit_add(store, "learn", gateway, NULL, 0, NULL, reason);
    free(reason);
    *changed = !error;
    return error;
}

static char * OVS_WARN_UNUSED_RESULT
put_outside(struct store *store, struct eth_addr mac, const char *gateway,
            bool move, bool *changed)
{
    const char *verb = move ? "move" : "learn";
    bool changed_dummy;
    char *error;

    changed = changed ? changed : &changed_dummy;
    *changed = false;
    error = check_id(gateway);
    if (error) {
        return error;
    }
    if (eth_addr_is_zero(mac) || eth_addr_is_multicast(mac)) {
        return xasprintf("cannot %s MAC "ETH_ADDR_FMT" behind gateway "
                         "'%s': not a unicast address", verb,
                         ETH_ADDR_ARGS(mac), gateway);
    }
    set_op(store, "cannot %s MAC "ETH_ADDR_FMT" behind gateway '%s'",
           verb, ETH_ADDR_ARGS(mac), gateway);
    error = change_begin(store);
    if (!error) {
        error = learn_outside__(store, mac, gateway, move, changed);
        if (!error && move && !*changed) {
            error = xasprintf("outside host "ETH_ADDR_FMT" is already "
                              "behind gateway '%s'", ETH_ADDR_ARGS(mac),
                              gateway);
        }
    }
    error = change_end(store, error);
    if (error) {
        *changed = false;
    }
    return error;
}

char *
store_learn_outside(struct store *store, struct eth_addr mac,
                    const char *gateway, bool *changed)
{
    return put_outside(store, mac, gateway, false, changed);
}

char *
store_move_outside(struct store *store, struct eth_addr mac,
                   const char *gateway)
{
    return put_outside(store, mac, gateway, true, NULL);
}

static char * OVS_WARN_UNUSED_RESULT
forget_outside__(struct store *store, struct eth_addr mac,
                 const char *gateway, const char *why,
                 struct store_outside *out)
{
    char mac_s[ETH_ADDR_STRLEN + 1];
    char *error, *reason;
    bool found;

    mac_to_string(mac, mac_s);
    error = find_outside(store, mac, out, &found);
    if (error || !found) {
        return error ? error : xasprintf("unknown outside host %s", mac_s);
    } else if (gateway && strcmp(out->gateway, gateway)) {
        return xasprintf("outside host %s is behind gateway '%s', not '%s'",
                         mac_s, out->gateway, gateway);
    }

    sqlite3_stmt *stmt = stmt_get(store, S_OUTSIDE_DELETE);
    bind_text(stmt, ":mac", mac_s);
    error = stmt_exec(store, stmt);
    if (!error) {
        reason = xasprintf("mac %s %s", mac_s, why);
        error = audit_add(store, "unlearn", out->gateway, NULL, 0, NULL,
                          reason);
        free(reason);
    }
    return error;
}

char *
store_forget_outside(struct store *store, struct eth_addr mac,
                     const char *gateway, const char *why,
                     struct store_outside *outp)
{
    struct store_outside out_dummy;
    struct store_outside *out = outp ? outp : &out_dummy;
    char *error;

    if (gateway) {
        error = check_id(gateway);
        if (error) {
            return error;
        }
    }
    set_op(store, "cannot forget outside MAC "ETH_ADDR_FMT,
           ETH_ADDR_ARGS(mac));
    error = change_begin(store);
    if (!error) {
        error = forget_outside__(store, mac, gateway, why, out);
    }
    return change_end(store, error);
}

bool
store_find_outside(struct store *store, struct eth_addr mac,
                   struct store_outside *out)
{
    char *error;
    bool found;

    set_op(store, "cannot look up outside MAC "ETH_ADDR_FMT,
           ETH_ADDR_ARGS(mac));
    error = find_outside(store, mac, out, &found);
    log_error(error);
    return found;
}

void
store_list_outside(struct store *store, struct store_outside **outs,
                   size_t *n)
{
    list_rows(store, S_OUTSIDE_LIST, "outside MACs", outside_from_row,
              sizeof **outs, (void **) outs, n);
}

/* Pair keys. */

/* Looks up pair ('id_a', 'id_b'), in that order. */
static char * OVS_WARN_UNUSED_RESULT
find_pair_by_ids(struct store *store, const char *id_a, const char *id_b,
                 struct store_pair_key *pk, bool *found)
{
    sqlite3_stmt *stmt = stmt_get(store, S_PAIR_BY_IDS);
    char *error = NULL;

    *found = false;
    bind_text(stmt, ":id_a", id_a);
    bind_text(stmt, ":id_b", id_b);
    if (stmt_step(store, stmt, &error) == SQLITE_ROW) {
        error = pair_from_row(store, stmt, pk);
        *found = !error;
    }
    stmt_done(stmt);
    return error;
}

static char * OVS_WARN_UNUSED_RESULT
find_pair_by_id(struct store *store, int64_t pair_id,
                struct store_pair_key *pk, bool *found)
{
    sqlite3_stmt *stmt = stmt_get(store, S_PAIR_BY_ID);
    char *error = NULL;

    *found = false;
    bind_int64(stmt, ":pair_id", pair_id);
    if (stmt_step(store, stmt, &error) == SQLITE_ROW) {
        error = pair_from_row(store, stmt, pk);
        *found = !error;
    }
    stmt_done(stmt);
    return error;
}

/* The schema refused to insert the pair of 'id1' and 'id2' with 'error':
 * returns a message that says why in the caller's terms, freeing 'error', or
 * 'error' itself if there is none better. */
static char * OVS_WARN_UNUSED_RESULT
explain_pair_insert_error(struct store *store, const char *id1,
                          const char *id2, char *error)
{
    const char *ids[2] = { id1, id2 };
    char *better = NULL;
    sqlite3_stmt *stmt;
    bool found;

    for (int i = 0; i < 2 && !better; i++) {
        char *e = find_client(store, S_CLIENT_BY_ID, ids[i], eth_addr_zero,
                              NULL, &found);
        if (!e && !found) {
            better = xasprintf("unknown client '%s'", ids[i]);
        }
        free(e);
    }

    stmt = stmt_get(store, S_PAIR_LAST_ID);
    if (!better && sqlite3_step(stmt) == SQLITE_ROW
        && sqlite3_column_int64(stmt, 0) >= STORE_PAIR_ID_MAX) {
        better = xasprintf("%s: no pair ids left", store->op);
    }
    stmt_done(stmt);

    if (better) {
        free(error);
        return better;
    }
    return error;
}

/* Checks that 'id1' and 'id2' are two valid, different ids and stores them
 * in the order the store keeps pairs, in '*id_a' and '*id_b'. */
static char * OVS_WARN_UNUSED_RESULT
order_pair(const char *id1, const char *id2, const char **id_a,
           const char **id_b)
{
    char *error = check_id(id1);

    if (!error) {
        error = check_id(id2);
    }
    if (error) {
        return error;
    }
    if (!strcmp(id1, id2)) {
        return xstrdup("pair needs two different clients");
    }
    *id_a = strcmp(id1, id2) < 0 ? id1 : id2;
    *id_b = *id_a == id1 ? id2 : id1;
    return NULL;
}

/* Refuses a new key for pair ('id_a', 'id_b') if it was revoked and one of
 * the two has not been enrolled again since. */
static char * OVS_WARN_UNUSED_RESULT
check_not_revoked(struct store *store, const char *id_a, const char *id_b)
{
    sqlite3_stmt *stmt = stmt_get(store, S_REVOKED_GET);
    long long int revoked = -1;
    char *error = NULL;

    bind_text(stmt, ":id_a", id_a);
    bind_text(stmt, ":id_b", id_b);
    if (stmt_step(store, stmt, &error) == SQLITE_ROW) {
        revoked = sqlite3_column_int64(stmt, 0);
    }
    stmt_done(stmt);
    if (error || revoked < 0) {
        return error;
    }

    const char *ids[2] = { id_a, id_b };
    for (int i = 0; i < 2; i++) {
        struct store_client client;
        bool found;

        error = find_client(store, S_CLIENT_BY_ID, ids[i], eth_addr_zero,
                            &client, &found);
        if (error) {
            return error;
        }
        if (found && client.created <= revoked) {
            return xasprintf("the pair of '%s' and '%s' was revoked: enroll "
                             "both again first", id_a, id_b);
        }
    }
    return NULL;
}

/* Creates the key of pair ('id_a', 'id_b'), which is ('id1', 'id2') in
 * order, unless it exists.  'checked' is true if the caller already looked
 * for it in this transaction. */
static char * OVS_WARN_UNUSED_RESULT
create_pair_key__(struct store *store, const char *id1, const char *id2,
                  const char *id_a, const char *id_b,
                  const char *switch_name, const char *reason,
                  struct store_pair_key *pk, bool *created, bool checked)
{
    uint8_t key[STORE_KEY_LEN];
    sqlite3_stmt *stmt;
    char *error;
    bool found;

    /* Another program may have created it since the caller looked. */
    if (!checked) {
        error = find_pair_by_ids(store, id_a, id_b, pk, &found);
        if (error || found) {
            return error;
        }
    }

    error = check_not_revoked(store, id_a, id_b);
    if (error) {
        return error;
    }

    /* The schema refuses unknown clients and pair ids beyond
     * STORE_PAIR_ID_MAX; explain_pair_insert_error() says which. */
    randombytes_buf(key, sizeof key);
    long long int now = time_wall_msec();
    stmt = stmt_get(store, S_PAIR_INSERT);
    bind_text(stmt, ":id_a", id_a);
    bind_text(stmt, ":id_b", id_b);
    bind_key(stmt, ":key", key);
    bind_int64(stmt, ":now", now);
    error = stmt_exec(store, stmt);
    if (error) {
        store_key_wipe(key, sizeof key);
        return explain_pair_insert_error(store, id1, id2, error);
    }

    memset(pk, 0, sizeof *pk);
    pk->pair_id = sqlite3_last_insert_rowid(store->db);
    ovs_strlcpy(pk->id_a, id_a, sizeof pk->id_a);
    ovs_strlcpy(pk->id_b, id_b, sizeof pk->id_b);
    pk->version = 1;
    memcpy(pk->key, key, sizeof pk->key);
    store_key_wipe(key, sizeof key);
    pk->created = pk->updated = now;
    *created = true;

    return audit_add_key(store, "issue", id_a, id_b, 1, pk->key,
                         switch_name, reason);
}

char *
store_get_pair_key(struct store *store, const char *id1, const char *id2,
                   const char *switch_name, const char *reason,
                   struct store_pair_key *pk, bool *created)
{
    const char *id_a = NULL, *id_b = NULL;
    bool created_dummy;
    char *error;
    bool found;

    if (!created) {
        created = &created_dummy;
    }
    memset(pk, 0, sizeof *pk);
    *created = false;
    error = order_pair(id1, id2, &id_a, &id_b);
    if (error) {
        return error;
    }
    set_op(store, "cannot get key for clients '%s' and '%s'", id_a, id_b);

    /* Most requests are for a key that already exists: no lock needed.
     * Inside an open batch, this lookup already holds the write lock. */
    bool locked = store->batch && store->batch_open;
    error = find_pair_by_ids(store, id_a, id_b, pk, &found);
    if (error || found) {
        goto out;
    }

    error = change_begin(store);
    if (!error) {
        error = create_pair_key__(store, id1, id2, id_a, id_b, switch_name,
                                  reason, pk, created, locked);
    }
    error = change_end(store, error);

out:
    if (error) {
        store_key_wipe(pk, sizeof *pk);
        *created = false;
    }
    return error;
}

static char * OVS_WARN_UNUSED_RESULT
rotate_pair_key__(struct store *store, int64_t pair_id,
                  const char *switch_name, const char *reason,
                  struct store_pair_key *pk)
{
    uint8_t key[STORE_KEY_LEN];
    sqlite3_stmt *stmt;
    char *error;
    bool found;

    error = find_pair_by_id(store, pair_id, pk, &found);
    if (error || !found) {
        return error ? error : xasprintf("unknown pair %"PRId64, pair_id);
    }
    if (pk->version >= UINT32_MAX) {
        return xasprintf("pair %"PRId64": key version %"PRIu32" is the "
                         "last one", pair_id, pk->version);
    }

    randombytes_buf(key, sizeof key);
    long long int now = time_wall_msec();
    stmt = stmt_get(store, S_PAIR_UPDATE);
    bind_int64(stmt, ":version", pk->version + 1);
    bind_key(stmt, ":key", key);
    bind_int64(stmt, ":now", now);
    bind_int64(stmt, ":pair_id", pair_id);
    error = stmt_exec(store, stmt);
    if (!error) {
        pk->version++;
        memcpy(pk->key, key, sizeof pk->key);
        pk->updated = now;
        error = audit_add_key(store, "rotate", pk->id_a, pk->id_b,
                              pk->version, pk->key, switch_name, reason);
    }
    store_key_wipe(key, sizeof key);
    return error;
}

char *
store_rotate_pair_key(struct store *store, int64_t pair_id,
                      const char *switch_name, const char *reason,
                      struct store_pair_key *pk)
{
    char *error;

    memset(pk, 0, sizeof *pk);
    set_op(store, "cannot rotate key of pair %"PRId64, pair_id);
    error = change_begin(store);
    if (!error) {
        error = rotate_pair_key__(store, pair_id, switch_name, reason, pk);
    }
    error = change_end(store, error);
    if (error) {
        store_key_wipe(pk, sizeof *pk);
    }
    return error;
}

/* Deletes pair 'old', whose pair id the authority gave to pair ('id_a',
 * 'id_b'). */
static char * OVS_WARN_UNUSED_RESULT
displace_pair(struct store *store, const struct store_pair_key *old,
              const char *id_a, const char *id_b)
{
    sqlite3_stmt *stmt = stmt_get(store, S_PAIR_DELETE);
    char *error;

    bind_int64(stmt, ":pair_id", old->pair_id);
    error = stmt_exec(store, stmt);
    if (!error) {
        char *reason = xasprintf("pair %"PRId64" obtained for %s and %s",
                                 old->pair_id, id_a, id_b);
        error = audit_add_key(store, "revoke", old->id_a, old->id_b,
                              old->version, old->key, NULL, reason);
        free(reason);
    }
    return error;
}

/* Stores 'pk', obtained from the authority, as the key of pair ('id_a',
 * 'id_b'), which is ('pk->id_a', 'pk->id_b') in order. */
static char * OVS_WARN_UNUSED_RESULT
put_pair_key__(struct store *store, const struct store_pair_key *pk,
               const char *id_a, const char *id_b)
{
    const char *ids[2] = { pk->id_a, pk->id_b };
    struct store_pair_key old, holder;
    bool found, held;
    sqlite3_stmt *stmt;
    char *error = NULL;

    memset(&old, 0, sizeof old);
    memset(&holder, 0, sizeof holder);
    for (int i = 0; i < 2; i++) {
        error = find_client(store, S_CLIENT_BY_ID, ids[i], eth_addr_zero,
                            NULL, &found);
        if (error || !found) {
            return error ? error : xasprintf("unknown client '%s'", ids[i]);
        }
    }

    error = find_pair_by_ids(store, id_a, id_b, &old, &found);
    if (error) {
        goto out;
    }
    if (found && pk->version < old.version) {
        error = xasprintf("pair key version %"PRIu32" for clients '%s' and "
                          "'%s' is older than version %"PRIu32, pk->version,
                          id_a, id_b, old.version);
        goto out;
    }
    if (found && pk->version == old.version && pk->pair_id == old.pair_id
        && !memcmp(pk->key, old.key, sizeof old.key)) {
        goto out;               /* Already here. */
    }

    /* The authority's pair ids win over another pair's here. */
    error = find_pair_by_id(store, pk->pair_id, &holder, &held);
    if (!error && held
        && (strcmp(holder.id_a, id_a) || strcmp(holder.id_b, id_b))) {
        error = displace_pair(store, &holder, id_a, id_b);
    }
    if (error) {
        goto out;
    }

    long long int now = time_wall_msec();
    if (found && old.pair_id == pk->pair_id) {
        stmt = stmt_get(store, S_PAIR_UPDATE);
    } else {
        if (found) {
            /* The pair moves to the authority's pair id.  An insert with
             * the new id, unlike an update, keeps sqlite_sequence above
             * every pair id, so that none is ever reused. */
            stmt = stmt_get(store, S_PAIR_DELETE);
            bind_int64(stmt, ":pair_id", old.pair_id);
            error = stmt_exec(store, stmt);
            if (error) {
                goto out;
            }
        }
        stmt = stmt_get(store, S_PAIR_PUT);
        bind_text(stmt, ":id_a", id_a);
        bind_text(stmt, ":id_b", id_b);
        bind_int64(stmt, ":created", found ? old.created : now);
    }
    bind_int64(stmt, ":pair_id", pk->pair_id);
    bind_int64(stmt, ":version", pk->version);
    bind_key(stmt, ":key", pk->key);
    bind_int64(stmt, ":now", now);
    error = stmt_exec(store, stmt);
    if (!error) {
        char *reason = xasprintf("pair %"PRId64, pk->pair_id);
        error = audit_add_key(store, "obtain", id_a, id_b, pk->version,
                              pk->key, NULL, reason);
        free(reason);
    }

out:
    store_key_wipe(&old, sizeof old);
    store_key_wipe(&holder, sizeof holder);
    return error;
}

char *
store_put_pair_key(struct store *store, const struct store_pair_key *pk)
{
    const char *id_a = NULL, *id_b = NULL;
    char *error;

    /* Fixed-size fields, maybe filled from the network. */
    if (!memchr(pk->id_a, '\0', sizeof pk->id_a)
        || !memchr(pk->id_b, '\0', sizeof pk->id_b)) {
        return xstrdup("pair key has a client ID that is not valid");
    }
    error = order_pair(pk->id_a, pk->id_b, &id_a, &id_b);
    if (error) {
        return error;
    }
    if (pk->pair_id < 1 || pk->pair_id > STORE_PAIR_ID_MAX) {
        return xasprintf("pair id %"PRId64" for clients '%s' and '%s' is "
                         "not valid", pk->pair_id, id_a, id_b);
    }
    if (!pk->version) {
        return xasprintf("pair key version 0 for clients '%s' and '%s' is "
                         "not valid", id_a, id_b);
    }

    set_op(store, "cannot store key for clients '%s' and '%s'", id_a, id_b);
    error = change_begin(store);
    if (!error) {
        error = put_pair_key__(store, pk, id_a, id_b);
    }
    return change_end(store, error);
}

bool
store_find_pair_key(struct store *store, int64_t pair_id,
                    struct store_pair_key *pk)
{
    char *error;
    bool found;

    set_op(store, "cannot look up pair %"PRId64, pair_id);
    error = find_pair_by_id(store, pair_id, pk, &found);
    log_error(error);
    if (!found) {
        store_key_wipe(pk, sizeof *pk);
    }
    return found;
}

void
store_list_pair_keys(struct store *store, const char *client_id,
                     struct store_pair_key **keys, size_t *n)
{
    sqlite3_stmt *stmt;
    size_t allocated = 0;
    char *error = NULL;

    *keys = NULL;
    *n = 0;
    set_op(store, "cannot list pair keys");
    if (client_id) {
        if (!store_id_is_valid(client_id)) {
            return;
        }
        stmt = stmt_get(store, S_PAIR_LIST_CLIENT);
        bind_text(stmt, ":id", client_id);
    } else {
        stmt = stmt_get(store, S_PAIR_LIST);
    }
    while (!error && stmt_step(store, stmt, &error) == SQLITE_ROW) {
        if (*n >= allocated) {
            /* Not x2nrealloc(): the old array would be freed unwiped. */
            size_t new_allocated = allocated ? 2 * allocated : 16;
            struct store_pair_key *p = xcalloc(new_allocated, sizeof *p);

            if (*n) {
                memcpy(p, *keys, *n * sizeof *p);
                store_key_wipe(*keys, *n * sizeof **keys);
            }
            free(*keys);
            *keys = p;
            allocated = new_allocated;
        }
        error = pair_from_row(store, stmt, *keys + *n);
        if (!error) {
            (*n)++;
        }
    }
    stmt_done(stmt);
    log_error(error);
}

/* The group key. */

static char * OVS_WARN_UNUSED_RESULT
find_group_key(struct store *store, struct store_group_key *gk, bool *found)
{
    sqlite3_stmt *stmt = stmt_get(store, S_GROUP_GET);
    char *error = NULL;

    *found = false;
    if (stmt_step(store, stmt, &error) == SQLITE_ROW) {
        memset(gk, 0, sizeof *gk);
        gk->version = column_u32(stmt, 0);
        if (column_key(stmt, 1, gk->key)) {
            gk->updated = sqlite3_column_int64(stmt, 2);
            *found = true;
        } else {
            error = xasprintf("%s: the group key is not valid", store->path);
        }
    }
    stmt_done(stmt);
    return error;
}

/* Creates the group key if there is none or if 'rotate' is true, in which
 * case it replaces the one there is by the next version. */
static char * OVS_WARN_UNUSED_RESULT
new_group_key__(struct store *store, bool rotate,
                struct store_group_key *gk)
{
    uint8_t key[STORE_KEY_LEN];
    sqlite3_stmt *stmt;
    char *error;
    bool found;

    error = find_group_key(store, gk, &found);
    if (error || (found && !rotate)) {
        return error;
    }
    if (found && gk->version >= UINT32_MAX) {
        return xasprintf("group key version %"PRIu32" is the last one",
                         gk->version);
    }

    uint32_t version = found ? gk->version + 1 : 1;
    randombytes_buf(key, sizeof key);
    long long int now = time_wall_msec();
    stmt = stmt_get(store, found ? S_GROUP_UPDATE : S_GROUP_INSERT);
    if (found) {
        bind_int64(stmt, ":version", version);
    }
    bind_key(stmt, ":key", key);
    bind_int64(stmt, ":now", now);
    error = stmt_exec(store, stmt);
    if (!error) {
        memset(gk, 0, sizeof *gk);
        gk->version = version;
        memcpy(gk->key, key, sizeof gk->key);
        gk->updated = now;
        error = audit_add_key(store, found ? "rotate" : "issue", NULL, NULL,
                              version, key, NULL, "group key");
    }
    store_key_wipe(key, sizeof key);
    return error;
}

char *
store_get_group_key(struct store *store, struct store_group_key *gk)
{
    char *error;
    bool found;

    memset(gk, 0, sizeof *gk);
    set_op(store, "cannot get group key");
    error = find_group_key(store, gk, &found);
    if (!error && !found) {
        error = change_begin(store);
        if (!error) {
            error = new_group_key__(store, false, gk);
        }
        error = change_end(store, error);
    }
    if (error) {
        store_key_wipe(gk, sizeof *gk);
    }
    return error;
}

char *
store_rotate_group_key(struct store *store, struct store_group_key *gk)
{
    char *error;

    memset(gk, 0, sizeof *gk);
    set_op(store, "cannot rotate group key");
    error = change_begin(store);
    if (!error) {
        error = new_group_key__(store, true, gk);
    }
    error = change_end(store, error);
    if (error) {
        store_key_wipe(gk, sizeof *gk);
    }
    return error;
}

char *
store_put_group_key(struct store *store, const struct store_group_key *gk)
{
    struct store_group_key old;
    char *error;
    bool found;

    if (!gk->version) {
        return xstrdup("group key version 0 is not valid");
    }
    memset(&old, 0, sizeof old);
    set_op(store, "cannot store group key");
    error = change_begin(store);
    if (!error) {
        error = find_group_key(store, &old, &found);
    }
    if (!error && found && old.version > gk->version) {
        error = xasprintf("group key version %"PRIu32" is older than "
                          "version %"PRIu32, gk->version, old.version);
    } else if (!error && (!found || old.version != gk->version
                          || memcmp(old.key, gk->key, sizeof old.key))) {
        sqlite3_stmt *stmt = stmt_get(store, S_GROUP_PUT);

        bind_int64(stmt, ":version", gk->version);
        bind_key(stmt, ":key", gk->key);
        bind_now(stmt);
        error = stmt_exec(store, stmt);
        if (!error) {
            error = audit_add_key(store, "obtain", NULL, NULL, gk->version,
                                  gk->key, NULL, "group key");
        }
    }
    store_key_wipe(&old, sizeof old);
    return change_end(store, error);
}

/* Pair revocation. */

char *
store_revoke_pair(struct store *store, const char *id1, const char *id2,
                  int64_t *pair_id)
{
    struct store_pair_key pk;
    const char *id_a = NULL, *id_b = NULL;
    char *error;
    bool found;

    *pair_id = 0;
    error = order_pair(id1, id2, &id_a, &id_b);
    if (error) {
        return error;
    }
    set_op(store, "cannot revoke key of clients '%s' and '%s'", id_a, id_b);

    error = change_begin(store);
    if (!error) {
        error = find_pair_by_ids(store, id_a, id_b, &pk, &found);
        if (!error && !found) {
            error = xasprintf("no key for clients '%s' and '%s'", id_a,
                              id_b);
        }
    }
    if (!error) {
        sqlite3_stmt *stmt = stmt_get(store, S_PAIR_DELETE);

        bind_int64(stmt, ":pair_id", pk.pair_id);
        error = stmt_exec(store, stmt);
    }
    if (!error) {
        sqlite3_stmt *stmt = stmt_get(store, S_REVOKED_PUT);

        bind_text(stmt, ":id_a", id_a);
        bind_text(stmt, ":id_b", id_b);
        bind_now(stmt);
        error = stmt_exec(store, stmt);
    }
    if (!error) {
        error = audit_add_key(store, "revoke", id_a, id_b, pk.version,
                              pk.key, NULL, "revoke-key");
    }
    error = change_end(store, error);
    if (!error) {
        *pair_id = pk.pair_id;
    }
    store_key_wipe(&pk, sizeof pk);
    return error;
}

/* Peer key servers and NETKEYs. */

const char *
store_peer_kind_name(enum store_peer_kind kind)
{
    switch (kind) {
    case STORE_PEER_INTER:
        return "inter";
    case STORE_PEER_MEMBER:
        return "member";
    case STORE_PEER_AUTHORITY:
        return "authority";
    }
    return NULL;
}

bool
store_peer_kind_from_name(const char *name, enum store_peer_kind *kindp)
{
    static const enum store_peer_kind kinds[] = {
        STORE_PEER_INTER, STORE_PEER_MEMBER, STORE_PEER_AUTHORITY,
    };

    for (size_t i = 0; name && i < ARRAY_SIZE(kinds); i++) {
        if (!strcmp(name, store_peer_kind_name(kinds[i]))) {
            *kindp = kinds[i];
            return true;
        }
    }
    return false;
}

static void
peer_from_row(sqlite3_stmt *stmt, void *peer_)
{
    struct store_peer *peer = peer_;

    memset(peer, 0, sizeof *peer);
    column_strlcpy(stmt, 0, peer->name, sizeof peer->name);
    column_strlcpy(stmt, 1, peer->remote, sizeof peer->remote);
    peer->created = sqlite3_column_int64(stmt, 2);
    if (!store_peer_kind_from_name(column_text(stmt, 3), &peer->kind)) {
        /* The schema allows no other kind. */
        peer->kind = STORE_PEER_INTER;
    }
}

/* Looks up the peer named 'name', or if 'name' is NULL the first peer (by
 * name) of 'kind', and stores it in '*peer' (if nonnull) if found.  Returns
 * an error only if the database failed. */
static char * OVS_WARN_UNUSED_RESULT
find_peer__(struct store *store, const char *name, enum store_peer_kind kind,
            struct store_peer *peer, bool *found)
{
    sqlite3_stmt *stmt = stmt_get(store, name ? S_PEER_BY_NAME
                                              : S_PEER_BY_KIND);
    char *error = NULL;

    *found = false;
    if (name) {
        bind_text(stmt, ":name", name);
    } else {
        bind_text(stmt, ":kind", store_peer_kind_name(kind));
    }
    if (stmt_step(store, stmt, &error) == SQLITE_ROW) {
        if (peer) {
            peer_from_row(stmt, peer);
        }
        *found = true;
    }
    stmt_done(stmt);
    return error;
}

static char * OVS_WARN_UNUSED_RESULT
find_peer(struct store *store, const char *name, struct store_peer *peer,
          bool *found)
{
    return find_peer__(store, name, STORE_PEER_INTER, peer, found);
}

/* A peer's remote: "ssl:" and then printable characters without spaces. */
static bool
remote_is_valid(const char *remote)
{
    size_t len = strlen(remote);

    if (len <= 4 || len >= STORE_REMOTE_MAX_LEN
        || strncmp(remote, "ssl:", 4)) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (!isgraph((unsigned char) remote[i])) {
            return false;
        }
    }
    return true;
}

char *
store_add_peer(struct store *store, const char *name, const char *remote,
               enum store_peer_kind kind)
{
    const char *kind_name = store_peer_kind_name(kind);
    struct store_peer authority;
    char *error = check_id(name);
    bool found;

    if (error) {
        return error;
    }
    if (!remote || !remote_is_valid(remote)) {
        char *quoted = store_quote_input(remote ? remote : "");
        error = xasprintf("peer remote '%s' is not valid: use "
                          "ssl:HOST:PORT (peer links carry keys)", quoted);
        free(quoted);
        return error;
    }
    if (!kind_name) {
        return xasprintf("peer kind %d is not valid", (int) kind);
    }
    set_op(store, "cannot add peer '%s'", name);
    error = change_begin(store);
    if (!error) {
        error = find_peer(store, name, NULL, &found);
        if (!error && found) {
            error = xasprintf("peer '%s' already exists", name);
        }
    }
    if (!error && kind == STORE_PEER_AUTHORITY) {
        error = find_peer__(store, NULL, STORE_PEER_AUTHORITY, &authority,
                            &found);
        if (!error && found) {
            error = xasprintf("peer '%s' is already the authority",
                              authority.name);
        }
    }
    if (!error) {
        sqlite3_stmt *stmt = stmt_get(store, S_PEER_INSERT);

        bind_text(stmt, ":name", name);
        bind_text(stmt, ":remote", remote);
        bind_now(stmt);
        bind_text(stmt, ":kind", kind_name);
        error = stmt_exec(store, stmt);
    }
    if (!error) {
        /* The kind first: the remote may be long. */
        char *reason = xasprintf("kind %s remote %s", kind_name, remote);
        error = audit_add(store, "peer", name, NULL, 0, NULL, reason);
        free(reason);
    }
    return change_end(store, error);
}

char *
store_del_peer(struct store *store, const char *name)
{
    char *error = check_id(name);
    bool found;

    if (error) {
        return error;
    }
    set_op(store, "cannot delete peer '%s'", name);
    error = change_begin(store);
    if (!error) {
        error = find_peer(store, name, NULL, &found);
        if (!error && !found) {
            error = xasprintf("unknown peer '%s'", name);
        }
    }
    if (!error) {
        sqlite3_stmt *stmt = stmt_get(store, S_PEER_DELETE);

        bind_text(stmt, ":name", name);
        error = stmt_exec(store, stmt);
    }
    if (!error) {
        error = audit_add(store, "unpeer", name, NULL, 0, NULL, NULL);
    }
    return change_end(store, error);
}

bool
store_find_peer(struct store *store, const char *name,
                struct store_peer *peer)
{
    char *error;
    bool found = false;

    if (!store_id_is_valid(name)) {
        return false;
    }
    set_op(store, "cannot look up peer '%s'", name);
    error = find_peer(store, name, peer, &found);
    log_error(error);
    return found;
}

void
store_list_peers(struct store *store, struct store_peer **peers, size_t *n)
{
    list_rows(store, S_PEER_LIST, "peers", peer_from_row, sizeof **peers,
              (void **) peers, n);
}

static char * OVS_WARN_UNUSED_RESULT
find_netkey(struct store *store, const char *peer, struct store_netkey *nk,
            bool *found)
{
    sqlite3_stmt *stmt = stmt_get(store, S_NETKEY_GET);
    char *error = NULL;

    *found = false;
    memset(nk, 0, sizeof *nk);
    bind_text(stmt, ":peer", peer);
    if (stmt_step(store, stmt, &error) == SQLITE_ROW) {
        nk->version = column_u32(stmt, 0);
        if (column_key(stmt, 1, nk->key)) {
            nk->updated = sqlite3_column_int64(stmt, 2);
            *found = true;
        } else {
            error = xasprintf("%s: the NETKEY of peer '%s' is not valid",
                              store->path, peer);
        }
    }
    stmt_done(stmt);
    return error;
}

static char * OVS_WARN_UNUSED_RESULT
put_netkey__(struct store *store, const char *peer,
             const struct store_netkey *nk, const char *event)
{
    sqlite3_stmt *stmt = stmt_get(store, S_NETKEY_PUT);
    char *error;

    bind_text(stmt, ":peer", peer);
    bind_int64(stmt, ":version", nk->version);
    bind_key(stmt, ":key", nk->key);
    bind_int64(stmt, ":now", nk->updated);
    error = stmt_exec(store, stmt);
    if (!error) {
        error = audit_add_key(store, event, peer, NULL, nk->version,
                              nk->key, NULL, "netkey");
    }
    return error;
}

bool
store_get_netkey(struct store *store, const char *peer,
                 struct store_netkey *nk)
{
    char *error;
    bool found = false;

    set_op(store, "cannot get NETKEY of peer '%s'", peer);
    error = find_netkey(store, peer, nk, &found);
    log_error(error);
    if (!found) {
        store_key_wipe(nk, sizeof *nk);
    }
    return found;
}

char *
store_issue_netkey(struct store *store, const char *peer, uint32_t above,
                   struct store_netkey *nk)
{
    char *error;
    bool found;

    set_op(store, "cannot issue NETKEY for peer '%s'", peer);
    error = change_begin(store);
    if (!error) {
        error = find_peer(store, peer, NULL, &found);
        if (!error && !found) {
            error = xasprintf("unknown peer '%s'", peer);
        }
    }
    if (!error) {
        error = find_netkey(store, peer, nk, &found);
        if (!error && found && nk->version <= above
            && nk->version == UINT32_MAX) {
            error = xasprintf("NETKEY versions exhausted");
        } else if (!error && (!found || nk->version <= above)) {
            nk->version = found ? nk->version + 1 : 1;
            randombytes_buf(nk->key, sizeof nk->key);
            nk->updated = time_wall_msec();
            error = put_netkey__(store, peer, nk, found ? "rotate" : "issue");
        }
    }
    error = change_end(store, error);
    if (error) {
        store_key_wipe(nk, sizeof *nk);
    }
    return error;
}

char *
store_put_netkey(struct store *store, const char *peer,
                 const struct store_netkey *nk)
{
    struct store_netkey old;
    char *error;
    bool found;

    set_op(store, "cannot store NETKEY of peer '%s'", peer);
    if (!nk->version) {
        return xasprintf("NETKEY version 0 from peer '%s' is not valid",
                         peer);
    }
    error = change_begin(store);
    if (!error) {
        error = find_peer(store, peer, NULL, &found);
        if (!error && !found) {
            error = xasprintf("unknown peer '%s'", peer);
        }
    }
    if (!error) {
        error = find_netkey(store, peer, &old, &found);
    }
    if (!error && found && old.version > nk->version) {
        error = xasprintf("NETKEY version %"PRIu32" from peer '%s' is "
                          "older than version %"PRIu32, nk->version, peer,
                          old.version);
    } else if (!error && (!found || old.version != nk->version
                          || memcmp(old.key, nk->key, sizeof old.key))) {
        struct store_netkey put = *nk;

        put.updated = time_wall_msec();
        error = put_netkey__(store, peer, &put, "obtain");
        store_key_wipe(&put, sizeof put);
    }
    store_key_wipe(&old, sizeof old);
    return change_end(store, error);
}

/* Counts. */

static size_t
count(struct store *store, enum store_stmt i)
{
    sqlite3_stmt *stmt = stmt_get(store, i);
    char *error = NULL;
    size_t n = 0;

    set_op(store, "cannot count %s", i == S_CLIENT_COUNT ? "clients"
                                                           : "pair keys");
    if (stmt_step(store, stmt, &error) == SQLITE_ROW) {
        n = sqlite3_column_int64(stmt, 0);
    }
    stmt_done(stmt);
    log_error(error);
    return n;
}

size_t
store_count_clients(struct store *store)
{
    return count(store, S_CLIENT_COUNT);
}

size_t
store_count_pair_keys(struct store *store)
{
    return count(store, S_PAIR_COUNT);
}

void
store_key_wipe(void *key, size_t n)
{
    sodium_memzero(key, n);
}

BUILD_ASSERT_DECL(STORE_KEY_LEN == CRYPT_KEY_LEN);
BUILD_ASSERT_DECL(STORE_KCV_LEN == 2 * CRYPT_KCV_LEN);

void
store_key_kcv(const uint8_t key[STORE_KEY_LEN], char kcv[STORE_KCV_LEN + 1])
{
    uint8_t check[CRYPT_CHECK_LEN];

    crypt_key_check(key, check);
    crypt_kcv_format(check, kcv);
}

bool
store_find_pair_key_by_ids(struct store *store, const char *id1,
                           const char *id2, struct store_pair_key *pk)
{
    const char *id_a = NULL, *id_b = NULL;
    bool found = false;
    char *error;

    memset(pk, 0, sizeof *pk);
    if (!store_id_is_valid(id1) || !store_id_is_valid(id2)
        || !strcmp(id1, id2)) {
        return false;
    }
    id_a = strcmp(id1, id2) < 0 ? id1 : id2;
    id_b = id_a == id1 ? id2 : id1;
    set_op(store, "cannot find key for clients '%s' and '%s'", id_a, id_b);
    error = find_pair_by_ids(store, id_a, id_b, pk, &found);
    if (error) {
        VLOG_WARN("%s", error);
        free(error);
        found = false;
    }
    if (!found) {
        store_key_wipe(pk, sizeof *pk);
    }
    return found;
}
