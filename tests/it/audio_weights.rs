//! The weight and PCA readers: the three formats a user may hold load to the same tensors (the tiny files made
//! by torch and safetensors, with their expected values in `tiny_expected.npz`), Fortran-ordered `.npz` arrays
//! read as numpy reads them, and wrong files are refused with their names.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::PathBuf;

use candle_core::{DType, Tensor};
use soundalike::audio::weights::{self, Pca, WeightFormat, Weights};

fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/vggish-golden")
        .join(name)
}

/// The arrays of an `.npz`, by name without `.npy`.
fn read_npz(path: &std::path::Path) -> HashMap<String, (Vec<usize>, Vec<f64>)> {
    let mut archive = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    let names: Vec<String> = archive
        .file_names()
        .map(|n| n.unwrap().into_owned())
        .collect();
    names
        .into_iter()
        .map(|name| {
            let mut bytes = Vec::new();
            archive
                .by_name(&name)
                .unwrap()
                .read_to_end(&mut bytes)
                .unwrap();
            let array = weights::read_npy(&bytes).unwrap();
            (name.trim_end_matches(".npy").to_string(), array)
        })
        .collect()
}

fn values(tensor: &Tensor) -> Vec<f64> {
    tensor
        .to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap()
}

#[test]
fn every_weight_format_loads_the_same_tensors() {
    let expected = read_npz(&fixture_path("tiny_expected.npz"));
    assert_eq!(expected.len(), 3);
    for (file, format) in [
        ("tiny_zip.pth", WeightFormat::TorchZip),
        ("tiny_legacy.pth", WeightFormat::TorchLegacy),
        ("tiny.safetensors", WeightFormat::Safetensors),
    ] {
        let path = fixture_path(file);
        assert_eq!(weights::detect_format(&path).unwrap(), format, "{file}");
        let tensors: HashMap<String, Tensor> =
            weights::load_tensors(&path).unwrap().into_iter().collect();
        let mut names: Vec<&String> = tensors.keys().collect();
        names.sort();
        let mut expected_names: Vec<&String> = expected.keys().collect();
        expected_names.sort();
        assert_eq!(names, expected_names, "{file}");
        for (name, (shape, want)) in &expected {
            let tensor = &tensors[name];
            assert_eq!(tensor.dims(), shape.as_slice(), "{file}: {name}");
            // Exact: the values are small binary fractions, and a transposed view must come out transposed.
            assert_eq!(&values(tensor), want, "{file}: {name}");
        }
    }
}

#[test]
fn weights_of_the_wrong_shape_are_refused_naming_the_tensor() {
    let error = Weights::load(&fixture_path("tiny_legacy.pth"))
        .err()
        .unwrap();
    let text = format!("{error:#}");
    assert!(text.contains("tiny_legacy.pth"), "{text}");
    assert!(
        text.contains(
            "not VGGish weights: features.0.weight has shape [2, 3, 4], VGGish's is [64, 1, 3, 3]"
        ),
        "{text}"
    );
}

#[test]
fn a_truncated_legacy_file_is_refused() {
    let bytes = std::fs::read(fixture_path("tiny_legacy.pth")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.pth");
    std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
    let text = format!("{:#}", weights::load_tensors(&path).err().unwrap());
    assert!(
        text.contains("cut.pth") && text.contains("truncated inside storage"),
        "{text}"
    );
}

/// An `.npy` of f8 in Fortran order: `values` given in row-major order are stored column-major.
fn fortran_npy(shape: [usize; 2], values: &[f64]) -> Vec<u8> {
    let mut header = format!(
        "{{'descr': '<f8', 'fortran_order': True, 'shape': ({}, {}), }}",
        shape[0], shape[1]
    );
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for column in 0..shape[1] {
        for row in 0..shape[0] {
            out.extend_from_slice(&values[row * shape[1] + column].to_le_bytes());
        }
    }
    out
}

#[test]
fn pca_from_fortran_ordered_arrays_equals_pca_from_c_ordered_ones() {
    let golden = Pca::load(&fixture_path("pca_params.npz")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fortran.npz");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("pca_eigen_vectors.npy", stored).unwrap();
    zip.write_all(&fortran_npy([128, 128], &golden.eigen_vectors))
        .unwrap();
    // Means as a [128, 1] column, Fortran-ordered too.
    zip.start_file("pca_means.npy", stored).unwrap();
    zip.write_all(&fortran_npy([128, 1], &golden.means))
        .unwrap();
    zip.finish().unwrap();
    let pca = Pca::load(&path).unwrap();
    assert_eq!(pca.eigen_vectors, golden.eigen_vectors);
    assert_eq!(pca.means, golden.means);
    // Not symmetric, so reading it without the transpose would have been caught.
    assert_ne!(golden.eigen_vectors[1], golden.eigen_vectors[128]);
}

#[test]
fn a_compressed_npz_loads_as_the_stored_one() {
    // np.savez_compressed deflates each array; np.savez (Google's file) stores them.
    let golden = Pca::load(&fixture_path("pca_params.npz")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("compressed.npz");
    let mut source =
        zip::ZipArchive::new(std::fs::File::open(fixture_path("pca_params.npz")).unwrap()).unwrap();
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    let deflated = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for name in ["pca_eigen_vectors.npy", "pca_means.npy"] {
        let mut bytes = Vec::new();
        source
            .by_name(name)
            .unwrap()
            .read_to_end(&mut bytes)
            .unwrap();
        zip.start_file(name, deflated).unwrap();
        zip.write_all(&bytes).unwrap();
    }
    zip.finish().unwrap();
    let pca = Pca::load(&path).unwrap();
    assert_eq!(pca.eigen_vectors, golden.eigen_vectors);
    assert_eq!(pca.means, golden.means);
}

#[test]
fn a_weight_file_passed_as_pca_is_refused_naming_it() {
    let text = format!(
        "{:#}",
        Pca::load(&fixture_path("tiny_zip.pth")).err().unwrap()
    );
    assert!(
        text.contains("tiny_zip.pth") && text.contains("no array pca_eigen_vectors"),
        "{text}"
    );
}
