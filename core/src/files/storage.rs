//! Where attachments' bytes are kept: the [`FileStorage`] trait, small enough that an object
//! store can implement it, and [`DirStorage`], a directory on disk (the default).
//!
//! Uploads are written to a local staging directory first (their type is sniffed and images
//! are thumbnailed there), then handed to the storage under a random key. The database row is
//! written after the bytes are in, so a row never names missing bytes; bytes whose row never
//! came (a crash in between) are found by the sweep (`super::Files::sweep`).

use std::{
    io,
    path::{Path, PathBuf},
    pin::Pin,
    time::SystemTime,
};

use async_trait::async_trait;
use tokio::io::AsyncRead;

/// A readable stored file.
pub type Reader = Pin<Box<dyn AsyncRead + Send>>;

/// The storage behind attachments.
#[async_trait]
pub trait FileStorage: Send + Sync + 'static {
    /// A local directory where uploads in progress are written (on the same file system as
    /// the storage, for [`DirStorage`], so `put` is a rename).
    fn staging(&self) -> &Path;

    /// Takes the finished file at `from` (in [`FileStorage::staging`]) under `key`.
    async fn put(&self, key: &str, from: &Path) -> io::Result<()>;

    /// Opens a stored file.
    async fn open(&self, key: &str) -> io::Result<Reader>;

    /// Deletes a stored file; one that is not there is no error.
    async fn delete(&self, key: &str) -> io::Result<()>;

    /// Every key kept, with when it was stored.
    async fn list(&self) -> io::Result<Vec<(String, SystemTime)>>;
}

/// Files in a directory: `<root>/files/<first two characters of the key>/<key>`, uploads in
/// progress in `<root>/staging`. Created on first use.
pub struct DirStorage {
    files: PathBuf,
    staging: PathBuf,
}

impl DirStorage {
    pub fn new(root: &Path) -> Self {
        Self {
            files: root.join("files"),
            staging: root.join("staging"),
        }
    }

    /// Where a key's file is. Keys are made by the core (hex), never by a client; anything
    /// else is refused rather than joined into a path.
    fn path(&self, key: &str) -> io::Result<PathBuf> {
        let valid = key.len() >= 4
            && key
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b'.' || b.is_ascii_lowercase())
            && !key.starts_with('.')
            && !key.contains("..");
        if !valid {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("not a storage key: {key:?}"),
            ));
        }
        Ok(self.files.join(&key[..2]).join(key))
    }
}

#[async_trait]
impl FileStorage for DirStorage {
    fn staging(&self) -> &Path {
        &self.staging
    }

    async fn put(&self, key: &str, from: &Path) -> io::Result<()> {
        let to = self.path(key)?;
        if let Some(dir) = to.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        tokio::fs::rename(from, &to).await
    }

    async fn open(&self, key: &str) -> io::Result<Reader> {
        let file = tokio::fs::File::open(self.path(key)?).await?;
        Ok(Box::pin(file))
    }

    async fn delete(&self, key: &str) -> io::Result<()> {
        match tokio::fs::remove_file(self.path(key)?).await {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            done => done,
        }
    }

    async fn list(&self) -> io::Result<Vec<(String, SystemTime)>> {
        let mut keys = Vec::new();
        let mut dirs = match tokio::fs::read_dir(&self.files).await {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(keys),
            dirs => dirs?,
        };
        while let Some(dir) = dirs.next_entry().await? {
            if !dir.file_type().await?.is_dir() {
                continue;
            }
            let mut files = tokio::fs::read_dir(dir.path()).await?;
            while let Some(file) = files.next_entry().await? {
                let Ok(key) = file.file_name().into_string() else {
                    continue;
                };
                let modified = file.metadata().await?.modified()?;
                keys.push((key, modified));
            }
        }
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keys_never_leave_the_directory() {
        let root = tempfile::tempdir().unwrap();
        let storage = DirStorage::new(root.path());
        for key in ["../etc/passwd", "ab/../../x", ".hidden", "a", "ABC/def"] {
            assert!(storage.open(key).await.is_err(), "{key}");
            assert!(storage.delete(key).await.is_err(), "{key}");
        }
    }

    #[tokio::test]
    async fn a_file_put_is_listed_opened_and_deleted() {
        use tokio::io::AsyncReadExt as _;
        let root = tempfile::tempdir().unwrap();
        let storage = DirStorage::new(root.path());
        assert!(storage.list().await.unwrap().is_empty());
        tokio::fs::create_dir_all(storage.staging()).await.unwrap();
        let upload = storage.staging().join("u1");
        tokio::fs::write(&upload, b"hello").await.unwrap();
        storage.put("abcdef01", &upload).await.unwrap();
        assert!(!upload.exists(), "moved, not copied");
        let listed: Vec<String> = storage
            .list()
            .await
            .unwrap()
            .into_iter()
            .map(|k| k.0)
            .collect();
        assert_eq!(listed, ["abcdef01"]);
        let mut text = String::new();
        storage
            .open("abcdef01")
            .await
            .unwrap()
            .read_to_string(&mut text)
            .await
            .unwrap();
        assert_eq!(text, "hello");
        storage.delete("abcdef01").await.unwrap();
        storage.delete("abcdef01").await.unwrap();
        assert!(storage.list().await.unwrap().is_empty());
    }
}
