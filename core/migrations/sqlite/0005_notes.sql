-- Support's private notes on a conversation: never sent to the visitor, outside `messages`
-- (which the visitor's history reads) and its ids. The text is kept as written.
CREATE TABLE IF NOT EXISTS sg_notes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    cid INTEGER NOT NULL,
    aid TEXT NOT NULL,
    text TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    note_key TEXT NOT NULL UNIQUE
);
CREATE INDEX IF NOT EXISTS sg_notes_cid ON sg_notes (cid, id);
