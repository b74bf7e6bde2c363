//! The file store on R2 (binding [`BINDING`]): the images of recorded generations, one object
//! per image under its file id, with its media type and its owner's key label as metadata. A
//! stored file is served by handing R2's stream to the response: its bytes never enter the wasm
//! memory. A deployment without the binding keeps no images.

use std::cell::OnceCell;
use std::collections::HashMap;

use worker::{console_warn, Bucket, Env, HttpMetadata, ResponseBody};

use crate::files::{FileMeta, NewFile};
use crate::state::{Files, Pending};

/// The R2 bucket's binding name in `wrangler.toml`.
pub const BINDING: &str = "IMAGEGATE_FILES";
/// The custom metadata field that holds the owner's key label.
const OWNER: &str = "owner";

/// The file store of one request: the binding is looked up once, when first needed.
pub struct R2Files<'e> {
    env: &'e Env,
    bucket: OnceCell<Option<Bucket>>,
}

impl<'e> R2Files<'e> {
    pub fn new(env: &'e Env) -> Self {
        R2Files { env, bucket: OnceCell::new() }
    }

    fn bucket(&self) -> Option<&Bucket> {
        self.bucket.get_or_init(|| self.env.bucket(BINDING).ok()).as_ref()
    }
}

impl Files for R2Files<'_> {
    fn keeps(&self) -> bool {
        self.bucket().is_some()
    }

    fn put(&self, file: NewFile) -> Pending<'_, Result<(), String>> {
        Box::pin(async move {
            let bucket = self.bucket().ok_or("no file store binding")?;
            let metadata = HttpMetadata { content_type: Some(file.media_type), ..HttpMetadata::default() };
            let owner = HashMap::from([(OWNER.to_owned(), file.owner)]);
            bucket.put(&file.id, file.bytes).http_metadata(metadata).custom_metadata(owner).execute().await.map_err(failure("write"))?;
            Ok(())
        })
    }

    fn head<'a>(&'a self, id: &'a str) -> Pending<'a, Result<Option<FileMeta>, String>> {
        Box::pin(async move {
            let Some(bucket) = self.bucket() else { return Ok(None) };
            let Some(object) = bucket.head(id).await.map_err(failure("read"))? else { return Ok(None) };
            let mut custom = object.custom_metadata().map_err(failure("read"))?;
            Ok(Some(FileMeta {
                owner: custom.remove(OWNER).unwrap_or_default(),
                media_type: object.http_metadata().content_type.unwrap_or_else(|| crate::files::DEFAULT_MEDIA_TYPE.to_owned()),
                etag: object.http_etag(),
                size: object.size(),
            }))
        })
    }

    fn delete<'a>(&'a self, ids: &'a [String]) -> Pending<'a, Result<(), String>> {
        Box::pin(async move {
            let Some(bucket) = self.bucket() else { return Ok(()) };
            // R2 deletes at most 1000 keys in one call.
            for chunk in ids.chunks(1000) {
                bucket.delete_multiple(chunk.to_vec()).await.map_err(failure("delete"))?;
            }
            Ok(())
        })
    }
}

/// Turns what R2 said during `what` into the operator's message (for the log only).
fn failure(what: &'static str) -> impl Fn(worker::Error) -> String {
    move |error| format!("the file store {what} failed: {error}")
}

/// The stream of the stored file `id`, for the response; `None` when it is gone (deleted since
/// the core looked) or the store failed.
pub async fn stream(env: &Env, id: &str) -> Option<web_sys::ReadableStream> {
    let bucket = env.bucket(BINDING).ok()?;
    let object = bucket.get(id).execute().await.ok()??;
    match object.body()?.response_body() {
        Ok(ResponseBody::Stream(stream)) => Some(stream),
        _ => None,
    }
}

/// Stores `files` after the answer (`waitUntil`); a failed write is logged, never the client's.
pub async fn store(env: &Env, files: Vec<NewFile>) {
    let store = R2Files::new(env);
    for file in files {
        let id = file.id.clone();
        if let Err(error) = store.put(file).await {
            console_warn!("{{\"warning\":\"the file {id} was not stored\",\"error\":{error:?}}}");
        }
    }
}
