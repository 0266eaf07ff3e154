//! Connection-pool awareness against a real HTTP/1.1 server on loopback whose kept-alive
//! connections all die at once (as after a restart behind a load balancer: the sockets
//! stay open, and each answers its next request with a reset). A retry on the same pool
//! picks another dead connection; with `PoolAware` (a pool of our own) or `FreshClient`
//! (reqwest's internal pool) it runs on a new one.
#![cfg(all(feature = "reqwest", not(loom)))]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use resilient::http::pool::{FreshClient, PoolAware, PoolHooks, is_connection_fault};
use resilient::{Error, Pipeline, Retry};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The server: connection ids count from 1; connections accepted before `kill` was last
/// raised reset on their next request.
struct Server {
    addr: SocketAddr,
    epoch: Arc<AtomicU64>,
    accepted: Arc<AtomicU64>,
}

impl Server {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let epoch = Arc::new(AtomicU64::new(0));
        let accepted = Arc::new(AtomicU64::new(0));
        let (e, a) = (epoch.clone(), accepted.clone());
        tokio::spawn(async move {
            loop {
                let (conn, _) = listener.accept().await.unwrap();
                let id = a.fetch_add(1, Ordering::SeqCst) + 1;
                let born = e.load(Ordering::SeqCst);
                tokio::spawn(serve(conn, id, born, e.clone()));
            }
        });
        Self {
            addr,
            epoch,
            accepted,
        }
    }

    /// Every connection open now dies on its next request.
    fn kill_connections(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }

    fn connections(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }

    fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }
}

/// Answers each request on `conn` with its id, keeping the connection alive, until the
/// epoch moves past `born`: then the next request gets a reset (RST, linger 0).
async fn serve(mut conn: TcpStream, id: u64, born: u64, epoch: Arc<AtomicU64>) {
    let mut buf = Vec::new();
    loop {
        // one request: headers only (GETs)
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let mut chunk = [0u8; 1024];
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        buf.drain(..end);
        if epoch.load(Ordering::SeqCst) > born {
            conn.set_zero_linger().unwrap();
            return; // dropped: a reset
        }
        let body = id.to_string();
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: keep-alive\r\n\r\n",
            body.len()
        );
        if conn.write_all(head.as_bytes()).await.is_err()
            || conn.write_all(body.as_bytes()).await.is_err()
        {
            return;
        }
    }
}

/// Two requests at once, so that `client`'s pool ends up holding two idle connections.
async fn warm(client: &reqwest::Client, server: &Server) {
    let (a, b) = tokio::join!(
        client.get(server.url()).send(),
        client.get(server.url()).send()
    );
    let (a, b) = (
        a.unwrap().text().await.unwrap(),
        b.unwrap().text().await.unwrap(),
    );
    assert_ne!(a, b, "two connections");
    assert_eq!(server.connections(), 2);
}

fn retrying() -> Pipeline {
    Pipeline::builder()
        .retry(Retry::immediate().attempts(2))
        .build()
        .unwrap()
}

#[tokio::test]
async fn reqwest_retries_land_on_dead_pooled_connections_without_a_fresh_client() {
    let server = Server::start().await;
    let client = reqwest::Client::new();
    warm(&client, &server).await;
    server.kill_connections();

    let r = retrying().execute(|| client.get(server.url()).send()).await;
    match r {
        Err(Error::RetriesExhausted { attempts: 2, last }) => {
            assert!(is_connection_fault(&last), "{last:?}")
        }
        other => panic!("{other:?}"),
    }
    // both attempts went out on the old connections
    assert_eq!(server.connections(), 2);
}

#[tokio::test]
async fn with_a_fresh_client_the_retry_connects_afresh() {
    let server = Server::start().await;
    let clients = FreshClient::new(reqwest::Client::new);
    warm(&clients.checkout().client, &server).await;
    server.kill_connections();

    let r = retrying()
        .execute(|| {
            let c = clients.checkout();
            let url = server.url();
            let clients = &clients;
            async move {
                let r = c.client.get(url).send().await;
                clients.report(c.generation, &r);
                r?.text().await
            }
        })
        .await;
    // the retry's connection is the third the server accepted
    assert_eq!(r.unwrap(), "3");
    assert_eq!(clients.checkout().generation, 1);
    assert_eq!(server.connections(), 3);

    // the new client keeps its connection alive: no further rebuild, no new connection
    let again = clients.checkout().client.get(server.url()).send().await;
    assert_eq!(again.unwrap().text().await.unwrap(), "3");
    assert_eq!(clients.checkout().generation, 1);
}

/// A pool of raw keep-alive connections to the server, as deadpool or bb8 would hold.
struct RawPool {
    addr: SocketAddr,
    idle: Mutex<Vec<TcpStream>>,
    evicted: AtomicU64,
}

impl RawPool {
    async fn get(&self) -> std::io::Result<TcpStream> {
        let idle = self.idle.lock().unwrap().pop();
        match idle {
            Some(conn) => Ok(conn),
            None => TcpStream::connect(self.addr).await,
        }
    }

    fn put(&self, conn: TcpStream) {
        self.idle.lock().unwrap().push(conn);
    }
}

impl PoolHooks for &RawPool {
    type Connection = TcpStream;
    fn evict(&self, conn: TcpStream) {
        self.evicted.fetch_add(1, Ordering::SeqCst);
        drop(conn);
    }
    fn recycle_idle(&self) {
        self.idle.lock().unwrap().clear();
    }
}

/// One GET on `conn`: the server's connection id, or the socket's error (a reset, or
/// `UnexpectedEof` when it closed before answering).
async fn get(conn: &mut TcpStream) -> std::io::Result<u64> {
    conn.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await?;
    let mut buf = Vec::new();
    loop {
        let mut chunk = [0u8; 256];
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some((_, body)) = text.split_once("\r\n\r\n")
            && !body.is_empty()
        {
            return Ok(body.parse().unwrap());
        }
    }
}

async fn warm_raw(pool: &RawPool) {
    let (mut a, mut b) = (pool.get().await.unwrap(), pool.get().await.unwrap());
    assert_eq!(
        (get(&mut a).await.unwrap(), get(&mut b).await.unwrap()),
        (1, 2)
    );
    pool.put(a);
    pool.put(b);
}

#[tokio::test]
async fn a_pool_that_returns_every_connection_retries_on_a_dead_one() {
    let server = Server::start().await;
    let pool = RawPool {
        addr: server.addr,
        idle: Mutex::new(Vec::new()),
        evicted: AtomicU64::new(0),
    };
    warm_raw(&pool).await;
    server.kill_connections();
    let r = retrying()
        .execute(|| async {
            let mut conn = pool.get().await?;
            let r = get(&mut conn).await;
            pool.put(conn); // back to the pool, whatever happened
            r
        })
        .await;
    assert!(
        matches!(r, Err(Error::RetriesExhausted { attempts: 2, .. })),
        "{r:?}"
    );
    assert_eq!(server.connections(), 2);
}

#[tokio::test]
async fn pool_aware_evicts_the_broken_connection_and_recycles_the_idle_ones() {
    let server = Server::start().await;
    let pool = RawPool {
        addr: server.addr,
        idle: Mutex::new(Vec::new()),
        evicted: AtomicU64::new(0),
    };
    warm_raw(&pool).await;
    server.kill_connections();
    let aware = PoolAware::new(&pool);
    let r = retrying()
        .execute(|| async {
            let mut conn = pool.get().await?;
            let r = get(&mut conn).await;
            if let Some(conn) = aware.release(conn, &r) {
                pool.put(conn);
            }
            r
        })
        .await;
    assert_eq!(r.unwrap(), 3, "the retry ran on a new connection");
    assert_eq!(aware.faults(), 1);
    assert_eq!(pool.evicted.load(Ordering::SeqCst), 1);
    // the healthy connection went back to the pool, and serves the next call
    assert_eq!(pool.idle.lock().unwrap().len(), 1);
    let mut conn = pool.get().await.unwrap();
    assert_eq!(get(&mut conn).await.unwrap(), 3);
    assert_eq!(server.connections(), 3);
}
