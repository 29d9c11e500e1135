//! Labels-file readers fuzzed in process: a valid file mutated by the JSON
//! strategies of `mutate.rs` (bytes, numbers, lines, JSON scalars and
//! arrays) is handed to the reader's `parse` (the bytes, as
//! `labelfile::parse` reads them), which must return within the time limit,
//! without a panic and without an allocation past this process's data
//! limit ([`crate::limit_memory`]); an error must name the file; a `Doc`
//! it accepts must keep the reader's contract (every region an RLE of its
//! image's size whose counts sum to h · w, every category index in range,
//! one annotation at least per image and the first official, or for Label
//! Studio none and no official one, or an official one in range). Readers:
//! COCO JSON, Label Studio JSON (whose brush RLE bytes the mutations reach,
//! so `ls_brush::decode` is fuzzed through it). Failing cases are saved under
//! `target/fuzz-failures/<kind>/`.

use std::path::Path;
use std::time::Instant;

use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, TestRunner};
use serde_json::json;
use triage::error::Result;
use triage::io::labelfile::Doc;

use crate::mutate::{self, Format, Model};

/// Where `doc` breaks the readers' contract, if it does. `unlabelled`: the
/// format may leave an image without annotation (Label Studio: none left
/// once the cancelled ones are dropped; `official` then `None`, else the
/// index of any of them); otherwise every image has one annotation at
/// least and the first is official.
fn contract(doc: &Doc, unlabelled: bool) -> Option<String> {
    let nc = doc.categories.len();
    for w in doc.categories.windows(2) {
        if w[0].id >= w[1].id {
            return Some(format!("categories not sorted by id: {:?}", doc.categories));
        }
    }
    for (i, im) in doc.images.iter().enumerate() {
        let bad_official = if unlabelled {
            im.official.is_none() != im.annotations.is_empty()
                || im.official.is_some_and(|o| o >= im.annotations.len())
        } else {
            im.annotations.is_empty() || im.official != Some(0)
        };
        if bad_official {
            return Some(format!(
                "image {i}: {} annotations, official {:?}",
                im.annotations.len(),
                im.official
            ));
        }
        for a in &im.annotations {
            if let Some(&k) = a.tags.iter().find(|&&k| k >= nc) {
                return Some(format!("image {i}: tag {k} of {nc} categories"));
            }
            for r in &a.regions {
                if r.category >= nc {
                    return Some(format!(
                        "image {i}: region of category {} of {nc}",
                        r.category
                    ));
                }
                if (r.rle.h, r.rle.w) != (im.height, im.width) {
                    return Some(format!(
                        "image {i}: a {} x {} region on a {} x {} image",
                        r.rle.h, r.rle.w, im.height, im.width
                    ));
                }
                let sum: u64 = r.rle.counts.iter().map(|&c| u64::from(c)).sum();
                if sum != (im.height * im.width) as u64 {
                    return Some(format!("image {i}: RLE counts sum to {sum}"));
                }
            }
        }
    }
    None
}

/// Fuzz `parse` from `fixture` (a valid file, saved as `file_name`): the
/// cases of one kind, named `kind`.
fn fuzz_reader(
    kind: &str,
    file_name: &str,
    fixture: &[u8],
    parse: fn(&Path, &[u8]) -> Result<Doc>,
    unlabelled: bool,
) {
    crate::limit_memory();
    let cases = crate::env_num("TRIAGE_FUZZ_CASES", u64::from(crate::DEFAULT_CASES)) * 5;
    let seed = crate::env_num("TRIAGE_FUZZ_SEED", crate::DEFAULT_SEED);
    let only = std::env::var("TRIAGE_FUZZ_CASE")
        .ok()
        .and_then(|v| v.parse::<u64>().ok());
    let limit = crate::limits().timeout;
    let doc = parse(Path::new(file_name), fixture).expect("the fixture parses");
    assert!(
        contract(&doc, unlabelled).is_none(),
        "the fixture keeps the contract"
    );
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join(file_name);
    let mut runner = TestRunner::new_with_rng(Config::default(), crate::rng(seed, kind));
    let strategy = crate::spec(Format::Jsonl);
    let dir = crate::failures_dir(kind);
    let _ = std::fs::remove_dir_all(&dir);
    let (mut ok, mut refused, mut failures) = (0u64, 0u64, Vec::new());
    for case in 0..cases {
        let spec = strategy.new_tree(&mut runner).unwrap().current();
        if only.is_some_and(|n| n != case) {
            continue;
        }
        let mut bytes = fixture.to_vec();
        if mutate::apply(&mut bytes, &Model::Bytes, &spec.muts, root.path()).is_some() {
            // A whole-file replacement (a FIFO, a link): the reader gets
            // bytes, not a path; an empty file stands for them.
            bytes.clear();
        }
        let t = Instant::now();
        let got = std::panic::catch_unwind(|| parse(&path, &bytes));
        let took = t.elapsed();
        let failure = match got {
            Err(_) => Some("panicked".to_string()),
            Ok(_) if took > limit => Some(format!("took {:.1} s", took.as_secs_f64())),
            Ok(Err(e)) => {
                refused += 1;
                let msg = e.to_string();
                (!msg.starts_with(&path.display().to_string()))
                    .then(|| format!("an error that does not name the file: {msg}"))
            }
            Ok(Ok(doc)) => {
                ok += 1;
                contract(&doc, unlabelled).map(|c| format!("accepted, but {c}"))
            }
        };
        if let Some(f) = failure {
            std::fs::create_dir_all(&dir).unwrap();
            let saved = dir.join(format!("case-{case}-{file_name}"));
            std::fs::write(&saved, &bytes).unwrap();
            eprintln!(
                "fuzz {kind}: case {case} (seed {seed:#x}): {f}\n  mutations: {:?}\n  saved: {}",
                spec.muts,
                saved.display()
            );
            failures.push(format!("case {case}: {f}"));
        }
    }
    eprintln!(
        "fuzz {kind}: seed {seed:#018x}: {cases} cases: {ok} parsed, {refused} refused, {} broke a property",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "fuzz {kind}: seed {seed:#x}:\n{}",
        failures.join("\n")
    );
}

/// A small COCO file with every form the reader takes: polygons (one
/// partly outside its image), compressed and uncompressed RLE, a crowd
/// region, tags, several annotators, an image with no annotation.
fn coco_fixture() -> Vec<u8> {
    let v = json!({
        "info": {"year": 2017, "description": "fuzz"},
        "images": [
            {"id": 7, "file_name": "a/b.jpg", "height": 4, "width": 5},
            {"id": 3, "file_name": "c.png", "height": 3, "width": 2},
            {"id": 9, "file_name": "empty.jpg", "height": 2, "width": 2},
        ],
        "categories": [
            {"id": 18, "name": "dog", "supercategory": "animal"},
            {"id": 1, "name": "person"},
            {"id": 5, "name": "car"},
        ],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 18, "iscrowd": 0, "area": 4.0, "bbox": [1, 1, 2, 2],
             "segmentation": [[1, 1, 3, 1, 3, 3, 1, 3], [0, 0, 6.5, 0, 0, 4.5]], "annotator": "bo"},
            {"id": 2, "image_id": 3, "category_id": 5, "iscrowd": 1,
             "segmentation": {"size": [3, 2], "counts": [1, 2, 0, 3]}, "annotator": 42},
            {"id": 4, "image_id": 7, "category_id": 5, "iscrowd": 0,
             "segmentation": {"size": [4, 5], "counts": "3111103ON"}, "annotator": "bo"},
            {"id": 5, "image_id": 7, "category_id": 1, "annotator": 42},
            {"id": 6, "image_id": 3, "category_id": 1, "segmentation": []},
        ],
    });
    serde_json::to_vec_pretty(&v).unwrap()
}

#[test]
fn labelfile_coco() {
    fuzz_reader(
        "labelfile_coco",
        "instances.json",
        &coco_fixture(),
        triage::io::labelfile::coco::parse,
        false,
    );
}

/// A small Label Studio export with every form the reader takes: brush
/// regions (label-studio-sdk's `mask2rle` bytes of `[255, 0]` and `[[0,
/// 255, 255], [0, 0, 255]]`), a polygon in percent, choices, annotators as
/// ids and user objects, times, a cancelled annotation, `data` without
/// `image`, an unlabelled task, a skipped rectangle.
fn labelstudio_fixture() -> Vec<u8> {
    let rle_1x2 = [0, 0, 0, 8, 57, 27, 252, 127, 241, 128, 0];
    let rle_2x3 = [0, 0, 0, 24, 57, 27, 252, 96, 19, 255, 206, 1, 31, 248];
    let brush = |label: &str, rle: &[u8], h: usize, w: usize| {
        json!({"id": "b", "type": "brushlabels", "from_name": "tag", "to_name": "image",
               "original_width": w, "original_height": h, "image_rotation": 0,
               "value": {"format": "rle", "rle": rle, "brushlabels": [label]}})
    };
    let v = json!([
        {"id": 7, "data": {"image": "/data/upload/1/a.png"}, "annotations": [
            {"id": 1, "completed_by": 4, "was_cancelled": false,
             "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-02T00:00:00.5Z",
             "result": [brush("road", &rle_2x3, 2, 3),
                        {"type": "rectanglelabels", "original_width": 3, "original_height": 2,
                         "value": {"x": 1, "y": 2, "width": 3, "height": 4, "rectanglelabels": ["box"]}}]},
            {"id": 2, "completed_by": {"id": 9, "email": "b@x.org"},
             "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T23:00:00-02:00",
             "result": [
                {"type": "polygonlabels", "original_width": 3, "original_height": 2,
                 "value": {"points": [[10, 10], [90.5, 10], [90, 90], [10, 90]], "closed": true,
                           "polygonlabels": ["car"]}},
                brush("road", &rle_2x3, 2, 3)]},
            {"id": 3, "completed_by": 5, "was_cancelled": true, "result": []}
        ], "predictions": [1, 2]},
        {"id": 8, "data": {"n": 3, "photo": "b.png"}, "annotations": [
            {"id": 4, "completed_by": 4, "result": [{"type": "choices", "from_name": "label",
             "to_name": "image", "value": {"choices": ["car", "bus"]}}]}
        ]},
        {"id": 9, "data": {"image": "c.png"}, "annotations": [
            {"id": 5, "result": [brush("sky", &rle_1x2, 1, 2)]}]},
        {"id": 10, "data": {"image": "d.png"}, "annotations": []}
    ]);
    serde_json::to_vec_pretty(&v).unwrap()
}

#[test]
fn labelfile_labelstudio() {
    fuzz_reader(
        "labelfile_labelstudio",
        "export.json",
        &labelstudio_fixture(),
        triage::io::labelfile::labelstudio::parse,
        true,
    );
}
