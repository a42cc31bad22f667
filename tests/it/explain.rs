//! Why a hit is a neighbour (issue 37): `recommend --explain`, the API's `explain`, on the fixture clips. The
//! labels' shares and the rest add up to each hit's similarity, the matched seconds lie inside both clips, and
//! the command line and the API explain alike (Python's: python/tests/test_answers.py; the page's:
//! tests/it/browser.rs).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::{Value, json};

use crate::common::*;
use crate::serve::Served;

fn shared_index() -> &'static Path {
    static INDEX: OnceLock<PathBuf> = OnceLock::new();
    INDEX.get_or_init(|| build_shared_index("explain-shared.idx"))
}

/// Each clip's length in seconds, by video_id.
fn clip_seconds(video_id: &str) -> f64 {
    let clip = clips()
        .into_iter()
        .find(|c| c["video_id"] == video_id)
        .unwrap_or_else(|| panic!("{video_id} is a fixture clip"));
    clip["end_time"].as_f64().unwrap() - clip["start_time"].as_f64().unwrap()
}

/// Checks one answer's explanations: what they compared, the shares adding up to the similarity (labels listed
/// largest first, named), and each matched pair inside the query (`query_seconds` long) and the hit.
fn check_explained(answer: &Value, compared: &str, query_seconds: f64) {
    let results = answer["results"].as_array().unwrap();
    assert!(!results.is_empty());
    for hit in results {
        let why = &hit["explain"];
        assert_eq!(why["compared"], compared, "{hit}");
        let labels = why["labels"].as_array().expect("label shares");
        assert_eq!(labels.len(), 5, "{why}");
        let shares: Vec<f64> = labels
            .iter()
            .map(|l| l["share"].as_f64().unwrap())
            .collect();
        assert!(
            shares.windows(2).all(|w| w[0] >= w[1]),
            "largest first: {shares:?}"
        );
        for label in labels {
            let index = label["label"].as_i64().unwrap();
            let name = label["name"].as_str().unwrap();
            assert_eq!(Some(name), soundalike::labels::class_name(index), "{label}");
            assert_ne!(
                index, 137,
                "Music itself is no dimension of the label model"
            );
        }
        let total = shares.iter().sum::<f64>() + why["rest"].as_f64().unwrap();
        let similarity = hit["similarity"].as_f64().unwrap();
        assert!(
            (total - similarity).abs() < 1e-4,
            "the shares add up to {total}, the similarity is {similarity}: {hit}"
        );
        let matched = why["matched"].as_array().unwrap();
        assert!((1..=3).contains(&matched.len()), "{why}");
        let hit_seconds = hit["end_time"].as_f64().unwrap() - hit["start_time"].as_f64().unwrap();
        for pair in matched {
            let (query_at, hit_at) = (
                pair["query_at"].as_f64().unwrap(),
                pair["hit_at"].as_f64().unwrap(),
            );
            assert!(
                (0.0..query_seconds).contains(&query_at),
                "{pair} in a {query_seconds} s query"
            );
            assert!(
                (0.0..hit_seconds).contains(&hit_at),
                "{pair} in a {hit_seconds} s hit"
            );
            let cosine = pair["similarity"].as_f64().unwrap();
            assert!((-1.0..=1.0).contains(&cosine), "{pair}");
        }
        let strengths: Vec<f64> = matched
            .iter()
            .map(|p| p["similarity"].as_f64().unwrap())
            .collect();
        assert!(
            strengths.windows(2).all(|w| w[0] >= w[1]),
            "strongest first: {strengths:?}"
        );
    }
}

#[test]
fn the_shares_add_up_to_each_hits_similarity_and_the_seconds_lie_in_both_clips() {
    let id = "xtGmrLOsjHk";
    // The defaults re-rank by the frames: the similarity is the Chamfer one, shared out over the paired frames.
    let run = recommend(shared_index(), &["--id", id, "--explain", "--json"]);
    run.assert_ok();
    check_explained(&run.lines()[0], "frames", clip_seconds(id));
    // Without the re-rank, the vectors' cosine, by the exact scan and by the graph.
    for search in [["--exact"], ["--ef=40"]] {
        let run = recommend(
            shared_index(),
            &[
                "--id",
                id,
                "--explain",
                "--json",
                "--rerank",
                "0",
                search[0],
            ],
        );
        run.assert_ok();
        check_explained(&run.lines()[0], "vectors", clip_seconds(id));
    }
    // An embedding of 12 rows (two clips' rows) asked from its third row on: the query's seconds count from
    // its first row (0.96 s each).
    let all = clips();
    let rows: Vec<Value> = all[5]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .chain(all[6]["embedding"].as_array().unwrap().iter().take(2))
        .cloned()
        .collect();
    let temp = tempfile::tempdir().unwrap();
    let file = temp.path().join("query.json");
    std::fs::write(&file, Value::Array(rows.clone()).to_string()).unwrap();
    let rows = rows.len();
    let run = recommend(
        shared_index(),
        &[
            "--embedding",
            file.to_str().unwrap(),
            "--start",
            "2",
            "--explain",
            "--json",
        ],
    );
    run.assert_ok();
    let answer = &run.lines()[0];
    check_explained(answer, "frames", rows as f64 * 0.96);
    let earliest = answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|hit| hit["explain"]["matched"].as_array().unwrap().clone())
        .map(|pair| pair["query_at"].as_f64().unwrap())
        .fold(f64::INFINITY, f64::min);
    // A clip of the index given as an embedding finds itself first, at similarity 1 (its codes' rounding
    // shared out, not added).
    std::fs::write(&file, all[3].to_string()).unwrap();
    let run = recommend(
        shared_index(),
        &["--embedding", file.to_str().unwrap(), "--explain", "--json"],
    );
    run.assert_ok();
    let itself = &run.lines()[0];
    assert_eq!(itself["results"][0]["video_id"], all[3]["video_id"]);
    check_explained(itself, "frames", 10.0 * 0.96);
    assert!(
        earliest >= 2.0 * 0.96 - 1e-9,
        "no match before the rows asked: {earliest}"
    );
}

#[test]
fn the_table_has_a_why_column_only_when_asked_and_json_an_explain_object() {
    let id = "xtGmrLOsjHk";
    let plain = recommend(shared_index(), &["--id", id, "--json", "-k", "3"]);
    plain.assert_ok();
    assert!(plain.lines()[0]["results"][0].get("explain").is_none());
    let table = recommend(shared_index(), &["--id", id, "-k", "3"]);
    assert!(
        !table.stdout_text().contains(" why "),
        "{}",
        table.stdout_text()
    );

    let json = recommend(
        shared_index(),
        &["--id", id, "--json", "-k", "3", "--explain"],
    );
    let first = json.lines()[0]["results"][0]["explain"].clone();
    let table = recommend(shared_index(), &["--id", id, "-k", "3", "--explain"]);
    table.assert_ok();
    let text = table.stdout_text();
    let heading = text.lines().nth(1).unwrap();
    assert!(heading.contains(" why "), "{text}");
    // The first row's column: its two largest labels and its best pair, as "A, B; m:ss ~ m:ss".
    let clock = |s: f64| format!("{}:{:02}", s.round() as u64 / 60, s.round() as u64 % 60);
    let pair = &first["matched"][0];
    let brief = format!(
        "{}, {}; {} ~ {}",
        first["labels"][0]["name"].as_str().unwrap(),
        first["labels"][1]["name"].as_str().unwrap(),
        clock(pair["query_at"].as_f64().unwrap()),
        clock(pair["hit_at"].as_f64().unwrap())
    );
    // Cut to the column's 36 characters, as a long label name is.
    let shown: String = if brief.chars().count() > 36 {
        brief.chars().take(35).chain(['…']).collect()
    } else {
        brief
    };
    let row = text.lines().nth(2).unwrap();
    assert!(row.contains(&shown), "the row says {shown:?}: {row}");
}

#[test]
fn an_index_without_labels_gives_the_matched_seconds_alone() {
    let (_temp, dir) = build(clips_jsonl(), &["--projection", "none"]);
    let id = "xtGmrLOsjHk";
    let run = recommend(&dir, &["--id", id, "--explain", "--json", "-k", "4"]);
    run.assert_ok();
    for hit in run.lines()[0]["results"].as_array().unwrap() {
        let why = &hit["explain"];
        assert_eq!(why["labels"], Value::Null, "{why}");
        assert_eq!(why["rest"], Value::Null, "{why}");
        assert!(
            why["note"].as_str().unwrap().contains("--projection none"),
            "{why}"
        );
        assert!(!why["matched"].as_array().unwrap().is_empty(), "{why}");
    }
    let table = recommend(&dir, &["--id", id, "--explain", "-k", "1"]);
    let row = table.stdout_text().lines().nth(2).unwrap().to_string();
    assert!(row.contains(" ~ "), "the seconds alone: {row}");
}

#[test]
fn the_command_line_and_the_api_explain_alike() {
    let served = Served::start::<&str>(shared_index(), &[]);
    let id = "xtGmrLOsjHk";
    let cli = recommend(
        shared_index(),
        &["--id", id, "--explain", "--json", "-k", "5"],
    );
    cli.assert_ok();
    let cli = cli.lines().remove(0);
    let by_query = served
        .get(&format!("/api/recommend?id={id}&k=5&explain=1"))
        .json();
    assert_eq!(by_query, cli);
    let by_body = served
        .post_json(
            "/api/recommend",
            &json!({"id": id, "k": 5, "explain": true}),
        )
        .json();
    assert_eq!(by_body, cli);
    // An embedding, asked both ways.
    let clip = clips().remove(7);
    let temp = tempfile::tempdir().unwrap();
    let file = temp.path().join("query.json");
    std::fs::write(&file, clip.to_string()).unwrap();
    let cli = recommend(
        shared_index(),
        &[
            "--embedding",
            file.to_str().unwrap(),
            "--explain",
            "--json",
            "-k",
            "5",
        ],
    );
    cli.assert_ok();
    let api = served
        .post_json(
            "/api/recommend",
            &json!({"embedding": clip["embedding"], "k": 5, "explain": "1"}),
        )
        .json();
    assert_eq!(api["results"], cli.lines()[0]["results"]);
    // Not asked: no explanation; asked wrongly: a clear 400, and the server goes on.
    let plain = served.get(&format!("/api/recommend?id={id}&k=1")).json();
    assert!(plain["results"][0].get("explain").is_none());
    let error = served
        .get(&format!("/api/recommend?id={id}&explain=maybe"))
        .error(400);
    assert!(error.contains("explain \"maybe\" is not a flag"), "{error}");
    served.assert_alive("a bad explain flag");
}
