//! Uploads: a multipart form read into memory (never to disk) within `--max-upload`, and its audio decoded
//! within `--max-seconds`, each refusal with its own status: 413 too large, 415 not audio, 422 too long (from
//! the header, before a sample is decoded), 400 otherwise.

use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::{HeaderMap, StatusCode, header};
use soundalike::audio::{Audio, DecodeError, Window, decode_bytes};

use super::body::Verdict;
use super::errors::ApiError;

/// An uploaded file, held in memory.
pub struct Upload {
    /// The name the client gave it (shown in errors; never used as a path).
    pub name: String,
    pub bytes: Bytes,
}

/// A form's fields: the file in `audio`, if one was chosen, and the text fields.
#[derive(Default)]
pub struct Form {
    pub audio: Option<Upload>,
    pub fields: Vec<(String, String)>,
    /// An embedding sent as JSON rows, parsed straight into numbers (see [`super::json`]).
    pub rows: Option<Vec<Vec<f32>>>,
}

impl Form {
    /// The first value of the text field `name` that is not blank, as sent: an id is taken as given (a clip's id
    /// may hold any characters), and each reader of a number trims its own field.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, v)| n == name && !v.trim().is_empty())
            .map(|(_, v)| v.as_str())
    }
}

/// The body's length as the request states it (`None`: chunked, or not a number).
pub fn stated_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// Refuses a request whose stated length is past the limit before any of its body is read.
pub fn check_length(headers: &HeaderMap, limit: usize) -> Result<(), ApiError> {
    match stated_length(headers) {
        Some(length) if length > limit as u64 => Err(too_large(limit)),
        _ => Ok(()),
    }
}

pub fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "the request is larger than the {} MB this server takes",
            limit / 1_000_000
        ),
    )
}

/// Reads and drops the body of a request refused before its body was read (a full embedding pool), up to
/// `limit` bytes, so that the client, which is still sending it, reads the refusal rather than a broken
/// connection. Dropped as it comes, never held: a burst of refused 50 MB uploads costs no memory. A client that
/// asked to be told before sending (`Expect: 100-continue`, as curl does for large bodies) sends nothing more.
pub async fn discard_body(request: Request, limit: usize) {
    use http_body_util::BodyExt;
    Verdict::of(&request).dropping();
    let expects = request
        .headers()
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if expects {
        return;
    }
    let mut body = request.into_body();
    let mut read = 0usize;
    while let Some(Ok(frame)) = body.frame().await {
        read += frame.data_ref().map_or(0, |data| data.len());
        if read > limit {
            break;
        }
    }
}

/// The request's media type (`type/subtype`, lower case, without parameters), if it states one that parses.
pub fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let parsed: mime::Mime = value.parse().ok()?;
    Some(parsed.essence_str().to_ascii_lowercase())
}

/// Whether the request says it is a multipart form.
pub fn is_multipart(headers: &HeaderMap) -> bool {
    media_type(headers).is_some_and(|t| t == "multipart/form-data")
}

/// Reads a multipart form whole into memory. An empty file field (a form sent without choosing a file) is no
/// file.
pub async fn read_form(request: Request, limit: usize) -> Result<Form, ApiError> {
    check_length(request.headers(), limit)?;
    let verdict = Verdict::of(&request);
    if !is_multipart(request.headers()) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected a multipart/form-data upload with the audio in the field `audio`",
        ));
    }
    let mut multipart = Multipart::from_request(request, &())
        .await
        .map_err(|e| ApiError::bad(format!("cannot read the form: {}", e.body_text())))?;
    let mut form = Form::default();
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| verdict.or(read_error(e, limit)))?
    {
        let name = field.name().unwrap_or_default().to_string();
        let file_name = field.file_name().map(str::to_string);
        let bytes = field
            .bytes()
            .await
            .map_err(|e| verdict.or(read_error(e, limit)))?;
        if name == "audio" {
            if !bytes.is_empty() && form.audio.is_none() {
                form.audio = Some(Upload {
                    name: file_name
                        .filter(|n| !n.is_empty())
                        .unwrap_or_else(|| "the upload".to_string()),
                    bytes,
                });
            }
        } else if file_name.is_some() {
            // A file in another field is not asked about (MAX reads `audio` only); it is dropped, and a
            // missing `audio` is said as such.
            continue;
        } else {
            let text = String::from_utf8(bytes.to_vec())
                .map_err(|_| ApiError::bad(format!("the field {name} is not UTF-8 text")))?;
            form.fields.push((name, text));
        }
    }
    Ok(form)
}

fn read_error(error: axum::extract::multipart::MultipartError, limit: usize) -> ApiError {
    if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
        too_large(limit)
    } else {
        ApiError::from(error)
    }
}

/// The upload decoded within `window` (in memory, from its bytes), or the refusal's status and words, which
/// name the upload as the command line names a file.
pub fn decode(upload: &Upload, window: Window) -> Result<Audio, ApiError> {
    let audio = decode_bytes(upload.bytes.clone(), window).map_err(|error| {
        let status = match &error {
            DecodeError::NotAudio | DecodeError::Unsupported(_) => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            DecodeError::TooLong { .. }
            | DecodeError::RateTooLow(_)
            | DecodeError::RateTooHigh(_) => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::BAD_REQUEST,
        };
        // The library's words name the command line's options; a request has fields.
        let words = match error {
            DecodeError::StartPastEnd { start, length } => {
                format!("start {start} is past the end of the audio ({length:.2} s long)")
            }
            DecodeError::TooLong { seconds, max } => format!(
                "{seconds:.0} s of audio or more is longer than the {max} s this server takes (send start \
                 and end to ask about a part)"
            ),
            other => other.to_string(),
        };
        ApiError::new(status, format!("{}: {words}", upload.name))
    })?;
    if let Some(why) = soundalike::audio::source::too_short(&audio) {
        return Err(ApiError::bad(format!("{}: {why}", upload.name)));
    }
    Ok(audio)
}
