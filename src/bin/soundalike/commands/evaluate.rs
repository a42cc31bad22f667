//! `evaluate`: how good and how fast an index's answers are (the library measures, see
//! `soundalike::evaluate`); this writes the reports as a table or JSON, and the queries for `--save-queries`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use soundalike::Index;
use soundalike::evaluate::{self, EvaluateEvent, EvaluateOptions, QueryCount, Report};

use crate::output::Output;
use crate::progress::Progress;
use crate::stderr::say;

pub struct EvaluateArgs {
    pub dir: PathBuf,
    pub options: EvaluateOptions,
    /// Where to write the queries' video_ids, one per line (a `recommend --batch` file).
    pub save_queries: Option<PathBuf>,
    pub json: bool,
    pub quiet: bool,
}

pub fn run(args: &EvaluateArgs) -> Result<()> {
    crate::bus_error::report_for(&args.dir);
    let index = Index::open(&args.dir)?;
    // Refused before anything is measured: the held-out clips are an input, and writing the ids over them
    // would lose them.
    let read: Vec<&std::path::Path> = match &args.options.queries {
        QueryCount::File(queries) => vec![queries.as_path()],
        _ => Vec::new(),
    };
    let saved = match &args.save_queries {
        Some(path) => Some(Output::create_apart_from(Some(path), &read)?),
        None => None,
    };
    let total = match &args.options.queries {
        QueryCount::Sample(n) => Some(n.get() as u64),
        _ => None,
    };
    let progress = Progress::items(total, args.quiet, "queries");
    let evaluation = evaluate::evaluate(&index, &args.options, |event| match event {
        EvaluateEvent::Stage(stage) => {
            progress.set(0);
            progress.stage(stage.to_string());
        }
        EvaluateEvent::Answered => progress.inc(1),
    })?;
    progress.finish();
    if let Some(mut file) = saved {
        for id in &evaluation.query_ids {
            file.put(id.as_bytes())?;
            file.put(b"\n")?;
        }
        file.finish()?;
    }
    let reports = &evaluation.reports;
    let mut out = std::io::stdout().lock();
    if let Some(first) = reports.first()
        && !args.quiet
    {
        match first.queries_in_projection_fit {
            Some(0) => {}
            Some(n) => say!(
                "note: {n} of the {} queries took part in fitting the index's projection, {}: their label \
                 precision is in-sample; give held-out clips with --queries FILE",
                first.queries,
                first.projection
            ),
            None => say!(
                "note: the index's projection, {}, does not record the clips it was fit on, so whether the \
                 queries took part is unknown",
                first.projection
            ),
        }
    }
    if args.json {
        if let [report] = &reports[..] {
            serde_json::to_writer(&mut out, report)?;
        } else {
            serde_json::to_writer(&mut out, &reports)?;
        }
        writeln!(out)?;
    } else {
        write_table(&mut out, reports)?;
    }
    Ok(())
}

fn write_table(out: &mut impl Write, reports: &[Report]) -> Result<()> {
    let Some(first) = reports.first() else {
        return Ok(());
    };
    writeln!(
        out,
        "{} {}queries, k = {}; ground truth: the exact scan{}; one query at a time on one thread",
        first.queries,
        if first.held_out { "held-out " } else { "" },
        first.k,
        if first.rerank > 0 {
            format!(", both re-ranking the top {} by frames", first.rerank)
        } else {
            String::new()
        }
    )?;
    writeln!(
        out,
        "{:<34}  {:>9}  {:>14}  {:>8}  {:>8}  {:>8}  {:>9}",
        "search",
        format!("recall@{}", first.k),
        format!("label prec@{}", first.k),
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "queries/s"
    )?;
    for report in reports {
        // A walk is named by the breadth it took (`walk`), which a re-rank or held-out queries may widen past
        // the `ef` asked: what was measured.
        let mut name = match (report.search_k, report.walk) {
            (Some(k), _) => format!("trees, search_k {k}"),
            (_, Some(walk)) => format!("graph, ef {walk}"),
            _ => "exact scan".to_string(),
        };
        if report.default {
            name = format!("default: {name}");
        }
        writeln!(
            out,
            "{name:<34}  {:>9.4}  {:>14.4}  {:>8.3}  {:>8.3}  {:>8.3}  {:>9.0}",
            report.recall,
            report.label_precision,
            report.latency_ms.p50,
            report.latency_ms.p95,
            report.latency_ms.p99,
            report.qps
        )?;
    }
    Ok(())
}
