//! Error types of the codec.

use crate::{ContentType, HeaderId};

/// The byte stream is not a valid sequence of V2 frames. The connection that produced it
/// must be closed; the decoder will keep answering with the same error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The first four bytes are not the V2 magic `03 06 09 0C`.
    #[error("bad frame magic {0:02x?}, expected 03 06 09 0c")]
    BadMagic([u8; 4]),
    /// The header block is larger than the limit.
    #[error("header block of {len} bytes exceeds the limit of {max}")]
    HeadersTooLong {
        /// Length announced by the prefix.
        len: u32,
        /// Configured limit.
        max: u32,
    },
    /// The body is larger than the limit.
    #[error("body of {len} bytes exceeds the limit of {max}")]
    BodyTooLong {
        /// Length announced by the prefix.
        len: u32,
        /// Configured limit.
        max: u32,
    },
    /// The header block holds more entries than the limit.
    #[error("more than {max} header entries")]
    TooManyHeaders {
        /// Configured limit.
        max: u16,
    },
    /// A header entry's 8-byte id/length pair does not fit in the header block.
    #[error("truncated header entry at offset {offset} of the header block")]
    TruncatedHeader {
        /// Offset of the entry inside the header block.
        offset: usize,
    },
    /// A header entry's value runs past the end of the header block.
    #[error("header entry at offset {offset} has a value of {len} bytes that overruns the block")]
    HeaderOverrun {
        /// Offset of the entry inside the header block.
        offset: usize,
        /// Value length announced by the entry.
        len: u32,
    },
}

/// A header value does not have the encoding its id requires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValueError {
    /// The value's length is not the one the encoding needs.
    #[error("value has {actual} bytes, expected {expected}")]
    WrongLength {
        /// Required length.
        expected: usize,
        /// Actual length.
        actual: usize,
    },
    /// A string value is not UTF-8.
    #[error("value is not UTF-8")]
    NotUtf8,
    /// The value is outside the range its field allows.
    #[error("value {0} out of range")]
    OutOfRange(i64),
}

/// A frame is well formed but is not the message its content type promises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// The frame has another content type.
    #[error("expected content type {expected}, got {actual}")]
    WrongContentType {
        /// The content type the parser handles.
        expected: ContentType,
        /// The frame's content type.
        actual: ContentType,
    },
    /// A header the message needs is absent.
    #[error("missing header {0}")]
    MissingHeader(HeaderId),
    /// A header is present but badly encoded.
    #[error("header {id}: {error}")]
    BadHeader {
        /// The offending header.
        id: HeaderId,
        /// What is wrong with it.
        error: ValueError,
    },
    /// The body is badly encoded.
    #[error("body: {0}")]
    BadBody(ValueError),
    /// A protobuf body failed to decode.
    #[error("protobuf body of {0} does not decode")]
    BadProtobuf(ContentType),
}

/// A frame cannot be encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The header block would exceed the 4 GiB the prefix can describe.
    #[error("header block too long to encode")]
    HeadersTooLong,
    /// The body exceeds the 4 GiB the prefix can describe.
    #[error("body of {0} bytes too long to encode")]
    BodyTooLong(usize),
}
