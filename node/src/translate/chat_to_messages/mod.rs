//! Placeholder until the translation lands; see `mod.rs`.
