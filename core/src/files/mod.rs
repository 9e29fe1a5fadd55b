//! Attachments: files uploaded for a conversation and attached to its messages. This module
//! owns their bytes (in a [`FileStorage`], a directory by default), what they are (the type
//! sniffed from the content, images' sizes and thumbnails), the limits of `[core.attachments]`,
//! and the sweep that deletes what no message took. Their rows are in the store
//! (`sg_attachments`).
//!
//! An upload is written to the staging directory while it arrives, counted against the size
//! limit as it comes, and only then given a key, a thumbnail and a row: an upload that fails
//! (too large, a refused type, cut off) leaves nothing behind.

pub mod sniff;
pub mod storage;
pub mod thumbnail;

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use futures::{Stream, StreamExt as _};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt as _;
use tracing::{info, warn};

pub use storage::{DirStorage, FileStorage, Reader};

use crate::{
    domain::{Attachment, ConversationId, Thumbnail},
    error::{CoreError, CoreResult},
    store::Store,
};
use socketgram_common::ConfigError;

/// `[core.attachments]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AttachmentsConfig {
    /// The directory files are kept in. Empty: beside a SQLite database file
    /// (`socketgram.db` -> `socketgram.files/`), else `socketgram-files` in the working
    /// directory. Core replicas must share it.
    pub dir: String,
    /// The largest file taken, in bytes.
    pub max_bytes: u64,
    /// The most files one message may carry.
    pub max_per_message: u32,
    /// The content types taken, as sniffed from the content (the name never counts).
    pub types: Vec<String>,
    /// An upload no message took within this many seconds is deleted.
    pub unattached_secs: u64,
    /// Bytes with no row (a process killed between the two) are deleted once this old, in
    /// seconds; uploads in progress are younger.
    pub orphan_grace_secs: u64,
}

impl Default for AttachmentsConfig {
    fn default() -> Self {
        Self {
            dir: String::new(),
            max_bytes: 10 * 1024 * 1024,
            max_per_message: 5,
            types: [
                "image/png",
                "image/jpeg",
                "image/gif",
                "image/webp",
                "application/pdf",
                "text/plain",
                "application/zip",
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                "video/mp4",
            ]
            .map(String::from)
            .to_vec(),
            unattached_secs: 24 * 3600,
            orphan_grace_secs: 3600,
        }
    }
}

/// How many messages' worth of files a conversation may have waiting for a message.
const UNATTACHED_PER_MESSAGE: u64 = 4;

/// The largest file that may be allowed: 2 GiB.
const MAX_BYTES: u64 = 2 * 1024 * 1024 * 1024;
/// The most files a message may be allowed.
const MAX_PER_MESSAGE: u32 = 20;

impl AttachmentsConfig {
    /// Checks every value; the error names the key (relative to `[core.attachments]`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=MAX_BYTES).contains(&self.max_bytes) {
            return Err(ConfigError::new(
                "max_bytes",
                format!("must be between 1 and {MAX_BYTES} (2 GiB)"),
            ));
        }
        if !(1..=MAX_PER_MESSAGE).contains(&self.max_per_message) {
            return Err(ConfigError::new(
                "max_per_message",
                format!("must be between 1 and {MAX_PER_MESSAGE}"),
            ));
        }
        if self.types.is_empty() {
            return Err(ConfigError::new("types", "must name at least one type"));
        }
        const RUNNABLE: [&str; 5] = [
            sniff::MARKUP,
            "image/svg+xml",
            "text/xml",
            "application/xml",
            "application/xhtml+xml",
        ];
        if let Some(markup) = self.types.iter().find(|t| RUNNABLE.contains(&t.as_str())) {
            return Err(ConfigError::new(
                "types",
                format!("{markup:?} cannot be allowed: a browser would run its markup"),
            ));
        }
        Ok(())
    }

    /// The directory files are kept in, for a database URL (see [`AttachmentsConfig::dir`]).
    pub fn dir_for(&self, database_url: &str) -> PathBuf {
        if !self.dir.is_empty() {
            return PathBuf::from(&self.dir);
        }
        let file = database_url
            .strip_prefix("sqlite://")
            .or_else(|| database_url.strip_prefix("sqlite:"))
            .map(|rest| rest.split('?').next().unwrap_or_default())
            .filter(|path| !path.is_empty() && !path.contains(":memory:"));
        match file {
            Some(path) => Path::new(path).with_extension("files"),
            None => PathBuf::from("socketgram-files"),
        }
    }
}

/// What an upload says of itself before its bytes.
#[derive(Clone, Debug)]
pub struct UploadStart {
    pub conversation_id: ConversationId,
    /// As the uploader named it (only shown).
    pub name: String,
    /// Bytes announced; 0 = not known.
    pub size: u64,
    /// `VISITOR_ADMIN_ID` for the visitor, else the admin's login (checked by the caller).
    pub uploaded_by: String,
}

/// What a sweep deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Uploads no message took in time (rows and bytes).
    pub unattached: usize,
    /// Stored bytes no row names.
    pub orphans: usize,
    /// Uploads that never finished (a process stopped in the middle).
    pub staged: usize,
}

/// Attachments' bytes and limits.
pub struct Files {
    storage: Arc<dyn FileStorage>,
    config: AttachmentsConfig,
}

/// An upload's bytes, written in staging: deleted when dropped unless kept.
struct Staged {
    path: tempfile::TempPath,
    size: u64,
    sha256: String,
    content_type: String,
}

impl Files {
    pub fn new(storage: Arc<dyn FileStorage>, config: AttachmentsConfig) -> Self {
        Self { storage, config }
    }

    pub fn config(&self) -> &AttachmentsConfig {
        &self.config
    }

    /// Receives an upload's bytes and stores them with a row, waiting for a message.
    pub async fn upload<S, E>(
        &self,
        store: &dyn Store,
        start: UploadStart,
        chunks: S,
    ) -> CoreResult<Attachment>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        if start.size > self.config.max_bytes {
            return Err(self.too_large());
        }
        // Uploads are free until a message takes them: a bound per conversation keeps one
        // visitor from filling the disk with files never sent.
        let waiting = store.unattached_count(start.conversation_id).await?;
        let limit = u64::from(self.config.max_per_message) * UNATTACHED_PER_MESSAGE;
        if waiting >= limit {
            return Err(CoreError::LimitReached(format!(
                "{waiting} files of this conversation wait for a message; send them (or wait a \
                 day for them to go) before uploading more"
            )));
        }
        let staged = self.receive(start.size, chunks).await?;
        if !self.config.types.contains(&staged.content_type) {
            return Err(CoreError::FileTypeNotAllowed {
                content_type: staged.content_type,
            });
        }
        let key = hex::encode(rand::random::<[u8; 16]>());
        let image = if thumbnail::IMAGE_TYPES.contains(&staged.content_type.as_str()) {
            let path = staged.path.to_path_buf();
            tokio::task::spawn_blocking(move || thumbnail::make(&path))
                .await
                .map_err(|e| CoreError::Internal(format!("thumbnail: {e}")))?
                .inspect_err(|e| warn!(error = %e, "an image could not be decoded; kept without a thumbnail"))
                .ok()
        } else {
            None
        };
        let mut thumbnail = None;
        if let Some(image) = &image {
            let thumb_key = format!("{key}.thumb");
            let staged_thumb = self.staging_file().await?;
            tokio::fs::write(&staged_thumb, &image.bytes)
                .await
                .map_err(storage_error)?;
            self.storage
                .put(&thumb_key, &staged_thumb)
                .await
                .map_err(storage_error)?;
            thumbnail = Some(Thumbnail {
                key: thumb_key,
                content_type: image.content_type.to_owned(),
                size: image.bytes.len() as u64,
            });
        }
        let kept = self.storage.put(&key, &staged.path).await;
        if let Err(e) = kept {
            self.delete_bytes(&key, thumbnail.as_ref()).await;
            return Err(storage_error(e));
        }
        let attachment = Attachment {
            id: 0,
            conversation_id: start.conversation_id,
            message_id: None,
            name: sniff::safe_name(&start.name),
            content_type: staged.content_type,
            size: staged.size,
            sha256: staged.sha256,
            width: image.as_ref().map_or(0, |i| i.width),
            height: image.as_ref().map_or(0, |i| i.height),
            key,
            thumbnail,
            uploaded_by: start.uploaded_by,
            created_at_ms: chrono::Utc::now().timestamp_millis(),
        };
        match store.add_attachment(&attachment).await {
            Ok(stored) => {
                metrics::counter!("socketgram_attachments_stored_total").increment(1);
                metrics::counter!("socketgram_attachment_bytes_stored_total")
                    .increment(stored.size);
                Ok(stored)
            }
            Err(e) => {
                self.delete_bytes(&attachment.key, attachment.thumbnail.as_ref())
                    .await;
                Err(e.into())
            }
        }
    }

    fn too_large(&self) -> CoreError {
        CoreError::FileTooLarge {
            limit: self.config.max_bytes,
        }
    }

    /// A new file in staging, deleted when dropped.
    async fn staging_file(&self) -> CoreResult<tempfile::TempPath> {
        let dir = self.storage.staging().to_owned();
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(storage_error)?;
        tokio::task::spawn_blocking(move || {
            tempfile::Builder::new()
                .prefix("upload-")
                .tempfile_in(dir)
                .map(tempfile::NamedTempFile::into_temp_path)
        })
        .await
        .map_err(|e| CoreError::Internal(format!("staging: {e}")))?
        .map_err(storage_error)
    }

    /// Writes the bytes into staging, within the limit, hashing them and keeping their head
    /// for the type.
    async fn receive<S, E>(&self, declared: u64, chunks: S) -> CoreResult<Staged>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        let path = self.staging_file().await?;
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .await
            .map_err(storage_error)?;
        let mut hash = Sha256::new();
        let mut head = Vec::with_capacity(sniff::HEAD);
        let mut size = 0u64;
        let mut chunks = std::pin::pin!(chunks);
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|e| {
                CoreError::UploadTruncated(format!(
                    "the upload broke off after {size} bytes: {e}; nothing was kept"
                ))
            })?;
            size += chunk.len() as u64;
            if size > self.config.max_bytes {
                return Err(self.too_large());
            }
            if declared > 0 && size > declared {
                return Err(CoreError::InvalidArgument(format!(
                    "the upload announced {declared} bytes and sent more; nothing was kept"
                )));
            }
            if head.len() < sniff::HEAD {
                let take = (sniff::HEAD - head.len()).min(chunk.len());
                head.extend_from_slice(&chunk[..take]);
            }
            hash.update(&chunk);
            file.write_all(&chunk).await.map_err(storage_error)?;
        }
        if declared > 0 && size < declared {
            return Err(CoreError::UploadTruncated(format!(
                "the upload announced {declared} bytes and ended after {size}; nothing was kept"
            )));
        }
        if size == 0 {
            return Err(CoreError::InvalidArgument(
                "the file is empty; nothing was kept".into(),
            ));
        }
        file.flush().await.map_err(storage_error)?;
        drop(file);
        Ok(Staged {
            path,
            size,
            content_type: sniff::content_type(&head, size as usize <= head.len()),
            sha256: hex::encode(hash.finalize()),
        })
    }

    /// Opens an attachment's bytes, or its thumbnail's.
    pub async fn open(&self, attachment: &Attachment, thumbnail: bool) -> CoreResult<Reader> {
        let key = if thumbnail {
            match &attachment.thumbnail {
                Some(t) => &t.key,
                None => return Err(CoreError::UnknownAttachment(attachment.id)),
            }
        } else {
            &attachment.key
        };
        self.storage.open(key).await.map_err(storage_error)
    }

    /// Deletes the bytes of files whose rows are gone (an erasure). A failure is logged: the
    /// sweep finds what is left.
    pub async fn forget(&self, attachments: &[Attachment]) {
        for a in attachments {
            self.delete_bytes(&a.key, a.thumbnail.as_ref()).await;
        }
    }

    async fn delete_bytes(&self, key: &str, thumbnail: Option<&Thumbnail>) {
        for key in std::iter::once(key).chain(thumbnail.map(|t| t.key.as_str())) {
            if let Err(e) = self.storage.delete(key).await {
                warn!(key, error = %e, "a file could not be deleted; the sweep will retry");
            }
        }
    }

    /// Deletes uploads no message took in time, bytes no row names, and uploads that never
    /// finished (see [`AttachmentsConfig`]).
    pub async fn sweep(&self, store: &dyn Store) -> CoreResult<Swept> {
        let mut swept = Swept::default();
        let now = chrono::Utc::now().timestamp_millis();
        let before = now.saturating_sub(secs_ms(self.config.unattached_secs));
        loop {
            let old = store.unattached(before).await?;
            if old.is_empty() {
                break;
            }
            let ids: Vec<_> = old.iter().map(|a| a.id).collect();
            let deleted: HashSet<_> = store.delete_unattached(&ids).await?.into_iter().collect();
            let gone: Vec<_> = old
                .into_iter()
                .filter(|a| deleted.contains(&a.id))
                .collect();
            self.forget(&gone).await;
            swept.unattached += gone.len();
            if deleted.len() < ids.len() || ids.len() < 1000 {
                break;
            }
        }
        let grace = Duration::from_secs(self.config.orphan_grace_secs);
        let old_enough = |modified: SystemTime| {
            SystemTime::now()
                .duration_since(modified)
                .is_ok_and(|age| age >= grace)
        };
        let named = store.attachment_keys().await?;
        for (key, modified) in self.storage.list().await.map_err(storage_error)? {
            if !named.contains(&key) && old_enough(modified) {
                match self.storage.delete(&key).await {
                    Ok(()) => swept.orphans += 1,
                    Err(e) => warn!(key, error = %e, "an orphan file could not be deleted"),
                }
            }
        }
        if let Ok(mut staged) = tokio::fs::read_dir(self.storage.staging()).await {
            while let Ok(Some(file)) = staged.next_entry().await {
                let modified = file.metadata().await.and_then(|m| m.modified());
                if modified.is_ok_and(old_enough)
                    && tokio::fs::remove_file(file.path()).await.is_ok()
                {
                    swept.staged += 1;
                }
            }
        }
        if swept != Swept::default() {
            info!(
                unattached = swept.unattached,
                orphans = swept.orphans,
                staged = swept.staged,
                "attachments swept"
            );
        }
        Ok(swept)
    }
}

fn secs_ms(secs: u64) -> i64 {
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

fn storage_error(e: std::io::Error) -> CoreError {
    CoreError::FileStorage(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_directory_sits_beside_a_sqlite_file() {
        let config = AttachmentsConfig::default();
        assert_eq!(
            config.dir_for("sqlite://data/chat.db"),
            PathBuf::from("data/chat.files")
        );
        assert_eq!(
            config.dir_for("sqlite:chat.db?mode=rwc"),
            PathBuf::from("chat.files")
        );
        assert_eq!(
            config.dir_for("mysql://root@localhost/chat"),
            PathBuf::from("socketgram-files")
        );
        let set = AttachmentsConfig {
            dir: "/var/lib/sg".into(),
            ..config
        };
        assert_eq!(set.dir_for("sqlite://x.db"), PathBuf::from("/var/lib/sg"));
    }

    #[test]
    fn markup_cannot_be_allowed() {
        for bad in ["text/html", "image/svg+xml", "application/xml"] {
            let config = AttachmentsConfig {
                types: vec![bad.into()],
                ..AttachmentsConfig::default()
            };
            assert_eq!(config.validate().unwrap_err().key, "types", "{bad}");
        }
        assert!(AttachmentsConfig::default().validate().is_ok());
        let none = AttachmentsConfig {
            max_bytes: 0,
            ..AttachmentsConfig::default()
        };
        assert_eq!(none.validate().unwrap_err().key, "max_bytes");
    }
}
