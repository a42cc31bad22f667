//! `soundalike serve` (issue 23) through a real HTTP client (ureq) against the built binary on 127.0.0.1:0:
//! every endpoint and status, answers compared with `recommend --json` and `embed`, the server still answering
//! after each bad request, a rebuilt index noticed, a full embedding queue refused at once, and SIGTERM with a
//! request in flight. Audio is embedded with the formula weights (tests/it/common/formula.rs): the embeddings
//! mean nothing about sound, but the server and the command line must agree on them bit for bit.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::*;

/// A server started by a test, stopped (killed) when dropped if the test has not stopped it.
pub struct Served {
    child: Child,
    pub url: String,
    stderr: Arc<Mutex<String>>,
    /// The thread collecting stderr, which ends when the server's stderr closes.
    reader: Option<std::thread::JoinHandle<()>>,
    agent: ureq::Agent,
}

/// A response: status, Retry-After, body.
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<String>,
    pub content_type: String,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// The `error` of a JSON error answer, after checking the status.
    pub fn error(&self, status: u16) -> String {
        assert_eq!(self.status, status, "status; body: {}", self.body);
        let value = self.json();
        let error = value["error"]
            .as_str()
            .unwrap_or_else(|| panic!("an error field: {}", self.body));
        assert!(!error.contains("panicked"), "{error}");
        error.to_string()
    }
}

/// An index of the fixture's music clips for this module.
pub fn shared_index() -> &'static Path {
    static INDEX: OnceLock<PathBuf> = OnceLock::new();
    INDEX.get_or_init(|| build_shared_index("serve.idx"))
}

/// The formula weights' options.
pub fn formula_args() -> Vec<PathBuf> {
    vec![
        "--weights".into(),
        formula::weights_file().to_path_buf(),
        "--pca".into(),
        formula::pca_file(),
    ]
}

impl Served {
    /// `serve --index DIR --listen 127.0.0.1:0 EXTRA...`, with no weights found unless given (a home of its own
    /// and no SOUNDALIKE_WEIGHTS), once it says where it listens.
    pub fn start<S: AsRef<OsStr>>(index: &Path, extra: &[S]) -> Served {
        let home = tempfile::tempdir().unwrap().keep();
        let mut child = soundalike()
            .arg("serve")
            .arg("--index")
            .arg(index)
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .env_remove("SOUNDALIKE_WEIGHTS")
            .env_remove("SOUNDALIKE_PCA")
            .env("HOME", &home)
            .env("XDG_DATA_HOME", home.join("data"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("binary runs");
        let mut lines = BufReader::new(child.stderr.take().unwrap());
        let mut first = String::new();
        lines.read_line(&mut first).unwrap();
        let url = first
            .trim_end()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| {
                let mut rest = String::new();
                let _ = lines.read_to_string(&mut rest);
                panic!("the first stderr line says where it listens: {first:?} {rest}")
            })
            .to_string();
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        let stderr = Arc::new(Mutex::new(String::new()));
        let kept = Arc::clone(&stderr);
        let reader = std::thread::spawn(move || {
            let mut line = String::new();
            while lines.read_line(&mut line).unwrap_or(0) > 0 {
                kept.lock().unwrap().push_str(&line);
                line.clear();
            }
        });
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .into();
        Served {
            child,
            url,
            stderr,
            reader: Some(reader),
            agent,
        }
    }

    pub fn finish(response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Answer {
        let mut response = response.expect("the server answers");
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let retry_after = header("retry-after");
        let content_type = header("content-type").unwrap_or_default();
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .unwrap();
        Answer {
            status,
            retry_after,
            content_type,
            body,
        }
    }

    pub fn get(&self, path: &str) -> Answer {
        Self::finish(self.agent.get(format!("{}{path}", self.url)).call())
    }

    pub fn post(&self, path: &str, content_type: &str, body: &[u8]) -> Answer {
        Self::finish(
            self.agent
                .post(format!("{}{path}", self.url))
                .content_type(content_type)
                .send(body),
        )
    }

    pub fn post_json(&self, path: &str, body: &Value) -> Answer {
        self.post(path, "application/json", body.to_string().as_bytes())
    }

    /// A multipart form: (name, file name if a file, bytes).
    pub fn post_form(&self, path: &str, parts: &[(&str, Option<&str>, &[u8])]) -> Answer {
        let (content_type, body) = multipart(parts);
        self.post(path, &content_type, &body)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The CPU time the server has used so far, once its start (the index's check) is over: it has answered.
    pub fn idle_cpu_time(&self) -> Duration {
        self.assert_alive("its start");
        wait::cpu_time(self.pid())
    }

    /// Waits until the server has used a fifth of a second of CPU more than `idle` (its
    /// [`Served::idle_cpu_time`] before an upload was sent): it is embedding the upload, as an idle server does
    /// nothing that costs as much, and an upload of many seconds of audio takes several times as long to embed.
    pub fn wait_embedding(&self, idle: Duration) {
        wait_until("the server embeds the upload", || {
            wait::cpu_time(self.pid()) >= idle + Duration::from_millis(200)
        });
    }

    /// The server's address, `127.0.0.1:PORT`.
    pub fn address(&self) -> &str {
        self.url.trim_start_matches("http://")
    }

    /// The server's stderr after its first line, so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The server's stderr once it holds `text`, or as it is after 10 s: a line the server wrote before an
    /// answer may not have been read from the pipe by the thread that collects it when the answer arrives.
    pub fn stderr_with(&self, text: &str) -> String {
        let waited = std::time::Instant::now();
        loop {
            let stderr = self.stderr();
            if stderr.contains(text) || waited.elapsed() > Duration::from_secs(10) {
                return stderr;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Still answering: the health check is 200.
    pub fn assert_alive(&self, after: &str) {
        let health = self.get("/healthz");
        assert_eq!(health.status, 200, "alive after {after}: {}", health.body);
    }

    /// Sends `signal` and waits for the exit code.
    pub fn stop(mut self, signal: libc::c_int) -> (i32, String) {
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        let status = wait_with_timeout(&mut self.child, Duration::from_secs(60));
        // The reader has taken the last lines once it ends, at the end of the exited server's stderr.
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        (status, self.stderr())
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_with_timeout(child: &mut Child, limit: Duration) -> i32 {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        assert!(started.elapsed() < limit, "the server did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An HTTP client for a thread of its own that reads error statuses as answers.
pub fn client() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// A multipart/form-data body and its content type.
pub fn multipart(parts: &[(&str, Option<&str>, &[u8])]) -> (String, Vec<u8>) {
    const BOUNDARY: &str = "soundalike-test-boundary-7Hq2xZ";
    let mut body = Vec::new();
    for (name, file, bytes) in parts {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        match file {
            Some(file) => body.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"{name}\"; filename=\"{file}\"\r\n\
                     Content-Type: application/octet-stream\r\n\r\n"
                )
                .as_bytes(),
            ),
            None => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            ),
        }
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={BOUNDARY}"), body)
}

pub fn source_wav() -> PathBuf {
    fixtures().join("audio").join("source.wav")
}

/// The CLI's `recommend --json` answer for `args`.
fn cli_answer(index: &Path, args: &[&str]) -> Value {
    let run = recommend(index, &[args, &["--json"]].concat());
    run.assert_ok();
    run.lines().remove(0)
}

/// A server on the shared index with no weights (one per test: a static one would outlive the test run).
pub fn plain() -> Served {
    Served::start::<&str>(shared_index(), &[])
}

/// A server on the shared index with the formula weights.
pub fn with_weights() -> Served {
    Served::start(shared_index(), &formula_args())
}

/// Seconds of a 440 Hz tone with a slow chirp as a 16-bit mono WAV at `rate`.
pub fn tone_wav(seconds: f64, rate: u32) -> Vec<u8> {
    let n = (seconds * rate as f64) as usize;
    let samples: Vec<i16> = (0..n)
        .map(|i| {
            let t = i as f64 / rate as f64;
            ((2.0 * std::f64::consts::PI * (440.0 + 30.0 * t) * t).sin() * 12_000.0) as i16
        })
        .collect();
    wav_bytes(&samples, rate)
}

#[test]
fn queries_by_id_and_embedding_answer_as_recommend_json_does() {
    let served = plain();
    let index = shared_index();
    let by_get = served.get("/api/recommend?id=xtGmrLOsjHk&k=5&label=Opera,Choir");
    assert_eq!(by_get.status, 200, "{}", by_get.body);
    assert!(by_get.content_type.starts_with("application/json"));
    let cli = cli_answer(
        index,
        &["--id", "xtGmrLOsjHk", "-k", "5", "--label", "Opera,Choir"],
    );
    assert_eq!(by_get.json(), cli, "GET equals recommend --json");
    assert_eq!(ids(&cli).len(), 5);

    let by_post = served.post_json(
        "/api/recommend",
        &json!({"id": "xtGmrLOsjHk", "k": 5, "label": ["Opera", "Choir"]}),
    );
    assert_eq!(by_post.json(), cli, "POST JSON equals recommend --json");

    let default = served.get("/api/recommend?id=xtGmrLOsjHk");
    assert_eq!(default.json(), cli_answer(index, &["--id", "xtGmrLOsjHk"]));

    // An embedding of 12 rows from row 2 on, as `recommend --embedding FILE --start 2`.
    let clip = &clips()[40];
    let mut rows = clip["embedding"].as_array().unwrap().clone();
    rows.splice(0..0, rows[..2].to_vec());
    let rows = Value::Array(rows);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rows.json");
    std::fs::write(&file, rows.to_string()).unwrap();
    let cli = cli_answer(
        index,
        &[
            "--embedding",
            file.to_str().unwrap(),
            "--start",
            "2",
            "-k",
            "7",
        ],
    );
    let api = served.post_json(
        "/api/recommend",
        &json!({"embedding": rows, "start": 2, "k": 7}),
    );
    assert_eq!(api.status, 200, "{}", api.body);
    assert_eq!(api.json()["results"], cli["results"]);
    assert_eq!(api.json()["query"], "embedding");
}

#[test]
fn bad_requests_get_their_status_in_words_and_the_server_keeps_answering() {
    let served = plain();
    let cases: Vec<(&str, Answer, u16, &str)> = vec![
        (
            "k 0",
            served.get("/api/recommend?id=xtGmrLOsjHk&k=0"),
            400,
            "from 1 to 10000",
        ),
        (
            "an unknown label",
            served.get("/api/recommend?id=xtGmrLOsjHk&label=Polka-ish"),
            400,
            "Polka-ish",
        ),
        (
            "an unknown id",
            served.get("/api/recommend?id=nosuchclip00"),
            404,
            "no clip 'nosuchclip00'",
        ),
        (
            "nothing asked",
            served.get("/api/recommend?k=3"),
            400,
            "nothing to ask",
        ),
        (
            "a body that is not JSON",
            served.post("/api/recommend", "application/json", b"{\"id\": "),
            400,
            "the body is not a question this API reads",
        ),
        (
            "an embedding of the wrong width",
            served.post_json("/api/recommend", &json!({"embedding": [[1, 2, 3]]})),
            400,
            "embedding",
        ),
        (
            "an id too long",
            served.post_json("/api/recommend", &json!({"id": "x".repeat(600)})),
            400,
            "at most 511",
        ),
        (
            "a body of another type",
            served.post("/api/recommend", "text/plain", b"xtGmrLOsjHk"),
            415,
            "multipart/form-data",
        ),
        (
            "an unknown endpoint",
            served.get("/api/nothing"),
            404,
            "no such endpoint",
        ),
        (
            "a method not allowed",
            served.post_json("/api/info", &json!({})),
            405,
            "not allowed",
        ),
    ];
    for (what, answer, status, words) in cases {
        let error = answer.error(status);
        assert!(
            error.contains(words),
            "{what}: {error:?} should say {words:?}"
        );
        served.assert_alive(what);
    }
    // The CLI's words for the same mistakes.
    let cli = recommend(shared_index(), &["--id", "nosuchclip00"]);
    assert!(
        cli.stderr.contains("no clip 'nosuchclip00'"),
        "{}",
        cli.stderr
    );
}

#[test]
fn without_weights_audio_is_503_saying_where_to_put_them_and_ids_still_work() {
    let served = plain();
    let wav = std::fs::read(source_wav()).unwrap();
    for path in ["/api/recommend", "/model/predict"] {
        let answer = served.post_form(path, &[("audio", Some("source.wav"), &wav)]);
        let error = answer.error(503);
        assert!(
            error.contains("vggish-10086976.pth") && error.contains("--weights"),
            "{path}: {error}"
        );
    }
    let stderr = served.stderr_with("warning: audio queries are off");
    assert!(
        stderr.contains("warning: audio queries are off"),
        "{stderr}"
    );
    assert_eq!(served.get("/api/recommend?id=xtGmrLOsjHk").status, 200);
    let info = served.get("/api/info").json();
    assert_eq!(info["server"]["audio"], false);
}

#[test]
fn info_labels_health_and_the_openapi_description() {
    let served = plain();
    let info = served.get("/api/info");
    assert_eq!(info.status, 200);
    let cli = run(&[
        "info",
        "--index",
        shared_index().to_str().unwrap(),
        "--json",
    ]);
    cli.assert_ok();
    let mut info = info.json();
    let server = info
        .as_object_mut()
        .unwrap()
        .remove("server")
        .expect("what the server takes");
    // What `info --json` says, but the index by its folder's name: the server's paths are not a client's.
    let mut cli_info = cli.lines().remove(0);
    cli_info["index"] = json!("serve.idx");
    assert_eq!(info, cli_info, "/api/info holds info --json");
    assert_eq!(server["max_upload_bytes"], 50_000_000);
    assert_eq!(server["max_seconds"], 600.0);

    let labels = served.get("/api/labels").json();
    let labels = labels.as_array().unwrap();
    assert_eq!(labels.len(), 527);
    assert_eq!(
        labels[137],
        json!({"index": 137, "name": "Music", "music": true})
    );
    assert_eq!(labels[0]["music"], false, "Speech is not music");

    let health = served.get("/healthz").json();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["clips"], 779);

    let openapi = served.get("/openapi.json");
    assert!(openapi.content_type.starts_with("application/json"));
    let openapi = openapi.json();
    for path in [
        "/api/recommend",
        "/model/predict",
        "/api/info",
        "/api/labels",
        "/healthz",
        "/openapi.json",
        "/",
    ] {
        assert!(openapi["paths"][path].is_object(), "{path} is described");
    }
}

#[test]
fn the_page_works_without_javascript_and_loads_nothing_from_elsewhere() {
    let served = plain();
    let page = served.get("/");
    assert_eq!(page.status, 200);
    assert!(page.content_type.starts_with("text/html"));
    for needed in [
        "<input type=\"file\" name=\"audio\"",
        "name=\"start\"",
        "name=\"end\"",
        "name=\"k\"",
        "name=\"label\"",
        "name=\"id\"",
        "type=\"submit\"",
        "enctype=\"multipart/form-data\"",
    ] {
        assert!(page.body.contains(needed), "the form has {needed}");
    }
    for foreign in ["<script src", "<link", "@import", "url(", "<img"] {
        assert!(!page.body.contains(foreign), "nothing loaded: {foreign}");
    }
    // The form sent with a clip id: the page again with its results table, the same clips as the API's.
    let answer = served.post_form(
        "/",
        &[
            ("audio", Some(""), b""),
            ("start", None, b"0"),
            ("end", None, b"10"),
            ("k", None, b"4"),
            ("label", None, b""),
            ("id", None, b"xtGmrLOsjHk"),
        ],
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    let api = served.get("/api/recommend?id=xtGmrLOsjHk&k=4").json();
    assert!(answer.body.contains("<table id=\"results\""));
    for id in ids(&api) {
        assert!(
            answer.body.contains(&format!(
                "href=\"https://www.youtube.com/watch?v={id}&amp;t="
            )),
            "{id} is linked at its second"
        );
    }
    assert!(
        answer.body.contains("value=\"xtGmrLOsjHk\""),
        "the form keeps its fields"
    );
    // An error is words on the page, with its status; text from the request is escaped.
    let missing = served.get("/?id=%3Cscript%3Ex");
    assert_eq!(missing.status, 404);
    assert!(missing.body.contains("class=\"error\""), "{}", missing.body);
    assert!(!missing.body.contains("<script>x"), "escaped");
    // The script's request: the answer section alone.
    let (content_type, body) = multipart(&[("id", None, b"xtGmrLOsjHk")]);
    let part = served.post("/?part=answer", &content_type, &body);
    assert_eq!(part.status, 200);
    assert!(part.body.starts_with("<h2>") && !part.body.contains("<form"));
}

#[test]
fn predict_answers_as_max_does_so_embed_through_it_equals_embed() {
    let served = with_weights();
    // A 16-bit mono WAV: what the service client sends, sample for sample (a stereo file's mean would be rounded
    // to 16 bits on the way, by the client).
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("tone.wav");
    std::fs::write(&wav, tone_wav(5.0, 22_050)).unwrap();
    let local = run(&[
        &[OsStr::new("embed"), wav.as_os_str()][..],
        &formula_args()
            .iter()
            .map(|p| p.as_os_str())
            .collect::<Vec<_>>(),
    ]
    .concat());
    local.assert_ok();
    let through = run(&[
        OsStr::new("embed"),
        wav.as_os_str(),
        OsStr::new("--service"),
        OsStr::new(&served.url),
    ]);
    through.assert_ok();
    assert_eq!(
        through.stdout_text(),
        local.stdout_text(),
        "embed --service against serve equals embed"
    );
    let answer = served.post_form(
        "/model/predict",
        &[("audio", Some("source.wav"), &std::fs::read(&wav).unwrap())],
    );
    assert_eq!(answer.status, 200);
    let value = answer.json();
    assert_eq!(value["status"], "ok");
    let clip: Value = serde_json::from_str(local.stdout_text().trim()).unwrap();
    assert_eq!(value["embedding"], clip["embedding"]);
}

#[test]
fn an_upload_is_answered_as_recommend_audio_answers_it() {
    let served = with_weights();
    let wav = source_wav();
    let cli = run(&[
        &[
            OsStr::new("recommend"),
            OsStr::new("--index"),
            shared_index().as_os_str(),
            OsStr::new("--audio"),
            wav.as_os_str(),
            OsStr::new("--start"),
            OsStr::new("1"),
            OsStr::new("--end"),
            OsStr::new("7.5"),
            OsStr::new("-k"),
            OsStr::new("6"),
            OsStr::new("--json"),
        ][..],
        &formula_args()
            .iter()
            .map(|p| p.as_os_str())
            .collect::<Vec<_>>(),
    ]
    .concat());
    cli.assert_ok();
    let cli = cli.lines().remove(0);
    let answer = served.post_form(
        "/api/recommend",
        &[
            ("audio", Some("source.wav"), &std::fs::read(&wav).unwrap()),
            ("start", None, b"1"),
            ("end", None, b"7.5"),
            ("k", None, b"6"),
        ],
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    let api = answer.json();
    assert_eq!(api["query"], "source.wav");
    assert_eq!(api["results"], cli["results"]);
    assert!(api["results"][0]["matched_at"].is_number());
}

/// A WAV header (16-bit mono PCM) stating `rate` and a data chunk of `data_len` bytes, followed by only `actual`
/// bytes of samples.
fn wav_header(rate: u32, bits: u16, data_len: u32, actual: usize) -> Vec<u8> {
    let mut wav = Vec::new();
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&data_len.saturating_add(36).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes());
    wav.extend_from_slice(&rate.to_le_bytes());
    wav.extend_from_slice(&(rate * u32::from(bits / 8)).to_le_bytes());
    wav.extend_from_slice(&(bits / 8).to_le_bytes());
    wav.extend_from_slice(&bits.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&data_len.to_le_bytes());
    wav.extend(std::iter::repeat_n(0u8, actual));
    wav
}

#[test]
fn uploads_that_are_not_audio_too_long_or_too_large_are_refused_and_the_server_keeps_answering() {
    let served = with_weights();
    let good = std::fs::read(source_wav()).unwrap();
    type Case<'a> = (
        &'a str,
        Vec<(&'a str, Option<&'a str>, Vec<u8>)>,
        u16,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            "/api/recommend",
            vec![(
                "audio",
                Some("notes.txt"),
                b"these are words, not sound".to_vec(),
            )],
            415,
            "notes.txt: not an audio file",
        ),
        (
            // 400 on MAX's endpoint, as MAX answers a file that is not audio.
            "/model/predict",
            vec![(
                "audio",
                Some("notes.txt"),
                b"these are words, not sound".to_vec(),
            )],
            400,
            "not an audio file",
        ),
        (
            // A header claiming a rate of 1 Hz: 200 KB would be 28 hours.
            "/api/recommend",
            vec![(
                "audio",
                Some("slow.wav"),
                wav_header(1, 16, 200_000, 200_000),
            )],
            422,
            "1 Hz",
        ),
        (
            // A header claiming about 149 hours of 4 kHz audio in a file of 4 KB.
            "/model/predict",
            vec![(
                "audio",
                Some("long.wav"),
                wav_header(4000, 16, u32::MAX - 64, 4000),
            )],
            422,
            "longer than the 600 s this server takes",
        ),
        (
            "/api/recommend",
            vec![
                ("audio", Some("source.wav"), good.clone()),
                ("start", None, b"500".to_vec()),
            ],
            400,
            "past the end of the audio",
        ),
        (
            "/api/recommend",
            vec![
                ("audio", Some("source.wav"), good.clone()),
                ("start", None, b"5".to_vec()),
                ("end", None, b"2".to_vec()),
            ],
            400,
            "end 2 is not after start 5",
        ),
        (
            "/api/recommend",
            vec![("audio", Some("cut.wav"), good[..good.len() / 2].to_vec())],
            400,
            "cut.wav: truncated",
        ),
        (
            "/model/predict",
            vec![("file", Some("source.wav"), good.clone())],
            400,
            "field `audio`",
        ),
    ];
    for (path, parts, status, words) in cases {
        let parts: Vec<(&str, Option<&str>, &[u8])> =
            parts.iter().map(|(n, f, b)| (*n, *f, &b[..])).collect();
        let started = Instant::now();
        let answer = served.post_form(path, &parts);
        let error = answer.error(status);
        assert!(
            error.contains(words),
            "{path}: {error:?} should say {words:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "refused at once, not decoded: {:?}",
            started.elapsed()
        );
        if path == "/model/predict" {
            assert_eq!(answer.json()["status"], "error");
            assert_eq!(answer.json()["message"], error.as_str());
        }
        served.assert_alive(words);
    }
    // Past --max-upload by its stated length: refused before the body is sent.
    let address = served.url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(
        stream,
        "POST /api/recommend HTTP/1.1\r\nHost: {address}\r\nContent-Type: multipart/form-data; boundary=x\r\n\
         Content-Length: 60000000\r\n\r\n"
    )
    .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut head = [0u8; 512];
    let n = stream.read(&mut head).unwrap();
    let head = String::from_utf8_lossy(&head[..n]);
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    assert!(head.contains("larger than the 50 MB"), "{head}");
    served.assert_alive("413");
}

#[test]
fn a_full_embedding_queue_is_refused_at_once_and_id_queries_do_not_wait() {
    let served = with_weights();
    let wav = tone_wav(30.0, 16_000);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let uploads = 4 * cores + 2;
    let started = Instant::now();
    let (statuses, status) = std::sync::mpsc::channel();
    let threads: Vec<_> = (0..uploads)
        .map(|_| {
            let wav = wav.clone();
            let url = served.url.clone();
            let statuses = statuses.clone();
            std::thread::spawn(move || {
                let (content_type, body) = multipart(&[("audio", Some("tone.wav"), &wav)]);
                let agent = client();
                let sent = Instant::now();
                let response = agent
                    .post(format!("{url}/model/predict"))
                    .content_type(content_type)
                    .send(&body[..]);
                let answer = Served::finish(response);
                let _ = statuses.send(answer.status);
                (answer, sent.elapsed(), Instant::now())
            })
        })
        .collect();
    drop(statuses);
    // While the uploads are embedded, a question by id is answered. A refusal says the pool is full, so that
    // uploads are being embedded; if none comes, every upload has been answered and the asserts below say so.
    while status.recv().is_ok_and(|status| status != 503) {}
    let asked = Instant::now();
    let by_id = served.get("/api/recommend?id=xtGmrLOsjHk");
    let id_answered = Instant::now();
    assert_eq!(by_id.status, 200);
    let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let last_done = results.iter().map(|r| r.2).max().unwrap();
    let refused: Vec<_> = results.iter().filter(|r| r.0.status == 503).collect();
    let embedded = results.iter().filter(|r| r.0.status == 200).count();
    assert!(!refused.is_empty(), "some of {uploads} uploads are refused");
    assert!(
        embedded >= cores,
        "the pool embeds as many as the cores at once"
    );
    assert_eq!(
        refused.len() + embedded,
        uploads,
        "every answer is 200 or 503"
    );
    for (answer, took, _) in &refused {
        assert!(answer.error(503).contains("try again"), "{}", answer.body);
        let retry: u64 = answer
            .retry_after
            .as_deref()
            .expect("Retry-After")
            .parse()
            .unwrap();
        assert!(retry >= 1);
        assert!(*took < Duration::from_secs(2), "refused at once: {took:?}");
    }
    assert!(
        id_answered < last_done,
        "the id query ({:?}) was answered before the uploads were done ({:?})",
        id_answered - asked,
        last_done - started
    );
    served.assert_alive("a full queue");
}

#[test]
fn sigterm_finishes_the_request_in_flight_and_exits_0() {
    let served = Served::start(shared_index(), &formula_args());
    let wav = tone_wav(30.0, 16_000);
    let url = served.url.clone();
    let idle = served.idle_cpu_time();
    let upload = std::thread::spawn(move || {
        let (content_type, body) = multipart(&[("audio", Some("tone.wav"), &wav)]);
        let agent = client();
        let answer = Served::finish(
            agent
                .post(format!("{url}/api/recommend"))
                .content_type(content_type)
                .send(&body[..]),
        );
        (answer, Instant::now())
    });
    // The upload is sent and being embedded (30 s of audio takes a while) when the signal comes.
    served.wait_embedding(idle);
    let url = served.url.clone();
    let signalled = Instant::now();
    let (code, stderr) = served.stop(libc::SIGTERM);
    let (answer, answered) = upload.join().unwrap();
    assert!(answered > signalled, "the answer came after the signal");
    assert_eq!(
        answer.status, 200,
        "the request in flight is answered: {}",
        answer.body
    );
    assert_eq!(answer.json()["results"].as_array().unwrap().len(), 10);
    assert_eq!(code, 0, "exit code 0; stderr: {stderr}");
    assert!(stderr.contains("stopping"), "{stderr}");
    assert!(!stderr.contains("error"), "{stderr}");
    // It no longer listens.
    let address = url.trim_start_matches("http://");
    assert!(std::net::TcpStream::connect(address).is_err());

    let served = Served::start::<&str>(shared_index(), &[]);
    let (code, _) = served.stop(libc::SIGINT);
    assert_eq!(code, 0, "SIGINT too");
}

#[test]
fn a_rebuilt_or_appended_index_is_answered_from_without_a_restart() {
    let lines = fixture_clip_lines();
    let (first, second) = lines.split_at(500);
    let dir = tempfile::tempdir().unwrap();
    let index = dir.path().join("live.idx");
    let index_with = |input: &[String], extra: &[&str]| {
        let text: String = input.iter().map(|l| format!("{l}\n")).collect();
        let mut args = vec!["index", "-q", "--index", index.to_str().unwrap()];
        args.extend_from_slice(extra);
        run_with_stdin(&args, text.as_bytes()).assert_ok();
    };
    index_with(first, &[]);
    let served = Served::start::<&str>(&index, &["-q"]);
    let clips = |served: &Served| served.get("/api/info").json()["settings"]["clips"].as_u64();
    assert_eq!(clips(&served), Some(500));
    let late: Value = serde_json::from_str(&second[0]).unwrap();
    let late_id = late["video_id"].as_str().unwrap().to_string();
    served
        .get(&format!("/api/recommend?id={late_id}"))
        .error(404);

    // An append is seen by the next question.
    index_with(&second[..100], &["--append"]);
    assert_eq!(clips(&served), Some(600));
    assert_eq!(
        served.get(&format!("/api/recommend?id={late_id}")).status,
        200
    );

    // A rebuild swaps a new index in; questions asked meanwhile are all answered, from one index or the other.
    let asking = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let url = served.url.clone();
    let keep_asking = Arc::clone(&asking);
    let counted = Arc::clone(&answered);
    let early: Value = serde_json::from_str(&first[0]).unwrap();
    let early_id = early["video_id"].as_str().unwrap().to_string();
    let asker = std::thread::spawn(move || {
        let agent = client();
        let mut statuses = Vec::new();
        while keep_asking.load(std::sync::atomic::Ordering::SeqCst) {
            let answer = Served::finish(
                agent
                    .get(format!("{url}/api/recommend?id={early_id}&k=3"))
                    .call(),
            );
            statuses.push(answer.status);
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        statuses
    });
    index_with(lines, &[]);
    let started = Instant::now();
    while clips(&served) != Some(779) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the rebuilt index is noticed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // A few questions asked of the new index too, however fast or slow this machine answers.
    let noticed = answered.load(std::sync::atomic::Ordering::SeqCst);
    wait_until("questions answered after the swap", || {
        answered.load(std::sync::atomic::Ordering::SeqCst) >= noticed + 3
    });
    asking.store(false, std::sync::atomic::Ordering::SeqCst);
    let statuses = asker.join().unwrap();
    assert!(statuses.len() > 5, "asked during the rebuild: {statuses:?}");
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    let cli = cli_answer(&index, &["--id", &late_id]);
    assert_eq!(
        served.get(&format!("/api/recommend?id={late_id}")).json(),
        cli
    );
}

#[test]
fn a_port_in_use_and_a_bad_address_are_errors() {
    let served = plain();
    let address = served.url.trim_start_matches("http://");
    let taken = run(&[
        "serve",
        "--index",
        shared_index().to_str().unwrap(),
        "--listen",
        address,
    ]);
    taken.assert_error(1, &["cannot listen on", address]);
    let bad = run(&[
        "serve",
        "--index",
        shared_index().to_str().unwrap(),
        "--listen",
        "localhost",
    ]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    let missing = run(&["serve", "--index", "/nonexistent/music.idx"]);
    missing.assert_error(1, &["no index at /nonexistent/music.idx"]);
}
