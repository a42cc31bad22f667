//! The index: the LMDB store and its tables, the vector forms, and the searches over them (the exact scan, the
//! arroy forest, and the neighbour graph built by NN-descent).

mod bus_error;
pub mod codes;
pub mod fit;
pub mod graph;
pub mod nndescent;
pub mod projection;
pub mod records;
pub mod rerank;
pub mod rptree;
pub mod scan;
pub mod search;
pub mod store;
pub mod vector;
