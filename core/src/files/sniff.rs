//! What a file is, from its first bytes, never from its name or the uploader's word; and the
//! name it is shown under, made safe.

/// How many leading bytes are enough to tell a file's type.
pub const HEAD: usize = 8192;

/// Markup: a browser would run it (HTML, SVG, XML), whatever the file is called.
pub const MARKUP: &str = "text/html";

/// The content type of a file that starts with `head` (at most [`HEAD`] bytes; `whole` when
/// that is the entire file). Known magic numbers first; then markup, which is refused by
/// default; then text, which must be UTF-8 without control characters; anything else is
/// `application/octet-stream`.
pub fn content_type(head: &[u8], whole: bool) -> String {
    if let Some(kind) = infer::get(head) {
        return kind.mime_type().to_owned();
    }
    let text = match std::str::from_utf8(head) {
        Ok(text) => text,
        // A head cut inside a character is still text.
        Err(e) if !whole && e.error_len().is_none() => {
            std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or_default()
        }
        Err(_) => return "application/octet-stream".into(),
    };
    let body = text.trim_start_matches('\u{feff}').trim_start();
    if body.starts_with('<') {
        return MARKUP.into();
    }
    let controls = text
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r' | '\u{c}'));
    if head.is_empty() || controls {
        return "application/octet-stream".into();
    }
    "text/plain".into()
}

/// The longest name a file is shown under, in characters.
pub const MAX_NAME_CHARS: usize = 200;

/// The uploader's name for a file, as it may be shown and sent in headers: the last path
/// component only, no control or bidirectional-override characters, trimmed, at most
/// [`MAX_NAME_CHARS`] characters (the extension kept when cut); "file" when nothing is left.
pub fn safe_name(given: &str) -> String {
    let last = given.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = last
        .chars()
        .filter(|c| !c.is_control() && !is_bidi_control(*c))
        .collect();
    let cleaned = cleaned.trim().trim_start_matches('.').trim();
    if cleaned.is_empty() {
        return "file".into();
    }
    if cleaned.chars().count() <= MAX_NAME_CHARS {
        return cleaned.to_owned();
    }
    let extension = cleaned
        .rsplit_once('.')
        .map(|(_, ext)| ext)
        .filter(|ext| ext.chars().count() <= 10)
        .unwrap_or_default();
    let keep = MAX_NAME_CHARS - extension.chars().count() - usize::from(!extension.is_empty());
    let stem: String = cleaned.chars().take(keep).collect();
    if extension.is_empty() {
        stem
    } else {
        format!("{stem}.{extension}")
    }
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}')
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

    #[test]
    fn types_come_from_the_content() {
        assert_eq!(content_type(PNG, false), "image/png");
        assert_eq!(content_type(b"%PDF-1.7\n", false), "application/pdf");
        assert_eq!(
            content_type(b"\xff\xd8\xff\xe0\0\x10JFIF", false),
            "image/jpeg"
        );
        assert_eq!(content_type("hello, мир\n".as_bytes(), true), "text/plain");
        assert_eq!(content_type(b"<svg onload=alert(1)>", true), MARKUP);
        assert_eq!(content_type(b"\xef\xbb\xbf  <html>", true), MARKUP);
        assert_eq!(
            content_type(b"\0\x01\x02binary", true),
            "application/octet-stream"
        );
        assert_eq!(content_type(b"", true), "application/octet-stream");
        // Cut inside a character: text still; a whole file that ends so is not.
        let cut = &"héllo".as_bytes()[..2];
        assert_eq!(content_type(cut, false), "text/plain");
        assert_eq!(content_type(cut, true), "application/octet-stream");
    }

    #[test]
    fn names_are_made_safe() {
        assert_eq!(safe_name("../../etc/passwd"), "passwd");
        assert_eq!(safe_name("C:\\Users\\me\\photo.png"), "photo.png");
        assert_eq!(safe_name("evil\u{202e}gnp.exe"), "evilgnp.exe");
        assert_eq!(safe_name("a\nb\r.txt"), "ab.txt");
        assert_eq!(safe_name("  "), "file");
        assert_eq!(safe_name(".htaccess"), "htaccess");
        assert_eq!(safe_name(""), "file");
        let long = format!("{}.pdf", "x".repeat(300));
        let safe = safe_name(&long);
        assert_eq!(safe.chars().count(), MAX_NAME_CHARS);
        assert!(safe.ends_with(".pdf"));
    }
}
