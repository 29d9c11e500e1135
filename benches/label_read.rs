//! Reading segmentation labels from a COCO file against reading the same
//! masks as PNG files: the issue-28 goal is that 1000 images' masks cost at
//! most 1.2× the PNG read when they come as COCO compressed RLE.
//!
//! Run: `cargo bench --bench label_read` (`TRIAGE_LABEL_READ=N,H,W`,
//! default `1000,512,512`; 8 classes of blobs per image). Both paths end in
//! the same `(H, W)` label maps the score stage gets, and the bench checks
//! they are equal. Timed, medians of 5, in the same run: the PNG path
//! (`io::mask::read_mask` of each file), the COCO path (parse the JSON,
//! match it to the items, paint each map: `io::load_dataset` +
//! `io::labelfile::mask`), and the limit below both, reading the files'
//! bytes (`std::fs::read`). Prints one JSON line.

use std::path::Path;
use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use triage::io::coco_rle;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A map of `classes` random discs on background.
fn blobs(rng: &mut ChaCha8Rng, h: usize, w: usize, classes: u16) -> Vec<u16> {
    let mut m = vec![0u16; h * w];
    for k in 1..classes {
        let (cy, cx) = (rng.random_range(0..h) as i64, rng.random_range(0..w) as i64);
        let r = rng.random_range(h / 16..h / 4) as i64;
        for y in (cy - r).max(0)..(cy + r).min(h as i64) {
            for x in (cx - r).max(0)..(cx + r).min(w as i64) {
                if (y - cy).pow(2) + (x - cx).pow(2) <= r * r {
                    m[y as usize * w + x as usize] = k;
                }
            }
        }
    }
    m
}

fn write_png(path: &Path, m: &[u16], h: usize, w: usize) {
    let f = std::fs::File::create(path).expect("create");
    let mut enc = png::Encoder::new(std::io::BufWriter::new(f), w as u32, h as u32);
    enc.set_color(png::ColorType::Grayscale);
    enc.set_depth(png::BitDepth::Eight);
    let mut wr = enc.write_header().expect("header");
    wr.write_image_data(&m.iter().map(|&v| v as u8).collect::<Vec<_>>())
        .expect("png");
}

fn main() {
    let spec = std::env::var("TRIAGE_LABEL_READ").unwrap_or_else(|_| "1000,512,512".into());
    let v: Vec<usize> = spec.split(',').map(|x| x.trim().parse().expect("N,H,W")).collect();
    let (n, h, w) = (v[0], v[1], v[2]);
    let classes = 8u16;
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path();
    std::fs::create_dir(d.join("masks")).expect("mkdir");
    let mut rng = ChaCha8Rng::seed_from_u64(28);
    let mut images = Vec::new();
    let mut anns = Vec::new();
    let mut maps = Vec::new();
    let mut items = String::from("id,mask\n");
    for i in 0..n {
        let m = blobs(&mut rng, h, w, classes);
        let id = format!("img{i:06}");
        write_png(&d.join(format!("masks/{id}.png")), &m, h, w);
        items.push_str(&format!("{id},masks/{id}.png\n"));
        images.push(serde_json::json!({"id": i, "file_name": format!("{id}.jpg"), "height": h, "width": w}));
        for k in 1..classes {
            let bits: Vec<u8> = m.iter().map(|&x| u8::from(x == k)).collect();
            if !bits.contains(&1) {
                continue;
            }
            let r = coco_rle::encode(&bits, h, w).expect("encode");
            anns.push(serde_json::json!({"id": anns.len() + 1, "image_id": i, "category_id": k,
                "iscrowd": 0, "segmentation": {"size": [h, w], "counts": coco_rle::to_string(&r)}}));
        }
        maps.push(m);
    }
    let cats: Vec<_> = (1..classes)
        .map(|k| serde_json::json!({"id": k, "name": format!("c{k}")}))
        .collect();
    let doc = serde_json::json!({"images": images, "annotations": anns, "categories": cats});
    std::fs::write(d.join("instances.json"), serde_json::to_vec(&doc).expect("json")).expect("write");
    std::fs::write(d.join("items.csv"), items).expect("write");
    // Probabilities are only opened for their shape by neither path; a
    // tiny file keeps the dataset valid.
    let header = format!(
        "{{'descr': '<f2', 'fortran_order': False, 'shape': ({n}, {classes}, {h}, {w}), }}"
    );
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    let pad = 64 - (10 + header.len() + 1) % 64;
    let hdr = format!("{header}{}\n", " ".repeat(pad % 64));
    npy.extend_from_slice(&(hdr.len() as u16).to_le_bytes());
    npy.extend_from_slice(hdr.as_bytes());
    std::fs::write(d.join("probs.npy"), npy).expect("write");
    let names: Vec<String> = (0..classes).map(|k| format!("\"c{k}\"")).collect();
    std::fs::write(
        d.join("triage.toml"),
        format!(
            "task = \"segmentation\"\nclasses = [{}]\n[inputs]\ncoco = \"instances.json\"\nprobs = \"probs.npy\"\n",
            names.join(", ")
        ),
    )
    .expect("write");
    let png_bytes: u64 = (0..n)
        .map(|i| std::fs::metadata(d.join(format!("masks/img{i:06}.png"))).map_or(0, |m| m.len()))
        .sum();
    let json_bytes = std::fs::metadata(d.join("instances.json")).map_or(0, |m| m.len());

    let (mut t_png, mut t_coco, mut t_bytes) = (vec![], vec![], vec![]);
    for _ in 0..5 {
        let t = Instant::now();
        let mut total = 0usize;
        for i in 0..n {
            total += std::fs::read(d.join(format!("masks/img{i:06}.png"))).expect("read").len();
        }
        total += std::fs::read(d.join("instances.json")).expect("read").len();
        t_bytes.push(t.elapsed().as_secs_f64());
        assert!(total > 0);

        let t = Instant::now();
        for (i, want) in maps.iter().enumerate() {
            let p = d.join(format!("masks/img{i:06}.png"));
            let m = triage::io::mask::read_mask(&p, "x", (h, w), classes as usize, 255).expect("png");
            assert!(m == *want);
        }
        t_png.push(t.elapsed().as_secs_f64());

        let t = Instant::now();
        let cfg = triage::io::load_dataset(d).expect("coco dataset");
        for (i, want) in maps.iter().enumerate() {
            let m = triage::io::labelfile::mask(&cfg, "x", i, (h, w))
                .expect("a labels file")
                .expect("paint");
            assert!(m == *want, "image {i}: the COCO map differs from the PNG");
        }
        t_coco.push(t.elapsed().as_secs_f64());
    }
    let (png, coco, bytes) = (median(t_png), median(t_coco), median(t_bytes));
    println!(
        "{}",
        serde_json::json!({
            "bench": "label_read", "items": n, "height": h, "width": w, "classes": classes,
            "png_files_bytes": png_bytes, "coco_json_bytes": json_bytes,
            "read_bytes_s": bytes, "png_s": png, "coco_s": coco,
            "coco_over_png": coco / png, "goal_coco_over_png_at_most": 1.2,
        })
    );
}
