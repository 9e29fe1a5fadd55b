//! How `append` takes a batch apart and puts its outcomes together, whatever the backend:
//! repeats of a client message id within the batch, the multi-row statements its rows go
//! into, and what each message comes back as.

use super::{StoreResult, from_db_id};
use crate::domain::{Appended, ConversationId, Direction, NewMessage, StoredMessage};

/// Messages of a batch that one statement inserts.
#[derive(Clone, Copy)]
pub struct Chunk<'a> {
    /// The whole batch.
    pub(crate) batch: &'a [NewMessage],
    /// Indexes into `batch`, in insertion order.
    pub(crate) rows: &'a [usize],
}

impl Chunk<'_> {
    /// How many messages.
    pub(crate) fn len(&self) -> usize {
        self.rows.len()
    }
}

/// A chunk was refused because one of its client message ids is stored already (the unique
/// index on `sg_message_meta (cid, client_msg_id)`): the batch is then stored again, looking
/// its keys up first.
#[derive(Debug)]
pub struct KeyStored;

/// Resolves client message ids within a batch before anything is written: the index of the
/// first message of the batch with the same (conversation, client id), for each message that
/// repeats one.
pub(crate) fn duplicates_within(batch: &[NewMessage]) -> Vec<Option<usize>> {
    let mut first: std::collections::HashMap<(ConversationId, &str), usize> =
        std::collections::HashMap::new();
    batch
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let key = (m.conversation_id, m.client_msg_id.as_deref()?);
            match first.get(&key) {
                Some(&earlier) => Some(earlier),
                None => {
                    first.insert(key, i);
                    None
                }
            }
        })
        .collect()
}

/// Rows per multi-row INSERT of a batch (8 parameters each: under every backend's limit).
pub(crate) const INSERT_ROWS: usize = 256;

/// Splits the rows of a batch into multi-row statements whose row counts are powers of two
/// (largest first, at most [`INSERT_ROWS`]).
///
/// Why: a multi-row statement's text depends on its row count, and sqlx prepares and caches
/// one statement per text (100 per connection). Batches of every size from 1 to 256 fill that
/// cache and evict from it, and on MySQL an eviction sends `COM_STMT_CLOSE`, which has no
/// reply: sqlx's socket has no TCP_NODELAY, so the next statement sits in Nagle's buffer until
/// the server's delayed ACK (about 40 ms). That was the MariaDB stall of BENCHMARKS.md. With
/// power-of-two pieces each statement has at most 9 texts, and a batch at most 9 pieces.
pub(crate) fn statement_pieces<T>(mut rows: &[T]) -> impl Iterator<Item = &[T]> {
    std::iter::from_fn(move || {
        if rows.is_empty() {
            return None;
        }
        let take = INSERT_ROWS.min(1 << rows.len().ilog2());
        let (piece, rest) = rows.split_at(take);
        rows = rest;
        Some(piece)
    })
}

/// What `append` stored for `new` under `id`.
pub(crate) fn stored(new: &NewMessage, id: i64) -> StoreResult<Appended> {
    let id = from_db_id("messages.id", id)?;
    Ok(Appended {
        message: StoredMessage {
            id,
            conversation_id: new.conversation_id,
            direction: new.origin.direction(),
            origin: new.origin,
            admin_id: new.admin_id.clone(),
            text: new.text.clone(),
            local_date: new.local_date,
            client_msg_id: new.client_msg_id.clone(),
            attachments: new
                .attachments
                .iter()
                .map(|a| crate::domain::Attachment {
                    message_id: Some(id),
                    ..a.clone()
                })
                .collect(),
        },
        duplicate: false,
    })
}

/// What a chunk brings to one conversation's row of `sg_conversations`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Latest {
    pub(crate) conversation: ConversationId,
    /// Its greatest new message id.
    pub(crate) message: i64,
    /// Its greatest new id of a visitor's message; 0: the chunk has none.
    pub(crate) visitor_message: i64,
}

/// What a chunk brings to each of its conversations (ids in chunk order).
pub(crate) fn latest_per_conversation(chunk: Chunk<'_>, ids: &[i64]) -> Vec<Latest> {
    let mut latest: Vec<Latest> = Vec::new();
    for (&i, &id) in chunk.rows.iter().zip(ids) {
        let new = &chunk.batch[i];
        let visitor = if new.origin.direction() == Direction::ToSupport {
            id
        } else {
            0
        };
        match latest
            .iter_mut()
            .find(|l| l.conversation == new.conversation_id)
        {
            Some(entry) => {
                entry.message = entry.message.max(id);
                entry.visitor_message = entry.visitor_message.max(visitor);
            }
            None => latest.push(Latest {
                conversation: new.conversation_id,
                message: id,
                visitor_message: visitor,
            }),
        }
    }
    latest
}

/// Fills in the repeats of a batch (see [`duplicates_within`]) from their first copies.
pub(crate) fn finish_batch(
    out: Vec<Option<Appended>>,
    repeats: Vec<Option<usize>>,
) -> Vec<Appended> {
    let mut done: Vec<Appended> = Vec::with_capacity(out.len());
    for (slot, repeat) in out.into_iter().zip(repeats) {
        let appended = match (slot, repeat) {
            (Some(appended), _) => appended,
            (None, Some(first)) => Appended {
                message: done[first].message.clone(),
                duplicate: true,
            },
            (None, None) => unreachable!("every message of a batch is stored or a repeat"),
        };
        done.push(appended);
    }
    done
}

#[cfg(test)]
mod tests {
    use super::{INSERT_ROWS, statement_pieces};

    #[test]
    fn statement_pieces_are_powers_of_two_in_order() {
        let mut sizes = std::collections::BTreeSet::new();
        for n in 0..=3 * INSERT_ROWS + 7 {
            let rows: Vec<usize> = (0..n).collect();
            let pieces: Vec<&[usize]> = statement_pieces(&rows).collect();
            assert_eq!(pieces.concat(), rows, "every row once, in order (n = {n})");
            for piece in &pieces {
                assert!(piece.len().is_power_of_two() && piece.len() <= INSERT_ROWS);
                sizes.insert(piece.len());
            }
            assert!(pieces.windows(2).all(|w| w[0].len() >= w[1].len()));
        }
        // 1, 2, 4, ..., 256: the only statement texts a batch can produce.
        assert_eq!(sizes.len(), INSERT_ROWS.ilog2() as usize + 1);
    }
}
