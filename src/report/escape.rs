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

/// Longest stem [`file_stem`] writes before cutting it.
pub const MAX_STEM: usize = 80;

/// A file name stem for item `id`, distinct for distinct ids, also where
/// file names are compared without case:
/// - lowercase ASCII letters, digits and `_` are kept;
/// - every other byte of the UTF-8 id (uppercase letters, `-`, `.`, `/`,
///   ...) is written `-` and two lowercase hex digits (`A` → `-41`,
///   `a/b` → `a-2fb`);
/// - the empty id is `-`;
/// - a stem over [`MAX_STEM`] characters is cut there (never inside an
///   escape) and ends with `--` and 16 hex digits of the id's 64-bit hash
///   (FNV-1a); the escape never writes `--`, so a cut stem is never another
///   id's escape.
///
/// So the stem only holds `[a-z0-9_-]`: never a `.` (an item's overlay
/// `<stem>.png` never meets another's `<stem>.annotators.png`), never a
/// path separator, never a leading dot. Plain ids such as `item00002` keep
/// their names. Distinct ids get distinct stems (the escape is one-to-one),
/// except that two ids over the cut collide only when their 64-bit
/// hashes do.
pub fn file_stem(id: &str) -> String {
    if id.is_empty() {
        return "-".into();
    }
    let mut s = String::with_capacity(id.len());
    let mut cut = false;
    for &b in id.as_bytes() {
        let keep = b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_';
        let width = if keep { 1 } else { 3 };
        if s.len() + width > MAX_STEM {
            cut = true;
            break;
        }
        if keep {
            s.push(b as char);
        } else {
            s.push_str(&format!("-{b:02x}"));
        }
    }
    if cut {
        s.push_str(&format!("--{:016x}", fnv1a(id.as_bytes())));
    }
    s
}

/// 64-bit FNV-1a.
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
        assert_eq!(file_stem("a/b"), "a-2fb");
        assert_eq!(file_stem("A"), "-41");
        assert_eq!(file_stem("x.annotators"), "x-2eannotators");
        assert_eq!(file_stem("a-b"), "a-2db");
        assert_eq!(file_stem(""), "-");
        assert_eq!(file_stem("é"), "-c3-a9");
        let a = file_stem("../etc/passwd");
        assert_eq!(a, "-2e-2e-2fetc-2fpasswd");
        // The old sanitised form of `a/b` is an id of its own.
        let old = "a_b-e620c3190468cf61";
        assert_eq!(file_stem(old), "a_b-2de620c3190468cf61");
        let ids = [
            "a/b",
            old,
            "a_b",
            "x",
            "x.annotators",
            "A",
            "a",
            "a?b",
            "",
            "-",
        ];
        let stems: std::collections::HashSet<String> =
            ids.iter().map(|i| file_stem(i).to_lowercase()).collect();
        assert_eq!(stems.len(), ids.len(), "{stems:?}");
        // Long ids: cut at 80, never inside an escape, with the hash.
        let long = "x".repeat(500);
        let s = file_stem(&long);
        assert_eq!(s.len(), MAX_STEM + 2 + 16);
        assert!(s.starts_with(&"x".repeat(80)) && s[80..].starts_with("--"));
        let long2 = format!("{}y", "x".repeat(499));
        assert_ne!(file_stem(&long2), s);
        let s = file_stem(&format!("{}{}", "x".repeat(79), "/abc"));
        assert_eq!(&s[..81], &format!("{}--", "x".repeat(79)));
        // Exactly 80 characters is not cut.
        assert_eq!(file_stem(&"y".repeat(80)), "y".repeat(80));
        assert!(ids.iter().map(|i| file_stem(i)).all(|s| {
            s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        }));
    }
}
