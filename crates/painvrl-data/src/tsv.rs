//! Text interaction files: `user<TAB>item` pair files, rating logs and MMRec `.inter` files.

use painvrl_core::io::write_atomic_with;
use painvrl_core::{Error, Interactions, Result};
use std::collections::HashSet;
use std::path::Path;

/// A pair file after parsing: the distinct interactions and how many duplicates were dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PairFile {
    /// Distinct interactions in file order.
    pub interactions: Interactions,
    /// Repeated (user, item) lines that were dropped.
    pub duplicates: usize,
    /// The 1-based line of each interaction in the file, for error messages.
    pub lines: Vec<usize>,
}

impl PairFile {
    /// Checks every item id against the `n_items` feature rows; the error names the file and
    /// the line of the first id out of range.
    pub fn check_items(&self, path: &Path, n_items: usize) -> Result<()> {
        match self.interactions.iter().zip(&self.lines).find(|((_, i), _)| *i as usize >= n_items) {
            Some(((u, i), &line)) => Err(Error::parse(
                path,
                Some(line),
                format!("item {i} (user {u}) is out of range: the features have {n_items} rows (ids 0..{n_items})"),
            )),
            None => Ok(()),
        }
    }
}

fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    String::from_utf8(bytes).map_err(|e| Error::parse(path, None, format!("not UTF-8 text: {e}")))
}

fn fields(line: &str) -> Vec<&str> {
    line.split(['\t', ',', ' ']).filter(|f| !f.is_empty()).collect()
}

fn parse_id(path: &Path, line_no: usize, field: &str, what: &str) -> Result<u32> {
    field.parse::<u32>().map_err(|_| {
        let why =
            if field.starts_with('-') { "negative ids are not allowed" } else { "expected a non-negative integer id" };
        Error::parse(path, Some(line_no), format!("{what} '{field}': {why}"))
    })
}

/// Whether a first line is a header (its first field is not a number).
fn is_header(line: &str) -> bool {
    fields(line).first().is_some_and(|f| f.parse::<f64>().is_err())
}

/// Reads a `user<TAB>item` file (0-based ids, optional header, extra columns ignored).
pub fn read_pairs(path: &Path) -> Result<PairFile> {
    let text = read_text(path)?;
    parse_pairs(path, &text)
}

/// Parses pair-file text; `path` is used in error messages.
pub fn parse_pairs(path: &Path, text: &str) -> Result<PairFile> {
    let mut out = PairFile::default();
    let mut seen = HashSet::new();
    for (k, line) in text.lines().enumerate() {
        let line_no = k + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || (k == 0 && is_header(line)) {
            continue;
        }
        let f = fields(line);
        if f.len() < 2 {
            return Err(Error::parse(path, Some(line_no), format!("expected 'user<TAB>item', got '{line}'")));
        }
        let u = parse_id(path, line_no, f[0], "user")?;
        let i = parse_id(path, line_no, f[1], "item")?;
        if seen.insert((u, i)) {
            out.interactions.push(u, i);
            out.lines.push(line_no);
        } else {
            out.duplicates += 1;
        }
    }
    Ok(out)
}

/// Writes interactions as a `user<TAB>item` file with a header, atomically.
pub fn write_pairs(path: &Path, x: &Interactions) -> Result<()> {
    write_atomic_with(path, |w| {
        writeln!(w, "user\titem")?;
        for (u, i) in x.iter() {
            writeln!(w, "{u}\t{i}")?;
        }
        Ok(())
    })
}

/// One line of a rating log.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rating {
    /// User id.
    pub user: u32,
    /// Item id.
    pub item: u32,
    /// Explicit rating.
    pub rating: f32,
    /// Unix timestamp.
    pub timestamp: i64,
}

/// Reads a `user item rating timestamp` log (optional header).
pub fn read_ratings(path: &Path) -> Result<Vec<Rating>> {
    parse_ratings(path, &read_text(path)?)
}

/// Parses the text of a rating log; `path` only names the source in errors.
pub fn parse_ratings(path: &Path, text: &str) -> Result<Vec<Rating>> {
    let mut out = Vec::new();
    for (k, line) in text.lines().enumerate() {
        let line_no = k + 1;
        let line = line.trim();
        if line.is_empty() || (k == 0 && is_header(line)) {
            continue;
        }
        let f = fields(line);
        if f.len() < 4 {
            return Err(Error::parse(
                path,
                Some(line_no),
                format!("expected 'user item rating timestamp', got '{line}'"),
            ));
        }
        let rating =
            f[2].parse::<f32>().ok().filter(|r| r.is_finite()).ok_or_else(|| {
                Error::parse(path, Some(line_no), format!("rating '{}' is not a finite number", f[2]))
            })?;
        let timestamp = f[3]
            .parse::<i64>()
            .map_err(|_| Error::parse(path, Some(line_no), format!("timestamp '{}' is not an integer", f[3])))?;
        out.push(Rating {
            user: parse_id(path, line_no, f[0], "user")?,
            item: parse_id(path, line_no, f[1], "item")?,
            rating,
            timestamp,
        });
    }
    Ok(out)
}

/// Reads an MMRec `.inter` file: a header naming `userID`, `itemID` and `x_label` (0 = train,
/// 1 = val, 2 = test) columns, tab-separated. Returns (train, val, test, duplicates).
pub fn read_mmrec(path: &Path) -> Result<([Interactions; 3], usize)> {
    parse_mmrec(path, &read_text(path)?)
}

/// Parses the text of an MMRec `.inter` file; `path` only names the source in errors.
pub fn parse_mmrec(path: &Path, text: &str) -> Result<([Interactions; 3], usize)> {
    let mut lines = text.lines().enumerate();
    let header: Vec<&str> = lines.next().map(|(_, l)| l.split('\t').map(str::trim).collect()).unwrap_or_default();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .ok_or_else(|| Error::parse(path, Some(1), format!("header lacks the '{name}' column (found {header:?})")))
    };
    let (cu, ci, cl) = (col("userID")?, col("itemID")?, col("x_label")?);
    let mut splits: [Interactions; 3] = Default::default();
    let mut seen = HashSet::new();
    let mut dups = 0;
    for (k, line) in lines {
        let line_no = k + 1;
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split('\t').map(str::trim).collect();
        let need = cu.max(ci).max(cl);
        if f.len() <= need {
            return Err(Error::parse(
                path,
                Some(line_no),
                format!("expected at least {} tab-separated fields, got {}", need + 1, f.len()),
            ));
        }
        let u = parse_id(path, line_no, f[cu], "userID")?;
        let i = parse_id(path, line_no, f[ci], "itemID")?;
        let label = match f[cl] {
            "0" => 0,
            "1" => 1,
            "2" => 2,
            other => return Err(Error::parse(path, Some(line_no), format!("x_label '{other}' is not 0, 1 or 2"))),
        };
        if seen.insert((u, i)) {
            splits[label].push(u, i);
        } else {
            dups += 1;
        }
    }
    Ok((splits, dups))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_with_header_duplicates_and_extra_columns() {
        let f = parse_pairs(Path::new("t.tsv"), "user\titem\n0\t1\n2\t3\t0.5\n0\t1\n\n").unwrap();
        assert_eq!(f.interactions, Interactions::from_pairs([(0, 1), (2, 3)]));
        assert_eq!(f.duplicates, 1);
    }

    #[test]
    fn bad_lines_name_file_and_line() {
        for (text, want) in
            [("0\t1\n3\n", "line 2"), ("0\t1\n1\tx\n", "line 2"), ("0\t1\n-1\t2\n", "negative"), ("0\t1.5\n", "line 1")]
        {
            let e = parse_pairs(Path::new("train.tsv"), text).unwrap_err().to_string();
            assert!(e.contains("train.tsv") && e.contains(want), "{text:?} -> {e}");
        }
    }

    #[test]
    fn writes_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.tsv");
        let x = Interactions::from_pairs([(3, 4), (0, 9)]);
        write_pairs(&p, &x).unwrap();
        assert_eq!(read_pairs(&p).unwrap().interactions, x);
    }

    #[test]
    fn mmrec_labels_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.inter");
        std::fs::write(&p, "userID\titemID\trating\tx_label\n0\t1\t5\t0\n0\t2\t4\t1\n1\t1\t3\t2\n").unwrap();
        let ([tr, va, te], d) = read_mmrec(&p).unwrap();
        assert_eq!((tr.len(), va.len(), te.len(), d), (1, 1, 1, 0));
        std::fs::write(&p, "userID\titemID\tx_label\n0\t1\t7\n").unwrap();
        assert!(read_mmrec(&p).unwrap_err().to_string().contains("line 2"));
        std::fs::write(&p, "user\titem\n0\t1\n").unwrap();
        assert!(read_mmrec(&p).unwrap_err().to_string().contains("userID"));
    }
}
