//! Lines for a person on stderr: errors, warnings, summaries. Writing them never fails the run: a closed or
//! full stderr (`2>/dev/full`, `2>&1 >/dev/null | head -1`) is ignored and the run keeps its own exit code
//! (`eprintln!` would panic, exit 101). Control characters that came from the input (an id in a batch line, a
//! file name) are shown escaped, so that they cannot move the cursor, clear the screen or retitle the terminal.

use std::borrow::Cow;
use std::io::Write;

/// Writes `text` and a newline to stderr, control characters escaped; errors are ignored.
pub fn line(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{}", printable(text));
}

/// `format!` arguments as one line on stderr (see [`line`]).
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::stderr::line(&format!($($arg)*))
    };
}
pub(crate) use say;

/// `text` with control characters shown as escapes, so that an id or label from the data cannot move the
/// cursor, clear the screen or break a table's lines.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return text.into();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect::<String>()
        .into()
}
