//! `index`, `recommend` and `info` through the built binary, on the fixture clips.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::common::*;
use serde_json::Value;

/// One index of the fixture clips for the tests that only read it. Built once per test run in a fixed place
/// under the target directory (a static is never dropped, so a temporary directory there would be left in
/// /tmp by every run); each run rebuilds it over the last one's.
fn shared_index() -> &'static Path {
    static INDEX: OnceLock<PathBuf> = OnceLock::new();
    INDEX.get_or_init(|| build_shared_index("recommend-shared.idx"))
}

fn dequantized_mean(clip: &Value) -> Vec<f64> {
    let rows = clip["embedding"].as_array().unwrap();
    let mut mean = vec![0.0; 128];
    for row in rows {
        for (m, v) in mean.iter_mut().zip(row.as_array().unwrap()) {
            *m += v.as_f64().unwrap() / 255.0 * 4.0 - 2.0;
        }
    }
    mean.iter().map(|m| m / rows.len() as f64).collect()
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

#[test]
fn pipeline_from_stdin_builds_an_index_of_every_clip() {
    let info = run(&[
        "info",
        "--json",
        "--index",
        shared_index().to_str().unwrap(),
    ]);
    info.assert_ok();
    let info: Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["settings"]["clips"], 779);
    // Each frame projected to the 149 music labels' probabilities by the compiled-in default projection
    // (tests/it/projection.rs).
    assert_eq!(info["settings"]["dimensions"], 149);
    assert_eq!(info["settings"]["projection"]["kind"], "default");
    assert_eq!(info["settings"]["metric"], "angular");
    assert_eq!(info["top_labels"][0]["name"], "Music");
}

#[test]
fn by_id_returns_k_neighbours_without_the_clip_itself() {
    let run = recommend(
        shared_index(),
        &["--id", "xtGmrLOsjHk", "--json", "-k", "7"],
    );
    run.assert_ok();
    let answers = run.lines();
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0]["query"], "xtGmrLOsjHk");
    let results = answers[0]["results"].as_array().unwrap();
    assert_eq!(results.len(), 7);
    assert!(!ids(&answers[0]).contains(&"xtGmrLOsjHk".to_string()));
    let first = &results[0];
    for key in [
        "rank",
        "video_id",
        "distance",
        "labels",
        "label_names",
        "start_time",
        "end_time",
        "url",
    ] {
        assert!(first.get(key).is_some(), "result has {key}");
    }
    assert_eq!(first["rank"], 1);
    let url = first["url"].as_str().unwrap();
    assert!(url.starts_with(&format!(
        "https://www.youtube.com/watch?v={}&t=",
        first["video_id"].as_str().unwrap()
    )));
    let distances: Vec<f64> = results
        .iter()
        .map(|r| r["distance"].as_f64().unwrap())
        .collect();
    assert!(
        distances.windows(2).all(|w| w[0] <= w[1]),
        "nearest first: {distances:?}"
    );

    // The table for people names the clip and links it.
    let table = recommend(shared_index(), &["--id", "xtGmrLOsjHk"]);
    table.assert_ok();
    let text = table.stdout_text();
    assert!(
        text.contains("similarity") && text.contains("https://www.youtube.com/watch?v="),
        "{text}"
    );
    assert_eq!(text.lines().count(), 12);
}

#[test]
fn exact_agrees_with_a_brute_force_in_the_test() {
    // Without the projection and the re-rank, the index compares the de-quantized means by cosine.
    let (_temp, dir) = build(clips_jsonl(), &["--projection", "none"]);
    let clips = clips();
    let vectors: Vec<Vec<f64>> = clips.iter().map(dequantized_mean).collect();
    for query in [0, 100, 400, 778] {
        let mut scored: Vec<(f64, &str)> = (0..clips.len())
            .filter(|&i| i != query)
            .map(|i| {
                (
                    cosine(&vectors[query], &vectors[i]),
                    clips[i]["video_id"].as_str().unwrap(),
                )
            })
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        let expected: Vec<String> = scored.iter().take(10).map(|s| s.1.to_string()).collect();
        let id = clips[query]["video_id"].as_str().unwrap();
        let run = recommend(&dir, &["--id", id, "--exact", "--json", "--rerank", "0"]);
        run.assert_ok();
        let answer = &run.lines()[0];
        assert_eq!(ids(answer), expected, "query {id}");
        let distance = answer["results"][0]["distance"].as_f64().unwrap();
        assert!(
            (distance - (1.0 - scored[0].0) / 2.0).abs() < 1e-4,
            "angular distance is (1 - cos) / 2"
        );
    }
}

#[test]
fn every_embedding_format_gives_the_same_answer() {
    let clips = clips();
    let clip = clips
        .iter()
        .find(|c| c["video_id"] == "xtGmrLOsjHk")
        .unwrap();
    let temp = tempfile::tempdir().unwrap();
    let rows = clip["embedding"].clone();
    let floats: Vec<Vec<f64>> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect()
        })
        .collect();
    let formats = [
        ("clip.json", clip.to_string()),
        ("rows.json", rows.to_string()),
        (
            "max.json",
            serde_json::json!({"status": "ok", "embedding": floats}).to_string(),
        ),
    ];
    let mut answers = Vec::new();
    for (name, text) in formats {
        let path = temp.path().join(name);
        std::fs::write(&path, text).unwrap();
        let run = recommend(
            shared_index(),
            &[
                "--embedding",
                path.to_str().unwrap(),
                "--json",
                "--exact",
                // The clip finds itself among the candidates re-ranked: one more makes the same others.
                "--rerank",
                "21",
            ],
        );
        run.assert_ok();
        answers.push(ids(&run.lines()[0]));
    }
    // The clip is in the index, so it is its own nearest neighbour, followed by what --id gives.
    assert_eq!(answers[0][0], "xtGmrLOsjHk");
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0], answers[2]);
    let by_id = recommend(
        shared_index(),
        &["--id", "xtGmrLOsjHk", "--json", "--exact", "-k", "9"],
    );
    assert_eq!(ids(&by_id.lines()[0]), answers[0][1..]);

    // From stdin too; too few rows is a clear error.
    let piped = run_with_stdin(
        &[
            "recommend",
            "--index",
            shared_index().to_str().unwrap(),
            "--embedding",
            "-",
            "--json",
            "--exact",
            "--rerank",
            "21",
        ],
        rows.to_string().as_bytes(),
    );
    piped.assert_ok();
    assert_eq!(ids(&piped.lines()[0]), answers[0]);
    let short = run_with_stdin(
        &[
            "recommend",
            "--index",
            shared_index().to_str().unwrap(),
            "--embedding",
            "-",
        ],
        serde_json::json!([rows[0], rows[1]]).to_string().as_bytes(),
    );
    short.assert_error(1, &["2 rows", "10 are needed"]);
}

#[test]
fn batch_answers_each_line_in_order() {
    let clips = clips();
    let queries = [
        clips[5]["video_id"].as_str().unwrap(),
        "xtGmrLOsjHk",
        clips[50]["video_id"].as_str().unwrap(),
    ];
    let mut input = queries.join("\n");
    input.push('\n');
    input.push_str(&clips[9]["embedding"].to_string());
    input.push('\n');
    let run = run_with_stdin(
        &[
            "recommend",
            "--index",
            shared_index().to_str().unwrap(),
            "--batch",
            "-",
            "--json",
        ],
        input.as_bytes(),
    );
    run.assert_ok();
    let answers = run.lines();
    assert_eq!(answers.len(), 4);
    for (answer, query) in answers.iter().zip(queries) {
        assert_eq!(answer["query"], query);
        let single = recommend(shared_index(), &["--id", query, "--json"]);
        assert_eq!(
            ids(answer),
            ids(&single.lines()[0]),
            "batch answers as single queries do"
        );
    }
    assert_eq!(answers[3]["query"], "<stdin>:4");
    assert_eq!(ids(&answers[3])[0], clips[9]["video_id"].as_str().unwrap());
}

#[test]
fn label_filter_keeps_only_clips_with_the_label() {
    for (label, index) in [("Opera", 238), ("Choir", 28)] {
        let run = recommend(
            shared_index(),
            &[
                "--id",
                "xtGmrLOsjHk",
                "--json",
                "--label",
                label,
                "-k",
                "50",
            ],
        );
        run.assert_ok();
        let answer = &run.lines()[0];
        let results = answer["results"].as_array().unwrap();
        assert!(!results.is_empty());
        for r in results {
            assert!(
                r["labels"]
                    .as_array()
                    .unwrap()
                    .contains(&Value::from(index)),
                "{r}"
            );
        }
        // Fewer qualifying clips than k: all of them, without error.
        let carrying = clips()
            .iter()
            .filter(|c| {
                c["video_id"] != "xtGmrLOsjHk"
                    && c["labels"]
                        .as_array()
                        .unwrap()
                        .contains(&Value::from(index))
            })
            .count();
        assert_eq!(results.len(), carrying.min(50));
    }
}

#[test]
fn append_in_two_halves_answers_like_one_build() {
    let text = String::from_utf8(clips_jsonl().to_vec()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let (first, second) = lines.split_at(lines.len() / 2);
    let (_temp, dir) = build((first.join("\n") + "\n").as_bytes(), &[]);
    let append = run_with_stdin(
        &["index", "-q", "--append", "--index", dir.to_str().unwrap()],
        (second.join("\n") + "\n").as_bytes(),
    );
    append.assert_ok();
    let info: Value =
        serde_json::from_slice(&run(&["info", "--json", "--index", dir.to_str().unwrap()]).stdout)
            .unwrap();
    assert_eq!(info["settings"]["clips"], 779);
    for query in [
        "xtGmrLOsjHk",
        lines[3].split('"').nth(3).unwrap(),
        lines[700].split('"').nth(3).unwrap(),
    ] {
        let whole = recommend(shared_index(), &["--id", query, "--json", "--exact"]);
        let halves = recommend(&dir, &["--id", query, "--json", "--exact"]);
        assert_eq!(ids(&whole.lines()[0]), ids(&halves.lines()[0]), "{query}");
        // With a generous search budget the forests agree too.
        let whole = recommend(
            shared_index(),
            &["--id", query, "--json", "--search-k", "5000"],
        );
        let halves = recommend(&dir, &["--id", query, "--json", "--search-k", "5000"]);
        assert_eq!(ids(&whole.lines()[0]), ids(&halves.lines()[0]), "{query}");
    }

    // Appending a clip again replaces it; settings must match.
    let again = run_with_stdin(
        &["index", "--append", "--index", dir.to_str().unwrap()],
        (lines[0].to_string() + "\n").as_bytes(),
    );
    again.assert_ok();
    assert!(
        again.stderr.contains("1 clips read (1 of them replacing")
            && again.stderr.contains("779 clips"),
        "{}",
        again.stderr
    );
    let mismatch = run_with_stdin(
        &[
            "index",
            "--append",
            "--metric",
            "euclidean",
            "--index",
            dir.to_str().unwrap(),
        ],
        lines[0].as_bytes(),
    );
    // In the words the command line takes, not the code's.
    mismatch.assert_error(1, &["--metric euclidean (index: angular)"]);
    let info = run(&["info", "--index", dir.to_str().unwrap()]);
    info.assert_ok();
    let text = info.stdout_text();
    assert!(text.contains("metric       angular\n"), "{text}");
    assert!(text.contains("vector       mean (149 dimensions"), "{text}");
    let json = run(&["info", "--json", "--index", dir.to_str().unwrap()]);
    json.assert_ok();
    let settings = &json.lines()[0]["settings"];
    assert_eq!(settings["metric"], "angular");
    assert!(
        settings.get("next_item").is_none(),
        "no internal fields: {settings}"
    );
}

#[test]
fn same_seed_gives_same_answers() {
    let (_temp, dir) = build(clips_jsonl(), &[]);
    let (_other_temp, other_seed) = build(clips_jsonl(), &["--seed", "7"]);
    let mut differs = false;
    for query in ["xtGmrLOsjHk", "k9TtEo5P2Zc", "00M9FhCet6s", "bZlE16IpX7Q"] {
        // A small search budget, so the answers depend on the trees (the default scans every clip).
        let a = recommend(
            shared_index(),
            &["--id", query, "--json", "--search-k", "20"],
        );
        let b = recommend(&dir, &["--id", query, "--json", "--search-k", "20"]);
        assert_eq!(a.stdout, b.stdout);
        differs |= recommend(&other_seed, &["--id", query, "--json", "--search-k", "20"]).stdout
            != a.stdout;
    }
    assert!(differs, "another seed builds other trees");
}

#[test]
fn rebuild_replaces_the_index_and_protects_other_directories() {
    let text = String::from_utf8(clips_jsonl().to_vec()).unwrap();
    let first: String = text.lines().take(100).map(|l| format!("{l}\n")).collect();
    let (temp, dir) = build(first.as_bytes(), &[]);
    let rebuilt = run_with_stdin(&["index", "--index", dir.to_str().unwrap()], clips_jsonl());
    rebuilt.assert_ok();
    let info: Value =
        serde_json::from_slice(&run(&["info", "--json", "--index", dir.to_str().unwrap()]).stdout)
            .unwrap();
    assert_eq!(info["settings"]["clips"], 779);
    assert_eq!(
        std::fs::read_dir(temp.path()).unwrap().count(),
        1,
        "no building directory left behind"
    );

    let precious = temp.path().join("photos");
    std::fs::create_dir(&precious).unwrap();
    std::fs::write(precious.join("cat.jpg"), "meow").unwrap();
    let refused = run_with_stdin(
        &["index", "--index", precious.to_str().unwrap()],
        clips_jsonl(),
    );
    refused.assert_error(1, &["not a soundalike index", "refusing"]);
    assert_eq!(
        std::fs::read_to_string(precious.join("cat.jpg")).unwrap(),
        "meow"
    );
}

#[test]
fn bad_queries_and_indexes_are_clear_errors() {
    let dir = shared_index().to_str().unwrap();
    recommend(shared_index(), &["--id", "nope"])
        .assert_error(1, &[&format!("no clip 'nope' in index {dir}")]);
    assert_eq!(
        recommend(shared_index(), &["--id", "xtGmrLOsjHk", "-k", "0"]).code,
        2
    );
    assert_eq!(recommend(shared_index(), &[]).code, 2);
    let temp = tempfile::tempdir().unwrap();
    let missing = temp.path().join("none");
    run(&[
        "recommend",
        "--index",
        missing.to_str().unwrap(),
        "--id",
        "x",
    ])
    .assert_error(1, &["no index at"]);
    run(&[
        "recommend",
        "--index",
        temp.path().to_str().unwrap(),
        "--id",
        "x",
    ])
    .assert_error(1, &["not a soundalike index"]);
    run_with_stdin(&["index", "--index", missing.to_str().unwrap()], b"")
        .assert_error(1, &["nothing to index"]);
    run_with_stdin(
        &["index", "--index", missing.to_str().unwrap()],
        b"{\"video_id\":1}\n",
    )
    .assert_error(1, &["line 1"]);
    assert!(!missing.exists(), "a failed build leaves nothing behind");
}

#[test]
fn an_index_of_another_format_version_is_refused() {
    let (_temp, dir) = build(clips_jsonl(), &[]);
    // As a future soundalike would write it.
    set_format_version(&dir, 999);
    recommend(&dir, &["--id", "xtGmrLOsjHk"]).assert_error(1, &["format version 999", "rebuild"]);
    run(&["info", "--index", dir.to_str().unwrap()]).assert_error(1, &["format version 999"]);
}

#[test]
fn a_killed_rebuild_leaves_the_old_index_whole() {
    let (temp, dir) = build(clips_jsonl(), &[]);
    let before = recommend(&dir, &["--id", "xtGmrLOsjHk", "--json"]).stdout;
    // A larger input, so the rebuild is still running when it is killed: the fixture clips 25 times over.
    let text = String::from_utf8(clips_jsonl().to_vec()).unwrap();
    let mut big = String::new();
    for copy in 0..25 {
        for line in text.lines() {
            big.push_str(&line.replacen("\"video_id\":\"", &format!("\"video_id\":\"{copy}-"), 1));
            big.push('\n');
        }
    }
    let input = temp.path().join("big.jsonl");
    std::fs::write(&input, big).unwrap();
    for delay_ms in [20, 150, 400] {
        let mut child = soundalike()
            .args([
                "index",
                "-q",
                "--index",
                dir.to_str().unwrap(),
                input.to_str().unwrap(),
            ])
            .spawn()
            .unwrap();
        // A fixed wait on purpose: kills at three moments of a build, whichever step each lands in.
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        let after = recommend(&dir, &["--id", "xtGmrLOsjHk", "--json"]);
        after.assert_ok();
        if status.code().is_none() {
            // Killed before the swap: the old index answers exactly as before.
            assert_eq!(after.stdout, before, "killed after {delay_ms} ms");
        }
        let info: Value = serde_json::from_slice(
            &run(&["info", "--json", "--index", dir.to_str().unwrap()]).stdout,
        )
        .unwrap();
        let clips = info["settings"]["clips"].as_u64().unwrap();
        assert!(
            clips == 779 || clips == 779 * 25,
            "old or new index, never a mix: {clips}"
        );
    }

    // The killed builds left their directories beside the index; the next build removes those no build holds
    // (once a few seconds old, so that a build just starting is never mistaken for one abandoned).
    let leftovers = || -> Vec<PathBuf> {
        std::fs::read_dir(temp.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .starts_with(".idx.building-")
            })
            .collect()
    };
    let left = leftovers();
    assert!(
        !left.is_empty(),
        "a build killed after 20 ms leaves its directory"
    );
    for path in &left {
        let aged = std::process::Command::new("touch")
            .args(["-d", "1 minute ago"])
            .arg(path)
            .status()
            .unwrap();
        assert!(aged.success());
    }
    run(&[
        "index",
        "-q",
        "--index",
        dir.to_str().unwrap(),
        input.to_str().unwrap(),
    ])
    .assert_ok();
    assert_eq!(
        leftovers(),
        Vec::<PathBuf>::new(),
        "abandoned builds removed (were {left:?})"
    );
}

/// The music labels other than "Music" (137): what makes a neighbour relevant for label precision.
fn relevant_labels() -> std::collections::HashSet<i64> {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src/data/music_label_indices.txt"),
    )
    .unwrap();
    text.lines()
        .filter_map(|l| l.trim().parse::<i64>().ok())
        .filter(|&l| l != 137)
        .collect()
}

fn evaluate(dir: &Path, args: &[&str]) -> Run {
    let mut all = vec!["evaluate", "--index", dir.to_str().unwrap()];
    all.extend_from_slice(args);
    run(&all)
}

#[test]
fn evaluate_agrees_with_recommend_batch() {
    let dir = shared_index();
    let temp = tempfile::tempdir().unwrap();
    let queries = temp.path().join("queries.txt");
    let run = evaluate(
        dir,
        &[
            "--queries",
            "all",
            "--search-k",
            "30",
            "--ef",
            "4",
            "--json",
            "--save-queries",
            queries.to_str().unwrap(),
        ],
    );
    run.assert_ok();
    let reports: Value = serde_json::from_slice(&run.stdout).unwrap();
    let reports = reports
        .as_array()
        .expect("an array: the default, one --search-k and one --ef");
    assert_eq!(reports.len(), 3);

    // The queries: every fixture clip with a music label other than 137.
    let relevant = relevant_labels();
    let labels: std::collections::HashMap<String, Vec<i64>> = clips()
        .iter()
        .map(|c| {
            let labels = c["labels"].as_array().unwrap().iter();
            (
                c["video_id"].as_str().unwrap().to_string(),
                labels.map(|l| l.as_i64().unwrap()).collect(),
            )
        })
        .collect();
    let saved: Vec<String> = std::fs::read_to_string(&queries)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let mut expected: Vec<&String> = labels
        .iter()
        .filter(|(_, l)| l.iter().any(|l| relevant.contains(l)))
        .map(|(id, _)| id)
        .collect();
    expected.sort();
    let mut sorted: Vec<&String> = saved.iter().collect();
    sorted.sort();
    assert_eq!(sorted, expected, "--queries all is every eligible clip");

    let q = queries.to_str().unwrap();
    let exact = recommend(dir, &["--batch", q, "--json", "--exact"]);
    exact.assert_ok();
    let exact = exact.lines();
    let settings = [&[][..], &["--search-k", "30"][..], &["--ef", "4"][..]];
    for (report, extra) in reports.iter().zip(settings) {
        let mut args = vec!["--batch", q, "--json"];
        args.extend_from_slice(extra);
        let got = recommend(dir, &args);
        got.assert_ok();
        let got = got.lines();
        assert_eq!(got.len(), saved.len());
        let (mut found, mut relevant_hits) = (0, 0);
        for ((answer, truth), query) in got.iter().zip(&exact).zip(&saved) {
            let truth_ids = ids(truth);
            found += ids(answer)
                .iter()
                .filter(|id| truth_ids.contains(id))
                .count();
            let wanted: Vec<i64> = labels[query]
                .iter()
                .copied()
                .filter(|l| relevant.contains(l))
                .collect();
            relevant_hits += results_with_labels(answer, &wanted);
        }
        let recall = found as f64 / (10 * saved.len()) as f64;
        let precision = relevant_hits as f64 / (10 * saved.len()) as f64;
        assert_eq!(report["queries"], saved.len());
        assert!(
            (report["recall"].as_f64().unwrap() - recall).abs() < 1e-9,
            "{report} vs recall {recall}"
        );
        assert!(
            (report["label_precision"].as_f64().unwrap() - precision).abs() < 1e-9,
            "{report} vs precision {precision}"
        );
        let latency = &report["latency_ms"];
        assert!(latency["p50"].as_f64().unwrap() <= latency["p95"].as_f64().unwrap());
        assert!(latency["p95"].as_f64().unwrap() <= latency["p99"].as_f64().unwrap());
        assert!(report["qps"].as_f64().unwrap() > 0.0);
    }
    // At the fixtures' size the default search is the exact scan; 30 nodes of the trees miss some neighbours.
    assert_eq!(reports[0]["search"], "exact");
    assert_eq!(reports[0]["recall"], 1.0);
    assert_eq!(reports[1]["search_k"], 30);
    assert!(reports[1]["recall"].as_f64().unwrap() < 1.0);
    assert_eq!(
        (&reports[2]["search"], &reports[2]["ef"]),
        (&"graph".into(), &4.into())
    );
    assert!(reports[2]["recall"].as_f64().unwrap() > 0.8);
}

#[test]
fn evaluate_samples_are_seeded() {
    let dir = shared_index();
    let temp = tempfile::tempdir().unwrap();
    let saved = |name: &str, seed: &str| {
        let path = temp.path().join(name);
        let run = evaluate(
            dir,
            &[
                "--queries",
                "50",
                "--seed",
                seed,
                "--json",
                "--save-queries",
                path.to_str().unwrap(),
            ],
        );
        run.assert_ok();
        let report: Value = serde_json::from_slice(&run.stdout).unwrap();
        assert_eq!(
            report["queries"], 50,
            "one object without --search-k: {report}"
        );
        std::fs::read_to_string(path).unwrap()
    };
    let first = saved("a", "7");
    assert_eq!(first.lines().count(), 50);
    assert_eq!(
        saved("b", "7"),
        first,
        "the same seed gives the same queries"
    );
    assert_ne!(saved("c", "8"), first, "another seed gives other queries");

    let zero = evaluate(dir, &["--queries", "0"]);
    assert_eq!(zero.code, 2, "a usage error: {}", zero.stderr);
    assert!(
        zero.stderr
            .starts_with("error: invalid value '0' for '--queries"),
        "{}",
        zero.stderr
    );
    let missing = temp.path().join("none");
    evaluate(&missing, &[]).assert_error(1, &["no index"]);
}

#[test]
fn a_large_exact_batch_answers_like_single_queries() {
    // More queries than one scan group, so the exact scan runs groups in parallel: answers stay in order and
    // equal one-at-a-time answers.
    let clips = clips();
    let temp = tempfile::tempdir().unwrap();
    let batch = temp.path().join("all.txt");
    let ids_text: Vec<&str> = clips
        .iter()
        .map(|c| c["video_id"].as_str().unwrap())
        .collect();
    std::fs::write(&batch, ids_text.join("\n")).unwrap();
    let all = recommend(
        shared_index(),
        &["--batch", batch.to_str().unwrap(), "--json", "--exact"],
    );
    all.assert_ok();
    let all = all.lines();
    assert_eq!(all.len(), clips.len());
    for n in [0, 63, 64, 200, 500, clips.len() - 1] {
        let one = recommend(shared_index(), &["--id", ids_text[n], "--json", "--exact"]);
        one.assert_ok();
        assert_eq!(all[n], one.lines()[0], "query {n}");
    }
}
