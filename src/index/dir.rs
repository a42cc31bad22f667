//! An index's directory as the file system sees it: which files are the index's own, whether a rebuild may
//! replace a directory, and removing an old index without touching anything the tool did not write.

use std::io;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::fs::{self, cleanup};
use crate::index::store;

/// The index directory a path names, as a writer needs it: its sibling temporaries go beside it, so it must end
/// in a real name. `e4/.` is `e4`; `.` and `..` are refused (a rebuild replaces the folder, and one a shell is
/// in would be swapped from under it); symlinks are followed (the link is kept and its target rebuilt).
pub fn resolve(dir: &Path) -> Result<PathBuf> {
    let cleaned: PathBuf = dir.components().collect();
    if cleaned.file_name().is_none() {
        return Err(crate::error::UsageError::new(format!(
            "index {}: name the index's own folder (music.idx, or ../music.idx), not . or ..: a rebuild replaces \
             the whole folder",
            dir.display()
        ))
        .into());
    }
    Ok(fs::follow_links(&cleaned))
}

/// What LMDB keeps in an index's directory, and all that soundalike writes there.
const OWN_FILES: [&str; 2] = ["data.mdb", "lock.mdb"];

/// Whether `dir` holds an index (or a `data.mdb` claiming to be one): nothing else should be written there.
pub fn holds_index(dir: &Path) -> bool {
    dir.join(OWN_FILES[0]).exists()
}

/// Refuses, with one line naming what is in the way, to let a rebuild replace `dir` unless it is missing, an
/// empty directory, or a soundalike index holding nothing but its own files. An index is known for ours by its
/// data file's table names, read without mapping the file (see [`store::names_our_tables`]: so a damaged or
/// cut-short index, which the errors tell the user to rebuild, is rebuilt rather than refused), or else by its
/// settings naming a format version (any version). A folder that merely holds a file named `data.mdb`, another
/// program's LMDB environment, or an index with the user's notes beside its files, is the user's, and a rebuild
/// would delete it.
pub fn check_replaceable(dir: &Path) -> Result<()> {
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => bail!("cannot read {}: {e}", dir.display()),
    };
    if !meta.is_dir() {
        bail!(
            "{} exists and is not a directory; refusing to replace it",
            dir.display()
        );
    }
    let mut names = Vec::new();
    for entry in dir
        .read_dir()
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", dir.display()))?
    {
        let entry = entry.map_err(|e| anyhow::anyhow!("cannot read {}: {e}", dir.display()))?;
        let kind = entry.file_type();
        let is_file = kind.as_ref().is_ok_and(|t| t.is_file());
        let mut name = entry.file_name().to_string_lossy().into_owned();
        // Named as `ls -F` would: a folder with a slash, and anything neither file nor folder said what it is,
        // so that a FIFO named data.mdb is not shown as a folder.
        if let Ok(kind) = kind
            && !kind.is_file()
            && !kind.is_dir()
        {
            use std::os::unix::fs::FileTypeExt;
            let what = if kind.is_fifo() {
                "a FIFO"
            } else if kind.is_symlink() {
                "a symlink"
            } else if kind.is_socket() {
                "a socket"
            } else {
                "a device"
            };
            name = format!("{name} ({what})");
        }
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        names.push((name, is_file, is_dir));
    }
    if names.is_empty() {
        return Ok(());
    }
    let has = |own: &str| names.iter().any(|(n, f, _)| n == own && *f);
    // Why `data.mdb` is not a soundalike index's; `None` when it is one.
    let not_ours = if has(OWN_FILES[0]) {
        if store::names_our_tables(&dir.join(OWN_FILES[0])) {
            None
        } else {
            store::recorded_format_version(dir)
                .err()
                .map(|why| format!("{why:#}"))
        }
    } else {
        Some("no data.mdb".to_string())
    };
    names.sort();
    let mut in_the_way: Vec<String> = names
        .iter()
        .filter(|(n, f, _)| not_ours.is_some() || !*f || !OWN_FILES.contains(&n.as_str()))
        .map(|(n, f, d)| match (&not_ours, *f, *d) {
            (Some(why), true, _) if n == OWN_FILES[0] => {
                format!("data.mdb (not a soundalike index's: {why})")
            }
            (_, _, true) => format!("{n}/"),
            _ => n.clone(),
        })
        .collect();
    if in_the_way.is_empty() {
        return Ok(());
    }
    const SHOWN: usize = 5;
    if in_the_way.len() > SHOWN {
        let more = in_the_way.len() - SHOWN;
        in_the_way.truncate(SHOWN);
        in_the_way.push(format!("and {more} more"));
    }
    let listed = in_the_way.join(", ");
    if not_ours.is_none() {
        bail!(
            "{} holds more than a soundalike index: {listed}; refusing to replace it (move those out, or choose \
             another --index)",
            dir.display()
        );
    }
    // Nothing but what an index holds, none of it known for ours (an index damaged past its table names): the
    // user may know better, and is told how to go ahead.
    let only_own = names
        .iter()
        .all(|(n, f, _)| *f && OWN_FILES.contains(&n.as_str()));
    let how = if only_own {
        format!(
            " (if it is an index you built, delete its files with `rm -f {} {}` and run `soundalike index` \
             again)",
            shell_word(&dir.join(OWN_FILES[0])),
            shell_word(&dir.join(OWN_FILES[1]))
        )
    } else {
        String::new()
    };
    bail!(
        "{} is not a soundalike index: it holds {listed}; refusing to replace it{how}",
        dir.display()
    );
}

/// `path` as one word of a POSIX shell's command line: as it is when it holds only characters no shell treats
/// specially, else in single quotes (a quote within written `'\''`).
fn shell_word(path: &Path) -> String {
    let text = path.to_string_lossy();
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+,:@%".contains(c);
    if !text.is_empty() && text.chars().all(plain) {
        text.into_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// Deletes an old index: its own files, then the directory, which is then empty unless someone put a file there
/// since it was checked; then that file and the directory stay, and the error says so.
pub fn remove(dir: &Path) -> std::io::Result<()> {
    for own in OWN_FILES {
        match std::fs::remove_file(dir.join(own)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    std::fs::remove_dir(dir)
}

/// Deletes build directories beside the index (`prefix` + random characters) that no running build holds:
/// what a killed build left behind (killed after its swap, one holds the old index). Only the index's own files
/// are deleted, and a directory holding anything else is left as it is.
pub fn remove_abandoned_builds(parent: &Path, prefix: &str) {
    fs::sweep(
        parent,
        |name| name.starts_with(prefix),
        |path| {
            if path.is_dir() {
                let _ = remove(path);
            }
        },
    );
}

/// Moves the freshly built `new` directory to `dir`: an atomic exchange when `dir` exists (Linux
/// renameat2 RENAME_EXCHANGE), then the old index is deleted (its own files only, see [`remove`]).
/// An interrupt never comes between the move and `cleanup` forgetting `new`, whose name the old index takes.
pub fn swap_into_place(new: PathBuf, dir: &Path, cleanup: cleanup::Guard) -> Result<()> {
    if !dir.exists() {
        return cleanup
            .commit(|| std::fs::rename(&new, dir))
            .with_context(|| format!("cannot move the new index to {}", dir.display()));
    }
    if let Err(e) = cleanup.commit(|| exchange(&new, dir)) {
        // The old index is untouched; the new one is of no use where it cannot be moved in.
        let _ = remove(&new);
        return Err(e).with_context(|| format!("cannot replace {}", dir.display()));
    }
    // `new` now holds the old index.
    remove(&new).with_context(|| {
        format!(
            "the new index is in place, but the old one's directory was left at {}",
            new.display()
        )
    })
}

#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) -> io::Result<()> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE).map_err(|e| {
        if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS {
            // The file system (or an old kernel) cannot exchange two names atomically.
            io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "the file system holding it cannot swap two directories atomically (renameat2 \
                     RENAME_EXCHANGE: {e}); build the index on a local file system such as ext4, XFS, Btrfs or \
                     tmpfs, or delete the old index first"
                ),
            )
        } else {
            e.into()
        }
    })
}

/// Elsewhere: move the old index aside, then the new one in (a short window without an index).
#[cfg(not(target_os = "linux"))]
fn exchange(a: &Path, b: &Path) -> io::Result<()> {
    let aside = a.with_extension("old");
    std::fs::rename(b, &aside)?;
    std::fs::rename(a, b)?;
    std::fs::rename(&aside, a)
}
