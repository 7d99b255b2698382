//! VPC flow logs: the field catalogue, the parser, and the combiner that folds records by flow
//! key as they are parsed.

pub mod combine;
pub mod fields;
pub mod parse;

pub use combine::{Combiner, ObjectStats, combine_object};
pub use parse::{ParseOptions, ParsedObject, parse_object, parse_text};
