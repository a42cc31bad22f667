//! A question as a request asks it (a query string, a JSON body, a form with or without a file), checked as the
//! command line checks its options, and its answer from the library. The API and the page both ask through here
//! and differ only in how they show the answer.

use axum::http::{HeaderMap, StatusCode};
use soundalike::audio::Window;
use soundalike::audio::source::Embedded;
use soundalike::{Hit, NotOneQuery, Query, QueryKind, QueryOptions, clip, labels};

use super::errors::ApiError;
use super::upload::{self, Form, Upload};
use super::{Server, Shared};

/// What a request asks: a query ready for the index, or an upload to embed first (it becomes a
/// [`Query::Audio`] on the embedding pool).
pub enum Asked {
    Query(Query),
    Upload { upload: Upload, window: Window },
}

pub struct Question {
    pub asked: Asked,
    pub options: QueryOptions,
}

impl Question {
    /// The question a form's fields ask: the file in `audio` (with `start` and `end` in seconds), `id`, or
    /// `embedding` (with `start`, a row); `k` and `label` as `recommend -k` and `--label` take them. Of several,
    /// the first in that order: the page's form keeps the last id typed beside a file chosen since.
    pub fn from_form(mut form: Form, max_seconds: f64) -> Result<Question, ApiError> {
        let options = options(&form)?;
        let given = [
            (QueryKind::Audio, form.audio.is_some()),
            (QueryKind::Id, form.get("id").is_some()),
            (
                QueryKind::Embedding,
                form.rows.is_some() || form.get("embedding").is_some(),
            ),
        ];
        let kind = match QueryKind::one_given(&given) {
            Ok(kind) | Err(NotOneQuery::Several(kind, _)) => kind,
            Err(NotOneQuery::Nothing) => {
                return Err(ApiError::bad(
                    "nothing to ask: give an audio file (audio), a clip id (id) or an embedding (embedding)",
                ));
            }
        };
        let asked = match (kind, form.audio.take(), form.rows.take()) {
            (QueryKind::Audio, Some(upload), _) => Asked::Upload {
                upload,
                window: window(&form, max_seconds)?,
            },
            (QueryKind::Id, ..) => {
                let id = form.get("id").unwrap_or_default();
                clip::check_id(id).map_err(|problem| ApiError::bad(format!("id: {problem}")))?;
                Asked::Query(Query::Id(id.to_string()))
            }
            (_, _, Some(rows)) => Asked::Query(Query::Embedding {
                rows,
                start: row(&form)?,
            }),
            _ => {
                let text = form.get("embedding").unwrap_or_default();
                let rows = clip::embedding_rows(text)
                    .map_err(|e| ApiError::bad(format!("embedding: {e:#}")))?;
                Asked::Query(Query::Embedding {
                    rows,
                    start: row(&form)?,
                })
            }
        };
        Ok(Question { asked, options })
    }

    /// How the answer names its query, as `recommend --json` does: the id, the file's name, or "embedding".
    pub fn name(&self) -> String {
        match &self.asked {
            Asked::Query(Query::Id(id)) => id.clone(),
            Asked::Upload { upload, .. } => upload.name.clone(),
            Asked::Query(_) => "embedding".to_string(),
        }
    }
}

/// The field `name` as seconds, if given.
fn seconds(form: &Form, name: &str) -> Result<Option<f64>, ApiError> {
    form.get(name)
        .map(|text| {
            text.trim()
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s >= 0.0)
                .ok_or_else(|| {
                    ApiError::bad(format!(
                        "{name} {text:?} is not a time in seconds (0 or more)"
                    ))
                })
        })
        .transpose()
}

/// The part of an upload asked about, from the fields `start` and `end`, checked in the request's words.
fn window(form: &Form, max_seconds: f64) -> Result<Window, ApiError> {
    let window = Window {
        start: seconds(form, "start")?,
        end: seconds(form, "end")?,
        max_seconds: Some(max_seconds),
    };
    if let (Some(start), Some(end)) = (window.start, window.end)
        && end <= start
    {
        return Err(ApiError::bad(format!(
            "end {end} is not after start {start}"
        )));
    }
    window.check().map_err(ApiError::internal)?;
    Ok(window)
}

/// With an embedding, `start` is the first row asked about.
fn row(form: &Form) -> Result<usize, ApiError> {
    match form.get("start") {
        None => Ok(0),
        Some(row) => row
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(Query::start_row)
            .ok_or_else(|| {
                ApiError::bad(format!(
                    "start {row:?}: with an embedding it is a row number (0, 1, ...)"
                ))
            }),
    }
}

/// `k`, `label` and `explain` as `recommend` takes them (`explain` a flag: 1, true, yes or 0, false, no, or
/// empty); the rest as its defaults.
fn options(form: &Form) -> Result<QueryOptions, ApiError> {
    let mut options = QueryOptions::default();
    if let Some(k) = form.get("k") {
        options.count = k
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|k| (1..=QueryOptions::MAX_COUNT).contains(k))
            .ok_or_else(|| {
                ApiError::bad(format!(
                    "k {k:?}: the count of neighbours is a number from 1 to {}",
                    QueryOptions::MAX_COUNT
                ))
            })?;
    }
    if let Some(spec) = form.get("label") {
        let set =
            labels::parse_label_list(spec).map_err(|e| ApiError::bad(format!("label: {e}")))?;
        options.labels = set.indices().collect();
    }
    if let Some(flag) = form.get("explain") {
        options.explain = match flag.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => true,
            "0" | "false" | "no" | "off" | "" => false,
            _ => {
                return Err(ApiError::bad(format!(
                    "explain {flag:?} is not a flag: 1 or true to explain each hit, 0 or false not to"
                )));
            }
        };
    }
    Ok(options)
}

/// Refuses at once (503), before its body is read, an upload that would find the embedding pool full: a
/// multipart request that is large or states no length (chunked). Nothing is taken: the upload's place is
/// taken when its body has been read ([`embed`]), so a slow upload holds no place while it trickles in.
/// Small forms (a clip id, a few hundred bytes) and servers without weights pass.
pub fn refuse_if_full(server: &Server, headers: &HeaderMap) -> Result<(), ApiError> {
    let stated = upload::stated_length(headers);
    match &server.embedding {
        Ok(pool)
            if stated.is_none_or(|length| length >= SURELY_A_FILE)
                && upload::is_multipart(headers) =>
        {
            pool.refuse_if_full(stated.unwrap_or(0))
        }
        _ => Ok(()),
    }
}

/// Forms at least this large carry a file (a form with a clip id and no file is a few hundred bytes).
const SURELY_A_FILE: u64 = 64 * 1024;

/// The question's answer: its name and its hits.
pub async fn answer(server: &Shared, question: Question) -> Result<(String, Vec<Hit>), ApiError> {
    let name = question.name();
    let Question { asked, options } = question;
    let query = match asked {
        Asked::Query(query) => query,
        Asked::Upload { upload, window } => Query::Audio {
            audio: embed(server, upload, window).await?,
            file: None,
        },
    };
    let hits = server.recommend(query, options).await?;
    Ok((name, hits))
}

/// An upload's embedding within `window`, on the embedding pool, in a place taken now (or 503).
pub async fn embed(server: &Server, upload: Upload, window: Window) -> Result<Embedded, ApiError> {
    let pool = server.embedding.as_ref().map_err(|why| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("this server cannot embed audio: {why}"),
        )
    })?;
    let place = pool.admit(&upload, window)?;
    pool.run(place, move |source, logmel| {
        let audio = upload::decode(&upload, window)?;
        source
            .embed_audio(&audio, window.start.unwrap_or(0.0), logmel, |_| {})
            .map_err(|e| ApiError::internal(format!("{}: {e:#}", upload.name)))
    })
    .await
}
