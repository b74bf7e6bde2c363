//! Images sent in: the inputs of an edit (`image`, up to [`MAX_IMAGES`], and a `mask`) or a
//! variation (one `image`), read from a client's multipart form. Each image is a range of the one
//! body the request came in, shared by every attempt and fallback, never copied; its format is
//! what its bytes say (PNG, JPEG, WebP or GIF), whatever its part's content type claims.

use std::cell::RefCell;
use std::ops::Range;
use std::rc::Rc;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::error::{ErrorKind, GatewayError};
use crate::multipart::{self, FormPart};

/// The most images one edit may send.
pub const MAX_IMAGES: usize = 16;
/// The routing and extension fields a form may carry as JSON text (orq's clients send them so).
const JSON_FIELDS: [&str; 11] =
    ["retry", "fallbacks", "fallback_on_codes", "load_balancer", "timeout", "metadata", "cache", "orq", "identity", "webhook", "provider"];
/// The fields whose form text is a number, by their bracketed names with `[]` for any element:
/// the image fields, and the numbers of the routing fields (`retry[count]`, …).
const NUMBER_FIELDS: [&str; 12] = [
    "n",
    "output_compression",
    "seed",
    "partial_images",
    "retry[count]",
    "retry[on_codes][]",
    "fallback_on_codes[]",
    "timeout[call_timeout]",
    "cache[ttl]",
    "load_balancer[][weight]",
    "load_balancer[models][][weight]",
    "orq[retry][count]",
];
/// The largest image (or mask) one part may hold.
pub const MAX_IMAGE_BYTES: usize = 20 << 20;

/// What a request does with images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// From a prompt alone (`/images/generations`).
    Generate,
    /// Change the images sent (`/images/edits`).
    Edit,
    /// More images like the one sent (`/images/variations`).
    Variation,
}

impl Operation {
    /// The path segment OpenAI serves it at.
    pub fn path(self) -> &'static str {
        match self {
            Operation::Generate => "generations",
            Operation::Edit => "edits",
            Operation::Variation => "variations",
        }
    }
}

/// An image format the gateway takes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Png,
    Jpeg,
    Webp,
    Gif,
}

impl ImageFormat {
    /// The format `bytes` are in, by their header.
    pub fn sniff(bytes: &[u8]) -> Option<ImageFormat> {
        match imagesize::image_type(bytes).ok()? {
            imagesize::ImageType::Png => Some(ImageFormat::Png),
            imagesize::ImageType::Jpeg => Some(ImageFormat::Jpeg),
            imagesize::ImageType::Webp => Some(ImageFormat::Webp),
            imagesize::ImageType::Gif => Some(ImageFormat::Gif),
            _ => None,
        }
    }

    pub fn media_type(self) -> &'static str {
        match self {
            ImageFormat::Png => "image/png",
            ImageFormat::Jpeg => "image/jpeg",
            ImageFormat::Webp => "image/webp",
            ImageFormat::Gif => "image/gif",
        }
    }

    /// A file name for an upstream form.
    pub fn filename(self) -> &'static str {
        match self {
            ImageFormat::Png => "image.png",
            ImageFormat::Jpeg => "image.jpg",
            ImageFormat::Webp => "image.webp",
            ImageFormat::Gif => "image.gif",
        }
    }
}

/// One image sent in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputImage {
    body: Rc<Vec<u8>>,
    range: Range<usize>,
    pub format: ImageFormat,
    /// Width and height, when the header says them.
    pub size: Option<(u32, u32)>,
}

impl InputImage {
    /// An image of `body[range]`, checked: `param` names it in errors.
    fn read(body: &Rc<Vec<u8>>, range: Range<usize>, param: &str) -> Result<InputImage, GatewayError> {
        let bytes = &body[range.clone()];
        if bytes.is_empty() {
            return Err(GatewayError::invalid_param(param, format!("'{param}' is empty.")));
        }
        if bytes.len() > MAX_IMAGE_BYTES {
            return Err(GatewayError::invalid_param(param, format!("'{param}' is {} bytes; an image may be at most {MAX_IMAGE_BYTES} bytes.", bytes.len()))
                .with_code("image_too_large"));
        }
        let format = ImageFormat::sniff(bytes).ok_or_else(|| {
            GatewayError::invalid_param(param, format!("'{param}' is not a PNG, JPEG, WebP or GIF image (judged by its bytes, not its content type)."))
                .with_code("invalid_image_format")
        })?;
        let size = imagesize::blob_size(bytes).ok().and_then(|s| Some((u32::try_from(s.width).ok()?, u32::try_from(s.height).ok()?)));
        Ok(InputImage { body: Rc::clone(body), range, format, size })
    }

    /// An image of its own bytes (a decoded `data:` URL).
    pub fn from_bytes(bytes: Vec<u8>, param: &str) -> Result<InputImage, GatewayError> {
        let range = 0..bytes.len();
        InputImage::read(&Rc::new(bytes), range, param)
    }

    pub fn bytes(&self) -> &[u8] {
        &self.body[self.range.clone()]
    }

    /// The image as a base64 `data:` URL.
    pub fn data_url(&self) -> String {
        use base64::Engine as _;
        format!("data:{};base64,{}", self.format.media_type(), base64::engine::general_purpose::STANDARD.encode(self.bytes()))
    }

    /// The SHA-256 of its bytes.
    pub fn digest(&self) -> [u8; 32] {
        Sha256::digest(self.bytes()).into()
    }

    /// What the history keeps of it: format, size, length (never the bytes).
    pub fn describe(&self) -> Value {
        let mut shown = Map::new();
        shown.insert("media_type".to_owned(), Value::from(self.format.media_type()));
        shown.insert("bytes".to_owned(), Value::from(self.range.len()));
        if let Some((width, height)) = self.size {
            shown.insert("width".to_owned(), Value::from(width));
            shown.insert("height".to_owned(), Value::from(height));
        }
        Value::Object(shown)
    }
}

/// The images an edit or a variation sends in, and the form an upstream got last (kept so
/// that an attempt again on the same upstream model sends the same bytes without writing them
/// again).
#[derive(Debug)]
pub struct Inputs {
    pub operation: Operation,
    pub images: Vec<InputImage>,
    pub mask: Option<InputImage>,
    /// `input_fidelity` (`high` or `low`), for the models that take it.
    pub input_fidelity: Option<String>,
    written: RefCell<Option<Written>>,
}

/// A form written for an upstream: for whom (kind and model), its content type and its bytes.
#[derive(Debug)]
struct Written {
    upstream: String,
    content_type: String,
    body: Rc<[u8]>,
}

impl PartialEq for Inputs {
    fn eq(&self, other: &Self) -> bool {
        (self.operation, &self.images, &self.mask, &self.input_fidelity) == (other.operation, &other.images, &other.mask, &other.input_fidelity)
    }
}

impl Eq for Inputs {}

impl Inputs {
    pub fn new(operation: Operation, images: Vec<InputImage>, mask: Option<InputImage>, input_fidelity: Option<String>) -> Self {
        Inputs { operation, images, mask, input_fidelity, written: RefCell::new(None) }
    }

    /// The form for the upstream `key` names (its kind and model): written by `write` the first
    /// time, the same bytes for every attempt after.
    pub fn form_for(&self, key: &str, write: impl FnOnce() -> (String, Rc<[u8]>)) -> (String, Rc<[u8]>) {
        if let Some(written) = self.written.borrow().as_ref().filter(|written| written.upstream == key) {
            return (written.content_type.clone(), Rc::clone(&written.body));
        }
        let (content_type, body) = write();
        *self.written.borrow_mut() = Some(Written { upstream: key.to_owned(), content_type: content_type.clone(), body: Rc::clone(&body) });
        (content_type, body)
    }

    /// A digest of every image and the mask, in order, for the cache key.
    pub fn digest(&self) -> String {
        let mut hash = Sha256::new();
        hash.update((self.images.len() as u64).to_le_bytes());
        for image in &self.images {
            hash.update(image.digest());
        }
        // Tagged, so that images [A, M] and image A with mask M differ.
        if let Some(mask) = &self.mask {
            hash.update(b"mask");
            hash.update(mask.digest());
        }
        hex::encode(hash.finalize())
    }

    /// What the history keeps of them.
    pub fn describe(&self) -> Value {
        let mut shown = Map::new();
        shown.insert("images".to_owned(), Value::Array(self.images.iter().map(InputImage::describe).collect()));
        if let Some(mask) = &self.mask {
            shown.insert("mask".to_owned(), mask.describe());
        }
        Value::Object(shown)
    }
}

fn form_error(param: &str, message: impl Into<String>) -> GatewayError {
    GatewayError::invalid_param(param, message)
}

/// Reads an edit's or a variation's form: its text fields as the JSON fields a generation has
/// (bracketed names such as `fallbacks[][model]` made objects and arrays, routing fields sent as
/// JSON text parsed), and its images. Every mistake is a 400 naming the field.
pub fn read_form(content_type: &str, body: Rc<Vec<u8>>, operation: Operation) -> Result<(Map<String, Value>, Inputs), GatewayError> {
    let parts = multipart::parse(content_type, &body)?;
    let mut fields = Map::new();
    let mut images = Vec::new();
    let mut mask = None;
    for part in parts {
        let base = part.name.split('[').next().unwrap_or_default().to_owned();
        match base.as_str() {
            "image" => {
                require_file(&part, "image")?;
                let param = if images.is_empty() { "image".to_owned() } else { format!("image[{}]", images.len()) };
                images.push(InputImage::read(&body, part.range.clone(), &param)?);
            }
            "mask" => {
                require_file(&part, "mask")?;
                if mask.is_some() {
                    return Err(form_error("mask", "Only one 'mask' may be sent."));
                }
                mask = Some(InputImage::read(&body, part.range.clone(), "mask")?);
            }
            _ => {
                if part.is_file() {
                    return Err(form_error(&base, format!("'{base}' must be a text field, not a file.")));
                }
                let text = std::str::from_utf8(&body[part.range.clone()]).map_err(|_| form_error(&base, format!("'{base}' is not UTF-8 text.")))?;
                let value = typed(&part.name, &base, text)?;
                insert(&mut fields, &part.name, value).map_err(|why| form_error(&base, format!("The field name '{}' {why}.", part.name)))?;
            }
        }
    }
    let input_fidelity = crate::fields::one_of(&mut fields, "input_fidelity", &["high", "low"])?;
    check(operation, &images, mask.as_ref(), input_fidelity.as_deref())?;
    Ok((fields, Inputs::new(operation, images, mask, input_fidelity)))
}

fn require_file(part: &FormPart, param: &str) -> Result<(), GatewayError> {
    match part.is_file() {
        true => Ok(()),
        false => Err(form_error(param, format!("'{param}' must be a file part (with a filename or an image content type), not a text field."))),
    }
}

/// What the operation needs of its images.
pub fn check(operation: Operation, images: &[InputImage], mask: Option<&InputImage>, input_fidelity: Option<&str>) -> Result<(), GatewayError> {
    if images.is_empty() {
        return Err(form_error("image", "Missing required parameter: 'image'.").with_code("missing_required_parameter"));
    }
    match operation {
        Operation::Variation if images.len() > 1 => Err(form_error("image", "A variation takes one 'image'.")),
        Operation::Variation if mask.is_some() => Err(form_error("mask", "A variation takes no 'mask'.").with_code("unknown_parameter")),
        Operation::Variation if input_fidelity.is_some() => {
            Err(form_error("input_fidelity", "A variation takes no 'input_fidelity'.").with_code("unknown_parameter"))
        }
        _ if images.len() > MAX_IMAGES => Err(form_error("image", format!("At most {MAX_IMAGES} images may be sent; {} were.", images.len()))),
        _ => match mask {
            Some(mask) if mask.format != ImageFormat::Png => {
                Err(form_error("mask", "'mask' must be a PNG image (with an alpha channel where the image should change).").with_code("invalid_image_format"))
            }
            _ => Ok(()),
        },
    }
}

/// A form text as its JSON value: numbers for the numeric fields, JSON for the routing fields
/// sent as JSON text, else a string.
fn typed(name: &str, base: &str, text: &str) -> Result<Value, GatewayError> {
    // `load_balancer[models][0][weight]` is read like `load_balancer[models][][weight]`.
    let pattern: String = name
        .split('[')
        .enumerate()
        .map(|(i, s)| {
            if i == 0 {
                s.to_owned()
            } else if s.trim_end_matches(']').bytes().all(|b| b.is_ascii_digit()) {
                "[]".to_owned()
            } else {
                format!("[{s}")
            }
        })
        .collect();
    if NUMBER_FIELDS.contains(&pattern.as_str()) {
        if let Ok(number) = serde_json::from_str::<serde_json::Number>(text.trim()) {
            return Ok(Value::Number(number));
        }
    }
    if JSON_FIELDS.contains(&base) && text.trim_start().starts_with(['{', '[']) {
        return serde_json::from_str(text).map_err(|error| form_error(base, format!("'{base}' is not valid JSON: {error}.")));
    }
    if base == "stream" {
        if let Ok(flag) = text.parse::<bool>() {
            return Ok(Value::Bool(flag));
        }
    }
    Ok(Value::String(text.to_owned()))
}

/// Puts `value` into `fields` at the bracketed `name` (`a`, `a[]`, `a[b]`, `a[][b]`), as the
/// OpenAI clients write nested fields: `[]` appends, and a key already set in the last element
/// of an array starts a new element.
fn insert(fields: &mut Map<String, Value>, name: &str, value: Value) -> Result<(), &'static str> {
    let (base, rest) = name.split_once('[').map_or((name, ""), |(base, rest)| (base, rest));
    if base.is_empty() {
        return Err("has no name before its brackets");
    }
    if name.contains('[') && !name.ends_with(']') {
        return Err("is not a well-formed bracketed name");
    }
    let mut path = Vec::new();
    if !rest.is_empty() {
        for segment in format!("[{rest}").split_inclusive(']') {
            let key = segment.strip_prefix('[').and_then(|s| s.strip_suffix(']')).ok_or("is not a well-formed bracketed name")?;
            path.push(key.to_owned());
        }
    }
    if path.len() > 4 {
        return Err("nests too deep");
    }
    let slot = fields.entry(base.to_owned()).or_insert(Value::Null);
    place(slot, &path, value)
}

fn place(slot: &mut Value, path: &[String], value: Value) -> Result<(), &'static str> {
    let Some((first, rest)) = path.split_first() else {
        if !slot.is_null() {
            return Err("is given more than once");
        }
        *slot = value;
        return Ok(());
    };
    if first.is_empty() {
        if slot.is_null() {
            *slot = Value::Array(Vec::new());
        }
        let Value::Array(items) = slot else { return Err("mixes a list with a single value") };
        // A key already set in the last element starts a new one.
        let reuse = match (items.last(), rest.first()) {
            (Some(Value::Object(last)), Some(key)) if !key.is_empty() => !last.contains_key(key),
            _ => false,
        };
        if !reuse {
            items.push(Value::Null);
        }
        return place(items.last_mut().expect("pushed"), rest, value);
    }
    if slot.is_null() {
        *slot = Value::Object(Map::new());
    }
    let Value::Object(object) = slot else { return Err("mixes an object with another value") };
    place(object.entry(first.clone()).or_insert(Value::Null), rest, value)
}

/// Takes the images out of an edit sent as OpenAI's JSON form: `images: [{"image_url":
/// "data:…"}]` and `mask: {"image_url": "data:…"}`.
pub fn from_json(fields: &mut Map<String, Value>, operation: Operation) -> Result<Inputs, GatewayError> {
    let images = match crate::fields::take(fields, "images") {
        Some(Value::Array(items)) => items.into_iter().enumerate().map(|(i, item)| data_image(item, &format!("images[{i}]"))).collect::<Result<Vec<_>, _>>()?,
        Some(other) => return Err(crate::fields::wrong_type("images", "an array of {\"image_url\"} objects", &other)),
        None => Vec::new(),
    };
    let mask = crate::fields::take(fields, "mask").map(|mask| data_image(mask, "mask")).transpose()?;
    let input_fidelity = crate::fields::one_of(fields, "input_fidelity", &["high", "low"])?;
    if images.is_empty() {
        return Err(form_error("images", "Missing required parameter: 'images'.").with_code("missing_required_parameter"));
    }
    check(operation, &images, mask.as_ref(), input_fidelity.as_deref())?;
    Ok(Inputs::new(operation, images, mask, input_fidelity))
}

/// OpenRouter's `input_references` (`[{"type": "image_url", "image_url": {"url": "data:…"}}]`)
/// as an edit's images.
pub fn from_references(references: Value) -> Result<Inputs, GatewayError> {
    let Value::Array(items) = references else { return Err(crate::fields::wrong_type("input_references", "an array", &references)) };
    let mut images = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let param = format!("input_references[{i}]");
        let Value::Object(mut item) = item else { return Err(crate::fields::wrong_type(&param, "an object", &item)) };
        match item.remove("type") {
            Some(Value::String(kind)) if kind == "image_url" => {}
            _ => return Err(form_error(&format!("{param}.type"), format!("'{param}.type' must be 'image_url'."))),
        }
        let url = match item.remove("image_url") {
            Some(Value::Object(mut url)) => url.remove("url").unwrap_or(Value::Null),
            // The URL alone, as some clients send it.
            Some(url @ Value::String(_)) => url,
            _ => Value::Null,
        };
        let Value::String(url) = url else { return Err(form_error(&format!("{param}.image_url.url"), format!("'{param}.image_url.url' is required."))) };
        images.push(data_url_image(&url, &format!("{param}.image_url.url"), &param)?);
    }
    check(Operation::Edit, &images, None, None).map_err(|error| {
        if error.param.as_deref() == Some("image") {
            GatewayError { param: Some("input_references".to_owned()), ..error }
        } else {
            error
        }
    })?;
    Ok(Inputs::new(Operation::Edit, images, None, None))
}

/// One `{"image_url": "data:image/…;base64,…"}` of a JSON edit, decoded.
fn data_image(item: Value, param: &str) -> Result<InputImage, GatewayError> {
    let url_param = format!("{param}.image_url");
    let Value::Object(mut item) = item else { return Err(crate::fields::wrong_type(param, "an object with 'image_url'", &item)) };
    if item.contains_key("file_id") {
        return Err(form_error(&format!("{param}.file_id"), "File ids are OpenAI's own; send the image as a data: URL.").with_code("unsupported_parameter"));
    }
    let url = crate::fields::optional_string(&mut item, "image_url")?.ok_or_else(|| form_error(&url_param, format!("'{url_param}' is required.")))?;
    data_url_image(&url, &url_param, param)
}

/// The image of a base64 `data:` URL (`url_param` names the URL in errors, `param` the image).
fn data_url_image(url: &str, url_param: &str, param: &str) -> Result<InputImage, GatewayError> {
    use base64::Engine as _;
    let encoded = url
        .strip_prefix("data:")
        .and_then(|rest| rest.split_once(','))
        .filter(|(meta, _)| meta.ends_with(";base64"))
        .map(|(_, data)| data)
        .ok_or_else(|| {
            form_error(url_param, format!("'{url_param}' must be a base64 data: URL (data:image/png;base64,…); this gateway fetches no image from elsewhere."))
        })?;
    let bytes =
        base64::engine::general_purpose::STANDARD.decode(encoded.trim()).map_err(|_| form_error(url_param, format!("'{url_param}' is not valid base64.")))?;
    InputImage::from_bytes(bytes, param)
}

/// The 415 for an edit's or a variation's body that is neither a form nor (an edit) JSON.
pub fn not_a_form(content_type: Option<&str>, operation: Operation) -> GatewayError {
    let expected = match operation {
        Operation::Edit => "multipart/form-data (or application/json with the images as data: URLs)",
        _ => "multipart/form-data",
    };
    GatewayError::new(
        ErrorKind::UnsupportedMediaType,
        format!("Content-Type must be {expected}, not {}.", content_type.map_or("missing".to_owned(), |ct| format!("'{ct}'"))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let row = vec![0u8; width.div_ceil(2) as usize];
        crate::png::encode_palette4(width, height, &[[0, 0, 0]], (0..height).map(|_| crate::png::Row::Pixels(&row)))
    }

    fn form(parts: &[(&str, Option<&str>, &[u8])]) -> (String, Rc<Vec<u8>>) {
        let mut body = Vec::new();
        for (name, filename, bytes) in parts {
            body.extend_from_slice(b"--b\r\nContent-Disposition: form-data; name=\"");
            body.extend_from_slice(name.as_bytes());
            body.push(b'"');
            if let Some(filename) = filename {
                body.extend_from_slice(format!("; filename=\"{filename}\"\r\nContent-Type: application/octet-stream").as_bytes());
            }
            body.extend_from_slice(b"\r\n\r\n");
            body.extend_from_slice(bytes);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"--b--\r\n");
        ("multipart/form-data; boundary=b".to_owned(), Rc::new(body))
    }

    #[test]
    fn a_form_gives_fields_and_images_sniffed_by_their_bytes() {
        let image = png(4, 3);
        let (ct, body) = form(&[
            ("prompt", None, b"a cat"),
            ("n", None, b"2"),
            ("image[]", Some("a.bin"), &image),
            ("image[]", Some("b.bin"), &image),
            ("fallbacks[][model]", None, b"a"),
            ("fallbacks[][model]", None, b"b"),
            ("metadata[team]", None, b"art"),
            ("retry", None, br#"{"count": 2}"#),
        ]);
        let (fields, inputs) = read_form(&ct, body, Operation::Edit).unwrap();
        assert_eq!(
            Value::Object(fields),
            json!({"prompt": "a cat", "n": 2, "fallbacks": [{"model": "a"}, {"model": "b"}], "metadata": {"team": "art"}, "retry": {"count": 2}})
        );
        assert_eq!(inputs.images.len(), 2);
        assert_eq!((inputs.images[0].format, inputs.images[0].size), (ImageFormat::Png, Some((4, 3))));
        assert_eq!(inputs.images[1].bytes(), &image[..]);
    }

    #[test]
    fn every_bad_form_is_a_400_naming_its_field() {
        let image = png(2, 2);
        let jpeg_claiming_png = b"not an image at all".to_vec();
        type Parts<'a> = Vec<(&'a str, Option<&'a str>, &'a [u8])>;
        let cases: Vec<(Parts, Operation, &str)> = vec![
            (vec![("prompt", None, b"p")], Operation::Edit, "image"),
            (vec![("image", None, b"p")], Operation::Edit, "image"),
            (vec![("image", Some("a.png"), &jpeg_claiming_png)], Operation::Edit, "image"),
            (vec![("image", Some("a.png"), &image), ("image", Some("b.png"), &jpeg_claiming_png)], Operation::Edit, "image[1]"),
            (vec![("image", Some("a.png"), &image), ("mask", Some("m.png"), b"GIF89a\x01\x00\x01\x00\x00\x00\x00;")], Operation::Edit, "mask"),
            (vec![("image", Some("a.png"), &image), ("prompt", Some("p.txt"), b"p")], Operation::Edit, "prompt"),
            (vec![("image", Some("a.png"), &image), ("image", Some("b.png"), &image)], Operation::Variation, "image"),
            (vec![("image", Some("a.png"), &image), ("retry", None, b"{broken")], Operation::Edit, "retry"),
            (vec![("image", Some("a.png"), &image), ("n", None, b"1"), ("n", None, b"2")], Operation::Edit, "n"),
            (vec![("image", Some("a.png"), &image), ("input_fidelity", None, b"max")], Operation::Edit, "input_fidelity"),
            (vec![("image", Some("a.png"), &[])], Operation::Edit, "image"),
        ];
        for (parts, operation, param) in cases {
            let (ct, body) = form(&parts);
            let error = read_form(&ct, body, operation).unwrap_err();
            assert_eq!((error.status(), error.param.as_deref()), (400, Some(param)), "{}", error.message);
        }
        let many: Vec<(&str, Option<&str>, &[u8])> = (0..=MAX_IMAGES).map(|_| ("image[]", Some("a.png"), &image[..])).collect();
        let (ct, body) = form(&many);
        assert_eq!(read_form(&ct, body, Operation::Edit).unwrap_err().param.as_deref(), Some("image"));
    }

    #[test]
    fn an_upstream_form_is_written_once_per_upstream() {
        let inputs = Inputs::new(Operation::Edit, vec![InputImage::from_bytes(png(1, 1), "image").unwrap()], None, None);
        let mut writes = 0;
        for _ in 0..3 {
            inputs.form_for("openai gpt-image-1", || {
                writes += 1;
                ("ct".to_owned(), Rc::from(vec![1u8]))
            });
        }
        inputs.form_for("azure other", || {
            writes += 1;
            ("ct".to_owned(), Rc::from(vec![2u8]))
        });
        assert_eq!(writes, 2);
        assert_ne!(inputs.digest(), Inputs::new(Operation::Edit, vec![InputImage::from_bytes(png(2, 1), "image").unwrap()], None, None).digest());
        let (a, m) = (InputImage::from_bytes(png(1, 1), "image").unwrap(), InputImage::from_bytes(png(2, 2), "mask").unwrap());
        let masked = Inputs::new(Operation::Edit, vec![a.clone()], Some(m.clone()), None);
        assert_ne!(masked.digest(), Inputs::new(Operation::Edit, vec![a, m], None, None).digest(), "a mask is not one more image");
    }
}
