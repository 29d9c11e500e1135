//! A minimal JSON writer for rows written by the hundred thousand (the
//! queue files): bytes appended to a `Vec<u8>`, exactly as `serde_json`
//! writes them — the same string escapes, the same shortest round-trip
//! float digits (`zmij`, which `serde_json` uses), the same integers
//! (`itoa`), non-finite floats as `null` — without serde's token-by-token
//! writes.
//!
//! Contract: for any value written through [`Obj`], the bytes equal
//! `serde_json::to_vec` of the same keys and values in the same order
//! (tested below against `serde_json` on strings with every escape class).

/// Append `s` as a JSON string literal (quotes included).
pub fn string(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut run = 0;
    let mut i = 0;
    while i < bytes.len() {
        // Eight bytes at a time while none needs an escape (the usual case).
        if let Some(w) = bytes.get(i..i + 8) {
            let w = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
            if !needs_escape(w) {
                i += 8;
                continue;
            }
        }
        let b = bytes[i];
        i += 1;
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x0c => b"\\f",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x00..=0x1f => {
                out.extend_from_slice(&bytes[run..i - 1]);
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(b >> 4) as usize]);
                out.push(HEX[(b & 0xf) as usize]);
                run = i;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[run..i - 1]);
        out.extend_from_slice(esc);
        run = i;
    }
    out.extend_from_slice(&bytes[run..]);
    out.push(b'"');
}

/// Whether any of the eight bytes of `w` is `"`, `\\` or below 0x20
/// (the classic "has a byte less than n" / "has a zero byte" word tests,
/// exact as to whether one exists).
#[inline]
fn needs_escape(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    (below_space | zero(w ^ (ONES * u64::from(b'"'))) | zero(w ^ (ONES * u64::from(b'\\')))) != 0
}

/// Append `v` as a JSON number, `null` when it is `None` or not finite.
pub fn float(out: &mut Vec<u8>, v: Option<f64>) {
    match v {
        Some(x) if x.is_finite() => {
            let mut b = zmij::Buffer::new();
            out.extend_from_slice(b.format_finite(x).as_bytes());
        }
        _ => out.extend_from_slice(b"null"),
    }
}

/// Append an unsigned integer.
pub fn uint(out: &mut Vec<u8>, v: u64) {
    let mut b = itoa::Buffer::new();
    out.extend_from_slice(b.format(v).as_bytes());
}

/// Append `items` as a JSON array, each written by `each`.
pub fn array<T>(
    out: &mut Vec<u8>,
    items: impl IntoIterator<Item = T>,
    mut each: impl FnMut(&mut Vec<u8>, T),
) {
    out.push(b'[');
    for (k, it) in items.into_iter().enumerate() {
        if k > 0 {
            out.push(b',');
        }
        each(out, it);
    }
    out.push(b']');
}

/// A JSON object being written: keys in call order, closed by [`Obj::end`].
pub struct Obj<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Obj<'a> {
    /// Open an object on `out`.
    pub fn new(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Obj { out, first: true }
    }

    /// Write the key and return the buffer for its value (which the caller
    /// must write, exactly one value).
    pub fn key(&mut self, k: &str) -> &mut Vec<u8> {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        string(self.out, k);
        self.out.push(b':');
        self.out
    }

    pub fn str(&mut self, k: &str, v: &str) {
        string(self.key(k), v);
    }

    /// A string, or `null`.
    pub fn opt_str(&mut self, k: &str, v: Option<&str>) {
        match v {
            Some(s) => self.str(k, s),
            None => self.key(k).extend_from_slice(b"null"),
        }
    }

    pub fn uint(&mut self, k: &str, v: u64) {
        uint(self.key(k), v);
    }

    /// An integer, or `null`.
    pub fn opt_uint(&mut self, k: &str, v: Option<u64>) {
        match v {
            Some(x) => self.uint(k, x),
            None => self.key(k).extend_from_slice(b"null"),
        }
    }

    /// A number, `null` when `None` or not finite.
    pub fn float(&mut self, k: &str, v: Option<f64>) {
        float(self.key(k), v);
    }

    pub fn bool(&mut self, k: &str, v: bool) {
        self.key(k)
            .extend_from_slice(if v { b"true" } else { b"false" });
    }

    /// Close the object.
    pub fn end(self) {
        self.out.push(b'}');
    }
}

/// A `serde_json` formatter that indents like `serde_json`'s pretty
/// printer (two spaces, `": "`) down to depth [`Layered::PRETTY_DEPTH`]
/// and writes anything deeper compactly, one value to a line: a report's
/// sections stay readable while a list of tens of thousands of records
/// (`report.json` `drift.annotators`) is a line per record, at about two
/// thirds of the pretty bytes. The value written is the same JSON: only
/// whitespace differs (tested below).
#[derive(Debug, Default)]
pub struct Layered {
    depth: usize,
    has_value: bool,
}

impl Layered {
    /// Containers opened at this depth or above (the document's top-level
    /// value is depth 1) put each member on its own indented line.
    pub const PRETTY_DEPTH: usize = 3;

    fn pretty(&self) -> bool {
        self.depth <= Self::PRETTY_DEPTH
    }

    fn newline<W: ?Sized + std::io::Write>(&self, w: &mut W, depth: usize) -> std::io::Result<()> {
        w.write_all(b"\n")?;
        for _ in 0..depth {
            w.write_all(b"  ")?;
        }
        Ok(())
    }

    fn open<W: ?Sized + std::io::Write>(&mut self, w: &mut W, b: &[u8]) -> std::io::Result<()> {
        self.depth += 1;
        self.has_value = false;
        w.write_all(b)
    }

    fn close<W: ?Sized + std::io::Write>(&mut self, w: &mut W, b: &[u8]) -> std::io::Result<()> {
        let was_pretty = self.pretty();
        self.depth -= 1;
        if was_pretty && self.has_value {
            self.newline(w, self.depth)?;
        }
        w.write_all(b)
    }

    fn member<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if !first {
            w.write_all(b",")?;
        }
        if self.pretty() {
            self.newline(w, self.depth)?;
        }
        Ok(())
    }
}

impl serde_json::ser::Formatter for Layered {
    fn begin_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.open(w, b"[")
    }
    fn end_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.close(w, b"]")
    }
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.member(w, first)
    }
    fn end_array_value<W: ?Sized + std::io::Write>(&mut self, _: &mut W) -> std::io::Result<()> {
        self.has_value = true;
        Ok(())
    }
    fn begin_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.open(w, b"{")
    }
    fn end_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.close(w, b"}")
    }
    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.member(w, first)
    }
    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(if self.pretty() { b": " } else { b":" })
    }
    fn end_object_value<W: ?Sized + std::io::Write>(&mut self, _: &mut W) -> std::io::Result<()> {
        self.has_value = true;
        Ok(())
    }
}

/// Serialise `value` into `w` with the [`Layered`] layout.
pub fn to_writer_layered<W: std::io::Write, T: serde::Serialize + ?Sized>(
    w: W,
    value: &T,
) -> serde_json::Result<()> {
    let mut ser = serde_json::Serializer::with_formatter(w, Layered::default());
    value.serialize(&mut ser)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn layered_is_pretty_above_its_depth_and_one_line_below() {
        let v = json!({"a": 1, "rows": {"list": [{"x": [1, 2], "y": {}}, {"x": [], "y": {"z": null}}], "e": []}});
        let mut out = Vec::new();
        to_writer_layered(&mut out, &v).unwrap();
        let text = String::from_utf8(out).unwrap();
        let want = "{\n  \"a\": 1,\n  \"rows\": {\n    \"list\": [\n      {\"x\":[1,2],\"y\":{}},\n      \
                    {\"x\":[],\"y\":{\"z\":null}}\n    ],\n    \"e\": []\n  }\n}";
        assert_eq!(text, want);
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, v);
        // Shallow documents are exactly serde_json's pretty printing.
        let shallow = json!({"a": [1, 2], "b": {"c": "d"}, "e": {}});
        let mut out = Vec::new();
        to_writer_layered(&mut out, &shallow).unwrap();
        assert_eq!(out, serde_json::to_vec_pretty(&shallow).unwrap());
    }

    #[test]
    fn word_test_finds_every_byte_that_needs_an_escape() {
        for b in 0u8..=255 {
            let want = b < 0x20 || b == b'"' || b == b'\\';
            for pos in 0..8 {
                for fill in [b'a', 0x7f, 0x80, 0xff, b' '] {
                    let mut w = [fill; 8];
                    w[pos] = b;
                    assert_eq!(
                        needs_escape(u64::from_le_bytes(w)),
                        want,
                        "byte {b:#x} at {pos} among {fill:#x}"
                    );
                }
            }
        }
    }

    #[test]
    fn writes_what_serde_json_writes() {
        let mut strings: Vec<String> = vec![
            String::new(),
            "plain".into(),
            "<script>alert(1)</script>".into(),
            "quote \" backslash \\ slash / tab \t nl \n cr \r".into(),
            "\u{8}\u{c}\u{0}\u{1f}\u{7f} é 猫 🐱".into(),
            "labelled \"662\" (p=0.000)".into(),
        ];
        strings.push((0u8..0x80).map(char::from).collect());
        for k in 0..20 {
            strings.push(format!(
                "{}\"{}\u{1}{}\\",
                "x".repeat(k),
                "y".repeat(17 - k % 9),
                "é".repeat(k % 5)
            ));
        }
        let floats = [
            Some(0.0),
            Some(-0.0),
            Some(1.0),
            Some(0.1),
            Some(2.6934644736797964e-8),
            Some(1e21),
            Some(123456789.125),
            Some(f64::MIN_POSITIVE),
            Some(f64::MAX),
            Some(f64::NAN),
            Some(f64::INFINITY),
            None,
        ];
        for (i, s) in strings.iter().enumerate() {
            let f = floats[i % floats.len()];
            let mut out = Vec::new();
            let mut o = Obj::new(&mut out);
            o.str("s", s);
            o.opt_str("n", None);
            o.opt_str("o", Some(s));
            o.uint("u", u64::MAX - i as u64);
            o.opt_uint("v", None);
            o.bool("b", i % 2 == 0);
            o.float("f", f);
            array(o.key("a"), &strings, |w, s| string(w, s));
            array(o.key("g"), floats, float);
            o.end();
            let want = serde_json::to_vec(&json!({
                "s": s,
                "n": null,
                "o": s,
                "u": u64::MAX - i as u64,
                "v": null,
                "b": i % 2 == 0,
                "f": f.filter(|x| x.is_finite()),
                "a": strings,
                "g": floats.iter().map(|x| x.filter(|v| v.is_finite())).collect::<Vec<_>>(),
            }))
            .unwrap();
            assert_eq!(
                String::from_utf8(out).unwrap(),
                String::from_utf8(want).unwrap(),
                "case {i}"
            );
        }
    }
}
