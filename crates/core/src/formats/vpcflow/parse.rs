//! Parsing of VPC flow log objects into typed polars frames. Header-driven: the first line names
//! the fields, in any order and any subset; a header-less file is read in the default v2 order or
//! in the field list the user gives. Liberal where AWS's own files are (runs of spaces, blank
//! lines, repeated headers), strict where data would be lost (a short line fails the object).

use std::sync::Arc;

use polars::prelude::*;

use super::fields::{self, DEFAULT_V2, FieldType, Role};
use crate::error::ParseError;
use crate::formats::decode::{DecodeLimits, with_text};

/// What the parser needs besides the bytes.
#[derive(Clone, Debug, Default)]
pub struct ParseOptions {
    /// Field list (AWS names) for objects without a header line. Without it a header-less object
    /// is read as the default v2 format when it has 14 fields and rejected otherwise.
    pub headerless_format: Option<Vec<String>>,
}

impl ParseOptions {
    /// Options from a user's `--format` text: AWS field names separated by spaces or commas,
    /// `${…}` wrappers allowed as in the console's format string.
    pub fn with_format(text: Option<&str>) -> Result<Self, String> {
        let Some(text) = text else {
            return Ok(Self::default());
        };
        let names: Vec<String> = text
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|t| !t.is_empty())
            .map(|t| t.trim_start_matches("${").trim_end_matches('}').to_owned())
            .collect();
        if names.is_empty() {
            return Err("format: empty field list".into());
        }
        if let Some(bad) = names
            .iter()
            .find(|n| !fields::is_field_name_shaped(n.as_bytes()))
        {
            return Err(format!("format: {bad:?} is not a field name"));
        }
        Ok(Self {
            headerless_format: Some(names),
        })
    }
}

/// The records of one object: one frame per header segment (a repeated, different header starts
/// a new segment), each with the columns its header names.
#[derive(Debug)]
pub struct ParsedObject {
    pub frames: Vec<DataFrame>,
    pub records: u64,
    /// Bytes after decompression.
    pub decoded_bytes: u64,
}

/// Parses one raw object — gzip (detected by its magic bytes, several members allowed) or plain
/// text — named `source` (used in error messages) into frames with one row per record.
pub fn parse_object(
    source: &str,
    raw: &[u8],
    opts: &ParseOptions,
) -> Result<ParsedObject, ParseError> {
    with_text(source, raw, &DecodeLimits::default(), |text| {
        parse_text(source, text, opts)
    })
}

/// Parses decompressed flow log text into frames with one row per record.
pub fn parse_text(
    source: &str,
    text: &[u8],
    opts: &ParseOptions,
) -> Result<ParsedObject, ParseError> {
    let mut sink = FrameSink {
        capacity: memchr::memchr_iter(b'\n', text).count() + 1,
        segments: Vec::new(),
    };
    let records = parse_into(source, text, opts, &mut sink)?;
    let frames = sink
        .segments
        .into_iter()
        .map(|s| s.finish(source))
        .collect::<Result<_, _>>()?;
    Ok(ParsedObject {
        frames,
        records,
        decoded_bytes: text.len() as u64,
    })
}

/// Where parsed records go: typed frames ([`parse_text`]) or a combiner (`combine`).
pub(crate) trait RecordSink {
    /// A header (or the header-less field list) starts a segment of records with these fields.
    fn begin(&mut self, layout: Arc<Layout>);
    /// One record of the current segment; `tokens` has one token per field of its layout.
    /// `utf8` tells that the whole text is valid UTF-8, so string tokens need no check.
    fn push(&mut self, at: &At<'_>, tokens: &[&[u8]], utf8: bool) -> Result<(), ParseError>;
    /// A record of the current segment given as its whole line, for a sink with a fast path
    /// that reads the line in one pass: `None` when it does not read this line (it then keeps
    /// nothing of it, and the line is split and given to [`RecordSink::push`], which names any
    /// error). Only called for lines that cannot be a header, once a layout is known.
    fn push_line(&mut self, _line: &[u8], _utf8: bool) -> Option<()> {
        None
    }
}

/// Where a record is: the object and the 1-based line, for error messages.
pub(crate) struct At<'a> {
    pub source: &'a str,
    pub line: usize,
}

impl At<'_> {
    pub(crate) fn error(&self, reason: impl Into<String>) -> ParseError {
        ParseError::at(self.source, self.line, reason)
    }
}

/// The fields a header names, in its order, with their column names, types and merge roles.
#[derive(Debug)]
pub(crate) struct Layout {
    /// AWS field names, as the header gives them.
    pub names: Vec<String>,
    /// Where the field list came from, as error messages say it: "the header names".
    pub origin: &'static str,
    pub columns: Vec<LayoutColumn>,
}

#[derive(Debug)]
pub(crate) struct LayoutColumn {
    pub name: PlSmallStr,
    pub field: String,
    pub ty: FieldType,
    pub role: Role,
}

impl Layout {
    fn new(at: &At<'_>, names: &[&str], origin: &'static str) -> Result<Self, ParseError> {
        let mut columns = Vec::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            if names[..i].contains(name) {
                return Err(at.error(format!("field {name:?} named twice")));
            }
            let known = fields::field_by_name(name);
            let ty = known.map_or(FieldType::String, |f| f.ty);
            // Only integers are aggregated; anything else (unknown fields included) is a key.
            let role = match ty {
                FieldType::String => Role::Key,
                _ => known.map_or(Role::Key, |f| f.role),
            };
            columns.push(LayoutColumn {
                name: fields::column_name(name).into(),
                field: (*name).to_owned(),
                ty,
                role,
            });
        }
        Ok(Self {
            names: names.iter().map(|n| (*n).to_owned()).collect(),
            origin,
            columns,
        })
    }

    fn matches_header(&self, tokens: &[&[u8]]) -> bool {
        self.names.len() == tokens.len()
            && self
                .names
                .iter()
                .zip(tokens)
                .all(|(n, t)| n.as_bytes() == *t)
    }
}

impl LayoutColumn {
    /// The value of an integer token: `None` for `-`, an error naming the field otherwise.
    pub(crate) fn int(&self, at: &At<'_>, token: &[u8]) -> Result<Option<i64>, ParseError> {
        if token == b"-" {
            return Ok(None);
        }
        let v = parse_int(token);
        let v = match self.ty {
            FieldType::Int32 => v.filter(|v| i32::try_from(*v).is_ok()),
            _ => v,
        };
        match v {
            Some(v) => Ok(Some(v)),
            None => {
                let what = match self.ty {
                    FieldType::Int32 => "a 32-bit integer",
                    _ => "an integer",
                };
                Err(at.error(format!(
                    "field {}: {:?} is not {what}",
                    self.field,
                    String::from_utf8_lossy(token)
                )))
            }
        }
    }

    /// The text of a string token: `None` for `-`, an error if it is not UTF-8.
    pub(crate) fn str<'t>(
        &self,
        at: &At<'_>,
        token: &'t [u8],
    ) -> Result<Option<&'t str>, ParseError> {
        if token == b"-" {
            return Ok(None);
        }
        std::str::from_utf8(token).map(Some).map_err(|_| {
            at.error(format!(
                "field {}: not UTF-8 text (is this a flow log object?)",
                self.field
            ))
        })
    }
}

/// Parses decompressed flow log text into `sink`; returns the number of records.
pub(crate) fn parse_into(
    source: &str,
    text: &[u8],
    opts: &ParseOptions,
    sink: &mut impl RecordSink,
) -> Result<u64, ParseError> {
    let mut parser = LineParser::new(source, opts);
    parser.feed(text, sink)?;
    Ok(parser.records)
}

/// Parses an object's text fed in pieces that each end at the end of a line (as
/// [`crate::formats::decode::stream_lines`] gives them): the header seen so far and the line
/// count carry over from piece to piece.
pub(crate) struct LineParser<'a> {
    source: &'a str,
    opts: &'a ParseOptions,
    layout: Option<Arc<Layout>>,
    /// Records read so far.
    pub records: u64,
    line: usize,
}

impl<'a> LineParser<'a> {
    pub(crate) fn new(source: &'a str, opts: &'a ParseOptions) -> Self {
        Self {
            source,
            opts,
            layout: None,
            records: 0,
            line: 0,
        }
    }

    /// Parses whole lines into `sink`.
    pub(crate) fn feed(
        &mut self,
        text: &[u8],
        sink: &mut impl RecordSink,
    ) -> Result<(), ParseError> {
        let source = self.source;
        // One pass over the piece (fast on ASCII) spares a check per string token; a piece ends
        // at a line end, so no character is cut.
        let utf8 = std::str::from_utf8(text).is_ok();
        let mut tokens: Vec<&[u8]> = Vec::with_capacity(64);
        let mut pos = 0;
        while pos < text.len() {
            let end = memchr::memchr(b'\n', &text[pos..]).map_or(text.len(), |i| pos + i);
            let bytes = &text[pos..end];
            pos = end + 1;
            self.line += 1;
            // A line that starts with neither a letter nor a separator is no header (names
            // start with a lowercase letter): once the layout is known, the sink may read it in
            // one pass.
            if self.layout.is_some()
                && bytes
                    .first()
                    .is_some_and(|&b| !b.is_ascii_lowercase() && !is_separator(b))
                && sink.push_line(bytes, utf8).is_some()
            {
                self.records += 1;
                continue;
            }
            let at = At {
                source,
                line: self.line,
            };
            split_fields(bytes, &mut tokens);
            if tokens.is_empty() {
                continue;
            }
            if is_header(&tokens) {
                if self
                    .layout
                    .as_ref()
                    .is_some_and(|l| l.matches_header(&tokens))
                {
                    continue; // a repeated header, as in concatenated deliveries
                }
                // Header tokens are ASCII (checked by is_header).
                let names: Vec<&str> = tokens
                    .iter()
                    .map(|t| std::str::from_utf8(t).unwrap_or_default())
                    .collect();
                let l = Arc::new(Layout::new(&at, &names, "the header names")?);
                sink.begin(Arc::clone(&l));
                self.layout = Some(l);
                continue;
            }
            let l = match &self.layout {
                Some(l) => l,
                None => {
                    let (names, origin): (Vec<&str>, _) = match &self.opts.headerless_format {
                        Some(f) => (f.iter().map(String::as_str).collect(), "--format names"),
                        None if tokens.len() == DEFAULT_V2.len() => {
                            (DEFAULT_V2.to_vec(), "the default v2 format has")
                        }
                        None => {
                            return Err(at.error(format!(
                                "no header line and {} fields; only the default v2 format ({} \
                                 fields) is read without a header: give the field list with \
                                 --format",
                                tokens.len(),
                                DEFAULT_V2.len()
                            )));
                        }
                    };
                    let l = Arc::new(Layout::new(&at, &names, origin)?);
                    sink.begin(Arc::clone(&l));
                    self.layout.insert(l)
                }
            };
            if tokens.len() != l.columns.len() {
                return Err(at.error(format!(
                    "{} fields, {} {}",
                    tokens.len(),
                    l.origin,
                    l.columns.len()
                )));
            }
            sink.push(&at, &tokens, utf8)?;
            self.records += 1;
        }
        Ok(())
    }
}

/// Splits a line on runs of spaces, tabs and CRs (a CRLF line's CR ends its last field) into
/// `tokens`. memchr finds the separators a vector at a time, which is markedly faster than a
/// test per byte on lines of short fields.
pub(crate) fn split_fields<'a>(line: &'a [u8], tokens: &mut Vec<&'a [u8]>) {
    tokens.clear();
    let mut start = 0;
    for sep in memchr::memchr3_iter(b' ', b'\t', b'\r', line) {
        if sep > start {
            tokens.push(&line[start..sep]);
        }
        start = sep + 1;
    }
    if start < line.len() {
        tokens.push(&line[start..]);
    }
}

/// Whether a byte separates fields.
#[inline]
pub(crate) fn is_separator(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r')
}

/// Where the field starting at `pos` of `line` ends: at the next separator or the line's end.
#[inline]
pub(crate) fn field_end(line: &[u8], mut pos: usize) -> usize {
    // Eight bytes at a time: only a byte at or below a space can be a separator, and the word
    // trick below flags exactly those (each byte's high bit set before subtracting, so no
    // borrow crosses bytes; bytes of 0x80 and above are masked out).
    const HIGH: u64 = 0x8080_8080_8080_8080;
    const SPACE_PLUS_ONE: u64 = 0x2121_2121_2121_2121;
    while let Some(word) = line
        .get(pos..pos + 8)
        .and_then(|w| <[u8; 8]>::try_from(w).ok())
    {
        let w = u64::from_le_bytes(word);
        let low = !((w | HIGH).wrapping_sub(SPACE_PLUS_ONE)) & HIGH & !w;
        if low == 0 {
            pos += 8;
            continue;
        }
        let at = pos + (low.trailing_zeros() / 8) as usize;
        if line.get(at).is_some_and(|&b| is_separator(b)) {
            return at;
        }
        // A control byte inside a field: it is part of the field.
        pos = at + 1;
    }
    while let Some(&b) = line.get(pos) {
        if b <= b' ' && is_separator(b) {
            break;
        }
        pos += 1;
    }
    pos
}

/// Where the separators after `pos` end.
#[inline]
pub(crate) fn skip_separators(line: &[u8], mut pos: usize) -> usize {
    while line.get(pos).is_some_and(|&b| is_separator(b)) {
        pos += 1;
    }
    pos
}

/// The integer field starting at `pos` (not a separator), read the way [`LayoutColumn::int`]
/// reads it, and where it ends — for the fields the fast path reads: `-` (null) or a number as
/// it prints (`0`, `80`; no sign, no leading zero, at most 18 digits so it cannot overflow),
/// within 32 bits for an `Int32` field. `None` for anything else, which the caller reads the
/// general way.
#[inline]
pub(crate) fn scan_int(line: &[u8], pos: usize, ty: FieldType) -> Option<(Option<i64>, usize)> {
    let field = line.get(pos..)?;
    let ends_at = |i: usize| field.get(i).is_none_or(|&b| is_separator(b));
    let first = *field.first()?;
    if first == b'-' || first == b'0' {
        if !ends_at(1) {
            return None;
        }
        return Some(((first == b'0').then_some(0), pos + 1));
    }
    let mut v = i64::from(first.wrapping_sub(b'1'));
    if v > 8 {
        return None;
    }
    v += 1;
    let mut i = 1;
    while let Some(&b) = field.get(i) {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            break;
        }
        i += 1;
        if i > 18 {
            return None;
        }
        v = v * 10 + i64::from(d);
    }
    if !ends_at(i) || (ty == FieldType::Int32 && i32::try_from(v).is_err()) {
        return None;
    }
    Some((Some(v), pos + i))
}

/// A header names fields: every token is shaped like a field name and at least one is a
/// documented field (data tokens such as `i-0abc` are name-shaped, but never documented names).
fn is_header(tokens: &[&[u8]]) -> bool {
    tokens.iter().all(|t| fields::is_field_name_shaped(t))
        && tokens
            .iter()
            .any(|t| fields::FIELDS.iter().any(|f| f.name.as_bytes() == *t))
}

/// Typed frames, one row per record: the plain parse.
struct FrameSink {
    capacity: usize,
    segments: Vec<FrameSegment>,
}

struct FrameSegment {
    layout: Arc<Layout>,
    columns: Vec<ColumnBuilder>,
    rows: usize,
}

/// A typed polars column built token by token.
pub(crate) enum ColumnBuilder {
    I32(PrimitiveChunkedBuilder<Int32Type>),
    I64(PrimitiveChunkedBuilder<Int64Type>),
    Str(StringChunkedBuilder),
}

impl ColumnBuilder {
    pub(crate) fn new(column: &LayoutColumn, capacity: usize) -> Self {
        let name = column.name.clone();
        match column.ty {
            FieldType::Int32 => Self::I32(PrimitiveChunkedBuilder::new(name, capacity)),
            FieldType::Int64 => Self::I64(PrimitiveChunkedBuilder::new(name, capacity)),
            FieldType::String => Self::Str(StringChunkedBuilder::new(name, capacity)),
        }
    }

    /// Appends a token of `column` (`-` as null), or says why it is not a value of its type.
    pub(crate) fn append(
        &mut self,
        column: &LayoutColumn,
        at: &At<'_>,
        token: &[u8],
    ) -> Result<(), ParseError> {
        match self {
            // Int32 tokens are range-checked by `int`.
            Self::I32(b) => b.append_option(column.int(at, token)?.map(|v| v as i32)),
            Self::I64(b) => b.append_option(column.int(at, token)?),
            Self::Str(b) => b.append_option(column.str(at, token)?),
        }
        Ok(())
    }

    pub(crate) fn finish(self) -> Column {
        match self {
            Self::I32(b) => b.finish().into_column(),
            Self::I64(b) => b.finish().into_column(),
            Self::Str(b) => b.finish().into_column(),
        }
    }
}

impl RecordSink for FrameSink {
    fn begin(&mut self, layout: Arc<Layout>) {
        let columns = layout
            .columns
            .iter()
            .map(|c| ColumnBuilder::new(c, self.capacity))
            .collect();
        self.segments.push(FrameSegment {
            layout,
            columns,
            rows: 0,
        });
    }

    fn push(&mut self, at: &At<'_>, tokens: &[&[u8]], _utf8: bool) -> Result<(), ParseError> {
        let Some(seg) = self.segments.last_mut() else {
            return Err(at.error("record before any header"));
        };
        for ((builder, token), column) in
            seg.columns.iter_mut().zip(tokens).zip(&seg.layout.columns)
        {
            builder.append(column, at, token)?;
        }
        seg.rows += 1;
        Ok(())
    }
}

impl FrameSegment {
    fn finish(self, source: &str) -> Result<DataFrame, ParseError> {
        let columns: Vec<Column> = self
            .columns
            .into_iter()
            .map(ColumnBuilder::finish)
            .collect();
        DataFrame::new(self.rows, columns).map_err(|e| ParseError::whole(source, e.to_string()))
    }
}

/// Decimal integer with optional sign; `None` on anything else or on overflow.
pub(crate) fn parse_int(token: &[u8]) -> Option<i64> {
    let (neg, digits) = match token.split_first()? {
        (b'-', rest) => (true, rest),
        (b'+', rest) => (false, rest),
        _ => (false, token),
    };
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut v: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(i64::from(d - b'0'))?;
    }
    Some(if neg { -v } else { v })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn parse(text: &str) -> Result<ParsedObject, ParseError> {
        parse_text("t.log", text.as_bytes(), &ParseOptions::default())
    }

    #[test]
    fn ints() {
        assert_eq!(parse_int(b"42"), Some(42));
        assert_eq!(parse_int(b"-7"), Some(-7));
        assert_eq!(parse_int(b"4x"), None);
        assert_eq!(parse_int(b"99999999999999999999"), None);
        assert_eq!(parse_int(b""), None);
    }

    proptest::proptest! {
        /// Fields are the runs between separators, whatever the bytes: leading, trailing and
        /// repeated separators give no empty field.
        #[test]
        fn fields_split_on_runs_of_separators(
            line in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::strategy::Just(b' '),
                    proptest::strategy::Just(b'\t'),
                    proptest::strategy::Just(b'\r'),
                    proptest::num::u8::ANY,
                ],
                0..200,
            ),
        ) {
            let mut tokens = Vec::new();
            split_fields(&line, &mut tokens);
            let expected: Vec<&[u8]> = line
                .split(|b| matches!(b, b' ' | b'\t' | b'\r'))
                .filter(|t| !t.is_empty())
                .collect();
            proptest::prop_assert_eq!(tokens, expected);
        }

        /// A field ends at the first separator after its start, whatever bytes come before.
        #[test]
        fn fields_end_at_the_next_separator(
            line in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::strategy::Just(b' '),
                    proptest::strategy::Just(b'\r'),
                    0u8..0x21,
                    proptest::num::u8::ANY,
                    proptest::num::u8::ANY,
                ],
                0..80,
            ),
            start in 0usize..80,
        ) {
            let start = start.min(line.len());
            let expected = line[start..]
                .iter()
                .position(|&b| is_separator(b))
                .map_or(line.len(), |i| start + i);
            proptest::prop_assert_eq!(field_end(&line, start), expected);
        }
    }

    #[test]
    fn short_line_names_file_and_line() {
        let e = parse(
            "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status\n\
             2 1 eni-1 10.0.0.1 10.0.0.2 1 2 6 1 40 100 160 ACCEPT OK\n\
             2 1 eni-1 10.0.0.1 10.0.0.2 1 2 6 1 40 100 160 ACCEPT\n",
        )
        .unwrap_err();
        assert_eq!(e.line, Some(3));
        assert_eq!(e.to_string(), "t.log:3: 13 fields, the header names 14");
    }

    #[test]
    fn bad_numbers_are_errors() {
        let e = parse("2 1 eni-1 a b 1 2 6 lots 40 100 160 ACCEPT OK\n").unwrap_err();
        assert!(e.to_string().contains("field packets"), "{e}");
        let e = parse("2 1 eni-1 a b 99999999999 2 6 1 40 100 160 ACCEPT OK\n").unwrap_err();
        assert!(e.to_string().contains("32-bit"), "{e}");
    }

    #[test]
    fn headerless_needs_default_width_or_format() {
        let line = "3 eni-3 123 vpc-a subnet-b i-1 10.0.0.1 10.0.0.2 1 80 6 3 IPv4 10.0.0.1 10.0.0.2 ACCEPT OK\n";
        let e = parse(line).unwrap_err();
        assert!(e.to_string().contains("--format"), "{e}");
        let opts = ParseOptions::with_format(Some(
            "${version} ${interface-id} ${account-id} ${vpc-id} ${subnet-id} ${instance-id} ${srcaddr} ${dstaddr} \
             ${srcport} ${dstport} ${protocol} ${tcp-flags} ${type} ${pkt-srcaddr} ${pkt-dstaddr} ${action} ${log-status}",
        ))
        .unwrap();
        let p = parse_text("t", line.as_bytes(), &opts).unwrap();
        assert_eq!(p.records, 1);
        let e = parse_text("t", b"3 eni-3 123\n", &opts).unwrap_err();
        assert_eq!(e.to_string(), "t:1: 3 fields, --format names 17");
        let e = parse("2 1 eni-1 a b 1 2 6 1 40 100 160 ACCEPT OK\n2 1 eni-1\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "t.log:2: 3 fields, the default v2 format has 14"
        );
        assert!(ParseOptions::with_format(Some("version ACCOUNT")).is_err());
    }

    #[test]
    fn unknown_fields_are_strings_and_duplicates_rejected() {
        let p = parse("version future-field srcport\n2 abc 443\n").unwrap();
        let df = &p.frames[0];
        assert_eq!(
            df.column("future_field").unwrap().dtype(),
            &DataType::String
        );
        assert_eq!(df.column("srcport").unwrap().dtype(), &DataType::Int32);
        assert!(parse("version srcport srcport\n2 1 1\n").is_err());
    }

    #[test]
    fn gzip_is_detected_and_garbage_rejected() {
        use flate2::{Compression, write::GzEncoder};
        use std::io::Write;
        let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
        enc.write_all(b"2 1 eni-1 a b 1 2 6 1 40 100 160 ACCEPT OK\n")
            .unwrap();
        let gz = enc.finish().unwrap();
        let p = parse_object("x.gz", &gz, &ParseOptions::default()).unwrap();
        assert_eq!(p.records, 1);
        let e = parse_object("x.gz", &gz[..gz.len() / 2], &ParseOptions::default()).unwrap_err();
        assert!(e.to_string().starts_with("x.gz: gzip"), "{e}");
        let e = parse_object(
            "y.log.gz",
            &[0xff, 0xfe, 0x00, 0x80],
            &ParseOptions::default(),
        )
        .unwrap_err();
        assert_eq!(e.line, Some(1), "{e}");
        let e = parse_text(
            "z.log",
            b"version account-id\n2 \xff\xfe\n",
            &ParseOptions::default(),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "z.log:2: field account-id: not UTF-8 text (is this a flow log object?)"
        );
    }
}
