//! Tests that drive the real `triage` binary end to end: the command line, bad
//! input, review import, synthetic datasets and queue policies. One test
//! binary, so that the tests link wgpu once instead of once per file.

#[path = "../common/mod.rs"]
mod common;

mod agreement;
mod bad_input;
mod checks;
mod cli;
mod drift;
mod drift_real;
mod formats;
mod hints;
mod history;
mod hostile_input;
mod hostile_output;
mod hostile_state;
mod incremental;
mod many_items;
mod memory;
mod npz;
mod queue_policy;
mod queue_rows;
mod rank_by;
mod resume;
mod review;
mod scale;
mod selection;
mod shards;
mod synth_ranking;
