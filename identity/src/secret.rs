//! Files that hold private keys or passwords: created new, never overwritten, and
//! readable only by their owner.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Creates `path` with `content`, mode 0600 when `secret` (else the umask's default);
/// fails if it exists.
pub fn write_new(path: &Path, content: &[u8], secret: bool) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    if secret {
        opts.mode(0o600);
    }
    opts.open(path)?.write_all(content)
}

/// [`write_new`] of a secret (mode 0600).
pub fn write_secret(path: &Path, content: &[u8]) -> std::io::Result<()> {
    write_new(path, content, true)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_secret_is_owner_only_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        super::write_secret(&path, b"one").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = super::write_secret(&path, b"two").unwrap_err();
        assert_eq!(again.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&path).unwrap(), b"one");
    }
}
