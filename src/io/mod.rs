//! Readers that validate as they go, and the atomic writer for outputs.

pub mod annotations;
pub mod atomic;
pub mod coco_rle;
pub mod embeddings;
pub mod inputs;
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
