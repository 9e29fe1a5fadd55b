//! A conversation's transcript, for export: its messages (and, when asked, support's private
//! notes) rendered as JSON or plain text, in pieces of bounded size so that any conversation
//! can be exported whatever its length.

use chrono::DateTime;
use serde_json::{Value, json};

use crate::domain::{ConversationId, Direction, MessageId, Note, Origin, StoredMessage};

/// Largest transcript body of one export call; a longer conversation continues with the
/// next call (`after`). Under gRPC's default 4 MiB message size, with room for the envelope.
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// How a transcript is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Text,
}

/// One piece of a conversation's transcript.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transcript {
    pub content_type: &'static str,
    pub file_name: String,
    pub body: Vec<u8>,
    /// Messages and notes in this piece.
    pub messages: usize,
    pub notes: usize,
    /// The id of the last message in this piece when more follow (pass it as `after`); 0 when
    /// the transcript is complete.
    pub next_after: MessageId,
}

/// About how many bytes `m` takes in a transcript, its author's name aside: JSON may escape
/// a character in up to 6 bytes, most text is 1 to 1, so the text counts twice.
pub fn estimated_bytes(m: &StoredMessage) -> usize {
    let files: usize = m.attachments.iter().map(|a| 2 * a.name.len() + 160).sum();
    2 * m.text.len() + 128 + files
}

/// A message as the transcript shows it: who wrote it, by display name.
pub struct Line<'a> {
    pub message: &'a StoredMessage,
    pub author: String,
}

/// Renders one piece: `lines` in id order (those that fit in [`MAX_BODY`]; `more` when the
/// conversation has more after them), `notes` (all of them) only in the last piece.
pub fn render(
    conversation: ConversationId,
    format: Format,
    lines: &[Line<'_>],
    more: bool,
    notes: &[Note],
) -> Transcript {
    let mut taken = 0;
    let mut size = 0;
    for line in lines {
        size += estimated_bytes(line.message) + line.author.len();
        if taken > 0 && size > MAX_BODY {
            break;
        }
        taken += 1;
    }
    let more = more || taken < lines.len();
    let lines = &lines[..taken];
    let notes = if more { &[][..] } else { notes };
    let next_after = if more {
        lines.last().map_or(0, |l| l.message.id)
    } else {
        0
    };
    let (content_type, extension, body) = match format {
        Format::Json => (
            "application/json",
            "json",
            json_body(conversation, lines, notes, next_after),
        ),
        Format::Text => (
            "text/plain; charset=utf-8",
            "txt",
            text_body(conversation, lines, notes),
        ),
    };
    let first = lines.first().map_or(0, |l| l.message.id);
    Transcript {
        content_type,
        file_name: format!("conversation-{conversation}-from-{first}.{extension}"),
        body,
        messages: lines.len(),
        notes: notes.len(),
        next_after,
    }
}

fn origin(o: Origin) -> &'static str {
    match o {
        Origin::Visitor => "visitor",
        Origin::Telegram => "telegram",
        Origin::Admin => "admin",
        Origin::Backend => "backend",
    }
}

fn utc(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms).map_or_else(|| ms.to_string(), |t| t.to_rfc3339())
}

fn json_body(
    conversation: ConversationId,
    lines: &[Line<'_>],
    notes: &[Note],
    next_after: MessageId,
) -> Vec<u8> {
    let messages: Vec<Value> = lines
        .iter()
        .map(|l| {
            let m = l.message;
            json!({
                "id": m.id,
                "date": m.local_date.format("%Y-%m-%d %H:%M:%S").to_string(),
                "from": if m.direction == Direction::ToSupport { "visitor" } else { "support" },
                "origin": origin(m.origin),
                "admin_id": (m.direction == Direction::ToVisitor).then(|| m.admin_id.clone()),
                "author": l.author,
                "text": m.text,
                "files": m.attachments.iter().map(|a| json!({
                    "id": a.id,
                    "name": a.name,
                    "type": a.content_type,
                    "size": a.size,
                    "sha256": a.sha256,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let notes: Vec<Value> = notes
        .iter()
        .map(|n| {
            json!({
                "id": n.id,
                "created_at": utc(n.created_at_ms),
                "admin_id": n.admin_id,
                "text": n.text,
            })
        })
        .collect();
    let mut doc = json!({ "conversation_id": conversation, "messages": messages });
    if !notes.is_empty() {
        doc["notes"] = Value::Array(notes);
    }
    if next_after != 0 {
        doc["continues_after_message_id"] = json!(next_after);
    }
    serde_json::to_vec_pretty(&doc).unwrap_or_default()
}

fn text_body(conversation: ConversationId, lines: &[Line<'_>], notes: &[Note]) -> Vec<u8> {
    let mut out = format!("Conversation {conversation}\n\n");
    for l in lines {
        let m = l.message;
        let who = if m.direction == Direction::ToSupport {
            "Visitor"
        } else {
            l.author.as_str()
        };
        // Files are named as the legacy column names them (the bytes are not in a transcript).
        let text = crate::store::text::with_files(&m.text, &m.attachments);
        out.push_str(&format!(
            "[{}] {who}: {}\n",
            m.local_date.format("%Y-%m-%d %H:%M:%S"),
            text.replace('\n', "\n    ")
        ));
    }
    if !notes.is_empty() {
        out.push_str("\nPrivate notes (support only)\n\n");
        for n in notes {
            out.push_str(&format!(
                "[{}] {}: {}\n",
                utc(n.created_at_ms),
                n.admin_id,
                n.text.replace('\n', "\n    ")
            ));
        }
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::{Format, Line, MAX_BODY, render};
    use crate::domain::{Direction, Note, Origin, StoredMessage};

    fn message(id: u64, from_visitor: bool, text: &str) -> StoredMessage {
        StoredMessage {
            attachments: Vec::new(),
            client_msg_id: None,
            id,
            conversation_id: 7,
            direction: if from_visitor {
                Direction::ToSupport
            } else {
                Direction::ToVisitor
            },
            origin: if from_visitor {
                Origin::Visitor
            } else {
                Origin::Admin
            },
            admin_id: if from_visitor { "0" } else { "alice" }.into(),
            text: text.into(),
            local_date: NaiveDate::from_ymd_opt(2026, 12, 2)
                .unwrap()
                .and_hms_opt(10, 0, id as u32)
                .unwrap(),
        }
    }

    fn lines(messages: &[StoredMessage]) -> Vec<Line<'_>> {
        messages
            .iter()
            .map(|m| Line {
                message: m,
                author: if m.direction == Direction::ToSupport {
                    "Visitor".into()
                } else {
                    "Alice Acme".into()
                },
            })
            .collect()
    }

    fn note() -> Note {
        Note {
            id: 1,
            conversation_id: 7,
            admin_id: "alice".into(),
            text: "VIP".into(),
            created_at_ms: 1_764_669_600_000,
        }
    }

    #[test]
    fn json_and_text_say_who_wrote_what_and_when() {
        let messages = [
            message(1, true, "hi <b>"),
            message(2, false, "hello\nthere"),
        ];
        let json = render(7, Format::Json, &lines(&messages), false, &[note()]);
        assert_eq!(json.content_type, "application/json");
        assert_eq!(json.file_name, "conversation-7-from-1.json");
        assert_eq!((json.messages, json.notes, json.next_after), (2, 1, 0));
        let doc: serde_json::Value = serde_json::from_slice(&json.body).unwrap();
        assert_eq!(doc["messages"][0]["from"], "visitor");
        assert_eq!(doc["messages"][0]["text"], "hi <b>", "text as written");
        assert_eq!(doc["messages"][0]["admin_id"], serde_json::Value::Null);
        assert_eq!(doc["messages"][1]["author"], "Alice Acme");
        assert_eq!(doc["messages"][1]["date"], "2026-12-02 10:00:02");
        assert_eq!(doc["notes"][0]["text"], "VIP");
        assert!(doc.get("continues_after_message_id").is_none());

        let text = render(7, Format::Text, &lines(&messages), false, &[]);
        assert_eq!(
            String::from_utf8(text.body).unwrap(),
            "Conversation 7\n\n[2026-12-02 10:00:01] Visitor: hi <b>\n\
             [2026-12-02 10:00:02] Alice Acme: hello\n    there\n"
        );
        assert_eq!(text.notes, 0, "no notes unless given");
    }

    #[test]
    fn files_are_named_but_never_included() {
        let mut with_file = message(1, true, "");
        with_file.attachments = vec![crate::domain::Attachment {
            id: 5,
            conversation_id: 7,
            message_id: Some(1),
            name: "bill.pdf".into(),
            content_type: "application/pdf".into(),
            size: 3000,
            sha256: "cd".repeat(32),
            width: 0,
            height: 0,
            key: "secret-key".into(),
            thumbnail: None,
            uploaded_by: "0".into(),
            created_at_ms: 0,
        }];
        let messages = [with_file];
        let json = render(7, Format::Json, &lines(&messages), false, &[]);
        let doc: serde_json::Value = serde_json::from_slice(&json.body).unwrap();
        assert_eq!(doc["messages"][0]["files"][0]["name"], "bill.pdf");
        assert_eq!(doc["messages"][0]["files"][0]["size"], 3000);
        assert!(!String::from_utf8_lossy(&json.body).contains("secret-key"));
        let text = render(7, Format::Text, &lines(&messages), false, &[]);
        assert!(
            String::from_utf8(text.body)
                .unwrap()
                .ends_with("Visitor: 📎 bill.pdf (2.9 KB)\n")
        );
    }

    #[test]
    fn a_long_conversation_comes_in_pieces_with_the_notes_last() {
        let big = "x".repeat(MAX_BODY / 3);
        let messages: Vec<StoredMessage> = (1..=4).map(|id| message(id, true, &big)).collect();
        let (mut after, mut pieces, mut taken, mut notes) = (0, 0, 0, 0);
        loop {
            let rest: Vec<StoredMessage> =
                messages.iter().filter(|m| m.id > after).cloned().collect();
            let piece = render(7, Format::Json, &lines(&rest), false, &[note()]);
            assert!(piece.body.len() <= MAX_BODY + 4096, "{}", piece.body.len());
            pieces += 1;
            taken += piece.messages;
            notes += piece.notes;
            if piece.next_after == 0 {
                assert_eq!(piece.notes, 1, "the notes come with the last piece");
                break;
            }
            assert_eq!(piece.notes, 0);
            after = piece.next_after;
        }
        assert!(pieces > 1);
        assert_eq!((taken, notes), (4, 1), "every message once, the notes once");
        // One message bigger than a piece still goes out, alone.
        let huge = [message(9, true, &"y".repeat(MAX_BODY))];
        let alone = render(7, Format::Text, &lines(&huge), false, &[]);
        assert_eq!((alone.messages, alone.next_after), (1, 0));
    }
}
