//! Segmentation label maps: PNG, pixel value = class id.
//!
//! **Contract.** A mask is a regular file of at most [`MAX_MASK_BYTES`],
//! decoded raw with the `png` crate (no expansion, no rescaling):
//!
//! - grayscale of 1, 2, 4, 8 or 16 bits: the sample is the class id
//!   (sub-byte samples unpacked, 16-bit read big-endian, as PNG stores it);
//! - a palette PNG (1, 2, 4 or 8 bits): the palette *index* is the class id,
//!   whatever colour the palette gives it (how Pascal VOC and CVAT store
//!   masks);
//! - RGB, RGBA and grayscale + alpha are refused with an error that says
//!   what the file is (`an RGB colour PNG (8-bit, 3 channels)`), what a
//!   mask must be, and what to do: drop an alpha channel; save class ids
//!   stored as colour (every pixel R = G = B, seen when the file has the
//!   probabilities' size) as one gray channel; map a colour-coded mask to
//!   class ids first.
//!
//! The header is read first and its size checked against the
//! probabilities' `H × W` before the pixels are allocated or decoded, so a
//! small PNG declaring 20000 × 20000 pixels costs nothing. Every error names
//! the file, the item and the field (`mask`, or the first offending pixel).

use std::io::{BufReader, Read};
use std::path::Path;

use crate::error::{Error, Result};

/// The largest mask file read, in bytes (256 MiB: a 16-bit 8192 × 8192 map
/// stored uncompressed is 128 MiB).
pub const MAX_MASK_BYTES: u64 = 256 << 20;

/// Working memory the PNG decoder may use beside the pixels (its row
/// buffers, ancillary chunks), in bytes.
const DECODER_LIMIT: usize = 64 << 20;

/// Read a label map, check its size and that every value is a class id
/// (`< classes`) or `ignore_index`. The error names the file, the item and
/// the first offending pixel.
pub fn read_mask(
    path: &Path,
    item: &str,
    expect: (usize, usize),
    classes: usize,
    ignore_index: u16,
) -> Result<Vec<u16>> {
    let values = decode(path, item, expect)?;
    check_classes(&values, expect.1, classes, ignore_index, path, item)?;
    Ok(values)
}

/// A dataset's mask file for item `item`, read as [`read_mask`] does, its
/// raw values first mapped through the dataset's `label_map` when it has
/// one (Cityscapes `labelIds` to train ids; values the table does not
/// list become the ignore index).
pub fn read_dataset_mask(
    cfg: &crate::config::DatasetConfig,
    path: &Path,
    item: &str,
    expect: (usize, usize),
) -> Result<Vec<u16>> {
    let Some(map) = &cfg.label_map else {
        return read_mask(path, item, expect, cfg.num_classes(), cfg.ignore_index);
    };
    let mut values = decode(path, item, expect)?;
    for v in &mut values {
        // The table has an entry for every 16-bit value.
        *v = map.get(*v as usize).copied().unwrap_or(cfg.ignore_index);
    }
    Ok(values)
}

/// The raw values of a mask PNG, checked to be `expect` = `(H, W)` in
/// size, not yet checked as classes.
fn decode(path: &Path, item: &str, expect: (usize, usize)) -> Result<Vec<u16>> {
    let named = |msg: String| Error::input(path, msg).item(item).field("mask");
    let file = crate::fsx::open_input(path).map_err(|e| e.item(item).field("mask"))?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    if len > MAX_MASK_BYTES {
        return Err(named(format!(
            "the mask file is {len} bytes, over the limit of {MAX_MASK_BYTES} bytes \
             (docs/threat-model.md)"
        )));
    }
    let reader = BufReader::new(file.take(MAX_MASK_BYTES));
    let mut decoder = png::Decoder::new_with_limits(
        reader,
        png::Limits {
            bytes: DECODER_LIMIT,
        },
    );
    decoder.set_transformations(png::Transformations::IDENTITY);
    let cannot = |e: png::DecodingError| named(format!("cannot decode PNG: {e}"));
    let (w, h, color, depth) = {
        let info = decoder.read_header_info().map_err(cannot)?;
        (
            info.width as usize,
            info.height as usize,
            info.color_type,
            info.bit_depth,
        )
    };
    if !matches!(color, png::ColorType::Grayscale | png::ColorType::Indexed) {
        // Of the probabilities' size: look at the pixels, to tell class ids
        // saved as colour from a colour-coded mask.
        let gray = (h, w) == expect && colour_channels_equal(decoder);
        return Err(named(colour_mask(color, depth as u8, gray)));
    }
    if (h, w) != expect {
        return Err(named(format!(
            "mask is {h}x{w} (HxW) but the probabilities are {}x{}",
            expect.0, expect.1
        )));
    }
    let mut reader = decoder.read_info().map_err(cannot)?;
    let size = reader.output_buffer_size().ok_or_else(|| {
        named(format!(
            "a {w}x{h} PNG of {} bits is too large",
            depth as u8
        ))
    })?;
    // `size` is the raw rows of an image of the probabilities' size, which
    // their file holds (checked when it was opened).
    let mut raw = vec![0u8; size];
    let frame = reader.next_frame(&mut raw).map_err(cannot)?;
    let stride = frame.line_size.max(1);
    let bits = depth as u8 as usize;
    let mut values: Vec<u16> = Vec::with_capacity(h * w);
    for row in raw.chunks(stride).take(h) {
        match bits {
            16 => values.extend(
                row.chunks_exact(2)
                    .take(w)
                    .map(|b| u16::from_be_bytes([b[0], b[1]])),
            ),
            8 => values.extend(row.iter().take(w).map(|&b| u16::from(b))),
            1 | 2 | 4 => {
                let per_byte = 8 / bits;
                let mask = (1u8 << bits) - 1;
                values.extend((0..w).map(|x| {
                    let byte = row[x / per_byte];
                    let shift = 8 - bits * (x % per_byte + 1);
                    u16::from((byte >> shift) & mask)
                }));
            }
            _ => return Err(named(format!("unsupported bit depth {bits}"))),
        }
    }
    if values.len() != h * w {
        return Err(named(format!(
            "the PNG decoded to {} pixels, not {h}x{w}",
            values.len()
        )));
    }
    Ok(values)
}

/// The refusal of a colour mask PNG (`color` is RGB, RGBA or grayscale +
/// alpha; `bits` per sample): what the file is, what a mask must be, and
/// what to do. `gray`: every pixel's colour channels are equal (class ids
/// saved as colour, or a grayscale map with an alpha channel).
fn colour_mask(color: png::ColorType, bits: u8, gray: bool) -> String {
    let (what, channels) = match color {
        png::ColorType::Rgb => ("an RGB colour PNG", 3),
        png::ColorType::Rgba => ("an RGBA colour PNG", 4),
        png::ColorType::GrayscaleAlpha => ("a grayscale PNG with an alpha channel", 2),
        png::ColorType::Grayscale => ("a grayscale PNG", 1),
        png::ColorType::Indexed => ("a palette PNG", 1),
    };
    let fix = match (color, gray) {
        (png::ColorType::GrayscaleAlpha, _) => {
            "drop the alpha channel: save the gray channel alone"
        }
        (_, true) => {
            "every pixel has R = G = B, so these look like class ids saved as colour: \
             save the one channel as a grayscale PNG"
        }
        (_, false) => {
            "a colour-coded mask must be mapped to class ids first (each colour to its \
             class index), then saved as one of those"
        }
    };
    format!(
        "{what} ({bits}-bit, {channels} channels); a mask holds one class id per pixel: \
         save the class ids as a grayscale PNG (1, 2, 4, 8 or 16-bit) or a palette-indexed \
         PNG (the palette index is the class id, whatever its colour); {fix}"
    )
}

/// True when every pixel of the colour PNG behind `decoder` (its header
/// read, RGB or RGBA) has equal R, G and B samples; false for another
/// colour type or when the pixels cannot be decoded. Reads one row at a
/// time.
fn colour_channels_equal<R: std::io::BufRead + std::io::Seek>(decoder: png::Decoder<R>) -> bool {
    let Ok(mut reader) = decoder.read_info() else {
        return false;
    };
    let info = reader.info();
    let channels = match info.color_type {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        _ => return false,
    };
    let bytes = if info.bit_depth == png::BitDepth::Sixteen {
        2
    } else {
        1
    };
    let pixel = channels * bytes;
    loop {
        match reader.next_row() {
            Ok(Some(row)) => {
                let equal = row.data().chunks_exact(pixel).all(|p| {
                    p[..bytes] == p[bytes..2 * bytes] && p[..bytes] == p[2 * bytes..3 * bytes]
                });
                if !equal {
                    return false;
                }
            }
            Ok(None) => return true,
            Err(_) => return false,
        }
    }
}

/// Every value of a row-major label map `w` pixels wide is a class id
/// (`0..classes`) or `ignore_index`; else the error names `path`, the item
/// and the first offending pixel. For maps read from a PNG
/// ([`read_mask`]) and given in memory ([`crate::io::inputs::memory_mask`]).
pub fn check_classes<T: Copy + Into<i64>>(
    values: &[T],
    w: usize,
    classes: usize,
    ignore_index: u16,
    path: &Path,
    item: &str,
) -> Result<()> {
    let ignore = i64::from(ignore_index);
    let bad = |v: i64| !(0..classes as i64).contains(&v) && v != ignore;
    match values.iter().position(|&v| bad(v.into())) {
        Some(i) => Err(Error::input(
            path,
            format!(
                "class id {} out of range (class ids {}, ignore_index {ignore_index})",
                values[i].into(),
                crate::config::class_range(classes)
            ),
        )
        .item(item)
        .field(format!("pixel (x={}, y={})", i % w.max(1), i / w.max(1)))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Write a `w × h` PNG of `color` and `depth` whose rows are `rows`
    /// (already packed as PNG stores them).
    fn write_png(
        path: &Path,
        w: u32,
        h: u32,
        color: png::ColorType,
        depth: png::BitDepth,
        palette: Option<Vec<u8>>,
        data: &[u8],
    ) {
        let f = std::fs::File::create(path).unwrap();
        let mut enc = png::Encoder::new(std::io::BufWriter::new(f), w, h);
        enc.set_color(color);
        enc.set_depth(depth);
        if let Some(p) = palette {
            enc.set_palette(p);
        }
        let mut wr = enc.write_header().unwrap();
        wr.write_image_data(data).unwrap();
    }

    #[test]
    fn every_grayscale_depth_and_palettes_read_as_class_ids() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.png");
        // 1 bit, 3 × 2: rows 1 0 1 / 0 1 1, packed MSB first.
        write_png(
            &p,
            3,
            2,
            png::ColorType::Grayscale,
            png::BitDepth::One,
            None,
            &[0b1010_0000, 0b0110_0000],
        );
        assert_eq!(
            read_mask(&p, "a", (2, 3), 2, 255).unwrap(),
            [1, 0, 1, 0, 1, 1]
        );
        // 2 bits, 5 × 1: 3 2 1 0 3.
        write_png(
            &p,
            5,
            1,
            png::ColorType::Grayscale,
            png::BitDepth::Two,
            None,
            &[0b1110_0100, 0b1100_0000],
        );
        assert_eq!(read_mask(&p, "a", (1, 5), 4, 255).unwrap(), [3, 2, 1, 0, 3]);
        // 4 bits, 3 × 1: 9 0 15 (15 = ignore).
        write_png(
            &p,
            3,
            1,
            png::ColorType::Grayscale,
            png::BitDepth::Four,
            None,
            &[0x90, 0xf0],
        );
        assert_eq!(read_mask(&p, "a", (1, 3), 10, 15).unwrap(), [9, 0, 15]);
        // 16 bits, big-endian: 300 and 2.
        write_png(
            &p,
            2,
            1,
            png::ColorType::Grayscale,
            png::BitDepth::Sixteen,
            None,
            &[0x01, 0x2c, 0x00, 0x02],
        );
        assert_eq!(read_mask(&p, "a", (1, 2), 301, 1000).unwrap(), [300, 2]);
        // Palette, 8 bits: the indices, not the colours.
        write_png(
            &p,
            3,
            1,
            png::ColorType::Indexed,
            png::BitDepth::Eight,
            Some(vec![0, 0, 0, 128, 0, 0, 0, 128, 0]),
            &[2, 0, 1],
        );
        assert_eq!(read_mask(&p, "a", (1, 3), 3, 255).unwrap(), [2, 0, 1]);
    }

    #[test]
    fn colour_pngs_wrong_sizes_and_special_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("rgb.png");
        write_png(
            &p,
            1,
            1,
            png::ColorType::Rgb,
            png::BitDepth::Eight,
            None,
            &[1, 2, 3],
        );
        let e = read_mask(&p, "x", (1, 1), 4, 255).unwrap_err().to_string();
        assert!(
            e.contains("an RGB colour PNG (8-bit, 3 channels)")
                && e.contains("rgb.png")
                && e.contains("\"x\""),
            "{e}"
        );
        let e = read_mask(&p.with_file_name("none.png"), "x", (1, 1), 4, 255)
            .unwrap_err()
            .to_string();
        assert!(e.contains("none.png"), "{e}");
        #[cfg(unix)]
        {
            let e = read_mask(Path::new("/dev/zero"), "x", (1, 1), 4, 255)
                .unwrap_err()
                .to_string();
            assert!(e.contains("/dev/zero") && e.contains("device"), "{e}");
        }
        let g = dir.path().join("g.png");
        write_png(
            &g,
            2,
            1,
            png::ColorType::Grayscale,
            png::BitDepth::Eight,
            None,
            &[0, 1],
        );
        let e = read_mask(&g, "x", (2, 1), 4, 255).unwrap_err().to_string();
        assert!(e.contains("1x2 (HxW)") && e.contains("2x1"), "{e}");
    }
}
