//! Visitor rooms: `hex(HASH("id" + cid + SECRET))` (LEGACY.md §1), computed the same way by
//! the host site and the PHP admin.

use md5::Md5;
use serde::{Deserialize, Serialize};
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

/// Hash functions the legacy configuration names (PHP `hash()` algorithm names).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum HashKind {
    #[default]
    Md5,
    Sha1,
    Sha256,
    Sha512,
}

impl HashKind {
    /// Lower-case hex digest of `input`, as PHP's `hash()` returns it.
    pub fn hex(self, input: &[u8]) -> String {
        match self {
            HashKind::Md5 => hex::encode(Md5::digest(input)),
            HashKind::Sha1 => hex::encode(Sha1::digest(input)),
            HashKind::Sha256 => hex::encode(Sha256::digest(input)),
            HashKind::Sha512 => hex::encode(Sha512::digest(input)),
        }
    }
}

/// The room of visitor `cid`.
pub fn room_of(kind: HashKind, cid: &str, secret: &str) -> String {
    kind.hex(format!("id{cid}{secret}").as_bytes())
}

/// Whether `room` is the room of `cid`, compared in constant time.
pub fn room_matches(kind: HashKind, cid: &str, secret: &str, room: &str) -> bool {
    room_of(kind, cid, secret)
        .as_bytes()
        .ct_eq(room.as_bytes())
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_example() {
        // LEGACY.md §1: cid 123, secret "qwerty" -> md5("id123qwerty").
        let room = room_of(HashKind::Md5, "123", "qwerty");
        assert_eq!(room, hex::encode(Md5::digest(b"id123qwerty")));
        assert_eq!(room.len(), 32);
        assert!(room_matches(HashKind::Md5, "123", "qwerty", &room));
        assert!(!room_matches(HashKind::Md5, "124", "qwerty", &room));
        assert!(!room_matches(HashKind::Sha1, "123", "qwerty", &room));
        assert_eq!(room_of(HashKind::Sha256, "1", "s").len(), 64);
    }
}
