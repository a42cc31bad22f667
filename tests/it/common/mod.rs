//! Helpers shared by the integration tests: they drive the built binary on real AudioSet files.

pub mod formula;
pub mod hostile_audio;
pub mod skips;
pub mod wait;

pub use skips::{permissions_are_bypassed, skip};
pub use wait::{PATIENCE, wait_until};

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

/// The bundled sample of real AudioSet data.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

pub fn fixture_data() -> PathBuf {
    fixtures().join("audioset_v1_embeddings")
}

/// The team's shared AudioSet folder (`../shared/audioset`, or `$SOUNDALIKE_SHARED`), or `None` after reporting
/// the skip: tests that need the whole bal_train split cannot run on a fresh clone, which lacks it.
pub fn shared_audioset() -> Option<PathBuf> {
    let dir = std::env::var_os("SOUNDALIKE_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"))
        .join("audioset");
    if dir.join("real/audioset_v1_embeddings/bal_train").is_dir() {
        Some(dir)
    } else {
        skip(
            "shared-data",
            format_args!(
                "{} is absent; it holds the full bal_train split",
                dir.display()
            ),
        );
        None
    }
}

pub struct Run {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Run {
    pub fn stdout_text(&self) -> String {
        String::from_utf8(self.stdout.clone()).expect("stdout is UTF-8")
    }

    pub fn lines(&self) -> Vec<serde_json::Value> {
        self.stdout_text()
            .lines()
            .map(|l| serde_json::from_str(l).expect("each line is JSON"))
            .collect()
    }

    /// Asserts a failure with exactly one stderr line that starts with `error:` and contains each of `parts`.
    pub fn assert_error(&self, code: i32, parts: &[&str]) {
        assert_eq!(self.code, code, "exit code; stderr: {}", self.stderr);
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line on stderr, got: {:?}", self.stderr);
        assert!(
            lines[0].starts_with("error: "),
            "starts with 'error: ': {}",
            lines[0]
        );
        for part in parts {
            assert!(
                lines[0].contains(part),
                "stderr {:?} should mention {part:?}",
                lines[0]
            );
        }
        assert!(
            !self.stderr.contains("panicked"),
            "no panic: {}",
            self.stderr
        );
    }

    pub fn assert_ok(&self) {
        assert_eq!(self.code, 0, "exit code; stderr: {}", self.stderr);
    }
}

/// The exit code, stdout and stderr of a finished run.
pub fn finish(output: Output) -> Run {
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: output.stdout,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

pub fn soundalike() -> Command {
    Command::new(env!("CARGO_BIN_EXE_soundalike"))
}

/// Runs the binary with `args` and no stdin.
pub fn run<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Run {
    finish(
        soundalike()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("binary runs"),
    )
}

/// Runs the binary with `args`, feeding `input` on stdin.
pub fn run_with_stdin<S: AsRef<std::ffi::OsStr>>(args: &[S], input: &[u8]) -> Run {
    let mut child = soundalike()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary runs");
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || {
        // The binary may stop reading early on bad input; a closed pipe is not a test failure.
        let _ = stdin.write_all(&input);
    });
    let output = child.wait_with_output().expect("binary finishes");
    feeder.join().expect("stdin feeder");
    finish(output)
}

/// Runs the binary with its address space capped at `limit` bytes (and one decoder thread, so that the cap does
/// not depend on the machine's core count): any attempt to allocate what a corrupt length claims aborts it.
pub fn run_with_memory_limit<S: AsRef<std::ffi::OsStr>>(
    args: &[S],
    stdin: Option<&[u8]>,
    limit: u64,
) -> Run {
    use std::os::unix::process::CommandExt;
    let mut command = soundalike();
    command
        .args(args)
        .env("RAYON_NUM_THREADS", "1")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe, and the closure touches nothing else of the parent's state.
    unsafe {
        command.pre_exec(move || {
            let rlimit = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &rlimit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let mut child = command.spawn().expect("binary runs");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        // The binary stops reading at the bad record; a closed pipe is expected.
        let _ = pipe.write_all(input);
    }
    finish(child.wait_with_output().expect("binary finishes"))
}

/// Parses the reference decode (TensorFlow's) into JSON values, one per record.
pub fn reference(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .expect("reference file")
        .lines()
        .map(|l| serde_json::from_str(l).expect("reference line is JSON"))
        .collect()
}

/// Hex SHA-256 of a clip's embedding rows, as the reference records it (all frame bytes in order).
pub fn embedding_sha256(clip: &serde_json::Value) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for row in clip["embedding"].as_array().expect("embedding rows") {
        let row = row.as_array().expect("a row");
        assert_eq!(row.len(), 128, "128 values per row");
        let bytes: Vec<u8> = row
            .iter()
            .map(|v| u8::try_from(v.as_u64().expect("integer")).expect("byte"))
            .collect();
        hasher.update(&bytes);
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Asserts that a clip written by `ingest` equals TensorFlow's decode of the same record.
pub fn assert_matches_reference(clip: &serde_json::Value, expected: &serde_json::Value) {
    let id = &expected["video_id"];
    assert_eq!(&clip["video_id"], id);
    assert_eq!(
        clip["start_time"].as_f64(),
        expected["start_time"].as_f64(),
        "start_time of {id}"
    );
    assert_eq!(
        clip["end_time"].as_f64(),
        expected["end_time"].as_f64(),
        "end_time of {id}"
    );
    assert_eq!(clip["labels"], expected["labels"], "labels of {id}");
    assert_eq!(
        clip["embedding"].as_array().map(Vec::len),
        expected["frames"].as_u64().map(|n| n as usize)
    );
    assert_eq!(
        embedding_sha256(clip),
        expected["sha256"].as_str().unwrap_or_default(),
        "frames of {id}"
    );
    assert_eq!(
        clip.as_object().map(|o| o.len()),
        Some(5),
        "exactly five keys"
    );
}

/// Writes a tar (gzip-compressed when `gzip`) of every file under `dir`, named `prefix/<relative path>`, in
/// sorted order, as the release's features.tar.gz is laid out.
pub fn write_tar(dir: &Path, prefix: &str, dest: &Path, gzip: bool) {
    let mut files = Vec::new();
    collect(dir, &mut files);
    files.sort();
    let file = std::fs::File::create(dest).expect("create tar");
    let writer: Box<dyn Write> = if gzip {
        Box::new(flate2::write::GzEncoder::new(
            file,
            flate2::Compression::fast(),
        ))
    } else {
        Box::new(file)
    };
    let mut builder = tar::Builder::new(writer);
    for path in files {
        let name = Path::new(prefix).join(path.strip_prefix(dir).expect("under dir"));
        builder.append_path_with_name(&path, name).expect("append");
    }
    builder
        .into_inner()
        .expect("finish tar")
        .flush()
        .expect("flush");
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            collect(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// The fixture's 779 music clips as `ingest` writes them, one JSON line each (ingested once per test run, for every module).
pub fn fixture_clip_lines() -> &'static [String] {
    static LINES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    LINES.get_or_init(|| {
        let run = run(&[Path::new("ingest"), Path::new("-q"), &fixture_data()]);
        run.assert_ok();
        run.stdout_text().lines().map(String::from).collect()
    })
}

/// The fixture's music clips as `ingest` writes them (JSON Lines).
pub fn clips_jsonl() -> &'static [u8] {
    static CLIPS: OnceLock<Vec<u8>> = OnceLock::new();
    CLIPS.get_or_init(|| {
        fixture_clip_lines()
            .iter()
            .flat_map(|l| l.bytes().chain(std::iter::once(b'\n')))
            .collect()
    })
}

pub fn clips() -> Vec<Value> {
    String::from_utf8(clips_jsonl().to_vec())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Builds an index of `input` (JSON Lines) in a new temporary directory, through stdin.
pub fn build(input: &[u8], extra: &[&str]) -> (tempfile::TempDir, PathBuf) {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("idx");
    let mut args = vec!["index", "-q", "--index", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    run_with_stdin(&args, input).assert_ok();
    (temp, dir)
}

pub fn recommend(dir: &Path, args: &[&str]) -> Run {
    let mut all = vec!["recommend", "--index", dir.to_str().unwrap()];
    all.extend_from_slice(args);
    run(&all)
}

pub fn ids(answer: &Value) -> Vec<String> {
    answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["video_id"].as_str().unwrap().to_string())
        .collect()
}

/// Rewrites the format version in the settings of the index in `dir`, as another soundalike would have written it.
pub fn set_format_version(dir: &Path, version: u64) {
    // SAFETY: this process opens the environment once, and no other process uses it.
    let env = unsafe { heed::EnvOpenOptions::new().max_dbs(8).open(dir) }.unwrap();
    let settings: heed::Database<heed::types::Str, heed::types::Bytes> = env
        .open_databases_and_commit(env.read_txn().unwrap(), |dbo, rtxn| -> heed::Result<_> {
            Ok(heed::CommitOrAbort::<_, ()>::Commit(
                dbo.open_database(rtxn, Some("settings"))?,
            ))
        })
        .unwrap()
        .unwrap_commit()
        .unwrap();
    let mut wtxn = env.write_txn().unwrap();
    let mut value: Value =
        serde_json::from_slice(settings.get(&wtxn, "settings").unwrap().unwrap()).unwrap();
    value["format_version"] = version.into();
    settings
        .put(&mut wtxn, "settings", &serde_json::to_vec(&value).unwrap())
        .unwrap();
    wtxn.commit().unwrap();
}

/// A 16-bit PCM WAV of `samples` (mono) at `rate`.
pub fn wav_bytes(samples: &[i16], rate: u32) -> Vec<u8> {
    let data_len = samples.len() as u32 * 2;
    let mut out = Vec::new();
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

/// An index of the fixture clips under the target directory's temporary folder, named `name`, rebuilt over
/// the last run's (for a module's shared, read-only index: a static is never dropped, so a temporary
/// directory would be left behind by every run).
pub fn build_shared_index(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    match std::fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            panic!("cannot remove {}: {e}", dir.display())
        }
        _ => {}
    }
    run_with_stdin(
        &["index", "-q", "--index", dir.to_str().unwrap()],
        clips_jsonl(),
    )
    .assert_ok();
    dir
}

/// How many of an answer's results carry one of `wanted` labels.
pub fn results_with_labels(answer: &Value, wanted: &[i64]) -> usize {
    answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            r["labels"]
                .as_array()
                .unwrap()
                .iter()
                .any(|l| wanted.contains(&l.as_i64().unwrap()))
        })
        .count()
}

/// `n` spread-out synthetic clips as JSON lines, made as `examples/synth.rs --mix 2 --noise 16` makes them from
/// AudioSet: each of a clip's 10 frames is a random frame of one of two random fixture music clips, plus noise of
/// up to 16 per byte, and its labels are the two sources'. Sets of this kind are as spread out as real music, and
/// large enough ones make the graph the default search. The same `seed` gives the same clips.
pub fn spread_out_clips(n: usize, seed: u64) -> Vec<String> {
    let sources: Vec<(Vec<Vec<u8>>, Vec<i64>)> = clips()
        .iter()
        .map(|clip| {
            let rows = clip["embedding"].as_array().unwrap();
            let rows = rows
                .iter()
                .map(|row| {
                    let row = row.as_array().unwrap();
                    row.iter().map(|v| v.as_u64().unwrap() as u8).collect()
                })
                .collect();
            let labels = clip["labels"].as_array().unwrap();
            (rows, labels.iter().map(|l| l.as_i64().unwrap()).collect())
        })
        .filter(|(rows, _): &(Vec<Vec<u8>>, _)| rows.len() >= 10)
        .collect();
    let mut state = seed.max(1);
    let mut next = move |below: usize| {
        // xorshift64: the clips must not change with a dependency's generator.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % below as u64) as usize
    };
    (0..n)
        .map(|i| {
            let a = next(sources.len());
            let b = (a + 1 + next(sources.len() - 1)) % sources.len();
            let rows: Vec<Vec<u8>> = (0..10)
                .map(|_| {
                    let (rows, _) = &sources[if next(2) == 0 { a } else { b }];
                    let row = &rows[next(rows.len())];
                    row.iter()
                        .map(|&v| (v as usize + next(17)).min(255) as u8)
                        .collect()
                })
                .collect();
            let mut labels: Vec<i64> = sources[a].1.iter().chain(&sources[b].1).copied().collect();
            labels.sort_unstable();
            labels.dedup();
            serde_json::json!({
                "video_id": format!("s{:02x}{i:08}", seed % 256),
                "start_time": 0.0,
                "end_time": 10.0,
                "labels": labels,
                "embedding": rows,
            })
            .to_string()
        })
        .collect()
}
