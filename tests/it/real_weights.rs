//! The smoke check of the TensorFlow reference (`vggish_smoke_test.py`), run only where the real weights are:
//! `SOUNDALIKE_WEIGHTS` and `SOUNDALIKE_PCA` naming torchvggish's `vggish-10086976.pth` and Google's
//! `vggish_pca_params.npz` (they cannot be downloaded on the build machines, so elsewhere this test reports a skip,
//! `needs weights`). 3 s of a 1 kHz sine at 16 kHz must give a raw embedding of mean 0.000657 and std 0.343, and an 8-bit
//! one of mean 126.0 and std 89.3, within 10% (fixtures/vggish-golden/README.md).

use std::path::PathBuf;

use crate::common;

use soundalike::audio::{Embedder, LogMel};

fn real_weights() -> Option<(PathBuf, PathBuf)> {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    match (var("SOUNDALIKE_WEIGHTS"), var("SOUNDALIKE_PCA")) {
        (Some(weights), Some(pca)) => Some((weights, pca)),
        _ => {
            common::skip(
                "weights",
                "set SOUNDALIKE_WEIGHTS and SOUNDALIKE_PCA to vggish-10086976.pth and vggish_pca_params.npz",
            );
            None
        }
    }
}

/// The reference's signal: `sin(2 pi 1000 t)` for 3 s at 16 kHz.
fn sine() -> Vec<f64> {
    (0..48_000)
        .map(|i| (2.0 * std::f64::consts::PI * 1000.0 * f64::from(i) / 16_000.0).sin())
        .collect()
}

fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

fn assert_near(what: &str, actual: f64, expected: f64, tolerance: f64) {
    assert!(
        (actual - expected).abs() <= tolerance,
        "{what}: {actual}, expected {expected} within {tolerance}"
    );
}

#[test]
fn the_real_weights_pass_the_references_smoke_check() {
    let Some((weights, pca)) = real_weights() else {
        return;
    };
    let embedder = Embedder::load(&weights, &pca).unwrap();
    let examples = LogMel::new().examples(&sine());
    assert_eq!(examples.len(), 3);
    let raw: Vec<f64> = embedder
        .vggish
        .embed(&examples, |_| {})
        .unwrap()
        .iter()
        .flatten()
        .map(|&v| f64::from(v))
        .collect();
    let (mean, std) = mean_std(&raw);
    // 10% of a mean this close to 0 is below float noise: the mean is held to 10% of the std instead.
    assert_near("raw mean", mean, 0.000657, 0.1 * 0.343);
    assert_near("raw std", std, 0.343, 0.1 * 0.343);

    // Through the binary, from a 16-bit WAV of the same signal.
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("sine.wav");
    let samples: Vec<i16> = sine()
        .iter()
        .map(|s| (s * 32767.0).round() as i16)
        .collect();
    std::fs::write(&wav, common::wav_bytes(&samples, 16_000)).unwrap();
    let run = common::run(&["embed".as_ref(), wav.as_os_str()]);
    run.assert_ok();
    let rows: Vec<Vec<u8>> = serde_json::from_value(run.lines()[0]["embedding"].clone()).unwrap();
    let values: Vec<f64> = rows.iter().flatten().map(|&v| f64::from(v)).collect();
    let (mean, std) = mean_std(&values);
    assert_near("8-bit mean", mean, 126.0, 12.6);
    assert_near("8-bit std", std, 89.3, 8.93);
}
