//! `items.parquet`: every item of a run, one row each, in items order, with
//! its rank, priority, label, prediction, the checks' flags and every
//! per-item score, in one columnar file (Parquet, zstd) that pandas, polars,
//! DuckDB and pyarrow read directly.
//!
//! The columns follow from the declarations, as every other column list
//! does ([`Layout::columns`]):
//!
//! | column | Parquet type | null when |
//! |---|---|---|
//! | `id` | `BYTE_ARRAY` (UTF-8) | never |
//! | `rank` | `INT64` | the item is not in the review queue (unlabelled) |
//! | `priority` | `DOUBLE` | not finite |
//! | `label`, `predicted` | `BYTE_ARRAY` (UTF-8), classification only | `label`: unlabelled; `predicted`: never |
//! | `unlabelled` | `BOOLEAN` | never |
//! | `flag_<check>`, one per check of the registry that ran | `BOOLEAN` | never |
//! | `check_<check>`, the check's score of the item, one per check that ran | `DOUBLE` | undefined, not finite or not given to the check |
//! | one per score of the run ([`crate::scores::TABLE`] order, as `queue.jsonl`'s `scores`) | `DOUBLE` | undefined or not finite |
//!
//! Rows are buffered column by column for [`ROW_GROUP`] items, then
//! written as one row group: memory is bounded by the row group, not the
//! item count.

use std::io::Write;
use std::sync::Arc;

use parquet::basic::{Compression, LogicalType, Repetition, Type as Physical, ZstdLevel};
use parquet::column::writer::ColumnWriter;
use parquet::data_type::ByteArray;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::{ColumnPath, Type, TypePtr};

/// Items per row group: about 16 MB of buffered columns at 15 doubles an
/// item; large enough for the readers' vectorised scans.
pub const ROW_GROUP: usize = 131_072;

/// The zstd level: 1, zstd's fastest ordinary level. At 1 000 000 items
/// level 3 (zstd's default) wrote 37.3 MB, level 1 41.3 MB (+11 %) in
/// about a fifth less of the write stage (1.04–1.27 s against 1.26–1.58 s
/// with `--top 1000`, where items.parquet is most of it; BENCHMARKS.md
/// "Many items"): the file is small beside the queue files either way.
const ZSTD_LEVEL: i32 = 1;

/// What a run's file holds: its score columns and its checks.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// Classification: the `label` and `predicted` columns.
    pub classification: bool,
    /// The names of the checks that ran, each a `flag_<name>` and a
    /// `check_<name>` column.
    pub checks: Vec<&'static str>,
    /// The score columns, in output order.
    pub scores: Vec<&'static str>,
}

/// The type of one column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Int,
    Double,
    Bool,
}

impl Layout {
    /// Every column: `(name, kind, nullable)`, in file order.
    pub fn columns(&self) -> Vec<(String, Kind, bool)> {
        let mut c = vec![
            ("id".to_string(), Kind::Text, false),
            ("rank".to_string(), Kind::Int, true),
            ("priority".to_string(), Kind::Double, true),
        ];
        if self.classification {
            c.push(("label".into(), Kind::Text, true));
            c.push(("predicted".into(), Kind::Text, true));
        }
        c.push(("unlabelled".into(), Kind::Bool, false));
        c.extend(
            self.checks
                .iter()
                .map(|n| (format!("flag_{n}"), Kind::Bool, false)),
        );
        c.extend(
            self.checks
                .iter()
                .map(|n| (format!("check_{n}"), Kind::Double, true)),
        );
        c.extend(
            self.scores
                .iter()
                .map(|n| (n.to_string(), Kind::Double, true)),
        );
        c
    }

    /// The Parquet schema of [`Layout::columns`].
    fn schema(&self) -> parquet::errors::Result<TypePtr> {
        let mut fields = Vec::new();
        for (name, kind, nullable) in self.columns() {
            let (physical, logical) = match kind {
                Kind::Text => (Physical::BYTE_ARRAY, Some(LogicalType::String)),
                Kind::Int => (Physical::INT64, None),
                Kind::Double => (Physical::DOUBLE, None),
                Kind::Bool => (Physical::BOOLEAN, None),
            };
            let rep = if nullable {
                Repetition::OPTIONAL
            } else {
                Repetition::REQUIRED
            };
            fields.push(Arc::new(
                Type::primitive_type_builder(&name, physical)
                    .with_repetition(rep)
                    .with_logical_type(logical)
                    .build()?,
            ));
        }
        Ok(Arc::new(
            Type::group_type_builder("items")
                .with_fields(fields)
                .build()?,
        ))
    }
}

/// One item's row. `flags` and `scores` follow [`Layout::checks`] and
/// [`Layout::scores`] (a row with fewer or more is an internal error).
#[derive(Debug, Clone, PartialEq)]
pub struct ItemRow<'a> {
    pub id: &'a str,
    pub rank: Option<u64>,
    pub priority: Option<f64>,
    pub label: Option<&'a str>,
    pub predicted: Option<&'a str>,
    pub unlabelled: bool,
    pub flags: Vec<bool>,
    pub check_scores: Vec<Option<f64>>,
    pub scores: Vec<Option<f64>>,
}

/// One column's buffered values: the present values and, for a nullable
/// column, a definition level per row (1 present, 0 null).
enum Buffer {
    Text(Vec<ByteArray>),
    Int(Vec<i64>),
    Double(Vec<f64>),
    Bool(Vec<bool>),
}

struct Column {
    values: Buffer,
    levels: Option<Vec<i16>>,
}

impl Column {
    fn new(kind: Kind, nullable: bool) -> Self {
        let values = match kind {
            Kind::Text => Buffer::Text(Vec::new()),
            Kind::Int => Buffer::Int(Vec::new()),
            Kind::Double => Buffer::Double(Vec::new()),
            Kind::Bool => Buffer::Bool(Vec::new()),
        };
        Column {
            values,
            levels: nullable.then(Vec::new),
        }
    }

    fn level(&mut self, present: bool) {
        if let Some(l) = &mut self.levels {
            l.push(i16::from(present));
        }
    }

    fn text(&mut self, v: Option<&str>) {
        self.level(v.is_some());
        if let (Buffer::Text(b), Some(v)) = (&mut self.values, v) {
            b.push(ByteArray::from(v.as_bytes().to_vec()));
        }
    }

    fn int(&mut self, v: Option<i64>) {
        self.level(v.is_some());
        if let (Buffer::Int(b), Some(v)) = (&mut self.values, v) {
            b.push(v);
        }
    }

    fn double(&mut self, v: Option<f64>) {
        let v = v.filter(|x| x.is_finite());
        self.level(v.is_some());
        if let (Buffer::Double(b), Some(v)) = (&mut self.values, v) {
            b.push(v);
        }
    }

    fn boolean(&mut self, v: bool) {
        self.level(true);
        if let Buffer::Bool(b) = &mut self.values {
            b.push(v);
        }
    }

    fn clear(&mut self) {
        match &mut self.values {
            Buffer::Text(b) => b.clear(),
            Buffer::Int(b) => b.clear(),
            Buffer::Double(b) => b.clear(),
            Buffer::Bool(b) => b.clear(),
        }
        if let Some(l) = &mut self.levels {
            l.clear();
        }
    }

    /// Write the buffered values through `w`, the column writer of the
    /// same type.
    fn write(&self, w: &mut ColumnWriter<'_>) -> parquet::errors::Result<()> {
        let levels = self.levels.as_deref();
        match (&self.values, w) {
            (Buffer::Text(v), ColumnWriter::ByteArrayColumnWriter(w)) => {
                w.write_batch(v, levels, None)?;
            }
            (Buffer::Int(v), ColumnWriter::Int64ColumnWriter(w)) => {
                w.write_batch(v, levels, None)?;
            }
            (Buffer::Double(v), ColumnWriter::DoubleColumnWriter(w)) => {
                w.write_batch(v, levels, None)?;
            }
            (Buffer::Bool(v), ColumnWriter::BoolColumnWriter(w)) => {
                w.write_batch(v, levels, None)?;
            }
            _ => {
                return Err(parquet::errors::ParquetError::General(
                    "items.parquet: a column's buffer and writer types differ".into(),
                ));
            }
        }
        Ok(())
    }
}

/// Write `rows` (every item, in items order) as `items.parquet` onto `out`.
pub fn write<'a>(
    out: &mut (dyn Write + Send),
    layout: &Layout,
    rows: impl IntoIterator<Item = ItemRow<'a>>,
) -> std::io::Result<()> {
    write_parquet(out, layout, rows).map_err(std::io::Error::other)
}

fn write_parquet<'a>(
    out: &mut (dyn Write + Send),
    layout: &Layout,
    rows: impl IntoIterator<Item = ItemRow<'a>>,
) -> parquet::errors::Result<()> {
    // Dictionary encoding only where values repeat (the class names): ids
    // and scores are nearly all distinct, and hashing them costs more than
    // zstd saves.
    let mut props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(ZSTD_LEVEL)?))
        .set_created_by(format!("triage {}", env!("CARGO_PKG_VERSION")))
        .set_max_row_group_size(ROW_GROUP)
        .set_dictionary_enabled(false);
    if layout.classification {
        for c in ["label", "predicted"] {
            props = props.set_column_dictionary_enabled(ColumnPath::from(c), true);
        }
    }
    let props = props.build();
    let mut file = SerializedFileWriter::new(out, layout.schema()?, Arc::new(props))?;
    let mut cols: Vec<Column> = layout
        .columns()
        .into_iter()
        .map(|(_, kind, nullable)| Column::new(kind, nullable))
        .collect();
    let mut buffered = 0usize;
    let flush = |cols: &mut [Column],
                 file: &mut SerializedFileWriter<&mut (dyn Write + Send)>|
     -> parquet::errors::Result<()> {
        let mut group = file.next_row_group()?;
        let mut i = 0;
        while let Some(mut w) = group.next_column()? {
            let col = cols.get(i).ok_or_else(|| {
                parquet::errors::ParquetError::General("items.parquet: too few columns".into())
            })?;
            col.write(w.untyped())?;
            w.close()?;
            i += 1;
        }
        group.close()?;
        cols.iter_mut().for_each(Column::clear);
        Ok(())
    };
    for row in rows {
        if row.flags.len() != layout.checks.len()
            || row.check_scores.len() != layout.checks.len()
            || row.scores.len() != layout.scores.len()
        {
            return Err(parquet::errors::ParquetError::General(format!(
                "items.parquet: item {:?} has {} flags, {} check scores and {} scores, the file {}, {} and {}",
                row.id,
                row.flags.len(),
                row.check_scores.len(),
                row.scores.len(),
                layout.checks.len(),
                layout.checks.len(),
                layout.scores.len()
            )));
        }
        let mut c = cols.iter_mut();
        let mut next = || {
            c.next().ok_or_else(|| {
                parquet::errors::ParquetError::General("items.parquet: too few columns".into())
            })
        };
        next()?.text(Some(row.id));
        next()?.int(row.rank.and_then(|r| i64::try_from(r).ok()));
        next()?.double(row.priority);
        if layout.classification {
            next()?.text(row.label);
            next()?.text(row.predicted);
        }
        next()?.boolean(row.unlabelled);
        for f in &row.flags {
            next()?.boolean(*f);
        }
        for s in &row.check_scores {
            next()?.double(*s);
        }
        for s in &row.scores {
            next()?.double(*s);
        }
        buffered += 1;
        if buffered == ROW_GROUP {
            flush(&mut cols, &mut file)?;
            buffered = 0;
        }
    }
    if buffered > 0 {
        flush(&mut cols, &mut file)?;
    }
    file.close()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::Field;

    fn layout() -> Layout {
        Layout {
            classification: true,
            checks: vec!["wrong_label", "uncertain"],
            scores: vec!["self_confidence", "entropy"],
        }
    }

    fn row(i: usize) -> ItemRow<'static> {
        let unlabelled = i % 3 == 2;
        ItemRow {
            id: ["a", "b\"é", "c"][i % 3],
            rank: (!unlabelled).then_some(i as u64 + 1),
            priority: Some(if i == 1 { f64::NAN } else { 0.25 * i as f64 }),
            label: (!unlabelled).then_some("cat"),
            predicted: Some("dog"),
            unlabelled,
            flags: vec![i.is_multiple_of(2), i == 1],
            check_scores: vec![Some(i as f64 / 4.0), (i != 0).then_some(0.125)],
            scores: vec![Some(0.5 / (i + 1) as f64), None],
        }
    }

    /// Read the file back with the parquet crate's record reader: every
    /// row as `(column, field)` pairs.
    fn read(bytes: Vec<u8>) -> (usize, Vec<Vec<(String, Field)>>) {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&bytes).unwrap();
        let r = SerializedFileReader::new(f).unwrap();
        let groups = r.metadata().num_row_groups();
        let rows = r
            .get_row_iter(None)
            .unwrap()
            .map(|row| {
                row.unwrap()
                    .get_column_iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .collect();
        (groups, rows)
    }

    #[test]
    fn columns_follow_the_layout() {
        let names: Vec<String> = layout().columns().into_iter().map(|c| c.0).collect();
        assert_eq!(
            names,
            [
                "id",
                "rank",
                "priority",
                "label",
                "predicted",
                "unlabelled",
                "flag_wrong_label",
                "flag_uncertain",
                "check_wrong_label",
                "check_uncertain",
                "self_confidence",
                "entropy"
            ]
        );
        let seg = Layout {
            classification: false,
            ..layout()
        };
        assert!(!seg.columns().iter().any(|c| c.0 == "label"));
    }

    #[test]
    fn rows_read_back_with_nulls_where_undefined() {
        let mut out = Vec::new();
        write(&mut out, &layout(), (0..3).map(row)).unwrap();
        assert_eq!(&out[..4], b"PAR1");
        let (groups, rows) = read(out);
        assert_eq!((groups, rows.len()), (1, 3));
        let get =
            |r: &Vec<(String, Field)>, k: &str| r.iter().find(|(n, _)| n == k).unwrap().1.clone();
        assert_eq!(get(&rows[1], "id"), Field::Str("b\"é".into()));
        assert_eq!(get(&rows[0], "rank"), Field::Long(1));
        assert_eq!(get(&rows[2], "rank"), Field::Null);
        assert_eq!(get(&rows[0], "priority"), Field::Double(0.0));
        // NaN is written as null, as queue.jsonl writes it.
        assert_eq!(get(&rows[1], "priority"), Field::Null);
        assert_eq!(get(&rows[2], "label"), Field::Null);
        assert_eq!(get(&rows[2], "unlabelled"), Field::Bool(true));
        assert_eq!(get(&rows[0], "flag_wrong_label"), Field::Bool(true));
        assert_eq!(get(&rows[1], "flag_uncertain"), Field::Bool(true));
        assert_eq!(get(&rows[2], "check_wrong_label"), Field::Double(0.5));
        assert_eq!(get(&rows[0], "check_uncertain"), Field::Null);
        assert_eq!(get(&rows[1], "check_uncertain"), Field::Double(0.125));
        assert_eq!(get(&rows[1], "self_confidence"), Field::Double(0.25));
        assert_eq!(get(&rows[0], "entropy"), Field::Null);
    }

    #[test]
    fn many_rows_span_row_groups_in_order() {
        let n = ROW_GROUP + 5;
        let mut out = Vec::new();
        write(&mut out, &layout(), (0..n).map(row)).unwrap();
        let (groups, rows) = read(out);
        assert_eq!((groups, rows.len()), (2, n));
        let last = &rows[n - 1];
        let rank = last.iter().find(|(k, _)| k == "rank").unwrap().1.clone();
        // n − 1 = 131 076 ≡ 0 (mod 3): labelled, rank n.
        assert_eq!(rank, Field::Long(n as i64));
    }

    #[test]
    fn a_row_that_does_not_fit_the_layout_is_an_error() {
        let mut r = row(0);
        r.scores.pop();
        let e = write(&mut Vec::new(), &layout(), [r]).unwrap_err();
        assert!(
            e.to_string().contains("and 1 scores, the file 2, 2 and 2"),
            "{e}"
        );
    }
}
