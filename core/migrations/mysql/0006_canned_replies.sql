-- The team's canned replies (saved answers), by shortcut; support's clients expand them. The
-- text is kept as written (it is escaped for `messages` only when sent as a message).
-- A new table only: the legacy tables are not touched. The shortcut is ASCII compared byte for
-- byte, as on SQLite and PostgreSQL; MEDIUMTEXT holds any message's text in utf8mb4.
CREATE TABLE IF NOT EXISTS sg_canned_replies (
    shortcut VARCHAR(32) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
    text MEDIUMTEXT NOT NULL,
    updated_by VARCHAR(20) NOT NULL,
    updated_at_ms BIGINT NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
