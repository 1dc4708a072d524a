//! The node's log line, written with fewer formatting passes. At the
//! default filter (`info`) every request leaves an access line ("request
//! done"), and tracing-subscriber's default formatter spent about 8 % of a
//! proxied request's CPU on it: the timestamp's date arithmetic and seven
//! padded `write!`s for every line, and each field through `core::fmt` with
//! two styled (if plain) paints around its name. The layout is the same as
//! the default's, byte for byte ([`LineTime`] for the timestamp, in text and
//! JSON; [`LineFields`] for the fields of the text format; [`LineJson`] for
//! the JSON line), so what reads the log sees no change; the tests hold
//! every formatter to it.

mod fields;
mod json;
mod time;

#[cfg(test)]
mod json_tests;
#[cfg(test)]
mod tests;

pub use fields::LineFields;
pub use json::LineJson;
pub use time::LineTime;
