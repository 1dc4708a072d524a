//! The one codec of everything a node writes for another node or for its
//! own disk: Raft traffic between nodes (frames) and every value the Raft
//! store keeps (the log, the vote, the applied state, snapshots).
//!
//! Both start with the same version byte, [`VERSION`], followed by the
//! bincode 2 encoding (serde, standard configuration). A frame is
//! `u32 big-endian length | u8 version | body`, where the length counts the
//! version byte and the body; a stored value is `u8 version | body` (sled
//! keeps its length). The version byte is on every frame and value so that
//! the encoding can be swapped (bincode 3.0.0 is an empty release) without
//! guessing what a peer sent or an older build wrote: bincode is not
//! self-describing, so a frame or value of an unknown version is refused,
//! not misread. Snapshot data uses the value encoding, so what a leader
//! ships is what a follower stores.
//!
//! Everything here works on byte slices; reading a frame from a socket, with
//! its size limit, lives with the transport, and refusing a whole data dir
//! of another version lives with the store.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The encoding version this build writes, on the wire and on disk, and the
/// only one it reads. Version 5: upstreams carry their capacity
/// (`max_concurrency`, `rpm`). Version 4: keys carry their limits
/// (`KeyRecord::limits`), the state its tenants' ledger
/// (`ClusterState::tenancy`, `Command::AddCredits`, `Command::Tenancy`).
/// Version 3: upstreams carry `kind`,
/// `anthropic_version` and `responses`. Version 2: the cluster state
/// carries health reports (`Command::Report`, `ClusterState::health`).
/// bincode is not self-describing, so a store or peer of another version is
/// refused with a clear error instead of misread. (Until the two codecs
/// became this one, the store still wrote version 1 for the version 2
/// shape; such a data dir is refused too.)
pub const VERSION: u8 = 5;

/// Bytes of the length prefix.
pub const HEADER_LEN: usize = 4;

/// Why a frame or a stored value could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The value could not be encoded (a type serde cannot express in bincode).
    #[error("cannot encode frame body: {0}")]
    Encode(String),
    /// The body is not a valid encoding of the expected type.
    #[error("cannot decode frame body: {0}")]
    Decode(String),
    /// The frame or value was written by an encoding this build does not know.
    #[error("unknown encoding version {0} (this build speaks version {VERSION})")]
    UnknownVersion(u8),
    /// The frame or value ends before its body does, or has no version byte.
    #[error("truncated frame or value")]
    Truncated,
    /// The body decoded but bytes were left over: the frame is corrupt.
    #[error("{0} trailing bytes after the frame body")]
    Trailing(usize),
    /// The frame is larger than the receiver accepts (or than a `u32` counts).
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Declared or actual length of version byte and body.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// The most memory, in bytes as bincode counts it, that decoding one frame
/// or stored value may claim: four times the transport's default frame
/// limit, far above any real cluster state. bincode allocates a string or
/// sequence for the length its prefix claims before it reads the elements,
/// so without a limit a frame (or a damaged value, or a snapshot from a
/// peer) of a dozen bytes claiming 2^62 bytes aborts the process; under it,
/// such a claim is an error.
pub const DECODE_LIMIT: usize = 256 << 20;

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

fn decode_config() -> impl bincode::config::Config {
    config().with_limit::<DECODE_LIMIT>()
}

/// Encodes `value` as one whole frame: length prefix, version byte and body.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut frame = Vec::with_capacity(256);
    frame.extend_from_slice(&[0; HEADER_LEN]);
    frame.push(VERSION);
    bincode::serde::encode_into_std_write(value, &mut frame, config())
        .map_err(|e| CodecError::Encode(e.to_string()))?;
    let len = frame.len() - HEADER_LEN;
    let prefix = u32::try_from(len).map_err(|_| CodecError::TooLarge {
        len,
        max: u32::MAX as usize,
    })?;
    frame[..HEADER_LEN].copy_from_slice(&prefix.to_be_bytes());
    Ok(frame)
}

/// Reads a length prefix and checks it against `max` before anyone allocates
/// for the frame. Returns how many bytes (version byte and body) follow.
pub fn frame_len(header: [u8; HEADER_LEN], max: usize) -> Result<usize, CodecError> {
    let len = u32::from_be_bytes(header) as usize;
    if len == 0 {
        return Err(CodecError::Truncated);
    }
    if len > max {
        return Err(CodecError::TooLarge { len, max });
    }
    Ok(len)
}

/// Decodes what follows a length prefix: the version byte and the body. The
/// slice must hold exactly one body; a short or long one is refused.
pub fn decode<T: DeserializeOwned>(frame_body_with_version: &[u8]) -> Result<T, CodecError> {
    decode_versioned(frame_body_with_version)
}

/// Encodes `value` as it is stored: the version byte followed by its
/// bincode encoding. All persistent encoding goes through here so that a
/// later format change is one new version and one new branch in
/// [`decode_value`], not a migration of scattered call sites.
pub fn encode_value<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = vec![VERSION];
    bincode::serde::encode_into_std_write(value, &mut out, config())
        .map_err(|e| CodecError::Encode(e.to_string()))?;
    Ok(out)
}

/// Decodes a stored value written by [`encode_value`], refusing unknown
/// versions and trailing bytes.
pub fn decode_value<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    decode_versioned(bytes)
}

/// The length of `value`'s body as [`encode`] and [`encode_value`] write
/// it (without the version byte or length prefix), counted without
/// allocating: what the transport tallies per kind of log entry, so that
/// operators can see which writes fill the links.
pub fn encoded_len<T: Serialize>(value: &T) -> Result<usize, CodecError> {
    let mut size = bincode::enc::write::SizeWriter::default();
    bincode::serde::encode_into_writer(value, &mut size, config())
        .map_err(|e| CodecError::Encode(e.to_string()))?;
    Ok(size.bytes_written)
}

/// The version of a stored value or frame body, if it has a byte at all.
pub fn version_of(bytes: &[u8]) -> Option<u8> {
    bytes.first().copied()
}

/// The version byte, then exactly one body.
fn decode_versioned<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (&version, body) = bytes.split_first().ok_or(CodecError::Truncated)?;
    if version != VERSION {
        return Err(CodecError::UnknownVersion(version));
    }
    let (value, used) =
        bincode::serde::decode_from_slice(body, decode_config()).map_err(|e| match e {
            bincode::error::DecodeError::UnexpectedEnd { .. } => CodecError::Truncated,
            bincode::error::DecodeError::LimitExceeded => CodecError::Decode(format!(
                "a length in the frame claims more than {DECODE_LIMIT} bytes"
            )),
            other => CodecError::Decode(other.to_string()),
        })?;
    match body.len() - used {
        0 => Ok(value),
        extra => Err(CodecError::Trailing(extra)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::state::{Command, CommandResponse};

    fn split(frame: &[u8]) -> ([u8; HEADER_LEN], &[u8]) {
        let (header, rest) = frame.split_at(HEADER_LEN);
        (header.try_into().unwrap(), rest)
    }

    #[test]
    fn round_trip() {
        let command = Command::DeleteRoute {
            model: "fast".into(),
        };
        let frame = encode(&command).unwrap();
        let (header, rest) = split(&frame);
        assert_eq!(frame_len(header, 1 << 20).unwrap(), rest.len());
        assert_eq!(rest[0], VERSION);
        assert_eq!(decode::<Command>(rest).unwrap(), command);

        let response: Result<CommandResponse, String> =
            Ok(CommandResponse::Applied { changed: true });
        let frame = encode(&response).unwrap();
        let back: Result<CommandResponse, String> = decode(split(&frame).1).unwrap();
        assert_eq!(back, response);
    }

    #[test]
    fn encoded_len_is_the_body_length() {
        let value = ("a name", vec![1u64, 2, 3], Some(300u32));
        let stored = encode_value(&value).unwrap();
        assert_eq!(encoded_len(&value).unwrap(), stored.len() - 1);
        let frame = encode(&value).unwrap();
        assert_eq!(encoded_len(&value).unwrap(), frame.len() - HEADER_LEN - 1);
    }

    #[test]
    fn values_round_trip_with_the_version_byte_and_no_length() {
        let command = Command::DeleteRoute {
            model: "fast".into(),
        };
        let value = encode_value(&command).unwrap();
        assert_eq!(version_of(&value), Some(VERSION));
        assert_eq!(&value[1..], &encode(&command).unwrap()[HEADER_LEN + 1..]);
        assert_eq!(decode_value::<Command>(&value).unwrap(), command);

        let mut old = value.clone();
        old[0] = 1;
        assert!(matches!(
            decode_value::<Command>(&old),
            Err(CodecError::UnknownVersion(1))
        ));
        assert!(matches!(
            decode_value::<Command>(&[]),
            Err(CodecError::Truncated)
        ));
        let mut long = value;
        long.push(0);
        assert!(matches!(
            decode_value::<Command>(&long),
            Err(CodecError::Trailing(1))
        ));
    }

    #[test]
    fn unknown_version_is_refused() {
        let mut frame = encode(&7u64).unwrap();
        frame[HEADER_LEN] = VERSION + 1;
        assert!(matches!(
            decode::<u64>(split(&frame).1),
            Err(CodecError::UnknownVersion(v)) if v == VERSION + 1
        ));
    }

    #[test]
    fn truncated_is_refused() {
        let frame = encode(&"a string of some length".to_string()).unwrap();
        let rest = split(&frame).1;
        assert!(matches!(
            decode::<String>(&rest[..rest.len() - 3]),
            Err(CodecError::Truncated)
        ));
        assert!(matches!(decode::<String>(&[]), Err(CodecError::Truncated)));
        assert!(matches!(
            frame_len([0; HEADER_LEN], 10),
            Err(CodecError::Truncated)
        ));
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let frame = encode(&1u8).unwrap();
        let mut rest = split(&frame).1.to_vec();
        rest.push(0);
        assert!(matches!(decode::<u8>(&rest), Err(CodecError::Trailing(1))));
    }

    #[test]
    fn oversize_is_refused() {
        let frame = encode(&vec![0u8; 1000]).unwrap();
        let (header, _) = split(&frame);
        assert!(matches!(
            frame_len(header, 100),
            Err(CodecError::TooLarge { max: 100, .. })
        ));
        let huge = u32::MAX.to_be_bytes();
        assert!(matches!(
            frame_len(huge, 64 << 20),
            Err(CodecError::TooLarge { .. })
        ));
    }
}
