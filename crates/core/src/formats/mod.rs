//! Sources of records: one module per log format.

pub mod vpcflow;
