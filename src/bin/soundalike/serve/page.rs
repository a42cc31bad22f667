//! The upload page (`GET /`): one HTML page compiled into the binary, its style and script inline, nothing
//! loaded from another host. Its form works without JavaScript: it posts to `/` and the answer is the page again
//! with a results table (or the error in words). With JavaScript the same form shows the file's waveform and a
//! window of at most 10 s to drag, plays the selection, asks without a reload and plays a result on click; the
//! script then asks for the answer section alone (`?part=answer`), so there is one renderer of the table, here.

use std::fmt::Write;

use axum::Router;
use axum::extract::{Query, Request, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use soundalike::explain::clock;
use soundalike::labels::{self, LabelSet};
use soundalike::{Explanation, Hit};

use super::Shared;
use super::ask::{self, Question};
use super::errors::ApiError;
use super::upload::{self, Form};

const TEMPLATE: &str = include_str!("page.html");

pub fn routes() -> Router<Shared> {
    Router::new().route("/", get(show).post(ask_by_form))
}

/// The page; with fields in the query string (`/?id=ID&k=10`), the page with their answer.
async fn show(
    State(server): State<Shared>,
    Query(fields): Query<Vec<(String, String)>>,
) -> Response {
    let form = Form {
        fields,
        ..Form::default()
    };
    let values = Values::from(&form);
    let asked = form.get("id").is_some() || form.get("embedding").is_some();
    let answer = if asked {
        Some(answer(&server, form).await)
    } else {
        None
    };
    render(&server, &values, answer, false)
}

/// The form posted (multipart): the page again, its fields as sent, with the answer; or the answer section
/// alone for the script (`?part=answer`).
async fn ask_by_form(
    State(server): State<Shared>,
    Query(params): Query<Vec<(String, String)>>,
    request: Request,
) -> Response {
    let part_only = params.iter().any(|(k, v)| k == "part" && v == "answer");
    if let Err(busy) = ask::refuse_if_full(&server, request.headers()) {
        upload::discard_body(request, server.max_upload).await;
        return render(&server, &Values::default(), Some(Err(busy)), part_only);
    }
    let form = match upload::read_form(request, server.max_upload).await {
        Ok(form) => form,
        Err(error) => {
            return render(&server, &Values::default(), Some(Err(error)), part_only);
        }
    };
    let values = Values::from(&form);
    let answer = answer(&server, form).await;
    render(&server, &values, Some(answer), part_only)
}

/// The fields shown again in the form after it was sent.
#[derive(Default)]
struct Values {
    start: String,
    end: String,
    k: String,
    label: String,
    id: String,
}

impl From<&Form> for Values {
    fn from(form: &Form) -> Values {
        let field = |name: &str| form.get(name).unwrap_or_default().to_string();
        Values {
            start: field("start"),
            end: field("end"),
            k: field("k"),
            label: field("label"),
            id: field("id"),
        }
    }
}

/// What the table shows: the query's name, whether it was audio, and its hits.
struct Shown {
    name: String,
    hits: Vec<Hit>,
}

async fn answer(server: &Shared, form: Form) -> Result<Shown, ApiError> {
    let mut question = Question::from_form(form, server.max_seconds)?;
    // The page always says why each result is there.
    question.options.explain = true;
    let (name, hits) = ask::answer(server, question).await?;
    Ok(Shown { name, hits })
}

fn render(
    server: &Shared,
    values: &Values,
    answer: Option<Result<Shown, ApiError>>,
    part_only: bool,
) -> Response {
    let status = match &answer {
        Some(Err(error)) => error.status,
        _ => StatusCode::OK,
    };
    let section = match &answer {
        None => String::new(),
        Some(Ok(shown)) => table(shown),
        Some(Err(error)) => format!(
            "<p class=\"error\" role=\"alert\">{}</p>",
            escape(&error.message)
        ),
    };
    let retry = answer
        .as_ref()
        .and_then(|a| a.as_ref().err())
        .and_then(ApiError::headers);
    let body = if part_only {
        section
    } else {
        let notice = match &server.embedding {
            Ok(_) => String::new(),
            Err(why) => format!(
                "<p class=\"notice\">Audio is off on this server: {}. Clip ids still work.</p>",
                escape(why)
            ),
        };
        fill(TEMPLATE, |name| match name {
            "start" => escape(or_default(&values.start, "0")),
            "end" => escape(or_default(&values.end, "10")),
            "k" => escape(or_default(&values.k, "10")),
            "label" => escape(&values.label),
            "id" => escape(&values.id),
            "labels" => music_label_options(),
            "notice" => notice.clone(),
            "answer" => section.clone(),
            "max_upload_mb" => (server.max_upload / 1_000_000).to_string(),
            _ => String::new(),
        })
    };
    let mut response = (status, Html(body)).into_response();
    if let Some((name, value)) = retry {
        response.headers_mut().insert(name, value);
    }
    response
}

fn or_default<'a>(value: &'a str, default: &'a str) -> &'a str {
    if value.is_empty() { default } else { value }
}

/// The results table: rank, similarity, labels, where in the upload it matched (audio), and the link.
fn table(shown: &Shown) -> String {
    let mut html = String::new();
    let _ = write!(
        html,
        "<h2>Neighbours of <q>{}</q></h2>",
        escape(&shown.name)
    );
    if shown.hits.is_empty() {
        html.push_str("<p>No clip qualifies.</p>");
        return html;
    }
    let audio = shown.hits[0].matched_at.is_some();
    let score = if shown.hits[0].similarity.is_some() {
        "similarity"
    } else {
        "distance"
    };
    let columns = if audio { 5 } else { 4 };
    let _ = write!(
        html,
        "<table id=\"results\"><thead><tr><th>rank</th><th>{score}</th><th>labels</th>{}<th>clip</th></tr></thead><tbody>",
        if audio { "<th>time matched</th>" } else { "" }
    );
    for (rank, hit) in shown.hits.iter().enumerate() {
        let url = hit.url();
        let _ = write!(
            html,
            "<tr data-video-id=\"{}\" data-start=\"{}\"{}><td>{}</td><td>{:.4}</td><td>{}</td>",
            escape(&hit.video_id),
            hit.start_time,
            hit.matched_at
                .map(|at| format!(" data-matched-at=\"{at}\""))
                .unwrap_or_default(),
            rank + 1,
            hit.similarity.unwrap_or(hit.distance),
            escape(&hit.label_names().join(", ")),
        );
        if let Some(at) = hit.matched_at {
            let _ = write!(html, "<td>{}</td>", clock(at));
        }
        let _ = write!(
            html,
            "<td><a href=\"{}\" rel=\"noreferrer\">{}</a> at {}</td></tr>",
            escape(&url),
            escape(&hit.video_id),
            clock(hit.start_time)
        );
        if let Some(explanation) = &hit.explanation {
            let _ = write!(
                html,
                "<tr class=\"why\"><td></td><td colspan=\"{}\">{}</td></tr>",
                columns - 1,
                why(explanation)
            );
        }
    }
    html.push_str("</tbody></table>");
    html
}

/// Why a result is there, under it: the labels' shares of its similarity, and the seconds that matched best.
fn why(explanation: &Explanation) -> String {
    let mut html = String::from("<span class=\"shares\">");
    match &explanation.labels {
        Some(shares) => {
            let listed: Vec<String> = shares
                .iter()
                .map(|s| format!("{} {:.2}", escape(s.name), s.share))
                .collect();
            let _ = write!(
                html,
                "{}, other labels {:.2}",
                listed.join(" · "),
                explanation.rest.unwrap_or(0.0)
            );
        }
        None => html.push_str(&escape(explanation.note.unwrap_or("no label shares"))),
    }
    html.push_str("</span>");
    let pairs: Vec<String> = explanation
        .matched
        .iter()
        .map(|m| {
            format!(
                "{} ~ {} ({:.2})",
                clock(m.query_at),
                clock(m.hit_at),
                m.similarity
            )
        })
        .collect();
    if !pairs.is_empty() {
        let _ = write!(
            html,
            "; <span class=\"matched\">matched seconds (yours ~ this clip's): {}</span>",
            pairs.join(", ")
        );
    }
    html
}

/// The music labels as a datalist's options, for the label field's suggestions.
fn music_label_options() -> String {
    let music = LabelSet::music_ontology();
    let mut html = String::new();
    for index in music.indices() {
        if let Some(name) = labels::class_name(index.into()) {
            let _ = write!(html, "<option value=\"{}\">", escape(name));
        }
    }
    html
}

/// The template with each `{{name}}` replaced, in one pass: text put in is never read as a placeholder.
fn fill(template: &str, value: impl Fn(&str) -> String) -> String {
    let mut out = String::with_capacity(template.len() + 4096);
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        match rest[open + 2..].find("}}") {
            Some(close) => {
                out.push_str(&value(&rest[open + 2..open + 2 + close]));
                rest = &rest[open + 2 + close + 2..];
            }
            None => {
                out.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// Text made safe inside HTML (element content and quoted attributes).
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled_once_and_text_is_escaped() {
        let filled = fill("<p>{{a}}</p>{{b}}", |name| match name {
            "a" => escape("<b>{{b}}</b>"),
            _ => "B".into(),
        });
        assert_eq!(filled, "<p>&lt;b&gt;{{b}}&lt;/b&gt;</p>B");
        assert_eq!(clock(75.4), "1:15");
    }
}
