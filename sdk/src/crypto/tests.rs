//! Tests of the end-to-end encryption module.
//!
//! Besides round trips and failure cases, two kinds of known-answer test tie our output to
//! libsodium's documented algorithms without trusting the libsodium we link:
//!
//! * `crypto_kx`: libsodium's own published vector (`test/default/kx.c` / `kx.exp`), and a
//!   recomputation of the session keys with `x25519-dalek` + `blake2`
//!   (q = X25519(sk, peer_pk); h = BLAKE2b-512(q ‖ client_pk ‖ server_pk); client rx =
//!   h[0..32], tx = h[32..64]; server tx = h[0..32], rx = h[32..64]).
//! * `crypto_secretstream_xchacha20poly1305`: a from-the-source reimplementation of
//!   push/pull (`RefStream`, on the `chacha20` + `poly1305` crates) that must open what our
//!   [`Sealer`] seals and seal what our [`Opener`] opens, message by message.

use blake2::digest::consts::U32;
use blake2::{Blake2b, Blake2b512, Digest};
use bytes::BytesMut;
use chacha20::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
// `hchacha::<U10>`: 10 double rounds, i.e. HChaCha20.
use chacha20::cipher::consts::U10;
use chacha20::{ChaCha20, hchacha};
use poly1305::Poly1305;
use poly1305::universal_hash::KeyInit;
use proptest::prelude::*;

use super::*;

fn hex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2));
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn pair() -> (SessionKeys, SessionKeys) {
    let client = KeyPair::generate().unwrap();
    let listener = KeyPair::generate().unwrap();
    let c = SessionKeys::client(&client, &listener.public()).unwrap();
    let s = SessionKeys::server(&listener, &client.public()).unwrap();
    (c, s)
}

/// Two connected `E2eStream`s (dialer, host) whose headers have been exchanged.
fn connected_streams() -> (E2eStream, E2eStream) {
    let client = KeyPair::generate().unwrap();
    let listener = KeyPair::generate().unwrap();
    let mut dialer = E2eStream::client(&client, &listener.public()).unwrap();
    let mut host = E2eStream::server(&listener, &client.public()).unwrap();
    let dh = dialer.take_header().unwrap();
    let hh = host.take_header().unwrap();
    let mut sink = BytesMut::new();
    assert_eq!(host.open(&dh, &mut sink).unwrap(), Inbound::Header);
    assert_eq!(dialer.open(&hh, &mut sink).unwrap(), Inbound::Header);
    assert!(sink.is_empty());
    (dialer, host)
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Sizes 0..=70000: every size up to 300 (all residues mod 16 and 64 around the first
/// blocks), then a stride through the rest, and the edges of 16/64 KiB and 70000.
fn sizes() -> Vec<usize> {
    let mut v: Vec<usize> = (0..=300).collect();
    v.extend((301..=70_000).step_by(1_237));
    v.extend([
        4095, 4096, 4097, 16_383, 16_384, 16_385, 65_535, 65_536, 65_537, 69_999, 70_000,
    ]);
    v
}

// ---- key exchange ------------------------------------------------------------------

#[test]
fn client_and_server_keys_agree() {
    for _ in 0..16 {
        let (c, s) = pair();
        assert_eq!(c.tx, s.rx);
        assert_eq!(c.rx, s.tx);
        assert_ne!(c.rx, c.tx);
    }
}

#[test]
fn different_peers_give_different_keys() {
    let listener = KeyPair::generate().unwrap();
    let a = KeyPair::generate().unwrap();
    let b = KeyPair::generate().unwrap();
    let ka = SessionKeys::server(&listener, &a.public()).unwrap();
    let kb = SessionKeys::server(&listener, &b.public()).unwrap();
    assert_ne!(ka.rx, kb.rx);
    assert_ne!(ka.tx, kb.tx);
}

/// Low-order X25519 points: all zero, one, and libsodium's `small_order_p` from
/// `test/default/kx.c`. Each gives an all-zero shared secret, which libsodium refuses.
fn low_order_points() -> Vec<[u8; 32]> {
    let mut one = [0u8; 32];
    one[0] = 1;
    let small_order_p: [u8; 32] =
        hex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800")
            .try_into()
            .unwrap();
    vec![[0u8; 32], one, small_order_p]
}

#[test]
fn low_order_peer_key_fails_cleanly() {
    let kp = KeyPair::generate().unwrap();
    for p in low_order_points() {
        assert_eq!(
            SessionKeys::client(&kp, &p).unwrap_err(),
            CryptoError::KeyExchange
        );
        assert_eq!(
            SessionKeys::server(&kp, &p).unwrap_err(),
            CryptoError::KeyExchange
        );
        assert_eq!(
            E2eStream::client(&kp, &p).unwrap_err(),
            CryptoError::KeyExchange
        );
        assert_eq!(
            E2eStream::server(&kp, &p).unwrap_err(),
            CryptoError::KeyExchange
        );
    }
}

#[test]
fn peer_key_of_wrong_length_is_rejected() {
    let kp = KeyPair::generate().unwrap();
    for len in [0usize, 1, 31, 33, 64] {
        let key = vec![7u8; len];
        assert_eq!(
            SessionKeys::client(&kp, &key).unwrap_err(),
            CryptoError::BadPeerKey { len }
        );
        assert_eq!(
            SessionKeys::server(&kp, &key).unwrap_err(),
            CryptoError::BadPeerKey { len }
        );
    }
}

#[test]
fn debug_does_not_print_secrets() {
    let kp = KeyPair::from_seed(&[5u8; 32]).unwrap();
    let secret_hex: String = kp.secret.iter().map(|b| format!("{b:02x}")).collect();
    let public_hex: String = kp.public.iter().map(|b| format!("{b:02x}")).collect();
    let dbg = format!("{kp:?}");
    assert!(dbg.contains(&public_hex), "{dbg}");
    assert!(!dbg.contains(&secret_hex), "{dbg}");
    assert!(dbg.contains("redacted"));

    let (c, _) = pair();
    let dbg = format!("{c:?}");
    assert!(dbg.contains("redacted"));
    for key in [c.rx, c.tx] {
        let h: String = key.iter().map(|b| format!("{b:02x}")).collect();
        assert!(!dbg.contains(&h));
    }
    let (sealer, _) = Sealer::new(&c);
    assert_eq!(format!("{sealer:?}"), "Sealer { .. }");
}

/// libsodium's published `crypto_kx` vector (`test/default/kx.c`, expected output
/// `test/default/kx.exp`): client seed 00 01 .. 1f, server seed = that seed incremented
/// as a little-endian number (01 01 02 .. 1f).
#[test]
fn kx_matches_libsodium_published_vector() {
    let mut seed = [0u8; 32];
    for (i, b) in seed.iter_mut().enumerate() {
        *b = i as u8;
    }
    let client = KeyPair::from_seed(&seed).unwrap();
    seed[0] += 1;
    let server = KeyPair::from_seed(&seed).unwrap();

    assert_eq!(
        client.public().to_vec(),
        hex("0e0216223f147143d32615a91189c288c1728cba3cc5f9f621b1026e03d83129")
    );
    assert_eq!(
        client.secret.to_vec(),
        hex("cb2f5160fc1f7e05a55ef49d340b48da2e5a78099d53393351cd579dd42503d6")
    );
    let s = SessionKeys::server(&server, &client.public()).unwrap();
    let c = SessionKeys::client(&client, &server.public()).unwrap();
    let a = hex("62c8f4fa81800abd0577d99918d129b65deb789af8c8351f391feb0cbf238604");
    let b = hex("749519c68059bce69f7cfcc7b387a3de1a1e8237d110991323bf62870115731a");
    assert_eq!(s.rx.to_vec(), a);
    assert_eq!(s.tx.to_vec(), b);
    assert_eq!(c.rx.to_vec(), b);
    assert_eq!(c.tx.to_vec(), a);
}

/// `crypto_kx` recomputed with x25519-dalek + blake2 (libsodium `crypto_kx.c`;
/// edge-wire-protocol.md §5), for seeded and random key pairs.
#[test]
fn kx_matches_independent_implementation() {
    fn check(client: &KeyPair, server: &KeyPair) {
        // Public keys are X25519(sk, 9).
        for kp in [client, server] {
            assert_eq!(
                x25519_dalek::x25519(kp.secret, x25519_dalek::X25519_BASEPOINT_BYTES),
                kp.public()
            );
        }
        let q_client = x25519_dalek::x25519(client.secret, server.public());
        let q_server = x25519_dalek::x25519(server.secret, client.public());
        assert_eq!(q_client, q_server);
        let mut h = Blake2b512::new();
        h.update(q_client);
        h.update(client.public());
        h.update(server.public());
        let h = h.finalize();

        let c = SessionKeys::client(client, &server.public()).unwrap();
        let s = SessionKeys::server(server, &client.public()).unwrap();
        assert_eq!(c.rx, h[..32]);
        assert_eq!(c.tx, h[32..]);
        assert_eq!(s.tx, h[..32]);
        assert_eq!(s.rx, h[32..]);
    }

    // Seeded: crypto_kx_seed_keypair's secret is BLAKE2b-256(seed).
    for n in 0..8u8 {
        let cseed = [n; 32];
        let sseed = [n.wrapping_add(100); 32];
        let client = KeyPair::from_seed(&cseed).unwrap();
        let server = KeyPair::from_seed(&sseed).unwrap();
        let sk: [u8; 32] = Blake2b::<U32>::digest(cseed).into();
        assert_eq!(client.secret, sk);
        check(&client, &server);
    }
    for _ in 0..8 {
        check(&KeyPair::generate().unwrap(), &KeyPair::generate().unwrap());
    }
}

// ---- secretstream: independent reference ---------------------------------------------

/// `crypto_secretstream_xchacha20poly1305` push/pull reimplemented from libsodium
/// `secretstream_xchacha20poly1305.c` (edge-wire-protocol.md §5) on the `chacha20` and
/// `poly1305` crates, without additional data and without rekeying (never reached here).
struct RefStream {
    /// HChaCha20(key, header[0..16]).
    k: [u8; 32],
    /// counter (LE u32, starts at 1) ‖ inonce (header[16..24], then xored with MACs).
    nonce: [u8; 12],
    /// A message with the REKEY bit went through; the rekey that follows is not modelled.
    rekeyed: bool,
}

impl RefStream {
    fn new(key: &[u8; 32], header: &[u8; 24]) -> Self {
        let input: [u8; 16] = header[..16].try_into().unwrap();
        let k = hchacha::<U10>(&chacha20::Key::from(*key), &input.into());
        let mut nonce = [0u8; 12];
        nonce[0] = 1;
        nonce[4..].copy_from_slice(&header[16..]);
        Self {
            k: k.into(),
            nonce,
            rekeyed: false,
        }
    }

    fn cipher(&self) -> ChaCha20 {
        ChaCha20::new(
            &chacha20::Key::from(self.k),
            &chacha20::Nonce::from(self.nonce),
        )
    }

    /// Poly1305 over (ad = ∅, no pad), the 64-byte encrypted block, the ciphertext, then
    /// `(0x10 - 64 + mlen) & 0xf` = `mlen % 16` zero bytes (libsodium's padding expression,
    /// which is not the usual "pad to 16"), LE64(adlen = 0), LE64(64 + mlen). Key: the
    /// first 32 bytes of ChaCha20 block 0.
    fn mac(&self, block: &[u8; 64], c: &[u8]) -> [u8; 16] {
        let mut block0 = [0u8; 64];
        self.cipher().apply_keystream(&mut block0);
        let mut input = Vec::new();
        input.extend_from_slice(block);
        input.extend_from_slice(c);
        input.extend(std::iter::repeat_n(0u8, c.len() & 0xf));
        input.extend_from_slice(&0u64.to_le_bytes());
        input.extend_from_slice(&(64 + c.len() as u64).to_le_bytes());
        Poly1305::new_from_slice(&block0[..32])
            .unwrap()
            .compute_unpadded(&input)
            .into()
    }

    /// After each message: inonce ^= mac[0..8]; counter += 1 (and a rekey after a REKEY
    /// tag or a counter wrap, which the tests never go past).
    fn advance(&mut self, mac: &[u8; 16], tag: u8) {
        assert!(!self.rekeyed, "messages after a rekey are not modelled");
        self.rekeyed = tag & 0x02 != 0;
        for (n, m) in self.nonce[4..].iter_mut().zip(mac) {
            *n ^= m;
        }
        let ctr = u32::from_le_bytes(self.nonce[..4].try_into().unwrap()).wrapping_add(1);
        assert_ne!(ctr, 0, "rekey on counter wrap is not modelled");
        self.nonce[..4].copy_from_slice(&ctr.to_le_bytes());
    }

    fn push(&mut self, m: &[u8], tag: u8) -> Vec<u8> {
        let mut cipher = self.cipher();
        let mut block = [0u8; 64];
        block[0] = tag;
        cipher.seek(64u32); // block counter 1
        cipher.apply_keystream(&mut block);
        let mut c = m.to_vec();
        cipher.seek(128u32); // block counter 2
        cipher.apply_keystream(&mut c);
        let mac = self.mac(&block, &c);
        self.advance(&mac, tag);
        let mut out = vec![block[0]];
        out.extend_from_slice(&c);
        out.extend_from_slice(&mac);
        out
    }

    fn pull(&mut self, input: &[u8]) -> Option<(Vec<u8>, u8)> {
        if input.len() < 17 {
            return None;
        }
        let (c, stored_mac) = input[1..].split_at(input.len() - 17);
        let mut cipher = self.cipher();
        let mut block = [0u8; 64];
        block[0] = input[0];
        cipher.seek(64u32);
        cipher.apply_keystream(&mut block);
        let tag = block[0];
        block[0] = input[0];
        let mac = self.mac(&block, c);
        if mac[..] != stored_mac[..] {
            return None;
        }
        let mut m = c.to_vec();
        cipher.seek(128u32);
        cipher.apply_keystream(&mut m);
        self.advance(&mac, tag);
        Some((m, tag))
    }
}

fn keys_with(rx: [u8; 32], tx: [u8; 32]) -> SessionKeys {
    sodium::ensure_init().unwrap();
    SessionKeys { rx, tx }
}

/// The padding expression matters: sizes with every residue mod 16 (and multi-block).
const REF_SIZES: &[usize] = &[
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 31, 32, 33, 47, 48, 63, 64, 65,
    100, 127, 128, 129, 1000, 4096, 5000,
];

#[test]
fn sealer_output_opens_with_independent_implementation() {
    let tx: [u8; 32] = std::array::from_fn(|i| (i * 7 + 1) as u8);
    let keys = keys_with([0; 32], tx);
    let (mut sealer, header) = Sealer::new(&keys);
    let mut reference = RefStream::new(&tx, &header);
    for (i, &len) in REF_SIZES.iter().enumerate() {
        let m = pattern(len, i as u8);
        let mut out = BytesMut::new();
        sealer.seal(&m, &mut out).unwrap();
        assert_eq!(out.len(), len + ABYTES);
        let (opened, tag) = reference
            .pull(&out)
            .unwrap_or_else(|| panic!("message {i} ({len} bytes) did not verify"));
        assert_eq!(opened, m);
        assert_eq!(tag, 0, "TAG_MESSAGE");
    }
}

#[test]
fn independent_implementation_output_opens_with_opener() {
    let rx: [u8; 32] = std::array::from_fn(|i| (255 - i * 3) as u8);
    let header: [u8; 24] = std::array::from_fn(|i| (i * 11 + 5) as u8);
    let keys = keys_with(rx, [0; 32]);
    let mut opener = Opener::new(&keys, &header).unwrap();
    let mut reference = RefStream::new(&rx, &header);
    for (i, &len) in REF_SIZES.iter().enumerate() {
        let m = pattern(len, i as u8 ^ 0x5a);
        // Tags other than TAG_MESSAGE are reported as they are (PUSH = 1 here).
        let tag = if i == 3 { 1 } else { 0 };
        let c = reference.push(&m, tag);
        let mut out = BytesMut::from(&b"prefix"[..]);
        assert_eq!(opener.open(&c, &mut out).unwrap(), Tag(tag));
        assert_eq!(&out[..6], b"prefix");
        assert_eq!(&out[6..], &m[..]);
    }
}

#[test]
fn final_tag_is_reported() {
    let rx = [9u8; 32];
    let header = [3u8; 24];
    let keys = keys_with(rx, [0; 32]);
    let mut opener = Opener::new(&keys, &header).unwrap();
    let mut reference = RefStream::new(&rx, &header);
    let c = reference.push(b"last", Tag::FINAL.0);
    let mut out = BytesMut::new();
    assert_eq!(opener.open(&c, &mut out).unwrap(), Tag::FINAL);
    assert!(!Tag::PUSH.is_final());
    assert!(!Tag::MESSAGE.is_final());
    assert!(Tag::FINAL.is_final());
    assert_eq!(&out[..], b"last");
}

// ---- secretstream in place: one pass where the length allows ------------------------

/// `[IN_PLACE_ROOM][room for the tag byte][m][room for the MAC]`, the room filled with
/// junk (in-place sealing must not depend on it).
fn in_place_buf(m: &[u8]) -> Vec<u8> {
    let mut buf = vec![0xa5u8; IN_PLACE_ROOM + 1];
    buf.extend_from_slice(m);
    buf.extend_from_slice(&[0x5a; 16]);
    buf
}

/// `[IN_PLACE_ROOM of junk][sealed]`.
fn sealed_in_place_buf(sealed: &[u8]) -> Vec<u8> {
    let mut buf = vec![0x3cu8; IN_PLACE_ROOM];
    buf.extend_from_slice(sealed);
    buf
}

#[test]
fn in_place_seal_matches_the_independent_implementation_at_every_length() {
    let tx: [u8; 32] = std::array::from_fn(|i| (i * 5 + 3) as u8);
    let keys = keys_with([0; 32], tx);
    let (mut sealer, header) = Sealer::new(&keys);
    let mut reference = RefStream::new(&tx, &header);
    // Every residue mod 16 twice: one-pass lengths (multiples of 8) and libsodium's.
    for (i, len) in (0..40)
        .chain([1000, 1008, 16 * 1024, 16 * 1024 + 3])
        .enumerate()
    {
        let m = pattern(len, i as u8);
        let mut buf = in_place_buf(&m);
        let range = sealer.seal_in_place(&mut buf).unwrap();
        assert_eq!(range, IN_PLACE_ROOM..buf.len());
        assert_eq!(
            &buf[range],
            &reference.push(&m, 0)[..],
            "message {i} ({len} bytes)"
        );
    }
}

#[test]
fn in_place_open_matches_the_independent_implementation_at_every_length() {
    let rx: [u8; 32] = std::array::from_fn(|i| (200 - i * 3) as u8);
    let header: [u8; 24] = std::array::from_fn(|i| (i * 13 + 1) as u8);
    let keys = keys_with(rx, [0; 32]);
    let mut opener = Opener::new(&keys, &header).unwrap();
    let mut reference = RefStream::new(&rx, &header);
    for (i, len) in (0..40)
        .chain([1000, 1008, 16 * 1024, 16 * 1024 + 3])
        .enumerate()
    {
        let m = pattern(len, i as u8 ^ 0x33);
        // The PUSH tag on some messages: the tag is recovered from the tag block.
        let tag = u8::from(i % 5 == 4);
        let mut buf = sealed_in_place_buf(&reference.push(&m, tag));
        let (range, got) = opener.open_in_place(&mut buf).unwrap();
        assert_eq!(got, Tag(tag), "message {i} ({len} bytes)");
        assert_eq!(range, IN_PLACE_ROOM + 1..IN_PLACE_ROOM + 1 + len);
        assert_eq!(&buf[range], &m[..], "message {i} ({len} bytes)");
    }
}

#[test]
fn in_place_buffers_too_small_or_messages_too_short_are_refused() {
    let (dialer, host) = pair();
    let (mut sealer, header) = Sealer::new(&dialer);
    let mut small = vec![0u8; IN_PLACE_ROOM + ABYTES - 1];
    assert_eq!(
        sealer.seal_in_place(&mut small),
        Err(CryptoError::BufferTooSmall {
            needed: IN_PLACE_ROOM + ABYTES,
            got: IN_PLACE_ROOM + ABYTES - 1
        })
    );
    let mut opener = Opener::new(&host, &header).unwrap();
    for len in [0, IN_PLACE_ROOM, IN_PLACE_ROOM + ABYTES - 1] {
        let mut buf = vec![0u8; len];
        assert_eq!(
            opener.open_in_place(&mut buf),
            Err(CryptoError::Truncated {
                len: len.saturating_sub(IN_PLACE_ROOM)
            })
        );
    }
    // Neither refusal moved either stream: the next message still goes through.
    let mut buf = in_place_buf(b"still in step");
    let range = sealer.seal_in_place(&mut buf).unwrap();
    let mut sealed = sealed_in_place_buf(&buf[range]);
    let (range, _) = opener.open_in_place(&mut sealed).unwrap();
    assert_eq!(&sealed[range], b"still in step");
}

#[test]
fn a_forged_one_pass_message_fails_and_leaves_the_stream_in_step() {
    let (dialer, host) = pair();
    let (mut sealer, header) = Sealer::new(&dialer);
    let mut opener = Opener::new(&host, &header).unwrap();
    let m = pattern(4096, 9);
    let mut buf = in_place_buf(&m);
    let range = sealer.seal_in_place(&mut buf).unwrap();
    let sealed = buf[range].to_vec();
    // Every part of the message matters: the encrypted tag, the ciphertext, the MAC.
    for at in [0, 1, 2000, sealed.len() - 1] {
        let mut forged = sealed_in_place_buf(&sealed);
        forged[IN_PLACE_ROOM + at] ^= 0x01;
        assert_eq!(
            opener.open_in_place(&mut forged),
            Err(CryptoError::Decrypt),
            "byte {at} flipped"
        );
    }
    let mut genuine = sealed_in_place_buf(&sealed);
    let (range, tag) = opener.open_in_place(&mut genuine).unwrap();
    assert_eq!((&genuine[range], tag), (&m[..], Tag::MESSAGE));
}

/// Seals `m` with tag `tag` in one pass on `state`, as `Sealer::seal_in_place` does.
fn one_pass_push(state: &mut sodium::PushState, m: &[u8], tag: u8) -> Vec<u8> {
    let key = one_pass::OnePassKey::new(state.message_key().key).unwrap();
    let mut buf = vec![0u8; IN_PLACE_ROOM + 1];
    buf.extend_from_slice(m);
    let mac = key.seal(&state.message_key(), tag, &mut buf).unwrap();
    state.advance(&mac, tag);
    let mut out = buf[IN_PLACE_ROOM..].to_vec();
    out.extend_from_slice(&mac);
    out
}

#[test]
fn one_pass_and_libsodium_agree_across_rekeys_and_the_counter_wrap() {
    sodium::ensure_init().unwrap();
    let key = [0x42u8; 32];
    let (mut fast, header) = sodium::PushState::init(&key);
    let mut slow = fast.duplicate();
    let mut puller = sodium::PullState::init(&key, &header);
    // Tags: MESSAGE, PUSH, REKEY (re-keys after it), FINAL (= PUSH | REKEY).
    let tags = [0u8, 1, 2, 0, 3, 0, 2, 2, 0];
    for (round, counter) in [None, Some(u32::MAX - 1)].into_iter().enumerate() {
        if let Some(counter) = counter {
            // The second message (a PUSH, which does not re-key by itself) wraps the
            // 32-bit counter, which re-keys.
            fast.set_counter(counter);
            slow.set_counter(counter);
            puller.set_counter(counter);
        }
        for (i, &tag) in tags.iter().enumerate() {
            let m = pattern(64 * (i + 1), (round * 16 + i) as u8);
            let one_pass = one_pass_push(&mut fast, &m, tag);
            let mut libsodium = vec![0u8; m.len() + ABYTES];
            assert!(slow.push(&m, &mut libsodium, tag).is_some());
            assert_eq!(one_pass, libsodium, "round {round}, message {i}, tag {tag}");
            // And libsodium's pull, in place, opens it and moves in step.
            let mut msg = one_pass.clone();
            let (got, _) = puller.pull_in_place(&mut msg).unwrap();
            assert_eq!(got, tag);
            assert_eq!(&msg[1..msg.len() - 16], &m[..]);
        }
    }
}

#[test]
fn a_sealer_and_an_opener_rekey_their_one_pass_keys_at_the_counter_wrap() {
    let (dialer, host) = pair();
    let (mut sealer, header) = Sealer::new(&dialer);
    let mut opener = Opener::new(&host, &header).unwrap();
    // Two messages before the wrap, which re-keys both sides; a stale one-pass key
    // would seal or open the messages after it wrongly.
    sealer.state.set_counter(u32::MAX - 1);
    opener.state.set_counter(u32::MAX - 1);
    let mut reference = sealer.state.duplicate();
    for i in 0..5u8 {
        let m = pattern(1024, i);
        let mut buf = in_place_buf(&m);
        let range = sealer.seal_in_place(&mut buf).unwrap();
        let mut expected = vec![0u8; m.len() + ABYTES];
        assert!(reference.push(&m, &mut expected, 0).is_some());
        assert_eq!(&buf[range.clone()], &expected[..], "message {i}");
        let mut sealed = sealed_in_place_buf(&buf[range]);
        let (range, tag) = opener.open_in_place(&mut sealed).unwrap();
        assert_eq!((&sealed[range], tag), (&m[..], Tag::MESSAGE), "message {i}");
    }
}

#[test]
fn sealers_and_openers_follow_a_rekey_on_both_paths() {
    // A libsodium pull re-keys after a REKEY tag: the opener's one-pass key must follow.
    let rx = [7u8; 32];
    sodium::ensure_init().unwrap();
    let (mut peer, header) = sodium::PushState::init(&rx);
    let keys = keys_with(rx, [0; 32]);
    let mut opener = Opener::new(&keys, &header).unwrap();
    for (i, tag) in [0u8, 2, 0, 2, 0].into_iter().enumerate() {
        for len in [64, 65] {
            let m = pattern(len, i as u8);
            let mut sealed = vec![0u8; len + ABYTES];
            assert!(peer.push(&m, &mut sealed, tag).is_some());
            let mut buf = sealed_in_place_buf(&sealed);
            let (range, got) = opener.open_in_place(&mut buf).unwrap();
            assert_eq!(
                (&buf[range], got),
                (&m[..], Tag(tag)),
                "message {i}, {len} bytes"
            );
        }
    }
}

// ---- secretstream: round trips and failures ----------------------------------------

#[test]
fn round_trip_all_sizes_both_ways() {
    let (c, s) = pair();
    let (mut c_seal, c_header) = Sealer::new(&c);
    let (mut s_seal, s_header) = Sealer::new(&s);
    let mut s_open = Opener::new(&s, &c_header).unwrap();
    let mut c_open = Opener::new(&c, &s_header).unwrap();
    let mut sealed = BytesMut::with_capacity(70_000 + ABYTES);
    let mut opened = BytesMut::with_capacity(70_000);
    for (i, len) in sizes().into_iter().enumerate() {
        let m = pattern(len, i as u8);
        for (sealer, opener) in [(&mut c_seal, &mut s_open), (&mut s_seal, &mut c_open)] {
            sealed.clear();
            opened.clear();
            sealer.seal(&m, &mut sealed).unwrap();
            assert_eq!(sealed.len(), len + Sealer::ABYTES);
            if len >= 16 {
                assert_ne!(&sealed[1..17], &m[..16], "not encrypted");
            }
            assert_eq!(opener.open(&sealed, &mut opened).unwrap(), Tag::MESSAGE);
            assert_eq!(&opened[..], &m[..]);
        }
    }
}

#[test]
fn seal_into_and_open_into_use_caller_buffers() {
    let (c, s) = pair();
    let (mut sealer, header) = Sealer::new(&c);
    let mut opener = Opener::new(&s, &header).unwrap();
    let mut buf = [0u8; 1024];
    let mut plain = [0u8; 1024];
    for len in [0usize, 1, 100, 1024 - ABYTES] {
        let m = pattern(len, 1);
        let n = sealer.seal_into(&m, &mut buf).unwrap();
        assert_eq!(n, len + ABYTES);
        assert_eq!(Sealer::sealed_len(len), Some(n));
        let (k, tag) = opener.open_into(&buf[..n], &mut plain).unwrap();
        assert_eq!((k, tag), (len, Tag::MESSAGE));
        assert_eq!(Opener::opened_len(n), Some(len));
        assert_eq!(&plain[..k], &m[..]);
    }
    // Too small: an error, nothing consumed from the stream.
    let m = pattern(100, 2);
    assert_eq!(
        sealer.seal_into(&m, &mut buf[..116]).unwrap_err(),
        CryptoError::BufferTooSmall {
            needed: 117,
            got: 116
        }
    );
    let n = sealer.seal_into(&m, &mut buf).unwrap();
    assert_eq!(
        opener.open_into(&buf[..n], &mut plain[..99]).unwrap_err(),
        CryptoError::BufferTooSmall {
            needed: 100,
            got: 99
        }
    );
    let (k, _) = opener.open_into(&buf[..n], &mut plain).unwrap();
    assert_eq!(&plain[..k], &m[..]);
    assert_eq!(Opener::opened_len(16), None);
}

/// Seals `msgs` under fresh keys; returns the opener-side keys, the header and the bodies.
fn sealed_messages(msgs: &[&[u8]]) -> (SessionKeys, [u8; HEADER_BYTES], Vec<Vec<u8>>) {
    let (c, s) = pair();
    let (mut sealer, header) = Sealer::new(&c);
    let bodies = msgs
        .iter()
        .map(|m| {
            let mut out = BytesMut::new();
            sealer.seal(m, &mut out).unwrap();
            out.to_vec()
        })
        .collect();
    (s, header, bodies)
}

#[test]
fn tampered_ciphertext_fails() {
    let (s, header, bodies) = sealed_messages(&[b"hello, world: some service data"]);
    let body = &bodies[0];
    for i in 0..body.len() {
        for bit in [0x01u8, 0x80] {
            let mut bad = body.clone();
            bad[i] ^= bit;
            let mut opener = Opener::new(&s, &header).unwrap();
            let mut out = BytesMut::from(&b"keep"[..]);
            assert_eq!(
                opener.open(&bad, &mut out).unwrap_err(),
                CryptoError::Decrypt,
                "byte {i}"
            );
            assert_eq!(&out[..], b"keep", "nothing appended on failure");
            // The state did not advance: the genuine message still opens.
            opener.open(body, &mut out).unwrap();
        }
    }
}

#[test]
fn truncated_ciphertext_fails() {
    let (s, header, bodies) = sealed_messages(&[b"0123456789abcdef0123"]);
    let body = &bodies[0];
    let mut out = BytesMut::new();
    for len in 0..body.len() {
        let mut opener = Opener::new(&s, &header).unwrap();
        let err = opener.open(&body[..len], &mut out).unwrap_err();
        if len < ABYTES {
            assert_eq!(err, CryptoError::Truncated { len });
        } else {
            assert_eq!(err, CryptoError::Decrypt);
        }
        assert!(out.is_empty());
    }
    // Extended by a byte: also fails.
    let mut longer = body.clone();
    longer.push(0);
    let mut opener = Opener::new(&s, &header).unwrap();
    assert_eq!(
        opener.open(&longer, &mut out).unwrap_err(),
        CryptoError::Decrypt
    );
}

#[test]
fn reordered_dropped_and_replayed_messages_fail() {
    let (s, header, bodies) = sealed_messages(&[b"first", b"second", b"third"]);
    let mut out = BytesMut::new();

    // Reordered.
    let mut opener = Opener::new(&s, &header).unwrap();
    assert_eq!(
        opener.open(&bodies[1], &mut out).unwrap_err(),
        CryptoError::Decrypt
    );
    // Dropped (skip the second).
    let mut opener = Opener::new(&s, &header).unwrap();
    opener.open(&bodies[0], &mut out).unwrap();
    assert_eq!(
        opener.open(&bodies[2], &mut out).unwrap_err(),
        CryptoError::Decrypt
    );
    // Replayed.
    assert_eq!(
        opener.open(&bodies[0], &mut out).unwrap_err(),
        CryptoError::Decrypt
    );
    // In order: fine.
    out.clear();
    let mut opener = Opener::new(&s, &header).unwrap();
    for b in &bodies {
        opener.open(b, &mut out).unwrap();
    }
    assert_eq!(&out[..], b"firstsecondthird");
}

#[test]
fn wrong_header_or_key_fails() {
    let (s, header, bodies) = sealed_messages(&[b"data"]);
    let mut out = BytesMut::new();
    let mut other = header;
    other[23] ^= 1;
    let mut opener = Opener::new(&s, &other).unwrap();
    assert_eq!(
        opener.open(&bodies[0], &mut out).unwrap_err(),
        CryptoError::Decrypt
    );
    let mut other = header;
    other[0] ^= 1;
    let mut opener = Opener::new(&s, &other).unwrap();
    assert_eq!(
        opener.open(&bodies[0], &mut out).unwrap_err(),
        CryptoError::Decrypt
    );
    // Right header, keys of another connection.
    let (_, wrong) = pair();
    let mut opener = Opener::new(&wrong, &header).unwrap();
    assert_eq!(
        opener.open(&bodies[0], &mut out).unwrap_err(),
        CryptoError::Decrypt
    );
    // Using our own tx direction (client rx) instead of the server's rx.
    let mut opener = Opener::new(&keys_with(s.tx, s.rx), &header).unwrap();
    assert_eq!(
        opener.open(&bodies[0], &mut out).unwrap_err(),
        CryptoError::Decrypt
    );
}

#[test]
fn header_of_wrong_length_is_rejected() {
    let (_, s) = pair();
    for len in [0usize, 1, 16, 23, 25, 41] {
        assert_eq!(
            Opener::new(&s, &vec![0u8; len]).unwrap_err(),
            CryptoError::BadHeader { len }
        );
    }
}

#[test]
fn headers_are_random() {
    let (c, _) = pair();
    let (_, h1) = Sealer::new(&c);
    let (_, h2) = Sealer::new(&c);
    assert_ne!(h1, h2);
}

// ---- E2eStream ---------------------------------------------------------------------

#[test]
fn stream_round_trip_with_fin() {
    let (mut dialer, mut host) = connected_streams();
    let mut body = BytesMut::new();
    let mut plain = BytesMut::new();
    for (i, len) in [0usize, 1, 17, 1000, 70_000].into_iter().enumerate() {
        let m = pattern(len, i as u8);
        body.clear();
        dialer.seal(&m, &mut body).unwrap();
        assert_eq!(body.len(), len + ABYTES);
        plain.clear();
        assert_eq!(
            host.open(&body, &mut plain).unwrap(),
            Inbound::Data {
                len,
                tag: Tag::MESSAGE
            }
        );
        assert_eq!(&plain[..], &m[..]);

        body.clear();
        host.seal(&m, &mut body).unwrap();
        plain.clear();
        assert!(matches!(
            dialer.open(&body, &mut plain).unwrap(),
            Inbound::Data { .. }
        ));
        assert_eq!(&plain[..], &m[..]);
    }
    // An empty body is a FIN and passes through.
    plain.clear();
    assert_eq!(host.open(&[], &mut plain).unwrap(), Inbound::Fin);
    assert_eq!(dialer.open(&[], &mut plain).unwrap(), Inbound::Fin);
    assert!(plain.is_empty());
    assert!(host.inbound_open() && !host.failed());
    let dbg = format!("{host:?}");
    assert!(dbg.contains("open"), "{dbg}");
}

#[test]
fn stream_requires_header_before_seal() {
    let client = KeyPair::generate().unwrap();
    let listener = KeyPair::generate().unwrap();
    let mut dialer = E2eStream::client(&client, &listener.public()).unwrap();
    let mut out = BytesMut::new();
    assert!(!dialer.header_sent());
    assert_eq!(
        dialer.seal(b"x", &mut out).unwrap_err(),
        CryptoError::HeaderNotSent
    );
    assert!(out.is_empty());
    assert!(dialer.take_header().is_some());
    assert!(dialer.take_header().is_none());
    assert!(dialer.header_sent());
    dialer.seal(b"x", &mut out).unwrap();
    assert_eq!(out.len(), 1 + ABYTES);
}

#[test]
fn stream_first_body_must_be_header() {
    let client = KeyPair::generate().unwrap();
    let listener = KeyPair::generate().unwrap();
    let mut out = BytesMut::new();

    // A FIN first is a crypto failure (edge-wire-protocol.md §5), and the failure sticks.
    let mut host = E2eStream::server(&listener, &client.public()).unwrap();
    assert_eq!(
        host.open(&[], &mut out).unwrap_err(),
        CryptoError::BadHeader { len: 0 }
    );
    assert!(host.failed());
    assert_eq!(
        host.open(&[0u8; 24], &mut out).unwrap_err(),
        CryptoError::Failed
    );

    // A sealed message first (header lost): 24 + 17 bytes is not a header.
    let mut dialer = E2eStream::client(&client, &listener.public()).unwrap();
    let _ = dialer.take_header();
    let mut body = BytesMut::new();
    dialer.seal(&[1u8; 24], &mut body).unwrap();
    let mut host = E2eStream::server(&listener, &client.public()).unwrap();
    assert_eq!(
        host.open(&body, &mut out).unwrap_err(),
        CryptoError::BadHeader { len: 41 }
    );
    assert!(out.is_empty());
}

#[test]
fn stream_failure_is_final() {
    let (mut dialer, mut host) = connected_streams();
    let mut body = BytesMut::new();
    let mut out = BytesMut::new();
    dialer.seal(b"one", &mut body).unwrap();
    let mut bad = body.to_vec();
    bad[5] ^= 0xff;
    assert_eq!(host.open(&bad, &mut out).unwrap_err(), CryptoError::Decrypt);
    assert!(host.failed());
    // Even the genuine message is refused now, and so is a FIN.
    assert_eq!(host.open(&body, &mut out).unwrap_err(), CryptoError::Failed);
    assert_eq!(host.open(&[], &mut out).unwrap_err(), CryptoError::Failed);
    assert!(out.is_empty());

    // A short body after the header.
    let (mut _dialer, mut host) = connected_streams();
    assert_eq!(
        host.open(&[1, 2, 3], &mut out).unwrap_err(),
        CryptoError::Truncated { len: 3 }
    );
    assert!(host.failed());
}

// ---- properties --------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random sequences of messages, interleaved in both directions, round trip exactly.
    #[test]
    fn random_message_sequences_round_trip(
        msgs in prop::collection::vec(
            (any::<bool>(), prop::collection::vec(any::<u8>(), 0..3000)),
            0..24,
        )
    ) {
        let (mut dialer, mut host) = connected_streams();
        let mut body = BytesMut::new();
        let mut plain = BytesMut::new();
        for (to_host, m) in &msgs {
            let (from, to) = if *to_host {
                (&mut dialer, &mut host)
            } else {
                (&mut host, &mut dialer)
            };
            body.clear();
            plain.clear();
            from.seal(m, &mut body).unwrap();
            prop_assert_eq!(body.len(), m.len() + ABYTES);
            let got = to.open(&body, &mut plain).unwrap();
            prop_assert_eq!(got, Inbound::Data { len: m.len(), tag: Tag::MESSAGE });
            prop_assert_eq!(&plain[..], &m[..]);
        }
    }

    /// Our sealer agrees with the independent implementation on random sequences.
    #[test]
    fn random_sequences_match_reference(
        key in any::<[u8; 32]>(),
        msgs in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 1..12),
    ) {
        let keys = keys_with([0; 32], key);
        let (mut sealer, header) = Sealer::new(&keys);
        let mut reference = RefStream::new(&key, &header);
        for m in &msgs {
            let mut out = BytesMut::new();
            sealer.seal(m, &mut out).unwrap();
            let expected = reference.push(m, 0);
            prop_assert_eq!(&out[..], &expected[..]);
        }
    }

    /// In-place and out-of-place sealing and opening, mixed at random on one stream and
    /// at any length, give libsodium's bytes and round trip.
    #[test]
    fn in_place_and_out_of_place_mix_on_one_stream(
        msgs in prop::collection::vec(
            (any::<bool>(), any::<bool>(), prop::collection::vec(any::<u8>(), 0..2100)),
            1..20,
        )
    ) {
        let (dialer, host) = pair();
        let (mut sealer, header) = Sealer::new(&dialer);
        let mut reference = sealer.state.duplicate();
        let mut opener = Opener::new(&host, &header).unwrap();
        for (seal_in_place, open_in_place, m) in &msgs {
            let sealed = if *seal_in_place {
                let mut buf = in_place_buf(m);
                let range = sealer.seal_in_place(&mut buf).unwrap();
                buf[range].to_vec()
            } else {
                let mut out = BytesMut::new();
                sealer.seal(m, &mut out).unwrap();
                out.to_vec()
            };
            let mut expected = vec![0u8; m.len() + ABYTES];
            prop_assert!(reference.push(m, &mut expected, 0).is_some());
            prop_assert_eq!(&sealed, &expected);
            if *open_in_place {
                let mut buf = sealed_in_place_buf(&sealed);
                let (range, tag) = opener.open_in_place(&mut buf).unwrap();
                prop_assert_eq!((&buf[range], tag), (&m[..], Tag::MESSAGE));
            } else {
                let mut out = BytesMut::new();
                prop_assert_eq!(opener.open(&sealed, &mut out).unwrap(), Tag::MESSAGE);
                prop_assert_eq!(&out[..], &m[..]);
            }
        }
    }

    /// Arbitrary inbound bodies never panic and never yield data without the right keys.
    #[test]
    fn arbitrary_bodies_are_refused(
        bodies in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..100), 1..6),
    ) {
        let (_dialer, mut host) = connected_streams();
        let mut out = BytesMut::new();
        for b in &bodies {
            match host.open(b, &mut out) {
                Ok(Inbound::Fin) => prop_assert!(b.is_empty()),
                Ok(other) => prop_assert!(false, "opened forged body: {other:?}"),
                Err(_) => {}
            }
        }
        prop_assert!(out.is_empty());

        let client = KeyPair::generate().unwrap();
        let listener = KeyPair::generate().unwrap();
        let mut fresh = E2eStream::server(&listener, &client.public()).unwrap();
        let first = &bodies[0];
        match fresh.open(first, &mut out) {
            Ok(Inbound::Header) => prop_assert_eq!(first.len(), HEADER_BYTES),
            Ok(other) => prop_assert!(false, "unexpected {other:?}"),
            Err(e) => prop_assert_eq!(e, CryptoError::BadHeader { len: first.len() }),
        }
    }
}
