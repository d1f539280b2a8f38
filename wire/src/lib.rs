//! `weft-wire`: the sans-IO codec of every Weft protocol.
//!
//! - [`frame`], [`headers`], [`decode`], [`encode`]: OpenZiti channel V2 framing (a
//!   20-byte little-endian prefix, then header entries, then a body), the format of the
//!   edge, link and control protocols alike. See `docs/wire-format.md`.
//! - [`edge`]: the OpenZiti edge protocol spoken between SDKs and edge routers.
//! - [`link`]: Weft's router-to-router protocol.
//! - [`control`]: Weft's controller-to-router protocol (protobuf bodies).
//!
//! Nothing here performs I/O, reads a clock or spawns a task: a driver feeds received
//! bytes into a [`Decoder`] and writes what the encoders produce. Payloads leave the
//! decoder as reference-counted slices of its receive buffer, never copied; the
//! encoders write only the prefix and headers, so a driver sends head and payload as
//! one vectored write.
//!
//! ```
//! use bytes::BytesMut;
//! use weft_wire::edge::{Data, EdgeMessage};
//! use weft_wire::{Decoded, Decoder, Limits};
//!
//! let mut wire = BytesMut::new();
//! Data { conn_id: 1, seq: 1, flags: 0, payload: b"hi" }.encode(5, &mut wire)?;
//!
//! let mut decoder = Decoder::new(Limits::DEFAULT);
//! decoder.extend_from_slice(&wire);
//! let Decoded::Frame(frame) = decoder.decode()? else { unreachable!() };
//! let EdgeMessage::Data(data) = EdgeMessage::parse(&frame)? else { unreachable!() };
//! assert_eq!(data.payload, b"hi");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(clippy::disallowed_methods)] // sans-IO: no clock reads (clippy.toml)
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

pub mod content_type;
pub mod control;
pub mod decode;
pub mod edge;
pub mod encode;
pub mod error;
pub mod frame;
#[doc(hidden)]
/// The fuzz targets' entry points (`decode_frame`, `control_link`): only under `cargo fuzz`
/// (`--cfg fuzzing`) and in this crate's tests, which replay the corpora.
#[cfg(any(test, fuzzing))]
pub mod fuzzing;
pub mod header_id;
pub mod headers;
pub mod limits;
pub mod link;
mod named;
pub mod payload;

pub use content_type::ContentType;
pub use decode::{Decoded, Decoder};
pub use encode::FrameEncoder;
pub use error::{DecodeError, EncodeError, MessageError, ValueError};
pub use frame::{Frame, MAGIC_V2, PREFIX_LEN, Prefix};
pub use header_id::HeaderId;
pub use headers::{HeaderValue, Headers};
pub use limits::Limits;
