//! The index: the LMDB store and its tables, the vector forms, the searches over them (the exact scan, the
//! arroy forest, and the neighbour graph built by NN-descent), the build, and the directory's own policy
//! (what a rebuild may replace). Private: the crate's front door (`Index`, `IndexBuilder`) is its API.

pub mod build;
pub mod calibrate;
pub mod codes;
pub mod dir;
pub mod entry;
pub mod fit;
pub mod graph;
pub mod hash;
pub mod nndescent;
pub mod plan;
pub mod projection;
pub mod records;
pub mod rerank;
pub mod rptree;
pub mod scan;
pub mod search;
pub mod store;
pub mod tables;
pub mod vector;
