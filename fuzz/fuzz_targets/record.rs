//! TFRecord framing and the SequenceExample decoder on arbitrary bytes: they must never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    soundalike::fuzzing::record(data);
});
