//! Label Studio's brush masks: the bit-packed run-length encoding of an
//! RGBA image that `BrushLabels` results carry in `value.rle`, bit-exact
//! with label-studio-sdk's `label_studio_sdk/converter/brush.py`.
//!
//! **Format** (thi.ng's `rle-pack`, which Label Studio's editor uses; the
//! SDK's `decode_rle` reads it, its `encode_rle` writes it). A list of
//! bytes read as one bit stream, most significant bit first:
//!
//! - header: 32 bits `num`, the number of values (an `h × w` RGBA image
//!   has `4 · h · w`); 5 bits `word_size - 1`; four times 4 bits
//!   `rle_size - 1`, the widths of the four run-length fields;
//! - then chunks until `num` values are out: 1 bit `repeat`, 2 bits `k`,
//!   `rle_sizes[k]` bits `len - 1`; a repeat chunk has one `word_size`-bit
//!   value repeated `len` times, a literal chunk `len` values of
//!   `word_size` bits each;
//! - zero bits up to the next byte (the SDK always adds 1 to 8 of them).
//!
//! The values are the image's RGBA bytes in row-major order; the mask is
//! the **alpha channel** (`reshape(h, w, 4)[:, :, 3]`, as the SDK's
//! `decode_from_annotation` and `brush_to_coco` read it; a nonzero alpha is
//! a pixel of the region).
//!
//! **Contract.** [`decode`] is the SDK's `decode_rle` followed by
//! `decode_from_annotation`'s reshape and alpha slice; [`decode_rgba`] is
//! `decode_rle` alone; [`encode`] is `mask2rle` (each pixel repeated on the
//! four channels, then `encode_rle` with word size 8 and run-length fields
//! of 3, 4, 8 and 16 bits). Same input, same bytes: checked against the SDK
//! by `tests/reference/ls_brush.rs`.
//!
//! Unlike the SDK, every input is checked: `h · w` against
//! [`MAX_PIXELS`] before anything is
//! allocated (nothing beyond `4 · h · w` bytes is), `num` must be
//! `4 · h · w`, a value must fit a byte (numpy's `uint8` refuses others
//! too), a literal chunk must not run past `num` (numpy's `IndexError`),
//! and a field the stream ends inside is an error (the SDK reads what is
//! left of it, or fails on an empty one). A repeat chunk that runs past
//! `num` is cut at `num`, as numpy's slice assignment does. Hostile input
//! gives an `Err` saying what is wrong, never a panic; the time taken is
//! bounded by `num` plus the stream's length.

use crate::io::coco_rle::MAX_PIXELS;

/// The run-length field widths the SDK's `encode_rle` (and [`encode`])
/// writes, in bits.
pub const RLE_SIZES: [u32; 4] = [3, 4, 8, 16];

/// The header's size in bits: 32 + 5 + 4 · 4.
const HEADER_BITS: u64 = 53;

/// `h · w`, refused when it overflows or exceeds [`MAX_PIXELS`].
fn pixels(h: usize, w: usize) -> Result<usize, String> {
    match h.checked_mul(w) {
        Some(n) if n <= MAX_PIXELS => Ok(n),
        Some(n) => Err(format!(
            "a {h} x {w} brush mask has {n} pixels, above the limit of {MAX_PIXELS}"
        )),
        None => Err(format!("a {h} x {w} brush mask: h * w overflows")),
    }
}

/// The bit stream of a brush RLE, read most significant bit first.
struct Bits<'a> {
    data: &'a [u8],
    pos: u64,
}

impl Bits<'_> {
    /// The next `n` bits (`1 ≤ n ≤ 32`) as an unsigned number; `Err` when
    /// the stream ends before them (`what` names the field).
    fn read(&mut self, n: u32, what: &str) -> Result<u32, String> {
        let total = self.data.len() as u64 * 8;
        let end = self.pos + u64::from(n);
        if end > total {
            return Err(format!(
                "the brush RLE ends inside {what} (a {n}-bit field at bit {}, the stream has {total} bits)",
                self.pos
            ));
        }
        let mut v: u64 = 0;
        let mut p = self.pos;
        while p < end {
            let byte = self.data[(p / 8) as usize];
            let off = (p % 8) as u32;
            let take = (8 - off).min((end - p) as u32);
            let bits = (u32::from(byte) >> (8 - off - take)) & ((1u32 << take) - 1);
            v = (v << take) | u64::from(bits);
            p += u64::from(take);
        }
        self.pos = end;
        Ok(v as u32)
    }
}

/// A brush RLE whose header is read and checked against `h × w`.
struct Stream<'a> {
    bits: Bits<'a>,
    /// The number of values, `4 · h · w`.
    num: usize,
    word: u32,
    sizes: [u32; 4],
}

impl<'a> Stream<'a> {
    /// Reads the header of `rle` for an `h × w` RGBA image: `h · w` within
    /// [`MAX_PIXELS`], `num = 4 · h · w`.
    fn open(rle: &'a [u8], h: usize, w: usize) -> Result<Self, String> {
        let n = pixels(h, w)?;
        let want = 4 * n; // ≤ 2^30
        if (rle.len() as u64) * 8 < HEADER_BITS {
            return Err(format!(
                "the brush RLE has {} bytes, fewer than its 7-byte header",
                rle.len()
            ));
        }
        let mut bits = Bits { data: rle, pos: 0 };
        let num = bits.read(32, "the header")? as usize;
        let word = bits.read(5, "the header")? + 1;
        let mut sizes = [0u32; 4];
        for s in &mut sizes {
            *s = bits.read(4, "the header")? + 1;
        }
        if num != want {
            return Err(format!(
                "the brush RLE holds {num} values, not 4 * h * w = {want} for a {h} x {w} image"
            ));
        }
        Ok(Stream {
            bits,
            num,
            word,
            sizes,
        })
    }

    /// The SDK's `decode_rle` loop: each decoded stretch goes to
    /// `put(start, end, value)` (positions among the `num` values, `start <
    /// end ≤ num`).
    fn run(mut self, put: &mut dyn FnMut(usize, usize, u8)) -> Result<(), String> {
        let num = self.num;
        let value = |v: u32, at: usize| -> Result<u8, String> {
            u8::try_from(v).map_err(|_| {
                format!("the brush RLE has value {v} at position {at}, outside a byte (0 to 255)")
            })
        };
        let mut i = 0usize;
        while i < num {
            let repeat = self.bits.read(1, "a chunk header")? == 1;
            let k = self.bits.read(2, "a chunk header")? as usize;
            let len = self.bits.read(self.sizes[k], "a chunk length")? as usize;
            let j = i + 1 + len; // ≤ 2^30 + 2^16
            if repeat {
                let v = value(self.bits.read(self.word, "a value")?, i)?;
                put(i, j.min(num), v);
                i = j;
            } else {
                while i < j {
                    let v = value(self.bits.read(self.word, "a value")?, i)?;
                    if i >= num {
                        return Err(format!(
                            "a literal chunk of the brush RLE runs past its {num} values"
                        ));
                    }
                    put(i, i + 1, v);
                    i += 1;
                }
            }
        }
        Ok(())
    }
}

/// Decodes a brush RLE to the row-major `h × w` alpha channel of its RGBA
/// image (0 outside the region; Label Studio's editor and the SDK's
/// `mask2rle` of a 0/255 mask write 255 inside it).
///
/// Mirrors label-studio-sdk's `decode_rle(rle)` reshaped to `[h, w, 4]`
/// and sliced `[:, :, 3]` (`decode_from_annotation`). Errors, with no
/// allocation beyond `h · w` bytes (checked against
/// [`MAX_PIXELS`] first), when the stream
/// is truncated, holds other than `4 · h · w` values, has a value above
/// 255 or a literal chunk past the end (see the module's contract).
pub fn decode(rle: &[u8], h: usize, w: usize) -> Result<Vec<u8>, String> {
    let stream = Stream::open(rle, h, w)?;
    let mut out = vec![0u8; stream.num / 4];
    // the alpha of pixel k is value 4k + 3: those in [s, e) are k in [s/4, e/4)
    stream.run(&mut |s, e, v| out[s / 4..e / 4].fill(v))?;
    Ok(out)
}

/// Decodes a brush RLE to its whole row-major `h × w × 4` RGBA image:
/// label-studio-sdk's `decode_rle(rle)`, checked as [`decode`] is.
pub fn decode_rgba(rle: &[u8], h: usize, w: usize) -> Result<Vec<u8>, String> {
    let stream = Stream::open(rle, h, w)?;
    let mut out = vec![0u8; stream.num];
    stream.run(&mut |s, e, v| out[s..e].fill(v))?;
    Ok(out)
}

/// Appends bits, most significant first, to bytes.
struct BitWriter {
    out: Vec<u8>,
    acc: u64,
    nacc: u32,
    bits: u64,
}

impl BitWriter {
    /// Append the low `n` bits of `v` (`n ≤ 32`).
    fn push(&mut self, v: u32, n: u32) {
        self.acc = (self.acc << n) | u64::from(v & ((1u64 << n) - 1) as u32);
        self.nacc += n;
        self.bits += u64::from(n);
        while self.nacc >= 8 {
            self.nacc -= 8;
            self.out.push((self.acc >> self.nacc) as u8);
        }
        self.acc &= (1u64 << self.nacc) - 1;
    }

    /// One repeat chunk per `encode_rle`'s thresholds, `len ≥ 2` values of
    /// `v`: lengths up to 8, 16, 256 in the 3-, 4-, 8-bit fields, longer
    /// runs in 16-bit chunks of 65536 then the rest.
    fn run(&mut self, mut len: u64, v: u8) {
        let chunk = |w: &mut Self, k: u32, bits: u32, len: u64| {
            w.push(1, 1);
            w.push(k, 2);
            w.push((len - 1) as u32, bits);
            w.push(u32::from(v), 8);
        };
        if len <= 8 {
            chunk(self, 0, 3, len);
        } else if len <= 16 {
            chunk(self, 1, 4, len);
        } else if len <= 256 {
            chunk(self, 2, 8, len);
        } else {
            while len > 1 << 16 {
                chunk(self, 3, 16, 1 << 16);
                len -= 1 << 16;
            }
            chunk(self, 3, 16, len);
        }
    }
}

/// Encodes a row-major `h × w` mask (its bytes are the alpha values: 255
/// shows the region in Label Studio) as a brush RLE, each pixel's value
/// repeated on the four RGBA channels.
///
/// Mirrors label-studio-sdk's `mask2rle(mask)` (`np.repeat(mask.ravel(),
/// 4)` then `encode_rle` with word size 8 and run-length fields of 3, 4, 8,
/// 16 bits), byte for byte, the padding included (1 to 8 zero bits, a
/// whole zero byte when the stream already ends on a byte boundary). Every
/// run is a repeat chunk: a pixel's value comes four times.
///
/// `Err` when `mask.len() != h * w`, when the mask is empty (`encode_rle`
/// fails on it) or has more than
/// [`MAX_PIXELS`] pixels.
pub fn encode(mask: &[u8], h: usize, w: usize) -> Result<Vec<u8>, String> {
    let n = pixels(h, w)?;
    if mask.len() != n {
        return Err(format!("the mask has {} values, not {h} × {w}", mask.len()));
    }
    if n == 0 {
        return Err(format!("an empty {h} x {w} mask has no brush RLE"));
    }
    let mut wr = BitWriter {
        out: Vec::new(),
        acc: 0,
        nacc: 0,
        bits: 0,
    };
    wr.push((4 * n) as u32, 32);
    wr.push(8 - 1, 5);
    for s in RLE_SIZES {
        wr.push(s - 1, 4);
    }
    let mut start = 0;
    for i in 1..=n {
        if i == n || mask[i] != mask[start] {
            wr.run(4 * (i - start) as u64, mask[start]);
            start = i;
        }
    }
    let fill = 8 - (wr.bits % 8) as u32;
    wr.push(0, fill);
    Ok(wr.out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Bits as a string, to write expected streams by hand.
    fn bytes(bits: &str) -> Vec<u8> {
        let b: Vec<u8> = bits.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
        assert_eq!(b.len() % 8, 0, "{bits}");
        b.chunks(8)
            .map(|c| c.iter().fold(0u8, |a, &x| (a << 1) | (x - b'0')))
            .collect()
    }

    /// The header for `num` values, word size 8, field widths 3, 4, 8, 16.
    fn header(num: u32) -> String {
        format!("{num:032b} 00111 0010 0011 0111 1111")
    }

    /// A 1 × 2 mask [255, 0]: values 255 ×4 then 0 ×4. Each run of 4: a
    /// repeat chunk "1", field 0 "00", length - 1 = 3 "011", the value in 8
    /// bits. 53 + 2 · 14 = 81 bits, padded with 7 zeros to 88 (11 bytes).
    #[test]
    fn hand_worked_two_pixels() {
        let want = bytes(&format!(
            "{} 1 00 011 11111111  1 00 011 00000000 0000000",
            header(8)
        ));
        assert_eq!(want.len(), 11);
        assert_eq!(encode(&[255, 0], 1, 2).unwrap(), want);
        assert_eq!(decode(&want, 1, 2).unwrap(), vec![255, 0]);
        assert_eq!(
            decode_rgba(&want, 1, 2).unwrap(),
            vec![255, 255, 255, 255, 0, 0, 0, 0]
        );
        // the same stream read as 2 x 1
        assert_eq!(decode(&want, 2, 1).unwrap(), vec![255, 0]);
        // but not as 1 x 3 (8 values, not 12)
        assert!(decode(&want, 1, 3).unwrap_err().contains("8 values"));
    }

    /// Runs of 3 pixels (12 values, field 1 of 4 bits), 5 pixels (20
    /// values, field 2 of 8 bits) and 16385 pixels (65540 values: one
    /// 16-bit chunk of 65536, then 4 in the 16-bit field too, as the SDK
    /// writes it). 53 + 15 + 19 + 27 + 27 = 141 bits, 3 zeros of padding.
    #[test]
    fn hand_worked_run_lengths() {
        let n = 3 + 5 + 16385;
        let mut mask = vec![7u8; 3];
        mask.extend([0u8; 5]);
        mask.extend(vec![1u8; 16385]);
        let want = bytes(&format!(
            "{} 1 01 1011 00000111  1 10 00010011 00000000  1 11 1111111111111111 00000001  1 11 0000000000000011 00000001 000",
            header(4 * n)
        ));
        assert_eq!(encode(&mask, 1, n as usize).unwrap(), want);
        assert_eq!(decode(&want, 1, n as usize).unwrap(), mask);
    }

    /// A stream that ends on a byte boundary gets a whole zero byte (the
    /// SDK pads with `8 - len % 8` zeros): runs of 3 pixels (12 values, a
    /// 15-bit chunk), 1 and 1 pixel (14 bits each) make 53 + 15 + 28 = 96
    /// bits, so 13 bytes, the last one 0.
    #[test]
    fn hand_worked_padding_on_a_byte_boundary() {
        let mask = [9u8, 9, 9, 0, 9];
        let out = encode(&mask, 1, 5).unwrap();
        assert_eq!(out.len(), 96 / 8 + 1);
        assert_eq!(*out.last().unwrap(), 0);
        assert_eq!(decode(&out, 1, 5).unwrap(), mask.to_vec());
    }

    /// Literal chunks (written by thi.ng's encoder in Label Studio's editor,
    /// never by the SDK's `mask2rle`): a 1 × 1 image [1, 2, 3, 4] as one
    /// literal chunk of 4 values (field 0, length - 1 = 3), word size 8.
    #[test]
    fn hand_worked_literal_chunk() {
        let s = bytes(&format!(
            "{} 0 00 011 00000001 00000010 00000011 00000100 00000",
            header(4)
        ));
        assert_eq!(decode_rgba(&s, 1, 1).unwrap(), vec![1, 2, 3, 4]);
        assert_eq!(decode(&s, 1, 1).unwrap(), vec![4]);
        // word size 2 (header 00001), values 0..3 in 2 bits; fields 1 bit wide
        let s = bytes(
            "00000000000000000000000000000100 00001 0000 0000 0000 0000 0 00 1 01 10 0 00 1 11 00 000",
        );
        // two literal chunks of 2 values each: [1, 2], [3, 0]
        assert_eq!(decode_rgba(&s, 1, 1).unwrap(), vec![1, 2, 3, 0]);
    }

    #[test]
    fn hostile_streams_are_errors() {
        let good = encode(&[255, 0], 1, 2).unwrap();
        // truncated anywhere before the last chunk's value ends
        for cut in 0..10 {
            assert!(decode(&good[..cut], 1, 2).is_err(), "cut at {cut}");
        }
        // a literal chunk past the end: 4 values expected, 5 given
        let past = bytes(&format!(
            "{} 0 01 0100 00000001 00000010 00000011 00000100 00000101 0000",
            header(4)
        ));
        assert!(decode_rgba(&past, 1, 1).is_err());
        // a repeat chunk past the end is cut, as numpy's slice is
        let cut = bytes(&format!("{} 1 00 111 00000101 00000", header(4)));
        assert_eq!(decode_rgba(&cut, 1, 1).unwrap(), vec![5; 4]);
        // a value above 255 (word size 9)
        let wide = bytes(&format!(
            "{:032b} 01000 0010 0011 0111 1111 1 00 011 100000000 0000",
            4
        ));
        assert!(decode(&wide, 1, 1).unwrap_err().contains("256"));
        // num is not 4 h w
        let s = bytes(&format!("{} 1 00 011 00000101 00000", header(5)));
        assert!(decode(&s, 1, 1).is_err());
        // sizes refused before allocating
        assert!(
            decode(&good, 1 << 20, 1 << 20)
                .unwrap_err()
                .contains("limit")
        );
        assert!(
            decode(&good, usize::MAX, 2)
                .unwrap_err()
                .contains("overflows")
        );
        // encode: wrong length, empty
        assert!(encode(&[0; 3], 2, 2).is_err());
        assert!(encode(&[], 0, 5).is_err());
        // num = 0 with h w = 0: the SDK returns an empty image
        let empty = bytes(&format!("{} 000", header(0)));
        assert_eq!(decode(&empty, 0, 7).unwrap(), Vec::<u8>::new());
    }

    proptest! {
        #[test]
        fn round_trip(h in 1usize..20, w in 1usize..20, seed in any::<u64>(), levels in 1u8..4) {
            let mut x = seed | 1;
            let mask: Vec<u8> = (0..h * w)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    [0u8, 255, 1, 128][(x % u64::from(levels + 1)) as usize % 4]
                })
                .collect();
            let rle = encode(&mask, h, w).unwrap();
            prop_assert_eq!(decode(&rle, h, w).unwrap(), mask);
        }

        #[test]
        fn any_bytes_are_an_error_or_an_image(
            data in proptest::collection::vec(any::<u8>(), 0..64),
            h in 0usize..6,
            w in 0usize..6,
        ) {
            if let Ok(m) = decode(&data, h, w) {
                prop_assert_eq!(m.len(), h * w);
            }
            // with a header that fits, so that chunks are exercised
            let mut s = bytes(&format!("{}000", header((4 * h * w) as u32)));
            s.extend(&data);
            if let Ok(m) = decode_rgba(&s, h, w) {
                prop_assert_eq!(m.len(), 4 * h * w);
            }
        }
    }
}
