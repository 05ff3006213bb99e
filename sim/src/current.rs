//! Facts of the current generation (`shared/PROTOCOL-CURRENT.md`) that the
//! guest model (`world/agentd.rs`) and the reference model
//! (`check/current.rs`) both need: the canonical slot step and the input
//! credit's starting grants. The core has its own copies (`src/core/layout.rs`,
//! `src/core/credit.rs`), so a wrong value here still disagrees with it.

/// Ids per slot in the current generation: `u32::MAX / 128`.
pub const STEP: u32 = u32::MAX / 128;

/// Bytes and frames of one credit class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    /// Bytes, each frame counted whole with its length prefix.
    pub bytes: u64,
    /// Frames.
    pub frames: u64,
}

/// The starting grants at ready, control then data: 8 MiB / 256 frames and
/// 32 MiB / 256 frames.
pub const START: [Window; 2] = [
    Window {
        bytes: 8 << 20,
        frames: 256,
    },
    Window {
        bytes: 32 << 20,
        frames: 256,
    },
];
