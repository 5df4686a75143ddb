//! The dashboard's pages (pure): view models built from what the agent and the cluster hold,
//! rendered to HTML and SVG. The agent's HTTP server gathers the inputs and serves the output
//! (`agent::dashboard`); nothing here does I/O, so every page is testable without a browser.

pub(crate) mod graph;
pub(crate) mod html;
pub(crate) mod pages;
pub(crate) mod previews;
pub(crate) mod status;
