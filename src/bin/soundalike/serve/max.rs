//! The rest of IBM MAX's Audio Embedding Generator's surface beside `/model/predict` (in [`super::api`]):
//! `/model/metadata` and `/swagger.json`, so that a MAX client that reads the metadata first, and MAX's own
//! tests, run against `serve` unchanged.
//!
//! The values are MAX's own (`core/model.py` and `config.py` of IBM/MAX-Audio-Embedding-Generator, Apache 2.0):
//! the model is the same VGGish with the same PCA and quantisation, whose rows `serve` answers bit for bit as
//! `embed` makes them, and MAX's tests check these strings. The description (`swagger.json`, compiled in) has
//! the Swagger 2.0 shape flask-restx generates for MAX, with its two endpoints.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::{Value, json};

use super::Shared;

const SWAGGER: &str = include_str!("swagger.json");

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/model/metadata", get(metadata))
        .route("/swagger.json", get(swagger))
}

/// `GET /model/metadata`: MAX's `ModelMetadata` (id, name, description, type, source, license).
async fn metadata() -> axum::Json<Value> {
    axum::Json(json!({
        "id": "audio_embeddings-tf",
        "name": "audio_embeddings TensorFlow Model",
        "description": "audio_embeddings TensorFlow model trained on Audio Set",
        "type": "audio_embeddings",
        "source": "https://developer.ibm.com/exchanges/models/all/max-audio-embedding-generator/",
        "license": "Apache 2.0",
    }))
}

async fn swagger() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], SWAGGER)
}
