//! Differential: arbitrary bytes fed in arbitrary chunkings decode to exactly
//! the frames (and the error) of a one-shot decode; bytes are conserved
//! (taken + buffered == fed); the decoder never buffers more than one
//! maximum frame plus the last chunk; it never panics.

#![no_main]

use agent_relay::wire::{FrameDecoder, LEN_PREFIX, MAX_FRAME_LEN};
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    data: Vec<u8>,
    cuts: Vec<u16>,
}

fuzz_target!(|input: Input| {
    let data = &input.data;
    let mut one = FrameDecoder::new();
    one.extend(data);
    let mut want = Vec::new();
    let want_err = loop {
        match one.next_frame() {
            Ok(Some(f)) => want.push(f),
            Ok(None) => break None,
            Err(e) => break Some(e),
        }
    };

    let mut d = FrameDecoder::new();
    let mut got = Vec::new();
    let mut got_err = None;
    let (mut pos, mut taken) = (0usize, 0usize);
    let mut cuts = input.cuts.iter();
    while pos < data.len() && got_err.is_none() {
        let left = data.len() - pos;
        let n = cuts.next().map_or(left, |&c| usize::from(c) % left + 1);
        d.extend(&data[pos..pos + n]);
        pos += n;
        loop {
            match d.next_frame() {
                Ok(Some(f)) => {
                    taken += f.len();
                    got.push(f);
                }
                Ok(None) => break,
                Err(e) => {
                    got_err = Some(e);
                    break;
                }
            }
        }
        assert_eq!(taken + d.buffered(), pos, "bytes not conserved");
        assert!(
            d.buffered() <= LEN_PREFIX + MAX_FRAME_LEN as usize + n,
            "decoder buffers {} bytes",
            d.buffered()
        );
    }
    assert_eq!(got, want, "chunked frames differ from one-shot");
    assert_eq!(got_err, want_err, "chunked error differs from one-shot");
    if want_err.is_none() {
        assert_eq!(d.finish(), one.finish());
    }
});
