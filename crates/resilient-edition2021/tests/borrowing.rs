//! The edition-2021 crate's attributed `async fn`s: they compile (the crate itself is the
//! first check) and behave as the attributes say.

use std::borrow::Cow;
use std::sync::atomic::AtomicU32;

use resilient::Error;
use resilient_edition2021::{by_ref, elided, named, Holder, Service};

#[tokio::test(start_paused = true)]
async fn borrowing_async_fns_work_in_edition_2021() {
    let text = String::from("abc");
    assert_eq!(by_ref(&text).await, Ok(3));
    assert_eq!(named(&text, Holder { text: &text }).await, Ok(6));
    assert_eq!(
        elided(Cow::Borrowed(&text), Holder { text: &text }).await,
        Ok(6)
    );

    let service = Service { base: 10 };
    // One failure, retried; then two more than the attempts allow.
    assert_eq!(service.method(&text, &AtomicU32::new(1)).await, Ok(13));
    let err = service.method(&text, &AtomicU32::new(5)).await.unwrap_err();
    assert!(
        matches!(&err, Error::RetriesExhausted { attempts: 3, last } if last == "down"),
        "{err:?}"
    );
}
