//! Which I/O backend the shards run on, and how it is chosen.
//!
//! `io = "auto"` (the default) probes io_uring once at start and falls back to epoll when
//! the kernel refuses it (seccomp in containers answers `ENOSYS` or `EPERM`, a
//! `kernel.io_uring_disabled` sysctl `EPERM`, an old kernel `ENOSYS`); `io = "uring"`
//! makes that refusal a startup error; `io = "epoll"` never touches io_uring.

use std::fmt;
use std::str::FromStr;

/// The I/O backend the shards run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IoBackend {
    /// A `tokio-uring` runtime per shard: a connection's reads and writes are io_uring
    /// operations on owned buffers, TLS is driven on those buffers (connections are
    /// accepted through tokio's reactor, as on epoll).
    Uring,
    /// A tokio current-thread runtime per shard (epoll readiness); TLS on the same
    /// [`crate::tls::ServerSession`] as io_uring.
    Epoll,
}

impl IoBackend {
    /// The name used in logs, `router.toml` and `--io`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Uring => "uring",
            Self::Epoll => "epoll",
        }
    }
}

impl fmt::Display for IoBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the operator asked for: a backend, or `auto`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IoSelection {
    /// io_uring when the kernel allows it, epoll otherwise.
    #[default]
    Auto,
    /// io_uring, or a startup error when the kernel does not allow it.
    Uring,
    /// epoll (tokio), even where io_uring works.
    Epoll,
}

impl fmt::Display for IoSelection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Uring => "uring",
            Self::Epoll => "epoll",
        })
    }
}

/// A value other than `auto`, `uring` or `epoll`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown I/O backend `{0}` (expected auto, uring or epoll)")]
pub struct UnknownIoSelection(pub String);

impl FromStr for IoSelection {
    type Err = UnknownIoSelection;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "uring" | "io_uring" | "io-uring" => Ok(Self::Uring),
            "epoll" => Ok(Self::Epoll),
            other => Err(UnknownIoSelection(other.to_owned())),
        }
    }
}

/// `io = "uring"` was asked for on a host where io_uring cannot be used.
#[derive(Debug, thiserror::Error)]
#[error(
    "io_uring was requested (io = \"uring\") but is not available on this host: {0} \
     (a container's seccomp profile or kernel.io_uring_disabled can block it; \
     use io = \"auto\" or \"epoll\")"
)]
pub struct UringUnavailable(#[source] pub std::io::Error);

/// Resolves `requested` to a backend; `probe` says whether io_uring works here and is
/// called at most once (not at all for [`IoSelection::Epoll`]).
pub fn select_backend(
    requested: IoSelection,
    probe: impl FnOnce() -> std::io::Result<()>,
) -> Result<IoBackend, UringUnavailable> {
    match requested {
        IoSelection::Epoll => Ok(IoBackend::Epoll),
        IoSelection::Uring => probe().map(|()| IoBackend::Uring).map_err(UringUnavailable),
        IoSelection::Auto => match probe() {
            Ok(()) => Ok(IoBackend::Uring),
            Err(error) => {
                tracing::info!(
                    %error,
                    "io_uring is not available on this host; using the epoll backend"
                );
                Ok(IoBackend::Epoll)
            }
        },
    }
}

/// Whether io_uring works on this host: builds a small `tokio-uring` runtime and
/// completes one no-op through its ring. It runs on a thread of its own, so it may be
/// called from inside an async runtime (as [`crate::node::Node::start`] is).
#[cfg(target_os = "linux")]
pub fn probe_uring() -> std::io::Result<()> {
    let probe = || {
        // `Runtime::new` reports a ring that cannot be set up (`Builder::start` panics).
        let runtime = uring_runtime(8)?;
        runtime.block_on(tokio_uring::no_op())
    };
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("weft-uring-probe".into())
            .spawn_scoped(scope, probe)?
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the io_uring probe panicked")))
    })
}

/// A `tokio-uring` runtime whose ring has `entries` submission entries, set up for one
/// thread: completions are task work that the kernel runs when the thread next enters
/// it, not at once through an inter-processor interrupt (`IORING_SETUP_COOP_TASKRUN`;
/// a thread waiting for events is woken as before), and only the creating thread
/// submits (`IORING_SETUP_SINGLE_ISSUER`, which lets the kernel skip the ring's
/// submission lock). A kernel without these flags (before 5.19 and 6.0) refuses them
/// with `EINVAL`; the ring is then made without them.
#[cfg(target_os = "linux")]
pub(super) fn uring_runtime(entries: u32) -> std::io::Result<tokio_uring::Runtime> {
    let mut ring = tokio_uring::uring_builder();
    ring.setup_coop_taskrun().setup_single_issuer();
    match tokio_uring::Runtime::new(tokio_uring::builder().entries(entries).uring_builder(&ring)) {
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
            tracing::debug!("io_uring refused COOP_TASKRUN or SINGLE_ISSUER; plain ring");
            tokio_uring::Runtime::new(tokio_uring::builder().entries(entries))
        }
        other => other,
    }
}

/// Whether io_uring works on this host: never, off Linux.
#[cfg(not(target_os = "linux"))]
pub fn probe_uring() -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "io_uring exists only on Linux",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused() -> std::io::Result<()> {
        // What a container's default seccomp profile answers to io_uring_setup.
        Err(std::io::Error::from_raw_os_error(38)) // ENOSYS
    }

    #[test]
    fn uring_requested_without_io_uring_is_a_clear_error() {
        let e = select_backend(IoSelection::Uring, refused).err();
        let Some(e) = e else {
            panic!("uring must not be selected when the probe fails");
        };
        let text = e.to_string();
        assert!(text.contains("io_uring was requested"), "{text}");
        assert!(text.contains("io = \"auto\" or \"epoll\""), "{text}");
        assert_eq!(e.0.raw_os_error(), Some(38));
    }

    #[test]
    fn auto_falls_back_to_epoll_and_epoll_never_probes() {
        assert_eq!(
            select_backend(IoSelection::Auto, refused).ok(),
            Some(IoBackend::Epoll)
        );
        assert_eq!(
            select_backend(IoSelection::Auto, || Ok(())).ok(),
            Some(IoBackend::Uring)
        );
        assert_eq!(
            select_backend(IoSelection::Uring, || Ok(())).ok(),
            Some(IoBackend::Uring)
        );
        let mut probed = false;
        let chosen = select_backend(IoSelection::Epoll, || {
            probed = true;
            Ok(())
        });
        assert_eq!(chosen.ok(), Some(IoBackend::Epoll));
        assert!(!probed);
    }

    #[test]
    fn selection_parses_and_prints() {
        for (text, value) in [
            ("auto", IoSelection::Auto),
            ("uring", IoSelection::Uring),
            ("epoll", IoSelection::Epoll),
        ] {
            assert_eq!(text.parse::<IoSelection>(), Ok(value));
            assert_eq!(value.to_string(), text);
        }
        assert_eq!("io-uring".parse::<IoSelection>(), Ok(IoSelection::Uring));
        assert!("kqueue".parse::<IoSelection>().is_err());
        assert_eq!(IoBackend::Uring.to_string(), "uring");
    }

    #[test]
    fn probe_answers_without_panicking() {
        // A refusal must be an error saying why, never a panic; CI runs the io_uring
        // variants of every test, so there it must be available.
        match probe_uring() {
            Ok(()) => eprintln!("io_uring is available here"),
            Err(e) => {
                assert!(
                    std::env::var_os("CI").is_none_or(|v| v != "true"),
                    "io_uring is not available under CI=true: {e}"
                );
                assert!(!e.to_string().is_empty());
                eprintln!("io_uring is not available here: {e}");
            }
        }
        // The answer is stable: a second probe agrees.
        assert_eq!(probe_uring().is_ok(), probe_uring().is_ok());
    }
}
