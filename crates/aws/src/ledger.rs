//! The DynamoDB ledger: one table, key `pk` (string), TTL on `expires_at` (docs/contracts.md §5).
//!
//! - `obj#<bucket>/<key>#<etag>` — a raw object, claimed by `batch_id` (and `quarantined` with a
//!   reason if it could not be read). A claim is never moved to another batch.
//! - `batch#<id>` — a batch: `batch_state` open → sealed → queued → committed (or `empty`),
//!   `lease_owner`/`lease_until` while a mapper claims for it, its manifest and window, and once
//!   committed the output key and counts.
//! - `rollup#<partition>` — a rollup partition's lease and its current rollup (no TTL).
//!
//! Claims are written in a transaction with a check that their batch is still `open` and owned by
//! the claiming mapper, and a batch is sealed before its job is sent: so the set of objects of a
//! batch is frozen before any merger reads it, and an object belongs to exactly one batch. The
//! protocol is described in `docs/aws-protocol.md`.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, KeysAndAttributes, Put, TransactWriteItem,
};
use flowmerge_protocol::ports::{
    BatchRecord, BatchState, Claim, ClaimLedger, LedgerError, RollupLedger, RollupRecord,
    RollupState,
};
use flowmerge_protocol::{BatchId, BatchReport, ObjectRef, SourceKind, Window};

use crate::error::{AwsError, Result};

/// Claims per `TransactWriteItems`: DynamoDB allows 100 actions, one is the batch check.
pub const CLAIMS_PER_TRANSACTION: usize = 99;
/// Rounds of a claim transaction that made no progress before giving up (the batch is retried).
const MAX_CLAIM_ATTEMPTS: usize = 5;

#[derive(Clone, Debug)]
pub struct DynamoLedger {
    client: aws_sdk_dynamodb::Client,
    table: String,
    ttl: Duration,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn batch_pk(id: &BatchId) -> String {
    format!("batch#{id}")
}

/// The ledger key of an object: bucket, key and ETag (a replaced object is a new object).
pub fn object_pk(bucket: &str, key: &str, etag: Option<&str>) -> String {
    format!("obj#{bucket}/{key}#{}", etag.unwrap_or(""))
}

fn is_condition_failure<E, R>(e: &SdkError<E, R>, check: impl Fn(&E) -> bool) -> bool {
    e.as_service_error().is_some_and(check)
}

impl DynamoLedger {
    pub fn new(client: aws_sdk_dynamodb::Client, table: &str, ttl: Duration) -> Self {
        Self {
            client,
            table: table.to_owned(),
            ttl,
        }
    }

    /// Checks that the table exists and may be read, so a worker with a wrong `FLOWMERGE_TABLE`
    /// stops at start instead of failing every batch.
    pub async fn check(&self) -> Result<()> {
        self.client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .map_err(|e| AwsError::Config {
                var: "FLOWMERGE_TABLE",
                reason: format!(
                    "table {:?} cannot be used: {}",
                    self.table,
                    AwsError::api("dynamodb:DescribeTable", e)
                ),
            })?;
        Ok(())
    }

    fn expires_at(&self) -> AttributeValue {
        n(now() + self.ttl.as_secs() as i64)
    }

    /// Creates the batch item in state `open` owned by `owner`. If it exists already (a retry of
    /// the same objects), returns it unchanged.
    async fn put_open(&self, rec: &BatchRecord) -> Result<Option<BatchRecord>> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(batch_pk(&rec.id)))
            .item("kind", s("batch"))
            .item("batch_state", s(BatchState::Open.as_str()))
            .item("lease_owner", s(&rec.owner))
            .item("lease_until", n(rec.lease_until))
            .item("manifest", s(&rec.manifest))
            .item("source", s(rec.source.as_str()))
            .item("window_start", n(rec.window.start))
            .item("window_size", n(rec.window.size))
            .item("created_at", n(now()))
            .item("expires_at", self.expires_at())
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match put {
            Ok(_) => Ok(None),
            Err(e) if is_condition_failure(&e, |e| e.is_conditional_check_failed_exception()) => {
                self.get_batch(&rec.id).await
            }
            Err(e) => Err(AwsError::api("dynamodb:PutItem(batch)", e)),
        }
    }

    /// Reads a batch item (strongly consistent).
    async fn get_batch(&self, id: &BatchId) -> Result<Option<BatchRecord>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(batch_pk(id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| AwsError::api("dynamodb:GetItem(batch)", e))?;
        let Some(item) = out.item() else {
            return Ok(None);
        };
        let text = |k: &str| {
            item.get(k)
                .and_then(|v| v.as_s().ok())
                .cloned()
                .unwrap_or_default()
        };
        let num = |k: &str| {
            item.get(k)
                .and_then(|v| v.as_n().ok())
                .and_then(|v| v.parse::<i64>().ok())
        };
        let state = BatchState::parse(&text("batch_state")).ok_or_else(|| {
            AwsError::Invalid(format!(
                "batch {id}: unknown state {:?}",
                text("batch_state")
            ))
        })?;
        // Batches of the first release carry no source: they are flow logs.
        let source = match item.get("source").and_then(|v| v.as_s().ok()) {
            None => SourceKind::Vpcflow,
            Some(name) => SourceKind::parse(name)
                .ok_or_else(|| AwsError::Invalid(format!("batch {id}: unknown source {name:?}")))?,
        };
        Ok(Some(BatchRecord {
            id: id.clone(),
            source,
            state,
            owner: text("lease_owner"),
            lease_until: num("lease_until").unwrap_or(0),
            manifest: text("manifest"),
            window: Window {
                start: num("window_start").unwrap_or(0),
                size: num("window_size").unwrap_or(0),
            },
        }))
    }

    /// Claims objects for `batch`, provided the batch is still open and owned by `owner`; one
    /// outcome per object, in order. Up to [`CLAIMS_PER_TRANSACTION`] claims share one
    /// `TransactWriteItems` with the check on the batch item, so a full batch of 1,000 objects
    /// costs 11 calls, not 1,000. A transaction is all or nothing: when one of its conditions
    /// fails, the claims are read back (one `BatchGetItem`) to learn which objects other batches
    /// hold, and the rest is tried again — the guarantees are those of a claim per object.
    pub async fn claim_pks(
        &self,
        object_pks: &[String],
        batch: &BatchId,
        owner: &str,
    ) -> Result<Vec<Claim>> {
        let mut outcome: HashMap<&str, Claim> = HashMap::new();
        for chunk in object_pks.chunks(CLAIMS_PER_TRANSACTION) {
            let mut todo: Vec<&str> = chunk.iter().map(String::as_str).collect();
            todo.sort_unstable();
            todo.dedup();
            let mut attempts = 0;
            while !todo.is_empty() {
                attempts += 1;
                if self.transact_claims(&todo, batch, owner).await? {
                    outcome.extend(todo.drain(..).map(|pk| (pk, Claim::Mine)));
                    break;
                }
                // Which condition failed: the batch's (no longer open for us) or some objects'.
                let pks: Vec<String> = todo.iter().map(|pk| pk.to_string()).collect();
                let owners = self.claims_by_pk(&pks).await?;
                let ours = self
                    .get_batch(batch)
                    .await?
                    .is_some_and(|r| r.state == BatchState::Open && r.owner == owner);
                let before = todo.len();
                todo.retain(|pk| match (owners.get(*pk), ours) {
                    (Some(b), true) if b == batch => true,
                    (Some(b), _) => {
                        outcome.insert(pk, Claim::Taken(b.clone()));
                        false
                    }
                    (None, true) => true,
                    (None, false) => {
                        outcome.insert(pk, Claim::Closed);
                        false
                    }
                });
                if todo.len() == before && attempts >= MAX_CLAIM_ATTEMPTS {
                    return Err(AwsError::Invalid(format!(
                        "batch {batch}: claims kept conflicting after {attempts} attempts"
                    )));
                }
            }
        }
        object_pks
            .iter()
            .map(|pk| {
                outcome.get(pk.as_str()).cloned().ok_or_else(|| {
                    AwsError::Invalid(format!("batch {batch}: no claim outcome for {pk}"))
                })
            })
            .collect()
    }

    /// One transaction: the batch is open and ours, and each object is unclaimed or ours.
    /// False if a condition failed.
    async fn transact_claims(&self, pks: &[&str], batch: &BatchId, owner: &str) -> Result<bool> {
        let op = "dynamodb:TransactWriteItems(claims)";
        let check = ConditionCheck::builder()
            .table_name(&self.table)
            .key("pk", s(batch_pk(batch)))
            .condition_expression("batch_state = :open AND lease_owner = :me")
            .expression_attribute_values(":open", s(BatchState::Open.as_str()))
            .expression_attribute_values(":me", s(owner))
            .build()
            .map_err(|e| AwsError::api(op, e))?;
        let mut req = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().condition_check(check).build());
        for pk in pks {
            let put = Put::builder()
                .table_name(&self.table)
                .item("pk", s(*pk))
                .item("kind", s("object"))
                .item("batch_id", s(batch.0.as_str()))
                .item("claimed_at", n(now()))
                .item("expires_at", self.expires_at())
                .condition_expression("attribute_not_exists(pk) OR batch_id = :b")
                .expression_attribute_values(":b", s(batch.0.as_str()))
                .build()
                .map_err(|e| AwsError::api(op, e))?;
            req = req.transact_items(TransactWriteItem::builder().put(put).build());
        }
        match req.send().await {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failure(&e, |e| e.is_transaction_canceled_exception()) => {
                Ok(false)
            }
            Err(e) => Err(AwsError::api(op, e)),
        }
    }

    /// The claims of many objects (strongly consistent), by object key.
    pub async fn claims_by_pk(&self, object_pks: &[String]) -> Result<HashMap<String, BatchId>> {
        let mut found = HashMap::new();
        for chunk in object_pks.chunks(100) {
            let mut keys: Vec<HashMap<String, AttributeValue>> = chunk
                .iter()
                .map(|pk| HashMap::from([("pk".to_owned(), s(pk))]))
                .collect();
            keys.dedup();
            let mut attempt = 0u32;
            while !keys.is_empty() {
                let req = KeysAndAttributes::builder()
                    .set_keys(Some(std::mem::take(&mut keys)))
                    .consistent_read(true)
                    .build()
                    .map_err(|e| AwsError::api("dynamodb:BatchGetItem", e))?;
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, req)
                    .send()
                    .await
                    .map_err(|e| AwsError::api("dynamodb:BatchGetItem", e))?;
                for item in out
                    .responses()
                    .and_then(|r| r.get(&self.table))
                    .into_iter()
                    .flatten()
                {
                    let pk = item.get("pk").and_then(|v| v.as_s().ok());
                    let b = item.get("batch_id").and_then(|v| v.as_s().ok());
                    if let (Some(pk), Some(b)) = (pk, b) {
                        found.insert(pk.clone(), BatchId(b.clone()));
                    }
                }
                if let Some(rest) = out.unprocessed_keys().and_then(|u| u.get(&self.table)) {
                    keys = rest.keys().to_vec();
                    attempt += 1;
                    // Throttled: back off before asking for the rest.
                    tokio::time::sleep(Duration::from_millis(50 << attempt.min(6))).await;
                }
            }
        }
        Ok(found)
    }

    /// Moves a batch from one of `from` to `to`, with extra conditions/values; false if the
    /// batch was not in such a state (someone else moved it).
    async fn transition(
        &self,
        id: &BatchId,
        from: &[BatchState],
        to: BatchState,
        extra_condition: Option<(&str, Vec<(&str, AttributeValue)>)>,
        extra_set: Vec<(&str, AttributeValue)>,
    ) -> Result<bool> {
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(batch_pk(id)))
            .expression_attribute_names("#st", "batch_state")
            .expression_attribute_values(":to", s(to.as_str()))
            .expression_attribute_values(":now", n(now()));
        let mut set = vec!["#st = :to".to_owned(), "updated_at = :now".to_owned()];
        for (i, (name, value)) in extra_set.into_iter().enumerate() {
            set.push(format!("{name} = :x{i}"));
            req = req.expression_attribute_values(format!(":x{i}"), value);
        }
        let mut from_terms = Vec::new();
        for (i, st) in from.iter().enumerate() {
            from_terms.push(format!("#st = :f{i}"));
            req = req.expression_attribute_values(format!(":f{i}"), s(st.as_str()));
        }
        let mut condition = format!("({})", from_terms.join(" OR "));
        if let Some((cond, values)) = extra_condition {
            condition = format!("{condition} AND ({cond})");
            for (k, v) in values {
                req = req.expression_attribute_values(k, v);
            }
        }
        let out = req
            .update_expression(format!("SET {}", set.join(", ")))
            .condition_expression(condition)
            .send()
            .await;
        match out {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failure(&e, |e| e.is_conditional_check_failed_exception()) => {
                Ok(false)
            }
            Err(e) => Err(AwsError::api("dynamodb:UpdateItem(batch)", e)),
        }
    }

    /// Seals our own open batch: no claim can join it afterwards.
    async fn seal_owned(&self, id: &BatchId, owner: &str) -> Result<bool> {
        self.transition(
            id,
            &[BatchState::Open],
            BatchState::Sealed,
            Some(("lease_owner = :me", vec![(":me", s(owner))])),
            vec![],
        )
        .await
    }

    /// Seals a batch whose mapper's lease has expired (that mapper died while claiming).
    async fn seal_expired(&self, id: &BatchId) -> Result<bool> {
        self.transition(
            id,
            &[BatchState::Open],
            BatchState::Sealed,
            Some(("lease_until < :t", vec![(":t", n(now()))])),
            vec![],
        )
        .await
    }

    /// Takes over an open batch whose lease has expired (a retry of the same objects).
    async fn take_expired(&self, id: &BatchId, owner: &str, lease_until: i64) -> Result<bool> {
        self.transition(
            id,
            &[BatchState::Open],
            BatchState::Open,
            Some(("lease_until < :t", vec![(":t", n(now()))])),
            vec![("lease_owner", s(owner)), ("lease_until", n(lease_until))],
        )
        .await
    }

    async fn to_queued(&self, id: &BatchId) -> Result<bool> {
        self.transition(id, &[BatchState::Sealed], BatchState::Queued, None, vec![])
            .await
    }

    async fn to_empty(&self, id: &BatchId) -> Result<bool> {
        self.transition(id, &[BatchState::Sealed], BatchState::Empty, None, vec![])
            .await
    }

    /// Records a merged batch as committed, with its output and counts. False if it was committed
    /// already (a concurrent retry did it).
    pub async fn commit(&self, id: &BatchId, report: &BatchReport) -> Result<bool> {
        let mut set = vec![
            ("objects", n(report.objects)),
            ("records_in", n(report.records_in)),
            ("rows_out", n(report.rows_out)),
            ("bytes_in", n(report.bytes_in)),
            ("bytes_out", n(report.bytes_out)),
            ("quarantined", n(report.quarantined.len())),
            ("committed_at", n(now())),
        ];
        if !report.output_keys.is_empty() {
            let keys = report.output_keys.iter().map(s).collect();
            set.push(("output_keys", AttributeValue::L(keys)));
        }
        self.transition(
            id,
            &[BatchState::Sealed, BatchState::Queued],
            BatchState::Committed,
            None,
            set,
        )
        .await
    }

    /// Marks a claimed object as quarantined with its reason (the claim stays with its batch).
    pub async fn quarantine(&self, object_pk: &str, batch: &BatchId, reason: &str) -> Result<()> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(object_pk))
            .update_expression("SET quarantined = :r, quarantined_at = :now")
            .condition_expression("batch_id = :b")
            .expression_attribute_values(":r", s(reason))
            .expression_attribute_values(":now", n(now()))
            .expression_attribute_values(":b", s(batch.0.as_str()))
            .send()
            .await
            .map_err(|e| AwsError::api("dynamodb:UpdateItem(quarantine)", e))?;
        Ok(())
    }
}

/// The DynamoDB adapter of the claim side; `flowmerge_core::conformance` holds the expectations
/// it shares with the SQLite ledger.
#[async_trait]
impl ClaimLedger for DynamoLedger {
    async fn open_batch(
        &self,
        rec: &BatchRecord,
    ) -> std::result::Result<Option<BatchRecord>, LedgerError> {
        Ok(self.put_open(rec).await?)
    }

    async fn batch(&self, id: &BatchId) -> std::result::Result<Option<BatchRecord>, LedgerError> {
        Ok(self.get_batch(id).await?)
    }

    async fn claim_all(
        &self,
        scope: &str,
        objects: &[ObjectRef],
        batch: &BatchId,
        owner: &str,
    ) -> std::result::Result<Vec<Claim>, LedgerError> {
        Ok(self
            .claim_pks(&object_pks(scope, objects), batch, owner)
            .await?)
    }

    async fn claims(
        &self,
        scope: &str,
        objects: &[ObjectRef],
    ) -> std::result::Result<Vec<Option<BatchId>>, LedgerError> {
        let pks = object_pks(scope, objects);
        let owners = self.claims_by_pk(&pks).await?;
        Ok(pks.iter().map(|pk| owners.get(pk).cloned()).collect())
    }

    async fn seal(&self, id: &BatchId, owner: &str) -> std::result::Result<bool, LedgerError> {
        Ok(self.seal_owned(id, owner).await?)
    }

    async fn seal_abandoned(&self, id: &BatchId) -> std::result::Result<bool, LedgerError> {
        Ok(self.seal_expired(id).await?)
    }

    async fn take_over(
        &self,
        id: &BatchId,
        owner: &str,
        lease_until: i64,
    ) -> std::result::Result<bool, LedgerError> {
        Ok(self.take_expired(id, owner, lease_until).await?)
    }

    async fn mark_queued(&self, id: &BatchId) -> std::result::Result<bool, LedgerError> {
        Ok(self.to_queued(id).await?)
    }

    async fn mark_empty(&self, id: &BatchId) -> std::result::Result<bool, LedgerError> {
        Ok(self.to_empty(id).await?)
    }
}

/// The ledger keys of objects of one bucket.
fn object_pks(bucket: &str, objects: &[ObjectRef]) -> Vec<String> {
    objects
        .iter()
        .map(|o| object_pk(bucket, &o.key, o.etag.as_deref()))
        .collect()
}

type UpdateResult = std::result::Result<
    aws_sdk_dynamodb::operation::update_item::UpdateItemOutput,
    SdkError<
        aws_sdk_dynamodb::operation::update_item::UpdateItemError,
        aws_sdk_dynamodb::config::http::HttpResponse,
    >,
>;

/// A conditional `UpdateItem`'s outcome: its output, or `None` when its condition failed.
fn conditional(
    out: UpdateResult,
    operation: &'static str,
) -> Result<Option<aws_sdk_dynamodb::operation::update_item::UpdateItemOutput>> {
    match out {
        Ok(o) => Ok(Some(o)),
        Err(e) if is_condition_failure(&e, |e| e.is_conditional_check_failed_exception()) => {
            Ok(None)
        }
        Err(e) => Err(AwsError::api(operation, e)),
    }
}

/// The ledger item of a rollup partition: `rollup#<partition>`. It has no TTL: a rollup's record
/// says which of its outputs are data, so it must outlive them.
fn rollup_pk(partition: &str) -> String {
    format!("rollup#{partition}")
}

/// The rollup side (docs/contracts.md §7): one item per partition, its lease and its current
/// rollup, every write conditional on the lease.
#[async_trait]
impl RollupLedger for DynamoLedger {
    async fn lease_partition(
        &self,
        partition: &str,
        owner: &str,
        lease_until: i64,
        now: i64,
    ) -> std::result::Result<Option<Option<RollupRecord>>, LedgerError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(rollup_pk(partition)))
            .update_expression("SET lease_owner = :o, lease_until = :u, kind = :k")
            .condition_expression(
                "attribute_not_exists(pk) OR lease_owner = :o OR lease_owner = :free \
                 OR lease_until <= :now",
            )
            .expression_attribute_values(":o", s(owner))
            .expression_attribute_values(":u", n(lease_until))
            .expression_attribute_values(":k", s("rollup"))
            .expression_attribute_values(":free", s(""))
            .expression_attribute_values(":now", n(now))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .send()
            .await;
        let Some(out) = conditional(out, "dynamodb:UpdateItem(rollup lease)")? else {
            return Ok(None);
        };
        let item = out.attributes.unwrap_or_default();
        let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
        let num = |k: &str| {
            item.get(k)
                .and_then(|v| v.as_n().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let (Some(id), Some(state)) = (text("rollup_id"), text("rollup_state")) else {
            return Ok(Some(None));
        };
        let state = RollupState::parse(&state)
            .ok_or_else(|| format!("rollup of {partition}: unknown state {state:?}"))?;
        let source = text("source").unwrap_or_default();
        let source = SourceKind::parse(&source)
            .ok_or_else(|| format!("rollup of {partition}: unknown source {source:?}"))?;
        let names = |k: &str| -> Vec<String> {
            text(k)
                .unwrap_or_default()
                .lines()
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect()
        };
        Ok(Some(Some(RollupRecord {
            partition: partition.to_owned(),
            id,
            state,
            source,
            outputs: names("outputs"),
            replaced: names("replaced"),
            inputs: num("inputs"),
            rows: num("rows_out"),
        })))
    }

    async fn put_rollup(
        &self,
        rec: &RollupRecord,
        owner: &str,
        now: i64,
    ) -> std::result::Result<bool, LedgerError> {
        // File names, a line each: a partition's few hundred fit well within an item's 400 KB.
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(rollup_pk(&rec.partition)))
            .update_expression(
                "SET rollup_id = :id, rollup_state = :st, #src = :src, outputs = :out, \
                 replaced = :rep, inputs = :in, rows_out = :rows, updated_at = :now",
            )
            .condition_expression("lease_owner = :o AND lease_until > :now")
            .expression_attribute_names("#src", "source")
            .expression_attribute_values(":id", s(&rec.id))
            .expression_attribute_values(":st", s(rec.state.as_str()))
            .expression_attribute_values(":src", s(rec.source.as_str()))
            .expression_attribute_values(":out", s(rec.outputs.join("\n")))
            .expression_attribute_values(":rep", s(rec.replaced.join("\n")))
            .expression_attribute_values(":in", n(rec.inputs))
            .expression_attribute_values(":rows", n(rec.rows))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":o", s(owner))
            .send()
            .await;
        Ok(conditional(out, "dynamodb:UpdateItem(rollup)")?.is_some())
    }

    async fn release_partition(
        &self,
        partition: &str,
        owner: &str,
    ) -> std::result::Result<(), LedgerError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(rollup_pk(partition)))
            .update_expression("SET lease_owner = :free, lease_until = :zero")
            .condition_expression("lease_owner = :o")
            .expression_attribute_values(":free", s(""))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":o", s(owner))
            .send()
            .await;
        // `None`: not ours (any more), nothing to release.
        conditional(out, "dynamodb:UpdateItem(rollup release)")?;
        Ok(())
    }
}
