//! Admin CLI `weft` (placeholder until written).
