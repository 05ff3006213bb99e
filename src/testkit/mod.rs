//! Support for the tests, the simulator, the fuzz targets and the benches
//! (feature `testing`): nothing here is used by the relay itself.
//!
//! - [`frames`]: the one frame builder, both generations, over the wire
//!   layer's real encoders, with the hand-encoded fast paths the simulator
//!   needs.

pub mod frames;
