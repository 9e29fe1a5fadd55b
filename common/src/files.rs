//! How a message's files are named in text, wherever a channel has only text for them: the
//! legacy `messages.message` column (the PHP admin reads it), the legacy pages' payloads, a
//! Telegram caption. One wording everywhere, so support recognises a file whichever page
//! shows it.

/// A size as people read it: "532 B", "12 KB", "1.4 MB" (powers of 1,024, one decimal
/// under 10).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KB", "MB", "GB", "TB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if value < 10.0 {
        format!("{value:.1} {}", UNITS[unit])
    } else {
        format!("{value:.0} {}", UNITS[unit])
    }
}

/// The line that names one file: "📎 report.pdf (12 KB)", and where it can be fetched when
/// `link` is given ("📎 report.pdf (12 KB): https://…").
pub fn file_line(name: &str, size: u64, link: Option<&str>) -> String {
    match link {
        Some(link) => format!("📎 {name} ({}): {link}", human_size(size)),
        None => format!("📎 {name} ({})", human_size(size)),
    }
}

/// A message's text followed by its files' lines (each on a line of its own; no blank first
/// line when the text is empty).
pub fn with_lines(text: &str, lines: impl IntoIterator<Item = String>) -> String {
    let mut out = text.to_owned();
    for line in lines {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_say_them() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1024), "1.0 KB");
        assert_eq!(human_size(12 * 1024 + 100), "12 KB");
        assert_eq!(human_size(10 * 1024 * 1024), "10 MB");
        assert_eq!(human_size(1536 * 1024), "1.5 MB");
    }

    #[test]
    fn lines_follow_the_text() {
        let line = file_line("a.png", 2048, None);
        assert_eq!(line, "📎 a.png (2.0 KB)");
        assert_eq!(with_lines("hi", [line.clone()]), "hi\n📎 a.png (2.0 KB)");
        assert_eq!(with_lines("", [line.clone()]), line);
        assert_eq!(
            file_line("a.png", 2048, Some("https://x/f")),
            "📎 a.png (2.0 KB): https://x/f"
        );
    }
}
