//! The JSON the nodes speak, as types: the admin API's answers
//! ([`admin`], and the tenants' in [`tenants`]) and the OpenAI wire shapes Meridian writes itself
//! ([`openai`]). The server serializes them, and the CLI, the demo, the
//! chaos runner and the tests read them, so a renamed field breaks the
//! build instead of a dashboard.
//!
//! The field names and shapes are the wire contract: a change here is a
//! change every client sees. Each type round-trips, and parses the literal
//! JSON the node wrote before these types existed (see the tests).

pub mod admin;
pub mod openai;
pub mod tenants;

#[cfg(test)]
mod tests;
