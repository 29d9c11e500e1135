//! A PNG writer of our own, independent of the decoders under test: chunks
//! with their CRC-32, zlib streams of stored (uncompressed) blocks for any
//! raw scanlines, and fixed-Huffman runs of zeros for "decompression bomb"
//! images (huge dimensions in a small file). The fuzzer keeps each PNG of
//! a fixture as a [`PngImage`] model, mutates the model or the chunks, and
//! writes the file back with valid checksums, so the decoder gets past the
//! CRC and the zlib Adler-32 to the part that matters.

/// CRC-32 (IEEE 802.3, reflected, as PNG uses it).
pub fn crc32(parts: &[&[u8]]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for p in parts {
        for &b in p.iter() {
            c ^= u32::from(b);
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
        }
    }
    c ^ 0xFFFF_FFFF
}

/// Adler-32 of `data` (zlib's trailer).
pub fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for chunk in data.chunks(5552) {
        for &x in chunk {
            a += u32::from(x);
            b += a;
        }
        a %= 65521;
        b %= 65521;
    }
    (b << 16) | a
}

/// A zlib stream of stored blocks holding `data` as it is.
pub fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let mut z = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = if data.is_empty() {
        vec![&[]]
    } else {
        data.chunks(65535).collect()
    };
    for (i, b) in blocks.iter().enumerate() {
        z.push(u8::from(i + 1 == blocks.len()));
        let len = b.len() as u16;
        z.extend_from_slice(&len.to_le_bytes());
        z.extend_from_slice(&(!len).to_le_bytes());
        z.extend_from_slice(b);
    }
    z.extend_from_slice(&adler32(data).to_be_bytes());
    z
}

/// LSB-first bit writer for deflate.
struct Bits {
    out: Vec<u8>,
    acc: u64,
    n: u32,
}

impl Bits {
    fn put(&mut self, value: u32, bits: u32) {
        self.acc |= u64::from(value) << self.n;
        self.n += bits;
        while self.n >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.n -= 8;
        }
    }
    /// A Huffman code, written most significant bit first.
    fn code(&mut self, code: u32, bits: u32) {
        let rev = code.reverse_bits() >> (32 - bits);
        self.put(rev, bits);
    }
}

/// A zlib stream of `n` zero bytes in one fixed-Huffman block: a literal 0,
/// then copies of 258 bytes at distance 1 (13 bits each), then literals.
pub fn zlib_zeros(n: u64) -> Vec<u8> {
    let mut w = Bits {
        out: vec![0x78, 0x01],
        acc: 0,
        n: 0,
    };
    w.put(1, 1); // BFINAL
    w.put(1, 2); // BTYPE = 01, fixed Huffman
    let lit0 = |w: &mut Bits| w.code(0x30, 8);
    let mut left = n;
    if left > 0 {
        lit0(&mut w);
        left -= 1;
    }
    while left >= 258 {
        w.code(0xC0 + (285 - 280), 8); // length 258
        w.code(0, 5); // distance 1
        left -= 258;
    }
    for _ in 0..left {
        lit0(&mut w);
    }
    w.code(0, 7); // end of block (256)
    if w.n > 0 {
        w.out.push(w.acc as u8);
    }
    // Adler-32 of n zeros: a = 1, b = n (mod 65521).
    let adler = (((n % 65521) as u32) << 16) | 1;
    w.out.extend_from_slice(&adler.to_be_bytes());
    w.out
}

/// One chunk: its type and data; `len` overrides the length field.
#[derive(Clone, Debug)]
pub struct Chunk {
    pub ty: [u8; 4],
    pub data: Vec<u8>,
    pub len: Option<u32>,
}

pub const SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];

/// Split a PNG into its chunks (as far as the length fields allow; what
/// does not parse is returned as the tail). `None` without the signature.
pub fn parse_chunks(bytes: &[u8]) -> Option<(Vec<Chunk>, Vec<u8>)> {
    if bytes.len() < 8 || bytes[..8] != SIGNATURE {
        return None;
    }
    let mut at = 8;
    let mut chunks = Vec::new();
    while at + 12 <= bytes.len() {
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        if at + 12 + len > bytes.len() {
            break;
        }
        let mut ty = [0u8; 4];
        ty.copy_from_slice(&bytes[at + 4..at + 8]);
        chunks.push(Chunk {
            ty,
            data: bytes[at + 8..at + 8 + len].to_vec(),
            len: None,
        });
        at += 12 + len;
    }
    Some((chunks, bytes[at..].to_vec()))
}

/// Write chunks back with fresh CRCs.
pub fn write_chunks(chunks: &[Chunk], tail: &[u8]) -> Vec<u8> {
    let mut v = SIGNATURE.to_vec();
    for c in chunks {
        v.extend_from_slice(&c.len.unwrap_or(c.data.len() as u32).to_be_bytes());
        v.extend_from_slice(&c.ty);
        v.extend_from_slice(&c.data);
        v.extend_from_slice(&crc32(&[&c.ty, &c.data]).to_be_bytes());
    }
    v.extend_from_slice(tail);
    v
}

/// Colour types of the IHDR.
pub const GRAY: u8 = 0;
pub const RGB: u8 = 2;
pub const PALETTE: u8 = 3;
pub const GRAY_ALPHA: u8 = 4;
pub const RGBA: u8 = 6;

/// A PNG as the fuzzer models it: the header fields and the raw scanlines
/// (each with its filter byte), before compression.
#[derive(Clone, Debug)]
pub struct PngImage {
    pub width: u32,
    pub height: u32,
    pub depth: u8,
    pub color: u8,
    pub interlace: u8,
    pub palette: Option<Vec<u8>>,
    pub raw: Vec<u8>,
}

fn channels(color: u8) -> usize {
    match color {
        RGB => 3,
        GRAY_ALPHA => 2,
        RGBA => 4,
        _ => 1,
    }
}

impl PngImage {
    /// Bytes of one scanline without its filter byte.
    pub fn row_bytes(width: u32, depth: u8, color: u8) -> usize {
        (width as usize * channels(color) * depth as usize).div_ceil(8)
    }

    /// An image of `h × w` samples (one value per pixel, repeated over the
    /// channels; alpha 255), packed at `depth` bits, filter 0 throughout.
    pub fn from_values(w: usize, h: usize, depth: u8, color: u8, values: &[u16]) -> Self {
        assert_eq!(values.len(), w * h);
        let ch = channels(color);
        let rb = Self::row_bytes(w as u32, depth, color);
        let mut raw = Vec::with_capacity(h * (rb + 1));
        for y in 0..h {
            raw.push(0);
            let mut row = vec![0u8; rb];
            for x in 0..w {
                for c in 0..ch {
                    let alpha = (color == GRAY_ALPHA && c == 1) || (color == RGBA && c == 3);
                    let v = if alpha {
                        u16::MAX >> (16 - depth.min(16))
                    } else {
                        values[y * w + x]
                    };
                    let s = x * ch + c;
                    match depth {
                        16 => row[2 * s..2 * s + 2].copy_from_slice(&v.to_be_bytes()),
                        8 => row[s] = v as u8,
                        d => {
                            let bit = s * d as usize;
                            let shift = 8 - d as usize - bit % 8;
                            let mask = ((1u16 << d) - 1) as u8;
                            row[bit / 8] |= ((v as u8) & mask) << shift;
                        }
                    }
                }
            }
            raw.extend_from_slice(&row);
        }
        let palette = (color == PALETTE).then(|| {
            (0..(1usize << depth.min(8)))
                .flat_map(|i| [i as u8, (i * 37) as u8, (i * 91) as u8])
                .collect()
        });
        PngImage {
            width: w as u32,
            height: h as u32,
            depth,
            color,
            interlace: 0,
            palette,
            raw,
        }
    }

    pub fn ihdr(&self) -> Vec<u8> {
        let mut d = Vec::with_capacity(13);
        d.extend_from_slice(&self.width.to_be_bytes());
        d.extend_from_slice(&self.height.to_be_bytes());
        d.extend_from_slice(&[self.depth, self.color, 0, 0, self.interlace]);
        d
    }

    pub fn chunks(&self) -> Vec<Chunk> {
        let mut v = vec![Chunk {
            ty: *b"IHDR",
            data: self.ihdr(),
            len: None,
        }];
        if let Some(p) = &self.palette {
            v.push(Chunk {
                ty: *b"PLTE",
                data: p.clone(),
                len: None,
            });
        }
        v.push(Chunk {
            ty: *b"IDAT",
            data: zlib_stored(&self.raw),
            len: None,
        });
        v.push(Chunk {
            ty: *b"IEND",
            data: Vec::new(),
            len: None,
        });
        v
    }

    pub fn encode(&self) -> Vec<u8> {
        write_chunks(&self.chunks(), &[])
    }
}

/// A valid PNG of `w × h` zero pixels whose image data is a run of zeros
/// compressed ~160:1 (at most `cap` raw bytes are written: beyond, the data
/// stops short, as a hostile file may).
pub fn zero_bomb(w: u32, h: u32, depth: u8, color: u8, cap: u64) -> Vec<u8> {
    let raw = (PngImage::row_bytes(w, depth, color) as u64 + 1).saturating_mul(u64::from(h));
    let img = PngImage {
        width: w,
        height: h,
        depth,
        color,
        interlace: 0,
        palette: (color == PALETTE).then(|| vec![0; 3 * 256]),
        raw: Vec::new(),
    };
    let mut chunks = img.chunks();
    let idat = chunks.iter_mut().find(|c| &c.ty == b"IDAT").unwrap();
    idat.data = zlib_zeros(raw.min(cap));
    write_chunks(&chunks, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_and_adler_match_published_values() {
        // The CRC of "IEND" with no data is in every PNG: AE 42 60 82.
        assert_eq!(crc32(&[b"IEND"]), 0xAE42_6082);
        assert_eq!(crc32(&[b"123456789"]), 0xCBF4_3926);
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
    }

    /// Our encodings decode with the `image` crate to the values we wrote:
    /// stored blocks, packed low bit depths, and the fixed-Huffman zeros.
    #[test]
    fn our_pngs_decode_to_what_we_wrote() {
        let vals: Vec<u16> = (0..6 * 5).map(|i| (i % 3) as u16).collect();
        for depth in [2u8, 4, 8] {
            let png = PngImage::from_values(5, 6, depth, GRAY, &vals).encode();
            let img = image::load_from_memory(&png).unwrap().to_luma8();
            assert_eq!((img.width(), img.height()), (5, 6));
            let scale = 255 / ((1u16 << depth) - 1) as u8;
            let got: Vec<u8> = img.pixels().map(|p| p.0[0] / scale).collect();
            let want: Vec<u8> = vals.iter().map(|&v| v as u8).collect();
            assert_eq!(got, want, "depth {depth}");
        }
        let mut v16 = vals.clone();
        v16[0] = 255;
        v16[1] = 40_000;
        let png = PngImage::from_values(5, 6, 16, GRAY, &v16).encode();
        let img = image::load_from_memory(&png).unwrap();
        assert!(matches!(img, image::DynamicImage::ImageLuma16(_)));
        assert_eq!(img.to_luma16().into_raw(), v16, "depth 16");
        let bomb = zero_bomb(300, 200, 8, GRAY, u64::MAX);
        assert!(bomb.len() < 2000, "{} bytes", bomb.len());
        let img = image::load_from_memory(&bomb).unwrap().to_luma8();
        assert_eq!((img.width(), img.height()), (300, 200));
        assert!(img.pixels().all(|p| p.0[0] == 0));
    }
}
