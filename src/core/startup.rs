//! Start-up: the wait for the guest's `core.ready`, the cached ready frame,
//! the slots' layout, and whether the sandbox failed to start.
//!
//! Rule `init_before_ready` (the choice of generation at ready is the
//! dialect's: `dialect.rs`).
//!
//! Before `core.ready`, in any configuration: `core.init.resolved` of a
//! generation-2-or-later guest is answered with `core.init.ack {}`, and a
//! `core.error` on id 0 of kind `initialization_failed` with `core.init.ack
//! {failure: true}` and a start-up failure carrying the guest's words. A
//! 0.4.4 guest sends neither and cannot read the ack, so such frames with
//! `v = 1` are counted and dropped like any other before ready.
//! These acks are not charged to input credit (credit starts at ready). Every
//! other frame before ready is counted and dropped.
//!
//! At `core.ready` the ready frame is cached whole and served unchanged;
//! clients that waited get their slots, in arrival order, and their
//! handshakes. A configured generation fixes the slots from the start;
//! `Protocol::Auto` fixes them at ready.

use bytes::Bytes;

use super::guest::GuestFrame;
use super::layout::Layout;
use crate::wire::payload::{
    CoreError, INITIALIZATION_FAILED, InitAck, build_frame_v, decode_payload,
};
use crate::wire::{FLAG_TERMINAL, MsgType, peek_envelope};

/// The start-up state.
#[derive(Debug)]
pub(super) struct Startup {
    /// The guest's `core.ready` frame, whole, once it arrived.
    ready: Option<Bytes>,
    /// The slots' ranges, once the generation is known.
    layout: Option<Layout>,
    /// The sandbox could not start; nothing more is accepted.
    failed: bool,
}

impl Startup {
    /// Waiting for ready, with the slots' `layout` if the configuration
    /// fixes the generation.
    pub fn new(layout: Option<Layout>) -> Startup {
        Startup {
            ready: None,
            layout,
            failed: false,
        }
    }

    #[inline]
    pub fn layout(&self) -> Option<Layout> {
        self.layout
    }

    /// The generation fixed the slots.
    pub fn set_layout(&mut self, layout: Layout) {
        self.layout = Some(layout);
    }

    /// Slots known now.
    pub fn slots(&self) -> usize {
        self.layout.map_or(0, |l| l.slots() as usize)
    }

    /// The cached ready frame.
    pub fn ready(&self) -> Option<&Bytes> {
        self.ready.as_ref()
    }

    #[inline]
    pub fn is_ready(&self) -> bool {
        self.ready.is_some()
    }

    /// The guest is ready: its frame, cached.
    pub fn set_ready(&mut self, frame: Bytes) {
        self.ready = Some(frame);
    }

    pub fn failed(&self) -> bool {
        self.failed
    }

    /// The sandbox cannot start: false if that was known already.
    pub fn fail(&mut self) -> bool {
        !std::mem::replace(&mut self.failed, true)
    }
}

/// What a guest frame before ready is.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum BeforeReady {
    /// `core.ready`.
    Ready,
    /// A generation-2-or-later guest's `core.init.resolved`: acked, then
    /// dropped like the rest.
    InitResolved,
    /// A generation-2-or-later guest's initialization failure, in its words.
    InitFailed(String),
    /// Anything else: counted and dropped.
    Other,
}

/// What `f`, before ready, is. A generation-1 guest has no init exchange and
/// could not read the ack: only a newer guest's init frames are answered.
pub(super) fn before_ready(f: &GuestFrame) -> BeforeReady {
    match f.t {
        Some(MsgType::Ready) => BeforeReady::Ready,
        Some(MsgType::InitResolved) if f.v >= 2 => BeforeReady::InitResolved,
        Some(MsgType::CoreError) if f.frame.id() == 0 && f.v >= 2 => {
            let err = peek_envelope(f.frame.body())
                .ok()
                .and_then(|env| decode_payload::<CoreError>(&env.payload).ok());
            match err.filter(|e| e.kind == INITIALIZATION_FAILED) {
                Some(e) if f.frame.flags() == FLAG_TERMINAL => BeforeReady::InitFailed(e.message),
                _ => BeforeReady::Other,
            }
        }
        _ => BeforeReady::Other,
    }
}

/// The answer to the guest's init frame, in its own generation `v`.
pub(super) fn init_ack(v: u8, failure: bool) -> Bytes {
    build_frame_v(v, MsgType::InitAck, 0, &InitAck { failure }).into_bytes()
}

#[cfg(test)]
mod tests {
    use crate::wire::payload::ExecLimits;

    fn with(f: impl FnOnce(&mut ExecLimits)) -> Result<(), String> {
        let mut l = ExecLimits::default();
        f(&mut l);
        l.validate()
    }

    /// Each of 0.7.13's checks at its boundary: the last value it takes and
    /// the first it refuses.
    #[test]
    fn exec_limits_checked_at_each_boundary() {
        assert_eq!(with(|_| ()), Ok(()));
        assert!(with(|l| l.max_executions = 0).is_err());
        assert!(with(|l| l.stdin_chunk_size = 0).is_err());
        assert_eq!(with(|l| l.stdin_chunk_size = l.input_limit), Ok(()));
        assert!(with(|l| l.stdin_chunk_size = l.input_limit + 1).is_err());
        let max = (4 << 20) - 1024;
        let big = |l: &mut ExecLimits| {
            l.input_limit = 8 << 20;
            l.output_limit = 8 << 20;
        };
        assert_eq!(with(|l| (big(l), l.stdin_chunk_size = max).1), Ok(()));
        assert!(with(|l| (big(l), l.stdin_chunk_size = max + 1).1).is_err());
        assert_eq!(with(|l| (big(l), l.output_chunk_size = max).1), Ok(()));
        assert!(with(|l| (big(l), l.output_chunk_size = max + 1).1).is_err());
        assert!(with(|l| l.output_chunk_size = 0).is_err());
        assert_eq!(with(|l| l.output_chunk_size = l.output_limit - 256), Ok(()));
        assert!(with(|l| l.output_chunk_size = l.output_limit - 255).is_err());
    }
}
