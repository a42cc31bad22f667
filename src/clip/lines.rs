//! Lines of text read with a cap on their length: a hostile or mistaken input (`/dev/zero`, a 1 GB line) is
//! refused line by line in bounded memory instead of being read whole.

use std::io::{BufRead, Read};

use anyhow::{Result, anyhow};

/// A reader's lines (without their `\n`), each refused past `cap` bytes (then skipped to its end in bounded
/// pieces, without keeping it).
pub struct CappedLines<R> {
    reader: R,
    cap: usize,
    done: bool,
    /// The rest of a line refused as too long is still to be skipped, at the next call: a caller that stops at
    /// the error (a file of clips) must not wait for the end of a line that has none (`/dev/zero`).
    skipping: bool,
}

impl<R: BufRead> CappedLines<R> {
    pub fn new(reader: R, cap: usize) -> Self {
        CappedLines {
            reader,
            cap,
            done: false,
            skipping: false,
        }
    }

    /// The next line, an error for one too long or not UTF-8 (the lines after it can still be read), or
    /// `None` at the end. A read error ends the lines.
    pub fn next_line(&mut self) -> Option<crate::Result<String>> {
        self.read_line()
            .map(|line| line.map_err(crate::Error::from))
    }

    /// [`CappedLines::next_line`], its errors as the crate makes them.
    fn read_line(&mut self) -> Option<Result<String>> {
        if self.done {
            return None;
        }
        if self.skipping {
            self.skipping = false;
            // Skip the rest of the refused line in bounded pieces.
            loop {
                let mut rest = Vec::new();
                match Read::take(&mut self.reader, 1 << 16).read_until(b'\n', &mut rest) {
                    Ok(0) => return None,
                    Ok(_) if rest.last() == Some(&b'\n') => break,
                    Ok(_) => {}
                    Err(e) => {
                        self.done = true;
                        return Some(Err(e.into()));
                    }
                }
            }
        }
        let mut line = Vec::new();
        let read = Read::take(&mut self.reader, self.cap as u64 + 1).read_until(b'\n', &mut line);
        match read {
            Err(e) => {
                self.done = true;
                Some(Err(e.into()))
            }
            Ok(0) => {
                self.done = true;
                None
            }
            Ok(_) if line.len() > self.cap && line.last() != Some(&b'\n') => {
                self.skipping = true;
                Some(Err(anyhow!("longer than {} MiB", self.cap >> 20)))
            }
            Ok(_) => {
                if line.last() == Some(&b'\n') {
                    line.pop();
                }
                Some(String::from_utf8(line).map_err(|e| {
                    anyhow!(
                        "not UTF-8 text (byte {} of the line)",
                        e.utf8_error().valid_up_to() + 1
                    )
                }))
            }
        }
    }
}
