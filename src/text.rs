//! Text as oapkg shows it: user and foreign text made safe to print
//! (control characters escaped, cut on character boundaries, quoted), for
//! terminals and Markdown alike, and the plural words every output uses.
//! A leaf: it knows nothing of packages, plans or state.

use std::borrow::Cow;

/// `s` with control characters (newlines, ESC, ...) written as escapes, so
/// that user or foreign text cannot start a new line or move the cursor.
pub fn escape_controls(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `s` as one word of a POSIX shell command line: as it is when it holds
/// only characters no shell treats specially, else in single quotes.
pub fn shell_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./@:=,+%".contains(c));
    if plain {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// A name as the text plan quotes it: `"SVoucher main"`, with quotes,
/// backslashes and control characters escaped.
pub fn quoted(s: &str, limit: Option<usize>) -> String {
    format!("{:?}", cut(s, limit).as_ref())
}

/// `s` cut to at most `limit` characters, ending in `…` when cut.
pub fn cut(s: &str, limit: Option<usize>) -> Cow<'_, str> {
    match limit {
        Some(limit) if s.chars().count() > limit => {
            let mut out: String = s.chars().take(limit.saturating_sub(1)).collect();
            out.push('…');
            Cow::Owned(out)
        }
        _ => Cow::Borrowed(s),
    }
}

/// `1 month`, `12 months`.
pub fn months(n: u8) -> String {
    if n == 1 {
        "1 month".to_owned()
    } else {
        format!("{n} months")
    }
}

/// User text for a table cell or a list item: Markdown and HTML are shown
/// as written, never interpreted; line breaks become spaces.
pub fn markdown(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\\' | '`' | '*' | '_' | '[' | ']' | '|' | '~' | '#' | '!' | '$' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A code span that holds `s` whatever backticks it contains (CommonMark:
/// a fence longer than any run inside, padded when `s` touches a backtick).
pub fn markdown_code(s: &str) -> String {
    let s: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let fence = "`".repeat(longest_backtick_run(&s) + 1);
    if s.starts_with('`') || s.ends_with('`') {
        format!("{fence} {s} {fence}")
    } else {
        format!("{fence}{s}{fence}")
    }
}

/// `1 package`, `2 packages`.
pub fn packages(n: usize) -> String {
    if n == 1 {
        "1 package".to_owned()
    } else {
        format!("{n} packages")
    }
}

/// The plural ending of a count: `""` for one, `"s"` otherwise.
pub fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// The longest run of backticks in `s`.
pub fn longest_backtick_run(s: &str) -> usize {
    s.split(|c| c != '`').map(str::len).max().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_text_is_cut_on_char_boundaries() {
        assert_eq!(escape_controls("a\nb\x1b[31m"), "a\\nb\\u{1b}[31m");
        assert_eq!(escape_controls("Cửa hàng"), "Cửa hàng");
        assert_eq!(cut("Cửa hàng", Some(4)), "Cửa…");
        assert_eq!(cut("abc", Some(3)), "abc");
        assert_eq!(quoted("say \"hi\"\n", None), r#""say \"hi\"\n""#);
    }
}
