//! The rows of docs/errors.md's "What bad input gets": each bad input fed to the built binary, which must exit with
//! the documented code and exactly one `error:` line naming the file (and the record's byte offset or the line),
//! must not panic, and must leave what existed before as it was: an earlier output file byte for byte, an index
//! answering exactly as before.
//!
//! Bad TFRecords are made by damaging real fixture records; only rows about bytes that are not AudioSet data at
//! all (random bytes, a JSON file) use other bytes.

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::common::*;
use prost::Message;
use soundalike::tfrecord::record::{Records, write_record};
use tfrecord::protobuf::{Example, SequenceExample, feature::Kind};

// ---------------------------------------------------------------------------------------------------------------
// TFRecord input to `ingest`

/// The data of each record of a real eval file (ten clips).
fn eval_records() -> Vec<Vec<u8>> {
    let bytes = std::fs::read(fixture_data().join("eval/40.tfrecord")).unwrap();
    let records: Vec<Vec<u8>> = Records::new(&bytes, 0)
        .map(|r| r.unwrap().1.to_vec())
        .collect();
    assert_eq!(records.len(), 10);
    records
}

/// Frames records as a TFRecord file; returns its bytes and each record's byte offset.
fn tfrecord_file(records: &[Vec<u8>]) -> (Vec<u8>, Vec<u64>) {
    let mut bytes = Vec::new();
    let mut offsets = Vec::new();
    for record in records {
        offsets.push(bytes.len() as u64);
        write_record(&mut bytes, record);
    }
    (bytes, offsets)
}

/// The eval file with its fourth record's data replaced by `damage` of it, framed with valid checksums (the
/// defect is in the content, not the framing); returns the file and the offset of the damaged record.
fn with_fourth_record(damage: impl FnOnce(&[u8]) -> Vec<u8>) -> (Vec<u8>, u64) {
    let mut records = eval_records();
    records[3] = damage(&records[3]);
    let (bytes, offsets) = tfrecord_file(&records);
    (bytes, offsets[3])
}

/// The eval file with its fourth record decoded as a SequenceExample, edited, and encoded again.
fn with_fourth_edited(edit: impl FnOnce(&mut SequenceExample)) -> (Vec<u8>, u64) {
    with_fourth_record(|data| {
        let mut example = SequenceExample::decode(data).unwrap();
        edit(&mut example);
        example.encode_to_vec()
    })
}

/// A scratch directory: `out/clips.jsonl` holds an earlier ingest's output, the file a user would hate to lose;
/// bad inputs go in `in/`.
struct Scratch {
    temp: tempfile::TempDir,
    out: PathBuf,
    before: Vec<u8>,
}

impl Scratch {
    fn new() -> Scratch {
        let temp = tempfile::tempdir().unwrap();
        std::fs::create_dir(temp.path().join("in")).unwrap();
        std::fs::create_dir(temp.path().join("out")).unwrap();
        let out = temp.path().join("out/clips.jsonl");
        run(&[
            Path::new("ingest"),
            Path::new("-q"),
            Path::new("-o"),
            &out,
            &fixture_data().join("eval/xt.tfrecord"),
        ])
        .assert_ok();
        let before = std::fs::read(&out).unwrap();
        assert!(!before.is_empty());
        Scratch { temp, out, before }
    }

    /// Writes `bytes` to `in/<name>`.
    fn input(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.temp.path().join("in").join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// `ingest -o out/clips.jsonl` followed by `args`.
    fn args<S: AsRef<OsStr>>(&self, args: &[S]) -> Vec<OsString> {
        let mut all: Vec<OsString> = vec!["ingest".into(), "-o".into(), self.out.clone().into()];
        all.extend(args.iter().map(|a| a.as_ref().to_os_string()));
        all
    }

    /// Asserts that `run` failed with exit 1 and one `error:` line holding each of `parts`, and that the earlier
    /// output file is byte-identical and alone in its directory (no temporary file left beside it).
    fn assert_refused(&self, run: &Run, parts: &[&str]) {
        run.assert_error(1, parts);
        assert!(
            std::fs::read(&self.out).unwrap() == self.before,
            "the earlier output file is unchanged"
        );
        let names: Vec<OsString> = std::fs::read_dir(self.out.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["clips.jsonl"], "nothing is left beside the output");
    }

    /// Runs `ingest -o out/clips.jsonl ARGS` and checks the refusal.
    fn refuses<S: AsRef<OsStr>>(&self, args: &[S], parts: &[&str]) -> Run {
        let run = run(&self.args(args));
        self.assert_refused(&run, parts);
        run
    }

    /// Feeds a damaged TFRecord file to ingest as a named file and as stdin: both must name their source, say
    /// `what`, and point at the record at `offset` (`None`: an empty input, which has no record to point at).
    fn refuses_records(&self, bytes: &[u8], offset: Option<u64>, what: &str) {
        let path = self.input("damaged.tfrecord", bytes);
        let at = offset.map(|o| format!(": record at byte {o}: "));
        let name = path.display().to_string();
        let mut parts = vec![name.as_str(), what];
        parts.extend(at.as_deref());
        self.refuses(&[&path], &parts);

        parts[0] = "<stdin>";
        let piped = run_with_stdin(&self.args(&["-"]), bytes);
        self.assert_refused(&piped, &parts);
    }
}

#[test]
fn flipped_byte_is_a_checksum_error_at_its_record() {
    let scratch = Scratch::new();
    let original = std::fs::read(fixture_data().join("eval/40.tfrecord")).unwrap();
    let (_, offsets) = tfrecord_file(&eval_records());
    // In the fourth record's data.
    let mut bytes = original.clone();
    bytes[offsets[3] as usize + 12 + 50] ^= 0x40;
    scratch.refuses_records(
        &bytes,
        Some(offsets[3]),
        "data checksum mismatch (damaged record)",
    );
    // In its length field: the record boundaries are lost.
    let mut bytes = original;
    bytes[offsets[3] as usize + 1] ^= 0x01;
    scratch.refuses_records(&bytes, Some(offsets[3]), "length checksum mismatch");
}

#[test]
fn truncated_tail_is_reported_at_its_record() {
    let scratch = Scratch::new();
    let original = std::fs::read(fixture_data().join("eval/40.tfrecord")).unwrap();
    let (_, offsets) = tfrecord_file(&eval_records());
    let bytes = &original[..original.len() - 100];
    scratch.refuses_records(bytes, Some(offsets[9]), "truncated record");
    // Cut inside the last record's header.
    let bytes = &original[..offsets[9] as usize + 5];
    scratch.refuses_records(
        bytes,
        Some(offsets[9]),
        "the input ends after 5 of its 12 bytes",
    );
}

#[test]
fn random_bytes_are_not_a_tfrecord_file() {
    let scratch = Scratch::new();
    // Not AudioSet data at all: pseudo-random bytes (a fixed seed), and a JSON file given to ingest by mistake.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let random: Vec<u8> = (0..4096)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    scratch.refuses_records(
        &random,
        Some(0),
        "length checksum mismatch (not a TFRecord file",
    );
    // JSON is named as such (most likely clips from `ingest`, given back to it).
    let json = std::fs::read(fixtures().join("reference.tf.jsonl")).unwrap();
    scratch.refuses_records(
        &json,
        None,
        "this is JSON (clips written by `soundalike ingest`?), not a TFRecord file",
    );
}

#[test]
fn empty_file_is_an_error() {
    let scratch = Scratch::new();
    scratch.refuses_records(b"", None, "empty file: no records");
    // Among good files in a directory, the empty one is named.
    let dir = scratch.temp.path().join("in/shards");
    std::fs::create_dir(&dir).unwrap();
    for name in ["40.tfrecord", "xt.tfrecord"] {
        std::fs::copy(fixture_data().join("eval").join(name), dir.join(name)).unwrap();
    }
    let empty = dir.join("5v.tfrecord");
    std::fs::write(&empty, b"").unwrap();
    scratch.refuses(&[&dir], &[&empty.display().to_string(), "empty file"]);
    // --skip-corrupt steps over it with a warning, keeping the other files' clips.
    let skipped = run(&[
        Path::new("ingest"),
        Path::new("--skip-corrupt"),
        Path::new("--music"),
        Path::new("all"),
        &dir,
    ]);
    skipped.assert_ok();
    assert_eq!(skipped.lines().len(), 13);
    assert!(
        skipped
            .stderr
            .contains(&format!("warning: {}: empty file", empty.display()))
            && skipped.stderr.contains("skipped 1 corrupt"),
        "{}",
        skipped.stderr
    );
}

#[test]
fn huge_claimed_length_is_corrupt_without_a_huge_allocation() {
    let scratch = Scratch::new();
    let mut bytes = std::fs::read(fixture_data().join("eval/40.tfrecord")).unwrap();
    let (_, offsets) = tfrecord_file(&eval_records());
    let at = offsets[3] as usize;
    // 4 GiB, with a valid length checksum: the length field itself looks intact.
    let claimed: u64 = 4 << 30;
    bytes[at..at + 8].copy_from_slice(&claimed.to_le_bytes());
    let crc = soundalike::tfrecord::record::masked_crc(&claimed.to_le_bytes());
    bytes[at + 8..at + 12].copy_from_slice(&crc.to_le_bytes());
    let path = scratch.input("huge.tfrecord", &bytes);
    let what =
        format!("record at byte {at}: record claims {claimed} bytes, more than the 64 MiB limit");
    // 1 GiB of address space: far below the claim, far above what ingest needs.
    let limit = 1 << 30;
    let name = path.display().to_string();
    let whole = run_with_memory_limit(&scratch.args(&[&path]), None, limit);
    scratch.assert_refused(&whole, &[&name, &what]);
    // Streams are cut into chunks by reading each record's claimed length: the cap must hold there too.
    let piped = run_with_memory_limit(&scratch.args(&["-"]), Some(&bytes), limit);
    scratch.assert_refused(&piped, &["<stdin>", &what]);
}

#[test]
fn protobuf_that_is_not_a_sequence_example_is_refused() {
    let scratch = Scratch::new();
    // A tf.train.Example holding the same clip's context features: valid protobuf, the wrong message.
    let (bytes, offset) = with_fourth_record(|data| {
        let example = SequenceExample::decode(data).unwrap();
        Example {
            features: example.context,
        }
        .encode_to_vec()
    });
    scratch.refuses_records(&bytes, Some(offset), "not a tf.SequenceExample");
    // A record holding something else entirely: the clip as JSON.
    let (bytes, offset) = with_fourth_record(|_| {
        br#"{"video_id":"xtGmrLOsjHk","start_time":30.0,"end_time":40.0}"#.to_vec()
    });
    scratch.refuses_records(&bytes, Some(offset), "not a tf.SequenceExample");
}

#[test]
fn missing_fields_are_named() {
    let scratch = Scratch::new();
    for field in ["video_id", "labels"] {
        let (bytes, offset) = with_fourth_edited(|example| {
            let context = example.context.as_mut().unwrap();
            assert!(context.feature.remove(field).is_some());
        });
        scratch.refuses_records(&bytes, Some(offset), &format!("missing field {field}"));
    }
    let (bytes, offset) = with_fourth_edited(|example| {
        let lists = example.feature_lists.as_mut().unwrap();
        assert!(lists.feature_list.remove("audio_embedding").is_some());
    });
    scratch.refuses_records(&bytes, Some(offset), "missing field audio_embedding");
}

#[test]
fn frame_that_is_not_128_bytes_is_refused() {
    let scratch = Scratch::new();
    let (bytes, offset) = with_fourth_edited(|example| {
        let lists = example.feature_lists.as_mut().unwrap();
        let frames = &mut lists
            .feature_list
            .get_mut("audio_embedding")
            .unwrap()
            .feature;
        let Some(Kind::BytesList(list)) = frames[2].kind.as_mut() else {
            panic!("frames are bytes lists");
        };
        list.value[0].pop();
    });
    scratch.refuses_records(
        &bytes,
        Some(offset),
        "audio_embedding frame 2 has 127 bytes, not 128",
    );
}

#[test]
fn video_id_that_is_not_utf8_is_refused() {
    let scratch = Scratch::new();
    let (bytes, offset) = with_fourth_edited(|example| {
        let context = example.context.as_mut().unwrap();
        let Some(Kind::BytesList(list)) =
            context.feature.get_mut("video_id").unwrap().kind.as_mut()
        else {
            panic!("video_id is a bytes list");
        };
        list.value[0][0] = 0xff;
    });
    scratch.refuses_records(&bytes, Some(offset), "video_id is not valid UTF-8");
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

#[test]
fn gzip_that_is_not_a_tar_is_read_as_a_compressed_tfrecord_file() {
    let scratch = Scratch::new();
    // A gzip-compressed TFRecord file (TensorFlow's compression_type="GZIP") is good input.
    let eval = std::fs::read(fixture_data().join("eval/40.tfrecord")).unwrap();
    let good = scratch.input("40.tfrecord.gz", &gzip(&eval));
    let plain = run(&[
        Path::new("ingest"),
        &fixture_data().join("eval/40.tfrecord"),
    ]);
    let unpacked = run(&[Path::new("ingest"), &good]);
    unpacked.assert_ok();
    assert_eq!(unpacked.stdout, plain.stdout);

    // A gzip of something else is then a TFRecord file that is not one: here JSON, named as such.
    let json = gzip(&std::fs::read(fixtures().join("reference.tf.jsonl")).unwrap());
    let path = scratch.input("clips.jsonl.gz", &json);
    let name = format!("{} (gzip): this is JSON", path.display());
    scratch.refuses(&[&path], &[&name, "not a TFRecord file"]);
    let random: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let path = scratch.input("random.gz", &gzip(&random));
    let name = format!("{} (gzip)", path.display());
    scratch.refuses(
        &[&path],
        &[
            &name,
            "record at byte 0: length checksum mismatch (not a TFRecord file",
        ],
    );
    // A damaged record inside a gzip is reported at its offset in the decompressed stream.
    let mut damaged = eval.clone();
    let (_, offsets) = tfrecord_file(&eval_records());
    damaged[offsets[3] as usize + 12 + 50] ^= 0x40;
    let path = scratch.input("damaged.tfrecord.gz", &gzip(&damaged));
    let name = format!("{} (gzip)", path.display());
    scratch.refuses(
        &[&path],
        &[
            &name,
            &format!("record at byte {}: data checksum mismatch", offsets[3]),
        ],
    );
    // A gzip cut short (an interrupted download) is named with what the decompressor says.
    let whole = gzip(&eval);
    let path = scratch.input("cut.tfrecord.gz", &whole[..whole.len() / 2]);
    scratch.refuses(
        &[&path],
        &[&path.display().to_string(), "incomplete deflate stream"],
    );
}

/// A tar (gzip-compressed when `gzip`) of `files`, each stored under its name.
fn tar_of(files: &[(&str, &[u8])], gzip: bool) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, name, *bytes).unwrap();
    }
    let tar = builder.into_inner().unwrap();
    if gzip { self::gzip(&tar) } else { tar }
}

#[test]
fn tar_without_tfrecord_members_is_an_error() {
    let scratch = Scratch::new();
    let readme = std::fs::read(fixtures().join("README.md")).unwrap();
    let json = std::fs::read(fixtures().join("reference.tf.jsonl")).unwrap();
    let files: [(&str, &[u8]); 2] = [("data/README.md", &readme), ("data/clips.jsonl", &json)];
    for (name, gzip) in [("other.tar", false), ("other.tar.gz", true)] {
        let path = scratch.input(name, &tar_of(&files, gzip));
        scratch.refuses(
            &[&path],
            &[&format!(
                "no .tfrecord members in tar archive {}",
                path.display()
            )],
        );
        let piped = run_with_stdin(&scratch.args(&["-"]), &std::fs::read(&path).unwrap());
        scratch.assert_refused(&piped, &["no .tfrecord members in tar archive <stdin>"]);
    }
}

#[test]
fn tar_cut_short_is_an_error() {
    let scratch = Scratch::new();
    let eval = fixture_data().join("eval");
    let files: Vec<(String, Vec<u8>)> = ["40", "xt", "k9"]
        .iter()
        .map(|n| {
            let name = format!("eval/{n}.tfrecord");
            (
                name.clone(),
                std::fs::read(eval.join(format!("{n}.tfrecord"))).unwrap(),
            )
        })
        .collect();
    let borrowed: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (n.as_str(), &b[..])).collect();
    let whole = tar_of(&borrowed, false);
    // Cut between two members, where an archive without its end marker looks complete to a tar reader: each
    // member is a 512-byte header and its data padded to 512 bytes.
    let padded = |len: usize| 512 + len.div_ceil(512) * 512;
    let boundary = padded(files[0].1.len()) + padded(files[1].1.len());
    for (name, bytes) in [
        ("cut.tar", whole[..boundary].to_vec()),
        ("cut.tar.gz", gzip(&whole[..boundary])),
    ] {
        let path = scratch.input(name, &bytes);
        scratch.refuses(
            &[&path],
            &[
                &path.display().to_string(),
                "tar archive cut short after 2 .tfrecord members",
            ],
        );
    }
    // Cut inside the third member's data: the tar reader notices.
    let path = scratch.input("cut-inside.tar", &whole[..boundary + 512 + 1000]);
    scratch.refuses(
        &[&path],
        &[&path.display().to_string(), "damaged tar archive"],
    );
    // The whole archive is good input.
    let path = scratch.input("whole.tar", &whole);
    run(&[Path::new("ingest"), &path]).assert_ok();
}

#[test]
fn directory_without_tfrecord_files_is_an_error() {
    let scratch = Scratch::new();
    let dir = scratch.temp.path().join("in/notes");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::copy(fixtures().join("README.md"), dir.join("README.md")).unwrap();
    std::fs::copy(
        fixtures().join("reference.tf.jsonl"),
        dir.join("sub/reference.tf.jsonl"),
    )
    .unwrap();
    scratch.refuses(
        &[&dir],
        &[&format!("no .tfrecord files under {}", dir.display())],
    );
}

#[test]
fn file_that_cannot_be_read_is_an_error() {
    use std::os::unix::fs::{PermissionsExt, symlink};
    let scratch = Scratch::new();
    let shards = scratch.temp.path().join("in/shards");
    std::fs::create_dir(&shards).unwrap();
    std::fs::copy(
        fixture_data().join("eval/40.tfrecord"),
        shards.join("40.tfrecord"),
    )
    .unwrap();

    // A shard that is a dangling symlink (a link into a folder that was moved), found in a directory.
    let dangling = shards.join("xt.tfrecord");
    symlink(scratch.temp.path().join("moved/xt.tfrecord"), &dangling).unwrap();
    scratch.refuses(
        &[&shards],
        &[
            &format!("cannot read {}", dangling.display()),
            "No such file or directory",
        ],
    );
    std::fs::remove_file(&dangling).unwrap();

    // A symlink loop named on the command line.
    let looped = scratch.temp.path().join("in/loop.tfrecord");
    symlink(&looped, &looped).unwrap();
    scratch.refuses(
        &[&looped],
        &[
            &format!("cannot read {}", looped.display()),
            "Too many levels of symbolic links",
        ],
    );

    // A file without read permission, named and found in a directory. Root reads it anyway, so there this part
    // cannot fail the way it would for a user, and is skipped.
    if permissions_are_bypassed(scratch.temp.path()) {
        skip(
            "non-root",
            "as root chmod 000 does not stop reading; only the dangling-symlink and symlink-loop cases were checked",
        );
        return;
    }
    let locked = shards.join("k9.tfrecord");
    std::fs::copy(fixture_data().join("eval/k9.tfrecord"), &locked).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    for input in [&locked, &shards] {
        scratch.refuses(
            &[input],
            &[
                &format!("cannot read {}", locked.display()),
                "Permission denied",
            ],
        );
    }
}

// ---------------------------------------------------------------------------------------------------------------
// `index` input

fn clip_lines() -> &'static [String] {
    fixture_clip_lines()
}

fn video_id(line: &str) -> String {
    let clip: serde_json::Value = serde_json::from_str(line).unwrap();
    clip["video_id"].as_str().unwrap().to_string()
}

/// What an index answers: neighbours by the exact scan and through the trees for two clips, and its settings.
fn answers(dir: &Path) -> Vec<Vec<u8>> {
    let dir = dir.to_str().unwrap();
    let mut all = Vec::new();
    for id in [video_id(&clip_lines()[0]), video_id(&clip_lines()[150])] {
        for how in [&["--exact"][..], &["--search-k", "30"]] {
            let mut args = vec!["recommend", "--index", dir, "--id", &id, "--json"];
            args.extend_from_slice(how);
            let run = run(&args);
            run.assert_ok();
            all.push(run.stdout);
        }
    }
    let info = run(&["info", "--json", "--index", dir]);
    info.assert_ok();
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    all.push(info["settings"].to_string().into_bytes());
    all
}

/// An index of the first 200 fixture clips in a scratch directory, and what it answers.
struct ExistingIndex {
    temp: tempfile::TempDir,
    dir: PathBuf,
    before: Vec<Vec<u8>>,
}

impl ExistingIndex {
    fn new() -> ExistingIndex {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("music.idx");
        let input: String = clip_lines()[..200]
            .iter()
            .map(|l| format!("{l}\n"))
            .collect();
        run_with_stdin(
            &["index", "-q", "--index", dir.to_str().unwrap()],
            input.as_bytes(),
        )
        .assert_ok();
        let before = answers(&dir);
        ExistingIndex { temp, dir, before }
    }

    /// Feeds `input` to `index` as a rebuild of the existing index, as an `--append` to it, and as a new index,
    /// from a file and from stdin: each must fail with one `error:` line holding `parts` and the input's name,
    /// the existing index must answer exactly as before, and nothing may be left beside it.
    fn refuses(&self, input: &[u8], parts: &[&str]) {
        let path = self.temp.path().join("bad.jsonl");
        std::fs::write(&path, input).unwrap();
        let dir = self.dir.to_str().unwrap();
        let fresh = self.temp.path().join("fresh.idx");
        let fresh = fresh.to_str().unwrap();
        for (target, extra) in [(dir, None), (dir, Some("--append")), (fresh, None)] {
            let mut args = vec!["index", "-q", "--index", target];
            args.extend(extra);
            for from_stdin in [false, true] {
                let (run, name) = if from_stdin {
                    (run_with_stdin(&args, input), "<stdin>".to_string())
                } else {
                    let mut with_file = args.clone();
                    with_file.push(path.to_str().unwrap());
                    (run(&with_file), path.display().to_string())
                };
                let mut expected = vec![name.as_str()];
                expected.extend_from_slice(parts);
                run.assert_error(1, &expected);
            }
        }
        assert_eq!(
            answers(&self.dir),
            self.before,
            "the index answers as before"
        );
        let mut names: Vec<String> = std::fs::read_dir(self.temp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["bad.jsonl", "music.idx"],
            "nothing left beside the index"
        );
    }
}

/// The first `n` clip lines after the existing index's clips, with line `bad` (from 1) replaced by `with`.
fn input_with_line(n: usize, bad: usize, with: &str) -> String {
    let mut lines: Vec<&str> = clip_lines()[200..200 + n]
        .iter()
        .map(String::as_str)
        .collect();
    lines[bad - 1] = with;
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// The clip on line `line` of `input_with_line`'s output, as JSON, edited.
fn edited_clip(line: usize, edit: impl FnOnce(&mut serde_json::Value)) -> (String, String) {
    let text = &clip_lines()[200 + line - 1];
    let mut clip: serde_json::Value = serde_json::from_str(text).unwrap();
    edit(&mut clip);
    (clip.to_string(), video_id(text))
}

#[test]
fn index_line_that_is_not_json_names_the_line() {
    let existing = ExistingIndex::new();
    // Line 5 cut off half-way, as a killed writer leaves a file.
    let line = &clip_lines()[204];
    let input = input_with_line(8, 5, &line[..line.len() / 2]);
    existing.refuses(
        input.as_bytes(),
        &["line 5: not a clip: EOF while parsing a list (column "],
    );
    // Text that is not JSON at all.
    let input = input_with_line(8, 5, "Music, Opera");
    existing.refuses(
        input.as_bytes(),
        &["line 5: not a clip: expected value (column 1)"],
    );
}

#[test]
fn index_clip_with_the_wrong_shape_names_line_and_video_id() {
    let existing = ExistingIndex::new();
    // A row of 127 values.
    let (clip, id) = edited_clip(5, |clip| {
        clip["embedding"][3].as_array_mut().unwrap().pop();
    });
    existing.refuses(
        input_with_line(8, 5, &clip).as_bytes(),
        &[&format!(
            "line 5: clip {id}: embedding row 3 has 127 values, not 128"
        )],
    );
    // Nine rows where the index uses ten.
    let (clip, id) = edited_clip(5, |clip| {
        clip["embedding"].as_array_mut().unwrap().pop();
    });
    existing.refuses(
        input_with_line(8, 5, &clip).as_bytes(),
        &[&format!(
            "line 5: clip {id}: the embedding has 9 rows; 10 are needed"
        )],
    );
}

#[test]
fn index_values_outside_0_to_255_name_line_and_video_id() {
    let existing = ExistingIndex::new();
    for value in [256, -1] {
        let (clip, id) = edited_clip(5, |clip| clip["embedding"][2][7] = value.into());
        existing.refuses(
            input_with_line(8, 5, &clip).as_bytes(),
            &[&format!(
                "line 5: clip {id}: embedding row 2 holds {value}, outside 0..255"
            )],
        );
    }
}

#[test]
fn index_empty_input_is_nothing_to_index() {
    let existing = ExistingIndex::new();
    let dir = existing.dir.to_str().unwrap();
    for input in [&b""[..], b"\n  \n"] {
        for target in [
            dir,
            existing.temp.path().join("fresh.idx").to_str().unwrap(),
        ] {
            run_with_stdin(&["index", "-q", "--index", target], input)
                .assert_error(1, &["nothing to index: the input holds no clips"]);
        }
        // Appending nothing is not an error: the index is left as it was.
        run_with_stdin(&["index", "-q", "--append", "--index", dir], input).assert_ok();
    }
    assert_eq!(answers(&existing.dir), existing.before);
    assert!(!existing.temp.path().join("fresh.idx").exists());
    assert_eq!(std::fs::read_dir(existing.temp.path()).unwrap().count(), 1);
}

// ---------------------------------------------------------------------------------------------------------------
// `recommend`

/// A real clip's embedding rows.
fn rows() -> Vec<serde_json::Value> {
    let clip: serde_json::Value = serde_json::from_str(&clip_lines()[0]).unwrap();
    clip["embedding"].as_array().unwrap().clone()
}

#[test]
fn embedding_with_too_few_rows_or_rows_of_the_wrong_width_is_refused() {
    let existing = ExistingIndex::new();
    let dir = existing.dir.to_str().unwrap();
    let rows = rows();
    let mut narrow = rows.clone();
    narrow[4].as_array_mut().unwrap().pop();
    let mut wide = rows.clone();
    wide[0].as_array_mut().unwrap().push(7.into());
    let cases = [
        (
            "short.json",
            serde_json::json!(rows[..2]),
            "the embedding has 2 rows; 10 are needed",
        ),
        (
            "narrow.json",
            serde_json::json!(narrow),
            "embedding row 4 has 127 values, not 128",
        ),
        (
            "wide.json",
            serde_json::json!({"status": "ok", "embedding": wide}),
            "embedding row 0 has 129 values, not 128",
        ),
    ];
    for (name, value, what) in cases {
        let path = existing.temp.path().join(name);
        std::fs::write(&path, value.to_string()).unwrap();
        let file = path.to_str().unwrap();
        run(&["recommend", "--index", dir, "--embedding", file])
            .assert_error(1, &[&format!("{file}: {what}")]);
        // In a batch, the good line is answered and the bad one gets its error in its place.
        let batch = existing.temp.path().join("queries.txt");
        std::fs::write(&batch, format!("{}\n{value}\n", video_id(&clip_lines()[0]))).unwrap();
        let batch = batch.to_str().unwrap();
        let in_batch = run(&["recommend", "--index", dir, "--batch", batch, "--json"]);
        in_batch.assert_error(1, &[&format!("{batch}: 1 of 2 queries failed")]);
        let answers = in_batch.lines();
        assert_eq!(answers.len(), 2, "one answer per line");
        assert_eq!(answers[0]["results"].as_array().unwrap().len(), 10);
        assert_eq!(answers[1]["line"], 2);
        assert!(
            answers[1]["error"].as_str().unwrap().contains(what),
            "{}",
            answers[1]
        );
        std::fs::remove_file(&path).unwrap();
    }
    assert_eq!(answers(&existing.dir), existing.before);
}

#[test]
fn count_out_of_range_is_a_usage_error() {
    let existing = ExistingIndex::new();
    let dir = existing.dir.to_str().unwrap();
    let id = video_id(&clip_lines()[0]);
    for count in ["0", "10001"] {
        let run = run(&["recommend", "--index", dir, "--id", &id, "-k", count]);
        // clap's own usage errors: one `error:` line, then a hint to try --help.
        assert_eq!(run.code, 2, "{}", run.stderr);
        let errors: Vec<&str> = run
            .stderr
            .lines()
            .filter(|l| l.starts_with("error:"))
            .collect();
        assert_eq!(errors.len(), 1, "{}", run.stderr);
        assert!(
            errors[0].contains(&format!("invalid value '{count}' for '--count")),
            "{}",
            errors[0]
        );
        assert!(!run.stderr.contains("panicked"));
        assert!(run.stdout.is_empty());
    }
}

#[test]
fn recommend_leaves_what_is_not_an_index_untouched() {
    let temp = tempfile::tempdir().unwrap();
    let missing = temp.path().join("none.idx");
    run(&[
        "recommend",
        "--index",
        missing.to_str().unwrap(),
        "--id",
        "xtGmrLOsjHk",
    ])
    .assert_error(1, &[&format!("no index at {}", missing.display())]);
    assert!(!missing.exists(), "a missing index is not created");
    let photos = temp.path().join("photos");
    std::fs::create_dir(&photos).unwrap();
    std::fs::write(photos.join("cat.jpg"), "meow").unwrap();
    run(&[
        "recommend",
        "--index",
        photos.to_str().unwrap(),
        "--id",
        "xtGmrLOsjHk",
    ])
    .assert_error(
        1,
        &[&format!("{} is not a soundalike index", photos.display())],
    );
    let names: Vec<_> = std::fs::read_dir(&photos)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["cat.jpg"], "nothing is written into it");
}

#[test]
fn an_index_cut_short_is_named_as_damaged() {
    // A partial copy of an index: LMDB maps the file, and reading a page past its end faults (SIGBUS), which
    // must still end in one error line and exit code 1.
    let existing = ExistingIndex::new();
    let cut = existing.temp.path().join("cut.idx");
    std::fs::create_dir(&cut).unwrap();
    let data = std::fs::read(existing.dir.join("data.mdb")).unwrap();
    std::fs::write(cut.join("data.mdb"), &data[..data.len() / 2]).unwrap();
    let id = video_id(&clip_lines()[0]);
    let cut_dir = cut.to_str().unwrap();
    for args in [
        &["recommend", "--index", cut_dir, "--id", &id, "--exact"][..],
        &[
            "recommend",
            "--index",
            cut_dir,
            "--id",
            &id,
            "--search-k",
            "30",
        ],
        &["info", "--index", cut_dir],
        &["evaluate", "--index", cut_dir],
    ] {
        let run = run(args);
        assert_ne!(run.code, 135, "{args:?} died of SIGBUS");
        run.assert_error(1, &[&format!("index {cut_dir} is damaged")]);
    }
}
