//! How sockets and their requests appear in the log: a keyed id instead of the session id
//! (a credential), event names clipped, refusal lines sampled.

use std::sync::atomic::{AtomicU64, Ordering};

/// Longest event name (or parser error) repeated in a log line or an answer: a client's
/// megabyte-long event name must not come back as a megabyte, nor fill the log.
const CLIP: usize = 64;

/// `text` cut to [`CLIP`] characters, marked when cut.
pub(crate) fn clip(text: &str) -> String {
    match text.char_indices().nth(CLIP) {
        None => text.to_owned(),
        Some((end, _)) => format!("{}… ({} bytes)", &text[..end], text.len()),
    }
}

/// A socket's name in the log. The session id itself is a credential (a long-polling request
/// carrying it acts as that socket, from anywhere), so the log shows a keyed hash of it,
/// stable for the socket's life and the process's, useless to anyone reading the log.
pub(crate) fn log_id(sid: &socketioxide::socket::Sid) -> String {
    use std::hash::BuildHasher;
    static KEY: std::sync::OnceLock<std::hash::RandomState> = std::sync::OnceLock::new();
    format!(
        "{:016x}",
        KEY.get_or_init(std::hash::RandomState::new).hash_one(sid)
    )
}

/// Refusals are logged at most this often per second (a flood is refused thousands of times
/// a second); the next line logged says how many were left out.
const REFUSAL_LOG_PER_SECOND: u32 = 20;

/// The sampler of refusal log lines.
pub(crate) static REFUSALS: SampledLog = SampledLog::new();

/// At most [`REFUSAL_LOG_PER_SECOND`] lines per second, counting what it leaves out.
pub(crate) struct SampledLog {
    limiter: std::sync::OnceLock<governor::DefaultDirectRateLimiter>,
    suppressed: AtomicU64,
}

impl SampledLog {
    const fn new() -> Self {
        Self {
            limiter: std::sync::OnceLock::new(),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Calls `line` with the count of lines left out since the last one, or counts this one.
    pub(crate) fn log(&self, line: impl FnOnce(u64)) {
        let limiter = self.limiter.get_or_init(|| {
            let rate = std::num::NonZeroU32::new(REFUSAL_LOG_PER_SECOND)
                .unwrap_or(std::num::NonZeroU32::MIN);
            governor::RateLimiter::direct(governor::Quota::per_second(rate))
        });
        if limiter.check().is_ok() {
            line(self.suppressed.swap(0, Ordering::Relaxed));
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use socketioxide::socket::Sid;

    use super::*;

    #[test]
    fn log_ids_name_a_socket_without_its_session_id() {
        let (a, b) = (Sid::new(), Sid::new());
        assert_eq!(log_id(&a), log_id(&a), "stable for one socket");
        assert_ne!(log_id(&a), log_id(&b));
        assert!(!log_id(&a).contains(a.as_str()) && !a.as_str().contains(&log_id(&a)));
    }

    #[test]
    fn clipped_text_is_short_and_says_so() {
        assert_eq!(clip("subscribe"), "subscribe");
        let long = "é".repeat(100_000);
        let clipped = clip(&long);
        assert!(clipped.chars().count() < CLIP + 20, "{clipped}");
        assert!(clipped.ends_with("(200000 bytes)"), "{clipped}");
    }
}
