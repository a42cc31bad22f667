//! The JSON API: `/api/recommend` (the fields of `recommend --json`), `/model/predict` (IBM MAX's Audio
//! Embedding Generator's contract), `/api/info`, `/api/labels`, `/healthz` and `/openapi.json`.

use axum::Json;
use axum::Router;
use axum::extract::{Query, Request, State};
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use soundalike::audio::Window;
use soundalike::labels::{self, LabelSet};

use super::Shared;
use super::ask::{self, Question};
use super::body::Verdict;
use super::errors::ApiError;
use super::json;
use super::upload::{self, Form};
use soundalike::Answer;

/// Every endpoint, described for clients and people (hand-written, compiled in).
const OPENAPI: &str = include_str!("openapi.json");

pub fn routes() -> Router<Shared> {
    Router::new()
        .route(
            "/api/recommend",
            get(recommend_by_query).post(recommend_by_body),
        )
        .route("/model/predict", post(predict))
        .route("/api/info", get(info))
        .route("/api/labels", get(labels))
        .route("/healthz", get(health))
        .route("/openapi.json", get(openapi))
}

/// `GET /api/recommend?id=ID&k=10&label=Jazz,Blues` (or `embedding=[[...]]&start=0`).
async fn recommend_by_query(
    State(server): State<Shared>,
    query: Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(fields) = query.map_err(|e| ApiError::bad(e.body_text()))?;
    let form = Form {
        fields,
        ..Form::default()
    };
    let question = Question::from_form(form, server.max_seconds)?;
    let (name, hits) = ask::answer(&server, question).await?;
    Ok(Json(Answer::new(&name, &hits)).into_response())
}

/// `POST /api/recommend`: a JSON body (`{"id": ...}` or `{"embedding": [[...]], "start": 0}`), or a multipart
/// form with the file in `audio` and `start` and `end` in seconds.
async fn recommend_by_body(
    State(server): State<Shared>,
    request: Request,
) -> Result<Response, ApiError> {
    if let Err(busy) = ask::refuse_if_full(&server, request.headers()) {
        upload::discard_body(request, server.max_upload).await;
        return Err(busy);
    }
    let form = read_body(&server, request).await?;
    let question = Question::from_form(form, server.max_seconds)?;
    let (name, hits) = ask::answer(&server, question).await?;
    Ok(Json(Answer::new(&name, &hits)).into_response())
}

/// A request's fields from a multipart form or a JSON body (the default when no type is stated); anything
/// else is 415.
async fn read_body(server: &Shared, request: Request) -> Result<Form, ApiError> {
    let media_type = upload::media_type(request.headers());
    let stated = request.headers().contains_key(header::CONTENT_TYPE);
    match media_type.as_deref() {
        Some("multipart/form-data") => upload::read_form(request, server.max_upload).await,
        Some("application/json") => read_json(server, request).await,
        None if !stated => read_json(server, request).await,
        _ => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "a body of type {} is not taken: send JSON (application/json) or a multipart/form-data \
                 upload",
                media_type.unwrap_or_else(|| "that cannot be parsed".to_string())
            ),
        )),
    }
}

/// JSON bodies up to this size need no permit.
const SMALL_JSON: u64 = 64 * 1024;

/// A JSON body, within `--max-json` and, when large, with one of the JSON permits while it is read and parsed,
/// parsed straight into its fields off the async threads.
async fn read_json(server: &Shared, request: Request) -> Result<Form, ApiError> {
    let limit = server.max_json;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the JSON body is larger than the {} KB this server takes",
                limit / 1000
            ),
        )
    };
    upload::check_length(request.headers(), limit).map_err(|_| too_large())?;
    // A question by id or a short embedding is a few KB and needs no permit: only large bodies (or ones that
    // state no length) are counted, as only they make memory.
    let small = upload::stated_length(request.headers()).is_some_and(|length| length <= SMALL_JSON);
    let permit = if small {
        None
    } else {
        server.json_permits.try_acquire().ok()
    };
    if !small && permit.is_none() {
        // Read and dropped, so that a client still sending reads the refusal rather than a broken pipe.
        upload::discard_body(request, limit).await;
        return Err(ApiError {
            retry_after: Some(1),
            ..ApiError::unavailable(
                "the server is reading as many large JSON bodies as it takes at once; try again in 1 s",
            )
        });
    }
    let verdict = Verdict::of(&request);
    let body = axum::body::to_bytes(request.into_body(), limit)
        .await
        .map_err(|_| verdict.or(too_large()))?;
    tokio::task::spawn_blocking(move || json::form(&body))
        .await
        .map_err(|_| ApiError::internal("reading the JSON body failed"))?
}

/// `POST /model/predict`: the multipart field `audio` embedded whole, answered as MAX answers,
/// `{"status": "ok", "embedding": [[128 values 0..255], ...]}` (one row per 0.96 s), so that MAX's clients
/// (the original project's notebooks, `embed --service`) work unchanged. Errors say `"status": "error"` and
/// carry the message as both MAX's `message` and this API's `error`.
async fn predict(State(server): State<Shared>, request: Request) -> Response {
    let embedded = async {
        if let Err(busy) = ask::refuse_if_full(&server, request.headers()) {
            upload::discard_body(request, server.max_upload).await;
            return Err(busy);
        }
        let form = upload::read_form(request, server.max_upload).await?;
        let upload = form.audio.ok_or_else(|| {
            ApiError::bad("no audio: send the file in the multipart field `audio`")
        })?;
        let window = Window {
            max_seconds: Some(server.max_seconds),
            ..Window::default()
        };
        ask::embed(&server, upload, window).await
    }
    .await
    // MAX answers a file that is not audio it reads with 400 (its own tests check that).
    .map_err(|error| match error.status {
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError {
            status: StatusCode::BAD_REQUEST,
            ..error
        },
        _ => error,
    });
    match embedded {
        Ok(embedded) => {
            let rows: Vec<&[u8]> = embedded.rows.iter().map(|r| &r[..]).collect();
            Json(json!({"status": "ok", "embedding": rows})).into_response()
        }
        Err(error) => {
            let mut response = (
                error.status,
                Json(json!({"status": "error", "message": error.message, "error": error.message})),
            )
                .into_response();
            if let Some((name, value)) = error.headers() {
                response.headers_mut().insert(name, value);
            }
            response
        }
    }
}

/// `GET /api/info`: what `info --json` says, and what this server takes.
async fn info(State(server): State<Shared>) -> Result<Json<Value>, ApiError> {
    let index_info = server.with_index(|index| index.info()).await?;
    let mut answer = index_info.to_json();
    // The index by its folder's name: where it lives on the server is the operator's business.
    answer["index"] = json!(server.index_name());
    answer["server"] = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "audio": server.embedding.is_ok(),
        "audio_unavailable": server.embedding.as_ref().err(),
        "max_upload_bytes": server.max_upload,
        "max_seconds": server.max_seconds,
    });
    Ok(Json(answer))
}

/// `GET /api/labels`: AudioSet's 527 classes, by index, with whether each is music (the labels a filter
/// takes, by name or index).
async fn labels() -> Json<Value> {
    let music = LabelSet::music_ontology();
    let all: Vec<Value> = labels::class_names()
        .iter()
        .enumerate()
        .map(|(index, name)| json!({"index": index, "name": name, "music": music.contains(index as i64)}))
        .collect();
    Json(Value::Array(all))
}

/// `GET /healthz`: 200 once the index has answered a question (the first clip's record and one search, through
/// the paths every question takes: `Index::check`), 503 with the reason when it cannot. `refused`: why a
/// data file swapped into the index's directory is not answered from (the one before still is).
async fn health(State(server): State<Shared>) -> Result<Json<Value>, ApiError> {
    let clips = server
        .with_index(|index| index.check())
        .await
        .map_err(|e| ApiError::unavailable(e.message))?;
    let mut answer = json!({"status": "ok", "clips": clips, "audio": server.embedding.is_ok()});
    if let Some(why) = server.index.refused() {
        answer["refused"] = server.without_paths(&why).into();
    }
    Ok(Json(answer))
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

pub async fn no_such_endpoint(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "no such endpoint: {method} {} (GET /openapi.json lists them)",
            uri.path()
        ),
    )
}

pub async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "{method} is not allowed on {} (GET /openapi.json lists the endpoints)",
            uri.path()
        ),
    )
}
