//! The file `tally client export` writes: CSV, JSON lines or Parquet, record by record in
//! bounded memory (Parquet a row group at a time), then flushed and synced before the manifest
//! that vouches for it is written. The columns are the same in every format; Parquet stores
//! each as its type (unsigned integers as such, u128 as its decimal text).

use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use parquet::column::writer::ColumnWriter;
use parquet::data_type::ByteArray;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;

#[derive(Debug, clap::Args)]
pub struct ExportFile {
    /// Where the records go (the manifest beside it, `.manifest.json` appended).
    #[arg(long)]
    pub out: PathBuf,
    /// csv (a header row), jsonl (one JSON object per line; numbers as strings) or parquet
    /// (typed columns; u128 as decimal strings).
    #[arg(long, value_enum, default_value = "csv")]
    pub format: ExportFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    Csv,
    Jsonl,
    Parquet,
}

impl ExportFormat {
    /// Its name in the manifest (`"format"`), as given to `--format`.
    pub fn name(self) -> &'static str {
        match self {
            ExportFormat::Csv => "csv",
            ExportFormat::Jsonl => "jsonl",
            ExportFormat::Parquet => "parquet",
        }
    }
}

/// What a column holds, which is how Parquet stores it; CSV and JSON lines hold every value as
/// its decimal text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// INT64, unsigned (`INTEGER(64,false)`): timestamps (ns since the epoch), u64 amounts.
    U64,
    /// INT32, unsigned (`INTEGER(32,false)`): ledgers.
    U32,
    /// INT32, unsigned 16-bit: codes and flags.
    U16,
    /// A u128 (ids, amounts, balances) as its decimal text, a UTF8 string: no Parquet integer
    /// holds 128 bits, and the text is exactly the CSV's cell.
    U128,
    /// UTF8 text (an event's kind).
    Text,
}

/// A column of an export: its name (the CSV header's), its type, and whether a row may leave it
/// empty (an empty CSV cell, a Parquet null).
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub name: &'static str,
    pub kind: ColumnType,
    pub optional: bool,
}

impl Column {
    pub const fn new(name: &'static str, kind: ColumnType) -> Column {
        Column {
            name,
            kind,
            optional: false,
        }
    }

    pub const fn optional(name: &'static str, kind: ColumnType) -> Column {
        Column {
            name,
            kind,
            optional: true,
        }
    }
}

/// The columns' names, in order: the CSV header.
pub fn names(columns: &[Column]) -> Vec<&'static str> {
    columns.iter().map(|c| c.name).collect()
}

/// Rows in each Parquet row group: what the writer holds in memory at most (some 32 MB for an
/// events export: a u128's text is a `ByteArray` of its own), and large enough for a reader to
/// skip by the groups' statistics.
pub const ROW_GROUP_ROWS: usize = 65_536;

/// Records written to an export file.
pub enum ExportWriter {
    Csv(Box<csv::Writer<BufWriter<File>>>),
    Jsonl {
        columns: Vec<&'static str>,
        out: BufWriter<File>,
    },
    Parquet(Box<ParquetFile>),
}

impl ExportWriter {
    pub fn create(file: &ExportFile, columns: &[Column]) -> anyhow::Result<ExportWriter> {
        Self::create_with(file, columns, ROW_GROUP_ROWS)
    }

    /// As `create`, with row groups of `group_rows` rows (Parquet only).
    pub fn create_with(
        file: &ExportFile,
        columns: &[Column],
        group_rows: usize,
    ) -> anyhow::Result<ExportWriter> {
        let out = File::create(&file.out)
            .with_context(|| format!("cannot create {}", file.out.display()))?;
        Ok(match file.format {
            ExportFormat::Csv => {
                let mut writer = csv::Writer::from_writer(BufWriter::new(out));
                writer.write_record(names(columns))?;
                ExportWriter::Csv(Box::new(writer))
            }
            ExportFormat::Jsonl => ExportWriter::Jsonl {
                columns: names(columns),
                out: BufWriter::new(out),
            },
            ExportFormat::Parquet => {
                ExportWriter::Parquet(Box::new(ParquetFile::new(out, columns, group_rows)?))
            }
        })
    }

    /// One record, its cells in the columns' order (an empty cell: no value).
    pub fn write(&mut self, row: Vec<String>) -> anyhow::Result<()> {
        match self {
            ExportWriter::Csv(writer) => writer.write_record(&row)?,
            ExportWriter::Jsonl { columns, out } => {
                let object: serde_json::Map<String, serde_json::Value> = columns
                    .iter()
                    .zip(row)
                    .map(|(column, value)| ((*column).to_owned(), serde_json::Value::String(value)))
                    .collect();
                serde_json::to_writer(&mut *out, &object)?;
                out.write_all(b"\n")?;
            }
            ExportWriter::Parquet(file) => file.write(row)?,
        }
        Ok(())
    }

    /// Flushes everything to the file (Parquet: the last row group and the footer) and syncs
    /// it: the manifest is written only after.
    pub fn finish(self) -> anyhow::Result<()> {
        let out = match self {
            ExportWriter::Csv(writer) => {
                let mut out = writer.into_inner().map_err(|e| e.into_error())?;
                out.flush()?;
                out.into_inner().map_err(|e| e.into_error())?
            }
            ExportWriter::Jsonl { mut out, .. } => {
                out.flush()?;
                out.into_inner().map_err(|e| e.into_error())?
            }
            ExportWriter::Parquet(file) => file.finish()?,
        };
        out.sync_all()?;
        Ok(())
    }
}

/// A Parquet file being written: the current row group's values gathered column by column,
/// written out as a row group every `group_rows` rows.
pub struct ParquetFile {
    columns: Vec<Column>,
    values: Vec<Values>,
    /// Per optional column, a definition level for each row of the group (0: null).
    defined: Vec<Vec<i16>>,
    rows: usize,
    group_rows: usize,
    file: SerializedFileWriter<File>,
}

/// One column's non-null values of the current row group, as Parquet stores them.
enum Values {
    Int64(Vec<i64>),
    Int32(Vec<i32>),
    Bytes(Vec<ByteArray>),
}

/// The Parquet schema of `columns` (a message type: names, physical and logical types).
fn schema(columns: &[Column]) -> String {
    let mut text = String::from("message export {\n");
    for column in columns {
        let repetition = if column.optional {
            "optional"
        } else {
            "required"
        };
        let kind = match column.kind {
            ColumnType::U64 => "int64 {} (INTEGER(64,false))",
            ColumnType::U32 => "int32 {} (INTEGER(32,false))",
            ColumnType::U16 => "int32 {} (INTEGER(16,false))",
            ColumnType::U128 | ColumnType::Text => "binary {} (STRING)",
        };
        text += &format!("  {repetition} {};\n", kind.replace("{}", column.name));
    }
    text + "}\n"
}

/// One cell of a row, parsed as its column stores it.
enum Cell {
    Null,
    Int64(i64),
    Int32(i32),
    Bytes(ByteArray),
}

/// A CSV cell as `column` stores it in Parquet: an empty one is a null (refused where the
/// column requires a value); text that is not the column's type is refused, column named.
fn parse(column: &Column, cell: String) -> anyhow::Result<Cell> {
    if cell.is_empty() {
        if !column.optional {
            bail!("column {} has no value", column.name);
        }
        return Ok(Cell::Null);
    }
    let bad = || {
        format!(
            "column {}: {cell:?} is not a {:?}",
            column.name, column.kind
        )
    };
    Ok(match column.kind {
        // An unsigned INT64 holds the u64's bits (readers read them back as a u64); so does an
        // unsigned INT32 a u32's.
        ColumnType::U64 => Cell::Int64(cell.parse::<u64>().with_context(bad)? as i64),
        ColumnType::U32 => Cell::Int32(cell.parse::<u32>().with_context(bad)? as i32),
        ColumnType::U16 => Cell::Int32(i32::from(cell.parse::<u16>().with_context(bad)?)),
        ColumnType::U128 => {
            if !cell.bytes().all(|b| b.is_ascii_digit()) {
                bail!(bad());
            }
            Cell::Bytes(ByteArray::from(cell.into_bytes()))
        }
        ColumnType::Text => Cell::Bytes(ByteArray::from(cell.into_bytes())),
    })
}

impl ParquetFile {
    fn new(out: File, columns: &[Column], group_rows: usize) -> anyhow::Result<ParquetFile> {
        let schema = parquet::schema::parser::parse_message_type(&schema(columns))?;
        // Snappy: every Parquet reader has it, it is pure Rust (the `snap` crate), and it is
        // fast enough not to slow an export that the network paces.
        let properties = WriterProperties::builder()
            .set_compression(parquet::basic::Compression::SNAPPY)
            .build();
        let file = SerializedFileWriter::new(out, Arc::new(schema), Arc::new(properties))?;
        let values = columns
            .iter()
            .map(|c| match c.kind {
                ColumnType::U64 => Values::Int64(Vec::new()),
                ColumnType::U32 | ColumnType::U16 => Values::Int32(Vec::new()),
                ColumnType::U128 | ColumnType::Text => Values::Bytes(Vec::new()),
            })
            .collect();
        Ok(ParquetFile {
            columns: columns.to_vec(),
            values,
            defined: vec![Vec::new(); columns.len()],
            rows: 0,
            group_rows: group_rows.max(1),
            file,
        })
    }

    fn write(&mut self, row: Vec<String>) -> anyhow::Result<()> {
        if row.len() != self.columns.len() {
            bail!(
                "a row of {} cells for {} columns",
                row.len(),
                self.columns.len()
            );
        }
        // Every cell parsed before any is kept: a refused row leaves the group as it was.
        let cells = self
            .columns
            .iter()
            .zip(row)
            .map(|(column, cell)| parse(column, cell))
            .collect::<anyhow::Result<Vec<Cell>>>()?;
        for (((column, values), defined), cell) in self
            .columns
            .iter()
            .zip(&mut self.values)
            .zip(&mut self.defined)
            .zip(cells)
        {
            if column.optional {
                defined.push(i16::from(!matches!(cell, Cell::Null)));
            }
            match (cell, values) {
                (Cell::Null, _) => {}
                (Cell::Int64(value), Values::Int64(v)) => v.push(value),
                (Cell::Int32(value), Values::Int32(v)) => v.push(value),
                (Cell::Bytes(value), Values::Bytes(v)) => v.push(value),
                _ => bail!("column {}: its values are not its type's", column.name),
            }
        }
        self.rows += 1;
        if self.rows == self.group_rows {
            self.flush_group()?;
        }
        Ok(())
    }

    /// Writes the rows gathered as one row group, and forgets them.
    fn flush_group(&mut self) -> anyhow::Result<()> {
        let mut group = self.file.next_row_group()?;
        for ((column, values), defined) in self
            .columns
            .iter()
            .zip(&mut self.values)
            .zip(&mut self.defined)
        {
            let Some(mut writer) = group.next_column()? else {
                bail!("the Parquet schema has fewer columns than the export");
            };
            let levels = column.optional.then_some(&defined[..]);
            match (writer.untyped(), &mut *values) {
                (ColumnWriter::Int64ColumnWriter(w), Values::Int64(v)) => {
                    w.write_batch(v, levels, None)?;
                    v.clear();
                }
                (ColumnWriter::Int32ColumnWriter(w), Values::Int32(v)) => {
                    w.write_batch(v, levels, None)?;
                    v.clear();
                }
                (ColumnWriter::ByteArrayColumnWriter(w), Values::Bytes(v)) => {
                    w.write_batch(v, levels, None)?;
                    v.clear();
                }
                _ => bail!(
                    "column {}: its Parquet type is not its values'",
                    column.name
                ),
            }
            writer.close()?;
            defined.clear();
        }
        group.close()?;
        self.rows = 0;
        Ok(())
    }

    /// Writes the last row group and the footer; the file, flushed, to sync.
    fn finish(mut self) -> anyhow::Result<File> {
        if self.rows > 0 {
            self.flush_group()?;
        }
        Ok(self.file.into_inner()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::Field;

    const COLUMNS: [Column; 6] = [
        Column::new("timestamp", ColumnType::U64),
        Column::new("kind", ColumnType::Text),
        Column::new("id", ColumnType::U128),
        Column::optional("cash_amount", ColumnType::U64),
        Column::optional("cash_ledger", ColumnType::U32),
        Column::new("code", ColumnType::U16),
    ];

    /// Every row of a Parquet export, each value as the CSV cell it came from (null: empty).
    fn read_back(path: &std::path::Path) -> (usize, Vec<Vec<String>>) {
        let reader =
            SerializedFileReader::new(File::open(path).expect("the file")).expect("Parquet");
        let groups = reader.metadata().num_row_groups();
        let rows = reader
            .get_row_iter(None)
            .expect("rows")
            .map(|row| {
                row.expect("a row")
                    .get_column_iter()
                    .map(|(_, field)| match field {
                        Field::Null => String::new(),
                        Field::Str(s) => s.clone(),
                        Field::ULong(v) => v.to_string(),
                        Field::UInt(v) => v.to_string(),
                        Field::UShort(v) => v.to_string(),
                        other => panic!("an unexpected value: {other:?}"),
                    })
                    .collect()
            })
            .collect();
        (groups, rows)
    }

    /// Proves rows come back as written across row groups of 3 (the last one partial), with
    /// the extremes of every type and nulls where a cell was empty.
    #[test]
    fn parquet_rows_read_back_as_written_across_row_groups() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = ExportFile {
            out: dir.path().join("rows.parquet"),
            format: ExportFormat::Parquet,
        };
        let rows: Vec<Vec<String>> = (0..8u64)
            .map(|i| {
                let trade = i % 2 == 1;
                let cash = |text: String| if trade { text } else { String::new() };
                vec![
                    if i == 7 { u64::MAX } else { 1_000 + i }.to_string(),
                    if trade { "trade" } else { "transfer" }.to_owned(),
                    if i == 7 { u128::MAX } else { u128::from(i) }.to_string(),
                    cash(if i == 7 { u64::MAX } else { i * 10 }.to_string()),
                    cash(if i == 7 { u32::MAX } else { 2 }.to_string()),
                    if i == 7 { u16::MAX } else { 3 }.to_string(),
                ]
            })
            .collect();
        let mut writer = ExportWriter::create_with(&file, &COLUMNS, 3).expect("created");
        for row in &rows {
            writer.write(row.clone()).expect("written");
        }
        writer.finish().expect("finished");
        let (groups, got) = read_back(&file.out);
        assert_eq!(groups, 3);
        assert_eq!(got, rows);
        let names: Vec<String> = SerializedFileReader::new(File::open(&file.out).expect("file"))
            .expect("Parquet")
            .metadata()
            .file_metadata()
            .schema_descr()
            .columns()
            .iter()
            .map(|c| c.name().to_owned())
            .collect();
        assert_eq!(names, super::names(&COLUMNS));
    }

    /// Proves a cell that does not fit its column is refused with the column named, not
    /// written and not a panic; so is an empty cell where a value is required.
    #[test]
    fn parquet_refuses_a_cell_of_the_wrong_type() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = ExportFile {
            out: dir.path().join("bad.parquet"),
            format: ExportFormat::Parquet,
        };
        let mut writer = ExportWriter::create(&file, &COLUMNS).expect("created");
        let row = |code: &str, id: &str| {
            ["1", "transfer", id, "", "", code]
                .map(str::to_owned)
                .to_vec()
        };
        let err = writer.write(row("70000", "1")).expect_err("not a u16");
        assert!(err.to_string().contains("column code"), "{err:#}");
        let err = writer.write(row("1", "-1")).expect_err("not a u128");
        assert!(err.to_string().contains("column id"), "{err:#}");
        let err = writer.write(row("", "1")).expect_err("code is required");
        assert!(
            err.to_string().contains("column code has no value"),
            "{err:#}"
        );
        // The refused rows left nothing behind: the next one is the file's only row.
        writer.write(row("4", "5")).expect("a good row");
        writer.finish().expect("finished");
        assert_eq!(read_back(&file.out), (1, vec![row("4", "5")]));
        let missing = ExportFile {
            out: dir.path().join("no/such/dir/x.parquet"),
            format: ExportFormat::Parquet,
        };
        let err = ExportWriter::create(&missing, &COLUMNS)
            .err()
            .expect("no dir");
        assert!(err.to_string().contains("cannot create"), "{err:#}");
    }
}
