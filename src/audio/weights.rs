//! VGGish's weights and PCA parameters from the files users hold.
//!
//! The network's weights come as torchvggish's release file (`vggish-10086976.pth`, written by a torch older
//! than 1.6 in the legacy pre-zip format), as a zip `.pth` from a newer torch, or as safetensors. The format is
//! told by the file's first bytes, not its name. Every tensor's name and shape is checked against torchvggish's
//! model before any is used: a wrong file fails here with its name, not later as a shape error deep in candle.
//!
//! The PCA parameters come from Google's `vggish_pca_params.npz`.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use candle_core::pickle::{Object, Stack};
use candle_core::{DType, Device, Tensor};

/// Dimensions of VGGish's embedding.
pub const EMBEDDING_LEN: usize = 128;

/// Every tensor of torchvggish's state dict and its shape, in the network's order: six 3x3 convolutions
/// (`[out, in, 3, 3]`) and three fully connected layers (`[out, in]`), each with a bias `[out]`.
pub const LAYERS: [(&str, &[usize]); 9] = [
    ("features.0", &[64, 1, 3, 3]),
    ("features.3", &[128, 64, 3, 3]),
    ("features.6", &[256, 128, 3, 3]),
    ("features.8", &[256, 256, 3, 3]),
    ("features.11", &[512, 256, 3, 3]),
    ("features.13", &[512, 512, 3, 3]),
    ("embeddings.0", &[4096, 12288]),
    ("embeddings.2", &[4096, 4096]),
    ("embeddings.4", &[128, 4096]),
];

/// VGGish's weights, checked: every tensor of [`LAYERS`] with its shape, f32, on the CPU.
pub struct Weights {
    pub tensors: HashMap<String, Tensor>,
}

impl Weights {
    /// Loads and checks a weight file in any of the accepted formats.
    pub fn load(path: &Path) -> Result<Weights> {
        let tensors = load_tensors(path)?;
        Weights::check(tensors).with_context(|| format!("{}", path.display()))
    }

    /// Checks that `tensors` are exactly VGGish's, by name and shape, and converts them to f32.
    pub fn check(tensors: Vec<(String, Tensor)>) -> Result<Weights> {
        let mut by_name: HashMap<String, Tensor> = tensors.into_iter().collect();
        let mut checked = HashMap::new();
        for (layer, shape) in LAYERS {
            let bias_shape = [shape[0]];
            for (name, shape) in [
                (format!("{layer}.weight"), shape),
                (format!("{layer}.bias"), &bias_shape[..]),
            ] {
                let Some(tensor) = by_name.remove(&name) else {
                    let mut held: Vec<&str> = by_name.keys().map(String::as_str).collect();
                    held.sort_unstable();
                    held.truncate(5);
                    if held.is_empty() && checked.is_empty() {
                        // A zip without torch's data.pkl (an .npz, say) reads as no tensors at all.
                        bail!("not VGGish weights: it holds no tensors (is it the PCA file?)");
                    }
                    bail!(
                        "not VGGish weights: no tensor {name} (it holds {})",
                        if held.is_empty() {
                            "only the layers before it".to_string()
                        } else {
                            held.join(", ")
                        }
                    );
                };
                if tensor.dims() != shape {
                    bail!(
                        "not VGGish weights: {name} has shape {:?}, VGGish's is {shape:?}",
                        tensor.dims()
                    );
                }
                let tensor = tensor
                    .to_dtype(DType::F32)
                    .and_then(|t| t.contiguous())
                    .with_context(|| format!("cannot convert {name} to f32"))?;
                checked.insert(name, tensor);
            }
        }
        if let Some(extra) = by_name.keys().min() {
            bail!("not VGGish weights: an unexpected tensor {extra} besides VGGish's 18");
        }
        Ok(Weights { tensors: checked })
    }
}

/// The file formats a weight file may be in, told apart by their first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightFormat {
    Safetensors,
    /// torch.save from torch 1.6 on: a zip archive holding `data.pkl` and one file per storage.
    TorchZip,
    /// torch.save before 1.6: pickles one after another, then the storages' raw bytes.
    TorchLegacy,
}

/// The pickle that opens a legacy torch file: protocol 2, LONG1 of 10 bytes, the magic number
/// 0x1950a86a20f9469cfc6c, STOP. Compared as bytes: candle's LONG1 decoder shifts past 64 bits on 10 bytes.
const LEGACY_MAGIC: [u8; 15] = [
    0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e,
];

/// Which format `path` is in, from its first bytes.
pub fn detect_format(path: &Path) -> Result<WeightFormat> {
    let mut head = [0u8; 15];
    let mut file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let read = read_up_to(&mut file, &mut head)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let head = &head[..read];
    if head.starts_with(b"PK\x03\x04") {
        return Ok(WeightFormat::TorchZip);
    }
    if head.starts_with(&LEGACY_MAGIC[..4]) {
        return Ok(WeightFormat::TorchLegacy);
    }
    // safetensors: a little-endian u64 header length, then the JSON header.
    if head.len() > 8 && head[8] == b'{' {
        return Ok(WeightFormat::Safetensors);
    }
    bail!(
        "{}: not a weight file soundalike reads (safetensors, or a PyTorch .pth state dict)",
        path.display()
    )
}

fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// Every tensor in a weight file of any accepted format, by name, unchecked (as stored: f32 or f64).
pub fn load_tensors(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let name = path.display();
    match detect_format(path)? {
        WeightFormat::Safetensors => {
            let tensors = candle_core::safetensors::load(path, &Device::Cpu)
                .map_err(|e| anyhow!("{name}: not a readable safetensors file: {e}"))?;
            Ok(tensors.into_iter().collect())
        }
        WeightFormat::TorchZip => candle_core::pickle::read_all(path)
            .map_err(|e| anyhow!("{name}: not a readable PyTorch zip file: {e}")),
        WeightFormat::TorchLegacy => {
            let file = File::open(path).with_context(|| format!("cannot open {name}"))?;
            read_legacy(&mut BufReader::with_capacity(1 << 20, file))
                .with_context(|| format!("{name}: not a readable PyTorch (pre-1.6) file"))
        }
    }
}

/// A storage's elements as read from a legacy file.
enum Storage {
    F32(Vec<f32>),
    F64(Vec<f64>),
}

impl Storage {
    fn len(&self) -> usize {
        match self {
            Storage::F32(v) => v.len(),
            Storage::F64(v) => v.len(),
        }
    }
}

/// A tensor of the state dict before its storage is read: which storage, and where in it.
struct TensorRef {
    name: String,
    key: String,
    offset: usize,
    shape: Vec<usize>,
    stride: Vec<usize>,
}

/// Reads torch's legacy format (torch.serialization `_legacy_save`): the magic number, the protocol version
/// (1001), a dict of system facts, the pickled object (here a state dict whose tensors name storages by key),
/// the list of storage keys, then for each key in that order its element count (u64) and raw little-endian
/// elements.
pub fn read_legacy(reader: &mut impl BufRead) -> Result<Vec<(String, Tensor)>> {
    let mut magic = [0u8; LEGACY_MAGIC.len()];
    reader
        .read_exact(&mut magic)
        .context("the file is too short")?;
    if magic != LEGACY_MAGIC {
        bail!("its magic number is not torch's");
    }
    let version = unpickle(reader)?;
    if version.int_or_long().ok() != Some(1001) {
        bail!("unknown protocol version (torch writes 1001)");
    }
    let system = unpickle(reader)?;
    let little_endian = system.dict().ok().and_then(|entries| {
        entries.into_iter().find_map(|(k, v)| {
            (k == Object::Unicode("little_endian".into()))
                .then(|| v.bool().ok())
                .flatten()
        })
    });
    if little_endian != Some(true) {
        bail!("written on a big-endian machine (not supported)");
    }
    let state = unpickle(reader)?;
    let keys = match unpickle(reader)? {
        Object::List(keys) => keys
            .into_iter()
            .map(|k| {
                k.unicode()
                    .map_err(|_| anyhow!("a storage key is not a string"))
            })
            .collect::<Result<Vec<String>>>()?,
        _ => bail!("the list of storages is missing"),
    };

    let mut refs = Vec::new();
    let mut types: HashMap<String, (DType, usize)> = HashMap::new();
    let entries = state
        .dict()
        .map_err(|_| anyhow!("it does not hold a state dict"))?;
    for (name, value) in entries {
        let Ok(name) = name.unicode() else { continue };
        // Non-tensor entries (torch keeps `_metadata` in the dict's state) are skipped.
        if let Some((tensor, dtype, size)) = tensor_ref(name, value)? {
            types.insert(tensor.key.clone(), (dtype, size));
            refs.push(tensor);
        }
    }

    let mut storages: HashMap<String, Storage> = HashMap::new();
    for key in keys {
        let mut count = [0u8; 8];
        reader
            .read_exact(&mut count)
            .with_context(|| format!("truncated before storage {key}"))?;
        let count = usize::try_from(u64::from_le_bytes(count))
            .map_err(|_| anyhow!("storage {key} is too large"))?;
        let Some(&(dtype, size)) = types.get(&key) else {
            bail!("storage {key} is not used by any tensor");
        };
        if count != size {
            bail!("storage {key} holds {count} elements, its tensor says {size}");
        }
        let storage = match dtype {
            DType::F32 => Storage::F32(read_elements(reader, count, f32::from_le_bytes, &key)?),
            _ => Storage::F64(read_elements(reader, count, f64::from_le_bytes, &key)?),
        };
        storages.insert(key, storage);
    }

    let mut tensors = Vec::with_capacity(refs.len());
    for r in refs {
        let storage = storages
            .get(&r.key)
            .ok_or_else(|| anyhow!("{}: its storage {} is missing", r.name, r.key))?;
        let tensor = gather(storage, &r).with_context(|| r.name.clone())?;
        tensors.push((r.name, tensor));
    }
    Ok(tensors)
}

fn unpickle(reader: &mut impl BufRead) -> Result<Object> {
    let mut stack = Stack::empty();
    stack
        .read_loop(reader)
        .map_err(|e| anyhow!("damaged pickle: {e}"))?;
    stack.finalize().map_err(|e| anyhow!("damaged pickle: {e}"))
}

fn read_elements<T, const N: usize>(
    reader: &mut impl Read,
    count: usize,
    from: fn([u8; N]) -> T,
    key: &str,
) -> Result<Vec<T>> {
    let bytes = count
        .checked_mul(N)
        .ok_or_else(|| anyhow!("storage {key} is too large"))?;
    let mut data = vec![0u8; bytes];
    reader
        .read_exact(&mut data)
        .with_context(|| format!("truncated inside storage {key}"))?;
    Ok(data
        .chunks_exact(N)
        .map(|c| {
            let mut a = [0u8; N];
            a.copy_from_slice(c);
            from(a)
        })
        .collect())
}

/// The storage reference of a pickled tensor: `_rebuild_tensor_v2(storage, offset, size, stride, ...)`, the
/// storage being a persistent id `('storage', torch.FloatStorage, key, location, size, view_metadata)`. Also
/// accepts the `_rebuild_parameter(tensor, ...)` wrapper of `nn.Parameter`s. `None` for anything else.
fn tensor_ref(name: String, value: Object) -> Result<Option<(TensorRef, DType, usize)>> {
    let Ok((callable, args)) = value.reduce() else {
        return Ok(None);
    };
    let (callable, args) = match callable {
        Object::Class {
            module_name,
            class_name,
        } if module_name == "torch._utils" && class_name == "_rebuild_parameter" => {
            let mut args = args
                .tuple()
                .map_err(|_| anyhow!("{name}: damaged parameter"))?;
            if args.is_empty() {
                bail!("{name}: damaged parameter");
            }
            args.remove(0)
                .reduce()
                .map_err(|_| anyhow!("{name}: damaged parameter"))?
        }
        other => (other, args),
    };
    match &callable {
        Object::Class {
            module_name,
            class_name,
        } if module_name == "torch._utils" && class_name == "_rebuild_tensor_v2" => {}
        _ => return Ok(None),
    }
    let damaged = || anyhow!("{name}: damaged tensor record");
    let args = args.tuple().map_err(|_| damaged())?;
    if args.len() < 4 {
        return Err(damaged());
    }
    let mut args = args.into_iter();
    let (Some(storage), Some(offset), Some(shape), Some(stride)) =
        (args.next(), args.next(), args.next(), args.next())
    else {
        return Err(damaged());
    };
    let storage = storage
        .persistent_load()
        .and_then(Object::tuple)
        .map_err(|_| damaged())?;
    if storage.len() < 5 {
        return Err(damaged());
    }
    let mut storage = storage.into_iter();
    let (_, Some(class), Some(key), _, Some(size)) = (
        storage.next(),
        storage.next(),
        storage.next(),
        storage.next(),
        storage.next(),
    ) else {
        return Err(damaged());
    };
    let (_, class) = class.class().map_err(|_| damaged())?;
    let dtype = match class.as_str() {
        "FloatStorage" => DType::F32,
        "DoubleStorage" => DType::F64,
        other => bail!("{name}: storage type {other} is not supported (float or double only)"),
    };
    let key = key.unicode().map_err(|_| damaged())?;
    let size = usize_of(size).ok_or_else(damaged)?;
    let offset = usize_of(offset).ok_or_else(damaged)?;
    let shape = usizes(shape).ok_or_else(damaged)?;
    let stride = usizes(stride).ok_or_else(damaged)?;
    if shape.len() != stride.len() {
        return Err(damaged());
    }
    Ok(Some((
        TensorRef {
            name,
            key,
            offset,
            shape,
            stride,
        },
        dtype,
        size,
    )))
}

fn usize_of(object: Object) -> Option<usize> {
    object
        .int_or_long()
        .ok()
        .and_then(|v| usize::try_from(v).ok())
}

fn usizes(object: Object) -> Option<Vec<usize>> {
    object.tuple().ok()?.into_iter().map(usize_of).collect()
}

/// The tensor `r` describes, copied out of its storage in row-major order (a transposed view has strides that
/// are not row-major's). Every index is checked against the storage's length.
fn gather(storage: &Storage, r: &TensorRef) -> Result<Tensor> {
    let count: usize = r.shape.iter().product();
    let last = r
        .shape
        .iter()
        .zip(&r.stride)
        .map(|(&n, &s)| n.saturating_sub(1).saturating_mul(s))
        .try_fold(r.offset, usize::checked_add);
    if count > 0 && last.is_none_or(|last| last >= storage.len()) {
        bail!(
            "shape {:?} with strides {:?} reaches past its storage of {} elements",
            r.shape,
            r.stride,
            storage.len()
        );
    }
    let mut index = vec![0usize; r.shape.len()];
    let mut positions = Vec::with_capacity(count);
    for _ in 0..count {
        positions.push(
            r.offset
                + index
                    .iter()
                    .zip(&r.stride)
                    .map(|(i, s)| i * s)
                    .sum::<usize>(),
        );
        // Odometer step over the shape, last dimension fastest.
        for d in (0..index.len()).rev() {
            index[d] += 1;
            if index[d] < r.shape[d] {
                break;
            }
            index[d] = 0;
        }
    }
    let tensor = match storage {
        Storage::F32(v) => Tensor::from_vec(
            positions.iter().map(|&p| v[p]).collect::<Vec<f32>>(),
            r.shape.as_slice(),
            &Device::Cpu,
        ),
        Storage::F64(v) => Tensor::from_vec(
            positions.iter().map(|&p| v[p]).collect::<Vec<f64>>(),
            r.shape.as_slice(),
            &Device::Cpu,
        ),
    };
    tensor.map_err(|e| anyhow!("{e}"))
}

/// VGGish's PCA: `embedding = E (raw - mu)`, E `[128, 128]` row-major and mu `[128]`, in f64 as the
/// reference's post-processing computes it.
#[derive(Debug, Clone)]
pub struct Pca {
    pub eigen_vectors: Vec<f64>,
    pub means: Vec<f64>,
}

impl Pca {
    /// Loads Google's `vggish_pca_params.npz` (`pca_eigen_vectors` [128, 128], `pca_means` [128] or [128, 1];
    /// f64 or f32; C or Fortran order).
    pub fn load(path: &Path) -> Result<Pca> {
        let name = path.display();
        let file = File::open(path).with_context(|| format!("cannot open {name}"))?;
        let mut archive = zip::ZipArchive::new(BufReader::new(file))
            .map_err(|e| anyhow!("{name}: not an .npz file (a zip archive of .npy arrays): {e}"))?;
        let mut array = |member: &str| -> Result<(Vec<usize>, Vec<f64>)> {
            let mut entry = archive
                .by_name(&format!("{member}.npy"))
                .map_err(|e| anyhow!("{name}: no array {member} ({e}); is it the PCA file?"))?;
            let mut bytes = Vec::new();
            entry
                .read_to_end(&mut bytes)
                .map_err(|e| anyhow!("{name}: cannot read {member}: {e}"))?;
            read_npy(&bytes).with_context(|| format!("{name}: {member}"))
        };
        let (shape, eigen_vectors) = array("pca_eigen_vectors")?;
        if shape != [EMBEDDING_LEN, EMBEDDING_LEN] {
            bail!("{name}: pca_eigen_vectors has shape {shape:?}, VGGish's is [128, 128]");
        }
        let (shape, means) = array("pca_means")?;
        if means.len() != EMBEDDING_LEN || shape.iter().product::<usize>() != EMBEDDING_LEN {
            bail!("{name}: pca_means has shape {shape:?}, VGGish's is [128]");
        }
        if let Some(bad) = eigen_vectors.iter().chain(&means).find(|v| !v.is_finite()) {
            bail!("{name}: holds a value that is not a number ({bad})");
        }
        Ok(Pca {
            eigen_vectors,
            means,
        })
    }

    /// The reference's post-processing (`vggish_postprocess.Postprocessor`): PCA, clip to [-2, 2], scale to
    /// [0, 255] and truncate (numpy's `astype(np.uint8)`; torchvggish rounds, which differs by 1 in about half
    /// the values, and AudioSet's release was made by the reference).
    pub fn quantize(&self, raw: &[f32]) -> [u8; EMBEDDING_LEN] {
        let centred: Vec<f64> = raw
            .iter()
            .zip(&self.means)
            .map(|(&x, m)| f64::from(x) - m)
            .collect();
        let mut out = [0u8; EMBEDDING_LEN];
        for (i, value) in out.iter_mut().enumerate() {
            let row = &self.eigen_vectors[i * EMBEDDING_LEN..(i + 1) * EMBEDDING_LEN];
            let projected: f64 = row.iter().zip(&centred).map(|(e, c)| e * c).sum();
            let scaled = (projected.clamp(-2.0, 2.0) + 2.0) * (255.0 / 4.0);
            // In [0, 255] after the clamp, so the cast truncates as astype does and never saturates.
            *value = scaled as u8;
        }
        out
    }
}

/// A `.npy` array of little-endian f8 or f4: its shape and values as f64 in row-major order (a Fortran-ordered
/// array is transposed back).
pub fn read_npy(bytes: &[u8]) -> Result<(Vec<usize>, Vec<f64>)> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        bail!("not a .npy array");
    }
    let (header_len, start) = match bytes[6] {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => bail!("unknown .npy version {v}"),
    };
    let header = bytes
        .get(start..start + header_len)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(|| anyhow!("damaged .npy header"))?;
    let field = |key: &str| -> Option<&str> {
        let at = header.find(&format!("'{key}':"))? + key.len() + 3;
        Some(header[at..].trim_start())
    };
    let descr = field("descr").ok_or_else(|| anyhow!("no dtype in {header}"))?;
    let width = if descr.starts_with("'<f8'") {
        8
    } else if descr.starts_with("'<f4'") {
        4
    } else {
        bail!("unsupported dtype in {} (f4 or f8 only)", header.trim());
    };
    let fortran = field("fortran_order")
        .ok_or_else(|| anyhow!("no fortran_order in {header}"))?
        .starts_with("True");
    let shape_text = field("shape")
        .and_then(|s| s.strip_prefix('('))
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| anyhow!("no shape in {header}"))?;
    let shape = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>())
        .collect::<Result<Vec<usize>, _>>()
        .map_err(|_| anyhow!("bad shape in {header}"))?;
    let count = shape
        .iter()
        .try_fold(1usize, |a, &b| a.checked_mul(b))
        .ok_or_else(|| anyhow!("bad shape in {header}"))?;
    let data = &bytes[start + header_len..];
    if data.len() != count * width {
        bail!(
            "holds {} bytes of data, its shape {shape:?} needs {}",
            data.len(),
            count * width
        );
    }
    let values: Vec<f64> = if width == 8 {
        data.chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect()
    } else {
        data.chunks_exact(4)
            .map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
            .collect()
    };
    if !fortran || shape.len() < 2 {
        return Ok((shape, values));
    }
    // Fortran order: the first index varies fastest. Element at row-major position p has index (i0..in); its
    // column-major position is sum(i_k * prod(shape[..k])).
    let mut out = vec![0.0; count];
    let mut index = vec![0usize; shape.len()];
    for slot in out.iter_mut() {
        let mut position = 0;
        let mut step = 1;
        for (i, n) in index.iter().zip(&shape) {
            position += i * step;
            step *= n;
        }
        *slot = values[position];
        for d in (0..index.len()).rev() {
            index[d] += 1;
            if index[d] < shape[d] {
                break;
            }
            index[d] = 0;
        }
    }
    Ok((shape, out))
}

/// torchvggish's release file of the network's weights, and where it is published.
pub const OFFICIAL_WEIGHTS: &str = "vggish-10086976.pth";
pub const OFFICIAL_WEIGHTS_URL: &str =
    "https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish-10086976.pth";
/// Google's PCA parameters, and where they are published.
pub const OFFICIAL_PCA: &str = "vggish_pca_params.npz";
pub const OFFICIAL_PCA_URL: &str = "https://storage.googleapis.com/audioset/vggish_pca_params.npz";
/// Environment variables naming the two files.
pub const WEIGHTS_VAR: &str = "SOUNDALIKE_WEIGHTS";
pub const PCA_VAR: &str = "SOUNDALIKE_PCA";

/// Where soundalike looks for the two files when neither an option nor a variable names them:
/// `$XDG_DATA_HOME/soundalike`, else `~/.local/share/soundalike`.
pub fn default_dir() -> Option<std::path::PathBuf> {
    let nonempty = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    // The XDG spec: a relative XDG_DATA_HOME is invalid and ignored (it would mean something else in every
    // directory a command is run from).
    nonempty("XDG_DATA_HOME")
        .map(std::path::PathBuf::from)
        .filter(|dir| dir.is_absolute())
        .or_else(|| nonempty("HOME").map(|home| Path::new(&home).join(".local/share")))
        .map(|dir| dir.join("soundalike"))
}

/// The weight and PCA files to use: each from its option, else its environment variable, else the official
/// name in [`default_dir`]. When one is found nowhere, the error is one line naming what is needed and where
/// it is published.
pub fn locate(
    weights: Option<&Path>,
    pca: Option<&Path>,
) -> Result<(std::path::PathBuf, std::path::PathBuf)> {
    let dir = default_dir();
    let find = |given: Option<&Path>, var: &str, official: &str| {
        given
            .map(Path::to_path_buf)
            .or_else(|| {
                std::env::var_os(var)
                    .filter(|v| !v.is_empty())
                    .map(Into::into)
            })
            .or_else(|| {
                dir.as_ref()
                    .map(|d| d.join(official))
                    .filter(|p| p.exists())
            })
    };
    let weights = find(weights, WEIGHTS_VAR, OFFICIAL_WEIGHTS);
    let pca = find(pca, PCA_VAR, OFFICIAL_PCA);
    match (weights, pca) {
        (Some(weights), Some(pca)) => Ok((weights, pca)),
        (weights, pca) => {
            let mut needed = Vec::new();
            if weights.is_none() {
                needed.push(format!(
                    "the network's weights {OFFICIAL_WEIGHTS} ({OFFICIAL_WEIGHTS_URL})"
                ));
            }
            if pca.is_none() {
                needed.push(format!(
                    "the PCA parameters {OFFICIAL_PCA} ({OFFICIAL_PCA_URL})"
                ));
            }
            let place = dir.map_or("the directory $XDG_DATA_HOME/soundalike".to_string(), |d| {
                d.display().to_string()
            });
            // Marked as not found, so that a host tells it from a file that is there but wrong (Python's
            // FileNotFoundError rather than ValueError).
            Err(crate::error::not_found(format!(
                "VGGish's files were not found: download {} into {place}, or name them with --weights and --pca \
                 (or {WEIGHTS_VAR} and {PCA_VAR})",
                needed.join(" and ")
            )))
        }
    }
}

/// For a file named as torch hub names its downloads (`NAME-<first 8 hex digits of its SHA-256>.EXT`), whether
/// its content has that hash: `Some(actual prefix)` when it does not, `None` when it does or the name holds no
/// hash. Reads the whole file: with the CPU's SHA instructions that takes less time than loading the weights,
/// beside which `Located::load` runs it.
pub fn hash_mismatch(path: &Path) -> Result<Option<(String, String)>> {
    use sha2::{Digest, Sha256};
    let Some(expected) = path
        .file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.rsplit_once('-'))
        .map(|(_, tail)| tail)
        .filter(|t| t.len() == 8 && t.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_ascii_lowercase)
    else {
        return Ok(None);
    };
    let mut file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let actual: String = hasher.finalize()[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((actual != expected).then_some((expected, actual)))
}
