//! Reading and writing 2-D `.npy` feature matrices (via `npyz`).

use painvrl_core::io::write_atomic_with;
use painvrl_core::{Error, Result};
use std::path::Path;

/// Reads a C-ordered 2-D `.npy` matrix of f16, f32, f64 or u8 as f32, returning
/// `(rows, cols, values)`.
pub fn read_matrix(path: &Path) -> Result<(usize, usize, Vec<f32>)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    read_matrix_bytes(path, &bytes)
}

/// Parses `.npy` bytes; `path` is used in error messages only.
pub fn read_matrix_bytes(path: &Path, bytes: &[u8]) -> Result<(usize, usize, Vec<f32>)> {
    let bad = |m: String| Error::parse(path, None, m);
    let npy = npyz::NpyFile::new(bytes).map_err(|e| bad(format!("not a valid .npy file: {e}")))?;
    if npy.order() != npyz::Order::C {
        return Err(bad("Fortran-ordered arrays are not supported; save with C order".into()));
    }
    let shape = npy.shape().to_vec();
    if shape.len() != 2 {
        return Err(bad(format!("expected a 2-D matrix (items × dims), got shape {shape:?}")));
    }
    let (rows, cols) = (shape[0] as usize, shape[1] as usize);
    let dtype = match npy.dtype() {
        npyz::DType::Plain(t) => t.to_string(),
        other => return Err(bad(format!("unsupported dtype {other:?}; expected f16, f32, f64 or u8"))),
    };
    let truncated = |e: std::io::Error| bad(format!("truncated or unreadable data ({dtype}, shape {shape:?}): {e}"));
    let values: Vec<f32> = match dtype.as_str() {
        "<f4" | "|f4" => npy.into_vec::<f32>().map_err(truncated)?,
        "<f8" | "|f8" => npy.into_vec::<f64>().map_err(truncated)?.into_iter().map(|v| v as f32).collect(),
        "<f2" | "|f2" => npy.into_vec::<half::f16>().map_err(truncated)?.into_iter().map(f32::from).collect(),
        "|u1" | "<u1" => npy.into_vec::<u8>().map_err(truncated)?.into_iter().map(f32::from).collect(),
        other => return Err(bad(format!("unsupported dtype '{other}'; expected little-endian f16, f32, f64 or u8"))),
    };
    if values.len() != rows * cols {
        return Err(bad(format!("holds {} values, but its shape {shape:?} needs {}", values.len(), rows * cols)));
    }
    Ok((rows, cols, values))
}

/// Writes a `rows × cols` f32 matrix as `.npy`, atomically.
pub fn write_matrix(path: &Path, rows: usize, cols: usize, values: &[f32]) -> Result<()> {
    assert_eq!(values.len(), rows * cols, "write_matrix: values do not match the shape");
    write_atomic_with(path, |w| {
        use npyz::WriterBuilder;
        let mut out =
            npyz::WriteOptions::new().default_dtype().shape(&[rows as u64, cols as u64]).writer(w).begin_nd()?;
        out.extend(values.iter().copied())?;
        out.finish()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy_bytes(dtype: &str, shape: &str, fortran: bool, data: &[u8]) -> Vec<u8> {
        let mut header = format!(
            "{{'descr': '{dtype}', 'fortran_order': {}, 'shape': {shape}, }}",
            if fortran { "True" } else { "False" }
        );
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend_from_slice(&(header.len() as u16).to_le_bytes());
        b.extend_from_slice(header.as_bytes());
        b.extend_from_slice(data);
        b
    }

    #[test]
    fn round_trips_f32() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.npy");
        write_matrix(&p, 2, 3, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.5]).unwrap();
        assert_eq!(read_matrix(&p).unwrap(), (2, 3, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.5]));
    }

    #[test]
    fn reads_f16_f64_and_u8() {
        let h: Vec<u8> = [1.5f32, -2.0].iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect();
        assert_eq!(
            read_matrix_bytes(Path::new("h"), &npy_bytes("<f2", "(1, 2)", false, &h)).unwrap().2,
            vec![1.5, -2.0]
        );
        let d: Vec<u8> = [0.25f64, 8.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(
            read_matrix_bytes(Path::new("d"), &npy_bytes("<f8", "(2, 1)", false, &d)).unwrap().2,
            vec![0.25, 8.0]
        );
        assert_eq!(
            read_matrix_bytes(Path::new("u"), &npy_bytes("|u1", "(1, 3)", false, &[0, 1, 255])).unwrap().2,
            vec![0.0, 1.0, 255.0]
        );
    }

    #[test]
    fn rejects_bad_files_with_the_file_name() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (npy_bytes("<f4", "(2, 2)", true, &[0; 16]), "Fortran"),
            (npy_bytes("<i4", "(1, 1)", false, &[0; 4]), "dtype"),
            (npy_bytes("<f4", "(4,)", false, &[0; 16]), "2-D"),
            (npy_bytes("<f4", "(2, 2)", false, &[0; 7]), "truncated"),
            (b"not numpy".to_vec(), "not a valid"),
        ];
        for (bytes, want) in cases {
            let e = read_matrix_bytes(Path::new("feat.npy"), &bytes).unwrap_err().to_string();
            assert!(e.contains("feat.npy") && e.contains(want), "{e}");
        }
    }
}
