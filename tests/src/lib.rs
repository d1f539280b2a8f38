//! Weft's system tests: the whole system as real `weft-controller`, `weft-router` and
//! `weft` processes on loopback (booted by `weft-testkit`), the SDK against them, and
//! interop with the OpenZiti C SDK. The tests are in `tests/`; this library is empty.
