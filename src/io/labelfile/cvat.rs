//! CVAT for images 1.1 XML (`annotations.xml` of CVAT's "CVAT for images
//! 1.1" export): [`parse`] reads it into a [`Doc`] (`[inputs] cvat`), and
//! [`write`] makes one that CVAT imports, for the reviewers
//! (`triage export cvat`).
//!
//! The format is CVAT's (`site/content/en/docs/other/xml_format.md`), read
//! and written as CVAT's own code does (`cvat/apps/dataset_manager/formats/
//! cvat.py`, `transformations.py`, and Datumaro's transforms for the
//! segmentation-mask exports):
//!
//! ```xml
//! <annotations>
//!   <version>1.1</version>
//!   <meta><task><labels><label><name>car</name></label>...</labels></task></meta>
//!   <image id="0" name="a.jpg" width="1600" height="1200">
//!     <polygon label="car" points="561.30,916.23;561.30,842.77;..." z_order="1"/>
//!     <box label="plate" xtl="797.33" ytl="870.92" xbr="965.52" ybr="928.94" z_order="4"/>
//!     <mask label="car" rle="3, 5, 7, ..." left="707" top="888" width="13" height="15" z_order="0"/>
//!     <tag label="good_frame"/>
//!   </image>
//! </annotations>
//! ```
//!
//! **Reading** ([`parse`]):
//! - *Categories*: the `<label>`s of `<meta>`'s `<task>`, `<job>` or
//!   `<project>` `<labels>`, in file order, `id` = position. A skeleton's
//!   point labels (a `<label>` with a `<parent>`) are not categories: they
//!   name a skeleton's points, which cover no area. A shape or tag naming a
//!   label not listed is an error naming the image and the label. When the
//!   meta lists no label at all, the labels are taken in order of first
//!   appearance.
//! - *Images*: each `<image>`, in file order: `key` = `id`, `file_name` =
//!   `name`, `height` × `width` checked (0, or over
//!   [`MAX_PIXELS`](coco_rle::MAX_PIXELS), is an error, before anything is
//!   allocated). An image without `width` and `height` is 0 × 0: it may hold
//!   tags (classification), not shapes.
//! - *Regions*, each a COCO RLE over the whole image, as CVAT's own
//!   conversion to masks makes them:
//!   - `<polygon points="x0,y0;x1,y1;...">`: pixel coordinates, rounded to
//!     2 decimals as Datumaro keeps shape coordinates (no change on CVAT's
//!     own files, which write 2), rasterised as pycocotools does
//!     ([`coco_rle::from_polygons`]): CVAT's `polygons_to_masks`.
//!   - `<mask rle left top width height>`: `rle` is the run lengths of the
//!     `width × height` box at (`left`, `top`), taken row by row
//!     (row-major), starting with a run of 0s (of length 0 when the box's
//!     first pixel is set), as CVAT's `MaskConverter` writes and reads it;
//!     the box lies inside the image (it may reach its right and bottom
//!     edges) and the runs sum to `width · height`. The runs are turned into
//!     COCO's column-major runs directly, without painting the image.
//!   - `<box xtl ytl xbr ybr>`: the rectangle polygon `xtl,ytl; xbr,ytl;
//!     xbr,ybr; xtl,ybr` (with `xbr` computed as Datumaro's
//!     `Bbox.as_polygon` does, `xtl + (xbr − xtl)`), rasterised as a polygon:
//!     what CVAT's `boxes_to_masks` does. A box with a `rotation` (degrees)
//!     is first turned about its centre as CVAT's `RotatedBoxesToPolygons`
//!     does.
//!   - `<ellipse cx cy rx ry rotation>`: CVAT draws it with OpenCV
//!     (`cv2.ellipse` on the centre and radii rounded half to even); here it
//!     is the polygon of its 72 points 5° apart (the step OpenCV takes for
//!     radii of 15 px and more), rasterised as a polygon: an approximation,
//!     whose boundary pixels may differ from CVAT's.
//!   - `<polyline>`, `<points>`, `<cuboid>` and `<skeleton>` cover no area
//!     in a segmentation mask (CVAT's mask exports drop them too): they are
//!     skipped and counted ([`parse_counted`]'s [`Skipped`]); their labels
//!     are still checked.
//! - *Overlap*: an image's regions are sorted by `z_order` (0 when absent),
//!   a stable sort, so file order breaks ties. CVAT draws a higher
//!   `z_order` on top, and its mask exports stack the same way (Datumaro's
//!   `CompiledMask` sorts by `z_order`, stably, and paints later masks over
//!   earlier ones), so the engine's "later on top" rule gives CVAT's
//!   picture.
//!
//! `tests/reference/cvat.rs` checks every box, polygon and mask, and the
//! stacking order, against CVAT's conversion done with pycocotools.
//! - *Tags*: `<tag label>` → the annotation's `tags` (classification).
//! - *Annotators*: a CVAT for images file names no annotator. Each image
//!   with at least one shape or tag (a skipped one included: the image was
//!   annotated) has one [`DocAnnotation`] with `annotator: None`, and
//!   `official = Some(0)`; an image with none has no annotation and
//!   `official = None` (unlabelled).
//! - `<track>` (CVAT for video) is refused, naming the format to export
//!   instead. Elements CVAT does not write inside `<image>` are refused
//!   (a shape kind this reader does not know might cover area); elsewhere
//!   unknown elements are ignored, as CVAT ignores them.
//!
//! **Errors** name the file, the image (its `name`, or its `id` before the
//! name is known) and the field (`image[3].mask[0].rle`: the fourth
//! `<image>`, its first `<mask>`); malformed XML gives the parser's message
//! and its byte, line and column. Hostile input gives an error, never a
//! panic. **Limits**: memory and time follow the file's size, not numbers
//! written in it: the regions' RLE runs number at most
//! [`COUNTS_PER_BYTE`] per byte of the file (plus [`COUNTS_BASE`]), and the
//! polygons' boundary walks (pycocotools' steps of 1/5 pixel, bounded per
//! polygon list by [`coco_rle::MAX_POLYGON_STEPS`]) at most
//! [`WALK_PER_BYTE`] per byte (plus [`WALK_BASE`]); DTD entities are not
//! expanded (an entity other than XML's five is an error).
//!
//! **Writing** ([`write`]): a CVAT for images 1.1 file that CVAT imports
//! into a task whose images are named as the items' `image`: the labels in
//! `<meta>` (the class names, in order), then one `<image>` per item, in
//! queue order, with the annotation the reviewer corrects: segmentation, one
//! `<mask>` per class present (the ignore index left out: its pixels get no
//! mask), on the class's tight box, in CVAT's `rle` convention;
//! classification, one `<tag>`. An unlabelled item (`current: None`) gets
//! the model's prediction instead (`source="auto"`; the current label is
//! `source="manual"`), so that the reviewer has something to correct. The
//! queue's rank, priority, reasons and the item's id go in an XML comment
//! before each `<image>`: CVAT accepts an `<attribute>` only when the task's
//! labels declare it, and ignores comments. `parse(write(items))` gives back
//! each item's written masks or tags; an item whose mask is all ignore
//! pixels reads back as unlabelled.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use quick_xml::XmlVersion;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesStart, Event};
use quick_xml::reader::Reader;

use super::{Category, Doc, DocAnnotation, DocImage, DocRegion, ExportItem, ExportMeta, ItemLabel};
use crate::config::Task;
use crate::error::{Error, Result};
use crate::io::coco_rle::{self, MAX_PIXELS, Rle};

/// RLE runs the regions may hold, in all, per byte of the file.
pub const COUNTS_PER_BYTE: u64 = 256;
/// RLE runs any file may hold, in all, beyond [`COUNTS_PER_BYTE`] (16 MiB
/// of counts: 128 full-width regions on a 16384 × 16384 image).
pub const COUNTS_BASE: u64 = 1 << 22;
/// Polygon boundary steps (1/5 pixel) the file's polygons, boxes and
/// ellipses may walk, in all, per byte of the file.
pub const WALK_PER_BYTE: u64 = 4096;
/// Boundary steps any file may walk, beyond [`WALK_PER_BYTE`].
pub const WALK_BASE: u64 = 1 << 26;

/// The shapes [`parse_counted`] read but did not rasterise: they cover no
/// area.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Skipped {
    pub polylines: usize,
    pub points: usize,
    pub cuboids: usize,
    pub skeletons: usize,
}

impl Skipped {
    /// All skipped shapes.
    pub fn total(&self) -> usize {
        self.polylines + self.points + self.cuboids + self.skeletons
    }
}

/// Parse a CVAT for images 1.1 XML file (its bytes, read by
/// [`super::parse`]); see the module's documentation.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Doc> {
    parse_counted(path, bytes).map(|(doc, _)| doc)
}

/// [`parse`], with the count of the shapes skipped (polylines, points,
/// cuboids, skeletons: they cover no area).
pub fn parse_counted(path: &Path, bytes: &[u8]) -> Result<(Doc, Skipped)> {
    parse_with_budget(path, bytes, Budget::for_file(bytes.len()))
}

/// What the regions of one file may cost, in all.
#[derive(Debug, Clone, Copy)]
struct Budget {
    /// RLE runs (u32 counts) still allowed.
    counts: u64,
    /// Polygon boundary steps still allowed.
    walk: u64,
}

impl Budget {
    fn for_file(len: usize) -> Self {
        let len = len as u64;
        Budget {
            counts: COUNTS_BASE.saturating_add(COUNTS_PER_BYTE.saturating_mul(len)),
            walk: WALK_BASE.saturating_add(WALK_PER_BYTE.saturating_mul(len)),
        }
    }
}

/// Where the parser is: the element kinds that matter, `Skip` for the
/// others (their content is ignored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum El {
    Annotations,
    Version,
    Meta,
    /// `<task>`, `<job>` or `<project>` right under `<meta>`.
    Owner,
    Labels,
    Label,
    LabelName,
    Image,
    Skip,
}

impl El {
    fn name(self) -> &'static str {
        match self {
            El::Annotations => "<annotations>",
            El::Version => "<version>",
            El::Meta => "<meta>",
            El::Owner => "<task>, <job> or <project>",
            El::Labels => "<labels>",
            El::Label => "a <label>",
            El::LabelName => "a label's <name>",
            El::Image => "an <image>",
            El::Skip => "an element",
        }
    }
}

/// The kinds of element CVAT writes inside `<image>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Box,
    Polygon,
    Mask,
    Ellipse,
    Polyline,
    Points,
    Cuboid,
    Skeleton,
    Tag,
}

impl Kind {
    const ALL: [Kind; 9] = [
        Kind::Box,
        Kind::Polygon,
        Kind::Mask,
        Kind::Ellipse,
        Kind::Polyline,
        Kind::Points,
        Kind::Cuboid,
        Kind::Skeleton,
        Kind::Tag,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::Box => "box",
            Kind::Polygon => "polygon",
            Kind::Mask => "mask",
            Kind::Ellipse => "ellipse",
            Kind::Polyline => "polyline",
            Kind::Points => "points",
            Kind::Cuboid => "cuboid",
            Kind::Skeleton => "skeleton",
            Kind::Tag => "tag",
        }
    }

    fn of(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// A region read, its label not yet resolved.
struct Pending {
    z: i64,
    label: String,
    field: String,
    rle: Rle,
}

/// An `<image>` being read.
struct Img {
    index: usize,
    key: String,
    name: String,
    h: usize,
    w: usize,
    /// Whether the file gave `width` and `height`.
    sized: bool,
    regions: Vec<Pending>,
    /// Tags: label and field.
    tags: Vec<(String, String)>,
    /// Skipped shapes' labels and fields (checked, not kept).
    others: Vec<(String, String)>,
    /// Elements seen of each [`Kind`] (for the field names).
    seen: [usize; 9],
}

/// A `<label>` of the meta being read.
struct LabelEl {
    index: usize,
    name: Option<String>,
    parent: bool,
}

struct Parser<'a> {
    path: &'a Path,
    budget: Budget,
    /// The meta's labels (skeleton points left out), in file order.
    labels: Vec<String>,
    /// `<label>` elements seen in the meta.
    label_elements: usize,
    label: Option<LabelEl>,
    /// Labels in order of first appearance in shapes and tags.
    appear: Vec<String>,
    appear_index: HashMap<String, usize>,
    /// The images read, in file order.
    done: Vec<Img>,
    image: Option<Img>,
    skipped: Skipped,
    /// Text of the element being captured (`<name>`, `<version>`).
    text: String,
}

fn parse_with_budget(path: &Path, bytes: &[u8], budget: Budget) -> Result<(Doc, Skipped)> {
    let (text, bom) = match std::str::from_utf8(bytes) {
        Ok(t) => match t.strip_prefix('\u{feff}') {
            Some(rest) => (rest, 3u64),
            None => (t, 0),
        },
        Err(e) => {
            let at = e.valid_up_to();
            let (line, col) = line_col(bytes, at);
            return Err(super::bad(
                path,
                None,
                "xml",
                format!(
                    "not UTF-8 at byte {at} (line {line}, column {col}): CVAT writes its XML in UTF-8"
                ),
            ));
        }
    };
    let mut p = Parser {
        path,
        budget,
        labels: Vec::new(),
        label_elements: 0,
        label: None,
        appear: Vec::new(),
        appear_index: HashMap::new(),
        done: Vec::new(),
        image: None,
        skipped: Skipped::default(),
        text: String::new(),
    };
    let mut reader = Reader::from_str(text);
    let root_seen = match p.events(&mut reader, bytes, bom) {
        Ok(seen) => seen,
        // an error inside an <image> names it
        Err(e) => return Err(in_image(e, p.image.as_ref())),
    };
    if !root_seen {
        return Err(super::bad(
            path,
            None,
            "xml",
            "no <annotations> element: not a CVAT XML file",
        ));
    }
    p.finish()
}

impl Parser<'_> {
    /// Read the events to the end; whether a root element was seen.
    fn events(&mut self, reader: &mut Reader<&[u8]>, bytes: &[u8], bom: u64) -> Result<bool> {
        let mut stack: Vec<El> = Vec::new();
        let mut root_seen = false;
        loop {
            let at = bom + reader.buffer_position();
            let event = match reader.read_event() {
                Ok(ev) => ev,
                Err(e) => {
                    return Err(xml_error(
                        self.path,
                        bytes,
                        bom + reader.error_position(),
                        &e,
                    ));
                }
            };
            match event {
                Event::Start(e) => {
                    let el = self.open(&e, stack.last().copied(), root_seen, bytes, at)?;
                    root_seen = true;
                    stack.push(el);
                }
                Event::Empty(e) => {
                    let el = self.open(&e, stack.last().copied(), root_seen, bytes, at)?;
                    root_seen = true;
                    self.close(el)?;
                }
                Event::End(_) => {
                    // quick-xml checks that end tags match their start tags
                    if let Some(el) = stack.pop() {
                        self.close(el)?;
                    }
                }
                Event::Text(t) => {
                    if captures(stack.last()) {
                        self.text.push_str(&t.xml10_content());
                    }
                }
                Event::CData(t) => {
                    if captures(stack.last()) {
                        self.text.push_str(&t.xml10_content());
                    }
                }
                Event::GeneralRef(r) => {
                    let ch = r
                        .resolve_char_ref()
                        .map_err(|e| xml_error(self.path, bytes, at, &e))?;
                    let name = r.xml10_content();
                    let s = match ch {
                        Some(c) => c.to_string(),
                        None => match resolve_predefined_entity(&name) {
                            Some(s) => s.to_string(),
                            None => {
                                return Err(xml_message(
                                    self.path,
                                    bytes,
                                    at,
                                    &format!(
                                        "the entity &{name}; is not one of XML's five (DTD entities are not expanded)"
                                    ),
                                ));
                            }
                        },
                    };
                    if captures(stack.last()) {
                        self.text.push_str(&s);
                    }
                }
                Event::Eof => break,
                Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_) => {}
            }
        }
        if let Some(el) = stack.last() {
            return Err(xml_message(
                self.path,
                bytes,
                bytes.len() as u64,
                &format!("the file ends inside {}", el.name()),
            ));
        }
        Ok(root_seen)
    }
}

/// `e`, naming image `img` when it names no item.
fn in_image(e: Error, img: Option<&Img>) -> Error {
    match (e, img) {
        (Error::Input { location, message }, Some(img)) if location.item.is_none() => {
            Error::Input {
                location: crate::error::Location {
                    item: Some(img.name.clone()),
                    ..location
                },
                message,
            }
        }
        (e, _) => e,
    }
}

/// Whether text inside `top` is kept.
fn captures(top: Option<&El>) -> bool {
    matches!(top, Some(El::LabelName | El::Version))
}

/// 1-based line and column (in bytes) of byte `at`.
fn line_col(bytes: &[u8], at: usize) -> (usize, usize) {
    let at = at.min(bytes.len());
    let before = &bytes[..at];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let col = at
        - before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1)
        + 1;
    (line, col)
}

fn xml_message(path: &Path, bytes: &[u8], at: u64, msg: &str) -> Error {
    let at = usize::try_from(at).unwrap_or(usize::MAX).min(bytes.len());
    let (line, col) = line_col(bytes, at);
    super::bad(
        path,
        None,
        "xml",
        format!("malformed XML at byte {at} (line {line}, column {col}): {msg}"),
    )
}

fn xml_error(path: &Path, bytes: &[u8], at: u64, e: &dyn std::fmt::Display) -> Error {
    xml_message(path, bytes, at, &e.to_string())
}

/// An element's attributes, unescaped (quick-xml refuses duplicates).
fn attributes(
    path: &Path,
    bytes: &[u8],
    at: u64,
    e: &BytesStart<'_>,
) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for a in e.attributes() {
        let a = a.map_err(|err| xml_error(path, bytes, at, &err))?;
        let v = a
            .normalized_value(XmlVersion::Implicit1_0)
            .map_err(|err| xml_error(path, bytes, at, &err))?;
        let key = a.key.local_name().as_ref().to_string();
        out.push((key, v.into_owned()));
    }
    Ok(out)
}

fn get<'a>(attrs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// A number as Python's `float()` reads CVAT's (surrounding blanks allowed).
fn float(s: &str) -> Option<f64> {
    s.trim().parse::<f64>().ok()
}

/// An integer as Python's `int()` reads CVAT's.
fn int(s: &str) -> Option<i64> {
    s.trim().parse::<i64>().ok()
}

impl Parser<'_> {
    fn err(&self, item: Option<&str>, field: &str, msg: impl Into<String>) -> Error {
        super::bad(self.path, item, field, msg)
    }

    /// An element opens (or is empty) under `parent`: what it is.
    fn open(
        &mut self,
        e: &BytesStart<'_>,
        parent: Option<El>,
        root_seen: bool,
        bytes: &[u8],
        at: u64,
    ) -> Result<El> {
        let qname = e.local_name();
        let name = qname.as_ref();
        let Some(parent) = parent else {
            if root_seen {
                return Err(xml_message(self.path, bytes, at, "a second root element"));
            }
            if name != "annotations" {
                return Err(self.err(
                    None,
                    "xml",
                    format!(
                        "the root element is <{}>, not <annotations>: not a CVAT XML file",
                        name
                    ),
                ));
            }
            return Ok(El::Annotations);
        };
        Ok(match (parent, name) {
            (El::Annotations, "version") => {
                self.text.clear();
                El::Version
            }
            (El::Annotations, "meta") => El::Meta,
            (El::Annotations, "image") => {
                let attrs = attributes(self.path, bytes, at, e)?;
                self.start_image(&attrs)?;
                El::Image
            }
            (El::Annotations, "track") => {
                return Err(self.err(
                    None,
                    "track",
                    "a <track>: this is CVAT for video; export the task as \"CVAT for images 1.1\"",
                ));
            }
            (El::Meta, "task" | "job" | "project") => El::Owner,
            (El::Owner, "labels") => El::Labels,
            (El::Labels, "label") => {
                self.label = Some(LabelEl {
                    index: self.label_elements,
                    name: None,
                    parent: false,
                });
                self.label_elements += 1;
                El::Label
            }
            (El::Label, "name") => {
                self.text.clear();
                El::LabelName
            }
            (El::Label, "parent") => {
                if let Some(l) = self.label.as_mut() {
                    l.parent = true;
                }
                El::Skip
            }
            (El::Image, _) => {
                let Some(kind) = Kind::of(name) else {
                    let img = self.image.as_ref();
                    return Err(self.err(
                        img.map(|i| i.name.as_str()),
                        &format!("image[{}]", img.map_or(0, |i| i.index)),
                        format!("<{}> inside <image> is not a CVAT for images shape", name),
                    ));
                };
                let attrs = attributes(self.path, bytes, at, e)?;
                self.shape(kind, &attrs)?;
                El::Skip
            }
            _ => El::Skip,
        })
    }

    fn close(&mut self, el: El) -> Result<()> {
        match el {
            El::Version => {
                let v = self.text.trim();
                if !v.starts_with("1.") {
                    return Err(self.err(
                        None,
                        "version",
                        format!("version {v:?}: this reader reads CVAT's XML 1.1"),
                    ));
                }
            }
            El::LabelName => {
                if let Some(l) = self.label.as_mut() {
                    l.name = Some(std::mem::take(&mut self.text));
                }
            }
            El::Label => {
                if let Some(l) = self.label.take() {
                    let field = format!("meta.labels.label[{}].name", l.index);
                    let Some(name) = l.name else {
                        return Err(self.err(None, &field, "a <label> without a <name>"));
                    };
                    if name.is_empty() {
                        return Err(self.err(None, &field, "an empty label name"));
                    }
                    if !l.parent {
                        if self.labels.contains(&name) {
                            return Err(self.err(
                                None,
                                &field,
                                format!("label {name:?} is listed twice"),
                            ));
                        }
                        self.labels.push(name);
                    }
                }
            }
            El::Image => self.finish_image(),
            _ => {}
        }
        Ok(())
    }

    fn start_image(&mut self, attrs: &[(String, String)]) -> Result<()> {
        let index = self.done.len();
        let field = |f: &str| format!("image[{index}].{f}");
        let id = get(attrs, "id").map(str::to_string);
        let Some(name) = get(attrs, "name").map(str::to_string) else {
            return Err(self.err(id.as_deref(), &field("name"), "an <image> without a name"));
        };
        let item = Some(name.as_str());
        let Some(key) = id else {
            return Err(self.err(item, &field("id"), "an <image> without an id"));
        };
        let size = |f: &str| -> Result<Option<usize>> {
            match get(attrs, f) {
                None => Ok(None),
                Some(v) => match v.trim().parse::<usize>() {
                    Ok(0) => Err(self.err(item, &field(f), "0 pixels")),
                    Ok(n) => Ok(Some(n)),
                    Err(_) => Err(self.err(
                        item,
                        &field(f),
                        format!("{v:?} is not a whole number of pixels"),
                    )),
                },
            }
        };
        let (h, w, sized) = match (size("height")?, size("width")?) {
            (Some(h), Some(w)) => {
                if h.checked_mul(w).is_none_or(|n| n > MAX_PIXELS) {
                    return Err(self.err(
                        item,
                        &field("width"),
                        format!("a {h} x {w} image is over the limit of {MAX_PIXELS} pixels"),
                    ));
                }
                (h, w, true)
            }
            (None, None) => (0, 0, false),
            (Some(_), None) => {
                return Err(self.err(item, &field("width"), "a height but no width"));
            }
            (None, Some(_)) => {
                return Err(self.err(item, &field("height"), "a width but no height"));
            }
        };
        self.image = Some(Img {
            index,
            key,
            name,
            h,
            w,
            sized,
            regions: Vec::new(),
            tags: Vec::new(),
            others: Vec::new(),
            seen: [0; 9],
        });
        Ok(())
    }

    fn finish_image(&mut self) {
        if let Some(img) = self.image.take() {
            self.done.push(img);
        }
    }
}

/// Datumaro's rounding of shape coordinates (`np.around(x, 2)`:
/// `rint(x · 100) / 100`), which CVAT applies before rasterising; CVAT
/// writes 2 decimals, so its own files are unchanged by it.
fn round2(x: f64) -> f64 {
    (x * 100.0).round_ties_even() / 100.0
}

/// `points="x0,y0;x1,y1;..."` as a flat coordinate list (rounded as
/// Datumaro rounds them).
fn parse_points(s: &str) -> std::result::Result<Vec<f64>, String> {
    let mut out = Vec::new();
    for (i, pair) in s.split(';').enumerate() {
        let mut xy = pair.split(',');
        match (
            xy.next().and_then(float),
            xy.next().and_then(float),
            xy.next(),
        ) {
            (Some(x), Some(y), None) => out.extend([round2(x), round2(y)]),
            _ => return Err(format!("point {i}: {pair:?} is not \"x,y\"")),
        }
    }
    Ok(out)
}

/// The boundary steps (1/5 pixel, as pycocotools walks them) of `polys`,
/// about: each edge walks its longer side times 5, plus 1. Non-finite
/// coordinates count 0 (`from_polygons` refuses them).
fn walk_of(polys: &[Vec<f64>]) -> u64 {
    let mut s = 0.0f64;
    for p in polys {
        let k = p.len() / 2;
        for j in 0..k {
            let n = (j + 1) % k;
            let d = (p[2 * n] - p[2 * j])
                .abs()
                .max((p[2 * n + 1] - p[2 * j + 1]).abs());
            s += 5.0 * d + 1.0;
        }
    }
    if s.is_finite() { s as u64 } else { 0 }
}

impl Parser<'_> {
    /// Note a label's first appearance.
    fn appear(&mut self, label: &str) {
        if !self.appear_index.contains_key(label) {
            self.appear_index
                .insert(label.to_string(), self.appear.len());
            self.appear.push(label.to_string());
        }
    }

    /// Charge `n` RLE runs to the file's budget.
    fn charge(&mut self, n: usize) -> std::result::Result<(), String> {
        let n = n as u64;
        if n > self.budget.counts {
            return Err(format!(
                "the file's regions need more RLE runs than a file of its size may hold \
                 ({COUNTS_PER_BYTE} a byte, plus {COUNTS_BASE})"
            ));
        }
        self.budget.counts -= n;
        Ok(())
    }

    /// Polygons rasterised as pycocotools does, within the budget.
    fn polygons(
        &mut self,
        polys: &[Vec<f64>],
        h: usize,
        w: usize,
    ) -> std::result::Result<Rle, String> {
        let walk = walk_of(polys);
        if walk > self.budget.walk {
            return Err(format!(
                "the file's polygons walk more boundary steps than a file of its size may \
                 ({WALK_PER_BYTE} a byte, plus {WALK_BASE}): coordinates far outside the image?"
            ));
        }
        self.budget.walk -= walk;
        let rle = coco_rle::from_polygons(polys, h, w)?;
        self.charge(rle.counts.len())?;
        Ok(rle)
    }

    /// A shape or tag inside the current image.
    fn shape(&mut self, kind: Kind, attrs: &[(String, String)]) -> Result<()> {
        let Some(mut img) = self.image.take() else {
            return Ok(());
        };
        let r = self.shape_in(&mut img, kind, attrs);
        self.image = Some(img);
        r
    }

    fn shape_in(&mut self, img: &mut Img, kind: Kind, attrs: &[(String, String)]) -> Result<()> {
        let k = img.seen[kind as usize];
        img.seen[kind as usize] += 1;
        let field = format!("image[{}].{}[{k}]", img.index, kind.name());
        let item = img.name.clone();
        let item = Some(item.as_str());
        let Some(label) = get(attrs, "label") else {
            return Err(self.err(
                item,
                &format!("{field}.label"),
                format!("a <{}> without a label", kind.name()),
            ));
        };
        let label = label.to_string();
        self.appear(&label);
        let skipped = match kind {
            Kind::Tag => {
                img.tags.push((label, field));
                return Ok(());
            }
            Kind::Polyline => &mut self.skipped.polylines,
            Kind::Points => &mut self.skipped.points,
            Kind::Cuboid => &mut self.skipped.cuboids,
            Kind::Skeleton => &mut self.skipped.skeletons,
            Kind::Box | Kind::Polygon | Kind::Mask | Kind::Ellipse => {
                let rle = self.region(img, kind, attrs, &field)?;
                let z = match get(attrs, "z_order") {
                    None => 0,
                    Some(v) => int(v).ok_or_else(|| {
                        self.err(
                            item,
                            &format!("{field}.z_order"),
                            format!("{v:?} is not an integer"),
                        )
                    })?,
                };
                img.regions.push(Pending {
                    z,
                    label,
                    field,
                    rle,
                });
                return Ok(());
            }
        };
        *skipped += 1;
        img.others.push((label, field));
        Ok(())
    }

    /// The pixels of a box, polygon, mask or ellipse.
    fn region(
        &mut self,
        img: &Img,
        kind: Kind,
        attrs: &[(String, String)],
        field: &str,
    ) -> Result<Rle> {
        let item = Some(img.name.as_str());
        if !img.sized {
            return Err(self.err(
                item,
                &format!("image[{}].width", img.index),
                format!("a <{}> on an image without width and height", kind.name()),
            ));
        }
        let (h, w) = (img.h, img.w);
        let text = |name: &str| -> Result<&str> {
            get(attrs, name).ok_or_else(|| {
                self.err(
                    item,
                    &format!("{field}.{name}"),
                    format!("a <{}> without {name}", kind.name()),
                )
            })
        };
        let num = |name: &str| -> Result<f64> {
            let v = text(name)?;
            float(v).ok_or_else(|| {
                self.err(
                    item,
                    &format!("{field}.{name}"),
                    format!("{v:?} is not a number"),
                )
            })
        };
        let opt_num = |name: &str| -> Result<f64> {
            match get(attrs, name) {
                None => Ok(0.0),
                Some(_) => num(name),
            }
        };
        let (polys, at) = match kind {
            Kind::Polygon => {
                let pts = text("points")?;
                let coords =
                    parse_points(pts).map_err(|m| self.err(item, &format!("{field}.points"), m))?;
                (coords, "points")
            }
            Kind::Box => {
                let (x0, y0, x1, y1) = (num("xtl")?, num("ytl")?, num("xbr")?, num("ybr")?);
                let rotation = opt_num("rotation")?;
                (box_polygon(x0, y0, x1, y1, rotation), "xtl")
            }
            Kind::Ellipse => {
                let (cx, cy, rx, ry) = (num("cx")?, num("cy")?, num("rx")?, num("ry")?);
                let rotation = opt_num("rotation")?;
                if !(rx >= 0.0 && ry >= 0.0) {
                    return Err(self.err(
                        item,
                        &format!("{field}.rx"),
                        format!("radii {rx} and {ry}: not both ≥ 0"),
                    ));
                }
                (ellipse_polygon(cx, cy, rx, ry, rotation), "cx")
            }
            _ => return self.mask(img, attrs, field),
        };
        self.polygons(&[polys], h, w)
            .map_err(|m| self.err(item, &format!("{field}.{at}"), m))
    }

    /// `<mask rle left top width height>`.
    fn mask(&mut self, img: &Img, attrs: &[(String, String)], field: &str) -> Result<Rle> {
        let item = Some(img.name.as_str());
        let (h, w) = (img.h, img.w);
        let at = |name: &str| format!("{field}.{name}");
        let whole = |name: &str| -> Result<usize> {
            let Some(v) = get(attrs, name) else {
                return Err(self.err(item, &at(name), format!("a <mask> without {name}")));
            };
            int(v).and_then(|n| usize::try_from(n).ok()).ok_or_else(|| {
                self.err(item, &at(name), format!("{v:?} is not a whole number ≥ 0"))
            })
        };
        let (left, top, bw, bh) = (
            whole("left")?,
            whole("top")?,
            whole("width")?,
            whole("height")?,
        );
        if bw == 0 || bh == 0 {
            return Err(self.err(
                item,
                &at(if bw == 0 { "width" } else { "height" }),
                format!("an empty {bw} x {bh} mask box"),
            ));
        }
        if left.checked_add(bw).is_none_or(|r| r > w) || top.checked_add(bh).is_none_or(|b| b > h) {
            return Err(self.err(
                item,
                &at("left"),
                format!(
                    "the {bw} x {bh} box at left {left}, top {top} reaches past the \
                     {w} x {h} image"
                ),
            ));
        }
        // inside the image, so at most MAX_PIXELS
        let n = (bw * bh) as u64;
        let Some(text) = get(attrs, "rle") else {
            return Err(self.err(item, &at("rle"), "a <mask> without rle"));
        };
        let mut runs: Vec<u32> = Vec::new();
        let mut sum = 0u64;
        for (i, tok) in text.split(',').enumerate() {
            let Ok(c) = tok.trim().parse::<u64>() else {
                return Err(self.err(
                    item,
                    &at("rle"),
                    format!("run {i}: {tok:?} is not a whole number ≥ 0"),
                ));
            };
            sum = sum.saturating_add(c);
            if sum > n {
                return Err(self.err(
                    item,
                    &at("rle"),
                    format!(
                        "the runs sum to more than width x height = {bw} x {bh} = {n} (at run {i})"
                    ),
                ));
            }
            // c <= n <= MAX_PIXELS < 2^32
            runs.push(c as u32);
        }
        if sum != n {
            return Err(self.err(
                item,
                &at("rle"),
                format!("the runs sum to {sum}, not width x height = {bw} x {bh} = {n}"),
            ));
        }
        box_runs_to_rle(&runs, left, top, bw, bh, h, w, &mut self.budget.counts)
            .map_err(|m| self.err(item, &at("rle"), m))
    }

    /// The file is read: resolve labels, order regions.
    fn finish(self) -> Result<(Doc, Skipped)> {
        let Parser {
            path,
            labels,
            appear,
            done,
            skipped,
            ..
        } = self;
        let names = if labels.is_empty() { appear } else { labels };
        let index: HashMap<&str, usize> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i))
            .collect();
        let listed = || {
            let mut s = names
                .iter()
                .take(10)
                .map(|n| format!("{n:?}"))
                .collect::<Vec<_>>()
                .join(", ");
            if names.len() > 10 {
                s.push_str(", ...");
            }
            s
        };
        let resolve = |image: &str, label: &str, field: &str| -> Result<usize> {
            index.get(label).copied().ok_or_else(|| {
                super::bad(
                    path,
                    Some(image),
                    &format!("{field}.label"),
                    format!(
                        "label {label:?} is not among the labels in <meta> ({})",
                        listed()
                    ),
                )
            })
        };
        let mut images = Vec::with_capacity(done.len());
        for mut img in done {
            for (label, field) in &img.others {
                resolve(&img.name, label, field)?;
            }
            let mut tags = Vec::with_capacity(img.tags.len());
            for (label, field) in &img.tags {
                tags.push(resolve(&img.name, label, field)?);
            }
            // stable: file order breaks ties, as CVAT stacks them
            img.regions.sort_by_key(|p| p.z);
            let mut regions = Vec::with_capacity(img.regions.len());
            for p in img.regions {
                regions.push(DocRegion {
                    category: resolve(&img.name, &p.label, &p.field)?,
                    crowd: false,
                    rle: p.rle,
                });
            }
            let annotated = img.seen.iter().any(|&n| n > 0);
            let (annotations, official) = if annotated {
                (
                    vec![DocAnnotation {
                        annotator: None,
                        regions,
                        tags,
                    }],
                    Some(0),
                )
            } else {
                (Vec::new(), None)
            };
            images.push(DocImage {
                key: img.key,
                file_name: img.name,
                item: None,
                height: img.h,
                width: img.w,
                annotations,
                official,
            });
        }
        let categories = names
            .iter()
            .enumerate()
            .map(|(i, n)| Category {
                id: i as i64,
                name: n.clone(),
            })
            .collect();
        Ok((Doc { categories, images }, skipped))
    }
}

/// A `<box>` as the polygon CVAT rasterises: Datumaro's `Bbox` keeps
/// `[x0, y0, x0 + (x1 − x0), y0 + (y1 − y0)]` rounded to 2 decimals and
/// `as_polygon` walks `x, y; x + w, y; x + w, y + h; x, y + h` with
/// `w = p2 − p0`; a rotated box (`rotation` degrees) has its corners turned
/// about its centre (CVAT's `RotatedBoxesToPolygons`), then rounded again.
fn box_polygon(x0: f64, y0: f64, x1: f64, y1: f64, rotation: f64) -> Vec<f64> {
    let p0 = round2(x0);
    let p1 = round2(y0);
    let p2 = round2(x0 + (x1 - x0));
    let p3 = round2(y0 + (y1 - y0));
    if rotation != 0.0 {
        let a = rotation.to_radians();
        let (cx, cy) = (p0 + (p2 - p0) / 2.0, p1 + (p3 - p1) / 2.0);
        let mut out = Vec::with_capacity(8);
        for (x, y) in [(p0, p1), (p2, p1), (p2, p3), (p0, p3)] {
            let rx = cx + a.cos() * (x - cx) - a.sin() * (y - cy);
            let ry = cy + a.sin() * (x - cx) + a.cos() * (y - cy);
            out.extend([round2(rx), round2(ry)]);
        }
        return out;
    }
    let (w, h) = (p2 - p0, p3 - p1);
    vec![p0, p1, p0 + w, p1, p0 + w, p1 + h, p0, p1 + h]
}

/// An `<ellipse>` as a polygon of 72 points 5° apart, on the centre and
/// radii rounded half to even (as CVAT hands them to OpenCV), turned by
/// `rotation` degrees as `cv::ellipse2Poly` turns them.
fn ellipse_polygon(cx: f64, cy: f64, rx: f64, ry: f64, rotation: f64) -> Vec<f64> {
    let (cx, cy) = (cx.round_ties_even(), cy.round_ties_even());
    let (a, b) = (rx.round_ties_even(), ry.round_ties_even());
    let (alpha, beta) = (rotation.to_radians().cos(), rotation.to_radians().sin());
    let mut out = Vec::with_capacity(144);
    for i in 0..72 {
        let t = f64::from(i * 5).to_radians();
        let (x, y) = (a * t.cos(), b * t.sin());
        out.extend([cx + x * alpha - y * beta, cy + x * beta + y * alpha]);
    }
    out
}

/// CVAT's mask runs (`runs`: row-major over the `bw × bh` box at (`left`,
/// `top`), first run 0s, summing to `bw · bh`; the box inside the `h × w`
/// image) as the whole image's COCO RLE, the counts [`coco_rle::encode`]
/// gives for the painted image (first run 0s, no other empty run).
///
/// Without painting: the box's rows are grouped (a run covering whole rows
/// makes one group of equal rows), each group's 1-intervals compared with
/// the group above (their symmetric difference is where a column changes,
/// going down), and those changes, sorted by column, are the column-major
/// runs. Time and memory follow the runs and the changes, not the box's
/// area; the changes are charged to `budget` (one RLE run each) before they
/// are stored.
#[allow(clippy::too_many_arguments)]
fn box_runs_to_rle(
    runs: &[u32],
    left: usize,
    top: usize,
    bw: usize,
    bh: usize,
    h: usize,
    w: usize,
    budget: &mut u64,
) -> std::result::Result<Rle, String> {
    // rows: (first row of the group, start of its bounds in `bounds`);
    // a group's bounds are its 1-intervals [a, b) as a, b, ... (increasing)
    let mut rows: Vec<(usize, usize)> = vec![(0, 0)];
    let mut bounds: Vec<usize> = Vec::new();
    let total = bw * bh;
    let mut p = 0usize;
    for (i, &len) in runs.iter().enumerate() {
        let one = i % 2 == 1;
        let mut len = len as usize;
        while len > 0 {
            let (row, col) = (p / bw, p % bw);
            let take = len.min(bw - col);
            if one {
                let start = rows.last().map_or(0, |r| r.1);
                let len_now = bounds.len();
                match bounds.last_mut() {
                    Some(last) if len_now > start && *last == col => *last = col + take,
                    _ => bounds.extend([col, col + take]),
                }
            }
            p += take;
            len -= take;
            if col + take == bw {
                // the row is done; whole rows of this run follow
                let full = len / bw;
                if full > 0 {
                    rows.push((row + 1, bounds.len()));
                    if one {
                        bounds.extend([0, bw]);
                    }
                    p += full * bw;
                    len -= full * bw;
                }
                if p < total {
                    rows.push((p / bw, bounds.len()));
                }
            }
        }
    }
    // the changes going down each column: (column, row) in the image
    let mut events: Vec<(u32, u32)> = Vec::new();
    let mut prev: &[usize] = &[];
    let mut xor: Vec<usize> = Vec::new();
    let mut push = |prev: &[usize], cur: &[usize], row: usize, xor: &mut Vec<usize>| {
        symmetric_difference(prev, cur, xor);
        for ab in xor.chunks_exact(2) {
            let n = (ab[1] - ab[0]) as u64;
            if n > *budget {
                return Err(format!(
                    "the file's regions need more RLE runs than a file of its size may hold \
                     ({COUNTS_PER_BYTE} a byte, plus {COUNTS_BASE})"
                ));
            }
            *budget -= n;
            // columns < w and rows <= h, both <= MAX_PIXELS < 2^32
            events.extend((ab[0]..ab[1]).map(|c| ((left + c) as u32, (top + row) as u32)));
        }
        Ok(())
    };
    for (g, &(row, start)) in rows.iter().enumerate() {
        let end = rows.get(g + 1).map_or(bounds.len(), |r| r.1);
        let cur = &bounds[start..end];
        push(prev, cur, row, &mut xor)?;
        prev = cur;
    }
    push(prev, &[], bh, &mut xor)?;
    events.sort_unstable();
    // each column's changes pair up, [open, close) down the column (its
    // state is 0 above the box and below it); intervals that touch across
    // a column's end merge, as encode's runs do
    let n = h * w;
    let mut counts: Vec<u32> = Vec::new();
    let mut last_end = 0usize;
    let mut cur: Option<(usize, usize)> = None;
    // all positions are < h * w <= MAX_PIXELS < 2^32
    let mut flush = |counts: &mut Vec<u32>, (s, e): (usize, usize)| {
        counts.push((s - last_end) as u32);
        counts.push((e - s) as u32);
        last_end = e;
    };
    for pair in events.chunks_exact(2) {
        let base = pair[0].0 as usize * h;
        let (s, e) = (base + pair[0].1 as usize, base + pair[1].1 as usize);
        cur = match cur {
            Some((cs, ce)) if ce == s => Some((cs, e)),
            Some(done) => {
                flush(&mut counts, done);
                Some((s, e))
            }
            None => Some((s, e)),
        };
    }
    if let Some(done) = cur {
        flush(&mut counts, done);
    }
    let end = counts.iter().map(|&c| c as usize).sum::<usize>();
    if end < n || counts.is_empty() {
        counts.push((n - end) as u32);
    }
    Ok(Rle { h, w, counts })
}

/// The symmetric difference of two interval lists (each `a0, b0, a1, b1,
/// ...` increasing) into `out`, in the same form: the bounds of both,
/// merged, equal bounds cancelling.
fn symmetric_difference(a: &[usize], b: &[usize], out: &mut Vec<usize>) {
    out.clear();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        match (a.get(i), b.get(j)) {
            (Some(&x), Some(&y)) if x == y => {
                i += 1;
                j += 1;
            }
            (Some(&x), Some(&y)) if x < y => {
                out.push(x);
                i += 1;
            }
            (Some(_), Some(&y)) => {
                out.push(y);
                j += 1;
            }
            (Some(&x), None) => {
                out.push(x);
                i += 1;
            }
            (None, Some(&y)) => {
                out.push(y);
                j += 1;
            }
            (None, None) => break,
        }
    }
}

/// Whether XML 1.0 can hold `c` (its `Char` production).
fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..)
}

/// `s` escaped for an attribute value between `"` (tabs and line breaks as
/// character references, so that they survive attribute normalisation) or
/// for element text. `Err` names a character XML cannot hold.
fn escape_into(out: &mut String, s: &str, attr: bool) -> std::result::Result<(), String> {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if attr => out.push_str("&quot;"),
            '\t' if attr => out.push_str("&#9;"),
            '\n' if attr => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c if xml_char(c) => out.push(c),
            c => {
                return Err(format!(
                    "{s:?} holds U+{:04X}, which an XML file cannot hold",
                    u32::from(c)
                ));
            }
        }
    }
    Ok(())
}

/// `s` made safe inside an XML comment: characters XML cannot hold become
/// U+FFFD, `--` is broken up, and a final `-` is followed by a space.
fn comment_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let c = if xml_char(c) { c } else { '\u{fffd}' };
        if c == '-' && out.ends_with('-') {
            out.push(' ');
        }
        out.push(c);
    }
    if out.ends_with('-') {
        out.push(' ');
    }
    out
}

/// Write the items as a CVAT for images 1.1 file that CVAT imports into a
/// task whose images are named as the items' `image` (see the module's
/// documentation): the labels are `meta.class_names` in order; each item,
/// in order, is an `<image id="i" name="image">` holding its current label
/// (or, unlabelled, the model's prediction): a `<tag>` (classification) or
/// one `<mask>` per class present on the class's tight box
/// (segmentation, the ignore index left out), preceded by a comment with the
/// queue's rank, priority, reasons and the item's id.
///
/// Errors ([`Error::Usage`]) when a class name or an image name holds a
/// character XML cannot hold; [`Error::Internal`] when a label does not fit
/// the task (a class id past the class names, a mask not `height × width`,
/// a tag in a segmentation task or a mask in a classification one).
pub fn write(meta: &ExportMeta, items: &[ExportItem]) -> Result<Vec<u8>> {
    let mut out = String::new();
    out.push_str(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<annotations>\n  <version>1.1</version>\n",
    );
    out.push_str("  <meta>\n    <task>\n      <name>triage review queue</name>\n");
    let _ = writeln!(out, "      <size>{}</size>", items.len());
    out.push_str("      <mode>annotation</mode>\n      <overlap>0</overlap>\n      <labels>\n");
    let mut names = Vec::with_capacity(meta.class_names.len());
    for (i, name) in meta.class_names.iter().enumerate() {
        let mut esc = String::new();
        escape_into(&mut esc, name, true)
            .map_err(|m| Error::Usage(format!("class {i}: its name {m}")))?;
        out.push_str("        <label>\n          <name>");
        // element text: the attribute escaping is valid there too
        out.push_str(&esc);
        out.push_str("</name>\n        </label>\n");
        names.push(esc);
    }
    out.push_str("      </labels>\n    </task>\n  </meta>\n");
    let n_classes = meta.class_names.len();
    for (i, it) in items.iter().enumerate() {
        let (label, source) = match &it.current {
            Some(l) => (l, "manual"),
            None => (&it.predicted, "auto"),
        };
        let mut note = format!(
            "triage: rank {}, priority {}, item {:?}, reasons: {}",
            it.rank,
            it.priority,
            it.id,
            if it.reasons.is_empty() {
                "none".to_string()
            } else {
                it.reasons.join("; ")
            }
        );
        if it.current.is_none() {
            note.push_str("; unlabelled: below is the model's prediction");
        }
        let _ = writeln!(out, "  <!-- {} -->", comment_text(&note));
        let _ = write!(out, "  <image id=\"{i}\" name=\"");
        escape_into(&mut out, &it.image, true)
            .map_err(|m| Error::Usage(format!("item {:?}: its image name {m}", it.id)))?;
        out.push('"');
        if it.height > 0 || it.width > 0 {
            let _ = write!(out, " width=\"{}\" height=\"{}\"", it.width, it.height);
        }
        out.push_str(">\n");
        let internal = |m: String| Error::Internal(format!("cvat export, item {:?}: {m}", it.id));
        match (meta.task, label) {
            (Task::Classification, ItemLabel::Class(c)) => {
                let name = names
                    .get(*c as usize)
                    .ok_or_else(|| internal(format!("class {c}, but {n_classes} classes")))?;
                let _ = writeln!(
                    out,
                    "    <tag label=\"{name}\" source=\"{source}\">\n    </tag>"
                );
            }
            (Task::Segmentation, ItemLabel::Mask(m)) => {
                write_masks(&mut out, m, it, meta.ignore_index, &names, source)
                    .map_err(internal)?;
            }
            (task, _) => {
                return Err(internal(format!(
                    "a label that is not a {} label",
                    task.name()
                )));
            }
        }
        out.push_str("  </image>\n");
    }
    out.push_str("</annotations>\n");
    Ok(out.into_bytes())
}

/// One `<mask>` per class present in the row-major label map `m`, on the
/// class's tight box, its runs row-major from a run of 0s (CVAT's
/// `MaskConverter.rle`: a first run of 0 when the box's first pixel is the
/// class, no empty run after it).
fn write_masks(
    out: &mut String,
    m: &[u16],
    it: &ExportItem,
    ignore: u16,
    names: &[String],
    source: &str,
) -> std::result::Result<(), String> {
    let (h, w) = (it.height, it.width);
    if Some(m.len()) != h.checked_mul(w) {
        return Err(format!("a mask of {} values, not {h} x {w}", m.len()));
    }
    // per class: top, bottom, left, right (inclusive); top = usize::MAX
    // while the class is absent
    let mut boxes: Vec<[usize; 4]> = vec![[usize::MAX, 0, usize::MAX, 0]; names.len()];
    for (r, row) in m.chunks_exact(w.max(1)).enumerate() {
        for (c, &v) in row.iter().enumerate() {
            if v == ignore {
                continue;
            }
            let Some(b) = boxes.get_mut(usize::from(v)) else {
                return Err(format!(
                    "class {v} at pixel (x={c}, y={r}), but {} classes",
                    names.len()
                ));
            };
            if b[0] == usize::MAX {
                b[0] = r;
            }
            b[1] = r;
            b[2] = b[2].min(c);
            b[3] = b[3].max(c);
        }
    }
    for (k, &[t, bo, l, ri]) in boxes.iter().enumerate() {
        if t == usize::MAX {
            continue;
        }
        let _ = write!(
            out,
            "    <mask label=\"{}\" source=\"{source}\" occluded=\"0\" rle=\"",
            names[k]
        );
        let mut value = false;
        let mut run = 0u64;
        let mut first = true;
        let mut emit = |out: &mut String, run: u64| {
            if !first {
                out.push_str(", ");
            }
            first = false;
            let _ = write!(out, "{run}");
        };
        for r in t..=bo {
            for &v in &m[r * w + l..=r * w + ri] {
                let here = usize::from(v) == k && v != ignore;
                if here != value {
                    emit(out, run);
                    run = 0;
                    value = here;
                }
                run += 1;
            }
        }
        emit(out, run);
        let _ = writeln!(
            out,
            "\" left=\"{l}\" top=\"{t}\" width=\"{}\" height=\"{}\" z_order=\"0\">\n    </mask>",
            ri - l + 1,
            bo - t + 1
        );
    }
    Ok(())
}

#[cfg(test)]
#[path = "cvat_tests.rs"]
mod tests;
