//! `report.html` and `overlays/`: self-contained, one chart per section,
//! overlay pixels, escaping, classification pictures, atomicity, and a real
//! headless browser.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;
use serde_json::Value;
use triage::report::overlay;
use triage::schema::ClusterRow;

fn demo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/demo")
}

fn run_demo(out: &Path) -> String {
    run_ok(&demo(), out, &["--backend", "cpu"]);
    std::fs::read_to_string(out.join("report.html")).expect("report.html written")
}

fn count(html: &str, needle: &str) -> usize {
    html.matches(needle).count()
}

/// The `<svg ...>...</svg>` element with `data-chart="kind"` (the first one).
fn chart<'a>(html: &'a str, kind: &str) -> &'a str {
    let start = html
        .find(&format!("data-chart=\"{kind}\""))
        .unwrap_or_else(|| panic!("no {kind} chart"));
    let end = start + html[start..].find("</svg>").unwrap();
    &html[start..end]
}

/// Every `src="..."` / `href="..."` value.
fn references(html: &str) -> Vec<String> {
    let mut refs = Vec::new();
    for attr in ["src=\"", "href=\""] {
        let mut rest = html;
        while let Some(i) = rest.find(attr) {
            rest = &rest[i + attr.len()..];
            let end = rest.find('"').unwrap();
            refs.push(rest[..end].to_string());
        }
    }
    refs
}

fn assert_self_contained(html: &str, out: &Path) {
    let lower = html.to_ascii_lowercase();
    assert!(!lower.contains("<link"), "no external stylesheets");
    assert!(!lower.contains("<script"), "no scripts at all");
    assert!(
        !lower.contains("@import") && !lower.contains("url("),
        "no CSS fetches"
    );
    for r in references(html) {
        let rl = r.to_ascii_lowercase();
        assert!(
            !rl.starts_with("http:") && !rl.starts_with("https:") && !rl.starts_with("//"),
            "external reference {r}"
        );
        assert!(!r.contains(".."), "reference leaves the output dir: {r}");
        assert!(out.join(&r).is_file(), "referenced file {r} exists");
    }
}

#[test]
fn demo_report_is_self_contained_with_one_chart_per_section() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let html = run_demo(&out);
    let report = read_report_typed(&out);
    let queue = read_queue_rows(&out);
    assert!(html.starts_with("<!DOCTYPE html>") && html.trim_end().ends_with("</html>"));
    assert!(html.contains("id=\"triage-report\""));
    assert_self_contained(&html, &out);

    // Reliability: one bar per non-empty bin, its count written above it.
    let non_empty: Vec<u64> = report
        .reliability
        .iter()
        .map(|b| b.count)
        .filter(|&c| c > 0)
        .collect();
    assert!(!non_empty.is_empty());
    assert_eq!(count(&html, "data-chart=\"reliability\""), 1);
    let rel = chart(&html, "reliability");
    assert_eq!(count(rel, "class=\"rel-bar\""), non_empty.len());
    assert_eq!(count(rel, "class=\"count\""), non_empty.len());
    for c in &non_empty {
        assert!(
            rel.contains(&format!(": {c} samples")),
            "bin count {c} shown"
        );
    }

    // One histogram per score of the queue rows.
    let keys: Vec<&str> = queue[0].scores.names().collect();
    assert!(keys.len() >= 10, "{keys:?}");
    assert_eq!(count(&html, "data-chart=\"histogram\""), keys.len());
    for k in &keys {
        assert!(
            html.contains(&format!("<title>{k}</title>")),
            "histogram of {k}"
        );
    }

    // Per-class IoU, Dice, Boundary IoU: one bar per defined value.
    let per_class = &report.per_class;
    let defined = per_class
        .iter()
        .flat_map(|p| [p.iou, p.dice, p.boundary_iou].map(|v| v.flatten().is_some()))
        .filter(|&d| d)
        .count();
    assert_eq!(count(&html, "data-chart=\"per-class\""), 1);
    let pc = chart(&html, "per-class");
    assert_eq!(count(pc, "class=\"bar\""), defined);
    assert!(pc.contains("Boundary IoU") && pc.contains("Dice"));
    let support = chart(&html, "support");
    assert_eq!(count(support, "class=\"bar\""), per_class.len());
    let c = per_class.len();
    assert_eq!(count(&html, "data-chart=\"confusion\""), 1);
    assert_eq!(count(chart(&html, "confusion"), "class=\"cm-cell\""), c * c);
    let total_charts = 1 + keys.len() + 3;
    assert_eq!(
        count(&html, "<svg"),
        total_charts,
        "segmentation: no other SVG"
    );

    // The queue table (every row of the demo), the top gallery, the clusters.
    assert_eq!(
        count(&html, "<tr><td class=\"num\">")
            + count(&html, "<tr class=\"no-issue\"><td class=\"num\">"),
        queue.len().min(100)
    );
    assert_eq!(count(&html, "<figure class=\"item\">"), 12);
    let clusters: Vec<ClusterRow> = std::fs::read_to_string(out.join("clusters.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let conflicting: Vec<&ClusterRow> = clusters.iter().filter(|c| c.conflict).collect();
    assert!(!conflicting.is_empty());
    assert_eq!(count(&html, "<div class=\"cluster\">"), conflicting.len());
    let members: usize = conflicting.iter().map(|c| c.members.len()).sum();
    assert_eq!(count(&html, "<figure class=\"member\">"), members);

    // Overlays: every gallery picture is a PNG in overlays/, at most 24.
    let pngs: Vec<_> = std::fs::read_dir(out.join("overlays"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(!pngs.is_empty() && pngs.len() <= 24, "{}", pngs.len());
    for row in queue.iter().take(12) {
        let id = &row.id;
        assert!(
            html.contains(&format!("src=\"overlays/{id}.png\"")),
            "top item {id} pictured"
        );
    }
    for c in &conflicting {
        for m in &c.members {
            let id = &m.id;
            assert!(out.join(format!("overlays/{id}.png")).is_file(), "{id}");
        }
    }
}

/// The demo's queue reads right: its 9 planted errors (`truth.json`) sit
/// above the evidence cut and its clean items below it, labelled "no issue
/// found"; without `--budget` no row says `in_budget`; no empty list shows
/// as `[]`; a swapped class's reason names both classes; every histogram
/// marks the top of the queue.
#[test]
fn demo_queue_is_cut_where_the_evidence_ends() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let html = run_demo(&out);
    let report = read_report_typed(&out);
    let queue = read_queue_rows(&out);
    let truth: Value =
        serde_json::from_str(&std::fs::read_to_string(demo().join("truth.json")).unwrap()).unwrap();
    let planted: Vec<&str> = truth["planted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(planted.len(), 9);
    let q = &report.queue;
    assert_eq!(q.rows, queue.len());
    assert_eq!(q.evidence_ends_at, planted.len(), "{q:?}");
    assert!(q.evidence_rule.contains("Otsu") && q.evidence_rule.contains("a check flags it"));
    for r in &queue {
        let is_planted = planted.contains(&r.id.as_ref());
        assert_eq!(
            r.rank <= q.evidence_ends_at,
            is_planted,
            "{} at rank {} (cut at {})",
            r.id,
            r.rank,
            q.evidence_ends_at
        );
    }
    // The page: one cut line, right after the last planted row; the rows
    // below it labelled and greyed.
    assert_eq!(count(&html, "<tr class=\"cut\">"), 1);
    let table = &html[html.find("<section id=\"queue\">").unwrap()..];
    let cut = table.find("<tr class=\"cut\">").unwrap();
    let last = &queue[q.evidence_ends_at - 1].id;
    let below = &queue[q.evidence_ends_at].id;
    assert!(table[..cut].contains(&format!("<td>{last}</td>")));
    assert!(table[cut..].contains(&format!("<td>{below}</td>")));
    assert_eq!(
        count(table, "<tr class=\"no-issue\">"),
        queue.len() - q.evidence_ends_at
    );
    assert!(table.contains(&format!("The evidence ends at rank {}", q.evidence_ends_at)));
    // The gallery's items below the cut are labelled too: "weak evidence"
    // where a check flags them (queue.jsonl `flags`), else "no issue found".
    let gallery = &html[..html.find("<section id=\"calibration\">").unwrap()];
    let weak = queue[q.evidence_ends_at..12]
        .iter()
        .filter(|r| !r.flags.is_empty())
        .count();
    assert_eq!(
        count(gallery, "class=\"no-issue-label\">no issue found<"),
        12 - q.evidence_ends_at - weak
    );
    assert_eq!(
        count(gallery, "class=\"no-issue-label\">weak evidence<"),
        weak
    );
    // Every planted row is flagged by some check.
    assert!(
        queue[..q.evidence_ends_at]
            .iter()
            .all(|r| !r.flags.is_empty())
    );

    // No budget: nothing says in_budget; no `[]` anywhere.
    assert!(report.queue_policy.budget.is_none());
    assert!(!html.contains("in_budget") && !html.contains("[]"));

    // The swapped classes (item00019: a membrane object annotated as cell).
    let swapped = queue.iter().find(|r| r.id == "item00019").unwrap();
    assert!(
        swapped
            .reasons
            .iter()
            .any(|r| r.contains("annotated \"cell\" where the model sees \"membrane\"")),
        "{:?}",
        swapped.reasons
    );

    // Every histogram marks the gallery's 12 items.
    let mut rest = html.as_str();
    let mut charts = 0;
    while let Some(at) = rest.find("data-chart=\"histogram\"") {
        let end = at + rest[at..].find("</svg>").unwrap();
        let h = &rest[at..end];
        let title = &h[h.find("<title>").unwrap() + 7..h.find("</title>").unwrap()];
        let finite = queue[..12]
            .iter()
            .filter(|r| r.scores.get(title).is_some())
            .count();
        assert_eq!(count(h, "class=\"top-mark\""), finite, "{title}");
        assert!(
            !h.contains(".000<"),
            "{title}: ticks formatted for the range"
        );
        charts += 1;
        rest = &rest[end..];
    }
    assert!(charts >= 10);
}

#[test]
fn shifted_boundary_overlay_shows_both_boundaries_and_the_band() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    run_demo(&out);
    let truth: Value =
        serde_json::from_str(&std::fs::read_to_string(demo().join("truth.json")).unwrap()).unwrap();
    let planted = truth["planted"].as_array().unwrap();
    let shifted: Vec<&str> = planted
        .iter()
        .filter(|p| p["kind"] == "shifted_boundary")
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert!(!shifted.is_empty());
    let mut checked = 0;
    for id in shifted {
        let path = out.join(format!("overlays/{id}.png"));
        if !path.exists() {
            continue;
        }
        let img = image::open(&path).unwrap().to_rgb8();
        assert_eq!((img.width(), img.height()), (128, 128), "{id}");
        let has = |c: [u8; 3]| img.pixels().filter(|p| p.0 == c).count();
        assert!(
            has(overlay::ANNOTATED) > 20,
            "{id}: annotated boundary drawn"
        );
        assert!(
            has(overlay::PREDICTED) > 20,
            "{id}: predicted boundary drawn"
        );
        // The band: strongly magenta-tinted pixels (red and blue well above green).
        let band = img
            .pixels()
            .filter(|p| {
                let [r, g, b] = p.0;
                r as i32 - g as i32 > 60 && b as i32 - g as i32 > 60 && p.0 != overlay::BAND
            })
            .count();
        assert!(band > 50, "{id}: disagreeing band highlighted ({band} px)");
        checked += 1;
    }
    assert!(checked > 0, "a shifted_boundary item is in the gallery");
}

/// Ignored pixels (mask value 255 in the demo) are drawn as ignore in
/// every overlay: the hatching of [`overlay::ignore_colour`], never a
/// class colour, a boundary or the band; the legend names ignore.
#[test]
fn ignored_pixels_are_drawn_as_ignore_in_the_overlays() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let html = run_demo(&out);
    assert!(html.contains("class=\"sw ignore\"") && html.contains("ignore (not scored"));
    let mut ignored = 0;
    let mut next_to_ignore = 0;
    for e in std::fs::read_dir(out.join("overlays")).unwrap() {
        let path = e.unwrap().path();
        let id = path.file_stem().unwrap().to_str().unwrap().to_string();
        let mask = image::open(demo().join(format!("masks/{id}.png")))
            .unwrap()
            .to_luma8();
        let img = image::open(&path).unwrap().to_rgb8();
        let (w, h) = (mask.width(), mask.height());
        for y in 0..h {
            for x in 0..w {
                let is_ignored = |x: u32, y: u32| mask.get_pixel(x, y).0[0] == 255;
                let px = img.get_pixel(x, y).0;
                if is_ignored(x, y) {
                    assert_eq!(
                        px,
                        overlay::ignore_colour(x as usize, y as usize),
                        "{id} ({x}, {y})"
                    );
                    ignored += 1;
                    continue;
                }
                // A pixel next to an ignore region whose annotated class
                // has no other neighbour: no annotated boundary there.
                let v = mask.get_pixel(x, y).0[0];
                let around = [(0i64, 1i64), (0, -1), (1, 0), (-1, 0)]
                    .map(|(dx, dy)| (x as i64 + dx, y as i64 + dy))
                    .into_iter()
                    .filter(|&(a, b)| a >= 0 && b >= 0 && a < w as i64 && b < h as i64)
                    .map(|(a, b)| mask.get_pixel(a as u32, b as u32).0[0]);
                let (mut ign, mut other) = (false, false);
                for n in around {
                    ign |= n == 255;
                    other |= n != 255 && n != v;
                }
                if ign && !other {
                    assert!(
                        px != overlay::ANNOTATED && px != overlay::BOTH,
                        "{id} ({x}, {y}): an ignore edge drawn as an annotated boundary"
                    );
                    next_to_ignore += 1;
                }
            }
        }
    }
    assert!(
        ignored > 100,
        "the demo's overlays hold ignored pixels ({ignored})"
    );
    assert!(next_to_ignore > 20, "{next_to_ignore}");
}

/// Hand-worked: an ignored 2 × 2 block inside one class, predicted as
/// that class everywhere: the block is hatched, nothing else is drawn (no
/// annotated boundary around it, no band), so the overlay is the plain
/// grey of the class outside the block.
#[test]
fn an_ignore_block_makes_no_boundary_and_no_band() {
    let (h, w) = (8, 8);
    let gt: Vec<u16> = (0..h * w)
        .map(|i| {
            let (y, x) = (i / w, i % w);
            if (3..5).contains(&y) && (3..5).contains(&x) {
                255
            } else {
                1
            }
        })
        .collect();
    let pred = vec![1u16; h * w];
    assert!(
        overlay::disagreement(&gt, &pred, h, w, 1, 255)
            .iter()
            .all(|&b| !b)
    );
    let img = overlay::draw(overlay::grey_base(&gt, h, w, 2), &gt, &pred, h, w, 255);
    let png = overlay::png_bytes(&img).unwrap();
    let img = image::load_from_memory(&png).unwrap().to_rgb8();
    let g = overlay::class_grey(1, 2);
    for y in 0..h {
        for x in 0..w {
            let want = if gt[y * w + x] == 255 {
                overlay::ignore_colour(x, y)
            } else {
                [g, g, g]
            };
            assert_eq!(img.get_pixel(x as u32, y as u32).0, want, "x={x} y={y}");
        }
    }
    // The hatching: two greys, never a class's grey or an overlay colour.
    assert_eq!(overlay::ignore_colour(4, 4), overlay::IGNORE_HATCH);
    assert_eq!(overlay::ignore_colour(3, 5), overlay::IGNORE_HATCH);
    assert_eq!(overlay::ignore_colour(3, 4), overlay::IGNORE);
    let classes: Vec<u8> = (0..5).map(|k| overlay::class_grey(k, 5)).collect();
    for c in [overlay::IGNORE, overlay::IGNORE_HATCH] {
        assert!(
            c[0] == c[1] && c[1] == c[2] && !classes.contains(&c[0]),
            "{c:?}"
        );
    }
}

/// Hand-worked 8×8 case: a 4×4 square at rows 2–5, columns 2–5 annotated;
/// the prediction is the same square 2 px to the right (columns 4–7). The
/// band width is d = max(1, round(0.02·√128)) = 1; pixels outside the image
/// count as background, so the whole image border is in both bands.
///
/// * B(G): every pixel except the square's 2×2 interior (rows 3–4, cols 3–4);
///   all background pixels are on the border or touch the square.
/// * B(P): every pixel except the background block rows 1–6 × cols 1–2 (its
///   3×3 windows see no prediction) and the predicted interior rows 3–4 ×
///   cols 5–6.
/// * Highlighted = in B(G) ∪ B(P) (all pixels) minus (in both with G = P).
///   Pixels in only one band: the two sets above. Pixels in both with G ≠ P:
///   rows 2–5 at cols 2–3 (G square, P background) and cols 6–7.
#[test]
fn hand_made_overlay_band_is_exactly_where_computed() {
    let (h, w) = (8, 8);
    let sq = |c0: usize| -> Vec<u16> {
        (0..h * w)
            .map(|i| {
                let (y, x) = (i / w, i % w);
                u16::from((2..=5).contains(&y) && (c0..c0 + 4).contains(&x))
            })
            .collect()
    };
    let (gt, pred) = (sq(2), sq(4));
    assert_eq!(triage::metrics::boundary_iou::band_width(h, w), 1);
    #[rustfmt::skip]
    let expected = [
        "........",
        ".XX.....",
        ".XXX..XX",
        ".XXXXXXX",
        ".XXXXXXX",
        ".XXX..XX",
        ".XX.....",
        "........",
    ];
    let band = overlay::disagreement(&gt, &pred, h, w, 1, 255);
    let got: Vec<String> = (0..h)
        .map(|y| {
            (0..w)
                .map(|x| if band[y * w + x] { 'X' } else { '.' })
                .collect()
        })
        .collect();
    assert_eq!(got, expected);

    // The drawn PNG: off the boundaries, band pixels are the grey base
    // blended with magenta at 50 %, others the plain grey of their class.
    let img = overlay::draw(overlay::grey_base(&gt, h, w, 2), &gt, &pred, h, w, 255);
    let png = overlay::png_bytes(&img).unwrap();
    let img = image::load_from_memory(&png).unwrap().to_rgb8();
    assert_eq!((img.width(), img.height()), (8, 8));
    let grey = |k: u16| {
        let g = overlay::class_grey(k, 2);
        [g, g, g]
    };
    assert_eq!(grey(0), [60, 60, 60]);
    assert_eq!(grey(1), [220, 220, 220]);
    // Hand-picked boundary pixels (x, y): (2,2) is on the annotated edge only
    // (the prediction is background all around it), (7,2) on the predicted
    // edge only, (4,2) on both, (0,0) on neither.
    assert_eq!(img.get_pixel(2, 2).0, overlay::ANNOTATED);
    assert_eq!(img.get_pixel(7, 2).0, overlay::PREDICTED);
    assert_eq!(img.get_pixel(4, 2).0, overlay::BOTH);
    assert_eq!(img.get_pixel(0, 0).0, grey(0));
    // Band pixels off every boundary: (1,1) and (1,6) background inside the
    // predicted-band gap, (7,3) background under the predicted square. (The
    // annotation's interior (3..4, 3..4) is in the band too, but the
    // predicted edge at x = 4 and its neighbour x = 3 cover it.)
    let magenta = |k| overlay::blend(grey(k), overlay::BAND, 0.5);
    assert_eq!(magenta(0), [158, 30, 158]);
    assert_eq!(img.get_pixel(1, 1).0, magenta(0));
    assert_eq!(img.get_pixel(1, 6).0, magenta(0));
    assert_eq!(img.get_pixel(7, 3).0, magenta(0));
    assert_eq!(img.get_pixel(3, 3).0, overlay::PREDICTED);
    let lines = [overlay::ANNOTATED, overlay::PREDICTED, overlay::BOTH];
    for y in 0..h {
        for x in 0..w {
            let px = img.get_pixel(x as u32, y as u32).0;
            if lines.contains(&px) {
                continue;
            }
            let k = gt[y * w + x];
            let want = if band[y * w + x] { magenta(k) } else { grey(k) };
            assert_eq!(px, want, "pixel x={x} y={y}");
        }
    }
}

/// A 3-class classification dataset; `image` adds an `image` column with
/// 40×30 PNGs.
fn cls_dataset(dir: &Path, classes: &[&str], ids: &[&str], image: bool) {
    let names: Vec<String> = classes
        .iter()
        .map(|c| format!("\"{}\"", c.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    std::fs::write(
        dir.join("triage.toml"),
        format!(
            "task = \"classification\"\nclasses = [{}]\n[inputs]\nitems = \"items.csv\"\nprobs = \"probs.npy\"\n",
            names.join(", ")
        ),
    )
    .unwrap();
    let mut w = csv::Writer::from_path(dir.join("items.csv")).unwrap();
    let mut header = vec!["id", "label", "annotator"];
    if image {
        header.push("image");
    }
    w.write_record(&header).unwrap();
    let mut probs = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let label = classes[i % 3];
        let mut rec = vec![id.to_string(), label.to_string(), "<b>ann</b>".to_string()];
        if image {
            let rel = format!("img/{i}.png");
            std::fs::create_dir_all(dir.join("img")).unwrap();
            image::RgbImage::from_pixel(40, 30, image::Rgb([10 * i as u8, 100, 200]))
                .save(dir.join(&rel))
                .unwrap();
            rec.push(rel);
        }
        w.write_record(&rec).unwrap();
        // Confidently the next class: every item is a label error.
        let mut p = [0.1f32; 3];
        p[(i + 1) % 3] = 0.7;
        p[(i + 2) % 3] = 0.2;
        probs.extend_from_slice(&p);
    }
    w.flush().unwrap();
    write_f32(&dir.join("probs.npy"), &[ids.len(), 3], &probs);
}

#[test]
fn data_strings_are_escaped_in_text_and_attributes() {
    let tmp = tempfile::tempdir().unwrap();
    let evil_class = "<script>alert(1)</script>";
    let evil_id = "q\"&<>'1";
    cls_dataset(
        tmp.path(),
        &[evil_class, "b&b", "c"],
        &[evil_id, "plain", "x3", "x4"],
        true,
    );
    let out = tmp.path().join("out");
    run_ok(tmp.path(), &out, &["--backend", "cpu"]);
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(!html.contains(evil_class), "raw class name appears");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!html.contains(evil_id), "raw id appears");
    assert!(html.contains("q&quot;&amp;&lt;&gt;&#39;1"));
    assert!(!html.contains("b&b") && html.contains("b&amp;b"));
    assert!(!html.to_ascii_lowercase().contains("<script"));
    // The evil id is in the gallery (caption and alt attribute) and the table.
    assert!(count(&html, "q&quot;&amp;&lt;&gt;&#39;1") >= 3);
    assert!(html.contains("alt=\"overlay of q&quot;&amp;&lt;&gt;&#39;1\""));
    // Its picture has a sanitised file name inside overlays/.
    let pictures: Vec<String> = std::fs::read_dir(out.join("overlays"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(pictures.len(), 4);
    let evil_png = pictures.iter().find(|n| n.starts_with("q-22")).unwrap();
    assert!(
        evil_png
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
        "{evil_png}"
    );
    assert!(html.contains(&format!("src=\"overlays/{evil_png}\"")));
    // The carried `annotator` column is shown, escaped.
    assert!(html.contains("annotator: &lt;b&gt;ann&lt;/b&gt;"));
    assert!(!html.contains("<b>ann</b>"));
    assert_self_contained(&html, &out);
}

#[test]
fn classification_items_show_top3_bars_without_an_image() {
    let tmp = tempfile::tempdir().unwrap();
    let ids: Vec<String> = (0..15).map(|i| format!("c{i:02}")).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    cls_dataset(tmp.path(), &["cat", "dog", "fox"], &ids, false);
    let out = tmp.path().join("out");
    run_ok(tmp.path(), &out, &["--backend", "cpu"]);
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    let report = read_report_typed(&out);
    assert_eq!(
        count(&html, "data-chart=\"top-probs\""),
        12,
        "one per gallery item"
    );
    // Item c00 is labelled cat, predicted dog 0.7, fox 0.2, cat 0.1.
    let top = &html[html.find("top-3 (label: cat)").unwrap()..];
    let top = &top[..top.find("</svg>").unwrap()];
    assert_eq!(count(top, "class=\"prob-bar"), 3);
    assert_eq!(
        count(top, "class=\"prob-bar label\""),
        1,
        "the label's bar is marked"
    );
    let (d, f, c) = (
        top.find(">dog<").unwrap(),
        top.find(">fox<").unwrap(),
        top.find(">cat<").unwrap(),
    );
    assert!(d < f && f < c, "sorted by probability");
    assert!(top.contains(">0.700<") && top.contains(">0.100<"));
    let pc = chart(&html, "per-class");
    assert!(pc.contains("precision") && pc.contains("recall"));
    let non_empty = report.reliability.iter().filter(|b| b.count > 0).count();
    assert_eq!(
        count(chart(&html, "reliability"), "class=\"rel-bar\""),
        non_empty
    );
    assert!(!out.join("overlays").exists(), "no pictures to write");
    assert_self_contained(&html, &out);
}

#[test]
fn classification_items_show_their_image_when_there_is_one() {
    let tmp = tempfile::tempdir().unwrap();
    cls_dataset(
        tmp.path(),
        &["cat", "dog", "fox"],
        &["a", "b", "c", "d"],
        true,
    );
    let out = tmp.path().join("out");
    run_ok(tmp.path(), &out, &["--backend", "cpu"]);
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert_eq!(count(&html, "data-chart=\"top-probs\""), 0);
    for id in ["a", "b", "c", "d"] {
        assert!(html.contains(&format!("src=\"overlays/{id}.png\"")), "{id}");
        let img = image::open(out.join(format!("overlays/{id}.png"))).unwrap();
        assert_eq!((img.width(), img.height()), (40, 30));
    }
    assert_self_contained(&html, &out);
}

#[test]
fn a_failed_run_writes_no_report_or_overlays() {
    let tmp = tempfile::tempdir().unwrap();
    cls_dataset(tmp.path(), &["cat", "dog", "fox"], &["a", "b", "c"], true);
    write_f32(
        &tmp.path().join("probs.npy"),
        &[3, 3],
        &[0.7, 0.2, 0.1, f32::NAN, 0.5, 0.5, 0.3, 0.3, 0.4],
    );
    let out = tmp.path().join("out");
    let args = [
        "run",
        tmp.path().to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    let o = triage(&args);
    assert_eq!(o.status.code(), Some(2), "{}", describe(&args, &o));
    assert!(!out.join("report.html").exists());
    assert!(!out.join("overlays").exists());
}

fn browser() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for name in [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ] {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

fn chromium(bin: &Path, profile: &Path, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new("timeout");
    cmd.arg("120")
        .arg(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args);
    cmd.output().expect("chromium runs")
}

/// Load the demo report in headless Chromium: it parses (the marker element
/// and every chart are in the DOM), logs no console error, loads every
/// overlay, and renders a screenshot. Set `TRIAGE_SCREENSHOT=PATH` to keep it.
#[test]
fn demo_report_renders_in_a_real_browser() {
    let Some(bin) = browser() else {
        if std::env::var("TRIAGE_REQUIRE_BROWSER").as_deref() == Ok("1") {
            panic!("TRIAGE_REQUIRE_BROWSER=1 but no chromium/chrome on PATH");
        }
        println!("SKIP demo_report_renders_in_a_real_browser: no chromium on PATH");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let html = run_demo(&out);
    let url = format!("file://{}", out.join("report.html").display());
    let profile = tmp.path().join("profile");

    let dom = chromium(&bin, &profile, &["--dump-dom", &url]);
    let stdout = String::from_utf8_lossy(&dom.stdout);
    let stderr = String::from_utf8_lossy(&dom.stderr);
    assert_eq!(dom.status.code(), Some(0), "chromium failed:\n{stderr}");
    assert!(
        stdout.contains("id=\"triage-report\""),
        "page parsed:\n{stderr}"
    );
    assert_eq!(
        count(&stdout, "<svg"),
        count(&html, "<svg"),
        "every chart in the DOM"
    );
    assert_eq!(count(&stdout, "<img"), count(&html, "<img"));
    for bad in [
        "CONSOLE",
        "Uncaught",
        "Refused to",
        "ERR_FILE_NOT_FOUND",
        "net::ERR",
    ] {
        assert!(!stderr.contains(bad), "browser logged {bad}:\n{stderr}");
    }

    let shot = tmp.path().join("shot.png");
    let s = chromium(
        &bin,
        &profile,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,2000",
            "--hide-scrollbars",
            &url,
        ],
    );
    let stderr = String::from_utf8_lossy(&s.stderr);
    assert_eq!(s.status.code(), Some(0), "screenshot failed:\n{stderr}");
    for bad in ["CONSOLE", "Uncaught", "Refused to", "net::ERR"] {
        assert!(!stderr.contains(bad), "browser logged {bad}:\n{stderr}");
    }
    let img = image::open(&shot).expect("a PNG screenshot").to_rgb8();
    assert_eq!((img.width(), img.height()), (1280, 2000));
    // Not blank: the page background plus the charts' and overlays' colours.
    let distinct: std::collections::HashSet<[u8; 3]> = img.pixels().map(|p| p.0).collect();
    assert!(distinct.len() > 50, "{} colours", distinct.len());
    if let Some(keep) = std::env::var_os("TRIAGE_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }
}

/// A classification dataset of `n` items over `c` classes (no images), named
/// `k0000`, `k0001`, ... (every 100th one a markup string). Item `i` is
/// annotated class `i % c` and predicted it (0.9, the rest spread evenly),
/// except: items with `i % 10 == 3` are predicted as the next class, items
/// with `i % 50 == 7` are annotated class 7, and half of those
/// (`i % 100 == 7`) are predicted class 9: the planted top pair, `n / 100`
/// of the `n / 50` items annotated 7.
fn many_class_dataset(dir: &Path, n: usize, c: usize) -> Vec<String> {
    std::fs::create_dir_all(dir).unwrap();
    let names: Vec<String> = (0..c)
        .map(|k| {
            if k % 100 == 13 {
                format!("<b>k{k:04}</b>")
            } else {
                format!("k{k:04}")
            }
        })
        .collect();
    let quoted: Vec<String> = names.iter().map(|s| format!("\"{s}\"")).collect();
    std::fs::write(
        dir.join("triage.toml"),
        format!(
            "task = \"classification\"\nclasses = [{}]\n[inputs]\nitems = \"items.csv\"\nprobs = \"probs.npy\"\n",
            quoted.join(", ")
        ),
    )
    .unwrap();
    let mut w = csv::Writer::from_path(dir.join("items.csv")).unwrap();
    w.write_record(["id", "label"]).unwrap();
    let rest = 0.1 / (c - 1) as f32;
    let mut probs = vec![rest; n * c];
    for i in 0..n {
        let (label, predicted) = if i % 100 == 7 {
            (7, 9)
        } else if i % 50 == 7 {
            (7, 7)
        } else if i % 10 == 3 {
            (i % c, (i + 1) % c)
        } else {
            (i % c, i % c)
        };
        w.write_record([format!("m{i:06}"), names[label].clone()])
            .unwrap();
        probs[i * c + predicted] = 0.9;
    }
    w.flush().unwrap();
    write_f32(&dir.join("probs.npy"), &[n, c], &probs);
    names
}

/// 1000 classes: no heatmap and no per-class bars for every class, but the
/// most-confused pairs (the planted one first), the worst classes by recall
/// and the class balance cut to the extremes; the page stays under 5 MB and
/// does not grow with the number of items; a real browser loads it fast.
#[test]
fn a_thousand_classes_give_a_small_page_led_by_the_most_confused_pairs() {
    let tmp = tempfile::tempdir().unwrap();
    let c = 1000;
    let mut sizes = Vec::new();
    for n in [3000, 12000] {
        let dir = tmp.path().join(format!("n{n}"));
        many_class_dataset(&dir, n, c);
        let out = dir.join("out");
        run_ok(&dir, &out, &["--backend", "cpu"]);
        let html = std::fs::read_to_string(out.join("report.html")).unwrap();
        println!("{c} classes, {n} items: report.html {} bytes", html.len());
        assert!(html.len() < 5_000_000, "{} bytes", html.len());
        assert_self_contained(&html, &out);

        // The full numbers stay in report.json.
        let report = read_report_typed(&out);
        assert_eq!(report.per_class.len(), c);
        assert_eq!(report.confusion.len(), c);
        assert_eq!(report.confusion[7][9], n as u64 / 100);

        // No heatmap; the most-confused pairs instead, the planted one first.
        assert_eq!(count(&html, "data-chart=\"confusion\""), 0);
        assert_eq!(count(&html, "class=\"cm-cell\""), 0);
        assert!(html.contains("report.json <code>per_class</code>"));
        assert!(html.contains("<code>confusion</code>"));
        let at = html
            .find("<h3 id=\"confused-pairs\">")
            .expect("most-confused pairs section");
        let pairs = &html[at..];
        assert_eq!(count(chart(pairs, "confused-pairs"), "class=\"bar\""), 20);
        let row = |k: usize| {
            let r = pairs.split("<tr class=\"pair\">").nth(k).unwrap();
            &r[..r.find("</tr>").unwrap()]
        };
        assert_eq!(
            row(1),
            format!(
                "<td class=\"num\">1</td><td>k0007</td><td>k0009</td><td class=\"num\">{}</td><td class=\"num\">50.0%</td>",
                n / 100
            )
        );
        // Next: a class with i % 10 == 3 predicted as the next one, all its
        // n / c items.
        assert_eq!(
            row(2),
            format!(
                "<td class=\"num\">2</td><td>k0003</td><td>k0004</td><td class=\"num\">{}</td><td class=\"num\">100.0%</td>",
                n / c
            )
        );
        assert_eq!(count(pairs, "<tr class=\"pair\">"), 20);
        assert!(!html.contains("<b>k0"), "class names are escaped");

        // The 30 classes with the lowest recall: those with i % 10 == 3
        // (recall 0, equal supports, so by index).
        assert_eq!(count(&html, "<tr class=\"worst\">"), 30);
        let worst = &html[html.find("<tr class=\"worst\">").unwrap()..];
        assert!(worst.starts_with("<tr class=\"worst\"><td class=\"num\">1</td><td>k0003</td>"));
        assert!(worst.contains("<td class=\"num\">2</td><td>&lt;b&gt;k0013&lt;/b&gt;</td>"));
        assert!(worst.contains("<td class=\"num\">30</td><td>k0293</td>"));
        // A recall bar each (0); no precision bars: nothing is predicted
        // as these classes, so their precision is undefined.
        assert_eq!(count(chart(&html, "per-class"), "class=\"bar\""), 30);
        assert_eq!(count(&html, "data-chart=\"support\""), 2);
        for kind in ["per-class", "support", "confused-pairs"] {
            assert!(chart(&html, kind).len() < 40_000, "{kind}");
        }
        sizes.push(html.len());
    }
    assert!(
        sizes[1] as f64 <= 1.2 * sizes[0] as f64,
        "page grows with the items: {sizes:?}"
    );

    let Some(bin) = browser() else {
        if std::env::var("TRIAGE_REQUIRE_BROWSER").as_deref() == Ok("1") {
            panic!("TRIAGE_REQUIRE_BROWSER=1 but no chromium/chrome on PATH");
        }
        println!("SKIP browser part: no chromium on PATH");
        return;
    };
    let page = tmp.path().join("n3000/out/report.html");
    let html = std::fs::read_to_string(&page).unwrap();
    let url = format!("file://{}", page.display());
    let started = std::time::Instant::now();
    let dom = chromium(&bin, &tmp.path().join("profile"), &["--dump-dom", &url]);
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&dom.stdout);
    let stderr = String::from_utf8_lossy(&dom.stderr);
    println!("chromium --dump-dom: {took:?}");
    assert_eq!(dom.status.code(), Some(0), "chromium failed:\n{stderr}");
    assert!(
        stdout.contains("id=\"triage-report\"") && stdout.contains("id=\"confused-pairs\""),
        "page parsed:\n{stderr}"
    );
    assert_eq!(count(&stdout, "<svg"), count(&html, "<svg"));
    for bad in ["CONSOLE", "Uncaught", "Refused to", "net::ERR"] {
        assert!(!stderr.contains(bad), "browser logged {bad}:\n{stderr}");
    }
    assert!(
        took < std::time::Duration::from_secs(10),
        "the browser took {took:?}"
    );
}
