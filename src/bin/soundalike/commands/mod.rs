//! One module per subcommand, each driving the library for one leg of the data's path.

pub mod embed;
pub mod evaluate;
pub mod index;
pub mod info;
pub mod ingest;
pub mod recommend;
