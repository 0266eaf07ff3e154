//! Benchmarks of `resilient` side by side with peer crates live in `benches/`.

#![forbid(unsafe_code)]
