//! Nothing here: the crate exists for `tests/pipeline.rs`, a user of the `hieramas` facade that
//! depends on nothing else.
