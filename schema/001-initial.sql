-- Migration 1: the initial schema (empty database -> version 1).
--
-- pairkeyd applies the migrations after a database's user_version in order,
-- each in its own transaction that also sets user_version to the
-- migration's number.  Never edit a migration that has been released: add
-- the next one, and change schema.sql to match.

-- ID-MAC: the enrolled clients.
CREATE TABLE clients (
    id TEXT PRIMARY KEY NOT NULL       -- 1 to 64 of [A-Za-z0-9._-].
        CHECK (length(id) BETWEEN 1 AND 64
               AND id NOT GLOB '*[^A-Za-z0-9._-]*'),
    mac TEXT NOT NULL UNIQUE           -- "aa:bb:cc:dd:ee:ff", lower case.
        CHECK (mac GLOB '[0-9a-f][0-9a-f]:[0-9a-f][0-9a-f]:[0-9a-f][0-9a-f]:[0-9a-f][0-9a-f]:[0-9a-f][0-9a-f]:[0-9a-f][0-9a-f]'),
    created INTEGER NOT NULL           -- Milliseconds since the epoch.
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
                                       -- revoke.
    id_a TEXT,
    id_b TEXT,
    version INTEGER,
    switch TEXT,                       -- The switch that asked, if any.
    reason TEXT
) STRICT;

CREATE INDEX audit_time ON audit (time);
