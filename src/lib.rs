//! agent-relay: multiplexes many SDK clients onto the one framed byte channel
//! of a microVM's guest agent (microsandbox protocol v1).
//!
//! Layers, each a module, arrows pointing down only:
//! - [`wire`]: frame decoder, envelope peek, the payloads the relay builds;
//! - [`core`]: the sans-IO [`core::Relay`] state machine;
//! - `shell`: the tokio driver (sockets, guest ports) and its exec.log
//!   writer, `shell::exec_log` (feature `shell`); `demo_agent` (feature
//!   `demo-agent`); `cli`;
//! - `testkit` (feature `testing`): the frame builder of the tests, the
//!   simulator, the fuzz targets and the benches.
//!
//! Built without default features, the library is `wire` and `core` only.

#![deny(missing_docs)]
#![warn(clippy::too_many_lines)]

#[cfg(feature = "cli")]
pub mod cli;
// An I/O error's cause in words, shared by the shell and the demo agent.
#[cfg(any(feature = "shell", feature = "demo-agent"))]
mod cause;
pub mod core;
#[cfg(feature = "demo-agent")]
pub mod demo_agent;
#[cfg(feature = "shell")]
pub mod shell;
#[cfg(feature = "testing")]
pub mod testkit;
pub mod wire;
