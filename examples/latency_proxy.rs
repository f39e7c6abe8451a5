//! Benchmark helper: a TCP proxy that makes a loopback server look far away, for the latency
//! runs of `bench/latency.sh` (this kernel has no `tc netem`). Each connection gets what a long
//! link gives it:
//!
//! - a connection set-up of one round trip (the SYN and its answer) before the upstream
//!   connection is made;
//! - every byte, either way, delivered half a round trip after it was read;
//! - at most WINDOW bytes in flight per direction: a byte's credit comes back half a round trip
//!   after its delivery (the acknowledgement's way back). So one connection moves at most
//!   WINDOW / RTT, as a TCP stream limited by its receive window does.
//!
//! A model, not a network: no loss, no slow start, no congestion control, and the window is
//! fixed (a real one grows to the receiver's buffer limit, `net.ipv4.tcp_rmem`). What it
//! reproduces is the one thing the latency runs measure, the per-connection cap that makes
//! several connections faster than one.
//!
//! `latency_proxy LISTEN UPSTREAM RTT_MS [WINDOW_BYTES]` (default window 4 MiB). Prints
//! `listening on ADDR` once ready.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;

const CHUNK: usize = 64 << 10;

#[tokio::main]
async fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        return Err("usage: latency_proxy LISTEN UPSTREAM RTT_MS [WINDOW_BYTES]".into());
    }
    let upstream = args[2].clone();
    let rtt = Duration::from_millis(args[3].parse().map_err(|e| format!("RTT_MS: {e}"))?);
    let window: usize = match args.get(4) {
        Some(w) => w.parse().map_err(|e| format!("WINDOW_BYTES: {e}"))?,
        None => 4 << 20,
    };
    if window < CHUNK {
        return Err(format!("WINDOW_BYTES must be at least {CHUNK}"));
    }
    let listener = TcpListener::bind(&args[1])
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args[1]))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!("listening on {addr}");
    loop {
        let (client, _) = listener.accept().await.map_err(|e| e.to_string())?;
        let upstream = upstream.clone();
        tokio::spawn(async move {
            tokio::time::sleep(rtt).await;
            let Ok(server) = TcpStream::connect(&upstream).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            let half = rtt / 2;
            let up = tokio::spawn(pipe(client_read, server_write, half, window));
            let down = tokio::spawn(pipe(server_read, client_write, half, window));
            let _ = tokio::join!(up, down);
        });
    }
}

/// One direction: read, hold for `delay`, write; at most `window` bytes between the read and
/// the return of their credit `delay` after the write.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
    window: usize,
) {
    let credit = Arc::new(Semaphore::new(window));
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let reader_credit = Arc::clone(&credit);
    let reader = tokio::spawn(async move {
        loop {
            let Ok(permit) = reader_credit.acquire_many(CHUNK as u32).await else {
                return;
            };
            permit.forget();
            let mut buf = vec![0u8; CHUNK];
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => 0,
                Ok(n) => n,
            };
            // Unused credit goes back at once.
            reader_credit.add_permits(CHUNK - n);
            if n == 0 {
                return;
            }
            buf.truncate(n);
            if tx.send((Instant::now() + delay, buf)).is_err() {
                return;
            }
        }
    });
    while let Some((due, buf)) = rx.recv().await {
        tokio::time::sleep_until(due).await;
        if to.write_all(&buf).await.is_err() {
            break;
        }
        let credit = Arc::clone(&credit);
        let n = buf.len();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            credit.add_permits(n);
        });
    }
    let _ = to.shutdown().await;
    reader.abort();
}
