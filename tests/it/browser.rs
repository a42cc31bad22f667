//! The upload page in a real browser (issue 23): Debian's `chromium`, headless, driven through `chromedriver`
//! by fantoccini. The page is opened, the bundled WAV chosen, start and end set, the question asked and the
//! results table read, with each result's reasons under it (issue 37); once with JavaScript (the waveform drawn, the answer without a reload, a player on a
//! click) and once without (the plain form and the results page). Screenshots are kept in the target directory's
//! temporary folder (target/tmp/serve-page-*.png).
//!
//! Where chromium or chromedriver is missing the test reports a skip (`needs browser`); .ci/run installs both and
//! requires it, so there their absence fails it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::actions::{InputSource, MOUSE_BUTTON_LEFT, MouseActions, PointerAction};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::common::{ids, skip};
use crate::serve::{Served, formula_args, multipart, shared_index, source_wav};

/// The first of `names` on PATH.
fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// chromium and chromedriver, or `None` after reporting the skip (a failure where `.ci/run`, which installs them,
/// requires `browser`).
fn browser() -> Option<(PathBuf, PathBuf)> {
    let chromium = on_path(&["chromium", "chromium-browser"]);
    let driver = on_path(&["chromedriver"]);
    match (chromium, driver) {
        (Some(chromium), Some(driver)) => Some((chromium, driver)),
        _ => {
            skip(
                "browser",
                "chromium and chromedriver on PATH: apt-get install chromium chromium-driver",
            );
            None
        }
    }
}

/// chromedriver on a free local port, killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start(driver: &Path) -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "chromedriver listens"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn open(driver: &Driver, chromium: &Path, javascript: bool) -> Client {
    let mut options = json!({
        "binary": chromium,
        "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1200,1400", "--autoplay-policy=no-user-gesture-required"],
    });
    if !javascript {
        options["prefs"] = json!({"profile.managed_default_content_settings.javascript": 2});
    }
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("goog:chromeOptions".into(), options);
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .expect("a browser session")
}

async fn set(client: &Client, name: &str, value: &str) {
    let field = client
        .find(Locator::Css(&format!("input[name={name}]")))
        .await
        .unwrap();
    field.clear().await.unwrap();
    field.send_keys(value).await.unwrap();
}

/// The video ids of the results table's rows.
async fn table_ids(client: &Client) -> Vec<String> {
    let mut found = Vec::new();
    for row in client
        .find_all(Locator::Css("#results tbody tr[data-video-id]"))
        .await
        .unwrap()
    {
        found.push(row.attr("data-video-id").await.unwrap().unwrap());
    }
    found
}

/// The text of each result's row of reasons.
async fn why_rows(client: &Client) -> Vec<String> {
    let mut found = Vec::new();
    for row in client
        .find_all(Locator::Css("#results tbody tr.why"))
        .await
        .unwrap()
    {
        found.push(row.text().await.unwrap());
    }
    found
}

async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&path, png).unwrap();
    eprintln!("screenshot: {}", path.display());
}

#[test]
fn the_page_asks_about_a_chosen_window_of_a_song_with_and_without_javascript() {
    let Some((chromium, driver)) = browser() else {
        return;
    };
    let served = Served::start(shared_index(), &formula_args());
    let wav = source_wav();
    // What the API answers for the same file and window: the table must show these clips, in this order.
    let bytes = std::fs::read(&wav).unwrap();
    let (content_type, body) = multipart(&[
        ("audio", Some("source.wav"), &bytes),
        ("start", None, b"0.5"),
        ("end", None, b"2"),
        ("k", None, b"5"),
        ("explain", None, b"1"),
    ]);
    let api = served.post("/api/recommend", &content_type, &body).json();
    let expected = ids(&api);
    assert_eq!(expected.len(), 5);
    // Under each result the page says why, as the API's explanation does: each listed label with its share,
    // and the best-matched seconds.
    let clock = |s: f64| format!("{}:{:02}", s.round() as u64 / 60, s.round() as u64 % 60);
    let reasons: Vec<Vec<String>> = api["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|hit| {
            let why = &hit["explain"];
            let mut parts: Vec<String> = why["labels"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| {
                    format!(
                        "{} {:.2}",
                        l["name"].as_str().unwrap(),
                        l["share"].as_f64().unwrap()
                    )
                })
                .collect();
            let pair = &why["matched"][0];
            parts.push(format!(
                "{} ~ {}",
                clock(pair["query_at"].as_f64().unwrap()),
                clock(pair["hit_at"].as_f64().unwrap())
            ));
            parts
        })
        .collect();

    let driver = Driver::start(&driver);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // With JavaScript: the waveform, the window set from the file, the answer without leaving the page.
        let client = open(&driver, &chromium, true).await;
        client.goto(&served.url).await.unwrap();
        let file = client
            .find(Locator::Css("input[name=audio]"))
            .await
            .unwrap();
        file.send_keys(wav.to_str().unwrap()).await.unwrap();
        client
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css("#wave[data-drawn='1']"))
            .await
            .expect("the waveform is drawn");
        let end = client
            .find(Locator::Css("input[name=end]"))
            .await
            .unwrap()
            .prop("value")
            .await
            .unwrap();
        assert_eq!(end.as_deref(), Some("2.00"), "the window is the 2-second file, at most 10 s");
        // A window of 1 s, then dragged by the mouse along the waveform: it moves, its length kept.
        let shown: Value = client
            .execute(
                "var f = document.getElementById('ask'); f.start.value = '0'; f.end.value = '1'; \
                 f.end.dispatchEvent(new Event('change')); \
                 return [f.start.value, f.end.value, document.getElementById('wave').getBoundingClientRect().width];",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!((&shown[0], &shown[1]), (&json!("0.00"), &json!("1.00")));
        let width = shown[2].as_f64().unwrap();
        let wave = client.find(Locator::Css("#wave")).await.unwrap();
        // From the window's middle (0.5 s, a quarter of the way along) to half way along: 0.5 s later.
        let quarter = (width / 4.0).round();
        let drag = MouseActions::new("mouse".into())
            .then(PointerAction::MoveToElement {
                element: wave,
                duration: None,
                x: -quarter,
                y: 0.0,
            })
            .then(PointerAction::Down {
                button: MOUSE_BUTTON_LEFT,
            })
            .then(PointerAction::MoveBy {
                duration: Some(Duration::from_millis(300)),
                x: quarter,
                y: 0.0,
            })
            .then(PointerAction::Up {
                button: MOUSE_BUTTON_LEFT,
            });
        client.perform_actions(drag).await.unwrap();
        let dragged: Value = client
            .execute(
                "var f = document.getElementById('ask'); return [Number(f.start.value), Number(f.end.value)];",
                vec![],
            )
            .await
            .unwrap();
        let (from, to) = (dragged[0].as_f64().unwrap(), dragged[1].as_f64().unwrap());
        assert!(
            (from - 0.5).abs() <= 0.05 && ((to - from) - 1.0).abs() < 0.011,
            "the dragged window is {from}-{to} s; 0.5-1.5 s expected"
        );
        // The window typed in: the script keeps it inside the file and at most 10 s long.
        let window: Value = client
            .execute(
                "var f = document.getElementById('ask'); f.end.value = '2'; \
                 f.end.dispatchEvent(new Event('change')); f.start.value = '0.5'; \
                 f.start.dispatchEvent(new Event('change')); return [f.start.value, f.end.value];",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(window, json!(["0.50", "2.00"]));
        set(&client, "k", "5").await;
        client
            .find(Locator::Css("button[type=submit]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        client
            .wait()
            .at_most(Duration::from_secs(60))
            .for_element(Locator::Css("#answer[data-answered='1'] #results"))
            .await
            .expect("the results table appears");
        assert_eq!(table_ids(&client).await, expected);
        let shown = why_rows(&client).await;
        assert_eq!(shown.len(), reasons.len(), "a row of reasons under each result: {shown:?}");
        for (text, parts) in shown.iter().zip(&reasons) {
            for part in parts {
                assert!(text.contains(part.as_str()), "{part:?} is shown: {text}");
            }
        }
        let page: Value = client
            .execute("return [location.pathname, document.getElementById('wave').getAttribute('data-drawn')]", vec![])
            .await
            .unwrap();
        assert_eq!(page, json!(["/", "1"]), "no reload: the same page, its waveform kept");
        // A click on a result opens its player below it.
        client
            .find(Locator::Css("#results tbody tr td"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css("#results tr.why + tr.player"))
            .await
            .expect("a player row, below the result's reasons");
        screenshot(&client, "serve-page-javascript.png").await;
        client.close().await.unwrap();

        // Without JavaScript: the plain form posts and the answer is a page with the table.
        let client = open(&driver, &chromium, false).await;
        client.goto(&served.url).await.unwrap();
        let class = client
            .find(Locator::Css("html"))
            .await
            .unwrap()
            .attr("class")
            .await
            .unwrap();
        assert_eq!(class, None, "no script ran");
        client
            .find(Locator::Css("input[name=audio]"))
            .await
            .unwrap()
            .send_keys(wav.to_str().unwrap())
            .await
            .unwrap();
        set(&client, "start", "0.5").await;
        set(&client, "end", "2").await;
        set(&client, "k", "5").await;
        client
            .find(Locator::Css("button[type=submit]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        client
            .wait()
            .at_most(Duration::from_secs(60))
            .for_element(Locator::Css("#results"))
            .await
            .expect("the results page");
        assert_eq!(table_ids(&client).await, expected);
        assert_eq!(why_rows(&client).await.len(), expected.len(), "reasons without JavaScript too");
        let start = client
            .find(Locator::Css("input[name=start]"))
            .await
            .unwrap()
            .prop("value")
            .await
            .unwrap();
        assert_eq!(start.as_deref(), Some("0.5"), "the form keeps what was sent");
        screenshot(&client, "serve-page-no-javascript.png").await;
        // An error is words on the page.
        client.goto(&format!("{}/?id=nosuchclip00", served.url)).await.unwrap();
        let error = client
            .find(Locator::Css("p.error"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(error.contains("no clip 'nosuchclip00'"), "{error}");
        client.close().await.unwrap();
    });
    served.assert_alive("the browser");
}
