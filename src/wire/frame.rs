//! Framing: `[len: u32 BE][id: u32 BE][flags: u8][body]`, decoded incrementally
//! from any chunking of a byte stream into whole frames that share the
//! decoder's allocation (no copy of the body).
//!
//! The decoder checks the length field as soon as its four bytes arrive, so an
//! absurd length is an error before a single byte of that size is buffered. It
//! never decides what to do about an error: the core closes a client, or
//! resynchronises the guest stream with [`FrameDecoder::resync`].

use bytes::{Buf, Bytes, BytesMut};

use super::bulk::{BULK_HEADER_LEN, plausible_bulk};
use super::{
    ENVELOPE_OPENING_LEN, FLAG_BULK, HEADER_LEN, LEN_PREFIX, MAX_FRAME_LEN, MIN_FRAME_LEN,
    PREFIX_LEN, be_u32, envelope_opening, flags_defined,
};

/// A length field outside `5..=4 MiB`, or a stream that ended mid-frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The length field is below the 5-byte header it must cover.
    TooShort {
        /// The length field as received.
        len: u32,
        /// The smallest legal length.
        min: u32,
    },
    /// The length field is above the 4 MiB limit.
    TooLarge {
        /// The length field as received.
        len: u32,
        /// The largest legal length.
        max: u32,
    },
    /// After [`FrameDecoder::resync`], the bytes kept as a possible frame
    /// start turned out, once enough of them arrived, not to be one.
    NoFrameStart,
    /// The stream ended inside a frame.
    Truncated {
        /// Bytes of the frame that did arrive.
        have: usize,
        /// Bytes the frame needed (prefix included), when the prefix arrived.
        need: Option<usize>,
    },
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            FrameError::TooShort { len, min } => write!(
                f,
                "frame length {len} is {} bytes below the minimum of {min} (id and flags)",
                min - len
            ),
            FrameError::TooLarge { len, max } => write!(
                f,
                "frame length {len} is {} bytes over the {max}-byte limit",
                len - max
            ),
            FrameError::NoFrameStart => {
                f.write_str("the bytes kept after a resync do not start a frame")
            }
            FrameError::Truncated {
                have,
                need: Some(need),
            } => write!(f, "stream ended mid-frame: {have} of {need} bytes arrived"),
            FrameError::Truncated { have, need: None } => write!(
                f,
                "stream ended mid-frame: {have} of the {LEN_PREFIX} length bytes arrived"
            ),
        }
    }
}

impl std::error::Error for FrameError {}

/// Frames at least this long are handed out without a copy from the buffer
/// they were decoded in; smaller ones get an allocation of their own.
pub(crate) const ZERO_COPY_MIN: usize = 64 << 10;

/// The size of the whole frame at the start of `bytes` (prefix included),
/// when its length field is legal and all of it is there.
pub(crate) fn whole_frame_len(bytes: &[u8]) -> Option<usize> {
    let len = be_u32(bytes, 0)?;
    check_len(len).ok()?;
    let total = LEN_PREFIX + len as usize;
    (bytes.len() >= total).then_some(total)
}

/// Checks a length field against the protocol limits.
pub fn check_len(len: u32) -> Result<(), FrameError> {
    if len < MIN_FRAME_LEN {
        Err(FrameError::TooShort {
            len,
            min: MIN_FRAME_LEN,
        })
    } else if len > MAX_FRAME_LEN {
        Err(FrameError::TooLarge {
            len,
            max: MAX_FRAME_LEN,
        })
    } else {
        Ok(())
    }
}

/// One whole frame, prefix included, exactly as it crossed the wire.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    bytes: Bytes,
}

impl Frame {
    /// A copy of bytes that hold exactly one frame with a legal length field
    /// (checked by the caller, e.g. with [`whole_frame_len`]).
    pub(crate) fn copy_of(bytes: &[u8]) -> Frame {
        debug_assert_eq!(whole_frame_len(bytes), Some(bytes.len()));
        Frame {
            bytes: Bytes::copy_from_slice(bytes),
        }
    }

    /// Builds a frame from its parts (one copy of the body).
    pub fn build(id: u32, flags: u8, body: &[u8]) -> Result<Frame, FrameError> {
        let len = u32::try_from(HEADER_LEN + body.len()).unwrap_or(u32::MAX);
        check_len(len)?;
        let mut buf = BytesMut::with_capacity(PREFIX_LEN + body.len());
        buf.extend_from_slice(&len.to_be_bytes());
        buf.extend_from_slice(&id.to_be_bytes());
        buf.extend_from_slice(&[flags]);
        buf.extend_from_slice(body);
        Ok(Frame {
            bytes: buf.freeze(),
        })
    }

    /// The correlation id from the header.
    pub fn id(&self) -> u32 {
        be_u32(&self.bytes, LEN_PREFIX).unwrap_or_default()
    }

    /// The flags byte from the header.
    pub fn flags(&self) -> u8 {
        self.bytes[PREFIX_LEN - 1]
    }

    /// The CBOR envelope after the header.
    pub fn body(&self) -> &[u8] {
        &self.bytes[PREFIX_LEN..]
    }

    /// The whole frame, prefix included.
    pub fn as_bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The whole frame, prefix included, by value.
    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }

    /// Bytes on the wire, prefix included.
    #[allow(clippy::len_without_is_empty)] // a frame is never empty
    pub fn len(&self) -> usize {
        self.bytes.len()
    }
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame")
            .field("id", &self.id())
            .field("flags", &self.flags())
            .field("len", &self.len())
            .finish()
    }
}

/// Incremental decoder: feed bytes in any chunking, take whole frames out.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: BytesMut,
    /// [`FrameDecoder::resync`] kept a candidate too short to judge: judge it
    /// before trusting its length field.
    unjudged: bool,
}

impl FrameDecoder {
    /// An empty decoder.
    pub fn new() -> FrameDecoder {
        FrameDecoder::default()
    }

    /// Appends received bytes.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    pub_if_testing! {
        /// The bytes received but not yet returned as frames.
        fn pending(&self) -> &[u8] {
            &self.buf
        }
    }

    /// The next whole frame, `Ok(None)` when more bytes are needed. On an
    /// error nothing is consumed: the caller closes the stream or calls
    /// [`FrameDecoder::resync`].
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        Ok(self.peek_frame()?.map(|total| self.take_frame(total)))
    }

    pub_if_testing! {
        /// The size of the next frame, prefix included, once all of it arrived;
        /// nothing is consumed, so the caller can inspect [`FrameDecoder::pending`]
        /// before it commits with [`FrameDecoder::take_frame`].
        fn peek_frame(&mut self) -> Result<Option<usize>, FrameError> {
            if self.unjudged {
                if self.buf.len() < JUDGED {
                    return Ok(None);
                }
                if !plausible_start(&self.buf) {
                    return Err(FrameError::NoFrameStart);
                }
                self.unjudged = false;
            }
            let Some(len) = be_u32(&self.buf, 0) else {
                return Ok(None);
            };
            check_len(len)?;
            let total = LEN_PREFIX + len as usize;
            // Nothing is reserved for the announced length: a peer's length field
            // never sizes an allocation by itself.
            Ok((self.buf.len() >= total).then_some(total))
        }
    }

    pub_if_testing! {
        /// Takes the frame [`FrameDecoder::peek_frame`] measured.
        ///
        /// # Panics
        /// If `total` is not the value `peek_frame` just returned.
        ///
        /// A frame of at least `ZERO_COPY_MIN` (64 KiB) bytes is split off the buffer
        /// without a copy (it fills most of the allocation it pins); a smaller one
        /// is copied into its own allocation, so a frame waiting in some queue never
        /// keeps a whole read buffer alive, and the buffer is reused in place.
        fn take_frame(&mut self, total: usize) -> Frame {
            debug_assert!(!self.unjudged && total <= self.buf.len());
            if total >= ZERO_COPY_MIN {
                return Frame {
                    bytes: self.buf.split_to(total).freeze(),
                };
            }
            let frame = Frame::copy_of(&self.buf[..total]);
            self.buf.advance(total);
            frame
        }
    }

    /// True when nothing is buffered and no resync candidate awaits judging:
    /// the next bytes start a frame.
    pub(crate) fn is_idle(&self) -> bool {
        self.buf.is_empty() && !self.unjudged
    }

    /// The bytes still missing from the frame the decoder holds part of,
    /// when its length prefix is there and legal; `None` otherwise (nothing
    /// held, a prefix not yet whole, a candidate not yet judged).
    pub(crate) fn missing(&self) -> Option<usize> {
        if self.unjudged || self.buf.is_empty() {
            return None;
        }
        let len = be_u32(&self.buf, 0)?;
        check_len(len).ok()?;
        (LEN_PREFIX + len as usize).checked_sub(self.buf.len())
    }

    pub_if_testing! {
        /// Drops the rest of the current frame after an error: at least one byte,
        /// then up to the next offset that could start a valid frame (a legal
        /// length, a defined flags value, and the canonical envelope opening
        /// `{"v": 1, "t": ...`). A candidate too short to judge is kept. Returns
        /// the number of bytes dropped.
        fn resync(&mut self) -> usize {
            let mut skip = 1.min(self.buf.len());
            while skip < self.buf.len() && !plausible_start(&self.buf[skip..]) {
                skip += 1;
            }
            self.buf.advance(skip);
            self.unjudged = self.buf.len() < JUDGED;
            skip
        }
    }

    /// Confirms the stream ended on a frame boundary.
    pub fn finish(&self) -> Result<(), FrameError> {
        match self.buf.len() {
            0 => Ok(()),
            have => Err(FrameError::Truncated {
                have,
                need: be_u32(&self.buf, 0).map(|len| LEN_PREFIX + len as usize),
            }),
        }
    }
}

/// Bytes needed to judge a candidate frame start fully.
const JUDGED: usize = PREFIX_LEN + ENVELOPE_OPENING_LEN;

/// Could a frame start here? A legal length, a defined flags value, and a
/// body that opens as our encoders open an envelope (any one-byte
/// generation), or, with the BULK flag, a plausible bulk header, or a
/// range-lease record. `true` also when too few bytes arrived to say no.
fn plausible_start(b: &[u8]) -> bool {
    if be_u32(b, 0).is_some_and(|len| check_len(len).is_err()) {
        return false;
    }
    let Some(&flags) = b.get(PREFIX_LEN - 1) else {
        return true; // too short to judge further
    };
    if !flags_defined(flags) {
        return false;
    }
    let body = &b[PREFIX_LEN..];
    if flags == 0 && body.starts_with(&super::lease::LEASE_MAGIC) {
        // A range-lease record (current generation) reads as one.
        let len = be_u32(b, 0).unwrap_or_default() as usize;
        return len + LEN_PREFIX == super::lease::LEASE_RECORD_LEN;
    }
    let (body_ok, min_body) = if flags == FLAG_BULK {
        (plausible_bulk(body), BULK_HEADER_LEN + 1)
    } else {
        (envelope_opening(body), ENVELOPE_OPENING_LEN)
    };
    let len = be_u32(b, 0).unwrap_or_default() as usize;
    body_ok && len >= HEADER_LEN + min_body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_bytes(id: u32, flags: u8, body: &[u8]) -> Vec<u8> {
        Frame::build(id, flags, body).unwrap().into_bytes().to_vec()
    }

    #[test]
    fn wire_decoder_yields_frames_across_any_split() {
        let mut stream = frame_bytes(7, 0, b"hello");
        stream.extend(frame_bytes(9, 1, b""));
        for cut in 0..=stream.len() {
            let mut d = FrameDecoder::new();
            d.extend(&stream[..cut]);
            let mut got = Vec::new();
            while let Some(f) = d.next_frame().unwrap() {
                got.push(f);
            }
            d.extend(&stream[cut..]);
            while let Some(f) = d.next_frame().unwrap() {
                got.push(f);
            }
            assert_eq!(got.len(), 2, "cut {cut}");
            assert_eq!(
                (got[0].id(), got[0].flags(), got[0].body()),
                (7, 0, &b"hello"[..])
            );
            assert_eq!(
                (got[1].id(), got[1].flags(), got[1].body()),
                (9, 1, &b""[..])
            );
            assert_eq!(d.buffered(), 0);
            d.finish().unwrap();
        }
    }

    #[test]
    fn wire_decoder_rejects_length_before_buffering_body() {
        let mut d = FrameDecoder::new();
        d.extend(&(MAX_FRAME_LEN + 3).to_be_bytes());
        assert_eq!(
            d.next_frame(),
            Err(FrameError::TooLarge {
                len: MAX_FRAME_LEN + 3,
                max: MAX_FRAME_LEN
            })
        );
        let msg = d.next_frame().unwrap_err().to_string();
        assert!(msg.contains("3 bytes over"), "{msg}");
        let mut d = FrameDecoder::new();
        d.extend(&4u32.to_be_bytes());
        assert_eq!(d.next_frame(), Err(FrameError::TooShort { len: 4, min: 5 }));
    }

    #[test]
    fn wire_length_limits_are_inclusive() {
        assert_eq!(check_len(MAX_FRAME_LEN), Ok(()));
        assert_eq!(check_len(MIN_FRAME_LEN), Ok(()));
        assert!(check_len(MAX_FRAME_LEN + 1).is_err());
        assert!(check_len(MIN_FRAME_LEN - 1).is_err());
        // A frame of exactly 4 MiB decodes (and is not copied again).
        let body = vec![0u8; MAX_FRAME_LEN as usize - HEADER_LEN];
        let mut d = FrameDecoder::new();
        d.extend(&frame_bytes(1, 0, &body));
        let f = d.next_frame().unwrap().unwrap();
        assert_eq!(f.len(), LEN_PREFIX + MAX_FRAME_LEN as usize);
    }

    #[test]
    fn wire_decoder_finish_inside_the_length_prefix() {
        let mut d = FrameDecoder::new();
        assert_eq!(d.finish(), Ok(()));
        d.extend(&[0, 0]);
        assert_eq!(d.buffered(), 2);
        assert_eq!(
            d.finish(),
            Err(FrameError::Truncated {
                have: 2,
                need: None
            })
        );
        // With all four length bytes in, the frame's size is known.
        d.extend(&[0, 9]);
        assert_eq!(
            d.finish(),
            Err(FrameError::Truncated {
                have: 4,
                need: Some(13)
            })
        );
    }

    #[test]
    fn wire_decoder_finish_reports_truncation() {
        let mut d = FrameDecoder::new();
        d.extend(&frame_bytes(1, 0, b"abc")[..6]);
        assert_eq!(d.next_frame(), Ok(None));
        assert_eq!(
            d.finish(),
            Err(FrameError::Truncated {
                have: 6,
                need: Some(12)
            })
        );
    }

    /// Regression (simulator seed 0x85): a candidate kept because it was too
    /// short to judge is judged once its bytes arrive, not trusted.
    #[test]
    fn wire_resync_rejudges_short_candidate() {
        let mut good = frame_bytes(3, 0, &[0xa3, 0x61, b'v', 0x01, 0x61, b't', 0x60]);
        let mut d = FrameDecoder::new();
        // Junk ending in `00 15 55 f2 f2`: a legal length, then too few bytes.
        d.extend(&[0xff, 0x4a, 0x17, 0x00, 0x15, 0x55, 0xf2, 0xf2]);
        assert_eq!(d.resync(), 3, "keeps the short candidate");
        assert_eq!(d.next_frame(), Ok(None));
        let mut rest = vec![0x84, 0x06, 0xba, 0x4e, 0x7a, 0xcb, 0xc0, 0xd1];
        rest.append(&mut good);
        d.extend(&rest);
        assert_eq!(d.next_frame(), Err(FrameError::NoFrameStart));
        d.resync();
        assert_eq!(d.next_frame().unwrap().map(|f| f.id()), Some(3));
    }

    #[test]
    fn wire_resync_skips_to_plausible_start() {
        let mut good = frame_bytes(3, 0, &[0xa3, 0x61, b'v', 0x01, 0x61, b't', 0x60]);
        let mut stream = vec![0xff, 0x00, 0x00, 0x00, 0x09, 0x42];
        let junk = stream.len();
        stream.append(&mut good);
        let mut d = FrameDecoder::new();
        d.extend(&stream);
        assert_eq!(d.resync(), junk);
        let f = d.next_frame().unwrap().unwrap();
        assert_eq!(f.id(), 3);
    }
}
