//! soundalike: recommend music by how it sounds, from AudioSet's published VGGish embeddings.
//!
//! The library holds all the logic; `main.rs` only parses arguments and maps errors to exit codes. The data's
//! path shows in the modules: AudioSet records come in through `tfrecord`, become clips (`clip`, `labels`),
//! are stored and searched in `index`, and each subcommand in `commands` drives one leg of that path. What a
//! writer must not lose is guarded beside that path: `output` and `index_dir` decide what may be replaced,
//! `lock` lets one writer at a time at an index, and `cleanup` removes what an interrupted run leaves.

pub mod audio;
pub mod cleanup;
pub mod cli;
pub mod clip;
pub mod commands;
pub mod error;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod index;
pub mod index_dir;
pub mod labels;
pub mod lock;
pub mod output;
pub mod progress;
pub mod tfrecord;
