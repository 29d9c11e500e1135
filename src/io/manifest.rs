//! `items.csv`: one row per item, column `id` (unique), plus `label`
//! (classification) or `mask` (segmentation), plus any carried columns.

use std::collections::HashMap;
use std::path::Path;

use crate::error::{Error, Result};

/// The parsed item table.
#[derive(Debug, Clone, Default)]
pub struct Manifest {
    /// Column names in file order.
    pub columns: Vec<String>,
    /// Item ids in row order, kept once ([`Ids`]).
    pub ids: Ids,
    /// Every cell, row-major: `rows.row(i)[j]` for column `columns[j]`,
    /// kept once ([`Cells`]).
    pub rows: Cells,
}

impl Manifest {
    /// The items of dataset `cfg`: its items CSV, or (classification
    /// without one) rows numbered after the probabilities' first dimension.
    /// For the commands that score nothing (`triage merge`,
    /// `triage review-import`).
    pub fn of_dataset(cfg: &crate::config::DatasetConfig) -> Result<Manifest> {
        if let Some(m) = crate::io::labelfile::manifest(cfg) {
            return m;
        }
        if let Some(m) = &cfg.memory {
            return crate::io::inputs::memory_manifest(cfg, m.probs.shape()[0])
                .ok_or_else(|| Error::Internal("no in-memory items".into()));
        }
        match (&cfg.items, cfg.task) {
            (Some(p), _) => Manifest::load(p),
            (None, crate::config::Task::Classification) => {
                let probs = crate::io::inputs::open(cfg, &cfg.probs)?;
                Ok(Manifest::numbered(
                    probs.shape.first().copied().unwrap_or(0),
                ))
            }
            (None, crate::config::Task::Segmentation) => {
                Err(Error::Usage("segmentation needs an items CSV".into()))
            }
        }
    }

    /// Read and check `path`: an `id` column, unique non-empty ids, and every
    /// row as wide as the header. The file must be a regular file
    /// ([`crate::fsx::open_input`]); it is streamed, so memory follows
    /// its size.
    pub fn load(path: &Path) -> Result<Self> {
        let file = crate::fsx::open_text(path)?;
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(false)
            .from_reader(file);
        let columns: Vec<String> = reader
            .headers()
            .map_err(|e| csv_error(path, e))?
            .iter()
            .map(|h| h.trim().to_string())
            .collect();
        let id_col = columns
            .iter()
            .position(|c| c == "id")
            .ok_or_else(|| Error::input(path, "no `id` column in the header").field("id"))?;
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut ids = Ids::default();
        let mut rows = Cells::new(columns.len());
        for (i, record) in reader.records().enumerate() {
            let record = record.map_err(|e| csv_error(path, e))?;
            let id = record.get(id_col).unwrap_or("").trim().to_string();
            let line = i + 2;
            if id.is_empty() {
                return Err(Error::input(path, format!("empty id on line {line}")).field("id"));
            }
            if let Some(first) = seen.insert(id.clone(), line) {
                return Err(Error::input(
                    path,
                    format!("duplicate id: lines {first} and {line} both use it"),
                )
                .item(id)
                .field("id"));
            }
            ids.push(&id);
            rows.push_row(record.iter())
                .map_err(|e| Error::input(path, format!("line {line}: {e}")))?;
        }
        Ok(Manifest { columns, ids, rows })
    }

    /// A manifest of `rows` under `columns`, ids from the first column (for
    /// tests).
    #[cfg(test)]
    pub fn of_table(columns: &[&str], rows: &[&[&str]]) -> Manifest {
        Manifest {
            columns: columns.iter().map(|c| c.to_string()).collect(),
            ids: rows.iter().map(|r| r[0]).collect(),
            rows: Cells::from_rows(columns.len(), rows.iter().copied())
                .unwrap_or_else(|e| panic!("{e}")),
        }
    }

    /// A manifest of `n` items with ids `"0"`, `"1"`, ... and no columns.
    pub fn numbered(n: usize) -> Self {
        Manifest {
            columns: vec![],
            ids: Ids::numbered(n),
            rows: Cells::empty_rows(n),
        }
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when there are no items.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Each id's row, for looking items up by id.
    pub fn positions(&self) -> HashMap<&str, usize> {
        self.ids.iter().enumerate().map(|(i, id)| (id, i)).collect()
    }

    /// Index of a column.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }
}

/// Item ids in row order, kept once: every id's text in one buffer and
/// where each ends, so that an id costs its bytes and 8 more (a `String`
/// apiece cost 24 bytes and an allocation: about 32 bytes for the short
/// ids of a million-item run; BENCHMARKS.md "Many items"). Read an id as
/// `&ids[i]` or [`Ids::get`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ids {
    text: String,
    /// `ends[i]`: where id `i` ends in `text` (it starts where `i − 1` ends).
    ends: Vec<usize>,
}

impl Ids {
    /// `"0"`, `"1"`, ... `"n-1"`.
    pub fn numbered(n: usize) -> Ids {
        let mut ids = Ids {
            text: String::with_capacity(n.saturating_mul(7)),
            ends: Vec::with_capacity(n),
        };
        let mut b = itoa::Buffer::new();
        for i in 0..n {
            ids.push(b.format(i));
        }
        ids
    }

    /// Add `id` after the others.
    pub fn push(&mut self, id: &str) {
        self.text.push_str(id);
        self.ends.push(self.text.len());
    }

    /// Keep the first `len` ids (all when there are fewer).
    pub fn truncate(&mut self, len: usize) {
        self.ends.truncate(len);
        self.text.truncate(self.ends.last().copied().unwrap_or(0));
    }

    /// How many ids.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// No id.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Id `i`, if there is one.
    pub fn get(&self, i: usize) -> Option<&str> {
        let end = *self.ends.get(i)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        self.text.get(start..end)
    }

    /// Every id, in row order.
    pub fn iter(&self) -> IdsIter<'_> {
        IdsIter {
            ids: self,
            rows: 0..self.len(),
        }
    }

    /// The ids as owned strings.
    pub fn to_vec(&self) -> Vec<String> {
        self.iter().map(str::to_string).collect()
    }
}

impl std::ops::Index<usize> for Ids {
    type Output = str;
    /// Id `i`; panics past the end, as a slice does.
    fn index(&self, i: usize) -> &str {
        match self.get(i) {
            Some(id) => id,
            None => panic!("id {i} of {}", self.len()),
        }
    }
}

impl<S: AsRef<str>> FromIterator<S> for Ids {
    fn from_iter<I: IntoIterator<Item = S>>(it: I) -> Ids {
        let mut ids = Ids::default();
        for s in it {
            ids.push(s.as_ref());
        }
        ids
    }
}

impl<'a> IntoIterator for &'a Ids {
    type Item = &'a str;
    type IntoIter = IdsIter<'a>;
    fn into_iter(self) -> IdsIter<'a> {
        self.iter()
    }
}

/// The ids of [`Ids::iter`], in row order.
#[derive(Debug, Clone)]
pub struct IdsIter<'a> {
    ids: &'a Ids,
    rows: std::ops::Range<usize>,
}

impl<'a> Iterator for IdsIter<'a> {
    type Item = &'a str;
    fn next(&mut self) -> Option<&'a str> {
        self.rows.next().map(|i| &self.ids[i])
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.rows.size_hint()
    }
}

impl DoubleEndedIterator for IdsIter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.rows.next_back().map(|i| &self.ids[i])
    }
}

impl ExactSizeIterator for IdsIter<'_> {}

/// A table of text cells, `width` a row, kept row-major as one [`Ids`]
/// (one text buffer and the end offset of each cell): 8 bytes a cell beside
/// its text, where a `Vec<Vec<String>>` costs 24 a row and 24 a cell plus
/// an allocation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cells {
    width: usize,
    /// The number of rows (kept apart: a table without columns has rows).
    n: usize,
    /// Cell `k` is row `k / width`, column `k % width`.
    cells: Ids,
}

impl Cells {
    /// No rows yet, `width` cells each.
    pub fn new(width: usize) -> Cells {
        Cells {
            width,
            ..Cells::default()
        }
    }

    /// `n` rows without cells.
    pub fn empty_rows(n: usize) -> Cells {
        Cells {
            n,
            ..Cells::default()
        }
    }

    /// `n` rows of `width` cells, cell `(i, j)` from `cell(i, j)`.
    pub fn tabulate<S: AsRef<str>>(
        n: usize,
        width: usize,
        mut cell: impl FnMut(usize, usize) -> S,
    ) -> Cells {
        let mut c = Cells::new(width);
        for i in 0..n {
            for j in 0..width {
                c.cells.push(cell(i, j).as_ref());
            }
        }
        c.n = n;
        c
    }

    /// A table of the rows given; every row must have `width` cells.
    pub fn from_rows<R, S>(width: usize, rows: impl IntoIterator<Item = R>) -> Result<Cells>
    where
        R: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut c = Cells::new(width);
        for (i, r) in rows.into_iter().enumerate() {
            c.push_row(r)
                .map_err(|e| Error::Internal(format!("row {i}: {e}")))?;
        }
        Ok(c)
    }

    /// Add a row of exactly `width` cells (else nothing is added).
    pub fn push_row<S: AsRef<str>>(
        &mut self,
        cells: impl IntoIterator<Item = S>,
    ) -> std::result::Result<(), String> {
        let before = self.cells.len();
        let mut k = 0;
        for cell in cells {
            k += 1;
            if k > self.width {
                break;
            }
            self.cells.push(cell.as_ref());
        }
        if k != self.width {
            self.cells.truncate(before);
            return Err(format!("{k} cells where the table has {}", self.width));
        }
        self.n += 1;
        Ok(())
    }

    /// The table with one more column at the end, `cell(i)` in row `i`.
    pub fn with_column(&self, mut cell: impl FnMut(usize) -> String) -> Cells {
        Cells::tabulate(self.n, self.width + 1, |i, j| match self.get(i, j) {
            Some(c) => std::borrow::Cow::Borrowed(c),
            None => std::borrow::Cow::Owned(cell(i)),
        })
    }

    /// The number of rows.
    pub fn len(&self) -> usize {
        self.n
    }

    /// No rows.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Cell `(i, j)`, when row `i` and column `j` exist.
    pub fn get(&self, i: usize, j: usize) -> Option<&str> {
        if j >= self.width {
            return None;
        }
        self.cells.get(i.checked_mul(self.width)?.checked_add(j)?)
    }

    /// Cell `(i, j)`; panics out of the table, as a slice does.
    pub fn cell(&self, i: usize, j: usize) -> &str {
        match self.get(i, j) {
            Some(c) => c,
            None => panic!("cell ({i}, {j}) of {} × {}", self.n, self.width),
        }
    }

    /// Column `j`'s cells, in row order (none when there is no column `j`).
    pub fn column(&self, j: usize) -> impl ExactSizeIterator<Item = &str> + '_ {
        let n = if j < self.width { self.n } else { 0 };
        (0..n).map(move |i| self.cell(i, j))
    }

    /// Row `i`'s cells.
    pub fn row(&self, i: usize) -> impl ExactSizeIterator<Item = &str> + '_ {
        let w = if i < self.n { self.width } else { 0 };
        (0..w).map(move |j| self.cell(i, j))
    }
}

fn csv_error(path: &Path, e: csv::Error) -> Error {
    let line = e.position().map(|p| p.line());
    match e.into_kind() {
        csv::ErrorKind::Io(io) => Error::io(path, io),
        kind => {
            let mut msg = format!("{kind:?}");
            if let csv::ErrorKind::UnequalLengths {
                expected_len, len, ..
            } = kind
            {
                msg = format!("a row has {len} fields, the header has {expected_len}");
            }
            if let Some(line) = line {
                msg = format!("line {line}: {msg}");
            }
            Error::input(path, msg)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cells read back as the rows they were built from, by cell, row and
    /// column; a row of the wrong width is refused and leaves the table as
    /// it was; an added column lands after the others in every row.
    #[test]
    fn cells_read_back_the_rows_they_were_given() {
        let rows = [["a", "", "x,y"], ["b", "é", "\"q\""]];
        let mut c = Cells::from_rows(3, rows).unwrap();
        assert_eq!((c.len(), c.cell(1, 1), c.cell(0, 2)), (2, "é", "x,y"));
        assert_eq!(c.get(0, 1), Some(""));
        assert_eq!((c.get(2, 0), c.get(0, 3)), (None, None));
        assert_eq!(c.row(1).collect::<Vec<_>>(), ["b", "é", "\"q\""]);
        assert_eq!(c.row(2).count(), 0);
        assert_eq!(c.column(0).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(c.column(3).count(), 0);
        let before = c.clone();
        assert!(c.push_row(["only", "two"]).is_err());
        assert!(c.push_row(["one", "two", "three", "four"]).is_err());
        assert_eq!(c, before);
        c.push_row(["c", "d", "e"]).unwrap();
        let wider = c.with_column(|i| format!("#{i}"));
        assert_eq!(wider.row(2).collect::<Vec<_>>(), ["c", "d", "e", "#2"]);
        assert_eq!(wider.row(0).collect::<Vec<_>>(), ["a", "", "x,y", "#0"]);
        let t = Cells::tabulate(2, 2, |i, j| format!("{i}{j}"));
        assert_eq!(t.column(1).collect::<Vec<_>>(), ["01", "11"]);
        let none = Cells::empty_rows(4);
        assert_eq!(
            (none.len(), none.row(3).count(), none.get(0, 0)),
            (4, 0, None)
        );
    }

    /// Ids kept in one buffer read back as the strings they were, in order,
    /// from either end, with nothing past the last.
    #[test]
    fn ids_read_back_as_pushed() {
        let ids = Ids::numbered(12);
        assert_eq!(ids.len(), 12);
        assert_eq!(
            (&ids[0], &ids[9], &ids[10], &ids[11]),
            ("0", "9", "10", "11")
        );
        assert_eq!(ids.get(12), None);
        let words = ["é", "", "a,b", "x y"];
        let ids: Ids = words.iter().collect();
        assert_eq!(ids.iter().collect::<Vec<_>>(), words);
        assert_eq!(ids.iter().next_back(), Some("x y"));
        assert_eq!(ids.iter().len(), 4);
        assert_eq!(ids.to_vec(), words.map(String::from));
        assert!(Ids::default().is_empty() && Ids::default().get(0).is_none());
    }

    #[test]
    fn parses_and_rejects_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("items.csv");
        std::fs::write(&p, "id,label,annotator\na,1,x\nb,2,y\n").unwrap();
        let m = Manifest::load(&p).unwrap();
        assert_eq!(m.ids.iter().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(m.column("annotator"), Some(2));
        std::fs::write(&p, "id,label\na,1\nb,2\na,3\n").unwrap();
        let e = Manifest::load(&p).unwrap_err().to_string();
        assert!(
            e.contains("duplicate id") && e.contains("\"a\"") && e.contains("lines 2 and 4"),
            "{e}"
        );
        std::fs::write(&p, "name,label\na,1\n").unwrap();
        assert!(
            Manifest::load(&p)
                .unwrap_err()
                .to_string()
                .contains("no `id` column")
        );
        std::fs::write(&p, "id,label\na,1,extra\n").unwrap();
        let e = Manifest::load(&p).unwrap_err().to_string();
        assert!(e.contains("3 fields"), "{e}");
    }
}
