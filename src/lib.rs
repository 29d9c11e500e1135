//! `triage`: rank the labels of a dataset by how much a human should re-check them.
//!
//! The library reads a dataset directory (see [`config`]), streams the model's
//! probabilities batch by batch through a [`backend::Backend`], aggregates the
//! per-item and per-dataset scores ([`metrics`]), orders the items by
//! [`priority`] and writes the review queue and report ([`output`]).
//!
//! ```no_run
//! let opts = triage::pipeline::RunOptions::new("datasets/demo", "out/demo");
//! let summary = triage::pipeline::run(&opts)?;
//! println!("{} items scored", summary.n_items);
//! # Ok::<(), triage::Error>(())
//! ```

pub mod agreement;
pub mod backend;
pub mod checks;
pub mod cli;
pub mod config;
pub mod drift;
pub mod error;
pub mod export;
pub mod fsx;
pub mod index;
pub mod io;
pub mod labelset;
pub mod memory;
pub mod metrics;
pub mod neighbors;
pub mod output;
pub mod pipeline;
pub mod priority;
pub mod queue;
pub mod records;
pub mod report;
pub mod schema;
pub mod score;
pub mod scores;
pub mod synth;

pub use error::{Error, Result};
