//! A client of IBM's MAX Audio Embedding Generator (`--service URL`), the original project's way to embed audio:
//! a Docker container running the TensorFlow reference, which takes a WAV file as the multipart field `audio`
//! of `POST /model/predict` and answers `{"status": "ok", "embedding": [[...128 values...], ...]}`, one 8-bit row
//! per 0.96 s.
//!
//! The service reads 16-bit PCM WAV only, so every input is decoded here first (any format `embed` reads, the
//! same errors for a bad file) and sent as a mono 16-bit WAV at its own rate; the service resamples it as the
//! reference does. For a WAV of 16-bit samples this is the file's own samples, channels averaged. They are
//! quantized to 16 bits as they are decoded ([`Pcm16`]), so a file is held at 2 bytes a frame of its window,
//! as the WAV sent, whatever its channels. Plain HTTP only: the container serves HTTP, and TLS would add a TLS
//! stack to every build.

use std::time::Duration;

use anyhow::{Result, anyhow, bail};

use super::decode::Sink;
use super::weights::EMBEDDING_LEN;

/// The MAX model's endpoint, added to a URL given without a path.
pub const PREDICT_PATH: &str = "/model/predict";

/// How long one file may take: the container embeds on the CPU, about real time / 5 on a small machine, so a
/// 30-minute song takes about 6 minutes. `SOUNDALIKE_SERVICE_TIMEOUT` (seconds) sets another.
const TIMEOUT: Duration = Duration::from_secs(600);

/// [`TIMEOUT`], or `SOUNDALIKE_SERVICE_TIMEOUT` seconds where that is set to a number.
fn timeout() -> Duration {
    std::env::var("SOUNDALIKE_SERVICE_TIMEOUT")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map_or(TIMEOUT, Duration::from_secs)
}
/// How long a connection may take to open: a host that does not answer at all is not slow, it is wrong.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a read may wait for its next bytes once the answer has begun: a service that sends its headers and
/// then stalls would otherwise hold the run until [`TIMEOUT`].
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// The largest answer read: a 10-minute song's embedding is about 400 KB of JSON.
const MAX_ANSWER: u64 = 64 << 20;

/// Separates the multipart body's parts; it must not occur in the body, which it cannot here: the only part is
/// a WAV whose bytes follow a length-prefixed header, and a run of 40 `-` and letters is vanishingly unlikely
/// in 16-bit samples (the service's parser finds the first occurrence after the part's headers).
const BOUNDARY: &str = "soundalike-Kx7qT2vN9wB4mZ8rL3pJ6yH1cF5dG0s";

/// The embedding service at a URL.
pub struct Service {
    url: String,
    agent: ureq::Agent,
}

impl Service {
    /// `url` as given, with `/model/predict` added when it has no path (`http://localhost:5000`). An error
    /// (a usage error for the caller) when it is not an http:// URL.
    pub fn new(url: &str) -> Result<Service, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| match url.split_once("://") {
                Some(("https", _)) => format!(
                    "--service {url}: https is not supported (the MAX container serves plain http; use \
                     http://HOST:PORT)"
                ),
                _ => format!("--service {url}: not an http:// URL (e.g. http://localhost:5000)"),
            })?;
        if rest.is_empty() || rest.starts_with('/') {
            return Err(format!("--service {url}: no host"));
        }
        let url = match rest.find('/') {
            Some(slash) if !rest[slash..].trim_end_matches('/').is_empty() => url.to_string(),
            _ => format!("http://{}{PREDICT_PATH}", rest.trim_end_matches('/')),
        };
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout()))
            .timeout_connect(Some(CONNECT_TIMEOUT.min(timeout())))
            .timeout_recv_body(Some(READ_TIMEOUT.min(timeout())))
            .timeout_per_read(Some(READ_TIMEOUT.min(timeout())))
            // Error answers carry the service's message in their body; they are read, not turned into errors.
            .http_status_as_error(false)
            .build()
            .into();
        Ok(Service { url, agent })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The service's 8-bit rows for `audio`, mono samples at `rate`. Errors say what went wrong with the
    /// service, for the caller to prefix with the file's name.
    pub(crate) fn embed(&self, audio: &Pcm16, rate: u32) -> Result<Vec<[u8; EMBEDDING_LEN]>> {
        let url = &self.url;
        let body = multipart_wav(audio, rate);
        let mut response = self
            .agent
            .post(url)
            .content_type(format!("multipart/form-data; boundary={BOUNDARY}"))
            .send(&body[..])
            .map_err(|e| match e {
                ureq::Error::Timeout(_) => anyhow!(
                    "the embedding service at {url} did not answer within {} s (or did not connect \
                     within {} s)",
                    timeout().as_secs(),
                    CONNECT_TIMEOUT.min(timeout()).as_secs()
                ),
                e => anyhow!("the embedding service at {url} cannot be reached: {e}"),
            })?;
        let status = response.status();
        let text = response
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER)
            .lossy_utf8(true)
            .read_to_string()
            .map_err(|e| match e {
                ureq::Error::Timeout(_) => anyhow!(
                    "the embedding service at {url} stalled: no data for {} s in its answer",
                    READ_TIMEOUT.min(timeout()).as_secs()
                ),
                e => anyhow!("the embedding service at {url} sent no complete answer: {e}"),
            })?;
        if !status.is_success() {
            bail!(
                "the embedding service at {url} answered HTTP {}: {}",
                status.as_u16(),
                service_message(&text)
            );
        }
        let rows = crate::clip::embedding_rows(&text)
            .map_err(|e| anyhow!("the embedding service at {url} answered {e}"))?;
        rows.iter()
            .enumerate()
            .map(|(i, row)| {
                let bytes: Vec<u8> = row
                    .iter()
                    .map(|&v| {
                        (v.fract() == 0.0 && (0.0..=255.0).contains(&v))
                            .then_some(v as u8)
                            .ok_or_else(|| {
                                anyhow!(
                                    "the embedding service at {url} answered row {i} holding {v}, not a \
                                     value 0..255"
                                )
                            })
                    })
                    .collect::<Result<_>>()?;
                bytes.try_into().map_err(|bytes: Vec<u8>| {
                    anyhow!(
                        "the embedding service at {url} answered row {i} of {} values, not \
                         {EMBEDDING_LEN}",
                        bytes.len()
                    )
                })
            })
            .collect()
    }
}

/// What an error answer says: its JSON `message` (the MAX API's error form), else its first 200 characters.
fn service_message(text: &str) -> String {
    let message = serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(String::from));
    let message = message.unwrap_or_else(|| text.trim().chars().take(200).collect());
    if message.is_empty() {
        "(no message)".into()
    } else {
        message.escape_debug().to_string()
    }
}

/// Mono samples as 16-bit integers, the service's input.
#[derive(Debug, Default)]
pub struct Pcm16(pub Vec<i16>);

impl Pcm16 {
    pub fn from_samples(samples: &[f64]) -> Pcm16 {
        let mut pcm = Pcm16::default();
        pcm.push(samples);
        pcm
    }
}

/// Quantized as decoded: the inverse of decoding's s / 32768, so a 16-bit WAV goes out as it came in.
impl Sink for Pcm16 {
    fn push(&mut self, mono: &[f64]) {
        self.0.extend(
            mono.iter()
                .map(|&s| (s * 32768.0).round().clamp(-32768.0, 32767.0) as i16),
        );
    }
}

/// A mono 16-bit PCM WAV of the samples at `rate`: the format the service reads.
pub fn wav_bytes(audio: &Pcm16, rate: u32) -> Vec<u8> {
    let mut wav = Vec::with_capacity(44 + audio.0.len() * 2);
    write_wav(&mut wav, audio, rate);
    wav
}

/// Appends [`wav_bytes`] to `wav`.
fn write_wav(wav: &mut Vec<u8>, audio: &Pcm16, rate: u32) {
    let data_len = audio.0.len() * 2;
    let mut put = |bytes: &[u8]| wav.extend_from_slice(bytes);
    put(b"RIFF");
    put(&(36 + data_len as u32).to_le_bytes());
    put(b"WAVEfmt ");
    put(&16u32.to_le_bytes());
    put(&1u16.to_le_bytes()); // PCM
    put(&1u16.to_le_bytes()); // mono
    put(&rate.to_le_bytes());
    put(&(rate * 2).to_le_bytes()); // bytes per second
    put(&2u16.to_le_bytes()); // bytes per frame
    put(&16u16.to_le_bytes());
    put(b"data");
    put(&(data_len as u32).to_le_bytes());
    for &v in &audio.0 {
        wav.extend_from_slice(&v.to_le_bytes());
    }
}

/// The multipart/form-data body with the WAV of `audio` as the field `audio`, written in place: one copy of
/// the samples beside the decoded ones, not two.
fn multipart_wav(audio: &Pcm16, rate: u32) -> Vec<u8> {
    let head = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"audio\"; filename=\"audio.wav\"\r\n\
         Content-Type: audio/wav\r\n\r\n"
    );
    let tail = format!("\r\n--{BOUNDARY}--\r\n");
    let mut body = Vec::with_capacity(head.len() + 44 + audio.0.len() * 2 + tail.len());
    body.extend_from_slice(head.as_bytes());
    write_wav(&mut body, audio, rate);
    body.extend_from_slice(tail.as_bytes());
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_without_a_path_gets_the_predict_endpoint() {
        let url = |u: &str| Service::new(u).map(|s| s.url().to_string());
        assert_eq!(
            url("http://localhost:5000").unwrap(),
            "http://localhost:5000/model/predict"
        );
        assert_eq!(
            url("http://localhost:5000/").unwrap(),
            "http://localhost:5000/model/predict"
        );
        assert_eq!(
            url("http://h:1/model/predict").unwrap(),
            "http://h:1/model/predict"
        );
        assert!(
            url("https://h")
                .unwrap_err()
                .contains("https is not supported")
        );
        assert!(
            url("localhost:5000")
                .unwrap_err()
                .contains("not an http:// URL")
        );
        assert!(url("http://").unwrap_err().contains("no host"));
    }

    #[test]
    fn a_wav_is_16_bit_mono_at_the_audios_rate() {
        let audio = Pcm16::from_samples(&[0.0, 0.5, -1.0, 1.0]);
        let wav = wav_bytes(&audio, 44_100);
        assert_eq!(wav.len(), 44 + 8);
        assert_eq!(&wav[24..28], &44_100u32.to_le_bytes());
        let samples: Vec<i16> = wav[44..]
            .chunks(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect();
        assert_eq!(samples, [0, 16384, -32768, 32767]);
    }
}
