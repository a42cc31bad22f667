//! An embedding as text: the forms a query or a service's answer takes. Both `recommend --embedding` and the
//! MAX service's client read them, so they live beside the clip rather than in either.

use anyhow::anyhow;

use crate::Result;

/// The rows of an embedding given as a clip written by `ingest`, a 2-D array, or the IBM MAX Audio Embedding
/// Generator's response (`{"status":"ok","embedding":[[...],...]}`).
pub fn embedding_rows(text: &str) -> Result<Vec<Vec<f32>>> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| anyhow!("not JSON: {e}"))?;
    // The rows are taken out of the parsed value, not copied: a batch line's 1,280 numbers are read once.
    let rows = match value {
        serde_json::Value::Array(_) => value,
        serde_json::Value::Object(mut map) => {
            if let Some(status) = map
                .get("status")
                .and_then(|s| s.as_str())
                .filter(|s| *s != "ok")
            {
                return Err(anyhow!("the embedding service answered status '{status}'").into());
            }
            map.remove("embedding")
                .ok_or_else(|| anyhow!("no \"embedding\" key"))?
        }
        _ => {
            return Err(anyhow!(
                "expected an embedding: a clip, a 2-D array, or an embedding service response"
            )
            .into());
        }
    };
    Ok(serde_json::from_value::<Vec<Vec<f32>>>(rows)
        .map_err(|e| anyhow!("the embedding is not a 2-D array of numbers: {e}"))?)
}
