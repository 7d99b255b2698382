//! End-to-end tests of the AWS workers against moto's server (a real HTTP AWS emulator),
//! as a user runs them: `flowmerge aws bootstrap`, then `flowmerge-mapper` and
//! `flowmerge-merger` started with only that environment, raw objects uploaded to S3 (S3 notifies
//! the raw queue), the Parquet output read back and compared with an independent oracle.
//!
//! The harness starts one moto server per test binary (or uses `FLOWMERGE_TEST_AWS_ENDPOINT`);
//! every test creates uniquely named buckets, queues and tables.

mod common;

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::QueueAttributeName;
use bytes::Bytes;
use common::*;
use flowmerge_core::store::key_path;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

/// How long a test waits for the pipeline to settle before failing.
const DEADLINE: Duration = Duration::from_secs(120);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

struct Moto {
    endpoint: String,
    /// The watchdog, whose stdin stays open for the life of the test process: it stops moto
    /// when the pipe closes.
    _watchdog: Option<Mutex<Child>>,
}

/// The emulator's endpoint: `FLOWMERGE_TEST_AWS_ENDPOINT`, or a moto server started here.
fn moto() -> &'static str {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    &MOTO
        .get_or_init(|| {
            if let Ok(e) = std::env::var("FLOWMERGE_TEST_AWS_ENDPOINT") {
                return Moto { endpoint: e, _watchdog: None };
            }
            let venv = std::env::var("FLOWMERGE_TEST_VENV")
                .map(PathBuf::from)
                .unwrap_or_else(|_| repo_root().join(".venv-test"));
            let server = venv.join("bin/moto_server");
            assert!(
                server.exists(),
                "{} not found: run ./scripts/test.sh (it installs moto[server]) or set FLOWMERGE_TEST_AWS_ENDPOINT",
                server.display()
            );
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port();
            // A watchdog parent: moto lives until this test process (and so the pipe) goes away.
            let watchdog = "import subprocess, sys\n\
                p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n\
                sys.stdin.read()\n\
                p.terminate(); p.wait()";
            let child = Command::new(venv.join("bin/python"))
                .args(["-c", watchdog])
                .arg(&server)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::piped())
                .spawn()
                .expect("start moto_server");
            let start = Instant::now();
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(start.elapsed() < Duration::from_secs(30), "moto did not start");
                std::thread::sleep(Duration::from_millis(100));
            }
            Moto {
                endpoint: format!("http://127.0.0.1:{port}"),
                _watchdog: Some(Mutex::new(child)),
            }
        })
        .endpoint
}

/// The standard AWS environment pointing at the emulator.
fn aws_env() -> Vec<(String, String)> {
    [
        ("AWS_ENDPOINT_URL", moto()),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime")
    })
}

/// What `flowmerge aws bootstrap` made for one test.
struct Stack {
    dir: tempfile::TempDir,
    raw_bucket: String,
    out_bucket: String,
    /// The printed `export` lines, parsed.
    exports: BTreeMap<String, String>,
    children: Vec<Child>,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn unique(test: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let short: String = test
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(20)
        .collect();
    format!("{}-{}-{n}", short.to_lowercase(), std::process::id())
}

fn bootstrap(test: &str) -> Stack {
    let u = unique(test);
    let raw_bucket = format!("raw-{u}");
    let out_bucket = format!("out-{u}");
    let out = Command::new(env!("CARGO_BIN_EXE_flowmerge"))
        .args(["aws", "bootstrap", "--raw-bucket", &raw_bucket])
        .args([
            "--output",
            &format!("s3://{out_bucket}/flows"),
            "--name",
            &format!("fm-{u}"),
        ])
        .envs(aws_env())
        .output()
        .expect("run flowmerge aws bootstrap");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "bootstrap failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let exports: BTreeMap<String, String> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('\'').to_owned()))
        .collect();
    for var in [
        "FLOWMERGE_RAW_QUEUE_URL",
        "FLOWMERGE_MERGE_QUEUE_URL",
        "FLOWMERGE_TABLE",
        "FLOWMERGE_OUTPUT",
    ] {
        assert!(
            exports.contains_key(var),
            "bootstrap printed no {var}: {stdout}"
        );
    }
    Stack {
        dir: tempfile::tempdir().expect("tempdir"),
        raw_bucket,
        out_bucket,
        exports,
        children: Vec::new(),
    }
}

impl Stack {
    /// Starts a worker with the bootstrap's environment plus fast test timings and `extra`.
    fn start(&mut self, bin: &str, extra: &[(&str, &str)]) -> usize {
        let path = match bin {
            "mapper" => env!("CARGO_BIN_EXE_flowmerge-mapper"),
            _ => env!("CARGO_BIN_EXE_flowmerge-merger"),
        };
        let n = self.children.len();
        let log = std::fs::File::create(self.dir.path().join(format!("{bin}-{n}.log")))
            .expect("log file");
        let child = Command::new(path)
            .env_clear()
            .envs(aws_env())
            .envs(&self.exports)
            .envs([
                ("FLOWMERGE_BATCH_MAX_WAIT", "1s"),
                ("FLOWMERGE_VISIBILITY_TIMEOUT", "3s"),
                ("FLOWMERGE_CLAIM_LEASE", "2s"),
                ("FLOWMERGE_LOG", "info"),
            ])
            .envs(extra.iter().copied())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start worker");
        self.children.push(child);
        n
    }

    fn logs(&self) -> String {
        let mut all = String::new();
        let mut names: Vec<_> = std::fs::read_dir(self.dir.path())
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        names.sort();
        for p in names {
            all.push_str(&format!(
                "--- {}\n{}\n",
                p.display(),
                std::fs::read_to_string(&p).unwrap_or_default()
            ));
        }
        all
    }

    /// Waits for a worker to exit; returns its code.
    fn wait_exit(&mut self, i: usize, within: Duration) -> i32 {
        let start = Instant::now();
        loop {
            if let Some(status) = self.children[i].try_wait().expect("wait") {
                return status.code().unwrap_or(-1);
            }
            if start.elapsed() > within {
                let logs = self.logs();
                panic!("worker {i} still running after {within:?}\n{logs}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn sigterm(&self, i: usize) {
        let st = Command::new("kill")
            .args(["-TERM", &self.children[i].id().to_string()])
            .status()
            .expect("kill");
        assert!(st.success());
    }

    fn store(&self, bucket: &str) -> Arc<dyn ObjectStore> {
        let _env = aws_env();
        runtime().block_on(async {
            object_store::aws::AmazonS3Builder::new()
                .with_endpoint(moto())
                .with_allow_http(true)
                .with_region("us-east-1")
                .with_access_key_id("test")
                .with_secret_access_key("test")
                .with_bucket_name(bucket)
                .build()
                .map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
                .expect("s3 store")
        })
    }

    /// Uploads files under `root` with their relative paths as keys (S3 notifies the raw queue).
    fn upload(&self, root: &Path, files: &[PathBuf]) {
        let store = self.store(&self.raw_bucket);
        runtime().block_on(async {
            futures::stream::iter(files)
                .map(|f| {
                    let store = Arc::clone(&store);
                    async move {
                        let key = f
                            .strip_prefix(root)
                            .expect("under root")
                            .to_string_lossy()
                            .into_owned();
                        let body = Bytes::from(std::fs::read(f).expect("read raw"));
                        store
                            .put(&key_path(&key), PutPayload::from(body))
                            .await
                            .expect("upload");
                    }
                })
                .buffer_unordered(8)
                .collect::<Vec<()>>()
                .await;
        });
    }

    /// Downloads every object under `prefix` of the output bucket into `into` (same relative keys).
    fn download(&self, prefix: &str, into: &Path) -> BTreeMap<String, Bytes> {
        let store = self.store(&self.out_bucket);
        let prefix = StorePath::from(prefix);
        runtime().block_on(async {
            let metas: Vec<_> = store
                .list(Some(&prefix))
                .try_collect()
                .await
                .expect("list output");
            let mut got = BTreeMap::new();
            for m in metas {
                let body = store
                    .get(&m.location)
                    .await
                    .expect("get")
                    .bytes()
                    .await
                    .expect("body");
                let rel = m
                    .location
                    .as_ref()
                    .strip_prefix("flows/")
                    .unwrap_or(m.location.as_ref())
                    .to_owned();
                let path = into.join(&rel);
                std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
                std::fs::write(&path, &body).expect("write");
                got.insert(rel, body);
            }
            got
        })
    }

    /// Polls the output until it holds `records` merged records; returns the folder it is in.
    fn wait_for_records(&self, records: i64) -> PathBuf {
        let start = Instant::now();
        let mut round = 0;
        loop {
            round += 1;
            let out = self.dir.path().join(format!("out-{round}"));
            self.download("flows/vpcflowlogs", &out);
            let got: i64 = observed(&out).values().map(|t| t.records).sum();
            if got == records {
                return out;
            }
            assert!(
                got <= records,
                "more records out ({got}) than in ({records}): duplicated\n{}",
                self.logs()
            );
            if start.elapsed() > DEADLINE {
                panic!(
                    "only {got} of {records} records merged after {DEADLINE:?}\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    fn queue_depth(&self, url_var: &str) -> (i64, i64) {
        let url = self.exports[url_var].clone();
        runtime().block_on(async {
            let sdk = aws_config_for_tests().await;
            let out = aws_sdk_sqs::Client::new(&sdk)
                .get_queue_attributes()
                .queue_url(url)
                .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
                .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
                .send()
                .await
                .expect("queue attributes");
            let get = |a: QueueAttributeName| {
                out.attributes()
                    .and_then(|m| m.get(&a))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
            };
            (
                get(QueueAttributeName::ApproximateNumberOfMessages),
                get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
            )
        })
    }

    /// Polls until `cond` holds on the queue's (visible, in flight) counts.
    fn wait_queue(&self, url_var: &str, what: &str, cond: impl Fn((i64, i64)) -> bool) {
        let start = Instant::now();
        loop {
            let d = self.queue_depth(url_var);
            if cond(d) {
                return;
            }
            if start.elapsed() > DEADLINE {
                panic!(
                    "{url_var}: {what} not reached, depth {d:?}\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Polls until both queues are empty: nothing left in flight that could add output.
    fn wait_drained(&self) {
        for q in ["FLOWMERGE_RAW_QUEUE_URL", "FLOWMERGE_MERGE_QUEUE_URL"] {
            self.wait_queue(q, "queue drained", |(v, f)| v + f == 0);
        }
    }

    /// Polls `cond` until it holds, within the deadline.
    fn wait_for(&self, what: &str, cond: impl Fn() -> bool) {
        let start = Instant::now();
        while !cond() {
            if start.elapsed() > DEADLINE {
                panic!("{what}: not reached after {DEADLINE:?}\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The keys in the raw bucket.
    fn raw_keys(&self) -> Vec<String> {
        let store = self.store(&self.raw_bucket);
        runtime().block_on(async {
            let metas: Vec<_> = store.list(None).try_collect().await.expect("list raw");
            metas.into_iter().map(|m| m.location.to_string()).collect()
        })
    }

    fn send_raw(&self, url_var: &str, body: &str) {
        let url = self.exports[url_var].clone();
        runtime().block_on(async {
            let sdk = aws_config_for_tests().await;
            aws_sdk_sqs::Client::new(&sdk)
                .send_message()
                .queue_url(url)
                .message_body(body)
                .send()
                .await
                .expect("send");
        });
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

async fn aws_config_for_tests() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(moto())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "test", "test", None, None, "tests",
        ))
        .load()
        .await
}

/// A small generated set in AWS's layout; one object renamed with a space and non-ASCII letters
/// (S3 notifications URL-encode keys). Returns the root and the files.
fn raw_set(dir: &Path, seed: &str) -> (PathBuf, Vec<PathBuf>) {
    let root = dir.join("raw");
    generate(
        &root,
        &format!(
            "--accounts 2 --minutes 6 --files-per-minute 1 --records-per-file 150 --seed {seed}"
        ),
    );
    let mut raw = files(&root);
    let first = raw[0].clone();
    let name = first
        .file_name()
        .unwrap()
        .to_string_lossy()
        .replace("_fl-", "_fl é+x ");
    let renamed = first.with_file_name(name);
    std::fs::rename(&first, &renamed).expect("rename");
    raw[0] = renamed;
    (root, raw)
}

fn total_records(raw: &[PathBuf]) -> i64 {
    oracle(raw).values().map(|t| t.records).sum()
}

#[test]
fn uploaded_objects_are_merged_once_and_duplicates_add_nothing() {
    let mut s = bootstrap("merged-once");
    let (root, raw) = raw_set(s.dir.path(), "11");
    let mapper = s.start("mapper", &[]);
    let merger = s.start("merger", &[]);
    s.upload(&root, &raw);
    let out = s.wait_for_records(total_records(&raw));
    assert_conserved(&raw, &out);
    let first = s.download("flows", &s.dir.path().join("first"));
    assert!(
        first.keys().any(|k| k.starts_with("_flowmerge/manifests/")),
        "{first:?}"
    );

    // The same objects again: duplicate events for objects already merged.
    s.upload(&root, &raw);
    s.wait_drained();
    let again = s.download("flows", &s.dir.path().join("again"));
    assert_eq!(
        first
            .iter()
            .filter(|(k, _)| k.ends_with(".parquet"))
            .collect::<Vec<_>>(),
        again
            .iter()
            .filter(|(k, _)| k.ends_with(".parquet"))
            .collect::<Vec<_>>(),
        "re-uploading the same objects changed the output"
    );

    for w in [mapper, merger] {
        s.sigterm(w);
        assert_eq!(s.wait_exit(w, Duration::from_secs(30)), 0, "{}", s.logs());
    }
}

/// A window with more rows than the merger's memory limit sorts at once is written as sorted
/// parts (and parts of parts) to local disk and uploaded to S3 as a multipart upload: every
/// record still lands once.
#[test]
fn a_window_larger_than_one_sort_is_uploaded_in_parts() {
    let mut s = bootstrap("multipart");
    let root = s.dir.path().join("raw");
    generate(
        &root,
        "--accounts 2 --minutes 5 --files-per-minute 2 --records-per-file 1000 --profile unique --seed 31",
    );
    let raw = files(&root);
    // One batch at a time within 512 KiB: at most 748 rows sorted as one frame, 374 keys a part.
    let limit = [("FLOWMERGE_MEMORY_LIMIT", "512KiB")];
    s.start("mapper", &[]);
    s.start("merger", &limit);
    s.upload(&root, &raw);
    let out = s.wait_for_records(total_records(&raw));
    assert_conserved(&raw, &out);
    let sorted_rows = (512 << 10) / flowmerge_core::memory::ROW_BYTES as usize;
    let heights: Vec<usize> = parquet_files(&out)
        .iter()
        .map(|f| read_parquet(f).height())
        .collect();
    // Every object holds 1,000 keys, so every batch is larger than one sort.
    assert!(
        !heights.is_empty() && heights.iter().all(|&h| h > sorted_rows),
        "{heights:?}"
    );
}

/// The schedule's scan on the rollup queue: the merger queues a job per due partition and rolls
/// each up under its lease; every record is still there once, and a second scan changes nothing.
#[test]
fn a_scan_on_the_rollup_queue_rolls_closed_partitions_up_in_the_merger() {
    scan_and_roll_up("rollup-queue", None);
}

/// The same under a memory limit far below the partition's rows: the merger fetches its files
/// from S3 to local disk, merges it in buckets and uploads the file in parts — every record
/// still once, and a second scan still changes nothing.
#[test]
fn a_partition_too_large_for_the_merger_memory_is_rolled_up_in_buckets() {
    scan_and_roll_up("rollup-buckets", Some("64KiB"));
}

fn scan_and_roll_up(name: &str, memory_limit: Option<&str>) {
    let mut s = bootstrap(name);
    let (root, raw) = raw_set(s.dir.path(), "17");
    let mapper = s.start("mapper", &[]);
    let mut env = vec![
        ("FLOWMERGE_ROLLUP_MIN_AGE", "0s"),
        ("FLOWMERGE_DELETE_MERGED", "true"),
    ];
    if let Some(limit) = memory_limit {
        env.push(("FLOWMERGE_MEMORY_LIMIT", limit));
    }
    let merger = s.start("merger", &env);
    s.upload(&root, &raw);
    s.wait_for_records(total_records(&raw));
    s.wait_drained();
    // FLOWMERGE_DELETE_MERGED: the raw objects go once their batches are committed.
    s.wait_for("the raw bucket emptied", || s.raw_keys().is_empty());
    let parquet = |files: &BTreeMap<String, Bytes>| -> BTreeMap<String, Bytes> {
        files
            .iter()
            .filter(|(k, _)| k.ends_with(".parquet"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    let before = parquet(&s.download("flows/vpcflowlogs", &s.dir.path().join("before")));
    assert!(before.len() > 1, "{:?}", before.keys());

    s.send_raw("FLOWMERGE_ROLLUP_QUEUE_URL", r#"{"kind":"scan"}"#);
    s.wait_queue(
        "FLOWMERGE_ROLLUP_QUEUE_URL",
        "rollup jobs done",
        |(v, f)| v + f == 0,
    );
    let rolled_dir = s.dir.path().join("rolled");
    let rolled = parquet(&s.download("flows/vpcflowlogs", &rolled_dir));
    let mut per_dir: BTreeMap<String, Vec<&String>> = BTreeMap::new();
    for k in rolled.keys() {
        let (dir, _) = k.rsplit_once('/').unwrap();
        per_dir.entry(dir.to_owned()).or_default().push(k);
    }
    for (dir, keys) in &per_dir {
        assert_eq!(keys.len(), 1, "{dir}: {keys:?}\n{}", s.logs());
        assert!(keys[0].contains("/rollup-"), "{keys:?}");
    }
    assert_conserved(&raw, &rolled_dir);
    let in_buckets = s.logs().contains("merging in buckets");
    assert_eq!(in_buckets, memory_limit.is_some(), "{}", s.logs());

    s.send_raw("FLOWMERGE_ROLLUP_QUEUE_URL", r#"{"kind":"scan"}"#);
    s.wait_queue(
        "FLOWMERGE_ROLLUP_QUEUE_URL",
        "second scan done",
        |(v, f)| v + f == 0,
    );
    let again = parquet(&s.download("flows/vpcflowlogs", &s.dir.path().join("again")));
    assert_eq!(again, rolled, "a second scan changes no byte");
    for w in [mapper, merger] {
        s.sigterm(w);
        assert_eq!(s.wait_exit(w, Duration::from_secs(30)), 0, "{}", s.logs());
    }
}

/// A merger killed at a step of a rollup job; another merger, once the dead one's lease ran
/// out, finishes or undoes the rollup: every record once, one file per partition.
fn rollup_crash_and_recover(step: &str) {
    let mut s = bootstrap(&format!("rollup-{step}"));
    let (root, raw) = raw_set(s.dir.path(), "19");
    s.start("mapper", &[]);
    let first = s.start("merger", &[]);
    s.upload(&root, &raw);
    s.wait_for_records(total_records(&raw));
    s.wait_drained();
    s.sigterm(first);
    assert_eq!(
        s.wait_exit(first, Duration::from_secs(30)),
        0,
        "{}",
        s.logs()
    );
    let timings = [
        ("FLOWMERGE_ROLLUP_MIN_AGE", "0s"),
        ("FLOWMERGE_ROLLUP_LEASE", "2s"),
    ];
    let mut faulty = timings.to_vec();
    faulty.push(("FLOWMERGE_FAULT", step));
    let crashed = s.start("merger", &faulty);
    s.send_raw("FLOWMERGE_ROLLUP_QUEUE_URL", r#"{"kind":"scan"}"#);
    assert_eq!(
        s.wait_exit(crashed, Duration::from_secs(60)),
        86,
        "{}",
        s.logs()
    );
    s.start("merger", &timings);
    s.wait_queue(
        "FLOWMERGE_ROLLUP_QUEUE_URL",
        "rollup job redone",
        |(v, f)| v + f == 0,
    );
    let out = s.dir.path().join("recovered");
    let got = s.download("flows/vpcflowlogs", &out);
    let mut per_dir: BTreeMap<String, Vec<&String>> = BTreeMap::new();
    for k in got.keys().filter(|k| k.ends_with(".parquet")) {
        per_dir
            .entry(k.rsplit_once('/').unwrap().0.to_owned())
            .or_default()
            .push(k);
    }
    for (dir, keys) in &per_dir {
        assert_eq!(keys.len(), 1, "{step}: {dir}: {keys:?}\n{}", s.logs());
        assert!(keys[0].contains("/rollup-"), "{step}: {keys:?}");
    }
    assert_conserved(&raw, &out);
}

#[test]
fn merger_killed_after_rollup_write() {
    rollup_crash_and_recover("rollup-after-write");
}

#[test]
fn merger_killed_after_rollup_commit() {
    rollup_crash_and_recover("rollup-after-commit");
}

#[test]
fn merger_killed_during_rollup_deletes() {
    rollup_crash_and_recover("rollup-during-deletes");
}

/// The real CloudTrail samples (`realdata()/cloudtrail`).
fn realdata_cloudtrail() -> PathBuf {
    realdata().join("cloudtrail")
}

#[test]
fn cloudtrail_uploads_go_through_mapper_and_merger_into_their_own_table() {
    let mut s = bootstrap("cloudtrail");
    let (root, mut raw) = raw_set(s.dir.path(), "13");
    let flows = raw.clone();
    // Real trails under AWS's organisation-trail layout, a digest beside them, and the same
    // file delivered twice under two names of one window (at-least-once delivery).
    let real = realdata_cloudtrail();
    let trail = root.join("AWSLogs/o-abc123/650992545562/CloudTrail/us-west-2/2022/01/03");
    std::fs::create_dir_all(&trail).unwrap();
    let derived = "650992545562_CloudTrail_us-west-2_20220103T1915Z_LwA4RXRzImDPnQAL.json.gz";
    let body = std::fs::read(real.join("cribl/derived-from-cribl").join(derived)).unwrap();
    for name in [
        derived,
        "650992545562_CloudTrail_us-west-2_20220103T1915Z_SecondDelivery00.json.gz",
    ] {
        std::fs::write(trail.join(name), &body).unwrap();
        raw.push(trail.join(name));
    }
    let loki =
        trail.join("650992545562_CloudTrail_us-west-2_20220103T1910Z_Lokiexample00000.json.gz");
    std::fs::copy(real.join("loki/cloudtrail-log-file.json.gz"), &loki).unwrap();
    raw.push(loki);
    let digest = root.join("AWSLogs/o-abc123/650992545562/CloudTrail-Digest/us-west-2/2022/01/03");
    std::fs::create_dir_all(&digest).unwrap();
    std::fs::write(
        digest.join("650992545562_CloudTrail-Digest_us-west-2_t_20220103T2000Z.json.gz"),
        br#"{"awsAccountId":"650992545562","logFiles":[]}"#,
    )
    .unwrap();
    raw.push(digest.join("650992545562_CloudTrail-Digest_us-west-2_t_20220103T2000Z.json.gz"));

    let mapper = s.start("mapper", &[]);
    let merger = s.start("merger", &[]);
    s.upload(&root, &raw);
    let out = s.wait_for_records(total_records(&flows));
    assert_conserved(&flows, &out);
    s.wait_drained();
    let got = s.download("flows/cloudtrail", &s.dir.path().join("trail"));
    let mut ids = std::collections::HashMap::<String, usize>::new();
    for (key, body) in got.iter().filter(|(k, _)| k.ends_with(".parquet")) {
        // Partitioned by the events' own days (Loki's sample is of 2023-05-19).
        assert!(
            key.contains("/year=2022/month=01/day=03/")
                || key.contains("/year=2023/month=05/day=19/"),
            "{key}"
        );
        use polars::prelude::SerReader as _;
        let df = polars::prelude::ParquetReader::new(std::io::Cursor::new(body.to_vec()))
            .finish()
            .unwrap();
        let col = df.column("eventid").unwrap();
        for i in 0..df.height() {
            *ids.entry(text_of(col.get(i).unwrap())).or_default() += 1;
        }
    }
    // 21 events in the file delivered twice, each once; 2 in Loki's.
    assert_eq!(ids.values().filter(|n| **n > 1).count(), 0, "{ids:?}");
    assert_eq!(ids.len(), 21 + 2, "{ids:?}\n{}", s.logs());
    let work = s.download("flows/_flowmerge/quarantine", &s.dir.path().join("q"));
    assert!(work.is_empty(), "nothing quarantined: {work:?}");

    for w in [mapper, merger] {
        s.sigterm(w);
        assert_eq!(s.wait_exit(w, Duration::from_secs(30)), 0, "{}", s.logs());
    }
}

/// DNS queries in a capture as tshark counts them (UDP or TCP port 53), one per message.
fn tshark_queries(file: &Path) -> usize {
    let out = Command::new("tshark")
        .args(["-r", file.to_str().unwrap(), "-Y"])
        .arg("dns && (udp.port == 53 || tcp.port == 53)")
        .args(["-T", "fields", "-e", "dns.flags.response"])
        .output()
        .expect("tshark (scripts/test.sh installs it)");
    String::from_utf8_lossy(&out.stdout)
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|v| *v == "0" || *v == "False")
        .count()
}

#[test]
fn dns_captures_go_through_mapper_and_merger_into_their_own_table() {
    let mut s = bootstrap("dns");
    let root = s.dir.path().join("captures");
    let real = realdata_cloudtrail().parent().unwrap().join("dns_pcap");
    let mut raw = Vec::new();
    let mut queries = 0;
    for (server, file) in [
        ("ns1.example", "dnscap/dns.pcap"),
        ("ns1.example", "dnscap/dnso1tcp.pcap"),
        ("ns2.example", "pcapplusplus/DnsPackets.pcap"),
        ("ns2.example", "pcapplusplus/many_interfaces-1.pcapng"),
    ] {
        let to = root.join("dns").join(server).join(file.replace('/', "-"));
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(real.join(file), &to).unwrap();
        queries += tshark_queries(&to);
        raw.push(to);
    }
    let mapper = s.start("mapper", &[]);
    let merger = s.start("merger", &[]);
    s.upload(&root, &raw);
    // Polls until the table holds a row per query (rows without a query would be -2 rows).
    let start = Instant::now();
    let (rows, servers) = loop {
        let got = s.download(
            "flows/dns",
            &s.dir
                .path()
                .join(format!("dns-{}", start.elapsed().as_millis())),
        );
        let mut rows = 0;
        let mut servers = std::collections::BTreeSet::new();
        for (key, body) in got.iter().filter(|(k, _)| k.ends_with(".parquet")) {
            use polars::prelude::SerReader as _;
            let df = polars::prelude::ParquetReader::new(std::io::Cursor::new(body.to_vec()))
                .finish()
                .unwrap();
            rows += df.height();
            servers.insert(
                key.split("/server=")
                    .nth(1)
                    .unwrap()
                    .split('/')
                    .next()
                    .unwrap()
                    .to_owned(),
            );
        }
        if rows >= queries || start.elapsed() > DEADLINE {
            break (rows, servers);
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(
        rows,
        queries,
        "one row per query tshark counts\n{}",
        s.logs()
    );
    assert_eq!(
        servers.into_iter().collect::<Vec<_>>(),
        ["ns1.example", "ns2.example"]
    );
    for w in [mapper, merger] {
        s.sigterm(w);
        assert_eq!(s.wait_exit(w, Duration::from_secs(30)), 0, "{}", s.logs());
    }
}

#[test]
fn sigterm_flushes_the_batches_a_mapper_holds() {
    let mut s = bootstrap("sigterm-flush");
    let (root, raw) = raw_set(s.dir.path(), "12");
    // Batches would stay open for ten minutes: only the shutdown flush can queue them.
    let mapper = s.start("mapper", &[("FLOWMERGE_BATCH_MAX_WAIT", "10m")]);
    s.upload(&root, &raw);
    let n = raw.len() as i64;
    s.wait_queue(
        "FLOWMERGE_RAW_QUEUE_URL",
        "all events held by the mapper",
        |(v, f)| v == 0 && f >= n,
    );
    s.sigterm(mapper);
    assert_eq!(
        s.wait_exit(mapper, Duration::from_secs(30)),
        0,
        "{}",
        s.logs()
    );
    s.wait_queue("FLOWMERGE_RAW_QUEUE_URL", "raw queue drained", |(v, f)| {
        v + f == 0
    });
    // A queue may be named instead of addressed by URL.
    let merge_queue = s.exports["FLOWMERGE_MERGE_QUEUE_URL"]
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let merger = s.start("merger", &[("FLOWMERGE_MERGE_QUEUE_URL", &merge_queue)]);
    let out = s.wait_for_records(total_records(&raw));
    assert_conserved(&raw, &out);
    s.sigterm(merger);
    assert_eq!(
        s.wait_exit(merger, Duration::from_secs(30)),
        0,
        "{}",
        s.logs()
    );
}

#[test]
fn bad_objects_are_quarantined_and_the_rest_commits() {
    let mut s = bootstrap("quarantine");
    let (root, raw) = raw_set(s.dir.path(), "13");
    let bad_dir = root.join("AWSLogs/999999999999/vpcflowlogs/us-east-1/2026/11/01");
    std::fs::create_dir_all(&bad_dir).unwrap();
    let garbage =
        bad_dir.join("999999999999_vpcflowlogs_us-east-1_fl-bad_20261101T0001Z_0001.log.gz");
    std::fs::write(&garbage, b"\x1f\x8b\x08\x00 not really gzip at all").unwrap();
    let truncated =
        bad_dir.join("999999999999_vpcflowlogs_us-east-1_fl-bad_20261101T0002Z_0002.log.gz");
    let good = std::fs::read(&raw[1]).unwrap();
    std::fs::write(&truncated, &good[..good.len() / 2]).unwrap();
    let mut all = raw.clone();
    all.extend([garbage.clone(), truncated.clone()]);

    s.start("mapper", &[]);
    s.start("merger", &[]);
    s.upload(&root, &all);
    let out = s.wait_for_records(total_records(&raw));
    assert_conserved(&raw, &out);
    // Quarantine records name the objects and their reasons (they may trail the last commit).
    let start = Instant::now();
    loop {
        let got = s.download("flows/_flowmerge/quarantine", &s.dir.path().join("q"));
        let reasons: Vec<String> = got
            .values()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect();
        if reasons.len() == 2 {
            for bad in [&garbage, &truncated] {
                let name = bad.file_name().unwrap().to_string_lossy().into_owned();
                assert!(
                    reasons
                        .iter()
                        .any(|r| r.contains(&name) && r.contains("reason")),
                    "{name}: {reasons:?}"
                );
            }
            break;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "quarantine records: {reasons:?}\n{}",
            s.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn undecodable_jobs_reach_the_dead_letter_queue() {
    let mut s = bootstrap("dlq");
    s.start("merger", &[]);
    s.send_raw("FLOWMERGE_MERGE_QUEUE_URL", "{\"v\": 99}");
    let dlq = s.exports["FLOWMERGE_MERGE_QUEUE_URL"].replace("-merge", "-merge-dlq");
    s.exports.insert("MERGE_DLQ".into(), dlq);
    s.wait_queue("MERGE_DLQ", "job in the DLQ", |(v, _)| v == 1);
}

/// Kills a worker at `step` (FLOWMERGE_FAULT makes it exit there, as a SIGKILL would), restarts it
/// clean, and checks every record landed exactly once.
fn crash_and_recover(worker: &str, step: &str) {
    let mut s = bootstrap(&format!("crash-{worker}-{step}"));
    let (root, raw) = raw_set(s.dir.path(), "21");
    let other = if worker == "mapper" {
        "merger"
    } else {
        "mapper"
    };
    s.start(other, &[]);
    let faulty = s.start(worker, &[("FLOWMERGE_FAULT", step)]);
    s.upload(&root, &raw);
    assert_eq!(
        s.wait_exit(faulty, DEADLINE),
        86,
        "{worker} did not reach {step}\n{}",
        s.logs()
    );
    s.start(worker, &[]);
    let out = s.wait_for_records(total_records(&raw));
    assert_conserved(&raw, &out);
    // Settled: nothing left in flight that could add records later.
    s.wait_drained();
    let out = s.wait_for_records(total_records(&raw));
    assert_conserved(&raw, &out);
}

#[test]
fn mapper_killed_after_manifest() {
    crash_and_recover("mapper", "after-manifest");
}

#[test]
fn mapper_killed_after_claim() {
    crash_and_recover("mapper", "after-claim");
}

#[test]
fn mapper_killed_after_seal() {
    crash_and_recover("mapper", "after-seal");
}

#[test]
fn mapper_killed_after_send() {
    crash_and_recover("mapper", "after-send");
}

#[test]
fn mapper_killed_before_delete() {
    crash_and_recover("mapper", "before-delete");
}

#[test]
fn merger_killed_after_output_write() {
    crash_and_recover("merger", "after-write");
}

#[test]
fn merger_killed_before_commit() {
    crash_and_recover("merger", "before-commit");
}

#[test]
fn merger_killed_before_delete() {
    crash_and_recover("merger", "after-commit");
}

#[test]
fn missing_or_bad_configuration_is_named_at_start() {
    let run = |bin: &str, vars: &[(&str, &str)]| {
        let out = Command::new(bin)
            .env_clear()
            .envs(vars.iter().copied())
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(1), "{bin} started with {vars:?}");
        // The error is logged (stdout, JSON lines when not a terminal), once.
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            all.lines().filter(|l| !l.trim().is_empty()).count(),
            1,
            "{all}"
        );
        all
    };
    let base = [
        ("FLOWMERGE_OUTPUT", "s3://b/p"),
        ("FLOWMERGE_RAW_QUEUE_URL", "http://x/q"),
        ("FLOWMERGE_MERGE_QUEUE_URL", "http://x/q"),
    ];
    for bin in [
        env!("CARGO_BIN_EXE_flowmerge-mapper"),
        env!("CARGO_BIN_EXE_flowmerge-merger"),
    ] {
        let err = run(bin, &base);
        assert!(
            err.contains("FLOWMERGE_TABLE") && err.contains("not set"),
            "{bin}: {err}"
        );
    }
    let mut bad = base.to_vec();
    bad.extend([("FLOWMERGE_TABLE", "t"), ("FLOWMERGE_WINDOW", "7x")]);
    let err = run(env!("CARGO_BIN_EXE_flowmerge-mapper"), &bad);
    assert!(err.contains("FLOWMERGE_WINDOW"), "{err}");
    bad.push(("FLOWMERGE_DRAIN_TIMEOUT", "forever"));
    let err = run(env!("CARGO_BIN_EXE_flowmerge-merger"), &bad);
    assert!(err.contains("FLOWMERGE_DRAIN_TIMEOUT"), "{err}");
}

/// A queue, table or bucket that does not exist, or a log filter that does not parse, stops a
/// worker at start with exit 1 and a line naming the variable — not "merger started" and errors
/// on every job.
#[test]
fn missing_resources_and_bad_log_filters_stop_workers_at_start() {
    let mut stack = bootstrap("missing_resources");
    let cases: &[(&str, &str, &str)] = &[
        ("merger", "FLOWMERGE_TABLE", "missing-table"),
        ("mapper", "FLOWMERGE_TABLE", "missing-table"),
        ("merger", "FLOWMERGE_MERGE_QUEUE_URL", "no-such-queue"),
        (
            "mapper",
            "FLOWMERGE_RAW_QUEUE_URL",
            "http://127.0.0.1:1/123456789012/no-such-queue",
        ),
        (
            "merger",
            "FLOWMERGE_OUTPUT",
            "s3://no-such-bucket-anywhere/flows",
        ),
        (
            "mapper",
            "FLOWMERGE_WORK",
            "s3://no-such-bucket-anywhere/work",
        ),
        ("merger", "FLOWMERGE_LOG", "bogus==="),
    ];
    for (worker, var, value) in cases {
        let i = stack.start(worker, &[(var, value)]);
        let code = stack.wait_exit(i, Duration::from_secs(60));
        let logs = std::fs::read_to_string(stack.dir.path().join(format!("{worker}-{i}.log")))
            .unwrap_or_default();
        assert_eq!(code, 1, "{worker} with {var}={value}: {logs}");
        assert!(
            logs.contains(var),
            "{worker} with {var}={value} must name it: {logs}"
        );
        assert!(
            !logs.contains("started"),
            "{worker} with {var}={value}: {logs}"
        );
    }
}

/// A span as an OTLP/HTTP receiver saw it.
#[derive(Clone, Debug)]
struct SeenSpan {
    service: String,
    name: String,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent_span_id: Vec<u8>,
    links: Vec<Vec<u8>>,
    attributes: BTreeMap<String, String>,
}

/// A minimal OTLP/HTTP (protobuf) receiver: records the spans posted to `/v1/traces`, accepts
/// and ignores metrics.
fn otlp_receiver() -> (String, Arc<Mutex<Vec<SeenSpan>>>) {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
    use prost::Message;
    use std::io::{BufRead, BufReader, Read, Write};

    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    let seen: Arc<Mutex<Vec<SeenSpan>>> = Arc::default();
    let sink = Arc::clone(&seen);
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let sink = Arc::clone(&sink);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().expect("clone"));
                let mut conn = conn;
                loop {
                    let mut request_line = String::new();
                    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut length = 0usize;
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).unwrap_or(0) == 0 {
                            return;
                        }
                        let h = h.trim_end();
                        if h.is_empty() {
                            break;
                        }
                        if let Some((k, v)) = h.split_once(':')
                            && k.eq_ignore_ascii_case("content-length")
                        {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    if request_line.contains("/v1/traces")
                        && let Ok(req) = ExportTraceServiceRequest::decode(body.as_slice())
                    {
                        let mut out = sink.lock().expect("lock");
                        for rs in req.resource_spans {
                            let service = rs
                                .resource
                                .iter()
                                .flat_map(|r| &r.attributes)
                                .find(|a| a.key == "service.name")
                                .and_then(|a| a.value.as_ref())
                                .and_then(|v| match &v.value {
                                    Some(AnyValue::StringValue(s)) => Some(s.clone()),
                                    _ => None,
                                })
                                .unwrap_or_default();
                            for ss in rs.scope_spans {
                                for sp in ss.spans {
                                    let attributes = sp
                                        .attributes
                                        .iter()
                                        .map(|a| {
                                            let v = match a
                                                .value
                                                .as_ref()
                                                .and_then(|v| v.value.as_ref())
                                            {
                                                Some(AnyValue::StringValue(s)) => s.clone(),
                                                Some(AnyValue::IntValue(i)) => i.to_string(),
                                                Some(other) => format!("{other:?}"),
                                                None => String::new(),
                                            };
                                            (a.key.clone(), v)
                                        })
                                        .collect();
                                    out.push(SeenSpan {
                                        service: service.clone(),
                                        name: sp.name,
                                        trace_id: sp.trace_id,
                                        span_id: sp.span_id,
                                        parent_span_id: sp.parent_span_id,
                                        links: sp.links.into_iter().map(|l| l.span_id).collect(),
                                        attributes,
                                    });
                                }
                            }
                        }
                    }
                    let reply = "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
                    if conn.write_all(reply.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (endpoint, seen)
}

#[test]
fn the_mergers_trace_continues_the_mappers_through_sqs() {
    let (endpoint, seen) = otlp_receiver();
    let mut s = bootstrap("trace");
    let (root, raw) = raw_set(s.dir.path(), "31");
    let otel = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
    ];
    let mapper = s.start("mapper", &otel);
    let merger = s.start("merger", &otel);
    s.upload(&root, &raw);
    s.wait_for_records(total_records(&raw));
    s.wait_queue(
        "FLOWMERGE_MERGE_QUEUE_URL",
        "merge queue drained",
        |(v, f)| v + f == 0,
    );
    // Spans are flushed on shutdown.
    for w in [mapper, merger] {
        s.sigterm(w);
        assert_eq!(s.wait_exit(w, Duration::from_secs(30)), 0, "{}", s.logs());
    }
    let spans = seen.lock().expect("lock").clone();
    let batches: Vec<&SeenSpan> = spans
        .iter()
        .filter(|sp| sp.service == "flowmerge-mapper" && sp.name == "batch")
        .collect();
    let jobs: Vec<&SeenSpan> = spans
        .iter()
        .filter(|sp| sp.service == "flowmerge-merger" && sp.name == "merge job")
        .collect();
    assert!(
        !batches.is_empty() && !jobs.is_empty(),
        "spans seen: {:?}",
        spans
            .iter()
            .map(|s| (&s.service, &s.name))
            .collect::<Vec<_>>()
    );
    let receives: Vec<&SeenSpan> = spans
        .iter()
        .filter(|sp| sp.name == "receive raw message")
        .collect();
    for job in &jobs {
        let parent = batches
            .iter()
            .find(|b| b.trace_id == job.trace_id && b.span_id == job.parent_span_id)
            .unwrap_or_else(|| panic!("merge job span {job:?} has no mapper batch span as parent"));
        assert_eq!(
            job.attributes.get("messaging.system").map(String::as_str),
            Some("aws_sqs")
        );
        assert!(
            job.attributes
                .get("messaging.destination.name")
                .is_some_and(|q| q.ends_with("-merge"))
        );
        assert!(job.attributes.contains_key("messaging.message.id"));
        assert_eq!(
            job.attributes.get("batch.id"),
            parent.attributes.get("batch.id")
        );
        // The batch links to the events it gathered.
        assert!(!parent.links.is_empty());
        assert!(
            parent
                .links
                .iter()
                .all(|l| receives.iter().any(|r| &r.span_id == l))
        );
        // The merge's stages are children within the same trace.
        for stage in ["fetch", "parse and merge", "write", "commit"] {
            assert!(
                spans
                    .iter()
                    .any(|sp| sp.name == stage && sp.trace_id == job.trace_id),
                "no {stage} span in the job's trace"
            );
        }
    }
}

#[test]
fn a_ledger_outage_returns_messages_instead_of_killing_the_mapper() {
    let mut s = bootstrap("ledger-outage");
    let (root, raw) = raw_set(s.dir.path(), "41");
    // The table disappears once the mapper has started (it checks it at start): every claim fails.
    let mapper = s.start("mapper", &[]);
    let start = Instant::now();
    while !s.logs().contains("mapper started") {
        assert!(
            start.elapsed() < DEADLINE,
            "mapper did not start\n{}",
            s.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let table = s.exports["FLOWMERGE_TABLE"].clone();
    runtime().block_on(async {
        let dynamodb = aws_sdk_dynamodb::Client::new(&aws_config_for_tests().await);
        dynamodb
            .delete_table()
            .table_name(&table)
            .send()
            .await
            .expect("delete table");
    });
    s.upload(&root, &raw[..1]);
    // One object: a second failure means its message came back for another attempt.
    let failed = "batch failed; its messages return to the queue";
    let start = Instant::now();
    while s.logs().matches(failed).count() < 2 {
        assert!(start.elapsed() < DEADLINE, "no retry logged\n{}", s.logs());
        let alive = s.children[mapper].try_wait().expect("wait").is_none();
        assert!(alive, "mapper died\n{}", s.logs());
        std::thread::sleep(Duration::from_millis(200));
    }
    s.sigterm(mapper);
    assert_eq!(
        s.wait_exit(mapper, Duration::from_secs(30)),
        0,
        "{}",
        s.logs()
    );
}

/// An endpoint in front of the emulator: passes requests through (one per connection), counts
/// DynamoDB calls by operation, and refuses the first `refuse` GETs of any S3 key containing
/// `needle` with `403 ExpiredToken` — a credential failure, which is transient for us and which
/// object_store does not retry on its own.
struct Proxy {
    endpoint: String,
    refused: Arc<AtomicUsize>,
    dynamodb_calls: Arc<Mutex<BTreeMap<String, usize>>>,
}

fn proxy(needle: &str, refuse: usize) -> Proxy {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind proxy");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    let upstream = moto().trim_start_matches("http://").to_owned();
    let refused = Arc::new(AtomicUsize::new(0));
    let dynamodb_calls = Arc::new(Mutex::new(BTreeMap::new()));
    let (needle, counter, calls) = (
        needle.to_owned(),
        Arc::clone(&refused),
        Arc::clone(&dynamodb_calls),
    );
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let (needle, upstream) = (needle.clone(), upstream.clone());
            let (counter, calls) = (Arc::clone(&counter), Arc::clone(&calls));
            std::thread::spawn(move || -> std::io::Result<()> {
                let mut reader = BufReader::new(client.try_clone()?);
                let mut head = Vec::new();
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line)? == 0 {
                        return Ok(());
                    }
                    if line == "\r\n" {
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    if let Some(target) = lower.strip_prefix("x-amz-target:") {
                        let op = target.trim().rsplit('.').next().unwrap_or("").to_owned();
                        *calls.lock().unwrap().entry(op).or_insert(0) += 1;
                    }
                    if !lower.starts_with("connection:") {
                        head.push(line);
                    }
                }
                let mut body = vec![0u8; length];
                reader.read_exact(&mut body)?;
                let mut client = client;
                let is_target =
                    !needle.is_empty() && head[0].starts_with("GET ") && head[0].contains(&needle);
                if is_target && counter.fetch_add(1, Ordering::SeqCst) < refuse {
                    let xml = "<?xml version=\"1.0\"?><Error><Code>ExpiredToken</Code>\
                               <Message>The provided token has expired.</Message></Error>";
                    write!(
                        client,
                        "HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{xml}",
                        xml.len()
                    )?;
                    return Ok(());
                }
                if is_target {
                    counter.fetch_sub(1, Ordering::SeqCst);
                }
                let mut up = TcpStream::connect(&upstream)?;
                for line in &head {
                    up.write_all(line.as_bytes())?;
                }
                up.write_all(b"Connection: close\r\n\r\n")?;
                up.write_all(&body)?;
                std::io::copy(&mut up, &mut client)?;
                Ok(())
            });
        }
    });
    Proxy {
        endpoint,
        refused,
        dynamodb_calls,
    }
}

/// Claims are batched: at full batches the two workers make at most 0.05 DynamoDB calls per raw
/// object (counted by a proxy in front of the emulator), start-up checks aside.
#[test]
fn dynamodb_calls_per_raw_object_at_full_batches() {
    let mut s = bootstrap("dynamodb-calls");
    let root = s.dir.path().join("raw");
    generate(
        &root,
        "--accounts 100 --minutes 5 --files-per-minute 1 --records-per-file 20 --seed 61",
    );
    let raw = files(&root);
    assert_eq!(raw.len(), 500);
    s.upload(&root, &raw);
    let counter = proxy("", 0);
    let extra = [
        ("AWS_ENDPOINT_URL_DYNAMODB", counter.endpoint.as_str()),
        ("FLOWMERGE_BATCH_MAX_OBJECTS", "500"),
        ("FLOWMERGE_BATCH_MAX_WAIT", "60s"),
        ("FLOWMERGE_VISIBILITY_TIMEOUT", "60s"),
    ];
    s.start("mapper", &extra);
    s.start("merger", &extra);
    let out = s.wait_for_records(total_records(&raw));
    assert_conserved(&raw, &out);
    s.wait_drained();
    let calls = counter.dynamodb_calls.lock().unwrap().clone();
    let per_object: usize = calls
        .iter()
        .filter(|(op, _)| op.as_str() != "describetable")
        .map(|(_, n)| n)
        .sum();
    let ratio = per_object as f64 / raw.len() as f64;
    println!(
        "DynamoDB calls for {} objects: {calls:?} ({ratio:.3} per object)",
        raw.len()
    );
    assert!(
        ratio <= 0.05,
        "{ratio:.3} DynamoDB calls per object: {calls:?}"
    );
}

/// A transient read error is not bad input: compact over S3 fails the batch that could not read
/// an object (exit 1, nothing quarantined), and the next run merges it — every record once.
/// Also: a bucket that does not exist is a usage error with no side effect.
#[test]
fn compact_over_s3_retries_a_batch_whose_object_could_not_be_read() {
    let s = bootstrap("compact-transient");
    let (root, raw) = raw_set(s.dir.path(), "51");
    s.upload(&root, &raw);
    let victim = raw[3].file_name().unwrap().to_string_lossy().into_owned();
    let proxy = proxy(&victim, 1);
    let out = s.dir.path().join("compact-out");
    let input = format!("s3://{}/", s.raw_bucket);
    let run = |endpoint: &str, args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_flowmerge"))
            .arg("compact")
            .args(args)
            .envs(aws_env())
            .env("AWS_ENDPOINT_URL", "")
            .env("AWS_ENDPOINT_URL_S3", endpoint)
            .output()
            .expect("run compact");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let o = out.to_str().unwrap();

    let (code, stdout, stderr) = run(moto(), &["s3://no-such-bucket-anywhere/x", o]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("no-such-bucket-anywhere") && stderr.contains("does not exist"));
    assert!(!out.exists(), "a run that cannot start wrote its output");

    let (code, stdout, stderr) = run(&proxy.endpoint, &[&input, o, "--json"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert_eq!(proxy.refused.load(Ordering::SeqCst), 1);
    let first: serde_json::Value = serde_json::from_str(&stdout).expect("summary");
    assert_eq!(first["objects_quarantined"], 0, "{first}");
    assert_eq!(first["batches_failed"], 1, "{first}");
    assert!(
        first["failures"][0].as_str().unwrap().contains(&victim),
        "{first}"
    );

    let (code, stdout, stderr) = run(&proxy.endpoint, &[&input, o, "--json"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_conserved(&raw, &out);

    // Batch ids follow the mapper's scheme (scoped by bucket): the files are named by
    // BatchId::new(bucket, window, objects), computed here from the bucket's own listing.
    let store = s.store(&s.raw_bucket);
    let listed: Vec<flowmerge_core::ObjectRef> =
        runtime().block_on(async { flowmerge_core::list_objects(&*store, None).await.unwrap() });
    let planned = flowmerge_core::plan_batches(
        &s.raw_bucket,
        listed,
        300,
        flowmerge_core::BatchLimits::default(),
    );
    let mut expected: Vec<String> = planned
        .iter()
        .map(|b| format!("{}-{}.parquet", b.window.stamp(), b.id))
        .collect();
    let mut names: Vec<String> = parquet_files(&out)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    expected.sort();
    names.sort();
    assert_eq!(names, expected);
}

/// The merger on a transient read error: the job fails and returns to its queue, the retry
/// reads the object and commits — every record once, nothing quarantined.
#[test]
fn a_merger_retries_a_job_whose_object_could_not_be_read() {
    let mut s = bootstrap("merger-transient");
    let (root, raw) = raw_set(s.dir.path(), "52");
    let victim = raw[2].file_name().unwrap().to_string_lossy().into_owned();
    let proxy = proxy(&victim, 1);
    s.start("mapper", &[]);
    s.start("merger", &[("AWS_ENDPOINT_URL_S3", &proxy.endpoint)]);
    s.upload(&root, &raw);
    let out = s.wait_for_records(total_records(&raw));
    assert_conserved(&raw, &out);
    assert_eq!(
        proxy.refused.load(Ordering::SeqCst),
        1,
        "the refusal was exercised"
    );
    let logs = s.logs();
    assert!(logs.contains("job failed"), "{logs}");
    assert!(!logs.contains("object quarantined"), "{logs}");
}

/// The merge side of the DynamoDB ledger passes the same conformance suite as the SQLite ledger
/// (`flowmerge_core::conformance`), driven through the batch protocol itself.
#[test]
fn the_dynamodb_ledger_passes_the_commit_ledger_conformance_suite() {
    use flowmerge_aws::config::S3Location;
    use flowmerge_aws::ledger::DynamoLedger;
    use flowmerge_aws::merger::DynamoCommitLedger;
    use flowmerge_core::claim::claim_batch;
    use flowmerge_core::ports::ClaimLedger;

    let s = bootstrap("dynamo-conformance");
    let table = s.exports["FLOWMERGE_TABLE"].clone();
    let work = S3Location {
        bucket: s.out_bucket.clone(),
        prefix: "flows/_flowmerge".into(),
    };
    let work_store = s.store(&s.out_bucket);
    runtime().block_on(async {
        let client = aws_sdk_dynamodb::Client::new(&aws_config_for_tests().await);
        let ledger = DynamoLedger::new(client, &table, Duration::from_secs(3600));
        let commit = DynamoCommitLedger {
            ledger: ledger.clone(),
            bucket: s.raw_bucket.clone(),
            work_store: Arc::clone(&work_store),
            work,
        };
        let raw_bucket = s.raw_bucket.clone();
        flowmerge_core::conformance::commit_ledger_conformance(&commit, "dynamo", |batch| {
            let (ledger, raw_bucket) = (ledger.clone(), raw_bucket.clone());
            async move {
                // The mapper's side, through the one claim protocol: open, claim, seal, queued.
                let lease_until = flowmerge_aws::ledger::now() + 600;
                let claimed = claim_batch(
                    &ledger,
                    &raw_bucket,
                    &batch,
                    "conformance",
                    lease_until,
                    "s3://unused/manifest.json".into(),
                )
                .await
                .unwrap();
                assert!(claimed.to_send);
                assert_eq!(claimed.owned(&batch), batch.objects);
                assert!(ledger.mark_queued(&batch.id).await.unwrap());
                batch
            }
        })
        .await;
        // The quarantined object has its JSON record under the work prefix.
        let records: Vec<_> = work_store
            .list(Some(&StorePath::from("flows/_flowmerge/quarantine")))
            .try_collect()
            .await
            .unwrap();
        assert_eq!(records.len(), 1, "{records:?}");
    });
}

/// The claim side of the DynamoDB ledger passes the same conformance suite as the SQLite ledger.
#[test]
fn the_dynamodb_ledger_passes_the_claim_ledger_conformance_suite() {
    let s = bootstrap("dynamo-claims");
    let table = s.exports["FLOWMERGE_TABLE"].clone();
    runtime().block_on(async {
        let client = aws_sdk_dynamodb::Client::new(&aws_config_for_tests().await);
        let ledger =
            flowmerge_aws::ledger::DynamoLedger::new(client, &table, Duration::from_secs(3600));
        flowmerge_core::conformance::claim_ledger_conformance(&ledger, &s.raw_bucket).await;
    });
}

/// The rollup side of the DynamoDB ledger passes the same conformance suite as the SQLite ledger.
#[test]
fn the_dynamodb_ledger_passes_the_rollup_ledger_conformance_suite() {
    let s = bootstrap("dynamo-rollups");
    let table = s.exports["FLOWMERGE_TABLE"].clone();
    runtime().block_on(async {
        let client = aws_sdk_dynamodb::Client::new(&aws_config_for_tests().await);
        let ledger =
            flowmerge_aws::ledger::DynamoLedger::new(client, &table, Duration::from_secs(3600));
        flowmerge_core::conformance::rollup_ledger_conformance(&ledger, &s.raw_bucket).await;
    });
}

/// SQS on the emulator passes the same job-queue suite as the in-process queue.
#[test]
fn sqs_passes_the_job_queue_conformance_suite() {
    let s = bootstrap("sqs-conformance");
    let url = s.exports["FLOWMERGE_MERGE_QUEUE_URL"].clone();
    runtime().block_on(async {
        let sqs = aws_sdk_sqs::Client::new(&aws_config_for_tests().await);
        let queue = flowmerge_aws::queue::SqsQueue::new(sqs, &url);
        flowmerge_core::conformance::job_queue_conformance(&queue).await;
    });
}
