//! Payloads kept after decoding. A frame's body is a slice of the buffer it was decoded
//! from, so a body left waiting in a queue keeps that whole buffer alive; a short one
//! is better copied into memory of its own.

use bytes::Bytes;

/// Payloads shorter than this are copied out of the buffer they were decoded from by
/// [`detach`]; longer ones stay slices of it. A receive buffer is some tens of KiB or
/// more, so a slice of at least this much pins at most a few times its own size.
pub const COPY_BELOW: usize = 16 * 1024;

/// `payload`, copied into its own allocation when it is short (see [`COPY_BELOW`]); a
/// longer (or empty) one is returned as it is.
pub fn detach(payload: &Bytes) -> Bytes {
    match payload.len() < COPY_BELOW && !payload.is_empty() {
        true => Bytes::copy_from_slice(payload),
        false => payload.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_payloads_are_copied_out_and_large_ones_stay_slices() {
        let buffer = Bytes::from(vec![7u8; 3 * COPY_BELOW]);
        let small = buffer.slice(10..20);
        let large = buffer.slice(0..COPY_BELOW);
        let inside = buffer.as_ptr_range();
        assert!(!inside.contains(&detach(&small).as_ptr()), "a copy");
        assert_eq!(detach(&small), small);
        assert_eq!(detach(&large).as_ptr(), buffer.as_ptr(), "the same memory");
    }
}
