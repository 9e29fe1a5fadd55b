//! `UploadAttachment` and `GetAttachment`: a file's bytes as a stream of chunks each way.

use bytes::Bytes;
use futures::{Stream, StreamExt as _};
use socketgram_proto::v1 as pb;
use tokio_util::io::ReaderStream;
use tonic::{Status, Streaming};

use super::{convert, status};
use crate::{Core, CoreError, chat::Upload};

/// The bytes of a chunk sent out.
const CHUNK: usize = 64 * 1024;

/// An upload's `UploadStart` and the stream of its bytes after it.
pub(super) async fn upload_parts(
    mut parts: Streaming<pb::UploadAttachmentRequest>,
) -> Result<(Upload, impl Stream<Item = Result<Bytes, String>> + Send), Status> {
    use pb::upload_attachment_request::Part;
    let start = match parts.message().await? {
        Some(pb::UploadAttachmentRequest {
            part: Some(Part::Start(start)),
        }) => start,
        _ => {
            return Err(status(CoreError::InvalidArgument(
                "an upload starts with its UploadStart".into(),
            )));
        }
    };
    let upload = Upload {
        conversation_id: start.conversation_id,
        name: start.name,
        size: start.size,
        author: convert::author(start.author).map_err(status)?,
    };
    let bytes = parts.map(|part| match part {
        Ok(pb::UploadAttachmentRequest {
            part: Some(Part::Chunk(chunk)),
        }) => Ok(Bytes::from(chunk)),
        Ok(_) => Err("a second UploadStart came among the bytes".to_owned()),
        Err(status) => Err(status.message().to_owned()),
    });
    Ok((upload, bytes))
}

/// A file's description, then its bytes.
pub(super) async fn download(
    core: &Core,
    r: pb::GetAttachmentRequest,
) -> Result<impl Stream<Item = Result<pb::AttachmentChunk, Status>> + Send + 'static, Status> {
    let conversation = (r.conversation_id != 0).then_some(r.conversation_id);
    let (file, bytes) = core
        .attachment(r.id, conversation, r.thumbnail)
        .await
        .map_err(status)?;
    let mut head = convert::attachment(&file);
    if r.thumbnail
        && let Some(thumbnail) = &file.thumbnail
    {
        head.content_type = thumbnail.content_type.clone();
        head.size = thumbnail.size;
    }
    let mut head = Some(head);
    Ok(
        ReaderStream::with_capacity(bytes, CHUNK).map(move |read| match read {
            Ok(data) => Ok(pb::AttachmentChunk {
                attachment: head.take(),
                data: data.to_vec(),
            }),
            Err(e) => Err(status(CoreError::FileStorage(e.to_string()))),
        }),
    )
}
