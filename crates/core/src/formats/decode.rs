//! Raw object bytes to text: gzip (possibly multi-member, as AWS concatenates) or plain,
//! bounded, into a per-thread buffer. Shared by every source.

use std::io::Read;

use flate2::read::MultiGzDecoder;

use crate::error::ParseError;

/// Runs `f` on the text of a raw object: gunzipped when it starts with the gzip magic bytes,
/// as it is otherwise.
pub fn with_text<T>(
    source: &str,
    raw: &[u8],
    f: impl FnOnce(&[u8]) -> Result<T, ParseError>,
) -> Result<T, ParseError> {
    if !raw.starts_with(&GZIP_MAGIC) {
        return f(raw);
    }
    // Decompress into a per-thread buffer reused across objects: fresh multi-megabyte buffers
    // per object cost more in page faults than the decompression itself.
    DECODE_BUFFER.with_borrow_mut(|buf| {
        buf.clear();
        MultiGzDecoder::new(raw)
            .take(MAX_DECODED_BYTES + 1)
            .read_to_end(buf)
            .map_err(|e| ParseError::whole(source, format!("gzip: {e}")))?;
        if buf.len() as u64 > MAX_DECODED_BYTES {
            *buf = Vec::new();
            return Err(ParseError::whole(
                source,
                format!(
                    "gzip: decompresses to more than {} GiB (a gzip bomb?)",
                    MAX_DECODED_BYTES >> 30
                ),
            ));
        }
        let out = f(buf);
        if buf.capacity() > MAX_KEPT_BUFFER {
            *buf = Vec::new();
        }
        out
    })
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// An object that decompresses to more than this is rejected (quarantined) rather than read: a
/// gzip bomb must not take the process's memory. AWS's own objects are far smaller (flow-log files
/// roll at 75 MB compressed, CloudTrail files at a few MB).
pub const MAX_DECODED_BYTES: u64 = 2 << 30;

/// A decode buffer larger than this is released after use rather than kept for the next object.
const MAX_KEPT_BUFFER: usize = 64 * 1024 * 1024;

thread_local! {
    static DECODE_BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}
