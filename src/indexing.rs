//! `index`: clips from `ingest` into the store, built beside the old index and swapped in, or appended in one
//! write transaction.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use rand::SeedableRng;
use rand::rngs::StdRng;
use roaring::RoaringBitmap;

use crate::clip::{self, ClipRecord};
use crate::index::{self, ARROY_INDEX, ClipMeta, FORMAT_VERSION, Settings, Store};
use crate::output;
use crate::progress::Progress;
use crate::scan;
use crate::vector::{self, Form, Metric};
use crate::with_distance;

pub struct IndexOptions {
    pub dir: PathBuf,
    /// Empty or `-` reads stdin.
    pub inputs: Vec<PathBuf>,
    pub metric: Metric,
    pub form: Form,
    pub frames: usize,
    /// `None`: arroy's default, which grows with the number of items.
    pub trees: Option<usize>,
    pub seed: u64,
    pub append: bool,
    /// Threads building the trees: 1 for a reproducible index.
    pub threads: usize,
    pub quiet: bool,
}

/// What a build did, for the summary.
pub struct Built {
    pub clips: u64,
    pub added: u64,
    pub replaced: u64,
    pub trees: usize,
    pub bytes: u64,
}

pub fn run(options: &IndexOptions) -> Result<Built> {
    let started = Instant::now();
    // arroy builds trees on rayon's global pool, and with more than one thread the trees depend on scheduling:
    // the same seed gave different answers from run to run. One thread (the default) makes a seed mean the
    // same index. (Fails only if the pool was already set up, which nothing else in an `index` run does.)
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(options.threads)
        .build_global();
    let built = if options.append {
        append(options)
    } else {
        rebuild(options)
    }
    .map_err(|e| {
        if index::is_map_full(&e) {
            anyhow!(
                "the index {} outgrew the space reserved for it (from the input's size) and was left as it was; \
                 please report this with the input's size",
                options.dir.display()
            )
        } else {
            e
        }
    })?;
    if !options.quiet {
        eprintln!(
            "index: {} clips read, {} duplicates replaced; {} clips in {} ({} trees, {:.1} MB) in {:.2} s",
            built.added,
            built.replaced,
            built.clips,
            options.dir.display(),
            built.trees,
            built.bytes as f64 / 1e6,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(built)
}

/// Builds a new index in a sibling directory, then swaps it into place so readers see the old index or the
/// new one, never a half-built one, and a killed build leaves the old one whole.
fn rebuild(options: &IndexOptions) -> Result<Built> {
    let dir = &options.dir;
    if dir.exists() {
        let is_empty_dir = dir
            .read_dir()
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        if !is_empty_dir && !dir.join("data.mdb").is_file() {
            bail!(
                "{} exists and is not a soundalike index; refusing to replace it",
                dir.display()
            );
        }
    }
    let (parent, name) = output::beside(dir);
    let prefix = format!(".{name}.building-");
    remove_abandoned_builds(&parent, &prefix);
    let building = tempfile::Builder::new()
        .prefix(&prefix)
        .tempdir_in(&parent)
        .with_context(|| format!("cannot create a directory beside {}", dir.display()))?;
    // Held until this process ends: it tells a later build that this directory is in use.
    let _lock = lock(building.path())
        .with_context(|| format!("cannot lock {}", building.path().display()))?;
    let store = Store::create(building.path(), input_size(&options.inputs))?;
    let settings = Settings {
        format_version: FORMAT_VERSION,
        metric: options.metric,
        vector: options.form,
        dimensions: options.form.dimensions(options.frames),
        frames: options.frames,
        trees: 0,
        seed: options.seed,
        clips: 0,
        next_item: 0,
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    let built = with_distance!(options.metric, D => write::<D>(&store, settings, options))?;
    drop(store);
    swap_into_place(building.keep(), dir)?;
    Ok(Built {
        bytes: crate::index::dir_size(dir),
        ..built
    })
}

/// Adds clips to an existing index in one write transaction; arroy updates the trees incrementally.
fn append(options: &IndexOptions) -> Result<Built> {
    let (store, settings) = Store::open_with_room(&options.dir, input_size(&options.inputs))?;
    let mut mismatches = Vec::new();
    if settings.metric != options.metric {
        mismatches.push(format!(
            "--metric {:?} (index: {:?})",
            options.metric, settings.metric
        ));
    }
    if settings.vector != options.form {
        mismatches.push(format!(
            "--vector {:?} (index: {:?})",
            options.form, settings.vector
        ));
    }
    if settings.frames != options.frames {
        mismatches.push(format!(
            "--frames {} (index: {})",
            options.frames, settings.frames
        ));
    }
    if !mismatches.is_empty() {
        bail!(
            "--append settings differ from index {}: {}",
            options.dir.display(),
            mismatches.join(", ")
        );
    }
    let built = with_distance!(settings.metric, D => write::<D>(&store, settings, options))?;
    Ok(Built {
        bytes: store.disk_size(),
        ..built
    })
}

/// Streams the inputs into the store and builds the forest, all in one write transaction.
fn write<D: arroy::Distance>(
    store: &Store,
    mut settings: Settings,
    options: &IndexOptions,
) -> Result<Built> {
    let mut wtxn = store.env.write_txn()?;
    let writer = arroy::Writer::<D>::new(store.arroy::<D>(), ARROY_INDEX, settings.dimensions);
    let mut labels: BTreeMap<u16, (RoaringBitmap, RoaringBitmap)> = BTreeMap::new();
    let (mut added, mut replaced) = (0u64, 0u64);
    let progress = Progress::items(None, options.quiet, "clips");
    // Vectors for the exact scan, written in item order at the end (in blocks, so replacing a clip rewrites
    // only its block).
    let mut vectors: BTreeMap<u32, Vec<f32>> = BTreeMap::new();

    let inputs: Vec<PathBuf> = if options.inputs.is_empty() {
        vec![PathBuf::from("-")]
    } else {
        options.inputs.clone()
    };
    for input in &inputs {
        let (reader, source): (Box<dyn io::BufRead>, String) = if input.as_os_str() == "-" {
            (Box::new(io::stdin().lock()), "<stdin>".to_string())
        } else {
            let file =
                File::open(input).with_context(|| format!("cannot read {}", input.display()))?;
            (
                Box::new(BufReader::with_capacity(1 << 20, file)),
                input.display().to_string(),
            )
        };
        clip::read_clips(reader, &source, |clip: ClipRecord, at| {
            let vector = vector::from_rows(&clip.embedding, 0, settings.frames, settings.vector)
                .map_err(|e| anyhow!("{source}: {at}: clip {}: {e}", clip.video_id))?;
            let item = match store.ids.get(&wtxn, &clip.video_id)? {
                Some(item) => {
                    // The last clip with a video_id wins: forget the old one's labels.
                    replaced += 1;
                    if let Some(old) = store.clips.get(&wtxn, &item)? {
                        for label in old.labels.iter().filter_map(|&l| u16::try_from(l).ok()) {
                            labels.entry(label).or_default().1.insert(item);
                            labels.entry(label).or_default().0.remove(item);
                        }
                    }
                    item
                }
                None => {
                    let item = settings.next_item;
                    settings.next_item = item
                        .checked_add(1)
                        .ok_or_else(|| anyhow!("more than 2^32 clips"))?;
                    settings.clips += 1;
                    store.ids.put(&mut wtxn, &clip.video_id, &item)?;
                    item
                }
            };
            writer.add_item(&mut wtxn, item, &vector)?;
            let mut search_form = vector;
            scan::prepare(settings.metric, &mut search_form);
            vectors.insert(item, search_form);
            for label in clip.labels.iter().filter_map(|&l| u16::try_from(l).ok()) {
                let entry = labels.entry(label).or_default();
                entry.0.insert(item);
                entry.1.remove(item);
            }
            let meta = ClipMeta {
                video_id: clip.video_id,
                labels: clip.labels,
                start_time: clip.start_time,
                end_time: clip.end_time,
            };
            store.clips.put(&mut wtxn, &item, &meta)?;
            added += 1;
            progress.inc(1);
            Ok(())
        })?;
    }
    if settings.clips == 0 {
        bail!("nothing to index: the input holds no clips");
    }
    if added == 0 {
        // Appending nothing leaves the index exactly as it was (rebuilding the trees would renumber them).
        return Ok(Built {
            clips: settings.clips,
            added,
            replaced,
            trees: settings.trees,
            bytes: 0,
        });
    }
    progress.stage("read; building the trees");
    store.update_labels(&mut wtxn, &labels)?;
    store.write_vectors(&mut wtxn, settings.dimensions, &vectors)?;
    drop(vectors);
    let mut rng = StdRng::seed_from_u64(settings.seed);
    let mut builder = writer.builder(&mut rng);
    if let Some(trees) = options.trees {
        builder.n_trees(trees);
    }
    builder.build(&mut wtxn)?;
    settings.trees = arroy::Reader::<D>::open(&wtxn, ARROY_INDEX, store.arroy::<D>())?.n_trees();
    store.write_settings(&mut wtxn, &settings)?;
    progress.stage("read; writing to disk");
    wtxn.commit().context("cannot commit the index")?;
    progress.finish();
    Ok(Built {
        clips: settings.clips,
        added,
        replaced,
        trees: settings.trees,
        bytes: 0,
    })
}

/// The inputs' total size in bytes, or `None` when one is stdin (its size is unknown).
fn input_size(inputs: &[PathBuf]) -> Option<u64> {
    if inputs.is_empty() || inputs.iter().any(|p| p.as_os_str() == "-") {
        return None;
    }
    // An unreadable input fails later with its own error; it needs no room.
    Some(
        inputs
            .iter()
            .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
            .sum(),
    )
}

/// Takes an exclusive lock on a directory, held until the returned handle is dropped or the process ends
/// (however it ends: the kernel drops it, so a SIGKILLed build leaves no stale lock).
fn lock(dir: &Path) -> io::Result<File> {
    use std::os::fd::AsRawFd;
    let handle = File::open(dir)?;
    // SAFETY: flock on a valid open descriptor.
    if unsafe { libc::flock(handle.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(handle)
}

/// Deletes build directories beside the index that no running build holds: what a killed build left behind.
/// A directory only seconds old is spared: its build may not have taken its lock yet. Best effort: a directory
/// that cannot be removed is left for the next build.
fn remove_abandoned_builds(parent: &Path, prefix: &str) {
    let settled = |path: &Path| {
        std::fs::metadata(path)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().is_ok_and(|age| age.as_secs() >= 2))
    };
    let Ok(entries) = parent.read_dir() else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let ours = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(prefix));
        if ours && path.is_dir() && settled(&path) && lock(&path).is_ok() {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

/// Moves the freshly built `new` directory to `dir`: an atomic exchange when `dir` exists (Linux
/// renameat2 RENAME_EXCHANGE), then the old index is deleted.
fn swap_into_place(new: PathBuf, dir: &Path) -> Result<()> {
    if !dir.exists() {
        return std::fs::rename(&new, dir)
            .with_context(|| format!("cannot move the new index to {}", dir.display()));
    }
    exchange(&new, dir).with_context(|| format!("cannot replace {}", dir.display()))?;
    // `new` now holds the old index.
    std::fs::remove_dir_all(&new)
        .with_context(|| format!("cannot remove the old index at {}", new.display()))
}

#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) -> io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let a = CString::new(a.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let b = CString::new(b.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: both are valid NUL-terminated paths; renameat2 does not keep them.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Elsewhere: move the old index aside, then the new one in (a short window without an index).
#[cfg(not(target_os = "linux"))]
fn exchange(a: &Path, b: &Path) -> io::Result<()> {
    let aside = a.with_extension("old");
    std::fs::rename(b, &aside)?;
    std::fs::rename(a, b)?;
    std::fs::rename(&aside, a)
}
