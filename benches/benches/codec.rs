//! Decode and encode throughput of the V2 codec.
#![allow(missing_docs)]

fn main() {}
