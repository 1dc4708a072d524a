//! Interim signatures (the lead's); replaced by the translation.
use bytes::{Bytes, BytesMut};

use super::{StreamTranslator, TranslateError};

/// Interim.
pub struct Translated {
    /// Interim.
    pub body: Bytes,
    /// Interim.
    pub include_usage: bool,
}
/// Interim.
pub fn request(
    _body: &[u8],
    _model: &str,
    _default_max_tokens: u32,
) -> Result<Translated, TranslateError> {
    Err(TranslateError::new("", "interim"))
}
/// Interim.
pub fn response(_body: &[u8], _created: u64) -> Result<Bytes, TranslateError> {
    Err(TranslateError::new("", "interim"))
}
/// Interim.
pub struct Stream;
impl Stream {
    /// Interim.
    pub fn new(_include_usage: bool, _created: u64) -> Self {
        Self
    }
}
impl StreamTranslator for Stream {
    fn events(&mut self, _events: &[u8], _out: &mut BytesMut) {}
    fn finish(&mut self, _out: &mut BytesMut) {}
    fn error_event(&self, _message: &str) -> Bytes {
        Bytes::new()
    }
}
