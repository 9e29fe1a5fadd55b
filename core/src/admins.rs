//! The admin directory: `adm_account` rows held in memory, with the display names the legacy
//! clients show ("<name> <company>", LEGACY.md §4).

use std::{
    collections::BTreeMap,
    sync::{Arc, RwLock},
};

use crate::domain::{Admin, VISITOR_ADMIN_ID};

/// Admins by login. A reload swaps the whole map at once, so a reply in flight never sees an
/// empty list (the legacy server emptied it first, LEGACY.md §9.10).
pub struct AdminDirectory {
    company: String,
    admins: RwLock<Arc<BTreeMap<String, Admin>>>,
}

impl AdminDirectory {
    pub fn new(company: impl Into<String>) -> Self {
        Self {
            company: company.into(),
            admins: RwLock::default(),
        }
    }

    /// Replaces the directory with a fresh read of `adm_account`.
    pub fn replace(&self, admins: Vec<Admin>) {
        let map = admins
            .into_iter()
            .map(|a| (a.admin_id.clone(), a))
            .collect();
        *self.admins.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(map);
    }

    fn snapshot(&self) -> Arc<BTreeMap<String, Admin>> {
        self.admins
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether the login is a known admin.
    pub fn contains(&self, admin_id: &str) -> bool {
        self.snapshot().contains_key(admin_id)
    }

    /// Every admin, by login.
    pub fn list(&self) -> Vec<Admin> {
        self.snapshot().values().cloned().collect()
    }

    /// The name shown on a support message: "<name> <company>"; the login when the admin has
    /// no name on record (never "undefined", LEGACY.md §9.10); empty for a visitor's message.
    pub fn display_name(&self, admin_id: &str) -> String {
        if admin_id == VISITOR_ADMIN_ID {
            return String::new();
        }
        match self.snapshot().get(admin_id) {
            Some(admin) => self.display_name_of(admin),
            None => admin_id.to_owned(),
        }
    }

    /// The display name of an admin row.
    pub fn display_name_of(&self, admin: &Admin) -> String {
        let name = admin.name.trim();
        match (name.is_empty(), self.company.is_empty()) {
            (true, _) => admin.admin_id.clone(),
            (false, true) => name.to_owned(),
            (false, false) => format!("{name} {}", self.company),
        }
    }
}

/// Longest `adm_account.name` (`VARCHAR(20)`).
pub const MAX_ADMIN_NAME: usize = 20;

/// Checks an admin before it is written to `adm_account`: what the legacy columns hold, and
/// never the placeholder row `'0'` that visitor messages point at.
pub fn check_new_admin(admin: &Admin) -> Result<(), crate::CoreError> {
    use crate::{CoreError::InvalidArgument, chat::MAX_ADMIN_ID};
    let login = &admin.admin_id;
    if login.is_empty() || login.chars().any(char::is_whitespace) {
        return Err(InvalidArgument(
            "the login must be non-empty, without spaces".into(),
        ));
    }
    if login == VISITOR_ADMIN_ID {
        return Err(InvalidArgument(format!(
            "{VISITOR_ADMIN_ID:?} is reserved: visitor messages carry it as their admin"
        )));
    }
    if login.chars().count() > MAX_ADMIN_ID {
        return Err(InvalidArgument(format!(
            "the login is longer than {MAX_ADMIN_ID} characters"
        )));
    }
    if admin.name.trim().is_empty() || admin.name.chars().count() > MAX_ADMIN_NAME {
        return Err(InvalidArgument(format!(
            "the name must be 1 to {MAX_ADMIN_NAME} characters"
        )));
    }
    if role_name(admin.rights).is_none() {
        return Err(InvalidArgument(
            "the role must be -1 (superuser), 0 (no rights), 1 (all tools) or 2 (chat only)".into(),
        ));
    }
    Ok(())
}

/// What an `adm_account.lid` means to the PHP admin (LEGACY.md §6); `None` for no role.
pub fn role_name(rights: i32) -> Option<&'static str> {
    match rights {
        -1 => Some("superuser"),
        0 => Some("no rights"),
        1 => Some("all tools"),
        2 => Some("chat only"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin(id: &str, name: &str) -> Admin {
        Admin {
            admin_id: id.into(),
            name: name.into(),
            rights: 2,
        }
    }

    #[test]
    fn display_names() {
        let dir = AdminDirectory::new("Acme");
        dir.replace(vec![admin("alice", "Alice"), admin("nameless", " ")]);
        assert_eq!(dir.display_name("alice"), "Alice Acme");
        assert_eq!(dir.display_name("nameless"), "nameless");
        assert_eq!(dir.display_name("ghost"), "ghost");
        assert_eq!(dir.display_name("0"), "");
        assert!(dir.contains("alice") && !dir.contains("ghost"));
    }
}
