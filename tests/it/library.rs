//! The library's query API: the same answers as the binary's on the fixture index, from several threads at once,
//! and errors a host can tell apart by kind, never a crash.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use crate::common::*;
use serde_json::Value;
use soundalike::{
    BuildOptions, ClipInput, ErrorKind, Hit, Index, IndexBuilder, Metric, Query, QueryOptions,
    SearchMethod,
};

fn shared_index() -> &'static Path {
    static INDEX: OnceLock<PathBuf> = OnceLock::new();
    INDEX.get_or_init(|| build_shared_index("library-shared.idx"))
}

/// Some clip ids of the index, spread over it.
fn some_ids(count: usize) -> Vec<String> {
    let clips = clips();
    clips
        .iter()
        .step_by(clips.len() / count)
        .take(count)
        .map(|c| c["video_id"].as_str().unwrap().to_string())
        .collect()
}

/// The binary's JSON answer as (video_id, distance) pairs.
fn cli_answer(answer: &Value) -> Vec<(String, f64)> {
    answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["video_id"].as_str().unwrap().to_string(),
                r["distance"].as_f64().unwrap(),
            )
        })
        .collect()
}

fn assert_same(hits: &[Hit], cli: &[(String, f64)], what: &str) {
    let ids: Vec<&str> = hits.iter().map(|h| h.video_id.as_str()).collect();
    let cli_ids: Vec<&str> = cli.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, cli_ids, "{what}: ids and order");
    for (hit, (_, distance)) in hits.iter().zip(cli) {
        assert!(
            (f64::from(hit.distance) - distance).abs() < 1e-6,
            "{what}: distance {} against the CLI's {distance}",
            hit.distance
        );
    }
}

#[test]
fn answers_by_id_and_embedding_equal_the_binarys() {
    let dir = shared_index();
    let index = Index::open(dir).unwrap();
    let options = QueryOptions::default();
    for id in some_ids(8) {
        let cli = recommend(dir, &["--id", &id, "--json"]);
        cli.assert_ok();
        let hits = index.recommend(&Query::Id(id.clone()), &options).unwrap();
        assert_eq!(hits.len(), 10);
        assert!(hits.iter().all(|h| h.video_id != id), "never itself");
        assert_same(&hits, &cli_answer(&cli.lines()[0]), &id);
    }
    // An embedding: the Opera clip's rows, asked as a clip outside the index would be.
    let clip = clips()
        .into_iter()
        .find(|c| c["video_id"] == "xtGmrLOsjHk")
        .unwrap();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), clip.to_string()).unwrap();
    let cli = recommend(
        dir,
        &[
            "--embedding",
            file.path().to_str().unwrap(),
            "--json",
            "-k",
            "7",
        ],
    );
    cli.assert_ok();
    let rows: Vec<Vec<f32>> = serde_json::from_value(clip["embedding"].clone()).unwrap();
    let options = QueryOptions {
        count: 7,
        ..QueryOptions::default()
    };
    let hits = index
        .recommend(&Query::Embedding { rows, start: 0 }, &options)
        .unwrap();
    assert_same(&hits, &cli_answer(&cli.lines()[0]), "embedding");
}

#[test]
fn options_are_per_call_and_match_the_binarys_flags() {
    let dir = shared_index();
    let index = Index::open(dir).unwrap();
    let id = "xtGmrLOsjHk";
    let cases: Vec<(Vec<&str>, QueryOptions)> = vec![
        (
            vec!["--exact", "--rerank", "0", "-k", "5"],
            QueryOptions {
                count: 5,
                search: SearchMethod::Exact,
                rerank: Some(0),
                ..QueryOptions::default()
            },
        ),
        (
            vec!["--label", "Opera,Choir", "-k", "3"],
            QueryOptions {
                count: 3,
                labels: vec![238, 28],
                ..QueryOptions::default()
            },
        ),
        (
            vec!["--ef", "40", "-k", "4"],
            QueryOptions {
                count: 4,
                search: SearchMethod::Graph {
                    ef: 40.try_into().unwrap(),
                },
                ..QueryOptions::default()
            },
        ),
    ];
    for (flags, options) in cases {
        let mut args = vec!["--id", id, "--json"];
        args.extend(&flags);
        let cli = recommend(dir, &args);
        cli.assert_ok();
        let hits = index.recommend(&Query::Id(id.into()), &options).unwrap();
        assert_same(&hits, &cli_answer(&cli.lines()[0]), &flags.join(" "));
    }
}

#[test]
fn one_index_answers_many_threads_at_once() {
    let index = Arc::new(Index::open(shared_index()).unwrap());
    let ids = some_ids(24);
    let options = QueryOptions::default();
    let alone: Vec<Vec<Hit>> = ids
        .iter()
        .map(|id| index.recommend(&Query::Id(id.clone()), &options).unwrap())
        .collect();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (index, ids, options) = (index.clone(), ids.clone(), options.clone());
            std::thread::spawn(move || {
                // Each thread asks in its own order, some one by one and some as a batch.
                let mut answers = vec![Vec::new(); ids.len()];
                for (n, id) in ids.iter().enumerate().rev() {
                    if (n + t) % 2 == 0 {
                        answers[n] = index.recommend(&Query::Id(id.clone()), &options).unwrap();
                    }
                }
                let queries: Vec<Query> = ids.iter().map(|id| Query::Id(id.clone())).collect();
                let batch = index.recommend_batch(&queries, &options).unwrap();
                for (n, answer) in batch.into_iter().enumerate() {
                    let answer = answer.unwrap();
                    if (n + t) % 2 == 0 {
                        assert_eq!(answer, answers[n]);
                    }
                    answers[n] = answer;
                }
                answers
            })
        })
        .collect();
    for thread in threads {
        assert_eq!(thread.join().unwrap(), alone);
    }
}

#[test]
fn a_batch_answers_each_query_in_its_place() {
    let index = Index::open(shared_index()).unwrap();
    let ids = some_ids(3);
    let queries = vec![
        Query::Id(ids[0].clone()),
        Query::Id("no-such-clip".into()),
        Query::Embedding {
            rows: vec![vec![1.0; 5]],
            start: 0,
        },
        Query::Id(ids[1].clone()),
    ];
    let answers = index
        .recommend_batch(&queries, &QueryOptions::default())
        .unwrap();
    assert_eq!(answers.len(), 4);
    assert_eq!(answers[0].as_ref().unwrap().len(), 10);
    let missing = answers[1].as_ref().unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound);
    assert!(
        missing.to_string().contains("no clip 'no-such-clip'"),
        "{missing}"
    );
    assert_eq!(answers[2].as_ref().unwrap_err().kind(), ErrorKind::BadInput);
    assert_eq!(
        answers[3].as_ref().unwrap(),
        &index
            .recommend(&Query::Id(ids[1].clone()), &QueryOptions::default())
            .unwrap()
    );
}

#[test]
fn errors_have_kinds_and_a_damaged_index_is_an_error_not_a_crash() {
    let missing = Index::open("/nonexistent/music.idx").err().unwrap();
    assert_eq!(missing.kind(), ErrorKind::NotFound);
    assert!(missing.to_string().contains("no index at"), "{missing}");

    // A data file cut short (a partial copy): LMDB would fault reading past its end; opening refuses it.
    let (_tmp, dir) = build(clips_jsonl(), &[]);
    let data = dir.join("data.mdb");
    let len = std::fs::metadata(&data).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&data).unwrap();
    file.set_len(len / 2).unwrap();
    let damaged = Index::open(&dir).err().unwrap();
    assert_eq!(damaged.kind(), ErrorKind::DamagedIndex, "{damaged}");
    assert!(damaged.to_string().contains("is damaged"), "{damaged}");
    // The binary says the same, as one line.
    recommend(&dir, &["--id", "xtGmrLOsjHk"]).assert_error(1, &["is damaged", "partial copy"]);

    // A re-rank on an index whose metric has no cosine: a usage error, worded for the library.
    let (_tmp, euclidean) = build(clips_jsonl(), &["--metric", "euclidean"]);
    let index = Index::open(&euclidean).unwrap();
    let options = QueryOptions {
        rerank: Some(5),
        ..QueryOptions::default()
    };
    let error = index
        .recommend(&Query::Id("xtGmrLOsjHk".into()), &options)
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Usage, "{error}");
    let zero = QueryOptions {
        count: 0,
        ..QueryOptions::default()
    };
    let error = index
        .recommend(&Query::Id("xtGmrLOsjHk".into()), &zero)
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Usage, "{error}");
}

#[test]
fn a_build_from_the_library_answers_as_the_binarys_and_a_cancelled_one_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("lib.idx");
    let built = IndexBuilder::new(&dir)
        .rebuild(vec![ClipInput::Reader {
            name: "fixture clips".into(),
            reader: Box::new(clips_jsonl()),
        }])
        .unwrap();
    assert_eq!(built.clips, 779);
    let ours = Index::open(&dir).unwrap();
    let theirs = Index::open(shared_index()).unwrap();
    assert_eq!(ours.len().unwrap(), theirs.len().unwrap());
    for id in some_ids(5) {
        let query = Query::Id(id);
        assert_eq!(
            ours.recommend(&query, &QueryOptions::default()).unwrap(),
            theirs.recommend(&query, &QueryOptions::default()).unwrap()
        );
    }

    // Cancelled while reading: an error, and the index as it was.
    let before = std::fs::read(dir.join("data.mdb")).unwrap();
    let stop = AtomicBool::new(false);
    let read = std::sync::atomic::AtomicU64::new(0);
    let error = IndexBuilder::new(&dir)
        .options(BuildOptions {
            metric: Metric::Euclidean,
            ..BuildOptions::default()
        })
        .progress(|event| {
            if event == soundalike::BuildEvent::ClipRead
                && read.fetch_add(1, Ordering::Relaxed) == 100
            {
                stop.store(true, Ordering::Relaxed);
            }
        })
        .cancel(|| stop.load(Ordering::Relaxed))
        .rebuild(vec![ClipInput::Reader {
            name: "fixture clips".into(),
            reader: Box::new(clips_jsonl()),
        }])
        .unwrap_err();
    assert!(error.to_string().contains("cancelled"), "{error}");
    assert_eq!(std::fs::read(dir.join("data.mdb")).unwrap(), before);
    assert_eq!(
        Index::open(&dir).unwrap().settings().unwrap().metric,
        Metric::Angular
    );
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, vec![std::ffi::OsString::from("lib.idx")]);
}

#[test]
fn a_handle_kept_between_questions_sees_an_append_at_the_next_one() {
    let lines = fixture_clip_lines();
    let (first, second) = lines.split_at(lines.len() / 2);
    let jsonl = |lines: &[String]| lines.iter().map(|l| format!("{l}\n")).collect::<String>();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("halves.idx");
    IndexBuilder::new(&dir)
        .rebuild(vec![ClipInput::Reader {
            name: "first half".into(),
            reader: Box::new(std::io::Cursor::new(jsonl(first).into_bytes())),
        }])
        .unwrap();
    let index = Index::open(&dir).unwrap();
    let added = serde_json::from_str::<Value>(&second[0]).unwrap()["video_id"]
        .as_str()
        .unwrap()
        .to_string();
    let old = serde_json::from_str::<Value>(&first[0]).unwrap()["video_id"]
        .as_str()
        .unwrap()
        .to_string();
    let exact = QueryOptions {
        search: SearchMethod::Exact,
        ..QueryOptions::default()
    };
    // Questions from two threads at once, so that the handle keeps more than one reader.
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..20 {
                    index.recommend(&Query::Id(old.clone()), &exact).unwrap();
                }
            });
        }
    });
    let unknown = index
        .recommend(&Query::Id(added.clone()), &exact)
        .unwrap_err();
    assert_eq!(unknown.kind(), ErrorKind::NotFound, "{unknown}");

    // Another process appends the second half while the handle is open.
    run_with_stdin(
        &["index", "-q", "--append", "--index", dir.to_str().unwrap()],
        jsonl(second).as_bytes(),
    )
    .assert_ok();
    assert_eq!(index.len().unwrap(), lines.len() as u64);
    let hits = index.recommend(&Query::Id(added.clone()), &exact).unwrap();
    assert_eq!(hits.len(), 10);
    // The old clip's exact answer is now the whole fixture's, as an index built in one go gives it.
    let whole = Index::open(shared_index()).unwrap();
    let query = Query::Id(old);
    assert_eq!(
        index.recommend(&query, &exact).unwrap(),
        whole.recommend(&query, &exact).unwrap()
    );
}

#[test]
fn the_handle_is_send_and_sync() {
    fn shared<T: Send + Sync>() {}
    shared::<Index>();
    shared::<soundalike::Error>();
}

#[test]
fn hostile_options_and_queries_are_errors_not_crashes() {
    let index = Index::open(shared_index()).unwrap();
    let everything = QueryOptions {
        count: usize::MAX,
        ..QueryOptions::default()
    };
    let hits = index
        .recommend(&Query::Id("xtGmrLOsjHk".into()), &everything)
        .unwrap();
    assert_eq!(hits.len(), 778, "every other clip, once");
    let nowhere = QueryOptions {
        labels: vec![u16::MAX],
        ..QueryOptions::default()
    };
    assert!(
        index
            .recommend(&Query::Id("xtGmrLOsjHk".into()), &nowhere)
            .unwrap()
            .is_empty()
    );
    for rows in [
        vec![vec![f32::NAN; 128]; 10],
        vec![vec![1e30; 128]; 10],
        vec![vec![-1.0; 128]; 10],
        vec![],
    ] {
        let error = index
            .recommend(
                &Query::Embedding { rows, start: 0 },
                &QueryOptions::default(),
            )
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::BadInput, "{error}");
    }
    let far = Query::Embedding {
        rows: vec![vec![100.0; 128]; 10],
        start: usize::MAX,
    };
    let error = index.recommend(&far, &QueryOptions::default()).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::BadInput, "{error}");
    // Two handles on one index in one process share it (heed opens a path once per process).
    let again = Index::open(shared_index()).unwrap();
    assert_eq!(again.len().unwrap(), index.len().unwrap());
}

/// What another engine loads (`Reader::searched`) is what the exact scan compares: every clip once, its vector
/// unit length, the vectors' dot products the exact scan's similarities; and a query made into that space
/// (`Reader::query_vector`) from a clip's embedding is the clip's own stored vector.
#[test]
fn the_searched_vectors_are_what_the_exact_scan_compares() {
    let index = Index::open(shared_index()).unwrap();
    let reader = index.reader().unwrap();
    let searched = reader.searched().unwrap();
    let clips = clips();
    assert_eq!(searched.len(), clips.len());
    let all: Vec<_> = (0..searched.len())
        .map(|n| searched.get(n).unwrap())
        .collect();
    let mut ids: Vec<&str> = all.iter().map(|c| c.video_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), clips.len(), "every clip once");
    for clip in &all {
        assert_eq!(clip.vector.len(), searched.dimensions());
        let norm: f32 = clip.vector.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "{}: norm {norm}", clip.video_id);
    }
    assert!(
        searched.get(searched.len()).is_err(),
        "past the end is an error"
    );

    let opera = clips
        .iter()
        .find(|c| c["video_id"] == "xtGmrLOsjHk")
        .unwrap();
    let rows: Vec<Vec<f32>> = serde_json::from_value(opera["embedding"].clone()).unwrap();
    let query = reader.query_vector(&rows, 0).unwrap();
    let stored = all.iter().find(|c| c.video_id == "xtGmrLOsjHk").unwrap();
    for (a, b) in query.iter().zip(stored.vector) {
        assert!((a - b).abs() < 1e-6);
    }
    let options = QueryOptions {
        search: SearchMethod::Exact,
        rerank: Some(0),
        ..QueryOptions::default()
    };
    let hits = index
        .recommend(&Query::Id("xtGmrLOsjHk".into()), &options)
        .unwrap();
    for hit in &hits {
        let other = all.iter().find(|c| c.video_id == hit.video_id).unwrap();
        let dot: f32 = query.iter().zip(other.vector).map(|(a, b)| a * b).sum();
        let similarity = hit.similarity.unwrap();
        assert!(
            (dot - similarity).abs() < 1e-4,
            "{}: {dot} against {similarity}",
            hit.video_id
        );
    }
}
