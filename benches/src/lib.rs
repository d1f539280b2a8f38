//! `weft-benches`: criterion micro-benchmarks (`cargo bench -p weft-benches`).
//!
//! - `codec`: decode and encode of 16 KiB Data frames and of streams of small frames.
//!
//! Shared inputs for the benches are built here so that tests can check them too.

use bytes::BytesMut;
use weft_wire::edge::Data;

/// A byte stream of `count` Data frames with `payload_len`-byte payloads on conn 1.
pub fn data_stream(count: usize, payload_len: usize) -> BytesMut {
    let payload = vec![0xA5u8; payload_len];
    let mut out = BytesMut::with_capacity(count * (payload_len + 64));
    for i in 0..count {
        let seq = u32::try_from(i + 1).unwrap_or(u32::MAX);
        let data = Data {
            conn_id: 1,
            seq,
            flags: 0,
            payload: &payload,
        };
        // Encoding into a growable buffer of small frames cannot fail.
        if data
            .encode(i32::try_from(i).unwrap_or(i32::MAX), &mut out)
            .is_err()
        {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_wire::{Decoded, Decoder, Limits};

    #[test]
    fn data_stream_decodes_to_count_frames() {
        let stream = data_stream(10, 100);
        let mut d = Decoder::new(Limits::DEFAULT);
        d.extend_from_slice(&stream);
        let mut n = 0;
        while let Ok(Decoded::Frame(f)) = d.decode() {
            assert_eq!(f.body().len(), 100);
            n += 1;
        }
        assert_eq!(n, 10);
    }
}
