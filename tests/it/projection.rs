//! The learned projection and the frame-level re-rank (issue 13), through the built binary on the fixture clips
//! (and on the whole bal_train split, where `../shared/audioset` has it).

use std::path::Path;

use crate::common::{self, *};
use serde_json::Value;
use soundalike::clip::{self, ClipRecord};
use soundalike::projection::{self as fit, Fit, Projection};

fn info(dir: &Path) -> Value {
    let run = run(&["info", "--json", "--index", dir.to_str().unwrap()]);
    run.assert_ok();
    serde_json::from_slice(&run.stdout).unwrap()
}

fn lines_of(lines: &[&str]) -> Vec<u8> {
    (lines.join("\n") + "\n").into_bytes()
}

fn fixture_lines() -> Vec<&'static str> {
    fixture_clip_lines().iter().map(String::as_str).collect()
}

fn video_id(line: &str) -> String {
    serde_json::from_str::<Value>(line).unwrap()["video_id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The default fit of `examples/fit_projection.rs`: the first 10 rows of each clip, in line order.
fn fit(jsonl: &[u8]) -> Projection {
    let mut fit = Fit::default();
    clip::read_clips(jsonl, "clips", |clip: ClipRecord, _| {
        if clip.embedding.len() >= 10 {
            let raw: Vec<f32> = clip.embedding[..10].iter().flatten().copied().collect();
            fit.add(&clip.video_id, &clip.labels, &raw);
        }
        Ok(())
    })
    .unwrap();
    fit.finish().unwrap()
}

#[test]
fn the_compiled_projection_is_a_fit_on_bal_train() {
    let Some(shared) = shared_audioset() else {
        return;
    };
    let bal_train = shared.join("real/audioset_v1_embeddings/bal_train");
    let ingest = run(&[Path::new("ingest"), Path::new("-q"), &bal_train]);
    ingest.assert_ok();
    let refit = fit(&ingest.stdout);
    let compiled = Projection::default_fit();
    assert_eq!(refit.dimensions, compiled.dimensions);
    assert_eq!(refit.fit_ids, compiled.fit_ids, "fit on the same clips");
    assert_eq!(refit.fit_ids.len(), 6320);
    assert_eq!(refit.activation, compiled.activation);
    let worst = refit
        .matrix
        .iter()
        .chain(&refit.mean)
        .chain(&refit.bias)
        .zip(
            compiled
                .matrix
                .iter()
                .chain(&compiled.mean)
                .chain(&compiled.bias),
        )
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    // The fit is a fixed number of f64 steps on the clips in a fixed order: the same machine gives the same
    // bits; another CPU's matrix kernels round differently, never by this much.
    assert!(worst < 1e-4, "largest difference {worst}");

    // Through the binary: `--projection learn` on bal_train fits the same matrix, so answers the same.
    let temp = tempfile::tempdir().unwrap();
    let learned = temp.path().join("learned.idx");
    let default = temp.path().join("default.idx");
    for (dir, projection) in [(&learned, "learn"), (&default, "default")] {
        run_with_stdin(
            &[
                "index",
                "-q",
                "--projection",
                projection,
                "--index",
                dir.to_str().unwrap(),
            ],
            &ingest.stdout,
        )
        .assert_ok();
    }
    assert_eq!(info(&learned)["settings"]["projection"]["fit_clips"], 6320);
    assert_eq!(info(&default)["settings"]["projection"]["kind"], "default");
    let ids: Vec<String> = ingest
        .stdout_text()
        .lines()
        .step_by(900)
        .map(video_id)
        .collect();
    let batch = temp.path().join("q.txt");
    std::fs::write(&batch, ids.join("\n") + "\n").unwrap();
    let ask = |dir: &Path| {
        let run = recommend(dir, &["--batch", batch.to_str().unwrap(), "--json"]);
        run.assert_ok();
        run.lines().iter().map(ids_of).collect::<Vec<_>>()
    };
    assert_eq!(ask(&learned), ask(&default));
}

fn ids_of(answer: &Value) -> Vec<String> {
    ids(answer)
}

/// `recommend --embedding` with a clip's own rows answers as `--id` does (`extra`: nothing, or `--rerank N`), the clip itself aside (it is the
/// nearest to its own rows), with the same distances: the query is projected exactly as the index's clips.
fn assert_embedding_answers_like_id(dir: &Path, line: &str, extra: &[&str]) {
    let temp = tempfile::tempdir().unwrap();
    let file = temp.path().join("clip.json");
    std::fs::write(&file, line).unwrap();
    let id = video_id(line);
    let mut by_id = vec!["--id", id.as_str(), "--json"];
    by_id.extend_from_slice(extra);
    // Asked by its rows the clip finds itself, one of the candidates re-ranked: one more makes the same others.
    let rerank = match extra {
        ["--rerank", n] => n.parse::<usize>().unwrap(),
        _ => 20,
    };
    let deeper = if rerank == 0 { 0 } else { rerank + 1 }.to_string();
    let by_rows = [
        "--embedding",
        file.to_str().unwrap(),
        "--json",
        "-k",
        "11",
        "--rerank",
        &deeper,
    ];
    let by_id = recommend(dir, &by_id);
    by_id.assert_ok();
    let by_rows = recommend(dir, &by_rows);
    by_rows.assert_ok();
    let (by_id, by_rows) = (&by_id.lines()[0], &by_rows.lines()[0]);
    let rows_results = by_rows["results"].as_array().unwrap();
    assert_eq!(rows_results[0]["video_id"], id.as_str(), "itself first");
    let rest: Vec<(String, f64)> = rows_results[1..]
        .iter()
        .map(|r| {
            (
                r["video_id"].as_str().unwrap().to_string(),
                r["distance"].as_f64().unwrap(),
            )
        })
        .collect();
    let expected: Vec<(String, f64)> = by_id["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["video_id"].as_str().unwrap().to_string(),
                r["distance"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rest.iter().map(|r| &r.0).collect::<Vec<_>>(),
        expected.iter().map(|r| &r.0).collect::<Vec<_>>(),
        "{id} {extra:?}"
    );
    for (a, b) in rest.iter().zip(&expected) {
        assert!((a.1 - b.1).abs() < 1e-6, "{id}: {a:?} vs {b:?}");
    }
}

#[test]
fn a_query_embedding_and_its_clip_get_the_same_projected_vector() {
    let lines = fixture_lines();
    let (_temp, dir) = build(clips_jsonl(), &[]);
    let settings = &info(&dir)["settings"];
    assert_eq!(settings["projection"]["kind"], "default");
    assert_eq!(settings["dimensions"], fit::DIMENSIONS);
    for at in [0, 250, 778] {
        assert_embedding_answers_like_id(&dir, lines[at], &[]);
        assert_embedding_answers_like_id(&dir, lines[at], &["--rerank", "0"]);
        assert_embedding_answers_like_id(&dir, lines[at], &["--rerank", "50"]);
    }
    // The frames' form too.
    let (_temp, flat) = build(clips_jsonl(), &["--vector", "flat"]);
    assert_eq!(info(&flat)["settings"]["dimensions"], fit::DIMENSIONS * 10);
    assert_embedding_answers_like_id(&flat, lines[100], &[]);
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

#[test]
fn without_projection_or_rerank_the_answers_are_the_old_ones() {
    // The old index (format 3) compared the de-quantized means by cosine: recomputed here by brute force.
    let clips = clips();
    let vectors: Vec<Vec<f64>> = clips.iter().map(dequantized_mean).collect();
    let cosine = |a: &[f64], b: &[f64]| {
        let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
        dot / (norm(a) * norm(b))
    };
    let (_temp, dir) = build(clips_jsonl(), &["--projection", "none"]);
    let settings = &info(&dir)["settings"];
    assert_eq!(settings["dimensions"], 128);
    assert_eq!(settings["projection"]["kind"], Value::Null);
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
        for search in [&["--exact"][..], &[][..], &["--ef", "64"][..]] {
            let mut args = vec!["--id", id, "--json", "--rerank", "0"];
            args.extend_from_slice(search);
            let run = recommend(&dir, &args);
            run.assert_ok();
            let answer = &run.lines()[0];
            assert_eq!(ids(answer), expected, "query {id} {search:?}");
            let similarity = answer["results"][0]["similarity"].as_f64().unwrap();
            assert!((similarity - scored[0].0).abs() < 1e-4);
        }
    }
}

#[test]
fn rerank_orders_by_the_frames_and_reports_their_distance() {
    let (_temp, dir) = build(clips_jsonl(), &[]);
    for id in ["xtGmrLOsjHk", &video_id(fixture_lines()[300])] {
        let plain = recommend(&dir, &["--id", id, "--json", "--rerank", "0", "-k", "20"]);
        let reranked = recommend(&dir, &["--id", id, "--json", "--rerank", "20"]);
        let default = recommend(&dir, &["--id", id, "--json"]);
        let (plain, reranked, default) =
            (&plain.lines()[0], &reranked.lines()[0], &default.lines()[0]);
        assert_eq!(reranked, default, "the default re-ranks 20");
        // The re-rank reorders the search's 20 nearest: its ten are among them, nearest frames first.
        let candidates = ids(plain);
        assert!(ids(reranked).iter().all(|id| candidates.contains(id)));
        let distances: Vec<f64> = reranked["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["distance"].as_f64().unwrap())
            .collect();
        assert!(distances.windows(2).all(|w| w[0] <= w[1]), "{distances:?}");
        assert_ne!(
            &ids(plain)[..10],
            &ids(reranked)[..],
            "{id}: the frames change the order"
        );
    }
    // The graph and the exact scan re-rank alike: the same candidates give the same answers.
    let exact = recommend(&dir, &["--id", "xtGmrLOsjHk", "--json", "--exact"]);
    let walked = recommend(&dir, &["--id", "xtGmrLOsjHk", "--json", "--ef", "500"]);
    assert_eq!(ids(&exact.lines()[0]), ids(&walked.lines()[0]));
}

#[test]
fn append_applies_the_index_projection() {
    let lines = fixture_lines();
    let (first, second) = lines.split_at(lines.len() / 2);
    let (_temp, dir) = build(&lines_of(first), &["--projection", "learn"]);
    let before = info(&dir)["settings"]["projection"].clone();
    assert_eq!(before["kind"], "learned");
    let append = run_with_stdin(
        &["index", "-q", "--append", "--index", dir.to_str().unwrap()],
        &lines_of(second),
    );
    append.assert_ok();
    let after = info(&dir);
    assert_eq!(after["settings"]["clips"], 779);
    assert_eq!(after["settings"]["projection"], before, "kept as it was");
    // An appended clip's stored vector and frames are its rows under the index's own projection: asked by its
    // rows, it answers as asked by its id.
    for line in [second[0], second[200]] {
        assert_embedding_answers_like_id(&dir, line, &[]);
        assert_embedding_answers_like_id(&dir, line, &["--rerank", "0"]);
    }
    // And a whole build with that projection (taken from this index) answers alike, by exact search.
    let (_temp2, whole) = build(clips_jsonl(), &["--projection", dir.to_str().unwrap()]);
    for line in [first[5], second[5]] {
        let id = video_id(line);
        let a = recommend(&dir, &["--id", &id, "--json", "--exact"]);
        let b = recommend(&whole, &["--id", &id, "--json", "--exact"]);
        assert_eq!(ids(&a.lines()[0]), ids(&b.lines()[0]), "{id}");
    }
    // --projection with --append is refused: an append always applies the index's own.
    let both = run_with_stdin(
        &[
            "index",
            "--append",
            "--projection",
            "none",
            "--index",
            dir.to_str().unwrap(),
        ],
        second[0].as_bytes(),
    );
    assert_eq!(both.code, 2, "{}", both.stderr);
    assert!(both.stderr.contains("--projection"), "{}", both.stderr);
}

#[test]
fn a_rebuild_keeps_the_projection_only_if_asked() {
    let lines = fixture_lines();
    let half = lines_of(&lines[..400]);
    let (_temp, dir) = build(&half, &["--projection", "learn"]);
    let d = dir.to_str().unwrap();
    let learned = info(&dir)["settings"]["projection"].clone();
    assert_eq!(learned["kind"], "learned");
    let id = video_id(lines[10]);
    let before = recommend(&dir, &["--id", &id, "--json"]);

    // Rebuilt from its own projection (its path as the FILE): the same vectors, the same answers.
    run_with_stdin(&["index", "-q", "--projection", d, "--index", d], &half).assert_ok();
    let kept = info(&dir)["settings"]["projection"].clone();
    assert_eq!(kept["kind"], "file");
    assert_eq!(kept["fit_clips"], learned["fit_clips"]);
    assert_eq!(kept["source"], d);
    assert_eq!(
        recommend(&dir, &["--id", &id, "--json"]).lines(),
        before.lines()
    );

    // Rebuilt without asking: the default.
    run_with_stdin(&["index", "-q", "--index", d], &half).assert_ok();
    assert_eq!(info(&dir)["settings"]["projection"]["kind"], "default");
    let table = run(&["info", "--index", d]);
    assert!(
        table.stdout_text().contains(&format!(
            "projection   default (fit on 6320 AudioSet bal_train music clips), {} dimensions",
            fit::DIMENSIONS
        )),
        "{}",
        table.stdout_text()
    );
    // And with none.
    run_with_stdin(
        &["index", "-q", "--projection", "none", "--index", d],
        &half,
    )
    .assert_ok();
    assert_eq!(info(&dir)["settings"]["dimensions"], 128);
}

#[test]
fn a_projection_from_a_json_file_is_applied_and_a_bad_one_refused() {
    let temp = tempfile::tempdir().unwrap();
    // The default as JSON gives the default's answers.
    let file = temp.path().join("p.json");
    std::fs::write(&file, Projection::default_fit().to_json().to_string()).unwrap();
    let (_t1, from_file) = build(clips_jsonl(), &["--projection", file.to_str().unwrap()]);
    let (_t2, default) = build(clips_jsonl(), &[]);
    let projection = &info(&from_file)["settings"]["projection"];
    assert_eq!(projection["kind"], "file");
    assert_eq!(
        projection["fit_clips"], 0,
        "a JSON file does not say what it was fit on"
    );
    let a = recommend(&from_file, &["--id", "xtGmrLOsjHk", "--json"]);
    let b = recommend(&default, &["--id", "xtGmrLOsjHk", "--json"]);
    assert_eq!(a.lines(), b.lines());

    let dir = temp.path().join("bad.idx");
    let index_with = |projection: &Path| {
        run_with_stdin(
            &[
                "index",
                "--projection",
                projection.to_str().unwrap(),
                "--index",
                dir.to_str().unwrap(),
            ],
            clips_jsonl(),
        )
    };
    let narrow = temp.path().join("narrow.json");
    let rows = vec![vec![0.5f32; 127]; 4];
    std::fs::write(&narrow, serde_json::json!({ "matrix": rows }).to_string()).unwrap();
    index_with(&narrow).assert_error(1, &["narrow.json", "row 0 has 127 values, not 128"]);
    let empty = temp.path().join("empty.json");
    std::fs::write(&empty, "{\"matrix\": []}").unwrap();
    index_with(&empty).assert_error(1, &["empty.json", "0 rows", "1 to 1024 rows"]);
    let odd = temp.path().join("odd.json");
    let rows = vec![vec![0.5f32; 128]; 2];
    std::fs::write(
        &odd,
        serde_json::json!({ "matrix": rows, "activation": "relu" }).to_string(),
    )
    .unwrap();
    index_with(&odd).assert_error(1, &["odd.json", "activation is \"relu\"", "\"logistic\""]);
    let short_bias = temp.path().join("bias.json");
    std::fs::write(
        &short_bias,
        serde_json::json!({ "matrix": rows, "bias": [1.0] }).to_string(),
    )
    .unwrap();
    index_with(&short_bias).assert_error(1, &["bias.json", "bias has 1 values, not 2"]);
    let text = temp.path().join("notes.txt");
    std::fs::write(&text, "not json").unwrap();
    index_with(&text).assert_error(1, &["notes.txt: not a projection"]);
    index_with(&temp.path().join("missing.json")).assert_error(1, &["missing.json"]);
    assert!(!dir.exists(), "nothing was built");
    // An index built without a projection has none to give.
    let (_t3, none) = build(clips_jsonl(), &["--projection", "none"]);
    index_with(&none).assert_error(1, &["has no projection"]);
}

#[test]
fn learning_without_labelled_clips_is_one_error_line() {
    // Clips whose only music label is Music itself: the fit has no labels to learn.
    let lines: Vec<String> = fixture_lines()
        .iter()
        .take(50)
        .map(|line| {
            let mut clip: Value = serde_json::from_str(line).unwrap();
            clip["labels"] = serde_json::json!([137]);
            clip.to_string()
        })
        .collect();
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("idx");
    let run = run_with_stdin(
        &[
            "index",
            "--projection",
            "learn",
            "--index",
            dir.to_str().unwrap(),
        ],
        (lines.join("\n") + "\n").as_bytes(),
    );
    run.assert_error(
        1,
        &[
            "cannot learn a projection",
            "0 of the clips",
            "--projection default or none",
        ],
    );
    assert!(!dir.exists());
}

#[test]
fn rerank_on_another_metric_is_a_usage_error() {
    let (_temp, dir) = build(clips_jsonl(), &["--metric", "euclidean"]);
    recommend(&dir, &["--id", "xtGmrLOsjHk", "--rerank", "5"]).assert_error(
        2,
        &[
            "re-rank compares frames by cosine",
            "euclidean",
            "--rerank 0",
        ],
    );
    // Bounded as -k is.
    let huge = recommend(&dir, &["--id", "xtGmrLOsjHk", "--rerank", "100000"]);
    assert_eq!(huge.code, 2, "{}", huge.stderr);
    assert!(huge.stderr.contains("0..=10000"), "{}", huge.stderr);
    // Its default is no re-rank.
    let run = recommend(&dir, &["--id", "xtGmrLOsjHk", "--json"]);
    run.assert_ok();
    let zero = recommend(&dir, &["--id", "xtGmrLOsjHk", "--json", "--rerank", "0"]);
    assert_eq!(run.lines(), zero.lines());
}

#[test]
fn evaluate_says_what_is_in_sample_and_takes_held_out_queries() {
    let lines = fixture_lines();
    let (first, second) = lines.split_at(500);
    let temp = tempfile::tempdir().unwrap();
    let held_out = temp.path().join("held-out.jsonl");
    std::fs::write(&held_out, lines_of(second)).unwrap();

    // A projection learned on the index's own clips: every query took part in the fit.
    let (_t1, learned) = build(&lines_of(first), &["--projection", "learn"]);
    let run = run(&[
        "evaluate",
        "--index",
        learned.to_str().unwrap(),
        "--queries",
        "all",
        "--json",
    ]);
    run.assert_ok();
    let report: Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(report["queries_in_projection_fit"], report["queries"]);
    assert_eq!(report["held_out"], false);
    assert_eq!(report["rerank"], 20);
    assert!(run.stderr.contains("in-sample"), "{}", run.stderr);

    // Held-out clips from a file: none took part, and the figures are those recommend gives for their rows.
    let run = common::run(&[
        "evaluate",
        "--index",
        learned.to_str().unwrap(),
        "--queries",
        held_out.to_str().unwrap(),
        "--json",
    ]);
    run.assert_ok();
    let report: Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(report["held_out"], true);
    assert_eq!(report["queries_in_projection_fit"], 0);
    assert_eq!(report["recall"], 1.0);
    let relevant: std::collections::HashSet<i64> = (138..=282).chain([28, 30, 31, 92]).collect();
    let eligible: Vec<&str> = second
        .iter()
        .copied()
        .filter(|l| {
            serde_json::from_str::<Value>(l).unwrap()["labels"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| relevant.contains(&x.as_i64().unwrap()))
        })
        .collect();
    assert_eq!(report["queries"], eligible.len());
    let batch = temp.path().join("batch.jsonl");
    std::fs::write(&batch, lines_of(&eligible)).unwrap();
    let answers = recommend(&learned, &["--batch", batch.to_str().unwrap(), "--json"]);
    answers.assert_ok();
    let mut hits = 0;
    for (answer, line) in answers.lines().iter().zip(&eligible) {
        let wanted: Vec<i64> = serde_json::from_str::<Value>(line).unwrap()["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_i64().unwrap())
            .filter(|x| relevant.contains(x))
            .collect();
        hits += common::results_with_labels(answer, &wanted);
    }
    let precision = hits as f64 / (10 * eligible.len()) as f64;
    assert!((report["label_precision"].as_f64().unwrap() - precision).abs() < 1e-9);

    // A query file holding a clip of the index is refused: it would find itself.
    let leaky = temp.path().join("leaky.jsonl");
    std::fs::write(&leaky, lines_of(&[second[0], first[3]])).unwrap();
    common::run(&[
        "evaluate",
        "--index",
        learned.to_str().unwrap(),
        "--queries",
        leaky.to_str().unwrap(),
    ])
    .assert_error(1, &["leaky.jsonl: line 2", "is in index", "held-out"]);
    // A number is a count, "all" all, a missing file an error naming it.
    common::run(&[
        "evaluate",
        "--index",
        learned.to_str().unwrap(),
        "--queries",
        "./nope.jsonl",
    ])
    .assert_error(1, &["nope.jsonl"]);
}
