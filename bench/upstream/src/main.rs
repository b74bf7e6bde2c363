//! The benchmark's mock upstream: answers `POST …/images/generations` with a canned OpenAI Images
//! answer, over HTTP/1.1 keep-alive, a thread per connection, on 127.0.0.1 only.
//!
//! `bench-upstream PORT` serves three answers, chosen by the path's first segment:
//! `/small/…` a 200-byte answer, `/big/…` a 2 MB `b64_json` answer, and `/events/…` an image
//! stream (`text/event-stream`: two 16 KiB partial images, then a 32 KiB final image with its
//! usage). Much faster than any gateway in front of it, so the benchmark measures the gateway.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;

fn main() {
    let port: u16 = std::env::args().nth(1).and_then(|p| p.parse().ok()).expect("usage: bench-upstream PORT");
    let small = response(br#"{"created":1700000000,"data":[{"b64_json":"aW1hZ2U=","revised_prompt":"a small answer"}],"usage":{"total_tokens":12}}"#);
    let big = response(&big_answer());
    let events = chunked_events(&image_stream());
    let answers = Arc::new([small, big, events]);
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind 127.0.0.1");
    for stream in listener.incoming().flatten() {
        let answers = Arc::clone(&answers);
        std::thread::spawn(move || serve(stream, &answers));
    }
}

/// `length` pseudo-random base64 characters.
fn base64_noise(length: usize) -> Vec<u8> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut state = 0x2545_f491_4f6c_dd1du64;
    (0..length)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ALPHABET[(state % 64) as usize]
        })
        .collect()
}

/// A 2 MB answer: `b64_json` of 1.5 MB of pseudo-random bytes.
fn big_answer() -> Vec<u8> {
    let mut body = br#"{"created":1700000000,"data":[{"b64_json":""#.to_vec();
    body.extend_from_slice(&base64_noise(2_048_000));
    body.extend_from_slice(br#""}]}"#);
    body
}

/// gpt-image's stream of two partial images and the final one, as OpenAI writes it: one
/// event per chunk of a chunked answer (a stream has no length).
fn image_stream() -> Vec<String> {
    let event = |kind: &str, b64: &[u8], extra: &str| {
        let b64 = std::str::from_utf8(b64).expect("base64 is ASCII");
        format!("event: image_generation.{kind}\ndata: {{\"type\":\"image_generation.{kind}\",\"b64_json\":\"{b64}\",\"created_at\":1700000000,\"size\":\"1024x1024\",\"quality\":\"low\",\"background\":\"opaque\",\"output_format\":\"png\"{extra}}}\n\n")
    };
    let usage = r#","usage":{"input_tokens":12,"output_tokens":272,"total_tokens":284,"input_tokens_details":{"text_tokens":12,"image_tokens":0}}"#;
    let noise = base64_noise(64 * 1024);
    [
        event("partial_image", &noise[..16 * 1024], r#","partial_image_index":0"#),
        event("partial_image", &noise[16 * 1024..32 * 1024], r#","partial_image_index":1"#),
        event("completed", &noise[32 * 1024..], usage),
    ]
    .into()
}

fn chunked_events(events: &[String]) -> Vec<u8> {
    let mut out = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    for event in events {
        out.extend_from_slice(format!("{:x}\r\n{event}\r\n", event.len()).as_bytes());
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

fn response(body: &[u8]) -> Vec<u8> {
    response_of("application/json", body)
}

fn response_of(content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n", body.len()).into_bytes();
    out.extend_from_slice(body);
    out
}

/// Serves one connection: the small, big or events answer (`answers`, in that order) by path.
fn serve(stream: TcpStream, answers: &[Vec<u8>; 3]) {
    let _ = stream.set_nodelay(true);
    let mut writer = stream.try_clone().expect("clone the socket");
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split(' ').nth(1).unwrap_or("");
        let answer = if path.starts_with("/big/") {
            &answers[1]
        } else if path.starts_with("/events/") {
            &answers[2]
        } else {
            &answers[0]
        };
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
        if writer.write_all(answer).is_err() || close {
            return;
        }
    }
}
