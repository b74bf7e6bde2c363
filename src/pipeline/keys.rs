//! The key API, in OpenRouter's shape (`/api/v1/keys`, `/api/v1/key`): management keys create,
//! list, read, change and delete managed keys; any key reads itself. A new key is shown once, in
//! the 201 that creates it; every other answer names keys by hash and label only.

use serde_json::{json, Value};

use crate::auth::Reader;
use crate::error::{ErrorKind, GatewayError};
use crate::http::{IncomingBody, Reply, RequestHead};
use crate::keys::{self, KeyPage, KeyRecord};
use crate::limits::{micros, LimitReset, Usage};
use crate::secret::Secrets;
use crate::upstream::Upstream;
use crate::usage::{GroupBy, UsageQuery};

use super::{storage_unavailable, Gateway, RequestContext};

/// The largest key API body read.
const MAX_KEY_BODY_BYTES: usize = 64 * 1024;

/// What is done to one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyVerb {
    Read,
    Update,
    Delete,
}

fn key_not_found(hash: &str) -> GatewayError {
    // Only a hash is repeated: a key pasted in its place must not reach a response or a log.
    let message = match keys::is_hash(hash) {
        true => format!("No key '{hash}'."),
        false => "No such key: the path names a key by its hash (64 hex digits), never by the key itself.".to_owned(),
    };
    GatewayError::new(ErrorKind::NotFound, message).with_code("key_not_found")
}

fn keys_unavailable(detail: String) -> GatewayError {
    storage_unavailable("The key store", detail)
}

impl<'a, U: Upstream, S: Secrets> Gateway<'a, U, S> {
    /// The caller, who must hold a management key: a gateway key is a 403.
    async fn manager(&self, head: &RequestHead, cx: &mut RequestContext) -> Result<(), GatewayError> {
        match self.reader(head, cx).await? {
            Reader::Management(_) => {}
            Reader::Key(_) => {
                return Err(GatewayError::new(ErrorKind::Forbidden, "Managing keys needs a management key; this is a gateway key.")
                    .with_code("management_key_required"))
            }
        }
        if !self.key_store.available() {
            return Err(GatewayError::new(
                ErrorKind::NotFound,
                "This deployment has no key store (the IMAGEGATE_DB binding): its keys are IMAGEGATE_KEYS only.",
            )
            .with_code("keys_not_managed"));
        }
        Ok(())
    }

    /// A managed key's usage; zeros where no counters are kept.
    async fn usage_of(&self, hash: &str) -> Result<Usage, GatewayError> {
        if !self.limiter.available() {
            return Ok(Usage::default());
        }
        self.limiter.usage(hash, self.clock.now_ms()).await.map_err(|detail| storage_unavailable("The key's usage", detail))
    }

    /// A static key's spend, from its recorded actions (it has no counters): all time, and this
    /// UTC day, week and month. Zeros where nothing is recorded.
    async fn recorded_usage(&self, owner: &str) -> Result<Usage, GatewayError> {
        if !self.history.keeps() {
            return Ok(Usage::default());
        }
        let now_ms = self.clock.now_ms();
        let starts = [LimitReset::Daily, LimitReset::Weekly, LimitReset::Monthly].map(|reset| reset.period_start(now_ms));
        let by_day = UsageQuery { group_by: GroupBy::Day, from_ms: starts[1].min(starts[2]), to_ms: now_ms + 1 };
        let ever = UsageQuery { group_by: GroupBy::Key, from_ms: 0, to_ms: now_ms + 1 };
        let failed = |detail| storage_unavailable("The key's usage", detail);
        let days = self.history.usage(Some(owner), &by_day).await.map_err(failed)?;
        let total = self.history.usage(Some(owner), &ever).await.map_err(failed)?;
        let since = |start: u64| micros(days.iter().filter(|row| row.group.as_u64().is_some_and(|day| day * 1000 >= start)).map(|row| row.cost_usd).sum());
        Ok(Usage {
            total: micros(total.iter().map(|row| row.cost_usd).sum()),
            daily: since(starts[0]),
            weekly: since(starts[1]),
            monthly: since(starts[2]),
            ..Usage::default()
        })
    }

    /// `GET /api/v1/key`: the calling key, its usage and limits.
    pub(super) async fn current_key(&self, head: &RequestHead, cx: &mut RequestContext) -> Result<Reply<U::Body>, GatewayError> {
        let reader = self.reader(head, cx).await?;
        let caller = reader.caller();
        let usage = match &caller.record {
            Some(record) => self.usage_of(&record.hash).await?,
            None if matches!(reader, Reader::Key(_)) => self.recorded_usage(&caller.owner).await?,
            None => Usage::default(),
        };
        let management = matches!(reader, Reader::Management(_));
        let data = keys::current_body(caller.record.as_ref(), &caller.owner, management, &usage);
        Ok(json_reply(200, json!({ "data": data })))
    }

    /// `GET /api/v1/keys?include_disabled=&offset=`: a page of keys, oldest first.
    pub(super) async fn list_keys(&self, head: &RequestHead, cx: &mut RequestContext) -> Result<Reply<U::Body>, GatewayError> {
        self.manager(head, cx).await?;
        let page = KeyPage::parse(head.query.as_deref())?;
        let records = self.key_store.list(page.include_disabled, page.offset, KeyPage::SIZE).await.map_err(keys_unavailable)?;
        let usages = futures_util::future::join_all(records.iter().map(|record| self.usage_of(&record.hash))).await;
        let mut data = Vec::with_capacity(records.len());
        for (record, usage) in records.iter().zip(usages) {
            data.push(keys::key_body(record, &usage?));
        }
        Ok(json_reply(200, json!({ "data": data })))
    }

    /// `POST /api/v1/keys`: a new key, shown once (201 with `data` and `key`).
    pub(super) async fn create_key<I: IncomingBody>(&self, head: &RequestHead, body: I, cx: &mut RequestContext) -> Result<Reply<U::Body>, GatewayError> {
        self.manager(head, cx).await?;
        let new = keys::parse_create(&body.read(MAX_KEY_BODY_BYTES).await?)?;
        let mut random = [0u8; 32];
        self.random.fill(&mut random);
        let (key, hash, label) = keys::new_key(random);
        let now_ms = self.clock.now_ms();
        let mut record = KeyRecord::new(hash, new.name, label, now_ms);
        keys::apply_patch(&mut record, new.fields, self.config, now_ms)?;
        record.updated_at = None;
        self.key_store.put(&record).await.map_err(keys_unavailable)?;
        Ok(json_reply(201, json!({ "data": keys::key_body(&record, &Usage::default()), "key": key })))
    }

    /// `GET`, `PATCH` or `DELETE /api/v1/keys/{hash}`.
    pub(super) async fn key<I: IncomingBody>(
        &self,
        head: &RequestHead,
        hash: &str,
        verb: KeyVerb,
        body: I,
        cx: &mut RequestContext,
    ) -> Result<Reply<U::Body>, GatewayError> {
        self.manager(head, cx).await?;
        let found = match keys::is_hash(hash) {
            // Read afresh: a change is made to the record as it is now.
            true => self.key_store.find_fresh(hash).await.map_err(keys_unavailable)?,
            false => None,
        };
        let mut record = found.ok_or_else(|| key_not_found(hash))?;
        match verb {
            KeyVerb::Read => {}
            KeyVerb::Update => {
                let fields = match serde_json::from_slice(&body.read(MAX_KEY_BODY_BYTES).await?) {
                    Ok(Value::Object(fields)) => fields,
                    _ => return Err(GatewayError::new(ErrorKind::InvalidRequest, "The body must be a JSON object of the fields to change.")),
                };
                keys::apply_patch(&mut record, fields, self.config, self.clock.now_ms())?;
                self.key_store.put(&record).await.map_err(keys_unavailable)?;
            }
            KeyVerb::Delete => {
                self.key_store.delete(hash).await.map_err(keys_unavailable)?;
                return Ok(json_reply(200, json!({ "deleted": true })));
            }
        }
        let usage = self.usage_of(&record.hash).await?;
        Ok(json_reply(200, json!({ "data": keys::key_body(&record, &usage) })))
    }
}

fn json_reply<B>(status: u16, body: Value) -> Reply<B> {
    Reply::json(status, serde_json::to_vec(&body).expect("JSON serialises"))
}
