//! The integration tests, one binary (issue 21): candle, arroy, heed and symphonia are linked once rather than
//! once per file. A module per behaviour; run one with `cargo test --release --test it <module>::`, e.g.
//! `cargo test --release --test it durability::`.
//!
//! The modules share one process: a test must not change process-wide state (the environment, the current
//! directory, signal dispositions, rayon's global pool) and must open no descriptor a concurrently spawned child
//! could inherit; what it needs changed, it changes in the child it spawns. A module's shared on-disk state
//! (`build_shared_index`) has a name no other module uses.

mod common;

mod adversarial;
mod audio_golden;
mod audio_memory;
mod audio_query;
mod audio_weights;
mod bad_input;
mod browser;
mod cli;
mod decoder;
mod durability;
mod embed;
mod explain;
mod fuzz_regressions;
mod graph;
mod hostile_input;
mod ingest;
mod labels;
mod library;
mod projection;
mod real_weights;
mod recommend;
mod serve;
mod serve_health;
mod serve_network;
mod writers;
