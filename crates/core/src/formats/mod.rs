//! Sources of records: one module per log format, and the decoding they share.

pub mod cloudtrail;
pub mod decode;
pub mod dns;
mod inflate;
pub mod vpcflow;
