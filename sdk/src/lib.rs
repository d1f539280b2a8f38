//! `weft-sdk`: the Rust SDK.
//!
//! Planned contents (issue "sdk"): enrollment, authentication, service listing, dial and
//! bind/accept over the edge protocol of `weft-wire`, with end-to-end encryption
//! compatible with OpenZiti's.
//!
//! So far: [`crypto`], the sans-IO end-to-end encryption of service data (libsodium
//! `crypto_kx` + `crypto_secretstream_xchacha20poly1305`, edge-wire-protocol.md §5).

pub mod crypto;
