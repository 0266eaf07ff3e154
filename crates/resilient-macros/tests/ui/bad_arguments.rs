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

#[resilient::rate_limit(rate = 10, burst = 4, cost = 5)]
async fn cost_above_burst() -> Result<(), ()> {
    Ok(())
}

#[resilient::bulkhead(max_concurrent = 2, queue = 10)]
fn queue_on_a_blocking_function() -> Result<(), ()> {
    Ok(())
}

#[resilient::rate_limit(rate = 10, max_wait = "1s")]
fn wait_on_a_blocking_function() -> Result<(), ()> {
    Ok(())
}

#[resilient::bulkhead(max_concurrent = 2, max_wait = "1s")]
async fn max_wait_without_a_queue() -> Result<(), ()> {
    Ok(())
}

#[resilient::retry(attempts = 3, backoff = constant("1s"))]
#[resilient::timeout(request = "1500ms")]
async fn retry_plan_longer_than_request() -> Result<(), ()> {
    Ok(())
}

#[resilient::timeout(circuit = "10s")]
#[resilient::circuit(failure_rate = 0.5)]
async fn break_longer_than_circuit_timeout() -> Result<(), ()> {
    Ok(())
}

#[resilient::circuit(failure_rate = 0.5, window = 10, minimum_calls = 20)]
async fn minimum_calls_above_window() -> Result<(), ()> {
    Ok(())
}

#[resilient::retry(retry_on_timeout = false)]
async fn retry_on_timeout_without_operation_timeout() -> Result<(), ()> {
    Ok(())
}

#[resilient::rate_limit(rate = 5, key = user)]
async fn key_is_not_an_argument(id: u64) -> Result<u64, ()> {
    Ok(id)
}

#[derive(Clone)]
struct NotHash;

#[resilient::rate_limit(rate = 5, key = who)]
async fn key_is_not_hash(who: NotHash) -> Result<(), ()> {
    let _ = who;
    Ok(())
}

fn main() {}
