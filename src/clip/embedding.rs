//! An embedding as text: the forms a query or a service's answer takes. Both `recommend --embedding` and the
//! MAX service's client read them, so they live beside the clip rather than in either.

use anyhow::anyhow;
use serde::Deserialize;

use crate::Result;

/// The rows of an embedding given as a clip written by `ingest`, a 2-D array, or the IBM MAX Audio Embedding
/// Generator's response (`{"status":"ok","embedding":[[...],...]}`).
pub fn embedding_rows(text: &str) -> Result<Vec<Vec<f32>>> {
    if let Some(rows) = well_formed(text) {
        return Ok(rows);
    }
    // Anything else is read as a tree of values, to say what is wrong with it.
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| anyhow!("not JSON: {e}"))?;
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

/// A well-formed array of rows or object with rows, read straight into the rows: parsing a batch line into a
/// tree of values first cost more than the graph walk it asks for (docs/bench-log.md, "Where a held-out query's
/// time goes"). `None` for anything else (a refusal, a malformed line, a duplicate key), which the caller reads
/// again the general way; a service's refusal (`status` other than "ok") is one of them.
fn well_formed(text: &str) -> Option<Vec<Vec<f32>>> {
    /// A clip or a service's answer: the other keys are skipped unread.
    #[derive(Deserialize)]
    struct WithRows {
        embedding: Vec<Vec<f32>>,
        status: Option<String>,
    }
    match text.trim_start().as_bytes().first()? {
        b'[' => serde_json::from_str(text).ok(),
        b'{' => serde_json::from_str::<WithRows>(text)
            .ok()
            .filter(|given| given.status.as_deref().is_none_or(|status| status == "ok"))
            .map(|given| given.embedding),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::embedding_rows;

    #[test]
    fn every_form_reads_the_same_rows_and_refusals_keep_their_messages() {
        let rows = vec![vec![1.0, 2.5], vec![3.0, 4.0]];
        for text in [
            "[[1, 2.5], [3, 4]]",
            " {\"video_id\": \"x\", \"labels\": [1, {\"a\": []}], \"embedding\": [[1, 2.5], [3, 4]]}",
            "{\"status\": \"ok\", \"embedding\": [[1, 2.5], [3, 4]]}",
            "{\"status\": 7, \"embedding\": [[1, 2.5], [3, 4]]}",
            "{\"embedding\": [[9]], \"embedding\": [[1, 2.5], [3, 4]]}",
        ] {
            assert_eq!(embedding_rows(text).unwrap(), rows, "{text}");
        }
        let error = |text: &str| embedding_rows(text).unwrap_err().to_string();
        assert!(
            error("{\"status\": \"error\", \"embedding\": [[1]]}")
                .contains("answered status 'error'")
        );
        assert!(error("{\"video_id\": \"x\"}").contains("no \"embedding\" key"));
        assert!(error("[[1, \"a\"]]").contains("not a 2-D array of numbers"));
        assert!(error("[[1, 2]").starts_with("not JSON"));
        assert!(error("42").starts_with("expected an embedding"));
    }
}
