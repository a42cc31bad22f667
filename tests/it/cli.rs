//! What a new user meets (issue 12): help texts that are enough on their own, usage errors for options that
//! conflict, errors that point the right way, and output that reads well. Through the built binary.

use std::path::Path;
use std::process::Command;

use crate::common::{self, build, clips_jsonl, fixture_data, recommend, run, run_with_stdin};

const SUBCOMMANDS: [&str; 7] = [
    "ingest",
    "index",
    "recommend",
    "info",
    "evaluate",
    "embed",
    "serve",
];

#[test]
fn every_subcommand_help_ends_with_examples_and_shares_the_common_options() {
    for sub in SUBCOMMANDS {
        let help = run(&[sub, "--help"]);
        help.assert_ok();
        let text = help.stdout_text();
        let examples = text
            .split("Examples:\n")
            .nth(1)
            .unwrap_or_else(|| panic!("{sub} --help has no examples:\n{text}"));
        let lines: Vec<&str> = examples.lines().filter(|l| !l.trim().is_empty()).collect();
        assert!(
            (2..=3).contains(&lines.len()) && lines.iter().all(|l| l.contains("soundalike ")),
            "{sub}: two or three example commands, got {lines:?}"
        );
        assert!(
            text.contains("-q, --quiet"),
            "{sub} takes -q like every subcommand:\n{text}"
        );
        if !["ingest", "embed"].contains(&sub) {
            assert!(text.contains("--index <DIR>"), "{sub}: --index <DIR>");
        }
    }
    // The same words for the same option everywhere.
    let index_help: Vec<String> = ["recommend", "info", "evaluate"]
        .iter()
        .map(|sub| {
            let text = run(&[*sub, "--help"]).stdout_text();
            text.lines()
                .find(|l| l.trim_start().starts_with("--index <DIR>"))
                .unwrap()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    assert!(
        index_help.windows(2).all(|w| w[0] == w[1]),
        "{index_help:?}"
    );
}

#[test]
fn recommend_help_says_what_the_default_search_is() {
    let text = run(&["recommend", "--help"]).stdout_text();
    // Not "default: 200 x k": the trees are never the default.
    assert!(!text.contains("200 x k"), "{text}");
    assert!(text.contains("exact scan up to"), "{text}");
    assert!(text.contains("Never the default"), "{text}");
    let index_text = run(&["index", "--help"]).stdout_text();
    assert!(
        index_text.contains("(default 10)") && !index_text.contains("default: arroy's"),
        "index --help states the default trees: {index_text}"
    );
}

#[test]
fn conflicting_options_are_usage_errors() {
    let (_temp, dir) = build(clips_jsonl(), &[]);
    for all in [
        vec!["--id", "xtGmrLOsjHk", "--exact", "--search-k", "100"],
        vec!["--id", "xtGmrLOsjHk", "--start", "3"],
        vec!["--id", "xtGmrLOsjHk", "--ef", "10", "--exact"],
    ] {
        let answer = recommend(&dir, &all);
        assert_eq!(answer.code, 2, "{all:?}: {}", answer.stderr);
        assert!(
            answer.stderr.contains("cannot be used with"),
            "{}",
            answer.stderr
        );
    }
}

#[test]
fn label_takes_a_comma_list_as_ingest_music_does_and_lists_those_labels_first() {
    let (_temp, dir) = build(clips_jsonl(), &[]);
    let both = recommend(
        &dir,
        &["--id", "xtGmrLOsjHk", "--label", "Opera,Choir", "--json"],
    );
    both.assert_ok();
    let repeated = recommend(
        &dir,
        &[
            "--id",
            "xtGmrLOsjHk",
            "--label",
            "opera",
            "--label",
            "28",
            "--json",
        ],
    );
    repeated.assert_ok();
    assert_eq!(
        both.stdout, repeated.stdout,
        "a list and repeated --label agree"
    );
    let results = both.lines()[0]["results"].as_array().unwrap().clone();
    // The fixture holds six such clips besides the query.
    assert!(!results.is_empty() && results.len() < 10, "{results:?}");
    for hit in &results {
        let labels: Vec<i64> = hit["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_i64().unwrap())
            .collect();
        // Opera is 238, Choir 28.
        assert!(labels.contains(&238) || labels.contains(&28), "{hit}");
    }
    // The table shows the asked-for labels before the clip's others.
    let table = recommend(
        &dir,
        &["--id", "xtGmrLOsjHk", "--label", "Choir", "-k", "3"],
    );
    table.assert_ok();
    for row in table.stdout_text().lines().skip(2) {
        let labels = row
            .split("  ")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .nth(3)
            .unwrap();
        assert!(labels.starts_with("Choir"), "{row}");
    }
    let unknown = recommend(&dir, &["--id", "xtGmrLOsjHk", "--label", "Jazz,Nope"]);
    assert_eq!(unknown.code, 2, "{}", unknown.stderr);
    assert!(unknown.stderr.contains("Nope"), "{}", unknown.stderr);
}

#[test]
fn json_results_carry_the_similarity_the_table_shows() {
    let (_temp, dir) = build(clips_jsonl(), &[]);
    let json = recommend(&dir, &["--id", "xtGmrLOsjHk", "-k", "3", "--json"]);
    json.assert_ok();
    let table = recommend(&dir, &["--id", "xtGmrLOsjHk", "-k", "3"]);
    let shown: Vec<String> = table
        .stdout_text()
        .lines()
        .skip(2)
        .map(|row| row.split_whitespace().nth(2).unwrap().to_string())
        .collect();
    let results = json.lines()[0]["results"].as_array().unwrap().clone();
    for (hit, shown) in results.iter().zip(&shown) {
        let distance = hit["distance"].as_f64().unwrap();
        let similarity = hit["similarity"].as_f64().unwrap();
        assert!((similarity - (1.0 - 2.0 * distance)).abs() < 1e-5, "{hit}");
        assert_eq!(&format!("{similarity:.4}"), shown);
    }
    // Other metrics have a distance and no similarity.
    let (_temp, euclidean) = build(clips_jsonl(), &["--metric", "euclidean"]);
    let json = recommend(&euclidean, &["--id", "xtGmrLOsjHk", "-k", "1", "--json"]);
    assert!(json.lines()[0]["results"][0].get("similarity").is_none());
}

#[test]
fn errors_point_the_right_way() {
    let temp = tempfile::tempdir().unwrap();
    let clips = temp.path().join("clips.jsonl");
    std::fs::write(&clips, clips_jsonl()).unwrap();
    let tfrecord = fixture_data().join("eval/xt.tfrecord");
    let idx = temp.path().join("x.idx");

    // An index asked of a file of clips: not "build one" at a path that a build would refuse.
    let info = run(&[Path::new("info"), Path::new("--index"), &clips]);
    info.assert_error(1, &["clips.jsonl is a file, not an index"]);
    assert!(!info.stderr.contains("build one"), "{}", info.stderr);

    // AudioSet's records given to index: run ingest first.
    let index = run(&[Path::new("index"), Path::new("--index"), &idx, &tfrecord]);
    index.assert_error(
        1,
        &[
            "xt.tfrecord is a TFRecord file, not clips",
            "soundalike ingest",
        ],
    );
    assert!(!index.stderr.contains("UTF-8"), "{}", index.stderr);
    let tarball = temp.path().join("features.tar.gz");
    common::write_tar(
        &fixture_data().join("eval"),
        "audioset_v1_embeddings/eval",
        &tarball,
        true,
    );
    let index = run(&[Path::new("index"), Path::new("--index"), &idx, &tarball]);
    index.assert_error(
        1,
        &["features.tar.gz is gzip-compressed", "soundalike ingest"],
    );
    assert!(!idx.exists(), "nothing built");

    // Clips given back to ingest: not a damaged TFRecord to skip.
    let ingest = run(&[Path::new("ingest"), &clips]);
    ingest.assert_error(1, &["clips.jsonl: this is JSON", "soundalike index"]);
    assert!(
        !ingest.stderr.contains("--skip-corrupt"),
        "{}",
        ingest.stderr
    );
}

#[test]
fn long_valid_names_work_and_hidden_names_stay_hidden() {
    let temp = tempfile::tempdir().unwrap();
    let long = "m".repeat(245);
    let out = temp.path().join(format!("{long}.jsonl"));
    let ingest = run(&[
        Path::new("ingest"),
        Path::new("-q"),
        &fixture_data().join("eval"),
        Path::new("-o"),
        &out,
    ]);
    ingest.assert_ok();
    assert!(out.is_file());
    let idx = temp.path().join(&long);
    let index = run(&[
        Path::new("index"),
        Path::new("-q"),
        Path::new("--index"),
        &idx,
        &out,
    ]);
    index.assert_ok();
    assert!(idx.join("data.mdb").is_file());
    // A name the file system cannot take is named as the user gave it, not by its hidden temporary.
    let too_long = temp.path().join("n".repeat(300));
    let failed = run(&[
        Path::new("ingest"),
        Path::new("-q"),
        &fixture_data().join("eval"),
        Path::new("-o"),
        &too_long,
    ]);
    failed.assert_error(1, &["cannot write", "File name too long"]);
    assert!(!failed.stderr.contains(".partial"), "{}", failed.stderr);
    let names: Vec<_> = std::fs::read_dir(temp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names.len(),
        2,
        "nothing left beside the two outputs: {names:?}"
    );
}

#[test]
fn ingest_summary_counts_in_words_that_fit() {
    let one = fixture_data().join("eval/xt.tfrecord");
    let run = run(&[
        Path::new("ingest"),
        &one,
        Path::new("-o"),
        Path::new("/dev/null"),
    ]);
    run.assert_ok();
    assert!(run.stderr.contains("ingest: 1 file, "), "{}", run.stderr);
    assert!(
        run.stderr.contains(" KB)"),
        "a small input in KB: {}",
        run.stderr
    );
    assert!(!run.stderr.contains("0.0 MB"), "{}", run.stderr);
}

#[test]
fn index_with_a_terminal_on_stdin_and_no_input_is_a_usage_error() {
    // `script` gives the command a terminal.
    if let Err(e) = Command::new("script").arg("--version").output() {
        common::skip(
            "script",
            format_args!("to give the binary a terminal (Debian's bsdutils): {e}"),
        );
        return;
    }
    let temp = tempfile::tempdir().unwrap();
    let idx = temp.path().join("tty.idx");
    let command = format!(
        "{} index --index {}; echo exit=$?",
        env!("CARGO_BIN_EXE_soundalike"),
        idx.display()
    );
    let output = Command::new("timeout")
        .args(["20", "script", "-qec", &command, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("error: no input"), "{text}");
    assert!(text.contains("exit=2"), "{text}");
    let left: Vec<_> = std::fs::read_dir(temp.path()).unwrap().collect();
    assert!(left.is_empty(), "nothing created: {left:?}");
    // A pipe is read as before.
    let piped = run_with_stdin(
        &["index", "-q", "--index", idx.to_str().unwrap()],
        clips_jsonl(),
    );
    piped.assert_ok();
}

#[test]
fn completions_and_a_man_page_come_from_the_command_line_definitions() {
    for shell in ["bash", "zsh", "fish"] {
        let script = run(&["completions", shell]);
        script.assert_ok();
        let text = script.stdout_text();
        for word in ["recommend", "search-k", "append"] {
            assert!(text.contains(word), "{shell} completions name {word}");
        }
    }
    let page = run(&["manpage"]);
    page.assert_ok();
    let text = page.stdout_text();
    assert!(
        text.starts_with(".ie") || text.contains(".TH soundalike 1"),
        "roff: {text}"
    );
    assert!(text.contains("recommend"), "{text}");
    let unknown = run(&["completions", "nosuchshell"]);
    assert_eq!(unknown.code, 2);
}
