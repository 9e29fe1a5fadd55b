//! "Continue in Telegram": the bot the widget offers (`[web] telegram_bot`, or the username
//! the process learns from Telegram) and the one-time start links it opens, whose tokens the
//! core makes and the bot redeems on `/start <token>` (see `Telegram.CreateLinkToken`).

use std::sync::{Arc, RwLock};

/// The bot's username, without `@`, as the widget is told it: the configured one, or one
/// filled in while the edge runs (`socketgram serve` asks Telegram's `getMe` when only the
/// bot's token is configured). `None` until there is one: the widget then shows no button.
#[derive(Clone, Debug, Default)]
pub struct TelegramBot(Arc<RwLock<Option<String>>>);

impl TelegramBot {
    /// Sets the bot of `[web] telegram_bot`, which nothing filled in later replaces.
    pub fn configure(&self, username: &str) -> Result<(), String> {
        check_username(username)?;
        *self.write() = Some(username.to_owned());
        Ok(())
    }

    /// Fills in the username learned at run time, unless one is known already (the
    /// configuration wins). Refused when it is no bot username.
    pub fn fill(&self, username: &str) -> Result<(), String> {
        check_username(username)?;
        self.write().get_or_insert_with(|| username.to_owned());
        Ok(())
    }

    /// The username, when there is one.
    pub fn username(&self) -> Option<String> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Option<String>> {
        self.0.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// Whether `name` can be a bot's username: 5 to 32 of A-Z a-z 0-9 _, no `@`.
pub fn check_username(name: &str) -> Result<(), String> {
    if name.starts_with('@') {
        return Err("the bot's username without the @".into());
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '_';
    if !(5..=32).contains(&name.len()) || !name.chars().all(allowed) {
        return Err(format!(
            "{name:?} is no Telegram username: 5 to 32 characters of A-Z a-z 0-9 _"
        ));
    }
    Ok(())
}

/// The bot's start link for a token (a token is only characters a URL query takes as
/// they are).
pub fn start_link(username: &str, token: &str) -> String {
    format!("https://t.me/{username}?start={token}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_what_telegram_allows() {
        for good in [
            "abcde",
            "SocketgramTestBot",
            "socketgram_test_bot",
            &"a".repeat(32),
        ] {
            check_username(good).unwrap_or_else(|e| panic!("{good:?}: {e}"));
        }
        for bad in [
            "",
            "abcd",
            "@AcmeBot",
            "acme-bot",
            "acme bot",
            "ácmebot",
            &"a".repeat(33),
        ] {
            assert!(check_username(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_configured_bot_wins_over_the_one_learned() {
        let bot = TelegramBot::default();
        assert_eq!(bot.username(), None);
        assert!(bot.fill("not a name").is_err());
        assert_eq!(bot.username(), None);
        bot.fill("acme_support_bot").expect("a username");
        assert_eq!(bot.username().as_deref(), Some("acme_support_bot"));
        let configured = TelegramBot::default();
        configured.configure("AcmeBot").expect("a username");
        configured.fill("acme_support_bot").expect("a username");
        assert_eq!(configured.username().as_deref(), Some("AcmeBot"));
        assert_eq!(
            start_link("AcmeBot", "abc_-1"),
            "https://t.me/AcmeBot?start=abc_-1"
        );
    }
}
