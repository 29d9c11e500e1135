//! Readers that validate as they go, and the atomic writer for outputs.

/// Read and check a dataset directory: `triage.toml`
/// ([`crate::config::DatasetConfig::load`]), then its labels file, if it
/// names one, matched to the items ([`labelfile::attach`]).
pub fn load_dataset(dir: &std::path::Path) -> crate::error::Result<crate::config::DatasetConfig> {
    let mut cfg = crate::config::DatasetConfig::load(dir)?;
    labelfile::attach(&mut cfg)?;
    Ok(cfg)
}

pub mod annotations;
pub mod atomic;
pub mod campaign;
pub mod coco_rle;
pub mod embeddings;
pub mod history;
pub mod inputs;
pub mod items_parquet;
pub mod jsonw;
pub mod labelfile;
pub mod labels;
pub mod manifest;
pub mod mask;
pub mod npy;
pub mod npz;
pub mod probs;
pub mod sealed;
pub mod seg_probs;
pub mod stream;
