//! The thin unsafe layer over libsodium (`libsodium-sys-stable`): initialisation,
//! `crypto_kx` key pairs and session keys, and `crypto_secretstream_xchacha20poly1305`.
//!
//! This is the only module of the crate that may use `unsafe`. Every function here takes
//! Rust arrays or slices whose lengths are checked (by the type or at run time) before the
//! call, so the raw pointers handed to libsodium always cover exactly the bytes that the C
//! prototype documents. Callers above this module never see a raw pointer. The in-place
//! `push`/`pull` hand libsodium a message whose plaintext and ciphertext share an address
//! (`c == m`, one byte after the message's start): libsodium documents that for its stream
//! ciphers, not for secretstream, so this relies on how secretstream is written in the
//! libsodium that `libsodium-sys-stable` pins (1.0.21: the MAC is computed over the
//! ciphertext before decrypting, after encrypting), which the tests check byte for byte.
//!
//! Reference: libsodium `src/libsodium/crypto_kx/crypto_kx.c` and
//! `src/libsodium/crypto_secretstream/xchacha20poly1305/secretstream_xchacha20poly1305.c`
//! (`sod` in edge-wire-protocol.md §0), whose semantics are summarised in
//! edge-wire-protocol.md §5.
#![allow(unsafe_code)]

use std::sync::OnceLock;

use libsodium_sys as ffi;
use zeroize::Zeroize;

/// `crypto_kx_PUBLICKEYBYTES` (libsodium `crypto_kx.h`).
pub(crate) const KX_PUBLIC_KEY_BYTES: usize = 32;
/// `crypto_kx_SECRETKEYBYTES` (libsodium `crypto_kx.h`).
pub(crate) const KX_SECRET_KEY_BYTES: usize = 32;
/// `crypto_kx_SEEDBYTES` (libsodium `crypto_kx.h`).
pub(crate) const KX_SEED_BYTES: usize = 32;
/// `crypto_kx_SESSIONKEYBYTES` (libsodium `crypto_kx.h`).
pub(crate) const KX_SESSION_KEY_BYTES: usize = 32;
/// `crypto_secretstream_xchacha20poly1305_KEYBYTES`
/// (libsodium `crypto_secretstream_xchacha20poly1305.h`).
pub(crate) const SS_KEY_BYTES: usize = 32;
/// `crypto_secretstream_xchacha20poly1305_HEADERBYTES`
/// (libsodium `crypto_secretstream_xchacha20poly1305.h`).
pub(crate) const SS_HEADER_BYTES: usize = 24;
/// `crypto_secretstream_xchacha20poly1305_ABYTES`: one encrypted tag byte plus the 16-byte
/// Poly1305 MAC (libsodium `crypto_secretstream_xchacha20poly1305.h`).
pub(crate) const SS_ABYTES: usize = 17;
/// `crypto_secretstream_xchacha20poly1305_TAG_REKEY`: a message after which both sides
/// re-key (libsodium `crypto_secretstream_xchacha20poly1305.h`).
const SS_TAG_REKEY: u8 = 0x02;
/// Length of a Poly1305 MAC (`crypto_onetimeauth_poly1305_BYTES`).
pub(crate) const MAC_BYTES: usize = 16;
/// Length of a ChaCha20 block (`crypto_stream_chacha20_ietf`'s block).
pub(crate) const CHACHA_BLOCK_BYTES: usize = 64;
/// `crypto_secretstream_xchacha20poly1305_TAG_MESSAGE`
/// (libsodium `crypto_secretstream_xchacha20poly1305.h`).
pub(crate) const SS_TAG_MESSAGE: u8 = 0x00;

// The bindings' constants must agree with ours (a mismatch fails the build, not a test).
const _: () = {
    assert!(KX_PUBLIC_KEY_BYTES == ffi::crypto_kx_PUBLICKEYBYTES as usize);
    assert!(KX_SECRET_KEY_BYTES == ffi::crypto_kx_SECRETKEYBYTES as usize);
    assert!(KX_SEED_BYTES == ffi::crypto_kx_SEEDBYTES as usize);
    assert!(KX_SESSION_KEY_BYTES == ffi::crypto_kx_SESSIONKEYBYTES as usize);
    assert!(SS_KEY_BYTES == ffi::crypto_secretstream_xchacha20poly1305_KEYBYTES as usize);
    assert!(SS_HEADER_BYTES == ffi::crypto_secretstream_xchacha20poly1305_HEADERBYTES as usize);
    assert!(SS_ABYTES == ffi::crypto_secretstream_xchacha20poly1305_ABYTES as usize);
    assert!(SS_TAG_MESSAGE as u32 == ffi::crypto_secretstream_xchacha20poly1305_TAG_MESSAGE);
    assert!(SS_TAG_REKEY as u32 == ffi::crypto_secretstream_xchacha20poly1305_TAG_REKEY);
    assert!(MAC_BYTES == ffi::crypto_onetimeauth_poly1305_BYTES as usize);
    assert!(SS_ABYTES == 1 + MAC_BYTES);
    assert!(super::Tag::MESSAGE.0 as u32 == ffi::crypto_secretstream_xchacha20poly1305_TAG_MESSAGE);
    assert!(super::Tag::PUSH.0 as u32 == ffi::crypto_secretstream_xchacha20poly1305_TAG_PUSH);
    assert!(super::Tag::REKEY.0 as u32 == ffi::crypto_secretstream_xchacha20poly1305_TAG_REKEY);
    assert!(super::Tag::FINAL.0 as u32 == ffi::crypto_secretstream_xchacha20poly1305_TAG_FINAL);
    // The state is k[32] ‖ nonce[12] ‖ _pad[8]; the Drop impls below zero all three.
    assert!(size_of::<ffi::crypto_secretstream_xchacha20poly1305_state>() == 52);
};

/// libsodium could not be initialised (`sodium_init()` returned -1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InitFailed;

/// Calls `sodium_init()` exactly once per process and remembers whether it worked.
///
/// Every public entry point of the crypto module that reaches libsodium first goes through
/// this (directly, or by requiring a value whose constructor did).
pub(crate) fn ensure_init() -> Result<(), InitFailed> {
    static INIT: OnceLock<bool> = OnceLock::new();
    let ok = *INIT.get_or_init(|| {
        // SAFETY: `sodium_init` takes no arguments, is documented as thread-safe and
        // idempotent (returns 0 on first success, 1 if already initialised, -1 on failure).
        let rc = unsafe { ffi::sodium_init() };
        rc >= 0
    });
    if ok { Ok(()) } else { Err(InitFailed) }
}

/// The largest plaintext one secretstream message may carry
/// (`crypto_secretstream_xchacha20poly1305_messagebytes_max()`); libsodium aborts the
/// process (`sodium_misuse`) beyond it, so callers check first.
pub(crate) fn secretstream_message_max() -> usize {
    // SAFETY: a pure getter of a compile-time constant; no arguments, no state.
    unsafe { ffi::crypto_secretstream_xchacha20poly1305_messagebytes_max() }
}

/// `crypto_kx_keypair`: a fresh random X25519 key pair. Requires [`ensure_init`].
pub(crate) fn kx_keypair(pk: &mut [u8; KX_PUBLIC_KEY_BYTES], sk: &mut [u8; KX_SECRET_KEY_BYTES]) {
    // SAFETY: `pk` and `sk` are exclusive references to arrays of exactly
    // crypto_kx_PUBLICKEYBYTES / crypto_kx_SECRETKEYBYTES bytes, which is all the function
    // writes. It cannot fail (it returns crypto_scalarmult_base's result, always 0 for a
    // clamped random scalar), so its return value carries no information.
    let _ = unsafe { ffi::crypto_kx_keypair(pk.as_mut_ptr(), sk.as_mut_ptr()) };
}

/// `crypto_kx_seed_keypair`: the key pair derived from a 32-byte seed
/// (sk = BLAKE2b-256(seed), pk = X25519(sk, 9)). Requires [`ensure_init`].
pub(crate) fn kx_seed_keypair(
    pk: &mut [u8; KX_PUBLIC_KEY_BYTES],
    sk: &mut [u8; KX_SECRET_KEY_BYTES],
    seed: &[u8; KX_SEED_BYTES],
) {
    // SAFETY: `pk`/`sk` are exclusive 32-byte arrays (the sizes the function writes) and
    // `seed` is a 32-byte array (crypto_kx_SEEDBYTES, the size it reads); they cannot
    // overlap because `&mut` and `&` borrows are disjoint.
    let _ = unsafe { ffi::crypto_kx_seed_keypair(pk.as_mut_ptr(), sk.as_mut_ptr(), seed.as_ptr()) };
}

/// Session keys as `(rx, tx)`. Zeroed on drop by the caller's wrapper.
pub(crate) type RxTx = ([u8; KX_SESSION_KEY_BYTES], [u8; KX_SESSION_KEY_BYTES]);

/// The X25519 shared point was all zero (a low-order peer key); libsodium returns -1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KxFailed;

/// `crypto_kx_client_session_keys(rx, tx, client_pk, client_sk, server_pk)`. Requires
/// [`ensure_init`].
pub(crate) fn kx_client_session_keys(
    client_pk: &[u8; KX_PUBLIC_KEY_BYTES],
    client_sk: &[u8; KX_SECRET_KEY_BYTES],
    server_pk: &[u8; KX_PUBLIC_KEY_BYTES],
) -> Result<RxTx, KxFailed> {
    let mut rx = [0u8; KX_SESSION_KEY_BYTES];
    let mut tx = [0u8; KX_SESSION_KEY_BYTES];
    // SAFETY: `rx`/`tx` are distinct local 32-byte arrays (crypto_kx_SESSIONKEYBYTES, the
    // size written to each); the three inputs are 32-byte arrays (PUBLICKEYBYTES /
    // SECRETKEYBYTES, the sizes read) borrowed immutably, so nothing written is also read.
    let rc = unsafe {
        ffi::crypto_kx_client_session_keys(
            rx.as_mut_ptr(),
            tx.as_mut_ptr(),
            client_pk.as_ptr(),
            client_sk.as_ptr(),
            server_pk.as_ptr(),
        )
    };
    if rc == 0 {
        Ok((rx, tx))
    } else {
        // libsodium leaves the outputs untouched on failure; zero them anyway.
        rx.zeroize();
        tx.zeroize();
        Err(KxFailed)
    }
}

/// `crypto_kx_server_session_keys(rx, tx, server_pk, server_sk, client_pk)`. Requires
/// [`ensure_init`].
pub(crate) fn kx_server_session_keys(
    server_pk: &[u8; KX_PUBLIC_KEY_BYTES],
    server_sk: &[u8; KX_SECRET_KEY_BYTES],
    client_pk: &[u8; KX_PUBLIC_KEY_BYTES],
) -> Result<RxTx, KxFailed> {
    let mut rx = [0u8; KX_SESSION_KEY_BYTES];
    let mut tx = [0u8; KX_SESSION_KEY_BYTES];
    // SAFETY: as in `kx_client_session_keys`: two distinct writable 32-byte locals and three
    // read-only 32-byte arrays, exactly the sizes in the C prototype.
    let rc = unsafe {
        ffi::crypto_kx_server_session_keys(
            rx.as_mut_ptr(),
            tx.as_mut_ptr(),
            server_pk.as_ptr(),
            server_sk.as_ptr(),
            client_pk.as_ptr(),
        )
    };
    if rc == 0 {
        Ok((rx, tx))
    } else {
        rx.zeroize();
        tx.zeroize();
        Err(KxFailed)
    }
}

/// libsodium's secretstream state (`k[32] ‖ nonce[12] ‖ _pad[8]`), shared by both
/// halves: what they do to it outside libsodium's `push`/`pull`. Zeroed on drop.
pub(crate) struct StreamState {
    raw: ffi::crypto_secretstream_xchacha20poly1305_state,
}

/// The secretstream key and 12-byte ChaCha20 nonce of the next message: `k` and
/// `nonce` (= 4-byte little-endian counter ‖ 8-byte `inonce`) of libsodium's state, the
/// key and nonce its `push` and `pull` hand to `crypto_stream_chacha20_ietf`.
pub(crate) struct MessageKey<'a> {
    /// The stream's current ChaCha20 key.
    pub(crate) key: &'a [u8; SS_KEY_BYTES],
    /// The next message's nonce.
    pub(crate) nonce: &'a [u8; 12],
}

impl StreamState {
    /// An all-zero state, to be filled by `init_push` / `init_pull`.
    fn empty() -> Self {
        Self {
            raw: ffi::crypto_secretstream_xchacha20poly1305_state {
                k: [0; 32],
                nonce: [0; 12],
                _pad: [0; 8],
            },
        }
    }

    /// The key and nonce of the next message.
    pub(crate) fn message_key(&self) -> MessageKey<'_> {
        MessageKey {
            key: &self.raw.k,
            nonce: &self.raw.nonce,
        }
    }

    /// What libsodium's `push` and `pull` do to the state once a message's MAC is known
    /// (`secretstream_xchacha20poly1305.c`): `inonce ^= mac[..8]`, the 32-bit counter
    /// incremented (`sodium_increment`), and a re-key
    /// (`crypto_secretstream_xchacha20poly1305_rekey`) when the tag asks for one or the
    /// counter wrapped to zero. For messages sealed, or opened with a verified MAC,
    /// outside libsodium; returns whether the key changed.
    pub(crate) fn advance(&mut self, mac: &[u8; MAC_BYTES], tag: u8) -> bool {
        let (counter, inonce) = self.raw.nonce.split_at_mut(4);
        for (n, m) in inonce.iter_mut().zip(mac) {
            *n ^= m;
        }
        let mut next = [0u8; 4];
        next.copy_from_slice(counter);
        let next = u32::from_le_bytes(next).wrapping_add(1);
        counter.copy_from_slice(&next.to_le_bytes());
        if tag & SS_TAG_REKEY != 0 || next == 0 {
            // SAFETY: `self.raw` is an exclusively borrowed, initialised state of the C
            // layout; rekey reads and writes only its `k` and `nonce` fields.
            unsafe { ffi::crypto_secretstream_xchacha20poly1305_rekey(&raw mut self.raw) };
            return true;
        }
        false
    }

    /// Whether the state's key was replaced by the message just processed: a re-key
    /// resets the counter to 1 (`_crypto_secretstream_xchacha20poly1305_counter_reset`),
    /// which an increment otherwise only reaches from 0, a value the counter never keeps
    /// (a wrap to 0 re-keys at once).
    fn rekeyed(&self) -> bool {
        self.raw.nonce[..4] == [1, 0, 0, 0]
    }
}

#[cfg(test)]
impl StreamState {
    /// Sets the 32-bit message counter (tests reach its wrap-around).
    pub(crate) fn set_counter(&mut self, counter: u32) {
        self.raw.nonce[..4].copy_from_slice(&counter.to_le_bytes());
    }
}

impl Drop for StreamState {
    fn drop(&mut self) {
        self.raw.k.zeroize();
        self.raw.nonce.zeroize();
        self.raw._pad.zeroize();
    }
}

/// ChaCha20 (IETF: 32-bit counter, 12-byte nonce) key stream block number `counter`
/// (`crypto_stream_chacha20_ietf_xor_ic` over 64 zero bytes).
pub(crate) fn chacha20_ietf_block(
    key: &[u8; SS_KEY_BYTES],
    nonce: &[u8; 12],
    counter: u32,
) -> [u8; CHACHA_BLOCK_BYTES] {
    let mut block = [0u8; CHACHA_BLOCK_BYTES];
    let ptr = block.as_mut_ptr();
    // SAFETY: input and output are the same 64-byte local array (libsodium's stream
    // functions allow `c == m` exactly); `nonce` is 12 bytes
    // (crypto_stream_chacha20_ietf_NONCEBYTES) and `key` 32 (KEYBYTES), the sizes read.
    // It always returns 0.
    let _ = unsafe {
        ffi::crypto_stream_chacha20_ietf_xor_ic(
            ptr,
            ptr,
            CHACHA_BLOCK_BYTES as u64,
            nonce.as_ptr(),
            counter,
            key.as_ptr(),
        )
    };
    block
}

/// The push (encrypting) half of a secretstream, holding libsodium's state by value.
/// Zeroed on drop.
pub(crate) struct PushState {
    state: StreamState,
}

impl PushState {
    /// `crypto_secretstream_xchacha20poly1305_init_push`: a new stream keyed with `key`
    /// and its random 24-byte header. Requires [`ensure_init`].
    pub(crate) fn init(key: &[u8; SS_KEY_BYTES]) -> (Self, [u8; SS_HEADER_BYTES]) {
        let mut this = Self {
            state: StreamState::empty(),
        };
        let mut header = [0u8; SS_HEADER_BYTES];
        // SAFETY: `this.state` is a valid, exclusively borrowed state struct of the exact C
        // layout (`#[repr(C)]` binding); `header` is a writable 24-byte array (HEADERBYTES,
        // the size written); `key` is a readable 32-byte array (KEYBYTES, the size read).
        // init_push always returns 0.
        let _ = unsafe {
            ffi::crypto_secretstream_xchacha20poly1305_init_push(
                &raw mut this.state.raw,
                header.as_mut_ptr(),
                key.as_ptr(),
            )
        };
        (this, header)
    }

    /// `crypto_secretstream_xchacha20poly1305_push` of `m` with no additional data; returns
    /// whether the key changed (a re-key).
    ///
    /// The caller guarantees `out.len() == m.len() + SS_ABYTES` and
    /// `m.len() <= secretstream_message_max()`; if either does not hold this writes nothing
    /// and returns `None` (it never lets libsodium abort or overrun).
    pub(crate) fn push(&mut self, m: &[u8], out: &mut [u8], tag: u8) -> Option<bool> {
        if m.len() > secretstream_message_max() || Some(out.len()) != m.len().checked_add(SS_ABYTES)
        {
            return None;
        }
        let mlen = u64::try_from(m.len()).ok()?;
        // SAFETY: `out` is an exclusive slice of exactly mlen + ABYTES bytes, the number push
        // writes; `m` is a readable slice of mlen bytes, and `out` cannot overlap it (a
        // `&mut` slice is disjoint from any live `&` slice). mlen is within
        // MESSAGEBYTES_MAX (checked above), so libsodium's misuse abort cannot fire. The
        // additional data is (NULL, 0), which libsodium accepts. `clen_p` may be NULL.
        // `self.state` was initialised by init_push. push returns 0 in every case that
        // does not abort.
        let _ = unsafe {
            ffi::crypto_secretstream_xchacha20poly1305_push(
                &raw mut self.state.raw,
                out.as_mut_ptr(),
                std::ptr::null_mut(),
                m.as_ptr(),
                mlen,
                std::ptr::null(),
                0,
                tag,
            )
        };
        Some(self.state.rekeyed())
    }

    /// `crypto_secretstream_xchacha20poly1305_push` in place: `msg` is the message's
    /// room, `[tag byte][plaintext][MAC_BYTES]`, the plaintext already where its
    /// ciphertext goes. Returns whether the key changed (a re-key), or `None` without
    /// calling libsodium if `msg` is shorter than [`SS_ABYTES`] or the plaintext longer
    /// than [`secretstream_message_max`].
    pub(crate) fn push_in_place(&mut self, msg: &mut [u8], tag: u8) -> Option<bool> {
        let mlen = msg.len().checked_sub(SS_ABYTES)?;
        if mlen > secretstream_message_max() {
            return None;
        }
        let mlen64 = u64::try_from(mlen).ok()?;
        let out = msg.as_mut_ptr();
        // SAFETY: `out` covers mlen + ABYTES bytes, exactly what push writes; the
        // plaintext it reads is the mlen bytes at out + 1, inside the same exclusive
        // borrow. push writes the encrypted tag byte to out[0] (not part of the
        // plaintext) and the ciphertext to out + 1, the plaintext's own address: its
        // ChaCha20 pass (crypto_stream_chacha20_ietf_xor_ic) allows `c == m` exactly, and
        // it reads the ciphertext back for the MAC only after writing it; the MAC goes
        // after the ciphertext. No Rust reference to `msg` is live during the call. mlen is
        // within MESSAGEBYTES_MAX (checked), additional data is (NULL, 0), `clen_p` NULL.
        let _ = unsafe {
            ffi::crypto_secretstream_xchacha20poly1305_push(
                &raw mut self.state.raw,
                out,
                std::ptr::null_mut(),
                out.add(1),
                mlen64,
                std::ptr::null(),
                0,
                tag,
            )
        };
        Some(self.state.rekeyed())
    }
}

#[cfg(test)]
impl PushState {
    /// A second state equal to this one (tests compare two implementations from one state).
    pub(crate) fn duplicate(&self) -> Self {
        Self {
            state: StreamState {
                raw: self.state.raw,
            },
        }
    }
}

/// The state's own operations ([`StreamState`]) on the push half.
impl std::ops::Deref for PushState {
    type Target = StreamState;
    fn deref(&self) -> &StreamState {
        &self.state
    }
}

impl std::ops::DerefMut for PushState {
    fn deref_mut(&mut self) -> &mut StreamState {
        &mut self.state
    }
}

/// The pull (decrypting) half of a secretstream, holding libsodium's state by value.
/// Zeroed on drop.
pub(crate) struct PullState {
    state: StreamState,
}

/// A secretstream message failed to authenticate (or was shorter than ABYTES).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PullFailed;

impl PullState {
    /// `crypto_secretstream_xchacha20poly1305_init_pull` with the peer's 24-byte header.
    /// Requires [`ensure_init`].
    pub(crate) fn init(key: &[u8; SS_KEY_BYTES], header: &[u8; SS_HEADER_BYTES]) -> Self {
        let mut this = Self {
            state: StreamState::empty(),
        };
        // SAFETY: `this.state` is a valid, exclusively borrowed state of the C layout;
        // `header` (24 bytes = HEADERBYTES) and `key` (32 bytes = KEYBYTES) are readable
        // arrays of exactly the sizes read. init_pull always returns 0.
        let _ = unsafe {
            ffi::crypto_secretstream_xchacha20poly1305_init_pull(
                &raw mut this.state.raw,
                header.as_ptr(),
                key.as_ptr(),
            )
        };
        this
    }

    /// `crypto_secretstream_xchacha20poly1305_pull` of `c` with no additional data; returns
    /// the message's tag and whether the key changed (a re-key). On failure the state is unchanged (libsodium only advances it
    /// after the MAC verifies) and `out` may have been left as it was.
    ///
    /// The caller guarantees `c.len() >= SS_ABYTES` and
    /// `out.len() == c.len() - SS_ABYTES`; if not, this returns `Err` without calling
    /// libsodium.
    pub(crate) fn pull(&mut self, c: &[u8], out: &mut [u8]) -> Result<(u8, bool), PullFailed> {
        let Some(mlen) = c.len().checked_sub(SS_ABYTES) else {
            return Err(PullFailed);
        };
        if out.len() != mlen || mlen > secretstream_message_max() {
            return Err(PullFailed);
        }
        let Ok(clen) = u64::try_from(c.len()) else {
            return Err(PullFailed);
        };
        let mut tag = 0u8;
        // SAFETY: `c` is a readable slice of clen >= ABYTES bytes (checked); `out` is an
        // exclusive slice of exactly clen - ABYTES bytes, the most pull writes, disjoint
        // from `c` by the borrow rules; mlen is within MESSAGEBYTES_MAX, so the misuse abort
        // cannot fire. `mlen_p` may be NULL; `tag_p` points at a local byte. The additional
        // data is (NULL, 0). `self.state` was initialised by init_pull.
        let rc = unsafe {
            ffi::crypto_secretstream_xchacha20poly1305_pull(
                &raw mut self.state.raw,
                out.as_mut_ptr(),
                std::ptr::null_mut(),
                &raw mut tag,
                c.as_ptr(),
                clen,
                std::ptr::null(),
                0,
            )
        };
        if rc == 0 {
            Ok((tag, self.state.rekeyed()))
        } else {
            Err(PullFailed)
        }
    }

    /// `crypto_secretstream_xchacha20poly1305_pull` in place: `msg` is the sealed
    /// message (`[encrypted tag][ciphertext][MAC]`); on success the plaintext is
    /// `msg[1..msg.len() - MAC_BYTES]` and this returns the tag and whether the key
    /// changed (a re-key). On failure the state is unchanged and `msg` unspecified.
    pub(crate) fn pull_in_place(&mut self, msg: &mut [u8]) -> Result<(u8, bool), PullFailed> {
        let mlen = msg.len().checked_sub(SS_ABYTES).ok_or(PullFailed)?;
        if mlen > secretstream_message_max() {
            return Err(PullFailed);
        }
        let Ok(clen) = u64::try_from(msg.len()) else {
            return Err(PullFailed);
        };
        let mut tag = 0u8;
        let base = msg.as_mut_ptr();
        // SAFETY: `base` covers clen >= ABYTES bytes, all read as the sealed message; the
        // plaintext (at most mlen bytes) is written to base + 1, where its ciphertext
        // lies: pull checks the MAC over the ciphertext first, then decrypts with
        // crypto_stream_chacha20_ietf_xor_ic, which allows `m == c` exactly; the tag byte
        // is read into a local before anything is written. No Rust reference to `msg` is
        // live during the call. mlen is within MESSAGEBYTES_MAX, additional data (NULL,
        // 0), `mlen_p` NULL, `tag_p` a local.
        let rc = unsafe {
            ffi::crypto_secretstream_xchacha20poly1305_pull(
                &raw mut self.state.raw,
                base.add(1),
                std::ptr::null_mut(),
                &raw mut tag,
                base,
                clen,
                std::ptr::null(),
                0,
            )
        };
        if rc == 0 {
            Ok((tag, self.state.rekeyed()))
        } else {
            Err(PullFailed)
        }
    }
}

/// The state's own operations ([`StreamState`]) on the pull half.
impl std::ops::Deref for PullState {
    type Target = StreamState;
    fn deref(&self) -> &StreamState {
        &self.state
    }
}

impl std::ops::DerefMut for PullState {
    fn deref_mut(&mut self) -> &mut StreamState {
        &mut self.state
    }
}
