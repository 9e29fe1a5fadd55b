-- Socketgram's additions to the legacy tables: columns and indexes only, nothing dropped or
-- renamed (the PHP admin keeps reading these tables). Each statement is safe to run again.

-- Today's Telegram chat ids exceed the legacy INT (LEGACY.md §5, §9.11); group chats are
-- negative, so the column stays signed. MODIFY to the same type again changes nothing.
ALTER TABLE telegram MODIFY chat_id BIGINT NOT NULL;

-- 0 once Telegram refused delivery for good (the user blocked the bot).
SET @sg_sql = IF(
    (SELECT COUNT(*) FROM information_schema.COLUMNS
      WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'telegram' AND COLUMN_NAME = 'active') = 0,
    'ALTER TABLE telegram ADD COLUMN active TINYINT NOT NULL DEFAULT 1',
    'DO 0');
PREPARE sg_stmt FROM @sg_sql;
EXECUTE sg_stmt;
DEALLOCATE PREPARE sg_stmt;

-- A conversation's messages in id order: history, unread counts, per-conversation replay.
SET @sg_sql = IF(
    (SELECT COUNT(*) FROM information_schema.STATISTICS
      WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'messages'
        AND INDEX_NAME = 'sg_messages_cid_id') = 0,
    'CREATE INDEX sg_messages_cid_id ON messages (cid, id)',
    'DO 0');
PREPARE sg_stmt FROM @sg_sql;
EXECUTE sg_stmt;
DEALLOCATE PREPARE sg_stmt;

SET @sg_sql = IF(
    (SELECT COUNT(*) FROM information_schema.STATISTICS
      WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'telegram'
        AND INDEX_NAME = 'sg_telegram_chat_id') = 0,
    'CREATE INDEX sg_telegram_chat_id ON telegram (chat_id)',
    'DO 0');
PREPARE sg_stmt FROM @sg_sql;
EXECUTE sg_stmt;
DEALLOCATE PREPARE sg_stmt;

SET @sg_sql = IF(
    (SELECT COUNT(*) FROM information_schema.STATISTICS
      WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'telegram'
        AND INDEX_NAME = 'sg_telegram_cid') = 0,
    'CREATE INDEX sg_telegram_cid ON telegram (cid)',
    'DO 0');
PREPARE sg_stmt FROM @sg_sql;
EXECUTE sg_stmt;
DEALLOCATE PREPARE sg_stmt;
SET @sg_sql = NULL;
