//! Deciding whether an upstream's 200 carries images, without parsing or holding the whole body.
//!
//! A small answer (of a declared length up to [`SMALL_ANSWER_BYTES`]) is read whole anyway, so
//! it is checked whole ([`check_whole`]): complete JSON with at least one image object that has a
//! non-empty `b64_json` or `url`. An OpenAI Images answer can also be megabytes of base64:
//! [`AnswerScan`] reads such a body's first bytes as they arrive and decides as soon as the first
//! element of the top-level `"data"` array shows a non-empty `b64_json` or `url` string, or the
//! array closes without one; elements without one (`{}`, `null`) are skipped, as the whole check
//! skips them. Everything after that point is streamed to the client untouched; an
//! answer cut short on the wire after that point ends the client's stream as an error (the
//! status has gone by then, and re-sending would pay for a second generation).

use serde_json::Value;

/// The largest answer checked whole (and, at the edge, read in one native call).
pub const SMALL_ANSWER_BYTES: usize = 64 * 1024;

/// What the bytes seen so far say about the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not decided yet: feed more bytes.
    NeedMore,
    /// A top-level `data` array with an element that has an image: relay it.
    HasImages,
    /// A JSON object whose `data` is missing, not an array, or has no element with a non-empty
    /// `b64_json` or `url`.
    NoImages,
    /// Not a JSON object, or it ended before a decision.
    Malformed,
}

/// Checks a whole answer: [`Verdict::HasImages`] when it is a complete JSON object whose `data`
/// holds at least one object with a non-empty `b64_json` or `url` string.
pub fn check_whole(body: &[u8]) -> Verdict {
    let Ok(Value::Object(whole)) = serde_json::from_slice::<Value>(body) else { return Verdict::Malformed };
    let usable = |image: &Value| ["b64_json", "url"].iter().any(|key| image.get(key).and_then(Value::as_str).is_some_and(|s| !s.is_empty()));
    match whole.get("data").and_then(Value::as_array) {
        Some(images) if images.iter().any(usable) => Verdict::HasImages,
        _ => Verdict::NoImages,
    }
}

/// Where the scan stands in the answer's structure.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Phase {
    /// In the top-level object, looking for `data`.
    #[default]
    Top,
    /// In the `data` array, between elements (or inside one that is not an object).
    InData,
    /// Inside an element object, looking for `b64_json` or `url`.
    InImage,
}

/// The key just read, as far as the scan cares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Key {
    #[default]
    Other,
    Data,
    Image,
}

/// The longest key the scan matches (`b64_json`).
const KEY_BYTES: usize = 8;

/// An incremental scanner over a JSON answer body. Feed chunks in order with [`AnswerScan::feed`];
/// at the end of the body call [`AnswerScan::finish`].
#[derive(Debug, Default)]
pub struct AnswerScan {
    started: bool,
    depth: u32,
    phase: Phase,
    in_string: bool,
    escaped: bool,
    /// At the key level, the next string is a key.
    expect_key: bool,
    /// Inside a key string at the key level, collecting it.
    in_key: bool,
    key: [u8; KEY_BYTES],
    key_len: usize,
    key_escaped: bool,
    last_key: Key,
    /// A `:` was seen at the key level and its value has not begun.
    value_pending: bool,
    /// An image key's string value has just opened: its first byte decides.
    in_image_value: bool,
    verdict: Option<Verdict>,
}

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

    /// The depth at which keys are read: the top-level object's, or an image's.
    fn key_depth(&self) -> u32 {
        if self.phase == Phase::InImage {
            3
        } else {
            1
        }
    }

    fn step(&mut self, byte: u8) -> Option<Verdict> {
        if self.in_string {
            return self.string_byte(byte);
        }
        if matches!(byte, b' ' | b'\t' | b'\n' | b'\r') {
            return None;
        }
        if self.phase == Phase::InData && self.depth == 2 && byte == b'{' {
            // An element object: it holds an image if it has a non-empty `b64_json` or `url`.
            self.phase = Phase::InImage;
            self.depth += 1;
            self.expect_key = true;
            return None;
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
            match (self.phase, self.last_key) {
                (Phase::Top, Key::Data) if byte == b'[' => {
                    self.depth += 1;
                    self.phase = Phase::InData;
                    return None;
                }
                (Phase::Top, Key::Data) => return Some(Verdict::NoImages),
                (Phase::InImage, Key::Image) if byte == b'"' => {
                    self.in_string = true;
                    self.in_image_value = true;
                    return None;
                }
                _ => {}
            }
        }
        match byte {
            b'"' => {
                self.in_string = true;
                if self.depth == self.key_depth() && self.expect_key {
                    self.expect_key = false;
                    self.in_key = true;
                    self.key_len = 0;
                    self.key_escaped = false;
                }
            }
            b'{' | b'[' => self.depth += 1,
            b'}' | b']' => {
                self.depth -= 1;
                match (self.phase, self.depth) {
                    // An element closed without an image: the next one may have one.
                    (Phase::InImage, 2) => self.phase = Phase::InData,
                    // The `data` array, or the whole answer, closed without an image.
                    (Phase::InData, 1) | (_, 0) => return Some(Verdict::NoImages),
                    _ => {}
                }
            }
            b':' if self.depth == self.key_depth() => self.value_pending = true,
            b',' if self.depth == self.key_depth() => self.expect_key = true,
            _ => {}
        }
        None
    }

    fn string_byte(&mut self, byte: u8) -> Option<Verdict> {
        if self.in_image_value {
            self.in_image_value = false;
            if byte == b'"' {
                // An empty string is no image; the element may still have another key.
                self.in_string = false;
                return None;
            }
            return Some(Verdict::HasImages);
        }
        if self.escaped {
            self.escaped = false;
            return None;
        }
        match byte {
            b'\\' => {
                self.escaped = true;
                self.key_escaped |= self.in_key;
            }
            b'"' => {
                self.in_string = false;
                if self.in_key {
                    self.in_key = false;
                    self.last_key = self.key_read();
                }
            }
            _ if self.in_key => {
                if let Some(slot) = self.key.get_mut(self.key_len) {
                    *slot = byte;
                }
                self.key_len += 1;
            }
            _ => {}
        }
        None
    }

    /// What the key just read is, in the current phase.
    fn key_read(&self) -> Key {
        let key = if self.key_escaped || self.key_len > KEY_BYTES { &[][..] } else { &self.key[..self.key_len] };
        match (self.phase, key) {
            (Phase::Top, b"data") => Key::Data,
            (Phase::InImage, b"b64_json" | b"url") => Key::Image,
            _ => Key::Other,
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
        assert_eq!(verdict(r#"{"data":[{"revised_prompt":"a \"url\": x","meta":{"url":""},"b64_json":"AA"}]}"#), Verdict::HasImages);
        assert_eq!(verdict(r#"{"data":[{"url":"","b64_json":"AA"}]}"#), Verdict::HasImages, "an empty key does not end the search");
        assert_eq!(verdict(r#"{"data":[{},null,{"x":[1,{"url":"u"}]},{"url":"https://x/a.png"}]}"#), Verdict::HasImages, "a later element");
    }

    #[test]
    fn elements_without_b64_json_or_url_are_no_image() {
        for body in [
            r#"{"data":[{}]}"#,
            r#"{"data":[{"revised_prompt":"p"}]}"#,
            r#"{"data":[{"b64_json":""}]}"#,
            r#"{"data":[{"b64_json":null,"url":7}]}"#,
            r#"{"data":[{"nested":{"url":"u"}}]}"#,
            r#"{"data":[{"b64_jsonx":"AA","urls":"u"}]}"#,
            r#"{"data":[{"b6\u0034_json":"AA"}]}"#,
        ] {
            assert_eq!(verdict(body), Verdict::NoImages, "{body}");
        }
    }

    #[test]
    fn a_whole_answer_must_be_complete_json_with_a_usable_image() {
        assert_eq!(check_whole(br#"{"created":1,"data":[{"b64_json":"aW1hZ2U="}]}"#), Verdict::HasImages);
        assert_eq!(check_whole(br#"{"data":[{},{"url":"https://x/a.png"}]}"#), Verdict::HasImages, "one usable image is enough");
        assert_eq!(check_whole(br#"{"created": 1, "data": [{"b64_json": "#), Verdict::Malformed, "cut short");
        assert_eq!(check_whole(br#"{"created":1,"data":[{"b64_json":"aW1h"}]"#), Verdict::Malformed, "one brace short");
        for body in [&br#"{"data":[{}]}"#[..], br#"{"data":[]}"#, br#"{"created":1}"#, br#"{"data":[{"b64_json":""}]}"#, br#"{"data":"x"}"#] {
            assert_eq!(check_whole(body), Verdict::NoImages, "{}", String::from_utf8_lossy(body));
        }
        assert_eq!(check_whole(b"[1]"), Verdict::Malformed);
    }

    #[test]
    fn decision_comes_before_the_large_payload() {
        let mut scan = AnswerScan::new();
        assert_eq!(scan.feed(br#"{"created":1,"data":[{"b64_json":""#), Verdict::NeedMore);
        assert_eq!(scan.feed(b"iVBORw0KGgo"), Verdict::HasImages, "the image's first byte decides");
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
