//! The benchmark's mock upstream: answers `POST …/images/generations` with a canned OpenAI Images
//! answer, over HTTP/1.1 keep-alive, a thread per connection, on 127.0.0.1 only.
//!
//! `bench-upstream PORT` serves two answers, chosen by the path's first segment:
//! `/small/…` a 200-byte answer and `/big/…` a 2 MB `b64_json` answer. Much faster than any
//! gateway in front of it, so the benchmark measures the gateway.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;

fn main() {
    let port: u16 = std::env::args().nth(1).and_then(|p| p.parse().ok()).expect("usage: bench-upstream PORT");
    let small = response(br#"{"created":1700000000,"data":[{"b64_json":"aW1hZ2U=","revised_prompt":"a small answer"}],"usage":{"total_tokens":12}}"#);
    let big = response(&big_answer());
    let answers = Arc::new((small, big));
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind 127.0.0.1");
    for stream in listener.incoming().flatten() {
        let answers = Arc::clone(&answers);
        std::thread::spawn(move || serve(stream, &answers.0, &answers.1));
    }
}

/// A 2 MB answer: `b64_json` of 1.5 MB of pseudo-random bytes.
fn big_answer() -> Vec<u8> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let payload: Vec<u8> = (0..2_048_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ALPHABET[(state % 64) as usize]
        })
        .collect();
    let mut body = br#"{"created":1700000000,"data":[{"b64_json":""#.to_vec();
    body.extend_from_slice(&payload);
    body.extend_from_slice(br#""}]}"#);
    body
}

fn response(body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n", body.len()).into_bytes();
    out.extend_from_slice(body);
    out
}

fn serve(stream: TcpStream, small: &[u8], big: &[u8]) {
    let _ = stream.set_nodelay(true);
    let mut writer = stream.try_clone().expect("clone the socket");
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let is_big = line.split(' ').nth(1).is_some_and(|path| path.starts_with("/big/"));
        let mut content_length = 0usize;
        let mut close = false;
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    content_length = value.parse().unwrap_or(0);
                } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close") {
                    close = true;
                }
            }
        }
        let mut body = vec![0; content_length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        if writer.write_all(if is_big { big } else { small }).is_err() || close {
            return;
        }
    }
}
