//! A question as a request asks it (a query string, a JSON body, a form with or without a file), checked as the
//! command line checks its options, and its answer from the library. The API and the page both ask through here
//! and differ only in how they show the answer.

use axum::http::{HeaderMap, StatusCode, header};
use soundalike::audio::decode::Window;
use soundalike::audio::source::Embedded;
use soundalike::{Hit, Query, QueryOptions, clip, labels};

use super::errors::ApiError;
use super::queue::Permit;
use super::upload::{self, Form, Upload};
use super::{Server, Shared};

/// The most neighbours one question may ask for, as `recommend -k` allows.
const MAX_COUNT: usize = 10_000;

pub enum Asked {
    Id(String),
    Embedding { rows: Vec<Vec<f32>>, start: usize },
    Audio { upload: Upload, window: Window },
}

pub struct Question {
    pub asked: Asked,
    pub options: QueryOptions,
}

impl Question {
    /// The question a form's fields ask: the file in `audio` (with `start` and `end` in seconds), else `id`,
    /// else `embedding` (with `start`, a row); `k` and `label` as `recommend -k` and `--label` take them.
    pub fn from_form(mut form: Form, max_seconds: f64) -> Result<Question, ApiError> {
        let options = options(&form)?;
        let asked = if let Some(upload) = form.audio.take() {
            let window = Window {
                start: seconds(&form, "start")?,
                end: seconds(&form, "end")?,
                max_seconds: Some(max_seconds),
            };
            window.check().map_err(ApiError::bad)?;
            Asked::Audio { upload, window }
        } else if let Some(id) = form.get("id") {
            clip::check_id(id).map_err(|problem| ApiError::bad(format!("id: {problem}")))?;
            Asked::Id(id.to_string())
        } else if let Some(text) = form.get("embedding") {
            let start = match form.get("start") {
                None => 0,
                Some(row) => row.parse::<u32>().map_err(|_| {
                    ApiError::bad(format!(
                        "start {row}: with an embedding it is a row number (0, 1, ...)"
                    ))
                })? as usize,
            };
            let rows = clip::embedding_rows(text)
                .map_err(|e| ApiError::bad(format!("embedding: {e:#}")))?;
            Asked::Embedding { rows, start }
        } else {
            return Err(ApiError::bad(
                "nothing to ask: give an audio file (audio), a clip id (id) or an embedding (embedding)",
            ));
        };
        Ok(Question { asked, options })
    }

    /// How the answer names its query, as `recommend --json` does: the id, the file's name, or "embedding".
    pub fn name(&self) -> String {
        match &self.asked {
            Asked::Id(id) => id.clone(),
            Asked::Embedding { .. } => "embedding".to_string(),
            Asked::Audio { upload, .. } => upload.name.clone(),
        }
    }
}

/// The field `name` as seconds, if given.
fn seconds(form: &Form, name: &str) -> Result<Option<f64>, ApiError> {
    form.get(name)
        .map(|text| {
            text.parse::<f64>()
                .map_err(|_| ApiError::bad(format!("{name} {text:?} is not a time in seconds")))
        })
        .transpose()
}

/// `k` and `label` as `recommend` takes them; the rest as its defaults.
fn options(form: &Form) -> Result<QueryOptions, ApiError> {
    let mut options = QueryOptions::default();
    if let Some(k) = form.get("k") {
        options.count = k
            .parse::<usize>()
            .ok()
            .filter(|k| (1..=MAX_COUNT).contains(k))
            .ok_or_else(|| {
                ApiError::bad(format!(
                    "k {k:?}: the count of neighbours is a number from 1 to {MAX_COUNT}"
                ))
            })?;
    }
    if let Some(spec) = form.get("label") {
        let set =
            labels::parse_label_list(spec).map_err(|e| ApiError::bad(format!("label: {e}")))?;
        options.labels = set.indices().collect();
    }
    Ok(options)
}

/// A JSON body's fields as a form's: `id`, `embedding` (any JSON `recommend --embedding` reads), `start`, `k`,
/// `label` (a string "Jazz,Blues" or an array of names and indices).
pub fn form_from_json(body: &[u8]) -> Result<Form, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad(format!("the body is not JSON: {e}")))?;
    let Some(object) = value.as_object() else {
        return Err(ApiError::bad(
            "the body is not a JSON object ({\"id\": ...} or {\"embedding\": [[...]], \"start\": 0})",
        ));
    };
    let mut form = Form::default();
    for (name, value) in object {
        let text = match (name.as_str(), value) {
            (_, serde_json::Value::String(text)) => text.clone(),
            ("label", serde_json::Value::Array(items)) => items
                .iter()
                .map(|item| match item {
                    serde_json::Value::String(text) => text.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(","),
            (_, serde_json::Value::Null) => continue,
            (_, other) => other.to_string(),
        };
        form.fields.push((name.clone(), text));
    }
    Ok(form)
}

/// Forms at least this large carry a file: their place in the embedding pool is taken before their body is
/// read (a form with a clip id and no file is a few hundred bytes).
const SURELY_A_FILE: u64 = 64 * 1024;

/// A place in the embedding pool for a request whose stated length says it carries audio, taken before its body
/// is read: when the pool is full it is refused (503) at once, without reading megabytes it would not use.
/// `None` for a small request, or when the server has no weights (its upload gets that 503 instead).
pub fn early_place(server: &Server, headers: &HeaderMap) -> Result<Option<Permit>, ApiError> {
    let stated = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match (&server.embedding, stated) {
        // Only a form can carry a file: a large JSON body (an embedding of many rows) is a question by embedding.
        (Ok(pool), Some(length)) if length >= SURELY_A_FILE && upload::is_multipart(headers) => {
            pool.admit().map(Some)
        }
        _ => Ok(None),
    }
}

/// The question's answer: its name and its hits. `place` is the upload's place in the embedding pool if one was
/// taken before its body was read.
pub async fn answer(
    server: &Shared,
    question: Question,
    place: Option<Permit>,
) -> Result<(String, Vec<Hit>), ApiError> {
    let name = question.name();
    let Question { asked, options } = question;
    let hits = match asked {
        Asked::Id(id) => server.recommend(Query::Id(id), options).await?,
        Asked::Embedding { rows, start } => {
            server
                .recommend(Query::Embedding { rows, start }, options)
                .await?
        }
        Asked::Audio { upload, window } => {
            let embedded = embed(server, upload, window, place).await?;
            server
                .with_index(move |index| index.recommend_audio(&embedded, None, &options))
                .await?
        }
    };
    Ok((name, hits))
}

/// An upload's embedding within `window`, on the embedding pool (in `place`, or in one taken now).
pub async fn embed(
    server: &Server,
    upload: Upload,
    window: Window,
    place: Option<Permit>,
) -> Result<Embedded, ApiError> {
    let pool = server.embedding.as_ref().map_err(|why| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("this server cannot embed audio: {why}"),
        )
    })?;
    let place = match place {
        Some(place) => place,
        None => pool.admit()?,
    };
    pool.run(place, move |source, logmel| {
        let audio = upload::decode(&upload, window)?;
        source
            .embed_audio(&audio, window.start.unwrap_or(0.0), logmel, |_| {})
            .map_err(|e| ApiError::internal(format!("{}: {e:#}", upload.name)))
    })
    .await
}
