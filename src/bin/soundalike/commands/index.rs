//! `index`: clips from `ingest` into an index, rebuilt beside the old one and swapped in, or appended in one
//! write transaction.

use std::io::{self, IsTerminal};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use soundalike::{BuildEvent, BuildOptions, Built, ClipInput, IndexBuilder, UsageError};

use crate::progress::Progress;
use crate::stderr::say;

pub struct IndexArgs {
    pub dir: PathBuf,
    /// Empty or `-` reads stdin.
    pub inputs: Vec<PathBuf>,
    pub options: BuildOptions,
    pub append: bool,
    pub quiet: bool,
}

pub fn run(args: &IndexArgs) -> Result<Built> {
    let started = Instant::now();
    // Nothing given and nothing piped in: reading the terminal would wait silently for clips no one will type.
    if args.inputs.is_empty() && io::stdin().is_terminal() {
        return Err(UsageError::new(format!(
            "no input: give the clip files `soundalike ingest` wrote, or pipe them in \
             (`soundalike ingest features.tar.gz | soundalike index --index {}`)",
            args.dir.display()
        ))
        .into());
    }
    crate::process::remove_on_interrupt();
    crate::bus_error::report_for(&args.dir);
    crate::bus_error::also_remove(&soundalike::fs::lock::WriterLock::path_for(&args.dir));
    let progress = Progress::items(None, args.quiet, "clips");
    let dir = args.dir.display().to_string();
    let report = |event: BuildEvent| match event {
        BuildEvent::ClipRead => progress.inc(1),
        BuildEvent::Stage(stage) => progress.stage(stage.to_string()),
        // The build's peak memory: what it read, freed on one thread, stays in its RSS to the end otherwise.
        BuildEvent::ClipsReleased => crate::process::give_back_freed_memory(),
        // Even with -q: a run that stops without a word looks hung.
        BuildEvent::Waiting => progress.say(&format!(
            "index: waiting for another `index` run on {dir} to finish"
        )),
    };
    let builder = IndexBuilder::new(&args.dir)
        .options(args.options.clone())
        .progress(report);
    let built = if args.append {
        builder.append(inputs(&args.inputs))
    } else {
        builder.rebuild(inputs(&args.inputs))
    }?;
    progress.finish();
    if !args.quiet {
        say!(
            "index: {} clips read ({} of them replacing a clip with the same video_id); {} clips in {} ({} trees, \
             {:.1} MB) in {:.2} s",
            built.read,
            built.replaced,
            built.clips,
            args.dir.display(),
            built.trees,
            built.bytes as f64 / 1e6,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(built)
}

/// The clip files, `-` (or none) being stdin.
fn inputs(paths: &[PathBuf]) -> Vec<ClipInput<'static>> {
    let stdin = || ClipInput::Reader {
        name: "<stdin>".into(),
        reader: Box::new(io::stdin().lock()),
    };
    if paths.is_empty() {
        return vec![stdin()];
    }
    paths
        .iter()
        .map(|path| {
            if path.as_os_str() == "-" {
                stdin()
            } else {
                ClipInput::Path(path.clone())
            }
        })
        .collect()
}
