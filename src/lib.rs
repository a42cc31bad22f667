//! soundalike: recommend music by how it sounds, from AudioSet's published VGGish embeddings.
//!
//! The library holds all the logic; `main.rs` only parses arguments and maps errors to exit codes.

pub mod cli;
pub mod clip;
pub mod error;
pub mod evaluate;
pub mod fuzzing;
pub mod index;
pub mod indexing;
pub mod info;
pub mod ingest;
pub mod input;
pub mod labels;
pub mod output;
pub mod progress;
pub mod recommend;
pub mod record;
pub mod scan;
pub mod sequence_example;
pub mod vector;
