//! Combining records while they are parsed, before the polars merge — the "combiner" of a
//! map-reduce. A batch's records repeat their flow keys across objects (a long-lived flow is in
//! every file of its window), so each parsing thread folds records into a hash table on the raw
//! key tokens and polars merges only the tables' rows (about a tenth of the records on the
//! benchmark's generated sets; as many as the records when no key repeats). Doing the first fold here rather than in polars skips building a string column per
//! record, which profiling showed to be most of the merge's cost (docs/architecture.md).
//!
//! The fold is exactly the merge's: sum, min, max and bit-or per metric, nulls skipped, a group
//! of nulls null, and a count. Keys are compared as the bytes of their tokens, so two spellings of
//! one number (`80`, `+80`) stay apart here and meet in the polars group-by, which compares
//! typed values: the combiner only ever groups more finely than the merge, never differently.
//!
//! An object is staged whole before it is folded in: an object that fails on its last line adds
//! nothing, as quarantine requires.

use std::hash::BuildHasher;
use std::sync::Arc;

use hashbrown::{DefaultHashBuilder, HashTable};
use polars::prelude::*;
use polars_arrow::bitmap::{Bitmap, MutableBitmap};

use super::fields::{FieldType, MERGED_RECORDS, Role};
use super::parse::{
    At, ColumnBuilder, Layout, LayoutColumn, LineParser, ParseOptions, RecordSink, field_end,
    scan_int, skip_separators,
};
use crate::error::ParseError;
use crate::formats::decode::{DecodeLimits, stream_lines};

/// What one object added.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ObjectStats {
    pub records: u64,
    /// Bytes after decompression.
    pub decoded_bytes: u64,
}

/// Parses one raw object (gzip or plain text, as [`super::parse_object`]) and folds its records
/// into `combiner`; on error the combiner is left as it was. The text is decoded a chunk at a
/// time ([`stream_lines`]): what is held is the object's staged records, not its text.
pub fn combine_object(
    source: &str,
    raw: &[u8],
    opts: &ParseOptions,
    limits: &DecodeLimits,
    combiner: &mut Combiner,
) -> Result<ObjectStats, ParseError> {
    // The staging vectors are the combiner's, kept from object to object: growing fresh ones
    // for every object allocated over a megabyte per object, mostly in fresh pages.
    let mut staged = std::mem::take(&mut combiner.staged);
    staged.clear();
    let mut parser = LineParser::new(source, opts);
    let parsed = stream_lines(source, raw, limits, |lines| parser.feed(lines, &mut staged));
    if parsed.is_ok() {
        for segment in &staged.segments {
            combiner.fold(segment);
        }
    }
    if staged.capacity_bytes() <= MAX_KEPT_STAGING {
        combiner.staged = staged;
    }
    let decoded_bytes = parsed?;
    Ok(ObjectStats {
        records: parser.records,
        decoded_bytes,
    })
}

/// Records folded by flow key, one table per distinct header.
#[derive(Default)]
pub struct Combiner {
    tables: Vec<Table>,
    /// The vectors an object is staged in, reused by the next object.
    staged: Staged,
    /// What the first table made reserves.
    room: Room,
}

/// The distinct keys a combiner holds and their bytes ([`Combiner::folded_size`]): both depend
/// on which keys were folded in, not on their order or on how often each came, so a bound on
/// them decides the same way however a part's spilled files fell.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FoldedSize {
    pub entries: u64,
    pub bytes: u64,
}

/// Room a table reserves when it is made: entries, and bytes of their keys and metrics.
///
/// A table that grows by doubling copies itself into fresh memory at every step, and the kernel
/// zeroes each fresh page first: on traffic whose keys rarely repeat (every record a table
/// entry) that was 5% of the CPU time. Given the size the last batch's tables reached, a table
/// is made about that size at once; untouched room costs no resident memory, and it never
/// changes what a table holds, only where.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Room {
    pub entries: usize,
    pub key_bytes: usize,
    /// Metric slots (a table's metrics per entry, times its entries).
    pub metrics: usize,
}

impl Room {
    pub const NONE: Room = Room {
        entries: 0,
        key_bytes: 0,
        metrics: 0,
    };

    /// The bytes a table with this room holds, as [`Combiner::held_bytes`] counts them: five
    /// words per entry besides its metrics (as [`Table`] has them) and an index slot.
    pub fn bytes(&self) -> u64 {
        let words = self.entries.saturating_mul(5).saturating_add(self.metrics);
        held_bytes(self.key_bytes, words, self.entries)
    }

    /// This room, or as much of it in proportion as [`Room::bytes`] fits in `bytes`.
    pub fn within(self, bytes: u64) -> Room {
        let have = self.bytes();
        match have <= bytes {
            true => self,
            false => self.times(bytes, have),
        }
    }

    /// This room times `num / den`.
    pub fn times(self, num: u64, den: u64) -> Room {
        let scale = |n: usize| {
            let scaled = n as u128 * u128::from(num) / u128::from(den.max(1));
            usize::try_from(scaled).unwrap_or(usize::MAX)
        };
        Room {
            entries: scale(self.entries),
            key_bytes: scale(self.key_bytes),
            metrics: scale(self.metrics),
        }
    }
}

/// The most staging capacity kept for the next object: a larger object's is freed after it.
const MAX_KEPT_STAGING: usize = 16 << 20;

/// The most tables of one layout [`Combiner::absorb`] keeps side by side.
const MAX_TABLES_PER_LAYOUT: usize = 4;

/// One hash of keys for every table, so that an entry's hash holds in any of them.
static KEY_HASHER: std::sync::LazyLock<DefaultHashBuilder> =
    std::sync::LazyLock::new(DefaultHashBuilder::default);

impl Combiner {
    /// An empty combiner whose first table reserves `room` ([`Room`]).
    pub fn with_room(room: Room) -> Self {
        Self {
            room,
            ..Self::default()
        }
    }

    /// The size of its largest table: the room to give the next batch's tables.
    pub fn largest_table(&self) -> Room {
        self.tables
            .iter()
            .map(|t| Room {
                entries: t.counts.len(),
                key_bytes: t.keys.len(),
                metrics: t.metrics.len(),
            })
            .max_by_key(|r| r.entries)
            .unwrap_or_default()
    }

    /// Records folded in so far.
    pub fn records(&self) -> u64 {
        self.tables
            .iter()
            .map(|t| t.counts.iter().map(|&c| c as u64).sum::<u64>())
            .sum()
    }

    /// Distinct keys folded in, and what they are as data (key bytes and eight bytes for each
    /// metric, presence and count word): [`FoldedSize`]. Read from its tables' lengths, so it
    /// counts every entry: for a combiner that has not absorbed another (none taken out).
    pub fn folded_size(&self) -> FoldedSize {
        let mut size = FoldedSize::default();
        for t in &self.tables {
            size.entries += t.counts.len() as u64;
            size.bytes += (t.keys.len() + 8 * (t.metrics.len() + 2 * t.counts.len())) as u64;
        }
        size
    }

    /// Entries of every table, those [`Combiner::absorb`] took out not counted: the rows of a
    /// single-layout combiner, at least as many as its merged rows otherwise.
    pub fn live_entries(&self) -> u64 {
        self.tables.iter().map(|t| t.live().count() as u64).sum()
    }

    /// Bytes the folded keys hold (what the memory limit counts).
    pub fn held_bytes(&self) -> u64 {
        self.tables.iter().map(Table::held_bytes).sum()
    }

    /// One frame per layout (header), with its columns and `merged_records`: the input of
    /// [`crate::merge::merge_frames`].
    pub fn into_frames(self) -> PolarsResult<Vec<DataFrame>> {
        // The tables [`Combiner::absorb`] kept side by side become one frame: one chunk per
        // column, as polars encodes and gathers fastest.
        let mut layouts: Vec<Vec<Table>> = Vec::new();
        for table in self.tables {
            match layouts.iter_mut().find(|l| l[0].of_layout(&table.layout)) {
                Some(tables) => tables.push(table),
                None => layouts.push(vec![table]),
            }
        }
        layouts
            .iter()
            .map(|tables| Table::frame_of(tables))
            .collect()
    }

    /// Whether all records are of one layout (header), so that the tables hold the merge's
    /// rows: each key in one of them.
    pub fn single_layout(&self) -> bool {
        self.tables.windows(2).all(|w| w[0].of_layout(&w[1].layout))
    }

    /// Folds another combiner's tables into this one's. Keys are spelled one way per value, so
    /// when the tables hold one layout's records their rows are the merge's rows: no group-by is
    /// needed after it.
    ///
    /// A table is not inserted into one already here: each of its entries whose key one of them
    /// holds is folded into that one (a lookup, no copy), and the table, with those entries
    /// taken out, is kept beside them. When keys rarely repeat across threads that is most of a
    /// table's entries, which would otherwise be hashed, copied and grown into again. Each key is
    /// in one table only; past [`MAX_TABLES_PER_LAYOUT`] tables of a layout (so that a lookup
    /// does not probe every thread's table), the rest is inserted into the first. A combiner
    /// that has absorbed others is built into frames, or absorbs more; records are not folded
    /// into it (a fold looks in one table of a layout only).
    pub fn absorb(&mut self, other: Combiner) {
        for mut table in other.tables {
            let same: Vec<usize> = (0..self.tables.len())
                .filter(|&i| self.tables[i].of_layout(&table.layout))
                .collect();
            for &i in &same {
                self.tables[i].take_shared(&mut table);
            }
            match same.first() {
                Some(&first) if same.len() >= MAX_TABLES_PER_LAYOUT => {
                    self.tables[first].insert_rest(table)
                }
                _ => self.tables.push(table),
            }
        }
    }

    fn fold(&mut self, segment: &StagedSegment) {
        debug_assert!(
            self.tables
                .iter()
                .filter(|t| t.of_layout(&segment.layout))
                .count()
                <= 1,
            "records folded into a combiner that has absorbed others"
        );
        let table =
            match self.tables.iter().position(|t| {
                Arc::ptr_eq(&t.layout, &segment.layout) || t.of_layout(&segment.layout)
            }) {
                Some(i) => &mut self.tables[i],
                None => {
                    let room = std::mem::take(&mut self.room);
                    let table = Table::with_room(Arc::clone(&segment.layout), room);
                    self.tables.push(table);
                    let last = self.tables.len() - 1;
                    &mut self.tables[last]
                }
            };
        table.fold(segment);
    }
}

/// Spilling: a combiner's entries written to disk in hash parts and folded back in, part by
/// part, without leaving the combiner's own form. An entry is written as its key's length
/// (`u32`), its key, its presence bits, its count and its metrics, little-endian.
impl Combiner {
    /// Writes each table's entries to `file(part, layout)`, in `parts` parts by the hash of
    /// `level` ([`super::part_of`]): a function of the row an entry becomes, so a part holds
    /// every entry the merge would group with it, however the entries were spilled. Every table
    /// writes every part, an empty one too, so every part knows every layout (and the merged
    /// parts share one schema).
    pub(crate) fn spill_parts<W: std::io::Write>(
        self,
        parts: usize,
        level: u32,
        mut file: impl FnMut(usize, &Arc<Layout>) -> std::io::Result<W>,
    ) -> std::io::Result<()> {
        for table in self.tables {
            let mut files = (0..parts)
                .map(|p| file(p, &table.layout))
                .collect::<std::io::Result<Vec<W>>>()?;
            table.write_parts(&mut files, level)?;
            for f in &mut files {
                f.flush()?;
            }
        }
        Ok(())
    }

    /// Folds in entries [`Combiner::spill_parts`] wrote for a table of `layout`.
    pub(crate) fn fold_spilled(
        &mut self,
        layout: &Arc<Layout>,
        mut bytes: &[u8],
    ) -> Result<(), String> {
        let i = match self.tables.iter().position(|t| t.of_layout(layout)) {
            Some(i) => i,
            None => {
                self.tables.push(Table::new(Arc::clone(layout)));
                self.tables.len() - 1
            }
        };
        let table = &mut self.tables[i];
        let mut values = vec![0i64; table.roles.len()];
        let truncated = || "a spill file ends inside an entry".to_owned();
        while !bytes.is_empty() {
            let n = take_u32(&mut bytes).ok_or_else(truncated)? as usize;
            let key = bytes.get(..n).ok_or_else(truncated)?;
            bytes = &bytes[n..];
            let present = take_u64(&mut bytes).ok_or_else(truncated)?;
            let count = take_u64(&mut bytes).ok_or_else(truncated)? as i64;
            for v in &mut values {
                *v = take_u64(&mut bytes).ok_or_else(truncated)? as i64;
            }
            table.fold_entry(key, &values, present, count);
        }
        Ok(())
    }
}

fn take_u32(bytes: &mut &[u8]) -> Option<u32> {
    let (head, rest) = bytes.split_first_chunk::<4>()?;
    *bytes = rest;
    Some(u32::from_le_bytes(*head))
}

fn take_u64(bytes: &mut &[u8]) -> Option<u64> {
    let (head, rest) = bytes.split_first_chunk::<8>()?;
    *bytes = rest;
    Some(u64::from_le_bytes(*head))
}

/// The roles of a layout's metric columns, in column order: one slot each in a table's entries.
fn metric_roles(layout: &Layout) -> Vec<Role> {
    layout
        .columns
        .iter()
        .map(|c| c.role)
        .filter(|r| *r != Role::Key)
        .collect()
}

/// What the memory limit counts for a table's capacities: bytes of keys, 8-byte words, and
/// index slots of a usize and a control byte each.
fn held_bytes(key_bytes: usize, words: usize, index_slots: usize) -> u64 {
    let bytes = key_bytes as u128 + 8 * words as u128 + 9 * index_slots as u128;
    u64::try_from(bytes).unwrap_or(u64::MAX)
}

/// One object's records, checked and encoded, waiting to be folded in.
#[derive(Default)]
struct Staged {
    segments: Vec<StagedSegment>,
    /// Emptied segments whose vectors the next ones reuse.
    spare: Vec<StagedSegment>,
}

impl Staged {
    /// Empties it for the next object, keeping the vectors.
    fn clear(&mut self) {
        self.spare.append(&mut self.segments);
    }

    fn capacity_bytes(&self) -> usize {
        self.segments
            .iter()
            .chain(&self.spare)
            .map(|s| {
                s.keys.capacity()
                    + 8 * (s.key_ends.capacity() + s.metrics.capacity() + s.present.capacity())
            })
            .sum()
    }
}

struct StagedSegment {
    layout: Arc<Layout>,
    /// Metrics per record (at most 64, one presence bit each).
    width: usize,
    /// Encoded keys, back to back; record `i`'s ends at `key_ends[i]`.
    keys: Vec<u8>,
    key_ends: Vec<usize>,
    metrics: Vec<i64>,
    present: Vec<u64>,
}

impl RecordSink for Staged {
    fn begin(&mut self, layout: Arc<Layout>) {
        let width = metric_roles(&layout).len();
        let segment = match self.spare.pop() {
            Some(mut s) => {
                s.layout = layout;
                s.width = width;
                s.keys.clear();
                s.key_ends.clear();
                s.metrics.clear();
                s.present.clear();
                s
            }
            None => StagedSegment {
                layout,
                width,
                keys: Vec::new(),
                key_ends: Vec::new(),
                metrics: Vec::new(),
                present: Vec::new(),
            },
        };
        self.segments.push(segment);
    }

    fn push(&mut self, at: &At<'_>, tokens: &[&[u8]], utf8: bool) -> Result<(), ParseError> {
        let Some(seg) = self.segments.last_mut() else {
            return Err(at.error("record before any header"));
        };
        if seg.width > 64 {
            return Err(at.error("more than 64 aggregated fields"));
        }
        let mut present = 0u64;
        let mut slot = 0;
        for (column, token) in seg.layout.columns.iter().zip(tokens) {
            match (column.role, column.ty) {
                (Role::Key, FieldType::String) => {
                    if !utf8 {
                        column.str(at, token)?;
                    }
                    encode_token(&mut seg.keys, token);
                }
                (Role::Key, _) => {
                    // One spelling per number (`+80`, `080` → `80`), so that the combiner groups
                    // exactly as the merge's typed group-by would.
                    match column.int(at, token)? {
                        Some(v) if !is_canonical_int(token) => {
                            encode_token(&mut seg.keys, v.to_string().as_bytes())
                        }
                        _ => encode_token(&mut seg.keys, token),
                    }
                }
                _ => {
                    let v = column.int(at, token)?;
                    if v.is_some() {
                        present |= 1 << slot;
                    }
                    seg.metrics.push(v.unwrap_or(0));
                    slot += 1;
                }
            }
        }
        seg.key_ends.push(seg.keys.len());
        seg.present.push(present);
        Ok(())
    }

    /// Stages a line in one pass when every field is one [`scan_int`] reads (or a string of a
    /// valid UTF-8 text) and the line has the layout's field count; `None`, with nothing kept,
    /// otherwise. What it stages is what [`RecordSink::push`] stages for the line's fields.
    fn push_line(&mut self, line: &[u8], utf8: bool) -> Option<()> {
        let seg = self.segments.last_mut()?;
        if seg.width > 64 || !utf8 {
            return None;
        }
        let (keys, metrics) = (seg.keys.len(), seg.metrics.len());
        match stage_fields(seg, line) {
            Some(present) => {
                seg.key_ends.push(seg.keys.len());
                seg.present.push(present);
                Some(())
            }
            None => {
                seg.keys.truncate(keys);
                seg.metrics.truncate(metrics);
                None
            }
        }
    }
}

/// Stages a line's fields into `seg`'s keys and metrics, giving the presence bits; `None` at
/// the first field it does not read, or when the line has more or fewer fields than the layout.
fn stage_fields(seg: &mut StagedSegment, line: &[u8]) -> Option<u64> {
    let (mut pos, mut present, mut slot) = (skip_separators(line, 0), 0u64, 0);
    for column in &seg.layout.columns {
        if pos == line.len() {
            return None;
        }
        let end = match (column.role, column.ty) {
            (Role::Key, ty) => {
                let end = match ty {
                    FieldType::String => field_end(line, pos),
                    _ => scan_int(line, pos, ty)?.1,
                };
                encode_field(&mut seg.keys, line, pos, end);
                end
            }
            (_, ty) => {
                let (v, end) = scan_int(line, pos, ty)?;
                if v.is_some() {
                    present |= 1 << slot;
                }
                seg.metrics.push(v.unwrap_or(0));
                slot += 1;
                end
            }
        };
        pos = skip_separators(line, end);
    }
    (pos == line.len()).then_some(present)
}

/// Whether a number's token is how the number prints (`0`, `80`, `-1`): no sign, no leading zero.
fn is_canonical_int(token: &[u8]) -> bool {
    matches!(token, [b'0'] | [b'1'..=b'9', ..] | [b'-', b'1'..=b'9', ..])
}

/// Appends a token, length first (LEB128), so that no two token lists encode alike.
fn encode_token(out: &mut Vec<u8>, token: &[u8]) {
    let mut n = token.len();
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out.extend_from_slice(token);
}

/// Appends `line[start..end]` as [`encode_token`] does. A short field with [`COPY`] bytes of
/// the line from its start is copied as that many, then cut: a copy of a known length is a few
/// vector moves where one of a field's own length is a call to `memcpy`.
#[inline]
fn encode_field(out: &mut Vec<u8>, line: &[u8], start: usize, end: usize) {
    let n = end - start;
    match line
        .get(start..start + COPY)
        .and_then(|c| <&[u8; COPY]>::try_from(c).ok())
    {
        Some(chunk) if n <= COPY => {
            out.push(n as u8);
            out.extend_from_slice(chunk);
            out.truncate(out.len() - (COPY - n));
        }
        _ => encode_token(out, &line[start..end]),
    }
}

/// The bytes [`encode_field`] copies at once: as long as most key fields (an interface id is 21).
const COPY: usize = 32;

/// The tokens of an encoded key, in order.
fn decode_tokens(key: &[u8]) -> impl Iterator<Item = &[u8]> {
    token_ranges(key).map(move |r| &key[r])
}

/// Where the tokens of an encoded key are in it, in order.
fn token_ranges(key: &[u8]) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
    let mut at = 0;
    std::iter::from_fn(move || {
        if at >= key.len() {
            return None;
        }
        let (mut n, mut shift) = (0usize, 0);
        while let Some(&b) = key.get(at) {
            at += 1;
            n |= usize::from(b & 0x7f) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                break;
            }
        }
        let start = at;
        at = (start + n).min(key.len());
        Some(start..at)
    })
}

/// Entry `n`'s key in keys stored back to back, each ending at `ends[n]`.
fn nth_key<'k>(keys: &'k [u8], ends: &[usize], n: usize) -> &'k [u8] {
    &keys[key_range(ends, n)]
}

/// Where entry `n`'s key is in keys stored back to back, each ending at `ends[n]`.
fn key_range(ends: &[usize], n: usize) -> std::ops::Range<usize> {
    let start = match n {
        0 => 0,
        _ => ends[n - 1],
    };
    start..ends[n]
}

/// The folded records of one layout: a hash table on the encoded key, entries in columns.
struct Table {
    layout: Arc<Layout>,
    roles: Vec<Role>,
    index: HashTable<usize>,
    hashes: Vec<u64>,
    keys: Vec<u8>,
    key_ends: Vec<usize>,
    metrics: Vec<i64>,
    present: Vec<u64>,
    counts: Vec<i64>,
}

impl Table {
    fn new(layout: Arc<Layout>) -> Self {
        Self::with_room(layout, Room::NONE)
    }

    fn with_room(layout: Arc<Layout>, room: Room) -> Self {
        Self {
            roles: metric_roles(&layout),
            layout,
            index: HashTable::with_capacity(room.entries),
            hashes: Vec::with_capacity(room.entries),
            keys: Vec::with_capacity(room.key_bytes),
            key_ends: Vec::with_capacity(room.entries),
            metrics: Vec::with_capacity(room.metrics),
            present: Vec::with_capacity(room.entries),
            counts: Vec::with_capacity(room.entries),
        }
    }

    fn held_bytes(&self) -> u64 {
        let words = self.key_ends.capacity()
            + self.metrics.capacity()
            + self.present.capacity()
            + self.counts.capacity()
            + self.hashes.capacity();
        held_bytes(self.keys.capacity(), words, self.index.capacity())
    }

    fn key(&self, entry: usize) -> &[u8] {
        nth_key(&self.keys, &self.key_ends, entry)
    }

    fn fold(&mut self, seg: &StagedSegment) {
        let width = self.roles.len();
        for record in 0..seg.key_ends.len() {
            let key = nth_key(&seg.keys, &seg.key_ends, record);
            let values = &seg.metrics[record * width..(record + 1) * width];
            self.fold_entry(key, values, seg.present[record], 1);
        }
    }

    /// Whether this table holds records of `layout` (the same header).
    fn of_layout(&self, layout: &Layout) -> bool {
        self.layout.names == layout.names
    }

    /// Inserts `other`'s entries not taken out, none of whose keys this table holds (as
    /// [`Table::take_shared`] leaves them): no lookup is needed.
    fn insert_rest(&mut self, other: Table) {
        let width = self.roles.len();
        for entry in other.live() {
            let values = &other.metrics[entry * width..(entry + 1) * width];
            self.insert(
                other.hashes[entry],
                other.key(entry),
                values,
                other.present[entry],
                other.counts[entry],
            );
        }
    }

    /// Folds into this table each of `other`'s entries whose key it holds, and takes those out
    /// of `other` (a count of 0 marks an entry taken out).
    fn take_shared(&mut self, other: &mut Table) {
        let width = self.roles.len();
        for entry in 0..other.counts.len() {
            if other.counts[entry] == 0 {
                continue;
            }
            let Some(mine) = self.find(other.hashes[entry], other.key(entry)) else {
                continue;
            };
            let values = &other.metrics[entry * width..(entry + 1) * width];
            self.fold_into(mine, values, other.present[entry], other.counts[entry]);
            other.counts[entry] = 0;
        }
    }

    /// The entries not taken out, in order.
    fn live(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.counts.len()).filter(|&e| self.counts[e] != 0)
    }

    /// The entry holding `key`, if one does.
    fn find(&self, hash: u64, key: &[u8]) -> Option<usize> {
        let (keys, key_ends, counts) = (&self.keys, &self.key_ends, &self.counts);
        self.index
            .find(hash, |&e| {
                counts[e] != 0 && nth_key(keys, key_ends, e) == key
            })
            .copied()
    }

    /// Folds one record, or one entry of `count` records, into the table.
    fn fold_entry(&mut self, key: &[u8], values: &[i64], present: u64, count: i64) {
        let hash = KEY_HASHER.hash_one(key);
        match self.find(hash, key) {
            Some(entry) => self.fold_into(entry, values, present, count),
            None => self.insert(hash, key, values, present, count),
        }
    }

    /// A new entry, for a key the table does not hold.
    fn insert(&mut self, hash: u64, key: &[u8], values: &[i64], present: u64, count: i64) {
        let entry = self.counts.len();
        self.keys.extend_from_slice(key);
        self.key_ends.push(self.keys.len());
        self.metrics.extend_from_slice(values);
        self.present.push(present);
        self.counts.push(count);
        self.hashes.push(hash);
        let hashes = &self.hashes;
        self.index.insert_unique(hash, entry, |&e| hashes[e]);
    }

    /// Folds metrics of `count` records into `entry`.
    fn fold_into(&mut self, entry: usize, values: &[i64], present: u64, count: i64) {
        let width = self.roles.len();
        let acc = &mut self.metrics[entry * width..(entry + 1) * width];
        let had = self.present[entry];
        for (slot, ((a, &v), role)) in acc.iter_mut().zip(values).zip(&self.roles).enumerate() {
            let bit = 1u64 << slot;
            if present & bit == 0 {
                continue;
            }
            *a = if had & bit == 0 {
                v
            } else {
                match role {
                    Role::Sum => a.wrapping_add(v),
                    Role::Min => (*a).min(v),
                    Role::Max => (*a).max(v),
                    Role::BitOr => *a | v,
                    Role::Key => *a,
                }
            };
        }
        self.present[entry] = had | present;
        self.counts[entry] += count;
    }

    /// The layout's key columns, in the order of an encoded key's tokens.
    fn key_columns(&self) -> Vec<&LayoutColumn> {
        self.layout
            .columns
            .iter()
            .filter(|c| c.role == Role::Key)
            .collect()
    }

    /// Writes every entry to `files[part]`, its part at `level` as [`super::part_of`] gives it.
    fn write_parts<W: std::io::Write>(&self, files: &mut [W], level: u32) -> std::io::Result<()> {
        let key_columns = self.key_columns();
        // Where each of the part columns is among the key's tokens, if the layout has it.
        let positions: Vec<Option<usize>> = super::PART_COLUMNS
            .iter()
            .map(|name| {
                key_columns
                    .iter()
                    .position(|c| c.name == *name && c.ty == FieldType::String)
            })
            .collect();
        // Every key column by name, for the levels below the first.
        let mut by_name: Vec<(usize, &str)> = key_columns
            .iter()
            .enumerate()
            .map(|(i, c)| (i, c.name.as_str()))
            .collect();
        by_name.sort_by_key(|&(_, name)| name);
        let width = self.roles.len();
        let mut tokens: Vec<&[u8]> = Vec::new();
        let mut scratch = Vec::new();
        for entry in self.live() {
            let key = self.key(entry);
            tokens.clear();
            tokens.extend(decode_tokens(key));
            // `-` is the frame's null.
            let value = |i: usize| tokens.get(i).copied().filter(|t| *t != b"-");
            let part = match level {
                0 => super::part_of(positions.iter().map(|p| p.and_then(value))),
                _ => super::sub_part_of(
                    by_name.iter().map(|&(i, name)| (name, value(i))),
                    level,
                    &mut scratch,
                ),
            };
            let f = &mut files[part % files.len()];
            let n = u32::try_from(key.len()).map_err(|_| std::io::ErrorKind::InvalidData)?;
            f.write_all(&n.to_le_bytes())?;
            f.write_all(key)?;
            f.write_all(&self.present[entry].to_le_bytes())?;
            f.write_all(&self.counts[entry].to_le_bytes())?;
            for v in &self.metrics[entry * width..(entry + 1) * width] {
                f.write_all(&v.to_le_bytes())?;
            }
        }
        Ok(())
    }

    /// The rows of `tables`, all of one layout (at least one table): their entries in order,
    /// those taken out skipped.
    fn frame_of(tables: &[Table]) -> PolarsResult<DataFrame> {
        let first = &tables[0];
        let live: Vec<(&Table, usize)> = tables
            .iter()
            .flat_map(|t| t.live().map(move |e| (t, e)))
            .collect();
        let rows = live.len();
        let width = first.roles.len();
        let key_columns = first.key_columns();
        let mut keys: Vec<KeyColumn> = key_columns
            .iter()
            .map(|c| KeyColumn::new(c, rows))
            .collect();
        let mut row = 0;
        for table in tables {
            // Key tokens were checked as UTF-8 when staged, and the lengths before them are
            // ASCII bytes (below 128), so a table's keys are one valid text unless a token is
            // 128 bytes or longer: checked once here, a string token is then a slice of that
            // text rather than checked again (which was a tenth of building the columns).
            let text = std::str::from_utf8(&table.keys).ok();
            for entry in table.live() {
                row += 1;
                let range = key_range(&table.key_ends, entry);
                let key_text = text.and_then(|t| t.get(range.clone()));
                let key = &table.keys[range];
                let mut tokens = token_ranges(key);
                // Tokens were checked when staged: a failure here is a bug, reported as such.
                let at = At {
                    source: "combiner entry",
                    line: row,
                };
                for (builder, column) in keys.iter_mut().zip(&key_columns) {
                    let token = tokens.next();
                    let value = key_text.zip(token.clone()).and_then(|(k, r)| k.get(r));
                    let token = token.map_or(&b"-"[..], |r| &key[r]);
                    let bad = |e: ParseError| polars_err!(ComputeError: "{e}");
                    match (builder, value) {
                        // Int32 tokens are range-checked by `LayoutColumn::int`.
                        (KeyColumn::I32(values), _) => {
                            values.push(column.int(&at, token).map_err(bad)?.map(|v| v as i32))
                        }
                        (KeyColumn::I64(values), _) => {
                            values.push(column.int(&at, token).map_err(bad)?)
                        }
                        (KeyColumn::Text(ColumnBuilder::Str(b)), Some(v)) => {
                            b.append_option((v != "-").then_some(v))
                        }
                        (KeyColumn::Text(b), _) => b.append(column, &at, token).map_err(bad)?,
                    }
                }
            }
        }
        // The metrics, a vector per slot, in one pass over the entries (a slot's value under a
        // missing metric is 0, masked by the column's validity).
        let mut metrics: Vec<Vec<i64>> = (0..width).map(|_| Vec::with_capacity(rows)).collect();
        let mut all_present = u64::MAX;
        for &(t, e) in &live {
            all_present &= t.present[e];
            for (column, &v) in metrics
                .iter_mut()
                .zip(&t.metrics[e * width..(e + 1) * width])
            {
                column.push(v);
            }
        }
        let mut metrics = metrics.into_iter();
        let mut keys = keys.into_iter();
        let mut columns: Vec<Column> = Vec::with_capacity(first.layout.columns.len() + 1);
        let mut slot = 0;
        for column in &first.layout.columns {
            if column.role == Role::Key {
                columns.extend(keys.next().map(|k| k.finish(column)));
                continue;
            }
            let bit = 1u64 << slot;
            let values = metrics.next().unwrap_or_default();
            let validity = (all_present & bit == 0).then(|| {
                Bitmap::from_trusted_len_iter(live.iter().map(|&(t, e)| t.present[e] & bit != 0))
            });
            let name = column.name.clone();
            columns.push(match column.ty {
                // Metrics were parsed as 32-bit values; min, max and bit-or stay in range.
                FieldType::Int32 => {
                    let values = values.into_iter().map(|v| v as i32).collect();
                    Int32Chunked::from_vec(name, values)
                        .with_validity(validity)
                        .into_column()
                }
                _ => Int64Chunked::from_vec(name, values)
                    .with_validity(validity)
                    .into_column(),
            });
            slot += 1;
        }
        let counts: Vec<i64> = live.iter().map(|&(t, e)| t.counts[e]).collect();
        columns.push(Int64Chunked::from_vec(MERGED_RECORDS.into(), counts).into_column());
        DataFrame::new(rows, columns)
    }
}

/// A key column of [`Table::frame_of`] as it is built: a number column as plain values (most
/// have no nulls, and polars' nullable builders cost more per row than the parse), text through
/// polars' builder.
enum KeyColumn {
    I32(NullableInts<Int32Type>),
    I64(NullableInts<Int64Type>),
    Text(ColumnBuilder),
}

impl KeyColumn {
    fn new(column: &LayoutColumn, rows: usize) -> Self {
        match column.ty {
            FieldType::Int32 => Self::I32(NullableInts::with_capacity(rows)),
            FieldType::Int64 => Self::I64(NullableInts::with_capacity(rows)),
            FieldType::String => Self::Text(ColumnBuilder::new(column, rows)),
        }
    }

    fn finish(self, column: &LayoutColumn) -> Column {
        match self {
            Self::I32(ints) => ints.finish(column),
            Self::I64(ints) => ints.finish(column),
            Self::Text(builder) => builder.finish(),
        }
    }
}

/// Numbers and the rows among them that are null (a null's slot holds 0).
struct NullableInts<T: PolarsNumericType> {
    values: Vec<T::Native>,
    nulls: Vec<usize>,
}

impl<T: PolarsNumericType> NullableInts<T> {
    fn with_capacity(rows: usize) -> Self {
        Self {
            values: Vec::with_capacity(rows),
            nulls: Vec::new(),
        }
    }

    fn push(&mut self, value: Option<T::Native>) {
        if value.is_none() {
            self.nulls.push(self.values.len());
        }
        self.values.push(value.unwrap_or_default());
    }

    /// The column `column` of these values.
    fn finish(self, column: &LayoutColumn) -> Column {
        let validity = self.validity();
        ChunkedArray::<T>::from_vec(column.name.clone(), self.values)
            .with_validity(validity)
            .into_column()
    }

    /// The validity of the values, `None` when none is null.
    fn validity(&self) -> Option<Bitmap> {
        if self.nulls.is_empty() {
            return None;
        }
        let mut valid = MutableBitmap::from_len_set(self.values.len());
        for &row in &self.nulls {
            valid.set(row, false);
        }
        Some(valid.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::vpcflow::parse_text;
    use crate::merge::{Finish, merge_frames};

    const HEADER: &str = "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status tcp-flags";

    fn combine(texts: &[&str]) -> Combiner {
        combine_into(Combiner::default(), texts)
    }

    fn combine_into(mut c: Combiner, texts: &[&str]) -> Combiner {
        for (i, t) in texts.iter().enumerate() {
            combine_object(
                &format!("o{i}"),
                t.as_bytes(),
                &ParseOptions::default(),
                &DecodeLimits::default(),
                &mut c,
            )
            .unwrap_or_else(|e| panic!("{e}"));
        }
        c
    }

    /// A sink with `header`'s layout begun, as the parser leaves it after the header line.
    fn staged_after(header: &str) -> Staged {
        let mut staged = Staged::default();
        LineParser::new("t", &ParseOptions::default())
            .feed(format!("{header}\n").as_bytes(), &mut staged)
            .unwrap();
        assert_eq!(staged.segments.len(), 1);
        staged
    }

    fn staged_fields(s: &Staged) -> (Vec<u8>, Vec<usize>, Vec<i64>, Vec<u64>) {
        let seg = &s.segments[0];
        (
            seg.keys.clone(),
            seg.key_ends.clone(),
            seg.metrics.clone(),
            seg.present.clone(),
        )
    }

    /// A field as flow logs spell them, and as they might: numbers in every spelling, nulls,
    /// text, bytes that are not UTF-8.
    fn field() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        prop_oneof![
            Just(b"-".to_vec()),
            Just(b"0".to_vec()),
            "[1-9][0-9]{0,20}".prop_map(String::into_bytes),
            "[+-]?0?[0-9]{1,6}".prop_map(String::into_bytes),
            "[A-Za-z0-9.:-]{1,24}".prop_map(String::into_bytes),
            proptest::collection::vec(any::<u8>(), 1..6),
        ]
    }

    /// The fields of a `HEADER` line: mostly what its columns hold, sometimes anything; now and
    /// then one too many or too few.
    fn record() -> impl proptest::strategy::Strategy<Value = Vec<Vec<u8>>> {
        use proptest::prelude::*;
        let text = [1, 2, 3, 4, 12, 13];
        let columns: Vec<_> = (0..15)
            .map(|i| {
                let typical = match text.contains(&i) {
                    true => "[A-Za-z0-9.:-]{1,21}".prop_map(String::into_bytes).boxed(),
                    false => prop_oneof![
                        4 => "[1-9][0-9]{0,10}".prop_map(String::into_bytes),
                        1 => Just(b"-".to_vec()),
                        1 => Just(b"0".to_vec()),
                    ]
                    .boxed(),
                };
                prop_oneof![12 => typical, 1 => field()]
            })
            .collect();
        (columns, 0..8usize, field()).prop_map(|(mut fields, n, extra)| {
            match n {
                0 => fields.push(extra),
                1 => {
                    fields.pop();
                }
                _ => {}
            }
            fields
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        /// The one-pass path stages exactly what splitting and `push` stage, or nothing.
        #[test]
        fn the_fast_path_stages_what_push_stages(
            fields in record(),
            seps in proptest::collection::vec("[ \t\r]{1,3}", 17),
            lead in "[ \t]{0,1}",
            trail in "[ \t\r]{0,2}",
        ) {
            let mut line = lead.into_bytes();
            for (i, (f, sep)) in fields.iter().zip(&seps).enumerate() {
                if i > 0 {
                    line.extend_from_slice(sep.as_bytes());
                }
                line.extend_from_slice(f);
            }
            line.extend_from_slice(trail.as_bytes());
            let utf8 = std::str::from_utf8(&line).is_ok();
            let mut fast = staged_after(HEADER);
            let read = fast.push_line(&line, utf8);
            let mut general = staged_after(HEADER);
            let mut tokens = Vec::new();
            super::super::parse::split_fields(&line, &mut tokens);
            let pushed = match tokens.len() == 15 {
                true => general.push(&At { source: "t", line: 2 }, &tokens, utf8),
                false => Err(ParseError::whole("t", "field count")),
            };
            match read {
                Some(()) => {
                    proptest::prop_assert!(pushed.is_ok(), "{:?}", pushed);
                    proptest::prop_assert_eq!(staged_fields(&fast), staged_fields(&general));
                }
                None => {
                    proptest::prop_assert_eq!(staged_fields(&fast), staged_fields(&staged_after(HEADER)));
                }
            }
        }
    }

    #[test]
    fn the_fast_path_reads_plain_records_and_leaves_the_rest() {
        let mut s = staged_after(HEADER);
        let line = b"2 123 eni-1 10.0.0.1 10.0.0.2 443 49152 6 10 840 1600000000 1600000060 ACCEPT OK 19\r";
        assert_eq!(s.push_line(line, true), Some(()));
        assert_eq!(
            s.segments[0].metrics,
            vec![10, 840, 1600000000, 1600000060, 19]
        );
        assert_eq!(s.segments[0].present, vec![0b11111]);
        // Another spelling, a field too many or too few, text that is not UTF-8, a number
        // past 32 bits: left to the general path.
        for line in [
            &b"2 123 eni-1 a b +443 1 6 1 1 1 1 ACCEPT OK 0"[..],
            b"2 123 eni-1 a b 443 1 6 1 1 1 1 ACCEPT OK 0 extra",
            b"2 123 eni-1 a b 443 1 6 1 1 1 1 ACCEPT OK",
            b"2 123 eni-1 a b 4294967296 1 6 1 1 1 1 ACCEPT OK 0",
        ] {
            assert_eq!(
                s.push_line(line, true),
                None,
                "{}",
                String::from_utf8_lossy(line)
            );
        }
        assert_eq!(s.push_line(line, false), None);
        assert_eq!(
            s.segments[0].key_ends.len(),
            1,
            "nothing kept of what was refused"
        );
    }

    #[test]
    fn tokens_round_trip_whatever_their_length() {
        let long = vec![b'x'; 300];
        let mut out = Vec::new();
        for t in [&b"a"[..], b"", &long, b"-"] {
            encode_token(&mut out, t);
        }
        let back: Vec<&[u8]> = decode_tokens(&out).collect();
        assert_eq!(back, vec![&b"a"[..], b"", &long[..], b"-"]);
    }

    #[test]
    fn folds_like_the_merge_nulls_included() {
        let a = format!(
            "{HEADER}\n\
             2 1 eni-1 10.0.0.1 10.0.0.2 1 2 6 10 100 50 60 ACCEPT OK 2\n\
             2 1 eni-1 10.0.0.1 10.0.0.2 1 2 6 - - 40 70 ACCEPT OK 16\n\
             2 1 eni-2 - - - - - - - 40 70 - NODATA -\n"
        );
        let b = format!(
            "{HEADER}\n\
             2 1 eni-1 10.0.0.1 10.0.0.2 1 2 6 5 7 45 65 ACCEPT OK 1\n\
             2 1 eni-2 - - - - - - - 30 80 - NODATA -\n"
        );
        let c = combine(&[&a, &b]);
        assert_eq!(c.records(), 5);
        let combined = merge_frames(c.into_frames().unwrap(), Finish::Final).unwrap();
        let plain: Vec<DataFrame> = [&a, &b]
            .iter()
            .flat_map(|t| {
                parse_text("t", t.as_bytes(), &ParseOptions::default())
                    .unwrap()
                    .frames
            })
            .collect();
        let plain = merge_frames(plain, Finish::Final).unwrap();
        assert!(combined.equals_missing(&plain), "{combined}\n{plain}");
        assert_eq!(combined.height(), 2);
        let packets = combined.column("packets").unwrap().i64().unwrap();
        assert_eq!(packets.get(0), Some(15));
        assert_eq!(packets.get(1), None, "a group of nulls stays null");
        let flags = combined.column("tcp_flags").unwrap().i32().unwrap();
        assert_eq!(flags.get(0), Some(19));
    }

    /// String columns come out as the plain merge's whether a table's keys are one text (the
    /// slice path) or not (a token of 128 bytes or more has a length byte that is not ASCII,
    /// and every token is then checked on its own): multi-byte text and nulls included.
    #[test]
    fn string_columns_are_the_merges_with_long_tokens_or_without() {
        let long = format!("eni-{}", "é".repeat(100));
        for eni in ["eni-ü", long.as_str()] {
            let a = format!(
                "{HEADER}\n\
                 2 1 {eni} 10.0.0.1 10.0.0.2 1 2 6 10 100 50 60 ACCEPT OK 2\n\
                 2 1 eni-2 - - - - - - - 40 70 - NODATA -\n\
                 2 1 {eni} 10.0.0.1 10.0.0.2 1 2 6 5 7 45 65 ACCEPT OK 1\n"
            );
            let c = combine(&[&a]);
            let combined = merge_frames(c.into_frames().unwrap(), Finish::Final).unwrap();
            let plain = parse_text("t", a.as_bytes(), &ParseOptions::default())
                .unwrap()
                .frames;
            let plain = merge_frames(plain, Finish::Final).unwrap();
            assert!(combined.equals_missing(&plain), "{combined}\n{plain}");
            let enis = combined.column("interface_id").unwrap().str().unwrap();
            assert_eq!(enis.iter().flatten().filter(|e| *e == eni).count(), 1);
            let srcaddr = combined.column("srcaddr").unwrap().str().unwrap();
            assert_eq!(srcaddr.null_count(), 1, "`-` is null on either path");
        }
    }

    #[test]
    fn a_failed_object_adds_nothing() {
        let mut c = combine(&[&format!(
            "{HEADER}\n2 1 eni-1 a b 1 2 6 1 1 1 1 ACCEPT OK 0\n"
        )]);
        let bad = format!(
            "{HEADER}\n2 1 eni-1 a b 1 2 6 1 1 1 1 ACCEPT OK 0\n2 1 eni-1 a b 1 2 6 1 1 1 1 ACCEPT\n"
        );
        let e = combine_object(
            "bad.log",
            bad.as_bytes(),
            &ParseOptions::default(),
            &DecodeLimits::default(),
            &mut c,
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "bad.log:3: 13 fields, the header names 15");
        assert_eq!(c.records(), 1);
        let raw = b"version srcaddr\n2 \xff\n2 b\n";
        let e = combine_object(
            "u.log",
            raw,
            &ParseOptions::default(),
            &DecodeLimits::default(),
            &mut c,
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("u.log:2: field srcaddr: not UTF-8"),
            "{e}"
        );
        assert_eq!(c.records(), 1);
        // The staging vectors the failed objects left are reused, and hold nothing of theirs.
        combine_object(
            "good.log",
            format!("{HEADER}\n2 1 eni-1 a b 1 2 6 1 1 1 1 ACCEPT OK 0\n").as_bytes(),
            &ParseOptions::default(),
            &DecodeLimits::default(),
            &mut c,
        )
        .unwrap();
        assert_eq!(c.records(), 2);
        let frames = c.into_frames().unwrap();
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].height(), 1);
    }

    #[test]
    fn different_headers_get_their_own_tables() {
        let c = combine(&[
            &format!("{HEADER}\n2 1 eni-1 a b 1 2 6 1 1 1 1 ACCEPT OK 0\n"),
            "version srcaddr future-field\n2 a x\n2 a x\n",
        ]);
        let frames = c.into_frames().unwrap();
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[1].height(), 1);
        assert_eq!(
            frames[1].column("future_field").unwrap().dtype(),
            &DataType::String
        );
        assert_eq!(
            frames[1]
                .column(MERGED_RECORDS)
                .unwrap()
                .i64()
                .unwrap()
                .get(0),
            Some(2)
        );
    }

    #[test]
    fn room_changes_where_a_table_is_not_what_it_holds() {
        let first = format!("{HEADER}\n2 1 eni-1 a b 1 2 6 1 1 1 1 ACCEPT OK 0\n");
        let first = format!("{first}2 1 eni-1 c d 1 2 6 1 1 1 1 ACCEPT OK 0\n");
        let second = format!("{HEADER}\n2 1 eni-1 a b 1 2 6 5 5 0 9 ACCEPT OK 2\n");
        let texts = [first.as_str(), second.as_str()];
        let plain = combine(&texts);
        let grown = plain.largest_table();
        assert_eq!(grown.entries, 2, "two keys");
        assert_eq!(grown.metrics, 2 * plain.tables[0].roles.len());
        assert!(grown.key_bytes > 0);

        let room = Room {
            entries: 10_000,
            key_bytes: 500_000,
            metrics: 60_000,
        };
        let roomy = combine_into(Combiner::with_room(room), &texts);
        // The table holds the room, and the same entries as without it.
        assert!(
            roomy.held_bytes() >= room.bytes() * 9 / 10,
            "{}",
            roomy.held_bytes()
        );
        assert!(roomy.held_bytes() > 10 * plain.held_bytes());
        assert_eq!(roomy.largest_table(), grown);
        assert_eq!(roomy.into_frames().unwrap(), plain.into_frames().unwrap());
    }

    #[test]
    fn room_is_scaled_to_fit() {
        let room = Room {
            entries: 1 << 20,
            key_bytes: 64 << 20,
            metrics: 6 << 20,
        };
        assert_eq!(room.within(u64::MAX), room);
        assert_eq!(room.within(room.bytes()), room);
        for bytes in [0, 1 << 10, 1 << 20, room.bytes() / 2] {
            let fit = room.within(bytes);
            // Each part is rounded down, so the scaled room never counts more than it may.
            assert!(fit.bytes() <= bytes + 72, "{fit:?} in {bytes}");
            assert!(fit.entries < room.entries);
        }
        let half = room.times(1, 2);
        assert_eq!(half.entries, 1 << 19);
        assert_eq!(half.key_bytes, 32 << 20);
        assert_eq!(room.times(3, 2).entries, 3 << 19);
        assert_eq!(room.times(1, 0), room, "no division by zero");
    }
}
