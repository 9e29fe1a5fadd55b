//! Domain values to `socketgram.v1` messages and back.

use socketgram_proto::v1 as pb;

use crate::{
    Core,
    chat::{Author, SendMessage},
    domain::{
        Admin, Appended, Attachment, CannedReply, ConversationSummary, Direction, Erasure, Lease,
        Note, Origin, Page, Reader, Scope, Status, StatusChange, StatusKind, StoredMessage,
        TelegramLink, TelegramMode, VisitorContext, Vouched,
    },
    error::{CoreError, CoreResult},
    hub::Event,
    transcript,
    typing::{Typing, Typist},
};

/// The legacy clients' date format (LEGACY.md §4).
const LOCAL_DATE: &str = "%Y-%m-%d %H:%M:%S";

pub(crate) fn message(core: &Core, m: &StoredMessage) -> pb::Message {
    let utc = m
        .local_date
        .and_local_timezone(core.offset())
        .single()
        .map(|t| t.to_utc());
    pb::Message {
        id: m.id,
        conversation_id: m.conversation_id,
        direction: match m.direction {
            Direction::ToSupport => pb::Direction::ToSupport,
            Direction::ToVisitor => pb::Direction::ToVisitor,
        } as i32,
        origin: author_kind(m.origin) as i32,
        admin_id: m.admin_id.clone(),
        admin_display_name: core.admins().display_name(&m.admin_id),
        text: m.text.clone(),
        created_at: utc.map(|t| prost_types::Timestamp {
            seconds: t.timestamp(),
            nanos: 0,
        }),
        local_date: m.local_date.format(LOCAL_DATE).to_string(),
        attachments: m.attachments.iter().map(attachment).collect(),
        client_msg_id: m.client_msg_id.clone().unwrap_or_default(),
    }
}

/// A file as the contract describes it (never its storage keys).
pub(crate) fn attachment(a: &Attachment) -> pb::Attachment {
    pb::Attachment {
        id: a.id,
        conversation_id: a.conversation_id,
        name: a.name.clone(),
        content_type: a.content_type.clone(),
        size: a.size,
        has_thumbnail: a.thumbnail.is_some(),
        width: a.width,
        height: a.height,
        sha256: a.sha256.clone(),
    }
}

fn author_kind(origin: Origin) -> pb::AuthorKind {
    match origin {
        Origin::Visitor => pb::AuthorKind::Visitor,
        Origin::Admin => pb::AuthorKind::Admin,
        Origin::Telegram => pb::AuthorKind::Telegram,
        Origin::Backend => pb::AuthorKind::Backend,
    }
}

/// A `SendMessageRequest` as the core's [`SendMessage`].
pub(crate) fn send(r: pb::SendMessageRequest) -> CoreResult<SendMessage> {
    Ok(SendMessage {
        conversation_id: r.conversation_id,
        author: author(r.author)?,
        text: r.text,
        client_msg_id: Some(r.client_msg_id),
        attachments: r.attachment_ids,
    })
}

/// What `SendMessage` answers for a stored message.
pub(crate) fn sent(core: &Core, appended: &Appended) -> pb::SendMessageResponse {
    pb::SendMessageResponse {
        message: Some(message(core, &appended.message)),
        duplicate: appended.duplicate,
    }
}

pub(crate) fn author(author: Option<pb::Author>) -> CoreResult<Author> {
    let author = author.ok_or_else(|| CoreError::InvalidArgument("author is required".into()))?;
    match pb::AuthorKind::try_from(author.kind).unwrap_or(pb::AuthorKind::Unspecified) {
        pb::AuthorKind::Visitor => Ok(Author::Visitor),
        pb::AuthorKind::Telegram => Ok(Author::Telegram),
        pb::AuthorKind::Admin => Ok(Author::Admin(author.admin_id)),
        pb::AuthorKind::Backend => Ok(Author::Backend(author.admin_id)),
        pb::AuthorKind::Unspecified => {
            Err(CoreError::InvalidArgument("author.kind must be set".into()))
        }
    }
}

pub(crate) fn scope(scope: Option<pb::subscribe_request::Scope>) -> CoreResult<Scope> {
    match scope {
        Some(pb::subscribe_request::Scope::ConversationId(c)) => Ok(Scope::Conversation(c)),
        Some(pb::subscribe_request::Scope::AllConversations(true)) => Ok(Scope::All),
        _ => Err(CoreError::InvalidArgument(
            "scope must be a conversation_id or all_conversations = true".into(),
        )),
    }
}

pub(crate) fn event(core: &Core, event: &Event) -> pb::Event {
    use pb::event::Kind;
    let kind = match event {
        Event::Message(m) => Kind::Message(message(core, m)),
        Event::Presence {
            conversation,
            online,
        } => Kind::Presence(pb::Presence {
            conversation_id: *conversation,
            online: *online,
        }),
        Event::PresenceSnapshot(online) => Kind::PresenceSnapshot(pb::PresenceSnapshot {
            online: online.clone(),
        }),
        Event::AdminsChanged(admins) => Kind::AdminsChanged(pb::AdminsChanged {
            admins: admins.iter().map(|a| admin(core, a)).collect(),
        }),
        Event::CaughtUp(last) => Kind::CaughtUp(pb::CaughtUp {
            last_message_id: *last,
        }),
        Event::ReadMark {
            conversation,
            reader,
            up_to,
        } => Kind::ReadMark(pb::ReadMark {
            conversation_id: *conversation,
            reader: match reader {
                Reader::Support => pb::Reader::Support,
                Reader::Visitor => pb::Reader::Visitor,
            } as i32,
            up_to_message_id: *up_to,
        }),
        Event::Note(n) => Kind::Note(note(n)),
        Event::Erased(e) => Kind::Erased(erasure(e)),
        Event::Context(c) => Kind::VisitorContext(pb::VisitorContextChanged {
            conversation_id: c.conversation_id,
            context: Some(visitor_context(&c.context)),
        }),
        Event::Typing(t) => {
            let admin_id = match &t.typist {
                Typist::Visitor => String::new(),
                Typist::Admin(admin) => admin.clone(),
            };
            Kind::Typing(pb::Typing {
                conversation_id: t.conversation,
                admin_display_name: if admin_id.is_empty() {
                    String::new()
                } else {
                    core.admins().display_name(&admin_id)
                },
                admin_id,
                active: t.active,
                draft_chars: t.draft_chars,
                preview: t.preview.clone(),
                shown_for_ms: crate::typing::SHOWN_FOR.as_millis() as u32,
            })
        }
        Event::Status {
            conversation,
            status,
            change,
        } => {
            let (cause, by) = match change {
                StatusChange::By(admin) => (pb::StatusCause::Support, admin.clone()),
                StatusChange::VisitorWrote => (pb::StatusCause::VisitorMessage, String::new()),
                StatusChange::SnoozeEnded => (pb::StatusCause::SnoozeEnded, String::new()),
            };
            Kind::StatusChanged(pb::StatusChanged {
                conversation_id: *conversation,
                status: status_kind(status.kind()).into(),
                snoozed_until_ms: snoozed_until(*status),
                cause: cause.into(),
                by,
            })
        }
        Event::Assigned {
            conversation,
            assignee,
            by,
        } => Kind::Assigned(pb::ConversationAssigned {
            conversation_id: *conversation,
            assignee: assignee.clone().unwrap_or_default(),
            by: by.clone(),
        }),
    };
    pb::Event { kind: Some(kind) }
}

pub(crate) fn admin(core: &Core, a: &Admin) -> pb::Admin {
    pb::Admin {
        admin_id: a.admin_id.clone(),
        name: a.name.clone(),
        display_name: core.admins().display_name_of(a),
        rights: a.rights,
    }
}

pub(crate) fn conversation(core: &Core, c: &ConversationSummary) -> pb::Conversation {
    pb::Conversation {
        conversation_id: c.conversation_id,
        last_message: c.last_message.as_ref().map(|m| message(core, m)),
        unread_by_support: c.unread_by_support,
        unread_by_visitor: c.unread_by_visitor,
        online: core.is_online(c.conversation_id),
        support_read_up_to: c.support_read_id,
        visitor_read_up_to: c.visitor_read_id,
        assignee: c.assignee.clone().unwrap_or_default(),
        status: status_kind(c.status.kind()).into(),
        snoozed_until_ms: snoozed_until(c.status),
        context: c.context.as_ref().map(visitor_context),
        telegram_linked: c.telegram_linked,
    }
}

/// A visitor's context as the contract says it.
pub(crate) fn visitor_context(c: &VisitorContext) -> pb::VisitorContext {
    pb::VisitorContext {
        verified: c.verified.as_ref().map(Into::into),
        page: c.page.as_ref().map(Into::into),
        updated_at_ms: c.updated_at_ms,
    }
}

/// The parts a `SetVisitorContext` sets.
pub(crate) fn context_parts(r: &pb::SetVisitorContextRequest) -> (Option<Vouched>, Option<Page>) {
    (
        r.verified.as_ref().map(Into::into),
        r.page.as_ref().map(Into::into),
    )
}

fn status_kind(kind: StatusKind) -> pb::ConversationStatus {
    match kind {
        StatusKind::Open => pb::ConversationStatus::Open,
        StatusKind::Pending => pb::ConversationStatus::Pending,
        StatusKind::Resolved => pb::ConversationStatus::Resolved,
        StatusKind::Snoozed => pb::ConversationStatus::Snoozed,
    }
}

fn snoozed_until(status: Status) -> i64 {
    match status {
        Status::Snoozed { until_ms } => until_ms,
        _ => 0,
    }
}

pub(crate) fn erasure(e: &Erasure) -> pb::Erasure {
    pb::Erasure {
        conversation_id: e.conversation_id,
        erased_by: e.erased_by.clone(),
        erased_at_ms: e.erased_at_ms,
        messages: e.messages,
        notes: e.notes,
    }
}

/// A typing request as the core takes it.
pub(crate) fn typing(request: pb::SetTypingRequest) -> CoreResult<Typing> {
    let typist = match author(request.author)? {
        Author::Visitor | Author::Telegram => Typist::Visitor,
        Author::Admin(admin) | Author::Backend(admin) => Typist::Admin(admin),
    };
    Ok(Typing {
        conversation: request.conversation_id,
        typist,
        active: request.active,
        draft_chars: request.draft_chars,
        preview: Some(request.draft).filter(|d| !d.is_empty()),
    })
}

/// A status kind of a request; UNSPECIFIED (or unknown) is `None`.
pub(crate) fn requested_kind(code: i32) -> Option<StatusKind> {
    match pb::ConversationStatus::try_from(code).unwrap_or_default() {
        pb::ConversationStatus::Unspecified => None,
        pb::ConversationStatus::Open => Some(StatusKind::Open),
        pb::ConversationStatus::Pending => Some(StatusKind::Pending),
        pb::ConversationStatus::Resolved => Some(StatusKind::Resolved),
        pb::ConversationStatus::Snoozed => Some(StatusKind::Snoozed),
    }
}

/// The status `SetConversationStatus` asks for.
pub(crate) fn requested_status(code: i32, snoozed_until_ms: i64) -> CoreResult<Status> {
    let kind = requested_kind(code)
        .ok_or_else(|| CoreError::InvalidArgument("status must be set".into()))?;
    if kind != StatusKind::Snoozed && snoozed_until_ms != 0 {
        return Err(CoreError::InvalidArgument(
            "snoozed_until_ms is only for a snooze".into(),
        ));
    }
    Ok(match kind {
        StatusKind::Open => Status::Open,
        StatusKind::Pending => Status::Pending,
        StatusKind::Resolved => Status::Resolved,
        StatusKind::Snoozed => Status::Snoozed {
            until_ms: snoozed_until_ms,
        },
    })
}

pub(crate) fn reader(reader: i32) -> CoreResult<Reader> {
    match pb::Reader::try_from(reader).unwrap_or(pb::Reader::Unspecified) {
        pb::Reader::Support => Ok(Reader::Support),
        pb::Reader::Visitor => Ok(Reader::Visitor),
        pb::Reader::Unspecified => Err(CoreError::InvalidArgument("reader must be set".into())),
    }
}

pub(crate) fn telegram_link(link: &TelegramLink) -> pb::TelegramLink {
    pb::TelegramLink {
        chat_id: link.chat_id,
        conversation_id: link.conversation_id,
        mode: match link.mode {
            TelegramMode::Menu => pb::TelegramMode::Menu,
            TelegramMode::Writing => pb::TelegramMode::Writing,
        } as i32,
        active: link.active,
    }
}

pub(crate) fn telegram_mode(mode: i32) -> CoreResult<Option<TelegramMode>> {
    match pb::TelegramMode::try_from(mode) {
        Ok(pb::TelegramMode::Unspecified) => Ok(None),
        Ok(pb::TelegramMode::Menu) => Ok(Some(TelegramMode::Menu)),
        Ok(pb::TelegramMode::Writing) => Ok(Some(TelegramMode::Writing)),
        Err(_) => Err(CoreError::InvalidArgument(format!(
            "unknown Telegram mode {mode}"
        ))),
    }
}

/// A page size: 0 means the default.
pub(crate) fn limit(requested: u32, default: u32) -> u32 {
    if requested == 0 { default } else { requested }
}

/// A cursor id: 0 means none.
pub(crate) fn cursor(id: u64) -> Option<u64> {
    (id != 0).then_some(id)
}

pub(crate) fn credentials_verdict(
    verdict: crate::credentials::Verdict,
) -> pb::CheckCredentialsResponse {
    use crate::credentials::{Refusal, Verdict};
    match verdict {
        Verdict::Accepted(conversation_id) => pb::CheckCredentialsResponse {
            conversation_id,
            refusal: pb::CredentialsRefusal::Unspecified as i32,
        },
        Verdict::Refused(why) => pb::CheckCredentialsResponse {
            conversation_id: 0,
            refusal: match why {
                Refusal::MalformedLogin => pb::CredentialsRefusal::MalformedLogin,
                Refusal::UnknownLogin => pb::CredentialsRefusal::UnknownLogin,
                Refusal::WrongPassword => pb::CredentialsRefusal::WrongPassword,
                Refusal::WrongCredentials => pb::CredentialsRefusal::WrongCredentials,
            } as i32,
        },
    }
}

/// A lease as the contract says it.
pub(crate) fn lease(l: &Lease) -> pb::Lease {
    pb::Lease {
        name: l.name.clone(),
        granted: l.granted,
        holder: l.holder.clone().unwrap_or_default(),
        expires_at: l.expires_at_ms.map(|ms| prost_types::Timestamp {
            seconds: ms.div_euclid(1000),
            nanos: i32::try_from(ms.rem_euclid(1000) * 1_000_000).unwrap_or(0),
        }),
        remaining_ms: u64::try_from(l.remaining.as_millis()).unwrap_or(u64::MAX),
    }
}

/// A canned reply as the contract says it.
pub(crate) fn canned_reply(r: CannedReply) -> pb::CannedReply {
    pb::CannedReply {
        shortcut: r.shortcut,
        text: r.text,
        updated_by: r.updated_by,
        updated_at_ms: r.updated_at_ms,
    }
}

/// A note as the contract says it.
pub(crate) fn note(n: &Note) -> pb::Note {
    pb::Note {
        id: n.id,
        conversation_id: n.conversation_id,
        admin_id: n.admin_id.clone(),
        text: n.text.clone(),
        created_at_ms: n.created_at_ms,
    }
}

pub(crate) fn transcript_format(format: i32) -> CoreResult<transcript::Format> {
    match pb::TranscriptFormat::try_from(format) {
        Ok(pb::TranscriptFormat::Unspecified | pb::TranscriptFormat::Json) => {
            Ok(transcript::Format::Json)
        }
        Ok(pb::TranscriptFormat::Text) => Ok(transcript::Format::Text),
        Err(_) => Err(CoreError::InvalidArgument(format!(
            "format {format} is not a transcript format"
        ))),
    }
}
