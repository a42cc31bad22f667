//! `info`: what an index holds: its settings, size, and most common labels.

use std::path::Path;

use anyhow::Result;
use serde_json::json;

use crate::index::store::Store;
use crate::labels;

pub fn run(dir: &Path, as_json: bool) -> Result<()> {
    let (store, settings) = Store::open(dir)?;
    let rtxn = store.env.read_txn()?;
    let mut counts = store.label_counts(&rtxn)?;
    counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    counts.truncate(10);
    let size = store.disk_size();
    if as_json {
        let top: Vec<_> = counts
            .iter()
            .map(|&(label, clips)| json!({"label": label, "name": labels::class_name(label.into()), "clips": clips}))
            .collect();
        let info =
            json!({"index": dir, "settings": settings, "size_bytes": size, "top_labels": top});
        println!("{info}");
        return Ok(());
    }
    println!("index        {}", dir.display());
    println!("clips        {}", settings.clips);
    println!("metric       {:?}", settings.metric);
    println!(
        "vector       {:?} ({} dimensions from {} frames)",
        settings.vector, settings.dimensions, settings.frames
    );
    println!("trees        {}", settings.trees);
    println!(
        "graph        up to {} neighbours per clip",
        settings.graph_degree
    );
    println!("seed         {}", settings.seed);
    println!("size         {:.1} MB", size as f64 / 1e6);
    println!(
        "format       version {}, built by soundalike {}",
        settings.format_version, settings.tool_version
    );
    println!("top labels");
    for (label, clips) in counts {
        println!(
            "  {clips:>8}  {} ({label})",
            labels::class_name(label.into()).unwrap_or("?")
        );
    }
    Ok(())
}
