//! Labels where teams keep them (issue 28): the same masks given as PNG,
//! palette PNG, COCO (compressed RLE), CVAT XML and a Label Studio export
//! give the same queue and report; Cityscapes ids through `label_map`;
//! bad labels files are named errors with nothing written; the round
//! trip export → review → review-import → apply.

use std::path::{Path, PathBuf};

use crate::common::*;
use serde_json::{Value, json};
use triage::io::coco_rle;

const H: usize = 21;
const W: usize = 19;
const CLASSES: [&str; 4] = ["background", "cell", "vessel", "nucleus"];

/// A synthetic segmentation dataset (PNG masks) of `n` items of odd size.
fn base(d: &Path, n: usize) {
    let a = [
        "synth", "--items", &n.to_string(), "--size", "21", "19", "--classes", "4",
        "--seed", "5", "--out", d.to_str().unwrap(),
    ];
    let o = triage(&a);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&a, &o));
}

/// The items (id, mask path) of `items.csv`, in order.
fn items(d: &Path) -> Vec<(String, PathBuf)> {
    let mut r = csv::Reader::from_path(d.join("items.csv")).unwrap();
    let h = r.headers().unwrap().clone();
    let (id, mask) = (
        h.iter().position(|c| c == "id").unwrap(),
        h.iter().position(|c| c == "mask").unwrap(),
    );
    r.records()
        .map(|x| {
            let x = x.unwrap();
            (x[id].to_string(), d.join(&x[mask]))
        })
        .collect()
}

fn read_png(path: &Path) -> Vec<u16> {
    triage::io::mask::read_mask(path, "x", (H, W), 4, 255).unwrap()
}

/// The queue rows without the columns that name input files.
fn queue_sans_inputs(out: &Path) -> Vec<Value> {
    read_queue(out)
        .into_iter()
        .map(|mut r| {
            for k in ["mask", "image", "split"] {
                r.as_object_mut().unwrap().remove(k);
            }
            r
        })
        .collect()
}

/// report.json without what names the inputs or the run's timing.
fn report_sans_inputs(out: &Path) -> Value {
    let mut r = read_report(out);
    let o = r.as_object_mut().unwrap();
    for k in ["timings", "memory", "backend"] {
        o.remove(k);
    }
    o["options"].as_object_mut().unwrap().remove("dataset");
    r
}

/// A dataset directory holding `probs.npy` and `embeddings.npy` of `from`
/// and `triage.toml` = `toml`.
fn sibling(from: &Path, to: &Path, toml: &str) {
    std::fs::create_dir_all(to).unwrap();
    for f in ["probs.npy", "embeddings.npy"] {
        std::fs::copy(from.join(f), to.join(f)).unwrap();
    }
    std::fs::write(to.join("triage.toml"), toml).unwrap();
}

const CLASSES_TOML: &str = "classes = [\"background\", \"cell\", \"vessel\", \"nucleus\"]\n";

fn toml_with(key: &str, file: &str) -> String {
    format!(
        "task = \"segmentation\"\n{CLASSES_TOML}[inputs]\n{key} = \"{file}\"\nprobs = \"probs.npy\"\nembeddings = \"embeddings.npy\"\n"
    )
}

/// Per class present (ignore excluded), the class's binary mask.
fn per_class(m: &[u16]) -> Vec<(usize, Vec<u8>)> {
    (0..CLASSES.len())
        .filter_map(|k| {
            let bits: Vec<u8> = m.iter().map(|&v| u8::from(v as usize == k)).collect();
            bits.contains(&1).then_some((k, bits))
        })
        .collect()
}

/// COCO instances: one compressed-RLE annotation per (image, class other
/// than background), categories ids 1.. named as the classes; background
/// is what no region covers; the ignore pixels are one crowd region.
fn write_coco(path: &Path, masks: &[(String, Vec<u16>)]) {
    let mut images = vec![];
    let mut anns = vec![];
    for (i, (id, m)) in masks.iter().enumerate() {
        images.push(json!({"id": i + 100, "file_name": format!("imgs/{id}.jpg"), "height": H, "width": W}));
        for (k, bits) in per_class(m) {
            if k == 0 {
                continue;
            }
            let rle = coco_rle::encode(&bits, H, W).unwrap();
            anns.push(json!({
                "id": anns.len() + 1, "image_id": i + 100, "category_id": k, "iscrowd": 0,
                "segmentation": {"size": [H, W], "counts": coco_rle::to_string(&rle)},
            }));
        }
        let ignored: Vec<u8> = m.iter().map(|&v| u8::from(v == 255)).collect();
        if ignored.contains(&1) {
            let rle = coco_rle::encode(&ignored, H, W).unwrap();
            anns.push(json!({
                "id": anns.len() + 1, "image_id": i + 100, "category_id": 1, "iscrowd": 1,
                "segmentation": {"size": [H, W], "counts": rle.counts},
            }));
        }
    }
    let cats: Vec<Value> = (1..CLASSES.len())
        .map(|k| json!({"id": k, "name": CLASSES[k]}))
        .collect();
    let doc = json!({"images": images, "annotations": anns, "categories": cats});
    std::fs::write(path, serde_json::to_vec(&doc).unwrap()).unwrap();
}

fn export_items(masks: &[(String, Vec<u16>)]) -> Vec<triage::io::labelfile::ExportItem> {
    use triage::io::labelfile::{ExportItem, ItemLabel};
    masks
        .iter()
        .enumerate()
        .map(|(i, (id, m))| ExportItem {
            id: id.clone(),
            image: format!("{id}.png"),
            height: H,
            width: W,
            rank: i + 1,
            priority: 0.5,
            reasons: vec![],
            current: Some(ItemLabel::Mask(m.clone())),
            predicted: ItemLabel::Mask(m.clone()),
        })
        .collect()
}

fn meta() -> triage::io::labelfile::ExportMeta {
    triage::io::labelfile::ExportMeta {
        task: triage::config::Task::Segmentation,
        class_names: CLASSES.iter().map(|s| s.to_string()).collect(),
        ignore_index: 255,
    }
}

/// Label Studio tasks as a reviewer leaves them after accepting the
/// current annotation: `predictions[0]` becomes the annotation.
fn accept_predictions(tasks: &[u8]) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(tasks).unwrap();
    for (t, task) in v.as_array_mut().unwrap().iter_mut().enumerate() {
        let o = task.as_object_mut().unwrap();
        let pred = o["predictions"][0].clone();
        o.insert("id".into(), json!(t + 1));
        o.insert(
            "annotations".into(),
            json!([{"id": t + 1, "completed_by": 1, "was_cancelled": false,
                    "created_at": "2026-12-01T10:00:00Z", "updated_at": "2026-12-01T10:00:00Z",
                    "result": pred["result"]}]),
        );
        o.remove("predictions");
    }
    serde_json::to_vec(&v).unwrap()
}

#[test]
fn the_same_masks_in_every_format_give_the_same_queue_and_report() {
    let tmp = tempfile::tempdir().unwrap();
    let png = tmp.path().join("png");
    base(&png, 10);
    let list = items(&png);
    let masks: Vec<(String, Vec<u16>)> = list.iter().map(|(id, p)| (id.clone(), read_png(p))).collect();
    assert!(masks.iter().any(|(_, m)| m.contains(&255)), "the synthetic masks have ignore pixels");
    let out_png = tmp.path().join("out-png");
    run_ok(&png, &out_png, &["--backend", "cpu"]);
    let want_queue = queue_sans_inputs(&out_png);
    let want_report = report_sans_inputs(&out_png);
    assert!(want_queue.len() >= 3);

    // Palette PNG: the same indices, a colour palette that is not the identity.
    let pal = tmp.path().join("palette");
    copy_dir(&png, &pal);
    for ((_, p), (_, m)) in list.iter().zip(&masks) {
        let target = pal.join(p.strip_prefix(&png).unwrap());
        let f = std::fs::File::create(&target).unwrap();
        let mut enc = png::Encoder::new(std::io::BufWriter::new(f), W as u32, H as u32);
        enc.set_color(png::ColorType::Indexed);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_palette(vec![0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0]);
        let mut w = enc.write_header().unwrap();
        w.write_image_data(&m.iter().map(|&v| v as u8).collect::<Vec<_>>()).unwrap();
    }

    let coco = tmp.path().join("coco");
    sibling(&png, &coco, &toml_with("coco", "instances.json"));
    write_coco(&coco.join("instances.json"), &masks);

    let cvat = tmp.path().join("cvat");
    // CVAT and Label Studio get a region per class, background included;
    // the ignore pixels are those no region covers.
    let unlabeled_ignore = "unlabeled = \"ignore\"\n";
    sibling(&png, &cvat, &(toml_with("cvat", "annotations.xml") + unlabeled_ignore));
    let xml = triage::io::labelfile::cvat::write(&meta(), &export_items(&masks)).unwrap();
    std::fs::write(cvat.join("annotations.xml"), xml).unwrap();

    let ls = tmp.path().join("ls");
    sibling(&png, &ls, &(toml_with("labelstudio", "export.json") + unlabeled_ignore));
    let tasks = triage::io::labelfile::labelstudio::write(&meta(), &export_items(&masks)).unwrap();
    std::fs::write(ls.join("export.json"), accept_predictions(&tasks)).unwrap();

    for (name, d) in [("palette", &pal), ("coco", &coco), ("cvat", &cvat), ("labelstudio", &ls)] {
        let out = tmp.path().join(format!("out-{name}"));
        run_ok(d, &out, &["--backend", "cpu"]);
        assert_eq!(queue_sans_inputs(&out), want_queue, "{name}: queue.jsonl differs from the PNG masks'");
        assert_eq!(report_sans_inputs(&out), want_report, "{name}: report.json differs from the PNG masks'");
    }
}

#[test]
fn coco_crowd_regions_are_ignored_and_overlaps_follow_the_rule() {
    // One 4x5 image, two classes' regions overlapping on column 2, and a
    // crowd region on the last row. Hand-worked maps:
    // later on top (default): the region listed second wins column 2.
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (h, w) = (4usize, 5usize);
    // Region a (class 1): columns 0..=2, rows 0..=2 (9 px); region b
    // (class 2): column 2..=3, rows 0..=2 (6 px); crowd: row 3.
    let rect = |r0: usize, r1: usize, c0: usize, c1: usize| {
        let mut m = vec![0u8; h * w];
        for r in r0..=r1 {
            for c in c0..=c1 {
                m[r * w + c] = 1;
            }
        }
        coco_rle::to_string(&coco_rle::encode(&m, h, w).unwrap())
    };
    let doc = json!({
        "images": [{"id": 1, "file_name": "a.png", "height": h, "width": w}],
        "categories": [{"id": 1, "name": "cell"}, {"id": 2, "name": "vessel"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "segmentation": {"size": [h, w], "counts": rect(0, 2, 0, 2)}},
            {"id": 2, "image_id": 1, "category_id": 2, "iscrowd": 0, "segmentation": {"size": [h, w], "counts": rect(0, 2, 2, 3)}},
            {"id": 3, "image_id": 1, "category_id": 1, "iscrowd": 1, "segmentation": {"size": [h, w], "counts": rect(3, 3, 0, 4)}},
        ],
    });
    std::fs::write(d.join("instances.json"), doc.to_string()).unwrap();
    write_f32(&d.join("probs.npy"), &[1, 3, h, w], &vec![1.0 / 3.0; 3 * h * w]);
    let map = |overlap: &str| {
        std::fs::write(
            d.join("triage.toml"),
            format!("task = \"segmentation\"\n[inputs]\ncoco = \"instances.json\"\nprobs = \"probs.npy\"\n{overlap}"),
        )
        .unwrap();
        let cfg = triage::io::load_dataset(d).unwrap();
        assert_eq!(cfg.class_names, ["background", "cell", "vessel"], "classes: background + categories in id order");
        triage::io::labelfile::mask(&cfg, "a", 0, (h, w)).unwrap().unwrap()
    };
    #[rustfmt::skip]
    let later = vec![
        1, 1, 2, 2, 0,
        1, 1, 2, 2, 0,
        1, 1, 2, 2, 0,
        255, 255, 255, 255, 255,
    ];
    assert_eq!(map(""), later);
    #[rustfmt::skip]
    let smaller = vec![
        1, 1, 2, 2, 0,
        1, 1, 2, 2, 0,
        1, 1, 2, 2, 0,
        255, 255, 255, 255, 255,
    ];
    // b (6 px) is smaller than a (9 px): on top either way here; swap the
    // order in the file so the rules differ.
    assert_eq!(map("overlap = \"smaller\"\n"), smaller);
    let mut swapped = doc.clone();
    swapped["annotations"].as_array_mut().unwrap().swap(0, 1);
    std::fs::write(d.join("instances.json"), swapped.to_string()).unwrap();
    #[rustfmt::skip]
    let later_swapped = vec![
        1, 1, 1, 2, 0,
        1, 1, 1, 2, 0,
        1, 1, 1, 2, 0,
        255, 255, 255, 255, 255,
    ];
    assert_eq!(map(""), later_swapped, "later on top: a now wins column 2");
    assert_eq!(map("overlap = \"smaller\"\n"), smaller, "smaller on top: b wins column 2 whatever the order");
    #[rustfmt::skip]
    let ignore_fill = vec![
        1, 1, 1, 2, 255,
        1, 1, 1, 2, 255,
        1, 1, 1, 2, 255,
        255, 255, 255, 255, 255,
    ];
    std::fs::write(
        d.join("triage.toml"),
        "task = \"segmentation\"\nclasses = [\"cell\", \"vessel\"]\n[inputs]\ncoco = \"instances.json\"\nprobs = \"probs.npy\"\nunlabeled = \"ignore\"\n",
    )
    .unwrap();
    write_f32(&d.join("probs.npy"), &[1, 2, h, w], &vec![0.5; 2 * h * w]);
    let cfg = triage::io::load_dataset(d).unwrap();
    let m = triage::io::labelfile::mask(&cfg, "a", 0, (h, w)).unwrap().unwrap();
    let want: Vec<u16> = ignore_fill.iter().map(|&v| if v == 255 { 255 } else { v - 1 }).collect();
    assert_eq!(m, want, "unlabeled = ignore; classes listed map categories by name");
}

#[test]
fn cityscapes_label_ids_map_to_train_ids() {
    // labelIds 7 (road) -> 0, 26 (car) -> 1, 24 (person) -> 2, others
    // (0 unlabeled, 1 ego vehicle) -> 255.
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::create_dir(d.join("m")).unwrap();
    write_mask(&d.join("m/a.png"), 2, 3, &[7, 26, 24, 0, 1, 7]);
    std::fs::write(d.join("items.csv"), "id,mask\na,m/a.png\n").unwrap();
    write_f32(&d.join("probs.npy"), &[1, 3, 2, 3], &[1.0 / 3.0; 18]);
    std::fs::write(
        d.join("triage.toml"),
        "task = \"segmentation\"\nclasses = [\"road\", \"car\", \"person\"]\n[inputs]\nitems = \"items.csv\"\nprobs = \"probs.npy\"\n[label_map]\n7 = 0\n26 = 1\n24 = 2\n",
    )
    .unwrap();
    let cfg = triage::io::load_dataset(d).unwrap();
    let m = triage::io::mask::read_dataset_mask(&cfg, &d.join("m/a.png"), "a", (2, 3)).unwrap();
    assert_eq!(m, [0, 1, 2, 255, 255, 0]);
    let out = tmp.path().join("out");
    run_ok(d, &out, &["--backend", "cpu"]);
    let r = read_report(&out);
    // 4 pixels counted (2 ignored): the confusion matrix sums to 4.
    let total: u64 = r["confusion"].as_array().unwrap().iter().flat_map(|row| row.as_array().unwrap()).map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(total, 4);
    std::fs::write(
        d.join("triage.toml"),
        "task = \"segmentation\"\nclasses = [\"road\", \"car\", \"person\"]\n[inputs]\nitems = \"items.csv\"\nprobs = \"probs.npy\"\n[label_map]\n7 = 3\n",
    )
    .unwrap();
    let e = triage::io::load_dataset(d).unwrap_err().to_string();
    assert!(e.contains("label_map.7") && e.contains("maps to 3"), "{e}");
}

/// `triage run` on `d` fails with exit 2, an error containing every
/// `needle`, and writes nothing.
fn refused(d: &Path, needles: &[&str]) {
    let out = d.join("out");
    let args = cpu_args(d, &out, &[]);
    let o = triage(&args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{}", describe(&args, &o));
    for n in needles {
        assert!(err.contains(n), "missing {n:?} in: {err}");
    }
    assert!(!out.exists(), "nothing written");
}

#[test]
fn bad_labels_files_are_named_errors_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let png = tmp.path().join("png");
    base(&png, 3);
    let masks: Vec<(String, Vec<u16>)> = items(&png).iter().map(|(id, p)| (id.clone(), read_png(p))).collect();
    let d = tmp.path().join("coco");
    sibling(&png, &d, &toml_with("coco", "instances.json"));
    let f = d.join("instances.json");

    std::fs::write(&f, b"{\"images\": [").unwrap();
    refused(&d, &["instances.json"]);

    // RLE counts that do not sum to H*W.
    write_coco(&f, &masks);
    let mut v: Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
    v["annotations"][0]["segmentation"]["counts"] = json!("1");
    std::fs::write(&f, v.to_string()).unwrap();
    refused(&d, &["instances.json", "segmentation"]);

    // An image more than the probabilities have rows for.
    write_coco(&f, &masks);
    let mut v: Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
    v["images"].as_array_mut().unwrap().push(json!({"id": 999, "file_name": "extra.png", "height": H, "width": W}));
    std::fs::write(&f, v.to_string()).unwrap();
    refused(&d, &["probs.npy", "3 items of probabilities but 4 rows", "instances.json"]);

    // With an items CSV: an image of the file with no probabilities, and
    // probabilities with no labels.
    write_coco(&f, &masks);
    let ids: Vec<&str> = masks.iter().map(|(id, _)| id.as_str()).collect();
    std::fs::write(d.join("items.csv"), format!("id\n{}\n{}\nghost\n", ids[0], ids[1])).unwrap();
    let t = toml_with("coco", "instances.json").replace("[inputs]\n", "[inputs]\nitems = \"items.csv\"\n");
    std::fs::write(d.join("triage.toml"), &t).unwrap();
    refused(&d, &["items.csv", "ghost", "no image in the labels file"]);
    std::fs::write(d.join("items.csv"), format!("id\n{}\n{}\n", ids[0], ids[1])).unwrap();
    refused(&d, &["instances.json", ids[2], "has no probabilities"]);

    // A category that is no class.
    write_coco(&f, &masks);
    let mut v: Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
    v["categories"][0]["name"] = json!("tumour");
    std::fs::write(&f, v.to_string()).unwrap();
    std::fs::write(d.join("triage.toml"), toml_with("coco", "instances.json")).unwrap();
    refused(&d, &["instances.json", "tumour", "categories"]);

    // Two labels files.
    std::fs::write(
        d.join("triage.toml"),
        toml_with("coco", "instances.json").replace("[inputs]\n", "[inputs]\ncvat = \"a.xml\"\n"),
    )
    .unwrap();
    refused(&d, &["triage.toml", "one labels file"]);
}

#[test]
fn label_studio_round_trip_export_review_import_apply() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("data");
    base(&d, 8);
    let out = tmp.path().join("out");
    run_ok(&d, &out, &["--backend", "cpu"]);
    let tasks = tmp.path().join("ls/tasks.json");
    std::fs::create_dir_all(tasks.parent().unwrap()).unwrap();
    let a = [
        "export", "labelstudio", out.to_str().unwrap(), "--dataset", d.to_str().unwrap(),
        "--out", tasks.to_str().unwrap(), "--top", "4", "--images-root", "http://files.local/imgs",
    ];
    let o = triage(&a);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&a, &o));
    assert!(tasks.with_file_name("label_config.xml").exists());
    let queue = read_queue(&out);
    let sent: Value = serde_json::from_slice(&std::fs::read(&tasks).unwrap()).unwrap();
    let sent = sent.as_array().unwrap();
    assert_eq!(sent.len(), 4);
    for (t, row) in sent.iter().zip(&queue) {
        assert_eq!(t["data"]["triage_id"], row["id"], "tasks in queue order");
        assert!(t["data"]["image"].as_str().unwrap().starts_with("http://files.local/imgs/"));
        assert_eq!(t["predictions"][0]["score"].as_f64(), row["priority"].as_f64(), "the current annotation's prediction holds the priority");
    }
    // The reviewer accepts tasks 0 and 2 as they are and repaints task 1
    // (every pixel class 1) and task 3 (class 2).
    let mut reviewed: Value = serde_json::from_slice(&accept_predictions(&std::fs::read(&tasks).unwrap())).unwrap();
    let paint = |k: usize, h: usize, w: usize| -> Value {
        let items = vec![triage::io::labelfile::ExportItem {
            id: "x".into(), image: "x.png".into(), height: h, width: w, rank: 1, priority: 0.0,
            reasons: vec![], current: Some(triage::io::labelfile::ItemLabel::Mask(vec![k as u16; h * w])),
            predicted: triage::io::labelfile::ItemLabel::Mask(vec![k as u16; h * w]),
        }];
        let meta = triage::io::labelfile::ExportMeta {
            task: triage::config::Task::Segmentation,
            class_names: (0..4).map(|c| ["background", "cell", "vessel", "nucleus"][c].to_string()).collect(),
            ignore_index: 255,
        };
        let t: Value = serde_json::from_slice(&triage::io::labelfile::labelstudio::write(&meta, &items).unwrap()).unwrap();
        t[0]["predictions"][0]["result"].clone()
    };
    let (h, w) = (21, 19);
    reviewed[1]["annotations"][0]["result"] = paint(1, h, w);
    reviewed[3]["annotations"][0]["result"] = paint(2, h, w);
    let export = tmp.path().join("ls/export.json");
    std::fs::write(&export, reviewed.to_string()).unwrap();
    let a = ["review-import", d.to_str().unwrap(), export.to_str().unwrap()];
    let o = triage(&a);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&a, &o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("2 confirmed, 2 relabelled"), "{err}");
    let reviews: Vec<Value> = std::fs::read_to_string(d.join("reviews.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let decided: Vec<(&str, &str, bool)> = reviews
        .iter()
        .map(|r| (r["id"].as_str().unwrap(), r["decision"].as_str().unwrap(), r.get("corrected_mask").is_some()))
        .collect();
    let ids: Vec<&str> = queue.iter().take(4).map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(
        decided,
        [(ids[0], "ok", false), (ids[1], "error", true), (ids[2], "ok", false), (ids[3], "error", true)]
    );
    // apply: a new dataset with exactly those two masks replaced.
    let new = tmp.path().join("v2");
    let a = ["apply", d.to_str().unwrap(), "--out", new.to_str().unwrap()];
    let o = triage(&a);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&a, &o));
    let old_items = items(&d);
    let new_items = items(&new);
    assert_eq!(old_items.len(), new_items.len());
    for ((id, old), (id2, newp)) in old_items.iter().zip(&new_items) {
        assert_eq!(id, id2);
        let (a, b) = (read_png(old), read_png(newp));
        if id == ids[1] {
            assert_eq!(b, vec![1; h * w]);
        } else if id == ids[3] {
            assert_eq!(b, vec![2; h * w]);
        } else {
            assert_eq!(a, b, "{id}: unchanged");
        }
    }
    run_ok(&new, &tmp.path().join("out2"), &["--backend", "cpu"]);
}
