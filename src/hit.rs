//! A neighbour as the library finds it ([`Hit`]) and as every client shows it ([`Answer`], [`Ranked`]): the
//! JSON of `recommend --json`, of `serve`'s API and of the Python package's dicts is this one serialisation, so
//! that the three cannot drift apart.

use serde::Serialize;

use crate::clip;
use crate::explain::Explanation;
use crate::labels;

/// One neighbour, owned: nothing in it borrows the index.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub video_id: String,
    /// On the index's metric's scale; after a re-rank, the frames' angular distance.
    pub distance: f32,
    /// Cosine similarity, for the angular metric: (1 - 2 x distance), what people read.
    pub similarity: Option<f32>,
    /// AudioSet class indices.
    pub labels: Vec<i64>,
    pub start_time: f64,
    pub end_time: f64,
    /// For an audio query: where in the file (seconds) the window this clip matched best starts.
    pub matched_at: Option<f64>,
    /// Why it is a neighbour, when asked (`QueryOptions::explain`).
    pub explanation: Option<Explanation>,
}

impl Hit {
    /// The labels' display names, in the stored order.
    pub fn label_names(&self) -> Vec<&'static str> {
        self.labels
            .iter()
            .filter_map(|&l| labels::class_name(l))
            .collect()
    }

    /// Where the clip can be played: YouTube at its second, or a `file://` link for a clip `embed` made.
    pub fn url(&self) -> String {
        clip::clip_url(&self.video_id, self.start_time)
    }

    /// This hit at `rank` (from 1) as a client shows it.
    pub fn ranked(&self, rank: usize) -> Ranked<'_> {
        Ranked {
            rank,
            video_id: &self.video_id,
            distance: self.distance,
            similarity: self.similarity,
            labels: &self.labels,
            label_names: self.label_names(),
            start_time: self.start_time,
            end_time: self.end_time,
            url: self.url(),
            matched_at: self.matched_at,
            explain: self.explanation.as_ref(),
        }
    }
}

/// One result as every client shows it, keys in this order: the hit, ranked, with its label names and link.
#[derive(Debug, Serialize)]
pub struct Ranked<'a> {
    pub rank: usize,
    pub video_id: &'a str,
    pub distance: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub similarity: Option<f32>,
    pub labels: &'a [i64],
    pub label_names: Vec<&'static str>,
    pub start_time: f64,
    pub end_time: f64,
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matched_at: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explain: Option<&'a Explanation>,
}

/// One query's answer: how it is named (the id, the file, or "embedding") and its results, nearest first.
#[derive(Debug, Serialize)]
pub struct Answer<'a> {
    pub query: &'a str,
    pub results: Vec<Ranked<'a>>,
}

impl<'a> Answer<'a> {
    pub fn new(query: &'a str, hits: &'a [Hit]) -> Answer<'a> {
        let results = hits
            .iter()
            .enumerate()
            .map(|(rank, hit)| hit.ranked(rank + 1))
            .collect();
        Answer { query, results }
    }

    /// The answer as one line of JSON (no newline).
    pub fn to_json(&self) -> String {
        // Numbers, strings and lists of them: serializing cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The results alone as a JSON array (what the Python package turns into its list of dicts).
    pub fn results_json(&self) -> String {
        serde_json::to_string(&self.results).unwrap_or_default()
    }
}
