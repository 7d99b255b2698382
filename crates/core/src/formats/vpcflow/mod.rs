//! VPC flow logs: the field catalogue and the parser.

pub mod fields;
pub mod parse;

pub use parse::{ParseOptions, ParsedObject, parse_object, parse_text};
