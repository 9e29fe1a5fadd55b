-- Files attached to messages. The bytes live in the file storage (`[core.attachments]`), under
-- `storage_key` (random, never shown); a row with no `message_id` is an upload waiting for its
-- message, deleted with its file when none takes it. `sg_message_meta.files` counts a message's
-- files, so reading messages looks here only for those that have some.
CREATE TABLE IF NOT EXISTS sg_attachments (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    cid BIGINT NOT NULL,
    message_id BIGINT NULL,
    position INT NOT NULL DEFAULT 0,
    name VARCHAR(200) NOT NULL,
    content_type VARCHAR(100) CHARACTER SET ascii NOT NULL,
    size BIGINT NOT NULL,
    sha256 CHAR(64) CHARACTER SET ascii NOT NULL,
    width INT NOT NULL,
    height INT NOT NULL,
    storage_key VARCHAR(100) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    thumbnail_key VARCHAR(100) CHARACTER SET ascii COLLATE ascii_bin NULL,
    thumbnail_type VARCHAR(100) CHARACTER SET ascii NULL,
    thumbnail_size BIGINT NULL,
    uploaded_by VARCHAR(20) NOT NULL,
    created_at_ms BIGINT NOT NULL,
    KEY sg_attachments_message (message_id, created_at_ms),
    KEY sg_attachments_cid (cid),
    UNIQUE KEY sg_attachments_key (storage_key)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
ALTER TABLE sg_message_meta ADD COLUMN files INT NOT NULL DEFAULT 0;
