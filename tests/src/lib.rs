//! `weft-tests`: end-to-end tests with real controller, router and SDK processes on
//! loopback, and interop tests against the OpenZiti C SDK. Shared helpers live here;
//! the tests themselves in `tests/tests/`. No tests yet: they arrive with the crates
//! they exercise.
