//! TOTP (RFC 6238) for MFA, over bytes and a clock the caller passes in.
//!
//! Parameters as OpenZiti's (openziti/ziti `controller/model/mfa_manager.go`, with
//! dgryski/dgoogauth): HMAC-SHA1, 6 digits, 30 s steps, provisioning URL
//! `otpauth://totp/<issuer>:<name>?issuer=<issuer>&secret=<base32>`, 20 recovery codes
//! of 6 base32 characters. Where Weft differs, it is stricter: a ±1 step window (RFC
//! 6238 §5.2's recommendation; OpenZiti allows ±2), a 160-bit secret (RFC 4226 §4;
//! OpenZiti uses 80 bits), and each step accepted once (the caller records the step
//! [`check`] returns; OpenZiti accepts a code again for its whole window).

use totp_rs::{Algorithm, Builder, Secret};

use crate::error::ApiError;

/// Seconds per TOTP step.
pub const STEP_SECS: u64 = 30;
/// Digits of a code.
pub const DIGITS: u8 = 6;
/// Steps accepted either side of the current one.
pub const SKEW_STEPS: u16 = 1;
/// Random bytes of a secret.
pub const SECRET_BYTES: usize = 20;
/// Recovery codes per enrollment.
pub const RECOVERY_CODES: usize = 20;
/// Characters of a recovery code.
pub const RECOVERY_CODE_LEN: usize = 6;

/// A new random secret, base32 (as authenticator apps take it).
pub fn new_secret() -> Result<String, ApiError> {
    let mut raw = [0u8; SECRET_BYTES];
    crate::pki::random_bytes(&mut raw)?;
    Ok(Secret::from(raw.to_vec()).to_base32())
}

/// `RECOVERY_CODES` new recovery codes: the first [`RECOVERY_CODE_LEN`] base32
/// characters of 8 random bytes each, distinct.
pub fn new_recovery_codes() -> Result<Vec<String>, ApiError> {
    let mut codes: Vec<String> = Vec::with_capacity(RECOVERY_CODES);
    while codes.len() < RECOVERY_CODES {
        let mut raw = [0u8; 8];
        crate::pki::random_bytes(&mut raw)?;
        let code: String = Secret::from(raw.to_vec())
            .to_base32()
            .chars()
            .take(RECOVERY_CODE_LEN)
            .collect();
        if !codes.contains(&code) {
            codes.push(code);
        }
    }
    Ok(codes)
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The `otpauth://` URL authenticator apps enroll from (Key Uri Format). Issuer and
/// account are percent-encoded (OpenZiti does not escape them).
pub fn provisioning_url(issuer: &str, account: &str, secret: &str) -> String {
    let issuer = percent_encode(issuer);
    format!(
        "otpauth://totp/{issuer}:{}?issuer={issuer}&secret={secret}",
        percent_encode(account)
    )
}

/// The TOTP step a correct `code` belongs to at `now` (Unix seconds), within ±1 step;
/// `None` for a wrong code, a malformed one (anything but 6 ASCII digits) or a secret
/// that does not decode.
pub fn check(secret: &str, code: &str, now: u64) -> Option<u64> {
    if code.len() != usize::from(DIGITS) || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    totp(secret)?.check(code, now)
}

/// The code for `now` (for tests and the Rust SDK's test helpers).
pub fn code_at(secret: &str, now: u64) -> Option<String> {
    Some(totp(secret)?.generate(now).to_string())
}

/// The generator of a base32 `secret` with Weft's parameters; `None` when the secret
/// does not decode.
fn totp(secret: &str) -> Option<totp_rs::Totp> {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(DIGITS)
        .with_skew(SKEW_STEPS)
        .with_step_duration(STEP_SECS)
        .with_secret(Secret::try_from_base32(secret).ok()?)
        .build()
        .ok()
}

/// A PNG of the QR code of `text` (the provisioning URL), medium error correction,
/// 4-module quiet zone, scaled to about 256 pixels (OpenZiti's size).
pub fn qr_png(text: &str) -> Result<Vec<u8>, ApiError> {
    let code = qrcode::QrCode::with_error_correction_level(text, qrcode::EcLevel::M)
        .map_err(|e| ApiError::Internal(format!("QR code: {e}")))?;
    let width = code.width();
    let modules = code.to_colors();
    let quiet = 4;
    let side = width + 2 * quiet;
    let scale = (256 / side).max(1);
    let px = side * scale;
    let mut pixels = vec![255u8; px * px];
    for (i, color) in modules.iter().enumerate() {
        if *color == qrcode::Color::Dark {
            let (mx, my) = (i % width + quiet, i / width + quiet);
            for y in my * scale..(my + 1) * scale {
                pixels[y * px + mx * scale..y * px + (mx + 1) * scale].fill(0);
            }
        }
    }
    let mut out = Vec::new();
    let dim = u32::try_from(px).map_err(|_| ApiError::Internal("QR code too large".into()))?;
    let mut encoder = png::Encoder::new(&mut out, dim, dim);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder
        .write_header()
        .map_err(|e| ApiError::Internal(format!("PNG: {e}")))?;
    writer
        .write_image_data(&pixels)
        .map_err(|e| ApiError::Internal(format!("PNG: {e}")))?;
    writer
        .finish()
        .map_err(|e| ApiError::Internal(format!("PNG: {e}")))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // RFC 6238 Appendix B, SHA-1: secret "12345678901234567890", 8-digit codes whose
    // last 6 digits are the 6-digit codes.
    const RFC_SECRET: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

    #[test]
    fn matches_the_rfc_6238_test_vectors() {
        for (t, code8) in [
            (59u64, "94287082"),
            (1_111_111_109, "07081804"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
        ] {
            let code = &code8[2..];
            assert_eq!(code_at(RFC_SECRET, t).as_deref(), Some(code), "t={t}");
            assert_eq!(check(RFC_SECRET, code, t), Some(t / STEP_SECS), "t={t}");
        }
    }

    #[test]
    fn accepts_one_step_either_side_and_no_more() {
        let t = 1_234_567_890u64;
        let code = code_at(RFC_SECRET, t).unwrap();
        assert_eq!(check(RFC_SECRET, &code, t + STEP_SECS), Some(t / STEP_SECS));
        assert_eq!(check(RFC_SECRET, &code, t - STEP_SECS), Some(t / STEP_SECS));
        assert_eq!(check(RFC_SECRET, &code, t + 2 * STEP_SECS), None);
        assert_eq!(check(RFC_SECRET, &code, t - 2 * STEP_SECS), None);
    }

    #[test]
    fn malformed_codes_and_secrets_are_refused() {
        let t = 1_234_567_890u64;
        let code = code_at(RFC_SECRET, t).unwrap();
        for bad in ["", "12345", "1234567", "12345a", " 12345", "８９００５９"] {
            assert_eq!(check(RFC_SECRET, bad, t), None, "{bad:?}");
        }
        assert_eq!(check("not base32!", &code, t), None);
        assert_eq!(check("", &code, t), None);
    }

    #[test]
    fn secrets_and_recovery_codes_are_fresh() {
        let a = new_secret().unwrap();
        assert_eq!(a.len(), 32, "160 bits in base32");
        assert_ne!(a, new_secret().unwrap());
        let codes = new_recovery_codes().unwrap();
        assert_eq!(codes.len(), RECOVERY_CODES);
        for c in &codes {
            assert_eq!(c.len(), RECOVERY_CODE_LEN);
            assert!(
                c.chars()
                    .all(|ch| ch.is_ascii_uppercase() || ('2'..='7').contains(&ch))
            );
        }
        let mut sorted = codes.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), codes.len());
    }

    #[test]
    fn provisioning_url_escapes_names() {
        assert_eq!(
            provisioning_url("weft", "alice smith:1", "ABC"),
            "otpauth://totp/weft:alice%20smith%3A1?issuer=weft&secret=ABC"
        );
    }

    #[test]
    fn qr_code_is_a_png_of_about_256_pixels() {
        let png = qr_png("otpauth://totp/weft:alice?issuer=weft&secret=ABCDEFGH").unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let decoder = png::Decoder::new(std::io::Cursor::new(&png));
        let reader = decoder.read_info().unwrap();
        let info = reader.info();
        assert!((200..=260).contains(&info.width), "{}", info.width);
        assert_eq!(info.width, info.height);
    }

    proptest! {
        #[test]
        fn arbitrary_codes_and_secrets_never_panic(secret in ".{0,64}", code in ".{0,12}", t in any::<u64>()) {
            let _ = check(&secret, &code, t / 2);
        }

        #[test]
        fn a_code_is_good_only_near_its_time(t in 1_000_000u64..4_000_000_000u64, off in 0u64..400) {
            let code = code_at(RFC_SECRET, t).unwrap();
            let later = t + off;
            let ok = check(RFC_SECRET, &code, later).is_some();
            if later / STEP_SECS <= t / STEP_SECS + 1 {
                prop_assert!(ok);
            }
        }
    }
}
