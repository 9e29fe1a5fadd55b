//! Files over HTTP: uploads with a ticket a socket was given (`upload` / `upload:servadm`), and
//! downloads by signed, expiring links that only a conversation's visitor and support are
//! shown (in message payloads). The bytes stream to and from the core; nothing is kept here.
//!
//! A file is never served as something a browser would run: its type is the one the core
//! sniffed (markup is never accepted), `X-Content-Type-Options: nosniff`, a sandboxing CSP, and
//! `Content-Disposition: attachment` for everything but images.

use std::{sync::Arc, time::Duration};

use axum::{
    Json, Router,
    body::Body,
    extract::{Path, Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use futures::StreamExt as _;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;
use serde_json::json;
use socketgram_admin_php_compat::{
    events::{FilePayload, UploadTicketPayload},
    handshake::{TokenKind, TokenSigner},
};
use socketgram_common::files::{file_line, with_lines};
use socketgram_proto::{reason, v1 as pb};
use tokio_stream::wrappers::ReceiverStream;
use tracing::{info, warn};

use crate::Edge;

/// How long an upload ticket lasts.
const TICKET_TTL_SECS: u64 = 600;
/// The longest an upload may take once its request started.
const UPLOAD_TIME: Duration = Duration::from_secs(15 * 60);
/// Bytes sent to the core per chunk.
const CHUNK: usize = 64 * 1024;

/// Characters kept as they are in a file name in a path (the rest percent-encoded).
const NAME: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_');

/// Who a ticket lets upload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Uploader {
    Visitor,
    Admin(String),
}

/// Signs and checks upload tickets and file links.
pub struct FileLinks {
    signer: TokenSigner,
    /// `[web] public_url` (or the listener's address), without a trailing slash: the start
    /// of the whole links the legacy pages get.
    base: String,
    ttl_secs: u64,
}

impl FileLinks {
    pub fn new(signer: TokenSigner, base: &str, ttl_secs: u64) -> Self {
        Self {
            signer,
            base: base.trim_end_matches('/').to_owned(),
            ttl_secs,
        }
    }

    /// A file as Socketgram's own pages get it: with paths (on this server) to fetch it.
    pub fn payload(&self, a: &pb::Attachment) -> FilePayload {
        FilePayload {
            id: a.id,
            name: a.name.clone(),
            content_type: a.content_type.clone(),
            size: a.size,
            width: a.width,
            height: a.height,
            url: self.path(a, false),
            thumb_url: a.has_thumbnail.then(|| self.path(a, true)),
        }
    }

    /// A message's text as the legacy pages get it: a line with a whole link for each file.
    pub fn legacy_text(&self, m: &pb::Message) -> String {
        if m.attachments.is_empty() {
            return m.text.clone();
        }
        let lines = m.attachments.iter().map(|a| {
            let link = format!("{}{}", self.base, self.path(a, false));
            file_line(&a.name, a.size, Some(&link))
        });
        with_lines(&m.text, lines)
    }

    fn path(&self, a: &pb::Attachment, thumbnail: bool) -> String {
        let variant = if thumbnail { "t" } else { "f" };
        let subject = format!("{}.{}.{variant}", a.id, a.conversation_id);
        let token = self.signer.sign(TokenKind::File, &subject, self.ttl_secs);
        let name = if thumbnail { "thumbnail" } else { &a.name };
        format!(
            "/files/{}/{}?t={token}",
            a.id,
            utf8_percent_encode(name, NAME)
        )
    }

    /// Where `uploader` may send one file's bytes for `conversation`, for a while.
    pub fn ticket(&self, conversation: u64, uploader: &Uploader, name: &str) -> String {
        let who = match uploader {
            Uploader::Visitor => "v".to_owned(),
            Uploader::Admin(login) => format!("a:{login}"),
        };
        let token = self.signer.sign(
            TokenKind::Upload,
            &format!("{conversation}.{who}"),
            TICKET_TTL_SECS,
        );
        format!(
            "/files/upload?t={token}&name={}",
            utf8_percent_encode(name, NAME)
        )
    }

    fn check_ticket(&self, token: &str) -> Result<(u64, Uploader), Failure> {
        let subject = self.signer.verify(TokenKind::Upload, token).map_err(|e| {
            Failure::forbidden(format!(
                "the upload ticket is not valid ({e}); ask for a new one"
            ))
        })?;
        let (conversation, who) = subject
            .split_once('.')
            .ok_or_else(|| Failure::forbidden("the upload ticket is malformed".into()))?;
        let conversation = conversation
            .parse()
            .map_err(|_| Failure::forbidden("the upload ticket is malformed".into()))?;
        let uploader = match who.strip_prefix("a:") {
            Some(login) => Uploader::Admin(login.to_owned()),
            None if who == "v" => Uploader::Visitor,
            None => return Err(Failure::forbidden("the upload ticket is malformed".into())),
        };
        Ok((conversation, uploader))
    }

    /// The file, its conversation and whether the thumbnail is asked for, of a valid link.
    fn check_link(&self, id: u64, token: &str) -> Result<(u64, bool), Failure> {
        let subject = self.signer.verify(TokenKind::File, token).map_err(|e| {
            Failure::forbidden(format!(
                "this link to a file is not valid ({e}); open the conversation again for a new one"
            ))
        })?;
        let mut parts = subject.split('.');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(file), Some(conversation), Some(variant), None)
                if file.parse() == Ok(id) && matches!(variant, "f" | "t") =>
            {
                let conversation = conversation
                    .parse()
                    .map_err(|_| Failure::forbidden("the link is malformed".into()))?;
                Ok((conversation, variant == "t"))
            }
            _ => Err(Failure::forbidden("this link is for another file".into())),
        }
    }

    /// The answer to `upload`: a ticket and the limits.
    pub fn ticket_payload(
        &self,
        info: &pb::CoreInfo,
        conversation: u64,
        uploader: &Uploader,
        name: &str,
        size: u64,
    ) -> Result<UploadTicketPayload, crate::answer::Refusal> {
        if size > info.max_attachment_bytes {
            return Err(crate::answer::Refusal::Invalid(format!(
                "{name} is larger than {} ({} bytes)",
                socketgram_common::files::human_size(info.max_attachment_bytes),
                info.max_attachment_bytes
            )));
        }
        Ok(UploadTicketPayload {
            url: self.ticket(conversation, uploader, name),
            max_bytes: info.max_attachment_bytes,
            max_files: info.max_attachments,
            types: info.attachment_types.clone(),
        })
    }
}

/// Why a file request failed, as the client is told (`{error: {code, message}}`).
#[derive(Debug)]
struct Failure {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl Failure {
    fn forbidden(message: String) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            code: "forbidden",
            message,
        }
    }

    fn truncated(message: String) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: "truncated",
            message,
        }
    }

    /// The one place the core's refusals of files become HTTP statuses.
    fn from_core(status: &tonic::Status) -> Self {
        let (status_code, code) = match (reason::of(status).as_deref(), status.code()) {
            (Some(reason::FILE_TOO_LARGE), _) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            (Some(reason::FILE_TYPE_NOT_ALLOWED), _) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "type_not_allowed")
            }
            (Some(reason::UPLOAD_TRUNCATED), _) => (StatusCode::BAD_REQUEST, "truncated"),
            (_, tonic::Code::InvalidArgument) => (StatusCode::BAD_REQUEST, "invalid"),
            (_, tonic::Code::NotFound) => (StatusCode::NOT_FOUND, "not_found"),
            (_, tonic::Code::ResourceExhausted) => (StatusCode::TOO_MANY_REQUESTS, "limit_reached"),
            (_, tonic::Code::Unavailable | tonic::Code::Cancelled) => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        Self {
            status: status_code,
            code,
            message: status.message().to_owned(),
        }
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code, "message": self.message } });
        (self.status, Json(body)).into_response()
    }
}

/// `/files/upload` and `/files/{id}/{name}`.
pub fn router(edge: &Arc<Edge>) -> Router {
    Router::new()
        .route("/files/upload", post(upload))
        .route("/files/{id}/{name}", get(download))
        .with_state(edge.clone())
}

#[derive(Deserialize)]
struct UploadQuery {
    #[serde(default)]
    t: String,
    #[serde(default)]
    name: String,
}

/// `POST /files/upload?t=<ticket>&name=<name>`, the file's bytes as the body.
async fn upload(
    State(edge): State<Arc<Edge>>,
    Query(q): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (conversation, uploader) = match edge.files.check_ticket(&q.t) {
        Ok(ticket) => ticket,
        Err(failure) => return failure.into_response(),
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let author = match &uploader {
        Uploader::Visitor => pb::Author {
            kind: pb::AuthorKind::Visitor as i32,
            admin_id: String::new(),
        },
        Uploader::Admin(login) => pb::Author {
            kind: pb::AuthorKind::Admin as i32,
            admin_id: login.clone(),
        },
    };
    let start = pb::UploadAttachmentRequest {
        part: Some(pb::upload_attachment_request::Part::Start(
            pb::UploadStart {
                conversation_id: conversation,
                name: q.name,
                size: declared,
                author: Some(author),
            },
        )),
    };
    let (parts, rx) = tokio::sync::mpsc::channel(4);
    let _ = parts.send(start).await;
    let mut client = edge.link.client().chat.clone();
    let call = client.upload_attachment(ReceiverStream::new(rx));
    // The bytes go to the core as they come. A body that breaks off (the client went away, or
    // sent less than its Content-Length) must not end the upload as if it were whole: the
    // call is dropped instead, which cancels it, and the core keeps nothing.
    let pump = async move {
        let mut body = body.into_data_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| e.to_string())?;
            for piece in chunk.chunks(CHUNK) {
                let part = pb::UploadAttachmentRequest {
                    part: Some(pb::upload_attachment_request::Part::Chunk(piece.to_vec())),
                };
                if parts.send(part).await.is_err() {
                    // The core answered already (a refusal): its answer says why.
                    return Ok(());
                }
            }
        }
        Ok::<(), String>(())
    };
    let both = async {
        tokio::pin!(call);
        tokio::select! {
            answered = &mut call => answered.map(|r| r.into_inner()).map_err(|s| Failure::from_core(&s)),
            pumped = pump => match pumped {
                Ok(()) => call.await.map(|r| r.into_inner()).map_err(|s| Failure::from_core(&s)),
                Err(e) => Err(Failure::truncated(format!(
                    "the upload broke off: {e}; nothing was kept"
                ))),
            },
        }
    };
    let answer = tokio::time::timeout(UPLOAD_TIME, both)
        .await
        .unwrap_or_else(|_| {
            Err(Failure::truncated(format!(
                "the upload took longer than {} minutes; nothing was kept",
                UPLOAD_TIME.as_secs() / 60
            )))
        });
    match answer {
        Ok(file) => {
            info!(
                conversation,
                file = file.id,
                size = file.size,
                "file uploaded"
            );
            let data = json!({
                "id": file.id,
                "name": file.name,
                "type": file.content_type,
                "size": file.size,
                "width": file.width,
                "height": file.height,
                "thumb": file.has_thumbnail,
            });
            (StatusCode::CREATED, Json(json!({ "data": data }))).into_response()
        }
        Err(failure) => {
            info!(conversation, code = failure.code, reason = %failure.message, "upload refused");
            failure.into_response()
        }
    }
}

#[derive(Deserialize)]
struct LinkQuery {
    #[serde(default)]
    t: String,
}

/// What a browser may do with a file it fetched: show it only if it is an image (never run
/// it), else save it.
const FILE_CSP: &str = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox";

/// `GET /files/{id}/{name}?t=<link token>`: the file (or its thumbnail), streamed from the core.
async fn download(
    State(edge): State<Arc<Edge>>,
    Path((id, _name)): Path<(u64, String)>,
    Query(q): Query<LinkQuery>,
) -> Response {
    let (conversation, thumbnail) = match edge.files.check_link(id, &q.t) {
        Ok(link) => link,
        Err(failure) => return failure.into_response(),
    };
    let request = pb::GetAttachmentRequest {
        id,
        conversation_id: conversation,
        thumbnail,
    };
    let mut chunks = match edge
        .link
        .client()
        .chat
        .clone()
        .get_attachment(request)
        .await
    {
        Ok(chunks) => chunks.into_inner(),
        Err(status) => return Failure::from_core(&status).into_response(),
    };
    let first = match chunks.message().await {
        Ok(Some(first)) => first,
        Ok(None) => {
            return Failure::from_core(&tonic::Status::not_found("no such file")).into_response();
        }
        Err(status) => return Failure::from_core(&status).into_response(),
    };
    let Some(file) = first.attachment.clone() else {
        warn!(id, "the core sent a file without its description");
        return Failure::from_core(&tonic::Status::internal("the file has no description"))
            .into_response();
    };
    let rest = chunks.map(|chunk| {
        chunk
            .map(|c| bytes::Bytes::from(c.data))
            .map_err(|status| std::io::Error::other(status.message().to_owned()))
    });
    let body = futures::stream::once(async move { Ok(bytes::Bytes::from(first.data)) }).chain(rest);
    let mut response = Response::new(Body::from_stream(body));
    let headers = response.headers_mut();
    let image = file.content_type.starts_with("image/");
    let content_type = if file.content_type.starts_with("text/") {
        format!("{}; charset=utf-8", file.content_type)
    } else {
        file.content_type.clone()
    };
    let set = |headers: &mut HeaderMap, name, value: &str| {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    };
    set(headers, header::CONTENT_TYPE, &content_type);
    set(headers, header::CONTENT_LENGTH, &file.size.to_string());
    set(
        headers,
        header::CONTENT_DISPOSITION,
        &disposition(if image { "inline" } else { "attachment" }, &file.name),
    );
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(headers, header::CONTENT_SECURITY_POLICY, FILE_CSP);
    set(headers, header::REFERRER_POLICY, "no-referrer");
    set(headers, header::CACHE_CONTROL, "private, max-age=3600");
    response
}

/// `Content-Disposition` with the name for every browser: an ASCII fallback and the UTF-8
/// name (RFC 6266).
fn disposition(kind: &str, name: &str) -> String {
    let fallback: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "{kind}; filename=\"{fallback}\"; filename*=UTF-8''{}",
        utf8_percent_encode(name, NAME)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn links() -> FileLinks {
        FileLinks::new(TokenSigner::new(b"k"), "https://chat.example.com/", 600)
    }

    fn file() -> pb::Attachment {
        pb::Attachment {
            id: 7,
            conversation_id: 42,
            name: "my photo.png".into(),
            content_type: "image/png".into(),
            size: 2048,
            has_thumbnail: true,
            width: 10,
            height: 10,
            sha256: String::new(),
        }
    }

    fn token(path: &str) -> &str {
        path.split("t=").nth(1).unwrap().split('&').next().unwrap()
    }

    #[test]
    fn a_link_opens_its_file_only() {
        let links = links();
        let payload = links.payload(&file());
        assert!(
            payload.url.starts_with("/files/7/my%20photo.png?t="),
            "{}",
            payload.url
        );
        assert_eq!(
            links.check_link(7, token(&payload.url)).unwrap(),
            (42, false)
        );
        let thumb = payload.thumb_url.unwrap();
        assert_eq!(links.check_link(7, token(&thumb)).unwrap(), (42, true));
        assert!(
            links.check_link(8, token(&payload.url)).is_err(),
            "another file"
        );
        let other_key = FileLinks::new(TokenSigner::new(b"other"), "", 600);
        assert!(other_key.check_link(7, token(&payload.url)).is_err());
        let ticket = links.ticket(42, &Uploader::Visitor, "a.png");
        assert!(
            links.check_link(7, token(&ticket)).is_err(),
            "a ticket is no link"
        );
    }

    #[test]
    fn a_ticket_names_its_conversation_and_uploader() {
        let links = links();
        for who in [Uploader::Visitor, Uploader::Admin("a.b:c".into())] {
            let url = links.ticket(42, &who, "x y.pdf");
            assert!(url.ends_with("&name=x%20y.pdf"), "{url}");
            assert_eq!(links.check_ticket(token(&url)).unwrap(), (42, who));
        }
        let link = links.payload(&file()).url;
        assert!(
            links.check_ticket(token(&link)).is_err(),
            "a link is no ticket"
        );
    }

    #[test]
    fn the_legacy_text_has_whole_links() {
        let mut m = pb::Message {
            text: "see".into(),
            attachments: vec![file()],
            ..Default::default()
        };
        let text = links().legacy_text(&m);
        assert!(
            text.starts_with("see\n📎 my photo.png (2.0 KB): https://chat.example.com/files/7/"),
            "{text}"
        );
        m.attachments.clear();
        assert_eq!(links().legacy_text(&m), "see");
    }

    #[test]
    fn names_are_quoted_for_every_browser() {
        assert_eq!(
            disposition("attachment", "отчёт \"1\".pdf"),
            "attachment; filename=\"_____ _1_.pdf\"; filename*=UTF-8''%D0%BE%D1%82%D1%87%D1%91%D1%82%20%221%22.pdf"
        );
    }
}
