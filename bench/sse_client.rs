//! The subscribers of `bench/scale_events.py`: opens many event streams
//! (`GET /api/{plural}/events`) at once and records, for each event received, when it
//! arrived. Python's asyncio would spend more CPU parsing a thousand streams than the
//! server spends serving them; this client stays out of the measurement.
//!
//!     cargo build --release --features bench --bin trellis-sse-client
//!     trellis-sse-client --port N --path /api/items/events --spec SPEC --out OUT
//!
//! SPEC has one line per subscriber: `<token>\t<filter or empty>`. The client opens
//! every stream, prints `ready <n>` once all answered 200 (or `failed <n> <status>` and
//! exits), then reads until its standard input closes, and writes OUT: one line per
//! event, `<subscriber>\t<event id>\t<event>\t<record id>\t<at ms>\t<received µs>`,
//! plus one `#closed\t<subscriber>` line per stream that ended early.
#![forbid(unsafe_code)]

use std::io::{BufRead, Write};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use tokio::io::AsyncReadExt;

#[derive(Deserialize)]
struct Data {
    id: String,
    at: Option<String>,
}

struct Seen {
    lines: Vec<String>,
}

fn now_us() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0)
}

fn arg(args: &[String], name: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| {
            eprintln!("missing {name}");
            std::process::exit(2)
        })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let port = arg(&args, "--port");
    let path = arg(&args, "--path");
    let spec = std::fs::read_to_string(arg(&args, "--spec")).expect("spec");
    let out = arg(&args, "--out");
    let subs: Vec<(String, String)> = spec
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (tok, filter) = l.split_once('\t').unwrap_or((l, ""));
            (tok.to_string(), filter.to_string())
        })
        .collect();
    // One thread: the client must leave the cores to the server.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(port, path, subs, out));
}

async fn run(port: String, path: String, subs: Vec<(String, String)>, out: String) {
    let seen = Arc::new(Mutex::new(Seen { lines: Vec::new() }));
    let n = subs.len();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<Result<(), String>>(n.max(1));
    let open = Arc::new(tokio::sync::Semaphore::new(64));
    for (i, (tok, filter)) in subs.into_iter().enumerate() {
        let seen = seen.clone();
        let ready = ready_tx.clone();
        let open = open.clone();
        let port = port.clone();
        let mut target = path.clone();
        if !filter.is_empty() {
            target = format!("{target}?filter={}", encode(&filter));
        }
        tokio::spawn(async move {
            let permit = open.acquire_owned().await;
            let stream = match connect(&port, &target, &tok).await {
                Ok(s) => s,
                Err(e) => {
                    let _ = ready.send(Err(format!("{i} {e}"))).await;
                    return;
                }
            };
            drop(permit);
            let _ = ready.send(Ok(())).await;
            read_events(i, stream, seen).await;
        });
    }
    drop(ready_tx);
    for _ in 0..n {
        match ready_rx.recv().await {
            Some(Ok(())) => {}
            Some(Err(e)) => {
                println!("failed {e}");
                std::process::exit(1);
            }
            None => break,
        }
    }
    println!("ready {n}");
    let _ = std::io::stdout().flush();
    // Until the driver closes our standard input.
    tokio::task::spawn_blocking(|| {
        let stdin = std::io::stdin();
        for _ in stdin.lock().lines() {}
    })
    .await
    .ok();
    let lines = std::mem::take(&mut seen.lock().expect("lock").lines);
    let mut f = std::io::BufWriter::new(std::fs::File::create(out).expect("out"));
    for l in lines {
        let _ = writeln!(f, "{l}");
    }
    let _ = f.flush();
    std::process::exit(0);
}

fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Sends the request and reads the head; the rest of the stream (chunked) follows.
async fn connect(
    port: &str,
    target: &str,
    tok: &str,
) -> Result<(tokio::net::TcpStream, Vec<u8>), String> {
    use tokio::io::AsyncWriteExt;
    let mut s = tokio::net::TcpStream::connect(format!("127.0.0.1:{port}"))
        .await
        .map_err(|e| e.to_string())?;
    let req = format!(
        "GET {target} HTTP/1.1\r\nhost: 127.0.0.1\r\naccept: text/event-stream\r\nauthorization: Bearer {tok}\r\n\r\n"
    );
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed before the head".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let status = head.split(' ').nth(1).unwrap_or("");
            if status != "200" {
                return Err(format!("status {status}: {head}"));
            }
            if !head
                .to_ascii_lowercase()
                .contains("transfer-encoding: chunked")
            {
                return Err("expected a chunked body".into());
            }
            return Ok((s, buf[end + 4..].to_vec()));
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Decodes the chunked body and the events in it.
async fn read_events(
    i: usize,
    (mut s, mut raw): (tokio::net::TcpStream, Vec<u8>),
    seen: Arc<Mutex<Seen>>,
) {
    let mut body: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 16384];
    let mut mine = Vec::new();
    loop {
        // Whole chunks out of `raw` into `body`.
        while let Some(eol) = find(&raw, b"\r\n") {
            let size_text = String::from_utf8_lossy(&raw[..eol]).to_string();
            let size = usize::from_str_radix(size_text.trim(), 16).unwrap_or(0);
            if raw.len() < eol + 2 + size + 2 {
                break;
            }
            body.extend_from_slice(&raw[eol + 2..eol + 2 + size]);
            raw.drain(..eol + 2 + size + 2);
            if size == 0 {
                break;
            }
        }
        // Whole events out of `body`.
        let recv = now_us();
        while let Some(end) = find(&body, b"\n\n") {
            let block = String::from_utf8_lossy(&body[..end]).to_string();
            body.drain(..end + 2);
            let (mut id, mut name, mut data) = ("", "message", "");
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id: ") {
                    id = v;
                } else if let Some(v) = line.strip_prefix("event: ") {
                    name = v;
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data = v;
                }
            }
            if data.is_empty() {
                continue; // a keep-alive comment
            }
            let (rid, at) = match serde_json::from_str::<Data>(data) {
                Ok(d) => {
                    let at =
                        d.at.and_then(|a| chrono::DateTime::parse_from_rfc3339(&a).ok())
                            .map(|t| t.timestamp_millis())
                            .unwrap_or(0);
                    (d.id, at)
                }
                Err(_) => (String::new(), 0),
            };
            mine.push(format!("{i}\t{id}\t{name}\t{rid}\t{at}\t{recv}"));
        }
        if !mine.is_empty() {
            seen.lock().expect("lock").lines.append(&mut mine);
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&chunk[..n]),
        }
    }
    let mut g = seen.lock().expect("lock");
    g.lines.append(&mut mine);
    g.lines.push(format!("#closed\t{i}"));
}
