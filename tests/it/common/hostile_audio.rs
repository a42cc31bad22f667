//! Audio files that are small on disk and large once decoded, written byte by byte: issue 33's FLAC of 8 channels
//! at 192 kHz whose STREAMINFO says 599 s, 194 KB that decode to 920 million samples. Every subframe is a
//! CONSTANT one (a 16-bit value standing for the whole block), so the file is about 28 bytes a block of 16,384
//! frames, and every header and checksum is real: symphonia decodes it as it would a recording.

use std::path::{Path, PathBuf};

/// Issue 33's file: 599 s of 8 channels at 192 kHz.
pub const HOSTILE_SECONDS: u32 = 599;
pub const HOSTILE_RATE: u32 = 192_000;
pub const HOSTILE_CHANNELS: u8 = 8;

/// Frames per FLAC block: the largest power-of-two size a frame header names in its 4 bits.
const BLOCK: u32 = 16_384;

/// Writes issue 33's hostile FLAC into `dir` as `hostile.flac` and returns its path.
pub fn write_hostile_flac(dir: &Path) -> PathBuf {
    let path = dir.join("hostile.flac");
    let bytes = constant_flac(
        HOSTILE_RATE,
        HOSTILE_CHANNELS,
        u64::from(HOSTILE_SECONDS) * u64::from(HOSTILE_RATE),
    );
    std::fs::write(&path, bytes).unwrap();
    path
}

/// A 16-bit FLAC of `frames` frames of `channels` channels at `rate` Hz whose blocks each hold one value a
/// channel: a staircase that changes every block (never silence, so the decoded samples are not all zero).
pub fn constant_flac(rate: u32, channels: u8, frames: u64) -> Vec<u8> {
    assert!((1..=8).contains(&channels) && rate > 0 && rate < 1 << 20);
    let mut out = b"fLaC".to_vec();
    // The one metadata block, STREAMINFO (type 0), marked last; 34 bytes.
    out.extend_from_slice(&[0x80, 0, 0, 34]);
    out.extend_from_slice(&(BLOCK as u16).to_be_bytes()); // smallest block
    out.extend_from_slice(&(BLOCK as u16).to_be_bytes()); // largest block
    out.extend_from_slice(&[0; 6]); // smallest and largest frame in bytes: unknown
    // Rate (20 bits), channels - 1 (3), bits per sample - 1 (5), frames (36).
    let packed = (u64::from(rate) << 44)
        | (u64::from(channels - 1) << 41)
        | (15 << 36)
        | (frames & 0xf_ffff_ffff);
    out.extend_from_slice(&packed.to_be_bytes());
    out.extend_from_slice(&[0; 16]); // MD5 of the samples: not computed
    let mut start = 0u64;
    let mut number = 0u32;
    while start < frames {
        let block = (frames - start).min(u64::from(BLOCK)) as u32;
        let frame_at = out.len();
        // Sync code, fixed block size.
        out.extend_from_slice(&[0xff, 0xf8]);
        // Block size: 14 names 16,384; 7 says "16 bits of size - 1 follow the frame number". Rate 0: from
        // STREAMINFO.
        let size_code = if block == BLOCK { 14 } else { 7 };
        out.push(size_code << 4);
        // Independent channels, 16 bits a sample, the reserved bit 0.
        out.push(((channels - 1) << 4) | (4 << 1));
        out.extend_from_slice(&utf8_number(number));
        if size_code == 7 {
            out.extend_from_slice(&((block - 1) as u16).to_be_bytes());
        }
        out.push(crc8(&out[frame_at..]));
        for channel in 0..channels {
            // Subframe header: zero bit, type CONSTANT (000000), no wasted bits; then the value.
            out.push(0);
            let value = (i32::from(channel) * 1_000 + (number as i32 % 64) * 300 - 9_000) as i16;
            out.extend_from_slice(&value.to_be_bytes());
        }
        let crc = crc16(&out[frame_at..]);
        out.extend_from_slice(&crc.to_be_bytes());
        start += u64::from(block);
        number += 1;
    }
    out
}

/// A frame number in FLAC's UTF-8-like coding.
fn utf8_number(n: u32) -> Vec<u8> {
    match n {
        0..0x80 => vec![n as u8],
        0x80..0x800 => vec![0xc0 | (n >> 6) as u8, 0x80 | (n & 0x3f) as u8],
        0x800..0x1_0000 => vec![
            0xe0 | (n >> 12) as u8,
            0x80 | ((n >> 6) & 0x3f) as u8,
            0x80 | (n & 0x3f) as u8,
        ],
        _ => vec![
            0xf0 | (n >> 18) as u8,
            0x80 | ((n >> 12) & 0x3f) as u8,
            0x80 | ((n >> 6) & 0x3f) as u8,
            0x80 | (n & 0x3f) as u8,
        ],
    }
}

/// FLAC's header checksum: CRC-8, polynomial x^8 + x^2 + x + 1, from 0.
fn crc8(bytes: &[u8]) -> u8 {
    let mut crc = 0u8;
    for &byte in bytes {
        crc ^= byte;
        for _ in 0..8 {
            crc = if crc & 0x80 != 0 {
                (crc << 1) ^ 0x07
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// FLAC's frame checksum: CRC-16, polynomial x^16 + x^15 + x^2 + 1, from 0.
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc = 0u16;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x8005
            } else {
                crc << 1
            };
        }
    }
    crc
}
