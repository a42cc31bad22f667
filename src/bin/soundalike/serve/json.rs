//! A JSON question (`POST /api/recommend` with `{"id": ...}` or `{"embedding": [[...]], ...}`) parsed straight
//! into its fields: an embedding's numbers go into rows as they are read, never into a `serde_json::Value`
//! first (a tree of values costs about 30 times the text it came from).

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use soundalike::clip::FRAME_LEN;

use super::errors::ApiError;
use super::upload::Form;

/// The body's fields as a form's: `id` (a string), `embedding` (a 2-D array, a clip as `ingest` writes it, a
/// MAX answer, or any of those as a string), `start`, `k` (numbers or their text), `label` (a string
/// "Jazz,Blues" or an array of names and indices), `explain` (true, false, 1, 0, or their text). Other fields
/// are ignored, as a form's are.
pub fn form(body: &[u8]) -> Result<Form, ApiError> {
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::bad(
            "the body is not a JSON object ({\"id\": ...} or {\"embedding\": [[...]], \"start\": 0})",
        ));
    }
    let question: Question = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad(format!("the body is not a question this API reads: {e}")))?;
    let mut form = Form::default();
    for (name, value) in [
        ("id", question.id),
        ("start", question.start.map(|t| t.0)),
        ("end", question.end.map(|t| t.0)),
        ("k", question.k.map(|t| t.0)),
        ("label", question.label.map(|t| t.0)),
        ("explain", question.explain.map(|t| t.0)),
    ] {
        if let Some(value) = value {
            form.fields.push((name.to_string(), value));
        }
    }
    form.rows = question.embedding.map(|rows| rows.0);
    Ok(form)
}

#[derive(Deserialize)]
struct Question {
    #[serde(default, deserialize_with = "id")]
    id: Option<String>,
    #[serde(default)]
    embedding: Option<Rows>,
    #[serde(default)]
    start: Option<Text>,
    #[serde(default)]
    end: Option<Text>,
    #[serde(default)]
    k: Option<Text>,
    #[serde(default)]
    label: Option<Labels>,
    #[serde(default)]
    explain: Option<Text>,
}

/// `id` must be a string (or null): a clip's id is text, and an object or a number is a mistake to say.
fn id<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    struct Id;
    impl<'de> Visitor<'de> for Id {
        type Value = Option<String>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("id as a string")
        }
        fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
            Ok(Some(text.to_string()))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    deserializer.deserialize_any(Id)
}

/// A number, a string or a boolean, as text (a form's fields are text; their readers check them).
struct Text(String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Text, D::Error> {
        struct Scalar;
        impl<'de> Visitor<'de> for Scalar {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number, a string or a boolean")
            }
            fn visit_bool<E: de::Error>(self, flag: bool) -> Result<Text, E> {
                Ok(Text(flag.to_string()))
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Text, E> {
                Ok(Text(text.to_string()))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Text, E> {
                Ok(Text(n.to_string()))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Text, E> {
                Ok(Text(n.to_string()))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Text, E> {
                Ok(Text(n.to_string()))
            }
        }
        deserializer.deserialize_any(Scalar)
    }
}

/// `label` as `--label` takes it: "Jazz,Blues", or an array of names and indices.
struct Labels(String);

impl<'de> Deserialize<'de> for Labels {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Labels, D::Error> {
        struct Spec;
        impl<'de> Visitor<'de> for Spec {
            type Value = Labels;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("labels as a string or an array of names and indices")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Labels, E> {
                Ok(Labels(text.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Labels, A::Error> {
                let mut names = Vec::new();
                while let Some(Text(name)) = seq.next_element()? {
                    names.push(name);
                }
                Ok(Labels(names.join(",")))
            }
        }
        deserializer.deserialize_any(Spec)
    }
}

/// An embedding's rows, from any form `recommend --embedding` reads.
struct Rows(Vec<Vec<f32>>);

impl<'de> Deserialize<'de> for Rows {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Rows, D::Error> {
        struct Embedding;
        impl<'de> Visitor<'de> for Embedding {
            type Value = Rows;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "an embedding: a 2-D array of numbers, a clip, or an embedding service's answer",
                )
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Rows, A::Error> {
                let mut rows = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
                while let Some(row) = seq.next_element::<Vec<f32>>()? {
                    // Said at the first wrong row rather than after all are held: a body of short rows
                    // ("[[0],[0],...]") would otherwise cost ten times its size in row headers.
                    if row.len() != FRAME_LEN {
                        return Err(de::Error::custom(format!(
                            "embedding row {} has {} values, not {FRAME_LEN}",
                            rows.len(),
                            row.len()
                        )));
                    }
                    rows.push(row);
                }
                Ok(Rows(rows))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Rows, A::Error> {
                let mut rows = None;
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    match &*key {
                        "embedding" => rows = Some(map.next_value::<Rows>()?),
                        "status" => {
                            let status = map.next_value::<std::borrow::Cow<'de, str>>()?;
                            if status != "ok" {
                                return Err(de::Error::custom(format!(
                                    "the embedding service answered status '{status}'"
                                )));
                            }
                        }
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                rows.ok_or_else(|| {
                    de::Error::custom("the embedding object has no \"embedding\" key")
                })
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Rows, E> {
                soundalike::clip::embedding_rows(text)
                    .map(Rows)
                    .map_err(|e| E::custom(format!("{e:#}")))
            }
        }
        deserializer.deserialize_any(Embedding)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_of_an_embedding_reads_to_the_same_rows() {
        let row: Vec<u8> = (0..128).map(|i| i as u8).collect();
        let rows = serde_json::json!([row, row]);
        let forms = [
            serde_json::json!({ "embedding": rows }),
            serde_json::json!({ "embedding": { "video_id": "x", "embedding": rows } }),
            serde_json::json!({ "embedding": { "status": "ok", "embedding": rows } }),
            serde_json::json!({ "embedding": rows.to_string() }),
        ];
        for body in forms {
            let form = form(body.to_string().as_bytes()).unwrap();
            let got = form.rows.unwrap();
            assert_eq!(got.len(), 2, "{body}");
            assert_eq!(got[1][127], 127.0);
        }
    }

    #[test]
    fn an_id_is_a_string_taken_as_given() {
        let form = form(br#"{"id": " xtGmrLOsjHk", "k": 5}"#).unwrap();
        assert_eq!(form.get("id"), Some(" xtGmrLOsjHk"));
        assert_eq!(form.get("k"), Some("5"));
        let error = super::form(br#"{"id": {"a": 1}}"#).err().unwrap();
        assert_eq!(error.status, 400);
        assert!(
            error.message.contains("id as a string"),
            "{}",
            error.message
        );
    }
}
