//! Why a hit is a neighbour of its query: which labels its similarity is made of, and which seconds of the two
//! clips matched (`recommend --explain`, the API's `explain`, Python's `explain=True`, the page).
//!
//! Why it can be exact: the default vector is a model of AudioSet's music labels, one dimension per label, and
//! both similarities the index reports are sums over those dimensions. Without a re-rank the similarity is the
//! cosine of two unit vectors, `sum_d q[d] h[d]`: label `d`'s share is its term. With the re-rank it is the
//! symmetric Chamfer similarity of the frames, the mean over the query's frames of the dot product with the
//! hit's frame it pairs best with, averaged with the same the other way; each of those dot products is again a
//! sum over labels, so label `d`'s share is the same mean of its terms. The shares of every label add up to the
//! similarity (within float rounding), which the tests check.
//!
//! The matched seconds are the pairs the Chamfer similarity is made of: each query frame and the hit frame it
//! pairs best with, strongest first. They are found from the frames whether or not the search re-ranked.

use std::borrow::Cow;

use anyhow::{Result, anyhow};
use serde::Serialize;

use crate::audio::EXAMPLE_SECONDS;
use crate::clip::FILE_ID_PREFIX;
use crate::index::fit;
use crate::index::projection::{Activation, ClipForm, QueryVector};
use crate::index::rerank::{FrameCodes, dot_i8};
use crate::index::scan::{self, Matrix};
use crate::index::vector::{Form, Metric};
use crate::labels;

/// Labels listed per hit; the others' shares are summed in [`Explanation::rest`].
pub const LABELS_LISTED: usize = 5;
/// Matched pairs of seconds listed per hit.
pub const PAIRS_LISTED: usize = 3;

/// Why a hit is a neighbour of its query.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explanation {
    /// What the hit's similarity compared: the frames (the re-rank's Chamfer similarity) or the clips' vectors
    /// (their cosine).
    pub compared: Compared,
    /// The [`LABELS_LISTED`] labels with the largest shares of the similarity, largest first; `None` when the
    /// index's dimensions are not labels (see `note`).
    pub labels: Option<Vec<LabelShare>>,
    /// The other labels' shares summed: `labels`' shares and this add up to the hit's similarity.
    pub rest: Option<f32>,
    /// Why there are no label shares, when there are none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<&'static str>,
    /// The best-matched seconds: query frames and the hit's frame each pairs best with, strongest first, at most
    /// [`PAIRS_LISTED`].
    pub matched: Vec<Matched>,
}

/// What a similarity compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compared {
    Frames,
    Vectors,
}

/// One label's share of a hit's similarity.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabelShare {
    /// The AudioSet class index.
    pub label: i64,
    pub name: &'static str,
    pub share: f32,
}

/// A query frame and the hit frame it pairs best with, as times from the start of each (seconds).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Matched {
    /// Seconds into the query: the clip asked by id, the embedding's rows, or the audio file.
    pub query_at: f64,
    /// Seconds into the hit's clip (add its `start_time` for the video's time).
    pub hit_at: f64,
    /// The cosine of the two frames.
    pub similarity: f32,
}

impl Explanation {
    /// In a few words, as a table's column shows it: the two labels with the largest shares, and the best
    /// matched seconds ("Jazz, Saxophone; 0:03 ~ 0:07": the query's 0:03 with the hit's 0:07).
    pub fn brief(&self) -> String {
        let names: Vec<&str> = self
            .labels
            .iter()
            .flatten()
            .take(2)
            .map(|share| share.name)
            .collect();
        let pair = self
            .matched
            .first()
            .map(|m| format!("{} ~ {}", clock(m.query_at), clock(m.hit_at)));
        match (names.is_empty(), pair) {
            (false, Some(pair)) => format!("{}; {pair}", names.join(", ")),
            (true, Some(pair)) => pair,
            (_, None) => names.join(", "),
        }
    }
}

/// Seconds as minutes and seconds, rounded to the second: "0:07", "12:30".
pub fn clock(seconds: f64) -> String {
    let whole = seconds.max(0.0).round() as u64;
    format!("{}:{:02}", whole / 60, whole % 60)
}

/// The seconds one row of a clip's frames stands for: AudioSet's published clips have a row per second; a clip
/// `embed` made (and an audio file asked) one per VGGish example, 0.96 s.
pub fn row_seconds(video_id: &str) -> f64 {
    if video_id.starts_with(FILE_ID_PREFIX) {
        EXAMPLE_SECONDS
    } else {
        1.0
    }
}

/// The query's side of an explanation, in the index's terms.
pub(crate) struct Asked<'a> {
    /// Its frames' codes, as the index stores a clip's.
    pub codes: &'a [i8],
    /// Its vector in the search's form (for the angular metric, of unit length).
    pub vector: Cow<'a, [f32]>,
    /// Seconds into the query of its first frame, and per frame.
    pub first_at: f64,
    pub row_seconds: f64,
}

/// What explaining reads of an index: every clip's frames and vectors, and what each dimension means.
pub(crate) struct Explainer<'t> {
    frames: Cow<'t, FrameCodes<'t>>,
    vectors: Cow<'t, Matrix<'t>>,
    /// The label of each of a frame's dimensions; `None` with the reason when they are not labels.
    labels: std::result::Result<Vec<u16>, &'static str>,
    /// Whether hits' similarity is the frames' (the search re-ranked) rather than the vectors'.
    reranked: bool,
    form: Form,
    metric: Metric,
}

impl<'t> Explainer<'t> {
    pub fn new(
        frames: Cow<'t, FrameCodes<'t>>,
        vectors: Cow<'t, Matrix<'t>>,
        form: &ClipForm,
        metric: Metric,
        reranked: bool,
    ) -> Self {
        let labels = match (&form.projection, metric) {
            (_, metric) if metric != Metric::Angular => Err(
                "no label shares: this index's metric is not cosine, so there is no similarity to share",
            ),
            (None, _) => Err(
                "no label shares: this index compares VGGish's own 128 dimensions (--projection none), not labels",
            ),
            (Some(p), _)
                if p.activation == Activation::Logistic && p.dimensions == fit::DIMENSIONS =>
            {
                Ok(fit::output_labels())
            }
            (Some(_), _) => Err(
                "no label shares: this index's projection (from a file) has no label per dimension",
            ),
        };
        Explainer {
            frames,
            vectors,
            labels,
            reranked,
            form: form.form,
            metric,
        }
    }

    /// A clip of the index (named `video_id`) as the query.
    pub fn for_item(&self, item: u32, video_id: &str) -> Result<Asked<'_>> {
        let missing = |what: &str| anyhow!("no {what} for clip {item}");
        Ok(Asked {
            codes: self.frames.row(item).ok_or_else(|| missing("frames"))?,
            vector: Cow::Borrowed(self.vectors.row(item).ok_or_else(|| missing("vector"))?),
            first_at: 0.0,
            row_seconds: row_seconds(video_id),
        })
    }

    /// A vector given by its rows (an embedding, an audio window) as the query, its first frame `first_at`
    /// seconds in; its rows are VGGish's examples.
    pub fn for_vector<'a>(&self, query: &'a QueryVector, first_at: f64) -> Asked<'a> {
        let mut vector = query.vector.clone();
        scan::prepare(self.metric, &mut vector);
        Asked {
            codes: &query.codes,
            vector: Cow::Owned(vector),
            first_at,
            row_seconds: EXAMPLE_SECONDS,
        }
    }

    /// Why clip `item` (named `video_id`) is a neighbour of `asked`.
    pub fn explain(&self, asked: &Asked, item: u32, video_id: &str) -> Result<Explanation> {
        let missing = |what: &str| anyhow!("no {what} for clip {item}");
        let hit_codes = self.frames.row(item).ok_or_else(|| missing("frames"))?;
        let dimensions = self.frames.dimensions.max(1);
        let pairs = Pairs::new(asked.codes, hit_codes, dimensions);
        let hit_seconds = row_seconds(video_id);
        let mut matched: Vec<Matched> = pairs
            .best_for_query
            .iter()
            .enumerate()
            .map(|(i, &(j, dot))| Matched {
                query_at: asked.first_at + i as f64 * asked.row_seconds,
                hit_at: j as f64 * hit_seconds,
                // Rounded codes can put a frame's product with itself a hair past 1.
                similarity: (dot as f32 / CODE_SCALE).clamp(-1.0, 1.0),
            })
            .collect();
        matched.sort_by(|a, b| b.similarity.total_cmp(&a.similarity));
        matched.truncate(PAIRS_LISTED);
        let compared = if self.reranked {
            Compared::Frames
        } else {
            Compared::Vectors
        };
        let (labels, rest, note) = match &self.labels {
            Err(why) => (None, None, Some(*why)),
            Ok(names) => {
                let mut shares = match compared {
                    Compared::Frames => pairs.shares(asked.codes, hit_codes),
                    Compared::Vectors => {
                        let hit = self.vectors.row(item).ok_or_else(|| missing("vector"))?;
                        vector_shares(&asked.vector, hit, dimensions, self.form)
                    }
                };
                // A clip compared with (nearly) itself can score a hair past 1 as its codes round: the hit says
                // 1 (`Session::hits`), and its shares are scaled to add up to what it says.
                let total: f32 = shares.iter().sum();
                if total > 1.0 {
                    shares.iter_mut().for_each(|s| *s /= total);
                }
                let (listed, rest) = listed(&shares, names);
                (Some(listed), Some(rest), None)
            }
        };
        Ok(Explanation {
            compared,
            labels,
            rest,
            note,
            matched,
        })
    }
}

/// Frame codes are unit vectors times 127: a dot product of two is the cosine times this.
const CODE_SCALE: f32 = 127.0 * 127.0;

/// Each frame's best partner in the other clip, both ways, as the Chamfer similarity pairs them.
struct Pairs {
    dimensions: usize,
    /// For each query frame: the hit frame with the largest dot product, and that product.
    best_for_query: Vec<(usize, i32)>,
    /// For each hit frame: the query frame with the largest dot product.
    best_for_hit: Vec<usize>,
}

impl Pairs {
    fn new(query: &[i8], hit: &[i8], dimensions: usize) -> Pairs {
        let (nq, nh) = (query.len() / dimensions, hit.len() / dimensions);
        // A side without frames pairs nothing (and no frame of it may be named as the other's partner).
        let (nq, nh) = if nq == 0 || nh == 0 { (0, 0) } else { (nq, nh) };
        let mut best_for_query = vec![(0, i32::MIN); nq];
        let mut best_for_hit = vec![(0, i32::MIN); nh];
        for (i, q) in query.chunks_exact(dimensions).enumerate() {
            for (j, h) in hit.chunks_exact(dimensions).enumerate() {
                let dot = dot_i8(q, h);
                // Strictly greater: the first of equal partners, as any gives the same similarity.
                if dot > best_for_query[i].1 {
                    best_for_query[i] = (j, dot);
                }
                if dot > best_for_hit[j].1 {
                    best_for_hit[j] = (i, dot);
                }
            }
        }
        Pairs {
            dimensions,
            best_for_query,
            best_for_hit: best_for_hit.into_iter().map(|(i, _)| i).collect(),
        }
    }

    /// Each dimension's share of the Chamfer similarity (`rerank::chamfer`): its terms of the paired frames'
    /// dot products, averaged as the similarity averages them.
    fn shares(&self, query: &[i8], hit: &[i8]) -> Vec<f32> {
        let d = self.dimensions;
        // Adds frame `i` of the query times frame `j` of the hit, term by term, into `sums`.
        let add = |sums: &mut [i32], i: usize, j: usize| {
            let (q, h) = (&query[i * d..(i + 1) * d], &hit[j * d..(j + 1) * d]);
            for ((sum, &a), &b) in sums.iter_mut().zip(q).zip(h) {
                *sum += i32::from(a) * i32::from(b);
            }
        };
        // At most 127 x 127 a term and frame: an i32 holds the sums of 133,000 frames.
        let mut forward = vec![0i32; d];
        for (i, &(j, _)) in self.best_for_query.iter().enumerate() {
            add(&mut forward, i, j);
        }
        let mut backward = vec![0i32; d];
        for (j, &i) in self.best_for_hit.iter().enumerate() {
            add(&mut backward, i, j);
        }
        let (nq, nh) = (
            self.best_for_query.len().max(1) as f64,
            self.best_for_hit.len().max(1) as f64,
        );
        forward
            .iter()
            .zip(&backward)
            .map(|(&f, &b)| (0.5 * (f as f64 / nq + b as f64 / nh) / f64::from(CODE_SCALE)) as f32)
            .collect()
    }
}

/// Each frame dimension's share of the cosine of two unit vectors: its terms, summed over the frames for a
/// vector of concatenated frames.
fn vector_shares(query: &[f32], hit: &[f32], dimensions: usize, form: Form) -> Vec<f32> {
    let mut shares = vec![0f64; dimensions];
    for (k, (&q, &h)) in query.iter().zip(hit).enumerate() {
        let at = match form {
            Form::Flat => k % dimensions,
            Form::Mean => k,
        };
        if let Some(share) = shares.get_mut(at) {
            *share += f64::from(q) * f64::from(h);
        }
    }
    shares.into_iter().map(|s| s as f32).collect()
}

/// The [`LABELS_LISTED`] largest shares with their labels' names, and the sum of the others.
fn listed(shares: &[f32], labels: &[u16]) -> (Vec<LabelShare>, f32) {
    let mut order: Vec<usize> = (0..shares.len().min(labels.len())).collect();
    let larger = |a: &usize, b: &usize| shares[*b].total_cmp(&shares[*a]).then(a.cmp(b));
    // The few largest picked out, and only they sorted: sorting all 149 was a tenth of an explained batch.
    let listed_count = LABELS_LISTED.min(order.len());
    if listed_count < order.len() {
        order.select_nth_unstable_by(listed_count, larger);
    }
    let (top, others) = order.split_at_mut(listed_count);
    top.sort_by(larger);
    let listed: Vec<LabelShare> = top
        .iter()
        .map(|&d| LabelShare {
            label: i64::from(labels[d]),
            name: labels::class_name(i64::from(labels[d])).unwrap_or("?"),
            share: shares[d],
        })
        .collect();
    let rest = others.iter().map(|&d| f64::from(shares[d])).sum::<f64>() as f32;
    (listed, rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::rerank::chamfer;

    #[test]
    fn the_frame_shares_add_up_to_the_chamfer_similarity() {
        let d = 6;
        let frame = |seed: u64| -> Vec<i8> {
            (0..d as u64)
                .map(|k| (crate::index::hash::hash(seed, k, 0, 0) % 255) as i8)
                .collect()
        };
        let query: Vec<i8> = (0..4).flat_map(frame).collect();
        let hit: Vec<i8> = (10..17).flat_map(frame).collect();
        let pairs = Pairs::new(&query, &hit, d);
        let total: f32 = pairs.shares(&query, &hit).iter().sum();
        assert!((total - chamfer(&query, &hit, d)).abs() < 1e-5, "{total}");
        assert_eq!(pairs.best_for_query.len(), 4);
        assert!(pairs.best_for_query.iter().all(|&(j, _)| j < 7));
        // No frames on one side: nothing paired, every share 0, no panic.
        let none = Pairs::new(&[], &hit, d);
        assert!(none.best_for_query.is_empty() && none.best_for_hit.is_empty());
        assert!(none.shares(&[], &hit).iter().all(|&s| s == 0.0));
    }

    #[test]
    fn listed_and_rest_add_up_and_the_largest_come_first() {
        let shares = [0.1, 0.5, 0.0, 0.2, 0.05, 0.01, 0.04];
        let labels = [216, 217, 218, 219, 220, 221, 222];
        let (top, rest) = listed(&shares, &labels);
        assert_eq!(top.len(), LABELS_LISTED);
        assert_eq!(top[0].label, 217);
        assert_eq!(top[1].label, 219);
        let sum: f32 = top.iter().map(|s| s.share).sum::<f32>() + rest;
        assert!((sum - shares.iter().sum::<f32>()).abs() < 1e-6);
    }

    #[test]
    fn the_brief_names_two_labels_and_the_best_pair() {
        let explanation = Explanation {
            compared: Compared::Frames,
            labels: Some(vec![
                LabelShare {
                    label: 207,
                    name: "Jazz",
                    share: 0.3,
                },
                LabelShare {
                    label: 198,
                    name: "Saxophone",
                    share: 0.2,
                },
                LabelShare {
                    label: 216,
                    name: "Blues",
                    share: 0.1,
                },
            ]),
            rest: Some(0.2),
            note: None,
            matched: vec![Matched {
                query_at: 2.88,
                hit_at: 7.0,
                similarity: 0.9,
            }],
        };
        assert_eq!(explanation.brief(), "Jazz, Saxophone; 0:03 ~ 0:07");
        let none = Explanation {
            labels: None,
            ..explanation
        };
        assert_eq!(none.brief(), "0:03 ~ 0:07");
        assert_eq!(clock(750.2), "12:30");
    }

    #[test]
    fn a_file_clip_has_rows_of_a_vggish_example() {
        assert_eq!(row_seconds("file:/music/a.wav"), EXAMPLE_SECONDS);
        assert_eq!(row_seconds("xtGmrLOsjHk"), 1.0);
    }
}
