//! The SDK side of the edge protocol: the sans-IO message layer and the tokio driver
//! of one router connection.

pub(crate) mod channel;
pub(crate) mod credit;
pub(crate) mod proto;
