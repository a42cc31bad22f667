//! TFRecord framing: `u64 length (LE) | masked CRC-32C of length | data | masked CRC-32C of data`.
//!
//! We frame records ourselves rather than through the tfrecord crate's iterator because ingest needs what that
//! iterator does not give: the byte offset of every record for error messages, a cap on the claimed length so a
//! corrupt header cannot ask for a huge allocation, slices into one buffer instead of a `Vec` per record, and
//! the ability to step over a record whose data checksum fails while its length is still trustworthy.

use std::fmt;
use std::io::{self, Read};

/// Length field plus its checksum.
pub const HEADER_LEN: usize = 12;
/// The data checksum after each record.
pub const FOOTER_LEN: usize = 4;
/// Real AudioSet records are about 1.5 KB; anything claiming more than this is corrupt, not big.
pub const MAX_RECORD_LEN: u64 = 64 << 20;

/// TensorFlow's CRC mask, which keeps a CRC of data that itself holds CRCs from looking degenerate.
pub fn masked_crc(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// Appends one framed record to `out` (used by tests and the benchmark data generator).
pub fn write_record(out: &mut Vec<u8>, data: &[u8]) {
    let len = (data.len() as u64).to_le_bytes();
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc(data).to_le_bytes());
}

/// What is wrong with a record; the offset is kept beside it in [`Corrupt`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Defect {
    /// The file or stream holds no bytes at all. TensorFlow reads that as a file of no records, but AudioSet's
    /// files are never empty, so it is almost always an interrupted download or copy, which the user should hear of.
    Empty,
    /// The stream ends inside a record.
    Truncated { have: u64, need: u64 },
    /// The length field does not match its checksum, so nothing after it can be trusted.
    LengthChecksum,
    /// The length field is intact but absurd.
    TooLarge(u64),
    /// The data does not match its checksum.
    DataChecksum,
    /// The data is not a well-formed AudioSet SequenceExample.
    Content(String),
    /// The stream starts as JSON does: most likely clips `ingest` wrote, given back to it.
    Json,
}

impl Defect {
    /// After these the record boundaries are lost, so the rest of the stream must be given up.
    pub fn ends_stream(&self) -> bool {
        matches!(
            self,
            Defect::Empty
                | Defect::Truncated { .. }
                | Defect::LengthChecksum
                | Defect::TooLarge(_)
                | Defect::Json
        )
    }

    /// Whether `--skip-corrupt` could help: not when the whole input is something else.
    pub fn is_skippable(&self) -> bool {
        *self != Defect::Json
    }
}

impl fmt::Display for Defect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Defect::Empty => {
                f.write_str("empty file: no records (an interrupted download or copy?)")
            }
            Defect::Truncated { have, need } => {
                write!(
                    f,
                    "truncated record: the input ends after {have} of its {need} bytes"
                )
            }
            Defect::LengthChecksum => {
                f.write_str("length checksum mismatch (not a TFRecord file, or a damaged one)")
            }
            Defect::TooLarge(len) => write!(
                f,
                "record claims {len} bytes, more than the {} MiB limit (damaged length field)",
                MAX_RECORD_LEN >> 20
            ),
            Defect::DataChecksum => f.write_str("data checksum mismatch (damaged record)"),
            Defect::Json => f.write_str(
                "this is JSON (clips written by `soundalike ingest`?), not a TFRecord file: \
                 give it to `soundalike index`",
            ),
            Defect::Content(what) => f.write_str(what),
        }
    }
}

/// A defect located at the byte offset of its record's header within its stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corrupt {
    pub offset: u64,
    pub defect: Defect,
}

impl fmt::Display for Corrupt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.defect == Defect::Empty {
            // There is no record to point at.
            return write!(f, "{}", self.defect);
        }
        write!(f, "record at byte {}: {}", self.offset, self.defect)
    }
}

/// Whether bytes that are not a TFRecord start as a JSON object or array does (after any white space), as the
/// clips `ingest` writes do.
pub fn looks_like_json(bytes: &[u8]) -> bool {
    let start = bytes.iter().find(|b| !b.is_ascii_whitespace());
    match start {
        Some(b'{') => true,
        // `[` then an object, or an empty array: not a bracket that happens to start binary data.
        Some(b'[') => {
            let after = bytes
                .iter()
                .skip_while(|b| b.is_ascii_whitespace())
                .skip(1)
                .find(|b| !b.is_ascii_whitespace());
            matches!(after, Some(b'{' | b']' | b'['))
        }
        _ => false,
    }
}

/// Checks a record header; on success returns the data length.
fn check_header(header: &[u8; HEADER_LEN]) -> Result<u64, Defect> {
    let (len_bytes, crc_bytes) = header.split_at(8);
    let stored = u32::from_le_bytes([crc_bytes[0], crc_bytes[1], crc_bytes[2], crc_bytes[3]]);
    if masked_crc(len_bytes) != stored {
        return Err(Defect::LengthChecksum);
    }
    let len = u64::from_le_bytes(header[..8].try_into().unwrap_or_default());
    if len > MAX_RECORD_LEN {
        return Err(Defect::TooLarge(len));
    }
    Ok(len)
}

/// Iterates over the records in a buffer that starts at a record boundary, `base` bytes into its stream.
///
/// Yields each record's offset and data with both checksums checked. After a defect that loses the record
/// boundaries (see [`Defect::ends_stream`]) the iterator ends; after a data checksum mismatch it goes on.
pub struct Records<'a> {
    data: &'a [u8],
    pos: usize,
    base: u64,
}

impl<'a> Records<'a> {
    pub fn new(data: &'a [u8], base: u64) -> Self {
        Records { data, pos: 0, base }
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<(u64, &'a [u8]), Corrupt>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = &self.data[self.pos..];
        if rest.is_empty() {
            return None;
        }
        let offset = self.base + self.pos as u64;
        let fail = |this: &mut Self, defect: Defect| {
            if defect.ends_stream() {
                this.pos = this.data.len();
            }
            Some(Err(Corrupt { offset, defect }))
        };
        let Some(header) = rest.first_chunk::<HEADER_LEN>() else {
            return fail(
                self,
                Defect::Truncated {
                    have: rest.len() as u64,
                    need: HEADER_LEN as u64,
                },
            );
        };
        let len = match check_header(header) {
            Ok(len) => len as usize,
            Err(Defect::LengthChecksum) if offset == 0 && looks_like_json(rest) => {
                return fail(self, Defect::Json);
            }
            Err(defect) => return fail(self, defect),
        };
        let total = HEADER_LEN + len + FOOTER_LEN;
        if rest.len() < total {
            return fail(
                self,
                Defect::Truncated {
                    have: rest.len() as u64,
                    need: total as u64,
                },
            );
        }
        self.pos += total;
        let data = &rest[HEADER_LEN..HEADER_LEN + len];
        let stored = u32::from_le_bytes([
            rest[total - 4],
            rest[total - 3],
            rest[total - 2],
            rest[total - 1],
        ]);
        if masked_crc(data) != stored {
            return Some(Err(Corrupt {
                offset,
                defect: Defect::DataChecksum,
            }));
        }
        Some(Ok((offset, data)))
    }
}

/// Cuts a TFRecord stream into buffers of whole records, each about `target` bytes, for parallel decoding.
///
/// Only the length headers are checked here. When one is bad, or the stream ends inside a record, the bytes
/// that are there are handed on as they are, so that [`Records`] reports the defect with the same words and
/// offsets as for a file read whole; the rest of the stream is not read.
pub struct StreamChunker<R> {
    reader: R,
    offset: u64,
    done: bool,
    target: usize,
}

/// A buffer of whole records (possibly ending in a defective tail) and the stream offset of its first byte.
pub struct Chunk {
    pub base: u64,
    pub data: Vec<u8>,
}

impl<R: Read> StreamChunker<R> {
    pub fn new(reader: R, target: usize) -> Self {
        StreamChunker {
            reader,
            offset: 0,
            done: false,
            target,
        }
    }

    /// The next chunk, or `None` at the end of the stream.
    pub fn next_chunk(&mut self) -> io::Result<Option<Chunk>> {
        if self.done {
            return Ok(None);
        }
        let base = self.offset;
        let mut data = Vec::with_capacity(self.target + self.target / 4);
        while data.len() < self.target {
            let start = data.len();
            let mut header = [0u8; HEADER_LEN];
            let got = read_full(&mut self.reader, &mut header)?;
            data.extend_from_slice(&header[..got]);
            if got < HEADER_LEN {
                self.done = true;
                break;
            }
            let Ok(len) = check_header(&header) else {
                self.done = true;
                break;
            };
            let body = len as usize + FOOTER_LEN;
            data.resize(start + HEADER_LEN + body, 0);
            let got = read_full(&mut self.reader, &mut data[start + HEADER_LEN..])?;
            if got < body {
                data.truncate(start + HEADER_LEN + got);
                self.done = true;
                break;
            }
        }
        self.offset += data.len() as u64;
        Ok(if data.is_empty() {
            None
        } else {
            Some(Chunk { base, data })
        })
    }
}

/// Reads until `buf` is full or the stream ends; returns how many bytes were read.
pub fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(records: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for r in records {
            write_record(&mut out, r);
        }
        out
    }

    #[test]
    fn frames_round_trip_with_offsets() {
        let data = stream(&[b"one", b"three"]);
        let got: Vec<_> = Records::new(&data, 100).collect();
        assert_eq!(
            got,
            vec![Ok((100, &b"one"[..])), Ok((100 + 19, &b"three"[..]))]
        );
    }

    #[test]
    fn flipped_data_byte_is_skippable_but_truncation_ends() {
        let mut data = stream(&[b"one", b"two"]);
        data[HEADER_LEN] ^= 1;
        let got: Vec<_> = Records::new(&data, 0).collect();
        assert_eq!(
            got[0],
            Err(Corrupt {
                offset: 0,
                defect: Defect::DataChecksum
            })
        );
        assert_eq!(got[1], Ok((19, &b"two"[..])));

        let data = stream(&[b"one", b"two"]);
        let got: Vec<_> = Records::new(&data[..data.len() - 2], 0).collect();
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[1],
            Err(Corrupt {
                offset: 19,
                defect: Defect::Truncated { have: 17, need: 19 }
            })
        );
    }

    #[test]
    fn huge_claimed_length_is_refused_without_allocating() {
        let len = (u64::MAX / 2).to_le_bytes();
        let mut data = len.to_vec();
        data.extend_from_slice(&masked_crc(&len).to_le_bytes());
        let got: Vec<_> = Records::new(&data, 0).collect();
        assert_eq!(
            got,
            vec![Err(Corrupt {
                offset: 0,
                defect: Defect::TooLarge(u64::MAX / 2)
            })]
        );
        let mut chunker = StreamChunker::new(&data[..], 1 << 20);
        assert_eq!(chunker.next_chunk().unwrap().unwrap().data, data);
        assert!(chunker.next_chunk().unwrap().is_none());
    }

    #[test]
    fn chunker_cuts_at_record_boundaries() {
        let data = stream(&[&[7u8; 100], &[8u8; 100], &[9u8; 100], b"tail"]);
        let mut chunker = StreamChunker::new(&data[..], 150);
        let mut seen = Vec::new();
        while let Some(chunk) = chunker.next_chunk().unwrap() {
            for record in Records::new(&chunk.data, chunk.base) {
                let (offset, data) = record.unwrap();
                seen.push((offset, data.to_vec()));
            }
        }
        let whole: Vec<_> = Records::new(&data, 0)
            .map(|r| r.map(|(o, d)| (o, d.to_vec())).unwrap())
            .collect();
        assert_eq!(seen, whole);
    }
}
