-- Socketgram's own sign-in for support staff (the console): an argon2id hash (PHC string) per
-- admin of `adm_account`, never in the legacy columns, which the PHP admin keeps as they are.
CREATE TABLE IF NOT EXISTS sg_admin_passwords (
    aid VARCHAR(20) NOT NULL PRIMARY KEY,
    hash VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    updated_at_ms BIGINT NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
