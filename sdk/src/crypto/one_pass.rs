//! Secretstream messages sealed and opened in one pass of aws-lc's ChaCha20-Poly1305.
//!
//! libsodium seals a secretstream message in two passes, ChaCha20 over the plaintext and
//! then Poly1305 over the ciphertext (`secretstream_xchacha20poly1305.c`): 1.31 GB/s for
//! 16 KiB messages on the 2-core Xeon of `docs/perf.md`. aws-lc's ChaCha20-Poly1305 AEAD
//! (RFC 8439 §2.8) interleaves both in one AVX2 pass: 1.87 GB/s there (ADR 0011).
//!
//! **Why the AEAD computes a secretstream message.** With additional data empty, libsodium's
//! `push` authenticates, under the Poly1305 key of ChaCha20 block 0 of the state's key and
//! 12-byte nonce: the 64-byte *tag block* (`[tag, 0, …, 0]` encrypted with block 1), the
//! ciphertext (the plaintext encrypted from block 2 on), `(0x10 - 64 + mlen) & 0xf` zero
//! bytes, `LE64(0)` and `LE64(64 + mlen)`. The AEAD over the plaintext `tag block ‖ m`
//! encrypts from block 1 on, so its ciphertext is `E(tag block) ‖ c`, and it authenticates
//! that ciphertext, zero bytes up to a multiple of 16, `LE64(0)` and `LE64(64 + mlen)`.
//! The two inputs agree exactly when libsodium's padding expression (which is `mlen mod 16`
//! bytes, not the usual "up to a multiple of 16") gives the usual padding: when `mlen` is a
//! multiple of 8 ([`fits`]). Then the AEAD's tag is the message's MAC, and the sealed
//! message is the first ciphertext byte (the encrypted tag), the ciphertext from byte 64 on,
//! and the tag. Other lengths stay with libsodium; the Rust SDK's writers send multiples
//! of 8 where they can (`stream::write`).
//!
//! Opening rebuilds the encrypted tag block from the message's first byte and ChaCha20
//! block 1 (the tag byte is the only non-zero plaintext byte of the block) and opens
//! `E(tag block) ‖ c` with the MAC as the tag; the AEAD checks the MAC in constant time
//! before anything counts as opened. After either, the caller moves libsodium's state on as
//! its own `push`/`pull` would (`sodium::PushState::advance`).

use aws_lc_rs::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};

use super::sodium::{self, CHACHA_BLOCK_BYTES, MAC_BYTES, MessageKey};

/// The longest plaintext sealed or opened in one pass. aws-lc refuses AEAD inputs near
/// libsodium's own limit (2^38 − 128 bytes); Data bodies are far shorter (1 MiB).
pub(crate) const MAX_LEN: usize = 1 << 30;

/// Whether a message of `mlen` plaintext bytes can be sealed or opened in one pass: when
/// libsodium's padding equals the AEAD's (see the module documentation), and below
/// [`MAX_LEN`].
pub(crate) fn fits(mlen: usize) -> bool {
    mlen % 8 == 0 && mlen <= MAX_LEN
}

/// The AEAD keyed with a secretstream's current key; rebuilt when the stream re-keys.
pub(crate) struct OnePassKey {
    key: LessSafeKey,
}

/// The AEAD refused the message: its MAC does not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Forged;

impl OnePassKey {
    /// The AEAD under `key`, or `None` if aws-lc refuses it (it takes any 32-byte key, so
    /// a caller falls back to libsodium rather than failing).
    pub(crate) fn new(key: &[u8; sodium::SS_KEY_BYTES]) -> Option<Self> {
        let key = UnboundKey::new(&CHACHA20_POLY1305, key).ok()?;
        Some(Self {
            key: LessSafeKey::new(key),
        })
    }

    /// Seals `buf` = `[64 bytes of room][plaintext]` in place: the encrypted tag byte ends
    /// at `buf[63]`, right before the ciphertext (`buf[64..]`). Returns the MAC. The
    /// caller checked [`fits`] and that `nonce` is the state's next one.
    pub(crate) fn seal(
        &self,
        at: &MessageKey<'_>,
        tag: u8,
        buf: &mut [u8],
    ) -> Option<[u8; MAC_BYTES]> {
        let block = buf.get_mut(..CHACHA_BLOCK_BYTES)?;
        block.fill(0);
        block[0] = tag;
        let mac = self
            .key
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(*at.nonce), Aad::empty(), buf)
            .ok()?;
        buf[CHACHA_BLOCK_BYTES - 1] = buf[0];
        mac.as_ref().try_into().ok()
    }

    /// Opens `buf` = `[63 bytes of room][encrypted tag byte][ciphertext]` in place against
    /// `mac`: on success the plaintext is `buf[64..]` and this returns the message's tag.
    /// On failure `buf` is unspecified. The caller checked [`fits`].
    pub(crate) fn open(
        &self,
        at: &MessageKey<'_>,
        mac: &[u8; MAC_BYTES],
        buf: &mut [u8],
    ) -> Result<u8, Forged> {
        let encrypted_tag = *buf.get(CHACHA_BLOCK_BYTES - 1).ok_or(Forged)?;
        // E(tag block) = ChaCha20 block 1 with its first byte replaced by the message's:
        // every other plaintext byte of the tag block is zero.
        let mut block = sodium::chacha20_ietf_block(at.key, at.nonce, 1);
        block[0] = encrypted_tag;
        buf[..CHACHA_BLOCK_BYTES].copy_from_slice(&block);
        self.key
            .open_in_place_separate_tag(
                Nonce::assume_unique_for_key(*at.nonce),
                Aad::empty(),
                mac,
                buf,
            )
            .map_err(|_| Forged)?;
        Ok(buf[0])
    }
}
