-- Migration 5: kinds of peer key servers.
--
-- A peer is a key server of another encrypted subnet ('inter', every peer
-- until now), or one of several key servers of this subnet: the
-- 'authority' that owns every key (at most one), or a 'member' that
-- mirrors this one's clients and keys.  SQLite adds the column in place;
-- every existing peer becomes 'inter'.

ALTER TABLE peers ADD COLUMN
    kind TEXT NOT NULL DEFAULT 'inter'
        CHECK (kind IN ('inter', 'member', 'authority'));
