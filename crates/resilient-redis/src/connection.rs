//! [`Connection`]: the Redis connection a limiter sends its script over.

use std::fmt;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{Cmd, ErrorKind, RedisResult, Script, ScriptInvocation, ServerErrorKind, Value};

/// A cheaply cloned, multiplexed connection to Redis (or Valkey): one socket shared by
/// every concurrent decision.
///
/// - [`Connection::open`]: a redis-rs [`ConnectionManager`], which reconnects by itself
///   after the server goes away (the limiter's recovery relies on it). It connects
///   lazily, so a limiter can be built while Redis is down (it then decides by its
///   [`FailureMode`](crate::FailureMode) until Redis answers).
/// - `From` a [`ConnectionManager`] or a [`MultiplexedConnection`] you configured
///   yourself (a plain multiplexed connection does not reconnect).
/// - [`Connection::cluster`] (feature `cluster`): a Redis Cluster connection; every key
///   of a quota shares one `{hash tag}`, so the script runs on one node.
///
/// ```no_run
/// # async fn demo() -> redis::RedisResult<()> {
/// let conn = resilient_redis::Connection::open("redis://127.0.0.1:6379/")?;
/// # let _ = conn; Ok(()) }
/// ```
#[derive(Clone)]
pub struct Connection {
    inner: Conn,
}

#[derive(Clone)]
enum Conn {
    Manager(ConnectionManager),
    Multiplexed(MultiplexedConnection),
    #[cfg(feature = "cluster")]
    Cluster(redis::cluster_async::ClusterConnection),
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.inner {
            Conn::Manager(_) => "ConnectionManager",
            Conn::Multiplexed(_) => "MultiplexedConnection",
            #[cfg(feature = "cluster")]
            Conn::Cluster(_) => "ClusterConnection",
        };
        f.debug_struct("Connection").field("kind", &kind).finish()
    }
}

impl Connection {
    /// A reconnecting connection to the server at `url` (`redis://host:port/db`,
    /// `rediss://` needs redis-rs' TLS features), made lazily: this fails only on a
    /// malformed URL. Connection attempts time out after a second and are retried
    /// twice, with a short random backoff (at most 500 ms), each time the connection is
    /// lost; a request made while the server is away fails, and the limiter's own
    /// command timeout bounds how long any decision waits. Call it within a tokio
    /// runtime (the connection task is spawned on it).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// // Lazy: nothing is listening on port 1, and it still builds.
    /// let conn = resilient_redis::Connection::open("redis://127.0.0.1:1/").unwrap();
    /// # let _ = conn;
    /// assert!(resilient_redis::Connection::open("not a url").is_err());
    /// # }
    /// ```
    pub fn open(url: &str) -> RedisResult<Self> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500))
            .set_number_of_retries(2);
        Ok(ConnectionManager::new_lazy_with_config(client, config)?.into())
    }

    /// A Redis Cluster connection from the addresses of one or more of its nodes
    /// (feature `cluster`).
    ///
    /// ```no_run
    /// # async fn demo() -> redis::RedisResult<()> {
    /// let conn = resilient_redis::Connection::cluster(["redis://10.0.0.1:7000/"]).await?;
    /// # let _ = conn; Ok(()) }
    /// ```
    #[cfg(feature = "cluster")]
    #[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
    pub async fn cluster<T: redis::IntoConnectionInfo>(
        nodes: impl IntoIterator<Item = T>,
    ) -> RedisResult<Self> {
        let client = redis::cluster::ClusterClient::builder(nodes)
            .connection_timeout(Duration::from_secs(1))
            .build()?;
        Ok(client.get_async_connection().await?.into())
    }

    /// Runs the script invocation on this connection (EVALSHA, then SCRIPT LOAD and
    /// EVALSHA again if the server does not know the script).
    pub(crate) async fn invoke(&self, inv: &ScriptInvocation<'_>) -> RedisResult<Vec<i64>> {
        match self.inner.clone() {
            Conn::Manager(mut c) => inv.invoke_async(&mut c).await,
            Conn::Multiplexed(mut c) => inv.invoke_async(&mut c).await,
            #[cfg(feature = "cluster")]
            Conn::Cluster(mut c) => inv.invoke_async(&mut c).await,
        }
    }

    /// Runs `cmd`, an `EVALSHA` of `script`; if the server does not know the script,
    /// loads it (`SCRIPT LOAD`) and runs `cmd` again.
    pub(crate) async fn eval(&self, script: &Script, cmd: &Cmd) -> RedisResult<Vec<i64>> {
        match self.query(cmd).await {
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                match self.inner.clone() {
                    Conn::Manager(mut c) => script.load_async(&mut c).await?,
                    Conn::Multiplexed(mut c) => script.load_async(&mut c).await?,
                    #[cfg(feature = "cluster")]
                    Conn::Cluster(mut c) => script.load_async(&mut c).await?,
                };
                self.query(cmd).await
            }
            r => r,
        }
    }

    /// Whether this is a Redis Cluster connection (a script's keys must then share a
    /// slot).
    pub(crate) fn is_cluster(&self) -> bool {
        match self.inner {
            Conn::Manager(_) | Conn::Multiplexed(_) => false,
            #[cfg(feature = "cluster")]
            Conn::Cluster(_) => true,
        }
    }

    /// Runs one command (for tests and the bench: `PING`, `SET`).
    ///
    /// ```no_run
    /// # async fn demo(conn: resilient_redis::Connection) -> redis::RedisResult<()> {
    /// let pong: String = conn.query(&redis::cmd("PING")).await?;
    /// assert_eq!(pong, "PONG");
    /// # Ok(()) }
    /// ```
    pub async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> RedisResult<T> {
        let v: Value = match self.inner.clone() {
            Conn::Manager(mut c) => cmd.query_async(&mut c).await?,
            Conn::Multiplexed(mut c) => cmd.query_async(&mut c).await?,
            #[cfg(feature = "cluster")]
            Conn::Cluster(mut c) => cmd.query_async(&mut c).await?,
        };
        Ok(redis::from_redis_value(v)?)
    }
}

impl From<ConnectionManager> for Connection {
    /// ```no_run
    /// # async fn demo() -> redis::RedisResult<()> {
    /// let client = redis::Client::open("redis://127.0.0.1/")?;
    /// let conn: resilient_redis::Connection =
    ///     redis::aio::ConnectionManager::new(client).await?.into();
    /// # let _ = conn; Ok(()) }
    /// ```
    fn from(c: ConnectionManager) -> Self {
        Self {
            inner: Conn::Manager(c),
        }
    }
}

impl From<MultiplexedConnection> for Connection {
    /// ```no_run
    /// # async fn demo() -> redis::RedisResult<()> {
    /// let client = redis::Client::open("redis://127.0.0.1/")?;
    /// let conn: resilient_redis::Connection =
    ///     client.get_multiplexed_async_connection().await?.into();
    /// # let _ = conn; Ok(()) }
    /// ```
    fn from(c: MultiplexedConnection) -> Self {
        Self {
            inner: Conn::Multiplexed(c),
        }
    }
}

#[cfg(feature = "cluster")]
#[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
impl From<redis::cluster_async::ClusterConnection> for Connection {
    /// ```no_run
    /// # async fn demo() -> redis::RedisResult<()> {
    /// let client = redis::cluster::ClusterClient::new(["redis://127.0.0.1:7000/"])?;
    /// let conn: resilient_redis::Connection = client.get_async_connection().await?.into();
    /// # let _ = conn; Ok(()) }
    /// ```
    fn from(c: redis::cluster_async::ClusterConnection) -> Self {
        Self {
            inner: Conn::Cluster(c),
        }
    }
}
