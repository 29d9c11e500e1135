//! Label Studio: its JSON export read into a [`Doc`] ([`parse`]), and the
//! tasks `triage export labelstudio` writes for the reviewers ([`write()`],
//! with the labelling config that fits them, [`label_config`]).
//!
//! **What is read** ([`parse`]): Label Studio's full JSON export (Export →
//! JSON, or `GET /api/projects/{id}/export?exportType=JSON`), a list of
//! tasks in file order. Not the `JSON_MIN` or CSV exports, nor one task per
//! file (cloud target storage).
//!
//! - A task's `id` (an integer or a string, unique in the file) is the
//!   image's [`DocImage::key`]; its `data.image` is the file name, or, when
//!   `data` has no `image` key, its first string value in file order (a
//!   config whose `<Image>` reads another key, `value="$photo"`).
//! - Its `annotations` (`completions`, the name before Label Studio 1.0,
//!   when there is no `annotations`): those with `was_cancelled: true`
//!   (skipped) are dropped, unread. Each other one is a [`DocAnnotation`]
//!   whose annotator is `completed_by`: an integer (the user id) or a
//!   string as written, or, for an object, its `email` when it has a
//!   non-empty one, else its `id`; none when `completed_by` is absent or
//!   null. The task's [`DocImage::official`] annotation is the latest: the
//!   largest `updated_at`, then `created_at` (ISO 8601 times, compared as
//!   instants; a missing one is older than any), then integer `id` (an id
//!   that is not an integer counts as the smallest), then the last in file
//!   order. A task with no annotation left is unlabelled: no annotation,
//!   `official` `None`.
//! - `result` items, by `type` (ASCII case ignored): `choices` gives the
//!   image-level tags (`value.choices`, each a category); `brushlabels` with
//!   `value.format` `"rle"` (or no format) gives one region per label of
//!   `value.brushlabels`, its pixels the nonzero alpha of `value.rle`
//!   decoded at `original_height × original_width` ([`super::ls_brush`]);
//!   `polygonlabels` gives one region per label of `value.polygonlabels`,
//!   `value.points` (`[x, y]` in percent of the width and height) taken to
//!   pixels as `x / 100 · W`, `y / 100 · H` and rasterised as pycocotools
//!   does a COCO polygon ([`coco_rle::from_polygons`]; the polygon is
//!   closed whatever `closed` says, as the SDK's COCO export does). Every
//!   other type (rectangles, key points, text, ratings, ...) is skipped;
//!   `from_name` and `to_name` are not read, so a config with two label
//!   controls gives the labels of both. Predictions are not read.
//! - The image's size is the `original_height × original_width` of its
//!   regions, which must all agree; a task with no region (choices only, or
//!   no annotation) is 0 × 0.
//! - The categories are the label names in order of first appearance (tasks
//!   in file order, annotations and results in file order, labels in list
//!   order); a category's `id` is its position.
//!
//! Every error names the file, the task (its id, or its position when the
//! id itself is wrong) and the field (`annotations[0].result[2].value.rle`);
//! a file that is not JSON gives serde's line and column. The file is held
//! with each list of small integers (brush RLE bytes) at one byte an
//! element, and nothing is allocated by a number the file gives except
//! through [`coco_rle::MAX_PIXELS`]'s checks.
//!
//! **What is written** ([`write()`]): Label Studio's import format, one task
//! per [`ExportItem`] in queue order, with the item in `data` (`image`,
//! `triage_id`, `triage_rank`, `triage_priority`, `triage_reasons`) and two
//! `predictions` that a reviewer starts from: the current annotation
//! (`model_version` `"current annotation"`) and the model's prediction
//! (`model_version` `"model"`), both with `score` = the item's priority so
//! that the Data Manager sorts by it. An unlabelled item has the model's
//! prediction only. Segmentation writes one `brushlabels` result per class
//! present (the ignore index left out: those pixels are in no region),
//! classification one `choices` result; `from_name` is `label` and
//! `to_name` is `image`, as [`label_config`] names them.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use serde::Serialize;
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use super::{
    Category, Doc, DocAnnotation, DocImage, DocRegion, ExportItem, ExportMeta, ItemLabel, bad,
    ls_brush,
};
use crate::config::Task;
use crate::error::{Error, Result};
use crate::io::coco_rle;

// ---------------------------------------------------------------------------
// The file as read: JSON with compact byte lists.

/// A JSON value of the export. A list whose elements are all integers in
/// `0..=255` (a brush RLE; the empty list too) is kept as bytes, one byte
/// an element instead of a whole value.
#[derive(Debug, Clone, PartialEq)]
enum J {
    Null,
    Bool(bool),
    /// A negative integer.
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<J>),
    /// Keys in file order (a repeated key: the last one counts, as in
    /// Python's `json`).
    Object(Vec<(String, J)>),
}

impl J {
    /// The value of `key` in an object; `None` for a missing key or a value
    /// that is not an object.
    fn get(&self, key: &str) -> Option<&J> {
        match self {
            J::Object(kv) => kv.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The elements of a list that must hold other than bytes (objects,
    /// strings, points): `None` for anything else, a non-empty list of bytes
    /// included.
    fn list(&self) -> Option<&[J]> {
        match self {
            J::List(v) => Some(v),
            J::Bytes(b) if b.is_empty() => Some(&[]),
            _ => None,
        }
    }

    /// The first string value of an object, in file order.
    fn first_string(&self) -> Option<&str> {
        match self {
            J::Object(kv) => kv.iter().find_map(|(_, v)| match v {
                J::Str(s) => Some(s.as_str()),
                _ => None,
            }),
            _ => None,
        }
    }

    /// A number as `f64`.
    fn number(&self) -> Option<f64> {
        match *self {
            J::Int(v) => Some(v as f64),
            J::UInt(v) => Some(v as f64),
            J::Float(v) => Some(v),
            _ => None,
        }
    }

    /// What the value is, for error messages.
    fn kind(&self) -> &'static str {
        match self {
            J::Null => "null",
            J::Bool(_) => "a boolean",
            J::Int(_) | J::UInt(_) | J::Float(_) => "a number",
            J::Str(_) => "a string",
            J::Bytes(_) => "a list of numbers",
            J::List(_) => "a list",
            J::Object(_) => "an object",
        }
    }
}

impl<'de> Deserialize<'de> for J {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<J, D::Error> {
        d.deserialize_any(JVisitor)
    }
}

struct JVisitor;

impl<'de> Visitor<'de> for JVisitor {
    type Value = J;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> std::result::Result<J, E> {
        Ok(J::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> std::result::Result<J, E> {
        Ok(if v >= 0 { J::UInt(v as u64) } else { J::Int(v) })
    }

    fn visit_u64<E>(self, v: u64) -> std::result::Result<J, E> {
        Ok(J::UInt(v))
    }

    fn visit_f64<E>(self, v: f64) -> std::result::Result<J, E> {
        Ok(J::Float(v))
    }

    fn visit_str<E>(self, v: &str) -> std::result::Result<J, E> {
        Ok(J::Str(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> std::result::Result<J, E> {
        Ok(J::Str(v))
    }

    fn visit_unit<E>(self) -> std::result::Result<J, E> {
        Ok(J::Null)
    }

    fn visit_none<E>(self) -> std::result::Result<J, E> {
        Ok(J::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> std::result::Result<J, D::Error> {
        J::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<J, A::Error> {
        let mut bytes = Vec::new();
        while let Some(e) = seq.next_element::<J>()? {
            match e {
                J::UInt(v) if v <= 255 => bytes.push(v as u8),
                other => {
                    let mut list: Vec<J> = bytes.iter().map(|&b| J::UInt(u64::from(b))).collect();
                    list.push(other);
                    while let Some(e) = seq.next_element::<J>()? {
                        list.push(e);
                    }
                    return Ok(J::List(list));
                }
            }
        }
        Ok(J::Bytes(bytes))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<J, A::Error> {
        let mut kv = Vec::new();
        while let Some((k, v)) = map.next_entry::<String, J>()? {
            kv.push((k, v));
        }
        Ok(J::Object(kv))
    }
}

// ---------------------------------------------------------------------------
// parse

/// Where a task's errors point: the file and the task.
struct Ctx<'a> {
    path: &'a Path,
    item: String,
}

impl Ctx<'_> {
    fn err(&self, field: &str, msg: impl Into<String>) -> Error {
        bad(self.path, Some(&self.item), field, msg)
    }
}

/// The categories, by name, in order of first appearance.
#[derive(Default)]
struct Cats {
    by_name: HashMap<String, usize>,
    list: Vec<Category>,
}

impl Cats {
    fn id(&mut self, name: &str) -> usize {
        if let Some(&i) = self.by_name.get(name) {
            return i;
        }
        let i = self.list.len();
        self.by_name.insert(name.to_string(), i);
        self.list.push(Category {
            id: i as i64,
            name: name.to_string(),
        });
        i
    }
}

/// Parse a Label Studio JSON export (its bytes, read by [`super::parse`]):
/// see the module's contract.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Doc> {
    let root: J = serde_json::from_slice(bytes)
        .map_err(|e| bad(path, None, "labelstudio", format!("not valid JSON: {e}")))?;
    if let J::Bytes(b) = &root
        && !b.is_empty()
    {
        return Err(bad(
            path,
            None,
            "[0]",
            "task 0 (counting from 0) must be an object, not a number",
        ));
    }
    let tasks = root.list().ok_or_else(|| {
        bad(
            path,
            None,
            "labelstudio",
            format!(
                "a Label Studio JSON export is a list of tasks, not {}",
                root.kind()
            ),
        )
    })?;
    let mut cats = Cats::default();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut images = Vec::with_capacity(tasks.len());
    for (t, task) in tasks.iter().enumerate() {
        images.push(read_task(path, t, task, &mut cats, &mut seen)?);
    }
    Ok(Doc {
        categories: cats.list,
        images,
    })
}

/// The `f` field of an object as an object.
fn object<'a>(ctx: &Ctx, j: Option<&'a J>, f: &str) -> Result<&'a J> {
    match j {
        Some(o @ J::Object(_)) => Ok(o),
        Some(other) => Err(ctx.err(f, format!("must be an object, not {}", other.kind()))),
        None => Err(ctx.err(f, "missing")),
    }
}

/// A list of strings (`choices`, `brushlabels`, ...).
fn strings<'a>(ctx: &Ctx, j: Option<&'a J>, f: &str) -> Result<Vec<&'a str>> {
    let j = j.ok_or_else(|| ctx.err(f, "missing"))?;
    let list = j
        .list()
        .ok_or_else(|| ctx.err(f, format!("must be a list of strings, not {}", j.kind())))?;
    list.iter()
        .enumerate()
        .map(|(i, e)| match e {
            J::Str(s) => Ok(s.as_str()),
            other => Err(ctx.err(
                &format!("{f}[{i}]"),
                format!("must be a string, not {}", other.kind()),
            )),
        })
        .collect()
}

/// The label names of a region (`value.brushlabels`, `value.polygonlabels`):
/// at least one.
fn labels<'a>(ctx: &Ctx, value: &'a J, key: &str, f: &str) -> Result<Vec<&'a str>> {
    let f = format!("{f}.value.{key}");
    let names = strings(ctx, value.get(key), &f)?;
    if names.is_empty() {
        return Err(ctx.err(&f, "a region with no label"));
    }
    Ok(names)
}

/// Seconds since 1970-01-01T00:00:00Z and nanoseconds of an ISO 8601 time as
/// Label Studio writes it (`2021-03-09T22:16:08.728353Z`):
/// `YYYY-MM-DD[T ]HH:MM:SS[.fraction][Z | ±HH[:]MM]`, no offset meaning UTC.
/// `None` when it is not one (the day is checked to be 1 to 31, not against
/// its month).
fn parse_time(s: &str) -> Option<(i64, u32)> {
    let b = s.as_bytes();
    let num = |at: usize, n: usize| -> Option<i64> {
        let d = b.get(at..at + n)?;
        d.iter().try_fold(0i64, |a, &c| {
            c.is_ascii_digit().then(|| a * 10 + i64::from(c - b'0'))
        })
    };
    let is = |at: usize, c: &[u8]| b.get(at).is_some_and(|x| c.contains(x));
    let (y, mo, d) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hh, mi, ss) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !(is(4, b"-") && is(7, b"-") && is(10, b"Tt ") && is(13, b":") && is(16, b":")) {
        return None;
    }
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || hh > 23 || mi > 59 || ss > 60 {
        return None;
    }
    let mut p = 19;
    let mut nanos: u32 = 0;
    if is(p, b".") {
        p += 1;
        let start = p;
        while is(p, b"0123456789") {
            if p - start < 9 {
                nanos = nanos * 10 + u32::from(b[p] - b'0');
            }
            p += 1;
        }
        if p == start {
            return None;
        }
        for _ in (p - start).min(9)..9 {
            nanos *= 10;
        }
    }
    let offset = if p == b.len() || (is(p, b"Zz") && p + 1 == b.len()) {
        0
    } else if is(p, b"+-") {
        let sign = if b[p] == b'-' { -1 } else { 1 };
        let oh = num(p + 1, 2)?;
        let q = if is(p + 3, b":") { p + 4 } else { p + 3 };
        let om = num(q, 2)?;
        if q + 2 != b.len() || oh > 23 || om > 59 {
            return None;
        }
        sign * (oh * 3600 + om * 60)
    } else {
        return None;
    };
    // days from civil (Howard Hinnant's algorithm), proleptic Gregorian
    let yy = if mo <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + hh * 3600 + mi * 60 + ss - offset, nanos))
}

/// An annotation's order key for [`DocImage::official`]: `updated_at`,
/// `created_at`, integer `id` (see the module's contract; the file order
/// breaks the last ties).
type Latest = (Option<(i64, u32)>, Option<(i64, u32)>, Option<i128>);

fn latest_key(ctx: &Ctx, a: &J, f: &str) -> Result<Latest> {
    let time = |key: &str| -> Result<Option<(i64, u32)>> {
        match a.get(key) {
            None | Some(J::Null) => Ok(None),
            Some(J::Str(s)) => parse_time(s).map(Some).ok_or_else(|| {
                ctx.err(
                    &format!("{f}.{key}"),
                    format!("{s:?} is not an ISO 8601 time (2021-03-09T22:16:08.728353Z)"),
                )
            }),
            Some(other) => Err(ctx.err(
                &format!("{f}.{key}"),
                format!("must be a time as a string, not {}", other.kind()),
            )),
        }
    };
    let id = match a.get("id") {
        Some(J::UInt(v)) => Some(i128::from(*v)),
        Some(J::Int(v)) => Some(i128::from(*v)),
        Some(J::Str(s)) => s.parse::<i128>().ok(),
        _ => None,
    };
    Ok((time("updated_at")?, time("created_at")?, id))
}

/// `completed_by` as the annotator's name (see the module's contract).
fn annotator(ctx: &Ctx, a: &J, f: &str) -> Result<Option<String>> {
    let f = format!("{f}.completed_by");
    Ok(match a.get("completed_by") {
        None | Some(J::Null) => None,
        Some(J::UInt(v)) => Some(v.to_string()),
        Some(J::Int(v)) => Some(v.to_string()),
        Some(J::Str(s)) => Some(s.clone()),
        Some(o @ J::Object(_)) => match (o.get("email"), o.get("id")) {
            (Some(J::Str(e)), _) if !e.is_empty() => Some(e.clone()),
            (_, Some(J::UInt(v))) => Some(v.to_string()),
            (_, Some(J::Int(v))) => Some(v.to_string()),
            (_, Some(J::Str(s))) => Some(s.clone()),
            _ => {
                return Err(ctx.err(&f, "a user object with neither a non-empty email nor an id"));
            }
        },
        Some(other) => {
            return Err(ctx.err(
                &f,
                format!(
                    "must be a user id, a string or a user object, not {}",
                    other.kind()
                ),
            ));
        }
    })
}

/// The image size a region gives (`original_height × original_width`),
/// checked against the one the task's earlier regions gave.
fn region_size(
    ctx: &Ctx,
    r: &J,
    f: &str,
    size: &mut Option<(usize, usize, String)>,
) -> Result<(usize, usize)> {
    let dim = |key: &str| -> Result<usize> {
        match r.get(key) {
            Some(J::UInt(v)) => usize::try_from(*v)
                .map_err(|_| ctx.err(&format!("{f}.{key}"), format!("{v} is too large"))),
            Some(other) => Err(ctx.err(
                &format!("{f}.{key}"),
                format!("must be a non-negative integer, not {}", other.kind()),
            )),
            None => Err(ctx.err(
                &format!("{f}.{key}"),
                "missing (a region needs the image's size)",
            )),
        }
    };
    let (h, w) = (dim("original_height")?, dim("original_width")?);
    match size {
        Some((h0, w0, at)) if (*h0, *w0) != (h, w) => Err(ctx.err(
            &format!("{f}.original_height"),
            format!(
                "the task's regions disagree on the image size: {h} x {w} (height x width) here, {h0} x {w0} at {at}"
            ),
        )),
        Some(_) => Ok((h, w)),
        None => {
            *size = Some((h, w, f.to_string()));
            Ok((h, w))
        }
    }
}

/// A brush region's mask as a COCO RLE: `value.rle` decoded, nonzero alpha
/// set.
fn brush_rle(ctx: &Ctx, value: &J, f: &str, h: usize, w: usize) -> Result<coco_rle::Rle> {
    match value.get("format") {
        None | Some(J::Null) => {}
        Some(J::Str(s)) if s == "rle" => {}
        Some(J::Str(s)) => {
            return Err(ctx.err(
                &format!("{f}.value.format"),
                format!("brush format {s:?} is not read (only \"rle\")"),
            ));
        }
        Some(other) => {
            return Err(ctx.err(
                &format!("{f}.value.format"),
                format!("must be a string, not {}", other.kind()),
            ));
        }
    }
    let fr = format!("{f}.value.rle");
    let rle = match value.get("rle") {
        Some(J::Bytes(b)) => b,
        Some(J::List(items)) => {
            // a list is kept as bytes unless an element is not a byte
            let first = items
                .iter()
                .enumerate()
                .find(|(_, e)| !matches!(e, J::UInt(v) if *v <= 255));
            return Err(match first {
                Some((i, e)) => {
                    let what = match e.number() {
                        Some(v) => format!("{v}"),
                        None => e.kind().to_string(),
                    };
                    ctx.err(
                        &format!("{fr}[{i}]"),
                        format!("{what} is not a byte (an integer 0 to 255)"),
                    )
                }
                None => ctx.err(&fr, "must be a list of bytes"),
            });
        }
        Some(other) => {
            return Err(ctx.err(
                &fr,
                format!("must be a list of bytes, not {}", other.kind()),
            ));
        }
        None => return Err(ctx.err(&fr, "missing")),
    };
    let mut mask = ls_brush::decode(rle, h, w).map_err(|e| ctx.err(&fr, e))?;
    for v in &mut mask {
        *v = u8::from(*v != 0);
    }
    coco_rle::encode(&mask, h, w).map_err(|e| ctx.err(&fr, e))
}

/// A polygon region's mask: `value.points` (percent) in pixels, rasterised.
fn polygon_rle(ctx: &Ctx, value: &J, f: &str, h: usize, w: usize) -> Result<coco_rle::Rle> {
    let fp = format!("{f}.value.points");
    let pts = value.get("points").ok_or_else(|| ctx.err(&fp, "missing"))?;
    let pts = pts.list().ok_or_else(|| {
        ctx.err(
            &fp,
            format!("must be a list of [x, y] points, not {}", pts.kind()),
        )
    })?;
    let mut flat = Vec::with_capacity(2 * pts.len());
    for (i, p) in pts.iter().enumerate() {
        let xy: Option<(f64, f64)> = match p {
            J::Bytes(b) if b.len() == 2 => Some((f64::from(b[0]), f64::from(b[1]))),
            J::List(v) if v.len() == 2 => v[0].number().zip(v[1].number()),
            _ => None,
        };
        let (x, y) = xy.ok_or_else(|| {
            ctx.err(
                &format!("{fp}[{i}]"),
                format!("a point must be [x, y], two numbers, not {}", p.kind()),
            )
        })?;
        flat.push(x / 100.0 * w as f64);
        flat.push(y / 100.0 * h as f64);
    }
    coco_rle::from_polygons(&[flat], h, w).map_err(|e| ctx.err(&fp, e))
}

fn read_task(
    path: &Path,
    t: usize,
    task: &J,
    cats: &mut Cats,
    seen: &mut HashMap<String, usize>,
) -> Result<DocImage> {
    let at = |f: &str, msg: String| bad(path, None, &format!("[{t}]{f}"), msg);
    if !matches!(task, J::Object(_)) {
        return Err(at(
            "",
            format!(
                "task {t} (counting from 0) must be an object, not {}",
                task.kind()
            ),
        ));
    }
    let key = match task.get("id") {
        Some(J::UInt(v)) => v.to_string(),
        Some(J::Int(v)) => v.to_string(),
        Some(J::Str(s)) if !s.is_empty() => s.clone(),
        Some(other) => {
            return Err(at(
                ".id",
                format!(
                    "task {t} (counting from 0): its id must be an integer or a non-empty string, not {}",
                    other.kind()
                ),
            ));
        }
        None => {
            return Err(at(".id", format!("task {t} (counting from 0) has no id")));
        }
    };
    let ctx = Ctx {
        path,
        item: key.clone(),
    };
    if let Some(first) = seen.insert(key.clone(), t) {
        return Err(ctx.err(
            "id",
            format!("two tasks have this id: tasks {first} and {t} (counting from 0)"),
        ));
    }
    let data = object(&ctx, task.get("data"), "data")?;
    let file_name = match data.get("image") {
        Some(J::Str(s)) => s.clone(),
        Some(other) => {
            return Err(ctx.err(
                "data.image",
                format!("must be a string, not {}", other.kind()),
            ));
        }
        None => data
            .first_string()
            .ok_or_else(|| ctx.err("data", "no image: no data.image, and no string value"))?
            .to_string(),
    };
    let item = match data.get("triage_id") {
        None | Some(J::Null) => None,
        Some(J::Str(s)) => Some(s.clone()),
        Some(J::UInt(v)) => Some(v.to_string()),
        Some(J::Int(v)) => Some(v.to_string()),
        Some(other) => {
            return Err(ctx.err(
                "data.triage_id",
                format!("must be a string, not {}", other.kind()),
            ));
        }
    };
    let akey = if task.get("annotations").is_none() && task.get("completions").is_some() {
        "completions"
    } else {
        "annotations"
    };
    let anns: &[J] = match task.get(akey) {
        None | Some(J::Null) => &[],
        Some(j) => j.list().ok_or_else(|| {
            ctx.err(
                akey,
                format!("must be a list of annotations, not {}", j.kind()),
            )
        })?,
    };
    let mut size: Option<(usize, usize, String)> = None;
    let mut annotations = Vec::new();
    let mut keys: Vec<Latest> = Vec::new();
    for (k, a) in anns.iter().enumerate() {
        let f = format!("{akey}[{k}]");
        if !matches!(a, J::Object(_)) {
            return Err(ctx.err(&f, format!("must be an object, not {}", a.kind())));
        }
        match a.get("was_cancelled") {
            None | Some(J::Null) | Some(J::Bool(false)) => {}
            Some(J::Bool(true)) => continue,
            Some(other) => {
                return Err(ctx.err(
                    &format!("{f}.was_cancelled"),
                    format!("must be true or false, not {}", other.kind()),
                ));
            }
        }
        keys.push(latest_key(&ctx, a, &f)?);
        let annotator = annotator(&ctx, a, &f)?;
        let fr = format!("{f}.result");
        let results = match a.get("result") {
            Some(j) => j.list().ok_or_else(|| {
                ctx.err(&fr, format!("must be a list of results, not {}", j.kind()))
            })?,
            None => return Err(ctx.err(&fr, "missing")),
        };
        let mut ann = DocAnnotation {
            annotator,
            regions: Vec::new(),
            tags: Vec::new(),
        };
        for (m, r) in results.iter().enumerate() {
            let f = format!("{fr}[{m}]");
            if !matches!(r, J::Object(_)) {
                return Err(ctx.err(&f, format!("must be an object, not {}", r.kind())));
            }
            let ty = match r.get("type") {
                Some(J::Str(s)) => s.to_ascii_lowercase(),
                Some(other) => {
                    return Err(ctx.err(
                        &format!("{f}.type"),
                        format!("must be a string, not {}", other.kind()),
                    ));
                }
                None => return Err(ctx.err(&format!("{f}.type"), "missing")),
            };
            match ty.as_str() {
                "choices" => {
                    let value = object(&ctx, r.get("value"), &format!("{f}.value"))?;
                    for c in strings(&ctx, value.get("choices"), &format!("{f}.value.choices"))? {
                        ann.tags.push(cats.id(c));
                    }
                }
                "brushlabels" | "polygonlabels" => {
                    let value = object(&ctx, r.get("value"), &format!("{f}.value"))?;
                    let names = labels(&ctx, value, &ty, &f)?;
                    let (h, w) = region_size(&ctx, r, &f, &mut size)?;
                    let rle = if ty == "brushlabels" {
                        brush_rle(&ctx, value, &f, h, w)?
                    } else {
                        polygon_rle(&ctx, value, &f, h, w)?
                    };
                    for name in names {
                        ann.regions.push(DocRegion {
                            category: cats.id(name),
                            crowd: false,
                            rle: rle.clone(),
                        });
                    }
                }
                _ => {}
            }
        }
        annotations.push(ann);
    }
    let official = keys
        .iter()
        .enumerate()
        .max_by(|(i, a), (j, b)| a.cmp(b).then(i.cmp(j)))
        .map(|(i, _)| i);
    let (height, width) = size.map_or((0, 0), |(h, w, _)| (h, w));
    Ok(DocImage {
        key,
        file_name,
        item,
        height,
        width,
        annotations,
        official,
    })
}

// ---------------------------------------------------------------------------
// write

#[derive(Serialize)]
struct OutTask<'a> {
    data: OutData<'a>,
    predictions: Vec<OutPrediction<'a>>,
}

#[derive(Serialize)]
struct OutData<'a> {
    image: &'a str,
    triage_id: &'a str,
    triage_rank: usize,
    triage_priority: f64,
    triage_reasons: String,
}

#[derive(Serialize)]
struct OutPrediction<'a> {
    model_version: &'static str,
    score: f64,
    result: Vec<OutResult<'a>>,
}

#[derive(Serialize)]
struct OutResult<'a> {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    from_name: &'static str,
    to_name: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    original_width: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    original_height: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image_rotation: Option<u32>,
    value: OutValue<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum OutValue<'a> {
    Choices {
        choices: [&'a str; 1],
    },
    Brush {
        format: &'static str,
        rle: Vec<u8>,
        brushlabels: [&'a str; 1],
    },
}

/// The control and object tag names of [`label_config`], which every result
/// [`write()`] writes names.
const FROM_NAME: &str = "label";
const TO_NAME: &str = "image";

/// The results of one label (`tag` prefixes the result ids).
fn results<'a>(
    meta: &'a ExportMeta,
    item: &ExportItem,
    label: &ItemLabel,
    tag: &str,
) -> Result<Vec<OutResult<'a>>> {
    let internal = |msg: String| Error::Internal(format!("export item {:?}: {msg}", item.id));
    let name = |c: usize| -> Result<&'a str> {
        meta.class_names.get(c).map(String::as_str).ok_or_else(|| {
            internal(format!(
                "class {c} has no name ({} classes)",
                meta.class_names.len()
            ))
        })
    };
    match (meta.task, label) {
        (Task::Classification, ItemLabel::Class(c)) => Ok(vec![OutResult {
            id: format!("{tag}_choice"),
            kind: "choices",
            from_name: FROM_NAME,
            to_name: TO_NAME,
            original_width: None,
            original_height: None,
            image_rotation: None,
            value: OutValue::Choices {
                choices: [name(*c as usize)?],
            },
        }]),
        (Task::Segmentation, ItemLabel::Mask(mask)) => {
            let (h, w) = (item.height, item.width);
            if Some(mask.len()) != h.checked_mul(w) {
                return Err(internal(format!(
                    "its mask has {} values, not {h} x {w}",
                    mask.len()
                )));
            }
            let mut present = vec![false; meta.class_names.len()];
            for &v in mask.iter().filter(|&&v| v != meta.ignore_index) {
                match present.get_mut(usize::from(v)) {
                    Some(p) => *p = true,
                    None => {
                        return Err(internal(format!(
                            "its mask has class {v}, which has no name ({} classes, ignore index {})",
                            meta.class_names.len(),
                            meta.ignore_index
                        )));
                    }
                }
            }
            let mut out = Vec::new();
            let mut buf = vec![0u8; mask.len()];
            for (c, _) in present.iter().enumerate().filter(|(_, p)| **p) {
                for (b, &v) in buf.iter_mut().zip(mask.iter()) {
                    *b = if usize::from(v) == c { 255 } else { 0 };
                }
                let rle = ls_brush::encode(&buf, h, w).map_err(internal)?;
                out.push(OutResult {
                    id: format!("{tag}_{c}"),
                    kind: "brushlabels",
                    from_name: FROM_NAME,
                    to_name: TO_NAME,
                    original_width: Some(w),
                    original_height: Some(h),
                    image_rotation: Some(0),
                    value: OutValue::Brush {
                        format: "rle",
                        rle,
                        brushlabels: [name(c)?],
                    },
                });
            }
            Ok(out)
        }
        (task, _) => Err(internal(format!(
            "a label of the wrong kind for a {} dataset",
            task.name()
        ))),
    }
}

/// Write the items as Label Studio tasks to import (Import → upload the
/// file, or `POST /api/projects/{id}/import`): a JSON list, one task a
/// line, in queue order (see the module's contract). Errors
/// ([`Error::Internal`]) on an item inconsistent with `meta`: a label of
/// the other task kind, a class without a name, a mask that is not
/// `height × width`.
pub fn write(meta: &ExportMeta, items: &[ExportItem]) -> Result<Vec<u8>> {
    let mut out = b"[".to_vec();
    for (i, item) in items.iter().enumerate() {
        let mut predictions = Vec::with_capacity(2);
        if let Some(current) = &item.current {
            predictions.push(OutPrediction {
                model_version: "current annotation",
                score: item.priority,
                result: results(meta, item, current, "current")?,
            });
        }
        predictions.push(OutPrediction {
            model_version: "model",
            score: item.priority,
            result: results(meta, item, &item.predicted, "model")?,
        });
        let task = OutTask {
            data: OutData {
                image: &item.image,
                triage_id: &item.id,
                triage_rank: item.rank,
                triage_priority: item.priority,
                triage_reasons: item.reasons.join("; "),
            },
            predictions,
        };
        out.extend_from_slice(if i == 0 { b"\n" } else { b",\n" });
        serde_json::to_writer(&mut out, &task)
            .map_err(|e| Error::Internal(format!("writing the Label Studio tasks: {e}")))?;
    }
    out.extend_from_slice(if items.is_empty() { b"]\n" } else { b"\n]\n" });
    Ok(out)
}

/// `s` as XML attribute text: `& < > " '` as entities, tab, line feed and
/// carriage return as character references (kept through attribute
/// normalisation), and the characters XML 1.0 cannot hold (other controls,
/// U+FFFE, U+FFFF) as U+FFFD.
fn xml_attr(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            '\t' => o.push_str("&#9;"),
            '\n' => o.push_str("&#10;"),
            '\r' => o.push_str("&#13;"),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => o.push('\u{FFFD}'),
            c => o.push(c),
        }
    }
    o
}

/// The Label Studio labelling config (XML) that fits the tasks [`write()`]
/// writes: an `<Image name="image" value="$image"/>` and, for
/// segmentation, `<BrushLabels name="label" toName="image">` with one
/// `<Label value="..."/>` per class, for classification `<Choices
/// name="label" toName="image" choice="single">` with one `<Choice
/// value="..."/>` per class, in class id order. Names are XML-escaped
/// (`& < > " '` as entities, tab and line breaks as character references);
/// a control character XML 1.0 cannot hold becomes U+FFFD, so such a class
/// no longer matches its results.
pub fn label_config(meta: &ExportMeta) -> String {
    let (open, child, close) = match meta.task {
        Task::Segmentation => (
            format!("<BrushLabels name=\"{FROM_NAME}\" toName=\"{TO_NAME}\">"),
            "Label",
            "</BrushLabels>",
        ),
        Task::Classification => (
            format!("<Choices name=\"{FROM_NAME}\" toName=\"{TO_NAME}\" choice=\"single\">"),
            "Choice",
            "</Choices>",
        ),
    };
    let mut s = format!("<View>\n  <Image name=\"{TO_NAME}\" value=\"$image\"/>\n  {open}\n");
    for name in &meta.class_names {
        s.push_str(&format!("    <{child} value=\"{}\"/>\n", xml_attr(name)));
    }
    s.push_str(&format!("  {close}\n</View>\n"));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::coco_rle::{decode as rle_decode, to_string};
    use proptest::prelude::*;
    use serde_json::{Value, json};

    fn file() -> &'static Path {
        Path::new("export.json")
    }

    fn parse_v(v: &Value) -> Result<Doc> {
        parse(file(), v.to_string().as_bytes())
    }

    fn err_v(v: &Value) -> String {
        parse_v(v).unwrap_err().to_string()
    }

    /// `[255, 0]` on a 1 × 2 image: ls_brush's hand-worked stream (and
    /// label-studio-sdk's `mask2rle` of it).
    const RLE_255_0: [u8; 11] = [0, 0, 0, 8, 57, 27, 252, 127, 241, 128, 0];
    /// `[0, 255]` on a 1 × 2 image (`mask2rle`).
    const RLE_0_255: [u8; 11] = [0, 0, 0, 8, 57, 27, 252, 96, 17, 255, 128];
    /// `[[0, 255, 255], [0, 0, 255]]` on a 2 × 3 image (`mask2rle`);
    /// column-major 0 0 | 1 0 | 1 1: COCO counts 2, 1, 1, 2.
    const RLE_2X3: [u8; 14] = [0, 0, 0, 24, 57, 27, 252, 96, 19, 255, 206, 1, 31, 248];

    fn brush(label: &str, rle: &[u8], h: usize, w: usize) -> Value {
        json!({
            "id": "r", "type": "brushlabels", "from_name": "tag", "to_name": "image",
            "original_width": w, "original_height": h, "image_rotation": 0,
            "value": {"format": "rle", "rle": rle, "brushlabels": [label]}
        })
    }

    fn counts(r: &DocRegion) -> (usize, usize, Vec<u32>) {
        (r.rle.h, r.rle.w, r.rle.counts.clone())
    }

    /// Three tasks: brush regions by two annotators (the second, later by
    /// its time zone, official) and a cancelled third (dropped, its label
    /// never a category); choices with `data` lacking `image`; an
    /// unlabelled task.
    #[test]
    fn hand_worked_export() {
        let v = json!([
            {"id": 7, "data": {"image": "a.png"}, "annotations": [
                {"id": 1, "completed_by": 4, "created_at": "2024-01-01T00:00:00Z",
                 "updated_at": "2024-01-02T00:00:00Z",
                 "result": [brush("road", &RLE_2X3, 2, 3),
                            {"type": "rectanglelabels", "value": {"x": 1, "rectanglelabels": ["box"]}}]},
                {"id": 2, "completed_by": {"email": "b@x.org", "id": 9},
                 "created_at": "2024-01-01T00:00:00Z",
                 "updated_at": "2024-01-01T23:00:00-02:00",
                 "result": [brush("car", &RLE_2X3, 2, 3), brush("road", &RLE_2X3, 2, 3)]},
                {"id": 3, "completed_by": 5, "was_cancelled": true,
                 "updated_at": "2030-01-01T00:00:00Z", "result": [brush("sky", &RLE_2X3, 2, 3)]}
            ]},
            {"id": "t2", "data": {"n": 3, "photo": "b.png", "other": "c.png"}, "annotations": [
                {"result": [{"type": "Choices", "value": {"choices": ["car", "bus"]}}]}
            ]},
            {"id": 9, "data": {"image": "c.png"}, "annotations": []}
        ]);
        let doc = parse_v(&v).unwrap();
        let names: Vec<(i64, &str)> = doc
            .categories
            .iter()
            .map(|c| (c.id, c.name.as_str()))
            .collect();
        assert_eq!(names, vec![(0, "road"), (1, "car"), (2, "bus")]);
        assert_eq!(doc.images.len(), 3);
        let a = &doc.images[0];
        assert_eq!(
            (a.key.as_str(), a.file_name.as_str(), a.height, a.width),
            ("7", "a.png", 2, 3)
        );
        assert_eq!(a.annotations.len(), 2);
        assert_eq!(a.annotations[0].annotator.as_deref(), Some("4"));
        assert_eq!(a.annotations[1].annotator.as_deref(), Some("b@x.org"));
        let r = &a.annotations[0].regions;
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].category, r[0].crowd), (0, false));
        assert_eq!(counts(&r[0]), (2, 3, vec![2, 1, 1, 2]));
        let r = &a.annotations[1].regions;
        assert_eq!(r.iter().map(|r| r.category).collect::<Vec<_>>(), vec![1, 0]);
        // 2024-01-01T23:00-02:00 is 2024-01-02T01:00Z, after the first's
        assert_eq!(a.official, Some(1));
        let b = &doc.images[1];
        assert_eq!(
            (b.key.as_str(), b.file_name.as_str(), b.height, b.width),
            ("t2", "b.png", 0, 0)
        );
        assert_eq!(b.annotations.len(), 1);
        assert_eq!(b.annotations[0].annotator, None);
        assert_eq!(b.annotations[0].tags, vec![1, 2]);
        assert!(b.annotations[0].regions.is_empty());
        assert_eq!(b.official, Some(0));
        let c = &doc.images[2];
        assert_eq!(
            (c.annotations.len(), c.official, c.height, c.width),
            (0, None, 0, 0)
        );
    }

    /// The square (10 %, 10 %) to (40 %, 40 %) of a 10 × 10 image is the
    /// pixel square (1, 1) to (4, 4): pixel centres 1, 2, 3 in x and y
    /// (coco_rle's hand-worked square). Column-major: 11 zeros, then per
    /// column 1 to 3 three ones and 7 zeros, the last run 100 - 34 = 66.
    #[test]
    fn hand_worked_polygon() {
        let v = json!([{"id": 1, "data": {"image": "p.png"}, "annotations": [{"result": [
            {"type": "polygonlabels", "original_width": 10, "original_height": 10,
             "value": {"points": [[10, 10], [40, 10.0], [40, 40], [10, 40]], "closed": true,
                       "polygonlabels": ["sq"]}}
        ]}]}]);
        let doc = parse_v(&v).unwrap();
        let r = &doc.images[0].annotations[0].regions[0];
        assert_eq!(counts(r), (10, 10, vec![11, 3, 7, 3, 7, 3, 66]));
    }

    /// Brush masks read through the alpha channel: `[255, 0]` and `[0,
    /// 255]` on 1 × 2, two regions of two annotators of one task.
    #[test]
    fn hand_worked_brush_pixels() {
        let v = json!([{"id": 1, "data": {"image": "x"}, "annotations": [
            {"result": [brush("a", &RLE_255_0, 1, 2)]},
            {"result": [brush("a", &RLE_0_255, 1, 2)]}
        ]}]);
        let doc = parse_v(&v).unwrap();
        let im = &doc.images[0];
        assert_eq!(counts(&im.annotations[0].regions[0]), (1, 2, vec![0, 1, 1]));
        assert_eq!(counts(&im.annotations[1].regions[0]), (1, 2, vec![1, 1]));
        // no times, no ids: the last in file order is the latest
        assert_eq!(im.official, Some(1));
    }

    #[test]
    fn latest_annotation_order() {
        let official = |anns: Value| {
            let v = json!([{"id": 1, "data": {"image": "x"}, "annotations": anns}]);
            parse_v(&v).unwrap().images[0].official
        };
        let t = "2024-05-01T10:00:00Z";
        let later = "2024-05-01T10:00:00.000001Z";
        // updated_at first, whatever created_at says
        assert_eq!(
            official(json!([
            {"updated_at": later, "created_at": t, "result": []},
            {"updated_at": t, "created_at": later, "result": []}])),
            Some(0)
        );
        // a missing updated_at is older than any
        assert_eq!(
            official(json!([
            {"updated_at": t, "result": []}, {"created_at": later, "result": []}])),
            Some(0)
        );
        // equal updated_at: created_at
        assert_eq!(
            official(json!([
            {"updated_at": t, "created_at": later, "result": []},
            {"updated_at": t, "created_at": t, "result": []}])),
            Some(0)
        );
        // equal times: the larger integer id (strings of digits too)
        assert_eq!(
            official(json!([
            {"id": "12", "updated_at": t, "result": []},
            {"id": 9, "updated_at": t, "result": []}])),
            Some(0)
        );
        // equal everything: the last in file order
        assert_eq!(
            official(json!([
            {"id": 9, "updated_at": t, "result": []},
            {"id": 9, "updated_at": t, "result": []}])),
            Some(1)
        );
        // cancelled ones are dropped before the count: index among the kept
        assert_eq!(
            official(json!([
            {"was_cancelled": true, "updated_at": later, "result": []},
            {"updated_at": t, "result": []}])),
            Some(0)
        );
        // all cancelled: unlabelled
        assert_eq!(
            official(json!([{"was_cancelled": true, "result": []}])),
            None
        );
    }

    /// Times checked against Python's `datetime.fromisoformat(...).timestamp()`.
    #[test]
    fn iso_times() {
        assert_eq!(
            parse_time("2021-03-09T22:16:08.728353Z"),
            Some((1_615_328_168, 728_353_000))
        );
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some((0, 0)));
        assert_eq!(parse_time("1970-01-01T00:00:00"), Some((0, 0)));
        assert_eq!(
            parse_time("2024-01-01T23:00:00-02:00"),
            Some((1_704_157_200, 0))
        );
        assert_eq!(
            parse_time("2024-01-01T23:00:00-0200"),
            Some((1_704_157_200, 0))
        );
        assert_eq!(
            parse_time("1969-12-31T23:59:59.5Z"),
            Some((-1, 500_000_000))
        );
        assert_eq!(
            parse_time("2000-02-29 12:00:00+05:30"),
            Some((951_805_800, 0))
        );
        assert_eq!(
            parse_time("2000-02-29T12:00:00.1234567891234Z"),
            Some((951_825_600, 123_456_789))
        );
        for bad in [
            "",
            "2021",
            "2021-03-09",
            "2021-13-09T00:00:00Z",
            "2021-03-09T24:00:00Z",
            "2021-03-09T00:00:00.Z",
            "2021-03-09T00:00:00ZZ",
            "2021-03-09T00:00:00+5",
            "2021-03-09X00:00:00Z",
            "２021-03-09T00:00:00Z",
            "2021-03-09T00:00:00+05:30x",
        ] {
            assert_eq!(parse_time(bad), None, "{bad:?}");
        }
    }

    fn data_file(name: &str) -> Vec<u8> {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/labelstudio")
            .join(name);
        std::fs::read(p).unwrap()
    }

    /// A real export (label-studio-sdk's test data): the polygon read, the
    /// rectangle and key points skipped. The expected counts are
    /// pycocotools' (`frPyObjects` of the points in pixels, `merge`), 265
    /// pixels.
    #[test]
    fn real_export_from_label_studio_sdk() {
        let doc = parse(file(), &data_file("sdk_test_export_coco.json")).unwrap();
        assert_eq!(
            doc.categories,
            vec![Category {
                id: 0,
                name: "polygon_label".into()
            }]
        );
        let im = &doc.images[0];
        assert_eq!(
            (im.key.as_str(), im.file_name.as_str()),
            ("175210175", "test_image1.jpg")
        );
        assert_eq!((im.height, im.width, im.official), (320, 500, Some(0)));
        let a = &im.annotations[0];
        assert_eq!(
            (a.annotator.as_deref(), a.tags.len(), a.regions.len()),
            (None, 0, 1)
        );
        assert_eq!(
            to_string(&a.regions[0].rle),
            "dPQ2c0U982N2N1O2N1O2N2N101N1O2N1O2N2N1O2N1OiXe2"
        );
        let area: usize = rle_decode(&a.regions[0].rle)
            .unwrap()
            .iter()
            .map(|&v| v as usize)
            .sum();
        assert_eq!(area, 265);
    }

    /// Label Studio's documented task (a string annotation id,
    /// `completed_by` 10, a rectangle, predictions): one annotation with
    /// nothing read in it.
    #[test]
    fn documented_task_format_example() {
        let doc = parse(file(), &data_file("docs_task_format.json")).unwrap();
        assert!(doc.categories.is_empty());
        let im = &doc.images[0];
        assert_eq!(im.key, "1");
        assert_eq!(
            im.file_name,
            "https://example.com/opensource/label-studio/1.jpg"
        );
        assert_eq!((im.height, im.width, im.official), (0, 0, Some(0)));
        assert_eq!(
            im.annotations,
            vec![DocAnnotation {
                annotator: Some("10".into()),
                regions: vec![],
                tags: vec![]
            }]
        );
    }

    /// A brush RLE written by thi.ng's encoder (Label Studio's editor), with
    /// literal chunks and an anti-aliased pixel of alpha 128.
    #[test]
    fn editor_brush_rle() {
        let doc = parse(file(), &data_file("editor_brush.json")).unwrap();
        assert_eq!(
            doc.categories,
            vec![Category {
                id: 0,
                name: "cell".into()
            }]
        );
        let im = &doc.images[0];
        assert_eq!((im.key.as_str(), im.height, im.width), ("12", 6, 8));
        assert_eq!(im.annotations.len(), 1, "the cancelled one is dropped");
        assert_eq!(
            im.annotations[0].annotator.as_deref(),
            Some("ann@example.com")
        );
        let m = rle_decode(&im.annotations[0].regions[0].rle).unwrap();
        for y in 0..6 {
            for x in 0..8 {
                let inside = ((1..=4).contains(&y) && (2..=6).contains(&x)) || (y, x) == (5, 2);
                assert_eq!(m[y * 8 + x], u8::from(inside), "pixel row {y} column {x}");
            }
        }
    }

    /// Real exports of Label Studio 1.23.2 (`benches/labelstudio_roundtrip.py`):
    /// tasks triage wrote, reviewed through the API. The official annotation
    /// of each task is what the reviewer left, as the SDK decodes it
    /// (`*_expected.json`), the skipped and untouched tasks unlabelled.
    #[test]
    fn real_label_studio_1_23_exports() {
        for kind in ["seg", "cls"] {
            let doc = parse(file(), &data_file(&format!("ls-1.23.2_{kind}_export.json"))).unwrap();
            let want: Value =
                serde_json::from_slice(&data_file(&format!("ls-1.23.2_{kind}_expected.json")))
                    .unwrap();
            assert_eq!(doc.images.len(), want["kept"].as_object().unwrap().len());
            for im in &doc.images {
                // the writer's image is /img/{triage_id}.png
                let tid = im
                    .file_name
                    .trim_start_matches("/img/")
                    .trim_end_matches(".png");
                assert_eq!(
                    Some(im.annotations.len() as u64),
                    want["kept"][tid].as_u64(),
                    "{tid}"
                );
                let expected = &want["expected"][tid];
                let Some(o) = im.official else {
                    assert!(expected.is_null(), "{tid}: unlabelled, expected {expected}");
                    continue;
                };
                let a = &im.annotations[o];
                assert_eq!(a.annotator.as_deref(), Some("1"), "{tid}");
                let name = |c: usize| doc.categories[c].name.as_str();
                if kind == "cls" {
                    assert_eq!(
                        a.tags.iter().map(|&t| name(t)).collect::<Vec<_>>(),
                        vec![expected.as_str().unwrap()]
                    );
                    continue;
                }
                assert_eq!((im.height, im.width), (24, 32));
                let mut got: Vec<Value> = vec![Value::Null; 24 * 32];
                for r in &a.regions {
                    for (p, &v) in rle_decode(&r.rle).unwrap().iter().enumerate() {
                        if v == 1 {
                            assert!(got[p].is_null(), "{tid}: pixel {p} in two regions");
                            got[p] = json!(name(r.category));
                        }
                    }
                }
                assert_eq!(&Value::Array(got), expected, "{tid}");
            }
        }
    }

    /// Every error names the file, the task and the field.
    #[test]
    fn errors_name_file_task_and_field() {
        let task = |anns: Value| json!([{"id": 7, "data": {"image": "a"}, "annotations": anns}]);
        let res = |r: Value| task(json!([{"result": [r]}]));
        let b = |value: Value| {
            res(
                json!({"type": "brushlabels", "original_width": 2, "original_height": 1, "value": value}),
            )
        };
        let cases: Vec<(Value, &str, &str)> = vec![
            (json!({"id": 1}), "", "list of tasks, not an object"),
            (json!([3]), "[0]", "must be an object, not a number"),
            (json!([{"data": {"image": "a"}}]), "[0].id", "has no id"),
            (
                json!([{"id": 1.5, "data": {"image": "a"}}]),
                "[0].id",
                "integer or a non-empty string",
            ),
            (
                json!([{"id": "", "data": {"image": "a"}}]),
                "[0].id",
                "non-empty string",
            ),
            (
                json!([{"id": 7, "data": {"image": "a"}}, {"id": "7", "data": {"image": "b"}}]),
                "id",
                "tasks 0 and 1",
            ),
            (json!([{"id": 7}]), "data", "missing"),
            (
                json!([{"id": 7, "data": "a.png"}]),
                "data",
                "must be an object",
            ),
            (
                json!([{"id": 7, "data": {"image": 3}}]),
                "data.image",
                "must be a string",
            ),
            (json!([{"id": 7, "data": {"n": 3}}]), "data", "no image"),
            (
                json!([{"id": 7, "data": {"image": "a"}, "annotations": {}}]),
                "annotations",
                "must be a list",
            ),
            (
                json!([{"id": 7, "data": {"image": "a"}, "completions": 1}]),
                "completions",
                "must be a list",
            ),
            (task(json!([1])), "annotations", "not a list of numbers"),
            (
                task(json!([{"result": []}, 1])),
                "annotations[1]",
                "must be an object, not a number",
            ),
            (
                task(json!([{"was_cancelled": "no", "result": []}])),
                "annotations[0].was_cancelled",
                "true or false",
            ),
            (
                task(json!([{"completed_by": [], "result": []}])),
                "annotations[0].completed_by",
                "user id",
            ),
            (
                task(json!([{"completed_by": {"first_name": "A"}, "result": []}])),
                "annotations[0].completed_by",
                "neither",
            ),
            (
                task(json!([{"updated_at": "yesterday", "result": []}])),
                "annotations[0].updated_at",
                "ISO 8601",
            ),
            (
                task(json!([{"created_at": 5, "result": []}])),
                "annotations[0].created_at",
                "must be a time",
            ),
            (task(json!([{}])), "annotations[0].result", "missing"),
            (
                task(json!([{"result": {}}])),
                "annotations[0].result",
                "must be a list",
            ),
            (
                res(json!("x")),
                "annotations[0].result[0]",
                "must be an object",
            ),
            (
                res(json!({"value": {}})),
                "annotations[0].result[0].type",
                "missing",
            ),
            (
                res(json!({"type": 1})),
                "annotations[0].result[0].type",
                "must be a string",
            ),
            (
                res(json!({"type": "choices"})),
                "annotations[0].result[0].value",
                "missing",
            ),
            (
                res(json!({"type": "choices", "value": {"choices": "a"}})),
                "annotations[0].result[0].value.choices",
                "list of strings",
            ),
            (
                res(json!({"type": "choices", "value": {"choices": ["a", 2]}})),
                "annotations[0].result[0].value.choices[1]",
                "must be a string",
            ),
            (
                b(json!({"rle": RLE_255_0})),
                "annotations[0].result[0].value.brushlabels",
                "missing",
            ),
            (
                b(json!({"rle": RLE_255_0, "brushlabels": []})),
                "annotations[0].result[0].value.brushlabels",
                "no label",
            ),
            (
                b(json!({"format": "png", "rle": RLE_255_0, "brushlabels": ["a"]})),
                "annotations[0].result[0].value.format",
                "\"png\"",
            ),
            (
                b(json!({"brushlabels": ["a"]})),
                "annotations[0].result[0].value.rle",
                "missing",
            ),
            (
                b(json!({"rle": "AAAA", "brushlabels": ["a"]})),
                "annotations[0].result[0].value.rle",
                "list of bytes",
            ),
            (
                b(json!({"rle": [0, 1, 256], "brushlabels": ["a"]})),
                "annotations[0].result[0].value.rle[2]",
                "256 is not a byte",
            ),
            (
                b(json!({"rle": [0, -1], "brushlabels": ["a"]})),
                "annotations[0].result[0].value.rle[1]",
                "-1 is not a byte",
            ),
            (
                b(json!({"rle": &RLE_255_0[..9], "brushlabels": ["a"]})),
                "annotations[0].result[0].value.rle",
                "ends inside",
            ),
            (
                b(json!({"rle": RLE_2X3, "brushlabels": ["a"]})),
                "annotations[0].result[0].value.rle",
                "24 values, not 4 * h * w = 8",
            ),
            (
                res(
                    json!({"type": "brushlabels", "original_width": 2, "value": {"rle": RLE_255_0, "brushlabels": ["a"]}}),
                ),
                "annotations[0].result[0].original_height",
                "missing",
            ),
            (
                res(
                    json!({"type": "brushlabels", "original_width": 2, "original_height": 1.5, "value": {"rle": RLE_255_0, "brushlabels": ["a"]}}),
                ),
                "annotations[0].result[0].original_height",
                "non-negative integer",
            ),
            (
                res(
                    json!({"type": "brushlabels", "original_width": 100_000, "original_height": 100_000, "value": {"rle": RLE_255_0, "brushlabels": ["a"]}}),
                ),
                "annotations[0].result[0].value.rle",
                "limit",
            ),
            (
                task(
                    json!([{"result": [brush("a", &RLE_255_0, 1, 2)]}, {"result": [brush("a", &RLE_2X3, 2, 3)]}]),
                ),
                "annotations[1].result[0].original_height",
                "2 x 3 (height x width) here, 1 x 2 at annotations[0].result[0]",
            ),
            (
                res(
                    json!({"type": "polygonlabels", "original_width": 10, "original_height": 10, "value": {"polygonlabels": ["a"]}}),
                ),
                "annotations[0].result[0].value.points",
                "missing",
            ),
            (
                res(
                    json!({"type": "polygonlabels", "original_width": 10, "original_height": 10, "value": {"points": [[1, 2], [3]], "polygonlabels": ["a"]}}),
                ),
                "annotations[0].result[0].value.points[1]",
                "[x, y]",
            ),
            (
                res(
                    json!({"type": "polygonlabels", "original_width": 10, "original_height": 10, "value": {"points": [[1, 2], [3, "4"]], "polygonlabels": ["a"]}}),
                ),
                "annotations[0].result[0].value.points[1]",
                "[x, y]",
            ),
            (
                res(
                    json!({"type": "polygonlabels", "original_width": 10, "original_height": 10, "value": {"points": [[1, 2], [3, 4]], "polygonlabels": ["a"]}}),
                ),
                "annotations[0].result[0].value.points",
                "fewer than 3",
            ),
            (
                res(
                    json!({"type": "polygonlabels", "original_width": 10, "original_height": 10, "value": {"points": [[1, 2], [3, 4], [1e308, 4]], "polygonlabels": ["a"]}}),
                ),
                "annotations[0].result[0].value.points",
                "finite",
            ),
            (
                res(
                    json!({"type": "polygonlabels", "original_width": 0, "original_height": 10, "value": {"points": [[1, 2], [3, 4], [5, 6]], "polygonlabels": ["a"]}}),
                ),
                "annotations[0].result[0].value.points",
                "empty",
            ),
        ];
        for (v, field, msg) in cases {
            let e = err_v(&v);
            assert!(e.starts_with("export.json: "), "{e}");
            assert!(
                e.contains(&format!(": {field}: ")) || field.is_empty(),
                "field {field:?} not in {e}"
            );
            if !field.starts_with('[') && !field.is_empty() {
                assert!(e.contains("item \"7\""), "task id not in {e}");
            }
            assert!(e.contains(msg), "{msg:?} not in {e}");
        }
        // malformed JSON: serde's line and column
        let e = parse(file(), b"[{\"id\": 1,\n  \"data\": }]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2 column"), "{e}");
        let e = parse(file(), b"").unwrap_err().to_string();
        assert!(e.contains("not valid JSON"), "{e}");
    }

    fn meta(task: Task, names: &[&str], ignore: u16) -> ExportMeta {
        ExportMeta {
            task,
            class_names: names.iter().map(|s| s.to_string()).collect(),
            ignore_index: ignore,
        }
    }

    fn item(
        id: &str,
        h: usize,
        w: usize,
        current: Option<ItemLabel>,
        predicted: ItemLabel,
    ) -> ExportItem {
        ExportItem {
            id: id.into(),
            image: format!("/img/{id}.png"),
            height: h,
            width: w,
            rank: 1,
            priority: 0.5,
            reasons: vec!["disagrees with the model".into(), "rare class".into()],
            current,
            predicted,
        }
    }

    /// The bytes written, by hand: the 1 × 2 mask [class 1, class 0] gives
    /// one brush result per class, in class order: class 0 on pixel 1
    /// (`[0, 255]`), class 1 on pixel 0 (`[255, 0]`); the ignore index is
    /// in no region.
    #[test]
    fn hand_worked_write() {
        let m = meta(Task::Segmentation, &["bg", "cat"], 255);
        let items = [
            item(
                "a",
                1,
                2,
                Some(ItemLabel::Mask(vec![1, 0])),
                ItemLabel::Mask(vec![255, 1]),
            ),
            item("b", 1, 2, None, ItemLabel::Mask(vec![255, 255])),
        ];
        let out = String::from_utf8(write(&m, &items).unwrap()).unwrap();
        let brush = |id: &str, rle: &[u8], name: &str| {
            format!(
                r#"{{"id":"{id}","type":"brushlabels","from_name":"label","to_name":"image","original_width":2,"original_height":1,"image_rotation":0,"value":{{"format":"rle","rle":{},"brushlabels":["{name}"]}}}}"#,
                serde_json::to_string(rle).unwrap()
            )
        };
        let data = |id: &str| {
            format!(
                r#""data":{{"image":"/img/{id}.png","triage_id":"{id}","triage_rank":1,"triage_priority":0.5,"triage_reasons":"disagrees with the model; rare class"}}"#
            )
        };
        let want = format!(
            "[\n{{{},\"predictions\":[{{\"model_version\":\"current annotation\",\"score\":0.5,\"result\":[{},{}]}},{{\"model_version\":\"model\",\"score\":0.5,\"result\":[{}]}}]}},\n{{{},\"predictions\":[{{\"model_version\":\"model\",\"score\":0.5,\"result\":[]}}]}}\n]\n",
            data("a"),
            brush("current_0", &RLE_0_255, "bg"),
            brush("current_1", &RLE_255_0, "cat"),
            brush("model_1", &RLE_0_255, "cat"),
            data("b"),
        );
        assert_eq!(out, want);
        // classification
        let m = meta(Task::Classification, &["dog", "cat"], 255);
        let it = item("c", 0, 0, Some(ItemLabel::Class(1)), ItemLabel::Class(0));
        let out = String::from_utf8(write(&m, &[it]).unwrap()).unwrap();
        let choice = |id: &str, name: &str| {
            format!(
                r#"{{"id":"{id}_choice","type":"choices","from_name":"label","to_name":"image","value":{{"choices":["{name}"]}}}}"#
            )
        };
        let want = format!(
            "[\n{{{},\"predictions\":[{{\"model_version\":\"current annotation\",\"score\":0.5,\"result\":[{}]}},{{\"model_version\":\"model\",\"score\":0.5,\"result\":[{}]}}]}}\n]\n",
            data("c"),
            choice("current", "cat"),
            choice("model", "dog")
        );
        assert_eq!(out, want);
        assert_eq!(write(&m, &[]).unwrap(), b"[]\n");
    }

    #[test]
    fn write_refuses_inconsistent_items() {
        let seg = meta(Task::Segmentation, &["bg", "cat"], 255);
        let cls = meta(Task::Classification, &["bg", "cat"], 255);
        let bad = [
            (
                &seg,
                item("a", 1, 2, None, ItemLabel::Mask(vec![0, 2])),
                "class 2",
            ),
            (
                &seg,
                item("a", 1, 2, None, ItemLabel::Mask(vec![0])),
                "1 values, not 1 x 2",
            ),
            (
                &seg,
                item("a", 1, 2, None, ItemLabel::Class(0)),
                "wrong kind",
            ),
            (
                &cls,
                item("a", 0, 0, None, ItemLabel::Class(2)),
                "class 2 has no name",
            ),
            (
                &cls,
                item(
                    "a",
                    0,
                    0,
                    Some(ItemLabel::Mask(vec![])),
                    ItemLabel::Class(0),
                ),
                "wrong kind",
            ),
        ];
        for (m, it, msg) in bad {
            let e = write(m, &[it]).unwrap_err();
            assert!(matches!(e, Error::Internal(_)), "{e}");
            assert!(
                e.to_string().contains(msg) && e.to_string().contains("\"a\""),
                "{msg:?} not in {e}"
            );
        }
    }

    #[test]
    fn hand_worked_label_config() {
        let m = meta(
            Task::Segmentation,
            &["road", "a&b <c> \"d\" 'e'", "tab\there\u{1}"],
            255,
        );
        assert_eq!(
            label_config(&m),
            "<View>\n  <Image name=\"image\" value=\"$image\"/>\n  <BrushLabels name=\"label\" toName=\"image\">\n    <Label value=\"road\"/>\n    <Label value=\"a&amp;b &lt;c&gt; &quot;d&quot; &apos;e&apos;\"/>\n    <Label value=\"tab&#9;here\u{FFFD}\"/>\n  </BrushLabels>\n</View>\n"
        );
        let m = meta(Task::Classification, &["cat", "dog"], 255);
        assert_eq!(
            label_config(&m),
            "<View>\n  <Image name=\"image\" value=\"$image\"/>\n  <Choices name=\"label\" toName=\"image\" choice=\"single\">\n    <Choice value=\"cat\"/>\n    <Choice value=\"dog\"/>\n  </Choices>\n</View>\n"
        );
    }

    const NAMES: [&str; 5] = ["bg", "a&b", "<x>", "é \"q\"", "sky"];

    /// An item drawn for the round trip: height, width, the current label's
    /// values (none: unlabelled), the predicted label's values (a mask, or
    /// one value: the class).
    type RawItem = (usize, usize, Option<Vec<u16>>, Vec<u16>);

    /// Segmentation or not, the number of classes, the ignore index, items.
    fn export_case() -> impl Strategy<Value = (bool, usize, u16, Vec<RawItem>)> {
        (
            any::<bool>(),
            1usize..=5,
            prop_oneof![Just(255u16), Just(0u16)],
        )
            .prop_flat_map(|(seg, k, ignore)| {
                let items = proptest::collection::vec(
                    (1usize..9, 1usize..9).prop_flat_map(move |(h, w)| {
                        let n = if seg { h * w } else { 1 };
                        let v = move || {
                            proptest::collection::vec(
                                prop_oneof![3 => 0u16..k as u16, 1 => Just(ignore)],
                                n,
                            )
                        };
                        (Just(h), Just(w), proptest::option::of(v()), v())
                    }),
                    0..5,
                );
                (Just(seg), Just(k), Just(ignore), items)
            })
    }

    proptest! {
        /// Tasks written by `write`, whose first prediction a reviewer
        /// accepts as the annotation (Label Studio copies a prediction's
        /// results into the new annotation), parsed back: each item's
        /// current label (the model's for an unlabelled item), exactly.
        #[test]
        fn round_trip_through_a_reviewer((seg, k, ignore, raw) in export_case()) {
            let m = meta(
                if seg { Task::Segmentation } else { Task::Classification },
                &NAMES[..k],
                ignore,
            );
            let label = |v: &Vec<u16>| -> Option<ItemLabel> {
                if seg {
                    Some(ItemLabel::Mask(v.clone()))
                } else if v[0] == ignore {
                    None // no class
                } else {
                    Some(ItemLabel::Class(u32::from(v[0])))
                }
            };
            let mut items = Vec::new();
            for (i, (h, w, cur, pred)) in raw.iter().enumerate() {
                let (h, w) = if seg { (*h, *w) } else { (0, 0) };
                let Some(predicted) = label(pred) else { continue };
                let current = cur.as_ref().and_then(label);
                let mut it = item(&format!("i{i}"), h, w, current, predicted);
                it.rank = i + 1;
                items.push(it);
            }
            let written: Value = serde_json::from_slice(&write(&m, &items).unwrap()).unwrap();
            let export: Vec<Value> = written
                .as_array()
                .unwrap()
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    let accepted = &t["predictions"][0];
                    json!({
                        "id": 100 + i, "data": t["data"], "predictions": t["predictions"],
                        "annotations": [{"id": 1, "completed_by": 1, "was_cancelled": false,
                                         "created_at": "2024-05-01T10:00:00Z",
                                         "updated_at": "2024-05-01T10:00:00Z",
                                         "result": accepted["result"]}]
                    })
                })
                .collect();
            let doc = parse_v(&Value::Array(export)).unwrap();
            prop_assert_eq!(doc.images.len(), items.len());
            for (it, im) in items.iter().zip(&doc.images) {
                prop_assert_eq!(&im.file_name, &it.image);
                let a = &im.annotations[im.official.unwrap()];
                let want = it.current.as_ref().unwrap_or(&it.predicted);
                let class_of = |c: usize| {
                    NAMES.iter().position(|n| *n == doc.categories[c].name).unwrap()
                };
                match want {
                    ItemLabel::Class(c) => {
                        prop_assert_eq!(a.tags.iter().map(|&t| class_of(t)).collect::<Vec<_>>(), vec![*c as usize]);
                        prop_assert!(a.regions.is_empty());
                    }
                    ItemLabel::Mask(mask) => {
                        prop_assert!(a.tags.is_empty());
                        let mut got = vec![ignore; it.height * it.width];
                        for r in &a.regions {
                            prop_assert_eq!((r.rle.h, r.rle.w), (it.height, it.width));
                            for (p, &v) in rle_decode(&r.rle).unwrap().iter().enumerate() {
                                if v == 1 {
                                    prop_assert_eq!(got[p], ignore, "pixel {} in two regions", p);
                                    got[p] = class_of(r.category) as u16;
                                }
                            }
                        }
                        prop_assert_eq!(&got, mask);
                        let any = mask.iter().any(|&v| v != ignore);
                        let size = if any { (it.height, it.width) } else { (0, 0) };
                        prop_assert_eq!((im.height, im.width), size);
                    }
                }
            }
        }

        /// Hostile exports: any value of a real export replaced by another
        /// (of any type, out of range, huge sizes), or its bytes cut or
        /// changed, is read or refused, never a panic.
        #[test]
        fn damaged_exports_never_panic(
            which in 0usize..5,
            at in any::<prop::sample::Index>(),
            with in 0usize..22,
            cut in any::<prop::sample::Index>(),
            byte in any::<u8>(),
            how in 0usize..3,
        ) {
            let name = [
                "sdk_test_export_coco.json",
                "editor_brush.json",
                "docs_task_format.json",
                "ls-1.23.2_seg_export.json",
                "ls-1.23.2_cls_export.json",
            ][which];
            let bytes = data_file(name);
            let mut v: Value = serde_json::from_slice(&bytes).unwrap();
            let mut paths = Vec::new();
            fn walk(v: &Value, p: String, out: &mut Vec<String>) {
                out.push(p.clone());
                match v {
                    Value::Array(a) => a.iter().enumerate().for_each(|(i, e)| walk(e, format!("{p}/{i}"), out)),
                    Value::Object(o) => o.iter().for_each(|(k, e)| walk(e, format!("{p}/{}", k.replace('~', "~0").replace('/', "~1")), out)),
                    _ => {}
                }
            }
            walk(&v, String::new(), &mut paths);
            let replacement = [
                json!(null), json!(true), json!(-1), json!(0), json!(255), json!(256),
                json!(1e300), json!(-1e300), json!(""), json!("x"), json!([]), json!({}),
                json!([300]), json!([1, 2]), json!([[1, 2], [3]]), json!("2021-13-01T00:00:00Z"),
                json!(4_294_967_295u64), json!(16384), json!(u64::MAX), json!(i64::MIN),
                json!([[0, 0], [1e9, 0], [1e9, 1e9]]), json!({"email": 3}),
            ][with].clone();
            *v.pointer_mut(&paths[at.index(paths.len())]).unwrap() = replacement;
            let _ = parse_v(&v);
            let mut b = bytes.clone();
            match how {
                0 => b.truncate(cut.index(b.len())),
                1 => { let i = cut.index(b.len()); b[i] = byte; }
                _ => { let i = cut.index(b.len()); b.insert(i, byte); }
            }
            let _ = parse(file(), &b);
        }
    }
}
