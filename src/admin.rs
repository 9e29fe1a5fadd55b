//! `socketgram admin add|list|remove|passwd|link-telegram`: the admins of `adm_account`, the
//! directory the core and the PHP admin read, managed without SQL; their passwords for
//! Socketgram's own sign-in (argon2id in `sg_admin_passwords`, never the legacy columns); and
//! the Telegram user each is in the staff group (`sg_admin_telegram`). A running server
//! picks up a new admin at its first reply (the core re-reads the directory on an unknown
//! login), as it does for admins the PHP admin's `createadmin` page inserts.

use anyhow::{Context as _, bail};
use clap::Subcommand;
use socketgram_core::{
    admins::{self, check_new_admin},
    domain::Admin,
    passwords,
    store::{Store, StoreError},
};

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Add an admin: replies are signed "<name> <company>".
    Add {
        /// The login (`adm_account.aid`, at most 20 characters): what the PHP admin sends as
        /// `adm` and what gRPC authors name.
        login: String,
        /// The display name (`adm_account.name`, at most 20 characters).
        name: String,
        /// The PHP admin's rights (`lid`): 0 no rights, 1 all tools, 2 chat only.
        #[arg(long, default_value_t = 2, allow_negative_numbers = true)]
        role: i32,
    },
    /// List the admins.
    List,
    /// Remove an admin who has signed no message (and their password).
    Remove { login: String },
    /// Set or change an admin's password for Socketgram's own sign-in. Read from standard
    /// input (one line), or asked for without echo on a terminal.
    Passwd { login: String },
    /// Say which Telegram user of the staff group (`[telegram] staff_chat_id`) an admin is:
    /// what they write in a conversation's topic goes to the visitor signed with their name.
    LinkTelegram {
        login: String,
        /// The Telegram user id (a number; the bot tells an unpaired member theirs).
        #[arg(required_unless_present = "remove")]
        telegram_user_id: Option<i64>,
        /// Unpair the admin instead.
        #[arg(long, conflicts_with = "telegram_user_id")]
        remove: bool,
    },
}

/// Runs one admin command on a migrated store; returns what to print.
pub async fn run(store: &dyn Store, command: AdminCommand) -> anyhow::Result<String> {
    match command {
        AdminCommand::Add { login, name, role } => {
            let admin = Admin {
                admin_id: login,
                name,
                rights: role,
            };
            check_new_admin(&admin)?;
            if !store
                .add_admin(&admin)
                .await
                .context("cannot add the admin")?
            {
                bail!(
                    "an admin with the login {:?} exists already",
                    admin.admin_id
                );
            }
            Ok(format!(
                "added admin {:?} ({}, role {})\n",
                admin.admin_id,
                admin.name,
                role_name(admin.rights)
            ))
        }
        AdminCommand::List => {
            let admins = store.admins().await.context("cannot read the admins")?;
            if admins.is_empty() {
                return Ok(
                    "no admins yet: add one with `socketgram admin add <login> <name>`\n".into(),
                );
            }
            let width = admins
                .iter()
                .map(|a| a.admin_id.chars().count())
                .max()
                .unwrap_or(0)
                .max(5);
            let with_password = store
                .admins_with_password()
                .await
                .context("cannot read which admins have a password")?;
            let telegram = store
                .admin_telegram_users()
                .await
                .context("cannot read the admins' Telegram users")?;
            let mut out = format!(
                "{:width$}  {:20}  password  {:13}  role\n",
                "login", "name", "telegram"
            );
            for a in &admins {
                let password = if with_password.contains(&a.admin_id) {
                    "set"
                } else {
                    "-"
                };
                let user = telegram
                    .get(&a.admin_id)
                    .map_or_else(|| "-".to_owned(), i64::to_string);
                out.push_str(&format!(
                    "{:width$}  {:20}  {password:8}  {user:13}  {} ({})\n",
                    a.admin_id,
                    a.name,
                    a.rights,
                    role_name(a.rights)
                ));
            }
            Ok(out)
        }
        AdminCommand::Remove { login } => match store.remove_admin(&login).await {
            Ok(true) => Ok(format!("removed admin {login:?}\n")),
            Ok(false) => bail!("there is no admin {login:?}"),
            Err(StoreError::Constraint(_)) => bail!(
                "admin {login:?} has signed messages, which show its name (messages.aid \
                 references it): it cannot be removed"
            ),
            Err(e) => Err(e).context("cannot remove the admin"),
        },
        AdminCommand::LinkTelegram {
            login,
            telegram_user_id,
            ..
        } => {
            let admins = store.admins().await.context("cannot read the admins")?;
            if !admins.iter().any(|a| a.admin_id == login) {
                bail!(
                    "there is no admin {login:?}: add one with `socketgram admin add {login} <name>`"
                );
            }
            if telegram_user_id.is_some_and(|id| id <= 0) {
                bail!("a Telegram user id is a positive number");
            }
            store
                .link_admin_telegram(&login, telegram_user_id)
                .await
                .context("cannot pair the admin with the Telegram user")?;
            Ok(match telegram_user_id {
                Some(id) => format!(
                    "admin {login:?} is Telegram user {id}: their messages in the staff group's \
                     topics go to visitors\n"
                ),
                None => format!("admin {login:?} has no Telegram user now\n"),
            })
        }
        AdminCommand::Passwd { login } => {
            let admins = store.admins().await.context("cannot read the admins")?;
            if !admins.iter().any(|a| a.admin_id == login) {
                bail!(
                    "there is no admin {login:?}: add one with `socketgram admin add {login} <name>`"
                );
            }
            let prompt = format!("password for {login}: ");
            let hash = tokio::task::spawn_blocking(move || -> anyhow::Result<String> {
                let password = read_password(&prompt)?;
                passwords::check_new_password(&password)?;
                Ok(passwords::hash(&password))
            })
            .await
            .context("the password reader stopped")??;
            store
                .put_admin_password(&login, &hash)
                .await
                .context("cannot store the password")?;
            // A new password ends the sessions signed in with the old one.
            let ended = store
                .end_admin_sessions(&login)
                .await
                .context("cannot end the admin's sessions")?;
            let signed_out = match ended {
                0 => String::new(),
                n => format!("; {n} signed-in session(s) ended"),
            };
            Ok(format!("password set for admin {login:?}{signed_out}\n"))
        }
    }
}

/// One line of standard input, or, on a terminal, a prompt that does not echo.
fn read_password(prompt: &str) -> anyhow::Result<String> {
    use std::io::{BufRead as _, IsTerminal as _};
    if std::io::stdin().is_terminal() {
        return rpassword::prompt_password(prompt).context("cannot read the password");
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the password from standard input")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

fn role_name(rights: i32) -> &'static str {
    admins::role_name(rights).unwrap_or("unknown")
}
