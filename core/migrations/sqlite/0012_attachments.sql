-- Files attached to messages. The bytes live in the file storage (`[core.attachments]`), under
-- `storage_key` (random, never shown); a row with no `message_id` is an upload waiting for its
-- message, deleted with its file when none takes it. `sg_message_meta.files` counts a message's
-- files, so reading messages looks here only for those that have some.
CREATE TABLE IF NOT EXISTS sg_attachments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    cid INTEGER NOT NULL,
    message_id INTEGER NULL,
    position INTEGER NOT NULL DEFAULT 0,
    name TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    storage_key TEXT NOT NULL,
    thumbnail_key TEXT NULL,
    thumbnail_type TEXT NULL,
    thumbnail_size INTEGER NULL,
    uploaded_by TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS sg_attachments_message ON sg_attachments (message_id, created_at_ms);
CREATE INDEX IF NOT EXISTS sg_attachments_cid ON sg_attachments (cid);
CREATE UNIQUE INDEX IF NOT EXISTS sg_attachments_key ON sg_attachments (storage_key);
ALTER TABLE sg_message_meta ADD COLUMN files INTEGER NOT NULL DEFAULT 0;
