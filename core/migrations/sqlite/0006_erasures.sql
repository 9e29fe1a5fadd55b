-- The record of each erasure (a visitor's right to erasure): which conversation, who erased
-- it and when, how much went; never anything of what was erased.
CREATE TABLE IF NOT EXISTS sg_erasures (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    cid INTEGER NOT NULL,
    erased_by TEXT NOT NULL,
    erased_at_ms INTEGER NOT NULL,
    messages INTEGER NOT NULL,
    notes INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS sg_erasures_cid ON sg_erasures (cid);
