//! `flowmerge aws bootstrap`: creates, idempotently, what the workers need on any AWS-compatible
//! endpoint — raw and output buckets, raw and merge queues each with a DLQ, the raw bucket's
//! ObjectCreated notification to the raw queue, the DynamoDB ledger with TTL — and returns the
//! environment for the workers. Production resources come from the CDK app (`infra-cdk/`).

use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TableStatus,
    TimeToLiveSpecification, TimeToLiveStatus,
};
use aws_sdk_s3::types::{
    BucketLocationConstraint, CreateBucketConfiguration, Event, NotificationConfiguration,
    QueueConfiguration,
};
use aws_sdk_sqs::types::QueueAttributeName;

use crate::clients;
use crate::config::S3Location;
use crate::error::{AwsError, Result};

/// Deliveries before a message moves to its DLQ.
pub const MAX_RECEIVE_COUNT: u32 = 5;
/// The attribute DynamoDB's TTL reads.
pub const TTL_ATTRIBUTE: &str = "expires_at";

#[derive(Clone, Debug)]
pub struct BootstrapRequest {
    pub raw_bucket: String,
    pub output: String,
    /// Prefix of queue and table names.
    pub name: String,
}

#[derive(Clone, Debug)]
pub struct Bootstrapped {
    pub raw_queue_url: String,
    pub raw_dlq_url: String,
    pub merge_queue_url: String,
    pub merge_dlq_url: String,
    pub rollup_queue_url: String,
    pub rollup_dlq_url: String,
    pub table: String,
    pub output: String,
    pub region: Option<String>,
}

impl Bootstrapped {
    /// `export VAR='value'` lines for the workers' environment.
    pub fn exports(&self) -> String {
        let mut lines = vec![
            ("FLOWMERGE_RAW_QUEUE_URL", self.raw_queue_url.clone()),
            ("FLOWMERGE_MERGE_QUEUE_URL", self.merge_queue_url.clone()),
            ("FLOWMERGE_ROLLUP_QUEUE_URL", self.rollup_queue_url.clone()),
            ("FLOWMERGE_TABLE", self.table.clone()),
            ("FLOWMERGE_OUTPUT", self.output.clone()),
        ];
        if let Some(r) = &self.region {
            lines.push(("AWS_REGION", r.clone()));
        }
        if let Ok(e) = std::env::var("AWS_ENDPOINT_URL")
            && !e.is_empty()
        {
            lines.push(("AWS_ENDPOINT_URL", e));
        }
        let mut out = format!(
            "# flowmerge workers' environment (dead-letter queues: {}, {} and {})\n",
            self.raw_dlq_url, self.merge_dlq_url, self.rollup_dlq_url
        );
        for (k, v) in lines {
            out.push_str(&format!("export {k}={}\n", shell_quote(&v)));
        }
        out
    }
}

fn shell_quote(v: &str) -> String {
    if v.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/:._-=+@,".contains(c))
    {
        v.to_owned()
    } else {
        format!("'{}'", v.replace('\'', r"'\''"))
    }
}

pub async fn bootstrap(config: &SdkConfig, req: &BootstrapRequest) -> Result<Bootstrapped> {
    let output = S3Location::parse("--output", &req.output)?;
    let region = config.region().map(|r| r.to_string());
    let s3 = clients::s3(config);
    let sqs = clients::sqs(config);
    let ddb = clients::dynamodb(config);

    for bucket in [&req.raw_bucket, &output.bucket] {
        create_bucket(&s3, bucket, region.as_deref()).await?;
    }

    let raw_dlq = create_queue(&sqs, &format!("{}-raw-dlq", req.name), None, None).await?;
    let merge_dlq = create_queue(&sqs, &format!("{}-merge-dlq", req.name), None, None).await?;
    let raw = create_queue(
        &sqs,
        &format!("{}-raw", req.name),
        Some(&raw_dlq.1),
        Some(&req.raw_bucket),
    )
    .await?;
    let merge = create_queue(
        &sqs,
        &format!("{}-merge", req.name),
        Some(&merge_dlq.1),
        None,
    )
    .await?;

    let rollup_dlq = create_queue(&sqs, &format!("{}-rollup-dlq", req.name), None, None).await?;
    let rollup = create_queue(
        &sqs,
        &format!("{}-rollup", req.name),
        Some(&rollup_dlq.1),
        None,
    )
    .await?;

    // S3 → raw queue on every created object.
    let notification = NotificationConfiguration::builder()
        .queue_configurations(
            QueueConfiguration::builder()
                .id("flowmerge-raw")
                .queue_arn(&raw.1)
                .events(Event::from("s3:ObjectCreated:*"))
                .build()
                .map_err(|e| AwsError::api("s3:PutBucketNotificationConfiguration", e))?,
        )
        .build();
    s3.put_bucket_notification_configuration()
        .bucket(&req.raw_bucket)
        .notification_configuration(notification)
        .send()
        .await
        .map_err(|e| AwsError::api("s3:PutBucketNotificationConfiguration", e))?;

    let table = format!("{}-ledger", req.name);
    create_table(&ddb, &table).await?;

    Ok(Bootstrapped {
        raw_queue_url: raw.0,
        raw_dlq_url: raw_dlq.0,
        merge_queue_url: merge.0,
        merge_dlq_url: merge_dlq.0,
        rollup_queue_url: rollup.0,
        rollup_dlq_url: rollup_dlq.0,
        table,
        output: format!("s3://{}/{}", output.bucket, output.prefix)
            .trim_end_matches('/')
            .to_owned(),
        region,
    })
}

async fn create_bucket(s3: &aws_sdk_s3::Client, bucket: &str, region: Option<&str>) -> Result<()> {
    let mut req = s3.create_bucket().bucket(bucket);
    if let Some(r) = region.filter(|r| *r != "us-east-1") {
        req = req.create_bucket_configuration(
            CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::from(r))
                .build(),
        );
    }
    match req.send().await {
        Ok(_) => Ok(()),
        Err(e) => {
            let svc = e.as_service_error();
            if svc.is_some_and(|s| s.is_bucket_already_owned_by_you()) {
                return Ok(());
            }
            // "Already exists" (someone's, maybe ours on some emulators): fine if we can use it.
            if s3.head_bucket().bucket(bucket).send().await.is_ok() {
                return Ok(());
            }
            Err(AwsError::api("s3:CreateBucket", e))
        }
    }
}

/// Creates (or updates) a queue; returns its URL and ARN.
async fn create_queue(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    dlq_arn: Option<&str>,
    from_bucket: Option<&str>,
) -> Result<(String, String)> {
    let url = sqs
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .map_err(|e| AwsError::api("sqs:CreateQueue", e))?
        .queue_url()
        .unwrap_or_default()
        .to_owned();
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| AwsError::api("sqs:GetQueueAttributes", e))?
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .ok_or_else(|| AwsError::Invalid(format!("queue {name}: no ARN")))?;
    let mut set = sqs
        .set_queue_attributes()
        .queue_url(&url)
        // 14 days: the longest SQS keeps a message.
        .attributes(QueueAttributeName::MessageRetentionPeriod, "1209600")
        .attributes(QueueAttributeName::VisibilityTimeout, "300");
    if let Some(dlq) = dlq_arn {
        let policy =
            serde_json::json!({"deadLetterTargetArn": dlq, "maxReceiveCount": MAX_RECEIVE_COUNT});
        set = set.attributes(QueueAttributeName::RedrivePolicy, policy.to_string());
    }
    if let Some(bucket) = from_bucket {
        // Lets S3 deliver the bucket's notifications.
        let policy = serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Sid": "s3-notifications",
                "Effect": "Allow",
                "Principal": {"Service": "s3.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": arn,
                "Condition": {"ArnLike": {"aws:SourceArn": format!("arn:aws:s3:::{bucket}")}}
            }]
        });
        set = set.attributes(QueueAttributeName::Policy, policy.to_string());
    }
    set.send()
        .await
        .map_err(|e| AwsError::api("sqs:SetQueueAttributes", e))?;
    Ok((url, arn))
}

async fn create_table(ddb: &aws_sdk_dynamodb::Client, table: &str) -> Result<()> {
    let created = ddb
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(|e| AwsError::api("dynamodb:CreateTable", e))?,
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(KeyType::Hash)
                .build()
                .map_err(|e| AwsError::api("dynamodb:CreateTable", e))?,
        )
        .send()
        .await;
    if let Err(e) = created
        && !e
            .as_service_error()
            .is_some_and(|s| s.is_resource_in_use_exception())
    {
        return Err(AwsError::api("dynamodb:CreateTable", e));
    }
    // A new table is CREATING for a few seconds on AWS.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let status = ddb
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| AwsError::api("dynamodb:DescribeTable", e))?
            .table()
            .and_then(|t| t.table_status().cloned());
        if status == Some(TableStatus::Active) {
            break;
        }
        if Instant::now() > deadline {
            return Err(AwsError::Invalid(format!(
                "table {table} not ACTIVE after 120 s"
            )));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let ttl = ddb
        .describe_time_to_live()
        .table_name(table)
        .send()
        .await
        .map_err(|e| AwsError::api("dynamodb:DescribeTimeToLive", e))?;
    let enabled = ttl
        .time_to_live_description()
        .and_then(|d| d.time_to_live_status())
        .is_some_and(|s| matches!(s, TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling));
    if !enabled {
        ddb.update_time_to_live()
            .table_name(table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name(TTL_ATTRIBUTE)
                    .build()
                    .map_err(|e| AwsError::api("dynamodb:UpdateTimeToLive", e))?,
            )
            .send()
            .await
            .map_err(|e| AwsError::api("dynamodb:UpdateTimeToLive", e))?;
    }
    Ok(())
}
