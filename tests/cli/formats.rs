//! Labels where teams keep them (issue 28): the same masks given as PNG,
//! palette PNG, COCO (compressed RLE), CVAT XML and a Label Studio export
//! give the same queue and report; Cityscapes ids through `label_map`;
//! bad labels files are named errors with nothing written; the round
//! trip export → review → review-import → apply.

use std::path::{Path, PathBuf};

use crate::common::*;
use serde_json::{Value, json};
use triage::io::coco_rle;
use triage::schema::QueueRow;

const H: usize = 21;
const W: usize = 19;
const CLASSES: [&str; 4] = ["background", "cell", "vessel", "nucleus"];

/// A synthetic segmentation dataset (PNG masks) of `n` items of odd size.
fn base(d: &Path, n: usize) {
    let a = [
        "synth",
        "--items",
        &n.to_string(),
        "--size",
        "21",
        "19",
        "--classes",
        "4",
        "--seed",
        "5",
        "--out",
        d.to_str().unwrap(),
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
fn queue_sans_inputs(out: &Path) -> Vec<QueueRow<'static>> {
    read_queue_rows(out)
        .into_iter()
        .map(|mut r| {
            r.carried
                .0
                .retain(|(k, _)| !["mask", "image", "split"].contains(&k.as_ref()));
            // The `leakage` check runs only where the `split` column is
            // (see `report_sans_inputs`).
            r.check_scores.0.retain(|(k, _)| k != "leakage");
            r
        })
        .collect()
}

/// report.json without what names the inputs or the run's timing, nor the
/// `leakage` check (nor its name in the audit raise's text), which reads
/// the `split` column only the PNG dataset's items.csv has (it runs there,
/// finding no pair across splits, and is skipped for the label files).
fn report_sans_inputs(out: &Path) -> Value {
    let mut r = read_report(out);
    let o = r.as_object_mut().unwrap();
    for k in ["timings", "memory", "backend", "started_at"] {
        o.remove(k);
    }
    o["options"].as_object_mut().unwrap().remove("dataset");
    for section in ["checks", "views"] {
        if let Some(s) = o.get_mut(section).and_then(Value::as_object_mut) {
            s.remove("leakage");
        }
    }
    // The audit raise's text names the audit checks that ran: leakage too.
    if let Some(Value::String(t)) = o["priority"].get_mut("audit_raise") {
        *t = t.replace("(leakage, ", "(");
    }
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
        images.push(
            json!({"id": i + 100, "file_name": format!("imgs/{id}.jpg"), "height": H, "width": W}),
        );
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
    let masks: Vec<(String, Vec<u16>)> = list
        .iter()
        .map(|(id, p)| (id.clone(), read_png(p)))
        .collect();
    assert!(
        masks.iter().any(|(_, m)| m.contains(&255)),
        "the synthetic masks have ignore pixels"
    );
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
        w.write_image_data(&m.iter().map(|&v| v as u8).collect::<Vec<_>>())
            .unwrap();
    }

    let coco = tmp.path().join("coco");
    sibling(&png, &coco, &toml_with("coco", "instances.json"));
    write_coco(&coco.join("instances.json"), &masks);

    let cvat = tmp.path().join("cvat");
    // CVAT and Label Studio get a region per class, background included;
    // the ignore pixels are those no region covers.
    let unlabeled_ignore = "unlabeled = \"ignore\"\n";
    sibling(
        &png,
        &cvat,
        &(toml_with("cvat", "annotations.xml") + unlabeled_ignore),
    );
    let xml = triage::io::labelfile::cvat::write(&meta(), &export_items(&masks)).unwrap();
    std::fs::write(cvat.join("annotations.xml"), xml).unwrap();

    let ls = tmp.path().join("ls");
    sibling(
        &png,
        &ls,
        &(toml_with("labelstudio", "export.json") + unlabeled_ignore),
    );
    let tasks = triage::io::labelfile::labelstudio::write(&meta(), &export_items(&masks)).unwrap();
    std::fs::write(ls.join("export.json"), accept_predictions(&tasks)).unwrap();

    for (name, d) in [
        ("palette", &pal),
        ("coco", &coco),
        ("cvat", &cvat),
        ("labelstudio", &ls),
    ] {
        let out = tmp.path().join(format!("out-{name}"));
        run_ok(d, &out, &["--backend", "cpu"]);
        assert_eq!(
            queue_sans_inputs(&out),
            want_queue,
            "{name}: queue.jsonl differs from the PNG masks'"
        );
        assert_eq!(
            report_sans_inputs(&out),
            want_report,
            "{name}: report.json differs from the PNG masks'"
        );
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
    write_f32(
        &d.join("probs.npy"),
        &[1, 3, h, w],
        &vec![1.0 / 3.0; 3 * h * w],
    );
    let map = |overlap: &str| {
        std::fs::write(
            d.join("triage.toml"),
            format!("task = \"segmentation\"\n[inputs]\ncoco = \"instances.json\"\nprobs = \"probs.npy\"\n{overlap}"),
        )
        .unwrap();
        let cfg = triage::io::load_dataset(d).unwrap();
        assert_eq!(
            cfg.class_names,
            ["background", "cell", "vessel"],
            "classes: background + categories in id order"
        );
        triage::io::labelfile::mask(&cfg, "a", 0, (h, w))
            .unwrap()
            .unwrap()
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
    assert_eq!(
        map("overlap = \"smaller\"\n"),
        smaller,
        "smaller on top: b wins column 2 whatever the order"
    );
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
    let m = triage::io::labelfile::mask(&cfg, "a", 0, (h, w))
        .unwrap()
        .unwrap();
    let want: Vec<u16> = ignore_fill
        .iter()
        .map(|&v| if v == 255 { 255 } else { v - 1 })
        .collect();
    assert_eq!(
        m, want,
        "unlabeled = ignore; classes listed map categories by name"
    );
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
    let r = read_report_typed(&out);
    // 4 pixels counted (2 ignored): the confusion matrix sums to 4.
    let total: u64 = r.confusion.iter().flatten().sum();
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
    let masks: Vec<(String, Vec<u16>)> = items(&png)
        .iter()
        .map(|(id, p)| (id.clone(), read_png(p)))
        .collect();
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
    v["images"]
        .as_array_mut()
        .unwrap()
        .push(json!({"id": 999, "file_name": "extra.png", "height": H, "width": W}));
    std::fs::write(&f, v.to_string()).unwrap();
    refused(
        &d,
        &[
            "probs.npy",
            "3 items of probabilities but 4 rows",
            "instances.json",
        ],
    );

    // With an items CSV: an image of the file with no probabilities, and
    // probabilities with no labels.
    write_coco(&f, &masks);
    let ids: Vec<&str> = masks.iter().map(|(id, _)| id.as_str()).collect();
    std::fs::write(
        d.join("items.csv"),
        format!("id\n{}\n{}\nghost\n", ids[0], ids[1]),
    )
    .unwrap();
    let t = toml_with("coco", "instances.json")
        .replace("[inputs]\n", "[inputs]\nitems = \"items.csv\"\n");
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
        "export",
        "labelstudio",
        out.to_str().unwrap(),
        "--dataset",
        d.to_str().unwrap(),
        "--out",
        tasks.to_str().unwrap(),
        "--top",
        "4",
        "--images-root",
        "http://files.local/imgs",
    ];
    let o = triage(&a);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&a, &o));
    assert!(tasks.with_file_name("label_config.xml").exists());
    let queue = read_queue_rows(&out);
    let sent: Value = serde_json::from_slice(&std::fs::read(&tasks).unwrap()).unwrap();
    let sent = sent.as_array().unwrap();
    assert_eq!(sent.len(), 4);
    for (t, row) in sent.iter().zip(&queue) {
        assert_eq!(t["data"]["triage_id"], *row.id, "tasks in queue order");
        assert!(
            t["data"]["image"]
                .as_str()
                .unwrap()
                .starts_with("http://files.local/imgs/")
        );
        assert_eq!(
            t["predictions"][0]["score"].as_f64(),
            row.priority,
            "the current annotation's prediction holds the priority"
        );
    }
    // The reviewer accepts tasks 0 and 2 as they are and repaints task 1
    // (every pixel class 1) and task 3 (class 2).
    let mut reviewed: Value =
        serde_json::from_slice(&accept_predictions(&std::fs::read(&tasks).unwrap())).unwrap();
    let paint = |k: usize, h: usize, w: usize| -> Value {
        let items = vec![triage::io::labelfile::ExportItem {
            id: "x".into(),
            image: "x.png".into(),
            height: h,
            width: w,
            rank: 1,
            priority: 0.0,
            reasons: vec![],
            current: Some(triage::io::labelfile::ItemLabel::Mask(vec![
                k as u16;
                h * w
            ])),
            predicted: triage::io::labelfile::ItemLabel::Mask(vec![k as u16; h * w]),
        }];
        let meta = triage::io::labelfile::ExportMeta {
            task: triage::config::Task::Segmentation,
            class_names: (0..4)
                .map(|c| ["background", "cell", "vessel", "nucleus"][c].to_string())
                .collect(),
            ignore_index: 255,
        };
        let t: Value = serde_json::from_slice(
            &triage::io::labelfile::labelstudio::write(&meta, &items).unwrap(),
        )
        .unwrap();
        t[0]["predictions"][0]["result"].clone()
    };
    let (h, w) = (21, 19);
    // Image URLs that name no item: the tasks map back by `triage_id`.
    for (t, task) in reviewed.as_array_mut().unwrap().iter_mut().enumerate() {
        task["data"]["image"] = json!(format!("http://cdn.local/opaque-{t}.jpg"));
    }
    reviewed[1]["annotations"][0]["result"] = paint(1, h, w);
    reviewed[3]["annotations"][0]["result"] = paint(2, h, w);
    let export = tmp.path().join("ls/export.json");
    std::fs::write(&export, reviewed.to_string()).unwrap();
    let a = [
        "review-import",
        d.to_str().unwrap(),
        export.to_str().unwrap(),
    ];
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
        .map(|r| {
            (
                r["id"].as_str().unwrap(),
                r["decision"].as_str().unwrap(),
                r.get("corrected_mask").is_some(),
            )
        })
        .collect();
    let ids: Vec<&str> = queue.iter().take(4).map(|r| r.id.as_ref()).collect();
    assert_eq!(
        decided,
        [
            (ids[0], "ok", false),
            (ids[1], "error", true),
            (ids[2], "ok", false),
            (ids[3], "error", true)
        ]
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

/// Classification: 6 items, classes a b c, labels given as items.csv's
/// `label` column and as each tool's image-level tags.
#[test]
fn classification_tags_in_every_format_give_the_same_queue() {
    use triage::io::labelfile::{ExportItem, ExportMeta, ItemLabel};
    let tmp = tempfile::tempdir().unwrap();
    let labels = [0u32, 1, 0, 2, 0, 1];
    let names = ["a", "b", "c"];
    #[rustfmt::skip]
    let probs: [f32; 18] = [
        0.10, 0.80, 0.10,  0.70, 0.20, 0.10,  0.40, 0.50, 0.10,
        0.30, 0.30, 0.40,  0.90, 0.05, 0.05,  0.02, 0.96, 0.02,
    ];
    let ids: Vec<String> = (0..6).map(|i| format!("r{i}")).collect();
    let plain = tmp.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    write_f32(&plain.join("probs.npy"), &[6, 3], &probs);
    let mut csv = String::from("id,label\n");
    for (id, &l) in ids.iter().zip(&labels) {
        csv.push_str(&format!("{id},{}\n", names[l as usize]));
    }
    std::fs::write(plain.join("items.csv"), csv).unwrap();
    let head = "task = \"classification\"\nclasses = [\"a\", \"b\", \"c\"]\n[inputs]\nprobs = \"probs.npy\"\n";
    std::fs::write(
        plain.join("triage.toml"),
        format!("{head}items = \"items.csv\"\n"),
    )
    .unwrap();
    let out = tmp.path().join("out-plain");
    run_ok(&plain, &out, &["--backend", "cpu"]);
    let want = read_queue_rows(&out);

    let with = |name: &str, key: &str, file: &str, bytes: Vec<u8>| {
        let d = tmp.path().join(name);
        std::fs::create_dir(&d).unwrap();
        write_f32(&d.join("probs.npy"), &[6, 3], &probs);
        std::fs::write(d.join(file), bytes).unwrap();
        std::fs::write(d.join("triage.toml"), format!("{head}{key} = \"{file}\"\n")).unwrap();
        d
    };
    // COCO: annotations without `segmentation` are image-level tags.
    let cat_ids = [3u32, 5, 9];
    let coco = json!({
        "images": ids.iter().enumerate().map(|(i, id)| json!({"id": i, "file_name": format!("{id}.jpg"), "height": 4, "width": 4})).collect::<Vec<_>>(),
        "categories": [{"id": 3, "name": "a"}, {"id": 5, "name": "b"}, {"id": 9, "name": "c"}],
        "annotations": labels.iter().enumerate().map(|(i, &l)| json!({"id": i + 1, "image_id": i, "category_id": cat_ids[l as usize]})).collect::<Vec<_>>(),
    });
    let coco = with(
        "coco",
        "coco",
        "instances.json",
        coco.to_string().into_bytes(),
    );
    let meta = ExportMeta {
        task: triage::config::Task::Classification,
        class_names: names.iter().map(|s| s.to_string()).collect(),
        ignore_index: 255,
    };
    let items: Vec<ExportItem> = ids
        .iter()
        .zip(&labels)
        .enumerate()
        .map(|(i, (id, &l))| ExportItem {
            id: id.clone(),
            image: format!("{id}.jpg"),
            height: 0,
            width: 0,
            rank: i + 1,
            priority: 0.5,
            reasons: vec![],
            current: Some(ItemLabel::Class(l)),
            predicted: ItemLabel::Class(l),
        })
        .collect();
    let cvat = with(
        "cvat",
        "cvat",
        "annotations.xml",
        triage::io::labelfile::cvat::write(&meta, &items).unwrap(),
    );
    let ls = with(
        "ls",
        "labelstudio",
        "export.json",
        accept_predictions(&triage::io::labelfile::labelstudio::write(&meta, &items).unwrap()),
    );
    for (name, d) in [("coco", coco), ("cvat", cvat), ("labelstudio", ls)] {
        let out = tmp.path().join(format!("out-{name}"));
        run_ok(&d, &out, &["--backend", "cpu"]);
        assert_eq!(
            read_queue_rows(&out),
            want,
            "{name}: the queue differs from items.csv's labels'"
        );
    }
}

/// Two annotators named in a COCO file feed the agreement stage exactly as
/// the same labels in `annotations.csv` do.
#[test]
fn annotators_in_a_coco_file_feed_the_agreement_stage_as_annotations_csv_does() {
    let tmp = tempfile::tempdir().unwrap();
    let n = 40;
    // Annotator "ann" labels item i as i % 3; "bob" agrees except on every
    // fifth item, where he says (i + 1) % 3.
    let ann = |i: usize| i % 3;
    let bob = |i: usize| {
        if i.is_multiple_of(5) {
            (i + 1) % 3
        } else {
            i % 3
        }
    };
    let probs: Vec<f32> = (0..n)
        .flat_map(|i| {
            let mut p = [0.2f32, 0.2, 0.2];
            p[(i * 7) % 3] = 0.6;
            p
        })
        .collect();
    let head = "task = \"classification\"\nclasses = [\"a\", \"b\", \"c\"]\n[inputs]\nprobs = \"probs.npy\"\n";
    let csv_d = tmp.path().join("csv");
    std::fs::create_dir(&csv_d).unwrap();
    write_f32(&csv_d.join("probs.npy"), &[n, 3], &probs);
    let mut items = String::from("id,label\n");
    let mut anns = String::from("id,annotator,label\n");
    for i in 0..n {
        items.push_str(&format!("img{i},{}\n", ann(i)));
        anns.push_str(&format!("img{i},ann,{}\nimg{i},bob,{}\n", ann(i), bob(i)));
    }
    std::fs::write(csv_d.join("items.csv"), items).unwrap();
    std::fs::write(csv_d.join("annotations.csv"), anns).unwrap();
    std::fs::write(
        csv_d.join("triage.toml"),
        format!("{head}items = \"items.csv\"\nannotations = \"annotations.csv\"\n"),
    )
    .unwrap();
    let coco_d = tmp.path().join("coco");
    std::fs::create_dir(&coco_d).unwrap();
    write_f32(&coco_d.join("probs.npy"), &[n, 3], &probs);
    let mut annotations = vec![];
    for i in 0..n {
        annotations.push(
            json!({"id": 2 * i + 1, "image_id": i, "category_id": ann(i), "annotator": "ann"}),
        );
        annotations.push(
            json!({"id": 2 * i + 2, "image_id": i, "category_id": bob(i), "annotator": "bob"}),
        );
    }
    let doc = json!({
        "images": (0..n).map(|i| json!({"id": i, "file_name": format!("img{i}.png"), "height": 1, "width": 1})).collect::<Vec<_>>(),
        "categories": [{"id": 0, "name": "a"}, {"id": 1, "name": "b"}, {"id": 2, "name": "c"}],
        "annotations": annotations,
    });
    std::fs::write(coco_d.join("instances.json"), doc.to_string()).unwrap();
    std::fs::write(
        coco_d.join("triage.toml"),
        format!("{head}coco = \"instances.json\"\n"),
    )
    .unwrap();
    let (a, b) = (tmp.path().join("out-csv"), tmp.path().join("out-coco"));
    run_ok(&csv_d, &a, &["--backend", "cpu"]);
    run_ok(&coco_d, &b, &["--backend", "cpu"]);
    let (ra, rb) = (read_report_typed(&a), read_report_typed(&b));
    assert!(
        ra.agreement.is_some(),
        "annotations.csv gives an agreement section"
    );
    let json = |r: &triage::schema::Report| serde_json::to_value(&r.agreement).unwrap();
    assert_eq!(json(&rb), json(&ra));
    assert_eq!(read_queue_rows(&b), read_queue_rows(&a));
}

/// A labels file with a directory of per-item probabilities: items are the
/// file's images, each read from `<probs>/<id>.npy`.
#[test]
fn a_labels_file_with_per_item_probabilities() {
    let tmp = tempfile::tempdir().unwrap();
    let png = tmp.path().join("png");
    base(&png, 4);
    let masks: Vec<(String, Vec<u16>)> = items(&png)
        .iter()
        .map(|(id, p)| (id.clone(), read_png(p)))
        .collect();
    let out_png = tmp.path().join("out-png");
    run_ok(&png, &out_png, &["--backend", "cpu"]);
    // Split probs.npy (float16 (N, C, H, W)) into one file per item.
    let d = tmp.path().join("dir");
    std::fs::create_dir_all(d.join("probs")).unwrap();
    let bytes = std::fs::read(png.join("probs.npy")).unwrap();
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize + 10;
    let header = String::from_utf8_lossy(&bytes[10..header_len]).to_string();
    let descr = header
        .split("'descr': '")
        .nth(1)
        .unwrap()
        .split('\'')
        .next()
        .unwrap()
        .to_string();
    let per = bytes[header_len..].len() / masks.len();
    for (i, (id, _)) in masks.iter().enumerate() {
        write_npy_raw(
            &d.join(format!("probs/{id}.npy")),
            &descr,
            &[4, H, W],
            &bytes[header_len + i * per..header_len + (i + 1) * per],
        );
    }
    write_coco(&d.join("instances.json"), &masks);
    std::fs::copy(png.join("embeddings.npy"), d.join("embeddings.npy")).unwrap();
    std::fs::write(
        d.join("triage.toml"),
        format!("task = \"segmentation\"\n{CLASSES_TOML}[inputs]\ncoco = \"instances.json\"\nprobs = \"probs\"\nembeddings = \"embeddings.npy\"\n"),
    )
    .unwrap();
    let out = tmp.path().join("out-dir");
    run_ok(&d, &out, &["--backend", "cpu"]);
    assert_eq!(queue_sans_inputs(&out), queue_sans_inputs(&out_png));
}

/// The CVAT side: `triage export cvat`, a reviewer who repaints one image,
/// `review-import` of the XML: exactly that item relabelled.
#[test]
fn cvat_round_trip_export_review_import() {
    use triage::io::labelfile::{ExportItem, ItemLabel};
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("data");
    base(&d, 6);
    let out = tmp.path().join("out");
    run_ok(&d, &out, &["--backend", "cpu"]);
    let xml = tmp.path().join("cvat/annotations.xml");
    std::fs::create_dir_all(xml.parent().unwrap()).unwrap();
    let a = [
        "export",
        "cvat",
        out.to_str().unwrap(),
        "--out",
        xml.to_str().unwrap(),
        "--top",
        "3",
    ];
    let o = triage(&a);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&a, &o));
    let doc = triage::io::labelfile::cvat::parse(&xml, &std::fs::read(&xml).unwrap()).unwrap();
    assert_eq!(doc.images.len(), 3);
    let queue = read_queue_rows(&out);
    let by_id: std::collections::HashMap<String, PathBuf> = items(&d).into_iter().collect();
    // The reviewer's file: images as exported, the second repainted class 3.
    let reviewed: Vec<ExportItem> = doc
        .images
        .iter()
        .enumerate()
        .map(|(t, img)| {
            let id = queue[t].id.as_ref();
            assert!(
                img.file_name.ends_with(&format!("{id}.png")),
                "images in queue order"
            );
            let m = if t == 1 {
                vec![3u16; H * W]
            } else {
                read_png(&by_id[id])
            };
            ExportItem {
                id: id.into(),
                image: img.file_name.clone(),
                height: H,
                width: W,
                rank: t + 1,
                priority: 0.0,
                reasons: vec![],
                current: Some(ItemLabel::Mask(m.clone())),
                predicted: ItemLabel::Mask(m),
            }
        })
        .collect();
    let back = tmp.path().join("cvat/reviewed.xml");
    std::fs::write(
        &back,
        triage::io::labelfile::cvat::write(&meta(), &reviewed).unwrap(),
    )
    .unwrap();
    let a = ["review-import", d.to_str().unwrap(), back.to_str().unwrap()];
    let o = triage(&a);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&a, &o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("2 confirmed, 1 relabelled"),
        "{}",
        describe(&a, &o)
    );
    let text = std::fs::read_to_string(d.join("reviews.jsonl")).unwrap();
    let errors: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["decision"] == "error")
        .collect();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0]["id"], *queue[1].id);
    assert_eq!(
        errors[0]["corrected_mask"]["rle"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["nucleus"]
    );
}

/// `--to-label` adds the unlabelled items after the queue, each with only
/// the model's prediction; a damaged `corrected_mask` stops `apply` with a
/// named error and nothing written.
#[test]
fn export_to_label_and_apply_refuses_a_damaged_correction() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("data");
    base(&d, 10);
    // Two items unlabelled: empty mask cells.
    let text = std::fs::read_to_string(d.join("items.csv")).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let unlabelled: Vec<String> = [3usize, 7]
        .iter()
        .map(|&i| {
            let mut cells: Vec<String> = lines[i + 1].split(',').map(str::to_string).collect();
            cells[1] = String::new();
            lines[i + 1] = cells.join(",");
            cells[0].clone()
        })
        .collect();
    std::fs::write(d.join("items.csv"), lines.join("\n") + "\n").unwrap();
    let out = tmp.path().join("out");
    run_ok(&d, &out, &["--backend", "cpu"]);
    let tasks = tmp.path().join("tasks.json");
    let a = [
        "export",
        "labelstudio",
        out.to_str().unwrap(),
        "--out",
        tasks.to_str().unwrap(),
        "--top",
        "2",
        "--to-label",
    ];
    let o = triage(&a);
    assert_eq!(o.status.code(), Some(0), "{}", describe(&a, &o));
    let sent: Value = serde_json::from_slice(&std::fs::read(&tasks).unwrap()).unwrap();
    let sent = sent.as_array().unwrap();
    assert_eq!(sent.len(), 4, "2 queue rows and the 2 unlabelled items");
    let mut tail: Vec<&str> = sent[2..]
        .iter()
        .map(|t| t["data"]["triage_id"].as_str().unwrap())
        .collect();
    tail.sort();
    assert_eq!(
        tail,
        unlabelled.iter().map(String::as_str).collect::<Vec<_>>()
    );
    for t in &sent[2..] {
        assert_eq!(
            t["predictions"].as_array().unwrap().len(),
            1,
            "only the model's prediction"
        );
    }
    // A decision whose corrected mask does not decode.
    let id = &unlabelled[0];
    let line = json!({"id": id, "decision": "error", "corrected_label": null,
        "corrected_mask": {"size": [H, W], "rle": {"cell": "not RLE"}},
        "probs_hash": "fnv1a64:0", "annotation_hash": "fnv1a64:0", "source": "x"});
    std::fs::write(d.join("reviews.jsonl"), format!("{line}\n")).unwrap();
    let new = tmp.path().join("v2");
    let a = ["apply", d.to_str().unwrap(), "--out", new.to_str().unwrap()];
    let o = triage(&a);
    assert_eq!(o.status.code(), Some(2), "{}", describe(&a, &o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("reviews.jsonl")
            && err.contains(id.as_str())
            && err.contains("corrected_mask"),
        "{err}"
    );
    assert!(!new.join("items.csv").exists(), "nothing written");
}

/// `[inputs] images`: a COCO file's image names are relative to a
/// directory of the dataset; the items then carry their images (the
/// queue's `image`, the identical-image check, the overlays) as with an
/// items CSV.
#[test]
fn coco_image_names_join_the_images_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let png = tmp.path().join("png");
    base(&png, 6);
    let masks: Vec<(String, Vec<u16>)> = items(&png)
        .iter()
        .map(|(id, p)| (id.clone(), read_png(p)))
        .collect();
    let out_png = tmp.path().join("out-png");
    run_ok(&png, &out_png, &["--backend", "cpu"]);
    let d = tmp.path().join("coco");
    sibling(
        &png,
        &d,
        &(toml_with("coco", "instances.json") + "images = \"pictures\"\n"),
    );
    copy_dir(&png.join("images"), &d.join("pictures"));
    write_coco(&d.join("instances.json"), &masks);
    // The file names, as COCO gives them, without the directory.
    let mut v: Value =
        serde_json::from_slice(&std::fs::read(d.join("instances.json")).unwrap()).unwrap();
    for img in v["images"].as_array_mut().unwrap() {
        let name = img["file_name"]
            .as_str()
            .unwrap()
            .replace("imgs/", "")
            .replace(".jpg", ".png");
        img["file_name"] = json!(name);
    }
    std::fs::write(d.join("instances.json"), v.to_string()).unwrap();
    let out = tmp.path().join("out-coco");
    run_ok(&d, &out, &["--backend", "cpu"]);
    let rows = read_queue_rows(&out);
    for r in &rows {
        assert_eq!(
            r.carried.get("image"),
            Some(format!("pictures/{}.png", r.id).as_str()),
            "the image column"
        );
    }
    assert_eq!(queue_sans_inputs(&out), queue_sans_inputs(&out_png));
    let overlays = |o: &Path| {
        std::fs::read_dir(o.join("overlays"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    assert_eq!(overlays(&out), overlays(&out_png));
    assert!(overlays(&out) > 0);
}
