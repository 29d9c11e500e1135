//! Label Studio's brush RLE (`triage::io::labelfile::ls_brush`) bit for bit
//! against label-studio-sdk's converter (`label_studio_sdk.converter.brush`),
//! both directions, computed by `py/ls_brush_ref.py` with
//! `TRIAGE_REF_PYTHON`:
//!
//! - encode: random masks of odd sizes (0/255, 0/1, several levels, long
//!   runs over 65536 values) give the same bytes as `mask2rle`, and decode
//!   back to themselves;
//! - decode: streams written the way Label Studio's editor may write them
//!   (thi.ng's encoder: literal and repeat chunks, word sizes 1 to 8, any
//!   run-length field widths, a last repeat chunk past the end) and
//!   damaged copies of them (truncated, bits flipped, bytes added) decode to
//!   what `decode_rle` gives (the RGBA buffer and its alpha channel), and
//!   every stream the SDK refuses (or reads past its end) is an error here.
//!
//! Skipped without `TRIAGE_REF_PYTHON`, a failure when `TRIAGE_REQUIRE_REF=1`.

use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use triage::io::labelfile::ls_brush::{decode, decode_rgba, encode};

const SIZES: [(usize, usize); 10] = [
    (1, 1),
    (7, 13),
    (64, 33),
    (100, 1),
    (1, 100),
    (2, 2),
    (13, 7),
    (31, 64),
    (257, 300),
    (5, 5),
];

/// A random row-major `h × w` mask: empty, full, noise, rectangles, with
/// values 0/255 (what Label Studio shows), 0/1, or several levels.
fn random_mask(rng: &mut ChaCha8Rng, h: usize, w: usize) -> Vec<u8> {
    let n = h * w;
    let levels: Vec<u8> = match rng.random_range(0..3) {
        0 => vec![0, 255],
        1 => vec![0, 1],
        _ => (0..rng.random_range(2..6)).map(|_| rng.random()).collect(),
    };
    let pick = |rng: &mut ChaCha8Rng| levels[rng.random_range(0..levels.len())];
    match rng.random_range(0..5) {
        0 => vec![levels[0]; n],
        1 => vec![levels[1]; n],
        2 => {
            let p = rng.random_range(0.0..1.0);
            (0..n)
                .map(|_| {
                    if rng.random_bool(p) {
                        levels[1]
                    } else {
                        levels[0]
                    }
                })
                .collect()
        }
        3 => (0..n).map(|_| pick(rng)).collect(),
        _ => {
            let mut m = vec![levels[0]; n];
            for _ in 0..rng.random_range(1..4) {
                let v = pick(rng);
                let (y0, x0) = (rng.random_range(0..h), rng.random_range(0..w));
                let (y1, x1) = (rng.random_range(y0..h), rng.random_range(x0..w));
                for y in y0..=y1 {
                    for x in x0..=x1 {
                        m[y * w + x] = v;
                    }
                }
            }
            m
        }
    }
}

/// Bits, most significant first.
struct Writer {
    bits: Vec<bool>,
}

impl Writer {
    fn push(&mut self, v: u64, n: u32) {
        for i in (0..n).rev() {
            self.bits.push((v >> i) & 1 == 1);
        }
    }

    fn bytes(mut self) -> Vec<u8> {
        while !self.bits.len().is_multiple_of(8) {
            self.bits.push(false);
        }
        self.bits
            .chunks(8)
            .map(|c| c.iter().fold(0u8, |a, &b| (a << 1) | b as u8))
            .collect()
    }
}

/// An independent encoder of the rle-pack format with random choices (the
/// chunking Label Studio's editor may use, and more): an RGBA image of `h ×
/// w` (the region coloured, alpha 255 inside, or random values), word size
/// 1 to 8 (the values masked to it), random field widths, repeat or literal
/// chunks of random lengths, sometimes a last repeat chunk past the end.
fn random_stream(rng: &mut ChaCha8Rng, h: usize, w: usize) -> Vec<u8> {
    let n = 4 * h * w;
    let word: u32 = if rng.random_bool(0.6) {
        8
    } else {
        rng.random_range(1..=8)
    };
    let mask = random_mask(rng, h, w);
    let color: [u8; 3] = rng.random();
    let mut values: Vec<u8> = if rng.random_bool(0.7) {
        mask.iter()
            .flat_map(|&m| {
                if m != 0 {
                    [color[0], color[1], color[2], 255]
                } else {
                    [0; 4]
                }
            })
            .collect()
    } else {
        (0..n).map(|_| rng.random()).collect()
    };
    let top = ((1u32 << word) - 1) as u8;
    for v in &mut values {
        *v &= top;
    }
    let sizes: [u32; 4] = if rng.random_bool(0.5) {
        [3, 4, 8, 16]
    } else {
        [(); 4].map(|_| rng.random_range(1..=16))
    };
    let mut wr = Writer { bits: Vec::new() };
    wr.push(n as u64, 32);
    wr.push(u64::from(word - 1), 5);
    for s in sizes {
        wr.push(u64::from(s - 1), 4);
    }
    let mut i = 0;
    while i < n {
        let k = rng.random_range(0..4usize);
        let max = 1usize << sizes[k];
        let mut run = 1;
        while i + run < n && values[i + run] == values[i] {
            run += 1;
        }
        if run >= 2 || rng.random_bool(0.2) {
            let mut len = run.min(max);
            if i + run == n && rng.random_bool(0.2) {
                len = max; // past the end: cut by the decoder
            }
            wr.push(1, 1);
            wr.push(k as u64, 2);
            wr.push((len - 1) as u64, sizes[k]);
            wr.push(u64::from(values[i]), word);
            i += len;
        } else {
            let len = rng.random_range(1..=max.min(n - i).min(40));
            wr.push(0, 1);
            wr.push(k as u64, 2);
            wr.push((len - 1) as u64, sizes[k]);
            for &v in &values[i..i + len] {
                wr.push(u64::from(v), word);
            }
            i += len;
        }
    }
    if rng.random_bool(0.3) {
        wr.push(0, rng.random_range(0..24)); // extra trailing zeros
    }
    wr.bytes()
}

/// A damaged copy of `s`: truncated, a few bits flipped, or bytes added.
fn damage(rng: &mut ChaCha8Rng, s: &[u8]) -> Vec<u8> {
    let mut d = s.to_vec();
    match rng.random_range(0..3) {
        0 => d.truncate(rng.random_range(0..s.len())),
        1 => {
            for _ in 0..rng.random_range(1..4) {
                // past the 32-bit count mostly, so that the rest is read
                let from = if rng.random_bool(0.9) { 32 } else { 0 };
                let bit = rng.random_range(from..d.len() * 8);
                d[bit / 8] ^= 0x80 >> (bit % 8);
            }
        }
        _ => d.extend((0..rng.random_range(1..5)).map(|_| rng.random::<u8>())),
    }
    d
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn ls_brush_matches_label_studio_sdk() {
    let Some(python) = std::env::var_os("TRIAGE_REF_PYTHON") else {
        assert!(
            std::env::var("TRIAGE_REQUIRE_REF").as_deref() != Ok("1"),
            "TRIAGE_REQUIRE_REF=1 but TRIAGE_REF_PYTHON is not set"
        );
        eprintln!("skipped the label-studio-sdk reference: set TRIAGE_REF_PYTHON");
        return;
    };
    let mut rng = ChaCha8Rng::seed_from_u64(28);
    let mut masks = Vec::new();
    for i in 0..400 {
        let (h, w) = if i < 3 * SIZES.len() {
            SIZES[i % SIZES.len()]
        } else {
            (rng.random_range(1..40), rng.random_range(1..40))
        };
        masks.push((h, w, random_mask(&mut rng, h, w)));
    }
    // long runs: over 65536 values (16384 pixels) in one run, and exactly
    // at the 16-bit chunk's edges
    for (h, w) in [(257, 300), (128, 128), (1, 16384), (1, 16385), (3, 21846)] {
        masks.push((h, w, vec![0; h * w]));
        let mut m = vec![255; h * w];
        m[h * w / 2] = 0;
        masks.push((h, w, m));
    }
    let mut streams = Vec::new();
    for _ in 0..600 {
        let (h, w) = (rng.random_range(1..24), rng.random_range(1..24));
        let s = random_stream(&mut rng, h, w);
        let d = damage(&mut rng, &s);
        streams.push((h, w, s));
        streams.push((h, w, d));
    }
    // our own encodings, and damaged copies of some
    for (h, w, m) in masks.iter().take(200) {
        let s = encode(m, *h, *w).unwrap();
        let d = damage(&mut rng, &s);
        streams.push((*h, *w, s));
        streams.push((*h, *w, d));
    }
    let cases = json!({
        "encode": masks.iter().map(|(h, w, m)| json!({"h": h, "w": w, "data": m})).collect::<Vec<_>>(),
        "decode": streams.iter().map(|(h, w, s)| json!({"h": h, "w": w, "rle": s})).collect::<Vec<_>>(),
    });
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("cases.json");
    std::fs::write(&file, cases.to_string()).unwrap();
    let o = std::process::Command::new(python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/py/ls_brush_ref.py"))
        .arg(&file)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let want: Value = serde_json::from_slice(&o.stdout).unwrap();

    for (i, (h, w, m)) in masks.iter().enumerate() {
        let (h, w) = (*h, *w);
        let sdk: Vec<u8> = want["encode"][i]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u8)
            .collect();
        assert_eq!(encode(m, h, w).unwrap(), sdk, "mask {i} ({h} x {w})");
        assert_eq!(
            &decode(&sdk, h, w).unwrap(),
            m,
            "mask {i}: decode(mask2rle)"
        );
    }
    let (mut ok, mut refused, mut overrun) = (0, 0, 0);
    for (i, (h, w, s)) in streams.iter().enumerate() {
        let (h, w) = (*h, *w);
        let r = &want["decode"][i];
        let ours = (decode_rgba(s, h, w), decode(s, h, w));
        if r["ok"] == true && r["overrun"] == false {
            ok += 1;
            let rgba = ours
                .0
                .unwrap_or_else(|e| panic!("stream {i} ({h} x {w}): {e}"));
            assert_eq!(hex(&rgba), r["rgba"].as_str().unwrap(), "stream {i} rgba");
            let alpha = ours.1.unwrap();
            assert_eq!(
                hex(&alpha),
                r["alpha"].as_str().unwrap(),
                "stream {i} alpha"
            );
        } else {
            if r["ok"] == true {
                overrun += 1;
            } else {
                refused += 1;
            }
            assert!(
                ours.0.is_err() && ours.1.is_err(),
                "stream {i} ({h} x {w}): the SDK gives {r}, triage decodes it"
            );
        }
    }
    // the cases must exercise both outcomes
    assert!(ok > 600 && refused > 100, "ok {ok}, refused {refused}");
    eprintln!(
        "label-studio-sdk agreed on {} masks (mask2rle, bytes) and {} streams ({ok} decoded, {refused} refused, {overrun} read past their end by the SDK, refused here)",
        masks.len(),
        streams.len()
    );
}
