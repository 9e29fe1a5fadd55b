//! Who a connecting socket is (LEGACY.md §2), decided from the handshake alone: the legacy
//! visitor query `?id=<cid>&room=<hash>`, the legacy admin query `?<param>=<value>`, or
//! Socketgram's signed tokens (`token` / `admin_token`, in the Socket.IO `auth` payload or the
//! query). Payload fields never change it (LEGACY.md §9.1). A visitor token may carry what the
//! host site vouches for (version `v2`, signed as a whole), which support is shown as verified.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use socketgram_common::context::Vouched;

use crate::{config::LegacyConfig, events::parse_id, room};

/// What a client is, and how it wants message text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    Visitor {
        cid: u64,
        /// The id as the handshake gave it (sent back in `online`/`offline`).
        cid_text: String,
        room: String,
        /// Legacy pages get HTML-escaped text; Socketgram's widget gets plain text.
        legacy: bool,
        /// What the host site vouched for in a `v2` token (boxed: most visitors have none).
        vouched: Option<Box<Vouched>>,
    },
    Admin {
        /// Known from a per-admin token; the legacy shared parameter names nobody, so the
        /// login comes with each admin event (as the PHP admin sends it).
        admin_id: Option<String>,
        legacy: bool,
    },
}

/// Why a handshake was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error("no credentials: expected ?id=&room=, a visitor token or admin credentials")]
    Missing,
    #[error("`id` must be a positive integer")]
    BadId,
    #[error("`room` does not match `id`")]
    WrongRoom,
    #[error("wrong admin credentials")]
    WrongAdminSecret,
    #[error("invalid token: {0}")]
    BadToken(&'static str),
    #[error("the token's claims are refused: {0}")]
    BadClaims(String),
    #[error("the token has expired")]
    Expired,
}

/// Signs and checks Socketgram's tokens: `<kind>.<subject>.<expiry>.<hex hmac-sha256>`, with
/// kind `v1` (visitor, subject = cid) or `a1` (admin, subject = login); and the visitor token
/// with claims, `v2.<cid>.<expiry>.<base64url JSON claims>.<hex hmac-sha256>`, the MAC over
/// everything before its last dot (so neither the version nor the claims can be changed).
#[derive(Clone)]
pub struct TokenSigner {
    key: Vec<u8>,
}

/// The kinds of token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    Visitor,
    Admin,
    /// Leave to upload one file to a conversation (`u1`, subject `<cid>.<who>`).
    Upload,
    /// Leave to fetch one file (`f1`, subject `<file id>.<cid>.<f|t>`).
    File,
}

impl TokenKind {
    fn tag(self) -> &'static str {
        match self {
            TokenKind::Visitor => "v1",
            TokenKind::Admin => "a1",
            TokenKind::Upload => "u1",
            TokenKind::File => "f1",
        }
    }
}

/// The longest token accepted, in bytes: claims make a token long, and it travels in a URL
/// on long polling.
pub const MAX_TOKEN_BYTES: usize = 4096;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl TokenSigner {
    pub fn new(key: &[u8]) -> Self {
        Self { key: key.to_vec() }
    }

    fn mac(&self, body: &str) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).expect("any key length");
        mac.update(body.as_bytes());
        mac
    }

    /// `body` with its signature appended.
    fn signed(&self, body: &str) -> String {
        let sig = hex::encode(self.mac(body).finalize().into_bytes());
        format!("{body}.{sig}")
    }

    /// Whether `sig` (hex) is this key's signature of `body`.
    fn check_signature(&self, body: &str, sig: &str) -> Result<(), HandshakeError> {
        let sig = hex::decode(sig).map_err(|_| HandshakeError::BadToken("malformed signature"))?;
        self.mac(body)
            .verify_slice(&sig)
            .map_err(|_| HandshakeError::BadToken("bad signature"))
    }

    /// A token for `subject`, valid for `ttl_secs`.
    pub fn sign(&self, kind: TokenKind, subject: &str, ttl_secs: u64) -> String {
        self.signed(&format!("{}.{subject}.{}", kind.tag(), now() + ttl_secs))
    }

    /// A visitor token for `cid`, with what the host site vouches for (`v2`) or without
    /// (`v1`). Fails when the claims are out of bounds or make the token too long.
    pub fn sign_visitor(
        &self,
        cid: &str,
        vouched: Option<&Vouched>,
        ttl_secs: u64,
    ) -> Result<String, HandshakeError> {
        let Some(vouched) = vouched else {
            return Ok(self.sign(TokenKind::Visitor, cid, ttl_secs));
        };
        vouched
            .check()
            .map_err(|e| HandshakeError::BadClaims(e.0))?;
        let claims = serde_json::to_vec(vouched).expect("claims serialise");
        let body = format!(
            "v2.{cid}.{}.{}",
            now() + ttl_secs,
            URL_SAFE_NO_PAD.encode(claims)
        );
        let token = self.signed(&body);
        if token.len() > MAX_TOKEN_BYTES {
            return Err(HandshakeError::BadClaims(format!(
                "the token would be {} bytes long, at most {MAX_TOKEN_BYTES}",
                token.len()
            )));
        }
        Ok(token)
    }

    /// The visitor (cid as written) of a valid, unexpired visitor token, and what the host
    /// site vouched for in it.
    pub fn verify_visitor(&self, token: &str) -> Result<(String, Option<Vouched>), HandshakeError> {
        if !token.starts_with("v2.") {
            if token.starts_with('v') && !token.starts_with("v1.") {
                return Err(HandshakeError::BadToken("unknown token version"));
            }
            return Ok((self.verify(TokenKind::Visitor, token)?, None));
        }
        check_length(token)?;
        let (body, sig) = token
            .rsplit_once('.')
            .ok_or(HandshakeError::BadToken("malformed"))?;
        self.check_signature(body, sig)?;
        let mut parts = body.split('.').skip(1);
        let (Some(cid), Some(expiry), Some(claims), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(HandshakeError::BadToken("malformed"));
        };
        check_expiry(expiry)?;
        let claims = URL_SAFE_NO_PAD
            .decode(claims)
            .map_err(|_| HandshakeError::BadToken("claims are not base64url"))?;
        let vouched: Vouched = serde_json::from_slice(&claims)
            .map_err(|e| HandshakeError::BadClaims(e.to_string()))?;
        vouched
            .check()
            .map_err(|e| HandshakeError::BadClaims(e.0))?;
        Ok((cid.to_owned(), Some(vouched)))
    }

    /// The subject of a valid, unexpired token of `kind`.
    pub fn verify(&self, kind: TokenKind, token: &str) -> Result<String, HandshakeError> {
        check_length(token)?;
        let (body, sig) = token
            .rsplit_once('.')
            .ok_or(HandshakeError::BadToken("malformed"))?;
        // The subject (an admin login) may itself hold dots: the tag is the first part and
        // the expiry the last.
        let Some((tag, rest)) = body.split_once('.') else {
            return Err(HandshakeError::BadToken("malformed"));
        };
        let Some((subject, expiry)) = rest.rsplit_once('.') else {
            return Err(HandshakeError::BadToken("malformed"));
        };
        if tag != kind.tag() {
            return Err(HandshakeError::BadToken("wrong kind"));
        }
        self.check_signature(body, sig)?;
        check_expiry(expiry)?;
        Ok(subject.to_owned())
    }
}

fn check_length(token: &str) -> Result<(), HandshakeError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(HandshakeError::BadToken("longer than 4096 bytes"));
    }
    Ok(())
}

fn check_expiry(expiry: &str) -> Result<(), HandshakeError> {
    let expiry: u64 = expiry
        .parse()
        .map_err(|_| HandshakeError::BadToken("malformed expiry"))?;
    if expiry < now() {
        return Err(HandshakeError::Expired);
    }
    Ok(())
}

/// Everything a handshake may carry.
#[derive(Debug, Default)]
pub struct Credentials {
    /// Query parameters, in order.
    pub query: Vec<(String, String)>,
    /// `token` from the `auth` payload (or query).
    pub token: Option<String>,
    /// `admin_token` from the `auth` payload (or query).
    pub admin_token: Option<String>,
}

impl Credentials {
    /// Reads the query string and the Socket.IO `auth` payload.
    pub fn from_handshake(query: Option<&str>, auth: Option<&serde_json::Value>) -> Self {
        let query: Vec<(String, String)> = query
            .map(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .into_owned()
                    .collect()
            })
            .unwrap_or_default();
        let from_auth = |name: &str| {
            auth.and_then(|a| a.get(name))
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        };
        let token = from_auth("token").or_else(|| lookup(&query, "token").map(str::to_owned));
        let admin_token =
            from_auth("admin_token").or_else(|| lookup(&query, "admin_token").map(str::to_owned));
        Self {
            query,
            token,
            admin_token,
        }
    }
}

fn lookup<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Decides who the client is.
pub fn identify(
    credentials: &Credentials,
    legacy: &LegacyConfig,
    signer: &TokenSigner,
) -> Result<Identity, HandshakeError> {
    if let Some(token) = &credentials.admin_token {
        let admin_id = signer.verify(TokenKind::Admin, token)?;
        return Ok(Identity::Admin {
            admin_id: Some(admin_id),
            legacy: false,
        });
    }
    if let Some(param) = &legacy.admin_param
        && let Some(value) = lookup(&credentials.query, &param.name)
    {
        // Constant time: the value is a shared secret (LEGACY.md §9.3).
        return if param.value.matches(value.as_bytes()) {
            Ok(Identity::Admin {
                admin_id: None,
                legacy: true,
            })
        } else {
            Err(HandshakeError::WrongAdminSecret)
        };
    }
    if let Some(token) = &credentials.token {
        let (subject, vouched) = signer.verify_visitor(token)?;
        let cid = parse_id(&subject).ok_or(HandshakeError::BadToken("bad subject"))?;
        return Ok(Identity::Visitor {
            cid,
            cid_text: subject,
            room: room::room_of(legacy.room_hash, &cid.to_string(), legacy.secret.expose()),
            legacy: false,
            vouched: vouched.map(Box::new),
        });
    }
    match (
        lookup(&credentials.query, "id"),
        lookup(&credentials.query, "room"),
    ) {
        (Some(id), Some(room)) => {
            let cid = parse_id(id).ok_or(HandshakeError::BadId)?;
            if !room::room_matches(legacy.room_hash, id, legacy.secret.expose(), room) {
                return Err(HandshakeError::WrongRoom);
            }
            Ok(Identity::Visitor {
                cid,
                cid_text: id.to_owned(),
                room: room.to_owned(),
                legacy: true,
                vouched: None,
            })
        }
        _ => Err(HandshakeError::Missing),
    }
}

#[cfg(test)]
mod tests {
    use socketgram_common::Secret;

    use super::*;
    use crate::{config::AdminParam, room::HashKind};

    fn legacy() -> LegacyConfig {
        LegacyConfig {
            secret: Secret::new("qwerty"),
            room_hash: HashKind::Md5,
            admin_param: Some(AdminParam {
                name: "adminpass".into(),
                value: Secret::new("admin"),
            }),
        }
    }

    fn who(query: &str, auth: Option<serde_json::Value>) -> Result<Identity, HandshakeError> {
        let signer = TokenSigner::new(b"k");
        identify(
            &Credentials::from_handshake(Some(query), auth.as_ref()),
            &legacy(),
            &signer,
        )
    }

    #[test]
    fn legacy_visitor_and_admin() {
        let room = room::room_of(HashKind::Md5, "123", "qwerty");
        let id = who(
            &format!("EIO=4&transport=websocket&id=123&room={room}"),
            None,
        )
        .unwrap();
        assert_eq!(
            id,
            Identity::Visitor {
                cid: 123,
                cid_text: "123".into(),
                room: room.clone(),
                legacy: true,
                vouched: None,
            }
        );
        assert_eq!(
            who(&format!("id=124&room={room}"), None),
            Err(HandshakeError::WrongRoom)
        );
        assert_eq!(
            who(&format!("id=abc&room={room}"), None),
            Err(HandshakeError::BadId)
        );
        assert_eq!(who("id=123", None), Err(HandshakeError::Missing));
        assert_eq!(
            who("adminpass=admin", None),
            Ok(Identity::Admin {
                admin_id: None,
                legacy: true
            })
        );
        assert_eq!(
            who("adminpass=nope", None),
            Err(HandshakeError::WrongAdminSecret)
        );
    }

    #[test]
    fn tokens() {
        let signer = TokenSigner::new(b"k");
        let visitor = signer.sign(TokenKind::Visitor, "77", 60);
        let id = who("", Some(serde_json::json!({ "token": visitor }))).unwrap();
        assert!(matches!(
            id,
            Identity::Visitor {
                cid: 77,
                legacy: false,
                ..
            }
        ));
        let admin = signer.sign(TokenKind::Admin, "alice", 60);
        assert_eq!(
            who(&format!("admin_token={admin}"), None),
            Ok(Identity::Admin {
                admin_id: Some("alice".into()),
                legacy: false
            })
        );
        assert!(matches!(
            signer.verify(TokenKind::Visitor, &admin),
            Err(HandshakeError::BadToken(_))
        ));
        let forged = visitor.replace(".77.", ".78.");
        assert!(matches!(
            signer.verify(TokenKind::Visitor, &forged),
            Err(HandshakeError::BadToken(_))
        ));
        let expired = signer
            .sign(TokenKind::Visitor, "77", 0)
            .replace(&format!(".{}.", now()), ".1.");
        assert!(signer.verify(TokenKind::Visitor, &expired).is_err());
        assert!(
            TokenSigner::new(b"other")
                .verify(TokenKind::Visitor, &visitor)
                .is_err()
        );
        assert!(matches!(
            signer.verify_visitor(&"v1.7.9.".repeat(600)),
            Err(HandshakeError::BadToken(_))
        ));
        let dotted = signer.sign(TokenKind::Admin, "j.doe", 60);
        assert_eq!(signer.verify(TokenKind::Admin, &dotted).unwrap(), "j.doe");
        assert!(signer.verify(TokenKind::Admin, "a1.x").is_err());
        assert!(signer.verify(TokenKind::Admin, "").is_err());
    }

    #[test]
    fn tokens_with_claims() {
        let signer = TokenSigner::new(b"k");
        let ann = Vouched {
            name: "Ann Lee".into(),
            email: "ann@example.com".into(),
            fields: [("plan".to_owned(), "pro".to_owned())].into(),
        };
        let token = signer.sign_visitor("77", Some(&ann), 60).unwrap();
        assert!(token.starts_with("v2.77."));
        let id = who("", Some(serde_json::json!({ "token": token }))).unwrap();
        assert!(matches!(
            &id,
            Identity::Visitor { cid: 77, vouched: Some(v), .. } if **v == ann
        ));
        // Without claims the token is a v1 one, and nobody vouched.
        let plain = signer.sign_visitor("77", None, 60).unwrap();
        assert!(plain.starts_with("v1.77."));
        assert_eq!(signer.verify_visitor(&plain).unwrap(), ("77".into(), None));

        // A forged version, other claims, a different cid, another key: all refused.
        let parts: Vec<&str> = token.split('.').collect();
        let as_v1 = format!("v1.{}.{}.{}", parts[1], parts[2], parts[4]);
        assert!(signer.verify_visitor(&as_v1).is_err());
        let as_v3 = token.replacen("v2.", "v3.", 1);
        assert_eq!(
            signer.verify_visitor(&as_v3),
            Err(HandshakeError::BadToken("unknown token version"))
        );
        let other_claims = URL_SAFE_NO_PAD.encode(br#"{"name":"Eve"}"#);
        let swapped = token.replace(parts[3], &other_claims);
        assert_eq!(
            signer.verify_visitor(&swapped),
            Err(HandshakeError::BadToken("bad signature"))
        );
        assert!(
            signer
                .verify_visitor(&token.replacen(".77.", ".78.", 1))
                .is_err()
        );
        assert!(TokenSigner::new(b"other").verify_visitor(&token).is_err());

        // Claims out of bounds are refused when signing and when read.
        let long = Vouched {
            name: "x".repeat(201),
            ..Vouched::default()
        };
        assert!(matches!(
            signer.sign_visitor("77", Some(&long), 60),
            Err(HandshakeError::BadClaims(_))
        ));
        let body = format!(
            "v2.77.{}.{}",
            now() + 60,
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&long).unwrap())
        );
        let signed = signer.signed(&body);
        assert!(matches!(
            signer.verify_visitor(&signed),
            Err(HandshakeError::BadClaims(m)) if m.contains("name is 201")
        ));
        let huge = Vouched {
            fields: (0..32)
                .map(|i| (format!("f{i}"), "v".repeat(200)))
                .collect(),
            ..Vouched::default()
        };
        assert!(matches!(
            signer.sign_visitor("77", Some(&huge), 60),
            Err(HandshakeError::BadClaims(m)) if m.contains("4096")
        ));
    }
}
