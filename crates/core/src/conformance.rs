//! The conformance suites of the ports, in the manner of object_store's shared integration
//! tests: one set of expectations that every adapter's tests call. [`commit_ledger_conformance`]:
//! the SQLite ledger in `flowmerge-local`, the DynamoDB ledger on the emulator in `tests/aws.rs`,
//! driven through [`execute`], the batch protocol itself. [`job_queue_conformance`]: the
//! in-process queue and SQS on the emulator. [`claim_ledger_conformance`]: the claim side of the
//! SQLite and DynamoDB ledgers.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use object_store::memory::InMemory;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::batch::{Batch, ObjectRef, SourceKind};
use crate::exec::{ExecOptions, Executed, execute};
use crate::formats::vpcflow::ParseOptions;
use crate::ports::{
    BatchRecord, BatchState, Claim, ClaimLedger, CommitLedger, Delivery, JobQueue, RollupLedger,
    RollupRecord, RollupState,
};
use crate::store::key_path;
use crate::window::Window;

const HEADER: &str = "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status\n";

/// Runs the suite. `scope` makes object keys unique (adapters may share a table between tests);
/// `prepare` makes a batch committable in the adapter (claims its objects, and whatever else the
/// claim side of that ledger needs) and returns it. Panics on the first expectation not met.
pub async fn commit_ledger_conformance<F, Fut>(ledger: &dyn CommitLedger, scope: &str, prepare: F)
where
    F: Fn(Batch) -> Fut,
    Fut: Future<Output = Batch>,
{
    let input: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let output: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let window = Window::containing(1_761_955_200, 300);
    let good = |n: u32| {
        format!(
            "{HEADER}2 123456789012 eni-1 10.0.0.1 10.0.0.2 1 2 6 {n} {} 1761955200 1761955260 ACCEPT OK\n",
            n * 100
        )
    };
    let mut objects = Vec::new();
    for (name, body) in [
        ("a-good-1", good(3)),
        ("a-good-2", good(1)),
        ("a-bad", format!("{HEADER}2 123456789012 eni-1 10.0.0.1\n")),
        ("b-good-1", good(5)),
        ("b-good-2", good(7)),
    ] {
        let key = format!("{scope}/x_20251101T0000Z_{name}.log");
        input
            .put(&key_path(&key), PutPayload::from(body.clone().into_bytes()))
            .await
            .expect("put raw object");
        objects.push(ObjectRef {
            key,
            size: body.len() as u64,
            etag: Some(format!("etag-{name}")),
            last_modified: window.start,
        });
    }
    let opts = ExecOptions {
        parse: ParseOptions::default(),
        dns: Default::default(),
        fetch_concurrency: 2,
        output_prefix: scope.to_owned(),
        progress: None,
        delete_merged: false,
        memory: Default::default(),
    };

    // A batch with a bad object: merged, the bad object quarantined, committed.
    let a = prepare(Batch::new(scope, window, objects[..3].to_vec())).await;
    assert_eq!(a.objects.len(), 3, "prepare keeps the batch's objects");
    assert!(
        !ledger.is_committed(&a.id).await.expect("is_committed"),
        "fresh batch"
    );
    let report = match execute(Arc::clone(&input), Arc::clone(&output), ledger, &a, &opts).await {
        Ok(Executed::Merged(r)) => r,
        other => panic!("first execution: {other:?}"),
    };
    assert_eq!(report.records_in, 2);
    assert_eq!(report.rows_out, 1);
    assert_eq!(report.quarantined.len(), 1);
    assert!(
        report.quarantined[0].reason.contains("_a-bad.log:2"),
        "{:?}",
        report.quarantined
    );
    assert!(
        ledger.is_committed(&a.id).await.expect("is_committed"),
        "committed"
    );
    assert_eq!(report.output_keys.len(), 1, "one partition");
    let key = report.output_keys[0].clone();
    let first = output
        .get(&key_path(&key))
        .await
        .expect("output exists")
        .bytes()
        .await
        .unwrap();

    // Once committed, the batch is never run again.
    match execute(Arc::clone(&input), Arc::clone(&output), ledger, &a, &opts).await {
        Ok(Executed::AlreadyCommitted) => {}
        other => panic!("second execution: {other:?}"),
    }

    // The steps are idempotent, as a retry after a crash at any fault point needs.
    ledger
        .quarantine(&a, &report.quarantined)
        .await
        .expect("quarantine again");
    ledger.commit_batch(&report).await.expect("commit again");
    assert!(ledger.is_committed(&a.id).await.expect("is_committed"));

    // Another batch is independent of the first; a retried run rewrites the same bytes.
    let b = prepare(Batch::new(scope, window, objects[3..].to_vec())).await;
    assert_ne!(a.id, b.id);
    assert!(!ledger.is_committed(&b.id).await.expect("is_committed"));
    let rerun = crate::exec::run_batch(Arc::clone(&input), Arc::clone(&output), &a, &opts)
        .await
        .expect("rerun");
    let again = output
        .get(&key_path(&key))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!((rerun.output_keys, &again), (vec![key], &first));
    match execute(input, output, ledger, &b, &opts).await {
        Ok(Executed::Merged(r)) => assert!(r.quarantined.is_empty() && r.records_in == 2),
        other => panic!("batch b: {other:?}"),
    }
    assert!(ledger.is_committed(&b.id).await.expect("is_committed"));
}

/// Receives until `want` deliveries arrived or 20 receives of up to a second each passed (SQS may
/// return fewer messages than are visible in one call).
async fn receive_n(q: &dyn JobQueue, want: usize, visibility: Duration) -> Vec<Delivery> {
    let mut got = Vec::new();
    for _ in 0..20 {
        if got.len() >= want {
            break;
        }
        let batch = q
            .receive_jobs(want - got.len(), Duration::from_secs(1), visibility)
            .await
            .expect("receive");
        got.extend(batch);
    }
    got
}

/// Two receives of a second each find nothing.
async fn nothing_visible(q: &dyn JobQueue) -> bool {
    for _ in 0..2 {
        let got = q
            .receive_jobs(10, Duration::from_secs(1), Duration::from_secs(60))
            .await
            .expect("receive");
        if !got.is_empty() {
            return false;
        }
    }
    true
}

/// The conformance suite of the [`JobQueue`] port: every adapter (SQS on the emulator, the
/// in-process queue) must deliver at least once with visibility timeouts, keep attributes,
/// count deliveries, and honour extend, ack and release. `queue` must start empty.
pub async fn job_queue_conformance(q: &dyn JobQueue) {
    let long = Duration::from_secs(60);
    let trace = vec![(
        "traceparent".to_owned(),
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned(),
    )];
    for body in ["a", "b", "c"] {
        let attributes: &[(String, String)] = if body == "a" { &trace } else { &[] };
        q.send_job(body, attributes).await.expect("send");
    }
    let mut got = receive_n(q, 3, long).await;
    got.sort_by(|x, y| x.body.cmp(&y.body));
    let bodies: Vec<&str> = got.iter().map(|d| d.body.as_str()).collect();
    assert_eq!(bodies, ["a", "b", "c"], "each job delivered once");
    assert!(got.iter().all(|d| d.receive_count == 1), "first deliveries");
    assert_eq!(
        got[0].attributes.get("traceparent"),
        Some(&trace[0].1),
        "attributes kept"
    );
    assert!(nothing_visible(q).await, "jobs in hand are invisible");

    // ack: gone for good; release: back at once, delivered again; extend: still in hand.
    q.ack(&got[0].receipt_handle).await.expect("ack");
    q.release(&got[1].receipt_handle).await.expect("release");
    q.extend(&got[2].receipt_handle, long)
        .await
        .expect("extend");
    let again = receive_n(q, 1, long).await;
    assert_eq!(again.len(), 1, "the released job only");
    assert_eq!((again[0].body.as_str(), again[0].receive_count), ("b", 2));
    q.ack(&again[0].receipt_handle).await.expect("ack b");
    q.ack(&got[2].receipt_handle).await.expect("ack c");

    // A job whose visibility runs out is delivered again, to whoever asks next.
    q.send_job("d", &[]).await.expect("send d");
    let first = receive_n(q, 1, Duration::from_secs(1)).await;
    assert_eq!(first.len(), 1);
    let mut redelivered = Vec::new();
    for _ in 0..10 {
        redelivered = q
            .receive_jobs(1, Duration::from_secs(2), long)
            .await
            .expect("receive after expiry");
        if !redelivered.is_empty() {
            break;
        }
    }
    assert_eq!(
        redelivered.len(),
        1,
        "redelivered after its visibility ran out"
    );
    assert_eq!(
        (redelivered[0].body.as_str(), redelivered[0].receive_count),
        ("d", 2)
    );
    q.ack(&redelivered[0].receipt_handle).await.expect("ack d");
    assert!(nothing_visible(q).await, "nothing left");
}

/// The conformance suite of the [`ClaimLedger`] port: every adapter (DynamoDB on the emulator,
/// SQLite) must open batches idempotently under a lease, claim conditionally (an object stays
/// with the first batch, claims need the batch open and leased to the claimer), seal, take over
/// and seal abandoned batches only once their lease ran out, and move sealed batches on once.
/// `scope` makes object keys unique (adapters may share a table between tests).
pub async fn claim_ledger_conformance(ledger: &dyn ClaimLedger, scope: &str) {
    let window = Window::containing(1_761_955_200, 300);
    let obj = |name: &str| ObjectRef {
        key: format!("{scope}/claims/{name}.log"),
        size: 10,
        etag: Some(format!("etag-{name}")),
        last_modified: window.start,
    };
    let now = chrono::Utc::now().timestamp();
    let live = now + 600;
    let expired = now - 10;
    let record = |batch: &Batch, owner: &str, lease_until: i64| BatchRecord {
        id: batch.id.clone(),
        state: BatchState::Open,
        owner: owner.to_owned(),
        lease_until,
        manifest: format!("s3://work/{}.json", batch.id),
        window,
        source: batch.source,
    };

    // Open is idempotent: a second open returns the batch as it is.
    let a = Batch::new(scope, window, vec![obj("a1"), obj("a2"), obj("shared")]);
    assert_eq!(ledger.batch(&a.id).await.expect("batch"), None, "unknown");
    let rec_a = record(&a, "alice", live);
    assert_eq!(ledger.open_batch(&rec_a).await.expect("open"), None);
    let again = ledger
        .open_batch(&record(&a, "bob", live))
        .await
        .expect("open again")
        .expect("exists");
    assert_eq!(again, rec_a, "the first open wins, unchanged");

    // Claims: all mine, idempotently; none for a claimer who does not hold the lease.
    let claims = ledger
        .claim_all(scope, &a.objects, &a.id, "alice")
        .await
        .expect("claim");
    assert_eq!(claims, vec![Claim::Mine; 3]);
    let claims = ledger
        .claim_all(scope, &a.objects, &a.id, "alice")
        .await
        .expect("claim again");
    assert_eq!(claims, vec![Claim::Mine; 3], "re-claiming is idempotent");
    let stranger = ledger
        .claim_all(scope, &[obj("a1"), obj("free")], &a.id, "bob")
        .await
        .expect("claim by a stranger");
    assert_eq!(stranger, vec![Claim::Taken(a.id.clone()), Claim::Closed]);

    // A second batch gets only what the first does not hold. Its source is remembered.
    let b = Batch::new(scope, window, vec![obj("shared"), obj("b1")])
        .of_source(crate::batch::SourceKind::Cloudtrail);
    assert_eq!(
        ledger
            .open_batch(&record(&b, "bob", live))
            .await
            .expect("open b"),
        None
    );
    let claims = ledger
        .claim_all(scope, &b.objects, &b.id, "bob")
        .await
        .expect("claim b");
    assert_eq!(claims, vec![Claim::Taken(a.id.clone()), Claim::Mine]);
    assert_eq!(
        ledger
            .batch(&b.id)
            .await
            .expect("batch b")
            .map(|r| r.source),
        Some(crate::batch::SourceKind::Cloudtrail)
    );
    let owners = ledger
        .claims(scope, &[obj("a1"), obj("b1"), obj("free"), obj("shared")])
        .await
        .expect("claims");
    assert_eq!(
        owners,
        vec![
            Some(a.id.clone()),
            Some(b.id.clone()),
            None,
            Some(a.id.clone())
        ]
    );
    // The same key with another etag is another object.
    let mut replaced = obj("a1");
    replaced.etag = Some("etag-new".into());
    assert_eq!(
        ledger.claims(scope, &[replaced]).await.expect("claims"),
        vec![None]
    );

    // A live lease is neither taken over nor sealed by others; the holder seals once.
    assert!(
        !ledger
            .take_over(&a.id, "bob", live)
            .await
            .expect("take over")
    );
    assert!(!ledger.seal_abandoned(&a.id).await.expect("seal abandoned"));
    assert!(!ledger.seal(&a.id, "bob").await.expect("seal by a stranger"));
    assert!(
        !ledger
            .mark_queued(&a.id)
            .await
            .expect("queue an open batch")
    );
    assert!(ledger.seal(&a.id, "alice").await.expect("seal"));
    assert!(!ledger.seal(&a.id, "alice").await.expect("seal twice"));
    let sealed = ledger.batch(&a.id).await.expect("batch").expect("exists");
    assert_eq!(sealed.state, BatchState::Sealed);
    assert_eq!(
        (sealed.manifest.as_str(), sealed.window),
        (rec_a.manifest.as_str(), window)
    );
    // Sealed: nothing joins it, not even from its own claimer.
    let late = ledger
        .claim_all(scope, &[obj("a1"), obj("late")], &a.id, "alice")
        .await
        .expect("claim after seal");
    assert_eq!(late, vec![Claim::Taken(a.id.clone()), Claim::Closed]);
    assert_eq!(
        ledger.claims(scope, &[obj("late")]).await.expect("claims"),
        vec![None]
    );
    assert!(ledger.mark_queued(&a.id).await.expect("queue"));
    assert!(!ledger.mark_queued(&a.id).await.expect("queue twice"));
    assert_eq!(
        ledger.batch(&a.id).await.expect("batch").map(|r| r.state),
        Some(BatchState::Queued)
    );
    assert!(
        !ledger
            .mark_empty(&a.id)
            .await
            .expect("empty a queued batch")
    );

    // An expired lease: taken over by a new claimer, whose claims then count.
    let c = Batch::new(scope, window, vec![obj("c1")]);
    ledger
        .open_batch(&record(&c, "carol", expired))
        .await
        .expect("open c");
    assert!(
        ledger
            .take_over(&c.id, "dave", live)
            .await
            .expect("take over")
    );
    let rec = ledger.batch(&c.id).await.expect("batch").expect("exists");
    assert_eq!((rec.owner.as_str(), rec.lease_until), ("dave", live));
    let claims = ledger
        .claim_all(scope, &c.objects, &c.id, "carol")
        .await
        .expect("claim by the old owner");
    assert_eq!(claims, vec![Claim::Closed], "the old owner lost the lease");
    let claims = ledger
        .claim_all(scope, &c.objects, &c.id, "dave")
        .await
        .expect("claim by the new owner");
    assert_eq!(claims, vec![Claim::Mine]);

    // An abandoned batch (expired lease) is sealed by anyone; one left without objects is empty.
    let d = Batch::new(scope, window, vec![obj("d1")]);
    ledger
        .open_batch(&record(&d, "erin", expired))
        .await
        .expect("open d");
    assert!(ledger.seal_abandoned(&d.id).await.expect("seal abandoned"));
    assert!(!ledger.seal_abandoned(&d.id).await.expect("twice"));
    assert!(ledger.mark_empty(&d.id).await.expect("empty"));
    assert_eq!(
        ledger.batch(&d.id).await.expect("batch").map(|r| r.state),
        Some(BatchState::Empty)
    );

    // More objects than one DynamoDB transaction holds, some of them taken already.
    let mut many: Vec<ObjectRef> = (0..250).map(|i| obj(&format!("many-{i:03}"))).collect();
    many.push(obj("b1"));
    let e = Batch::new(scope, window, many);
    ledger
        .open_batch(&record(&e, "frank", live))
        .await
        .expect("open e");
    let claims = ledger
        .claim_all(scope, &e.objects, &e.id, "frank")
        .await
        .expect("claim many");
    assert_eq!(claims.len(), 251);
    assert!(
        claims[..250].iter().all(|c| *c == Claim::Mine),
        "{claims:?}"
    );
    assert_eq!(claims[250], Claim::Taken(b.id.clone()));

    // The protocol itself, through the one implementation of it.
    let f = Batch::new(scope, window, vec![obj("f1"), obj("b1")]);
    let done = crate::claim::claim_batch(ledger, scope, &f, "gina", live, String::new())
        .await
        .expect("claim_batch");
    assert!(done.to_send);
    assert_eq!(done.owned(&f), vec![obj("f1")]);
    assert_eq!(
        ledger.batch(&f.id).await.expect("batch").map(|r| r.state),
        Some(BatchState::Sealed)
    );
    let retry = crate::claim::claim_batch(ledger, scope, &f, "gina", live, String::new())
        .await
        .expect("claim_batch again");
    assert!(
        !retry.to_send,
        "a sealed batch is not sent twice by claiming it again"
    );
    assert_eq!(
        retry.claims,
        vec![Claim::Taken(f.id.clone()), Claim::Taken(b.id.clone())]
    );
}

/// The rollup side of a ledger: a partition's lease is exclusive until it runs out or is
/// released, and the partition's rollup record is written only under the lease and read back
/// whole. `scope` makes partition names unique (adapters may share a table between tests).
pub async fn rollup_ledger_conformance(ledger: &dyn RollupLedger, scope: &str) {
    let t = 1_800_000_000;
    let p = format!("{scope}/vpcflowlogs/year=2027/month=01/day=15/hour=08");
    let rec = |state| RollupRecord {
        partition: p.clone(),
        id: "0123456789abcdef".into(),
        state,
        source: SourceKind::Vpcflow,
        outputs: vec!["rollup-0123456789abcdef-0000.parquet".into()],
        // A day of five-minute files, and late ones: the record must hold them all.
        replaced: (0..300)
            .map(|i| format!("20270115T08{:02}Z-{i:016x}.parquet", i % 60))
            .collect(),
        inputs: 300,
        rows: 12_345,
    };
    let lease = |owner: &'static str, until: i64, now: i64| {
        let p = p.clone();
        async move { ledger.lease_partition(&p, owner, until, now).await.unwrap() }
    };
    assert_eq!(lease("a", t + 60, t).await, Some(None), "a new partition");
    assert_eq!(lease("b", t + 60, t + 1).await, None, "held by a");
    assert_eq!(lease("a", t + 120, t + 2).await, Some(None), "renewed by a");
    assert!(
        !ledger
            .put_rollup(&rec(RollupState::Writing), "b", t + 3)
            .await
            .unwrap(),
        "a stranger may not write the record"
    );
    assert!(
        ledger
            .put_rollup(&rec(RollupState::Writing), "a", t + 3)
            .await
            .unwrap()
    );
    assert!(
        ledger
            .put_rollup(&rec(RollupState::Committed), "a", t + 4)
            .await
            .unwrap()
    );
    assert_eq!(
        lease("a", t + 120, t + 5).await,
        Some(Some(rec(RollupState::Committed))),
        "the record, whole"
    );
    ledger.release_partition(&p, "b").await.unwrap();
    assert_eq!(
        lease("b", t + 200, t + 6).await,
        None,
        "only a releases a's lease"
    );
    ledger.release_partition(&p, "a").await.unwrap();
    assert_eq!(
        lease("b", t + 200, t + 7).await,
        Some(Some(rec(RollupState::Committed))),
        "released: b takes it and sees a's rollup"
    );
    // b's lease runs out at t + 200: a may take the partition over, and b can write no more.
    assert_eq!(
        lease("a", t + 400, t + 200).await.map(|r| r.is_some()),
        Some(true)
    );
    assert!(
        !ledger
            .put_rollup(&rec(RollupState::Done), "b", t + 201)
            .await
            .unwrap(),
        "b's lease is over"
    );
    assert!(
        !ledger
            .put_rollup(&rec(RollupState::Done), "a", t + 400)
            .await
            .unwrap(),
        "a lease is over at its end"
    );
    assert_eq!(
        lease("a", t + 500, t + 401).await,
        Some(Some(rec(RollupState::Committed)))
    );
    let other = format!("{scope}/dns/year=2027/month=01/day=15/server=ns1");
    assert_eq!(
        ledger
            .lease_partition(&other, "b", t + 500, t + 402)
            .await
            .unwrap(),
        Some(None),
        "leases are per partition"
    );
}
