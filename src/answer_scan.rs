//! Deciding whether an upstream's 200 carries images, without parsing or holding the whole body.
//!
//! An OpenAI Images answer can be megabytes of base64. [`AnswerScan`] reads the body's first bytes
//! as they arrive and decides as soon as it has seen the top-level `"data"` array open and either
//! close empty or begin its first element. Everything after that point is streamed to the client
//! untouched. It checks structure only as far as that decision needs: an answer cut short after its
//! first image began is relayed as it arrives, and the runtime reports the broken stream to the
//! client (the status has gone by then; re-sending would pay for a second generation).

/// What the bytes seen so far say about the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not decided yet: feed more bytes.
    NeedMore,
    /// A top-level `data` array whose first element is an object: relay it.
    HasImages,
    /// A JSON object whose `data` is missing, not an array, or empty.
    NoImages,
    /// Not a JSON object, or it ended before a decision.
    Malformed,
}

/// An incremental scanner over a JSON answer body. Feed chunks in order with [`AnswerScan::feed`];
/// at the end of the body call [`AnswerScan::finish`].
#[derive(Debug, Default)]
pub struct AnswerScan {
    started: bool,
    depth: u32,
    in_string: bool,
    escaped: bool,
    /// At the top level, the next string is a key.
    expect_key: bool,
    /// Inside a top-level key string, matching it against `data`.
    in_key: bool,
    key_len: usize,
    key_is_prefix: bool,
    /// The last top-level key was `data`.
    key_is_data: bool,
    /// A `:` was seen at the top level and its value has not begun.
    value_pending: bool,
    /// The `data` array has opened; its first element decides.
    awaiting_first_element: bool,
    verdict: Option<Verdict>,
}

const DATA: &[u8] = b"data";

impl AnswerScan {
    /// A scanner that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads the next chunk of the body and says whether that decided the answer. Once decided,
    /// the verdict stays and further bytes are ignored.
    pub fn feed(&mut self, chunk: &[u8]) -> Verdict {
        if let Some(verdict) = self.verdict {
            return verdict;
        }
        for &byte in chunk {
            if let Some(verdict) = self.step(byte) {
                self.verdict = Some(verdict);
                return verdict;
            }
        }
        Verdict::NeedMore
    }

    /// The verdict at the end of the body: undecided means the answer was cut short.
    pub fn finish(&self) -> Verdict {
        self.verdict.unwrap_or(Verdict::Malformed)
    }

    fn step(&mut self, byte: u8) -> Option<Verdict> {
        if self.in_string {
            self.string_byte(byte);
            return None;
        }
        if matches!(byte, b' ' | b'\t' | b'\n' | b'\r') {
            return None;
        }
        if self.awaiting_first_element {
            // Images are objects (`{"b64_json": …}`); `[]`, `[null]` or `["x"]` carry none.
            return Some(if byte == b'{' { Verdict::HasImages } else { Verdict::NoImages });
        }
        if !self.started {
            if byte != b'{' {
                return Some(Verdict::Malformed);
            }
            self.started = true;
            self.depth = 1;
            self.expect_key = true;
            return None;
        }
        if self.value_pending {
            self.value_pending = false;
            if self.key_is_data {
                if byte != b'[' {
                    return Some(Verdict::NoImages);
                }
                self.awaiting_first_element = true;
                return None;
            }
        }
        match byte {
            b'"' => {
                self.in_string = true;
                if self.depth == 1 && self.expect_key {
                    self.expect_key = false;
                    self.in_key = true;
                    self.key_len = 0;
                    self.key_is_prefix = true;
                }
            }
            b'{' | b'[' => self.depth += 1,
            b'}' | b']' => {
                self.depth -= 1;
                if self.depth == 0 {
                    return Some(Verdict::NoImages);
                }
            }
            b':' if self.depth == 1 => self.value_pending = true,
            b',' if self.depth == 1 => self.expect_key = true,
            _ => {}
        }
        None
    }

    fn string_byte(&mut self, byte: u8) {
        if self.escaped {
            self.escaped = false;
            return;
        }
        match byte {
            b'\\' => {
                self.escaped = true;
                self.key_is_prefix = false;
            }
            b'"' => {
                self.in_string = false;
                if self.in_key {
                    self.in_key = false;
                    self.key_is_data = self.key_is_prefix && self.key_len == DATA.len();
                }
            }
            _ if self.in_key => {
                self.key_is_prefix &= DATA.get(self.key_len) == Some(&byte);
                self.key_len += 1;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scans `body` split at every possible point, checking the verdict never depends on chunking.
    fn verdict(body: &str) -> Verdict {
        let whole = {
            let mut scan = AnswerScan::new();
            match scan.feed(body.as_bytes()) {
                Verdict::NeedMore => scan.finish(),
                v => v,
            }
        };
        for split in 0..body.len() {
            let mut scan = AnswerScan::new();
            let (a, b) = body.as_bytes().split_at(split);
            let mut v = scan.feed(a);
            if v == Verdict::NeedMore {
                v = scan.feed(b);
            }
            if v == Verdict::NeedMore {
                v = scan.finish();
            }
            assert_eq!(v, whole, "split at {split} of {body}");
        }
        whole
    }

    #[test]
    fn openai_answers_with_images_are_relayed() {
        assert_eq!(verdict(r#"{"created":1,"data":[{"b64_json":"AAAA"}]}"#), Verdict::HasImages);
        assert_eq!(verdict(r#" { "data" : [ {"url":"https://x"} ] , "usage":{} }"#), Verdict::HasImages);
        assert_eq!(verdict(r#"{"usage":{"data":[]},"note":"\"data\":[]","data":[{"url":"u"}]}"#), Verdict::HasImages);
    }

    #[test]
    fn decision_comes_before_the_large_payload() {
        let mut scan = AnswerScan::new();
        assert_eq!(scan.feed(br#"{"created":1,"data":[{"b64_json":""#), Verdict::HasImages);
    }

    #[test]
    fn missing_empty_or_non_array_data_is_no_images() {
        for body in [
            r#"{"created":1,"data":[]}"#,
            r#"{"created":1,"data":[  ]}"#,
            r#"{"created":1,"data":[null]}"#,
            r#"{"created":1,"data":[1,2]}"#,
            r#"{"created":1,"data":["x"]}"#,
            r#"{"created":1}"#,
            r#"{"created":1,"data":null}"#,
            r#"{"created":1,"data":{"url":"u"}}"#,
            r#"{"nested":{"data":[1]}}"#,
            r#"{"datum":[1]}"#,
            r#"{"dat":[1]}"#,
            r#"{"error":{"message":"boom"}}"#,
        ] {
            assert_eq!(verdict(body), Verdict::NoImages, "{body}");
        }
    }

    #[test]
    fn non_objects_and_cut_short_bodies_are_malformed() {
        for body in ["", "   ", "<html>oops</html>", "[1]", r#"{"created":1,"da"#, r#"{"data""#] {
            assert_eq!(verdict(body), Verdict::Malformed, "{body:?}");
        }
    }
}
