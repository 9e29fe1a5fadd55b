-- A conversation's status: 0 open, 1 pending, 2 resolved, 3 snoozed until `snoozed_until_ms`
-- (milliseconds since 1970). `last_visitor_message_id` is the newest message the visitor
-- wrote: the writer raises it with each chunk, and a chunk with a visitor message reopens a
-- resolved or snoozed conversation in the same statement.
ALTER TABLE sg_conversations
    ADD COLUMN status INT NOT NULL DEFAULT 0,
    ADD COLUMN snoozed_until_ms BIGINT NULL,
    ADD COLUMN last_visitor_message_id BIGINT NOT NULL DEFAULT 0;
-- One scan of messages, not one per conversation (legacy tables may have no index on cid).
UPDATE sg_conversations c
    JOIN (SELECT cid, MAX(id) AS id FROM messages WHERE direction = 1 GROUP BY cid) v
    ON v.cid = c.cid
    SET c.last_visitor_message_id = v.id;
