//! How an encoding gets damaged on the way, shared by the property tests of
//! `proto/tests/fuzz.rs` and `raft/tests/fuzz.rs` (each includes this file
//! with `#[path]`), so both decoders meet the same hostile bytes.

use proptest::prelude::*;

/// A byte changed, bytes cut off or inserted, or a run overwritten with a
/// large length prefix.
#[derive(Debug, Clone)]
pub enum Damage {
    Flip {
        at: usize,
        xor: u8,
    },
    Truncate {
        keep: usize,
    },
    Insert {
        at: usize,
        bytes: Vec<u8>,
    },
    /// bincode's varint marker for a u64 followed by a big value: the
    /// length of a string or sequence an attacker would claim.
    HugeLength {
        at: usize,
        len: u64,
    },
}

/// Any one [`Damage`], huge claimed lengths among them.
pub fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(at, xor)| Damage::Flip { at, xor }),
        any::<usize>().prop_map(|keep| Damage::Truncate { keep }),
        (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(at, bytes)| Damage::Insert { at, bytes }),
        (
            any::<usize>(),
            prop_oneof![Just(u64::MAX), Just(1 << 62), Just(1 << 40), any::<u64>()]
        )
            .prop_map(|(at, len)| Damage::HugeLength { at, len }),
    ]
}

/// Applies `damage` to `bytes`, never touching the first `keep` bytes (a
/// header the test wants intact).
pub fn apply(bytes: &mut Vec<u8>, damage: &Damage, keep: usize) {
    let room = bytes.len().saturating_sub(keep).max(1);
    match damage {
        Damage::Flip { at, xor } => {
            if bytes.len() > keep {
                let i = keep + at % (bytes.len() - keep);
                bytes[i] ^= xor;
            }
        }
        Damage::Truncate { keep: k } => bytes.truncate(keep + k % room),
        Damage::Insert { at, bytes: extra } => {
            let i = (keep + at % room).min(bytes.len());
            bytes.splice(i..i, extra.iter().copied());
        }
        Damage::HugeLength { at, len } => {
            let i = (keep + at % room).min(bytes.len());
            let mut claim = vec![0xFD];
            claim.extend_from_slice(&len.to_le_bytes());
            let end = (i + claim.len()).min(bytes.len());
            bytes.splice(i..end, claim);
        }
    }
}
