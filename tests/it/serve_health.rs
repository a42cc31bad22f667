//! `serve`'s health and its swap of a replaced index (issue 33, finding 4), through the built binary on loopback:
//! `/healthz` reads what a question reads, so an index that opens but cannot answer is 503 with the reason; a
//! damaged or cut-short `data.mdb` moved into the served directory is checked first and refused, the old index
//! still answering; a good one moved in afterwards is taken up. And `index` rebuilds over a damaged index, which
//! the errors tell the user to do.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::serve::{Served, shared_index};

/// A copy of the serve tests' index (its data file only, as a partial or hand-made copy would be) in a new
/// temporary directory, as `name`: this module damages its copies.
fn private_copy(name: &str) -> (tempfile::TempDir, PathBuf) {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join(name);
    std::fs::create_dir(&dir).unwrap();
    std::fs::copy(shared_index().join("data.mdb"), dir.join("data.mdb")).unwrap();
    (temp, dir)
}

/// `data` with its settings' count of items changed by one in every copy of the settings (the same length, so
/// every page stays where it was): the settings still read, every table disagrees with them, and every
/// question fails, as in the damaged data file that "reads only the settings".
fn settings_disagree(data: &[u8]) -> Vec<u8> {
    const KEY: &[u8] = b"\"next_item\":";
    let mut damaged = data.to_vec();
    let mut changed = 0;
    let mut at = 0;
    while let Some(found) = damaged[at..].windows(KEY.len()).position(|w| w == KEY) {
        let mut end = at + found + KEY.len();
        while damaged[end].is_ascii_digit() {
            end += 1;
        }
        let last = &mut damaged[end - 1];
        *last = if *last == b'9' { b'8' } else { *last + 1 };
        changed += 1;
        at = end;
    }
    assert!(changed > 0, "the settings are in the data file");
    damaged
}

/// The first fixture clip's id.
fn first_id() -> String {
    let clip: serde_json::Value = serde_json::from_str(&fixture_clip_lines()[0]).unwrap();
    clip["video_id"].as_str().unwrap().to_string()
}

/// Writes `bytes` as a new file beside `dir` and renames it over `dir`'s data.mdb, as moving a file in does.
fn move_in(dir: &Path, bytes: &[u8]) {
    let new = dir.with_extension("incoming");
    std::fs::write(&new, bytes).unwrap();
    std::fs::rename(&new, dir.join("data.mdb")).unwrap();
}

#[test]
fn healthz_is_503_with_the_reason_on_an_index_that_opens_but_cannot_answer() {
    let (_temp, dir) = private_copy("damaged.idx");
    let data = std::fs::read(dir.join("data.mdb")).unwrap();
    std::fs::write(dir.join("data.mdb"), settings_disagree(&data)).unwrap();
    // It opens: `info` reads the settings.
    run(&["info", "--index", dir.to_str().unwrap()]).assert_ok();
    // `info --check` reads what a question reads.
    run(&["info", "--check", "--index", dir.to_str().unwrap()])
        .assert_error(1, &["damaged.idx is damaged", "rebuild it"]);

    let served = Served::start::<&str>(&dir, &["-q"]);
    let id = first_id();
    let question = served.get(&format!("/api/recommend?id={id}"));
    assert_eq!(question.status, 500, "questions fail: {}", question.body);
    let health = served.get("/healthz");
    let why = health.error(503);
    assert!(why.contains("is damaged"), "{why}");

    // Rebuilt in place (it is ours: `index` replaces it), the server takes the new index up and is healthy.
    run_with_stdin(
        &["index", "-q", "--index", dir.to_str().unwrap()],
        clips_jsonl(),
    )
    .assert_ok();
    let started = Instant::now();
    loop {
        let health = served.get("/healthz");
        if health.status == 200 {
            let body = health.json();
            assert_eq!(body["status"], "ok");
            assert_eq!(body["clips"], fixture_clip_lines().len() as u64);
            assert!(body.get("refused").is_none(), "{body}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the rebuilt index is taken up: {}",
            health.body
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(served.get(&format!("/api/recommend?id={id}")).status, 200);
}

#[test]
fn a_damaged_data_file_moved_in_leaves_the_old_index_answering() {
    let (_temp, dir) = private_copy("live.idx");
    let good = std::fs::read(dir.join("data.mdb")).unwrap();
    let served = Served::start::<&str>(&dir, &[]);
    let id = first_id();
    let ask = || served.get(&format!("/api/recommend?id={id}&k=5"));
    let before = ask();
    assert_eq!(before.status, 200, "{}", before.body);
    assert_eq!(served.get("/healthz").status, 200);

    let mut refusals = 0;
    // One whose settings read but whose tables do not; one cut short (a partial copy).
    for (what, bad) in [
        ("settings that disagree", settings_disagree(&good)),
        ("cut short", good[..good.len() / 2].to_vec()),
    ] {
        move_in(&dir, &bad);
        refusals += 1;
        let started = Instant::now();
        while served.stderr().matches("fails its check").count() < refusals {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{what}: the refusal is said: {}",
                served.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // Looked at again and again (every half second), refused once and said once. A fixed wait on purpose:
        // a repeat is the absence of an event, seen only by watching three of those looks go by.
        std::thread::sleep(Duration::from_millis(1500));
        let stderr = served.stderr();
        assert_eq!(
            stderr.matches("fails its check").count(),
            refusals,
            "{what}: said once: {stderr}"
        );
        let line = stderr.lines().last().unwrap();
        assert!(line.starts_with("warning: index "), "{what}: {line}");
        assert!(
            line.contains("keeps answering from the one before"),
            "{what}: {line}"
        );
        assert!(line.contains("live.idx is damaged"), "{what}: {line}");

        let after = ask();
        assert_eq!(after.status, 200, "{what}: {}", after.body);
        assert_eq!(after.body, before.body, "{what}: the old index answers");
        let health = served.get("/healthz");
        assert_eq!(health.status, 200, "{what}: {}", health.body);
        let refused = health.json()["refused"].as_str().unwrap().to_string();
        assert!(refused.contains("is damaged"), "{what}: {refused}");
    }

    // A good data file moved in is checked and taken up: another index (the first 500 clips).
    let other = dir.with_file_name("other.idx");
    let lines = fixture_clip_lines();
    run_with_stdin(
        &["index", "-q", "--index", other.to_str().unwrap()],
        lines[..500].join("\n").as_bytes(),
    )
    .assert_ok();
    move_in(&dir, &std::fs::read(other.join("data.mdb")).unwrap());
    let started = Instant::now();
    loop {
        let health = served.get("/healthz");
        assert_eq!(health.status, 200, "{}", health.body);
        let body = health.json();
        if body["clips"] == 500 {
            assert!(body.get("refused").is_none(), "{body}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the good one is taken up: {body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        served
            .stderr_with("answering from the new one (500 clips)")
            .contains("answering from the new one (500 clips)"),
        "{}",
        served.stderr()
    );
    assert_eq!(ask().status, 200);
    let (code, _) = served.stop(libc::SIGTERM);
    assert_eq!(code, 0);
}

/// `index` over a damaged index: it is ours (its data file names soundalike's tables), so it is rebuilt,
/// and the new index answers; what is not known for ours is still refused, with the command that goes ahead.
#[test]
fn index_rebuilds_over_a_damaged_index_and_still_refuses_what_is_not_ours() {
    let rebuild = |dir: &Path| {
        run_with_stdin(
            &["index", "-q", "--index", dir.to_str().unwrap()],
            fixture_clip_lines()[..40].join("\n").as_bytes(),
        )
    };
    let answers = |dir: &Path| {
        let run = recommend(dir, &["--id", &first_id(), "--json"]);
        run.assert_ok();
        run.lines()
    };
    let good = std::fs::read(shared_index().join("data.mdb")).unwrap();
    // A partial copy, and settings that disagree with the tables.
    for (what, bad) in [
        ("cut short", good[..good.len() / 2].to_vec()),
        ("settings that disagree", settings_disagree(&good)),
    ] {
        let (_temp, dir) = private_copy("music.idx");
        std::fs::write(dir.join("data.mdb"), &bad).unwrap();
        assert_ne!(
            run(&[
                "recommend",
                "--index",
                dir.to_str().unwrap(),
                "--id",
                &first_id()
            ])
            .code,
            0,
            "{what}: damaged"
        );
        let rebuilt = rebuild(&dir);
        rebuilt.assert_ok();
        let info = run(&[
            "info",
            "--check",
            "--json",
            "--index",
            dir.to_str().unwrap(),
        ]);
        info.assert_ok();
        assert_eq!(info.lines()[0]["settings"]["clips"], 40, "{what}");
        assert!(!answers(&dir)[0]["results"].as_array().unwrap().is_empty());
    }

    // So short that not even its table names are left (only LMDB's two meta pages): not known for ours. The
    // refusal says the command that goes ahead, and that command does.
    let (_temp, dir) = private_copy("stub.idx");
    std::fs::write(dir.join("data.mdb"), &good[..2 * 4096]).unwrap();
    let refused = rebuild(&dir);
    refused.assert_error(
        1,
        &[
            "stub.idx is not a soundalike index",
            "refusing to replace it",
            "rm -f ",
        ],
    );
    assert_eq!(
        std::fs::read(dir.join("data.mdb")).unwrap(),
        &good[..2 * 4096]
    );
    let command = refused.stderr.split('`').nth(1).unwrap().to_string();
    assert!(command.starts_with("rm -f "), "{command}");
    let status = std::process::Command::new("sh")
        .args(["-c", &command])
        .status()
        .unwrap();
    assert!(status.success());
    rebuild(&dir).assert_ok();
    assert!(!answers(&dir)[0]["results"].as_array().unwrap().is_empty());

    // The user's files beside a damaged index are still theirs: refused, naming them, nothing touched.
    let (_temp, dir) = private_copy("notes.idx");
    std::fs::write(dir.join("data.mdb"), &good[..good.len() / 2]).unwrap();
    std::fs::write(dir.join("NOTES.txt"), "mine\n").unwrap();
    rebuild(&dir).assert_error(1, &["holds more than a soundalike index: NOTES.txt"]);
    assert_eq!(std::fs::read(dir.join("NOTES.txt")).unwrap(), b"mine\n");
}
