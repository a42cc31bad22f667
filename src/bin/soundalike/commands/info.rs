//! `info`: what an index holds: its settings, size, and most common labels.

use std::io::{self, Write};

use anyhow::{Context, Result};
use clap::Args;
use soundalike::{Index, Info, labels};

use crate::args::{IndexDir, Json};

/// `soundalike info`'s arguments.
#[derive(Debug, Args)]
pub struct InfoArgs {
    #[command(flatten)]
    pub index: IndexDir,

    #[command(flatten)]
    pub json: Json,

    /// Also read what a question reads, and fail (exit 1) naming the damage if it cannot be read.
    ///
    /// Every table a question maps (each block against the data file), the first clip's record and one
    /// question by its id; the index is opened without its lock file, so the check changes nothing. `serve`
    /// runs it on a replaced index before it answers from it.
    #[arg(long)]
    pub check: bool,

    /// Accepted for scripts that pass -q to every subcommand.
    ///
    /// `info` writes nothing to stderr but errors.
    #[arg(short, long)]
    pub quiet: bool,
}

/// `--check`: read what a question reads first (`Index::check_dir`), and fail if it cannot be read.
pub fn run(args: &InfoArgs) -> Result<()> {
    let (dir, as_json, check) = (args.index.index.as_path(), args.json.json, args.check);
    crate::bus_error::report_for(dir);
    let info = if check {
        Index::check_dir(dir)?
    } else {
        Index::open(dir)?.info()?
    };
    // Written, not printed: println! panics when stdout is closed (`info | true`) or full; an error here ends
    // the run quietly (a closed pipe) or with one `error:` line.
    let mut out = io::BufWriter::new(io::stdout().lock());
    write(&mut out, &info, as_json)
        .and_then(|()| out.flush())
        .context("cannot write to stdout")
}

fn write(out: &mut impl Write, info: &Info, as_json: bool) -> io::Result<()> {
    if as_json {
        return writeln!(out, "{}", info.to_json());
    }
    let (dir, settings, counts, size) = (
        &info.index,
        &info.settings,
        &info.top_labels,
        info.size_bytes,
    );
    writeln!(out, "index        {}", dir.display())?;
    writeln!(out, "clips        {}", settings.clips)?;
    writeln!(out, "metric       {}", settings.metric)?;
    writeln!(
        out,
        "vector       {} ({} dimensions from {} frames)",
        settings.vector, settings.dimensions, settings.frames
    )?;
    writeln!(out, "projection   {}", settings.projection.describe())?;
    writeln!(out, "trees        {}", settings.trees)?;
    writeln!(
        out,
        "graph        up to {} neighbours per clip",
        settings.graph_degree
    )?;
    if let Some(measured) = settings.held_out {
        writeln!(
            out,
            "new vectors  walk {} by default (recall@10 {:.3} on {} probes, measured at build)",
            measured.breadth, measured.recall, measured.probes
        )?;
    }
    writeln!(out, "seed         {}", settings.seed)?;
    writeln!(out, "size         {:.1} MB", size as f64 / 1e6)?;
    writeln!(
        out,
        "format       version {}, built by soundalike {}",
        settings.format_version, settings.tool_version
    )?;
    writeln!(out, "top labels")?;
    for &(label, clips) in counts {
        writeln!(
            out,
            "  {clips:>8}  {} ({label})",
            labels::class_name(label.into()).unwrap_or("?")
        )?;
    }
    Ok(())
}
