//! Input that is not what it claims, and input made to hurt (issue 10, points 5 to 9), through the built
//! binary: ids LMDB cannot hold, labels and times that are not AudioSet's, several JSON arrays and trailing
//! garbage, lines of hundreds of megabytes, control characters aimed at the terminal, and the files' permissions.

use std::path::Path;

use crate::common::*;
use serde_json::Value;

/// The first `n` fixture clips as JSON values.
fn clip_values(n: usize) -> Vec<Value> {
    fixture_clip_lines()[..n]
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn lines(clips: &[Value]) -> String {
    clips.iter().map(|c| format!("{c}\n")).collect()
}

/// `index` of `input` (from stdin) into a fresh directory; the run and the index's directory.
fn index(input: &str) -> (Run, tempfile::TempDir, std::path::PathBuf) {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("idx");
    let run = run_with_stdin(
        &["index", "-q", "--index", dir.to_str().unwrap()],
        input.as_bytes(),
    );
    (run, temp, dir)
}

fn clip_count(dir: &Path) -> u64 {
    let info = run(&["info", "--json", "--index", dir.to_str().unwrap()]);
    info.assert_ok();
    let info: Value = serde_json::from_slice(&info.stdout).unwrap();
    info["settings"]["clips"].as_u64().unwrap()
}

#[test]
fn clips_that_no_index_should_hold_are_refused_naming_the_line() {
    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: [(&str, Edit, &str); 7] = [
        (
            "empty id",
            Box::new(|c| c["video_id"] = "".into()),
            "the video_id is empty",
        ),
        (
            "id over LMDB's key limit",
            Box::new(|c| c["video_id"] = "x".repeat(600).into()),
            "is 600 bytes long (at most 511)",
        ),
        (
            "label past the class list",
            Box::new(|c| c["labels"] = serde_json::json!([137, 527])),
            "label 527 is not an AudioSet class (0 to 526)",
        ),
        (
            "negative label",
            Box::new(|c| c["labels"] = serde_json::json!([-1])),
            "label -1 is not an AudioSet class",
        ),
        (
            "absurd start",
            Box::new(|c| c["start_time"] = 1e300.into()),
            "start_time 1e300 is not a time in seconds",
        ),
        (
            "negative end",
            Box::new(|c| c["end_time"] = (-5.0).into()),
            "end_time -5 is not a time in seconds",
        ),
        (
            "huge end",
            Box::new(|c| c["end_time"] = 1e12.into()),
            "end_time 1e12 is not a time",
        ),
    ];
    for (what, edit, message) in cases {
        let mut clips = clip_values(6);
        edit(&mut clips[4]);
        let (run, _temp, dir) = index(&lines(&clips));
        run.assert_error(1, &["<stdin>: line 5", message]);
        assert!(!dir.exists(), "{what}: no index is left");
    }
    // Inside an array, the clip is named by its place.
    let mut clips = clip_values(6);
    clips[2]["labels"] = serde_json::json!([999]);
    let (run, _temp, _dir) = index(&Value::Array(clips).to_string());
    run.assert_error(1, &["<stdin>: clip 3 of the array", "label 999"]);
}

#[test]
fn an_error_inside_a_json_array_names_the_clip_not_the_array() {
    let mut clips = clip_values(6);
    let id = clips[3]["video_id"].as_str().unwrap().to_string();
    clips[3]["embedding"].as_array_mut().unwrap().truncate(5);
    let (run, _temp, _dir) = index(&serde_json::to_string_pretty(&clips).unwrap());
    run.assert_error(
        1,
        &[&format!(
            "<stdin>: clip 4 of the array: clip {id}: the embedding has 5 rows; 10 are needed"
        )],
    );
    // Bad JSON inside an element names the element too.
    let text = Value::Array(clip_values(3)).to_string();
    let second = text.match_indices("\"labels\"").nth(1).unwrap().0;
    let broken = format!("{}oops{}", &text[..second], &text[second..]);
    let (run, _temp, _dir) = index(&broken);
    run.assert_error(1, &["<stdin>: clip 2 of the array: not a clip:"]);
}

#[test]
fn several_arrays_are_all_indexed_and_trailing_garbage_is_refused() {
    let clips = clip_values(20);
    let (a, b) = (
        Value::Array(clips[..12].to_vec()).to_string(),
        serde_json::to_string_pretty(&clips[12..]).unwrap(),
    );
    // `cat a.json b.json | soundalike index`
    let (run, _temp, dir) = index(&format!("{a}\n{b}\n"));
    run.assert_ok();
    assert_eq!(clip_count(&dir), 20);
    // An error in the second array says which.
    let mut bad = clips[12..].to_vec();
    bad[1]["labels"] = serde_json::json!([-3]);
    let (run, _temp, _dir) = index(&format!("{a}{}", Value::Array(bad)));
    run.assert_error(1, &["clip 2 of array 2", "label -3"]);
    // Anything else after an array is refused, naming its byte; nothing is indexed.
    let garbage = format!("{a}\n  oops");
    let (run, _temp, dir) = index(&garbage);
    run.assert_error(
        1,
        &[&format!(
            "<stdin>: byte {}: more after the array of clips",
            a.len() + 4
        )],
    );
    assert!(!dir.exists());
}

/// A small index of fixture clips, two of them with ids made to hurt a terminal.
fn index_with_hostile_ids() -> (tempfile::TempDir, std::path::PathBuf, [String; 2]) {
    let mut clips = clip_values(30);
    let hostile = [
        "evil\u{1b}[2J\u{1b}[31mred".to_string(),
        "two\nlines&t=0 #x".to_string(),
    ];
    clips[0]["video_id"] = hostile[0].clone().into();
    clips[1]["video_id"] = hostile[1].clone().into();
    let (run, temp, dir) = index(&lines(&clips));
    run.assert_ok();
    (temp, dir, hostile)
}

#[test]
fn the_table_shows_control_characters_as_escapes_and_urls_are_encoded() {
    let (_temp, dir, hostile) = index_with_hostile_ids();
    let dir = dir.to_str().unwrap();
    // Every other clip is a neighbour with -k 29, so both ids appear in some table.
    let table = run(&["recommend", "--index", dir, "--id", &hostile[0], "-k", "29"]);
    table.assert_ok();
    let text = table.stdout_text();
    assert!(
        !text.contains('\u{1b}'),
        "no raw escape reaches the terminal: {text}"
    );
    assert!(text.contains("neighbours of evil\\u{1b}[2J"), "{text}");
    assert!(text.contains("two\\nlines"), "{text}");
    assert_eq!(
        text.lines().count(),
        2 + 29,
        "one line per neighbour:\n{text}"
    );
    // JSON keeps the id as it is, and the URL encodes it.
    let json = run(&[
        "recommend",
        "--index",
        dir,
        "--id",
        &hostile[0],
        "-k",
        "29",
        "--json",
    ]);
    json.assert_ok();
    let answer = &json.lines()[0];
    let hit = answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["video_id"] == hostile[1].as_str())
        .expect("the other hostile clip is a neighbour");
    let url = hit["url"].as_str().unwrap();
    assert!(
        url.starts_with("https://www.youtube.com/watch?v=two%0Alines%26t%3D0%20%23x&t="),
        "{url}"
    );
}

#[test]
fn ids_no_index_can_hold_are_usage_errors_at_recommend() {
    let (run_, _temp, dir) = index(&lines(&clip_values(30)));
    run_.assert_ok();
    let dir = dir.to_str().unwrap();
    recommend(Path::new(dir), &["--id", ""]).assert_error(2, &["--id: the video_id is empty"]);
    let long = "y".repeat(5000);
    let run = recommend(Path::new(dir), &["--id", &long]);
    run.assert_error(
        2,
        &["--id: the video_id", "(5000 bytes)' is 5000 bytes long"],
    );
    assert!(
        run.stderr.len() < 400,
        "the id is not quoted whole: {}",
        run.stderr
    );
    // An unknown id is quoted to its first 100 characters.
    let long = "z".repeat(300);
    let run = recommend(Path::new(dir), &["--id", &long]);
    run.assert_error(1, &["no clip 'zzzz", "... (300 bytes)' in index"]);
}

#[test]
fn a_huge_batch_line_or_embedding_file_is_refused_in_bounded_memory() {
    let (run_, temp, dir) = index(&lines(&clip_values(30)));
    run_.assert_ok();
    let first = clip_values(1)[0]["video_id"].as_str().unwrap().to_string();
    // 100 MB on one line, between two good queries.
    let huge = format!("{first}\n{}\n{first}\n", "[".repeat(100 << 20));
    let batch = temp.path().join("huge.txt");
    std::fs::write(&batch, &huge).unwrap();
    let run = run_with_memory_limit(
        &[
            "recommend",
            "--index",
            dir.to_str().unwrap(),
            "--batch",
            batch.to_str().unwrap(),
            "--json",
        ],
        None,
        2 << 30,
    );
    run.assert_error(1, &["huge.txt: 1 of 3 queries failed"]);
    let answers = run.lines();
    assert_eq!(answers.len(), 3, "lines 1 and 3 are answered around line 2");
    assert_eq!(answers[1]["line"], 2);
    assert!(
        answers[1]["error"]
            .as_str()
            .unwrap()
            .contains("longer than 4 MiB")
    );
    assert_eq!(answers[2]["results"].as_array().unwrap().len(), 10);
    let embedding = temp.path().join("huge.json");
    std::fs::write(&embedding, "[".repeat(100 << 20)).unwrap();
    let run = run_with_memory_limit(
        &[
            "recommend",
            "--index",
            dir.to_str().unwrap(),
            "--embedding",
            embedding.to_str().unwrap(),
        ],
        None,
        2 << 30,
    );
    run.assert_error(1, &["huge.json", "longer than 4 MiB"]);
}

#[test]
fn an_index_and_an_output_file_follow_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let temp = tempfile::tempdir().unwrap();
    let input = temp.path().join("clips.jsonl");
    std::fs::write(&input, lines(&clip_values(30))).unwrap();
    for (umask, dir_mode, file_mode) in [("022", 0o755, 0o644), ("077", 0o700, 0o600)] {
        let dir = temp.path().join(format!("idx-{umask}"));
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "umask {umask} && exec \"$0\" index -q --index \"$1\" \"$2\""
            ))
            .arg(env!("CARGO_BIN_EXE_soundalike"))
            .arg(&dir)
            .arg(&input)
            .status()
            .unwrap();
        assert!(status.success());
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), dir_mode, "umask {umask}: the directory");
        for file in ["data.mdb", "lock.mdb"] {
            assert_eq!(mode(&dir.join(file)), file_mode, "umask {umask}: {file}");
        }
        // ingest -o makes its file the same way.
        let out = temp.path().join(format!("clips-{umask}.jsonl"));
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "umask {umask} && exec \"$0\" ingest -q \"$1\" -o \"$2\""
            ))
            .arg(env!("CARGO_BIN_EXE_soundalike"))
            .arg(fixture_data().join("eval"))
            .arg(&out)
            .status()
            .unwrap();
        assert!(status.success());
        assert_eq!(mode(&out), file_mode, "umask {umask}: ingest -o");
    }
}

#[test]
fn an_index_shared_read_only_answers() {
    use std::os::unix::fs::PermissionsExt;
    let (run_, temp, dir) = index(&lines(&clip_values(30)));
    run_.assert_ok();
    if permissions_are_bypassed(temp.path()) {
        skip(
            "non-root",
            "as root permission checks are bypassed, so nothing is read-only",
        );
        return;
    }
    let id = clip_values(1)[0]["video_id"].as_str().unwrap().to_string();
    let before = recommend(&dir, &["--id", &id, "--json"]);
    before.assert_ok();
    let set = |p: &Path, mode: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    for file in ["data.mdb", "lock.mdb"] {
        set(&dir.join(file), 0o444);
    }
    set(&dir, 0o555);
    let after = recommend(&dir, &["--id", &id, "--json"]);
    after.assert_ok();
    assert_eq!(after.stdout, before.stdout);
    run(&["info", "--index", dir.to_str().unwrap()]).assert_ok();
    set(&dir, 0o755);
}

#[test]
fn a_batch_answers_every_line_in_order_and_marks_the_bad_ones() {
    let (run_, _temp, dir) = index(&lines(&clip_values(30)));
    run_.assert_ok();
    let ids: Vec<String> = clip_values(3)
        .iter()
        .map(|c| c["video_id"].as_str().unwrap().to_string())
        .collect();
    let input = format!("{}\nnope\n\n{}\n", ids[0], ids[2]);
    let json = run_with_stdin(
        &[
            "recommend",
            "--index",
            dir.to_str().unwrap(),
            "--batch",
            "-",
            "--json",
        ],
        input.as_bytes(),
    );
    json.assert_error(1, &["<stdin>: 2 of 4 queries failed"]);
    let answers = json.lines();
    assert_eq!(answers.len(), 4, "output line N answers input line N");
    assert_eq!(answers[0]["query"], ids[0].as_str());
    assert_eq!(
        answers[1],
        serde_json::json!({"query": "nope", "line": 2, "error": format!("no clip 'nope' in index {}", dir.display())})
    );
    assert_eq!(answers[2]["line"], 3);
    assert_eq!(answers[2]["error"], "an empty line");
    assert_eq!(answers[3]["query"], ids[2].as_str());
    // A table says the same with a warning per bad line.
    let table = run_with_stdin(
        &[
            "recommend",
            "--index",
            dir.to_str().unwrap(),
            "--batch",
            "-",
        ],
        input.as_bytes(),
    );
    assert_eq!(table.code, 1);
    let stderr: Vec<&str> = table.stderr.lines().collect();
    assert_eq!(stderr.len(), 3, "{}", table.stderr);
    assert!(stderr[0].starts_with("warning: line 2: no clip 'nope'"));
    assert!(stderr[1].starts_with("warning: line 3: an empty line"));
    assert!(stderr[2].starts_with("error: <stdin>: 2 of 4 queries failed"));
    assert_eq!(table.stdout_text().matches("neighbours of").count(), 2);
}

/// Runs the binary with its stdout a pipe whose reading end is already closed, as `soundalike ... | head -0`.
fn into_closed_pipe(args: &[&str]) -> Run {
    // Close-on-exec (std's pipe), so that no child another test spawns meanwhile inherits the reading end and
    // keeps it open; only this child gets the writing end, as its stdout.
    let (read, write) = std::io::pipe().unwrap();
    drop(read);
    let output = soundalike()
        .args(args)
        .stdout(std::process::Stdio::from(write))
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    finish(output)
}

#[test]
fn a_closed_pipe_ends_quietly_and_a_full_disk_is_one_error_line() {
    let (run_, temp, dir) = index(&lines(&clip_values(30)));
    run_.assert_ok();
    let dir = dir.to_str().unwrap();
    let batch = temp.path().join("ids.txt");
    let ids: String = clip_values(30)
        .iter()
        .map(|c| format!("{}\n", c["video_id"].as_str().unwrap()))
        .collect();
    std::fs::write(&batch, ids).unwrap();
    let batch = batch.to_str().unwrap();
    let commands: [&[&str]; 4] = [
        &["info", "--index", dir],
        &["info", "--index", dir, "--json"],
        &["recommend", "--index", dir, "--batch", batch, "--json"],
        &["recommend", "--index", dir, "--batch", batch],
    ];
    for args in commands {
        let closed = into_closed_pipe(args);
        assert_eq!(closed.code, 0, "{args:?}: {}", closed.stderr);
        assert!(closed.stderr.is_empty(), "{args:?}: {}", closed.stderr);
        if Path::new("/dev/full").exists() {
            let full = std::process::Command::new("sh")
                .arg("-c")
                .arg("exec \"$0\" \"$@\" > /dev/full")
                .arg(env!("CARGO_BIN_EXE_soundalike"))
                .args(args)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&full.stderr);
            assert_eq!(full.status.code(), Some(1), "{args:?}: {stderr}");
            assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
            assert!(
                stderr.starts_with("error: ") && stderr.contains("No space left"),
                "{args:?}: {stderr}"
            );
        }
    }
}

/// Runs `script` with `sh`, a 600 KiB file system mounted at `$MNT` (a directory in `temp`), in a private mount
/// namespace, `$BIN` being the binary; `None`, after reporting the skip, where this machine cannot make one:
/// `unshare` (Debian's util-linux) is missing or the kernel refuses an unprivileged user namespace.
fn on_small_disk(temp: &Path, script: &str, env: &[(&str, &Path)]) -> Option<Run> {
    let mnt = temp.join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mounted =
        format!("mount -t tmpfs -o size=600k soundalike-test \"$MNT\" || exit 77\n{script}");
    let output = std::process::Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "sh", "-c", &mounted])
        .env("MNT", &mnt)
        .env("BIN", env!("CARGO_BIN_EXE_soundalike"))
        .envs(env.iter().map(|&(k, v)| (k, v)))
        .output();
    match output {
        Ok(output)
            if output.status.code() != Some(77) && !output.stderr.starts_with(b"unshare:") =>
        {
            Some(finish(output))
        }
        Ok(output) => {
            skip(
                "unshare",
                format_args!(
                    "to mount a small file system, which this machine refuses: {}",
                    String::from_utf8_lossy(&output.stderr).trim()
                ),
            );
            None
        }
        Err(e) => {
            skip("unshare", format_args!("to mount a small file system: {e}"));
            None
        }
    }
}

#[test]
fn a_full_disk_says_so_and_leaves_the_index_as_it_was() {
    let temp = tempfile::tempdir().unwrap();
    let all = fixture_clip_lines();
    let base = temp.path().join("base.jsonl");
    let more = temp.path().join("more.jsonl");
    std::fs::write(&base, all[..30].join("\n")).unwrap();
    std::fs::write(&more, all[30..].join("\n")).unwrap();
    let out = temp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    // The 30 clips fit in 600 KiB; the other 749 do not, appended or rebuilt. Each run's stderr and exit code
    // are kept outside the file system, which vanishes with the namespace.
    let script = r#"
        "$BIN" index -q --index "$MNT/m.idx" "$BASE" || exit 78
        stat -c %s "$MNT/m.idx/data.mdb" > "$OUT/size-before"
        "$BIN" index -q --index "$MNT/m.idx" --append "$MORE" 2> "$OUT/append.err"; echo $? > "$OUT/append.code"
        stat -c %s "$MNT/m.idx/data.mdb" > "$OUT/size-after"
        "$BIN" index -q --index "$MNT/m.idx" "$BASE" "$MORE" 2> "$OUT/rebuild.err"; echo $? > "$OUT/rebuild.code"
        ls -A "$MNT" > "$OUT/left"
        "$BIN" info --json --index "$MNT/m.idx" > "$OUT/info.json"
    "#;
    let Some(run) = on_small_disk(
        temp.path(),
        script,
        &[("BASE", &base), ("MORE", &more), ("OUT", &out)],
    ) else {
        return;
    };
    run.assert_ok();
    let read = |name: &str| std::fs::read_to_string(out.join(name)).unwrap();
    for step in ["append", "rebuild"] {
        assert_eq!(
            read(&format!("{step}.code")).trim(),
            "1",
            "{step} exit code"
        );
        let error = Run {
            code: 1,
            stdout: Vec::new(),
            stderr: read(&format!("{step}.err")),
        };
        error.assert_error(1, &["m.idx", "no space left on device"]);
    }
    assert_eq!(
        read("size-before"),
        read("size-after"),
        "a failed append leaves data.mdb as large as it was"
    );
    assert_eq!(
        read("left").trim(),
        "m.idx",
        "a failed rebuild leaves nothing beside the index"
    );
    let info: Value = serde_json::from_str(&read("info.json")).unwrap();
    assert_eq!(
        info["settings"]["clips"], 30,
        "the index is whole and as it was"
    );
}
