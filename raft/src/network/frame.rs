//! Reading and writing one [`proto::codec`] frame on a QUIC stream, with a
//! size limit checked before anything is allocated for the frame.

use proto::codec::{self, CodecError, HEADER_LEN};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why a frame could not be sent or received.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The frame is malformed, of an unknown version, or over the limit.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The stream ended or broke before the whole frame was read.
    #[error("reading frame: {0}")]
    Read(#[from] quinn::ReadExactError),
    /// The stream broke while the frame was written.
    #[error("writing frame: {0}")]
    Write(#[from] quinn::WriteError),
}

impl FrameError {
    /// The connection error under a stream error, if the whole connection
    /// (not just this stream) is gone.
    pub fn connection_error(&self) -> Option<&quinn::ConnectionError> {
        match self {
            Self::Read(quinn::ReadExactError::ReadError(quinn::ReadError::ConnectionLost(e)))
            | Self::Write(quinn::WriteError::ConnectionLost(e)) => Some(e),
            _ => None,
        }
    }
}

/// Encodes `value` and writes it as one frame, refusing (without sending
/// anything) a frame whose version byte and body exceed `max` bytes.
/// Answers the bytes written, length prefix included (for the transport's
/// traffic counters).
pub async fn write_frame<T: Serialize>(
    send: &mut quinn::SendStream,
    value: &T,
    max: usize,
) -> Result<usize, FrameError> {
    let frame = codec::encode(value)?;
    let len = frame.len() - HEADER_LEN;
    if len > max {
        return Err(CodecError::TooLarge { len, max }.into());
    }
    send.write_all(&frame).await?;
    Ok(frame.len())
}

/// Reads one frame and decodes it. The declared length is checked against
/// `max` before the body is allocated or read.
pub async fn read_frame<T: DeserializeOwned>(
    recv: &mut quinn::RecvStream,
    max: usize,
) -> Result<T, FrameError> {
    Ok(read_frame_sized(recv, max).await?.0)
}

/// [`read_frame`], also answering the frame's bytes, length prefix included
/// (for the transport's traffic counters).
pub async fn read_frame_sized<T: DeserializeOwned>(
    recv: &mut quinn::RecvStream,
    max: usize,
) -> Result<(T, usize), FrameError> {
    let mut header = [0u8; HEADER_LEN];
    recv.read_exact(&mut header).await?;
    let len = codec::frame_len(header, max)?;
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body).await?;
    Ok((codec::decode(&body)?, HEADER_LEN + len))
}
