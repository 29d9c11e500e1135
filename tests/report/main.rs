//! `report.html` and `overlays/`, including a real headless browser (Chromium).

#[path = "../common/mod.rs"]
mod common;

mod report_html;
