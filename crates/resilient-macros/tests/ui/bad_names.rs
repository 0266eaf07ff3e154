// A name declared in code: a misspelling is a compile error, not a lookup failure at run time.
resilient::names! {
    pub PAYMENTS = "payments";
}

#[resilient::pattern(PAYMNETS)]
async fn charge() -> Result<(), std::io::Error> {
    Ok(())
}

#[resilient::circuit(breaker = PAYMNETS)]
async fn refund() -> Result<(), std::io::Error> {
    Ok(())
}

fn main() {}
