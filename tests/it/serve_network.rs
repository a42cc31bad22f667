//! `soundalike serve` on the open network (issue 33), through real sockets on loopback: clients that send slowly
//! or not at all, a shutdown that ends, SIGHUP, bodies whose memory must stay bounded, and the HTTP layer's own
//! refusals in the API's words. Each test starts its own server (tests/it/serve.rs's `Served`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::serve::{
    Served, client, formula_args, multipart, plain, shared_index, tone_wav, with_weights,
};

/// A raw answer read off a socket.
struct Raw {
    status: u16,
    head: String,
    body: String,
}

impl Raw {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("a JSON body ({e}): {}\n{}", self.head, self.body))
    }

    fn error(&self, status: u16) -> String {
        assert_eq!(self.status, status, "{}\n{}", self.head, self.body);
        self.json()["error"]
            .as_str()
            .unwrap_or_else(|| panic!("an error field: {}", self.body))
            .to_string()
    }
}

fn connect(served: &Served) -> TcpStream {
    let stream = TcpStream::connect(served.address()).expect("connects");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    stream
}

/// Reads what the server sends until it closes the connection (or 60 s pass), and parses it.
fn read_answer(stream: &mut TcpStream) -> Raw {
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("an HTTP answer: {text:?}"));
    Raw {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

/// Sends `request` whole on a new connection and reads the answer.
fn exchange(served: &Served, request: &[u8]) -> Raw {
    let mut stream = connect(served);
    stream.write_all(request).unwrap();
    read_answer(&mut stream)
}

/// The server's resident memory now and at its peak, in MB (/proc/PID/status).
fn memory_mb(served: &Served) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{}/status", served.pid())).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
            .unwrap_or_else(|| panic!("{name} in /proc/PID/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// A multipart upload's head for a body of `length` bytes (or chunked when `None`).
fn upload_head(served: &Served, path: &str, content_type: &str, length: Option<usize>) -> Vec<u8> {
    let length = match length {
        Some(n) => format!("Content-Length: {n}\r\n"),
        None => "Transfer-Encoding: chunked\r\n".to_string(),
    };
    format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: {content_type}\r\n{length}Connection: close\r\n\r\n",
        served.address()
    )
    .into_bytes()
}

/// Waits for a burst's clients: each was answered 200 or refused 503 (nothing failed), and some were answered.
fn answered_or_busy(clients: Vec<std::thread::JoinHandle<u16>>) {
    let statuses: Vec<u16> = clients.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(
        statuses.iter().all(|s| [200, 503].contains(s)),
        "{statuses:?}"
    );
    assert!(statuses.contains(&200), "some are answered: {statuses:?}");
}

#[test]
fn a_half_sent_request_does_not_keep_the_server_from_stopping() {
    let served = Served::start(shared_index(), &["--grace", "3", "--header-timeout", "60"]);
    // A head begun and never finished, and a connection kept alive after an answer: neither may hold the exit.
    let mut half = connect(&served);
    half.write_all(b"GET / HTTP/1.1\r\nX: ").unwrap();
    let mut kept = connect(&served);
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    // The kept connection's answer begun: the server has accepted both connections (in the order they came) and
    // answered on the second, which stays open.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        assert_eq!(kept.read(&mut byte).unwrap(), 1, "an answer: {head:?}");
        head.push(byte[0]);
    }
    let signalled = Instant::now();
    let (code, stderr) = served.stop(libc::SIGTERM);
    let took = signalled.elapsed();
    assert_eq!(code, 0, "exit code 0; stderr: {stderr}");
    assert!(
        took < Duration::from_secs(15),
        "exits within the 3 s grace (and the test's margin): {took:?}"
    );
    drop((half, kept));
}

#[test]
fn a_head_sent_a_byte_a_second_and_an_idle_connection_are_closed_at_the_deadline() {
    let served = Served::start(shared_index(), &["--header-timeout", "2"]);
    let mut slow = connect(&served);
    let started = Instant::now();
    let mut closed_after = None;
    for byte in b"GET /healthz HTTP/1.1\r\nX-Slow: ".iter().cycle().take(30) {
        if slow.write_all(&[*byte]).is_err() {
            closed_after = Some(started.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
        let mut probe = [0u8; 1];
        slow.set_nonblocking(true).unwrap();
        let read = slow.read(&mut probe);
        slow.set_nonblocking(false).unwrap();
        if matches!(read, Ok(0)) {
            closed_after = Some(started.elapsed());
            break;
        }
    }
    let closed_after = closed_after.expect("the trickling head is cut off");
    assert!(
        closed_after < Duration::from_secs(8),
        "closed near the 2 s deadline: {closed_after:?}"
    );

    // A kept-alive connection that asks nothing more is closed at the same deadline.
    let mut idle = connect(&served);
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let started = Instant::now();
    let mut bytes = Vec::new();
    let _ = idle.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let idle_for = started.elapsed();
    assert!(
        idle_for >= Duration::from_secs(1) && idle_for < Duration::from_secs(8),
        "an idle kept-alive connection is closed after the deadline: {idle_for:?}"
    );
    served.assert_alive("slow heads");
}

#[test]
fn a_body_slower_than_the_least_rate_is_cut_off_with_408() {
    let served = Served::start(
        shared_index(),
        &["--header-timeout", "2", "--min-rate", "1"],
    );
    let (content_type, body) = multipart(&[("id", None, b"xtGmrLOsjHk")]);
    let mut stream = connect(&served);
    stream
        .write_all(&upload_head(
            &served,
            "/api/recommend",
            &content_type,
            Some(body.len() + 100_000),
        ))
        .unwrap();
    // A byte every half second: far below 1 KB/s once the 2 s grace is over.
    let started = Instant::now();
    for byte in body.iter().take(20) {
        if stream.write_all(&[*byte]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
        if started.elapsed() > Duration::from_secs(5) {
            break;
        }
    }
    let answer = read_answer(&mut stream);
    let error = answer.error(408);
    assert!(error.contains("KB/s"), "{error}");
    served.assert_alive("a slow body");
}

#[test]
fn four_slow_uploads_do_not_stop_a_fifth_from_being_answered() {
    let served = with_weights();
    let wav = tone_wav(4.0, 16_000);
    let (content_type, body) = multipart(&[("audio", Some("tone.wav"), &wav)]);
    // Four uploads of 1 MB announced, sent a byte every second.
    let slow: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut stream = connect(&served);
            stream
                .write_all(&upload_head(
                    &served,
                    "/model/predict",
                    &content_type,
                    Some(1 << 20),
                ))
                .unwrap();
            stream.write_all(&body[..10]).unwrap();
            stream
        })
        .collect();
    let trickle = std::thread::spawn(move || {
        let mut slow = slow;
        for _ in 0..3 {
            std::thread::sleep(Duration::from_secs(1));
            for stream in &mut slow {
                let _ = stream.write_all(b"x");
            }
        }
        slow
    });
    // A question answered on a new connection made after the four: the server has accepted them, in the order
    // they came, and reads their heads before the fifth upload comes.
    let health = exchange(
        &served,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(health.status, 200, "{}", health.body);
    let fifth = served.post("/model/predict", &content_type, &body);
    assert_eq!(fifth.status, 200, "{}", fifth.body);
    assert_eq!(fifth.json()["status"], "ok");
    drop(trickle.join().unwrap());
}

#[test]
fn a_burst_of_chunked_uploads_and_large_json_bodies_stay_within_their_memory_bound() {
    // Small limits, so that the bound is tight: 6 MB an upload, 1 MB of JSON.
    let served = Served::start(
        shared_index(),
        &[
            formula_args(),
            vec![
                "--max-upload".into(),
                "6".into(),
                "--max-json".into(),
                "1000".into(),
            ],
        ]
        .concat(),
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let places = 2 * cores;
    // Warm: one upload and one JSON question, so that the baseline holds the network's working memory.
    let wav = tone_wav(5.0, 44_100);
    let (content_type, body) = multipart(&[("audio", Some("tone.wav"), &wav)]);
    assert_eq!(
        served.post("/model/predict", &content_type, &body).status,
        200
    );
    let (before, _) = memory_mb(&served);

    // 24 chunked uploads of 5 MB at once (120 MB sent), then 16 JSON bodies of nearly 1 MB.
    let big = tone_wav(55.0, 44_100);
    let (content_type, body) = multipart(&[("audio", Some("long.wav"), &big)]);
    let senders: Vec<_> = (0..24)
        .map(|_| {
            let address = served.address().to_string();
            let head = format!(
                "POST /model/predict HTTP/1.1\r\nHost: {address}\r\nContent-Type: {content_type}\r\n\
                 Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            );
            let body = body.clone();
            std::thread::spawn(move || {
                let mut stream = TcpStream::connect(&address).unwrap();
                stream.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
                let _ = stream.write_all(head.as_bytes());
                for chunk in body.chunks(64 * 1024) {
                    let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), chunk, b"\r\n"].concat();
                    if stream.write_all(&framed).is_err() {
                        break;
                    }
                }
                let _ = stream.write_all(b"0\r\n\r\n");
                read_answer(&mut stream).status
            })
        })
        .collect();
    answered_or_busy(senders);

    let row: Vec<f64> = (0..128).map(|i| i as f64 + 0.123456).collect();
    let rows = vec![row; 600];
    let question = json!({ "embedding": rows, "k": 5 }).to_string();
    assert!(
        question.len() < 1_000_000 && question.len() > 500_000,
        "{}",
        question.len()
    );
    let askers: Vec<_> = (0..16)
        .map(|_| {
            let url = served.url.clone();
            let question = question.clone();
            std::thread::spawn(move || {
                let agent = client();
                Served::finish(
                    agent
                        .post(format!("{url}/api/recommend"))
                        .content_type("application/json")
                        .send(question.as_bytes()),
                )
                .status
            })
        })
        .collect();
    answered_or_busy(askers);

    let (_, peak) = memory_mb(&served);
    // What may be held at once: the reading budget (a place's worth of upload each), the admitted uploads'
    // bytes, each running embedding's 55 s of 16 kHz samples and frames, the JSON bodies with their rows, and
    // room for the allocator and hyper's buffers.
    let bound =
        (places * 6 + places * 6) as f64 * 2.0 + cores as f64 * 60.0 + places as f64 * 8.0 + 150.0;
    assert!(
        peak - before < bound,
        "peak {peak:.0} MB over a baseline of {before:.0} MB; the bound is +{bound:.0} MB"
    );
    // Memory is given back once the burst is over: polled, as the allocator returns it within a moment.
    let over = Instant::now();
    loop {
        let (after, _) = memory_mb(&served);
        if after < before + 100.0 {
            break;
        }
        assert!(
            over.elapsed() < Duration::from_secs(30),
            "idle after the burst: {after:.0} MB against {before:.0} MB before"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    served.assert_alive("a burst");
}

#[test]
fn sighup_finishes_the_upload_in_flight_and_exits_0() {
    let served = with_weights();
    let wav = tone_wav(30.0, 16_000);
    let url = served.url.clone();
    let idle = served.idle_cpu_time();
    let upload = std::thread::spawn(move || {
        let (content_type, body) = multipart(&[("audio", Some("tone.wav"), &wav)]);
        let agent = client();
        Served::finish(
            agent
                .post(format!("{url}/model/predict"))
                .content_type(content_type)
                .send(&body[..]),
        )
    });
    served.wait_embedding(idle);
    let (code, stderr) = served.stop(libc::SIGHUP);
    let answer = upload.join().unwrap();
    assert_eq!(
        answer.status, 200,
        "the upload in flight is answered: {}",
        answer.body
    );
    assert_eq!(code, 0, "exit code 0 after SIGHUP; stderr: {stderr}");
    assert!(stderr.contains("stopping"), "{stderr}");
}

#[test]
fn the_http_layers_own_refusals_are_the_apis_json() {
    let served = plain();
    let malformed = exchange(&served, b"GET / HTTP/1.1\r\nBad Header\r\n\r\n");
    assert!(
        malformed.error(400).contains("malformed"),
        "{}",
        malformed.body
    );
    assert!(
        malformed
            .head
            .to_ascii_lowercase()
            .contains("content-type: application/json")
    );

    let many: String = (0..150).map(|i| format!("X-{i}: {i}\r\n")).collect();
    let too_many = exchange(
        &served,
        format!("GET /healthz HTTP/1.1\r\n{many}\r\n").as_bytes(),
    );
    assert!(too_many.error(431).contains("head"), "{}", too_many.body);

    let long_uri = format!(
        "GET /api/recommend?id={} HTTP/1.1\r\nHost: x\r\n\r\n",
        "a".repeat(70_000)
    );
    let too_long = exchange(&served, long_uri.as_bytes());
    assert!(too_long.error(414).contains("URI"), "{}", too_long.body);
    served.assert_alive("malformed requests");
}

#[test]
fn media_types_encodings_ids_and_paths_as_the_api_says() {
    let served = plain();
    // Media types compared as RFC 9110 says: case-insensitive, parameters apart, whole.
    let body = br#"{"id": "xtGmrLOsjHk", "k": 3}"#;
    let upper = served.post("/api/recommend", "APPLICATION/JSON; charset=UTF-8", body);
    assert_eq!(upper.status, 200, "{}", upper.body);
    assert_eq!(upper.json()["results"].as_array().unwrap().len(), 3);
    let other = served.post("/api/recommend", "application/jsonx", body);
    assert!(
        other.error(415).contains("application/jsonx"),
        "{}",
        other.body
    );

    // A compressed body is refused, naming its coding, rather than parsed as text.
    let request = format!(
        "POST /api/recommend HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let gzip = exchange(&served, &[request.as_bytes(), body].concat());
    assert!(gzip.error(415).contains("gzip"), "{}", gzip.body);

    // Ids are taken as given; an id that is not a string is a bad request.
    let spaced = served.post_json("/api/recommend", &json!({"id": " xtGmrLOsjHk"}));
    spaced.error(404);
    let object = served.post_json("/api/recommend", &json!({"id": {"a": 1}}));
    assert!(object.error(400).contains("id"), "{}", object.body);

    // No answer shows where the index lives on the server.
    let index = std::fs::canonicalize(shared_index()).unwrap();
    let parent = index.parent().unwrap().display().to_string();
    let missing = served.get("/api/recommend?id=no-such-clip");
    let error = missing.error(404);
    assert!(!error.contains(&parent), "{error}");
    assert!(error.contains("serve.idx"), "{error}");
    let info = served.get("/api/info");
    assert_eq!(info.status, 200);
    assert!(!info.body.contains(&parent), "{}", info.body);
    assert_eq!(info.json()["index"], "serve.idx");

    // A window is said in the request's words, not the command line's.
    let wav = tone_wav(2.0, 16_000);
    let served = with_weights();
    let late = served.post_form(
        "/api/recommend",
        &[("audio", Some("tone.wav"), &wav), ("start", None, b"30")],
    );
    let error = late.error(400);
    assert!(
        error.contains("start 30") && !error.contains("--"),
        "{error}"
    );
    let backwards = served.post_form(
        "/api/recommend",
        &[
            ("audio", Some("tone.wav"), &wav),
            ("start", None, b"5"),
            ("end", None, b"2"),
        ],
    );
    let error = backwards.error(400);
    assert!(error.contains("end 2") && !error.contains("--"), "{error}");
}

/// MAX's own checks (IBM/MAX-Audio-Embedding-Generator, tests/test.py) against `serve`.
#[test]
fn the_max_metadata_and_swagger_description_are_maxs() {
    let served = with_weights();
    let swagger = served.get("/swagger.json");
    assert_eq!(swagger.status, 200);
    assert_eq!(swagger.content_type, "application/json");
    let swagger = swagger.json();
    assert!(swagger.get("swagger").is_some());
    assert_eq!(swagger["info"]["title"], "MAX Audio Embedding Generator");
    assert_eq!(
        swagger["info"]["description"],
        "Generate embedding vectors from audio files."
    );

    let metadata = served.get("/model/metadata");
    assert_eq!(metadata.status, 200);
    let metadata = metadata.json();
    assert_eq!(metadata["id"], "audio_embeddings-tf");
    assert_eq!(metadata["name"], "audio_embeddings TensorFlow Model");
    assert_eq!(
        metadata["description"],
        "audio_embeddings TensorFlow model trained on Audio Set"
    );
    assert_eq!(metadata["license"], "Apache 2.0");
    assert_eq!(
        metadata["source"],
        "https://developer.ibm.com/exchanges/models/all/max-audio-embedding-generator/"
    );

    // A 4.2 s WAV is four rows of 128, as MAX's car horn is.
    let wav = tone_wav(4.2, 16_000);
    let predicted = served.post_form("/model/predict", &[("audio", Some("car-horn.wav"), &wav)]);
    assert_eq!(predicted.status, 200, "{}", predicted.body);
    let predicted = predicted.json();
    assert_eq!(predicted["status"], "ok");
    let rows = predicted["embedding"].as_array().unwrap();
    assert_eq!(rows.len(), 4);
    assert!(rows.iter().all(|row| row.as_array().unwrap().len() == 128));

    // A file that is not audio is 400, as MAX answers it.
    let text = b"import pytest\nimport requests\n";
    let invalid = served.post_form("/model/predict", &[("audio", Some("tests/test.py"), text)]);
    assert_eq!(invalid.status, 400, "{}", invalid.body);
    assert_eq!(invalid.json()["status"], "error");
}

#[test]
fn an_upload_of_8_channels_at_192_khz_is_held_as_16_khz_mono() {
    let served = with_weights();
    // Warm: the network's working memory belongs to the baseline.
    let wav = tone_wav(5.0, 16_000);
    let warm = served.post_form("/model/predict", &[("audio", Some("warm.wav"), &wav)]);
    assert_eq!(warm.status, 200, "{}", warm.body);
    let dir = tempfile::tempdir().unwrap();
    let flac = std::fs::read(crate::common::hostile_audio::write_hostile_flac(dir.path())).unwrap();
    std::fs::write(format!("/proc/{}/clear_refs", served.pid()), "5").unwrap();
    let (before, _) = memory_mb(&served);
    let answer = served.post_form("/model/predict", &[("audio", Some("hostile.flac"), &flac)]);
    assert_eq!(answer.status, 200, "{}", answer.body);
    let rows = answer.json()["embedding"].as_array().unwrap().len();
    assert_eq!(rows, 623, "599 s is 623 rows of 0.96 s");
    let (_, peak) = memory_mb(&served);
    // A decode holds its seconds of 16 kHz mono (8 bytes a sample) and its frames, about 205 KB a second
    // (docs/design.md), whatever the file's rate and channels; held at its own rate it was over 900 MB.
    let bound = 599.0 * 0.205 + 120.0;
    assert!(
        peak - before < bound,
        "peak {peak:.0} MB over {before:.0} MB before the upload; the bound is +{bound:.0} MB"
    );
}
