#[resilient::retry(attempts = 3, backoff = exponential("100 parsecs"))]
async fn bad_duration() -> Result<(), ()> {
    Ok(())
}

#[resilient::bulkhead(max_concurrent = 2, queue_size = 10)]
async fn unknown_key() -> Result<(), ()> {
    Ok(())
}

#[resilient::retry(attempts = 0)]
async fn zero_attempts() -> Result<(), ()> {
    Ok(())
}

#[resilient::retry(attempts = 2)]
#[resilient::timeout(operation = "5s", request = "1s")]
async fn operation_above_request() -> Result<(), ()> {
    Ok(())
}

#[resilient::rate_limit(rate = 10, algorithm = leaky_bucket)]
async fn unknown_algorithm() -> Result<(), ()> {
    Ok(())
}

#[resilient::rate_limit(rate = 10, algorithm = sliding_log, burst = 5)]
async fn burst_on_a_window() -> Result<(), ()> {
    Ok(())
}

fn main() {}
