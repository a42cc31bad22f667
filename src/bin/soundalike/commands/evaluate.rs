//! `evaluate`: how good and how fast an index's answers are (the library measures, see
//! `soundalike::evaluate`); this writes the reports as a table or JSON, and the queries for `--save-queries`.

use std::io::Write;
use std::num::NonZeroUsize;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use soundalike::evaluate::{self, EvaluateEvent, EvaluateOptions, QueryCount, Report};
use soundalike::{Index, SearchMethod};

use crate::args::{Count, IndexDir, Quiet, nonzero};
use crate::output::Output;
use crate::progress::Progress;
use crate::stderr::say;

/// `soundalike evaluate`'s arguments.
#[derive(Debug, Args)]
pub struct EvaluateArgs {
    #[command(flatten)]
    pub index: IndexDir,

    /// How many queries to sample, "all", or a FILE.
    ///
    /// How many query clips to sample (with --seed) from the index's clips with a music label other than Music,
    /// or "all" of them; or a FILE of held-out clips (clip lines as `ingest` writes them, none of them in the
    /// index) to measure out of sample (write ./100 for a file named like a number).
    #[arg(long, default_value = "1000", value_name = "N|all|FILE", value_parser = parse_query_count)]
    pub queries: QueryCount,

    #[command(flatten)]
    pub count: Count,

    /// Also measure the trees with this search-k (repeatable).
    ///
    /// Also measure the trees with this many nodes inspected per query (repeatable).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub search_k: Vec<u64>,

    /// Also measure the graph walk with this breadth (repeatable).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub ef: Vec<u64>,

    /// Seed for the sample of queries.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,

    /// Write the queries' video_ids here, one per line.
    ///
    /// Replay them with `recommend --batch`.
    #[arg(long, value_name = "FILE")]
    pub save_queries: Option<PathBuf>,

    /// Re-rank the top N candidates by their frames.
    ///
    /// In each search and in the ground truth alike, as `recommend --rerank` [default: 20 on an angular
    /// index, 0 on others].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=10000))]
    pub rerank: Option<u32>,

    /// Results as JSON for scripts instead of a table.
    ///
    /// One JSON object, or an array of them when --search-k or --ef is given.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub quiet: Quiet,
}

impl EvaluateArgs {
    fn options(&self) -> EvaluateOptions {
        EvaluateOptions {
            queries: self.queries.clone(),
            count: self.count.count as usize,
            searches: self.searches(),
            seed: self.seed,
            rerank: self.rerank.map(|n| n as usize),
        }
    }

    /// The searches measured besides the default: the trees' search-ks, then the graph's efs, as given.
    fn searches(&self) -> Vec<SearchMethod> {
        (self.search_k.iter())
            .map(|&k| SearchMethod::Trees {
                search_k: nonzero(k),
            })
            .chain(
                self.ef
                    .iter()
                    .map(|&ef| SearchMethod::Graph { ef: nonzero(ef) }),
            )
            .collect()
    }
}

/// `--queries`: a number, `all`, or else a file of held-out clips (`./all` or `./100` for a file of that name).
fn parse_query_count(text: &str) -> Result<QueryCount, String> {
    if text == "all" {
        return Ok(QueryCount::All);
    }
    if !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'-' || b == b'+')
    {
        return text
            .parse::<NonZeroUsize>()
            .map(QueryCount::Sample)
            .map_err(|_| {
                format!(
                    "expected a number of queries (1 or more), \"all\", or a file, got {text:?}"
                )
            });
    }
    if text.is_empty() {
        return Err("expected a number of queries (1 or more), \"all\", or a file".into());
    }
    Ok(QueryCount::File(PathBuf::from(text)))
}

pub fn run(args: &EvaluateArgs) -> Result<()> {
    let options = args.options();
    let dir = &args.index.index;
    crate::bus_error::report_for(dir);
    let index = Index::open(dir)?;
    // Refused before anything is measured: the held-out clips are an input, and writing the ids over them
    // would lose them.
    let read: Vec<&std::path::Path> = match &options.queries {
        QueryCount::File(queries) => vec![queries.as_path()],
        _ => Vec::new(),
    };
    let saved = match &args.save_queries {
        Some(path) => Some(Output::create_apart_from(Some(path), &read)?),
        None => None,
    };
    let total = match &options.queries {
        QueryCount::Sample(n) => Some(n.get() as u64),
        _ => None,
    };
    let progress = Progress::items(total, args.quiet.quiet, "queries");
    let evaluation = evaluate::evaluate(&index, &options, |event| match event {
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
        && !args.quiet.quiet
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
