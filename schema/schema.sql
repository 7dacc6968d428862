-- pairkey key server database: the current schema.
--
-- pairkeyd creates a new database from this file and sets
-- PRAGMA user_version to the number of the last migration (NNN-*.sql).
-- Keep this file and the migrations in step: applying every migration in
-- order to an empty database must give exactly this schema (checked by
-- unit/test-store.c).  Requires SQLite 3.37 or later (STRICT tables).

-- ID-MAC: the enrolled clients, and the gateways: the virtual client of
-- a fully decrypted port (the patent's ID_X86), which has no MAC of its
-- own and holds pair keys like any client.
CREATE TABLE clients (
    id TEXT PRIMARY KEY NOT NULL       -- 1 to 64 of [A-Za-z0-9._-].
        CHECK (length(id) BETWEEN 1 AND 64
               AND id NOT GLOB '*[^A-Za-z0-9._-]*'),
    mac TEXT UNIQUE                    -- "aa:bb:cc:dd:ee:ff", lower case.
        CHECK (mac GLOB '[0-9a-f][0-9a-f]:[0-9a-f][0-9a-f]:[0-9a-f][0-9a-f]:[0-9a-f][0-9a-f]:[0-9a-f][0-9a-f]:[0-9a-f][0-9a-f]'),
    created INTEGER NOT NULL,          -- Milliseconds since the epoch.
    kind TEXT NOT NULL DEFAULT 'client'
        CHECK ((kind = 'client' AND mac IS NOT NULL)
               OR (kind = 'gateway' AND mac IS NULL))
) STRICT;

-- ID-ID-KEY: one key per unordered pair of clients, stored with
-- id_a < id_b.  pair_id is never reused (AUTOINCREMENT): it is the SA id
-- on the switches, so it must fit in 32 bits; the top 65536 SA ids
-- (0xffff0000 up) are left for keys that belong to no pair (group key).
CREATE TABLE pair_keys (
    pair_id INTEGER PRIMARY KEY AUTOINCREMENT
        CHECK (pair_id BETWEEN 1 AND 4294901759),
    id_a TEXT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    id_b TEXT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    version INTEGER NOT NULL           -- Key version (PW_ID).
        CHECK (version BETWEEN 1 AND 4294967295),
    key BLOB NOT NULL CHECK (length(key) = 32),
    created INTEGER NOT NULL,          -- Milliseconds since the epoch.
    updated INTEGER NOT NULL,          -- When 'version' was issued.
    CHECK (id_a < id_b),
    UNIQUE (id_a, id_b)
) STRICT;

-- Lookups by client: UNIQUE (id_a, id_b) serves id_a, this serves id_b
-- (and the ON DELETE CASCADE from clients).
CREATE INDEX pair_keys_id_b ON pair_keys (id_b);

-- The group key (ID_M, KEY_M) for broadcast and multicast: one row.
CREATE TABLE group_key (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL CHECK (version BETWEEN 1 AND 4294967295),
    key BLOB NOT NULL CHECK (length(key) = 32),
    updated INTEGER NOT NULL           -- Milliseconds since the epoch.
) STRICT;

-- Every enrollment and every key issued, rotated and revoked.  Never key
-- bytes.  id_a and id_b are not references: rows outlive their clients.
CREATE TABLE audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    time INTEGER NOT NULL,             -- Milliseconds since the epoch.
    event TEXT NOT NULL,               -- enroll, unenroll, issue, rotate,
                                       -- revoke, learn, unlearn, peer,
                                       -- unpeer, obtain, repush.
    id_a TEXT,
    id_b TEXT,
    version INTEGER,
    switch TEXT,                       -- The switch that asked, if any.
    reason TEXT,
    kcv TEXT                           -- Key check value of the version.
        CHECK (kcv GLOB '[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]')
) STRICT;

CREATE INDEX audit_time ON audit (time);

-- Hosts outside the encrypted subnet (MACs not enrolled) and the gateway
-- that serves each: the one where it was last seen.
CREATE TABLE outside_macs (
    mac TEXT PRIMARY KEY NOT NULL
        CHECK (mac GLOB '[0-9a-f][0-9a-f]:[0-9a-f][0-9a-f]:[0-9a-f][0-9a-f]:[0-9a-f][0-9a-f]:[0-9a-f][0-9a-f]:[0-9a-f][0-9a-f]'),
    gateway TEXT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    learned INTEGER NOT NULL           -- Milliseconds since the epoch.
) STRICT;

CREATE INDEX outside_macs_gateway ON outside_macs (gateway);

-- Peer key servers, reached at 'remote' (an ssl: remote; the peer's
-- certificate must name it): of another encrypted subnet ('inter'), or of
-- this one: the 'authority' that owns every key (at most one) or a
-- 'member' that mirrors this one's clients and keys.
CREATE TABLE peers (
    name TEXT PRIMARY KEY NOT NULL     -- 1 to 64 of [A-Za-z0-9._-].
        CHECK (length(name) BETWEEN 1 AND 64
               AND name NOT GLOB '*[^A-Za-z0-9._-]*'),
    remote TEXT NOT NULL CHECK (remote GLOB 'ssl:?*'),
    created INTEGER NOT NULL,          -- Milliseconds since the epoch.
    kind TEXT NOT NULL DEFAULT 'inter'
        CHECK (kind IN ('inter', 'member', 'authority'))
) STRICT;

-- NETKEY: the inter-network key shared with each peer.  The peer whose
-- name sorts first generates it; the other obtains it over the
-- authenticated link.
CREATE TABLE netkeys (
    peer TEXT PRIMARY KEY NOT NULL REFERENCES peers (name) ON DELETE CASCADE,
    version INTEGER NOT NULL CHECK (version BETWEEN 1 AND 4294967295),
    key BLOB NOT NULL CHECK (length(key) = 32),
    updated INTEGER NOT NULL           -- Milliseconds since the epoch.
) STRICT;

-- Pairs revoked with 'pairkeyctl revoke-key': no new key for the pair
-- until both clients were enrolled again after 'time'.  Not references:
-- a revocation outlives the clients' enrollments.
CREATE TABLE revoked_pairs (
    id_a TEXT NOT NULL,
    id_b TEXT NOT NULL,
    time INTEGER NOT NULL,             -- Milliseconds since the epoch.
    CHECK (id_a < id_b),
    PRIMARY KEY (id_a, id_b)
) STRICT;
