//! Streaming decoder: bytes in, whole frames out.

use bytes::{Buf, BytesMut};

use crate::frame::{PREFIX_LEN, Prefix};
use crate::headers::Headers;
use crate::{DecodeError, Frame, Limits};

/// What [`Decoder::decode`] found in the buffered bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// No whole frame yet; at least `additional` more bytes are needed.
    NeedMore {
        /// Bytes still missing from the next frame (a lower bound while the prefix is
        /// incomplete).
        additional: usize,
    },
    /// One whole frame, removed from the buffer.
    Frame(Frame),
}

/// Turns any chunking of a byte stream into frames.
///
/// The driver either reads straight into [`Decoder::buffer_mut`] (no copy; reserve room
/// first, at least what [`Decoded::NeedMore`] asked for) or hands chunks to
/// [`Decoder::extend_from_slice`], then calls [`Decoder::decode`] until it answers
/// [`Decoded::NeedMore`]. Lengths are checked against the [`Limits`] as soon as the
/// 20-byte prefix is in, so a driver that reserves what `NeedMore` asks never grows the
/// buffer past a frame the limits allow. Decoded frames share the buffer's memory; once
/// they are dropped, the buffer reuses it, so a steady stream of frames allocates
/// nothing.
///
/// A malformed stream yields the same [`DecodeError`] on every later call: the
/// connection must be closed.
#[derive(Debug)]
pub struct Decoder {
    buf: BytesMut,
    limits: Limits,
    next: Option<Prefix>,
}

impl Decoder {
    /// A decoder with an empty buffer of `capacity` bytes.
    pub fn with_capacity(limits: Limits, capacity: usize) -> Self {
        Self {
            buf: BytesMut::with_capacity(capacity),
            limits,
            next: None,
        }
    }

    /// A decoder with a 64 KiB buffer.
    pub fn new(limits: Limits) -> Self {
        Self::with_capacity(limits, 64 * 1024)
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Changes the limits, for example from [`Limits::HELLO`] to [`Limits::DEFAULT`]
    /// once the hello is accepted. A prefix already parsed keeps the old check.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// The receive buffer, for reading directly into its spare capacity.
    pub fn buffer_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Appends received bytes.
    pub fn extend_from_slice(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes buffered and not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Decodes the next frame from the buffered bytes.
    pub fn decode(&mut self) -> Result<Decoded, DecodeError> {
        let prefix = match self.next {
            Some(prefix) => prefix,
            None => {
                let Some(bytes) = self.buf.first_chunk::<PREFIX_LEN>() else {
                    return Ok(Decoded::NeedMore {
                        additional: PREFIX_LEN - self.buf.len(),
                    });
                };
                let prefix = Prefix::parse(bytes, &self.limits)?;
                self.next = Some(prefix);
                prefix
            }
        };
        let frame_len = prefix.frame_len();
        if self.buf.len() < frame_len {
            // No reserve here: frames decoded earlier may still share the buffer, and
            // growing it now would allocate. The driver reserves before its next read,
            // by which time they are usually gone and the memory is reclaimed.
            return Ok(Decoded::NeedMore {
                additional: frame_len - self.buf.len(),
            });
        }
        let headers_len = prefix.headers_len as usize;
        let block = self
            .buf
            .get(PREFIX_LEN..PREFIX_LEN + headers_len)
            .unwrap_or_default();
        Headers::parse(block, self.limits.max_header_entries)?;

        let mut bytes = self.buf.split_to(frame_len).freeze();
        self.next = None;
        bytes.advance(PREFIX_LEN);
        let headers = bytes.split_to(headers_len);
        Ok(Decoded::Frame(Frame::from_parts(
            prefix.content_type,
            prefix.sequence,
            headers,
            bytes,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ContentType, FrameEncoder, HeaderId};

    fn sample(body: &[u8]) -> BytesMut {
        let mut out = BytesMut::new();
        FrameEncoder::new(&mut out, ContentType::DATA, 3)
            .i32(HeaderId::CONN_ID, 1)
            .i32(HeaderId::SEQ, 2)
            .finish(body.len())
            .unwrap();
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn byte_at_a_time() {
        let wire = sample(b"hello");
        let mut d = Decoder::new(Limits::DEFAULT);
        for (i, b) in wire.iter().enumerate() {
            assert!(matches!(d.decode(), Ok(Decoded::NeedMore { .. })), "at {i}");
            d.extend_from_slice(&[*b]);
        }
        let Ok(Decoded::Frame(f)) = d.decode() else {
            panic!("no frame")
        };
        assert_eq!(f.content_type(), ContentType::DATA);
        assert_eq!(f.sequence(), 3);
        assert_eq!(&f.body()[..], b"hello");
        assert_eq!(f.header(HeaderId::SEQ).unwrap().as_i32(), Ok(2));
        assert_eq!(d.decode(), Ok(Decoded::NeedMore { additional: 20 }));
    }

    #[test]
    fn need_more_reports_missing_bytes() {
        let wire = sample(b"hello");
        let mut d = Decoder::new(Limits::DEFAULT);
        d.extend_from_slice(&wire[..25]);
        assert_eq!(
            d.decode(),
            Ok(Decoded::NeedMore {
                additional: wire.len() - 25
            })
        );
    }

    #[test]
    fn over_limit_body_is_rejected_before_buffering() {
        let mut d = Decoder::with_capacity(Limits::HELLO, 32);
        let prefix = Prefix {
            content_type: ContentType::HELLO,
            sequence: 0,
            headers_len: 0,
            body_len: u32::MAX,
        };
        d.extend_from_slice(&prefix.to_bytes());
        let err = d.decode().unwrap_err();
        assert!(matches!(err, DecodeError::BodyTooLong { .. }));
        assert!(d.buffer_mut().capacity() < 1024);
        // Sticky: the same answer again.
        assert_eq!(d.decode(), Err(err));
    }

    #[test]
    fn malformed_header_block_is_an_error() {
        let mut wire = BytesMut::new();
        wire.extend_from_slice(
            &Prefix {
                content_type: ContentType::DATA,
                sequence: 0,
                headers_len: 9,
                body_len: 0,
            }
            .to_bytes(),
        );
        wire.extend_from_slice(&[0xe8, 3, 0, 0, 5, 0, 0, 0, 1]);
        let mut d = Decoder::new(Limits::DEFAULT);
        d.extend_from_slice(&wire);
        assert_eq!(
            d.decode(),
            Err(DecodeError::HeaderOverrun { offset: 0, len: 5 })
        );
    }
}
