//! Where a clip comes from and where it can be played: a YouTube video at a second, or a local file that
//! `embed` made a clip of (video_id `file:PATH`).

use std::path::Path;

use anyhow::anyhow;

use crate::Result;

/// The prefix of a video_id that names a local file rather than a YouTube video.
pub const FILE_ID_PREFIX: &str = "file:";

/// The clip's video_id for a local file: `file:` and its absolute path. Errors when the path cannot be one.
pub fn file_id(path: &Path) -> Result<String> {
    let absolute = std::path::absolute(path)
        .map_err(|e| anyhow!("{}: cannot make its path absolute: {e}", path.display()))?;
    let text = absolute.to_str().ok_or_else(|| {
        anyhow!(
            "{}: its path is not UTF-8, which a clip's video_id must be",
            path.display()
        )
    })?;
    let id = format!("{FILE_ID_PREFIX}{text}");
    super::check_id(&id).map_err(|problem| anyhow!("{}: {problem}", path.display()))?;
    Ok(id)
}

/// Where a result can be played: a clip `embed` made from a local file links to the file, any other to YouTube.
pub fn clip_url(video_id: &str, start_time: f64) -> String {
    match video_id.strip_prefix(FILE_ID_PREFIX) {
        Some(path) => {
            let mut url = String::from("file://");
            for byte in path.bytes() {
                if byte.is_ascii_alphanumeric() || b"-_.~/".contains(&byte) {
                    url.push(char::from(byte));
                } else {
                    url.push_str(&format!("%{byte:02X}"));
                }
            }
            url
        }
        None => youtube_url(video_id, start_time),
    }
}

/// The clip's place on YouTube; the id percent-encoded, so that whatever an index holds stays one URL.
pub fn youtube_url(video_id: &str, start_time: f64) -> String {
    let mut id = String::with_capacity(video_id.len());
    for byte in video_id.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            id.push(char::from(byte));
        } else {
            id.push_str(&format!("%{byte:02X}"));
        }
    }
    format!(
        "https://www.youtube.com/watch?v={id}&t={}s",
        start_time.max(0.0).floor() as u64
    )
}
