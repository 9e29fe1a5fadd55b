-- Support's private notes on a conversation: never sent to the visitor, outside `messages`
-- (which the visitor's history reads) and its ids. The text is kept as written.
CREATE TABLE IF NOT EXISTS sg_notes (
    id BIGSERIAL PRIMARY KEY,
    cid BIGINT NOT NULL,
    aid VARCHAR(20) NOT NULL,
    text TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    note_key VARCHAR(64) NOT NULL UNIQUE
);
CREATE INDEX IF NOT EXISTS sg_notes_cid ON sg_notes (cid, id);
