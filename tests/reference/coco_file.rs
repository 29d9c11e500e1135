//! The COCO reader (`triage::io::labelfile::coco::parse`) against
//! pycocotools' own `COCO(file).annToMask(ann)`: a random COCO file (images
//! of odd sizes, shuffled ids, annotations of every segmentation form:
//! polygon lists self-intersecting and partly outside the image, compressed
//! and uncompressed RLE, crowd regions, tags, several annotators,
//! interleaved across images) is written, pycocotools decodes every
//! annotation's mask (`py/coco_file_ref.py`), and every region `parse`
//! gives must decode to the same pixels, in the order the reader's contract
//! says. Skipped without `TRIAGE_REF_PYTHON`, a failure when
//! `TRIAGE_REQUIRE_REF=1`.

use std::path::Path;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use triage::io::coco_rle::{decode, encode, to_string};
use triage::io::labelfile::coco::parse;

fn random_mask(rng: &mut ChaCha8Rng, h: usize, w: usize) -> Vec<u8> {
    let n = h * w;
    match rng.random_range(0..5) {
        0 => vec![0; n],
        1 => vec![1; n],
        2 => (0..n).map(|_| rng.random_bool(0.1) as u8).collect(),
        3 => (0..n).map(|_| rng.random_bool(0.5) as u8).collect(),
        _ => {
            let mut m = vec![0; n];
            let (y0, x0) = (rng.random_range(0..h), rng.random_range(0..w));
            let (y1, x1) = (rng.random_range(y0..h), rng.random_range(x0..w));
            for y in y0..=y1 {
                for x in x0..=x1 {
                    m[y * w + x] = 1;
                }
            }
            m
        }
    }
}

/// A coordinate from 30% before the axis to 30% after it, sometimes on a
/// half or a tenth (pycocotools' ×5 + .5 rounding near a tie).
fn coord(rng: &mut ChaCha8Rng, len: usize) -> f64 {
    let len = len as f64;
    let v = rng.random_range(-0.3 * len..1.3 * len + 1.0);
    match rng.random_range(0..4) {
        0 => v,
        1 => v.round(),
        2 => (v * 2.0).round() / 2.0,
        _ => (v * 10.0).round() / 10.0,
    }
}

/// 1 to 3 polygons of 3 to 12 points (random points: self-intersecting
/// more often than not), with repeated vertices now and then.
fn random_polygons(rng: &mut ChaCha8Rng, h: usize, w: usize) -> Vec<Vec<f64>> {
    (0..rng.random_range(1..4))
        .map(|_| {
            let k = rng.random_range(3..13);
            let mut p = Vec::with_capacity(2 * k);
            for _ in 0..k {
                if p.len() >= 2 && rng.random_bool(0.1) {
                    let (x, y) = (p[p.len() - 2], p[p.len() - 1]);
                    p.extend([x, y]);
                } else {
                    p.extend([coord(rng, w), coord(rng, h)]);
                }
            }
            p
        })
        .collect()
}

const SIZES: [(usize, usize); 8] = [
    (1, 1),
    (7, 13),
    (64, 33),
    (100, 1),
    (1, 100),
    (13, 7),
    (31, 64),
    (257, 300),
];

/// What the test wrote for one annotation.
struct Ann {
    id: i64,
    image: usize,
    category_id: i64,
    crowd: bool,
    annotator: Option<String>,
    /// Has a segmentation (a region), else a tag.
    region: bool,
}

#[test]
fn coco_file_matches_pycocotools() {
    let Some(python) = std::env::var_os("TRIAGE_REF_PYTHON") else {
        assert!(
            std::env::var("TRIAGE_REQUIRE_REF").as_deref() != Ok("1"),
            "TRIAGE_REQUIRE_REF=1 but TRIAGE_REF_PYTHON is not set"
        );
        eprintln!("skipped the pycocotools reference: set TRIAGE_REF_PYTHON");
        return;
    };
    let mut rng = ChaCha8Rng::seed_from_u64(2028);

    // Categories: shuffled, sparse ids.
    let mut cat_ids: Vec<i64> = vec![1, 3, 7, 18, 90, 1000];
    cat_ids.shuffle(&mut rng);
    let categories: Vec<Value> = cat_ids
        .iter()
        .map(|id| json!({"id": id, "name": format!("c{id}"), "supercategory": "x"}))
        .collect();

    // Images: odd sizes, shuffled ids.
    let n_images = 40;
    let mut image_ids: Vec<i64> = (0..n_images as i64).map(|i| 3 * i + 100).collect();
    image_ids.shuffle(&mut rng);
    let sizes: Vec<(usize, usize)> = (0..n_images)
        .map(|i| {
            if i < SIZES.len() {
                SIZES[i]
            } else {
                (rng.random_range(1..90), rng.random_range(1..90))
            }
        })
        .collect();
    let images: Vec<Value> = (0..n_images)
        .map(|i| {
            json!({"id": image_ids[i], "file_name": format!("dir/img{i}.jpg"),
                   "height": sizes[i].0, "width": sizes[i].1, "license": 1})
        })
        .collect();

    // Annotations: 0 to 7 per image, then shuffled across images.
    let annotators = [None, Some("ann_a".to_string()), Some("7".to_string())];
    let mut anns: Vec<(Ann, Value)> = Vec::new();
    let mut next_id = 1i64;
    for (i, &(h, w)) in sizes.iter().enumerate() {
        let count = if i % 9 == 4 {
            0
        } else {
            rng.random_range(1..8)
        };
        for _ in 0..count {
            let id = next_id;
            next_id += rng.random_range(1..5);
            let category_id = cat_ids[rng.random_range(0..cat_ids.len())];
            let crowd = rng.random_bool(0.2);
            let annotator = annotators[rng.random_range(0..annotators.len())].clone();
            let mut v = json!({"id": id, "image_id": image_ids[i], "category_id": category_id,
                               "iscrowd": u8::from(crowd), "area": 1.0, "bbox": [0, 0, 1, 1]});
            let kind = rng.random_range(0..10);
            let segmentation = match kind {
                0..=3 => Some(json!(random_polygons(&mut rng, h, w))),
                4 | 5 => {
                    let m = random_mask(&mut rng, h, w);
                    let mut counts = encode(&m, h, w).unwrap().counts;
                    if rng.random_bool(0.3) {
                        // Zero-length runs, as some writers leave them.
                        let at = rng.random_range(0..=counts.len());
                        counts.splice(at..at, [0, 0]);
                    }
                    Some(json!({"size": [h, w], "counts": counts}))
                }
                6 | 7 => {
                    let m = random_mask(&mut rng, h, w);
                    let s = to_string(&encode(&m, h, w).unwrap());
                    Some(json!({"size": [h, w], "counts": s}))
                }
                8 => Some(json!([])),
                _ => None,
            };
            let region = matches!(kind, 0..=7);
            if let Some(s) = segmentation {
                v["segmentation"] = s;
            } else if rng.random_bool(0.5) {
                v["segmentation"] = Value::Null;
            }
            match &annotator {
                Some(a) if a == "7" => v["annotator"] = json!(7),
                Some(a) => v["annotator"] = json!(a),
                None => {}
            }
            anns.push((
                Ann {
                    id,
                    image: i,
                    category_id,
                    crowd,
                    annotator,
                    region,
                },
                v,
            ));
        }
    }
    anns.shuffle(&mut rng);
    let file = json!({
        "info": {"description": "triage reference"},
        "licenses": [],
        "images": images,
        "categories": categories,
        "annotations": anns.iter().map(|a| a.1.clone()).collect::<Vec<_>>(),
    });
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("instances.json");
    let bytes = file.to_string();
    std::fs::write(&path, &bytes).unwrap();

    let o = std::process::Command::new(python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/py/coco_file_ref.py"))
        .arg(&path)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let want: Value = serde_json::from_slice(&o.stdout).unwrap();

    let doc = parse(&path, bytes.as_bytes()).unwrap();
    // The categories pycocotools reads, sorted by id (the reader's order).
    let got_cats: Vec<i64> = doc.categories.iter().map(|c| c.id).collect();
    let mut want_cats: Vec<i64> = want["cat_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    want_cats.sort();
    assert_eq!(got_cats, want_cats);
    assert_eq!(doc.images.len(), n_images);
    let (mut regions, mut tags) = (0, 0);
    for (i, image) in doc.images.iter().enumerate() {
        assert_eq!(image.key, image_ids[i].to_string());
        assert_eq!(image.file_name, format!("dir/img{i}.jpg"));
        assert_eq!((image.height, image.width), sizes[i]);
        assert_eq!(image.official, Some(0));
        // The annotations of this image, in file order, grouped by
        // annotator in order of first appearance.
        let mine: Vec<&Ann> = anns.iter().map(|a| &a.0).filter(|a| a.image == i).collect();
        let mut order: Vec<Option<String>> = Vec::new();
        for a in &mine {
            if !order.contains(&a.annotator) {
                order.push(a.annotator.clone());
            }
        }
        if order.is_empty() {
            order.push(None);
        }
        let got: Vec<Option<String>> = image
            .annotations
            .iter()
            .map(|a| a.annotator.clone())
            .collect();
        assert_eq!(got, order, "image {i}: annotators");
        for (group, annotator) in image.annotations.iter().zip(&order) {
            let of: Vec<&&Ann> = mine.iter().filter(|a| &a.annotator == annotator).collect();
            let want_tags: Vec<i64> = of
                .iter()
                .filter(|a| !a.region)
                .map(|a| a.category_id)
                .collect();
            let got_tags: Vec<i64> = group.tags.iter().map(|&k| doc.categories[k].id).collect();
            assert_eq!(
                got_tags, want_tags,
                "image {i}, annotator {annotator:?}: tags"
            );
            tags += got_tags.len();
            let want_regions: Vec<&&&Ann> = of.iter().filter(|a| a.region).collect();
            assert_eq!(group.regions.len(), want_regions.len(), "image {i}");
            for (r, a) in group.regions.iter().zip(want_regions) {
                assert_eq!(doc.categories[r.category].id, a.category_id);
                assert_eq!(r.crowd, a.crowd);
                assert_eq!((r.rle.h, r.rle.w), sizes[i]);
                let pixels: String = decode(&r.rle)
                    .unwrap()
                    .iter()
                    .map(|&v| char::from(b'0' + v))
                    .collect();
                assert_eq!(
                    pixels,
                    want["masks"][a.id.to_string()].as_str().unwrap(),
                    "annotation {} on image {i} ({:?})",
                    a.id,
                    sizes[i]
                );
                regions += 1;
            }
        }
    }
    assert_eq!(
        regions,
        want["masks"].as_object().unwrap().len(),
        "every mask pycocotools made was compared"
    );
    eprintln!("pycocotools agreed on {regions} masks of {n_images} images ({tags} tags checked)");
}
