//! Header entries: a view over a validated header block, and typed readers for values.
//!
//! Each entry is `id: i32 LE`, `len: u32 LE`, then `len` bytes; entries fill the block
//! with no padding and no count (ziti-sdk-c 0.29.3 `library/message.c` write_hdr/parse_hdrs;
//! openziti/channel v0.18.58 `message.go` unmarshalHeaders). When an id repeats, the first
//! entry wins, as in the C SDK's `find_header` (Go keeps the last); Weft never sends
//! duplicates.

use std::fmt;

use crate::{DecodeError, HeaderId, ValueError};

/// Size of an entry's id and length fields.
pub const ENTRY_OVERHEAD: usize = 8;

/// A validated header block. Iteration and look-up cannot fail.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Headers<'a> {
    block: &'a [u8],
}

impl<'a> Headers<'a> {
    /// Validates `block`: every entry fits and there are at most `max_entries`.
    pub fn parse(block: &'a [u8], max_entries: u16) -> Result<Self, DecodeError> {
        let mut offset = 0usize;
        let mut count = 0u16;
        while offset < block.len() {
            if count == max_entries {
                return Err(DecodeError::TooManyHeaders { max: max_entries });
            }
            let rest = block.get(offset..).unwrap_or_default();
            let Some((_, len, _)) = split_entry(rest) else {
                return Err(match rest.len() < ENTRY_OVERHEAD {
                    true => DecodeError::TruncatedHeader { offset },
                    false => DecodeError::HeaderOverrun {
                        offset,
                        len: read_u32(rest.get(4..8).unwrap_or_default()),
                    },
                });
            };
            offset += ENTRY_OVERHEAD + len;
            count += 1;
        }
        Ok(Self { block })
    }

    /// Wraps a block that [`Headers::parse`] already accepted.
    pub(crate) fn new_unchecked(block: &'a [u8]) -> Self {
        Self { block }
    }

    /// The value of the first entry with `id`.
    pub fn get(&self, id: HeaderId) -> Option<HeaderValue<'a>> {
        self.iter().find(|(k, _)| *k == id).map(|(_, v)| v)
    }

    /// The entries in wire order.
    pub fn iter(&self) -> HeaderIter<'a> {
        HeaderIter { rest: self.block }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// True when the block has no entries.
    pub fn is_empty(&self) -> bool {
        self.block.is_empty()
    }

    /// The raw block.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.block
    }
}

impl fmt::Debug for Headers<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// Splits one entry off the front of `bytes`: (id, value length, value). `None` when the
/// entry does not fit.
fn split_entry(bytes: &[u8]) -> Option<(HeaderId, usize, &[u8])> {
    let id = i32::from_le_bytes(bytes.get(0..4)?.try_into().ok()?);
    let len = usize::try_from(read_u32(bytes.get(4..8)?)).ok()?;
    let value = bytes.get(ENTRY_OVERHEAD..ENTRY_OVERHEAD.checked_add(len)?)?;
    Some((HeaderId(id), len, value))
}

fn read_u32(bytes: &[u8]) -> u32 {
    let mut out = [0u8; 4];
    for (o, b) in out.iter_mut().zip(bytes) {
        *o = *b;
    }
    u32::from_le_bytes(out)
}

/// Iterator over the entries of a validated header block.
#[derive(Clone, Debug)]
pub struct HeaderIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = (HeaderId, HeaderValue<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        let (id, len, value) = split_entry(self.rest)?;
        self.rest = self.rest.get(ENTRY_OVERHEAD + len..).unwrap_or_default();
        Some((id, HeaderValue(value)))
    }
}

/// The raw bytes of one header value, with readers for each encoding the protocol uses.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct HeaderValue<'a>(pub &'a [u8]);

impl<'a> HeaderValue<'a> {
    /// The raw bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.0
    }

    /// A UTF-8 string (no terminator).
    pub fn as_str(&self) -> Result<&'a str, ValueError> {
        std::str::from_utf8(self.0).map_err(|_| ValueError::NotUtf8)
    }

    fn exact<const N: usize>(&self) -> Result<[u8; N], ValueError> {
        self.0.try_into().map_err(|_| ValueError::WrongLength {
            expected: N,
            actual: self.0.len(),
        })
    }

    /// Exactly 4 bytes, int32 LE (Go's `GetUint32Header` rule).
    pub fn as_i32(&self) -> Result<i32, ValueError> {
        self.exact::<4>().map(i32::from_le_bytes)
    }

    /// Exactly 4 bytes, uint32 LE.
    pub fn as_u32(&self) -> Result<u32, ValueError> {
        self.exact::<4>().map(u32::from_le_bytes)
    }

    /// Exactly 2 bytes, uint16 LE (Go's `GetUint16Header`).
    pub fn as_u16(&self) -> Result<u16, ValueError> {
        self.exact::<2>().map(u16::from_le_bytes)
    }

    /// Exactly 8 bytes, uint64 LE.
    pub fn as_u64(&self) -> Result<u64, ValueError> {
        self.exact::<8>().map(u64::from_le_bytes)
    }

    /// The C SDK's lenient int32 read: the first up-to-4 bytes, little-endian, any length
    /// (`message_get_int32_header`).
    pub fn as_u32_lenient(&self) -> u32 {
        read_u32(self.0)
    }

    /// The C SDK's lenient uint64 read: the first up-to-8 bytes, little-endian.
    pub fn as_u64_lenient(&self) -> u64 {
        let mut out = [0u8; 8];
        for (o, b) in out.iter_mut().zip(self.0) {
            *o = *b;
        }
        u64::from_le_bytes(out)
    }

    /// A bool: the first byte is non-zero (C `message_get_bool_header`); empty is false.
    pub fn as_bool(&self) -> bool {
        self.0.first().is_some_and(|b| *b != 0)
    }
}

impl fmt::Debug for HeaderValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match std::str::from_utf8(self.0) {
            Ok(s) if !s.is_empty() && s.chars().all(|c| !c.is_control()) => write!(f, "{s:?}"),
            _ => write!(f, "0x{}", HexBytes(self.0)),
        }
    }
}

struct HexBytes<'a>(&'a [u8]);

impl fmt::Display for HexBytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: i32, value: &[u8]) -> Vec<u8> {
        let mut v = id.to_le_bytes().to_vec();
        v.extend_from_slice(&(value.len() as u32).to_le_bytes());
        v.extend_from_slice(value);
        v
    }

    #[test]
    fn first_entry_wins() {
        let mut block = entry(1000, &7i32.to_le_bytes());
        block.extend(entry(1000, &9i32.to_le_bytes()));
        let h = Headers::parse(&block, 8).unwrap();
        assert_eq!(h.len(), 2);
        assert_eq!(h.get(HeaderId::CONN_ID).unwrap().as_i32(), Ok(7));
        assert!(h.get(HeaderId::SEQ).is_none());
    }

    #[test]
    fn rejects_truncated_and_overrunning_entries() {
        let block = entry(1, &[1, 2, 3]);
        assert_eq!(
            Headers::parse(&block[..5], 8),
            Err(DecodeError::TruncatedHeader { offset: 0 })
        );
        assert_eq!(
            Headers::parse(&block[..10], 8),
            Err(DecodeError::HeaderOverrun { offset: 0, len: 3 })
        );
        let mut huge = 5i32.to_le_bytes().to_vec();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            Headers::parse(&huge, 8),
            Err(DecodeError::HeaderOverrun {
                offset: 0,
                len: u32::MAX
            })
        );
    }

    #[test]
    fn rejects_too_many_entries() {
        let block: Vec<u8> = (0..3).flat_map(|i| entry(i, b"")).collect();
        assert!(Headers::parse(&block, 3).is_ok());
        assert_eq!(
            Headers::parse(&block, 2),
            Err(DecodeError::TooManyHeaders { max: 2 })
        );
    }

    #[test]
    fn value_readers() {
        assert_eq!(HeaderValue(&[1, 0, 0, 0]).as_i32(), Ok(1));
        assert_eq!(
            HeaderValue(&[1, 0]).as_i32(),
            Err(ValueError::WrongLength {
                expected: 4,
                actual: 2
            })
        );
        assert_eq!(HeaderValue(&[0x34, 0x12]).as_u32_lenient(), 0x1234);
        assert_eq!(HeaderValue(&[1, 0, 0, 0, 9, 9]).as_u32_lenient(), 1);
        assert_eq!(HeaderValue(&[0xe8, 3]).as_u64_lenient(), 1000);
        assert!(!HeaderValue(&[]).as_bool());
        assert!(HeaderValue(&[2]).as_bool());
        assert_eq!(
            HeaderValue(&[0xff, 0xfe]).as_str(),
            Err(ValueError::NotUtf8)
        );
        assert_eq!(HeaderValue(&[1, 0]).as_u16(), Ok(1));
        assert_eq!(HeaderValue(&[1, 0, 0, 0, 0, 0, 0, 0]).as_u64(), Ok(1));
    }
}
