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

use bytes::Bytes;

use super::dialect::Dialect;
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

/// One thing the guest's input held.
#[derive(Debug)]
pub(super) enum GuestItem {
    Frame(GuestFrame),
    /// A range-lease record (its bytes, the magic seen).
    Lease(Bytes),
    /// Corrupt input, skipped: what was wrong, and the bytes skipped.
    Corrupt(GuestCorruption, usize),
}

/// One read being taken apart (see [`GuestIn::next`]).
#[derive(Debug)]
pub(super) struct Read<'a> {
    rest: &'a [u8],
    stage: Stage,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// The decoder may hold the start of a small frame this read completes.
    Held,
    /// Frames wholly inside the read, straight from it.
    Direct,
    /// The rest went into the decoder.
    Decoder,
}

impl Read<'_> {
    pub fn new(bytes: &[u8]) -> Read<'_> {
        Read {
            rest: bytes,
            stage: Stage::Held,
        }
    }
}

/// The guest channel's input side.
#[derive(Debug)]
pub(super) struct GuestIn {
    /// Bytes from the guest not yet taken as frames.
    decoder: FrameDecoder,
    /// The channel ended.
    pub gone: bool,
}

impl GuestIn {
    pub fn new() -> GuestIn {
        GuestIn {
            decoder: FrameDecoder::new(),
            gone: false,
        }
    }

    /// The next thing in `read`, each judged by `dialect` as it is reached
    /// (a frame handled in between may have changed it: the ready frame).
    /// Frames wholly inside the read are copied once, straight from it into
    /// buffers of their own; only a partial frame at the end (or anything
    /// the checks must look at) goes into the decoder.
    #[inline]
    pub fn next(&mut self, read: &mut Read<'_>, dialect: &Dialect) -> Option<GuestItem> {
        if read.stage == Stage::Held {
            read.stage = Stage::Direct;
            if let Some(f) = self.finish_held_frame(&mut read.rest, dialect) {
                return Some(GuestItem::Frame(f));
            }
        }
        if read.stage == Stage::Direct {
            if self.decoder.is_idle()
                && let Some(total) = whole_frame_len(read.rest)
                && total < ZERO_COPY_MIN
                && let Ok((t, v, payload)) = dialect.peek(&read.rest[..total])
            {
                let frame = Frame::copy_of(&read.rest[..total]);
                read.rest = &read.rest[total..];
                return Some(GuestItem::Frame(GuestFrame {
                    t,
                    v,
                    payload,
                    frame,
                }));
            }
            // Anything else (a failed look included: the decoder reports it
            // and resynchronises) goes through the decoder.
            self.decoder.extend(read.rest);
            read.rest = &[];
            read.stage = Stage::Decoder;
        }
        self.decoded(dialect)
    }

    /// A read that completes the small frame the decoder holds part of (the
    /// tail of the last read) hands the decoder only the bytes it misses, so
    /// the frames after it take the direct path instead of being copied into
    /// the decoder first. A completed frame that does not pass the first look
    /// is left in the decoder, and the rest of the read follows it there, as
    /// if this step did not exist: corruption is judged on the same bytes.
    fn finish_held_frame(&mut self, rest: &mut &[u8], dialect: &Dialect) -> Option<GuestFrame> {
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
        let (t, v, payload) = dialect.peek(&self.decoder.pending()[..total]).ok()?;
        let frame = self.decoder.take_frame(total);
        Some(GuestFrame {
            t,
            v,
            payload,
            frame,
        })
    }

    /// The next thing the decoder holds whole.
    fn decoded(&mut self, dialect: &Dialect) -> Option<GuestItem> {
        let total = match self.decoder.peek_frame() {
            Ok(Some(total)) => total,
            Ok(None) => return None,
            Err(e) => return Some(self.corrupt(GuestCorruption::Frame(e))),
        };
        let whole = &self.decoder.pending()[..total];
        if dialect.reads_leases() && has_lease_magic(whole) {
            // Range leases: acknowledgements are read before frames.
            let record = self.decoder.take_frame(total).into_bytes();
            return Some(GuestItem::Lease(record));
        }
        match dialect.peek(whole) {
            Ok((t, v, payload)) => {
                let frame = self.decoder.take_frame(total);
                Some(GuestItem::Frame(GuestFrame {
                    t,
                    v,
                    payload,
                    frame,
                }))
            }
            Err(e) => Some(self.corrupt(e)),
        }
    }

    /// Skips corrupt input up to the next plausible frame start.
    fn corrupt(&mut self, error: GuestCorruption) -> GuestItem {
        let skipped = self.decoder.resync();
        GuestItem::Corrupt(error, skipped)
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
