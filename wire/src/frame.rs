//! The 20-byte frame prefix and the decoded frame.
//!
//! Layout (all integers little-endian; ziti-sdk-c 0.29.3 `inc_internal/message.h`,
//! openziti/channel v0.18.58 `message.go` "Channel V2 Wire Format"):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `03 06 09 0C` |
//! | 4 | 4 | content type (int32) |
//! | 8 | 4 | sequence (int32) |
//! | 12 | 4 | header block length (uint32) |
//! | 16 | 4 | body length (uint32) |
//! | 20 | H | header entries |
//! | 20+H | B | body |

use bytes::Bytes;

use crate::headers::{HeaderValue, Headers};
use crate::{ContentType, DecodeError, HeaderId, Limits, MessageError};

/// Magic bytes of a channel V2 frame.
pub const MAGIC_V2: [u8; 4] = [0x03, 0x06, 0x09, 0x0C];

/// Length of the fixed prefix in bytes.
pub const PREFIX_LEN: usize = 20;

/// Byte ranges of the prefix fields.
mod field {
    use std::ops::Range;
    pub(super) const MAGIC: Range<usize> = 0..4;
    pub(super) const CONTENT_TYPE: Range<usize> = 4..8;
    pub(super) const SEQUENCE: Range<usize> = 8..12;
    pub(super) const HEADERS_LEN: Range<usize> = 12..16;
    pub(super) const BODY_LEN: Range<usize> = 16..20;
}

/// The fixed 20-byte prefix of a frame, validated against [`Limits`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prefix {
    /// Content type of the frame.
    pub content_type: ContentType,
    /// Sender-assigned channel sequence.
    pub sequence: i32,
    /// Length of the header block.
    pub headers_len: u32,
    /// Length of the body.
    pub body_len: u32,
}

fn le4(bytes: &[u8; PREFIX_LEN], range: std::ops::Range<usize>) -> [u8; 4] {
    let mut out = [0u8; 4];
    // The ranges are the constants in `field`, all inside the 20-byte array.
    out.copy_from_slice(bytes.get(range).unwrap_or(&[0; 4]));
    out
}

impl Prefix {
    /// Parses a prefix and checks its lengths against `limits`.
    pub fn parse(bytes: &[u8; PREFIX_LEN], limits: &Limits) -> Result<Self, DecodeError> {
        let magic = le4(bytes, field::MAGIC);
        if magic != MAGIC_V2 {
            return Err(DecodeError::BadMagic(magic));
        }
        let prefix = Self {
            content_type: ContentType(i32::from_le_bytes(le4(bytes, field::CONTENT_TYPE))),
            sequence: i32::from_le_bytes(le4(bytes, field::SEQUENCE)),
            headers_len: u32::from_le_bytes(le4(bytes, field::HEADERS_LEN)),
            body_len: u32::from_le_bytes(le4(bytes, field::BODY_LEN)),
        };
        if prefix.headers_len > limits.max_headers_len {
            return Err(DecodeError::HeadersTooLong {
                len: prefix.headers_len,
                max: limits.max_headers_len,
            });
        }
        if prefix.body_len > limits.max_body_len {
            return Err(DecodeError::BodyTooLong {
                len: prefix.body_len,
                max: limits.max_body_len,
            });
        }
        Ok(prefix)
    }

    /// The prefix as bytes.
    pub fn to_bytes(&self) -> [u8; PREFIX_LEN] {
        let mut out = [0u8; PREFIX_LEN];
        let parts: [[u8; 4]; 5] = [
            MAGIC_V2,
            self.content_type.0.to_le_bytes(),
            self.sequence.to_le_bytes(),
            self.headers_len.to_le_bytes(),
            self.body_len.to_le_bytes(),
        ];
        for (chunk, part) in out.chunks_exact_mut(4).zip(parts) {
            chunk.copy_from_slice(&part);
        }
        out
    }

    /// Length of the whole frame: prefix, headers and body.
    ///
    /// Cannot overflow: both lengths are `u32` and `usize` is at least 64 bits on the
    /// targets we build for; on a 32-bit target the limits keep it far below `usize::MAX`.
    pub fn frame_len(&self) -> usize {
        PREFIX_LEN
            .saturating_add(self.headers_len as usize)
            .saturating_add(self.body_len as usize)
    }
}

/// One decoded frame. The header block and body are slices of the receive buffer
/// (reference-counted, never copied); the header block was validated when the frame
/// was decoded, so header look-ups cannot fail on structure.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    content_type: ContentType,
    sequence: i32,
    headers: Bytes,
    body: Bytes,
}

impl Frame {
    /// Builds a frame from a header block, validating the block.
    pub fn new(
        content_type: ContentType,
        sequence: i32,
        headers: Bytes,
        body: Bytes,
        limits: &Limits,
    ) -> Result<Self, DecodeError> {
        Headers::parse(&headers, limits.max_header_entries)?;
        Ok(Self {
            content_type,
            sequence,
            headers,
            body,
        })
    }

    /// Assembles a frame whose header block the decoder already validated.
    pub(crate) fn from_parts(
        content_type: ContentType,
        sequence: i32,
        headers: Bytes,
        body: Bytes,
    ) -> Self {
        Self {
            content_type,
            sequence,
            headers,
            body,
        }
    }

    /// Content type from the prefix.
    pub fn content_type(&self) -> ContentType {
        self.content_type
    }

    /// Channel sequence from the prefix.
    pub fn sequence(&self) -> i32 {
        self.sequence
    }

    /// The header entries.
    pub fn headers(&self) -> Headers<'_> {
        Headers::new_unchecked(&self.headers)
    }

    /// The raw header block.
    pub fn header_block(&self) -> &Bytes {
        &self.headers
    }

    /// The value of the first header entry with `id`.
    pub fn header(&self, id: HeaderId) -> Option<HeaderValue<'_>> {
        self.headers().get(id)
    }

    /// `Ok` when the frame has content type `expected`.
    pub fn expect_type(&self, expected: ContentType) -> Result<(), MessageError> {
        match self.content_type == expected {
            true => Ok(()),
            false => Err(MessageError::WrongContentType {
                expected,
                actual: self.content_type,
            }),
        }
    }

    /// The value of header `id`, which the message requires.
    pub fn require(&self, id: HeaderId) -> Result<HeaderValue<'_>, MessageError> {
        self.header(id).ok_or(MessageError::MissingHeader(id))
    }

    /// The body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// Takes the body out of the frame.
    pub fn into_body(self) -> Bytes {
        self.body
    }

    /// The prefix this frame encodes with.
    ///
    /// Lengths saturate at `u32::MAX`; a frame built by [`Frame::new`] from more than
    /// 4 GiB cannot be encoded and [`crate::encode::FrameEncoder`] reports it.
    pub fn prefix(&self) -> Prefix {
        Prefix {
            content_type: self.content_type,
            sequence: self.sequence,
            headers_len: u32::try_from(self.headers.len()).unwrap_or(u32::MAX),
            body_len: u32::try_from(self.body.len()).unwrap_or(u32::MAX),
        }
    }

    /// Length of the frame on the wire.
    pub fn encoded_len(&self) -> usize {
        PREFIX_LEN + self.headers.len() + self.body.len()
    }
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame")
            .field("content_type", &self.content_type)
            .field("sequence", &self.sequence)
            .field("headers", &self.headers())
            .field("body_len", &self.body.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_round_trip() {
        let p = Prefix {
            content_type: ContentType::DATA,
            sequence: -1,
            headers_len: 12,
            body_len: 3,
        };
        let bytes = p.to_bytes();
        assert_eq!(&bytes[..4], &MAGIC_V2);
        assert_eq!(Prefix::parse(&bytes, &Limits::DEFAULT), Ok(p));
        assert_eq!(p.frame_len(), 35);
    }

    #[test]
    fn prefix_rejects_bad_magic_and_lengths() {
        let mut bytes = Prefix {
            content_type: ContentType::HELLO,
            sequence: 0,
            headers_len: 0,
            body_len: 5000,
        }
        .to_bytes();
        assert_eq!(
            Prefix::parse(&bytes, &Limits::HELLO),
            Err(DecodeError::BodyTooLong {
                len: 5000,
                max: 4192
            })
        );
        bytes[3] = 0x0D;
        assert_eq!(
            Prefix::parse(&bytes, &Limits::HELLO),
            Err(DecodeError::BadMagic([3, 6, 9, 0x0D]))
        );
    }
}
