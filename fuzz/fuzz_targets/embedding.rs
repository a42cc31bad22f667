//! The embedding-file parser (clips, 2-D arrays, embedding service responses) on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    soundalike::fuzzing::embedding(data);
});
