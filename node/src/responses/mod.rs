//! Placeholder until the Responses API lands.
