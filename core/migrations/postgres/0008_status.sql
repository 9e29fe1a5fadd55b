-- A conversation's status: 0 open, 1 pending, 2 resolved, 3 snoozed until `snoozed_until_ms`
-- (milliseconds since 1970). `last_visitor_message_id` is the newest message the visitor
-- wrote: the writer raises it with each chunk, and a chunk with a visitor message reopens a
-- resolved or snoozed conversation in the same statement.
ALTER TABLE sg_conversations ADD COLUMN IF NOT EXISTS status INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sg_conversations ADD COLUMN IF NOT EXISTS snoozed_until_ms BIGINT NULL;
ALTER TABLE sg_conversations ADD COLUMN IF NOT EXISTS last_visitor_message_id BIGINT NOT NULL DEFAULT 0;
-- One scan of messages, not one per conversation.
UPDATE sg_conversations
    SET last_visitor_message_id = v.id
    FROM (SELECT cid, MAX(id) AS id FROM messages WHERE direction = 1 GROUP BY cid) AS v
    WHERE v.cid = sg_conversations.cid;
