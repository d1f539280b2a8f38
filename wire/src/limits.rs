//! Size limits the decoder enforces before it allocates anything.

/// Limits on one frame, checked against the prefix before any byte of the frame is buffered
/// beyond the 20-byte prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest header block accepted, in bytes.
    pub max_headers_len: u32,
    /// Largest body accepted, in bytes.
    pub max_body_len: u32,
    /// Most header entries accepted in one frame.
    pub max_header_entries: u16,
}

impl Limits {
    /// Defaults for an established connection: 16 KiB of headers, 1 MiB of body, 64 entries.
    ///
    /// OpenZiti itself sets no limit on ordinary messages (the C SDK mallocs any length,
    /// channel v0.18.58 `ReadV2` too); a Data body from the C SDK is one `ziti_write`
    /// call, which the SDK's socket bridge keeps far below 1 MiB.
    pub const DEFAULT: Self = Self {
        max_headers_len: 16 * 1024,
        max_body_len: 1024 * 1024,
        max_header_entries: 64,
    };

    /// Limits for the first frame (the hello), which arrives before the peer is known.
    ///
    /// Modern openziti/channel reads a hello with headers <= 16384 and body <= 4192 bytes
    /// (`message.go` readHelloV2); we keep those and allow fewer entries.
    pub const HELLO: Self = Self {
        max_headers_len: 16 * 1024,
        max_body_len: 4192,
        max_header_entries: 32,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}
