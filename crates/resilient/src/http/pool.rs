//! Connection-pool awareness: after a connection-level failure (a reset, a broken pipe, a
//! connection closed mid-message, a failed TLS handshake) the next attempt uses a fresh
//! connection, and the pool's other idle connections, which may be just as dead (a server
//! that restarted, a load balancer that dropped its table), are recycled once.
//!
//! - [`is_connection_fault`]: whether an error says a connection broke (by type, never by
//!   message). A refused connection is not one: no connection was made, so there is none
//!   to evict.
//! - [`PoolHooks`] and [`PoolAware`], for pools that hand out connections (deadpool, bb8,
//!   your own): each attempt checks a connection out, and [`PoolAware::release`] hands it
//!   back after the attempt: returned to the pool after anything but a connection fault,
//!   evicted after one, and the idle connections recycled once per fault.
//! - [`FreshClient`], for clients that pool internally (reqwest, hyper-util, tonic
//!   channels) and offer no eviction: it holds the client, and after a connection fault
//!   seen by an attempt of the current client it builds a new one (a new, empty pool), once
//!   for all the attempts that saw the same fault; retries then connect afresh.
//!
//! **With deadpool** (`deadpool::managed`), the hooks are two calls of its own:
//!
//! ```ignore
//! struct Hooks(deadpool::managed::Pool<Manager>);
//! impl resilient::http::pool::PoolHooks for Hooks {
//!     type Connection = deadpool::managed::Object<Manager>;
//!     // detach the object: dropped, never returned to the pool
//!     fn evict(&self, conn: Self::Connection) { let _ = deadpool::managed::Object::take(conn); }
//!     // drop every idle object (`retain` sees only idle ones)
//!     fn recycle_idle(&self) { self.0.retain(|_, _| false); }
//! }
//! ```
//!
//! **With bb8**, which cannot drop idle connections on demand: mark the failed connection
//! broken (a flag your `ManageConnection::has_broken` reads) in `evict`, and leave
//! `recycle_idle` as it is: bb8 tests connections on checkout when `test_on_check_out` is
//! set (its default), which catches the other dead ones.
//!
//! **With reqwest or hyper-util**: their pools drop a connection that failed mid-request,
//! but keep the other idle ones to the same host, so a retry may well pick another dead
//! one. Hold the client in a [`FreshClient`] and report each attempt's result to it: a
//! retry after a connection fault then runs on a new client. The example on
//! [`FreshClient`] shows the whole pattern.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock};

use super::{ErrorClass, classify_error};

/// Whether `e` says a connection broke under a request: by the types in its source chain,
/// an [`ErrorClass::Connect`] failure other than a refused connection or an unavailable
/// address (after those no connection existed).
///
/// ```
/// use resilient::http::pool::is_connection_fault;
/// use std::io::{Error, ErrorKind};
/// assert!(is_connection_fault(&Error::from(ErrorKind::ConnectionReset)));
/// assert!(is_connection_fault(&Error::from(ErrorKind::BrokenPipe)));
/// assert!(is_connection_fault(&Error::from(ErrorKind::UnexpectedEof)));
/// assert!(!is_connection_fault(&Error::from(ErrorKind::ConnectionRefused)));
/// assert!(!is_connection_fault(&Error::from(ErrorKind::TimedOut)));
/// ```
pub fn is_connection_fault(e: &(dyn StdError + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(err) = next {
        let refused = err.downcast_ref::<io::Error>().is_some_and(|io| {
            matches!(
                io.kind(),
                io::ErrorKind::ConnectionRefused | io::ErrorKind::AddrNotAvailable
            )
        });
        if refused {
            return false;
        }
        next = err.source();
    }
    classify_error(e) == ErrorClass::Connect
}

/// What a connection pool does for [`PoolAware`]: drop one connection instead of
/// returning it, and (optionally) drop its idle connections.
///
/// ```
/// use resilient::http::pool::PoolHooks;
/// use std::sync::Mutex;
/// struct Idle(Mutex<Vec<u32>>);
/// impl PoolHooks for Idle {
///     type Connection = u32;
///     fn evict(&self, _conn: u32) {} // dropped, never pushed back
///     fn recycle_idle(&self) { self.0.lock().unwrap().clear(); }
/// }
/// ```
pub trait PoolHooks: Send + Sync {
    /// A checked-out connection (returned to its pool when dropped, as deadpool's and
    /// bb8's are).
    type Connection;

    /// Drops `conn` without returning it to the pool.
    fn evict(&self, conn: Self::Connection);

    /// Drops the pool's idle connections (called once per connection fault; default:
    /// nothing).
    fn recycle_idle(&self) {}
}

/// A pool's hooks, run by each attempt's outcome: see the [module docs](self).
///
/// ```
/// use resilient::http::pool::{PoolAware, PoolHooks};
/// use resilient::{Pipeline, Retry};
/// use std::io::{Error, ErrorKind};
/// use std::sync::Mutex;
///
/// /// A toy pool: connection ids; `idle` holds the ones ready for reuse.
/// #[derive(Default)]
/// struct Pool { idle: Mutex<Vec<u32>>, next: Mutex<u32> }
/// impl Pool {
///     fn get(&self) -> u32 {
///         self.idle.lock().unwrap().pop().unwrap_or_else(|| { let mut n = self.next.lock().unwrap(); *n += 1; *n })
///     }
/// }
/// impl PoolHooks for &Pool {
///     type Connection = u32;
///     fn evict(&self, _conn: u32) {}
///     fn recycle_idle(&self) { self.idle.lock().unwrap().clear(); }
/// }
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let pool = Pool::default();
/// pool.idle.lock().unwrap().extend([101, 102]); // two idle connections, both dead
/// let aware = PoolAware::new(&pool);
/// let p = Pipeline::builder().retry(Retry::immediate().attempts(2)).build().unwrap();
/// let used = p.execute(|| {
///     let conn = pool.get();
///     let r = if conn > 100 { Err(Error::from(ErrorKind::ConnectionReset)) } else { Ok(conn) };
///     if let Some(conn) = aware.release(conn, &r) { pool.idle.lock().unwrap().push(conn) }
///     async move { r }
/// }).await.unwrap();
/// assert_eq!(used, 1); // the retry did not get dead connection 101: a new one
/// assert_eq!(aware.faults(), 1);
/// # }
/// ```
pub struct PoolAware<P> {
    hooks: P,
    faults: AtomicU64,
}

impl<P: fmt::Debug> fmt::Debug for PoolAware<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolAware")
            .field("hooks", &self.hooks)
            .field("faults", &self.faults.load(Ordering::Relaxed))
            .finish()
    }
}

impl<P: PoolHooks> PoolAware<P> {
    /// Runs `hooks` on connection faults.
    ///
    /// ```
    /// use resilient::http::pool::{PoolAware, PoolHooks};
    /// struct NoPool;
    /// impl PoolHooks for NoPool { type Connection = (); fn evict(&self, _: ()) {} }
    /// assert_eq!(PoolAware::new(NoPool).faults(), 0);
    /// ```
    pub fn new(hooks: P) -> Self {
        Self {
            hooks,
            faults: AtomicU64::new(0),
        }
    }

    /// Hands `conn` back after an attempt that ended in `result`: after a connection
    /// fault ([`is_connection_fault`]) it is evicted and the idle connections recycled,
    /// and `None` comes back; otherwise `Some(conn)`, to return to the pool (for deadpool
    /// and bb8, by dropping it).
    ///
    /// ```
    /// use resilient::http::pool::{PoolAware, PoolHooks};
    /// use std::io::{Error, ErrorKind};
    /// struct NoPool;
    /// impl PoolHooks for NoPool { type Connection = u8; fn evict(&self, _: u8) {} }
    /// let aware = PoolAware::new(NoPool);
    /// assert_eq!(aware.release(7, &Ok::<(), Error>(())), Some(7));
    /// assert_eq!(aware.release(7, &Err::<(), _>(Error::from(ErrorKind::TimedOut))), Some(7));
    /// assert_eq!(aware.release(7, &Err::<(), _>(Error::from(ErrorKind::ConnectionReset))), None);
    /// ```
    pub fn release<T, E>(&self, conn: P::Connection, result: &Result<T, E>) -> Option<P::Connection>
    where
        E: StdError + 'static,
    {
        match result {
            Err(e) if is_connection_fault(e) => {
                self.hooks.evict(conn);
                self.faults.fetch_add(1, Ordering::Relaxed);
                self.hooks.recycle_idle();
                None
            }
            _ => Some(conn),
        }
    }

    /// The connection faults seen so far.
    pub fn faults(&self) -> u64 {
        self.faults.load(Ordering::Relaxed)
    }

    /// The hooks.
    pub fn hooks(&self) -> &P {
        &self.hooks
    }
}

/// A client checked out of a [`FreshClient`]: the client and the generation it belongs
/// to (to report its attempt's result against).
#[derive(Debug, Clone)]
pub struct Checkout<C> {
    /// The client (a cheap clone sharing the current pool).
    pub client: C,
    /// Its generation: how many times the client had been rebuilt when it was checked out.
    pub generation: u64,
}

/// A client that pools connections internally (reqwest, hyper-util, a tonic channel),
/// rebuilt after a connection fault so that retries connect afresh: see the
/// [module docs](self).
///
/// Rebuilding happens once per fault: results of attempts made with an older generation
/// are ignored, so a burst of failures on the old client builds one new client.
///
/// ```
/// use resilient::http::pool::FreshClient;
/// use resilient::{Pipeline, Retry};
/// use std::io::{Error, ErrorKind};
/// use std::sync::atomic::{AtomicU32, Ordering};
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// // stands in for `reqwest::Client::new`: each build is a new pool
/// static BUILT: AtomicU32 = AtomicU32::new(0);
/// let clients = FreshClient::new(|| BUILT.fetch_add(1, Ordering::SeqCst));
/// let p = Pipeline::builder().retry(Retry::immediate().attempts(2)).build().unwrap();
/// let r = p.execute(|| {
///     let c = clients.checkout();
///     // client 0's connections are all dead
///     let r = if c.client == 0 { Err(Error::from(ErrorKind::ConnectionReset)) } else { Ok(c.client) };
///     clients.report(c.generation, &r);
///     async move { r }
/// }).await;
/// assert_eq!(r.unwrap(), 1); // the retry ran on a new client
/// # }
/// ```
pub struct FreshClient<C> {
    make: Box<dyn Fn() -> C + Send + Sync>,
    current: RwLock<(u64, C)>,
}

impl<C> fmt::Debug for FreshClient<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FreshClient")
            .field(
                "generation",
                &self
                    .current
                    .read()
                    .unwrap_or_else(PoisonError::into_inner)
                    .0,
            )
            .finish_non_exhaustive()
    }
}

impl<C: Clone> FreshClient<C> {
    /// Holds the client `make` builds, and builds another with it after each fault.
    ///
    /// ```
    /// use resilient::http::pool::FreshClient;
    /// let clients = FreshClient::new(|| "client");
    /// assert_eq!(clients.checkout().generation, 0);
    /// ```
    pub fn new(make: impl Fn() -> C + Send + Sync + 'static) -> Self {
        let first = make();
        Self {
            make: Box::new(make),
            current: RwLock::new((0, first)),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, (u64, C)> {
        self.current.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The current client, for one attempt.
    pub fn checkout(&self) -> Checkout<C> {
        let g = self.read();
        Checkout {
            client: g.1.clone(),
            generation: g.0,
        }
    }

    /// Tells the result of an attempt made with a client of `generation`: after a
    /// connection fault ([`is_connection_fault`]) of the current generation, the client is
    /// rebuilt. Returns whether this report rebuilt it.
    ///
    /// ```
    /// use resilient::http::pool::FreshClient;
    /// use std::io::{Error, ErrorKind};
    /// let clients = FreshClient::new(|| ());
    /// let reset = Err::<(), _>(Error::from(ErrorKind::ConnectionReset));
    /// assert!(clients.report(0, &reset));
    /// assert!(!clients.report(0, &reset)); // that fault's client is already replaced
    /// assert_eq!(clients.checkout().generation, 1);
    /// ```
    pub fn report<T, E>(&self, generation: u64, result: &Result<T, E>) -> bool
    where
        E: StdError + 'static,
    {
        match result {
            Err(e) if is_connection_fault(e) => self.renew(generation),
            _ => false,
        }
    }

    /// Rebuilds the client if it is still of `generation` (e.g. after a fault your own
    /// classification found). Returns whether it did.
    pub fn renew(&self, generation: u64) -> bool {
        if self.read().0 != generation {
            return false;
        }
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        if current.0 != generation {
            return false;
        }
        // built under the lock: the attempts racing with this one wait for the new client
        // rather than build one each
        *current = (generation + 1, (self.make)());
        true
    }
}
