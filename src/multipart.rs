//! `multipart/form-data`, both ways, on `nostd-multipart`: a client's form read into its parts
//! (each a range of the one body it came in, never copied), and a form written for an upstream.
//! Every malformed form is a 400 saying what is wrong, naming the field where there is one.

use std::ops::Range;
use std::rc::Rc;

use nostd_multipart::{content_disposition, Encoder, Event, Parser, Part};
use sha2::{Digest, Sha256};

use crate::error::{ErrorKind, GatewayError};

/// The most parts one form may have.
pub const MAX_PARTS: usize = 64;

/// One part of a client's form: its field name, file name and content type as sent, and where
/// its bytes are in the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormPart {
    pub name: String,
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub range: Range<usize>,
}

impl FormPart {
    /// Whether the part is a file: it has a file name, or a content type other than text or JSON.
    pub fn is_file(&self) -> bool {
        self.filename.is_some() || self.content_type.as_deref().is_some_and(|ct| !ct.starts_with("text/plain") && !ct.starts_with("application/json"))
    }
}

fn malformed(why: impl Into<String>) -> GatewayError {
    GatewayError::new(ErrorKind::InvalidRequest, format!("The multipart body is malformed: {}.", why.into())).with_code("invalid_multipart")
}

/// Whether `content_type` is `multipart/form-data`.
pub fn is_form(content_type: Option<&str>) -> bool {
    crate::media_type::is(content_type, "multipart/form-data")
}

/// The parts of the form `body` (with the request's `content_type`), in order.
pub fn parse(content_type: &str, body: &[u8]) -> Result<Vec<FormPart>, GatewayError> {
    let mut parser: Parser<'_, 1024, 16> = Parser::from_content_type(content_type.as_bytes())
        .map_err(|_| malformed("the Content-Type has no valid boundary parameter (multipart/form-data; boundary=…)"))?;
    let mut parts = Vec::new();
    let mut current: Option<FormPart> = None;
    let mut pos = 0;
    loop {
        let (used, event) = parser.parse(&body[pos..], true).map_err(|error| match error {
            nostd_multipart::Error::UnexpectedEof => malformed("it ends before its closing boundary (truncated?)"),
            nostd_multipart::Error::HeaderTooLong | nostd_multipart::Error::TooManyHeaders => malformed("a part's headers are too long or too many"),
            _ => malformed("a part's headers cannot be read (each line must end in CRLF)"),
        })?;
        pos += used;
        match event {
            Some(Event::PartStart) => {
                if parts.len() >= MAX_PARTS {
                    return Err(malformed(format!("it has more than {MAX_PARTS} parts")));
                }
                current = Some(FormPart { name: String::new(), filename: None, content_type: None, range: 0..0 });
            }
            Some(Event::Header { name, value }) => {
                let part = current.as_mut().expect("a header comes within a part");
                if name.eq_ignore_ascii_case(b"content-disposition") {
                    let disposition = content_disposition(value).map_err(|_| malformed("a part's Content-Disposition cannot be read"))?;
                    let text = |raw: nostd_multipart::ParamValue<'_>| String::from_utf8_lossy(&raw.bytes().collect::<Vec<u8>>()).into_owned();
                    part.name = disposition.name().map(text).unwrap_or_default();
                    part.filename = disposition.filename().map(text);
                } else if name.eq_ignore_ascii_case(b"content-type") {
                    part.content_type = Some(String::from_utf8_lossy(value).trim().to_ascii_lowercase());
                }
            }
            Some(Event::HeadersEnd) => {
                let part = current.as_mut().expect("within a part");
                if part.name.is_empty() {
                    return Err(malformed(format!("part {} has no name (Content-Disposition: form-data; name=\"…\")", parts.len() + 1)));
                }
                part.range = pos..pos;
            }
            Some(Event::Data(data)) => {
                let part = current.as_mut().expect("within a part");
                // Data is a slice of the body itself: its place in the body.
                let offset = data.as_ptr() as usize - body.as_ptr() as usize;
                if part.range.is_empty() {
                    part.range = offset..offset;
                } else if part.range.end != offset {
                    return Err(malformed("a part's data is not contiguous"));
                }
                part.range.end = offset + data.len();
            }
            Some(Event::PartEnd) => parts.push(current.take().expect("within a part")),
            Some(Event::Finished) => return Ok(parts),
            None if used == 0 => return Err(malformed("it ends before its closing boundary (truncated?)")),
            None => {}
        }
    }
}

/// A form for an upstream, written at once: text fields and files in order.
#[derive(Default)]
pub struct Form<'a> {
    fields: Vec<(&'a str, Field<'a>)>,
}

enum Field<'a> {
    Text(&'a str),
    File { filename: &'a str, content_type: &'a str, bytes: &'a [u8] },
}

impl<'a> Form<'a> {
    pub fn new() -> Self {
        Form { fields: Vec::new() }
    }

    /// Adds the text field `name`.
    pub fn text(mut self, name: &'a str, value: &'a str) -> Self {
        self.fields.push((name, Field::Text(value)));
        self
    }

    /// Adds the file field `name`.
    pub fn file(mut self, name: &'a str, filename: &'a str, content_type: &'a str, bytes: &'a [u8]) -> Self {
        self.fields.push((name, Field::File { filename, content_type, bytes }));
        self
    }

    fn value(field: &Field<'a>) -> &'a [u8] {
        match field {
            Field::Text(value) => value.as_bytes(),
            Field::File { bytes, .. } => bytes,
        }
    }

    /// The body and its `Content-Type`. The boundary is drawn from the fields' digest and
    /// checked against every value, so no value holds it.
    pub fn finish(self) -> (String, Rc<[u8]>) {
        let mut digest = Sha256::new();
        for (name, field) in &self.fields {
            let value = Self::value(field);
            // Names, lengths and the ends of each value: enough to tell forms apart, cheap on images.
            digest.update(name.as_bytes());
            digest.update((value.len() as u64).to_le_bytes());
            digest.update(&value[..value.len().min(64)]);
            digest.update(&value[value.len().saturating_sub(64)..]);
        }
        let seed = digest.finalize();
        let mut boundary = format!("imagegate-{}", hex::encode(&seed[..12]));
        let mut round = 0u32;
        while self.fields.iter().any(|(_, field)| contains(Self::value(field), boundary.as_bytes())) {
            round += 1;
            let next = Sha256::new().chain_update(seed).chain_update(round.to_le_bytes()).finalize();
            boundary = format!("imagegate-{}", hex::encode(&next[..12]));
        }
        let mut encoder = Encoder::new(boundary.as_bytes()).expect("the boundary is valid");
        let parts: Vec<(Part<'_>, u64)> = self
            .fields
            .iter()
            .map(|(name, field)| {
                let part = match field {
                    Field::Text(_) => Part { name: name.as_bytes(), filename: None, content_type: None },
                    Field::File { filename, content_type, .. } => {
                        Part { name: name.as_bytes(), filename: Some(filename.as_bytes()), content_type: Some(content_type.as_bytes()) }
                    }
                };
                (part, Self::value(field).len() as u64)
            })
            .collect();
        let mut body = Vec::with_capacity(encoder.content_length(&parts) as usize);
        let mut buffer = [0u8; 512];
        for ((part, _), (_, field)) in parts.iter().zip(&self.fields) {
            loop {
                let (written, done) = encoder.write_part_header(part, &mut buffer).expect("no CR or LF in a content type");
                body.extend_from_slice(&buffer[..written]);
                if done {
                    break;
                }
            }
            body.extend_from_slice(Self::value(field));
        }
        loop {
            let (written, done) = encoder.write_close(&mut buffer);
            body.extend_from_slice(&buffer[..written]);
            if done {
                break;
            }
        }
        (format!("multipart/form-data; boundary={boundary}"), Rc::from(body))
    }
}

/// Whether `needle` occurs in `haystack`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CT: &str = "multipart/form-data; boundary=xyz";

    fn body(text: &str) -> Vec<u8> {
        text.replace('\n', "\r\n").into_bytes()
    }

    #[test]
    fn a_form_is_read_into_parts_that_point_into_the_body() {
        let raw = body("--xyz\nContent-Disposition: form-data; name=\"prompt\"\n\na cat\n--xyz\nContent-Disposition: form-data; name=\"image[]\"; filename=\"a.png\"\nContent-Type: image/png\n\n\u{1}PNG\n--xyz--\n");
        let parts = parse(CT, &raw).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!((parts[0].name.as_str(), &raw[parts[0].range.clone()]), ("prompt", &b"a cat"[..]));
        assert_eq!((parts[1].name.as_str(), parts[1].filename.as_deref(), parts[1].content_type.as_deref()), ("image[]", Some("a.png"), Some("image/png")));
        assert_eq!(&raw[parts[1].range.clone()], b"\x01PNG");
        assert!(parts[1].is_file() && !parts[0].is_file());
    }

    #[test]
    fn malformed_forms_are_400s_saying_why() {
        for (content_type, text, why) in [
            ("multipart/form-data", "--xyz--\n", "boundary"),
            (CT, "--xyz\nContent-Disposition: form-data; name=\"prompt\"\n\na cat\n", "truncated"),
            (CT, "--xyz\nContent-Disposition: form-data\n\na cat\n--xyz--\n", "has no name"),
            (CT, "--xyz\nbroken header\n\na cat\n--xyz--\n", "headers"),
        ] {
            let error = parse(content_type, &body(text)).unwrap_err();
            assert_eq!((error.status(), error.code), (400, Some("invalid_multipart")), "{text}");
            assert!(error.message.contains(why), "{}", error.message);
        }
    }

    #[test]
    fn a_written_form_reads_back_and_its_boundary_is_in_no_value() {
        let image = b"\x89PNG imagegate-0123 bytes".repeat(100);
        let (content_type, written) = Form::new().text("model", "gpt-image-1").file("image[]", "image.png", "image/png", &image).finish();
        let parts = parse(&content_type, &written).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(&written[parts[1].range.clone()], &image[..]);
        let boundary = content_type.split("boundary=").nth(1).unwrap();
        assert!(!contains(&image, boundary.as_bytes()));
        let (again, _) = Form::new().text("model", "gpt-image-1").file("image[]", "image.png", "image/png", &image).finish();
        assert_eq!(again, content_type, "the same form, the same boundary");
    }
}
