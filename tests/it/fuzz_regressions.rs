//! Replays every saved fuzzing input (fuzz/regressions: seeds and any crash found, minimized) through the same
//! functions the fuzz targets call, so CI on stable Rust keeps guarding what fuzzing found. The working corpora
//! (fuzz/corpus, not committed) are replayed too where present.

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut count = 0;
    for dir in [
        root.join("regressions").join(target),
        root.join("corpus").join(target),
    ] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        // A running fuzzer may replace corpus files under our feet: skip any that vanish.
        for path in entries.filter_map(|e| Some(e.ok()?.path())) {
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            run(&bytes);
            count += 1;
        }
    }
    count
}

#[test]
fn record_inputs_decode_without_panicking() {
    assert!(
        replay("record", soundalike::fuzzing::record) >= 1,
        "fuzz/regressions/record holds the seeds"
    );
}

#[test]
fn embedding_inputs_parse_without_panicking() {
    assert!(
        replay("embedding", soundalike::fuzzing::embedding) >= 1,
        "fuzz/regressions/embedding holds the seeds"
    );
}
