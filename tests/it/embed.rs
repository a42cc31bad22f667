//! `embed`'s bad input through the binary: each gets one `error:` line naming the file, exit 1 (2 for usage),
//! and nothing written. None of these runs reaches the network: audio is checked before weights are loaded.

use std::path::{Path, PathBuf};

use crate::common::{self, Run, finish, soundalike};

fn golden(name: &str) -> PathBuf {
    common::fixtures().join("vggish-golden").join(name)
}

/// Runs `embed` with `args`, given weights that exist (the tiny ones: loading them would fail, so a run that
/// gets that far says so) and no environment that could point elsewhere.
fn embed(args: &[&std::ffi::OsStr]) -> Run {
    let tiny = golden("tiny.safetensors");
    let pca = golden("pca_params.npz");
    finish(
        soundalike()
            .arg("embed")
            .args(args)
            .arg("--weights")
            .arg(&tiny)
            .arg("--pca")
            .arg(&pca)
            .env_remove("SOUNDALIKE_WEIGHTS")
            .env_remove("SOUNDALIKE_PCA")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap(),
    )
}

fn tone(seconds: f64, rate: u32) -> Vec<i16> {
    (0..(seconds * f64::from(rate)) as usize)
        .map(|i| ((i as f64 * 0.05).sin() * 10_000.0) as i16)
        .collect()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn a_file_that_is_not_audio_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let text = write(
        dir.path(),
        "notes.wav",
        b"these are not the samples you are looking for\n",
    );
    let out = dir.path().join("out.jsonl");
    let run = embed(&[text.as_os_str(), "-o".as_ref(), out.as_os_str()]);
    run.assert_error(1, &["notes.wav: not an audio file soundalike can read"]);
    assert!(!out.exists(), "nothing written");
}

#[test]
fn a_truncated_wav_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let whole = std::fs::read(golden("tone.wav")).unwrap();
    let cut = write(dir.path(), "cut.wav", &whole[..whole.len() / 2]);
    let run = embed(&[cut.as_os_str()]);
    run.assert_error(1, &["cut.wav: truncated or damaged audio"]);
    assert!(run.stdout.is_empty());
}

#[test]
fn flac_mp3_and_ogg_cut_short_are_named() {
    let dir = tempfile::tempdir().unwrap();
    for (name, keep, says) in [
        ("source.flac", 30_000, "the stream ends after"),
        ("source.mp3", 10_000, "of the 2.00 s its header announces"),
        ("source.ogg", 5_000, "the file ends inside its header"),
    ] {
        let whole = std::fs::read(common::fixtures().join("audio").join(name)).unwrap();
        let cut = write(dir.path(), &format!("cut-{name}"), &whole[..keep]);
        let run = embed(&[cut.as_os_str()]);
        run.assert_error(
            1,
            &[&format!("cut-{name}: truncated or damaged audio: "), says],
        );
    }
}

#[test]
fn an_npz_given_as_weights_is_named() {
    let run = finish(
        soundalike()
            .arg("embed")
            .arg(golden("tone.wav"))
            .arg("--weights")
            .arg(golden("pca_params.npz"))
            .arg("--pca")
            .arg(golden("pca_params.npz"))
            .output()
            .unwrap(),
    );
    run.assert_error(
        1,
        &["pca_params.npz: not VGGish weights: it holds no tensors (is it the PCA file?)"],
    );
}

#[test]
fn a_wav_of_an_unsupported_codec_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = common::wav_bytes(&tone(2.0, 16_000), 16_000);
    // Format tag 0x0055: MPEG layer 3 inside a WAV, which symphonia's WAV reader does not take.
    bytes[20..22].copy_from_slice(&0x0055u16.to_le_bytes());
    let odd = write(dir.path(), "odd.wav", &bytes);
    let run = embed(&[odd.as_os_str()]);
    run.assert_error(1, &["odd.wav: unsupported audio"]);
}

#[test]
fn audio_shorter_than_one_example_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let short = write(
        dir.path(),
        "short.wav",
        &common::wav_bytes(&tone(0.9, 16_000), 16_000),
    );
    let run = embed(&[short.as_os_str()]);
    run.assert_error(
        1,
        &["short.wav: 0.900 s of audio is shorter than one 0.96 s example"],
    );
    // A window can make a long enough file too short.
    let run = embed(&[
        golden("tone.wav").as_os_str(),
        "--start".as_ref(),
        "4.5".as_ref(),
    ]);
    run.assert_error(1, &["tone.wav: 0.500 s of audio is shorter"]);
}

#[test]
fn start_past_the_end_is_named() {
    let run = embed(&[
        golden("tone.wav").as_os_str(),
        "--start".as_ref(),
        "6".as_ref(),
    ]);
    run.assert_error(
        1,
        &["tone.wav: --start 6 is past the end of the audio (5.00 s long)"],
    );
}

#[test]
fn an_impossible_window_is_a_usage_error() {
    let wav = golden("tone.wav");
    let run = embed(&[
        wav.as_os_str(),
        "--start".as_ref(),
        "3".as_ref(),
        "--end".as_ref(),
        "2".as_ref(),
    ]);
    run.assert_error(2, &["--end 2 is not after --start 3"]);
    let run = embed(&[wav.as_os_str(), "--start".as_ref(), "-1".as_ref()]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    let run = embed(&[wav.as_os_str(), "--end".as_ref(), "NaN".as_ref()]);
    run.assert_error(2, &["--end NaN is not a time"]);
}

#[test]
fn a_missing_file_is_named() {
    let run = embed(&["no-such-song.flac".as_ref()]);
    run.assert_error(1, &["no-such-song.flac: cannot read"]);
}

#[test]
fn weights_of_the_wrong_shape_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let run = embed(&[
        golden("tone.wav").as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
    ]);
    run.assert_error(
        1,
        &["tiny.safetensors: not VGGish weights: features.0.weight has shape [2, 3, 4]"],
    );
    assert!(!out.exists(), "nothing written");
}

#[test]
fn without_weights_one_line_says_what_to_download_and_where() {
    let home = tempfile::tempdir().unwrap();
    let run = finish(
        soundalike()
            .arg("embed")
            .arg(golden("tone.wav"))
            .env("HOME", home.path())
            .env_remove("XDG_DATA_HOME")
            .env_remove("SOUNDALIKE_WEIGHTS")
            .env_remove("SOUNDALIKE_PCA")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap(),
    );
    run.assert_error(
        1,
        &[
            "vggish-10086976.pth",
            "https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish-10086976.pth",
            "vggish_pca_params.npz",
            "https://storage.googleapis.com/audioset/vggish_pca_params.npz",
            &format!("{}", home.path().join(".local/share/soundalike").display()),
            "--weights",
        ],
    );
}

fn audio_fixture(name: &str) -> PathBuf {
    common::fixtures().join("audio").join(name)
}

/// The largest normalised cross-correlation of `b` against `a` over lags of `b` from 0 to `max_lag` samples
/// (lossy encoders delay the signal).
fn best_correlation(a: &[f64], b: &[f64], max_lag: usize) -> f64 {
    let norm = |x: &[f64]| x.iter().map(|v| v * v).sum::<f64>().sqrt();
    (0..=max_lag)
        .map(|lag| {
            let n = a.len().min(b.len().saturating_sub(lag));
            let (x, y) = (&a[..n], &b[lag..lag + n]);
            x.iter().zip(y).map(|(p, q)| p * q).sum::<f64>() / (norm(x) * norm(y)).max(1e-12)
        })
        .fold(f64::MIN, f64::max)
}

/// A file's mono samples within `window` at its own rate, not resampled, and the rate.
fn decode_native(
    path: &Path,
    window: soundalike::audio::decode::Window,
) -> soundalike::audio::decode::Audio {
    use soundalike::audio::decode::{Audio, decode_with};
    let decoded = decode_with(path, window, |_| Vec::new()).unwrap();
    Audio::new(decoded.sink, decoded.rate)
}

#[test]
fn flac_mp3_and_ogg_decode_to_the_wav_they_were_made_from() {
    use soundalike::audio::decode::Window;
    let wav = decode_native(&audio_fixture("source.wav"), Window::default());
    assert_eq!((wav.sample_rate, wav.samples.len()), (22_050, 44_100));
    let flac = decode_native(&audio_fixture("source.flac"), Window::default());
    assert_eq!(flac.sample_rate, 22_050);
    assert_eq!(flac.samples, wav.samples, "FLAC is lossless");
    for name in ["source.mp3", "source.ogg"] {
        let lossy = decode_native(&audio_fixture(name), Window::default());
        assert_eq!(lossy.sample_rate, 22_050, "{name}");
        let length = lossy.samples.len() as f64 / 22_050.0;
        // Within one MP3 granule pair of padding either way.
        assert!((length - 2.0).abs() < 0.11, "{name}: {length} s");
        let correlation = best_correlation(&wav.samples, &lossy.samples, 3_000);
        eprintln!("{name}: {length:.4} s, correlation {correlation:.4}");
        assert!(correlation > 0.95, "{name}: correlation {correlation}");
    }
}

#[test]
fn a_window_decodes_only_its_samples() {
    use soundalike::audio::decode::{Window, decode};
    use soundalike::audio::resample::resample;
    let whole = decode_native(&audio_fixture("source.flac"), Window::default());
    let window = Window {
        start: Some(0.5),
        end: Some(1.25),
        ..Window::default()
    };
    let part = decode_native(&audio_fixture("source.flac"), window);
    // Seconds to samples by flooring: 11025 to 27562.
    assert_eq!(part.samples, whole.samples[11_025..27_562]);
    // Resampled as decoded: the window's samples resampled, as if they were all the file held.
    let resampled = decode(&audio_fixture("source.flac"), window).unwrap();
    assert_eq!(
        resampled.samples,
        resample(&whole.samples[11_025..27_562], 22_050, 16_000)
    );
    assert_eq!(resampled.seconds(), (27_562 - 11_025) as f64 / 22_050.0);
    // An --end past the end keeps what there is.
    let tail = Window {
        start: Some(1.5),
        end: Some(9.0),
        ..Window::default()
    };
    let part = decode_native(&audio_fixture("source.flac"), tail);
    assert_eq!(part.samples, whole.samples[33_075..]);
    let resampled = decode(&audio_fixture("source.flac"), tail).unwrap();
    assert_eq!(
        resampled.samples,
        resample(&whole.samples[33_075..], 22_050, 16_000)
    );
}

#[test]
fn official_names_are_checked_against_their_hash() {
    use sha2::{Digest, Sha256};
    use soundalike::audio::weights::hash_mismatch;
    let dir = tempfile::tempdir().unwrap();
    let bytes = b"not really weights";
    let prefix: String = Sha256::digest(bytes)[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let right = write(dir.path(), &format!("vggish-{prefix}.pth"), bytes);
    assert_eq!(hash_mismatch(&right).unwrap(), None);
    let wrong = write(dir.path(), "vggish-10086976.pth", bytes);
    assert_eq!(
        hash_mismatch(&wrong).unwrap(),
        Some(("10086976".to_string(), prefix))
    );
    // A name without a hash is not checked.
    let plain = write(dir.path(), "vggish.safetensors", bytes);
    assert_eq!(hash_mismatch(&plain).unwrap(), None);
}
