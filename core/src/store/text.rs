//! How message text sits in `messages.message`.
//!
//! The PHP admin echoes `messages.message` into its page raw, and the legacy pages insert
//! messages as HTML (LEGACY.md §4, §6, §9.4). So the column holds the text HTML-escaped:
//! whatever a visitor types shows as text in the unchanged PHP admin, and no stored XSS reaches
//! it. The core itself deals in plain text; this module converts at the column boundary.

use socketgram_common::files;

use crate::domain::Attachment;

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

/// What the column holds for a message with files: its text, then a line naming each file
/// (LEGACY.md §6: the PHP admin reads the table, and shows a file-only message by them).
pub fn with_files(text: &str, files: &[Attachment]) -> String {
    files::with_lines(text, files_lines(files))
}

/// The text of a message with files, out of what [`with_files`] wrote. A column that does not
/// end with its files' lines (edited by hand) is kept whole.
pub fn without_files(stored: String, files: &[Attachment]) -> String {
    if files.is_empty() {
        return stored;
    }
    let lines = files::with_lines("", files_lines(files));
    if stored == lines {
        return String::new();
    }
    match stored
        .strip_suffix(&lines)
        .and_then(|t| t.strip_suffix('\n'))
    {
        Some(text) => text.to_owned(),
        None => stored,
    }
}

fn files_lines(files: &[Attachment]) -> impl Iterator<Item = String> + '_ {
    files
        .iter()
        .map(|f| files::file_line(&f.name, f.size, None))
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
    fn files_lines_come_off_as_they_went_on() {
        let file = |name: &str| Attachment {
            id: 1,
            conversation_id: 1,
            message_id: None,
            name: name.into(),
            content_type: "image/png".into(),
            size: 2048,
            sha256: String::new(),
            width: 0,
            height: 0,
            key: String::new(),
            thumbnail: None,
            uploaded_by: "0".into(),
            created_at_ms: 0,
        };
        let files = [file("a.png"), file("b <c>.png")];
        for text in ["", "hello", "two\nlines"] {
            let stored = with_files(text, &files);
            let column = to_column(&stored);
            assert_eq!(without_files(from_column(Some(&column)), &files), text);
        }
        assert_eq!(with_files("", &files[..1]), "📎 a.png (2.0 KB)");
        assert_eq!(without_files("edited".into(), &files), "edited");
    }

    #[test]
    fn null_column_is_empty_text() {
        assert_eq!(from_column(None), "");
    }
}
