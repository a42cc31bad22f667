//! Audio as a query and the MAX service path, through the binary: `embed --service` and `recommend --audio`
//! against a local test server speaking the MAX Audio Embedding Generator's API (a multipart `audio` field on
//! `POST /model/predict`, answered `{"status":"ok","embedding":[[...]]}`). The server answers rows taken from
//! real AudioSet clips, so the merge of windows can be checked against the clips it must find.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use crate::common::*;
use serde_json::{Value, json};

/// A MAX-like service on a free local port: answers every request with `status` and `body`, and keeps each
/// request's body for the test to look at.
struct Server {
    url: String,
    bodies: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Server {
    fn start(status: u16, body: String) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&bodies);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                let request = answer(stream, status, &body);
                kept.lock().unwrap().push(request);
            }
        });
        Server { url, bodies }
    }

    fn requests(&self) -> Vec<Vec<u8>> {
        self.bodies.lock().unwrap().clone()
    }
}

/// Reads one HTTP request (its path must be /model/predict and its body multipart) and answers it.
fn answer(stream: TcpStream, status: u16, body: &str) -> Vec<u8> {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(
        line.starts_with("POST /model/predict "),
        "request line {line:?}"
    );
    let mut length = 0;
    let mut content_type = String::new();
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).unwrap();
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':').unwrap();
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse().unwrap(),
            "content-type" => content_type = value.trim().to_string(),
            _ => {}
        }
    }
    assert!(
        content_type.starts_with("multipart/form-data; boundary="),
        "{content_type}"
    );
    let mut request = vec![0; length];
    reader.read_exact(&mut request).unwrap();
    let reason = if status == 200 { "OK" } else { "Error" };
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    request
}

/// The WAV inside a multipart body's `audio` field.
fn audio_field(request: &[u8]) -> &[u8] {
    let text = String::from_utf8_lossy(request);
    let disposition = text
        .find("Content-Disposition: form-data; name=\"audio\"")
        .expect("an audio field");
    let start = request[disposition..]
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap()
        + disposition
        + 4;
    let riff_len = u32::from_le_bytes(request[start + 4..start + 8].try_into().unwrap()) as usize;
    &request[start..start + 8 + riff_len]
}

/// A WAV's rate and 16-bit samples (interleaved).
fn wav_samples(wav: &[u8]) -> (u16, u32, Vec<i16>) {
    assert_eq!(&wav[..4], b"RIFF");
    let channels = u16::from_le_bytes([wav[22], wav[23]]);
    let rate = u32::from_le_bytes(wav[24..28].try_into().unwrap());
    let data = wav.windows(4).position(|w| w == b"data").unwrap();
    let len = u32::from_le_bytes(wav[data + 4..data + 8].try_into().unwrap()) as usize;
    let samples = wav[data + 8..data + 8 + len]
        .chunks(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    (channels, rate, samples)
}

fn source_wav() -> PathBuf {
    fixtures().join("audio").join("source.wav")
}

fn shared_index() -> &'static Path {
    static INDEX: OnceLock<PathBuf> = OnceLock::new();
    INDEX.get_or_init(|| build_shared_index("audio-query.idx"))
}

fn rows(clip: &Value) -> Vec<Value> {
    clip["embedding"].as_array().unwrap().clone()
}

fn ok_answer(rows: &[Value]) -> String {
    json!({"status": "ok", "embedding": rows}).to_string()
}

fn recommend_audio(server: &Server, extra: &[&str]) -> Run {
    let wav = source_wav();
    let mut args = vec![
        "recommend",
        "--index",
        shared_index().to_str().unwrap(),
        "--audio",
        wav.to_str().unwrap(),
        "--service",
        &server.url,
        "--json",
    ];
    args.extend_from_slice(extra);
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    run(&args)
}

#[test]
fn embed_through_the_service_sends_the_files_samples_and_writes_its_rows() {
    let clip = &clips()[3];
    let server = Server::start(200, ok_answer(&rows(clip)));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("song.jsonl");
    let run = run(&[
        "embed".as_ref(),
        source_wav().as_os_str(),
        "--service".as_ref(),
        server.url.as_ref(),
        "-o".as_ref(),
        out.as_os_str(),
    ]);
    run.assert_ok();
    let written: Value =
        serde_json::from_str(std::fs::read_to_string(&out).unwrap().trim()).unwrap();
    assert_eq!(written["embedding"], clip["embedding"]);
    assert_eq!(
        written["video_id"],
        format!("file:{}", source_wav().display())
    );
    assert_eq!(written["end_time"], 2.0);

    // The service got the file as a mono 16-bit WAV at its own rate: the two channels' mean, sample for sample.
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let (channels, rate, sent) = wav_samples(audio_field(&requests[0]));
    let (file_channels, file_rate, stereo) = wav_samples(&std::fs::read(source_wav()).unwrap());
    assert_eq!((channels, rate), (1, file_rate));
    assert_eq!(file_channels, 2);
    let mono: Vec<i16> = stereo
        .chunks(2)
        .map(|lr| ((f64::from(lr[0]) + f64::from(lr[1])) / 2.0).round() as i16)
        .collect();
    assert_eq!(sent, mono);
}

#[test]
fn audio_answers_as_its_embedding_does() {
    // One window of ten rows: the answer is the embedding's, the clip itself first at distance 0.
    let clip = &clips()[10];
    let server = Server::start(200, ok_answer(&rows(clip)));
    let by_audio = recommend_audio(&server, &[]);
    by_audio.assert_ok();
    let by_audio = &by_audio.lines()[0];

    let dir = tempfile::tempdir().unwrap();
    let embedding = dir.path().join("clip.json");
    std::fs::write(&embedding, clip.to_string()).unwrap();
    let by_embedding = run(&[
        "recommend",
        "--index",
        shared_index().to_str().unwrap(),
        "--embedding",
        embedding.to_str().unwrap(),
        "--json",
    ]);
    by_embedding.assert_ok();
    let by_embedding = &by_embedding.lines()[0];

    let ids = |answer: &Value| -> Vec<Value> {
        answer["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|hit| hit["video_id"].clone())
            .collect()
    };
    assert_eq!(ids(by_audio), ids(by_embedding));
    assert_eq!(by_audio["results"][0]["video_id"], clip["video_id"]);
    assert_eq!(by_audio["results"][0]["matched_at"], 0.0);
    assert_eq!(by_audio["query"], source_wav().display().to_string());
}

#[test]
fn a_long_file_is_asked_window_by_window_and_each_clip_scores_its_best_match() {
    // 25 rows: clip A's ten, clip B's ten, then five of clip C. Windows start at rows 0, 10 and 15 (the last
    // one ending at the last row), so A matches at 0 s and B at 9.6 s, both exactly.
    let all = clips();
    let (a, b, c) = (&all[100], &all[200], &all[300]);
    let mut song = rows(a);
    song.extend(rows(b));
    song.extend(rows(c).into_iter().take(5));
    let server = Server::start(200, ok_answer(&song));
    // With the default re-rank the two clips lead; without it their distance is exactly 0.
    let reranked = recommend_audio(&server, &["-k", "5"]);
    reranked.assert_ok();
    let mut top: Vec<Value> = reranked.lines()[0]["results"].as_array().unwrap()[..2]
        .iter()
        .map(|hit| hit["video_id"].clone())
        .collect();
    top.sort_by_key(|id| id.to_string());
    let mut expected = vec![a["video_id"].clone(), b["video_id"].clone()];
    expected.sort_by_key(|id| id.to_string());
    assert_eq!(top, expected);
    let answer = recommend_audio(&server, &["-k", "5", "--rerank", "0"]);
    answer.assert_ok();
    let results = answer.lines()[0]["results"].as_array().unwrap().clone();
    assert_eq!(results.len(), 5);
    let found = |clip: &Value| {
        results
            .iter()
            .find(|hit| hit["video_id"] == clip["video_id"])
            .unwrap_or_else(|| panic!("{} not among {results:?}", clip["video_id"]))
    };
    assert_eq!(found(a)["matched_at"], 0.0);
    assert!((found(b)["matched_at"].as_f64().unwrap() - 9.6).abs() < 1e-9);
    for clip in [a, b] {
        assert!(found(clip)["distance"].as_f64().unwrap() < 1e-6);
    }
    // Ranked by their best distance, each clip once.
    let distances: Vec<f64> = results
        .iter()
        .map(|hit| hit["distance"].as_f64().unwrap())
        .collect();
    assert!(distances.windows(2).all(|w| w[0] <= w[1]), "{distances:?}");
    let mut ids: Vec<&Value> = results.iter().map(|hit| &hit["video_id"]).collect();
    ids.dedup();
    assert_eq!(ids.len(), 5);
}

#[test]
fn audio_shorter_than_the_index_frames_answers_by_the_mean_of_its_rows() {
    let clip = &clips()[20];
    let eight: Vec<Value> = rows(clip).into_iter().take(8).collect();
    let server = Server::start(200, ok_answer(&eight));
    let answer = recommend_audio(&server, &["-k", "3"]);
    answer.assert_ok();
    let results = answer.lines()[0]["results"].as_array().unwrap().clone();
    assert_eq!(results.len(), 3);
    assert_eq!(results[0]["matched_at"], 0.0);

    // An index of concatenated frames cannot take 8 rows, and says so.
    let dir = tempfile::tempdir().unwrap();
    let flat = dir.path().join("flat.idx");
    run_with_stdin(
        &[
            "index",
            "-q",
            "--vector",
            "flat",
            "--index",
            flat.to_str().unwrap(),
        ],
        clips_jsonl(),
    )
    .assert_ok();
    let run = run(&[
        "recommend",
        "--index",
        flat.to_str().unwrap(),
        "--audio",
        source_wav().to_str().unwrap(),
        "--service",
        &server.url,
    ]);
    run.assert_error(
        1,
        &[
            "source.wav",
            "gives 8 examples",
            "10 frames concatenated (flat vectors)",
            "at least 9.60 s",
        ],
    );
}

#[test]
fn a_service_that_is_down_or_answers_an_error_is_named() {
    // A port nothing listens on.
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let down = Server {
        url: closed.clone(),
        bodies: Default::default(),
    };
    recommend_audio(&down, &[]).assert_error(
        1,
        &[
            "source.wav",
            &format!("the embedding service at {closed}/model/predict cannot be reached"),
        ],
    );

    let failing = Server::start(
        500,
        json!({"status": "error", "message": "model not loaded"}).to_string(),
    );
    recommend_audio(&failing, &[])
        .assert_error(1, &["source.wav", "answered HTTP 500: model not loaded"]);

    let refusing = Server::start(200, json!({"status": "error"}).to_string());
    recommend_audio(&refusing, &[]).assert_error(
        1,
        &["answered the embedding service answered status 'error'"],
    );

    let garbled = Server::start(
        200,
        json!({"status": "ok", "embedding": [[1, 2, 3]]}).to_string(),
    );
    recommend_audio(&garbled, &[]).assert_error(1, &["row 0 of 3 values, not 128"]);

    // embed writes nothing when the service fails.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    run(&[
        "embed".as_ref(),
        source_wav().as_os_str(),
        "--service".as_ref(),
        failing.url.as_ref(),
        "-o".as_ref(),
        out.as_os_str(),
    ])
    .assert_error(1, &["answered HTTP 500"]);
    assert!(!out.exists());
}

#[test]
fn audio_options_out_of_place_are_usage_errors() {
    let index = shared_index().to_str().unwrap();
    let wav = source_wav();
    let wav = wav.to_str().unwrap();
    let clip_id = clips()[0]["video_id"].as_str().unwrap().to_string();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--id", &clip_id, "--weights", "w.pth"],
            "--weights goes with --audio",
        ),
        (
            vec!["--audio", wav, "--service", "https://example.org"],
            "https is not supported",
        ),
        (
            vec!["--audio", wav, "--service", "localhost:5000"],
            "not an http:// URL",
        ),
        (
            vec![
                "--audio",
                wav,
                "--service",
                "http://127.0.0.1:9",
                "--start",
                "5",
                "--end",
                "2",
            ],
            "--end 2 is not after --start 5",
        ),
        (
            vec!["--embedding", "clip.json", "--start", "1.5"],
            "with --embedding or --batch it is a row number",
        ),
        (vec!["--embedding", "clip.json", "--end", "3"], "--audio"),
        (
            vec![
                "--audio",
                wav,
                "--service",
                "http://x:1",
                "--weights",
                "w.pth",
            ],
            "cannot be used with",
        ),
    ];
    for (args, message) in cases {
        let mut all = vec!["recommend", "--index", index];
        all.extend(args);
        // Some are clap's, whose message goes on to show the usage: its first line is the error.
        let run = run(&all);
        assert_eq!(run.code, 2, "{all:?}: {}", run.stderr);
        let first = run.stderr.lines().next().unwrap_or_default();
        assert!(
            first.starts_with("error: ") && first.contains(message),
            "{all:?}: {first:?} should mention {message:?}"
        );
    }
}
