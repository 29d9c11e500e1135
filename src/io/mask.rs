//! Segmentation label maps: 8- or 16-bit grayscale PNG, pixel value = class.

use std::path::Path;

use crate::error::{Error, Result};

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
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let img =
        image::load_from_memory_with_format(&bytes, image::ImageFormat::Png).map_err(|e| {
            Error::input(path, format!("cannot decode PNG: {e}"))
                .item(item)
                .field("mask")
        })?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    let values: Vec<u16> = match img {
        image::DynamicImage::ImageLuma8(g) => g.into_raw().into_iter().map(u16::from).collect(),
        image::DynamicImage::ImageLuma16(g) => g.into_raw(),
        other => {
            return Err(Error::input(
                path,
                format!(
                    "mask must be an 8- or 16-bit grayscale PNG, found {:?}",
                    other.color()
                ),
            )
            .item(item)
            .field("mask"));
        }
    };
    if (h, w) != expect {
        return Err(Error::input(
            path,
            format!(
                "mask is {h}x{w} (HxW) but the probabilities are {}x{}",
                expect.0, expect.1
            ),
        )
        .item(item)
        .field("mask"));
    }
    if let Some(i) = values
        .iter()
        .position(|&v| v as usize >= classes && v != ignore_index)
    {
        return Err(Error::input(
            path,
            format!(
                "class id {} out of range (0..{classes}, ignore_index {ignore_index})",
                values[i]
            ),
        )
        .item(item)
        .field(format!("pixel (x={}, y={})", i % w, i / w)));
    }
    Ok(values)
}
