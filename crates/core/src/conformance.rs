//! The conformance suite of the [`CommitLedger`] port, in the manner of object_store's shared
//! integration tests: one set of expectations that every adapter's tests call — the SQLite ledger
//! in `flowmerge-local`, the DynamoDB ledger on the emulator in `tests/aws.rs`. It drives the
//! adapter through [`execute`], the batch protocol itself, on an in-memory object store.

use std::future::Future;
use std::sync::Arc;

use object_store::memory::InMemory;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::batch::{Batch, ObjectRef};
use crate::exec::{ExecOptions, Executed, execute};
use crate::formats::vpcflow::ParseOptions;
use crate::ports::CommitLedger;
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
        fetch_concurrency: 2,
        output_prefix: scope.to_owned(),
        progress: None,
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
    let key = report.output_key.clone().expect("an output key");
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
    assert_eq!(
        (rerun.output_key.as_deref(), &again),
        (Some(key.as_str()), &first)
    );
    match execute(input, output, ledger, &b, &opts).await {
        Ok(Executed::Merged(r)) => assert!(r.quarantined.is_empty() && r.records_in == 2),
        other => panic!("batch b: {other:?}"),
    }
    assert!(ledger.is_committed(&b.id).await.expect("is_committed"));
}
