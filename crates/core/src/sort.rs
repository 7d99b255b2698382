//! The output's row order, computed without polars' general multi-column sort.
//!
//! polars sorts a frame by several columns by encoding every row's key columns into one byte
//! string and comparing those (`memcmp` on ~100-byte rows reached through an index): on traffic
//! whose flows rarely repeat that was a fifth of a batch's CPU time (docs/architecture.md, "Where
//! the time goes"). Here each sort column is turned into ranks instead — a string column's
//! distinct values sorted once (few per column: accounts, interfaces, actions; at most one per
//! row for addresses), a number's offset from its column's least value — the ranks of a row
//! are packed into one integer beside its row number, and those integers are sorted. The order
//! is the one polars gives (strings by their bytes, numbers by value, nulls last, ascending),
//! with ties kept in row order; when the ranks do not fit 128 bits, a number column spans more
//! than 32 bits, or a column is of another type, polars sorts.

use std::ops::{BitOr, Shl};

use hashbrown::{HashMap, HashSet};
use polars::prelude::*;
use rayon::prelude::*;

/// `df` ordered by the columns `by`, each ascending with nulls last.
pub(crate) fn sort_rows(df: DataFrame, by: &[PlSmallStr]) -> PolarsResult<DataFrame> {
    if by.is_empty() || df.height() < 2 {
        return Ok(df);
    }
    match permutation(&df, by)? {
        Some(order) => df.take(&IdxCa::from_vec(PlSmallStr::EMPTY, order)),
        None => df.sort(
            by,
            SortMultipleOptions::default()
                .with_nulls_last(true)
                .with_order_descending_multi(vec![false; by.len()]),
        ),
    }
}

/// The row numbers of `df` in sorted order, or `None` when the ranks do not fit one `u128`.
fn permutation(df: &DataFrame, by: &[PlSmallStr]) -> PolarsResult<Option<Vec<IdxSize>>> {
    let rows = df.height();
    // Columns are ranked in parallel, each on its own.
    let ranked: Vec<Option<Ranks>> = by
        .par_iter()
        .map(|name| ranks(df.column(name)?))
        .collect::<PolarsResult<_>>()?;
    let Some(columns) = ranked.into_iter().collect::<Option<Vec<Ranks>>>() else {
        return Ok(None);
    };
    let row_bits = bits_for(rows as u64);
    let bits = row_bits + columns.iter().map(|c| bits_for(c.values)).sum::<u32>();
    Ok(match bits {
        0..=64 => Some(sorted::<u64>(&columns, rows, row_bits)),
        65..=128 => Some(sorted::<u128>(&columns, rows, row_bits)),
        _ => None,
    })
}

/// A column as ranks: equal values have equal ranks, and ranks order as the values do.
struct Ranks {
    codes: Vec<u32>,
    /// How many ranks there are (the greatest is `values - 1`).
    values: u64,
}

fn ranks(column: &Column) -> PolarsResult<Option<Ranks>> {
    Ok(match column.dtype() {
        DataType::String => Some(string_ranks(column.str()?)),
        DataType::Int32 => {
            let ca = column.i32()?;
            int_ranks(
                ca.iter().map(|v| v.map(i64::from)),
                int_min_max(ca),
                ca.null_count(),
            )
        }
        DataType::Int64 => {
            let ca = column.i64()?;
            int_ranks(ca.iter(), int_min_max(ca), ca.null_count())
        }
        _ => None,
    })
}

/// Ranks of strings by their bytes, null after every value. A column of few distinct values
/// (accounts, interfaces, actions) finds each through a hash table and sorts only those; one of
/// many (addresses) is sorted whole: by 64-bit keys when every value is digits and dots (IPv4
/// addresses), otherwise by a key of its first 15 bytes and its length, then by the rest — the
/// way the first rows of the column look decides between hashing and sorting; every way gives
/// the same ranks.
fn string_ranks(ca: &StringChunked) -> Ranks {
    let mut distinct: HashSet<&str> = HashSet::new();
    for v in ca.iter().take(SAMPLE_ROWS).flatten() {
        distinct.insert(v);
        if distinct.len() > FEW_VALUES {
            return sorted_string_ranks(ca);
        }
    }
    hashed_string_ranks(ca)
}

/// Rows looked at to choose how a string column is ranked, and the most distinct values among
/// them for a hash table to pay.
const SAMPLE_ROWS: usize = 4096;
const FEW_VALUES: usize = 256;

fn hashed_string_ranks(ca: &StringChunked) -> Ranks {
    const NULL: u32 = u32::MAX;
    let mut seen = FirstSeen::default();
    let mut codes: Vec<u32> = ca.iter().map(|v| v.map_or(NULL, |s| seen.id(s))).collect();
    let distinct = seen.values;
    let mut order: Vec<u32> = (0..distinct.len() as u32).collect();
    order.sort_unstable_by(|&a, &b| distinct[a as usize].cmp(distinct[b as usize]));
    let mut rank = vec![0u32; distinct.len()];
    for (r, &id) in order.iter().enumerate() {
        rank[id as usize] = r as u32;
    }
    let null_rank = distinct.len() as u32;
    for code in &mut codes {
        *code = match *code {
            NULL => null_rank,
            id => rank[id as usize],
        };
    }
    Ranks {
        codes,
        values: distinct.len() as u64 + u64::from(ca.null_count() > 0),
    }
}

/// Ids of text values in the order they are first seen, a value looked up only where it differs
/// from the one before: accounts, actions and statuses come in long runs (an object is one
/// account's), and so does every sort column but the last in a sorted file, which is what the
/// writer sees; comparing two short strings is cheaper than hashing one.
#[derive(Default)]
pub(crate) struct FirstSeen<'a> {
    ids: HashMap<&'a str, u32>,
    /// The values, each at its id.
    pub values: Vec<&'a str>,
    last: Option<(&'a str, u32)>,
}

impl<'a> FirstSeen<'a> {
    pub fn id(&mut self, value: &'a str) -> u32 {
        if let Some((before, id)) = self.last
            && before == value
        {
            return id;
        }
        let id = *self.ids.entry(value).or_insert_with(|| {
            self.values.push(value);
            (self.values.len() - 1) as u32
        });
        self.last = Some((value, id));
        id
    }
}

fn sorted_string_ranks(ca: &StringChunked) -> Ranks {
    let strings: Vec<Option<&str>> = ca.iter().collect();
    let (mut codes, distinct, values) =
        digit_ranks(&strings).unwrap_or_else(|| prefix_ranks(&strings));
    if values < strings.len() {
        for (code, s) in codes.iter_mut().zip(&strings) {
            if s.is_none() {
                *code = distinct;
            }
        }
    }
    Ranks {
        codes,
        values: u64::from(distinct) + u64::from(values < strings.len()),
    }
}

/// Ranks of the values of `strings` (nulls left at 0), how many distinct values there are, and
/// how many values (rows not null).
type Ranked = (Vec<u32>, u32, usize);

/// Codes from entries sorted by their value, `(…, row)`, of `rows` rows: the rank of each
/// entry's value, a new one wherever `differs(entry before, entry)`.
fn ranks_of_sorted<K>(
    entries: &[(K, u32)],
    rows: usize,
    differs: impl Fn(&(K, u32), &(K, u32)) -> bool,
) -> Ranked {
    let mut codes = vec![0u32; rows];
    let mut rank = 0u32;
    for (i, entry) in entries.iter().enumerate() {
        if i > 0 && differs(&entries[i - 1], entry) {
            rank += 1;
        }
        codes[entry.1 as usize] = rank;
    }
    let distinct = match entries.is_empty() {
        true => 0,
        false => rank + 1,
    };
    (codes, distinct, entries.len())
}

/// Strings of digits and dots (IPv4 addresses, numbers spelled as text) up to 16 bytes, ranked
/// by [`digit_key`]s: entries half the size of [`prefix_ranks`]' and no byte compared, which
/// sorts them in 60% of the time. `None` when a value is of other bytes or longer.
fn digit_ranks(strings: &[Option<&str>]) -> Option<Ranked> {
    let mut entries: Vec<(u64, u32)> = Vec::with_capacity(strings.len());
    for (row, s) in strings.iter().enumerate() {
        if let Some(s) = s {
            entries.push((digit_key(s.as_bytes())?, row as u32));
        }
    }
    entries.sort_unstable_by_key(|e| e.0);
    Some(ranks_of_sorted(&entries, strings.len(), |a, b| a.0 != b.0))
}

/// A string of at most 16 digits and dots as a number that orders as the strings' bytes do and
/// is equal only for equal strings: a nibble per byte, most significant first, `.` as 1 and
/// `0`–`9` as 2–11 (the bytes' own order), and 0 after the end, below every byte (a string
/// before the longer strings it starts).
fn digit_key(s: &[u8]) -> Option<u64> {
    if s.len() > 16 {
        return None;
    }
    let mut key = 0u64;
    for &b in s {
        let nibble = match b {
            b'.' => 1,
            b'0'..=b'9' => b - b'0' + 2,
            _ => return None,
        };
        key = (key << 4) | u64::from(nibble);
    }
    Some(key.checked_shl(4 * (16 - s.len() as u32)).unwrap_or(0))
}

/// Any strings, ranked by [`prefix_key`]s, then each run of one key of strings longer than it
/// holds by the rest of their bytes.
fn prefix_ranks(strings: &[Option<&str>]) -> Ranked {
    let mut entries: Vec<(u128, u32)> = strings
        .iter()
        .enumerate()
        .filter_map(|(row, s)| s.map(|s| (prefix_key(s.as_bytes()), row as u32)))
        .collect();
    // What tells apart strings of one prefix key: nothing for a string it holds whole, the
    // bytes after the first 15 otherwise.
    let rest = |row: u32| {
        let s = strings[row as usize].unwrap_or_default().as_bytes();
        s.get(PREFIX_BYTES..).unwrap_or_default()
    };
    // Sorted by prefix key alone, then each run of one key of strings longer than it holds by
    // the rest of them. Entries of one key are equal strings or are put in order by the rest,
    // so an unstable sort gives the same ranks. It is also faster than a radix sort here
    // (`radsort`: 16 against 9 ms for 240,000 addresses): a pass per byte over 32-byte entries
    // waits on memory, where the comparison sort works in cache once its partitions fit.
    entries.sort_unstable_by_key(|e| e.0);
    for run in entries.chunk_by_mut(|a, b| a.0 == b.0) {
        if run.len() > 1 && !holds_whole(run[0].0) {
            run.sort_by(|a, b| rest(a.1).cmp(rest(b.1)));
        }
    }
    ranks_of_sorted(&entries, strings.len(), |&(q, before), &(p, row)| {
        p != q || (!holds_whole(p) && rest(row) != rest(before))
    })
}

/// The bytes of a string [`prefix_key`] holds.
const PREFIX_BYTES: usize = 15;

/// A string's first 15 bytes, zero-padded, then its length up to 16, as a big-endian number.
/// Keys order as the strings do where they differ; strings of one key are equal when it
/// [holds them whole](holds_whole) (a length below 16: the same bytes, the same length), and
/// otherwise are ordered by their bytes after the first 15. The length byte is what tells `a`
/// from `a\0`, which pad alike.
fn prefix_key(s: &[u8]) -> u128 {
    let mut buf = [0u8; 16];
    let n = s.len().min(PREFIX_BYTES);
    buf[..n].copy_from_slice(&s[..n]);
    buf[PREFIX_BYTES] = s.len().min(PREFIX_BYTES + 1) as u8;
    u128::from_be_bytes(buf)
}

/// Whether a [`prefix_key`] holds its string whole (at most 15 bytes).
fn holds_whole(key: u128) -> bool {
    (key & 0xff) as usize <= PREFIX_BYTES
}

/// Ranks of numbers as their offsets from the least (null after the greatest), or `None` when
/// the values span more than 32 bits.
fn int_ranks(
    values: impl Iterator<Item = Option<i64>>,
    min_max: Option<(i64, i64)>,
    nulls: usize,
) -> Option<Ranks> {
    let (min, span) = match min_max {
        Some((min, max)) => (min, u64::try_from(i128::from(max) - i128::from(min)).ok()?),
        None => (0, 0),
    };
    // The offsets and the null's rank after them must fit a u32.
    if span >= u64::from(u32::MAX) {
        return None;
    }
    let null_rank = span as u32 + 1;
    let codes = values
        .map(|v| v.map_or(null_rank, |v| (v - min) as u32))
        .collect();
    Some(Ranks {
        codes,
        values: span + 1 + u64::from(nulls > 0),
    })
}

/// The least and greatest values of an integer column, nulls left out; `None` when every row is
/// null. One pass, 64 rows per validity word: polars' `min` and `max` each walk a column that
/// has nulls one set bit at a time, and flow logs' NODATA records leave ports, protocols and
/// counts null, so the writer's and the sort's look at those columns was 3% of a batch's CPU
/// (docs/architecture.md, "Fewer passes over the output columns").
pub(crate) fn int_min_max<T>(ca: &ChunkedArray<T>) -> Option<(i64, i64)>
where
    T: PolarsIntegerType,
    T::Native: Into<i64>,
{
    let mut found = MinMax::default();
    for array in ca.downcast_iter() {
        let values = array.values().as_slice();
        match array.validity().filter(|bits| bits.unset_bits() > 0) {
            None => found.all(values),
            Some(bits) => {
                // 64 rows at a time under their validity word: a word of all rows is one
                // plain pass, and only the set bits of any other are visited.
                let words = bits.chunks::<u64>();
                let tail = words.remainder();
                let mut blocks = values.chunks_exact(64);
                for (block, word) in blocks.by_ref().zip(words) {
                    found.masked(block, word);
                }
                found.masked(blocks.remainder(), tail);
            }
        }
    }
    found.valid.then_some((found.min, found.max))
}

/// The least and greatest values seen so far, and whether there were any.
struct MinMax {
    min: i64,
    max: i64,
    valid: bool,
}

impl Default for MinMax {
    fn default() -> Self {
        Self {
            min: i64::MAX,
            max: i64::MIN,
            valid: false,
        }
    }
}

impl MinMax {
    fn all<T: Copy + Into<i64>>(&mut self, values: &[T]) {
        for &v in values {
            let v = v.into();
            (self.min, self.max) = (self.min.min(v), self.max.max(v));
        }
        self.valid |= !values.is_empty();
    }

    /// The values of `block` whose bit in `word` is set (bit 0 the first).
    fn masked<T: Copy + Into<i64>>(&mut self, block: &[T], word: u64) {
        let all = match block.len() {
            64 => u64::MAX,
            n => (1u64 << n) - 1,
        };
        if word & all == all {
            return self.all(block);
        }
        let mut bits = word & all;
        while bits != 0 {
            let v = block[bits.trailing_zeros() as usize].into();
            (self.min, self.max) = (self.min.min(v), self.max.max(v));
            self.valid = true;
            bits &= bits - 1;
        }
    }
}

/// Bits that hold `0..values`.
fn bits_for(values: u64) -> u32 {
    match values {
        0 | 1 => 0,
        v => u64::BITS - (v - 1).leading_zeros(),
    }
}

/// An integer a row's ranks and row number are packed in.
trait Packed: Copy + Ord + Send + From<u32> + Shl<u32, Output = Self> + BitOr<Output = Self> {
    fn low_u32(self) -> u32;
}

impl Packed for u64 {
    fn low_u32(self) -> u32 {
        self as u32
    }
}

impl Packed for u128 {
    fn low_u32(self) -> u32 {
        self as u32
    }
}

/// Packs each row's ranks (first column in the highest bits) and its row number (lowest), sorts
/// the packed integers and gives back the row numbers in that order.
fn sorted<P: Packed>(columns: &[Ranks], rows: usize, row_bits: u32) -> Vec<IdxSize> {
    let mut keys = vec![P::from(0u32); rows];
    for column in columns {
        let bits = bits_for(column.values);
        for (key, &code) in keys.iter_mut().zip(&column.codes) {
            *key = (*key << bits) | P::from(code);
        }
    }
    for (row, key) in keys.iter_mut().enumerate() {
        *key = (*key << row_bits) | P::from(row as u32);
    }
    keys.par_sort_unstable();
    // Row numbers are below 2^row_bits ≤ 2^32: the low 32 bits hold them.
    let mask = match row_bits {
        32 => u32::MAX,
        b => (1u32 << b) - 1,
    };
    keys.into_iter()
        .map(|k| (k.low_u32() & mask) as IdxSize)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn polars_sorted(df: &DataFrame, by: &[PlSmallStr]) -> DataFrame {
        df.sort(
            by,
            SortMultipleOptions::default()
                .with_nulls_last(true)
                .with_order_descending_multi(vec![false; by.len()])
                .with_maintain_order(true),
        )
        .unwrap()
    }

    fn names(by: &[&str]) -> Vec<PlSmallStr> {
        by.iter().map(|s| PlSmallStr::from(*s)).collect()
    }

    #[test]
    fn bits_hold_the_values() {
        assert_eq!(
            [0, 1, 2, 3, 4, 5, 256, 257].map(bits_for),
            [0, 0, 1, 2, 2, 3, 8, 9]
        );
        assert_eq!(bits_for(1 << 32), 32);
    }

    /// Bytes order, not character order; numbers by value, negative ones too; nulls last; a
    /// column of one value takes no bits.
    #[test]
    fn orders_as_polars_does() {
        let df = df!(
            "a" => [Some("b"), Some("a"), None, Some("a"), Some("é"), Some("Z"), Some("a")],
            "n" => [Some(2i32), Some(-7), Some(1), None, Some(0), Some(5), Some(-7)],
            "one" => [Some(9i64); 7],
            "row" => [0i64, 1, 2, 3, 4, 5, 6],
        )
        .unwrap();
        let by = names(&["a", "n", "one"]);
        let ours = sort_rows(df.clone(), &by).unwrap();
        assert!(ours.equals_missing(&polars_sorted(&df, &by)), "{ours}");
        let rows: Vec<_> = ours.column("row").unwrap().i64().unwrap().iter().collect();
        assert_eq!(rows, [5, 1, 6, 3, 0, 4, 2].map(Some), "ties keep row order");
    }

    /// Ranks wider than 128 bits, a span past 32 bits, or a column of another type: polars sorts.
    #[test]
    fn falls_back_to_polars() {
        let wide = df!(
            "a" => [i64::MIN, 0, i64::MAX],
            "f" => [1.5f64, 0.5, 2.5],
        )
        .unwrap();
        for by in [names(&["a"]), names(&["f"])] {
            assert!(permutation(&wide, &by).unwrap().is_none());
            let ours = sort_rows(wide.clone(), &by).unwrap();
            assert!(ours.equals_missing(&polars_sorted(&wide, &by)));
        }
        let spread: Vec<i64> = (0..6).map(|i| i << 30).collect();
        let many = DataFrame::new(
            6,
            (0..5)
                .map(|c| Column::new(format!("c{c}").into(), &spread))
                .collect(),
        )
        .unwrap();
        let by: Vec<PlSmallStr> = many.get_column_names_owned();
        assert!(permutation(&many, &by).unwrap().is_none(), "5 × 33 bits");
        assert!(
            sort_rows(many.clone(), &by)
                .unwrap()
                .equals_missing(&polars_sorted(&many, &by))
        );
    }

    /// Only digits and dots, at most 16 of them, take the 64-bit keys.
    #[test]
    fn digit_keys_hold_digits_and_dots() {
        let takes =
            |v: &[&str]| digit_ranks(&v.iter().map(|s| Some(*s)).collect::<Vec<_>>()).is_some();
        assert!(takes(&[
            "10.0.0.1",
            "255.255.255.255",
            "",
            "1234567890123456"
        ]));
        assert!(!takes(&["10.0.0.1", "12345678901234567"]), "17 bytes");
        for other in ["2001:db8::1", "-", "1/2", "a", "٣"] {
            assert!(!takes(&["10.0.0.1", other]), "{other}");
        }
        assert_eq!(digit_key(b""), Some(0));
        assert!(digit_key(b"1") < digit_key(b"1."));
        assert!(digit_key(b"1.") < digit_key(b"10"));
        assert!(digit_key(b"10.0.0.10") < digit_key(b"10.0.0.2"));
    }

    /// A column of many values is sorted whole rather than hashed: the order is still polars'.
    #[test]
    fn many_values_sort_as_polars_does() {
        let addresses: Vec<Option<String>> = (0..3000u32)
            .map(|i| match i % 97 {
                0 => None,
                _ => Some(format!(
                    "10.{}.{}.{}",
                    (i * 7919) % 256,
                    i % 13,
                    (i * 31) % 256
                )),
            })
            .collect();
        let ports: Vec<i32> = (0..3000).map(|i| (i * 17) % 1024).collect();
        let df = df!("addr" => addresses, "port" => ports).unwrap();
        let by = names(&["addr", "port"]);
        let sample = df.column("addr").unwrap().str().unwrap();
        let distinct = sample
            .iter()
            .take(SAMPLE_ROWS)
            .flatten()
            .collect::<std::collections::HashSet<_>>();
        assert!(distinct.len() > FEW_VALUES, "the sorted path is taken");
        let ours = sort_rows(df.clone(), &by).unwrap();
        assert!(ours.equals_missing(&polars_sorted(&df, &by)));
    }

    proptest! {
        /// Both ways of ranking strings give the same ranks, whatever the strings: long ones
        /// that share 14 or 15 bytes, NUL bytes (the prefix key pads with them), empty, null.
        #[test]
        fn string_ranks_agree(
            values in proptest::collection::vec(
                proptest::option::weighted(0.9, prop_oneof![
                    "[ab]{0,3}",
                    "aaaaaaaaaaaaaaa[ab\\x00]{0,3}",
                    "aaaaaaaaaaaaaa[ab\\x00]{0,3}",
                    "[a\\x00]{0,17}",
                    "[0-9.]{0,17}",
                ]),
                0..200,
            ),
        ) {
            let ca = StringChunked::from_iter_options("s".into(), values.iter().map(|v| v.as_deref()));
            let (hashed, sorted) = (hashed_string_ranks(&ca), sorted_string_ranks(&ca));
            prop_assert_eq!(&hashed.codes, &sorted.codes);
            prop_assert_eq!(hashed.values, sorted.values);
            let strings: Vec<Option<&str>> = ca.iter().collect();
            let (codes, distinct, _) = prefix_ranks(&strings);
            let nulls_after = |mut codes: Vec<u32>| {
                for (code, s) in codes.iter_mut().zip(&strings) {
                    if s.is_none() {
                        *code = distinct;
                    }
                }
                codes
            };
            prop_assert_eq!(&nulls_after(codes), &hashed.codes, "the 128-bit keys");
            if let Some((codes, _, _)) = digit_ranks(&strings) {
                prop_assert_eq!(&nulls_after(codes), &hashed.codes, "the digit keys");
            }
            // And the ranks order as the bytes do.
            for (a, ra) in values.iter().zip(&hashed.codes) {
                for (b, rb) in values.iter().zip(&hashed.codes) {
                    let bytes = |v: &Option<String>| v.as_ref().map(|s| s.as_bytes().to_vec());
                    let expected = match (bytes(a), bytes(b)) {
                        (None, None) => std::cmp::Ordering::Equal,
                        (None, Some(_)) => std::cmp::Ordering::Greater,
                        (Some(_), None) => std::cmp::Ordering::Less,
                        (Some(x), Some(y)) => x.cmp(&y),
                    };
                    prop_assert_eq!(ra.cmp(rb), expected);
                }
            }
        }

        /// Whole validity words of set bits beside words with nulls, whichever holds the extremes.
        #[test]
        fn int_min_max_over_whole_words(hole in 0usize..200, low in 0usize..200, high in 0usize..200) {
            let values: Vec<Option<i64>> = (0..200)
                .map(|i| match i {
                    _ if i == hole => None,
                    _ if i == low => Some(-7),
                    _ if i == high => Some(9),
                    _ => Some(1),
                })
                .collect();
            let ca = Int64Chunked::from_iter_options("v".into(), values.into_iter());
            prop_assert_eq!(int_min_max(&ca), ca.min().zip(ca.max()));
        }

        /// The least and greatest values polars finds, in columns of one or more chunks, with
        /// and without nulls, all null and empty.
        #[test]
        fn int_min_max_agrees_with_polars(
            values in proptest::collection::vec(
                proptest::option::weighted(0.8, prop_oneof![Just(i64::MIN), Just(i64::MAX), -1000i64..1000]),
                0..300,
            ),
            split in 0usize..300,
        ) {
            let at = split.min(values.len());
            let mut wide = Int64Chunked::from_iter_options("w".into(), values[..at].iter().copied());
            wide.append(&Int64Chunked::from_iter_options("w".into(), values[at..].iter().copied())).unwrap();
            let narrow = Int32Chunked::from_iter_options(
                "n".into(),
                values.iter().map(|v| v.map(|v| v.clamp(i32::MIN.into(), i32::MAX.into()) as i32)),
            );
            prop_assert_eq!(int_min_max(&wide), wide.min().zip(wide.max()));
            // Sliced, so that validity words start inside a byte.
            for offset in [1i64, 3, 70] {
                let part = wide.slice(offset, values.len());
                prop_assert_eq!(int_min_max(&part), part.min().zip(part.max()), "from {}", offset);
            }
            let theirs = narrow.min().zip(narrow.max()).map(|(a, b)| (i64::from(a), i64::from(b)));
            prop_assert_eq!(int_min_max(&narrow), theirs);
        }

        /// Columns of digits and dots (as addresses are) take the 64-bit keys, and those rank
        /// as the bytes do: short strings, ones that start others, the longest the keys hold.
        #[test]
        fn digit_ranks_agree(
            values in proptest::collection::vec(
                proptest::option::weighted(0.9, prop_oneof!["[0-9.]{0,4}", "1[0-9.]{0,15}", "[0-9.]{16}"]),
                0..200,
            ),
        ) {
            let ca = StringChunked::from_iter_options("s".into(), values.iter().map(|v| v.as_deref()));
            let strings: Vec<Option<&str>> = ca.iter().collect();
            prop_assert_eq!(digit_ranks(&strings), Some(prefix_ranks(&strings)));
        }

        /// Any frame of string and number columns, nulls and repeats included, in several
        /// chunks: the order polars' sort gives.
        #[test]
        fn same_order_as_polars(
            rows in proptest::collection::vec(
                (
                    proptest::option::weighted(0.8, "[a-c]{0,3}"),
                    proptest::option::weighted(0.8, -3i32..3),
                    proptest::option::weighted(0.9, prop_oneof![Just(i64::MIN / 4), -5i64..5, Just(1i64 << 40)]),
                    proptest::option::weighted(0.9, "[0-9.]{1,15}"),
                ),
                0..120,
            ),
            split in 0usize..120,
        ) {
            let (s, n, w, t): (Vec<_>, Vec<_>, Vec<_>, Vec<_>) = rows.into_iter().fold(
                Default::default(),
                |(mut s, mut n, mut w, mut t), (a, b, c, d)| {
                    s.push(a); n.push(b); w.push(c); t.push(d);
                    (s, n, w, t)
                },
            );
            let mut df = df!("s" => s, "n" => n, "w" => w, "t" => t).unwrap();
            let at = split.min(df.height());
            let (head, tail) = (df.slice(0, at), df.slice(at as i64, df.height()));
            if at > 0 && at < df.height() {
                df = head.vstack(&tail).unwrap();
            }
            for by in [names(&["s", "n"]), names(&["t", "s", "n"]), names(&["n", "w"]), names(&["w", "t"])] {
                let ours = sort_rows(df.clone(), &by).unwrap();
                let theirs = polars_sorted(&df, &by);
                prop_assert!(ours.equals_missing(&theirs), "by {:?}\n{}\n{}", by, ours, theirs);
            }
        }
    }
}
