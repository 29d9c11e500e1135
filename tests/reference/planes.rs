//! Values left in their file (`SegItem::planes`, read stripe by stripe by the
//! CPU workers) give exactly what the same values read into memory give:
//! every sum, count, the prediction map and the first invalid pixel.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use crate::common;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use triage::backend::cpu::CpuBackend;
use triage::backend::{Backend, ProbBuf, SegBatch, SegItem};
use triage::io::npy::NpyArray;
use triage::report::overlay::{argmax_map, argmax_planes};

// 23 classes: a float32 stripe is 2848 pixels, so this item spans five
// stripes (and a short last one); float16 spans three.
const C: usize = 23;
const H: usize = 97;
const W: usize = 131;

/// Two stacked items of random normalised probabilities (N, C, H, W) and a
/// label map; `nan_at` plants a NaN in item 1 at that pixel, class 5.
fn fixture(
    dir: &std::path::Path,
    f16: bool,
    nan_at: Option<usize>,
) -> (std::path::PathBuf, Vec<u16>) {
    let hw = H * W;
    let mut rng = ChaCha8Rng::seed_from_u64(7 + f16 as u64);
    let mut p = vec![0f32; 2 * C * hw];
    for item in 0..2 {
        for i in 0..hw {
            let mut col: Vec<f32> = (0..C)
                .map(|_| rng.random_range(0.0f32..1.0).powi(4))
                .collect();
            let s: f32 = col.iter().sum();
            col.iter_mut().for_each(|v| *v /= s);
            for (k, v) in col.into_iter().enumerate() {
                p[item * C * hw + k * hw + i] = v;
            }
        }
    }
    if let Some(px) = nan_at {
        p[C * hw + 5 * hw + px] = f32::NAN;
    }
    let labels: Vec<u16> = (0..hw)
        .map(|i| {
            if i % 97 == 3 {
                255
            } else {
                ((i / W) / 9 + (i % W) / 13) as u16 % C as u16
            }
        })
        .collect();
    let path = dir.join(if f16 { "p16.npy" } else { "p32.npy" });
    let (descr, bytes): (&str, Vec<u8>) = if f16 {
        (
            "<f2",
            p.iter()
                .flat_map(|&v| half::f16::from_f32(v).to_bits().to_le_bytes())
                .collect(),
        )
    } else {
        ("<f4", p.iter().flat_map(|v| v.to_le_bytes()).collect())
    };
    common::write_npy_raw(&path, descr, &[2, C, H, W], &bytes);
    (path, labels)
}

fn batch(item: SegItem) -> SegBatch {
    SegBatch {
        items: vec![item],
        classes: C,
        ignore_index: 255,
        logits: false,
    }
}

#[test]
fn planes_read_from_the_file_score_exactly_as_values_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let cpu = CpuBackend::new();
    assert!(cpu.reads_planes());
    let hw = H * W;
    for f16 in [false, true] {
        for nan_at in [None, Some(7000)] {
            let (path, labels) = fixture(dir.path(), f16, nan_at);
            let mut arr = NpyArray::open(&path).unwrap();
            let resident = arr.read_probs(C * hw, C * hw).unwrap();
            assert_eq!(matches!(resident, ProbBuf::F16(_)), f16);
            let clock = Arc::new(AtomicU64::new(0));
            let planes = arr
                .planes(C * hw, &clock)
                .unwrap()
                .expect("f16/f32 stay in the file");
            let item =
                |probs: ProbBuf, planes: Option<Arc<dyn triage::backend::PlaneSource>>| SegItem {
                    probs,
                    planes,
                    labels: labels.clone(),
                    height: H,
                    width: W,
                    unlabelled: false,
                };
            let a = cpu
                .score_items(&batch(item(resident.clone(), None)))
                .unwrap();
            let empty = if f16 {
                ProbBuf::F16(vec![])
            } else {
                ProbBuf::F32(vec![])
            };
            let b = cpu
                .score_items(&batch(item(empty, Some(Arc::new(planes)))))
                .unwrap();
            assert_eq!(
                format!("{a:?}"),
                format!("{b:?}"),
                "f16={f16} nan_at={nan_at:?}"
            );
            assert_eq!(b[0].first_invalid, nan_at, "f16={f16}");
            if nan_at.is_none() {
                let ignored = labels.iter().filter(|&&l| l == 255).count();
                assert_eq!(b[0].pixels as usize, hw - ignored);
                // The kept prediction map is the argmax, read either way.
                let src = arr.planes(C * hw, &clock).unwrap().unwrap();
                let by_planes = argmax_planes(&src, C, H, W).unwrap();
                assert_eq!(by_planes, argmax_map(&resident, C, H, W));
                assert_eq!(b[0].pred.as_ref(), Some(&by_planes));
            }
        }
    }
}
