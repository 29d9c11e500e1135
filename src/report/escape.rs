//! HTML escaping and file-name sanitising for strings that come from data.

/// Escape `s` for HTML text and for quoted attribute values: `&`, `<`, `>`,
/// `"` and `'` become character references.
pub fn html(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A file name for item `id`: ASCII letters, digits, `-`, `_` and `.` are
/// kept (at most 80 of them), anything else becomes `_`. When that changed
/// the id, a hash of the original id is appended so two ids cannot collide.
/// Never empty, never starts with a dot.
pub fn file_stem(id: &str) -> String {
    let mut s: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect();
    if s.starts_with('.') || s.is_empty() {
        s.insert(0, '_');
    }
    if s != id {
        s.push_str(&format!("-{:016x}", fnv1a(id.as_bytes())));
    }
    s
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_every_special_character() {
        assert_eq!(
            html(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(html("plain ünïcode"), "plain ünïcode");
    }

    #[test]
    fn file_stems_are_safe_and_distinct() {
        assert_eq!(file_stem("item00002"), "item00002");
        let a = file_stem("../etc/passwd");
        assert!(!a.contains('/') && !a.starts_with('.'), "{a}");
        assert_ne!(file_stem("a/b"), file_stem("a_b"));
        assert_ne!(file_stem("a/b"), file_stem("a?b"));
        assert!(file_stem("").starts_with('_'));
        assert!(file_stem(&"x".repeat(500)).len() < 120);
    }
}
