-- Support's private notes on a conversation: never sent to the visitor, outside `messages`
-- (which the visitor's history and the PHP admin read) and its ids. The text is kept as
-- written. A new table only: the legacy tables are not touched.
CREATE TABLE IF NOT EXISTS sg_notes (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    cid BIGINT NOT NULL,
    aid VARCHAR(20) NOT NULL,
    text MEDIUMTEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    note_key VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    UNIQUE KEY sg_notes_key (note_key),
    KEY sg_notes_cid (cid, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
