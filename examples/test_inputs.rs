//! Writes the inputs the integration tests generate, for measuring `embed` by hand (not a user command):
//!
//! ```sh
//! cargo run --release --example test_inputs -- formula-weights formula.safetensors   # 288 MB
//! cargo run --release --example test_inputs -- hostile-flac DIR                      # DIR/hostile.flac
//! ```
//!
//! The formula weights are those of the golden files (fixtures/vggish-golden/README.md); the FLAC is issue 33's,
//! 194 KB that decode to 920 million samples. The generators are the tests' own files, included here rather than
//! copied, so that what is measured is what the tests check.

use std::path::Path;
use std::process::ExitCode;

#[path = "../tests/it/common/formula.rs"]
mod formula;
#[path = "../tests/it/common/hostile_audio.rs"]
mod hostile_audio;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["formula-weights", file] => formula::write_safetensors(Path::new(file)),
        ["hostile-flac", dir] => {
            println!(
                "{}",
                hostile_audio::write_hostile_flac(Path::new(dir)).display()
            )
        }
        _ => {
            eprintln!("usage: test_inputs formula-weights FILE | hostile-flac DIR");
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}
