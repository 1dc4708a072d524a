//! Interim signatures (the lead's); replaced by the translation.
use bytes::{Bytes, BytesMut};

use super::{StreamTranslator, TranslateError};

/// Interim.
pub fn request(_body: &[u8], _model: &str) -> Result<Bytes, TranslateError> {
    Err(TranslateError::new("", "interim"))
}
/// Interim.
pub fn response(_body: &[u8]) -> Result<Bytes, TranslateError> {
    Err(TranslateError::new("", "interim"))
}
/// Interim.
#[derive(Default)]
pub struct Stream;
impl Stream {
    /// Interim.
    pub fn new() -> Self {
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
