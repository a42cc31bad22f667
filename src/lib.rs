//! soundalike: recommend music by how it sounds, from AudioSet's published VGGish embeddings.
//!
//! The library is the engine; the `soundalike` command line is its first client. Open an index once and ask
//! it from as many threads as you like:
//!
//! ```
//! use soundalike::{Index, Query, QueryOptions};
//!
//! # fn main() -> soundalike::Result<()> {
//! # let dir = soundalike::doc_fixture_index()?;
//! let index = Index::open(&dir)?;
//! let options = QueryOptions { count: 5, ..QueryOptions::default() };
//! let hits = index.recommend(&Query::Id("xtGmrLOsjHk".into()), &options)?;
//! assert_eq!(hits.len(), 5);
//! let lines: Vec<String> = hits
//!     .iter()
//!     .map(|hit| format!("{} {:.3} {}", hit.video_id, hit.similarity.unwrap_or(0.0), hit.url()))
//!     .collect();
//! assert!(lines[0].contains("https://www.youtube.com/watch?v="));
//! # Ok(())
//! # }
//! ```
//!
//! The data's path shows in the modules: AudioSet records come in through [`ingest`], become
//! clips ([`clip`], [`labels`]), are stored by an [`IndexBuilder`] and asked through an [`Index`]; audio files
//! become clips through [`audio`] ([`Embedder`], [`audio::source`]); [`evaluate`] measures answers. What a
//! writer must not lose is guarded by [`fs`]: locks, the hidden siblings renamed into place, and the paths an
//! interrupted run removes ([`fs::cleanup::remove_registered`], which a host calls from its own signal
//! handling: the library installs none, never prints and never exits).

/// Declares modules that the integration tests and the fuzz targets reach through the `fuzzing` feature (they
/// check the audio front end against TensorFlow's and replay the TFRecord framing's saved inputs), and that are
/// the crate's own otherwise: no part of the API, and out of `cargo doc`. Their items the crate itself does not
/// use are the tests' alone, hence the allowance.
macro_rules! internal_modules {
    ($($(#[$meta:meta])* mod $name:ident;)*) => {
        $(
            $(#[$meta])*
            #[cfg(feature = "fuzzing")]
            pub mod $name;
            $(#[$meta])*
            #[cfg(not(feature = "fuzzing"))]
            #[allow(dead_code)]
            pub(crate) mod $name;
        )*
    };
}
pub(crate) use internal_modules;

pub mod audio;
pub mod clip;
mod error;
pub mod evaluate;
pub mod explain;
mod export;
pub mod fs;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod hit;
mod index;
pub mod ingest;
pub mod labels;
mod query;
internal_modules! {
    mod tfrecord;
}

/// The projection every frame goes through before it is indexed: the compiled-in model of AudioSet's music
/// labels, one fit on other clips, or a matrix from a file (docs/design.md).
pub mod projection {
    pub use crate::index::fit::{DIMENSIONS, Fit};
    pub use crate::index::projection::{Projection, Summary};
}

pub use audio::Embedder;
pub use error::{Error, ErrorKind, Result, UsageError};
pub use explain::{Compared, Explanation, LabelShare, Matched};
pub use export::{Searched, SearchedClip};
pub use hit::{Answer, Hit, Ranked};
pub use index::build::{
    BuildEvent, BuildOptions, Built, ClipInput, IndexBuilder, ProjectionChoice,
};
pub use index::dir::holds_index;
pub use index::plan::Search;
pub use index::plan::{Breadth, SearchPlan};
pub use index::store::{Calibration, Settings};
pub use index::vector::{Form, Metric};
pub use query::{
    Index, Info, NotOneQuery, Query, QueryKind, QueryOptions, Reader, SearchMethod, Session,
};

/// Ingests the bundled fixture records and indexes their music clips once per process, for the crate's
/// documentation examples (which run as tests; the fixtures are AudioSet files, see fixtures/README.md).
#[doc(hidden)]
pub fn doc_fixture_index() -> Result<std::path::PathBuf> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = std::env::temp_dir().join(format!("soundalike-doc-{}.idx", std::process::id()));
    if !dir.exists() {
        let mut clips = Vec::new();
        ingest::Ingest::open(&[root.join("fixtures/audioset_v1_embeddings")])?.run(
            &ingest::IngestOptions::default(),
            &mut clips,
            |_| {},
        )?;
        let input = ClipInput::Reader {
            name: "fixture clips".into(),
            reader: Box::new(&clips[..]),
        };
        IndexBuilder::new(&dir).rebuild(vec![input])?;
    }
    Ok(dir)
}
