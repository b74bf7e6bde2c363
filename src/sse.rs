//! Server-sent events both ways: [`EventReader`] reads an upstream's `text/event-stream` into
//! whole events however its bytes are chunked, holding at most one event's bytes; [`write`]
//! frames the events the gateway sends. The format is the WHATWG HTML standard's
//! ("server-sent events", the event stream interpretation).

/// One event: its `event:` name (`None` for the default, `message`) and its `data:` lines joined
/// by line feeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub name: Option<String>,
    pub data: String,
}

/// Why a stream cannot be read on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// One event (or one line) is longer than the reader's bound.
    TooLarge { limit: usize },
    /// A line is not UTF-8 (the standard decodes with replacement; an upstream that sends
    /// anything but UTF-8 JSON is broken).
    NotUtf8,
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::TooLarge { limit } => write!(f, "an event of the stream is larger than {limit} bytes"),
            ReadError::NotUtf8 => f.write_str("the stream is not UTF-8"),
        }
    }
}

/// Reads events from chunks of an event stream. Holds the unfinished line and the unfinished
/// event only, together at most `max_event_bytes`.
#[derive(Debug)]
pub struct EventReader {
    /// Bytes of the line not yet ended.
    line: Vec<u8>,
    /// The previous chunk ended with a carriage return: a line feed starting the next one
    /// belongs to the same line ending.
    after_cr: bool,
    name: Option<String>,
    data: String,
    /// Whether a `data:` field was seen for the event being read (its data may be empty).
    has_data: bool,
    /// No line has ended yet: the first may start with a byte order mark, which is skipped.
    first_line: bool,
    max_event_bytes: usize,
}

impl EventReader {
    /// A reader that refuses any event (or line) of more than `max_event_bytes`.
    pub fn new(max_event_bytes: usize) -> Self {
        EventReader { line: Vec::new(), after_cr: false, name: None, data: String::new(), has_data: false, first_line: true, max_event_bytes }
    }

    /// Reads `chunk`, returning the events it completed, in order.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<Event>, ReadError> {
        let mut events = Vec::new();
        let mut rest = chunk;
        if self.after_cr && !rest.is_empty() {
            self.after_cr = false;
            if let Some(b'\n') = rest.first() {
                rest = &rest[1..];
            }
        }
        while let Some(end) = rest.iter().position(|b| *b == b'\n' || *b == b'\r') {
            self.take_bytes(&rest[..end])?;
            match (rest[end], rest.get(end + 1)) {
                (b'\r', Some(b'\n')) => rest = &rest[end + 2..],
                (b'\r', None) => {
                    self.after_cr = true;
                    rest = &[];
                }
                _ => rest = &rest[end + 1..],
            }
            let line = std::mem::take(&mut self.line);
            if let Some(event) = self.end_line(&line)? {
                events.push(event);
            }
        }
        self.take_bytes(rest)?;
        Ok(events)
    }

    /// Whether the stream ended in the middle of an event (its last event, not closed by a blank
    /// line, is dropped, as the standard says).
    pub fn unfinished(&self) -> bool {
        !self.line.is_empty() || self.has_data || self.name.is_some()
    }

    fn take_bytes(&mut self, bytes: &[u8]) -> Result<(), ReadError> {
        if self.line.len() + self.data.len() + bytes.len() > self.max_event_bytes {
            return Err(ReadError::TooLarge { limit: self.max_event_bytes });
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    /// Interprets one line; a blank line ends the event being read.
    fn end_line(&mut self, line: &[u8]) -> Result<Option<Event>, ReadError> {
        if line.is_empty() {
            self.first_line = false;
            let (name, data, has_data) = (self.name.take(), std::mem::take(&mut self.data), std::mem::take(&mut self.has_data));
            // An event without data is not dispatched; its name is forgotten.
            return Ok(has_data.then(|| Event { name, data: data.strip_suffix('\n').map(str::to_owned).unwrap_or(data) }));
        }
        let mut line = std::str::from_utf8(line).map_err(|_| ReadError::NotUtf8)?;
        if std::mem::take(&mut self.first_line) {
            line = line.strip_prefix('\u{feff}').unwrap_or(line);
        }
        if line.starts_with(':') {
            return Ok(None); // a comment (a keep-alive)
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => self.name = Some(value.to_owned()),
            "data" => {
                self.has_data = true;
                self.data.push_str(value);
                self.data.push('\n');
            }
            // `id` and `retry` concern reconnection, which a relay of one answer never does.
            _ => {}
        }
        Ok(None)
    }
}

/// The bytes of an event called `name` with `data` (each of its lines a `data:` line).
pub fn write(name: &str, data: &str) -> Vec<u8> {
    write_event(Some(name), data)
}

/// The bytes of `event` as read, framed again (a stream's events go on whole, each as one
/// write: however the upstream's bytes were cut, the client never sees half an event).
pub fn write_again(event: &Event) -> Vec<u8> {
    write_event(event.name.as_deref(), &event.data)
}

fn write_event(name: Option<&str>, data: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.map_or(0, str::len) + data.len() + 16);
    if let Some(name) = name {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
    }
    for line in data.split('\n') {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(name: Option<&str>, data: &str) -> Event {
        Event { name: name.map(str::to_owned), data: data.to_owned() }
    }

    fn read_all(chunks: &[&[u8]]) -> Vec<Event> {
        let mut reader = EventReader::new(1024);
        chunks.iter().flat_map(|chunk| reader.feed(chunk).unwrap()).collect()
    }

    #[test]
    fn events_come_whole_however_the_bytes_are_cut() {
        let stream = b"event: image_generation.partial_image\ndata: {\"a\":1}\n\nevent: image_generation.completed\ndata: {\"b\":2}\n\n";
        let whole = read_all(&[stream]);
        assert_eq!(whole, vec![event(Some("image_generation.partial_image"), "{\"a\":1}"), event(Some("image_generation.completed"), "{\"b\":2}")]);
        for cut in 0..stream.len() {
            assert_eq!(read_all(&[&stream[..cut], &stream[cut..]]), whole, "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(read_all(&bytes), whole);
    }

    #[test]
    fn every_line_ending_counts_and_a_crlf_split_across_chunks_is_one() {
        let expected = vec![event(Some("e"), "x")];
        assert_eq!(read_all(&[b"event: e\r\ndata: x\r\n\r\n"]), expected);
        assert_eq!(read_all(&[b"event: e\rdata: x\r\r"]), expected);
        assert_eq!(read_all(&[b"event: e\r", b"\ndata: x\r", b"\n\r", b"\n"]), expected);
    }

    #[test]
    fn an_empty_chunk_between_cr_and_lf_changes_nothing_and_a_leading_bom_is_skipped() {
        assert_eq!(read_all(&[b"data: a\r", b"", b"\ndata: b\n\n"]), vec![event(None, "a\nb")]);
        let bom = "\u{feff}event: e\ndata: x\n\n".as_bytes();
        assert_eq!(read_all(&[&bom[..2], &bom[2..]]), vec![event(Some("e"), "x")]);
        assert_eq!(read_all(&["data: x\n\n\u{feff}data: y\n\n".as_bytes()]), vec![event(None, "x")], "only the stream's first bytes may be a BOM");
    }

    #[test]
    fn comments_ids_and_unknown_fields_are_skipped_and_data_lines_join() {
        let stream = b": keep-alive\nid: 7\nretry: 10\nfoo: bar\ndata:first\ndata: second\ndata\n\n";
        assert_eq!(read_all(&[stream]), vec![event(None, "first\nsecond\n")]);
    }

    #[test]
    fn an_event_without_data_is_not_dispatched() {
        assert_eq!(read_all(&[b"event: ping\n\n: only a comment\n\ndata: x\n\n"]), vec![event(None, "x")]);
    }

    #[test]
    fn an_unfinished_last_event_is_reported() {
        let mut reader = EventReader::new(1024);
        assert_eq!(reader.feed(b"data: x\n\ndata: {\"half\"").unwrap(), vec![event(None, "x")]);
        assert!(reader.unfinished());
        let mut done = EventReader::new(1024);
        done.feed(b"data: x\n\n").unwrap();
        assert!(!done.unfinished());
    }

    #[test]
    fn an_event_over_the_bound_is_refused_and_memory_stays_bounded() {
        let mut reader = EventReader::new(64);
        assert_eq!(reader.feed(&[b'a'; 65]), Err(ReadError::TooLarge { limit: 64 }));
        let mut lines = EventReader::new(64);
        let many = "data: 0123456789\n".repeat(10);
        assert_eq!(lines.feed(many.as_bytes()), Err(ReadError::TooLarge { limit: 64 }));
        let mut fits = EventReader::new(64);
        assert_eq!(fits.feed(b"data: 0123456789\n\n").unwrap().len(), 1);
        assert_eq!(fits.feed(b"data: 0123456789\n\n").unwrap().len(), 1, "a dispatched event frees its bytes");
    }

    #[test]
    fn bytes_that_are_not_utf8_are_refused() {
        assert_eq!(EventReader::new(64).feed(b"data: \xff\n\n"), Err(ReadError::NotUtf8));
    }

    #[test]
    fn written_events_read_back() {
        let bytes = [write("image_generation.completed", "{\"b64_json\":\"AAAA\"}"), write("error", "line one\nline two")].concat();
        assert_eq!(read_all(&[&bytes]), vec![event(Some("image_generation.completed"), "{\"b64_json\":\"AAAA\"}"), event(Some("error"), "line one\nline two")]);
    }
}
