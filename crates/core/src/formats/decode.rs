//! Raw object bytes to text: gzip (possibly multi-member, as AWS concatenates) or plain, within
//! the bounds of [`DecodeLimits`]. Shared by every source.
//!
//! Two ways to read: [`with_text`] decodes an object whole into a per-thread buffer (CloudTrail
//! documents and captures are read whole), [`stream_lines`] hands it over in chunks of whole
//! lines (flow logs), so a large object never sits decoded in memory. Either way an object that
//! decodes to more than its bound, inflates more than the ratio bound (a gzip bomb) or, for
//! lines, holds a line longer than the line bound is an error naming the object — quarantined,
//! never a reason to hold more memory.

use std::io::Read;

use flate2::read::MultiGzDecoder;

use crate::error::ParseError;

/// How far an object may decode. Every bound is checked while decoding, before more is held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Bytes an object may decode to.
    pub max_object_bytes: u64,
    /// Decoded bytes per compressed byte a gzip object may reach once it has decoded
    /// [`RATIO_FLOOR`] bytes (real logs inflate 5–30×; a bomb of zeros about 1000×).
    pub max_ratio: u64,
    /// Bytes one line may have (flow logs).
    pub max_line_bytes: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_object_bytes: 2 << 30,
            max_ratio: 200,
            max_line_bytes: 1 << 20,
        }
    }
}

/// Below this many decoded bytes the ratio is not checked: a small, repetitive object may
/// inflate a lot and still be nothing to fear.
pub const RATIO_FLOOR: u64 = 16 << 20;

impl DecodeLimits {
    /// The most bytes an object of `raw_len` bytes may decode to: both bounds in one number,
    /// known before decoding starts.
    fn bound(&self, raw_len: usize, gzip: bool) -> u64 {
        match gzip {
            true => (raw_len as u64)
                .saturating_mul(self.max_ratio)
                .max(RATIO_FLOOR)
                .min(self.max_object_bytes),
            false => self.max_object_bytes,
        }
    }

    /// The error if `decoded` bytes (so far) of an object of `raw_len` bytes are past its bound,
    /// naming the bound it broke.
    fn check(
        &self,
        source: &str,
        raw_len: usize,
        gzip: bool,
        decoded: u64,
    ) -> Result<(), ParseError> {
        if decoded <= self.bound(raw_len, gzip) {
            return Ok(());
        }
        let reason = match decoded > self.max_object_bytes {
            true => format!(
                "decodes to more than {} (the per-object bound; see --max-object-size)",
                bytesize::ByteSize::b(self.max_object_bytes).display().iec()
            ),
            false => format!(
                "gzip: {raw_len} bytes inflate past {} bytes, more than {}× their size: a gzip \
                 bomb?",
                self.bound(raw_len, gzip),
                self.max_ratio
            ),
        };
        Err(ParseError::whole(source, reason))
    }
}

/// Runs `f` on the whole text of a raw object: gunzipped when it starts with the gzip magic
/// bytes, as it is otherwise. Gzip is inflated by libdeflate in one call when it fits
/// ([`inflated`]), else streamed through flate2, which also names what is wrong.
pub fn with_text<T>(
    source: &str,
    raw: &[u8],
    limits: &DecodeLimits,
    mut f: impl FnMut(&[u8]) -> Result<T, ParseError>,
) -> Result<T, ParseError> {
    if !raw.starts_with(&GZIP_MAGIC) {
        limits.check(source, raw.len(), false, raw.len() as u64)?;
        return f(raw);
    }
    let whole = inflated(raw, limits, |text| {
        let checked = limits.check(source, raw.len(), true, text.len() as u64);
        Some(checked.and_then(|()| f(text)))
    });
    if let Some(out) = whole {
        return out;
    }
    // Decompress into a per-thread buffer reused across objects: fresh multi-megabyte buffers
    // per object cost more in page faults than the decompression itself.
    DECODE_BUFFER.with_borrow_mut(|buf| {
        buf.clear();
        // One byte past the bound tells that the object breaks it, without decoding more.
        let outcome = MultiGzDecoder::new(raw)
            .take(limits.bound(raw.len(), true) + 1)
            .read_to_end(buf)
            .map_err(|e| ParseError::whole(source, format!("gzip: {e}")))
            .and_then(|_| limits.check(source, raw.len(), true, buf.len() as u64));
        let out = outcome.and_then(|()| f(buf));
        if buf.capacity() > MAX_KEPT_BUFFER {
            *buf = Vec::new();
        }
        out
    })
}

/// Hands the text of a raw object (gzip or plain, as [`with_text`]) to `f` in chunks that each
/// end at the end of a line (the last may lack its newline). Returns the decoded size.
///
/// A gzip object whose trailer says its text fits [`WHOLE_MAX`] and its bounds is decoded whole,
/// in one libdeflate call, and handed over in one chunk (about twice as fast as streaming;
/// docs/architecture.md, "Inflating"); it holds at most its bound, within the per-object share
/// of the memory limit. Any other object is streamed, holding at most one chunk and one line:
/// [`CHUNK_BYTES`] plus the line bound. Either way `f` sees the same lines, and the results
/// and errors are the same: whatever the whole decoding cannot do, the streaming does again.
pub fn stream_lines(
    source: &str,
    raw: &[u8],
    limits: &DecodeLimits,
    mut f: impl FnMut(&[u8]) -> Result<(), ParseError>,
) -> Result<u64, ParseError> {
    let gzip = raw.starts_with(&GZIP_MAGIC);
    // Decoded whole, the text is handed over in one chunk, with the outcome streaming would give
    // — but for an object of a chunk or more with a line past the line bound: the streaming loop
    // checks that bound on such objects, and it names the line.
    if gzip {
        let whole = inflated(raw, limits, |text| {
            let n = text.len();
            if n >= CHUNK_BYTES && longest_line(text) > limits.max_line_bytes {
                return None;
            }
            let handed = limits
                .check(source, raw.len(), true, n as u64)
                .and_then(|()| if n > 0 { f(text) } else { Ok(()) });
            Some(handed.map(|()| n as u64))
        });
        if let Some(done) = whole {
            return done;
        }
    }
    let capacity = CHUNK_BYTES + limits.max_line_bytes;
    LINE_BUFFER.with_borrow_mut(|buf| {
        if buf.len() != capacity {
            *buf = vec![0u8; capacity];
        }
        let mut reader: Box<dyn Read> = match gzip {
            true => Box::new(MultiGzDecoder::new(raw)),
            false => Box::new(raw),
        };
        let (mut filled, mut decoded, mut lines) = (0usize, 0u64, 0usize);
        loop {
            let n = match reader.read(&mut buf[filled..]) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let what = if gzip { "gzip" } else { "read" };
                    return Err(ParseError::whole(source, format!("{what}: {e}")));
                }
            };
            if n == 0 {
                if filled > 0 {
                    f(&buf[..filled])?;
                }
                return Ok(decoded);
            }
            filled += n;
            decoded += n as u64;
            limits.check(source, raw.len(), gzip, decoded)?;
            // Hand over full chunks only: an object under a chunk is decoded whole before it is
            // parsed, so its errors come in the order whole decoding gives them.
            if filled < CHUNK_BYTES {
                continue;
            }
            if let Some(last) = memchr::memrchr(b'\n', &buf[..filled]) {
                f(&buf[..=last])?;
                lines += memchr::memchr_iter(b'\n', &buf[..=last]).count();
                buf.copy_within(last + 1..filled, 0);
                filled -= last + 1;
            }
            if filled > limits.max_line_bytes {
                return Err(ParseError::at(
                    source,
                    lines + 1,
                    format!(
                        "a line longer than {} bytes (the line bound)",
                        limits.max_line_bytes
                    ),
                ));
            }
        }
    })
}

/// The text [`stream_lines`] hands over at a time, at most (plus one line).
pub const CHUNK_BYTES: usize = 1 << 20;

/// The text of an object decoded whole is at most this (and its bounds); larger ones are
/// streamed.
pub const WHOLE_MAX: usize = 32 << 20;

/// A whole-object buffer larger than this is released after use rather than kept.
const MAX_KEPT_WHOLE: usize = 16 << 20;

/// Inflates a gzip object whole, in one libdeflate call, into the thread's buffer and gives `f`
/// its text (about twice as fast as streaming; docs/architecture.md, "Inflating"). `None`
/// without calling `f` when it does not try (the trailer's size is past the object's bounds or
/// [`WHOLE_MAX`]) or cannot (the text is larger than the room the trailer let it expect, the
/// data is not valid gzip); `None` too when `f` says so. The caller then streams the object,
/// which names what is wrong as it always has.
fn inflated<T>(raw: &[u8], limits: &DecodeLimits, f: impl FnOnce(&[u8]) -> Option<T>) -> Option<T> {
    // The trailer's size is the writer's word, modulo 2³², and only the last member's: a hint
    // for the buffer, never trusted as a bound. Concatenated members (AWS writes them) are
    // given room for eight times the compressed size, within the bounds.
    let claimed = u32::from_le_bytes(*raw.last_chunk::<4>()?) as usize;
    let most = usize::try_from(limits.bound(raw.len(), true))
        .unwrap_or(usize::MAX)
        .min(WHOLE_MAX);
    if claimed > most {
        return None;
    }
    let room = claimed.max(raw.len().saturating_mul(8)).min(most).max(1);
    WHOLE_BUFFER.with_borrow_mut(|buf| {
        if buf.len() < room {
            buf.resize(room, 0);
        }
        let outcome = super::inflate::gunzip_into(raw, &mut buf[..room]).and_then(|n| f(&buf[..n]));
        if buf.len() > MAX_KEPT_WHOLE {
            *buf = Vec::new();
        }
        outcome
    })
}

/// The length of the longest line of `text`, its newline not counted.
fn longest_line(text: &[u8]) -> usize {
    let (mut longest, mut start) = (0, 0);
    for end in memchr::memchr_iter(b'\n', text) {
        longest = longest.max(end - start);
        start = end + 1;
    }
    longest.max(text.len() - start)
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// A decode buffer larger than this is released after use rather than kept for the next object.
const MAX_KEPT_BUFFER: usize = 64 * 1024 * 1024;

thread_local! {
    static DECODE_BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    static LINE_BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    static WHOLE_BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    /// `data` as one gzip member.
    pub(crate) fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn chunks(raw: &[u8], limits: &DecodeLimits) -> Result<(Vec<u8>, usize), ParseError> {
        let mut got: Vec<Vec<u8>> = Vec::new();
        stream_lines("o", raw, limits, |c| {
            got.push(c.to_vec());
            Ok(())
        })?;
        let whole = got.iter().rev().skip(1).all(|c| c.ends_with(b"\n"));
        assert!(whole, "every chunk but the last ends a line");
        Ok((got.concat(), got.len()))
    }

    #[test]
    fn streams_whole_lines_of_plain_and_gzip_text() {
        let text: Vec<u8> = (0..300_000)
            .flat_map(|i| format!("line {i}\n").into_bytes())
            .chain(b"last without newline".iter().copied())
            .collect();
        let (got, calls) = chunks(&text, &DecodeLimits::default()).unwrap();
        assert_eq!(got, text);
        assert!(calls > 2, "{calls} chunks");
        // Gzip whose trailer says it fits is decoded whole: one chunk, the same text.
        let (got, calls) = chunks(&gz(&text), &DecodeLimits::default()).unwrap();
        assert_eq!(got, text);
        assert_eq!(calls, 1);
        // Members that inflate past what the last one's trailer and the compressed size let
        // the whole decoding expect are streamed: the same text, in chunks.
        let dense: Vec<u8> = [&[b'a'; 99][..], b"\n"].concat().repeat(30_000);
        let raw = [gz(&dense), gz(b"tail")].concat();
        let (got, calls) = chunks(&raw, &DecodeLimits::default()).unwrap();
        assert_eq!(got, [&dense[..], b"tail"].concat());
        assert!(calls > 1, "{calls} chunks");
    }

    #[test]
    fn whole_texts_are_inflated_in_one_call_with_flate2s_errors() {
        let raw = [gz(b"{\"a\": 1}\n"), gz(b"{\"b\": 2}")].concat();
        let text = with_text("t.gz", &raw, &DecodeLimits::default(), |t| Ok(t.to_vec())).unwrap();
        assert_eq!(text, b"{\"a\": 1}\n{\"b\": 2}");
        let mut bad = raw.clone();
        bad[12] ^= 0x40;
        let e = with_text("t.gz", &bad, &DecodeLimits::default(), |_| Ok(())).unwrap_err();
        assert!(e.reason.starts_with("gzip: "), "{e}");
    }

    #[test]
    fn large_objects_decode_whole_with_the_streams_errors() {
        let lines: Vec<u8> = (0..400_000)
            .flat_map(|i| format!("{i}\n").into_bytes())
            .collect();
        assert!(lines.len() > CHUNK_BYTES);
        // A line past the bound in an object of more than a chunk: the streaming names it.
        let mut long = lines.clone();
        long.extend(std::iter::repeat_n(b'x', 2 << 20));
        long.extend_from_slice(b"\nend\n");
        let limits = DecodeLimits {
            max_line_bytes: 4096,
            ..DecodeLimits::default()
        };
        let Err(e) = chunks(&gz(&long), &limits) else {
            panic!("the line bound was not hit");
        };
        assert_eq!(e.line, Some(400_001), "{e}");
        assert!(e.reason.contains("longer than 4096 bytes"), "{e}");
        // Past the per-object bound: not decoded whole, and the stream stops at the bound.
        let small = DecodeLimits {
            max_object_bytes: (lines.len() / 2) as u64,
            ..DecodeLimits::default()
        };
        let Err(e) = chunks(&gz(&lines), &small) else {
            panic!("the object bound was not hit");
        };
        assert!(e.reason.contains("per-object bound"), "{e}");
        assert_eq!(longest_line(b"ab\nabcd\n\nabc"), 4);
        assert_eq!(longest_line(b""), 0);
    }

    #[test]
    fn small_objects_decode_whole_with_every_member_and_the_same_errors() {
        let a: Vec<u8> = (0..2000)
            .flat_map(|i| format!("a {i}\n").into_bytes())
            .collect();
        let raw = [gz(&a), gz(b"b\nc"), gz(&a)].concat();
        let (got, calls) = chunks(&raw, &DecodeLimits::default()).unwrap();
        assert_eq!(got, [&a[..], b"b\nc", &a[..]].concat());
        assert_eq!(calls, 1, "a small object is one chunk");
        // Corrupt, or lying about its size in its trailer: decoded by streaming, which names
        // the error as it always has.
        let mut bad = gz(&a);
        let at = bad.len() - 6;
        bad[at] ^= 1;
        let e = chunks(&bad, &DecodeLimits::default()).unwrap_err();
        assert!(e.reason.starts_with("gzip: "), "{e}");
        let big: Vec<u8> = (0..200_000)
            .flat_map(|i| format!("{i}\n").into_bytes())
            .collect();
        let mut lying = gz(&big);
        let n = lying.len();
        lying[n - 4..].copy_from_slice(&100u32.to_le_bytes());
        let e = chunks(&lying, &DecodeLimits::default()).unwrap_err();
        assert!(e.reason.starts_with("gzip: "), "{e}");
        // The object bound holds on the fast path too.
        let small = DecodeLimits {
            max_object_bytes: 1000,
            ..DecodeLimits::default()
        };
        let e = chunks(&gz(&a), &small).unwrap_err();
        assert!(e.reason.contains("more than 1000 B"), "{e}");
    }

    #[test]
    fn a_long_line_is_an_error_at_its_line_without_holding_it() {
        let mut text = b"a\nb\n".to_vec();
        text.extend(std::iter::repeat_n(b'x', 3 << 20));
        let limits = DecodeLimits {
            max_line_bytes: 1000,
            ..DecodeLimits::default()
        };
        let e = chunks(&gz(&text), &limits).unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        assert!(e.reason.contains("longer than 1000 bytes"), "{e}");
    }

    #[test]
    fn a_gzip_bomb_stops_at_the_ratio_bound() {
        let bomb = gz(&vec![0u8; 64 << 20]);
        let limits = DecodeLimits::default();
        let e = with_text("bomb.gz", &bomb, &limits, |_| Ok(())).unwrap_err();
        assert!(e.reason.contains("gzip bomb"), "{e}");
        // A small bomb is stopped at the floor, and the reason says where.
        assert!(
            e.reason.contains(&format!("past {RATIO_FLOOR} bytes")),
            "{e}"
        );
        // Read as lines, zeros are one endless line: the line bound comes first.
        let e = chunks(&bomb, &limits).unwrap_err();
        assert!(e.reason.contains("the line bound"), "{e}");
        let lines = gz(&vec![b'\n'; 64 << 20]);
        let e = chunks(&lines, &limits).unwrap_err();
        assert!(e.reason.contains("gzip bomb"), "{e}");
        let small = DecodeLimits {
            max_object_bytes: 1000,
            ..limits
        };
        let e = with_text("big", &[b'a'; 2000], &small, |_| Ok(())).unwrap_err();
        assert!(e.reason.contains("more than 1000 B"), "{e}");
    }
}
