//! Audio files to mono samples: symphonia's demuxers and decoders (WAV, FLAC, MP3, Ogg Vorbis), every channel
//! averaged, in f64.
//!
//! The reference (`vggish_input.wavfile_to_examples`) reads 16-bit PCM and divides by 32768; symphonia converts
//! i16 to f64 the same way (`s / 32768.0`), so a WAV decodes to exactly the samples the reference sees. Other
//! sample formats use symphonia's conversion to [-1, 1). Channels are averaged before resampling, as the
//! reference does (`np.mean(data, axis=1)`).

use std::fs::File;
use std::path::Path;

use symphonia::core::codecs::audio::AudioDecoderOptions;
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, TrackType};
use symphonia::core::io::{MediaSource, MediaSourceStream};
use symphonia::core::meta::MetadataOptions;

/// A decoded file: mono samples and their rate.
#[derive(Debug, Clone)]
pub struct Audio {
    pub samples: Vec<f64>,
    pub sample_rate: u32,
}

impl Audio {
    /// Length in seconds.
    pub fn seconds(&self) -> f64 {
        self.samples.len() as f64 / f64::from(self.sample_rate)
    }
}

/// The part of a file to decode, in seconds from its start (`--start` and `--end`), and the most of it that
/// may be decoded (`--max-seconds`; `None`: [`DEFAULT_MAX_SECONDS`]).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Window {
    pub start: Option<f64>,
    pub end: Option<f64>,
    pub max_seconds: Option<f64>,
}

/// The longest stretch of audio decoded when no other limit is given: 20 minutes, more than nearly any song.
/// Decoded samples take 8 bytes each, and resampling and framing several times that: a file's header can claim
/// 28 hours in 200 KB (a rate of 1 Hz), or a 6-hour WAV would need about 5 GB, so a file past the limit is
/// refused, from its header where it states its length, before its samples are held.
pub const DEFAULT_MAX_SECONDS: f64 = 1200.0;

/// The lowest sample rate taken: below it a file is not audio VGGish can hear (its bands reach 7.5 kHz), and a
/// rate of 1 Hz would stretch 200 KB into a day of 16 kHz samples once resampled.
pub const MIN_SAMPLE_RATE: u32 = 4000;

impl Window {
    /// The most seconds of audio decoded.
    pub fn max_seconds(&self) -> f64 {
        self.max_seconds.unwrap_or(DEFAULT_MAX_SECONDS)
    }

    /// Why this window is impossible whatever the file (a usage error), if it is.
    pub fn check(&self) -> Result<(), String> {
        if let Some(max) = self.max_seconds
            && !(max.is_finite() && max > 0.0)
        {
            return Err(format!(
                "--max-seconds {max} is not a length in seconds (more than 0)"
            ));
        }
        for (name, value) in [("--start", self.start), ("--end", self.end)] {
            if let Some(v) = value
                && !(v.is_finite() && v >= 0.0)
            {
                return Err(format!("{name} {v} is not a time in seconds (0 or more)"));
            }
        }
        if let (Some(start), Some(end)) = (self.start, self.end)
            && end <= start
        {
            return Err(format!("--end {end} is not after --start {start}"));
        }
        Ok(())
    }

    /// The first sample index at `rate` and the index one past the last (None: to the end).
    fn samples(&self, rate: u32) -> (usize, Option<usize>) {
        // Seconds to samples by flooring, as slicing `x[int(start * sr):int(end * sr)]` would.
        let at = |seconds: f64| (seconds * f64::from(rate)).floor() as usize;
        (self.start.map_or(0, at), self.end.map(at))
    }
}

/// Why a file could not be decoded. The messages are written to follow "FILE: ".
#[derive(Debug)]
pub enum DecodeError {
    /// The file cannot be opened or read.
    Io(std::io::Error),
    /// No known container format.
    NotAudio,
    /// A container holding no audio track, or one whose codec is not built in.
    Unsupported(String),
    /// The stream ends before its container says it should, or its data is damaged.
    Truncated(String),
    /// A sample rate below [`MIN_SAMPLE_RATE`], refused from the header (a rate of 1 Hz would make a short
    /// file hours of audio).
    RateTooLow(u32),
    /// `--start` is at or past the end of the audio.
    StartPastEnd { start: f64, length: f64 },
    /// More audio than [`Window::max_seconds`] allows: at least `seconds`.
    TooLong { seconds: f64, max: f64 },
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Io(e) => write!(f, "cannot read: {e}"),
            DecodeError::NotAudio => {
                f.write_str("not an audio file soundalike can read (WAV, FLAC, MP3 or Ogg Vorbis)")
            }
            DecodeError::Unsupported(what) => write!(f, "unsupported audio: {what}"),
            DecodeError::Truncated(what) => write!(f, "truncated or damaged audio: {what}"),
            DecodeError::RateTooLow(rate) => write!(
                f,
                "unsupported audio: a sample rate of {rate} Hz (soundalike takes {MIN_SAMPLE_RATE} Hz or more)"
            ),
            DecodeError::StartPastEnd { start, length } => write!(
                f,
                "--start {start} is past the end of the audio ({length:.2} s long)"
            ),
            DecodeError::TooLong { seconds, max } => write!(
                f,
                "{seconds:.0} s of audio or more is longer than the {max} s allowed (--max-seconds, or \
                 --start and --end to take a part)"
            ),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Refuses a sample rate below [`MIN_SAMPLE_RATE`].
fn check_rate(rate: u32) -> Result<(), DecodeError> {
    if rate < MIN_SAMPLE_RATE {
        return Err(DecodeError::RateTooLow(rate));
    }
    Ok(())
}

/// Decodes `path` (or the part of it inside `window`) to mono f64 samples at the file's own rate.
pub fn decode(path: &Path, window: Window) -> Result<Audio, DecodeError> {
    let file = File::open(path).map_err(DecodeError::Io)?;
    // The extension only orders the probe's guesses; the content decides.
    let extension = path.extension().and_then(|e| e.to_str());
    decode_source(Box::new(file), extension, window)
}

/// Decodes audio held in memory, as [`decode`] decodes a file: for a host that must not write what it was
/// sent to disk (a server's upload). The same checks and errors, the length stated in a header refused before
/// any sample is decoded.
pub fn decode_bytes<B>(bytes: B, window: Window) -> Result<Audio, DecodeError>
where
    B: AsRef<[u8]> + Send + Sync + 'static,
{
    decode_source(Box::new(std::io::Cursor::new(bytes)), None, window)
}

fn decode_source(
    source: Box<dyn MediaSource>,
    extension: Option<&str>,
    window: Window,
) -> Result<Audio, DecodeError> {
    let stream = MediaSourceStream::new(source, Default::default());
    let mut hint = Hint::new();
    if let Some(extension) = extension {
        hint.with_extension(extension);
    }
    let mut format = symphonia::default::get_probe()
        .probe(
            &hint,
            stream,
            FormatOptions::default(),
            MetadataOptions::default(),
        )
        .map_err(|e| match e {
            // The probe scans for a known container's marker and says so when none is found.
            SymphoniaError::Unsupported(what) if what.contains("no suitable format reader") => {
                DecodeError::NotAudio
            }
            // A container the probe recognised but whose variant is not supported (WAV's format tags).
            SymphoniaError::Unsupported(what) => DecodeError::Unsupported(what.to_string()),
            // A marker was found and the file ends inside the header after it.
            SymphoniaError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                DecodeError::Truncated("the file ends inside its header".into())
            }
            SymphoniaError::IoError(e) => DecodeError::Io(e),
            other => DecodeError::Truncated(other.to_string()),
        })?;
    let track = format
        .default_track(TrackType::Audio)
        .ok_or_else(|| DecodeError::Unsupported("the file holds no audio track".into()))?;
    let track_id = track.id;
    let expected_frames = track.num_frames;
    let params = track
        .codec_params
        .as_ref()
        .and_then(|p| p.audio())
        .ok_or_else(|| DecodeError::Unsupported("the audio track has no codec parameters".into()))?
        .clone();
    let mut decoder = symphonia::default::get_codecs()
        .make_audio_decoder(&params, &AudioDecoderOptions::default())
        .map_err(|_| {
            DecodeError::Unsupported(
                "the codec is not one soundalike decodes (PCM, FLAC, MP3, Vorbis)".into(),
            )
        })?;
    let mut rate = params.sample_rate;
    if let Some(rate) = rate {
        check_rate(rate)?;
        // A length the header states is refused before anything is decoded.
        if let Some(frames) = expected_frames {
            let length = frames as f64 / f64::from(rate);
            let stretch = window.end.unwrap_or(length).min(length) - window.start.unwrap_or(0.0);
            if stretch > window.max_seconds() {
                return Err(DecodeError::TooLong {
                    seconds: stretch,
                    max: window.max_seconds(),
                });
            }
        }
    }

    let mut mono: Vec<f64> = Vec::new();
    // Samples before `--start` are dropped as they come: a window an hour into a file holds only the window.
    let mut dropped = 0usize;
    let mut planes: Vec<Vec<f64>> = Vec::new();
    let mut limit: Option<usize> = None;
    let mut stopped_early = false;
    loop {
        let packet = match format.next_packet() {
            Ok(Some(packet)) => packet,
            Ok(None) => break,
            // A stream that stops mid-packet: what came before is kept to say how much there was.
            Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(DecodeError::Truncated(format!(
                    "the stream ends after {:.2} s",
                    (dropped + mono.len()) as f64 / f64::from(rate.unwrap_or(1).max(1))
                )));
            }
            Err(SymphoniaError::IoError(e)) => return Err(DecodeError::Io(e)),
            Err(e) => return Err(DecodeError::Truncated(e.to_string())),
        };
        if packet.track_id != track_id {
            continue;
        }
        let buffer = match decoder.decode(&packet) {
            Ok(buffer) => buffer,
            Err(SymphoniaError::Unsupported(what)) => {
                return Err(DecodeError::Unsupported(what.to_string()));
            }
            Err(SymphoniaError::IoError(e)) => {
                return Err(DecodeError::Truncated(e.to_string()));
            }
            Err(e) => return Err(DecodeError::Truncated(e.to_string())),
        };
        let spec_rate = buffer.spec().rate();
        if rate.is_none() {
            check_rate(spec_rate)?;
            rate = Some(spec_rate);
        }
        buffer.copy_to_vecs_planar::<f64>(&mut planes);
        let channels = planes.len().max(1) as f64;
        let frames = planes.first().map_or(0, Vec::len);
        mono.extend((0..frames).map(|i| planes.iter().map(|p| p[i]).sum::<f64>() / channels));
        // Stop decoding once past --end: a 10-second window of a long file needs only its start decoded.
        if limit.is_none() {
            limit = window.samples(spec_rate).1;
        }
        let (first, _) = window.samples(spec_rate);
        if dropped < first {
            let drop = (first - dropped).min(mono.len());
            mono.drain(..drop);
            dropped += drop;
        }
        let decoded = dropped + mono.len();
        let kept = mono.len() as f64 / f64::from(spec_rate.max(1));
        if kept > window.max_seconds() && limit.is_none_or(|end| end > decoded) {
            return Err(DecodeError::TooLong {
                seconds: kept,
                max: window.max_seconds(),
            });
        }
        if limit.is_some_and(|end| decoded >= end) {
            stopped_early = true;
            break;
        }
    }
    let sample_rate = match rate {
        Some(rate) if rate > 0 => rate,
        _ => {
            return Err(DecodeError::Unsupported(
                "the audio track has no sample rate".into(),
            ));
        }
    };
    // A container that states its length (WAV's data chunk, FLAC's STREAMINFO) and delivered fewer frames was
    // cut short; symphonia's readers end such streams quietly.
    let decoded = dropped + mono.len();
    if let Some(expected) = expected_frames
        && !stopped_early
        && (decoded as u64) < expected
    {
        return Err(DecodeError::Truncated(format!(
            "the stream ends after {:.2} s of the {:.2} s its header announces",
            decoded as f64 / f64::from(sample_rate),
            expected as f64 / f64::from(sample_rate)
        )));
    }
    let (first, end) = window.samples(sample_rate);
    let length = decoded as f64 / f64::from(sample_rate);
    if window.start.is_some() && first >= decoded {
        return Err(DecodeError::StartPastEnd {
            start: window.start.unwrap_or(0.0),
            length,
        });
    }
    let end = end.unwrap_or(decoded).min(decoded);
    mono.truncate(end.saturating_sub(dropped));
    mono.drain(..first.saturating_sub(dropped));
    Ok(Audio {
        samples: mono,
        sample_rate,
    })
}
