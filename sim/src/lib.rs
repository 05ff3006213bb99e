//! agent-relay-sim: a deterministic, seeded simulator for the sans-IO relay
//! core, in the style of TigerBeetle's VOPR and FoundationDB's simulation.
//!
//! One `u64` seed drives a [`rng::Rng`] that makes every choice of a
//! [`world`]: the relay configuration, which faults are on (swarm testing),
//! a guest agent model and SDK-like or malicious clients. Every core event
//! goes through one [`driver::Driver`], which runs the [`check::Checker`]
//! (a reference model, independent of the actors) after each step. A failing
//! run is recorded and shrunk into a [`case::Case`] that
//! `tests/sim_regressions.rs` replays forever.
//!
//! Modules refer to each other through `super::` so that the regression test
//! can include this library by path without a dependency on it.

pub mod case;
pub mod cbor;
pub mod check;
pub mod current;
pub mod driver;
pub mod event;
pub mod rng;
pub mod world;
