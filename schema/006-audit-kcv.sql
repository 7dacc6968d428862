-- Migration 6: key check values in the audit log.
--
-- An entry about a key version (issue, rotate, obtain, revoke, repush)
-- records the version's key check value: 8 hexadecimal digits of a keyed
-- hash of the key (see docs/frame-format.md), the same that "ovs-appctl
-- pairkey/show" prints for the version a switch holds, so that the log
-- tells which key a bridge has without holding any key.  Older entries
-- have none.

ALTER TABLE audit ADD COLUMN
    kcv TEXT CHECK (kcv GLOB '[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]');
