//! `weft-sdk`: the Rust SDK.
//!
//! Planned contents (issue "sdk"): enrollment, authentication, service listing, dial and
//! bind/accept over the edge protocol of `weft-wire`, with end-to-end encryption
//! compatible with OpenZiti's. This crate holds no code yet.
