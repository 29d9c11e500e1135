//! Tests of the CVAT for images 1.1 reader and writer: CVAT's documented
//! example with hand-worked pixels, the mask `rle` convention on hand-worked
//! boxes and against painting (an independent, naive oracle), every error
//! class, the round trip of `write` through `parse`, and hostile bytes.

use std::path::{Path, PathBuf};

use proptest::prelude::*;

use super::*;
use crate::error::Location;

const FILE: &str = "labels/annotations.xml";

fn path() -> &'static Path {
    Path::new(FILE)
}

fn example() -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/cvat/xml_format_example.xml");
    std::fs::read_to_string(p).unwrap()
}

/// The documented example with `good_frame` among its labels.
fn example_listed() -> String {
    example().replacen(
        "      </labels>",
        "        <label>\n          <name>good_frame</name>\n        </label>\n      </labels>",
        1,
    )
}

/// The error's location and message; fails on any other error.
fn input_err(r: Result<(Doc, Skipped)>) -> (Location, String) {
    match r {
        Err(Error::Input { location, message }) => {
            assert_eq!(location.file, PathBuf::from(FILE));
            (location, message)
        }
        Err(e) => panic!("not an input error: {e}"),
        Ok(_) => panic!("parsed"),
    }
}

fn doc(xml: &str) -> Doc {
    parse(path(), xml.as_bytes()).unwrap()
}

/// A file of one `h × w` image holding `body`, labels `a`, `b`, `c`.
fn one_image(h: usize, w: usize, body: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<annotations><version>1.1</version>\
         <meta><task><labels><label><name>a</name></label><label><name>b</name></label>\
         <label><name>c</name></label></labels></task></meta>\
         <image id=\"7\" name=\"img.png\" width=\"{w}\" height=\"{h}\">{body}</image></annotations>"
    )
}

/// The pixels set in a region, as (row, col), row-major order.
fn pixels(rle: &Rle) -> Vec<(usize, usize)> {
    let m = coco_rle::decode(rle).unwrap();
    (0..m.len())
        .filter(|&p| m[p] == 1)
        .map(|p| (p / rle.w, p % rle.w))
        .collect()
}

#[test]
fn the_documented_example_is_refused_for_its_unlisted_tag_label() {
    let (loc, msg) = input_err(parse_counted(path(), example().as_bytes()));
    assert_eq!(loc.item.as_deref(), Some("filename000.jpg"));
    assert_eq!(loc.field.as_deref(), Some("image[0].tag[0].label"));
    assert!(msg.contains("\"good_frame\""), "{msg}");
}

#[test]
fn the_documented_example_reads_as_worked_by_hand() {
    let (d, skipped) = parse_counted(path(), example_listed().as_bytes()).unwrap();
    let names: Vec<&str> = d.categories.iter().map(|c| c.name.as_str()).collect();
    // the skeleton's point labels 1, 2, 3 (with a <parent>) are not classes
    assert_eq!(
        names,
        ["car", "traffic_line", "wheel", "plate", "s1", "good_frame"]
    );
    assert_eq!(
        d.categories.iter().map(|c| c.id).collect::<Vec<_>>(),
        [0, 1, 2, 3, 4, 5]
    );
    assert_eq!(
        skipped,
        Skipped {
            polylines: 2,
            points: 1,
            cuboids: 0,
            skeletons: 1
        }
    );
    assert_eq!(d.images.len(), 1);
    let img = &d.images[0];
    assert_eq!(
        (img.key.as_str(), img.file_name.as_str()),
        ("0", "filename000.jpg")
    );
    assert_eq!((img.height, img.width), (1200, 1600));
    assert_eq!(img.official, Some(0));
    assert_eq!(img.annotations.len(), 1);
    let a = &img.annotations[0];
    assert_eq!(a.annotator, None);
    assert_eq!(a.tags, [5]);
    // z_order: mask 0, polygon 1, box 4
    assert_eq!(
        a.regions.iter().map(|r| r.category).collect::<Vec<_>>(),
        [0, 0, 3]
    );
    assert!(
        a.regions
            .iter()
            .all(|r| !r.crowd && r.rle.h == 1200 && r.rle.w == 1600)
    );

    // the mask: its 29 runs drawn row by row over the 13 x 15 box at
    // (left 707, top 888):
    //   ...#####.....   row 888: cols 710..=714
    //   ..#######....
    //   .#########...
    //   ###########..
    //   ###########..
    //   ############.
    //   ############.
    //   #############   row 895: cols 707..=719
    //   #############
    //   .############
    //   .############
    //   ..###########
    //   ...#########.
    //   ....#######..
    //   .....#####...   row 902: cols 712..=716
    let art = [
        "...#####.....",
        "..#######....",
        ".#########...",
        "###########..",
        "###########..",
        "############.",
        "############.",
        "#############",
        "#############",
        ".############",
        ".############",
        "..###########",
        "...#########.",
        "....#######..",
        ".....#####...",
    ];
    let mut want = Vec::new();
    for (y, row) in art.iter().enumerate() {
        for (x, ch) in row.chars().enumerate() {
            if ch == '#' {
                want.push((888 + y, 707 + x));
            }
        }
    }
    assert_eq!(want.len(), 149);
    assert_eq!(pixels(&a.regions[0].rle), want);

    // the box 797.33,870.92 - 965.52,928.94: x5 and rounded, 3987..4828
    // across and 4355..4645 down; a column c is inside when 5c + 3 falls in
    // (3987, 4828] (c = 797..=965), a row r when r > 870.6 and r < 928.6
    // (r = 871..=928)
    let got = pixels(&a.regions[2].rle);
    assert_eq!(got.len(), 58 * 169);
    assert_eq!(got.first(), Some(&(871, 797)));
    assert_eq!(got.last(), Some(&(928, 965)));
    assert!(
        got.iter()
            .all(|&(r, c)| (871..=928).contains(&r) && (797..=965).contains(&c))
    );

    // the car polygon (its exact pixels: tests/reference/cvat.rs): inside
    // its outline, not outside it
    let car = coco_rle::decode(&a.regions[1].rle).unwrap();
    let at = |r: usize, c: usize| car[r * 1600 + c];
    assert_eq!(at(700, 900), 1);
    assert_eq!(at(300, 850), 1);
    assert_eq!(at(100, 100), 0);
    assert_eq!(at(1000, 900), 0);
    assert_eq!(at(600, 520), 0);
    let set = pixels(&a.regions[1].rle);
    assert!(
        set.iter()
            .all(|&(r, c)| (264..=986).contains(&r) && (528..=1226).contains(&c))
    );
}

#[test]
fn mask_runs_are_row_major_over_the_box_from_a_run_of_zeros() {
    // a 4 x 5 image; box 3 wide, 2 high at left 1, top 1; runs 1, 2, 2, 1:
    //   box row 0: 0 1 1   -> image (1, 2), (1, 3)
    //   box row 1: 0 0 1   -> image (2, 3)
    // column-major positions (col * 4 + row): 9, 13, 14 -> counts
    // 9, 1, 3, 2, 5
    let d = doc(&one_image(
        4,
        5,
        r#"<mask label="a" rle="1, 2, 2, 1" left="1" top="1" width="3" height="2"/>"#,
    ));
    let rle = &d.images[0].annotations[0].regions[0].rle;
    assert_eq!(rle.counts, [9, 1, 3, 2, 5]);
    assert_eq!(pixels(rle), [(1, 2), (1, 3), (2, 3)]);

    // a first run of 0: the box's first row set (2 x 3 image, whole box):
    // positions 0, 2, 4 of 6 (h = 2)
    let d = doc(&one_image(
        2,
        3,
        r#"<mask label="a" rle="0,3,3" left="0" top="0" width="3" height="2"/>"#,
    ));
    let rle = &d.images[0].annotations[0].regions[0].rle;
    assert_eq!(rle.counts, [0, 1, 1, 1, 1, 1, 1]);

    // a full-height box reaching the right edge: its columns join
    // (3 x 4 image, box 2 x 3 at left 2): positions 6..12 of 12
    let d = doc(&one_image(
        3,
        4,
        r#"<mask label="a" rle="0, 6" left="2" top="0" width="2" height="3"/>"#,
    ));
    assert_eq!(d.images[0].annotations[0].regions[0].rle.counts, [6, 6]);

    // zero-length runs inside, and a box of zeros only
    let d = doc(&one_image(
        2,
        2,
        r#"<mask label="a" rle="1, 1, 0, 1, 1" left="0" top="0" width="2" height="2"/>
           <mask label="b" rle="4" left="0" top="0" width="2" height="2"/>"#,
    ));
    let r = &d.images[0].annotations[0].regions;
    // box 0 1 / 1 0 -> (0, 1), (1, 0): positions 2, 1
    assert_eq!(r[0].rle.counts, [1, 2, 1]);
    assert_eq!(r[1].rle.counts, [4]);
}

/// The naive way: paint the box into the image, then encode.
fn painted(runs: &[u32], left: usize, top: usize, bw: usize, h: usize, w: usize) -> Rle {
    let mut m = vec![0u8; h * w];
    let mut p = 0usize;
    for (i, &r) in runs.iter().enumerate() {
        for q in p..p + r as usize {
            if i % 2 == 1 {
                m[(top + q / bw) * w + left + q % bw] = 1;
            }
        }
        p += r as usize;
    }
    coco_rle::encode(&m, h, w).unwrap()
}

/// CVAT's runs of a row-major bitmap (first run 0s).
fn cvat_runs(bits: &[bool]) -> Vec<u32> {
    let mut runs = Vec::new();
    let (mut v, mut n) = (false, 0u32);
    for &b in bits {
        if b != v {
            runs.push(n);
            n = 0;
            v = b;
        }
        n += 1;
    }
    runs.push(n);
    runs
}

proptest! {
    #[test]
    fn mask_runs_become_the_counts_painting_gives(
        h in 1usize..12, w in 1usize..12,
        seed in any::<u64>(), density in 0u32..5, zero_runs in any::<bool>(),
    ) {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let (top, left) = (rng.random_range(0..h), rng.random_range(0..w));
        let (bh, bw) = (rng.random_range(1..=h - top), rng.random_range(1..=w - left));
        let bits: Vec<bool> = (0..bh * bw).map(|_| match density {
            0 => false,
            1 => true,
            2 => rng.random_bool(0.1),
            3 => rng.random_bool(0.9),
            _ => rng.random_bool(0.5),
        }).collect();
        let mut runs = cvat_runs(&bits);
        if zero_runs && runs.len() > 2 {
            // split a run in two around an empty one: same pixels
            let i = rng.random_range(1..runs.len());
            let a = runs[i] / 2;
            runs[i] -= a;
            runs.splice(i..i, [a, 0]);
        }
        let mut budget = u64::MAX;
        let got = box_runs_to_rle(&runs, left, top, bw, bh, h, w, &mut budget).unwrap();
        prop_assert_eq!(got, painted(&runs, left, top, bw, h, w));
    }
}

#[test]
fn regions_stack_by_z_order_and_file_order_breaks_ties() {
    let d = doc(&one_image(
        4,
        4,
        r#"<box label="a" xtl="0" ytl="0" xbr="1" ybr="1" z_order="2"/>
           <box label="b" xtl="0" ytl="0" xbr="2" ybr="2"/>
           <box label="c" xtl="0" ytl="0" xbr="3" ybr="3" z_order="-1"/>
           <box label="a" xtl="1" ytl="1" xbr="2" ybr="2" z_order="0"/>
           <box label="c" xtl="2" ytl="2" xbr="3" ybr="3" z_order="2"/>"#,
    ));
    let r = &d.images[0].annotations[0].regions;
    // z -1: c; z 0: b, a (file order); z 2: a, c (file order)
    assert_eq!(
        r.iter().map(|r| r.category).collect::<Vec<_>>(),
        [2, 1, 0, 0, 2]
    );
    assert_eq!(pixels(&r[1].rle).len(), 4); // b: 2 x 2 box
    assert_eq!(pixels(&r[0].rle).len(), 9); // c: 3 x 3 box
}

#[test]
fn labels_come_in_order_of_appearance_when_the_meta_lists_none() {
    let xml = r#"<annotations><version>1.1</version><meta><task><name>t</name></task></meta>
        <image id="1" name="x.png"><tag label="dog"/></image>
        <image id="2" name="y.png"><tag label="cat"/><tag label="dog"/></image>
        <image id="3" name="z.png"/></annotations>"#;
    let d = doc(xml);
    let names: Vec<&str> = d.categories.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["dog", "cat"]);
    assert_eq!(d.images[0].annotations[0].tags, [0]);
    assert_eq!(d.images[1].annotations[0].tags, [1, 0]);
    // classification images carry no size
    assert_eq!((d.images[0].height, d.images[0].width), (0, 0));
    // no shape, no tag: unlabelled
    assert!(d.images[2].annotations.is_empty());
    assert_eq!(d.images[2].official, None);
}

#[test]
fn an_image_with_only_shapes_that_cover_no_area_is_annotated_but_empty() {
    let (d, s) = parse_counted(
        path(),
        one_image(
            5,
            5,
            r#"<polyline label="a" points="0,0;4,4"/><cuboid label="b"/>"#,
        )
        .as_bytes(),
    )
    .unwrap();
    assert_eq!(s.total(), 2);
    assert_eq!(d.images[0].official, Some(0));
    assert!(d.images[0].annotations[0].regions.is_empty());
}

#[test]
fn rotated_boxes_turn_about_their_centre() {
    // a 2 x 6 box turned 90 degrees about its centre (5, 5) is 6 x 2
    let d = doc(&one_image(
        10,
        10,
        r#"<box label="a" xtl="2" ytl="4" xbr="8" ybr="6" rotation="90"/>
           <box label="a" xtl="4" ytl="2" xbr="6" ybr="8"/>"#,
    ));
    let r = &d.images[0].annotations[0].regions;
    assert_eq!(pixels(&r[0].rle), pixels(&r[1].rle));
}

#[test]
fn ellipses_cover_about_their_area() {
    let d = doc(&one_image(
        100,
        100,
        r#"<ellipse label="a" cx="50" cy="50" rx="30" ry="20" rotation="0"/>
           <ellipse label="a" cx="50" cy="50" rx="30" ry="20" rotation="90"/>"#,
    ));
    let r = &d.images[0].annotations[0].regions;
    let area = std::f64::consts::PI * 30.0 * 20.0;
    for reg in r {
        let n = pixels(&reg.rle).len() as f64;
        assert!((n - area).abs() < 0.03 * area, "{n} vs {area}");
    }
    // unturned: wider than high; turned 90: higher than wide
    let span = |p: &[(usize, usize)]| {
        let rows = p.iter().map(|x| x.0).max().unwrap() - p.iter().map(|x| x.0).min().unwrap();
        let cols = p.iter().map(|x| x.1).max().unwrap() - p.iter().map(|x| x.1).min().unwrap();
        (rows, cols)
    };
    let (r0, c0) = span(&pixels(&r[0].rle));
    let (r1, c1) = span(&pixels(&r[1].rle));
    assert!(c0 > r0 && r1 > c1, "{r0} {c0} {r1} {c1}");
}

#[test]
fn entities_and_character_references_are_read() {
    let xml = r#"<annotations><meta><job><labels><label><name>a &amp; b&#x21;</name></label>
        <label><name><![CDATA[<c>]]></name></label></labels></job></meta>
        <image id="1" name="dir/x &quot;1&quot;.png"><tag label="a &amp; b!"/><tag label="&lt;c&gt;"/></image></annotations>"#;
    let d = doc(xml);
    let names: Vec<&str> = d.categories.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["a & b!", "<c>"]);
    assert_eq!(d.images[0].file_name, "dir/x \"1\".png");
    assert_eq!(d.images[0].annotations[0].tags, [0, 1]);
}

/// Parses `xml` expecting an error at `item` / `field` whose message holds
/// `says`.
#[track_caller]
fn refused(xml: &str, item: Option<&str>, field: &str, says: &str) {
    let (loc, msg) = input_err(parse_counted(path(), xml.as_bytes()));
    assert_eq!(loc.item.as_deref(), item, "{msg}");
    assert_eq!(loc.field.as_deref(), Some(field), "{msg}");
    assert!(msg.contains(says), "{msg:?} lacks {says:?}");
}

#[test]
fn every_error_names_the_file_the_image_and_the_field() {
    let img = Some("img.png");
    // the XML itself
    refused("<annotations><image", None, "xml", "line 1");
    refused(
        "<annotations>\n<meta></task></annotations>",
        None,
        "xml",
        "line 2",
    );
    refused("<annotations><meta>", None, "xml", "ends inside");
    refused("", None, "xml", "no <annotations>");
    refused("<root/>", None, "xml", "not a CVAT XML file");
    refused("<annotations/><annotations/>", None, "xml", "second root");
    refused(
        "<annotations><image id=\"1\" name=\"&bomb;\"/></annotations>",
        None,
        "xml",
        "unrecognized entity `bomb`",
    );
    let (loc, msg) = input_err(parse_counted(path(), b"<annotations>\xff</annotations>"));
    assert_eq!(loc.field.as_deref(), Some("xml"));
    assert!(msg.contains("not UTF-8 at byte 13"), "{msg}");
    refused(
        "<annotations><version>2.0</version></annotations>",
        None,
        "version",
        "2.0",
    );
    refused(
        "<annotations><track id=\"0\" label=\"a\"/></annotations>",
        None,
        "track",
        "CVAT for images 1.1",
    );
    // the labels
    refused(
        "<annotations><meta><task><labels><label/></labels></task></meta></annotations>",
        None,
        "meta.labels.label[0].name",
        "without a <name>",
    );
    refused(
        "<annotations><meta><task><labels><label><name>a</name></label><label><name></name></label></labels></task></meta></annotations>",
        None,
        "meta.labels.label[1].name",
        "empty label name",
    );
    refused(
        "<annotations><meta><project><labels><label><name>a</name></label><label><name>a</name></label></labels></project></meta></annotations>",
        None,
        "meta.labels.label[1].name",
        "twice",
    );
    // the image
    refused(
        "<annotations><image id=\"3\"/></annotations>",
        Some("3"),
        "image[0].name",
        "without a name",
    );
    refused(
        "<annotations><image name=\"x\"/></annotations>",
        Some("x"),
        "image[0].id",
        "without an id",
    );
    refused(
        "<annotations><image id=\"0\" name=\"x\" width=\"3\"/></annotations>",
        Some("x"),
        "image[0].height",
        "no height",
    );
    refused(
        "<annotations><image id=\"0\" name=\"x\" width=\"3\" height=\"-2\"/></annotations>",
        Some("x"),
        "image[0].height",
        "not a whole number",
    );
    refused(&one_image(0, 3, ""), img, "image[0].height", "0 pixels");
    refused(
        &one_image(1 << 15, 1 << 14, ""),
        img,
        "image[0].width",
        "over the limit",
    );
    refused(
        &one_image(usize::MAX, 2, ""),
        img,
        "image[0].width",
        "over the limit",
    );
    refused(
        &one_image(4, 4, "<circle label=\"a\"/>"),
        img,
        "image[0]",
        "<circle>",
    );
    refused(
        "<annotations><image id=\"0\" name=\"x\"><box label=\"a\" xtl=\"0\" ytl=\"0\" xbr=\"1\" ybr=\"1\"/></image></annotations>",
        Some("x"),
        "image[0].width",
        "without width and height",
    );
    // shapes
    refused(
        &one_image(4, 4, "<tag/>"),
        img,
        "image[0].tag[0].label",
        "without a label",
    );
    refused(
        &one_image(
            4,
            4,
            "<tag label=\"a\"/><polygon label=\"zebra\" points=\"0,0;1,0;1,1\"/>",
        ),
        img,
        "image[0].polygon[0].label",
        "\"zebra\" is not among the labels in <meta> (\"a\", \"b\", \"c\")",
    );
    refused(
        &one_image(4, 4, "<points label=\"zebra\" points=\"0,0\"/>"),
        img,
        "image[0].points[0].label",
        "zebra",
    );
    refused(
        &one_image(4, 4, "<polygon label=\"a\" points=\"0,0;1,0\"/>"),
        img,
        "image[0].polygon[0].points",
        "fewer than 3",
    );
    refused(
        &one_image(4, 4, "<polygon label=\"a\" points=\"0,0;1,0;1,1;\"/>"),
        img,
        "image[0].polygon[0].points",
        "point 3",
    );
    refused(
        &one_image(4, 4, "<polygon label=\"a\" points=\"0,0;1,x;1,1\"/>"),
        img,
        "image[0].polygon[0].points",
        "point 1",
    );
    refused(
        &one_image(4, 4, "<polygon label=\"a\" points=\"0,0;inf,0;1,1\"/>"),
        img,
        "image[0].polygon[0].points",
        "finite",
    );
    refused(
        &one_image(4, 4, "<polygon label=\"a\"/>"),
        img,
        "image[0].polygon[0].points",
        "without points",
    );
    refused(
        &one_image(
            4,
            4,
            "<box label=\"a\" xtl=\"0\" ytl=\"0\" xbr=\"one\" ybr=\"1\"/>",
        ),
        img,
        "image[0].box[0].xbr",
        "not a number",
    );
    refused(
        &one_image(
            4,
            4,
            "<box label=\"a\" xtl=\"0\" ytl=\"0\" xbr=\"1\" ybr=\"1\" z_order=\"top\"/>",
        ),
        img,
        "image[0].box[0].z_order",
        "not an integer",
    );
    refused(
        &one_image(
            4,
            4,
            "<ellipse label=\"a\" cx=\"2\" cy=\"2\" rx=\"-1\" ry=\"1\"/>",
        ),
        img,
        "image[0].ellipse[0].rx",
        "≥ 0",
    );
    // masks
    let mask = |attrs: &str| {
        one_image(
            4,
            5,
            &format!("<tag label=\"a\"/><mask label=\"a\" {attrs}/>"),
        )
    };
    refused(
        &mask(r#"rle="1, 2" left="0" top="0" width="2" height="2""#),
        img,
        "image[0].mask[0].rle",
        "sum to 3, not width x height = 2 x 2 = 4",
    );
    refused(
        &mask(r#"rle="1, 2, 9" left="0" top="0" width="2" height="2""#),
        img,
        "image[0].mask[0].rle",
        "more than width x height",
    );
    refused(
        &mask(r#"rle="1, -2, 5" left="0" top="0" width="2" height="2""#),
        img,
        "image[0].mask[0].rle",
        "run 1",
    );
    refused(
        &mask(r#"rle="" left="0" top="0" width="2" height="2""#),
        img,
        "image[0].mask[0].rle",
        "run 0",
    );
    refused(
        &mask(r#"rle="6" left="4" top="0" width="2" height="3""#),
        img,
        "image[0].mask[0].left",
        "reaches past the 5 x 4 image",
    );
    refused(
        &mask(r#"rle="6" left="0" top="3" width="3" height="2""#),
        img,
        "image[0].mask[0].left",
        "reaches past",
    );
    refused(
        &mask(r#"rle="6" left="-1" top="0" width="3" height="2""#),
        img,
        "image[0].mask[0].left",
        "not a whole number",
    );
    refused(
        &mask(r#"rle="0" left="0" top="0" width="0" height="2""#),
        img,
        "image[0].mask[0].width",
        "empty",
    );
    refused(
        &mask(r#"left="0" top="0" width="1" height="1""#),
        img,
        "image[0].mask[0].rle",
        "without rle",
    );
    refused(
        &mask(r#"rle="1" left="0" width="1" height="1""#),
        img,
        "image[0].mask[0].top",
        "without top",
    );
}

#[test]
fn the_budgets_refuse_what_a_file_of_its_size_cannot_hold() {
    // counts: a mask of alternating whole rows (each row change is a run
    // in every column): 16 rows, so 16 changes in each of 8 columns
    let xml = one_image(
        16,
        8,
        r#"<mask label="a" rle="0, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8" left="0" top="0" width="8" height="16"/>"#,
    );
    let small = Budget {
        counts: 100,
        walk: u64::MAX,
    };
    let (loc, msg) = input_err(parse_with_budget(path(), xml.as_bytes(), small));
    assert_eq!(loc.field.as_deref(), Some("image[0].mask[0].rle"));
    assert!(msg.contains("RLE runs"), "{msg}");
    let enough = Budget {
        counts: 200,
        walk: u64::MAX,
    };
    assert!(parse_with_budget(path(), xml.as_bytes(), enough).is_ok());
    // walk: two boxes of 20 x 20 px, each about 4 x 100 steps
    let xml = one_image(
        30,
        30,
        r#"<box label="a" xtl="0" ytl="0" xbr="20" ybr="20"/><box label="a" xtl="0" ytl="0" xbr="20" ybr="20"/>"#,
    );
    let small = Budget {
        counts: u64::MAX,
        walk: 600,
    };
    let (loc, msg) = input_err(parse_with_budget(path(), xml.as_bytes(), small));
    assert_eq!(loc.field.as_deref(), Some("image[0].box[1].xtl"));
    assert!(msg.contains("boundary steps"), "{msg}");
    // and the real budgets follow the file's size
    let b = Budget::for_file(1000);
    assert_eq!(b.counts, (1 << 22) + 256_000);
    assert_eq!(b.walk, (1 << 26) + 4_096_000);
}

fn item(
    id: &str,
    h: usize,
    w: usize,
    current: Option<ItemLabel>,
    predicted: ItemLabel,
) -> ExportItem {
    ExportItem {
        id: id.to_string(),
        image: format!("images/{id}.png"),
        height: h,
        width: w,
        rank: 1,
        priority: 0.5,
        reasons: vec!["low_confidence".into()],
        current,
        predicted,
    }
}

#[test]
fn written_masks_use_cvats_rle_on_the_tight_box() {
    // class 1 at (0, 1), (0, 2), (1, 2) of a 3 x 4 map: box rows 0..=1,
    // cols 1..=2, row-major 1 1 / 0 1 -> runs 0, 2, 1, 1
    let mut m = vec![0u16; 12];
    for p in [1, 2, 6] {
        m[p] = 1;
    }
    m[11] = 255; // ignore
    let meta = ExportMeta {
        task: Task::Segmentation,
        class_names: vec!["bg".into(), "fg".into()],
        ignore_index: 255,
    };
    let xml = String::from_utf8(
        write(
            &meta,
            &[item(
                "x",
                3,
                4,
                Some(ItemLabel::Mask(m)),
                ItemLabel::Mask(vec![0; 12]),
            )],
        )
        .unwrap(),
    )
    .unwrap();
    assert!(
        xml.contains(r#"<mask label="fg" source="manual" occluded="0" rle="0, 2, 1, 1" left="1" top="0" width="2" height="2" z_order="0">"#),
        "{xml}"
    );
    // background: everything but the three fg pixels and the ignored one:
    // box rows 0..=2, cols 0..=3: 1 0 0 1 / 1 1 0 1 / 1 1 1 0
    assert!(
        xml.contains(r#"rle="0, 1, 2, 3, 1, 4, 1" left="0" top="0" width="4" height="3""#),
        "{xml}"
    );
    assert!(
        xml.contains("<!-- triage: rank 1, priority 0.5, item \"x\", reasons: low_confidence -->")
    );
    assert!(xml.contains(r#"<image id="0" name="images/x.png" width="4" height="3">"#));
}

/// A random label map of `k` classes plus some ignore pixels.
fn random_map(
    rng: &mut rand_chacha::ChaCha8Rng,
    h: usize,
    w: usize,
    k: u16,
    ignore: u16,
) -> Vec<u16> {
    use rand::Rng;
    match rng.random_range(0..4) {
        0 => vec![rng.random_range(0..k); h * w],
        1 => vec![ignore; h * w],
        2 => {
            // blobs
            let mut m = vec![0u16; h * w];
            for _ in 0..rng.random_range(1..5) {
                let c = rng.random_range(0..k);
                let (y0, x0) = (rng.random_range(0..h), rng.random_range(0..w));
                let (y1, x1) = (rng.random_range(y0..h), rng.random_range(x0..w));
                for y in y0..=y1 {
                    for x in x0..=x1 {
                        m[y * w + x] = c;
                    }
                }
            }
            m
        }
        _ => (0..h * w)
            .map(|_| {
                if rng.random_bool(0.1) {
                    ignore
                } else {
                    rng.random_range(0..k)
                }
            })
            .collect(),
    }
}

#[test]
fn parse_gives_back_what_write_wrote() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(28);
    let names: Vec<String> = ["background", "cat & dog", "<tree>", "\"sky\"\n2", "лес"]
        .into_iter()
        .map(String::from)
        .collect();
    let meta = ExportMeta {
        task: Task::Segmentation,
        class_names: names.clone(),
        ignore_index: 255,
    };
    let mut items = Vec::new();
    for i in 0..60 {
        let (h, w) = (rng.random_range(1..23), rng.random_range(1..23));
        let current = rng
            .random_bool(0.8)
            .then(|| ItemLabel::Mask(random_map(&mut rng, h, w, 5, 255)));
        let predicted = ItemLabel::Mask(random_map(&mut rng, h, w, 5, 255));
        let mut it = item(&format!("item {i} -- & <x>"), h, w, current, predicted);
        it.image = format!("dir/{i} \"quoted\" & <odd>\t.png");
        it.reasons = vec!["a--b".into(), "ends-".into(), "\u{1}".into()];
        it.priority = rng.random_range(-1.0..1.0);
        items.push(it);
    }
    let bytes = write(&meta, &items).unwrap();
    let d = parse(path(), &bytes).unwrap();
    assert_eq!(
        d.categories
            .iter()
            .map(|c| c.name.clone())
            .collect::<Vec<_>>(),
        names
    );
    assert_eq!(d.images.len(), items.len());
    for (i, (it, img)) in items.iter().zip(&d.images).enumerate() {
        assert_eq!(img.key, i.to_string());
        assert_eq!(img.file_name, it.image);
        assert_eq!((img.height, img.width), (it.height, it.width));
        let Some(ItemLabel::Mask(m)) = it.current.as_ref().or(Some(&it.predicted)) else {
            unreachable!()
        };
        // each class present, in class order, exactly its pixels
        let present: Vec<u16> = (0..5u16).filter(|k| m.contains(k)).collect();
        if present.is_empty() {
            assert!(img.annotations.is_empty(), "item {i}");
            continue;
        }
        let regions = &img.annotations[0].regions;
        assert_eq!(
            regions
                .iter()
                .map(|r| r.category as u16)
                .collect::<Vec<_>>(),
            present,
            "item {i}"
        );
        for r in regions {
            let got = coco_rle::decode(&r.rle).unwrap();
            let want: Vec<u8> = m
                .iter()
                .map(|&v| u8::from(v == r.category as u16))
                .collect();
            assert_eq!(got, want, "item {i}, class {}", r.category);
            // canonical counts, as encode writes them
            assert_eq!(r.rle, coco_rle::encode(&want, it.height, it.width).unwrap());
        }
    }
}

#[test]
fn classification_round_trips_and_unlabelled_items_show_the_prediction() {
    let meta = ExportMeta {
        task: Task::Classification,
        class_names: vec!["cat".into(), "dog".into(), "a&b".into()],
        ignore_index: 0,
    };
    let items = [
        item("1", 0, 0, Some(ItemLabel::Class(2)), ItemLabel::Class(0)),
        item("2", 0, 0, None, ItemLabel::Class(1)),
        item("3", 0, 0, Some(ItemLabel::Class(0)), ItemLabel::Class(1)),
    ];
    let bytes = write(&meta, &items).unwrap();
    let xml = String::from_utf8(bytes.clone()).unwrap();
    assert!(xml.contains(r#"<tag label="dog" source="auto">"#), "{xml}");
    assert!(xml.contains("unlabelled: below is the model's prediction"));
    assert!(
        xml.contains(r#"<image id="0" name="images/1.png">"#),
        "{xml}"
    );
    let d = parse(path(), &bytes).unwrap();
    let tags: Vec<Vec<usize>> = d
        .images
        .iter()
        .map(|i| i.annotations[0].tags.clone())
        .collect();
    assert_eq!(tags, [vec![2], vec![1], vec![0]]);
    assert_eq!(d.categories[2].name, "a&b");
}

#[test]
fn write_refuses_what_xml_cannot_hold_and_labels_that_do_not_fit() {
    let seg = ExportMeta {
        task: Task::Segmentation,
        class_names: vec!["a".into(), "b\u{0}".into()],
        ignore_index: 255,
    };
    let e = write(&seg, &[]).unwrap_err();
    assert!(
        matches!(&e, Error::Usage(m) if m.contains("class 1") && m.contains("U+0000")),
        "{e}"
    );
    let seg = ExportMeta {
        class_names: vec!["a".into(), "b".into()],
        ..seg
    };
    let mut it = item(
        "q",
        1,
        2,
        Some(ItemLabel::Mask(vec![0, 1])),
        ItemLabel::Mask(vec![0, 0]),
    );
    it.image = "x\u{fffe}".into();
    let e = write(&seg, &[it.clone()]).unwrap_err();
    assert!(
        matches!(&e, Error::Usage(m) if m.contains("item \"q\"")),
        "{e}"
    );
    it.image = "x.png".into();
    it.current = Some(ItemLabel::Mask(vec![0, 1, 1]));
    assert!(
        matches!(write(&seg, &[it.clone()]), Err(Error::Internal(m)) if m.contains("not 1 x 2"))
    );
    it.current = Some(ItemLabel::Mask(vec![0, 7]));
    assert!(matches!(write(&seg, &[it.clone()]), Err(Error::Internal(m)) if m.contains("class 7")));
    it.current = Some(ItemLabel::Class(0));
    assert!(matches!(
        write(&seg, &[it.clone()]),
        Err(Error::Internal(_))
    ));
    let cls = ExportMeta {
        task: Task::Classification,
        ..seg
    };
    it.current = Some(ItemLabel::Class(2));
    assert!(matches!(write(&cls, &[it]), Err(Error::Internal(m)) if m.contains("class 2")));
}

#[test]
fn comments_stay_comments() {
    assert_eq!(comment_text("a--b"), "a- -b");
    assert_eq!(comment_text("a---"), "a- - - ");
    assert_eq!(comment_text("x\u{1}y"), "x\u{fffd}y");
}

/// Byte-level damage to a valid file.
fn mutate(mut b: Vec<u8>, ops: &[(u8, usize, u8)]) -> Vec<u8> {
    for &(op, at, v) in ops {
        if b.is_empty() {
            b.push(v);
            continue;
        }
        let at = at % b.len();
        match op % 5 {
            0 => b[at] ^= 1 << (v % 8),
            1 => b.insert(at, v),
            2 => {
                b.remove(at);
            }
            3 => b.truncate(at),
            _ => {
                // splice an extreme value into an attribute or text
                const VALS: [&str; 8] = [
                    "-1",
                    "4294967296",
                    "1e308",
                    "NaN",
                    "99999999999999999999",
                    "0",
                    "&x;",
                    "268435456",
                ];
                let s = VALS[usize::from(v) % VALS.len()].as_bytes();
                let end = (at + 2).min(b.len());
                b.splice(at..end, s.iter().copied());
            }
        }
    }
    b
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]
    #[test]
    fn hostile_bytes_give_an_error_naming_the_file_never_a_panic(
        ops in prop::collection::vec((any::<u8>(), any::<usize>(), any::<u8>()), 1..6),
        which in 0u8..3,
    ) {
        let base = match which {
            0 => example_listed(),
            1 => one_image(40, 50, r#"<mask label="a" rle="3, 5, 7, 7, 5, 9, 3" left="7" top="8" width="13" height="3" z_order="2"/><polygon label="b" points="1,1;30,2;20,30"/><box label="c" xtl="1.5" ytl="2" xbr="30" ybr="9" rotation="30"/><ellipse label="a" cx="20" cy="20" rx="9" ry="4"/>"#),
            _ => String::from_utf8(write(&ExportMeta { task: Task::Segmentation, class_names: vec!["a".into(), "b".into(), "c".into()], ignore_index: 9 }, &[item("z", 5, 7, Some(ItemLabel::Mask((0..35).map(|i| (i % 3) as u16).collect())), ItemLabel::Mask(vec![0; 35]))]).unwrap()).unwrap(),
        };
        let bytes = mutate(base.into_bytes(), &ops);
        match parse(path(), &bytes) {
            Ok(d) => {
                for img in &d.images {
                    for a in &img.annotations {
                        for r in &a.regions {
                            prop_assert!(r.category < d.categories.len());
                            prop_assert_eq!((r.rle.h, r.rle.w), (img.height, img.width));
                            if img.height * img.width <= 1 << 20 {
                                prop_assert!(coco_rle::decode(&r.rle).is_ok());
                            }
                        }
                    }
                }
            }
            Err(Error::Input { location, message }) => {
                prop_assert_eq!(location.file, PathBuf::from(FILE));
                prop_assert!(location.field.is_some());
                prop_assert!(!message.is_empty());
            }
            Err(e) => prop_assert!(false, "not an input error: {}", e),
        }
    }
}

#[test]
fn malformed_xml_inside_an_image_names_the_image() {
    let xml = one_image(4, 4, "<polygon label=\"a\" points=\"0,0;1,0;1,1\">");
    let (loc, msg) = input_err(parse_counted(path(), xml.as_bytes()));
    assert_eq!(loc.item.as_deref(), Some("img.png"));
    assert_eq!(loc.field.as_deref(), Some("xml"));
    assert!(msg.contains("malformed XML at byte"), "{msg}");
    let xml = "<annotations><image id=\"1\" name=\"cut.png\"><tag label=\"a\"/>";
    let (loc, msg) = input_err(parse_counted(path(), xml.as_bytes()));
    assert_eq!(loc.item.as_deref(), Some("cut.png"));
    assert!(msg.contains("ends inside an <image>"), "{msg}");
}

#[test]
fn a_small_hostile_file_is_refused_by_the_real_budgets() {
    // whole rows alternating on a 16384-wide box: each run of 7 bytes is a
    // change in all 16384 columns
    let runs = vec!["16384"; 400].join(", ");
    let xml = one_image(
        16384,
        16384,
        &format!(
            r#"<mask label="a" rle="0, {runs}" left="0" top="0" width="16384" height="400"/>"#
        ),
    );
    let t = std::time::Instant::now();
    let (loc, msg) = input_err(parse_counted(path(), xml.as_bytes()));
    assert_eq!(loc.field.as_deref(), Some("image[0].mask[0].rle"));
    assert!(msg.contains("RLE runs"), "{msg}");
    // polygons far outside the image: each walks about 3e7 steps, three
    // pass the budget of a small file (2^26 + 4096 a byte)
    let tri = r#"<polygon label="a" points="0,0;2000000,0;0,2000000"/>"#;
    let xml = one_image(8, 8, &format!("{tri}{tri}{tri}"));
    let (loc, msg) = input_err(parse_counted(path(), xml.as_bytes()));
    assert_eq!(loc.field.as_deref(), Some("image[0].polygon[2].points"));
    assert!(msg.contains("boundary steps"), "{msg}");
    eprintln!("refused in {:?}", t.elapsed());
}
