//! `info`: what an index holds: its settings, size, and most common labels.

use std::io::{self, Write};
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::json;
use soundalike::{Index, Settings, labels};

pub fn run(dir: &Path, as_json: bool) -> Result<()> {
    crate::bus_error::report_for(dir);
    let info = Index::open(dir)?.info()?;
    // Written, not printed: println! panics when stdout is closed (`info | true`) or full; an error here ends
    // the run quietly (a closed pipe) or with one `error:` line.
    let mut out = io::BufWriter::new(io::stdout().lock());
    write(
        &mut out,
        dir,
        &info.settings,
        &info.top_labels,
        info.size_bytes,
        as_json,
    )
    .and_then(|()| out.flush())
    .context("cannot write to stdout")
}

/// What `info --json` writes (and `serve` answers at /api/info).
pub fn as_json_value(
    dir: &Path,
    settings: &Settings,
    counts: &[(u16, u64)],
    size: u64,
) -> serde_json::Result<serde_json::Value> {
    let top: Vec<_> = counts
        .iter()
        .map(|&(label, clips)| json!({"label": label, "name": labels::class_name(label.into()), "clips": clips}))
        .collect();
    // The settings a user can act on: the next item number to give out is the index's own business.
    let mut settings = serde_json::to_value(settings)?;
    if let Some(fields) = settings.as_object_mut() {
        fields.remove("next_item");
    }
    Ok(json!({"index": dir, "settings": settings, "size_bytes": size, "top_labels": top}))
}

fn write(
    out: &mut impl Write,
    dir: &Path,
    settings: &Settings,
    counts: &[(u16, u64)],
    size: u64,
    as_json: bool,
) -> io::Result<()> {
    if as_json {
        return writeln!(out, "{}", as_json_value(dir, settings, counts, size)?);
    }
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
