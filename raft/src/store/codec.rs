//! How every value the store keeps is turned into bytes: one leading format
//! byte, then the bincode 2 serde encoding under the standard configuration.
//!
//! All persistent encoding goes through here so that a later format change is
//! one new version byte and one new branch in [`decode`], not a migration of
//! scattered call sites. Snapshot data uses the same encoding, so what a leader
//! ships is what a follower stores.

use bincode::config::standard;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The format byte written in front of every stored value.
pub const FORMAT_VERSION: u8 = 1;

/// The most memory, in bytes as bincode counts it, that decoding one value
/// may claim. bincode allocates a string or sequence for the length its
/// prefix claims before reading the elements, so a damaged value (or a
/// snapshot from a peer) claiming 2^62 bytes would abort the process; under
/// the limit it is an error. Far above any real cluster state.
pub const DECODE_LIMIT: usize = 256 << 20;

/// Why a stored value could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// bincode refused the value.
    #[error("encoding failed: {0}")]
    Encode(#[from] bincode::error::EncodeError),
    /// The bytes are not a valid encoding of the expected type.
    #[error("decoding failed: {0}")]
    Decode(#[from] bincode::error::DecodeError),
    /// The value was written by a format this build does not know.
    #[error("unknown format version {found} (this build reads {FORMAT_VERSION})")]
    Version {
        /// The leading byte found.
        found: u8,
    },
    /// The value is empty: not even a format byte.
    #[error("empty value: no format byte")]
    Empty,
    /// The value decoded but bytes were left over, so it is not what was written.
    #[error("{0} trailing bytes after the value")]
    Trailing(usize),
}

/// Encodes `value` as the format byte followed by its bincode encoding.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = vec![FORMAT_VERSION];
    bincode::serde::encode_into_std_write(value, &mut out, standard())?;
    Ok(out)
}

/// Decodes bytes written by [`encode`], refusing unknown versions and
/// trailing bytes.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (&version, body) = bytes.split_first().ok_or(CodecError::Empty)?;
    if version != FORMAT_VERSION {
        return Err(CodecError::Version { found: version });
    }
    let config = standard().with_limit::<DECODE_LIMIT>();
    let (value, read) = bincode::serde::decode_from_slice(body, config)?;
    match body.len().saturating_sub(read) {
        0 => Ok(value),
        extra => Err(CodecError::Trailing(extra)),
    }
}
