//! Audio files to 16 kHz mono samples: symphonia's demuxers and decoders (WAV, FLAC, MP3, Ogg Vorbis), every
//! channel averaged, in f64, resampled as they are decoded.
//!
//! The reference (`vggish_input.wavfile_to_examples`) reads 16-bit PCM and divides by 32768; symphonia converts
//! i16 to f64 the same way (`s / 32768.0`), so a WAV decodes to exactly the samples the reference sees. Other
//! sample formats use symphonia's conversion to [-1, 1). Channels are averaged before resampling, as the
//! reference does (`np.mean(data, axis=1)`).
//!
//! Each packet is averaged to mono and handed to a [`Sink`] as it is decoded, never gathered at the file's own
//! rate: a FLAC of 194 KB can claim 599 s of 8 channels at 192 kHz, 0.9 GB as f64, where the same 599 s at
//! 16 kHz are 77 MB. [`decode`] and [`decode_bytes`] feed a [`Resampler`], which keeps only the inputs its filter
//! still reaches and returns, bit for bit, what resampling the whole file at once would.

use std::fs::File;
use std::path::Path;

use symphonia::core::codecs::audio::AudioDecoderOptions;
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, TrackType};
use symphonia::core::io::{MediaSource, MediaSourceStream};
use symphonia::core::meta::MetadataOptions;

use super::SAMPLE_RATE;
use super::resample::Resampler;

/// Decoded audio: mono samples, their rate, and the length of the stretch of the source they hold.
#[derive(Debug, Clone)]
pub struct Audio {
    pub samples: Vec<f64>,
    pub sample_rate: u32,
    seconds: f64,
}

impl Audio {
    /// Audio of `samples` at `sample_rate`.
    pub fn new(samples: Vec<f64>, sample_rate: u32) -> Audio {
        let seconds = samples.len() as f64 / f64::from(sample_rate);
        Audio {
            samples,
            sample_rate,
            seconds,
        }
    }

    /// Length in seconds: the source's frames over its own rate. Resampling rounds the count of samples down to
    /// a whole number at the new rate; the length said (and the clip's end time) does not move with it.
    pub fn seconds(&self) -> f64 {
        self.seconds
    }
}

/// Where a decode's samples go: each packet's frames inside the window, averaged to mono, as they are decoded.
pub trait Sink {
    fn push(&mut self, mono: &[f64]);
}

/// Resampled to the rate the resampler was made for.
impl Sink for Resampler {
    fn push(&mut self, mono: &[f64]) {
        Resampler::push(self, mono);
    }
}

/// Kept at the file's own rate: all of the window, 8 bytes a frame whatever the channels (for a host that
/// needs the file's own samples and has bounded the window).
impl Sink for Vec<f64> {
    fn push(&mut self, mono: &[f64]) {
        self.extend_from_slice(mono);
    }
}

/// Dropped: only the length is wanted.
impl Sink for () {
    fn push(&mut self, _: &[f64]) {}
}

/// What a [`decode_with`] decoded: the sink that took the samples, the file's rate, and the frames of the
/// window at that rate.
pub struct Decoded<S> {
    pub sink: S,
    pub rate: u32,
    pub frames: usize,
}

impl<S> Decoded<S> {
    /// The window's length in seconds.
    pub fn seconds(&self) -> f64 {
        self.frames as f64 / f64::from(self.rate)
    }
}

/// The part of a file to decode, in seconds from its start (`--start` and `--end`), and the most of it that
/// may be decoded (`--max-seconds`; `None`: `DEFAULT_MAX_SECONDS`, 20 minutes).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Window {
    pub start: Option<f64>,
    pub end: Option<f64>,
    pub max_seconds: Option<f64>,
}

/// The longest stretch of audio decoded when no other limit is given: 20 minutes, more than nearly any song.
/// A second of audio is held as 16,000 samples of 8 bytes (128 KB) whatever the file's rate and channels, and its
/// log-mel frames and examples take 0.6 times that again: 20 minutes hold about 250 MB. A file's header can
/// claim 28 hours in 200 KB, so a file past the limit is refused, from its header where it states its length,
/// before a sample is decoded.
pub const DEFAULT_MAX_SECONDS: f64 = 1200.0;

/// The lowest sample rate taken: below it a file is not audio VGGish can hear (its bands reach 7.5 kHz), and a
/// rate of 1 Hz would stretch 200 KB into a day of 16 kHz samples once resampled.
pub const MIN_SAMPLE_RATE: u32 = 4000;

/// The highest sample rate taken, the highest any audio interface records at. Resampling's filter reaches
/// 50 / 16,000 s either side of each output, so its cost grows with the rate: at 768 kHz 4,800 multiplications
/// a 16 kHz sample, and a header claiming 4 GHz would ask for 27 million.
pub const MAX_SAMPLE_RATE: u32 = 768_000;

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
    /// A sample rate below `MIN_SAMPLE_RATE` (4 kHz), refused from the header (a rate of 1 Hz would make a short
    /// file hours of audio).
    RateTooLow(u32),
    /// A sample rate above `MAX_SAMPLE_RATE` (768 kHz), refused from the header.
    RateTooHigh(u32),
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
            DecodeError::RateTooHigh(rate) => write!(
                f,
                "unsupported audio: a sample rate of {rate} Hz (soundalike takes {MAX_SAMPLE_RATE} Hz at most)"
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

/// Refuses a sample rate outside [`MIN_SAMPLE_RATE`] to [`MAX_SAMPLE_RATE`].
fn check_rate(rate: u32) -> Result<(), DecodeError> {
    if rate < MIN_SAMPLE_RATE {
        return Err(DecodeError::RateTooLow(rate));
    }
    if rate > MAX_SAMPLE_RATE {
        return Err(DecodeError::RateTooHigh(rate));
    }
    Ok(())
}

/// Decodes `path` (or the part of it inside `window`) to mono f64 samples at 16 kHz, VGGish's rate, resampled
/// as they are decoded (see the module's note): the memory held is the window's seconds at 16 kHz, not at the
/// file's own rate and channels.
pub fn decode(path: &Path, window: Window) -> Result<Audio, DecodeError> {
    decode_with(path, window, resampler).map(audio)
}

/// Decodes audio held in memory, as [`decode`] decodes a file: for a host that must not write what it was
/// sent to disk (a server's upload). The same checks and errors, the length stated in a header refused before
/// any sample is decoded.
pub fn decode_bytes<B>(bytes: B, window: Window) -> Result<Audio, DecodeError>
where
    B: AsRef<[u8]> + Send + Sync + 'static,
{
    let source = Box::new(std::io::Cursor::new(bytes));
    decode_source(source, None, window, resampler).map(audio)
}

/// Decodes `path` within `window` into the sink `make` returns for the file's sample rate: the same checks and
/// errors as [`decode`], for a host that wants the samples otherwise (at the file's own rate, or not at all).
pub fn decode_with<S: Sink>(
    path: &Path,
    window: Window,
    make: impl FnMut(u32) -> S,
) -> Result<Decoded<S>, DecodeError> {
    let file = File::open(path).map_err(DecodeError::Io)?;
    // The extension only orders the probe's guesses; the content decides.
    let extension = path.extension().and_then(|e| e.to_str());
    decode_source(Box::new(file), extension, window, make)
}

fn resampler(rate: u32) -> Resampler {
    Resampler::new(rate, SAMPLE_RATE)
}

fn audio(decoded: Decoded<Resampler>) -> Audio {
    let seconds = decoded.seconds();
    Audio {
        samples: decoded.sink.finish(),
        sample_rate: SAMPLE_RATE,
        seconds,
    }
}

fn decode_source<S: Sink>(
    source: Box<dyn MediaSource>,
    extension: Option<&str>,
    window: Window,
    mut make: impl FnMut(u32) -> S,
) -> Result<Decoded<S>, DecodeError> {
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

    // One packet's frames averaged to mono; only the window's part of them goes on to the sink, made once the
    // rate is known (the header's, or the first packet's).
    let mut mono: Vec<f64> = Vec::new();
    let mut planes: Vec<Vec<f64>> = Vec::new();
    let mut sink: Option<S> = None;
    // Frames decoded from the file's start, those before `--start` included.
    let mut decoded = 0usize;
    let mut stopped_early = false;
    loop {
        let packet = match format.next_packet() {
            Ok(Some(packet)) => packet,
            Ok(None) => break,
            // A stream that stops mid-packet: what came before is counted to say how much there was.
            Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(DecodeError::Truncated(format!(
                    "the stream ends after {:.2} s",
                    decoded as f64 / f64::from(rate.unwrap_or(1).max(1))
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
        let packet_rate = match rate {
            Some(rate) => rate,
            None => {
                let spec_rate = buffer.spec().rate();
                check_rate(spec_rate)?;
                rate = Some(spec_rate);
                spec_rate
            }
        };
        buffer.copy_to_vecs_planar::<f64>(&mut planes);
        let channels = planes.len().max(1) as f64;
        let frames = planes.first().map_or(0, Vec::len);
        mono.clear();
        mono.extend((0..frames).map(|i| planes.iter().map(|p| p[i]).sum::<f64>() / channels));
        // Frames before --start are dropped as they come, and those past --end are not kept: a window an hour
        // into a file holds only the window.
        let (first, end) = window.samples(packet_rate);
        let from = first.clamp(decoded, decoded + frames) - decoded;
        let to = end.map_or(frames, |end| end.clamp(decoded, decoded + frames) - decoded);
        let sink = sink.get_or_insert_with(|| make(packet_rate));
        sink.push(&mono[from..to.max(from)]);
        decoded += frames;
        let kept = decoded.saturating_sub(first) as f64 / f64::from(packet_rate);
        if kept > window.max_seconds() && end.is_none_or(|end| end > decoded) {
            return Err(DecodeError::TooLong {
                seconds: kept,
                max: window.max_seconds(),
            });
        }
        // Stop decoding once past --end: a 10-second window of a long file needs only its start decoded.
        if end.is_some_and(|end| decoded >= end) {
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
    let sink = sink.unwrap_or_else(|| make(sample_rate));
    Ok(Decoded {
        sink,
        rate: sample_rate,
        frames: end.saturating_sub(first),
    })
}
