//! COCO instances or stuff JSON (`[inputs] coco = "instances.json"`): the
//! format of `instances_train2017.json`, as pycocotools' `COCO` reads it.
//!
//! **Contract.** [`parse`] reads the file's `images` (`id`, an integer;
//! `file_name`; `height`; `width`), `categories` (`id`, `name`) and
//! `annotations` (`id`, `image_id`, `category_id`, `segmentation`,
//! `iscrowd` 0 or 1 (default 0), and the non-standard `annotator`, a string
//! or an integer) into a [`Doc`]; other keys are ignored.
//!
//! - [`Doc::categories`] are the file's categories sorted by id.
//! - An annotation's `segmentation` is a region ([`DocRegion`], over the
//!   whole image) when it is a list of polygons (rasterised and merged as
//!   `COCO.annToRLE` does, [`coco_rle::from_polygons`]), an uncompressed
//!   RLE `{"size": [h, w], "counts": [...]}` ([`coco_rle::from_uncompressed`])
//!   or a compressed one, `counts` a string ([`coco_rle::from_string`]); an
//!   RLE's `size` must be the image's `[height, width]`. An annotation with
//!   no `segmentation` (absent, `null` or `[]`) is an image-level tag
//!   (classification).
//! - An image's annotations are grouped into one [`DocAnnotation`] per
//!   distinct `annotator` (in order of first appearance; `None` when the
//!   field is absent), each keeping the file's order of its regions and
//!   tags. An image with no annotation has one [`DocAnnotation`] with no
//!   region (COCO: all of it uncovered). `official` is always `Some(0)`.
//! - [`DocImage::key`] is the image id as text; `file_name` is as given.
//!
//! Every error names the file, the item (the image's `file_name`, or
//! `annotation <id>`) and the field (`images[3].height`,
//! `annotations[12].segmentation`); a value of the wrong type names where
//! it sits and serde_json's line and column. Image sizes are checked
//! (at least 1 × 1, at most [`coco_rle::MAX_PIXELS`]) before any mask is
//! made; every list is bounded by the file's size. Never panics.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

use super::{Category, Doc, DocAnnotation, DocImage, DocRegion, bad};
use crate::error::{Error, Result};
use crate::io::coco_rle::{self, MAX_PIXELS};

/// The file as read, before any check but the JSON types.
#[derive(Deserialize)]
#[serde(expecting = "a COCO object with `images`, `annotations` and `categories`")]
struct RawFile {
    images: Option<Vec<RawImage>>,
    annotations: Option<Vec<RawAnnotation>>,
    categories: Option<Vec<RawCategory>>,
}

#[derive(Deserialize)]
#[serde(expecting = "an image object (`id`, `file_name`, `height`, `width`)")]
struct RawImage {
    id: Option<i64>,
    file_name: Option<String>,
    height: Option<u64>,
    width: Option<u64>,
}

#[derive(Deserialize)]
#[serde(expecting = "a category object (`id`, `name`)")]
struct RawCategory {
    id: Option<i64>,
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(expecting = "an annotation object (`id`, `image_id`, `category_id`, ...)")]
struct RawAnnotation {
    id: Option<i64>,
    image_id: Option<i64>,
    category_id: Option<i64>,
    segmentation: Option<Segmentation>,
    iscrowd: Option<u64>,
    annotator: Option<Annotator>,
}

/// An annotation's `segmentation`, in one of COCO's three forms.
enum Segmentation {
    /// A list of polygons, each `[x0, y0, x1, y1, ...]` in pixels.
    Polygons(Vec<Vec<f64>>),
    /// RLE, uncompressed (`counts` a list) or compressed (a string).
    Rle {
        size: Option<Vec<u64>>,
        counts: Option<Counts>,
    },
}

enum Counts {
    Runs(Vec<u64>),
    Text(String),
}

#[derive(Deserialize)]
#[serde(expecting = "an RLE object (`size`, `counts`)")]
struct RawRle {
    size: Option<Vec<u64>>,
    counts: Option<Counts>,
}

impl<'de> Deserialize<'de> for Segmentation {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Segmentation;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of polygons or an RLE object {\"size\", \"counts\"}")
            }
            fn visit_seq<A: SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<Self::Value, A::Error> {
                let mut polys = Vec::new();
                while let Some(p) = seq.next_element::<Vec<f64>>()? {
                    polys.push(p);
                }
                Ok(Segmentation::Polygons(polys))
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                map: A,
            ) -> std::result::Result<Self::Value, A::Error> {
                let r = RawRle::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(Segmentation::Rle {
                    size: r.size,
                    counts: r.counts,
                })
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Counts {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Counts;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("RLE counts: a list of run lengths or a compressed string")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> std::result::Result<Self::Value, E> {
                Ok(Counts::Text(s.to_string()))
            }
            fn visit_string<E: de::Error>(self, s: String) -> std::result::Result<Self::Value, E> {
                Ok(Counts::Text(s))
            }
            fn visit_seq<A: SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<Self::Value, A::Error> {
                let mut runs = Vec::new();
                while let Some(c) = seq.next_element::<u64>()? {
                    runs.push(c);
                }
                Ok(Counts::Runs(runs))
            }
        }
        d.deserialize_any(V)
    }
}

/// The non-standard `annotator` field: a string, or an integer (a user id)
/// kept as its decimal text.
struct Annotator(String);

impl<'de> Deserialize<'de> for Annotator {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Annotator;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an annotator name (a string) or id (an integer)")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> std::result::Result<Self::Value, E> {
                Ok(Annotator(s.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<Self::Value, E> {
                Ok(Annotator(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<Self::Value, E> {
                Ok(Annotator(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// The JSON, typed; a failure names where it sits (`annotations[3].iscrowd`)
/// and serde_json's line and column.
fn read_json(path: &Path, bytes: &[u8]) -> Result<RawFile> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let raw: RawFile = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let at = e.path().to_string();
        let inner = e.into_inner();
        let msg = if inner.is_syntax() || inner.is_eof() {
            format!("not valid JSON: {inner}")
        } else {
            inner.to_string()
        };
        let e = Error::input(path, msg);
        if at == "." {
            e.field("coco")
        } else {
            e.field(at)
        }
    })?;
    de.end()
        .map_err(|e| Error::input(path, format!("not valid JSON: {e}")).field("coco"))?;
    Ok(raw)
}

/// Parse a COCO labels file (its bytes, read by [`super::parse`]); see the
/// module documentation for what is read and checked.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Doc> {
    let raw = read_json(path, bytes)?;
    let missing = |key: &str, what: &str| {
        bad(
            path,
            None,
            key,
            format!("the file has no `{key}` list ({what}); is it a COCO instances file?"),
        )
    };
    let raw_images = raw.images.ok_or_else(|| missing("images", "the images"))?;
    let raw_cats = raw
        .categories
        .ok_or_else(|| missing("categories", "the classes"))?;
    let raw_anns = raw
        .annotations
        .ok_or_else(|| missing("annotations", "the labels"))?;

    // Categories, sorted by id.
    let mut cats: Vec<(i64, String, usize)> = Vec::with_capacity(raw_cats.len());
    for (k, c) in raw_cats.into_iter().enumerate() {
        let field = |f: &str| format!("categories[{k}].{f}");
        let id =
            c.id.ok_or_else(|| bad(path, None, &field("id"), "a category has no `id`"))?;
        let name = c.name.ok_or_else(|| {
            bad(
                path,
                None,
                &field("name"),
                format!("category {id} has no `name`"),
            )
        })?;
        cats.push((id, name, k));
    }
    cats.sort_by_key(|c| c.0);
    if let Some(w) = cats.windows(2).find(|w| w[0].0 == w[1].0) {
        let (first, second) = (w[0].2.min(w[1].2), w[0].2.max(w[1].2));
        return Err(bad(
            path,
            None,
            &format!("categories[{second}].id"),
            format!(
                "category id {} appears twice (categories[{first}] {:?} and categories[{second}] {:?})",
                w[0].0, w[0].1, w[1].1
            ),
        ));
    }
    let cat_index: HashMap<i64, usize> = cats.iter().enumerate().map(|(i, c)| (c.0, i)).collect();
    let categories: Vec<Category> = cats
        .into_iter()
        .map(|(id, name, _)| Category { id, name })
        .collect();

    // Images, in file order; sizes checked before any mask is made.
    let mut images: Vec<DocImage> = Vec::with_capacity(raw_images.len());
    let mut index: HashMap<i64, usize> = HashMap::with_capacity(raw_images.len());
    for (k, im) in raw_images.into_iter().enumerate() {
        let field = |f: &str| format!("images[{k}].{f}");
        let Some(file_name) = im.file_name else {
            let item = im.id.map(|id| format!("image {id}"));
            return Err(bad(
                path,
                item.as_deref(),
                &field("file_name"),
                "an image has no `file_name`",
            ));
        };
        let item = Some(file_name.as_str());
        let id = im
            .id
            .ok_or_else(|| bad(path, item, &field("id"), "the image has no `id`"))?;
        let height = im
            .height
            .ok_or_else(|| bad(path, item, &field("height"), "the image has no `height`"))?;
        let width = im
            .width
            .ok_or_else(|| bad(path, item, &field("width"), "the image has no `width`"))?;
        for (v, f) in [(height, "height"), (width, "width")] {
            if v == 0 {
                return Err(bad(
                    path,
                    item,
                    &field(f),
                    format!("the image is {height} x {width} pixels: an image has at least one"),
                ));
            }
        }
        let (h, w) = match (usize::try_from(height), usize::try_from(width)) {
            (Ok(h), Ok(w)) if h.checked_mul(w).is_some_and(|n| n <= MAX_PIXELS) => (h, w),
            _ => {
                return Err(bad(
                    path,
                    item,
                    &format!("images[{k}]"),
                    format!(
                        "the image is {height} x {width} pixels, above the limit of {MAX_PIXELS} \
                         pixels"
                    ),
                ));
            }
        };
        if let Some(prev) = index.insert(id, k) {
            return Err(bad(
                path,
                item,
                &field("id"),
                format!(
                    "image id {id} appears twice (images[{prev}] {:?} and images[{k}])",
                    images[prev].file_name
                ),
            ));
        }
        images.push(DocImage {
            key: id.to_string(),
            file_name,
            item: None,
            height: h,
            width: w,
            annotations: Vec::new(),
            official: Some(0),
        });
    }

    // Annotations, each onto its image, grouped by annotator.
    for (k, a) in raw_anns.into_iter().enumerate() {
        let field = |f: &str| format!("annotations[{k}].{f}");
        let id =
            a.id.ok_or_else(|| bad(path, None, &field("id"), "an annotation has no `id`"))?;
        let item = format!("annotation {id}");
        let item = Some(item.as_str());
        let image_id = a.image_id.ok_or_else(|| {
            bad(
                path,
                item,
                &field("image_id"),
                "the annotation has no `image_id`",
            )
        })?;
        let &img = index.get(&image_id).ok_or_else(|| {
            bad(
                path,
                item,
                &field("image_id"),
                format!("image_id {image_id} is the id of no image in `images`"),
            )
        })?;
        let category_id = a.category_id.ok_or_else(|| {
            bad(
                path,
                item,
                &field("category_id"),
                "the annotation has no `category_id`",
            )
        })?;
        let &category = cat_index.get(&category_id).ok_or_else(|| {
            bad(
                path,
                item,
                &field("category_id"),
                format!("category_id {category_id} is the id of no category in `categories`"),
            )
        })?;
        let crowd = match a.iscrowd {
            None | Some(0) => false,
            Some(1) => true,
            Some(v) => {
                return Err(bad(
                    path,
                    item,
                    &field("iscrowd"),
                    format!("iscrowd is {v}, not 0 or 1"),
                ));
            }
        };
        let image = &mut images[img];
        let (h, w) = (image.height, image.width);
        let rle = match a.segmentation {
            None => None,
            Some(Segmentation::Polygons(p)) if p.is_empty() => None,
            Some(Segmentation::Polygons(p)) => {
                Some(coco_rle::from_polygons(&p, h, w).map_err(|m| {
                    bad(
                        path,
                        item,
                        &field("segmentation"),
                        format!(
                            "bad polygons on the {h} x {w} image {:?}: {m}",
                            image.file_name
                        ),
                    )
                })?)
            }
            Some(Segmentation::Rle { size, counts }) => {
                let size = size.ok_or_else(|| {
                    bad(
                        path,
                        item,
                        &field("segmentation.size"),
                        "an RLE segmentation has no `size`",
                    )
                })?;
                if size[..] != [h as u64, w as u64] {
                    return Err(bad(
                        path,
                        item,
                        &field("segmentation.size"),
                        format!(
                            "RLE size {size:?} is not the image's [height, width], [{h}, {w}] \
                             ({:?})",
                            image.file_name
                        ),
                    ));
                }
                let counts = counts.ok_or_else(|| {
                    bad(
                        path,
                        item,
                        &field("segmentation.counts"),
                        "an RLE segmentation has no `counts`",
                    )
                })?;
                let rle = match &counts {
                    Counts::Runs(c) => coco_rle::from_uncompressed(c, h, w),
                    Counts::Text(s) => coco_rle::from_string(s, h, w),
                };
                Some(rle.map_err(|m| {
                    bad(
                        path,
                        item,
                        &field("segmentation.counts"),
                        format!("bad RLE: {m}"),
                    )
                })?)
            }
        };
        let annotator = a.annotator.map(|a| a.0);
        let g = match image
            .annotations
            .iter()
            .position(|g| g.annotator == annotator)
        {
            Some(g) => g,
            None => {
                image.annotations.push(DocAnnotation {
                    annotator,
                    regions: Vec::new(),
                    tags: Vec::new(),
                });
                image.annotations.len() - 1
            }
        };
        let group = &mut image.annotations[g];
        match rle {
            Some(rle) => group.regions.push(DocRegion {
                category,
                crowd,
                rle,
            }),
            None => group.tags.push(category),
        }
    }
    for image in &mut images {
        if image.annotations.is_empty() {
            image.annotations.push(DocAnnotation {
                annotator: None,
                regions: Vec::new(),
                tags: Vec::new(),
            });
        }
    }
    Ok(Doc { categories, images })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::coco_rle::decode;
    use serde_json::json;

    fn p() -> &'static Path {
        Path::new("instances.json")
    }

    fn parse_value(v: &serde_json::Value) -> Result<Doc> {
        parse(p(), v.to_string().as_bytes())
    }

    /// Row-major 0/1 pixels from rows of '0'/'1'.
    fn pixels(rows: &[&str]) -> Vec<u8> {
        rows.iter()
            .flat_map(|r| r.bytes().map(|b| b - b'0'))
            .collect()
    }

    fn image(id: i64, name: &str, h: u64, w: u64) -> serde_json::Value {
        json!({"id": id, "file_name": name, "height": h, "width": w, "license": 3})
    }

    fn base() -> serde_json::Value {
        json!({
            "info": {"year": 2017},
            "images": [image(7, "a/b.jpg", 4, 5), image(3, "c.png", 3, 2), image(9, "empty.jpg", 2, 2)],
            "categories": [
                {"id": 18, "name": "dog", "supercategory": "animal"},
                {"id": 1, "name": "person"},
                {"id": 5, "name": "car"},
            ],
            "annotations": [],
        })
    }

    fn with_anns(anns: serde_json::Value) -> serde_json::Value {
        let mut v = base();
        v["annotations"] = anns;
        v
    }

    #[test]
    fn the_three_segmentation_forms_decode_as_pycocotools_does() {
        // Expected masks: pycocotools 2.0 `annToMask` on the same annotations.
        let v = with_anns(json!([
            {"id": 1, "image_id": 7, "category_id": 18, "iscrowd": 0, "area": 4.0, "bbox": [1, 1, 2, 2],
             "segmentation": [[1, 1, 3, 1, 3, 3, 1, 3]]},
            {"id": 2, "image_id": 7, "category_id": 1,
             "segmentation": [[0, 0, 5, 0, 0, 4]]},
            {"id": 3, "image_id": 3, "category_id": 5, "iscrowd": 1,
             "segmentation": {"size": [3, 2], "counts": [1, 2, 0, 3]}},
            {"id": 4, "image_id": 7, "category_id": 5, "iscrowd": 0,
             "segmentation": {"size": [4, 5], "counts": "3111103ON"}},
        ]));
        let doc = parse_value(&v).unwrap();
        let names: Vec<(i64, &str)> = doc
            .categories
            .iter()
            .map(|c| (c.id, c.name.as_str()))
            .collect();
        assert_eq!(names, [(1, "person"), (5, "car"), (18, "dog")]);
        let a = &doc.images[0];
        assert_eq!(
            (a.key.as_str(), a.file_name.as_str(), a.height, a.width),
            ("7", "a/b.jpg", 4, 5)
        );
        assert_eq!(a.official, Some(0));
        assert_eq!(a.annotations.len(), 1);
        let r = &a.annotations[0].regions;
        assert_eq!(
            r.iter().map(|r| (r.category, r.crowd)).collect::<Vec<_>>(),
            [(2, false), (0, false), (1, false)]
        );
        assert_eq!(
            decode(&r[0].rle).unwrap(),
            pixels(&["00000", "01100", "01100", "00000"])
        );
        assert_eq!(
            decode(&r[1].rle).unwrap(),
            pixels(&["11110", "11100", "11000", "10000"])
        );
        assert_eq!(
            decode(&r[2].rle).unwrap(),
            pixels(&["00001", "01100", "01100", "10000"])
        );
        let b = &doc.images[1];
        assert_eq!((b.key.as_str(), b.height, b.width), ("3", 3, 2));
        let r = &b.annotations[0].regions;
        assert_eq!((r[0].category, r[0].crowd), (1, true));
        assert_eq!(decode(&r[0].rle).unwrap(), pixels(&["01", "11", "11"]));
        // No annotation: one annotation, no region, no tag.
        let c = &doc.images[2];
        assert_eq!(
            c.annotations,
            [DocAnnotation {
                annotator: None,
                regions: vec![],
                tags: vec![]
            }]
        );
        assert_eq!(c.official, Some(0));
    }

    #[test]
    fn no_segmentation_is_a_tag_and_annotators_group_in_order_of_appearance() {
        let v = with_anns(json!([
            {"id": 10, "image_id": 3, "category_id": 18, "annotator": "bo"},
            {"id": 11, "image_id": 3, "category_id": 1, "annotator": 42, "segmentation": null},
            {"id": 12, "image_id": 3, "category_id": 5, "annotator": "bo", "segmentation": []},
            {"id": 13, "image_id": 3, "category_id": 1, "annotator": "bo",
             "segmentation": {"size": [3, 2], "counts": [6]}},
            {"id": 14, "image_id": 3, "category_id": 5,
             "segmentation": {"size": [3, 2], "counts": [0, 6]}},
            {"id": 15, "image_id": 3, "category_id": 18, "annotator": "42"},
            {"id": 16, "image_id": 7, "category_id": 18},
        ]));
        let doc = parse_value(&v).unwrap();
        let c = &doc.images[1].annotations;
        assert_eq!(
            c.iter().map(|a| a.annotator.as_deref()).collect::<Vec<_>>(),
            [Some("bo"), Some("42"), None]
        );
        assert_eq!(c[0].tags, [2, 1]);
        assert_eq!(c[0].regions.len(), 1);
        assert_eq!(decode(&c[0].regions[0].rle).unwrap(), vec![0; 6]);
        // The integer 42 and the string "42" are the same annotator.
        assert_eq!(c[1].tags, [0, 2]);
        assert!(c[1].regions.is_empty());
        assert_eq!(c[2].tags, Vec::<usize>::new());
        assert_eq!(decode(&c[2].regions[0].rle).unwrap(), vec![1; 6]);
        let a = &doc.images[0].annotations;
        assert_eq!(a.len(), 1);
        assert_eq!(
            (a[0].annotator.as_deref(), &a[0].tags[..]),
            (None, &[2][..])
        );
        assert!(doc.images.iter().all(|i| i.official == Some(0)));
    }

    /// `parse` fails with a message naming the file, and every `needles`.
    fn fails(v: &[u8], needles: &[&str]) {
        let e = parse(p(), v).unwrap_err().to_string();
        assert!(e.starts_with("instances.json: "), "{e}");
        for n in needles {
            assert!(e.contains(n), "{n:?} not in: {e}");
        }
    }

    fn fails_v(v: serde_json::Value, needles: &[&str]) {
        fails(v.to_string().as_bytes(), needles);
    }

    #[test]
    fn malformed_json_names_line_and_column() {
        fails(
            b"{\"images\": [\n  {\"id\": 1,, }]}",
            &["not valid JSON", "line 2 column 12"],
        );
        fails(b"", &["not valid JSON", "EOF"]);
        fails(b"\"x\"", &["expected a COCO object"]);
        fails(
            format!("{} trailing", base()).as_bytes(),
            &["not valid JSON", "trailing"],
        );
        // Deep nesting in an ignored key is skipped without recursion (no
        // stack overflow); in a read one it is a type error.
        let deep = format!(
            "{{\"images\": [], \"x\": {}{}}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        fails(deep.as_bytes(), &["no `categories` list"]);
        let deep = format!(
            "{{\"images\": [{{\"id\": {}{}}}]}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        fails(deep.as_bytes(), &["images[0].id", "invalid type: sequence"]);
        // A UTF-8 byte-order mark is skipped.
        let mut bom = b"\xef\xbb\xbf".to_vec();
        bom.extend_from_slice(base().to_string().as_bytes());
        assert_eq!(parse(p(), &bom).unwrap().images.len(), 3);
    }

    #[test]
    fn wrong_types_name_the_field() {
        let mut v = with_anns(json!([
            {"id": 1, "image_id": 7, "category_id": 1},
            {"id": 2, "image_id": "7", "category_id": 1},
        ]));
        fails_v(
            v.clone(),
            &["annotations[1].image_id", "invalid type: string \"7\""],
        );
        v["annotations"][1]["image_id"] = json!(7);
        v["annotations"][1]["segmentation"] = json!({"size": [4, 5], "counts": [1, -2]});
        fails_v(
            v.clone(),
            &["annotations[1].segmentation.counts[1]", "line 1 column"],
        );
        v["annotations"][1]["segmentation"] = json!([[1, 2, "x"]]);
        fails_v(v.clone(), &["annotations[1].segmentation[0][2]"]);
        v["annotations"][1]["segmentation"] = json!(3);
        fails_v(
            v.clone(),
            &["annotations[1].segmentation", "list of polygons"],
        );
        v["annotations"][1]["segmentation"] = json!({"size": [4, 5], "counts": true});
        fails_v(
            v.clone(),
            &["annotations[1].segmentation.counts", "run lengths"],
        );
        v["annotations"][1]["segmentation"] = json!([]);
        v["annotations"][1]["annotator"] = json!(1.5);
        fails_v(v.clone(), &["annotations[1].annotator", "annotator name"]);
        v["annotations"][1]["annotator"] = json!("x");
        v["annotations"][1]["iscrowd"] = json!(-1);
        fails_v(v.clone(), &["annotations[1].iscrowd"]);
        let mut v = base();
        v["images"][1]["height"] = json!(3.5);
        fails_v(v, &["images[1].height", "floating point"]);
        let mut v = base();
        v["images"] = json!({});
        fails_v(v, &["images", "expected a sequence"]);
    }

    #[test]
    fn missing_fields_are_named() {
        for key in ["images", "categories", "annotations"] {
            let mut v = base();
            v.as_object_mut().unwrap().shift_remove(key);
            fails_v(v, &[key, "has no"]);
        }
        for (key, needles) in [
            ("id", &["\"a/b.jpg\"", "images[0].id", "no `id`"][..]),
            ("file_name", &["\"image 7\"", "images[0].file_name"]),
            ("height", &["\"a/b.jpg\"", "images[0].height"]),
            ("width", &["\"a/b.jpg\"", "images[0].width"]),
        ] {
            let mut v = base();
            v["images"][0].as_object_mut().unwrap().shift_remove(key);
            fails_v(v, needles);
        }
        for (key, needle) in [("id", "categories[1].id"), ("name", "categories[1].name")] {
            let mut v = base();
            v["categories"][1]
                .as_object_mut()
                .unwrap()
                .shift_remove(key);
            fails_v(v, &[needle]);
        }
        let ann = json!({"id": 5, "image_id": 7, "category_id": 1});
        assert!(parse_value(&with_anns(json!([ann.clone()]))).is_ok());
        for key in ["id", "image_id", "category_id"] {
            let mut a = ann.clone();
            a.as_object_mut().unwrap().shift_remove(key);
            let item = if key == "id" { "" } else { "\"annotation 5\"" };
            fails_v(
                with_anns(json!([ann.clone(), a])),
                &[&format!("annotations[1].{key}"), item],
            );
        }
        for (seg, field) in [
            (json!({"counts": [20]}), "annotations[0].segmentation.size"),
            (
                json!({"size": [4, 5]}),
                "annotations[0].segmentation.counts",
            ),
        ] {
            let mut a = ann.clone();
            a["segmentation"] = seg;
            fails_v(with_anns(json!([a])), &["\"annotation 5\"", field, "no `"]);
        }
    }

    #[test]
    fn unknown_and_duplicate_ids() {
        fails_v(
            with_anns(json!([{"id": 5, "image_id": 8, "category_id": 1}])),
            &[
                "\"annotation 5\"",
                "annotations[0].image_id",
                "image_id 8 is the id of no image",
            ],
        );
        fails_v(
            with_anns(json!([{"id": 5, "image_id": 7, "category_id": 2}])),
            &[
                "\"annotation 5\"",
                "annotations[0].category_id",
                "category_id 2 is the id of no category",
            ],
        );
        let mut v = base();
        v["images"][2]["id"] = json!(7);
        fails_v(
            v,
            &[
                "\"empty.jpg\"",
                "images[2].id",
                "image id 7 appears twice (images[0] \"a/b.jpg\" and images[2])",
            ],
        );
        let mut v = base();
        v["categories"][2]["id"] = json!(18);
        fails_v(
            v,
            &[
                "categories[2].id",
                "category id 18 appears twice (categories[0] \"dog\" and categories[2] \"car\")",
            ],
        );
    }

    #[test]
    fn image_sizes_are_checked_before_any_mask() {
        for (h, w, needles) in [
            (0u64, 5u64, &["images[0].height", "0 x 5"][..]),
            (4, 0, &["images[0].width", "4 x 0"]),
            (
                1 << 15,
                1 << 14,
                &["images[0]", "32768 x 16384", "above the limit"],
            ),
            (u64::MAX, u64::MAX, &["above the limit"]),
        ] {
            let mut v = with_anns(json!([
                {"id": 1, "image_id": 7, "category_id": 1, "segmentation": {"size": [h, w], "counts": [0]}},
            ]));
            v["images"][0]["height"] = json!(h);
            v["images"][0]["width"] = json!(w);
            let mut needles = needles.to_vec();
            needles.push("\"a/b.jpg\"");
            fails_v(v, &needles);
        }
        // The largest allowed size passes (no mask is made for it here).
        let mut v = base();
        v["images"][0]["height"] = json!(1 << 14);
        v["images"][0]["width"] = json!(1 << 14);
        assert_eq!(parse_value(&v).unwrap().images[0].height, 1 << 14);
    }

    #[test]
    fn bad_rle_and_polygons_are_named() {
        let one = |seg: serde_json::Value, needles: &[&str]| {
            let v = with_anns(json!([
                {"id": 1, "image_id": 7, "category_id": 1},
                {"id": 31, "image_id": 7, "category_id": 1, "segmentation": seg},
            ]));
            let mut n = vec!["\"annotation 31\""];
            n.extend_from_slice(needles);
            fails_v(v, &n);
        };
        one(
            json!({"size": [4, 5], "counts": [3, 4]}),
            &[
                "annotations[1].segmentation.counts",
                "sum to 7, not h * w = 20",
            ],
        );
        one(
            json!({"size": [4, 5], "counts": [30, 4]}),
            &["annotations[1].segmentation.counts", "more than h * w = 20"],
        );
        one(
            json!({"size": [4, 5], "counts": "3111103O"}),
            &["annotations[1].segmentation.counts", "bad RLE"],
        );
        one(
            json!({"size": [4, 5], "counts": "3111103ON~"}),
            &[
                "annotations[1].segmentation.counts",
                "outside the characters '0' to 'o'",
            ],
        );
        one(
            json!({"size": [5, 4], "counts": [20]}),
            &[
                "annotations[1].segmentation.size",
                "RLE size [5, 4] is not the image's [height, width], [4, 5]",
            ],
        );
        one(
            json!({"size": [4, 5, 1], "counts": [20]}),
            &["annotations[1].segmentation.size"],
        );
        one(
            json!({"size": [], "counts": [20]}),
            &["annotations[1].segmentation.size"],
        );
        one(
            json!([[1, 1, 3, 1, 3]]),
            &["annotations[1].segmentation", "odd number of coordinates"],
        );
        one(json!([[1, 1, 3]]), &["odd number of coordinates"]);
        one(json!([[1, 1]]), &["fewer than 3"]);
        // Later polygons of 1 or 2 points are read (pycocotools walks them).
        one(json!([[1, 1, 3, 1, 3, 3], []]), &["polygon 1 has 0 points"]);
        one(
            json!([[1, 1, 3, 1], [1, 1, 3, 1, 2, 2]]),
            &["polygon 0 has 2 points, fewer than 3"],
        );
        one(json!([[]]), &["fewer than 3"]);
        one(json!([[1, 1, 3, 1, 1e300, 2]]), &["not a finite number"]);
    }

    #[test]
    fn iscrowd_is_0_or_1() {
        fails_v(
            with_anns(json!([{"id": 4, "image_id": 7, "category_id": 1, "iscrowd": 2}])),
            &[
                "\"annotation 4\"",
                "annotations[0].iscrowd",
                "iscrowd is 2, not 0 or 1",
            ],
        );
    }
}
