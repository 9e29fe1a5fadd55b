-- Support staff's signed-in sessions (the console): the SHA-256 of each session's secret
-- (never the secret, which only the browser's cookie holds), whose it is and until when.
-- Ending an admin's sessions everywhere deletes that admin's rows.
CREATE TABLE IF NOT EXISTS sg_admin_sessions (
    id CHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
    aid VARCHAR(20) NOT NULL,
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    KEY sg_admin_sessions_aid (aid)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
