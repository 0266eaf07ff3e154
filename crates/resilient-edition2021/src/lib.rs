//! An edition-2021 crate using `resilient`'s attribute macros on `async fn`s that borrow:
//! references, named and elided lifetimes (also hidden in a path type, such as `Holder`
//! below, written without `<'_>`), and `&self` methods. The attributes turn such functions
//! into plain `fn`s returning the engine's future, which must capture those lifetimes as
//! the `async fn`'s future did; edition 2021's own rules for a returned `impl Trait` would
//! not (see `tests/borrowing.rs`). Not published: it exists for that test.

use std::borrow::Cow;

/// A type with a lifetime parameter, used below without naming it.
#[derive(Clone, Debug)]
pub struct Holder<'a> {
    /// Borrowed text.
    pub text: &'a str,
}

/// Borrows its argument.
#[resilient::retry(attempts = 2, backoff = immediate)]
pub async fn by_ref(text: &str) -> Result<usize, ()> {
    Ok(text.len())
}

/// Names its lifetime.
#[resilient::retry(attempts = 2, backoff = immediate)]
pub async fn named<'a>(text: &'a str, holder: Holder<'a>) -> Result<usize, ()> {
    Ok(text.len() + holder.text.len())
}

/// Elides the lifetimes of path types, with and without `'_`.
#[allow(elided_lifetimes_in_paths)]
#[resilient::retry(attempts = 2, backoff = immediate)]
pub async fn elided(text: Cow<'_, str>, holder: Holder) -> Result<usize, ()> {
    Ok(text.len() + holder.text.len())
}

/// A service whose method borrows `self` and an argument.
#[derive(Debug)]
pub struct Service {
    /// Added to every answer.
    pub base: usize,
}

impl Service {
    /// Fails `fail` times, then answers.
    #[resilient::retry(attempts = 3, backoff = immediate)]
    #[resilient::timeout(operation = "1s")]
    pub async fn method(
        &self,
        text: &str,
        fail: &std::sync::atomic::AtomicU32,
    ) -> Result<usize, String> {
        use std::sync::atomic::Ordering;
        if fail
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err("down".to_string());
        }
        Ok(self.base + text.len())
    }
}
