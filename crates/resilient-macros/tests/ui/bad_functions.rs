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

fn main() {}
