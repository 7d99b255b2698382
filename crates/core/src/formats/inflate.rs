//! Whole-buffer gzip decoding with libdeflate, for objects whose text fits a buffer: about twice
//! the speed of the streaming decoder (zlib-rs through flate2) on flow-log objects, measured in
//! docs/architecture.md ("Inflating").
//!
//! It is only a fast path: whatever it cannot do — a text larger than the buffer, data that is
//! not gzip, a bad checksum — it reports as `None`, and the caller decodes the object again by
//! streaming, which names the error the way it always has. So error messages and bounds do not
//! depend on which decoder ran.
//!
//! This is the project's only `unsafe` code: the safe `libdeflater` wrapper does not expose
//! `libdeflate_gzip_decompress_ex`, the call that tells where a gzip member ends, and without it
//! the members after the first of a multi-member object (AWS concatenates them) would be lost.

#![allow(unsafe_code)]

use std::cell::RefCell;
use std::ptr::NonNull;

use libdeflate_sys::{
    libdeflate_alloc_decompressor, libdeflate_decompressor, libdeflate_free_decompressor,
    libdeflate_gzip_decompress_ex, libdeflate_result_LIBDEFLATE_SUCCESS,
};

/// Decodes every gzip member of `raw`, one after the other, into `out`, returning the bytes
/// written; `None` when they do not fit in `out` or `raw` is not wholly valid gzip (checksums
/// and sizes included).
pub fn gunzip_into(raw: &[u8], out: &mut [u8]) -> Option<usize> {
    DECOMPRESSOR.with_borrow_mut(|d| {
        if d.is_none() {
            *d = Decompressor::new();
        }
        d.as_mut()?.gunzip_into(raw, out)
    })
}

thread_local! {
    /// One decompressor per thread (about 10 KiB of tables), made on first use.
    static DECOMPRESSOR: RefCell<Option<Decompressor>> = const { RefCell::new(None) };
}

/// An owned `libdeflate_decompressor`.
struct Decompressor(NonNull<libdeflate_decompressor>);

impl Decompressor {
    /// `None` if libdeflate could not allocate one.
    fn new() -> Option<Self> {
        // SAFETY: no preconditions; the result is null or a decompressor we now own.
        NonNull::new(unsafe { libdeflate_alloc_decompressor() }).map(Self)
    }

    fn gunzip_into(&mut self, raw: &[u8], out: &mut [u8]) -> Option<usize> {
        let (mut read, mut written) = (0usize, 0usize);
        while read < raw.len() {
            let input = &raw[read..];
            let output = &mut out[written..];
            let (mut consumed, mut produced) = (0usize, 0usize);
            // SAFETY: the decompressor is ours and used by one thread at a time (`&mut self`);
            // libdeflate reads at most `input.len()` bytes from `input` and writes at most
            // `output.len()` bytes to `output`, both live borrows for the call; it writes the
            // two counts through pointers to locals.
            let result = unsafe {
                libdeflate_gzip_decompress_ex(
                    self.0.as_ptr(),
                    input.as_ptr().cast(),
                    input.len(),
                    output.as_mut_ptr().cast(),
                    output.len(),
                    &mut consumed,
                    &mut produced,
                )
            };
            // A member is at least 18 bytes: `consumed == 0` would loop forever, so it is
            // refused like any other failure rather than trusted.
            if result != libdeflate_result_LIBDEFLATE_SUCCESS
                || consumed == 0
                || consumed > input.len()
                || produced > output.len()
            {
                return None;
            }
            read += consumed;
            written += produced;
        }
        Some(written)
    }
}

impl Drop for Decompressor {
    fn drop(&mut self) {
        // SAFETY: allocated by `libdeflate_alloc_decompressor`, freed once, here.
        unsafe { libdeflate_free_decompressor(self.0.as_ptr()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::decode::tests::gz;
    use std::io::Read;

    fn flate2_text(raw: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(raw).read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn decodes_every_member_as_flate2_does() {
        let a: Vec<u8> = (0..5000)
            .flat_map(|i| format!("a {i}\n").into_bytes())
            .collect();
        let raw = [gz(&a), gz(b"second member\n"), gz(b""), gz(&a)].concat();
        let mut out = vec![0u8; 1 << 20];
        let n = gunzip_into(&raw, &mut out).expect("fits");
        assert_eq!(out[..n], flate2_text(&raw).unwrap()[..]);
        assert_eq!(n, 2 * a.len() + 14);
    }

    #[test]
    fn refuses_what_it_cannot_decode_whole() {
        let text = vec![b'x'; 10_000];
        let raw = gz(&text);
        // Too small a buffer, by one byte.
        let mut out = vec![0u8; text.len() - 1];
        assert_eq!(gunzip_into(&raw, &mut out), None);
        let mut out = vec![0u8; text.len()];
        assert_eq!(gunzip_into(&raw, &mut out), Some(text.len()));
        // A flipped bit (the CRC catches it), a cut trailer, trailing garbage.
        let mut flipped = raw.clone();
        let mid = flipped.len() / 2;
        flipped[mid] ^= 0x10;
        assert_eq!(gunzip_into(&flipped, &mut out), None);
        assert_eq!(gunzip_into(&raw[..raw.len() - 3], &mut out), None);
        let trailing = [raw.clone(), b"garbage".to_vec()].concat();
        assert_eq!(gunzip_into(&trailing, &mut out), None);
        assert!(flate2_text(&trailing).is_err(), "flate2 refuses it too");
        assert_eq!(gunzip_into(b"", &mut out), Some(0));
    }
}
