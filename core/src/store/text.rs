//! How message text sits in `messages.message`.
//!
//! The PHP admin echoes `messages.message` into its page raw, and the legacy pages insert
//! messages as HTML (LEGACY.md §4, §6, §9.4). So the column holds the text HTML-escaped:
//! whatever a visitor types shows as text in the unchanged PHP admin, and no stored XSS reaches
//! it. The core itself deals in plain text; this module converts at the column boundary.

/// The column's capacity in characters (legacy `VARCHAR(10000)`).
pub const COLUMN_CHARS: usize = 10_000;

/// Plain text -> column value.
pub fn to_column(text: &str) -> String {
    html_escape::encode_quoted_attribute(text).into_owned()
}

/// Column value -> plain text. Rows written by the legacy server hold what was typed, so an
/// entity in them is decoded too; that is the best reading of a legacy row.
pub fn from_column(column: Option<&str>) -> String {
    html_escape::decode_html_entities(column.unwrap_or_default()).into_owned()
}

/// Characters the text takes in the column once escaped.
pub fn column_chars(text: &str) -> usize {
    text.chars()
        .map(|c| match c {
            '&' => 5,
            '<' | '>' => 4,
            '"' | '\'' => 6,
            _ => 1,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_markup_as_text() {
        let text = r#"<script>alert("x")</script> & 'quotes' — тест 😀"#;
        let column = to_column(text);
        assert!(!column.contains('<') && !column.contains('"') && !column.contains('\''));
        assert_eq!(from_column(Some(&column)), text);
        assert_eq!(column.chars().count(), column_chars(text));
    }

    #[test]
    fn null_column_is_empty_text() {
        assert_eq!(from_column(None), "");
    }
}
