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

/* Unit tests for controller/store.c, the key server's store: real SQLite
 * files in a temporary directory.  The schema checks read the same schema
 * files as the store (through the generated schema.inc). */

#include <config.h>

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>
#include <sqlite3.h>

#include "openvswitch/dynamic-string.h"
#include "openvswitch/vlog.h"
#include "packets.h"
#include "store.h"
#include "timeval.h"
#include "util.h"

/* schema_sql[], migrations[], SCHEMA_VERSION, as store.c sees them. */
#include "schema.inc"

static char tmpdir[64];
static int n_dbs;

/* Each test gets two fresh database file names. */
struct fixture {
    char path[128];
    char path2[128];
};

/* Helpers. */

static struct eth_addr
mac_n(uint8_t n)
{
    struct eth_addr mac = ETH_ADDR_C(02, 00, 00, 00, 00, 00);

    mac.ea[5] = n;
    return mac;
}

#define OK(EXPR) ok__((EXPR), #EXPR)

static void
ok__(char *error, const char *what)
{
    if (error) {
        fail_msg("%s: %s", what, error);
    }
}

static void
expect_error(char *error, const char *expected)
{
    if (!error) {
        fail_msg("expected error \"%s\", got success", expected);
    }
    assert_string_equal(error, expected);
    free(error);
}

static void
expect_error_contains(char *error, const char *expected)
{
    if (!error) {
        fail_msg("expected error containing \"%s\", got success", expected);
    }
    if (!strstr(error, expected)) {
        fail_msg("error \"%s\" lacks \"%s\"", error, expected);
    }
    free(error);
}

static struct store *
open_store(const char *path)
{
    struct store *store;

    OK(store_open(path, &store));
    assert_non_null(store);
    return store;
}

static sqlite3 *
raw_open(const char *path)
{
    sqlite3 *db;

    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE
                                     | SQLITE_OPEN_CREATE, NULL),
                     SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    return db;
}

static void
raw_exec(const char *path, const char *sql)
{
    sqlite3 *db = raw_open(path);
    char *msg = NULL;

    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        fail_msg("%s: %s", sql, msg);
    }
    sqlite3_close(db);
}

static int64_t
raw_int(const char *path, const char *sql)
{
    sqlite3 *db = raw_open(path);
    sqlite3_stmt *stmt;
    int64_t value;

    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &stmt, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
    value = sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return value;
}

static char *
raw_text(const char *path, const char *sql)
{
    sqlite3 *db = raw_open(path);
    sqlite3_stmt *stmt;
    char *value;

    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &stmt, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
    value = xstrdup((const char *) sqlite3_column_text(stmt, 0));
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return value;
}

static void
put_value(struct ds *s, sqlite3_stmt *stmt, int col)
{
    switch (sqlite3_column_type(stmt, col)) {
    case SQLITE_NULL:
        ds_put_cstr(s, "NULL");
        break;
    case SQLITE_INTEGER:
        ds_put_format(s, "%"PRId64, (int64_t) sqlite3_column_int64(stmt, col));
        break;
    case SQLITE_FLOAT:
        ds_put_format(s, "%.17g", sqlite3_column_double(stmt, col));
        break;
    case SQLITE_TEXT:
        ds_put_format(s, "'%s'", sqlite3_column_text(stmt, col));
        break;
    case SQLITE_BLOB: {
        const uint8_t *p = sqlite3_column_blob(stmt, col);
        int n = sqlite3_column_bytes(stmt, col);

        ds_put_cstr(s, "x'");
        for (int i = 0; i < n; i++) {
            ds_put_format(s, "%02x", p[i]);
        }
        ds_put_char(s, '\'');
        break;
    }
    default:
        ds_put_cstr(s, "?");
        break;
    }
}

/* Everything in the database at 'path': version, schema and every row of
 * every table, for "nothing changed" checks. */
static char *
db_dump(const char *path)
{
    struct ds s = DS_EMPTY_INITIALIZER;
    sqlite3 *db = raw_open(path);
    sqlite3_stmt *tables, *rows;

    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1,
                                        &rows, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(rows), SQLITE_ROW);
    ds_put_format(&s, "user_version=%d\n", sqlite3_column_int(rows, 0));
    sqlite3_finalize(rows);

    assert_int_equal(sqlite3_prepare_v2(db, "SELECT type, name, sql FROM "
                                        "sqlite_master ORDER BY type, name",
                                        -1, &tables, NULL), SQLITE_OK);
    while (sqlite3_step(tables) == SQLITE_ROW) {
        const char *type = (const char *) sqlite3_column_text(tables, 0);
        const char *name = (const char *) sqlite3_column_text(tables, 1);
        const char *sql = (const char *) sqlite3_column_text(tables, 2);

        ds_put_format(&s, "%s %s: %s\n", type, name, sql ? sql : "");
        if (strcmp(type, "table")) {
            continue;
        }

        char *select = xasprintf("SELECT * FROM \"%s\" ORDER BY rowid",
                                 name);
        assert_int_equal(sqlite3_prepare_v2(db, select, -1, &rows, NULL),
                         SQLITE_OK);
        free(select);
        while (sqlite3_step(rows) == SQLITE_ROW) {
            ds_put_cstr(&s, "  ");
            for (int i = 0; i < sqlite3_column_count(rows); i++) {
                put_value(&s, rows, i);
                ds_put_char(&s, '|');
            }
            ds_put_char(&s, '\n');
        }
        sqlite3_finalize(rows);
    }
    sqlite3_finalize(tables);
    sqlite3_close(db);
    return ds_steal_cstr(&s);
}

/* Returns 'sql' without comments, with white space only where it separates
 * two words, so that formatting differences do not count. */
static char *
normalize_sql(const char *sql)
{
    struct ds s = DS_EMPTY_INITIALIZER;
    bool space = false;
    const char *p = sql;

    while (*p) {
        if (p[0] == '-' && p[1] == '-') {
            p += strcspn(p, "\n");
            space = true;
        } else if (p[0] == '/' && p[1] == '*') {
            const char *end = strstr(p + 2, "*/");

            p = end ? end + 2 : p + strlen(p);
            space = true;
        } else if (isspace((unsigned char) *p)) {
            p++;
            space = true;
        } else {
            size_t len = 1;

            if (*p == '\'' || *p == '"') {
                /* A literal or quoted name, copied as it is. */
                while (p[len] && p[len] != *p) {
                    len++;
                }
                len += p[len] != '\0';
            }
            if (space && s.length && !strchr("(,", s.string[s.length - 1])
                && !strchr("(),", *p)) {
                ds_put_char(&s, ' ');
            }
            space = false;
            ds_put_buffer(&s, p, len);
            p += len;
        }
    }
    return ds_steal_cstr(&s);
}

/* The schema of the database at 'path': its version and every object in
 * sqlite_master with normalized SQL. */
static char *
schema_dump(const char *path)
{
    struct ds s = DS_EMPTY_INITIALIZER;
    sqlite3 *db = raw_open(path);
    sqlite3_stmt *stmt;

    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1,
                                        &stmt, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
    ds_put_format(&s, "user_version=%d\n", sqlite3_column_int(stmt, 0));
    sqlite3_finalize(stmt);

    assert_int_equal(sqlite3_prepare_v2(db, "SELECT type, name, tbl_name, "
                                        "sql FROM sqlite_master "
                                        "ORDER BY type, name",
                                        -1, &stmt, NULL), SQLITE_OK);
    while (sqlite3_step(stmt) == SQLITE_ROW) {
        const char *sql = (const char *) sqlite3_column_text(stmt, 3);
        char *norm = normalize_sql(sql ? sql : "");

        ds_put_format(&s, "%s %s on %s: %s\n",
                      sqlite3_column_text(stmt, 0),
                      sqlite3_column_text(stmt, 1),
                      sqlite3_column_text(stmt, 2), norm);
        free(norm);
    }
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return ds_steal_cstr(&s);
}

static void
assert_same_dump(const char *path, const char *before)
{
    char *after = db_dump(path);

    assert_string_equal(before, after);
    free(after);
}

/* Builds a database at 'path' by applying the first 'n' of 'steps' in
 * order to an empty file, as an older pairkeyd would have left it. */
static void
build_by_migrations(const char *path, const char *const *steps, int n)
{
    for (int i = 0; i < n; i++) {
        char *sql = xasprintf("BEGIN; %s; PRAGMA user_version = %d; COMMIT",
                              steps[i], i + 1);
        raw_exec(path, sql);
        free(sql);
    }
}

static void *
read_file(const char *path, size_t *sizep)
{
    FILE *file = fopen(path, "rb");
    struct ds s = DS_EMPTY_INITIALIZER;
    int c;

    assert_non_null(file);
    while ((c = getc(file)) != EOF) {
        ds_put_char(&s, c);
    }
    fclose(file);
    *sizep = s.length;
    return ds_steal_cstr(&s);
}

static void
assert_file_equal(const char *path, const void *data, size_t size)
{
    size_t size2;
    void *data2 = read_file(path, &size2);

    assert_int_equal(size, size2);
    assert_memory_equal(data, data2, size);
    free(data2);
}

static bool
memmem_any(const void *hay, size_t n, const void *needle, size_t m)
{
    return n >= m && memmem(hay, n, needle, m) != NULL;
}

static bool
key_is_zero(const uint8_t key[STORE_KEY_LEN])
{
    static const uint8_t zero[STORE_KEY_LEN];

    return !memcmp(key, zero, STORE_KEY_LEN);
}

/* Fixtures. */

static void
remove_db(const char *path)
{
    static const char *const suffixes[] = { "", "-wal", "-shm", "-journal" };

    for (size_t i = 0; i < ARRAY_SIZE(suffixes); i++) {
        char *name = xasprintf("%s%s", path, suffixes[i]);

        unlink(name);
        free(name);
    }
}

static int
setup(void **state)
{
    struct fixture *f = xzalloc(sizeof *f);

    n_dbs++;
    snprintf(f->path, sizeof f->path, "%s/test%d.db", tmpdir, n_dbs);
    snprintf(f->path2, sizeof f->path2, "%s/test%d-2.db", tmpdir, n_dbs);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *f = *state;

    remove_db(f->path);
    remove_db(f->path2);
    free(f);
    return 0;
}

static int
group_setup(void **state OVS_UNUSED)
{
    const char *base = getenv("TMPDIR");

    snprintf(tmpdir, sizeof tmpdir, "%s/test-store.XXXXXX",
             base && strlen(base) < 32 ? base : "/tmp");
    if (!mkdtemp(tmpdir)) {
        return -1;
    }
    /* The files that tests write with SQLite or stdio for the store to
     * open must be private, as pairkeyd requires (see test_file_modes()). */
    umask(077);
    vlog_set_levels(NULL, VLF_ANY_DESTINATION, VLL_ERR);
    return 0;
}

static int
group_teardown(void **state OVS_UNUSED)
{
    return rmdir(tmpdir);
}

/* Schema. */

/* A fresh database (schema.sql) has the same schema and version as one
 * built by applying every migration in order to an empty file. */
static void
test_schema_fresh_equals_migrated(void **state)
{
    struct fixture *f = *state;
    struct store *store;

    assert_int_equal(store_latest_schema_version(), SCHEMA_VERSION);
    assert_int_equal(ARRAY_SIZE(migrations), SCHEMA_VERSION);

    store = open_store(f->path);
    assert_int_equal(store_schema_version(store), SCHEMA_VERSION);
    store_close(store);

    build_by_migrations(f->path2, migrations, SCHEMA_VERSION);

    char *fresh = schema_dump(f->path);
    char *migrated = schema_dump(f->path2);
    assert_string_equal(fresh, migrated);
    assert_non_null(strstr(fresh, "table clients on clients"));
    assert_non_null(strstr(fresh, "table pair_keys on pair_keys"));
    assert_non_null(strstr(fresh, "table group_key on group_key"));
    assert_non_null(strstr(fresh, "table audit on audit"));
    char *max = xasprintf("CHECK(pair_id BETWEEN 1 AND %lu)",
                          (unsigned long) STORE_PAIR_ID_MAX);
    assert_non_null(strstr(fresh, max));
    free(max);
    free(migrated);

    /* The store opens the migrated one as it is. */
    store = open_store(f->path2);
    assert_int_equal(store_schema_version(store), SCHEMA_VERSION);
    store_close(store);
    migrated = schema_dump(f->path2);
    assert_string_equal(fresh, migrated);
    free(migrated);

    /* Every older version, migrated by the store, ends up the same. */
    for (int v = 1; v < SCHEMA_VERSION; v++) {
        remove_db(f->path2);
        build_by_migrations(f->path2, migrations, v);
        store = open_store(f->path2);
        assert_int_equal(store_schema_version(store), SCHEMA_VERSION);
        store_close(store);
        migrated = schema_dump(f->path2);
        assert_string_equal(fresh, migrated);
        free(migrated);
    }

    /* The settings that last are set. */
    assert_int_equal(raw_int(f->path, "PRAGMA user_version"),
                     SCHEMA_VERSION);
    char *mode = raw_text(f->path, "PRAGMA journal_mode");
    assert_string_equal(mode, "wal");
    free(mode);
    free(fresh);
}

#define EXTRA_STEP_1 "ALTER TABLE clients ADD COLUMN note TEXT;\n"
#define EXTRA_STEP_2 "CREATE TABLE extra (n INTEGER NOT NULL) STRICT;\n" \
                     "INSERT INTO extra SELECT count(*) FROM clients;\n"

/* The store's own migration code, with two more (made-up) steps than the
 * real schema has: an older database is migrated step by step, keeping
 * its data, and a step that fails leaves the database at the previous
 * step's version. */
static void
test_schema_migrates_step_by_step(void **state)
{
    struct fixture *f = *state;
    const char *steps[SCHEMA_VERSION + 2];
    struct store_pair_key pk, pk2;
    struct store *store;
    bool created;

    for (int i = 0; i < SCHEMA_VERSION; i++) {
        steps[i] = migrations[i];
    }
    steps[SCHEMA_VERSION] = EXTRA_STEP_1;
    steps[SCHEMA_VERSION + 1] = EXTRA_STEP_2;
    char *schema2 = xasprintf("%s%s%s", schema_sql, EXTRA_STEP_1,
                              EXTRA_STEP_2);

    /* A database of today's version, with data. */
    store = open_store(f->path);
    OK(store_add_client(store, "alice", mac_n(1)));
    OK(store_add_client(store, "bob", mac_n(2)));
    OK(store_get_pair_key(store, "alice", "bob", NULL, NULL, &pk,
                          &created));
    store_close(store);

    /* Migrated by the newer program. */
    OK(store_open__(f->path, schema2, steps, SCHEMA_VERSION + 2, &store));
    assert_int_equal(store_schema_version(store), SCHEMA_VERSION + 2);
    assert_int_equal(store_count_clients(store), 2);
    assert_true(store_find_pair_key(store, pk.pair_id, &pk2));
    assert_memory_equal(pk.key, pk2.key, STORE_KEY_LEN);
    store_close(store);
    assert_int_equal(raw_int(f->path, "SELECT n FROM extra"), 2);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM pragma_"
                             "table_info('clients') WHERE name = 'note'"),
                     1);

    /* Same schema as a fresh database of the newer program. */
    OK(store_open__(f->path2, schema2, steps, SCHEMA_VERSION + 2, &store));
    store_close(store);
    char *fresh = schema_dump(f->path2);
    char *migrated = schema_dump(f->path);
    assert_string_equal(fresh, migrated);
    free(fresh);
    free(migrated);

    /* Today's program refuses it. */
    char *expected = xasprintf("%s: database schema version %d is newer "
                               "than this pairkeyd supports (%d)",
                               f->path, SCHEMA_VERSION + 2, SCHEMA_VERSION);
    expect_error(store_open(f->path, &store), expected);
    assert_null(store);
    free(expected);

    /* A failing step: the steps before it stay, it leaves nothing. */
    remove_db(f->path);
    store = open_store(f->path);
    OK(store_add_client(store, "alice", mac_n(1)));
    store_close(store);
    steps[SCHEMA_VERSION + 1] = "CREATE TABLE extra2 (x INTEGER) STRICT;\n"
                                "INSERT INTO no_such_table VALUES (1);\n";
    expected = xasprintf("%s: migration to schema version %d failed: ",
                         f->path, SCHEMA_VERSION + 2);
    expect_error_contains(store_open__(f->path, schema2, steps,
                                       SCHEMA_VERSION + 2, &store),
                          expected);
    assert_null(store);
    free(expected);
    assert_int_equal(raw_int(f->path, "PRAGMA user_version"),
                     SCHEMA_VERSION + 1);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM sqlite_master "
                             "WHERE name = 'extra2'"), 0);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM clients"), 1);

    store_key_wipe(&pk, sizeof pk);
    store_key_wipe(&pk2, sizeof pk2);
    free(schema2);
}

/* A database newer than the program is refused and left as it is. */
static void
test_schema_refuses_newer(void **state)
{
    struct fixture *f = *state;
    struct store *store = open_store(f->path);

    OK(store_add_client(store, "alice", mac_n(1)));
    store_close(store);

    /* As a newer program might leave it: another version, and not in WAL
     * mode, so that switching to WAL too early would show. */
    char *sql = xasprintf("PRAGMA journal_mode = DELETE; "
                          "PRAGMA user_version = %d", SCHEMA_VERSION + 6);
    raw_exec(f->path, sql);
    free(sql);

    size_t size;
    void *before = read_file(f->path, &size);
    char *dump = db_dump(f->path);

    char *expected = xasprintf("%s: database schema version %d is newer "
                               "than this pairkeyd supports (%d)",
                               f->path, SCHEMA_VERSION + 6, SCHEMA_VERSION);
    store = (struct store *) 1;
    expect_error(store_open(f->path, &store), expected);
    assert_null(store);
    free(expected);

    assert_file_equal(f->path, before, size);
    assert_same_dump(f->path, dump);
    assert_int_equal(raw_int(f->path, "PRAGMA user_version"),
                     SCHEMA_VERSION + 6);
    char *mode = raw_text(f->path, "PRAGMA journal_mode");
    assert_string_equal(mode, "delete");
    free(mode);
    free(before);
    free(dump);
}

/* Files that are not pairkey databases are refused and left alone. */
static void
test_schema_refuses_foreign_files(void **state)
{
    struct fixture *f = *state;
    struct store *store;
    size_t size;

    /* Not SQLite at all. */
    FILE *file = fopen(f->path, "wb");
    assert_non_null(file);
    for (int i = 0; i < 64; i++) {
        fputs("this is not a database\n", file);
    }
    fclose(file);
    void *before = read_file(f->path, &size);
    char *expected = xasprintf("%s: ", f->path);
    char *error = store_open(f->path, &store);
    assert_null(store);
    assert_non_null(error);
    assert_true(!strncmp(error, expected, strlen(expected)));
    assert_non_null(strstr(error, "not a database"));
    assert_null(strchr(error, '\n'));
    free(error);
    free(expected);
    assert_file_equal(f->path, before, size);
    free(before);

    /* SQLite, but someone else's. */
    raw_exec(f->path2, "CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (7)");
    char *dump = db_dump(f->path2);
    expected = xasprintf("%s: not a pairkey database (it has tables but no "
                         "schema version)", f->path2);
    expect_error(store_open(f->path2, &store), expected);
    assert_null(store);
    free(expected);
    assert_same_dump(f->path2, dump);
    free(dump);

    /* A directory that does not exist. */
    expected = xasprintf("%s/no/such/dir/x.db: ", tmpdir);
    char *path = xasprintf("%s/no/such/dir/x.db", tmpdir);
    expect_error_contains(store_open(path, &store), expected);
    assert_null(store);
    free(path);
    free(expected);
}

/* File modes.  The store holds raw key bytes. */

static mode_t
file_mode(const char *path)
{
    struct stat st;

    if (stat(path, &st)) {
        fail_msg("%s: %s", path, ovs_strerror(errno));
    }
    return st.st_mode & 07777;
}

/* Opens 'path' and fails if store_open() accepts it; otherwise checks its
 * error, that nothing was opened and that the file kept its bytes. */
static void
expect_refused_file(const char *path, const char *expected)
{
    struct store *store = (struct store *) 1;
    size_t size;
    void *before = read_file(path, &size);
    mode_t mode = file_mode(path);

    expect_error(store_open(path, &store), expected);
    assert_null(store);
    assert_file_equal(path, before, size);
    assert_int_equal(file_mode(path), mode);
    free(before);
}

/* A new store, its -wal and -shm are 0600 whatever the umask; a store that
 * group or others may read or write, or that another user owns, is refused
 * and left as it is. */
static void
test_file_modes(void **state)
{
    static const mode_t umasks[] = { 022, 0, 0277 };
    struct fixture *f = *state;
    mode_t old_umask = umask(022);

    for (size_t i = 0; i < ARRAY_SIZE(umasks); i++) {
        static const char *const suffixes[] = { "", "-wal", "-shm" };
        struct store *store;

        remove_db(f->path);
        umask(umasks[i]);
        store = open_store(f->path);
        OK(store_add_client(store, "alice", mac_n(1)));
        for (size_t k = 0; k < ARRAY_SIZE(suffixes); k++) {
            char *name = xasprintf("%s%s", f->path, suffixes[k]);

            if (file_mode(name) != 0600) {
                fail_msg("umask %03o: %s has mode %04o", umasks[i], name,
                         file_mode(name));
            }
            free(name);
        }
        store_close(store);
    }
    umask(077);

    /* Readable or writable by group or others: refused, whoever wrote it.
     * 0700 (executable by the owner) is nobody else's business. */
    static const mode_t bad[] = { 0644, 0640, 0604, 0620, 0602, 0660, 0666 };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        char *expected = xasprintf("%s: mode %04o lets group or others "
                                   "access the key store; refusing to open "
                                   "it (chmod 600 it first)", f->path,
                                   bad[i]);

        assert_int_equal(chmod(f->path, bad[i]), 0);
        expect_refused_file(f->path, expected);
        free(expected);
    }
    assert_int_equal(chmod(f->path, 0700), 0);
    store_close(open_store(f->path));
    assert_int_equal(chmod(f->path, 0600), 0);

    /* So is a -wal or -shm file open to others (SQLite would have given
     * it the database's mode: someone changed it). */
    char *wal = xasprintf("%s-wal", f->path);
    FILE *file = fopen(wal, "wb");
    assert_non_null(file);
    fclose(file);
    assert_int_equal(chmod(wal, 0644), 0);
    char *expected = xasprintf("%s: mode 0644 lets group or others access "
                               "the key store; refusing to open it (chmod "
                               "600 it first)", wal);
    expect_refused_file(f->path, expected);
    free(expected);
    assert_int_equal(unlink(wal), 0);
    free(wal);

    /* Another user's store. */
    if (!geteuid()) {
        assert_int_equal(chown(f->path, 65534, 65534), 0);
        expected = xasprintf("%s: owned by uid 65534, not by this process's "
                             "uid 0; refusing to open the key store",
                             f->path);
        expect_refused_file(f->path, expected);
        free(expected);
        assert_int_equal(chown(f->path, 0, 0), 0);
    }

    /* Not a file. */
    struct store *store;
    expected = xasprintf("%s: not a regular file", tmpdir);
    expect_error(store_open(tmpdir, &store), expected);
    assert_null(store);
    free(expected);

    /* Accepted again as it was. */
    store = open_store(f->path);
    assert_int_equal(store_count_clients(store), 1);
    store_close(store);
    umask(old_umask);
}

/* Reopening. */

static void
test_reopen_keeps_everything(void **state)
{
    struct fixture *f = *state;
    struct store_pair_key ab, ac, pk;
    struct store_group_key gk, gk2;
    struct store_client client;
    struct store *store;
    bool created;

    store = open_store(f->path);
    OK(store_add_client(store, "alice", mac_n(1)));
    OK(store_add_client(store, "bob", mac_n(2)));
    OK(store_add_client(store, "carol", mac_n(3)));
    OK(store_get_pair_key(store, "alice", "bob", "br0", "request", &ab,
                          &created));
    OK(store_get_pair_key(store, "carol", "alice", "br0", "request", &ac,
                          &created));
    OK(store_rotate_pair_key(store, ac.pair_id, "br0", "rekey", &ac));
    OK(store_get_group_key(store, &gk));
    store_close(store);

    store = open_store(f->path);
    assert_int_equal(store_count_clients(store), 3);
    assert_int_equal(store_count_pair_keys(store), 2);
    assert_true(store_find_client_by_id(store, "bob", &client));
    assert_string_equal(client.id, "bob");
    assert_true(eth_addr_equals(client.mac, mac_n(2)));
    assert_true(client.created > 0);

    assert_true(store_find_pair_key(store, ab.pair_id, &pk));
    assert_memory_equal(&pk, &ab, sizeof pk);
    assert_true(store_find_pair_key(store, ac.pair_id, &pk));
    assert_memory_equal(&pk, &ac, sizeof pk);
    assert_int_equal(pk.version, 2);

    OK(store_get_pair_key(store, "bob", "alice", NULL, NULL, &pk,
                          &created));
    assert_false(created);
    assert_memory_equal(&pk, &ab, sizeof pk);

    OK(store_get_group_key(store, &gk2));
    assert_memory_equal(&gk, &gk2, sizeof gk);
    store_close(store);

    store_key_wipe(&ab, sizeof ab);
    store_key_wipe(&ac, sizeof ac);
    store_key_wipe(&pk, sizeof pk);
    store_key_wipe(&gk, sizeof gk);
    store_key_wipe(&gk2, sizeof gk2);
}

/* Clients. */

static void
test_id_is_valid(void **state OVS_UNUSED)
{
    static const struct {
        const char *id;
        bool valid;
    } cases[] = {
        { "a", true },
        { "alice", true },
        { "Host-1.example_2", true },
        { "0123456789012345678901234567890123456789012345678901234567890123",
          true },
        { "01234567890123456789012345678901234567890123456789012345678901234",
          false },
        { "", false },
        { "bad id", false },
        { "a/b", false },
        { "a:b", false },
        { "a'b", false },
        { "caf\xc3\xa9", false },
        { "a\nb", false },
        { "-", true },
    };

    assert_false(store_id_is_valid(NULL));
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        if (store_id_is_valid(cases[i].id) != cases[i].valid) {
            fail_msg("case %"PRIuSIZE": '%s' should be %s", i, cases[i].id,
                     cases[i].valid ? "valid" : "invalid");
        }
    }
}

static void
test_clients(void **state)
{
    struct fixture *f = *state;
    struct store *store = open_store(f->path);
    struct store_client client, *clients;
    size_t n;

    OK(store_add_client(store, "bob", mac_n(2)));
    OK(store_add_client(store, "alice", mac_n(1)));
    OK(store_add_client(store, "Zed",
                        (struct eth_addr) ETH_ADDR_C(02, ab, cd, ef, 01, 02)));

    assert_true(store_find_client_by_id(store, "alice", &client));
    assert_string_equal(client.id, "alice");
    assert_true(eth_addr_equals(client.mac, mac_n(1)));
    assert_true(store_find_client_by_mac(store, mac_n(2), &client));
    assert_string_equal(client.id, "bob");
    assert_false(store_find_client_by_id(store, "carol", &client));
    assert_false(store_find_client_by_id(store, "bad id", &client));
    assert_false(store_find_client_by_id(store, NULL, &client));
    assert_false(store_find_client_by_mac(store, mac_n(9), &client));

    /* Stored lower case. */
    char *mac = raw_text(f->path, "SELECT mac FROM clients WHERE id = 'Zed'");
    assert_string_equal(mac, "02:ab:cd:ef:01:02");
    free(mac);

    /* Listed by id (byte order). */
    store_list_clients(store, &clients, &n);
    assert_int_equal(n, 3);
    assert_string_equal(clients[0].id, "Zed");
    assert_string_equal(clients[1].id, "alice");
    assert_string_equal(clients[2].id, "bob");
    assert_true(eth_addr_equals(clients[2].mac, mac_n(2)));
    free(clients);
    assert_int_equal(store_count_clients(store), 3);

    /* Every error changes nothing. */
    char *dump = db_dump(f->path);
    expect_error(store_add_client(store, "bob", mac_n(7)),
                 "client 'bob' already exists");
    expect_error(store_add_client(store, "bob", mac_n(2)),
                 "client 'bob' already exists");
    expect_error(store_add_client(store, "carol", mac_n(1)),
                 "MAC 02:00:00:00:00:01 is already enrolled to client "
                 "'alice'");
    expect_error(store_add_client(store, "bad id", mac_n(8)),
                 "client ID 'bad id' is not valid: use 1 to 64 letters, "
                 "digits, '.', '_' or '-'");
    expect_error(store_add_client(store, "a\nb'", mac_n(8)),
                 "client ID 'a\\x0ab\\x27' is not valid: use 1 to 64 "
                 "letters, digits, '.', '_' or '-'");
    expect_error(store_add_client(store, "", mac_n(8)),
                 "client ID '' is not valid: use 1 to 64 letters, "
                 "digits, '.', '_' or '-'");
    expect_error_contains(
        store_add_client(store, "012345678901234567890123456789012345678901"
                         "23456789012345678901234", mac_n(8)),
        "client ID '012345678901234567890123456789012345678901234567890123"
        "45678901234' is not valid");
    expect_error(store_add_client(store, NULL, mac_n(8)),
                 "missing client ID");
    expect_error(store_add_client(store, "carol",
                                  (struct eth_addr) ETH_ADDR_C(01, 00, 5e,
                                                               00, 00, 01)),
                 "cannot enroll client 'carol': MAC 01:00:5e:00:00:01 is a "
                 "multicast address");
    expect_error(store_add_client(store, "carol", eth_addr_broadcast),
                 "cannot enroll client 'carol': MAC ff:ff:ff:ff:ff:ff is a "
                 "multicast address");
    expect_error(store_add_client(store, "carol", eth_addr_zero),
                 "cannot enroll client 'carol': MAC 00:00:00:00:00:00 is "
                 "not valid");
    expect_error(store_del_client(store, "carol", NULL, NULL),
                 "unknown client 'carol'");
    expect_error(store_del_client(store, "bad id", NULL, NULL),
                 "client ID 'bad id' is not valid: use 1 to 64 letters, "
                 "digits, '.', '_' or '-'");
    assert_same_dump(f->path, dump);
    free(dump);

    /* Delete, then the id and the MAC are free again. */
    int64_t *revoked = (int64_t *) 1;
    size_t n_revoked = 1;
    OK(store_del_client(store, "alice", &revoked, &n_revoked));
    assert_null(revoked);
    assert_int_equal(n_revoked, 0);
    assert_false(store_find_client_by_id(store, "alice", &client));
    assert_false(store_find_client_by_mac(store, mac_n(1), &client));
    expect_error(store_del_client(store, "alice", NULL, NULL),
                 "unknown client 'alice'");
    OK(store_add_client(store, "carol", mac_n(1)));
    OK(store_add_client(store, "alice", mac_n(5)));
    assert_int_equal(store_count_clients(store), 4);

    store_close(store);
}

/* Pair keys. */

static void
test_pair_keys(void **state)
{
    struct fixture *f = *state;
    struct store *store = open_store(f->path);
    struct store_pair_key ab, ba, bc, pk, *keys;
    long long int before = time_wall_msec();
    bool created;
    size_t n;

    OK(store_add_client(store, "alice", mac_n(1)));
    OK(store_add_client(store, "bob", mac_n(2)));
    OK(store_add_client(store, "carol", mac_n(3)));
    OK(store_add_client(store, "dave", mac_n(4)));

    /* Created once, (B,A) is (A,B). */
    OK(store_get_pair_key(store, "bob", "alice", "br0", "request", &ab,
                          &created));
    assert_true(created);
    assert_string_equal(ab.id_a, "alice");
    assert_string_equal(ab.id_b, "bob");
    assert_int_equal(ab.version, 1);
    assert_true(ab.pair_id >= 1 && ab.pair_id <= UINT32_MAX);
    assert_true(ab.created >= before && ab.updated == ab.created);
    assert_false(key_is_zero(ab.key));

    OK(store_get_pair_key(store, "alice", "bob", "br1", "again", &ba,
                          &created));
    assert_false(created);
    assert_memory_equal(&ab, &ba, sizeof ab);
    OK(store_get_pair_key(store, "bob", "alice", NULL, NULL, &ba,
                          &created));
    assert_false(created);
    assert_memory_equal(&ab, &ba, sizeof ab);

    /* Another pair, another key. */
    OK(store_get_pair_key(store, "carol", "bob", NULL, NULL, &bc,
                          &created));
    assert_true(created);
    assert_true(bc.pair_id > ab.pair_id);
    assert_memory_not_equal(ab.key, bc.key, STORE_KEY_LEN);
    assert_string_equal(bc.id_a, "bob");
    assert_string_equal(bc.id_b, "carol");

    assert_true(store_find_pair_key(store, bc.pair_id, &pk));
    assert_memory_equal(&pk, &bc, sizeof pk);
    assert_false(store_find_pair_key(store, 4242, &pk));
    assert_true(key_is_zero(pk.key));

    /* Errors change nothing. */
    char *dump = db_dump(f->path);
    expect_error(store_get_pair_key(store, "alice", "alice", NULL, NULL,
                                    &pk, &created),
                 "pair needs two different clients");
    expect_error(store_get_pair_key(store, "alice", "erin", NULL, NULL,
                                    &pk, &created),
                 "unknown client 'erin'");
    expect_error(store_get_pair_key(store, "erin", "alice", NULL, NULL,
                                    &pk, &created),
                 "unknown client 'erin'");
    expect_error(store_get_pair_key(store, "erin", "frank", NULL, NULL,
                                    &pk, &created),
                 "unknown client 'erin'");
    expect_error(store_get_pair_key(store, "alice", "x y", NULL, NULL,
                                    &pk, &created),
                 "client ID 'x y' is not valid: use 1 to 64 letters, "
                 "digits, '.', '_' or '-'");
    expect_error(store_get_pair_key(store, NULL, "bob", NULL, NULL,
                                    &pk, &created),
                 "missing client ID");
    assert_false(created);
    assert_true(key_is_zero(pk.key));
    assert_same_dump(f->path, dump);
    free(dump);

    /* Lists. */
    store_list_pair_keys(store, NULL, &keys, &n);
    assert_int_equal(n, 2);
    assert_memory_equal(&keys[0], &ab, sizeof ab);
    assert_memory_equal(&keys[1], &bc, sizeof bc);
    store_key_wipe(keys, n * sizeof *keys);
    free(keys);

    store_list_pair_keys(store, "carol", &keys, &n);
    assert_int_equal(n, 1);
    assert_memory_equal(&keys[0], &bc, sizeof bc);
    store_key_wipe(keys, n * sizeof *keys);
    free(keys);

    store_list_pair_keys(store, "bob", &keys, &n);
    assert_int_equal(n, 2);
    store_key_wipe(keys, n * sizeof *keys);
    free(keys);

    store_list_pair_keys(store, "dave", &keys, &n);
    assert_int_equal(n, 0);
    free(keys);
    store_list_pair_keys(store, "nobody", &keys, &n);
    assert_int_equal(n, 0);
    free(keys);
    store_list_pair_keys(store, "bad id", &keys, &n);
    assert_int_equal(n, 0);
    free(keys);
    assert_int_equal(store_count_pair_keys(store), 2);

    /* Many pairs: the list grows past its first allocation. */
    for (int i = 0; i < 40; i++) {
        char id[16];

        snprintf(id, sizeof id, "host%02d", i);
        OK(store_add_client(store, id, mac_n(10 + i)));
        OK(store_get_pair_key(store, "dave", id, NULL, NULL, &pk,
                              &created));
        assert_true(created);
    }
    store_list_pair_keys(store, "dave", &keys, &n);
    assert_int_equal(n, 40);
    for (size_t i = 1; i < n; i++) {
        assert_true(keys[i].pair_id > keys[i - 1].pair_id);
        assert_string_equal(keys[i].id_a, "dave");
        assert_false(key_is_zero(keys[i].key));
    }
    store_key_wipe(keys, n * sizeof *keys);
    free(keys);

    store_close(store);
    store_key_wipe(&ab, sizeof ab);
    store_key_wipe(&ba, sizeof ba);
    store_key_wipe(&bc, sizeof bc);
    store_key_wipe(&pk, sizeof pk);
}

/* Pair ids (SA ids on the switches) are never reused, even when the
 * newest pair is deleted, and must fit in 32 bits. */
static void
test_pair_ids_never_reused(void **state)
{
    struct fixture *f = *state;
    struct store *store = open_store(f->path);
    struct store_pair_key ab, ac, pk;
    int64_t *revoked;
    size_t n_revoked;
    bool created;

    OK(store_add_client(store, "alice", mac_n(1)));
    OK(store_add_client(store, "bob", mac_n(2)));
    OK(store_add_client(store, "carol", mac_n(3)));
    OK(store_get_pair_key(store, "alice", "bob", NULL, NULL, &ab, &created));
    OK(store_get_pair_key(store, "alice", "carol", NULL, NULL, &ac,
                          &created));

    /* Delete the newest pair, then make the same pair again. */
    OK(store_del_client(store, "carol", &revoked, &n_revoked));
    assert_int_equal(n_revoked, 1);
    assert_int_equal(revoked[0], ac.pair_id);
    free(revoked);
    OK(store_add_client(store, "carol", mac_n(3)));
    OK(store_get_pair_key(store, "alice", "carol", NULL, NULL, &pk,
                          &created));
    assert_true(created);
    assert_true(pk.pair_id > ac.pair_id);
    assert_memory_not_equal(pk.key, ac.key, STORE_KEY_LEN);

    /* Also across reopening. */
    OK(store_del_client(store, "carol", NULL, NULL));
    store_close(store);
    store = open_store(f->path);
    OK(store_add_client(store, "carol", mac_n(3)));
    int64_t last = pk.pair_id;
    OK(store_get_pair_key(store, "carol", "bob", NULL, NULL, &pk,
                          &created));
    assert_true(pk.pair_id > last);

    /* The pair ids are exhausted: refused, nothing changes. */
    char *sql = xasprintf("UPDATE sqlite_sequence SET seq = %lu "
                          "WHERE name = 'pair_keys'",
                          (unsigned long) STORE_PAIR_ID_MAX);
    raw_exec(f->path, sql);
    free(sql);
    char *dump = db_dump(f->path);
    expect_error(store_get_pair_key(store, "alice", "carol", NULL, NULL,
                                    &pk, &created),
                 "cannot get key for clients 'alice' and 'carol': no pair "
                 "ids left");
    assert_false(created);
    assert_same_dump(f->path, dump);
    free(dump);

    store_close(store);
    store_key_wipe(&ab, sizeof ab);
    store_key_wipe(&ac, sizeof ac);
    store_key_wipe(&pk, sizeof pk);
}

static void
test_rotate(void **state)
{
    struct fixture *f = *state;
    struct store *store = open_store(f->path);
    struct store_pair_key ab, rot, pk;
    bool created;

    OK(store_add_client(store, "alice", mac_n(1)));
    OK(store_add_client(store, "bob", mac_n(2)));
    OK(store_get_pair_key(store, "alice", "bob", NULL, NULL, &ab, &created));

    OK(store_rotate_pair_key(store, ab.pair_id, "br0", "rekey", &rot));
    assert_int_equal(rot.pair_id, ab.pair_id);
    assert_int_equal(rot.version, 2);
    assert_memory_not_equal(rot.key, ab.key, STORE_KEY_LEN);
    assert_false(key_is_zero(rot.key));
    assert_string_equal(rot.id_a, "alice");
    assert_string_equal(rot.id_b, "bob");
    assert_int_equal(rot.created, ab.created);
    assert_true(rot.updated >= ab.updated);

    /* The new key is the pair's key from now on. */
    OK(store_get_pair_key(store, "bob", "alice", NULL, NULL, &pk,
                          &created));
    assert_false(created);
    assert_memory_equal(&pk, &rot, sizeof pk);
    assert_true(store_find_pair_key(store, ab.pair_id, &pk));
    assert_memory_equal(&pk, &rot, sizeof pk);

    OK(store_rotate_pair_key(store, ab.pair_id, NULL, NULL, &pk));
    assert_int_equal(pk.version, 3);
    assert_memory_not_equal(pk.key, rot.key, STORE_KEY_LEN);

    /* Errors change nothing. */
    char *dump = db_dump(f->path);
    expect_error(store_rotate_pair_key(store, 4242, NULL, NULL, &pk),
                 "unknown pair 4242");
    assert_true(key_is_zero(pk.key));
    assert_same_dump(f->path, dump);
    free(dump);

    char *sql = xasprintf("UPDATE pair_keys SET version = 4294967295 "
                          "WHERE pair_id = %"PRId64, ab.pair_id);
    raw_exec(f->path, sql);
    free(sql);
    dump = db_dump(f->path);
    char *expected = xasprintf("pair %"PRId64": key version 4294967295 is "
                               "the last one", ab.pair_id);
    expect_error(store_rotate_pair_key(store, ab.pair_id, NULL, NULL, &pk),
                 expected);
    free(expected);
    assert_same_dump(f->path, dump);
    free(dump);

    store_close(store);
    store_key_wipe(&ab, sizeof ab);
    store_key_wipe(&rot, sizeof rot);
    store_key_wipe(&pk, sizeof pk);
}

/* Deleting a client revokes its pairs and only those. */
static void
test_del_client_revokes(void **state)
{
    struct fixture *f = *state;
    struct store *store = open_store(f->path);
    struct store_pair_key ab, ac, bc, ad, pk, *keys;
    struct store_audit *audit;
    int64_t *revoked;
    size_t n, n_revoked;
    bool created;

    OK(store_add_client(store, "alice", mac_n(1)));
    OK(store_add_client(store, "bob", mac_n(2)));
    OK(store_add_client(store, "carol", mac_n(3)));
    OK(store_add_client(store, "dave", mac_n(4)));
    OK(store_get_pair_key(store, "alice", "bob", NULL, NULL, &ab, &created));
    OK(store_get_pair_key(store, "carol", "alice", NULL, NULL, &ac,
                          &created));
    OK(store_get_pair_key(store, "bob", "carol", NULL, NULL, &bc, &created));
    OK(store_get_pair_key(store, "dave", "alice", NULL, NULL, &ad,
                          &created));
    OK(store_rotate_pair_key(store, ac.pair_id, NULL, NULL, &ac));

    store_list_audit(store, 0, &audit, &n);
    int64_t last_seq = audit[n - 1].seq;
    free(audit);

    OK(store_del_client(store, "alice", &revoked, &n_revoked));
    assert_int_equal(n_revoked, 3);
    assert_int_equal(revoked[0], ab.pair_id);
    assert_int_equal(revoked[1], ac.pair_id);
    assert_int_equal(revoked[2], ad.pair_id);
    free(revoked);

    /* The other pair stays, with its key. */
    store_list_pair_keys(store, NULL, &keys, &n);
    assert_int_equal(n, 1);
    assert_memory_equal(&keys[0], &bc, sizeof bc);
    store_key_wipe(keys, n * sizeof *keys);
    free(keys);
    assert_false(store_find_pair_key(store, ab.pair_id, &pk));
    assert_false(store_find_pair_key(store, ac.pair_id, &pk));
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM pair_keys "
                             "WHERE id_a = 'alice' OR id_b = 'alice'"), 0);

    /* Audit: one "unenroll", then one "revoke" per pair. */
    store_list_audit(store, 0, &audit, &n);
    size_t i = 0;
    while (i < n && audit[i].seq <= last_seq) {
        i++;
    }
    assert_int_equal(n - i, 4);
    assert_string_equal(audit[i].event, "unenroll");
    assert_string_equal(audit[i].id_a, "alice");
    assert_string_equal(audit[i].id_b, "");
    assert_string_equal(audit[i].reason, "mac 02:00:00:00:00:01");
    const struct store_pair_key *expected[3] = { &ab, &ac, &ad };
    for (int j = 0; j < 3; j++) {
        const struct store_audit *a = &audit[i + 1 + j];

        assert_string_equal(a->event, "revoke");
        assert_string_equal(a->id_a, expected[j]->id_a);
        assert_string_equal(a->id_b, expected[j]->id_b);
        assert_int_equal(a->version, expected[j]->version);
        assert_string_equal(a->reason, "client alice unenrolled");
    }
    assert_int_equal(audit[i + 2].version, 2);
    free(audit);

    /* Without a pair. */
    OK(store_del_client(store, "dave", &revoked, &n_revoked));
    assert_int_equal(n_revoked, 0);
    assert_null(revoked);
    assert_int_equal(store_count_pair_keys(store), 1);

    store_close(store);
    store_key_wipe(&ab, sizeof ab);
    store_key_wipe(&ac, sizeof ac);
    store_key_wipe(&bc, sizeof bc);
    store_key_wipe(&ad, sizeof ad);
}

/* The group key. */

static void
test_group_key(void **state)
{
    struct fixture *f = *state;
    struct store *store = open_store(f->path);
    struct store_group_key gk, gk2;
    struct store_audit *audit;
    size_t n;

    OK(store_get_group_key(store, &gk));
    assert_int_equal(gk.version, 1);
    assert_false(key_is_zero(gk.key));
    assert_true(gk.updated > 0);
    OK(store_get_group_key(store, &gk2));
    assert_memory_equal(&gk, &gk2, sizeof gk);
    store_close(store);

    store = open_store(f->path);
    OK(store_get_group_key(store, &gk2));
    assert_memory_equal(&gk, &gk2, sizeof gk);

    /* Issued once. */
    store_list_audit(store, 0, &audit, &n);
    assert_int_equal(n, 1);
    assert_string_equal(audit[0].event, "issue");
    assert_string_equal(audit[0].id_a, "");
    assert_string_equal(audit[0].id_b, "");
    assert_int_equal(audit[0].version, 1);
    assert_string_equal(audit[0].reason, "group key");
    free(audit);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM group_key"), 1);

    /* Rotation: next version, new key, kept from then on. */
    OK(store_rotate_group_key(store, &gk2));
    assert_int_equal(gk2.version, 2);
    assert_memory_not_equal(gk.key, gk2.key, STORE_KEY_LEN);
    assert_false(key_is_zero(gk2.key));
    OK(store_get_group_key(store, &gk));
    assert_memory_equal(&gk, &gk2, sizeof gk);
    store_list_audit(store, 0, &audit, &n);
    assert_int_equal(n, 2);
    assert_string_equal(audit[1].event, "rotate");
    assert_string_equal(audit[1].id_a, "");
    assert_int_equal(audit[1].version, 2);
    assert_string_equal(audit[1].reason, "group key");
    free(audit);

    raw_exec(f->path, "UPDATE group_key SET version = 4294967295");
    char *dump = db_dump(f->path);
    expect_error(store_rotate_group_key(store, &gk2),
                 "group key version 4294967295 is the last one");
    assert_true(key_is_zero(gk2.key));
    assert_same_dump(f->path, dump);
    free(dump);
    store_close(store);

    /* Rotating before there is one creates it. */
    store = open_store(f->path2);
    OK(store_rotate_group_key(store, &gk2));
    assert_int_equal(gk2.version, 1);
    OK(store_get_group_key(store, &gk));
    assert_memory_equal(&gk, &gk2, sizeof gk);
    store_close(store);

    store_key_wipe(&gk, sizeof gk);
    store_key_wipe(&gk2, sizeof gk2);
}

/* Batches. */

static void
test_batch(void **state)
{
    struct fixture *f = *state;
    struct store *store = open_store(f->path);
    struct store *other;
    struct store_pair_key ab, pk;
    struct store_client client;
    bool created;

    OK(store_add_client(store, "alice", mac_n(1)));
    other = open_store(f->path);

    store_batch_begin(store);
    OK(store_add_client(store, "bob", mac_n(2)));
    OK(store_get_pair_key(store, "alice", "bob", "br0", NULL, &ab,
                          &created));
    assert_true(created);

    /* A failing change inside the batch undoes only itself. */
    expect_error(store_add_client(store, "bob", mac_n(3)),
                 "client 'bob' already exists");
    expect_error(store_get_pair_key(store, "bob", "carol", NULL, NULL, &pk,
                                    &created),
                 "unknown client 'carol'");

    /* The batch's own connection sees its changes... */
    assert_true(store_find_client_by_id(store, "bob", &client));
    assert_int_equal(store_count_pair_keys(store), 1);

    /* ...no other one does, while a second connection can open and
     * read. */
    struct store *third = open_store(f->path);
    assert_false(store_find_client_by_id(other, "bob", &client));
    assert_false(store_find_client_by_id(third, "bob", &client));
    assert_int_equal(store_count_pair_keys(other), 0);
    assert_false(store_find_pair_key(other, ab.pair_id, &pk));
    store_close(third);

    OK(store_batch_commit(store));
    assert_true(store_find_client_by_id(other, "bob", &client));
    assert_true(store_find_pair_key(other, ab.pair_id, &pk));
    assert_memory_equal(&pk, &ab, sizeof pk);

    /* Abort and close discard a batch. */
    char *dump = db_dump(f->path);
    store_batch_begin(store);
    OK(store_add_client(store, "carol", mac_n(3)));
    OK(store_rotate_pair_key(store, ab.pair_id, NULL, NULL, &pk));
    store_batch_abort(store);
    assert_false(store_find_client_by_id(store, "carol", &client));
    assert_same_dump(f->path, dump);

    store_batch_begin(store);
    OK(store_add_client(store, "carol", mac_n(3)));
    store_close(store);
    assert_false(store_find_client_by_id(other, "carol", &client));
    assert_same_dump(f->path, dump);
    free(dump);

    /* An empty batch commits. */
    store = open_store(f->path);
    store_batch_begin(store);
    OK(store_batch_commit(store));

    /* The other connection writes again once the batch is over. */
    OK(store_add_client(other, "carol", mac_n(3)));
    assert_true(store_find_client_by_id(store, "carol", &client));

    store_close(store);
    store_close(other);
    store_key_wipe(&ab, sizeof ab);
    store_key_wipe(&pk, sizeof pk);
}

/* Audit log. */

static bool
contains_key(const char *s, const uint8_t key[STORE_KEY_LEN])
{
    char hex[2 * STORE_KEY_LEN + 1];
    char HEX[2 * STORE_KEY_LEN + 1];

    for (int i = 0; i < STORE_KEY_LEN; i++) {
        snprintf(&hex[2 * i], 3, "%02x", key[i]);
        snprintf(&HEX[2 * i], 3, "%02X", key[i]);
    }
    return (memmem_any(s, strlen(s), key, 4)
            || strstr(s, hex) || strstr(s, HEX));
}

static void
test_audit(void **state)
{
    struct fixture *f = *state;
    struct store *store = open_store(f->path);
    struct store_pair_key ab, rot;
    struct store_group_key gk;
    struct store_audit *audit;
    size_t n;
    bool created;

    long long int start = time_wall_msec();
    OK(store_add_client(store, "alice", mac_n(1)));
    OK(store_add_client(store, "bob", mac_n(2)));
    OK(store_get_pair_key(store, "alice", "bob", "br0", "key request", &ab,
                          &created));
    OK(store_get_pair_key(store, "alice", "bob", "br0", "key request", &ab,
                          &created));
    OK(store_rotate_pair_key(store, ab.pair_id, "br1", "version mismatch",
                             &rot));
    OK(store_note_repush(store, "alice", "bob", rot.version, rot.key, "br2",
                         "version mismatch"));
    OK(store_get_group_key(store, &gk));
    OK(store_del_client(store, "bob", NULL, NULL));
    expect_error(store_add_client(store, "alice", mac_n(3)),
                 "client 'alice' already exists");

    const struct {
        const char *event, *id_a, *id_b;
        uint32_t version;
        const char *switch_name, *reason;
        const uint8_t *key;     /* Whose check value is recorded. */
    } expected[] = {
        { "enroll", "alice", "", 0, "", "mac 02:00:00:00:00:01", NULL },
        { "enroll", "bob", "", 0, "", "mac 02:00:00:00:00:02", NULL },
        { "issue", "alice", "bob", 1, "br0", "key request", ab.key },
        { "rotate", "alice", "bob", 2, "br1", "version mismatch", rot.key },
        { "repush", "alice", "bob", 2, "br2", "version mismatch", rot.key },
        { "issue", "", "", 1, "", "group key", gk.key },
        { "unenroll", "bob", "", 0, "", "mac 02:00:00:00:00:02", NULL },
        { "revoke", "alice", "bob", 2, "", "client bob unenrolled", NULL },
    };

    store_list_audit(store, 0, &audit, &n);
    assert_int_equal(n, ARRAY_SIZE(expected));
    for (size_t i = 0; i < n; i++) {
        const struct store_audit *a = &audit[i];

        assert_string_equal(a->event, expected[i].event);
        assert_string_equal(a->id_a, expected[i].id_a);
        assert_string_equal(a->id_b, expected[i].id_b);
        assert_int_equal(a->version, expected[i].version);
        assert_string_equal(a->switch_name, expected[i].switch_name);
        assert_string_equal(a->reason, expected[i].reason);
        if (expected[i].key) {
            char kcv[STORE_KCV_LEN + 1];

            store_key_kcv(expected[i].key, kcv);
            assert_string_equal(a->kcv, kcv);
        } else {
            assert_string_equal(a->kcv, "");
        }
        assert_true(a->time >= start);
        if (i) {
            assert_true(a->seq > audit[i - 1].seq);
        }

        /* No key bytes in any field. */
        const char *fields[] = { a->event, a->id_a, a->id_b,
                                 a->switch_name, a->reason, a->kcv };
        for (size_t j = 0; j < ARRAY_SIZE(fields); j++) {
            assert_false(contains_key(fields[j], ab.key));
            assert_false(contains_key(fields[j], rot.key));
            assert_false(contains_key(fields[j], gk.key));
        }
    }

    /* Since a time: the rows at or after it, in order. */
    long long int since = audit[4].time;
    size_t n_since = 0;
    for (size_t i = 0; i < n; i++) {
        n_since += audit[i].time >= since;
    }
    free(audit);
    store_list_audit(store, since, &audit, &n);
    assert_int_equal(n, n_since);
    assert_string_equal(audit[n - 1].event, "revoke");
    free(audit);
    store_list_audit(store, time_wall_msec() + 60000, &audit, &n);
    assert_int_equal(n, 0);
    free(audit);

    /* The table has no place for a key, and no cell holds bytes. */
    char *columns = raw_text(f->path, "SELECT group_concat(name, ',') FROM "
                             "(SELECT name FROM pragma_table_info('audit') "
                             "ORDER BY cid)");
    assert_string_equal(columns,
                        "seq,time,event,id_a,id_b,version,switch,reason,kcv");
    free(columns);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM audit WHERE "
                             "'blob' IN (typeof(seq), typeof(time), "
                             "typeof(event), typeof(id_a), typeof(id_b), "
                             "typeof(version), typeof(switch), "
                             "typeof(reason))"), 0);

    store_close(store);
    store_key_wipe(&ab, sizeof ab);
    store_key_wipe(&rot, sizeof rot);
    store_key_wipe(&gk, sizeof gk);
}

/* kill -9: a child changes the store and is killed before or after the
 * commit; the parent sees exactly what was committed. */

enum kill_point {
    KILL_IN_BATCH,              /* Killed before the batch commits. */
    KILL_AFTER_BATCH,           /* Killed after it commits. */
    KILL_AFTER_CHANGES,         /* No batch: each change commits. */
};

static void OVS_NO_RETURN
kill_child(const char *path, enum kill_point point, int fd)
{
    struct store_pair_key pk;
    struct store *store;
    bool created;
    char *error;

    error = store_open(path, &store);
    if (!error && point != KILL_AFTER_CHANGES) {
        store_batch_begin(store);
    }
    if (!error) {
        error = store_add_client(store, "bob", mac_n(2));
    }
    if (!error) {
        error = store_get_pair_key(store, "alice", "bob", NULL, NULL, &pk,
                                   &created);
    }
    if (!error && point == KILL_AFTER_BATCH) {
        error = store_batch_commit(store);
    }
    if (error) {
        fprintf(stderr, "child: %s\n", error);
        _exit(2);
    }
    if (write(fd, &pk, sizeof pk) != sizeof pk) {
        _exit(3);
    }
    kill(getpid(), SIGKILL);
    _exit(4);
}

static void
test_kill9(void **state, enum kill_point point)
{
    struct fixture *f = *state;
    struct store_pair_key pk, pk2;
    struct store_client client;
    struct store *store;
    int fds[2];
    int status;

    store = open_store(f->path);
    OK(store_add_client(store, "alice", mac_n(1)));
    store_close(store);
    char *dump = db_dump(f->path);

    assert_int_equal(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (!pid) {
        close(fds[0]);
        kill_child(f->path, point, fds[1]);
    }
    close(fds[1]);
    assert_int_equal(read(fds[0], &pk, sizeof pk), sizeof pk);
    close(fds[0]);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGKILL);

    store = open_store(f->path);
    if (point == KILL_IN_BATCH) {
        assert_same_dump(f->path, dump);
        assert_int_equal(store_count_clients(store), 1);
        assert_false(store_find_client_by_id(store, "bob", &client));
        assert_int_equal(store_count_pair_keys(store), 0);
    } else {
        assert_int_equal(store_count_clients(store), 2);
        assert_true(store_find_client_by_id(store, "bob", &client));
        assert_true(eth_addr_equals(client.mac, mac_n(2)));
        assert_int_equal(store_count_pair_keys(store), 1);
        assert_true(store_find_pair_key(store, pk.pair_id, &pk2));
        assert_memory_equal(&pk, &pk2, sizeof pk);
    }
    store_close(store);
    free(dump);
    store_key_wipe(&pk, sizeof pk);
    store_key_wipe(&pk2, sizeof pk2);
}

static void
test_kill9_before_commit(void **state)
{
    test_kill9(state, KILL_IN_BATCH);
}

static void
test_kill9_after_commit(void **state)
{
    test_kill9(state, KILL_AFTER_BATCH);
}

static void
test_kill9_without_batch(void **state)
{
    test_kill9(state, KILL_AFTER_CHANGES);
}

/* The last audit entry. */
static struct store_audit
last_audit(struct store *store)
{
    struct store_audit *audit, last;
    size_t n;

    store_list_audit(store, 0, &audit, &n);
    assert_true(n > 0);
    last = audit[n - 1];
    free(audit);
    return last;
}

/* Gateways are clients without a MAC that hold pair keys; outside hosts are
 * learned behind them, stay there until moved or forgotten, and leave when
 * enrolled. */
static void
test_gateways(void **state)
{
    struct fixture *f = *state;
    struct store *store = open_store(f->path);
    struct store_client client, *list;
    struct store_outside out;
    struct store_pair_key pk;
    struct store_audit a;
    bool changed, created;
    size_t n;

    OK(store_add_client(store, "alice", mac_n(1)));
    OK(store_add_gateway(store, "gw-1"));
    a = last_audit(store);
    assert_string_equal(a.event, "enroll");
    assert_string_equal(a.id_a, "gw-1");
    assert_string_equal(a.reason, "gateway");

    /* Idempotent; an ordinary client's id is refused. */
    char *dump = db_dump(f->path);
    OK(store_add_gateway(store, "gw-1"));
    expect_error(store_add_gateway(store, "alice"),
                 "client 'alice' is not a gateway");
    expect_error(store_add_gateway(store, "a b"),
                 "client ID 'a b' is not valid: use 1 to 64 letters, "
                 "digits, '.', '_' or '-'");
    assert_same_dump(f->path, dump);
    free(dump);

    /* Found by id, never by MAC, not listed or counted as a client. */
    assert_true(store_find_client_by_id(store, "gw-1", &client));
    assert_true(client.gateway);
    assert_true(eth_addr_is_zero(client.mac));
    assert_true(store_find_client_by_id(store, "alice", &client));
    assert_false(client.gateway);
    assert_false(store_find_client_by_mac(store, eth_addr_zero, &client));
    store_list_clients(store, &list, &n);
    assert_int_equal(n, 1);
    assert_string_equal(list[0].id, "alice");
    free(list);
    assert_int_equal(store_count_clients(store), 1);
    store_list_gateways(store, &list, &n);
    assert_int_equal(n, 1);
    assert_string_equal(list[0].id, "gw-1");
    free(list);

    /* A gateway holds pair keys like a client. */
    OK(store_get_pair_key(store, "alice", "gw-1", NULL, NULL, &pk,
                          &created));
    assert_true(created);

    /* Learning: new, again (no change); at another gateway refused (a
     * host stays where it was first seen), changing nothing. */
    OK(store_add_gateway(store, "gw-2"));
    OK(store_learn_outside(store, mac_n(0x50), "gw-1", &changed));
    assert_true(changed);
    a = last_audit(store);
    assert_string_equal(a.event, "learn");
    assert_string_equal(a.id_a, "gw-1");
    assert_string_equal(a.reason, "mac 02:00:00:00:00:50");
    OK(store_learn_outside(store, mac_n(0x50), "gw-1", &changed));
    assert_false(changed);
    assert_int_equal(last_audit(store).seq, a.seq);
    assert_true(store_find_outside(store, mac_n(0x50), &out));
    assert_string_equal(out.gateway, "gw-1");
    dump = db_dump(f->path);
    changed = true;
    expect_error(store_learn_outside(store, mac_n(0x50), "gw-2", &changed),
                 "outside host 02:00:00:00:00:50 is behind gateway 'gw-1'");
    assert_false(changed);
    assert_same_dump(f->path, dump);
    free(dump);

    /* The admin moves it (and nothing else). */
    OK(store_move_outside(store, mac_n(0x50), "gw-2"));
    a = last_audit(store);
    assert_string_equal(a.event, "learn");
    assert_string_equal(a.id_a, "gw-2");
    assert_string_equal(a.reason,
                        "mac 02:00:00:00:00:50 moved from gateway gw-1");
    assert_true(store_find_outside(store, mac_n(0x50), &out));
    assert_string_equal(out.gateway, "gw-2");
    dump = db_dump(f->path);
    expect_error(store_move_outside(store, mac_n(0x50), "gw-2"),
                 "outside host 02:00:00:00:00:50 is already behind gateway "
                 "'gw-2'");
    expect_error(store_move_outside(store, mac_n(0x51), "gw-1"),
                 "unknown outside host 02:00:00:00:00:51");
    expect_error(store_move_outside(store, mac_n(0x50), "gw-9"),
                 "unknown gateway 'gw-9'");
    expect_error(store_move_outside(store, mac_n(0x50), "alice"),
                 "unknown gateway 'alice'");
    expect_error(store_move_outside(store, mac_n(1), "gw-1"),
                 "MAC 02:00:00:00:00:01 is enrolled to client 'alice'");
    expect_error(store_move_outside(store, eth_addr_broadcast, "gw-1"),
                 "cannot move MAC ff:ff:ff:ff:ff:ff behind gateway 'gw-1': "
                 "not a unicast address");
    expect_error(store_move_outside(store, mac_n(0x50), "a b"),
                 "client ID 'a b' is not valid: use 1 to 64 letters, "
                 "digits, '.', '_' or '-'");

    /* Forgetting: only behind the gateway named, if one is. */
    expect_error(store_forget_outside(store, mac_n(0x50), "gw-1", "idle",
                                      &out),
                 "outside host 02:00:00:00:00:50 is behind gateway 'gw-2', "
                 "not 'gw-1'");
    expect_error(store_forget_outside(store, mac_n(0x51), NULL, "idle",
                                      &out),
                 "unknown outside host 02:00:00:00:00:51");
    assert_same_dump(f->path, dump);
    free(dump);
    OK(store_forget_outside(store, mac_n(0x50), "gw-2", "idle for 300 s",
                            &out));
    assert_string_equal(out.gateway, "gw-2");
    assert_true(eth_addr_equals(out.mac, mac_n(0x50)));
    a = last_audit(store);
    assert_string_equal(a.event, "unlearn");
    assert_string_equal(a.id_a, "gw-2");
    assert_string_equal(a.reason, "mac 02:00:00:00:00:50 idle for 300 s");
    assert_false(store_find_outside(store, mac_n(0x50), &out));

    /* Forgotten, it is learned wherever it is seen next. */
    OK(store_learn_outside(store, mac_n(0x50), "gw-2", &changed));
    assert_true(changed);

    /* Refused: an enrolled MAC, an unknown gateway, a client as gateway,
     * multicast.  Nothing changes. */
    dump = db_dump(f->path);
    expect_error(store_learn_outside(store, mac_n(1), "gw-1", &changed),
                 "MAC 02:00:00:00:00:01 is enrolled to client 'alice'");
    assert_false(changed);
    expect_error(store_learn_outside(store, mac_n(0x51), "gw-9", &changed),
                 "unknown gateway 'gw-9'");
    expect_error(store_learn_outside(store, mac_n(0x51), "alice", &changed),
                 "unknown gateway 'alice'");
    expect_error(store_learn_outside(store, eth_addr_broadcast, "gw-1",
                                     &changed),
                 "cannot learn MAC ff:ff:ff:ff:ff:ff behind gateway 'gw-1': "
                 "not a unicast address");
    assert_same_dump(f->path, dump);
    free(dump);

    /* An outside host that enrolls leaves the outside table. */
    OK(store_learn_outside(store, mac_n(0x52), "gw-1", &changed));
    OK(store_add_client(store, "bob", mac_n(0x52)));
    assert_false(store_find_outside(store, mac_n(0x52), &out));
    struct store_audit *audit;
    store_list_audit(store, 0, &audit, &n);
    assert_string_equal(audit[n - 2].event, "unlearn");
    assert_string_equal(audit[n - 2].id_a, "gw-1");
    assert_string_equal(audit[n - 2].reason,
                        "mac 02:00:00:00:00:52 enrolled to client bob");
    assert_string_equal(audit[n - 1].event, "enroll");
    free(audit);

    /* Deleting a gateway revokes its keys and forgets its hosts. */
    OK(store_del_client(store, "gw-2", NULL, NULL));
    assert_false(store_find_outside(store, mac_n(0x50), &out));
    struct store_outside *outs;
    store_list_outside(store, &outs, &n);
    assert_int_equal(n, 0);
    free(outs);
    store_close(store);
}

/* Peers and their NETKEYs: the owner issues once, the other side stores
 * what it obtains and never goes back to an older version. */
static void
test_peers(void **state)
{
    struct fixture *f = *state;
    struct store *store = open_store(f->path);
    struct store_netkey nk, nk2, got;
    struct store_peer *peers, peer;
    size_t n;

    OK(store_add_peer(store, "ks-b", "ssl:10.0.0.2:6641",
                      STORE_PEER_INTER));
    assert_true(store_find_peer(store, "ks-b", &peer));
    assert_string_equal(peer.remote, "ssl:10.0.0.2:6641");
    assert_int_equal(peer.kind, STORE_PEER_INTER);

    char *dump = db_dump(f->path);
    expect_error(store_add_peer(store, "ks-b", "ssl:10.0.0.3:6641",
                                STORE_PEER_INTER),
                 "peer 'ks-b' already exists");
    expect_error(store_add_peer(store, "ks-c", "tcp:10.0.0.3:6641",
                                STORE_PEER_INTER),
                 "peer remote 'tcp:10.0.0.3:6641' is not valid: use "
                 "ssl:HOST:PORT (peer links carry keys)");
    expect_error(store_add_peer(store, "ks-c", "ssl:", STORE_PEER_INTER),
                 "peer remote 'ssl:' is not valid: use ssl:HOST:PORT "
                 "(peer links carry keys)");
    expect_error(store_add_peer(store, "ks-c", "ssl:a b", STORE_PEER_INTER),
                 "peer remote 'ssl:a b' is not valid: use ssl:HOST:PORT "
                 "(peer links carry keys)");
    expect_error(store_del_peer(store, "ks-z"), "unknown peer 'ks-z'");
    expect_error(store_issue_netkey(store, "ks-z", 0, &nk),
                 "unknown peer 'ks-z'");
    assert_same_dump(f->path, dump);
    free(dump);

    /* Issued once, then the same. */
    assert_false(store_get_netkey(store, "ks-b", &got));
    OK(store_issue_netkey(store, "ks-b", 0, &nk));
    assert_int_equal(nk.version, 1);
    assert_false(key_is_zero(nk.key));
    OK(store_issue_netkey(store, "ks-b", 0, &nk2));
    assert_memory_equal(&nk, &nk2, sizeof nk);
    assert_true(store_get_netkey(store, "ks-b", &got));
    assert_memory_equal(nk.key, got.key, sizeof nk.key);

    /* Rotated only when asked for a version above the current one. */
    OK(store_issue_netkey(store, "ks-b", 1, &nk2));
    assert_int_equal(nk2.version, 2);
    assert_memory_not_equal(nk.key, nk2.key, sizeof nk.key);
    OK(store_issue_netkey(store, "ks-b", 1, &got));
    assert_memory_equal(&nk2, &got, sizeof got);
    assert_true(store_get_netkey(store, "ks-b", &got));
    assert_int_equal(got.version, 2);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM audit WHERE "
                             "event = 'rotate' AND id_a = 'ks-b'"), 1);

    /* Obtained from a peer: newer versions replace, older are refused. */
    OK(store_add_peer(store, "ks-0", "ssl:10.0.0.9:6641",
                      STORE_PEER_INTER));
    nk2.version = 3;
    OK(store_put_netkey(store, "ks-0", &nk2));
    assert_true(store_get_netkey(store, "ks-0", &got));
    assert_int_equal(got.version, 3);
    nk2.version = 2;
    expect_error(store_put_netkey(store, "ks-0", &nk2),
                 "NETKEY version 2 from peer 'ks-0' is older than version "
                 "3");
    nk2.version = 0;
    expect_error(store_put_netkey(store, "ks-0", &nk2),
                 "NETKEY version 0 from peer 'ks-0' is not valid");

    /* Deleting a peer deletes its NETKEY. */
    OK(store_del_peer(store, "ks-0"));
    assert_false(store_get_netkey(store, "ks-0", &got));
    store_list_peers(store, &peers, &n);
    assert_int_equal(n, 1);
    assert_string_equal(peers[0].name, "ks-b");
    free(peers);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM netkeys"), 1);
    store_close(store);
}

/* A revoked pair loses its key and gets none again until both clients were
 * enrolled again. */
static void
test_revoke_pair(void **state)
{
    struct fixture *f = *state;
    struct store *store = open_store(f->path);
    struct store_pair_key pk;
    int64_t pair_id;
    bool created;

    OK(store_add_client(store, "alice", mac_n(1)));
    OK(store_add_client(store, "bob", mac_n(2)));
    OK(store_get_pair_key(store, "alice", "bob", NULL, NULL, &pk, &created));

    char *dump = db_dump(f->path);
    expect_error(store_revoke_pair(store, "alice", "carol", &pair_id),
                 "no key for clients 'alice' and 'carol'");
    expect_error(store_revoke_pair(store, "bob", "bob", &pair_id),
                 "pair needs two different clients");
    assert_same_dump(f->path, dump);
    free(dump);

    OK(store_revoke_pair(store, "bob", "alice", &pair_id));
    assert_int_equal(pair_id, pk.pair_id);
    assert_false(store_find_pair_key_by_ids(store, "alice", "bob", &pk));
    struct store_audit *audit;
    size_t n;
    store_list_audit(store, 0, &audit, &n);
    assert_string_equal(audit[n - 1].event, "revoke");
    assert_string_equal(audit[n - 1].reason, "revoke-key");
    free(audit);

    /* No new key, not even after one of them is enrolled again... */
    const char *refused = "the pair of 'alice' and 'bob' was revoked: "
                          "enroll both again first";
    expect_error(store_get_pair_key(store, "alice", "bob", NULL, NULL, &pk,
                                    &created), refused);
    xnanosleep(2 * 1000 * 1000);
    OK(store_del_client(store, "bob", NULL, NULL));
    OK(store_add_client(store, "bob", mac_n(2)));
    expect_error(store_get_pair_key(store, "alice", "bob", NULL, NULL, &pk,
                                    &created), refused);

    /* ...only after both were. */
    OK(store_del_client(store, "alice", NULL, NULL));
    OK(store_add_client(store, "alice", mac_n(1)));
    OK(store_get_pair_key(store, "alice", "bob", NULL, NULL, &pk, &created));
    assert_true(created);
    assert_int_not_equal(pk.pair_id, pair_id);
    store_close(store);
}

/* Migration 2 keeps every client and pair key of a version 1 database;
 * migration 5 keeps every peer of a version 4 database, as kind "inter",
 * with its NETKEY. */
static void
test_migrate_keeps_data(void **state)
{
    struct fixture *f = *state;
    struct store_client client;
    struct store_pair_key pk;
    struct store_netkey nk;
    struct store_peer peer;
    struct store *store;

    build_by_migrations(f->path, migrations, 1);
    raw_exec(f->path, "INSERT INTO clients VALUES "
             "('alice', '02:00:00:00:00:01', 1), "
             "('bob', '02:00:00:00:00:02', 2); "
             "INSERT INTO pair_keys (id_a, id_b, version, key, created, "
             "updated) VALUES ('alice', 'bob', 3, zeroblob(32), 4, 5)");
    store = open_store(f->path);
    assert_int_equal(store_schema_version(store), SCHEMA_VERSION);
    assert_true(store_find_client_by_mac(store, mac_n(2), &client));
    assert_string_equal(client.id, "bob");
    assert_false(client.gateway);
    assert_int_equal(client.created, 2);
    assert_true(store_find_pair_key_by_ids(store, "bob", "alice", &pk));
    assert_int_equal(pk.pair_id, 1);
    assert_int_equal(pk.version, 3);
    assert_int_equal(store_count_clients(store), 2);
    store_close(store);

    assert_true(SCHEMA_VERSION >= 5);
    build_by_migrations(f->path2, migrations, 4);
    raw_exec(f->path2, "INSERT INTO peers VALUES "
             "('ks-b', 'ssl:10.0.0.2:6641', 6); "
             "INSERT INTO netkeys VALUES ('ks-b', 7, zeroblob(32), 8)");
    store = open_store(f->path2);
    assert_int_equal(store_schema_version(store), SCHEMA_VERSION);
    assert_true(store_find_peer(store, "ks-b", &peer));
    assert_string_equal(peer.remote, "ssl:10.0.0.2:6641");
    assert_int_equal(peer.created, 6);
    assert_int_equal(peer.kind, STORE_PEER_INTER);
    assert_true(store_get_netkey(store, "ks-b", &nk));
    assert_int_equal(nk.version, 7);
    assert_int_equal(nk.updated, 8);
    OK(store_add_peer(store, "ks-c", "ssl:10.0.0.3:6641",
                      STORE_PEER_AUTHORITY));
    store_close(store);
    char *kind = raw_text(f->path2, "SELECT kind FROM peers "
                          "WHERE name = 'ks-b'");
    assert_string_equal(kind, "inter");
    free(kind);
    store_key_wipe(&pk, sizeof pk);
    store_key_wipe(&nk, sizeof nk);
}

/* Peer kinds and the keys a member key server obtains from its
 * authority. */

/* Runs 'sql' on a connection of its own, expecting it to fail; returns
 * SQLite's message. */
static char *
raw_exec_error(const char *path, const char *sql)
{
    sqlite3 *db = raw_open(path);
    char *msg = NULL;
    char *error;

    if (sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK) {
        fail_msg("%s: expected an error, got success", sql);
    }
    error = xstrdup(msg ? msg : "");
    sqlite3_free(msg);
    sqlite3_close(db);
    return error;
}

static int64_t
count_audit(const char *path, const char *event)
{
    char *sql = xasprintf("SELECT count(*) FROM audit WHERE event = '%s'",
                          event);
    int64_t n = raw_int(path, sql);

    free(sql);
    return n;
}

/* No audit entry holds a byte of 'key'. */
static void
assert_audit_lacks_key(struct store *store, const uint8_t key[STORE_KEY_LEN])
{
    struct store_audit *audit;
    size_t n;

    store_list_audit(store, 0, &audit, &n);
    for (size_t i = 0; i < n; i++) {
        const struct store_audit *a = &audit[i];
        const char *fields[] = { a->event, a->id_a, a->id_b,
                                 a->switch_name, a->reason };

        for (size_t j = 0; j < ARRAY_SIZE(fields); j++) {
            assert_false(contains_key(fields[j], key));
        }
    }
    free(audit);
}

static void
assert_foreign_keys_hold(const char *path)
{
    assert_int_equal(raw_int(path, "SELECT count(*) FROM "
                             "pragma_foreign_key_check"), 0);
}

static void
test_peer_kind_names(void **state OVS_UNUSED)
{
    static const struct {
        enum store_peer_kind kind;
        const char *name;
    } kinds[] = {
        { STORE_PEER_INTER, "inter" },
        { STORE_PEER_MEMBER, "member" },
        { STORE_PEER_AUTHORITY, "authority" },
    };
    static const char *const bad[] = {
        "", "Inter", "MEMBER", "auth", "authority ", " member", "members",
        "inter\n", "0", "1", "bogus",
    };
    enum store_peer_kind kind;

    for (size_t i = 0; i < ARRAY_SIZE(kinds); i++) {
        assert_string_equal(store_peer_kind_name(kinds[i].kind),
                            kinds[i].name);
        kind = i ? STORE_PEER_INTER : STORE_PEER_MEMBER;
        assert_true(store_peer_kind_from_name(kinds[i].name, &kind));
        assert_int_equal(kind, kinds[i].kind);
    }
    assert_null(store_peer_kind_name((enum store_peer_kind) 3));
    assert_null(store_peer_kind_name((enum store_peer_kind) -1));

    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        kind = STORE_PEER_MEMBER;
        if (store_peer_kind_from_name(bad[i], &kind)) {
            fail_msg("'%s' should not name a peer kind", bad[i]);
        }
        assert_int_equal(kind, STORE_PEER_MEMBER);
    }
    kind = STORE_PEER_AUTHORITY;
    assert_false(store_peer_kind_from_name(NULL, &kind));
    assert_int_equal(kind, STORE_PEER_AUTHORITY);
}

/* Peers of each kind; at most one authority. */
static void
test_peer_kinds(void **state)
{
    struct fixture *f = *state;
    struct store *store = open_store(f->path);
    struct store_peer peer, *peers;
    struct store_audit a;
    size_t n;

    OK(store_add_peer(store, "ks-m1", "ssl:10.0.0.2:6641",
                      STORE_PEER_MEMBER));
    a = last_audit(store);
    assert_string_equal(a.event, "peer");
    assert_string_equal(a.id_a, "ks-m1");
    assert_string_equal(a.id_b, "");
    assert_int_equal(a.version, 0);
    assert_string_equal(a.reason, "kind member remote ssl:10.0.0.2:6641");
    OK(store_add_peer(store, "ks-auth", "ssl:10.0.0.1:6641",
                      STORE_PEER_AUTHORITY));
    a = last_audit(store);
    assert_string_equal(a.event, "peer");
    assert_string_equal(a.reason,
                        "kind authority remote ssl:10.0.0.1:6641");
    OK(store_add_peer(store, "ks-m2", "ssl:10.0.0.3:6641",
                      STORE_PEER_MEMBER));
    OK(store_add_peer(store, "ks-x", "ssl:10.9.0.1:6641", STORE_PEER_INTER));
    a = last_audit(store);
    assert_string_equal(a.reason, "kind inter remote ssl:10.9.0.1:6641");

    assert_true(store_find_peer(store, "ks-auth", &peer));
    assert_int_equal(peer.kind, STORE_PEER_AUTHORITY);
    assert_string_equal(peer.remote, "ssl:10.0.0.1:6641");
    assert_true(store_find_peer(store, "ks-m1", &peer));
    assert_int_equal(peer.kind, STORE_PEER_MEMBER);
    assert_true(store_find_peer(store, "ks-x", &peer));
    assert_int_equal(peer.kind, STORE_PEER_INTER);

    store_list_peers(store, &peers, &n);
    assert_int_equal(n, 4);
    assert_string_equal(peers[0].name, "ks-auth");
    assert_int_equal(peers[0].kind, STORE_PEER_AUTHORITY);
    assert_string_equal(peers[1].name, "ks-m1");
    assert_int_equal(peers[1].kind, STORE_PEER_MEMBER);
    assert_string_equal(peers[2].name, "ks-m2");
    assert_int_equal(peers[2].kind, STORE_PEER_MEMBER);
    assert_string_equal(peers[3].name, "ks-x");
    assert_int_equal(peers[3].kind, STORE_PEER_INTER);
    free(peers);
    char *kinds = raw_text(f->path, "SELECT group_concat(kind, ',') FROM "
                           "(SELECT kind FROM peers ORDER BY name)");
    assert_string_equal(kinds, "authority,member,member,inter");
    free(kinds);

    /* A second authority, a bad kind, a bad name: refused, nothing
     * changes. */
    char *dump = db_dump(f->path);
    expect_error(store_add_peer(store, "ks-auth2", "ssl:10.0.0.4:6641",
                                STORE_PEER_AUTHORITY),
                 "peer 'ks-auth' is already the authority");
    expect_error(store_add_peer(store, "ks-auth", "ssl:10.0.0.4:6641",
                                STORE_PEER_AUTHORITY),
                 "peer 'ks-auth' already exists");
    expect_error(store_add_peer(store, "ks-m1", "ssl:10.0.0.4:6641",
                                STORE_PEER_AUTHORITY),
                 "peer 'ks-m1' already exists");
    expect_error(store_add_peer(store, "ks-y", "ssl:10.0.0.4:6641",
                                (enum store_peer_kind) 3),
                 "peer kind 3 is not valid");
    expect_error(store_add_peer(store, "ks-y", "ssl:10.0.0.4:6641",
                                (enum store_peer_kind) -1),
                 "peer kind -1 is not valid");
    expect_error(store_add_peer(store, "bad name", "ssl:10.0.0.4:6641",
                                STORE_PEER_MEMBER),
                 "client ID 'bad name' is not valid: use 1 to 64 letters, "
                 "digits, '.', '_' or '-'");
    expect_error(store_add_peer(store, "ks-y", "tcp:10.0.0.4:6641",
                                STORE_PEER_AUTHORITY),
                 "peer remote 'tcp:10.0.0.4:6641' is not valid: use "
                 "ssl:HOST:PORT (peer links carry keys)");

    /* The schema, too, refuses other kinds. */
    char *error = raw_exec_error(f->path, "UPDATE peers SET kind = 'bogus' "
                                 "WHERE name = 'ks-x'");
    assert_non_null(strstr(error, "CHECK constraint failed"));
    free(error);
    error = raw_exec_error(f->path, "UPDATE peers SET kind = NULL "
                           "WHERE name = 'ks-x'");
    assert_non_null(strstr(error, "NOT NULL constraint failed"));
    free(error);
    assert_same_dump(f->path, dump);
    free(dump);

    /* In a batch, the refusal undoes only itself. */
    store_batch_begin(store);
    OK(store_add_peer(store, "ks-m3", "ssl:10.0.0.5:6641",
                      STORE_PEER_MEMBER));
    expect_error(store_add_peer(store, "ks-auth2", "ssl:10.0.0.4:6641",
                                STORE_PEER_AUTHORITY),
                 "peer 'ks-auth' is already the authority");
    OK(store_batch_commit(store));
    assert_true(store_find_peer(store, "ks-m3", &peer));
    assert_int_equal(peer.kind, STORE_PEER_MEMBER);
    assert_false(store_find_peer(store, "ks-auth2", &peer));

    /* Once the authority is gone, another may come; kinds last. */
    OK(store_del_peer(store, "ks-auth"));
    OK(store_add_peer(store, "ks-auth2", "ssl:10.0.0.4:6641",
                      STORE_PEER_AUTHORITY));
    store_close(store);
    store = open_store(f->path);
    assert_true(store_find_peer(store, "ks-auth2", &peer));
    assert_int_equal(peer.kind, STORE_PEER_AUTHORITY);
    assert_true(store_find_peer(store, "ks-m3", &peer));
    assert_int_equal(peer.kind, STORE_PEER_MEMBER);
    assert_false(store_find_peer(store, "ks-auth", &peer));

    /* The kind comes first in the audit reason: a long remote does not
     * hide it. */
    char remote[STORE_REMOTE_MAX_LEN];
    memset(remote, 'h', sizeof remote - 1);
    memcpy(remote, "ssl:", 4);
    remote[sizeof remote - 1] = '\0';
    OK(store_add_peer(store, "ks-long", remote, STORE_PEER_MEMBER));
    a = last_audit(store);
    assert_true(!strncmp(a.reason, "kind member remote ssl:hhh", 26));
    assert_true(store_find_peer(store, "ks-long", &peer));
    assert_string_equal(peer.remote, remote);
    store_close(store);
}

static void
make_pair_key(struct store_pair_key *pk, int64_t pair_id, const char *id1,
              const char *id2, uint32_t version, uint8_t fill)
{
    memset(pk, 0, sizeof *pk);
    pk->pair_id = pair_id;
    ovs_strlcpy(pk->id_a, id1, sizeof pk->id_a);
    ovs_strlcpy(pk->id_b, id2, sizeof pk->id_b);
    pk->version = version;
    memset(pk->key, fill, sizeof pk->key);
}

/* A member stores the pair keys its authority hands out: new, newer, the
 * same again; never older. */
static void
test_put_pair_key(void **state)
{
    struct fixture *f = *state;
    struct store *store = open_store(f->path);
    struct store_pair_key in, pk;
    struct store_audit a;
    int64_t pair_id;
    bool created;

    OK(store_add_client(store, "alice", mac_n(1)));
    OK(store_add_client(store, "bob", mac_n(2)));
    OK(store_add_gateway(store, "gw-1"));

    /* New: the authority's pair id, version and key, in the store's
     * order, with this server's times. */
    long long int before = time_wall_msec();
    make_pair_key(&in, 7, "bob", "alice", 3, 0xa1);
    in.created = in.updated = 1;
    OK(store_put_pair_key(store, &in));
    assert_true(store_find_pair_key_by_ids(store, "alice", "bob", &pk));
    assert_int_equal(pk.pair_id, 7);
    assert_string_equal(pk.id_a, "alice");
    assert_string_equal(pk.id_b, "bob");
    assert_int_equal(pk.version, 3);
    assert_memory_equal(pk.key, in.key, STORE_KEY_LEN);
    assert_true(pk.created >= before);
    assert_int_equal(pk.updated, pk.created);
    long long int first = pk.created;
    a = last_audit(store);
    assert_string_equal(a.event, "obtain");
    assert_string_equal(a.id_a, "alice");
    assert_string_equal(a.id_b, "bob");
    assert_int_equal(a.version, 3);
    assert_string_equal(a.switch_name, "");
    assert_string_equal(a.reason, "pair 7");

    /* Switches get it like any key. */
    OK(store_get_pair_key(store, "alice", "bob", "br0", NULL, &pk,
                          &created));
    assert_false(created);
    assert_int_equal(pk.pair_id, 7);
    assert_memory_equal(pk.key, in.key, STORE_KEY_LEN);

    /* Again, in either order: nothing changes, not even the audit log. */
    char *dump = db_dump(f->path);
    OK(store_put_pair_key(store, &in));
    make_pair_key(&in, 7, "alice", "bob", 3, 0xa1);
    OK(store_put_pair_key(store, &in));
    assert_same_dump(f->path, dump);

    /* Refused, changing nothing. */
    make_pair_key(&in, 7, "alice", "bob", 2, 0xa2);
    expect_error(store_put_pair_key(store, &in),
                 "pair key version 2 for clients 'alice' and 'bob' is older "
                 "than version 3");
    make_pair_key(&in, 7, "bob", "alice", 1, 0xa1);
    expect_error(store_put_pair_key(store, &in),
                 "pair key version 1 for clients 'alice' and 'bob' is older "
                 "than version 3");
    make_pair_key(&in, 8, "alice", "erin", 1, 0xa3);
    expect_error(store_put_pair_key(store, &in), "unknown client 'erin'");
    make_pair_key(&in, 8, "erin", "alice", 1, 0xa3);
    expect_error(store_put_pair_key(store, &in), "unknown client 'erin'");
    make_pair_key(&in, 8, "frank", "erin", 1, 0xa3);
    expect_error(store_put_pair_key(store, &in), "unknown client 'frank'");
    make_pair_key(&in, 8, "alice", "alice", 1, 0xa3);
    expect_error(store_put_pair_key(store, &in),
                 "pair needs two different clients");
    make_pair_key(&in, 8, "alice", "x y", 1, 0xa3);
    expect_error(store_put_pair_key(store, &in),
                 "client ID 'x y' is not valid: use 1 to 64 letters, "
                 "digits, '.', '_' or '-'");
    make_pair_key(&in, 8, "", "bob", 1, 0xa3);
    expect_error(store_put_pair_key(store, &in),
                 "client ID '' is not valid: use 1 to 64 letters, "
                 "digits, '.', '_' or '-'");
    make_pair_key(&in, 8, "alice", "bob", 1, 0xa3);
    memset(in.id_b, 'b', sizeof in.id_b);
    expect_error(store_put_pair_key(store, &in),
                 "pair key has a client ID that is not valid");
    make_pair_key(&in, 0, "alice", "bob", 4, 0xa3);
    expect_error(store_put_pair_key(store, &in),
                 "pair id 0 for clients 'alice' and 'bob' is not valid");
    make_pair_key(&in, -1, "alice", "bob", 4, 0xa3);
    expect_error(store_put_pair_key(store, &in),
                 "pair id -1 for clients 'alice' and 'bob' is not valid");
    make_pair_key(&in, (int64_t) STORE_PAIR_ID_MAX + 1, "bob", "alice", 4,
                  0xa3);
    expect_error(store_put_pair_key(store, &in),
                 "pair id 4294901760 for clients 'alice' and 'bob' is not "
                 "valid");
    make_pair_key(&in, 7, "alice", "bob", 0, 0xa3);
    expect_error(store_put_pair_key(store, &in),
                 "pair key version 0 for clients 'alice' and 'bob' is not "
                 "valid");
    assert_same_dump(f->path, dump);
    free(dump);

    /* Newer: replaced under the same pair id, created when it was. */
    make_pair_key(&in, 7, "alice", "bob", 5, 0xa4);
    OK(store_put_pair_key(store, &in));
    assert_true(store_find_pair_key(store, 7, &pk));
    assert_int_equal(pk.version, 5);
    assert_memory_equal(pk.key, in.key, STORE_KEY_LEN);
    assert_int_equal(pk.created, first);
    assert_true(pk.updated >= first);
    a = last_audit(store);
    assert_string_equal(a.event, "obtain");
    assert_int_equal(a.version, 5);
    assert_string_equal(a.reason, "pair 7");

    /* The same version with another key: the authority's wins. */
    make_pair_key(&in, 7, "alice", "bob", 5, 0xa5);
    OK(store_put_pair_key(store, &in));
    assert_true(store_find_pair_key(store, 7, &pk));
    assert_int_equal(pk.version, 5);
    assert_memory_equal(pk.key, in.key, STORE_KEY_LEN);
    assert_int_equal(count_audit(f->path, "obtain"), 3);

    /* A gateway holds pair keys like a client. */
    make_pair_key(&in, 3, "gw-1", "alice", 1, 0xa6);
    OK(store_put_pair_key(store, &in));
    assert_true(store_find_pair_key_by_ids(store, "gw-1", "alice", &pk));
    assert_int_equal(pk.pair_id, 3);
    assert_string_equal(pk.id_a, "alice");
    assert_string_equal(pk.id_b, "gw-1");
    assert_int_equal(store_count_pair_keys(store), 2);

    /* A pair revoked here is accepted: the authority decides. */
    OK(store_revoke_pair(store, "alice", "bob", &pair_id));
    assert_int_equal(pair_id, 7);
    make_pair_key(&in, 7, "alice", "bob", 6, 0xa7);
    OK(store_put_pair_key(store, &in));
    assert_true(store_find_pair_key(store, 7, &pk));
    assert_int_equal(pk.version, 6);
    assert_memory_equal(pk.key, in.key, STORE_KEY_LEN);
    OK(store_get_pair_key(store, "bob", "alice", NULL, NULL, &pk,
                          &created));
    assert_false(created);
    assert_int_equal(pk.version, 6);

    /* Never key bytes in the audit log; the constraints hold. */
    for (uint8_t fill = 0xa1; fill <= 0xa7; fill++) {
        make_pair_key(&in, 1, "a", "b", 1, fill);
        assert_audit_lacks_key(store, in.key);
    }
    assert_foreign_keys_hold(f->path);
    store_close(store);

    /* Reopened: all there. */
    store = open_store(f->path);
    assert_true(store_find_pair_key(store, 7, &pk));
    assert_int_equal(pk.version, 6);
    assert_true(store_find_pair_key(store, 3, &pk));
    assert_int_equal(pk.version, 1);
    store_close(store);
    store_key_wipe(&in, sizeof in);
    store_key_wipe(&pk, sizeof pk);
}

/* The authority's pair ids win: a pair moves to the id it gives, and a
 * pair that holds that id here goes.  Pair ids issued here stay above
 * every one obtained. */
static void
test_put_pair_key_ids(void **state)
{
    struct fixture *f = *state;
    struct store *store = open_store(f->path);
    struct store_pair_key in, pk;
    struct store_audit *audit;
    bool created;
    size_t n;

    OK(store_add_client(store, "alice", mac_n(1)));
    OK(store_add_client(store, "bob", mac_n(2)));
    OK(store_add_client(store, "carol", mac_n(3)));
    OK(store_add_client(store, "dave", mac_n(4)));
    make_pair_key(&in, 10, "alice", "bob", 1, 0xc1);
    OK(store_put_pair_key(store, &in));
    make_pair_key(&in, 11, "carol", "dave", 1, 0xc2);
    OK(store_put_pair_key(store, &in));

    /* The same version and key under another pair id: the pair moves. */
    make_pair_key(&in, 12, "alice", "bob", 1, 0xc1);
    OK(store_put_pair_key(store, &in));
    assert_false(store_find_pair_key(store, 10, &pk));
    assert_true(store_find_pair_key_by_ids(store, "alice", "bob", &pk));
    assert_int_equal(pk.pair_id, 12);
    assert_memory_equal(pk.key, in.key, STORE_KEY_LEN);
    assert_int_equal(store_count_pair_keys(store), 2);
    struct store_audit a = last_audit(store);
    assert_string_equal(a.event, "obtain");
    assert_string_equal(a.reason, "pair 12");

    /* A pair id that another pair holds here: that pair goes. */
    make_pair_key(&in, 11, "alice", "bob", 2, 0xc3);
    OK(store_put_pair_key(store, &in));
    assert_true(store_find_pair_key(store, 11, &pk));
    assert_string_equal(pk.id_a, "alice");
    assert_string_equal(pk.id_b, "bob");
    assert_int_equal(pk.version, 2);
    assert_memory_equal(pk.key, in.key, STORE_KEY_LEN);
    assert_false(store_find_pair_key(store, 12, &pk));
    assert_false(store_find_pair_key_by_ids(store, "carol", "dave", &pk));
    assert_int_equal(store_count_pair_keys(store), 1);
    store_list_audit(store, 0, &audit, &n);
    assert_true(n >= 2);
    assert_string_equal(audit[n - 2].event, "revoke");
    assert_string_equal(audit[n - 2].id_a, "carol");
    assert_string_equal(audit[n - 2].id_b, "dave");
    assert_int_equal(audit[n - 2].version, 1);
    assert_string_equal(audit[n - 2].reason,
                        "pair 11 obtained for alice and bob");
    assert_string_equal(audit[n - 1].event, "obtain");
    assert_string_equal(audit[n - 1].id_a, "alice");
    assert_int_equal(audit[n - 1].version, 2);
    assert_string_equal(audit[n - 1].reason, "pair 11");
    free(audit);

    /* A pair issued here gets an id above every one obtained. */
    assert_true(raw_int(f->path, "SELECT seq FROM sqlite_sequence "
                        "WHERE name = 'pair_keys'") >= 12);
    OK(store_get_pair_key(store, "carol", "dave", NULL, NULL, &pk,
                          &created));
    assert_true(created);
    assert_true(pk.pair_id > 12);
    int64_t cd = pk.pair_id;

    /* Both at once: the pair is here under another id, and the id is
     * another pair's. */
    make_pair_key(&in, cd, "bob", "alice", 3, 0xc4);
    OK(store_put_pair_key(store, &in));
    assert_int_equal(store_count_pair_keys(store), 1);
    assert_false(store_find_pair_key(store, 11, &pk));
    assert_true(store_find_pair_key(store, cd, &pk));
    assert_string_equal(pk.id_a, "alice");
    assert_string_equal(pk.id_b, "bob");
    assert_int_equal(pk.version, 3);
    assert_memory_equal(pk.key, in.key, STORE_KEY_LEN);

    /* In a batch, a refused put undoes only itself. */
    char *dump = db_dump(f->path);
    store_batch_begin(store);
    make_pair_key(&in, 20, "carol", "dave", 1, 0xc5);
    OK(store_put_pair_key(store, &in));
    make_pair_key(&in, 21, "alice", "erin", 1, 0xc6);
    expect_error(store_put_pair_key(store, &in), "unknown client 'erin'");
    make_pair_key(&in, cd, "alice", "bob", 2, 0xc6);
    expect_error(store_put_pair_key(store, &in),
                 "pair key version 2 for clients 'alice' and 'bob' is older "
                 "than version 3");
    store_batch_abort(store);
    assert_same_dump(f->path, dump);
    free(dump);

    store_batch_begin(store);
    make_pair_key(&in, 20, "carol", "dave", 1, 0xc5);
    OK(store_put_pair_key(store, &in));
    make_pair_key(&in, cd, "alice", "bob", 2, 0xc6);
    expect_error(store_put_pair_key(store, &in),
                 "pair key version 2 for clients 'alice' and 'bob' is older "
                 "than version 3");
    OK(store_batch_commit(store));
    assert_true(store_find_pair_key(store, 20, &pk));
    assert_string_equal(pk.id_a, "carol");
    assert_true(store_find_pair_key(store, cd, &pk));
    assert_int_equal(pk.version, 3);
    assert_int_equal(store_count_pair_keys(store), 2);

    /* Deleting a client revokes obtained keys like any. */
    int64_t *revoked;
    size_t n_revoked;
    OK(store_del_client(store, "dave", &revoked, &n_revoked));
    assert_int_equal(n_revoked, 1);
    assert_int_equal(revoked[0], 20);
    free(revoked);

    for (uint8_t fill = 0xc1; fill <= 0xc6; fill++) {
        make_pair_key(&in, 1, "a", "b", 1, fill);
        assert_audit_lacks_key(store, in.key);
    }
    assert_foreign_keys_hold(f->path);
    store_close(store);
    store_key_wipe(&in, sizeof in);
    store_key_wipe(&pk, sizeof pk);
}

/* A member stores the group key its authority hands out. */
static void
test_put_group_key(void **state)
{
    struct fixture *f = *state;
    struct store *store = open_store(f->path);
    struct store_group_key in, gk;
    struct store_audit a;

    memset(&in, 0, sizeof in);
    in.version = 3;
    memset(in.key, 0xb1, sizeof in.key);
    in.updated = 1;
    long long int before = time_wall_msec();
    OK(store_put_group_key(store, &in));
    OK(store_get_group_key(store, &gk));
    assert_int_equal(gk.version, 3);
    assert_memory_equal(gk.key, in.key, STORE_KEY_LEN);
    assert_true(gk.updated >= before);
    a = last_audit(store);
    assert_string_equal(a.event, "obtain");
    assert_string_equal(a.id_a, "");
    assert_string_equal(a.id_b, "");
    assert_int_equal(a.version, 3);
    assert_string_equal(a.reason, "group key");
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM audit"), 1);

    /* Again: nothing changes.  Older or 0: refused, nothing changes. */
    char *dump = db_dump(f->path);
    OK(store_put_group_key(store, &in));
    in.version = 2;
    memset(in.key, 0xb2, sizeof in.key);
    expect_error(store_put_group_key(store, &in),
                 "group key version 2 is older than version 3");
    in.version = 0;
    expect_error(store_put_group_key(store, &in),
                 "group key version 0 is not valid");
    assert_same_dump(f->path, dump);
    free(dump);

    /* The same version with another key: the authority's wins. */
    in.version = 3;
    memset(in.key, 0xb3, sizeof in.key);
    OK(store_put_group_key(store, &in));
    OK(store_get_group_key(store, &gk));
    assert_int_equal(gk.version, 3);
    assert_memory_equal(gk.key, in.key, STORE_KEY_LEN);

    /* Newer: replaced. */
    in.version = 9;
    memset(in.key, 0xb4, sizeof in.key);
    OK(store_put_group_key(store, &in));
    OK(store_get_group_key(store, &gk));
    assert_int_equal(gk.version, 9);
    assert_memory_equal(gk.key, in.key, STORE_KEY_LEN);
    assert_int_equal(count_audit(f->path, "obtain"), 3);
    store_close(store);

    /* Reopened: kept; a rotation here follows on from it. */
    store = open_store(f->path);
    OK(store_get_group_key(store, &gk));
    assert_int_equal(gk.version, 9);
    assert_memory_equal(gk.key, in.key, STORE_KEY_LEN);
    OK(store_rotate_group_key(store, &gk));
    assert_int_equal(gk.version, 10);
    for (uint8_t fill = 0xb1; fill <= 0xb4; fill++) {
        memset(in.key, fill, sizeof in.key);
        assert_audit_lacks_key(store, in.key);
    }
    store_close(store);

    /* A group key made here before the authority's came is replaced by
     * the authority's of the same version. */
    store = open_store(f->path2);
    OK(store_get_group_key(store, &gk));
    assert_int_equal(gk.version, 1);
    in.version = 1;
    memset(in.key, 0xb5, sizeof in.key);
    OK(store_put_group_key(store, &in));
    OK(store_get_group_key(store, &gk));
    assert_int_equal(gk.version, 1);
    assert_memory_equal(gk.key, in.key, STORE_KEY_LEN);
    assert_int_equal(raw_int(f->path2, "SELECT count(*) FROM group_key"), 1);

    /* In a batch, too. */
    store_batch_begin(store);
    in.version = 2;
    OK(store_put_group_key(store, &in));
    in.version = 1;
    expect_error(store_put_group_key(store, &in),
                 "group key version 1 is older than version 2");
    OK(store_batch_commit(store));
    OK(store_get_group_key(store, &gk));
    assert_int_equal(gk.version, 2);
    store_close(store);
    store_key_wipe(&in, sizeof in);
    store_key_wipe(&gk, sizeof gk);
}

int
main(void)
{
#define T(FUNC) cmocka_unit_test_setup_teardown(FUNC, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_schema_fresh_equals_migrated),
        T(test_schema_migrates_step_by_step),
        T(test_schema_refuses_newer),
        T(test_schema_refuses_foreign_files),
        T(test_reopen_keeps_everything),
        T(test_file_modes),
        cmocka_unit_test(test_id_is_valid),
        T(test_clients),
        T(test_pair_keys),
        T(test_pair_ids_never_reused),
        T(test_rotate),
        T(test_del_client_revokes),
        T(test_group_key),
        T(test_batch),
        T(test_audit),
        T(test_gateways),
        T(test_peers),
        T(test_revoke_pair),
        T(test_migrate_keeps_data),
        cmocka_unit_test(test_peer_kind_names),
        T(test_peer_kinds),
        T(test_put_pair_key),
        T(test_put_pair_key_ids),
        T(test_put_group_key),
        T(test_kill9_before_commit),
        T(test_kill9_after_commit),
        T(test_kill9_without_batch),
    };
#undef T

    return cmocka_run_group_tests_name("store", tests, group_setup,
                                       group_teardown);
}
