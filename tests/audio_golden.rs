//! The audio front end against the golden files torchvggish's front end (with resampy) made from `tone.wav`:
//! see fixtures/vggish-golden/README.md. The targets are issue 11's: the 16 kHz signal within 1e-6, log-mel
//! within 1e-4.

use std::path::PathBuf;

use soundalike::audio::{self, EXAMPLE_FRAMES, LogMel, MEL_BANDS, resample};

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/vggish-golden")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A `.npy` file (version 1 or 2 header) of little-endian f4 or f8, C order: its shape and values as f64.
fn read_npy(name: &str) -> (Vec<usize>, Vec<f64>) {
    let bytes = fixture(name);
    assert_eq!(&bytes[..6], b"\x93NUMPY", "{name}: not a .npy file");
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        _ => (
            u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize,
            12,
        ),
    };
    let header = std::str::from_utf8(&bytes[start..start + header_len]).unwrap();
    assert!(
        header.contains("'fortran_order': False"),
        "{name}: {header}"
    );
    let shape_text = header
        .split("'shape': (")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap();
    let shape: Vec<usize> = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    let data = &bytes[start + header_len..];
    let values: Vec<f64> = if header.contains("'<f8'") {
        data.chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
            .collect()
    } else if header.contains("'<f4'") {
        data.chunks_exact(4)
            .map(|c| f64::from(f32::from_le_bytes(c.try_into().unwrap())))
            .collect()
    } else {
        panic!("{name}: unsupported dtype in {header}");
    };
    assert_eq!(values.len(), shape.iter().product::<usize>(), "{name}");
    (shape, values)
}

/// A 16-bit PCM WAV: the channels averaged to mono after `/ 32768`, as torchvggish reads it, and the rate.
fn read_wav_mono(name: &str) -> (Vec<f64>, u32) {
    let bytes = fixture(name);
    assert_eq!((&bytes[..4], &bytes[8..12]), (&b"RIFF"[..], &b"WAVE"[..]));
    let (mut channels, mut rate, mut data) = (0usize, 0u32, None);
    let mut pos = 12;
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let len = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().unwrap()) as usize;
        let body = &bytes[pos + 8..pos + 8 + len];
        match id {
            b"fmt " => {
                assert_eq!(u16::from_le_bytes([body[0], body[1]]), 1, "PCM");
                channels = u16::from_le_bytes([body[2], body[3]]) as usize;
                rate = u32::from_le_bytes(body[4..8].try_into().unwrap());
                assert_eq!(u16::from_le_bytes([body[14], body[15]]), 16, "16-bit");
            }
            b"data" => data = Some(body),
            _ => {}
        }
        pos += 8 + len + len % 2;
    }
    let samples = data
        .expect("data chunk")
        .chunks_exact(2 * channels)
        .map(|frame| {
            let sum: f64 = frame
                .chunks_exact(2)
                .map(|s| f64::from(i16::from_le_bytes([s[0], s[1]])) / 32768.0)
                .sum();
            sum / channels as f64
        })
        .collect();
    (samples, rate)
}

fn max_abs_diff(a: impl IntoIterator<Item = f64>, b: &[f64]) -> f64 {
    a.into_iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

#[test]
fn resampling_matches_resampy_kaiser_best() {
    let (x, rate) = read_wav_mono("tone.wav");
    assert_eq!((x.len(), rate), (220_500, 44_100));
    let (shape, golden) = read_npy("resampy16k.npy");
    let y = resample::resample(&x, rate, 16_000);
    assert_eq!(vec![y.len()], shape);
    let err = max_abs_diff(y.iter().copied(), &golden);
    eprintln!("resampling: max |error| {err:e}");
    assert!(err < 1e-6, "max error {err:e}");
}

#[test]
fn log_mel_examples_match_torchvggish() {
    let (x, rate) = read_wav_mono("tone.wav");
    let (shape, golden) = read_npy("logmel_examples.npy");
    let examples = audio::examples(&x, rate, &LogMel::new());
    assert_eq!(vec![examples.len(), EXAMPLE_FRAMES, MEL_BANDS], shape);
    let ours = examples
        .iter()
        .flat_map(|e| e.iter().flatten().map(|&v| f64::from(v)));
    let err = max_abs_diff(ours, &golden);
    eprintln!("log-mel: max |error| {err:e}");
    assert!(err < 1e-4, "max error {err:e}");
}
