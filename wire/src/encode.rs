//! Frame encoder: writes the prefix and header entries into a caller-owned buffer.
//!
//! The body is not copied: a driver sends the encoded head and the body as one vectored
//! write (`[head, body]`). [`Frame::encode`] and the typed messages offer a one-buffer
//! form for the rare case where a copy does not matter.

use bytes::{BufMut, BytesMut};

use crate::frame::{PREFIX_LEN, Prefix};
use crate::headers::ENTRY_OVERHEAD;
use crate::{ContentType, EncodeError, Frame, HeaderId};

/// Writes one frame head (prefix + headers) at the end of a buffer.
///
/// ```
/// use bytes::BytesMut;
/// use weft_wire::{ContentType, FrameEncoder, HeaderId};
///
/// let body = b"payload";
/// let mut head = BytesMut::new();
/// FrameEncoder::new(&mut head, ContentType::DATA, 7)
///     .i32(HeaderId::CONN_ID, 1)
///     .i32(HeaderId::SEQ, 1)
///     .finish(body.len())?;
/// assert_eq!(head.len(), 20 + 2 * 12);
/// # Ok::<(), weft_wire::EncodeError>(())
/// ```
#[derive(Debug)]
pub struct FrameEncoder<'b> {
    out: &'b mut BytesMut,
    start: usize,
    content_type: ContentType,
    sequence: i32,
    error: Option<EncodeError>,
}

impl<'b> FrameEncoder<'b> {
    /// Starts a frame at the end of `out`.
    pub fn new(out: &'b mut BytesMut, content_type: ContentType, sequence: i32) -> Self {
        let start = out.len();
        out.put_bytes(0, PREFIX_LEN);
        Self {
            out,
            start,
            content_type,
            sequence,
            error: None,
        }
    }

    /// Appends a header entry with raw bytes.
    pub fn bytes(&mut self, id: HeaderId, value: &[u8]) -> &mut Self {
        let Ok(len) = u32::try_from(value.len()) else {
            self.error = Some(EncodeError::HeadersTooLong);
            return self;
        };
        self.out.reserve(ENTRY_OVERHEAD + value.len());
        self.out.put_i32_le(id.0);
        self.out.put_u32_le(len);
        self.out.put_slice(value);
        self
    }

    /// Appends a header entry holding an int32 LE.
    pub fn i32(&mut self, id: HeaderId, value: i32) -> &mut Self {
        self.bytes(id, &value.to_le_bytes())
    }

    /// Appends a header entry holding a uint32 LE.
    pub fn u32(&mut self, id: HeaderId, value: u32) -> &mut Self {
        self.bytes(id, &value.to_le_bytes())
    }

    /// Appends a header entry holding a uint64 LE.
    pub fn u64(&mut self, id: HeaderId, value: u64) -> &mut Self {
        self.bytes(id, &value.to_le_bytes())
    }

    /// Appends a one-byte bool header entry (`01` or `00`).
    pub fn bool(&mut self, id: HeaderId, value: bool) -> &mut Self {
        self.bytes(id, &[u8::from(value)])
    }

    /// Appends a string header entry (no terminator).
    pub fn str(&mut self, id: HeaderId, value: &str) -> &mut Self {
        self.bytes(id, value.as_bytes())
    }

    /// Appends an entry only when `value` is `Some`.
    pub fn opt_bytes(&mut self, id: HeaderId, value: Option<&[u8]>) -> &mut Self {
        match value {
            Some(v) => self.bytes(id, v),
            None => self,
        }
    }

    /// Writes the prefix for a body of `body_len` bytes. The head is then complete;
    /// the caller sends the body after it.
    pub fn finish(&mut self, body_len: usize) -> Result<(), EncodeError> {
        if let Some(error) = self.error {
            self.out.truncate(self.start);
            return Err(error);
        }
        let headers_len = self.out.len() - self.start - PREFIX_LEN;
        let (Ok(headers_len), Ok(body_len)) = (u32::try_from(headers_len), u32::try_from(body_len))
        else {
            self.out.truncate(self.start);
            return Err(match u32::try_from(body_len) {
                Ok(_) => EncodeError::HeadersTooLong,
                Err(_) => EncodeError::BodyTooLong(body_len),
            });
        };
        let prefix = Prefix {
            content_type: self.content_type,
            sequence: self.sequence,
            headers_len,
            body_len,
        };
        if let Some(slot) = self.out.get_mut(self.start..self.start + PREFIX_LEN) {
            slot.copy_from_slice(&prefix.to_bytes());
        }
        Ok(())
    }

    /// Finishes and appends `body` to the same buffer (copies the body).
    pub fn finish_with_body(&mut self, body: &[u8]) -> Result<(), EncodeError> {
        self.finish(body.len())?;
        self.out.extend_from_slice(body);
        Ok(())
    }
}

impl Frame {
    /// Appends the whole frame (prefix, header block, body) to `out`.
    pub fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        if u32::try_from(self.header_block().len()).is_err() {
            return Err(EncodeError::HeadersTooLong);
        }
        if u32::try_from(self.body().len()).is_err() {
            return Err(EncodeError::BodyTooLong(self.body().len()));
        }
        out.reserve(self.encoded_len());
        out.extend_from_slice(&self.prefix().to_bytes());
        out.extend_from_slice(self.header_block());
        out.extend_from_slice(self.body());
        Ok(())
    }
}
