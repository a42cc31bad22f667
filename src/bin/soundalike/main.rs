//! The `soundalike` command line: the library's first client. It parses arguments, decides what a person sees
//! (tables, JSON, progress bars, one `error:` line), owns the process (signals, exit codes, the allocator's
//! settings) and asks the library for everything else.

mod args;
mod bus_error;
mod cli;
mod commands;
mod output;
mod process;
mod progress;
mod serve;
mod stderr;

use std::process::ExitCode;

use clap::Parser;

use cli::Cli;

/// Exit codes, as documented in docs/errors.md.
mod exit {
    pub const SUCCESS: u8 = 0;
    pub const ERROR: u8 = 1;
    pub const USAGE: u8 = 2;
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return clap_exit(&error),
    };
    // A panic is reported as one error line below, not as Rust's message and a backtrace hint: the library
    // turns a dependency's panic on damaged data into an error of its own (a damaged index), and any other
    // is a bug, said in one line with exit code 1, never 101.
    std::panic::set_hook(Box::new(|_| {}));
    let ran = std::panic::catch_unwind(|| cli::run(cli)).unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(anyhow::anyhow!("internal error (please report it): {why}"))
    });
    match ran {
        Ok(()) => ExitCode::from(exit::SUCCESS),
        Err(error) if is_broken_pipe(&error) => ExitCode::from(exit::SUCCESS),
        Err(error) => {
            // One line: the error and its causes, outermost first.
            stderr::line(&format!("error: {error:#}{}", hint(&error)));
            ExitCode::from(if is_usage(&error) {
                exit::USAGE
            } else {
                exit::ERROR
            })
        }
    }
}

/// Help and version go to stdout, usage errors to stderr, as clap would print them; but a help that cannot be
/// written (`--help > /dev/full`) is an error, not a success.
fn clap_exit(error: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind::{DisplayHelp, DisplayVersion};
    use std::io::Write;
    match error.kind() {
        DisplayHelp | DisplayVersion => {
            let text = error.render().to_string();
            let mut out = std::io::stdout().lock();
            match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
                Ok(()) => ExitCode::from(exit::SUCCESS),
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                    ExitCode::from(exit::SUCCESS)
                }
                Err(e) => {
                    stderr::line(&format!("error: cannot write to stdout: {e}"));
                    ExitCode::from(exit::ERROR)
                }
            }
        }
        _ => {
            let _ = error.print();
            ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(exit::USAGE))
        }
    }
}

/// What the command line adds to the library's message: how to rebuild a damaged index (the library says only
/// that it is damaged, its hosts rebuild in their own ways).
pub fn hint(error: &anyhow::Error) -> &'static str {
    let damaged = error.chain().any(|cause| {
        cause
            .downcast_ref::<soundalike::Error>()
            .is_some_and(|e| e.kind() == soundalike::ErrorKind::DamagedIndex)
    });
    if damaged { DAMAGED_HINT } else { "" }
}

/// Said after a damaged index's error, on the command line and by `serve`.
pub const DAMAGED_HINT: &str = " (rebuild it with `soundalike index`)";

/// Whether the command line asked for something impossible: exit code 2, like clap's own usage errors.
fn is_usage(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause.is::<soundalike::UsageError>()
            || cause
                .downcast_ref::<soundalike::Error>()
                .is_some_and(|e| e.kind() == soundalike::ErrorKind::Usage)
    })
}

/// True when the error, somewhere in its chain, is a closed output pipe (`soundalike ingest ... | head`): the
/// reader has all it wanted, so the run ends quietly and successfully.
fn is_broken_pipe(error: &anyhow::Error) -> bool {
    use std::io::ErrorKind::BrokenPipe;
    error.chain().any(|cause| {
        // serde_json wraps the io error of a writer in its own; the library's errors say what they started as.
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == BrokenPipe)
            || cause
                .downcast_ref::<serde_json::Error>()
                .is_some_and(|e| e.io_error_kind() == Some(BrokenPipe))
            || cause
                .downcast_ref::<soundalike::Error>()
                .is_some_and(|e| e.io_kind() == Some(BrokenPipe))
    })
}
