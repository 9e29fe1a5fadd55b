//! What is known of a visitor besides their messages: what the host site vouches for (the
//! claims of a signed visitor token, or a backend over gRPC) and what the visitor's page
//! reports (never verified). The bounds live here so that the edge reading a token and the
//! core storing a context refuse exactly the same things.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

/// Longest name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest email address, in characters (RFC 5321's path limit).
pub const MAX_EMAIL_CHARS: usize = 254;
/// Most custom fields.
pub const MAX_FIELDS: usize = 32;
/// Longest custom field name, in characters (`A-Z a-z 0-9 _ . -`).
pub const MAX_FIELD_NAME_CHARS: usize = 64;
/// Longest custom field value, in characters.
pub const MAX_FIELD_VALUE_CHARS: usize = 500;
/// Longest page address, in characters.
pub const MAX_URL_CHARS: usize = 2048;
/// Longest page title, in characters.
pub const MAX_TITLE_CHARS: usize = 300;
/// Longest language tag (BCP 47), in characters.
pub const MAX_LANGUAGE_CHARS: usize = 35;
/// Longest time zone name (IANA), in characters.
pub const MAX_TIME_ZONE_CHARS: usize = 64;

/// What the host site vouches for: shown to support as verified.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vouched {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub email: String,
    /// The site's own facts (plan, account id, ...): numbers and booleans read as text.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "scalar_values"
    )]
    pub fields: BTreeMap<String, String>,
}

/// What the visitor's page reports of itself: shown to support as unverified.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Page {
    /// `http://` or `https://`, or empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub url: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub title: String,
    /// The browser's language (BCP 47, e.g. `en-GB`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub language: String,
    /// The browser's time zone (IANA, e.g. `Europe/Berlin`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub time_zone: String,
}

/// Why a context was refused: names the field and the bound.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ContextError(pub String);

impl Vouched {
    /// Whether every field is within its bounds.
    pub fn check(&self) -> Result<(), ContextError> {
        bounded("name", &self.name, MAX_NAME_CHARS)?;
        bounded("email", &self.email, MAX_EMAIL_CHARS)?;
        if !self.email.is_empty() && !self.email.contains('@') {
            return Err(ContextError("email has no `@`".into()));
        }
        if self.fields.len() > MAX_FIELDS {
            return Err(ContextError(format!(
                "{} custom fields, at most {MAX_FIELDS}",
                self.fields.len()
            )));
        }
        for (key, value) in &self.fields {
            let key_chars = key.chars().count();
            if key_chars == 0
                || key_chars > MAX_FIELD_NAME_CHARS
                || !key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
            {
                return Err(ContextError(format!(
                    "custom field name {:?} is not 1-{MAX_FIELD_NAME_CHARS} of A-Z a-z 0-9 _ . -",
                    clip(key)
                )));
            }
            bounded(&format!("fields.{key}"), value, MAX_FIELD_VALUE_CHARS)?;
        }
        Ok(())
    }
}

impl Page {
    /// Whether every field is within its bounds, and the address is a web page's.
    pub fn check(&self) -> Result<(), ContextError> {
        bounded("page.url", &self.url, MAX_URL_CHARS)?;
        // Support's clients may show it as a link: never a `javascript:` or `data:` one.
        if !self.url.is_empty()
            && !["http://", "https://"]
                .iter()
                .any(|scheme| starts_with_ignoring_case(&self.url, scheme))
        {
            return Err(ContextError(
                "page.url must start with http:// or https://".into(),
            ));
        }
        bounded("page.title", &self.title, MAX_TITLE_CHARS)?;
        token("page.language", &self.language, MAX_LANGUAGE_CHARS, "-")?;
        token(
            "page.time_zone",
            &self.time_zone,
            MAX_TIME_ZONE_CHARS,
            "_+-/",
        )?;
        Ok(())
    }
}

fn starts_with_ignoring_case(text: &str, prefix: &str) -> bool {
    text.get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

/// Within `max` characters and free of control characters.
fn bounded(field: &str, value: &str, max: usize) -> Result<(), ContextError> {
    let chars = value.chars().count();
    if chars > max {
        return Err(ContextError(format!(
            "{field} is {chars} characters long, at most {max}"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(ContextError(format!("{field} holds a control character")));
    }
    Ok(())
}

/// Within `max` of ASCII letters, digits and `extra`.
fn token(field: &str, value: &str, max: usize, extra: &str) -> Result<(), ContextError> {
    bounded(field, value, max)?;
    if value
        .chars()
        .any(|c| !c.is_ascii_alphanumeric() && !extra.contains(c))
    {
        return Err(ContextError(format!(
            "{field} may hold only A-Z a-z 0-9 and {extra}"
        )));
    }
    Ok(())
}

/// The start of a refused value, for an error that stays short.
fn clip(value: &str) -> String {
    value.chars().take(MAX_FIELD_NAME_CHARS).collect()
}

/// Field values as text: a site's claims may give numbers or booleans.
fn scalar_values<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    use serde::de::Error as _;
    let raw = BTreeMap::<String, serde_json::Value>::deserialize(d)?;
    raw.into_iter()
        .map(|(key, value)| match value {
            serde_json::Value::String(s) => Ok((key, s)),
            serde_json::Value::Number(n) => Ok((key, n.to_string())),
            serde_json::Value::Bool(b) => Ok((key, b.to_string())),
            _ => Err(D::Error::custom(format!(
                "custom field {:?} must be a string, a number or a boolean",
                clip(&key)
            ))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_read_scalars_as_text_and_refuse_the_rest() {
        let v: Vouched = serde_json::from_str(
            r#"{"name":"Ann","email":"ann@example.com","fields":{"plan":"pro","seats":3,"trial":false}}"#,
        )
        .unwrap();
        assert_eq!(v.fields["seats"], "3");
        assert_eq!(v.fields["trial"], "false");
        assert!(v.check().is_ok());
        assert!(serde_json::from_str::<Vouched>(r#"{"fields":{"a":[1]}}"#).is_err());
        assert!(serde_json::from_str::<Vouched>(r#"{"nmae":"typo"}"#).is_err());
    }

    #[test]
    fn bounds_name_the_field() {
        let long = Vouched {
            name: "x".repeat(MAX_NAME_CHARS + 1),
            ..Vouched::default()
        };
        assert!(long.check().unwrap_err().0.starts_with("name is 201"));
        let fields = Vouched {
            fields: (0..=MAX_FIELDS)
                .map(|i| (format!("f{i}"), "v".into()))
                .collect(),
            ..Vouched::default()
        };
        assert!(fields.check().unwrap_err().0.contains("at most 32"));
        let bad_key = Vouched {
            fields: [("a b".to_owned(), "v".to_owned())].into(),
            ..Vouched::default()
        };
        assert!(bad_key.check().is_err());
        let no_at = Vouched {
            email: "ann".into(),
            ..Vouched::default()
        };
        assert!(no_at.check().is_err());
        let script = Page {
            url: "javascript:alert(1)".into(),
            ..Page::default()
        };
        assert!(script.check().unwrap_err().0.contains("http"));
        let page = Page {
            url: "HTTPS://shop.example/cart?x=1".into(),
            title: "Cart — Shop".into(),
            language: "en-GB".into(),
            time_zone: "America/Argentina/Buenos_Aires".into(),
        };
        assert!(page.check().is_ok());
        let zone = Page {
            time_zone: "Europe/Berlin\n".into(),
            ..Page::default()
        };
        assert!(zone.check().is_err());
    }
}
