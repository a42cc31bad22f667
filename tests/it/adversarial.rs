//! What an adversarial pass found beyond the bad-input table (issue 20): paths that lost a user's data, crashed
//! or hung. Each test is the finding's reproduction through the binary, and what must hold now.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::*;

/// `ingest shards | index`, where a shard has a damaged record: `ingest` writes the clips before it and fails;
/// `index` must not swap a partial index in for the whole one.
#[test]
fn a_failed_ingest_in_a_pipe_leaves_the_old_index() {
    let (_tmp, dir) = build(clips_jsonl(), &[]);
    let before = std::fs::read(dir.join("data.mdb")).unwrap();
    let shards = tempfile::tempdir().unwrap();
    let good = fixture_data().join("bal_train/a2.tfrecord");
    std::fs::copy(&good, shards.path().join("a.tfrecord")).unwrap();
    let mut damaged = std::fs::read(fixture_data().join("bal_train/a9.tfrecord")).unwrap();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0xff;
    std::fs::write(shards.path().join("b.tfrecord"), &damaged).unwrap();

    let mut ingest = soundalike()
        .args(["ingest", "-q"])
        .arg(shards.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let index = soundalike()
        .args(["index", "-q", "--index"])
        .arg(&dir)
        .stdin(ingest.stdout.take().unwrap())
        .output()
        .unwrap();
    assert_eq!(ingest.wait().unwrap().code(), Some(1), "ingest failed");
    let index = finish(index);
    index.assert_error(1, &["<stdin>", "incomplete", "b.tfrecord"]);
    assert_eq!(
        std::fs::read(dir.join("data.mdb")).unwrap(),
        before,
        "the old index stays"
    );

    // The same stream saved to a file is refused later as well.
    let saved = run(&[Path::new("ingest"), Path::new("-q"), shards.path()]);
    assert_eq!(saved.code, 1);
    let file = shards.path().join("clips.jsonl");
    std::fs::write(&file, &saved.stdout).unwrap();
    let index = run(&[
        Path::new("index"),
        Path::new("-q"),
        Path::new("--index"),
        &dir,
        &file,
    ]);
    index.assert_error(1, &["clips.jsonl", "incomplete"]);
    assert_eq!(std::fs::read(dir.join("data.mdb")).unwrap(), before);
}

#[test]
fn a_command_never_writes_over_a_file_it_reads() {
    let (_tmp, dir) = build(clips_jsonl(), &[]);
    // evaluate --queries F --save-queries F: the held-out clips would become one id per line.
    let tmp = tempfile::tempdir().unwrap();
    let held = tmp.path().join("held.jsonl");
    let eval_clip = run(&[
        Path::new("ingest"),
        Path::new("-q"),
        &fixture_data().join("eval/40.tfrecord"),
    ]);
    eval_clip.assert_ok();
    std::fs::write(&held, &eval_clip.stdout).unwrap();
    let before = std::fs::read(&held).unwrap();
    let run_eval = run(&[
        Path::new("evaluate"),
        Path::new("--index"),
        &dir,
        Path::new("--queries"),
        &held,
        Path::new("--save-queries"),
        &held,
    ]);
    run_eval.assert_error(2, &["refusing to write", "held.jsonl"]);
    assert_eq!(std::fs::read(&held).unwrap(), before);

    // embed -o over its own weights or PCA file.
    let pca = tmp.path().join("p.npz");
    std::fs::copy(fixtures().join("vggish-golden/pca_params.npz"), &pca).unwrap();
    let pca_before = std::fs::read(&pca).unwrap();
    let wav = fixtures().join("audio/source.wav");
    let embed = run(&[
        Path::new("embed"),
        &wav,
        Path::new("--weights"),
        &pca,
        Path::new("--pca"),
        &pca,
        Path::new("-o"),
        &pca,
    ]);
    embed.assert_error(2, &["refusing to write", "p.npz"]);
    assert_eq!(std::fs::read(&pca).unwrap(), pca_before);
}

/// `index --append` into an index with a damaged page: an error naming the index, never a panic (101) or a
/// crash (139), and the lock file gone.
#[test]
fn an_append_into_a_damaged_index_is_refused_whole() {
    let (tmp, dir) = build(clips_jsonl(), &[]);
    let data = dir.join("data.mdb");
    let pristine = std::fs::read(&data).unwrap();
    let pages = pristine.len() / 4096;
    let more = &fixture_clip_lines()[..20].join("\n");
    let mut refused = 0;
    // Every seventh page, overwritten with 0xff as the adversarial pass did.
    for page in (2..pages).step_by(7) {
        let mut damaged = pristine.clone();
        damaged[page * 4096..(page + 1) * 4096].fill(0xff);
        std::fs::write(&data, &damaged).unwrap();
        let append = run_with_stdin(
            &["index", "-q", "--append", "--index", dir.to_str().unwrap()],
            more.as_bytes(),
        );
        assert!(
            append.code == 0 || append.code == 1,
            "page {page}: exit {} ({})",
            append.code,
            append.stderr
        );
        if append.code == 1 {
            refused += 1;
            assert!(
                append.stderr.starts_with("error: ") && append.stderr.lines().count() == 1,
                "page {page}: {}",
                append.stderr
            );
            assert_eq!(
                std::fs::read(&data).unwrap(),
                damaged,
                "page {page}: unchanged"
            );
        }
        let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "page {page}: left {leftovers:?}");
    }
    assert!(refused > 0, "some damage is seen");
}

/// A line of clips with no end (`index z.idx /dev/zero`) is refused in bounded memory.
#[test]
fn an_endless_line_is_refused_in_bounded_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("z.idx");
    let endless = run_with_memory_limit(
        &["index", "-q", "--index", dir.to_str().unwrap(), "/dev/zero"],
        None,
        2 << 30,
    );
    endless.assert_error(1, &["/dev/zero: line 1", "longer than 16 MiB"]);
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "nothing left behind: {left:?}");
}

/// A closed or full stderr is ignored: the run keeps its own exit code (it panicked with 101).
#[test]
fn a_full_stderr_does_not_change_the_exit_code() {
    let (_tmp, dir) = build(clips_jsonl(), &[]);
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let status = soundalike()
        .args(["recommend", "--index"])
        .arg(&dir)
        .args(["--id", "nope"])
        .stdout(Stdio::null())
        .stderr(full)
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(1));
}

/// Control characters in a batch line reach the terminal escaped, not as escapes that retitle or clear it.
#[test]
fn terminal_escapes_from_input_are_shown_escaped() {
    let (_tmp, dir) = build(clips_jsonl(), &[]);
    let run = run_with_stdin(
        &[
            "recommend",
            "--index",
            dir.to_str().unwrap(),
            "--batch",
            "-",
        ],
        b"x\x1b]0;pwned\x07\x1b[2J\n",
    );
    assert_eq!(run.code, 1);
    assert!(!run.stderr.contains('\x1b'), "{:?}", run.stderr);
    assert!(run.stderr.contains("\\u{1b}"), "{:?}", run.stderr);
}

/// A MAX service that accepts and never answers: a timeout that names the service, not a hang.
#[test]
fn a_silent_embedding_service_times_out() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        // Accept and hold the connection without a word until the client has given up.
        let held: Vec<_> = listener.incoming().take(1).collect();
        let _ = finished.recv();
        drop(held);
    });
    let started = std::time::Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_soundalike"))
        .args([
            "embed",
            "-q",
            "--service",
            &format!("http://127.0.0.1:{port}"),
        ])
        .arg(fixtures().join("audio/source.wav"))
        .env("SOUNDALIKE_SERVICE_TIMEOUT", "2")
        .output()
        .unwrap();
    let run = finish(output);
    drop(done);
    run.assert_error(1, &["127.0.0.1", "did not answer within 2 s"]);
    assert!(started.elapsed().as_secs() < 5, "{:?}", started.elapsed());
    holder.join().unwrap();
}

/// `ingest` started on a FIFO in a fresh folder (kept alive by the returned guard), its output piped.
fn ingest_from_a_fifo() -> (tempfile::TempDir, std::path::PathBuf, std::process::Child) {
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("records");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let child = soundalike()
        .args(["ingest", "-q"])
        .arg(&fifo)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    (tmp, fifo, child)
}

#[test]
fn an_interrupted_ingest_marks_its_stream_incomplete() {
    use std::os::unix::process::ExitStatusExt;
    // A stream that never ends (a FIFO kept open) keeps ingest running until the signal.
    let (_folder, fifo, child) = ingest_from_a_fifo();
    let mut writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    writer
        .write_all(&std::fs::read(fixture_data().join("bal_train/a2.tfrecord")).unwrap())
        .unwrap();
    // Signalled once its handler is in place: before, SIGTERM ends it by the default action, with no marker.
    wait_until("ingest handles SIGTERM", || {
        wait::catches_signal(child.id(), libc::SIGTERM)
    });
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let output = child.wait_with_output().unwrap();
    drop(writer);
    assert_eq!(
        output.status.code(),
        Some(143),
        "{:?}",
        output.status.signal()
    );
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.trim_end()
            .ends_with("{\"soundalike_incomplete\":\"interrupted by signal 15\"}"),
        "{text}"
    );
}

/// Audio bombs: a header claiming a rate of 1 Hz, or hours of audio, is refused before samples are held.
#[test]
fn audio_bombs_are_refused_before_anything_is_held() {
    let tmp = tempfile::tempdir().unwrap();
    // 100,000 samples at 1 Hz: 27.8 hours once resampled to 16 kHz.
    let one_hertz = tmp.path().join("bomb.wav");
    std::fs::write(&one_hertz, wav_bytes(&vec![1000i16; 100_000], 1)).unwrap();
    // A header claiming 6 hours at 48 kHz over a few seconds of data.
    let mut long = wav_bytes(&vec![1000i16; 48_000 * 3], 48_000);
    let claimed: u32 = 48_000 * 2 * 3600 * 6;
    long[40..44].copy_from_slice(&claimed.to_le_bytes());
    long[4..8].copy_from_slice(&(claimed + 36).to_le_bytes());
    let long_path = tmp.path().join("long.wav");
    std::fs::write(&long_path, &long).unwrap();
    for (path, expected) in [
        (&one_hertz, "a sample rate of 1 Hz"),
        (&long_path, "longer than the 1200 s allowed"),
    ] {
        let run = run_with_memory_limit(
            &[
                "embed",
                "--service",
                "http://127.0.0.1:9",
                path.to_str().unwrap(),
            ],
            None,
            1 << 30,
        );
        run.assert_error(1, &[path.file_name().unwrap().to_str().unwrap(), expected]);
    }
    // --max-seconds takes more, or less.
    let short = run(&[
        Path::new("embed"),
        Path::new("--service"),
        Path::new("http://127.0.0.1:9"),
        Path::new("--max-seconds"),
        Path::new("1"),
        &fixtures().join("audio/source.wav"),
    ]);
    short.assert_error(1, &["source.wav", "longer than the 1 s allowed"]);
}

#[test]
fn index_paths_that_are_not_an_index_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    // A FIFO named data.mdb: named, never opened (opening it would wait for a writer forever).
    let dir = tmp.path().join("f.idx");
    std::fs::create_dir(&dir).unwrap();
    assert!(
        Command::new("mkfifo")
            .arg(dir.join("data.mdb"))
            .status()
            .unwrap()
            .success()
    );
    let info = run(&[Path::new("info"), Path::new("--index"), &dir]);
    info.assert_error(1, &["f.idx", "its data.mdb is not a regular file"]);
    let append = run_with_stdin(
        &["index", "-q", "--append", "--index", dir.to_str().unwrap()],
        clips_jsonl(),
    );
    append.assert_error(1, &["its data.mdb is not a regular file"]);
    let rebuild = run_with_stdin(
        &["index", "-q", "--index", dir.to_str().unwrap()],
        clips_jsonl(),
    );
    rebuild.assert_error(1, &["data.mdb (a FIFO)"]);
    assert!(!tmp.path().join(".f.idx.lock").exists(), "the lock is gone");

    // `.` and `..` would swap the folder a shell is in: refused. `e4/.` is `e4`.
    let dot = Command::new(env!("CARGO_BIN_EXE_soundalike"))
        .args(["index", "-q", "--index", "."])
        .current_dir(tmp.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    finish(dot).assert_error(2, &["not . or .."]);
    let e4 = tmp.path().join("e4");
    std::fs::create_dir(&e4).unwrap();
    let inside = format!("{}/.", e4.display());
    run_with_stdin(&["index", "-q", "--index", &inside], clips_jsonl()).assert_ok();
    assert!(e4.join("data.mdb").is_file());
}

#[test]
fn impossible_build_settings_are_refused_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t.idx");
    let trees = run_with_stdin(
        &[
            "index",
            "-q",
            "--index",
            dir.to_str().unwrap(),
            "--trees",
            "100000",
        ],
        clips_jsonl(),
    );
    assert_eq!(trees.code, 2, "{}", trees.stderr);
    assert!(
        trees.stderr.contains("100000 is not in 1..=1000"),
        "{}",
        trees.stderr
    );
    // A projection that overflows, and one of zeros: refused at build time, not answered as NaN.
    for (name, value) in [("overflow", 1e38), ("zeros", 0.0)] {
        let matrix = vec![vec![value; 128]; 4];
        let file = tmp.path().join(format!("{name}.json"));
        std::fs::write(&file, serde_json::json!({ "matrix": matrix }).to_string()).unwrap();
        let built = run_with_stdin(
            &[
                "index",
                "-q",
                "--index",
                dir.to_str().unwrap(),
                "--projection",
                file.to_str().unwrap(),
            ],
            clips_jsonl(),
        );
        built.assert_error(1, &["the projection makes its vector"]);
        assert!(!dir.exists(), "{name}: nothing built");
    }
}

#[test]
fn help_that_cannot_be_written_is_an_error() {
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let status = soundalike()
        .arg("--help")
        .stdout(full)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(1));
}

#[test]
fn clip_files_with_a_bom_or_bad_utf8_are_read_or_named_by_line() {
    let tmp = tempfile::tempdir().unwrap();
    let lines = fixture_clip_lines();
    let bom = tmp.path().join("bom.jsonl");
    std::fs::write(&bom, format!("\u{feff}{}\n{}\n", lines[0], lines[1])).unwrap();
    let dir = tmp.path().join("b.idx");
    run(&[
        Path::new("index"),
        Path::new("-q"),
        Path::new("--index"),
        &dir,
        &bom,
    ])
    .assert_ok();
    let bad = tmp.path().join("bad.jsonl");
    let mut bytes = format!("{}\n{}\n", lines[0], lines[1]).into_bytes();
    bytes.extend_from_slice(b"{\"video_id\": \"\xff\xfe\"}\n");
    std::fs::write(&bad, bytes).unwrap();
    let run = run(&[
        Path::new("index"),
        Path::new("-q"),
        Path::new("--index"),
        &dir,
        &bad,
    ]);
    run.assert_error(1, &["bad.jsonl: line 3", "not UTF-8"]);
}

#[test]
fn a_sighup_cleans_up_like_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("h.idx");
    let mut child = soundalike()
        .args(["index", "-q", "--index"])
        .arg(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(&clips_jsonl()[..20_000]).unwrap();
    // Once the build's hidden directory exists, hang up.
    let started = std::time::Instant::now();
    while !std::fs::read_dir(tmp.path()).unwrap().any(|e| {
        e.unwrap()
            .file_name()
            .to_string_lossy()
            .contains(".building-")
    }) {
        assert!(started.elapsed().as_secs() < 20, "the build started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    unsafe {
        libc::kill(child.id() as i32, libc::SIGHUP);
    }
    assert_eq!(child.wait().unwrap().code(), Some(129));
    drop(input);
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

/// A path that is not a regular file (`/dev/zero`, a FIFO such as `<(zcat ...)`) is read as a stream, as stdin
/// is, not whole: `/dev/zero` fails at its first record instead of filling memory.
#[test]
fn ingest_reads_a_device_or_fifo_as_a_stream() {
    let zero = run_with_memory_limit(&["ingest", "/dev/zero"], None, 1 << 30);
    zero.assert_error(
        1,
        &["/dev/zero: record at byte 0", "length checksum mismatch"],
    );
    let (_folder, fifo, child) = ingest_from_a_fifo();
    let record = std::fs::read(fixture_data().join("eval/xt.tfrecord")).unwrap();
    std::fs::write(&fifo, &record).unwrap();
    let run = finish(child.wait_with_output().unwrap());
    run.assert_ok();
    assert!(run.stdout_text().contains("xtGmrLOsjHk"));
}
