-- Where each consumer that pushes messages elsewhere (the Telegram edge) has got to: the last
-- message id it has finished with. It survives restarts, so nothing accepted is lost.
CREATE TABLE IF NOT EXISTS sg_delivery_cursors (
    consumer TEXT NOT NULL PRIMARY KEY,
    message_id INTEGER NOT NULL
);
