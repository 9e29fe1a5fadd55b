//! Support staff's own passwords, for Socketgram's sign-in (the operator console): argon2id
//! hashes as PHC strings in `sg_admin_passwords`, one per admin of `adm_account`. The legacy
//! columns stay the PHP admin's. Hashing is slow on purpose (tens of milliseconds): callers
//! on the runtime run it on the blocking pool.

use argon2::{
    Argon2, PasswordHash, PasswordHasher, PasswordVerifier,
    password_hash::{SaltString, rand_core::OsRng},
};

/// Shortest password accepted, in characters.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest password accepted, in characters (hashing a huge one would be a way to burn CPU).
pub const MAX_PASSWORD_CHARS: usize = 1024;

/// Why a new password was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PasswordError(pub String);

/// Whether `password` may be set.
pub fn check_new_password(password: &str) -> Result<(), PasswordError> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(PasswordError(format!(
            "the password is {chars} characters long; at least {MIN_PASSWORD_CHARS}"
        )));
    }
    if chars > MAX_PASSWORD_CHARS {
        return Err(PasswordError(format!(
            "the password is {chars} characters long; at most {MAX_PASSWORD_CHARS}"
        )));
    }
    if password.chars().any(char::is_control) {
        return Err(PasswordError(
            "the password holds a control character".into(),
        ));
    }
    Ok(())
}

/// The argon2id hash of a password (checked with [`check_new_password`]), with a fresh salt,
/// as a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$...`).
pub fn hash(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 with its default parameters hashes any password")
        .to_string()
}

/// Whether `password` is the one `phc` was made from. A hash that cannot be read matches
/// nothing.
pub fn verify(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_only_their_password() {
        let phc = hash("correct horse battery");
        assert!(phc.starts_with("$argon2id$"), "{phc}");
        assert!(verify("correct horse battery", &phc));
        assert!(!verify("correct horse batterY", &phc));
        assert_ne!(phc, hash("correct horse battery"), "a fresh salt each time");
        assert!(!verify("anything", "not a phc string"));
    }

    #[test]
    fn new_passwords_are_bounded() {
        assert!(check_new_password("seven77").is_err());
        assert!(check_new_password("eight888").is_ok());
        assert!(check_new_password(&"x".repeat(1025)).is_err());
        assert!(check_new_password("tab\tinside").is_err());
        assert!(check_new_password("пароль-длинный").is_ok());
    }
}
