//! The guest's input: bytes from any chunking taken apart into frames,
//! lease records and corrupt stretches, one at a time, for the relay to
//! route (`relay.rs`).
//!
//! Rule `guest_resync`: input that is not a frame (an illegal length, an
//! undefined flags value, an envelope that does not decode, a bulk header
//! that does not check) is counted, reported and skipped up to the next
//! plausible frame start; it never reaches a client. What is a frame is the
//! generation's call (`Dialect::peek`): before ready, and in the legacy
//! generation, a type the relay does not know counts as not a frame; in the
//! current generation it is routed like any other. With range leases a
//! record carrying the lease magic is read as one (`lease.rs`) before any
//! look at it as a frame.

use std::borrow::Cow;
use std::ops::Range;

use super::dialect::{Dialect, Peeked};
use super::violation::GuestCorruption;
use crate::wire::lease::has_lease_magic;
use crate::wire::{Frame, FrameDecoder, MsgType, ZERO_COPY_MIN, peek_envelope, whole_frame_len};

/// A guest frame as the first look found it: its type (`None` for a raw
/// bulk record or a type the relay does not know), its generation, and where
/// its payload lies inside the body when the look could borrow it (so the
/// tap need not look again).
#[derive(Debug)]
pub(crate) struct GuestFrame {
    pub t: Option<MsgType>,
    pub v: u8,
    pub payload: Option<Range<usize>>,
    pub frame: Frame,
}

impl GuestFrame {
    /// Its payload: borrowed where the first look found it, else decoded.
    pub fn payload_bytes(&self) -> Option<Cow<'_, [u8]>> {
        match &self.payload {
            Some(range) => Some(Cow::Borrowed(&self.frame.body()[range.clone()])),
            None => peek_envelope(self.frame.body())
                .ok()
                .map(|env| Cow::Owned(env.payload.into_owned())),
        }
    }
}

/// The next thing the decoder holds whole, as [`GuestIn::decoded`] found
/// it. A frame or a record is taken with [`GuestIn::take`].
#[derive(Debug)]
pub(super) enum Next {
    /// A frame of this many bytes, and what the first look found in it.
    Frame(usize, Peeked),
    /// A range-lease record of this many bytes (the magic seen).
    Lease(usize),
    /// Corrupt input, skipped: what was wrong, and the bytes skipped.
    Corrupt(GuestCorruption, usize),
}

/// The guest channel's input side.
#[derive(Debug)]
pub(super) struct GuestIn {
    /// Bytes from the guest not yet taken as frames.
    decoder: FrameDecoder,
    /// The channel ended.
    gone: bool,
}

/// A read is taken apart in three steps, each judged by the dialect as it
/// is reached (a frame handled in between may have changed it: the ready
/// frame): [`GuestIn::held`] completes the frame the decoder holds the start
/// of, [`GuestIn::direct`] finds the frames wholly inside the read (copied
/// once, straight from it into buffers of their own), and what is left
/// goes into the decoder ([`GuestIn::extend`]), whose frames, records and
/// corrupt stretches [`GuestIn::decoded`] finds. The caller builds each frame
/// in place (returned through an enum or memory, a frame or its first look
/// cost a store-forwarding stall per frame).
impl GuestIn {
    pub fn new() -> GuestIn {
        GuestIn {
            decoder: FrameDecoder::new(),
            gone: false,
        }
    }

    /// A read that completes the small frame the decoder holds part of (the
    /// tail of the last read) hands the decoder only the bytes it misses, so
    /// the frames after it take the direct path instead of being copied into
    /// the decoder first: that frame's length and first look, to
    /// [`GuestIn::take`]. A completed frame that does not pass the first look
    /// is left in the decoder, and the rest of the read follows it there, as
    /// if this step did not exist: corruption is judged on the same bytes.
    pub fn held(&mut self, rest: &mut &[u8], dialect: &Dialect) -> Option<(usize, Peeked)> {
        let need = self
            .decoder
            .missing()
            .filter(|&n| n > 0 && n <= rest.len())?;
        if self.decoder.buffered() + need >= ZERO_COPY_MIN {
            // A large frame is split off the decoder's buffer without a copy;
            // the read goes in whole, as before, so the buffer grows once.
            return None;
        }
        self.decoder.extend(&rest[..need]);
        *rest = &rest[need..];
        let Ok(Some(total)) = self.decoder.peek_frame() else {
            return None;
        };
        let peeked = dialect.peek(&self.decoder.pending()[..total]).ok()?;
        Some((total, peeked))
    }

    /// The small frame at the front of `rest`, whole, that passes the first
    /// look, when the decoder holds nothing: its length and first look.
    #[inline(always)]
    pub fn direct(&self, rest: &[u8], dialect: &Dialect) -> Option<(usize, Peeked)> {
        if !self.decoder.is_idle() {
            return None;
        }
        let total = whole_frame_len(rest).filter(|&t| t < ZERO_COPY_MIN)?;
        // A failed look goes through the decoder, which reports it and
        // resynchronises.
        let peeked = dialect.peek(&rest[..total]).ok()?;
        Some((total, peeked))
    }

    /// The rest of a read goes into the decoder.
    pub fn extend(&mut self, rest: &[u8]) {
        self.decoder.extend(rest);
    }

    /// The next thing the decoder holds whole.
    pub fn decoded(&mut self, dialect: &Dialect) -> Option<Next> {
        let total = match self.decoder.peek_frame() {
            Ok(Some(total)) => total,
            Ok(None) => return None,
            Err(e) => return Some(self.corrupt(GuestCorruption::Frame(e))),
        };
        let whole = &self.decoder.pending()[..total];
        if dialect.reads_leases() && has_lease_magic(whole) {
            // Range leases: acknowledgements are read before frames.
            return Some(Next::Lease(total));
        }
        match dialect.peek(whole) {
            Ok(peeked) => Some(Next::Frame(total, peeked)),
            Err(e) => Some(self.corrupt(e)),
        }
    }

    /// Takes the frame (or record) of `total` bytes the decoder holds.
    pub fn take(&mut self, total: usize) -> Frame {
        self.decoder.take_frame(total)
    }

    /// Skips corrupt input up to the next plausible frame start.
    fn corrupt(&mut self, error: GuestCorruption) -> Next {
        let skipped = self.decoder.resync();
        Next::Corrupt(error, skipped)
    }

    /// Whether the channel ended.
    #[inline]
    pub fn is_gone(&self) -> bool {
        self.gone
    }

    /// The channel ended: what it left unfinished, if anything, as
    /// corruption (the bytes held).
    pub fn close(&mut self) -> Option<(GuestCorruption, usize)> {
        self.gone = true;
        let e = self.decoder.finish().err()?;
        Some((GuestCorruption::Frame(e), self.decoder.buffered()))
    }

    /// Bytes held: a partial frame.
    #[cfg(any(test, feature = "testing"))]
    pub fn buffered(&self) -> usize {
        self.decoder.buffered()
    }
}
