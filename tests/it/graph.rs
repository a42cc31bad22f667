//! The neighbour graph through the built binary: its answers against the exact scan, after an append, from
//! the same seed, and from a damaged index. The fixtures are small enough that the default search is the exact
//! scan, so these tests ask for the graph with `--ef`.

use std::path::Path;

use crate::common::*;
use serde_json::Value;

/// Every fixture clip's video_id, one per line: a `recommend --batch` file.
fn all_ids(dir: &Path) -> std::path::PathBuf {
    let path = dir.parent().unwrap().join("ids.txt");
    let ids: Vec<String> = clips()
        .iter()
        .map(|c| c["video_id"].as_str().unwrap().to_string())
        .collect();
    std::fs::write(&path, ids.join("\n") + "\n").unwrap();
    path
}

/// recall@10 of `recommend --batch` with `args` against `--exact`, over every clip of the index.
fn recall(dir: &Path, args: &[&str]) -> f64 {
    let batch = all_ids(dir);
    let batch = batch.to_str().unwrap();
    let exact = recommend(dir, &["--batch", batch, "--json", "--exact"]);
    exact.assert_ok();
    let mut all = vec!["--batch", batch, "--json"];
    all.extend_from_slice(args);
    let got = recommend(dir, &all);
    got.assert_ok();
    let (exact, got) = (exact.lines(), got.lines());
    assert_eq!(exact.len(), got.len());
    let mut found = 0;
    for (truth, answer) in exact.iter().zip(&got) {
        assert_eq!(truth["query"], answer["query"]);
        let query = answer["query"].as_str().unwrap().to_string();
        let (truth, answer) = (ids(truth), ids(answer));
        assert_eq!(answer.len(), 10, "ten neighbours");
        assert!(!answer.contains(&query), "no clip is its own neighbour");
        found += answer.iter().filter(|id| truth.contains(id)).count();
    }
    found as f64 / (10 * exact.len()) as f64
}

#[test]
fn the_graph_agrees_with_the_exact_scan() {
    let (_temp, dir) = build(clips_jsonl(), &[]);
    let walked = recall(&dir, &["--ef", "10"]);
    assert!(walked >= 0.95, "recall@10 of the graph at ef 10: {walked}");
    // A wider walk finds at least as much.
    let wider = recall(&dir, &["--ef", "64"]);
    assert!(
        wider >= walked - 0.005 && wider >= 0.98,
        "ef 64: {wider}, ef 10: {walked}"
    );

    // An embedding walks from the forest's entry points.
    let clip = clips()
        .into_iter()
        .find(|c| c["video_id"] == "xtGmrLOsjHk")
        .unwrap();
    let file = dir.parent().unwrap().join("query.json");
    std::fs::write(&file, clip.to_string()).unwrap();
    let by_embedding = recommend(
        &dir,
        &[
            "--embedding",
            file.to_str().unwrap(),
            "--json",
            "--ef",
            "64",
        ],
    );
    let exact = recommend(
        &dir,
        &["--embedding", file.to_str().unwrap(), "--json", "--exact"],
    );
    let (walked, exact) = (ids(&by_embedding.lines()[0]), ids(&exact.lines()[0]));
    let shared = walked.iter().filter(|id| exact.contains(id)).count();
    assert!(shared >= 9, "{walked:?} against {exact:?}");
}

#[test]
fn the_graph_agrees_with_the_exact_scan_on_real_clips() {
    let Some(shared) = shared_audioset() else {
        return;
    };
    let real = shared.join("real/audioset_v1_embeddings");
    let temp = tempfile::tempdir().unwrap();
    let clips = temp.path().join("clips.jsonl");
    let dir = temp.path().join("idx");
    run(&[
        Path::new("ingest"),
        Path::new("-q"),
        &real.join("bal_train"),
        &real.join("eval"),
        Path::new("-o"),
        &clips,
    ])
    .assert_ok();
    run(&[
        Path::new("index"),
        Path::new("-q"),
        Path::new("--index"),
        &dir,
        &clips,
    ])
    .assert_ok();
    let run = run(&[
        "evaluate",
        "--index",
        dir.to_str().unwrap(),
        "--json",
        "--ef",
        "32",
    ]);
    run.assert_ok();
    let reports: Value = serde_json::from_slice(&run.stdout).unwrap();
    let graph = &reports[1];
    assert_eq!(graph["search"], "graph");
    assert_eq!(graph["ef"], 32);
    let recall = graph["recall"].as_f64().unwrap();
    assert!(
        recall >= 0.95,
        "recall@10 of the graph on real clips: {recall}"
    );
    // Label precision stays where the exact scan puts it.
    let exact = reports[0]["label_precision"].as_f64().unwrap();
    assert!((graph["label_precision"].as_f64().unwrap() - exact).abs() < 0.01);
}

#[test]
fn an_append_links_the_new_clips_into_the_graph() {
    let text = String::from_utf8(clips_jsonl().to_vec()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let (first, second) = lines.split_at(lines.len() / 2);
    let (_temp, dir) = build((first.join("\n") + "\n").as_bytes(), &[]);
    run_with_stdin(
        &["index", "-q", "--append", "--index", dir.to_str().unwrap()],
        (second.join("\n") + "\n").as_bytes(),
    )
    .assert_ok();
    let walked = recall(&dir, &["--ef", "10"]);
    assert!(walked >= 0.95, "recall@10 after an append: {walked}");
    // The appended clips are reached too: each of the second half finds its exact nearest neighbour.
    let mut nearest_found = 0;
    for line in second.iter().step_by(20) {
        let id = line.split('"').nth(3).unwrap();
        let exact = ids(&recommend(&dir, &["--id", id, "--json", "--exact"]).lines()[0]);
        let walked = ids(&recommend(&dir, &["--id", id, "--json", "--ef", "10"]).lines()[0]);
        nearest_found += usize::from(walked.contains(&exact[0]));
    }
    assert!(
        nearest_found >= second.len().div_ceil(20) - 1,
        "{nearest_found}"
    );
}

#[test]
fn the_same_seed_gives_the_same_graph_whatever_the_threads() {
    let (_a, one) = build(clips_jsonl(), &[]);
    let (_b, two) = build(clips_jsonl(), &["--threads", "2"]);
    let batch = all_ids(&one);
    let batch = batch.to_str().unwrap();
    let a = recommend(&one, &["--batch", batch, "--json", "--ef", "10"]);
    let b = recommend(&two, &["--batch", batch, "--json", "--ef", "10"]);
    a.assert_ok();
    assert_eq!(a.stdout_text(), b.stdout_text());
}

/// Rewrites one value of the index's graph table with `change`.
/// Changes the value under `key` in one of the index's tables, as a damaged disk or a bad copy would.
fn damage(dir: &Path, table: &str, key: &[u8], change: impl FnOnce(&mut Vec<u8>)) {
    // SAFETY: this process opens the environment once, and no other process uses it.
    let env = unsafe { heed::EnvOpenOptions::new().max_dbs(8).open(dir) }.unwrap();
    let db: heed::Database<heed::types::Bytes, heed::types::Bytes> = env
        .open_databases_and_commit(env.read_txn().unwrap(), |dbo, rtxn| -> heed::Result<_> {
            Ok(heed::CommitOrAbort::<_, ()>::Commit(
                dbo.open_database(rtxn, Some(table))?,
            ))
        })
        .unwrap()
        .unwrap_commit()
        .unwrap();
    let mut wtxn = env.write_txn().unwrap();
    let mut value = db.get(&wtxn, key).unwrap().unwrap().to_vec();
    change(&mut value);
    db.put(&mut wtxn, key, &value).unwrap();
    wtxn.commit().unwrap();
}

fn damage_graph(dir: &Path, change: impl FnOnce(&mut Vec<u8>)) {
    damage(dir, "graph", &0u32.to_be_bytes(), change);
}

#[test]
fn a_damaged_graph_is_a_clear_error_not_a_crash() {
    // A block cut short: the table no longer holds a list per clip.
    let (_temp, dir) = build(clips_jsonl(), &[]);
    damage_graph(&dir, |v| v.truncate(v.len() - 6));
    recommend(&dir, &["--id", "xtGmrLOsjHk", "--ef", "10"])
        .assert_error(1, &["is damaged", "graph", "rebuild"]);
    // The exact scan does not read the graph, and still answers.
    recommend(&dir, &["--id", "xtGmrLOsjHk", "--exact"]).assert_ok();

    // Lists naming clips that do not exist are walked past, not followed off the end of the vectors.
    let (_temp, dir) = build(clips_jsonl(), &[]);
    damage_graph(&dir, |v| {
        for chunk in v.chunks_exact_mut(4).step_by(3) {
            chunk.copy_from_slice(&123_456_789u32.to_le_bytes());
        }
    });
    let run = recommend(&dir, &["--id", "xtGmrLOsjHk", "--ef", "10", "--json"]);
    run.assert_ok();
    assert_eq!(ids(&run.lines()[0]).len(), 10);
}

#[test]
fn damaged_codes_and_clip_records_are_clear_errors() {
    // The codes the walk compares: a block cut short, then an unreadable quantizer.
    let (_temp, dir) = build(clips_jsonl(), &[]);
    damage(&dir, "codes", &0u32.to_be_bytes(), |v| {
        v.truncate(v.len() - 5)
    });
    recommend(&dir, &["--id", "xtGmrLOsjHk", "--ef", "10"])
        .assert_error(1, &["is damaged", "code", "rebuild"]);
    recommend(&dir, &["--id", "xtGmrLOsjHk", "--exact"]).assert_ok();
    let (_temp, dir) = build(clips_jsonl(), &[]);
    damage(&dir, "settings", b"quantizer", |v| v.truncate(3));
    recommend(&dir, &["--id", "xtGmrLOsjHk", "--ef", "10"])
        .assert_error(1, &["is damaged", "quantizer", "rebuild"]);

    // The clip records every answer names: offsets running past the block.
    let (_temp, dir) = build(clips_jsonl(), &[]);
    damage(&dir, "clips", &0u32.to_be_bytes(), |v| {
        let records = u32::from_le_bytes(v[..4].try_into().unwrap()) as usize;
        for word in v[4..4 + 4 * records].chunks_exact_mut(4) {
            word.copy_from_slice(&u32::MAX.to_le_bytes());
        }
    });
    recommend(&dir, &["--id", "xtGmrLOsjHk", "--exact"])
        .assert_error(1, &["is damaged", "clip table", "rebuild"]);
}

/// A new song's query is a vector the index does not hold: its walk starts from the pivots, not from itself. On
/// an index large enough that the default search is the graph, the default answers to held-out clips (asked by
/// their embeddings) must agree with the exact scan's, with and without the projection and the re-rank; without
/// the re-rank, walking the breadth the build measured on the index and stored.
#[test]
fn held_out_queries_through_the_graph_agree_with_the_exact_scan() {
    let clips = spread_out_clips(24_500, 7);
    let (indexed, held) = clips.split_at(24_000);
    let temp = tempfile::tempdir().unwrap();
    let queries = temp.path().join("held.jsonl");
    std::fs::write(&queries, held.join("\n") + "\n").unwrap();
    let input = indexed.join("\n") + "\n";
    for (build_args, query_args) in [
        (&[][..], &[][..]),
        (&["--projection", "none"][..], &["--rerank", "0"][..]),
    ] {
        let (_index, dir) = build(input.as_bytes(), build_args);
        // The build measured a new vector's breadth on the index (index/calibrate.rs) and says so.
        let info = run(&["info", "--index", dir.to_str().unwrap()]);
        info.assert_ok();
        let measured: u64 = info
            .stdout_text()
            .lines()
            .find_map(|line| line.strip_prefix("new vectors  walk "))
            .and_then(|rest| rest.split(' ').next())
            .and_then(|breadth| breadth.parse().ok())
            .unwrap_or_else(|| panic!("info names no measured breadth:\n{}", info.stdout_text()));
        assert!(
            (16..=256).contains(&measured),
            "measured breadth {measured}"
        );
        let mut args = vec![
            "evaluate",
            "--index",
            dir.to_str().unwrap(),
            "--queries",
            queries.to_str().unwrap(),
            "--json",
        ];
        args.extend_from_slice(query_args);
        let run = run(&args);
        run.assert_ok();
        let report: Value = serde_json::from_slice(&run.stdout).unwrap();
        assert_eq!(report["search"], "graph", "{report}");
        let recall = report["recall"].as_f64().unwrap();
        if query_args.is_empty() {
            // With the re-rank the breadth follows the index's size (index/plan.rs, default_ef_new).
            assert_eq!(report["walk"], 40, "{report}");
        } else {
            assert_eq!(
                report["walk"], measured,
                "without a re-rank, the walk the build measured: {report}"
            );
        }
        assert!(
            recall >= 0.95,
            "held-out recall@10 of the default search with {build_args:?} {query_args:?}: {recall}"
        );
    }
}
