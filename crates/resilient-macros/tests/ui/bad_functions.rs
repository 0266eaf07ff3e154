struct Counter(u32);

impl Counter {
    #[resilient::retry(attempts = 2)]
    async fn bump(&mut self) -> Result<u32, ()> {
        self.0 += 1;
        Ok(self.0)
    }
}

#[resilient::timeout(request = "1s")]
fn no_result() {}

#[resilient::timeout(request = "1s")]
fn not_a_result() -> Option<u8> {
    None
}

#[resilient::retry(attempts = 2)]
#[resilient::retry(attempts = 3)]
fn retried_twice() -> Result<(), ()> {
    Ok(())
}

#[resilient::retry(attempts = 2)]
fn opaque() -> Result<impl std::fmt::Display, ()> {
    Ok(1)
}

#[resilient::retry(attempts = 2)]
fn mutable_argument(buf: &mut Vec<u8>) -> Result<(), ()> {
    buf.push(1);
    Ok(())
}

struct NotClone;

#[resilient::retry(attempts = 2)]
fn argument_not_clone(_n: u8, value: NotClone) -> Result<(), ()> {
    let _ = value;
    Ok(())
}

mod imported {
    use resilient::{retry, timeout};

    // The outer attribute cannot tell this `timeout` from another crate's.
    #[retry(attempts = 2)]
    #[timeout(request = "1s")]
    fn both_short() -> Result<(), ()> {
        Ok(())
    }
}

struct NoDefault;

impl resilient::Classify<(), ()> for NoDefault {
    fn classify(&self, _: &Result<(), ()>) -> resilient::Outcome {
        resilient::Outcome::Failure
    }
}

#[resilient::retry(classify = NoDefault)]
fn classify_without_default() -> Result<(), ()> {
    Ok(())
}

fn main() {}
