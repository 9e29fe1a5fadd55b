-- The legacy schema (LEGACY.md §5), created where it is missing: on an existing legacy database
-- nothing here changes a table, only the placeholder admin '0' is added when absent.
--
-- MySQL DDL commits implicitly, so a migration is not atomic. Every statement of every MySQL
-- migration is therefore written to be run again safely: if one stops half-way, delete its
-- `success = 0` row from `_sqlx_migrations` and migrate again.
--
-- Conditional DDL goes through PREPARE, which needs no stored procedure (and no DELIMITER) and
-- works on MySQL and MariaDB alike.

-- `users` belongs to a fresh install only: the "another db" variant keeps visitor credentials in
-- an external database and has no such table, so none is added next to an existing `messages`.
-- A fresh install has no foreign key from messages.cid: which visitors exist is not ours to say.
SET @sg_sql = IF(
    (SELECT COUNT(*) FROM information_schema.TABLES
      WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'messages') = 0,
    'CREATE TABLE IF NOT EXISTS users (
         id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
         login_another_db VARCHAR(256) NULL,
         password VARCHAR(256) NOT NULL
     ) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4',
    'DO 0');
PREPARE sg_stmt FROM @sg_sql;
EXECUTE sg_stmt;
DEALLOCATE PREPARE sg_stmt;
SET @sg_sql = NULL;

CREATE TABLE IF NOT EXISTS adm_account (
    aid VARCHAR(20) NOT NULL PRIMARY KEY,
    name VARCHAR(20) NOT NULL,
    lid INT NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- Visitor messages carry aid '0', and the foreign key on messages.aid needs its row
-- (LEGACY.md §5). An existing row '0' is left as it is.
INSERT IGNORE INTO adm_account (aid, name, lid) VALUES ('0', '', 0);

CREATE TABLE IF NOT EXISTS messages (
    id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    cid INT UNSIGNED NOT NULL,
    aid VARCHAR(20) NOT NULL,
    direction INT NOT NULL,
    date DATETIME NOT NULL,
    message VARCHAR(10000) NULL,
    check_msg INT NOT NULL,
    check_msg_admin INT NOT NULL,
    FOREIGN KEY (aid) REFERENCES adm_account (aid)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE IF NOT EXISTS telegram (
    id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    cid INT NULL,
    chat_id INT NOT NULL,
    status INT NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
