//! Deterministic tests of the stream state machine, with no Envoy and no Go runtime.
//!
//! `envoy` defines Envoy's host callbacks over a per-thread fake stream, `go` provides a
//! scripted plugin with the exports of a Go filter plugin, and `harness` drives the module's
//! hooks the way Envoy does. Each libtest thread runs one test, so each test gets its own
//! fakes. Goroutines are real threads, started and joined by the test, so every interleaving
//! a test checks is fixed by its code.

mod body_tests;
mod envoy;
mod go;
mod harness;
mod headers_tests;
mod lifecycle_tests;
mod sequence_tests;
