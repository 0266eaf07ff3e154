//! Configuration files (feature `config`).
