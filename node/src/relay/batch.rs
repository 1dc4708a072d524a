//! Whole events waiting to be written together: frames the upstream had
//! ready at once leave in one write.

use bytes::{Bytes, BytesMut};

/// Whole events waiting to be written together. One piece is kept as is;
/// only a second one costs a copy.
#[derive(Default)]
pub(super) struct Batch {
    first: Option<Bytes>,
    more: BytesMut,
}

/// A batch this large is written without waiting for more.
pub(super) const BATCH_MAX: usize = 64 * 1024;

impl Batch {
    pub(super) fn push(&mut self, data: Bytes) {
        if self.first.is_none() && self.more.is_empty() {
            self.first = Some(data);
            return;
        }
        if let Some(first) = self.first.take() {
            self.more.extend_from_slice(&first);
        }
        self.more.extend_from_slice(&data);
    }

    pub(super) fn len(&self) -> usize {
        self.first.as_ref().map_or(0, Bytes::len) + self.more.len()
    }

    pub(super) fn take(&mut self) -> Option<Bytes> {
        match self.first.take() {
            Some(first) => Some(first),
            None if self.more.is_empty() => None,
            None => Some(self.more.split().freeze()),
        }
    }
}
