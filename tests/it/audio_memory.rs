//! Memory per decode is bounded by seconds of 16 kHz mono, not by the file's own rate and channels (issue 33):
//! the FLAC of 8 channels at 192 kHz whose header says 599 s (tests/it/common/hostile_audio.rs) is decoded,
//! resampled as it goes, and embedded by the real binary within a stated peak RSS.

use std::path::Path;
use std::process::Stdio;

use crate::common::hostile_audio::{
    HOSTILE_CHANNELS, HOSTILE_RATE, HOSTILE_SECONDS, constant_flac, write_hostile_flac,
};
use crate::common::{formula, soundalike, wav_bytes};
use soundalike::audio::decode::{self, DecodeError, Window};
use soundalike::audio::resample::output_len;

const MB: u64 = 1_000_000;

/// The most a second of audio may add to `embed`'s peak: its 16 kHz samples (16,000 x 8 B), its log-mel frames
/// (100 x 64 x 8 B) and its examples (100 x 64 x 4 B), 204,800 B in all. Held at the file's own rate and
/// channels, the hostile file's second would be 192,000 x 8 B of mono samples alone, 7.5 times as much.
const BYTES_PER_SECOND: u64 = 16_000 * 8 + 100 * 64 * 8 + 100 * 64 * 4;

/// Room beyond that for what does not grow with the audio's length: the resampler's filter (6.6 MB) and
/// input (under 4 MB), one decoded packet (16,384 frames x 8 channels x 8 B = 1 MB), and the allocator.
const FIXED_ROOM: u64 = 64 * MB;

/// `args` run by the binary; its exit code, peak RSS in bytes (the kernel's count for that process, from
/// wait4), and stderr.
fn run_measured(args: &[&std::ffi::OsStr], stderr_file: &Path) -> (i32, u64, String) {
    let stderr = std::fs::File::create(stderr_file).unwrap();
    // Reaped by wait4 below, which std's wait cannot be asked for: it alone also gives the child's usage.
    #[allow(clippy::zombie_processes)]
    let child = soundalike()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("binary runs");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: a plain struct of integers, filled in by wait4.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, which nothing else waits for; `status` and `usage` outlive the call.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid, "{}", std::io::Error::last_os_error());
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    // ru_maxrss is in KiB on Linux.
    let peak = usage.ru_maxrss as u64 * 1024;
    (code, peak, std::fs::read_to_string(stderr_file).unwrap())
}

/// `embed FILE --max-seconds 600` with the formula weights; exit code, peak RSS and stderr.
fn embed_measured(file: &Path, dir: &Path) -> (i32, u64, String) {
    let out = dir.join("clips.jsonl");
    let pca = formula::pca_file();
    let args: Vec<&std::ffi::OsStr> = vec![
        "embed".as_ref(),
        file.as_os_str(),
        "--max-seconds".as_ref(),
        "600".as_ref(),
        "--weights".as_ref(),
        formula::weights_file().as_os_str(),
        "--pca".as_ref(),
        pca.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "-q".as_ref(),
    ];
    let measured = run_measured(&args, &dir.join("stderr"));
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    let rows = serde_json::from_str::<serde_json::Value>(text.trim())
        .ok()
        .and_then(|clip| clip["embedding"].as_array().map(Vec::len));
    assert_eq!(measured.0, 0, "{}", measured.2);
    let seconds = text
        .split("\"end_time\":")
        .nth(1)
        .and_then(|t| t.split(',').next())
        .unwrap_or("");
    eprintln!(
        "{}: {rows:?} rows to {seconds} s, peak RSS {} MB",
        file.display(),
        measured.1 / MB
    );
    measured
}

#[test]
fn the_hostile_flac_embeds_within_its_seconds_at_16_khz() {
    let dir = tempfile::tempdir().unwrap();
    let hostile = write_hostile_flac(dir.path());
    let size = std::fs::metadata(&hostile).unwrap().len();
    assert!(size < 300_000, "{size} bytes");
    // The same file 40 s long: the model, its activations for full batches of 32 examples, the process.
    let short = dir.path().join("short.flac");
    std::fs::write(
        &short,
        constant_flac(HOSTILE_RATE, HOSTILE_CHANNELS, 40 * u64::from(HOSTILE_RATE)),
    )
    .unwrap();
    let (_, base, _) = embed_measured(&short, dir.path());
    let (_, peak, _) = embed_measured(&hostile, dir.path());
    let seconds = u64::from(HOSTILE_SECONDS - 40);
    let bound = base + seconds * BYTES_PER_SECOND + FIXED_ROOM;
    eprintln!(
        "peak RSS: {} MB for 40 s, {} MB for {HOSTILE_SECONDS} s; bound {} MB",
        base / MB,
        peak / MB,
        bound / MB
    );
    assert!(
        peak < bound,
        "{HOSTILE_SECONDS} s of 8 x 192 kHz peaked at {} MB, more than {} MB (40 s: {} MB)",
        peak / MB,
        bound / MB,
        base / MB
    );
}

#[test]
fn the_hostile_flac_decodes_to_16_khz_through_the_library() {
    let dir = tempfile::tempdir().unwrap();
    let hostile = write_hostile_flac(dir.path());
    let window = Window {
        max_seconds: Some(600.0),
        ..Window::default()
    };
    let audio = decode::decode(&hostile, window).unwrap();
    let frames = HOSTILE_SECONDS as usize * HOSTILE_RATE as usize;
    assert_eq!(audio.sample_rate, 16_000);
    assert_eq!(
        audio.samples.len(),
        output_len(frames, HOSTILE_RATE, 16_000)
    );
    assert_eq!(audio.seconds(), f64::from(HOSTILE_SECONDS));
    // A block's middle holds its channels' mean: block 1's 16-bit values (-8700 + 1000 c for c in 0..8).
    let expected = (0..8)
        .map(|c| f64::from(-8_700 + 1_000 * c) / 32_768.0)
        .sum::<f64>()
        / 8.0;
    let middle = (16_384 + 8_192) / 12;
    // Within the filter's gain at 0 Hz; the neighbouring blocks' means are 0.009 away.
    let got = audio.samples[middle];
    assert!((got - expected).abs() < 1e-3, "{got} for {expected}");
    // Refused from its header, before a sample is decoded, when it is longer than allowed.
    let shorter = Window {
        max_seconds: Some(598.0),
        ..Window::default()
    };
    match decode::decode(&hostile, shorter) {
        Err(DecodeError::TooLong { seconds, max }) => {
            assert_eq!((seconds, max), (f64::from(HOSTILE_SECONDS), 598.0));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_rate_past_the_highest_is_refused_from_the_header() {
    let dir = tempfile::tempdir().unwrap();
    // WAVs at 1 MHz and 1 GHz (FLAC stops at 655,350 Hz): resampling either to 16 kHz would read 3,000 or
    // 3 million inputs each side of every output.
    for rate in [1_000_000, 1_000_000_000] {
        let path = dir.path().join(format!("{rate}.wav"));
        std::fs::write(&path, wav_bytes(&vec![1000i16; 48_000], rate)).unwrap();
        match decode::decode(&path, Window::default()) {
            Err(error @ DecodeError::RateTooHigh(r)) => {
                assert_eq!(r, rate);
                assert!(error.to_string().contains("768000 Hz at most"), "{error}");
            }
            other => panic!("{rate} Hz: {other:?}"),
        }
    }
}
