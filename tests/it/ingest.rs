//! `soundalike ingest` through the built binary, on real AudioSet files.

use std::collections::HashMap;
use std::path::Path;

use crate::common::{self, *};
use serde_json::Value;

/// Music labels by the ontology rule, as the shared README derives them.
fn ontology_music() -> Vec<i64> {
    include_str!("../../src/data/music_label_indices.txt")
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect()
}

fn is_music(record: &Value, music: &[i64]) -> bool {
    record["labels"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| music.contains(&l.as_i64().unwrap()))
}

/// Checks `ingest --music all` on `dir` against TensorFlow's decode of every record in it: all clips of 10
/// frames are written, each equal to the reference, in file then record order.
fn check_all_records(dir: &Path, reference: &[Value]) {
    let run = run(&[
        Path::new("ingest"),
        Path::new("--music"),
        Path::new("all"),
        dir,
    ]);
    run.assert_ok();
    let clips = run.lines();
    let expected: Vec<&Value> = reference
        .iter()
        .filter(|r| r["frames"].as_u64() >= Some(10))
        .collect();
    assert_eq!(clips.len(), expected.len());
    for (clip, expected) in clips.iter().zip(expected) {
        assert_matches_reference(clip, expected);
    }
    let short = reference.len() - clips.len();
    assert!(
        run.stderr.contains(&format!("{} records", reference.len())),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&format!("{short} too short")),
        "{}",
        run.stderr
    );
}

#[test]
fn fixtures_agree_with_tensorflow() {
    let reference = reference(&fixtures().join("reference.tf.jsonl"));
    assert_eq!(reference.len(), 1948);
    check_all_records(&fixture_data(), &reference);
}

#[test]
fn fixtures_default_keeps_music_clips() {
    let run = run(&[Path::new("ingest"), &fixture_data()]);
    run.assert_ok();
    let clips = run.lines();
    let music = ontology_music();
    let reference = reference(&fixtures().join("reference.tf.jsonl"));
    let expected: Vec<&Value> = reference
        .iter()
        .filter(|r| is_music(r, &music) && r["frames"].as_u64() >= Some(10))
        .collect();
    assert_eq!(clips.len(), 779);
    for (clip, expected) in clips.iter().zip(expected) {
        assert_matches_reference(clip, expected);
    }
    let query = clips
        .iter()
        .find(|c| c["video_id"] == "xtGmrLOsjHk")
        .expect("the notebook's query clip");
    assert_eq!(query["start_time"], 30.0);
    assert!(
        run.stderr.contains("kept 779 clips") && run.stderr.contains("6 too short"),
        "{}",
        run.stderr
    );
}

#[test]
fn bal_train_agrees_with_tensorflow() {
    let Some(shared) = shared_audioset() else {
        return;
    };
    let bal_train = shared.join("real/audioset_v1_embeddings/bal_train");
    let reference = reference(&shared.join("reference/bal_train.tf.jsonl"));
    assert_eq!(reference.len(), 22_160);
    check_all_records(&bal_train, &reference);

    // The default rule: Music and its ontology subtree.
    let run = run(&[Path::new("ingest"), &bal_train]);
    run.assert_ok();
    let clips = run.lines();
    assert_eq!(clips.len(), 8_775);
    let by_id: HashMap<&str, &Value> = reference
        .iter()
        .map(|r| (r["video_id"].as_str().unwrap(), r))
        .collect();
    for clip in &clips {
        assert_matches_reference(clip, by_id[clip["video_id"].as_str().unwrap()]);
    }
    assert!(
        run.stderr.contains("kept 8775 clips") && run.stderr.contains("61 too short"),
        "{}",
        run.stderr
    );

    // The notebook's rule.
    let names = common::run(&[
        Path::new("ingest"),
        Path::new("--music"),
        Path::new("names"),
        &bal_train,
    ]);
    names.assert_ok();
    assert_eq!(names.stdout_text().lines().count(), 6_591);
}

#[test]
fn bal_train_tarball_gives_identical_bytes() {
    let Some(shared) = shared_audioset() else {
        return;
    };
    let bal_train = shared.join("real/audioset_v1_embeddings/bal_train");
    let temp = tempfile::tempdir().unwrap();
    let tarball = temp.path().join("features.tar.gz");
    write_tar(
        &bal_train,
        "audioset_v1_embeddings/bal_train",
        &tarball,
        true,
    );
    let from_dir = run(&[Path::new("ingest"), Path::new("-q"), &bal_train]);
    let from_tar = run(&[Path::new("ingest"), Path::new("-q"), &tarball]);
    from_dir.assert_ok();
    from_tar.assert_ok();
    assert_eq!(from_tar.stdout.len(), from_dir.stdout.len());
    assert!(
        from_tar.stdout == from_dir.stdout,
        "tarball output differs from directory output"
    );
}

#[test]
fn tar_gz_tar_and_stdin_match_the_directory() {
    let temp = tempfile::tempdir().unwrap();
    let data = fixture_data();
    let from_dir = run(&[Path::new("ingest"), &data]);
    from_dir.assert_ok();
    assert!(!from_dir.stdout.is_empty());

    for (file, gzip) in [("features.tar.gz", true), ("features.tar", false)] {
        let tarball = temp.path().join(file);
        write_tar(&data, "audioset_v1_embeddings", &tarball, gzip);
        let from_tar = run(&[Path::new("ingest"), &tarball]);
        from_tar.assert_ok();
        assert!(
            from_tar.stdout == from_dir.stdout,
            "{file} output differs from the directory's"
        );
        assert!(
            from_tar.stderr.contains(&format!("{} files", 383 + 4)),
            "{}",
            from_tar.stderr
        );

        // The same archive piped in.
        let piped = run_with_stdin(&["ingest", "-"], &std::fs::read(&tarball).unwrap());
        piped.assert_ok();
        assert!(piped.stdout == from_dir.stdout, "{file} on stdin differs");
    }

    // A plain TFRecord stream on stdin equals the same file named on the command line.
    let xt = data.join("eval/xt.tfrecord");
    let by_path = run(&[Path::new("ingest"), &xt]);
    let piped = run_with_stdin(&["ingest", "-"], &std::fs::read(&xt).unwrap());
    piped.assert_ok();
    assert_eq!(piped.stdout, by_path.stdout);
    assert!(by_path.stdout_text().contains("\"xtGmrLOsjHk\""));
}

#[test]
fn json_format_is_one_array_of_the_same_clips() {
    let data = fixture_data();
    let lines = run(&[Path::new("ingest"), &data]).lines();
    let array = run(&[
        Path::new("ingest"),
        Path::new("--format"),
        Path::new("json"),
        &data,
    ]);
    array.assert_ok();
    let parsed: Vec<Value> = serde_json::from_slice(&array.stdout).expect("one JSON array");
    assert_eq!(parsed, lines);

    // No clip at all is still a valid array.
    let empty = run(&[
        "ingest",
        "--format",
        "json",
        "--music",
        "Cowbell",
        "fixtures/audioset_v1_embeddings/eval",
    ]);
    empty.assert_ok();
    let parsed: Vec<Value> = serde_json::from_slice(&empty.stdout).expect("an empty JSON array");
    assert!(parsed.is_empty());
}

#[test]
fn frames_and_label_lists_select_clips() {
    let data = fixture_data();
    let run5 = run(&[
        Path::new("ingest"),
        Path::new("--frames"),
        Path::new("5"),
        &data,
    ]);
    run5.assert_ok();
    let clips = run5.lines();
    assert!(
        clips
            .iter()
            .all(|c| c["embedding"].as_array().unwrap().len() == 5)
    );
    // Of the six music clips shorter than 10 frames, four have at least 5 (counted from the reference).
    assert_eq!(clips.len(), 783);

    let jazz = run(&[
        Path::new("ingest"),
        Path::new("--music"),
        Path::new("Jazz, 251"),
        &data,
    ]);
    jazz.assert_ok();
    for clip in jazz.lines() {
        let labels: Vec<i64> = clip["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_i64().unwrap())
            .collect();
        assert!(labels.contains(&235) || labels.contains(&251), "{labels:?}");
    }
    assert!(!jazz.stdout.is_empty());
}

#[test]
fn usage_errors_exit_2() {
    let data = fixture_data();
    let unknown = run(&[
        Path::new("ingest"),
        Path::new("--music"),
        Path::new("Jaz"),
        &data,
    ]);
    assert_eq!(unknown.code, 2);
    assert!(
        unknown.stderr.contains("unknown label 'Jaz'") && unknown.stderr.contains("'Jazz'"),
        "{}",
        unknown.stderr
    );
    // The suggestions rank by likeness of names: Jazz first, not names as few edits away (Car, Cat).
    assert!(
        unknown.stderr.contains("did you mean 'Jazz', ")
            && !unknown.stderr.contains("'Car'")
            && !unknown.stderr.contains("'Cat'"),
        "{}",
        unknown.stderr
    );
    assert_eq!(
        run(&[
            Path::new("ingest"),
            Path::new("--frames"),
            Path::new("0"),
            &data
        ])
        .code,
        2
    );
    assert_eq!(run(&["ingest"]).code, 2);
    assert_eq!(run(&["ingest", "--format", "xml", "x"]).code, 2);
}

/// Copies one fixture file into a temporary directory, damaged by `damage`.
#[test]
fn directory_walk_follows_links_and_skips_loops() {
    use std::os::unix::fs::symlink;
    let temp = tempfile::tempdir().unwrap();
    let shards = temp.path().join("shards");
    std::fs::create_dir(&shards).unwrap();
    // A folder of shards reached through a link (followed), a link back to the folder itself (a loop: skipped,
    // where following it 40 levels deep once failed with "Too many levels of symbolic links"), and one from a
    // subfolder back up to it.
    symlink(fixture_data().join("eval"), shards.join("eval")).unwrap();
    symlink(".", shards.join("self")).unwrap();
    std::fs::create_dir(shards.join("deeper")).unwrap();
    symlink("..", shards.join("deeper/up")).unwrap();

    let walked = run(&[Path::new("ingest"), &shards]);
    walked.assert_ok();
    let direct = run(&[Path::new("ingest"), &fixture_data().join("eval")]);
    direct.assert_ok();
    assert!(!direct.stdout.is_empty());
    assert_eq!(walked.stdout, direct.stdout);
    assert!(
        walked.stderr.contains(" 4 files"),
        "each shard read once: {}",
        walked.stderr
    );
}

fn damaged_copy(damage: impl FnOnce(&mut Vec<u8>)) -> (tempfile::TempDir, std::path::PathBuf) {
    let temp = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(fixture_data().join("eval/40.tfrecord")).unwrap();
    damage(&mut bytes);
    let path = temp.path().join("40.tfrecord");
    std::fs::write(&path, bytes).unwrap();
    (temp, path)
}

/// Byte offsets of the records of a TFRecord file.
fn record_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut offsets = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        offsets.push(pos);
        let len = u64::from_le_bytes(bytes[pos..pos + 8].try_into().unwrap()) as usize;
        pos += 12 + len + 4;
    }
    offsets
}

#[test]
fn corrupt_records_stop_the_run_or_are_skipped() {
    let original = std::fs::read(fixture_data().join("eval/40.tfrecord")).unwrap();
    let offsets = record_offsets(&original);
    assert_eq!(offsets.len(), 10);
    // Every clip of the file, with or without --skip-corrupt.
    let ingest_all = |path: &Path, skip: bool| {
        let mut args = vec![
            Path::new("ingest"),
            Path::new("--music"),
            Path::new("all"),
            path,
        ];
        if skip {
            args.push(Path::new("--skip-corrupt"));
        }
        run(&args)
    };
    let all_ids: Vec<Value> = ingest_all(&fixture_data().join("eval/40.tfrecord"), false)
        .lines()
        .iter()
        .map(|c| c["video_id"].clone())
        .collect();
    assert_eq!(all_ids.len(), 10);

    // A flipped byte inside the fourth record's data.
    let (_temp, path) = damaged_copy(|b| b[offsets[3] + 12 + 50] ^= 0x40);
    let name = path.display().to_string();
    ingest_all(&path, false).assert_error(
        1,
        &[&name, &format!("record at byte {}", offsets[3]), "checksum"],
    );
    let skipped = ingest_all(&path, true);
    skipped.assert_ok();
    let ids: Vec<Value> = skipped
        .lines()
        .iter()
        .map(|c| c["video_id"].clone())
        .collect();
    let mut expected = all_ids.clone();
    expected.remove(3);
    assert_eq!(ids, expected, "every good clip is kept");
    assert!(
        skipped.stderr.contains("skipped 1 corrupt"),
        "{}",
        skipped.stderr
    );
    assert!(
        skipped
            .stderr
            .contains(&format!("warning: {name}: record at byte {}", offsets[3]))
    );

    // A truncated tail: the last record loses its last 100 bytes.
    let (_temp, path) = damaged_copy(|b| b.truncate(b.len() - 100));
    let name = path.display().to_string();
    ingest_all(&path, false).assert_error(
        1,
        &[
            &name,
            &format!("record at byte {}", offsets[9]),
            "truncated",
        ],
    );
    let skipped = ingest_all(&path, true);
    skipped.assert_ok();
    assert_eq!(skipped.lines().len(), 9);
    assert!(
        skipped.stderr.contains("skipped 1 corrupt"),
        "{}",
        skipped.stderr
    );

    // The same truncated stream on stdin is reported the same way.
    let piped = run_with_stdin(
        &["ingest", "--music", "all", "-"],
        &std::fs::read(&path).unwrap(),
    );
    piped.assert_error(
        1,
        &[
            "<stdin>",
            &format!("record at byte {}", offsets[9]),
            "truncated",
        ],
    );
}

#[test]
fn output_file_is_replaced_only_on_success() {
    let temp = tempfile::tempdir().unwrap();
    let out = temp.path().join("clips.jsonl");
    std::fs::write(&out, "precious\n").unwrap();
    let (_bad_dir, bad) = damaged_copy(|b| b.truncate(b.len() - 1));
    let failed = run(&[
        Path::new("ingest"),
        Path::new("-o"),
        &out,
        &fixture_data().join("eval/xt.tfrecord"),
        &bad,
    ]);
    assert_eq!(failed.code, 1);
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "precious\n",
        "the old file is untouched"
    );
    let leftovers: Vec<_> = std::fs::read_dir(temp.path()).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "no temporary file is left behind");

    let ok = run(&[
        Path::new("ingest"),
        Path::new("-o"),
        &out,
        &fixture_data().join("eval/xt.tfrecord"),
    ]);
    ok.assert_ok();
    assert!(ok.stdout.is_empty());
    let written = std::fs::read_to_string(&out).unwrap();
    assert!(written.contains("xtGmrLOsjHk"));
    assert!(written.ends_with("]}\n"));
}

#[test]
fn missing_and_empty_inputs_are_clear_errors() {
    let temp = tempfile::tempdir().unwrap();
    let missing = temp.path().join("nope.tfrecord");
    run(&[Path::new("ingest"), &missing]).assert_error(1, &["cannot read", "nope.tfrecord"]);
    run(&[Path::new("ingest"), temp.path()]).assert_error(1, &["no .tfrecord files under"]);
}

/// A directory of many copies of the fixture files (more than the batches in flight), optionally with a corrupt
/// file first.
fn many_files(corrupt_first: bool) -> tempfile::TempDir {
    let temp = tempfile::tempdir().unwrap();
    let sources: Vec<_> = std::fs::read_dir(fixture_data().join("bal_train"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    for copy in 0..3 {
        for source in &sources {
            let name = format!("{copy}-{}", source.file_name().unwrap().to_string_lossy());
            std::fs::copy(source, temp.path().join(name)).unwrap();
        }
    }
    if corrupt_first {
        std::fs::write(
            temp.path().join("0-0-first.tfrecord"),
            b"not a tfrecord at all",
        )
        .unwrap();
    }
    temp
}

/// Runs ingest on `dir` with stdout read by `reader`, failing the test if it does not finish in 60 s.
fn ingest_with_deadline(
    dir: &Path,
    reader: impl FnOnce(std::process::ChildStdout),
) -> std::process::ExitStatus {
    let mut child = soundalike()
        .args([Path::new("ingest"), Path::new("-q"), dir])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    reader(child.stdout.take().unwrap());
    let started = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > std::time::Duration::from_secs(60) {
            child.kill().unwrap();
            panic!("ingest did not stop");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn early_stops_end_the_run_promptly() {
    // The reader closes the pipe after one line, as `head -n 1` does: a quiet, successful end.
    let dir = many_files(false);
    let status = ingest_with_deadline(dir.path(), |stdout| {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("{\"video_id\":"));
    });
    assert_eq!(status.code(), Some(0));

    // A corrupt first file of many: exit 1 without reading the rest.
    let dir = many_files(true);
    let status = ingest_with_deadline(dir.path(), drop);
    assert_eq!(status.code(), Some(1));
}
